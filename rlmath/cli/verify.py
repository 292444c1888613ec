"""``rlmath verify``: run every claim's legs and mutants, print a table, optionally write JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rlmath.verify import ClaimResult, find_claims, verify_claims

LEG_ORDER = ("symbolic", "exact", "monte_carlo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", metavar="ID", help="a claim id or a shell glob (e.g. 'kl-*')")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (default 0)"
    )
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the full results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes (default: the number of CPUs); results do not depend on it",
    )


def _leg_cell(result: ClaimResult, leg: str) -> str:
    if leg not in result.legs:
        return "-"
    return "ok" if result.legs[leg].ok else "FAIL"


def format_table(results: list[ClaimResult]) -> str:
    """The summary table: claim, each leg's status, mutants rejected, seconds."""
    width = max([len("claim")] + [len(r.claim.id) for r in results])
    header = f"{'claim':<{width}}  {'symbolic':>8}  {'exact':>5}  {'monte_carlo':>11}  {'mutants':>7}  {'time':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        killed = sum(m.killed for m in r.mutants)
        lines.append(
            f"{r.claim.id:<{width}}  {_leg_cell(r, 'symbolic'):>8}  {_leg_cell(r, 'exact'):>5}  "
            f"{_leg_cell(r, 'monte_carlo'):>11}  {f'{killed}/{len(r.mutants)}':>7}  {r.seconds:>5.1f}s"
        )
    return "\n".join(lines)


def format_monte_carlo(results: list[ClaimResult]) -> str:
    """One line per Monte-Carlo example: estimate +- standard error vs the exact value, z, n."""
    lines = []
    for r in results:
        leg = r.legs.get("monte_carlo")
        if leg is None:
            continue
        for row in leg.evidence.get("examples", []):
            if "z" not in row:
                lines.append(f"  {r.claim.id} [example {row['example']}]: {row.get('failure')}")
                continue
            lines.append(
                f"  {r.claim.id} [example {row['example']}]: {row['estimate']:.6g} "
                f"+- {row['standard_error']:.2g} vs exact {row['reference']:.6g}, "
                f"z = {row['z']:+.2f} (|z| <= {row['critical_z']:.2f}; "
                f"worst of {row['components']} components), n = {row['samples']}"
            )
    if not lines:
        return ""
    return "Monte-Carlo evidence (worst component per example):\n" + "\n".join(lines)


def format_tables(results: list[ClaimResult]) -> str:
    """Every leg evidence key ``"table"`` (a list of flat dicts) as aligned rows, one block per leg."""
    blocks = []
    for r in results:
        for name, leg in r.legs.items():
            rows = leg.evidence.get("table") if isinstance(leg.evidence, dict) else None
            if not rows:
                continue
            columns = list(rows[0])
            cells = [
                [
                    f"{row.get(c):.4g}" if isinstance(row.get(c), float) else str(row.get(c))
                    for c in columns
                ]
                for row in rows
            ]
            widths = [max(len(c), *(len(line[k]) for line in cells)) for k, c in enumerate(columns)]
            lines = [
                f"{r.claim.id} ({name} leg):",
                "  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)),
            ]
            lines += [
                "  " + "  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True))
                for line in cells
            ]
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    try:
        claims = find_claims(args.only)
    except ValueError as error:
        print(f"rlmath verify: {error}", file=sys.stderr)
        return 2
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        print(f"rlmath verify: --jobs must be >= 1, got {jobs}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    finished = [0]

    def progress(result: ClaimResult) -> None:
        finished[0] += 1
        if not args.quiet:
            print(
                f"[{finished[0]}/{len(claims)}] {result.claim.id}: {result.status} "
                f"({result.seconds:.1f}s)",
                file=sys.stderr,
                flush=True,
            )

    results = verify_claims(claims, seed=args.seed, jobs=jobs, on_done=progress)
    total = time.perf_counter() - start
    print(format_table(results))
    monte_carlo = format_monte_carlo(results)
    if monte_carlo:
        print("\n" + monte_carlo)
    tables = format_tables(results)
    if tables:
        print("\n" + tables)
    failed = [r for r in results if not r.verified]
    n_mutants = sum(len(r.mutants) for r in results)
    n_killed = sum(m.killed for r in results for m in r.mutants)
    print(
        f"\n{len(results) - len(failed)}/{len(results)} claims verified, "
        f"{n_killed}/{n_mutants} mutants rejected, seed {args.seed}, {total:.1f}s"
    )
    if args.json is not None:
        payload = {
            "seed": args.seed,
            "seconds": round(total, 3),
            "claims": [r.to_dict() for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2, sort_keys=False, default=float) + "\n")
    for r in failed:
        print(f"\nFAILED {r.claim.id}:")
        for line in r.failures():
            print(f"  - {line}")
        print(f"  reproduce: rlmath verify --only {r.claim.id} --seed {args.seed}")
    return 1 if failed else 0
