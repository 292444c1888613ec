r"""Float64 reference implementations of the quantities policy-gradient, PPO and RLHF code computes.

Each function is the definition written out plainly in NumPy, computed in float64 with the
numerically stable form (log-space ratios, ``logaddexp``, log-sum-exp), validated, and tied to
the claim in ``proofs/`` that justifies it. :mod:`rlmath.conformance` runs other people's
implementations against these on generated inputs; :mod:`rlmath.specs` states the signature,
inputs and tolerance used for each.

Conventions shared by every function (and stated again in each docstring):

- **Reward index.** $r_t$ is the reward received after taking action $a_t$ in state $s_t$,
  for $t = 0, \dots, T-1$ (Sutton and Barto write it $R_{t+1}$).
- **Time-major sequences.** Sequence arrays have shape ``[T, *B]``: time first, then any batch
  axes; ``values[t]`` is $V(s_t)$ for $t = 0..T-1$ and ``last_value`` ($V(s_T)$, shape ``[*B]``)
  is the value of the observation that follows the last step of the buffer.
- **Terminated vs truncated.** ``terminated[t]`` means $s_{t+1}$ is terminal, so its value is
  $0$ and nothing is bootstrapped. ``truncated[t]`` means the episode was cut by a time limit
  after step $t$: $s_{t+1}$ is *not* terminal, its value ``final_values[t]`` is supplied by the
  caller (the next entry of ``values`` belongs to the next episode), and the recursion is cut.
  When both are set on one step, termination wins. ``dones`` (for returns without a value
  function) is ``terminated | truncated``.
- **Losses, not objectives.** Every ``*_loss`` is to be *minimised* and is the **mean** over
  all entries; e.g. the PPO loss is minus the clipped surrogate objective.
- **KL direction.** ``kl_estimator_k*`` estimate $\mathrm{KL}(\pi \,\|\, \pi_\mathrm{ref})$
  from samples $x \sim \pi$, given ``log_probs`` $= \log \pi(x)$ and
  ``reference_log_probs`` $= \log \pi_\mathrm{ref}(x)$, with
  $\log r = \log\pi_\mathrm{ref}(x) - \log\pi(x)$ (Schulman 2020 with $q = \pi$ sampled and
  $p = \pi_\mathrm{ref}$). They are the package's only implementation of $k_1, k_2, k_3$:
  :mod:`rlmath.estimators` calls them with the same argument convention.

All outputs are float64 (Python ``float`` for scalars). Inputs may be anything ``numpy``
converts to real arrays; flags may be booleans or 0/1 numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, logsumexp

from rlmath._validation import (
    FloatArray,
    as_flag_array,
    as_float_array,
    check_finite,
    check_integer,
    check_interval,
    check_shape,
    first_index,
)

__all__ = [
    "actor_critic_loss",
    "adaptive_kl_coefficient",
    "bradley_terry_loss",
    "categorical_entropy",
    "clipped_value_loss",
    "clipped_value_loss_gradient",
    "discounted_returns",
    "dpo_loss",
    "dpo_loss_gradient",
    "dual_clip_ppo_loss",
    "generalized_advantage_estimation",
    "group_normalized_advantages",
    "kl_estimator_k1",
    "kl_estimator_k2",
    "kl_estimator_k3",
    "lambda_returns",
    "n_step_returns",
    "normalized_advantages",
    "policy_gradient_loss",
    "ppo_clipped_surrogate_loss",
    "ppo_clipped_surrogate_loss_gradient",
    "preference_loss",
    "temporal_difference_errors",
    "vtrace_targets",
]

BoolArray = NDArray[np.bool_]


# --------------------------------------------------------------------------------------------
# Validation shared by several functions
# --------------------------------------------------------------------------------------------


def _same_shape_arrays(like: str, **arrays: Any) -> list[FloatArray]:
    """Convert each keyword argument to a finite float64 array of the shape of the first one."""
    converted = [as_float_array(value, name) for name, value in arrays.items()]
    names = list(arrays)
    for name, array in zip(names, converted, strict=True):
        check_shape(array, name, converted[0].shape, like=like)
        check_finite(array, name)
    return converted


def _sequence(rewards: Any, name: str = "rewards") -> FloatArray:
    array = as_float_array(rewards, name)
    if array.ndim < 1 or array.shape[0] < 1:
        raise ValueError(f"{name} must have shape [T, *B] with T >= 1, got shape {array.shape}")
    check_finite(array, name)
    return array


def _flags(value: Any, name: str, shape: tuple[int, ...]) -> BoolArray:
    flags = as_flag_array(value, name)
    check_shape(flags, name, shape, like="rewards")
    return flags


def _trajectory(
    rewards: Any,
    values: Any,
    terminated: Any,
    truncated: Any,
    final_values: Any,
    last_value: Any,
) -> tuple[FloatArray, FloatArray, BoolArray, BoolArray, FloatArray]:
    """Validate the GAE family's arguments; return rewards, values, flags and next values."""
    rewards_array = _sequence(rewards)
    shape = rewards_array.shape
    values_array = as_float_array(values, "values")
    check_shape(values_array, "values", shape, like="rewards")
    check_finite(values_array, "values")
    terminated_flags = _flags(terminated, "terminated", shape)
    truncated_flags = _flags(truncated, "truncated", shape)
    final_array = as_float_array(final_values, "final_values")
    check_shape(final_array, "final_values", shape, like="rewards")
    # Entries of final_values are read only where an episode was truncated (and not terminated);
    # elsewhere they may hold anything, NaN included, as with gymnasium's final observations.
    used = truncated_flags & ~terminated_flags
    final_array = np.where(used, final_array, 0.0)
    check_finite(final_array, "final_values (where truncated)")
    last_array = as_float_array(last_value, "last_value")
    check_shape(last_array, "last_value", shape[1:], like="rewards[0]")
    check_finite(last_array, "last_value")
    following = np.concatenate([values_array[1:], last_array[np.newaxis]], axis=0)
    next_values = np.where(terminated_flags, 0.0, np.where(truncated_flags, final_array, following))
    return rewards_array, values_array, terminated_flags, truncated_flags, next_values


def _discount(discount: Any, name: str = "discount") -> float:
    return check_interval(discount, name, low=0.0, high=1.0)


def _discounted_cumulative_sum(terms: FloatArray, cut: BoolArray, factor: float) -> FloatArray:
    r"""$y_t = x_t + \text{factor} \, (1 - \text{cut}_t) \, y_{t+1}$ backwards, $y_T = 0$."""
    result = np.empty_like(terms)
    running = np.zeros(terms.shape[1:])
    for t in range(terms.shape[0] - 1, -1, -1):
        running = terms[t] + factor * np.where(cut[t], 0.0, running)
        result[t] = running
    return result


# --------------------------------------------------------------------------------------------
# Returns and advantages
# --------------------------------------------------------------------------------------------


def discounted_returns(rewards: Any, dones: Any, *, discount: float) -> FloatArray:
    r"""Discounted return to the end of each episode (the reward-to-go when ``discount = 1``).

    $$ G_t = \sum_{k=t}^{e(t)} \gamma^{k-t} r_k, \qquad
       G_t = r_t + \gamma \, (1 - d_t) \, G_{t+1}, \quad G_T = 0, $$

    where $\gamma$ is ``discount``, $d_t$ is ``dones[t]`` and $e(t)$ is the last step of the
    episode containing $t$ (or $T-1$ if the buffer ends first: nothing is bootstrapped, so for an
    unfinished episode this is the partial sum of the rewards seen). ``dones`` cuts the sum after
    step $t$ whether the episode terminated or was truncated; use :func:`lambda_returns` with
    ``lambda_=1`` for returns that bootstrap from a value function.

    Conventions: time-major ``[T, *B]``; $r_t$ follows action $a_t$; float64.

    Claim: ``discounted-returns-closed-form`` (the recursion with ``dones`` is the discounted
    sum of the episode's own rewards); ``reward-to-go-unbiased`` (the reward-to-go is an
    unbiased weight for $\nabla \log \pi(a_t \mid s_t)$).

    Args:
        rewards: ``[T, *B]``, $r_t$ for times ``0..T-1``.
        dones: ``[T, *B]`` booleans (or 0/1), true when the episode ended after step $t$.
        discount: $\gamma \in [0, 1]$.

    Returns:
        ``[T, *B]`` float64 array of $G_t$.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, non-finite rewards, flags other than 0/1, ``T = 0``,
            or ``discount`` outside ``[0, 1]``.

    Examples:
        Two episodes, the first ending after step 1. By hand with $\gamma = 0.5$:
        $G_1 = 2$, $G_0 = 1 + 0.5 \cdot 2 = 2$, $G_3 = 4$, $G_2 = 3 + 0.5 \cdot 4 = 5$.

        >>> discounted_returns([1.0, 2.0, 3.0, 4.0], [False, True, False, False],
        ...                    discount=0.5)
        array([2., 2., 5., 4.])

    References:
        Sutton and Barto, *Reinforcement Learning: An Introduction*, 2nd ed., 2018, eq. 3.8.
        Achiam, *Spinning Up in Deep RL*, 2018, "Don't let the past distract you"
        (reward-to-go).
    """
    rewards_array = _sequence(rewards)
    done_flags = _flags(dones, "dones", rewards_array.shape)
    gamma = _discount(discount)
    return _discounted_cumulative_sum(rewards_array, done_flags, gamma)


def temporal_difference_errors(
    rewards: Any,
    values: Any,
    terminated: Any,
    truncated: Any,
    final_values: Any,
    last_value: Any,
    *,
    discount: float,
) -> FloatArray:
    r"""One-step TD errors with separate termination and truncation.

    $$ \delta_t = r_t + \gamma \, v'_t - V(s_t), \qquad
       v'_t = \begin{cases} 0 & \text{terminated}_t \\
                            \text{final\_values}_t & \text{truncated}_t \text{ (not terminated)}\\
                            \text{last\_value} & t = T-1 \text{ (neither)} \\
                            V(s_{t+1}) = \text{values}_{t+1} & \text{otherwise.} \end{cases} $$

    Conventions: time-major ``[T, *B]``; $r_t$ follows action $a_t$; termination means no
    bootstrap; truncation bootstraps from the caller-supplied value of the episode's final
    observation; termination wins when both flags are set; float64.

    Claim: ``td-error-cut-rules`` (the masked form is the case rule above, termination
    winning); ``td-error-is-advantage`` ($\mathbb{E}[\delta_t \mid s_t, a_t] = A^\pi(s_t, a_t)$
    when $V = V^\pi$).

    Args:
        rewards: ``[T, *B]``, $r_t$ for times ``0..T-1``.
        values: ``[T, *B]``, $V(s_t)$ for times ``0..T-1``.
        terminated: ``[T, *B]`` booleans, $s_{t+1}$ is terminal.
        truncated: ``[T, *B]`` booleans, the episode was cut by a time limit after step $t$.
        final_values: ``[T, *B]``, value of the final observation $s_{t+1}$ of an episode
            truncated at $t$; read only where ``truncated & ~terminated`` (other entries, NaN
            included, are ignored).
        last_value: ``[*B]``, $V(s_T)$, used if step $T-1$ neither terminated nor truncated.
        discount: $\gamma \in [0, 1]$.

    Returns:
        ``[T, *B]`` float64 array of $\delta_t$.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, non-finite entries that are used, flags other than
            0/1, ``T = 0``, or ``discount`` outside ``[0, 1]``.

    Examples:
        Step 0 continues, step 1 terminates. By hand, $\gamma = 0.9$:
        $\delta_0 = 1 + 0.9 \cdot 2 - 0.5 = 2.3$, $\delta_1 = 1 + 0 - 2 = -1$.

        >>> temporal_difference_errors([1.0, 1.0], [0.5, 2.0], [False, True], [False, False],
        ...                            [0.0, 0.0], 7.0, discount=0.9)
        array([ 2.3, -1. ])

    References:
        Sutton and Barto, *Reinforcement Learning: An Introduction*, 2nd ed., 2018, eq. 6.5.
        Schulman et al., *High-Dimensional Continuous Control Using Generalized Advantage
        Estimation*, ICLR 2016, Sec. 3 ($\delta^V_t$).
    """
    rewards_array, values_array, _, _, next_values = _trajectory(
        rewards, values, terminated, truncated, final_values, last_value
    )
    gamma = _discount(discount)
    result: FloatArray = rewards_array + gamma * next_values - values_array
    return result


def generalized_advantage_estimation(
    rewards: Any,
    values: Any,
    terminated: Any,
    truncated: Any,
    final_values: Any,
    last_value: Any,
    *,
    discount: float,
    lambda_: float,
) -> FloatArray:
    r"""GAE($\gamma$, $\lambda$) advantages with separate termination and truncation.

    $$ \hat A_t = \sum_{l=0}^{e(t) - t} (\gamma \lambda)^l \, \delta_{t+l}, \qquad
       \hat A_t = \delta_t + \gamma \lambda \, (1 - \text{done}_t) \, \hat A_{t+1},
       \quad \hat A_T = 0, $$

    with $\delta_t$ from :func:`temporal_difference_errors` (no bootstrap after a termination;
    after a truncation, bootstrap from ``final_values[t]``; at the end of the buffer from
    ``last_value``), $\text{done}_t = \text{terminated}_t \lor \text{truncated}_t$ and $e(t)$
    the last step of $t$'s episode within the buffer.

    Conventions: time-major ``[T, *B]``; $r_t$ follows action $a_t$; termination wins when both
    flags are set; float64.

    Claim: ``gae-closed-form`` (the recursion equals the $(\gamma\lambda)$-weighted sum of TD
    errors up to the next cut, never across it; $\lambda = 1$ gives the bootstrapped return
    minus the value, $\lambda = 0$ the TD error).

    Args:
        rewards: ``[T, *B]``, $r_t$ for times ``0..T-1``.
        values: ``[T, *B]``, $V(s_t)$ for times ``0..T-1``.
        terminated: ``[T, *B]`` booleans, $s_{t+1}$ is terminal.
        truncated: ``[T, *B]`` booleans, the episode was cut by a time limit after step $t$.
        final_values: ``[T, *B]``, value of the final observation of an episode truncated at
            $t$; read only where ``truncated & ~terminated``.
        last_value: ``[*B]``, $V(s_T)$.
        discount: $\gamma \in [0, 1]$.
        lambda_: $\lambda \in [0, 1]$.

    Returns:
        ``[T, *B]`` float64 array of $\hat A_t$.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`temporal_difference_errors`, or ``lambda_`` outside ``[0, 1]``.

    Examples:
        One episode of two steps cut by a time limit. By hand, $\gamma = 1$, $\lambda = 0.5$:
        $\delta_0 = 1 + 1 - 0 = 2$, $\delta_1 = 1 + 3 - 1 = 3$ (bootstrap from the final value
        3, not from ``last_value``), $\hat A_1 = 3$, $\hat A_0 = 2 + 0.5 \cdot 3 = 3.5$.

        >>> generalized_advantage_estimation([1.0, 1.0], [0.0, 1.0], [False, False],
        ...                                  [False, True], [0.0, 3.0], 9.0,
        ...                                  discount=1.0, lambda_=0.5)
        array([3.5, 3. ])

    References:
        Schulman et al., *High-Dimensional Continuous Control Using Generalized Advantage
        Estimation*, ICLR 2016, eq. 16.
        Gymnasium documentation, *Handling Time Limits* (terminated vs truncated), 2023.
    """
    rewards_array, values_array, terminated_flags, truncated_flags, next_values = _trajectory(
        rewards, values, terminated, truncated, final_values, last_value
    )
    gamma = _discount(discount)
    lam = _discount(lambda_, "lambda_")
    deltas = rewards_array + gamma * next_values - values_array
    return _discounted_cumulative_sum(deltas, terminated_flags | truncated_flags, gamma * lam)


def lambda_returns(
    rewards: Any,
    values: Any,
    terminated: Any,
    truncated: Any,
    final_values: Any,
    last_value: Any,
    *,
    discount: float,
    lambda_: float,
) -> FloatArray:
    r"""TD($\lambda$) returns with separate termination and truncation.

    $$ G^\lambda_t = r_t + \gamma \, v'_t
       \quad \text{if the episode or the buffer ends after } t, \qquad
       G^\lambda_t = r_t + \gamma \big[ (1 - \lambda) V(s_{t+1}) + \lambda G^\lambda_{t+1} \big]
       \quad \text{otherwise,} $$

    with $v'_t$ the bootstrap value of :func:`temporal_difference_errors` ($0$ after a
    termination). Equivalently
    $G^\lambda_t = (1 - \lambda) \sum_{n \ge 1} \lambda^{n-1} G_{t:t+n}$ with $n$-step returns
    truncated at the end of the episode or buffer, and $G^\lambda_t = \hat A_t + V(s_t)$ with
    $\hat A$ from :func:`generalized_advantage_estimation`.

    Conventions: time-major ``[T, *B]``; $r_t$ follows action $a_t$; termination wins when both
    flags are set; float64.

    Claim: ``lambda-returns-closed-form`` ($G^\lambda_t = \hat A_t + V(s_t)$ per segment);
    ``gae-closed-form``.

    Args:
        rewards: ``[T, *B]``, $r_t$ for times ``0..T-1``.
        values: ``[T, *B]``, $V(s_t)$ for times ``0..T-1``.
        terminated: ``[T, *B]`` booleans, $s_{t+1}$ is terminal.
        truncated: ``[T, *B]`` booleans, the episode was cut by a time limit after step $t$.
        final_values: ``[T, *B]``, read only where ``truncated & ~terminated``.
        last_value: ``[*B]``, $V(s_T)$.
        discount: $\gamma \in [0, 1]$.
        lambda_: $\lambda \in [0, 1]$.

    Returns:
        ``[T, *B]`` float64 array of $G^\lambda_t$.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`generalized_advantage_estimation`.

    Examples:
        By hand, $\gamma = 1$, $\lambda = 0.5$, no episode end, $V(s_2) = 4$:
        $G_1 = 1 + 4 = 5$, $G_0 = 1 + (0.5 \cdot 2 + 0.5 \cdot 5) = 4.5$.

        >>> lambda_returns([1.0, 1.0], [0.0, 2.0], [0, 0], [0, 0], [0.0, 0.0], 4.0,
        ...                discount=1.0, lambda_=0.5)
        array([4.5, 5. ])

    References:
        Sutton and Barto, *Reinforcement Learning: An Introduction*, 2nd ed., 2018, eq. 12.2
        and 12.18 (truncated $\lambda$-return).
    """
    rewards_array, values_array, terminated_flags, truncated_flags, next_values = _trajectory(
        rewards, values, terminated, truncated, final_values, last_value
    )
    gamma = _discount(discount)
    lam = _discount(lambda_, "lambda_")
    result = np.empty_like(rewards_array)
    following = np.zeros(rewards_array.shape[1:])
    for t in range(rewards_array.shape[0] - 1, -1, -1):
        ends = terminated_flags[t] | truncated_flags[t] | (t == rewards_array.shape[0] - 1)
        blended = (1.0 - lam) * next_values[t] + lam * following
        following = rewards_array[t] + gamma * np.where(ends, next_values[t], blended)
        result[t] = following
    return result


# --------------------------------------------------------------------------------------------
# PPO
# --------------------------------------------------------------------------------------------


def _clip_epsilon(clip_epsilon: Any) -> float:
    return check_interval(clip_epsilon, "clip_epsilon", low=0.0, high=np.inf, low_open=True)


def _ppo_arrays(
    log_probs: Any, old_log_probs: Any, advantages: Any, clip_epsilon: Any
) -> tuple[FloatArray, FloatArray, float]:
    new, old, adv = _same_shape_arrays(
        "log_probs", log_probs=log_probs, old_log_probs=old_log_probs, advantages=advantages
    )
    if new.size == 0:
        raise ValueError("log_probs must not be empty, got shape {new.shape}")
    epsilon = _clip_epsilon(clip_epsilon)
    with np.errstate(over="ignore"):
        ratio = np.exp(new - old)
    return ratio, adv, epsilon


def ppo_clipped_surrogate_loss(
    log_probs: Any, old_log_probs: Any, advantages: Any, *, clip_epsilon: float
) -> float:
    r"""PPO's clipped surrogate loss (minus the objective $L^{\mathrm{CLIP}}$), mean over entries.

    $$ \mathcal{L} = -\frac{1}{N} \sum_i \min\big(\rho_i A_i,\;
       \operatorname{clip}(\rho_i, 1 - \epsilon, 1 + \epsilon) A_i\big), \qquad
       \rho_i = \exp(\log\pi_\theta(a_i \mid s_i) - \log\pi_{\theta_\mathrm{old}}(a_i \mid s_i)). $$

    The ratio is formed in log space (a ratio of probabilities underflows for long sequences).
    For $A_i < 0$ the term is unbounded below as $\rho_i \to \infty$ in the objective (above in
    the loss): that is PPO's intended pessimistic bound, not a bug. ``clip_epsilon = inf`` gives
    the unclipped importance-sampling loss $-\frac1N \sum_i \rho_i A_i$.

    Conventions: a loss (minimise it); mean over all $N$ entries of any shape ``[*S]``; float64.

    Claim: ``ppo-clipped-loss-reference`` (this function equals the IS loss plus the hinge
    penalty $\frac1N \sum_i \max(0, (\rho_i - 1) A_i - \epsilon |A_i|)$);
    ``ppo-clip-lower-bound`` (the clipped objective lower-bounds the unclipped
    surrogate and agrees with it to first order at $\theta = \theta_\mathrm{old}$);
    ``importance-sampling-unbiased``.

    Args:
        log_probs: ``[*S]``, $\log \pi_\theta(a_i \mid s_i)$ of the policy being optimised.
        old_log_probs: ``[*S]``, $\log \pi_{\theta_\mathrm{old}}(a_i \mid s_i)$ of the policy that
            sampled the actions.
        advantages: ``[*S]``, $A_i$.
        clip_epsilon: $\epsilon > 0$ (``inf`` allowed).

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, empty or non-finite inputs, or ``clip_epsilon <= 0``.

    Examples:
        By hand with $\epsilon = 0.2$: $\rho = (e^{0}, e^{\log 2}) = (1, 2)$,
        terms $\min(1 \cdot 1, 1 \cdot 1) = 1$ and $\min(2 \cdot 1, 1.2 \cdot 1) = 1.2$,
        loss $-(1 + 1.2)/2 = -1.1$.

        >>> ppo_clipped_surrogate_loss([0.0, np.log(2.0)], [0.0, 0.0], [1.0, 1.0],
        ...                            clip_epsilon=0.2)
        -1.1

    References:
        Schulman et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, 2017,
        eq. 7.
    """
    ratio, adv, epsilon = _ppo_arrays(log_probs, old_log_probs, advantages, clip_epsilon)
    clipped = np.clip(ratio, 1.0 - epsilon, 1.0 + epsilon)
    return float(-np.mean(np.minimum(ratio * adv, clipped * adv)))


def ppo_clipped_surrogate_loss_gradient(
    log_probs: Any, old_log_probs: Any, advantages: Any, *, clip_epsilon: float
) -> FloatArray:
    r"""Gradient of :func:`ppo_clipped_surrogate_loss` with respect to ``log_probs``.

    $$ \frac{\partial \mathcal{L}}{\partial \log\pi_\theta(a_i \mid s_i)} =
       -\frac{1}{N} \rho_i A_i \, \mathbb{1}\big[(A_i > 0 \land \rho_i \le 1 + \epsilon) \lor
                                              (A_i < 0 \land \rho_i \ge 1 - \epsilon)\big]. $$

    The clipped branch is constant in $\theta$, so its gradient is zero: the gradient vanishes
    exactly where clipping is active and the clip makes the objective *worse*-looking. At the
    kinks $\rho_i = 1 \pm \epsilon$ the loss is not differentiable; this function returns the
    one-sided derivative of the unclipped side there (``rlmath.specs`` keeps generated inputs
    away from the kinks).

    Conventions: derivative of the mean loss (note the $1/N$); same shape ``[*S]`` as
    ``log_probs``; ``old_log_probs`` and ``advantages`` are constants; float64.

    Claim: ``ppo-clipped-loss-gradient-reference`` (this function against the derivative and
    against central differences of :func:`ppo_clipped_surrogate_loss`); ``ppo-clip-gradient``.

    Args:
        log_probs: ``[*S]``, $\log \pi_\theta(a_i \mid s_i)$.
        old_log_probs: ``[*S]``, $\log \pi_{\theta_\mathrm{old}}(a_i \mid s_i)$.
        advantages: ``[*S]``, $A_i$.
        clip_epsilon: $\epsilon > 0$ (``inf`` allowed).

    Returns:
        ``[*S]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`ppo_clipped_surrogate_loss`.

    Examples:
        By hand, $\epsilon = 0.2$, $N = 2$: entry 0 has $\rho = 1$ (inside, gradient
        $-\tfrac12 \cdot 1 \cdot 1$); entry 1 has $\rho = 2 > 1.2$ with $A > 0$ (clipped: 0).

        >>> ppo_clipped_surrogate_loss_gradient([0.0, np.log(2.0)], [0.0, 0.0], [1.0, 1.0],
        ...                                     clip_epsilon=0.2)
        array([-0.5, -0. ])

    References:
        Schulman et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, 2017,
        eq. 7 and Fig. 1.
    """
    ratio, adv, epsilon = _ppo_arrays(log_probs, old_log_probs, advantages, clip_epsilon)
    active = ((adv > 0) & (ratio <= 1.0 + epsilon)) | ((adv < 0) & (ratio >= 1.0 - epsilon))
    result: FloatArray = -np.where(active, ratio * adv, 0.0) / ratio.size
    return result


def _value_loss_arrays(
    values: Any, old_values: Any, returns: Any, clip_epsilon: Any
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray]:
    new, old, target = _same_shape_arrays(
        "values", values=values, old_values=old_values, returns=returns
    )
    if new.size == 0:
        raise ValueError(f"values must not be empty, got shape {new.shape}")
    epsilon = _clip_epsilon(clip_epsilon)
    change = new - old
    clipped = old + np.clip(change, -epsilon, epsilon)
    inside = np.abs(change) <= epsilon
    return new, target, clipped, inside


def clipped_value_loss(values: Any, old_values: Any, returns: Any, *, clip_epsilon: float) -> float:
    r"""PPO2's clipped value loss: half the mean of the larger of two squared errors.

    $$ \mathcal{L}_V = \frac{1}{2N} \sum_i \max\Big( (V_i - R_i)^2,\;
       \big(V^\mathrm{old}_i + \operatorname{clip}(V_i - V^\mathrm{old}_i, -\epsilon, \epsilon)
       - R_i\big)^2 \Big). $$

    Conventions: a loss (minimise it); factor $\tfrac12$ and mean over all $N$ entries (as in
    OpenAI Baselines and CleanRL); ``returns`` are the regression targets (e.g.
    :func:`lambda_returns`); float64.

    Claim: ``clipped-value-loss-reference`` (the larger error is $|e - s/2| + |s|/2$ with
    $e = V - R$ and $s = V - V^\mathrm{clip}$; the loss itself is a definition, an
    implementation choice, not a derived result).

    Args:
        values: ``[*S]``, $V_\phi(s_i)$ of the value function being trained.
        old_values: ``[*S]``, $V^\mathrm{old}_i$ predicted when the data was collected.
        returns: ``[*S]``, the targets $R_i$.
        clip_epsilon: $\epsilon > 0$ (``inf`` allowed: plain squared error).

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, empty or non-finite inputs, or ``clip_epsilon <= 0``.

    Examples:
        By hand, $\epsilon = 0.5$: $V = 2$, $V^\mathrm{old} = 0$, $R = 0$: unclipped error
        $4$, clipped value $0.5$ with error $0.25$; $\max = 4$; loss $4 / 2 = 2$.

        >>> clipped_value_loss([2.0], [0.0], [0.0], clip_epsilon=0.5)
        2.0

    References:
        Dhariwal et al., *OpenAI Baselines* (ppo2), 2017; Engstrom et al., *Implementation
        Matters in Deep Policy Gradients*, ICLR 2020, Sec. 3 (value function clipping).
    """
    new, target, clipped, _ = _value_loss_arrays(values, old_values, returns, clip_epsilon)
    return float(0.5 * np.mean(np.maximum((new - target) ** 2, (clipped - target) ** 2)))


def clipped_value_loss_gradient(
    values: Any, old_values: Any, returns: Any, *, clip_epsilon: float
) -> FloatArray:
    r"""Gradient of :func:`clipped_value_loss` with respect to ``values``.

    $$ \frac{\partial \mathcal{L}_V}{\partial V_i} = \frac{1}{N} \begin{cases}
       V_i - R_i & \text{if } (V_i - R_i)^2 \ge (V^\mathrm{clip}_i - R_i)^2, \\
       (V^\mathrm{clip}_i - R_i) \, \mathbb{1}\big[|V_i - V^\mathrm{old}_i| \le \epsilon\big]
       & \text{otherwise.} \end{cases} $$

    At the kinks (a tie between the two errors with the clip active, or
    $|V_i - V^\mathrm{old}_i| = \epsilon$) the unclipped side is returned.

    Conventions: derivative of the mean loss with its factor $\tfrac12$; ``old_values`` and
    ``returns`` are constants; shape ``[*S]``; float64.

    Claim: ``clipped-value-loss-gradient-reference`` (this function against the derivative and
    against central differences of :func:`clipped_value_loss`).

    Args:
        values: ``[*S]``, $V_\phi(s_i)$.
        old_values: ``[*S]``, $V^\mathrm{old}_i$.
        returns: ``[*S]``, $R_i$.
        clip_epsilon: $\epsilon > 0$.

    Returns:
        ``[*S]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`clipped_value_loss`.

    Examples:
        The example of :func:`clipped_value_loss`: the unclipped error is the larger, so the
        gradient is $(2 - 0) / 1 = 2$. With $R = 3$ instead the clipped error $6.25$ wins and
        the clip is active: gradient $0$.

        >>> clipped_value_loss_gradient([2.0, 2.0], [0.0, 0.0], [0.0, 3.0], clip_epsilon=0.5)
        array([1., 0.])

    References:
        Dhariwal et al., *OpenAI Baselines* (ppo2), 2017.
    """
    new, target, clipped, inside = _value_loss_arrays(values, old_values, returns, clip_epsilon)
    unclipped_wins = (new - target) ** 2 >= (clipped - target) ** 2
    per_entry = np.where(unclipped_wins, new - target, np.where(inside, clipped - target, 0.0))
    result: FloatArray = per_entry / new.size
    return result


# --------------------------------------------------------------------------------------------
# KL penalties
# --------------------------------------------------------------------------------------------


def _kl_log_ratio(log_probs: Any, reference_log_probs: Any) -> FloatArray:
    r"""$\log r = \log\pi_\mathrm{ref}(x) - \log\pi(x)$, validated; the one input of every $k_i$.

    ``log_probs`` must be finite (the sample was drawn from $\pi$, so $\pi(x) > 0$);
    ``reference_log_probs`` may also be $-\infty$ ($\pi_\mathrm{ref}(x) = 0$: the KL is infinite
    and every estimator returns $+\infty$). NaN and $+\infty$ raise ``ValueError``.
    """
    new = as_float_array(log_probs, "log_probs")
    reference = as_float_array(reference_log_probs, "reference_log_probs")
    check_shape(reference, "reference_log_probs", new.shape, like="log_probs")
    check_finite(new, "log_probs")
    bad = np.isnan(reference) | np.isposinf(reference)
    if bad.any():
        index = first_index(bad)
        raise ValueError(
            "reference_log_probs must be finite or -inf (probability 0 under the reference), "
            f"got {reference[index]!r} at index {index}"
        )
    with np.errstate(over="ignore"):  # |difference| > 1.8e308: log r is +-inf, so is each k
        result: FloatArray = reference - new
    return result


def kl_estimator_k1(log_probs: Any, reference_log_probs: Any) -> FloatArray:
    r"""Per-sample k1 estimator of $\mathrm{KL}(\pi \,\|\, \pi_\mathrm{ref})$, samples $x \sim \pi$.

    $$ k_1(x) = -\log r(x), \qquad \log r(x) = \log \pi_\mathrm{ref}(x) - \log \pi(x),
       \qquad x \sim \pi. $$

    Unbiased: $\mathbb{E}_{x \sim \pi}[k_1] = \sum_x \pi(x) \log\frac{\pi(x)}{\pi_\mathrm{ref}(x)}
    = \mathrm{KL}(\pi \,\|\, \pi_\mathrm{ref})$, but it can be negative and has high variance.
    Its derivative with respect to $\log \pi(x)$ is $1$, so as a loss its expected gradient is
    the expected score, $0$ (claim ``kl-estimator-gradients``).

    Conventions: the first argument is the *sampled* distribution $\pi$ and the first KL
    argument (in RLHF the policy; Schulman's $q$), the second is $\pi_\mathrm{ref}$ (Schulman's
    $p$), so $\log r$ is ``reference_log_probs - log_probs``; per sample, no reduction; float64.
    ``reference_log_probs`` $= -\infty$ gives $+\infty$. The same convention holds for
    :func:`kl_estimator_k2` and :func:`kl_estimator_k3`, which share this function's validation
    (:mod:`rlmath.estimators` uses these three functions).

    Claim: ``kl-estimators-bias-variance``; ``kl-estimator-gradients``.

    Args:
        log_probs: ``[*S]``, $\log \pi(x)$ of the sampling policy at the samples; finite.
        reference_log_probs: ``[*S]``, $\log \pi_\mathrm{ref}(x)$ at the same samples; finite
            or $-\infty$.

    Returns:
        ``[*S]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, a non-finite ``log_probs`` entry, or a NaN or
            $+\infty$ ``reference_log_probs`` entry.

    Examples:
        $\log r = -2 - (-1) = -1$ gives $k_1 = 1$, and $\log r = 1$ gives $-1$:

        >>> kl_estimator_k1([-1.0, -2.0], [-2.0, -1.0])
        array([ 1., -1.])

    References:
        Schulman, *Approximating KL Divergence*, blog post, 2020 ($x \sim q$,
        $r = p(x)/q(x)$, $k_1 = -\log r$ estimates $\mathrm{KL}(q \,\|\, p)$; here
        $q = \pi$, $p = \pi_\mathrm{ref}$).
    """
    return -_kl_log_ratio(log_probs, reference_log_probs)


def kl_estimator_k2(log_probs: Any, reference_log_probs: Any) -> FloatArray:
    r"""Per-sample k2 estimator of $\mathrm{KL}(\pi \,\|\, \pi_\mathrm{ref})$, samples $x \sim \pi$.

    $$ k_2(x) = \tfrac12 \big(\log r(x)\big)^2, \qquad
       \log r(x) = \log \pi_\mathrm{ref}(x) - \log \pi(x), \qquad x \sim \pi. $$

    Non-negative and low-variance but **biased**: $\mathbb E_{x\sim\pi}[k_2]$ is an
    $f$-divergence that agrees with $\mathrm{KL}(\pi \,\|\, \pi_\mathrm{ref})$ only to second
    order as $\pi_\mathrm{ref} \to \pi$ (for $\pi = N(0,1)$, $\pi_\mathrm{ref} = N(\mu,1)$ its
    mean is $\mu^2/2 + \mu^4/8$ against the KL $\mu^2/2$). Its derivative with respect to
    $\log \pi(x)$ is $k_1 = -\log r$, so as a loss its expected gradient is
    $\nabla_\theta \mathrm{KL}(\pi_\theta \,\|\, \pi_\mathrm{ref})$.

    Conventions: as :func:`kl_estimator_k1`: $x$ sampled from $\pi$ (``log_probs``), KL
    direction $\mathrm{KL}(\pi \,\|\, \pi_\mathrm{ref})$, $\log r$ = ``reference_log_probs -
    log_probs``; per sample, no reduction; float64; $+\infty$ where $\pi_\mathrm{ref}(x) = 0$
    or $(\log r)^2$ overflows.

    Claim: ``kl-estimators-bias-variance``; ``kl-estimator-gradients``; ``kl-nonnegative``.

    Args:
        log_probs: ``[*S]``, $\log \pi(x)$ of the sampling policy; finite.
        reference_log_probs: ``[*S]``, $\log \pi_\mathrm{ref}(x)$; finite or $-\infty$.

    Returns:
        ``[*S]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`kl_estimator_k1`.

    Examples:
        >>> kl_estimator_k2([-1.0, -2.0], [-2.0, -1.0])
        array([0.5, 0.5])

    References:
        Schulman, *Approximating KL Divergence*, blog post, 2020 ($k_2 = \tfrac12 (\log r)^2$,
        $x \sim q$, $r = p/q$; here $q = \pi$, $p = \pi_\mathrm{ref}$).
    """
    log_ratio = _kl_log_ratio(log_probs, reference_log_probs)
    with np.errstate(over="ignore"):  # |log r| > 1.3e154: the term rounds to +inf
        result: FloatArray = 0.5 * log_ratio**2
    return result


def kl_estimator_k3(log_probs: Any, reference_log_probs: Any) -> FloatArray:
    r"""Per-sample k3 estimator of $\mathrm{KL}(\pi \,\|\, \pi_\mathrm{ref})$, samples $x \sim \pi$.

    $$ k_3(x) = (r - 1) - \log r, \qquad
       r = \frac{\pi_\mathrm{ref}(x)}{\pi(x)} = \exp(\log\pi_\mathrm{ref}(x) - \log\pi(x)),
       \qquad x \sim \pi. $$

    Unbiased, since $\mathbb{E}_{x\sim\pi}[r - 1] = \sum_x \pi_\mathrm{ref}(x) - 1 = 0$ (a
    control variate added to $k_1$), and non-negative sample by sample ($\log r \le r - 1$).
    Computed as ``expm1(log_r) - log_r``, accurate for small $\log r$ ($k_3 \approx
    (\log r)^2/2$) and $+\infty$ where $r$ overflows or $\pi_\mathrm{ref}(x) = 0$. Its derivative
    with respect to $\log\pi(x)$ is $1 - r$, so as a loss its expected gradient is
    $\nabla_\theta \mathrm{KL}(\pi_\mathrm{ref} \,\|\, \pi_\theta)$, the *other* direction.

    Conventions: as :func:`kl_estimator_k1`: $x$ sampled from $\pi$ (``log_probs``), KL
    direction $\mathrm{KL}(\pi \,\|\, \pi_\mathrm{ref})$, $\log r$ = ``reference_log_probs -
    log_probs``; per sample, no reduction; float64.

    Claim: ``kl-estimators-bias-variance``; ``kl-estimator-gradients``; ``kl-nonnegative``.

    Args:
        log_probs: ``[*S]``, $\log \pi(x)$ of the sampling policy; finite.
        reference_log_probs: ``[*S]``, $\log \pi_\mathrm{ref}(x)$; finite or $-\infty$.

    Returns:
        ``[*S]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`kl_estimator_k1`.

    Examples:
        By hand: $\log r = 0$ gives $0$; $\log r = -\log 2$ gives $r = 1/2$ and
        $k_3 = -1/2 + \log 2$.

        >>> kl_estimator_k3([0.0, np.log(2.0)], [0.0, 0.0])
        array([0.        , 0.19314718])

    References:
        Schulman, *Approximating KL Divergence*, blog post, 2020 ($k_3 = (r - 1) - \log r$,
        $x \sim q$, $r = p/q$; here $q = \pi$, $p = \pi_\mathrm{ref}$).
    """
    log_ratio = _kl_log_ratio(log_probs, reference_log_probs)
    with np.errstate(over="ignore", invalid="ignore"):  # r = e^(log r) overflows: +inf
        result: FloatArray = np.where(
            np.isposinf(log_ratio), np.inf, np.expm1(log_ratio) - log_ratio
        )
    return result


def adaptive_kl_coefficient(
    kl_coefficient: float,
    observed_kl: float,
    *,
    target_kl: float,
    tolerance: float = 1.5,
    factor: float = 2.0,
) -> float:
    r"""PPO's adaptive KL-penalty coefficient update.

    $$ \beta' = \begin{cases} \beta / \text{factor} & d < d_\mathrm{targ} / \text{tolerance},\\
       \beta \cdot \text{factor} & d > d_\mathrm{targ} \cdot \text{tolerance}, \\
       \beta & \text{otherwise,} \end{cases} $$

    with $\beta$ = ``kl_coefficient``, $d$ = ``observed_kl`` (the mean KL measured after the
    policy update) and $d_\mathrm{targ}$ = ``target_kl``. Strict inequalities, as in the paper.

    Conventions: $\beta$ multiplies a KL *penalty* (the loss is $\ldots + \beta\,d$); the KL is
    $\mathrm{KL}(\pi_{\theta_\mathrm{old}} \| \pi_\theta)$ averaged over visited states, as in
    the paper; returns a Python float.

    Claim: ``adaptive-kl-coefficient-reference`` (the update rule itself; it is a heuristic,
    ``kl-regularized-optimal-policy`` describes the optimum for a fixed $\beta$).

    Args:
        kl_coefficient: $\beta > 0$.
        observed_kl: $d \ge 0$.
        target_kl: $d_\mathrm{targ} > 0$.
        tolerance: band factor, $> 1$ (1.5 in the paper).
        factor: multiplicative step, $> 1$ (2 in the paper).

    Returns:
        The new coefficient $\beta'$.

    Raises:
        TypeError: if an argument is not a real number.
        ValueError: if an argument is out of its range.

    Examples:
        Target 0.01: 0.001 is below 0.01/1.5 (halve), 0.02 above 0.015 (double).

        >>> adaptive_kl_coefficient(1.0, 0.001, target_kl=0.01)
        0.5
        >>> adaptive_kl_coefficient(1.0, 0.02, target_kl=0.01)
        2.0
        >>> adaptive_kl_coefficient(1.0, 0.01, target_kl=0.01)
        1.0

    References:
        Schulman et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, 2017,
        Sec. 4 (the update following eq. 8).
    """
    beta = check_interval(kl_coefficient, "kl_coefficient", low=0.0, high=np.inf, low_open=True)
    kl = check_interval(observed_kl, "observed_kl", low=0.0, high=np.inf, high_open=True)
    target = check_interval(target_kl, "target_kl", low=0.0, high=np.inf, low_open=True)
    band = check_interval(tolerance, "tolerance", low=1.0, high=np.inf, low_open=True)
    step = check_interval(factor, "factor", low=1.0, high=np.inf, low_open=True)
    if kl < target / band:
        return beta / step
    if kl > target * band:
        return beta * step
    return beta


# --------------------------------------------------------------------------------------------
# Entropy
# --------------------------------------------------------------------------------------------


def _log_softmax(logits: Any) -> FloatArray:
    array = as_float_array(logits, "logits")
    if array.ndim < 1 or array.shape[-1] < 1:
        raise ValueError(f"logits must have shape [*S, K] with K >= 1, got {array.shape}")
    if np.isnan(array).any() or np.isposinf(array).any():
        raise ValueError("logits must be finite or -inf (a masked action), got NaN or +inf")
    if np.isneginf(array).all(axis=-1).any():
        raise ValueError("logits must have at least one finite entry in every row")
    result: FloatArray = array - logsumexp(array, axis=-1, keepdims=True)
    return result


def categorical_entropy(logits: Any) -> FloatArray:
    r"""Entropy of the categorical distribution $\operatorname{softmax}(\text{logits})$.

    $$ H(p) = -\sum_{k=1}^{K} p_k \log p_k, \qquad
       \log p_k = \ell_k - \log \sum_j e^{\ell_j}, $$

    computed with log-sum-exp (logits of magnitude $10^3$ overflow a naive softmax), and
    $0 \log 0 = 0$ so that ``-inf`` logits mark masked actions.

    Conventions: categories on the last axis; natural log (nats); per distribution, no
    reduction; an entropy *bonus* enters a loss with a minus sign; float64.

    Claim: ``kl-nonnegative`` ($\log K - H(p) = \mathrm{KL}(p \| \mathrm{uniform}) \ge 0$).

    Args:
        logits: ``[*S, K]``, unnormalised log-probabilities; finite or ``-inf``.

    Returns:
        ``[*S]`` float64 array of entropies.

    Raises:
        TypeError: if ``logits`` is not numeric.
        ValueError: on NaN or ``+inf`` logits, a row of only ``-inf``, or ``K = 0``.

    Examples:
        Uniform over 4 gives $\log 4$; a masked action does not count.

        >>> categorical_entropy([[0.0, 0.0, 0.0, 0.0], [1e3, 1e3, -np.inf, -np.inf]])
        array([1.38629436, 0.69314718])

    References:
        Cover and Thomas, *Elements of Information Theory*, 2nd ed., 2006, eq. 2.1.
    """
    log_p = _log_softmax(logits)
    p = np.exp(log_p)
    result: FloatArray = -np.sum(p * np.where(p > 0, log_p, 0.0), axis=-1)
    return result


# --------------------------------------------------------------------------------------------
# Preference losses
# --------------------------------------------------------------------------------------------


def _dpo_margin(
    policy_chosen_log_probs: Any,
    policy_rejected_log_probs: Any,
    reference_chosen_log_probs: Any,
    reference_rejected_log_probs: Any,
    beta: Any,
) -> tuple[FloatArray, float]:
    chosen, rejected, reference_chosen, reference_rejected = _same_shape_arrays(
        "policy_chosen_log_probs",
        policy_chosen_log_probs=policy_chosen_log_probs,
        policy_rejected_log_probs=policy_rejected_log_probs,
        reference_chosen_log_probs=reference_chosen_log_probs,
        reference_rejected_log_probs=reference_rejected_log_probs,
    )
    if chosen.size == 0:
        raise ValueError(f"policy_chosen_log_probs must not be empty, got shape {chosen.shape}")
    strength = check_interval(beta, "beta", low=0.0, high=np.inf, low_open=True, high_open=True)
    margin = strength * ((chosen - reference_chosen) - (rejected - reference_rejected))
    return margin, strength


def dpo_loss(
    policy_chosen_log_probs: Any,
    policy_rejected_log_probs: Any,
    reference_chosen_log_probs: Any,
    reference_rejected_log_probs: Any,
    *,
    beta: float,
) -> float:
    r"""Direct Preference Optimization loss (sigmoid form), mean over preference pairs.

    $$ \mathcal{L}_\mathrm{DPO} = -\frac1N \sum_i \log \sigma(z_i), \qquad
       z_i = \beta \Big[\big(\log\pi_\theta(y^w_i) - \log\pi_\mathrm{ref}(y^w_i)\big)
                      - \big(\log\pi_\theta(y^l_i) - \log\pi_\mathrm{ref}(y^l_i)\big)\Big], $$

    computed as ``logaddexp(0, -z)`` (a naive ``log(sigmoid(z))`` is ``-inf`` for
    $z \lesssim -745$). Identical chosen and rejected log-probs give $\log 2$.

    Conventions: a loss (minimise it); mean over the $N$ pairs; log-probs are of whole
    responses $y$ given the prompt (summed over tokens by the caller); $y^w$ preferred to $y^l$;
    no label smoothing; float64.

    Claim: ``dpo-loss-reference`` (this function is the mean of $\log(1 + e^{-z_i})$);
    ``dpo-implicit-reward`` ($\beta \log \pi_\theta / \pi_\mathrm{ref}$ is a reward
    under which the Bradley-Terry likelihood is this loss); ``kl-regularized-optimal-policy``.

    Args:
        policy_chosen_log_probs: ``[N]``, $\log\pi_\theta(y^w_i \mid x_i)$.
        policy_rejected_log_probs: ``[N]``, $\log\pi_\theta(y^l_i \mid x_i)$.
        reference_chosen_log_probs: ``[N]``, $\log\pi_\mathrm{ref}(y^w_i \mid x_i)$.
        reference_rejected_log_probs: ``[N]``, $\log\pi_\mathrm{ref}(y^l_i \mid x_i)$.
        beta: $\beta > 0$, the KL-regularisation strength.

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, empty or non-finite inputs, or ``beta <= 0``.

    Examples:
        Policy equal to the reference: $z = 0$ and the loss is $\log 2$.

        >>> dpo_loss([-3.0], [-5.0], [-3.0], [-5.0], beta=0.1)
        0.6931471805599453

    References:
        Rafailov et al., *Direct Preference Optimization: Your Language Model is Secretly a
        Reward Model*, NeurIPS 2023, eq. 7.
    """
    margin, _ = _dpo_margin(
        policy_chosen_log_probs,
        policy_rejected_log_probs,
        reference_chosen_log_probs,
        reference_rejected_log_probs,
        beta,
    )
    return float(np.mean(np.logaddexp(0.0, -margin)))


def dpo_loss_gradient(
    policy_chosen_log_probs: Any,
    policy_rejected_log_probs: Any,
    reference_chosen_log_probs: Any,
    reference_rejected_log_probs: Any,
    *,
    beta: float,
) -> tuple[FloatArray, FloatArray]:
    r"""Gradient of :func:`dpo_loss` with respect to the two policy log-probs.

    $$ \frac{\partial \mathcal{L}_\mathrm{DPO}}{\partial \log\pi_\theta(y^w_i)} =
       -\frac{\beta}{N} \sigma(-z_i), \qquad
       \frac{\partial \mathcal{L}_\mathrm{DPO}}{\partial \log\pi_\theta(y^l_i)} =
       +\frac{\beta}{N} \sigma(-z_i), $$

    with $z_i$ as in :func:`dpo_loss`: pairs the implicit reward already ranks correctly
    ($z_i \gg 0$) get little weight.

    Conventions: derivative of the mean loss; reference log-probs are constants; float64.

    Claim: ``dpo-loss-gradient-reference`` (this function against the derivative and against
    central differences of :func:`dpo_loss`); ``dpo-implicit-reward``.

    Args:
        policy_chosen_log_probs: ``[N]``.
        policy_rejected_log_probs: ``[N]``.
        reference_chosen_log_probs: ``[N]``.
        reference_rejected_log_probs: ``[N]``.
        beta: $\beta > 0$.

    Returns:
        ``(d_chosen, d_rejected)``, two ``[N]`` float64 arrays.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`dpo_loss`.

    Examples:
        At $z = 0$, $\sigma(0) = 1/2$: gradients $\mp \beta / 2$ for $N = 1$.

        >>> dpo_loss_gradient([-3.0], [-5.0], [-3.0], [-5.0], beta=0.1)
        (array([-0.05]), array([0.05]))

    References:
        Rafailov et al., *Direct Preference Optimization*, NeurIPS 2023, Sec. 4 ("What does the
        DPO update do?").
    """
    margin, strength = _dpo_margin(
        policy_chosen_log_probs,
        policy_rejected_log_probs,
        reference_chosen_log_probs,
        reference_rejected_log_probs,
        beta,
    )
    weight = strength * expit(-margin) / margin.size
    return -weight, weight


def bradley_terry_loss(chosen_rewards: Any, rejected_rewards: Any) -> float:
    r"""Bradley-Terry reward-model loss, mean over preference pairs.

    $$ \mathcal{L}_\mathrm{BT} = -\frac1N \sum_i \log \sigma\big(r_\phi(x_i, y^w_i)
       - r_\phi(x_i, y^l_i)\big), $$

    computed as ``logaddexp(0, -(chosen - rejected))``.

    Conventions: a loss (minimise it); mean over the $N$ pairs; $y^w$ preferred; float64.

    Claim: ``bradley-terry-reference``; ``dpo-implicit-reward`` (DPO is this loss with the
    implicit reward).

    Args:
        chosen_rewards: ``[N]``, $r_\phi(x_i, y^w_i)$.
        rejected_rewards: ``[N]``, $r_\phi(x_i, y^l_i)$.

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, empty or non-finite inputs.

    Examples:
        Equal rewards give $\log 2$; a margin of 1000 costs nothing; of -1000 costs 1000.

        >>> bool(np.isclose(bradley_terry_loss([0.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]),
        ...                 (np.log(2.0) + 0.0 + 1000.0) / 3))
        True

    References:
        Bradley and Terry, *Rank Analysis of Incomplete Block Designs*, Biometrika 1952;
        Ouyang et al., *Training language models to follow instructions with human feedback*,
        NeurIPS 2022, eq. 1 (without the $1/\binom{K}{2}$ grouping).
    """
    chosen, rejected = _same_shape_arrays(
        "chosen_rewards", chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards
    )
    if chosen.size == 0:
        raise ValueError(f"chosen_rewards must not be empty, got shape {chosen.shape}")
    return float(np.mean(np.logaddexp(0.0, -(chosen - rejected))))


# --------------------------------------------------------------------------------------------
# Advantage normalisation
# --------------------------------------------------------------------------------------------


def _standardize(x: FloatArray, axis: int | None, epsilon: Any, ddof: Any) -> FloatArray:
    r"""$(x - \bar x) / (s + \epsilon)$ along ``axis``; exactly 0 where all entries are equal."""
    eps = check_interval(epsilon, "epsilon", low=0.0, high=np.inf, high_open=True)
    if isinstance(ddof, bool) or ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
    constant = np.max(x, axis=axis, keepdims=True) == np.min(x, axis=axis, keepdims=True)
    count = x.size if axis is None else x.shape[axis]
    if count - ddof <= 0:
        return np.zeros_like(x)
    # Work on y = x / c with c the power of two just below max |x|: the sum behind the mean and
    # the deviations (up to 2 max |x|) overflow for entries near 1e308 otherwise. Scaling by a
    # power of two is exact, and so is the result once epsilon is scaled too:
    # (x - mean) / (s + eps) = (y - mean_y) / (s_y + eps / c), bit for bit where x does not
    # overflow.
    largest_entry = np.max(np.abs(x), axis=axis, keepdims=True)
    _, exponent = np.frexp(np.where(constant | (largest_entry == 0), 1.0, largest_entry))
    scale = np.ldexp(1.0, exponent - 1)  # max |y| in [1, 2)
    y = x / scale
    deviation = y - np.mean(y, axis=axis, keepdims=True)
    # std computed on deviations scaled to at most 1, so tiny values do not underflow when squared
    largest = np.max(np.abs(deviation), axis=axis, keepdims=True)
    largest = np.where(constant | (largest == 0), 1.0, largest)
    mean_square = np.sum((deviation / largest) ** 2, axis=axis, keepdims=True) / (count - ddof)
    with np.errstate(over="ignore"):  # eps / c above the float range: the result is 0
        denominator = np.where(constant, 1.0, largest * np.sqrt(mean_square) + eps / scale)
    result: FloatArray = np.where(constant, 0.0, deviation / denominator)
    return result


def group_normalized_advantages(rewards: Any, *, epsilon: float = 0.0, ddof: int = 0) -> FloatArray:
    r"""GRPO advantages: each reward standardised within its group of samples for one prompt.

    $$ A_{g,i} = \frac{r_{g,i} - \bar r_g}{s_g + \epsilon}, \qquad
       \bar r_g = \frac1n \sum_j r_{g,j}, \quad
       s_g = \sqrt{\tfrac{1}{n - \mathrm{ddof}} \textstyle\sum_j (r_{g,j} - \bar r_g)^2}, $$

    and $A_{g,i} = 0$ for every $i$ when the group's rewards are all equal ($s_g = 0$, which
    includes groups of one sample): such a group carries no preference signal. Computing
    ``(r - mean) / std`` there gives ``0/0``, or with a rounded mean, advantages of $\pm 1$.

    Conventions: ``rewards[g, i]`` is the reward of sample $i$ for prompt $g$ (groups on axis 0,
    samples on axis 1); statistics along axis 1; ``ddof = 0`` is NumPy's ``std``, ``ddof = 1``
    PyTorch's default ``std`` (as in TRL); float64.

    Claim: ``group-normalized-advantages-reference`` (per group: these entries, mean 0 and
    variance $s_g^2 / (s_g + \epsilon)^2$ with the divisor $n - \mathrm{ddof}$);
    ``baseline-unbiased`` (applies exactly to leave-one-out baselines; the group mean
    includes the sample itself, a bias of order $1/n$).

    Args:
        rewards: ``[G, n]``, one row per prompt.
        epsilon: $\epsilon \ge 0$ added to the standard deviation.
        ddof: 0 (population std) or 1 (sample std).

    Returns:
        ``[G, n]`` float64 array.

    Raises:
        TypeError: if ``rewards`` is not numeric.
        ValueError: if ``rewards`` is not 2-D, is empty or non-finite, ``epsilon < 0`` or
            ``ddof`` is not 0 or 1.

    Examples:
        Rewards (0, 2): mean 1, population std 1, so advantages $(-1, 1)$; a tied group is 0.

        >>> group_normalized_advantages([[0.0, 2.0], [0.1, 0.1]])
        array([[-1.,  1.],
               [ 0.,  0.]])

    References:
        Shao et al., *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
        Language Models*, arXiv:2402.03300, 2024, Sec. 4.1.2.
    """
    array = as_float_array(rewards, "rewards", ndim=2)
    if array.size == 0:
        raise ValueError(f"rewards must not be empty, got shape {array.shape}")
    check_finite(array, "rewards")
    return _standardize(array, 1, epsilon, ddof)


def normalized_advantages(advantages: Any, *, epsilon: float = 0.0, ddof: int = 0) -> FloatArray:
    r"""Advantages standardised over the whole batch (every entry, every axis).

    $$ \tilde A_i = \frac{A_i - \bar A}{s + \epsilon}, \qquad \bar A = \frac1N \sum_j A_j, \quad
       s = \sqrt{\tfrac{1}{N - \mathrm{ddof}} \textstyle\sum_j (A_j - \bar A)^2}, $$

    and $\tilde A = 0$ when all advantages are equal ($s = 0$, which includes $N = 1$).
    Computed on the advantages divided by a power of two near their largest magnitude (an
    exact scaling), so entries up to the float64 maximum do not overflow the mean or std.

    Conventions: mean and std over *all* entries of a ``[T, B]`` (or any-shaped) batch, not per
    time step or per environment; ``ddof = 0`` is NumPy's ``std``, ``ddof = 1`` PyTorch's
    default (CleanRL, Stable-Baselines3); float64.

    Claim: ``normalized-advantages-reference`` (these entries, mean 0 and variance
    $s^2 / (s + \epsilon)^2$ with the divisor $N - \mathrm{ddof}$); ``baseline-unbiased``
    (for the shift; the batch mean includes the sample itself, a bias of order $1/N$; the
    scaling changes the step size only).

    Args:
        advantages: ``[*S]``, any non-empty shape.
        epsilon: $\epsilon \ge 0$ added to the standard deviation.
        ddof: 0 or 1.

    Returns:
        ``[*S]`` float64 array.

    Raises:
        TypeError: if ``advantages`` is not numeric.
        ValueError: if ``advantages`` is empty or non-finite, ``epsilon < 0`` or ``ddof`` is
            not 0 or 1.

    Examples:
        Mean 2, population std 1 (by hand: deviations -1, 1).

        >>> normalized_advantages([[1.0], [3.0]])
        array([[-1.],
               [ 1.]])

    References:
        Andrychowicz et al., *What Matters in On-Policy Reinforcement Learning? A Large-Scale
        Empirical Study*, ICLR 2021, Sec. 3.5 (advantage normalisation).
    """
    array = as_float_array(advantages, "advantages")
    if array.size == 0:
        raise ValueError(f"advantages must not be empty, got shape {array.shape}")
    check_finite(array, "advantages")
    return _standardize(array, None, epsilon, ddof)


# --------------------------------------------------------------------------------------------
# Policy-gradient, dual-clip and combined actor-critic losses
# --------------------------------------------------------------------------------------------


def _coefficient(value: Any, name: str) -> float:
    return check_interval(value, name, low=0.0, high=np.inf, high_open=True)


def policy_gradient_loss(log_probs: Any, advantages: Any) -> float:
    r"""The REINFORCE (vanilla policy-gradient) loss, mean over samples.

    $$ \mathcal{L}_\mathrm{PG} = -\frac1N \sum_i \log\pi_\theta(a_i \mid s_i) \, A_i, \qquad
       \frac{\partial \mathcal{L}_\mathrm{PG}}{\partial \log\pi_\theta(a_i \mid s_i)}
       = -\frac{A_i}{N}, $$

    so that $-\nabla_\theta \mathcal{L}_\mathrm{PG} = \frac1N \sum_i A_i \nabla_\theta
    \log\pi_\theta(a_i \mid s_i)$ is the sample estimate of the policy gradient. Only the
    gradient means something: the value of the loss is not an estimate of the return.

    Conventions: a loss (minimise it); mean over all $N$ entries of any shape ``[*S]``;
    ``advantages`` are constants (stop-gradient: detach them or compute them without
    gradient tracking); they may be returns, rewards-to-go, GAE or normalised advantages;
    float64.

    Claim: ``policy-gradient-theorem``; ``log-derivative-trick``.

    Args:
        log_probs: ``[*S]``, $\log\pi_\theta(a_i \mid s_i)$ of the sampled actions under the
            policy being optimised (which sampled them).
        advantages: ``[*S]``, $A_i$.

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, empty or non-finite inputs.

    Examples:
        By hand: $-(\log\tfrac12 \cdot 2 + \log 1 \cdot 5)/2 = \log 2$.

        >>> policy_gradient_loss([np.log(0.5), 0.0], [2.0, 5.0])
        0.6931471805599453

    References:
        Williams, *Simple Statistical Gradient-Following Algorithms for Connectionist
        Reinforcement Learning*, Machine Learning 8, 1992 (REINFORCE).
        Sutton et al., *Policy Gradient Methods for Reinforcement Learning with Function
        Approximation*, NeurIPS 1999, Theorem 1.
    """
    new, adv = _same_shape_arrays("log_probs", log_probs=log_probs, advantages=advantages)
    if new.size == 0:
        raise ValueError(f"log_probs must not be empty, got shape {new.shape}")
    return float(-np.mean(new * adv))


def _dual_clip(dual_clip: Any) -> float:
    return check_interval(dual_clip, "dual_clip", low=1.0, high=np.inf, low_open=True)


def dual_clip_ppo_loss(
    log_probs: Any, old_log_probs: Any, advantages: Any, *, clip_epsilon: float, dual_clip: float
) -> float:
    r"""Dual-clip PPO loss: PPO's clipped loss, with the objective of $A < 0$ bounded by $cA$.

    $$ \begin{aligned}
       \mathcal{L} &= -\frac1N \sum_i \begin{cases}
       J_i & A_i \ge 0, \\
       \max\big(J_i,\; c \, A_i\big) & A_i < 0, \end{cases} \\
       J_i &= \min\big(\rho_i A_i,\, \operatorname{clip}(\rho_i, 1-\epsilon, 1+\epsilon) A_i\big),
       \\
       \rho_i &= e^{\log\pi_\theta(a_i \mid s_i) - \log\pi_{\theta_\mathrm{old}}(a_i \mid s_i)},
       \end{aligned} $$

    with $J_i$ PPO's clipped objective and $c$ = ``dual_clip`` $> 1$. PPO's objective for $A_i < 0$ is $\rho_i A_i$, unbounded
    below as $\rho_i \to \infty$ (off-policy data with a tiny $\pi_{\theta_\mathrm{old}}$); the
    dual clip replaces it by the constant $c A_i$ once $\rho_i > c$, so such samples get no
    gradient. The gradient with respect to $\log\pi_\theta(a_i \mid s_i)$ is
    $-\rho_i A_i / N$ where $A_i > 0$ and $\rho_i \le 1 + \epsilon$, or $A_i < 0$ and
    $1 - \epsilon \le \rho_i \le c$, and $0$ elsewhere. ``dual_clip = inf`` gives
    :func:`ppo_clipped_surrogate_loss`.

    Conventions: a loss (minimise it); mean over all $N$ entries of any shape ``[*S]``; the
    ratio is formed in log space; ``old_log_probs`` and ``advantages`` are constants; the dual
    clip applies to $A_i < 0$ only; float64.

    Claim: ``ppo-clip-gradient`` (for $A \ge 0$ and for $\rho \le c$ the loss is PPO's);
    ``ppo-clip-lower-bound``.

    Args:
        log_probs: ``[*S]``, $\log \pi_\theta(a_i \mid s_i)$ of the policy being optimised.
        old_log_probs: ``[*S]``, $\log \pi_{\theta_\mathrm{old}}(a_i \mid s_i)$ of the policy
            that sampled the actions.
        advantages: ``[*S]``, $A_i$.
        clip_epsilon: $\epsilon > 0$ (``inf`` allowed).
        dual_clip: $c > 1$ (``inf`` allowed: plain PPO); Ye et al. use $c = 3$.

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, empty or non-finite inputs, ``clip_epsilon <= 0``
            or ``dual_clip <= 1``.

    Examples:
        By hand, $\epsilon = 0.2$, $c = 3$, $A = -1$: $\rho = 10$ gives PPO's term
        $\min(-10, -1.2) = -10$, dual-clipped to $\max(-10, -3) = -3$; $\rho = 2$ keeps
        $\max(-2, -3) = -2$. Loss $-(-3 - 2)/2 = 2.5$ (PPO: 6).

        >>> dual_clip_ppo_loss([np.log(10.0), np.log(2.0)], [0.0, 0.0], [-1.0, -1.0],
        ...                    clip_epsilon=0.2, dual_clip=3.0)
        2.5

    References:
        Ye et al., *Mastering Complex Control in MOBA Games with Deep Reinforcement Learning*,
        AAAI 2020 (arXiv:1912.09729), the dual-clip PPO objective.
        Schulman et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, 2017,
        eq. 7.
    """
    ratio, adv, epsilon = _ppo_arrays(log_probs, old_log_probs, advantages, clip_epsilon)
    c = _dual_clip(dual_clip)
    clipped = np.clip(ratio, 1.0 - epsilon, 1.0 + epsilon)
    ppo = np.minimum(ratio * adv, clipped * adv)
    with np.errstate(invalid="ignore"):  # c = inf times A = 0 where A >= 0 is not used
        objective = np.where(adv < 0, np.maximum(ppo, c * adv), ppo)
    return float(-np.mean(objective))


def actor_critic_loss(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    values: Any,
    returns: Any,
    entropy: Any,
    reference_log_probs: Any = None,
    *,
    clip_epsilon: float,
    value_coefficient: float,
    entropy_coefficient: float,
    kl_coefficient: float,
) -> float:
    r"""PPO's combined loss: clipped policy loss + value loss - entropy bonus + KL penalty.

    $$ \mathcal{L} = \mathcal{L}^\mathrm{CLIP}
       + c_v \, \frac{1}{2N} \sum_i (V_i - R_i)^2
       - c_e \, \frac1N \sum_i H_i
       + \beta \, \frac1N \sum_i k_3(a_i \mid s_i), $$

    $$ k_3 = (r_i - 1) - \log r_i, \qquad
       r_i = \exp\big(\log\pi_\mathrm{ref}(a_i \mid s_i) - \log\pi_\theta(a_i \mid s_i)\big), $$

    with $\mathcal{L}^\mathrm{CLIP}$ of :func:`ppo_clipped_surrogate_loss`, $c_v$ =
    ``value_coefficient``, $c_e$ = ``entropy_coefficient`` and $\beta$ = ``kl_coefficient``.
    **Signs:** the entropy *bonus* is subtracted (minimising the loss raises the entropy) and
    the KL *penalty* is added (minimising it pulls $\pi_\theta$ toward $\pi_\mathrm{ref}$).

    **KL term:** the mean of :func:`kl_estimator_k3` of $\mathrm{KL}(\pi_\theta \,\|\,
    \pi_\mathrm{ref})$, with the actions sampled from $\pi_{\theta_\mathrm{old}}$ (equal to
    $\pi_\theta$ at the first epoch; no importance weight, as in GRPO), not clamped. It sits
    in the *loss* and is differentiated through ``log_probs`` (gradient
    $\beta (1 - r_i) / N$), not in the reward: with samples from $\pi_\theta$ its expected
    gradient is that of $\mathrm{KL}(\pi_\mathrm{ref} \,\|\, \pi_\theta)$ (claim
    ``kl-estimator-gradients``), which agrees with that of $\mathrm{KL}(\pi_\theta \,\|\,
    \pi_\mathrm{ref})$ to first order near $\pi_\mathrm{ref}$.

    Conventions: a loss (minimise it); every term a mean over the same $N$ entries of any shape
    ``[*S]``; value loss unclipped with the factor $\tfrac12$ (CleanRL, Baselines;
    Stable-Baselines3 omits it, so its ``vf_coef`` $c$ is ``value_coefficient`` $2c$ here);
    ``entropy[i]`` is $H(\pi_\theta(\cdot \mid s_i))$, differentiated; ``old_log_probs``,
    ``advantages``, ``returns`` and ``reference_log_probs`` are constants; float64.

    Claim: ``ppo-clip-gradient`` (the policy term); ``kl-estimator-gradients`` (the KL
    term's gradient); ``kl-nonnegative``.

    Args:
        log_probs: ``[*S]``, $\log \pi_\theta(a_i \mid s_i)$ of the policy being optimised.
        old_log_probs: ``[*S]``, $\log \pi_{\theta_\mathrm{old}}(a_i \mid s_i)$ of the policy
            that sampled the actions.
        advantages: ``[*S]``, $A_i$.
        values: ``[*S]``, $V_\phi(s_i)$ of the value function being trained.
        returns: ``[*S]``, the value targets $R_i$ (e.g. :func:`lambda_returns`).
        entropy: ``[*S]``, $H_i = H(\pi_\theta(\cdot \mid s_i))$ (e.g.
            :func:`categorical_entropy`; differential entropies may be negative).
        reference_log_probs: ``[*S]``, $\log\pi_\mathrm{ref}(a_i \mid s_i)$, or ``None`` when
            ``kl_coefficient`` is 0.
        clip_epsilon: $\epsilon > 0$ (``inf`` allowed).
        value_coefficient: $c_v \ge 0$.
        entropy_coefficient: $c_e \ge 0$.
        kl_coefficient: $\beta \ge 0$.

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, empty or non-finite inputs, a negative or infinite
            coefficient, ``clip_epsilon <= 0``, or ``reference_log_probs = None`` with
            ``kl_coefficient > 0``.

    Examples:
        By hand with $\rho = 1$ (so $\mathcal{L}^\mathrm{CLIP} = -\mathrm{mean}(A) = 0$),
        $c_v = 0.5$, $c_e = 0.25$, $\beta = 1$: value term $0.5 \cdot (1 + 4)/4 = 0.625$,
        entropy term $-0.25 \cdot 0.75 = -0.1875$, KL term: $r = (1, 2)$ gives
        $k_3 = (0, 1 - \log 2)$, mean $0.5 - \tfrac12 \log 2$.

        >>> loss = actor_critic_loss([0.0, 0.0], [0.0, 0.0], [1.0, -1.0], [1.0, 2.0],
        ...                          [0.0, 0.0], [1.0, 0.5], [0.0, np.log(2.0)],
        ...                          clip_epsilon=0.2, value_coefficient=0.5,
        ...                          entropy_coefficient=0.25, kl_coefficient=1.0)
        >>> bool(np.isclose(loss, 0.625 - 0.1875 + 0.5 - 0.5 * np.log(2.0)))
        True

    References:
        Schulman et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, 2017,
        eq. 9 ($L^{\mathrm{CLIP}+\mathrm{VF}+S}$, an objective: here its negative).
        Shao et al., *DeepSeekMath*, arXiv:2402.03300, 2024, eq. 4 (the k3 KL term in the loss).
        Huang et al., *The 37 Implementation Details of Proximal Policy Optimization*, ICLR
        Blog Track 2022 (the $\tfrac12$ and the signs).
    """
    new, old, adv, value, target, entropies = _same_shape_arrays(
        "log_probs",
        log_probs=log_probs,
        old_log_probs=old_log_probs,
        advantages=advantages,
        values=values,
        returns=returns,
        entropy=entropy,
    )
    if new.size == 0:
        raise ValueError(f"log_probs must not be empty, got shape {new.shape}")
    epsilon = _clip_epsilon(clip_epsilon)
    c_v = _coefficient(value_coefficient, "value_coefficient")
    c_e = _coefficient(entropy_coefficient, "entropy_coefficient")
    beta = _coefficient(kl_coefficient, "kl_coefficient")
    with np.errstate(over="ignore"):
        ratio = np.exp(new - old)
    clipped = np.clip(ratio, 1.0 - epsilon, 1.0 + epsilon)
    policy_loss = -np.mean(np.minimum(ratio * adv, clipped * adv))
    value_loss = 0.5 * np.mean((value - target) ** 2)
    loss = policy_loss + c_v * value_loss - c_e * np.mean(entropies)
    if reference_log_probs is None:
        if beta > 0:
            raise ValueError(
                f"reference_log_probs is required when kl_coefficient > 0, got {beta!r}"
            )
        return float(loss)
    (reference_array,) = _same_shape_arrays("log_probs", reference_log_probs=reference_log_probs)
    check_shape(reference_array, "reference_log_probs", new.shape, like="log_probs")
    log_ratio = new - reference_array
    with np.errstate(over="ignore"):
        k3 = np.expm1(-log_ratio) + log_ratio
    return float(loss + beta * np.mean(k3))


# --------------------------------------------------------------------------------------------
# n-step returns and V-trace
# --------------------------------------------------------------------------------------------


def n_step_returns(
    rewards: Any,
    values: Any,
    terminated: Any,
    truncated: Any,
    final_values: Any,
    last_value: Any,
    *,
    discount: float,
    n_steps: int,
) -> FloatArray:
    r"""$n$-step bootstrapped returns with separate termination and truncation.

    $$ G^{(n)}_t = \sum_{k=0}^{m-1} \gamma^k r_{t+k} + \gamma^m \, v'_{t+m-1}, \qquad
       m = \min\big(n,\; e(t) - t + 1\big), $$

    where $e(t)$ is the last step of $t$'s episode within the buffer and $v'_t$ the bootstrap
    value of :func:`temporal_difference_errors`. The window of $n$ rewards is cut where the
    episode ends: after a termination nothing is bootstrapped ($v' = 0$); after a truncation
    the value ``final_values`` of the final observation is; at the end of the buffer
    ``last_value``; otherwise the window ends at $V(s_{t+n})$ = ``values[t+n]``.
    ``n_steps = 1`` gives the TD target $r_t + \gamma v'_t$; ``n_steps >= T`` the return to
    the end of the episode or buffer, bootstrapped there (:func:`lambda_returns` with
    $\lambda = 1$).

    Conventions: time-major ``[T, *B]``; $r_t$ follows action $a_t$; termination wins when both
    flags are set; $\gamma^m$ multiplies the bootstrap ($m$ = rewards summed); float64.

    Claim: ``n-step-returns-closed-form`` ($G^{(n)}_t = V(s_t) + \sum_{k<m} \gamma^k
    \delta_{t+k}$, the window cut at the episode's end); ``td-error-is-advantage`` ($n = 1$);
    ``gae-closed-form`` (the $\lambda$-return is the $(1-\lambda)\lambda^{n-1}$-weighted
    average of these returns).

    Args:
        rewards: ``[T, *B]``, $r_t$ for times ``0..T-1``.
        values: ``[T, *B]``, $V(s_t)$ for times ``0..T-1``.
        terminated: ``[T, *B]`` booleans, $s_{t+1}$ is terminal.
        truncated: ``[T, *B]`` booleans, the episode was cut by a time limit after step $t$.
        final_values: ``[T, *B]``, value of the final observation of an episode truncated at
            $t$; read only where ``truncated & ~terminated``.
        last_value: ``[*B]``, $V(s_T)$.
        discount: $\gamma \in [0, 1]$.
        n_steps: $n \ge 1$, the number of rewards before the bootstrap.

    Returns:
        ``[T, *B]`` float64 array of $G^{(n)}_t$.

    Raises:
        TypeError: if an argument is not numeric or ``n_steps`` is not an integer.
        ValueError: as :func:`temporal_difference_errors`, or ``n_steps < 1``.

    Examples:
        Three steps, none ending an episode, $\gamma = 0.5$, $n = 2$, $V(s_3) = 8$. By hand:
        $G_0 = 1 + 0.5 \cdot 2 + 0.25 \cdot V(s_2) = 2 + 0.25 \cdot 4 = 3$,
        $G_1 = 2 + 0.5 \cdot 3 + 0.25 \cdot 8 = 5.5$, $G_2 = 3 + 0.5 \cdot 8 = 7$ (the buffer
        ends: one reward, then ``last_value``).

        >>> n_step_returns([1.0, 2.0, 3.0], [0.0, 0.0, 4.0], [0, 0, 0], [0, 0, 0],
        ...                [0.0, 0.0, 0.0], 8.0, discount=0.5, n_steps=2)
        array([3. , 5.5, 7. ])

    References:
        Sutton and Barto, *Reinforcement Learning: An Introduction*, 2nd ed., 2018, eq. 7.1.
        Mnih et al., *Asynchronous Methods for Deep Reinforcement Learning*, ICML 2016,
        Algorithm S3 (n-step returns cut at the end of the rollout).
    """
    rewards_array, _, terminated_flags, truncated_flags, next_values = _trajectory(
        rewards, values, terminated, truncated, final_values, last_value
    )
    gamma = _discount(discount)
    n = check_integer(n_steps, "n_steps", minimum=1)
    steps = rewards_array.shape[0]
    ends = terminated_flags | truncated_flags
    ends[-1] = True  # the buffer ends after step T-1
    result = np.zeros_like(rewards_array)
    still_open = np.ones(rewards_array.shape, dtype=np.bool_)
    weight = 1.0  # gamma^k
    # Offset k: the window starting at t takes reward t + k; t = 0..T-1-k (later windows closed).
    for k in range(min(n, steps)):
        span = steps - k
        window = still_open[:span]
        result[:span] += np.where(window, weight * rewards_array[k:], 0.0)
        closes = window & (ends[k:] | (k == n - 1))
        result[:span] += np.where(closes, weight * gamma * next_values[k:], 0.0)
        still_open[:span] &= ~closes
        weight *= gamma
    return result


def vtrace_targets(
    rewards: Any,
    values: Any,
    terminated: Any,
    truncated: Any,
    final_values: Any,
    last_value: Any,
    log_probs: Any,
    behaviour_log_probs: Any,
    *,
    discount: float,
    clip_rho_threshold: float = 1.0,
    clip_c_threshold: float = 1.0,
) -> FloatArray:
    r"""V-trace value targets (IMPALA) with truncated importance weights.

    $$ v_t = V(s_t) + \sum_{k=t}^{e(t)} \gamma^{k-t} \Big(\prod_{i=t}^{k-1} c_i\Big)
       \rho_k \delta_k, \qquad \delta_k = r_k + \gamma \, v'_k - V(s_k), $$

    $$ \rho_t = \min\big(\bar\rho, \tfrac{\pi(a_t \mid s_t)}{\mu(a_t \mid s_t)}\big), \quad
       c_t = \min\big(\bar c, \tfrac{\pi(a_t \mid s_t)}{\mu(a_t \mid s_t)}\big), \quad
       \tfrac{\pi}{\mu} = \exp(\text{log\_probs} - \text{behaviour\_log\_probs}), $$

    computed by the recursion $v_t - V(s_t) = \rho_t \delta_t + \gamma c_t (1 -
    \text{done}_t)(v_{t+1} - V(s_{t+1}))$, with $\bar\rho$ = ``clip_rho_threshold``,
    $\bar c$ = ``clip_c_threshold``, $v'_t$ the bootstrap value of
    :func:`temporal_difference_errors` and $e(t)$ the last step of $t$'s episode within the
    buffer. With $\pi = \mu$ and $\bar\rho, \bar c \ge 1$ all weights are 1 and $v_t$ is the
    bootstrapped return :func:`lambda_returns` with $\lambda = 1$; $\bar c = 0$ gives the
    one-step target $V(s_t) + \rho_t \delta_t$.

    Conventions: time-major ``[T, *B]``; $r_t$ follows action $a_t$; $\pi$ is the target
    (learner) policy, $\mu$ the behaviour policy that sampled the actions; termination and
    truncation as in :func:`generalized_advantage_estimation` (the trace is cut at every
    episode end; IMPALA's per-step discounts $\gamma_t = \gamma (1 - \text{terminated}_t)$
    cannot express a truncation). No $\lambda$ (rlax's ``lambda_``, which multiplies $c_t$)
    and no policy-gradient advantage; targets are constants (stop-gradient) for the value
    loss; log-ratios above about 709 overflow the ratio; float64.

    Claim: ``importance-sampling-unbiased`` (untruncated weights); ``gae-closed-form``
    (the $\pi = \mu$ case).

    Args:
        rewards: ``[T, *B]``, $r_t$ for times ``0..T-1``.
        values: ``[T, *B]``, $V(s_t)$ for times ``0..T-1``.
        terminated: ``[T, *B]`` booleans, $s_{t+1}$ is terminal.
        truncated: ``[T, *B]`` booleans, the episode was cut by a time limit after step $t$.
        final_values: ``[T, *B]``, value of the final observation of an episode truncated at
            $t$; read only where ``truncated & ~terminated``.
        last_value: ``[*B]``, $V(s_T)$.
        log_probs: ``[T, *B]``, $\log\pi(a_t \mid s_t)$ of the target policy.
        behaviour_log_probs: ``[T, *B]``, $\log\mu(a_t \mid s_t)$ of the behaviour policy.
        discount: $\gamma \in [0, 1]$.
        clip_rho_threshold: $\bar\rho \ge 0$ (``inf`` allowed: no truncation); 1 in IMPALA.
        clip_c_threshold: $\bar c \ge 0$ (``inf`` allowed); 1 in IMPALA.

    Returns:
        ``[T, *B]`` float64 array of $v_t$.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`temporal_difference_errors`, on non-finite or mismatched
            log-probs, or a negative threshold.

    Examples:
        Two steps, no episode end, $\gamma = 1$, $V = 0$, $V(s_2) = 0$, rewards 1 and
        $\pi/\mu = (2, 2)$, $\bar\rho = \bar c = 1$: $\rho = c = 1$, $v_1 = 1$,
        $v_0 = 1 + 1 \cdot 1 = 2$. With $\bar\rho = \bar c = \infty$: $v_1 = 2$,
        $v_0 = 2 + 2 \cdot 2 = 6$.

        >>> vtrace_targets([1.0, 1.0], [0.0, 0.0], [0, 0], [0, 0], [0.0, 0.0], 0.0,
        ...                [np.log(2.0), np.log(2.0)], [0.0, 0.0], discount=1.0)
        array([2., 1.])
        >>> vtrace_targets([1.0, 1.0], [0.0, 0.0], [0, 0], [0, 0], [0.0, 0.0], 0.0,
        ...                [np.log(2.0), np.log(2.0)], [0.0, 0.0], discount=1.0,
        ...                clip_rho_threshold=np.inf, clip_c_threshold=np.inf)
        array([6., 2.])

    References:
        Espeholt et al., *IMPALA: Scalable Distributed Deep-RL with Importance Weighted
        Actor-Learner Architectures*, ICML 2018, eq. 1 and Remark 1 (the recursion).
    """
    rewards_array, values_array, terminated_flags, truncated_flags, next_values = _trajectory(
        rewards, values, terminated, truncated, final_values, last_value
    )
    target = as_float_array(log_probs, "log_probs")
    behaviour = as_float_array(behaviour_log_probs, "behaviour_log_probs")
    for name, array in (("log_probs", target), ("behaviour_log_probs", behaviour)):
        check_shape(array, name, rewards_array.shape, like="rewards")
        check_finite(array, name)
    gamma = _discount(discount)
    rho_bar = check_interval(clip_rho_threshold, "clip_rho_threshold", low=0.0, high=np.inf)
    c_bar = check_interval(clip_c_threshold, "clip_c_threshold", low=0.0, high=np.inf)
    with np.errstate(over="ignore"):
        ratio = np.exp(target - behaviour)
    rho, c = np.minimum(rho_bar, ratio), np.minimum(c_bar, ratio)
    deltas = rho * (rewards_array + gamma * next_values - values_array)
    cut = terminated_flags | truncated_flags
    corrections = np.empty_like(deltas)
    running = np.zeros(deltas.shape[1:])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + np.where(cut[t], 0.0, gamma * c[t] * running)
        corrections[t] = running
    result: FloatArray = values_array + corrections
    return result


# --------------------------------------------------------------------------------------------
# Preference losses of TRL's DPOTrainer (loss_type)
# --------------------------------------------------------------------------------------------

#: The ``loss_type`` values :func:`preference_loss` implements, with TRL's names.
PREFERENCE_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust")


def _lengths(value: Any, name: str, shape: tuple[int, ...]) -> FloatArray:
    array = as_float_array(value, name)
    check_shape(array, name, shape, like="policy_chosen_log_probs")
    check_finite(array, name)
    if (array <= 0).any():
        index = tuple(int(i) for i in np.argwhere(array <= 0)[0])
        raise ValueError(f"{name} must be > 0 (token counts), got {array[index]!r} at {index}")
    return array


def preference_loss(
    policy_chosen_log_probs: Any,
    policy_rejected_log_probs: Any,
    reference_chosen_log_probs: Any,
    reference_rejected_log_probs: Any,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> float:
    r"""Offline preference losses of TRL's ``DPOTrainer``: DPO, cDPO, SLiC hinge, IPO, rDPO.

    With the margin (TRL's ``logits``; not multiplied by $\beta$)

    $$ z_i = \big(\log\pi_\theta(y^w_i) - \log\pi_\mathrm{ref}(y^w_i)\big)
           - \big(\log\pi_\theta(y^l_i) - \log\pi_\mathrm{ref}(y^l_i)\big), $$

    label smoothing $\varepsilon$ and $\operatorname{sp}(x) = \log(1 + e^x)$, the loss is the
    mean over the $N$ pairs of

    $$ \begin{array}{ll}
       \texttt{sigmoid}: & (1 - \varepsilon) \operatorname{sp}(-\beta z_i)
                           + \varepsilon \operatorname{sp}(\beta z_i), \\
       \texttt{robust}: & \big[(1 - \varepsilon) \operatorname{sp}(-\beta z_i)
                           - \varepsilon \operatorname{sp}(\beta z_i)\big] / (1 - 2\varepsilon), \\
       \texttt{hinge}: & \max(0,\, 1 - \beta z_i), \\
       \texttt{ipo}: & \big(\tilde z_i - \tfrac{1}{2\beta}\big)^2, \end{array} $$

    where $\tilde z_i$ is the margin of the **length-averaged** log-probs: every log-prob of
    a chosen response divided by ``chosen_lengths[i]`` (its number of tokens), of a rejected
    one by ``rejected_lengths[i]`` (TRL divides by the token count for ``"ipo"`` only). The
    other types use the summed log-probs and ignore the lengths. ``"sigmoid"`` with
    $\varepsilon = 0$ is :func:`dpo_loss`; with $\varepsilon > 0$ it is conservative DPO, the
    DPO loss averaged over labels flipped with probability $\varepsilon$. ``"robust"`` is
    unbiased instead: its average over flipped labels is the clean DPO loss. ``"hinge"`` and
    ``"ipo"`` ignore ``label_smoothing``, as TRL does.

    Conventions: a loss (minimise it); mean over pairs; log-probs of whole responses given the
    prompt (summed over response tokens; ``"ipo"`` divides them by the lengths); $y^w$
    preferred; reference log-probs are constants; computed with ``logaddexp``; float64.

    Claim: ``dpo-implicit-reward`` ($\beta z_i$ is the implicit reward margin);
    ``dpo-loss-gradient``.

    Args:
        policy_chosen_log_probs: ``[N]``, $\log\pi_\theta(y^w_i \mid x_i)$.
        policy_rejected_log_probs: ``[N]``, $\log\pi_\theta(y^l_i \mid x_i)$.
        reference_chosen_log_probs: ``[N]``, $\log\pi_\mathrm{ref}(y^w_i \mid x_i)$.
        reference_rejected_log_probs: ``[N]``, $\log\pi_\mathrm{ref}(y^l_i \mid x_i)$.
        chosen_lengths: ``[N]``, number of tokens of $y^w_i$ (> 0); required for ``"ipo"``.
        rejected_lengths: ``[N]``, number of tokens of $y^l_i$ (> 0); required for ``"ipo"``.
        beta: $\beta > 0$ (IPO's $\tau$; for ``"hinge"`` the reciprocal of the margin).
        loss_type: ``"sigmoid"``, ``"hinge"``, ``"ipo"`` or ``"robust"``.
        label_smoothing: $\varepsilon \in [0, 0.5]$ (``[0, 0.5)`` for ``"robust"``).

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric or ``loss_type`` is not a string.
        ValueError: on mismatched shapes, empty or non-finite inputs, ``beta <= 0``, an
            unknown ``loss_type``, ``label_smoothing`` out of range, or missing or
            non-positive lengths for ``"ipo"``.

    Examples:
        Margin $z = (-1 + 2) - (-3 + 2) = 2$. Hinge with $\beta = 0.1$:
        $\max(0, 1 - 0.2) = 0.8$. IPO with $\beta = 0.5$ and lengths 2 and 3: averaged
        log-probs $(-2, -3, -1, -2)$ from $(-4, -9, -2, -6)$, $\tilde z = -1 + 1 = 0$, loss
        $(0 - 1)^2 = 1$ (with summed log-probs $z = 1$ and the loss would be 0).

        >>> hinge = preference_loss([-1.0], [-3.0], [-2.0], [-2.0],
        ...                         beta=0.1, loss_type="hinge")
        >>> round(hinge, 12)
        0.8
        >>> preference_loss([-4.0], [-9.0], [-2.0], [-6.0], [2], [3],
        ...                 beta=0.5, loss_type="ipo")
        1.0

    References:
        Rafailov et al., *Direct Preference Optimization*, NeurIPS 2023, eq. 7 (sigmoid).
        Mitchell, *A Note on DPO with Noisy Preferences and Relationship to IPO*, 2023,
        eq. 3 (cDPO, label smoothing).
        Zhao et al., *SLiC-HF: Sequence Likelihood Calibration with Human Feedback*,
        arXiv:2305.10425, 2023 (hinge); Liu et al., *Statistical Rejection Sampling Improves
        Preference Optimization*, ICLR 2024 (the normalised hinge loss).
        Azar et al., *A General Theoretical Paradigm to Understand Learning from Human
        Preferences*, AISTATS 2024 (arXiv:2310.12036), eq. 17 (IPO).
        Chowdhury et al., *Provably Robust DPO: Aligning Language Models with Noisy
        Feedback*, ICML 2024 (the robust loss).
        Hugging Face TRL, ``DPOTrainer`` documentation, "Loss functions" (``loss_type``).
    """
    chosen, rejected, reference_chosen, reference_rejected = _same_shape_arrays(
        "policy_chosen_log_probs",
        policy_chosen_log_probs=policy_chosen_log_probs,
        policy_rejected_log_probs=policy_rejected_log_probs,
        reference_chosen_log_probs=reference_chosen_log_probs,
        reference_rejected_log_probs=reference_rejected_log_probs,
    )
    if chosen.size == 0:
        raise ValueError(f"policy_chosen_log_probs must not be empty, got shape {chosen.shape}")
    strength = check_interval(beta, "beta", low=0.0, high=np.inf, low_open=True, high_open=True)
    if not isinstance(loss_type, str):
        raise TypeError(f"loss_type must be a str, got {type(loss_type).__name__}")
    if loss_type not in PREFERENCE_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {PREFERENCE_LOSS_TYPES}, got {loss_type!r}")
    smoothing = check_interval(label_smoothing, "label_smoothing", low=0.0, high=0.5)
    if loss_type == "robust" and smoothing == 0.5:
        raise ValueError("label_smoothing must be in [0, 0.5) for loss_type 'robust', got 0.5")
    lengths = {}
    for name, value in (("chosen_lengths", chosen_lengths), ("rejected_lengths", rejected_lengths)):
        if value is None:
            if loss_type == "ipo":
                raise ValueError(f"{name} is required for loss_type 'ipo' (got None)")
        else:
            lengths[name] = _lengths(value, name, chosen.shape)
    if loss_type == "ipo":
        chosen_tokens, rejected_tokens = lengths["chosen_lengths"], lengths["rejected_lengths"]
        averaged = (chosen / chosen_tokens - reference_chosen / chosen_tokens) - (
            rejected / rejected_tokens - reference_rejected / rejected_tokens
        )
        return float(np.mean((averaged - 1.0 / (2.0 * strength)) ** 2))
    scaled = strength * ((chosen - reference_chosen) - (rejected - reference_rejected))
    if loss_type == "hinge":
        return float(np.mean(np.maximum(0.0, 1.0 - scaled)))
    wrong, right = np.logaddexp(0.0, -scaled), np.logaddexp(0.0, scaled)
    if loss_type == "sigmoid":
        return float(np.mean((1.0 - smoothing) * wrong + smoothing * right))
    return float(np.mean(((1.0 - smoothing) * wrong - smoothing * right) / (1.0 - 2.0 * smoothing)))
