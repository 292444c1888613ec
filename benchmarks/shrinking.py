"""How small are the failing inputs that ``rlmath check`` reports? (shrinking quality)

Run: ``python benchmarks/shrinking.py`` from the repository root (it imports the project's
mutants from ``tests/implementations``). For every mutant of a sequence spec, the reported
(shrunk) input is tested for **1-minimality**: no input obtained by deleting one time step
still fails. Printed: per mutant the reported length T and whether it is 1-minimal, then the
share that is 1-minimal and the share with T = 1. The shrinking budget is
``rlmath.conformance.SHRINK_EXAMPLES`` examples after the first failure, then at most
``REDUCE_EVALUATIONS`` step deletions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from implementations.numpy_mutants import MUTANTS  # noqa: E402

from rlmath.conformance import SHRINK_EXAMPLES, _assess, _run_implementation, check  # noqa: E402
from rlmath.specs import Example, get_spec  # noqa: E402

SEQUENCE_SPECS = {
    "discounted_returns",
    "temporal_difference_errors",
    "generalized_advantage_estimation",
    "lambda_returns",
}


def deleted(example: Example, step: int) -> Example:
    arguments = {
        name: (np.delete(value, step, axis=0) if value.ndim >= 1 else value)
        for name, value in example.arguments.items()
    }
    return Example(arguments, dict(example.hyperparameters))


def fails(impl, spec, example: Example) -> bool:
    produced = _run_implementation(impl, spec, example, "numpy", np.dtype(np.float64))
    if not hasattr(produced, "parts"):
        return True
    with np.errstate(all="ignore"):
        return _assess(spec, example, np.dtype(np.float64), produced) is not None


def main() -> None:
    rows = []
    for spec_name, impl, _kind, description in MUTANTS:
        if spec_name not in SEQUENCE_SPECS:
            continue
        spec = get_spec(spec_name)
        report = check(impl, spec, seed=0, examples=200)
        if report.conforms:
            rows.append((spec_name, description, None, None))
            continue
        example = report.failure.example
        steps = len(example.arguments["rewards"])
        minimal = steps == 1 or not any(
            fails(impl, spec, deleted(example, k)) for k in range(steps)
        )
        rows.append((spec_name, description, steps, minimal))
    for spec_name, description, steps, minimal in rows:
        shown = "not rejected" if steps is None else f"T = {steps}, 1-minimal: {minimal}"
        print(f"{spec_name:34} {description:45} {shown}")
    judged = [r for r in rows if r[2] is not None]
    share_minimal = sum(bool(r[3]) for r in judged) / len(judged)
    share_one = sum(r[2] == 1 for r in judged) / len(judged)
    print(
        f"\n{len(judged)} sequence mutants, shrink budget {SHRINK_EXAMPLES} examples: "
        f"{share_minimal:.0%} 1-minimal, {share_one:.0%} with T = 1"
    )


if __name__ == "__main__":
    main()
