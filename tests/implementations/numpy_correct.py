"""Correct NumPy implementations written the way RL code writes them, which must be accepted.

Each is written independently of rlmath.reference: loops in the CleanRL / Baselines style,
vectorised or reordered forms, float32 versions, and forms that look wrong but are right.
``CORRECT`` lists ``(spec name, function, check options)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any


def returns_loop(rewards: Array, dones: Array, *, discount: float) -> Array:
    out = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + discount * running * (1.0 - dones[t])
        out[t] = running
    return out


def returns_forward_double_sum(rewards: Array, dones: Array, *, discount: float) -> Array:
    """Differently ordered: O(T^2) forward sums, summed from the far end of each episode."""
    steps = len(rewards)
    out = np.zeros(steps)
    for t in range(steps):
        end = t
        while end < steps - 1 and not dones[end]:
            end += 1
        out[t] = sum(discount ** (k - t) * rewards[k] for k in range(end, t - 1, -1))
    return out


def returns_float32(rewards: Array, dones: Array, *, discount: float) -> Array:
    rewards = np.asarray(rewards, dtype=np.float32)
    not_done = 1.0 - np.asarray(dones, dtype=np.float32)
    out = np.zeros_like(rewards)
    running = np.float32(0.0)
    gamma = np.float32(discount)
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running * not_done[t]
        out[t] = running
    return out


def _next_values(
    values: Array, terminated: Array, truncated: Array, final_values: Array, last_value: Any
) -> Array:
    following = np.append(values[1:], last_value)
    following = np.where(truncated, final_values, following)
    return np.where(terminated, 0.0, following)


def td_errors_vectorised(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Any,
    *,
    discount: float,
) -> Array:
    return (
        rewards
        + discount * _next_values(values, terminated, truncated, final_values, last_value)
        - values
    )


def gae_cleanrl_style(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Any,
    *,
    discount: float,
    lambda_: float,
) -> Array:
    """CleanRL's loop, extended with a truncation bootstrap: next_nonterminal per step."""
    steps = len(rewards)
    advantages = np.zeros(steps)
    last_gae = 0.0
    for t in reversed(range(steps)):
        if t == steps - 1:
            next_value = last_value
        else:
            next_value = values[t + 1]
        if truncated[t]:
            next_value = final_values[t]
        next_nonterminal = 1.0 - float(terminated[t])
        episode_continues = 0.0 if (terminated[t] or truncated[t]) else 1.0
        delta = rewards[t] + discount * next_value * next_nonterminal - values[t]
        last_gae = delta + discount * lambda_ * episode_continues * last_gae
        advantages[t] = last_gae
    return advantages


def gae_float32(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Any,
    *,
    discount: float,
    lambda_: float,
) -> Array:
    f32 = np.float32
    rewards, values, final_values = (
        np.asarray(x, dtype=f32) for x in (rewards, values, final_values)
    )
    next_values = _next_values(values, terminated, truncated, final_values, f32(last_value)).astype(
        f32
    )
    deltas = rewards + f32(discount) * next_values - values
    cut = np.asarray(terminated) | np.asarray(truncated)
    out = np.zeros_like(deltas)
    running = f32(0.0)
    for t in reversed(range(len(deltas))):
        running = deltas[t] + f32(discount * lambda_) * (f32(0.0) if cut[t] else running)
        out[t] = running
    return out


def lambda_returns_from_gae(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Any,
    *,
    discount: float,
    lambda_: float,
) -> Array:
    advantages = gae_cleanrl_style(
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        lambda_=lambda_,
    )
    return advantages + values


def ppo_loss_min_form(
    log_probs: Array, old_log_probs: Array, advantages: Array, *, clip_epsilon: float
) -> Array:
    ratio = np.exp(log_probs - old_log_probs)
    clipped = np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon)
    return -np.mean(np.minimum(ratio * advantages, clipped * advantages))


def ppo_loss_max_of_negatives(
    log_probs: Array, old_log_probs: Array, advantages: Array, *, clip_epsilon: float
) -> Array:
    """Looks wrong (max, not min) but is right: max(-rA, -clip(r)A) = -min(rA, clip(r)A)."""
    ratio = np.exp(log_probs - old_log_probs)
    loss1 = -advantages * ratio
    loss2 = -advantages * np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon)
    return np.maximum(loss1, loss2).mean()


def ppo_loss_float32(
    log_probs: Array, old_log_probs: Array, advantages: Array, *, clip_epsilon: float
) -> Array:
    new, old, adv = (
        np.asarray(x, dtype=np.float32) for x in (log_probs, old_log_probs, advantages)
    )
    ratio = np.exp(new - old)
    eps = np.float32(clip_epsilon)
    return -np.mean(np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv))


def ppo_gradient_by_cases(
    log_probs: Array, old_log_probs: Array, advantages: Array, *, clip_epsilon: float
) -> Array:
    ratio = np.exp(log_probs - old_log_probs)
    out = np.zeros(len(ratio))
    for i, (r, a) in enumerate(zip(ratio, advantages, strict=True)):
        clipped = (a > 0 and r > 1 + clip_epsilon) or (a < 0 and r < 1 - clip_epsilon)
        out[i] = 0.0 if clipped else -r * a / len(ratio)
    return out


def value_loss_baselines(
    values: Array, old_values: Array, returns: Array, *, clip_epsilon: float
) -> Array:
    clipped = old_values + np.clip(values - old_values, -clip_epsilon, clip_epsilon)
    losses1 = np.square(values - returns)
    losses2 = np.square(clipped - returns)
    return 0.5 * np.mean(np.maximum(losses1, losses2))


def value_loss_float32(
    values: Array, old_values: Array, returns: Array, *, clip_epsilon: float
) -> Array:
    v, o, r = (np.asarray(x, dtype=np.float32) for x in (values, old_values, returns))
    eps = np.float32(clip_epsilon)
    clipped = o + np.clip(v - o, -eps, eps)
    return np.float32(0.5) * np.mean(np.maximum((v - r) ** 2, (clipped - r) ** 2))


def value_gradient_by_cases(
    values: Array, old_values: Array, returns: Array, *, clip_epsilon: float
) -> Array:
    n = len(values)
    clipped = old_values + np.clip(values - old_values, -clip_epsilon, clip_epsilon)
    use_clipped = (clipped - returns) ** 2 > (values - returns) ** 2
    inside = np.abs(values - old_values) < clip_epsilon
    grad_clipped = np.where(inside, clipped - returns, 0.0)
    return np.where(use_clipped, grad_clipped, values - returns) / n


def k1(log_probs: Array, reference_log_probs: Array) -> Array:
    return log_probs - reference_log_probs


def k2(log_probs: Array, reference_log_probs: Array) -> Array:
    return 0.5 * (reference_log_probs - log_probs) ** 2


def k3_naive(log_probs: Array, reference_log_probs: Array) -> Array:
    log_ratio = reference_log_probs - log_probs
    return np.exp(log_ratio) - 1 - log_ratio


def k3_float32(log_probs: Array, reference_log_probs: Array) -> Array:
    log_ratio = np.asarray(reference_log_probs, np.float32) - np.asarray(log_probs, np.float32)
    return np.exp(log_ratio) - np.float32(1) - log_ratio


def adaptive_kl(kl_coefficient: float, observed_kl: float, *, target_kl: float) -> float:
    if observed_kl < target_kl / 1.5:
        kl_coefficient = kl_coefficient / 2
    elif observed_kl > target_kl * 1.5:
        kl_coefficient = kl_coefficient * 2
    return float(kl_coefficient)


def entropy_max_shift(logits: Array) -> Array:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    log_p = shifted - log_z
    return -(np.exp(log_p) * log_p).sum(axis=-1)


def entropy_float32(logits: Array) -> Array:
    return entropy_max_shift(np.asarray(logits, dtype=np.float32))


def _log_sigmoid(x: Array) -> Array:
    return -np.logaddexp(0.0, -x)


def dpo_logaddexp(
    policy_chosen_log_probs: Array,
    policy_rejected_log_probs: Array,
    reference_chosen_log_probs: Array,
    reference_rejected_log_probs: Array,
    *,
    beta: float,
) -> Array:
    pi_logratios = policy_chosen_log_probs - policy_rejected_log_probs
    ref_logratios = reference_chosen_log_probs - reference_rejected_log_probs
    return -_log_sigmoid(beta * (pi_logratios - ref_logratios)).mean()


def dpo_float32(*log_probs: Array, beta: float) -> Array:
    return dpo_logaddexp(
        *(np.asarray(x, dtype=np.float32) for x in log_probs), beta=np.float32(beta)
    )


def dpo_gradient(
    policy_chosen_log_probs: Array,
    policy_rejected_log_probs: Array,
    reference_chosen_log_probs: Array,
    reference_rejected_log_probs: Array,
    *,
    beta: float,
) -> tuple[Array, Array]:
    z = beta * (
        (policy_chosen_log_probs - reference_chosen_log_probs)
        - (policy_rejected_log_probs - reference_rejected_log_probs)
    )
    weight = beta * np.exp(-np.logaddexp(0.0, z)) / len(z)
    return -weight, weight


def bradley_terry(chosen_rewards: Array, rejected_rewards: Array) -> Array:
    return np.mean(np.logaddexp(0.0, rejected_rewards - chosen_rewards))


def grpo_advantages(rewards: Array, *, epsilon: float, ddof: int) -> Array:
    mean = rewards.mean(axis=1, keepdims=True)
    n = rewards.shape[1]
    if n - ddof <= 0:
        return np.zeros_like(rewards)
    std = rewards.std(axis=1, ddof=ddof, keepdims=True)
    tied = rewards.max(axis=1, keepdims=True) == rewards.min(axis=1, keepdims=True)
    return np.where(tied, 0.0, (rewards - mean) / np.where(tied, 1.0, std + epsilon))


def grpo_torch_style(rewards: Array, *, epsilon: float, ddof: int) -> Array:
    """TRL-style: sample std (ddof=1) plus 1e-4; checked with those hyperparameters fixed."""
    mean = rewards.mean(axis=1, keepdims=True)
    std = (
        rewards.std(axis=1, ddof=1, keepdims=True)
        if rewards.shape[1] > 1
        else np.zeros((len(rewards), 1))
    )
    return (rewards - mean) / (std + 1e-4)


def normalize_whole_batch(advantages: Array, *, epsilon: float, ddof: int) -> Array:
    flat = advantages.reshape(-1)
    if flat.size - ddof <= 0 or flat.max() == flat.min():
        return np.zeros_like(advantages)
    return (advantages - flat.mean()) / (flat.std(ddof=ddof) + epsilon)


def normalize_cleanrl_style(advantages: Array, *, epsilon: float, ddof: int) -> Array:
    """CleanRL: (A - mean) / (std + 1e-8) with torch's ddof=1; checked with those fixed."""
    if advantages.size < 2:
        return np.zeros_like(advantages)
    return (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-8)


def policy_gradient_loop(log_probs: Array, advantages: Array) -> Array:
    total = 0.0
    for log_prob, advantage in zip(log_probs, advantages, strict=True):
        total -= log_prob * advantage
    return total / len(log_probs)


def policy_gradient_float32(log_probs: Array, advantages: Array) -> Array:
    new, adv = (np.asarray(x, dtype=np.float32) for x in (log_probs, advantages))
    return -(new * adv).mean()


def dual_clip_di_engine_style(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    *,
    clip_epsilon: float,
    dual_clip: float,
) -> Array:
    """DI-engine's form: the PPO term, then max with c A, selected where A < 0."""
    ratio = np.exp(log_probs - old_log_probs)
    surrogate1 = ratio * advantages
    surrogate2 = np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantages
    clip1 = np.minimum(surrogate1, surrogate2)
    clip2 = np.maximum(clip1, dual_clip * advantages)
    return -np.where(advantages < 0, clip2, clip1).mean()


def dual_clip_by_cases(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    *,
    clip_epsilon: float,
    dual_clip: float,
) -> Array:
    """Looks different: A min(rho, 1 + eps) for A >= 0, A min(max(rho, 1 - eps), c) for A < 0."""
    ratio = np.exp(log_probs - old_log_probs)
    terms = []
    for r, a in zip(ratio, advantages, strict=True):
        if a >= 0:
            terms.append(a * min(r, 1 + clip_epsilon))
        else:
            terms.append(a * min(max(r, 1 - clip_epsilon), dual_clip))
    return -np.mean(terms)


def dual_clip_float32(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    *,
    clip_epsilon: float,
    dual_clip: float,
) -> Array:
    new, old, adv = (
        np.asarray(x, dtype=np.float32) for x in (log_probs, old_log_probs, advantages)
    )
    return dual_clip_di_engine_style(
        new, old, adv, clip_epsilon=np.float32(clip_epsilon), dual_clip=np.float32(dual_clip)
    )


def actor_critic_cleanrl_style(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    values: Array,
    returns: Array,
    entropy: Array,
    reference_log_probs: Array,
    *,
    clip_epsilon: float,
    value_coefficient: float,
    entropy_coefficient: float,
    kl_coefficient: float,
) -> Array:
    """CleanRL's ppo.py loss plus a GRPO-style k3 penalty, terms written as CleanRL does."""
    ratio = np.exp(log_probs - old_log_probs)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * np.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon)
    pg_loss = np.maximum(pg_loss1, pg_loss2).mean()
    v_loss = 0.5 * ((values - returns) ** 2).mean()
    entropy_loss = entropy.mean()
    log_ratio = reference_log_probs - log_probs
    kl = (np.exp(log_ratio) - 1 - log_ratio).mean()
    return (
        pg_loss
        - entropy_coefficient * entropy_loss
        + v_loss * value_coefficient
        + kl_coefficient * kl
    )


def actor_critic_float32(*arrays: Array, **coefficients: float) -> Array:
    return actor_critic_cleanrl_style(
        *(np.asarray(x, dtype=np.float32) for x in arrays),
        **{name: np.float32(value) for name, value in coefficients.items()},
    )


def n_step_by_recursion(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Any,
    *,
    discount: float,
    n_steps: int,
) -> Array:
    """Differently computed: G^(k)_t = r_t + gamma (v'_t if the episode or buffer ends after t,
    else G^(k-1)_{t+1}), from G^(1) = r + gamma v' (the TD target) up to k = n."""
    bootstrap = _next_values(values, terminated, truncated, final_values, last_value)
    stop = np.asarray(terminated) | np.asarray(truncated)
    stop[-1] = True
    returns = rewards + discount * bootstrap
    for _ in range(min(n_steps, len(rewards)) - 1):
        following = np.append(returns[1:], 0.0)
        returns = rewards + discount * np.where(stop, bootstrap, following)
    return returns


def vtrace_scalable_agent_style(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Any,
    log_probs: Array,
    behaviour_log_probs: Array,
    *,
    discount: float,
    clip_rho_threshold: float,
    clip_c_threshold: float,
) -> Array:
    """DeepMind scalable_agent's vtrace.py loop, with the episode ends of this package."""
    rhos = np.exp(log_probs - behaviour_log_probs)
    clipped_rhos = np.minimum(clip_rho_threshold, rhos)
    cs = np.minimum(clip_c_threshold, rhos)
    values_t_plus_1 = _next_values(values, terminated, truncated, final_values, last_value)
    deltas = clipped_rhos * (rewards + discount * values_t_plus_1 - values)
    continues = ~(np.asarray(terminated) | np.asarray(truncated))
    vs_minus_v_xs = np.zeros(len(rewards))
    acc = 0.0
    for t in reversed(range(len(rewards))):
        acc = deltas[t] + (discount * cs[t] * acc if continues[t] else 0.0)
        vs_minus_v_xs[t] = acc
    return vs_minus_v_xs + values


def vtrace_targets_recursion(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Any,
    log_probs: Array,
    behaviour_log_probs: Array,
    *,
    discount: float,
    clip_rho_threshold: float,
    clip_c_threshold: float,
) -> Array:
    """IMPALA Remark 1 on the targets themselves: v_t = V_t + rho_t delta_t
    + gamma c_t (v_{t+1} - V(s_{t+1})), the bracket 0 across an episode end."""
    steps = len(rewards)
    targets = np.zeros(steps)
    for t in reversed(range(steps)):
        ratio = np.exp(log_probs[t] - behaviour_log_probs[t])
        if terminated[t]:
            next_value, trace = 0.0, 0.0
        elif truncated[t]:
            next_value, trace = final_values[t], 0.0
        elif t == steps - 1:
            next_value, trace = last_value, 0.0
        else:
            next_value, trace = values[t + 1], targets[t + 1] - values[t + 1]
        delta = rewards[t] + discount * next_value - values[t]
        targets[t] = (
            values[t]
            + min(clip_rho_threshold, ratio) * delta
            + (discount * min(clip_c_threshold, ratio) * trace if trace else 0.0)
        )
    return targets


def preference_trl_style(
    policy_chosen_log_probs: Array,
    policy_rejected_log_probs: Array,
    reference_chosen_log_probs: Array,
    reference_rejected_log_probs: Array,
    chosen_lengths: Array,
    rejected_lengths: Array,
    *,
    beta: float,
    loss_type: str,
    label_smoothing: float,
) -> Array:
    """TRL's DPOTrainer: concatenated_forward averages the log-probs for IPO, dpo_loss branches."""
    logps = [
        policy_chosen_log_probs,
        policy_rejected_log_probs,
        reference_chosen_log_probs,
        reference_rejected_log_probs,
    ]
    if loss_type == "ipo":
        sizes = [chosen_lengths, rejected_lengths, chosen_lengths, rejected_lengths]
        logps = [lp / size for lp, size in zip(logps, sizes, strict=True)]
    chosen, rejected, ref_chosen, ref_rejected = logps
    logits = (chosen - rejected) - (ref_chosen - ref_rejected)
    if loss_type == "sigmoid":
        losses = (
            -_log_sigmoid(beta * logits) * (1 - label_smoothing)
            - _log_sigmoid(-beta * logits) * label_smoothing
        )
    elif loss_type == "robust":
        losses = (
            -_log_sigmoid(beta * logits) * (1 - label_smoothing)
            + _log_sigmoid(-beta * logits) * label_smoothing
        ) / (1 - 2 * label_smoothing)
    elif loss_type == "hinge":
        losses = np.maximum(0.0, 1 - beta * logits)
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(loss_type)
    return losses.mean()


def preference_float32(
    *arrays: Array, beta: float, loss_type: str, label_smoothing: float
) -> Array:
    *log_probs, chosen_lengths, rejected_lengths = arrays
    return preference_trl_style(
        *(np.asarray(x, dtype=np.float32) for x in log_probs),
        chosen_lengths.astype(np.float32),
        rejected_lengths.astype(np.float32),
        beta=np.float32(beta),
        loss_type=loss_type,
        label_smoothing=np.float32(label_smoothing),
    )


#: (spec name, implementation, options passed to rlmath.conformance.check)
CORRECT: list[tuple[str, Any, dict[str, Any]]] = [
    ("discounted_returns", returns_loop, {}),
    ("discounted_returns", returns_forward_double_sum, {}),
    ("discounted_returns", returns_float32, {}),
    ("temporal_difference_errors", td_errors_vectorised, {}),
    ("generalized_advantage_estimation", gae_cleanrl_style, {}),
    ("generalized_advantage_estimation", gae_float32, {}),
    ("generalized_advantage_estimation", gae_cleanrl_style, {"dtype": "float32"}),
    ("lambda_returns", lambda_returns_from_gae, {}),
    ("ppo_clipped_surrogate_loss", ppo_loss_min_form, {}),
    ("ppo_clipped_surrogate_loss", ppo_loss_max_of_negatives, {}),
    ("ppo_clipped_surrogate_loss", ppo_loss_float32, {}),
    ("ppo_clipped_surrogate_loss_gradient", ppo_gradient_by_cases, {}),
    ("clipped_value_loss", value_loss_baselines, {}),
    ("clipped_value_loss", value_loss_float32, {}),
    ("clipped_value_loss_gradient", value_gradient_by_cases, {}),
    ("kl_estimator_k1", k1, {}),
    ("kl_estimator_k2", k2, {}),
    ("kl_estimator_k3", k3_naive, {}),
    ("kl_estimator_k3", k3_float32, {}),
    ("adaptive_kl_coefficient", adaptive_kl, {}),
    ("categorical_entropy", entropy_max_shift, {}),
    ("categorical_entropy", entropy_float32, {}),
    ("dpo_loss", dpo_logaddexp, {}),
    ("dpo_loss", dpo_float32, {}),
    ("dpo_loss_gradient", dpo_gradient, {}),
    ("bradley_terry_loss", bradley_terry, {}),
    ("group_normalized_advantages", grpo_advantages, {}),
    (
        "group_normalized_advantages",
        grpo_torch_style,
        {"hyperparameters": {"ddof": 1, "epsilon": 1e-4}},
    ),
    ("normalized_advantages", normalize_whole_batch, {}),
    (
        "normalized_advantages",
        normalize_cleanrl_style,
        {"hyperparameters": {"ddof": 1, "epsilon": 1e-8}},
    ),
    ("policy_gradient_loss", policy_gradient_loop, {}),
    ("policy_gradient_loss", policy_gradient_float32, {}),
    ("dual_clip_ppo_loss", dual_clip_di_engine_style, {}),
    ("dual_clip_ppo_loss", dual_clip_by_cases, {}),
    ("dual_clip_ppo_loss", dual_clip_float32, {}),
    ("actor_critic_loss", actor_critic_cleanrl_style, {}),
    ("actor_critic_loss", actor_critic_float32, {}),
    ("n_step_returns", n_step_by_recursion, {}),
    ("n_step_returns", n_step_by_recursion, {"dtype": "float32"}),
    ("vtrace_targets", vtrace_scalable_agent_style, {}),
    ("vtrace_targets", vtrace_targets_recursion, {}),
    ("vtrace_targets", vtrace_scalable_agent_style, {"dtype": "float32"}),
    ("preference_loss", preference_trl_style, {}),
    ("preference_loss", preference_float32, {}),
]
