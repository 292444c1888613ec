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
from scipy import integrate

from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    LegResult,
    MonteCarloLeg,
    Mutant,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    agreement_row,
    draw_examples,
    lambdify,
)
from rlmath.estimators import kl_k1, kl_k2, kl_k3
from rlmath.statistics import DEFAULT_FALSE_ALARM, agreement, sample_size
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
    return sp.Sum(q[i] * term, (i, 0, n - 1))


def total(term: sp.Expr) -> sp.Sum:
    return sp.Sum(term, (i, 0, n - 1))


kl_qp = total(q[i] * sp.log(q[i] / p[i]))

k1_unbiased = Derivation(
    "k1-unbiased",
    (
        Step(E_q(-sp.log(ratio)), "E_q[k1], k1 = -log r, r = p/q"),
        Step(kl_qp, "-log(p/q) = log(q/p): the definition of KL(q || p)"),
    ),
    statement=r"\mathbb E_q[-\log r] = \mathrm{KL}(q\,\|\,p)",
)

k3_mean = Derivation(
    "k3-mean",
    (
        Step(E_q(ratio - 1 - sp.log(ratio)), "E_q[k3], k3 = (r - 1) - log r"),
        Step(
            total(p[i] - q[i] + q[i] * sp.log(q[i] / p[i])), "q (p/q) = p and -log(p/q) = log(q/p)"
        ),
        Step(total(p[i]) - total(q[i]) + kl_qp, "linearity of the sum"),
    ),
    statement=r"\mathbb E_q[k_3] = \textstyle\sum_x p(x) - \sum_x q(x) + \mathrm{KL}(q\,\|\,p)",
)

# For probability vectors the control variate's mean sum p - sum q vanishes: write p = u/sum u
# and q = w/sum w for positive weights (every positive probability vector is of this form).
control_variate = Derivation(
    "control-variate",
    (
        Step(
            total(u[i] / sp.Sum(u[j], (j, 0, n - 1))) - total(w[i] / sp.Sum(w[j], (j, 0, n - 1))),
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


gaussian_log_ratio = Derivation(
    "gaussian-log-ratio",
    (
        Step(sp.log(density_p / density_q), "log r = log p(x) - log q(x), p = N(mu,1), q = N(0,1)"),
        Step(log_r, "-(x - mu)^2/2 + x^2/2 = mu x - mu^2/2: log r is linear in x"),
    ),
    statement=r"\log r(x) = \mu x - \mu^2/2",
)

gaussian_k1 = Derivation(
    "gaussian-k1",
    (
        Step(E_normal(-log_r), "E_q[k1] with log r from 'gaussian-log-ratio'"),
        Step(kl_gauss, "E x = 0 and the density integrates to 1"),
    ),
    statement=r"\mathbb E_q[k_1] = \mathrm{KL}(q\,\|\,p) = \mu^2/2",
)

gaussian_k2 = Derivation(
    "gaussian-k2",
    (
        Step(E_normal(log_r**2 / 2), "E_q[k2] = E_q[(mu x - mu^2/2)^2] / 2"),
        Step(kl_gauss + mu**4 / 8, "E x^2 = 1, E x = 0: (mu^2 + mu^4/4)/2; the bias is mu^4/8"),
    ),
    statement=r"\mathbb E_q[k_2] = \mu^2/2 + \mu^4/8 \ne \mathrm{KL}",
)

gaussian_k3 = Derivation(
    "gaussian-k3",
    (
        Step(E_normal(r - 1 - log_r), "E_q[k3] = E_q[r] - 1 - E_q[log r]"),
        Step(kl_gauss, "E_q[r] = int p = 1 and E_q[-log r] = mu^2/2"),
    ),
    statement=r"\mathbb E_q[k_3] = \mu^2/2",
)

gaussian_k1_variance = Derivation(
    "gaussian-k1-variance",
    (
        Step(E_normal(log_r**2) - kl_gauss**2, "Var k1 = E[k1^2] - (E k1)^2"),
        Step(mu**2, "E (mu x - mu^2/2)^2 = mu^2 E x^2 + mu^4/4; the mu^4/4 cancels"),
    ),
    statement=r"\mathrm{Var}_q[k_1] = \mu^2",
)

gaussian_k2_variance = Derivation(
    "gaussian-k2-variance",
    (
        Step(E_normal(log_r**4 / 4) - k2_mean_gauss**2, "Var k2 = E[k2^2] - (E k2)^2"),
        Step(
            (3 * mu**4 + 3 * mu**6 / 2 + mu**8 / 16) / 4 - k2_mean_gauss**2,
            "expand (mu x - mu^2/2)^4; E x^4 = 3, E x^2 = 1, odd moments 0",
        ),
        Step(mu**4 / 2 + mu**6 / 4, "expand and cancel the mu^8 terms"),
    ),
    statement=r"\mathrm{Var}_q[k_2] = \mu^4/2 + \mu^6/4",
)

gaussian_k3_variance = Derivation(
    "gaussian-k3-variance",
    (
        Step(E_normal((r - 1 - log_r) ** 2) - kl_gauss**2, "Var k3 = E[k3^2] - (E k3)^2"),
        Step(
            sp.exp(mu**2) - 1 - mu**2,
            "expand the square: E r^2 = e^(mu^2), E r = 1, E[r log r] = E_p[log r] = mu^2/2, "
            "E log r = -mu^2/2, E (log r)^2 = mu^2 + mu^4/4; collect",
        ),
    ),
    statement=r"\mathrm{Var}_q[k_3] = e^{\mu^2} - 1 - \mu^2",
)

GAUSSIAN_DERIVATIONS = (
    gaussian_log_ratio,
    gaussian_k1,
    gaussian_k2,
    gaussian_k3,
    gaussian_k1_variance,
    gaussian_k2_variance,
    gaussian_k3_variance,
)

# ============================================================================ exact leg
# An example is ("categorical", q, p) or ("gaussian", mu). For the categorical case the leg
# compares E_q[k1], E_q[k3] by enumeration with the lambdified KL; for the Gaussian case the
# means and standard deviations of k1, k2, k3 by quadrature (scipy.integrate.quad) with the
# lambdified closed forms, all divided by the KL (the relative bias and spread of the table).
_kl_categorical = lambdify([q, p, n], k1_unbiased.conclusion)
_gaussian_moments = lambdify(
    [mu],
    sp.Matrix(
        [
            gaussian_k1.conclusion,
            gaussian_k2.conclusion,
            gaussian_k3.conclusion,
            sp.sqrt(gaussian_k1_variance.conclusion),
            sp.sqrt(gaussian_k2_variance.conclusion),
            sp.sqrt(gaussian_k3_variance.conclusion),
        ]
    ),
)
_gaussian_kl = lambdify([mu], kl_gauss)

ESTIMATORS: dict[str, Callable[[Any], Any]] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}

SCHULMAN_MEANS = (0.1, 0.5, 1.0)

categorical_examples = st.integers(2, 6).flatmap(
    lambda size: st.tuples(
        st.just("categorical"),
        probability_vectors(size, allow_zeros=False, min_probability=1e-6),
        probability_vectors(size, allow_zeros=False, min_probability=1e-6),
    )
)
gaussian_examples = st.tuples(
    st.just("gaussian"), st.sampled_from(SCHULMAN_MEANS) | st.floats(0.05, 2.0)
)
examples = st.one_of(gaussian_examples, categorical_examples)


def categorical_moments(qv: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """``[mean, sd]`` x ``[k1, k2, k3]`` under q by enumeration (two-pass variance), ``[2, 3]``."""
    log_ratio = np.log(pv) - np.log(qv)
    terms = np.stack([ESTIMATORS[k](log_ratio) for k in ("k1", "k2", "k3")])
    means = terms @ qv
    return np.stack([means, np.sqrt(((terms - means[:, None]) ** 2) @ qv)])


@cache
def gaussian_moments_by_quadrature(mean: float) -> np.ndarray:
    """``[mean, sd]`` x ``[k1, k2, k3]`` for x ~ N(0, 1), log r = log N(x; mu, 1) - log N(x; 0, 1)."""

    def log_ratio(v: float) -> float:
        return -0.5 * (v - mean) ** 2 + 0.5 * v * v  # from the two densities, not the closed form

    def expect(function: Callable[[float], float]) -> float:
        value, _ = integrate.quad(
            lambda v: function(v) * math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi),
            -40.0,  # the N(0,1) tail beyond 40 is below e^-800 even against r^2 = e^(2 mu x)
            40.0,
            points=(0.0, mean, 2 * mean),
            epsabs=0.0,
            epsrel=1e-13,
            limit=200,
        )
        return value

    out = np.empty((2, 3))
    for column, name in enumerate(("k1", "k2", "k3")):
        k = ESTIMATORS[name]
        m = expect(lambda v, k=k: float(k(log_ratio(v))))
        out[0, column] = m
        out[1, column] = math.sqrt(expect(lambda v, k=k, m=m: (float(k(log_ratio(v))) - m) ** 2))
    return out


def exact_lhs(example: tuple[Any, ...]) -> np.ndarray:
    if example[0] == "categorical":
        return categorical_moments(example[1], example[2])[0, [0, 2]]
    (mean,) = example[1:]
    kl = gaussian_moments_by_quadrature(mean)[0, 0]  # E_q[log q/p] by quadrature
    return gaussian_moments_by_quadrature(mean).ravel() / kl


def exact_rhs(example: tuple[Any, ...], means: Mapping[str, Any] | None = None) -> np.ndarray:
    """The lambdified conclusions; ``means`` overrides a claimed mean (a mutant's claim)."""
    means = means or {}
    if example[0] == "categorical":
        qv, pv = example[1], example[2]
        kl = _kl_categorical(qv, pv, len(qv))
        claimed = {"k1": kl, "k3": kl}
        for name, value in means.items():
            if name in claimed:
                claimed[name] = value(example)
        return np.array([claimed["k1"], claimed["k3"]])
    (mean,) = example[1:]
    values = np.asarray(_gaussian_moments(mean), dtype=np.float64).ravel()
    for column, name in enumerate(("k1", "k2", "k3")):
        if name in means:
            values[column] = means[name](example)
    return values / _gaussian_kl(mean)


def _rtol(example: tuple[Any, ...]) -> float:
    if example[0] == "gaussian":
        # Policy: quad is asked for relative accuracy 1e-13 on integrands that are smooth and
        # Gaussian-tailed; 1e-9 leaves four digits of margin and is far below the smallest
        # mutant effect (the k2 bias mu^2/4 relative to KL, >= 6e-4 at mu = 0.05).
        return 1e-9
    qv, pv = example[1], example[2]
    log_ratio = np.abs(np.log(pv) - np.log(qv))
    kl = float(_kl_categorical(qv, pv, len(qv)))
    # E[k3] adds sum p - 1 (rounding, ~n eps) and cancels terms of size q (r + 1 + |log r|).
    size = float(qv @ (pv / qv + 1 + log_ratio))
    # Relative to the result's own scale (the KL, or whichever side is larger): when p and q
    # agree to rounding, the KL is ~0 and only the absolute error ~ n eps size is meaningful.
    scale = max(abs(kl), float(np.abs(categorical_moments(qv, pv)[0, [0, 2]]).max()), 1e-300)
    return exact_rtol(max(1.0, size / scale), len(qv))


# Mutants' claimed means (for the exact and Monte-Carlo legs).
def _kl_of(example: tuple[Any, ...]) -> float:
    if example[0] == "categorical":
        qv, pv = example[1], example[2]
        return float(_kl_categorical(qv, pv, len(qv)))
    return float(_gaussian_kl(example[1]))


def _reverse_kl_of(example: tuple[Any, ...]) -> float:
    if example[0] == "categorical":
        qv, pv = example[1], example[2]
        return float(_kl_categorical(pv, qv, len(qv)))
    return float(_gaussian_kl(example[1]))  # KL(p || q) = mu^2/2 too: equal-variance Gaussians


def _inverted_k3_mean(example: tuple[Any, ...]) -> float:
    """E_q[(1/r - 1) + log r] = chi^2-type term - KL: what k3 with r = q/p averages to."""
    if example[0] == "categorical":
        qv, pv = example[1], example[2]
        return float(qv @ (qv / pv - 1 + np.log(pv / qv)))
    mean = example[1]
    return math.exp(mean**2) - 1 - mean**2 / 2


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


def sample_log_ratios(example: tuple[Any, ...], rng: np.random.Generator, count: int) -> np.ndarray:
    """log r = log p(x) - log q(x) at x ~ q, ``[count]``."""
    if example[0] == "categorical":
        qv, pv = example[1], example[2]
        a = rng.choice(len(qv), size=count, p=qv)
        return np.log(pv[a]) - np.log(qv[a])  # type: ignore[no-any-return]
    sample = rng.standard_normal(count)
    return -0.5 * (sample - example[1]) ** 2 + 0.5 * sample**2  # type: ignore[no-any-return]


def exact_moments(example: tuple[Any, ...]) -> np.ndarray:
    """``[2, 3]`` exact mean and sd of k1, k2, k3 (enumeration, or the Gaussian closed forms)."""
    if example[0] == "categorical":
        return categorical_moments(example[1], example[2])
    return np.asarray(_gaussian_moments(example[1]), dtype=np.float64).reshape(2, 3)


def _describe(example: tuple[Any, ...]) -> str:
    if example[0] == "gaussian":
        return f"q = N(0,1), p = N({example[1]:g},1)"
    fmt = ", ".join
    return (
        f"q = ({fmt(f'{v:.3f}' for v in example[1])}), p = ({fmt(f'{v:.3f}' for v in example[2])})"
    )


def mc_table_check(seed: int, variant: Mapping[str, Any] | None) -> LegResult:
    """Draw k1, k2, k3 at x ~ q; test each mean against its claimed exact mean; build the table.

    ``variant`` (a mutant) maps ``"estimators"`` to replacement per-sample functions of log r
    and/or ``"means"`` to replacement claimed means (example -> float).
    """
    variant = variant or {}
    estimators = {**ESTIMATORS, **variant.get("estimators", {})}
    claimed_means = variant.get("means", {})
    cases = [("gaussian", m) for m in SCHULMAN_MEANS] + draw_examples(
        mc_categorical, N_CATEGORICAL, seed
    )
    table, rows, passed = [], [], True
    for index, example in enumerate(cases):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        log_ratio = sample_log_ratios(example, rng, N_SAMPLES)
        terms = np.stack([estimators[k](log_ratio) for k in ("k1", "k2", "k3")], axis=1)
        moments = exact_moments(example)
        kl = _kl_of(example)
        reference = moments[0].copy()
        for column, name in enumerate(("k1", "k2", "k3")):
            if name in claimed_means:
                reference[column] = claimed_means[name](example)
        result = agreement(
            terms, reference, false_alarm=FALSE_ALARM / len(cases), seed=[seed, index]
        )
        passed = passed and result.agrees
        for column, name in enumerate(("k1", "k2", "k3")):
            table.append(
                {
                    "distribution": _describe(example),
                    "estimator": name,
                    "true_kl": kl,
                    "bias": float(moments[0, column] - kl),
                    "relative_bias": float((moments[0, column] - kl) / kl),
                    "std": float(moments[1, column]),
                    "relative_std": float(moments[1, column] / kl),
                    "mc_mean": float(result.estimate[column]),
                    "mc_std": float(terms[:, column].std(ddof=1)),
                    "z": float(result.z_scores[column]),
                }
            )
        rows.append(agreement_row(index, result))
    evidence = {
        "false_alarm": FALSE_ALARM,
        "samples_per_example": N_SAMPLES,
        "examples": rows,
        "table": table,
    }
    if passed:
        return LegResult("verified", evidence)
    bad = next(row for row in rows if not row["agrees"])
    return LegResult("failed", evidence, f"estimate disagrees with the exact mean: {bad}")


# ============================================================================ mutants
def _k3_inverted_ratio(log_ratio: np.ndarray) -> np.ndarray:
    return np.expm1(-log_ratio) + log_ratio  # k3 computed with r = q/p


def _k1_inverted_ratio(log_ratio: np.ndarray) -> np.ndarray:
    return np.asarray(log_ratio, dtype=np.float64)  # log r instead of -log r


CLAIMS = (
    Claim(
        id="kl-estimators-bias-variance",
        title="KL estimators k1, k2, k3: k1 and k3 are unbiased, k2 is not; their spread",
        statement=(
            r"\mathbb E_{x\sim q}[-\log r] = \mathbb E_{x\sim q}[(r-1)-\log r]"
            r" = \mathrm{KL}(q\,\|\,p), \quad r = p/q; \qquad"
            r" q = N(0,1),\ p = N(\mu,1):\ \mathbb E_q[\tfrac12(\log r)^2]"
            r" = \tfrac{\mu^2}{2} + \tfrac{\mu^4}{8},\ \mathrm{Var}[k_1] = \mu^2,\ "
            r"\mathrm{Var}[k_2] = \tfrac{\mu^4}{2} + \tfrac{\mu^6}{4},\ "
            r"\mathrm{Var}[k_3] = e^{\mu^2} - 1 - \mu^2"
        ),
        assumptions=(
            "Categorical case: finitely many outcomes, general n, p and q positive "
            "(p > 0 wherever q > 0 is needed for the KL to be finite).",
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
        symbolic=SymbolicLeg((k1_unbiased, k3_mean, control_variate, *GAUSSIAN_DERIVATIONS)),
        exact=ExactLeg(
            examples,
            lhs=exact_lhs,
            rhs=exact_rhs,
            rtol=_rtol,
            max_examples=30,
            description=(
                "categorical: E_q[k1], E_q[k3] by enumeration vs the lambdified KL(q || p); "
                "Gaussian: mean and sd of k1, k2, k3 by quadrature vs the lambdified closed "
                "forms, both relative to the KL"
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
                symbolic=SymbolicMutation("gaussian-k2", kl_gauss),
                exact=lambda ex: exact_rhs(ex, {"k2": _kl_of}),
                monte_carlo={"means": {"k2": _kl_of}},
            ),
            Mutant(
                "k1-ratio-inverted",
                "k1 computed as log r (r = q/p): its mean is -KL(q || p), claimed KL",
                symbolic=SymbolicMutation("k1-unbiased", -kl_qp),
                exact=lambda ex: exact_rhs(ex, {"k1": lambda e: -_kl_of(e)}),
                monte_carlo={"estimators": {"k1": _k1_inverted_ratio}},
            ),
            Mutant(
                "k1-reverse-direction",
                "E_q[k1] claimed to be KL(p || q) (the other direction)",
                symbolic=SymbolicMutation("k1-unbiased", total(p[i] * sp.log(p[i] / q[i]))),
                exact=lambda ex: exact_rhs(ex, {"k1": _reverse_kl_of}),
            ),
            Mutant(
                "k3-ratio-inverted",
                "k3 computed with r = q/p: (q/p - 1) + log(p/q), claimed unbiased",
                symbolic=SymbolicMutation("gaussian-k3", sp.exp(mu**2) - 1 - mu**2 / 2),
                exact=lambda ex: exact_rhs(ex, {"k3": _inverted_k3_mean}),
                monte_carlo={"estimators": {"k3": _k3_inverted_ratio}},
            ),
        ),
        notes=(
            "Flipping the sign of the control variate, $(1 - r) - \\log r$, is *also* unbiased "
            "(it still has mean $\\mathrm{KL}$ because $\\mathbb E_q[r - 1] = 0$), but it can be "
            "negative and its variance is larger; it is therefore not a mutant of the mean. "
            "The Monte-Carlo leg's evidence holds the bias/standard-deviation table "
            "(Schulman 2020's three Gaussian cases and two categorical ones)."
        ),
    ),
)
