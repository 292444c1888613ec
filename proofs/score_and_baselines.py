r"""The score has zero mean; baselines and reward-to-go keep the policy gradient unbiased.

A baseline sets the variance: the second moment is a quadratic in b(s), least at b*(s).

Main statements. For a softmax policy $\pi_\theta(\cdot \mid s)$ over $n$ actions,

$$ \mathbb E_{a \sim \pi_\theta(\cdot|s)}\!\left[\nabla_\theta \log \pi_\theta(a \mid s)\right] = 0, $$

hence for any baseline $b(s)$ that does not depend on the action,

$$ \mathbb E_{a \sim \pi}\!\left[\nabla_\theta \log \pi_\theta(a|s)\, Q(s,a)\right]
   = \mathbb E_{a \sim \pi}\!\left[\nabla_\theta \log \pi_\theta(a|s)\,(Q(s,a) - b(s))\right], $$

and, over trajectories of an $H$-step episode, past rewards can be dropped from each action's
credit (reward-to-go):

$$ \mathbb E_\tau\!\left[\sum_{t<H} \nabla \log \pi(a_t|s_t) \sum_{i<H} \gamma^i r_i\right]
   = \mathbb E_\tau\!\left[\sum_{t<H} \nabla \log \pi(a_t|s_t) \sum_{i=t}^{H-1} \gamma^i r_i\right]. $$

A baseline changes the variance instead. For REINFORCE with a state baseline,
$g_b = \sum_t \gamma^t (G_t - b(s_t)) \nabla\log\pi(a_t|s_t)$, row $s$ of $g_b$ is
$X_s - b(s) Y_s$ (rows $s$ of $X = \sum_t \gamma^t G_t \nabla\log\pi_t$ and
$Y = \sum_t \gamma^t \nabla\log\pi_t$), and

$$ \mathbb E|X_s - b Y_s|^2 = \mathbb E|X_s|^2 - 2b\,\mathbb E[X_s^\top Y_s]
   + b^2\, \mathbb E|Y_s|^2
   = \mathbb E|g_{b^*,s}|^2 + \mathbb E|Y_s|^2 (b - b^*)^2, \qquad
   b^*(s) = \frac{\mathbb E[X_s^\top Y_s]}{\mathbb E|Y_s|^2}, $$

so $\mathrm{Var}(g_b) - \mathrm{Var}(g_{b^*}) = \sum_s \mathbb E|Y_s|^2 (b(s) - b^*(s))^2 \ge 0$.

Conventions. Gradients are with respect to the tabular logits ``theta[s, a]``; the softmax
score is $\partial \log\pi(a|s) / \partial\theta_{s,k} = \mathbb 1[a = k] - \pi(k|s)$ (and 0
for the logits of other states). $r_i = r(s_i, a_i)$ is the reward for $a_i$ in $s_i$, time
starts at 0. The reward-to-go keeps the factor $\gamma^i$ (not $\gamma^{i-t}$): the objective
is the discounted return from time 0, $J = \mathbb E[\sum_i \gamma^i r_i]$.

Proof sketch. $\sum_a \pi(a)(\mathbb 1[a=k] - \pi(k)) = \pi(k) - \pi(k) \sum_a \pi(a) = 0$. A
baseline is constant in $a$, so its term is $b$ times the zero-mean score. For reward-to-go,
fix a time $t$ and condition on the history $h = (s_0, a_0, \dots, s_t)$ (tower property):
the past rewards $G = \sum_{i<t} \gamma^i r_i$ are fixed by $h$, the action is drawn from
$\pi(\cdot|s_t)$, and the expected future credit given $(h, a_t)$ is
$\gamma^t (r(s_t, a_t) + W(h, a_t))$ with $W = \mathbb E[\sum_{i>t} \gamma^{i-t} r_i \mid h, a_t]$.
The past rewards then multiply the zero-mean score and drop out; summing over $t$ gives the
statement.
For the second moment, expand the square row by row (the score of $s_t$ lives in row $s_t$,
so the rows do not mix) and complete the square in $b(s)$; the mean does not depend on $b$, so
the second moments and the variances differ by the same $|\mathbb E g|^2$.

References. Williams, R. J., "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8, 1992, Sec. 4 (reinforcement
baseline); Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed.,
2018, Sec. 13.4, eq. (13.11) (REINFORCE with baseline); Greensmith, E., Bartlett, P. L.,
Baxter, J., "Variance Reduction Techniques for Gradient Estimates in Reinforcement Learning",
JMLR 5, 2004 (baselines; Thm. 8, the optimal constant baseline); Peters, J. and Schaal, S.,
"Reinforcement learning of motor skills with policy gradients", Neural Networks 21, 2008,
eq. (13); Schulman, J., Moritz, P., Levine, S., Jordan, M., Abbeel, P.,
"High-Dimensional Continuous Control Using Generalized Advantage Estimation", ICLR 2016,
eq. (1) (the equivalent forms of the policy gradient, including reward-to-go).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import SoftmaxPolicy, exact
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
    monte_carlo_leg,
    one_slot_cache,
)
from rlmath.claims.scaffolding import COMPLEX_STEP
from rlmath.estimators import reinforce_reward_to_go, reinforce_with_baseline, weighted_score_sum
from rlmath.sampling import Rollouts, rollouts, sample_actions
from rlmath.statistics import DEFAULT_FALSE_ALARM, sample_size
from rlmath.symbolic import IndexSum
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
NAMES = {theta: r"\theta", beta: r"\beta"}


def pi(action: sp.Expr, total: type[sp.Sum] = sp.Sum) -> sp.Expr:
    """$\\pi_\\theta(\\text{action} \\mid s)$, the softmax of the state's logits.

    ``total`` is the class of the normaliser's sum: ``sp.Sum``, whose ``doit`` sums a Kronecker
    delta at once, or :class:`rlmath.symbolic.IndexSum`, which never tries closed forms (the
    reward-to-go derivation, whose nested sums ``sp.Sum`` takes minutes on)."""
    return sp.exp(theta[action]) / total(sp.exp(theta[a]), (a, 0, n - 1))


def E(term: sp.Expr, total: type[sp.Sum] = sp.Sum) -> sp.Sum:
    """$\\mathbb E_{a \\sim \\pi_\\theta(\\cdot|s)}[\\text{term}]$."""
    return total(pi(a, total) * term, (a, 0, n - 1))


def softmax_score(total: type[sp.Sum] = sp.Sum) -> sp.Expr:
    """d log pi(a|s) / d theta_{s,k} = 1[a = k] - pi(k|s)."""
    return sp.KroneckerDelta(a, k) - pi(k, total)


score = softmax_score()

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
INDICATOR_SCORE_MEAN = E(sp.KroneckerDelta(a, k))  # the -pi(k) dropped: = pi(k)

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
ACTION_DEPENDENT_BASELINE = E((Q[a] - beta[a]) * score)
INDICATOR_SCORE_BASELINE = E((Q[a] - b) * sp.KroneckerDelta(a, k))

# ============================================================================ reward-to-go
# One time t >= 1 (at t = 0 there is no past reward and both sides are the same expression)
# and one state s. The pair (history up to s_t, a_t) is drawn as: a history h_j (j < J, with
# probability q_j, counting only histories with s_t = s, the state whose logits the score
# differentiates), then a_t ~ pi(.|s). On h_j the past rewards are G_j = sum_{i<t} gamma^i r_i;
# given (h_j, a_t = a) the expected credit from t on is gamma^t (r_{j,a} + W_{j,a}), with
# r_{j,a} = r(s_t, a) and W_{j,a} = E[sum_{i>t} gamma^(i-t) r_i | h_j, a_t = a]. Summing the
# statement over t (linearity) gives E[sum_t score_t R(tau)] = E[sum_t score_t sum_{i>=t} ...].
j = sp.Symbol("j", integer=True)
J = sp.Symbol("J", integer=True, positive=True)
t = sp.Symbol("t", integer=True, positive=True)
gamma = sp.Symbol("gamma", nonnegative=True)
q = sp.IndexedBase("q", nonnegative=True)
G = sp.IndexedBase("G", real=True)  # past rewards on history j
R = sp.IndexedBase("r", real=True)  # r(s_t, a) on history j
W = sp.IndexedBase("W", real=True)  # expected discounted rewards after t, given (h_j, a)
RTG_NAMES = {**NAMES, G: r"G^{<t}"}


def E_(term: sp.Expr) -> sp.Sum:
    """E over the actions with :class:`~rlmath.symbolic.IndexSum` sums (see :func:`pi`)."""
    return E(term, IndexSum)


def pi_(action: sp.Expr) -> sp.Expr:
    return pi(action, IndexSum)


score_ = softmax_score(IndexSum)


def over_histories(term: sp.Expr) -> sp.Sum:
    """$\\sum_j q_j\\, \\text{term}$: the expectation over histories up to $s_t$ (with $s_t = s$)."""
    return IndexSum(q[j] * term, (j, 0, J - 1))


future = gamma**t * (R[j, a] + W[j, a])  # E[sum_{i >= t} gamma^i r_i | h_j, a_t = a]
reward_to_go = Derivation(
    "per-step",
    (
        Step(
            over_histories(E_((G[j] + future) * score_)),
            "time t's term of E[score_t R(tau)], conditioned on the history up to s_t (tower "
            "property): the past rewards G_j are fixed by it, the rest has expectation future",
        ),
        Step(
            over_histories(E_(future * score_)) + over_histories(G[j] * E_(score_)),
            "linearity: split the credit into past rewards and reward-to-go; G_j does not "
            "depend on a",
        ),
        Step(
            over_histories(E_(future * score_)) + over_histories(G[j] * (pi_(k) - pi_(k) * E_(1))),
            "sum the Kronecker delta",
        ),
        Step(
            over_histories(E_(future * score_)),
            "probabilities sum to 1: the past rewards' term vanishes",
        ),
    ),
    statement=r"\mathbb E[(G^{<t} + G^{\ge t})\, \partial\log\pi(a_t|s_t)] = \mathbb E[G^{\ge t}\, \partial\log\pi(a_t|s_t)]",
)
DROP_CURRENT_REWARD = over_histories(E_(gamma**t * W[j, a] * score_))
RESTART_DISCOUNT = over_histories(E_((R[j, a] + W[j, a]) * score_))

# The whole horizon (causality). E[sum_{t<H} score_t sum_{u<H} gamma^u r_u] is split, for each t,
# into the rewards u < t, which the history up to s_t fixes (rho_{t,u,j}: r_u on history j of
# time t, q_{t,j} its probability), and u >= t, whose terms F_{t,u} = E[score_t gamma^u r_u] are
# kept whole. Every past term is gamma^u rho_{t,u,j} times the zero-mean score (derivation
# 'per-step'), so E[score_t r_u] = 0 for u < t, at every t < H and for every horizon H.
horizon = sp.Symbol("H", integer=True, positive=True)
step_time = sp.Symbol("t", integer=True, nonnegative=True)  # t = 0..H-1 (per-step: t >= 1)
reward_time = sp.Symbol("u", integer=True, nonnegative=True)
past_reward = sp.IndexedBase("rho", real=True)  # rho[t, u, j] = r_u on history j (u < t)
credit = sp.IndexedBase("F", real=True)  # F[t, u] = E[score_t gamma^u r_u], u >= t


def _past_rewards(score_mean: sp.Expr) -> sp.Sum:
    """sum_{u<t} sum_j q_{t,j} gamma^u rho_{t,u,j} score_mean: the rewards before t."""
    term = q[step_time, j] * gamma**reward_time * past_reward[step_time, reward_time, j]
    return IndexSum(IndexSum(term * score_mean, (j, 0, J - 1)), (reward_time, 0, step_time - 1))


def _over_time(term: sp.Expr) -> sp.Sum:
    return IndexSum(term, (step_time, 0, horizon - 1))


def _rewards_from(first: sp.Expr) -> sp.Sum:
    return IndexSum(credit[step_time, reward_time], (reward_time, first, horizon - 1))


causality = Derivation(
    "whole-horizon",
    (
        Step(
            _over_time(_past_rewards(E_(score_)) + _rewards_from(step_time)),
            "E[sum_t score_t R(tau)] with R = sum_u gamma^u r_u split at u = t; for u < t, r_u "
            "is fixed by the history up to s_t (tower property), a_t ~ pi(.|s_t)",
        ),
        Step(
            _over_time(_rewards_from(step_time)),
            "the score has mean zero given the history (derivation 'per-step'): E[score_t r_u] "
            "= 0 for every u < t",
        ),
    ),
    statement=r"\mathbb E\Big[\sum_{t<H} \partial\log\pi(a_t|s_t) \sum_{u<H} \gamma^u r_u\Big] = \sum_{t<H} \sum_{u \ge t} \mathbb E[\partial\log\pi(a_t|s_t)\, \gamma^u r_u]",
)
FROM_NEXT_REWARD = _over_time(_rewards_from(step_time + 1))


# ============================================================================ second moment
# REINFORCE with a state baseline, g_b = sum_t gamma^t (G_t - b(s_t)) score_t. The score of
# time t lives in row s_t of the [S, A] logits (d log pi(a|s)/d theta[s', .] = 0 for s' != s),
# so row s of g_b is X_s - b(s) Y_s with X_s = row s of sum_t gamma^t G_t score_t and Y_s = row
# s of sum_t gamma^t score_t, and |g_b|^2 = sum_s |X_s - b(s) Y_s|^2: each state's baseline
# enters its own row only, and the second moment is a separate quadratic in each b(s). One
# state s: the trajectories j < J (probability q_j) and the actions a < n (the row's entries).
traj = sp.Symbol("j", integer=True)
n_traj = sp.Symbol("J", integer=True, positive=True)
n_entries = sp.Symbol("n", integer=True, positive=True)
row_X = sp.IndexedBase("X", real=True)  # row_X[j, a]: X_s on trajectory j, entry a
row_Y = sp.IndexedBase("Y", real=True)  # row_Y[j, a]: Y_s on trajectory j, entry a
xx = sp.Symbol("xx", positive=True)  # E|X_s|^2 (> 0: some reward-to-go on s is not 0)
xy = sp.Symbol("xy", real=True)  # E<X_s, Y_s>
yy = sp.Symbol("yy", positive=True)  # E|Y_s|^2 (> 0: s is visited and has two actions)
mean_sq = sp.Symbol("mu2", nonnegative=True)  # |E g_b, row s|^2, the same for every b(s)
MOMENT_NAMES = {
    xx: r"\mathbb E|X_s|^2",
    xy: r"\mathbb E[X_s^\top Y_s]",
    yy: r"\mathbb E|Y_s|^2",
    mean_sq: r"|\mathbb E\, g_{b,s}|^2",
    b: "b(s)",
}


def over_trajectories(term: sp.Expr) -> sp.Sum:
    """$\\sum_j q_j \\sum_a$ term: the expectation of a row's squared norm or inner product."""
    return IndexSum(q[traj] * IndexSum(term, (a, 0, n_entries - 1)), (traj, 0, n_traj - 1))


X_, Y_ = row_X[traj, a], row_Y[traj, a]
expansion = Derivation(
    "expansion",
    (
        Step(
            over_trajectories((X_ - b * Y_) ** 2),
            "E|row s of g_b|^2 over the trajectories j (probability q_j): row s of g_b is "
            "X_s - b(s) Y_s, the baseline of the other states does not enter it",
        ),
        Step(
            over_trajectories(X_**2 - 2 * b * X_ * Y_ + b**2 * Y_**2),
            "expand the square entry by entry",
        ),
        Step(
            over_trajectories(X_**2)
            - 2 * b * over_trajectories(X_ * Y_)
            + b**2 * over_trajectories(Y_**2),
            "linearity of the expectation; b(s) depends on neither the trajectory nor the entry",
        ),
    ),
    statement=r"\mathbb E|X_s - b Y_s|^2 = \mathbb E|X_s|^2 - 2b\,\mathbb E[X_s^\top Y_s] + b^2\,\mathbb E|Y_s|^2",
)

optimal_state_baseline = xy / yy  # b^*(s) = E[X_s^T Y_s] / E|Y_s|^2
QUADRATIC = xx - 2 * b * xy + b**2 * yy
completed_square = Derivation(
    "completed-square",
    (
        Step(
            QUADRATIC,
            "E|row s of g_b|^2 (derivation 'expansion'), with E|X_s|^2, E[X_s^T Y_s], E|Y_s|^2 "
            "its three coefficients",
        ),
        Step(
            xx
            - xy**2 / yy
            + yy * (b**2 - 2 * b * optimal_state_baseline + optimal_state_baseline**2),
            "complete the square: add and subtract (E[X_s^T Y_s])^2 / E|Y_s|^2 (E|Y_s|^2 > 0)",
        ),
        Step(
            xx - xy**2 / yy + yy * (b - optimal_state_baseline) ** 2,
            "b^2 - 2 b b^* + (b^*)^2 = (b - b^*)^2 with b^* = E[X_s^T Y_s] / E|Y_s|^2",
        ),
    ),
    statement=r"\mathbb E|g_{b,s}|^2 = \mathbb E|g_{b^*,s}|^2 + \mathbb E|Y_s|^2 (b - b^*)^2,\ b^* = \mathbb E[X_s^\top Y_s] / \mathbb E|Y_s|^2",
)


def _second_moment_at(baseline: sp.Expr) -> sp.Expr:
    """E|row s of g_{baseline}|^2 as the quadratic of derivation 'expansion' (unevaluated, so
    that b^* = E[X^T Y]/E|Y|^2 stays visible instead of collapsing into E[X^T Y]^2/E|Y|^2)."""
    return sp.Add(
        xx,
        sp.Mul(-2, baseline, xy, evaluate=False),
        sp.Mul(sp.Pow(baseline, 2, evaluate=False), yy, evaluate=False),
        evaluate=False,
    )


variance_gap = Derivation(
    "variance-gap",
    (
        Step(
            sp.Add(
                sp.Add(QUADRATIC, -mean_sq, evaluate=False),
                sp.Mul(
                    -1,
                    sp.Add(_second_moment_at(optimal_state_baseline), -mean_sq, evaluate=False),
                    evaluate=False,
                ),
                evaluate=False,
            ),
            "Var = E|g|^2 - |E g|^2, row s, at b(s) and at b^*(s); the mean E g_b does not "
            "depend on the baseline (claim baseline-unbiased)",
        ),
        Step(
            QUADRATIC - _second_moment_at(optimal_state_baseline),
            "|E g|^2 cancels",
        ),
        Step(
            yy * (b - optimal_state_baseline) ** 2,
            "complete the square (derivation 'completed-square')",
        ),
        Step(
            sp.Integer(0),
            "E|Y_s|^2 > 0 times a square",
            relation=">=",
            gap=yy * (b - optimal_state_baseline) ** 2,
        ),
    ),
    statement=r"\mathrm{Var}(g_{b,s}) - \mathrm{Var}(g_{b^*,s}) = \mathbb E|Y_s|^2 (b - b^*)^2 \ge 0",
)
# Mutants: wrong statements of E|row s of g_b|^2 (conclusions of 'completed-square').
PLUS_CROSS_TERM = xx - xy**2 / yy + yy * (b + optimal_state_baseline) ** 2  # = xx + 2b xy + b^2 yy
WRONG_OPTIMUM = xy / xx  # b' = E[X^T Y] / E|X|^2 (the wrong second moment in the denominator)
OPTIMUM_OVER_X_MOMENT = _second_moment_at(WRONG_OPTIMUM) + yy * (b - WRONG_OPTIMUM) ** 2
NO_QUADRATIC_TERM = xx - 2 * b * xy  # the b^2 E|Y|^2 term dropped


# ============================================================================ exact legs
# Float64 floor of every tolerance that is relative to a scale of terms: below the smallest
# normal number (np.finfo(float).tiny = 2^-1022) rounding is absolute, 2^-1075 per operation
# (gradual underflow), so the attainable relative accuracy tolerance * scale is replaced by
# tolerance * tiny, i.e. 64 n kappa subnormal spacings. A complex-step derivative f' = Im f(x +
# i h)/h carries h f' in the imaginary part, which is subnormal once |f'| < tiny / h: its
# floor is tiny / h (about 2e-278 for h = 1e-30).
TINY = float(np.finfo(np.float64).tiny)
COMPLEX_STEP_FLOOR = TINY / COMPLEX_STEP


# --- score-zero-mean: one state's logits and a coordinate k; lhs is the package's score
# (SoftmaxPolicy.score_row) averaged over pi by enumeration, rhs the lambdified conclusion (0).
zero_mean_examples = st.integers(1, 6).flatmap(
    lambda size: st.tuples(logits(size), st.integers(0, size - 1))
)


def expected_score(example: tuple[np.ndarray, int]) -> float:
    """sum_a pi(a) SoftmaxPolicy.score_row(a)[k], by enumeration over the actions."""
    logit, coordinate = example
    policy = SoftmaxPolicy(logit[None, :])
    actions = np.arange(len(logit))
    rows = policy.score_row(np.zeros_like(actions), actions)  # [action, coordinate]
    return float(policy.probabilities()[0] @ rows[:, coordinate])


def _zero_mean_arguments(example: tuple[np.ndarray, int]) -> tuple[Any, ...]:
    logit, coordinate = example
    return logit, coordinate, len(logit) - 1 - coordinate


def _zero_mean_scale(example: tuple[np.ndarray, int]) -> float:
    r"""$\pi(k)$: the computed $\sum_a \hat\pi(a)(\mathbb 1[a=k] - \hat\pi(k)) = \hat\pi(k)(1 -
    \sum_a \hat\pi(a))$ errs by $\pi(k)$ times the rounding of $\sum_a \hat\pi(a)$ (a few $n
    \varepsilon$, the probabilities come from exp(log_softmax)), plus $n \varepsilon$ times
    $\sum_a \pi(a) |\text{score}| = 2\pi(k)(1 - \pi(k))$: at most $3 n \varepsilon \pi(k)$."""
    logit, coordinate = example
    return float(SoftmaxPolicy(logit[None, :]).probabilities()[0, coordinate])


# --- baseline-unbiased: lhs is dJ/d theta[:, k], the complex-step derivative of the objective
# J = rho0^T (I - gamma P_pi)^{-1} r_pi computed from its definition (a complex linear solve,
# not the policy gradient theorem's formula); rhs the lambdified conclusion per state, weighted
# by the discounted visits w(s) = rho0^T (I - gamma P_pi)^{-1} e_s. The conclusion is linear in
# (Q, b, beta), so w(s) times it is the conclusion at (w(s) Q(s, .), w(s) b(s), w(s) beta(s, .));
# the logits are passed transposed ([A, S]) so that theta[a] is action a's column over the
# states and one call gives every state.
def _with_baselines(pair):  # type: ignore[no-untyped-def]
    mdp, policy = pair
    S, A = mdp.n_states, mdp.n_actions
    floats = st.floats(-10, 10)
    return st.tuples(
        st.just(mdp),
        st.just(policy),
        st.lists(floats, min_size=S, max_size=S).map(np.array),
        st.lists(floats, min_size=S * A, max_size=S * A).map(lambda x: np.reshape(x, (S, A))),
        st.integers(0, A - 1),
    )


baseline_examples = mdps_and_policies(tabular_mdps(max_states=4, max_actions=4)).flatmap(
    _with_baselines
)


def complex_objective(mdp: Any) -> Callable[[np.ndarray], complex]:
    """theta -> J(theta) = rho0^T (I - gamma P_pi)^{-1} r_pi, complex-safe in the logits."""
    P = mdp.dense_transitions()
    identity = np.eye(mdp.n_states)

    def objective(logit_table: np.ndarray) -> complex:
        shifted = np.exp(logit_table - logit_table.real.max(axis=1, keepdims=True))
        p = shifted / shifted.sum(axis=1, keepdims=True)
        P_pi = np.einsum("sa,sat->st", p, P)
        values = np.linalg.solve(identity - mdp.gamma * P_pi, (p * mdp.r).sum(axis=1))
        return complex(mdp.rho0 @ values)

    return objective


def objective_gradient_column(example: tuple) -> np.ndarray:  # type: ignore[type-arg]
    """dJ/d theta[s, k] for every state s, ``[S]``, by complex-step differentiation of J."""
    mdp, policy, _, _, coordinate = example
    objective = complex_objective(mdp)

    def of_column(column: np.ndarray) -> complex:
        logit_table = policy.theta.astype(complex)
        logit_table[:, coordinate] = column
        return objective(logit_table)

    return complex_step_gradient(of_column, policy.theta[:, coordinate])


@one_slot_cache
def _visits_and_q(example: tuple) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    mdp, policy = example[:2]
    return exact.occupancy(mdp, policy) / (1.0 - mdp.gamma), exact.q_value(mdp, policy)


def _baseline_arguments(example: tuple) -> tuple[Any, ...]:  # type: ignore[type-arg]
    _, policy, state_baseline, action_baseline, coordinate = example
    visits, q_values = _visits_and_q(example)
    return (
        policy.theta.T,
        (visits[:, None] * q_values).T,
        visits * state_baseline,
        (visits[:, None] * action_baseline).T,
        coordinate,
        policy.n_actions - 1 - coordinate,
    )


def _baseline_scale(example: tuple) -> float:  # type: ignore[type-arg]
    r"""Scale of the terms both sides sum, floored (see ``COMPLEX_STEP_FLOOR``).

    Per state: $\sum_a \pi(a) |\mathbb 1[a=k] - \pi(k)| = 2\pi(k)(1 - \pi(k))$, plus $\pi(k)$
    because $1 - \pi(k)$ is computed by a subtraction whose rounding is absolute (relative
    error $\varepsilon / (1 - \pi(k))$), times the size of the credit $\max|r|/(1-\gamma) +
    |b(s)|$; times $2/(1-\gamma)$, which bounds the visits $w(s)$ of the rhs and
    $\|(I - \gamma P_\pi)^{-1}\|_\infty$ through which the lhs's rounding spreads. The
    tolerance multiplies this by ``exact_rtol`` with the solve's condition number.
    """
    mdp, policy, state_baseline, _, coordinate = example
    p = policy.probabilities()[:, coordinate]
    credit = float(np.abs(mdp.r).max(initial=0.0)) / (1.0 - mdp.gamma) + np.abs(state_baseline)
    scale = 2.0 / (1.0 - mdp.gamma) * float(np.max(3.0 * p * credit))
    return max(scale, COMPLEX_STEP_FLOOR)


def _baseline_rtol(example: tuple) -> float:  # type: ignore[type-arg]
    mdp = example[0]
    return exact_rtol(discounted_condition_number(mdp.gamma), mdp.n_states * mdp.n_actions)


# --- reward-to-go: one time t and coordinate k, every state s at once. lhs is time t's term
# of REINFORCE with the whole return, E_tau[1[s_t = s] (1[a_t = k] - pi(k|s)) R(tau)], summed
# over every trajectory (rlmath.exact.trajectories: R includes the past rewards); rhs the
# lambdified conclusion, with the histories grouped by s_t (J = 1: q = Pr(s_t = s), and r, W
# depend on the history only through s_t, by the Markov property), W = gamma P V_{t+1} from
# backward induction (rlmath.exact.finite_horizon_values).
def _with_time_and_coordinate(pair):  # type: ignore[no-untyped-def]
    mdp, policy = pair
    return st.tuples(
        st.just(mdp),
        st.just(policy),
        st.integers(1, mdp.horizon - 1),  # t >= 1: at t = 0 there are no past rewards to drop
        st.integers(0, mdp.n_actions - 1),
    )


# At least 2 actions (else every score is 0), horizon >= 2 and t >= 1 (else the whole return
# and the reward-to-go coincide), gamma in [0.3, 0.9] (gamma^i and gamma^(i-t) differ): a
# domain where every mutant differs from the claim (seed 23 drew only degenerate examples).
rtg_examples = mdps_and_policies(
    tabular_mdps(
        max_states=3,
        min_actions=2,
        max_actions=3,
        horizon=st.integers(2, 3),
        gamma=st.floats(0.3, 0.9),
    )
).flatmap(_with_time_and_coordinate)


@one_slot_cache
def _paths(example: tuple) -> Any:  # type: ignore[type-arg]
    mdp, policy = example[:2]
    return exact.trajectories(mdp, policy, mdp.horizon)


def whole_return_term(example: tuple) -> np.ndarray:  # type: ignore[type-arg]
    """sum_tau p(tau) R(tau) 1[s_t = s] (1[a_t = k] - pi(k|s)) for every state s, ``[S]``."""
    mdp, policy, time, coordinate = example
    paths = _paths(example)
    states, actions = paths.states[:, time], paths.actions[:, time]
    scores = (actions == coordinate) - policy.probabilities()[states, coordinate]
    weights = paths.probabilities * paths.returns * scores
    return np.bincount(states, weights=weights, minlength=mdp.n_states)


def _rtg_arguments(example: tuple) -> tuple[Any, ...]:  # type: ignore[type-arg]
    mdp, policy, time, coordinate = example
    values, _ = exact.finite_horizon_values(mdp, policy)
    after = mdp.gamma * (mdp.dense_transitions() @ values[time + 1])  # W, [S, A]
    visits = exact.state_distributions(mdp, policy, mdp.horizon)[time]  # Pr(s_t = s), [S]
    return (
        policy.theta.T,
        visits[None, :],
        mdp.r.T[None],
        after.T[None],
        mdp.gamma,
        time,
        coordinate,
        mdp.n_actions - 1 - coordinate,
        1,
    )


def _rtg_scale(example: tuple) -> float:  # type: ignore[type-arg]
    r"""Per state: $\Pr(s_t = s)\, 3\pi(k|s)$ (the score's absolute sum plus the rounding of
    $1 - \pi(k)$, as for the baseline) times $\sum_{i<H} \gamma^i \max|r|$, which bounds
    $|R(\tau)|$ and $\gamma^t |r + W|$; floored at ``TINY``."""
    mdp, policy, time, coordinate = example
    visits = exact.state_distributions(mdp, policy, mdp.horizon)[time]
    returns = float(np.abs(mdp.r).max(initial=0.0)) * float(
        np.sum(mdp.gamma ** np.arange(mdp.horizon))
    )
    scale = float(np.max(visits * 3.0 * policy.probabilities()[:, coordinate])) * returns
    return max(scale, TINY)


def _rtg_rtol(example: tuple) -> float:  # type: ignore[type-arg]
    """N trajectories summed, each return (and the backward induction) H terms long."""
    return exact_rtol(float(example[0].horizon), len(_paths(example).probabilities))


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
# Rows must differ: a sampler that draws every state's action from one state's policy (or
# ignores the state) has mean score pi(.|s_0) - pi(.|s), zero on equal rows (S = 1 or equal
# logits, Hypothesis's simplest examples). Each state's row is compared with every other by
# max_a |pi(a|s) - pi(a|s')| >= 0.05: 30 standard errors of a component (sd <= 1/2) at 1e5.
MIN_ROW_DIFFERENCE = 0.05


def _rows_differ(logit_table: np.ndarray) -> bool:
    pi = SoftmaxPolicy(logit_table).probabilities()
    gaps = np.abs(pi[:, None, :] - pi[None, :, :]).max(axis=-1) + np.eye(len(pi))
    return bool(gaps.min() >= MIN_ROW_DIFFERENCE)


score_examples = (
    st.tuples(st.integers(2, 3), st.integers(2, 4))
    .flatmap(lambda shape: logits(shape, max_abs=1.0))
    .filter(_rows_differ)
)


def _score_sampler(indicator_only: bool, one_state: bool = False) -> Sampler:
    def sample(logit_table: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n, S, A]: row s is the score of a ~ pi(.|s), one action per state and sample."""
        policy = SoftmaxPolicy(logit_table)
        states = np.broadcast_to(np.arange(policy.n_states), (n, policy.n_states))
        drawn_at = np.zeros_like(states) if one_state else states  # mutant: pi(.|s_0) everywhere
        actions = sample_actions(policy, drawn_at, seed=int(rng.integers(2**63)))
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
# the correct estimator varies (sd >= MIN_SD) and the test at N_EPISODES rejects every mutant
# with power >= 0.99 (rlmath.claims.detectable); means and sds are exact (exact_moments over
# every trajectory, rlmath.exact.trajectories, weighted by its probability).
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
MC_FALSE_ALARM = DEFAULT_FALSE_ALARM / N_MC_EXAMPLES  # per example (monte_carlo_leg's split)
# 66,890 episodes: power 0.99 against a shift of 0.03 sd in one of up to 3 x 3 components at
# the per-example false alarm (about 0.1 s per run); the filter keeps examples where every
# mutant is detected with that power at this n.
N_EPISODES = sample_size(MIN_STANDARDISED_EFFECT, 1.0, false_alarm=MC_FALSE_ALARM, n_components=9)


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


def _moments(example: tuple[Any, ...], estimator: Estimator) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd ``[S, A]`` of the estimator's per-episode terms, over every trajectory."""
    paths, probabilities = enumerated_rollouts(*example[:2])
    return exact_moments(probabilities, estimator(paths, example))


def mutants_detectable(
    estimator: Estimator, mutants: tuple[Estimator, ...]
) -> Callable[[tuple[Any, ...]], bool]:
    """The example filter: the estimator's components vary, every mutant is detectable."""

    def keep(example: tuple[Any, ...]) -> bool:
        if _moments(example, estimator)[1].min() < MIN_SD:
            return False
        gradient = exact.policy_gradient(*example[:2])
        for mutant in mutants:
            mean, sd = _moments(example, mutant)
            if not detectable(mean - gradient, sd, N_EPISODES, false_alarm=MC_FALSE_ALARM):
                return False
        return True

    return keep


def _discounts(mdp: Any, episodes: Rollouts) -> np.ndarray:
    """gamma^t, ``[T, 1]``."""
    return (mdp.gamma ** np.arange(episodes.n_steps))[:, None]  # type: ignore[no-any-return]


def _reward_to_go(mdp: Any, episodes: Rollouts) -> np.ndarray:
    """sum_{i >= t} gamma^i r_i (discounted from time 0), ``[T, N]``."""
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
    """rlmath.estimators.reinforce_reward_to_go: sum_t score_t sum_{i >= t} gamma^i r_i."""
    mdp, policy = example
    return reinforce_reward_to_go(episodes, policy, gamma=mdp.gamma)


def reward_to_go_without_current(episodes: Rollouts, example: tuple[Any, ...]) -> np.ndarray:
    """Mutant: sum_t score_t sum_{i > t} gamma^i r_i (r_t dropped)."""
    mdp, policy = example
    credit = _reward_to_go(mdp, episodes) - _discounts(mdp, episodes) * episodes.rewards
    return weighted_score_sum(episodes, policy, credit)


def reward_to_go_restarted(episodes: Rollouts, example: tuple[Any, ...]) -> np.ndarray:
    """Mutant: sum_t score_t sum_{i >= t} gamma^(i - t) r_i (no gamma^t on the score)."""
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
    mutants_detectable(with_state_baseline, (with_action_baseline, with_baseline_indicator_score))
)
mc_rtg_examples = finite_horizon_mdps.filter(
    mutants_detectable(reward_to_go_terms, (reward_to_go_without_current, reward_to_go_restarted))
)


# --- baseline-second-moment: every trajectory of an H-step MDP (enumerated_rollouts), for
# every state s. lhs is sum_tau p(tau) |row s of g_b(tau)|^2 with g_b the shipped
# reinforce_with_baseline; rhs the lambdified conclusion of 'completed-square' with the
# coefficients E|X_s|^2, E<X_s, Y_s>, E|Y_s|^2 from X and Y computed here by other means: each
# score by complex-step differentiation of a log-softmax written out below (not SoftmaxPolicy,
# not weighted_score_sum), each reward-to-go by a direct sum over the later rewards. The rhs is
# evaluated twice: with the raw moments, and in covariance form (|E X_s|^2 + tr Cov(X_s),
# tr Cov(X_s, Y_s), tr Cov(Y_s), a correct variant because E Y_s = 0 by score-zero-mean).
def _complex_log_softmax(row: np.ndarray) -> np.ndarray:
    """log pi(.|s) from the state's logits, complex-safe (the shift is real)."""
    shifted = row - row.real.max()
    return shifted - np.log(np.exp(shifted).sum())  # type: ignore[no-any-return]


@one_slot_cache
def _rows_by_other_means(example: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """(p [N], X [N, S, A], Y [N, S, A], size [N, S, A]) over every trajectory.

    X[j, s] = sum_t gamma^t G_t 1[s_t = s] score_t, Y[j, s] = sum_t gamma^t 1[s_t = s] score_t
    (row s of each), G_t = sum_{i >= t} gamma^(i - t) r_i; size[j, s] = sum_t gamma^t (|G_t| +
    |b(s)|) 1[s_t = s] |score_t|, the magnitude the rounding of row s of g_b is relative to.
    """
    mdp, policy, baseline = example[:3]
    paths = _paths(example)
    S, A = policy.n_states, policy.n_actions
    # scores[s, a, k] = d log pi(a|s) / d theta[s, k]
    scores = np.stack(
        [complex_step_gradient(_complex_log_softmax, policy.theta[s]).T for s in range(S)]
    )
    N, H = paths.states.shape
    rewards = mdp.r[paths.states, paths.actions]  # [N, H]
    X, Y, size = np.zeros((N, S, A)), np.zeros((N, S, A)), np.zeros((N, S, A))
    episode = np.arange(N)
    for time in range(H):
        to_go = sum(mdp.gamma ** (i - time) * rewards[:, i] for i in range(time, H))
        state = paths.states[:, time]
        score = scores[state, paths.actions[:, time]]  # [N, A]
        discount = mdp.gamma**time
        X[episode, state] += discount * to_go[:, None] * score
        Y[episode, state] += discount * score
        credit = np.abs(to_go) + np.abs(baseline[state])
        size[episode, state] += discount * credit[:, None] * np.abs(score)
    return paths.probabilities, X, Y, size


def _raw_moments(p: np.ndarray, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, ...]:
    """E|X_s|^2, E<X_s, Y_s>, E|Y_s|^2, ``[S]`` each."""
    return tuple(np.einsum("j,jsa,jsa->s", p, U, V) for U, V in ((X, X), (X, Y), (Y, Y)))


def _covariance_moments(p: np.ndarray, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, ...]:
    """|E X_s|^2 + tr Cov(X_s), tr Cov(X_s, Y_s), tr Cov(Y_s), ``[S]`` each (two-pass)."""
    mean_X, mean_Y = np.tensordot(p, X, axes=1), np.tensordot(p, Y, axes=1)
    centred_X, centred_Y = X - mean_X, Y - mean_Y
    variance_X, covariance, variance_Y = _raw_moments(p, centred_X, centred_Y)
    return (mean_X**2).sum(axis=1) + variance_X, covariance, variance_Y


def shipped_second_moment(example: tuple[Any, ...]) -> np.ndarray:
    """sum_tau p(tau) |row s of reinforce_with_baseline(tau)|^2 for every state, twice ``[2, S]``
    (the rhs is the conclusion with raw moments, then in covariance form)."""
    mdp, policy, baseline = example[:3]
    episodes, probabilities = enumerated_rollouts(mdp, policy)
    g = reinforce_with_baseline(episodes, policy, gamma=mdp.gamma, baseline=baseline)
    per_state = np.einsum("j,jsa->s", probabilities, g * g)
    return np.stack([per_state, per_state])


def _second_moment_arguments(example: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    p, X, Y, _ = _rows_by_other_means(example)
    raw, covariance_form = _raw_moments(p, X, Y), _covariance_moments(p, X, Y)
    baseline = example[2]
    return (
        *(np.stack([u, v]) for u, v in zip(raw, covariance_form, strict=True)),
        np.stack([baseline, baseline]),
    )


def _second_moment_scale(example: tuple[Any, ...]) -> float:
    r"""$4 \max_s \mathbb E[\sum_a \text{size}_{s,a}^2]$, floored at ``TINY``.

    size bounds $|X_s|$ and $|b(s)|\,|Y_s|$ entrywise, so this bounds every term either side
    sums: $\mathbb E|g_{b,s}|^2 \le \mathbb E|\text{size}_s|^2$, the coefficients $\mathbb
    E|X_s|^2$, $|b\, \mathbb E[X_s^\top Y_s]|$, $b^2\, \mathbb E|Y_s|^2$, and
    $\mathbb E[X^\top Y]^2 / \mathbb E|Y|^2 \le \mathbb E|X_s|^2$ (Cauchy-Schwarz),
    $\mathbb E|Y|^2 (b - b^*)^2 \le 2 b^2 \mathbb E|Y|^2 + 2 \mathbb E|X|^2$."""
    p, _, _, size = _rows_by_other_means(example)
    return max(4.0 * float(np.einsum("j,jsa->s", p, size**2).max()), TINY)


def _second_moment_rtol(example: tuple[Any, ...]) -> float:
    r"""N trajectories of H steps and A entries summed (both sides; condition number 1).

    The completed square adds no amplification: its derivative in $\mathbb E|Y_s|^2$ is $b^2$,
    as the quadratic's, and the rounding of $b^* = \mathbb E[X^\top Y] / \mathbb
    E|Y|^2$ enters $\mathbb E|Y|^2 (b - b^*)^2$ as $2\varepsilon |\mathbb E\langle X,
    Y\rangle|\, |b - b^*|$, within the scale (``_second_moment_scale``)."""
    N, H = _paths(example).states.shape
    return exact_rtol(1.0, N * H * example[1].n_actions)


#: Every state's cross term E<X_s, Y_s> at least this fraction of sqrt(E|X_s|^2 E|Y_s|^2)
#: (its Cauchy-Schwarz bound): then a wrong sign of the baseline's cross term shows in every
#: state of every example (rewards all 0, Hypothesis's simplest MDP, have E<X, Y> = 0 and
#: E|X|^2 = 0, where b + and b - have the same second moment and b' = E<X, Y>/E|X|^2 is 0/0).
MIN_CROSS_CORRELATION = 1e-3


def _cross_terms_visible(example: tuple[Any, ...]) -> bool:
    p, X, Y, _ = _rows_by_other_means(example)
    second_X, cross, second_Y = _raw_moments(p, X, Y)
    bound = np.sqrt(second_X * second_Y)
    return bool(np.all((bound > 0) & (np.abs(cross) >= MIN_CROSS_CORRELATION * bound)))


second_moment_examples = finite_horizon_mdps.flatmap(_bounded_baselines).filter(
    _cross_terms_visible
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
        summary=(
            "E_pi[grad log pi] = 0: any term that does not depend on the action can be "
            "subtracted from the return without biasing the gradient."
        ),
        statement=Statement(
            score_zero_mean.start,
            sp.Integer(0),
            derivation="softmax",
            where=r"n = k + m + 1 \text{ actions},\ 0 \le k < n",
            symbol_names=NAMES,
        ),
        assumptions=(
            "Softmax policy over n actions, every n >= 1 (written n = k + m + 1 for the "
            "coordinate k < n).",
            "The expectation is under the same policy whose score is taken (on-policy).",
            "Monte-Carlo leg: 2-3 states with pairwise different action distributions "
            "(max_a |pi(a|s) - pi(a|s')| >= 0.05), 2-4 actions, logits in [-1, 1].",
        ),
        references=SCORE_ZERO_MEAN_REFERENCES,
        symbolic=SymbolicLeg((score_zero_mean,)),
        exact=ExactLeg(
            zero_mean_examples,
            lhs=expected_score,
            rtol=lambda ex: exact_rtol(3.0, len(ex[0])),
            symbols=(theta, k, m),
            arguments=_zero_mean_arguments,
            error_scale=_zero_mean_scale,
            description=(
                "sum_a pi(a) SoftmaxPolicy.score_row(a)[k] by enumeration (1-6 actions, logits "
                "in [-10, 10]) vs the lambdified conclusion (0); the error is relative to "
                "pi(k), the scale of the rounding of sum_a pi(a)"
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
                monte_carlo=_score_sampler(indicator_only=True),
            ),
            Mutant(
                "action-from-another-state",
                "the action scored at state s drawn from pi(.|s_0), not pi(.|s) (off-policy "
                "for s != s_0): its mean is pi(.|s_0) - pi(.|s)",
                monte_carlo=_score_sampler(indicator_only=False, one_state=True),
            ),
        ),
    ),
    Claim(
        id="baseline-unbiased",
        title="A state-dependent baseline adds no bias",
        summary=(
            "Subtracting a baseline b(s) that depends only on the state (such as a value "
            "estimate) leaves the expected policy gradient unchanged; a baseline that depends"
            " on the action biases it."
        ),
        statement=Statement(
            baseline.start,
            baseline.conclusion,
            derivation="baseline",
            where=r"n = k + m + 1 \text{ actions},\ b = b(s) \text{ independent of } a",
            symbol_names=NAMES,
        ),
        assumptions=(
            "Softmax policy over n actions, every n >= 1.",
            "b(s) does not depend on the action (it may depend on the state arbitrarily).",
            "Exact leg: infinite-horizon discounted MDPs with up to 4 states and actions; the "
            "per-state identity is weighted by the discounted visits w(s) = d(s)/(1 - gamma) "
            "and compared with the gradient of J itself (so the policy gradient theorem is "
            "used to connect the two).",
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
            lhs=objective_gradient_column,
            rtol=_baseline_rtol,
            symbols=(theta, Q, b, beta, k, m),
            arguments=_baseline_arguments,
            derivation="baseline",
            error_scale=_baseline_scale,
            description=(
                "dJ/d theta[s, k] for every state, by complex-step differentiation of "
                "J = rho0^T (I - gamma P_pi)^{-1} r_pi, vs w(s) times the lambdified "
                "E_a[score (Q - b(s))] with Q = exact.q_value, arbitrary generated b(s) and "
                "w(s) = exact.occupancy / (1 - gamma)"
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
                monte_carlo=_episode_sampler(with_action_baseline),
            ),
            Mutant(
                "score-without-normaliser",
                "score taken as 1[a=k] (the -pi(k) forgotten): the baseline no longer cancels",
                symbolic=SymbolicMutation("baseline", INDICATOR_SCORE_BASELINE),
                monte_carlo=_episode_sampler(with_baseline_indicator_score),
            ),
        ),
    ),
    Claim(
        id="reward-to-go-unbiased",
        title="Reward-to-go keeps the policy gradient unbiased",
        summary=(
            "Crediting each action only with the rewards that come after it (reward-to-go) "
            "gives the same expected gradient as the total return, because past rewards are "
            "independent of the current score."
        ),
        statement=Statement(
            reward_to_go.start,
            reward_to_go.conclusion,
            where=(
                r"q_j = \Pr(h_j),\ h_j = (s_0, a_0, \dots, s_t = s);\ "
                r"G^{<t}_j = \textstyle\sum_{i<t} \gamma^i r_i \text{ on } h_j;\ "
                r"r_{j,a} = r(s_t, a);\ "
                r"W_{j,a} = \mathbb E[\textstyle\sum_{i>t} \gamma^{i-t} r_i \mid h_j, a_t = a];\ "
                r"t \ge 1"
            ),
            symbol_names=RTG_NAMES,
        ),
        assumptions=(
            "Finite horizon H; r_i = r(s_i, a_i); the discount of reward i is gamma^i (from "
            "time 0), also inside the reward-to-go.",
            "The derivation 'per-step' is for one time t >= 1 and the logits theta[s, .] of one "
            "state s, any number of actions and any distribution over the histories up to s_t "
            "(those with s_t = s): E[score_t R(tau)] = E[score_t sum_{i >= t} gamma^i r_i]. "
            "The derivation 'whole-horizon' sums it over t < H for a general horizon H: each "
            "past reward r_u (u < t) is fixed by the history up to s_t, so E[score_t r_u] = 0 "
            "(causality), and what is left is sum_t sum_{u >= t} E[score_t gamma^u r_u] (the "
            "terms with u >= t kept as abstract expectations F_{t,u}).",
            "Exact leg: every trajectory of MDPs with up to 3 states, 3 actions, horizon <= 3, "
            "every time t and coordinate k, all states at once.",
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
        symbolic=SymbolicLeg((reward_to_go, causality)),
        exact=ExactLeg(
            rtg_examples,
            lhs=whole_return_term,
            rtol=_rtg_rtol,
            symbols=(theta, q, R, W, gamma, t, k, m, J),
            arguments=_rtg_arguments,
            error_scale=_rtg_scale,
            description=(
                "time t's term of REINFORCE with the whole return, summed over every trajectory "
                "(rlmath.exact.trajectories), vs the lambdified reward-to-go conclusion with "
                "Pr(s_t = s) (exact.state_distributions) and W = gamma P V_{t+1} "
                "(exact.finite_horizon_values), for every state"
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
                symbolic=SymbolicMutation("per-step", DROP_CURRENT_REWARD),
                monte_carlo=_episode_sampler(reward_to_go_without_current),
            ),
            Mutant(
                "causal-credit-from-next-step",
                "every action credited only with the rewards after it (u > t), over the whole "
                "horizon: r_t dropped at every t",
                symbolic=SymbolicMutation("whole-horizon", FROM_NEXT_REWARD),
            ),
            Mutant(
                "restart-discount",
                "reward-to-go discounted from t (gamma^(i-t)) instead of from 0 (gamma^i)",
                symbolic=SymbolicMutation("per-step", RESTART_DISCOUNT),
                monte_carlo=_episode_sampler(reward_to_go_restarted),
            ),
        ),
    ),
    Claim(
        id="baseline-second-moment",
        title="A state baseline changes the variance quadratically, least at b^* = E[X^T Y]/E|Y|^2",
        summary=(
            "A baseline never changes the mean of the policy gradient but does change its "
            "variance, by E|Y_s|^2 (b(s) - b^*(s))^2 in each state, where b^*(s) = "
            "E[X_s^T Y_s]/E|Y_s|^2 is the variance-minimising baseline: a baseline of the wrong sign "
            "or size is unbiased and still costs variance."
        ),
        statement=Statement(
            completed_square.start,
            completed_square.conclusion,
            derivation="completed-square",
            where=(
                r"X_s, Y_s = \text{row } s \text{ of } \textstyle\sum_t \gamma^t G_t "
                r"\nabla\log\pi(a_t|s_t),\ \sum_t \gamma^t \nabla\log\pi(a_t|s_t);\ "
                r"\text{lhs} = \mathbb E|\text{row } s \text{ of } g_b|^2,\ "
                r"g_b = \textstyle\sum_t \gamma^t (G_t - b(s_t)) \nabla\log\pi(a_t|s_t)"
            ),
            symbol_names=MOMENT_NAMES,
        ),
        assumptions=(
            "Tabular softmax policy: the score of time t is non-zero only in row s_t of the "
            "[S, A] logits, so row s of g_b is X_s - b(s) Y_s and |g_b|^2 = sum_s |X_s - b(s) "
            "Y_s|^2; each state's second moment is a quadratic in its own b(s), and the "
            "derivations are for one state s (the total is their sum).",
            "E|Y_s|^2 > 0 (s is visited and has at least two actions; for the optimum b^*) and "
            "E|X_s|^2 > 0 (only the wrong-optimum mutant divides by it).",
            "The baseline b(s) is a fixed number per state, not estimated from the same "
            "trajectories; 'variance-gap' uses that the mean E g_b does not depend on b "
            "(claim baseline-unbiased), so E|g_b|^2 and Var(g_b) differ by the same |E g|^2 "
            "for every baseline.",
            "For a constant baseline b (the same in every state) summing the rows gives "
            "E|g_b|^2 = E|X|^2 - 2b E[X^T Y] + b^2 E|Y|^2 with the whole vectors and b^* = "
            "E[X^T Y]/E|Y|^2 (Greensmith et al. 2004); the per-state b^*(s) uses row s alone.",
            "Exact leg: every trajectory of H-step MDPs (H = 3, 4) with 2-3 states and "
            "actions, gamma in [0.5, 0.9], every probability of rho0 and P at least 0.1, "
            "logits in [-1, 1], baselines 0.25 <= |b(s)| <= 2.",
        ),
        references=(
            "Greensmith, E., Bartlett, P. L. and Baxter, J., *Variance Reduction Techniques "
            "for Gradient Estimates in Reinforcement Learning*, JMLR 5, 2004, Sec. 3 and "
            "Thm. 8 (the optimal constant baseline).",
            "Peters, J. and Schaal, S., *Reinforcement learning of motor skills with policy "
            "gradients*, Neural Networks 21, 2008, eq. (13) (b^* = E[X^T Y]/E|Y|^2 per "
            "component).",
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd "
            "ed., 2018, eq. (13.11) (REINFORCE with baseline).",
        ),
        symbolic=SymbolicLeg((expansion, completed_square, variance_gap)),
        exact=ExactLeg(
            second_moment_examples,
            lhs=shipped_second_moment,
            rtol=_second_moment_rtol,
            symbols=(xx, xy, yy, b),
            arguments=_second_moment_arguments,
            error_scale=_second_moment_scale,
            description=(
                "sum_tau p(tau) |row s of rlmath.estimators.reinforce_with_baseline(tau)|^2 "
                "over every trajectory, for every state, vs the lambdified completed square "
                "with E|X_s|^2, E[X_s^T Y_s], E|Y_s|^2 from complex-step scores of log-softmax "
                "and directly summed rewards-to-go; the rhs twice, with raw moments and in "
                "covariance form (tr Cov(X_s, Y_s)/tr Cov(Y_s), a correct variant since "
                "E Y_s = 0); the error is relative to the size of the summed terms"
            ),
        ),
        mutants=(
            Mutant(
                "cross-term-plus",
                "the cross term with a + sign, E|X|^2 + 2b E[X^T Y] + b^2 E|Y|^2: the second "
                "moment of G_t + b(s_t) (unbiased too, so only the second moment tells)",
                symbolic=SymbolicMutation("completed-square", PLUS_CROSS_TERM),
            ),
            Mutant(
                "optimum-over-second-moment-of-x",
                "the optimum taken as b' = E[X^T Y]/E|X|^2: E|g_b|^2 = E|g_b'|^2 + E|Y|^2 "
                "(b - b')^2, false unless E|X|^2 = E|Y|^2",
                symbolic=SymbolicMutation("completed-square", OPTIMUM_OVER_X_MOMENT),
            ),
            Mutant(
                "no-quadratic-term",
                "the b^2 E|Y|^2 term dropped: E|X|^2 - 2b E[X^T Y], a second moment that "
                "decreases without bound in b",
                symbolic=SymbolicMutation("completed-square", NO_QUADRATIC_TERM),
            ),
        ),
    ),
)
