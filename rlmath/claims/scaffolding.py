r"""Pieces every Monte-Carlo and exact leg needs, written once.

- :func:`exact_moments`: mean and standard deviation of a per-sample term by enumeration
  (what a mutant's power is computed from);
- :func:`detectable`: whether a test at a given sample size rejects a shifted mean with the
  stated power (the filter that keeps only examples where every mutant is visible);
- :func:`complex_step_gradient`: derivatives of real-analytic functions with no cancellation
  (Squire and Trapp, "Using complex variables to estimate derivatives of real functions",
  SIAM Review 40, 1998);
- :func:`one_slot_cache`: remember the last result of an expensive exact computation (the
  legs call the same reference on the same example several times in a row).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from rlmath.statistics import DEFAULT_POWER, detection_power

__all__ = [
    "COMPLEX_STEP",
    "complex_step_gradient",
    "detectable",
    "exact_moments",
    "one_slot_cache",
]

#: The complex step: $f'(x) = \operatorname{Im} f(x + ih)/h$ exactly up to rounding for analytic f.
COMPLEX_STEP = 1e-30

T = TypeVar("T")


def exact_moments(probabilities: Any, terms: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and standard deviation of a discrete per-sample term, by enumeration.

    $$ \mu = \sum_k p_k x_k, \qquad \sigma = \sqrt{\textstyle\sum_k p_k (x_k - \mu)^2} $$
    (two-pass, so $\sigma$ is accurate when $\sigma \ll |\mu|$).

    Args:
        probabilities: ``[K]`` outcome probabilities (summing to 1).
        terms: ``[K, ...]`` the term's value at each outcome.

    Returns:
        ``(mean, sd)``, each of shape ``terms.shape[1:]``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    x = np.asarray(terms, dtype=np.float64)
    if p.ndim != 1 or x.shape[:1] != p.shape:
        raise ValueError(
            f"probabilities [K] and terms [K, ...] must agree, got {p.shape} and {x.shape}"
        )
    mean = np.tensordot(p, x, axes=1)
    variance = np.tensordot(p, (x - mean) ** 2, axes=1)
    return mean, np.sqrt(np.maximum(variance, 0.0))


def detectable(
    shift: Any,
    sd: Any,
    n_samples: int,
    *,
    false_alarm: float,
    power: float = DEFAULT_POWER,
) -> bool:
    r"""Whether some component's shift is rejected with probability at least ``power``.

    Uses :func:`rlmath.statistics.detection_power` per component with the Bonferroni share
    of ``false_alarm`` over all components (the test the legs run).
    """
    shift_array = np.atleast_1d(np.asarray(shift, dtype=np.float64)).ravel()
    sd_array = np.atleast_1d(np.asarray(sd, dtype=np.float64)).ravel()
    best = max(
        detection_power(
            float(delta),
            float(sigma),
            n_samples,
            false_alarm=false_alarm,
            n_components=shift_array.size,
        )
        for delta, sigma in zip(shift_array, sd_array, strict=True)
    )
    return best >= power


def complex_step_gradient(
    function: Callable[[np.ndarray], Any], x: Any, *, step: float = COMPLEX_STEP
) -> np.ndarray:
    r"""$\partial f / \partial x_k = \operatorname{Im} f(x + i h e_k) / h$ for every entry of ``x``.

    ``function`` must be real-analytic and written with complex-safe operations (no ``abs``,
    no ``np.maximum`` on the perturbed argument). The result has shape
    ``x.shape + f(x).shape``; there is no subtractive cancellation, so it is exact to rounding.
    """
    base = np.asarray(x, dtype=np.float64)
    columns = []
    for index in np.ndindex(base.shape):
        moved = base.astype(complex)
        moved[index] += 1j * step
        columns.append(np.imag(np.asarray(function(moved))) / step)
    values = np.asarray(columns, dtype=np.float64)
    return values.reshape(base.shape + values.shape[1:])


def one_slot_cache(function: Callable[[Any], T]) -> Callable[[Any], T]:
    """Remember ``function``'s last argument (by identity) and result.

    The legs call the same exact computation several times on the *same* example object (the
    reference, then each mutant's power); a one-slot cache by identity is enough and never
    holds more than one result.
    """
    slot: list[Any] = [None, None]

    @functools.wraps(function)
    def cached(example: Any) -> T:
        if slot[0] is not example:
            slot[1] = function(example)
            slot[0] = example
        return slot[1]  # type: ignore[no-any-return]

    return cached
