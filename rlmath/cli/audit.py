"""``rlmath audit``: which objective does a loss's expected gradient follow?

Usage::

    rlmath audit TARGET [--family llm] [--objective NAME] [--models N] [--seed S]
                 [--group-size G] [--beta B] [--backend auto|torch|jax|numpy]
                 [--behaviour perturbed] [--ddof 0|1] [--std-epsilon E]
                 [--rewards binary|gaussian] [--tokens K] [--max-length L] [--prompts X]
                 [--param NAME=VALUE ...] [--json PATH]
    rlmath audit --list-objectives

TARGET is ``package.module:function`` or ``path/to/file.py:function`` (as in ``rlmath
check``), a loss with the calling convention of :mod:`rlmath.audit.engine` (family ``llm``) or
:mod:`rlmath.audit.actor_critic`. Exit status: 0 when the loss is unbiased for a named
objective or a fixed combination of them (for ``--objective NAME`` when given; ``--objective
0`` asks for a zero expected gradient), 1 when it is not (a zero expected gradient without
``--objective 0`` included), 2 on usage errors (reported in one line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlmath.cli.check import _absolute_target, _parse_params

USAGE_ERROR = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rlmath audit``."""
    parser.add_argument(
        "target", nargs="?", help="package.module:function or path/file.py:function"
    )
    parser.add_argument("--family", default="llm", choices=("llm", "actor-critic"))
    parser.add_argument(
        "--objective", default=None, help="the objective the loss should follow (default: any)"
    )
    parser.add_argument("--models", type=int, default=5, help="generated models (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the models (default 0)")
    parser.add_argument("--group-size", type=int, default=4, help="G (default 4)")
    parser.add_argument("--beta", type=float, default=0.1, help="beta of the objectives (0.1)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "jax", "numpy"))
    parser.add_argument(
        "--behaviour",
        default=None,
        help="'perturbed' (or a scale): sample from an inference engine near pi_old",
    )
    parser.add_argument("--ddof", type=int, default=1, help="std ddof of prompt-reweighted J")
    parser.add_argument(
        "--std-epsilon", type=float, default=0.0, help="std epsilon of prompt-reweighted J"
    )
    parser.add_argument("--rewards", default="binary", choices=("binary", "gaussian"))
    parser.add_argument("--tokens", type=int, default=2, help="ordinary tokens K (default 2)")
    parser.add_argument("--max-length", type=int, default=2, help="L (default 2)")
    parser.add_argument("--prompts", type=int, default=2, help="prompts X (default 2)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a constant keyword argument of the loss, e.g. --param clip=0.2 (repeatable)",
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the report")
    parser.add_argument(
        "--list-objectives", action="store_true", help="list the named objectives and exit"
    )


def run(args: argparse.Namespace) -> int:
    """Run the command; return the exit status."""
    from rlmath.audit import audit, named_objectives
    from rlmath.conformance import load_target
    from rlmath.sequence_model import SequenceModel

    try:
        if args.list_objectives:
            model = SequenceModel.random(2, 2, 2, seed=0)
            library = named_objectives(model, behaviour=model)
            for name, entry in library.items():
                print(f"{name:<28} {entry.sense:<9} {entry.description}")
            return 0
        if not args.target:
            raise ValueError("give TARGET (module:function or file.py:function)")
        behaviour = args.behaviour
        if behaviour is not None and behaviour != "perturbed":
            behaviour = float(behaviour)
        target = _absolute_target(args.target)
        loss = load_target(target)
        report = audit(
            loss,
            family=args.family,
            n_models=args.models,
            seed=args.seed,
            group_size=args.group_size,
            beta=args.beta,
            objective=args.objective,
            behaviour=behaviour,
            backend=args.backend,
            ddof=args.ddof,
            std_epsilon=args.std_epsilon,
            rewards=args.rewards,
            n_prompts=args.prompts,
            n_tokens=args.tokens,
            max_length=args.max_length,
            **_parse_params(args.param),
        )
    except (ValueError, TypeError) as error:
        print(f"rlmath audit: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(f"rlmath audit {target}")
    print(report.summary())
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        except OSError as error:
            print(f"rlmath audit: error: cannot write --json: {error}", file=sys.stderr)
            return USAGE_ERROR
    return 0 if report.passed else 1
