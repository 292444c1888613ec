"""``rlmath docs``: generate the documentation pages (and figures) from the claims."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rlmath.claims import Claim
from rlmath.docs import (
    SEED,
    compute_evidence,
    extra_pages_in,
    findings,
    generate,
    markdown_pages,
    plot_files,
    stale_files,
)
from rlmath.verify import load_claims


def _jobs(args: argparse.Namespace) -> int:
    return max(1, args.jobs if args.jobs is not None else (os.cpu_count() or 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("docs"), help="output folder (default: docs/)"
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, help=f"seed of the verify run (default {SEED})"
    )
    parser.add_argument(
        "--no-plots", action="store_true", help="skip the figures (no matplotlib needed)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the folder differs from what would be generated",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for the verify run (default: the number of CPUs)",
    )


def _report_findings(claims: list[Claim]) -> None:
    """Print what the pages show in a degraded form (missing summaries, merged steps)."""
    notes = findings(claims)
    for note in notes:
        print(f"note: {note}")
    if notes:
        print(f"rlmath docs: {len(notes)} notes (missing summaries, steps that print the same)")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out: Path = args.out

    def progress(claim_id: str) -> None:
        if not args.quiet:
            print(f"verify {claim_id}", file=sys.stderr, flush=True)

    if args.check:
        claims = load_claims()
        _report_findings(claims)
        records = compute_evidence(claims, seed=args.seed, progress=progress, jobs=_jobs(args))
        expected: dict[str, bytes] = {
            path: text.encode("utf-8")
            for path, text in markdown_pages(
                claims, records, extra_pages=extra_pages_in(out)
            ).items()
        }
        if not args.no_plots:
            expected.update(plot_files())
        from rlmath.docs.audit_page import unreproducible_files

        skipped = [path for path in unreproducible_files() if path in expected]
        for path in skipped:
            print(f"not compared: {out / path} (PyTorch is not installed; its rows need it)")
        differing = [
            path
            for path, content in expected.items()
            if path not in skipped
            and (not (out / path).is_file() or (out / path).read_bytes() != content)
        ]
        stale = [
            path
            for path in stale_files(out, expected)
            if not (args.no_plots and path.startswith("plots/"))
        ]
        for path in differing:
            print(f"out of date: {out / path}")
        for path in stale:
            print(f"not generated (stale): {out / path}")
        if differing or stale:
            print("rlmath docs: the documentation is out of date; run `rlmath docs`")
            return 1
        print(f"rlmath docs: {len(expected)} files up to date ({time.perf_counter() - start:.1f}s)")
        return 0

    claims = load_claims()
    _report_findings(claims)
    files = generate(
        out,
        seed=args.seed,
        claims=claims,
        plots=not args.no_plots,
        progress=progress,
        jobs=_jobs(args),
    )
    print(f"rlmath docs: wrote {len(files)} files to {out} ({time.perf_counter() - start:.1f}s)")
    return 0
