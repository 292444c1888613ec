r"""Schulman's KL estimators k1, k2, k3: bias and standard deviation.

Main statements. For distributions $q$ (sampled) and $p$ with $r(x) = p(x)/q(x)$, the
estimators of $\mathrm{KL}(q \,\|\, p) = \mathbb E_{x\sim q}[\log q(x)/p(x)]$ from one sample
$x \sim q$ are

$$ k_1 = -\log r, \qquad k_2 = \tfrac12 (\log r)^2, \qquad k_3 = (r - 1) - \log r, $$

$$ \mathbb E_q[k_1] = \mathbb E_q[k_3] = \mathrm{KL}(q\,\|\,p), \qquad
   \mathbb E_q[k_3] - \mathbb E_q[k_1] = \mathbb E_q[r - 1] = \textstyle\sum_x p(x) - 1 = 0, $$

and $k_2$ is biased: for $q = N(0, 1)$, $p = N(\mu, 1)$ (so $\log r = \mu x - \mu^2/2$ is
linear in $x$),

$$ \mathrm{KL} = \tfrac{\mu^2}{2}, \quad \mathbb E_q[k_2] = \tfrac{\mu^2}{2} + \tfrac{\mu^4}{8},
   \quad \mathrm{Var}_q[k_1] = \mu^2, \quad \mathrm{Var}_q[k_2] = \tfrac{\mu^4}{2} + \tfrac{\mu^6}{4},
   \quad \mathrm{Var}_q[k_3] = e^{\mu^2} - 1 - \mu^2. $$

Conventions. $\mathrm{KL}(q\,\|\,p) = \sum_x q(x) \log(q(x)/p(x))$, samples from $q$ (the first
argument), $r = p/q$ (the *other* distribution over the sampled one), natural logarithms.

Proof sketch. Categorical, general $n$: $\mathbb E_q[k_1]$ is the definition of the KL; $k_3 =
k_1 + (r - 1)$ and $\mathbb E_q[r] = \sum_x p(x) = 1$ (a control variate with mean zero).
Gaussian: every expectation is a Gaussian integral against the $N(0, 1)$ density, which sympy
evaluates; the variance is $\mathbb E[k^2] - (\mathbb E k)^2$. The bias of $k_2$,
$\mu^4/8$, is of fourth order in the distance $\mu$, which is why $k_2$ is a good estimator
when $p$ is close to $q$.

References. Schulman, J., "Approximating KL Divergence", blog post, 2020,
http://joschu.net/blog/kl-approx.html (the estimators k1, k2, k3 and the table of bias and
standard deviation for $q = N(0, 1)$, $p = N(0.1, 1)$ and $N(1, 1)$). Kullback, S. and
Leibler, R. A., "On Information and Sufficiency", *Ann. Math. Statist.* 22, 1951.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st
from scipy.integrate import tanhsinh

from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    LegResult,
    MonteCarloLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    agreement_row,
    draw_examples,
    lazy_lambdify,
    shifted_control,
)
from rlmath.reference import kl_estimator_k1, kl_estimator_k2, kl_estimator_k3
from rlmath.statistics import DEFAULT_FALSE_ALARM, agreement, sample_size
from rlmath.symbolic import IndexSum
from rlmath.testing import probability_vectors
from rlmath.tolerances import exact_rtol

# ============================================================================ categorical
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
j = sp.Symbol("j", integer=True)
q = sp.IndexedBase("q", positive=True)  # the sampled distribution (first KL argument)
p = sp.IndexedBase("p", positive=True)  # the other distribution
u = sp.IndexedBase("u", positive=True)  # unnormalised weights: p = u / sum(u)
w = sp.IndexedBase("w", positive=True)  # unnormalised weights: q = w / sum(w)
ratio = p[i] / q[i]


def E_q(term: sp.Expr) -> sp.Sum:
    r"""$\mathbb E_{x\sim q}[\text{term}] = \sum_{i=0}^{n-1} q_i\, \text{term}_i$."""
    return IndexSum(q[i] * term, (i, 0, n - 1))


def total(term: sp.Expr) -> sp.Sum:
    return IndexSum(term, (i, 0, n - 1))


kl_qp = total(q[i] * sp.log(q[i] / p[i]))
kl_pq = total(p[i] * sp.log(p[i] / q[i]))

# For probability vectors the control variate's mean sum p - sum q vanishes: write p = u/sum u
# and q = w/sum w for positive weights (every positive probability vector is of this form).
control_variate = Derivation(
    "control-variate",
    (
        Step(
            total(u[i] / IndexSum(u[j], (j, 0, n - 1)))
            - total(w[i] / IndexSum(w[j], (j, 0, n - 1))),
            "E_q[r - 1] = sum p - sum q for p = u / sum u, q = w / sum w",
        ),
        Step(sp.Integer(0), "sum_i u_i / sum_j u_j = 1"),
    ),
    statement=r"\mathbb E_q[r - 1] = \textstyle\sum_x p(x) - 1 = 0",
)

# ============================================================================ Gaussian
x = sp.Symbol("x", real=True)
mu = sp.Symbol("mu", positive=True)  # p = N(mu, 1); mu -> -mu is the mirror image
density_q = sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)
density_p = sp.exp(-((x - mu) ** 2) / 2) / sp.sqrt(2 * sp.pi)
log_r = mu * x - mu**2 / 2
r = sp.exp(log_r)
kl_gauss = mu**2 / 2
k2_mean_gauss = mu**2 / 2 + mu**4 / 8


def E_normal(term: sp.Expr) -> sp.Integral:
    r"""$\mathbb E_{x \sim N(0,1)}[\text{term}] = \int \text{term}\, \varphi(x)\, dx$."""
    return sp.Integral(sp.expand(term) * density_q, (x, -sp.oo, sp.oo))


def variance(term: sp.Expr) -> sp.Expr:
    r"""$\mathrm{Var}_{N(0,1)}[\text{term}] = \mathbb E[\text{term}^2] - (\mathbb E\,\text{term})^2$."""
    return E_normal(term**2) - E_normal(term) ** 2


gaussian_log_ratio = Derivation(
    "gaussian-log-ratio",
    (
        Step(sp.log(density_p / density_q), "log r = log p(x) - log q(x), p = N(mu,1), q = N(0,1)"),
        Step(log_r, "-(x - mu)^2/2 + x^2/2 = mu x - mu^2/2: log r is linear in x"),
    ),
    statement=r"\log r(x) = \mu x - \mu^2/2",
)

# ============================================================================ the table
# One column: the categorical means of k1, k3 under q (general n), then for q = N(0,1),
# p = N(mu,1) the means and variances of k1, k2, k3 (log r from 'gaussian-log-ratio').
k1_gauss, k2_gauss, k3_gauss = -log_r, log_r**2 / 2, r - 1 - log_r
ROWS = ("E_q[k1]", "E_q[k3]", "E[k1]", "E[k2]", "E[k3]", "Var[k1]", "Var[k2]", "Var[k3]")
estimator_expectations = sp.Matrix(
    [
        E_q(-sp.log(ratio)),
        E_q(ratio - 1 - sp.log(ratio)),
        E_normal(k1_gauss),
        E_normal(k2_gauss),
        E_normal(k3_gauss),
        variance(k1_gauss),
        variance(k2_gauss),
        variance(k3_gauss),
    ]
)
gaussian_values = (
    kl_gauss,
    k2_mean_gauss,
    kl_gauss,
    mu**2,
    mu**4 / 2 + mu**6 / 4,
    sp.exp(mu**2) - 1 - mu**2,
)
categorical_k3 = total(p[i] - q[i] + q[i] * sp.log(q[i] / p[i]))
table_conclusion = sp.Matrix([kl_qp, total(p[i]) - total(q[i]) + kl_qp, *gaussian_values])


def column(*entries: sp.Expr) -> sp.Matrix:
    return sp.Matrix(entries)


start = list(estimator_expectations)
estimators = Derivation(
    "estimators",
    (
        Step(
            estimator_expectations,
            "rows 1-2: E_q[k] = sum_i q_i k_i with k1 = -log r, k3 = (r - 1) - log r, r = p/q; "
            "rows 3-8: E[k] and Var[k] = E[k^2] - (E k)^2 as integrals against the N(0, 1) "
            "density, log r = mu x - mu^2/2 ('gaussian-log-ratio')",
        ),
        Step(
            column(*start[:2], *gaussian_values),
            "rows 3-8: Gaussian integrals: E x = E x^3 = 0, E x^2 = 1, E x^4 = 3 and "
            "E e^(c x) = e^(c^2/2), so E r = 1, E r^2 = e^(mu^2), E[r log r] = E_p[log r] = "
            "mu^2/2; the k2 bias is mu^4/8 and the mu^8 terms of Var k2 cancel",
        ),
        Step(
            column(kl_qp, start[1], *gaussian_values),
            "row 1: -log(p/q) = log(q/p): the definition of KL(q || p)",
        ),
        Step(
            column(kl_qp, categorical_k3, *gaussian_values),
            "row 2: q (p/q) = p and -log(p/q) = log(q/p)",
        ),
        Step(table_conclusion, "row 2: linearity of the sum"),
    ),
    statement=(
        r"\mathbb E_q[k_1] = \mathbb E_q[k_3] = \mathrm{KL}(q\,\|\,p);\ q = N(0,1),\ "
        r"p = N(\mu,1):\ \mathbb E[k_2] = \tfrac{\mu^2}{2} + \tfrac{\mu^4}{8},\ \mathrm{Var}[k_1] = "
        r"\mu^2,\ \mathrm{Var}[k_2] = \tfrac{\mu^4}{2} + \tfrac{\mu^6}{4},\ \mathrm{Var}[k_3] = "
        r"e^{\mu^2} - 1 - \mu^2"
    ),
)


def with_rows(**rows: sp.Expr) -> sp.Matrix:
    """The conclusion with some rows replaced (by index name ``r1`` ... ``r8``): a mutant's claim."""
    entries = list(table_conclusion)
    for name, value in rows.items():
        entries[int(name[1:]) - 1] = value
    return sp.Matrix(entries)


# ============================================================================ exact leg
# An example is (q, p, mu): a categorical pair and a Gaussian mean. The leg compares the
# column [E_q k1, E_q k3 by enumeration; means and variances of k1, k2, k3 by quadrature] with
# the lambdified conclusion of 'estimators'.
_table = lazy_lambdify([q, p, n, mu], table_conclusion)
_gaussian_table = lazy_lambdify([mu], sp.Matrix(gaussian_values))

#: The estimators under test: rlmath.reference's (the package's one implementation), called as
#: k(log_probs = log q(x), reference_log_probs = log p(x)) with x ~ q, so log r = log p - log q.
ESTIMATORS: dict[str, Callable[[Any, Any], Any]] = {
    "k1": kl_estimator_k1,
    "k2": kl_estimator_k2,
    "k3": kl_estimator_k3,
}

SCHULMAN_MEANS = (0.1, 0.5, 1.0)

categorical_pairs = st.integers(2, 6).flatmap(
    lambda size: st.tuples(
        probability_vectors(size, allow_zeros=False, min_probability=1e-6),
        probability_vectors(size, allow_zeros=False, min_probability=1e-6),
    )
)
gaussian_means = st.sampled_from(SCHULMAN_MEANS) | st.floats(0.05, 2.0)
examples = st.tuples(categorical_pairs, gaussian_means).map(lambda ex: (*ex[0], ex[1]))


def categorical_moments(qv: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """``[mean, sd]`` x ``[k1, k2, k3]`` under q by enumeration (two-pass variance), ``[2, 3]``.

    The terms are the reference estimators at every outcome x (q sampled: ``log_probs`` = log q).
    """
    terms = np.stack([ESTIMATORS[k](np.log(qv), np.log(pv)) for k in ("k1", "k2", "k3")])
    means = terms @ qv
    return np.stack([means, np.sqrt(((terms - means[:, None]) ** 2) @ qv)])


#: Relative accuracy asked of scipy.integrate.tanhsinh for the Gaussian moments.
QUADRATURE_EPSREL = 1e-13
#: Policy: the exact leg's tolerance for the quadratures, relative to the size of the terms:
#: 100 times the accuracy asked of the (double-exponential, adaptive) quadrature, whose error
#: estimate is conservative on these smooth, Gaussian-tailed integrands (measured: about 3e-16
#: against the closed forms for mu in [0.05, 2]), and far below the smallest mutant effect (the
#: k2 bias mu^4/8, 8e-7 at mu = 0.05, relative to a scale >= 2).
QUADRATURE_RTOL = 100 * QUADRATURE_EPSREL


def _log_densities(v: np.ndarray, mean: float) -> tuple[np.ndarray, np.ndarray]:
    """(log q(v), log p(v)) for q = N(0, 1), p = N(mean, 1), without their common -log sqrt(2 pi)."""
    return -0.5 * v * v, -0.5 * (v - mean) ** 2


@cache
def gaussian_moments_by_quadrature(mean: float) -> np.ndarray:
    """``[mean, variance]`` x ``[k1, k2, k3]`` for x ~ N(0, 1), by quadrature of the reference k's.

    The integrands evaluate rlmath.reference's estimators at the two log-densities (not the
    closed form of log r) against the N(0, 1) density; scipy.integrate.tanhsinh evaluates them
    on arrays of abscissae, so each moment costs a few vectorised calls.
    """

    def expect(function: Callable[[np.ndarray], np.ndarray]) -> float:
        result = tanhsinh(
            lambda v: function(v) * np.exp(-0.5 * v * v) / math.sqrt(2 * math.pi),
            -40.0,  # the N(0,1) tail beyond 40 is below e^-800 even against r^2 = e^(2 mu x)
            40.0,
            rtol=QUADRATURE_EPSREL,
            atol=0.0,
        )
        if not result.success:
            raise RuntimeError(f"tanhsinh did not converge for mu = {mean}: {result}")
        return float(result.integral)

    out = np.empty((2, 3))
    for column_index, name in enumerate(("k1", "k2", "k3")):
        k = ESTIMATORS[name]
        m = expect(lambda v, k=k: k(*_log_densities(v, mean)))
        out[0, column_index] = m
        out[1, column_index] = expect(lambda v, k=k, m=m: (k(*_log_densities(v, mean)) - m) ** 2)
    return out


def exact_lhs(example: tuple[np.ndarray, np.ndarray, float]) -> np.ndarray:
    """The column by other means: enumeration over q and quadrature against N(0, 1), ``[8, 1]``."""
    qv, pv, mean = example
    categorical = categorical_moments(qv, pv)[0, [0, 2]]
    gaussian = gaussian_moments_by_quadrature(mean).ravel()
    return np.concatenate([categorical, gaussian])[:, None]


def table_arguments(example: tuple[np.ndarray, np.ndarray, float]) -> tuple[Any, ...]:
    """Values of (q, p, n, mu) for the lambdified conclusion of 'estimators'."""
    qv, pv, mean = example
    return qv, pv, len(qv), mean


def _error_scale(example: tuple[np.ndarray, np.ndarray, float]) -> float:
    # Categorical rows: E[k3] cancels terms of size q (r + 1 + |log r|) (and sum p - 1); the
    # Gaussian rows: Var k3 = e^(mu^2) - 1 - mu^2 cancels terms of size e^(mu^2) + 1 + mu^2,
    # the others are at most mu^6/4 + mu^4/2 + mu^2 + 1. Errors are measured against these.
    qv, pv, mean = example
    categorical = float(np.sum(pv + qv + qv * np.abs(np.log(pv / qv))))
    gaussian = 1 + mean**2 + math.exp(mean**2) + mean**4 / 2 + mean**6 / 4
    return max(categorical, gaussian)


def _rtol(example: tuple[np.ndarray, np.ndarray, float]) -> float:
    # the quadrature policy, or float64 rounding of sums of n terms relative to their size
    return max(QUADRATURE_RTOL, exact_rtol(1.0, len(example[0])))


# ============================================================================ Monte-Carlo leg
# The table: for q = N(0,1), p = N(mu,1), mu in (0.1, 0.5, 1) (Schulman's note), and for two
# categorical examples, the exact bias and standard deviation of k1, k2, k3 relative to the
# KL, and the Monte-Carlo mean with its standard error, tested against the exact mean.
mc_categorical = (
    st.integers(3, 5)
    .flatmap(
        lambda size: st.tuples(
            st.just("categorical"),
            probability_vectors(size, allow_zeros=False, min_probability=0.05),
            probability_vectors(size, allow_zeros=False, min_probability=0.05),
        )
    )
    # every estimator must really vary: a k that is constant in exact arithmetic (k2 when
    # p/q only takes the values c and 1/c) carries only rounding noise, and its tiny standard
    # error would turn a 1e-16 rounding difference into a huge z.
    .filter(
        lambda ex: (
            float(np.abs(ex[1] - ex[2]).sum()) > 0.5
            and float(categorical_moments(ex[1], ex[2])[1].min()) > 1e-3
        )
    )
)
N_CATEGORICAL = 2
FALSE_ALARM = DEFAULT_FALSE_ALARM
N_EXAMPLES = len(SCHULMAN_MEANS) + N_CATEGORICAL
# Power 0.99 against the weakest mutant, k2 claimed unbiased, at mu = 1: delta = mu^4/8 = 0.125,
# per-sample sd of k2 = sqrt(mu^4/2 + mu^6/4) = 0.866; 3 components per example, 5 examples.
N_SAMPLES = 2 * sample_size(
    0.125, math.sqrt(0.75), false_alarm=FALSE_ALARM / N_EXAMPLES, n_components=3
)


def _kl_categorical(qv: np.ndarray, pv: np.ndarray) -> float:
    """KL(q || p): row 1 of the lambdified conclusion (the Gaussian argument is immaterial)."""
    return float(np.ravel(_table(qv, pv, len(qv), 1.0))[0])


def _kl_of(example: tuple[Any, ...]) -> float:
    if example[0] == "categorical":
        return _kl_categorical(example[1], example[2])
    return float(np.ravel(_gaussian_table(example[1]))[0])


def sample_log_densities(
    example: tuple[Any, ...], rng: np.random.Generator, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """(log q(x), log p(x)) at x ~ q, each ``[count]`` (Gaussian: up to a common constant)."""
    if example[0] == "categorical":
        qv, pv = example[1], example[2]
        a = rng.choice(len(qv), size=count, p=qv)
        return np.log(qv[a]), np.log(pv[a])
    return _log_densities(rng.standard_normal(count), example[1])


def exact_moments(example: tuple[Any, ...]) -> np.ndarray:
    """``[2, 3]`` exact mean and sd of k1, k2, k3 (enumeration, or the lambdified Gaussian rows)."""
    if example[0] == "categorical":
        return categorical_moments(example[1], example[2])
    values = np.asarray(_gaussian_table(example[1]), dtype=np.float64).reshape(2, 3)
    return np.stack([values[0], np.sqrt(values[1])])


def _describe(example: tuple[Any, ...]) -> str:
    if example[0] == "gaussian":
        return f"q = N(0,1), p = N({example[1]:g},1)"
    fmt = ", ".join
    return (
        f"q = ({fmt(f'{v:.3f}' for v in example[1])}), p = ({fmt(f'{v:.3f}' for v in example[2])})"
    )



def _printed_bias(mean: float, kl: float) -> float:
    """E[k] - KL for the evidence table, 0 when within float64 rounding of the two exact sums.

    Both are sums over the outcomes by linear algebra whose last bits depend on the BLAS kernel
    (an unbiased estimator's bias printed as -1.1e-16 with one OpenBLAS core type and 0 with
    another), so a difference below ``exact_rtol(n_terms=64)`` of their size is shown as 0: the
    page is the same on every machine.
    """
    bias = mean - kl
    return 0.0 if abs(bias) <= exact_rtol(n_terms=64) * max(abs(mean), abs(kl)) else bias

def mc_table_check(seed: int, variant: Mapping[str, Any] | None) -> LegResult:
    """Draw k1, k2, k3 at x ~ q; test each mean against its claimed exact mean; build the table.

    ``variant`` (a mutant) maps ``"estimators"`` to replacement per-sample functions of
    (log q(x), log p(x)) and/or ``"means"`` to replacement claimed means (example -> float). On
    the true claim, the terms of each example moved by a few standard errors must be rejected
    (the control).
    """
    true_claim = variant is None
    variant = variant or {}
    estimators = {**ESTIMATORS, **variant.get("estimators", {})}
    claimed_means = variant.get("means", {})
    cases = [("gaussian", m) for m in SCHULMAN_MEANS] + draw_examples(
        mc_categorical, N_CATEGORICAL, seed
    )
    table, rows, controls, passed = [], [], [], True
    for index, example in enumerate(cases):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        log_q, log_p = sample_log_densities(example, rng, N_SAMPLES)
        terms = np.stack([estimators[k](log_q, log_p) for k in ("k1", "k2", "k3")], axis=1)
        moments = exact_moments(example)
        kl = _kl_of(example)
        reference = moments[0].copy()
        for column_index, name in enumerate(("k1", "k2", "k3")):
            if name in claimed_means:
                reference[column_index] = claimed_means[name](example)
        alpha = FALSE_ALARM / len(cases)
        result = agreement(terms, reference, false_alarm=alpha, seed=[seed, index])
        passed = passed and result.agrees
        if true_claim:
            controls.append(
                shifted_control(terms, reference, result, false_alarm=alpha, seed=[seed, index])
            )
        for column_index, name in enumerate(("k1", "k2", "k3")):
            bias = _printed_bias(float(moments[0, column_index]), kl)
            table.append(
                {
                    "distribution": _describe(example),
                    "estimator": name,
                    "true_kl": kl,
                    "bias": bias,
                    "relative_bias": bias / kl,
                    "std": float(moments[1, column_index]),
                    "relative_std": float(moments[1, column_index] / kl),
                    "mc_mean": float(result.estimate[column_index]),
                    "mc_std": float(terms[:, column_index].std(ddof=1)),
                    "z": float(result.z_scores[column_index]),
                }
            )
        rows.append(agreement_row(index, result))
    evidence: dict[str, Any] = {
        "false_alarm": FALSE_ALARM,
        "samples_per_example": N_SAMPLES,
        "examples": rows,
        "table": table,
    }
    if true_claim:
        evidence["control"] = {"shift_in_critical_se": 2.0, "rejected": all(controls)}
    if passed:
        return LegResult("verified", evidence)
    bad = next(row for row in rows if not row["agrees"])
    return LegResult("failed", evidence, f"estimate disagrees with the exact mean: {bad}")


# ============================================================================ mutants
def _k3_inverted_ratio(log_q: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    log_ratio = log_p - log_q
    return np.expm1(-log_ratio) + log_ratio  # k3 computed with r = q/p


def _k1_inverted_ratio(log_q: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    log_ratio = np.subtract(log_p, log_q)
    return np.asarray(log_ratio, dtype=np.float64)  # log r instead of -log r


CLAIMS = (
    Claim(
        id="kl-estimators-bias-variance",
        title="KL estimators k1, k2, k3: k1 and k3 are unbiased, k2 is not; their spread",
        statement=Statement(
            estimator_expectations,
            table_conclusion,
            where=(
                r"r = p/q;\ \text{rows 1-2: } x \sim q \text{ categorical on } n \text{ outcomes, "
                r"with } \textstyle\sum_i p_i - \sum_i q_i = 0 \text{ for probability vectors; rows "
                r"3-8: } q = N(0,1),\ p = N(\mu,1),\ \mathbb E, \mathrm{Var} \text{ of } k_1, k_2, k_3"
            ),
            symbol_names={mu: r"\mu"},
        ),
        assumptions=(
            "Categorical case: finitely many outcomes, general n, p and q positive "
            "(p > 0 wherever q > 0 is needed for the KL to be finite); the derivation is for "
            "positive vectors, and 'control-variate' shows sum p - sum q = 0 for probability "
            "vectors.",
            "Gaussian case: q = N(0, 1) (sampled), p = N(mu, 1), mu > 0 "
            "(mu < 0 is the mirror image x -> -x).",
            "Samples x ~ q; KL(q || p) is estimated, r = p(x)/q(x).",
        ),
        references=(
            "Schulman, J., *Approximating KL Divergence*, blog post, 2020, "
            "http://joschu.net/blog/kl-approx.html (k1, k2, k3 and the bias/std table).",
            "Kullback, S. and Leibler, R. A., *On Information and Sufficiency*, "
            "Ann. Math. Statist. 22, 1951.",
        ),
        summary=(
            "Estimating KL(q || p) from samples of q: k1 = -log r and k3 = (r - 1) - log r are "
            "unbiased (k3 >= 0 with a smaller spread near q = p), k2 = (log r)^2 / 2 is biased "
            "by a fourth-order term."
        ),
        symbolic=SymbolicLeg((estimators, gaussian_log_ratio, control_variate)),
        exact=ExactLeg(
            examples,
            lhs=exact_lhs,
            symbols=(q, p, n, mu),
            arguments=table_arguments,
            rtol=_rtol,
            error_scale=_error_scale,
            max_examples=30,
            description=(
                "for a categorical pair (q, p) and a Gaussian mean mu: E_q[k1], E_q[k3] by "
                "enumeration, and the means and variances of k1, k2, k3 under N(0, 1) by "
                "quadrature (scipy.integrate.quad, log r from the two densities), vs the "
                "lambdified conclusion of 'estimators'"
            ),
        ),
        monte_carlo=MonteCarloLeg(
            mc_table_check,
            description=(
                "means of k1, k2, k3 over x ~ q vs their exact means (KL for k1, k3; "
                "mu^2/2 + mu^4/8 or enumeration for k2), with the bias/std table"
            ),
        ),
        mutants=(
            Mutant(
                "k2-unbiased",
                "k2 = (log r)^2/2 claimed unbiased: E_q[k2] = KL",
                symbolic=SymbolicMutation("estimators", with_rows(r4=kl_gauss)),
                monte_carlo={"means": {"k2": _kl_of}},
            ),
            Mutant(
                "k1-ratio-inverted",
                "k1 computed as log r (r = q/p): its mean is -KL(q || p), claimed KL",
                symbolic=SymbolicMutation("estimators", with_rows(r1=-kl_qp, r3=-kl_gauss)),
                monte_carlo={"estimators": {"k1": _k1_inverted_ratio}},
            ),
            Mutant(
                "k1-reverse-direction",
                "E_q[k1] claimed to be KL(p || q) (the other direction)",
                symbolic=SymbolicMutation("estimators", with_rows(r1=kl_pq)),
            ),
            Mutant(
                "k3-ratio-inverted",
                "k3 computed with r = q/p: (q/p - 1) + log(p/q), claimed unbiased",
                symbolic=SymbolicMutation(
                    "estimators",
                    with_rows(
                        r2=total(q[i] ** 2 / p[i]) - total(q[i]) - kl_qp,
                        r5=sp.exp(mu**2) - 1 - mu**2 / 2,
                    ),
                ),
                monte_carlo={"estimators": {"k3": _k3_inverted_ratio}},
            ),
        ),
        notes=(
            "The statement is one column: the categorical means of k1 and k3 (general n), and "
            "the Gaussian means and variances of k1, k2, k3; the exact leg evaluates its "
            "lambdified conclusion at a categorical pair and a Gaussian mean per example. "
            "Flipping the sign of the control variate, $(1 - r) - \\log r$, is *also* unbiased "
            "(it still has mean $\\mathrm{KL}$ because $\\mathbb E_q[r - 1] = 0$), but it can be "
            "negative and its variance is larger; it is therefore not a mutant of the mean. "
            "The Monte-Carlo leg's evidence holds the bias/standard-deviation table "
            "(Schulman 2020's three Gaussian cases and two categorical ones)."
        ),
    ),
)
