r"""Advantage estimation: the expected TD error of $V^\pi$ is the advantage.

Main statement. For a policy $\pi$ with values $V^\pi$, $Q^\pi$ and advantage
$A^\pi = Q^\pi - V^\pi$, and the TD error $\delta^V = r(s,a) + \gamma V(s') - V(s)$,

$$ \mathbb E_{s' \sim P(\cdot|s,a)}\!\left[r(s,a) + \gamma V^\pi(s') - V^\pi(s)\right] = A^\pi(s,a). $$

GAE's closed form, the TD error's cut rules (termination, truncation, end of the buffer),
lambda-returns and discounted returns are in ``proofs/returns_with_cuts.py`` (claims
``gae-closed-form``, ``td-error-cut-rules``, ``lambda-returns-closed-form``,
``discounted-returns-closed-form``).

Conventions. $r(s,a)$ is the reward for $a$ taken in $s$. The TD error's expectation is over
the next state only ($s, a$ fixed).

Proof sketch. Linearity of the expectation over $s'$, $\sum_{s'} P(s'|s,a) = 1$, and the
Bellman equation $Q^\pi(s,a) = r(s,a) + \gamma \mathbb E_{s'} V^\pi(s')$.

References. Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd
ed., 2018, eq. (6.5) (TD error); Schulman, J., Moritz, P., Levine, S., Jordan, M., Abbeel, P.,
"High-Dimensional Continuous Control Using Generalized Advantage Estimation", ICLR 2016,
eq. (10) (E[delta^{V^pi}] = A^pi).
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
from rlmath.sampling import alias_sample, transition_alias_table
from rlmath.symbolic import IndexSum
from rlmath.testing import mdps_and_policies, softmax_policies, tabular_mdps
from rlmath.tolerances import discounted_condition_number, exact_rtol

gamma = sp.Symbol("gamma", nonnegative=True)

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

CLAIMS = (
    Claim(
        id="td-error-is-advantage",
        title="The expected TD error of V^pi is the advantage",
        summary=(
            "The one-step TD error r + gamma V(s') - V(s) is an unbiased estimate of the advantage "
            "A(s, a) only when V is the value of the policy being evaluated."
        ),
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
)
