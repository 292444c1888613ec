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
weight is $\pi_\theta/\pi_{\theta'}$ (new over old). In the sympy expressions the
non-commutative $1$ is the identity $I$.

Proof sketch. Lemma: insert $I = (I-\gamma P_\pi)^{-1}(I-\gamma P_\pi)$ in front of $V'$,
collect $\rho_0^\top (I-\gamma P_\pi)^{-1}(\Pi(r + \gamma P V') - V')$ and recognise $d$ and
$Q'$. Surrogate: at $\theta = \theta'$ the weight is 1 and $\mathbb E_{a\sim\pi'} A' = 0$;
differentiating under the sum gives $\mathbb E[\nabla\log\pi\,A']$, which is $(1-\gamma)$
times the policy gradient (policy-gradient theorem with the baseline $V'$); importance
sampling turns the surrogate into $d'^\top(\Pi Q' - V')$, the lemma turns $J(\theta) -
J(\theta')$ into $d^\top(\Pi Q' - V')/(1-\gamma)$, and their difference factors as a product
of two first-order differences.

Sampling. Episodes of ``rlmath.sampling.discounted_rollouts`` stop after each step with
probability $1 - \gamma$, so for any $f$, $\mathbb E[\sum_{t<H} f(s_t, a_t)] = \sum_t \gamma^t
\mathbb E f(s_t, a_t) = \mathbb E_{d, \pi}[f]/(1-\gamma)$: the occupancy and its normaliser come
from the sampled path alone. The Monte-Carlo legs sum $A^{\pi'}$ (lemma) or
$\nabla(\pi_\theta/\pi_{\theta'}) A^{\theta'}$ (surrogate) along such episodes and compare with
``exact.objective`` (a difference, or central differences).

References. Kakade, S. and Langford, J., "Approximately Optimal Approximate Reinforcement
Learning", ICML 2002, Lemma 6.1; Schulman, J., Levine, S., Moritz, P., Jordan, M., Abbeel, P.,
"Trust Region Policy Optimization", ICML 2015, eqs. (1)-(3) and (14); Schulman, J. et al.,
"Proximal Policy Optimization Algorithms", 2017, eq. (6).
"""

from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import exact
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
    lambdify,
    lazy_lambdify,
    monte_carlo_leg,
)
from rlmath.estimators import surrogate_gradient as surrogate_gradient_terms
from rlmath.policy import SoftmaxPolicy
from rlmath.sampling import discounted_rollouts
from rlmath.testing import (
    discounted_path_sum_moments,
    logits,
    mdps_and_policies,
    objective_gradient_by_central_differences,
    softmax_policies,
    tabular_mdps,
)
from rlmath.tolerances import (
    RESOLUTION_FACTOR,
    discounted_condition_number,
    exact_rtol,
)

# ============================================================================ the lemma
# Non-commuting symbols stand for matrices of any compatible sizes.
gamma = sp.Symbol("gamma", positive=True, integer=False)  # 0 < gamma < 1: 1 - gamma != 0
rho = sp.Symbol("rho_0^T", commutative=False)  # 1 x S
P = sp.Symbol("P", commutative=False)  # SA x S
r = sp.Symbol("r", commutative=False)  # SA x 1
Pi = sp.Symbol("Pi", commutative=False)  # S x SA, the policy pi
Pi_ref = sp.Symbol("Pi'", commutative=False)  # S x SA, the reference policy pi'
V_ref = sp.Symbol("V'", commutative=False)  # S x 1, V^{pi'} (any vector, in fact)
M = 1 - gamma * Pi * P  # I - gamma P_pi
M_ref = 1 - gamma * Pi_ref * P  # I - gamma P_pi'
N = M**-1
Q_ref = r + gamma * P * V_ref  # Q^{pi'} = r + gamma P V^{pi'}
occupancy_row = (1 - gamma) * rho * N  # d^T of pi
occupancy_ref_row = (1 - gamma) * rho * M_ref**-1  # d^T of pi'

#: How the non-commuting symbols print in the statements.
NAMES = {rho: r"\rho_0^\top", Pi_ref: r"\Pi'", V_ref: "V'"}


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
# A matrix conclusion is made numeric by replacing each non-commuting symbol with a
# MatrixSymbol of its size (the non-commutative 1 in I - gamma Pi P by the S x S identity) and
# lambdifying; d, d' and Q' may be given by name (then their values are exact.occupancy of pi
# and pi', and exact.q_value of pi').
d_name, d_ref_name, q_name = sp.symbols("d d' Q'", commutative=False)


@functools.lru_cache(maxsize=64)
def matrix_function(expression: sp.Expr, S: int, A: int):
    """The lambdified ``expression`` with every non-commuting symbol an S x A-sized matrix."""
    shapes = {
        d_name: sp.MatrixSymbol("d", 1, S),
        d_ref_name: sp.MatrixSymbol("d_ref", 1, S),
        q_name: sp.MatrixSymbol("Q_ref", S * A, 1),
        Pi: sp.MatrixSymbol("Pi", S, S * A),
        Pi_ref: sp.MatrixSymbol("Pi_ref", S, S * A),
        V_ref: sp.MatrixSymbol("V_ref", S, 1),
        rho: sp.MatrixSymbol("rho0", 1, S),
        P: sp.MatrixSymbol("P", S * A, S),
        r: sp.MatrixSymbol("r", S * A, 1),
    }
    named = expression.xreplace(
        {occupancy_row: d_name, occupancy_ref_row: d_ref_name, Q_ref: q_name}
    )
    identity = sp.Identity(S)
    inverses = {
        M: identity - gamma * shapes[Pi] * shapes[P],
        M_ref: identity - gamma * shapes[Pi_ref] * shapes[P],
    }
    return lambdify([*shapes.values(), gamma], named.xreplace({**inverses, **shapes}))


def policy_matrix(policy: SoftmaxPolicy) -> np.ndarray:
    r"""$\Pi$, ``[S, S*A]``: row $s$ holds $\pi(\cdot|s)$ in columns $sA..sA+A-1$."""
    S, A = policy.n_states, policy.n_actions
    out = np.zeros((S, S * A))
    for s_ in range(S):
        out[s_, s_ * A : (s_ + 1) * A] = policy.probabilities()[s_]
    return out


def evaluate(expression: sp.Expr, mdp, policy, reference) -> float:
    """A matrix conclusion at (rho_0, P, r) of ``mdp``, Pi of ``policy`` and Pi' of
    ``reference``; d, d' = exact.occupancy, Q', V' = exact.q_value, exact.value of
    ``reference`` where they are named."""
    S, A = mdp.n_states, mdp.n_actions
    function = matrix_function(expression, S, A)
    value = function(
        exact.occupancy(mdp, policy)[None, :],
        exact.occupancy(mdp, reference)[None, :],
        exact.q_value(mdp, reference).reshape(S * A, 1),
        policy_matrix(policy),
        policy_matrix(reference),
        exact.value(mdp, reference)[:, None],
        mdp.rho0[None, :],
        mdp.dense_transitions().reshape(S * A, S),
        mdp.r.reshape(S * A, 1),
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
    """Skip examples whose rtol would exceed MAX_EXACT_RTOL / 2 (no resolution)."""
    return abs(objective_difference(example)) > 4.0 * RESOLUTION_FACTOR * _rounding_bound(
        example[0]
    )


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
            over_actions(sp.Mul(p_ref, ratio_at_reference, q[a], evaluate=False))
            - value_ref * over_actions(sp.Mul(p_ref, ratio_at_reference, evaluate=False)),
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


def _weighted(weight: sp.Expr) -> sp.Expr:
    r"""$\pi'\,(\text{weight}/\pi')\,A'$, kept unevaluated (the importance ratio stays visible)."""
    return sp.Mul(
        at_reference,
        sp.Mul(weight, sp.Pow(at_reference, -1), evaluate=False),
        adv[s, a],
        evaluate=False,
    )


gradient = Derivation(
    "gradient-at-reference",
    (
        Step(
            sp.Subs(sp.Derivative(over_pairs(_weighted(pi(s, a, theta))), theta), theta, theta_ref),
            "d/dtheta of J^{theta'}(theta) = sum_s d'(s) sum_a pi'(a|s) (pi_theta/pi')(a|s) "
            "A'(s,a) at theta = theta'",
        ),
        Step(
            over_pairs(_weighted(sp.Subs(sp.Derivative(pi(s, a, theta), theta), theta, theta_ref))),
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
    """The gradient conclusion lambdified with the score and pi' at theta' given by value."""
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


_vanishes_function = lazy_lambdify([w, q, n], vanishes.conclusion)


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
    at_reference_example = (*example[:3], 0.0)
    return np.concatenate(
        [
            finite_difference_gradient(mdp, reference).ravel(),
            [surrogate_value(at_reference_example), drift_value(example)],
        ]
    )


def surrogate_rhs(example, conclusion: sp.Expr = gradient.conclusion) -> np.ndarray:
    """[the gradient conclusion / (1 - gamma); the value conclusion (0); the drift conclusion]."""
    mdp, reference, _, _ = example
    vanish = _vanishes_function(
        reference.probabilities()[0], exact.q_value(mdp, reference)[0], mdp.n_actions
    )
    return np.concatenate(
        [
            surrogate_gradient(example, conclusion).ravel() / (1.0 - mdp.gamma),
            [vanish, drift_rhs(example)],
        ]
    )


def surrogate_rtol(example) -> float:
    mdp, reference = example[0], example[1]
    _, fd_bound = central_differences(mdp, reference)
    bound = max(fd_bound, 8.0 * _rounding_bound(mdp) / (1.0 - mdp.gamma))
    return bound / float(np.abs(surrogate_lhs(example)).max())


def surrogate_resolvable(example) -> bool:
    """Skip examples whose rtol (:func:`surrogate_rtol`) would exceed MAX_EXACT_RTOL / 2."""
    mdp, reference, _, _ = example
    gradient_, fd_bound = central_differences(mdp, reference)
    if not float(np.abs(gradient_).max()) > RESOLUTION_FACTOR * fd_bound:
        return False
    return surrogate_rtol(example) <= 1.0 / RESOLUTION_FACTOR


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
    """Weight pi'/pi: the gradient at theta' flips sign (its lambdified conclusion), and the
    drift is computed with the inverted weight."""
    inverted = functools.partial(surrogate_value, weight=lambda new, old: old / new)
    mdp = example[0]
    return np.concatenate(
        [
            surrogate_gradient(example, -policy_gradient_form).ravel() / (1.0 - mdp.gamma),
            [0.0, drift_value(example, inverted)],
        ]
    )


no_normaliser_gradient = policy_gradient_form / (1 - gamma)


# ============================================================================ Monte-Carlo legs
# Whole episodes of the discounted problem (rlmath.sampling.discounted_rollouts: geometric
# stopping, so sums along the path are unbiased for discounted sums and no occupancy is
# computed), one per sample. Mutants are estimators of the wrong statements.
MC_FALSE_ALARM = 1e-6  # per leg (monte_carlo_leg's default), shared by its examples
MC_EXAMPLES = 2
ALPHA = MC_FALSE_ALARM / MC_EXAMPLES  # the test each example's components share


def _fingerprint(mdp, policy: SoftmaxPolicy) -> str:
    digest = hashlib.sha256()
    for array in (mdp.dense_transitions(), mdp.r, mdp.rho0, np.array([mdp.gamma]), policy.theta):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


# The legs run the true estimator and then each mutant on the same examples with the same
# seeds, so the same episodes: count the visits once per (seed, MDP, policy) and keep a few.
_VISITS: dict[tuple, np.ndarray] = {}


def visits(mdp, policy: SoftmaxPolicy, seed: int, n_episodes: int) -> np.ndarray:
    r"""``[n, S, A]`` $\sum_{t<H} \mathbb 1[s_t = s, a_t = a]$ of ``n`` discounted episodes of
    ``policy`` from ``seed``: any path sum $\sum_{t<H} f(s_t, a_t)$ is this contracted with
    $f$ (alive steps only: most of the time axis is padding after the geometric stop)."""
    key = (seed, n_episodes, _fingerprint(mdp, policy))
    if key not in _VISITS:
        while len(_VISITS) >= 2 * MC_EXAMPLES:
            _VISITS.pop(next(iter(_VISITS)))
        episodes = discounted_rollouts(mdp, policy, n_episodes=n_episodes, seed=seed)
        steps, episode = np.nonzero(episodes.alive)
        S, A = mdp.n_states, mdp.n_actions
        pair = (episode * S + episodes.states[steps, episode]) * A + episodes.actions[
            steps, episode
        ]
        _VISITS[key] = (
            np.bincount(pair, minlength=n_episodes * S * A)
            .reshape(n_episodes, S, A)
            .astype(np.float64)
        )
    return _VISITS[key]


# ----------------------------------------------------------------------------- lemma
# Episodes of the *new* policy pi; per episode the sampled sum of A^{pi'}(s_t, a_t) (exact
# advantages of the reference policy at the sampled pairs). Its mean is
# sum_t gamma^t E_pi[A'(s_t, a_t)] = E_{d^pi, pi}[A'] / (1 - gamma) = J(pi) - J(pi').
def _path_sum(policy_of, terms_of, factor_of=lambda mdp: 1.0):
    """Sampler: sum_{t<H} f(s_t, a_t) over episodes of ``policy_of(example)``, times a factor."""

    def sample(example, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        mdp = example[0]
        counts = visits(mdp, policy_of(example), int(rng.integers(2**63)), n_samples)
        return factor_of(mdp) * np.einsum("nsa,sa->n", counts, terms_of(example))

    def moments(example) -> tuple[float, float]:
        mdp = example[0]
        mean, sd = discounted_path_sum_moments(mdp, policy_of(example), terms_of(example))
        factor = factor_of(mdp)
        return factor * float(mean), factor * float(sd)

    sample.moments = moments  # type: ignore[attr-defined]
    return sample


def _new(example) -> SoftmaxPolicy:
    return example[1]


def _old(example) -> SoftmaxPolicy:
    return example[2]


def _reference_advantage(example) -> np.ndarray:
    mdp, _, reference = example
    return exact.advantage(mdp, reference)


def _own_advantage(example) -> np.ndarray:
    mdp, policy, _ = example
    return exact.advantage(mdp, policy)


def _new_policy_average(example) -> np.ndarray:
    """sum_a pi(a|s) A'(s, a) in every column: the new policy's expected A' at state s."""
    mdp, policy, reference = example
    average = (policy.probabilities() * exact.advantage(mdp, reference)).sum(axis=1)
    return np.repeat(average[:, None], mdp.n_actions, axis=1)


lemma_estimator = _path_sum(_new, _reference_advantage)
# mutants: states from d^{pi'} (episodes of pi'), the new policy's own advantage, the
# normaliser dropped
reference_occupancy_estimator = _path_sum(_old, _new_policy_average)
own_advantage_estimator = _path_sum(_new, _own_advantage)
unnormalised_lemma_estimator = _path_sum(_new, _reference_advantage, lambda mdp: 1.0 - mdp.gamma)

# 100000 episodes per example (gamma in [0.5, 0.85], so about 0.2 s). Per-sample sd and each
# mutant's shift are exact (rlmath.testing.discounted_path_sum_moments). d^{pi'} in place of
# d^pi differs from the lemma only at second order, (d^pi - d^{pi'})^T (Pi - Pi') Q' / (1 - gamma)
# (claim surrogate-matches-policy-gradient), which is why the policies are drawn far apart
# (logits in [-3, 3]): over 122 examples of the domain below with non-constant rewards the n
# for power 0.99 has median 3000 and 90th percentile 1.4e5 for it; at 10^5 the share of
# examples with power >= 0.99 against every mutant is 0.83, and `_lemma_detectable` keeps
# only those.
N_LEMMA = 100_000


def _lemma_detectable(example) -> bool:
    """The rounding error of J(pi) - J(pi') below 1/100 of the standard error (it moves z by at
    most 0.01), and power >= 0.99 against every mutant (rlmath.claims.detectable)."""
    _, sd = lemma_estimator.moments(example)
    if not sd / math.sqrt(N_LEMMA) > 100.0 * 4.0 * _rounding_bound(example[0]):
        return False
    target = objective_difference(example)
    for mutant in (
        reference_occupancy_estimator,
        own_advantage_estimator,
        unnormalised_lemma_estimator,
    ):
        mean, mutant_sd = mutant.moments(example)
        if not detectable(mean - target, mutant_sd, N_LEMMA, false_alarm=ALPHA):
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
# Episodes of theta'; rlmath.estimators.surrogate_gradient at theta = theta' (every ratio is 1,
# only its gradient, the score, remains) with the exact advantages A' of theta' at the sampled
# pairs and gamma = 1 (the geometric stop is the discount): per episode
# sum_{t<H} grad(pi_theta/pi_theta')(a_t|s_t) A'(s_t, a_t), whose mean is
# E_{d', pi'}[grad(pi/pi') A'] / (1 - gamma) = grad J^{theta'}(theta') / (1 - gamma), the
# claim's estimate of grad J(theta') (central differences of exact.objective).
# A second block of components evaluates the same estimator off theta', at the target
# theta'' = theta' + OFF_STEP u (u_{s,a} = (-1)^{s+a}, so every ratio lies in [e^-1, e]): there the
# ratios are not 1 and their orientation matters (at theta' alone a swapped log-ratio is
# invisible). Its mean is the exact gradient of the surrogate at theta'', by the log-derivative
# trick under episodes of theta': sum_s w'(s) pi''(a|s) (A'(s, a) - sum_b pi''(b|s) A'(s, b)),
# w' = d' / (1 - gamma) (exact.occupancy of theta').
OFF_STEP = 0.5
_SURROGATE_TERMS: dict[tuple, np.ndarray] = {}


def off_reference_target(reference: SoftmaxPolicy) -> SoftmaxPolicy:
    """theta'' = theta' + OFF_STEP u, u_{s,a} = (-1)^{s+a}."""
    S, A = reference.theta.shape
    signs = (-1.0) ** np.add.outer(np.arange(S), np.arange(A))
    return SoftmaxPolicy(reference.theta + OFF_STEP * signs)


def off_reference_surrogate_gradient(mdp, reference: SoftmaxPolicy) -> np.ndarray:
    r"""$
    abla_	heta J^{	heta'}(	heta)/(1-\gamma)$ at $	heta''$, ``[S, A]``, in closed form:
        $w'(s)\,\pi''(a|s)\,(A'(s,a) - \sum_b \pi''(b|s) A'(s,b))$ with $w' = d'/(1-\gamma)$."""
    weights = exact.occupancy(mdp, reference) / (1.0 - mdp.gamma)
    advantages = exact.advantage(mdp, reference)
    pi = off_reference_target(reference).probabilities()
    centred = advantages - (pi * advantages).sum(axis=1, keepdims=True)
    return weights[:, None] * pi * centred  # type: ignore[no-any-return]


def surrogate_terms(mdp, reference: SoftmaxPolicy, seed: int, n_episodes: int) -> np.ndarray:
    """``[n, 2S, A]`` per-episode surrogate gradients of ``n`` discounted episodes from ``seed``
    at theta' (rows 0..S-1) and at ``off_reference_target`` (rows S..2S-1), computed once: the
    true estimator and the mutants read the same episodes."""
    key = (seed, n_episodes, _fingerprint(mdp, reference))
    if key not in _SURROGATE_TERMS:
        while len(_SURROGATE_TERMS) >= MC_EXAMPLES:
            _SURROGATE_TERMS.pop(next(iter(_SURROGATE_TERMS)))
        episodes = discounted_rollouts(mdp, reference, n_episodes=n_episodes, seed=seed)
        advantages = exact.advantage(mdp, reference)[episodes.states, episodes.actions]
        at_reference = surrogate_gradient_terms(episodes, reference, advantages, gamma=1.0)
        target = off_reference_target(reference)
        off = surrogate_gradient_terms(episodes, target, advantages, gamma=1.0)
        _SURROGATE_TERMS[key] = np.concatenate([at_reference, off], axis=1)
    return _SURROGATE_TERMS[key]


def normalised_surrogate_samples(example, rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """``[n, S, A]`` per-episode surrogate gradients: the claim's estimate of grad J(theta')."""
    mdp, reference = example
    return surrogate_terms(mdp, reference, int(rng.integers(2**63)), n_samples)


def inverted_ratio_samples(example, rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """Weight pi'/pi_theta: its gradient at theta' is -grad log pi, so every term flips sign."""
    return -normalised_surrogate_samples(example, rng, n_samples)


def unnormalised_surrogate_samples(example, rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """grad J(theta') = grad J^{theta'}: (1 - gamma) times the path sums, E_{d'}[...]."""
    return (1.0 - example[0].gamma) * normalised_surrogate_samples(example, rng, n_samples)


def _surrogate_reference(example) -> np.ndarray:
    """[central differences of J at theta'; the surrogate's exact gradient at theta''], [2S, A]."""
    return np.concatenate(
        [finite_difference_gradient(*example), off_reference_surrogate_gradient(*example)]
    )


def surrogate_term_moments(example) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact mean and sd, ``[S, A]``, of the per-episode terms: path sums of
    $f_{(s,k)}(x, a) = \mathbb 1[x = s](\mathbb 1[a = k] - \pi'(k|s)) A'(x, a)$."""
    mdp, reference = example
    S, A = mdp.n_states, mdp.n_actions
    probabilities = reference.probabilities()
    advantages = exact.advantage(mdp, reference)
    terms = np.zeros((S, A, S, A))
    for state in range(S):
        terms[state, :, state, :] = (np.eye(A) - probabilities[state][:, None]) * advantages[state]
    return discounted_path_sum_moments(mdp, reference, terms)


# 20000 episodes per example (gamma in [0.3, 0.8]; about 0.1 s with the estimator). Mean and sd
# of the terms are exact (`surrogate_term_moments`). The inverted ratio moves every component
# by 2 |grad J|, the missing normaliser by gamma |grad J|; `_surrogate_detectable` keeps the
# examples where both have power >= 0.99 (0.87 of 131 examples of the domain below with
# non-constant rewards; the others have a gradient too small to resolve at this n).
N_EPISODES = 20_000


def _surrogate_detectable(example) -> bool:
    """The central-difference bound below 1/100 of every standard error (it moves z by at most
    0.01; no zero standard error either), and power >= 0.99 against both mutants."""
    mdp, reference = example
    mean, sd = surrogate_term_moments(example)
    gradient_, bound = central_differences(mdp, reference)
    if not (sd / math.sqrt(N_EPISODES) > 100.0 * bound).all():
        return False
    inverted = detectable(-mean - gradient_, sd, N_EPISODES, false_alarm=ALPHA)
    unnormalised = detectable(
        (1.0 - mdp.gamma) * mean - gradient_, (1.0 - mdp.gamma) * sd, N_EPISODES, false_alarm=ALPHA
    )
    return inverted and unnormalised


surrogate_mc_examples = mdps_and_policies(
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
).filter(_surrogate_detectable)


CLAIMS = (
    Claim(
        id="performance-difference-lemma",
        title="The performance-difference lemma",
        statement=Statement(
            lemma.start,
            lemma.conclusion,
            derivation="telescoping",
            where=(
                r"J(\pi) = \rho_0^\top (I - \gamma\Pi P)^{-1}\Pi r,\ J(\pi') = \rho_0^\top V';\ "
                r"d_\rho^{\pi\top} = (1-\gamma)\rho_0^\top(I - \gamma\Pi P)^{-1},\ "
                r"Q' = r + \gamma P V',\ (\Pi Q' - V')(s) = \mathbb E_{a\sim\pi}[A^{\pi'}(s,a)]"
            ),
            symbol_names=NAMES,
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
        summary=(
            "The return of a new policy minus that of an old one is the old policy's advantage "
            "summed along the new policy's discounted trajectories."
        ),
        symbolic=SymbolicLeg((lemma,)),
        exact=ExactLeg(
            lemma_examples,
            lhs=objective_difference,
            rhs=lemma_rhs,
            rhs_reason=(
                "the derivation is non-commutative (matrices of any size), which sympy cannot "
                "lambdify as it stands: the rhs IS the conclusion lambdified through "
                "MatrixSymbols (each non-commuting symbol an S x A-sized MatrixSymbol, the "
                "non-commutative 1 the identity, d and Q' by name with the values of "
                "exact.occupancy and exact.q_value, V' = exact.value of pi'); the mutants' exact "
                "variants are their wrong conclusions lambdified the same way"
            ),
            rtol=lemma_rtol,
            max_examples=30,
            description=(
                "exact.objective(pi) - exact.objective(pi') vs the conclusion "
                "(1/(1-gamma)) d_pi^T (Pi Q' - V') lambdified through MatrixSymbols with "
                "exact.occupancy, q_value, value"
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
                "sum_{t<H} A^{pi'}(s_t, a_t) (exact.advantage of pi' at the sampled pairs) over "
                "whole episodes of the new policy pi from rlmath.sampling.discounted_rollouts "
                "(H ~ Geometric(1 - gamma): the occupancy and 1/(1 - gamma) come from the path) "
                "vs exact.objective(pi) - exact.objective(pi')"
            ),
        ),
        mutants=(
            Mutant(
                "occupancy-of-reference",
                "states from d^{pi'} instead of d^{pi} (the surrogate's approximation; MC: "
                "episodes of pi', sum_t sum_a pi(a|s_t) A'(s_t, a))",
                symbolic=SymbolicMutation("telescoping", reference_occupancy),
                exact=lambda ex: lemma_rhs(ex, reference_occupancy),
                monte_carlo=reference_occupancy_estimator,
            ),
            Mutant(
                "advantage-of-new-policy",
                "A^{pi} instead of A^{pi'} (its expectation under pi is 0)",
                symbolic=SymbolicMutation("telescoping", own_advantage),
                exact=lambda ex: lemma_rhs(ex, own_advantage),
                monte_carlo=own_advantage_estimator,
            ),
            Mutant(
                "missing-normaliser",
                "the 1/(1 - gamma) in front of the normalised occupancy dropped (MC: (1 - gamma) "
                "times the path sum)",
                symbolic=SymbolicMutation("telescoping", missing_normaliser),
                exact=lambda ex: lemma_rhs(ex, missing_normaliser),
                monte_carlo=unnormalised_lemma_estimator,
            ),
        ),
        notes=(
            "The Monte-Carlo leg never calls `exact.occupancy`: states are visited along sampled "
            "discounted episodes, whose geometric stop supplies both the occupancy and its "
            "1/(1 - gamma)."
        ),
    ),
    Claim(
        id="surrogate-matches-policy-gradient",
        title="The importance-sampled surrogate matches the policy gradient at theta'",
        statement=Statement(
            gradient.start,
            gradient.conclusion,
            derivation="gradient-at-reference",
            where=(
                r"\text{the left side is } \nabla_\theta J^{\theta'}(\theta)|_{\theta'} \text{ "
                r"with } d' = d_\rho^{\theta'},\ A' = A^{\theta'},\ \pi(s,a,\theta) = "
                r"\pi_\theta(a|s);\ \text{the bracket on the right is } \nabla J(\theta') "
                r"\text{ (policy-gradient theorem, baseline } V');\ \text{also } "
                r"J^{\theta'}(\theta') = 0 \text{ and } J(\theta) - J(\theta') - "
                r"\tfrac{J^{\theta'}(\theta)}{1-\gamma} = \tfrac{(d^\theta - d^{\theta'})^\top"
                r"(\Pi_\theta - \Pi_{\theta'})Q^{\theta'}}{1-\gamma}"
            ),
            symbol_names={theta_ref: r"\theta'"},
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
        summary=(
            "At the old policy the PPO/TRPO surrogate is 0 and its gradient is (1 - gamma) times "
            "the policy gradient; away from it the gap is exactly second order."
        ),
        symbolic=SymbolicLeg((vanishes, gradient, drift)),
        exact=ExactLeg(
            surrogate_examples,
            lhs=surrogate_lhs,
            rhs=surrogate_rhs,
            rhs_reason=(
                "the rhs stacks the conclusions of three derivations, each lambdified: the "
                "gradient conclusion (with the Subs-score and pi' at theta' replaced by "
                "IndexedBase values, the softmax score and exact.occupancy, exact.advantage) "
                "divided by 1 - gamma; the value conclusion 0 (lambdify of vanishes-at-reference);"
                " the non-commutative drift conclusion lambdified through MatrixSymbols. One "
                "lambdify cannot take the three (different symbols, one non-commutative)"
            ),
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
                "whole episodes of theta' from rlmath.sampling.discounted_rollouts; "
                "rlmath.estimators.surrogate_gradient at theta = theta' (gamma = 1: the geometric "
                "stop is the discount) with exact.advantage of theta' at the sampled pairs, whose "
                "mean is grad J^{theta'} / (1 - gamma), vs central differences of exact.objective "
                "at theta'; a second block evaluates the estimator at theta'' = theta' + 0.5 u "
                "(ratios != 1) vs the surrogate's closed-form gradient d'(s) pi''(a|s) (A' - "
                "E_{pi''} A') / (1 - gamma)"
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
                exact=lambda ex: surrogate_rhs(ex, no_normaliser_gradient),
                monte_carlo=unnormalised_surrogate_samples,
            ),
        ),
        notes=(
            "The drift is exact, not asymptotic: it is a product of (d^theta - d^theta') and "
            "(Pi_theta - Pi_theta'), both O(t) along theta' + t u, hence O(t^2). "
            "The exact leg checks it at t = 1, 0.3, 0.1 and 0.01. The first-order agreement is "
            "what lets PPO and TRPO optimise the surrogate; the gap is what their KL term and "
            "clipping control. The Monte-Carlo leg samples discounted episodes (geometric "
            "stopping), along which the per-episode sum of the surrogate's terms has mean "
            "grad J^{theta'} / (1 - gamma), compared with central differences of J. The "
            "missing-importance-weight mutant has no Monte-Carlo variant: without the ratio "
            "nothing depends on theta and its gradient estimator is identically 0, a constant "
            "the test would compare exactly rather than statistically."
        ),
    ),
)
