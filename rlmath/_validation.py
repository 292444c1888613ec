"""Small shared helpers that validate user input in the first lines of public functions.

Every helper raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, wrong
value) with a message that names the argument, what was expected and what was got.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlmath.tolerances import PROBABILITY_SUM_ATOL

FloatArray = NDArray[np.float64]


def as_float_array(value: Any, name: str, *, ndim: int | None = None) -> FloatArray:
    """Convert ``value`` to a new float64 array, checking its number of dimensions.

    Raises:
        TypeError: if ``value`` is not numeric (strings, objects, complex numbers).
        ValueError: if it has the wrong number of dimensions.
    """
    not_real = f"{name} must be an array of real numbers, got {type(value).__name__}"
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(not_real) from error
    # checked before the cast: casting complex warns (ComplexWarning); strings like "0.5" parse
    if np.iscomplexobj(raw):
        raise TypeError(f"{name} must be real, got a complex array")
    if raw.dtype.kind in "USV":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {raw.dtype}")
    try:
        array = np.array(raw, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as error:
        raise TypeError(not_real) from error
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    return array


def first_index(mask: NDArray[np.bool_]) -> tuple[int, ...]:
    """The first index (in C order) where ``mask`` is true, as a tuple of ints."""
    flat = int(np.flatnonzero(mask.ravel())[0])
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def check_finite(array: FloatArray, name: str) -> None:
    """Raise ``ValueError`` naming the first non-finite entry of ``array``."""
    bad = ~np.isfinite(array)
    if bad.any():
        index = first_index(bad)
        raise ValueError(f"{name} must be finite, got {array[index]!r} at index {index}")


def check_probabilities(array: FloatArray, name: str, *, axis: int = -1) -> None:
    """Check ``array`` holds probability distributions along ``axis``.

    Entries must be finite and non-negative and each slice along ``axis`` must sum to 1 within
    ``rlmath.tolerances.PROBABILITY_SUM_ATOL``. The message names the first offending index.
    """
    check_finite(array, name)
    negative = array < 0
    if negative.any():
        index = first_index(negative)
        raise ValueError(f"{name} must be non-negative, got {array[index]!r} at index {index}")
    sums = array.sum(axis=axis)
    off = np.abs(sums - 1.0) > PROBABILITY_SUM_ATOL
    if off.any():
        index = first_index(np.asarray(off))
        where = f" at index {index}" if index else ""
        raise ValueError(
            f"{name} must sum to 1 along axis {axis} (within {PROBABILITY_SUM_ATOL:g}), "
            f"got sum {float(np.asarray(sums)[index])!r}{where}"
        )


def check_real_scalar(value: Any, name: str) -> float:
    """Return ``value`` as a float, raising ``TypeError`` if it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    result = float(value)
    if not np.isfinite(result):
        raise ValueError(f"{name} must be finite, got {result!r}")
    return result


def check_integer(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int, raising ``TypeError``/``ValueError`` if it is not one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    result = int(value)
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {result}")
    return result


def as_flag_array(value: Any, name: str) -> NDArray[np.bool_]:
    """Convert ``value`` to a new boolean array; numbers must be exactly 0 or 1.

    Raises:
        TypeError: if ``value`` is not boolean or numeric.
        ValueError: if a numeric entry is neither 0 nor 1.
    """
    array = np.asarray(value)
    if array.dtype == np.bool_:
        return np.array(array, dtype=np.bool_, copy=True)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must be an array of booleans, got dtype {array.dtype}")
    bad = (array != 0) & (array != 1)
    if bad.any():
        index = first_index(np.asarray(bad))
        raise ValueError(f"{name} must hold only 0/1 or booleans, got {array[index]!r} at {index}")
    return array.astype(np.bool_)


def check_shape(array: NDArray[Any], name: str, shape: tuple[int, ...], *, like: str) -> None:
    """Raise ``ValueError`` unless ``array.shape == shape`` (the shape of argument ``like``)."""
    if array.shape != shape:
        raise ValueError(f"{name} must have the shape of {like} {shape}, got {array.shape}")


def check_interval(
    value: Any,
    name: str,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float, checking it is a real number in the stated interval.

    Infinite bounds are allowed (``high=inf`` with ``high_open=False`` admits ``inf`` itself).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    result = float(value)
    too_low = result <= low if low_open else result < low
    too_high = result >= high if high_open else result > high
    if np.isnan(result) or too_low or too_high:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low:g}, {high:g}{right}, got {result!r}")
    return result


def check_seed(value: Any, name: str = "seed") -> int | np.random.SeedSequence | None:
    """Return a seed for ``numpy.random.default_rng``: ``None``, an int >= 0 or a ``SeedSequence``.

    Raises:
        TypeError: for anything else (strings, floats, booleans, arrays), naming ``name``.
        ValueError: for a negative integer.
    """
    if value is None or isinstance(value, np.random.SeedSequence):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an int >= 0, a numpy.random.SeedSequence or None, "
            f"got {type(value).__name__}"
        )
    result = int(value)
    if result < 0:
        raise ValueError(f"{name} must be >= 0, got {result}")
    return result


#: Largest number of time steps (a horizon, or a number of steps) rlmath accepts: exact
#: finite-horizon code loops over the steps in Python (about 10 microseconds each, so the
#: limit is about ten seconds of work) and stores arrays with one row per step.
MAX_HORIZON: int = 1_000_000

#: Largest array, in bytes, that a size argument (a horizon, a number of steps or of episodes)
#: may make rlmath allocate: beyond it a call is refused before any work is done, instead of
#: running for minutes or failing in the allocator.
MAX_ARRAY_BYTES: int = 4 * 2**30


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` in binary units, three significant digits: ``format_bytes(2**31) == '2 GiB'``."""
    value, unit = float(n_bytes), "bytes"
    for next_unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{value:.3g} {unit}"


def check_horizon(
    value: Any, name: str = "horizon", *, bytes_per_step: int | None = None, what: str = ""
) -> int:
    """Return ``value`` as an int in ``[1, MAX_HORIZON]``.

    With ``bytes_per_step``, a refusal also states the memory ``value`` steps would need for
    ``what`` (e.g. ``"Q [H, S, A] float64"``).

    Raises:
        TypeError: if ``value`` is not an integer.
        ValueError: if it is below 1 or above :data:`MAX_HORIZON`.
    """
    result = check_integer(value, name, minimum=1)
    if result > MAX_HORIZON:
        need = ""
        if bytes_per_step is not None:
            need = f"; it would need {format_bytes(result * bytes_per_step)} for {what}"
        raise ValueError(
            f"{name} must be <= {MAX_HORIZON} (rlmath's limit on time steps, "
            f"rlmath._validation.MAX_HORIZON), got {result}{need}"
        )
    return result


def check_array_bytes(n_bytes: int, what: str, *, name: str, value: Any) -> None:
    """Refuse, naming argument ``name``, an allocation of ``n_bytes`` above :data:`MAX_ARRAY_BYTES`.

    ``what`` describes the arrays (e.g. ``"Q [H, S, A] float64"``) for the message.
    """
    if n_bytes > MAX_ARRAY_BYTES:
        raise ValueError(
            f"{name} = {value} would need {format_bytes(n_bytes)} for {what}, more than the "
            f"limit of {format_bytes(MAX_ARRAY_BYTES)} (rlmath._validation.MAX_ARRAY_BYTES); "
            f"use a smaller {name}"
        )
