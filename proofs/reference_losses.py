r"""The shipped reference losses compute what their docstrings say: PPO, value clipping, DPO, GRPO.

Users check their own PPO, DPO or GRPO code against :mod:`rlmath.reference`; these claims
check the reference itself. Every exact leg *calls* the shipped function, and compares it
with an independently computed side: the conclusion of a sympy derivation (lambdified), and
for gradients also central differences of the shipped loss, so that a bug in the loss or in
its gradient function fails ``rlmath verify``.

Main statements (per entry $i$ of $N$; $q_i = e^{x_i - o_i}$ the ratio of the new to the old
policy, $x$ = ``log_probs``, $o$ = ``old_log_probs``):

$$ -\frac1N \min\big(q A, \operatorname{clip}(q, 1-\epsilon, 1+\epsilon) A\big)
   = \frac1N \Big(\max\big(0,\ (q - 1) A - \epsilon |A|\big) - q A\Big), $$

$$ \frac{\partial}{\partial x}\Big[-\frac1N \min(q A, \operatorname{clip}(q) A)\Big]
   = \begin{cases} 0 & A > 0, q > 1 + \epsilon \text{ or } A < 0, q < 1 - \epsilon, \\
                   -q A / N & \text{otherwise (off the kinks, } A \ne 0). \end{cases} $$

The first says the PPO loss is the importance-sampling loss $-qA$ plus a hinge penalty that
is non-zero only once the ratio has left the clip range in the direction $A$ favours.

Conventions. Losses (minimised), means over entries (the $1/N$ is part of every statement),
gradients with respect to ``log_probs``, old log-probs and advantages constant, as in
:mod:`rlmath.reference`.

Proof sketch. Case analyses over the sign of $A$ and the region of $q$ (as in
``proofs/ppo_clip.py``), each region parametrised so that sympy decides every min, max and
clip; the closed forms are then tied to each case by the claim.

References. Schulman et al., "Proximal Policy Optimization Algorithms", arXiv:1707.06347,
2017, eq. (7); Rafailov et al., "Direct Preference Optimization", NeurIPS 2023, eq. (7);
Shao et al., "DeepSeekMath", arXiv:2402.03300, 2024, Sec. 4.1.2 (group-normalised
advantages); OpenAI Baselines ppo2 (value clipping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import reference
from rlmath.claims import (
    Case,
    CaseAnalysis,
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    lambdify,
)
from rlmath.symbolic import IndexSum
from rlmath.tolerances import EPS, central_difference_step, exact_rtol

# ============================================================================ PPO: symbols
x = sp.Symbol("x", real=True)  # log pi_theta(a | s), the variable of the gradient
_y = sp.Symbol("y", real=True)  # the variable of d/dy in the statement (evaluated at x)
o = sp.Symbol("o", real=True)  # log pi_old(a | s), a constant
A = sp.Symbol("A", real=True)
epsilon = sp.Symbol("epsilon", positive=True)
N = sp.Symbol("N", integer=True, positive=True)  # number of entries the loss averages
PPO_SYMBOLS = (x, o, A, epsilon, N)


def clip(value: sp.Expr, low: sp.Expr, high: sp.Expr) -> sp.Expr:
    r"""$\operatorname{clip}(v, lo, hi) = \min(\max(v, lo), hi)$, unevaluated."""
    return sp.Min(sp.Max(value, low, evaluate=False), high, evaluate=False)


def ppo_loss_term(ratio: sp.Expr, advantage: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$-\frac1N \min(q A, \operatorname{clip}(q, 1-\epsilon, 1+\epsilon) A)$: entry $i$'s share."""
    surrogate = sp.Min(
        sp.Mul(ratio, advantage, evaluate=False),
        sp.Mul(clip(ratio, 1 - eps, 1 + eps), advantage, evaluate=False),
        evaluate=False,
    )
    return sp.Mul(-1, sp.Pow(N, -1), surrogate, evaluate=False)


def ppo_hinge_form(ratio: sp.Expr, advantage: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$\frac1N(\max(0, (q - 1)A - \epsilon|A|) - q A)$: the IS loss plus a hinge penalty."""
    penalty = sp.Max(0, (ratio - 1) * advantage - eps * sp.Abs(advantage), evaluate=False)
    return sp.Mul(sp.Pow(N, -1), penalty - ratio * advantage, evaluate=False)


def ppo_gradient_form(ratio: sp.Expr, advantage: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$-q A / N$ except where the clip binds in the direction $A$ favours (there 0)."""
    return sp.Piecewise(
        (0, (advantage > 0) & (ratio > 1 + eps)),
        (0, (advantage < 0) & (ratio < 1 - eps)),
        (-ratio * advantage / N, True),
        evaluate=False,
    )


RATIO = sp.exp(x - o)


@dataclass(frozen=True)
class PPORegion:
    """One of the six regions of (A, q): where, its parametrisation, what the loss is there.

    ``ratio`` is q = exp(x - o) on the region (x is parametrised as o + log(ratio)), ``eps`` the
    parametrised epsilon; ``picked`` is the value of -(1/N) min(qA, clip(q) A) in the region;
    ``slope`` is its derivative in x (open regions).
    """

    name: str
    where: str
    region: sp.Basic
    ratio: sp.Expr
    advantage: sp.Expr
    eps: sp.Expr
    picked: sp.Expr
    slope: sp.Expr

    @property
    def parametrisation(self) -> dict[sp.Symbol, sp.Expr]:
        return {x: o + sp.log(self.ratio), A: self.advantage, epsilon: self.eps}


def ppo_regions(closed: bool) -> tuple[PPORegion, ...]:
    """Closed regions (non-negative parameters, kinks and A = 0 included) or open ones."""
    sign = {"nonnegative": True} if closed else {"positive": True}
    a = sp.Symbol("a", **sign)  # |A|
    rho = sp.Symbol("rho", **sign)  # distance beyond a kink
    sigma = sp.Symbol("sigma", **sign)  # inside: q - (1 - eps)
    tau = sp.Symbol("tau", **sign)  # inside: (1 + eps) - q
    ge, le = (sp.GreaterThan, sp.LessThan) if closed else (sp.StrictGreaterThan, sp.StrictLessThan)
    positive, negative = ge(A, 0), le(A, 0)
    q = RATIO
    above, below = ge(q, 1 + epsilon), le(q, 1 - epsilon)
    inside = ge(q, 1 - epsilon) & le(q, 1 + epsilon)
    half = (sigma + tau) / 2  # epsilon inside
    up, down, mid = 1 + epsilon + rho, 1 - epsilon - rho, 1 - half + sigma
    rows = []
    for sgn, label, adv in ((1, "positive", a), (-1, "negative", -a)):
        cond = positive if sgn > 0 else negative
        # above: the clipped term (1 + eps) A is the smaller for A >= 0, q A for A <= 0
        rows.append(
            PPORegion(
                f"{label}-above",
                f"A {'>=' if sgn > 0 else '<='} 0, q = 1 + eps + rho: "
                + ("the clipped term (1 + eps) A is the smaller" if sgn > 0 else "q A <= (1 + eps) A"),
                cond & above,
                up,
                adv,
                epsilon,
                -(1 + epsilon) * adv / N if sgn > 0 else -up * adv / N,
                sp.Integer(0) if sgn > 0 else -up * adv / N,
            )
        )
        rows.append(
            PPORegion(
                f"{label}-inside",
                f"A {'>=' if sgn > 0 else '<='} 0, 1 - eps <= q <= 1 + eps: clip(q) = q",
                cond & inside,
                mid,
                adv,
                half,
                -mid * adv / N,
                -mid * adv / N,
            )
        )
        rows.append(
            PPORegion(
                f"{label}-below",
                f"A {'>=' if sgn > 0 else '<='} 0, q = 1 - eps - rho: "
                + ("q A <= (1 - eps) A" if sgn > 0 else "the clipped term (1 - eps) A is the smaller"),
                cond & below,
                down,
                adv,
                epsilon,
                -down * adv / N if sgn > 0 else -(1 - epsilon) * adv / N,
                -down * adv / N if sgn > 0 else sp.Integer(0),
            )
        )
    return tuple(rows)


PPO_LOSS_REGIONS = ppo_regions(closed=True)
PPO_SLOPE_REGIONS = ppo_regions(closed=False)


def ppo_loss_derivation(region: PPORegion) -> Derivation:
    """-(1/N) min(qA, clip(q)A) = (what the min picks) = the hinge form, in one region."""
    q, adv, eps = region.ratio, region.advantage, region.eps
    return Derivation(
        f"ppo-loss-{region.name}",
        (
            Step(ppo_loss_term(q, adv, eps), "entry i's share of the PPO loss, q = exp(x - o)"),
            Step(region.picked, f"{region.where}; evaluate the min and the clip"),
            Step(
                ppo_hinge_form(q, adv, eps),
                "add and subtract q A / N: the hinge max(0, (q - 1) A - eps |A|) is the "
                "difference q A - min(...) in this region",
            ),
        ),
        statement=rf"\text{{PPO loss term}} \quad ({region.name})",
    )


def ppo_slope_derivation(region: PPORegion) -> Derivation:
    """d/dx of entry i's share at a point of the (open) region: what the min picks, differentiated."""
    q, adv, eps = region.ratio, region.advantage, region.eps
    at = o + sp.log(q)
    term = ppo_loss_term(sp.exp(_y - o), adv, eps)
    return Derivation(
        f"ppo-gradient-{region.name}",
        (
            Step(sp.Subs(sp.Derivative(term, _y), _y, at), "d/dx of entry i's share of the loss"),
            Step(
                region.slope,
                f"{region.where.replace('>=', '>').replace('<=', '<')}; on a neighbourhood of x "
                f"the share is {sp.sstr(region.picked)} with q = exp(x - o), and dq/dx = q",
            ),
        ),
        statement=rf"\partial_x \text{{PPO loss term}} \quad ({region.name})",
    )


ppo_loss_analysis = CaseAnalysis(
    "ppo-loss",
    sp.true,
    tuple(Case(g.region, ppo_loss_derivation(g), g.parametrisation) for g in PPO_LOSS_REGIONS),
)
ppo_slope_analysis = CaseAnalysis(
    "ppo-gradient",
    sp.Ne(A, 0) & sp.Ne(RATIO, 1 + epsilon) & sp.Ne(RATIO, 1 - epsilon),
    tuple(Case(g.region, ppo_slope_derivation(g), g.parametrisation) for g in PPO_SLOPE_REGIONS),
)


# ============================================================================ PPO: examples
@dataclass(frozen=True)
class PPOExample:
    """Arrays [N] of log-probs, old log-probs and advantages, and epsilon."""

    log_probs: np.ndarray
    old_log_probs: np.ndarray
    advantages: np.ndarray
    clip_epsilon: float

    @property
    def ratio(self) -> np.ndarray:
        return np.exp(self.log_probs - self.old_log_probs)


def _log_ratio_near_kinks(eps: float, away: float) -> st.SearchStrategy[float]:
    """log q: anywhere in [-1.5, 1.5], or within 1e-2 of a kink log(1 +- eps) but >= ``away``."""
    kinks = [np.log1p(eps)] + ([np.log1p(-eps)] if eps < 1 else [])
    offsets = st.floats(away, 1e-2) if away > 0 else st.floats(0.0, 1e-2)
    near = st.tuples(st.sampled_from(kinks), offsets, st.sampled_from([-1.0, 1.0])).map(
        lambda t: float(t[0] + t[2] * t[1])
    )
    anywhere = st.floats(-1.5, 1.5)
    if away > 0:
        anywhere = anywhere.filter(lambda u: min(abs(u - k) for k in kinks) >= away)
    return st.one_of(anywhere, near)


@st.composite
def ppo_examples(draw: st.DrawFn, away: float = 0.0, nonzero_advantage: bool = False) -> PPOExample:
    """PPO inputs with 1..6 entries; ratios in the three regions and next to the kinks.

    ``away`` > 0 keeps every log-ratio at least that far from the kinks (the gradient leg).
    """
    n = draw(st.integers(1, 6))
    eps = draw(st.one_of(st.floats(0.01, 0.99), st.sampled_from([0.1, 0.2, 0.3])))
    log_ratios = np.array([draw(_log_ratio_near_kinks(eps, away)) for _ in range(n)])
    old = np.array([draw(st.floats(-30.0, 0.0)) for _ in range(n)])
    magnitude = st.floats(1e-3, 1e3) if nonzero_advantage else st.floats(0.0, 1e3)
    adv = np.array(
        [draw(magnitude) * draw(st.sampled_from([-1.0, 1.0])) for _ in range(n)], dtype=float
    )
    # x = o + u, so that x - o in float64 is u up to one rounding of o + u
    return PPOExample(old + log_ratios, old, adv, float(eps))


def _ppo_arguments(example: PPOExample) -> tuple:
    return (
        example.log_probs,
        example.old_log_probs,
        example.advantages,
        example.clip_epsilon,
        example.log_probs.size,
    )


def _ppo_scale(example: PPOExample) -> float:
    """Mean of (q + 1 + eps) |A|: the size of the terms that cancel in the loss."""
    q, adv, eps = example.ratio, np.abs(example.advantages), example.clip_epsilon
    return max(float(np.mean((q + 1 + eps) * adv)), 1e-300)


#: entry i's share of the loss, as the statement's right-hand side states it, lambdified
_ppo_share = lambdify(PPO_SYMBOLS, ppo_hinge_form(RATIO, A, epsilon))


def _summed(share: Callable[..., np.ndarray]) -> Callable[[PPOExample], float]:
    def total(example: PPOExample) -> float:
        values = np.broadcast_to(share(*_ppo_arguments(example)), example.advantages.shape)
        return float(np.sum(values))

    return total


def reference_ppo_loss(example: PPOExample) -> float:
    """The shipped :func:`rlmath.reference.ppo_clipped_surrogate_loss`."""
    return reference.ppo_clipped_surrogate_loss(
        example.log_probs,
        example.old_log_probs,
        example.advantages,
        clip_epsilon=example.clip_epsilon,
    )


_PPO_RHS_REASON = (
    "the sum over entries of the statement's right-hand side (lambdified), which the claim "
    "ties to the conclusion of each of the six cases; a case analysis has no single "
    "conclusion to lambdify, and the sum over entries is the definition of the mean loss"
)


def _ppo_loss_mutant(
    id_: str, description: str, wrong: Callable[[sp.Expr, sp.Expr, sp.Expr], sp.Expr], target: str
) -> Mutant:
    """A wrong share (in q, A, eps): symbolic in region ``target``, exact summed over entries."""
    region = next(g for g in PPO_LOSS_REGIONS if g.name == target)
    return Mutant(
        id_,
        description,
        symbolic=SymbolicMutation(
            f"ppo-loss-{target}", wrong(region.ratio, region.advantage, region.eps)
        ),
        exact=_summed(lambdify(PPO_SYMBOLS, wrong(RATIO, A, epsilon))),
    )


def _max_instead_of_min(q: sp.Expr, adv: sp.Expr, eps: sp.Expr) -> sp.Expr:
    return -sp.Max(q * adv, clip(q, 1 - eps, 1 + eps) * adv) / N


def _advantage_clipped(q: sp.Expr, adv: sp.Expr, eps: sp.Expr) -> sp.Expr:
    return -sp.Min(q * adv, q * clip(adv, 1 - eps, 1 + eps)) / N


def _ratio_inverted(q: sp.Expr, adv: sp.Expr, eps: sp.Expr) -> sp.Expr:
    inverse = 1 / q  # exp(old - new)
    return -sp.Min(inverse * adv, clip(inverse, 1 - eps, 1 + eps) * adv) / N


def _objective_not_loss(q: sp.Expr, adv: sp.Expr, eps: sp.Expr) -> sp.Expr:
    return sp.Min(q * adv, clip(q, 1 - eps, 1 + eps) * adv) / N


def _sum_not_mean(q: sp.Expr, adv: sp.Expr, eps: sp.Expr) -> sp.Expr:
    return -sp.Min(q * adv, clip(q, 1 - eps, 1 + eps) * adv)


# ----------------------------------------------------------------------------- PPO gradient
_ppo_gradient_entry = lambdify(PPO_SYMBOLS, ppo_gradient_form(RATIO, A, epsilon))


def _kink_distance(example: PPOExample) -> np.ndarray:
    """|log q - log(1 +- eps)| to the nearest kink, per entry (inf for no lower kink)."""
    u = example.log_probs - example.old_log_probs
    eps = example.clip_epsilon
    upper = np.abs(u - np.log1p(eps))
    lower = np.abs(u - np.log1p(-eps)) if eps < 1 else np.full_like(u, np.inf)
    return np.minimum(upper, lower)


def _ppo_evaluation_error(example: PPOExample) -> float:
    """Bound on the absolute rounding error of one evaluation of the reference loss.

    Each share is a few rounded operations on numbers of size (q + 1 + eps)|A| (exp of a
    rounded x - o: relative error <= 2u |x - o| + u; product; min); the mean of N shares adds
    (N - 1) u of the sum of their sizes (Higham 2002, eq. 4.4). With u = EPS / 2, a bound is
    (N + 4 + 2 max|x - o| + 2 max|o|) EPS times the mean size; the |o| term covers the
    rounding of x - o when x and o are large.
    """
    n = example.log_probs.size
    u = np.abs(example.log_probs - example.old_log_probs)
    growth = n + 4 + 2 * float(u.max()) + 2 * float(np.abs(example.old_log_probs).max())
    return growth * EPS * _ppo_scale(example)


def _ppo_steps(example: PPOExample) -> tuple[np.ndarray, np.ndarray]:
    """Per entry: the central-difference step h and the bound on that difference's error.

    On the step's interval the share of entry i is smooth (h <= half the distance to the
    nearest kink): 0 in x, or -q A / N with |d^3/dx^3| = q |A| / N times at most e^h.
    """
    delta = _ppo_evaluation_error(example)
    n = example.log_probs.size
    m3 = example.ratio * np.abs(example.advantages) / n * np.e  # e^h <= e for h <= 1
    steps, bounds = [], []
    for third, distance in zip(m3, _kink_distance(example), strict=True):
        h, bound = central_difference_step(float(third), delta)
        h = min(h, 0.5 * float(distance), 1.0)
        steps.append(h)
        bounds.append(third * h**2 / 6 + delta / h)
    return np.array(steps), np.array(bounds)


def central_differences_of_reference_loss(example: PPOExample) -> np.ndarray:
    """(L(x + h e_i) - L(x - h e_i)) / ((x_i + h) - (x_i - h)) with L the shipped loss."""
    steps, _ = _ppo_steps(example)
    out = np.empty(example.log_probs.size)
    for i, h in enumerate(steps):
        up, down = example.log_probs.copy(), example.log_probs.copy()
        up[i] += h
        down[i] -= h
        forward = reference_ppo_loss(
            PPOExample(up, example.old_log_probs, example.advantages, example.clip_epsilon)
        )
        backward = reference_ppo_loss(
            PPOExample(down, example.old_log_probs, example.advantages, example.clip_epsilon)
        )
        out[i] = (forward - backward) / (up[i] - down[i])
    return out


def reference_ppo_gradient_and_differences(example: PPOExample) -> np.ndarray:
    """[shipped gradient, central differences of the shipped loss], [2N]."""
    gradient = reference.ppo_clipped_surrogate_loss_gradient(
        example.log_probs,
        example.old_log_probs,
        example.advantages,
        clip_epsilon=example.clip_epsilon,
    )
    return np.concatenate([gradient, central_differences_of_reference_loss(example)])


def _twice(entry: Callable[..., np.ndarray]) -> Callable[[PPOExample], np.ndarray]:
    def both(example: PPOExample) -> np.ndarray:
        values = np.broadcast_to(entry(*_ppo_arguments(example)), example.advantages.shape)
        return np.concatenate([values, values]).astype(float)

    return both


def _ppo_gradient_scale(example: PPOExample) -> float:
    return max(float(np.max(example.ratio * np.abs(example.advantages))) / example.log_probs.size, 1e-300)


def _ppo_gradient_rtol(example: PPOExample) -> float:
    """The larger of the rounding of the shipped gradient (a few ulps of q|A|/N) and 4 times
    the central-difference bound, relative to the scale max q|A|/N."""
    _, bounds = _ppo_steps(example)
    return max(exact_rtol(n_terms=4), 4.0 * float(bounds.max()) / _ppo_gradient_scale(example))


def _ppo_gradient_mutant(
    id_: str, description: str, wrong: Callable[[sp.Expr, sp.Expr, sp.Expr], sp.Expr], target: str
) -> Mutant:
    region = next(g for g in PPO_SLOPE_REGIONS if g.name == target)
    return Mutant(
        id_,
        description,
        symbolic=SymbolicMutation(
            f"ppo-gradient-{target}", wrong(region.ratio, region.advantage, region.eps)
        ),
        exact=_twice(lambdify(PPO_SYMBOLS, wrong(RATIO, A, epsilon))),
    )


_PPO_GRADIENT_RHS_REASON = (
    "the statement's right-hand side (lambdified) entry by entry, which the claim ties to the "
    "conclusion of each of the six cases (a case analysis has no single conclusion to "
    "lambdify); it is compared twice: with the shipped gradient and with central differences "
    "of the shipped loss"
)

PPO_CLAIMS = (
    Claim(
        id="ppo-clipped-loss-reference",
        title="The reference PPO loss is the IS loss plus a hinge penalty",
        summary=(
            "rlmath.reference.ppo_clipped_surrogate_loss computes -mean(min(q A, clip(q) A)) "
            "with q = exp(log_probs - old_log_probs), which equals the importance-sampling "
            "loss -mean(q A) plus mean(max(0, (q - 1) A - eps |A|))."
        ),
        statement=Statement(
            ppo_loss_term(RATIO, A, epsilon),
            ppo_hinge_form(RATIO, A, epsilon),
            derivation="ppo-loss",
            where=r"\text{entry } i \text{ of } N;\ x, o, A \in \mathbb R,\ \epsilon > 0",
        ),
        assumptions=(
            "Case analysis: A >= 0 and A <= 0, each with q = exp(x - o) below, inside or "
            "above [1 - eps, 1 + eps] (closed regions, non-negative parameters; x is "
            "parametrised as o + log(q)); the regions are checked to cover every x, o, A, "
            "the kinks and A = 0 included.",
            "The loss is the mean over the N entries of the per-entry shares (the exact leg "
            "sums the shares).",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (7).",
        ),
        symbolic=SymbolicLeg((), cases=(ppo_loss_analysis,)),
        exact=ExactLeg(
            ppo_examples(),
            lhs=reference_ppo_loss,
            rhs=_summed(_ppo_share),
            rhs_reason=_PPO_RHS_REASON,
            rtol=lambda example: exact_rtol(n_terms=example.log_probs.size + 8),
            error_scale=_ppo_scale,
            description=(
                "the shipped ppo_clipped_surrogate_loss vs the sum of the lambdified hinge "
                "form (max(0, (q - 1) A - eps|A|) - q A) / N over 1..6 entries; ratios in all "
                "three regions, within 1e-2 of the kinks and at them, A = 0 included"
            ),
        ),
        mutants=(
            _ppo_loss_mutant(
                "max-instead-of-min", "max(qA, clip(q)A): the optimistic bound", _max_instead_of_min, "positive-above"
            ),
            _ppo_loss_mutant(
                "advantage-clipped",
                "min(qA, q clip(A, 1 - eps, 1 + eps)): the clip range applied to the advantage",
                _advantage_clipped,
                "positive-above",
            ),
            _ppo_loss_mutant(
                "ratio-inverted",
                "the ratio exp(old - new) instead of exp(new - old)",
                _ratio_inverted,
                "positive-inside",
            ),
            _ppo_loss_mutant(
                "objective-not-loss",
                "the missing minus sign: the clipped objective returned as the loss",
                _objective_not_loss,
                "positive-inside",
            ),
            _ppo_loss_mutant(
                "sum-not-mean", "the sum over entries instead of the mean", _sum_not_mean, "positive-inside"
            ),
        ),
    ),
    Claim(
        id="ppo-clipped-loss-gradient-reference",
        title="The reference PPO gradient is -qA/N where the unclipped branch is active, else 0",
        summary=(
            "rlmath.reference.ppo_clipped_surrogate_loss_gradient agrees with the derivative of "
            "the clipped loss (proved region by region) and with central differences of the "
            "shipped loss: an entry gets -q A / N unless its ratio has left the clip range in "
            "the direction its advantage favours."
        ),
        statement=Statement(
            sp.Subs(sp.Derivative(ppo_loss_term(sp.exp(_y - o), A, epsilon), _y), _y, x),
            ppo_gradient_form(RATIO, A, epsilon),
            derivation="ppo-gradient",
            where=r"A \ne 0,\ q = e^{x - o} \ne 1 \pm \epsilon,\ \epsilon > 0",
        ),
        assumptions=(
            "Off the kinks q = 1 +- eps (where the loss has no derivative; the reference returns "
            "the unclipped side there, its documented convention) and A != 0 (where both sides "
            "are 0): the exact leg keeps every log-ratio at least 1e-7 from log(1 +- eps), and "
            "as close as that to exercise the boundaries.",
            "Six derivations, one per sign of A and open region of q, checked to cover that "
            "domain.",
            "old_log_probs and advantages are constants.",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (7) and "
            "Fig. 1.",
        ),
        symbolic=SymbolicLeg((), cases=(ppo_slope_analysis,)),
        exact=ExactLeg(
            ppo_examples(away=1e-7, nonzero_advantage=True),
            lhs=reference_ppo_gradient_and_differences,
            rhs=_twice(_ppo_gradient_entry),
            rhs_reason=_PPO_GRADIENT_RHS_REASON,
            rtol=_ppo_gradient_rtol,
            error_scale=_ppo_gradient_scale,
            description=(
                "[shipped ppo_clipped_surrogate_loss_gradient, central differences of the "
                "shipped loss (step inside the smooth piece, error bounded by "
                "tolerances.central_difference_step)] vs the lambdified piecewise gradient, "
                "twice; ratios in all regions and 1e-7..1e-2 from the kinks"
            ),
        ),
        mutants=(
            _ppo_gradient_mutant(
                "nonzero-where-clipped",
                "-q A / N everywhere: the gradient of the unclipped IS loss, clipping ignored",
                lambda q, adv, eps: -q * adv / N,
                "positive-above",
            ),
            _ppo_gradient_mutant(
                "flat-on-both-sides",
                "0 whenever q leaves the range, whatever the sign of A",
                lambda q, adv, eps: sp.Piecewise(
                    (0, (q > 1 + eps) | (q < 1 - eps)), (-q * adv / N, True)
                ),
                "positive-below",
            ),
            _ppo_gradient_mutant(
                "ratio-inverted",
                "exp(old - new) as the ratio",
                lambda q, adv, eps: ppo_gradient_form(1 / q, adv, eps),
                "positive-inside",
            ),
            _ppo_gradient_mutant(
                "objective-gradient",
                "the gradient of the objective (the minus sign dropped)",
                lambda q, adv, eps: -ppo_gradient_form(q, adv, eps),
                "negative-inside",
            ),
            _ppo_gradient_mutant(
                "sum-not-mean",
                "the gradient of the summed loss (no 1/N)",
                lambda q, adv, eps: N * ppo_gradient_form(q, adv, eps),
                "negative-above",
            ),
        ),
    ),
)


# ============================================================================ DPO and Bradley-Terry
beta = sp.Symbol("beta", positive=True)
i = sp.Idx("i")
chosen = sp.IndexedBase("c", real=True)  # log pi_theta(y^w_i | x_i), summed over tokens
rejected = sp.IndexedBase("l", real=True)  # log pi_theta(y^l_i | x_i)
chosen_ref = sp.IndexedBase(r"c^{\mathrm{ref}}", real=True)
rejected_ref = sp.IndexedBase(r"l^{\mathrm{ref}}", real=True)
DPO_SYMBOLS = (chosen, rejected, chosen_ref, rejected_ref, beta, N)


def dpo_margin(c: sp.Expr, l_: sp.Expr, c_ref: sp.Expr, l_ref: sp.Expr) -> sp.Expr:
    r"""$z = (\log\pi_\theta(y^w) - \log\pi_\mathrm{ref}(y^w)) - (\log\pi_\theta(y^l) - \log\pi_\mathrm{ref}(y^l))$."""
    return (c - c_ref) - (l_ - l_ref)


def sigmoid(t: sp.Expr) -> sp.Expr:
    r"""$\sigma(t) = 1 / (1 + e^{-t})$."""
    return sp.Pow(1 + sp.exp(-t), -1)


def mean_over_pairs(term: sp.Expr) -> sp.Expr:
    r"""$\frac1N \sum_{i=0}^{N-1}$ term (unevaluated)."""
    return sp.Mul(sp.Pow(N, -1), IndexSum(term, (i, 0, N - 1)), evaluate=False)


def dpo_loss_derivation(
    margin: sp.Expr, name: str, strength: sp.Expr = beta, sign: int = -1
) -> Derivation:
    """-(1/N) sum log sigma(strength margin) = (1/N) sum log(1 + exp(-strength margin))."""
    return Derivation(
        name,
        (
            Step(
                sp.Mul(-1, mean_over_pairs(sp.log(sigmoid(strength * margin))), evaluate=False),
                "the loss: minus the mean Bradley-Terry log-likelihood of the preferred response",
            ),
            Step(
                mean_over_pairs(sp.log(1 + sp.exp(-strength * margin))),
                "-log(1 / y) = log y for y = 1 + exp(-t) > 0: the softplus log(1 + e^{-t})",
            ),
        ),
    )


_z = dpo_margin(chosen[i], rejected[i], chosen_ref[i], rejected_ref[i])
dpo_loss_steps = dpo_loss_derivation(_z, "dpo-loss")


@dataclass(frozen=True)
class PreferenceExample:
    """Four [N] arrays of summed log-probs (or chosen/rejected rewards) and beta."""

    chosen: np.ndarray
    rejected: np.ndarray
    chosen_ref: np.ndarray
    rejected_ref: np.ndarray
    beta: float

    @property
    def margin(self) -> np.ndarray:
        return (self.chosen - self.chosen_ref) - (self.rejected - self.rejected_ref)


@st.composite
def preference_examples(draw: st.DrawFn) -> PreferenceExample:
    """1..6 pairs; log-probs in [-60, 0]; beta in [0.01, 2]: |beta z| <= 240, far from overflow
    of exp(-beta z) (709), and equal chosen and rejected now and then (z = 0)."""
    n = draw(st.integers(1, 6))
    log_probs = st.floats(-60.0, 0.0)
    arrays = [np.array([draw(log_probs) for _ in range(n)]) for _ in range(4)]
    if draw(st.booleans()):
        arrays[1] = arrays[0] + np.array([draw(st.floats(-3.0, 3.0)) for _ in range(n)])
    strength = draw(st.one_of(st.floats(0.01, 2.0), st.sampled_from([0.1, 0.5, 1.0])))
    return PreferenceExample(*arrays, float(strength))


def _dpo_arguments(example: PreferenceExample) -> tuple:
    return (
        example.chosen,
        example.rejected,
        example.chosen_ref,
        example.rejected_ref,
        example.beta,
        example.chosen.size,
    )


def reference_dpo_loss(example: PreferenceExample) -> float:
    """The shipped :func:`rlmath.reference.dpo_loss`."""
    return reference.dpo_loss(
        example.chosen, example.rejected, example.chosen_ref, example.rejected_ref, beta=example.beta
    )


def _preference_scale(example: PreferenceExample, strength: float) -> float:
    """Mean of log 2 + |strength z| + strength (|c| + |l| + |c_ref| + |l_ref|): the size of the
    softplus terms and of the log-probs whose rounding enters z."""
    sizes = np.abs(example.chosen) + np.abs(example.rejected)
    sizes = sizes + np.abs(example.chosen_ref) + np.abs(example.rejected_ref)
    return float(np.mean(np.log(2.0) + strength * (np.abs(example.margin) + sizes)))


def _dpo_mutant(id_: str, description: str, wrong: sp.Expr) -> Mutant:
    return Mutant(id_, description, symbolic=SymbolicMutation("dpo-loss", wrong))


# ----------------------------------------------------------------------------- DPO gradient
c, l, c0, l0 = sp.symbols(r"c l c^{\mathrm{ref}} l^{\mathrm{ref}}", real=True)
_zz = beta * dpo_margin(c, l, c0, l0)
_dpo_share = sp.Mul(sp.Pow(N, -1), sp.log(1 + sp.exp(-_zz)), evaluate=False)
dpo_gradient_steps = Derivation(
    "dpo-gradient",
    (
        Step(
            sp.Matrix([sp.Derivative(_dpo_share, c), sp.Derivative(_dpo_share, l)]),
            "d/dc and d/dl of pair i's share (1/N) log(1 + exp(-beta z)) of the DPO loss",
        ),
        Step(
            sp.Matrix(
                [
                    -beta / N * sp.exp(-_zz) / (1 + sp.exp(-_zz)),
                    beta / N * sp.exp(-_zz) / (1 + sp.exp(-_zz)),
                ]
            ),
            "chain rule: d log(1 + e^{-t}) = -e^{-t} / (1 + e^{-t}) dt, dt/dc = beta = -dt/dl",
        ),
        Step(
            sp.Matrix([-beta / N / (1 + sp.exp(_zz)), beta / N / (1 + sp.exp(_zz))]),
            "multiply by e^{t} / e^{t}: the weight sigma(-beta z) = 1 / (1 + e^{beta z})",
        ),
    ),
)
DPO_GRADIENT_SYMBOLS = (c, l, c0, l0, beta, N)


def _dpo_evaluation_error(example: PreferenceExample) -> float:
    """Absolute rounding error of one evaluation of the shipped DPO loss: (N + 8) EPS times
    the mean size of the softplus terms and of beta times the log-probs (Higham 2002, eq. 4.4;
    softplus' <= 1 carries the rounding of z)."""
    return (example.chosen.size + 8) * EPS * _preference_scale(example, example.beta)


def _dpo_steps(example: PreferenceExample) -> tuple[float, float]:
    """Central-difference step and error bound: |d^3/dc^3 share| = beta^3 |sigma''| / N, and
    |sigma''| <= 1 / (6 sqrt 3) < 0.1."""
    third = example.beta**3 * 0.1 / example.chosen.size
    return central_difference_step(third, _dpo_evaluation_error(example))


def _central_difference(loss: Callable[[PreferenceExample], float], example: PreferenceExample, which: str) -> np.ndarray:
    h, _ = _dpo_steps(example)
    out = np.empty(example.chosen.size)
    for k in range(example.chosen.size):
        up, down = getattr(example, which).copy(), getattr(example, which).copy()
        up[k] += h
        down[k] -= h
        forward = loss(PreferenceExample(**{**example.__dict__, which: up}))
        backward = loss(PreferenceExample(**{**example.__dict__, which: down}))
        out[k] = (forward - backward) / (up[k] - down[k])
    return out


def reference_dpo_gradient_and_differences(example: PreferenceExample) -> np.ndarray:
    """[[d_chosen, central differences], [d_rejected, central differences]] as [2, 1, 2N]."""
    d_chosen, d_rejected = reference.dpo_loss_gradient(
        example.chosen, example.rejected, example.chosen_ref, example.rejected_ref, beta=example.beta
    )
    rows = [
        np.concatenate([d_chosen, _central_difference(reference_dpo_loss, example, "chosen")]),
        np.concatenate([d_rejected, _central_difference(reference_dpo_loss, example, "rejected")]),
    ]
    return np.array(rows)[:, np.newaxis, :]


def _dpo_gradient_arguments(example: PreferenceExample) -> tuple:
    """The pairs twice (once for the shipped gradient, once for the differences); N pairs."""
    twice = [np.concatenate([v, v]) for v in _dpo_arguments(example)[:4]]
    return (*twice, example.beta, example.chosen.size)


def _dpo_gradient_scale(example: PreferenceExample) -> float:
    return example.beta / example.chosen.size  # the largest |gradient| (sigma <= 1)


def _dpo_gradient_rtol(example: PreferenceExample) -> float:
    _, bound = _dpo_steps(example)
    return max(exact_rtol(n_terms=4), 4.0 * bound / _dpo_gradient_scale(example))


_PREFERENCE_NOTES = (
    "The right-hand side is the naive softplus log(1 + exp(-t)) lambdified; for |t| <= 240 "
    "(the examples) it has an absolute error of a few ulps of max(1, |t|), which the error "
    "scale covers; the shipped function uses logaddexp, so the two are computed differently."
)

DPO_CLAIMS = (
    Claim(
        id="dpo-loss-reference",
        title="The reference DPO loss is the mean softplus of minus beta times the log-ratio margin",
        summary=(
            "rlmath.reference.dpo_loss computes -mean log sigmoid(beta z) with z the margin of "
            "the policy-to-reference log-ratios, chosen minus rejected."
        ),
        statement=Statement(dpo_loss_steps.start, dpo_loss_steps.conclusion),
        assumptions=(
            "Log-probs are of whole responses (summed over tokens); reference log-probs are "
            "constants; beta > 0.",
        ),
        references=(
            "Rafailov, R. et al., *Direct Preference Optimization: Your Language Model is "
            "Secretly a Reward Model*, NeurIPS 2023, eq. (7).",
        ),
        symbolic=SymbolicLeg((dpo_loss_steps,)),
        exact=ExactLeg(
            preference_examples(),
            lhs=reference_dpo_loss,
            symbols=DPO_SYMBOLS,
            arguments=_dpo_arguments,
            rtol=lambda example: exact_rtol(n_terms=example.chosen.size + 8),
            error_scale=lambda example: _preference_scale(example, example.beta),
            description=(
                "the shipped dpo_loss (logaddexp) vs the lambdified mean of log(1 + exp(-beta z))"
            ),
        ),
        mutants=(
            _dpo_mutant(
                "beta-missing",
                "log sigmoid(z): the margin not multiplied by beta",
                mean_over_pairs(sp.log(1 + sp.exp(-_z))),
            ),
            _dpo_mutant(
                "chosen-rejected-swapped",
                "the margin rejected minus chosen",
                mean_over_pairs(sp.log(1 + sp.exp(beta * _z))),
            ),
            _dpo_mutant(
                "wrong-reference",
                "each policy log-prob compared with the other response's reference log-prob",
                mean_over_pairs(
                    sp.log(
                        1
                        + sp.exp(-beta * dpo_margin(chosen[i], rejected[i], rejected_ref[i], chosen_ref[i]))
                    )
                ),
            ),
            _dpo_mutant(
                "sum-not-mean",
                "the sum over pairs instead of the mean",
                IndexSum(sp.log(1 + sp.exp(-beta * _z)), (i, 0, N - 1)),
            ),
            _dpo_mutant(
                "log-likelihood-not-loss",
                "the missing minus sign: the mean log sigmoid(beta z) returned as the loss",
                -mean_over_pairs(sp.log(1 + sp.exp(-beta * _z))),
            ),
        ),
        notes=_PREFERENCE_NOTES,
    ),
    Claim(
        id="dpo-loss-gradient-reference",
        title="The reference DPO gradient is -+ beta sigma(-beta z) / N",
        summary=(
            "rlmath.reference.dpo_loss_gradient agrees with the derivative of the DPO loss "
            "(weight sigma(-beta z): pairs already ranked correctly get little gradient) and "
            "with central differences of the shipped dpo_loss."
        ),
        statement=Statement(dpo_gradient_steps.start, dpo_gradient_steps.conclusion),
        assumptions=(
            "Reference log-probs are constants; beta > 0; the derivative of the mean loss with "
            "respect to pair i's chosen and rejected policy log-probs.",
        ),
        references=(
            "Rafailov, R. et al., *Direct Preference Optimization*, NeurIPS 2023, Sec. 4 "
            "(\"What does the DPO update do?\").",
        ),
        symbolic=SymbolicLeg((dpo_gradient_steps,)),
        exact=ExactLeg(
            preference_examples(),
            lhs=reference_dpo_gradient_and_differences,
            symbols=DPO_GRADIENT_SYMBOLS,
            arguments=_dpo_gradient_arguments,
            rtol=_dpo_gradient_rtol,
            error_scale=_dpo_gradient_scale,
            description=(
                "[shipped dpo_loss_gradient, central differences of the shipped dpo_loss "
                "(step and error bound from tolerances.central_difference_step)] vs the "
                "lambdified gradient, for both responses of each pair"
            ),
        ),
        mutants=(
            Mutant(
                "weight-sigma-of-plus-z",
                "sigma(beta z) instead of sigma(-beta z): the weight of already-correct pairs",
                symbolic=SymbolicMutation(
                    "dpo-gradient",
                    sp.Matrix([-beta / N / (1 + sp.exp(-_zz)), beta / N / (1 + sp.exp(-_zz))]),
                ),
            ),
            Mutant(
                "beta-factor-missing",
                "the chain-rule factor beta dropped",
                symbolic=SymbolicMutation(
                    "dpo-gradient",
                    sp.Matrix([-1 / N / (1 + sp.exp(_zz)), 1 / N / (1 + sp.exp(_zz))]),
                ),
            ),
            Mutant(
                "same-sign-for-both",
                "the rejected response's gradient with the chosen one's sign",
                symbolic=SymbolicMutation(
                    "dpo-gradient",
                    sp.Matrix([-beta / N / (1 + sp.exp(_zz)), -beta / N / (1 + sp.exp(_zz))]),
                ),
            ),
            Mutant(
                "sum-not-mean",
                "the gradient of the summed loss (no 1/N)",
                symbolic=SymbolicMutation(
                    "dpo-gradient",
                    sp.Matrix([-beta / (1 + sp.exp(_zz)), beta / (1 + sp.exp(_zz))]),
                ),
            ),
        ),
    ),
)

# ----------------------------------------------------------------------------- Bradley-Terry
chosen_reward = sp.IndexedBase("r^w", real=True)
rejected_reward = sp.IndexedBase("r^l", real=True)
_bt_margin = chosen_reward[i] - rejected_reward[i]
bradley_terry_steps = dpo_loss_derivation(_bt_margin, "bradley-terry", strength=sp.Integer(1))


@st.composite
def reward_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """1..6 pairs of rewards in [-300, 300] (|margin| <= 600 < 709: exp does not overflow)."""
    n = draw(st.integers(1, 6))
    rewards = st.one_of(st.floats(-300.0, 300.0), st.floats(-3.0, 3.0))
    return np.array([draw(rewards) for _ in range(n)]), np.array([draw(rewards) for _ in range(n)])


def _bt_scale(pair: tuple[np.ndarray, np.ndarray]) -> float:
    chosen_rewards, rejected_rewards = pair
    return float(np.mean(np.log(2.0) + np.abs(chosen_rewards) + np.abs(rejected_rewards)))


BRADLEY_TERRY_CLAIMS = (
    Claim(
        id="bradley-terry-reference",
        title="The reference Bradley-Terry loss is the mean softplus of minus the reward margin",
        summary=(
            "rlmath.reference.bradley_terry_loss computes -mean log sigmoid(r_chosen - "
            "r_rejected), the negative log-likelihood of the preferences under Bradley-Terry."
        ),
        statement=Statement(bradley_terry_steps.start, bradley_terry_steps.conclusion),
        assumptions=("Rewards are real numbers, one chosen and one rejected per pair.",),
        references=(
            "Bradley, R. A. and Terry, M. E., *Rank Analysis of Incomplete Block Designs*, "
            "Biometrika 39, 1952; Ouyang, L. et al., *Training language models to follow "
            "instructions with human feedback*, NeurIPS 2022, eq. (1).",
        ),
        symbolic=SymbolicLeg((bradley_terry_steps,)),
        exact=ExactLeg(
            reward_pairs(),
            lhs=lambda pair: reference.bradley_terry_loss(*pair),
            symbols=(chosen_reward, rejected_reward, N),
            arguments=lambda pair: (pair[0], pair[1], pair[0].size),
            rtol=lambda pair: exact_rtol(n_terms=pair[0].size + 8),
            error_scale=_bt_scale,
            description=(
                "the shipped bradley_terry_loss (logaddexp) vs the lambdified mean of "
                "log(1 + exp(-(r_chosen - r_rejected)))"
            ),
        ),
        mutants=(
            Mutant(
                "chosen-rejected-swapped",
                "the margin rejected minus chosen",
                symbolic=SymbolicMutation(
                    "bradley-terry", mean_over_pairs(sp.log(1 + sp.exp(_bt_margin)))
                ),
            ),
            Mutant(
                "sum-not-mean",
                "the sum over pairs instead of the mean",
                symbolic=SymbolicMutation(
                    "bradley-terry", IndexSum(sp.log(1 + sp.exp(-_bt_margin)), (i, 0, N - 1))
                ),
            ),
            Mutant(
                "hinge-not-softplus",
                "max(0, -margin): the stable softplus max(0, -m) + log(1 + e^{-|m|}) with its "
                "second term dropped",
                symbolic=SymbolicMutation(
                    "bradley-terry", mean_over_pairs(sp.Max(0, -_bt_margin))
                ),
            ),
        ),
        notes=_PREFERENCE_NOTES,
    ),
)

CLAIMS = PPO_CLAIMS + DPO_CLAIMS + BRADLEY_TERRY_CLAIMS
