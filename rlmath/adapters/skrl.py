r"""Adapters for skrl's PPO GAE (pip package ``skrl``).

skrl's convention (``skrl.agents.torch.ppo.ppo.compute_gae``, keyword-only): ``rewards``,
``terminated``, ``truncated``, ``values`` ``[T, 1]`` tensors, ``last_values`` = $V(s_T)$,
``discount_factor``, ``lambda_coefficient``; it returns ``(returns, advantages)`` with the
advantages **normalised** (mean 0, std 1), so the raw GAE is ``returns - values`` and the
adapters check ``returns`` (spec ``lambda_returns``) and ``returns - values`` (spec
``generalized_advantage_estimation``).

Truncation: with ``time_limit_bootstrap=True`` the recursion stops at ``terminated |
truncated`` and ``PPO.record_transition`` adds ``discount_factor * V(next_observations) *
truncated`` to the stored reward; the adapter does the same with the final observation's
value (``final_values``), as that method would. With the default ``time_limit_bootstrap=False``
a truncated step is treated as if the episode went on (documented in ``PPO_CFG``).

References:
    skrl, ``skrl/agents/torch/ppo/ppo.py`` (``compute_gae``, ``PPO.record_transition``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from rlmath.adapters._library import require, tensor

__all__ = [
    "ppo_gae_advantages",
    "ppo_gae_advantages_without_time_limit_bootstrap",
    "ppo_gae_returns",
]

PACKAGE = "skrl"


def _returns_and_values(
    rewards: Any, values: Any, terminated: Any, truncated: Any, final_values: Any,
    last_value: Any, *, discount: float, lambda_: float, time_limit_bootstrap: bool,
) -> tuple[Any, Any]:
    ppo = require("skrl.agents.torch.ppo.ppo", PACKAGE)

    def shaped(x: Any, **kw: Any) -> Any:
        return tensor(np.asarray(x).reshape(-1, 1), **kw)

    torch = require("torch", "torch")
    r = shaped(rewards)
    v = shaped(values)
    term = shaped(terminated, dtype=torch.bool)
    trunc = shaped(truncated, dtype=torch.bool)
    if time_limit_bootstrap:
        # PPO.record_transition: rewards += discount_factor * next_values * truncated
        r = r + discount * shaped(final_values) * trunc
    with warnings.catch_warnings():  # std() of a one-step memory warns (normalised output only)
        warnings.simplefilter("ignore", UserWarning)
        returns, _ = ppo.compute_gae(
            rewards=r,
            terminated=term,
            truncated=trunc,
            values=v,
            last_values=tensor(np.asarray(last_value).reshape(1, 1)),
            discount_factor=discount,
            lambda_coefficient=lambda_,
            time_limit_bootstrap=time_limit_bootstrap,
        )
    return returns, v


def _canonical(kind: str, time_limit_bootstrap: bool) -> Callable[..., np.ndarray]:
    def adapted(
        rewards: Any, values: Any, terminated: Any, truncated: Any, final_values: Any,
        last_value: Any, *, discount: float, lambda_: float,
    ) -> np.ndarray:
        returns, v = _returns_and_values(
            rewards, values, terminated, truncated, final_values, last_value,
            discount=discount, lambda_=lambda_, time_limit_bootstrap=time_limit_bootstrap,
        )
        out = returns if kind == "returns" else returns - v
        return out.detach().numpy().reshape(np.shape(rewards))

    return adapted


#: ``returns - values`` of ``compute_gae`` (time_limit_bootstrap=True, with record_transition's
#: reward bootstrap): the raw GAE, canonical signature.
ppo_gae_advantages = _canonical("advantages", True)
#: ``returns`` of ``compute_gae`` (time_limit_bootstrap=True), canonical lambda-returns signature.
ppo_gae_returns = _canonical("returns", True)
#: ``returns - values`` with skrl's default ``time_limit_bootstrap=False``.
ppo_gae_advantages_without_time_limit_bootstrap = _canonical("advantages", False)
