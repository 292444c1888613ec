r"""The exact leg: both sides computed exactly on generated examples and compared.

The left-hand side is computed *independently* of the derivation (enumeration, finite or
complex-step differences, linear algebra, another algorithm); the right-hand side is the
derivation's conclusion turned into NumPy by ``sympy.lambdify`` (the claim does this when the
leg names ``symbols`` and ``arguments``), so a claim cannot compare a formula with itself
without saying so: an explicit ``rhs`` needs an ``rhs_reason``, shown in the report and docs.

Verdicts: an error above tolerance on some example is ``"failed"`` (the example is shrunk and
reported). An exception on either side, or in the tolerance, is ``"error"`` (no verdict). On the
true claim, a **control** then runs: the right-hand side shifted by a thousand tolerances on
the first examples must fail, else the leg reports ``"error"`` (it could not fail).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import example as hypothesis_example
from hypothesis import seed as hypothesis_seed
from hypothesis.strategies import SearchStrategy

from rlmath.claims.reproducibility import draw_examples, seed_only_generation
from rlmath.claims.results import LegResult, error_result
from rlmath.claims.symbolic_leg import Relation
from rlmath.tolerances import MAX_EXACT_RTOL

__all__ = [
    "CONTROL_SHIFT",
    "ExactLeg",
    "ExactVariant",
    "absolute_error",
    "normwise_error",
    "violation",
]

#: What a mutant hands the exact leg: example -> its (wrong) right-hand side.
ExactVariant = Callable[[Any], Any]

#: The control shifts the right-hand side by this many tolerances (relative to the scale).
CONTROL_SHIFT = 1e3

#: Examples the control runs on (the first ones the seed draws).
CONTROL_EXAMPLES = 3


def normwise_error(lhs: Any, rhs: Any) -> float:
    r"""$\|\ell - r\|_\infty / \max(\|\ell\|_\infty, \|r\|_\infty)$ (0 when both are 0; inf on shape mismatch)."""
    left, right = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
    if left.shape != right.shape:
        return math.inf
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        return math.inf
    scale = max(float(np.abs(left).max(initial=0.0)), float(np.abs(right).max(initial=0.0)))
    difference = float(np.abs(left - right).max(initial=0.0))
    if difference == 0.0:
        return 0.0
    return difference / scale


def absolute_error(lhs: Any, rhs: Any) -> float:
    r"""$\|\ell - r\|_\infty$ (inf on a shape mismatch or a non-finite entry)."""
    left, right = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
    if left.shape != right.shape or not (np.isfinite(left).all() and np.isfinite(right).all()):
        return math.inf
    return float(np.abs(left - right).max(initial=0.0))


def violation(lhs: Any, rhs: Any, relation: Relation) -> float:
    """How much ``lhs relation rhs`` is violated, relative to the scale (0 when it holds)."""
    if relation == "=":
        return normwise_error(lhs, rhs)
    left, right = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
    if left.shape != right.shape and right.shape != () and left.shape != ():
        return math.inf
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        return math.inf
    excess = left - right if relation == "<=" else right - left
    scale = max(float(np.abs(left).max(initial=0.0)), float(np.abs(right).max(initial=0.0)), 1.0)
    worst = float(np.max(excess, initial=-math.inf))
    return max(worst, 0.0) / scale


_UNCOPYABLE = object()


def _copied(example: Any) -> Any:
    """A deep copy of ``example`` (a side could change it in place), or ``_UNCOPYABLE``."""
    try:
        return copy.deepcopy(example)
    except Exception:
        return _UNCOPYABLE


class _Verdict(AssertionError):
    """Raised inside Hypothesis to stop at an example (a failure, or an error of a side)."""


@dataclass(frozen=True)
class ExactLeg:
    """Both sides computed exactly on generated examples and compared.

    Attributes:
        strategy: Hypothesis strategy of examples (anything ``lhs``/``arguments`` accept).
        lhs: example -> exactly and independently computed left-hand side (array or float).
        rtol: normwise relative tolerance: a float, or example -> float (for tolerances that
            depend on conditioning, e.g. ``exact_rtol(discounted_condition_number(gamma))``).
        symbols: the sympy symbols of the conclusion, in the order ``arguments`` returns
            their values; with ``arguments``, the claim lambdifies the conclusion into ``rhs``.
        arguments: example -> values of ``symbols``.
        derivation: name of the derivation whose conclusion is the rhs (default: the one the
            claim's statement names, else the first).
        rhs: an explicit right-hand side, only when the conclusion cannot be lambdified (a
            non-commutative matrix derivation, say); then ``rhs_reason`` says why.
        rhs_reason: why ``rhs`` is not the lambdified conclusion (shown in the report).
        relation: ``lhs relation rhs`` must hold (``"<="`` for inequalities); by default, for a
            lambdified rhs, the relation of the derivation whose conclusion it is; ``"="`` for
            an explicit rhs.
        max_examples: examples generated per run.
        description: one sentence saying what lhs and rhs compute, for the report and docs.
        error_scale: optional example -> positive float. When given (for ``"="``), the error
            is ``max|lhs - rhs| / error_scale(example)`` instead of normwise: use it when the
            right-hand side subtracts large terms, so the attainable accuracy is relative to
            those terms, not to the (possibly zero) result.
        extra_evidence: optional ``() -> dict`` computed once on the true claim and merged
            into the evidence (e.g. a ``"table"`` of exact values); it must be deterministic.
        witnesses: fixed examples checked first, at every seed, before the generated ones
            (Hypothesis' explicit phase). Use them for examples that separate a mutant from
            the claim whatever the seed draws (a region that random examples reach only now
            and then); ``witness_reason`` says what each separates (shown in the docs). A
            witness is an ordinary example: the true claim must pass it too.
        witness_reason: why the witnesses are there.
    """

    strategy: SearchStrategy[Any]
    lhs: Callable[[Any], Any]
    rtol: float | Callable[[Any], float]
    symbols: Sequence[Any] = ()
    arguments: Callable[[Any], Sequence[Any]] | None = None
    derivation: str | None = None
    rhs: Callable[[Any], Any] | None = None
    rhs_reason: str = ""
    relation: Relation | None = None
    max_examples: int = 40
    description: str = ""
    extra_evidence: Callable[[], Mapping[str, Any]] | None = None
    error_scale: Callable[[Any], float] | None = None
    witnesses: Sequence[Any] = ()
    witness_reason: str = ""
    name: str = "exact"
    bound: bool = field(default=False, repr=False)  # rhs set by the claim from the conclusion
    #: seed -> the examples the true claim's run checked (witnesses first), in order. A
    #: mutant's run at that seed checks the same list instead of asking Hypothesis again:
    #: Hypothesis's examples are a function of the seed, so the mutant meets exactly the
    #: examples it would have met (generating them was half of the exact legs' time).
    _checked: dict[int, list[Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.rhs is not None and self.arguments is not None and not self.bound:
            raise ValueError("ExactLeg: give either rhs (with rhs_reason) or symbols + arguments")
        if self.arguments is not None and not self.symbols:
            raise ValueError("ExactLeg: arguments needs the symbols they are values of")
        if self.witnesses and not self.witness_reason:
            raise ValueError("ExactLeg: witnesses need a witness_reason (what they separate)")

    @property
    def lambdified(self) -> bool:
        """Whether the rhs is the lambdified conclusion (set by the claim)."""
        return self.arguments is not None

    @property
    def comparison(self) -> Relation:
        """The relation checked (``"="`` when none was given or inherited)."""
        return self.relation or "="

    def _tolerance(self, example: Any) -> float:
        return float(self.rtol(example)) if callable(self.rtol) else float(self.rtol)

    def _error(self, example: Any, rhs: Callable[[Any], Any]) -> tuple[float, float]:
        """(error, tolerance) on one example; exceptions propagate."""
        tolerance = self._tolerance(example)
        with np.errstate(all="ignore"):  # a NaN/inf result counts as an infinite error
            left, right = self.lhs(example), rhs(example)
            if self.error_scale is not None and self.comparison == "=":
                error = absolute_error(left, right) / float(self.error_scale(example))
            else:
                error = violation(left, right, self.comparison)
        if not math.isfinite(tolerance) or tolerance <= 0:
            raise ValueError(f"the tolerance must be a positive finite number, got {tolerance}")
        return error, tolerance

    def _shifted(self, rhs: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The control's rhs: ``rhs`` moved by ``CONTROL_SHIFT`` tolerances of the scale."""

        def shifted(example: Any) -> Any:
            left = np.asarray(self.lhs(example), dtype=np.float64)
            right = np.asarray(rhs(example), dtype=np.float64)
            tolerance = self._tolerance(example)
            if self.error_scale is not None and self.comparison == "=":
                scale = float(self.error_scale(example))
            else:
                scale = max(
                    float(np.abs(left).max(initial=0.0)), float(np.abs(right).max(initial=0.0))
                )
            if self.comparison != "=":
                scale = max(scale, 1.0)
            shift = CONTROL_SHIFT * tolerance * max(scale, 1e-300)
            if self.comparison == "<=":
                return left - shift  # lhs <= rhs violated by the shift
            if self.comparison == ">=":
                return left + shift
            return right + shift

        return shifted

    def control(
        self, seed: int, rhs: Callable[[Any], Any], checked: Sequence[Any] = ()
    ) -> dict[str, Any]:
        """Run the shifted rhs on the first examples: every one must fail.

        ``checked``: the examples the run just checked (witnesses first); the control takes
        its first ``CONTROL_EXAMPLES`` when there are that many, else draws its own.
        """
        shifted = self._shifted(rhs)
        outcomes = []
        if len(checked) >= CONTROL_EXAMPLES:
            examples = [_copied(example) for example in checked[:CONTROL_EXAMPLES]]
        else:
            examples = draw_examples(self.strategy, CONTROL_EXAMPLES, seed)
        for example in examples:
            error, tolerance = self._error(example, shifted)
            outcomes.append(error > tolerance)
        return {
            "shift_in_tolerances": CONTROL_SHIFT,
            "examples": len(outcomes),
            "rejected": all(outcomes),
        }

    def run(self, seed: int = 0, variant: ExactVariant | None = None) -> LegResult:
        """Run on ``max_examples`` examples; a ``variant`` replaces ``rhs`` (a mutant)."""
        start = time.perf_counter()
        rhs = self.rhs if variant is None else variant
        if rhs is None:
            return LegResult("error", {}, "the exact leg has no right-hand side (claim not bound)")
        worst = {"error": 0.0, "rtol": 0.0, "loosest": 0.0}
        stopped: list[tuple[Any, float, float, BaseException | None]] = []
        examples = [0]
        seen: list[Any] | None = [] if variant is None else None

        def check(example: Any) -> None:
            examples[0] += 1
            if seen is not None:
                seen.append(_copied(example))
            try:
                error, tolerance = self._error(example, rhs)
            except Exception as exc:  # no verdict on this example: an error of a side
                stopped.append((example, math.nan, math.nan, exc))
                raise _Verdict from exc
            if error > tolerance:
                stopped.append((example, error, tolerance, None))
                raise _Verdict
            worst["loosest"] = max(worst["loosest"], tolerance)
            if error >= worst["error"]:
                worst["error"], worst["rtol"] = error, tolerance

        phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if variant is None else [])
        test = given(self.strategy)(check)
        for witness in reversed(self.witnesses):  # decorators apply inside out: keep the order
            test = hypothesis_example(witness)(test)
        runner = hypothesis_seed(seed)(
            settings(
                max_examples=self.max_examples,
                database=None,
                deadline=None,
                phases=phases,
                report_multiple_bugs=False,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )(test)
        )
        recorded = self._checked.get(seed) if variant is not None else None

        def drive() -> None:
            if recorded is not None:  # the examples the true claim met at this seed
                for example in recorded:
                    check(_copied(example))
                return
            with seed_only_generation():
                runner()

        try:
            drive()
        except _Verdict:
            example, error, tolerance, exc = stopped[-1]
            seconds = time.perf_counter() - start
            if exc is not None:
                result = error_result(f"the exact leg on example {example!r}", exc, seconds)
                return replace(result, evidence={**result.evidence, "examples": examples[0]})
            return LegResult(
                "failed",
                {"examples": examples[0], "max_error": error, "rtol": tolerance},
                f"lhs {self.comparison} rhs fails on example {example!r}: "
                f"error {error:.3g} > rtol {tolerance:.3g}",
                seconds,
            )
        except Exception as exc:  # the strategy itself, or Hypothesis, failed
            return error_result(
                "the exact leg's example generation", exc, time.perf_counter() - start
            )
        evidence: dict[str, Any] = {
            "examples": examples[0],
            "max_error": worst["error"],
            "rtol": worst["rtol"],
            "rhs": "lambdified conclusion" if self.lambdified else f"explicit: {self.rhs_reason}",
        }
        if variant is not None:
            return LegResult("verified", evidence, None, time.perf_counter() - start)
        if seen is not None and all(example is not _UNCOPYABLE for example in seen):
            self._checked[seed] = seen
        if not worst["loosest"] <= MAX_EXACT_RTOL:
            return LegResult(
                "error",
                evidence,
                f"tolerance: an example was compared with rtol {worst['loosest']:.3g} > "
                f"{MAX_EXACT_RTOL:g} (rlmath.tolerances.MAX_EXACT_RTOL): not an exact comparison",
                time.perf_counter() - start,
            )
        try:
            evidence["control"] = self.control(seed, rhs, self._checked.get(seed, ()))
            if self.extra_evidence is not None:
                evidence.update(self.extra_evidence())
        except Exception as exc:
            return error_result("the exact leg's control", exc, time.perf_counter() - start)
        if not evidence["control"]["rejected"]:
            return LegResult(
                "error",
                evidence,
                f"control: the rhs shifted by {CONTROL_SHIFT:g} tolerances was accepted, so this "
                "leg cannot fail",
                time.perf_counter() - start,
            )
        return LegResult("verified", evidence, None, time.perf_counter() - start)
