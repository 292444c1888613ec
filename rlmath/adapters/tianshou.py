r"""Adapter for tianshou's ``Algorithm.compute_episodic_return`` (GAE; pip package ``tianshou``).

tianshou's convention: a ``ReplayBuffer`` of transitions in time order with ``rew``,
``terminated``, ``truncated``; ``v_s_[t]`` = $V$ of ``obs_next[t]`` (the final observation on
truncation, as the collector stores it), masked by ``value_mask`` = ``~terminated``;
``v_s[t]`` = $V(s_t)$; the recursion stops at ``terminated | truncated`` and at the buffer's
unfinished last step (``buffer.unfinished_index()``). It returns ``(returns, advantages)``,
``returns = advantages + v_s``. The adapter fills a buffer with the canonical sequence and
passes ``v_s_`` from :func:`rlmath.adapters.next_state_values`.

References:
    tianshou, ``tianshou/algorithm/algorithm_base.py`` (``Algorithm.compute_episodic_return``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rlmath.adapters._library import require
from rlmath.adapters.conventions import next_state_values

__all__ = ["episodic_return_advantages", "episodic_return_returns"]

PACKAGE = "tianshou"


def _episodic_return(
    rewards: Any, values: Any, terminated: Any, truncated: Any, final_values: Any,
    last_value: Any, *, discount: float, lambda_: float,
) -> tuple[np.ndarray, np.ndarray]:
    data = require("tianshou.data", PACKAGE)
    base = require("tianshou.algorithm.algorithm_base", PACKAGE)
    r = np.asarray(rewards, dtype=np.float64)
    steps = r.size
    term = np.asarray(terminated, dtype=bool)
    trunc = np.asarray(truncated, dtype=bool)
    buffer = data.ReplayBuffer(steps)
    for t in range(steps):
        buffer.add(
            data.Batch(
                obs=np.array([float(t)]), act=np.array([0.0]), rew=float(r[t]),
                terminated=bool(term[t]), truncated=bool(trunc[t]),
                obs_next=np.array([float(t + 1)]), info={},
            )
        )
    indices = np.arange(steps)
    batch = buffer[indices]
    v_next = next_state_values(values, terminated, truncated, final_values, last_value)
    returns, advantages = base.Algorithm.compute_episodic_return(
        batch, buffer, indices, v_s_=v_next, v_s=np.asarray(values, dtype=np.float64),
        gamma=discount, gae_lambda=lambda_,
    )
    return np.asarray(returns), np.asarray(advantages)


def _canonical(pick: int) -> Callable[..., np.ndarray]:
    def adapted(
        rewards: Any, values: Any, terminated: Any, truncated: Any, final_values: Any,
        last_value: Any, *, discount: float, lambda_: float,
    ) -> np.ndarray:
        result = _episodic_return(
            rewards, values, terminated, truncated, final_values, last_value,
            discount=discount, lambda_=lambda_,
        )
        return result[pick].reshape(np.shape(rewards))

    return adapted


#: The advantages of ``compute_episodic_return``, canonical GAE signature.
episodic_return_advantages = _canonical(1)
#: The returns of ``compute_episodic_return``, canonical lambda-returns signature.
episodic_return_returns = _canonical(0)
