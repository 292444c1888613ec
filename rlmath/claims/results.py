"""What a leg says: a verdict (``verified`` / ``failed``) or a defect (``error``).

Only a *verdict* counts. A leg that ran to the end and found the claim false (a step refuted at
a point, an error above tolerance, a z-score beyond the critical value) has status
``"failed"``; a leg that could not reach a verdict (an exception, an inconclusive refutation, a
control that did not fail) has status ``"error"``. On the true claim both are failures; on a
mutant only ``"failed"`` is a rejection, and ``"error"`` is a defect of the mutant (or of the
leg) that ``rlmath verify`` reports and exits non-zero for.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["Leg", "LegResult", "Status", "error_result"]

Status = Literal["verified", "failed", "error"]


@dataclass(frozen=True)
class LegResult:
    """Outcome of one leg on the true claim or on one mutant.

    Attributes:
        status: ``"verified"`` (ran, claim holds), ``"failed"`` (ran, claim is false: a
            verdict) or ``"error"`` (no verdict: an exception or an inconclusive check).
        evidence: JSON-ready numbers and facts (examples run, max error, tolerance, the
            control's outcome, ...).
        failure: for a failed or errored leg, a sentence naming what failed and how (the step
            and the refuting point, the example and its error, the z-score).
        seconds: wall time of the leg.
    """

    status: Status
    evidence: Mapping[str, Any] = field(default_factory=dict)
    failure: str | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in ("verified", "failed", "error"):
            raise ValueError(f"status must be verified, failed or error, got {self.status!r}")

    @property
    def ok(self) -> bool:
        """The leg ran and the claim holds."""
        return self.status == "verified"

    @property
    def rejected(self) -> bool:
        """The leg ran to a verdict and said no (what rejecting a mutant means)."""
        return self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, **self.evidence}
        if self.failure is not None:
            out["failure"] = self.failure
        out["seconds"] = round(self.seconds, 3)
        return out


def error_result(where: str, exc: BaseException, seconds: float = 0.0) -> LegResult:
    """An ``"error"`` result for an exception raised while running ``where``."""
    frames = traceback.extract_tb(exc.__traceback__)
    origin = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return LegResult(
        "error",
        {"exception": type(exc).__name__},
        f"{where} raised {type(exc).__name__}: {exc}{origin}",
        seconds,
    )


class Leg(Protocol):
    """What every leg offers: a name and ``run(seed, variant)``; ``control(seed)`` must fail."""

    @property
    def name(self) -> str: ...

    def run(self, seed: int, variant: Any = None) -> LegResult: ...
