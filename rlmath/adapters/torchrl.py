r"""Adapters for ``torchrl.objectives.value.functional`` (pip package ``torchrl``).

torchrl's convention: tensors ``[*B, T, F]`` with time on ``time_dim = -2``;
``next_state_value[t]`` is $V(s_{t+1})$ as the environment produced $s_{t+1}$ (the final
observation's value on truncation); ``done`` = terminated or truncated stops the recursion;
``terminated`` removes the bootstrap; ``gamma, lmbda`` come first, positionally. Every adapter
here feeds one ``[1, T, 1]`` sequence through :func:`rlmath.adapters.gae_from_next_values`
(which builds ``next_state_value`` with :func:`rlmath.adapters.next_state_values`) and returns
the canonical ``[T]`` output:

==========================================  =========================================  =========================
adapter                                     torchrl function (output used)             spec
==========================================  =========================================  =========================
:func:`generalized_advantage_estimate`      ``generalized_advantage_estimate`` [0]     GAE
:func:`vec_generalized_advantage_estimate`  ``vec_generalized_advantage_estimate`` [0]  GAE
:func:`td0_advantage_estimate`              ``td0_advantage_estimate``                 TD errors
:func:`td_lambda_return_estimate`           ``td_lambda_return_estimate``              lambda-returns
:func:`vec_td_lambda_return_estimate`       ``vec_td_lambda_return_estimate``          lambda-returns
:func:`td_lambda_advantage_estimate`        ``td_lambda_advantage_estimate``           GAE
:func:`vec_td_lambda_advantage_estimate`    ``vec_td_lambda_advantage_estimate``       GAE
==========================================  =========================================  =========================

The discount is passed as the Python float the canonical call gives (torchrl documents
``gamma (scalar)``). The adapters take NumPy arrays or tensors and return float64 NumPy arrays
for float64 inputs (whatever torchrl computes inside).

References:
    torchrl, ``torchrl/objectives/value/functional.py`` (version pinned in
    ``scripts/library_report.py``); Schulman et al., "High-Dimensional Continuous Control Using
    Generalized Advantage Estimation", 2016, eq. (16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rlmath.adapters._library import require, tensor
from rlmath.adapters.conventions import gae_from_next_values

__all__ = [
    "generalized_advantage_estimate",
    "td0_advantage_estimate",
    "td_lambda_advantage_estimate",
    "td_lambda_return_estimate",
    "vec_generalized_advantage_estimate",
    "vec_td_lambda_advantage_estimate",
    "vec_td_lambda_return_estimate",
]

PACKAGE = "torchrl"


def _functional() -> Any:
    return require("torchrl.objectives.value.functional", PACKAGE)


def _adapted(name: str, *, uses_lambda: bool, pick: int | None) -> Callable[..., np.ndarray]:
    """The canonical function for torchrl's ``name``; ``pick`` selects a tuple output."""

    def call(state_value: Any, next_state_value: Any, reward: Any, done: Any, terminated: Any,
             **keywords: Any) -> Any:
        function = getattr(_functional(), name)
        gamma = keywords.pop("discount")
        leading = (gamma, keywords.pop("lambda_")) if uses_lambda else (gamma,)
        if name.startswith("td_lambda_return") or name.startswith("vec_td_lambda_return"):
            result = function(*leading, next_state_value, reward, done, terminated)
        else:
            result = function(*leading, state_value, next_state_value, reward, done, terminated)
        return result if pick is None else result[pick]

    adapted = gae_from_next_values(call, convert=tensor)
    adapted.__name__ = adapted.__qualname__ = name
    adapted.__doc__ = f"torchrl's ``{name}`` with the canonical signature (see the module)."
    return adapted


generalized_advantage_estimate = _adapted(
    "generalized_advantage_estimate", uses_lambda=True, pick=0
)
vec_generalized_advantage_estimate = _adapted(
    "vec_generalized_advantage_estimate", uses_lambda=True, pick=0
)
td0_advantage_estimate = _adapted("td0_advantage_estimate", uses_lambda=False, pick=None)
td_lambda_return_estimate = _adapted("td_lambda_return_estimate", uses_lambda=True, pick=None)
vec_td_lambda_return_estimate = _adapted(
    "vec_td_lambda_return_estimate", uses_lambda=True, pick=None
)
td_lambda_advantage_estimate = _adapted(
    "td_lambda_advantage_estimate", uses_lambda=True, pick=None
)
vec_td_lambda_advantage_estimate = _adapted(
    "vec_td_lambda_advantage_estimate", uses_lambda=True, pick=None
)
