r"""Which objective does a loss's expected gradient follow? Decomposition, verdict and report.

Given the exact expected gradient $g_m = \mathbb E[\nabla_\theta \mathcal L]$ on each of several
models $m$ (:mod:`rlmath.audit.engine`) and the exact gradients of the named objectives on the
same models (:mod:`rlmath.audit.objectives`), written as loss directions $o_m$ ($-\nabla O$ for
an objective to maximise, $+\nabla O$ for a divergence), the audit computes per model

$$ c_m = \frac{\langle g_m, o_m \rangle}{\|o_m\|^2}, \qquad
   \cos_m = \frac{\langle g_m, o_m \rangle}{\|g_m\| \|o_m\|}, \qquad
   \mathrm{res}_m = \frac{\|g_m - c_m o_m\|}{\|g_m\|}, $$

and the verdict:

- **"unbiased"** for $c \nabla O$ when, in every model, $c_m > 0$, $\mathrm{res}_m \le
  \tau_m$ and $|c_m - \bar c| \le \tau \bar c$ (one constant $c$ across models), where
  $\tau_m$ is the model's tolerance: the float64 rounding of the enumerated sum relative to
  its size (:func:`rlmath.tolerances.audit_rtol` with the cancellation between groups),
  plus the differentiation error bound (differences only), plus the rounding of the
  objective's own enumeration. The first fitting objective in library order wins (``J``
  before its reweightings). Failing that, a fixed combination of two or three *atomic*
  objectives fitted by least squares jointly over all models (e.g. $0.75\, J$ and
  $0.1$ token KL) is "unbiased" for that combination if every divergence in it enters with
  the regularising sign.
- **"zero"** when $\|g_m\|$ is within its absolute tolerance in every model (k1 in the loss).
- **"biased"** otherwise, with the closest named objective (largest worst-case cosine), its
  cosine and relative residual (worst case over models), and the least-squares decomposition
  on all atomic objectives.

Every model is generated from a seed (:func:`audit_models`: random logits, reference and
prompt law, binary rewards by default), so the verdict is not an accident of one model.

References:
    Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002, eq. 4.4 (the
    rounding of a sum); Golub and Van Loan, *Matrix Computations*, 4th ed., 2013, Sec. 5.3
    (least squares).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rlmath._validation import FloatArray, check_integer, check_real_scalar
from rlmath.audit.engine import ExpectedGradient, expected_gradient_details
from rlmath.audit.objectives import NamedObjective, named_objectives
from rlmath.sequence_model import SequenceModel
from rlmath.tolerances import MAX_EXACT_RTOL, exact_rtol

__all__ = ["AuditReport", "audit", "audit_models", "judge"]

REWARD_KINDS = ("binary", "gaussian")


# ----------------------------------------------------------------------------- models
def _behaviour_scale(behaviour: Any) -> float | None:
    """``None`` (on-policy), 0.3 for ``"perturbed"``, or the given scale >= 0."""
    if behaviour is None:
        return None
    if isinstance(behaviour, str) and behaviour == "perturbed":
        return 0.3
    if isinstance(behaviour, (int, float)) and not isinstance(behaviour, bool):
        sigma = check_real_scalar(behaviour, "behaviour")
        if sigma < 0:
            raise ValueError(f"behaviour must be >= 0 as a perturbation scale, got {sigma!r}")
        return sigma
    raise ValueError(
        f"behaviour must be None, 'perturbed' or a perturbation scale, got {behaviour!r}"
    )


def audit_models(
    n_models: int = 5,
    *,
    seed: int = 0,
    n_prompts: int = 2,
    n_tokens: int = 2,
    max_length: int = 2,
    rewards: str = "binary",
    behaviour: Any = None,
) -> list[tuple[SequenceModel, FloatArray | None]]:
    r"""Seeded random sequence models for an audit, each with its behaviour logits (or ``None``).

    Model $m$ uses ``numpy.random.default_rng([seed, m])``: logits and reference logits
    $\sim \mathcal N(0, 1)$, $\rho \sim \mathrm{Dirichlet}(1)$, rewards $\in \{0, 1\}$ with
    probability 1/2 each (``"binary"``, redrawn until every prompt has both a success and a
    failure) or $\mathcal N(0, 1)$ (``"gaussian"``). ``behaviour="perturbed"`` (or a float
    $\sigma$) gives $\mu$ logits $\theta + \sigma\, \mathcal N(0, 1)$ ($\sigma = 0.3$ for
    ``"perturbed"``): an inference engine close to the trainer.

    Returns:
        ``[(model, behaviour_logits or None), ...]``.

    Examples:
        >>> [type(m).__name__ for m, _ in audit_models(2)]
        ['SequenceModel', 'SequenceModel']
    """
    n_models = check_integer(n_models, "n_models", minimum=1)
    seed = check_integer(seed, "seed", minimum=0)
    if rewards not in REWARD_KINDS:
        raise ValueError(f"rewards must be one of {REWARD_KINDS}, got {rewards!r}")
    sigma = _behaviour_scale(behaviour)
    out = []
    for m in range(n_models):
        rng = np.random.default_rng([seed, m])
        base = SequenceModel.random(n_prompts, n_tokens, max_length, seed=int(rng.integers(2**32)))
        R = base.n_responses
        if rewards == "binary":
            table = rng.integers(0, 2, size=(n_prompts, R)).astype(np.float64)
            for x in range(n_prompts):
                while table[x].min() == table[x].max():
                    table[x] = rng.integers(0, 2, size=R)
        else:
            table = rng.standard_normal((n_prompts, R))
        model = SequenceModel(
            base.theta, max_length, base.prompt_probabilities, table, None, base.reference_theta
        )
        mu = None if sigma is None else model.theta + sigma * rng.standard_normal(model.theta.shape)
        out.append((model, mu))
    return out


# ----------------------------------------------------------------------------- the report
@dataclass(frozen=True, eq=False)
class AuditReport:
    r"""The verdict of an audit, with the numbers behind it.

    Attributes:
        verdict: ``"unbiased"``, ``"biased"`` or ``"zero"``.
        objective: the objective followed (unbiased), the closest one (biased), or ``None``
            (zero).
        coefficient: $c$ (mean over models; of the first term for a combination).
        cosine: worst-case cosine between the expected gradient and the objective's loss
            direction.
        relative_residual: worst-case relative residual of the one-objective fit.
        tolerance: the largest per-model tolerance $\tau_m$ used.
        decomposition: least-squares coefficients on the atomic objectives (loss-direction
            convention: positive follows the objective; joint over models).
        decomposition_residual: worst-case relative residual of that decomposition.
        per_model: one dict per model (gradient norm, tolerance, fits).
        explanation: the sentence that names the difference.
        expected_objective: the objective asked for (``objective=``), or ``None``.
        claim: id of the claim behind ``objective`` (if any).
        family, group_size, beta, backend, differentiation, method, notes: the setting.
    """

    verdict: str
    objective: str | None
    coefficient: float
    cosine: float
    relative_residual: float
    tolerance: float
    decomposition: dict[str, float]
    decomposition_residual: float
    per_model: tuple[dict[str, Any], ...]
    explanation: str
    expected_objective: str | None = None
    claim: str | None = None
    family: str = "llm"
    group_size: int = 4
    beta: float = 0.1
    backend: str = ""
    differentiation: str = ""
    method: str = "multiset"
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """Whether the loss follows ``expected_objective`` (or any objective, if none asked)."""
        if self.verdict == "zero" or self.expected_objective == "0":
            return self.verdict == "zero" and self.expected_objective == "0"
        if self.verdict != "unbiased":
            return False
        return self.expected_objective is None or self.objective == self.expected_objective

    def summary(self) -> str:
        """A readable multi-line summary that names the difference."""
        n = len(self.per_model)
        lines = []
        if self.verdict == "unbiased":
            lines.append(
                f"unbiased for c * grad({self.objective}), c = {self.coefficient:.6g} "
                f"(worst residual {self.relative_residual:.2e} <= tolerance "
                f"{self.tolerance:.2e}, {n} models)"
            )
        elif self.verdict == "zero":
            lines.append(
                f"zero: the expected gradient is 0 within the tolerance in all {n} models "
                "(the loss optimises nothing in expectation)"
            )
        else:
            lines.append(
                f"biased: closest named objective {self.objective}, cosine {self.cosine:.6f}, "
                f"relative residual {self.relative_residual:.3g} (tolerance "
                f"{self.tolerance:.2e}, worst of {n} models)"
            )
        lines.append(self.explanation)
        if self.expected_objective is not None and not self.passed:
            lines.append(f"expected: {self.expected_objective}")
        largest = max((abs(v) for v in self.decomposition.values()), default=0.0)
        shown = {k: v for k, v in self.decomposition.items() if abs(v) > 1e-9 * largest}
        if shown:
            terms = " ".join(
                f"{'+' if v >= 0 else '-'} {abs(v):.4g} [{k}]" for k, v in shown.items()
            )
            lines.append(
                f"decomposition (loss direction, least squares over the {n} models): "
                f"{terms.lstrip('+ ')}  (residual {self.decomposition_residual:.2e})"
            )
        size = (
            f"T = {self.per_model[0].get('horizon', '?')}"
            if self.family == "actor-critic"
            else f"G = {self.group_size}, beta = {self.beta:g}"
        )
        lines.append(
            f"setting: family {self.family}, {size}, {self.backend}: {self.differentiation}, "
            f"{self.method} enumeration"
        )
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field, plus ``summary``."""
        return {
            "verdict": self.verdict,
            "objective": self.objective,
            "coefficient": self.coefficient,
            "cosine": self.cosine,
            "relative_residual": self.relative_residual,
            "tolerance": self.tolerance,
            "decomposition": dict(self.decomposition),
            "decomposition_residual": self.decomposition_residual,
            "per_model": [dict(m) for m in self.per_model],
            "explanation": self.explanation,
            "expected_objective": self.expected_objective,
            "claim": self.claim,
            "family": self.family,
            "group_size": self.group_size,
            "beta": self.beta,
            "backend": self.backend,
            "differentiation": self.differentiation,
            "method": self.method,
            "notes": list(self.notes),
            "passed": self.passed,
            "summary": self.summary(),
        }


# ----------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class _Fit:
    name: str
    coefficients: tuple[float, ...]
    cosines: tuple[float, ...]
    residuals: tuple[float, ...]

    def fits(self, tolerances: Sequence[float]) -> bool:
        c = np.array(self.coefficients)
        if not np.all(c > 0) or any(r > t for r, t in zip(self.residuals, tolerances, strict=True)):
            return False
        mean = float(c.mean())
        return bool(np.all(np.abs(c - mean) <= max(tolerances) * mean))


def _fit_one(name: str, gs: Sequence[FloatArray], os_: Sequence[FloatArray]) -> _Fit:
    cs, coss, res = [], [], []
    for g, o in zip(gs, os_, strict=True):
        gn, on = float(np.linalg.norm(g)), float(np.linalg.norm(o))
        if on == 0 or gn == 0:
            cs.append(0.0)
            coss.append(0.0)
            res.append(0.0 if gn == 0 else 1.0)
            continue
        dot = float(np.vdot(g, o))
        c = dot / on**2
        cs.append(c)
        coss.append(dot / (gn * on))
        res.append(float(np.linalg.norm(g - c * o)) / gn)
    return _Fit(name, tuple(cs), tuple(coss), tuple(res))


def _joint_least_squares(
    gs: Sequence[FloatArray], basis: Sequence[Sequence[FloatArray]]
) -> tuple[FloatArray, list[float]]:
    """Coefficients a (one per basis objective, shared by all models) and per-model residuals."""
    A = np.vstack([np.column_stack([b.ravel() for b in model_basis]) for model_basis in basis])
    y = np.concatenate([g.ravel() for g in gs])
    a, *_ = np.linalg.lstsq(A, y, rcond=None)
    residuals = []
    for g, model_basis in zip(gs, basis, strict=True):
        fitted = sum((coef * b for coef, b in zip(a, model_basis, strict=True)), np.zeros_like(g))
        gn = float(np.linalg.norm(g))
        residuals.append(float(np.linalg.norm(g - fitted)) / gn if gn > 0 else 0.0)
    return a, residuals


def _independent(
    names: Sequence[str], libraries: Sequence[dict[str, NamedObjective]], tolerance: float
) -> list[str]:
    """The names, in order, whose stacked gradients are not combinations of earlier ones.

    (With G <= 3 the prompt-reweighted objective is a constant times J, and the least-squares
    split between collinear objectives would be arbitrary.)
    """
    kept: list[str] = []
    columns: list[FloatArray] = []
    threshold = max(1e-8, 100.0 * tolerance) if math.isfinite(tolerance) else 1e-8
    for name in names:
        v = np.concatenate([lib[name].loss_direction.ravel() for lib in libraries])
        norm = float(np.linalg.norm(v))
        if norm == 0:
            continue
        if columns:
            A = np.column_stack(columns)
            a, *_ = np.linalg.lstsq(A, v, rcond=None)
            if float(np.linalg.norm(v - A @ a)) <= threshold * norm:
                continue
        kept.append(name)
        columns.append(v)
    return kept


def _factor_story(c: float, G: int, L: int, tolerance: float, family: str = "llm") -> str:
    """``c`` written as a simple factor of G and L when it is one."""
    if family == "actor-critic":
        for text, value in (("1", 1.0), ("1/T", 1.0 / L)):
            if abs(c - value) <= max(tolerance, 1e-12) * 10 * value:
                return (
                    "c = 1"
                    if text == "1"
                    else f"c = 1/T = {value:.6g} (a mean over the T = {L} steps)"
                )
        return f"c = {c:.6g}"
    groups = [
        ("", 1.0),
        ("(1 - 1/G)", 1.0 - 1.0 / G),
        ("G/(G - 1)", G / (G - 1.0) if G > 1 else math.nan),
    ]
    scales = [
        ("", 1.0),
        ("/G", 1.0 / G),
        (" * G", float(G)),
        ("/L", 1.0 / L),
        ("/(G L)", 1.0 / (G * L)),
    ]
    for (a_name, a), (b_name, b) in itertools.product(groups, scales):
        value = a * b
        if math.isfinite(value) and abs(c - value) <= max(tolerance, 1e-12) * 10 * abs(value):
            text = (a_name or "1") + b_name
            if text == "1":
                return "c = 1"
            meaning = []
            if a_name == "(1 - 1/G)":
                meaning.append("a group-mean baseline that includes the member itself")
            if "/L" in b_name or "L)" in b_name:
                meaning.append("a constant token normaliser L (the maximum length)")
            if b_name == "/G":
                meaning.append("summed over the group and divided by G twice")
            if b_name == " * G":
                meaning.append("summed over the group's members, not averaged")
            suffix = f" ({'; '.join(meaning)})" if meaning else ""
            return f"c = {text} = {value:.6g} with G = {G}, L = {L}{suffix}"
    return f"c = {c:.6g}"


def _divergence(name: str) -> bool:
    return name.startswith(("KL", "token KL"))


def _combination_name(names: Sequence[str], coefficients: Any) -> tuple[str, float]:
    """``"J - 0.133 token KL(ref||pi)"`` and the first term's coefficient."""
    lead = float(coefficients[0])
    parts = [names[0]]
    for name, coef in zip(names[1:], coefficients[1:], strict=True):
        ratio = float(coef) / lead
        # a divergence with a positive loss-direction coefficient is subtracted from J
        sign = -1.0 if _divergence(name) != _divergence(names[0]) else 1.0
        value = sign * ratio
        parts.append(f"{'+' if value >= 0 else '-'} {abs(value):.4g} {name}")
    return " ".join(parts), lead


def judge(
    gradients: Sequence[ExpectedGradient],
    libraries: Sequence[dict[str, NamedObjective]],
    *,
    objective: str | None = None,
    group_size: int = 4,
    max_length: int = 2,
    beta: float = 0.1,
    family: str = "llm",
    objective_rtol: Sequence[float] | None = None,
) -> AuditReport:
    r"""The verdict from expected gradients and objective libraries on the same models.

    Args:
        gradients: one :class:`~rlmath.audit.engine.ExpectedGradient` per model.
        libraries: one ``{name: NamedObjective}`` per model (same names).
        objective: the objective the loss is meant to follow (``None``: any).
        group_size, max_length, beta, family: the setting (for the report and the factor).
        objective_rtol: per-model rounding tolerance of the objectives' enumeration.

    Returns:
        :class:`AuditReport`.
    """
    if len(gradients) != len(libraries) or not gradients:
        raise ValueError("gradients and libraries must be non-empty and of equal length")
    names = [n for n in libraries[0] if all(n in lib for lib in libraries)]
    if objective is not None and objective not in (*names, "0"):
        raise ValueError(f"objective must be one of {[*names, '0']}, got {objective!r}")
    expected = objective
    if objective == "0":  # a zero gradient asked for: analyse freely, then judge against 0
        objective = None
    extra = list(objective_rtol) if objective_rtol is not None else [0.0] * len(gradients)
    tolerances = [g.relative_tolerance() + e for g, e in zip(gradients, extra, strict=True)]
    gs = [g.gradient for g in gradients]
    notes: list[str] = []
    for g in gradients:
        notes.extend(n for n in g.notes if n not in notes)
    finite_tolerances = [t for t in tolerances if math.isfinite(t)]
    worst_tolerance = max(finite_tolerances) if finite_tolerances else math.inf
    is_zero = all(g.norm <= g.absolute_tolerance() for g in gradients)
    if worst_tolerance > MAX_EXACT_RTOL and not is_zero:
        notes.append(
            f"the tolerance {worst_tolerance:.2e} exceeds rlmath.tolerances.MAX_EXACT_RTOL = "
            f"{MAX_EXACT_RTOL:g}: the comparison is not exact (heavy cancellation or "
            "differences), so a small bias may go unseen"
        )
    fits = {n: _fit_one(n, gs, [lib[n].loss_direction for lib in libraries]) for n in names}
    atomic = _independent([n for n in names if libraries[0][n].atomic], libraries, worst_tolerance)
    a_full, res_full = _joint_least_squares(
        gs, [[lib[n].loss_direction for n in atomic] for lib in libraries]
    )
    decomposition = {n: float(c) for n, c in zip(atomic, a_full, strict=True)}
    per_model = tuple(
        {
            "gradient_norm": float(np.linalg.norm(g.gradient)),
            "horizon": max_length,
            "tolerance": t,
            "n_groups": g.n_groups,
            "fits": {
                n: {
                    "coefficient": fits[n].coefficients[m],
                    "cosine": fits[n].cosines[m],
                    "relative_residual": fits[n].residuals[m],
                }
                for n in names
            },
        }
        for m, (g, t) in enumerate(zip(gradients, tolerances, strict=True))
    )
    G, L = group_size, max_length
    base: dict[str, Any] = {
        "decomposition": decomposition,
        "decomposition_residual": max(res_full),
        "per_model": per_model,
        "expected_objective": expected,
        "family": family,
        "group_size": G,
        "beta": beta,
        "backend": gradients[0].backend,
        "differentiation": gradients[0].differentiation,
        "method": gradients[0].method,
        "notes": tuple(notes),
        "tolerance": worst_tolerance,
    }

    def report(
        verdict: str, name: str | None, c: float, cos: float, res: float, text: str
    ) -> AuditReport:
        claim = libraries[0][name].claim if name in libraries[0] else None
        return AuditReport(verdict, name, c, cos, res, explanation=text, claim=claim, **base)

    if is_zero:
        return report(
            "zero",
            None,
            0.0,
            0.0,
            0.0,
            (
                "E[grad loss] = 0: the estimator is unbiased for the gradient of a constant (as k1 "
                "in the loss: claim llm-token-k1-loss-zero-gradient); it regularises nothing"
            ),
        )

    if expected == "0":
        free = judge(
            gradients,
            libraries,
            group_size=group_size,
            max_length=max_length,
            beta=beta,
            family=family,
            objective_rtol=objective_rtol,
        )
        return replace(
            free,
            verdict="biased",
            expected_objective="0",
            explanation=f"expected a zero expected gradient, but it {free.explanation}",
        )

    def single(name: str) -> AuditReport:
        fit = fits[name]
        c = float(np.mean(fit.coefficients))
        lib = libraries[0][name]
        story = _factor_story(c, G, L, worst_tolerance, family)
        text = f"follows grad {name}: {lib.description}; {story}"
        if name != "J" and "J" in names and not _divergence(name):
            text += f"; this is not J (worst cosine with grad J {min(fits['J'].cosines):.6f})"
        return report("unbiased", name, c, min(fit.cosines), max(fit.residuals), text)

    candidates = [objective] if objective is not None else names
    for name in candidates:
        if fits[name].fits(tolerances):
            return single(name)

    closest = max(names, key=lambda n: min(fits[n].cosines))
    if objective is not None:
        closest = objective
    best = fits[closest]
    c_best = float(np.mean(best.coefficients))
    why: str
    if objective is not None:
        found = next((n for n in names if fits[n].fits(tolerances)), None)
        if found is not None:
            other = single(found)
            return report(
                "biased",
                objective,
                float(np.mean(fits[objective].coefficients)),
                min(fits[objective].cosines),
                max(fits[objective].residuals),
                f"does not follow {objective}: it {other.explanation}",
            )
    combination = _best_combination(gs, libraries, atomic, tolerances)
    if combination is not None:
        combo_names, coefficients, combo_residual = combination
        wrong = [(n, c) for n, c in zip(combo_names, coefficients, strict=True) if c <= 0]
        text_name, lead = _combination_name(combo_names, coefficients)
        if not wrong:
            explanation = (
                f"follows the fixed combination grad({text_name}) with c = {lead:.6g} on "
                f"{combo_names[0]}: "
                + "; ".join(f"{n}: {libraries[0][n].description}" for n in combo_names[1:])
            )
            combo_cosine = math.sqrt(max(0.0, 1.0 - combo_residual**2))
            if objective is None:
                return report(
                    "unbiased", text_name, lead, combo_cosine, combo_residual, explanation
                )
            return report(
                "biased",
                objective,
                c_best,
                min(best.cosines),
                max(best.residuals),
                f"does not follow {objective}: it {explanation}",
            )
        if wrong:
            terms = ", ".join(
                f"{n} (coefficient {c:.4g}: the loss {'increases the divergence' if _divergence(n) else 'descends the objective'})"
                for n, c in wrong
            )
            why = (
                f"the expected gradient is exactly the combination {text_name} (residual "
                f"{combo_residual:.2e}), with the wrong sign on {terms}: a sign error in that "
                "term; with the sign fixed it would regularise as intended"
            )
            return report("biased", closest, c_best, min(best.cosines), max(best.residuals), why)
    if all(r <= t for r, t in zip(best.residuals, tolerances, strict=True)):
        cs = np.array(best.coefficients)
        if np.all(cs < 0):
            why = (
                f"follows the opposite of grad {closest} (c = {cs.mean():.4g} < 0): a sign "
                "error, the loss ascends what it should descend"
            )
        elif np.all(cs > 0):
            why = (
                f"parallel to grad {closest} in every model, but the factor varies across "
                f"models (c from {cs.min():.6g} to {cs.max():.6g}): a model-dependent scale, "
                "e.g. a normaliser that depends on the policy"
            )
        else:
            why = f"parallel to grad {closest} but with factors of both signs ({cs.min():.4g} to {cs.max():.4g})"
    else:
        worst = int(np.argmax(best.residuals))
        why = (
            f"no named objective or fixed combination of them fits: the closest is {closest} "
            f"({libraries[0][closest].description}) with c = {c_best:.4g}, and the "
            f"least-squares decomposition over all atomic objectives still leaves a relative "
            f"residual of {max(res_full):.3g} (model {worst}): the remainder is not the "
            "gradient of any objective in the library, as happens when a normaliser or "
            "weight depends on the sampled group (token counts, micro-batches, masks)"
        )
        if gradients[0].method == "ordered":
            why += (
                "; the loss also depends on the order of the group's rows, as a split into "
                "micro-batches normalised by their own token counts does"
            )
    return report("biased", closest, c_best, min(best.cosines), max(best.residuals), why)


def _best_combination(
    gs: Sequence[FloatArray],
    libraries: Sequence[dict[str, NamedObjective]],
    atomic: Sequence[str],
    tolerances: Sequence[float],
) -> tuple[tuple[str, ...], FloatArray, float] | None:
    """The smallest set of 2 or 3 atomic objectives whose joint fit is within tolerance."""
    for size in (2, 3):
        found: list[tuple[float, tuple[str, ...], FloatArray, float]] = []
        for subset in itertools.combinations(atomic, size):
            a, residuals = _joint_least_squares(
                gs, [[lib[n].loss_direction for n in subset] for lib in libraries]
            )
            ratio = max(r / t for r, t in zip(residuals, tolerances, strict=True))
            if ratio <= 1.0 and np.all(np.abs(a) > 0):
                found.append((ratio, subset, a, max(residuals)))
        if found:
            _, subset, a, residual = min(found, key=lambda item: item[0])
            return subset, a, residual
    return None


# ----------------------------------------------------------------------------- audit
def _restrict(
    library: dict[str, NamedObjective], objectives: Sequence[str] | None
) -> dict[str, NamedObjective]:
    """The library restricted to ``objectives`` (``None``: all), refusing unknown names."""
    if objectives is None:
        return library
    unknown = [n for n in objectives if n not in library]
    if unknown:
        raise ValueError(f"objectives: unknown names {unknown}; known: {list(library)}")
    return {n: o for n, o in library.items() if n in objectives}


def audit(
    loss: Callable[..., Any],
    *,
    family: str = "llm",
    n_models: int = 5,
    seed: int = 0,
    group_size: int = 4,
    beta: float = 0.1,
    objectives: Sequence[str] | None = None,
    objective: str | None = None,
    behaviour: Any = None,
    backend: str = "auto",
    ddof: int = 1,
    std_epsilon: float = 0.0,
    rewards: str = "binary",
    n_prompts: int = 2,
    n_tokens: int = 2,
    max_length: int = 2,
    models: Sequence[SequenceModel] | None = None,
    **constants: Any,
) -> AuditReport:
    r"""Audit a loss: which objective does its expected gradient follow, over several models?

    For each model (:func:`audit_models`, or ``models``) the exact
    $\mathbb E[\nabla_\theta \mathcal L]$ (:func:`rlmath.audit.engine.expected_gradient_details`)
    is compared with the exact gradients of the named objectives
    (:func:`rlmath.audit.objectives.named_objectives`); see the module docstring for the
    verdict rule and the tolerance.

    Args:
        loss: the loss of one group (calling convention: :mod:`rlmath.audit.engine`).
        family: ``"llm"``.
        n_models: number of generated models (ignored with ``models``).
        seed: seed of the generated models.
        group_size: $G$.
        beta: $\beta$ of the regularised objectives.
        objectives: restrict the candidate names (``None``: the whole library).
        objective: the objective the loss should follow; the verdict is then about it.
        behaviour: ``None`` (on-policy), ``"perturbed"`` or a perturbation scale (an
            inference engine $\mu$ near $\pi_{\theta_\mathrm{old}}$).
        backend: ``"auto"``, ``"torch"``, ``"jax"`` or ``"numpy"``.
        ddof, std_epsilon: of the prompt-reweighted objective (match the loss's GRPO std).
        rewards: ``"binary"`` or ``"gaussian"`` rewards in the generated models.
        n_prompts, n_tokens, max_length: sizes of the generated models.
        models: use these models instead of generated ones (on-policy unless ``behaviour``).
        **constants: further keyword arguments passed to the loss.

    Returns:
        :class:`AuditReport`.

    Raises:
        TypeError, ValueError: naming the argument (see :func:`rlmath.audit.expected_gradient`).

    Examples:
        >>> import numpy as np
        >>> def rloo(log_probs, *, rewards, response_mask):
        ...     G = rewards.shape[0]
        ...     advantages = rewards - (rewards.sum() - rewards) / (G - 1)
        ...     return -(advantages * (log_probs * response_mask).sum(axis=1)).mean()
        >>> report = audit(rloo, n_models=2, group_size=3, backend="numpy")
        >>> report.verdict, report.objective, round(report.coefficient, 9)
        ('unbiased', 'J', 1.0)
    """
    beta = check_real_scalar(beta, "beta")
    G = check_integer(group_size, "group_size", minimum=1)
    if family == "actor-critic":
        return _audit_actor_critic(
            loss,
            n_models=n_models,
            seed=seed,
            objective=objective,
            objectives=objectives,
            backend=backend,
            models=models,
            **constants,
        )
    if family != "llm":
        raise ValueError(f"family must be 'llm' or 'actor-critic', got {family!r}")
    if models is None:
        pairs = audit_models(
            n_models,
            seed=seed,
            n_prompts=n_prompts,
            n_tokens=n_tokens,
            max_length=max_length,
            rewards=rewards,
            behaviour=behaviour,
        )
    else:
        if not models:
            raise ValueError("models must be a non-empty sequence of SequenceModel")
        for i, model in enumerate(models):
            if not isinstance(model, SequenceModel):
                raise TypeError(f"models[{i}] must be a SequenceModel, got {type(model).__name__}")
        sigma = _behaviour_scale(behaviour)
        pairs = []
        for i, model in enumerate(models):
            mu = None
            if sigma is not None:
                rng = np.random.default_rng([seed, i, 1])
                mu = model.theta + sigma * rng.standard_normal(model.theta.shape)
            pairs.append((model, mu))
    gradients, libraries, objective_rtol = [], [], []
    for model, mu in pairs:
        gradients.append(
            expected_gradient_details(
                loss,
                family=family,
                model=model,
                group_size=G,
                behaviour=mu,
                backend=backend,
                **constants,
            )
        )
        library = named_objectives(
            model,
            family=family,
            beta=beta,
            group_size=G,
            ddof=ddof,
            std_epsilon=std_epsilon,
            behaviour=None if mu is None else model.with_theta(mu),
        )
        libraries.append(_restrict(library, objectives))
        objective_rtol.append(exact_rtol(1.0, model.n_responses * model.max_length))
    return judge(
        gradients,
        libraries,
        objective=objective,
        group_size=G,
        max_length=pairs[0][0].max_length,
        beta=beta,
        family=family,
        objective_rtol=objective_rtol,
    )


def _audit_actor_critic(
    loss: Callable[..., Any],
    *,
    n_models: int,
    seed: int,
    objective: str | None,
    objectives: Sequence[str] | None,
    backend: str,
    models: Sequence[Any] | None,
    **constants: Any,
) -> AuditReport:
    """:func:`audit` for the family "actor-critic" (:mod:`rlmath.audit.actor_critic`)."""
    from rlmath.audit.actor_critic import (
        TabularActorCritic,
        actor_critic_expected_gradient,
        actor_critic_models,
        actor_critic_objectives,
    )

    if models is None:
        chosen = actor_critic_models(n_models, seed=seed)
    else:
        chosen = list(models)
        for i, model in enumerate(chosen):
            if not isinstance(model, TabularActorCritic):
                raise TypeError(
                    f"models[{i}] must be a TabularActorCritic, got {type(model).__name__}"
                )
        if not chosen:
            raise ValueError("models must be a non-empty sequence")
    gradients, libraries, rtol = [], [], []
    for model in chosen:
        gradients.append(
            actor_critic_expected_gradient(loss, model=model, backend=backend, **constants)
        )
        library = actor_critic_objectives(model)
        libraries.append(_restrict(library, objectives))
        horizon = model.mdp.horizon or 1
        rtol.append(exact_rtol(1.0, horizon * model.mdp.n_states * model.mdp.n_actions))
    return judge(
        gradients,
        libraries,
        objective=objective,
        group_size=1,
        max_length=chosen[0].mdp.horizon or 1,
        beta=0.0,
        family="actor-critic",
        objective_rtol=rtol,
    )
