r"""Check an implementation against rlmath's reference on generated edge-case inputs.

:func:`check` runs a callable on inputs drawn by a spec's Hypothesis strategy
(:mod:`rlmath.specs`), compares each result with the float64 reference
(:mod:`rlmath.reference`) under the spec's tolerance, and returns a :class:`Report`. When the
implementation fails, Hypothesis shrinks the input, and the report shows the smallest failing
input, which entries differ and by how much, and a snippet that reproduces it.
:func:`assert_conforms` raises ``AssertionError`` with that report, for use in a test suite.

Detected: wrong values, wrong output shape or dtype, NaN/inf, exceptions, non-determinism
(two calls on equal inputs disagree beyond the tolerance), and in-place mutation of the inputs.
NumPy callables work as they are; PyTorch and JAX callables (optional, detected from the
function's module or chosen with ``framework=``) receive tensors and may return tensors. For
them, losses are also checked on their **gradient** with respect to the inputs training
differentiates (new log-probs, values, logits), through the framework's own autodiff.

Calling convention: ``impl(*arguments, **hyperparameters)`` with the spec's canonical names
(``rlmath check --list``); scalar data arguments are passed as NumPy scalars (0-d tensors in
torch/JAX). Write a small adapter for any other convention (see ``docs/conformance.md``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from rlmath._validation import FloatArray, check_integer
from rlmath.claims.reproducibility import seed_only_generation
from rlmath.isolation import Outcome, Worker
from rlmath.specs import Example, Spec, get_spec
from rlmath.tolerances import conformance_atol, conformance_rtol

__all__ = ["Failure", "Report", "assert_conforms", "check", "load_target"]

FRAMEWORKS = ("numpy", "torch", "jax")
_FLOAT_DTYPES: dict[str, np.dtype[Any]] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
}
_SHOWN_ENTRIES = 8
#: Examples Hypothesis may try while shrinking a failure (a count, so the reported input does
#: not depend on how busy the machine is); then the smallest failing input so far is shown.
SHRINK_EXAMPLES = 600
#: Wall-clock cap of shrinking, for slow implementations only (normally the count binds first).
SHRINK_SECONDS = 60.0
#: Default seconds one example may take in the worker (two calls and the gradient).
EXAMPLE_TIMEOUT = 30.0
#: Default seconds a whole check may take.
TOTAL_TIMEOUT = 600.0


@dataclass(frozen=True)
class Failure:
    """Why an implementation was rejected on one (shrunk) example.

    Attributes:
        kind: ``"wrong value"``, ``"wrong gradient"``, ``"wrong shape"``, ``"wrong dtype"``,
            ``"non-finite"``, ``"exception"``, ``"non-deterministic"``, ``"mutated input"``,
            or, for an isolated run, ``"exited"`` (``sys.exit``/``os._exit``), ``"crashed"``
            (killed by a signal) or ``"timed out"``.
        message: one line saying what went wrong.
        details: the readable diff (index, expected, actual, difference, tolerance), or the
            traceback for an exception.
        example: the input, after shrinking.
        witness: whether the input is one of the spec's fixed witness inputs
            (:attr:`rlmath.specs.Spec.witnesses`), reduced by dropping rows instead of shrunk.
    """

    kind: str
    message: str
    details: str
    example: Example
    witness: bool = False


@dataclass(frozen=True)
class Report:
    """The result of :func:`check`; ``str(report)`` is the human-readable report."""

    target: str
    spec: Spec
    examples: int
    seed: int
    dtype: str
    framework: str
    failure: Failure | None
    hyperparameters: Mapping[str, Any]
    assumptions: Mapping[str, Any] = field(default_factory=dict)
    witnesses: int = 0

    @property
    def conforms(self) -> bool:
        """True when no example failed."""
        return self.failure is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (``schema_version`` 1)."""
        from rlmath._version import __version__

        failure = None
        if self.failure is not None:
            failure = {
                "kind": self.failure.kind,
                "message": self.failure.message,
                "details": self.failure.details,
                "example": {
                    "arguments": {
                        k: np.asarray(v).tolist() for k, v in self.failure.example.arguments.items()
                    },
                    "hyperparameters": {
                        k: (float(v) if isinstance(v, float) else v)
                        for k, v in self.failure.example.hyperparameters.items()
                    },
                },
                "reproducer": self.reproducer(),
                "witness": self.failure.witness,
            }
        return {
            "schema_version": 1,
            "rlmath_version": __version__,
            "target": self.target,
            "spec": self.spec.name,
            "conforms": self.conforms,
            "examples": self.examples,
            "witnesses": self.witnesses,
            "seed": self.seed,
            "dtype": self.dtype,
            "framework": self.framework,
            "hyperparameters": dict(self.hyperparameters),
            "assumptions": dict(self.assumptions),
            "failure": failure,
        }

    def __repr__(self) -> str:
        verdict = "conforms" if self.conforms else f"FAILED: {self.failure.kind}"  # type: ignore[union-attr]
        return f"<Report {self.target} vs {self.spec.name}: {verdict}, seed {self.seed}>"

    def _repr_html_(self) -> str:
        import html

        colour = "green" if self.conforms else "#b00"
        return (
            f'<div><b style="color:{colour}">{html.escape(repr(self))}</b>'
            f"<pre>{html.escape(str(self))}</pre></div>"
        )

    def reproducer(self) -> str:
        """Python code that recomputes the reference and the implementation on the failure."""
        if self.failure is None:
            return ""
        return _reproducer(self)

    def __str__(self) -> str:
        witnesses = f" + {self.witnesses} witnesses" if self.witnesses else ""
        settings_line = (
            f"spec {self.spec.name}, {self.examples} examples{witnesses}, seed {self.seed}, "
            f"{self.dtype} inputs, {self.framework}"
        )
        if self.assumptions:
            settings_line += ", assuming " + ", ".join(
                f"{k}={v!r}" for k, v in self.assumptions.items()
            )
        if self.failure is None:
            return f"OK: {self.target} conforms ({settings_line})"
        failure = self.failure
        lines = [
            f"FAILED: {self.target} does not conform ({settings_line})",
            f"{failure.kind}: {failure.message}",
            "",
            "failing input: a fixed witness of the spec, rows dropped while it fails:"
            if failure.witness
            else "smallest failing input found (after shrinking):",
            _indent(_format_example(failure.example, self.spec)),
            "",
            _indent(failure.details),
            "",
            "reproduce with:",
            _indent(self.reproducer()),
            f"signature expected: {self.spec.signature}",
        ]
        return "\n".join(lines)


class _NonConformance(Exception):
    """Raised inside the Hypothesis test so that it shrinks the failing input."""


# --------------------------------------------------------------------------------------------
# Frameworks: conversion in and out, and gradients
# --------------------------------------------------------------------------------------------


def _detect_framework(impl: Callable[..., Any]) -> str:
    """``torch``/``jax`` if the function's module namespace imports them, else ``numpy``."""
    function = getattr(impl, "__func__", impl)
    namespace = getattr(function, "__globals__", None)
    if namespace is None:
        module = sys.modules.get(getattr(impl, "__module__", "") or "")
        namespace = vars(module) if module is not None else {}
    for value in list(namespace.values()):
        name = value.__name__ if isinstance(value, ModuleType) else ""
        if not name and callable(value):
            name = getattr(value, "__module__", "") or ""
        root = name.split(".")[0]
        if root == "torch":
            return "torch"
        if root in ("jax", "jaxlib"):
            return "jax"
    return "numpy"


def _to_native(value: np.ndarray, framework: str, dtype: np.dtype) -> Any:
    """A fresh copy of ``value`` in ``framework``; floats cast to ``dtype``."""
    array = value.astype(dtype) if value.dtype.kind == "f" else value.copy()
    if framework == "torch":
        import torch

        # np.ascontiguousarray would turn a 0-d scalar into shape [1]: keep it 0-d
        return torch.from_numpy(np.array(array, order="C", copy=True))
    if framework == "jax":
        import jax.numpy as jnp

        return jnp.asarray(array)
    return array[()] if array.ndim == 0 else array


def _to_numpy(value: Any) -> np.ndarray:
    """Convert an output (array, tensor, Python number) to a NumPy array without copying dtype."""
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _gradients(
    impl: Callable[..., Any],
    spec: Spec,
    example: Example,
    framework: str,
    dtype: np.dtype,
) -> dict[str, np.ndarray | None]:
    """Gradient of the sum of the implementation's output w.r.t. the differentiable inputs."""
    names = spec.arguments
    if framework == "torch":
        import torch

        inputs = [_to_native(example.arguments[name], framework, dtype) for name in names]
        for name, tensor in zip(names, inputs, strict=True):
            if name in spec.differentiable:
                tensor.requires_grad_(True)
        output = impl(*inputs, **example.hyperparameters)
        total = sum(part.sum() for part in (output if isinstance(output, tuple) else (output,)))
        wanted = [t for n, t in zip(names, inputs, strict=True) if n in spec.differentiable]
        grads = torch.autograd.grad(total, wanted, allow_unused=True)
        return {
            name: None if grad is None else _to_numpy(grad)
            for name, grad in zip(spec.differentiable, grads, strict=True)
        }
    import jax

    positions = [names.index(name) for name in spec.differentiable]
    values = [_to_native(example.arguments[name], framework, dtype) for name in names]

    def summed(*wrt: Any) -> Any:
        call = list(values)
        for position, value in zip(positions, wrt, strict=True):
            call[position] = value
        output = impl(*call, **example.hyperparameters)
        return sum(part.sum() for part in (output if isinstance(output, tuple) else (output,)))

    grads = jax.grad(summed, argnums=tuple(range(len(positions))))(*(values[p] for p in positions))
    return {name: _to_numpy(grad) for name, grad in zip(spec.differentiable, grads, strict=True)}


# --------------------------------------------------------------------------------------------
# Judging one example
# --------------------------------------------------------------------------------------------


def _call(
    impl: Callable[..., Any], spec: Spec, example: Example, framework: str, dtype: np.dtype
) -> tuple[Any, Failure | None]:
    """Call once on fresh inputs; report an exception or a mutated input."""
    inputs = [_to_native(example.arguments[name], framework, dtype) for name in spec.arguments]
    before = [np.array(_to_numpy(value), copy=True) for value in inputs]
    try:
        output = impl(*inputs, **example.hyperparameters)
    except Exception as error:  # noqa: BLE001 - any exception of the implementation is a finding
        details = "".join(traceback.format_exception(error)[-6:]).rstrip()
        return None, Failure("exception", f"{type(error).__name__}: {error}", details, example)
    for name, value, saved in zip(spec.arguments, inputs, before, strict=True):
        after = _to_numpy(value)
        if not np.array_equal(after, saved, equal_nan=True):
            changed = np.argwhere(~((after == saved) | (np.isnan(after) & np.isnan(saved))))
            index = tuple(int(i) for i in changed[0]) if changed.size else ()
            details = f"{name} before the call: {saved.tolist()}\n{name} after the call:  {after.tolist()}"
            message = f"the implementation modified its input {name!r} in place (first at {index})"
            return None, Failure("mutated input", message, details, example)
    return output, None


def _output_parts(
    output: Any, spec: Spec, example: Example
) -> tuple[list[np.ndarray], Failure | None]:
    count = len(spec.outputs)
    if count > 1:
        if not isinstance(output, tuple | list) or len(output) != count:
            message = (
                f"expected a tuple of {count} outputs {spec.outputs}, got {type(output).__name__}"
            )
            return [], Failure("wrong shape", message, f"got: {output!r}", example)
        parts = list(output)
    elif isinstance(output, tuple):
        message = f"expected one output, got a tuple of {len(output)}"
        return [], Failure("wrong shape", message, f"got: {output!r}", example)
    else:
        parts = [output]
    arrays = []
    for name, part in zip(spec.outputs, parts, strict=True):
        try:
            array = _to_numpy(part)
        except Exception as error:  # noqa: BLE001
            message = f"output {name!r} is not an array or number: {type(part).__name__}"
            return [], Failure("wrong dtype", message, str(error), example)
        if array.dtype not in _FLOAT_DTYPES.values():
            message = f"output {name!r} must be float64 or float32, got dtype {array.dtype}"
            return [], Failure("wrong dtype", message, f"got: {array!r}", example)
        arrays.append(array)
    return arrays, None


def _compare(
    what: str,
    names: Sequence[str],
    actual: Sequence[np.ndarray],
    expected: Sequence[FloatArray],
    scales: Sequence[FloatArray],
    rtol: float,
    example: Example,
    flush_to_zero: bool = False,
) -> Failure | None:
    """Shape, finiteness and value comparison of each output; the first failure is returned."""
    for name, got, want, scale in zip(names, actual, expected, scales, strict=True):
        if got.shape != want.shape:
            message = f"{what} {name!r} has shape {got.shape}, expected {want.shape}"
            details = f"expected: {_show(want)}\nactual:   {_show(got)}"
            return Failure("wrong shape", message, details, example)
        got64 = got.astype(np.float64)
        floor = conformance_atol(
            np.float32 if rtol > conformance_rtol(np.float64) else np.float64,
            flush_to_zero=flush_to_zero,
        )
        bound = rtol * np.broadcast_to(np.asarray(scale, dtype=np.float64), want.shape) + floor
        error = np.abs(got64 - want)
        bad = ~(error <= bound)
        if not bad.any():
            continue
        non_finite = bad & ~np.isfinite(got64)
        kind = (
            "non-finite"
            if non_finite.any()
            else ("wrong gradient" if "gradient" in what else "wrong value")
        )
        count = int(bad.sum())
        message = f"{what} {name!r} differs from the reference at {count} of {want.size} entries"
        if non_finite.any():
            message = f"{what} {name!r} is NaN or inf at {int(non_finite.sum())} entries where the reference is finite"
        return Failure(kind, message, _diff_table(got64, want, error, bound, bad), example)
    return None


def _diff_table(
    got: FloatArray, want: FloatArray, error: FloatArray, bound: FloatArray, bad: np.ndarray
) -> str:
    indices = [tuple(int(i) for i in index) for index in np.argwhere(bad)]
    with np.errstate(divide="ignore", invalid="ignore"):
        badness = np.where(bound > 0, error / bound, np.inf)
    indices.sort(key=lambda index: -np.nan_to_num(badness[index], nan=np.inf))
    rows = [f"{'index':<10}{'expected':>24}{'actual':>24}{'actual-expected':>18}{'tolerance':>12}"]
    for index in indices[:_SHOWN_ENTRIES]:
        rows.append(
            f"{str(index):<10}{_number(want[index]):>24}{_number(got[index]):>24}"
            f"{got[index] - want[index]:>18.3g}{bound[index]:>12.3g}"
        )
    if len(indices) > _SHOWN_ENTRIES:
        rows.append(f"... and {len(indices) - _SHOWN_ENTRIES} more")
    rows += [f"expected: {_show(want)}", f"actual:   {_show(got)}"]
    return "\n".join(rows)


@dataclass(frozen=True)
class _Run:
    """What the implementation produced on one example (computed where it runs)."""

    parts: list[np.ndarray]
    again: list[np.ndarray]
    gradients: dict[str, np.ndarray | None] | None
    gradient_failure: Failure | None


def _run_implementation(
    impl: Callable[..., Any],
    spec: Spec,
    example: Example,
    framework: str,
    dtype: np.dtype,
) -> _Run | Failure:
    """Call the implementation twice (and differentiate it): the part that runs in the worker."""
    with np.errstate(all="ignore"):
        output, failure = _call(impl, spec, example, framework, dtype)
        if failure is not None:
            return failure
        parts, failure = _output_parts(output, spec, example)
        if failure is not None:
            return failure
        again, failure = _call(impl, spec, example, framework, dtype)
        if failure is not None:
            return failure
        again_parts, failure = _output_parts(again, spec, example)
        if failure is not None:
            return failure
        gradients: dict[str, np.ndarray | None] | None = None
        gradient_failure = None
        if framework != "numpy" and spec.gradient is not None:
            try:
                gradients = _gradients(impl, spec, example, framework, dtype)
            except Exception as error:  # noqa: BLE001
                details = "".join(traceback.format_exception(error)[-6:]).rstrip()
                message = f"differentiating the output failed: {type(error).__name__}: {error}"
                gradient_failure = Failure("wrong gradient", message, details, example)
    return _Run(parts, again_parts, gradients, gradient_failure)


def _assess(
    spec: Spec, example: Example, dtype: np.dtype, run: _Run, *, flush_to_zero: bool = False
) -> Failure | None:
    """Judge one run against the reference: the part that stays in the parent process."""
    parts, again_parts = run.parts, run.again
    # Precision of the computation: float32 if the inputs or any output are float32. The
    # reference is then evaluated on the inputs rounded to float32, which is all the
    # implementation could see.
    precision = (
        np.dtype(np.float32)
        if dtype == np.float32 or any(part.dtype == np.float32 for part in parts)
        else np.dtype(np.float64)
    )
    seen = example.rounded(precision)
    rtol = conformance_rtol(precision)
    expected, scales = spec.expected(seen), spec.error_scale(seen)
    for name, first, second, scale in zip(spec.outputs, parts, again_parts, scales, strict=True):
        same = first.shape == second.shape and bool(
            np.all(
                (first == second)
                | (np.isnan(first) & np.isnan(second))
                | (np.abs(first.astype(np.float64) - second) <= rtol * np.asarray(scale))
            )
        )
        if not same:
            message = f"two calls on equal inputs gave different {name!r}"
            details = f"1st call: {_show(first)}\n2nd call: {_show(second)}"
            return Failure("non-deterministic", message, details, example)
    failure = _compare(
        "output", spec.outputs, parts, expected, scales, rtol, example, flush_to_zero
    )
    if failure is not None:
        return failure
    if run.gradient_failure is not None:
        return run.gradient_failure
    if run.gradients is not None:
        return _judge_gradient(spec, example, run.gradients, seen, rtol, flush_to_zero)
    return None


def _judge_gradient(
    spec: Spec,
    example: Example,
    grads: dict[str, np.ndarray | None],
    seen: Example,
    rtol: float,
    flush_to_zero: bool = False,
) -> Failure | None:
    assert spec.gradient is not None  # noqa: S101 - checked by the caller
    expected = spec.gradient(seen)
    names = list(spec.differentiable)
    actual = [
        np.zeros_like(expected[name][0]) if grads[name] is None else grads[name] for name in names
    ]
    return _compare(
        "gradient of the output w.r.t.",
        names,
        [np.asarray(a) for a in actual],
        [expected[name][0] for name in names],
        [expected[name][1] for name in names],
        rtol,
        example,
        flush_to_zero,
    )


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_signature(impl: Callable[..., Any], spec: Spec) -> None:
    """Raise TypeError unless ``impl`` accepts ``spec``'s call (checked before any example)."""
    try:
        signature = inspect.signature(impl)
    except (TypeError, ValueError):
        return  # builtins and some C functions have no signature: the first call tells
    try:
        signature.bind(*spec.arguments, **dict.fromkeys(spec.hyperparameters))
    except TypeError as error:
        raise TypeError(
            f"the implementation's signature {getattr(impl, '__name__', 'impl')}{signature} "
            f"cannot take the spec's call {spec.signature} ({error})"
        ) from None


def _check_framework(framework: str) -> None:
    """Raise ValueError if ``framework`` is not importable (a usage error, not a finding)."""
    if framework == "numpy":
        return
    module = {"torch": "torch", "jax": "jax"}[framework]
    if importlib.util.find_spec(module) is None:
        hint = "pip install torch==2.13.0+cpu" if framework == "torch" else "pip install jax"
        raise ValueError(f"framework {framework!r} is not installed ({hint})")


def _check_hyperparameters(
    spec: Spec, fixed: Mapping[str, Any], seed: int, assumed: Mapping[str, Any]
) -> None:
    """Raise ValueError if the reference itself rejects the fixed hyperparameter values."""
    if not fixed:
        return
    from rlmath.claims.reproducibility import draw_examples

    try:
        (example,) = draw_examples(spec.examples(fixed, assumed), 1, seed)
    except ValueError:
        raise
    try:
        spec.expected(example)
    except (ValueError, TypeError) as error:
        shown = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
        raise ValueError(
            f"hyperparameters {shown} are outside the spec's domain: {error}"
        ) from None


def _isolated_failure(outcome: Outcome, example: Example) -> Failure:
    message = {
        "exited": "the implementation ended its process instead of returning",
        "crashed": "the implementation's process crashed",
        "timed out": "the implementation did not return in time",
    }[outcome.kind]
    return Failure(outcome.kind, f"{message}: {outcome.detail}", "(no output)", example)


def check(
    impl: Callable[..., Any],
    spec: Spec | str,
    *,
    examples: int = 100,
    seed: int | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    framework: str = "auto",
    dtype: str = "float64",
    target: str | None = None,
    isolation: str = "process",
    timeout: float | None = None,
    total_timeout: float | None = None,
    memory_limit: int | None = None,
    assume: Mapping[str, Any] | None = None,
) -> Report:
    r"""Run ``impl`` on generated inputs against the reference and report the first failure.

    For each of ``examples`` inputs drawn by the spec's strategy, then (if they all pass) each
    of the spec's fixed witness inputs (:attr:`rlmath.specs.Spec.witnesses`, the same at every
    seed: edge cases that the drawn inputs meet only by chance), ``impl(*arguments,
    **hyperparameters)`` is called twice on fresh copies and judged by

    $$ |\text{actual} - \text{expected}| \le 64\,\varepsilon_\text{dtype} \cdot s $$

    entrywise, with $s$ the spec's error scale (:func:`rlmath.tolerances.conformance_rtol`).
    On a failure Hypothesis shrinks the input to a minimal one (a failing witness is reduced
    by dropping rows), reported with a diff and a reproducer.

    Args:
        impl: the implementation, called with the spec's canonical signature.
        spec: a :class:`rlmath.specs.Spec` or its name (``rlmath check --list``).
        examples: number of generated inputs, >= 1.
        seed: Hypothesis seed; ``None`` picks a random one (printed in the report).
        hyperparameters: values that replace the spec's drawn hyperparameters, e.g.
            ``{"ddof": 1, "epsilon": 1e-8}`` for a PyTorch-style advantage normalisation.
        framework: ``"auto"`` (from the function's module), ``"numpy"``, ``"torch"`` or
            ``"jax"``: the type of array the implementation receives.
        dtype: ``"float64"`` or ``"float32"``, the dtype of the float inputs passed. A float32
            output is also accepted for float64 inputs and judged with the float32 tolerance.
        target: the name shown in the report (default: ``module.qualname`` of ``impl``).
        isolation: ``"process"`` (default): the implementation runs in a worker process, so
            that nothing it does (``sys.exit``, ``os._exit``, killing itself, tampering with
            ``rlmath`` modules, exhausting memory) can affect the verdict or the caller;
            ``"none"``: in this process (for debugging with a debugger; no time limits, and
            ``os._exit`` cannot be caught there). JAX implementations always run in this
            process (XLA's threads make a forked child unsafe).
        timeout: seconds one example may take (both calls and the gradient) before the
            implementation counts as ``"timed out"``; default :data:`EXAMPLE_TIMEOUT`.
        total_timeout: seconds the whole check may take; default :data:`TOTAL_TIMEOUT`.
        memory_limit: address-space limit of the worker in bytes (POSIX), or ``None``.
        assume: contract options of the spec (``Spec.assumptions``), e.g.
            ``{"max_abs_log_ratio": 20.0}`` for an implementation that clamps log-ratios
            on purpose, ``{"batch": True}`` to also generate ``[T, B]`` inputs. The report
            states them: conformance holds within that contract only.

    Returns:
        A :class:`Report`; ``report.conforms`` is the verdict.

    Raises:
        TypeError: if ``impl`` is not callable, its signature cannot take the spec's call, or
            an argument has the wrong type.
        ValueError: on an unknown spec, framework, dtype or hyperparameter name, a
            hyperparameter value the reference rejects, or a framework that is not installed.

    Examples:
        >>> import numpy as np
        >>> def returns(rewards, dones, *, discount):
        ...     out, running = np.zeros_like(rewards), 0.0
        ...     for t in reversed(range(len(rewards))):
        ...         running = rewards[t] + discount * running * (1.0 - dones[t])
        ...         out[t] = running
        ...     return out
        >>> check(returns, "discounted_returns", examples=20, seed=0).conforms
        True
        >>> wrong = lambda rewards, dones, *, discount: returns(rewards, np.roll(dones, 1),
        ...                                                     discount=discount)
        >>> report = check(wrong, "discounted_returns", examples=50, seed=0)
        >>> report.conforms, report.failure.kind
        (False, 'wrong value')
    """
    if not callable(impl):
        raise TypeError(f"impl must be callable, got {type(impl).__name__}")
    spec_object = get_spec(spec) if isinstance(spec, str) else spec
    if not isinstance(spec_object, Spec):
        raise TypeError(f"spec must be a Spec or a spec name, got {type(spec).__name__}")
    count = check_integer(examples, "examples", minimum=1)
    chosen_seed = random.randrange(2**32) if seed is None else check_integer(seed, "seed")
    if framework not in ("auto", *FRAMEWORKS):
        raise ValueError(
            f"framework must be one of auto, {', '.join(FRAMEWORKS)}; got {framework!r}"
        )
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if isolation not in ("process", "none"):
        raise ValueError(f"isolation must be 'process' or 'none', got {isolation!r}")
    per_example = _check_seconds(EXAMPLE_TIMEOUT if timeout is None else timeout, "timeout")
    total = _check_seconds(
        TOTAL_TIMEOUT if total_timeout is None else total_timeout, "total_timeout"
    )
    _check_signature(impl, spec_object)
    resolved = _detect_framework(impl) if framework == "auto" else framework
    _check_framework(resolved)
    if resolved == "jax" and dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    fixed = dict(hyperparameters or {})
    assumed = spec_object.resolve_assumptions(assume)
    strategy = spec_object.examples(fixed, assumed)
    witnesses = spec_object.witness_examples(fixed, assumed)
    _check_hyperparameters(spec_object, fixed, chosen_seed, assumed)
    failures: list[Failure] = []
    first_failure_at: list[float] = []
    input_dtype = _FLOAT_DTYPES[dtype]
    started = time.monotonic()
    stop_shrinking = [False]
    shrink_calls = [0]

    def run_once(example: Example) -> _Run | Failure:
        return _run_implementation(impl, spec_object, example, resolved, input_dtype)

    # JAX implementations run in this process: XLA is multithreaded, so running JAX in a
    # forked child can deadlock (JAX itself warns at every fork), and each child would compile
    # again. The report says so; time limits then cannot interrupt a call.
    isolated = isolation == "process" and resolved != "jax"
    worker = Worker(run_once, memory_limit=memory_limit) if isolated else None

    def judge(example: Example) -> Failure | None:
        if worker is None:
            try:
                produced = run_once(example)
            except SystemExit as stop:  # in-process: sys.exit() is a finding, not our exit
                return Failure(
                    "exited",
                    f"the implementation called sys.exit({stop.code})",
                    "(no output)",
                    example,
                )
        else:
            outcome = worker.call(example, timeout=per_example)
            if outcome.kind != "returned":
                if outcome.kind == "timed out":
                    stop_shrinking[0] = True  # every shrink attempt could cost the full limit
                return _isolated_failure(outcome, example)
            produced = outcome.value
        if isinstance(produced, Failure):
            return produced
        with np.errstate(all="ignore"):
            return _assess(
                spec_object, example, input_dtype, produced, flush_to_zero=resolved == "jax"
            )

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        derandomize=False,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        print_blob=False,
    )
    @hypothesis_seed(chosen_seed)
    @given(strategy)
    def run(example: Example) -> None:
        if first_failure_at:
            shrink_calls[0] += 1
        if stop_shrinking[0] or (
            first_failure_at
            and (
                shrink_calls[0] > SHRINK_EXAMPLES
                or time.monotonic() - first_failure_at[0] > SHRINK_SECONDS
            )
        ):
            return  # shrinking budget spent: the smallest failure so far is reported
        if not failures and time.monotonic() - started > total:
            failures.append(_total_time_failure(total, example))
            stop_shrinking[0] = True
            raise _NonConformance("total time limit")
        failure = judge(example)
        if failure is not None:
            first_failure_at[:] = first_failure_at or [time.monotonic()]
            failures.append(failure)
            raise _NonConformance(failure.message)

    try:
        with seed_only_generation():
            run()
        if failures and failures[-1].kind != "timed out":
            failures.append(_reduced(failures[-1], judge, started + total))
        elif not failures:
            failures += _witness_failure(witnesses, judge, started, total)
    except (_NonConformance, Flaky):
        if failures and failures[-1].kind != "timed out":
            failures.append(_reduced(failures[-1], judge, started + total))
    finally:
        if worker is not None:
            worker.close()
    return Report(
        target=target or _name_of(impl),
        spec=spec_object,
        examples=count,
        seed=chosen_seed,
        dtype=dtype,
        framework=resolved,
        failure=failures[-1] if failures else None,
        hyperparameters=fixed,
        assumptions={k: v for k, v in assumed.items() if v != spec_object.assumptions[k].default},
        witnesses=len(witnesses),
    )


def _total_time_failure(total: float, example: Example) -> Failure:
    return Failure(
        "timed out",
        f"the check exceeded its total time limit of {total:g} s",
        "(raise it with total_timeout= or --total-timeout)",
        example,
    )


def _witness_failure(
    witnesses: Sequence[Example],
    judge: Callable[[Example], Failure | None],
    started: float,
    total: float,
) -> list[Failure]:
    """The first failure on the spec's witness inputs, in order (reduced by dropping rows,
    :func:`_reduced`, and marked as a witness), as a list of at most one."""
    for witness in witnesses:
        if time.monotonic() - started > total:
            return [_total_time_failure(total, witness)]
        failure = judge(witness)
        if failure is not None:
            if failure.kind != "timed out":
                failure = _reduced(failure, judge, started + total)
            return [replace(failure, witness=True)]
    return []


#: Evaluations the post-shrink reduction may spend (each one runs the implementation once).
REDUCE_EVALUATIONS = 300


def _without(example: Example, keep: np.ndarray) -> Example | None:
    """``example`` restricted to the leading-axis entries ``keep`` of every argument that has
    the first argument's leading length (time steps, or batch rows); None if none apply."""
    arguments = example.arguments
    first = next(iter(arguments.values()))
    if first.ndim == 0:
        return None
    length = first.shape[0]
    reduced = {
        name: value[keep] if value.ndim >= 1 and value.shape[0] == length else value
        for name, value in arguments.items()
    }
    return Example(reduced, dict(example.hyperparameters))


def _reduced(
    failure: Failure, judge: Callable[[Example], Failure | None], deadline: float
) -> Failure:
    r"""A smaller failing input: drop time steps (rows) while the failure keeps its kind.

    Hypothesis shrinks within the branch of the strategy that found the failure (a long
    sequence stays long); this pass then tries a prefix or suffix of each length
    $1, 2, 4, \dots$, then deleting single steps, keeping any smaller input that still fails
    with the same kind, within :data:`REDUCE_EVALUATIONS` runs and the check's time limit.
    """
    best = failure
    budget = [REDUCE_EVALUATIONS]

    def attempt(candidate: Example | None) -> bool:
        nonlocal best
        if candidate is None or budget[0] <= 0 or time.monotonic() > deadline:
            return False
        budget[0] -= 1
        try:
            found = judge(candidate)
        except ValueError:  # the reference rejects the reduced input (outside the spec's domain,
            return False  # e.g. no response token or a group of one left): not a smaller failure
        if found is not None and found.kind == best.kind:
            best = found
            return True
        return False

    def length() -> int:
        first = next(iter(best.example.arguments.values()))
        return 0 if first.ndim == 0 else int(first.shape[0])

    size = 1
    while size < length():
        n = length()
        if attempt(_without(best.example, np.arange(size))) or attempt(
            _without(best.example, np.arange(n - size, n))
        ):
            size = 1
            continue
        size *= 2
    index = length() - 1
    while index >= 0 and length() > 1 and budget[0] > 0:
        keep = np.delete(np.arange(length()), index)
        attempt(_without(best.example, keep))
        index = min(index - 1, length() - 1)
    return best


def _check_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def assert_conforms(impl: Callable[..., Any], spec: Spec | str, **options: Any) -> Report:
    """Like :func:`check`, but raise ``AssertionError`` with the report if ``impl`` fails.

    Use it inside your own test suite::

        def test_my_gae_matches_rlmath():
            assert_conforms(my_gae, "generalized_advantage_estimation", seed=0)

    Args:
        impl: the implementation.
        spec: a spec or its name.
        **options: keyword arguments of :func:`check`.

    Returns:
        The (conforming) report.

    Raises:
        AssertionError: with the full report, if ``impl`` does not conform.

    Examples:
        >>> assert_conforms(lambda x, y: x - y, "kl_estimator_k1", examples=10, seed=0).conforms
        True
    """
    __tracebackhide__ = True  # pytest: the failure points at the caller's test
    report = check(impl, spec, **options)
    if not report.conforms:
        raise AssertionError(str(report))
    return report


def load_target(target: str) -> Callable[..., Any]:
    """Import ``package.module:function`` or ``path/to/file.py:function`` and return it.

    Raises:
        ValueError: if ``target`` is malformed, the module or file cannot be loaded, or the
            attribute is missing or not callable.

    Examples:
        >>> load_target("rlmath.reference:kl_estimator_k1").__name__
        'kl_estimator_k1'
    """
    if not isinstance(target, str) or ":" not in target:
        raise ValueError(
            f"target must be 'package.module:function' or 'path/to/file.py:function', got {target!r}"
        )
    location, _, attribute = target.rpartition(":")
    try:
        if location.endswith(".py"):
            path = Path(location).resolve()
            if not path.is_file():
                raise ValueError(f"target file {location!r} does not exist")
            # the file's folder is importable, as when running `python path/file.py`
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            module_name = f"_rlmath_check_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            if module_spec is None or module_spec.loader is None:
                raise ValueError(f"cannot load {location!r} as a Python file")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # as `python -m`: the current folder first
            module = importlib.import_module(location)
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(f"cannot import {location!r}: {type(error).__name__}: {error}") from error
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ValueError(f"{location!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if not callable(value):
        raise ValueError(f"{target!r} is not callable, got {type(value).__name__}")
    result: Callable[..., Any] = value
    return result


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _name_of(impl: Callable[..., Any]) -> str:
    module = getattr(impl, "__module__", None) or "?"
    name = getattr(impl, "__qualname__", None) or repr(impl)
    return f"{module}:{name}"


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" if line else "" for line in text.splitlines())


def _number(value: Any) -> str:
    """A float as Python prints it (never ``np.float64(...)``, whatever numpy's version)."""
    return repr(float(value))


def _show(array: np.ndarray) -> str:
    return repr(array.tolist()) if array.ndim else repr(array.item())


def _literal(array: np.ndarray) -> str:
    if array.ndim == 0:
        return repr(array.item())
    kind = ", dtype=bool" if array.dtype == np.bool_ else ""
    return f"np.array({array.tolist()!r}{kind})"


def _format_example(example: Example, spec: Spec) -> str:
    lines = [f"{name} = {_literal(example.arguments[name])}" for name in spec.arguments]
    lines += [f"{name} = {value!r}" for name, value in example.hyperparameters.items()]
    return "\n".join(lines)


_CONVERTERS = {
    "numpy": "convert = lambda x: np.asarray(x, dtype=np.{d}) if np.asarray(x).dtype.kind == 'f' else x",
    "torch": "import torch\nconvert = lambda x: torch.from_numpy(np.asarray(x, dtype=np.{d}) "
    "if np.asarray(x).dtype.kind == 'f' else np.asarray(x))",
    "jax": "import jax.numpy as jnp\nconvert = lambda x: jnp.asarray(np.asarray(x, dtype=np.{d}) "
    "if np.asarray(x).dtype.kind == 'f' else np.asarray(x))",
}


def _reproducer(report: Report) -> str:
    spec = report.spec
    call_args = ", ".join(spec.arguments)
    keywords = "".join(f", {k}={k}" for k in spec.hyperparameters)
    needs_conversion = report.framework != "numpy" or report.dtype != "float64"
    converted = (
        ", ".join(f"convert({a})" for a in spec.arguments) if needs_conversion else call_args
    )
    lines = [
        "import numpy as np",
        "from rlmath.conformance import load_target",
        f"from rlmath.reference import {spec.reference.__name__}",
        f"impl = load_target({report.target!r})  # or import your function",
        _format_example(report.failure.example, spec) if report.failure else "",
    ]
    if needs_conversion:
        if report.framework == "jax" and report.dtype == "float64":
            # As check() does: without x64, JAX silently truncates float64 inputs to float32.
            lines.append('import jax\njax.config.update("jax_enable_x64", True)')
        lines.append(_CONVERTERS[report.framework].format(d=report.dtype))
    lines += [
        f"expected = {spec.reference.__name__}({call_args}{keywords})",
        f"actual = impl({converted}{keywords})",
    ]
    return "\n".join(lines)
