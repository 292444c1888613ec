r"""Statistical agreement of a Monte-Carlo estimate with an exact reference.

One rule decides "the estimate agrees with the reference" for every Monte-Carlo check:

- The estimate is the mean of $n$ per-sample terms $x_1, \dots, x_n$ (rows of an array
  ``[n, ...]``); its standard error is $\hat\sigma / \sqrt n$ with the sample standard
  deviation $\hat\sigma$ (``ddof=1``). For dependent samples (a Markov chain, consecutive steps)
  use batch means: split the rows into $b$ consecutive batches and take the standard error of
  the $b$ batch means.
- Each component $i$ gets $z_i = (\bar x_i - \mathrm{ref}_i) / \mathrm{se}_i$. The check
  passes when every $|z_i| \le c$, where $c$ is the two-sided critical value at the per-check
  false-alarm probability $\alpha$ (default $10^{-6}$) divided among the $m$ components
  (Bonferroni): $c = z_{1 - \alpha / (2m)}$, so a correct estimator fails a check with
  probability at most about $\alpha$ whatever the correlation between components.
- Assumption: the central limit theorem, $\sqrt n(\bar x - \mu)/\hat\sigma \to N(0, 1)$, which
  needs finite variance and $n$ large enough for the tail probability $\alpha/(2m)$; at
  $\alpha = 10^{-6}$ that is a tail of about $5\sigma$, where the normal approximation is
  good for bounded or light-tailed terms and $n$ in the thousands. Heavy-tailed terms (large
  importance weights) converge slowly and can make the real false-alarm rate exceed
  $\alpha$; keep importance weights bounded in the checks. With batch means the critical
  value comes from Student's $t$ with $b - 1$ degrees of freedom.
- The standard error has a floor at float resolution, $64\,\varepsilon$ times the
  component's magnitude: a component whose terms are all equal (or equal up to rounding) agrees
  when the estimate equals the reference to float resolution and fails otherwise (also when
  only an unlucky sample never visited a rare state: choose $n$ so every reachable component
  is seen).
- The seed is fixed by the caller and recorded; the sample size comes from
  :func:`sample_size`: the $n$ that detects a shift $\delta$ of a component with per-sample
  standard deviation $\sigma$ with power $1 - \beta$ (default power 0.99, ``DEFAULT_POWER``),

  $$ n \ge \left(\frac{(z_{1-\alpha/(2m)} + z_{1-\beta})\, \sigma}{\delta}\right)^2. $$

References:
    Casella, G. and Berger, R. L. *Statistical Inference*, 2nd ed., 2002, Sec. 10.3
    (large-sample tests) and Thm. 5.5.15 (CLT).
    Bonferroni, C. E. "Teoria statistica delle classi e calcolo delle probabilità", 1936;
    Dunn, O. J. "Multiple comparisons among means", JASA 56, 1961.
    Glynn, P. W. and Whitt, W. "Estimating the asymptotic variance with batch means",
    Operations Research Letters 10, 1991.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from rlmath._validation import FloatArray, as_float_array, check_integer, check_real_scalar

__all__ = [
    "DEFAULT_FALSE_ALARM",
    "DEFAULT_POWER",
    "Agreement",
    "agreement",
    "critical_value",
    "detection_power",
    "sample_size",
]

#: Per-check false-alarm probability: the chance that a correct estimator fails one check.
DEFAULT_FALSE_ALARM: float = 1e-6

#: Power aimed for against each mutant (probability of rejecting it at the chosen $n$).
DEFAULT_POWER: float = 0.99


def _check_probability(value: Any, name: str) -> float:
    result = check_real_scalar(value, name)
    if not 0.0 < result < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {result!r}")
    return result


def critical_value(
    false_alarm: float = DEFAULT_FALSE_ALARM,
    *,
    n_components: int = 1,
    degrees_of_freedom: int | None = None,
) -> float:
    r"""Two-sided Bonferroni critical value for $m$ components at family false alarm $\alpha$.

    $$ c = z_{1 - \alpha/(2m)} \quad\text{(normal)}, \qquad
       c = t_{\nu,\, 1 - \alpha/(2m)} \quad\text{(Student, } \nu \text{ degrees of freedom)}. $$

    Args:
        false_alarm: $\alpha \in (0, 1)$, the probability of failing a correct check.
        n_components: $m \ge 1$, the number of components tested together.
        degrees_of_freedom: $\nu$ for a Student-$t$ critical value (batch means), or
            ``None`` for the normal one.

    Returns:
        $c > 0$: a component fails when $|z| > c$.

    Examples:
        >>> round(critical_value(0.05), 4)
        1.96
        >>> round(critical_value(1e-6), 3), round(critical_value(1e-6, n_components=10), 3)
        (4.892, 5.327)
    """
    alpha = _check_probability(false_alarm, "false_alarm")
    m = check_integer(n_components, "n_components", minimum=1)
    tail = alpha / (2 * m)
    if degrees_of_freedom is None:
        return float(-special.ndtri(tail))
    nu = check_integer(degrees_of_freedom, "degrees_of_freedom", minimum=1)
    from scipy import stats  # imported here: scipy.stats costs 1.5 s of every start-up

    return float(stats.t.isf(tail, nu))


def sample_size(
    delta: float,
    sigma: float,
    *,
    false_alarm: float = DEFAULT_FALSE_ALARM,
    power: float = DEFAULT_POWER,
    n_components: int = 1,
) -> int:
    r"""Samples needed to detect a shift $\delta$ with power $1 - \beta$ (normal approximation).

    A mutant whose mean differs from the reference by $\delta$ in one component, with
    per-sample standard deviation $\sigma$ there, is rejected with probability at least
    $1 - \beta$ once

    $$ n \ge \left(\frac{(z_{1-\alpha/(2m)} + z_{1-\beta})\,\sigma}{\delta}\right)^2 $$

    (the far tail, $z < -c$, only adds power).

    Args:
        delta: the difference to detect, $|\delta| > 0$.
        sigma: per-sample standard deviation $\sigma \ge 0$ of that component.
        false_alarm: per-check false-alarm probability $\alpha$.
        power: $1 - \beta \in (0, 1)$.
        n_components: $m$, components sharing $\alpha$ (Bonferroni).

    Returns:
        The smallest such integer $n \ge 2$.

    Examples:
        >>> sample_size(0.1, 1.0, false_alarm=0.05, power=0.8)  # (1.96 + 0.84)^2 * 100
        785
    """
    delta = abs(check_real_scalar(delta, "delta"))
    if delta == 0.0:
        raise ValueError("delta must be non-zero, got 0.0")
    sigma = check_real_scalar(sigma, "sigma")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    beta = 1.0 - _check_probability(power, "power")
    c = critical_value(false_alarm, n_components=n_components)
    return max(2, math.ceil(((c - float(special.ndtri(beta))) * sigma / delta) ** 2))


def detection_power(
    delta: float,
    sigma: float,
    n_samples: int,
    *,
    false_alarm: float = DEFAULT_FALSE_ALARM,
    n_components: int = 1,
) -> float:
    r"""Probability that a component shifted by $\delta$ fails the check with $n$ samples.

    $$ 1 - \beta = \Phi\!\left(\frac{|\delta|\sqrt n}{\sigma} - c\right)
       + \Phi\!\left(-\frac{|\delta|\sqrt n}{\sigma} - c\right),
       \qquad c = z_{1-\alpha/(2m)} $$

    (normal approximation, $\sigma$ taken as known).

    Args:
        delta: the shift of the mean from the reference.
        sigma: per-sample standard deviation ($0$ gives power 1 for $\delta \ne 0$).
        n_samples: $n \ge 1$.
        false_alarm: per-check false-alarm probability $\alpha$.
        n_components: $m$, components sharing $\alpha$.

    Returns:
        The power, in $[0, 1]$.

    Examples:
        >>> round(detection_power(0.1, 1.0, 785, false_alarm=0.05), 2)  # see sample_size
        0.8
    """
    delta = abs(check_real_scalar(delta, "delta"))
    sigma = check_real_scalar(sigma, "sigma")
    n = check_integer(n_samples, "n_samples", minimum=1)
    c = critical_value(false_alarm, n_components=n_components)
    if sigma == 0.0:
        return 1.0 if delta > 0 else 0.0
    shift = delta * math.sqrt(n) / sigma
    return float(special.ndtr(shift - c) + special.ndtr(-shift - c))


# ----------------------------------------------------------------------------- the verdict
def _json_number(value: float) -> float | str:
    return float(value) if math.isfinite(value) else str(float(value))


@dataclass(frozen=True, eq=False)
class Agreement:
    r"""The verdict of :func:`agreement`: estimate, standard error, reference and z-scores.

    Attributes:
        name: what was estimated (for messages).
        estimate: the sample mean, shape of the quantity (``()`` for a scalar).
        standard_error: its standard error, same shape.
        reference: the exact value, same shape.
        z_scores: $(\text{estimate} - \text{reference}) / \text{se}$; for se $= 0$, 0 when equal
            and $\pm\infty$ otherwise.
        n_samples: $n$, the number of per-sample terms used.
        false_alarm: per-check false-alarm probability $\alpha$.
        critical_value: $c$; a component fails when $|z| > c$.
        method: ``"z-test (CLT, i.i.d.)"`` or ``"t-test on b batch means"``.
        seed: the seed that produced the samples, if the caller gave it (for the record).
    """

    name: str
    estimate: FloatArray
    standard_error: FloatArray
    reference: FloatArray
    z_scores: FloatArray
    n_samples: int
    false_alarm: float
    critical_value: float
    method: str
    seed: Any = None

    @property
    def n_components(self) -> int:
        """Number of components tested (the Bonferroni $m$)."""
        return int(self.estimate.size)

    @property
    def failing(self) -> NDArray[np.bool_]:
        """Boolean mask of the components with $|z| > c$ (or a NaN z-score)."""
        return ~(np.abs(self.z_scores) <= self.critical_value)

    @property
    def agrees(self) -> bool:
        """Whether every component has $|z| \\le c$."""
        return not bool(self.failing.any())

    @property
    def max_abs_z(self) -> float:
        """The largest $|z|$ over components (NaN if any is NaN)."""
        z = np.abs(self.z_scores)
        return float(np.nan) if np.isnan(z).any() else float(z.max(initial=0.0))

    def __str__(self) -> str:
        verdict = "agrees" if self.agrees else "DISAGREES"
        head = (
            f"{self.name}: {verdict} with the reference (max |z| = {self.max_abs_z:.3g}, "
            f"critical {self.critical_value:.3g}; n = {self.n_samples}, "
            f"{self.n_components} component(s), false alarm {self.false_alarm:g} per check "
            f"(Bonferroni), {self.method}"
            + ("" if self.seed is None else f", seed {self.seed}")
            + ")"
        )
        order = np.argsort(-np.nan_to_num(np.abs(self.z_scores).ravel(), nan=np.inf), kind="stable")
        rows = [
            head,
            f"  {'component':>12} {'estimate':>13} {'std. error':>11} {'reference':>13} {'z':>8}",
        ]
        for flat in order[:5]:
            index = np.unravel_index(int(flat), self.estimate.shape)
            label = str(tuple(int(i) for i in index)) if index else "()"
            rows.append(
                f"  {label:>12} {self.estimate[index]:13.6g} {self.standard_error[index]:11.3g} "
                f"{self.reference[index]:13.6g} {self.z_scores[index]:8.3g}"
            )
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (non-finite numbers as the strings ``"inf"``, ``"nan"``)."""

        def listed(array: FloatArray) -> Any:
            if array.ndim == 0:
                return _json_number(float(array))
            return [listed(part) for part in array]

        return {
            "name": self.name,
            "agrees": self.agrees,
            "estimate": listed(self.estimate),
            "standard_error": listed(self.standard_error),
            "reference": listed(self.reference),
            "z_scores": listed(self.z_scores),
            "max_abs_z": _json_number(self.max_abs_z),
            "n_samples": self.n_samples,
            "n_components": self.n_components,
            "false_alarm": self.false_alarm,
            "critical_value": self.critical_value,
            "method": self.method,
            "seed": self.seed,
        }


_RESOLUTION = 64.0 * float(np.finfo(np.float64).eps)


#: The spacing of float64 numbers below the smallest normal number (absolute precision).
_SUBNORMAL_SPACING = float(np.finfo(np.float64).smallest_subnormal)
#: Differences of up to this many subnormal spacings are rounding (as 64 eps is for normals).
_SUBNORMAL_ULPS = 64


def agreement(
    samples: ArrayLike,
    reference: ArrayLike,
    *,
    false_alarm: float = DEFAULT_FALSE_ALARM,
    n_batches: int | None = None,
    name: str = "estimate",
    seed: Any = None,
) -> Agreement:
    r"""Test whether the mean of ``samples`` agrees with ``reference``, component by component.

    $$ \bar x = \frac1n \sum_{k=1}^n x_k, \qquad
       \mathrm{se} = \frac{\hat\sigma}{\sqrt n}, \qquad
       z = \frac{\bar x - \mathrm{ref}}{\mathrm{se}}, \qquad
       \text{agrees} \iff \max_i |z_i| \le z_{1 - \alpha/(2m)}. $$

    With ``n_batches = b`` (dependent samples): $\bar x$ over the first $b \lfloor n/b \rfloor$
    rows, $\mathrm{se} = \mathrm{sd}(\text{batch means}) / \sqrt b$ and a Student-$t_{b-1}$
    critical value. See the module docstring for the assumptions. The standard error is
    floored at $64\,\varepsilon$ times the component's magnitude and times the largest
    component of the estimate or reference: below that, neither float64 rounding nor a
    normwise-accurate reference resolves a difference (and a component made of events too
    rare for $n$ samples to show has a meaningless sample spread).

    Args:
        samples: ``[n, ...]`` per-sample terms, i.i.d. along axis 0 (or serially dependent
            with ``n_batches``); $n \ge 2$.
        reference: exact value, shape ``...`` (broadcast to it).
        false_alarm: per-check false-alarm probability $\alpha \in (0, 1)$, shared among the
            components by Bonferroni.
        n_batches: ``None`` for i.i.d. samples, or $b \ge 2$ batches for batch means.
        name: label for messages.
        seed: the seed that produced ``samples``, recorded in the result.

    Returns:
        :class:`Agreement`; ``.agrees`` is the verdict.

    Raises:
        ValueError: for fewer than 2 samples (or batches), non-finite samples, or a reference
            whose shape does not broadcast to ``samples.shape[1:]``.

    Examples:
        >>> x = np.random.default_rng(0).normal(loc=[0.0, 1.0], size=(10_000, 2))
        >>> agreement(x, [0.0, 1.0]).agrees, agreement(x, [0.0, 1.2]).agrees
        (True, False)
        >>> agreement(np.zeros((5, 1)), [0.0]).agrees  # constant samples: exact comparison
        True
    """
    x = as_float_array(samples, "samples")
    if x.ndim == 0 or x.shape[0] < 2:
        raise ValueError(f"samples must have at least 2 rows along axis 0, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples must be finite, got a non-finite entry")
    ref = as_float_array(reference, "reference")
    try:
        ref = np.broadcast_to(ref, x.shape[1:]).copy()
    except ValueError as error:
        raise ValueError(
            f"reference must broadcast to the sample shape {x.shape[1:]}, got {ref.shape}"
        ) from error
    alpha = _check_probability(false_alarm, "false_alarm")
    m = max(1, int(np.prod(x.shape[1:], dtype=np.int64)))
    # z is invariant to a common positive scale; computing the moments of x / s with
    # s = max|x| keeps squares of tiny terms (|x| ~ 1e-200) from underflowing to a zero
    # standard error. The reported estimate and standard error are scaled back.
    s = float(max(np.abs(x).max(initial=0.0), np.abs(ref).max(initial=0.0)))
    s = s if s > 0.0 and np.isfinite(s) else 1.0
    x, ref_scaled = x / s, ref / s

    if n_batches is None:
        n = x.shape[0]
        estimate = x.mean(axis=0)
        se = x.std(axis=0, ddof=1) / math.sqrt(n)
        c = critical_value(alpha, n_components=m)
        method = "z-test (CLT, i.i.d.)"
    else:
        b = check_integer(n_batches, "n_batches", minimum=2)
        size = x.shape[0] // b
        if size < 1:
            raise ValueError(f"n_batches must be <= the number of samples {x.shape[0]}, got {b}")
        n = b * size
        x = x[:n]
        means = x.reshape((b, size) + x.shape[1:]).mean(axis=1)
        estimate = x.mean(axis=0)
        se = means.std(axis=0, ddof=1) / math.sqrt(b)
        c = critical_value(alpha, n_components=m, degrees_of_freedom=b - 1)
        method = f"t-test on {b} batch means"
    constant = (x == x[0]).all(axis=0)
    estimate = np.where(constant, x[0], estimate)  # exact, not a rounded mean of equal terms
    # Float resolution floor: a quantity that is constant in exact arithmetic but computed
    # with rounding (spread ~1e-16 of its size) would otherwise get a tiny standard error and
    # a huge z for a rounding-level difference. The floor is 64 eps times the component's
    # magnitude (the same margin as rlmath.tolerances.exact_rtol); it is far below any
    # sampling standard error of a genuinely random quantity.
    #
    # Normwise floor: the reference of a vector quantity (a gradient from linear algebra) is
    # accurate only normwise, to ~eps * cond * max_i |ref_i|, so a component far below the
    # vector's size is not known to better than that absolute accuracy; nor can n samples
    # see the events that make it up (an action of probability 1e-185 is never drawn), so a
    # z on it would judge noise. Its standard error is floored at _RESOLUTION times the
    # largest component of the estimate or reference (the scale of a normwise comparison).
    magnitude = np.maximum(np.abs(x).max(axis=0), np.abs(ref_scaled))
    vector_scale = max(
        float(np.abs(estimate).max(initial=0.0)), float(np.abs(ref_scaled).max(initial=0.0))
    )
    se = np.maximum(np.where(constant, 0.0, se), _RESOLUTION * magnitude)
    se = np.maximum(se, _RESOLUTION * vector_scale)
    # Subnormal floor: below 2.2e-308 float64 keeps an absolute, not a relative, precision
    # (spacing 4.9e-324), so a term like -5e-324 * (1 / 0.555) rounds to -1e-323, 80% off;
    # differences of a few subnormal spacings are rounding, whatever the scale.
    se = np.maximum(se, _SUBNORMAL_ULPS * _SUBNORMAL_SPACING / s)
    difference = estimate - ref_scaled
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, difference / np.where(se > 0, se, 1.0), np.sign(difference) * np.inf)
    z = np.where((se == 0) & (difference == 0), 0.0, z)
    return Agreement(
        name=name,
        estimate=np.asarray(estimate * s, dtype=np.float64),
        standard_error=np.asarray(se * s, dtype=np.float64),
        reference=ref,
        z_scores=np.asarray(z, dtype=np.float64),
        n_samples=int(n),
        false_alarm=alpha,
        critical_value=c,
        method=method,
        seed=seed,
    )
