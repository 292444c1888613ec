"""JAX implementations: correct ones (float64 and float32), and mutants whose *value* is right but
whose ``jax.grad`` gradient is wrong, so only the autodiff check can reject them, plus value
mutants. Imported only when jax is installed.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def ppo_loss(
    log_probs: Array, old_log_probs: Array, advantages: Array, *, clip_epsilon: float
) -> Array:
    ratio = jnp.exp(log_probs - old_log_probs)
    loss1 = -advantages * ratio
    loss2 = -advantages * jnp.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon)
    return jnp.maximum(loss1, loss2).mean()


def ppo_loss_float32(
    log_probs: Array, old_log_probs: Array, advantages: Array, *, clip_epsilon: float
) -> Array:
    f32 = jnp.float32
    return ppo_loss(
        log_probs.astype(f32),
        old_log_probs.astype(f32),
        advantages.astype(f32),
        clip_epsilon=clip_epsilon,
    )


def ppo_straight_through_clip(
    log_probs: Array, old_log_probs: Array, advantages: Array, *, clip_epsilon: float
) -> Array:
    # Value of the clip, gradient of the identity: the clipped branch keeps a gradient.
    ratio = jnp.exp(log_probs - old_log_probs)
    clipped = ratio + jax.lax.stop_gradient(
        jnp.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon) - ratio
    )
    return -jnp.minimum(ratio * advantages, clipped * advantages).mean()


def ppo_ratio_stopped(
    log_probs: Array, old_log_probs: Array, advantages: Array, *, clip_epsilon: float
) -> Array:
    # A stop-gradient in the wrong place: right loss value, zero gradient.
    ratio = jax.lax.stop_gradient(jnp.exp(log_probs - old_log_probs))
    return -jnp.minimum(
        ratio * advantages, jnp.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantages
    ).mean()


def k3(log_probs: Array, reference_log_probs: Array) -> Array:
    log_ratio = reference_log_probs - log_probs
    return jnp.exp(log_ratio) - 1 - log_ratio


def k3_float32(log_probs: Array, reference_log_probs: Array) -> Array:
    return k3(log_probs.astype(jnp.float32), reference_log_probs.astype(jnp.float32))


def k3_ratio_stopped(log_probs: Array, reference_log_probs: Array) -> Array:
    # Right value; gradient +1 (that of k1) instead of 1 - r.
    log_ratio = reference_log_probs - log_probs
    return jax.lax.stop_gradient(jnp.exp(log_ratio)) - 1 - log_ratio


def dpo_loss(
    policy_chosen_log_probs: Array,
    policy_rejected_log_probs: Array,
    reference_chosen_log_probs: Array,
    reference_rejected_log_probs: Array,
    *,
    beta: float,
) -> Array:
    logits = (policy_chosen_log_probs - policy_rejected_log_probs) - (
        reference_chosen_log_probs - reference_rejected_log_probs
    )
    return -jax.nn.log_sigmoid(beta * logits).mean()


def dpo_loss_float32(*log_probs: Array, beta: float) -> Array:
    return dpo_loss(*(x.astype(jnp.float32) for x in log_probs), beta=beta)


def dpo_rejected_stopped(pc: Array, pr: Array, rc: Array, rr: Array, *, beta: float) -> Array:
    return dpo_loss(pc, jax.lax.stop_gradient(pr), rc, rr, beta=beta)


def dpo_ratio_swapped(pc: Array, pr: Array, rc: Array, rr: Array, *, beta: float) -> Array:
    return dpo_loss(pr, pc, rr, rc, beta=beta)


def _gae_step(carry: Array, x: tuple[Array, Array]) -> tuple[Array, Array]:
    # Module level, not a closure: jax.lax.scan caches its trace by function identity, so a
    # step redefined on every call would be retraced and recompiled on every call.
    delta, decay = x
    carry = delta + decay * carry
    return carry, carry


def gae(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Array,
    *,
    discount: float,
    lambda_: float,
) -> Array:
    next_values = jnp.concatenate([values[1:], jnp.reshape(last_value, (1,))])
    next_values = jnp.where(truncated, final_values, next_values)
    next_values = jnp.where(terminated, jnp.zeros_like(next_values), next_values)
    continues = (~(terminated | truncated)).astype(rewards.dtype)
    deltas = rewards + discount * next_values - values
    decays = discount * lambda_ * continues
    _, advantages = jax.lax.scan(
        _gae_step, jnp.zeros_like(last_value), (deltas, decays), reverse=True
    )
    return advantages


def gae_python_loop(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Array,
    *,
    discount: float,
    lambda_: float,
) -> Array:
    steps = rewards.shape[0]
    advantages = jnp.zeros_like(rewards)
    last_gae = jnp.zeros_like(last_value)
    for t in reversed(range(steps)):
        next_value = last_value if t == steps - 1 else values[t + 1]
        next_value = jnp.where(truncated[t], final_values[t], next_value)
        next_value = jnp.where(terminated[t], jnp.zeros_like(next_value), next_value)
        continues = (~(terminated[t] | truncated[t])).astype(rewards.dtype)
        delta = rewards[t] + discount * next_value - values[t]
        last_gae = delta + discount * lambda_ * continues * last_gae
        advantages = advantages.at[t].set(last_gae)
    return advantages


def gae_ignores_truncation(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Array,
    *,
    discount: float,
    lambda_: float,
) -> Array:
    # Treats a time-limit truncation like a termination: no bootstrap from final_values.
    return gae(
        rewards,
        values,
        terminated | truncated,
        jnp.zeros_like(truncated),
        final_values,
        last_value,
        discount=discount,
        lambda_=lambda_,
    )


def categorical_entropy(logits: Array) -> Array:
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def policy_gradient_loss(log_probs: Array, advantages: Array) -> Array:
    return -(log_probs * jax.lax.stop_gradient(advantages)).mean()


def dual_clip_ppo_loss(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    *,
    clip_epsilon: float,
    dual_clip: float,
) -> Array:
    ratio = jnp.exp(log_probs - old_log_probs)
    clip1 = jnp.minimum(
        ratio * advantages, jnp.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantages
    )
    clip2 = jnp.maximum(clip1, dual_clip * advantages)
    return -jnp.where(advantages < 0, clip2, clip1).mean()


def actor_critic_loss(
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
    pg_loss = ppo_loss(log_probs, old_log_probs, advantages, clip_epsilon=clip_epsilon)
    v_loss = 0.5 * ((values - returns) ** 2).mean()
    kl = k3(log_probs, reference_log_probs).mean()
    return (
        pg_loss
        + value_coefficient * v_loss
        - entropy_coefficient * entropy.mean()
        + kl_coefficient * kl
    )


def _next_values(
    values: Array, terminated: Array, truncated: Array, final_values: Array, last_value: Array
) -> Array:
    following = jnp.concatenate([values[1:], jnp.reshape(last_value, (1,))])
    following = jnp.where(truncated, final_values, following)
    return jnp.where(terminated, jnp.zeros_like(following), following)


def _n_step_body(
    _: Array, carry: tuple[Array, Array, Array, Array, Array]
) -> tuple[Array, Array, Array, Array, Array]:
    # Module level for the same reason as _gae_step: the loop's trace is cached by identity.
    returns, rewards, bootstrap, stop, discount = carry
    following = jnp.concatenate([returns[1:], jnp.zeros_like(returns[:1])])
    returns = rewards + discount * jnp.where(stop, bootstrap, following)
    return returns, rewards, bootstrap, stop, discount


def n_step_returns(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Array,
    *,
    discount: float,
    n_steps: int,
) -> Array:
    # G^(k)_t = r_t + discount * (v'_t if the episode or buffer ends after t else G^(k-1)_{t+1}),
    # iterated n_steps - 1 times from the TD target inside one compiled loop.
    bootstrap = _next_values(values, terminated, truncated, final_values, last_value)
    stop = (terminated | truncated).at[-1].set(True)
    gamma = jnp.asarray(discount, dtype=rewards.dtype)
    returns = rewards + gamma * bootstrap
    returns, *_ = jax.lax.fori_loop(
        0,
        min(n_steps, rewards.shape[0]) - 1,
        _n_step_body,
        (returns, rewards, bootstrap, stop, gamma),
    )
    return returns


def vtrace_targets(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Array,
    log_probs: Array,
    behaviour_log_probs: Array,
    *,
    discount: float,
    clip_rho_threshold: float,
    clip_c_threshold: float,
) -> Array:
    ratio = jnp.exp(log_probs - behaviour_log_probs)
    rhos = jnp.minimum(clip_rho_threshold, ratio)
    cs = jnp.minimum(clip_c_threshold, ratio)
    next_values = _next_values(values, terminated, truncated, final_values, last_value)
    deltas = rhos * (rewards + discount * next_values - values)
    decays = jnp.where(terminated | truncated, jnp.zeros_like(cs), discount * cs)
    _, corrections = jax.lax.scan(
        _gae_step, jnp.zeros_like(last_value), (deltas, decays), reverse=True
    )
    return values + corrections


def preference_loss(
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
    chosen, rejected = policy_chosen_log_probs, policy_rejected_log_probs
    ref_chosen, ref_rejected = reference_chosen_log_probs, reference_rejected_log_probs
    if loss_type == "ipo":
        chosen, ref_chosen = chosen / chosen_lengths, ref_chosen / chosen_lengths
        rejected, ref_rejected = rejected / rejected_lengths, ref_rejected / rejected_lengths
    margin = (chosen - rejected) - (ref_chosen - ref_rejected)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * jax.nn.log_sigmoid(
            beta * margin
        ) - label_smoothing * jax.nn.log_sigmoid(-beta * margin)
    elif loss_type == "robust":
        losses = (
            -(1 - label_smoothing) * jax.nn.log_sigmoid(beta * margin)
            + label_smoothing * jax.nn.log_sigmoid(-beta * margin)
        ) / (1 - 2 * label_smoothing)
    elif loss_type == "hinge":
        losses = jax.nn.relu(1 - beta * margin)
    else:
        losses = (margin - 1 / (2 * beta)) ** 2
    return losses.mean()


def kl_k1(log_probs: Array, reference_log_probs: Array) -> Array:
    return log_probs - reference_log_probs


def kl_k2(log_probs: Array, reference_log_probs: Array) -> Array:
    return 0.5 * (log_probs - reference_log_probs) ** 2


def bradley_terry(chosen_rewards: Array, rejected_rewards: Array) -> Array:
    return -jax.nn.log_sigmoid(chosen_rewards - rejected_rewards).mean()


def value_loss(values: Array, old_values: Array, returns: Array, *, clip_epsilon: float) -> Array:
    clipped = old_values + jnp.clip(values - old_values, -clip_epsilon, clip_epsilon)
    return 0.5 * jnp.maximum((values - returns) ** 2, (clipped - returns) ** 2).mean()


def value_loss_gradient(
    values: Array, old_values: Array, returns: Array, *, clip_epsilon: float
) -> Array:
    # Analytic, by cases: the clipped branch has no gradient outside the clip interval.
    clipped = old_values + jnp.clip(values - old_values, -clip_epsilon, clip_epsilon)
    use_clipped = (clipped - returns) ** 2 > (values - returns) ** 2
    inside = jnp.abs(values - old_values) < clip_epsilon
    grad_clipped = jnp.where(inside, clipped - returns, jnp.zeros_like(values))
    return jnp.where(use_clipped, grad_clipped, values - returns) / values.shape[0]


def ppo_loss_gradient(
    log_probs: Array, old_log_probs: Array, advantages: Array, *, clip_epsilon: float
) -> Array:
    return jax.grad(ppo_loss)(log_probs, old_log_probs, advantages, clip_epsilon=clip_epsilon)


def dpo_loss_gradient(
    pc: Array, pr: Array, rc: Array, rr: Array, *, beta: float
) -> tuple[Array, Array]:
    grads: tuple[Array, Array] = jax.grad(dpo_loss, argnums=(0, 1))(pc, pr, rc, rr, beta=beta)
    return grads


def adaptive_kl_coefficient(kl_coefficient: Any, observed_kl: Any, *, target_kl: float) -> Array:
    beta = jnp.asarray(kl_coefficient)
    observed = jnp.asarray(observed_kl)
    return jnp.where(
        observed < target_kl / 1.5,
        beta / 2,
        jnp.where(observed > target_kl * 1.5, beta * 2, beta),
    )


def normalized_advantages(advantages: Array, *, epsilon: float, ddof: int) -> Array:
    flat = advantages.reshape(-1)
    if flat.size - ddof <= 0 or bool(flat.max() == flat.min()):
        return jnp.zeros_like(advantages)
    return (advantages - flat.mean()) / (jnp.std(flat, ddof=ddof) + epsilon)


def group_normalized_advantages(rewards: Array, *, epsilon: float, ddof: int) -> Array:
    if rewards.shape[1] - ddof <= 0:
        return jnp.zeros_like(rewards)
    mean = rewards.mean(axis=1, keepdims=True)
    std = jnp.std(rewards, axis=1, ddof=ddof, keepdims=True)
    tied = rewards.max(axis=1, keepdims=True) == rewards.min(axis=1, keepdims=True)
    scale = jnp.where(tied, jnp.ones_like(std), std + epsilon)
    return jnp.where(tied, jnp.zeros_like(rewards), (rewards - mean) / scale)


def discounted_returns(rewards: Array, dones: Array, *, discount: float) -> Array:
    decays = discount * (1 - dones.astype(rewards.dtype))
    _, returns = jax.lax.scan(
        _gae_step, jnp.zeros(rewards.shape[1:], rewards.dtype), (rewards, decays), reverse=True
    )
    return returns


def temporal_difference_errors(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Array,
    *,
    discount: float,
) -> Array:
    next_values = _next_values(values, terminated, truncated, final_values, last_value)
    return rewards + discount * next_values - values


def lambda_returns(
    rewards: Array,
    values: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array,
    last_value: Array,
    *,
    discount: float,
    lambda_: float,
) -> Array:
    advantages = gae(
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


# A jitted function: the framework is still detected (through its module), and jax.grad works.
ppo_loss_jit = jax.jit(ppo_loss)


JAX_CORRECT: list[tuple[str, Any, dict[str, Any]]] = [
    ("ppo_clipped_surrogate_loss", ppo_loss, {}),
    ("ppo_clipped_surrogate_loss", ppo_loss_float32, {}),
    ("ppo_clipped_surrogate_loss", ppo_loss, {"dtype": "float32"}),
    ("ppo_clipped_surrogate_loss", ppo_loss_jit, {}),
    ("kl_estimator_k3", k3, {}),
    ("kl_estimator_k3", k3_float32, {}),
    ("kl_estimator_k3", k3, {"dtype": "float32"}),
    ("dpo_loss", dpo_loss, {}),
    ("dpo_loss", dpo_loss_float32, {}),
    ("generalized_advantage_estimation", gae, {}),
    ("generalized_advantage_estimation", gae, {"dtype": "float32"}),
    ("generalized_advantage_estimation", gae_python_loop, {}),
    ("categorical_entropy", categorical_entropy, {}),
    ("policy_gradient_loss", policy_gradient_loss, {}),
    ("policy_gradient_loss", policy_gradient_loss, {"dtype": "float32"}),
    ("dual_clip_ppo_loss", dual_clip_ppo_loss, {}),
    ("actor_critic_loss", actor_critic_loss, {}),
    ("n_step_returns", n_step_returns, {}),
    ("vtrace_targets", vtrace_targets, {}),
    ("preference_loss", preference_loss, {}),
    ("kl_estimator_k1", kl_k1, {}),
    ("kl_estimator_k1", kl_k1, {"dtype": "float32"}),
    ("kl_estimator_k2", kl_k2, {}),
    ("kl_estimator_k2", kl_k2, {"dtype": "float32"}),
    ("bradley_terry_loss", bradley_terry, {}),
    ("bradley_terry_loss", bradley_terry, {"dtype": "float32"}),
    ("clipped_value_loss", value_loss, {}),
    ("clipped_value_loss", value_loss, {"dtype": "float32"}),
    ("clipped_value_loss_gradient", value_loss_gradient, {}),
    ("ppo_clipped_surrogate_loss_gradient", ppo_loss_gradient, {}),
    ("dpo_loss_gradient", dpo_loss_gradient, {}),
    ("adaptive_kl_coefficient", adaptive_kl_coefficient, {}),
    ("normalized_advantages", normalized_advantages, {}),
    ("group_normalized_advantages", group_normalized_advantages, {}),
    ("discounted_returns", discounted_returns, {}),
    ("discounted_returns", discounted_returns, {"dtype": "float32"}),
    ("temporal_difference_errors", temporal_difference_errors, {}),
    ("temporal_difference_errors", temporal_difference_errors, {"dtype": "float32"}),
    ("lambda_returns", lambda_returns, {}),
    ("lambda_returns", lambda_returns, {"dtype": "float32"}),
]

JAX_MUTANTS: list[tuple[str, Any, str, str]] = [
    (
        "ppo_clipped_surrogate_loss",
        ppo_straight_through_clip,
        "wrong gradient",
        "clipped branch has a gradient",
    ),
    (
        "ppo_clipped_surrogate_loss",
        ppo_ratio_stopped,
        "wrong gradient",
        "stop-gradient on the ratio",
    ),
    ("kl_estimator_k3", k3_ratio_stopped, "wrong gradient", "gradient of k1, not k3"),
    ("dpo_loss", dpo_rejected_stopped, "wrong gradient", "no gradient to the rejected response"),
    ("dpo_loss", dpo_ratio_swapped, "wrong value", "chosen and rejected swapped"),
    (
        "generalized_advantage_estimation",
        gae_ignores_truncation,
        "wrong value",
        "truncation treated as termination",
    ),
]
