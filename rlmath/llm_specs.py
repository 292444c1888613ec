r"""Specifications of the LLM-RL reference functions in :mod:`rlmath.llm_reference`.

The same :class:`rlmath.specs.Spec` objects as :mod:`rlmath.specs` (signature, input strategy,
error scale, gradient), for the token-level losses and group advantages. Inputs are padded
``[B, T]`` batches whose masks include empty rows, one-token responses, full rows, holes inside
a response (multi-turn tool output) and occasionally long responses (T up to 256); padding
positions hold arbitrary finite garbage that an implementation must ignore; group ids are
shuffled, non-contiguous and of unequal sizes, with groups of one and tied rewards; log-probs
reach -1000, where a ratio of probabilities underflows.

Generated inputs meet these edge cases only by chance, with odds that change between Hypothesis
versions and seeds; so every spec also has fixed *witnesses* (:attr:`rlmath.specs.Spec.witnesses`),
judged at every seed: the same generators fed by fixed choices (:class:`_Witness`) instead of
Hypothesis's (:class:`_Drawn`), on masks with every edge case at once.

``LLM_SPECS`` maps each name to its spec; :func:`rlmath.conformance.check` accepts a spec
object, so ``check(impl, LLM_SPECS["ppo_token_loss"])`` works before they are registered in
:data:`rlmath.specs.SPECS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from hypothesis import strategies as st

from rlmath import llm_reference as llm
from rlmath.specs import (
    ADVANTAGES,
    LOG_PROBS,
    LOG_RATIO_ASSUMPTIONS,
    REALS,
    Arrays,
    Example,
    Gradients,
    Spec,
)

__all__ = ["LLM_SPECS"]

FloatArray = np.ndarray

#: Margin in log-ratio units that keeps generated ratios off the clip kinks after float32 rounding.
KINK_MARGIN = 1e-3
#: Log-ratios between policies: zero, near zero, and far outside any clip range (|log r| <= 30,
#: so that every ratio and every reference output is finite).
LOG_RATIOS = st.one_of(
    st.just(0.0),
    st.floats(-0.3, 0.3, allow_subnormal=False),
    st.floats(-30.0, 30.0, allow_subnormal=False),
)
CLIP_LOW = st.one_of(st.sampled_from([0.2, 0.1]), st.floats(0.05, 0.5))
CLIP_HIGH = st.one_of(st.sampled_from([0.28, 0.2, 0.3]), st.floats(0.05, 0.6))


def _array(value: Any) -> FloatArray:
    return np.asarray(value, dtype=np.float64)


def _vector(size: int, elements: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    return st.lists(elements, min_size=size, max_size=size).map(
        lambda xs: np.array(xs, dtype=np.float64)
    )


def _matrix(
    shape: tuple[int, int], elements: st.SearchStrategy[float]
) -> st.SearchStrategy[np.ndarray]:
    return _vector(shape[0] * shape[1], elements).map(lambda x: x.reshape(shape))


@st.composite
def _mask(draw: st.DrawFn) -> np.ndarray:
    """A ``[B, T]`` response mask with at least one response token.

    Right-padded rows. Mostly (T >= 2, B >= 2) the first two rows drawn are non-empty with
    *different* lengths, so that the aggregation modes (token-mean vs seq-mean-token-mean)
    disagree on the batch; the other rows have random lengths (0 = empty, 1 = one token,
    T = full). Sometimes T = 1 or B = 1, sometimes long (T from 50 to 256), sometimes with a
    hole (a masked token inside the responses, as multi-turn tool output). Rows are shuffled.
    """
    rows = draw(st.one_of(st.integers(2, 5), st.integers(2, 4), st.integers(1, 4)))
    steps = draw(st.one_of(st.integers(2, 6), st.integers(2, 8), st.just(1), st.integers(50, 256)))
    length = st.one_of(st.just(steps), st.just(1), st.just(0), st.integers(0, steps))
    lengths = np.array(draw(st.lists(length, min_size=rows, max_size=rows)))
    if rows >= 2 and steps >= 2:
        first = draw(st.integers(1, steps))
        second = draw(st.integers(1, steps - 1))
        lengths[:2] = first, second + (second >= first)  # two different non-zero lengths
        order = draw(st.permutations(list(range(rows))))
        lengths = lengths[np.array(order)]
    if lengths.sum() == 0:
        lengths[draw(st.integers(0, rows - 1))] = draw(st.integers(1, steps))
    mask = np.arange(steps)[np.newaxis, :] < lengths[:, np.newaxis]
    if steps >= 3 and draw(st.booleans()):
        hole = draw(st.integers(1, steps - 1))
        holed = mask.copy()
        holed[:, hole] = False
        if holed.any():
            mask = holed
    return mask


#: Values at the padding positions: arbitrary finite garbage that an implementation must ignore.
FILLS = (0.0, -1.0, 7.5, 1e3)


class _Source(Protocol):
    """Where a generator's choices come from: Hypothesis (:class:`_Drawn`) or a witness
    (:class:`_Witness`). ``elements`` is the Hypothesis strategy of an entry, ``[low, high]``
    the range of entries drawn otherwise."""

    def mask(self, min_tokens: int = 1) -> np.ndarray: ...

    def matrix(
        self, shape: tuple[int, int], elements: st.SearchStrategy[float], low: float, high: float
    ) -> np.ndarray: ...

    def vector(
        self, size: int, elements: st.SearchStrategy[float], low: float, high: float
    ) -> np.ndarray: ...

    def fill(self) -> float: ...

    def boolean(self) -> bool: ...

    def booleans(self, count: int) -> list[bool]: ...

    def generator(self) -> np.random.Generator: ...

    def group_sizes(self, min_size: int) -> list[int]: ...

    def permutation(self, size: int) -> np.ndarray: ...


#: A generator of data arguments: (its choices' source, the hyperparameters) -> the arguments.
_Build = Callable[[_Source, dict[str, Any]], Arrays]


class _Drawn:
    """Choices drawn by Hypothesis (they shrink)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def mask(self, min_tokens: int = 1) -> np.ndarray:
        masks = _mask() if min_tokens <= 1 else _mask().filter(lambda m: m.sum() >= min_tokens)
        mask: np.ndarray = self._draw(masks)
        return mask

    def matrix(
        self, shape: tuple[int, int], elements: st.SearchStrategy[float], low: float, high: float
    ) -> np.ndarray:
        """Small matrices drawn entry by entry (they shrink); long ones from a drawn seed."""
        if shape[1] <= 8:
            small: np.ndarray = self._draw(_matrix(shape, elements))
            return small
        return self.generator().uniform(low, high, size=shape)

    def vector(
        self, size: int, elements: st.SearchStrategy[float], low: float, high: float
    ) -> np.ndarray:
        vector: np.ndarray = self._draw(_vector(size, elements))
        return vector

    def fill(self) -> float:
        return self._draw(st.sampled_from(FILLS))

    def boolean(self) -> bool:
        return self._draw(st.booleans())

    def booleans(self, count: int) -> list[bool]:
        return self._draw(st.lists(st.booleans(), min_size=count, max_size=count))

    def generator(self) -> np.random.Generator:
        return np.random.default_rng(self._draw(st.integers(0, 2**32 - 1)))

    def group_sizes(self, min_size: int) -> list[int]:
        return self._draw(st.lists(st.integers(min_size, 5), min_size=1, max_size=4))

    def permutation(self, size: int) -> np.ndarray:
        return np.array(self._draw(st.permutations(list(range(size)))), dtype=np.int64)


class _Witness:
    """Fixed choices: a given mask (or group sizes), entries from a seeded NumPy generator.

    Entries are uniform on ``[low, high]`` with every third one exactly ``low`` (log-probs of
    -1000, zero entropies, zero rewards: exact values the element strategies also draw); the
    padding holds the largest garbage; the edge-case branches are taken (``boolean`` is true:
    all values equal, tokens where trainer and engine agree; ``booleans`` alternate from true:
    a tied group next to an untied one).
    """

    def __init__(
        self, *, mask: np.ndarray | None = None, sizes: Sequence[int] = (), seed: int = 0
    ) -> None:
        self._mask = mask
        self._sizes = list(sizes)
        self._rng = np.random.default_rng(seed)

    def mask(self, min_tokens: int = 1) -> np.ndarray:
        if self._mask is None or self._mask.sum() < min_tokens:
            raise ValueError(f"this witness has no mask with {min_tokens} response tokens")
        return self._mask.copy()

    def matrix(
        self, shape: tuple[int, int], elements: st.SearchStrategy[float], low: float, high: float
    ) -> np.ndarray:
        values = self._rng.uniform(low, high, size=shape)
        values.flat[::3] = low
        return values

    def vector(
        self, size: int, elements: st.SearchStrategy[float], low: float, high: float
    ) -> np.ndarray:
        vector: np.ndarray = self.matrix((1, size), elements, low, high)[0]
        return vector

    def fill(self) -> float:
        return max(FILLS)

    def boolean(self) -> bool:
        return True

    def booleans(self, count: int) -> list[bool]:
        return [k % 2 == 0 for k in range(count)]

    def generator(self) -> np.random.Generator:
        return self._rng

    def group_sizes(self, min_size: int) -> list[int]:
        if not self._sizes or min(self._sizes) < min_size:
            raise ValueError(f"this witness has no groups of size >= {min_size}")
        return list(self._sizes)

    def permutation(self, size: int) -> np.ndarray:
        return self._rng.permutation(size)


def _drawn(build: _Build) -> Callable[[dict[str, Any]], st.SearchStrategy[Arrays]]:
    """The strategy of a generator's arguments: ``build`` with Hypothesis's choices."""

    @st.composite
    def arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
        return build(_Drawn(draw), hyper)

    return arguments


def _holed_mask(lengths: Sequence[int], steps: int, holes: Sequence[tuple[int, int]]) -> np.ndarray:
    """Right-padded rows of the given lengths with the tokens ``(row, step)`` of ``holes``
    masked out (inside the responses)."""
    mask = np.arange(steps)[np.newaxis, :] < np.array(lengths)[:, np.newaxis]
    for row, step in holes:
        mask[row, step] = False
    return mask


#: The witnesses' masks. A [5, 6] batch: a full row, a one-token row, an empty row, a hole
#: inside a response, rows of different lengths (6, 1, 0, 4, 3 tokens), two-row micro-batches
#: of different token counts (7, 4, 3); and a long [3, 64] batch (64, 50 with a hole of five
#: tokens, 7).
WITNESS_MASKS = (
    _holed_mask([6, 1, 0, 5, 3], 6, [(3, 2)]),
    _holed_mask([64, 55, 7], 64, [(1, step) for step in range(20, 25)]),
)
_TOKEN_WITNESSES = (
    "masks with an empty row, a one-token row, a full row, a hole inside a response, rows of "
    "different lengths, two-row micro-batches of different token counts, and T = 64; padding "
    "garbage 1e3; every third entry at the low end of its range (log-probs -1000)"
)


def _token_witnesses(build: _Build) -> Callable[[dict[str, Any]], list[Arrays]]:
    """The witnesses of a token-level generator: ``build`` on each of :data:`WITNESS_MASKS`."""
    return lambda hyper: [
        build(_Witness(mask=mask, seed=k), hyper) for k, mask in enumerate(WITNESS_MASKS)
    ]


def _garbage(source: _Source, array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Put arbitrary finite values at the padding positions: they must be ignored."""
    result: np.ndarray = np.where(mask, array, source.fill())
    return result


def _away_from(x: np.ndarray, kinks: list[float]) -> np.ndarray:
    for kink in kinks:
        x = np.where(np.abs(x - kink) < KINK_MARGIN, kink + 2 * KINK_MARGIN, x)
    return x


def _log_ratio_kinks(clip_low: float, clip_high: float, dual_clip: float | None) -> list[float]:
    kinks = [math.log1p(clip_high)]
    if clip_low < 1:
        kinks.append(math.log1p(-clip_low))
    if dual_clip is not None and math.isfinite(dual_clip):
        kinks.append(math.log(dual_clip))
    return kinks


def _bounded(log_ratio: np.ndarray, hyper: dict[str, Any]) -> np.ndarray:
    bound = float(hyper.get("__assume__", {}).get("max_abs_log_ratio", math.inf))
    result: np.ndarray = np.clip(log_ratio, -bound, bound)
    return result


# --------------------------------------------------------------------------------------------
# ppo_token_loss
# --------------------------------------------------------------------------------------------


def _ppo_token_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    mask = source.mask()
    shape = mask.shape
    old = source.matrix(shape, LOG_PROBS, -1000.0, 0.0)
    log_ratio = source.matrix(shape, LOG_RATIOS, -2.0, 2.0)
    log_ratio = _away_from(
        _bounded(log_ratio, hyper),
        _log_ratio_kinks(hyper["clip_low"], hyper["clip_high"], hyper["dual_clip"]),
    )
    advantages = source.matrix(shape, ADVANTAGES, -5.0, 5.0)
    return {
        "log_probs": _garbage(source, old + log_ratio, mask),
        "old_log_probs": old,
        "advantages": _garbage(source, advantages, mask),
        "response_mask": mask,
    }


def _ppo_token_parts(example: Example) -> tuple[FloatArray, FloatArray, FloatArray, np.ndarray]:
    a = example.arguments
    mask = a["response_mask"]
    log_ratio = np.where(mask, a["log_probs"] - a["old_log_probs"], 0.0)
    ratio = np.exp(log_ratio)
    adv = np.where(mask, np.abs(a["advantages"]), 0.0)
    return ratio, adv, 2 + np.abs(log_ratio), mask


def _ppo_token_scale(example: Example) -> tuple[FloatArray, ...]:
    ratio, adv, amplification, mask = _ppo_token_parts(example)
    high = 1 + example.hyperparameters["clip_high"]
    dual = example.hyperparameters["dual_clip"] or 0.0
    magnitude = adv * (ratio + high + dual) * amplification
    return (_array(8 * np.where(mask, magnitude, 0.0)),)


def _ppo_token_gradient(example: Example) -> Gradients:
    a = example.arguments
    expected = llm.ppo_token_loss_gradient(
        *(a[k] for k in ("log_probs", "old_log_probs", "advantages", "response_mask")),
        **example.hyperparameters,
    )
    ratio, adv, amplification, _ = _ppo_token_parts(example)
    return {"log_probs": (expected, 8 * adv * ratio * amplification)}


# --------------------------------------------------------------------------------------------
# aggregate_loss
# --------------------------------------------------------------------------------------------


def _aggregate_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    mask = source.mask()
    loss = source.matrix(mask.shape, REALS, -10.0, 10.0)
    return {"per_token": _garbage(source, loss, mask), "response_mask": mask}


def _aggregate_scale(example: Example) -> tuple[FloatArray, ...]:
    a = example.arguments
    mask = a["response_mask"]
    magnitude = np.where(mask, np.abs(a["per_token"]), 0.0)
    lengths = mask.sum(axis=1)
    nonempty = lengths > 0
    mode = example.hyperparameters["mode"]
    terms = mask.sum() + mask.shape[0] + 4
    if mode == "token-mean":
        value = magnitude.sum() / lengths.sum()
    elif mode == "seq-mean-token-mean":
        value = np.mean(magnitude.sum(axis=1)[nonempty] / lengths[nonempty])
    elif mode == "seq-mean-token-sum":
        value = np.mean(magnitude.sum(axis=1)[nonempty])
    else:
        value = magnitude.sum() / (mask.shape[0] * mask.shape[1])
    return (_array(4 * terms * value),)


# --------------------------------------------------------------------------------------------
# Group advantages
# --------------------------------------------------------------------------------------------

REWARDS = st.one_of(st.sampled_from([0.0, 1.0, 0.1]), REALS)


def _grouped_rewards(source: _Source, min_size: int) -> Arrays:
    sizes = source.group_sizes(min_size)
    ids = np.repeat(np.arange(len(sizes), dtype=np.int64) * 5 - 2, sizes)
    rewards = source.vector(ids.size, REWARDS, 0.0, 1.0)
    tied = source.booleans(len(sizes))
    for g, is_tied in enumerate(tied):
        if is_tied:
            members = np.flatnonzero(ids == g * 5 - 2)
            rewards[members] = rewards[members[0]]
    order = source.permutation(ids.size)
    return {"rewards": rewards[order], "group_ids": ids[order]}


def _grouped(min_size: int) -> _Build:
    return lambda source, hyper: _grouped_rewards(source, min_size)


#: Group sizes of the group witnesses (raised to the spec's smallest group), tied alternately.
GROUP_WITNESS_SIZES = (1, 3, 2, 4)
_GROUP_WITNESSES = (
    "groups of sizes 1, 3, 2, 4 (2, 3, 2, 4 where a group needs two members), shuffled, the "
    "first and third tied (a group of one, a tied pair); rewards in [0, 1], every third 0"
)


def _group_witnesses(min_size: int) -> Callable[[dict[str, Any]], list[Arrays]]:
    sizes = [max(size, min_size) for size in GROUP_WITNESS_SIZES]
    return lambda hyper: [_grouped_rewards(_Witness(sizes=sizes), min_size)]


def _group_stats(example: Example) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per row: the group's size, largest |reward|, std (given ddof) and whether it is tied."""
    rewards, ids = example.arguments["rewards"], example.arguments["group_ids"]
    ddof = example.hyperparameters.get("ddof", 0)
    size = np.zeros(rewards.size)
    largest = np.zeros(rewards.size)
    std = np.zeros(rewards.size)
    tied = np.zeros(rewards.size)
    for g in np.unique(ids):
        members = ids == g
        values = rewards[members]
        size[members] = values.size
        largest[members] = np.abs(values).max()
        tied[members] = float(values.max() == values.min())
        std[members] = np.std(values, ddof=ddof) if values.size > ddof else 0.0
    return size, largest, std, tied


def _grpo_scale(example: Example) -> tuple[FloatArray, ...]:
    size, largest, std, tied = _group_stats(example)
    eps = example.hyperparameters["epsilon"]
    denominator = np.where(tied > 0, eps, std + eps)
    ratio = np.divide(largest, denominator, out=np.zeros_like(largest), where=denominator > 0)
    return (_array(8 * size * (ratio + np.where(tied > 0, 0.0, np.sqrt(size)))),)


def _rloo_scale(example: Example) -> tuple[FloatArray, ...]:
    size, largest, _, _ = _group_stats(example)
    return (_array(8 * size * largest),)


# --------------------------------------------------------------------------------------------
# masked_whiten
# --------------------------------------------------------------------------------------------


def _whiten_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    mask = source.mask(min_tokens=2)
    values = source.matrix(mask.shape, REWARDS, -10.0, 10.0)
    if source.boolean():  # all response values equal: the variance is 0
        values = np.full(mask.shape, values.flat[0])
    return {"values": _garbage(source, values, mask), "response_mask": mask}


def _whiten_scale(example: Example) -> tuple[FloatArray, ...]:
    a, hyper = example.arguments, example.hyperparameters
    mask = a["response_mask"]
    selected = a["values"][mask]
    count = selected.size
    largest = float(np.abs(selected).max())
    eps = hyper["epsilon"]
    if selected.max() == selected.min():
        # (x - mean) is rounding noise of size count * u * largest, divided by sqrt(eps)
        noise = largest / math.sqrt(eps) if eps > 0 else 0.0
        scale = 8 * count * noise + (0.0 if hyper["shift_mean"] else 8 * largest)
    else:
        std = math.sqrt(np.var(selected, ddof=hyper["ddof"]) + eps)
        scale = 8 * count * (largest / std + math.sqrt(count)) + (
            0.0 if hyper["shift_mean"] else 8 * count * largest
        )
    return (_array(np.where(mask, scale, 0.0)),)


# --------------------------------------------------------------------------------------------
# gspo_loss
# --------------------------------------------------------------------------------------------


def _gspo_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    mask = source.mask()
    shape = mask.shape
    old = source.matrix(shape, LOG_PROBS, -1000.0, 0.0)
    log_ratio = _bounded(source.matrix(shape, LOG_RATIOS, -1.0, 1.0), hyper)
    # keep each sequence's mean log-ratio off the kinks: shift the row's ratios together
    lengths = mask.sum(axis=1)
    mean = np.where(
        lengths > 0, np.where(mask, log_ratio, 0).sum(axis=1) / np.maximum(lengths, 1), 0
    )
    moved = _away_from(mean, _log_ratio_kinks(hyper["clip_low"], hyper["clip_high"], None))
    log_ratio = log_ratio + (moved - mean)[:, np.newaxis]
    advantages = source.vector(shape[0], ADVANTAGES, -5.0, 5.0)
    return {
        "log_probs": _garbage(source, old + log_ratio, mask),
        "old_log_probs": old,
        "advantages": advantages,
        "response_mask": mask,
    }


def _gspo_parts(example: Example) -> tuple[FloatArray, FloatArray, FloatArray, np.ndarray]:
    a = example.arguments
    mask = a["response_mask"]
    lengths = mask.sum(axis=1)
    log_ratio = np.where(mask, a["log_probs"] - a["old_log_probs"], 0.0)
    magnitude = np.where(mask, np.abs(a["log_probs"]) + np.abs(a["old_log_probs"]), 0.0)
    mean = log_ratio.sum(axis=1) / np.maximum(lengths, 1)
    # the mean log-ratio is a sum of differences of numbers up to |log p|: its error
    amplification = 2 + np.abs(mean) + magnitude.sum(axis=1) / np.maximum(lengths, 1)
    return np.exp(mean), np.abs(a["advantages"]), amplification, lengths


def _gspo_scale(example: Example) -> tuple[FloatArray, ...]:
    ratio, adv, amplification, lengths = _gspo_parts(example)
    high = 1 + example.hyperparameters["clip_high"]
    nonempty = lengths > 0
    terms = adv * (ratio + high) * amplification * (lengths + 4)
    return (_array(8 * np.mean(terms[nonempty])),)


def _gspo_gradient(example: Example) -> Gradients:
    a = example.arguments
    expected = llm.gspo_loss_gradient(
        *(a[k] for k in ("log_probs", "old_log_probs", "advantages", "response_mask")),
        **example.hyperparameters,
    )
    ratio, adv, amplification, lengths = _gspo_parts(example)
    per_row = 8 * adv * ratio * amplification / np.maximum(lengths, 1) / (lengths > 0).sum()
    mask = a["response_mask"]
    return {"log_probs": (expected, np.where(mask, per_row[:, np.newaxis], 0.0))}


# --------------------------------------------------------------------------------------------
# truncated_importance_weights
# --------------------------------------------------------------------------------------------


def _tis_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    mask = source.mask()
    rollout = source.matrix(mask.shape, LOG_PROBS, -1000.0, 0.0)
    log_ratio = _bounded(source.matrix(mask.shape, LOG_RATIOS, -3.0, 3.0), hyper)
    cap = hyper["cap"]
    if math.isfinite(cap):
        log_ratio = _away_from(log_ratio, [math.log(cap)])
    return {
        "old_log_probs": _garbage(source, rollout + log_ratio, mask),
        "rollout_log_probs": rollout,
        "response_mask": mask,
    }


def _tis_scale(example: Example) -> tuple[FloatArray, ...]:
    a = example.arguments
    mask = a["response_mask"]
    log_ratio = np.where(mask, a["old_log_probs"] - a["rollout_log_probs"], 0.0)
    magnitude = np.abs(a["old_log_probs"]) + np.abs(a["rollout_log_probs"]) + 2
    return (_array(np.where(mask, 8 * np.exp(log_ratio) * magnitude, 0.0)),)


# --------------------------------------------------------------------------------------------
# masked_importance_weights
# --------------------------------------------------------------------------------------------


def _mis_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    """As TIS, plus tokens where trainer and engine agree exactly (ratio exactly 1).

    A ratio exactly equal to the cap is kept (``ratio <= cap``); with ``cap = 1`` these tokens
    are where ``>`` and ``>=`` disagree, so they are drawn on purpose, and kept exact: equal
    log-probs give a log-ratio of exactly 0 in every precision.
    """
    arguments = _tis_arguments(source, hyper)
    mask = arguments["response_mask"]
    rollout = arguments["rollout_log_probs"]
    if source.boolean():
        agree = mask & (source.generator().random(mask.shape) < 0.5)
        arguments["old_log_probs"] = np.where(agree, rollout, arguments["old_log_probs"])
    return arguments


# --------------------------------------------------------------------------------------------
# kl_penalty_per_token and kl_reward_to_go
# --------------------------------------------------------------------------------------------


def _kl_token_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    mask = source.mask()
    log_probs = source.matrix(mask.shape, LOG_PROBS, -1000.0, 0.0)
    log_ratio = _bounded(source.matrix(mask.shape, LOG_RATIOS, -3.0, 3.0), hyper)
    return {
        "log_probs": _garbage(source, log_probs, mask),
        "reference_log_probs": _garbage(source, log_probs - log_ratio, mask),
        "response_mask": mask,
    }


def _kl_token_parts(example: Example) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """``d = log_probs - reference_log_probs`` (= -log r) and the inputs' magnitude, masked."""
    a = example.arguments
    mask = a["response_mask"]
    d = np.where(mask, a["log_probs"] - a["reference_log_probs"], 0.0)
    magnitude = np.where(mask, 1 + np.abs(a["log_probs"]) + np.abs(a["reference_log_probs"]), 0.0)
    return d, magnitude, mask


def _kl_token_scale(example: Example) -> tuple[FloatArray, ...]:
    d, magnitude, mask = _kl_token_parts(example)
    estimator = example.hyperparameters["estimator"]
    if estimator == "k1":
        scale = 2 * magnitude
    elif estimator == "k2":
        scale = 2 * (np.abs(d) * magnitude + d**2)
    else:
        scale = 2 * (1 + np.exp(-d)) * magnitude + np.abs(d)
    return (_array(np.where(mask, 4 * scale, 0.0)),)


def _kl_token_gradient(example: Example) -> Gradients:
    r"""Pathwise derivative of each estimator in $\log\pi_\theta$ (tokens fixed), $d = -\log r$:
    $k_1 = d \to 1$, $k_2 = d^2/2 \to d$, $k_3 = e^{-d} - 1 + d \to 1 - e^{-d}$."""
    d, magnitude, mask = _kl_token_parts(example)
    estimator = example.hyperparameters["estimator"]
    derivative = {"k1": np.ones_like(d), "k2": d, "k3": -np.expm1(-d)}[estimator]
    scale = {"k1": np.ones_like(d), "k2": 2 * magnitude}.get(
        estimator, 2 * (1 + np.exp(-d)) * magnitude
    )
    return {"log_probs": (np.where(mask, derivative, 0.0), np.where(mask, 4 * scale, 0.0))}


def _reverse_cumsum(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.cumsum(x[:, ::-1], axis=1)[:, ::-1]
    return result


def _kl_reward_scale(example: Example) -> tuple[FloatArray, ...]:
    _, magnitude, mask = _kl_token_parts(example)
    beta = example.hyperparameters["kl_coefficient"]
    terms = mask.sum(axis=1, keepdims=True) + 4
    return (_array(np.where(mask, 8 * beta * terms * _reverse_cumsum(magnitude), 0.0)),)


# --------------------------------------------------------------------------------------------
# combined_policy_loss
# --------------------------------------------------------------------------------------------

ENTROPIES = st.one_of(st.just(0.0), st.floats(0.0, 12.0, allow_subnormal=False))
COEFFICIENTS = st.one_of(st.sampled_from([0.0, 1e-3, 0.01, 0.1, 1.0]), st.floats(1e-3, 2.0))


def _combined_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    mask = source.mask()
    policy = source.matrix(mask.shape, REALS, -10.0, 10.0)
    kl = source.matrix(mask.shape, REALS, 0.0, 5.0)
    entropy = source.matrix(mask.shape, ENTROPIES, 0.0, 12.0)
    return {
        "policy_loss_per_token": _garbage(source, policy, mask),
        "kl_per_token": _garbage(source, kl, mask),
        "entropy_per_token": _garbage(source, entropy, mask),
        "response_mask": mask,
    }


def _aggregate_magnitude(magnitude: np.ndarray, mask: np.ndarray, mode: str) -> float:
    """:func:`rlmath.llm_reference.aggregate_loss` of non-negative entries, written out."""
    lengths = mask.sum(axis=1)
    nonempty = lengths > 0
    sums = np.where(mask, magnitude, 0.0).sum(axis=1)
    if mode == "token-mean":
        return float(sums.sum() / lengths.sum())
    if mode == "seq-mean-token-mean":
        return float(np.mean(sums[nonempty] / lengths[nonempty]))
    if mode == "seq-mean-token-sum":
        return float(np.mean(sums[nonempty]))
    return float(sums.sum() / (mask.shape[0] * mask.shape[1]))


def _combined_scale(example: Example) -> tuple[FloatArray, ...]:
    a, hyper = example.arguments, example.hyperparameters
    mask, mode = a["response_mask"], hyper["mode"]
    terms = mask.sum() + mask.shape[0] + 8
    value = (
        _aggregate_magnitude(np.abs(a["policy_loss_per_token"]), mask, mode)
        + hyper["kl_coefficient"] * _aggregate_magnitude(np.abs(a["kl_per_token"]), mask, mode)
        + hyper["entropy_coefficient"]
        * _aggregate_magnitude(np.abs(a["entropy_per_token"]), mask, mode)
    )
    return (_array(4 * terms * value),)


# --------------------------------------------------------------------------------------------
# cispo_token_loss
# --------------------------------------------------------------------------------------------

#: CISPO's lower bound: MiniMax-M1 clips only above (a large clip_low: 1 - clip_low <= 0).
CISPO_CLIP_LOW = st.one_of(st.sampled_from([1.0, 10.0, 0.2]), st.floats(0.05, 0.5))


def _cispo_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    mask = source.mask()
    shape = mask.shape
    old = source.matrix(shape, LOG_PROBS, -1000.0, 0.0)
    log_ratio = source.matrix(shape, LOG_RATIOS, -2.0, 2.0)
    log_ratio = _away_from(
        _bounded(log_ratio, hyper), _log_ratio_kinks(hyper["clip_low"], hyper["clip_high"], None)
    )
    advantages = source.matrix(shape, ADVANTAGES, -5.0, 5.0)
    return {
        "log_probs": _garbage(source, old + log_ratio, mask),
        "old_log_probs": old,
        "advantages": _garbage(source, advantages, mask),
        "response_mask": mask,
    }


def _cispo_parts(example: Example) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """Per token: |A| (1 + clip_high) (|log pi| + |log pi_old| + 3), the weight's error budget
    (a ratio formed from a difference of log-probs) times its size and the advantage."""
    a = example.arguments
    mask = a["response_mask"]
    new = np.where(mask, a["log_probs"], 0.0)
    old = np.where(mask, a["old_log_probs"], 0.0)
    adv = np.where(mask, np.abs(a["advantages"]), 0.0)
    budget = adv * (1 + example.hyperparameters["clip_high"]) * (np.abs(new) + np.abs(old) + 3)
    return budget, np.abs(new) + 1, mask


def _cispo_scale(example: Example) -> tuple[FloatArray, ...]:
    budget, size, mask = _cispo_parts(example)
    return (_array(np.where(mask, 8 * budget * size, 0.0)),)


def _cispo_gradient(example: Example) -> Gradients:
    a = example.arguments
    expected = llm.cispo_token_loss_gradient(
        *(a[k] for k in ("log_probs", "old_log_probs", "advantages", "response_mask")),
        **example.hyperparameters,
    )
    budget, _, mask = _cispo_parts(example)
    return {"log_probs": (expected, np.where(mask, 8 * budget, 0.0))}


# --------------------------------------------------------------------------------------------
# batch_whitened_advantages
# --------------------------------------------------------------------------------------------


def _batch_whitened_scale(example: Example) -> tuple[FloatArray, ...]:
    """The centred rewards u carry the rounding of the group means (of size |largest reward|),
    divided by the batch std of u."""
    a, hyper = example.arguments, example.hyperparameters
    size, largest, _, _ = _group_stats(Example(a, {"ddof": 0}))
    centred = llm.dr_grpo_advantages(a["rewards"], a["group_ids"])
    count = centred.size
    if centred.max() == centred.min():
        return (np.zeros(count),)
    std = float(np.std(centred, ddof=hyper["ddof"])) + hyper["epsilon"]
    spread = float(np.max(size * largest)) + float(np.max(np.abs(centred)))
    return (_array(np.full(count, 8 * count * (spread / std + math.sqrt(count)))),)


# --------------------------------------------------------------------------------------------
# gspo_sequence_ratio
# --------------------------------------------------------------------------------------------


def _gspo_ratio_arguments(source: _Source, hyper: dict[str, Any]) -> Arrays:
    mask = source.mask()
    old = source.matrix(mask.shape, LOG_PROBS, -1000.0, 0.0)
    log_ratio = _bounded(source.matrix(mask.shape, LOG_RATIOS, -1.0, 1.0), hyper)
    return {
        "log_probs": _garbage(source, old + log_ratio, mask),
        "old_log_probs": old,
        "response_mask": mask,
    }


def _gspo_ratio_scale(example: Example) -> tuple[FloatArray, ...]:
    a = example.arguments
    mask = a["response_mask"]
    lengths = mask.sum(axis=1)
    log_ratio = np.where(mask, a["log_probs"] - a["old_log_probs"], 0.0)
    magnitude = np.where(mask, np.abs(a["log_probs"]) + np.abs(a["old_log_probs"]), 0.0)
    mean = log_ratio.sum(axis=1) / np.maximum(lengths, 1)
    amplification = 2 + np.abs(mean) + magnitude.sum(axis=1) / np.maximum(lengths, 1)
    return (_array(8 * np.exp(mean) * amplification * (lengths + 4)),)


# --------------------------------------------------------------------------------------------
# The specs
# --------------------------------------------------------------------------------------------

_TOKEN_CONVENTIONS = """
Padded token tensors [B, T], time on axis 1; response_mask [B, T] booleans, true on response
tokens. Entries at masked positions are arbitrary finite garbage: ignore them; every [B, T]
output is 0 there. Masks include empty rows, one-token rows, holes, and T up to 256.
"""

_LLM_SPEC_LIST = [
    Spec(
        name="ppo_token_loss",
        reference=llm.ppo_token_loss,
        arguments=("log_probs", "old_log_probs", "advantages", "response_mask"),
        hyperparameters={
            "clip_low": CLIP_LOW,
            "clip_high": CLIP_HIGH,
            "dual_clip": st.sampled_from([None, 3.0, 2.0, 10.0]),
        },
        outputs=("per_token_loss",),
        conventions=_TOKEN_CONVENTIONS
        + """Output [B, T]: the per-token LOSS (minus the objective), not aggregated:
-min(rho A, clip(rho, 1 - clip_low, 1 + clip_high) A), rho = exp(log_probs - old_log_probs)
(DAPO's asymmetric clip); if dual_clip = c is not None, for A < 0 the objective is
max(that, c A). 0 where masked and where A = 0. Gradient w.r.t. log_probs checked.""",
        claim="ppo-clip-gradient, ppo-clip-lower-bound",
        draw_arguments=_drawn(_ppo_token_arguments),
        witnesses=_token_witnesses(_ppo_token_arguments),
        witness_hyperparameters={
            "clip_low": (0.2,),
            "clip_high": (0.28,),
            "dual_clip": (None, 3.0),
        },
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_ppo_token_scale,
        differentiable=("log_probs",),
        gradient=_ppo_token_gradient,
        assumptions=LOG_RATIO_ASSUMPTIONS,
    ),
    Spec(
        name="aggregate_loss",
        reference=llm.aggregate_loss,
        arguments=("per_token", "response_mask"),
        hyperparameters={"mode": st.sampled_from(llm.AGGREGATION_MODES)},
        outputs=("loss",),
        conventions=_TOKEN_CONVENTIONS
        + """Output: a scalar. n_b = response tokens of row b, N = sum n_b, rows with n_b = 0
are EXCLUDED from the seq means: "token-mean" sum / N; "seq-mean-token-mean" mean over
non-empty rows of (row sum / n_b); "seq-mean-token-sum" mean over non-empty rows of row sums;
"seq-mean-token-sum-norm" total sum / (B * T) (all rows, constant denominator, Dr. GRPO).""",
        claim="none (definitions)",
        draw_arguments=_drawn(_aggregate_arguments),
        witnesses=_token_witnesses(_aggregate_arguments),
        witness_hyperparameters={"mode": llm.AGGREGATION_MODES},
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_aggregate_scale,
    ),
    Spec(
        name="grpo_advantages",
        reference=llm.grpo_advantages,
        arguments=("rewards", "group_ids"),
        hyperparameters={
            "epsilon": st.sampled_from([0.0, 1e-6, 1e-4]),
            "ddof": st.sampled_from([0, 1]),
        },
        outputs=("advantages",),
        conventions="""
rewards [B] floats, group_ids [B] integers (shuffled, non-contiguous, unequal group sizes).
Output [B]: (r - group mean) / (group std + epsilon), std with ddof (1 = torch.std); EXACTLY 0
for every member of a group whose rewards are all equal (including groups of one).""",
        claim="baseline-unbiased",
        draw_arguments=_drawn(_grouped(1)),
        witnesses=_group_witnesses(1),
        witness_hyperparameters={"epsilon": (1e-6,), "ddof": (0, 1)},
        witness_reason=_GROUP_WITNESSES,
        error_scale=_grpo_scale,
    ),
    Spec(
        name="rloo_advantages",
        reference=llm.rloo_advantages,
        arguments=("rewards", "group_ids"),
        hyperparameters={},
        outputs=("advantages",),
        conventions="""
rewards [B] floats, group_ids [B] integers (shuffled, every group of size >= 2). Output [B]:
r_i minus the mean of the OTHER rewards of its group, = n / (n - 1) (r_i - group mean).""",
        claim="baseline-unbiased",
        draw_arguments=_drawn(_grouped(2)),
        witnesses=_group_witnesses(2),
        witness_hyperparameters={},
        witness_reason=_GROUP_WITNESSES,
        error_scale=_rloo_scale,
    ),
    Spec(
        name="masked_whiten",
        reference=llm.masked_whiten,
        arguments=("values", "response_mask"),
        hyperparameters={
            "epsilon": st.sampled_from([0.0, 1e-8]),
            "ddof": st.sampled_from([0, 1]),
            "shift_mean": st.booleans(),
        },
        outputs=("whitened",),
        conventions=_TOKEN_CONVENTIONS
        + """At least 2 response tokens. Output [B, T]: (x - mu) / sqrt(var + epsilon) on the
response tokens (epsilon INSIDE the square root, as verl), mu and var (ddof) over the response
tokens of the whole batch; + mu if not shift_mean; RE-MASKED: 0 at padding. All response values
equal: 0 (mu without the shift).""",
        claim="none (a definition)",
        draw_arguments=_drawn(_whiten_arguments),
        witnesses=_token_witnesses(_whiten_arguments),
        witness_hyperparameters={"epsilon": (0.0, 1e-8), "ddof": (1,), "shift_mean": (True, False)},
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_whiten_scale,
    ),
    Spec(
        name="gspo_loss",
        reference=llm.gspo_loss,
        arguments=("log_probs", "old_log_probs", "advantages", "response_mask"),
        hyperparameters={"clip_low": CLIP_LOW, "clip_high": CLIP_HIGH},
        outputs=("loss",),
        conventions=_TOKEN_CONVENTIONS
        + """advantages [B], one per sequence. s_b = exp(mean over the row's response tokens of
(log_probs - old_log_probs)) (geometric mean of token ratios). Output: scalar LOSS,
-mean over NON-EMPTY rows of min(s_b A_b, clip(s_b, 1 - clip_low, 1 + clip_high) A_b).
Gradient w.r.t. log_probs checked (each sequence's mean log-ratio stays off the kinks).""",
        claim="none (a definition)",
        draw_arguments=_drawn(_gspo_arguments),
        witnesses=_token_witnesses(_gspo_arguments),
        witness_hyperparameters={"clip_low": (0.2,), "clip_high": (0.28,)},
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_gspo_scale,
        differentiable=("log_probs",),
        gradient=_gspo_gradient,
        assumptions=LOG_RATIO_ASSUMPTIONS,
    ),
    Spec(
        name="truncated_importance_weights",
        reference=llm.truncated_importance_weights,
        arguments=("old_log_probs", "rollout_log_probs", "response_mask"),
        hyperparameters={"cap": st.sampled_from([2.0, 1.0, 5.0, math.inf])},
        outputs=("weights",),
        conventions=_TOKEN_CONVENTIONS
        + """Output [B, T]: min(exp(old_log_probs - rollout_log_probs), cap): trainer pi_old in
the numerator, inference engine mu in the denominator; 0 where masked.""",
        claim="importance-sampling-unbiased",
        draw_arguments=_drawn(_tis_arguments),
        witnesses=_token_witnesses(_tis_arguments),
        witness_hyperparameters={"cap": (2.0, math.inf)},
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_tis_scale,
        assumptions=LOG_RATIO_ASSUMPTIONS,
    ),
    Spec(
        name="masked_importance_weights",
        reference=llm.masked_importance_weights,
        arguments=("old_log_probs", "rollout_log_probs", "response_mask"),
        hyperparameters={"cap": st.sampled_from([1.0, 2.0, 1.0, 5.0, math.inf])},
        outputs=("weights",),
        conventions=_TOKEN_CONVENTIONS
        + """Output [B, T]: rho = exp(old_log_probs - rollout_log_probs) where rho <= cap, 0 where
rho > cap (MIS: the token is dropped, not truncated); a ratio EQUAL to the cap is kept (inputs
include tokens with old_log_probs == rollout_log_probs, rho = 1 exactly, and cap = 1); trainer
pi_old in the numerator, inference engine mu in the denominator; 0 where masked.""",
        claim="none (a definition)",
        draw_arguments=_drawn(_mis_arguments),
        witnesses=_token_witnesses(_mis_arguments),
        witness_hyperparameters={"cap": (1.0, 2.0)},
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_tis_scale,
        assumptions=LOG_RATIO_ASSUMPTIONS,
    ),
    Spec(
        name="kl_penalty_per_token",
        reference=llm.kl_penalty_per_token,
        arguments=("log_probs", "reference_log_probs", "response_mask"),
        hyperparameters={"estimator": st.sampled_from(["k1", "k2", "k3"])},
        outputs=("kl",),
        conventions=_TOKEN_CONVENTIONS
        + """Per-token estimate of KL(pi_theta || pi_ref), tokens sampled from pi_theta; in the LOSS
(differentiated w.r.t. log_probs; reference_log_probs constant). With log r = reference_log_probs
- log_probs: k1 = -log r, k2 = (log r)^2 / 2, k3 = (r - 1) - log r (verl "kl", "mse",
"low_var_kl" without its [-10, 10] clamp). Output [B, T], 0 where masked. Gradient w.r.t.
log_probs checked (pathwise: 1, -log r, 1 - r).""",
        claim="kl-estimators-bias-variance, kl-estimator-gradients",
        draw_arguments=_drawn(_kl_token_arguments),
        witnesses=_token_witnesses(_kl_token_arguments),
        witness_hyperparameters={"estimator": ("k1", "k2", "k3")},
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_kl_token_scale,
        differentiable=("log_probs",),
        gradient=_kl_token_gradient,
        assumptions=LOG_RATIO_ASSUMPTIONS,
    ),
    Spec(
        name="kl_reward_to_go",
        reference=llm.kl_reward_to_go,
        arguments=("log_probs", "reference_log_probs", "response_mask"),
        hyperparameters={"kl_coefficient": COEFFICIENTS},
        outputs=("kl_return",),
        conventions=_TOKEN_CONVENTIONS
        + """The KL penalty as a REWARD (detached): per-token reward -beta * k1 with
k1 = log_probs - reference_log_probs (KL(pi || pi_ref), tokens from pi = the rollout policy),
beta = kl_coefficient. Output [B, T]: its undiscounted reward-to-go, G[b, t] = sum over response
tokens t' >= t of the row (t included) of -beta k1[b, t']; masked tokens (padding, holes) add
nothing and get 0.""",
        claim="reward-to-go-unbiased, kl-estimator-gradients",
        draw_arguments=_drawn(_kl_token_arguments),
        witnesses=_token_witnesses(_kl_token_arguments),
        witness_hyperparameters={"kl_coefficient": (0.1,)},
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_kl_reward_scale,
        assumptions=LOG_RATIO_ASSUMPTIONS,
    ),
    Spec(
        name="combined_policy_loss",
        reference=llm.combined_policy_loss,
        arguments=(
            "policy_loss_per_token",
            "kl_per_token",
            "entropy_per_token",
            "response_mask",
        ),
        hyperparameters={
            "kl_coefficient": COEFFICIENTS,
            "entropy_coefficient": COEFFICIENTS,
            "mode": st.sampled_from(llm.AGGREGATION_MODES),
        },
        outputs=("loss",),
        conventions=_TOKEN_CONVENTIONS
        + """Output: the scalar actor LOSS agg(policy) + kl_coefficient * agg(kl)
- entropy_coefficient * agg(entropy): the KL penalty ADDED, the entropy bonus SUBTRACTED, each
term aggregated in the same mode (as aggregate_loss, normaliser T for
"seq-mean-token-sum-norm"). entropy_per_token >= 0 at response tokens.""",
        claim="none (a definition)",
        draw_arguments=_drawn(_combined_arguments),
        witnesses=_token_witnesses(_combined_arguments),
        witness_hyperparameters={
            "kl_coefficient": (0.1,),
            "entropy_coefficient": (0.01,),
            "mode": llm.AGGREGATION_MODES,
        },
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_combined_scale,
    ),
    Spec(
        name="cispo_token_loss",
        reference=llm.cispo_token_loss,
        arguments=("log_probs", "old_log_probs", "advantages", "response_mask"),
        hyperparameters={"clip_low": CISPO_CLIP_LOW, "clip_high": CLIP_HIGH},
        outputs=("per_token_loss",),
        conventions=_TOKEN_CONVENTIONS
        + """Output [B, T]: the per-token LOSS -sg[w] A log_probs, w = clip(rho, max(1 - clip_low,
0), 1 + clip_high), rho = exp(log_probs - old_log_probs), sg = stop-gradient (detached); not
aggregated; 0 where masked. clip_low >= 1 (drawn often) means no lower clip, as MiniMax-M1.
Gradient w.r.t. log_probs checked: -w A for every token, clipped or not.""",
        claim="none (a definition)",
        draw_arguments=_drawn(_cispo_arguments),
        witnesses=_token_witnesses(_cispo_arguments),
        witness_hyperparameters={"clip_low": (1.0, 0.2), "clip_high": (0.28,)},
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_cispo_scale,
        differentiable=("log_probs",),
        gradient=_cispo_gradient,
        assumptions=LOG_RATIO_ASSUMPTIONS,
    ),
    Spec(
        name="batch_whitened_advantages",
        reference=llm.batch_whitened_advantages,
        arguments=("rewards", "group_ids"),
        hyperparameters={
            "epsilon": st.sampled_from([0.0, 1e-8, 1e-6]),
            "ddof": st.sampled_from([0, 1]),
        },
        outputs=("advantages",),
        conventions="""
rewards [B] floats, group_ids [B] integers (shuffled, non-contiguous, unequal group sizes, groups
of one, tied groups). REINFORCE++-baseline: u = r - (mean of the row's group), then whitened
with the statistics of the WHOLE batch: (u - mean(u)) / (std(u) + epsilon), std with ddof
(1 = torch.std), epsilon on the std; EXACTLY 0 everywhere when all u are equal (u is exactly 0
for a tied group or a group of one).""",
        claim="baseline-unbiased",
        draw_arguments=_drawn(_grouped(1)),
        witnesses=_group_witnesses(1),
        witness_hyperparameters={"epsilon": (1e-8,), "ddof": (0, 1)},
        witness_reason=_GROUP_WITNESSES,
        error_scale=_batch_whitened_scale,
    ),
    Spec(
        name="gspo_sequence_ratio",
        reference=llm.gspo_sequence_ratio,
        arguments=("log_probs", "old_log_probs", "response_mask"),
        hyperparameters={},
        outputs=("sequence_ratio",),
        conventions=_TOKEN_CONVENTIONS
        + """Output [B]: s_b = exp((1 / |y_b|) sum_t m[b, t] (log_probs - old_log_probs)), the
GEOMETRIC mean of the token ratios, |y_b| = response tokens of row b; s_b = 1 for an empty
row.""",
        claim="none (a definition)",
        draw_arguments=_drawn(_gspo_ratio_arguments),
        witnesses=_token_witnesses(_gspo_ratio_arguments),
        witness_hyperparameters={},
        witness_reason=_TOKEN_WITNESSES,
        error_scale=_gspo_ratio_scale,
        assumptions=LOG_RATIO_ASSUMPTIONS,
    ),
]

#: The LLM-RL specs, by name (to be merged into :data:`rlmath.specs.SPECS`).
LLM_SPECS: dict[str, Spec] = {spec.name: spec for spec in _LLM_SPEC_LIST}
