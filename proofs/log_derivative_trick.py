r"""The log-derivative (score-function, REINFORCE) trick.

Main statement. For a family of distributions $p_\theta$ and any $f$ that does not depend on
$\theta$,

$$ \nabla_\theta\, \mathbb E_{x \sim p_\theta}[f(x)]
   = \mathbb E_{x \sim p_\theta}\!\left[f(x)\, \nabla_\theta \log p_\theta(x)\right], $$

shown for four parametrisations:

- ``categorical``: $p_\theta(a) = e^{\theta_a} / \sum_b e^{\theta_b}$ on $n$ outcomes, for
  every $n$ (a ``Sum`` over an ``IndexedBase``); the score is
  $\partial \log p_\theta(a) / \partial \theta_k = \mathbb 1[a = k] - p_\theta(k)$;
- ``bernoulli``: $\Pr(x = 1) = \sigma(\theta) = 1 / (1 + e^{-\theta})$; the score is
  $x - \sigma(\theta)$;
- ``gaussian-mean`` and ``gaussian-log-std``: $x \sim \mathcal N(\mu, \sigma^2)$ with
  parameters $\mu$ and $\omega = \log\sigma$; the scores are $(x - \mu)/\sigma^2$ and
  $(x - \mu)^2/\sigma^2 - 1$.

Conventions. $\theta$ are logits (unnormalised log-probabilities); gradients are taken with
respect to them. Expectations are under $p_\theta$ itself (on-policy). This is the step from
$\nabla \bar R(\theta)$ to $\mathbb E_{\tau \sim p_\theta}[R(\tau) \nabla \log p_\theta(\tau)]$
in the policy gradient.

Proof sketch. Differentiate under the sum (finite outcomes) or the integral (Gaussian; allowed
when $f$ has polynomial growth, since $|f\, \partial p|$ is then dominated by an integrable
function uniformly for parameters in a compact set); then $\partial p = p\, \partial \log p$ wherever
$p > 0$, which turns the sum or integral back into an expectation under $p_\theta$.

References. Williams, R. J., "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8, 1992, Sec. 4 (the REINFORCE
characteristic eligibility $\partial \ln g / \partial w$); Sutton, R. S. and Barto, A. G.,
*Reinforcement Learning: An Introduction*, 2nd ed., 2018, eq. (13.9) (softmax score);
Mohamed, S., Rosca, M., Figurnov, M., Mnih, A., "Monte Carlo Gradient Estimation in Machine
Learning", JMLR 21, 2020, Sec. 4 (score-function estimator).
"""

from __future__ import annotations

from collections.abc import Callable

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
    detectable,
    exact_moments,
    lazy_lambdify,
    monte_carlo_leg,
)
from rlmath.statistics import DEFAULT_FALSE_ALARM, sample_size
from rlmath.testing import logits
from rlmath.tolerances import exact_rtol

# ============================================================================ categorical
# n = k + m + 1 outcomes, 0-based; k is the logit we differentiate by, m the outcomes after
# it. (Writing n this way tells sympy that 0 <= k <= n - 1, so the Kronecker delta in the sum
# evaluates without a case split; every n >= 1 and every k < n is covered.)
k = sp.Symbol("k", integer=True, nonnegative=True)
m = sp.Symbol("m", integer=True, nonnegative=True)
n = k + m + 1
a = sp.Symbol("a", integer=True)
theta = sp.IndexedBase("theta", real=True)
f = sp.IndexedBase("f", real=True)
normaliser = sp.Sum(sp.exp(theta[a]), (a, 0, n - 1))


def p(outcome: sp.Expr) -> sp.Expr:
    """Softmax probability $p_\\theta(\\text{outcome}) = e^{\\theta_i} / \\sum_b e^{\\theta_b}$."""
    return sp.exp(theta[outcome]) / normaliser


def E(term: sp.Expr) -> sp.Sum:
    """$\\mathbb E_{a \\sim p_\\theta}[\\text{term}]$ over the n outcomes."""
    return sp.Sum(p(a) * term, (a, 0, n - 1))


categorical_score = sp.KroneckerDelta(a, k) - p(k)  # d log p(a) / d theta_k
categorical = Derivation(
    "categorical",
    (
        Step(sp.Derivative(E(f[a]), theta[k]), "the gradient of the expectation, coordinate k"),
        Step(
            sp.Sum(f[a] * sp.Derivative(p(a), theta[k]), (a, 0, n - 1)),
            "differentiate the finite sum term by term; f does not depend on theta",
        ),
        Step(
            sp.Sum(f[a] * p(a) * sp.Derivative(sp.log(p(a)), theta[k]), (a, 0, n - 1)),
            "d p = p d log p (p > 0)",
        ),
        Step(E(f[a] * categorical_score), "softmax score: d log p(a)/d theta_k = 1[a=k] - p(k)"),
    ),
    statement=r"\partial_{\theta_k} \mathbb E_{p_\theta}[f] = \mathbb E_{p_\theta}[f\,(\mathbb 1[x=k] - p_\theta(k))]",
)

# ============================================================================ Bernoulli
t = sp.Symbol("t", real=True)  # the Bernoulli logit
f0, f1 = sp.symbols("f_0 f_1", real=True)
sigmoid = 1 / (1 + sp.exp(-t))
bernoulli = Derivation(
    "bernoulli",
    (
        Step(
            sp.Derivative(sigmoid * f1 + (1 - sigmoid) * f0, t),
            "the gradient of E[f(x)], x ~ Bernoulli(sigmoid(t))",
        ),
        Step(
            f1 * sp.Derivative(sigmoid, t) + f0 * sp.Derivative(1 - sigmoid, t),
            "linearity of the derivative",
        ),
        Step(
            f1 * sigmoid * sp.Derivative(sp.log(sigmoid), t)
            + f0 * (1 - sigmoid) * sp.Derivative(sp.log(1 - sigmoid), t),
            "d p = p d log p (0 < sigmoid < 1)",
        ),
        Step(
            sigmoid * f1 * (1 - sigmoid) + (1 - sigmoid) * f0 * (0 - sigmoid),
            "Bernoulli score: d log p(x)/dt = x - sigmoid(t)",
        ),
    ),
    statement=r"\partial_t \mathbb E[f(x)] = \mathbb E[f(x)\,(x - \sigma(t))]",
)

# ============================================================================ Gaussian
# Pointwise in x, for an arbitrary function f (an undefined sympy Function): the integrand of
# d/d(parameter) E[f(x)] after the derivative has been moved under the integral sign, which is
# allowed for f of polynomial growth (dominated convergence; stated in the assumptions). The
# exact leg checks the integrated identity with quadrature.
x = sp.Symbol("x", real=True)
mu = sp.Symbol("mu", real=True)
omega = sp.Symbol("omega", real=True)  # log sigma
sigma = sp.exp(omega)
g = sp.Function("f", real=True)
density = sp.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (sp.sqrt(2 * sp.pi) * sigma)

UNDER_INTEGRAL = (
    "integrand of the gradient of E[f(x)] = int f p dx, the derivative taken under the "
    "integral sign"
)


def gaussian_derivation(
    name: str, parameter: sp.Symbol, score: sp.Expr, statement: str
) -> Derivation:
    return Derivation(
        name,
        (
            Step(sp.Derivative(g(x) * density, parameter), UNDER_INTEGRAL),
            Step(g(x) * sp.Derivative(density, parameter), f"f does not depend on {parameter}"),
            Step(
                g(x) * density * sp.Derivative(sp.log(density), parameter),
                "d p = p d log p (p > 0)",
            ),
            Step(g(x) * density * score, f"Gaussian score in {parameter}"),
        ),
        statement=statement,
    )


gaussian_mean = gaussian_derivation(
    "gaussian-mean",
    mu,
    (x - mu) / sigma**2,
    r"\partial_\mu\, [f(x)\,p(x)] = f(x)\,p(x)\,(x - \mu)/\sigma^2",
)
gaussian_log_std = gaussian_derivation(
    "gaussian-log-std",
    omega,
    (x - mu) ** 2 / sigma**2 - 1,
    r"\partial_{\log\sigma}\, [f(x)\,p(x)] = f(x)\,p(x)\,((x - \mu)^2/\sigma^2 - 1)",
)

# ============================================================================ exact leg
# lhs: the derivative of E[f] itself, by complex-step differentiation
# (d/dz F(z) = Im F(z + i h) / h + O(h^2) with no subtraction, so exact to rounding for
# h = 1e-20; Squire, W. and Trapp, G., SIAM Review 40, 1998) of the expectation computed by
# enumeration (categorical, Bernoulli) or by Gauss-Hermite quadrature (Gaussian; f a random
# polynomial of degree <= 3, for which 8 nodes are exact even after multiplying by a score).
# rhs: the lambdified conclusions E[f score]; the Gaussian one integrates the lambdified
# integrand with the same quadrature.
STEP = 1e-20
DEGREE = 3
NODES = 8
# Below the smallest normal float (tiny = 2^-1022) rounding is absolute (2^-1075 per operation,
# gradual underflow); the complex step holds h f' in an imaginary part, subnormal once
# |f'| < tiny / h. So an error measured relative to a scale of terms is measured relative to at
# least tiny / h (the tolerance times that is 64 n subnormal spacings of the imaginary part,
# divided by h); it matters only when every f is 0 or tiny.
COMPLEX_STEP_FLOOR = float(np.finfo(np.float64).tiny) / STEP
_nodes, _weights = np.polynomial.hermite_e.hermegauss(NODES)
_weights = _weights / np.sqrt(2.0 * np.pi)  # sum_i w_i h(z_i) = E[h(z)], z ~ N(0, 1)

Example = tuple[
    tuple[np.ndarray, np.ndarray], tuple[float, float, float], tuple[float, float, np.ndarray]
]


def f_values(bound: float) -> st.SearchStrategy[float]:
    """Values of f: float32-representable, |f| >= 1e-38 or 0. The complex step's imaginary part
    is f times a derivative times 1e-20; for |f| ~ 1e-300 (or a subnormal f, which Hypothesis
    tries) it underflows and the derivative loses its relative precision."""
    return st.floats(-bound, bound, width=32, allow_subnormal=False)


examples = st.tuples(
    st.integers(1, 6).flatmap(
        lambda size: st.tuples(
            logits(size), st.lists(f_values(10), min_size=size, max_size=size).map(np.array)
        )
    ),
    st.tuples(st.floats(-10, 10), f_values(10), f_values(10)),  # t, f_0, f_1
    st.tuples(
        st.floats(-3, 3),  # mu
        st.floats(-2, 2),  # log sigma
        st.lists(f_values(5), min_size=DEGREE + 1, max_size=DEGREE + 1).map(np.array),
    ),
)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.real.max())
    return e / e.sum()  # type: ignore[no-any-return]


def _gaussian_expectation(mean: complex, log_std: complex, cs: np.ndarray) -> complex:
    """E[f(x)], x ~ N(mean, exp(log_std)^2), f = sum_j cs[j] x^j, by quadrature (complex-safe)."""
    points = mean + np.exp(log_std) * _nodes
    return complex(_weights @ np.polynomial.polynomial.polyval(points, cs))


def gradients_by_complex_step(example: Example) -> np.ndarray:
    """[dE/d theta_k for k < n, dE/dt (Bernoulli), dE/d mu, dE/d log sigma (Gaussian)]."""
    (logit, fv), (tv, f0v, f1v), (muv, omegav, cs) = example
    h = 1j * STEP
    categorical_gradient = [
        (_softmax(logit + h * unit) @ fv).imag / STEP for unit in np.eye(len(logit))
    ]
    s = 1.0 / (1.0 + np.exp(-(tv + h)))
    bernoulli_gradient = (s * f1v + (1.0 - s) * f0v).imag / STEP
    mean_gradient = _gaussian_expectation(muv + h, omegav, cs).imag / STEP
    log_std_gradient = _gaussian_expectation(muv, omegav + h, cs).imag / STEP
    return np.array([*categorical_gradient, bernoulli_gradient, mean_gradient, log_std_gradient])


def _score_expectations(conclusions: dict[str, sp.Expr]):  # type: ignore[no-untyped-def]
    """The rhs made from (possibly mutated) conclusions of the four derivations."""
    cat = lazy_lambdify([theta, f, k, m], conclusions["categorical"])
    bern = lazy_lambdify([t, f0, f1], conclusions["bernoulli"])
    integrands = {
        name: lazy_lambdify([g, x, mu, omega], conclusions[name] / density)
        for name in ("gaussian-mean", "gaussian-log-std")
    }

    def rhs(example: Example) -> np.ndarray:
        (logit, fv), (tv, f0v, f1v), (muv, omegav, cs) = example
        size = len(logit)
        points = muv + np.exp(omegav) * _nodes

        def poly(z: np.ndarray) -> np.ndarray:
            return np.polynomial.polynomial.polyval(z, cs)  # type: ignore[no-any-return]

        gaussian = [_weights @ integrands[name](poly, points, muv, omegav) for name in integrands]
        return np.array(
            [
                *(cat(logit, fv, i, size - 1 - i) for i in range(size)),
                bern(tv, f0v, f1v),
                *gaussian,
            ],
            dtype=np.float64,
        )

    return rhs


TRUE = {d.name: d.conclusion for d in (categorical, bernoulli, gaussian_mean, gaussian_log_std)}
score_expectations = _score_expectations(TRUE)


def _error_scale(example: Example) -> float:
    r"""The size of the terms both sides sum (the error is measured relative to it).

    - Categorical, coordinate k: $\sum_a p(a) |f(a)|\, |\mathbb 1[a=k] - p(k)|$ plus
      $p(k) |f(k)|$. The term $a = k$ is $p(k) f(k) (1 - p(k))$, and $1 - p(k)$ comes from a
      subtraction (in the lambdified rhs, and inside the complex division of the lhs's
      softmax, whose imaginary part is $h\, p(k) - h\, p(k)^2$): its rounding error is
      absolute, $\varepsilon$, so its relative error is $\varepsilon / (1 - p(k))$, which for a
      large logit gap ($p(k) \to 1$) is far above $\varepsilon$. Relative to $p(k)|f(k)|$ it is
      $\varepsilon$ again.
    - Bernoulli: the rhs computes $1 - \sigma(t)$ by the same subtraction, so its terms count
      as $\sigma (|f_0| + |f_1|)$, not $\sigma (1 - \sigma)(|f_0| + |f_1|)$.
    - Gaussian: the quadrature's terms $w_i |f(x_i)|$ times the score's size
      ($|z|/\sigma$, $z^2 + 1$) on the rhs, and $w_i |f'(x_i)|$ (times $\sigma |z|$ for
      $\log\sigma$) on the complex-step lhs, with $|f|$, $|f'|$ bounded by the polynomial with
      absolute coefficients at $|\mu| + \sigma |z_i|$.

    The tolerance is :func:`~rlmath.tolerances.exact_rtol` (condition 1) for the ``n + 8``
    terms accumulated. The scale is floored at ``COMPLEX_STEP_FLOOR`` (f = 0 makes it 0).
    """
    (logit, fv), (tv, f0v, f1v), (muv, omegav, cs) = example
    pv = _softmax(logit).real
    scores = np.eye(len(pv)) - pv[None, :]  # row a: d log p(a) / d theta
    categorical_terms = (pv * np.abs(fv)) @ np.abs(scores) + pv * np.abs(fv)
    s = 1.0 / (1.0 + np.exp(-tv))
    std = np.exp(omegav)
    reach = np.abs(muv) + std * np.abs(_nodes)
    f_size = np.polynomial.polynomial.polyval(reach, np.abs(cs))
    slope_size = np.polynomial.polynomial.polyval(
        reach, np.abs(np.polynomial.polynomial.polyder(cs))
    )
    gaussian_terms = _weights @ (
        f_size * (np.abs(_nodes) / std + _nodes**2 + 1.0)
        + slope_size * (1.0 + std * np.abs(_nodes))
    )
    scale = max(float(np.max(categorical_terms)), s * (abs(f0v) + abs(f1v)), float(gaussian_terms))
    return max(scale, COMPLEX_STEP_FLOOR)


def _rtol(example: Example) -> float:
    return exact_rtol(1.0, len(example[0][0]) + NODES)


def _mutated(name: str, conclusion: sp.Expr):  # type: ignore[no-untyped-def]
    return _score_expectations({**TRUE, name: conclusion})


# ============================================================================ Monte-Carlo leg
# Sample a ~ p_theta, x ~ Bernoulli(sigmoid(t)) and z ~ N(mu, sigma^2) independently; one
# sample's terms are [f(a) score_k(a) for k < n, f(x) (x - sigmoid(t)), f(z) (z - mu)/sigma^2,
# f(z) ((z - mu)^2/sigma^2 - 1)], whose mean estimates the gradient; the reference is the
# complex-step derivative of E[f] (the exact leg's lhs), not the claimed formula. Each mutant
# replaces one family's score. The example domain keeps every outcome likely (logits in
# [-1.5, 1.5]: every p(a) >= e^-3/(e^-3 + 4) > 0.012), sigma away from 1 (else a score over sigma equals
# the right one) and the Gaussian tails moderate (the terms are degree-5 polynomials of a
# normal); the filter keeps examples on which the test at N_SAMPLES rejects every mutant with
# power >= 0.99 (rlmath.claims.detectable, from exact means and sds).
Outcomes = tuple[np.ndarray, np.ndarray, np.ndarray]  # a [N], x [N] in {0, 1}, z [N]
Scores = dict[str, Callable[..., np.ndarray]]
Sampler = Callable[[Example, np.random.Generator, int], np.ndarray]

SCORES: Scores = {
    "categorical": lambda a, pv: np.eye(len(pv))[a] - pv,  # 1[a = k] - p(k), [N, n]
    "bernoulli": lambda x, s: x - s,
    "gaussian-mean": lambda z, mean, std: (z - mean) / std**2,
    "gaussian-log-std": lambda z, mean, std: (z - mean) ** 2 / std**2 - 1.0,
}
MUTANT_SCORES: dict[str, Scores] = {
    "categorical-score-without-normaliser": {"categorical": lambda a, pv: np.eye(len(pv))[a]},
    "bernoulli-score-x": {"bernoulli": lambda x, s: x},
    "gaussian-mean-score-over-sigma": {"gaussian-mean": lambda z, mean, std: (z - mean) / std},
    "gaussian-log-std-score-without-minus-one": {
        "gaussian-log-std": lambda z, mean, std: (z - mean) ** 2 / std**2
    },
}


def _family_terms(example: Example, outcomes: Outcomes, scores: Scores) -> list[np.ndarray]:
    """Per-sample f(outcome) score(outcome) of each family: [N, n], [N, 1], [N, 2]."""
    (logit, fv), (tv, f0v, f1v), (muv, omegav, cs) = example
    a, xs, z = outcomes
    pv, s, std = _softmax(logit).real, 1.0 / (1.0 + np.exp(-tv)), np.exp(omegav)
    fz = np.polynomial.polynomial.polyval(z, cs)
    return [
        fv[a][:, None] * scores["categorical"](a, pv),
        (np.where(xs == 1, f1v, f0v) * scores["bernoulli"](xs, s))[:, None],
        np.stack(
            [fz * scores[name](z, muv, std) for name in ("gaussian-mean", "gaussian-log-std")],
            axis=1,
        ),
    ]


def _sampler(scores: Scores) -> Sampler:
    def sample(example: Example, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n, size + 3] per-sample terms, a, x and z drawn independently."""
        (logit, _), (tv, _, _), (muv, omegav, _) = example
        pv = _softmax(logit).real
        outcomes = (
            rng.choice(len(pv), size=n, p=pv),
            (rng.random(n) < 1.0 / (1.0 + np.exp(-tv))).astype(np.int64),
            muv + np.exp(omegav) * rng.standard_normal(n),
        )
        return np.concatenate(_family_terms(example, outcomes, scores), axis=1)

    return sample


score_function_samples = _sampler(SCORES)
MUTANT_SAMPLERS = {name: _sampler({**SCORES, **scores}) for name, scores in MUTANT_SCORES.items()}


def _moments(example: Example, scores: Scores) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of each component of the terms, exactly (rlmath.claims.exact_moments per
    family, each on its own outcomes): enumeration of a and x, and 8-node Gauss-Hermite
    quadrature for z (exact for the squared terms, degree <= 10 < 16)."""
    (logit, _), (tv, _, _), (muv, omegav, _) = example
    size, s = len(logit), 1.0 / (1.0 + np.exp(-tv))
    nodes = muv + np.exp(omegav) * _nodes
    families = _family_terms(example, (np.arange(size), np.array([0, 1]), nodes), scores)
    weights = [_softmax(logit).real, np.array([1.0 - s, s]), _weights]
    moments = [exact_moments(w, terms) for terms, w in zip(families, weights, strict=True)]
    return np.concatenate([m[0] for m in moments]), np.concatenate([m[1] for m in moments])


def every_mutant_detectable(example: Example) -> bool:
    """Whether the test at N_SAMPLES rejects every mutant with power >= 0.99 (components with
    zero variance, where the mean is exact, are not counted)."""
    gradient = gradients_by_complex_step(example)
    for replaced in MUTANT_SCORES.values():
        mean, sd = _moments(example, {**SCORES, **replaced})
        shift = np.where(sd > 0, mean - gradient, 0.0)
        if not detectable(shift, sd, N_SAMPLES, false_alarm=DEFAULT_FALSE_ALARM / N_MC_EXAMPLES):
            return False
    return True


MAX_OUTCOMES = 5
N_MC_EXAMPLES = 2
MIN_STANDARDISED_EFFECT = 0.05
# 23,950 samples: power 0.99 against a shift of 0.05 sd in one of up to 5 + 3 components at the
# per-example false alarm 1e-6 / 2 (about 0.05 s per run); the filter keeps the examples on
# which every mutant is detected with that power at this n.
N_SAMPLES = sample_size(
    MIN_STANDARDISED_EFFECT,
    1.0,
    false_alarm=DEFAULT_FALSE_ALARM / N_MC_EXAMPLES,
    n_components=MAX_OUTCOMES + 3,
)
mc_examples = st.tuples(
    st.integers(2, MAX_OUTCOMES).flatmap(
        lambda size: st.tuples(
            logits(size, max_abs=1.5),
            st.lists(st.floats(-5, 5), min_size=size, max_size=size).map(np.array),
        )
    ),
    st.tuples(st.floats(-2, 2), st.floats(-5, 5), st.floats(-5, 5)),  # t, f_0, f_1
    st.tuples(
        st.floats(-1, 1),  # mu
        st.sampled_from((-1.0, 1.0)).flatmap(lambda sign: st.floats(0.25, 0.6).map(sign.__mul__)),
        st.lists(st.floats(-2, 2), min_size=DEGREE + 1, max_size=DEGREE + 1).map(np.array),
    ),
).filter(every_mutant_detectable)


CATEGORICAL_INDICATOR_SCORE = E(f[a] * sp.KroneckerDelta(a, k))  # the -p(k) dropped
BERNOULLI_SCORE_X = sigmoid * f1 * 1 + (1 - sigmoid) * f0 * 0  # the -sigmoid dropped
MEAN_SCORE_OVER_SIGMA = g(x) * density * (x - mu) / sigma  # sigma, not sigma^2
LOG_STD_SCORE_WITHOUT_ONE = g(x) * density * (x - mu) ** 2 / sigma**2  # the -1 dropped

CLAIMS = (
    Claim(
        id="log-derivative-trick",
        title="The log-derivative trick",
        summary=(
            "You can differentiate an expectation by sampling: grad E_pi[f] = E_pi[f grad log"
            " pi], which is why REINFORCE multiplies returns by the score."
        ),
        statement=Statement(
            categorical.start,
            categorical.conclusion,
            derivation="categorical",
            where=(
                r"n = k + m + 1 \text{ outcomes},\ 0 \le k < n;\ \text{likewise for }"
                r" x \sim \mathrm{Bernoulli}(\sigma(t)) \text{ and } x \sim \mathcal N(\mu,"
                r" e^{2\omega});\ \text{derivations bernoulli, gaussian-mean, gaussian-log-std}"
            ),
            symbol_names={theta: r"\theta"},
        ),
        assumptions=(
            "f does not depend on the parameters.",
            "Categorical: softmax of logits theta on n outcomes; the derivation is for every "
            "n >= 1 and every coordinate k < n (written n = k + m + 1).",
            "Bernoulli: Pr(x = 1) = sigmoid(t).",
            "Gaussian: x ~ N(mu, sigma^2) with parameters mu and omega = log sigma. The "
            "derivation is pointwise in x for an arbitrary f; moving the derivative under the "
            "integral sign is assumed (it holds for f of polynomial growth by dominated "
            "convergence) and checked by the exact leg for random cubic f.",
            "Monte-Carlo leg: 2-5 outcomes with logits in [-1.5, 1.5]; Bernoulli logit in "
            "[-2, 2]; Gaussian with |mu| <= 1, 0.25 <= |log sigma| <= 0.6, cubic f with "
            "coefficients in [-2, 2].",
        ),
        references=(
            "Williams, R. J., *Simple statistical gradient-following algorithms for "
            "connectionist reinforcement learning*, Machine Learning 8, 1992, Sec. 4.",
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd "
            "ed., 2018, eq. (13.9).",
            "Mohamed, S., Rosca, M., Figurnov, M. and Mnih, A., *Monte Carlo Gradient "
            "Estimation in Machine Learning*, JMLR 21, 2020, Sec. 4.",
        ),
        symbolic=SymbolicLeg((categorical, bernoulli, gaussian_mean, gaussian_log_std)),
        exact=ExactLeg(
            examples,
            lhs=gradients_by_complex_step,
            rhs=score_expectations,
            rhs_reason=(
                "the claim has four parametrisations, each with its own derivation; the rhs "
                "stacks the lambdified conclusion of each (categorical for every coordinate, "
                "Bernoulli, and the two Gaussian integrands integrated by Gauss-Hermite "
                "quadrature over the nodes), which one lambdified expression cannot do"
            ),
            rtol=_rtol,
            error_scale=_error_scale,
            description=(
                "complex-step derivative of E[f] (enumeration; Gauss-Hermite quadrature for the "
                "Gaussian, random cubic f) vs the lambdified E[f score] of each family; the "
                "error is relative to the size of the summed terms"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            mc_examples,
            score_function_samples,
            gradients_by_complex_step,
            n_samples=N_SAMPLES,
            n_examples=N_MC_EXAMPLES,
            description=(
                "mean of f(x) score(x) over samples of the categorical, Bernoulli and Gaussian "
                "vs the complex-step derivative of E[f]"
            ),
        ),
        mutants=(
            Mutant(
                "categorical-score-without-normaliser",
                "softmax score taken as 1[a=k], forgetting the -p(k) from the normaliser",
                symbolic=SymbolicMutation("categorical", CATEGORICAL_INDICATOR_SCORE),
                exact=_mutated("categorical", CATEGORICAL_INDICATOR_SCORE),
                monte_carlo=MUTANT_SAMPLERS["categorical-score-without-normaliser"],
            ),
            Mutant(
                "bernoulli-score-x",
                "Bernoulli score taken as x instead of x - sigmoid(t)",
                symbolic=SymbolicMutation("bernoulli", BERNOULLI_SCORE_X),
                exact=_mutated("bernoulli", BERNOULLI_SCORE_X),
                monte_carlo=MUTANT_SAMPLERS["bernoulli-score-x"],
            ),
            Mutant(
                "gaussian-mean-score-over-sigma",
                "mean score (x - mu)/sigma instead of (x - mu)/sigma^2",
                symbolic=SymbolicMutation("gaussian-mean", MEAN_SCORE_OVER_SIGMA),
                exact=_mutated("gaussian-mean", MEAN_SCORE_OVER_SIGMA),
                monte_carlo=MUTANT_SAMPLERS["gaussian-mean-score-over-sigma"],
            ),
            Mutant(
                "gaussian-log-std-score-without-minus-one",
                "log-std score (x - mu)^2/sigma^2, forgetting the -1 from the normaliser 1/sigma",
                symbolic=SymbolicMutation("gaussian-log-std", LOG_STD_SCORE_WITHOUT_ONE),
                exact=_mutated("gaussian-log-std", LOG_STD_SCORE_WITHOUT_ONE),
                monte_carlo=MUTANT_SAMPLERS["gaussian-log-std-score-without-minus-one"],
            ),
        ),
    ),
)
