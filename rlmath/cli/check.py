"""``rlmath check``: check an implementation against rlmath's reference.

Usage::

    rlmath check TARGET --spec NAME [--examples N] [--seed N] [--param NAME=VALUE ...]
                 [--framework auto|numpy|torch|jax] [--dtype float64|float32]
                 [--timeout S] [--total-timeout S] [--memory-limit BYTES] [--in-process]
                 [--json PATH]
    rlmath check --list
    rlmath check --describe NAME

TARGET is ``package.module:function`` or ``path/to/file.py:function``. Exit status: 0 when
the implementation conforms, 1 when it does not (the report is printed; this includes an
implementation that exits, crashes or times out in its worker process), 2 on usage errors
(unknown spec, bad --param, a framework that is not installed, a signature that cannot take
the spec's call), each reported in one line.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from rlmath.conformance import FRAMEWORKS, check, load_target
from rlmath.specs import SPECS, get_spec

USAGE_ERROR = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rlmath check``."""
    parser.add_argument(
        "target", nargs="?", help="package.module:function or path/file.py:function"
    )
    parser.add_argument("--spec", help="name of the spec to check against (see --list)")
    parser.add_argument("--examples", type=int, default=100, help="generated inputs (default 100)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default random)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a hyperparameter instead of drawing it, e.g. --param ddof=1 (repeatable)",
    )
    parser.add_argument("--framework", default="auto", choices=("auto", *FRAMEWORKS))
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument(
        "--assume",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a contract option of the spec (see --describe), e.g. --assume max_abs_log_ratio=20",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds one example may take in the worker (default 30)",
    )
    parser.add_argument(
        "--total-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds the whole check may take (default 600)",
    )
    parser.add_argument(
        "--memory-limit",
        type=int,
        default=None,
        metavar="BYTES",
        help="address-space limit of the worker process (POSIX; default none)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the implementation in this process (debugging; no time limits)",
    )
    parser.add_argument(
        "--json", metavar="PATH", default=None, help="also write the report as JSON"
    )
    parser.add_argument("--list", action="store_true", help="list the specs and their signatures")
    parser.add_argument("--describe", metavar="NAME", help="print one spec's conventions")


def _parse_params(items: list[str], option: str = "--param") -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{option} must be NAME=VALUE, got {item!r}")
        if text in ("true", "false"):
            params[name] = text == "true"
            continue
        try:
            params[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError) as error:
            try:
                params[name] = float(text)  # inf, -inf (literal_eval does not read them)
            except ValueError:
                if not text.replace("_", "").replace("-", "").isalnum():
                    raise ValueError(
                        f"{option} {name}: value must be a number, true/false or a word, "
                        f"got {text!r}"
                    ) from error
                params[name] = text  # a bare word: a string option such as loss_type=ipo
    return params


def run(args: argparse.Namespace) -> int:
    """Run the command; return the exit status."""
    if args.list:
        width = max(len(name) for name in SPECS)
        for name, spec in SPECS.items():
            print(f"{name:<{width}}  {spec.signature}")
        return 0
    try:
        if args.describe:
            print(get_spec(args.describe).describe())
            return 0
        if not args.target or not args.spec:
            raise ValueError("give TARGET and --spec NAME (or --list, or --describe NAME)")
        spec = get_spec(args.spec)
        target = _absolute_target(args.target)
        impl = load_target(target)
        report = check(
            impl,
            spec,
            examples=args.examples,
            seed=args.seed,
            hyperparameters=_parse_params(args.param),
            framework=args.framework,
            dtype=args.dtype,
            target=target,
            isolation="none" if args.in_process else "process",
            timeout=args.timeout,
            total_timeout=args.total_timeout,
            memory_limit=args.memory_limit,
            assume=_parse_params(args.assume, option="--assume"),
        )
    except (ValueError, TypeError) as error:
        print(f"rlmath check: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(report)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        except OSError as error:
            print(f"rlmath check: error: cannot write --json: {error}", file=sys.stderr)
            return USAGE_ERROR
    return 0 if report.conforms else 1


def _absolute_target(target: str) -> str:
    """``path/file.py:function`` with an absolute path, so the printed reproducer runs anywhere."""
    location, sep, attribute = target.rpartition(":")
    if sep and location.endswith(".py"):
        return f"{Path(location).resolve()}:{attribute}"
    return target
