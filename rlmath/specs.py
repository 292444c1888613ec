r"""Specifications of the reference functions: signature, edge-case inputs, and comparison rule.

A :class:`Spec` says how :mod:`rlmath.conformance` calls an implementation and judges it:

- **canonical signature** ``name(*arguments, **hyperparameters)``: data arguments positional,
  in the order of the reference function, hyperparameters as keywords;
- **input strategy** (Hypothesis): inputs that reach the edge cases that break real code, i.e.
  episode boundaries at the first and last step, every step done, ``T = 1``, truncation and
  termination on one step, zero and huge advantages, ratios far outside the clip range, log-probs
  near -1000 (where a ratio of probabilities underflows), logits up to $\pm 10^3$, identical
  chosen and rejected log-probs, groups of equal rewards;
- optional fixed **witnesses**: inputs judged at every seed that meet edge cases the drawn
  inputs meet only by chance (:attr:`Spec.witnesses`; the LLM specs have them);
- **comparison rule**: ``|actual - expected| <= conformance_rtol(dtype) * error_scale`` per
  entry, with the error scale derived per spec (see :func:`rlmath.tolerances.conformance_rtol`)
  and the reference evaluated on the inputs rounded to the implementation's dtype;
- for losses, the **gradient** with respect to what training differentiates (new log-probs,
  values, logits), checked when the implementation runs in an autodiff framework.

Generated inputs stay off the points where a loss has a kink (the gradient is not defined
there) and within ranges a float32 implementation can represent.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st
from scipy.special import expit, logsumexp

from rlmath import reference
from rlmath._validation import FloatArray

__all__ = ["SPECS", "Example", "Spec", "get_spec"]

Arrays = dict[str, Any]
Gradients = dict[str, tuple[FloatArray, FloatArray]]


@dataclass(frozen=True)
class Example:
    """One generated input: data arguments (NumPy arrays, 0-d for scalars) and hyperparameters."""

    arguments: dict[str, np.ndarray]
    hyperparameters: dict[str, Any]

    def positional(self, names: tuple[str, ...]) -> list[Any]:
        """The arguments in the order of ``names``, 0-d arrays as NumPy scalars."""
        return [
            self.arguments[name][()] if self.arguments[name].ndim == 0 else self.arguments[name]
            for name in names
        ]

    def rounded(self, dtype: np.dtype) -> Example:
        """The example with float arguments and hyperparameters rounded to ``dtype`` (as float64)."""
        return Example(
            {
                name: value.astype(dtype).astype(np.float64) if value.dtype.kind == "f" else value
                for name, value in self.arguments.items()
            },
            {
                name: float(np.asarray(value, dtype=dtype)) if isinstance(value, float) else value
                for name, value in self.hyperparameters.items()
            },
        )


#: Key under which the contract options reach a spec's ``draw_arguments`` (not a hyperparameter).
ASSUME = "__assume__"


@dataclass(frozen=True)
class Assumption:
    """One contract option of a spec: its default, its kind, and what it restricts.

    Attributes:
        default: the value when not given (the widest domain).
        kind: ``bool``, ``int`` or ``float``.
        doc: one sentence for ``rlmath check --describe``.
        minimum: smallest admissible value (numbers).
    """

    default: Any
    kind: type
    doc: str
    minimum: float | None = None

    def validate(self, name: str, value: Any) -> Any:
        if self.kind is bool:
            if not isinstance(value, bool):
                raise TypeError(f"assumption {name} must be true or false, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"assumption {name} must be a number, got {value!r}")
        if self.kind is int and not float(value).is_integer():
            raise TypeError(f"assumption {name} must be an integer, got {value!r}")
        if self.minimum is not None and not value >= self.minimum:
            raise ValueError(f"assumption {name} must be >= {self.minimum:g}, got {value!r}")
        return self.kind(value)


def _assumed(hyper: Mapping[str, Any]) -> Mapping[str, Any]:
    return hyper.get(ASSUME, {})  # type: ignore[no-any-return]


#: Contract options of the sequence specs (returns, TD, GAE, lambda-returns).
SEQUENCE_ASSUMPTIONS = {
    "batch": Assumption(
        False, bool, "also generate batched [T, B] inputs (the reference accepts [T, *B])"
    ),
    "max_steps": Assumption(
        1000, int, "longest generated sequence (long ones have 50..max_steps steps)", minimum=1
    ),
}
#: Contract option of the log-ratio specs (PPO, KL estimators).
LOG_RATIO_ASSUMPTIONS = {
    "max_abs_log_ratio": Assumption(
        math.inf,
        float,
        "largest |log_probs - other log-probs| generated (for implementations that clamp it)",
        minimum=1e-3,
    ),
}


@dataclass(frozen=True)
class Spec:
    """How to call, feed and judge an implementation of one reference function.

    Attributes:
        name: the spec's name, that of the reference function.
        reference: the function in :mod:`rlmath.reference`.
        arguments: names of the positional data arguments, in order.
        hyperparameters: default strategies of the keyword hyperparameters, by name.
        outputs: names of the outputs (more than one: the implementation returns a tuple).
        conventions: shapes, axes and conventions, for ``rlmath check --describe``.
        claim: claim id(s) in ``proofs/`` that justify the reference.
        draw_arguments: ``hyperparameters -> strategy`` of the data arguments.
        error_scale: ``example -> one array per output``: the scale $s$ of the comparison rule.
        differentiable: arguments whose gradient is checked in autodiff frameworks.
        gradient: ``example -> {argument: (gradient of the sum of the output, error scale)}``.
        assumptions: contract options (name -> :class:`Assumption`) that restrict the
            generated inputs, so that an implementation with a documented limitation (batch
            axes unsupported, log-ratios clamped, ...) is checked within its contract
            (``rlmath check --assume NAME=VALUE``).
        witnesses: ``hyperparameters -> fixed inputs`` (a list of arguments): inputs that meet
            the edge cases whatever Hypothesis draws (generated inputs meet an edge case only
            by chance, with odds that change between Hypothesis versions and seeds).
            :func:`rlmath.conformance.check` judges them at every seed, after the generated
            ones, with every combination of :attr:`witness_hyperparameters`. The function gets
            the hyperparameters and, under :data:`ASSUME`, the contract options, as
            ``draw_arguments`` does: a witness must satisfy both.
        witness_hyperparameters: name -> the values the witnesses are judged with, for every
            hyperparameter of the spec (a hyperparameter fixed by the caller replaces them).
        witness_reason: what the witnesses meet (shown by ``--describe`` and in the docs).
    """

    name: str
    reference: Callable[..., Any]
    arguments: tuple[str, ...]
    hyperparameters: Mapping[str, st.SearchStrategy[Any]]
    outputs: tuple[str, ...]
    conventions: str
    claim: str
    draw_arguments: Callable[[dict[str, Any]], st.SearchStrategy[Arrays]]
    error_scale: Callable[[Example], tuple[FloatArray, ...]]
    differentiable: tuple[str, ...] = ()
    gradient: Callable[[Example], Gradients] | None = field(default=None)
    assumptions: Mapping[str, Assumption] = field(default_factory=dict)
    witnesses: Callable[[dict[str, Any]], Sequence[Arrays]] | None = field(default=None)
    witness_hyperparameters: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    witness_reason: str = ""

    def __post_init__(self) -> None:
        if self.witnesses is None:
            if self.witness_hyperparameters or self.witness_reason:
                raise ValueError(f"spec {self.name}: witness settings without witnesses")
            return
        if not self.witness_reason:
            raise ValueError(f"spec {self.name}: witnesses need a witness_reason")
        if set(self.witness_hyperparameters) != set(self.hyperparameters):
            raise ValueError(
                f"spec {self.name}: witness_hyperparameters must give values for "
                f"{sorted(self.hyperparameters)}, got {sorted(self.witness_hyperparameters)}"
            )
        if not all(self.witness_hyperparameters.values()):
            raise ValueError(f"spec {self.name}: every witness hyperparameter needs a value")

    def resolve_assumptions(self, assume: Mapping[str, Any] | None) -> dict[str, Any]:
        """The contract options with defaults filled in and values validated."""
        given = dict(assume or {})
        unknown = set(given) - set(self.assumptions)
        if unknown:
            known = sorted(self.assumptions) or "none"
            raise ValueError(
                f"assumptions of {self.name} are {known}, got unknown {sorted(unknown)}"
            )
        return {
            name: option.validate(name, given[name]) if name in given else option.default
            for name, option in self.assumptions.items()
        }

    @property
    def signature(self) -> str:
        """The canonical signature, e.g. ``f(log_probs, old_log_probs, *, clip_epsilon)``."""
        parts = list(self.arguments)
        if self.hyperparameters:
            parts += ["*", *self.hyperparameters]
        result = f"{self.name}({', '.join(parts)})"
        return result + (f" -> ({', '.join(self.outputs)})" if len(self.outputs) > 1 else "")

    def examples(
        self,
        hyperparameters: Mapping[str, Any] | None = None,
        assume: Mapping[str, Any] | None = None,
    ) -> st.SearchStrategy[Example]:
        """Strategy of examples; ``hyperparameters`` fixes some of them instead of drawing;
        ``assume`` sets contract options (:attr:`assumptions`)."""
        fixed = self._fixed_hyperparameters(hyperparameters)
        assumed = self.resolve_assumptions(assume)

        @st.composite
        def draw(draw: st.DrawFn) -> Example:
            hyper = {
                name: fixed[name] if name in fixed else draw(strategy)
                for name, strategy in self.hyperparameters.items()
            }
            return Example(draw(self.draw_arguments({**hyper, ASSUME: assumed})), hyper)

        return draw()

    def witness_examples(
        self,
        hyperparameters: Mapping[str, Any] | None = None,
        assume: Mapping[str, Any] | None = None,
    ) -> list[Example]:
        """The fixed witness inputs (:attr:`witnesses`), for every combination of
        :attr:`witness_hyperparameters`; ``hyperparameters`` fixes some of them instead (as in
        :meth:`examples`), ``assume`` sets contract options. Empty for a spec without witnesses.
        """
        fixed = self._fixed_hyperparameters(hyperparameters)
        assumed = self.resolve_assumptions(assume)
        if self.witnesses is None:
            return []
        names = list(self.hyperparameters)
        values = [
            [fixed[name]] if name in fixed else list(self.witness_hyperparameters[name])
            for name in names
        ]
        settings = [dict(zip(names, chosen, strict=True)) for chosen in itertools.product(*values)]
        return [
            Example(arguments, hyper)
            for hyper in settings
            for arguments in self.witnesses({**hyper, ASSUME: assumed})
        ]

    def _fixed_hyperparameters(self, hyperparameters: Mapping[str, Any] | None) -> dict[str, Any]:
        fixed = dict(hyperparameters or {})
        unknown = set(fixed) - set(self.hyperparameters)
        if unknown:
            raise ValueError(
                f"hyperparameters of {self.name} are {sorted(self.hyperparameters)}, "
                f"got unknown {sorted(unknown)}"
            )
        return fixed

    def expected(self, example: Example) -> tuple[FloatArray, ...]:
        """The reference outputs on ``example``, as a tuple of float64 arrays."""
        result = self.reference(*example.positional(self.arguments), **example.hyperparameters)
        parts = result if isinstance(result, tuple) else (result,)
        return tuple(np.asarray(part, dtype=np.float64) for part in parts)

    def describe(self) -> str:
        """A readable page: signature, conventions, claim, hyperparameters, gradient checks."""
        lines = [
            self.signature,
            "",
            self.conventions.strip(),
            "",
            f"claim: {self.claim}",
            f"reference: {self.reference.__module__}.{self.reference.__name__}",
        ]
        if self.hyperparameters:
            lines.append("hyperparameters drawn by default (fix with --param NAME=VALUE):")
            lines += [f"  {name}: {strategy!r}" for name, strategy in self.hyperparameters.items()]
        if self.differentiable:
            lines.append(
                "gradient checked (torch/JAX) with respect to: " + ", ".join(self.differentiable)
            )
        if self.witnesses is not None:
            lines.append(
                f"fixed witness inputs ({len(self.witness_examples())}), judged at every seed "
                f"after the generated ones: {self.witness_reason}"
            )
        if self.assumptions:
            lines.append("contract options (--assume NAME=VALUE):")
            lines += [
                f"  {name} (default {option.default!r}): {option.doc}"
                for name, option in self.assumptions.items()
            ]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Element strategies
# --------------------------------------------------------------------------------------------


def _array(value: Any) -> FloatArray:
    return np.asarray(value, dtype=np.float64)


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_subnormal=False)


#: Ordinary magnitudes, exact small values, and large ones. Magnitudes below 1e-6 are flushed to
#: zero: rewards of 1e-300 test float64 underflow, not RL code, and are not float32 numbers.
REALS = st.one_of(st.sampled_from([0.0, 1.0, -1.0]), _floats(-10.0, 10.0), _floats(-1e3, 1e3)).map(
    lambda x: x if abs(x) >= 1e-6 else 0.0
)
#: Log-probabilities, including those below -745 where exp underflows in float64.
LOG_PROBS = st.one_of(_floats(-5.0, 0.0), _floats(-1000.0, -700.0), _floats(-1000.0, 50.0))
#: Log-ratios: zero, near zero, and far outside any clip range.
LOG_RATIOS = st.one_of(st.just(0.0), _floats(-0.3, 0.3), _floats(-30.0, 30.0))
#: Advantages: zero, ordinary, huge.
ADVANTAGES = st.one_of(
    st.just(0.0), _floats(-10.0, 10.0), st.sampled_from([1e6, -1e6]), _floats(-1e6, 1e6)
).map(lambda x: x if abs(x) >= 1e-6 else 0.0)
#: Discounts and lambdas: the boundaries 0 and 1, typical values, and small positive ones (a
#: real library's GAE dropped terms only for gamma * lambda around 1e-4).
UNIT = st.one_of(
    st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]),
    st.sampled_from([1e-4, 1e-3, 1e-2, 1 - 1e-6]),
    _floats(0.0, 1.0),
).map(lambda x: x if x >= 1e-6 else 0.0)
CLIP = st.one_of(st.sampled_from([0.1, 0.2, 0.3]), _floats(0.05, 0.5))
#: Margin, in log-ratio (or relative) units, that keeps inputs off kinks after float32 rounding.
KINK_MARGIN = 1e-3


def _vector(size: int, elements: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    # Lists are much cheaper to generate and shrink than hypothesis.extra.numpy.arrays.
    lists = st.lists(elements, min_size=size, max_size=size)
    return lists.map(lambda xs: np.array(xs, dtype=np.float64))


def _matrix(
    shape: tuple[int, int], elements: st.SearchStrategy[float]
) -> st.SearchStrategy[np.ndarray]:
    return _vector(shape[0] * shape[1], elements).map(lambda x: x.reshape(shape))


def _flags(size: int) -> st.SearchStrategy[np.ndarray]:
    lists = st.lists(st.booleans(), min_size=size, max_size=size)
    return st.one_of(
        lists.map(lambda xs: np.array(xs, dtype=np.bool_)),
        st.sampled_from([np.ones(size, bool), np.zeros(size, bool)]),
    )


def _bounded(log_ratio: np.ndarray, hyper: Mapping[str, Any]) -> np.ndarray:
    """Log-ratios clipped to the contract's ``max_abs_log_ratio`` (no-op by default)."""
    bound = float(_assumed(hyper).get("max_abs_log_ratio", math.inf))
    clipped: np.ndarray = np.clip(log_ratio, -bound, bound)
    return clipped


def _away_from(x: np.ndarray, kinks: list[float], margin: float) -> np.ndarray:
    """Move entries of ``x`` closer than ``margin`` to a kink to ``kink + 2 margin``."""
    for kink in kinks:
        x = np.where(np.abs(x - kink) < margin, kink + 2 * margin, x)
    return x


# --------------------------------------------------------------------------------------------
# Returns, TD errors, GAE, lambda-returns
# --------------------------------------------------------------------------------------------

_TRAJECTORY = ("rewards", "values", "terminated", "truncated", "final_values", "last_value")
_TRAJECTORY_CONVENTIONS = """
Time-major 1-D arrays [T] (a batch-major caller transposes; see docs/conformance.md):
rewards[t] = r_t, received after action a_t, t = 0..T-1; values[t] = V(s_t), t = 0..T-1;
terminated[t]: s_{t+1} is terminal, no bootstrap; truncated[t]: the episode was cut by a time
limit after step t, bootstrap from final_values[t] (the value of that episode's final
observation; entries where not truncated are ignored); termination wins if both are set;
last_value = V(s_T) (0-d) bootstraps the last step if it neither terminated nor truncated.
The recursion never crosses an episode boundary. Output: float array [T].
"""


def _steps(
    *elements: st.SearchStrategy[Any], max_steps: int = 8
) -> st.SearchStrategy[list[np.ndarray]]:
    """1 to 8 time steps drawn as rows (so shrinking deletes whole steps), returned as columns."""
    rows = st.lists(st.tuples(*elements), min_size=1, max_size=max_steps)
    return rows.map(lambda rows: [np.array(column) for column in zip(*rows, strict=True)])


#: Long sequences: this many steps at most (a bug that shows only beyond 50 steps is found).
MAX_LONG_STEPS = 1000
MIN_LONG_STEPS = 50


def _numpy_reals(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values like :data:`REALS` (exact 0 and +-1, ordinary, large), drawn by NumPy for speed."""
    kind = rng.integers(0, 4, size=shape)
    values = np.select(
        [kind == 0, kind == 1, kind == 2],
        [
            rng.choice([0.0, 1.0, -1.0], size=shape),
            rng.uniform(-10, 10, shape),
            rng.uniform(-1e3, 1e3, shape),
        ],
        rng.uniform(-1.0, 1.0, shape),
    )
    return np.where(np.abs(values) >= 1e-6, values, 0.0)


def _numpy_flags(rng: np.random.Generator, shape: tuple[int, ...], rate: float) -> np.ndarray:
    return rng.random(shape) < rate


@st.composite
def _long_columns(draw: st.DrawFn, kinds: str, batch: bool, max_steps: int) -> list[np.ndarray]:
    """Columns for long ([T] with T in 50..1000) or batched ([T, B]) sequences.

    ``kinds`` has one letter per column: ``r`` real, ``f`` flag. Entries come from a NumPy
    generator seeded by Hypothesis (fast for 1000 steps); shrinking moves T (and B) down and
    the seed to 0. Flags are rare (so long episodes happen) or dense, by a drawn rate.
    """
    if batch:
        steps, width = draw(st.integers(1, max_steps)), draw(st.integers(1, 4))
        shape: tuple[int, ...] = (steps, width)
    else:
        shape = (draw(st.integers(MIN_LONG_STEPS, max_steps)),)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rate = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5]))
    return [_numpy_reals(rng, shape) if k == "r" else _numpy_flags(rng, shape, rate) for k in kinds]


def _sequence_columns(
    kinds: str, assumed: Mapping[str, Any], *elements: st.SearchStrategy[Any]
) -> st.SearchStrategy[list[np.ndarray]]:
    """Short [T <= 8], long [50 <= T <= max_steps] and (if assumed) batched [T, B] columns."""
    max_steps = int(assumed.get("max_steps", MAX_LONG_STEPS))
    choices = [_steps(*elements, max_steps=min(8, max_steps))] * 2
    if max_steps >= MIN_LONG_STEPS:
        choices.append(_long_columns(kinds, batch=False, max_steps=max_steps))
    if assumed.get("batch", False):
        choices.append(_long_columns(kinds, batch=True, max_steps=min(6, max_steps)))
    return st.one_of(*choices)


def _override_flags(draw: st.DrawFn, flags: np.ndarray) -> np.ndarray:
    """Sometimes every step (or no step) is flagged."""
    choice = draw(st.sampled_from(["drawn", "drawn", "all", "none"]))
    return flags if choice == "drawn" else np.full(flags.shape, choice == "all")


@st.composite
def _trajectory(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    columns = draw(
        _sequence_columns(
            "rrffr", _assumed(hyper), REALS, REALS, st.booleans(), st.booleans(), REALS
        )
    )
    rewards, values, terminated, truncated, final_values = columns
    last_shape = rewards.shape[1:]
    last_value = np.asarray(draw(REALS)) if not last_shape else draw(_vector(last_shape[0], REALS))
    return {
        "rewards": rewards.astype(np.float64),
        "values": values.astype(np.float64),
        "terminated": _override_flags(draw, terminated.astype(np.bool_)),
        "truncated": _override_flags(draw, truncated.astype(np.bool_)),
        "final_values": final_values.astype(np.float64),
        "last_value": last_value,
    }


@st.composite
def _rewards_and_dones(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    rewards, dones = draw(_sequence_columns("rf", _assumed(hyper), REALS, st.booleans()))
    return {
        "rewards": rewards.astype(np.float64),
        "dones": _override_flags(draw, dones.astype(np.bool_)),
    }


def _absolute_bootstrap(example: Example) -> tuple[FloatArray, np.ndarray]:
    """|v'_t| (the bootstrap values, on absolute inputs) and done = terminated | truncated."""
    a = example.arguments
    absolute = [np.abs(a[name]) for name in ("values", "final_values", "last_value")]
    # With zero rewards and discount 1, the TD error is v'_t - V(s_t).
    td = reference.temporal_difference_errors(
        np.zeros_like(absolute[0]),
        absolute[0],
        a["terminated"],
        a["truncated"],
        absolute[1],
        absolute[2],
        discount=1.0,
    )
    return td + absolute[0], a["terminated"] | a["truncated"]


def _td_magnitudes(example: Example) -> tuple[FloatArray, np.ndarray]:
    next_abs, done = _absolute_bootstrap(example)
    gamma = example.hyperparameters["discount"]
    a = example.arguments
    return np.abs(a["rewards"]) + gamma * next_abs + np.abs(a["values"]), done


def _returns_scale(example: Example) -> tuple[FloatArray, ...]:
    a, h = example.arguments, example.hyperparameters
    steps = len(a["rewards"])
    total = reference.discounted_returns(np.abs(a["rewards"]), a["dones"], discount=h["discount"])
    return ((steps + 2) * total,)


def _td_scale(example: Example) -> tuple[FloatArray, ...]:
    return (4 * _td_magnitudes(example)[0],)


def _gae_scale(example: Example) -> tuple[FloatArray, ...]:
    magnitudes, done = _td_magnitudes(example)
    h = example.hyperparameters
    factor = h["discount"] * h["lambda_"]
    total = reference.discounted_returns(magnitudes, done, discount=factor)
    return ((len(magnitudes) + 3) * (total + np.abs(example.arguments["values"])),)


# --------------------------------------------------------------------------------------------
# PPO
# --------------------------------------------------------------------------------------------


@st.composite
def _ppo_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    size = draw(st.integers(1, 8))
    old = draw(_vector(size, LOG_PROBS))
    epsilon = hyper["clip_epsilon"]
    # the kinks of the clip in log-ratio space; none below 0 for epsilon >= 1, none at all for inf
    kinks = [float(np.log1p(epsilon))] if np.isfinite(epsilon) else []
    if epsilon < 1:
        kinks.append(float(np.log1p(-epsilon)))
    log_ratio = _bounded(draw(_vector(size, LOG_RATIOS)), hyper)
    log_ratio = _away_from(log_ratio, kinks, KINK_MARGIN)
    return {
        "log_probs": old + log_ratio,
        "old_log_probs": old,
        "advantages": draw(_vector(size, ADVANTAGES)),
    }


def _ppo_parts(example: Example) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    a = example.arguments
    log_ratio = a["log_probs"] - a["old_log_probs"]
    ratio = np.exp(log_ratio)
    epsilon = example.hyperparameters["clip_epsilon"]
    clipped = np.clip(ratio, 1 - epsilon, 1 + epsilon)
    return ratio, clipped, np.abs(a["advantages"]), 2 + np.abs(log_ratio)


def _ppo_loss_scale(example: Example) -> tuple[FloatArray, ...]:
    ratio, clipped, advantage, amplification = _ppo_parts(example)
    return (_array((ratio.size + 4) * np.mean(advantage * (ratio + clipped) * amplification)),)


def _ppo_gradient_scale(example: Example) -> FloatArray:
    ratio, _, advantage, amplification = _ppo_parts(example)
    result: FloatArray = 8 * advantage * ratio * amplification / ratio.size
    return result


def _ppo_gradient(example: Example) -> Gradients:
    expected = reference.ppo_clipped_surrogate_loss_gradient(
        *(example.arguments[k] for k in ("log_probs", "old_log_probs", "advantages")),
        **example.hyperparameters,
    )
    return {"log_probs": (expected, _ppo_gradient_scale(example))}


@st.composite
def _value_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    size = draw(st.integers(1, 8))
    values, old, returns = (draw(_vector(size, REALS)) for _ in range(3))
    epsilon = hyper["clip_epsilon"]
    change = values - old
    # Off the clip boundary |V - V_old| = epsilon ...
    change = np.sign(change) * _away_from(np.abs(change), [epsilon], KINK_MARGIN * (1 + epsilon))
    values = old + change
    # ... and off ties between the two squared errors while the clip is active.
    clipped = old + np.clip(change, -epsilon, epsilon)
    margin = KINK_MARGIN * (1 + np.abs(values) + np.abs(returns))
    tie = (np.abs(change) > epsilon) & (np.abs((values - returns) + (clipped - returns)) < margin)
    returns = np.where(tie, returns + 2 * margin, returns)
    return {"values": values, "old_values": old, "returns": returns}


def _value_magnitude(example: Example) -> FloatArray:
    a = example.arguments
    epsilon = example.hyperparameters["clip_epsilon"]
    return _array(np.abs(a["values"]) + np.abs(a["old_values"]) + np.abs(a["returns"]) + epsilon)


def _value_loss_scale(example: Example) -> tuple[FloatArray, ...]:
    magnitude = _value_magnitude(example)
    return (_array((magnitude.size + 4) * np.mean(magnitude**2)),)


def _value_gradient(example: Example) -> Gradients:
    expected = reference.clipped_value_loss_gradient(
        *(example.arguments[k] for k in ("values", "old_values", "returns")),
        **example.hyperparameters,
    )
    magnitude = _value_magnitude(example)
    return {"values": (expected, 8 * magnitude / magnitude.size)}


# --------------------------------------------------------------------------------------------
# KL estimators and the adaptive coefficient
# --------------------------------------------------------------------------------------------


@st.composite
def _kl_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    size = draw(st.integers(1, 8))
    log_probs = draw(_vector(size, LOG_PROBS))
    return {
        "log_probs": log_probs,
        "reference_log_probs": log_probs - _bounded(draw(_vector(size, LOG_RATIOS)), hyper),
    }


def _kl_parts(example: Example) -> tuple[FloatArray, FloatArray]:
    a = example.arguments
    magnitude = 1 + np.abs(a["log_probs"]) + np.abs(a["reference_log_probs"])
    return a["log_probs"] - a["reference_log_probs"], magnitude


def _k1_scale(example: Example) -> tuple[FloatArray, ...]:
    return (2 * _kl_parts(example)[1],)


def _k2_scale(example: Example) -> tuple[FloatArray, ...]:
    log_ratio, magnitude = _kl_parts(example)
    return (2 * (np.abs(log_ratio) * magnitude + log_ratio**2),)


def _k3_scale(example: Example) -> tuple[FloatArray, ...]:
    log_ratio, magnitude = _kl_parts(example)
    return (2 * (1 + np.exp(-log_ratio)) * magnitude + np.abs(log_ratio),)


def _kl_gradient(
    derivative: Callable[[FloatArray], FloatArray], scale: str
) -> Callable[[Example], Gradients]:
    """Pathwise gradient of a per-sample KL estimator with respect to ``log_probs``."""

    def gradient(example: Example) -> Gradients:
        log_ratio, magnitude = _kl_parts(example)
        scales = {"one": np.ones_like(magnitude), "magnitude": 2 * magnitude}
        scales["exp"] = 2 * (1 + np.exp(-log_ratio)) * magnitude
        return {"log_probs": (derivative(log_ratio), scales[scale])}

    return gradient


_KL_CONVENTIONS = """
Per-sample estimate of KL(pi || pi_ref) from samples x ~ pi: log_probs[i] = log pi(x_i) (the
sampling policy, the one being trained), reference_log_probs[i] = log pi_ref(x_i). Arrays [N],
output [N] (no reduction). Schulman (2020): with r = pi_ref(x)/pi(x), k1 = -log r,
k2 = (log r)^2 / 2, k3 = (r - 1) - log r. The gradient w.r.t. log_probs is checked in
autodiff frameworks (pathwise, samples fixed).
"""

_ADAPTIVE_BAND = (0.0, 0.1, 0.5, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 2.0, 10.0)


@st.composite
def _adaptive_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    target = hyper["target_kl"]
    observed = draw(st.one_of(st.sampled_from(_ADAPTIVE_BAND), _floats(0.0, 20.0))) * target
    # Keep the observed KL off the band edges target/1.5 and 1.5 target.
    observed = float(
        _away_from(np.asarray(observed), [target / 1.5, target * 1.5], KINK_MARGIN * target)
    )
    return {
        "kl_coefficient": np.asarray(draw(st.one_of(st.just(1.0), _floats(1e-3, 10.0)))),
        "observed_kl": np.asarray(observed),
    }


# --------------------------------------------------------------------------------------------
# Entropy
# --------------------------------------------------------------------------------------------

LOGITS = st.one_of(REALS, st.sampled_from([1e3, -1e3]))


@st.composite
def _logits_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 6)))
    return {"logits": draw(_matrix(shape, LOGITS))}


def _entropy_parts(example: Example) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    logits = example.arguments["logits"]
    normaliser = logsumexp(logits, axis=-1, keepdims=True)
    log_p = logits - normaliser
    p = np.exp(log_p)
    magnitude = 1 + np.abs(logits) + np.abs(normaliser)
    entropy_scale = logits.shape[-1] + np.sum(p * magnitude, axis=-1)
    return log_p, p, magnitude, entropy_scale


def _entropy_scale(example: Example) -> tuple[FloatArray, ...]:
    return (4 * _entropy_parts(example)[3],)


def _entropy_gradient(example: Example) -> Gradients:
    log_p, p, magnitude, entropy_scale = _entropy_parts(example)
    entropy = reference.categorical_entropy(example.arguments["logits"])[..., np.newaxis]
    expected = -p * (log_p + entropy)
    scale = 4 * p * ((1 + np.abs(log_p) + entropy) * magnitude + entropy_scale[..., np.newaxis])
    return {"logits": (expected, scale)}


# --------------------------------------------------------------------------------------------
# DPO and Bradley-Terry
# --------------------------------------------------------------------------------------------

_DPO = (
    "policy_chosen_log_probs",
    "policy_rejected_log_probs",
    "reference_chosen_log_probs",
    "reference_rejected_log_probs",
)


@st.composite
def _dpo_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    size = draw(st.integers(1, 8))

    def reference_of(policy: np.ndarray) -> np.ndarray:
        # Near the policy, or unrelated to it (whole responses: margins of hundreds of nats).
        independent = draw(st.booleans())
        return (
            draw(_vector(size, LOG_PROBS))
            if independent
            else policy - draw(_vector(size, LOG_RATIOS))
        )

    chosen = draw(_vector(size, LOG_PROBS))
    reference_chosen = reference_of(chosen)
    if draw(st.booleans()):  # identical chosen and rejected responses
        rejected, reference_rejected = chosen.copy(), reference_chosen.copy()
    else:
        rejected = draw(_vector(size, LOG_PROBS))
        reference_rejected = reference_of(rejected)
    return dict(zip(_DPO, (chosen, rejected, reference_chosen, reference_rejected), strict=True))


def _dpo_parts(example: Example) -> tuple[FloatArray, FloatArray, float]:
    a = example.arguments
    beta = example.hyperparameters.get("beta", 1.0)
    names = _DPO if "beta" in example.hyperparameters else ("chosen_rewards", "rejected_rewards")
    magnitude = beta * sum(np.abs(a[name]) for name in names)
    signs = (1, -1, -1, 1)[: len(names)]
    margin = beta * sum(sign * a[name] for sign, name in zip(signs, names, strict=True))
    return np.asarray(margin), np.asarray(magnitude), float(beta)


def _preference_loss_scale(example: Example) -> tuple[FloatArray, ...]:
    margin, magnitude, _ = _dpo_parts(example)
    return (_array((margin.size + 4) * np.mean(magnitude + np.logaddexp(0.0, -margin) + 1)),)


def _preference_gradient_scale(example: Example) -> FloatArray:
    margin, magnitude, beta = _dpo_parts(example)
    result: FloatArray = 4 * beta * (expit(-margin) + magnitude) / margin.size
    return result


def _dpo_gradient_scales(example: Example) -> tuple[FloatArray, ...]:
    scale = _preference_gradient_scale(example)
    return scale, scale


def _preference_gradient(first: str, second: str) -> Callable[[Example], Gradients]:
    def gradient(example: Example) -> Gradients:
        margin, _, beta = _dpo_parts(example)
        weight = beta * expit(-margin) / margin.size
        scale = _preference_gradient_scale(example)
        return {first: (-weight, scale), second: (weight, scale)}

    return gradient


@st.composite
def _bradley_terry_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    size = draw(st.integers(1, 8))
    chosen = draw(_vector(size, REALS))
    rejected = chosen.copy() if draw(st.booleans()) else draw(_vector(size, REALS))
    return {"chosen_rewards": chosen, "rejected_rewards": rejected}


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

#: Rewards with many ties (binary or repeated scores), and ordinary reals.
SCORES = st.one_of(st.sampled_from([0.0, 0.1, 1.0]), REALS)


@st.composite
def _matrix_with_constant_rows(draw: st.DrawFn, name: str) -> Arrays:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 6)))
    matrix = draw(_matrix(shape, SCORES))
    constant = draw(_flags(shape[0]))
    matrix = np.where(constant[:, np.newaxis], matrix[:, :1], matrix)
    return {name: matrix}


def _standardize_scale(x: FloatArray, axis: int | None, hyper: dict[str, Any]) -> FloatArray:
    eps, ddof = hyper["epsilon"], hyper["ddof"]
    count = x.size if axis is None else x.shape[axis]
    largest = np.max(np.abs(x), axis=axis, keepdims=True)
    constant = np.max(x, axis=axis, keepdims=True) == np.min(x, axis=axis, keepdims=True)
    if count - ddof <= 0:
        return np.zeros_like(x)
    std = np.std(x, axis=axis, ddof=ddof, keepdims=True)
    # Constant groups: (x - mean) is rounding noise of size count * u * largest; divided by
    # epsilon if there is one, otherwise the result must be exactly 0.
    denominator = np.where(constant, eps, std + eps)
    ratio = np.divide(largest, denominator, out=np.zeros_like(largest), where=denominator > 0)
    result: FloatArray = 8 * count * (ratio + np.where(constant, 0.0, np.sqrt(count)))
    return np.broadcast_to(result, x.shape).copy()


_NORMALISATION_HYPERPARAMETERS = {
    "epsilon": st.sampled_from([0.0, 1e-8, 1e-4]),
    "ddof": st.sampled_from([0, 1]),
}


# --------------------------------------------------------------------------------------------
# Policy-gradient, dual-clip PPO and actor-critic losses
# --------------------------------------------------------------------------------------------


@st.composite
def _policy_gradient_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    size = draw(st.integers(1, 8))
    return {
        "log_probs": draw(_vector(size, LOG_PROBS)),
        "advantages": draw(_vector(size, ADVANTAGES)),
    }


def _policy_gradient_loss_scale(example: Example) -> tuple[FloatArray, ...]:
    a = example.arguments
    products = np.abs(a["log_probs"]) * np.abs(a["advantages"])
    return (_array((products.size + 4) * np.mean(products)),)


def _policy_gradient_gradient(example: Example) -> Gradients:
    advantages = example.arguments["advantages"]
    return {"log_probs": (-advantages / advantages.size, 4 * np.abs(advantages) / advantages.size)}


#: Dual-clip constants c > 1: Ye et al.'s 3, others, and infinity (plain PPO).
DUAL_CLIP = st.one_of(st.sampled_from([3.0, 2.0, 1.5, math.inf]), _floats(1.05, 10.0))


@st.composite
def _dual_clip_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    arguments = draw(_ppo_arguments(hyper))
    epsilon, c = hyper["clip_epsilon"], hyper["dual_clip"]
    kinks = [float(np.log1p(epsilon))] if np.isfinite(epsilon) else []
    if epsilon < 1:
        kinks.append(float(np.log1p(-epsilon)))
    if np.isfinite(c):
        kinks.append(float(np.log(c)))
    log_ratio = arguments["log_probs"] - arguments["old_log_probs"]
    for _ in range(len(kinks)):  # moving off one kink may land near another
        log_ratio = _away_from(log_ratio, kinks, KINK_MARGIN)
    return {**arguments, "log_probs": arguments["old_log_probs"] + log_ratio}


def _dual_clip_gradient(example: Example) -> Gradients:
    a, h = example.arguments, example.hyperparameters
    ratio = np.exp(a["log_probs"] - a["old_log_probs"])
    advantages, epsilon = a["advantages"], h["clip_epsilon"]
    active = ((advantages > 0) & (ratio <= 1 + epsilon)) | (
        (advantages < 0) & (ratio >= 1 - epsilon) & (ratio <= h["dual_clip"])
    )
    expected = -np.where(active, ratio * advantages, 0.0) / ratio.size
    return {"log_probs": (expected, _ppo_gradient_scale(example))}


_COEFFICIENTS = {
    "value_coefficient": st.one_of(st.sampled_from([0.0, 0.5, 1.0]), _floats(0.0, 2.0)),
    "entropy_coefficient": st.one_of(st.sampled_from([0.0, 0.01, 0.1]), _floats(0.0, 1.0)),
    "kl_coefficient": st.one_of(st.sampled_from([0.0, 0.04, 0.1, 1.0]), _floats(0.0, 1.0)),
}
#: Per-sample entropies: zero (a deterministic policy), discrete (<= log K), and negative
#: differential entropies of narrow Gaussians.
ENTROPIES = st.one_of(st.just(0.0), _floats(0.0, 10.0), _floats(-5.0, 10.0))


@st.composite
def _actor_critic_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    arguments = draw(_ppo_arguments(hyper))
    size = len(arguments["log_probs"])
    log_ratio = _bounded(draw(_vector(size, LOG_RATIOS)), hyper)
    return {
        **arguments,
        "values": draw(_vector(size, REALS)),
        "returns": draw(_vector(size, REALS)),
        "entropy": draw(_vector(size, ENTROPIES)),
        "reference_log_probs": arguments["log_probs"] - log_ratio,
    }


def _actor_critic_kl_parts(example: Example) -> tuple[FloatArray, FloatArray]:
    """log pi - log pi_ref, and the k3 error scale (as for kl_estimator_k3)."""
    a = example.arguments
    log_ratio = a["log_probs"] - a["reference_log_probs"]
    magnitude = 1 + np.abs(a["log_probs"]) + np.abs(a["reference_log_probs"])
    return log_ratio, 2 * (1 + np.exp(-log_ratio)) * magnitude + np.abs(log_ratio)


def _actor_critic_loss_scale(example: Example) -> tuple[FloatArray, ...]:
    a, h = example.arguments, example.hyperparameters
    count = a["log_probs"].size + 4
    _, kl_scale = _actor_critic_kl_parts(example)
    value = (np.abs(a["values"]) + np.abs(a["returns"])) ** 2
    terms = (
        _ppo_loss_scale(example)[0]
        + h["value_coefficient"] * count * np.mean(value)
        + h["entropy_coefficient"] * count * np.mean(np.abs(a["entropy"]))
        + h["kl_coefficient"] * count * np.mean(kl_scale)
    )
    return (_array(2 * terms),)


def _actor_critic_gradient(example: Example) -> Gradients:
    a, h = example.arguments, example.hyperparameters
    size = a["log_probs"].size
    ppo = reference.ppo_clipped_surrogate_loss_gradient(
        a["log_probs"], a["old_log_probs"], a["advantages"], clip_epsilon=h["clip_epsilon"]
    )
    ppo_scale = _ppo_gradient_scale(example)
    log_ratio, kl_scale = _actor_critic_kl_parts(example)
    beta, c_v, c_e = h["kl_coefficient"], h["value_coefficient"], h["entropy_coefficient"]
    residual = a["values"] - a["returns"]
    magnitude = np.abs(a["values"]) + np.abs(a["returns"])
    return {
        "log_probs": (
            ppo - beta * np.expm1(-log_ratio) / size,
            2 * (ppo_scale + beta * kl_scale / size),
        ),
        "values": (c_v * residual / size, 8 * c_v * magnitude / size),
        "entropy": (np.full(size, -c_e / size), np.full(size, 4 * c_e / size)),
    }


# --------------------------------------------------------------------------------------------
# n-step returns and V-trace
# --------------------------------------------------------------------------------------------

#: n: one step (the TD target), a few, and more steps than any generated sequence has.
N_STEPS = st.one_of(st.sampled_from([1, 2, 3, 5]), st.integers(1, 20), st.integers(1, 2000))


def _n_step_scale(example: Example) -> tuple[FloatArray, ...]:
    a, h = example.arguments, example.hyperparameters
    # The same sums on absolute values: no cancellation, so a bound on every partial sum.
    absolute = reference.n_step_returns(
        np.abs(a["rewards"]),
        np.abs(a["values"]),
        a["terminated"],
        a["truncated"],
        np.abs(a["final_values"]),
        np.abs(a["last_value"]),
        **h,
    )
    return ((min(h["n_steps"], len(a["rewards"])) + 3) * absolute,)


#: V-trace truncation thresholds: IMPALA's 1, below and above 1, 0, and no truncation.
THRESHOLDS = st.one_of(st.sampled_from([1.0, 0.5, 2.0, math.inf]), _floats(0.0, 5.0))
#: Largest log of the product of the traces c_t along a generated sequence: e^20 = 5e8
#: keeps every V-trace target finite in float32 (with c_bar = inf the product of 1000 ratios
#: would overflow; that is a property of V-trace, not of an implementation).
VTRACE_TRACE_BUDGET = 20.0


def _numpy_log_ratios(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values like :data:`LOG_RATIOS` (zero, near zero, far outside a clip), drawn by NumPy."""
    kind = rng.integers(0, 3, size=shape)
    return np.select(
        [kind == 0, kind == 1],
        [np.zeros(shape), rng.uniform(-0.3, 0.3, shape)],
        rng.uniform(-30.0, 30.0, shape),
    )


def _within_trace_budget(log_ratio: np.ndarray, c_bar: float) -> np.ndarray:
    """Log-ratios whose traces c_t = min(c_bar, ratio) multiply to at most e^budget."""
    if c_bar <= 1:
        return log_ratio
    growth = np.maximum(0.0, np.minimum(log_ratio, np.log(c_bar)))
    over = np.cumsum(growth, axis=0) > VTRACE_TRACE_BUDGET
    return np.where(over, -np.abs(log_ratio), log_ratio)


@st.composite
def _vtrace_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    arguments = draw(_trajectory(hyper))
    shape = arguments["rewards"].shape
    if len(shape) == 1 and shape[0] <= 8:
        behaviour = draw(_vector(shape[0], LOG_PROBS))
        log_ratio = draw(_vector(shape[0], LOG_RATIOS))
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        behaviour = np.where(
            rng.random(shape) < 0.2, rng.uniform(-1000.0, -700.0, shape), rng.uniform(-5, 0, shape)
        )
        log_ratio = _numpy_log_ratios(rng, shape)
    if draw(st.integers(0, 4)) == 0:  # on-policy: pi = mu exactly
        log_ratio = np.zeros(shape)
    log_ratio = _within_trace_budget(_bounded(log_ratio, hyper), hyper["clip_c_threshold"])
    return {
        **arguments,
        "log_probs": behaviour + log_ratio,
        "behaviour_log_probs": behaviour,
    }


def _vtrace_scale(example: Example) -> tuple[FloatArray, ...]:
    r"""First-order error bound of the V-trace recursion, propagated along it.

    With $M_t = |r_t| + \gamma |v'_t| + |V(s_t)|$, $x_t$ the log-ratio and
    $g_t = \gamma c_t (1 - \text{done}_t)$: $S_t = \rho_t M_t + g_t S_{t+1}$ bounds the
    correction on absolute values, and $W_t = \rho_t M_t (3 + |x_t|) + g_t (W_{t+1} +
    (2 + |x_t|) S_{t+1})$ weights each term by the rounding errors it accumulates (the ratio's
    error grows with $|x_t|$, one product and one sum per step).
    """
    a, h = example.arguments, example.hyperparameters
    log_ratio = a["log_probs"] - a["behaviour_log_probs"]
    ratio = np.exp(log_ratio)
    rho = np.minimum(h["clip_rho_threshold"], ratio)
    c = np.minimum(h["clip_c_threshold"], ratio)
    magnitudes, done = _td_magnitudes(example)
    absolute_x = np.abs(log_ratio)
    steps = len(magnitudes)
    sums, weighted = np.empty_like(magnitudes), np.empty_like(magnitudes)
    s = np.zeros(magnitudes.shape[1:])
    w = np.zeros(magnitudes.shape[1:])
    for t in range(steps - 1, -1, -1):
        g = np.where(done[t], 0.0, h["discount"] * c[t])
        own = rho[t] * magnitudes[t]
        s, w = own + g * s, own * (3 + absolute_x[t]) + g * (w + (2 + absolute_x[t]) * s)
        sums[t], weighted[t] = s, w
    return (4 * (weighted + sums + np.abs(a["values"])),)


# --------------------------------------------------------------------------------------------
# Preference losses (TRL loss_type)
# --------------------------------------------------------------------------------------------

_PREFERENCE = (*_DPO, "chosen_lengths", "rejected_lengths")
#: Token counts: one token, and responses up to 1000 tokens.
LENGTHS = st.one_of(st.just(1), st.integers(1, 20), st.integers(1, 1000))


@st.composite
def _preference_arguments(draw: st.DrawFn, hyper: dict[str, Any]) -> Arrays:
    arguments = draw(_dpo_arguments(hyper))
    size = len(arguments["policy_chosen_log_probs"])
    lengths = st.lists(LENGTHS, min_size=size, max_size=size).map(np.array)
    chosen_lengths = draw(lengths).astype(np.int64)
    identical = np.array_equal(
        arguments["policy_chosen_log_probs"], arguments["policy_rejected_log_probs"]
    ) and np.array_equal(
        arguments["reference_chosen_log_probs"], arguments["reference_rejected_log_probs"]
    )
    rejected_lengths = chosen_lengths.copy() if identical else draw(lengths).astype(np.int64)
    if hyper["loss_type"] == "hinge":  # off the kink beta * z = 1
        beta = hyper["beta"]
        chosen = arguments["policy_chosen_log_probs"]
        margin, magnitude, _ = _dpo_parts(Example(arguments, {"beta": beta}))
        gap = KINK_MARGIN * (1 + magnitude)
        shift = np.where(np.abs(margin - 1) < gap, 2 * gap / beta, 0.0)
        arguments = {**arguments, "policy_chosen_log_probs": chosen + shift}
    return {**arguments, "chosen_lengths": chosen_lengths, "rejected_lengths": rejected_lengths}


def _preference_parts(example: Example) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Margin z (length-averaged for IPO), sum of |log-probs| (likewise), 1/len_c, 1/len_r."""
    a = example.arguments
    ipo = example.hyperparameters["loss_type"] == "ipo"
    per_chosen = 1 / a["chosen_lengths"] if ipo else np.ones(a["chosen_lengths"].shape)
    per_rejected = 1 / a["rejected_lengths"] if ipo else np.ones(a["rejected_lengths"].shape)
    weights = (per_chosen, per_rejected, per_chosen, per_rejected)
    terms = [a[name] * weight for name, weight in zip(_DPO, weights, strict=True)]
    margin = (terms[0] - terms[2]) - (terms[1] - terms[3])
    magnitude = sum(np.abs(term) for term in terms)
    return margin, np.asarray(magnitude), per_chosen, per_rejected


def _preference_type_loss_scale(example: Example) -> tuple[FloatArray, ...]:
    h = example.hyperparameters
    beta, smoothing, kind = h["beta"], h["label_smoothing"], h["loss_type"]
    margin, magnitude, _, _ = _preference_parts(example)
    count = margin.size + 4
    if kind == "ipo":
        per_pair = 8 * (magnitude + 1 / (2 * beta) + 1) ** 2
    elif kind == "hinge":
        per_pair = beta * magnitude + 1
    else:
        softplus = np.logaddexp(0.0, -beta * margin) + np.logaddexp(0.0, beta * margin)
        per_pair = (beta * magnitude + softplus + 1) / (
            1 - 2 * smoothing if kind == "robust" else 1
        )
    return (_array(count * np.mean(per_pair)),)


def _preference_type_gradient(example: Example) -> Gradients:
    h = example.hyperparameters
    beta, smoothing, kind = h["beta"], h["label_smoothing"], h["loss_type"]
    margin, magnitude, per_chosen, per_rejected = _preference_parts(example)
    size = margin.size
    if kind == "ipo":
        slope = 2 * (margin - 1 / (2 * beta))
        error = 8 * (magnitude + 1 / (2 * beta) + 1)
    elif kind == "hinge":
        slope = np.where(beta * margin < 1, -beta, 0.0)
        error = np.full(size, beta)
    else:
        wrong, right = expit(-beta * margin), expit(beta * margin)
        if kind == "sigmoid":
            slope = beta * (-(1 - smoothing) * wrong + smoothing * right)
            error = beta * (1 + beta * magnitude)
        else:
            slope = beta * (-(1 - smoothing) * wrong - smoothing * right) / (1 - 2 * smoothing)
            error = beta * (1 + beta * magnitude) / (1 - 2 * smoothing)
    return {
        "policy_chosen_log_probs": (slope * per_chosen / size, 4 * error * per_chosen / size),
        "policy_rejected_log_probs": (
            -slope * per_rejected / size,
            4 * error * per_rejected / size,
        ),
    }


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


_SPEC_LIST = [
    Spec(
        name="discounted_returns",
        reference=reference.discounted_returns,
        arguments=("rewards", "dones"),
        hyperparameters={"discount": UNIT},
        outputs=("returns",),
        conventions="""
Time-major 1-D arrays [T]: rewards[t] = r_t, received after action a_t; dones[t] (bool): the
episode ended (terminated or truncated) after step t. Output [T]: G_t = r_t + discount *
(1 - dones[t]) * G_{t+1}, G_T = 0; no bootstrap, so an unfinished last episode sums the rewards
seen. discount = 1 gives the reward-to-go.
""",
        claim="reward-to-go-unbiased",
        draw_arguments=_rewards_and_dones,
        assumptions=SEQUENCE_ASSUMPTIONS,
        error_scale=_returns_scale,
    ),
    Spec(
        name="temporal_difference_errors",
        reference=reference.temporal_difference_errors,
        arguments=_TRAJECTORY,
        hyperparameters={"discount": UNIT},
        outputs=("td_errors",),
        conventions=_TRAJECTORY_CONVENTIONS
        + "delta_t = r_t + discount * v'_t - V(s_t), v'_t the bootstrap value described above.",
        claim="td-error-is-advantage",
        draw_arguments=_trajectory,
        assumptions=SEQUENCE_ASSUMPTIONS,
        error_scale=_td_scale,
    ),
    Spec(
        name="generalized_advantage_estimation",
        reference=reference.generalized_advantage_estimation,
        arguments=_TRAJECTORY,
        hyperparameters={"discount": UNIT, "lambda_": UNIT},
        outputs=("advantages",),
        conventions=_TRAJECTORY_CONVENTIONS
        + "A_t = delta_t + discount * lambda_ * (1 - (terminated[t] | truncated[t])) * A_{t+1}.",
        claim="gae-closed-form",
        draw_arguments=_trajectory,
        assumptions=SEQUENCE_ASSUMPTIONS,
        error_scale=_gae_scale,
    ),
    Spec(
        name="lambda_returns",
        reference=reference.lambda_returns,
        arguments=_TRAJECTORY,
        hyperparameters={"discount": UNIT, "lambda_": UNIT},
        outputs=("returns",),
        conventions=_TRAJECTORY_CONVENTIONS + "G^lambda_t = A_t + V(s_t) with A_t from GAE.",
        claim="gae-closed-form",
        draw_arguments=_trajectory,
        assumptions=SEQUENCE_ASSUMPTIONS,
        error_scale=_gae_scale,
    ),
    Spec(
        name="ppo_clipped_surrogate_loss",
        reference=reference.ppo_clipped_surrogate_loss,
        arguments=("log_probs", "old_log_probs", "advantages"),
        hyperparameters={"clip_epsilon": CLIP},
        outputs=("loss",),
        conventions="""
Arrays [N]: log_probs = log pi_theta(a|s) (being optimised), old_log_probs = log pi_old(a|s)
(sampled the data), advantages = A. Output: scalar LOSS (minimise), MEAN over N:
-mean(min(rho A, clip(rho, 1 - clip_epsilon, 1 + clip_epsilon) A)), rho = exp(log_probs -
old_log_probs). Unbounded for A < 0 as rho grows: intended. Gradient w.r.t. log_probs checked
in autodiff frameworks (inputs stay off the kinks rho = 1 +- clip_epsilon).
""",
        claim="ppo-clip-lower-bound",
        draw_arguments=_ppo_arguments,
        assumptions=LOG_RATIO_ASSUMPTIONS,
        error_scale=_ppo_loss_scale,
        differentiable=("log_probs",),
        gradient=_ppo_gradient,
    ),
    Spec(
        name="ppo_clipped_surrogate_loss_gradient",
        reference=reference.ppo_clipped_surrogate_loss_gradient,
        arguments=("log_probs", "old_log_probs", "advantages"),
        hyperparameters={"clip_epsilon": CLIP},
        outputs=("d_loss_d_log_probs",),
        conventions="""
As ppo_clipped_surrogate_loss; output [N]: the gradient of the MEAN loss w.r.t. log_probs,
-rho A / N where the unclipped term is active, 0 where the clip is active.
""",
        claim="ppo-clip-gradient",
        draw_arguments=_ppo_arguments,
        assumptions=LOG_RATIO_ASSUMPTIONS,
        error_scale=lambda example: (_ppo_gradient_scale(example),),
    ),
    Spec(
        name="clipped_value_loss",
        reference=reference.clipped_value_loss,
        arguments=("values", "old_values", "returns"),
        hyperparameters={"clip_epsilon": CLIP},
        outputs=("loss",),
        conventions="""
Arrays [N]: values = V_phi(s) (being trained), old_values = V at collection time, returns =
targets. Output: scalar LOSS, 0.5 * MEAN of max((V - R)^2, (V_old + clip(V - V_old, -eps, eps)
- R)^2). Gradient w.r.t. values checked in autodiff frameworks.
""",
        claim="none (a definition)",
        draw_arguments=_value_arguments,
        error_scale=_value_loss_scale,
        differentiable=("values",),
        gradient=_value_gradient,
    ),
    Spec(
        name="clipped_value_loss_gradient",
        reference=reference.clipped_value_loss_gradient,
        arguments=("values", "old_values", "returns"),
        hyperparameters={"clip_epsilon": CLIP},
        outputs=("d_loss_d_values",),
        conventions="As clipped_value_loss; output [N]: gradient of the loss w.r.t. values.",
        claim="none (a definition)",
        draw_arguments=_value_arguments,
        error_scale=lambda example: (_value_gradient(example)["values"][1],),
    ),
    Spec(
        name="kl_estimator_k1",
        reference=reference.kl_estimator_k1,
        arguments=("log_probs", "reference_log_probs"),
        hyperparameters={},
        outputs=("kl",),
        conventions=_KL_CONVENTIONS,
        claim="kl-estimators-bias-variance, kl-estimator-gradients",
        draw_arguments=_kl_arguments,
        assumptions=LOG_RATIO_ASSUMPTIONS,
        error_scale=_k1_scale,
        differentiable=("log_probs",),
        gradient=_kl_gradient(np.ones_like, "one"),
    ),
    Spec(
        name="kl_estimator_k2",
        reference=reference.kl_estimator_k2,
        arguments=("log_probs", "reference_log_probs"),
        hyperparameters={},
        outputs=("kl",),
        conventions=_KL_CONVENTIONS,
        claim="kl-estimators-bias-variance, kl-estimator-gradients, kl-nonnegative",
        draw_arguments=_kl_arguments,
        assumptions=LOG_RATIO_ASSUMPTIONS,
        error_scale=_k2_scale,
        differentiable=("log_probs",),
        gradient=_kl_gradient(lambda d: d, "magnitude"),
    ),
    Spec(
        name="kl_estimator_k3",
        reference=reference.kl_estimator_k3,
        arguments=("log_probs", "reference_log_probs"),
        hyperparameters={},
        outputs=("kl",),
        conventions=_KL_CONVENTIONS,
        claim="kl-estimators-bias-variance, kl-estimator-gradients, kl-nonnegative",
        draw_arguments=_kl_arguments,
        assumptions=LOG_RATIO_ASSUMPTIONS,
        error_scale=_k3_scale,
        differentiable=("log_probs",),
        gradient=_kl_gradient(lambda d: -np.expm1(-d), "exp"),
    ),
    Spec(
        name="adaptive_kl_coefficient",
        reference=reference.adaptive_kl_coefficient,
        arguments=("kl_coefficient", "observed_kl"),
        hyperparameters={"target_kl": st.one_of(st.sampled_from([0.01, 0.02]), _floats(1e-3, 0.1))},
        outputs=("kl_coefficient",),
        conventions="""
Scalars: kl_coefficient = beta (multiplies a KL penalty in the loss), observed_kl = d (mean KL
after the update). Output: scalar beta' = beta / 2 if d < target_kl / 1.5, beta * 2 if
d > target_kl * 1.5, else beta (PPO paper, Sec. 4; strict inequalities).
""",
        claim="none (a heuristic rule)",
        draw_arguments=_adaptive_arguments,
        error_scale=lambda example: (4 * example.arguments["kl_coefficient"],),
    ),
    Spec(
        name="categorical_entropy",
        reference=reference.categorical_entropy,
        arguments=("logits",),
        hyperparameters={},
        outputs=("entropy",),
        conventions="""
logits [B, K], categories on the LAST axis, values up to +-1e3 (a naive softmax overflows).
Output [B]: H = -sum_k p_k log p_k in nats, p = softmax(logits). Gradient w.r.t. logits checked
in autodiff frameworks.
""",
        claim="kl-nonnegative",
        draw_arguments=_logits_arguments,
        error_scale=_entropy_scale,
        differentiable=("logits",),
        gradient=_entropy_gradient,
    ),
    Spec(
        name="dpo_loss",
        reference=reference.dpo_loss,
        arguments=_DPO,
        hyperparameters={"beta": st.one_of(st.sampled_from([0.1, 0.5, 1.0]), _floats(0.01, 2.0))},
        outputs=("loss",),
        conventions="""
Arrays [N] of sequence log-probs (summed over tokens): policy and reference, chosen (preferred)
and rejected. Output: scalar LOSS, MEAN over pairs of -log sigmoid(z), z = beta *
((pc - rc) - (pr - rr)). Log-probs go down to -1000 (z down to about -2000: use logaddexp /
logsigmoid). Gradient w.r.t. the two policy log-probs checked in autodiff frameworks.
""",
        claim="dpo-implicit-reward, kl-regularized-optimal-policy",
        draw_arguments=_dpo_arguments,
        error_scale=_preference_loss_scale,
        differentiable=_DPO[:2],
        gradient=_preference_gradient(*_DPO[:2]),
    ),
    Spec(
        name="dpo_loss_gradient",
        reference=reference.dpo_loss_gradient,
        arguments=_DPO,
        hyperparameters={"beta": st.one_of(st.sampled_from([0.1, 0.5, 1.0]), _floats(0.01, 2.0))},
        outputs=("d_loss_d_policy_chosen", "d_loss_d_policy_rejected"),
        conventions="""
As dpo_loss; output: a TUPLE of two [N] arrays, the gradient of the mean loss w.r.t.
policy_chosen_log_probs (-beta sigmoid(-z) / N) and policy_rejected_log_probs (+beta
sigmoid(-z) / N).
""",
        claim="dpo-implicit-reward",
        draw_arguments=_dpo_arguments,
        error_scale=_dpo_gradient_scales,
    ),
    Spec(
        name="bradley_terry_loss",
        reference=reference.bradley_terry_loss,
        arguments=("chosen_rewards", "rejected_rewards"),
        hyperparameters={},
        outputs=("loss",),
        conventions="""
Arrays [N]: reward-model scores of the chosen (preferred) and rejected responses. Output:
scalar LOSS, MEAN over pairs of -log sigmoid(chosen - rejected). Gradient w.r.t. both
checked in autodiff frameworks.
""",
        claim="dpo-implicit-reward",
        draw_arguments=_bradley_terry_arguments,
        error_scale=_preference_loss_scale,
        differentiable=("chosen_rewards", "rejected_rewards"),
        gradient=_preference_gradient("chosen_rewards", "rejected_rewards"),
    ),
    Spec(
        name="group_normalized_advantages",
        reference=reference.group_normalized_advantages,
        arguments=("rewards",),
        hyperparameters=_NORMALISATION_HYPERPARAMETERS,
        outputs=("advantages",),
        conventions="""
rewards [G, n]: row g holds the rewards of the n samples for prompt g. Output [G, n]:
(r - mean_g) / (std_g + epsilon) with statistics along axis 1 (ddof 0 = numpy std, 1 = torch
std), and exactly 0 for a group whose rewards are all equal (including n = 1).
""",
        claim="baseline-unbiased",
        draw_arguments=lambda hyper: _matrix_with_constant_rows("rewards"),
        error_scale=lambda example: (
            _standardize_scale(example.arguments["rewards"], 1, example.hyperparameters),
        ),
    ),
    Spec(
        name="normalized_advantages",
        reference=reference.normalized_advantages,
        arguments=("advantages",),
        hyperparameters=_NORMALISATION_HYPERPARAMETERS,
        outputs=("advantages",),
        conventions="""
advantages [T, B] (any shape): (A - mean) / (std + epsilon) with mean and std over ALL entries,
not per time step or per environment (ddof 0 = numpy std, 1 = torch std); exactly 0 if all
entries are equal.
""",
        claim="baseline-unbiased",
        draw_arguments=lambda hyper: _matrix_with_constant_rows("advantages"),
        error_scale=lambda example: (
            _standardize_scale(example.arguments["advantages"], None, example.hyperparameters),
        ),
    ),
    Spec(
        name="policy_gradient_loss",
        reference=reference.policy_gradient_loss,
        arguments=("log_probs", "advantages"),
        hyperparameters={},
        outputs=("loss",),
        conventions="""
Arrays [N]: log_probs = log pi_theta(a|s) of the sampled actions (being optimised), advantages
= A (returns, reward-to-go, GAE, ...). Output: scalar LOSS (minimise), MEAN over N:
-mean(log_probs * advantages) (REINFORCE). advantages are constants: the gradient w.r.t.
log_probs, -A / N, is checked in autodiff frameworks; that w.r.t. advantages is not (detach
them or compute them without gradient tracking).
""",
        claim="policy-gradient-theorem, log-derivative-trick",
        draw_arguments=_policy_gradient_arguments,
        error_scale=_policy_gradient_loss_scale,
        differentiable=("log_probs",),
        gradient=_policy_gradient_gradient,
    ),
    Spec(
        name="dual_clip_ppo_loss",
        reference=reference.dual_clip_ppo_loss,
        arguments=("log_probs", "old_log_probs", "advantages"),
        hyperparameters={"clip_epsilon": CLIP, "dual_clip": DUAL_CLIP},
        outputs=("loss",),
        conventions="""
As ppo_clipped_surrogate_loss (arrays [N], scalar LOSS, MEAN over N, rho = exp(log_probs -
old_log_probs)), with the dual clip c = dual_clip > 1 (Ye et al. 2020) for NEGATIVE advantages
only: per entry the objective is min(rho A, clip(rho, 1 - eps, 1 + eps) A) if A >= 0 and
max(min(rho A, clip(rho, 1 - eps, 1 + eps) A), c A) if A < 0; loss = -mean. dual_clip = inf
is plain PPO. Gradient w.r.t. log_probs checked in autodiff frameworks (inputs stay off the
kinks rho = 1 +- clip_epsilon and rho = dual_clip).
""",
        claim="ppo-clip-gradient, ppo-clip-lower-bound",
        draw_arguments=_dual_clip_arguments,
        assumptions=LOG_RATIO_ASSUMPTIONS,
        error_scale=_ppo_loss_scale,
        differentiable=("log_probs",),
        gradient=_dual_clip_gradient,
    ),
    Spec(
        name="actor_critic_loss",
        reference=reference.actor_critic_loss,
        arguments=(
            "log_probs",
            "old_log_probs",
            "advantages",
            "values",
            "returns",
            "entropy",
            "reference_log_probs",
        ),
        hyperparameters={"clip_epsilon": CLIP, **_COEFFICIENTS},
        outputs=("loss",),
        conventions="""
Arrays [N]: log_probs, old_log_probs, advantages as in ppo_clipped_surrogate_loss; values =
V_phi(s) (being trained), returns = value targets; entropy[i] = H(pi_theta(.|s_i)) (being
trained; may be negative for continuous actions); reference_log_probs = log pi_ref(a|s).
Output: scalar LOSS (minimise), every term a MEAN over N, with explicit signs:
  ppo_clipped_surrogate_loss
  + value_coefficient * 0.5 * mean((values - returns)^2)      (unclipped, factor 1/2)
  - entropy_coefficient * mean(entropy)                        (bonus: SUBTRACTED)
  + kl_coefficient * mean(k3)                                  (penalty: ADDED)
k3 = (r - 1) - log r, r = exp(reference_log_probs - log_probs): the k3 estimate of
KL(pi_theta || pi_ref) on the sampled actions, in the loss (differentiated, not a reward;
its autodiff gradient estimates that of KL(pi_ref || pi_theta)), unclamped. Gradients
w.r.t. log_probs, values and entropy checked in autodiff frameworks.
""",
        claim="ppo-clip-gradient, kl-estimator-gradients, kl-nonnegative",
        draw_arguments=_actor_critic_arguments,
        assumptions=LOG_RATIO_ASSUMPTIONS,
        error_scale=_actor_critic_loss_scale,
        differentiable=("log_probs", "values", "entropy"),
        gradient=_actor_critic_gradient,
    ),
    Spec(
        name="n_step_returns",
        reference=reference.n_step_returns,
        arguments=_TRAJECTORY,
        hyperparameters={"discount": UNIT, "n_steps": N_STEPS},
        outputs=("returns",),
        conventions=_TRAJECTORY_CONVENTIONS
        + """G_t = sum_{k<m} discount^k r_{t+k} + discount^m v'_{t+m-1}, m = min(n_steps, steps to
the end of t's episode or of the buffer): n_steps rewards, then V(s_{t+n}) = values[t+n], or
the window is cut at an episode end (v' = 0 after termination, final_values after truncation)
or at the end of the buffer (last_value). n_steps = 1: the TD target; n_steps >= T: the
bootstrapped return to the end of the episode.""",
        claim="td-error-is-advantage, gae-closed-form",
        draw_arguments=_trajectory,
        assumptions=SEQUENCE_ASSUMPTIONS,
        error_scale=_n_step_scale,
    ),
    Spec(
        name="vtrace_targets",
        reference=reference.vtrace_targets,
        arguments=(*_TRAJECTORY, "log_probs", "behaviour_log_probs"),
        hyperparameters={
            "discount": UNIT,
            "clip_rho_threshold": THRESHOLDS,
            "clip_c_threshold": THRESHOLDS,
        },
        outputs=("targets",),
        conventions=_TRAJECTORY_CONVENTIONS
        + """log_probs[t] = log pi(a_t|s_t) (target policy) and behaviour_log_probs[t] =
log mu(a_t|s_t) (the policy that acted), [T]. ratio = exp(log_probs - behaviour_log_probs),
rho_t = min(clip_rho_threshold, ratio), c_t = min(clip_c_threshold, ratio) (thresholds may
be < 1, 1, > 1 or inf). Output [T]: v_t = V(s_t) + A_t with A_t = rho_t delta_t + discount *
c_t * (1 - (terminated[t] | truncated[t])) * A_{t+1}, delta_t = r_t + discount * v'_t - V(s_t)
(IMPALA eq. 1). No lambda. Generated traces multiply to at most e^20 along a sequence.""",
        claim="importance-sampling-unbiased, gae-closed-form",
        draw_arguments=_vtrace_arguments,
        assumptions={**SEQUENCE_ASSUMPTIONS, **LOG_RATIO_ASSUMPTIONS},
        error_scale=_vtrace_scale,
    ),
    Spec(
        name="preference_loss",
        reference=reference.preference_loss,
        arguments=_PREFERENCE,
        hyperparameters={
            "beta": st.one_of(st.sampled_from([0.1, 0.5, 1.0]), _floats(0.01, 2.0)),
            "loss_type": st.sampled_from(reference.PREFERENCE_LOSS_TYPES),
            "label_smoothing": st.one_of(st.sampled_from([0.0, 0.1, 0.3]), _floats(0.0, 0.45)),
        },
        outputs=("loss",),
        conventions="""
TRL DPOTrainer losses. Arrays [N]: summed sequence log-probs of policy and reference, chosen
(preferred) and rejected, then chosen_lengths and rejected_lengths (int token counts >= 1).
Margin z = (pc - rc) - (pr - rr) (NOT multiplied by beta); eps = label_smoothing. Output:
scalar LOSS, MEAN over pairs of, by loss_type:
  "sigmoid" (DPO, cDPO): -(1 - eps) logsigmoid(beta z) - eps logsigmoid(-beta z)
  "robust": (-(1 - eps) logsigmoid(beta z) + eps logsigmoid(-beta z)) / (1 - 2 eps)
  "hinge" (SLiC; eps ignored): relu(1 - beta z)
  "ipo" (eps ignored): (z~ - 1 / (2 beta))^2, z~ the margin of the LENGTH-AVERAGED
             log-probs (each divided by its response's token count, as TRL does).
Lengths are read by "ipo" only. Fix the type with --param "loss_type='ipo'". Gradient w.r.t.
the two policy log-probs checked in autodiff frameworks (off the hinge kink beta z = 1).
""",
        claim="dpo-implicit-reward, dpo-loss-gradient",
        draw_arguments=_preference_arguments,
        error_scale=_preference_type_loss_scale,
        differentiable=_DPO[:2],
        gradient=_preference_type_gradient,
    ),
]

#: Every spec, by name.
SPECS: dict[str, Spec] = {spec.name: spec for spec in _SPEC_LIST}


def get_spec(name: str) -> Spec:
    """Return the spec called ``name``, raising ``ValueError`` listing the names if unknown.

    Examples:
        >>> get_spec("discounted_returns").signature
        'discounted_returns(rewards, dones, *, discount)'
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in SPECS:
        import difflib

        close = difflib.get_close_matches(name, list(SPECS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown spec {name!r}{hint}; the specs are {sorted(SPECS)}")
    return SPECS[name]


# The LLM-RL specs (padded [B, T] token tensors) live in rlmath.llm_specs, which builds on the
# helpers above; imported last because it imports this module.
from rlmath.llm_specs import LLM_SPECS as _LLM_SPECS  # noqa: E402

SPECS.update(_LLM_SPECS)
