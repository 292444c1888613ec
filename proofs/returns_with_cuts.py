r"""Returns, TD errors, GAE and n-step returns on buffers cut by terminations and truncations.

Main statements. A buffer holds $T$ steps (time-major, ``[T, *B]``); step $t$ of a batch entry
ends its episode when ``terminated[t]`` (the next state is terminal) or ``truncated[t]`` (a time
limit cut it; the next state is not terminal). Let $e(t) \ge t$ be the first step from $t$ on
that ends an episode, or $T - 1$ if none does (the end of the buffer), and $K = e(t) - t$.

1. **TD error with the cut rules** (claim ``td-error-cut-rules``). The one-line masked form
   $r_t + \gamma (1 - \tau_t)\,[u_t F_t + (1 - u_t) N_t] - V_t$, with $\tau_t$, $u_t$ the
   terminated and truncated flags, $F_t$ = ``final_values[t]`` and $N_t$ the next value in the
   buffer (``values[t+1]``, or ``last_value`` at $t = T-1$), is case by case

   $$ \delta_t = \begin{cases}
      r_t - V_t & \text{terminated (whatever } u_t\text{: termination wins)}\\
      r_t + \gamma F_t - V_t & \text{truncated, not terminated} \\
      r_t + \gamma N_t - V_t & \text{neither.} \end{cases} $$

2. **GAE closed form per segment** (claim ``gae-closed-form``). The recursion
   $\hat A_t = \delta_t + \gamma\lambda\,(1 - \text{done}_t)\,\hat A_{t+1}$ is solved by

   $$ \hat A_t = \sum_{l=0}^{e(t)-t} (\gamma\lambda)^l \, \delta_{t+l}, $$

   a sum that stops at the cut: it never crosses an episode end, and the bootstrap value of the
   cut (0, $F_e$ or ``last_value``) enters only through $\delta_{e(t)}$. With $\lambda = 0$
   it is $\delta_t$; with $\lambda = 1$ it is
   $\sum_{l=0}^{K} \gamma^l r_{t+l} + \gamma^{K+1} v'_{e(t)} - V_t$, the discounted return to
   the cut bootstrapped from the cut's value $v'$, minus $V_t$.

3. **Lambda-returns** (claim ``lambda-returns-closed-form``). The TD($\lambda$) recursion
   $G^\lambda_t = r_t + \gamma[(1-\lambda) V_{t+1} + \lambda G^\lambda_{t+1}]$ inside a segment,
   $G^\lambda_{e} = r_e + \gamma v'_e$ at the cut, is solved by $G^\lambda_t = V_t + \hat A_t$.

4. **Discounted returns** (claim ``discounted-returns-closed-form``). The recursion
   $G_t = r_t + \gamma (1 - d_t) G_{t+1}$ is solved by $G_t = \sum_{l=0}^{e(t)-t} \gamma^l
   r_{t+l}$ ($d_t$ = ``dones[t]``; nothing is bootstrapped).

5. **n-step returns** (claim ``n-step-returns-closed-form``). With $M + 1 = \min(n, e(t) - t +
   1)$ rewards in the window and $w$ its bootstrap value ($V_{t+M+1}$ if the window ends
   inside the episode, the cut's $v'$ if it reaches the cut),
   $V_t + \sum_{k=0}^{M} \gamma^k \delta_{t+k} = \sum_{k=0}^{M} \gamma^k r_{t+k} +
   \gamma^{M+1} w$: the n-step return is the value plus the window's discounted TD errors.

Conventions (those of :mod:`rlmath.reference`). Time-major ``[T, *B]``; $r_t$ follows $a_t$;
``values[t]`` $= V(s_t)$ for $t < T$ and ``last_value`` $= V(s_T)$; termination means no
bootstrap, truncation bootstraps from ``final_values[t]`` (the value of the final observation,
supplied by the caller; the next entry of ``values`` belongs to the next episode); when both
flags are set termination wins; ``final_values`` is read only where truncated and not
terminated (the examples put NaN where no episode ended and, half the time, where one
terminated).

Proof sketch. Per segment $[t, e]$ the closed form satisfies the recursion (split off the
$l = 0$ term, shift the index, factor $\gamma\lambda$) and, at $K = 0$, the boundary condition
$\hat A_e = \delta_e$; the recursion has one solution (backward induction from the cut), so the
closed form is it. The derivations are for a general segment length $K$ (an integer symbol).
$\lambda$-returns: write $r_t = \delta_t + V_t - \gamma V_{t+1}$ inside the segment and
$r_e = \delta_e + V_e - \gamma v'_e$ at the cut; the $V_{t+1}$ terms cancel and what remains is
the GAE recursion plus $V_t$.

References. Schulman, J., Moritz, P., Levine, S., Jordan, M., Abbeel, P., "High-Dimensional
Continuous Control Using Generalized Advantage Estimation", ICLR 2016, eqs. (16)-(18); Sutton,
R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed., 2018, eqs. (3.8),
(6.5), (12.2) and (12.18); Pardo, F., Tavakoli, A., Levdik, V., Kormushev, P., "Time Limits in
Reinforcement Learning", ICML 2018 (bootstrap at time-limit truncations); Gymnasium
documentation, *Handling Time Limits*, 2023.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath.claims import (
    Case,
    CaseAnalysis,
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    lazy_lambdify,
)
from rlmath.reference import (
    discounted_returns,
    generalized_advantage_estimation,
    lambda_returns,
    n_step_returns,
    temporal_difference_errors,
)
from rlmath.symbolic import IndexSum
from rlmath.tolerances import exact_rtol

TINY = float(np.finfo(np.float64).tiny)

# ============================================================================ symbols
gamma = sp.Symbol("gamma", nonnegative=True)
lam = sp.Symbol("lambda", nonnegative=True)
t = sp.Symbol("t", integer=True, nonnegative=True)  # a step of the segment
K = sp.Symbol("K", integer=True, nonnegative=True)  # e(t) - t: steps from t to the cut
lag = sp.Symbol("l", integer=True)
delta = sp.IndexedBase("delta", real=True)  # TD errors, with the cut rules
r = sp.IndexedBase("r", real=True)
v = sp.IndexedBase("V", real=True)  # V(s_t) along the segment
bootstrap = sp.Symbol("v'", real=True)  # the cut's bootstrap value: 0, F_e or last_value

NAMES = {lam: r"\lambda", bootstrap: r"v'_{e}"}


def weighted_sum(sequence: sp.IndexedBase, start: Any, low: Any, high: Any, decay: Any) -> sp.Sum:
    r"""$\sum_{l=\text{low}}^{\text{high}} \text{decay}^l\, x_{\text{start}+l}$ (unevaluated).

    An ``IndexSum`` (term by term only, fast), except where sympy's own ``Sum`` is needed to
    evaluate it: a range of a fixed number of terms (``K..K``) or a zero decay ($0^l$)."""
    single = sp.sympify(high - low).is_number
    kind = sp.Sum if single or sp.sympify(decay).is_zero else IndexSum
    return kind(decay**lag * sequence[start + lag], (lag, low, high))


def gae_closed_form(decay: Any = gamma * lam) -> sp.Sum:
    r"""$\hat A_t = \sum_{l=0}^{K} (\gamma\lambda)^l \delta_{t+l}$: the TD errors up to the cut."""
    return weighted_sum(delta, t, 0, K, decay)


# ============================================================================ GAE per segment
# Inside a segment (t < e) the recursion is A_t = delta_t + gamma lambda A_{t+1}, and A_{t+1}
# is the closed form of the segment that starts at t + 1 and has the same cut e: K - 1 more
# steps. At K = 0 its sum is empty, which is the recursion at the cut (A_{t+1} is multiplied
# by 1 - done_t = 0): the derivation covers every K >= 0 at once.
def _gae_recursion_steps(decay: Any, offset: Any = 0) -> tuple[Step, ...]:
    """The steps delta_t + decay * C(t+1) -> C(t), with ``offset`` added to every line."""
    term = lambda index: decay**index * delta[t + index]  # noqa: E731
    return (
        Step(
            offset + delta[t] + decay * weighted_sum(delta, t + 1, 0, K - 1, decay),
            "the recursion inside the segment, with the next advantage in closed form "
            "(the segment from t + 1 to the same cut has K - 1 more steps)",
        ),
        Step(
            offset + delta[t] + IndexSum(decay * term(lag).subs(t, t + 1), (lag, 0, K - 1)),
            "move the factor into the sum",
        ),
        Step(offset + delta[t] + IndexSum(term(lag + 1), (lag, 0, K - 1)), "(gamma lambda)^(l+1)"),
        Step(offset + delta[t] + IndexSum(term(lag), (lag, 1, K)), "shift the index l -> l - 1"),
        Step(
            offset + IndexSum(term(lag), (lag, 0, 0)) + IndexSum(term(lag), (lag, 1, K)),
            "delta_t is the l = 0 term ((gamma lambda)^0 = 1)",
        ),
        Step(offset + weighted_sum(delta, t, 0, K, decay), "merge the ranges"),
    )


gae_recursion = Derivation(
    "closed-form",
    _gae_recursion_steps(gamma * lam),
    statement=(
        r"\delta_t + \gamma\lambda \hat A_{t+1} = \sum_{l=0}^{K}(\gamma\lambda)^l\delta_{t+l}"
    ),
)

gae_at_cut = Derivation(
    "at-the-cut",
    (
        Step(delta[t], "at the cut (t = e, K = 0) the recursion stops: A_e = delta_e"),
        Step(weighted_sum(delta, t, 0, 0, gamma * lam), "the closed form with K = 0 (one term)"),
    ),
    statement=r"\hat A_e = \delta_e = \sum_{l=0}^{0}(\gamma\lambda)^l\delta_{e+l}",
)

gae_lambda_zero = Derivation(
    "lambda-zero",
    (
        Step(weighted_sum(delta, t, 0, K, gamma * 0), "closed form with lambda = 0"),
        Step(
            weighted_sum(delta, t, 0, 0, gamma * 0) + weighted_sum(delta, t, 1, K, gamma * 0),
            "split off the l = 0 term",
        ),
        Step(delta[t] + weighted_sum(delta, t, 1, K, gamma * 0), "0^0 = 1"),
        Step(delta[t], "0^l = 0 for l >= 1"),
    ),
    statement=r"\hat A_t\big|_{\lambda=0} = \delta_t",
)

_rewards_to_cut = weighted_sum(r, t, 0, K, gamma)


def _telescoping_steps(upper: Any, end_value: Any, offset: Any, first_rule: str) -> tuple:
    r"""``offset`` + $\sum_{l=0}^{\text{upper}} \gamma^l \delta_{t+l}$ (the last TD error
    bootstrapped from ``end_value``) -> ``offset`` + rewards + $\gamma^{\text{upper}+1}$
    ``end_value`` $- V_t$: the value terms telescope."""
    last = (
        gamma**upper * r[t + upper] + gamma ** (upper + 1) * end_value - gamma**upper * v[t + upper]
    )
    rewards_before = weighted_sum(r, t, 0, upper - 1, gamma)
    values_before = weighted_sum(v, t, 0, upper - 1, gamma)
    return (
        Step(
            offset
            + IndexSum(
                gamma**lag * (r[t + lag] + gamma * v[t + lag + 1] - v[t + lag]),
                (lag, 0, upper - 1),
            )
            + gamma**upper * (r[t + upper] + gamma * end_value - v[t + upper]),
            first_rule,
        ),
        Step(
            offset
            + rewards_before
            + IndexSum(gamma ** (lag + 1) * v[t + lag + 1], (lag, 0, upper - 1))
            - values_before
            + last,
            "linearity: three sums and the last step's three terms",
        ),
        Step(
            offset + rewards_before + weighted_sum(v, t, 1, upper, gamma) - values_before + last,
            "shift the index of the value sum, l -> l - 1",
        ),
        Step(
            offset
            + rewards_before
            + (weighted_sum(v, t, 1, upper - 1, gamma) + weighted_sum(v, t, upper, upper, gamma))
            - (weighted_sum(v, t, 0, 0, gamma) + weighted_sum(v, t, 1, upper - 1, gamma))
            + last,
            "split off the last term from the first value sum and l = 0 from the second",
        ),
        Step(
            offset
            + rewards_before
            + weighted_sum(r, t, upper, upper, gamma)
            + gamma ** (upper + 1) * end_value
            - v[t],
            "the value terms cancel (telescoping); the last reward is the last term",
        ),
        Step(
            offset + weighted_sum(r, t, 0, upper, gamma) + gamma ** (upper + 1) * end_value - v[t],
            "merge the reward sums",
        ),
    )


gae_lambda_one = Derivation(
    "lambda-one",
    _telescoping_steps(
        K,
        bootstrap,
        0,
        "closed form with lambda = 1, the cut's term l = K apart: inside the segment "
        "delta_{t+l} = r_{t+l} + gamma V_{t+l+1} - V_{t+l}, at the cut "
        "delta_{t+K} = r_{t+K} + gamma v' - V_{t+K}",
    ),
    statement=(
        r"\hat A_t\big|_{\lambda=1} = \sum_{l=0}^{K}\gamma^l r_{t+l} + \gamma^{K+1} v'_e - V_t"
    ),
)

GAE_GAMMA_WITHOUT_LAMBDA = gae_closed_form(gamma)
GAE_OFF_BY_ONE = IndexSum((gamma * lam) ** lag * delta[t + lag + 1], (lag, 0, K - 1))
GAE_CUT_DROPPED = weighted_sum(delta, t, 0, -1, gamma * lam)  # A_e = 0: the cut's delta lost
LAMBDA_ONE_NO_BOOTSTRAP = _rewards_to_cut - v[t]

# ============================================================================ lambda-returns
# Inside the segment the reward is written through the TD error, r_t = delta_t + V_t -
# gamma V_{t+1} (its definition, solved for r_t), and at the cut r_e = delta_e + V_e - gamma v'.
lambda_return_recursion = Derivation(
    "lambda-return-recursion",
    (
        Step(
            (delta[t] + v[t] - gamma * v[t + 1])
            + gamma
            * (
                (1 - lam) * v[t + 1]
                + lam * (v[t + 1] + weighted_sum(delta, t + 1, 0, K - 1, gamma * lam))
            ),
            "the lambda-return recursion inside the segment, "
            "r_t + gamma ((1 - lambda) V_{t+1} + lambda G_{t+1}), with G_{t+1} = V_{t+1} + "
            "A_{t+1} (A in closed form) and r_t = delta_t + V_t - gamma V_{t+1}",
        ),
        *(
            replace(step, rule=("expand: the gamma V_{t+1} terms cancel" if k == 0 else step.rule))
            for k, step in enumerate(_gae_recursion_steps(gamma * lam, v[t]))
        ),
    ),
    statement=r"r_t + \gamma[(1-\lambda)V_{t+1} + \lambda G^\lambda_{t+1}] = V_t + \hat A_t",
)

lambda_return_at_cut = Derivation(
    "lambda-return-at-the-cut",
    (
        Step(
            (delta[t] + v[t] - gamma * bootstrap) + gamma * bootstrap,
            "at the cut (t = e, K = 0): G_e = r_e + gamma v'_e with r_e = delta_e + V_e - "
            "gamma v'_e",
        ),
        Step(v[t] + weighted_sum(delta, t, 0, 0, gamma * lam), "V_e + the closed form at K = 0"),
    ),
    statement=r"G^\lambda_e = r_e + \gamma v'_e = V_e + \hat A_e",
)

LAMBDA_RETURN_CONCLUSION = v[t] + gae_closed_form()
LAMBDA_RETURN_WITHOUT_VALUE = gae_closed_form()
LAMBDA_RETURN_GAMMA_WITHOUT_LAMBDA = v[t] + gae_closed_form(gamma)

# ============================================================================ discounted returns
returns_recursion = Derivation(
    "return-recursion",
    (
        Step(
            r[t] + gamma * weighted_sum(r, t + 1, 0, K - 1, gamma),
            "G_t = r_t + gamma G_{t+1} inside the episode, G_{t+1} in closed form (K - 1 more "
            "steps to the episode's end; at K = 0 the empty sum: nothing after the end)",
        ),
        Step(
            r[t] + IndexSum(gamma * gamma**lag * r[t + 1 + lag], (lag, 0, K - 1)),
            "move gamma into the sum",
        ),
        Step(r[t] + IndexSum(gamma ** (lag + 1) * r[t + lag + 1], (lag, 0, K - 1)), "gamma^(l+1)"),
        Step(r[t] + weighted_sum(r, t, 1, K, gamma), "shift the index l -> l - 1"),
        Step(
            weighted_sum(r, t, 0, 0, gamma) + weighted_sum(r, t, 1, K, gamma),
            "r_t is the l = 0 term",
        ),
        Step(_rewards_to_cut, "merge the ranges"),
    ),
    statement=r"r_t + \gamma G_{t+1} = \sum_{l=0}^{K}\gamma^l r_{t+l}",
)
RETURN_MISSING_DISCOUNT = weighted_sum(r, t, 0, K, 1)
RETURN_OFF_BY_ONE = weighted_sum(r, t + 1, 0, K - 1, gamma)
RETURN_DISCOUNT_ONE_STEP_EARLY = IndexSum(gamma ** (lag + 1) * r[t + lag], (lag, 0, K))

# ============================================================================ n-step returns
# The window of t has M + 1 rewards, M = min(n, e(t) - t + 1) - 1, and its bootstrap value w is
# V_{t+M+1} if it ends inside the episode, the cut's v' if it ends at the cut.
window_end = sp.Symbol("M", integer=True, nonnegative=True)
window_value = sp.Symbol("w", real=True)
n_step_telescoping = Derivation(
    "n-step-telescoping",
    _telescoping_steps(
        window_end,
        window_value,
        v[t],
        "V_t plus the window's discounted TD errors, the last one apart: delta_{t+k} = "
        "r_{t+k} + gamma V_{t+k+1} - V_{t+k} for k < M, delta_{t+M} = r_{t+M} + gamma w - "
        "V_{t+M}",
    ),
    statement=(
        r"V_t + \sum_{k=0}^{M}\gamma^k\delta_{t+k}"
        r" = \sum_{k=0}^{M}\gamma^k r_{t+k} + \gamma^{M+1} w"
    ),
)
N_STEP_BOOTSTRAP_ONE_SHORT = (
    weighted_sum(r, t, 0, window_end, gamma) + gamma**window_end * window_value
)
N_STEP_NO_BOOTSTRAP = weighted_sum(r, t, 0, window_end, gamma)
N_STEP_NAMES = {window_end: "M", window_value: "w"}


# ============================================================================ TD error cases
terminated_flag = sp.Symbol("tau", real=True)  # 1 if terminated
truncated_flag = sp.Symbol("u", real=True)  # 1 if truncated
reward, value, final, following = sp.symbols("r_t V_t F_t N_t", real=True)
TD_NAMES = {terminated_flag: r"\tau_t", truncated_flag: r"u_t"}


def masked_td_error(tau: Any, u: Any) -> sp.Expr:
    r"""$r_t + \gamma (1 - \tau)(u F_t + (1 - u) N_t) - V_t$, the masks kept unevaluated."""
    keep = sp.Add(1, sp.Mul(-1, tau, evaluate=False), evaluate=False)
    not_truncated = sp.Add(1, sp.Mul(-1, u, evaluate=False), evaluate=False)
    target = sp.Add(
        sp.Mul(u, final, evaluate=False), sp.Mul(not_truncated, following, evaluate=False)
    )
    return sp.Add(reward, sp.Mul(gamma, keep, target, evaluate=False), -value, evaluate=False)


MASKED_TD = masked_td_error(terminated_flag, truncated_flag)
TD_BY_CASES = sp.Piecewise(
    (reward - value, sp.Eq(terminated_flag, 1)),
    (reward + gamma * final - value, sp.Eq(truncated_flag, 1)),
    (reward + gamma * following - value, True),
)


def _case(name: str, tau: int, u: Any, conclusion: sp.Expr, rule: str) -> Derivation:
    return Derivation(
        name,
        (
            Step(masked_td_error(tau, u), f"the masked TD error at a {name} step"),
            Step(conclusion, rule),
        ),
    )


td_terminated = _case(
    "terminated",
    1,
    truncated_flag,
    reward - value,
    "1 - tau = 0: nothing is bootstrapped, whatever u is (termination wins)",
)
td_truncated = _case(
    "truncated",
    0,
    1,
    reward + gamma * final - value,
    "1 - u = 0: bootstrap from final_values[t], not from the next entry of the buffer",
)
td_continuing = _case(
    "continuing",
    0,
    0,
    reward + gamma * following - value,
    "u = 0: bootstrap from the next value, values[t+1] (last_value at t = T - 1)",
)
td_cases = CaseAnalysis(
    "kind-of-step",
    sp.And(
        sp.Or(sp.Eq(terminated_flag, 0), sp.Eq(terminated_flag, 1)),
        sp.Or(sp.Eq(truncated_flag, 0), sp.Eq(truncated_flag, 1)),
    ),
    (
        Case(sp.Eq(terminated_flag, 1), td_terminated, {terminated_flag: 1}),
        Case(
            sp.And(sp.Eq(terminated_flag, 0), sp.Eq(truncated_flag, 1)),
            td_truncated,
            {terminated_flag: 0, truncated_flag: 1},
        ),
        Case(
            sp.And(sp.Eq(terminated_flag, 0), sp.Eq(truncated_flag, 0)),
            td_continuing,
            {terminated_flag: 0, truncated_flag: 0},
        ),
    ),
)
# The form the exact leg lambdifies (elementwise over whole arrays): the masks distributed.
td_masked_form = Derivation(
    "masked-form",
    (
        Step(MASKED_TD, "the one-line TD error with the two masks"),
        Step(
            reward
            + gamma * (1 - terminated_flag) * truncated_flag * final
            + gamma * (1 - terminated_flag) * (1 - truncated_flag) * following
            - value,
            "distribute: F_t is weighted by (1 - tau) u, N_t by (1 - tau)(1 - u)",
        ),
    ),
)
TD_TERMINATION_BOOTSTRAPPED = (
    reward + gamma * (truncated_flag * final + (1 - truncated_flag) * following) - value
)
TD_TRUNCATION_FIRST = reward + gamma * truncated_flag * final - value
TD_TRUNCATION_AS_TERMINATION = reward - value


# ============================================================================ examples
@dataclass(frozen=True)
class Trajectory:
    """A buffer ``[T, *B]`` with cut flags; ``final_values`` is NaN where it must not be read."""

    rewards: np.ndarray
    values: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_values: np.ndarray
    last_value: np.ndarray
    discount: float
    lambda_: float

    def __repr__(self) -> str:  # what a failing example prints as
        return (
            f"Trajectory(T={self.rewards.shape[0]}, B={self.rewards.shape[1:]}, "
            f"gamma={self.discount!r}, lambda={self.lambda_!r}, rewards={self.rewards.tolist()}, "
            f"values={self.values.tolist()}, terminated={self.terminated.astype(int).tolist()}, "
            f"truncated={self.truncated.astype(int).tolist()}, "
            f"final_values={self.final_values.tolist()}, last_value={self.last_value.tolist()})"
        )

    @property
    def columns(self) -> int:
        return int(np.prod(self.rewards.shape[1:], dtype=int))

    def column(self, name: str) -> np.ndarray:
        """The array ``name`` as ``[T, N]`` (``last_value`` as ``[N]``): one column per entry."""
        array = getattr(self, name)
        if name == "last_value":
            return array.reshape(self.columns)
        return array.reshape(array.shape[0], self.columns)


_BATCHES = ((), (1,), (3,), (2, 2))


@st.composite
def trajectories(draw: st.DrawFn) -> Trajectory:
    """Buffers of 1-8 steps with batch shape (), (1,), (3,) or (2, 2).

    Hypothesis draws the sizes, the flag rates, gamma in [0.1, 1] and lambda in [0, 1] (the
    endpoints 0 and 1 included); the arrays come from a NumPy generator seeded by a drawn
    integer, so flag patterns are varied (Hypothesis's own booleans and floats cluster on a
    few patterns and on zeros, where several mutants cannot be seen). Rewards and values have
    magnitudes in [0.5, 10] and random signs; each flag is set with its rate (cuts at the last
    step, both flags on one step and open last steps all occur). final_values is finite where
    truncated and not terminated, finite or NaN (a fair coin) where terminated, and NaN
    elsewhere: only the first may be read.
    """
    steps = draw(st.integers(1, 8))
    batch = draw(st.sampled_from(_BATCHES))
    rates = draw(st.tuples(st.sampled_from((0.15, 0.3, 0.5)), st.sampled_from((0.15, 0.3, 0.5))))
    discount = draw(st.one_of(st.just(1.0), st.floats(0.1, 1.0)))
    lambda_ = draw(st.one_of(st.sampled_from((0.0, 1.0)), st.floats(0.0, 1.0)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (steps, *batch)

    def reals(like: tuple[int, ...]) -> np.ndarray:
        return rng.choice((-1.0, 1.0), like) * rng.uniform(0.5, 10.0, like)

    terminated, truncated = rng.random(shape) < rates[0], rng.random(shape) < rates[1]
    given = (truncated & ~terminated) | (terminated & (rng.random(shape) < 0.5))
    return Trajectory(
        reals(shape),
        reals(shape),
        terminated,
        truncated,
        np.where(given, reals(shape), np.nan),
        reals(batch),
        discount,
        lambda_,
    )


# ============================================================================ the direct loop
# The independent side: the cut rules of the docstrings, one entry and one step at a time (no
# masks, no arrays of next values). `Rules` names the bug classes the mutants inject.
@dataclass(frozen=True)
class Rules:
    cut_at_termination: bool = True  # the recursion stops after a terminated step
    cut_at_truncation: bool = True  # the recursion stops after a truncated step
    bootstrap_truncation: bool = True  # a truncated step bootstraps from final_values
    bootstrap_termination: bool = False  # a terminated step bootstraps (wrong)
    next_value_same_step: bool = False  # V(s_{t+1}) read as values[t] (wrong)
    use_last_value: bool = True  # the open last step bootstraps from last_value


CORRECT = Rules()


def bootstrap_by_cases(example: Trajectory, rules: Rules = CORRECT) -> np.ndarray:
    """v'_t for every (t, entry) by the case rule: [T, N]."""
    steps, columns = example.rewards.shape[0], example.columns
    values, last = example.column("values"), example.column("last_value")
    terminated, truncated = example.column("terminated"), example.column("truncated")
    finals = example.column("final_values")
    out = np.empty((steps, columns))
    for b in range(columns):
        for s in range(steps):
            if rules.next_value_same_step:
                following_value = values[s, b]
            elif s == steps - 1:
                following_value = last[b] if rules.use_last_value else 0.0
            else:
                following_value = values[s + 1, b]
            if terminated[s, b]:
                out[s, b] = following_value if rules.bootstrap_termination else 0.0
            elif truncated[s, b]:
                out[s, b] = finals[s, b] if rules.bootstrap_truncation else 0.0
            else:
                out[s, b] = following_value
    return out


def td_errors_by_cases(example: Trajectory, rules: Rules = CORRECT) -> np.ndarray:
    """delta_t = r_t + gamma v'_t - V_t for every (t, entry): [T, N]."""
    rewards, values = example.column("rewards"), example.column("values")
    return rewards + example.discount * bootstrap_by_cases(example, rules) - values


def segment_ends(example: Trajectory, rules: Rules = CORRECT) -> np.ndarray:
    """e(t) for every (t, entry): the first step >= t that ends an episode, else T - 1.

    Returns an int array [T, N]; ``rules`` says which flags cut (a mutant may ignore some)."""
    steps, columns = example.rewards.shape[0], example.columns
    terminated, truncated = example.column("terminated"), example.column("truncated")
    ends = np.empty((steps, columns), dtype=int)
    for b in range(columns):
        for s in range(steps):
            e = s
            while e < steps - 1 and not (
                (terminated[e, b] and rules.cut_at_termination)
                or (truncated[e, b] and rules.cut_at_truncation)
            ):
                e += 1
            ends[s, b] = e
    return ends


def at_every_step(
    expression: Any,
    symbols: tuple[Any, ...],
    values_of: Callable[[Trajectory, Rules], Callable[[int, int, int], tuple[Any, ...]]],
    rules: Rules = CORRECT,
) -> Callable[[Trajectory], np.ndarray]:
    """The lambdified ``expression`` evaluated at every step t and entry b, with K = e(t) - t;
    ``values_of(example, rules)`` returns ``(b, t, K) -> values of symbols``."""
    function = lazy_lambdify(symbols, expression)

    def rhs(example: Trajectory) -> np.ndarray:
        ends = segment_ends(example, rules)
        values = values_of(example, rules)
        out = np.empty(ends.shape)
        for b in range(ends.shape[1]):
            for s in range(ends.shape[0]):
                out[s, b] = function(*values(b, s, int(ends[s, b] - s)))
        return out.reshape(example.rewards.shape)

    return rhs


def _gae_values(example: Trajectory, rules: Rules) -> Callable[[int, int, int], tuple[Any, ...]]:
    deltas = td_errors_by_cases(example, rules)
    return lambda b, s, k: (deltas[:, b], example.discount, example.lambda_, s, k)


def _lambda_return_values(
    example: Trajectory, rules: Rules
) -> Callable[[int, int, int], tuple[Any, ...]]:
    deltas, values = td_errors_by_cases(example, rules), example.column("values")
    return lambda b, s, k: (deltas[:, b], values[:, b], example.discount, example.lambda_, s, k)


def _return_values(example: Trajectory, rules: Rules) -> Callable[[int, int, int], tuple[Any, ...]]:
    rewards = example.column("rewards")
    return lambda b, s, k: (rewards[:, b], example.discount, s, k)


GAE_SYMBOLS = (delta, gamma, lam, t, K)
LAMBDA_RETURN_SYMBOLS = (delta, v, gamma, lam, t, K)
RETURN_SYMBOLS = (r, gamma, t, K)


def gae_rhs(expression: Any = None, rules: Rules = CORRECT) -> Callable[[Trajectory], np.ndarray]:
    return at_every_step(
        gae_closed_form() if expression is None else expression, GAE_SYMBOLS, _gae_values, rules
    )


def lambda_return_rhs(
    expression: Any = None, rules: Rules = CORRECT
) -> Callable[[Trajectory], np.ndarray]:
    expression = LAMBDA_RETURN_CONCLUSION if expression is None else expression
    return at_every_step(expression, LAMBDA_RETURN_SYMBOLS, _lambda_return_values, rules)


def return_rhs(
    expression: Any = None, rules: Rules = CORRECT
) -> Callable[[Trajectory], np.ndarray]:
    expression = _rewards_to_cut if expression is None else expression
    return at_every_step(expression, RETURN_SYMBOLS, _return_values, rules)


# ----------------------------------------------------------------------------- the lhs sides
def _trajectory_arguments(example: Trajectory) -> tuple[Any, ...]:
    return (
        example.rewards,
        example.values,
        example.terminated,
        example.truncated,
        example.final_values,
        example.last_value,
    )


def reference_gae(example: Trajectory) -> np.ndarray:
    """rlmath.reference.generalized_advantage_estimation on the whole buffer."""
    return generalized_advantage_estimation(
        *_trajectory_arguments(example), discount=example.discount, lambda_=example.lambda_
    )


def reference_lambda_returns(example: Trajectory) -> np.ndarray:
    """rlmath.reference.lambda_returns on the whole buffer."""
    return lambda_returns(
        *_trajectory_arguments(example), discount=example.discount, lambda_=example.lambda_
    )


def reference_td_errors(example: Trajectory) -> np.ndarray:
    """rlmath.reference.temporal_difference_errors on the whole buffer."""
    return temporal_difference_errors(*_trajectory_arguments(example), discount=example.discount)


def reference_returns(example: Trajectory) -> np.ndarray:
    """rlmath.reference.discounted_returns with dones = terminated | truncated."""
    return discounted_returns(
        example.rewards, example.terminated | example.truncated, discount=example.discount
    )


# ----------------------------------------------------------------------------- scales
def _step_sizes(example: Trajectory) -> np.ndarray:
    """|r_t| + gamma |v'_t| + |V_t|: the three terms of each TD error, [T, N]."""
    absolute = np.abs(bootstrap_by_cases(example))
    return (
        np.abs(example.column("rewards"))
        + example.discount * absolute
        + np.abs(example.column("values"))
    )


def _discounted_scale(sizes: np.ndarray, ends: np.ndarray, decay: float) -> float:
    r"""$\max_{t,b} \sum_{l=0}^{e(t)-t} \text{decay}^l \, \text{sizes}_{t+l,b}$, floored at TINY
    (below it rounding is absolute, e.g. when the decay underflows)."""
    worst = 0.0
    for b in range(ends.shape[1]):
        for s in range(ends.shape[0]):
            window = sizes[s : ends[s, b] + 1, b]
            worst = max(worst, float(decay ** np.arange(len(window)) @ window))
    return max(worst, TINY)


def gae_scale(example: Trajectory) -> float:
    """The sizes of the terms both sides add: sum_l (gamma lambda)^l (|r| + gamma |v'| + |V|)."""
    decay = example.discount * example.lambda_
    return _discounted_scale(_step_sizes(example), segment_ends(example), decay)


def lambda_return_scale(example: Trajectory) -> float:
    """gae_scale plus max |V_t| (the value added back)."""
    return gae_scale(example) + float(np.abs(example.values).max())


def td_scale(example: Trajectory) -> float:
    return max(float(_step_sizes(example).max()), TINY)


def return_scale(example: Trajectory) -> float:
    ends = segment_ends(example)
    return _discounted_scale(np.abs(example.column("rewards")), ends, example.discount)


def _n_terms(example: Trajectory) -> int:
    return 3 * example.rewards.shape[0] + 1


# ----------------------------------------------------------------------------- TD exact leg
def _td_arguments(
    example: Trajectory,
    *,
    next_values: np.ndarray | None = None,
    finals: np.ndarray | None = None,
) -> tuple:
    """Values of (r_t, V_t, F_t, N_t, tau, u, gamma), whole arrays (the form is elementwise).
    F_t is read only where truncated and not terminated (elsewhere replaced by 0, as the
    convention says it is ignored); N_t = values[t+1], last_value at t = T - 1."""
    if finals is None:
        used = example.truncated & ~example.terminated
        finals = np.where(used, example.final_values, 0.0)
    if next_values is None:
        next_values = np.concatenate([example.values[1:], example.last_value[np.newaxis]])
    return (
        example.rewards,
        example.values,
        finals,
        next_values,
        example.terminated.astype(float),
        example.truncated.astype(float),
        example.discount,
    )


TD_SYMBOLS = (reward, value, final, following, terminated_flag, truncated_flag, gamma)


def td_rhs(
    expression: Any,
    next_values: Callable[[Trajectory], np.ndarray] | None = None,
    finals: Callable[[Trajectory], np.ndarray] | None = None,
) -> Callable[[Trajectory], np.ndarray]:
    """The lambdified ``expression`` on whole arrays (a mutant's wrong form, N_t or F_t)."""
    function = lazy_lambdify(TD_SYMBOLS, expression)

    def rhs(example: Trajectory) -> np.ndarray:
        arguments = _td_arguments(
            example,
            next_values=None if next_values is None else next_values(example),
            finals=None if finals is None else finals(example),
        )
        return np.broadcast_to(function(*arguments), example.rewards.shape)

    return rhs


def _last_value_ignored(example: Trajectory) -> np.ndarray:
    return np.concatenate([example.values[1:], np.zeros_like(example.last_value)[np.newaxis]])


def _same_step(example: Trajectory) -> np.ndarray:
    return example.values


def _final_values_wherever_done(example: Trajectory) -> np.ndarray:
    return np.where(example.terminated | example.truncated, example.final_values, 0.0)


# ----------------------------------------------------------------------------- n-step side
N_STEP_SYMBOLS = (r, window_value, gamma, t, window_end)
n_step_examples = st.tuples(trajectories(), st.integers(1, 9))  # (buffer, n)


def reference_n_step(example: tuple[Trajectory, int]) -> np.ndarray:
    """rlmath.reference.n_step_returns on the whole buffer."""
    trajectory, n = example
    return n_step_returns(
        *_trajectory_arguments(trajectory), discount=trajectory.discount, n_steps=n
    )


def _windows(trajectory: Trajectory, n: int, rules: Rules) -> tuple[np.ndarray, np.ndarray]:
    """(M, w) for every (t, entry) by a direct loop: M + 1 = min(n, e(t) - t + 1) rewards, and
    w = V_{t+M+1} inside the episode or the cut's bootstrap value at the cut."""
    ends = segment_ends(trajectory, rules)
    cut_values = bootstrap_by_cases(trajectory, rules)
    values = trajectory.column("values")
    last_offsets = np.empty(ends.shape, dtype=int)
    window_values = np.empty(ends.shape)
    for b in range(ends.shape[1]):
        for s in range(ends.shape[0]):
            m = min(n, ends[s, b] - s + 1)
            last_offsets[s, b] = m - 1
            stop = s + m - 1
            if stop < ends[s, b]:
                window_values[s, b] = values[stop if rules.next_value_same_step else stop + 1, b]
            else:
                window_values[s, b] = cut_values[stop, b]
    return last_offsets, window_values


def n_step_rhs(
    expression: Any = None, rules: Rules = CORRECT, *, extra_step: int = 0
) -> Callable[[tuple[Trajectory, int]], np.ndarray]:
    """The lambdified ``expression`` at every (t, b) with that entry's window (``extra_step``:
    a window of n + extra_step rewards, a mutant)."""
    function = lazy_lambdify(
        N_STEP_SYMBOLS, n_step_telescoping.conclusion if expression is None else expression
    )

    def rhs(example: tuple[Trajectory, int]) -> np.ndarray:
        trajectory, n = example
        last_offsets, window_values = _windows(trajectory, n + extra_step, rules)
        rewards = trajectory.column("rewards")
        out = np.empty(last_offsets.shape)
        for b in range(out.shape[1]):
            for s in range(out.shape[0]):
                out[s, b] = function(
                    rewards[:, b], window_values[s, b], trajectory.discount, s, last_offsets[s, b]
                )
        return out.reshape(trajectory.rewards.shape)

    return rhs


def n_step_scale(example: tuple[Trajectory, int]) -> float:
    """max over (t, b) of sum_k gamma^k |r_{t+k}| + gamma^{M+1} |w| (floored at TINY)."""
    trajectory, n = example
    last_offsets, window_values = _windows(trajectory, n, CORRECT)
    rewards, g = np.abs(trajectory.column("rewards")), trajectory.discount
    worst = 0.0
    for b in range(rewards.shape[1]):
        for s in range(rewards.shape[0]):
            m = last_offsets[s, b] + 1
            total = float(g ** np.arange(m) @ rewards[s : s + m, b]) + g**m * abs(
                window_values[s, b]
            )
            worst = max(worst, total)
    return max(worst, TINY)


# ============================================================================ mutants
def cut_mutants(rhs_of: Callable[..., Callable[[Any], np.ndarray]]) -> tuple[Mutant, ...]:
    """The bug classes of the cut rules, as wrong right-hand sides (the direct loop with one
    rule broken); ``rhs_of(rules=...)`` builds the claim's rhs under those rules."""
    return (
        Mutant(
            "bootstrap-across-truncation",
            "the done mask ignores truncation: the recursion runs on across a time-limit cut "
            "into the next episode",
            exact=rhs_of(rules=replace(CORRECT, cut_at_truncation=False)),
        ),
        Mutant(
            "truncation-as-termination",
            "a truncated step bootstraps nothing (final_values ignored), as if it had terminated",
            exact=rhs_of(rules=replace(CORRECT, bootstrap_truncation=False)),
        ),
        Mutant(
            "termination-bootstrapped",
            "a terminated step bootstraps from the next value, as if the episode went on",
            exact=rhs_of(rules=replace(CORRECT, bootstrap_termination=True)),
        ),
        Mutant(
            "next-value-same-step",
            "off by one: V(s_{t+1}) read as values[t], the value of the same step",
            exact=rhs_of(rules=replace(CORRECT, next_value_same_step=True)),
        ),
        Mutant(
            "last-value-ignored",
            "the open last step of the buffer bootstraps 0 instead of last_value",
            exact=rhs_of(rules=replace(CORRECT, use_last_value=False)),
        ),
    )


_DIRECT_LOOP = (
    "the lambdified conclusion evaluated at every step t and batch entry b with K = e(t) - t: "
    "lambdify's sum over l needs one integer K per call, and the segments differ by entry; the "
    "TD errors in it come from the case rule applied one entry at a time (a direct loop, not "
    "the reference's masks)"
)
_SEQUENCE_ASSUMPTIONS = (
    "General segment length: the derivations hold for every integer K = e(t) - t >= 0 (a "
    "symbol), and the exact leg checks buffers of 1-8 steps with batch shapes (), (1,), (3,), "
    "(2, 2).",
    "Conventions of rlmath.reference: time-major [T, *B]; terminated means no bootstrap; "
    "truncated bootstraps from final_values[t]; termination wins when both flags are set; the "
    "open last step bootstraps from last_value.",
    "The recursion from the cut backwards has exactly one solution (backward induction), so "
    "the closed form, which satisfies it and its boundary condition, is that solution.",
)
_GAE_REFERENCES = (
    "Schulman, J. et al., *High-Dimensional Continuous Control Using Generalized Advantage "
    "Estimation*, ICLR 2016, eqs. (16)-(18).",
    "Pardo, F. et al., *Time Limits in Reinforcement Learning*, ICML 2018 (bootstrap at "
    "time-limit truncations).",
    "Gymnasium documentation, *Handling Time Limits* (terminated vs truncated), 2023.",
)
_NO_MONTE_CARLO = (
    " There is no Monte-Carlo leg: the claim is a deterministic identity between finite sums "
    "of given numbers, with no expectation to sample."
)

CLAIMS = (
    Claim(
        id="gae-closed-form",
        title="GAE with terminations and truncations: the closed form per segment",
        statement=Statement(
            gae_recursion.start,
            gae_recursion.conclusion,
            where=(
                r"K = e(t) - t \ge 0,\ e(t) \text{ the next cut};\ \hat A_{t+1} = "
                r"\sum_{l=0}^{K-1}(\gamma\lambda)^l\delta_{t+1+l} \text{ (empty at the cut)}"
            ),
            symbol_names=NAMES,
        ),
        assumptions=(
            *_SEQUENCE_ASSUMPTIONS,
            "The cut's bootstrap value enters only through delta at the cut (derivation "
            "'lambda-one' writes it out: 0 after a termination, final_values after a "
            "truncation, last_value at the end of the buffer).",
        ),
        references=_GAE_REFERENCES,
        summary=(
            "Your GAE is right if each advantage is the (gamma lambda)-discounted sum of TD "
            "errors up to the next episode end and never beyond it, with the bootstrap of a "
            "time-limit cut inside the last TD error; lambda = 0 gives the TD error and "
            "lambda = 1 the bootstrapped return minus the value."
        ),
        symbolic=SymbolicLeg((gae_recursion, gae_at_cut, gae_lambda_zero, gae_lambda_one)),
        exact=ExactLeg(
            trajectories(),
            lhs=reference_gae,
            rhs=gae_rhs(),
            rhs_reason=_DIRECT_LOOP,
            rtol=lambda example: exact_rtol(1.0, _n_terms(example)),
            error_scale=gae_scale,
            description=(
                "rlmath.reference.generalized_advantage_estimation on the whole buffer vs "
                "sum_{l=0}^{e(t)-t} (gamma lambda)^l delta_{t+l} at every (t, b), e(t) found by "
                "scanning the flags and delta by the case rule, one entry at a time; error "
                "relative to sum_l (gamma lambda)^l (|r| + gamma |v'| + |V|)"
            ),
        ),
        mutants=(
            Mutant(
                "gamma-without-lambda",
                "A_t = delta_t + gamma A_{t+1}: lambda dropped from the recursion",
                symbolic=SymbolicMutation("closed-form", GAE_GAMMA_WITHOUT_LAMBDA),
                exact=gae_rhs(GAE_GAMMA_WITHOUT_LAMBDA),
            ),
            Mutant(
                "off-by-one",
                "sum_l (gamma lambda)^l delta_{t+l+1}: the TD errors one step late",
                symbolic=SymbolicMutation("closed-form", GAE_OFF_BY_ONE),
                exact=gae_rhs(GAE_OFF_BY_ONE),
            ),
            Mutant(
                "cut-delta-dropped",
                "A_e = 0 at the cut: the last TD error of each episode (with its bootstrap) lost",
                symbolic=SymbolicMutation("at-the-cut", GAE_CUT_DROPPED),
                exact=gae_rhs(IndexSum((gamma * lam) ** lag * delta[t + lag], (lag, 0, K - 1))),
            ),
            Mutant(
                "lambda-one-without-bootstrap",
                "lambda = 1 form sum gamma^l r_{t+l} - V_t: the cut's bootstrap gamma^{K+1} v' "
                "dropped (truncation treated as termination)",
                symbolic=SymbolicMutation("lambda-one", LAMBDA_ONE_NO_BOOTSTRAP),
            ),
            *cut_mutants(lambda rules: gae_rhs(rules=rules)),
        ),
        notes=(
            "The exact leg runs the package's reference GAE (a backward recursion over the "
            "whole batch with its masks) on generated buffers with random terminated/truncated "
            "flags, NaN in final_values entries that must not be read, and compares every "
            "entry with the closed form summed up to the next cut. The mutants are the bug "
            "classes of real GAE code: crossing a truncation, ignoring final_values, "
            "bootstrapping a termination, the next value taken from the same step, last_value "
            "ignored, gamma instead of gamma lambda, an off-by-one sum." + _NO_MONTE_CARLO
        ),
    ),
    Claim(
        id="td-error-cut-rules",
        title="The TD error with terminations and truncations: the masked form is the rule",
        statement=Statement(
            MASKED_TD,
            TD_BY_CASES,
            derivation="kind-of-step",
            where=(
                r"\tau_t, u_t \in \{0, 1\};\ F_t = \text{final\_values}_t;\ N_t = V_{t+1}"
                r"\ (\text{last\_value at } t = T - 1)"
            ),
            symbol_names=TD_NAMES,
        ),
        assumptions=(
            "The flags are 0 or 1 (the case analysis covers the four combinations; with both "
            "set the terminated case applies, for any u).",
            "N_t is the next entry of the buffer, values[t+1], and last_value at t = T - 1; "
            "final_values[t] is read only where truncated and not terminated (the examples put "
            "NaN where no episode ended and at half the terminated entries, and the reference "
            "must ignore it).",
            "The exact leg checks buffers of 1-8 steps with batch shapes (), (1,), (3,), (2, 2).",
        ),
        references=(
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd "
            "ed., 2018, eq. (6.5).",
            "Pardo, F. et al., *Time Limits in Reinforcement Learning*, ICML 2018.",
            "Gymnasium documentation, *Handling Time Limits*, 2023.",
        ),
        summary=(
            "A TD error bootstraps nothing after a termination, the final observation's value "
            "after a time-limit truncation, and the next value otherwise; termination wins "
            "when both flags are set."
        ),
        symbolic=SymbolicLeg((td_masked_form,), cases=(td_cases,)),
        exact=ExactLeg(
            trajectories(),
            lhs=reference_td_errors,
            symbols=TD_SYMBOLS,
            arguments=_td_arguments,
            derivation="masked-form",
            rtol=exact_rtol(1.0, 3),
            error_scale=td_scale,
            description=(
                "rlmath.reference.temporal_difference_errors vs the lambdified masked form "
                "r + gamma (1 - tau) u F + gamma (1 - tau)(1 - u) N - V on the whole arrays; "
                "error relative to max(|r| + gamma |v'| + |V|)"
            ),
        ),
        mutants=(
            Mutant(
                "termination-bootstrapped",
                "(1 - tau) forgotten: a terminated step bootstraps from final_values or the "
                "next value",
                symbolic=SymbolicMutation("terminated", TD_TERMINATION_BOOTSTRAPPED),
                exact=td_rhs(TD_TERMINATION_BOOTSTRAPPED),
            ),
            Mutant(
                "truncation-checked-first",
                "u F + (1 - u)(1 - tau) N: with both flags set the truncation wins and "
                "final_values is bootstrapped",
                symbolic=SymbolicMutation("terminated", TD_TRUNCATION_FIRST),
                exact=td_rhs(
                    reward
                    + gamma
                    * (
                        truncated_flag * final
                        + (1 - truncated_flag) * (1 - terminated_flag) * following
                    )
                    - value,
                    finals=_final_values_wherever_done,
                ),
            ),
            Mutant(
                "truncation-as-termination",
                "a truncated step bootstraps nothing (final_values ignored)",
                symbolic=SymbolicMutation("truncated", TD_TRUNCATION_AS_TERMINATION),
                exact=td_rhs(
                    reward
                    + gamma * (1 - terminated_flag) * (1 - truncated_flag) * following
                    - value
                ),
            ),
            Mutant(
                "next-value-same-step",
                "off by one: N_t = values[t] (the value of the same step)",
                exact=td_rhs(td_masked_form.conclusion, _same_step),
            ),
            Mutant(
                "last-value-ignored",
                "N_{T-1} = 0: the open last step does not bootstrap from last_value",
                exact=td_rhs(td_masked_form.conclusion, _last_value_ignored),
            ),
        ),
        notes=(
            "The symbolic leg proves, case by case over the flags, that the one-line masked "
            "TD error most code writes is the convention; the exact leg runs the package's "
            "reference (nested selections) against that masked form on whole arrays, with NaN "
            "in final_values entries that must not be read." + _NO_MONTE_CARLO
        ),
    ),
    Claim(
        id="lambda-returns-closed-form",
        title="Lambda-returns with terminations and truncations are GAE plus the value",
        statement=Statement(
            lambda_return_recursion.start,
            lambda_return_recursion.conclusion,
            where=r"K = e(t) - t \ge 0;\ r_t = \delta_t + V_t - \gamma V_{t+1} \text{ inside "
            r"the segment}",
            symbol_names=NAMES,
        ),
        assumptions=(
            *_SEQUENCE_ASSUMPTIONS,
            "Inside a segment the reward is written through the TD error, r_t = delta_t + V_t - "
            "gamma V_{t+1} (its definition solved for r_t); at the cut r_e = delta_e + V_e - "
            "gamma v'_e with the cut's bootstrap value v'.",
        ),
        references=(
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd "
            "ed., 2018, eqs. (12.2) and (12.18).",
            *_GAE_REFERENCES,
        ),
        summary=(
            "Your TD(lambda) targets are right if they equal your GAE advantages plus the "
            "values, episode by episode, with the same bootstrap at each cut."
        ),
        symbolic=SymbolicLeg((lambda_return_recursion, lambda_return_at_cut)),
        exact=ExactLeg(
            trajectories(),
            lhs=reference_lambda_returns,
            rhs=lambda_return_rhs(),
            rhs_reason=_DIRECT_LOOP,
            rtol=lambda example: exact_rtol(1.0, _n_terms(example)),
            error_scale=lambda_return_scale,
            description=(
                "rlmath.reference.lambda_returns (its own blended recursion) on the whole buffer "
                "vs V_t + sum_{l=0}^{e(t)-t} (gamma lambda)^l delta_{t+l} at every (t, b), "
                "delta by the case rule one entry at a time"
            ),
        ),
        mutants=(
            Mutant(
                "advantage-without-value",
                "G_t = A_t: the value V_t not added back",
                symbolic=SymbolicMutation("lambda-return-recursion", LAMBDA_RETURN_WITHOUT_VALUE),
                exact=lambda_return_rhs(LAMBDA_RETURN_WITHOUT_VALUE),
            ),
            Mutant(
                "gamma-without-lambda",
                "V_t + sum gamma^l delta_{t+l}: lambda dropped (the lambda = 1 return at every "
                "lambda)",
                symbolic=SymbolicMutation(
                    "lambda-return-recursion", LAMBDA_RETURN_GAMMA_WITHOUT_LAMBDA
                ),
                exact=lambda_return_rhs(LAMBDA_RETURN_GAMMA_WITHOUT_LAMBDA),
            ),
            Mutant(
                "cut-bootstrap-dropped",
                "G_e = V_e at the cut: the reward and bootstrap of the last step lost",
                symbolic=SymbolicMutation("lambda-return-at-the-cut", v[t]),
            ),
            *cut_mutants(lambda rules: lambda_return_rhs(rules=rules)),
        ),
        notes=(
            "The reference computes lambda-returns by their own recursion (blending the next "
            "value and the next return), not through GAE; the exact leg compares it with the "
            "closed form V_t + A_t. With lambda = 1 and terminated cuts this is the "
            "discounted return of claim discounted-returns-closed-form." + _NO_MONTE_CARLO
        ),
    ),
    Claim(
        id="discounted-returns-closed-form",
        title="Discounted returns stop at every episode end",
        statement=Statement(
            returns_recursion.start,
            returns_recursion.conclusion,
            where=r"K = e(t) - t \ge 0,\ e(t) \text{ the end of } t\text{'s episode (or } T-1)",
        ),
        assumptions=(
            "General episode length: the derivation holds for every integer K = e(t) - t >= 0, "
            "and the exact leg checks buffers of 1-8 steps with batch shapes (), (1,), (3,), "
            "(2, 2).",
            "dones = terminated | truncated cuts the sum; nothing is bootstrapped (an "
            "unfinished episode gets the partial sum of the rewards seen).",
            "The recursion has exactly one solution (backward induction from the episode's end).",
        ),
        references=(
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd "
            "ed., 2018, eq. (3.8).",
        ),
        summary=(
            "A discounted return sums the discounted rewards of its own episode only: the sum "
            "restarts after every done flag."
        ),
        symbolic=SymbolicLeg((returns_recursion,)),
        exact=ExactLeg(
            trajectories(),
            lhs=reference_returns,
            rhs=return_rhs(),
            rhs_reason=(
                "the lambdified conclusion evaluated at every step t and batch entry b with "
                "K = e(t) - t (lambdify's sum over l needs one integer K per call, and the "
                "episodes differ by entry)"
            ),
            rtol=lambda example: exact_rtol(1.0, example.rewards.shape[0]),
            error_scale=return_scale,
            description=(
                "rlmath.reference.discounted_returns (dones = terminated | truncated) vs "
                "sum_{l=0}^{e(t)-t} gamma^l r_{t+l} at every (t, b), e(t) by scanning the flags"
            ),
        ),
        mutants=(
            Mutant(
                "missing-discount",
                "sum_l r_{t+l}: the rewards not discounted",
                symbolic=SymbolicMutation("return-recursion", RETURN_MISSING_DISCOUNT),
                exact=return_rhs(RETURN_MISSING_DISCOUNT),
            ),
            Mutant(
                "off-by-one",
                "sum_l gamma^l r_{t+1+l}: the return starts at the next reward",
                symbolic=SymbolicMutation("return-recursion", RETURN_OFF_BY_ONE),
                exact=return_rhs(RETURN_OFF_BY_ONE),
            ),
            Mutant(
                "discount-one-step-early",
                "sum_l gamma^(l+1) r_{t+l}: the first reward discounted too",
                symbolic=SymbolicMutation("return-recursion", RETURN_DISCOUNT_ONE_STEP_EARLY),
                exact=return_rhs(RETURN_DISCOUNT_ONE_STEP_EARLY),
            ),
            Mutant(
                "return-across-episodes",
                "the done flags ignored: the sum runs on into the next episode",
                exact=return_rhs(
                    rules=replace(CORRECT, cut_at_termination=False, cut_at_truncation=False)
                ),
            ),
        ),
        notes="The reference is a backward recursion with a mask." + _NO_MONTE_CARLO,
    ),
    Claim(
        id="n-step-returns-closed-form",
        title="n-step returns with cuts: the value plus the window's discounted TD errors",
        statement=Statement(
            n_step_telescoping.start,
            n_step_telescoping.conclusion,
            where=(
                r"M + 1 = \min(n, e(t) - t + 1);\ w = V_{t+M+1} \text{ inside the episode, the "
                r"cut's } v'_e \text{ at the cut}"
            ),
            symbol_names=N_STEP_NAMES,
        ),
        assumptions=(
            "General window length: the derivation holds for every integer M >= 0 (a symbol); "
            "the exact leg checks n = 1..9 on buffers of 1-8 steps with batch shapes (), (1,), "
            "(3,), (2, 2), so windows cut by episode ends and by the buffer's end both occur.",
            "Conventions of rlmath.reference: the window stops at the episode's end; after a "
            "termination nothing is bootstrapped, after a truncation final_values[t], at the "
            "end of the buffer last_value; termination wins when both flags are set.",
        ),
        references=(
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd "
            "ed., 2018, eq. (7.1).",
            "Mnih, V. et al., *Asynchronous Methods for Deep Reinforcement Learning*, ICML 2016, "
            "Algorithm S3.",
            "Pardo, F. et al., *Time Limits in Reinforcement Learning*, ICML 2018.",
        ),
        summary=(
            "An n-step return is n discounted rewards plus gamma^n times the value where the "
            "window ends, and a window that reaches an episode end stops there and takes that "
            "end's bootstrap (0 after a termination, the final observation's value after a "
            "truncation)."
        ),
        symbolic=SymbolicLeg((n_step_telescoping,)),
        exact=ExactLeg(
            n_step_examples,
            lhs=reference_n_step,
            rhs=n_step_rhs(),
            rhs_reason=(
                "the lambdified conclusion evaluated at every step t and batch entry b with that "
                "entry's window (lambdify's sum needs one integer M per call, and the windows "
                "differ by entry); M and w come from a direct loop over the flags"
            ),
            rtol=lambda example: exact_rtol(1.0, example[1] + 2),
            error_scale=n_step_scale,
            description=(
                "rlmath.reference.n_step_returns vs sum_{k=0}^{M} gamma^k r_{t+k} + "
                "gamma^{M+1} w at every (t, b), the window (M, w) found by a direct loop"
            ),
        ),
        mutants=(
            Mutant(
                "bootstrap-discount-one-short",
                "gamma^M w instead of gamma^(M+1) w: the bootstrap discounted once too few",
                symbolic=SymbolicMutation("n-step-telescoping", N_STEP_BOOTSTRAP_ONE_SHORT),
                exact=n_step_rhs(N_STEP_BOOTSTRAP_ONE_SHORT),
            ),
            Mutant(
                "no-bootstrap",
                "the rewards of the window only: the value where the window ends dropped",
                symbolic=SymbolicMutation("n-step-telescoping", N_STEP_NO_BOOTSTRAP),
                exact=n_step_rhs(N_STEP_NO_BOOTSTRAP),
            ),
            Mutant(
                "window-one-too-long",
                "n + 1 rewards in the window (an off-by-one in the loop bound)",
                exact=n_step_rhs(extra_step=1),
            ),
            *cut_mutants(lambda rules: n_step_rhs(rules=rules)),
        ),
        notes=(
            "The reference builds every window at once with masks (rewards added while the "
            "window is open, the bootstrap where it closes); the exact leg finds each window by "
            "a direct loop." + _NO_MONTE_CARLO
        ),
    ),
)
