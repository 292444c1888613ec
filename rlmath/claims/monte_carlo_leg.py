r"""The Monte-Carlo leg: sampled estimates against exact values under a calibrated test.

Verdicts: an estimate whose z-score exceeds the critical value (:mod:`rlmath.statistics`) is
``"failed"``; an exception, or non-finite sample terms, is ``"error"`` (no verdict). On the true
claim a **control** runs on the same samples: the per-sample terms shifted by twice the
critical value times the standard error must be rejected by the same test, else the leg cannot
fail and reports ``"error"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis.strategies import SearchStrategy

from rlmath.claims.reproducibility import draw_examples
from rlmath.claims.results import LegResult, error_result
from rlmath.statistics import Agreement, agreement

__all__ = [
    "CONTROL_Z_MULTIPLE",
    "TIE_RTOL",
    "MonteCarloLeg",
    "MonteCarloVariant",
    "agreement_row",
    "monte_carlo_leg",
    "shifted_control",
    "worst_component",
]

#: What a mutant hands a :func:`monte_carlo_leg`: (example, rng, n) -> ``[n, ...]`` terms.
MonteCarloVariant = Callable[[Any, np.random.Generator, int], Any]

#: The control moves every component's mean by this many critical values times its SE.
CONTROL_Z_MULTIPLE = 2.0

#: |z| values within this relative distance of the largest count as tied (first one wins).
TIE_RTOL = 1e-9


def worst_component(z_scores: Any) -> int:
    """Index of the largest $|z|$; among ties within :data:`TIE_RTOL` (relative), the first.

    Antisymmetric components (a gradient whose entries sum to zero) have exactly opposite
    z-scores up to the last bit; taking a plain ``argmax`` would let rounding pick the sign
    that a report prints.
    """
    flat = np.atleast_1d(np.asarray(z_scores, dtype=np.float64)).ravel()
    magnitude = np.where(np.isnan(flat), np.inf, np.abs(flat))
    largest = float(magnitude.max())
    if not np.isfinite(largest):
        return int(np.argmax(magnitude))
    return int(np.flatnonzero(magnitude >= largest * (1 - TIE_RTOL))[0])


def agreement_row(example: int, result: Agreement) -> dict[str, Any]:
    """The evidence of one Monte-Carlo example: its component with the largest $|z|$.

    Keys: example, estimate, standard_error, reference, z, critical_z, components, samples,
    agrees (what ``rlmath verify`` prints and the docs tabulate).
    """
    flat_z = np.atleast_1d(np.asarray(result.z_scores, dtype=np.float64)).ravel()
    worst = worst_component(flat_z)
    return {
        "example": example,
        "estimate": float(np.ravel(result.estimate)[worst]),
        "standard_error": float(np.ravel(result.standard_error)[worst]),
        "reference": float(np.ravel(result.reference)[worst]),
        "z": float(flat_z[worst]),
        "critical_z": float(result.critical_value),
        "components": int(flat_z.size),
        "samples": int(result.n_samples),
        "agrees": bool(result.agrees),
    }


def shifted_control(
    terms: np.ndarray, exact: np.ndarray, result: Agreement, *, false_alarm: float, seed: Any
) -> bool:
    """Whether the test rejects ``terms`` moved by ``CONTROL_Z_MULTIPLE`` critical SEs (must)."""
    shift = CONTROL_Z_MULTIPLE * float(result.critical_value) * np.asarray(result.standard_error)
    shift = np.where(shift > 0, shift, 1.0)  # a zero-variance component: shift by one
    moved = agreement(terms + shift, exact, false_alarm=false_alarm, seed=seed)
    return not bool(moved.agrees)


@dataclass(frozen=True)
class MonteCarloLeg:
    """A sampled estimate compared with an exact reference by a calibrated statistical test.

    Attributes:
        check: ``(seed, estimator) -> LegResult``: draws samples with ``seed``, estimates with
            ``estimator`` (``None``: the correct one), and compares with the exact value using
            :mod:`rlmath.statistics`; the evidence holds estimate, standard error, z, samples.
            On the true claim (estimator ``None``) its evidence must contain ``"control"``
            with ``"rejected": True`` (see :func:`shifted_control`), or the leg is an error.
        description: one sentence saying what is estimated and what it is compared with.
    """

    check: Callable[[int, Any], LegResult]
    description: str = ""
    name: str = "monte_carlo"

    def run(self, seed: int = 0, variant: Any = None) -> LegResult:
        start = time.perf_counter()
        try:
            result = self.check(seed, variant)
        except Exception as exc:
            return error_result("the Monte-Carlo leg", exc, time.perf_counter() - start)
        if variant is None and result.ok:
            control = result.evidence.get("control")
            if not isinstance(control, dict) or control.get("rejected") is not True:
                result = LegResult(
                    "error",
                    result.evidence,
                    "control: the leg reported no rejected control (terms shifted by a few "
                    "standard errors must be rejected), so it is not shown that it can fail",
                )
        return replace(result, seconds=time.perf_counter() - start)


def monte_carlo_leg(
    examples: SearchStrategy[Any],
    sample: MonteCarloVariant,
    reference: Callable[[Any], Any],
    *,
    n_samples: int,
    n_examples: int = 2,
    false_alarm: float = 1e-6,
    description: str = "",
) -> MonteCarloLeg:
    r"""A Monte-Carlo leg: sampled per-sample terms tested against an exact reference.

    For each of ``n_examples`` examples drawn from ``examples`` (reproducibly from the seed),
    ``sample(example, rng, n_samples)`` returns ``[n_samples, ...]`` i.i.d. per-sample terms
    whose mean estimates ``reference(example)``; :func:`rlmath.statistics.agreement` tests
    them at false-alarm probability ``false_alarm / n_examples`` (Bonferroni across examples
    and, inside, across components), so the leg false-alarms with probability at most
    ``false_alarm``. A mutant's variant is another ``sample`` function (a wrong estimator).

    The evidence lists, per example, the estimate, standard error, reference and z of the
    component with the largest $|z|$, the number of components, the sample count, and
    whether the shifted control was rejected.
    """

    # (seed, example index) -> the exact reference: a mutant changes the sampled terms, not
    # the value they are compared with, so each exact value is computed once per process
    exact_values: dict[tuple[int, int], np.ndarray] = {}

    def exact_value(seed: int, k: int, example: Any) -> np.ndarray:
        if (seed, k) not in exact_values:
            with np.errstate(all="ignore"):
                exact_values[seed, k] = np.asarray(reference(example), dtype=np.float64)
        return exact_values[seed, k].copy()

    def check(seed: int, variant: Any) -> LegResult:
        estimator = sample if variant is None else variant
        rows: list[dict[str, Any]] = []
        passed = True
        controls: list[bool] = []
        for k, example in enumerate(draw_examples(examples, n_examples, seed)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
            with np.errstate(all="ignore"):
                terms = np.asarray(estimator(example, rng, n_samples), dtype=np.float64)
            exact = exact_value(seed, k, example)
            if not (np.isfinite(terms).all() and np.isfinite(exact).all()):
                return LegResult(
                    "error",
                    {"examples": rows},
                    f"example {k}: non-finite sample terms or reference (no verdict)",
                )
            alpha = false_alarm / n_examples
            result = agreement(terms, exact, false_alarm=alpha, seed=[seed, k])
            rows.append(agreement_row(k, result))
            passed = passed and bool(result.agrees)
            if variant is None:
                controls.append(
                    shifted_control(terms, exact, result, false_alarm=alpha, seed=[seed, k])
                )
        evidence: dict[str, Any] = {
            "false_alarm": false_alarm,
            "samples_per_example": n_samples,
            "examples": rows,
        }
        if variant is None:
            evidence["control"] = {
                "shift_in_critical_se": CONTROL_Z_MULTIPLE,
                "rejected": bool(controls) and all(controls),
            }
        if passed:
            return LegResult("verified", evidence)
        bad = [r for r in rows if not r.get("agrees", False)]
        return LegResult(
            "failed",
            evidence,
            f"estimate disagrees with the exact value on example {bad[0]['example']}: "
            f"z = {bad[0]['z']:+.2f} beyond +-{bad[0]['critical_z']:.2f}",
        )

    return MonteCarloLeg(check, description)
