r"""Advantage estimation: the TD error estimates the advantage, and GAE's closed form.

Main statements. For a policy $\pi$ with values $V^\pi$, $Q^\pi$ and advantage
$A^\pi = Q^\pi - V^\pi$, and the TD error $\delta^V = r(s,a) + \gamma V(s') - V(s)$,

$$ \mathbb E_{s' \sim P(\cdot|s,a)}\!\left[r(s,a) + \gamma V^\pi(s') - V^\pi(s)\right] = A^\pi(s,a). $$

For one episode of length $T$ with rewards $r_0..r_{T-1}$, values $V_0..V_T$ ($V_T$ the
bootstrap value of the state after the last step) and $\delta_t = r_t + \gamma V_{t+1} - V_t$,
the GAE recursion $\hat A_t = \delta_t + \gamma\lambda \hat A_{t+1}$, $\hat A_T = 0$, has the
closed form

$$ \hat A_t = \sum_{l=0}^{T-t-1} (\gamma\lambda)^l \delta_{t+l}, \qquad
   \hat A_t\big|_{\lambda=0} = \delta_t, \qquad
   \hat A_t\big|_{\lambda=1} = \sum_{l=0}^{T-t-1} \gamma^l r_{t+l} + \gamma^{T-t} V_T - V_t. $$

Conventions. Time starts at $t = 0$; $r_t$ is the reward for $a_t$ taken in $s_t$. The
episode has no terminal state inside it (no "done" flags); $V_T$ bootstraps the truncated
tail, so for a terminated episode pass $V_T = 0$. The TD error's expectation is over the next
state only ($s, a$ fixed).

Proof sketch. TD error: linearity of the expectation over $s'$, $\sum_{s'} P(s'|s,a) = 1$, and
the Bellman equation $Q^\pi(s,a) = r(s,a) + \gamma \mathbb E_{s'} V^\pi(s')$. GAE: the closed
form satisfies the recursion (split off the $l = 0$ term, shift the index, factor
$\gamma\lambda$) and the terminal condition (an empty sum), and the recursion has one solution
(backward induction); $\lambda = 0$ keeps the $l = 0$ term; $\lambda = 1$ telescopes the value
terms to $\gamma^{T-t} V_T - V_t$.

References. Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd
ed., 2018, eq. (6.5) (TD error) and Sec. 12.1 (lambda-returns); Schulman, J., Moritz, P.,
Levine, S., Jordan, M., Abbeel, P., "High-Dimensional Continuous Control Using Generalized
Advantage Estimation", ICLR 2016, eq. (10) (E[delta^{V^pi}] = A^pi), eq. (16) (GAE closed
form), eqs. (17)-(18) (lambda = 0 and lambda = 1).
"""

from __future__ import annotations

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
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    detectable,
    exact_moments,
    monte_carlo_leg,
    one_slot_cache,
)
from rlmath.reference import generalized_advantage_estimation
from rlmath.sampling import alias_sample, transition_alias_table
from rlmath.symbolic import IndexSum
from rlmath.testing import mdps_and_policies, softmax_policies, tabular_mdps
from rlmath.tolerances import discounted_condition_number, exact_rtol

gamma = sp.Symbol("gamma", nonnegative=True)
lam = sp.Symbol("lambda", nonnegative=True)

# ============================================================================ TD error
# One state-action pair (s, a) of an MDP with n states and N actions; P(j|s,a) = w_j / sum_y w_y
# (any distribution with positive entries; zero entries are the limit w_j -> 0). The MDP is
# parametrised by Q = Q^pi instead of by its rewards: V^pi(x) = sum_i pi(i|x) Q^pi(x, i), and
# the Bellman equation Q^pi(s,a) = r(s,a) + gamma E_{s'} V^pi(s') solved for r gives the reward
# (every reward table arises this way from exactly one Q^pi, since I - gamma P Pi is
# invertible for gamma < 1). So "V = V^pi" and the Bellman step are part of the expressions,
# and the conclusion holds for V^pi only: with another V the TD error's mean is another thing.
n = sp.Symbol("n", integer=True, positive=True)  # states
N = sp.Symbol("N", integer=True, positive=True)  # actions
j, jj, y, i = sp.symbols("j l y i", integer=True)  # jj prints as l
s = sp.Symbol("s", integer=True, nonnegative=True)
a = sp.Symbol("a", integer=True, nonnegative=True)
w = sp.IndexedBase("w", positive=True)
Q = sp.IndexedBase("Q", real=True)  # Q^pi
pi = sp.IndexedBase("pi", nonnegative=True)  # pi(i | x)
U = sp.IndexedBase("U", real=True)  # an arbitrary value table (mutant)
r_sa = sp.Symbol("r_{s,a}", real=True)


def P(next_state: sp.Expr) -> sp.Expr:
    """$P(\\text{next\\_state} \\mid s, a)$."""
    return w[next_state] / IndexSum(w[y], (y, 0, n - 1))


def V(state: sp.Expr) -> sp.Sum:
    r"""$V^\pi(x) = \sum_i \pi(i|x)\, Q^\pi(x, i)$."""
    return IndexSum(pi[state, i] * Q[state, i], (i, 0, N - 1))


def E_next(term: sp.Expr, index: sp.Symbol = j) -> sp.Sum:
    r"""$\mathbb E_{s' \sim P(\cdot|s,a)}[\text{term}]$ as a sum over next states."""
    return IndexSum(P(index) * term, (index, 0, n - 1))


bellman_reward = Q[s, a] - gamma * E_next(V(jj), jj)  # r(s, a) by the Bellman equation of Q^pi
td_expectation = Derivation(
    "td-expectation",
    (
        Step(
            sp.Subs(E_next(r_sa + gamma * V(j) - V(s)), r_sa, bellman_reward),
            "the TD error of V^pi averaged over s' ~ P(.|s,a), with r(s,a) from the Bellman "
            "equation Q^pi(s,a) = r(s,a) + gamma E_{s'} V^pi(s')",
        ),
        Step(
            bellman_reward + gamma * E_next(V(j)) - V(s),
            "linearity; the next-state probabilities sum to 1 (r(s,a), V^pi(s) do not depend "
            "on s')",
        ),
        Step(
            Q[s, a] - V(s),
            "the Bellman equation: the bootstrap gamma E_{s'} V^pi(s') is the one in Q^pi; "
            "A^pi(s,a) = Q^pi(s,a) - V^pi(s)",
        ),
    ),
    statement=r"\mathbb E_{s'}[r + \gamma V^\pi(s') - V^\pi(s)] = Q^\pi(s,a) - V^\pi(s)",
)
ANOTHER_VALUE = bellman_reward + gamma * E_next(U[j]) - U[s]  # E[delta^U], U not V^pi
MISSING_DISCOUNT = bellman_reward + E_next(V(j)) - V(s)
TD_TARGET = bellman_reward + gamma * E_next(V(j))  # E[r + gamma V(s')] = Q^pi, no baseline


# --- exact leg: lhs is the expected TD error by its definition, r + gamma P V - V(s) with
# V = exact.value (the state-value solve (I - gamma P_pi) V = r_pi); rhs the lambdified
# conclusion Q(s,a) - sum_i pi(i|s) Q(s,i) with Q from the state-action Bellman system
# (I - gamma P Pi) Q = r, a different linear system. Every pair (s, a) at once: s and a are
# index arrays, w = P(.|s,a) is passed as [S, S*A] (w[j] is P(j|s,a) over the pairs).
@one_slot_cache
def action_values(example) -> np.ndarray:
    r"""$Q^\pi$ from its own Bellman system $(I - \gamma P \Pi)\, Q = r$ on state-action pairs
    ($P$: ``[S*A, S]``, $\Pi$: ``[S, S*A]``), not from the state values."""
    mdp, policy, _ = example
    S, A = mdp.n_states, mdp.n_actions
    pi_table = policy.probabilities()
    Pi = np.zeros((S, S * A))
    for state in range(S):
        Pi[state, state * A : (state + 1) * A] = pi_table[state]
    P_sa = mdp.dense_transitions().reshape(S * A, S)
    system = np.eye(S * A) - mdp.gamma * P_sa @ Pi
    return np.linalg.solve(system, mdp.r.reshape(S * A)).reshape(S, A)  # type: ignore[no-any-return]


def advantage_by_action_values(example) -> np.ndarray:
    r"""$A^\pi = Q^\pi - \sum_a \pi Q^\pi$, ``[S, A]`` (the Monte-Carlo reference)."""
    Q_table = action_values(example)
    return Q_table - (example[1].probabilities() * Q_table).sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _values(example) -> np.ndarray:
    mdp, policy, _ = example
    return exact.value(mdp, policy)


def _other_values(example) -> np.ndarray:
    mdp, _, other = example
    return exact.value(mdp, other)


def expected_td_error(example) -> np.ndarray:
    """r(s,a) + gamma sum_s' P(s'|s,a) V^pi(s') - V^pi(s) for every pair, ``[S*A]``."""
    mdp = example[0]
    values = _values(example)
    return (mdp.r + mdp.gamma * (mdp.dense_transitions() @ values) - values[:, None]).ravel()  # type: ignore[no-any-return]


def _td_arguments(example) -> tuple:
    mdp, policy, _ = example
    S, A = mdp.n_states, mdp.n_actions
    return (
        action_values(example),
        policy.probabilities(),
        mdp.dense_transitions().reshape(S * A, S).T,
        _other_values(example),
        mdp.gamma,
        np.repeat(np.arange(S), A),
        np.tile(np.arange(A), S),
        S,
        A,
    )


def _td_error_bound(mdp) -> float:
    """Rounding bound of either side: exact_rtol(kappa, S A) times the value scale R/(1-gamma)."""
    return exact_rtol(
        discounted_condition_number(mdp.gamma), mdp.n_states * mdp.n_actions
    ) * _td_scale_of(mdp)


def _td_scale_of(mdp) -> float:
    r"""$\max|r| / (1 - \gamma)$, the size of the values both sides subtract, floored at the
    smallest normal float (below it rounding is absolute, 2^-1075 per operation)."""
    return max(float(np.abs(mdp.r).max(initial=0.0)) / (1.0 - mdp.gamma), TINY)


TINY = float(np.finfo(np.float64).tiny)
td_examples = mdps_and_policies(tabular_mdps(max_states=4, max_actions=3)).flatmap(
    lambda pair: softmax_policies(pair[0].n_states, pair[0].n_actions).map(
        lambda other: (*pair, other)
    )
)


# ----------------------------------------------------------------------------- TD error Monte Carlo
# Every pair (s, a) at once: n independent next states s' ~ P(.|s, a) per pair, and the TD error
# r(s, a) + gamma V(s') - V(s) with V = exact.value of the policy: [n, S, A] terms whose mean
# must be A^pi (from the independent state-action system above).
MC_FALSE_ALARM = 1e-6  # per leg (monte_carlo_leg's default), shared by its examples
MC_EXAMPLES = 2


@dataclass(frozen=True)
class TDErrorEstimator:
    r"""Per-sample terms $r(s,a) + \gamma V(s') - V(s)$, ``[S, A]``, with $s' \sim P(\cdot|s,a)$.

    Attributes:
        values: example -> ``[S]``, the $V$ in the TD error.
        discount: keep the $\gamma$ on $V(s')$ (a mutant drops it).
        baseline: subtract $V(s)$ (a mutant keeps only the TD target).
    """

    values: Callable
    discount: bool = True
    baseline: bool = True

    def _parts(self, example) -> tuple[np.ndarray, float, np.ndarray]:
        mdp = example[0]
        V = self.values(example)
        offset = mdp.r - (V[:, None] if self.baseline else 0.0)  # r(s, a) - V(s), [S, A]
        return offset, (mdp.gamma if self.discount else 1.0), V

    def __call__(self, example, rng: np.random.Generator, n: int) -> np.ndarray:
        """``[n, S, A]`` terms (the ``sample`` of ``monte_carlo_leg``)."""
        mdp = example[0]
        offset, discount, V = self._parts(example)
        pairs = np.tile(np.arange(mdp.n_states * mdp.n_actions), n)
        next_states = alias_sample(transition_alias_table(mdp), pairs, rng.random(pairs.size))
        return offset + discount * V[next_states].reshape(n, mdp.n_states, mdp.n_actions)

    def moments(self, example) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean and standard deviation of one term, ``[S, A]`` each: for each pair,
        rlmath.claims.exact_moments over its next states."""
        offset, discount, V = self._parts(example)
        P = example[0].dense_transitions()
        mean, sd = np.empty(offset.shape), np.empty(offset.shape)
        for pair in np.ndindex(offset.shape):
            mean[pair], sd[pair] = exact_moments(P[pair], offset[pair] + discount * V)
        return mean, sd


td_estimator = TDErrorEstimator(_values)
# mutants: another policy's values, the discount dropped, the baseline V(s) dropped
other_values_estimator = TDErrorEstimator(_other_values)
undiscounted_td_estimator = TDErrorEstimator(_values, discount=False)
td_target_estimator = TDErrorEstimator(_values, baseline=False)

# 20000 next-state draws per pair. The shift of each mutant and the per-sample sd
# gamma sd_{s'}(V(s')) are exact (TDErrorEstimator.moments); rlmath.claims.detectable at
# alpha = 1e-6 / 2 with S A components says whether this n has power 0.99. Over 165 examples of the domain below with
# non-constant rewards the medians are 3 (V of another policy), 28 (missing discount) and 2 (TD
# target), the maxima 1100 and 6 for the last two; 7% of the examples have V^{pi'} too close to
# V^pi for any affordable n. `_td_detectable` keeps the examples where every mutant has power
# >= 0.99 at this n (every next state has probability >= 0.05, so all are drawn).
N_NEXT_STATES = 20_000


def _td_detectable(example) -> bool:
    """Rounding of either side below 1/100 of the standard error of every component (it moves
    no z by more than 0.01; no zero standard error either), and power >= DEFAULT_POWER against
    every mutant."""
    _, sd = td_estimator.moments(example)
    if not (sd / np.sqrt(N_NEXT_STATES) > 100.0 * _td_error_bound(example[0])).all():
        return False
    target = advantage_by_action_values(example)
    for mutant in (other_values_estimator, undiscounted_td_estimator, td_target_estimator):
        mean, sd = mutant.moments(example)
        if not detectable(
            mean - target, sd, N_NEXT_STATES, false_alarm=MC_FALSE_ALARM / MC_EXAMPLES
        ):
            return False
    return True


td_mc_examples = (
    mdps_and_policies(
        tabular_mdps(
            min_states=2,
            max_states=4,
            min_actions=2,
            max_actions=3,
            gamma=st.floats(0.3, 0.9),
            allow_zeros=False,
            min_probability=0.05,
        ),
        max_abs_logit=3.0,
    )
    .flatmap(
        lambda pair: softmax_policies(pair[0].n_states, pair[0].n_actions, max_abs_logit=3.0).map(
            lambda other: (*pair, other)
        )
    )
    .filter(_td_detectable)
)

# ============================================================================ GAE
# Time t and K = T - t - 1 >= 0 (so t < T): sums run over l = 0..K and T = t + K + 1. The
# recursion A_t = delta_t + gamma lambda A_{t+1} with A_T = 0 has one solution (backward
# induction from T); the closed form C(t) = sum_{l=0}^{T-t-1} (gamma lambda)^l delta_{t+l} is
# it: C(T) is the empty sum (l = 0..-1), 0, and the derivation 'closed-form' shows that the
# recursion applied to C(t + 1) gives C(t), for every K >= 0 (at K = 0, C(t + 1) = C(T) = 0).
t = sp.Symbol("t", integer=True, nonnegative=True)
K = sp.Symbol("K", integer=True, nonnegative=True)
T = t + K + 1
lag = sp.Symbol("l", integer=True)
delta = sp.IndexedBase("delta", real=True)
r = sp.IndexedBase("r", real=True)
v = sp.IndexedBase("V", real=True)  # V_0..V_T along the episode


def gae(time: sp.Expr, decay: sp.Expr = gamma * lam) -> sp.Sum:
    r"""Closed form $\sum_{l=0}^{T-\text{time}-1} \text{decay}^l \delta_{\text{time}+l}$."""
    return sp.Sum(decay**lag * delta[time + lag], (lag, 0, T - time - 1))


def term(index: sp.Expr, decay: sp.Expr = gamma * lam) -> sp.Expr:
    return decay**index * delta[t + index]


closed_form = Derivation(
    "closed-form",
    (
        Step(
            delta[t] + gamma * lam * gae(t + 1),
            "the recursion A_t = delta_t + gamma lambda A_{t+1}, with A_{t+1} in closed form",
        ),
        Step(
            delta[t] + sp.Sum(gamma * lam * term(lag).subs(t, t + 1), (lag, 0, K - 1)),
            "move gamma lambda into the sum",
        ),
        Step(delta[t] + sp.Sum(term(lag + 1), (lag, 0, K - 1)), "(gamma lambda)^(l+1)"),
        Step(delta[t] + sp.Sum(term(lag), (lag, 1, K)), "shift the index l -> l - 1"),
        Step(
            sp.Sum(term(lag), (lag, 0, 0)) + sp.Sum(term(lag), (lag, 1, K)),
            "delta_t is the l = 0 term ((gamma lambda)^0 = 1)",
        ),
        Step(gae(t), "merge the ranges: the closed form at time t"),
    ),
    statement=r"\delta_t + \gamma\lambda \hat A_{t+1} = \sum_{l=0}^{T-t-1}(\gamma\lambda)^l\delta_{t+l}",
)

lambda_zero = Derivation(
    "lambda-zero",
    (
        Step(gae(t, gamma * 0), "closed form with lambda = 0"),
        Step(
            sp.Sum(term(lag, 0), (lag, 0, 0)) + sp.Sum(term(lag, 0), (lag, 1, K)),
            "split off the l = 0 term",
        ),
        Step(delta[t] + sp.Sum(term(lag, 0), (lag, 1, K)), "0^0 = 1"),
        Step(delta[t], "0^l = 0 for l >= 1"),
    ),
    statement=r"\hat A_t\big|_{\lambda=0} = \delta_t",
)

one = [
    sp.Sum(gamma**lag * r[t + lag], (lag, 0, K)),  # discounted return-to-go (without bootstrap)
    sp.Sum(gamma**lag * v[t + lag], (lag, 1, K)),  # the value terms that cancel
]
lambda_one = Derivation(
    "lambda-one",
    (
        Step(
            one[0]
            + sp.Sum(gamma ** (lag + 1) * v[t + lag + 1], (lag, 0, K))
            - sp.Sum(gamma**lag * v[t + lag], (lag, 0, K)),
            "closed form with lambda = 1 and delta_{t+l} = r_{t+l} + gamma V_{t+l+1} - V_{t+l}, "
            "split into three sums by linearity",
        ),
        Step(
            one[0]
            + sp.Sum(gamma**lag * v[t + lag], (lag, 1, K + 1))
            - sp.Sum(gamma**lag * v[t + lag], (lag, 0, K)),
            "shift the index of the middle sum, l -> l - 1",
        ),
        Step(
            one[0]
            + one[1]
            + sp.Sum(gamma**lag * v[t + lag], (lag, K + 1, K + 1))
            - sp.Sum(gamma**lag * v[t + lag], (lag, 0, 0))
            - one[1],
            "split off l = K + 1 from the middle sum and l = 0 from the last",
        ),
        Step(one[0] + gamma ** (T - t) * v[T] - v[t], "the sums over 1..K cancel (telescoping)"),
    ),
    statement=r"\hat A_t\big|_{\lambda=1} = \sum_{l=0}^{T-t-1}\gamma^l r_{t+l} + \gamma^{T-t}V_T - V_t",
)
GAMMA_WITHOUT_LAMBDA = gae(t, gamma)  # A_t = delta_t + gamma A_{t+1}
OFF_BY_ONE = sp.Sum((gamma * lam) ** lag * delta[t + lag + 1], (lag, 0, K - 1))  # = A_{t+1}
NO_BOOTSTRAP = one[0] - v[t]


# ----------------------------------------------------------------------------- GAE exact leg
# lhs: rlmath.reference.generalized_advantage_estimation (a backward discounted cumulative sum
# with termination/truncation flags, here none: one episode of T steps bootstrapped from V_T)
# at time t; rhs: the lambdified closed form with delta_i = r_i + gamma V_{i+1} - V_i.
_finite = st.floats(-10.0, 10.0, allow_nan=False, allow_subnormal=False)
gae_examples = st.integers(1, 8).flatmap(
    lambda horizon: st.tuples(
        st.lists(_finite, min_size=horizon, max_size=horizon).map(np.array),
        st.lists(_finite, min_size=horizon + 1, max_size=horizon + 1).map(np.array),
        st.floats(0.0, 1.0),
        st.floats(0.0, 1.0),
        st.integers(0, horizon - 1),
    )
)


def reference_gae(example) -> float:
    """rlmath.reference.generalized_advantage_estimation at time t, no terminations."""
    rewards, values, g, lmb, time = example
    flags = np.zeros(len(rewards), dtype=bool)
    advantages = generalized_advantage_estimation(
        rewards,
        values[:-1],
        flags,
        flags,
        np.zeros(len(rewards)),
        values[-1],
        discount=g,
        lambda_=lmb,
    )
    return float(advantages[time])


def _gae_arguments(example) -> tuple:
    rewards, values, g, lmb, time = example
    deltas = rewards + g * values[1:] - values[:-1]
    return deltas, g, lmb, time, len(rewards) - time - 1


def _gae_scale(example) -> float:
    r"""$\sum_{l} (\gamma\lambda)^l (|r_{t+l}| + \gamma |V_{t+l+1}| + |V_{t+l}|)$: the terms
    both sides add (each $\delta$ is three), floored at the smallest normal float (``TINY``;
    below it rounding is absolute, e.g. when $\gamma\lambda$ underflows)."""
    rewards, values, g, lmb, time = example
    sizes = np.abs(rewards) + g * np.abs(values[1:]) + np.abs(values[:-1])
    powers = (g * lmb) ** np.arange(len(rewards) - time)
    return max(float(powers @ sizes[time:]), TINY)


CLAIMS = (
    Claim(
        id="td-error-is-advantage",
        title="The expected TD error of V^pi is the advantage",
        statement=Statement(
            td_expectation.start,
            td_expectation.conclusion,
            where=(
                r"P(j|s,a) = w_j / \textstyle\sum_y w_y;\ V^\pi(x) = \sum_i \pi_{x,i} Q_{x,i};"
                r"\ \text{the right side is } A^\pi(s,a) = Q^\pi(s,a) - V^\pi(s)"
            ),
            symbol_names={pi: r"\pi", r_sa: r"r(s,a)"},
        ),
        assumptions=(
            "Finitely many states n and actions N, any numbers of them (general n, N in the "
            "derivation).",
            "Transition probabilities written as w_j / sum_y w_y with w_j > 0; distributions with "
            "zeros are limits of these, and the exact leg includes them.",
            "The MDP is parametrised by Q^pi: V^pi(x) = sum_i pi(i|x) Q^pi(x, i), and the reward "
            "is r(s,a) = Q^pi(s,a) - gamma E_{s'} V^pi(s') (the Bellman equation); every reward "
            "table arises from one Q^pi. The V in the TD error is V^pi, of the same policy whose "
            "advantage is taken: for another V the mean is r + gamma E V(s') - V(s), which is "
            "not A^pi (mutant value-not-of-pi).",
            "Infinite horizon, 0 <= gamma < 1, in the numeric legs.",
        ),
        references=(
            "Schulman, J. et al., *High-Dimensional Continuous Control Using Generalized "
            "Advantage Estimation*, ICLR 2016, eq. (10).",
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed., "
            "2018, eq. (6.5).",
        ),
        symbolic=SymbolicLeg((td_expectation,)),
        exact=ExactLeg(
            td_examples,
            lhs=expected_td_error,
            rtol=lambda ex: exact_rtol(
                discounted_condition_number(ex[0].gamma), ex[0].n_states * ex[0].n_actions
            ),
            symbols=(Q, pi, w, U, gamma, s, a, n, N),
            arguments=_td_arguments,
            error_scale=lambda ex: _td_scale_of(ex[0]),
            description=(
                "r + gamma P V - V(s) with V = exact.value (the state-value system) vs the "
                "lambdified Q(s,a) - sum_i pi(i|s) Q(s,i) with Q from the state-action Bellman "
                "system (I - gamma P Pi) Q = r, at every (s, a); the error is relative to the "
                "value scale max|r|/(1 - gamma)"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            td_mc_examples,
            td_estimator,
            advantage_by_action_values,
            n_samples=N_NEXT_STATES,
            n_examples=MC_EXAMPLES,
            false_alarm=MC_FALSE_ALARM,
            description=(
                "mean of r(s, a) + gamma V^pi(s') - V^pi(s) over s' ~ P(.|s, a), for every "
                "(s, a) at once (V^pi = exact.value), vs A^pi from the state-action Bellman "
                "system (I - gamma P Pi) Q = r"
            ),
        ),
        mutants=(
            Mutant(
                "value-not-of-pi",
                "a V that is not V^pi in the TD error (symbolically any U; numerically the value "
                "of another policy): E[r + gamma U(s') - U(s)] is not A^pi",
                symbolic=SymbolicMutation("td-expectation", ANOTHER_VALUE),
                monte_carlo=other_values_estimator,
            ),
            Mutant(
                "missing-discount",
                "r + V(s') - V(s): gamma dropped from the bootstrap",
                symbolic=SymbolicMutation("td-expectation", MISSING_DISCOUNT),
                monte_carlo=undiscounted_td_estimator,
            ),
            Mutant(
                "td-target-without-baseline",
                "r + gamma V(s'): the TD target (an estimate of Q) used as the advantage",
                symbolic=SymbolicMutation("td-expectation", TD_TARGET),
                monte_carlo=td_target_estimator,
            ),
        ),
    ),
    Claim(
        id="gae-closed-form",
        title="GAE: the backward recursion and its closed form, with lambda = 0 and 1",
        statement=Statement(
            closed_form.start,
            closed_form.conclusion,
            where=(
                r"T = t + K + 1,\ K \ge 0;\ \hat A_{t+1} = \sum_{l=0}^{T-t-2}(\gamma\lambda)^l"
                r"\delta_{t+1+l},\ \hat A_T = 0 \text{ (the empty sum)}"
            ),
            symbol_names={lam: r"\lambda"},
        ),
        assumptions=(
            "General episode length T and time t < T (the derivations write T = t + K + 1 with "
            "an integer K >= 0).",
            "One episode without terminations inside it; V_T bootstraps the tail (V_T = 0 for a "
            "terminated episode).",
            "The recursion with A_T = 0 determines A_0..A_{T-1} uniquely (backward induction), so "
            "the closed form, which is 0 at T (an empty sum) and satisfies the recursion "
            "(derivation 'closed-form'), is its solution.",
        ),
        references=(
            "Schulman, J. et al., *High-Dimensional Continuous Control Using Generalized "
            "Advantage Estimation*, ICLR 2016, eqs. (16)-(18).",
        ),
        symbolic=SymbolicLeg((closed_form, lambda_zero, lambda_one)),
        exact=ExactLeg(
            gae_examples,
            lhs=reference_gae,
            rtol=lambda ex: exact_rtol(1.0, 3 * len(ex[0])),
            symbols=(delta, gamma, lam, t, K),
            arguments=_gae_arguments,
            error_scale=_gae_scale,
            description=(
                "rlmath.reference.generalized_advantage_estimation (no terminations, bootstrap "
                "V_T) at time t vs the lambdified closed form sum_l (gamma lambda)^l delta_{t+l}, "
                "episodes of 1-8 steps, gamma and lambda in [0, 1]"
            ),
        ),
        mutants=(
            Mutant(
                "gamma-without-lambda",
                "A_t = sum_l gamma^l delta_{t+l}: lambda dropped from the recursion",
                symbolic=SymbolicMutation("closed-form", GAMMA_WITHOUT_LAMBDA),
            ),
            Mutant(
                "off-by-one",
                "sum_l (gamma lambda)^l delta_{t+l+1}: the TD errors one step late (A_t = A_{t+1})",
                symbolic=SymbolicMutation("closed-form", OFF_BY_ONE),
            ),
            Mutant(
                "lambda-one-without-bootstrap",
                "lambda = 1 form sum gamma^l r_{t+l} - V_t: the bootstrap gamma^{T-t} V_T dropped",
                symbolic=SymbolicMutation("lambda-one", NO_BOOTSTRAP),
            ),
        ),
        notes=(
            "The exact leg compares the package's reference GAE (a backward recursion, written "
            "for batches with termination and truncation flags, none set here) with the "
            "lambdified closed form. The reductions lambda = 0 and lambda = 1 are proved "
            "symbolically; the exact leg's examples include lambda = 0 and 1 among the drawn "
            "values. There is no Monte-Carlo leg: the claim is a deterministic identity between "
            "finite sums of given numbers, with no expectation to sample."
        ),
    ),
)
