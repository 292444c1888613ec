"""The ``rlmath`` command line.

Each sub-command lives in its own module of this package and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status). ``COMMANDS`` maps the
command name to that module; adding a command is one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rlmath._version import __version__

#: name -> (module inside ``rlmath.cli``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "verify": ("verify", "check every claim: symbolic, exact and Monte-Carlo legs, and mutants"),
    "docs": ("docs", "generate the documentation pages and figures from the claims (docs/)"),
    "frozenlake": (
        "frozenlake",
        "print J and the exact policy gradient of FrozenLake under a uniform policy",
    ),
    "check": ("check", "check an implementation against rlmath's reference (conformance)"),
    "audit": ("audit", "which objective does a loss's expected gradient follow (exact audit)"),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with one sub-parser per entry of ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="rlmath",
        description="Proves and checks the mathematics of policy-gradient RL, PPO and RLHF.",
    )
    parser.add_argument("--version", action="version", version=f"rlmath {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"rlmath.cli.{module_name}")
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlmath`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        print(f"rlmath {__version__}\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<12} {help_text}")
        return 0
    status: int = args._module.run(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
