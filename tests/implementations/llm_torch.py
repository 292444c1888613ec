"""PyTorch implementations of the LLM-RL specs (:mod:`rlmath.llm_specs`): correct and mutants.

Written the way TRL, verl and OpenRLHF write them: ``torch.where`` and masked sums, ``torch.std``
/ ``torch.var`` with ``correction=``, ``index_add_`` / ``scatter_reduce`` for groups, ``detach``
for stop-gradients. Each receives tensors in the dtype of the check (float64 or float32) and
returns tensors of that dtype; the masks are ``torch.bool`` and the group ids ``torch.int64``.

``TORCH_CORRECT`` lists :class:`Variant` s (spec name, implementation, options of ``check``):
each must be accepted in float64 and float32, its autograd gradient included where the spec
has a gradient. ``TORCH_MUTANTS`` lists :class:`Mutant` s (spec name, implementation, failure
kinds accepted, the bug, dtypes, options): each models a bug class seen in public LLM-RL code
and must be rejected by a verdict of one of those kinds in each of the dtypes listed.

Two traps every correct variant here avoids, and the mutants fall into:

- padding holds arbitrary finite garbage, so ``exp(log_probs - old_log_probs)`` can overflow
  there; ``inf * 0`` is NaN, so masking by multiplication *after* the exponential is a bug
  (and ``torch.where`` after it still gives a NaN gradient, ``0 * inf``): mask the log-ratio
  first;
- a tied group (or tied batch) must give exactly 0: ``mean`` of equal floats is not always
  that float, so the tie is tested with ``max == min``, not through ``std == 0``.

Imported only when torch is installed (``pytest.importorskip`` below also skips the module's
doctest collection without torch).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, NamedTuple

import pytest

torch = pytest.importorskip("torch")

Tensor = Any  # torch.Tensor; Any so the module imports without type stubs

FLOATS = ("float64", "float32")


# --- ppo_token_loss ---------------------------------------------------------------------------


def _verl_policy_losses(
    negative_approx_kl, advantages, response_mask, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    ratio = torch.exp(negative_approx_kl)
    advantages = torch.where(response_mask, advantages, 0.0)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    if dual_clip is None:
        pg_losses = clip_pg_losses1
    else:
        pg_losses3 = -advantages * dual_clip
        clip_pg_losses2 = torch.minimum(pg_losses3, clip_pg_losses1)
        pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    return torch.where(response_mask, pg_losses, 0.0)


def ppo_token_loss_verl(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    """verl ``compute_policy_loss``: max of the negated surrogates, dual clip where A < 0;
    the log-ratio masked by ``torch.where`` before the exponential."""
    negative_approx_kl = torch.where(response_mask, log_probs - old_log_probs, 0.0)
    return _verl_policy_losses(
        negative_approx_kl, advantages, response_mask, clip_low, clip_high, dual_clip
    )


def ppo_token_loss_verl_clamped(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    """verl's actual code clamps the log-ratio to [-20, 20] (checked assuming |log r| <= 20);
    the clamp also keeps the padding's exponential finite."""
    negative_approx_kl = torch.clamp(log_probs - old_log_probs, min=-20.0, max=20.0)
    return _verl_policy_losses(
        negative_approx_kl, advantages, response_mask, clip_low, clip_high, dual_clip
    )


def ppo_token_loss_openrlhf(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    """OpenRLHF ``PolicyLoss``: -min of the surrogates, max with c A; masks by multiplication
    of the (finite) inputs before the exponential."""
    mask = response_mask.to(log_probs.dtype)
    ratio = ((log_probs - old_log_probs) * mask).exp()
    advantages = advantages * mask
    surr1 = ratio * advantages
    surr2 = ratio.clamp(1 - clip_low, 1 + clip_high) * advantages
    clip1 = torch.min(surr1, surr2)
    if dual_clip is None:
        loss = -clip1
    else:
        clip2 = torch.max(clip1, dual_clip * advantages)
        loss = -torch.where(advantages < 0, clip2, clip1)
    return loss * mask


def ppo_token_clip_swapped(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    # clip-higher swapped: clamp(ratio, 1 - clip_high, 1 + clip_low)
    return ppo_token_loss_verl(
        log_probs,
        old_log_probs,
        advantages,
        response_mask,
        clip_low=clip_high,
        clip_high=clip_low,
        dual_clip=dual_clip,
    )


def ppo_token_mask_after_exp(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    # ratio of the padding garbage overflows to inf; "loss * mask" then gives inf * 0 = NaN
    mask = response_mask.to(log_probs.dtype)
    ratio = torch.exp(log_probs - old_log_probs)
    loss = torch.maximum(
        -advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    )
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * dual_clip), loss)
    return loss * mask


def ppo_token_straight_through_clip(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    # value of the clip, gradient of the identity: clipped tokens keep a gradient
    log_ratio = torch.where(response_mask, log_probs - old_log_probs, 0.0)
    ratio = torch.exp(log_ratio)
    clipped = ratio + (torch.clamp(ratio, 1 - clip_low, 1 + clip_high) - ratio).detach()
    advantages = torch.where(response_mask, advantages, 0.0)
    loss = torch.maximum(-advantages * ratio, -advantages * clipped)
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * dual_clip), loss)
    return torch.where(response_mask, loss, 0.0)


# --- aggregate_loss ---------------------------------------------------------------------------


def aggregate_verl(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    """verl ``agg_loss``: masked sums; empty rows masked out of the sequence means."""
    mask = response_mask.to(per_token.dtype)
    if mode == "token-mean":
        return (per_token * mask).sum() / mask.sum()
    seq_sums = torch.sum(per_token * mask, dim=-1)
    lengths = torch.sum(mask, dim=-1)
    seq_mask = (lengths > 0).to(per_token.dtype)
    if mode == "seq-mean-token-mean":
        seq_losses = seq_sums / lengths.clamp(min=1)
        return (seq_losses * seq_mask).sum() / seq_mask.sum()
    if mode == "seq-mean-token-sum":
        return (seq_sums * seq_mask).sum() / seq_mask.sum()
    return seq_sums.sum() / (mask.shape[0] * mask.shape[1])


def aggregate_nanmean(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    """Boolean indexing and ``nanmean``: padding set to NaN, empty rows' NaN means skipped."""
    if mode == "token-mean":
        return per_token[response_mask].mean()
    if mode == "seq-mean-token-sum-norm":
        return per_token[response_mask].sum() / response_mask.numel()
    padded = torch.where(response_mask, per_token, torch.nan)
    if mode == "seq-mean-token-mean":
        return padded.nanmean(dim=-1).nanmean()
    nonempty = response_mask.any(dim=-1)
    return padded.nansum(dim=-1)[nonempty].mean()


def _micro_batches(per_token, response_mask):  # type: ignore[no-untyped-def]
    return zip(torch.split(per_token, 2), torch.split(response_mask, 2), strict=True)


def aggregate_micro_batch_local_counts(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    # gradient accumulation over micro-batches of 2 rows, each normalised by its own token
    # count, then averaged over the micro-batches (the transformers < 4.46 bug)
    if mode != "token-mean":
        return aggregate_verl(per_token, response_mask, mode)
    losses = [
        (loss * mask).sum() / mask.sum().clamp(min=1)
        for loss, mask in _micro_batches(per_token, response_mask.to(per_token.dtype))
    ]
    return torch.stack(losses).mean()


def aggregate_seq_mean_as_token_mean(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    # "seq-mean-token-mean" computed as the token-mean over the whole batch
    if mode == "seq-mean-token-mean":
        return aggregate_verl(per_token, response_mask, "token-mean")
    return aggregate_verl(per_token, response_mask, mode)


def aggregate_empty_rows_in_seq_mean(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    # older verl: torch.mean over all rows; an empty row gives 0 / 0 in seq-mean-token-mean
    mask = response_mask.to(per_token.dtype)
    seq_sums = torch.sum(per_token * mask, dim=-1)
    if mode == "seq-mean-token-mean":
        return torch.mean(seq_sums / torch.sum(mask, dim=-1))
    if mode == "seq-mean-token-sum":
        return torch.mean(seq_sums)
    return aggregate_verl(per_token, response_mask, mode)


# --- grpo_advantages --------------------------------------------------------------------------


def _groups(group_ids):  # type: ignore[no-untyped-def]
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    return inverse, counts


def _group_sum(values, inverse, groups):  # type: ignore[no-untyped-def]
    return torch.zeros(groups, dtype=values.dtype).index_add_(0, inverse, values)


def _tied(values, inverse, groups):  # type: ignore[no-untyped-def]
    """Per row: whether all members of its group are equal (max == min, not std == 0)."""
    high = torch.full((groups,), -math.inf, dtype=values.dtype)
    low = torch.full((groups,), math.inf, dtype=values.dtype)
    high = high.scatter_reduce(0, inverse, values, reduce="amax")
    low = low.scatter_reduce(0, inverse, values, reduce="amin")
    return (high == low)[inverse]


def grpo_scatter(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    """Vectorised: ``torch.unique`` groups, ``index_add_`` sums, ``scatter_reduce`` ties."""
    inverse, counts = _groups(group_ids)
    groups = counts.numel()
    n = counts.to(rewards.dtype)
    mean = (_group_sum(rewards, inverse, groups) / n)[inverse]
    deviation = rewards - mean
    variance = _group_sum(deviation**2, inverse, groups) / (n - ddof)
    std = torch.sqrt(variance)[inverse]
    tied = _tied(rewards, inverse, groups)
    return torch.where(tied, 0.0, deviation / (std + epsilon))


def grpo_verl_loop(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    """verl ``compute_grpo_outcome_advantage``: a dict of lists, ``torch.std(correction=)``;
    a tied group (a group of one is tied) gets 0."""
    id2score: dict[int, list[Tensor]] = defaultdict(list)
    for i, index in enumerate(group_ids.tolist()):
        id2score[index].append(rewards[i])
    id2mean, id2std, id2tied = {}, {}, {}
    for index, scores in id2score.items():
        stacked = torch.stack(scores)
        id2tied[index] = bool(torch.all(stacked == stacked[0]))
        id2mean[index] = torch.mean(stacked)
        id2std[index] = torch.std(stacked, correction=ddof) if len(scores) > ddof else None
    out = torch.zeros_like(rewards)
    for i, index in enumerate(group_ids.tolist()):
        if not id2tied[index]:
            out[i] = (rewards[i] - id2mean[index]) / (id2std[index] + epsilon)
    return out


def grpo_sample_std_always(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # torch.std's default correction=1 used whatever ddof the spec asks for
    return grpo_verl_loop(rewards, group_ids, epsilon=epsilon, ddof=1)


def grpo_singleton_raw_reward(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # verl: a group of one gets mean 0 and std 1, i.e. its raw reward, instead of 0
    out = grpo_scatter(rewards, group_ids, epsilon=epsilon, ddof=ddof)
    inverse, counts = _groups(group_ids)
    single = (counts == 1)[inverse]
    return torch.where(single, rewards / (1.0 + epsilon), out)


def grpo_no_tie_check(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # (r - mean) / (std + eps) for tied groups too (TRL): 0 / 0 or rounding noise / eps
    inverse, counts = _groups(group_ids)
    groups = counts.numel()
    n = counts.to(rewards.dtype)
    mean = (_group_sum(rewards, inverse, groups) / n)[inverse]
    deviation = rewards - mean
    std = torch.sqrt(_group_sum(deviation**2, inverse, groups) / (n - ddof))[inverse]
    return deviation / (std + epsilon)


# --- rloo_advantages --------------------------------------------------------------------------


def rloo_leave_one_out(rewards, group_ids):  # type: ignore[no-untyped-def]
    """OpenRLHF: baseline = (group sum - r) / (n - 1), with ``index_add_`` over shuffled ids."""
    inverse, counts = _groups(group_ids)
    sums = _group_sum(rewards, inverse, counts.numel())[inverse]
    n = counts.to(rewards.dtype)[inverse]
    baseline = (sums - rewards) / (n - 1)
    return rewards - baseline


def rloo_scaled_deviation(rewards, group_ids):  # type: ignore[no-untyped-def]
    """The identity n / (n - 1) (r - group mean), group means from a one-hot matrix product."""
    inverse, counts = _groups(group_ids)
    one_hot = torch.nn.functional.one_hot(inverse, counts.numel()).to(rewards.dtype)
    n = counts.to(rewards.dtype)
    mean = one_hot @ ((one_hot.T @ rewards) / n)
    n_row = one_hot @ n
    return n_row / (n_row - 1) * (rewards - mean)


def rloo_includes_self(rewards, group_ids):  # type: ignore[no-untyped-def]
    # the baseline is the group mean including the sample itself
    inverse, counts = _groups(group_ids)
    sums = _group_sum(rewards, inverse, counts.numel())[inverse]
    return rewards - sums / counts.to(rewards.dtype)[inverse]


def rloo_divides_by_n(rewards, group_ids):  # type: ignore[no-untyped-def]
    # leave-one-out sum divided by n instead of n - 1
    inverse, counts = _groups(group_ids)
    sums = _group_sum(rewards, inverse, counts.numel())[inverse]
    return rewards - (sums - rewards) / counts.to(rewards.dtype)[inverse]


# --- masked_whiten ----------------------------------------------------------------------------


def _masked_mean(values, mask):  # type: ignore[no-untyped-def]
    return (values * mask).sum() / mask.sum()


def _masked_var(values, mask, unbiased):  # type: ignore[no-untyped-def]
    mean = _masked_mean(values, mask)
    variance = _masked_mean((values - mean) ** 2, mask)
    if unbiased:
        mask_sum = mask.sum()
        variance = variance * (mask_sum / (mask_sum - 1))
    return variance


def _all_equal(values, response_mask):  # type: ignore[no-untyped-def]
    selected = values[response_mask]
    return bool(selected.max() == selected.min())


def whiten_verl(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    """verl ``masked_whiten`` (masked_mean, masked_var with Bessel's correction, rsqrt of
    var + eps), re-masked as its callers do; equal response values give 0 (or mu)."""
    mask = response_mask.to(values.dtype)
    if _all_equal(values, response_mask):
        whitened = torch.zeros_like(values) if shift_mean else values
        return torch.where(response_mask, whitened, 0.0)
    mean = _masked_mean(values, mask)
    var = _masked_var(values, mask, unbiased=ddof == 1)
    whitened = (values - mean) * torch.rsqrt(var + epsilon)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def whiten_selected(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    """Statistics of ``values[response_mask]`` by ``torch.var_mean(correction=ddof)``."""
    selected = values[response_mask]
    if selected.max() == selected.min():
        out = torch.zeros_like(values) if shift_mean else torch.full_like(values, selected[0])
        return torch.where(response_mask, out, 0.0)
    var, mean = torch.var_mean(selected, correction=ddof)
    whitened = (values - mean) / torch.sqrt(var + epsilon)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(response_mask, whitened, 0.0)


def whiten_not_remasked(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    # verl's masked_whiten alone: padding gets (garbage - mu) / sigma
    if _all_equal(values, response_mask):
        return whiten_verl(values, response_mask, epsilon=epsilon, ddof=ddof, shift_mean=shift_mean)
    mask = response_mask.to(values.dtype)
    mean = _masked_mean(values, mask)
    whitened = (values - mean) * torch.rsqrt(_masked_var(values, mask, ddof == 1) + epsilon)
    return whitened if shift_mean else whitened + mean


def whiten_mask_after_normalisation(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    # whitened with the mean and variance of every entry (padding included), then masked
    if _all_equal(values, response_mask):
        return whiten_verl(values, response_mask, epsilon=epsilon, ddof=ddof, shift_mean=shift_mean)
    var, mean = torch.var_mean(values, correction=ddof)
    whitened = (values - mean) / torch.sqrt(var + epsilon)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * response_mask


def whiten_unbiased_always(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    # verl's masked_var(unbiased=True) default, whatever ddof the spec asks for
    return whiten_verl(values, response_mask, epsilon=epsilon, ddof=1, shift_mean=shift_mean)


def whiten_epsilon_on_std(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    # epsilon added to the std (GRPO's convention) instead of inside the square root
    if _all_equal(values, response_mask):
        return whiten_verl(values, response_mask, epsilon=epsilon, ddof=ddof, shift_mean=shift_mean)
    selected = values[response_mask]
    mean = selected.mean()
    whitened = (values - mean) / (selected.std(correction=ddof) + epsilon)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(response_mask, whitened, 0.0)


# --- gspo_loss --------------------------------------------------------------------------------


def _sequence_log_ratio(log_probs, old_log_probs, response_mask):  # type: ignore[no-untyped-def]
    mask = response_mask.to(log_probs.dtype)
    lengths = mask.sum(dim=-1)
    mean = torch.sum((log_probs - old_log_probs) * mask, dim=-1) / lengths.clamp(min=1)
    return mean, lengths


def gspo_sequence(log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high):  # type: ignore[no-untyped-def]
    """The paper's form: s_b = exp(masked mean log-ratio), clipped per sequence."""
    mean, lengths = _sequence_log_ratio(log_probs, old_log_probs, response_mask)
    ratio = torch.exp(mean)
    objective = torch.minimum(
        ratio * advantages, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * advantages
    )
    return -objective[lengths > 0].mean()


def gspo_token_verl(log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high):  # type: ignore[no-untyped-def]
    """verl ``compute_policy_loss_gspo``: per-token ratio sg[s_b] pi / sg[pi] (value s_b,
    gradient s_b d log pi), then ``agg_loss`` seq-mean-token-mean."""
    mask = response_mask.to(log_probs.dtype)
    mean, lengths = _sequence_log_ratio(log_probs, old_log_probs, response_mask)
    log_seq_ratio = log_probs - log_probs.detach() + mean.detach().unsqueeze(-1)
    seq_ratio = torch.exp(log_seq_ratio)
    adv = advantages.unsqueeze(-1)
    pg_losses = torch.maximum(
        -adv * seq_ratio, -adv * torch.clamp(seq_ratio, 1 - clip_low, 1 + clip_high)
    )
    return aggregate_verl(pg_losses * mask, response_mask, "seq-mean-token-mean")


def gspo_token_mean(log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high):  # type: ignore[no-untyped-def]
    # GSPO-token aggregated by token-mean over the batch instead of per sequence
    mask = response_mask.to(log_probs.dtype)
    mean, _ = _sequence_log_ratio(log_probs, old_log_probs, response_mask)
    seq_ratio = torch.exp(log_probs - log_probs.detach() + mean.detach().unsqueeze(-1))
    adv = advantages.unsqueeze(-1)
    pg_losses = torch.maximum(
        -adv * seq_ratio, -adv * torch.clamp(seq_ratio, 1 - clip_low, 1 + clip_high)
    )
    return aggregate_verl(pg_losses * mask, response_mask, "token-mean")


def gspo_ratio_detached(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high
):  # type: ignore[no-untyped-def]
    # stop-gradient on the whole sequence ratio: right loss, zero gradient
    mean, lengths = _sequence_log_ratio(log_probs, old_log_probs, response_mask)
    ratio = torch.exp(mean).detach()
    objective = torch.minimum(
        ratio * advantages, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * advantages
    )
    return -objective[lengths > 0].mean()


def gspo_empty_rows_counted(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high
):  # type: ignore[no-untyped-def]
    # mean over all B rows: an empty row (ratio 1) adds -A_b
    mean, _ = _sequence_log_ratio(log_probs, old_log_probs, response_mask)
    ratio = torch.exp(mean)
    objective = torch.minimum(
        ratio * advantages, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * advantages
    )
    return -objective.mean()


# --- truncated_importance_weights -------------------------------------------------------------


def tis_verl(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    """verl: ``torch.clamp(exp(old - rollout), max=cap)``, padding zeroed by ``torch.where``."""
    ratio = torch.exp(old_log_probs - rollout_log_probs)
    return torch.where(response_mask, torch.clamp(ratio, max=cap), 0.0)


def tis_log_space(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    """Truncated in log space: exp(min(log-ratio, log C)), log-ratio masked first."""
    log_ratio = torch.where(response_mask, old_log_probs - rollout_log_probs, -math.inf)
    return torch.exp(torch.clamp(log_ratio, max=math.log(cap)))


def tis_clamp_min(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    # clamp(min=cap) where clamp(max=cap) was meant
    ratio = torch.exp(old_log_probs - rollout_log_probs)
    return torch.where(response_mask, torch.clamp(ratio, min=cap), 0.0)


def tis_inverted_ratio(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    # mu / pi_old instead of pi_old / mu
    return tis_verl(rollout_log_probs, old_log_probs, response_mask, cap=cap)


def tis_mask_after_exp(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    # untruncated (cap = inf) garbage ratio overflows at padding: inf * 0 = NaN
    ratio = torch.clamp(torch.exp(old_log_probs - rollout_log_probs), max=cap)
    return ratio * response_mask.to(ratio.dtype)


# --- masked_importance_weights ----------------------------------------------------------------


def mis_verl(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    """verl-style: log-ratio masked first, a keep-mask ``ratio <= cap`` multiplied in."""
    log_ratio = torch.where(response_mask, old_log_probs - rollout_log_probs, 0.0)
    ratio = torch.exp(log_ratio)
    keep = (ratio <= cap) & response_mask
    return ratio * keep.to(ratio.dtype)


def mis_truncated(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    # TIS where MIS was asked: ratios above the cap truncated to the cap instead of dropped
    return tis_verl(old_log_probs, rollout_log_probs, response_mask, cap=cap)


def mis_at_or_above_cap(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    # torch.where(ratio >= cap, 0, ratio): a ratio equal to the cap (rho = 1, cap = 1) dropped
    ratio = torch.exp(torch.where(response_mask, old_log_probs - rollout_log_probs, 0.0))
    return torch.where(response_mask & (ratio < cap), ratio, 0.0)


# --- kl_penalty_per_token ---------------------------------------------------------------------


def kl_penalty_verl(log_probs, reference_log_probs, response_mask, *, estimator):  # type: ignore[no-untyped-def]
    """verl ``kl_penalty``: kl = logprob - ref_logprob; "mse" 0.5 kl^2; "low_var_kl"
    exp(-kl) - 1 + kl (without verl's clamp); the difference masked before the exponential."""
    kl = torch.where(response_mask, log_probs - reference_log_probs, 0.0)
    if estimator == "k1":
        out = kl
    elif estimator == "k2":
        out = 0.5 * kl.square()
    else:
        ratio = torch.exp(-kl)
        out = ratio - 1 - (-kl)
    return torch.where(response_mask, out, 0.0)


def kl_penalty_k3_inverted(log_probs, reference_log_probs, response_mask, *, estimator):  # type: ignore[no-untyped-def]
    # k3 with log r = log pi - log pi_ref: exp(kl) - 1 - kl
    if estimator != "k3":
        return kl_penalty_verl(log_probs, reference_log_probs, response_mask, estimator=estimator)
    kl = torch.where(response_mask, log_probs - reference_log_probs, 0.0)
    return torch.where(response_mask, torch.expm1(kl) - kl, 0.0)


def kl_penalty_no_grad(log_probs, reference_log_probs, response_mask, *, estimator):  # type: ignore[no-untyped-def]
    # the reward-path KL (computed from detached log-probs) used as a loss: zero gradient
    return kl_penalty_verl(
        log_probs.detach(), reference_log_probs, response_mask, estimator=estimator
    )


# --- kl_reward_to_go --------------------------------------------------------------------------


def kl_reward_to_go_flip(log_probs, reference_log_probs, response_mask, *, kl_coefficient):  # type: ignore[no-untyped-def]
    """flip / cumsum / flip of the masked per-token reward -beta (log pi - log pi_ref)."""
    kl = torch.where(response_mask, log_probs - reference_log_probs, 0.0)
    rewards = -kl_coefficient * kl
    to_go = torch.flip(torch.cumsum(torch.flip(rewards, dims=[-1]), dim=-1), dims=[-1])
    return torch.where(response_mask, to_go, 0.0)


def kl_reward_to_go_openrlhf(log_probs, reference_log_probs, response_mask, *, kl_coefficient):  # type: ignore[no-untyped-def]
    """OpenRLHF ``get_cumulative_returns`` (gamma = 1): a loop over t backwards."""
    mask = response_mask.to(log_probs.dtype)
    rewards = -kl_coefficient * (log_probs - reference_log_probs) * mask
    returns = torch.zeros_like(rewards)
    cumulative = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        cumulative = rewards[:, t] + cumulative
        returns[:, t] = cumulative
    return returns * mask


def kl_reward_not_summed(log_probs, reference_log_probs, response_mask, *, kl_coefficient):  # type: ignore[no-untyped-def]
    # the per-token reward -beta k1 returned as it is, not summed to go
    kl = torch.where(response_mask, log_probs - reference_log_probs, 0.0)
    return -kl_coefficient * kl


def kl_reward_masked_after_sum(log_probs, reference_log_probs, response_mask, *, kl_coefficient):  # type: ignore[no-untyped-def]
    # summed to go over every position (padding and holes included), masked only at the end
    rewards = -kl_coefficient * (log_probs - reference_log_probs)
    to_go = torch.flip(torch.cumsum(torch.flip(rewards, dims=[-1]), dim=-1), dims=[-1])
    return torch.where(response_mask, to_go, 0.0)


# --- combined_policy_loss ---------------------------------------------------------------------


def combined_verl(
    policy_loss_per_token,
    kl_per_token,
    entropy_per_token,
    response_mask,
    *,
    kl_coefficient,
    entropy_coefficient,
    mode,
):  # type: ignore[no-untyped-def]
    """verl ``dp_actor``: ``policy_loss = pg_loss - entropy_loss * entropy_coeff`` then
    ``+ kl_loss * kl_loss_coef``, every term by ``agg_loss`` in the same mode."""
    pg_loss = aggregate_verl(policy_loss_per_token, response_mask, mode)
    entropy_loss = aggregate_verl(entropy_per_token, response_mask, mode)
    policy_loss = pg_loss - entropy_loss * entropy_coefficient
    kl_loss = aggregate_verl(kl_per_token, response_mask, mode)
    return policy_loss + kl_loss * kl_coefficient


def combined_trl(
    policy_loss_per_token,
    kl_per_token,
    entropy_per_token,
    response_mask,
    *,
    kl_coefficient,
    entropy_coefficient,
    mode,
):  # type: ignore[no-untyped-def]
    """TRL-style: the per-token loss -(objective - beta kl + c H) first, then aggregated once
    (aggregation is linear, so this equals the sum of the aggregated terms)."""
    per_token = policy_loss_per_token + kl_coefficient * kl_per_token
    per_token = per_token - entropy_coefficient * entropy_per_token
    return aggregate_nanmean(per_token, response_mask, mode)


def combined_entropy_added(
    policy_loss_per_token,
    kl_per_token,
    entropy_per_token,
    response_mask,
    *,
    kl_coefficient,
    entropy_coefficient,
    mode,
):  # type: ignore[no-untyped-def]
    # the entropy bonus added to the loss: minimising it lowers the entropy
    pg_loss = aggregate_verl(policy_loss_per_token, response_mask, mode)
    entropy_loss = aggregate_verl(entropy_per_token, response_mask, mode)
    kl_loss = aggregate_verl(kl_per_token, response_mask, mode)
    return pg_loss + entropy_loss * entropy_coefficient + kl_loss * kl_coefficient


def combined_kl_token_mean(
    policy_loss_per_token,
    kl_per_token,
    entropy_per_token,
    response_mask,
    *,
    kl_coefficient,
    entropy_coefficient,
    mode,
):  # type: ignore[no-untyped-def]
    # older verl: kl_loss = masked_mean(kld, response_mask), the token-mean whatever the mode
    pg_loss = aggregate_verl(policy_loss_per_token, response_mask, mode)
    entropy_loss = aggregate_verl(entropy_per_token, response_mask, mode)
    kl_loss = aggregate_verl(kl_per_token, response_mask, "token-mean")
    return pg_loss - entropy_loss * entropy_coefficient + kl_loss * kl_coefficient


# --- cispo_token_loss -------------------------------------------------------------------------


def cispo_verl(log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high):  # type: ignore[no-untyped-def]
    """verl ``compute_policy_loss_cispo``: clamp the ratio, ``detach`` it, times -A log pi."""
    log_ratio = torch.where(response_mask, log_probs - old_log_probs, 0.0)
    ratio = torch.exp(log_ratio)
    weight = torch.clamp(ratio, min=max(1 - clip_low, 0.0), max=1 + clip_high).detach()
    advantages = torch.where(response_mask, advantages, 0.0)
    return torch.where(response_mask, -weight * advantages * log_probs, 0.0)


def cispo_surrogate_form(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high
):  # type: ignore[no-untyped-def]
    """The weight in log space (min / max of the log-ratio), multiplied in as a constant
    tensor built under ``torch.no_grad``."""
    with torch.no_grad():
        log_ratio = torch.where(response_mask, log_probs - old_log_probs, 0.0)
        upper = math.log1p(clip_high)
        log_weight = torch.clamp(log_ratio, max=upper)
        if clip_low < 1:
            log_weight = torch.clamp(log_weight, min=math.log1p(-clip_low))
        weight = torch.exp(log_weight)
    mask = response_mask.to(log_probs.dtype)
    return -(weight * torch.where(response_mask, advantages, 0.0)) * (log_probs * mask)


def cispo_weight_not_detached(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high
):  # type: ignore[no-untyped-def]
    # the stop-gradient forgotten: the gradient flows through the clipped weight as well
    log_ratio = torch.where(response_mask, log_probs - old_log_probs, 0.0)
    weight = torch.clamp(torch.exp(log_ratio), min=max(1 - clip_low, 0.0), max=1 + clip_high)
    advantages = torch.where(response_mask, advantages, 0.0)
    return torch.where(response_mask, -weight * advantages * log_probs, 0.0)


def cispo_symmetric_clip(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high
):  # type: ignore[no-untyped-def]
    # clamp(ratio, 1 - clip_high, 1 + clip_high): clipped below although CISPO clips only above
    return cispo_verl(
        log_probs, old_log_probs, advantages, response_mask, clip_low=clip_high, clip_high=clip_high
    )


# --- batch_whitened_advantages ----------------------------------------------------------------


def _whiten_batch(values, epsilon, ddof):  # type: ignore[no-untyped-def]
    if bool(values.max() == values.min()):
        return torch.zeros_like(values)
    return (values - values.mean()) / (values.std(correction=ddof) + epsilon)


def batch_whitened_openrlhf(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    """OpenRLHF ``reinforce_baseline``: subtract the group mean (``index_add_`` over the
    shuffled ids; tied groups exactly 0), then whiten with the batch mean and ``torch.std``."""
    inverse, counts = _groups(group_ids)
    groups = counts.numel()
    mean = (_group_sum(rewards, inverse, groups) / counts.to(rewards.dtype))[inverse]
    centred = torch.where(_tied(rewards, inverse, groups), 0.0, rewards - mean)
    return _whiten_batch(centred, epsilon, ddof)


def batch_whitened_group_std(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # GRPO's per-group std where REINFORCE++ uses the batch std
    return grpo_scatter(rewards, group_ids, epsilon=epsilon, ddof=ddof)


def batch_whitened_sample_std_always(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # torch.std's default correction = 1, whatever ddof is asked
    return batch_whitened_openrlhf(rewards, group_ids, epsilon=epsilon, ddof=1)


# --- gspo_sequence_ratio ----------------------------------------------------------------------


def gspo_ratio_verl(log_probs, old_log_probs, response_mask):  # type: ignore[no-untyped-def]
    """verl: masked sum of the log-ratio over ``lengths.clamp(min=1)``, then exp."""
    mean, _ = _sequence_log_ratio(
        torch.where(response_mask, log_probs, 0.0),
        torch.where(response_mask, old_log_probs, 0.0),
        response_mask,
    )
    return torch.exp(mean)


def gspo_ratio_nanmean(log_probs, old_log_probs, response_mask):  # type: ignore[no-untyped-def]
    """NaN padding and ``nanmean``; an empty row's NaN mean replaced by 0 (ratio 1)."""
    log_ratio = torch.where(response_mask, log_probs - old_log_probs, torch.nan)
    mean = torch.nan_to_num(log_ratio.nanmean(dim=-1), nan=0.0)
    return torch.exp(mean)


def gspo_ratio_unnormalised(log_probs, old_log_probs, response_mask):  # type: ignore[no-untyped-def]
    # the plain sequence ratio pi / pi_old: no 1 / |y| power
    log_ratio = torch.where(response_mask, log_probs - old_log_probs, 0.0)
    return torch.exp(log_ratio.sum(dim=-1))


def gspo_ratio_empty_row_nan(log_probs, old_log_probs, response_mask):  # type: ignore[no-untyped-def]
    # sum / length without clamp(min=1): an empty row gives exp(0 / 0) = NaN
    mask = response_mask.to(log_probs.dtype)
    log_ratio = torch.where(response_mask, log_probs - old_log_probs, 0.0)
    return torch.exp(log_ratio.sum(dim=-1) / mask.sum(dim=-1))


class Variant(NamedTuple):
    """A correct implementation: accepted in float64 and float32 with ``options`` of check."""

    spec: str
    implementation: Any
    options: dict[str, Any] = {}


class Mutant(NamedTuple):
    """A real-bug implementation: rejected by a verdict in ``kinds`` in each of ``dtypes``.

    ``slow``: its float64 run is also opt-in (``-m slow``), for mutants whose shrinking costs
    more than a second and whose spec has a cheaper mutant in the default run.
    """

    spec: str
    implementation: Any
    kinds: frozenset[str]
    bug: str
    dtypes: tuple[str, ...] = FLOATS
    options: dict[str, Any] = {}
    slow: bool = False


TORCH_CORRECT: list[Variant] = [
    Variant("ppo_token_loss", ppo_token_loss_verl),
    Variant("ppo_token_loss", ppo_token_loss_verl_clamped, {"assume": {"max_abs_log_ratio": 20.0}}),
    Variant("ppo_token_loss", ppo_token_loss_openrlhf),
    Variant("aggregate_loss", aggregate_verl),
    Variant("aggregate_loss", aggregate_nanmean),
    Variant("grpo_advantages", grpo_scatter),
    Variant("grpo_advantages", grpo_verl_loop),
    Variant("rloo_advantages", rloo_leave_one_out),
    Variant("rloo_advantages", rloo_scaled_deviation),
    Variant("masked_whiten", whiten_verl),
    Variant("masked_whiten", whiten_selected),
    Variant("gspo_loss", gspo_sequence),
    Variant("gspo_loss", gspo_token_verl),
    Variant("truncated_importance_weights", tis_verl),
    Variant("truncated_importance_weights", tis_log_space),
    Variant("masked_importance_weights", mis_verl),
    Variant("kl_penalty_per_token", kl_penalty_verl),
    Variant("kl_reward_to_go", kl_reward_to_go_flip),
    Variant("kl_reward_to_go", kl_reward_to_go_openrlhf),
    Variant("combined_policy_loss", combined_verl),
    Variant("combined_policy_loss", combined_trl),
    Variant("cispo_token_loss", cispo_verl),
    Variant("cispo_token_loss", cispo_surrogate_form),
    Variant("batch_whitened_advantages", batch_whitened_openrlhf),
    Variant("gspo_sequence_ratio", gspo_ratio_verl),
    Variant("gspo_sequence_ratio", gspo_ratio_nanmean),
]

VALUE = frozenset({"wrong value"})
VALUE_OR_NAN = frozenset({"wrong value", "non-finite"})
GRADIENT = frozenset({"wrong gradient"})
# A wrong value may shrink to an input where only the (equally wrong) gradient still differs.
VALUE_OR_GRADIENT = frozenset({"wrong value", "wrong gradient"})

TORCH_MUTANTS: list[Mutant] = [
    Mutant("ppo_token_loss", ppo_token_clip_swapped, VALUE_OR_GRADIENT, "clip-higher swapped"),
    Mutant("ppo_token_loss", ppo_token_mask_after_exp, VALUE_OR_NAN, "mask after exp: 0 * inf"),
    Mutant("ppo_token_loss", ppo_token_straight_through_clip, GRADIENT, "clipped keep a gradient"),
    Mutant(
        "aggregate_loss",
        aggregate_micro_batch_local_counts,
        VALUE,
        "token-mean by local micro-batch token counts",
    ),
    # with the mode drawn (not pinned): most generated batches have two rows of different
    # non-zero lengths, where the two means differ
    Mutant(
        "aggregate_loss",
        aggregate_seq_mean_as_token_mean,
        VALUE,
        "token-mean over the batch instead of per sequence",
    ),
    Mutant(
        "aggregate_loss",
        aggregate_empty_rows_in_seq_mean,
        VALUE_OR_NAN,
        "empty rows counted in the sequence mean",
    ),
    Mutant("grpo_advantages", grpo_sample_std_always, VALUE, "ddof ignored (torch.std default)"),
    Mutant("grpo_advantages", grpo_singleton_raw_reward, VALUE, "group of one keeps its reward"),
    Mutant("grpo_advantages", grpo_no_tie_check, VALUE_OR_NAN, "tied groups not zeroed"),
    Mutant("rloo_advantages", rloo_includes_self, VALUE, "baseline includes the sample"),
    Mutant("rloo_advantages", rloo_divides_by_n, VALUE, "leave-one-out sum over n"),
    Mutant("masked_whiten", whiten_not_remasked, VALUE, "whitening not re-masked"),
    Mutant("masked_whiten", whiten_mask_after_normalisation, VALUE, "mask after normalisation"),
    Mutant(
        "masked_whiten", whiten_unbiased_always, VALUE, "ddof ignored (unbiased=True)", slow=True
    ),
    # epsilon = 1e-8 added to a std of order 1 is below float32's resolution: float64 only
    Mutant(
        "masked_whiten",
        whiten_epsilon_on_std,
        VALUE,
        "epsilon on the std",
        dtypes=("float64",),
        slow=True,
    ),
    Mutant("gspo_loss", gspo_token_mean, VALUE_OR_GRADIENT, "token-mean, not per sequence"),
    Mutant("gspo_loss", gspo_ratio_detached, GRADIENT, "sequence ratio detached"),
    Mutant(
        "gspo_loss", gspo_empty_rows_counted, VALUE_OR_GRADIENT, "empty rows counted", slow=True
    ),
    Mutant("truncated_importance_weights", tis_clamp_min, VALUE, "clamp(min=cap)"),
    Mutant("truncated_importance_weights", tis_inverted_ratio, VALUE, "mu / pi_old"),
    Mutant(
        "truncated_importance_weights",
        tis_mask_after_exp,
        VALUE_OR_NAN,
        "mask after exp: 0 * inf",
        slow=True,
    ),
    Mutant("masked_importance_weights", mis_truncated, VALUE, "truncated, not masked"),
    # the same bug as llm_numpy's mis_at_or_above_cap, which runs by default
    Mutant("masked_importance_weights", mis_at_or_above_cap, VALUE, ">= cap dropped", slow=True),
    Mutant(
        "kl_penalty_per_token",
        kl_penalty_k3_inverted,
        VALUE_OR_GRADIENT,
        "k3 ratio inverted",
        slow=True,  # 2.5 s of shrinking; llm_numpy's kl_penalty_k3_inverted runs by default
    ),
    Mutant("kl_penalty_per_token", kl_penalty_no_grad, GRADIENT, "log-probs detached"),
    Mutant("kl_reward_to_go", kl_reward_not_summed, VALUE, "not summed to go"),
    Mutant(
        "kl_reward_to_go",
        kl_reward_masked_after_sum,
        VALUE,
        "padding summed, masked after",
        slow=True,
    ),
    Mutant("combined_policy_loss", combined_entropy_added, VALUE, "entropy bonus added"),
    Mutant(
        "combined_policy_loss",
        combined_kl_token_mean,
        VALUE,
        "KL term always token-mean",
        slow=True,
    ),
    Mutant("cispo_token_loss", cispo_weight_not_detached, GRADIENT, "weight not detached"),
    Mutant(
        "cispo_token_loss",
        cispo_symmetric_clip,
        VALUE_OR_GRADIENT,
        "clipped below too",
        slow=True,  # llm_numpy's cispo_symmetric_clip runs by default
    ),
    Mutant("batch_whitened_advantages", batch_whitened_group_std, VALUE, "per-group std"),
    Mutant("batch_whitened_advantages", batch_whitened_sample_std_always, VALUE, "ddof ignored"),
    Mutant("gspo_sequence_ratio", gspo_ratio_unnormalised, VALUE, "no 1 / |y| power"),
    Mutant(
        "gspo_sequence_ratio",
        gspo_ratio_empty_row_nan,
        VALUE_OR_NAN,
        "empty row 0 / 0",
        slow=True,
    ),
]
