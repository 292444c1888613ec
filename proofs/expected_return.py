r"""The expected return as a sum over trajectories, and the trajectory score.

Main statements. For an $H$-step episode $\tau = (s_0, a_0, \dots, s_{H-1}, a_{H-1})$ with

$$ p_\theta(\tau) = \rho_0(s_0) \prod_{t=0}^{H-1} \pi_\theta(a_t \mid s_t)
   \prod_{t=0}^{H-2} P(s_{t+1} \mid s_t, a_t), \qquad
   R(\tau) = \sum_{t=0}^{H-1} \gamma^t r(s_t, a_t), $$

the expected return is the probability-weighted sum over every trajectory, and it equals the
value computed by backward induction (dynamic programming):

$$ \bar R(\theta) = \sum_\tau R(\tau)\, p_\theta(\tau) = \rho_0^\top V_0, \qquad
   V_H = 0,\quad V_t(s) = \sum_a \pi_\theta(a|s)\Big[r(s,a) + \gamma \sum_{s'} P(s'|s,a) V_{t+1}(s')\Big]. $$

The score of a trajectory does not involve the dynamics:

$$ \nabla_\theta \log p_\theta(\tau) = \sum_{t=0}^{H-1} \nabla_\theta \log \pi_\theta(a_t \mid s_t). $$

Conventions. Time starts at 0; $r(s_t, a_t)$ is the reward for $a_t$ in $s_t$; the post writes
$R = \sum_{t=1}^T r_t$ (undiscounted), which is $\gamma = 1$ here with $H = T$. Gradients are
with respect to the policy parameters; $\rho_0$ and $P$ do not depend on them.

Proof sketch. Group the trajectory sum by its first step; the rest of the trajectory is a
distribution (its probabilities sum to 1), which leaves the immediate reward plus $\gamma$
times the same sum one step shorter: the DP recursion (here checked on a fully symbolic
instance). For the score, $\log$ turns the product into a sum, and the terms
$\log \rho_0(s_0)$ and $\log P(s_{t+1}|s_t,a_t)$ have zero derivative.

References. Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd
ed., 2018, eq. (3.8) (return) and (13.2)-(13.5) (policy gradient theorem and its proof);
Puterman, M. L., *Markov Decision Processes*, 1994, Sec. 4.2 (finite-horizon policy
evaluation by backward induction); Williams, R. J., "Simple statistical gradient-following
algorithms for connectionist reinforcement learning", Machine Learning 8, 1992 (trajectory
score); Peters, J. and Schaal, S., "Reinforcement learning of motor skills with policy
gradients", Neural Networks 21, 2008, eq. (4)-(5) (the dynamics drop out of the score).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import TabularMDP, exact
from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    complex_step_gradient,
    detectable,
    exact_moments,
    lazy_lambdify,
    monte_carlo_leg,
)
from rlmath.estimators import reinforce_total_return
from rlmath.sampling import Rollouts, rollouts
from rlmath.statistics import DEFAULT_FALSE_ALARM, sample_size
from rlmath.symbolic import IndexSum
from rlmath.testing import mdps_and_policies, tabular_mdps
from rlmath.tolerances import exact_rtol

# ============================================================================ expected return
# General horizon, by induction on the number of steps h left. Fix a state s. An h-step
# trajectory from s is (a_0 = a, s_1 = s', J), where J indexes the (h-1)-step continuations
# from s' (J < M; M is any number, a continuation may have probability 0 as a limit), with
#   p = pi(a|s) P(s'|s,a) C(J|s'),   R = r(s,a) + gamma G_{s',J},
# C(J|s') the continuation's probability and G_{s',J} its discounted return. Probabilities are
# normalised weights (pi = w / sum w, P = p / sum p, C = c / sum c), so every distribution with
# positive entries is covered. The derivation groups the trajectory sum by its first step and
# ends at the DP backup of W_{h-1}(s') = sum_J C(J|s') G_{s',J}, the same trajectory sum one
# step shorter: with W_0 = 0 this is backward induction (W_h = V_{H-h}), and the expected return
# is rho0^T W_H = rho0^T V_0 by linearity.
S_ = sp.Symbol("S", integer=True, positive=True)  # states
A_ = sp.Symbol("A", integer=True, positive=True)  # actions
M_ = sp.Symbol("M", integer=True, positive=True)  # continuations of each next state
gamma = sp.Symbol("gamma", nonnegative=True)
state = sp.Symbol("s", integer=True, nonnegative=True)
act, nxt, cont, b_, y_, j_ = sp.symbols("a s_1 J b y j", integer=True)  # s_1 prints as s'
w = sp.IndexedBase("w", positive=True)  # policy weights w[s, a]
p = sp.IndexedBase("p", positive=True)  # transition weights p[s, a, s']
c = sp.IndexedBase("c", positive=True)  # continuation weights c[s', J]
r = sp.IndexedBase("r", real=True)
G = sp.IndexedBase("G", real=True)  # G[s', J]: discounted return of continuation J from s'


def pi_of(action: sp.Expr) -> sp.Expr:
    return w[state, action] / IndexSum(w[state, b_], (b_, 0, A_ - 1))


def P_of(next_state: sp.Expr) -> sp.Expr:
    return p[state, act, next_state] / IndexSum(p[state, act, y_], (y_, 0, S_ - 1))


def C_of(next_state: sp.Expr, continuation: sp.Expr) -> sp.Expr:
    return c[next_state, continuation] / IndexSum(c[next_state, j_], (j_, 0, M_ - 1))


def over_trajectories(term: sp.Expr) -> sp.Sum:
    """sum_a pi(a|s) sum_s' P(s'|s,a) sum_J C(J|s') term: over the h-step trajectories from s."""
    inner = IndexSum(C_of(nxt, cont) * term, (cont, 0, M_ - 1))
    return IndexSum(pi_of(act) * IndexSum(P_of(nxt) * inner, (nxt, 0, S_ - 1)), (act, 0, A_ - 1))


def continuation_value(next_state: sp.Expr) -> sp.Sum:
    """W_{h-1}(s') = sum_J C(J|s') G_{s',J}."""
    return IndexSum(C_of(next_state, cont) * G[next_state, cont], (cont, 0, M_ - 1))


def backup(discount: sp.Expr = gamma) -> sp.Sum:
    """sum_a pi(a|s) [r(s,a) + discount sum_s' P(s'|s,a) W_{h-1}(s')]."""
    future = IndexSum(P_of(nxt) * continuation_value(nxt), (nxt, 0, S_ - 1))
    return IndexSum(pi_of(act) * (r[state, act] + discount * future), (act, 0, A_ - 1))


def _first_step_sum(term: sp.Expr) -> sp.Sum:
    return IndexSum(pi_of(act) * term, (act, 0, A_ - 1))


_future = IndexSum(P_of(nxt) * continuation_value(nxt), (nxt, 0, S_ - 1))
first_step = Derivation(
    "first-step",
    (
        Step(
            over_trajectories(r[state, act] + gamma * G[nxt, cont]),
            "sum_tau R(tau) p(tau) over the h-step trajectories from s, grouped by the first "
            "step: R = r(s, a_0) + gamma (return of the rest)",
        ),
        Step(
            over_trajectories(r[state, act]) + gamma * over_trajectories(G[nxt, cont]),
            "linearity",
        ),
        Step(
            _first_step_sum(
                r[state, act]
                * IndexSum(
                    P_of(nxt) * IndexSum(C_of(nxt, cont), (cont, 0, M_ - 1)), (nxt, 0, S_ - 1)
                )
            )
            + gamma * _first_step_sum(_future),
            "r(s, a) does not depend on s', J; the inner sum of the second term is W_{h-1}(s')",
        ),
        Step(
            _first_step_sum(r[state, act]) + gamma * _first_step_sum(_future),
            "sum out what follows the reward: sum_J C(J|s') = 1, sum_s' P(s'|s,a) = 1",
        ),
        Step(backup(), "collect: the Bellman backup of W_{h-1} (backward induction)"),
    ),
    statement=r"\sum_{\tau \text{ from } s} R(\tau) p_\theta(\tau) = \sum_a \pi(a|s)\Big[r(s,a) + \gamma \sum_{s'} P(s'|s,a) W_{h-1}(s')\Big]",
)
UNDISCOUNTED = backup(sp.Integer(1))

# Base case h = 1: a 1-step trajectory from s is (s, a_0), R = r(s, a_0); with W_0 = 0 (no
# step left, every continuation's return is 0) the backup of W_0 is this sum.
base_case = Derivation(
    "base-case",
    (
        Step(
            _first_step_sum(r[state, act]),
            "sum_tau R(tau) p(tau) over the 1-step trajectories (s, a_0) from s",
        ),
        Step(
            backup().xreplace({G[nxt, cont]: sp.Integer(0)}),
            "W_0 = 0 (no step left): the backup of W_0 adds gamma sum_s' P(s'|s,a) 0",
        ),
    ),
    statement=r"\sum_{\tau \text{ from } s,\ h = 1} R(\tau) p_\theta(\tau) = \text{the backup of } W_0 = 0",
)

# The h-step trajectories from s form a distribution when the (h-1)-step continuations do
# (with the 0-step one, probability 1, as base): the induction that makes C a distribution.
trajectories_normalised = Derivation(
    "trajectory-probabilities",
    (
        Step(
            over_trajectories(sp.Integer(1)),
            "sum_tau p(tau) over the h-step trajectories from s: pi(a|s) P(s'|s,a) C(J|s')",
        ),
        Step(sp.Integer(1), "sum_J C(J|s') = 1, sum_s' P(s'|s,a) = 1, sum_a pi(a|s) = 1"),
    ),
    statement=r"\sum_{\tau \text{ from } s} p_\theta(\tau) = 1",
)


# --- exact leg: lhs sums R(tau) p(tau) over every H-step trajectory from each start state
# (rlmath.exact.trajectories, one start state at a time); rhs the lambdified backup with the
# continuations from s' grouped into one (M = 1, C = 1, G = V_1(s'), the value with H - 1 steps
# left from backward induction, rlmath.exact.finite_horizon_values; V_1 = 0 for H = 1). Every
# start state at once: s is the index array 0..S-1.
finite_horizon = mdps_and_policies(
    tabular_mdps(max_states=3, max_actions=3, horizon=st.integers(1, 4))
)


def _with(
    mdp: TabularMDP,
    *,
    gamma_: float | None = None,
    horizon: int | None = None,
    rho0: np.ndarray | None = None,
) -> TabularMDP:
    return TabularMDP(
        mdp.dense_transitions(),
        mdp.r,
        mdp.rho0 if rho0 is None else rho0,
        mdp.gamma if gamma_ is None else gamma_,
        mdp.horizon if horizon is None else horizon,
    )


def trajectory_sums(example: tuple) -> np.ndarray:  # type: ignore[type-arg]
    """sum_tau R(tau) p(tau | s_0 = s) for every start state s, ``[S]``, by enumeration."""
    mdp, pol = example
    starts = np.eye(mdp.n_states)
    return np.array(
        [
            exact.trajectories(_with(mdp, rho0=starts[s0]), pol, mdp.horizon).expected_return()
            for s0 in range(mdp.n_states)
        ]
    )


def _return_arguments(example: tuple, steps_left: int = 1) -> tuple:  # type: ignore[type-arg]
    """Values of (w, p, c, r, G, gamma, s, S, A, M); G = V with H - steps_left steps to go."""
    mdp, pol = example
    values, _ = exact.finite_horizon_values(mdp, pol)
    after = values[steps_left]
    S, A = mdp.n_states, mdp.n_actions
    return (
        pol.probabilities(),
        mdp.dense_transitions(),
        np.ones((S, 1)),
        mdp.r,
        after[:, None],
        mdp.gamma,
        np.arange(S),
        S,
        A,
        1,
    )


_backup_numeric = lazy_lambdify([w, p, c, r, G, gamma, state, S_, A_, M_], first_step.conclusion)


def _one_step_short(example: tuple) -> np.ndarray:  # type: ignore[type-arg]
    """Mutant: the backup of V_2 (rewards t = 0..H-2), i.e. backward induction one step short
    (for H = 1 no reward is left: 0)."""
    mdp = example[0]
    if mdp.horizon == 1:
        return np.zeros(mdp.n_states)
    return np.asarray(_backup_numeric(*_return_arguments(example, steps_left=2)), dtype=float)


def _return_scale(example: tuple) -> float:  # type: ignore[type-arg]
    r"""$\max|r| \sum_{t<H} \gamma^t$, which bounds every return and value both sides sum,
    floored at the smallest normal float (below it rounding is absolute)."""
    mdp, _ = example
    size = float(np.abs(mdp.r).max(initial=0.0)) * float(
        np.sum(mdp.gamma ** np.arange(mdp.horizon))
    )
    return max(size, float(np.finfo(np.float64).tiny))


def _return_rtol(example: tuple) -> float:  # type: ignore[type-arg]
    """Up to A^H S^(H-1) trajectories summed, each return H terms long."""
    mdp, _ = example
    count = mdp.n_actions**mdp.horizon * mdp.n_states ** (mdp.horizon - 1)
    return exact_rtol(float(mdp.horizon), count)


# ============================================================================ trajectory score
# General horizon H: pi_t(theta) stands for pi_theta(a_t | s_t) along one fixed trajectory
# (an arbitrary differentiable positive function of a parameter coordinate theta); P_t for
# P(s_{t+1} | s_t, a_t) and rho for rho_0(s_0), which do not depend on theta.
t = sp.Symbol("t", integer=True, nonnegative=True)
H = sp.Symbol("H", integer=True, positive=True)
theta = sp.Symbol("theta", real=True)
pi_t = sp.Function("pi", positive=True)
P_t = sp.IndexedBase("P", positive=True)
rho_s0 = sp.Symbol("rho", positive=True)
trajectory_probability = (
    rho_s0 * sp.Product(pi_t(theta, t), (t, 0, H - 1)) * sp.Product(P_t[t], (t, 0, H - 2))
)
log_terms = (
    sp.log(rho_s0)
    + sp.Sum(sp.log(pi_t(theta, t)), (t, 0, H - 1))
    + sp.Sum(sp.log(P_t[t]), (t, 0, H - 2))
)
policy_scores = sp.Sum(sp.Derivative(sp.log(pi_t(theta, t)), theta), (t, 0, H - 1))
dynamics_free = Derivation(
    "general-horizon",
    (
        Step(sp.Derivative(sp.log(trajectory_probability), theta), "the score of a trajectory"),
        Step(sp.Derivative(log_terms, theta), "log of a product is the sum of the logs"),
        Step(
            sp.Derivative(sp.log(rho_s0), theta)
            + policy_scores
            + sp.Sum(sp.Derivative(sp.log(P_t[t]), theta), (t, 0, H - 2)),
            "linearity of the derivative over the finite sums",
        ),
        Step(policy_scores, "rho_0 and P do not depend on theta"),
    ),
    statement=r"\nabla_\theta \log p_\theta(\tau) = \sum_{t<H} \nabla_\theta \log\pi_\theta(a_t|s_t)",
)
LAST_SCORE_DROPPED = sp.Sum(sp.Derivative(sp.log(pi_t(theta, t)), theta), (t, 0, H - 2))
NEXT_STATE_SCORE = sp.Sum(sp.Derivative(sp.log(pi_t(theta, t + 1)), theta), (t, 0, H - 2))

# The tabular softmax: pi_theta(a|x) = exp(theta[x, a]) / sum_b exp(theta[x, b]), along one
# trajectory with states s_t and actions a_t (t < H), differentiated by the logit theta[sigma, k]
# of one state sigma and action k < n = k + m + 1. This evaluates the conclusion above for the
# policy the numeric legs use; its own conclusion is what the exact leg lambdifies.
sigma = sp.Symbol("sigma", integer=True, nonnegative=True)
k_ = sp.Symbol("k", integer=True, nonnegative=True)
m_ = sp.Symbol("m", integer=True, nonnegative=True)
b_t = sp.Symbol("b", integer=True)
logit = sp.IndexedBase("theta", real=True)
s_t = sp.IndexedBase("s", integer=True, nonnegative=True)
a_t = sp.IndexedBase("a", integer=True, nonnegative=True)


def _normaliser(x: sp.Expr) -> sp.Sum:
    return sp.Sum(sp.exp(logit[x, b_t]), (b_t, 0, k_ + m_))


_on_state = sp.KroneckerDelta(s_t[t], sigma)
tabular_softmax = Derivation(
    "tabular-softmax",
    (
        Step(
            IndexSum(
                sp.Derivative(
                    logit[s_t[t], a_t[t]] - sp.log(_normaliser(s_t[t])), logit[sigma, k_]
                ),
                (t, 0, H - 1),
            ),
            "sum_t d log pi_theta(a_t|s_t) / d theta[sigma, k] for the tabular softmax",
        ),
        Step(
            IndexSum(
                _on_state * sp.KroneckerDelta(a_t[t], k_)
                - sp.Sum(
                    sp.exp(logit[s_t[t], b_t]) * sp.KroneckerDelta(b_t, k_) * _on_state,
                    (b_t, 0, k_ + m_),
                )
                / _normaliser(s_t[t]),
                (t, 0, H - 1),
            ),
            "d theta[x, b] / d theta[sigma, k] = 1[x = sigma] 1[b = k]; d log sum = d sum / sum",
        ),
        Step(
            IndexSum(
                _on_state
                * (sp.KroneckerDelta(a_t[t], k_) - sp.exp(logit[s_t[t], k_]) / _normaliser(s_t[t])),
                (t, 0, H - 1),
            ),
            "sum the Kronecker delta over b",
        ),
    ),
    statement=r"\sum_t \partial_{\theta_{\sigma,k}} \log\pi_\theta(a_t|s_t) = \sum_t \mathbb 1[s_t = \sigma] (\mathbb 1[a_t = k] - \pi_\theta(k|\sigma))",
)

# --- exact leg: at least 2 states and actions and 2 steps, so that there are transitions whose
# probability depends on the action: with one state, one action or one step, the mutant that
# differentiates log P_pi(s'|s) coincides with the claim, and Hypothesis's simplest examples
# (which it tries first) are exactly those. One example is one trajectory of positive
# probability (by its index among every enumerated one) and one logit theta[sigma, k].
_score_mdps = mdps_and_policies(
    tabular_mdps(
        min_states=2, max_states=3, min_actions=2, max_actions=3, horizon=st.integers(2, 3)
    )
)


def _with_trajectory_and_logit(pair):  # type: ignore[no-untyped-def]
    mdp, pol = pair
    count = len(exact.trajectories(mdp, pol, mdp.horizon).probabilities)
    return st.tuples(
        st.just(mdp),
        st.just(pol),
        st.integers(0, count - 1),
        st.integers(0, mdp.n_states - 1),
        st.integers(0, mdp.n_actions - 1),
    )


trajectory_score_examples = _score_mdps.flatmap(_with_trajectory_and_logit)

# lhs differentiates the *whole* log-likelihood, log rho0 + sum log pi + sum log P, by
# complex-step differentiation (Squire and Trapp, SIAM Review 40, 1998: exact to rounding, no
# subtraction) in the logit theta[sigma, k]; rhs the lambdified tabular-softmax conclusion.


def _log_likelihood(mdp: TabularMDP, logits: np.ndarray, paths) -> np.ndarray:  # type: ignore[no-untyped-def]
    """log p_theta(tau) for every enumerated trajectory, complex-safe in the logits."""
    log_pi = logits - logits.real.max(axis=1, keepdims=True)
    log_pi = log_pi - np.log(np.exp(log_pi).sum(axis=1, keepdims=True))
    P = mdp.dense_transitions()
    s, act = paths.states, paths.actions
    out = np.log(mdp.rho0[s[:, 0]]) + log_pi[s, act].sum(axis=1)
    return out + np.log(P[s[:, :-1], act[:, :-1], s[:, 1:]]).sum(axis=1)  # type: ignore[no-any-return]


def _trajectory(example: tuple) -> Any:  # type: ignore[type-arg]
    mdp, pol, index = example[:3]
    paths = exact.trajectories(mdp, pol, mdp.horizon)
    return type(paths)(
        paths.states[index : index + 1],
        paths.actions[index : index + 1],
        paths.probabilities[index : index + 1],
        paths.returns[index : index + 1],
    )


def full_log_likelihood_gradient(example: tuple) -> float:  # type: ignore[type-arg]
    """d log p_theta(tau) / d theta[sigma, k] for the example's trajectory."""
    mdp, pol, _, row, column = example
    path = _trajectory(example)

    def of_logit(value: np.ndarray) -> complex:
        logits = pol.theta.astype(complex)
        logits[row, column] = value[0]
        return complex(_log_likelihood(mdp, logits, path)[0])

    return float(complex_step_gradient(of_logit, pol.theta[row, column : column + 1])[0])


def _score_arguments(example: tuple) -> tuple:  # type: ignore[type-arg]
    mdp, pol, _, row, column = example
    path = _trajectory(example)
    return (
        pol.theta,
        path.states[0],
        path.actions[0],
        row,
        column,
        mdp.n_actions - 1 - column,
        mdp.horizon,
    )


def trajectory_scores(
    mdp: TabularMDP,
    pol: Any,
    states: np.ndarray,
    actions: np.ndarray,
    *,
    first: int = 0,
    last_offset: int = 0,
    transition_term: bool = False,
) -> np.ndarray:
    """sum_{t = first}^{H - 1 - last_offset} score(s_t, a_t) per trajectory: ``[N, S, A]``.

    ``states`` and ``actions`` are ``[N, H]`` (times 0..H-1). With ``transition_term`` (a
    mutant), also the gradient of log P_pi(s_{t+1} | s_t), the state-to-state transition with
    the action averaged out by the policy.
    """
    horizon = states.shape[1]
    total = np.zeros((len(states), *pol.theta.shape))
    for time in range(first, horizon - last_offset):
        total += pol.score(states[:, time], actions[:, time])
    if transition_term:
        P, probabilities = mdp.dense_transitions(), pol.probabilities()
        for time in range(horizon - 1):
            s, s1 = states[:, time], states[:, time + 1]
            p_next = np.einsum("na,na->n", probabilities[s], P[s, :, s1])  # P_pi(s1 | s)
            # d P_pi(s1|s) / d theta[s, b] = pi(b|s) (P(s1|s,b) - P_pi(s1|s))
            row = probabilities[s] * (P[s, :, s1] - p_next[:, None]) / p_next[:, None]
            total[np.arange(len(s)), s] += row
    return total


def summed_policy_scores(first: int = 0, last_offset: int = 0, transition_term: bool = False):  # type: ignore[no-untyped-def]
    """A mutant's exact rhs: :func:`trajectory_scores` of the example's trajectory, at its logit."""

    def scores(example: tuple) -> float:  # type: ignore[type-arg]
        mdp, pol, _, row, column = example
        path = _trajectory(example)
        total = trajectory_scores(
            mdp,
            pol,
            path.states,
            path.actions,
            first=first,
            last_offset=last_offset,
            transition_term=transition_term,
        )
        return float(total[0, row, column])

    return scores


def _score_scale(example: tuple) -> float:  # type: ignore[type-arg]
    """H: each of the H step scores is at most 1 in size and computed with an absolute error of
    a few eps (1 - pi(k) is a subtraction from 1, in both sides)."""
    return float(example[0].horizon)


# ============================================================================ Monte-Carlo legs
# H-step episodes of a finite-horizon MDP (rlmath.sampling.rollouts), 2-3 states and actions,
# horizon 3-4, gamma in [0.5, 0.9] (so that gamma matters), every probability of rho0 and P at
# least 0.1 and logits in [-1, 1] (every state is visited at t = 0 with probability >= 0.1).
# Each mutant gets a sampled counterpart: an estimator whose mean is the mutant's value. The
# filter keeps examples on which the test at N_EPISODES rejects every mutant with power >= 0.99
# (and the correct estimator's components all vary, sd >= MIN_SD); means and sds are exact,
# over every trajectory.
finite_horizon_mc = mdps_and_policies(
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
MC_FALSE_ALARM = DEFAULT_FALSE_ALARM / N_MC_EXAMPLES  # per example (monte_carlo_leg's split)
# 66,890 episodes: power 0.99 against a shift of 0.03 sd in one of up to 3 x 3 components (the
# gradient) at the per-example false alarm; the filter keeps the examples on which every mutant
# is detected with that power at this n.
N_EPISODES = sample_size(MIN_STANDARDISED_EFFECT, 1.0, false_alarm=MC_FALSE_ALARM, n_components=9)

# A per-episode term from the time-major [T, N] (or, for the filter, [H, N_trajectories])
# states, actions and rewards r(s_t, a_t) of the episodes.
EpisodeTerm = Callable[[tuple[Any, ...], np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Sampler = Callable[[tuple[Any, ...], np.random.Generator, int], np.ndarray]


def _episode_sampler(term: EpisodeTerm) -> Sampler:
    def sample(example: tuple[Any, ...], rng: np.random.Generator, n: int) -> np.ndarray:
        mdp, pol = example
        episodes = rollouts(
            mdp, pol, n_episodes=n, horizon=mdp.horizon, seed=int(rng.integers(2**63))
        )
        return term(example, episodes.states, episodes.actions, episodes.rewards)

    return sample


def mutants_detectable(
    term: EpisodeTerm, reference: Callable[[Any], Any], mutants: tuple[EpisodeTerm, ...]
) -> Callable[[tuple[Any, ...]], bool]:
    """The example filter: the term's components vary, and the test at N_EPISODES rejects every
    mutant with power >= 0.99 (rlmath.claims.detectable; exact means and sds by
    rlmath.claims.exact_moments over every trajectory)."""

    def moments(example: tuple[Any, ...], function: EpisodeTerm) -> tuple[np.ndarray, np.ndarray]:
        mdp, pol = example
        paths = exact.trajectories(mdp, pol, mdp.horizon)
        states, actions = paths.states.T, paths.actions.T
        return exact_moments(
            paths.probabilities, function(example, states, actions, mdp.r[states, actions])
        )

    def keep(example: tuple[Any, ...]) -> bool:
        if np.min(moments(example, term)[1]) < MIN_SD:
            return False
        exact_value = reference(example)
        for mutant in mutants:
            mean, sd = moments(example, mutant)
            if not detectable(mean - exact_value, sd, N_EPISODES, false_alarm=MC_FALSE_ALARM):
                return False
        return True

    return keep


def discounted_return(
    example: tuple[Any, ...], states: np.ndarray, actions: np.ndarray, rewards: np.ndarray
) -> np.ndarray:
    """R = sum_t gamma^t r_t per episode, ``[N]``."""
    mdp, _ = example
    return (mdp.gamma ** np.arange(len(rewards))) @ rewards  # type: ignore[no-any-return]


def undiscounted_return(
    example: tuple[Any, ...], states: np.ndarray, actions: np.ndarray, rewards: np.ndarray
) -> np.ndarray:
    """Mutant: sum_t r_t (what the undiscounted DP computes)."""
    return rewards.sum(axis=0)  # type: ignore[no-any-return]


def return_without_last_reward(
    example: tuple[Any, ...], states: np.ndarray, actions: np.ndarray, rewards: np.ndarray
) -> np.ndarray:
    """Mutant: sum_{t < H - 1} gamma^t r_t (backward induction one step short)."""
    return discounted_return(example, states, actions, rewards[:-1])


def _return_reference(example: tuple[Any, ...]) -> float:
    return exact.objective(*example)


mc_return_examples = finite_horizon_mc.filter(
    mutants_detectable(
        discounted_return, _return_reference, (undiscounted_return, return_without_last_reward)
    )
)


def _to_rollouts(states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> Rollouts:
    """Whole H-step episodes ``[H, N]`` as Rollouts (for the filter's enumerated trajectories)."""
    ended = np.zeros(states.shape, dtype=bool)
    ended[-1] = True
    return Rollouts(
        states=states,
        actions=actions,
        rewards=rewards,
        log_probs=np.zeros(states.shape),
        terminated=np.zeros(states.shape, dtype=bool),
        truncated=ended,
        alive=np.ones(states.shape, dtype=bool),
        final_states=states[-1],  # s_H: not read by reinforce_total_return
        seed_entropy=None,
        block_size=1,
    )


def score_function_gradient(
    example: tuple[Any, ...], states: np.ndarray, actions: np.ndarray, rewards: np.ndarray
) -> np.ndarray:
    """rlmath.estimators.reinforce_total_return: R(tau) sum_t score(s_t, a_t), ``[N, S, A]``."""
    mdp, pol = example
    return reinforce_total_return(_to_rollouts(states, actions, rewards), pol, gamma=mdp.gamma)


def _mutant_score_gradient(**variant: Any) -> EpisodeTerm:
    """R(tau) times a mutant trajectory score (trajectory_scores with ``variant``), ``[N, S, A]``."""

    def term(
        example: tuple[Any, ...], states: np.ndarray, actions: np.ndarray, rewards: np.ndarray
    ) -> np.ndarray:
        mdp, pol = example
        R = discounted_return(example, states, actions, rewards)
        scores = trajectory_scores(mdp, pol, states.T, actions.T, **variant)
        return R[:, None, None] * scores  # type: ignore[no-any-return]

    return term


TRAJECTORY_SCORE_MUTANTS = {
    "last-score-dropped": _mutant_score_gradient(last_offset=1),
    "next-state-score": _mutant_score_gradient(first=1),
    "policy-averaged-dynamics": _mutant_score_gradient(transition_term=True),
}


def _gradient_reference(example: tuple[Any, ...]) -> np.ndarray:
    return exact.policy_gradient(*example)


mc_score_examples = finite_horizon_mc.filter(
    mutants_detectable(
        score_function_gradient, _gradient_reference, tuple(TRAJECTORY_SCORE_MUTANTS.values())
    )
)


CLAIMS = (
    Claim(
        id="expected-return-trajectory-sum",
        title="The expected return is a sum over trajectories and equals the DP value",
        summary=(
            "J can be computed three ways that must agree: summing returns over all "
            "trajectories weighted by their probabilities, dynamic programming, or averaging "
            "sampled episodes."
        ),
        statement=Statement(
            first_step.start,
            first_step.conclusion,
            where=(
                r"\pi(a|s) = w_{s,a} / \textstyle\sum_b w_{s,b},\ P(s'|s,a) = p_{s,a,s'} / "
                r"\sum_y p_{s,a,y};\ J \text{ indexes the } (h-1)\text{-step continuations from } "
                r"s';\ \text{their probability is } c_{s',J} / \sum_j c_{s',j}, \text{ their return "
                r"} G_{s',J};\ "
                r"\text{so the left side is } \sum_{\tau \text{ from } s} R(\tau) p_\theta(\tau) "
                r"\text{ over } h \text{ steps};\ \text{the right side is the backup of } "
                r"W_{h-1}(s') = \mathbb E[G_{s',J}];\ W_0 = 0,\ \bar R = \rho_0^\top W_H = "
                r"\rho_0^\top V_0"
            ),
            symbol_names={nxt: "s'"},
        ),
        assumptions=(
            "Finite horizon H, R(tau) = sum_{t<H} gamma^t r(s_t, a_t), 0 <= gamma <= 1.",
            "Symbolic leg: induction on the number h of steps left, for any numbers of "
            "states, actions and continuations. Step ('first-step'): the h-step trajectory sum "
            "from s grouped by its first step is the Bellman backup of the (h-1)-step trajectory "
            "sums W_{h-1}. Base ('base-case'): for h = 1 the sum is the backup of W_0 = 0. "
            "Together they give W_h = V_{H-h} (backward induction) for every h, and the "
            "expected return is rho0^T W_H (linearity). The continuations from s' form a "
            "distribution by the same induction ('trajectory-probabilities': the h-step "
            "probabilities from s sum to 1 when the (h-1)-step ones do).",
            "Exact leg: every start state of MDPs with up to 3 states, 3 actions and horizon 1-4.",
            "Monte-Carlo leg: sampled returns of H-step episodes (H = 3, 4) of MDPs with 2-3 "
            "states and actions, 0.5 <= gamma <= 0.9.",
        ),
        references=(
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd "
            "ed., 2018, eq. (3.8) and Sec. 4.1.",
            "Puterman, M. L., *Markov Decision Processes*, 1994, Sec. 4.2.",
        ),
        symbolic=SymbolicLeg((first_step, base_case, trajectories_normalised)),
        exact=ExactLeg(
            finite_horizon,
            lhs=trajectory_sums,
            rtol=_return_rtol,
            symbols=(w, p, c, r, G, gamma, state, S_, A_, M_),
            arguments=_return_arguments,
            error_scale=_return_scale,
            description=(
                "sum over every H-step trajectory from each start state of R(tau) p(tau) "
                "(rlmath.exact.trajectories) vs the lambdified first-step backup of V_1 "
                "(the value with H - 1 steps left, rlmath.exact.finite_horizon_values), every "
                "start state at once"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            mc_return_examples,
            _episode_sampler(discounted_return),
            _return_reference,
            n_samples=N_EPISODES,
            n_examples=N_MC_EXAMPLES,
            description=(
                "mean of the sampled discounted return sum_t gamma^t r_t over H-step episodes "
                "vs backward induction (rlmath.exact.objective)"
            ),
        ),
        mutants=(
            Mutant(
                "undiscounted-dp",
                "the DP backup without gamma (the post's undiscounted sum) for a discounted return",
                symbolic=SymbolicMutation("first-step", UNDISCOUNTED),
                monte_carlo=_episode_sampler(undiscounted_return),
            ),
            Mutant(
                "last-reward-dropped",
                "backward induction one step short (rewards t = 0..H-2: an off-by-one horizon); "
                "not a conclusion of the induction step, so no symbolic variant",
                exact=_one_step_short,
                monte_carlo=_episode_sampler(return_without_last_reward),
            ),
        ),
    ),
    Claim(
        id="trajectory-score-dynamics-free",
        title="The trajectory score does not involve the dynamics",
        summary=(
            "grad log p(tau) is the sum of the policy's scores along the trajectory: the "
            "transition probabilities drop out, so policy gradients need no model of the "
            "environment."
        ),
        statement=Statement(
            dynamics_free.start,
            dynamics_free.conclusion,
            where=(
                r"\pi(\theta, t) = \pi_\theta(a_t|s_t),\ P_t = P(s_{t+1}|s_t,a_t),\ "
                r"\rho = \rho_0(s_0) \text{ along one trajectory}"
            ),
            symbol_names={theta: r"\theta", rho_s0: r"\rho"},
        ),
        assumptions=(
            "rho_0 and P do not depend on theta; every factor of p_theta(tau) is positive "
            "(tau has positive probability).",
            "Symbolic leg: general horizon H, pi_theta(a_t|s_t) an arbitrary positive "
            "differentiable function of one parameter coordinate theta; and, for the tabular "
            "softmax the numeric legs use, the sum of the scores in closed form (derivation "
            "'tabular-softmax', whose conclusion the exact leg lambdifies).",
            "Exact leg: tabular softmax, one trajectory of positive probability and one logit "
            "per example, MDPs with 2-3 states, 2-3 actions and horizon 2-3.",
            "Monte-Carlo leg: E[R(tau) sum_t score_t] with the policy-only score "
            "(rlmath.estimators.reinforce_total_return) over H-step episodes (H = 3, 4) of MDPs "
            "with 2-3 states and actions vs the exact gradient of the H-step objective: had the "
            "score needed dynamics terms, this estimator would be biased.",
        ),
        references=(
            "Williams, R. J., *Simple statistical gradient-following algorithms for "
            "connectionist reinforcement learning*, Machine Learning 8, 1992.",
            "Peters, J. and Schaal, S., *Reinforcement learning of motor skills with policy "
            "gradients*, Neural Networks 21, 2008, eq. (4)-(5).",
        ),
        symbolic=SymbolicLeg((dynamics_free, tabular_softmax)),
        exact=ExactLeg(
            trajectory_score_examples,
            lhs=full_log_likelihood_gradient,
            rtol=lambda ex: exact_rtol(1.0, 4 * ex[0].horizon),
            symbols=(logit, s_t, a_t, sigma, k_, m_, H),
            arguments=_score_arguments,
            derivation="tabular-softmax",
            error_scale=_score_scale,
            description=(
                "complex-step derivative of the full log p(tau) (with log rho0 and log P) in one "
                "logit theta[sigma, k] vs the lambdified tabular-softmax conclusion "
                "sum_t 1[s_t = sigma] (1[a_t = k] - pi(k|sigma)), one trajectory per example"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            mc_score_examples,
            _episode_sampler(score_function_gradient),
            _gradient_reference,
            n_samples=N_EPISODES,
            n_examples=N_MC_EXAMPLES,
            description=(
                "mean of R(tau) sum_t score(s_t, a_t) (reinforce_total_return, the policy-only "
                "score) over H-step episodes vs exact.policy_gradient of the finite-horizon MDP"
            ),
        ),
        mutants=(
            Mutant(
                "last-score-dropped",
                "sum of scores up to H-2, as many terms as transitions (off by one)",
                symbolic=SymbolicMutation("general-horizon", LAST_SCORE_DROPPED),
                exact=summed_policy_scores(last_offset=1),
                monte_carlo=_episode_sampler(TRAJECTORY_SCORE_MUTANTS["last-score-dropped"]),
            ),
            Mutant(
                "next-state-score",
                "the score of step t + 1 credited to step t (the first score lost)",
                symbolic=SymbolicMutation("general-horizon", NEXT_STATE_SCORE),
                exact=summed_policy_scores(first=1),
                monte_carlo=_episode_sampler(TRAJECTORY_SCORE_MUTANTS["next-state-score"]),
            ),
            Mutant(
                "policy-averaged-dynamics",
                "log P_pi(s'|s) = log sum_a pi(a|s) P(s'|s,a) kept as if the dynamics depended "
                "on theta (not expressible in the symbolic model, where P does not depend on "
                "theta)",
                exact=summed_policy_scores(transition_term=True),
                monte_carlo=_episode_sampler(TRAJECTORY_SCORE_MUTANTS["policy-averaged-dynamics"]),
            ),
        ),
    ),
)
