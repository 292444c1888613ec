r"""Adapter for stable-baselines3's ``RolloutBuffer.compute_returns_and_advantage`` (pip ``stable-baselines3``).

stable-baselines3's convention: the buffer holds ``rewards``, ``values`` and
``episode_starts`` as ``[buffer_size, n_envs]`` **float32** arrays; step $t$ bootstraps from
``values[t + 1]`` unless ``episode_starts[t + 1]``, the last step from ``last_values`` unless
``dones``. Truncation is not an input: ``OnPolicyAlgorithm.collect_rollouts`` adds
$\gamma V(s_\text{final})$ to the reward of a truncated step. The adapter calls the buffer once
per episode piece (:func:`rlmath.adapters.gae_from_episode_starts`), which is the same as that
reward correction, and returns the buffer's float32 ``advantages`` (spec
``generalized_advantage_estimation``) or ``returns`` $= A + V$ (spec ``lambda_returns``),
judged with the float32 tolerance (the buffer's documented storage dtype).

References:
    stable-baselines3, ``stable_baselines3/common/buffers.py``, ``RolloutBuffer``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlmath.adapters._library import require, tensor
from rlmath.adapters.conventions import gae_from_episode_starts

__all__ = ["rollout_buffer_advantages", "rollout_buffer_returns"]

PACKAGE = "stable-baselines3"


def _buffer(
    rewards: Any, values: Any, episode_starts: Any, last_value: Any, last_done: Any,
    *, gamma: float, gae_lambda: float,
) -> Any:
    buffers = require("stable_baselines3.common.buffers", PACKAGE)
    spaces = require("gymnasium.spaces", "gymnasium")
    steps = len(rewards)
    buffer = buffers.RolloutBuffer(
        steps,
        spaces.Box(-1.0, 1.0, (1,)),
        spaces.Box(-1.0, 1.0, (1,)),
        device="cpu",
        gae_lambda=gae_lambda,
        gamma=gamma,
        n_envs=1,
    )
    buffer.rewards[:, 0] = rewards
    buffer.values[:, 0] = values
    buffer.episode_starts[:, 0] = episode_starts
    buffer.compute_returns_and_advantage(
        last_values=tensor(np.array([float(last_value)])), dones=np.array([float(last_done)])
    )
    return buffer


def _advantages(*arguments: Any, gamma: float, gae_lambda: float) -> np.ndarray:
    return _buffer(*arguments, gamma=gamma, gae_lambda=gae_lambda).advantages[:, 0]


def _returns(*arguments: Any, gamma: float, gae_lambda: float) -> np.ndarray:
    return _buffer(*arguments, gamma=gamma, gae_lambda=gae_lambda).returns[:, 0]


#: ``RolloutBuffer.advantages`` with the canonical GAE signature.
rollout_buffer_advantages = gae_from_episode_starts(
    _advantages, discount="gamma", lambda_="gae_lambda"
)
#: ``RolloutBuffer.returns`` with the canonical lambda-returns signature.
rollout_buffer_returns = gae_from_episode_starts(_returns, discount="gamma", lambda_="gae_lambda")
