"""Adapters from two common GAE conventions to rlmath's canonical signature.

Run ``rlmath check examples/conformance_adapters.py:batch_major_gae_adapter --spec
generalized_advantage_estimation`` (and likewise for ``per_step_discount_gae_adapter``).

1. *Batch-major arrays* ``[B, T]`` with a single ``dones`` flag and a bootstrap value per row,
   as in many PPO codebases. Truncation is handled by cutting each row at truncations: the
   piece that ends in a truncation is evaluated with the episode's final value as its bootstrap.
2. *Per-step discounts* (rlax style): ``discount_t = gamma * (1 - terminated_t)`` and a values
   array ``[T + 1]`` that includes the bootstrap value; again split at truncations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# --- the "user" implementations (yours would be imported instead) ---------------------------


def my_batch_major_gae(rewards, values, dones, last_values, gamma, lam):  # type: ignore[no-untyped-def]
    """rewards, values, dones: [B, T]; last_values: [B]. dones[b, t]: episode ended after t."""
    batch, steps = rewards.shape
    advantages = np.zeros((batch, steps))
    last_gae = np.zeros(batch)
    for t in reversed(range(steps)):
        next_values = last_values if t == steps - 1 else values[:, t + 1]
        not_done = 1.0 - dones[:, t]
        delta = rewards[:, t] + gamma * next_values * not_done - values[:, t]
        last_gae = delta + gamma * lam * not_done * last_gae
        advantages[:, t] = last_gae
    return advantages


def my_per_step_discount_gae(rewards, discounts, values, lam):  # type: ignore[no-untyped-def]
    """rlax-style: rewards, discounts: [T]; values: [T + 1] (last entry is the bootstrap)."""
    advantages = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + discounts[t] * values[t + 1] - values[t]
        running = delta + discounts[t] * lam * running
        advantages[t] = running
    return advantages


# --- adapters ---------------------------------------------------------------------------------


def _pieces(truncated: np.ndarray, terminated: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) pieces of the buffer, each ending at a truncation (not termination) or at T."""
    bounds = [0, *(int(t) + 1 for t in np.flatnonzero(truncated & ~terminated))]
    if bounds[-1] != len(truncated):
        bounds.append(len(truncated))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _by_pieces(
    solve: Callable[[slice, float], np.ndarray],
    terminated: np.ndarray,
    truncated: np.ndarray,
    final_values: np.ndarray,
    last_value: Any,
) -> np.ndarray:
    parts = []
    for start, stop in _pieces(truncated, terminated):
        truncated_here = truncated[stop - 1] and not terminated[stop - 1]
        bootstrap = final_values[stop - 1] if truncated_here else float(last_value)
        parts.append(solve(slice(start, stop), bootstrap))
    return np.concatenate(parts)


def batch_major_gae_adapter(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    def solve(piece: slice, bootstrap: float) -> np.ndarray:
        # One row of a [1, T] batch; within a piece only terminations remain as dones.
        result = my_batch_major_gae(
            rewards[piece][None],
            values[piece][None],
            terminated[piece][None].astype(float),
            np.array([bootstrap]),
            discount,
            lambda_,
        )
        return np.asarray(result[0])

    return _by_pieces(solve, terminated, truncated, final_values, last_value)


def per_step_discount_gae_adapter(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):  # type: ignore[no-untyped-def]
    def solve(piece: slice, bootstrap: float) -> np.ndarray:
        discounts = discount * (1.0 - terminated[piece])
        return np.asarray(
            my_per_step_discount_gae(
                rewards[piece], discounts, np.append(values[piece], bootstrap), lambda_
            )
        )

    return _by_pieces(solve, terminated, truncated, final_values, last_value)
