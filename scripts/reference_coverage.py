"""Which claims call each public reference function: the table "function -> claims".

Usage::

    python scripts/reference_coverage.py [--only GLOB] [--seed 0] [--markdown]

Every public callable of :mod:`rlmath.reference` and :mod:`rlmath.llm_reference` is wrapped
by a recorder (wherever a live dict, a module namespace or a table of functions in a proof file,
or a dataclass field, a spec's ``reference``, holds it; one held only in a tuple or a closure
is not seen, unless it was taken from the module after the wrapping: the proofs are loaded
only then); then every claim is verified in this process
(:func:`rlmath.verify.verify_claim`, its legs and its mutants), and each call is recorded
against the claim being verified. A call counts whether a leg makes it directly or through
other library code (a spec, another reference function). The table lists each function with
the claims whose verification called it, and "none" for a function no claim runs (which
``tests/test_reference_coverage.py`` checks by name only: a function named in a proof file
but never called there would pass that test and show "none" here).

Opt-in (never part of ``.ci/run``): it verifies every claim, a minute or two of CPU.
Exit status 1 when some public function is called by no claim.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rlmath.llm_reference  # noqa: E402
import rlmath.reference  # noqa: E402
from rlmath.verify import find_claims, load_claims, verify_claim  # noqa: E402

MODULES = (rlmath.reference, rlmath.llm_reference)


def public_functions() -> dict[str, Callable[..., Any]]:
    """``module.name -> function`` for every public callable of the reference modules."""
    out: dict[str, Callable[..., Any]] = {}
    for module in MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            if callable(value) and not isinstance(value, type):
                out[f"{module.__name__}.{name}"] = value
    return out


def instrument(functions: dict[str, Callable[..., Any]], calls: dict[str, set[str]], current: list[str]) -> int:
    """Replace every reference to each function held by a live dict (module namespaces, tables
    of functions) or a dataclass field (the specs) by a recording wrapper. A function held only
    in a tuple or a closure is not seen (its calls are not recorded).

    Returns the number of names replaced.
    """
    def recorder(function: Callable[..., Any], qualified: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current:
                calls[qualified].add(current[0])
            return function(*args, **kwargs)

        return wrapper

    wrappers = {id(f): recorder(f, q) for q, f in functions.items()}
    replaced = 0
    for holder in gc.get_objects():
        if isinstance(holder, dict):  # module namespaces, tables of functions, instance dicts
            for key, value in list(holder.items()):
                wrapper = wrappers.get(id(value))
                if wrapper is not None and value is not wrapper:
                    holder[key] = wrapper
                    replaced += 1
        elif dataclasses.is_dataclass(holder) and not isinstance(holder, type):
            for field in dataclasses.fields(holder):  # a frozen dataclass (a spec's reference)
                wrapper = wrappers.get(id(getattr(holder, field.name, None)))
                if wrapper is not None:
                    object.__setattr__(holder, field.name, wrapper)
                    replaced += 1
    return replaced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="claim id or glob (default: every claim)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    functions = public_functions()
    calls: dict[str, set[str]] = defaultdict(set)
    current: list[str] = []
    instrument(functions, calls, current)  # before the proofs are loaded: they bind the wrappers
    claims = find_claims(args.only, load_claims())
    statuses = []
    for claim in claims:
        current[:] = [claim.id]
        result = verify_claim(claim, seed=args.seed)
        statuses.append((claim.id, result.status))
        print(f"  verified {claim.id}: {result.status}", file=sys.stderr, flush=True)
    current.clear()
    print("| reference function | claims whose legs call it |")
    print("|---|---|")
    missing = []
    for qualified in sorted(functions):
        users = sorted(calls.get(qualified, ()))
        if not users:
            missing.append(qualified)
        print(f"| `{qualified}` | {', '.join(f'`{u}`' for u in users) or '**none**'} |")
    failed = [claim_id for claim_id, status in statuses if status != "verified"]
    print(f"\n{len(functions) - len(missing)}/{len(functions)} functions called by some claim; "
          f"{len(claims)} claims verified ({len(failed)} not verified: {failed})")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
