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
]
