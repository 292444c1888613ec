"""Run ``rlmath verify`` over many seeds and report every failure (opt-in; slow).

Usage::

    python scripts/verify_seeds.py --seeds 0:200 [--only GLOB] [--jobs N] [--json PATH]

Each job is one claim and a chunk of ``--chunk`` seeds (default 50), so sympy's proofs (cached
per process in :mod:`rlmath.symbolic`) are paid once per chunk, not once per seed, and every
failure is printed as soon as its chunk is done (a long run stopped early still shows what it
found), then once more in the summary at the end; the results
are the same as ``rlmath verify --only ID --seed S`` for each pair (a claim's verification is
deterministic given its seed). Exit status 1 if any (claim, seed) fails, with the command that
reproduces it. ``tests/test_proofs.py::test_every_claim_is_verified_for_many_seeds`` (marked
``slow``) runs this over 200 seeds.
"""

from __future__ import annotations

import argparse
import json
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


def _print_failure(failure: dict[str, Any]) -> None:
    print(f"FAILED {failure['claim']} at seed {failure['seed']}:", flush=True)
    for line in failure["failures"]:
        print(f"  - {line}")
    print(f"  reproduce: rlmath verify --only {failure['claim']} --seed {failure['seed']}")


def run(
    seeds: range, only: str | None, jobs: int, chunk: int = 50
) -> tuple[list[dict[str, Any]], int]:
    from rlmath.verify import find_claims

    ids = [c.id for c in find_claims(only)]
    seed_list = list(seeds)
    work = [
        (claim_id, seed_list[i : i + chunk])
        for claim_id in ids
        for i in range(0, len(seed_list), chunk)
    ]
    start = time.perf_counter()
    failures: list[dict[str, Any]] = []
    done: dict[str, int] = dict.fromkeys(ids, 0)
    failed: dict[str, int] = dict.fromkeys(ids, 0)

    def report(claim_id: str, n_seeds: int, found: list[dict[str, Any]]) -> None:
        # failures as they come, and one line per finished claim
        for failure in found:
            _print_failure(failure)
        failures.extend(found)
        done[claim_id] += n_seeds
        failed[claim_id] += len(found)
        if done[claim_id] == len(seed_list):
            finished = sum(n == len(seed_list) for n in done.values())
            print(
                f"[{finished}/{len(ids)}] {claim_id}: "
                f"{len(seed_list) - failed[claim_id]}/{len(seed_list)} "
                f"seeds verified ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )

    from rlmath.verify import one_blas_thread, worker_pool

    if jobs <= 1:
        with one_blas_thread():  # as rlmath verify runs
            for job in work:
                report(job[0], len(job[1]), verify_over_seeds(job))
    else:
        with worker_pool(jobs) as pool:
            for claim_id, n_seeds, found in pool.imap_unordered(_verify_job, work, chunksize=1):
                report(claim_id, n_seeds, found)
    failures.sort(key=lambda f: (ids.index(f["claim"]), f["seed"]))
    return failures, len(ids)


def _verify_job(job: tuple[str, list[int]]) -> tuple[str, int, list[dict[str, Any]]]:
    return job[0], len(job[1]), verify_over_seeds(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0:200", help="START:STOP (default 0:200)")
    parser.add_argument("--only", default=None, help="a claim id or glob")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--chunk", type=int, default=50, help="seeds per job (default 50)")
    args = parser.parse_args(argv)
    seeds = _parse_seeds(args.seeds)
    start = time.perf_counter()
    if args.chunk < 1:
        parser.error(f"--chunk must be >= 1, got {args.chunk}")
    failures, n_claims = run(seeds, args.only, args.jobs, args.chunk)
    seconds = time.perf_counter() - start
    if failures:
        print("\nsummary of the failures:")
    for failure in failures:
        _print_failure(failure)
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
