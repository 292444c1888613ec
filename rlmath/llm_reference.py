r"""Float64 reference implementations of the losses and advantages of LLM reinforcement learning.

The token-level counterparts of :mod:`rlmath.reference`: PPO with DAPO's asymmetric clip and
the dual clip, the four loss-aggregation modes and the token mean under gradient accumulation,
GRPO / Dr. GRPO / RLOO / REINFORCE++ advantages from scalar rewards with group ids, masked
whitening, GSPO's sequence-level ratio and loss, CISPO's clipped detached weight, the TIS and
MIS corrections of the inference-engine / trainer mismatch, per-token KL terms (in the loss and
in the reward), and the combined loss. Each is the definition written out plainly in NumPy, in
float64 and in the numerically stable form (ratios formed from log-probability differences),
validated in its first lines.

Conventions shared by every function (and stated again in each docstring):

- **Padded token tensors.** Token arrays have shape ``[B, T]``: ``B`` sequences (rows), time
  (token position) on axis 1. ``response_mask[b, t]`` (booleans or 0/1) is true on the response
  tokens the loss covers; prompt and padding positions are false. Entries of any token array at
  masked-out positions are **ignored** (they may hold anything, NaN included, as real padding
  does) and every ``[B, T]`` output is exactly ``0`` there.
- **Log-probabilities.** ``log_probs`` $= \log\pi_\theta(y_t \mid x, y_{<t})$ of the policy
  being optimised (the only argument gradients flow through); ``old_log_probs``
  $= \log\pi_{\theta_\mathrm{old}}$ recomputed by the trainer for the policy that generated the
  data; ``rollout_log_probs`` $= \log\mu$ reported by the inference engine (vLLM, SGLang) that
  sampled it; ``reference_log_probs`` $= \log\pi_\mathrm{ref}$. Ratios are
  $\exp(\text{difference of log-probs})$, never a quotient of probabilities.
- **Losses, not objectives.** Every ``*_loss`` is to be *minimised* and equals minus the
  objective of the cited paper. Per-token losses are ``[B, T]`` matrices, reduced to a scalar
  by :func:`aggregate_loss`.
- **Stop-gradient.** Advantages, importance weights (TIS/MIS, CISPO's clipped ratio) and
  normalisers are constants: the caller detaches them. Each docstring says what is detached.
- **Groups.** ``group_ids`` is an integer array ``[B]``: rows with equal ids are samples for
  the same prompt. Groups need not be contiguous or equally sized.
- **KL direction.** The per-token KL terms estimate $\mathrm{KL}(\pi_\theta \,\|\,
  \pi_\mathrm{ref})$ from tokens sampled from the policy, with
  :func:`rlmath.reference.kl_estimator_k1` / ``k2`` / ``k3`` (whose convention they inherit).

All outputs are float64 (Python ``float`` for scalars).

References (implementations whose conventions were compared; cited per function):
    verl, ``verl/trainer/ppo/core_algos.py`` (``agg_loss``, ``compute_policy_loss``,
    ``compute_grpo_outcome_advantage``, ``compute_rloo_outcome_advantage``,
    ``compute_policy_loss_gspo``, ``compute_policy_loss_cispo``, ``kl_penalty``) and
    ``verl/utils/torch_functional.py`` (``masked_mean``, ``masked_var``, ``masked_whiten``),
    volcengine/verl, 2025. TRL, ``trl/trainer/grpo_trainer.py`` (``GRPOTrainer``,
    ``loss_type`` in ``grpo``, ``bnpo``, ``dr_grpo``, ``dapo``), huggingface/trl, 2025.
    OpenRLHF, ``openrlhf/trainer/ppo_utils/experience_maker.py`` (``rloo``,
    ``reinforce_baseline``, ``group_norm`` advantage estimators), OpenRLHF/OpenRLHF, 2025.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlmath import reference
from rlmath._validation import (
    FloatArray,
    as_flag_array,
    as_float_array,
    check_finite,
    check_interval,
    first_index,
)

__all__ = [
    "AGGREGATION_MODES",
    "accumulated_token_mean",
    "aggregate_loss",
    "batch_whitened_advantages",
    "cispo_token_loss",
    "cispo_token_loss_gradient",
    "combined_policy_loss",
    "dr_grpo_advantages",
    "grpo_advantages",
    "gspo_loss",
    "gspo_loss_gradient",
    "gspo_sequence_ratio",
    "kl_penalty_per_token",
    "kl_reward_to_go",
    "masked_importance_weights",
    "masked_whiten",
    "ppo_token_loss",
    "ppo_token_loss_gradient",
    "rloo_advantages",
    "truncated_importance_weights",
]

BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

#: The loss-aggregation modes of :func:`aggregate_loss`, named as in verl's ``agg_loss``.
AGGREGATION_MODES = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)


# --------------------------------------------------------------------------------------------
# Validation shared by several functions
# --------------------------------------------------------------------------------------------


def _response_mask(response_mask: Any, name: str = "response_mask") -> BoolArray:
    """A boolean ``[B, T]`` mask with ``B, T >= 1``."""
    mask = as_flag_array(response_mask, name)
    if mask.ndim != 2 or mask.shape[0] < 1 or mask.shape[1] < 1:
        raise ValueError(f"{name} must have shape [B, T] with B, T >= 1, got shape {mask.shape}")
    return mask


def _token_array(value: Any, name: str, mask: BoolArray) -> FloatArray:
    """A float64 ``[B, T]`` array of the mask's shape, finite where ``mask``, 0 elsewhere."""
    array = as_float_array(value, name)
    if array.shape != mask.shape:
        raise ValueError(
            f"{name} must have the shape of response_mask {mask.shape}, got {array.shape}"
        )
    array = np.where(mask, array, 0.0)
    check_finite(array, f"{name} (where response_mask)")
    return array


def _rewards(rewards: Any, name: str = "rewards") -> FloatArray:
    array = as_float_array(rewards, name)
    if array.ndim != 1 or array.size < 1:
        raise ValueError(f"{name} must have shape [B] with B >= 1, got shape {array.shape}")
    check_finite(array, name)
    return array


def _group_index(group_ids: Any, size: int) -> tuple[IntArray, IntArray]:
    """Each row's group number ``0..G-1`` (by first appearance order of ``np.unique``) and sizes."""
    ids = np.asarray(group_ids)
    if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"group_ids must be an array of integers, got dtype {ids.dtype}")
    if ids.shape != (size,):
        raise ValueError(f"group_ids must have the shape of rewards ({size},), got {ids.shape}")
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    return inverse.reshape(size).astype(np.int64), counts.astype(np.int64)


def _epsilon(epsilon: Any) -> float:
    return check_interval(epsilon, "epsilon", low=0.0, high=np.inf, high_open=True)


def _ddof(ddof: Any) -> int:
    if isinstance(ddof, bool) or ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
    return int(ddof)


def _clip_range(clip_low: Any, clip_high: Any) -> tuple[float, float]:
    low = check_interval(clip_low, "clip_low", low=0.0, high=np.inf, low_open=True)
    high = check_interval(clip_high, "clip_high", low=0.0, high=np.inf, low_open=True)
    return low, high


def _log_ratio_to_ratio(log_ratio: FloatArray) -> FloatArray:
    with np.errstate(over="ignore"):  # a log-ratio above 709.78 overflows to +inf, as it should
        result: FloatArray = np.exp(log_ratio)
    return result


def _group_means(values: FloatArray, inverse: IntArray, counts: IntArray) -> FloatArray:
    r"""Per-row mean of the row's group, computed on the values centred by the group's first value.

    Centring on one member (an exact shift of each group by a value inside its range) keeps the
    summed deviations small, so groups of large, nearly equal rewards keep their digits.
    """
    first = np.zeros(counts.size)
    first[inverse[::-1]] = values[::-1]  # the first member of each group (last write wins)
    shifted = values - first[inverse]
    means = first + np.bincount(inverse, weights=shifted, minlength=counts.size) / counts
    result: FloatArray = means[inverse]
    return result


def _constant_groups(values: FloatArray, inverse: IntArray, groups: int) -> BoolArray:
    """Per row: whether every member of the row's group has the same value."""
    high = np.full(groups, -np.inf)
    low = np.full(groups, np.inf)
    np.maximum.at(high, inverse, values)
    np.minimum.at(low, inverse, values)
    result: BoolArray = (high == low)[inverse]
    return result


# --------------------------------------------------------------------------------------------
# Per-token PPO (DAPO clip-higher, dual clip)
# --------------------------------------------------------------------------------------------


def _ppo_token_parts(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    response_mask: Any,
    clip_low: Any,
    clip_high: Any,
    dual_clip: Any,
) -> tuple[FloatArray, FloatArray, BoolArray, float, float, float]:
    mask = _response_mask(response_mask)
    new = _token_array(log_probs, "log_probs", mask)
    old = _token_array(old_log_probs, "old_log_probs", mask)
    adv = _token_array(advantages, "advantages", mask)
    low, high = _clip_range(clip_low, clip_high)
    c = (
        np.inf
        if dual_clip is None
        else check_interval(dual_clip, "dual_clip", low=1.0, high=np.inf, low_open=True)
    )
    with np.errstate(over="ignore"):  # a difference beyond the float range is +-inf: ratio inf/0
        ratio = _log_ratio_to_ratio(new - old)
    return ratio, adv, mask, low, high, c


def ppo_token_loss(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    response_mask: Any,
    *,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
) -> FloatArray:
    r"""Per-token PPO clipped loss with an asymmetric clip range and an optional dual clip.

    $$ \begin{aligned}
       \ell_{b,t} &= -m_{b,t} \, J_{b,t}, \qquad J_{b,t} = \begin{cases}
       K_{b,t} & A_{b,t} \ge 0 \text{ or no dual clip,} \\
       \max\big(K_{b,t},\; c \, A_{b,t}\big) & A_{b,t} < 0, \end{cases} \\
       K_{b,t} &= \min\big(\rho_{b,t} A_{b,t},\;
       \operatorname{clip}(\rho_{b,t}, 1 - \epsilon_\mathrm{low}, 1 + \epsilon_\mathrm{high})
       A_{b,t}\big), \end{aligned} $$

    with $K_{b,t}$ PPO's clipped objective, $\rho_{b,t} = \exp(\log\pi_\theta - \log\pi_{\theta_\mathrm{old}})$ at token
    $(b, t)$, $m$ = ``response_mask``, $\epsilon_\mathrm{low}$ = ``clip_low``,
    $\epsilon_\mathrm{high}$ = ``clip_high`` (DAPO's clip-higher: a larger upper bound lets
    low-probability tokens grow) and $c$ = ``dual_clip``. Where $A_{b,t} = 0$ the loss is $0$
    (also when $\rho$ overflows). For $A < 0$ without a dual clip the loss grows without bound
    as $\rho \to \infty$ ($+\infty$ where $\rho$ overflows); the dual clip caps it at $-cA$.

    Conventions: a loss, $\ell = -J$ (minimise it), per token, **not aggregated** (use
    :func:`aggregate_loss`); ``[B, T]`` with time on axis 1; $0$ where ``response_mask`` is
    false; ``old_log_probs`` and ``advantages`` are constants (detached); token-level
    advantages (broadcast a sequence advantage ``[B]`` over its row yourself); float64. This is
    verl's ``compute_policy_loss`` (``clip_ratio_low``, ``clip_ratio_high``, ``clip_ratio_c``)
    before ``agg_loss``.

    Claim: ``ppo-clip-gradient`` and ``ppo-clip-lower-bound`` (token by token).

    Args:
        log_probs: ``[B, T]``, $\log\pi_\theta$ of the sampled tokens.
        old_log_probs: ``[B, T]``, $\log\pi_{\theta_\mathrm{old}}$ of the same tokens.
        advantages: ``[B, T]``, $A_{b,t}$.
        response_mask: ``[B, T]`` booleans or 0/1, true on response tokens.
        clip_low: $\epsilon_\mathrm{low} > 0$ (lower bound $1 - \epsilon_\mathrm{low}$).
        clip_high: $\epsilon_\mathrm{high} > 0$ (upper bound $1 + \epsilon_\mathrm{high}$;
            DAPO uses 0.28 with ``clip_low = 0.2``); ``inf`` allowed.
        dual_clip: ``None`` (no dual clip) or $c > 1$ (Ye et al. and verl use 3).

    Returns:
        ``[B, T]`` float64 array of per-token losses.

    Raises:
        TypeError: if an argument is not numeric, or the mask is not boolean/0-1 numbers.
        ValueError: on shapes other than the mask's ``[B, T]``, non-finite values at response
            positions, mask entries other than 0/1, ``clip_low <= 0``, ``clip_high <= 0`` or
            ``dual_clip <= 1``.

    Examples:
        By hand, $\epsilon_\mathrm{low} = 0.2$, $\epsilon_\mathrm{high} = 0.25$, $c = 3$.
        Row 0: $\rho = 1$, $A = 1$: $J = 1$; $\rho = 2$, $A = 1$: $\min(2, 1.25) = 1.25$;
        $\rho = 0.5$, $A = -1$: $\min(-0.5, -0.8) = -0.8$. Row 1 (one response token):
        $\rho = 10$, $A = -1$: $\min(-10, -1.25) = -10$, dual-clipped to $\max(-10, -3) = -3$.

        >>> log_probs = [[0.0, np.log(2.0), np.log(0.5)], [np.log(10.0), 0.0, 0.0]]
        >>> advantages = [[1.0, 1.0, -1.0], [-1.0, 5.0, 5.0]]
        >>> ppo_token_loss(log_probs, np.zeros((2, 3)), advantages, [[1, 1, 1], [1, 0, 0]],
        ...                clip_low=0.2, clip_high=0.25, dual_clip=3.0)
        array([[-1.  , -1.25,  0.8 ],
               [ 3.  ,  0.  ,  0.  ]])

    References:
        Schulman et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, 2017,
        eq. 7. Yu et al., *DAPO: An Open-Source LLM Reinforcement Learning System at Scale*,
        arXiv:2503.14476, 2025, eq. 8-10 (clip-higher). Ye et al., *Mastering Complex Control
        in MOBA Games with Deep Reinforcement Learning*, AAAI 2020 (dual clip). verl,
        ``verl/trainer/ppo/core_algos.py``, ``compute_policy_loss``.
    """
    ratio, adv, mask, low, high, c = _ppo_token_parts(
        log_probs, old_log_probs, advantages, response_mask, clip_low, clip_high, dual_clip
    )
    with np.errstate(invalid="ignore"):  # inf * 0 where A = 0 or c = inf: replaced below
        clipped = np.clip(ratio, 1.0 - low, 1.0 + high)
        objective = np.minimum(ratio * adv, clipped * adv)
        objective = np.where(adv < 0, np.maximum(objective, c * adv), objective)
    objective = np.where((adv == 0) | ~mask, 0.0, objective)
    result: FloatArray = -objective + 0.0  # + 0.0: no -0 entries
    return result


def ppo_token_loss_gradient(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    response_mask: Any,
    *,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
) -> FloatArray:
    r"""Derivative of each entry of :func:`ppo_token_loss` with respect to its ``log_probs`` entry.

    $$ \frac{\partial \ell_{b,t}}{\partial \log\pi_\theta(y_{b,t})} = -m_{b,t} \,
       \rho_{b,t} A_{b,t} \, \mathbb{1}\big[(A_{b,t} > 0 \land \rho_{b,t} \le
       1 + \epsilon_\mathrm{high}) \lor (A_{b,t} < 0 \land 1 - \epsilon_\mathrm{low} \le
       \rho_{b,t} \le c)\big], $$

    using $\partial\rho / \partial\log\pi_\theta = \rho$; the clipped branches (and the dual
    clip's constant $cA$) have zero derivative. $\ell_{b,t}$ depends only on its own
    ``log_probs`` entry, so this matrix is also the gradient of ``per_token.sum()``; the
    gradient of an aggregated loss is it times the aggregation weights (:func:`aggregate_loss`).
    At the kinks $\rho = 1 \pm \epsilon$, $\rho = c$ the unclipped side is returned.

    Conventions: as :func:`ppo_token_loss` (``[B, T]``, $0$ where masked, $c = \infty$ when
    ``dual_clip`` is ``None``); float64.

    Claim: ``ppo-clip-gradient``.

    Args:
        log_probs: ``[B, T]``, $\log\pi_\theta$.
        old_log_probs: ``[B, T]``, $\log\pi_{\theta_\mathrm{old}}$.
        advantages: ``[B, T]``.
        response_mask: ``[B, T]`` booleans or 0/1.
        clip_low: $\epsilon_\mathrm{low} > 0$.
        clip_high: $\epsilon_\mathrm{high} > 0$.
        dual_clip: ``None`` or $c > 1$.

    Returns:
        ``[B, T]`` float64 array.

    Raises:
        TypeError: as :func:`ppo_token_loss`.
        ValueError: as :func:`ppo_token_loss`.

    Examples:
        The example of :func:`ppo_token_loss`: only $(0, 0)$ is inside the range (gradient
        $-\rho A = -1$); $(0, 1)$ is clipped ($\rho = 2 > 1.25$, $A > 0$), $(0, 2)$ too
        ($\rho = 0.5 < 0.8$, $A < 0$), and $(1, 0)$ is dual-clipped ($\rho = 10 > c = 3$).

        >>> log_probs = [[0.0, np.log(2.0), np.log(0.5)], [np.log(10.0), 0.0, 0.0]]
        >>> advantages = [[1.0, 1.0, -1.0], [-1.0, 5.0, 5.0]]
        >>> ppo_token_loss_gradient(log_probs, np.zeros((2, 3)), advantages,
        ...                         [[1, 1, 1], [1, 0, 0]], clip_low=0.2, clip_high=0.25,
        ...                         dual_clip=3.0)
        array([[-1.,  0.,  0.],
               [ 0.,  0.,  0.]])

    References:
        Schulman et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, 2017,
        eq. 7 and Fig. 1.
    """
    ratio, adv, mask, low, high, c = _ppo_token_parts(
        log_probs, old_log_probs, advantages, response_mask, clip_low, clip_high, dual_clip
    )
    active = ((adv > 0) & (ratio <= 1.0 + high)) | ((adv < 0) & (ratio >= 1.0 - low) & (ratio <= c))
    result: FloatArray = np.where(active & mask, -ratio * adv, 0.0) + 0.0
    return result


# --------------------------------------------------------------------------------------------
# Loss aggregation
# --------------------------------------------------------------------------------------------


def aggregate_loss(
    per_token: Any, response_mask: Any, mode: str, *, normaliser: float | None = None
) -> float:
    r"""Reduce a per-token loss matrix to a scalar by one of the four modes in use.

    With $m$ = ``response_mask``, $\ell$ = ``per_token``, $n_b = \sum_t m_{b,t}$ the response
    length of row $b$, $N = \sum_b n_b$ and $\mathcal{B} = \{b : n_b > 0\}$ the non-empty rows:

    $$ \begin{aligned}
       \text{token-mean:} &\quad \frac{1}{N} \sum_{b,t} m_{b,t} \ell_{b,t}, \\
       \text{seq-mean-token-mean:} &\quad \frac{1}{|\mathcal{B}|} \sum_{b \in \mathcal{B}}
           \frac{1}{n_b} \sum_t m_{b,t} \ell_{b,t}, \\
       \text{seq-mean-token-sum:} &\quad \frac{1}{|\mathcal{B}|} \sum_{b \in \mathcal{B}}
           \sum_t m_{b,t} \ell_{b,t}, \\
       \text{seq-mean-token-sum-norm:} &\quad \frac{1}{B \, L} \sum_{b,t} m_{b,t} \ell_{b,t},
       \end{aligned} $$

    where $L$ = ``normaliser`` (default ``T``, the padded length). token-mean weights every
    token equally (DAPO's token-level loss, TRL ``bnpo``/``dapo``); seq-mean-token-mean weights
    every *sequence* equally, so a token of a long response counts less (the original GRPO, TRL
    ``grpo``); seq-mean-token-sum-norm is Dr. GRPO's fix of that length bias, a **constant**
    denominator: pass the generation budget (max response length) as ``normaliser`` so it
    does not change with the batch (TRL ``dr_grpo`` divides by ``B * max_completion_length``;
    verl's ``agg_loss`` divides by ``loss_scale_factor``, default ``T``).

    All-masked rows (empty responses) contribute $0$ and are **not counted** in the seq-mean
    modes' $|\mathcal{B}|$ (as in current verl, which masks them out of the sequence mean; older
    verl divided by ``B`` and produced NaN in seq-mean-token-mean). In seq-mean-token-sum-norm
    they count in $B$: the denominator is meant to be a constant. A batch without any response
    token raises ``ValueError`` in every mode.

    Conventions: ``[B, T]`` with time on axis 1; values at masked positions are ignored; a mean
    over the *local* batch (for the global token count under gradient accumulation see
    :func:`accumulated_token_mean`); the normalisers are constants; float64.

    Claim: ``combined-policy-loss-reference`` (every mode, against the weights written from
    these definitions); ``gradient-accumulation-normalisation`` (token-mean). The choice changes
    the weight of each token in the gradient: token-mean gives weight $1/N$,
    seq-mean-token-mean $1/(|\mathcal{B}| n_b)$.

    Args:
        per_token: ``[B, T]`` per-token losses (e.g. :func:`ppo_token_loss`).
        response_mask: ``[B, T]`` booleans or 0/1.
        mode: one of :data:`AGGREGATION_MODES`.
        normaliser: $L > 0$, only for ``"seq-mean-token-sum-norm"`` (default ``T``).

    Returns:
        The aggregated loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric, or ``mode`` is not a string.
        ValueError: on an unknown ``mode``, mismatched shapes, non-finite values at response
            positions, a batch with no response token, ``normaliser <= 0``, or ``normaliser``
            given for a mode other than ``"seq-mean-token-sum-norm"``.

    Examples:
        Row 0 has losses (1, 3) (two tokens), row 1 the loss 5 (one token), row 2 is empty.
        token-mean $(1 + 3 + 5)/3 = 3$; seq-mean-token-mean $(2 + 5)/2 = 3.5$;
        seq-mean-token-sum $(4 + 5)/2 = 4.5$; with $L = 4.5$, $B = 3$:
        seq-mean-token-sum-norm $9 / (3 \cdot 4.5) = 2/3$.

        >>> losses, mask = [[1.0, 3.0], [5.0, 7.0], [9.0, 9.0]], [[1, 1], [1, 0], [0, 0]]
        >>> [aggregate_loss(losses, mask, mode) for mode in AGGREGATION_MODES[:3]]
        [3.0, 3.5, 4.5]
        >>> aggregate_loss(losses, mask, "seq-mean-token-sum-norm", normaliser=4.5)
        0.6666666666666666

    References:
        Liu et al., *Understanding R1-Zero-Like Training: A Critical Perspective* (Dr. GRPO),
        arXiv:2503.20783, 2025, Sec. 3.1 and eq. 3. Yu et al., *DAPO*, arXiv:2503.14476, 2025,
        Sec. 3.3 (token-level policy-gradient loss). Shao et al., *DeepSeekMath*,
        arXiv:2402.03300, 2024, eq. 3. verl, ``verl/trainer/ppo/core_algos.py``, ``agg_loss``;
        TRL, ``trl/trainer/grpo_trainer.py``, ``GRPOTrainer._compute_loss``.
    """
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a string, got {type(mode).__name__}")
    if mode not in AGGREGATION_MODES:
        raise ValueError(f"mode must be one of {AGGREGATION_MODES}, got {mode!r}")
    mask = _response_mask(response_mask)
    loss = _token_array(per_token, "per_token", mask)
    if normaliser is not None and mode != "seq-mean-token-sum-norm":
        raise ValueError(f"normaliser applies only to mode 'seq-mean-token-sum-norm', got {mode!r}")
    lengths = mask.sum(axis=1)
    if lengths.sum() == 0:
        raise ValueError("response_mask must select at least one response token, got none")
    sums = loss.sum(axis=1)
    if mode == "token-mean":
        return float(sums.sum() / lengths.sum())
    nonempty = lengths > 0
    if mode == "seq-mean-token-mean":
        return float(np.mean(sums[nonempty] / lengths[nonempty]))
    if mode == "seq-mean-token-sum":
        return float(np.mean(sums[nonempty]))
    constant = (
        float(mask.shape[1])
        if normaliser is None
        else check_interval(
            normaliser, "normaliser", low=0.0, high=np.inf, low_open=True, high_open=True
        )
    )
    return float(sums.sum() / (mask.shape[0] * constant))


def accumulated_token_mean(micro_batches: Sequence[tuple[Any, Any]]) -> float:
    r"""The token-mean loss of a batch split into micro-batches for gradient accumulation.

    $$ \mathcal{L} = \frac{\sum_{k=1}^{K} S_k}{\sum_{k=1}^{K} N_k}, \qquad
       S_k = \sum_{b,t} m^{(k)}_{b,t} \ell^{(k)}_{b,t}, \quad N_k = \sum_{b,t} m^{(k)}_{b,t}, $$

    i.e. each micro-batch contributes its loss **sum** divided by the **global** token count
    $N = \sum_k N_k$, so the accumulated gradient equals the full-batch token-mean gradient.
    The common pattern "token-mean per micro-batch, divided by the number of accumulation
    steps" computes instead

    $$ \frac{1}{K} \sum_k \frac{S_k}{N_k} = \sum_k \frac{N_k}{N} \frac{S_k}{N_k}
       + \sum_k \Big(\frac{1}{K} - \frac{N_k}{N}\Big) \frac{S_k}{N_k}, $$

    which equals $\mathcal{L}$ for every loss only when all $N_k$ are equal ($N_k = N / K$): the
    second sum weights the micro-batch means by $1/K$ instead of their token share, so tokens
    in micro-batches with few tokens get more weight (the gradient-accumulation bug fixed in
    Hugging Face ``transformers`` 4.46 and by DAPO's global token normalisation in verl/TRL).
    Micro-batches with no response token are allowed (they contribute $S_k = N_k = 0$).

    Conventions: each micro-batch is a pair ``(per_token [B_k, T_k], response_mask [B_k, T_k])``
    (sizes and lengths may differ between micro-batches); values at masked positions are
    ignored; the global count $N$ is a constant (detached); float64.

    Claim: ``gradient-accumulation-normalisation`` (its agreement with the full-batch
    :func:`aggregate_loss` in ``"token-mean"`` mode for every split).

    Args:
        micro_batches: a non-empty sequence of ``(per_token, response_mask)`` pairs.

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if ``micro_batches`` is not a sequence of pairs, or an array is not numeric.
        ValueError: if it is empty, on a pair with mismatched shapes or non-finite values at
            response positions, or if no micro-batch has a response token.

    Examples:
        Micro-batch 1: one token with loss 1; micro-batch 2: three tokens with loss 0. The
        global token mean is $1/4$; the mean of the micro-batch means is $(1 + 0)/2 = 1/2$.

        >>> accumulated_token_mean([([[1.0]], [[1]]), ([[0.0, 0.0, 0.0]], [[1, 1, 1]])])
        0.25

    References:
        Yu et al., *DAPO*, arXiv:2503.14476, 2025, Sec. 3.3. Hugging Face, *Fixing Gradient
        Accumulation*, blog post, 2024 (loss normalised by the total number of non-padding
        tokens across accumulation steps).
    """
    if isinstance(micro_batches, str | bytes) or not isinstance(micro_batches, Sequence):
        raise TypeError(
            f"micro_batches must be a sequence of (per_token, response_mask) pairs, "
            f"got {type(micro_batches).__name__}"
        )
    if len(micro_batches) == 0:
        raise ValueError("micro_batches must not be empty")
    total, count = 0.0, 0
    for k, pair in enumerate(micro_batches):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(
                f"micro_batches[{k}] must be a (per_token, response_mask) pair, "
                f"got {type(pair).__name__}"
            )
        mask = _response_mask(pair[1], f"micro_batches[{k}] response_mask")
        loss = _token_array(pair[0], f"micro_batches[{k}] per_token", mask)
        total += float(loss.sum())
        count += int(mask.sum())
    if count == 0:
        raise ValueError("micro_batches must hold at least one response token, got none")
    return total / count


# --------------------------------------------------------------------------------------------
# Group advantages from scalar rewards
# --------------------------------------------------------------------------------------------


def _group_std(deviation: FloatArray, inverse: IntArray, counts: IntArray, ddof: int) -> FloatArray:
    """Per-row standard deviation of the row's group from the deviations from the group mean."""
    largest = np.zeros(counts.size)
    np.maximum.at(largest, inverse, np.abs(deviation))
    scale = np.where(largest == 0, 1.0, largest)  # scaled squares do not overflow or underflow
    squares = np.bincount(inverse, weights=(deviation / scale[inverse]) ** 2, minlength=counts.size)
    with np.errstate(divide="ignore", invalid="ignore"):  # n - ddof = 0: only constant groups
        std = scale * np.sqrt(squares / (counts - ddof))
    result: FloatArray = std[inverse]
    return result


def grpo_advantages(
    rewards: Any, group_ids: Any, *, epsilon: float = 1e-6, ddof: int = 1
) -> FloatArray:
    r"""GRPO's advantages: each reward standardised within its group (same prompt).

    $$ A_i = \frac{r_i - \bar r_{g(i)}}{s_{g(i)} + \epsilon}, \qquad
       \bar r_g = \frac{1}{n_g} \sum_{j : g(j) = g} r_j, \quad
       s_g = \sqrt{\frac{1}{n_g - \mathrm{ddof}} \sum_{j : g(j) = g} (r_j - \bar r_g)^2}, $$

    and $A_i = 0$ exactly for every member of a group whose rewards are all equal (which
    includes a group of one): such a group carries no signal. With $\epsilon > 0$ the formula
    would give $0/\epsilon$, i.e. $0$ up to the rounding of $\bar r$ (divided by $\epsilon$!);
    with $\epsilon = 0$ it would give $0/0$. verl instead gives a group of one the raw reward
    (mean 0, std 1) and TRL a NaN (``std`` of one sample); the convention here is $0$.

    Conventions: ``ddof = 1`` (the sample std, ``torch.std``'s default) and
    $\epsilon = 10^{-6}$ added to the **std** are verl's ``compute_grpo_outcome_advantage``
    defaults; TRL uses ``ddof = 1`` and $\epsilon = 10^{-4}$, OpenRLHF's ``group_norm``
    ``ddof = 1`` and $10^{-9}$. :func:`rlmath.reference.group_normalized_advantages` (``[G, n]``
    input) defaults to ``ddof = 0``, $\epsilon = 0$. Outcome (sequence-level) advantages
    ``[B]``; broadcast them over each row's response tokens for the token losses; constants
    (detached); float64.

    Claim: ``baseline-unbiased`` (for leave-one-out baselines, see :func:`rloo_advantages`; the
    group mean includes the sample itself, and dividing by $s_g$ rescales each prompt).

    Args:
        rewards: ``[B]``, the scalar reward of each sampled response.
        group_ids: ``[B]`` integers, equal for responses to the same prompt.
        epsilon: $\epsilon \ge 0$ added to the group std.
        ddof: 1 (sample std, default) or 0 (population std).

    Returns:
        ``[B]`` float64 array.

    Raises:
        TypeError: if ``rewards`` is not numeric or ``group_ids`` not integers.
        ValueError: on shapes other than ``[B]``, ``B = 0``, non-finite rewards,
            ``epsilon < 0`` or ``ddof`` not 0 or 1.

    Examples:
        Group 7 has rewards (0, 2, 4): mean 2, sample std 2, so with $\epsilon = 0$ the
        advantages are $(-1, 0, 1)$; group 3 is tied (0) and group 5 has one member (0).

        >>> grpo_advantages([0.0, 1.0, 2.0, 1.0, 4.0, 9.0], [7, 3, 7, 3, 7, 5], epsilon=0.0)
        array([-1.,  0.,  0.,  0.,  1.,  0.])

    References:
        Shao et al., *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
        Language Models*, arXiv:2402.03300, 2024, Sec. 4.1.2. verl,
        ``verl/trainer/ppo/core_algos.py``, ``compute_grpo_outcome_advantage``; TRL,
        ``trl/trainer/grpo_trainer.py`` (``std_grouped_rewards``, ``+ 1e-4``).
    """
    values = _rewards(rewards)
    inverse, counts = _group_index(group_ids, values.size)
    eps = _epsilon(epsilon)
    degrees = _ddof(ddof)
    constant = _constant_groups(values, inverse, counts.size)
    deviation = np.where(constant, 0.0, values - _group_means(values, inverse, counts))
    std = _group_std(deviation, inverse, counts, degrees)
    with np.errstate(over="ignore"):  # |deviation| / tiny std beyond the float range: +-inf
        result: FloatArray = np.where(constant, 0.0, deviation / np.where(constant, 1.0, std + eps))
    return result


def dr_grpo_advantages(rewards: Any, group_ids: Any) -> FloatArray:
    r"""Dr. GRPO's advantages: each reward minus its group mean, not divided by the std.

    $$ A_i = r_i - \bar r_{g(i)}, \qquad \bar r_g = \frac{1}{n_g} \sum_{j : g(j) = g} r_j. $$

    Dividing by the group std (:func:`grpo_advantages`) up-weights prompts whose rewards
    barely vary (too easy or too hard); Dr. GRPO drops it (verl: ``norm_adv_by_std_in_grpo =
    False``, TRL: ``scale_rewards = "none"``). A group of one, or of equal rewards, gets $0$.

    Conventions: outcome advantages ``[B]``; the group mean includes the sample itself;
    constants (detached); float64.

    Claim: ``baseline-unbiased`` (the mean includes the sample, a bias of order $1/n_g$ that
    :func:`rloo_advantages` removes up to the factor $n_g/(n_g-1)$).

    Args:
        rewards: ``[B]``.
        group_ids: ``[B]`` integers.

    Returns:
        ``[B]`` float64 array.

    Raises:
        TypeError: if ``rewards`` is not numeric or ``group_ids`` not integers.
        ValueError: on shapes other than ``[B]``, ``B = 0`` or non-finite rewards.

    Examples:
        Group 0: (1, 2, 6), mean 3; group 1: the single reward 5.

        >>> dr_grpo_advantages([1.0, 2.0, 5.0, 6.0], [0, 0, 1, 0])
        array([-2., -1.,  0.,  3.])

    References:
        Liu et al., *Understanding R1-Zero-Like Training: A Critical Perspective*,
        arXiv:2503.20783, 2025, Sec. 3.1 (question-level difficulty bias). verl,
        ``compute_grpo_outcome_advantage(norm_adv_by_std_in_grpo=False)``.
    """
    values = _rewards(rewards)
    inverse, counts = _group_index(group_ids, values.size)
    constant = _constant_groups(values, inverse, counts.size)
    result: FloatArray = np.where(constant, 0.0, values - _group_means(values, inverse, counts))
    return result


def rloo_advantages(rewards: Any, group_ids: Any) -> FloatArray:
    r"""RLOO's advantages: each reward minus the mean of the *other* rewards of its group.

    $$ A_i = r_i - \frac{1}{n_g - 1} \sum_{j \ne i,\, g(j) = g} r_j
           = \frac{n_g}{n_g - 1} \big(r_i - \bar r_g\big), \qquad g = g(i), $$

    computed by the right-hand form (no cancellation between a large group sum and $r_i$). The
    baseline does not depend on $r_i$'s sample, so $A_i \nabla\log\pi(y_i)$ is unbiased.
    Every group needs at least two members: a group of one has no leave-one-out baseline and
    raises ``ValueError`` (verl's ``compute_rloo_outcome_advantage`` silently leaves such a
    row's advantage equal to its raw reward; the convention here is to refuse).

    Conventions: outcome advantages ``[B]``; constants (detached); float64.

    Claim: ``baseline-unbiased``.

    Args:
        rewards: ``[B]``.
        group_ids: ``[B]`` integers; every id must occur at least twice.

    Returns:
        ``[B]`` float64 array.

    Raises:
        TypeError: if ``rewards`` is not numeric or ``group_ids`` not integers.
        ValueError: on shapes other than ``[B]``, ``B = 0``, non-finite rewards, or a group
            with one member.

    Examples:
        Group (0, 1, 5): $A_0 = 0 - (1 + 5)/2 = -3$, $A_1 = 1 - 5/2 = -1.5$,
        $A_2 = 5 - 1/2 = 4.5$; the pair (2, 2) gives 0.

        >>> rloo_advantages([0.0, 2.0, 1.0, 2.0, 5.0], [4, 8, 4, 8, 4])
        array([-3. ,  0. , -1.5,  0. ,  4.5])

    References:
        Ahmadian et al., *Back to Basics: Revisiting REINFORCE Style Optimization for Learning
        from Human Feedback in LLMs*, ACL 2024 (arXiv:2402.14740), eq. 6. Kool et al.,
        *Buy 4 REINFORCE Samples, Get a Baseline for Free!*, ICLR workshop 2019. OpenRLHF,
        ``advantage_estimator = "rloo"``; verl, ``compute_rloo_outcome_advantage``.
    """
    values = _rewards(rewards)
    inverse, counts = _group_index(group_ids, values.size)
    if (counts < 2).any():
        ids = np.asarray(group_ids)
        lonely = int(ids[counts[inverse] < 2][0])
        raise ValueError(
            f"group_ids must give every group at least 2 members for a leave-one-out baseline, "
            f"got a group of one (id {lonely!r})"
        )
    constant = _constant_groups(values, inverse, counts.size)
    factor = counts[inverse] / (counts[inverse] - 1.0)
    deviation = values - _group_means(values, inverse, counts)
    result: FloatArray = np.where(constant, 0.0, factor * deviation)
    return result


def batch_whitened_advantages(
    rewards: Any,
    group_ids: Any = None,
    *,
    epsilon: float = 1e-8,
    ddof: int = 1,
) -> FloatArray:
    r"""REINFORCE++-style advantages: rewards whitened with the statistics of the whole batch.

    $$ A_i = \frac{u_i - \bar u}{s_u + \epsilon}, \qquad
       u_i = \begin{cases} r_i & \text{no groups (REINFORCE++)}, \\
       r_i - \bar r_{g(i)} & \text{with groups (REINFORCE++-baseline)}, \end{cases} $$

    with $\bar u$, $s_u$ the mean and std over all $B$ entries ($n - \mathrm{ddof}$ in the
    denominator). The batch (global) statistics replace GRPO's per-group std, which is noisy
    for small groups. $A = 0$ when all $u_i$ are equal (including $B = 1$).

    Conventions: $\epsilon$ added to the **std**; ``ddof = 1`` (``torch.std``'s default, used
    by OpenRLHF); sequence-level ``[B]`` (for the token-level whitening of returns over the
    response tokens use :func:`masked_whiten`); constants (detached); float64.

    Claim: ``batch-whitened-advantages-reference`` (entries, batch mean 0 and variance
    $s_u^2/(s_u + \epsilon)^2$); ``baseline-unbiased`` (for the shift; the scaling changes the
    step size only).

    Args:
        rewards: ``[B]``.
        group_ids: ``None`` or ``[B]`` integers (subtract the group mean first).
        epsilon: $\epsilon \ge 0$.
        ddof: 1 (default) or 0.

    Returns:
        ``[B]`` float64 array.

    Raises:
        TypeError: if ``rewards`` is not numeric or ``group_ids`` not integers.
        ValueError: on shapes other than ``[B]``, ``B = 0``, non-finite rewards,
            ``epsilon < 0`` or ``ddof`` not 0 or 1.

    Examples:
        Rewards (1, 3): mean 2, sample std $\sqrt 2$, so with $\epsilon = 0$:
        $\pm 1/\sqrt 2$. With groups {0, 1} and {2, 3} of rewards (1, 3) and (10, 12) the
        centred rewards (-1, 1, -1, 1) have sample std $\sqrt{4/3}$.

        >>> batch_whitened_advantages([1.0, 3.0], epsilon=0.0)
        array([-0.70710678,  0.70710678])
        >>> batch_whitened_advantages([1.0, 3.0, 10.0, 12.0], [0, 0, 1, 1], epsilon=0.0)
        array([-0.8660254,  0.8660254, -0.8660254,  0.8660254])

    References:
        Hu, *REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models*,
        arXiv:2501.03262, 2025, Sec. 3 (global advantage normalisation). OpenRLHF,
        ``advantage_estimator = "reinforce"`` and ``"reinforce_baseline"``.
    """
    values = _rewards(rewards)
    eps = _epsilon(epsilon)
    degrees = _ddof(ddof)
    if group_ids is not None:
        values = dr_grpo_advantages(values, group_ids)
    single = np.zeros(values.size, dtype=np.int64)
    return grpo_advantages(values, single, epsilon=eps, ddof=degrees)


def masked_whiten(
    values: Any,
    response_mask: Any,
    *,
    epsilon: float = 1e-8,
    ddof: int = 1,
    shift_mean: bool = True,
) -> FloatArray:
    r"""Whiten a ``[B, T]`` tensor with the mean and variance of its response tokens only.

    $$ \tilde x_{b,t} = m_{b,t} \, \frac{x_{b,t} - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
       \mu = \frac{1}{N} \sum_{b,t} m_{b,t} x_{b,t}, \quad
       \sigma^2 = \frac{1}{N - \mathrm{ddof}} \sum_{b,t} m_{b,t} (x_{b,t} - \mu)^2, $$

    with $N = \sum m$ (``shift_mean = False`` adds $\mu$ back to the response entries). The
    statistics ignore padding, and the result is **re-masked**: padded positions stay exactly
    $0$ (verl's ``masked_whiten`` does not re-mask; its callers multiply by the mask). When all
    response values are equal the whitened values are $0$ exactly (or $\mu$ without the shift).

    Conventions: $\epsilon$ is added to the **variance**, inside the square root (verl's
    ``rsqrt(var + 1e-8)``), unlike :func:`grpo_advantages`; ``ddof = 1`` is verl's
    ``masked_var(unbiased=True)``; statistics over all response tokens of the batch (not per
    row); time on axis 1; constants (detached); float64.

    Claim: ``masked-whiten-reference`` (the entries; response mean 0 and ``ddof``-variance
    $\sigma^2/(\sigma^2 + \epsilon)$; padding 0; invariance under $x \mapsto a x + b$, $a > 0$).

    Args:
        values: ``[B, T]``, e.g. returns or advantages per token.
        response_mask: ``[B, T]`` booleans or 0/1.
        epsilon: $\epsilon \ge 0$ added to the variance.
        ddof: 1 (default) or 0.
        shift_mean: if false, add $\mu$ back (whiten the scale only).

    Returns:
        ``[B, T]`` float64 array, $0$ where masked.

    Raises:
        TypeError: if an argument is not numeric or ``shift_mean`` not a bool.
        ValueError: on mismatched shapes, non-finite values at response positions,
            ``epsilon < 0``, ``ddof`` not 0 or 1, or fewer than ``ddof + 1`` response tokens.

    Examples:
        Response values (1, 3, 5) (the padding 100 is ignored): mean 3, sample variance 4,
        so with $\epsilon = 0$ the whitened values are $(-1, 0, 1)$ and the padding is 0.

        >>> masked_whiten([[1.0, 3.0], [5.0, 100.0]], [[1, 1], [1, 0]], epsilon=0.0)
        array([[-1.,  0.],
               [ 1.,  0.]])

    References:
        verl, ``verl/utils/torch_functional.py``, ``masked_whiten`` and ``masked_var``; Hu,
        *REINFORCE++*, arXiv:2501.03262, 2025 (token-level advantages whitened over the batch).
    """
    mask = _response_mask(response_mask)
    array = _token_array(values, "values", mask)
    eps = _epsilon(epsilon)
    degrees = _ddof(ddof)
    if not isinstance(shift_mean, bool | np.bool_):
        raise TypeError(f"shift_mean must be a bool, got {type(shift_mean).__name__}")
    count = int(mask.sum())
    if count - degrees < 1:
        raise ValueError(
            f"response_mask must select at least {degrees + 1} tokens for ddof = {degrees}, "
            f"got {count}"
        )
    selected = array[mask]
    mean = float(np.mean(selected))
    if selected.max() == selected.min():
        whitened = np.zeros_like(array)
        mean = float(selected[0])
    else:
        deviation = array - mean
        largest = float(np.max(np.abs(deviation[mask])))
        variance = largest**2 * float(np.sum((deviation[mask] / largest) ** 2)) / (count - degrees)
        with np.errstate(over="ignore"):
            whitened = deviation / np.sqrt(variance + eps)
    if not shift_mean:
        whitened = whitened + mean
    result: FloatArray = np.where(mask, whitened, 0.0)
    return result


# --------------------------------------------------------------------------------------------
# GSPO and CISPO
# --------------------------------------------------------------------------------------------


def _sequence_log_ratio(
    log_probs: Any, old_log_probs: Any, response_mask: Any
) -> tuple[FloatArray, BoolArray, FloatArray]:
    mask = _response_mask(response_mask)
    new = _token_array(log_probs, "log_probs", mask)
    old = _token_array(old_log_probs, "old_log_probs", mask)
    lengths = mask.sum(axis=1).astype(np.float64)
    with np.errstate(over="ignore"):
        total = (new - old).sum(axis=1)
    mean = np.where(lengths > 0, total / np.where(lengths > 0, lengths, 1.0), 0.0)
    return mean, mask, lengths


def gspo_sequence_ratio(log_probs: Any, old_log_probs: Any, response_mask: Any) -> FloatArray:
    r"""GSPO's sequence-level importance ratio: the geometric mean of the token ratios.

    $$ s_b = \left(\frac{\pi_\theta(y_b \mid x_b)}{\pi_{\theta_\mathrm{old}}(y_b \mid x_b)}
       \right)^{1/|y_b|} = \exp\Big(\frac{1}{|y_b|} \sum_t m_{b,t}
       \big(\log\pi_\theta(y_{b,t}) - \log\pi_{\theta_\mathrm{old}}(y_{b,t})\big)\Big), $$

    with $|y_b| = \sum_t m_{b,t}$. The length normalisation keeps $s_b$ in a range one clip
    range fits for every length (the plain sequence ratio is a product of $|y_b|$ token ratios),
    and the mean is taken of log-ratios, so nothing underflows for long responses. An empty
    (all-masked) row gets $s_b = 1$ (an empty mean taken as 0, as verl's ``clamp(min=1)`` of the
    length does).

    Conventions: ``[B, T]`` inputs, time on axis 1, ``[B]`` output; values at masked positions
    are ignored; float64.

    Claim: ``gspo-sequence-ratio-reference`` (the geometric mean of the token ratios).

    Args:
        log_probs: ``[B, T]``, $\log\pi_\theta$.
        old_log_probs: ``[B, T]``, $\log\pi_{\theta_\mathrm{old}}$.
        response_mask: ``[B, T]`` booleans or 0/1.

    Returns:
        ``[B]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes or non-finite values at response positions.

    Examples:
        Token ratios 2 and 8: geometric mean $\sqrt{16} = 4$; the empty row gives 1.

        >>> gspo_sequence_ratio([[np.log(2.0), np.log(8.0)], [0.0, 0.0]], np.zeros((2, 2)),
        ...                     [[1, 1], [0, 0]])
        array([4., 1.])

    References:
        Zheng et al., *Group Sequence Policy Optimization*, arXiv:2507.18071, 2025, eq. 7.
        verl, ``verl/trainer/ppo/core_algos.py``, ``compute_policy_loss_gspo``.
    """
    mean, _, _ = _sequence_log_ratio(log_probs, old_log_probs, response_mask)
    return _log_ratio_to_ratio(mean)


def _gspo_parts(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    response_mask: Any,
    clip_low: Any,
    clip_high: Any,
) -> tuple[FloatArray, FloatArray, BoolArray, FloatArray, float, float]:
    mean, mask, lengths = _sequence_log_ratio(log_probs, old_log_probs, response_mask)
    adv = as_float_array(advantages, "advantages")
    if adv.shape != (mask.shape[0],):
        raise ValueError(
            f"advantages must have shape [B] = ({mask.shape[0]},) (one per sequence), "
            f"got {adv.shape}"
        )
    check_finite(adv, "advantages")
    low, high = _clip_range(clip_low, clip_high)
    if not (lengths > 0).any():
        raise ValueError("response_mask must select at least one response token, got none")
    return _log_ratio_to_ratio(mean), adv, mask, lengths, low, high


def gspo_loss(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    response_mask: Any,
    *,
    clip_low: float,
    clip_high: float,
) -> float:
    r"""GSPO's clipped sequence-level loss, mean over the non-empty sequences.

    $$ \mathcal{L} = -\frac{1}{|\mathcal{B}|} \sum_{b \in \mathcal{B}}
       \min\big(s_b A_b,\; \operatorname{clip}(s_b, 1 - \epsilon_\mathrm{low},
       1 + \epsilon_\mathrm{high}) A_b\big), $$

    with $s_b$ from :func:`gspo_sequence_ratio` and $\mathcal{B}$ the rows with at least one
    response token. Clipping acts on whole sequences: a sequence whose geometric-mean ratio
    leaves the range contributes no gradient at all. The paper's ranges are tiny
    ($\epsilon_\mathrm{low} = 3 \times 10^{-4}$, $\epsilon_\mathrm{high} = 4 \times 10^{-4}$)
    because $s_b$ is a per-token average. Equal to verl's GSPO-token loss (per-token ratio
    $\mathrm{sg}[s_b] \, \pi_\theta / \mathrm{sg}[\pi_\theta]$, whose value is $s_b$) aggregated
    by ``seq-mean-token-mean`` when each row's token advantages equal $A_b$.

    Conventions: a loss, minus the GSPO objective; sequence-level advantages ``[B]`` (GRPO's
    group-normalised rewards in the paper); advantages and ``old_log_probs`` are constants;
    empty rows are excluded from the mean; float64.

    Claim: ``gspo-gradient-at-old`` (its central differences in $\theta$ against
    :func:`gspo_loss_gradient` and, at $\theta_\mathrm{old}$, the length-normalised sequence
    gradient).

    Args:
        log_probs: ``[B, T]``, $\log\pi_\theta$.
        old_log_probs: ``[B, T]``, $\log\pi_{\theta_\mathrm{old}}$.
        advantages: ``[B]``, one advantage per sequence.
        response_mask: ``[B, T]`` booleans or 0/1.
        clip_low: $\epsilon_\mathrm{low} > 0$.
        clip_high: $\epsilon_\mathrm{high} > 0$.

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, non-finite values at response positions or in
            ``advantages``, a batch without response tokens, or clip bounds ``<= 0``.

    Examples:
        $s_0 = 4$ with $A_0 = 1$ is clipped to $1.5$ ($\epsilon = 0.5$); $s_1 = 1$ with
        $A_1 = -2$ gives $-2$; row 2 is empty. Loss $-(1.5 - 2)/2 = 0.25$.

        >>> gspo_loss([[np.log(2.0), np.log(8.0)], [0.0, 0.0], [0.0, 0.0]], np.zeros((3, 2)),
        ...           [1.0, -2.0, 7.0], [[1, 1], [1, 0], [0, 0]], clip_low=0.5, clip_high=0.5)
        0.25

    References:
        Zheng et al., *Group Sequence Policy Optimization*, arXiv:2507.18071, 2025, eq. 5-7.
        verl, ``verl/trainer/ppo/core_algos.py``, ``compute_policy_loss_gspo``.
    """
    ratio, adv, _, lengths, low, high = _gspo_parts(
        log_probs, old_log_probs, advantages, response_mask, clip_low, clip_high
    )
    nonempty = lengths > 0
    with np.errstate(invalid="ignore"):
        clipped = np.clip(ratio, 1.0 - low, 1.0 + high)
        objective = np.where(adv == 0, 0.0, np.minimum(ratio * adv, clipped * adv))
    return float(-np.mean(objective[nonempty]))


def gspo_loss_gradient(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    response_mask: Any,
    *,
    clip_low: float,
    clip_high: float,
) -> FloatArray:
    r"""Gradient of :func:`gspo_loss` with respect to ``log_probs``.

    $$ \frac{\partial \mathcal{L}}{\partial \log\pi_\theta(y_{b,t})} =
       -\frac{m_{b,t}}{|\mathcal{B}| \, |y_b|} \, s_b A_b \, \mathbb{1}\big[(A_b > 0 \land s_b
       \le 1 + \epsilon_\mathrm{high}) \lor (A_b < 0 \land s_b \ge 1 - \epsilon_\mathrm{low})
       \big], $$

    since $\partial s_b / \partial \log\pi_\theta(y_{b,t}) = s_b / |y_b|$: every token of a
    sequence gets the same weight (GSPO's point), $1/|y_b|$ of the sequence's. At the kinks
    the unclipped side is returned.

    Conventions: as :func:`gspo_loss`; ``[B, T]``, $0$ where masked; float64.

    Claim: ``gspo-gradient-at-old`` (against central differences of :func:`gspo_loss`).

    Args:
        log_probs: ``[B, T]``.
        old_log_probs: ``[B, T]``.
        advantages: ``[B]``.
        response_mask: ``[B, T]`` booleans or 0/1.
        clip_low: $\epsilon_\mathrm{low} > 0$.
        clip_high: $\epsilon_\mathrm{high} > 0$.

    Returns:
        ``[B, T]`` float64 array.

    Raises:
        TypeError: as :func:`gspo_loss`.
        ValueError: as :func:`gspo_loss`.

    Examples:
        The example of :func:`gspo_loss`: row 0 is clipped (0); row 1 has $s = 1$, $A = -2$,
        one token and $|\mathcal{B}| = 2$: $-1 \cdot (-2) / 2 = 1$.

        >>> gspo_loss_gradient([[np.log(2.0), np.log(8.0)], [0.0, 0.0], [0.0, 0.0]],
        ...                    np.zeros((3, 2)), [1.0, -2.0, 7.0], [[1, 1], [1, 0], [0, 0]],
        ...                    clip_low=0.5, clip_high=0.5)
        array([[0., 0.],
               [1., 0.],
               [0., 0.]])
    """
    ratio, adv, mask, lengths, low, high = _gspo_parts(
        log_probs, old_log_probs, advantages, response_mask, clip_low, clip_high
    )
    nonempty = lengths > 0
    active = ((adv > 0) & (ratio <= 1.0 + high)) | ((adv < 0) & (ratio >= 1.0 - low))
    per_sequence = (
        np.where(active & nonempty, -ratio * adv / np.where(nonempty, lengths, 1.0), 0.0)
        / nonempty.sum()
    )
    result: FloatArray = np.where(mask, per_sequence[:, np.newaxis], 0.0) + 0.0
    return result


def _cispo_weight(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    response_mask: Any,
    clip_low: Any,
    clip_high: Any,
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray]:
    mask = _response_mask(response_mask)
    new = _token_array(log_probs, "log_probs", mask)
    old = _token_array(old_log_probs, "old_log_probs", mask)
    adv = _token_array(advantages, "advantages", mask)
    low, high = _clip_range(clip_low, clip_high)
    with np.errstate(over="ignore"):
        weight = np.clip(_log_ratio_to_ratio(new - old), max(1.0 - low, 0.0), 1.0 + high)
    return weight, adv, new, mask


def cispo_token_loss(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    response_mask: Any,
    *,
    clip_low: float,
    clip_high: float,
) -> FloatArray:
    r"""Per-token CISPO loss: a REINFORCE loss weighted by the clipped, detached ratio.

    $$ \ell_{b,t} = -m_{b,t} \, \mathrm{sg}\big[\hat\rho_{b,t}\big] \, A_{b,t} \,
       \log\pi_\theta(y_{b,t}), \qquad \hat\rho_{b,t} = \operatorname{clip}\big(\rho_{b,t},
       1 - \epsilon_\mathrm{low}, 1 + \epsilon_\mathrm{high}\big), \quad
       \rho_{b,t} = e^{\log\pi_\theta - \log\pi_{\theta_\mathrm{old}}}, $$

    with $\mathrm{sg}$ the stop-gradient. Unlike PPO, a token whose ratio leaves the range
    keeps its gradient $-\hat\rho A \, \nabla\log\pi_\theta$: the clip bounds the weight, it
    does not drop the token. The *value* includes the factor $\log\pi_\theta$ (as in verl's
    ``compute_policy_loss_cispo``); only its gradient (:func:`cispo_token_loss_gradient`) has a
    meaning. A lower bound $1 - \epsilon_\mathrm{low} \le 0$ is taken as 0 (MiniMax-M1
    effectively leaves the lower side unclipped with a large $\epsilon_\mathrm{low}$).

    Conventions: a loss, minus the CISPO objective; per token, not aggregated (MiniMax-M1 uses
    the token-mean, :func:`aggregate_loss`); the clipped ratio is **detached**, as are
    ``old_log_probs`` and ``advantages``; $0$ where masked; float64.

    Claim: ``cispo-token-loss-gradient-reference`` (the value $-m\hat\rho A z$).

    Args:
        log_probs: ``[B, T]``, $\log\pi_\theta$.
        old_log_probs: ``[B, T]``, $\log\pi_{\theta_\mathrm{old}}$.
        advantages: ``[B, T]``.
        response_mask: ``[B, T]`` booleans or 0/1.
        clip_low: $\epsilon_\mathrm{low} > 0$.
        clip_high: $\epsilon_\mathrm{high} > 0$.

    Returns:
        ``[B, T]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, non-finite values at response positions, or clip
            bounds ``<= 0``.

    Examples:
        $\log\pi_\theta = \log\tfrac12$, $\log\pi_{\theta_\mathrm{old}} = \log\tfrac18$:
        $\rho = 4$, clipped to $1.5$ ($\epsilon = 0.5$); with $A = 2$:
        $\ell = -1.5 \cdot 2 \cdot \log\tfrac12 = 3 \log 2$.

        >>> cispo_token_loss([[np.log(0.5), 0.0]], [[np.log(0.125), 0.0]], [[2.0, 2.0]],
        ...                  [[1, 0]], clip_low=0.5, clip_high=0.5)
        array([[2.07944154, 0.        ]])

    References:
        MiniMax et al., *MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning
        Attention*, arXiv:2506.13585, 2025, Sec. 3.1, eq. 4-5. verl,
        ``verl/trainer/ppo/core_algos.py``, ``compute_policy_loss_cispo``.
    """
    weight, adv, new, mask = _cispo_weight(
        log_probs, old_log_probs, advantages, response_mask, clip_low, clip_high
    )
    result: FloatArray = np.where(mask, -weight * adv * new, 0.0) + 0.0
    return result


def cispo_token_loss_gradient(
    log_probs: Any,
    old_log_probs: Any,
    advantages: Any,
    response_mask: Any,
    *,
    clip_low: float,
    clip_high: float,
) -> FloatArray:
    r"""Derivative of each entry of :func:`cispo_token_loss` with respect to its ``log_probs``.

    $$ \frac{\partial \ell_{b,t}}{\partial \log\pi_\theta(y_{b,t})}
       = -m_{b,t} \, \hat\rho_{b,t} A_{b,t}, $$

    nonzero for every response token with $A \ne 0$, clipped or not, because $\hat\rho$ is
    detached. (Differentiating through $\hat\rho$, i.e. forgetting the stop-gradient, would add
    $-\rho A \log\pi_\theta$ inside the clip range: a bug the tests catch.)

    Conventions: as :func:`cispo_token_loss`.

    Claim: ``cispo-token-loss-gradient-reference`` (against complex-step derivatives of the
    detached loss); ``cispo-gradient-at-old`` (its expectation at $\theta_\mathrm{old}$ is
    $-\nabla J$).

    Args:
        log_probs: ``[B, T]``.
        old_log_probs: ``[B, T]``.
        advantages: ``[B, T]``.
        response_mask: ``[B, T]`` booleans or 0/1.
        clip_low: $\epsilon_\mathrm{low} > 0$.
        clip_high: $\epsilon_\mathrm{high} > 0$.

    Returns:
        ``[B, T]`` float64 array.

    Raises:
        TypeError: as :func:`cispo_token_loss`.
        ValueError: as :func:`cispo_token_loss`.

    Examples:
        The example of :func:`cispo_token_loss`: $-1.5 \cdot 2 = -3$ although the ratio is
        clipped (PPO would give 0).

        >>> cispo_token_loss_gradient([[np.log(0.5), 0.0]], [[np.log(0.125), 0.0]],
        ...                           [[2.0, 2.0]], [[1, 0]], clip_low=0.5, clip_high=0.5)
        array([[-3.,  0.]])
    """
    weight, adv, _, mask = _cispo_weight(
        log_probs, old_log_probs, advantages, response_mask, clip_low, clip_high
    )
    result: FloatArray = np.where(mask, -weight * adv, 0.0) + 0.0
    return result


# --------------------------------------------------------------------------------------------
# Inference-engine / trainer mismatch: TIS and MIS
# --------------------------------------------------------------------------------------------


def _mismatch_ratio(
    old_log_probs: Any, rollout_log_probs: Any, response_mask: Any, cap: Any
) -> tuple[FloatArray, BoolArray, float]:
    mask = _response_mask(response_mask)
    old = _token_array(old_log_probs, "old_log_probs", mask)
    rollout = _token_array(rollout_log_probs, "rollout_log_probs", mask)
    c = check_interval(cap, "cap", low=0.0, high=np.inf, low_open=True)
    with np.errstate(over="ignore"):
        ratio = _log_ratio_to_ratio(old - rollout)
    return ratio, mask, c


def truncated_importance_weights(
    old_log_probs: Any, rollout_log_probs: Any, response_mask: Any, *, cap: float
) -> FloatArray:
    r"""TIS weights: the trainer-to-sampler probability ratio per token, truncated at ``cap``.

    $$ w_{b,t} = m_{b,t} \min\!\Big(\frac{\pi_{\theta_\mathrm{old}}(y_{b,t})}{\mu(y_{b,t})},
       \; C\Big) = m_{b,t} \min\big(\exp(\log\pi_{\theta_\mathrm{old}} - \log\mu), C\big). $$

    The tokens were sampled by the inference engine's $\mu$ (vLLM/SGLang kernels, other
    precision), not by the trainer's $\pi_{\theta_\mathrm{old}}$ with the same weights; the
    per-token losses are multiplied by $w$ to correct for it. Truncation at $C$ bounds the
    variance at the price of a bias (from the tokens where the ratio exceeds $C$).

    Conventions: the weights are **detached** constants (neither $\pi_{\theta_\mathrm{old}}$
    nor $\mu$ depends on $\theta$); they multiply the per-token loss before aggregation (verl:
    ``pg_losses * tis_imp_ratio``); ratio numerator $\pi_{\theta_\mathrm{old}}$ (trainer),
    denominator $\mu$ (sampler); ``[B, T]``, $0$ where masked; float64.

    Claim: ``importance-sampling-unbiased`` (for $C = \infty$).

    Args:
        old_log_probs: ``[B, T]``, $\log\pi_{\theta_\mathrm{old}}$ recomputed by the trainer.
        rollout_log_probs: ``[B, T]``, $\log\mu$ reported by the inference engine.
        response_mask: ``[B, T]`` booleans or 0/1.
        cap: $C > 0$ (Yao et al. use 2; ``inf`` gives the untruncated ratio).

    Returns:
        ``[B, T]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, non-finite values at response positions, or
            ``cap <= 0``.

    Examples:
        Ratios $1/2$, $4$ (truncated to 2) and a masked token:

        >>> truncated_importance_weights([[np.log(0.25), np.log(0.8), 0.0]],
        ...                              [[np.log(0.5), np.log(0.2), 0.0]], [[1, 1, 0]],
        ...                              cap=2.0)
        array([[0.5, 2. , 0. ]])

    References:
        Yao, Liu, Zhang, Shen, Gao et al., *Your Efficient RL Framework Secretly Brings You
        Off-Policy RL Training*, blog post (fengyao.notion.site/off-policy-rl), 2025. Ionides,
        *Truncated Importance Sampling*, J. Comput. Graph. Stat. 17(2), 2008. verl,
        ``compute_policy_loss`` (``tis_imp_ratio_cap``).
    """
    ratio, mask, c = _mismatch_ratio(old_log_probs, rollout_log_probs, response_mask, cap)
    result: FloatArray = np.where(mask, np.minimum(ratio, c), 0.0)
    return result


def masked_importance_weights(
    old_log_probs: Any, rollout_log_probs: Any, response_mask: Any, *, cap: float
) -> FloatArray:
    r"""MIS weights: the trainer-to-sampler ratio per token, set to 0 where it exceeds ``cap``.

    $$ w_{b,t} = m_{b,t} \, \rho_{b,t} \, \mathbb{1}[\rho_{b,t} \le C], \qquad
       \rho_{b,t} = \exp(\log\pi_{\theta_\mathrm{old}}(y_{b,t}) - \log\mu(y_{b,t})). $$

    Where :func:`truncated_importance_weights` keeps a token with a too-large ratio at weight
    $C$, MIS drops it (weight 0): a ratio above $C$ signals a token the engine sampled that the
    trainer finds much more likely, and its sample is discarded rather than down-weighted.

    Conventions: as :func:`truncated_importance_weights` (detached; numerator
    $\pi_{\theta_\mathrm{old}}$, denominator $\mu$; ``[B, T]``, $0$ where masked); a ratio
    exactly equal to $C$ is kept; float64.

    Claim: ``masked-importance-sampling`` (what the masked weights estimate).

    Args:
        old_log_probs: ``[B, T]``, $\log\pi_{\theta_\mathrm{old}}$.
        rollout_log_probs: ``[B, T]``, $\log\mu$.
        response_mask: ``[B, T]`` booleans or 0/1.
        cap: $C > 0$.

    Returns:
        ``[B, T]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`truncated_importance_weights`.

    Examples:
        The example of :func:`truncated_importance_weights`: the ratio 4 is masked to 0.

        >>> masked_importance_weights([[np.log(0.25), np.log(0.8), 0.0]],
        ...                           [[np.log(0.5), np.log(0.2), 0.0]], [[1, 1, 0]], cap=2.0)
        array([[0.5, 0. , 0. ]])

    References:
        Yao et al., *Your Efficient RL Framework Secretly Brings You Off-Policy RL Training*,
        blog post, 2025, and the follow-up *When Speed Kills Stability: Demystifying RL
        Collapse from the Training-Inference Mismatch* (Liu, Li et al., 2025; masked
        importance sampling).
    """
    ratio, mask, c = _mismatch_ratio(old_log_probs, rollout_log_probs, response_mask, cap)
    result: FloatArray = np.where(mask & (ratio <= c), ratio, 0.0)
    return result


# --------------------------------------------------------------------------------------------
# KL terms and the combined loss
# --------------------------------------------------------------------------------------------

_KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_penalty_per_token(
    log_probs: Any, reference_log_probs: Any, response_mask: Any, *, estimator: str
) -> FloatArray:
    r"""Per-token KL estimate $\mathrm{KL}(\pi_\theta \,\|\, \pi_\mathrm{ref})$, tokens from $\pi_\theta$.

    $$ k_{b,t} = m_{b,t} \, k_i\big(\log\pi_\theta(y_{b,t}), \log\pi_\mathrm{ref}(y_{b,t})\big),
       \qquad i \in \{1, 2, 3\}, $$

    with $k_1 = -\log r$, $k_2 = \tfrac12 (\log r)^2$, $k_3 = (r - 1) - \log r$ and
    $\log r = \log\pi_\mathrm{ref} - \log\pi_\theta$, computed by
    :func:`rlmath.reference.kl_estimator_k1` / ``k2`` / ``k3`` (which also validate the
    values). In the **loss** (differentiated, GRPO's ``use_kl_loss``) the estimators' gradients
    differ: $k_2$'s expected gradient is $\nabla_\theta \mathrm{KL}(\pi_\theta \,\|\,
    \pi_\mathrm{ref})$, $k_3$'s (GRPO's choice, verl ``low_var_kl``) that of
    $\mathrm{KL}(\pi_\mathrm{ref} \,\|\, \pi_\theta)$, $k_1$'s zero (claim
    ``kl-estimator-gradients``). For the KL in the **reward** see :func:`kl_reward_to_go`.

    Conventions: tokens sampled from $\pi_\theta$ (on-policy); ``log_probs`` are
    $\log\pi_\theta$ (differentiated), ``reference_log_probs`` constants; per token, not
    aggregated (aggregate with the policy loss's mode); $0$ where masked; float64. verl's
    ``kl_penalty`` names them ``kl`` (k1), ``mse`` (k2), ``low_var_kl`` (k3, which verl
    additionally clamps to $[-10, 10]$; not here).

    Claim: ``kl-estimators-bias-variance``; ``kl-estimator-gradients``.

    Args:
        log_probs: ``[B, T]``, $\log\pi_\theta$ of the sampled tokens.
        reference_log_probs: ``[B, T]``, $\log\pi_\mathrm{ref}$ of the same tokens (``-inf``
            allowed: the term is ``+inf``).
        response_mask: ``[B, T]`` booleans or 0/1.
        estimator: ``"k1"``, ``"k2"`` or ``"k3"``.

    Returns:
        ``[B, T]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric or ``estimator`` not a string.
        ValueError: on an unknown ``estimator``, mismatched shapes, or values at response
            positions that :func:`rlmath.reference.kl_estimator_k1` rejects.

    Examples:
        $\log r = -1$ at the first token: $k_1 = 1$, $k_3 = e^{-1} - 1 + 1 = e^{-1}$; the
        second token is masked.

        >>> kl_penalty_per_token([[0.0, 5.0]], [[-1.0, 0.0]], [[1, 0]], estimator="k1")
        array([[1., 0.]])
        >>> kl_penalty_per_token([[0.0, 5.0]], [[-1.0, 0.0]], [[1, 0]], estimator="k3")
        array([[0.36787944, 0.        ]])

    References:
        Schulman, *Approximating KL Divergence*, blog post, 2020. Shao et al.,
        *DeepSeekMath*, arXiv:2402.03300, 2024, eq. 4 ($k_3$ in the GRPO loss). verl,
        ``verl/trainer/ppo/core_algos.py``, ``kl_penalty``.
    """
    if not isinstance(estimator, str):
        raise TypeError(f"estimator must be a string, got {type(estimator).__name__}")
    if estimator not in _KL_ESTIMATORS:
        raise ValueError(f"estimator must be one of {_KL_ESTIMATORS}, got {estimator!r}")
    mask = _response_mask(response_mask)
    new = _token_array(log_probs, "log_probs", mask)
    ref = as_float_array(reference_log_probs, "reference_log_probs")
    if ref.shape != mask.shape:
        raise ValueError(
            f"reference_log_probs must have the shape of response_mask {mask.shape}, got {ref.shape}"
        )
    ref = np.where(mask, ref, 0.0)  # -inf allowed at response positions (validated below)
    function = {
        "k1": reference.kl_estimator_k1,
        "k2": reference.kl_estimator_k2,
        "k3": reference.kl_estimator_k3,
    }[estimator]
    values = np.asarray(function(new, ref), dtype=np.float64)
    result: FloatArray = np.where(mask, values, 0.0) + 0.0
    return result


def kl_reward_to_go(
    log_probs: Any, reference_log_probs: Any, response_mask: Any, *, kl_coefficient: float
) -> FloatArray:
    r"""The KL penalty as a reward: per-token reward $-\beta k_1$ summed to the end of the response.

    $$ G_{b,t} = m_{b,t} \sum_{t' \ge t} m_{b,t'} \big(-\beta \, k_1(b, t')\big), \qquad
       k_1(b, t') = \log\pi_{\theta_\mathrm{old}}(y_{b,t'}) - \log\pi_\mathrm{ref}(y_{b,t'}), $$

    the reward-to-go of the per-token penalty $-\beta k_1$ (undiscounted): the KL part of the
    return that PPO-RLHF / REINFORCE++ add to the outcome reward (on the last token) before
    computing advantages. As a reward it is **detached**: its gradient enters only through the
    score function, where $k_1$ (unbiased for $\mathrm{KL}(\pi \,\|\, \pi_\mathrm{ref})$) is
    the right choice (claim ``kl-estimator-gradients``). Masked positions inside a response
    (e.g. tool outputs in multi-turn data) add nothing and get $0$.

    Conventions: tokens sampled from the policy whose log-probs are ``log_probs`` (the rollout
    policy, $\pi_{\theta_\mathrm{old}}$); KL direction $\mathrm{KL}(\pi \,\|\,
    \pi_\mathrm{ref})$; $\beta \ge 0$ = ``kl_coefficient``; the reward to go sums the future
    response tokens of the row including $t$ itself; time on axis 1; float64.

    Claim: ``reward-to-go-unbiased`` (with the per-token reward $-\beta k_1$);
    ``kl-estimator-gradients``.

    Args:
        log_probs: ``[B, T]``, $\log\pi_{\theta_\mathrm{old}}$ of the sampled tokens.
        reference_log_probs: ``[B, T]``, $\log\pi_\mathrm{ref}$ (finite at response tokens).
        response_mask: ``[B, T]`` booleans or 0/1.
        kl_coefficient: $\beta \ge 0$.

    Returns:
        ``[B, T]`` float64 array.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: on mismatched shapes, non-finite values at response positions, or
            ``kl_coefficient < 0``.

    Examples:
        $k_1 = (1, 2, 3)$ on three response tokens, $\beta = 0.5$: rewards $(-0.5, -1, -1.5)$,
        rewards to go $(-3, -2.5, -1.5)$; the padding is 0.

        >>> kl_reward_to_go([[1.0, 2.0, 3.0, 0.0]], np.zeros((1, 4)), [[1, 1, 1, 0]],
        ...                 kl_coefficient=0.5)
        array([[-3. , -2.5, -1.5,  0. ]])

    References:
        Ouyang et al., *Training Language Models to Follow Instructions with Human Feedback*,
        NeurIPS 2022, eq. 2 (the per-token KL penalty in the reward). Hu, *REINFORCE++*,
        arXiv:2501.03262, 2025, eq. 1-2. verl, ``apply_kl_penalty``.
    """
    mask = _response_mask(response_mask)
    new = _token_array(log_probs, "log_probs", mask)
    ref = _token_array(reference_log_probs, "reference_log_probs", mask)
    beta = check_interval(kl_coefficient, "kl_coefficient", low=0.0, high=np.inf, high_open=True)
    rewards = np.where(mask, -beta * np.asarray(reference.kl_estimator_k1(new, ref)), 0.0)
    to_go = np.cumsum(rewards[:, ::-1], axis=1)[:, ::-1]
    result: FloatArray = np.where(mask, to_go, 0.0) + 0.0
    return result


def combined_policy_loss(
    policy_loss_per_token: Any,
    kl_per_token: Any,
    entropy_per_token: Any,
    response_mask: Any,
    *,
    kl_coefficient: float,
    entropy_coefficient: float,
    mode: str,
    normaliser: float | None = None,
) -> float:
    r"""The actor's loss: policy loss plus the KL penalty minus the entropy bonus.

    $$ \mathcal{L} = \operatorname{agg}(\ell^\mathrm{PG}) + \beta \operatorname{agg}(k)
       - c_H \operatorname{agg}(H), $$

    with $\operatorname{agg}$ = :func:`aggregate_loss` in ``mode`` (the same mode for the three
    terms, as verl does), $\ell^\mathrm{PG}$ a per-token policy loss (e.g.
    :func:`ppo_token_loss`), $k$ a per-token KL estimate of $\mathrm{KL}(\pi_\theta \,\|\,
    \pi_\mathrm{ref})$ in the loss (:func:`kl_penalty_per_token`), $H$ the per-token entropy of
    $\pi_\theta(\cdot \mid x, y_{<t})$. **Signs:** the KL term is *added* (minimising the loss
    pulls $\pi_\theta$ towards $\pi_\mathrm{ref}$), the entropy *subtracted* (minimising the
    loss raises the entropy). $\beta$ = ``kl_coefficient``, $c_H$ = ``entropy_coefficient``.

    Conventions: a loss (minimise it); the three per-token arrays share the mask; all three are
    differentiated (nothing detached here; advantages and reference log-probs inside them are);
    float64.

    Claim: ``combined-policy-loss-reference`` (value and gradient, the signs of both terms).

    Args:
        policy_loss_per_token: ``[B, T]``.
        kl_per_token: ``[B, T]``.
        entropy_per_token: ``[B, T]``, non-negative at response positions.
        response_mask: ``[B, T]`` booleans or 0/1.
        kl_coefficient: $\beta \ge 0$.
        entropy_coefficient: $c_H \ge 0$.
        mode: one of :data:`AGGREGATION_MODES`.
        normaliser: as :func:`aggregate_loss`.

    Returns:
        The loss, a Python float.

    Raises:
        TypeError: if an argument is not numeric.
        ValueError: as :func:`aggregate_loss`, a negative coefficient, or a negative entropy.

    Examples:
        One token: $\ell = 1$, $k = 0.5$, $H = 2$, $\beta = 0.1$, $c_H = 0.01$:
        $1 + 0.05 - 0.02 = 1.03$.

        >>> combined_policy_loss([[1.0]], [[0.5]], [[2.0]], [[1]], kl_coefficient=0.1,
        ...                      entropy_coefficient=0.01, mode="token-mean")
        1.03

    References:
        Schulman et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, 2017,
        eq. 9. Shao et al., *DeepSeekMath*, arXiv:2402.03300, 2024, eq. 3. verl,
        ``verl/workers/actor/dp_actor.py`` (``policy_loss = pg_loss - entropy_coeff * entropy
        + kl_loss * kl_loss_coef``).
    """
    beta = check_interval(kl_coefficient, "kl_coefficient", low=0.0, high=np.inf, high_open=True)
    c_entropy = check_interval(
        entropy_coefficient, "entropy_coefficient", low=0.0, high=np.inf, high_open=True
    )
    mask = _response_mask(response_mask)
    entropy = _token_array(entropy_per_token, "entropy_per_token", mask)
    negative = entropy < 0
    if negative.any():
        index = first_index(negative)
        raise ValueError(f"entropy_per_token must be >= 0, got {entropy[index]!r} at {index}")
    policy = aggregate_loss(policy_loss_per_token, mask, mode, normaliser=normaliser)
    kl = aggregate_loss(kl_per_token, mask, mode, normaliser=normaliser)
    bonus = aggregate_loss(entropy, mask, mode, normaliser=normaliser)
    return policy + beta * kl - c_entropy * bonus
