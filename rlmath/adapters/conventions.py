r"""Pure convention adapters: call a function written in another convention as a spec expects.

This module needs no third-party library (the library-specific adapters, which call the
libraries' own functions, are the other submodules of :mod:`rlmath.adapters`).

``rlmath check`` calls implementations with the spec's canonical signature (time-major ``[T]``
arrays, ``terminated``/``truncated`` flags, ``final_values`` for truncation, ``last_value``; see
``rlmath check --describe generalized_advantage_estimation``). Each function here takes *your*
function, written in a common convention, and returns a function with the canonical signature
that ``rlmath check`` / :func:`rlmath.assert_conforms` can run:

=====================================  ==================================================
adapter                                your function's convention
=====================================  ==================================================
:func:`gae_from_batch_major_dones`     ``[B, T]`` arrays, one ``dones`` flag, a per-row
                                       bootstrap value ``last_values[B]`` (CleanRL style)
:func:`gae_from_episode_starts`        ``[T]`` arrays, ``episode_starts[t]`` (s_t begins an
                                       episode), ``last_value``, ``last_done`` (SB3 style)
:func:`gae_from_per_step_discounts`    ``r_t[T]``, ``discount_t[T]`` (0 at a termination),
                                       ``values[T + 1]`` (rlax style)
:func:`gae_from_next_values`           ``[B, T, 1]`` tensors, ``next_state_value``, ``done``
                                       and ``terminated`` (torchrl style)
=====================================  ==================================================

How truncation is expressed: a convention with one ``dones`` flag cannot bootstrap from a
truncated episode's final value in the middle of a row, so the adapters split the canonical
input at every episode end and call your function once per segment, with the truncated
segment's ``final_values[t]`` (or ``last_value`` for the open last segment) as the bootstrap.
This is what a correct caller of such a function has to do; the adapter checks the *function*
under that (correct) use.

Conventions are stated on each adapter; keyword names of discount and lambda are options
(``discount="gamma", lambda_="gae_lambda"``). Arrays go in as float64 NumPy arrays unless a
``convert`` function is given (e.g. ``torch.as_tensor``); outputs are converted back with
``numpy.asarray`` (tensors are detached first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = [
    "episode_segments",
    "gae_from_batch_major_dones",
    "gae_from_episode_starts",
    "gae_from_next_values",
    "gae_from_per_step_discounts",
    "next_state_values",
]

Implementation = Callable[..., Any]


def _to_numpy(value: Any) -> np.ndarray:
    """float64 NumPy array, or float32 when the implementation returned float32 (so that the
    checker judges a float32 result with the float32 tolerance instead of widening it)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    return array if array.dtype == np.float32 else array.astype(np.float64)


def _identity(value: Any) -> Any:
    return value


def episode_segments(terminated: Any, truncated: Any) -> Iterator[tuple[int, int, str]]:
    """``(start, stop, end)`` of each piece between episode ends, in time order.

    ``end`` is ``"terminated"``, ``"truncated"`` (``truncated`` and not ``terminated`` at step
    ``stop - 1``) or ``"open"`` (the last piece, which neither terminated nor truncated).

    Examples:
        >>> list(episode_segments([False, True, False], [False, False, False]))
        [(0, 2, 'terminated'), (2, 3, 'open')]
    """
    term = np.asarray(terminated, dtype=bool)
    trunc = np.asarray(truncated, dtype=bool)
    if term.ndim != 1 or term.shape != trunc.shape:
        raise ValueError(
            f"terminated and truncated must be 1-D of one shape, got {term.shape} and {trunc.shape}"
        )
    start = 0
    for t in range(term.size):
        if term[t] or trunc[t]:
            yield start, t + 1, "terminated" if term[t] else "truncated"
            start = t + 1
    if start < term.size:
        yield start, term.size, "open"


def _one_dimensional(rewards: Any, name: str = "rewards") -> np.ndarray:
    array = np.asarray(rewards, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D [T] for this adapter (batch-major callers pass rows), "
            f"got shape {array.shape}"
        )
    return array


def _bootstrap(end: str, stop: int, final_values: np.ndarray, last_value: Any) -> float:
    if end == "terminated":
        return 0.0
    if end == "truncated":
        return float(final_values[stop - 1])
    return float(np.asarray(last_value, dtype=np.float64))


def _segmentwise(
    call: Callable[[np.ndarray, np.ndarray, str, float, dict[str, Any]], Any],
    rename: Callable[[dict[str, Any]], dict[str, Any]],
) -> Implementation:
    """The canonical GAE signature, calling ``call(rewards, values, end, bootstrap, keywords)``
    once per episode piece (see :func:`episode_segments`) and writing its ``[L]`` result back."""

    def canonical(
        rewards: Any,
        values: Any,
        terminated: Any,
        truncated: Any,
        final_values: Any,
        last_value: Any,
        **hyperparameters: Any,
    ) -> np.ndarray:
        r = _one_dimensional(rewards)
        v = np.asarray(values, dtype=np.float64)
        finals = np.asarray(final_values, dtype=np.float64)
        keywords = rename(hyperparameters)
        out = np.zeros_like(r)
        dtypes = set()
        for start, stop, end in episode_segments(terminated, truncated):
            bootstrap = _bootstrap(end, stop, finals, last_value)
            result = _to_numpy(call(r[start:stop], v[start:stop], end, bootstrap, keywords))
            dtypes.add(result.dtype)
            out[start:stop] = result.reshape(stop - start)
        return out.astype(np.float32) if dtypes == {np.dtype(np.float32)} else out

    return canonical


def gae_from_batch_major_dones(
    implementation: Implementation,
    *,
    discount: str = "discount",
    lambda_: str = "lambda_",
    convert: Callable[[np.ndarray], Any] = _identity,
) -> Implementation:
    r"""Adapt ``implementation(rewards[B, T], values[B, T], dones[B, T], last_values[B], *, ...)``.

    Your function's convention: ``dones[b, t]`` means the episode ended after step ``t`` with
    no bootstrap; the last step of row ``b`` bootstraps from ``last_values[b]`` unless
    ``dones[b, T-1]``. It returns advantages ``[B, T]``. Each episode piece of the canonical
    input becomes one row (``B = 1`` per call).
    """

    def call(
        r: np.ndarray, v: np.ndarray, end: str, bootstrap: float, keywords: dict[str, Any]
    ) -> Any:
        dones = np.zeros((1, r.size))
        dones[0, -1] = 1.0 if end == "terminated" else 0.0
        return implementation(
            convert(r[None]),
            convert(v[None]),
            convert(dones),
            convert(np.array([bootstrap])),
            **keywords,
        )

    return _segmentwise(call, lambda h: _renamed(h, discount, lambda_))


def gae_from_episode_starts(
    implementation: Implementation,
    *,
    discount: str = "discount",
    lambda_: str = "lambda_",
    convert: Callable[[np.ndarray], Any] = _identity,
) -> Implementation:
    r"""Adapt ``implementation(rewards[T], values[T], episode_starts[T], last_value, last_done, *, ...)``.

    Your function's convention (stable-baselines3's ``RolloutBuffer``): ``episode_starts[t]``
    is 1 when $s_t$ is the first state of an episode, so step $t$ bootstraps from
    ``values[t + 1]`` unless ``episode_starts[t + 1]``; the last step bootstraps from
    ``last_value`` unless ``last_done``. Called once per episode piece.
    """

    def call(
        r: np.ndarray, v: np.ndarray, end: str, bootstrap: float, keywords: dict[str, Any]
    ) -> Any:
        starts = np.zeros(r.size)
        starts[0] = 1.0
        return implementation(
            convert(r),
            convert(v),
            convert(starts),
            convert(np.asarray(bootstrap)),
            convert(np.asarray(1.0 if end == "terminated" else 0.0)),
            **keywords,
        )

    return _segmentwise(call, lambda h: _renamed(h, discount, lambda_))


def gae_from_per_step_discounts(
    implementation: Implementation,
    *,
    discount: str = "discount",
    lambda_: str = "lambda_",
    convert: Callable[[np.ndarray], Any] = _identity,
) -> Implementation:
    r"""Adapt ``implementation(r_t[T], discount_t[T], values[T + 1], *, lambda_)`` (rlax style).

    Your function's convention: $\delta_t = r_t + \gamma_t v_{t+1} - v_t$ and
    $A_t = \delta_t + \gamma_t \lambda A_{t+1}$, with ``discount_t`` $= \gamma_t$ (0 where the
    episode terminated) and ``values`` holding $v_0 \dots v_T$ (the last one the bootstrap).
    The discount is *not* a keyword of your function: the adapter folds the canonical
    ``discount`` into ``discount_t``; ``lambda_`` is passed under the name you give.
    """

    def call(
        r: np.ndarray, v: np.ndarray, end: str, bootstrap: float, keywords: dict[str, Any]
    ) -> Any:
        rest = dict(keywords)
        discounts = np.full(r.size, float(rest.pop("discount")))
        if end == "terminated":
            discounts[-1] = 0.0
        return implementation(
            convert(r), convert(discounts), convert(np.append(v, bootstrap)), **rest
        )

    # the canonical discount is folded into discount_t, not passed on: keep its own name here
    return _segmentwise(
        call,
        lambda h: {
            "discount": h["discount"],
            **_renamed({k: x for k, x in h.items() if k != "discount"}, discount, lambda_),
        },
    )


def gae_from_next_values(
    implementation: Implementation,
    *,
    discount: str = "discount",
    lambda_: str = "lambda_",
    convert: Callable[[np.ndarray], Any] = _identity,
) -> Implementation:
    r"""Adapt torchrl-style ``implementation(state_value, next_state_value, reward, done, terminated, *, ...)``.

    Your function's convention: tensors of shape ``[1, T, 1]`` (batch, time, feature);
    ``next_state_value[t]`` is $V(s_{t+1})$ as the environment produced it (the final
    observation's value on truncation); ``done`` = terminated or truncated (the recursion
    stops), ``terminated`` (no bootstrap). The whole sequence is one call. (torchrl's
    ``generalized_advantage_estimate`` takes ``gamma, lmbda`` positionally first: wrap it in a
    lambda that moves them to keywords.)
    """

    def canonical(
        rewards: Any,
        values: Any,
        terminated: Any,
        truncated: Any,
        final_values: Any,
        last_value: Any,
        **hyperparameters: Any,
    ) -> np.ndarray:
        r = _one_dimensional(rewards)
        v = np.asarray(values, dtype=np.float64)
        term = np.asarray(terminated, dtype=bool)
        trunc = np.asarray(truncated, dtype=bool)
        next_values = next_state_values(values, terminated, truncated, final_values, last_value)

        def shaped(x: np.ndarray) -> Any:
            return convert(np.asarray(x, dtype=np.float64).reshape(1, -1, 1))

        result = implementation(
            shaped(v),
            shaped(next_values),
            shaped(r),
            convert((term | trunc).reshape(1, -1, 1)),
            convert(term.reshape(1, -1, 1)),
            **_renamed(hyperparameters, discount, lambda_),
        )
        return _to_numpy(result).reshape(r.shape)

    return canonical


def next_state_values(
    values: Any, terminated: Any, truncated: Any, final_values: Any, last_value: Any
) -> np.ndarray:
    r"""$V(s_{t+1})$ of each step as the environment produced $s_{t+1}$, from canonical inputs.

    $$ v'_t = \begin{cases} 0 & \text{terminated}_t \\
        \text{final\_values}_t & \text{truncated}_t \wedge \neg\text{terminated}_t \\
        \text{values}_{t+1} & t < T - 1 \text{ otherwise} \\
        \text{last\_value} & t = T - 1 \text{ otherwise} \end{cases} $$

    Termination wins when both flags are set (the spec's convention). This is the
    ``next_state_value`` of torchrl and skrl-style code (``next_values[t]``), which needs no
    separate truncation input because the final observation's value is already in place.

    Args:
        values: ``[T]``, $V(s_t)$ for $t = 0..T-1$.
        terminated: ``[T]`` booleans. truncated: ``[T]`` booleans.
        final_values: ``[T]``, the final observation's value where truncated.
        last_value: 0-d, $V(s_T)$.

    Returns:
        ``[T]`` float64 array, 0 where terminated.

    Raises:
        ValueError: if the arrays are not 1-D of one shape.

    Examples:
        >>> next_state_values([1.0, 2.0, 3.0], [0, 1, 0], [1, 0, 0], [7.0, 8.0, 9.0], 4.0)
        array([7., 0., 4.])
    """
    v = _one_dimensional(values, "values")
    term = np.asarray(terminated, dtype=bool)
    trunc = np.asarray(truncated, dtype=bool)
    finals = np.asarray(final_values, dtype=np.float64)
    if not (term.shape == trunc.shape == finals.shape == v.shape):
        raise ValueError(
            "values, terminated, truncated and final_values must share one shape [T], got "
            f"{v.shape}, {term.shape}, {trunc.shape} and {finals.shape}"
        )
    following = np.append(v[1:], float(np.asarray(last_value, dtype=np.float64)))
    return np.where(term, 0.0, np.where(trunc, finals, following))


def _renamed(hyperparameters: dict[str, Any], discount: str, lambda_: str) -> dict[str, Any]:
    names = {"discount": discount, "lambda_": lambda_}
    return {names.get(key, key): value for key, value in hyperparameters.items()}
