r"""The performance-difference lemma, and the importance-sampled surrogate it justifies.

Main statements. For two policies $\pi, \pi'$ on a finite discounted MDP,

$$ J(\pi) - J(\pi') = \frac{1}{1-\gamma}\,
   \mathbb E_{s\sim d_\rho^{\pi},\ a\sim\pi(\cdot|s)}\left[A^{\pi'}(s,a)\right]. $$

The surrogate of the source post (PPO), with the state distribution made explicit,

$$ J^{\theta'}(\theta) = \mathbb E_{s\sim d_\rho^{\theta'},\ a\sim\pi_{\theta'}(\cdot|s)}
   \left[\frac{\pi_\theta(a|s)}{\pi_{\theta'}(a|s)}\,A^{\theta'}(s,a)\right], $$

vanishes at $\theta = \theta'$, its gradient there is the policy gradient up to the
normalisation, $\nabla J(\theta') = \nabla_\theta J^{\theta'}(\theta)|_{\theta=\theta'}/(1-\gamma)$,
and away from $\theta'$ the two differ at second order, exactly:

$$ J(\theta) - J(\theta') - \frac{J^{\theta'}(\theta)}{1-\gamma}
   = \frac{1}{1-\gamma}\,(d^{\theta} - d^{\theta'})^\top (\Pi_\theta - \Pi_{\theta'})\, Q^{\theta'}. $$

Conventions. $d$ is the normalised discounted occupancy; $\Pi$ the $S\times SA$ policy matrix,
$P$ the $SA\times S$ transitions, $r$ the $SA$ rewards; $V' = \Pi' Q'$. The surrogate samples
states from $d^{\theta'}$ and actions from the old policy $\pi_{\theta'}$; the importance
weight is $\pi_\theta/\pi_{\theta'}$ (new over old).

Proof sketch. Lemma: insert $I = (I-\gamma P_\pi)^{-1}(I-\gamma P_\pi)$ in front of $V'$,
collect $\rho_0^\top (I-\gamma P_\pi)^{-1}(\Pi(r + \gamma P V') - V')$ and recognise $d$ and
$Q'$. Surrogate: at $\theta = \theta'$ the weight is 1 and $\mathbb E_{a\sim\pi'} A' = 0$;
differentiating under the sum gives $\mathbb E[\nabla\log\pi\,A']$, which is $(1-\gamma)$
times the policy gradient (policy-gradient theorem with the baseline $V'$); importance
sampling turns the surrogate into $d'^\top(\Pi Q' - V')$, the lemma turns $J(\theta) -
J(\theta')$ into $d^\top(\Pi Q' - V')/(1-\gamma)$, and their difference factors as a product
of two first-order differences.

References. Kakade, S. and Langford, J., "Approximately Optimal Approximate Reinforcement
Learning", ICML 2002, Lemma 6.1; Schulman, J., Levine, S., Moritz, P., Jordan, M., Abbeel, P.,
"Trust Region Policy Optimization", ICML 2015, eqs. (1)-(3) and (14); Schulman, J. et al.,
"Proximal Policy Optimization Algorithms", 2017, eq. (6).
"""

from __future__ import annotations

import functools
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
from rlmath.estimators import surrogate_gradient as surrogate_gradient_terms
from rlmath.policy import SoftmaxPolicy
from rlmath.sampling import Rollouts, rollouts, sample_actions
from rlmath.statistics import DEFAULT_POWER, detection_power
from rlmath.testing import (
    logits,
    mdps_and_policies,
    objective_gradient_by_central_differences,
    softmax_policies,
    tabular_mdps,
)
from rlmath.tolerances import (
    discounted_condition_number,
    exact_rtol,
)

# ============================================================================ the lemma
# Non-commuting symbols stand for matrices of any compatible sizes.
gamma = sp.Symbol("gamma", positive=True)
rho = sp.Symbol("rho_0^T", commutative=False)  # 1 x S
P = sp.Symbol("P", commutative=False)  # SA x S
r = sp.Symbol("r", commutative=False)  # SA x 1
Pi = sp.Symbol("Pi", commutative=False)  # S x SA, the policy pi
Pi_ref = sp.Symbol("Pi'", commutative=False)  # S x SA, the reference policy pi'
V_ref = sp.Symbol("V'", commutative=False)  # S x 1, V^{pi'} (any vector, in fact)
M = 1 - gamma * Pi * P  # I - gamma P_pi
N = M**-1
Q_ref = r + gamma * P * V_ref  # Q^{pi'} = r + gamma P V^{pi'}
occupancy_row = (1 - gamma) * rho * N  # d^T of pi
occupancy_ref_row = (1 - gamma) * rho * (1 - gamma * Pi_ref * P) ** -1  # d^T of pi'


def normalised(weighting: sp.Expr, inner: sp.Expr) -> sp.Expr:
    """(1/(1-gamma)) weighting inner, kept unevaluated for reading."""
    return sp.Mul(1 / (1 - gamma), weighting, inner, evaluate=False)


expected_advantage = Pi * Q_ref - V_ref  # E_{a ~ pi}[A^{pi'}(s, a)] per state (sum_a pi = 1)

lemma = Derivation(
    "telescoping",
    (
        Step(
            rho * N * Pi * r - rho * V_ref,
            "J(pi) = rho_0^T (I - gamma Pi P)^{-1} Pi r and J(pi') = rho_0^T V'",
        ),
        Step(
            rho * N * Pi * r - sp.Mul(rho, N, M, V_ref, evaluate=False),
            "insert (I - gamma P_pi)^{-1} (I - gamma P_pi) = I",
        ),
        Step(
            rho * N * (Pi * r - sp.Mul(M, V_ref, evaluate=False)),
            "factor rho_0^T (I - gamma P_pi)^{-1} on the left",
        ),
        Step(rho * N * (Pi * r + gamma * Pi * P * V_ref - V_ref), "expand (I - gamma Pi P) V'"),
        Step(rho * N * (Pi * (r + gamma * P * V_ref) - V_ref), "factor Pi"),
        Step(
            normalised(occupancy_row, expected_advantage),
            "d^T = (1 - gamma) rho_0^T (I - gamma P_pi)^{-1}; Q' = r + gamma P V'; "
            "(Pi Q' - V')(s) = E_{a ~ pi}[A'(s, a)] since sum_a pi(a|s) = 1",
        ),
    ),
    statement=r"J(\pi) - J(\pi') = \tfrac{1}{1-\gamma}\, d_\pi^\top (\Pi Q' - V')",
)

# ----------------------------------------------------------------------------- numeric form
d_name, d_ref_name, q_name = sp.symbols("d d' Q'", commutative=False)


@functools.lru_cache(maxsize=64)
def matrix_function(expression: sp.Expr, S: int, A: int):
    """Lambdify a non-commutative conclusion as matrix products (d, d': 1 x S, Q': SA x 1)."""
    shapes = {
        d_name: sp.MatrixSymbol("d", 1, S),
        d_ref_name: sp.MatrixSymbol("d_ref", 1, S),
        q_name: sp.MatrixSymbol("Q_ref", S * A, 1),
        Pi: sp.MatrixSymbol("Pi", S, S * A),
        Pi_ref: sp.MatrixSymbol("Pi_ref", S, S * A),
        V_ref: sp.MatrixSymbol("V_ref", S, 1),
    }
    named = expression.xreplace(
        {occupancy_row: d_name, occupancy_ref_row: d_ref_name, Q_ref: q_name}
    )
    arguments = [shapes[x] for x in (d_name, d_ref_name, q_name, Pi, Pi_ref, V_ref)]
    return lambdify([*arguments, gamma], named.xreplace(shapes))


def policy_matrix(policy: SoftmaxPolicy) -> np.ndarray:
    r"""$\Pi$, ``[S, S*A]``: row $s$ holds $\pi(\cdot|s)$ in columns $sA..sA+A-1$."""
    S, A = policy.n_states, policy.n_actions
    out = np.zeros((S, S * A))
    for s in range(S):
        out[s, s * A : (s + 1) * A] = policy.probabilities()[s]
    return out


def evaluate(expression: sp.Expr, mdp, policy, reference) -> float:
    """A matrix conclusion with d, d' = exact.occupancy and Q', V' = exact.q_value, exact.value."""
    S, A = mdp.n_states, mdp.n_actions
    function = matrix_function(expression, S, A)
    value = function(
        exact.occupancy(mdp, policy)[None, :],
        exact.occupancy(mdp, reference)[None, :],
        exact.q_value(mdp, reference).reshape(S * A, 1),
        policy_matrix(policy),
        policy_matrix(reference),
        exact.value(mdp, reference)[:, None],
        mdp.gamma,
    )
    return float(np.asarray(value).reshape(-1)[0])


def _value_scale(mdp) -> float:
    """Largest |value| possible, R / (1 - gamma): the scale of every rounding error here."""
    return float(np.abs(mdp.r).max(initial=0.0)) / (1.0 - mdp.gamma)


def _rounding_bound(mdp) -> float:
    return exact_rtol(discounted_condition_number(mdp.gamma), mdp.n_states * mdp.n_actions) * (
        _value_scale(mdp)
    )


# ----------------------------------------------------------------------------- lemma exact leg
_last: dict[str, object] = {}


def objective_difference(example) -> float:
    """J(pi) - J(pi') from exact.objective (cached for the example in hand)."""
    if _last.get("example") is not example:
        mdp, policy, reference = example
        difference = exact.objective(mdp, policy) - exact.objective(mdp, reference)
        _last.update(example=example, difference=difference)
    return _last["difference"]  # type: ignore[return-value]


def lemma_rhs(example, conclusion: sp.Expr = lemma.conclusion) -> float:
    return evaluate(conclusion, *example)


def lemma_rtol(example) -> float:
    return 4.0 * _rounding_bound(example[0]) / abs(objective_difference(example))


def lemma_resolvable(example) -> bool:
    """Skip examples whose objective difference is below 1000 rounding errors (no resolution)."""
    return abs(objective_difference(example)) > 4e3 * _rounding_bound(example[0])


def _with_reference(pair):
    mdp, policy = pair
    return softmax_policies(mdp.n_states, mdp.n_actions, max_abs_logit=3.0).map(
        lambda reference: (mdp, policy, reference)
    )


lemma_examples = (
    mdps_and_policies(tabular_mdps(max_states=4, max_actions=3), max_abs_logit=3.0)
    .flatmap(_with_reference)
    .filter(lemma_resolvable)
)

# mutants of the lemma
reference_occupancy = normalised(occupancy_ref_row, expected_advantage)
own_advantage = normalised(occupancy_row, Pi * (r + gamma * P * N * Pi * r) - N * Pi * r)
missing_normaliser = sp.Mul(occupancy_row, expected_advantage, evaluate=False)


def _own_advantage_rhs(example) -> float:
    mdp, policy, _ = example  # E_{d_pi, pi}[A^pi] / (1 - gamma): always 0
    return evaluate(lemma.conclusion, mdp, policy, policy)


# ============================================================================ the surrogate
# (a) E_{a ~ pi'}[A'(s, a)] = 0 in every state: one state, n actions, pi' = w / sum w.
n = sp.Symbol("n", integer=True, positive=True)
a, b = sp.symbols("a b", integer=True)
w = sp.IndexedBase("w", positive=True)
q = sp.IndexedBase("Q", real=True)  # Q'(s, .)
p_ref = w[a] / sp.Sum(w[a], (a, 0, n - 1))  # pi'(a | s)
value_ref = sp.Sum(p_ref.subs(w[a], w[b]) * q[b], (b, 0, n - 1))  # V'(s) = E_{b ~ pi'} Q'(s, b)
ratio_at_reference = sp.Mul(p_ref, sp.Pow(p_ref, -1, evaluate=False), evaluate=False)


def over_actions(summand: sp.Expr) -> sp.Sum:
    return sp.Sum(summand, (a, 0, n - 1))


vanishes = Derivation(
    "vanishes-at-reference",
    (
        Step(
            over_actions(p_ref * ratio_at_reference * q[a])
            - value_ref * over_actions(p_ref * ratio_at_reference),
            "the surrogate's inner expectation at theta = theta', E_{a ~ pi'}[(pi'/pi') "
            "(Q'(s,a) - V'(s))], split by linearity",
        ),
        Step(over_actions(p_ref * q[a]) - value_ref * over_actions(p_ref), "the weight is 1"),
        Step(over_actions(p_ref * q[a]) - value_ref, "sum_a pi'(a|s) = 1"),
        Step(sp.Integer(0), "V'(s) = E_{a ~ pi'} Q'(s, a)"),
    ),
    statement=r"J^{\theta'}(\theta') = \sum_s d'(s)\,\mathbb E_{a\sim\pi'}[A'(s,a)] = 0",
)

# (b) the gradient at theta = theta', for S states and n actions; theta is one parameter.
S_states = sp.Symbol("S", integer=True, positive=True)
s = sp.Symbol("s", integer=True)
theta, theta_ref = sp.symbols("theta theta'", real=True)
pi = sp.Function("pi", positive=True)  # pi(s, a, theta) = pi_theta(a | s)
d_ref = sp.IndexedBase("d'", nonnegative=True)
adv = sp.IndexedBase("A'", real=True)


def over_pairs(summand: sp.Expr) -> sp.Sum:
    return sp.Sum(d_ref[s] * sp.Sum(summand, (a, 0, n - 1)), (s, 0, S_states - 1))


at_reference = pi(s, a, theta_ref)
score_at_reference = sp.Subs(sp.Derivative(sp.log(pi(s, a, theta)), theta), theta, theta_ref)
policy_gradient_form = over_pairs(at_reference * score_at_reference * adv[s, a])

gradient = Derivation(
    "gradient-at-reference",
    (
        Step(
            sp.Subs(
                sp.Derivative(
                    over_pairs(at_reference * pi(s, a, theta) / at_reference * adv[s, a]), theta
                ),
                theta,
                theta_ref,
            ),
            "d/dtheta of J^{theta'}(theta) at theta = theta'",
        ),
        Step(
            over_pairs(
                at_reference
                * sp.Subs(sp.Derivative(pi(s, a, theta), theta), theta, theta_ref)
                / at_reference
                * adv[s, a]
            ),
            "differentiate under the finite sums; d', pi_{theta'} and A' do not depend on theta",
        ),
        Step(policy_gradient_form, "d pi / pi = d log pi"),
        Step(
            sp.Mul(
                1 - gamma,
                sp.Mul(1 / (1 - gamma), policy_gradient_form, evaluate=False),
                evaluate=False,
            ),
            "(1 - gamma) times the policy-gradient theorem (A' in place of Q': the baseline V')",
        ),
    ),
    statement=r"\nabla_\theta J^{\theta'}(\theta)|_{\theta'} = (1-\gamma)\nabla J(\theta')",
)

# (c) the drift away from theta' (matrices): PDL minus the importance-sampled surrogate.
drift = Derivation(
    "second-order-drift",
    (
        Step(
            normalised(d_name, Pi * q_name - Pi_ref * q_name)
            - normalised(d_ref_name, Pi * q_name - Pi_ref * q_name),
            "J(theta) - J(theta') by the performance-difference lemma, minus "
            "J^{theta'}(theta)/(1-gamma) = d'^T (Pi Q' - V')/(1-gamma) (importance sampling: "
            "sum_a pi' (pi/pi') A' = sum_a pi A'); V' = Pi' Q'",
        ),
        Step(
            (d_name - d_ref_name) * (Pi * q_name - Pi_ref * q_name) / (1 - gamma),
            "factor the occupancy difference",
        ),
        Step(
            (d_name - d_ref_name) * (Pi - Pi_ref) * q_name / (1 - gamma),
            "factor Q': a product of two differences, each O(theta - theta')",
        ),
    ),
    statement=(
        r"J(\theta) - J(\theta') - \tfrac{J^{\theta'}(\theta)}{1-\gamma}"
        r" = \tfrac{1}{1-\gamma}(d - d')^\top(\Pi - \Pi')Q'"
    ),
)

# ----------------------------------------------------------------------------- surrogate exact leg
# Examples: (mdp, reference policy theta', direction u, step t); theta = theta' + t u.
score_name = sp.IndexedBase("score", real=True)
pi_ref_name = sp.IndexedBase("pi_ref", positive=True)


@functools.lru_cache(maxsize=16)
def _gradient_function(conclusion: sp.Expr):
    named = conclusion.xreplace(
        {score_at_reference: score_name[s, a], at_reference: pi_ref_name[s, a]}
    )
    return lambdify([d_ref, pi_ref_name, score_name, adv, gamma, S_states, n], named)


def surrogate_gradient(example, conclusion: sp.Expr = gradient.conclusion) -> np.ndarray:
    """The lambdified gradient conclusion at every logit theta_{s,k} (softmax score)."""
    mdp, reference, _, _ = example
    S, A = mdp.n_states, mdp.n_actions
    function = _gradient_function(conclusion)
    d = exact.occupancy(mdp, reference)
    probabilities = reference.probabilities()
    advantages = exact.advantage(mdp, reference)
    out = np.zeros((S, A))
    for state, action in np.ndindex(S, A):
        score = np.zeros((S, A))  # d log pi(b|s') / d theta_{state, action}
        score[state] = np.eye(A)[action] - probabilities[state, action]
        out[state, action] = function(d, probabilities, score, advantages, mdp.gamma, S, A)
    return out


def surrogate_value(example, weight=lambda new, old: new / old) -> float:
    r"""$J^{\theta'}(\theta' + t u)$ by enumeration: $\sum_s d'(s) \sum_a \pi'(a|s)\, w\, A'(s,a)$."""
    mdp, reference, direction, step = example
    new = SoftmaxPolicy(reference.theta + step * direction).probabilities()
    old = reference.probabilities()
    inner = (old * weight(new, old) * exact.advantage(mdp, reference)).sum(axis=1)
    return float(exact.occupancy(mdp, reference) @ inner)


def drift_value(example, surrogate=surrogate_value) -> float:
    """J(theta) - J(theta') - J^{theta'}(theta) / (1 - gamma), from exact.objective."""
    mdp, reference, direction, step = example
    moved = SoftmaxPolicy(reference.theta + step * direction)
    return (
        exact.objective(mdp, moved)
        - exact.objective(mdp, reference)
        - surrogate(example) / (1.0 - mdp.gamma)
    )


def drift_rhs(example, conclusion: sp.Expr = drift.conclusion) -> float:
    """The lambdified drift conclusion with d = d^{theta' + t u} and d', Q', Pi' at theta'."""
    mdp, reference, direction, step = example
    return evaluate(conclusion, mdp, SoftmaxPolicy(reference.theta + step * direction), reference)


_vanishes_function = lambdify([w, q, n], vanishes.conclusion)


# finite differences of exact.objective (independent of every formula above)
@functools.lru_cache(maxsize=4)
def _central_differences(
    key: int, mdp, theta0_bytes: bytes, shape: tuple[int, int]
) -> tuple[np.ndarray, float]:
    theta0 = np.frombuffer(theta0_bytes).reshape(shape)
    return objective_gradient_by_central_differences(mdp, SoftmaxPolicy(theta0))


def central_differences(mdp, policy: SoftmaxPolicy) -> tuple[np.ndarray, float]:
    """(gradient, absolute error bound) by ``rlmath.testing.objective_gradient_by_central_differences``."""
    return _central_differences(id(mdp), mdp, policy.theta.tobytes(), policy.theta.shape)


def finite_difference_gradient(mdp, policy: SoftmaxPolicy) -> np.ndarray:
    """Central differences of ``exact.objective`` in every logit, ``[S, A]``."""
    return central_differences(mdp, policy)[0]


def surrogate_lhs(example) -> np.ndarray:
    """[FD gradient of J at theta'; J^{theta'}(theta') enumerated; the drift]."""
    mdp, reference, _, _ = example
    at_reference = (*example[:3], 0.0)
    return np.concatenate(
        [
            finite_difference_gradient(mdp, reference).ravel(),
            [surrogate_value(at_reference), drift_value(example)],
        ]
    )


def surrogate_rhs(example, normaliser: bool = True) -> np.ndarray:
    """[grad J^{theta'}(theta') / (1 - gamma); the value conclusion (0); the drift conclusion]."""
    mdp, reference, _, _ = example
    scale = 1.0 / (1.0 - mdp.gamma) if normaliser else 1.0
    vanish = _vanishes_function(
        reference.probabilities()[0], exact.q_value(mdp, reference)[0], mdp.n_actions
    )
    return np.concatenate(
        [
            scale * surrogate_gradient(example).ravel(),
            [vanish, drift_rhs(example)],
        ]
    )


def surrogate_rtol(example) -> float:
    mdp, reference = example[0], example[1]
    _, fd_bound = central_differences(mdp, reference)
    bound = max(fd_bound, 8.0 * _rounding_bound(mdp) / (1.0 - mdp.gamma))
    return bound / float(np.abs(surrogate_lhs(example)).max())


def surrogate_resolvable(example) -> bool:
    """Skip examples whose gradient is below 1000 finite-difference error bounds."""
    mdp, reference, _, _ = example
    gradient, fd_bound = central_differences(mdp, reference)
    return float(np.abs(gradient).max()) > 1e3 * fd_bound


def _with_direction(pair):
    mdp, reference = pair
    return st.tuples(
        st.just(mdp),
        st.just(reference),
        logits((mdp.n_states, mdp.n_actions), max_abs=1.0),
        st.sampled_from([1.0, 0.3, 0.1, 0.01]),
    )


surrogate_examples = (
    mdps_and_policies(tabular_mdps(max_states=4, max_actions=3), max_abs_logit=3.0)
    .flatmap(_with_direction)
    .filter(surrogate_resolvable)
)


# mutants of the surrogate
def _unweighted(example):
    """No importance weight: E_{pi'}[A'] = 0 for every theta, so gradient 0."""
    zero = lambda ex: 0.0  # noqa: E731
    mdp = example[0]
    return np.concatenate(
        [np.zeros(mdp.n_states * mdp.n_actions), [0.0, drift_value(example, zero)]]
    )


def _inverted(example):
    """Weight pi'/pi: the gradient at theta' flips sign."""
    inverted = functools.partial(surrogate_value, weight=lambda new, old: old / new)
    mdp = example[0]
    return np.concatenate(
        [
            -surrogate_gradient(example).ravel() / (1.0 - mdp.gamma),
            [0.0, drift_value(example, inverted)],
        ]
    )


no_normaliser_gradient = policy_gradient_form / (1 - gamma)


# ============================================================================ Monte-Carlo legs
MC_FALSE_ALARM = 1e-6  # per leg (monte_carlo_leg's default), shared by its examples
MC_EXAMPLES = 2


def _power(shift: np.ndarray, sd: np.ndarray, n_samples: int) -> float:
    """Power at ``n_samples`` of the leg's test against a shift (its most visible component)."""
    shift, sd = np.atleast_1d(shift), np.atleast_1d(sd)
    return max(
        detection_power(
            float(shift[i]),
            float(sd[i]),
            n_samples,
            false_alarm=MC_FALSE_ALARM / MC_EXAMPLES,
            n_components=shift.size,
        )
        for i in np.ndindex(shift.shape)
    )


# ----------------------------------------------------------------------------- lemma
# s ~ a state distribution (d^pi for the lemma), a ~ pi(.|s), one scalar term x(s, a) per draw;
# the advantage A^{pi'} is exact (exact.advantage), so the expectation over (s, a) is checked.
@dataclass(frozen=True)
class AdvantageEstimator:
    r"""Terms $x(s, a)$ at $s \sim w$, $a \sim \pi(\cdot|s)$ ($\pi$ the *new* policy, ``example[1]``).

    Attributes:
        states_from: example -> ``[S]``, the distribution $w$ of the states.
        term: example -> ``[S, A]``, the term $x(s, a)$ of each pair.
    """

    states_from: Callable
    term: Callable

    def __call__(self, example, rng: np.random.Generator, n: int) -> np.ndarray:
        """``[n]`` terms of ``n`` independent draws (the ``sample`` of ``monte_carlo_leg``)."""
        mdp, policy, _ = example
        states = rng.choice(mdp.n_states, size=n, p=self.states_from(example))
        actions = sample_actions(policy, states, seed=int(rng.integers(2**63)))
        return self.term(example)[states, actions]

    def moments(self, example) -> tuple[float, float]:
        """Exact mean and standard deviation of one term (every (s, a) enumerated)."""
        pairs = self.states_from(example)[:, None] * example[1].probabilities()
        x = self.term(example)
        mean = float((pairs * x).sum())
        return mean, float(np.sqrt((pairs * (x - mean) ** 2).sum()))


def _new_occupancy(example) -> np.ndarray:
    mdp, policy, _ = example
    return exact.occupancy(mdp, policy)


def _reference_advantage(example, *, normaliser: bool = True) -> np.ndarray:
    r"""$A^{\pi'}(s, a) / (1 - \gamma)$ (or without the normaliser), ``[S, A]``."""
    mdp, _, reference = example
    return exact.advantage(mdp, reference) / ((1.0 - mdp.gamma) if normaliser else 1.0)


lemma_estimator = AdvantageEstimator(_new_occupancy, _reference_advantage)
# mutants: states from d^{pi'}, the new policy's own advantage, the normaliser dropped
reference_occupancy_estimator = AdvantageEstimator(
    lambda ex: exact.occupancy(ex[0], ex[2]), _reference_advantage
)
own_advantage_estimator = AdvantageEstimator(
    _new_occupancy, lambda ex: exact.advantage(ex[0], ex[1]) / (1.0 - ex[0].gamma)
)
unnormalised_lemma_estimator = AdvantageEstimator(
    _new_occupancy, functools.partial(_reference_advantage, normaliser=False)
)

# 10^6 draws of (s, a) per example (scalar terms, about 60 ms). Per-sample sd and each mutant's
# shift are exact (AdvantageEstimator.moments); sample_size at alpha = 1e-6 / 2 and power 0.99
# gives the n each mutant needs. Over 167 examples of the domain below with non-constant
# rewards the median is 455 for the own advantage and 119 for the missing normaliser, but 33000
# (90th percentile 3e7) for d^{pi'} in place of d^pi: that mutant differs from the lemma only at
# second order, (d^pi - d^{pi'})^T (Pi - Pi') Q' / (1 - gamma) (claim
# surrogate-matches-policy-gradient), which is why the policies are drawn far apart (logits in
# [-3, 3]) and gamma in [0.5, 0.85]. At 10^6, 84% of the examples have power >= 0.99 against
# every mutant; `_lemma_detectable` keeps only those, so each rejection has that power.
N_LEMMA = 1_000_000


def _lemma_detectable(example) -> bool:
    """The rounding error of J(pi) - J(pi') below 1/100 of the standard error (it moves z by at
    most 0.01), and power >= DEFAULT_POWER against every mutant."""
    _, sd = lemma_estimator.moments(example)
    if not sd / np.sqrt(N_LEMMA) > 100.0 * 4.0 * _rounding_bound(example[0]):
        return False
    target = objective_difference(example)
    for mutant in (
        reference_occupancy_estimator,
        own_advantage_estimator,
        unnormalised_lemma_estimator,
    ):
        mean, sd = mutant.moments(example)
        if _power(np.array(mean - target), np.array(sd), N_LEMMA) < DEFAULT_POWER:
            return False
    return True


def _far_reference(pair):
    mdp, policy = pair
    return softmax_policies(mdp.n_states, mdp.n_actions, max_abs_logit=3.0).map(
        lambda reference: (mdp, policy, reference)
    )


lemma_mc_examples = (
    mdps_and_policies(
        tabular_mdps(
            min_states=2,
            max_states=4,
            min_actions=2,
            max_actions=3,
            gamma=st.floats(0.5, 0.85),
            allow_zeros=False,
            min_probability=0.05,
        ),
        max_abs_logit=3.0,
    )
    .flatmap(_far_reference)
    .filter(_lemma_detectable)
)


# ----------------------------------------------------------------------------- surrogate
# rlmath.estimators.surrogate_gradient on H-step episodes sampled from theta' (policy theta =
# theta', so every ratio is 1 and only its gradient remains), with the exact finite-horizon
# advantages A_t = Q_t - V_t of theta'. Its per-episode terms sum_t gamma^t ratio_t A_t score_t
# have mean grad J_H(theta') (exact.policy_gradient of the H-step MDP). Over H steps the
# normalised occupancy is sum_t gamma^t Pr(s_t = s) / Z_H with Z_H = sum_{t<H} gamma^t (which
# tends to 1/(1 - gamma)), so the surrogate with normalised occupancy is those terms divided
# by Z_H, and the claim's normalisation reads grad J_H = Z_H grad J^{theta'}.
def horizon_normaliser(mdp) -> float:
    r"""$Z_H = \sum_{t<H} \gamma^t$, the $H$-step counterpart of $1/(1-\gamma)$."""
    return float(np.sum(mdp.gamma ** np.arange(mdp.horizon)))


def _surrogate_terms(example, episodes: Rollouts) -> np.ndarray:
    r"""``[N, S, A]`` terms of $\nabla_\theta J^{\theta'}(\theta)|_{\theta'}$ (normalised occupancy)."""
    mdp, reference = example
    V, Q = exact.finite_horizon_values(mdp, reference)
    t = np.arange(mdp.horizon)[:, None]
    advantages = Q[t, episodes.states, episodes.actions] - V[t, episodes.states]
    terms = surrogate_gradient_terms(episodes, reference, advantages, gamma=mdp.gamma)
    return terms / horizon_normaliser(mdp)


def normalised_surrogate_gradient(example, rng: np.random.Generator, n: int) -> np.ndarray:
    """``[n, S, A]`` terms from ``n`` episodes sampled from theta' (normalised occupancy)."""
    mdp, reference = example
    seed = int(rng.integers(2**63))
    episodes = rollouts(mdp, reference, n_episodes=n, horizon=mdp.horizon, seed=seed)
    return _surrogate_terms(example, episodes)


def normalised_surrogate_samples(example, rng: np.random.Generator, n: int) -> np.ndarray:
    """Z_H times the normalised surrogate's gradient terms: the claim's estimate of grad J_H."""
    return horizon_normaliser(example[0]) * normalised_surrogate_gradient(example, rng, n)


def inverted_ratio_samples(example, rng: np.random.Generator, n: int) -> np.ndarray:
    """Weight pi'/pi_theta: its gradient at theta' is -grad log pi, so every term flips sign."""
    return -normalised_surrogate_samples(example, rng, n)


def _surrogate_reference(example) -> np.ndarray:
    return exact.policy_gradient(*example)


def surrogate_term_moments(example) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and sd, ``[S, A]``, of the normalised terms: the same estimator applied to every
    trajectory of exact.trajectories, weighted by its probability."""
    mdp, reference = example
    paths = exact.trajectories(mdp, reference, mdp.horizon)
    states, actions = paths.states.T, paths.actions.T  # time-major [H, N]
    alive = np.ones(states.shape, dtype=bool)
    episodes = Rollouts(
        states=states,
        actions=actions,
        rewards=mdp.r[states, actions],
        log_probs=reference.log_probabilities()[states, actions],
        terminated=~alive,
        truncated=np.vstack([~alive[:-1], alive[-1:]]),
        alive=alive,
        final_states=states[-1],  # s_H is not enumerated; no estimator here reads it
        seed_entropy=None,
        block_size=1,
    )
    terms = _surrogate_terms(example, episodes)
    mean = np.tensordot(paths.probabilities, terms, axes=1)
    return mean, np.sqrt(np.tensordot(paths.probabilities, (terms - mean) ** 2, axes=1))


# 20000 episodes of H = 3 or 4 steps per example (about 60 ms). Mean and sd of the terms are
# exact (`surrogate_term_moments`: at most (S A)^H = 20736 trajectories). The inverted ratio
# shifts every component of Z_H times the terms by 2 |grad J_H|, the missing normaliser the
# normalised terms by (1 - 1/Z_H) |grad J_H|; sample_size at alpha = 1e-6 / 2 with S A
# components gives the n for power 0.99: over 130 examples of the domain below with
# non-constant rewards at most 65 and 542 (medians 7 and 19), so 20000 leaves a wide margin for
# the CLT at the 1e-6 tail. `_surrogate_detectable` keeps the examples with power >= 0.99
# against both.
N_EPISODES = 20_000


def _surrogate_detectable(example) -> bool:
    """Rounding of grad J_H below 1/100 of every standard error (it moves z by at most 0.01; no
    zero standard error either), and power >= DEFAULT_POWER against both mutants."""
    mdp = example[0]
    mean, sd = surrogate_term_moments(example)
    normaliser = horizon_normaliser(mdp)
    # backward induction over H steps: rounding of order eps H S A max|r| Z_H
    value_bound = normaliser * float(np.abs(mdp.r).max(initial=0.0))
    rounding = exact_rtol(1.0, mdp.horizon * mdp.n_states * mdp.n_actions) * value_bound
    if not (normaliser * sd / np.sqrt(N_EPISODES) > 100.0 * rounding).all():
        return False
    gradient = _surrogate_reference(example)
    inverted = _power(-normaliser * mean - gradient, normaliser * sd, N_EPISODES)
    unnormalised = _power(mean - gradient, sd, N_EPISODES)
    return min(inverted, unnormalised) >= DEFAULT_POWER


surrogate_mc_examples = mdps_and_policies(
    tabular_mdps(
        min_states=2,
        max_states=4,
        min_actions=2,
        max_actions=3,
        gamma=st.floats(0.3, 0.9),
        horizon=st.integers(3, 4),
        allow_zeros=False,
        min_probability=0.05,
    ),
    max_abs_logit=1.5,
).filter(_surrogate_detectable)


CLAIMS = (
    Claim(
        id="performance-difference-lemma",
        title="The performance-difference lemma",
        statement=(
            r"J(\pi) - J(\pi') = \frac{1}{1-\gamma}\,\mathbb E_{s\sim d_\rho^{\pi},\,a\sim\pi}"
            r"\left[A^{\pi'}(s,a)\right]"
        ),
        assumptions=(
            "Finite states and actions, infinite horizon, 0 <= gamma < 1.",
            "The matrix derivation uses non-commuting symbols (ring algebra and "
            "(I - gamma P_pi)^{-1}(I - gamma P_pi) = I): it holds for every number of states and "
            "actions, and for any vector V' in place of V^{pi'}.",
            "Sampling: states from the occupancy of the *new* policy pi, actions from pi; the "
            "advantage is the *reference* policy's.",
        ),
        references=(
            "Kakade, S. and Langford, J., *Approximately Optimal Approximate Reinforcement "
            "Learning*, ICML 2002, Lemma 6.1.",
            "Schulman, J. et al., *Trust Region Policy Optimization*, ICML 2015, eq. (1).",
        ),
        symbolic=SymbolicLeg((lemma,)),
        exact=ExactLeg(
            lemma_examples,
            lhs=objective_difference,
            rhs=lemma_rhs,
            rtol=lemma_rtol,
            max_examples=30,
            description=(
                "exact.objective(pi) - exact.objective(pi') vs the lambdified "
                "(1/(1-gamma)) d_pi^T (Pi Q' - V') with exact.occupancy, q_value, value"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            lemma_mc_examples,
            lemma_estimator,
            objective_difference,
            n_samples=N_LEMMA,
            n_examples=MC_EXAMPLES,
            false_alarm=MC_FALSE_ALARM,
            description=(
                "mean of A^{pi'}(s, a) / (1 - gamma) over s ~ d^pi (exact.occupancy), a ~ pi(.|s) "
                "vs exact.objective(pi) - exact.objective(pi')"
            ),
        ),
        mutants=(
            Mutant(
                "occupancy-of-reference",
                "states from d^{pi'} instead of d^{pi} (the surrogate's approximation)",
                symbolic=SymbolicMutation("telescoping", reference_occupancy),
                exact=lambda ex: lemma_rhs(ex, reference_occupancy),
                monte_carlo=reference_occupancy_estimator,
            ),
            Mutant(
                "advantage-of-new-policy",
                "A^{pi} instead of A^{pi'} (its expectation under pi is 0)",
                symbolic=SymbolicMutation("telescoping", own_advantage),
                exact=_own_advantage_rhs,
                monte_carlo=own_advantage_estimator,
            ),
            Mutant(
                "missing-normaliser",
                "the 1/(1 - gamma) in front of the normalised occupancy dropped",
                symbolic=SymbolicMutation("telescoping", missing_normaliser),
                exact=lambda ex: lemma_rhs(ex, missing_normaliser),
                monte_carlo=unnormalised_lemma_estimator,
            ),
        ),
    ),
    Claim(
        id="surrogate-matches-policy-gradient",
        title="The importance-sampled surrogate matches the policy gradient at theta'",
        statement=(
            r"J^{\theta'}(\theta') = 0,\quad \nabla J(\theta') = \frac{1}{1-\gamma}\nabla_\theta"
            r" J^{\theta'}(\theta)\Big|_{\theta=\theta'},\quad J(\theta) - J(\theta') - "
            r"\frac{J^{\theta'}(\theta)}{1-\gamma} = \frac{(d^\theta - d^{\theta'})^\top"
            r"(\Pi_\theta - \Pi_{\theta'})Q^{\theta'}}{1-\gamma}"
        ),
        assumptions=(
            "J^{theta'}(theta) = E_{s ~ d^{theta'}, a ~ pi_{theta'}}[(pi_theta/pi_{theta'}) "
            "A^{theta'}] with d the normalised discounted occupancy (the source post leaves the "
            "state distribution implicit).",
            "Finite MDP, infinite horizon, 0 <= gamma < 1; pi_{theta'} > 0 (softmax).",
            "General sizes: n actions and S states (Sums) for the value and the gradient; "
            "non-commuting matrices for the drift, which rests on the performance-difference "
            "lemma (claim performance-difference-lemma).",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (6).",
            "Schulman, J. et al., *Trust Region Policy Optimization*, ICML 2015, eqs. (3) and (14).",
            "Kakade, S. and Langford, J., *Approximately Optimal Approximate Reinforcement "
            "Learning*, ICML 2002, Sec. 6.",
        ),
        symbolic=SymbolicLeg((vanishes, gradient, drift)),
        exact=ExactLeg(
            surrogate_examples,
            lhs=surrogate_lhs,
            rhs=surrogate_rhs,
            rtol=surrogate_rtol,
            max_examples=30,
            description=(
                "stacked: central differences of exact.objective at theta' vs the lambdified "
                "surrogate gradient / (1 - gamma); J^{theta'}(theta') by enumeration vs 0; the drift "
                "J(theta'+tu) - J(theta') - J^{theta'}(theta'+tu)/(1-gamma) from exact.objective vs "
                "the lambdified (d - d')^T (Pi - Pi') Q' / (1 - gamma), t in {1, 0.3, 0.1, 0.01}"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            surrogate_mc_examples,
            normalised_surrogate_samples,
            _surrogate_reference,
            n_samples=N_EPISODES,
            n_examples=MC_EXAMPLES,
            false_alarm=MC_FALSE_ALARM,
            description=(
                "H-step episodes from theta': rlmath.estimators.surrogate_gradient at theta = "
                "theta' with exact finite-horizon advantages, divided by Z_H = sum_{t<H} gamma^t "
                "(the surrogate with normalised occupancy) and multiplied by the normaliser Z_H "
                "(the H-step 1/(1 - gamma)), vs exact.policy_gradient of the H-step MDP"
            ),
        ),
        mutants=(
            Mutant(
                "missing-importance-weight",
                "E_{pi'}[A'] without pi/pi': constant 0, so its gradient is 0",
                symbolic=SymbolicMutation("gradient-at-reference", sp.Integer(0)),
                exact=_unweighted,
            ),
            Mutant(
                "inverted-ratio",
                "weight pi'/pi instead of pi/pi': the gradient changes sign",
                symbolic=SymbolicMutation("gradient-at-reference", -policy_gradient_form),
                exact=_inverted,
                monte_carlo=inverted_ratio_samples,
            ),
            Mutant(
                "missing-normaliser",
                "grad J(theta') = grad J^{theta'} without the 1/(1 - gamma)",
                symbolic=SymbolicMutation("gradient-at-reference", no_normaliser_gradient),
                exact=lambda ex: surrogate_rhs(ex, normaliser=False),
                monte_carlo=normalised_surrogate_gradient,
            ),
        ),
        notes=(
            "The drift is exact, not asymptotic: it is a product of (d^theta - d^theta') and "
            "(Pi_theta - Pi_theta'), both O(t) along theta' + t u, hence O(t^2). "
            "The exact leg checks it at t = 1, 0.3, 0.1 and 0.01. The first-order agreement is "
            "what lets PPO and TRPO optimise the surrogate; the gap is what their KL term and "
            "clipping control. The Monte-Carlo leg samples H-step episodes, so it checks the "
            "H-step form of the gradient identity, grad J_H(theta') = Z_H grad J_H^{theta'}, with "
            "Z_H = sum_{t<H} gamma^t in place of 1/(1 - gamma) (the normalised H-step occupancy "
            "divides by Z_H). The missing-importance-weight mutant has no Monte-Carlo variant: "
            "without the ratio nothing depends on theta and its gradient estimator is identically "
            "0, a constant the test would compare exactly rather than statistically."
        ),
    ),
)
