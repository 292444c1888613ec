"""Find the claims in ``proofs/`` and run every leg on the claim and on each of its mutants.

A claim is *verified* when every leg passes on the true claim and every mutant is rejected by
every leg it applies to. ``proofs/`` is found next to the package in a source checkout, or as
``rlmath/_proofs`` inside an installed wheel (``pyproject.toml`` copies it there).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlmath.claims import Claim, LegResult

__all__ = [
    "ClaimResult",
    "MutantResult",
    "find_claims",
    "load_claims",
    "proofs_directory",
    "verify_claim",
]


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


def load_claims(directory: Path | None = None) -> list[Claim]:
    """Every claim of every ``proofs/*.py`` file (``CLAIMS`` tuple), in file then list order.

    Raises:
        ValueError: if two claims share an id.
    """
    directory = proofs_directory() if directory is None else directory
    claims: list[Claim] = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = _load_module(path)
        for claim in getattr(module, "CLAIMS", ()):
            claims.append(claim)
    ids = [c.id for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate claim ids in {directory}: {duplicates}")
    return claims


def find_claims(pattern: str | None = None, claims: Iterable[Claim] | None = None) -> list[Claim]:
    """Claims whose id matches ``pattern`` (an id or a shell glob); all when ``None``."""
    pool = list(load_claims() if claims is None else claims)
    if pattern is None:
        return pool
    chosen = [c for c in pool if fnmatch.fnmatchcase(c.id, pattern)]
    if not chosen:
        known = ", ".join(c.id for c in pool)
        raise ValueError(f"--only {pattern!r} matches no claim; known ids: {known}")
    return chosen


@dataclass(frozen=True)
class MutantResult:
    """Whether each applicable leg rejected the mutant."""

    id: str
    description: str
    rejected_by: dict[str, bool]

    @property
    def killed(self) -> bool:
        return all(self.rejected_by.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "killed": self.killed,
            "rejected_by": dict(self.rejected_by),
        }


@dataclass(frozen=True)
class ClaimResult:
    """Outcome of one claim: each leg's result and each mutant's."""

    claim: Claim
    legs: dict[str, LegResult]
    mutants: list[MutantResult]
    seed: int
    seconds: float = field(default=0.0)

    @property
    def verified(self) -> bool:
        return all(leg.ok for leg in self.legs.values()) and all(m.killed for m in self.mutants)

    @property
    def status(self) -> str:
        return "verified" if self.verified else "failed"

    def failures(self) -> list[str]:
        """Sentences naming each failed leg and each surviving mutant."""
        out = [f"{name}: {leg.failure}" for name, leg in self.legs.items() if not leg.ok]
        for mutant in self.mutants:
            for leg, rejected in mutant.rejected_by.items():
                if not rejected:
                    out.append(
                        f"mutant {mutant.id!r} survived the {leg} leg ({mutant.description})"
                    )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.claim.id,
            "title": self.claim.title,
            "status": self.status,
            "seed": self.seed,
            "legs": {name: leg.to_dict() for name, leg in self.legs.items()},
            "mutants": [m.to_dict() for m in self.mutants],
            "seconds": round(self.seconds, 3),
        }


def _verify_by_id(
    job: tuple[str, int],
) -> tuple[str, dict[str, LegResult], list[MutantResult], float]:
    """Worker: verify the claim with this id (claims hold lambdas, so only ids travel)."""
    claim_id, seed = job
    (claim,) = [c for c in load_claims() if c.id == claim_id]
    result = verify_claim(claim, seed=seed)
    return claim_id, result.legs, result.mutants, result.seconds


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
    if jobs <= 1 or len(claims) <= 1:
        results = []
        for claim in claims:
            results.append(verify_claim(claim, seed=seed))
            if on_done is not None:
                on_done(results[-1])
        return results
    import multiprocessing

    by_id = {c.id: c for c in claims}
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    done: dict[str, ClaimResult] = {}
    # longest first would balance better, but claim cost is not known in advance
    with context.Pool(processes=jobs) as pool:
        for claim_id, legs, mutants, seconds in pool.imap_unordered(
            _verify_by_id, [(c.id, seed) for c in claims]
        ):
            done[claim_id] = ClaimResult(by_id[claim_id], legs, mutants, seed, seconds)
            if on_done is not None:
                on_done(done[claim_id])
    return [done[c.id] for c in claims]


def verify_claim(
    claim: Claim, *, seed: int = 0, on_leg: Callable[[str], None] | None = None
) -> ClaimResult:
    """Run every leg of ``claim`` and every mutant through the legs it applies to."""
    start = time.perf_counter()
    legs = claim.legs()
    results: dict[str, LegResult] = {}
    for name, leg in legs.items():
        if on_leg is not None:
            on_leg(name)
        results[name] = leg.run(seed)
    mutants = []
    for mutant in claim.mutants:
        rejected = {}
        for name, variant in mutant.variants().items():
            if on_leg is not None:
                on_leg(f"mutant {mutant.id} / {name}")
            rejected[name] = not legs[name].run(seed, variant).ok
        mutants.append(MutantResult(mutant.id, mutant.description, rejected))
    return ClaimResult(claim, results, mutants, seed, time.perf_counter() - start)
