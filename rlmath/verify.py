"""Find the claims in ``proofs/`` and run every leg on the claim and on each of its mutants.

A claim is *verified* when every leg passes on the true claim and every mutant is rejected by
every leg it applies to. ``proofs/`` is found next to the package in a source checkout, or as
``rlmath/_proofs`` inside an installed wheel (``pyproject.toml`` copies it there).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlmath.claims import Claim, LegResult, error_result
from rlmath.self_test import SelfTestResult

__all__ = [
    "ClaimResult",
    "MutantResult",
    "claim_index",
    "find_claims",
    "load_claims",
    "proofs_directory",
    "verify_claim",
    "verify_claims",
]

#: How a claim id is written in a proof file (``id="kebab-case"`` inside ``Claim(...)``).
_CLAIM_ID = re.compile(r'\bid="([a-z0-9][a-z0-9-]*)"')


def proofs_directory() -> Path:
    """The folder holding the claim files (installed copy first, then the source checkout)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_proofs", package.parent / "proofs"):
        if candidate.is_dir() and any(candidate.glob("*.py")):
            return candidate
    raise FileNotFoundError(
        f"no proofs folder found: looked for {package / '_proofs'} and {package.parent / 'proofs'}"
    )


def _load_module(path: Path) -> Any:
    name = f"rlmath_proofs.{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for broken files
        raise ImportError(f"cannot load proof file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _proof_files(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.glob("*.py")) if not p.name.startswith("_")]


def claim_index(directory: Path | None = None) -> dict[str, Path]:
    """Claim id -> the proof file that defines it, read from the files' text (no import).

    Each claim's ``id="..."`` must be written literally in its file; :func:`load_claims`
    checks that the index matches what the files define.
    """
    directory = proofs_directory() if directory is None else directory
    index: dict[str, Path] = {}
    for path in _proof_files(directory):
        for claim_id in _CLAIM_ID.findall(path.read_text(encoding="utf-8")):
            index.setdefault(claim_id, path)
    return index


def load_claims(
    directory: Path | None = None, *, files: Iterable[Path] | None = None
) -> list[Claim]:
    """Every claim of the ``proofs/*.py`` files (``CLAIMS`` tuple), in file then list order.

    Args:
        directory: the proofs folder (default :func:`proofs_directory`).
        files: only these proof files (as :func:`claim_index` maps ids to them).

    Raises:
        ValueError: if two claims share an id, or a claim's id is not written literally in
            its file (so that ``--only`` could not find it without importing everything).
    """
    directory = proofs_directory() if directory is None else directory
    paths = _proof_files(directory) if files is None else sorted(set(files))
    claims: list[Claim] = []
    for path in paths:
        module = _load_module(path)
        literal = set(_CLAIM_ID.findall(path.read_text(encoding="utf-8")))
        for claim in getattr(module, "CLAIMS", ()):
            if claim.id not in literal:
                raise ValueError(
                    f'claim {claim.id!r} in {path.name}: write its id literally (id="...") '
                    "so that rlmath verify --only can find the file without importing all"
                )
            claims.append(claim)
    ids = [c.id for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate claim ids in {directory}: {duplicates}")
    return claims


def find_claims(pattern: str | None = None, claims: Iterable[Claim] | None = None) -> list[Claim]:
    """Claims whose id matches ``pattern`` (an id or a shell glob, or several separated by
    commas); all when ``None``.

    Without ``claims``, only the proof files that define matching ids are imported.
    """
    patterns = [] if pattern is None else [p.strip() for p in pattern.split(",") if p.strip()]
    if pattern is not None and not patterns:
        raise ValueError(f"--only {pattern!r} names no claim id or glob")

    def matches(claim_id: str) -> bool:
        return any(fnmatch.fnmatchcase(claim_id, p) for p in patterns)

    if claims is None and pattern is not None:
        index = claim_index()
        wanted = sorted({path for cid, path in index.items() if matches(cid)})
        if not wanted:
            raise ValueError(f"--only {pattern!r} matches no claim; known ids: {', '.join(index)}")
        claims = load_claims(files=wanted)
    pool = list(load_claims() if claims is None else claims)
    if pattern is None:
        return pool
    chosen = [c for c in pool if matches(c.id)]
    if not chosen:
        known = ", ".join(c.id for c in pool)
        raise ValueError(f"--only {pattern!r} matches no claim; known ids: {known}")
    return chosen


@dataclass(frozen=True)
class MutantResult:
    """What each applicable leg said of the mutant: a rejection is a ``"failed"`` verdict.

    Attributes:
        id, description: the mutant's.
        verdicts: leg -> that leg's result on the mutant (status and how).
    """

    id: str
    description: str
    verdicts: dict[str, LegResult]

    @property
    def rejected_by(self) -> dict[str, bool]:
        """leg -> whether it rejected the mutant by a verdict."""
        return {leg: result.rejected for leg, result in self.verdicts.items()}

    @property
    def killed(self) -> bool:
        return all(result.rejected for result in self.verdicts.values())

    @property
    def defects(self) -> dict[str, str]:
        """leg -> why it reached no verdict (an exception, an inconclusive check)."""
        return {
            leg: result.failure or "no verdict"
            for leg, result in self.verdicts.items()
            if result.status == "error"
        }

    def how(self, leg: str) -> str:
        """One phrase: how ``leg`` judged the mutant."""
        result = self.verdicts[leg]
        if result.status == "verified":
            return "accepted (the mutant survived)"
        return result.failure or result.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "killed": self.killed,
            "rejected_by": self.rejected_by,
            "verdicts": {
                leg: {"status": r.status, "how": r.failure or "accepted"}
                for leg, r in self.verdicts.items()
            },
        }


@dataclass(frozen=True)
class ClaimResult:
    """Outcome of one claim: each leg's result and each mutant's."""

    claim: Claim
    legs: dict[str, LegResult]
    mutants: list[MutantResult]
    seed: int
    seconds: float = field(default=0.0)

    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return (
            not self.problems
            and all(leg.ok for leg in self.legs.values())
            and all(m.killed for m in self.mutants)
        )

    @property
    def errors(self) -> list[str]:
        """Defects: legs or mutants that raised or reached no verdict."""
        out = [f"{name}: {leg.failure}" for name, leg in self.legs.items() if leg.status == "error"]
        for mutant in self.mutants:
            for leg, why in mutant.defects.items():
                out.append(f"mutant {mutant.id!r}, {leg} leg: {why}")
        return out

    @property
    def status(self) -> str:
        return "verified" if self.verified else "failed"

    def failures(self) -> list[str]:
        """Sentences naming each failed leg and each surviving mutant."""
        out = list(self.problems)
        out += [
            f"{name}{' (error)' if leg.status == 'error' else ''}: {leg.failure}"
            for name, leg in self.legs.items()
            if not leg.ok
        ]
        for mutant in self.mutants:
            for leg, result in mutant.verdicts.items():
                if result.status == "verified":
                    out.append(
                        f"mutant {mutant.id!r} survived the {leg} leg ({mutant.description})"
                    )
                elif result.status == "error":
                    out.append(f"mutant {mutant.id!r}, {leg} leg (error): {result.failure}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.claim.id,
            "title": self.claim.title,
            "status": self.status,
            "seed": self.seed,
            "legs": {name: leg.to_dict() for name, leg in self.legs.items()},
            "mutants": [m.to_dict() for m in self.mutants],
            "problems": list(self.problems),
            "seconds": round(self.seconds, 3),
        }


def _verify_by_id(
    job: tuple[str, int],
) -> tuple[str, dict[str, LegResult], list[MutantResult], float, list[str]]:
    """Worker: verify the claim with this id (claims hold lambdas, so only ids travel)."""
    claim_id, seed = job
    try:
        (claim,) = find_claims(claim_id)
        result = verify_claim(claim, seed=seed)
    except Exception as exc:  # loading or running failed in the worker: an error, not a crash
        return claim_id, {"symbolic": error_result(f"verifying {claim_id}", exc)}, [], 0.0, []
    return claim_id, result.legs, result.mutants, result.seconds, result.problems


def verify_claims(
    claims: list[Claim],
    *,
    seed: int = 0,
    jobs: int = 1,
    on_done: Callable[[ClaimResult], None] | None = None,
) -> list[ClaimResult]:
    """Verify ``claims`` (in ``jobs`` worker processes when > 1); results in the input order.

    Every claim is independent and deterministic given ``seed``, so the results do not depend
    on ``jobs``. Workers are forked where the platform allows it (the claims are loaded from
    ``proofs/`` again in each worker when it is not).
    """
    _, results = verify_with_self_tests(
        claims, seed=seed, jobs=jobs, on_done=on_done, self_tests=False
    )
    return results


def _context() -> Any:
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def one_blas_thread() -> Any:
    """Limit this process's BLAS (OpenBLAS, MKL) to one thread, for the rest of its life.

    A verification's linear algebra is small (tabular models, short sequences), so BLAS
    threads buy nothing, and idle OpenBLAS threads busy-wait: with two workers on two cores,
    each worker's spinning thread took the other worker's core (measured: ``rlmath verify
    --jobs 2`` 70.7 s wall / 127 CPU s with the default two threads per worker, 45.6 s / 83 CPU
    s with one; ``--jobs 1`` 70.0 s / 69 CPU s). One thread also makes the sums of a run the
    same whichever ``--jobs`` it uses. The initializer of every verification worker; the
    returned limiter is also a context manager (``with one_blas_thread():``) that restores the
    previous limit on exit, for verification in the calling process.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def worker_pool(processes: int) -> Any:
    """A process pool whose workers run with one BLAS thread (:func:`one_blas_thread`)."""
    return _context().Pool(processes=processes, initializer=one_blas_thread)


class EarlySelfTests:
    """The self-tests, started in a process of their own before the proof files are loaded.

    Loading the proofs is serial (sympy builds every derivation); the self-tests need no
    claim, so they run beside the loading instead of taking a worker's time later. Pass the
    object as ``self_tests`` to :func:`verify_with_self_tests`, which collects the results.
    """

    def __init__(self) -> None:
        from rlmath.self_test import run_self_tests

        self._pool = worker_pool(1)
        self._pending = self._pool.apply_async(run_self_tests)

    def results(self) -> list[SelfTestResult]:
        try:
            return _self_test_outcome(self._pending)
        finally:
            self._pool.close()
            self._pool.join()

    def cancel(self) -> None:
        self._pool.terminate()
        self._pool.join()


def verify_with_self_tests(
    claims: list[Claim],
    *,
    seed: int = 0,
    jobs: int = 1,
    on_done: Callable[[ClaimResult], None] | None = None,
    self_tests: bool | EarlySelfTests = True,
    fail_fast: bool = False,
) -> tuple[list[SelfTestResult], list[ClaimResult]]:
    """:func:`rlmath.self_test.run_self_tests` (when ``self_tests``) and :func:`verify_claims`.

    With ``jobs > 1`` the self-tests run in a worker next to the claims, so they add no wall
    time to a parallel run (they take a few seconds of CPU, mostly sympy); an
    :class:`EarlySelfTests` already running is collected instead. With ``fail_fast``
    the run stops at the first claim that is not verified: the results then hold the claims
    finished so far (in the input order), and the run fails exactly when a full run would.
    """
    from rlmath.self_test import run_self_tests

    if isinstance(self_tests, EarlySelfTests):
        early = self_tests
        try:
            _, results = verify_with_self_tests(
                claims, seed=seed, jobs=jobs, on_done=on_done, self_tests=False,
                fail_fast=fail_fast,
            )
        except BaseException:
            early.cancel()
            raise
        return early.results(), results

    def in_this_process() -> list[ClaimResult]:
        results = []
        for claim in claims:
            results.append(verify_claim(claim, seed=seed))
            if on_done is not None:
                on_done(results[-1])
            if fail_fast and not results[-1].verified:
                break
        return results

    if jobs <= 1:
        with one_blas_thread():  # as in the workers
            checks = run_self_tests() if self_tests else []
            return checks, in_this_process()
    if len(claims) <= 1:
        # the claim object itself is verified here (it may not be the one its proof file
        # builds); the self-tests run beside it in one worker
        with one_blas_thread():
            if not self_tests:
                return [], in_this_process()
            with worker_pool(1) as pool:
                pending = pool.apply_async(run_self_tests)
                results = in_this_process()
                return _self_test_outcome(pending), results

    by_id = {c.id: c for c in claims}
    done: dict[str, ClaimResult] = {}
    # longest first would balance better, but claim cost is not known in advance
    with worker_pool(jobs) as pool:
        queued = pool.apply_async(run_self_tests) if self_tests else None
        for claim_id, legs, mutants, seconds, problems in pool.imap_unordered(
            _verify_by_id, [(c.id, seed) for c in claims]
        ):
            done[claim_id] = ClaimResult(by_id[claim_id], legs, mutants, seed, seconds, problems)
            if on_done is not None:
                on_done(done[claim_id])
            if fail_fast and not done[claim_id].verified:
                break
        checks = _self_test_outcome(queued)
    return checks, [done[c.id] for c in claims if c.id in done]


def _self_test_outcome(pending: Any) -> list[SelfTestResult]:
    """The self-tests' results from a worker; a worker that died is a failed self-test."""
    if pending is None:
        return []
    try:
        results: list[SelfTestResult] = pending.get()
    except Exception as exc:
        return [
            SelfTestResult("self-tests", False, f"the worker raised {type(exc).__name__}: {exc}")
        ]
    return results


def _run_leg(leg: Any, name: str, seed: int, variant: Any = None) -> LegResult:
    """``leg.run`` with every exception turned into an ``"error"`` result (never a traceback)."""
    start = time.perf_counter()
    try:
        result: LegResult = leg.run(seed) if variant is None else leg.run(seed, variant)
    except Exception as exc:
        return error_result(f"the {name} leg", exc, time.perf_counter() - start)
    return result


#: When True, a claim whose statement or exact rhs is not tied to its derivation, or whose
#: legs are not all exercised by mutants, fails verification (see Claim.coverage_problems).
STRICT_TIES = os.environ.get("RLMATH_STRICT_TIES", "1") != "0"


def verify_claim(
    claim: Claim, *, seed: int = 0, on_leg: Callable[[str], None] | None = None
) -> ClaimResult:
    """Run every leg of ``claim`` and every mutant through the legs it applies to.

    A mutant is rejected by a leg only when that leg ran to a verdict and said no
    (``"failed"``); an exception or an inconclusive check is an error of the mutant, and the
    claim is not verified.
    """
    start = time.perf_counter()
    legs = claim.legs()
    results: dict[str, LegResult] = {}
    for name, leg in legs.items():
        if on_leg is not None:
            on_leg(name)
        results[name] = _run_leg(leg, name, seed)
    mutants = []
    for mutant in claim.mutants:
        verdicts = {}
        try:
            variants = claim.mutant_variants(mutant)
        except Exception as exc:
            variants = {}
            verdicts["symbolic"] = error_result(f"mutant {mutant.id!r}'s variants", exc)
        for name, variant in variants.items():
            if on_leg is not None:
                on_leg(f"mutant {mutant.id} / {name}")
            verdicts[name] = _run_leg(legs[name], name, seed, variant)
        mutants.append(MutantResult(mutant.id, mutant.description, verdicts))
    problems = claim.coverage_problems() if STRICT_TIES else []
    return ClaimResult(claim, results, mutants, seed, time.perf_counter() - start, problems)
