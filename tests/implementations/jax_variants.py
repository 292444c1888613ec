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
