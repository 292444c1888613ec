r"""Adapters for ``verl.trainer.ppo.core_algos`` (pip package ``verl``).

verl's convention: padded token tensors ``[B, T]`` with a ``response_mask``; losses are
aggregated by ``agg_loss`` (``loss_agg_mode``); the KL estimators take ``logprob`` (the policy
being trained, tokens sampled from it) and ``ref_logprob``. Each adapter has a spec's
canonical signature:

=====================================  ===============================================  ==============================
adapter                                verl function                                    spec
=====================================  ===============================================  ==============================
:func:`gae_returns`                    ``compute_gae_advantage_return`` (returns)       ``lambda_returns``
:func:`kl_k1`, :func:`kl_k2`,          ``kl_penalty(..., "k1" / "k2" / "k3" / "k3+")``  ``kl_estimator_k1/k2/k3``
:func:`kl_k3`, :func:`kl_k3_plus`
:func:`value_loss`                     ``compute_value_loss`` (token-mean)              ``clipped_value_loss``
:func:`vanilla_policy_loss`            ``compute_policy_loss_vanilla`` (token-mean)     ``dual_clip_ppo_loss``
:func:`grpo_outcome_advantages`        ``compute_grpo_outcome_advantage``               ``grpo_advantages``
:func:`aggregate_loss`                 ``agg_loss``                                     ``aggregate_loss``
=====================================  ===============================================  ==============================

GAE: verl's advantages are whitened (``masked_whiten``), its returns $= A + V$ are not, so the
returns are checked. A response ends without a bootstrap (the value after the last token is
0): each terminated episode piece is one row. verl has no bootstrap input, so a truncated or
open piece gets one extra response token whose reward and value both equal the bootstrap
value $b$: its TD error is $b + \gamma \cdot 0 - b = 0$ exactly, its advantage 0, and the
step before it sees ``nextvalues`` $= b$, which is exactly the bootstrap. One unrelated
two-token row is added to every batch, because verl whitens the advantages over the batch and
raises on a batch of one token (``masked_var``); rows do not interact in the returns.

Flat ``[N]`` specs are called with one row ``[1, N]`` and an all-true mask.

References:
    verl, ``verl/trainer/ppo/core_algos.py`` (version pinned in ``scripts/library_report.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rlmath.adapters._library import require, tensor
from rlmath.adapters.conventions import episode_segments

__all__ = [
    "aggregate_loss",
    "gae_returns",
    "grpo_outcome_advantages",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_k3_plus",
    "value_loss",
    "vanilla_policy_loss",
]

PACKAGE = "verl"


def _core() -> Any:
    return require("verl.trainer.ppo.core_algos", PACKAGE)


def _row(x: Any) -> Any:
    return tensor(x).reshape(1, -1)


def gae_returns(
    rewards: Any, values: Any, terminated: Any, truncated: Any, final_values: Any,
    last_value: Any, *, discount: float, lambda_: float,
) -> np.ndarray:
    """verl's GAE returns with the canonical lambda-returns signature (see the module)."""
    core = _core()
    r = np.asarray(rewards, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    finals = np.asarray(final_values, dtype=np.float64)
    pieces = []
    for start, stop, end in episode_segments(terminated, truncated):
        piece_r, piece_v = r[start:stop], v[start:stop]
        if end != "terminated":
            bootstrap = finals[stop - 1] if end == "truncated" else float(np.asarray(last_value))
            piece_r, piece_v = np.append(piece_r, bootstrap), np.append(piece_v, bootstrap)
        pieces.append((start, stop, piece_r, piece_v))
    # one more row, unrelated to the others (rows do not interact in the returns): verl
    # whitens the advantages over the batch and refuses a batch of one token
    pieces.append((0, 0, np.zeros(2), np.zeros(2)))
    width = max(piece[2].size for piece in pieces)
    batch_r, batch_v, mask = (np.zeros((len(pieces), width)) for _ in range(3))
    for row, (_, _, piece_r, piece_v) in enumerate(pieces):
        batch_r[row, : piece_r.size] = piece_r
        batch_v[row, : piece_v.size] = piece_v
        mask[row, : piece_r.size] = 1.0  # trailing padding after the response: mask 0
    _, returns = core.compute_gae_advantage_return(
        tensor(batch_r), tensor(batch_v), tensor(mask), discount, lambda_
    )
    out = np.zeros_like(r)
    for row, (start, stop, _, _) in enumerate(pieces[:-1]):
        out[start:stop] = returns.numpy()[row, : stop - start]
    return out


def _kl(estimator: str) -> Callable[[Any, Any], Any]:
    def adapted(log_probs: Any, reference_log_probs: Any) -> Any:
        return _core().kl_penalty(tensor(log_probs), tensor(reference_log_probs), estimator)

    adapted.__name__ = adapted.__qualname__ = f"kl_{estimator.replace('+', '_plus')}"
    adapted.__doc__ = f"``kl_penalty(logprob, ref_logprob, {estimator!r})``, elementwise [N]."
    return adapted


kl_k1 = _kl("k1")
kl_k2 = _kl("k2")
kl_k3 = _kl("k3")
kl_k3_plus = _kl("k3+")


def value_loss(values: Any, old_values: Any, returns: Any, *, clip_epsilon: float) -> Any:
    """``compute_value_loss(vpreds, returns, values, mask, cliprange_value)`` (token-mean)."""
    v = _row(values)
    loss, _ = _core().compute_value_loss(
        vpreds=v, returns=_row(returns), values=_row(old_values),
        response_mask=tensor(np.ones(v.shape)), cliprange_value=clip_epsilon,
        loss_agg_mode="token-mean",
    )
    return loss


def vanilla_policy_loss(
    log_probs: Any, old_log_probs: Any, advantages: Any, *, clip_epsilon: float, dual_clip: float
) -> Any:
    """``compute_policy_loss_vanilla`` (token-mean) with ``clip_ratio = clip_epsilon`` and
    ``clip_ratio_c = dual_clip``, verl's dual clip (always on; plain PPO is ``c = inf``)."""
    actor = require("verl.workers.config.actor", PACKAGE)
    config = actor.ActorConfig(
        strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1,
        clip_ratio=clip_epsilon, clip_ratio_low=clip_epsilon, clip_ratio_high=clip_epsilon,
        clip_ratio_c=dual_clip,
    )
    lp = _row(log_probs)
    loss, _ = _core().compute_policy_loss_vanilla(
        old_log_prob=_row(old_log_probs), log_prob=lp, advantages=_row(advantages),
        response_mask=tensor(np.ones(lp.shape)), loss_agg_mode="token-mean", config=config,
    )
    return loss


def grpo_outcome_advantages(
    rewards: Any, group_ids: Any, *, epsilon: float, ddof: int
) -> np.ndarray:
    """``compute_grpo_outcome_advantage`` on one-token responses; verl's std is ``torch.std``
    (``ddof = 1``) and ``epsilon`` its keyword, so only ``ddof = 1`` is verl's contract."""
    if ddof != 1:
        raise ValueError(f"verl's GRPO uses torch.std (ddof = 1), got ddof={ddof}")
    r = tensor(rewards).reshape(-1, 1)
    scores, _ = _core().compute_grpo_outcome_advantage(
        token_level_rewards=r, response_mask=tensor(np.ones(r.shape)),
        index=np.asarray(group_ids), epsilon=epsilon,
    )
    return scores.numpy()[:, 0]


def aggregate_loss(per_token: Any, response_mask: Any, *, mode: str) -> Any:
    """``agg_loss(loss_mat, loss_mask, loss_agg_mode)``; verl's mode names are the spec's."""
    values = tensor(per_token)
    return _core().agg_loss(values, tensor(response_mask, dtype=values.dtype), mode)
