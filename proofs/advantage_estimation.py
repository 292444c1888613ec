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
    Step,
    SymbolicLeg,
    SymbolicMutation,
    lambdify,
    monte_carlo_leg,
)
from rlmath.sampling import alias_sample, transition_alias_table
from rlmath.statistics import DEFAULT_POWER, detection_power
from rlmath.testing import mdps_and_policies, softmax_policies, tabular_mdps
from rlmath.tolerances import discounted_condition_number, exact_rtol

gamma = sp.Symbol("gamma", nonnegative=True)
lam = sp.Symbol("lambda", nonnegative=True)

# ============================================================================ TD error
# One state-action pair (s, a); n next states j = 0..n-1 with P(j|s,a) = w_j / sum_k w_k
# (any distribution with positive entries; zero entries are the limit w_j -> 0).
n = sp.Symbol("n", integer=True, positive=True)
j = sp.Symbol("j", integer=True)
w = sp.IndexedBase("w", positive=True)
V = sp.IndexedBase("V", real=True)  # V(s') for next states s' = j
r_sa = sp.Symbol("r_sa", real=True)  # r(s, a)
V_s = sp.Symbol("V_s", real=True)  # V(s)
next_prob = w[j] / sp.Sum(w[j], (j, 0, n - 1))


def E_next(term: sp.Expr) -> sp.Sum:
    r"""$\mathbb E_{s' \sim P(\cdot|s,a)}[\text{term}]$ as a sum over next states j."""
    return sp.Sum(next_prob * term, (j, 0, n - 1))


td_expectation = Derivation(
    "td-expectation",
    (
        Step(
            r_sa * E_next(1) + gamma * E_next(V[j]) - V_s * E_next(1),
            "the TD error averaged over s' ~ P(.|s,a), split by linearity (r(s,a) and V(s) do "
            "not depend on s')",
        ),
        Step(r_sa + gamma * E_next(V[j]) - V_s, "sum of next-state probabilities is 1"),
    ),
    statement=r"\mathbb E_{s'}[r + \gamma V(s') - V(s)] = r(s,a) + \gamma\,\mathbb E_{s'} V(s') - V(s)"
    r" = Q^\pi(s,a) - V^\pi(s) \text{ when } V = V^\pi",
)

_td_conclusion = lambdify([r_sa, gamma, w, V, V_s, n], td_expectation.conclusion)


def _td_rhs(conclusion, mdp, values: np.ndarray) -> np.ndarray:
    """The lambdified conclusion at every (s, a), with ``values`` as V."""
    P = mdp.dense_transitions()
    S, A = mdp.n_states, mdp.n_actions
    return np.array(
        [
            [conclusion(mdp.r[s, a], mdp.gamma, P[s, a], values, values[s], S) for a in range(A)]
            for s in range(S)
        ]
    )


_last: dict[str, object] = {}


def advantage_by_action_values(example) -> np.ndarray:
    r"""$A^\pi = Q^\pi - \sum_a \pi Q^\pi$ with $Q^\pi$ from its own Bellman system.

    $(I - \gamma P \Pi)\, Q = r$ on state-action pairs ($P$: ``[S*A, S]``, $\Pi$: ``[S, S*A]``):
    a different linear system from the state-value solve behind ``exact.value``.
    """
    if _last.get("example") is example:
        return _last["advantage"]  # type: ignore[return-value]
    mdp, policy, _ = example
    S, A = mdp.n_states, mdp.n_actions
    pi = policy.probabilities()
    Pi = np.zeros((S, S * A))
    for s in range(S):
        Pi[s, s * A : (s + 1) * A] = pi[s]
    P = mdp.dense_transitions().reshape(S * A, S)
    Q = np.linalg.solve(np.eye(S * A) - mdp.gamma * P @ Pi, mdp.r.reshape(S * A)).reshape(S, A)
    advantage = Q - (pi * Q).sum(axis=1, keepdims=True)
    _last.update(example=example, advantage=advantage)
    return advantage


def _values(example) -> np.ndarray:
    mdp, policy, _ = example
    return exact.value(mdp, policy)


def _other_values(example) -> np.ndarray:
    mdp, _, other = example
    return exact.value(mdp, other)


def _relative_to(bound: float, lhs: np.ndarray) -> float:
    """A normwise rtol from an absolute error bound (bound / max|lhs|; inf when lhs = 0)."""
    scale = float(np.abs(lhs).max(initial=0.0))
    return bound / scale if scale > 0.0 else float("inf")


def _td_error_bound(mdp) -> float:
    """Rounding bound of either side: exact_rtol(kappa, S A) times the value scale R/(1-gamma)."""
    value_bound = float(np.abs(mdp.r).max(initial=0.0)) / (1.0 - mdp.gamma)
    kappa = discounted_condition_number(mdp.gamma)
    return exact_rtol(kappa, mdp.n_states * mdp.n_actions) * value_bound


def _td_rtol(example) -> float:
    return _relative_to(_td_error_bound(example[0]), advantage_by_action_values(example))


def _td_resolvable(example) -> bool:
    """Skip examples whose advantages are below 1000 rounding bounds (e.g. one action: A = 0)."""
    scale = float(np.abs(advantage_by_action_values(example)).max(initial=0.0))
    return scale > 1e3 * _td_error_bound(example[0])


td_examples = (
    mdps_and_policies(tabular_mdps(max_states=4, max_actions=3))
    .flatmap(
        lambda pair: softmax_policies(pair[0].n_states, pair[0].n_actions).map(
            lambda other: (*pair, other)
        )
    )
    .filter(_td_resolvable)
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
        """Exact mean and standard deviation of one term, ``[S, A]`` each."""
        offset, discount, V = self._parts(example)
        P = example[0].dense_transitions()
        expected = P @ V
        variance = np.maximum(P @ V**2 - expected**2, 0.0)  # Var_{s'} V(s'), [S, A]
        return offset + discount * expected, discount * np.sqrt(variance)


td_estimator = TDErrorEstimator(_values)
# mutants: another policy's values, the discount dropped, the baseline V(s) dropped
other_values_estimator = TDErrorEstimator(_other_values)
undiscounted_td_estimator = TDErrorEstimator(_values, discount=False)
td_target_estimator = TDErrorEstimator(_values, baseline=False)

# 20000 next-state draws per pair. The shift of each mutant and the per-sample sd
# gamma sd_{s'}(V(s')) are exact (TDErrorEstimator.moments); sample_size at alpha = 1e-6 / 2
# with S A components gives the n for power 0.99. Over 165 examples of the domain below with
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
        shift = mean - target
        power = max(
            detection_power(
                float(shift[i]),
                float(sd[i]),
                N_NEXT_STATES,
                false_alarm=MC_FALSE_ALARM / MC_EXAMPLES,
                n_components=shift.size,
            )
            for i in np.ndindex(shift.shape)
        )
        if power < DEFAULT_POWER:
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
# Time t and K = T - t - 1 >= 0 (so t < T): sums run over l = 0..K and T = t + K + 1.
t = sp.Symbol("t", integer=True, nonnegative=True)
K = sp.Symbol("K", integer=True, nonnegative=True)
T = t + K + 1
lag = sp.Symbol("l", integer=True)
delta = sp.IndexedBase("delta", real=True)
r = sp.IndexedBase("r", real=True)
v = sp.IndexedBase("V", real=True)  # V_0..V_T along the episode
td_error = r[t] + gamma * v[t + 1] - v[t]  # delta_t


def gae(time: sp.Expr, decay: sp.Expr = gamma * lam) -> sp.Sum:
    r"""Closed form $\sum_{l=0}^{T-\text{time}-1} \text{decay}^l \delta_{\text{time}+l}$."""
    return sp.Sum(decay**lag * delta[time + lag], (lag, 0, T - time - 1))


def term(index: sp.Expr, decay: sp.Expr = gamma * lam) -> sp.Expr:
    return decay**index * delta[t + index]


recursion = Derivation(
    "recursion",
    (
        Step(gae(t), "closed form at time t < T"),
        Step(
            sp.Sum(term(lag), (lag, 0, 0)) + sp.Sum(term(lag), (lag, 1, K)),
            "split off the l = 0 term",
        ),
        Step(delta[t] + sp.Sum(term(lag), (lag, 1, K)), "(gamma lambda)^0 = 1"),
        Step(delta[t] + sp.Sum(term(lag + 1), (lag, 0, K - 1)), "shift the index l -> l + 1"),
        Step(
            delta[t] + gamma * lam * sp.Sum(term(lag).subs(t, t + 1), (lag, 0, K - 1)),
            "factor gamma lambda out of the sum",
        ),
        Step(delta[t] + gamma * lam * gae(t + 1), "the closed form at time t + 1"),
    ),
    statement=r"\hat A_t = \delta_t + \gamma\lambda \hat A_{t+1}",
)

terminal = Derivation(
    "terminal",
    (
        Step(gae(T), "closed form at time T"),
        Step(sp.Integer(0), "empty sum (l runs over 0..-1)"),
    ),
    statement=r"\hat A_T = 0",
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

# ----------------------------------------------------------------------------- GAE exact leg
_delta_definition = lambdify([r, v, gamma, t], td_error)
_closed_form = lambdify([delta, gamma, lam, t, K], gae(t))
_lambda_zero = lambdify([delta, t], lambda_zero.conclusion)
_lambda_one = lambdify([r, v, gamma, t, K], lambda_one.conclusion)


def gae_by_recursion(rewards: np.ndarray, values: np.ndarray, g: float, lmb: float) -> np.ndarray:
    """The backward loop A_t = delta_t + gamma lambda A_{t+1}, A_T = 0 (rewards [T], values [T+1])."""
    advantages = np.zeros(len(rewards))
    following = 0.0
    for step in reversed(range(len(rewards))):
        following = rewards[step] + g * values[step + 1] - values[step] + g * lmb * following
        advantages[step] = following
    return advantages


def gae_lhs(example) -> np.ndarray:
    rewards, values, g, lmb = example
    return np.concatenate([gae_by_recursion(rewards, values, g, x) for x in (lmb, 0.0, 1.0)])


def _deltas(rewards, values, g) -> np.ndarray:
    return np.array([_delta_definition(rewards, values, g, i) for i in range(len(rewards))])


def gae_rhs(example, closed_form=_closed_form, one_form=_lambda_one) -> np.ndarray:
    """[closed form at lambda; lambda = 0 conclusion; lambda = 1 conclusion], each over t < T."""
    rewards, values, g, lmb = example
    horizon, deltas = len(rewards), _deltas(rewards, values, g)
    times = range(horizon)
    return np.concatenate(
        [
            [closed_form(deltas, g, lmb, i, horizon - i - 1) for i in times],
            [_lambda_zero(deltas, i) for i in times],
            [one_form(rewards, values, g, i, horizon - i - 1) for i in times],
        ]
    )


def _gae_rtol(example) -> float:
    rewards, values, _, _ = example
    size = float(np.abs(rewards).max() + 2.0 * np.abs(values).max())
    return _relative_to(exact_rtol(1.0, 2 * len(rewards)) * size * len(rewards), gae_lhs(example))


_finite = st.floats(-10.0, 10.0, allow_nan=False, allow_subnormal=False)
gae_examples = st.integers(1, 8).flatmap(
    lambda horizon: st.tuples(
        st.lists(_finite, min_size=horizon, max_size=horizon).map(np.array),
        st.lists(_finite, min_size=horizon + 1, max_size=horizon + 1).map(np.array),
        st.floats(0.0, 1.0),
        st.floats(0.0, 1.0),
    )
)

# mutants
_gamma_only = lambdify([delta, gamma, lam, t, K], gae(t, gamma))
_off_by_one = lambdify(
    [delta, gamma, lam, t, K], sp.Sum((gamma * lam) ** lag * delta[t + lag + 1], (lag, 0, K))
)
_no_bootstrap = lambdify([r, v, gamma, t, K], one[0] - v[t])


def _padded(function):
    """Evaluate with delta padded by one zero (delta_T = 0) for the off-by-one index."""

    def evaluate(deltas, *args):
        return function(np.append(deltas, 0.0), *args)

    return evaluate


CLAIMS = (
    Claim(
        id="td-error-is-advantage",
        title="The expected TD error of V^pi is the advantage",
        statement=(
            r"\mathbb E_{s'\sim P(\cdot|s,a)}\!\left[r(s,a) + \gamma V^\pi(s') - V^\pi(s)\right]"
            r" = A^\pi(s,a)"
        ),
        assumptions=(
            "Finitely many next states, any number n of them (general n in the derivation).",
            "Transition probabilities written as w_j / sum_k w_k with w_j > 0; distributions with "
            "zeros are limits of these, and the exact leg includes them.",
            "V = V^pi, the value of the same policy whose advantage is taken; "
            "E[delta^V] = r + gamma E V(s') - V(s) holds for any V, but it is A^pi only for V^pi.",
            "Infinite horizon, 0 <= gamma < 1, in the exact leg.",
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
            lhs=advantage_by_action_values,
            rhs=lambda ex: _td_rhs(_td_conclusion, ex[0], _values(ex)),
            rtol=_td_rtol,
            description=(
                "A^pi from the state-action Bellman system (I - gamma P Pi) Q = r vs the "
                "lambdified expected TD error with V = exact.value, at every (s, a)"
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
                "value-of-another-policy",
                "V^{pi'} of a different policy in the TD error: its expectation is not A^pi",
                exact=lambda ex: _td_rhs(_td_conclusion, ex[0], _other_values(ex)),
                monte_carlo=other_values_estimator,
            ),
            Mutant(
                "missing-discount",
                "r + V(s') - V(s): gamma dropped from the bootstrap",
                symbolic=SymbolicMutation("td-expectation", r_sa + E_next(V[j]) - V_s),
                exact=lambda ex: _td_rhs(
                    lambdify([r_sa, gamma, w, V, V_s, n], r_sa + E_next(V[j]) - V_s),
                    ex[0],
                    _values(ex),
                ),
                monte_carlo=undiscounted_td_estimator,
            ),
            Mutant(
                "td-target-without-baseline",
                "r + gamma V(s'): the TD target (an estimate of Q) used as the advantage",
                symbolic=SymbolicMutation("td-expectation", r_sa + gamma * E_next(V[j])),
                exact=lambda ex: _td_rhs(
                    lambdify([r_sa, gamma, w, V, V_s, n], r_sa + gamma * E_next(V[j])),
                    ex[0],
                    _values(ex),
                ),
                monte_carlo=td_target_estimator,
            ),
        ),
    ),
    Claim(
        id="gae-closed-form",
        title="GAE: the backward recursion and its closed form, with lambda = 0 and 1",
        statement=(
            r"\hat A_t = \delta_t + \gamma\lambda\hat A_{t+1},\ \hat A_T = 0"
            r"\iff \hat A_t = \sum_{l=0}^{T-t-1}(\gamma\lambda)^l\delta_{t+l};\quad"
            r"\hat A_t|_{\lambda=0} = \delta_t,\quad"
            r"\hat A_t|_{\lambda=1} = \sum_{l=0}^{T-t-1}\gamma^l r_{t+l} + \gamma^{T-t}V_T - V_t"
        ),
        assumptions=(
            "General episode length T and time t < T (the derivations write T = t + K + 1 with "
            "an integer K >= 0).",
            "One episode without terminations inside it; V_T bootstraps the tail (V_T = 0 for a "
            "terminated episode).",
            "The recursion with A_T = 0 determines A_0..A_{T-1} uniquely (backward induction), so "
            "a closed form satisfying it and the terminal condition is its solution.",
        ),
        references=(
            "Schulman, J. et al., *High-Dimensional Continuous Control Using Generalized "
            "Advantage Estimation*, ICLR 2016, eqs. (16)-(18).",
        ),
        symbolic=SymbolicLeg((recursion, terminal, lambda_zero, lambda_one)),
        exact=ExactLeg(
            gae_examples,
            lhs=gae_lhs,
            rhs=gae_rhs,
            rtol=_gae_rtol,
            description=(
                "backward-loop GAE at lambda, 0 and 1 vs the lambdified closed form, the "
                "lambda = 0 conclusion (delta_t) and the lambda = 1 conclusion "
                "(discounted return-to-go + bootstrap - V_t)"
            ),
        ),
        mutants=(
            Mutant(
                "gamma-without-lambda",
                "A_t = delta_t + gamma A_{t+1}: lambda dropped from the recursion",
                symbolic=SymbolicMutation("recursion", delta[t] + gamma * gae(t + 1)),
                exact=lambda ex: gae_rhs(ex, closed_form=_gamma_only),
            ),
            Mutant(
                "off-by-one",
                "sum_l (gamma lambda)^l delta_{t+l+1}: the TD errors one step late",
                symbolic=SymbolicMutation("recursion", delta[t + 1] + gamma * lam * gae(t + 1)),
                exact=lambda ex: gae_rhs(ex, closed_form=_padded(_off_by_one)),
            ),
            Mutant(
                "lambda-one-without-bootstrap",
                "lambda = 1 form sum gamma^l r_{t+l} - V_t: the bootstrap gamma^{T-t} V_T dropped",
                symbolic=SymbolicMutation("lambda-one", one[0] - v[t]),
                exact=lambda ex: gae_rhs(ex, one_form=_no_bootstrap),
            ),
        ),
        notes=(
            "The exact leg stacks three comparisons per example: the closed form at the drawn "
            "lambda, and the two reductions. The recursion runs backward from A_T = 0; "
            "`delta` of the closed form is the lambdified definition "
            "`r_t + gamma V_{t+1} - V_t`. There is no Monte-Carlo leg: the claim is a deterministic "
            "identity between finite sums of given numbers, with no expectation to sample."
        ),
    ),
)
