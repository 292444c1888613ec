"""``rlmath verify``: run every claim's legs and mutants, print a table, optionally write JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rlmath.self_test import SelfTestResult
from rlmath.verify import ClaimResult, EarlySelfTests, find_claims, verify_with_self_tests

LEG_ORDER = ("symbolic", "exact", "monte_carlo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", metavar="ID", help="a claim id or a shell glob (e.g. 'kl-*')")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (default 0)"
    )
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the full results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first claim that fails (the exit status is that of a full run)",
    )
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
    status = result.legs[leg].status
    return {"verified": "ok", "failed": "FAIL", "error": "ERROR"}[status]


def format_table(results: list[ClaimResult]) -> str:
    """The summary table: claim, each leg's status, mutants rejected, seconds."""
    width = max([len("claim")] + [len(r.claim.id) for r in results])
    header = f"{'claim':<{width}}  {'symbolic':>8}  {'exact':>5}  {'monte_carlo':>11}  {'mutants':>7}  {'time':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        killed = sum(m.killed for m in r.mutants)
        if any(m.defects for m in r.mutants):
            killed_cell = f"{killed}/{len(r.mutants)}!"
        else:
            killed_cell = f"{killed}/{len(r.mutants)}"
        lines.append(
            f"{r.claim.id:<{width}}  {_leg_cell(r, 'symbolic'):>8}  {_leg_cell(r, 'exact'):>5}  "
            f"{_leg_cell(r, 'monte_carlo'):>11}  {killed_cell:>7}  {r.seconds:>5.1f}s"
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


def format_mutants(results: list[ClaimResult]) -> str:
    """Which legs rejected each mutant, and how (the verdict's own words, shortened)."""
    lines = []
    for r in results:
        for mutant in r.mutants:
            parts = []
            for leg, result in mutant.verdicts.items():
                word = {"failed": "rejected", "verified": "ACCEPTED", "error": "NO VERDICT"}[
                    result.status
                ]
                how = (result.failure or "").replace("\n", " ")
                if len(how) > 110:
                    how = how[:107] + "..."
                parts.append(f"{leg} {word}" + (f" ({how})" if how else ""))
            lines.append(f"  {r.claim.id} / {mutant.id}: " + "; ".join(parts))
    if not lines:
        return ""
    return "Mutants (which legs rejected each, and how):\n" + "\n".join(lines)


def format_flags(results: list[ClaimResult]) -> str:
    """Steps proved only as "identical", and parts of a claim that are not tied together."""
    lines = []
    for r in results:
        symbolic = r.legs.get("symbolic")
        identical = symbolic.evidence.get("identical_steps", []) if symbolic is not None else []
        for step in identical:
            lines.append(f"  {r.claim.id}: proved as 'identical' (rule not exercised): {step}")
        for problem in r.claim.coverage_problems():
            lines.append(f"  {r.claim.id}: {problem}")
    if not lines:
        return ""
    return "Flags:\n" + "\n".join(lines)


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


def format_self_tests(checks: list[SelfTestResult]) -> str:
    """One line per self-test of the machinery (prover, verdict rules, tolerances)."""
    passed = sum(c.passed for c in checks)
    lines = [f"Self-tests of the machinery that judges the claims: {passed}/{len(checks)} passed"]
    for check in checks:
        mark = "ok" if check.passed else "FAILED"
        lines.append(f"  {mark:>6}  {check.name}: {check.detail} ({check.seconds:.1f}s)")
    return "\n".join(lines)


def _check_writable(path: Path) -> str | None:
    """Why ``path`` cannot be written (checked before the run), or None."""
    target = path if path.exists() else path.parent
    if path.exists() and path.is_dir():
        return f"--json {path}: is a directory"
    if not target.exists():
        return f"--json {path}: folder {path.parent} does not exist"
    if not os.access(target, os.W_OK):
        return f"--json {path}: not writable"
    return None


def _cancel(self_tests: bool | EarlySelfTests) -> None:
    if isinstance(self_tests, EarlySelfTests):
        self_tests.cancel()


def run(args: argparse.Namespace) -> int:
    if args.json is not None:
        problem = _check_writable(args.json)
        if problem is not None:
            print(f"rlmath verify: {problem}", file=sys.stderr)
            return 2
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        print(f"rlmath verify: --jobs must be >= 1, got {jobs}", file=sys.stderr)
        return 2
    start = time.perf_counter()  # the time reported includes loading the proof files
    # with workers to spare, the self-tests run while the proof files load
    self_tests: bool | EarlySelfTests = EarlySelfTests() if jobs > 1 else True
    try:
        claims = find_claims(args.only)
    except ValueError as error:
        _cancel(self_tests)
        print(f"rlmath verify: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a proof file that does not import is a defect, not a usage error
        _cancel(self_tests)
        print(
            f"rlmath verify: loading the proofs failed: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 1
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

    checks, results = verify_with_self_tests(
        claims,
        seed=args.seed,
        jobs=jobs,
        on_done=progress,
        fail_fast=args.fail_fast,
        self_tests=self_tests,
    )
    total = time.perf_counter() - start
    print(format_table(results))
    print("\n" + format_self_tests(checks))
    monte_carlo = format_monte_carlo(results)
    if monte_carlo:
        print("\n" + monte_carlo)
    tables = format_tables(results)
    if tables:
        print("\n" + tables)
    for block in (format_mutants(results), format_flags(results)):
        if block:
            print("\n" + block)
    failed = [r for r in results if not r.verified]
    broken = [c for c in checks if not c.passed]
    n_mutants = sum(len(r.mutants) for r in results)
    n_killed = sum(m.killed for r in results for m in r.mutants)
    n_errors = sum(len(r.errors) for r in results)
    print(
        f"\n{len(results) - len(failed)}/{len(results)} claims verified, "
        f"{n_killed}/{n_mutants} mutants rejected, {n_errors} errors, "
        f"{len(checks) - len(broken)}/{len(checks)} self-tests passed, seed {args.seed}, "
        f"{total:.1f}s"
    )
    if args.json is not None:
        payload = {
            "seed": args.seed,
            "seconds": round(total, 3),
            "self_tests": [c.to_dict() for c in checks],
            "claims": [r.to_dict() for r in results],
        }
        try:
            args.json.write_text(
                json.dumps(payload, indent=2, sort_keys=False, default=float) + "\n"
            )
        except OSError as error:
            print(f"rlmath verify: writing --json failed: {error}", file=sys.stderr)
            return 1
    for r in failed:
        print(f"\nFAILED {r.claim.id}:")
        for line in r.failures():
            print(f"  - {line}")
        print(f"  reproduce: rlmath verify --only {r.claim.id} --seed {args.seed}")
    if len(results) < len(claims):
        print(
            f"\nstopped at the first failure (--fail-fast): {len(results)} of {len(claims)} claims run"
        )
    for check in broken:
        print(f"\nFAILED self-test {check.name!r}: {check.detail}")
        print("  the machinery that judges the claims is wrong: no verdict above can be trusted")
    return 1 if failed or broken else 0
