r"""Importance sampling: unbiased under a support condition, and its exact variance.

Main statements. For distributions $p, q$ on $n$ outcomes and any $f$,

$$ \mathbb E_{x \sim q}\!\left[f(x) \frac{p(x)}{q(x)}\right] = \mathbb E_{x \sim p}[f(x)]
   \quad\text{whenever } p(x) f(x) \ne 0 \Rightarrow q(x) > 0, $$

$$ \mathrm{Var}_{x \sim q}\!\left[f(x) \frac{p(x)}{q(x)}\right]
   = \mathbb E_{x \sim p}\!\left[f(x)^2 \frac{p(x)}{q(x)}\right] - \left(\mathbb E_{x\sim p}[f(x)]\right)^2. $$

Conventions. $q$ is the sampling (behaviour) distribution, $p$ the target; the importance
weight is $p/q$. This is the step from $\nabla \bar R$ under $\theta$ to an expectation under the
old policy $\theta'$ in PPO's surrogate.

Proof sketch. Write the expectation as a finite sum over outcomes; on the support of $q$ the
factor $q$ cancels against $1/q$; outcomes outside the support contribute $p f = 0$ to the
target by the support condition. The variance is $\mathbb E[X^2] - (\mathbb E X)^2$ with the
same cancellation applied once.

References. Owen, A. B., *Monte Carlo theory, methods and examples*, 2013, ch. 9, eq. (9.3)
and (9.6); Schulman et al., "Proximal Policy Optimization Algorithms", 2017, eq. (6).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    lambdify,
    monte_carlo_leg,
)
from rlmath.testing import probability_vectors
from rlmath.tolerances import exact_rtol

# ----------------------------------------------------------------------------- symbols
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Idx("i")
p = sp.IndexedBase("p", positive=True)  # target distribution (on the support of q)
q = sp.IndexedBase("q", positive=True)  # sampling distribution
f = sp.IndexedBase("f", real=True)
weight = p[i] / q[i]


def E(distribution: sp.IndexedBase, term: sp.Expr) -> sp.Sum:
    """$\\mathbb E_{x \\sim \\text{distribution}}[\\text{term}]$ over outcomes 0..n-1."""
    return sp.Sum(distribution[i] * term, (i, 0, n - 1))


# ----------------------------------------------------------------------------- unbiasedness
unbiased = Derivation(
    "unbiased",
    (
        Step(E(q, f[i] * weight), "definition of the importance-sampling estimator's mean"),
        Step(
            sp.Sum(q[i] * f[i] * p[i] / q[i], (i, 0, n - 1)),
            "write the expectation as a sum over outcomes",
        ),
        Step(
            sp.Sum(f[i] * p[i], (i, 0, n - 1)), "q(x)/q(x) = 1 where q(x) > 0 (support condition)"
        ),
        Step(E(p, f[i]), "definition of the expectation under p"),
    ),
    statement=r"\mathbb E_q[f\,p/q] = \mathbb E_p[f]",
)

# ----------------------------------------------------------------------------- variance
mean_p = E(p, f[i])
variance = Derivation(
    "variance",
    (
        Step(E(q, (f[i] * weight) ** 2) - E(q, f[i] * weight) ** 2, "Var X = E[X^2] - (E X)^2"),
        Step(
            sp.Sum(f[i] ** 2 * p[i] ** 2 / q[i], (i, 0, n - 1)) - E(q, f[i] * weight) ** 2,
            "q (f p / q)^2 = f^2 p^2 / q",
        ),
        Step(
            sp.Sum(f[i] ** 2 * p[i] ** 2 / q[i], (i, 0, n - 1)) - mean_p**2,
            "the mean is unbiased (derivation 'unbiased')",
        ),
        Step(E(p, f[i] ** 2 * weight) - mean_p**2, "p^2/q = p (p/q): an expectation under p"),
    ),
    statement=r"\mathrm{Var}_q[f\,p/q] = \mathbb E_p[f^2 p/q] - (\mathbb E_p f)^2",
)

# ----------------------------------------------------------------------------- exact leg
# Examples: (p, q, f) with q > 0 everywhere (so the support condition holds for any p, f).
# f takes float32-representable values (|f| >= 1e-38 or 0), so that f^2 p^2 / q stays in the
# normal float64 range: with |f| ~ 1e-161 the squares underflow to subnormals and lose the
# relative precision the tolerance assumes (Hypothesis found this with seed 3).
examples = st.integers(1, 6).flatmap(
    lambda size: st.tuples(
        probability_vectors(size),
        probability_vectors(size, allow_zeros=False),
        st.lists(
            st.floats(-10, 10, width=32, allow_subnormal=False), min_size=size, max_size=size
        ).map(lambda v: np.array(v, dtype=np.float64)),
    )
)

_mean_p = lambdify([p, f, n], unbiased.conclusion)
_variance_rhs = lambdify([p, q, f, n], variance.conclusion)


def importance_weighted_moments(example: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Mean and variance of X = f p / q under q, by direct enumeration (two-pass variance)."""
    pv, qv, fv = example
    x = fv * pv / qv
    mean = qv @ x
    return np.array([mean, qv @ (x - mean) ** 2])


def lambdified_conclusions(example: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    pv, qv, fv = example
    return np.array([_mean_p(pv, fv, len(pv)), _variance_rhs(pv, qv, fv, len(pv))])


def _rtol(example: tuple[np.ndarray, ...]) -> float:
    return exact_rtol(n_terms=len(example[0]))


def _variance_error_scale(example: tuple[np.ndarray, ...]) -> float:
    # The formula subtracts (E_p f)^2 from E_p[f^2 p/q]: its rounding error is relative to
    # those terms (Higham 2002, eq. 4.4), not to the variance, which may be 0 (p = q, f
    # constant). Errors are measured in units of the larger term.
    pv, qv, fv = example
    return max(float(pv @ (fv**2 * pv / qv)), float(pv @ fv) ** 2, 1e-300)


def _missing_weight(example: tuple[np.ndarray, ...]) -> np.ndarray:
    pv, qv, fv = example  # E_q[f] and Var_q[f]: the weight p/q forgotten
    mean = qv @ fv
    return np.array([mean, qv @ (fv - mean) ** 2])


def _weight_not_squared(example: tuple[np.ndarray, ...]) -> np.ndarray:
    pv, qv, fv = example  # E_p[f^2] - (E_p f)^2: the variance under p, not under q
    return np.array([pv @ fv, pv @ fv**2 - (pv @ fv) ** 2])


# ----------------------------------------------------------------------------- Monte-Carlo leg
# Examples for sampling: at least 2 outcomes, q bounded away from 0 (so weights p/q <= 20 and
# the CLT applies at the 1e-6 tail, see rlmath.statistics), f not constant.
mc_examples = (
    st.integers(2, 5)
    .flatmap(
        lambda size: st.tuples(
            probability_vectors(size),
            st.lists(st.floats(0.05, 1.0), min_size=size, max_size=size).map(
                lambda v: np.array(v) / sum(v)
            ),
            st.lists(st.floats(-5, 5), min_size=size, max_size=size).map(np.array),
        )
    )
    .filter(lambda ex: float(np.ptp(ex[2])) > 0.5 and float(np.abs(ex[0] - ex[1]).sum()) > 0.2)
)


def weighted_samples(
    example: tuple[np.ndarray, ...], rng: np.random.Generator, n: int
) -> np.ndarray:
    """x ~ q, term f(x) p(x)/q(x): the importance-sampling estimator's per-sample terms."""
    pv, qv, fv = example
    x = rng.choice(len(qv), size=n, p=qv)
    return fv[x] * pv[x] / qv[x]


def unweighted_samples(
    example: tuple[np.ndarray, ...], rng: np.random.Generator, n: int
) -> np.ndarray:
    pv, qv, fv = example  # mutant: the weight p/q forgotten
    return fv[rng.choice(len(qv), size=n, p=qv)]


def squared_deviation_samples(
    example: tuple[np.ndarray, ...], rng: np.random.Generator, n: int
) -> np.ndarray:
    """Pairs (X, X') i.i.d. under q: (X - X')^2 / 2 has mean Var_q[X] (U-statistic, i.i.d. terms)."""
    return 0.5 * (weighted_samples(example, rng, n) - weighted_samples(example, rng, n)) ** 2


def unweighted_squared_deviation_samples(
    example: tuple[np.ndarray, ...], rng: np.random.Generator, n: int
) -> np.ndarray:
    return 0.5 * (unweighted_samples(example, rng, n) - unweighted_samples(example, rng, n)) ** 2


# 200000 samples: the per-sample sd is at most max|f| max(p/q) <= 5 * 20 = 100 for the mean,
# and the mutant's shift |E_q f - E_p f| is typically O(1); sample_size(delta=0.5, sigma=20)
# at alpha = 1e-6 and power 0.99 is about 1.3e4, so 2e5 leaves a wide margin.
N_SAMPLES = 200_000

CLAIMS = (
    Claim(
        id="importance-sampling-unbiased",
        title="Importance sampling is unbiased",
        statement=r"\mathbb E_{x\sim q}\!\left[f(x)\tfrac{p(x)}{q(x)}\right] = \mathbb E_{x\sim p}[f(x)]",
        assumptions=(
            "Finitely many outcomes (the same argument holds for densities with integrals).",
            "Support condition: q(x) > 0 wherever p(x) f(x) != 0.",
        ),
        references=(
            "Owen, A. B., *Monte Carlo theory, methods and examples*, 2013, ch. 9, eq. (9.3).",
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (6).",
        ),
        symbolic=SymbolicLeg((unbiased,)),
        exact=ExactLeg(
            examples,
            lhs=lambda ex: importance_weighted_moments(ex)[0],
            rhs=lambda ex: lambdified_conclusions(ex)[0],
            rtol=_rtol,
            description="mean of f p/q under q by enumeration vs the lambdified E_p[f]",
        ),
        monte_carlo=monte_carlo_leg(
            mc_examples,
            weighted_samples,
            lambda ex: lambdified_conclusions(ex)[0],
            n_samples=N_SAMPLES,
            description="mean of f(x) p(x)/q(x) over x ~ q vs the lambdified E_p[f]",
        ),
        mutants=(
            Mutant(
                "missing-importance-weight",
                "E_q[f] used for E_p[f]: the ratio p/q forgotten",
                symbolic=SymbolicMutation("unbiased", E(q, f[i])),
                exact=lambda ex: _missing_weight(ex)[0],
                monte_carlo=unweighted_samples,
            ),
            Mutant(
                "inverted-weight",
                "weight q/p instead of p/q",
                symbolic=SymbolicMutation(
                    "unbiased", sp.Sum(q[i] ** 2 * f[i] / p[i], (i, 0, n - 1))
                ),
                exact=lambda ex: float(ex[1] @ (ex[2] * ex[1] / ex[0])),
            ),
        ),
    ),
    Claim(
        id="importance-sampling-variance",
        title="The variance of the importance-sampling estimator",
        statement=(
            r"\mathrm{Var}_{x\sim q}\!\left[f\tfrac{p}{q}\right]"
            r" = \mathbb E_{x\sim p}\!\left[f^2\tfrac{p}{q}\right] - \left(\mathbb E_{x\sim p} f\right)^2"
        ),
        assumptions=("Finitely many outcomes; q(x) > 0 for every x.",),
        references=(
            "Owen, A. B., *Monte Carlo theory, methods and examples*, 2013, ch. 9, eq. (9.6).",
        ),
        symbolic=SymbolicLeg((unbiased, variance)),
        exact=ExactLeg(
            examples,
            lhs=lambda ex: importance_weighted_moments(ex)[1],
            rhs=lambda ex: lambdified_conclusions(ex)[1],
            rtol=_rtol,
            error_scale=_variance_error_scale,
            description="two-pass variance of f p/q under q by enumeration vs the lambdified formula",
        ),
        monte_carlo=monte_carlo_leg(
            mc_examples,
            squared_deviation_samples,
            lambda ex: lambdified_conclusions(ex)[1],
            n_samples=N_SAMPLES,
            description="U-statistic (X - X')^2/2 of X = f p/q, x ~ q, vs the lambdified variance formula",
        ),
        mutants=(
            Mutant(
                "variance-under-p",
                "Var_p[f]: the weight dropped from the second moment",
                symbolic=SymbolicMutation("variance", E(p, f[i] ** 2) - mean_p**2),
                exact=lambda ex: _weight_not_squared(ex)[1],
            ),
            Mutant(
                "missing-importance-weight",
                "Var_q[f]: the ratio p/q forgotten altogether",
                symbolic=SymbolicMutation("variance", E(q, f[i] ** 2) - E(q, f[i]) ** 2),
                exact=lambda ex: _missing_weight(ex)[1],
                monte_carlo=unweighted_squared_deviation_samples,
            ),
        ),
    ),
)
