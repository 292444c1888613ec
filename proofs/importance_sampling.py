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
target by the support condition. The variance is $\mathbb E[X^2] - (\mathbb E X)^2$ (lemma
``variance-identity``, proved for any values and any distribution written as normalised
weights) with the same cancellation applied once, and the mean replaced by $\mathbb E_p f$.

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
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    exact_moments,
    lazy_lambdify,
    monte_carlo_leg,
)
from rlmath.symbolic import IndexSum
from rlmath.testing import probability_vectors
from rlmath.tolerances import exact_rtol

# ----------------------------------------------------------------------------- symbols
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
j = sp.Symbol("j", integer=True)
p = sp.IndexedBase("p", positive=True)  # target distribution (on the support of q)
q = sp.IndexedBase("q", positive=True)  # sampling distribution
f = sp.IndexedBase("f", real=True)


class U(sp.Function):  # noqa: N801 (sympy style)
    r"""An expression kept whole, like ``sympy.UnevaluatedExpr``: ``U(f p / q)`` is not merged
    with the factor ``q`` in front of it, so cancelling $q/q$ is a step sympy proves.

    ``doit`` unwraps it (how steps are proved, and how :func:`rlmath.symbolic.
    refuted_at_random_point` evaluates it: that evaluator does not handle ``UnevaluatedExpr``
    yet); it prints as its argument and lambdifies to it.
    """

    nargs = 1

    def doit(self, deep: bool = True, **hints: object) -> sp.Expr:
        (argument,) = self.args
        return argument.doit(deep=deep, **hints) if deep else argument

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_extended_real  # type: ignore[no-any-return]

    def _eval_is_extended_positive(self) -> bool | None:
        return self.args[0].is_extended_positive  # type: ignore[no-any-return]

    def _latex(self, printer, exp=None) -> str:  # type: ignore[no-untyped-def]
        inner = printer._print(self.args[0])
        return inner if exp is None else rf"\left({inner}\right)^{{{exp}}}"

    def _numpycode(self, printer) -> str:  # type: ignore[no-untyped-def]
        return f"({printer._print(self.args[0])})"

    _pythoncode = _lambdacode = _numpycode


def total(term: sp.Expr, index: sp.Symbol = i) -> sp.Sum:
    """$\\sum_{index=0}^{n-1}$ term, unevaluated (sympy proves each rewriting of the summand)."""
    return IndexSum(term, (index, 0, n - 1))


#: The importance-sampling estimator at outcome i, X_i = f_i p_i / q_i, kept unevaluated.
X = U(f[i] * p[i] / q[i])
#: The importance weight p_i / q_i, kept unevaluated.
weight = U(p[i] / q[i])


def E(distribution: sp.IndexedBase, term: sp.Expr) -> sp.Sum:
    """$\\mathbb E_{x \\sim \\text{distribution}}[\\text{term}]$ over outcomes 0..n-1."""
    return total(distribution[i] * term)


# ----------------------------------------------------------------------------- unbiasedness
estimator_mean = E(q, X)  # E_q[f p / q]
target_mean = E(p, f[i])  # E_p[f]
unbiased = Derivation(
    "unbiased",
    (
        Step(estimator_mean, "E_q[X] with X = f p / q, written as a sum over outcomes"),
        Step(
            total(U(sp.Mul(q[i], 1 / q[i], evaluate=False)) * p[i] * f[i]),
            "regroup the factors: q (f p / q) = (q / q) p f",
        ),
        Step(target_mean, "q(x) / q(x) = 1 where q(x) > 0 (support condition): E_p[f]"),
    ),
    statement=r"\mathbb E_q[f\,p/q] = \mathbb E_p[f]",
)

# ----------------------------------------------------------------------------- variance
# Lemma: Var = E[x^2] - (E x)^2 for any values x and any distribution, written as normalised
# positive weights w / sum w (so that sum q = 1 is what sympy uses, not an assumption).
w = sp.IndexedBase("w", positive=True)
x = sp.IndexedBase("x", real=True)
normalised = w[i] / total(w[j], j)
lemma_mean = total(w[j] * x[j], j) / total(w[j], j)
variance_identity = Derivation(
    "variance-identity",
    (
        Step(total(normalised * (x[i] - lemma_mean) ** 2), "Var x = E[(x - E x)^2] (definition)"),
        Step(
            total(normalised * x[i] ** 2)
            - 2 * lemma_mean * total(normalised * x[i])
            + lemma_mean**2 * total(normalised),
            "expand the square; E x is a constant of the sum",
        ),
        Step(
            total(normalised * x[i] ** 2) - total(normalised * x[i]) ** 2, "sum_i w_i / sum w = 1"
        ),
    ),
    statement=r"\mathrm{Var}\,x = \mathbb E[x^2] - (\mathbb E x)^2",
)

estimator_variance = E(q, X**2) - E(q, X) ** 2  # Var_q[X], by the lemma
variance_formula = E(p, f[i] ** 2 * weight) - target_mean**2
variance = Derivation(
    "variance",
    (
        Step(estimator_variance, "Var_q[X] = E_q[X^2] - (E_q X)^2 (lemma 'variance-identity')"),
        Step(
            E(p, f[i] ** 2 * weight) - E(q, X) ** 2,
            "q (f p / q)^2 = p f^2 (p / q): the second moment is an expectation under p",
        ),
        Step(variance_formula, "E_q[X] = E_p[f] (derivation 'unbiased')"),
    ),
    statement=r"\mathrm{Var}_q[f\,p/q] = \mathbb E_p[f^2 p/q] - (\mathbb E_p f)^2",
)


# ----------------------------------------------------------------------------- exact leg
# Examples (p, q, f). For the mean, q may vanish where p f = 0 (the support condition, with
# p zeroed there and renormalised, or f zeroed there): the estimator is enumerated over the
# support of q only, the lambdified E_p[f] over every outcome. For the variance q > 0
# everywhere (p^2 / q must be defined). f takes float32-representable values (|f| >= 1e-38 or
# 0), so that f^2 p^2 / q stays in the normal float64 range: with |f| ~ 1e-161 the squares
# underflow to subnormals and lose the relative precision the tolerance assumes (Hypothesis
# found this with seed 3).
def _values(size: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(
        st.floats(-10, 10, width=32, allow_subnormal=False), min_size=size, max_size=size
    ).map(lambda v: np.array(v, dtype=np.float64))


examples = st.integers(1, 6).flatmap(
    lambda size: st.tuples(
        probability_vectors(size), probability_vectors(size, allow_zeros=False), _values(size)
    )
)


@st.composite
def _supported(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, q, f) with q possibly 0 where p f = 0 (by p = 0 there, or f = 0 there)."""
    size = draw(st.integers(1, 6))
    qv = draw(probability_vectors(size))
    pv, fv = draw(probability_vectors(size)), draw(_values(size))
    off = qv == 0
    if off.any():
        if draw(st.booleans()) and not off.all() and pv[~off].sum() > 0:
            pv = np.where(off, 0.0, pv)
            pv = pv / pv.sum()
        else:
            fv = np.where(off, 0.0, fv)
    return pv, qv, fv


mean_examples = st.one_of(examples, _supported())
SYMBOLS = (p, q, f, n)


def _arguments(example: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple:  # type: ignore[type-arg]
    pv, qv, fv = example
    return pv, qv, fv, len(pv)


def estimator_moments(example: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[float, float]:
    """Mean and variance of X = f p / q under q, enumerating the support of q (two-pass)."""
    pv, qv, fv = example
    support = qv > 0
    estimator = fv[support] * pv[support] / qv[support]
    mean, sd = exact_moments(qv[support], estimator)
    return float(mean), float(sd) ** 2


def _rtol(example: tuple[np.ndarray, ...]) -> float:
    return exact_rtol(n_terms=len(example[0]))


def _mean_error_scale(example: tuple[np.ndarray, ...]) -> float:
    # Both sides sum terms of size p |f| (with rounding u per term): the attainable accuracy
    # is relative to sum p |f| (Higham 2002, eq. 4.4), not to the result, which may be 0.
    pv, _, fv = example
    return max(float(pv @ np.abs(fv)), 1e-300)


def _variance_error_scale(example: tuple[np.ndarray, ...]) -> float:
    # The formula subtracts (E_p f)^2 from E_p[f^2 p/q]: its rounding error is relative to
    # those terms (Higham 2002, eq. 4.4), not to the variance, which may be 0 (p = q, f
    # constant). Errors are measured in units of the larger term.
    pv, qv, fv = example
    return max(float(pv @ (fv**2 * pv / qv)), float(pv @ fv) ** 2, 1e-300)


#: LaTeX names (the default ones; a non-empty mapping also keeps Statement.latex from passing
#: ``symbol_names=None`` to sympy, which it rejects).
SYMBOL_NAMES = {n: "n"}
_mean_p = lazy_lambdify(SYMBOLS, unbiased.conclusion)
_variance_rhs = lazy_lambdify(SYMBOLS, variance.conclusion)


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
        summary=(
            "Reweighting samples from a behaviour policy q by p/q gives an unbiased estimate "
            "of the expectation under p, provided q covers the support of p."
        ),
        statement=Statement(
            lhs=estimator_mean,
            rhs=target_mean,
            derivation="unbiased",
            where=r"q_i > 0 \text{ wherever } p_i f_i \ne 0",
            symbol_names=SYMBOL_NAMES,
        ),
        assumptions=(
            "Finitely many outcomes (the same argument holds for densities with integrals).",
            "Support condition: q(x) > 0 wherever p(x) f(x) != 0. The symbolic derivation takes "
            "q > 0 on all n outcomes; outcomes with q(x) = 0 are never sampled and add "
            "p(x) f(x) = 0 to E_p[f], which the exact leg checks on examples with such zeros.",
        ),
        references=(
            "Owen, A. B., *Monte Carlo theory, methods and examples*, 2013, ch. 9, eq. (9.3).",
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (6).",
        ),
        symbolic=SymbolicLeg((unbiased,)),
        exact=ExactLeg(
            mean_examples,
            lhs=lambda ex: estimator_moments(ex)[0],
            rtol=_rtol,
            symbols=SYMBOLS,
            arguments=_arguments,
            error_scale=_mean_error_scale,
            description=(
                "the mean of X = f p/q under q by enumeration over the support of q (examples "
                "include q = 0 where p f = 0) vs the lambdified E_p[f] over every outcome"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            mc_examples,
            weighted_samples,
            lambda ex: _mean_p(*_arguments(ex)),
            n_samples=N_SAMPLES,
            description="mean of f(x) p(x)/q(x) over x ~ q vs the lambdified E_p[f]",
        ),
        mutants=(
            Mutant(
                "missing-importance-weight",
                "E_q[f] used for E_p[f]: the ratio p/q forgotten",
                symbolic=SymbolicMutation("unbiased", E(q, f[i])),
                monte_carlo=unweighted_samples,
            ),
            Mutant(
                "inverted-weight",
                "weight q/p instead of p/q",
                symbolic=SymbolicMutation("unbiased", E(q, f[i] * U(q[i] / p[i]))),
            ),
        ),
    ),
    Claim(
        id="importance-sampling-variance",
        title="The variance of the importance-sampling estimator",
        summary=(
            "Off-policy weights can blow up the variance: it is E_q[(p/q)^2 f^2] - (E_p f)^2,"
            " which grows as q puts little mass where p f^2 is large."
        ),
        statement=Statement(
            lhs=estimator_variance,
            rhs=variance_formula,
            derivation="variance",
            where=r"\text{the left side is } \mathrm{Var}_q[f p / q];\ q_i > 0",
            symbol_names=SYMBOL_NAMES,
        ),
        assumptions=(
            "Finitely many outcomes; q(x) > 0 for every x.",
            "The left side E_q[X^2] - (E_q X)^2 is Var_q[X] by the lemma variance-identity "
            "(proved with q written as normalised positive weights).",
        ),
        references=(
            "Owen, A. B., *Monte Carlo theory, methods and examples*, 2013, ch. 9, eq. (9.6).",
        ),
        symbolic=SymbolicLeg((unbiased, variance_identity, variance)),
        exact=ExactLeg(
            examples,
            lhs=lambda ex: estimator_moments(ex)[1],
            rtol=_rtol,
            symbols=SYMBOLS,
            arguments=_arguments,
            derivation="variance",
            error_scale=_variance_error_scale,
            description=(
                "two-pass variance sum_x q (X - E_q X)^2 of X = f p/q by enumeration vs the "
                "lambdified E_p[f^2 p/q] - (E_p f)^2"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            mc_examples,
            squared_deviation_samples,
            lambda ex: _variance_rhs(*_arguments(ex)),
            n_samples=N_SAMPLES,
            description="U-statistic (X - X')^2/2 of X = f p/q, x ~ q, vs the lambdified variance formula",
        ),
        mutants=(
            Mutant(
                "variance-under-p",
                "Var_p[f]: the weight dropped from the second moment",
                symbolic=SymbolicMutation("variance", E(p, f[i] ** 2) - target_mean**2),
            ),
            Mutant(
                "missing-importance-weight",
                "Var_q[f]: the ratio p/q forgotten altogether",
                symbolic=SymbolicMutation("variance", E(q, f[i] ** 2) - E(q, f[i]) ** 2),
                monte_carlo=unweighted_squared_deviation_samples,
            ),
        ),
    ),
)
