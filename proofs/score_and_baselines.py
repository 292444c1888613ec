r"""The score has zero mean; baselines and reward-to-go keep the policy gradient unbiased.

Main statements. For a softmax policy $\pi_\theta(\cdot \mid s)$ over $n$ actions,

$$ \mathbb E_{a \sim \pi_\theta(\cdot|s)}\!\left[\nabla_\theta \log \pi_\theta(a \mid s)\right] = 0, $$

hence for any baseline $b(s)$ that does not depend on the action,

$$ \mathbb E_{a \sim \pi}\!\left[\nabla_\theta \log \pi_\theta(a|s)\,(Q(s,a) - b(s))\right]
   = \mathbb E_{a \sim \pi}\!\left[\nabla_\theta \log \pi_\theta(a|s)\, Q(s,a)\right], $$

and, over trajectories of an $H$-step episode, past rewards can be dropped from each action's
credit (reward-to-go):

$$ \mathbb E_\tau\!\left[\sum_{t<H} \nabla \log \pi(a_t|s_t) \sum_{k<H} \gamma^k r_k\right]
   = \mathbb E_\tau\!\left[\sum_{t<H} \nabla \log \pi(a_t|s_t) \sum_{k=t}^{H-1} \gamma^k r_k\right]. $$

Conventions. Gradients are with respect to the tabular logits ``theta[s, a]``; the softmax
score is $\partial \log\pi(a|s) / \partial\theta_{s,k} = \mathbb 1[a = k] - \pi(k|s)$ (and 0
for the logits of other states). $r_k = r(s_k, a_k)$ is the reward for $a_k$ in $s_k$, time
starts at 0. The reward-to-go keeps the factor $\gamma^k$ (not $\gamma^{k-t}$): the objective
is the discounted return from time 0, $J = \mathbb E[\sum_k \gamma^k r_k]$.

Proof sketch. $\sum_a \pi(a)(\mathbb 1[a=k] - \pi(k)) = \pi(k) - \pi(k) \sum_a \pi(a) = 0$. A
baseline is constant in $a$, so its term is $b$ times the zero-mean score. A past reward
$r_k$, $k < t$, is fixed by the history up to $s_t$; conditioning on that history
(tower property), its product with the score of $a_t$ has conditional mean
$r_k \cdot \mathbb E_{a_t}[\text{score}] = 0$.

References. Williams, R. J., "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8, 1992, Sec. 4 (reinforcement
baseline); Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed.,
2018, Sec. 13.4, eq. (13.11) (REINFORCE with baseline); Greensmith, E., Bartlett, P. L.,
Baxter, J., "Variance Reduction Techniques for Gradient Estimates in Reinforcement Learning",
JMLR 5, 2004 (baselines); Schulman, J., Moritz, P., Levine, S., Jordan, M., Abbeel, P.,
"High-Dimensional Continuous Control Using Generalized Advantage Estimation", ICLR 2016,
eq. (1) (the equivalent forms of the policy gradient, including reward-to-go).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

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
from rlmath.estimators import reinforce_reward_to_go, reinforce_with_baseline, weighted_score_sum
from rlmath.sampling import Rollouts, rollouts, sample_actions
from rlmath.statistics import DEFAULT_FALSE_ALARM, sample_size
from rlmath.testing import logits, mdps_and_policies, tabular_mdps
from rlmath.tolerances import discounted_condition_number, exact_rtol

# ============================================================================ symbols
# One state's softmax over n = k + m + 1 actions (every n >= 1); k < n is the logit we
# differentiate by. Writing n this way tells sympy 0 <= k <= n - 1, so a Kronecker delta in a
# sum evaluates without a case split.
k = sp.Symbol("k", integer=True, nonnegative=True)
m = sp.Symbol("m", integer=True, nonnegative=True)
n = k + m + 1
a = sp.Symbol("a", integer=True)
theta = sp.IndexedBase("theta", real=True)  # the logits of the state
Q = sp.IndexedBase("Q", real=True)
b = sp.Symbol("b", real=True)  # the baseline b(s)
beta = sp.IndexedBase("beta", real=True)  # an action-dependent "baseline" b(s, a) (mutant)


def pi(action: sp.Expr) -> sp.Expr:
    """$\\pi_\\theta(\\text{action} \\mid s)$, the softmax of the state's logits."""
    return sp.exp(theta[action]) / sp.Sum(sp.exp(theta[a]), (a, 0, n - 1))


def E(term: sp.Expr) -> sp.Sum:
    """$\\mathbb E_{a \\sim \\pi_\\theta(\\cdot|s)}[\\text{term}]$."""
    return sp.Sum(pi(a) * term, (a, 0, n - 1))


score = sp.KroneckerDelta(a, k) - pi(k)  # d log pi(a|s) / d theta_{s,k}

# ============================================================================ zero mean
score_zero_mean = Derivation(
    "softmax",
    (
        Step(E(sp.Derivative(sp.log(pi(a)), theta[k])), "the expected score, coordinate k"),
        Step(E(score), "softmax score: d log pi(a)/d theta_k = 1[a=k] - pi(k)"),
        Step(pi(k) - pi(k) * E(1), "sum the Kronecker delta; pi(k) does not depend on a"),
        Step(sp.Integer(0), "probabilities sum to 1"),
    ),
    statement=r"\mathbb E_{a\sim\pi}[\partial_{\theta_k} \log\pi(a)] = 0",
)

# ============================================================================ baseline
baseline = Derivation(
    "baseline",
    (
        Step(E(Q[a] * score), "the policy-gradient term of one state, coordinate k"),
        Step(
            E(Q[a] * score) - b * E(score),
            "the score has zero mean (derivation 'softmax' of score-zero-mean)",
        ),
        Step(E((Q[a] - b) * score), "linearity of the expectation; b does not depend on a"),
    ),
    statement=r"\mathbb E_{a\sim\pi}[\partial \log\pi\, Q] = \mathbb E_{a\sim\pi}[\partial \log\pi\,(Q - b)]",
)

# ============================================================================ reward-to-go
# Lemma, for every t and every k < t. The pair (history up to s_t, a_t) is drawn as: a history
# h_j (j < J, probability q_j), then a_t ~ pi(.|s_t). The past reward gamma^k r_k, and the
# indicator 1[s_t = s] of the score's state, are functions g_j of the history. Only histories
# with s_t = s contribute, and there the policy is pi(.|s), so the score's expectation factors.
j = sp.Symbol("j", integer=True)
J = sp.Symbol("J", integer=True, positive=True)
q = sp.IndexedBase("q", nonnegative=True)
g = sp.IndexedBase("g", real=True)
history_term = sp.Sum(q[j] * g[j], (j, 0, J - 1))
past_reward_vanishes = Derivation(
    "past-reward-vanishes",
    (
        Step(
            history_term * E(score),
            "E[gamma^k r_k score_t] by the tower property: condition on the history up to s_t, "
            "which fixes r_k (k < t) and s_t",
        ),
        Step(history_term * (pi(k) - pi(k) * E(1)), "sum the Kronecker delta"),
        Step(sp.Integer(0), "probabilities sum to 1 (the score has zero mean)"),
    ),
    statement=r"\mathbb E[\gamma^k r_k\, \nabla\log\pi(a_t|s_t)] = 0 \quad (k < t)",
)

# A fully symbolic instance that puts the lemma to work: 2 states, 2 actions, horizon 2, every
# entry a symbol (pi(1|s) = 1 - pi(0|s), P(1|s,a) = 1 - P(0|s,a), rho(1) = 1 - rho(0)). The
# only past reward is r_0 for t = 1. The gradient coordinate is theta[0, 0] (any other is the
# same statement after relabelling states and actions).
S_, A_, H_ = 2, 2, 2
gamma = sp.Symbol("gamma", nonnegative=True)
u = sp.symbols("pi0:2", positive=True)  # pi(0 | s)
v = sp.symbols("P0:2(0:2)", positive=True)  # P(0 | s, a), flattened s * 2 + a
rho_0 = sp.Symbol("rho_0", positive=True)
r = sp.IndexedBase("r", real=True)
policy_table = [[u[s], 1 - u[s]] for s in range(S_)]
transition = [[[v[2 * s + act], 1 - v[2 * s + act]] for act in range(A_)] for s in range(S_)]
rho = [rho_0, 1 - rho_0]
TRAJECTORIES = [((s0, s1), (a0, a1)) for s0, a0, s1, a1 in itertools.product(range(2), repeat=4)]


def probability(states: tuple[int, ...], actions: tuple[int, ...]) -> sp.Expr:
    """$p(\\tau) = \\rho(s_0) \\pi(a_0|s_0) P(s_1|s_0,a_0) \\pi(a_1|s_1)$."""
    (s0, s1), (a0, a1) = states, actions
    return rho[s0] * policy_table[s0][a0] * transition[s0][a0][s1] * policy_table[s1][a1]


def score_matrix(state: int, action: int) -> sp.Expr:
    """d log pi(action | state) / d theta[0, 0]: 1[state = 0] (1[action = 0] - pi(0|0)).

    One coordinate suffices: relabelling states and actions maps any logit to theta[0, 0].
    """
    return (int(action == 0) - policy_table[0][0]) if state == 0 else sp.Integer(0)


def credit(states: tuple[int, ...], actions: tuple[int, ...], t: int, first: int, power) -> sp.Expr:  # type: ignore[no-untyped-def]
    """sum_{k = first}^{H-1} gamma^power(k, t) r(s_k, a_k)."""
    return sum(
        (gamma ** power(kk, t) * r[states[kk], actions[kk]] for kk in range(first, H_)),
        sp.Integer(0),
    )


def estimator(first, power=lambda kk, t: kk) -> sp.Expr:  # type: ignore[no-untyped-def]
    """E_tau[sum_t score_t * credit_t], credit_t from k = first(t); summed over all tau."""
    return sum(
        (
            probability(ss, aa) * score_matrix(ss[t], aa[t]) * credit(ss, aa, t, first(t), power)
            for ss, aa in TRAJECTORIES
            for t in range(H_)
        ),
        sp.Integer(0),
    )


full_return = estimator(lambda t: 0)
reward_to_go = estimator(lambda t: t)
past_term = sum(
    (probability(ss, aa) * score_matrix(ss[1], aa[1]) * r[ss[0], aa[0]] for ss, aa in TRAJECTORIES),
    sp.Integer(0),
)
reward_to_go_instance = Derivation(
    "reward-to-go-instance",
    (
        Step(full_return, "REINFORCE with the whole return, E[sum_t score_t R(tau)]"),
        Step(reward_to_go + past_term, "split R at t: rewards k >= t, and r_0 for t = 1"),
        Step(reward_to_go, "the past-reward term vanishes (derivation 'past-reward-vanishes')"),
    ),
    statement=r"\mathbb E[\textstyle\sum_t \nabla\log\pi_t\, R] = \mathbb E[\sum_t \nabla\log\pi_t \sum_{k\ge t}\gamma^k r_k]",
)
DROP_CURRENT_REWARD = estimator(lambda t: t + 1)
RESTART_DISCOUNT = estimator(lambda t: t, power=lambda kk, t: kk - t)


# ============================================================================ exact legs
def per_state(conclusion: sp.Expr, *extra: sp.Basic):  # type: ignore[no-untyped-def]
    """conclusion(theta_s, extra_s..., k) for every state s and action k: ``[S, A]``."""
    function = lambdify([theta, *extra, k, m], conclusion)

    def table(logit_table: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
        S, A = logit_table.shape
        return np.array(
            [
                [function(logit_table[s], *(x[s] for x in arrays), c, A - 1 - c) for c in range(A)]
                for s in range(S)
            ],
            dtype=np.float64,
        )

    return table


def _cancellation_rtol(magnitude: float, value: float, condition: float, terms: int) -> float:
    """exact_rtol for a sum whose terms have size ``magnitude`` and whose value is ``value``."""
    return exact_rtol(condition * (magnitude / value if value > 0 else 1.0), terms)


# --- score-zero-mean: lhs is the package's score (SoftmaxPolicy.score_row) averaged over pi.
policies = st.tuples(st.integers(1, 4), st.integers(1, 6)).flatmap(lambda shape: logits(shape))


def expected_score(logit_table: np.ndarray) -> np.ndarray:
    """sum_a pi(a|s) score_row(s, a), ``[S, A]``, by enumeration with SoftmaxPolicy.score_row."""
    from rlmath import SoftmaxPolicy

    policy = SoftmaxPolicy(logit_table)
    S, A = logit_table.shape
    states, actions = np.meshgrid(np.arange(S), np.arange(A), indexing="ij")
    rows = policy.score_row(states, actions)  # [S, A(action), A(coordinate)]
    return np.einsum("sa,sak->sk", policy.probabilities(), rows)  # type: ignore[no-any-return]


def _zero_mean_rtol(logit_table: np.ndarray) -> float:
    from rlmath import SoftmaxPolicy

    p = SoftmaxPolicy(logit_table).probabilities()
    magnitude = 2.0 * float(p.max())  # sum_a pi(a) |1[a=k] - pi(k)| = 2 pi(k) (1 - pi(k))
    value = float(np.abs(expected_score(logit_table)).max())
    return _cancellation_rtol(magnitude, value, 1.0, logit_table.shape[1])


_expected_score_rhs = per_state(score_zero_mean.conclusion)
INDICATOR_SCORE_MEAN = E(sp.KroneckerDelta(a, k))  # the -pi(k) dropped: = pi(k)


# --- baseline-unbiased: lhs is exact.policy_gradient (Bellman equations, d pi A / (1 - gamma)).
def _with_baselines(pair):  # type: ignore[no-untyped-def]
    mdp, policy = pair
    S, A = mdp.n_states, mdp.n_actions
    floats = st.floats(-10, 10)
    return st.tuples(
        st.just(mdp),
        st.just(policy),
        st.lists(floats, min_size=S, max_size=S).map(np.array),
        st.lists(floats, min_size=S * A, max_size=S * A).map(lambda x: np.reshape(x, (S, A))),
    )


baseline_examples = mdps_and_policies(tabular_mdps(max_states=4, max_actions=4)).flatmap(
    _with_baselines
)


def _baseline_side(conclusion: sp.Expr):  # type: ignore[no-untyped-def]
    table = per_state(conclusion, Q, b, beta)

    def rhs(example: tuple) -> np.ndarray:  # type: ignore[type-arg]
        mdp, policy, state_baseline, action_baseline = example
        visits = exact.occupancy(mdp, policy) / (1.0 - mdp.gamma)
        q_values = exact.q_value(mdp, policy)
        return visits[:, None] * table(policy.theta, q_values, state_baseline, action_baseline)

    return rhs


def _baseline_rtol(example: tuple) -> float:  # type: ignore[type-arg]
    mdp, policy, state_baseline, _ = example
    p = policy.probabilities()
    visits = exact.occupancy(mdp, policy) / (1.0 - mdp.gamma)
    q_values = exact.q_value(mdp, policy)
    magnitude = float(
        np.max(visits[:, None] * 2.0 * p * (np.abs(q_values) + np.abs(state_baseline)[:, None]))
    )
    value = max(
        float(np.abs(exact.policy_gradient(mdp, policy)).max()),
        float(np.abs(_baseline_side(baseline.conclusion)(example)).max()),
    )
    condition = discounted_condition_number(mdp.gamma)
    return _cancellation_rtol(magnitude, value, condition, mdp.n_states * mdp.n_actions)


ACTION_DEPENDENT_BASELINE = E((Q[a] - beta[a]) * score)
INDICATOR_SCORE_BASELINE = E((Q[a] - b) * sp.KroneckerDelta(a, k))


# --- reward-to-go: lhs is the policy gradient two ways (Bellman, and REINFORCE with the whole
# return over every trajectory); rhs the reward-to-go estimator's mean over every trajectory.
rtg_examples = mdps_and_policies(
    tabular_mdps(max_states=3, max_actions=3, horizon=st.integers(1, 3))
)


def whole_return_gradients(example: tuple) -> np.ndarray:  # type: ignore[type-arg]
    mdp, policy = example
    return np.stack(
        [
            exact.policy_gradient(mdp, policy),
            exact.trajectory_policy_gradient(mdp, policy, mdp.horizon),
        ]
    )


def credited_gradient(first_offset: int, restart_discount: bool):  # type: ignore[no-untyped-def]
    """E_tau[sum_t score_t sum_{k >= t + first_offset} w(k, t) r_k] over every trajectory.

    w(k, t) = gamma^k, or gamma^(k - t) with ``restart_discount`` (a mutant).
    """

    def gradient(example: tuple) -> np.ndarray:  # type: ignore[type-arg]
        mdp, policy = example
        H = mdp.horizon
        paths = exact.trajectories(mdp, policy, H)
        rewards = mdp.r[paths.states, paths.actions]  # [N, H], r_k = r(s_k, a_k)
        grad = np.zeros((mdp.n_states, mdp.n_actions))
        for t in range(H):
            ks = np.arange(t + first_offset, H)
            powers = ks - t if restart_discount else ks
            credit_t = rewards[:, ks] @ (mdp.gamma**powers) if ks.size else np.zeros(len(rewards))
            weight = paths.probabilities * credit_t
            scores = policy.score(paths.states[:, t], paths.actions[:, t])  # [N, S, A]
            grad += np.einsum("n,nsa->sa", weight, scores)
        return np.stack([grad, grad])

    return gradient


def _rtg_rtol(example: tuple) -> float:  # type: ignore[type-arg]
    mdp, policy = example
    H = mdp.horizon
    paths = exact.trajectories(mdp, policy, H)
    magnitude = (
        2.0
        * H
        * float(paths.probabilities @ np.abs(mdp.r[paths.states, paths.actions]).sum(axis=1))
    )
    value = max(
        float(np.abs(whole_return_gradients(example)).max()),
        float(np.abs(credited_gradient(0, restart_discount=False)(example)).max()),
    )
    return _cancellation_rtol(magnitude, value, float(H), len(paths.probabilities) * H)


# ============================================================================ Monte-Carlo legs
# --- score-zero-mean: for every state s, a ~ pi(.|s) (rlmath.sampling.sample_actions), and the
# term is SoftmaxPolicy.score_row(s, a), [S, A] per sample; its mean must be 0. Logits in
# [-1, 1] with at most 4 actions keep every pi(a|s) >= e^-1/(e^-1 + 3e) > 0.04, so every
# component varies (no zero standard error) and the Bernoulli-like terms are close enough to
# normal at the 1e-6 tail (the exact binomial tail is within 1.1x of the normal one at n = 1e5).
# The mutant's score 1[a = k] has mean pi(k|s) and sd sqrt(pi(k|s)(1 - pi(k|s))): the most
# likely action (pi >= 1/A) is shifted by >= sqrt(1/(A - 1)) >= 0.57 sd, which
# sample_size(0.57, 1, n_components=12) detects with 200 samples; the 100,000 samples are for
# the tail approximation.
N_SCORE_SAMPLES = 100_000
Sampler = Callable[[Any, np.random.Generator, int], np.ndarray]
score_examples = st.tuples(st.integers(1, 3), st.integers(2, 4)).flatmap(
    lambda shape: logits(shape, max_abs=1.0)
)


def _score_sampler(indicator_only: bool) -> Sampler:
    def sample(logit_table: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n, S, A]: row s is the score of a ~ pi(.|s), one action per state and sample."""
        from rlmath import SoftmaxPolicy

        policy = SoftmaxPolicy(logit_table)
        states = np.broadcast_to(np.arange(policy.n_states), (n, policy.n_states))
        actions = sample_actions(policy, states, seed=int(rng.integers(2**63)))
        if indicator_only:  # mutant: 1[a = k], the -pi(k|s) forgotten
            return np.eye(policy.n_actions)[actions]
        return policy.score_row(states, actions)

    return sample


# --- baseline-unbiased and reward-to-go-unbiased: H-step episodes of a finite-horizon MDP
# (rlmath.sampling.rollouts); one episode's term is the estimator's [S, A] gradient sample, the
# reference exact.policy_gradient of TabularMDP(P, r, rho0, gamma, horizon=H) (backward
# induction). Domain: 2-3 states and actions, horizon 3-4, gamma in [0.5, 0.9] (so the gamma^t
# factors matter), every probability of rho0 and P at least 0.1 and logits in [-1, 1] (every
# state is visited at t = 0 with probability >= 0.1). Examples are kept when every component of
# the correct estimator varies (sd >= MIN_SD) and every mutant shifts some component by at least
# MIN_STANDARDISED_EFFECT of its per-episode sd under the mutant; means and sds are exact, by
# running the same estimator on every trajectory (rlmath.exact.trajectories) weighted by its
# probability.
Estimator = Callable[[Rollouts, tuple[Any, ...]], np.ndarray]
finite_horizon_mdps = mdps_and_policies(
    tabular_mdps(
        min_states=2,
        max_states=3,
        min_actions=2,
        max_actions=3,
        gamma=st.floats(0.5, 0.9),
        horizon=st.integers(3, 4),
        allow_zeros=False,
        min_probability=0.1,
    ),
    max_abs_logit=1.0,
)
MIN_SD = 1e-3
MIN_STANDARDISED_EFFECT = 0.03
N_MC_EXAMPLES = 2
# Power >= 0.99 against every mutant on every example: each shifts some component by >= 0.03
# of its sd; with up to 3 x 3 components, 2 examples and false alarm 1e-6,
# sample_size(0.03, 1) = 66,890 episodes (about 0.1 s per run).
N_EPISODES = sample_size(
    MIN_STANDARDISED_EFFECT, 1.0, false_alarm=DEFAULT_FALSE_ALARM / N_MC_EXAMPLES, n_components=9
)


def enumerated_rollouts(mdp: Any, policy: Any) -> tuple[Rollouts, np.ndarray]:
    """Every trajectory of positive probability as a Rollouts ``[H, N]``, and the ``[N]`` probabilities."""
    paths = exact.trajectories(mdp, policy, mdp.horizon)
    states, actions = paths.states.T.copy(), paths.actions.T.copy()
    ended = np.zeros(states.shape, dtype=bool)
    ended[-1] = True
    out = Rollouts(
        states=states,
        actions=actions,
        rewards=mdp.r[states, actions],
        log_probs=policy.log_probabilities()[states, actions],
        terminated=np.zeros(states.shape, dtype=bool),
        truncated=ended,
        alive=np.ones(states.shape, dtype=bool),
        final_states=states[-1],  # s_H is not enumerated; no estimator here reads it
        seed_entropy=None,
        block_size=1,
    )
    return out, paths.probabilities


def _episode_sampler(estimator: Estimator) -> Sampler:
    def sample(example: tuple[Any, ...], rng: np.random.Generator, n: int) -> np.ndarray:
        mdp, policy = example[:2]
        episodes = rollouts(
            mdp, policy, n_episodes=n, horizon=mdp.horizon, seed=int(rng.integers(2**63))
        )
        return estimator(episodes, example)

    return sample


def _exact_moments(example: tuple[Any, ...], estimator: Estimator) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd ``[S, A]`` of the estimator's per-episode terms, over every trajectory."""
    paths, probabilities = enumerated_rollouts(*example[:2])
    terms = estimator(paths, example)
    mean = np.tensordot(probabilities, terms, axes=1)
    return mean, np.sqrt(np.tensordot(probabilities, (terms - mean) ** 2, axes=1))


def detectable(
    estimator: Estimator, mutants: tuple[Estimator, ...]
) -> Callable[[tuple[Any, ...]], bool]:
    """The example filter: the estimator's components vary, every mutant is visibly shifted."""

    def keep(example: tuple[Any, ...]) -> bool:
        if _exact_moments(example, estimator)[1].min() < MIN_SD:
            return False
        gradient = exact.policy_gradient(*example[:2])
        for mutant in mutants:
            mean, sd = _exact_moments(example, mutant)
            effect = np.abs(mean - gradient) / np.maximum(sd, MIN_SD)
            if effect.max() < MIN_STANDARDISED_EFFECT:
                return False
        return True

    return keep


def _discounts(mdp: Any, episodes: Rollouts) -> np.ndarray:
    """gamma^t, ``[T, 1]``."""
    return (mdp.gamma ** np.arange(episodes.n_steps))[:, None]  # type: ignore[no-any-return]


def _reward_to_go(mdp: Any, episodes: Rollouts) -> np.ndarray:
    """sum_{k >= t} gamma^k r_k (discounted from time 0), ``[T, N]``."""
    discounted = _discounts(mdp, episodes) * episodes.rewards
    return np.cumsum(discounted[::-1], axis=0)[::-1]


def _indicator_sum(episodes: Rollouts, shape: tuple[int, int], weights: np.ndarray) -> np.ndarray:
    """sum_t w_t 1[s_t = s, a_t = k] per episode, ``[N, S, A]``: a score without its -pi(k|s)."""
    S, A = shape
    index = (np.arange(episodes.n_episodes) * S + episodes.states) * A + episodes.actions
    counts = np.bincount(
        index.ravel(), weights=weights.ravel(), minlength=episodes.n_episodes * S * A
    )
    return counts.reshape(episodes.n_episodes, S, A)


def with_state_baseline(episodes: Rollouts, example: tuple[Any, ...]) -> np.ndarray:
    """rlmath.estimators.reinforce_with_baseline: sum_t gamma^t (G_t - b(s_t)) score_t."""
    mdp, policy, state_baseline, _ = example
    return reinforce_with_baseline(episodes, policy, gamma=mdp.gamma, baseline=state_baseline)


def with_action_baseline(episodes: Rollouts, example: tuple[Any, ...]) -> np.ndarray:
    """Mutant: sum_t gamma^t (G_t - b(s_t, a_t)) score_t, a baseline that depends on a_t."""
    mdp, policy, _, action_baseline = example
    credit = (
        _reward_to_go(mdp, episodes)
        - _discounts(mdp, episodes) * action_baseline[episodes.states, episodes.actions]
    )
    return weighted_score_sum(episodes, policy, credit)


def with_baseline_indicator_score(episodes: Rollouts, example: tuple[Any, ...]) -> np.ndarray:
    """Mutant: sum_t gamma^t (G_t - b(s_t)) 1[a_t = k], the score's -pi(k|s_t) forgotten."""
    mdp, policy, state_baseline, _ = example
    credit = (
        _reward_to_go(mdp, episodes) - _discounts(mdp, episodes) * state_baseline[episodes.states]
    )
    return _indicator_sum(episodes, policy.theta.shape, credit)


def reward_to_go_terms(episodes: Rollouts, example: tuple[Any, ...]) -> np.ndarray:
    """rlmath.estimators.reinforce_reward_to_go: sum_t score_t sum_{k >= t} gamma^k r_k."""
    mdp, policy = example
    return reinforce_reward_to_go(episodes, policy, gamma=mdp.gamma)


def reward_to_go_without_current(episodes: Rollouts, example: tuple[Any, ...]) -> np.ndarray:
    """Mutant: sum_t score_t sum_{k > t} gamma^k r_k (r_t dropped)."""
    mdp, policy = example
    credit = _reward_to_go(mdp, episodes) - _discounts(mdp, episodes) * episodes.rewards
    return weighted_score_sum(episodes, policy, credit)


def reward_to_go_restarted(episodes: Rollouts, example: tuple[Any, ...]) -> np.ndarray:
    """Mutant: sum_t score_t sum_{k >= t} gamma^(k - t) r_k (no gamma^t on the score)."""
    mdp, policy = example
    return reinforce_reward_to_go(episodes, policy, gamma=mdp.gamma, discount_score=False)


def _exact_gradient(example: tuple[Any, ...]) -> np.ndarray:
    return exact.policy_gradient(*example[:2])


def _bounded_baselines(pair: tuple[Any, Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    """b(s) with 0.25 <= |b(s)| <= 2 (b = 0 would make the check the reward-to-go one), and
    b(s, a) in [-2, 2]."""
    mdp, policy = pair
    S, A = mdp.n_states, mdp.n_actions
    signed = st.sampled_from((-1.0, 1.0)).flatmap(lambda sign: st.floats(0.25, 2).map(sign.__mul__))
    return st.tuples(
        st.just(mdp),
        st.just(policy),
        st.lists(signed, min_size=S, max_size=S).map(np.array),
        st.lists(st.floats(-2, 2), min_size=S * A, max_size=S * A).map(
            lambda x: np.reshape(x, (S, A))
        ),
    )


mc_baseline_examples = finite_horizon_mdps.flatmap(_bounded_baselines).filter(
    detectable(with_state_baseline, (with_action_baseline, with_baseline_indicator_score))
)
mc_rtg_examples = finite_horizon_mdps.filter(
    detectable(reward_to_go_terms, (reward_to_go_without_current, reward_to_go_restarted))
)


SCORE_ZERO_MEAN_REFERENCES = (
    "Williams, R. J., *Simple statistical gradient-following algorithms for connectionist "
    "reinforcement learning*, Machine Learning 8, 1992, Sec. 4.",
    "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed., 2018, "
    "Sec. 13.4, eq. (13.11).",
)

CLAIMS = (
    Claim(
        id="score-zero-mean",
        title="The score has zero mean",
        statement=r"\mathbb E_{a\sim\pi_\theta(\cdot|s)}\!\left[\nabla_\theta \log \pi_\theta(a\mid s)\right] = 0",
        assumptions=(
            "Softmax policy over n actions, every n >= 1 (written n = k + m + 1 for the "
            "coordinate k < n).",
            "The expectation is under the same policy whose score is taken (on-policy).",
            "Monte-Carlo leg: 1-3 states, 2-4 actions, logits in [-1, 1].",
        ),
        references=SCORE_ZERO_MEAN_REFERENCES,
        symbolic=SymbolicLeg((score_zero_mean,)),
        exact=ExactLeg(
            policies,
            lhs=expected_score,
            rhs=_expected_score_rhs,
            rtol=_zero_mean_rtol,
            description=(
                "sum_a pi(a|s) SoftmaxPolicy.score_row(s, a) by enumeration vs the lambdified "
                "conclusion (0), for every state and logit; tolerance at the scale of the terms"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            score_examples,
            _score_sampler(indicator_only=False),
            lambda logit_table: np.zeros(logit_table.shape),
            n_samples=N_SCORE_SAMPLES,
            description=(
                "mean of SoftmaxPolicy.score_row(s, a) over a ~ pi(.|s) "
                "(rlmath.sampling.sample_actions), every state, vs 0"
            ),
        ),
        mutants=(
            Mutant(
                "score-without-normaliser",
                "score taken as 1[a=k], forgetting -pi(k): its mean is pi(k), not 0",
                symbolic=SymbolicMutation("softmax", INDICATOR_SCORE_MEAN),
                exact=per_state(INDICATOR_SCORE_MEAN),
                monte_carlo=_score_sampler(indicator_only=True),
            ),
        ),
    ),
    Claim(
        id="baseline-unbiased",
        title="A state-dependent baseline adds no bias",
        statement=(
            r"\mathbb E_{a\sim\pi}\!\left[\nabla\log\pi_\theta(a|s)\,(Q(s,a) - b(s))\right]"
            r" = \mathbb E_{a\sim\pi}\!\left[\nabla\log\pi_\theta(a|s)\,Q(s,a)\right]"
        ),
        assumptions=(
            "Softmax policy over n actions, every n >= 1.",
            "b(s) does not depend on the action (it may depend on the state arbitrarily).",
            "Exact leg: infinite-horizon discounted MDPs; the per-state identity is weighted "
            "by the discounted visits d(s)/(1 - gamma), d the normalised occupancy.",
            "Monte-Carlo leg: H-step episodes (H = 3, 4) of MDPs with 2-3 states and actions; "
            "the estimator is reward-to-go REINFORCE minus b(s_t) "
            "(rlmath.estimators.reinforce_with_baseline), the reference the exact gradient of "
            "the H-step objective.",
        ),
        references=(
            *SCORE_ZERO_MEAN_REFERENCES,
            "Greensmith, E., Bartlett, P. L. and Baxter, J., *Variance Reduction Techniques "
            "for Gradient Estimates in Reinforcement Learning*, JMLR 5, 2004.",
        ),
        symbolic=SymbolicLeg((score_zero_mean, baseline)),
        exact=ExactLeg(
            baseline_examples,
            lhs=lambda ex: exact.policy_gradient(ex[0], ex[1]),
            rhs=_baseline_side(baseline.conclusion),
            rtol=_baseline_rtol,
            description=(
                "exact.policy_gradient vs sum_s d(s)/(1-gamma) times the lambdified "
                "E_a[score (Q - b(s))] with arbitrary generated b(s)"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            mc_baseline_examples,
            _episode_sampler(with_state_baseline),
            _exact_gradient,
            n_samples=N_EPISODES,
            n_examples=N_MC_EXAMPLES,
            description=(
                "mean of reinforce_with_baseline (reward-to-go minus b(s_t)) over H-step "
                "episodes vs exact.policy_gradient of the finite-horizon MDP"
            ),
        ),
        mutants=(
            Mutant(
                "action-dependent-baseline",
                "a baseline b(s, a) that depends on the action: biased",
                symbolic=SymbolicMutation("baseline", ACTION_DEPENDENT_BASELINE),
                exact=_baseline_side(ACTION_DEPENDENT_BASELINE),
                monte_carlo=_episode_sampler(with_action_baseline),
            ),
            Mutant(
                "score-without-normaliser",
                "score taken as 1[a=k] (the -pi(k) forgotten): the baseline no longer cancels",
                symbolic=SymbolicMutation("baseline", INDICATOR_SCORE_BASELINE),
                exact=_baseline_side(INDICATOR_SCORE_BASELINE),
                monte_carlo=_episode_sampler(with_baseline_indicator_score),
            ),
        ),
    ),
    Claim(
        id="reward-to-go-unbiased",
        title="Reward-to-go keeps the policy gradient unbiased",
        statement=(
            r"\mathbb E_\tau\!\left[\sum_{t<H}\nabla\log\pi_\theta(a_t|s_t)\sum_{k<H}\gamma^k r_k\right]"
            r" = \mathbb E_\tau\!\left[\sum_{t<H}\nabla\log\pi_\theta(a_t|s_t)\sum_{k=t}^{H-1}\gamma^k r_k\right]"
        ),
        assumptions=(
            "Finite horizon H; r_k = r(s_k, a_k); the discount of reward k is gamma^k (from "
            "time 0), also inside the reward-to-go.",
            "The lemma 'past-reward-vanishes' is general (any history distribution, any number "
            "of actions); 'reward-to-go-instance' is a fully symbolic instance with 2 states, "
            "2 actions and horizon 2 (every probability and reward a symbol), for the gradient "
            "coordinate theta[0, 0] (any other coordinate is the same after relabelling).",
            "Exact leg: every trajectory of MDPs with up to 3 states, 3 actions, horizon <= 3.",
            "Monte-Carlo leg: H-step episodes (H = 3, 4) of MDPs with 2-3 states and actions, "
            "rlmath.estimators.reinforce_reward_to_go vs the exact gradient of the H-step "
            "objective.",
        ),
        references=(
            "Williams, R. J., *Simple statistical gradient-following algorithms for "
            "connectionist reinforcement learning*, Machine Learning 8, 1992.",
            "Schulman, J., Moritz, P., Levine, S., Jordan, M. and Abbeel, P., *High-Dimensional "
            "Continuous Control Using Generalized Advantage Estimation*, ICLR 2016, eq. (1).",
        ),
        symbolic=SymbolicLeg((past_reward_vanishes, reward_to_go_instance)),
        exact=ExactLeg(
            rtg_examples,
            lhs=whole_return_gradients,
            rhs=credited_gradient(0, restart_discount=False),
            rtol=_rtg_rtol,
            description=(
                "exact.policy_gradient and REINFORCE with the whole return (both over every "
                "trajectory) vs the reward-to-go estimator's mean over every trajectory"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            mc_rtg_examples,
            _episode_sampler(reward_to_go_terms),
            _exact_gradient,
            n_samples=N_EPISODES,
            n_examples=N_MC_EXAMPLES,
            description=(
                "mean of reinforce_reward_to_go over H-step episodes vs exact.policy_gradient "
                "of the finite-horizon MDP"
            ),
        ),
        mutants=(
            Mutant(
                "drop-current-reward",
                "credit a_t only with rewards from t + 1 on (r_t dropped)",
                symbolic=SymbolicMutation("reward-to-go-instance", DROP_CURRENT_REWARD),
                exact=credited_gradient(1, restart_discount=False),
                monte_carlo=_episode_sampler(reward_to_go_without_current),
            ),
            Mutant(
                "restart-discount",
                "reward-to-go discounted from t (gamma^(k-t)) instead of from 0 (gamma^k)",
                symbolic=SymbolicMutation("reward-to-go-instance", RESTART_DISCOUNT),
                exact=credited_gradient(0, restart_discount=True),
                monte_carlo=_episode_sampler(reward_to_go_restarted),
            ),
        ),
    ),
)
