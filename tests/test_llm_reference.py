"""Tests of rlmath.llm_reference against independent definitions.

Every function is checked against a second route to the same number: an explicit Python loop
over rows and tokens with ``math`` (the case analysis of the paper written as ``if``s), the
``statistics`` module for means and standard deviations, central finite differences (or
PyTorch autograd, when installed) for gradients, and reductions between functions (GSPO with
equal token ratios is PPO aggregated by seq-mean-token-mean; CISPO's gradient is PPO's inside
the clip range; TIS equals MIS below the cap). Hand-computed examples say where their numbers
come from.
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from implementations import llm_numpy

from rlmath import llm_reference as llm
from rlmath import reference
from rlmath.conformance import check
from rlmath.llm_specs import LLM_SPECS
from rlmath.tolerances import EPS, exact_rtol

RTOL = exact_rtol(n_terms=64)

# --------------------------------------------------------------------------------------------
# Strategies: padded [B, T] batches with empty rows, one-token rows and full rows
# --------------------------------------------------------------------------------------------


@st.composite
def token_batches(draw: Any, *, max_rows: int = 5, max_steps: int = 6) -> dict[str, Any]:
    """log-probs, old log-probs, advantages and a right-padded mask (some rows empty)."""
    rows = draw(st.integers(1, max_rows))
    steps = draw(st.integers(1, max_steps))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, steps + 1, size=rows)
    if lengths.sum() == 0:
        lengths[rng.integers(rows)] = rng.integers(1, steps + 1)
    mask = np.arange(steps)[np.newaxis, :] < lengths[:, np.newaxis]
    old = rng.uniform(-8.0, 0.0, size=(rows, steps))
    scale = draw(st.sampled_from([0.05, 0.3, 1.5]))
    new = old + rng.normal(0.0, scale, size=(rows, steps))
    advantages = rng.choice([-2.0, -0.5, 0.0, 0.7, 3.0], size=(rows, steps))
    return {"log_probs": new, "old_log_probs": old, "advantages": advantages, "mask": mask}


def _pad_with_nan(array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Padding positions hold NaN: every function must ignore them."""
    return np.where(mask, array, np.nan)


# --------------------------------------------------------------------------------------------
# Per-token PPO
# --------------------------------------------------------------------------------------------


def _ppo_token_loop(
    new: np.ndarray,
    old: np.ndarray,
    adv: np.ndarray,
    mask: np.ndarray,
    low: float,
    high: float,
    dual: float | None,
) -> np.ndarray:
    """The case analysis of PPO / DAPO / dual-clip written as Python ifs, token by token."""
    out = np.zeros(new.shape)
    for b in range(new.shape[0]):
        for t in range(new.shape[1]):
            if not mask[b, t]:
                continue
            rho = math.exp(new[b, t] - old[b, t])
            a = adv[b, t]
            clipped = min(max(rho, 1.0 - low), 1.0 + high)
            objective = min(rho * a, clipped * a)
            if dual is not None and a < 0:
                objective = max(objective, dual * a)
            out[b, t] = -objective
    return out


@given(
    token_batches(),
    st.sampled_from([(0.2, 0.2), (0.2, 0.28), (0.1, 0.5)]),
    st.sampled_from([None, 3.0, 1.5]),
)
def test_ppo_token_loss_matches_loop(
    batch: dict[str, Any], clip: tuple[float, float], dual: float | None
) -> None:
    low, high = clip
    mask = batch["mask"]
    expected = _ppo_token_loop(
        batch["log_probs"], batch["old_log_probs"], batch["advantages"], mask, low, high, dual
    )
    actual = llm.ppo_token_loss(
        _pad_with_nan(batch["log_probs"], mask),
        batch["old_log_probs"],
        _pad_with_nan(batch["advantages"], mask),
        mask.astype(np.int64),
        clip_low=low,
        clip_high=high,
        dual_clip=dual,
    )
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0.0)
    assert (actual[~mask] == 0).all()


def test_ppo_token_loss_symmetric_clip_matches_classic_reference() -> None:
    """Reduction: with eps_low = eps_high and a full mask, the token mean is reference PPO."""
    rng = np.random.default_rng(0)
    old = rng.uniform(-3, 0, (4, 5))
    new = old + rng.normal(0, 0.5, (4, 5))
    adv = rng.normal(size=(4, 5))
    mask = np.ones((4, 5), dtype=bool)
    per_token = llm.ppo_token_loss(new, old, adv, mask, clip_low=0.2, clip_high=0.2)
    expected = reference.ppo_clipped_surrogate_loss(new, old, adv, clip_epsilon=0.2)
    assert llm.aggregate_loss(per_token, mask, "token-mean") == pytest.approx(expected, rel=RTOL)
    dual = llm.ppo_token_loss(new, old, adv, mask, clip_low=0.2, clip_high=0.2, dual_clip=3.0)
    expected_dual = reference.dual_clip_ppo_loss(new, old, adv, clip_epsilon=0.2, dual_clip=3.0)
    assert llm.aggregate_loss(dual, mask, "token-mean") == pytest.approx(expected_dual, rel=RTOL)


def test_ppo_token_loss_clip_higher_differs_only_above() -> None:
    """DAPO's clip-higher changes only tokens with A > 0 and ratio in (1 + 0.2, ...)."""
    new = np.log([[1.1, 1.25, 1.4, 0.7]])
    adv = np.array([[1.0, 1.0, 1.0, -1.0]])
    mask = np.ones((1, 4), dtype=bool)
    symmetric = llm.ppo_token_loss(new, np.zeros((1, 4)), adv, mask, clip_low=0.2, clip_high=0.2)
    higher = llm.ppo_token_loss(new, np.zeros((1, 4)), adv, mask, clip_low=0.2, clip_high=0.28)
    # by hand: rho = 1.1 (both -1.1); 1.25 (-1.2 vs -1.25); 1.4 (-1.2 vs -1.28); 0.7, A<0: 0.8
    np.testing.assert_allclose(symmetric, [[-1.1, -1.2, -1.2, 0.8]], rtol=RTOL)
    np.testing.assert_allclose(higher, [[-1.1, -1.25, -1.28, 0.8]], rtol=RTOL)


def test_ppo_token_loss_overflowing_ratio() -> None:
    """A log-ratio of 1000 overflows the ratio: A > 0 is clipped, A = 0 gives 0 (no NaN),
    A < 0 gives +inf without a dual clip and -c A with it."""
    new = np.array([[1000.0, 1000.0, 1000.0]])
    adv = np.array([[1.0, 0.0, -1.0]])
    mask = np.ones((1, 3), dtype=bool)
    plain = llm.ppo_token_loss(new, np.zeros((1, 3)), adv, mask, clip_low=0.2, clip_high=0.2)
    assert plain[0, 0] == pytest.approx(-1.2) and plain[0, 1] == 0.0 and plain[0, 2] == np.inf
    dual = llm.ppo_token_loss(
        new, np.zeros((1, 3)), adv, mask, clip_low=0.2, clip_high=0.2, dual_clip=3.0
    )
    assert dual[0, 2] == 3.0


def _kink_free(batch: dict[str, Any], kinks: list[float], margin: float = 1e-4) -> bool:
    ratio = np.exp(batch["log_probs"] - batch["old_log_probs"])[batch["mask"]]
    return all(np.abs(ratio - k).min(initial=np.inf) > margin for k in kinks)


@given(token_batches(), st.sampled_from([None, 3.0]))
def test_ppo_token_loss_gradient_matches_central_differences(
    batch: dict[str, Any], dual: float | None
) -> None:
    low, high = 0.2, 0.28
    kinks = [1.0 - low, 1.0 + high] + ([] if dual is None else [dual])
    if not _kink_free(batch, kinks):
        return
    new, old, adv, mask = (batch[k] for k in ("log_probs", "old_log_probs", "advantages", "mask"))
    gradient = llm.ppo_token_loss_gradient(
        new, old, adv, mask, clip_low=low, clip_high=high, dual_clip=dual
    )
    h = 1e-6  # ratio moves by about 1e-6 * rho: stays on one side of every kink (margin 1e-4)
    up = llm.ppo_token_loss(new + h, old, adv, mask, clip_low=low, clip_high=high, dual_clip=dual)
    down = llm.ppo_token_loss(new - h, old, adv, mask, clip_low=low, clip_high=high, dual_clip=dual)
    central = (up - down) / (2 * h)  # each entry depends only on its own log-prob
    # central-difference error: h^2 |f'''| ~ 1e-12 rho |A| plus rounding eps |f| / h ~ 1e-10
    np.testing.assert_allclose(gradient, central, rtol=1e-6, atol=1e-8 * (1 + np.abs(adv).max()))


def test_ppo_token_loss_gradient_hand_values() -> None:
    """By hand, eps = (0.2, 0.28), c = 3, A = -1: rho = 0.9 inside (gradient -rho A = 0.9);
    rho = 2 between 1 + eps and c (PPO keeps the unclipped rho A for A < 0: gradient 2);
    rho = 10 > c (dual-clipped to the constant c A: 0); rho = 0.5 < 1 - eps (clipped: 0)."""
    new = np.log([[0.9, 2.0, 10.0, 0.5]])
    adv = -np.ones((1, 4))
    mask = np.ones((1, 4), dtype=bool)
    gradient = llm.ppo_token_loss_gradient(
        new, np.zeros((1, 4)), adv, mask, clip_low=0.2, clip_high=0.28, dual_clip=3.0
    )
    np.testing.assert_allclose(gradient, [[0.9, 2.0, 0.0, 0.0]], rtol=RTOL)
    plain = llm.ppo_token_loss_gradient(
        new, np.zeros((1, 4)), adv, mask, clip_low=0.2, clip_high=0.28
    )
    np.testing.assert_allclose(plain, [[0.9, 2.0, 10.0, 0.0]], rtol=RTOL)


def test_ppo_token_loss_gradient_with_torch_autograd() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    old = rng.uniform(-4, 0, (6, 7))
    new = old + rng.normal(0, 0.4, (6, 7))
    adv = rng.choice([-2.0, -0.3, 0.0, 1.0], size=(6, 7))
    mask = rng.random((6, 7)) < 0.7
    low, high, dual = 0.2, 0.28, 3.0
    # an independent torch implementation in verl's loss form: max of the two negated terms
    new_t = torch.tensor(new, dtype=torch.float64, requires_grad=True)
    ratio = torch.exp(new_t - torch.tensor(old, dtype=torch.float64))
    a = torch.tensor(adv, dtype=torch.float64)
    losses = torch.maximum(-a * ratio, -a * torch.clamp(ratio, 1 - low, 1 + high))
    losses = torch.where(a < 0, torch.minimum(losses, -a * dual), losses)
    (losses * torch.tensor(mask, dtype=torch.float64)).sum().backward()
    analytic = llm.ppo_token_loss_gradient(
        new, old, adv, mask, clip_low=low, clip_high=high, dual_clip=dual
    )
    np.testing.assert_allclose(analytic, new_t.grad.numpy(), rtol=RTOL, atol=1e-300)
    np.testing.assert_allclose(
        llm.ppo_token_loss(new, old, adv, mask, clip_low=low, clip_high=high, dual_clip=dual),
        (losses.detach().numpy() * mask),
        rtol=RTOL,
        atol=1e-300,
    )


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def _aggregate_loop(
    loss: np.ndarray, mask: np.ndarray, mode: str, normaliser: float | None = None
) -> float:
    sums, counts = [], []
    for b in range(loss.shape[0]):
        total, count = 0.0, 0
        for t in range(loss.shape[1]):
            if mask[b, t]:
                total += float(loss[b, t])
                count += 1
        sums.append(total)
        counts.append(count)
    if mode == "token-mean":
        return math.fsum(sums) / sum(counts)
    kept = [(s, c) for s, c in zip(sums, counts, strict=True) if c > 0]
    if mode == "seq-mean-token-mean":
        return math.fsum(s / c for s, c in kept) / len(kept)
    if mode == "seq-mean-token-sum":
        return math.fsum(s for s, _ in kept) / len(kept)
    constant = loss.shape[1] if normaliser is None else normaliser
    return math.fsum(sums) / (loss.shape[0] * constant)


@given(token_batches(max_rows=6, max_steps=8), st.sampled_from(llm.AGGREGATION_MODES))
def test_aggregate_loss_matches_loop(batch: dict[str, Any], mode: str) -> None:
    mask = batch["mask"]
    loss = batch["log_probs"]
    expected = _aggregate_loop(loss, mask, mode)
    actual = llm.aggregate_loss(_pad_with_nan(loss, mask), mask, mode)
    assert actual == pytest.approx(expected, rel=RTOL, abs=1e-300)


def test_aggregate_loss_normaliser_and_empty_rows() -> None:
    loss = np.array([[1.0, 3.0, 0.0], [5.0, 0.0, 0.0], [8.0, 8.0, 8.0]])
    mask = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    # by hand: sums 4, 5, 0; counts 2, 1, 0 (row 2 empty: not counted in the seq means)
    assert llm.aggregate_loss(loss, mask, "token-mean") == 3.0
    assert llm.aggregate_loss(loss, mask, "seq-mean-token-mean") == 3.5
    assert llm.aggregate_loss(loss, mask, "seq-mean-token-sum") == 4.5
    # Dr. GRPO: constant denominator B * L = 3 * 10 (empty rows count in B); default L = T = 3
    assert llm.aggregate_loss(loss, mask, "seq-mean-token-sum-norm", normaliser=10.0) == 0.3
    assert llm.aggregate_loss(loss, mask, "seq-mean-token-sum-norm") == 1.0


def test_token_mean_weights_tokens_and_seq_mean_weights_sequences() -> None:
    """Independence of the modes: a long response dominates token-mean, not seq-mean."""
    loss = np.array([[1.0] * 10, [0.0] + [0.0] * 9])
    mask = np.array([[1] * 10, [1] + [0] * 9])
    assert llm.aggregate_loss(loss, mask, "token-mean") == pytest.approx(10 / 11)
    assert llm.aggregate_loss(loss, mask, "seq-mean-token-mean") == pytest.approx(0.5)


@given(token_batches(max_rows=8, max_steps=7), st.integers(0, 2**32 - 1))
def test_accumulated_token_mean_equals_full_batch_for_any_split(
    batch: dict[str, Any], seed: int
) -> None:
    mask, loss = batch["mask"], batch["log_probs"]
    rng = np.random.default_rng(seed)
    rows = mask.shape[0]
    cuts = (
        sorted(rng.choice(np.arange(1, rows), size=rng.integers(0, rows), replace=False))
        if rows > 1
        else []
    )
    bounds = [0, *cuts, rows]
    micro = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        # each micro-batch may be padded to a different length, as a collator would
        extra = int(rng.integers(0, 3))
        pad = np.zeros((stop - start, extra))
        micro.append(
            (
                np.hstack([loss[start:stop], pad + np.nan]),
                np.hstack([mask[start:stop], pad.astype(bool)]),
            )
        )
    full = llm.aggregate_loss(loss, mask, "token-mean")
    assert llm.accumulated_token_mean(micro) == pytest.approx(full, rel=RTOL, abs=1e-300)


def test_mean_of_micro_batch_means_is_wrong_unless_counts_equal() -> None:
    micro = [
        (np.array([[4.0, 0.0]]), np.array([[1, 0]])),
        (np.array([[1.0, 1.0]]), np.array([[1, 1]])),
    ]
    correct = llm.accumulated_token_mean(micro)
    naive = np.mean([llm.aggregate_loss(x, m, "token-mean") for x, m in micro])
    assert correct == 2.0  # (4 + 1 + 1) / 3
    assert naive == 2.5  # (4/1 + 2/2) / 2
    equal = [
        (np.array([[4.0, 0.0]]), np.array([[1, 1]])),
        (np.array([[1.0, 1.0]]), np.array([[1, 1]])),
    ]
    naive_equal = np.mean([llm.aggregate_loss(x, m, "token-mean") for x, m in equal])
    assert llm.accumulated_token_mean(equal) == pytest.approx(naive_equal)


def test_accumulated_token_mean_allows_empty_micro_batches() -> None:
    micro = [(np.array([[7.0]]), np.array([[0]])), (np.array([[2.0, 4.0]]), np.array([[1, 1]]))]
    assert llm.accumulated_token_mean(micro) == 3.0


# --------------------------------------------------------------------------------------------
# Group advantages
# --------------------------------------------------------------------------------------------


@st.composite
def grouped_rewards(draw: Any, *, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rewards [B] with shuffled (non-contiguous) group ids, ties and groups of one."""
    sizes = draw(st.lists(st.integers(min_size, 5), min_size=1, max_size=5))
    ids = np.repeat(np.arange(len(sizes)) * 7 - 3, sizes)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["binary", "normal", "tied", "large"]))
    if kind == "binary":
        rewards = rng.integers(0, 2, ids.size).astype(np.float64)
    elif kind == "normal":
        rewards = rng.normal(size=ids.size)
    elif kind == "tied":
        rewards = np.full(ids.size, 0.1)
    else:
        rewards = 1e6 + rng.normal(size=ids.size)
    order = rng.permutation(ids.size)
    return rewards[order], ids[order]


def _groups(ids: np.ndarray) -> dict[int, list[int]]:
    members: dict[int, list[int]] = {}
    for i, g in enumerate(ids.tolist()):
        members.setdefault(g, []).append(i)
    return members


@given(grouped_rewards(), st.sampled_from([0, 1]), st.sampled_from([0.0, 1e-6]))
def test_grpo_advantages_match_statistics_module(
    data: tuple[np.ndarray, np.ndarray], ddof: int, epsilon: float
) -> None:
    rewards, ids = data
    actual = llm.grpo_advantages(rewards, ids, epsilon=epsilon, ddof=ddof)
    for members in _groups(ids).values():
        values = [float(rewards[i]) for i in members]
        if len(set(values)) == 1:
            assert all(actual[i] == 0.0 for i in members)
            continue
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if ddof == 1 else statistics.pstdev(values)
        for i in members:
            expected = (rewards[i] - mean) / (std + epsilon)
            # conditioning: the deviation r - mean loses digits in proportion to |r| / std
            scale = max(abs(v) for v in values) / std
            assert actual[i] == pytest.approx(expected, rel=1e-12, abs=64 * EPS * scale)


@given(grouped_rewards(min_size=2))
def test_grpo_advantages_zero_mean_unit_std_per_group(data: tuple[np.ndarray, np.ndarray]) -> None:
    rewards, ids = data
    actual = llm.grpo_advantages(rewards, ids, epsilon=0.0, ddof=1)
    for members in _groups(ids).values():
        values = [float(actual[i]) for i in members]
        assert abs(math.fsum(values)) <= 1e-6  # 1e6 rewards: deviations keep ~10 digits
        if len({float(rewards[i]) for i in members}) > 1:
            assert statistics.stdev(values) == pytest.approx(1.0, rel=1e-6)


def test_grpo_advantages_edge_cases() -> None:
    # a group of one and a tied group get 0 (verl would give the raw reward 5 to the single)
    a = llm.grpo_advantages([5.0, 1.0, 1.0, 0.0, 1.0], [9, 2, 2, 4, 4])
    assert a[0] == 0.0 and a[1] == 0.0 and a[2] == 0.0
    # by hand: rewards (0, 1), mean 1/2, sample std 1/sqrt(2): -/+ 1/sqrt(2) / (1 + eps sqrt 2)
    assert a[3] == pytest.approx(-(0.5 / (1 / math.sqrt(2) + 1e-6)), rel=RTOL)
    assert a[4] == pytest.approx(0.5 / (1 / math.sqrt(2) + 1e-6), rel=RTOL)
    # tied rewards whose mean rounds: still exactly 0, not rounding error / epsilon
    tied = llm.grpo_advantages([0.1] * 7, [0] * 7)
    assert (tied == 0).all()


@given(grouped_rewards())
def test_dr_grpo_advantages_subtract_group_mean(data: tuple[np.ndarray, np.ndarray]) -> None:
    rewards, ids = data
    actual = llm.dr_grpo_advantages(rewards, ids)
    for members in _groups(ids).values():
        values = [float(rewards[i]) for i in members]
        mean = statistics.fmean(values)
        for i in members:
            assert actual[i] == pytest.approx(
                rewards[i] - mean, abs=64 * EPS * max(map(abs, values))
            )
        assert abs(math.fsum(float(actual[i]) for i in members)) <= 1e-8


@given(grouped_rewards(min_size=2))
def test_rloo_advantages_match_leave_one_out_loop(data: tuple[np.ndarray, np.ndarray]) -> None:
    rewards, ids = data
    actual = llm.rloo_advantages(rewards, ids)
    for members in _groups(ids).values():
        for i in members:
            others = [float(rewards[j]) for j in members if j != i]
            expected = rewards[i] - math.fsum(others) / len(others)
            assert actual[i] == pytest.approx(
                expected, rel=1e-12, abs=64 * EPS * max(abs(rewards[members]).max(), 1)
            )
    # reduction: RLOO = n / (n - 1) times Dr. GRPO
    dr = llm.dr_grpo_advantages(rewards, ids)
    n = np.array([len(_groups(ids)[g]) for g in ids.tolist()])
    np.testing.assert_allclose(actual, n / (n - 1) * dr, rtol=RTOL, atol=1e-300)


def test_rloo_rejects_group_of_one() -> None:
    with pytest.raises(ValueError, match="group_ids.*group of one.*id 5"):
        llm.rloo_advantages([1.0, 2.0, 3.0], [1, 1, 5])


def test_batch_whitened_advantages() -> None:
    rewards = np.array([1.0, 4.0, 2.0, 9.0, 3.0])
    actual = llm.batch_whitened_advantages(rewards, epsilon=0.0)
    mean, std = statistics.fmean(rewards.tolist()), statistics.stdev(rewards.tolist())
    np.testing.assert_allclose(actual, (rewards - mean) / std, rtol=RTOL)
    ids = np.array([0, 0, 1, 1, 1])
    with_groups = llm.batch_whitened_advantages(rewards, ids, epsilon=0.0, ddof=0)
    centred = [1.0 - 2.5, 4.0 - 2.5, 2.0 - 14 / 3, 9.0 - 14 / 3, 3.0 - 14 / 3]
    expected = (np.array(centred) - statistics.fmean(centred)) / statistics.pstdev(centred)
    np.testing.assert_allclose(with_groups, expected, rtol=1e-13)
    assert (llm.batch_whitened_advantages([3.0]) == 0).all()


# --------------------------------------------------------------------------------------------
# Masked whitening
# --------------------------------------------------------------------------------------------


@given(token_batches(max_rows=5, max_steps=6), st.sampled_from([0, 1]))
def test_masked_whiten_equals_whitening_the_selected_entries(
    batch: dict[str, Any], ddof: int
) -> None:
    mask = batch["mask"]
    values = batch["log_probs"]
    selected = values[mask].tolist()
    if len(selected) <= ddof:
        with pytest.raises(ValueError, match="response_mask"):
            llm.masked_whiten(values, mask, ddof=ddof)
        return
    actual = llm.masked_whiten(_pad_with_nan(values, mask), mask, epsilon=0.0, ddof=ddof)
    assert (actual[~mask] == 0).all()  # padding stays 0
    if len(set(selected)) == 1:
        assert (actual == 0).all()
        return
    mean = statistics.fmean(selected)
    var = statistics.variance(selected) if ddof == 1 else statistics.pvariance(selected)
    np.testing.assert_allclose(
        actual[mask], (np.array(selected) - mean) / math.sqrt(var), rtol=1e-12, atol=1e-12
    )
    whitened = actual[mask].tolist()
    assert abs(statistics.fmean(whitened)) <= 1e-12
    if len(whitened) > 1:
        spread = statistics.variance(whitened) if ddof == 1 else statistics.pvariance(whitened)
        assert spread == pytest.approx(1.0, rel=1e-12)


def test_masked_whiten_hand_values_and_epsilon_in_variance() -> None:
    values, mask = [[1.0, 3.0], [5.0, 100.0]], [[1, 1], [1, 0]]
    # by hand: mean 3, sample variance 4; epsilon enters the variance: 2 / sqrt(4 + 5) = 2/3
    np.testing.assert_allclose(
        llm.masked_whiten(values, mask, epsilon=5.0), [[-2 / 3, 0.0], [2 / 3, 0.0]], rtol=RTOL
    )
    np.testing.assert_allclose(
        llm.masked_whiten(values, mask, epsilon=0.0, shift_mean=False),
        [[2.0, 3.0], [4.0, 0.0]],
        rtol=RTOL,
    )


# --------------------------------------------------------------------------------------------
# GSPO and CISPO
# --------------------------------------------------------------------------------------------


@given(token_batches())
def test_gspo_sequence_ratio_is_geometric_mean(batch: dict[str, Any]) -> None:
    mask = batch["mask"]
    actual = llm.gspo_sequence_ratio(
        _pad_with_nan(batch["log_probs"], mask), batch["old_log_probs"], mask
    )
    for b in range(mask.shape[0]):
        ratios = [
            math.exp(batch["log_probs"][b, t] - batch["old_log_probs"][b, t])
            for t in range(mask.shape[1])
            if mask[b, t]
        ]
        expected = math.prod(ratios) ** (1 / len(ratios)) if ratios else 1.0
        assert actual[b] == pytest.approx(expected, rel=1e-12)


def test_gspo_sequence_ratio_long_response_does_not_underflow() -> None:
    """T = 1000 tokens of log-prob -700 each: pi(y) underflows to 0, the ratio is exp(0.01)."""
    old = np.full((2, 1000), -700.0)
    new = old + 0.01
    mask = np.ones((2, 1000), dtype=bool)
    mask[1, 1:] = False  # a one-token response
    np.testing.assert_allclose(
        llm.gspo_sequence_ratio(new, old, mask), [math.exp(0.01)] * 2, rtol=exact_rtol(n_terms=1000)
    )


@given(token_batches(max_rows=5, max_steps=5))
def test_gspo_loss_equals_ppo_on_equal_token_ratios(batch: dict[str, Any]) -> None:
    """Reduction: if every token of row b has the log-ratio d_b, s_b = exp(d_b) is each token's
    ratio, and GSPO is PPO aggregated by seq-mean-token-mean with A_b on every token."""
    mask = batch["mask"]
    rows, steps = mask.shape
    d = batch["log_probs"][:, :1] - batch["old_log_probs"][:, :1]
    new = batch["old_log_probs"] + d
    adv = batch["advantages"][:, 0]
    gspo = llm.gspo_loss(new, batch["old_log_probs"], adv, mask, clip_low=0.2, clip_high=0.3)
    per_token = llm.ppo_token_loss(
        new,
        batch["old_log_probs"],
        np.repeat(adv[:, np.newaxis], steps, axis=1),
        mask,
        clip_low=0.2,
        clip_high=0.3,
    )
    expected = llm.aggregate_loss(per_token, mask, "seq-mean-token-mean")
    assert gspo == pytest.approx(expected, rel=1e-12, abs=1e-300)


@given(token_batches(max_rows=4, max_steps=5))
def test_gspo_loss_gradient_matches_central_differences(batch: dict[str, Any]) -> None:
    mask = batch["mask"]
    new, old = batch["log_probs"], batch["old_log_probs"]
    adv = batch["advantages"][:, 0]
    low, high = 0.2, 0.3
    ratio = llm.gspo_sequence_ratio(new, old, mask)
    if np.abs(ratio - (1 - low)).min() < 1e-4 or np.abs(ratio - (1 + high)).min() < 1e-4:
        return  # too close to a kink for a central difference
    gradient = llm.gspo_loss_gradient(new, old, adv, mask, clip_low=low, clip_high=high)
    h = 1e-6
    central = np.zeros(new.shape)
    for b, t in zip(*np.nonzero(mask), strict=True):
        step = np.zeros(new.shape)
        step[b, t] = h
        up = llm.gspo_loss(new + step, old, adv, mask, clip_low=low, clip_high=high)
        down = llm.gspo_loss(new - step, old, adv, mask, clip_low=low, clip_high=high)
        central[b, t] = (up - down) / (2 * h)
    np.testing.assert_allclose(gradient, central, rtol=1e-6, atol=1e-8 * (1 + np.abs(adv).max()))


@given(token_batches(), st.sampled_from([(0.2, 0.28), (10.0, 0.5)]))
def test_cispo_token_loss_matches_loop(batch: dict[str, Any], clip: tuple[float, float]) -> None:
    low, high = clip
    mask = batch["mask"]
    new, old, adv = batch["log_probs"], batch["old_log_probs"], batch["advantages"]
    expected = np.zeros(new.shape)
    for b, t in zip(*np.nonzero(mask), strict=True):
        rho = math.exp(new[b, t] - old[b, t])
        weight = min(max(rho, max(1 - low, 0.0)), 1 + high)
        expected[b, t] = -weight * adv[b, t] * new[b, t]
    actual = llm.cispo_token_loss(
        _pad_with_nan(new, mask), old, adv, mask, clip_low=low, clip_high=high
    )
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=1e-300)


@given(token_batches())
def test_cispo_gradient_is_detached_weight_and_ppo_inside_range(batch: dict[str, Any]) -> None:
    mask = batch["mask"]
    new, old, adv = batch["log_probs"], batch["old_log_probs"], batch["advantages"]
    low, high = 0.2, 0.28
    gradient = llm.cispo_token_loss_gradient(new, old, adv, mask, clip_low=low, clip_high=high)
    # detached weight: a central difference in log_probs with the weight frozen at the base point
    weight = np.clip(np.exp(new - old), 1 - low, 1 + high)
    h = 1e-6
    frozen = (-(weight * adv * (new + h)) + weight * adv * (new - h)) / (2 * h)
    np.testing.assert_allclose(gradient, np.where(mask, frozen, 0.0), rtol=1e-8, atol=1e-9)
    # inside the clip range CISPO's gradient is PPO's (-rho A); outside PPO's is 0, CISPO's not
    ratio = np.exp(new - old)
    inside = mask & (ratio > 1 - low + 1e-9) & (ratio < 1 + high - 1e-9)
    ppo = llm.ppo_token_loss_gradient(new, old, adv, mask, clip_low=low, clip_high=high)
    np.testing.assert_allclose(gradient[inside], ppo[inside], rtol=RTOL, atol=1e-300)


def test_cispo_gradient_with_torch_autograd() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    old = rng.uniform(-4, 0, (3, 8))
    new = old + rng.normal(0, 0.6, (3, 8))
    adv = rng.normal(size=(3, 8))
    mask = rng.random((3, 8)) < 0.8
    new_t = torch.tensor(new, dtype=torch.float64, requires_grad=True)
    ratio = torch.exp(new_t - torch.tensor(old, dtype=torch.float64))
    weight = torch.clamp(ratio, 0.8, 1.28).detach()
    loss = -weight * torch.tensor(adv, dtype=torch.float64) * new_t
    (loss * torch.tensor(mask, dtype=torch.float64)).sum().backward()
    analytic = llm.cispo_token_loss_gradient(new, old, adv, mask, clip_low=0.2, clip_high=0.28)
    np.testing.assert_allclose(analytic, new_t.grad.numpy(), rtol=RTOL, atol=1e-300)


# --------------------------------------------------------------------------------------------
# TIS / MIS
# --------------------------------------------------------------------------------------------


@given(token_batches(), st.sampled_from([1.0, 2.0, 5.0]))
def test_truncated_and_masked_importance_weights(batch: dict[str, Any], cap: float) -> None:
    mask = batch["mask"]
    old, rollout = batch["log_probs"], batch["old_log_probs"]
    tis = llm.truncated_importance_weights(_pad_with_nan(old, mask), rollout, mask, cap=cap)
    mis = llm.masked_importance_weights(old, _pad_with_nan(rollout, mask), mask, cap=cap)
    for b in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if not mask[b, t]:
                assert tis[b, t] == 0 and mis[b, t] == 0
                continue
            ratio = math.exp(old[b, t] - rollout[b, t])
            assert tis[b, t] == pytest.approx(min(ratio, cap), rel=RTOL)
            assert mis[b, t] == pytest.approx(ratio if ratio <= cap else 0.0, rel=RTOL)
    below = mask & (np.exp(old - rollout) <= cap)
    np.testing.assert_array_equal(tis[below], mis[below])
    untruncated = llm.truncated_importance_weights(old, rollout, mask, cap=math.inf)
    np.testing.assert_allclose(untruncated, np.where(mask, np.exp(old - rollout), 0.0), rtol=RTOL)


# --------------------------------------------------------------------------------------------
# KL terms and the combined loss
# --------------------------------------------------------------------------------------------


@given(token_batches(), st.sampled_from(["k1", "k2", "k3"]))
def test_kl_penalty_per_token_uses_reference_estimators(batch: dict[str, Any], name: str) -> None:
    mask = batch["mask"]
    new, ref = batch["log_probs"], batch["old_log_probs"]
    actual = llm.kl_penalty_per_token(
        _pad_with_nan(new, mask), _pad_with_nan(ref, mask), mask, estimator=name
    )
    for b, t in zip(*np.nonzero(mask), strict=True):
        log_r = ref[b, t] - new[b, t]
        expected = {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": math.expm1(log_r) - log_r}[name]
        assert actual[b, t] == pytest.approx(expected, rel=RTOL, abs=1e-300)
    assert (actual[~mask] == 0).all()


def test_kl_penalty_per_token_reference_zero_probability() -> None:
    out = llm.kl_penalty_per_token([[0.0, 0.0]], [[-np.inf, np.nan]], [[1, 0]], estimator="k3")
    assert out[0, 0] == np.inf and out[0, 1] == 0.0


@given(token_batches(), st.sampled_from([0.0, 0.05, 1.0]))
def test_kl_reward_to_go_matches_double_loop(batch: dict[str, Any], beta: float) -> None:
    mask = batch["mask"].copy()
    mask[:, 1::3] = False  # masked positions inside responses (tool outputs)
    new, ref = batch["log_probs"], batch["old_log_probs"]
    actual = llm.kl_reward_to_go(_pad_with_nan(new, mask), ref, mask, kl_coefficient=beta)
    for b in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if not mask[b, t]:
                assert actual[b, t] == 0
                continue
            expected = math.fsum(
                -beta * (new[b, k] - ref[b, k]) for k in range(t, mask.shape[1]) if mask[b, k]
            )
            assert actual[b, t] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_combined_policy_loss_signs() -> None:
    rng = np.random.default_rng(1)
    pg, kl, entropy = rng.normal(size=(3, 4)), rng.random((3, 4)), rng.random((3, 4))
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    for mode in llm.AGGREGATION_MODES:
        total = llm.combined_policy_loss(
            pg, kl, entropy, mask, kl_coefficient=0.1, entropy_coefficient=0.01, mode=mode
        )
        expected = (
            _aggregate_loop(pg, mask, mode)
            + 0.1 * _aggregate_loop(kl, mask, mode)
            - 0.01 * _aggregate_loop(entropy, mask, mode)
        )
        assert total == pytest.approx(expected, rel=1e-12)
    # more entropy lowers the loss, more KL raises it
    base = llm.combined_policy_loss(
        pg, kl, entropy, mask, kl_coefficient=0.1, entropy_coefficient=0.01, mode="token-mean"
    )
    assert (
        llm.combined_policy_loss(
            pg,
            kl,
            entropy + 1,
            mask,
            kl_coefficient=0.1,
            entropy_coefficient=0.01,
            mode="token-mean",
        )
        < base
    )
    assert (
        llm.combined_policy_loss(
            pg,
            kl + 1,
            entropy,
            mask,
            kl_coefficient=0.1,
            entropy_coefficient=0.01,
            mode="token-mean",
        )
        > base
    )


# --------------------------------------------------------------------------------------------
# Edge cases: one-token responses and long responses
# --------------------------------------------------------------------------------------------


def test_one_token_responses_all_modes_agree() -> None:
    loss = np.array([[2.0, 9.0], [4.0, 9.0]])
    mask = np.array([[1, 0], [1, 0]])
    means = {mode: llm.aggregate_loss(loss, mask, mode) for mode in llm.AGGREGATION_MODES[:3]}
    assert means == {"token-mean": 3.0, "seq-mean-token-mean": 3.0, "seq-mean-token-sum": 3.0}
    assert llm.aggregate_loss(loss, mask, "seq-mean-token-sum-norm", normaliser=1.0) == 3.0


def test_long_responses_t_1000() -> None:
    rng = np.random.default_rng(7)
    steps = 1000
    old = rng.uniform(-1000.0, -700.0, (3, steps))  # probabilities underflow; ratios do not
    new = old + rng.normal(0, 0.1, (3, steps))
    adv = np.repeat(rng.normal(size=(3, 1)), steps, axis=1)
    lengths = np.array([1000, 1, 517])
    mask = np.arange(steps)[np.newaxis, :] < lengths[:, np.newaxis]
    per_token = llm.ppo_token_loss(new, old, adv, mask, clip_low=0.2, clip_high=0.28)
    assert np.isfinite(per_token).all()
    for mode in llm.AGGREGATION_MODES:
        assert llm.aggregate_loss(per_token, mask, mode) == pytest.approx(
            _aggregate_loop(per_token, mask, mode), rel=exact_rtol(n_terms=steps)
        )
    whitened = llm.masked_whiten(new, mask)
    assert (whitened[~mask] == 0).all()
    assert abs(whitened[mask].mean()) < 1e-10


# --------------------------------------------------------------------------------------------
# Argument validation (one table)
# --------------------------------------------------------------------------------------------

_M = np.ones((2, 3), dtype=bool)
_X = np.zeros((2, 3))
_PPO = {"clip_low": 0.2, "clip_high": 0.2}

BAD_ARGUMENTS = [
    (
        "mask-1d",
        lambda: llm.ppo_token_loss(_X, _X, _X, [1, 1], **_PPO),
        ValueError,
        "response_mask must have shape",
    ),
    (
        "mask-values",
        lambda: llm.ppo_token_loss(_X, _X, _X, _M * 2, **_PPO),
        ValueError,
        "response_mask must hold only 0/1",
    ),
    (
        "mask-dtype",
        lambda: llm.ppo_token_loss(_X, _X, _X, _M.astype(str), **_PPO),
        TypeError,
        "response_mask",
    ),
    (
        "shape",
        lambda: llm.ppo_token_loss(np.zeros((2, 4)), _X, _X, _M, **_PPO),
        ValueError,
        "log_probs must have the shape",
    ),
    (
        "nan-in-response",
        lambda: llm.ppo_token_loss(_X + np.nan, _X, _X, _M, **_PPO),
        ValueError,
        "log_probs .where response_mask. must be finite",
    ),
    (
        "clip-low",
        lambda: llm.ppo_token_loss(_X, _X, _X, _M, clip_low=0.0, clip_high=0.2),
        ValueError,
        "clip_low",
    ),
    (
        "clip-high-type",
        lambda: llm.ppo_token_loss(_X, _X, _X, _M, clip_low=0.2, clip_high="a"),
        TypeError,
        "clip_high",
    ),
    (
        "dual-clip",
        lambda: llm.ppo_token_loss(_X, _X, _X, _M, dual_clip=1.0, **_PPO),
        ValueError,
        "dual_clip",
    ),
    ("mode", lambda: llm.aggregate_loss(_X, _M, "mean"), ValueError, "mode must be one of"),
    ("mode-type", lambda: llm.aggregate_loss(_X, _M, 3), TypeError, "mode must be a string"),
    (
        "all-masked",
        lambda: llm.aggregate_loss(_X, ~_M, "token-mean"),
        ValueError,
        "at least one response token",
    ),
    (
        "normaliser",
        lambda: llm.aggregate_loss(_X, _M, "seq-mean-token-sum-norm", normaliser=0.0),
        ValueError,
        "normaliser",
    ),
    (
        "normaliser-mode",
        lambda: llm.aggregate_loss(_X, _M, "token-mean", normaliser=4.0),
        ValueError,
        "normaliser applies only",
    ),
    ("micro-empty", lambda: llm.accumulated_token_mean([]), ValueError, "micro_batches"),
    ("micro-type", lambda: llm.accumulated_token_mean([_X]), TypeError, r"micro_batches\[0\]"),
    (
        "micro-no-tokens",
        lambda: llm.accumulated_token_mean([(_X, ~_M)]),
        ValueError,
        "at least one response token",
    ),
    ("rewards-2d", lambda: llm.grpo_advantages(_X, [0, 0]), ValueError, "rewards must have"),
    (
        "group-ids-float",
        lambda: llm.grpo_advantages([1.0, 2.0], [0.0, 1.0]),
        TypeError,
        "group_ids must be an array of integers",
    ),
    (
        "group-ids-bool",
        lambda: llm.dr_grpo_advantages([1.0, 2.0], [True, False]),
        TypeError,
        "group_ids",
    ),
    (
        "group-ids-shape",
        lambda: llm.grpo_advantages([1.0, 2.0], [0, 0, 0]),
        ValueError,
        "group_ids must have the shape",
    ),
    (
        "rewards-nan",
        lambda: llm.rloo_advantages([1.0, np.nan], [0, 0]),
        ValueError,
        "rewards must be finite",
    ),
    ("epsilon", lambda: llm.grpo_advantages([1.0], [0], epsilon=-1.0), ValueError, "epsilon"),
    ("ddof", lambda: llm.grpo_advantages([1.0], [0], ddof=2), ValueError, "ddof"),
    (
        "whiten-too-few",
        lambda: llm.masked_whiten(_X, np.arange(6).reshape(2, 3) == 0),
        ValueError,
        "at least 2 tokens",
    ),
    ("whiten-shift", lambda: llm.masked_whiten(_X, _M, shift_mean=1), TypeError, "shift_mean"),
    (
        "gspo-adv-shape",
        lambda: llm.gspo_loss(_X, _X, _X, _M, **_PPO),
        ValueError,
        r"advantages must have shape \[B\]",
    ),
    (
        "gspo-all-masked",
        lambda: llm.gspo_loss(_X, _X, [1.0, 1.0], ~_M, **_PPO),
        ValueError,
        "at least one response token",
    ),
    ("tis-cap", lambda: llm.truncated_importance_weights(_X, _X, _M, cap=0.0), ValueError, "cap"),
    (
        "kl-estimator",
        lambda: llm.kl_penalty_per_token(_X, _X, _M, estimator="k4"),
        ValueError,
        "estimator must be one of",
    ),
    (
        "kl-plus-inf",
        lambda: llm.kl_penalty_per_token(_X, _X + np.inf, _M, estimator="k1"),
        ValueError,
        "reference_log_probs",
    ),
    (
        "kl-beta",
        lambda: llm.kl_reward_to_go(_X, _X, _M, kl_coefficient=-0.1),
        ValueError,
        "kl_coefficient",
    ),
    (
        "entropy-negative",
        lambda: llm.combined_policy_loss(
            _X, _X, _X - 1, _M, kl_coefficient=0.1, entropy_coefficient=0.1, mode="token-mean"
        ),
        ValueError,
        "entropy_per_token must be >= 0",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [case[1:] for case in BAD_ARGUMENTS],
    ids=[case[0] for case in BAD_ARGUMENTS],
)
def test_bad_arguments(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------------------------
# The specs of rlmath.llm_specs: correct variants accepted, mutants rejected by a verdict
# --------------------------------------------------------------------------------------------

SPEC_EXAMPLES = 60  # fewer than the conformance suite's 100: every mutant is found within 40


@pytest.mark.parametrize(
    "entry", llm_numpy.CORRECT, ids=[f"{e[0]}-{e[1].__name__}" for e in llm_numpy.CORRECT]
)
def test_llm_spec_accepts_correct_variant(entry: tuple[str, Any]) -> None:
    name, implementation = entry
    report = check(
        implementation, LLM_SPECS[name], seed=20240, examples=SPEC_EXAMPLES, isolation="none"
    )
    assert report.conforms, str(report)


@pytest.mark.parametrize(
    "entry", llm_numpy.MUTANTS, ids=[f"{e[0]}-{e[1].__name__}" for e in llm_numpy.MUTANTS]
)
def test_llm_spec_rejects_mutant(entry: tuple[str, Any, set[str], str]) -> None:
    name, implementation, kinds, bug = entry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mutants on reduced inputs
        report = check(
            implementation,
            LLM_SPECS[name],
            seed=20240,
            examples=SPEC_EXAMPLES,
            isolation="none",
        )
    assert not report.conforms, f"mutant accepted ({bug})"
    assert report.failure is not None and report.failure.kind in kinds, str(report)


def test_llm_specs_cover_every_spec() -> None:
    assert {e[0] for e in llm_numpy.CORRECT} == set(LLM_SPECS)
    assert {e[0] for e in llm_numpy.MUTANTS} == set(LLM_SPECS)


def test_llm_specs_gradient_leg_with_torch() -> None:
    """Torch variants run the gradient leg (autograd of the output's sum vs the reference)."""
    torch = pytest.importorskip("torch")

    def ppo_token(
        log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high, dual_clip
    ):  # type: ignore[no-untyped-def]
        m = response_mask.to(log_probs.dtype)
        adv = advantages * m
        ratio = torch.exp((log_probs - old_log_probs) * m)
        loss = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
        if dual_clip is not None:
            loss = torch.where(adv < 0, torch.minimum(loss, -adv * dual_clip), loss)
        return loss * m

    def gspo(log_probs, old_log_probs, advantages, response_mask, *, clip_low, clip_high):  # type: ignore[no-untyped-def]
        m = response_mask.to(log_probs.dtype)
        lengths = m.sum(-1)
        seq = ((log_probs - old_log_probs) * m).sum(-1) / lengths.clamp(min=1)
        # verl's GSPO-token: value s_b, gradient s_b * d log pi per token
        log_ratio = log_probs - log_probs.detach() + seq.detach()[:, None]
        ratio = torch.exp(log_ratio)
        adv = advantages[:, None]
        losses = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
        per_seq = (losses * m).sum(-1) / lengths.clamp(min=1)
        keep = lengths > 0
        return per_seq[keep].sum() / keep.sum()

    for name, implementation in (("ppo_token_loss", ppo_token), ("gspo_loss", gspo)):
        report = check(
            implementation,
            LLM_SPECS[name],
            seed=20240,
            examples=40,
            framework="torch",
            isolation="none",
        )
        assert report.conforms, str(report)


def test_llm_mask_generator_separates_the_aggregation_modes() -> None:
    """Most generated batches have two non-empty rows of different lengths, so token-mean and
    seq-mean-token-mean disagree on them (a mutant swapping the modes is caught by drawn
    modes, without pinning the mode)."""
    from rlmath.claims.reproducibility import draw_examples

    examples = draw_examples(LLM_SPECS["aggregate_loss"].examples(), SPEC_EXAMPLES, 20240)
    separating = 0
    for example in examples:
        loss, mask = example.arguments["per_token"], example.arguments["response_mask"]
        token = llm.aggregate_loss(loss, mask, "token-mean")
        sequence = llm.aggregate_loss(loss, mask, "seq-mean-token-mean")
        separating += abs(token - sequence) > 1e-9 * (1 + abs(token))
    assert separating >= SPEC_EXAMPLES // 2, f"{separating} of {SPEC_EXAMPLES} batches separate"
