r"""Adapters: call implementations written in other conventions with a spec's canonical signature.

:mod:`rlmath.adapters.conventions` wraps *your* function written in a common convention
(batch-major ``dones``, stable-baselines3's ``episode_starts``, rlax's per-step discounts,
torchrl's ``next_state_value``); it needs no third-party library, and its names are re-exported
here (``from rlmath.adapters import gae_from_episode_starts``).

One submodule per library wraps that library's *own* public functions, importing the library
only when an adapter is called (an ``ImportError`` names the pip package otherwise):

==========================================  ===============================================
submodule                                   library functions
==========================================  ===============================================
:mod:`rlmath.adapters.stable_baselines3`    ``RolloutBuffer.compute_returns_and_advantage``
:mod:`rlmath.adapters.torchrl`              ``torchrl.objectives.value.functional``
:mod:`rlmath.adapters.tianshou`             ``Algorithm.compute_episodic_return`` (GAE)
:mod:`rlmath.adapters.skrl`                 PPO's ``compute_gae``
:mod:`rlmath.adapters.verl`                 ``verl.trainer.ppo.core_algos``
:mod:`rlmath.adapters.trl`                  none: why TRL's losses need a trainer
==========================================  ===============================================

``scripts/library_report.py`` runs every library adapter through :func:`rlmath.conformance.check`
with pinned versions and writes ``docs/libraries.md``.
"""

from rlmath.adapters.conventions import (
    episode_segments,
    gae_from_batch_major_dones,
    gae_from_episode_starts,
    gae_from_next_values,
    gae_from_per_step_discounts,
    next_state_values,
)

__all__ = [
    "episode_segments",
    "gae_from_batch_major_dones",
    "gae_from_episode_starts",
    "gae_from_next_values",
    "gae_from_per_step_discounts",
    "next_state_values",
]
