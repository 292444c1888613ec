r"""Monte-Carlo estimators of policy gradients, surrogate objectives and KL divergences.

Every estimator returns *per-sample terms*: an array whose leading axis indexes i.i.d.
samples (episodes, or action draws) and whose mean over that axis is the estimate, so that
:mod:`rlmath.statistics` can attach a standard error. Gradients are with respect to the
tabular softmax logits ``theta[s, a]``; one episode's gradient sample is ``[S, A]``, so a batch
is ``[N, S, A]`` (memory $8 N S A$ bytes).

Conventions (shared by every function here):

- Input is a :class:`~rlmath.sampling.Rollouts` of $N$ episodes, time-major ``[T, N]``, times
  $0..T-1$; padding after an episode's end (``alive`` false) contributes nothing.
- Rewards are discounted by $\gamma^t$: the objective is the $T$-step truncated
  $J_T(\theta) = \mathbb E\left[\sum_{t=0}^{T-1} \gamma^t r_t\right]$, whose exact value and
  gradient are ``rlmath.exact.objective``/``policy_gradient`` of
  ``TabularMDP(P, r, rho0, gamma, horizon=T)``.
- Reward-to-go $G_t = \sum_{k=t}^{T-1} \gamma^{k-t} r_k$; total return $R = G_0$.
- The unbiased estimators carry the factor $\gamma^t$ on the score term at time $t$:
  $\nabla J_T = \mathbb E\left[\sum_t \gamma^t \nabla\log\pi_\theta(a_t|s_t)\, G_t\right]$.
  The widespread variant without $\gamma^t$ is offered (``discount_score=False``) and is
  **biased** for $\nabla J_T$ when $\gamma < 1$.
- KL estimators estimate $\mathrm{KL}(\pi_\theta \,\|\, \pi_{\theta'})$ from samples of
  $\pi_\theta$, with $\log r = \log\pi_{\theta'}(a|s) - \log\pi_\theta(a|s)$ (computed in log
  space). :func:`kl_k1`, :func:`kl_k2`, :func:`kl_k3` are thin wrappers of
  :func:`rlmath.reference.kl_estimator_k1` (and ``_k2``, ``_k3``), the package's one
  implementation, with its argument convention ``(log_probs, reference_log_probs)``: the
  sampled policy first.

References:
    Williams, R. J. "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8, 1992 (REINFORCE).
    Sutton, R. S. and Barto, A. G. *Reinforcement Learning: An Introduction*, 2nd ed., 2018,
    Sec. 13.3 (the $\gamma^t$ factor, eq. 13.8 box) and Sec. 13.4 (baselines).
    Greensmith, E., Bartlett, P. L., Baxter, J. "Variance Reduction Techniques for Gradient
    Estimates in Reinforcement Learning", JMLR 5, 2004 (optimal constant baseline).
    Precup, D., Sutton, R. S., Singh, S. "Eligibility Traces for Off-Policy Policy
    Evaluation", ICML 2000 (per-decision importance sampling).
    Schulman, J. "Approximating KL Divergence", blog post, 2020 (k1, k2, k3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from rlmath import reference
from rlmath._validation import (
    FloatArray,
    as_float_array,
    check_probabilities,
    check_real_scalar,
    first_index,
)
from rlmath.policy import SoftmaxPolicy
from rlmath.sampling import Rollouts

__all__ = [
    "importance_weighted_policy_gradient",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_terms",
    "optimal_constant_baseline",
    "reinforce_optimal_baseline",
    "reinforce_reward_to_go",
    "reinforce_total_return",
    "reinforce_with_baseline",
    "surrogate_gradient",
    "surrogate_objective",
    "trajectory_kl",
    "weighted_score_sum",
]

#: A per-sample KL estimator ``(log_probs, reference_log_probs) -> terms``, as :func:`kl_k3`.
KLEstimator = Callable[[FloatArray, FloatArray], FloatArray]


# ----------------------------------------------------------------------------- validation
def _check_rollouts(rollouts: Any) -> Rollouts:
    if not isinstance(rollouts, Rollouts):
        raise TypeError(
            f"rollouts must be a rlmath.sampling.Rollouts, got {type(rollouts).__name__}"
        )
    return rollouts


def _check_policy(policy: Any, rollouts: Rollouts) -> SoftmaxPolicy:
    if not isinstance(policy, SoftmaxPolicy):
        raise TypeError(f"policy must be a SoftmaxPolicy, got {type(policy).__name__}")
    _check_covers(policy.n_states, policy.n_actions, rollouts, "policy")
    return policy


def _check_covers(n_states: int, n_actions: int, rollouts: Rollouts, name: str) -> None:
    if rollouts.states.size and int(rollouts.states.max()) >= n_states:
        raise ValueError(
            f"{name} must cover the sampled states: it has {n_states} states, "
            f"got state {int(rollouts.states.max())}"
        )
    if rollouts.actions.size and int(rollouts.actions.max()) >= n_actions:
        raise ValueError(
            f"{name} must cover the sampled actions: it has {n_actions} actions, "
            f"got action {int(rollouts.actions.max())}"
        )


def _check_gamma(gamma: Any) -> float:
    value = check_real_scalar(gamma, "gamma")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {value!r}")
    return value


def _check_steps(array: Any, name: str, rollouts: Rollouts) -> FloatArray:
    values = as_float_array(array, name)
    shape = (rollouts.n_steps, rollouts.n_episodes)
    if values.shape != shape:
        raise ValueError(f"{name} must have shape [T, N] = {shape}, got {values.shape}")
    return values


def _log_probabilities(policy: Any, name: str) -> FloatArray:
    """``[S, A]`` log-probabilities of a SoftmaxPolicy or a row-stochastic array (log 0 = -inf)."""
    if isinstance(policy, SoftmaxPolicy):
        return policy.log_probabilities()
    pi = as_float_array(policy, name, ndim=2)
    check_probabilities(pi, name, axis=1)
    with np.errstate(divide="ignore"):
        return np.log(pi)


# ----------------------------------------------------------------------------- building blocks
def _discounts(gamma: float, n_steps: int) -> FloatArray:
    r"""$\gamma^t$ for $t = 0..T-1$, ``[T, 1]`` (broadcasts against ``[T, N]``)."""
    return (gamma ** np.arange(n_steps, dtype=np.float64))[:, None]


def _reward_to_go(rewards: FloatArray, gamma: float) -> FloatArray:
    r"""$G_t = r_t + \gamma G_{t+1}$, $G_T = 0$: ``[T, N]`` from ``[T, N]`` rewards, times 0..T-1."""
    out = np.empty_like(rewards)
    following = np.zeros(rewards.shape[1:])
    for t in range(rewards.shape[0] - 1, -1, -1):
        following = rewards[t] + gamma * following
        out[t] = following
    return out


def _total_return(rollouts: Rollouts, gamma: float) -> FloatArray:
    r"""$R = \sum_t \gamma^t r_t$ per episode, ``[N]``."""
    return (_discounts(gamma, rollouts.n_steps) * rollouts.rewards).sum(axis=0)  # type: ignore[no-any-return]


def _step_log_probabilities(log_pi: FloatArray, rollouts: Rollouts) -> FloatArray:
    r"""$\log\pi(a_t|s_t)$ at the sampled pairs, ``[T, N]``, 0 on padding."""
    return np.where(rollouts.alive, log_pi[rollouts.states, rollouts.actions], 0.0)


def weighted_score_sum(rollouts: Rollouts, policy: SoftmaxPolicy, weights: ArrayLike) -> FloatArray:
    r"""Per-episode weighted sum of scores, the common form of every gradient estimator here.

    $$ g_n = \sum_{t=0}^{T-1} w_{t,n}\, \nabla_\theta \log \pi_\theta(a_{t,n} \mid s_{t,n}),
       \qquad \frac{\partial \log\pi_\theta(a|s)}{\partial \theta_{s',b}}
       = \mathbb 1[s'=s]\,(\mathbb 1[b=a] - \pi_\theta(b|s)) $$

    summed over alive steps only. Computed with two ``bincount`` passes (no ``[T, N, S, A]``
    intermediate).

    Args:
        rollouts: :class:`~rlmath.sampling.Rollouts`, ``[T, N]``.
        policy: the :class:`~rlmath.SoftmaxPolicy` whose score is taken.
        weights: ``[T, N]`` weights $w_{t,n}$, times 0..T-1.

    Returns:
        ``[N, S, A]`` float64.

    Examples:
        >>> from rlmath import SoftmaxPolicy, TabularMDP
        >>> from rlmath.sampling import rollouts
        >>> bandit = TabularMDP(np.ones((1, 2, 1)), r=[[1.0, 0.0]], rho0=[1.0], gamma=0.0)
        >>> out = rollouts(bandit, SoftmaxPolicy.uniform(1, 2),
        ...                n_episodes=2, horizon=1, seed=0)
        >>> out.actions[0].tolist()
        [1, 0]
        >>> weighted_score_sum(out, SoftmaxPolicy.uniform(1, 2), np.ones((1, 2))).tolist()
        [[[-0.5, 0.5]], [[0.5, -0.5]]]
    """
    rollouts = _check_rollouts(rollouts)
    policy = _check_policy(policy, rollouts)
    w = np.where(rollouts.alive, _check_steps(weights, "weights", rollouts), 0.0)
    N, S, A = rollouts.n_episodes, policy.n_states, policy.n_actions
    episode_state = (np.arange(N)[None, :] * S + rollouts.states).ravel()
    indicator = np.bincount(
        episode_state * A + rollouts.actions.ravel(), weights=w.ravel(), minlength=N * S * A
    )
    state_weight = np.bincount(episode_state, weights=w.ravel(), minlength=N * S)
    return indicator.reshape(N, S, A) - state_weight.reshape(N, S, 1) * policy.probabilities()[None]


# ----------------------------------------------------------------------------- REINFORCE
def reinforce_total_return(
    rollouts: Rollouts, policy: SoftmaxPolicy, *, gamma: float
) -> FloatArray:
    r"""REINFORCE with the total discounted return: per-episode $R(\tau) \sum_t \nabla\log\pi$.

    $$ g_n = R_n \sum_{t=0}^{T-1} \nabla_\theta \log\pi_\theta(a_t|s_t), \qquad
       R_n = \sum_{t=0}^{T-1} \gamma^t r_t, \qquad
       \mathbb E[g_n] = \nabla_\theta J_T(\theta). $$

    Rewards are discounted by $\gamma^t$ inside $R$; the score carries no further factor (the
    log-derivative trick on the path probability). Unbiased for the $T$-step objective.

    Args:
        rollouts: episodes sampled from ``policy`` (:class:`~rlmath.sampling.Rollouts`).
        policy: the :class:`~rlmath.SoftmaxPolicy` that sampled them.
        gamma: discount $\gamma \in [0, 1]$.

    Returns:
        ``[N, S, A]`` per-episode gradient samples; their mean estimates $\nabla J_T$.

    References:
        Williams 1992, eq. (11); Sutton and Barto 2018, eq. (13.8).
    """
    rollouts = _check_rollouts(rollouts)
    gamma = _check_gamma(gamma)
    R = _total_return(rollouts, gamma)
    return weighted_score_sum(rollouts, policy, np.broadcast_to(R, rollouts.rewards.shape))


def reinforce_reward_to_go(
    rollouts: Rollouts, policy: SoftmaxPolicy, *, gamma: float, discount_score: bool = True
) -> FloatArray:
    r"""REINFORCE with reward-to-go (causality): per-episode $\sum_t \gamma^t G_t \nabla\log\pi$.

    $$ g_n = \sum_{t=0}^{T-1} \gamma^t\, G_t\, \nabla_\theta\log\pi_\theta(a_t|s_t), \qquad
       G_t = \sum_{k=t}^{T-1} \gamma^{k-t} r_k, \qquad \mathbb E[g_n] = \nabla J_T. $$

    Dropping the rewards before $t$ from the weight of score $t$ keeps the mean (their
    product with a later score has zero mean) and lowers the variance.

    Args:
        rollouts: episodes sampled from ``policy``.
        policy: the :class:`~rlmath.SoftmaxPolicy` that sampled them.
        gamma: discount $\gamma \in [0, 1]$ (on rewards, and on the score unless disabled).
        discount_score: ``True`` (default) for the unbiased estimator above. ``False`` gives
            the common **biased** variant $\sum_t G_t \nabla\log\pi$ (no $\gamma^t$ on the
            score), which estimates $\sum_t \mathbb E[\nabla\log\pi_t\, G_t]$, not $\nabla J_T$,
            when $\gamma < 1$.

    Returns:
        ``[N, S, A]`` per-episode gradient samples.

    References:
        Sutton and Barto 2018, Sec. 13.3 (REINFORCE box, the $\gamma^t$ factor); Thomas, P.
        "Bias in Natural Actor-Critic Algorithms", ICML 2014 (the variant without $\gamma^t$).
    """
    rollouts = _check_rollouts(rollouts)
    gamma = _check_gamma(gamma)
    weights = _reward_to_go(rollouts.rewards, gamma)
    if discount_score:
        weights *= _discounts(gamma, rollouts.n_steps)
    return weighted_score_sum(rollouts, policy, weights)


def reinforce_with_baseline(
    rollouts: Rollouts, policy: SoftmaxPolicy, *, gamma: float, baseline: ArrayLike
) -> FloatArray:
    r"""Reward-to-go REINFORCE minus a constant or state-dependent baseline $b(s_t)$.

    $$ g_n = \sum_{t=0}^{T-1} \gamma^t \left(G_t - b(s_t)\right) \nabla_\theta\log\pi_\theta(a_t|s_t),
       \qquad \mathbb E[g_n] = \nabla J_T, $$

    unbiased because $\mathbb E_{a \sim \pi(\cdot|s)}[\nabla\log\pi(a|s)] = 0$ for any $b$ that
    does not depend on $a_t$ (a baseline depending on the action biases the estimate).

    Args:
        rollouts: episodes sampled from ``policy``.
        policy: the :class:`~rlmath.SoftmaxPolicy` that sampled them.
        gamma: discount $\gamma \in [0, 1]$.
        baseline: a scalar $b$, or ``[S]`` state values $b(s)$ (e.g. $V$ estimates).

    Returns:
        ``[N, S, A]`` per-episode gradient samples.

    Raises:
        ValueError: if ``baseline`` is neither a scalar nor ``[S]``.

    References:
        Sutton and Barto 2018, eq. (13.11) (REINFORCE with baseline).
    """
    rollouts = _check_rollouts(rollouts)
    gamma = _check_gamma(gamma)
    policy = _check_policy(policy, rollouts)
    b = as_float_array(baseline, "baseline")
    if b.ndim == 1 and b.shape == (policy.n_states,):
        b_t = b[rollouts.states]
    elif b.ndim == 0:
        b_t = np.broadcast_to(b, rollouts.states.shape)
    else:
        raise ValueError(
            f"baseline must be a scalar or [S] = {(policy.n_states,)}, got shape {b.shape}"
        )
    weights = (_reward_to_go(rollouts.rewards, gamma) - b_t) * _discounts(gamma, rollouts.n_steps)
    return weighted_score_sum(rollouts, policy, weights)


def _score_sum_and_return(
    rollouts: Rollouts, policy: SoftmaxPolicy, gamma: float
) -> tuple[FloatArray, FloatArray]:
    r"""$g_n = \sum_t \nabla\log\pi_t$ ``[N, S, A]`` and $R_n$ ``[N]``."""
    ones = np.ones(rollouts.rewards.shape)
    return weighted_score_sum(rollouts, policy, ones), _total_return(rollouts, gamma)


def optimal_constant_baseline(
    rollouts: Rollouts, policy: SoftmaxPolicy, *, gamma: float
) -> FloatArray:
    r"""The variance-minimising constant baseline of the total-return estimator, per component.

    For $g = \sum_t \nabla\log\pi_\theta(a_t|s_t)$ and each component $i = (s, a)$,
    $\mathrm{Var}[g_i (R - b_i)]$ is minimised over constants $b_i$ by

    $$ b_i^* = \frac{\mathbb E[g_i^2 R]}{\mathbb E[g_i^2]}, $$

    estimated here by the sample ratio $\sum_n g_{n,i}^2 R_n / \sum_n g_{n,i}^2$ over all
    episodes (0 where the denominator is 0). Using it on the same episodes is biased by
    $O(1/N)$; :func:`reinforce_optimal_baseline` removes that with leave-one-out.

    Args:
        rollouts: episodes sampled from ``policy``.
        policy: the :class:`~rlmath.SoftmaxPolicy` that sampled them.
        gamma: discount of the return $R = \sum_t \gamma^t r_t$.

    Returns:
        ``[S, A]`` baseline.

    References:
        Greensmith et al. 2004, Thm. 8; Peters, J. and Schaal, S. "Reinforcement learning of
        motor skills with policy gradients", Neural Networks 21, 2008, eq. (13).
    """
    rollouts = _check_rollouts(rollouts)
    gamma = _check_gamma(gamma)
    g, R = _score_sum_and_return(rollouts, policy, gamma)
    g2 = g * g
    numerator, denominator = np.einsum("nsa,n->sa", g2, R), g2.sum(axis=0)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)  # type: ignore[no-any-return]


def reinforce_optimal_baseline(
    rollouts: Rollouts, policy: SoftmaxPolicy, *, gamma: float
) -> FloatArray:
    r"""Total-return REINFORCE with the optimal constant baseline, leave-one-out (unbiased).

    $$ g_{n,i}\left(R_n - b^*_{-n,i}\right), \qquad
       b^*_{-n,i} = \frac{\sum_{m \ne n} g_{m,i}^2 R_m}{\sum_{m \ne n} g_{m,i}^2} $$

    with $g_n = \sum_t \nabla\log\pi_\theta(a_t|s_t)$ and $R_n = \sum_t \gamma^t r_t$. Episode
    $n$'s baseline is computed without episode $n$, hence independent of it, so
    $\mathbb E[g_n b^*_{-n}] = \mathbb E[g_n]\,\mathbb E[b^*_{-n}] = 0$ and each term has mean
    exactly $\nabla J_T$ (no $O(1/N)$ bias). The terms are exchangeable but weakly dependent
    through the baselines; that dependence changes the variance of their mean only at order
    $1/N^2$, so the i.i.d. standard error of :mod:`rlmath.statistics` remains valid. Where no
    other episode has $g_{m,i} \ne 0$ the baseline is 0.

    Args:
        rollouts: episodes sampled from ``policy`` (at least 2).
        policy: the :class:`~rlmath.SoftmaxPolicy` that sampled them.
        gamma: discount $\gamma \in [0, 1]$.

    Returns:
        ``[N, S, A]`` per-episode gradient samples.

    References:
        Greensmith et al. 2004, Thm. 8; Kool, W., van Hoof, H., Welling, M. "Buy 4 REINFORCE
        samples, get a baseline for free!", ICLR workshop 2019 (leave-one-out baselines).
    """
    rollouts = _check_rollouts(rollouts)
    gamma = _check_gamma(gamma)
    if rollouts.n_episodes < 2:
        raise ValueError(
            f"rollouts must hold at least 2 episodes for a leave-one-out baseline, got {rollouts.n_episodes}"
        )
    g, R = _score_sum_and_return(rollouts, policy, gamma)
    g2 = g * g
    weighted = g2 * R[:, None, None]
    others_numerator = weighted.sum(axis=0) - weighted
    others_denominator = g2.sum(axis=0) - g2
    others_count = np.count_nonzero(g2, axis=0) - (g2 != 0)
    usable = (others_count > 0) & (others_denominator > 0)
    baseline = np.divide(others_numerator, others_denominator, out=np.zeros_like(g2), where=usable)
    return g * (R[:, None, None] - baseline)  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- off-policy
def _log_ratio(rollouts: Rollouts, policy: SoftmaxPolicy) -> FloatArray:
    r"""$\log \pi_\theta(a_t|s_t) - \log\pi_{\theta'}(a_t|s_t)$, ``[T, N]``; 0 on padding."""
    target = _step_log_probabilities(policy.log_probabilities(), rollouts)
    return np.where(rollouts.alive, target - rollouts.log_probs, 0.0)


def importance_weighted_policy_gradient(
    rollouts: Rollouts, policy: SoftmaxPolicy, *, gamma: float, per_decision: bool = True
) -> FloatArray:
    r"""Off-policy REINFORCE: $\nabla J_T(\theta)$ from episodes sampled under $\theta'$.

    With the cumulative importance weight
    $\rho_{0:k} = \prod_{j=0}^{k} \pi_\theta(a_j|s_j) / \pi_{\theta'}(a_j|s_j)$ (computed as the
    exponential of a cumulative sum of log-ratios), the per-decision estimator is

    $$ g_n = \sum_{t=0}^{T-1} \gamma^t\, \nabla_\theta\log\pi_\theta(a_t|s_t)
       \sum_{k=t}^{T-1} \gamma^{k-t} \rho_{0:k}\, r_k, \qquad
       \mathbb E_{\tau \sim \theta'}[g_n] = \nabla_\theta J_T(\theta), $$

    (reward $r_k$ depends only on the history up to $a_k$, so it needs only $\rho_{0:k}$).
    With ``per_decision=False`` the whole-trajectory weight is used instead:
    $g_n = \rho_{0:T-1} \sum_t \gamma^t G_t \nabla\log\pi_\theta(a_t|s_t)$; also unbiased,
    with higher variance. Both need $\pi_{\theta'} > 0$ wherever $\pi_\theta > 0$; the weights
    are heavy-tailed when the policies differ much, which slows the CLT.

    Args:
        rollouts: episodes sampled from the behaviour policy $\theta'$; their ``log_probs``
            must be $\log\pi_{\theta'}(a_t|s_t)$ (as :func:`~rlmath.sampling.rollouts` records).
        policy: the target :class:`~rlmath.SoftmaxPolicy` $\theta$ (gradient taken here).
        gamma: discount $\gamma \in [0, 1]$ ($\gamma^t$ on rewards and on the score).
        per_decision: per-decision weights (default) or one trajectory weight.

    Returns:
        ``[N, S, A]`` per-episode gradient samples.

    References:
        Precup et al. 2000, eq. (3); Owen 2013, ch. 9 (importance sampling).
    """
    rollouts = _check_rollouts(rollouts)
    gamma = _check_gamma(gamma)
    policy = _check_policy(policy, rollouts)
    cumulative = np.exp(np.cumsum(_log_ratio(rollouts, policy), axis=0))  # rho_{0:t}, [T, N]
    discounts = _discounts(gamma, rollouts.n_steps)
    if per_decision:
        weights = discounts * _reward_to_go(cumulative * rollouts.rewards, gamma)
    else:
        weights = discounts * _reward_to_go(rollouts.rewards, gamma) * cumulative[-1]
    return weighted_score_sum(rollouts, policy, weights)


def _surrogate_weights(
    rollouts: Rollouts, policy: SoftmaxPolicy, advantages: ArrayLike, gamma: float
) -> FloatArray:
    r"""$\gamma^t \rho_t A_t$ ``[T, N]`` with the one-step ratio $\rho_t = \pi_\theta/\pi_{\theta'}$."""
    rollouts = _check_rollouts(rollouts)
    gamma = _check_gamma(gamma)
    policy = _check_policy(policy, rollouts)
    A = _check_steps(advantages, "advantages", rollouts)
    ratio = np.exp(_log_ratio(rollouts, policy))
    return np.where(rollouts.alive, _discounts(gamma, rollouts.n_steps) * ratio * A, 0.0)


def surrogate_objective(
    rollouts: Rollouts, policy: SoftmaxPolicy, advantages: ArrayLike, *, gamma: float
) -> FloatArray:
    r"""Per-episode terms of the importance-sampled surrogate $J^{\theta'}(\theta)$.

    $$ J^{\theta'}(\theta) = \mathbb E_{\tau \sim \theta'}\left[\sum_{t=0}^{T-1} \gamma^t\,
       \frac{\pi_\theta(a_t|s_t)}{\pi_{\theta'}(a_t|s_t)}\, A_t\right], $$

    with the one-step ratio only (the state distribution stays that of $\theta'$, which is
    what makes it a surrogate). With $A_t$ unbiased for $A^{\theta'}_t(s_t, a_t)$, its
    gradient at $\theta = \theta'$ is $\nabla J_T(\theta')$. The weight $\gamma^t$ makes that
    identity exact for the discounted objective; pass ``gamma=1`` for the undiscounted form
    $\mathbb E[\sum_t \rho_t A_t]$ of the PPO papers (the advantages keep their own discount).

    Args:
        rollouts: episodes sampled from $\theta'$ (``log_probs`` = $\log\pi_{\theta'}$).
        policy: the :class:`~rlmath.SoftmaxPolicy` $\theta$ at which the surrogate is evaluated.
        advantages: ``[T, N]`` advantage estimates $A_t$ for times 0..T-1 (ignored on padding),
            e.g. the exact finite-horizon $Q_t - V_t$ of $\theta'$ gathered at $(s_t, a_t)$.
        gamma: the weight $\gamma^t$ of step $t$, in $[0, 1]$.

    Returns:
        ``[N]`` per-episode terms; their mean estimates $J^{\theta'}(\theta)$.

    References:
        Schulman, J. et al. "Trust Region Policy Optimization", ICML 2015, eq. (14);
        Schulman et al. "Proximal Policy Optimization Algorithms", 2017, eq. (6).
    """
    return _surrogate_weights(rollouts, policy, advantages, gamma).sum(axis=0)  # type: ignore[no-any-return]


def surrogate_gradient(
    rollouts: Rollouts, policy: SoftmaxPolicy, advantages: ArrayLike, *, gamma: float
) -> FloatArray:
    r"""Per-episode terms of $\nabla_\theta J^{\theta'}(\theta)$ (see :func:`surrogate_objective`).

    $$ \nabla_\theta J^{\theta'}(\theta) = \mathbb E_{\tau\sim\theta'}\left[\sum_{t} \gamma^t
       \frac{\pi_\theta(a_t|s_t)}{\pi_{\theta'}(a_t|s_t)}\, A_t\,
       \nabla_\theta\log\pi_\theta(a_t|s_t)\right]
       \quad (\nabla \pi_\theta = \pi_\theta \nabla\log\pi_\theta). $$

    Args:
        rollouts: episodes sampled from $\theta'$.
        policy: the :class:`~rlmath.SoftmaxPolicy` $\theta$.
        advantages: ``[T, N]`` advantage estimates, times 0..T-1.
        gamma: the weight $\gamma^t$ of step $t$.

    Returns:
        ``[N, S, A]`` per-episode gradient samples.
    """
    weights = _surrogate_weights(rollouts, policy, advantages, gamma)
    return weighted_score_sum(rollouts, policy, weights)


# ----------------------------------------------------------------------------- KL
# One implementation of k1, k2, k3 in the package: rlmath.reference.kl_estimator_k1/k2/k3,
# argument convention (log_probs, reference_log_probs) with log r = reference - log_probs. The
# names below are thin wrappers kept for the modules that import them from here.


def kl_k1(log_probs: ArrayLike, reference_log_probs: ArrayLike) -> FloatArray:
    r"""$k_1 = -\log r$ of $\mathrm{KL}(\pi_\theta \| \pi_{\theta'})$: :func:`rlmath.reference.kl_estimator_k1`.

    $$ k_1 = -\log r, \qquad \log r = \log\pi_{\theta'}(a) - \log\pi_\theta(a),
       \qquad a \sim \pi_\theta, \qquad
       \mathbb E_{a\sim\pi_\theta}[k_1] = \mathrm{KL}(\pi_\theta \,\|\, \pi_{\theta'}). $$

    The same function (one implementation, same validation): ``log_probs`` are of the
    *sampled* policy $\pi_\theta$ (the first KL argument), ``reference_log_probs`` of
    $\pi_{\theta'}$; $-\infty$ there gives $+\infty$.

    Args:
        log_probs: $\log\pi_\theta(a)$ at samples of $\pi_\theta$, any shape; finite.
        reference_log_probs: $\log\pi_{\theta'}(a)$, same shape; finite or $-\infty$.

    Returns:
        Terms of the same shape (negative terms occur).

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`rlmath.reference.kl_estimator_k1`.

    References:
        Schulman 2020, "k1" (his $q$ is the sampled $\pi_\theta$, his $p$ is $\pi_{\theta'}$).

    Examples:
        >>> kl_k1([0.0, 0.0], [0.0, -1.0]).tolist()
        [-0.0, 1.0]
    """
    return reference.kl_estimator_k1(log_probs, reference_log_probs)


def kl_k2(log_probs: ArrayLike, reference_log_probs: ArrayLike) -> FloatArray:
    r"""$k_2 = (\log r)^2 / 2$, biased for $\mathrm{KL}(\pi_\theta \| \pi_{\theta'})$: :func:`rlmath.reference.kl_estimator_k2`.

    $\mathbb E_{\pi_\theta}[k_2]$ is an $f$-divergence that agrees with
    $\mathrm{KL}(\pi_\theta \| \pi_{\theta'})$ to second order as $\theta' \to \theta$ (both
    equal $\tfrac12 \delta^\top F \delta$); it is *not* the KL. Arguments as :func:`kl_k1`.

    Args:
        log_probs: $\log\pi_\theta(a)$ at samples of $\pi_\theta$; finite.
        reference_log_probs: $\log\pi_{\theta'}(a)$; finite or $-\infty$ (giving $+\infty$).

    Returns:
        Terms of the same shape, non-negative.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`rlmath.reference.kl_estimator_k2`.

    References:
        Schulman 2020, "k2".

    Examples:
        >>> kl_k2([0.0, 0.0], [0.0, -1.0]).tolist()
        [0.0, 0.5]
    """
    return reference.kl_estimator_k2(log_probs, reference_log_probs)


def kl_k3(log_probs: ArrayLike, reference_log_probs: ArrayLike) -> FloatArray:
    r"""$k_3 = (r - 1) - \log r$, unbiased for $\mathrm{KL}(\pi_\theta\|\pi_{\theta'})$: :func:`rlmath.reference.kl_estimator_k3`.

    $\mathbb E_{\pi_\theta}[r - 1] = \sum_a \pi_{\theta'}(a) - 1 = 0$ (a control variate), and
    $r - 1 - \log r \ge 0$ since $\log r \le r - 1$; computed as ``expm1(log_r) - log_r``.
    Unbiasedness needs $\pi_{\theta'} > 0$ wherever $\pi_\theta > 0$. Arguments as
    :func:`kl_k1`.

    Args:
        log_probs: $\log\pi_\theta(a)$ at samples of $\pi_\theta$; finite.
        reference_log_probs: $\log\pi_{\theta'}(a)$; finite or $-\infty$ (giving $+\infty$).

    Returns:
        Terms of the same shape, non-negative; $+\infty$ where $r$ overflows
        ($\log r > 709.78$).

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`rlmath.reference.kl_estimator_k3`.

    References:
        Schulman 2020, "k3".

    Examples:
        >>> kl_k3([0.0], [0.0]).tolist()
        [0.0]
    """
    return reference.kl_estimator_k3(log_probs, reference_log_probs)


def kl_terms(
    policy: SoftmaxPolicy | ArrayLike,
    other: SoftmaxPolicy | ArrayLike,
    states: ArrayLike,
    actions: ArrayLike,
    *,
    estimator: KLEstimator = kl_k3,
) -> FloatArray:
    r"""Per-sample KL terms $k(\log r)$ for $\mathrm{KL}(\pi_\theta(\cdot|s) \| \pi_{\theta'}(\cdot|s))$.

    $$ \log r = \log \pi_{\theta'}(a \mid s) - \log \pi_\theta(a \mid s), \qquad
       a \sim \pi_\theta(\cdot \mid s). $$

    For per-state estimates draw ``actions[n, s]`` from $\pi_\theta(\cdot|s)$ with
    ``states[n, s] = s`` (e.g. :func:`rlmath.sampling.sample_actions`); the mean over ``n`` then
    estimates the KL of each state.

    Args:
        policy: $\pi_\theta$, the *sampled* distribution and the first KL argument
            (:class:`~rlmath.SoftmaxPolicy` or row-stochastic ``[S, A]``).
        other: $\pi_{\theta'}$, the second KL argument.
        states: int array, any shape ``B``.
        actions: int array ``B``, sampled from ``policy`` at ``states``.
        estimator: :func:`kl_k1`, :func:`kl_k2` or :func:`kl_k3` (default), called as
            ``estimator(log_probs, reference_log_probs)`` with the log-probabilities of
            ``policy`` (sampled) and ``other`` at the samples.

    Returns:
        ``B`` float64 terms; $+\infty$ where ``other`` gives the sample probability 0.

    Raises:
        TypeError: if ``states`` or ``actions`` are not integers.
        ValueError: on mismatched shapes, states or actions out of range, or a pair that
            ``policy`` gives probability 0 (it cannot have been sampled from ``policy``;
            its log-ratio would be $+\infty$ or NaN).

    Examples:
        >>> p, q = [[0.5, 0.5]], [[0.25, 0.75]]
        >>> kl_terms(p, q, [0, 0], [0, 1], estimator=kl_k1).round(6).tolist()  # -log(q/p)
        [0.693147, -0.405465]
    """
    log_p = _log_probabilities(policy, "policy")
    log_q = _log_probabilities(other, "other")
    if log_p.shape != log_q.shape:
        raise ValueError(f"other must have the shape of policy {log_p.shape}, got {log_q.shape}")
    s, a = np.asarray(states), np.asarray(actions)
    for name, array, bound in (("states", s, log_p.shape[0]), ("actions", a, log_p.shape[1])):
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
        outside = (array < 0) | (array >= bound)
        if outside.any():
            index = first_index(np.asarray(outside))
            raise ValueError(
                f"{name} must be in [0, {bound}), got {int(array[index])} at index {index}"
            )
    if s.shape != a.shape:
        raise ValueError(
            f"states and actions must have the same shape, got {s.shape} and {a.shape}"
        )
    impossible = np.isneginf(log_p[s, a])
    if impossible.any():
        index = first_index(np.asarray(impossible))
        raise ValueError(
            f"actions must be sampled from policy, got action {int(a[index])} in state "
            f"{int(s[index])} (probability 0 under policy) at index {index}"
        )
    return estimator(log_p[s, a], log_q[s, a])


def trajectory_kl(
    rollouts: Rollouts,
    other: SoftmaxPolicy | ArrayLike,
    *,
    estimator: KLEstimator = kl_k3,
    gamma: float = 1.0,
) -> FloatArray:
    r"""Per-episode sums of KL terms along trajectories sampled from $\pi_\theta$.

    $$ \kappa_n = \sum_{t=0}^{T-1} \gamma^t\, k(\log r_t), \qquad
       \log r_t = \log\pi_{\theta'}(a_t|s_t) - \log\pi_\theta(a_t|s_t), $$

    summed over alive steps. With $k_1$ or $k_3$ and $\gamma = 1$, the mean is
    $\mathbb E_{\tau\sim\theta}\left[\sum_t \mathrm{KL}(\pi_\theta(\cdot|s_t) \|
    \pi_{\theta'}(\cdot|s_t))\right] = \mathrm{KL}(p_\theta(\tau) \| p_{\theta'}(\tau))$ (the
    dynamics cancel in the path likelihood ratio).

    Args:
        rollouts: episodes sampled from $\pi_\theta$ (``log_probs`` = $\log\pi_\theta$).
        other: $\pi_{\theta'}$ (:class:`~rlmath.SoftmaxPolicy` or row-stochastic ``[S, A]``).
        estimator: :func:`kl_k1`, :func:`kl_k2` or :func:`kl_k3` (default), called as
            ``estimator(log_probs, reference_log_probs)`` with ``rollouts.log_probs``
            (sampled) and the log-probabilities of ``other`` at the same steps.
        gamma: weight $\gamma^t$ of step $t$ (default 1: the path KL).

    Returns:
        ``[N]`` per-episode terms.

    References:
        Schulman 2020; Schulman et al. 2015 (TRPO), Sec. 4 (KL averaged over visited states).
    """
    rollouts = _check_rollouts(rollouts)
    gamma = _check_gamma(gamma)
    log_q = _log_probabilities(other, "other")
    _check_covers(log_q.shape[0], log_q.shape[1], rollouts, "other")
    # log r_t = log pi_theta'(a_t|s_t) - log pi_theta(a_t|s_t), formed by the estimator
    other_log_probs = _step_log_probabilities(log_q, rollouts)
    terms = np.where(rollouts.alive, estimator(rollouts.log_probs, other_log_probs), 0.0)
    return (_discounts(gamma, rollouts.n_steps) * terms).sum(axis=0)  # type: ignore[no-any-return]
