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

import itertools
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
    Step,
    SymbolicLeg,
    SymbolicMutation,
    monte_carlo_leg,
)
from rlmath.estimators import reinforce_total_return
from rlmath.sampling import Rollouts, rollouts
from rlmath.statistics import DEFAULT_FALSE_ALARM, sample_size
from rlmath.testing import mdps_and_policies, tabular_mdps
from rlmath.tolerances import exact_rtol

# ============================================================================ expected return
# A fully symbolic instance: 2 states, 2 actions, horizon 2. Every probability is a symbol
# (the second entry of each distribution is 1 minus the first, so each sums to 1 exactly),
# every reward a symbol.
gamma = sp.Symbol("gamma", nonnegative=True)
u = sp.symbols("pi0:2", positive=True)  # pi(0 | s)
v = sp.symbols("P0:4", positive=True)  # P(0 | s, a), index 2 s + a
rho_0 = sp.Symbol("rho_0", positive=True)
r = sp.IndexedBase("r", real=True)
STATES = ACTIONS = range(2)
policy = [[u[s], 1 - u[s]] for s in STATES]
transition = [[[v[2 * s + act], 1 - v[2 * s + act]] for act in ACTIONS] for s in STATES]
rho = [rho_0, 1 - rho_0]


def p_tau(s0: int, a0: int, s1: int, a1: int) -> sp.Expr:
    """$p_\\theta(\\tau) = \\rho_0(s_0)\\pi(a_0|s_0) P(s_1|s_0,a_0) \\pi(a_1|s_1)$."""
    return rho[s0] * policy[s0][a0] * transition[s0][a0][s1] * policy[s1][a1]


def every(*ranges: range):  # type: ignore[no-untyped-def]
    return itertools.product(*ranges)


FOUR = (STATES, ACTIONS, STATES, ACTIONS)
trajectory_sum = sum(
    (r[s0, a0] + gamma * r[s1, a1]) * p_tau(s0, a0, s1, a1) for s0, a0, s1, a1 in every(*FOUR)
)
split_by_reward = sum(
    r[s0, a0] * p_tau(s0, a0, s1, a1) for s0, a0, s1, a1 in every(*FOUR)
) + gamma * sum(r[s1, a1] * p_tau(s0, a0, s1, a1) for s0, a0, s1, a1 in every(*FOUR))
future_summed_out = sum(
    rho[s0] * policy[s0][a0] * r[s0, a0] for s0, a0 in every(STATES, ACTIONS)
) + gamma * sum(
    rho[s0]
    * policy[s0][a0]
    * sum(
        transition[s0][a0][s1] * sum(policy[s1][a1] * r[s1, a1] for a1 in ACTIONS) for s1 in STATES
    )
    for s0, a0 in every(STATES, ACTIONS)
)


def backup(next_values: list[sp.Expr], discount: sp.Expr = gamma) -> list[sp.Expr]:
    """One DP step: V_t(s) = sum_a pi(a|s) [r(s,a) + discount sum_s' P(s'|s,a) V_{t+1}(s')]."""
    return [
        sum(
            policy[s][act]
            * (
                r[s, act]
                + discount * sum(transition[s][act][s1] * next_values[s1] for s1 in STATES)
            )
            for act in ACTIONS
        )
        for s in STATES
    ]


V2 = [sp.Integer(0), sp.Integer(0)]  # V_H = 0
V1 = backup(V2)
V0 = backup(V1)


def rho_dot(values: list[sp.Expr]) -> sp.Expr:
    return sum(rho[s] * values[s] for s in STATES)


last_step_value = sum(
    rho[s0]
    * policy[s0][a0]
    * (r[s0, a0] + gamma * sum(transition[s0][a0][s1] * V1[s1] for s1 in STATES))
    for s0, a0 in every(STATES, ACTIONS)
)
trajectory_sum_is_dp = Derivation(
    "horizon-2-instance",
    (
        Step(trajectory_sum, "definition: R_bar = sum_tau R(tau) p_theta(tau), 16 trajectories"),
        Step(split_by_reward, "linearity: R(tau) = r_0 + gamma r_1"),
        Step(
            future_summed_out,
            "sum out what follows each reward: sum_a1 pi(a1|s1) = 1, sum_s1 P(s1|s0,a0) = 1",
        ),
        Step(last_step_value, "V_1(s) = sum_a pi(a|s) r(s, a) (backward induction, t = H - 1)"),
        Step(rho_dot(V0), "V_0 = Bellman backup of V_1 (t = 0); R_bar = rho_0^T V_0"),
    ),
    statement=r"\sum_\tau R(\tau) p_\theta(\tau) = \rho_0^\top V_0",
)
UNDISCOUNTED = rho_dot(backup(backup(V2, 1), 1))
LAST_REWARD_DROPPED = rho_dot(backup(V2))  # one backup: a horizon of H - 1


# --- exact leg: every trajectory (rlmath.exact.trajectories) vs backward induction
# (rlmath.exact.objective); both for the same finite-horizon MDP.
finite_horizon = mdps_and_policies(
    tabular_mdps(max_states=3, max_actions=3, horizon=st.integers(1, 4))
)


def trajectory_expected_return(example: tuple) -> float:  # type: ignore[type-arg]
    mdp, pol = example
    return exact.trajectories(mdp, pol, mdp.horizon).expected_return()


def _with(
    mdp: TabularMDP, *, gamma_: float | None = None, horizon: int | None = None
) -> TabularMDP:
    return TabularMDP(
        mdp.dense_transitions(),
        mdp.r,
        mdp.rho0,
        mdp.gamma if gamma_ is None else gamma_,
        mdp.horizon if horizon is None else horizon,
    )


def _return_rtol(example: tuple) -> float:  # type: ignore[type-arg]
    mdp, pol = example
    paths = exact.trajectories(mdp, pol, mdp.horizon)
    magnitude = float(paths.probabilities @ np.abs(paths.returns))
    value = abs(paths.expected_return())
    condition = magnitude / value if value > 0 else 1.0
    return exact_rtol(condition * mdp.horizon, len(paths.probabilities))


def _dropped_last_reward(example: tuple) -> float:  # type: ignore[type-arg]
    mdp, pol = example
    if mdp.horizon == 1:
        return 0.0
    return exact.objective(_with(mdp, horizon=mdp.horizon - 1), pol)


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
NEXT_STATE_SCORE = sp.Sum(sp.Derivative(sp.log(pi_t(theta, t + 1)), theta), (t, 0, H - 1))

# --- exact leg: at least 2 states and actions and 2 steps, so that there are transitions whose
# probability depends on the action: with one state, one action or one step, the mutant that
# differentiates log P_pi(s'|s) coincides with the claim, and Hypothesis's simplest examples
# (which it tries first) are exactly those.
trajectory_score_examples = mdps_and_policies(
    tabular_mdps(
        min_states=2, max_states=3, min_actions=2, max_actions=3, horizon=st.integers(2, 3)
    )
)

# lhs differentiates the *whole* log-likelihood, log rho0 + sum log pi +
# sum log P, by complex-step differentiation (Squire and Trapp, SIAM Review 40, 1998: exact to
# rounding, no subtraction) in every logit; rhs sums SoftmaxPolicy.score over the steps.
STEP = 1e-20


def _log_likelihood(mdp: TabularMDP, logits: np.ndarray, paths) -> np.ndarray:  # type: ignore[no-untyped-def]
    """log p_theta(tau) for every enumerated trajectory, complex-safe in the logits."""
    log_pi = logits - logits.real.max(axis=1, keepdims=True)
    log_pi = log_pi - np.log(np.exp(log_pi).sum(axis=1, keepdims=True))
    P = mdp.dense_transitions()
    s, act = paths.states, paths.actions
    out = np.log(mdp.rho0[s[:, 0]]) + log_pi[s, act].sum(axis=1)
    return out + np.log(P[s[:, :-1], act[:, :-1], s[:, 1:]]).sum(axis=1)  # type: ignore[no-any-return]


def full_log_likelihood_gradient(example: tuple) -> np.ndarray:  # type: ignore[type-arg]
    """d log p_theta(tau) / d theta[s, a] for every trajectory: ``[N, S, A]``."""
    mdp, pol = example
    paths = exact.trajectories(mdp, pol, mdp.horizon)
    S, A = pol.theta.shape
    out = np.empty((len(paths.probabilities), S, A))
    for s, act in itertools.product(range(S), range(A)):
        shifted = pol.theta.astype(complex)
        shifted[s, act] += 1j * STEP
        out[:, s, act] = _log_likelihood(mdp, shifted, paths).imag / STEP
    return out


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
        P, p = mdp.dense_transitions(), pol.probabilities()
        for time in range(horizon - 1):
            s, s1 = states[:, time], states[:, time + 1]
            p_next = np.einsum("na,na->n", p[s], P[s, :, s1])  # P_pi(s1 | s)
            # d P_pi(s1|s) / d theta[s, b] = pi(b|s) (P(s1|s,b) - P_pi(s1|s))
            row = p[s] * (P[s, :, s1] - p_next[:, None]) / p_next[:, None]
            total[np.arange(len(s)), s] += row
    return total


def summed_policy_scores(first: int = 0, last_offset: int = 0, transition_term: bool = False):  # type: ignore[no-untyped-def]
    """:func:`trajectory_scores` of every enumerated trajectory of the example."""

    def scores(example: tuple) -> np.ndarray:  # type: ignore[type-arg]
        mdp, pol = example
        paths = exact.trajectories(mdp, pol, mdp.horizon)
        return trajectory_scores(
            mdp,
            pol,
            paths.states,
            paths.actions,
            first=first,
            last_offset=last_offset,
            transition_term=transition_term,
        )

    return scores


def _score_rtol(example: tuple) -> float:  # type: ignore[type-arg]
    mdp, _ = example
    # each of H scores has entries of size <= 1; the complex step is exact to rounding
    return exact_rtol(1.0, 4 * mdp.horizon)


# ============================================================================ Monte-Carlo legs
# H-step episodes of a finite-horizon MDP (rlmath.sampling.rollouts), 2-3 states and actions,
# horizon 3-4, gamma in [0.5, 0.9] (so that gamma matters), every probability of rho0 and P at
# least 0.1 and logits in [-1, 1] (every state is visited at t = 0 with probability >= 0.1).
# Each mutant gets a sampled counterpart: an estimator whose mean is the mutant's value. The
# filter keeps examples in which every mutant shifts some component by at least
# MIN_STANDARDISED_EFFECT of its per-episode sd under the mutant (and the correct estimator's
# components all vary, sd >= MIN_SD); means and sds are exact, over every trajectory.
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
# Power >= 0.99 against every mutant on every example: each shifts some component by >= 0.03
# of its sd; with up to 3 x 3 components (the gradient), 2 examples and false alarm 1e-6,
# sample_size(0.03, 1) = 66,890 episodes; the return is one component, for which the same n
# has more power than needed.
N_EPISODES = sample_size(
    MIN_STANDARDISED_EFFECT, 1.0, false_alarm=DEFAULT_FALSE_ALARM / N_MC_EXAMPLES, n_components=9
)

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


def detectable(
    term: EpisodeTerm, reference: Callable[[Any], Any], mutants: tuple[EpisodeTerm, ...]
) -> Callable[[tuple[Any, ...]], bool]:
    """The example filter: the term's components vary, every mutant is visibly shifted."""

    def moments(example: tuple[Any, ...], function: EpisodeTerm) -> tuple[np.ndarray, np.ndarray]:
        mdp, pol = example
        paths = exact.trajectories(mdp, pol, mdp.horizon)
        states, actions = paths.states.T, paths.actions.T
        values = function(example, states, actions, mdp.r[states, actions])
        mean = np.tensordot(paths.probabilities, values, axes=1)
        sd = np.sqrt(np.tensordot(paths.probabilities, (values - mean) ** 2, axes=1))
        return mean, sd

    def keep(example: tuple[Any, ...]) -> bool:
        if np.min(moments(example, term)[1]) < MIN_SD:
            return False
        exact_value = reference(example)
        for mutant in mutants:
            mean, sd = moments(example, mutant)
            if (
                np.max(np.abs(mean - exact_value) / np.maximum(sd, MIN_SD))
                < MIN_STANDARDISED_EFFECT
            ):
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
    detectable(
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
    detectable(
        score_function_gradient, _gradient_reference, tuple(TRAJECTORY_SCORE_MUTANTS.values())
    )
)


CLAIMS = (
    Claim(
        id="expected-return-trajectory-sum",
        title="The expected return is a sum over trajectories and equals the DP value",
        statement=(
            r"\bar R(\theta) = \sum_\tau R(\tau)\,p_\theta(\tau) = \rho_0^\top V_0,\quad "
            r"p_\theta(\tau) = \rho_0(s_0)\prod_t \pi_\theta(a_t|s_t)\,P(s_{t+1}|s_t,a_t)"
        ),
        assumptions=(
            "Finite horizon H, R(tau) = sum_{t<H} gamma^t r(s_t, a_t), 0 <= gamma <= 1.",
            "Symbolic leg: a fully symbolic instance with 2 states, 2 actions and horizon 2 "
            "(every probability and reward a symbol); the general case is the same grouping "
            "applied once per step (induction on H), checked by the exact leg for up to 3 "
            "states, 3 actions and horizon 4.",
            "Monte-Carlo leg: sampled returns of H-step episodes (H = 3, 4) of MDPs with 2-3 "
            "states and actions, 0.5 <= gamma <= 0.9.",
        ),
        references=(
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd "
            "ed., 2018, eq. (3.8) and Sec. 4.1.",
            "Puterman, M. L., *Markov Decision Processes*, 1994, Sec. 4.2.",
        ),
        symbolic=SymbolicLeg((trajectory_sum_is_dp,)),
        exact=ExactLeg(
            finite_horizon,
            lhs=trajectory_expected_return,
            rhs=lambda ex: exact.objective(ex[0], ex[1]),
            rtol=_return_rtol,
            description=(
                "sum over every trajectory of R(tau) p(tau) (rlmath.exact.trajectories) vs "
                "backward induction rho0^T V_0 (rlmath.exact.objective)"
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
                symbolic=SymbolicMutation("horizon-2-instance", UNDISCOUNTED),
                exact=lambda ex: exact.objective(_with(ex[0], gamma_=1.0), ex[1]),
                monte_carlo=_episode_sampler(undiscounted_return),
            ),
            Mutant(
                "last-reward-dropped",
                "backward induction one step short (rewards t = 0..H-2: an off-by-one horizon)",
                symbolic=SymbolicMutation("horizon-2-instance", LAST_REWARD_DROPPED),
                exact=_dropped_last_reward,
                monte_carlo=_episode_sampler(return_without_last_reward),
            ),
        ),
    ),
    Claim(
        id="trajectory-score-dynamics-free",
        title="The trajectory score does not involve the dynamics",
        statement=r"\nabla_\theta \log p_\theta(\tau) = \sum_{t=0}^{H-1} \nabla_\theta \log\pi_\theta(a_t\mid s_t)",
        assumptions=(
            "rho_0 and P do not depend on theta; every factor of p_theta(tau) is positive "
            "(tau has positive probability).",
            "Symbolic leg: general horizon H, pi_theta(a_t|s_t) an arbitrary positive "
            "differentiable function of one parameter coordinate theta.",
            "Exact leg: tabular softmax, every trajectory of MDPs with 2-3 states, 2-3 "
            "actions and horizon 2-3.",
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
        symbolic=SymbolicLeg((dynamics_free,)),
        exact=ExactLeg(
            trajectory_score_examples,
            lhs=full_log_likelihood_gradient,
            rhs=summed_policy_scores(),
            rtol=_score_rtol,
            description=(
                "complex-step gradient of the full log p(tau) (with log rho0 and log P) vs "
                "sum_t SoftmaxPolicy.score(s_t, a_t), for every trajectory"
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
                "on theta",
                exact=summed_policy_scores(transition_term=True),
                monte_carlo=_episode_sampler(TRAJECTORY_SCORE_MUTANTS["policy-averaged-dynamics"]),
            ),
        ),
    ),
)
