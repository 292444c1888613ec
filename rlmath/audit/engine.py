r"""Exact expected gradients of a user's policy loss, by enumerating every sampled batch.

For the family ``"llm"`` a *batch* is one group: a prompt $x \sim \rho$ and $G$ i.i.d.
responses $y_1..y_G \sim \mu(\cdot \mid x)$ ($\mu = \pi_{\theta_\mathrm{old}}$ on-policy, or a
behaviour policy, the "inference engine"), padded to ``T = L`` columns. At
$\theta = \theta_\mathrm{old}$ (the model's ``theta``)

$$ \mathbb E[\nabla_\theta \mathcal L] = \sum_x \rho(x) \sum_{\text{groups}}
   P_\mu(\text{group} \mid x)\, \nabla_\theta \mathcal L(\text{batch}), $$

summed over multisets of responses with their multinomial probabilities
(:func:`rlmath.sequence_model.group_indices`; the loss must be invariant under permuting the
group's rows, which is checked on a sample of groups; a loss that is not, such as one that
splits the batch into micro-batches by row, is summed over ordered tuples instead, and the
report says so).

**Differentiation.** The parameters are the logits ``theta[x, n, :]``. When the loss does not
take ``logits``, the gradient with respect to the token log-probabilities suffices (chain rule:
$\partial \log\pi(y_t \mid n) / \partial\theta_{n,v} = \mathbb 1[v = y_t] - \pi(v \mid n)$), so
each group's gradient $\partial\mathcal L / \partial z_{b,t}$ is accumulated per (response,
position) with the group's probability and turned into the $\theta$ gradient by one
:meth:`~rlmath.sequence_model.SequenceModel.weighted_score_sum`. When the loss takes
``logits`` (entropy terms), the logits ``[B, T, V]`` are gathered from ``theta``, the
log-probabilities are ``log_softmax(logits)`` gathered at the tokens, and the logit gradients
are scatter-added onto ``theta``. Backends:

- **torch**: ``torch.func.vmap(torch.func.grad_and_value(...))`` over chunks of groups (float64
  tensors); if the loss cannot be vmapped (``.item()``, data-dependent Python control flow) a
  loop over groups, and the report says so.
- **jax**: ``jax.vmap(jax.value_and_grad(...))`` with 64-bit floats enabled for the call.
- **numpy**: complex-step derivatives (step :data:`rlmath.tolerances.AUDIT_COMPLEX_STEP`) in
  each log-probability (or logit) of the group when the loss is complex-analytic, detected by
  comparing with differences on the first group; otherwise fourth-order central differences
  with step :data:`rlmath.tolerances.AUDIT_DIFFERENCE_STEP` and the error bound of
  :func:`rlmath.tolerances.fourth_order_difference_error`, carried into the tolerance.

**Calling convention** (family ``"llm"``): ``loss(log_probs, *, old_log_probs, ref_log_probs,
behaviour_log_probs, rewards, response_mask, group_ids, logits) -> scalar``, each keyword
passed only if the loss declares it (or takes ``**kwargs``); extra ``constants`` are passed as
keywords too.

- ``log_probs`` ``[B, T]``: $\log\pi_\theta(y_{b,t} \mid x, y_{b,<t})$, differentiable, 0 at
  padding (padding positions are constants: no parameter stands behind them).
- ``logits`` ``[B, T, V]`` (``V = K + 1``, EOS last): differentiable; 0 at padding.
- ``old_log_probs``, ``ref_log_probs``, ``behaviour_log_probs`` ``[B, T]``: constants,
  $\log\pi_{\theta_\mathrm{old}}$ (equal in value to ``log_probs``), $\log\pi_\mathrm{ref}$,
  $\log\mu$; 0 at padding.
- ``rewards`` ``[B]``: $R(x, y_b)$; ``response_mask`` ``[B, T]`` bool; ``group_ids`` ``[B]``
  int, all equal to $x$.

References:
    Williams 1992 (score function); Squire and Trapp, SIAM Review 40, 1998 (complex step);
    Shao et al. 2024 (GRPO); Ahmadian et al. 2024 (RLOO).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlmath._validation import FloatArray, check_integer
from rlmath.sequence_model import MAX_GROUPS, SequenceModel, count_groups, group_indices
from rlmath.tolerances import (
    AUDIT_COMPLEX_REAL_RTOL,
    AUDIT_COMPLEX_STEP,
    AUDIT_DIFFERENCE_STEP,
    AUDIT_FIFTH_DERIVATIVE_FACTOR,
    AUDIT_SYMMETRY_RTOL,
    EPS,
    audit_rtol,
    fourth_order_difference_error,
)

__all__ = [
    "BACKENDS",
    "LLM_KEYWORDS",
    "MAX_AUDIT_GROUPS",
    "ExpectedGradient",
    "expected_gradient",
    "expected_gradient_details",
]

#: The keyword arguments the family ``"llm"`` can pass to a loss (see the module docstring).
LLM_KEYWORDS: tuple[str, ...] = (
    "old_log_probs",
    "ref_log_probs",
    "behaviour_log_probs",
    "rewards",
    "response_mask",
    "group_ids",
    "logits",
)

#: The differentiation backends; ``"auto"`` picks from what the loss accepts and returns.
BACKENDS: tuple[str, ...] = ("auto", "torch", "jax", "numpy")

#: Largest number of groups per prompt the audit enumerates (multisets, or ordered tuples for a
#: loss that is not permutation invariant): the :data:`rlmath.sequence_model.MAX_GROUPS` of
#: the enumeration. 2e6 groups of a PyTorch loss is a minute or two on one core.
MAX_AUDIT_GROUPS: int = MAX_GROUPS

_TORCH_CHUNK = 8192
_SYMMETRY_SAMPLE = 16
_COMPLEX_CHECKS = 3  # groups with a non-zero gradient on which complex steps are checked


@dataclass(frozen=True, eq=False)
class ExpectedGradient:
    r"""An exact expected gradient and what is needed to judge it.

    Attributes:
        gradient: $\mathbb E[\nabla_\theta \mathcal L]$, ``[X, N, K + 1]``.
        scale: $\sum_b P_b |g_b|$ entrywise bound of the summed terms (rounding scale),
            ``[X, N, K + 1]``.
        method_error: bound on the differentiation error (fourth-order differences), same
            shape; 0 for autodiff and complex steps.
        backend: ``"torch"``, ``"jax"`` or ``"numpy"``.
        differentiation: how each group was differentiated, in words.
        method: ``"multiset"`` or ``"ordered"``.
        n_groups: number of groups summed (all prompts).
        dtype_eps: machine epsilon of the loss's floating type.
        padding_gradient: $\max |\partial\mathcal L / \partial z_{b,t}|$ over padding
            positions (0 for a loss that masks; padding is constant here).
        notes: remarks for the report (fallbacks taken, and why).
    """

    gradient: FloatArray
    scale: FloatArray
    method_error: FloatArray
    backend: str
    differentiation: str
    method: str
    n_groups: int
    dtype_eps: float
    padding_gradient: float
    notes: tuple[str, ...] = field(default=())

    @property
    def norm(self) -> float:
        """Euclidean norm of the gradient."""
        return float(np.linalg.norm(self.gradient))

    def absolute_tolerance(self) -> float:
        r"""Bound on $\|\hat g - g\|_2$: rounding of the sum plus the differentiation error."""
        rounding = audit_rtol(self.n_groups, 1.0, dtype_eps=self.dtype_eps) * float(
            np.linalg.norm(self.scale)
        )
        return rounding + float(np.linalg.norm(self.method_error))

    def relative_tolerance(self) -> float:
        """:meth:`absolute_tolerance` relative to the gradient's norm (``inf`` for a zero one)."""
        norm = self.norm
        return math.inf if norm == 0 else self.absolute_tolerance() / norm


# ----------------------------------------------------------------------------- calling the loss
@dataclass(frozen=True)
class _CallPlan:
    keywords: tuple[str, ...]  # family keywords the loss declares
    constants: dict[str, Any]
    takes_logits: bool


def _call_plan(
    loss: Callable[..., Any],
    constants: dict[str, Any],
    keywords: tuple[str, ...] = LLM_KEYWORDS,
    family: str = "llm",
) -> _CallPlan:
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}")
    try:
        signature = inspect.signature(loss)
    except (TypeError, ValueError) as error:
        raise TypeError(f"loss: cannot read its signature ({error})") from error
    parameters = list(signature.parameters.values())
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in keywords
    ]
    if not positional and not any(p.kind == p.VAR_POSITIONAL for p in parameters):
        raise TypeError("loss must take log_probs as its first (positional) argument")
    first = positional[0].name if positional else None
    var_keyword = any(p.kind == p.VAR_KEYWORD for p in parameters)
    declared: list[str] = []
    for p in parameters:
        if p.name == first or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in keywords:
            declared.append(p.name)
        elif p.name in constants:
            continue
        elif p.default is p.empty:
            raise TypeError(
                f"loss has a required parameter {p.name!r} that the {family} family does not "
                f"provide (it provides log_probs and {', '.join(keywords)}; pass other "
                "constants as keyword arguments)"
            )
    if var_keyword:
        declared = list(keywords)
    for name in constants:
        if name in keywords or name == "log_probs":
            raise ValueError(f"constants must not override the family argument {name!r}")
        if not var_keyword and name not in signature.parameters:
            raise TypeError(f"loss does not take the constant {name!r} passed to the audit")
    return _CallPlan(tuple(declared), dict(constants), "logits" in declared)


# ----------------------------------------------------------------------------- batches
class _Tables:
    """Per-response arrays of one model, from which the batches of groups are gathered."""

    def __init__(self, model: SequenceModel, behaviour: FloatArray | None) -> None:
        r = model.responses
        self.model = model
        self.token_lp = model.token_log_probabilities()  # [X, R, L]
        self.ref_lp = model.token_log_probabilities(reference=True)
        sampler = model if behaviour is None else model.with_theta(behaviour)
        self.behaviour_lp = sampler.token_log_probabilities()
        self.sampler_log_p = sampler.log_probabilities()  # [X, R]
        self.rewards = model.total_rewards()
        self.mask, self.nodes, self.tokens = r.mask, r.nodes, r.tokens

    def batch(self, x: int, members: Any) -> dict[str, np.ndarray]:
        """Arrays ``[C, G, ...]`` for ``C`` groups of prompt ``x``."""
        mask = self.mask[members]
        nodes = np.maximum(self.nodes[members], 0)
        logits = np.where(mask[..., None], self.model.theta[x][nodes], 0.0)
        lp = self.token_lp[x][members]
        return {
            "log_probs": lp,
            "old_log_probs": lp.copy(),
            "ref_log_probs": self.ref_lp[x][members],
            "behaviour_log_probs": self.behaviour_lp[x][members],
            "rewards": self.rewards[x][members],
            "response_mask": mask,
            "group_ids": np.full(members.shape, x, dtype=np.int64),
            "logits": logits,
            "tokens": np.maximum(self.tokens[members], 0),
        }


# A differentiator maps a batch of C groups to (values [C], gradients [C, G, L(, V)],
# method errors of the same shape or None).
Differentiator = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray, Any]]


def _check_values(
    values: np.ndarray, grads: np.ndarray, model: SequenceModel, x: int, members: np.ndarray
) -> None:
    bad_values = ~np.isfinite(values)
    bad_grads = ~np.all(np.isfinite(grads.reshape(grads.shape[0], -1)), axis=1)
    for bad, what in (
        (bad_values, "loss must be finite"),
        (bad_grads, "loss must have a finite gradient"),
    ):
        if bad.any():
            c = int(np.flatnonzero(bad)[0])
            tuples = model.responses.as_tuples()
            group = [tuples[i] for i in members[c]]
            rewards = model.total_rewards()[x][members[c]].tolist()
            raise ValueError(
                f"{what}, got {values[c]!r} for prompt {x}, responses {group} (EOS = "
                f"{model.eos}), rewards {rewards}: guard divisions such as a zero group std"
            )


# ----------------------------------------------------------------------------- torch
def _torch_differentiator(
    loss: Callable[..., Any], plan: _CallPlan, wrt: str, notes: list[str], state: dict[str, Any]
) -> Differentiator:
    import torch
    from torch.func import grad_and_value, vmap

    names = plan.keywords

    def single(primary: Any, tokens: Any, mask: Any, *rest: Any) -> Any:
        kwargs = dict(zip(names, rest, strict=True))
        if wrt == "logits":
            log_softmax = torch.log_softmax(primary, dim=-1)
            gathered = torch.gather(log_softmax, -1, tokens.unsqueeze(-1)).squeeze(-1)
            log_probs = torch.where(mask, gathered, torch.zeros_like(gathered))
            if "logits" in kwargs:
                kwargs["logits"] = primary
        else:
            log_probs = primary
        out = loss(log_probs, **kwargs, **plan.constants)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"loss must return a torch tensor, got {type(out).__name__}")
        if out.ndim != 0:
            raise ValueError(f"loss must return a scalar, got shape {tuple(out.shape)}")
        return out

    def tensors(batch: dict[str, np.ndarray]) -> list[Any]:
        order = [wrt, "tokens", "response_mask", *names]
        return [torch.from_numpy(np.ascontiguousarray(batch[k])) for k in order]

    def loop(args: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        function = grad_and_value(single)
        grads, values = [], []
        for c in range(args[0].shape[0]):
            g, v = function(*(a[c] for a in args))
            grads.append(g.detach())
            values.append(v.detach())
        return torch.stack(values).double().numpy(), torch.stack(grads).double().numpy()

    def differentiate(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, Any]:
        args = tensors(batch)
        if "dtype_eps" not in state:  # validate one group directly (readable errors)
            out = single(*(a[0] for a in args))
            state["dtype_eps"] = (
                float(torch.finfo(out.dtype).eps) if out.is_floating_point() else EPS
            )
            if out.dtype != torch.float64:
                notes.append(f"the loss computes in {out.dtype}; the tolerance uses its epsilon")
        if state.get("vmap", True):
            try:
                g, v = vmap(grad_and_value(single))(*args)
                values, grads = v.detach().double().numpy(), g.detach().double().numpy()
            except (TypeError, ValueError):
                raise
            except Exception as error:  # vmap limitations: .item(), data-dependent control flow
                state["vmap"] = False
                notes.append(
                    f"torch.func.vmap failed ({type(error).__name__}: {str(error)[:120]}); "
                    "differentiated group by group in a loop"
                )
                values, grads = loop(args)
        else:
            values, grads = loop(args)
        return values, grads, None

    return differentiate


# ----------------------------------------------------------------------------- jax
def _enable_x64(jax_module: Any) -> Any:
    """64-bit floats for the call: ``jax.enable_x64(True)`` (recent JAX) or the older
    ``jax.experimental.enable_x64()``."""
    if hasattr(jax_module, "enable_x64"):
        return jax_module.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


def _jax_differentiator(
    loss: Callable[..., Any], plan: _CallPlan, wrt: str, notes: list[str], state: dict[str, Any]
) -> Differentiator:
    import jax
    import jax.numpy as jnp

    names = plan.keywords

    def single(primary: Any, tokens: Any, mask: Any, *rest: Any) -> Any:
        kwargs = dict(zip(names, rest, strict=True))
        if wrt == "logits":
            gathered = jnp.take_along_axis(
                jax.nn.log_softmax(primary, axis=-1), tokens[..., None], axis=-1
            )[..., 0]
            log_probs = jnp.where(mask, gathered, 0.0)
            if "logits" in kwargs:
                kwargs["logits"] = primary
        else:
            log_probs = primary
        out = loss(log_probs, **kwargs, **plan.constants)
        if jnp.ndim(out) != 0:
            raise ValueError(f"loss must return a scalar, got shape {jnp.shape(out)}")
        return out

    def differentiate(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, Any]:
        with _enable_x64(jax):
            args = [jnp.asarray(batch[k]) for k in (wrt, "tokens", "response_mask", *names)]
            if "dtype_eps" not in state:
                out = single(*(a[0] for a in args))
                state["dtype_eps"] = float(jnp.finfo(jnp.result_type(out)).eps)
            v, g = jax.vmap(jax.value_and_grad(single))(*args)
            return np.asarray(v, dtype=np.float64), np.asarray(g, dtype=np.float64), None

    return differentiate


# ----------------------------------------------------------------------------- numpy
def _complex_log_softmax_gather(logits: np.ndarray, tokens: np.ndarray, mask: np.ndarray) -> Any:
    shift = logits.real.max(axis=-1, keepdims=True)
    log_softmax = logits - shift - np.log(np.exp(logits - shift).sum(axis=-1, keepdims=True))
    gathered = np.take_along_axis(log_softmax, tokens[..., None], axis=-1)[..., 0]
    return np.where(mask, gathered, 0.0)


def _numpy_differentiator(
    loss: Callable[..., Any], plan: _CallPlan, wrt: str, notes: list[str], state: dict[str, Any]
) -> Differentiator:
    names = plan.keywords
    state.setdefault("complex", True)
    state["dtype_eps"] = EPS

    def evaluate(group: dict[str, np.ndarray], primary: np.ndarray) -> Any:
        kwargs = {k: group[k] for k in names}
        if wrt == "logits":
            log_probs = _complex_log_softmax_gather(
                primary, group["tokens"], group["response_mask"]
            )
            if "logits" in kwargs:
                kwargs["logits"] = primary
        else:
            log_probs = primary
        return loss(log_probs, **kwargs, **plan.constants)

    def real_value(group: dict[str, np.ndarray]) -> float:
        out = np.asarray(evaluate(group, group[wrt]))
        if out.ndim != 0:
            raise ValueError(f"loss must return a scalar, got shape {out.shape}")
        if np.iscomplexobj(out) or out.dtype.kind not in "biuf":
            raise TypeError(f"loss must return a real number, got dtype {out.dtype}")
        return float(out)

    def positions(group: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
        mask = group["response_mask"]
        if wrt == "logits":
            V = group["logits"].shape[-1]
            return [(*ix, v) for ix in zip(*np.nonzero(mask), strict=True) for v in range(V)]
        return [tuple(ix) for ix in zip(*np.nonzero(mask), strict=True)]

    def complex_step(group: dict[str, np.ndarray], value: float) -> np.ndarray | None:
        base = group[wrt]
        out = np.zeros(base.shape)
        for index in positions(group):
            moved = base.astype(np.complex128)
            moved[index] += 1j * AUDIT_COMPLEX_STEP
            try:
                with np.errstate(all="raise"):
                    result = complex(np.asarray(evaluate(group, moved)))
            except Exception:  # complex input rejected: the loss is not complex-safe
                return None
            if not (math.isfinite(result.real) and math.isfinite(result.imag)):
                return None
            if abs(result.real - value) > AUDIT_COMPLEX_REAL_RTOL * max(1.0, abs(value)):
                return None
            out[index] = result.imag / AUDIT_COMPLEX_STEP
        return out

    def differences(group: dict[str, np.ndarray], value: float) -> tuple[np.ndarray, np.ndarray]:
        base = group[wrt]
        h = AUDIT_DIFFERENCE_STEP
        out = np.zeros(base.shape)
        where = positions(group)
        for index in where:
            f = []
            for k in (-2, -1, 1, 2):
                moved = base.copy()
                moved[index] += k * h
                f.append(float(np.asarray(evaluate(group, moved))))
            out[index] = (f[0] - 8.0 * f[1] + 8.0 * f[2] - f[3]) / (12.0 * h)
        scale = max(1.0, abs(value), float(np.abs(out).max(initial=0.0)))
        bound = fourth_order_difference_error(
            AUDIT_FIFTH_DERIVATIVE_FACTOR * scale, 4.0 * EPS * scale, h
        )
        error = np.zeros(base.shape)
        for index in where:
            error[index] = bound
        return out, error

    def differentiate(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, Any]:
        C = batch["log_probs"].shape[0]
        values = np.empty(C)
        grads = np.zeros(batch[wrt].shape)
        errors = np.zeros(batch[wrt].shape)
        for c in range(C):
            group = {k: v[c] for k, v in batch.items()}
            values[c] = value = real_value(group)
            if state["complex"] and state.get("checks", 0) < _COMPLEX_CHECKS and positions(group):
                stepped = complex_step(group, value)
                reference, bound = differences(group, value)
                if float(np.abs(reference).max()) > 2.0 * float(bound.max()):
                    state["checks"] = state.get("checks", 0) + 1  # an informative check
                if stepped is None:
                    state["complex"] = False
                    notes.append(
                        "the loss is not complex-safe (complex input rejected or its value "
                        "changed); used fourth-order central differences"
                    )
                elif float(np.abs(stepped - reference).max()) > 2.0 * float(bound.max()):
                    state["complex"] = False
                    notes.append(
                        "complex-step derivatives disagree with central differences (the loss "
                        "is not complex-analytic: abs, comparisons); used fourth-order central "
                        "differences"
                    )
            if state["complex"]:
                stepped = complex_step(group, value)
                if stepped is None:
                    state["complex"] = False
                    notes.append("complex step failed on a later group; used differences")
                else:
                    grads[c] = stepped
                    continue
            grads[c], errors[c] = differences(group, value)
        return values, grads, errors

    return differentiate


def _describe(backend: str, wrt: str, state: dict[str, Any]) -> str:
    target = "logits" if wrt == "logits" else "log-probs"
    if backend == "torch":
        how = "torch.func.vmap(grad)" if state.get("vmap", True) else "torch autograd, looped"
    elif backend == "jax":
        how = "jax.vmap(jax.grad)"
    else:
        how = "complex step" if state.get("complex", True) else "fourth-order central differences"
    return f"{how} in the {target}"


# ----------------------------------------------------------------------------- backends
def _try_call(
    loss: Callable[..., Any], plan: _CallPlan, group: dict[str, np.ndarray], kind: str
) -> Any:
    if kind == "torch":
        import torch

        convert: Callable[[np.ndarray], Any] = torch.from_numpy
    elif kind == "jax":
        import jax.numpy as jnp

        convert = jnp.asarray
    else:
        convert = np.asarray
    args = {k: convert(np.ascontiguousarray(group[k])) for k in ("log_probs", *plan.keywords)}
    return loss(args.pop("log_probs"), **args, **plan.constants)


def _detect_backend(loss: Callable[..., Any], plan: _CallPlan, group: dict[str, np.ndarray]) -> str:
    failures = []
    for kind in ("torch", "jax"):
        try:
            module = __import__(kind)
        except ImportError:
            continue
        try:
            out = _try_call(loss, plan, group, kind)
        except Exception as error:
            failures.append(f"{kind}: {type(error).__name__}: {error}")
            continue
        if kind == "torch" and isinstance(out, module.Tensor):
            return "torch"
        if kind == "jax" and isinstance(out, module.Array):
            return "jax"
    try:
        out = _try_call(loss, plan, group, "numpy")
    except Exception as error:
        failures.append(f"numpy: {type(error).__name__}: {error}")
        raise TypeError(
            "loss could not be called with torch, jax or numpy arrays: " + "; ".join(failures)
        ) from error
    value = np.asarray(out)
    if value.dtype.kind not in "biuf":
        raise TypeError(
            f"loss must return a real scalar (numpy) or a torch/jax scalar, got {type(out).__name__}"
        )
    return "numpy"


def _differentiator(
    loss: Callable[..., Any],
    plan: _CallPlan,
    differentiate: str,
    backend: str,
    first_batch: dict[str, np.ndarray],
) -> tuple[Differentiator, str, str, list[str], dict[str, Any]]:
    """The backend's differentiator, the backend, what is differentiated, notes and state."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if differentiate not in ("auto", "log_probs", "logits"):
        raise ValueError(
            f"differentiate must be 'auto', 'log_probs' or 'logits', got {differentiate!r}"
        )
    wrt = (
        differentiate
        if differentiate != "auto"
        else ("logits" if plan.takes_logits else "log_probs")
    )
    if plan.takes_logits and wrt == "log_probs":
        raise ValueError("differentiate must be 'logits' (or 'auto') for a loss that takes logits")
    chosen = _detect_backend(loss, plan, first_batch) if backend == "auto" else backend
    notes: list[str] = []
    state: dict[str, Any] = {}
    factory = {
        "torch": _torch_differentiator,
        "jax": _jax_differentiator,
        "numpy": _numpy_differentiator,
    }[chosen]
    try:
        return factory(loss, plan, wrt, notes, state), chosen, wrt, notes, state
    except ImportError as error:
        raise ValueError(f"backend {chosen!r} is not installed ({error})") from error


def _check_model(model: Any) -> SequenceModel:
    if not isinstance(model, SequenceModel):
        raise TypeError(f"model must be a SequenceModel, got {type(model).__name__}")
    return model


def _behaviour_table(behaviour: Any, model: SequenceModel) -> FloatArray | None:
    if behaviour is None:
        return None
    if isinstance(behaviour, SequenceModel):
        behaviour = behaviour.theta
    try:
        table = np.asarray(behaviour, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"behaviour must be a logit table [X, N, K + 1] or None, got {type(behaviour).__name__}"
        ) from error
    if table.shape != model.theta.shape:
        raise ValueError(
            f"behaviour must have the shape of the model's theta {model.theta.shape}, got "
            f"{table.shape}"
        )
    if not np.all(np.isfinite(table)):
        raise ValueError("behaviour must be finite")
    return table


def expected_gradient_details(
    loss: Callable[..., Any],
    *,
    family: str = "llm",
    model: Any,
    group_size: int = 4,
    behaviour: Any = None,
    backend: str = "auto",
    differentiate: str = "auto",
    max_groups: int = MAX_AUDIT_GROUPS,
    chunk_size: int = _TORCH_CHUNK,
    **constants: Any,
) -> ExpectedGradient:
    r"""$\mathbb E[\nabla_\theta \mathcal L]$ with its error scale, backend and notes.

    Arguments as in :func:`expected_gradient`, plus ``differentiate`` (``"auto"``: the logits
    if the loss takes them, else the log-probs; or force ``"log_probs"`` / ``"logits"``; the
    two agree by the chain rule), ``max_groups`` (refuse above this many groups per prompt)
    and ``chunk_size`` (groups per vectorised call).

    Returns:
        :class:`ExpectedGradient`.
    """
    if family == "actor-critic":
        from rlmath.audit.actor_critic import actor_critic_expected_gradient

        return actor_critic_expected_gradient(
            loss,
            model=model,
            backend=backend,
            differentiate=differentiate,
            chunk_size=chunk_size,
            **constants,
        )
    if family != "llm":
        raise ValueError(f"family must be 'llm' or 'actor-critic', got {family!r}")
    model = _check_model(model)
    G = check_integer(group_size, "group_size", minimum=1)
    max_groups = check_integer(max_groups, "max_groups", minimum=1)
    chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)
    R = model.n_responses
    count = count_groups(R, G)
    if count > max_groups:
        raise ValueError(
            f"group_size = {G} with {R} responses per prompt gives {count} groups per prompt, "
            f"more than max_groups = {max_groups}; use a smaller model or group_size"
        )
    plan = _call_plan(loss, constants)
    tables = _Tables(model, _behaviour_table(behaviour, model))
    first = tables.batch(0, np.zeros((1, G), dtype=np.intp))
    differentiator, chosen, wrt, notes, state = _differentiator(
        loss, plan, differentiate, backend, {k: v[0] for k, v in first.items()}
    )

    method = "multiset"
    if G > 1 and not _is_permutation_invariant(differentiator, tables, model, G):
        ordered = count_groups(R, G, ordered=True)
        if ordered > max_groups:
            raise ValueError(
                "loss is not invariant under permuting a group's rows, and the ordered "
                f"enumeration would need {ordered} groups per prompt, more than max_groups = "
                f"{max_groups}; use a smaller model or group_size"
            )
        method = "ordered"
        notes.append(
            "the loss is not invariant under permuting the group's rows (e.g. micro-batches by "
            "row); summed over ordered tuples (every row order equally likely)"
        )
    return _accumulate(
        differentiator, tables, model, G, method, wrt, chunk_size, max_groups, chosen, notes, state
    )


def _is_permutation_invariant(
    differentiator: Differentiator, tables: _Tables, model: SequenceModel, G: int
) -> bool:
    """Whether the loss's value and its gradient summed per response survive a row shift.

    The multiset sum needs only what it accumulates: the gradient summed over the rows that
    hold the same response (two identical rows may split their share differently, as a loss
    that sorts rows and breaks ties by index does).
    """
    groups, _ = group_indices(model.n_responses, G, max_groups=MAX_AUDIT_GROUPS)
    distinct = groups[groups[:, 0] != groups[:, -1]]
    if distinct.size == 0:
        return True
    picks = distinct[np.unique(np.linspace(0, len(distinct) - 1, _SYMMETRY_SAMPLE).astype(int))]
    order = np.roll(np.arange(G), 1)
    rows = np.arange(len(picks))[:, None]

    def per_response(members: np.ndarray, grads: np.ndarray) -> np.ndarray:
        out = np.zeros((len(members), model.n_responses, *grads.shape[2:]))
        np.add.at(out, (np.broadcast_to(rows, members.shape), members), grads)
        return out

    for x in range(model.n_prompts):
        values, grads, _ = differentiator(tables.batch(x, picks))
        shifted_values, shifted_grads, _ = differentiator(tables.batch(x, picks[:, order]))
        scale = max(float(np.abs(grads).max(initial=0.0)), float(np.abs(values).max()), 1e-300)
        if float(np.abs(values - shifted_values).max()) > AUDIT_SYMMETRY_RTOL * scale:
            return False
        summed = per_response(picks, grads)
        shifted_summed = per_response(picks[:, order], shifted_grads)
        if float(np.abs(summed - shifted_summed).max()) > AUDIT_SYMMETRY_RTOL * scale:
            return False
    return True


def _accumulate(
    differentiator: Differentiator,
    tables: _Tables,
    model: SequenceModel,
    G: int,
    method: str,
    wrt: str,
    chunk_size: int,
    max_groups: int,
    backend: str,
    notes: list[str],
    state: dict[str, Any],
) -> ExpectedGradient:
    X, N, V = model.theta.shape
    R, L = model.n_responses, model.max_length
    groups, log_multiplicity = group_indices(
        R, G, ordered=method == "ordered", max_groups=max_groups
    )
    per_response = np.zeros((X, R * L))
    per_response_abs = np.zeros((X, R * L))
    per_response_err = np.zeros((X, R * L))
    per_logit = np.zeros((X, N * V))
    per_logit_abs = np.zeros((X, N * V))
    per_logit_err = np.zeros((X, N * V))
    padding = 0.0
    n_groups = 0
    positions = np.arange(L)
    for x in range(X):
        rho = float(model.prompt_probabilities[x])
        if rho == 0:
            continue
        weight = rho * np.exp(log_multiplicity + tables.sampler_log_p[x][groups].sum(axis=1))
        live = np.flatnonzero(weight > 0)
        n_groups += live.size
        for start in range(0, live.size, chunk_size):
            rows = live[start : start + chunk_size]
            members = groups[rows]
            batch = tables.batch(x, members)
            values, grads, errors = differentiator(batch)
            _check_values(values, grads, model, x, members)
            w = weight[rows]
            mask = batch["response_mask"]
            if wrt == "log_probs":
                padding = max(padding, float(np.abs(np.where(mask, 0.0, grads)).max(initial=0.0)))
                index = (members[:, :, None] * L + positions).ravel()
                contribution = (w[:, None, None] * np.where(mask, grads, 0.0)).ravel()
                per_response[x] += np.bincount(index, contribution, minlength=R * L)
                per_response_abs[x] += np.bincount(index, np.abs(contribution), minlength=R * L)
                if errors is not None:
                    err = (w[:, None, None] * np.where(mask, errors, 0.0)).ravel()
                    per_response_err[x] += np.bincount(index, err, minlength=R * L)
            else:
                nodes = np.maximum(tables.nodes[members], 0)  # [C, G, L]
                index = ((nodes * V)[..., None] + np.arange(V))[mask]  # [M, V]
                contribution = (w[:, None, None, None] * grads)[mask]
                per_logit[x] += np.bincount(index.ravel(), contribution.ravel(), minlength=N * V)
                per_logit_abs[x] += np.bincount(
                    index.ravel(), np.abs(contribution).ravel(), minlength=N * V
                )
                if errors is not None:
                    err = (w[:, None, None, None] * errors)[mask]
                    per_logit_err[x] += np.bincount(index.ravel(), err.ravel(), minlength=N * V)
    if wrt == "log_probs":
        gradient = model.weighted_score_sum(per_response.reshape(X, R, L))
        # |d log pi(y_t|n) / d theta_{n,v}| <= 1: each entry is bounded by the node's visits
        visits = tables.nodes[None].repeat(X, 0)
        scale = _node_totals(per_response_abs.reshape(X, R, L), visits, tables.mask, N)
        error = _node_totals(per_response_err.reshape(X, R, L), visits, tables.mask, N)
        scale = np.repeat(scale[:, :, None], V, axis=2)
        error = np.repeat(error[:, :, None], V, axis=2)
    else:
        gradient = per_logit.reshape(X, N, V)
        scale, error = per_logit_abs.reshape(X, N, V), per_logit_err.reshape(X, N, V)
    if padding > 0:
        notes.append(
            f"the loss's gradient at padding positions is not 0 (max {padding:.3g}): it does "
            "not mask them (padding log-probs are constants here, as no parameter stands "
            "behind them; in a real model they would move it)"
        )
    return ExpectedGradient(
        gradient=gradient,
        scale=scale,
        method_error=error,
        backend=backend,
        differentiation=_describe(backend, wrt, state),
        method=method,
        n_groups=n_groups,
        dtype_eps=float(state.get("dtype_eps", EPS)),
        padding_gradient=padding,
        notes=tuple(notes),
    )


def _node_totals(values: FloatArray, nodes: Any, mask: Any, n_nodes: int) -> FloatArray:
    X = values.shape[0]
    out = np.zeros((X, n_nodes))
    for x in range(X):
        out[x] = np.bincount(nodes[x][mask], weights=values[x][mask], minlength=n_nodes)
    return out


def expected_gradient(
    loss: Callable[..., Any],
    *,
    family: str = "llm",
    model: Any,
    group_size: int = 4,
    behaviour: Any = None,
    backend: str = "auto",
    **constants: Any,
) -> FloatArray:
    r"""The exact expected gradient of a loss over every sampled batch, at $\theta = \theta_\mathrm{old}$.

    $$ \mathbb E[\nabla_\theta \mathcal L] = \sum_x \rho(x) \sum_{i_1 \le \dots \le i_G}
       \frac{G!}{\prod_i m_i!} \prod_j \mu(y_{i_j} \mid x)\,
       \nabla_\theta \mathcal L(x, y_{i_1}, \dots, y_{i_G}) \Big|_{\theta = \theta_\mathrm{old}} $$

    (module docstring: calling convention, backends, what is constant).

    Args:
        loss: the loss of one batch (one group), called as described in the module docstring.
        family: ``"llm"`` or ``"actor-critic"`` (:mod:`rlmath.audit.actor_critic`).
        model: a :class:`~rlmath.sequence_model.SequenceModel` (family ``"llm"``; its
            ``theta`` is $\theta_\mathrm{old}$ and its ``reference_theta`` the reference) or a
            :class:`rlmath.audit.actor_critic.TabularActorCritic` (family ``"actor-critic"``).
        group_size: $G \ge 1$ responses per group.
        behaviour: ``None`` (on-policy) or the behaviour policy's logits ``[X, N, K + 1]`` (or a
            model whose ``theta`` they are): responses are sampled from it.
        backend: ``"auto"``, ``"torch"``, ``"jax"`` or ``"numpy"``.
        **constants: further keyword arguments passed to the loss unchanged (``beta=0.1``).

    Returns:
        ``[X, N, K + 1]`` float64, shaped like ``model.theta``.

    Raises:
        TypeError: naming the argument: a loss that is not callable, has a required parameter
            the family does not provide, or returns something that is not a real scalar.
        ValueError: naming the argument: an unknown family or backend, a backend that is not
            installed, more than :data:`MAX_AUDIT_GROUPS` groups per prompt, a loss that
            returns a non-scalar or a non-finite value or gradient.

    Examples:
        REINFORCE with the leave-one-out baseline follows $\nabla J$ exactly (claim
        ``rloo-unbiased``):

        >>> import numpy as np
        >>> from rlmath.sequence_model import SequenceModel
        >>> def rloo(log_probs, *, rewards, response_mask):
        ...     G = rewards.shape[0]
        ...     advantages = rewards - (rewards.sum() - rewards) / (G - 1)
        ...     return -(advantages * (log_probs * response_mask).sum(axis=1)).mean()
        >>> model = SequenceModel.random(2, 2, 2, seed=0)
        >>> g = expected_gradient(rloo, model=model, group_size=3, backend="numpy")
        >>> bool(np.allclose(g, -model.objective_gradient(), rtol=1e-10, atol=1e-12))
        True

    References:
        Williams 1992; Ahmadian et al. 2024, eq. (6) (RLOO); Kool et al. 2019.
    """
    return expected_gradient_details(
        loss,
        family=family,
        model=model,
        group_size=group_size,
        behaviour=behaviour,
        backend=backend,
        **constants,
    ).gradient
