r"""The policy-gradient theorem, and its closed form for a tabular softmax policy.

Main statements. For a differentiable policy $\pi_\theta$ on a finite discounted MDP
($0 \le \gamma < 1$, start distribution $\rho_0$) with $J(\theta) = \rho_0^\top V^{\pi_\theta}$,

$$ \nabla_\theta J(\theta) = \frac{1}{1-\gamma}\,
   \mathbb E_{s \sim d_\rho^\pi,\ a \sim \pi_\theta(\cdot|s)}
   \left[\nabla_\theta \log \pi_\theta(a|s)\, Q^\pi(s,a)\right], $$

and for tabular softmax logits $\theta_{s,a}$,

$$ \frac{\partial J}{\partial \theta_{s,a}} = \frac{1}{1-\gamma}\, d_\rho^\pi(s)\,
   \pi_\theta(a|s)\, A^\pi(s,a). $$

Conventions. $d_\rho^\pi(s) = (1-\gamma)\sum_t \gamma^t \Pr(s_t = s)$ is the *normalised*
discounted occupancy (it sums to 1), hence the factor $1/(1-\gamma)$. Matrices: $\Pi$ is the
$S \times SA$ policy matrix ($\Pi_{s,(s,a)} = \pi(a|s)$), $P$ the $SA \times S$ transition
matrix, $r$ the $SA$ reward vector, so $P_\pi = \Pi P$, $r_\pi = \Pi r$,
$V = (I - \gamma P_\pi)^{-1} r_\pi$, $Q = r + \gamma P V$, and
$d^\top = (1-\gamma)\rho_0^\top (I - \gamma P_\pi)^{-1}$. $J$ is an objective (maximised).

Proof sketch. Differentiate $J = \rho_0^\top (I - \gamma \Pi P)^{-1} \Pi r$ by the product
rule and $\partial(M^{-1}) = -M^{-1}(\partial M) M^{-1}$; collect
$\rho_0^\top (I - \gamma P_\pi)^{-1} (\partial\Pi)(r + \gamma P V)$ and recognise $d$ and $Q$.
The symbols do not commute, so the argument holds for matrices of every size. Row $s$ of
$(\partial\Pi) Q$ is $\sum_a \partial\pi(a|s) Q(s,a) = \mathbb E_{a\sim\pi}[\partial\log\pi\,Q]$
(log-derivative). For softmax, $\partial \log\pi(b|s)/\partial\theta_{s,a} =
\mathbb 1[a=b] - \pi(a|s)$, and $\sum_b \pi_b(\mathbb 1[a=b]-\pi_a)Q_b = \pi_a(Q_a - V)$.

References. Sutton, R. S., McAllester, D., Singh, S., Mansour, Y., "Policy Gradient Methods
for Reinforcement Learning with Function Approximation", NeurIPS 2000, Theorem 1; Agarwal,
A., Kakade, S. M., Lee, J. D., Mahajan, G., "On the Theory of Policy Gradient Methods", JMLR
22, 2021, Lemma C.1 (softmax); Sutton and Barto, *Reinforcement Learning: An
Introduction*, 2nd ed., 2018, eq. (13.2) (softmax in action preferences) and Exercise 13.3
(its score).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import exact
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
from rlmath.policy import SoftmaxPolicy
from rlmath.sampling import sample_actions
from rlmath.statistics import DEFAULT_POWER, detection_power
from rlmath.testing import (
    mdps_and_policies,
    objective_gradient_by_central_differences,
    tabular_mdps,
)
from rlmath.tolerances import (
    discounted_condition_number,
    exact_rtol,
)

# ============================================================================ the theorem
# Non-commuting symbols stand for matrices of any compatible sizes.
gamma = sp.Symbol("gamma", positive=True)
theta = sp.Symbol("theta", real=True)  # any one parameter (a coordinate of the logits)
rho = sp.Symbol("rho_0^T", commutative=False)  # 1 x S
P = sp.Symbol("P", commutative=False)  # SA x S
r = sp.Symbol("r", commutative=False)  # SA x 1
Pi = sp.Function("Pi", commutative=False)(theta)  # S x SA, depends on theta
dPi = sp.Derivative(Pi, theta)
M = 1 - gamma * Pi * P  # I - gamma P_pi
N = M**-1  # (I - gamma P_pi)^{-1}
V = N * Pi * r  # V^pi
Q = r + gamma * P * V  # Q^pi
occupancy_row = (1 - gamma) * rho * N  # d^T, the normalised discounted occupancy


def normalised(weighting: sp.Expr, q: sp.Expr = Q) -> sp.Expr:
    r"""$\frac{1}{1-\gamma}\,\text{weighting}\,(\partial\Pi)\,q$, kept unevaluated for reading."""
    return sp.Mul(1 / (1 - gamma), weighting, dPi, q, evaluate=False)


matrix_form = Derivation(
    "matrix-form",
    (
        Step(
            sp.Derivative(rho * N * Pi * r, theta), "J = rho_0^T V, V = (I - gamma Pi P)^{-1} Pi r"
        ),
        Step(
            rho * sp.Derivative(N, theta) * Pi * r + rho * N * dPi * r,
            "product rule; rho_0, P and r do not depend on theta",
        ),
        Step(
            gamma * rho * N * dPi * P * N * Pi * r + rho * N * dPi * r,
            "d(M^{-1}) = -M^{-1} (dM) M^{-1} with dM = -gamma (dPi) P",
        ),
        Step(
            rho * N * dPi * (r + gamma * P * V),
            "factor rho_0^T (I - gamma P_pi)^{-1} dPi on the left",
        ),
        Step(
            normalised(occupancy_row),
            "d^T = (1 - gamma) rho_0^T (I - gamma P_pi)^{-1} and Q = r + gamma P V",
        ),
    ),
    statement=r"\partial_\theta J = \tfrac{1}{1-\gamma}\, d^\top (\partial_\theta \Pi)\, Q",
)

# Row s of (dPi) Q, for n actions: the log-derivative trick turns it into an expectation.
n = sp.Symbol("n", integer=True, positive=True)
a = sp.Symbol("a", integer=True)
pi = sp.Function("pi", positive=True)  # pi(a | s) as a function of theta
q_row = sp.IndexedBase("Q", real=True)
pi_a = pi(a, theta)
log_derivative = Derivation(
    "log-derivative",
    (
        Step(
            sp.Sum(sp.Derivative(pi_a, theta) * q_row[a], (a, 0, n - 1)),
            "row s of (dPi) Q: sum over actions of d pi(a|s) Q(s,a)",
        ),
        Step(
            sp.Sum(
                sp.Mul(pi_a, sp.Derivative(pi_a, theta) / pi_a, evaluate=False) * q_row[a],
                (a, 0, n - 1),
            ),
            "multiply and divide by pi(a|s) > 0",
        ),
        Step(
            sp.Sum(pi_a * sp.Derivative(sp.log(pi_a), theta) * q_row[a], (a, 0, n - 1)),
            "d log f = df / f: an expectation over a ~ pi(.|s)",
        ),
    ),
    statement=r"\sum_a \partial\pi(a|s)\,Q(s,a) = \mathbb E_{a\sim\pi}[\partial\log\pi(a|s)\,Q(s,a)]",
)

# ----------------------------------------------------------------------------- numeric form
# The conclusion with d and Q given by name, then as matrices (d: 1 x S, dPi: S x SA, Q: SA x 1).
d_name, q_name, weights_name = sp.symbols("d Q_pi w", commutative=False)


@functools.lru_cache(maxsize=64)
def _matrix_function(expression: sp.Expr, S: int, A: int):
    """Lambdify a non-commutative conclusion written in d (or w), dPi and Q as matrix products."""
    shapes = {
        d_name: sp.MatrixSymbol("d", 1, S),
        weights_name: sp.MatrixSymbol("w", 1, S),
        q_name: sp.MatrixSymbol("Q", S * A, 1),
        dPi: sp.MatrixSymbol("dPi", S, S * A),
    }
    named = expression.xreplace({occupancy_row: d_name, Q: q_name})
    matrices = named.xreplace(shapes)
    return lambdify(
        [shapes[d_name], shapes[weights_name], shapes[dPi], shapes[q_name], gamma], matrices
    )


def policy_derivatives(policy: SoftmaxPolicy) -> np.ndarray:
    r"""$\partial\Pi/\partial\theta_{s,a}$ for every logit: ``[S, A, S, S*A]``.

    Row $s$ of $\partial\Pi/\partial\theta_{s,a}$ is
    $\partial\pi(b|s)/\partial\theta_{s,a} = \pi(b|s)(\mathbb 1[a=b] - \pi(a|s))
    = \pi(a|s)(e_a - \pi(\cdot|s))_b$ (symmetric in $a, b$): ``SoftmaxPolicy.score_row``
    times $\pi(a|s)$. Other rows are zero.
    """
    S, A = policy.n_states, policy.n_actions
    probabilities = policy.probabilities()
    out = np.zeros((S, A, S, S * A))
    for s in range(S):
        for a_ in range(A):
            score = policy.score_row(np.array(s), np.array(a_))
            out[s, a_, s, s * A : (s + 1) * A] = probabilities[s, a_] * score
    return out


def theorem_gradient(conclusion: sp.Expr, example, weights=None, q=None) -> np.ndarray:
    """The conclusion evaluated at every logit, with d = exact.occupancy, Q = exact.q_value."""
    mdp, policy = example
    S, A = mdp.n_states, mdp.n_actions
    function = _matrix_function(conclusion, S, A)
    d = exact.occupancy(mdp, policy)[None, :]
    w = d if weights is None else weights[None, :]
    q = exact.q_value(mdp, policy) if q is None else q
    derivatives = policy_derivatives(policy)
    return np.array(
        [
            [
                float(function(d, w, derivatives[s, a_], q.reshape(S * A, 1), mdp.gamma)[0, 0])
                for a_ in range(A)
            ]
            for s in range(S)
        ]
    )


# ----------------------------------------------------------------------------- finite differences
_last: dict[str, object] = {}


def _central_differences(example) -> tuple[np.ndarray, float]:
    """(gradient, absolute error bound) of central differences of ``exact.objective``.

    ``rlmath.testing.objective_gradient_by_central_differences``, cached per example (the legs
    ask for it several times per example).
    """
    if _last.get("example") is not example:
        result = objective_gradient_by_central_differences(example[0], example[1])
        _last.update(example=example, result=result)
    return _last["result"]  # type: ignore[return-value]


def finite_difference_gradient(example) -> np.ndarray:
    """Central differences of ``exact.objective`` in each logit, ``[S, A]``."""
    return _central_differences(example)[0]


def finite_difference_bound(example) -> float:
    """The absolute error bound of every entry of ``finite_difference_gradient``."""
    return _central_differences(example)[1]


def finite_difference_rtol(example) -> float:
    """The absolute bound of ``finite_difference_bound`` relative to the gradient's size."""
    return finite_difference_bound(example) / float(
        np.abs(finite_difference_gradient(example)).max()
    )


def resolvable(example) -> bool:
    """Whether the gradient exceeds 1000 times the finite-difference error bound.

    Below that (a constant objective, gamma = 0 with equal rewards, ...) central differences
    cannot tell a right formula from a wrong one; such examples are skipped, not passed.
    """
    bound = finite_difference_bound(example)
    return float(np.abs(finite_difference_gradient(example)).max(initial=0.0)) > 1e3 * bound


examples = mdps_and_policies(tabular_mdps(max_states=4, max_actions=3), max_abs_logit=3.0).filter(
    resolvable
)


# ----------------------------------------------------------------------------- theorem exact leg
def theorem_lhs(example) -> np.ndarray:
    gradient = finite_difference_gradient(example)
    return np.stack([gradient, gradient])


def theorem_rhs(example, conclusion: sp.Expr = matrix_form.conclusion, weights=None) -> np.ndarray:
    """[the theorem with Q; the theorem with A in place of Q (must agree: a baseline)]."""
    mdp, policy = example
    with_q = theorem_gradient(conclusion, example, weights)
    with_a = theorem_gradient(conclusion, example, weights, q=exact.advantage(mdp, policy))
    return np.stack([with_q, with_a])


def stationary_distribution(example) -> np.ndarray:
    r"""A stationary distribution $\mu P_\pi = \mu$ of the policy's chain (least squares)."""
    mdp, policy = example
    P_pi = np.einsum("sa,sat->st", policy.probabilities(), mdp.dense_transitions())
    S = mdp.n_states
    system = np.vstack([P_pi.T - np.eye(S), np.ones((1, S))])
    mu = np.linalg.lstsq(system, np.append(np.zeros(S), 1.0), rcond=None)[0]
    return mu


def undiscounted_visitation(example) -> np.ndarray:
    r"""$\frac1H \sum_{t<H} \Pr(s_t = s)$ over the effective horizon $H = \lceil 1/(1-\gamma)\rceil$."""
    mdp, policy = example
    horizon = math.ceil(1.0 / (1.0 - mdp.gamma))
    return exact.state_distributions(mdp, policy, horizon).mean(axis=0)


initial_weighting = normalised(rho)
unnormalised = sp.Mul(occupancy_row, dPi, Q, evaluate=False)


def _weighted(weights_of):
    return lambda ex: theorem_rhs(ex, normalised(weights_name), weights=weights_of(ex))


# ============================================================================ softmax
# One state s with actions b = 0..n-1 and logits theta_b; the differentiated logit is theta_k,
# k < n, written n = k + 1 + m with m >= 0 so that sympy knows k is one of the actions.
k = sp.Symbol("k", integer=True, nonnegative=True)
m = sp.Symbol("m", integer=True, nonnegative=True)
n_actions = k + m + 1
b, c = sp.symbols("b c", integer=True)
logit = sp.IndexedBase("theta", real=True)
Z = sp.Sum(sp.exp(logit[c]), (c, 0, n_actions - 1))


def softmax(index: sp.Expr) -> sp.Expr:
    return sp.exp(logit[index]) / Z


softmax_score = Derivation(
    "softmax-score",
    (
        Step(
            sp.Derivative(sp.log(softmax(b)), logit[k]), "log pi(b|s) differentiated in theta_{s,k}"
        ),
        Step(sp.Derivative(logit[b] - sp.log(Z), logit[k]), "log(e^x / Z) = x - log Z"),
        Step(
            sp.KroneckerDelta(b, k)
            - sp.Sum(sp.KroneckerDelta(c, k) * sp.exp(logit[c]), (c, 0, n_actions - 1)) / Z,
            "d theta_b / d theta_k = 1[b = k]; d log Z = dZ / Z",
        ),
        Step(sp.KroneckerDelta(b, k) - sp.exp(logit[k]) / Z, "only c = k survives the sum"),
        Step(sp.KroneckerDelta(b, k) - softmax(k), "softmax"),
    ),
    statement=r"\partial\log\pi(b|s)/\partial\theta_{s,k} = \mathbb 1[b=k] - \pi(k|s)",
)

d_s = sp.Symbol("d_s", nonnegative=True)  # d(s)
p = sp.IndexedBase("pi", positive=True)  # pi(. | s), the softmax probabilities of state s
q = sp.IndexedBase("Q", real=True)  # Q(s, .)
prefactor = d_s / (1 - gamma)


def over_actions(summand: sp.Expr) -> sp.Sum:
    return sp.Sum(summand, (b, 0, n_actions - 1))


value_s = over_actions(p[b] * q[b])  # V(s) = E_{b ~ pi} Q(s, b)

softmax_gradient = Derivation(
    "softmax-gradient",
    (
        Step(
            prefactor * over_actions(p[b] * (sp.KroneckerDelta(b, k) - p[k]) * q[b]),
            "policy-gradient theorem at theta_{s,k} (only row s of Pi depends on it) with the "
            "softmax score (derivation softmax-score)",
        ),
        Step(
            prefactor * (over_actions(p[b] * sp.KroneckerDelta(b, k) * q[b]) - p[k] * value_s),
            "linearity of the sum over b",
        ),
        Step(prefactor * (p[k] * q[k] - p[k] * value_s), "only b = k survives"),
        Step(prefactor * p[k] * (q[k] - value_s), "A(s,k) = Q(s,k) - V(s), V(s) = E_pi Q(s,.)"),
    ),
    statement=r"\partial J/\partial\theta_{s,k} = \tfrac{1}{1-\gamma}\,d(s)\,\pi(k|s)\,A(s,k)",
)


def softmax_rhs(example, conclusion: sp.Expr = softmax_gradient.conclusion) -> np.ndarray:
    """The lambdified conclusion at every (s, k): exact.occupancy, probabilities, exact.q_value."""
    mdp, policy = example
    function = _softmax_function(conclusion)
    d = exact.occupancy(mdp, policy)
    probabilities = policy.probabilities()
    Qv = exact.q_value(mdp, policy)
    S, A = mdp.n_states, mdp.n_actions
    return np.array(
        [
            [function(d[s], probabilities[s], Qv[s], mdp.gamma, k_, A - k_ - 1) for k_ in range(A)]
            for s in range(S)
        ]
    )


@functools.lru_cache(maxsize=16)
def _softmax_function(conclusion: sp.Expr):
    return lambdify([d_s, p, q, gamma, k, m], conclusion)


wrong_action_score = prefactor * (p[k] * q[k] - over_actions(p[b] ** 2 * q[b]))


# ============================================================================ Monte-Carlo legs
# The expectation over (s, a) is sampled: s ~ a state distribution w (the occupancy
# exact.occupancy, for the true claims), a ~ pi(.|s), with Q = exact.q_value exact. So what is
# checked is the theorem's expectation over the occupancy, not a value estimate. Each sample is
# an [S, A] gradient, zero outside row s.
MC_FALSE_ALARM = 1e-6  # per leg (monte_carlo_leg's default), shared by its examples
MC_EXAMPLES = 2


@dataclass(frozen=True)
class PairEstimator:
    r"""Per-sample terms $x(s, a)$, ``[S, A]``, at $s \sim w$, $a \sim \pi(\cdot|s)$.

    Attributes:
        weights: example -> ``[S]``, the distribution $w$ the states are drawn from.
        term: (example, states ``[n]``, actions ``[n]``) -> ``[n, S, A]``.
    """

    weights: Callable
    term: Callable

    def __call__(self, example, rng: np.random.Generator, n: int) -> np.ndarray:
        """``[n, S, A]`` terms of ``n`` independent draws (the ``sample`` of ``monte_carlo_leg``)."""
        mdp, policy = example
        states = rng.choice(mdp.n_states, size=n, p=_distribution(self.weights(example)))
        actions = sample_actions(policy, states, seed=int(rng.integers(2**63)))
        return self.term(example, states, actions)

    def moments(self, example) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean and standard deviation of one term, ``[S, A]`` each (every (s, a) enumerated)."""
        mdp, policy = example
        states, actions = np.divmod(np.arange(mdp.n_states * mdp.n_actions), mdp.n_actions)
        weights = _distribution(self.weights(example))
        probability = weights[states] * policy.probabilities()[states, actions]
        x = self.term(example, states, actions)
        mean = np.tensordot(probability, x, axes=1)
        variance = np.tensordot(probability, (x - mean) ** 2, axes=1)
        return mean, np.sqrt(variance)


def _distribution(weights: np.ndarray) -> np.ndarray:
    """Clip least-squares round-off (a stationary distribution's -1e-17) and renormalise."""
    clipped = np.clip(weights, 0.0, None)
    return clipped / clipped.sum()


def _in_rows(example, states: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``[n, S, A]`` with ``rows[i]`` in row ``states[i]`` and zeros elsewhere."""
    mdp = example[0]
    out = np.zeros((len(states), mdp.n_states, mdp.n_actions))
    out[np.arange(len(states)), states] = rows
    return out


def score_times_q(example, states, actions, *, normaliser: bool = True) -> np.ndarray:
    r"""$\frac{1}{1-\gamma}\nabla_\theta\log\pi_\theta(a|s)\,Q^\pi(s,a)$ with the policy's own score."""
    mdp, policy = example
    q_sa = exact.q_value(mdp, policy)[states, actions]
    scale = 1.0 / (1.0 - mdp.gamma) if normaliser else 1.0
    return policy.score(states, actions) * (scale * q_sa)[:, None, None]


def _with_score(score_rows):
    """The term ``score_rows(pi(.|s), a) Q(s, a) / (1 - gamma)`` for a hand-written score row."""

    def term(example, states, actions):
        mdp, policy = example
        q_sa = exact.q_value(mdp, policy)[states, actions] / (1.0 - mdp.gamma)
        rows = score_rows(policy.probabilities()[states], actions)
        return _in_rows(example, states, rows * q_sa[:, None])

    return term


def _indicator_score(pi_s: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """e_a: the softmax score without its -pi(.|s) part, ``[n, A]``."""
    return np.eye(pi_s.shape[1])[actions]


def _sampled_action_score(pi_s: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """e_a - pi(a|s) in every entry: the sampled action's probability, not each logit's."""
    return _indicator_score(pi_s, actions) - np.take_along_axis(pi_s, actions[:, None], axis=1)


def _advantage_row(example, states, actions) -> np.ndarray:
    """A(s, .) / (1 - gamma) whatever the action: every advantage credited, pi(a|s) forgotten."""
    mdp, policy = example
    return _in_rows(example, states, exact.advantage(mdp, policy)[states] / (1.0 - mdp.gamma))


def _occupancy(example) -> np.ndarray:
    return exact.occupancy(*example)


theorem_estimator = PairEstimator(_occupancy, score_times_q)
# mutants: the wrong state distribution, or the normaliser dropped
initial_state_estimator = PairEstimator(lambda ex: ex[0].rho0, score_times_q)
unnormalised_estimator = PairEstimator(
    _occupancy, functools.partial(score_times_q, normaliser=False)
)
stationary_estimator = PairEstimator(stationary_distribution, score_times_q)
undiscounted_estimator = PairEstimator(undiscounted_visitation, score_times_q)
# mutants of the softmax closed form, as the estimators that compute them
all_actions_estimator = PairEstimator(_occupancy, _advantage_row)
wrong_action_estimator = PairEstimator(_occupancy, _with_score(_sampled_action_score))
indicator_estimator = PairEstimator(_occupancy, _with_score(_indicator_score))

# 200000 draws of (s, a) per example (a [2e5, S, A] array, about 40 ms). The domain below puts
# every probability of the MDP at >= 0.05 (so d(s) >= 0.05: every state is drawn ~10^4 times)
# and gamma in [0.3, 0.8]. Each mutant's shift and the per-sample sd are exact
# (PairEstimator.moments); sample_size at alpha = 1e-6 / 2 with S A components gives the n for
# power 0.99. Over 203 examples of the domain with non-constant rewards the median n is 30 to
# 1200 for every mutant but the undiscounted visitation (45000: its weights differ from the
# occupancy only through Pr(s_t = s) beyond the effective horizon, which these chains soon
# forget). At 2e5 the share of examples with power >= 0.99 is 0.93 (rho_0), 1.00 (missing
# normaliser), 0.92 (stationary), 0.67 (undiscounted) and 0.97 to 1.00 for the softmax mutants.
# `_detectable` keeps only the examples where every mutant has power >= 0.99, so each
# rejection has that power on every example drawn, not merely on typical ones.
N_PAIRS = 200_000


def _power(example, estimator: PairEstimator, reference) -> float:
    """Power of the leg's test at N_PAIRS against ``estimator`` (its best component)."""
    mean, sd = estimator.moments(example)
    shift = mean - reference(example)
    return max(
        detection_power(
            float(shift[i]),
            float(sd[i]),
            N_PAIRS,
            false_alarm=MC_FALSE_ALARM / MC_EXAMPLES,
            n_components=shift.size,
        )
        for i in np.ndindex(shift.shape)
    )


def _softmax_rounding_bound(example) -> float:
    """Absolute rounding bound of the lambdified closed form: exact_rtol(kappa, S A) R/(1-gamma)^2."""
    mdp = example[0]
    value_bound = float(np.abs(mdp.r).max(initial=0.0)) / (1.0 - mdp.gamma) ** 2
    kappa = discounted_condition_number(mdp.gamma)
    return exact_rtol(kappa, mdp.n_states * mdp.n_actions) * value_bound


def _detectable(reference, error_bound, mutants):
    """Examples where the reference's error (``error_bound``, absolute) is below 1/100 of the
    standard error of every component (so it moves no z by more than 0.01; this also rules out
    a zero standard error) and every mutant estimator is rejected with power >= DEFAULT_POWER."""

    def keep(example) -> bool:
        _, sd = theorem_estimator.moments(example)
        if not (sd / math.sqrt(N_PAIRS) > 100.0 * error_bound(example)).all():
            return False
        return all(_power(example, mutant, reference) >= DEFAULT_POWER for mutant in mutants)

    return keep


mc_examples = mdps_and_policies(
    tabular_mdps(
        min_states=2,
        max_states=4,
        min_actions=2,
        max_actions=3,
        gamma=st.floats(0.3, 0.8),
        allow_zeros=False,
        min_probability=0.05,
    ),
    max_abs_logit=1.5,
)
theorem_mc_examples = mc_examples.filter(
    _detectable(
        finite_difference_gradient,
        finite_difference_bound,
        (
            initial_state_estimator,
            unnormalised_estimator,
            stationary_estimator,
            undiscounted_estimator,
        ),
    )
)
softmax_mc_examples = mc_examples.filter(
    _detectable(
        softmax_rhs,
        _softmax_rounding_bound,
        (
            all_actions_estimator,
            wrong_action_estimator,
            unnormalised_estimator,
            indicator_estimator,
        ),
    )
)


CLAIMS = (
    Claim(
        id="policy-gradient-theorem",
        title="The policy-gradient theorem (discounted, normalised occupancy)",
        statement=(
            r"\nabla_\theta J(\theta) = \frac{1}{1-\gamma}\,\mathbb E_{s\sim d_\rho^\pi,\,"
            r"a\sim\pi_\theta(\cdot|s)}\!\left[\nabla_\theta\log\pi_\theta(a|s)\,Q^\pi(s,a)\right]"
        ),
        assumptions=(
            "Finite states and actions, infinite horizon, 0 <= gamma < 1.",
            "The matrix derivation uses non-commuting symbols with only ring algebra and "
            "d(M^{-1}) = -M^{-1} dM M^{-1}: it holds for every number of states and actions.",
            "pi(a|s) > 0 where the score is taken (softmax policies), and pi is differentiable.",
            "d is the normalised discounted occupancy (1 - gamma) sum_t gamma^t Pr(s_t = s).",
        ),
        references=(
            "Sutton, R. S., McAllester, D., Singh, S., Mansour, Y., *Policy Gradient Methods for "
            "Reinforcement Learning with Function Approximation*, NeurIPS 2000, Theorem 1.",
            "Agarwal, A., Kakade, S. M., Lee, J. D., Mahajan, G., *On the Theory of Policy "
            "Gradient Methods*, JMLR 22, 2021 (the normalised-occupancy form).",
        ),
        symbolic=SymbolicLeg((matrix_form, log_derivative)),
        exact=ExactLeg(
            examples,
            lhs=theorem_lhs,
            rhs=theorem_rhs,
            rtol=finite_difference_rtol,
            max_examples=30,
            description=(
                "central differences of exact.objective in every logit (error bound from "
                "rlmath.tolerances) vs the lambdified conclusion (1/(1-gamma)) d^T (dPi) Q with "
                "d = exact.occupancy, and again with A = exact.advantage in place of Q"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            theorem_mc_examples,
            theorem_estimator,
            finite_difference_gradient,
            n_samples=N_PAIRS,
            n_examples=MC_EXAMPLES,
            false_alarm=MC_FALSE_ALARM,
            description=(
                "mean of score(s, a) Q(s, a) / (1 - gamma) over s ~ exact.occupancy, "
                "a ~ pi(.|s) (SoftmaxPolicy.score, exact.q_value) vs central differences of "
                "exact.objective"
            ),
        ),
        mutants=(
            Mutant(
                "initial-distribution-weighting",
                "states weighted by rho_0 instead of the discounted occupancy",
                symbolic=SymbolicMutation("matrix-form", initial_weighting),
                exact=_weighted(lambda ex: ex[0].rho0),
                monte_carlo=initial_state_estimator,
            ),
            Mutant(
                "missing-normaliser",
                "the 1/(1 - gamma) in front of the normalised occupancy dropped",
                symbolic=SymbolicMutation("matrix-form", unnormalised),
                exact=lambda ex: theorem_rhs(ex, unnormalised),
                monte_carlo=unnormalised_estimator,
            ),
            Mutant(
                "stationary-distribution",
                "states weighted by a stationary distribution of P_pi (the average-reward "
                "weighting) instead of the discounted occupancy",
                exact=_weighted(stationary_distribution),
                monte_carlo=stationary_estimator,
            ),
            Mutant(
                "undiscounted-occupancy",
                "states weighted by the undiscounted visitation (1/H) sum_{t<H} Pr(s_t = s) over "
                "the effective horizon H = ceil(1/(1-gamma)): the gamma^t state weights dropped",
                exact=_weighted(undiscounted_visitation),
                monte_carlo=undiscounted_estimator,
            ),
        ),
        notes=(
            "Replacing Q by A = Q - V is *not* a mutant: sum_a d pi(a|s) = 0, so a state "
            "baseline leaves the gradient unchanged. The exact leg checks this: its rhs stacks "
            "the conclusion with Q and with A, and both must match the finite differences. "
            "The exact leg's lhs is independent of the theorem: central differences of "
            "`exact.objective` with step and error bound from `rlmath.tolerances` "
            "(truncation M3 h^2/6 plus rounding delta/h)."
        ),
    ),
    Claim(
        id="softmax-policy-gradient",
        title="Policy gradient of a tabular softmax policy",
        statement=(
            r"\frac{\partial J}{\partial\theta_{s,a}} = \frac{1}{1-\gamma}\,d_\rho^\pi(s)\,"
            r"\pi_\theta(a|s)\,A^\pi(s,a)"
        ),
        assumptions=(
            "Tabular softmax policy, one logit per (s, a); any number n of actions (general n "
            "in the derivations, written n = k + 1 + m, m >= 0, for the differentiated action k).",
            "Finite MDP, infinite horizon, 0 <= gamma < 1; d normalised discounted occupancy.",
            "Starts from the policy-gradient theorem (claim policy-gradient-theorem).",
        ),
        references=(
            "Agarwal, A., Kakade, S. M., Lee, J. D., Mahajan, G., *On the Theory of Policy "
            "Gradient Methods*, JMLR 22, 2021, Lemma C.1.",
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed., "
            "2018, eq. (13.2) and Exercise 13.3.",
        ),
        symbolic=SymbolicLeg((softmax_score, softmax_gradient)),
        exact=ExactLeg(
            examples,
            lhs=finite_difference_gradient,
            rhs=softmax_rhs,
            rtol=finite_difference_rtol,
            max_examples=30,
            description=(
                "central differences of exact.objective in every logit vs the lambdified "
                "d(s) pi(k|s) (Q(s,k) - V(s)) / (1 - gamma) with exact.occupancy and exact.q_value"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            softmax_mc_examples,
            theorem_estimator,
            softmax_rhs,
            n_samples=N_PAIRS,
            n_examples=MC_EXAMPLES,
            false_alarm=MC_FALSE_ALARM,
            description=(
                "mean of score(s, a) Q(s, a) / (1 - gamma) over s ~ exact.occupancy, "
                "a ~ pi(.|s) (the theorem's expectation, sampled) vs the lambdified "
                "d(s) pi(k|s) (Q(s,k) - V(s)) / (1 - gamma)"
            ),
        ),
        mutants=(
            Mutant(
                "missing-policy-factor",
                "d(s) A(s,a) / (1 - gamma): the pi(a|s) from the softmax score dropped",
                symbolic=SymbolicMutation("softmax-gradient", prefactor * (q[k] - value_s)),
                exact=lambda ex: softmax_rhs(ex, prefactor * (q[k] - value_s)),
                monte_carlo=all_actions_estimator,
            ),
            Mutant(
                "score-of-wrong-action",
                "score 1[b = k] - pi(b|s) instead of 1[b = k] - pi(k|s)",
                symbolic=SymbolicMutation("softmax-gradient", wrong_action_score),
                exact=lambda ex: softmax_rhs(ex, wrong_action_score),
                monte_carlo=wrong_action_estimator,
            ),
            Mutant(
                "missing-normaliser",
                "d(s) pi(a|s) A(s,a): the 1/(1 - gamma) dropped",
                symbolic=SymbolicMutation("softmax-gradient", d_s * p[k] * (q[k] - value_s)),
                exact=lambda ex: softmax_rhs(ex, d_s * p[k] * (q[k] - value_s)),
                monte_carlo=unnormalised_estimator,
            ),
            Mutant(
                "action-value-instead-of-advantage",
                "d(s) pi(a|s) Q(s,a) / (1 - gamma): the -pi(a|s) part of the score (which makes "
                "the baseline V) forgotten",
                symbolic=SymbolicMutation("softmax-gradient", prefactor * p[k] * q[k]),
                exact=lambda ex: softmax_rhs(ex, prefactor * p[k] * q[k]),
                monte_carlo=indicator_estimator,
            ),
        ),
        notes=(
            "Here Q in place of A *is* a mutant: entrywise, d pi Q differs from d pi A by "
            "d(s) pi(a|s) V(s). In the expectation form of the theorem the two agree."
        ),
    ),
)
