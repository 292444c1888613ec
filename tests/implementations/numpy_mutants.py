"""Wrong NumPy implementations modelled on bug classes seen in public RL code; all must be rejected.

``MUTANTS`` lists ``(spec name, implementation, failure kind expected, the bug)``. Each
mutant is a small edit of a correct variant in ``numpy_correct``, so the report must point at
the one thing that is wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from implementations import numpy_correct as ok

Array = Any


# --- returns ---------------------------------------------------------------------------------


def returns_done_off_by_one(rewards: Array, dones: Array, *, discount: float) -> Array:
    # Reads the flag of the *next* step: the episode is cut one step late.
    shifted = np.append(dones[1:], False)
    return ok.returns_loop(rewards, shifted, discount=discount)


def returns_never_reset(rewards: Array, dones: Array, *, discount: float) -> Array:
    return ok.returns_loop(rewards, np.zeros_like(dones), discount=discount)


def returns_whole_episode(rewards: Array, dones: Array, *, discount: float) -> Array:
    # Every step weighted by the return of the whole episode, not the reward-to-go.
    to_go = ok.returns_loop(rewards, dones, discount=discount)
    out = to_go.copy()
    for t in range(1, len(out)):
        if not dones[t - 1]:
            out[t] = out[t - 1]
    return out


def returns_in_place(rewards: Array, dones: Array, *, discount: float) -> Array:
    # Accumulates into the caller's rewards array.
    for t in reversed(range(len(rewards) - 1)):
        rewards[t] += discount * rewards[t + 1] * (1.0 - dones[t])
    return rewards


# --- TD errors, GAE, lambda-returns ----------------------------------------------------------


def td_bootstrap_through_termination(
    rewards, values, terminated, truncated, final_values, last_value, *, discount
):  # type: ignore[no-untyped-def]
    no_flags = np.zeros_like(terminated)
    return ok.td_errors_vectorised(
        rewards, values, no_flags, truncated, final_values, last_value, discount=discount
    )


def td_truncation_as_termination(
    rewards, values, terminated, truncated, final_values, last_value, *, discount
):  # type: ignore[no-untyped-def]
    return ok.td_errors_vectorised(
        rewards,
        values,
        terminated | truncated,
        truncated,
        final_values,
        last_value,
        discount=discount,
    )


def td_next_episode_value_after_truncation(
    rewards, values, terminated, truncated, final_values, last_value, *, discount
):  # type: ignore[no-untyped-def]
    no_truncation = np.zeros_like(truncated)
    return ok.td_errors_vectorised(
        rewards, values, terminated, no_truncation, final_values, last_value, discount=discount
    )


def gae_bootstrap_through_termination(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    # Cuts the recursion at episode ends but bootstraps from values[t+1] even after termination.
    steps = len(rewards)
    advantages, last_gae = np.zeros(steps), 0.0
    for t in reversed(range(steps)):
        next_value = last_value if t == steps - 1 else values[t + 1]
        if truncated[t]:
            next_value = final_values[t]
        delta = rewards[t] + discount * next_value - values[t]
        last_gae = delta + discount * lambda_ * (1.0 - (terminated[t] | truncated[t])) * last_gae
        advantages[t] = last_gae
    return advantages


def gae_ignores_truncation(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    # Time-limit cut treated as a termination: no bootstrap from the final observation.
    return ok.gae_cleanrl_style(
        rewards,
        values,
        terminated | truncated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        lambda_=lambda_,
    )


def gae_next_episode_value(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    # Cuts the recursion at a truncation but bootstraps from values[t+1], the next episode's start.
    steps = len(rewards)
    advantages, last_gae = np.zeros(steps), 0.0
    for t in reversed(range(steps)):
        next_value = last_value if t == steps - 1 else values[t + 1]
        delta = rewards[t] + discount * next_value * (1.0 - terminated[t]) - values[t]
        last_gae = delta + discount * lambda_ * (1.0 - (terminated[t] | truncated[t])) * last_gae
        advantages[t] = last_gae
    return advantages


def gae_done_mask_off_by_one(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    # The classic: masks step t with the done flag of step t-1 (flags stored "before" the step).
    steps = len(rewards)
    done = terminated | truncated
    advantages, last_gae = np.zeros(steps), 0.0
    for t in reversed(range(steps)):
        next_value = last_value if t == steps - 1 else values[t + 1]
        if truncated[t]:
            next_value = final_values[t]
        mask = 1.0 - (done[t - 1] if t > 0 else False)
        delta = rewards[t] + discount * next_value * (1.0 - terminated[t]) - values[t]
        last_gae = delta + discount * lambda_ * mask * last_gae
        advantages[t] = last_gae
    return advantages


def gae_lambda_dropped(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    return ok.gae_cleanrl_style(
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        lambda_=1.0,
    )


def gae_crashes_on_single_step(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    if len(rewards) < 2:
        raise IndexError("index 1 is out of bounds for axis 0 with size 1")
    return ok.gae_cleanrl_style(
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        lambda_=lambda_,
    )


def gae_with_extra_step(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    advantages = ok.gae_cleanrl_style(
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        lambda_=lambda_,
    )
    return np.append(advantages, 0.0)  # [T+1]: one entry per value incl. the bootstrap


def lambda_returns_plus_next_value(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    advantages = ok.gae_cleanrl_style(
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        lambda_=lambda_,
    )
    return advantages + np.append(values[1:], last_value)


def lambda_returns_ignores_truncation(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    return ok.lambda_returns_from_gae(
        rewards,
        values,
        terminated | truncated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        lambda_=lambda_,
    )


# --- PPO -------------------------------------------------------------------------------------


def ppo_ratio_inverted(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    return ok.ppo_loss_min_form(old_log_probs, log_probs, advantages, clip_epsilon=clip_epsilon)


def ppo_max_instead_of_min(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    ratio = np.exp(log_probs - old_log_probs)
    clipped = np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon)
    return -np.mean(np.maximum(ratio * advantages, clipped * advantages))


def ppo_clips_the_advantage(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    ratio = np.exp(log_probs - old_log_probs)
    clipped_adv = np.clip(advantages, 1 - clip_epsilon, 1 + clip_epsilon)
    return -np.mean(np.minimum(ratio * advantages, ratio * clipped_adv))


def ppo_ratio_of_probabilities(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    with np.errstate(all="ignore"):  # the underflow is the bug under test
        ratio = np.exp(log_probs) / np.exp(old_log_probs)
        clipped = np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon)
        return -np.mean(np.minimum(ratio * advantages, clipped * advantages))


def ppo_sum_not_mean(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    return ok.ppo_loss_min_form(
        log_probs, old_log_probs, advantages, clip_epsilon=clip_epsilon
    ) * len(log_probs)


def ppo_objective_sign(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    return -ok.ppo_loss_min_form(log_probs, old_log_probs, advantages, clip_epsilon=clip_epsilon)


def ppo_random_minibatch(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    # Samples a minibatch inside the loss: a different answer on every call.
    rows = np.random.default_rng().integers(0, len(log_probs), len(log_probs))
    return ok.ppo_loss_min_form(
        log_probs[rows], old_log_probs[rows], advantages[rows], clip_epsilon=clip_epsilon
    )


def ppo_gradient_ignores_clip(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    return -np.exp(log_probs - old_log_probs) * advantages / len(log_probs)


def ppo_gradient_one_sided(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    ratio = np.exp(log_probs - old_log_probs)
    return np.where(ratio <= 1 + clip_epsilon, -ratio * advantages, 0.0) / len(ratio)


def ppo_gradient_no_mean(log_probs, old_log_probs, advantages, *, clip_epsilon):  # type: ignore[no-untyped-def]
    return ok.ppo_gradient_by_cases(
        log_probs, old_log_probs, advantages, clip_epsilon=clip_epsilon
    ) * len(log_probs)


def value_loss_min(values, old_values, returns, *, clip_epsilon):  # type: ignore[no-untyped-def]
    clipped = old_values + np.clip(values - old_values, -clip_epsilon, clip_epsilon)
    return 0.5 * np.mean(np.minimum((values - returns) ** 2, (clipped - returns) ** 2))


def value_loss_clips_value_itself(values, old_values, returns, *, clip_epsilon):  # type: ignore[no-untyped-def]
    clipped = np.clip(values, -clip_epsilon, clip_epsilon)
    return 0.5 * np.mean(np.maximum((values - returns) ** 2, (clipped - returns) ** 2))


def value_loss_no_half(values, old_values, returns, *, clip_epsilon):  # type: ignore[no-untyped-def]
    return 2 * ok.value_loss_baselines(values, old_values, returns, clip_epsilon=clip_epsilon)


def value_gradient_unclipped(values, old_values, returns, *, clip_epsilon):  # type: ignore[no-untyped-def]
    return (values - returns) / len(values)


def value_gradient_sign(values, old_values, returns, *, clip_epsilon):  # type: ignore[no-untyped-def]
    return -ok.value_gradient_by_cases(values, old_values, returns, clip_epsilon=clip_epsilon)


# --- KL --------------------------------------------------------------------------------------


def k1_sign_flipped(log_probs, reference_log_probs):  # type: ignore[no-untyped-def]
    return reference_log_probs - log_probs


def k1_mean_not_per_sample(log_probs, reference_log_probs):  # type: ignore[no-untyped-def]
    return np.mean(log_probs - reference_log_probs)


def k1_ratio_of_probabilities(log_probs, reference_log_probs):  # type: ignore[no-untyped-def]
    with np.errstate(all="ignore"):
        return np.log(np.exp(log_probs) / np.exp(reference_log_probs))


def k2_without_half(log_probs, reference_log_probs):  # type: ignore[no-untyped-def]
    return (log_probs - reference_log_probs) ** 2


def k2_is_k3(log_probs, reference_log_probs):  # type: ignore[no-untyped-def]
    return ok.k3_naive(log_probs, reference_log_probs)


def k3_wrong_direction(log_probs, reference_log_probs):  # type: ignore[no-untyped-def]
    # r = pi / pi_ref: the k3 estimator of KL(pi_ref || pi) evaluated on samples from pi.
    return ok.k3_naive(reference_log_probs, log_probs)


def k3_is_k2(log_probs, reference_log_probs):  # type: ignore[no-untyped-def]
    return ok.k2(log_probs, reference_log_probs)


def k3_ratio_of_probabilities(log_probs, reference_log_probs):  # type: ignore[no-untyped-def]
    with np.errstate(all="ignore"):
        ratio = np.exp(reference_log_probs) / np.exp(log_probs)
        return ratio - 1 - np.log(ratio)


def adaptive_kl_direction_swapped(kl_coefficient, observed_kl, *, target_kl):  # type: ignore[no-untyped-def]
    if observed_kl < target_kl / 1.5:
        return kl_coefficient * 2
    if observed_kl > target_kl * 1.5:
        return kl_coefficient / 2
    return float(kl_coefficient)


def adaptive_kl_no_band(kl_coefficient, observed_kl, *, target_kl):  # type: ignore[no-untyped-def]
    return float(kl_coefficient * 2 if observed_kl > target_kl else kl_coefficient / 2)


def adaptive_kl_factor_one_and_a_half(kl_coefficient, observed_kl, *, target_kl):  # type: ignore[no-untyped-def]
    if observed_kl < target_kl / 1.5:
        return kl_coefficient / 1.5
    if observed_kl > target_kl * 1.5:
        return kl_coefficient * 1.5
    return float(kl_coefficient)


# --- entropy ---------------------------------------------------------------------------------


def entropy_naive_softmax(logits):  # type: ignore[no-untyped-def]
    with np.errstate(all="ignore"):
        p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        return -(p * np.log(p)).sum(axis=-1)


def entropy_log2(logits):  # type: ignore[no-untyped-def]
    return ok.entropy_max_shift(logits) / np.log(2.0)


def entropy_wrong_axis(logits):  # type: ignore[no-untyped-def]
    return ok.entropy_max_shift(logits.T).sum() * np.ones(len(logits)) / len(logits)


def entropy_float16(logits):  # type: ignore[no-untyped-def]
    return ok.entropy_max_shift(logits).astype(np.float16)


# --- DPO and Bradley-Terry -------------------------------------------------------------------


def dpo_naive_log_sigmoid(pc, pr, rc, rr, *, beta):  # type: ignore[no-untyped-def]
    with np.errstate(all="ignore"):
        z = beta * ((pc - rc) - (pr - rr))
        return -np.mean(np.log(1 / (1 + np.exp(-z))))


def dpo_reference_sign(pc, pr, rc, rr, *, beta):  # type: ignore[no-untyped-def]
    return ok.dpo_logaddexp(pc, pr, -rc, -rr, beta=beta)


def dpo_chosen_rejected_swapped(pc, pr, rc, rr, *, beta):  # type: ignore[no-untyped-def]
    return ok.dpo_logaddexp(pr, pc, rr, rc, beta=beta)


def dpo_beta_outside(pc, pr, rc, rr, *, beta):  # type: ignore[no-untyped-def]
    return beta * ok.dpo_logaddexp(pc, pr, rc, rr, beta=1.0)


def dpo_gradient_sign(pc, pr, rc, rr, *, beta):  # type: ignore[no-untyped-def]
    d_chosen, d_rejected = ok.dpo_gradient(pc, pr, rc, rr, beta=beta)
    return d_rejected, d_chosen


def dpo_gradient_sigmoid_of_z(pc, pr, rc, rr, *, beta):  # type: ignore[no-untyped-def]
    z = beta * ((pc - rc) - (pr - rr))
    weight = beta * np.exp(-np.logaddexp(0.0, -z)) / len(z)
    return -weight, weight


def dpo_gradient_no_beta(pc, pr, rc, rr, *, beta):  # type: ignore[no-untyped-def]
    d_chosen, d_rejected = ok.dpo_gradient(pc, pr, rc, rr, beta=beta)
    return d_chosen / beta, d_rejected / beta


def bradley_terry_swapped(chosen_rewards, rejected_rewards):  # type: ignore[no-untyped-def]
    return ok.bradley_terry(rejected_rewards, chosen_rewards)


def bradley_terry_naive(chosen_rewards, rejected_rewards):  # type: ignore[no-untyped-def]
    with np.errstate(all="ignore"):
        return -np.mean(np.log(1 / (1 + np.exp(-(chosen_rewards - rejected_rewards)))))


def bradley_terry_sum(chosen_rewards, rejected_rewards):  # type: ignore[no-untyped-def]
    return ok.bradley_terry(chosen_rewards, rejected_rewards) * len(chosen_rewards)


# --- normalisation ---------------------------------------------------------------------------


def grpo_wrong_axis(rewards, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    return ok.grpo_advantages(rewards.T, epsilon=epsilon, ddof=ddof).T


def grpo_zero_std_undefined(rewards, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    with np.errstate(all="ignore"):
        mean = rewards.mean(axis=1, keepdims=True)
        return (rewards - mean) / (rewards.std(axis=1, ddof=ddof, keepdims=True) + epsilon)


def grpo_batch_std(rewards, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    if np.ptp(rewards) == 0:
        return np.zeros_like(rewards)
    return np.where(
        np.ptp(rewards, axis=1, keepdims=True) == 0,
        0.0,
        centred / (rewards.std(ddof=ddof) + epsilon),
    )


def normalize_per_column(advantages, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # Statistics per environment (axis 0 of a [T, B] batch) instead of over the batch.
    return ok.grpo_advantages(advantages.T, epsilon=epsilon, ddof=ddof).T


def normalize_by_variance(advantages, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    if advantages.max() == advantages.min() or advantages.size - ddof <= 0:
        return np.zeros_like(advantages)
    return (advantages - advantages.mean()) / (advantages.var(ddof=ddof) + epsilon)


def normalize_in_place(advantages, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    result = ok.normalize_whole_batch(advantages, epsilon=epsilon, ddof=ddof)
    advantages[...] = result
    return advantages


# --- policy gradient, dual-clip PPO, actor-critic ---------------------------------------------


def policy_gradient_sum_not_mean(log_probs, advantages):  # type: ignore[no-untyped-def]
    return -np.sum(log_probs * advantages)


def policy_gradient_objective_sign(log_probs, advantages):  # type: ignore[no-untyped-def]
    return np.mean(log_probs * advantages)


def policy_gradient_probabilities(log_probs, advantages):  # type: ignore[no-untyped-def]
    # The log dropped: -mean(pi A), whose gradient is pi times the policy gradient.
    return -np.mean(np.exp(log_probs) * advantages)


def policy_gradient_normalises_inside(log_probs, advantages):  # type: ignore[no-untyped-def]
    # Standardises the advantages inside the loss: a different loss than the one specified.
    centred = advantages - advantages.mean()
    return -np.mean(log_probs * centred / (advantages.std() + 1e-8))


def dual_clip_for_positive_advantages(
    log_probs, old_log_probs, advantages, *, clip_epsilon, dual_clip
):  # type: ignore[no-untyped-def]
    ratio = np.exp(log_probs - old_log_probs)
    clip1 = np.minimum(
        ratio * advantages, np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantages
    )
    return -np.maximum(clip1, dual_clip * advantages).mean()


def dual_clip_min_instead_of_max(log_probs, old_log_probs, advantages, *, clip_epsilon, dual_clip):  # type: ignore[no-untyped-def]
    ratio = np.exp(log_probs - old_log_probs)
    clip1 = np.minimum(
        ratio * advantages, np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantages
    )
    return -np.where(advantages < 0, np.minimum(clip1, dual_clip * advantages), clip1).mean()


def dual_clip_ignored(log_probs, old_log_probs, advantages, *, clip_epsilon, dual_clip):  # type: ignore[no-untyped-def]
    return ok.ppo_loss_min_form(log_probs, old_log_probs, advantages, clip_epsilon=clip_epsilon)


def _actor_critic_terms(
    lp,
    old,
    adv,
    values,
    returns,
    entropy,
    ref,
    *,
    clip_epsilon,
    value_coefficient,
    entropy_coefficient,
    kl_coefficient,
):  # type: ignore[no-untyped-def]
    """The four signed terms of the CleanRL-style loss; each mutant changes one."""
    ratio = np.exp(lp - old)
    pg = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon))
    log_ratio = ref - lp
    return {
        "policy": pg.mean(),
        "value": value_coefficient * 0.5 * ((values - returns) ** 2).mean(),
        "entropy": -entropy_coefficient * entropy.mean(),
        "kl": kl_coefficient * (np.exp(log_ratio) - 1 - log_ratio).mean(),
    }


def actor_critic_entropy_added(*arrays, **coefficients):  # type: ignore[no-untyped-def]
    terms = _actor_critic_terms(*arrays, **coefficients)
    terms["entropy"] = -terms["entropy"]  # + c_e H: the bonus enters as a penalty
    return sum(terms.values())


def actor_critic_kl_subtracted(*arrays, **coefficients):  # type: ignore[no-untyped-def]
    terms = _actor_critic_terms(*arrays, **coefficients)
    terms["kl"] = -terms["kl"]  # - beta KL: pushes away from the reference
    return sum(terms.values())


def actor_critic_kl_direction_reversed(*arrays, **coefficients):  # type: ignore[no-untyped-def]
    # k3 with r = pi / pi_ref: the estimator of KL(pi_ref || pi), evaluated on samples from pi.
    terms = _actor_critic_terms(*arrays, **coefficients)
    log_ratio = arrays[0] - arrays[6]
    terms["kl"] = coefficients["kl_coefficient"] * (np.exp(log_ratio) - 1 - log_ratio).mean()
    return sum(terms.values())


def actor_critic_kl_is_k1(*arrays, **coefficients):  # type: ignore[no-untyped-def]
    terms = _actor_critic_terms(*arrays, **coefficients)
    terms["kl"] = coefficients["kl_coefficient"] * (arrays[0] - arrays[6]).mean()
    return sum(terms.values())


def actor_critic_value_loss_without_half(*arrays, **coefficients):  # type: ignore[no-untyped-def]
    terms = _actor_critic_terms(*arrays, **coefficients)
    terms["value"] = 2 * terms["value"]
    return sum(terms.values())


def actor_critic_entropy_summed(*arrays, **coefficients):  # type: ignore[no-untyped-def]
    terms = _actor_critic_terms(*arrays, **coefficients)
    terms["entropy"] = terms["entropy"] * len(arrays[5])  # sum over samples, not mean
    return sum(terms.values())


# --- n-step returns and V-trace -------------------------------------------------------------


def n_step_one_step_too_many(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, n_steps
):  # type: ignore[no-untyped-def]
    return ok.n_step_by_recursion(
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        n_steps=n_steps + 1,
    )


def n_step_bootstrap_through_termination(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, n_steps
):  # type: ignore[no-untyped-def]
    # The window stops at a termination but bootstraps from values[t+1] there.
    bootstrap = ok._next_values(
        values, np.zeros_like(terminated), truncated, final_values, last_value
    )
    stop = terminated | truncated
    stop[-1] = True
    returns = rewards + discount * bootstrap
    for _ in range(min(n_steps, len(rewards)) - 1):
        returns = rewards + discount * np.where(stop, bootstrap, np.append(returns[1:], 0.0))
    return returns


def n_step_truncation_as_termination(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, n_steps
):  # type: ignore[no-untyped-def]
    return ok.n_step_by_recursion(
        rewards,
        values,
        terminated | truncated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        n_steps=n_steps,
    )


def n_step_crosses_episode_ends(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, n_steps
):  # type: ignore[no-untyped-def]
    # Sums n rewards whatever the flags say (a replay buffer without episode boundaries).
    no_flags = np.zeros_like(terminated)
    return ok.n_step_by_recursion(
        rewards,
        values,
        no_flags,
        no_flags,
        final_values,
        last_value,
        discount=discount,
        n_steps=n_steps,
    )


def n_step_bootstrap_discount_off_by_one(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, n_steps
):  # type: ignore[no-untyped-def]
    # gamma^(m-1) instead of gamma^m on the bootstrap value after m rewards.
    bootstrap = ok._next_values(values, terminated, truncated, final_values, last_value)
    stop = terminated | truncated
    stop[-1] = True
    returns = rewards + bootstrap
    for _ in range(min(n_steps, len(rewards)) - 1):
        returns = rewards + np.where(stop, bootstrap, discount * np.append(returns[1:], 0.0))
    return returns


def _vtrace(**changes):  # type: ignore[no-untyped-def]
    def targets(
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        last_value,
        log_probs,
        behaviour_log_probs,
        *,
        discount,
        clip_rho_threshold,
        clip_c_threshold,
    ):  # type: ignore[no-untyped-def]
        settings = {
            "log_probs": log_probs,
            "behaviour_log_probs": behaviour_log_probs,
            "clip_rho_threshold": clip_rho_threshold,
            "clip_c_threshold": clip_c_threshold,
            "terminated": terminated,
            "truncated": truncated,
        }
        given = dict(settings)
        for name, change in changes.items():
            settings[name] = change(given)
        return ok.vtrace_scalable_agent_style(
            rewards,
            values,
            settings["terminated"],
            truncated,
            final_values,
            last_value,
            settings["log_probs"],
            settings["behaviour_log_probs"],
            discount=discount,
            clip_rho_threshold=settings["clip_rho_threshold"],
            clip_c_threshold=settings["clip_c_threshold"],
        )

    return targets


vtrace_rho_not_truncated = _vtrace(clip_rho_threshold=lambda s: np.inf)
vtrace_c_not_truncated = _vtrace(clip_c_threshold=lambda s: np.inf)
vtrace_c_truncated_at_rho_bar = _vtrace(clip_c_threshold=lambda s: s["clip_rho_threshold"])
vtrace_ratio_inverted = _vtrace(
    log_probs=lambda s: s["behaviour_log_probs"], behaviour_log_probs=lambda s: s["log_probs"]
)
# A time-limit cut treated as a termination: no bootstrap from the final observation.
vtrace_ignores_truncation = _vtrace(terminated=lambda s: s["terminated"] | s["truncated"])


def vtrace_ratio_of_probabilities(
    rewards,
    values,
    terminated,
    truncated,
    final_values,
    last_value,
    log_probs,
    behaviour_log_probs,
    *,
    discount,
    clip_rho_threshold,
    clip_c_threshold,
):  # type: ignore[no-untyped-def]
    with np.errstate(all="ignore"):  # the underflow is the bug under test
        ratio = np.exp(log_probs) / np.exp(behaviour_log_probs)
    return ok.vtrace_scalable_agent_style(
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        last_value,
        np.log(ratio),
        np.zeros_like(ratio),
        discount=discount,
        clip_rho_threshold=clip_rho_threshold,
        clip_c_threshold=clip_c_threshold,
    )


for _name, _function in list(globals().items()):
    if _name.startswith("vtrace_"):
        _function.__name__ = _name


# --- preference losses (TRL loss_type) ------------------------------------------------------


def preference_ipo_without_length_averaging(
    pc, pr, rc, rr, lc, lr, *, beta, loss_type, label_smoothing
):  # type: ignore[no-untyped-def]
    ones = np.ones_like(lc)
    return ok.preference_trl_style(
        pc, pr, rc, rr, ones, ones, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing
    )


def preference_ipo_beta_inside(pc, pr, rc, rr, lc, lr, *, beta, loss_type, label_smoothing):  # type: ignore[no-untyped-def]
    if loss_type != "ipo":
        return ok.preference_trl_style(
            pc, pr, rc, rr, lc, lr, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing
        )
    logits = (pc / lc - pr / lr) - (rc / lc - rr / lr)
    return np.mean((beta * logits - 1 / (2 * beta)) ** 2)


def preference_hinge_without_beta(pc, pr, rc, rr, lc, lr, *, beta, loss_type, label_smoothing):  # type: ignore[no-untyped-def]
    if loss_type != "hinge":
        return ok.preference_trl_style(
            pc, pr, rc, rr, lc, lr, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing
        )
    return np.mean(np.maximum(0.0, 1 - ((pc - pr) - (rc - rr))))


def preference_label_smoothing_ignored(pc, pr, rc, rr, lc, lr, *, beta, loss_type, label_smoothing):  # type: ignore[no-untyped-def]
    return ok.preference_trl_style(
        pc, pr, rc, rr, lc, lr, beta=beta, loss_type=loss_type, label_smoothing=0.0
    )


def preference_robust_without_denominator(
    pc, pr, rc, rr, lc, lr, *, beta, loss_type, label_smoothing
):  # type: ignore[no-untyped-def]
    loss = ok.preference_trl_style(
        pc, pr, rc, rr, lc, lr, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing
    )
    return loss * (1 - 2 * label_smoothing) if loss_type == "robust" else loss


#: (spec name, implementation, failure kind the report must give, the bug)
MUTANTS: list[tuple[str, Any, str, str]] = [
    ("discounted_returns", returns_done_off_by_one, "wrong value", "done mask off by one"),
    ("discounted_returns", returns_never_reset, "wrong value", "return not reset at episode end"),
    (
        "discounted_returns",
        returns_whole_episode,
        "wrong value",
        "episode return instead of reward-to-go",
    ),
    ("discounted_returns", returns_in_place, "mutated input", "accumulates into the rewards array"),
    (
        "temporal_difference_errors",
        td_bootstrap_through_termination,
        "wrong value",
        "bootstraps through termination",
    ),
    (
        "temporal_difference_errors",
        td_truncation_as_termination,
        "wrong value",
        "ignores truncation (no bootstrap)",
    ),
    (
        "temporal_difference_errors",
        td_next_episode_value_after_truncation,
        "wrong value",
        "bootstraps from the next episode",
    ),
    (
        "generalized_advantage_estimation",
        gae_bootstrap_through_termination,
        "wrong value",
        "bootstraps through termination",
    ),
    (
        "generalized_advantage_estimation",
        gae_ignores_truncation,
        "wrong value",
        "ignores truncation (no bootstrap)",
    ),
    (
        "generalized_advantage_estimation",
        gae_next_episode_value,
        "wrong value",
        "bootstraps from the next episode",
    ),
    (
        "generalized_advantage_estimation",
        gae_done_mask_off_by_one,
        "wrong value",
        "done mask off by one",
    ),
    ("generalized_advantage_estimation", gae_lambda_dropped, "wrong value", "lambda ignored"),
    (
        "generalized_advantage_estimation",
        gae_crashes_on_single_step,
        "exception",
        "fails for T = 1",
    ),
    (
        "generalized_advantage_estimation",
        gae_with_extra_step,
        "wrong shape",
        "returns T + 1 entries",
    ),
    (
        "lambda_returns",
        lambda_returns_plus_next_value,
        "wrong value",
        "adds V(s_{t+1}) instead of V(s_t)",
    ),
    ("lambda_returns", lambda_returns_ignores_truncation, "wrong value", "ignores truncation"),
    ("ppo_clipped_surrogate_loss", ppo_ratio_inverted, "wrong value", "ratio inverted"),
    ("ppo_clipped_surrogate_loss", ppo_max_instead_of_min, "wrong value", "max instead of min"),
    ("ppo_clipped_surrogate_loss", ppo_clips_the_advantage, "wrong value", "clips the advantage"),
    (
        "ppo_clipped_surrogate_loss",
        ppo_ratio_of_probabilities,
        "non-finite",
        "ratio of probabilities underflows",
    ),
    ("ppo_clipped_surrogate_loss", ppo_sum_not_mean, "wrong value", "sum instead of mean"),
    ("ppo_clipped_surrogate_loss", ppo_objective_sign, "wrong value", "objective returned as loss"),
    ("ppo_clipped_surrogate_loss", ppo_random_minibatch, "non-deterministic", "random subsample"),
    (
        "ppo_clipped_surrogate_loss_gradient",
        ppo_gradient_ignores_clip,
        "wrong value",
        "gradient through the clip",
    ),
    (
        "ppo_clipped_surrogate_loss_gradient",
        ppo_gradient_one_sided,
        "wrong value",
        "clip side wrong for A < 0",
    ),
    ("ppo_clipped_surrogate_loss_gradient", ppo_gradient_no_mean, "wrong value", "missing 1/N"),
    ("clipped_value_loss", value_loss_min, "wrong value", "min instead of max"),
    ("clipped_value_loss", value_loss_clips_value_itself, "wrong value", "clips V, not V - V_old"),
    ("clipped_value_loss", value_loss_no_half, "wrong value", "missing factor 1/2"),
    ("clipped_value_loss_gradient", value_gradient_unclipped, "wrong value", "ignores the clip"),
    ("clipped_value_loss_gradient", value_gradient_sign, "wrong value", "sign flipped"),
    ("kl_estimator_k1", k1_sign_flipped, "wrong value", "KL sign flipped"),
    ("kl_estimator_k1", k1_mean_not_per_sample, "wrong shape", "mean over the wrong axis (all)"),
    (
        "kl_estimator_k1",
        k1_ratio_of_probabilities,
        "non-finite",
        "ratio of probabilities underflows",
    ),
    ("kl_estimator_k2", k2_without_half, "wrong value", "missing 1/2"),
    ("kl_estimator_k2", k2_is_k3, "wrong value", "estimator mixed up (k3)"),
    ("kl_estimator_k3", k3_wrong_direction, "wrong value", "KL direction reversed"),
    ("kl_estimator_k3", k3_is_k2, "wrong value", "estimator mixed up (k2)"),
    (
        "kl_estimator_k3",
        k3_ratio_of_probabilities,
        "non-finite",
        "ratio of probabilities underflows",
    ),
    (
        "adaptive_kl_coefficient",
        adaptive_kl_direction_swapped,
        "wrong value",
        "adjusts in the wrong direction",
    ),
    ("adaptive_kl_coefficient", adaptive_kl_no_band, "wrong value", "no tolerance band"),
    (
        "adaptive_kl_coefficient",
        adaptive_kl_factor_one_and_a_half,
        "wrong value",
        "factor 1.5 instead of 2",
    ),
    ("categorical_entropy", entropy_naive_softmax, "non-finite", "softmax overflows at 1e3"),
    ("categorical_entropy", entropy_log2, "wrong value", "bits instead of nats"),
    ("categorical_entropy", entropy_wrong_axis, "wrong value", "reduced over the wrong axis"),
    ("categorical_entropy", entropy_float16, "wrong dtype", "float16 output"),
    ("dpo_loss", dpo_naive_log_sigmoid, "non-finite", "log(sigmoid) underflows"),
    ("dpo_loss", dpo_reference_sign, "wrong value", "reference log-ratio sign"),
    ("dpo_loss", dpo_chosen_rejected_swapped, "wrong value", "chosen and rejected swapped"),
    ("dpo_loss", dpo_beta_outside, "wrong value", "beta outside the sigmoid"),
    ("dpo_loss_gradient", dpo_gradient_sign, "wrong value", "gradients swapped"),
    (
        "dpo_loss_gradient",
        dpo_gradient_sigmoid_of_z,
        "wrong value",
        "sigmoid(z) instead of sigmoid(-z)",
    ),
    ("dpo_loss_gradient", dpo_gradient_no_beta, "wrong value", "missing beta"),
    ("bradley_terry_loss", bradley_terry_swapped, "wrong value", "chosen and rejected swapped"),
    ("bradley_terry_loss", bradley_terry_naive, "non-finite", "log(sigmoid) underflows"),
    ("bradley_terry_loss", bradley_terry_sum, "wrong value", "sum instead of mean"),
    (
        "group_normalized_advantages",
        grpo_wrong_axis,
        "wrong value",
        "normalised over the wrong axis",
    ),
    ("group_normalized_advantages", grpo_zero_std_undefined, "non-finite", "std = 0 gives NaN"),
    (
        "group_normalized_advantages",
        grpo_batch_std,
        "wrong value",
        "std of the batch, not the group",
    ),
    ("normalized_advantages", normalize_per_column, "wrong value", "normalised per environment"),
    ("normalized_advantages", normalize_by_variance, "wrong value", "divides by the variance"),
    ("normalized_advantages", normalize_in_place, "mutated input", "normalises in place"),
    ("policy_gradient_loss", policy_gradient_sum_not_mean, "wrong value", "sum instead of mean"),
    (
        "policy_gradient_loss",
        policy_gradient_objective_sign,
        "wrong value",
        "objective returned as loss",
    ),
    (
        "policy_gradient_loss",
        policy_gradient_probabilities,
        "wrong value",
        "probability instead of log-probability",
    ),
    (
        "policy_gradient_loss",
        policy_gradient_normalises_inside,
        "wrong value",
        "advantages standardised inside the loss",
    ),
    (
        "dual_clip_ppo_loss",
        dual_clip_for_positive_advantages,
        "wrong value",
        "dual clip applied for A > 0 too",
    ),
    ("dual_clip_ppo_loss", dual_clip_min_instead_of_max, "wrong value", "min with c A, not max"),
    ("dual_clip_ppo_loss", dual_clip_ignored, "wrong value", "plain PPO (dual clip ignored)"),
    ("actor_critic_loss", actor_critic_entropy_added, "wrong value", "entropy bonus sign flipped"),
    ("actor_critic_loss", actor_critic_kl_subtracted, "wrong value", "KL penalty sign flipped"),
    (
        "actor_critic_loss",
        actor_critic_kl_direction_reversed,
        "wrong value",
        "k3 of KL(pi_ref || pi) on samples from pi",
    ),
    ("actor_critic_loss", actor_critic_kl_is_k1, "wrong value", "k1 instead of k3"),
    (
        "actor_critic_loss",
        actor_critic_value_loss_without_half,
        "wrong value",
        "value loss without the 1/2",
    ),
    ("actor_critic_loss", actor_critic_entropy_summed, "wrong value", "entropy summed, not mean"),
    ("n_step_returns", n_step_one_step_too_many, "wrong value", "n + 1 rewards (off by one)"),
    (
        "n_step_returns",
        n_step_bootstrap_through_termination,
        "wrong value",
        "bootstraps through termination",
    ),
    (
        "n_step_returns",
        n_step_truncation_as_termination,
        "wrong value",
        "ignores truncation (no bootstrap)",
    ),
    ("n_step_returns", n_step_crosses_episode_ends, "wrong value", "window crosses episode ends"),
    (
        "n_step_returns",
        n_step_bootstrap_discount_off_by_one,
        "wrong value",
        "bootstrap discounted by gamma^(n-1)",
    ),
    ("vtrace_targets", vtrace_rho_not_truncated, "wrong value", "rho not truncated"),
    ("vtrace_targets", vtrace_c_not_truncated, "wrong value", "c not truncated"),
    ("vtrace_targets", vtrace_c_truncated_at_rho_bar, "wrong value", "c truncated at rho_bar"),
    ("vtrace_targets", vtrace_ratio_inverted, "wrong value", "ratio mu / pi"),
    ("vtrace_targets", vtrace_ignores_truncation, "wrong value", "ignores truncation"),
    (
        "vtrace_targets",
        vtrace_ratio_of_probabilities,
        "non-finite",
        "ratio of probabilities underflows",
    ),
    (
        "preference_loss",
        preference_ipo_without_length_averaging,
        "wrong value",
        "IPO on summed log-probs",
    ),
    ("preference_loss", preference_ipo_beta_inside, "wrong value", "IPO margin times beta"),
    ("preference_loss", preference_hinge_without_beta, "wrong value", "hinge without beta"),
    (
        "preference_loss",
        preference_label_smoothing_ignored,
        "wrong value",
        "label smoothing ignored",
    ),
    (
        "preference_loss",
        preference_robust_without_denominator,
        "wrong value",
        "robust loss without 1 / (1 - 2 eps)",
    ),
]
