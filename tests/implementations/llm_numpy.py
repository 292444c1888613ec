"""NumPy implementations of the LLM-RL specs: correct variants written differently, and mutants.

``CORRECT`` lists ``(spec name, implementation)``: each must be accepted. ``MUTANTS`` lists
``(spec name, implementation, failure kinds accepted, the bug)``: each models a bug seen in
public LLM-RL code and must be rejected by a verdict of that kind.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Array = Any


# --- ppo_token_loss ---------------------------------------------------------------------------


def ppo_token_verl_style(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    """verl's form: max of the two negated surrogates, then min with -c A for A < 0, times mask."""
    m = response_mask.astype(np.float64)
    adv = advantages * m
    ratio = np.exp((log_probs - old_log_probs) * m)
    loss = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip_low, 1 + clip_high))
    if dual_clip is not None:
        loss = np.where(adv < 0, np.minimum(loss, -adv * dual_clip), loss)
    return loss * m + 0.0


def ppo_token_loop(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    out = np.zeros(log_probs.shape)
    for b, t in zip(*np.nonzero(response_mask), strict=True):
        rho = float(np.exp(log_probs[b, t] - old_log_probs[b, t]))
        a = float(advantages[b, t])
        if a == 0:
            continue
        objective = min(rho * a, min(max(rho, 1 - clip_low), 1 + clip_high) * a)
        if dual_clip is not None and a < 0:
            objective = max(objective, dual_clip * a)
        out[b, t] = -objective
    return out


def ppo_token_symmetric_clip(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    # clip-higher ignored: clip_low used on both sides
    return ppo_token_verl_style(
        log_probs,
        old_log_probs,
        advantages,
        response_mask,
        clip_low=clip_low,
        clip_high=clip_low,
        dual_clip=dual_clip,
    )


def ppo_token_dual_clip_both_signs(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    # the dual clip applied to positive advantages too
    m = response_mask.astype(np.float64)
    adv = advantages * m
    ratio = np.exp((log_probs - old_log_probs) * m)
    loss = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip_low, 1 + clip_high))
    if dual_clip is not None:
        loss = np.minimum(loss, -adv * dual_clip)
    return loss * m + 0.0


def ppo_token_unmasked(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    # the padding positions are not zeroed
    ones = np.ones_like(response_mask)
    return ppo_token_verl_style(
        log_probs,
        old_log_probs,
        advantages,
        ones,
        clip_low=clip_low,
        clip_high=clip_high,
        dual_clip=dual_clip,
    )


def ppo_token_probability_ratio(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
):  # type: ignore[no-untyped-def]
    # ratio of probabilities: 0/0 for log-probs below -745
    m = response_mask.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.exp(log_probs) / np.exp(old_log_probs)
        adv = advantages * m
        loss = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip_low, 1 + clip_high))
        if dual_clip is not None:
            loss = np.where(adv < 0, np.minimum(loss, -adv * dual_clip), loss)
        return np.where(response_mask, loss, 0.0)


# --- aggregate_loss ---------------------------------------------------------------------------


def aggregate_loop(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    rows = []
    for b in range(per_token.shape[0]):
        selected = [
            float(x) for x, keep in zip(per_token[b], response_mask[b], strict=True) if keep
        ]
        rows.append(selected)
    if mode == "token-mean":
        tokens = [x for row in rows for x in row]
        return sum(tokens) / len(tokens)
    kept = [row for row in rows if row]
    if mode == "seq-mean-token-mean":
        return sum(sum(row) / len(row) for row in kept) / len(kept)
    if mode == "seq-mean-token-sum":
        return sum(sum(row) for row in kept) / len(kept)
    return sum(sum(row) for row in rows) / (per_token.shape[0] * per_token.shape[1])


def aggregate_verl_style(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    m = response_mask.astype(np.float64)
    sums = (per_token * m).sum(axis=-1)
    counts = m.sum(axis=-1)
    seq_mask = (counts > 0).astype(np.float64)
    if mode == "token-mean":
        return (per_token * m).sum() / m.sum()
    if mode == "seq-mean-token-mean":
        return (sums / (counts + 1e-300) * seq_mask).sum() / seq_mask.sum()
    if mode == "seq-mean-token-sum":
        return (sums * seq_mask).sum() / seq_mask.sum()
    return sums.sum() / (m.shape[0] * m.shape[1])


def aggregate_counts_empty_rows(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    # seq means divide by B, empty rows included (older verl: torch.mean over all rows)
    m = response_mask.astype(np.float64)
    counts = m.sum(axis=-1)
    sums = (per_token * m).sum(axis=-1)
    if mode == "seq-mean-token-mean":
        return np.mean(np.where(counts > 0, sums / np.maximum(counts, 1), 0.0))
    if mode == "seq-mean-token-sum":
        return np.mean(sums)
    return aggregate_verl_style(per_token, response_mask, mode)


def aggregate_norm_without_batch(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    # seq-mean-token-sum-norm divided by T only (verl's agg_loss before loss_scale_factor)
    if mode == "seq-mean-token-sum-norm":
        m = response_mask.astype(np.float64)
        return (per_token * m).sum() / m.shape[-1]
    return aggregate_verl_style(per_token, response_mask, mode)


def aggregate_token_mean_of_rows(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    # "token-mean" implemented as the mean of per-row means (the seq-mean-token-mean weights)
    if mode == "token-mean":
        return aggregate_verl_style(per_token, response_mask, "seq-mean-token-mean")
    return aggregate_verl_style(per_token, response_mask, mode)


def aggregate_mask_ignored(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    # padding garbage included: the loss averaged over every entry
    return aggregate_verl_style(per_token, np.ones_like(response_mask), mode)


# --- grpo_advantages --------------------------------------------------------------------------


def grpo_dict_loop(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids.tolist()):
        groups.setdefault(g, []).append(i)
    out = np.zeros(rewards.shape)
    for members in groups.values():
        values = rewards[members]
        if values.max() == values.min():
            continue
        out[members] = (values - values.mean()) / (values.std(ddof=ddof) + epsilon)
    return out


def grpo_population_std(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # ddof ignored: np.std's population std even when the sample std (torch.std) is asked
    return grpo_dict_loop(rewards, group_ids, epsilon=epsilon, ddof=0)


def grpo_contiguous_groups(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # TRL-style reshape(-1, G): assumes contiguous groups of the size of the first
    size = int((group_ids == group_ids[0]).sum())
    if rewards.size % size:
        size = 1
    grid = rewards.reshape(-1, size)
    out = np.zeros(grid.shape)
    for r in range(grid.shape[0]):
        row = grid[r]
        if row.max() != row.min():
            out[r] = (row - row.mean()) / (row.std(ddof=ddof) + epsilon)
    return out.reshape(-1)


def grpo_no_tie_check(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # (r - mean) / (std + eps) for tied groups too: 0/0 = NaN when epsilon = 0
    out = np.zeros(rewards.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        for g in np.unique(group_ids):
            members = group_ids == g
            values = rewards[members]
            std = values.std(ddof=ddof) if values.size > ddof else np.nan
            out[members] = (values - values.mean()) / (std + epsilon)
    return out


# --- rloo_advantages --------------------------------------------------------------------------


def rloo_leave_one_out_sum(rewards, group_ids):  # type: ignore[no-untyped-def]
    out = np.zeros(rewards.shape)
    for g in np.unique(group_ids):
        members = group_ids == g
        values = rewards[members]
        out[members] = values - (values.sum() - values) / (values.size - 1)
    return out


def rloo_includes_self(rewards, group_ids):  # type: ignore[no-untyped-def]
    # the baseline is the group mean including the sample (Dr. GRPO, not leave-one-out)
    out = np.zeros(rewards.shape)
    for g in np.unique(group_ids):
        members = group_ids == g
        out[members] = rewards[members] - rewards[members].mean()
    return out


def rloo_batch_baseline(rewards, group_ids):  # type: ignore[no-untyped-def]
    # leave-one-out over the whole batch, ignoring the groups
    return rewards - (rewards.sum() - rewards) / max(rewards.size - 1, 1)


# --- masked_whiten ----------------------------------------------------------------------------


def whiten_two_pass(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    selected = values[response_mask]
    mean = selected.mean()
    if selected.max() == selected.min():
        out = np.full(values.shape, 0.0 if shift_mean else float(selected[0]))
        return np.where(response_mask, out, 0.0)
    var = ((selected - mean) ** 2).sum() / (selected.size - ddof)
    out = (values - mean) / np.sqrt(var + epsilon)
    if not shift_mean:
        out = out + mean
    return np.where(response_mask, out, 0.0)


def whiten_not_remasked(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    # verl's masked_whiten without the caller's "* response_mask": padding gets (x - mu) / sigma
    selected = values[response_mask]
    mean = selected.mean()
    if selected.max() == selected.min():
        return whiten_two_pass(
            values, response_mask, epsilon=epsilon, ddof=ddof, shift_mean=shift_mean
        )
    var = ((selected - mean) ** 2).sum() / (selected.size - ddof)
    out = (values - mean) / np.sqrt(var + epsilon)
    return out if shift_mean else out + mean


def whiten_padding_in_statistics(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    # mean and variance over every entry, padding included
    return (
        whiten_two_pass(
            values, np.ones_like(response_mask), epsilon=epsilon, ddof=ddof, shift_mean=shift_mean
        )
        * response_mask
    )


def whiten_epsilon_on_std(values, response_mask, *, epsilon, ddof, shift_mean):  # type: ignore[no-untyped-def]
    # epsilon added to the std instead of inside the square root
    selected = values[response_mask]
    if selected.max() == selected.min():
        return whiten_two_pass(
            values, response_mask, epsilon=epsilon, ddof=ddof, shift_mean=shift_mean
        )
    mean = selected.mean()
    std = np.sqrt(((selected - mean) ** 2).sum() / (selected.size - ddof))
    out = (values - mean) / (std + epsilon)
    if not shift_mean:
        out = out + mean
    return np.where(response_mask, out, 0.0)


# --- gspo_loss --------------------------------------------------------------------------------


def gspo_token_level(log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high):  # type: ignore[no-untyped-def]
    """verl's GSPO-token: the sequence ratio broadcast to tokens, then seq-mean-token-mean."""
    m = response_mask.astype(np.float64)
    lengths = m.sum(axis=-1)
    seq_log_ratio = ((log_probs - old_log_probs) * m).sum(axis=-1) / np.maximum(lengths, 1)
    ratio = np.exp(seq_log_ratio)[:, None] * np.ones_like(m)
    adv = advantages[:, None] * np.ones_like(m)
    losses = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip_low, 1 + clip_high))
    seq = (losses * m).sum(axis=-1) / np.maximum(lengths, 1)
    keep = lengths > 0
    return seq[keep].mean()


def gspo_unnormalised_ratio(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high
):  # type: ignore[no-untyped-def]
    # the plain sequence ratio prod rho_t (no 1/|y| power)
    m = response_mask.astype(np.float64)
    lengths = m.sum(axis=-1)
    ratio = np.exp(np.minimum(((log_probs - old_log_probs) * m).sum(axis=-1), 700.0))
    objective = np.minimum(
        ratio * advantages, np.clip(ratio, 1 - clip_low, 1 + clip_high) * advantages
    )
    return -objective[lengths > 0].mean()


def gspo_mean_over_padded_length(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high
):  # type: ignore[no-untyped-def]
    # the mean log-ratio divided by T instead of the response length
    m = response_mask.astype(np.float64)
    lengths = m.sum(axis=-1)
    ratio = np.exp(((log_probs - old_log_probs) * m).sum(axis=-1) / m.shape[-1])
    objective = np.minimum(
        ratio * advantages, np.clip(ratio, 1 - clip_low, 1 + clip_high) * advantages
    )
    return -objective[lengths > 0].mean()


def gspo_counts_empty_rows(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high
):  # type: ignore[no-untyped-def]
    # empty rows (ratio 1) enter the mean with their advantage
    m = response_mask.astype(np.float64)
    lengths = m.sum(axis=-1)
    ratio = np.exp(((log_probs - old_log_probs) * m).sum(axis=-1) / np.maximum(lengths, 1))
    objective = np.minimum(
        ratio * advantages, np.clip(ratio, 1 - clip_low, 1 + clip_high) * advantages
    )
    return -objective.mean()


# --- truncated_importance_weights -------------------------------------------------------------


def tis_weights(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    return np.where(response_mask, np.minimum(np.exp(old_log_probs - rollout_log_probs), cap), 0.0)


def tis_inverted_ratio(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    # mu / pi_old instead of pi_old / mu
    return np.where(response_mask, np.minimum(np.exp(rollout_log_probs - old_log_probs), cap), 0.0)


def tis_clamp_min(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    # torch.clamp(ratio, min=cap) instead of max=cap
    return np.where(response_mask, np.maximum(np.exp(old_log_probs - rollout_log_probs), cap), 0.0)


# --- masked_importance_weights ----------------------------------------------------------------


def mis_weights(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    """The ratio where it is at most the cap; a loop-free NumPy form."""
    log_ratio = np.where(response_mask, old_log_probs - rollout_log_probs, 0.0)
    ratio = np.exp(log_ratio)
    return np.where(response_mask & ~(ratio > cap), ratio, 0.0)


def mis_at_or_above_cap(old_log_probs, rollout_log_probs, response_mask, *, cap):  # type: ignore[no-untyped-def]
    # tokens dropped where ratio >= cap instead of ratio > cap: a ratio equal to the cap is lost
    ratio = np.exp(np.where(response_mask, old_log_probs - rollout_log_probs, 0.0))
    return np.where(response_mask & (ratio < cap), ratio, 0.0)


# --- kl_penalty_per_token ---------------------------------------------------------------------


def kl_penalty_loop(log_probs, reference_log_probs, response_mask, *, estimator):  # type: ignore[no-untyped-def]
    """Schulman's estimators token by token with math (log r = log pi_ref - log pi)."""
    out = np.zeros(log_probs.shape)
    for b, t in zip(*np.nonzero(response_mask), strict=True):
        log_r = float(reference_log_probs[b, t]) - float(log_probs[b, t])
        if estimator == "k1":
            out[b, t] = -log_r
        elif estimator == "k2":
            out[b, t] = 0.5 * log_r * log_r
        else:
            out[b, t] = math.expm1(log_r) - log_r
    return out


def kl_penalty_k3_inverted(log_probs, reference_log_probs, response_mask, *, estimator):  # type: ignore[no-untyped-def]
    # k3 with the ratio inverted: log r = log pi - log pi_ref (an estimate of KL(pi_ref || pi))
    if estimator != "k3":
        return kl_penalty_loop(log_probs, reference_log_probs, response_mask, estimator=estimator)
    log_r = np.where(response_mask, log_probs - reference_log_probs, 0.0)
    return np.where(response_mask, np.expm1(log_r) - log_r, 0.0)


# --- kl_reward_to_go --------------------------------------------------------------------------


def kl_reward_to_go_loop(log_probs, reference_log_probs, response_mask, *, kl_coefficient):  # type: ignore[no-untyped-def]
    """A running sum from the last token back, skipping masked positions."""
    out = np.zeros(log_probs.shape)
    for b in range(log_probs.shape[0]):
        running = 0.0
        for t in reversed(range(log_probs.shape[1])):
            if response_mask[b, t]:
                running += -kl_coefficient * (
                    float(log_probs[b, t]) - float(reference_log_probs[b, t])
                )
                out[b, t] = running
    return out


def kl_reward_summed_from_start(log_probs, reference_log_probs, response_mask, *, kl_coefficient):  # type: ignore[no-untyped-def]
    # cumsum from the first token (the KL accumulated so far), not to the end
    rewards = np.where(response_mask, -kl_coefficient * (log_probs - reference_log_probs), 0.0)
    return np.where(response_mask, np.cumsum(rewards, axis=1), 0.0)


# --- combined_policy_loss ---------------------------------------------------------------------


def _aggregate(per_token, response_mask, mode):  # type: ignore[no-untyped-def]
    return aggregate_verl_style(np.where(response_mask, per_token, 0.0), response_mask, mode)


def combined_verl_style(
    policy_loss_per_token,
    kl_per_token,
    entropy_per_token,
    response_mask,
    *,
    kl_coefficient,
    entropy_coefficient,
    mode,
):  # type: ignore[no-untyped-def]
    """verl's dp_actor: pg_loss - entropy_coeff * entropy + kl_loss * kl_loss_coef."""
    pg_loss = _aggregate(policy_loss_per_token, response_mask, mode)
    entropy = _aggregate(entropy_per_token, response_mask, mode)
    kl_loss = _aggregate(kl_per_token, response_mask, mode)
    return pg_loss - entropy_coefficient * entropy + kl_loss * kl_coefficient


def combined_kl_subtracted(
    policy_loss_per_token,
    kl_per_token,
    entropy_per_token,
    response_mask,
    *,
    kl_coefficient,
    entropy_coefficient,
    mode,
):  # type: ignore[no-untyped-def]
    # the KL penalty subtracted from the loss (the objective's sign): pushes pi away from pi_ref
    pg_loss = _aggregate(policy_loss_per_token, response_mask, mode)
    entropy = _aggregate(entropy_per_token, response_mask, mode)
    kl_loss = _aggregate(kl_per_token, response_mask, mode)
    return pg_loss - entropy_coefficient * entropy - kl_loss * kl_coefficient


# --- cispo_token_loss -------------------------------------------------------------------------


def cispo_loop(log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high):  # type: ignore[no-untyped-def]
    out = np.zeros(log_probs.shape)
    for b, t in zip(*np.nonzero(response_mask), strict=True):
        rho = math.exp(float(log_probs[b, t]) - float(old_log_probs[b, t]))
        weight = min(max(rho, 1.0 - clip_low), 1.0 + clip_high)
        out[b, t] = -weight * float(advantages[b, t]) * float(log_probs[b, t])
    return out


def cispo_symmetric_clip(
    log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high
):  # type: ignore[no-untyped-def]
    # the weight clipped on both sides by clip_high (PPO's symmetric range), although CISPO
    # clips below only by clip_low (MiniMax-M1: effectively not at all)
    m = response_mask.astype(np.float64)
    ratio = np.exp((log_probs - old_log_probs) * m)
    weight = np.clip(ratio, 1 - clip_high, 1 + clip_high)
    return -weight * advantages * log_probs * m + 0.0


# --- batch_whitened_advantages ----------------------------------------------------------------


def _whiten_batch(values, epsilon, ddof):  # type: ignore[no-untyped-def]
    if values.max() == values.min():
        return np.zeros(values.shape)
    return (values - values.mean()) / (values.std(ddof=ddof) + epsilon)


def batch_whitened_dict_loop(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    """Group means from a dict of members, then the batch statistics (OpenRLHF's order)."""
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids.tolist()):
        groups.setdefault(g, []).append(i)
    centred = np.zeros(rewards.shape)
    for members in groups.values():
        values = rewards[members]
        if values.max() != values.min():
            centred[members] = values - values.mean()
    return _whiten_batch(centred, epsilon, ddof)


def batch_whitened_no_baseline(rewards, group_ids, *, epsilon, ddof):  # type: ignore[no-untyped-def]
    # plain REINFORCE++ whitening: the group mean (the baseline) never subtracted
    return _whiten_batch(rewards, epsilon, ddof)


# --- gspo_sequence_ratio ----------------------------------------------------------------------


def gspo_ratio_loop(log_probs, old_log_probs, response_mask):  # type: ignore[no-untyped-def]
    out = np.ones(log_probs.shape[0])
    for b in range(log_probs.shape[0]):
        terms = [
            float(x) - float(y)
            for x, y, keep in zip(log_probs[b], old_log_probs[b], response_mask[b], strict=True)
            if keep
        ]
        if terms:
            out[b] = math.exp(math.fsum(terms) / len(terms))
    return out


def gspo_ratio_arithmetic_mean(log_probs, old_log_probs, response_mask):  # type: ignore[no-untyped-def]
    # the arithmetic mean of the token ratios instead of the geometric mean
    m = response_mask.astype(np.float64)
    ratios = np.exp((log_probs - old_log_probs) * m) * m
    return np.where(m.sum(-1) > 0, ratios.sum(-1) / np.maximum(m.sum(-1), 1), 1.0)


CORRECT = [
    ("ppo_token_loss", ppo_token_verl_style),
    ("ppo_token_loss", ppo_token_loop),
    ("aggregate_loss", aggregate_loop),
    ("aggregate_loss", aggregate_verl_style),
    ("grpo_advantages", grpo_dict_loop),
    ("rloo_advantages", rloo_leave_one_out_sum),
    ("masked_whiten", whiten_two_pass),
    ("gspo_loss", gspo_token_level),
    ("truncated_importance_weights", tis_weights),
    ("masked_importance_weights", mis_weights),
    ("kl_penalty_per_token", kl_penalty_loop),
    ("kl_reward_to_go", kl_reward_to_go_loop),
    ("combined_policy_loss", combined_verl_style),
    ("cispo_token_loss", cispo_loop),
    ("batch_whitened_advantages", batch_whitened_dict_loop),
    ("gspo_sequence_ratio", gspo_ratio_loop),
]

MUTANTS = [
    ("ppo_token_loss", ppo_token_symmetric_clip, {"wrong value"}, "clip_high ignored"),
    ("ppo_token_loss", ppo_token_dual_clip_both_signs, {"wrong value"}, "dual clip on A > 0"),
    ("ppo_token_loss", ppo_token_unmasked, {"wrong value", "non-finite"}, "padding not zeroed"),
    (
        "ppo_token_loss",
        ppo_token_probability_ratio,
        {"non-finite", "wrong value"},
        "ratio of probabilities underflows",
    ),
    ("aggregate_loss", aggregate_counts_empty_rows, {"wrong value"}, "empty rows in seq-mean"),
    ("aggregate_loss", aggregate_norm_without_batch, {"wrong value"}, "-norm without B"),
    ("aggregate_loss", aggregate_token_mean_of_rows, {"wrong value"}, "token-mean per row"),
    ("aggregate_loss", aggregate_mask_ignored, {"wrong value"}, "padding in the mean"),
    ("grpo_advantages", grpo_population_std, {"wrong value"}, "ddof ignored"),
    ("grpo_advantages", grpo_contiguous_groups, {"wrong value"}, "contiguous groups assumed"),
    ("grpo_advantages", grpo_no_tie_check, {"non-finite", "wrong value"}, "tied groups 0/0"),
    ("rloo_advantages", rloo_includes_self, {"wrong value"}, "baseline includes the sample"),
    ("rloo_advantages", rloo_batch_baseline, {"wrong value"}, "groups ignored"),
    ("masked_whiten", whiten_not_remasked, {"wrong value"}, "not re-masked"),
    ("masked_whiten", whiten_padding_in_statistics, {"wrong value"}, "padding in statistics"),
    ("masked_whiten", whiten_epsilon_on_std, {"wrong value"}, "epsilon on the std"),
    ("gspo_loss", gspo_unnormalised_ratio, {"wrong value"}, "ratio not length-normalised"),
    ("gspo_loss", gspo_mean_over_padded_length, {"wrong value"}, "mean over T"),
    ("gspo_loss", gspo_counts_empty_rows, {"wrong value"}, "empty rows counted"),
    ("truncated_importance_weights", tis_inverted_ratio, {"wrong value"}, "mu / pi_old"),
    ("truncated_importance_weights", tis_clamp_min, {"wrong value"}, "clamp(min=cap)"),
    ("masked_importance_weights", mis_at_or_above_cap, {"wrong value"}, ">= cap dropped"),
    ("kl_penalty_per_token", kl_penalty_k3_inverted, {"wrong value"}, "k3 ratio inverted"),
    ("kl_reward_to_go", kl_reward_summed_from_start, {"wrong value"}, "summed from the start"),
    ("combined_policy_loss", combined_kl_subtracted, {"wrong value"}, "KL term subtracted"),
    ("cispo_token_loss", cispo_symmetric_clip, {"wrong value"}, "clipped on both sides"),
    ("batch_whitened_advantages", batch_whitened_no_baseline, {"wrong value"}, "no group mean"),
    ("gspo_sequence_ratio", gspo_ratio_arithmetic_mean, {"wrong value"}, "arithmetic mean"),
]
