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

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import reference
from rlmath.claims import (
    lazy_lambdify,
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
from rlmath.named_functions import Named
from rlmath.symbolic import IndexSum
from rlmath.tolerances import EPS, central_difference_step, exact_rtol



# ============================================================================ PPO: symbols
x = sp.Symbol("x", real=True)  # log pi_theta(a | s), the variable of the gradient
_y = sp.Symbol("y", real=True)  # the variable of d/dy in the statement (evaluated at x)
_z = sp.Symbol("z", real=True)  # the ratio as the variable of d/dz (evaluated at q)
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
    half = Named(r"\epsilon", (sigma + tau) / 2)  # epsilon inside, printed by name
    # below: q = 1 - eps - rho, a ratio (q > 0) for rho < 1 - eps; the region is empty for
    # eps >= 1. The parametrisation is formal beyond that (no log is evaluated there: the
    # gradient derivation moves to d/dq by the chain rule before the region's rule is applied)
    up, down, mid = 1 + epsilon + rho, 1 - epsilon - rho, 1 - half + sigma
    rows = []
    for sgn, label, adv in ((1, "positive", a), (-1, "negative", -a)):
        cond = positive if sgn > 0 else negative
        # above: the clipped term (1 + eps) A is the smaller for A >= 0, q A for A <= 0
        rows.append(
            PPORegion(
                f"{label}-above",
                f"A {'>=' if sgn > 0 else '<='} 0, q = 1 + eps + rho: "
                + (
                    "the clipped term (1 + eps) A is the smaller"
                    if sgn > 0
                    else "q A <= (1 + eps) A"
                ),
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
                + (
                    "q A <= (1 - eps) A"
                    if sgn > 0
                    else "the clipped term (1 - eps) A is the smaller"
                ),
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
                sp.Mul(
                    q,
                    sp.Subs(sp.Derivative(ppo_loss_term(_z, adv, eps), _z), _z, q),
                    evaluate=False,
                ),
                "chain rule: q = exp(x - o), dq/dx = q",
            ),
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
_ppo_share = lazy_lambdify(PPO_SYMBOLS, ppo_hinge_form(RATIO, A, epsilon))


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
        exact=_summed(lazy_lambdify(PPO_SYMBOLS, wrong(RATIO, A, epsilon))),
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
_ppo_gradient_entry = lazy_lambdify(PPO_SYMBOLS, ppo_gradient_form(RATIO, A, epsilon))


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
    return max(
        float(np.max(example.ratio * np.abs(example.advantages))) / example.log_probs.size, 1e-300
    )


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
        exact=_twice(lazy_lambdify(PPO_SYMBOLS, wrong(RATIO, A, epsilon))),
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
                "max-instead-of-min",
                "max(qA, clip(q)A): the optimistic bound",
                _max_instead_of_min,
                "positive-above",
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
                "sum-not-mean",
                "the sum over entries instead of the mean",
                _sum_not_mean,
                "positive-inside",
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
            "are 0): the exact leg keeps every log-ratio at least 1e-5 from log(1 +- eps), and "
            "as close as that to exercise the boundaries (closer, the central differences' "
            "step must shrink below 1e-5 and their rounding bound exceeds "
            "tolerances.MAX_EXACT_RTOL for old log-probs near -30: seed 120 had 7.9e-4 at "
            "1e-7).",
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
            ppo_examples(away=1e-5, nonzero_advantage=True),
            lhs=reference_ppo_gradient_and_differences,
            rhs=_twice(_ppo_gradient_entry),
            rhs_reason=_PPO_GRADIENT_RHS_REASON,
            rtol=_ppo_gradient_rtol,
            error_scale=_ppo_gradient_scale,
            description=(
                "[shipped ppo_clipped_surrogate_loss_gradient, central differences of the "
                "shipped loss (step inside the smooth piece, error bounded by "
                "tolerances.central_difference_step)] vs the lambdified piecewise gradient, "
                "twice; ratios in all regions and 1e-5..1e-2 from the kinks"
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
chosen_ref = sp.IndexedBase("c_ref", real=True)  # plain names: lambdify need not dummify
rejected_ref = sp.IndexedBase("l_ref", real=True)
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
        example.chosen,
        example.rejected,
        example.chosen_ref,
        example.rejected_ref,
        beta=example.beta,
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
c, rej, c0, l0 = sp.symbols("c l c_ref l_ref", real=True)
_zz = beta * dpo_margin(c, rej, c0, l0)
_dpo_share = sp.Mul(sp.Pow(N, -1), sp.log(1 + sp.exp(-_zz)), evaluate=False)
dpo_gradient_steps = Derivation(
    "dpo-gradient",
    (
        Step(
            sp.Matrix([sp.Derivative(_dpo_share, c), sp.Derivative(_dpo_share, rej)]),
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
DPO_GRADIENT_SYMBOLS = (c, rej, c0, l0, beta, N)


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


def _central_difference(
    loss: Callable[[PreferenceExample], float], example: PreferenceExample, which: str
) -> np.ndarray:
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
        example.chosen,
        example.rejected,
        example.chosen_ref,
        example.rejected_ref,
        beta=example.beta,
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
                        + sp.exp(
                            -beta
                            * dpo_margin(chosen[i], rejected[i], rejected_ref[i], chosen_ref[i])
                        )
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
            '("What does the DPO update do?").',
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
chosen_reward = sp.IndexedBase("r_w", real=True)
rejected_reward = sp.IndexedBase("r_l", real=True)
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
                symbolic=SymbolicMutation("bradley-terry", mean_over_pairs(sp.Max(0, -_bt_margin))),
            ),
        ),
        notes=_PREFERENCE_NOTES,
    ),
)


# ============================================================================ advantage normalisation
n = sp.Symbol("n", integer=True, positive=True)  # samples in the group (or the batch)
m = sp.Symbol("m", positive=True)  # the divisor n - ddof of the variance
eps_norm = sp.Symbol("epsilon", nonnegative=True)
normaliser = sp.Symbol("c", positive=True)  # s + epsilon, any positive constant
j = sp.Idx("j")
rewards = sp.IndexedBase("r", real=True)
deviation = sp.IndexedBase("d", real=True)  # d_i = r_i - mean(r)
_mean = IndexSum(rewards[j], (j, 0, n - 1)) / n
_squares = IndexSum(deviation[j] ** 2, (j, 0, n - 1))
_std = sp.sqrt(_squares / m)  # s, with divisor m = n - ddof

zero_mean_steps = Derivation(
    "zero-mean",
    (
        Step(
            IndexSum((rewards[i] - _mean) / normaliser, (i, 0, n - 1)) / n,
            "the mean of A_i = (r_i - mean r) / c, c = s + epsilon > 0",
        ),
        Step(
            IndexSum(rewards[i] - _mean, (i, 0, n - 1)) / (n * normaliser),
            "c does not depend on i",
        ),
        Step(
            (IndexSum(rewards[i], (i, 0, n - 1)) - sp.Sum(_mean, (i, 0, n - 1))) / (n * normaliser),
            "linearity of the sum",
        ),
        Step(
            (IndexSum(rewards[i], (i, 0, n - 1)) - IndexSum(rewards[j], (j, 0, n - 1)))
            / (n * normaliser),
            "n copies of the mean: n mean r = sum_j r_j",
        ),
        Step(sp.Integer(0), "rename the summation index"),
    ),
)
variance_steps = Derivation(
    "unit-variance",
    (
        Step(
            IndexSum((deviation[i] / (_std + eps_norm)) ** 2, (i, 0, n - 1)) / m,
            "the variance (divisor m = n - ddof) of A_i = d_i / (s + epsilon), whose mean is 0",
        ),
        Step(
            IndexSum(deviation[i] ** 2, (i, 0, n - 1)) / (m * (_std + eps_norm) ** 2),
            "s + epsilon does not depend on i",
        ),
        Step(
            sp.Pow(_std, 2, evaluate=False) / (_std + eps_norm) ** 2,
            "s^2 = sum_j d_j^2 / m (the definition of s, the same divisor)",
        ),
    ),
)


@dataclass(frozen=True)
class NormalizationExample:
    """Rewards [G, n] (one row per group; the whole array is one group for the batch
    normaliser), epsilon and ddof."""

    rewards: np.ndarray
    epsilon: float
    ddof: int


REWARD_FLOATS = st.floats(-10.0, 10.0, allow_subnormal=False)


@st.composite
def normalization_examples(
    draw: st.DrawFn, max_groups: int = 4, batch: bool = False
) -> NormalizationExample:
    """1..max_groups groups of 1..6 rewards in [-10, 10] (constant groups, including groups of
    one, now and then), epsilon 0 or in [1e-8, 1], ddof 0 or 1. Non-constant groups have
    max |r - mean| >= 1e-6 max |r| (condition number <= 1e6). Rewards are normal floats: a
    subnormal reward (below 2.2e-308) carries fewer than 53 significant bits, so no float64
    tolerance applies to its normalisation."""
    groups = draw(st.integers(1, max_groups))
    size = draw(st.integers(1, 6))
    rows = []
    for _ in range(groups):
        if draw(st.integers(0, 5)) == 0:
            rows.append(np.full(size, draw(REWARD_FLOATS)))
        else:
            row = np.array([draw(REWARD_FLOATS) for _ in range(size)])
            spread = float(np.max(np.abs(row - row.mean())))
            if spread < 1e-6 * float(np.max(np.abs(row))):
                # ill-conditioned (r - mean loses more than 6 digits): a constant row instead
                row = np.full(size, row[0])
            rows.append(row)
    epsilon_value = draw(st.one_of(st.just(0.0), st.floats(1e-8, 1.0)))
    array = np.array(rows)
    whole = float(np.max(np.abs(array - array.mean())))
    if batch and whole < 1e-6 * float(np.max(np.abs(array))):
        array = np.full(array.shape, array.flat[0])  # the batch is one group: same rule
    return NormalizationExample(array, float(epsilon_value), draw(st.sampled_from([0, 1])))


_variance_conclusion = lazy_lambdify((deviation, m, eps_norm, n), variance_steps.conclusion)


def _group_moments_by_conclusion(
    row: np.ndarray,
    epsilon_value: float,
    ddof: int,
    conclusion: Callable[..., float] = _variance_conclusion,
) -> tuple[float, float]:
    """(mean, variance with divisor n - ddof) of the normalised row, as the derivations
    conclude: 0 and s^2 / (s + epsilon)^2, with d = r - mean(r) from the statistics module.
    A constant row (s = 0) is normalised to 0 by the documented convention: moments (0, 0)."""
    size = row.size
    if size - ddof <= 0 or np.all(row == row[0]):
        return 0.0, 0.0
    centre = statistics.fmean(row.tolist())
    d = np.array([value - centre for value in row])
    # s^2 / (s + eps)^2 is homogeneous of degree 0 in (d, eps): evaluate it on d and eps divided
    # by the power of two nearest max |d| (exact), so that squares of tiny deviations (1e-311)
    # do not underflow to 0
    _, exponent = np.frexp(np.max(np.abs(d)))
    scale = float(np.ldexp(1.0, int(exponent)))
    return 0.0, float(conclusion(d / scale, size - ddof, epsilon_value / scale, size))


def _row_by_loop(row: np.ndarray, epsilon_value: float, ddof: int) -> list[float]:
    """(r_i - mean) / (std + epsilon) by the statistics module, entry by entry; 0 for a
    constant row (the documented convention)."""
    values = row.tolist()
    if len(values) - ddof <= 0 or all(v == values[0] for v in values):
        return [0.0] * len(values)
    centre = statistics.fmean(values)
    spread = statistics.pstdev(values) if ddof == 0 else statistics.stdev(values)
    return [(v - centre) / (spread + epsilon_value) for v in values]


def _moments_of(row: np.ndarray, ddof: int) -> tuple[float, float]:
    """(mean, sum of squares / (n - ddof)) of an output row, by an explicit loop."""
    values = row.tolist()
    centre = statistics.fmean(values)
    divisor = len(values) - ddof
    return centre, (sum(v * v for v in values) / divisor if divisor > 0 else 0.0)


def _comparison(output: np.ndarray, rows: np.ndarray, ddof: int) -> np.ndarray:
    """[entries of output, per-row mean and variance of output]."""
    moments = [value for row in output for value in _moments_of(row, ddof)]
    return np.concatenate([output.ravel(), np.array(moments)])


def _expected(
    rows: np.ndarray,
    epsilon_value: float,
    ddof: int,
    entry_ddof: int | None = None,
    conclusion: Callable[..., float] = _variance_conclusion,
    subtract_mean: bool = True,
    use_epsilon: bool = True,
) -> np.ndarray:
    entry_ddof = ddof if entry_ddof is None else entry_ddof
    eps_used = epsilon_value if use_epsilon else 0.0
    entries = []
    moments = []
    for row in rows:
        normalised = _row_by_loop(row, eps_used, entry_ddof)
        if not subtract_mean and not np.all(row == row[0]):
            centre = statistics.fmean(row.tolist())
            normalised = [
                value + centre / (row.std(ddof=entry_ddof) + eps_used) for value in normalised
            ]
        entries += normalised
        mean_value, variance = _group_moments_by_conclusion(row, epsilon_value, ddof, conclusion)
        if not subtract_mean and not np.all(row == row[0]):
            mean_value = statistics.fmean(row.tolist()) / (row.std(ddof=entry_ddof) + eps_used)
        moments += [mean_value, variance]
    return np.concatenate([np.array(entries), np.array(moments)])


def _rows(example: NormalizationExample, batch: bool) -> np.ndarray:
    return example.rewards.reshape(1, -1) if batch else example.rewards


def _normalization_rtol(example: NormalizationExample, batch: bool) -> float:
    """exact_rtol with n terms and the conditioning of the deviations: max|r| / max|r - mean|
    (the digits lost forming r - mean), the worst group (<= 1e6 by the examples' rule)."""
    kappa = 1.0
    for row in _rows(example, batch):
        if np.all(row == row[0]):
            continue  # normalised to 0 by convention: nothing is computed
        spread = float(np.max(np.abs(row - row.mean())))
        if spread > 0:
            kappa = max(kappa, float(np.max(np.abs(row))) / spread)
    return exact_rtol(condition_number=kappa, n_terms=example.rewards.size + 8)


def _normalization_scale(example: NormalizationExample) -> float:
    """The size of the entries and moments: |A_i| <= sqrt(n), variances <= n."""
    return float(max(1.0, example.rewards.size))


def normalization_claim(id: str, batch: bool) -> Claim:  # noqa: A002 (id= is written literally)
    """The claim for group_normalized_advantages (batch=False) or normalized_advantages."""
    name = "normalized_advantages" if batch else "group_normalized_advantages"
    function = reference.normalized_advantages if batch else reference.group_normalized_advantages

    def lhs(example: NormalizationExample) -> np.ndarray:
        output = np.asarray(function(example.rewards, epsilon=example.epsilon, ddof=example.ddof))
        return _comparison(
            output.reshape(_rows(example, batch).shape), _rows(example, batch), example.ddof
        )

    def rhs(example: NormalizationExample, **wrong: object) -> np.ndarray:
        return _expected(_rows(example, batch), example.epsilon, example.ddof, **wrong)  # type: ignore[arg-type]

    wrong_std = sp.sqrt(_squares / (m + 1))
    wrong_divisor = lazy_lambdify(
        (deviation, m, eps_norm, n),
        _squares / m / (sp.sqrt(_squares / (m + 1)) + eps_norm) ** 2,
    )
    other_divisor = lazy_lambdify(
        (deviation, m, eps_norm, n), _squares / m / (sp.sqrt(_squares / (m - 1)) + eps_norm) ** 2
    )

    def ddof_mismatch(example: NormalizationExample) -> np.ndarray:
        # std with the other ddof; the variance, with the claimed divisor, is then
        # (S / m) / (s' + eps)^2 with s' = sqrt(S / (n - other)) (m - 1 for ddof 0, m + 1 for 1)
        conclusion = other_divisor if example.ddof == 0 else wrong_divisor
        return rhs(example, entry_ddof=1 - example.ddof, conclusion=conclusion)

    mutants = [
        Mutant(
            "ddof-mismatch",
            "the std taken with the other ddof than the one asked for (NumPy's 0 for "
            "PyTorch's 1 or back)",
            symbolic=SymbolicMutation("unit-variance", _squares / m / (wrong_std + eps_norm) ** 2),
            exact=ddof_mismatch,
        ),
        Mutant(
            "epsilon-dropped",
            "(r - mean) / std: epsilon ignored, so the variance is 1 even for epsilon > 0",
            symbolic=SymbolicMutation("unit-variance", sp.Integer(1)),
            exact=lambda example: rhs(
                example, use_epsilon=False, conclusion=lambda d, mm, e, nn: 1.0
            ),
        ),
        Mutant(
            "mean-not-subtracted",
            "r / (std + epsilon): the mean not subtracted, so the mean is mean(r) / c",
            symbolic=SymbolicMutation("zero-mean", _mean / normaliser),
            exact=lambda example: rhs(example, subtract_mean=False),
        ),
    ]
    if not batch:

        def batch_statistics(example: NormalizationExample) -> np.ndarray:
            flat = example.rewards.reshape(1, -1)
            whole = _expected(flat, example.epsilon, example.ddof)
            entries = whole[: flat.size]
            moments = _expected(example.rewards, example.epsilon, example.ddof)[flat.size :]
            return np.concatenate([entries, moments])

        mutants.append(
            Mutant(
                "batch-not-group-statistics",
                "the mean and std of the whole batch instead of each prompt's group",
                exact=batch_statistics,
            )
        )
    where = "the whole batch (every entry, every axis)" if batch else "each group (row)"
    return Claim(
        id=id,
        title=(
            "The reference batch-normalised advantages have mean 0 and variance s^2/(s+eps)^2"
            if batch
            else "The reference GRPO advantages have mean 0 and variance s^2/(s+eps)^2 per group"
        ),
        summary=(
            f"rlmath.reference.{name} returns (r - mean) / (std + epsilon) over {where}, with "
            "the std of the ddof asked for: mean 0 and, for epsilon = 0, variance 1 with the "
            "same divisor n - ddof; constant groups give 0."
        ),
        statement=Statement(variance_steps.start, variance_steps.conclusion),
        assumptions=(
            "d_i = r_i - mean(r) and s = sqrt(sum_j d_j^2 / m) with m = n - ddof > 0; the "
            "variance of the output is taken with the same divisor m (for epsilon = 0 it is "
            "s^2 / s^2 = 1).",
            "Zero mean (derivation zero-mean) holds for any positive normaliser c = s + epsilon.",
            "Groups whose rewards are all equal (s = 0, groups of one included) are normalised "
            "to 0, the documented convention: the exact leg expects entries 0 and moments 0 "
            "there.",
        ),
        references=(
            (
                "Andrychowicz, M. et al., *What Matters in On-Policy Reinforcement Learning?*, "
                "ICLR 2021, Sec. 3.5."
            )
            if batch
            else (
                "Shao, Z. et al., *DeepSeekMath: Pushing the Limits of Mathematical Reasoning "
                "in Open Language Models*, arXiv:2402.03300, 2024, Sec. 4.1.2."
            ),
        ),
        symbolic=SymbolicLeg((variance_steps, zero_mean_steps)),
        exact=ExactLeg(
            normalization_examples(max_groups=3 if batch else 4, batch=batch),
            lhs=lhs,
            rhs=rhs,
            rhs_reason=(
                f"per {'batch' if batch else 'group'}: the entries (r - mean) / (std + epsilon) "
                "by an explicit loop with the statistics module (fmean, pstdev / stdev), and "
                "the moments as the derivations conclude (0 and the lambdified s^2/(s+eps)^2 "
                "with d = r - fmean(r)); the lhs is the shipped function's output, its "
                "entries and its per-group mean and variance by an explicit loop"
            ),
            rtol=lambda example: _normalization_rtol(example, batch),
            error_scale=_normalization_scale,
            witnesses=(NormalizationExample(np.array([[1.0, 2.0, 3.0, 4.0]]), 0.5, 0),),
            witness_reason=(
                "rewards 1, 2, 3, 4 with epsilon = 0.5 (std 1.118): the variance of the "
                "normalised entries is 0.476, far from the 1 that dropping epsilon gives"
            ),
            description=(
                f"the shipped {name} (entries, and their mean and variance per "
                f"{'batch' if batch else 'group'}) vs the statistics module and the derivations' "
                "conclusions; epsilon 0 and positive, ddof 0 and 1, constant groups included"
            ),
        ),
        mutants=tuple(mutants),
    )


NORMALIZATION_CLAIMS = (
    normalization_claim(id="group-normalized-advantages-reference", batch=False),
    normalization_claim(id="normalized-advantages-reference", batch=True),
)


# ============================================================================ clipped value loss
V = sp.Symbol("V", real=True)  # V_phi(s_i), the variable of the gradient
V_old = sp.Symbol("V_old", real=True)  # a plain name: lambdify need not dummify it
R = sp.Symbol("R", real=True)  # the return (regression target)
value_eps = sp.Symbol("epsilon", positive=True)  # any clip range, 1 and above included
VALUE_SYMBOLS = (V, V_old, R, value_eps, N)


def clipped_value(value: sp.Expr, old: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$V^\mathrm{clip} = V^\mathrm{old} + \operatorname{clip}(V - V^\mathrm{old}, -\epsilon, \epsilon)$."""
    return old + clip(value - old, -eps, eps)


def value_loss_term(
    value: sp.Expr, old: sp.Expr, target: sp.Expr, eps: sp.Expr, *, clip_name: str | None = None
) -> sp.Expr:
    r"""$\frac{1}{2N} \max((V - R)^2, (V^\mathrm{clip} - R)^2)$: entry i's share of the loss.

    With ``clip_name`` the clipped value is kept whole and printed by that name (its
    definition is listed on the page; ``doit`` gives it back)."""
    clipped = clipped_value(value, old, eps)
    if clip_name is not None:
        clipped = Named(clip_name, clipped)
    worst = sp.Max((value - target) ** 2, (clipped - target) ** 2, evaluate=False)
    return sp.Mul(sp.Rational(1, 2), sp.Pow(N, -1), worst, evaluate=False)


def excess(value: sp.Expr, old: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$s = V - V^\mathrm{clip} = \max(0, d - \epsilon) - \max(0, -d - \epsilon)$, $d = V - V^\mathrm{old}$."""
    d = value - old
    return sp.Max(0, d - eps, evaluate=False) - sp.Max(0, -d - eps, evaluate=False)


def value_closed_form(value: sp.Expr, old: sp.Expr, target: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$\frac{1}{2N}(|e - s/2| + |s|/2)^2$ with $e = V - R$: the larger error is the midpoint's
    distance plus half the clipped-off excess."""
    e, s_ = value - target, excess(value, old, eps)
    return sp.Mul(
        sp.Rational(1, 2), sp.Pow(N, -1), (sp.Abs(e - s_ / 2) + sp.Abs(s_) / 2) ** 2, evaluate=False
    )


def value_gradient_form(value: sp.Expr, old: sp.Expr, target: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$(V - R)/N$, or $0$ where the clipped error is the larger ($s (2e - s) < 0$); the
    excess $s$ is printed by name (its definition is listed on the page)."""
    e, s_ = value - target, Named("s", excess(value, old, eps))
    return sp.Piecewise((0, s_ * (2 * e - s_) < 0), (e / N, True), evaluate=False)


@dataclass(frozen=True)
class ValueRegion:
    """One of five regions of (V - V_old, V - R): V and R parametrised in V_old."""

    name: str
    where: str
    region: sp.Basic
    value: sp.Expr
    target: sp.Expr
    eps: sp.Expr
    picked: sp.Expr
    slope: sp.Expr

    @property
    def parametrisation(self) -> dict[sp.Symbol, sp.Expr]:
        return {V: self.value, R: self.target, value_eps: self.eps}


def value_regions(closed: bool) -> tuple[ValueRegion, ...]:
    """Inside the clip range; above or below it with the unclipped or the clipped error larger."""
    sign = {"nonnegative": True} if closed else {"positive": True}
    rho, mu, sigma, tau = (sp.Symbol(name, **sign) for name in ("rho", "mu", "sigma", "tau"))
    ge, le = (sp.GreaterThan, sp.LessThan) if closed else (sp.StrictGreaterThan, sp.StrictLessThan)
    d, e = V - V_old, V - R
    above, below = ge(d, value_eps), le(d, -value_eps)
    inside = ge(d, -value_eps) & le(d, value_eps)
    # e - s/2 with s = d - eps above, d + eps below: its sign says which error is larger
    mid_above, mid_below = e - (d - value_eps) / 2, e - (d + value_eps) / 2
    half = (sigma + tau) / 2
    free_target = R  # inside, R is any real number
    up, down = V_old + value_eps + rho, V_old - value_eps - rho
    width = (rho / 2 + mu) ** 2 / (2 * N)
    return (
        ValueRegion(
            "inside",
            "|V - V_old| <= eps: V_clip = V, both errors are (V - R)^2",
            inside,
            V_old + (sigma - tau) / 2,
            free_target,
            half,
            (V_old + (sigma - tau) / 2 - R) ** 2 / (2 * N),
            (V_old + (sigma - tau) / 2 - R) / N,
        ),
        ValueRegion(
            "above-unclipped",
            "V = V_old + eps + rho, V - R = rho/2 + mu: V_clip = V - rho, (V - R)^2 is larger",
            above & ge(mid_above, 0),
            up,
            up - rho / 2 - mu,
            value_eps,
            width,
            (rho / 2 + mu) / N,
        ),
        ValueRegion(
            "above-clipped",
            "V = V_old + eps + rho, V - R = rho/2 - mu: (V_clip - R)^2 is larger, V_clip const",
            above & le(mid_above, 0),
            up,
            up - rho / 2 + mu,
            value_eps,
            width,
            sp.Integer(0),
        ),
        ValueRegion(
            "below-unclipped",
            "V = V_old - eps - rho, V - R = -rho/2 - mu: V_clip = V + rho, (V - R)^2 is larger",
            below & le(mid_below, 0),
            down,
            down + rho / 2 + mu,
            value_eps,
            width,
            -(rho / 2 + mu) / N,
        ),
        ValueRegion(
            "below-clipped",
            "V = V_old - eps - rho, V - R = -rho/2 + mu: (V_clip - R)^2 is larger, V_clip const",
            below & ge(mid_below, 0),
            down,
            down + rho / 2 - mu,
            value_eps,
            width,
            sp.Integer(0),
        ),
    )


VALUE_LOSS_REGIONS = value_regions(closed=True)
VALUE_SLOPE_REGIONS = value_regions(closed=False)


def value_loss_derivation(region: ValueRegion) -> Derivation:
    v, t, eps = region.value, region.target, region.eps
    return Derivation(
        f"value-loss-{region.name}",
        (
            Step(value_loss_term(v, V_old, t, eps), "entry i's share of the clipped value loss"),
            Step(region.picked, f"{region.where}; evaluate the clip and the max"),
            Step(
                value_closed_form(v, V_old, t, eps),
                "the larger of the two errors is |e - s/2| + |s|/2 with s = V - V_clip",
            ),
        ),
        statement=rf"\text{{value loss term}} \quad ({region.name})",
    )


#: The clipped value as a function of the variable y of d/dy, printed by name on the pages.
VALUE_CLIP_NAME = r"V^{\mathrm{clip}}(y)"


def value_slope_derivation(region: ValueRegion) -> Derivation:
    t, eps = region.target, region.eps
    term = value_loss_term(_y, V_old, t, eps, clip_name=VALUE_CLIP_NAME)
    return Derivation(
        f"value-gradient-{region.name}",
        (
            Step(sp.Subs(sp.Derivative(term, _y), _y, region.value), "d/dV of entry i's share"),
            Step(
                region.slope,
                f"{region.where.replace('>=', '>').replace('<=', '<')}; on a neighbourhood of V "
                "the max takes one branch: (V - R)^2 / 2N, or the constant (V_clip - R)^2 / 2N",
            ),
        ),
        statement=rf"\partial_V \text{{value loss term}} \quad ({region.name})",
    )


value_loss_analysis = CaseAnalysis(
    "value-loss",
    sp.true,
    tuple(Case(g.region, value_loss_derivation(g), g.parametrisation) for g in VALUE_LOSS_REGIONS),
)
_d, _e = V - V_old, V - R
value_slope_analysis = CaseAnalysis(
    "value-gradient",
    sp.Ne(_d, value_eps)
    & sp.Ne(_d, -value_eps)
    & sp.Ne(_e - (_d - value_eps) / 2, 0)
    & sp.Ne(_e - (_d + value_eps) / 2, 0),
    tuple(
        Case(g.region, value_slope_derivation(g), g.parametrisation) for g in VALUE_SLOPE_REGIONS
    ),
)


@dataclass(frozen=True)
class ValueExample:
    values: np.ndarray
    old_values: np.ndarray
    returns: np.ndarray
    clip_epsilon: float


def _value_kink_distance(
    values: np.ndarray, old: np.ndarray, target: np.ndarray, eps: float
) -> np.ndarray:
    """Per entry, the distance in V to the nearest point where the share is not smooth: the
    clip kinks |V - V_old| = eps, and the tie of the two errors in the region V lies in."""
    d = values - old
    kinks = np.minimum(np.abs(d - eps), np.abs(d + eps))
    tie_above = np.abs(values + old + eps - 2 * target)  # 2e - s = 0 with s = d - eps
    tie_below = np.abs(values + old - eps - 2 * target)  # with s = d + eps
    ties = np.where(d > eps, tie_above, np.where(d < -eps, tie_below, np.inf))
    return np.minimum(kinks, ties)


@st.composite
def value_examples(draw: st.DrawFn, away: float = 0.0) -> ValueExample:
    """1..6 entries; V - V_old in [-2, 2] or next to +-eps, R anywhere in [-10, 10] or next to
    the tie of the two errors; ``away`` > 0 keeps every entry at least that far (in V) from
    the kinks, by moving a drawn point that falls closer out to 2 ``away``."""
    eps = draw(st.one_of(st.floats(0.01, 1.0), st.sampled_from([0.1, 0.2, 0.5])))
    entry = st.tuples(
        st.floats(-10.0, 10.0),  # V_old
        st.one_of(st.floats(-2.0, 2.0), st.none()),  # d = V - V_old, or None: next to a kink
        st.one_of(st.floats(-10.0, 10.0), st.none()),  # R, or None: next to the tie
        st.floats(0.0, 1e-2),  # offset from the kink or tie
        st.sampled_from([-1.0, 1.0]),
        st.sampled_from([-1.0, 1.0]),
    )
    values, olds, targets = [], [], []
    for old, d, target, offset, sign, side in draw(st.lists(entry, min_size=1, max_size=6)):
        offset = max(offset, 2 * away)
        if d is None:
            d = side * eps + sign * offset
        elif abs(abs(d) - eps) < 2 * away:
            d = np.sign(d) * eps + (2 * away if abs(d) >= eps else -2 * away)
        value = old + d
        d = value - old  # as float64 represents it
        s_ = max(0.0, d - eps) - max(0.0, -d - eps)
        if target is None:  # e = V - R = s/2 + offset: next to the tie
            target = value - s_ / 2 - sign * offset / 2
        elif s_ != 0 and abs(2 * (value - target) - s_) < 2 * away:
            target = value - s_ / 2 - away * 2
        values.append(value)
        olds.append(old)
        targets.append(target)
    return ValueExample(np.array(values), np.array(olds), np.array(targets), float(eps))


def _value_arguments(example: ValueExample) -> tuple:
    return (
        example.values,
        example.old_values,
        example.returns,
        example.clip_epsilon,
        example.values.size,
    )


def reference_value_loss(example: ValueExample) -> float:
    """The shipped :func:`rlmath.reference.clipped_value_loss`."""
    return reference.clipped_value_loss(
        example.values, example.old_values, example.returns, clip_epsilon=example.clip_epsilon
    )


def _value_scale(example: ValueExample) -> float:
    """Mean of (|V| + |V_old| + |R| + eps)^2 / 2: the size of the squares and of the numbers
    whose rounding enters them."""
    size = np.abs(example.values) + np.abs(example.old_values) + np.abs(example.returns)
    return max(float(np.mean((size + example.clip_epsilon) ** 2)) / 2, 1e-300)


def _value_summed(share: Callable[..., np.ndarray]) -> Callable[[ValueExample], float]:
    def total(example: ValueExample) -> float:
        return float(
            np.sum(np.broadcast_to(share(*_value_arguments(example)), example.values.shape))
        )

    return total


def _value_twice(entry: Callable[..., np.ndarray]) -> Callable[[ValueExample], np.ndarray]:
    def both(example: ValueExample) -> np.ndarray:
        values = np.broadcast_to(entry(*_value_arguments(example)), example.values.shape)
        return np.concatenate([values, values]).astype(float)

    return both


def _value_steps(example: ValueExample) -> tuple[np.ndarray, float]:
    """Per entry, a central-difference step inside the smooth piece (half the distance to the
    nearest kink, at most 1e-3) and the error bound delta / h: the share is quadratic in V on
    the piece, so the truncation error is exactly 0; delta bounds the rounding of one
    evaluation of the loss, (N + 8) EPS times the scale of its terms (Higham 2002, eq. 4.4)."""
    delta = (example.values.size + 8) * EPS * _value_scale(example)
    distance = _value_kink_distance(
        example.values, example.old_values, example.returns, example.clip_epsilon
    )
    steps = np.minimum(0.5 * distance, 1e-3)
    return steps, float(np.max(delta / steps))


def reference_value_gradient_and_differences(example: ValueExample) -> np.ndarray:
    """[shipped clipped_value_loss_gradient, central differences of the shipped loss], [2N]."""
    gradient = reference.clipped_value_loss_gradient(
        example.values, example.old_values, example.returns, clip_epsilon=example.clip_epsilon
    )
    steps, _ = _value_steps(example)
    differences = np.empty(example.values.size)
    for k, h in enumerate(steps):
        up, down = example.values.copy(), example.values.copy()
        up[k] += h
        down[k] -= h
        forward = reference_value_loss(
            ValueExample(up, example.old_values, example.returns, example.clip_epsilon)
        )
        backward = reference_value_loss(
            ValueExample(down, example.old_values, example.returns, example.clip_epsilon)
        )
        differences[k] = (forward - backward) / (up[k] - down[k])
    return np.concatenate([gradient, differences])


def _value_gradient_scale(example: ValueExample) -> float:
    size = np.abs(example.values) + np.abs(example.old_values) + np.abs(example.returns)
    return float(np.max(size + example.clip_epsilon)) / example.values.size


def _value_gradient_rtol(example: ValueExample) -> float:
    _, bound = _value_steps(example)
    return max(exact_rtol(n_terms=8), 4.0 * bound / _value_gradient_scale(example))


def _value_mutant(
    kind: str, id_: str, description: str, wrong: Callable[..., sp.Expr], target: str
) -> Mutant:
    table = VALUE_LOSS_REGIONS if kind == "loss" else VALUE_SLOPE_REGIONS
    region = next(g for g in table if g.name == target)
    wrap = _value_summed if kind == "loss" else _value_twice
    return Mutant(
        id_,
        description,
        symbolic=SymbolicMutation(
            f"value-{kind}-{target}", wrong(region.value, V_old, region.target, region.eps)
        ),
        exact=wrap(lazy_lambdify(VALUE_SYMBOLS, wrong(V, V_old, R, value_eps))),
    )


def _min_instead_of_max(v: sp.Expr, old: sp.Expr, t: sp.Expr, eps: sp.Expr) -> sp.Expr:
    return sp.Min((v - t) ** 2, (clipped_value(v, old, eps) - t) ** 2) / (2 * N)


def _clipped_error_only(v: sp.Expr, old: sp.Expr, t: sp.Expr, eps: sp.Expr) -> sp.Expr:
    return (clipped_value(v, old, eps) - t) ** 2 / (2 * N)


_VALUE_RHS_REASON = (
    "the statement's right-hand side (lambdified), which the claim ties to the conclusion of "
    "each of the five cases (a case analysis has no single conclusion to lambdify)"
)

VALUE_CLAIMS = (
    Claim(
        id="clipped-value-loss-reference",
        title="The reference clipped value loss is half the squared larger error",
        summary=(
            "rlmath.reference.clipped_value_loss computes 0.5 mean(max((V - R)^2, (V_clip - "
            "R)^2)) with V_clip = V_old + clip(V - V_old, -eps, eps): the larger error is "
            "|e - s/2| + |s|/2 with e = V - R and s = V - V_clip the clipped-off excess."
        ),
        statement=Statement(
            value_loss_term(V, V_old, R, value_eps),
            value_closed_form(V, V_old, R, value_eps),
            derivation="value-loss",
            where=r"\text{entry } i \text{ of } N;\ V, V^{\mathrm{old}}, R \in \mathbb R,\ \epsilon > 0",
        ),
        assumptions=(
            "Case analysis: V - V_old inside [-eps, eps], or above / below it with the "
            "unclipped or the clipped error the larger (closed regions, non-negative "
            "parameters), checked to cover every V, V_old, R.",
            "The loss is the mean of the shares (the exact leg sums them).",
        ),
        references=(
            "Dhariwal, P. et al., *OpenAI Baselines* (ppo2), 2017; Engstrom, L. et al., "
            "*Implementation Matters in Deep Policy Gradients*, ICLR 2020, Sec. 3.",
        ),
        symbolic=SymbolicLeg((), cases=(value_loss_analysis,)),
        exact=ExactLeg(
            value_examples(),
            lhs=reference_value_loss,
            rhs=_value_summed(
                lazy_lambdify(VALUE_SYMBOLS, value_closed_form(V, V_old, R, value_eps))
            ),
            rhs_reason=_VALUE_RHS_REASON + "; summed over the entries",
            rtol=lambda example: exact_rtol(n_terms=example.values.size + 8),
            error_scale=_value_scale,
            description=(
                "the shipped clipped_value_loss vs the sum of the lambdified closed form "
                "(|e - s/2| + |s|/2)^2 / 2N; V - V_old at and next to +-eps, R next to the tie"
            ),
        ),
        mutants=(
            _value_mutant(
                "loss",
                "min-instead-of-max",
                "the smaller of the two errors",
                _min_instead_of_max,
                "above-unclipped",
            ),
            _value_mutant(
                "loss",
                "clipped-error-only",
                "(V_clip - R)^2 without the max",
                _clipped_error_only,
                "above-unclipped",
            ),
            _value_mutant(
                "loss",
                "no-half",
                "mean(max(...)) without the factor 1/2 (Stable-Baselines3's convention)",
                lambda v, old, t, eps: 2 * value_closed_form(v, old, t, eps),
                "inside",
            ),
            _value_mutant(
                "loss",
                "sum-not-mean",
                "the sum over entries",
                lambda v, old, t, eps: N * value_closed_form(v, old, t, eps),
                "inside",
            ),
        ),
    ),
    Claim(
        id="clipped-value-loss-gradient-reference",
        title="The reference clipped value-loss gradient is (V - R)/N unless the clipped error is larger",
        summary=(
            "rlmath.reference.clipped_value_loss_gradient agrees with the derivative of the "
            "clipped value loss (proved region by region) and with central differences of the "
            "shipped loss: (V - R)/N, or 0 where the clipped error wins."
        ),
        statement=Statement(
            sp.Subs(
                sp.Derivative(value_loss_term(_y, V_old, R, value_eps, clip_name=VALUE_CLIP_NAME), _y),
                _y,
                V,
            ),
            value_gradient_form(V, V_old, R, value_eps),
            derivation="value-gradient",
            where=r"|V - V^{\mathrm{old}}| \ne \epsilon,\ \text{no tie of the two errors outside the clip range}",
        ),
        assumptions=(
            "Off the kinks |V - V_old| = eps and the ties of the two errors (where the loss "
            "has no derivative; the reference returns the unclipped side there, its documented "
            "convention): the exact leg keeps every entry at least 1e-6 from them, and as "
            "close as that.",
            "Five derivations over open regions, checked to cover that domain; old values and "
            "returns are constants.",
        ),
        references=("Dhariwal, P. et al., *OpenAI Baselines* (ppo2), 2017.",),
        symbolic=SymbolicLeg((), cases=(value_slope_analysis,)),
        exact=ExactLeg(
            value_examples(away=1e-6),
            lhs=reference_value_gradient_and_differences,
            rhs=_value_twice(
                lazy_lambdify(VALUE_SYMBOLS, value_gradient_form(V, V_old, R, value_eps))
            ),
            rhs_reason=_VALUE_RHS_REASON
            + "; compared with the shipped gradient and with central differences of the shipped loss",
            rtol=_value_gradient_rtol,
            error_scale=_value_gradient_scale,
            description=(
                "[shipped clipped_value_loss_gradient, central differences of the shipped loss "
                "(exact for the quadratic pieces)] vs the lambdified piecewise gradient, twice"
            ),
        ),
        mutants=(
            _value_mutant(
                "gradient",
                "unclipped-everywhere",
                "(V - R)/N everywhere: value clipping ignored",
                lambda v, old, t, eps: (v - t) / N,
                "above-clipped",
            ),
            _value_mutant(
                "gradient",
                "through-the-clip",
                "(V_clip - R)/N where the clipped error wins, as if V_clip moved with V",
                lambda v, old, t, eps: sp.Piecewise(
                    (
                        (clipped_value(v, old, eps) - t) / N,
                        excess(v, old, eps) * (2 * (v - t) - excess(v, old, eps)) < 0,
                    ),
                    ((v - t) / N, True),
                ),
                "below-clipped",
            ),
            _value_mutant(
                "gradient",
                "no-half",
                "2 (V - R)/N: the derivative of the loss without its factor 1/2",
                lambda v, old, t, eps: 2 * value_gradient_form(v, old, t, eps),
                "inside",
            ),
            _value_mutant(
                "gradient",
                "sum-not-mean",
                "(V - R): the gradient of the summed loss",
                lambda v, old, t, eps: N * value_gradient_form(v, old, t, eps),
                "above-unclipped",
            ),
        ),
    ),
)

CLAIMS = PPO_CLAIMS + DPO_CLAIMS + BRADLEY_TERRY_CLAIMS + NORMALIZATION_CLAIMS + VALUE_CLAIMS
