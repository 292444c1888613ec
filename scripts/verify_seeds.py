"""Run ``rlmath verify`` over many seeds and report every failure (opt-in; slow).

Usage::

    python scripts/verify_seeds.py --seeds 0:200 [--only GLOB] [--jobs N] [--json PATH]

Each worker takes one claim and runs it for every seed in the range, so sympy's proofs (cached
per process in :mod:`rlmath.symbolic`) are paid once per claim, not once per seed; the results
are the same as ``rlmath verify --only ID --seed S`` for each pair (a claim's verification is
deterministic given its seed). Exit status 1 if any (claim, seed) fails, with the command that
reproduces it. ``tests/test_proofs.py::test_every_claim_is_verified_for_many_seeds`` (marked
``slow``) runs this over 200 seeds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any


def _parse_seeds(text: str) -> range:
    start, _, stop = text.partition(":")
    if not stop:
        return range(int(start), int(start) + 1)
    return range(int(start), int(stop))


def verify_over_seeds(job: tuple[str, list[int]]) -> list[dict[str, Any]]:
    """Worker: verify claim ``job[0]`` at every seed of ``job[1]``; one record per failure."""
    from rlmath.verify import find_claims, verify_claim

    claim_id, seeds = job
    (claim,) = find_claims(claim_id)
    failures = []
    for seed in seeds:
        result = verify_claim(claim, seed=seed)
        if not result.verified:
            failures.append({"claim": claim_id, "seed": seed, "failures": result.failures()})
    return failures


def run(seeds: range, only: str | None, jobs: int) -> tuple[list[dict[str, Any]], int]:
    from rlmath.verify import find_claims

    ids = [c.id for c in find_claims(only)]
    work = [(claim_id, list(seeds)) for claim_id in ids]
    start = time.perf_counter()
    results: list[list[dict[str, Any]]] = []

    def report(claim_id: str, failures: list[dict[str, Any]]) -> None:
        # one line per finished claim, so that a run stopped early still says what it covered
        results.append(failures)
        print(
            f"[{len(results)}/{len(ids)}] {claim_id}: {len(seeds) - len(failures)}/{len(seeds)} "
            f"seeds verified ({time.perf_counter() - start:.0f}s)",
            flush=True,
        )

    if jobs <= 1:
        for job in work:
            report(job[0], verify_over_seeds(job))
    else:
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with context.Pool(processes=jobs) as pool:
            for claim_id, failures in pool.imap_unordered(_verify_job, work, chunksize=1):
                report(claim_id, failures)
    return [f for batch in results for f in batch], len(ids)


def _verify_job(job: tuple[str, list[int]]) -> tuple[str, list[dict[str, Any]]]:
    return job[0], verify_over_seeds(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0:200", help="START:STOP (default 0:200)")
    parser.add_argument("--only", default=None, help="a claim id or glob")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = _parse_seeds(args.seeds)
    start = time.perf_counter()
    failures, n_claims = run(seeds, args.only, args.jobs)
    seconds = time.perf_counter() - start
    for failure in failures:
        print(f"FAILED {failure['claim']} at seed {failure['seed']}:")
        for line in failure["failures"]:
            print(f"  - {line}")
        print(f"  reproduce: rlmath verify --only {failure['claim']} --seed {failure['seed']}")
    print(
        f"{n_claims} claims x {len(seeds)} seeds ({seeds.start}..{seeds.stop - 1}): "
        f"{len(failures)} failures, {seconds:.0f}s"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"seeds": [seeds.start, seeds.stop], "failures": failures}, indent=2) + "\n"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
