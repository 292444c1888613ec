"""PyTorch implementations: correct ones (float64 and float32), and mutants whose *value* is right
but whose gradient is wrong, so only the autodiff check can reject them. Imported only when torch
is installed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

Tensor = torch.Tensor


def ppo_loss(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, *, clip_epsilon: float
) -> Tensor:
    ratio = torch.exp(log_probs - old_log_probs)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1 - clip_epsilon, 1 + clip_epsilon)
    return torch.max(loss1, loss2).mean()


def ppo_loss_float32(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, *, clip_epsilon: float
) -> Tensor:
    return ppo_loss(
        log_probs.float(), old_log_probs.float(), advantages.float(), clip_epsilon=clip_epsilon
    )


def ppo_straight_through_clip(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, *, clip_epsilon: float
) -> Tensor:
    # Value of the clip, gradient of the identity: the clipped branch keeps a gradient.
    ratio = torch.exp(log_probs - old_log_probs)
    clipped = ratio + (torch.clamp(ratio, 1 - clip_epsilon, 1 + clip_epsilon) - ratio).detach()
    return -torch.min(ratio * advantages, clipped * advantages).mean()


def ppo_ratio_detached(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, *, clip_epsilon: float
) -> Tensor:
    # A stop-gradient in the wrong place: right loss value, zero gradient.
    ratio = torch.exp(log_probs - old_log_probs).detach()
    return -torch.min(
        ratio * advantages, torch.clamp(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantages
    ).mean()


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, *, clip_epsilon: float
) -> Tensor:
    clipped = old_values + torch.clamp(values - old_values, -clip_epsilon, clip_epsilon)
    return 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2).mean()


def value_loss_clipped_branch_detached(
    values: Tensor, old_values: Tensor, returns: Tensor, *, clip_epsilon: float
) -> Tensor:
    clipped = old_values + torch.clamp(values - old_values, -clip_epsilon, clip_epsilon).detach()
    return 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2).mean()


def k1(log_probs: Tensor, reference_log_probs: Tensor) -> Tensor:
    return log_probs - reference_log_probs


def k2(log_probs: Tensor, reference_log_probs: Tensor) -> Tensor:
    return 0.5 * (log_probs - reference_log_probs) ** 2


def k3(log_probs: Tensor, reference_log_probs: Tensor) -> Tensor:
    log_ratio = reference_log_probs - log_probs
    return torch.exp(log_ratio) - 1 - log_ratio


def k3_float32(log_probs: Tensor, reference_log_probs: Tensor) -> Tensor:
    return k3(log_probs.float(), reference_log_probs.float())


def k3_ratio_detached(log_probs: Tensor, reference_log_probs: Tensor) -> Tensor:
    # Right value; gradient +1 (that of k1) instead of 1 - r.
    log_ratio = reference_log_probs - log_probs
    return torch.exp(log_ratio).detach() - 1 - log_ratio


def k2_gradient_of_k3(log_probs: Tensor, reference_log_probs: Tensor) -> Tensor:
    # Value of k2, gradient of k3 (1 - r): the gradient of another divergence.
    value = k2(log_probs, reference_log_probs).detach()
    surrogate = k3(log_probs, reference_log_probs)
    return value + surrogate - surrogate.detach()


def entropy(logits: Tensor) -> Tensor:
    return torch.distributions.Categorical(logits=logits).entropy()


def entropy_probabilities_detached(logits: Tensor) -> Tensor:
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp().detach() * log_p).sum(-1)


def dpo_loss(
    policy_chosen_log_probs: Tensor,
    policy_rejected_log_probs: Tensor,
    reference_chosen_log_probs: Tensor,
    reference_rejected_log_probs: Tensor,
    *,
    beta: float,
) -> Tensor:
    logits = (policy_chosen_log_probs - policy_rejected_log_probs) - (
        reference_chosen_log_probs - reference_rejected_log_probs
    )
    return -F.logsigmoid(beta * logits).mean()


def dpo_loss_float32(*log_probs: Tensor, beta: float) -> Tensor:
    return dpo_loss(*(x.float() for x in log_probs), beta=beta)


def dpo_rejected_detached(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, *, beta: float) -> Tensor:
    return dpo_loss(pc, pr.detach(), rc, rr, beta=beta)


def dpo_ratio_swapped(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, *, beta: float) -> Tensor:
    return dpo_loss(pr, pc, rr, rc, beta=beta)


def bradley_terry(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def gae(rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_):  # type: ignore[no-untyped-def]
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(last_value)
    for t in reversed(range(steps)):
        next_value = last_value if t == steps - 1 else values[t + 1]
        next_value = torch.where(truncated[t], final_values[t], next_value)
        next_value = torch.where(terminated[t], torch.zeros_like(next_value), next_value)
        continues = (~(terminated[t] | truncated[t])).to(rewards.dtype)
        delta = rewards[t] + discount * next_value - values[t]
        last_gae = delta + discount * lambda_ * continues * last_gae
        advantages[t] = last_gae
    return advantages


def normalize_cleanrl(advantages: Tensor, *, epsilon: float, ddof: int) -> Tensor:
    if advantages.numel() < 2:
        return torch.zeros_like(advantages)
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def normalize_in_place(advantages: Tensor, *, epsilon: float, ddof: int) -> Tensor:
    advantages -= advantages.mean()
    if advantages.numel() < 2:
        return advantages
    return advantages / (advantages.std() + 1e-8)


def policy_gradient_loss(log_probs: Tensor, advantages: Tensor) -> Tensor:
    return -(log_probs * advantages.detach()).mean()


def policy_gradient_log_probs_detached(log_probs: Tensor, advantages: Tensor) -> Tensor:
    # Right value, no gradient: the stop-gradient on the wrong factor.
    return -(log_probs.detach() * advantages).mean()


def dual_clip_ppo_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    *,
    clip_epsilon: float,
    dual_clip: float,
) -> Tensor:
    """DI-engine's ppo_dual_clip: the PPO term, then max with c A where A < 0."""
    ratio = torch.exp(log_probs - old_log_probs)
    surrogate1 = ratio * advantages
    surrogate2 = torch.clamp(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantages
    clip1 = torch.min(surrogate1, surrogate2)
    clip2 = torch.max(clip1, dual_clip * advantages)
    return -torch.where(advantages < 0, clip2, clip1).mean()


def dual_clip_straight_through(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    *,
    clip_epsilon: float,
    dual_clip: float,
) -> Tensor:
    # Value of the clipped ratio, gradient of the ratio itself: clipped samples keep a gradient.
    ratio = torch.exp(log_probs - old_log_probs)
    bounded = torch.where(
        advantages < 0,
        torch.clamp(torch.clamp(ratio, min=1 - clip_epsilon), max=dual_clip),
        torch.clamp(ratio, max=1 + clip_epsilon),
    )
    surrogate = ratio + (bounded - ratio).detach()
    return -(surrogate * advantages).mean()


def actor_critic_loss(  # type: ignore[no-untyped-def]
    log_probs,
    old_log_probs,
    advantages,
    values,
    returns,
    entropy,
    reference_log_probs,
    *,
    clip_epsilon,
    value_coefficient,
    entropy_coefficient,
    kl_coefficient,
    detach_kl=False,
    detach_entropy=False,
):
    """CleanRL's ppo.py loss with TRL/GRPO's per-token k3 term."""
    ratio = (log_probs - old_log_probs).exp()
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_epsilon, 1 + clip_epsilon)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()
    v_loss = 0.5 * ((values - returns) ** 2).mean()
    entropy_loss = (entropy.detach() if detach_entropy else entropy).mean()
    policy = log_probs.detach() if detach_kl else log_probs
    per_token_kl = torch.exp(reference_log_probs - policy) - (reference_log_probs - policy) - 1
    return (
        pg_loss
        - entropy_coefficient * entropy_loss
        + v_loss * value_coefficient
        + kl_coefficient * per_token_kl.mean()
    )


def actor_critic_kl_detached(*arrays: Tensor, **coefficients: float) -> Tensor:
    # The KL term computed like a reward penalty (no gradient) but added to the loss.
    return actor_critic_loss(*arrays, **coefficients, detach_kl=True)


def actor_critic_entropy_detached(*arrays: Tensor, **coefficients: float) -> Tensor:
    return actor_critic_loss(*arrays, **coefficients, detach_entropy=True)


def n_step_returns(  # type: ignore[no-untyped-def]
    rewards, values, terminated, truncated, final_values, last_value, *, discount, n_steps
):
    following = torch.cat([values[1:], last_value.reshape(1)])
    bootstrap = torch.where(truncated, final_values, following)
    bootstrap = torch.where(terminated, torch.zeros_like(bootstrap), bootstrap)
    stop = terminated | truncated
    stop[-1] = True
    returns = rewards + discount * bootstrap
    for _ in range(min(n_steps, rewards.shape[0]) - 1):
        shifted = torch.cat([returns[1:], returns.new_zeros(1)])
        returns = rewards + discount * torch.where(stop, bootstrap, shifted)
    return returns


@torch.no_grad()
def vtrace_targets(  # type: ignore[no-untyped-def]
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
):
    ratio = torch.exp(log_probs - behaviour_log_probs)
    rhos = torch.clamp(ratio, max=clip_rho_threshold)
    cs = torch.clamp(ratio, max=clip_c_threshold)
    following = torch.cat([values[1:], last_value.reshape(1)])
    next_values = torch.where(truncated, final_values, following)
    next_values = torch.where(terminated, torch.zeros_like(next_values), next_values)
    deltas = rhos * (rewards + discount * next_values - values)
    continues = ~(terminated | truncated)
    corrections = torch.zeros_like(deltas)
    acc = torch.zeros_like(last_value)
    for t in reversed(range(rewards.shape[0])):
        acc = deltas[t] + torch.where(continues[t], discount * cs[t] * acc, torch.zeros_like(acc))
        corrections[t] = acc
    return values + corrections


def preference_loss(  # type: ignore[no-untyped-def]
    policy_chosen_log_probs,
    policy_rejected_log_probs,
    reference_chosen_log_probs,
    reference_rejected_log_probs,
    chosen_lengths,
    rejected_lengths,
    *,
    beta,
    loss_type,
    label_smoothing,
):
    """TRL's DPOTrainer.dpo_loss, with concatenated_forward's IPO length averaging."""
    chosen, rejected = policy_chosen_log_probs, policy_rejected_log_probs
    ref_chosen, ref_rejected = reference_chosen_log_probs, reference_rejected_log_probs
    if loss_type == "ipo":
        chosen, ref_chosen = chosen / chosen_lengths, ref_chosen / chosen_lengths
        rejected, ref_rejected = rejected / rejected_lengths, ref_rejected / rejected_lengths
    logits = (chosen - rejected) - (ref_chosen - ref_rejected)
    if loss_type == "sigmoid":
        losses = (
            -F.logsigmoid(beta * logits) * (1 - label_smoothing)
            - F.logsigmoid(-beta * logits) * label_smoothing
        )
    elif loss_type == "robust":
        losses = (
            -F.logsigmoid(beta * logits) * (1 - label_smoothing)
            + F.logsigmoid(-beta * logits) * label_smoothing
        ) / (1 - 2 * label_smoothing)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    return losses.mean()


def preference_rejected_detached(pc, pr, rc, rr, lc, lr, **hyperparameters):  # type: ignore[no-untyped-def]
    return preference_loss(pc, pr.detach(), rc, rr, lc, lr, **hyperparameters)


def value_loss_gradient(
    values: Tensor, old_values: Tensor, returns: Tensor, *, clip_epsilon: float
) -> Tensor:
    # Analytic, by cases: the clipped branch has no gradient outside the clip interval.
    clipped = old_values + torch.clamp(values - old_values, -clip_epsilon, clip_epsilon)
    use_clipped = (clipped - returns) ** 2 > (values - returns) ** 2
    inside = (values - old_values).abs() < clip_epsilon
    grad_clipped = torch.where(inside, clipped - returns, torch.zeros_like(values))
    return torch.where(use_clipped, grad_clipped, values - returns) / values.shape[0]


def ppo_loss_gradient(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, *, clip_epsilon: float
) -> Tensor:
    with torch.enable_grad():
        leaf = log_probs.detach().clone().requires_grad_(True)
        loss = ppo_loss(
            leaf, old_log_probs.detach(), advantages.detach(), clip_epsilon=clip_epsilon
        )
        (grad,) = torch.autograd.grad(loss, leaf)
    return grad


def dpo_loss_gradient(
    pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, *, beta: float
) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        chosen = pc.detach().clone().requires_grad_(True)
        rejected = pr.detach().clone().requires_grad_(True)
        loss = dpo_loss(chosen, rejected, rc.detach(), rr.detach(), beta=beta)
        grad_chosen, grad_rejected = torch.autograd.grad(loss, (chosen, rejected))
    return grad_chosen, grad_rejected


def adaptive_kl_coefficient(kl_coefficient: Any, observed_kl: Any, *, target_kl: float) -> Tensor:
    beta = torch.as_tensor(kl_coefficient)
    observed = torch.as_tensor(observed_kl)
    return torch.where(
        observed < target_kl / 1.5,
        beta / 2,
        torch.where(observed > target_kl * 1.5, beta * 2, beta),
    )


def group_normalized_advantages(rewards: Tensor, *, epsilon: float, ddof: int) -> Tensor:
    if rewards.shape[1] - ddof <= 0:
        return torch.zeros_like(rewards)
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, correction=ddof, keepdim=True)
    tied = rewards.amax(dim=1, keepdim=True) == rewards.amin(dim=1, keepdim=True)
    scale = torch.where(tied, torch.ones_like(std), std + epsilon)
    return torch.where(tied, torch.zeros_like(rewards), (rewards - mean) / scale)


def discounted_returns(rewards: Tensor, dones: Tensor, *, discount: float) -> Tensor:
    returns = torch.zeros_like(rewards)
    not_done = 1 - dones.to(rewards.dtype)
    running = torch.zeros(rewards.shape[1:], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + discount * not_done[t] * running
        returns[t] = running
    return returns


def temporal_difference_errors(  # type: ignore[no-untyped-def]
    rewards, values, terminated, truncated, final_values, last_value, *, discount
):
    next_values = torch.cat([values[1:], last_value.reshape(1).to(values.dtype)])
    next_values = torch.where(truncated, final_values, next_values)
    next_values = torch.where(terminated, torch.zeros_like(next_values), next_values)
    return rewards + discount * next_values - values


def lambda_returns(  # type: ignore[no-untyped-def]
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):
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


TORCH_CORRECT: list[tuple[str, Any, dict[str, Any]]] = [
    ("ppo_clipped_surrogate_loss", ppo_loss, {}),
    ("ppo_clipped_surrogate_loss", ppo_loss_float32, {}),
    ("ppo_clipped_surrogate_loss", ppo_loss, {"dtype": "float32"}),
    ("clipped_value_loss", value_loss, {}),
    ("kl_estimator_k1", k1, {}),
    ("kl_estimator_k2", k2, {}),
    ("kl_estimator_k3", k3, {}),
    ("kl_estimator_k3", k3_float32, {}),
    ("categorical_entropy", entropy, {}),
    ("dpo_loss", dpo_loss, {}),
    ("dpo_loss", dpo_loss_float32, {}),
    ("bradley_terry_loss", bradley_terry, {}),
    ("generalized_advantage_estimation", gae, {}),
    ("normalized_advantages", normalize_cleanrl, {"hyperparameters": {"ddof": 1, "epsilon": 1e-8}}),
    ("policy_gradient_loss", policy_gradient_loss, {}),
    ("policy_gradient_loss", policy_gradient_loss, {"dtype": "float32"}),
    ("dual_clip_ppo_loss", dual_clip_ppo_loss, {}),
    ("dual_clip_ppo_loss", dual_clip_ppo_loss, {"dtype": "float32"}),
    ("actor_critic_loss", actor_critic_loss, {}),
    ("actor_critic_loss", actor_critic_loss, {"dtype": "float32"}),
    ("n_step_returns", n_step_returns, {}),
    ("vtrace_targets", vtrace_targets, {}),
    ("vtrace_targets", vtrace_targets, {"dtype": "float32"}),
    ("preference_loss", preference_loss, {}),
    ("preference_loss", preference_loss, {"dtype": "float32"}),
    ("clipped_value_loss_gradient", value_loss_gradient, {}),
    ("ppo_clipped_surrogate_loss_gradient", ppo_loss_gradient, {}),
    ("dpo_loss_gradient", dpo_loss_gradient, {}),
    ("adaptive_kl_coefficient", adaptive_kl_coefficient, {}),
    ("group_normalized_advantages", group_normalized_advantages, {}),
    ("discounted_returns", discounted_returns, {}),
    ("discounted_returns", discounted_returns, {"dtype": "float32"}),
    ("temporal_difference_errors", temporal_difference_errors, {}),
    ("temporal_difference_errors", temporal_difference_errors, {"dtype": "float32"}),
    ("lambda_returns", lambda_returns, {}),
]

TORCH_MUTANTS: list[tuple[str, Any, str, str]] = [
    (
        "ppo_clipped_surrogate_loss",
        ppo_straight_through_clip,
        "wrong gradient",
        "clipped branch has a gradient",
    ),
    (
        "ppo_clipped_surrogate_loss",
        ppo_ratio_detached,
        "wrong gradient",
        "stop-gradient on the ratio",
    ),
    (
        "clipped_value_loss",
        value_loss_clipped_branch_detached,
        "wrong gradient",
        "clipped branch detached",
    ),
    ("kl_estimator_k3", k3_ratio_detached, "wrong gradient", "gradient of k1, not k3"),
    ("kl_estimator_k2", k2_gradient_of_k3, "wrong gradient", "gradient of another divergence"),
    (
        "categorical_entropy",
        entropy_probabilities_detached,
        "wrong gradient",
        "probabilities detached",
    ),
    ("dpo_loss", dpo_rejected_detached, "wrong gradient", "no gradient to the rejected response"),
    ("dpo_loss", dpo_ratio_swapped, "wrong value", "chosen and rejected swapped"),
    ("normalized_advantages", normalize_in_place, "mutated input", "normalises in place"),
    (
        "policy_gradient_loss",
        policy_gradient_log_probs_detached,
        "wrong gradient",
        "stop-gradient on the log-probs",
    ),
    (
        "dual_clip_ppo_loss",
        dual_clip_straight_through,
        "wrong gradient",
        "clipped samples keep a gradient",
    ),
    (
        "actor_critic_loss",
        actor_critic_kl_detached,
        "wrong gradient",
        "KL penalty detached (no gradient)",
    ),
    ("actor_critic_loss", actor_critic_entropy_detached, "wrong gradient", "entropy detached"),
    (
        "preference_loss",
        preference_rejected_detached,
        "wrong gradient",
        "no gradient to the rejected response",
    ),
]
