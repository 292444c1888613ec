r"""The calibration of the Monte-Carlo legs' test: Bonferroni keeps the family false alarm at alpha.

Main statement. Every Monte-Carlo leg compares $m$ components at once and fails a correct claim
when some $|z_i| > c$, with $c = z_{1 - \alpha/(2m)}$ (:func:`rlmath.statistics.critical_value`).
Under the null each $z_i$ is (asymptotically) standard normal, so

$$ \Pr\Big(\max_i |z_i| > c\Big) \;\le\; \sum_{i=1}^m \Pr(|z_i| > c)
   \;=\; m \cdot 2\,(1 - \Phi(c)) \;=\; \alpha, $$

the first step by the union bound (Boole's inequality), whatever the dependence between the
components. This is the false-alarm probability that ``rlmath verify`` states for each leg.

Conventions. $\Phi$ is the standard normal distribution function; $\alpha \in (0, 1)$ is the
family false-alarm probability, $m \ge 1$ the number of components.

Proof sketch. $1 - \Phi(c) = \alpha/(2m)$ by the choice of $c$; multiply by $2m$.

References. Bonferroni, C. E., "Teoria statistica delle classi e calcolo delle probabilita",
1936; Casella, G. and Berger, R. L., *Statistical Inference*, 2nd ed., 2002, Sec. 11.2.5
(Bonferroni's inequality for simultaneous tests).
"""

from __future__ import annotations

import math

import sympy as sp
from hypothesis import strategies as st
from scipy import stats

from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
)
from rlmath.statistics import critical_value, sample_size
from rlmath.tolerances import exact_rtol

# ----------------------------------------------------------------------------- symbols
alpha = sp.Symbol("alpha", positive=True)  # family false alarm, in (0, 1)
m = sp.Symbol("m", integer=True, positive=True)  # components tested together

# ----------------------------------------------------------------------------- derivation
# 1 - Phi(c) = alpha / (2 m) defines c, so the tail is written through alpha from the start.
phi_at_c = sp.Add(1, -alpha / (2 * m), evaluate=False)  # Phi(c), by the choice of c
family_bound = Derivation(
    "family-bound",
    (
        Step(
            sp.Mul(2, m, sp.Add(1, -phi_at_c, evaluate=False), evaluate=False),
            "union bound: P(max_i |z_i| > c) <= sum_i P(|z_i| > c) = m 2 (1 - Phi(c)), "
            "with Phi(c) = 1 - alpha/(2m) by the choice c = z_{1 - alpha/(2m)}",
        ),
        Step(alpha, "cancel: 2 m alpha / (2 m) = alpha"),
    ),
    statement=r"2m\,(1 - \Phi(c)) = \alpha,\ c = z_{1 - \alpha/(2m)}",
)

# ----------------------------------------------------------------------------- exact leg
# An example is (alpha, m): from the loose alpha of a quick check to the 1e-6 verify uses and
# the 1e-12 of a strict run, and from one component to the 400 of a large gradient.
examples = st.tuples(
    st.sampled_from((0.05, 1e-3, 1e-6, 1e-9, 1e-12)) | st.floats(1e-12, 0.2),
    st.integers(1, 400),
)


def bonferroni_total(example: tuple[float, int]) -> float:
    """Independent side: m * 2 * P(Z > c) with c from rlmath and the tail from scipy.stats."""
    a, k = example
    c = critical_value(a, n_components=k)
    return float(k * 2.0 * stats.norm.sf(c))


def _rtol(example: tuple[float, int]) -> float:
    # d log(1 - Phi(c)) / d log c ~ c^2 for large c: a relative rounding eps in c (ndtri)
    # becomes c^2 eps in the tail; plus the few operations of the product.
    a, k = example
    c = -float(stats.norm.ppf(a / (2 * k)))
    return exact_rtol(condition_number=1.0 + c * c, n_terms=8)


CLAIMS = (
    Claim(
        id="bonferroni-false-alarm",
        title="The Monte-Carlo legs' z-test has family false alarm alpha (Bonferroni)",
        summary=(
            "Testing m gradient components at once, each at level alpha/m two-sided, keeps the "
            "chance that a correct claim fails at alpha, the false-alarm probability verify "
            "states."
        ),
        statement=Statement(family_bound.start, family_bound.conclusion),
        assumptions=(
            "Each z_i is standard normal under the null (the CLT regime of rlmath.statistics).",
            "The union bound (Boole's inequality) is the first step's rule; it holds for any "
            "dependence between the components, and the claim is that the bound equals alpha.",
        ),
        references=(
            "Casella, G. and Berger, R. L., *Statistical Inference*, 2nd ed., 2002, Sec. 11.2.5.",
            "Bonferroni, C. E., *Teoria statistica delle classi e calcolo delle probabilita*, "
            "1936.",
        ),
        symbolic=SymbolicLeg((family_bound,)),
        exact=ExactLeg(
            examples,
            lhs=bonferroni_total,
            symbols=(alpha, m),
            arguments=lambda example: (example[0], example[1]),
            rtol=_rtol,
            description=(
                "m * 2 * scipy.stats.norm.sf(c) with c = rlmath.statistics.critical_value(alpha,"
                " n_components=m) vs the lambdified conclusion alpha"
            ),
        ),
        mutants=(
            Mutant(
                "one-sided-critical-value",
                "c = z_{1 - alpha/m} (a one-sided quantile for a two-sided test): 2 alpha",
                symbolic=SymbolicMutation("family-bound", 2 * alpha),
            ),
            Mutant(
                "no-bonferroni",
                "c = z_{1 - alpha/2} for every component (alpha not shared): m alpha",
                symbolic=SymbolicMutation("family-bound", m * alpha),
            ),
        ),
        notes=(
            "The exact leg runs the shipped `critical_value` and measures the tail it leaves "
            "with `scipy.stats.norm.sf`, an independent implementation of the normal tail, so "
            "a one-sided quantile or a dropped Bonferroni division in `rlmath.statistics` makes "
            "`rlmath verify` fail. The no-Bonferroni mutant coincides with the truth at m = 1, "
            "which the examples include; the other examples reject it."
        ),
    ),
)


# ============================================================================ sample size
# The Monte-Carlo legs choose their number of samples with rlmath.statistics.sample_size so that
# a mutant shifted by delta fails with probability >= the stated power. At the continuous
# solution n* = ((c + z) sigma / delta)^2 the far-side power Phi(delta sqrt(n) / sigma - c) is
# exactly Phi(z) = 1 - beta; the shipped function returns the smallest integer n >= 2 with at
# least that power.
delta = sp.Symbol("delta", positive=True)  # the shift to detect, |delta| > 0
sigma = sp.Symbol("sigma", positive=True)  # per-sample standard deviation
c = sp.Symbol("c", positive=True)  # critical value z_{1 - alpha/(2m)}
z = sp.Symbol("z", positive=True)  # z_{1 - beta}, positive for a power above 1/2
n_star = sp.Pow(
    sp.Mul(sp.Add(c, z, evaluate=False), sigma / delta, evaluate=False), 2, evaluate=False
)
power_argument = Derivation(
    "power-argument",
    (
        Step(
            sp.Add(
                sp.Mul(delta, sp.sqrt(n_star, evaluate=False), 1 / sigma, evaluate=False),
                -c,
                evaluate=False,
            ),
            "the argument of Phi in the power Phi(delta sqrt(n) / sigma - c) at "
            "n* = ((c + z_{1-beta}) sigma / delta)^2",
        ),
        Step(
            sp.Add(sp.Add(c, z, evaluate=False), -c, evaluate=False),
            "sqrt(u^2) = u for u = (c + z) sigma / delta > 0; cancel sigma / delta",
        ),
        Step(z, "c - c = 0"),
    ),
    statement=r"\frac{\delta\sqrt{n^*}}{\sigma} - c = z_{1-\beta}",
)

# An example is (delta, sigma, alpha, power, m): shifts from 1e-3 to 10 standard deviations'
# worth, the false alarms verify uses, powers above 1/2, up to 400 components.
sample_size_examples = st.tuples(
    st.floats(1e-3, 1.0),
    st.floats(1e-2, 10.0),
    st.sampled_from((0.05, 1e-3, 1e-6, 1e-9)),
    st.floats(0.55, 0.999),
    st.integers(1, 400),
)


def one_sided_power(d: float, s: float, n: int, critical: float) -> float:
    """Phi(d sqrt(n) / s - c) by scipy (the far tail left out, as in ``sample_size``)."""
    return float(stats.norm.cdf(d * math.sqrt(n) / s - critical))


def smallest_sample_size(example: tuple[float, float, float, float, int]) -> int:
    """Independent side: the smallest integer n >= 2 whose power reaches the target.

    Found by doubling and bisection over integers, with the critical value and the power from
    ``scipy.stats.norm`` (``isf`` and ``cdf``), not from ``rlmath.statistics``.
    """
    d, s, a, target, k = example
    critical = float(stats.norm.isf(a / (2 * k)))
    if one_sided_power(d, s, 2, critical) >= target:
        return 2
    low, high = 2, 4  # power(low) < target
    while one_sided_power(d, s, high, critical) < target:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        if one_sided_power(d, s, middle, critical) >= target:
            high = middle
        else:
            low = middle
    return high


def shipped_sample_size(example: tuple[float, float, float, float, int]) -> int:
    d, s, a, target, k = example
    return sample_size(d, s, false_alarm=a, power=target, n_components=k)


def _scaled(factor: float):
    """An exact variant: the smallest integer n for a wrongly scaled target (mutants)."""

    def rhs(example: tuple[float, float, float, float, int]) -> int:
        d, s, a, target, k = example
        return smallest_sample_size((d / math.sqrt(factor), s, a, target, k))

    return rhs


SAMPLE_SIZE_CLAIM = Claim(
    id="sample-size-reaches-power",
    title="The Monte-Carlo legs' sample size detects a shift delta with the stated power",
    summary=(
        "With the number of samples rlmath picks, a wrong estimator whose mean is off by delta "
        "fails the check with at least the stated probability, and no fewer samples would do."
    ),
    statement=Statement(power_argument.start, power_argument.conclusion),
    assumptions=(
        "The z statistic of a component shifted by delta is normal with mean delta sqrt(n) / "
        "sigma and unit variance (sigma known: the CLT regime of rlmath.statistics).",
        "A power above 1/2, so z_{1-beta} > 0; the far tail Phi(-delta sqrt(n)/sigma - c), "
        "which only adds power, is left out on both sides.",
    ),
    references=(
        "Casella, G. and Berger, R. L., *Statistical Inference*, 2nd ed., 2002, Sec. 8.3.1 "
        "(power function of the z-test) and Ex. 8.22 (sample size).",
    ),
    symbolic=SymbolicLeg((power_argument,)),
    exact=ExactLeg(
        sample_size_examples,
        lhs=shipped_sample_size,
        rhs=smallest_sample_size,
        rhs_reason=(
            "the claim is about the smallest integer n, which the conclusion gives only through "
            "rounding n* up; the rhs finds that integer by bisection with scipy's normal cdf "
            "and quantile, independently of rlmath.statistics"
        ),
        rtol=exact_rtol(n_terms=1),
        description=(
            "rlmath.statistics.sample_size vs the smallest integer n >= 2 with "
            "scipy.stats.norm.cdf(delta sqrt(n) / sigma - c) >= power (bisection)"
        ),
    ),
    mutants=(
        Mutant(
            "z-beta-sign",
            "n = ((c - z_{1-beta}) sigma / delta)^2: the power's quantile with the wrong sign",
            symbolic=SymbolicMutation("power-argument", -z),
            exact=lambda example: max(
                2,
                math.ceil(
                    (
                        (
                            float(stats.norm.isf(example[2] / (2 * example[4])))
                            - float(stats.norm.ppf(example[3]))
                        )
                        * example[1]
                        / example[0]
                    )
                    ** 2
                ),
            ),
        ),
        Mutant(
            "delta-not-squared",
            "n = (c + z) sigma / delta without the square: far too few samples for small delta",
            symbolic=SymbolicMutation(
                "power-argument", sp.sqrt(c + z) * sp.sqrt(delta / sigma) - c
            ),
            exact=lambda example: max(
                2,
                math.ceil(
                    (
                        float(stats.norm.isf(example[2] / (2 * example[4])))
                        + float(stats.norm.ppf(example[3]))
                    )
                    * example[1]
                    / example[0]
                ),
            ),
        ),
        Mutant(
            "half-the-shift",
            "n for a shift delta / 2 (delta halved, as for a two-sided width): 4 times too many",
            exact=_scaled(4.0),
        ),
    ),
    notes=(
        "The exact leg runs the shipped `sample_size` and compares it with the smallest integer "
        "n found by bisection, where the power comes from `scipy.stats.norm` (an independent "
        "normal cdf and quantile). A flipped sign of the power's quantile (campaign "
        "`st-sample-size-power-sign`) returns far too few samples and fails it."
    ),
)

CLAIMS = CLAIMS + (SAMPLE_SIZE_CLAIM,)
