r"""PPO's clipped surrogate: a pessimistic lower bound, and where its gradient switches off.

Main statements. With the probability ratio $r = \pi_\theta(a|s) / \pi_{\theta'}(a|s) \ge 0$, an
advantage estimate $A$ and $0 < \epsilon < 1$,

$$ L^{\mathrm{CLIP}}(r) = \min\!\big(r A,\ \mathrm{clip}(r, 1 - \epsilon, 1 + \epsilon)\, A\big)
   \le r A, $$

and, away from the kinks $r = 1 \pm \epsilon$,

$$ \frac{d L^{\mathrm{CLIP}}}{d r} = \begin{cases}
   0 & A > 0,\ r > 1 + \epsilon \quad\text{or}\quad A < 0,\ r < 1 - \epsilon
       \quad\text{(moved far enough the way } A \text{ favours)}, \\
   A & \text{otherwise (inside the range, or moved the way } A \text{ disfavours)}.
   \end{cases} $$

Conventions. $L^{\mathrm{CLIP}}$ is an objective (maximised); the ratio's denominator is the
old policy $\theta'$ that sampled $(s, a)$. $\mathrm{clip}(r, lo, hi) = \min(\max(r, lo), hi)$.

Proof sketch. Case analysis on the sign of $A$ and on the region of $r$ (below, inside or
above $[1-\epsilon, 1+\epsilon]$). Each region is parametrised by distances to the kinks
($r = 1 + \epsilon + \rho$, or $\epsilon = (\sigma + \tau)/2$ and $r = 1 - \epsilon + \sigma$
inside) and $A = \pm a$, so sympy decides which term the $\min$ picks; the bound's gap is then
$\rho|A|$ or $0$, and the derivative is that of $rA$ or of a constant. For the bound the regions
are closed and the parameters non-negative, so the six regions cover every real $r$ and $A$,
the kinks and $A = 0$ included; for the derivative they are open and the parameters positive,
covering everything but the kinks and $A = 0$. Both covers are checked
(:class:`rlmath.claims.CaseAnalysis`).

References. Schulman, J., Wolski, F., Dhariwal, P., Radford, A. and Klimov, O., "Proximal
Policy Optimization Algorithms", arXiv:1707.06347, 2017, eq. (7) and Fig. 1 (the
pessimistic bound and the regions where the objective is flat).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp
from hypothesis import strategies as st

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
    lazy_lambdify,
)
from rlmath.tolerances import EPS, exact_rtol

# ----------------------------------------------------------------------------- symbols
r = sp.Symbol("r", real=True)  # the probability ratio, as a variable
_x = sp.Symbol("x", real=True)  # the variable of d/dr in the statement (evaluated at r)
A = sp.Symbol("A", real=True)
epsilon = sp.Symbol("epsilon", positive=True)
VARIABLES = (r, A, epsilon)


def clip(ratio: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$\mathrm{clip}(r, 1 - \epsilon, 1 + \epsilon) = \min(\max(r, 1 - \epsilon), 1 + \epsilon)$."""
    return sp.Min(sp.Max(ratio, 1 - eps, evaluate=False), 1 + eps, evaluate=False)


def clipped_surrogate(ratio: sp.Expr, advantage: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$L^{\mathrm{CLIP}} = \min(r A, \mathrm{clip}(r, 1-\epsilon, 1+\epsilon) A)$, unevaluated."""
    return sp.Min(ratio * advantage, clip(ratio, eps) * advantage, evaluate=False)


@dataclass(frozen=True)
class Region:
    """One of the six regions: where it is, how it is parametrised, what the min picks there.

    ``ratio``, ``advantage`` and ``eps`` are the parametrisation (expressions in the region's
    parameters); ``inverse`` gives each parameter back from (r, A, epsilon); ``picked`` is
    L^CLIP on the region (in r and the parametrised epsilon), ``gap`` is r A - L^CLIP there and
    ``slope`` its derivative in r.
    """

    name: str
    where: str
    region: sp.Basic
    ratio: sp.Expr
    advantage: sp.Expr
    eps: sp.Expr
    inverse: Mapping[sp.Symbol, sp.Expr]
    picked: sp.Expr
    gap: sp.Expr
    slope: sp.Expr

    @property
    def parametrisation(self) -> dict[sp.Symbol, sp.Expr]:
        return {r: self.ratio, A: self.advantage, epsilon: self.eps}


def regions(closed: bool) -> tuple[Region, ...]:
    """The six regions, closed with non-negative parameters or open with positive ones.

    Closed regions share their boundaries (the kinks r = 1 +- eps and A = 0): the bound holds
    there too, so the closed regions cover every real (r, A). Open regions leave out exactly
    the points where L^CLIP has no derivative in r (the kinks) and A = 0.
    """
    sign = {"nonnegative": True} if closed else {"positive": True}
    a = sp.Symbol("a", **sign)  # |A|
    rho = sp.Symbol("rho", **sign)  # distance beyond a kink
    sigma = sp.Symbol("sigma", **sign)  # inside: distance above 1 - epsilon
    tau = sp.Symbol("tau", **sign)  # inside: distance below 1 + epsilon
    ge, le = (sp.GreaterThan, sp.LessThan) if closed else (sp.StrictGreaterThan, sp.StrictLessThan)
    positive, negative = ge(A, 0), le(A, 0)
    above, below = ge(r, 1 + epsilon), le(r, 1 - epsilon)
    inside = ge(r, 1 - epsilon) & le(r, 1 + epsilon)
    inside_eps = (sigma + tau) / 2
    beyond = {rho: r - 1 - epsilon, a: A}
    short = {rho: 1 - epsilon - r, a: A}
    within = {sigma: r - 1 + epsilon, tau: 1 + epsilon - r, a: A}

    def flip(inverse: dict[sp.Symbol, sp.Expr]) -> dict[sp.Symbol, sp.Expr]:
        return {**inverse, a: -A}

    up, down, mid = 1 + epsilon + rho, 1 - epsilon - rho, 1 - inside_eps + sigma
    return (
        Region(
            "positive-above",
            "A >= 0, r = 1 + eps + rho >= 1 + eps: the clipped term (1 + eps) A is smaller",
            positive & above,
            up,
            a,
            epsilon,
            beyond,
            (1 + epsilon) * a,
            rho * a,
            sp.Integer(0),
        ),
        Region(
            "positive-inside",
            "A >= 0, 1 - eps <= r <= 1 + eps: clip(r) = r, both terms are r A",
            positive & inside,
            mid,
            a,
            inside_eps,
            within,
            r * a,
            sp.Integer(0),
            a,
        ),
        Region(
            "positive-below",
            "A >= 0, r = 1 - eps - rho <= 1 - eps: r A <= (1 - eps) A, unclipped",
            positive & below,
            down,
            a,
            epsilon,
            short,
            r * a,
            sp.Integer(0),
            a,
        ),
        Region(
            "negative-below",
            "A <= 0, r = 1 - eps - rho <= 1 - eps: the clipped term (1 - eps) A is smaller",
            negative & below,
            down,
            -a,
            epsilon,
            flip(short),
            -(1 - epsilon) * a,
            rho * a,
            sp.Integer(0),
        ),
        Region(
            "negative-inside",
            "A <= 0, 1 - eps <= r <= 1 + eps: clip(r) = r, both terms are r A",
            negative & inside,
            mid,
            -a,
            inside_eps,
            flip(within),
            -r * a,
            sp.Integer(0),
            -a,
        ),
        Region(
            "negative-above",
            "A <= 0, r = 1 + eps + rho >= 1 + eps: r A <= (1 + eps) A, unclipped",
            negative & above,
            up,
            -a,
            epsilon,
            flip(beyond),
            -r * a,
            sp.Integer(0),
            -a,
        ),
    )


def _check_inverses(table: tuple[Region, ...]) -> None:
    """Each inverse undoes its parametrisation: (r, A, eps) -> parameters -> (r, A, eps)."""
    for region in table:
        for variable, expression in region.parametrisation.items():
            back = sp.expand(expression.xreplace(dict(region.inverse)))
            if back != variable and not (variable == A and back == sp.Abs(A)):
                # A = -a with a = -A, or A = a with a = A: both give A back exactly
                raise ValueError(f"region {region.name}: the inverse gives {back} for {variable}")


BOUND_REGIONS = regions(closed=True)
SLOPE_REGIONS = regions(closed=False)
_check_inverses(BOUND_REGIONS)
_check_inverses(SLOPE_REGIONS)


# ----------------------------------------------------------------------------- lower bound
def bound_derivation(region: Region) -> Derivation:
    """r A >= L^CLIP = (what the min picks), at a point of the region."""
    at = region.parametrisation
    return Derivation(
        f"bound-{region.name}",
        (
            Step(region.ratio * region.advantage, "the unclipped surrogate r A"),
            Step(
                clipped_surrogate(region.ratio, region.advantage, region.eps),
                f"{region.where}; the gap r A - L is {region.gap}",
                relation=">=",
                gap=region.gap,
            ),
            Step(region.picked.xreplace(at), "evaluate the min in this region"),
        ),
        statement=rf"r A \ge L^{{\mathrm{{CLIP}}}} \quad ({region.name})",
    )


bound_analysis = CaseAnalysis(
    "bound",
    epsilon < 1,  # every real r and A (r >= 0 is where ratios live); 0 < eps < 1
    tuple(Case(g.region, bound_derivation(g), g.parametrisation) for g in BOUND_REGIONS),
)


# ----------------------------------------------------------------------------- gradient
def slope_derivation(region: Region) -> Derivation:
    """d L^CLIP / dr at a point of the (open) region: the slope of what the min picks."""

    def derivative_at(expression: sp.Expr) -> sp.Subs:
        return sp.Subs(sp.Derivative(expression, r), r, region.ratio)

    # One step: the kink guard of rlmath.symbolic replaces each Min/Max by the branch it takes
    # on a neighbourhood of the (parametrised) point, which is what this region's rule says;
    # writing that branch as a separate step would only repeat the guard's work.
    picked = region.picked.xreplace({epsilon: region.eps})
    return Derivation(
        f"slope-{region.name}",
        (
            Step(
                derivative_at(clipped_surrogate(r, region.advantage, region.eps)),
                "d L^CLIP / dr at a ratio in this region",
            ),
            Step(
                region.slope,
                f"{region.where.replace('>=', '>').replace('<=', '<')}; on a neighbourhood of "
                f"r, L^CLIP = {sp.sstr(picked)}, whose derivative in r is {region.slope}",
            ),
        ),
        statement=rf"\frac{{dL^{{\mathrm{{CLIP}}}}}}{{dr}} = {sp.latex(region.slope)} \quad ({region.name})",
    )


slope_analysis = CaseAnalysis(
    "slope",
    sp.Ne(A, 0) & sp.Ne(r, 1 + epsilon) & sp.Ne(r, 1 - epsilon) & (epsilon < 1),
    tuple(Case(g.region, slope_derivation(g), g.parametrisation) for g in SLOPE_REGIONS),
)


# ----------------------------------------------------------------------------- case dispatch
class CaseDispatch:
    r"""A case analysis's conclusions evaluated at a point (r, A, eps) of its domain.

    The region predicates are lambdified; the first region containing the point gives the
    parameters through its inverse parametrisation, and ``value(derivation)`` (an expression in
    those parameters, from the derivation's steps) is lambdified and evaluated there.
    ``overrides`` replaces named derivations' conclusions (a mutant's wrong conclusions), so
    that the exact leg judges the very statement the symbolic mutation states.
    """

    def __init__(
        self,
        table: tuple[Region, ...],
        analysis: CaseAnalysis,
        value: Callable[[Derivation], sp.Expr],
        overrides: Mapping[str, sp.Expr] | None = None,
    ) -> None:
        self.pieces = []
        for region, case in zip(table, analysis.cases, strict=True):
            derivation = case.derivation
            if overrides and derivation.name in overrides:
                derivation = derivation.with_conclusion(overrides[derivation.name])
            parameters = sorted(region.inverse, key=sp.default_sort_key)
            self.pieces.append(
                (
                    lazy_lambdify(VARIABLES, case.region),
                    lazy_lambdify(VARIABLES, [region.inverse[p] for p in parameters]),
                    # epsilon is a parameter of its own outside the inside regions
                    lazy_lambdify([*parameters, *VARIABLES], value(derivation)),
                )
            )
        self.table, self.analysis, self.value = table, analysis, value

    def variant(self, overrides: Mapping[str, sp.Expr]) -> CaseDispatch:
        return CaseDispatch(self.table, self.analysis, self.value, overrides)

    def __call__(self, example: np.ndarray) -> float:
        point = tuple(float(v) for v in example)
        for inside, inverse, value in self.pieces:
            if bool(inside(*point)):
                return float(value(*inverse(*point), *point))
        raise ValueError(f"no region of {self.analysis.name!r} contains {point}")


# ----------------------------------------------------------------------------- exact legs
ratios = st.one_of(
    st.floats(0.0, 3.0),
    st.floats(-3.0, 0.0),  # the bound holds for every real r
    st.floats(0.0, 1e6),
    st.sampled_from([0.0, 1.0, 1e-300, 1e300]),
)
advantages = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1e-300, -1e-300, 1e300]))
epsilons = st.floats(0.01, 0.99)


@st.composite
def _bound_examples(draw: st.DrawFn) -> np.ndarray:
    """(r, A, eps), with r exactly at a kink 1 +- eps (as float64 computes it) now and then."""
    eps = draw(epsilons)
    ratio = draw(st.one_of(ratios, st.sampled_from([1 + eps, 1 - eps])))
    return np.array([ratio, draw(advantages), eps])


def _finite(example: np.ndarray) -> bool:
    """r A and (1 + eps) A are finite in float64 (r = A = 1e300 overflows both sides)."""
    ratio, advantage, eps = (float(v) for v in example)  # Python floats: inf, no warning
    return math.isfinite(ratio * advantage) and math.isfinite((1 + eps) * advantage)


bound_examples = _bound_examples().filter(_finite)


def surrogate(example: np.ndarray) -> float:
    """L^CLIP from its definition, min(r A, clip(r, 1 - eps, 1 + eps) A), in float64."""
    ratio, advantage, eps = (float(v) for v in example)
    return min(ratio * advantage, min(max(ratio, 1 - eps), 1 + eps) * advantage)


def gap_by_definition(example: np.ndarray) -> float:
    """r A - L^CLIP with L^CLIP from its definition (no region, no sign of A)."""
    ratio, advantage, _ = (float(v) for v in example)
    return ratio * advantage - surrogate(example)


#: r A - L^CLIP by the case analysis: (first step - conclusion) of the region's derivation.
gap_by_cases = CaseDispatch(BOUND_REGIONS, bound_analysis, lambda d: d.start - d.conclusion)


def _gap_error_scale(example: np.ndarray) -> float:
    # r A and L are products of numbers of size |r| and 1 + eps with A; each side's rounding
    # (a product, a subtraction, and the inverse parametrisation rho = r - 1 - eps) is a few
    # ulps of |A| (|r| + 1 + eps), the scale of the terms that cancel to the gap.
    ratio, advantage, eps = (abs(float(v)) for v in example)
    return max(advantage * (ratio + 1 + eps), 1e-300)


@st.composite
def _away_from_kinks(draw: st.DrawFn) -> np.ndarray:
    """(r, A, eps) with r at least 1e-3 away from the kinks 1 +- eps and A != 0."""
    eps = draw(epsilons)
    ratio = draw(
        st.floats(0.0, 3.0).filter(lambda x: min(abs(x - 1 + eps), abs(x - 1 - eps)) >= 1e-3)
    )
    sign = draw(st.sampled_from([-1.0, 1.0]))
    return np.array([ratio, sign * draw(st.floats(1e-3, 1e3)), eps])


slope_examples = _away_from_kinks()
#: d L^CLIP / dr by the case analysis: the conclusion of the region's derivation.
slope_by_cases = CaseDispatch(SLOPE_REGIONS, slope_analysis, lambda d: d.conclusion)


def _half_width(example: np.ndarray) -> float:
    ratio, _, eps = example
    return 0.5 * min(abs(ratio - 1 + eps), abs(ratio - 1 - eps))


def central_difference(example: np.ndarray) -> float:
    r"""$(L(r + h) - L(r - h)) / ((r + h) - (r - h))$ with $h$ half the distance to the nearest kink.

    $L$ (from its definition) is linear on $[r - h, r + h]$, so the truncation error is
    exactly 0; dividing by the step actually represented leaves only the rounding of the two
    evaluations.
    """
    ratio, advantage, eps = example
    step = _half_width(example)
    up, down = ratio + step, max(ratio - step, 0.0)
    return (
        surrogate(np.array([up, advantage, eps])) - surrogate(np.array([down, advantage, eps]))
    ) / (up - down)


def _slope_rtol(example: np.ndarray) -> float:
    # Each evaluation of L is off by at most u |L| <= u |A| (r + h) (one product, exact clip);
    # the difference of two, divided by 2h, relative to |A|: 2 u (r + h) / (2h), u = EPS / 2.
    ratio, _, _ = example
    step = _half_width(example)
    return EPS * (ratio + step) / step + exact_rtol()


def _bound_mutant(
    id_: str, description: str, wrong: Callable[[Region], sp.Expr], target: str
) -> Mutant:
    """A wrong L^CLIP: the symbolic leg gets its value in region ``target``, the exact leg the
    case analysis with every region's conclusion replaced by it (the same wrong statement)."""
    overrides = {f"bound-{g.name}": wrong(g) for g in BOUND_REGIONS}
    return Mutant(
        id_,
        description,
        symbolic=SymbolicMutation(f"bound-{target}", overrides[f"bound-{target}"]),
        exact=gap_by_cases.variant(overrides),
    )


def _slope_mutant(id_: str, description: str, wrong: Mapping[str, sp.Expr], target: str) -> Mutant:
    """Wrong slopes in the named regions: symbolic in ``target``, exact in all of them."""
    overrides = {f"slope-{name}": value for name, value in wrong.items()}
    return Mutant(
        id_,
        description,
        symbolic=SymbolicMutation(f"slope-{target}", overrides[f"slope-{target}"]),
        exact=slope_by_cases.variant(overrides),
    )


def _region(table: tuple[Region, ...], name: str) -> Region:
    return next(g for g in table if g.name == name)


def _max_instead_of_min(g: Region) -> sp.Expr:
    return sp.Max(g.ratio * g.advantage, clip(g.ratio, g.eps) * g.advantage)


def _clipped_term_only(g: Region) -> sp.Expr:
    return clip(g.ratio, g.eps).doit() * g.advantage


_a_open = _region(SLOPE_REGIONS, "positive-above").advantage  # the positive |A| symbol
#: The slopes assembled over the regions: 0 where the clip binds in the direction A favours.
clip_slope = sp.Piecewise(
    (0, (A > 0) & (r > 1 + epsilon)),
    (0, (A < 0) & (r < 1 - epsilon)),
    (A, True),
    evaluate=False,
)
_RHS_REASON = (
    "the case analysis's conclusions are in per-region parameters: the rhs evaluates, at each "
    "example, the lambdified conclusion of the region (lambdified predicate) containing it, "
    "with the parameters from the region's inverse parametrisation (CaseDispatch); a mutant's "
    "wrong conclusions go through the same dispatch"
)

CLAIMS = (
    Claim(
        id="ppo-clip-lower-bound",
        title="PPO's clipped surrogate is a lower bound of the unclipped one",
        summary=(
            "PPO's min(r A, clip(r) A) never exceeds the unclipped surrogate r A, so it is a "
            "pessimistic estimate of the policy improvement."
        ),
        statement=Statement(
            r * A,
            clipped_surrogate(r, A, epsilon),
            ">=",
            derivation="bound",
            where=r"r, A \in \mathbb R,\ 0 < \epsilon < 1;\ \text{each case with its parametrisation}",
        ),
        assumptions=(
            "Case analysis: A >= 0 and A <= 0, each with r below, inside or above "
            "[1 - eps, 1 + eps] (six derivations, closed regions with non-negative "
            "parameters); the regions are checked to cover every real r and A, the kinks "
            "r = 1 +- eps and A = 0 included.",
            "The bound holds for every real r; r >= 0 is where ratios live.",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (7) "
            "(the clipped objective is a pessimistic bound on the unclipped one).",
        ),
        symbolic=SymbolicLeg((), cases=(bound_analysis,)),
        exact=ExactLeg(
            bound_examples,
            lhs=gap_by_definition,
            rhs=gap_by_cases,
            rhs_reason=_RHS_REASON,
            rtol=exact_rtol(n_terms=4),
            error_scale=_gap_error_scale,
            description=(
                "the gap r A - min(r A, clip(r) A) from the definition vs the gap the case "
                "analysis proves (rho |A| beyond the kink A favours, else 0) at the region "
                "containing (r, A, eps); r negative, at the kinks, far outside the clip range "
                "(1e6, 1e300), A = 0 and huge A included"
            ),
        ),
        mutants=(
            _bound_mutant(
                "max-instead-of-min",
                "max(r A, clip(r) A): an upper bound, not a lower one",
                _max_instead_of_min,
                "positive-above",
            ),
            _bound_mutant(
                "clipped-term-only",
                "clip(r) A without the min (the unclipped term dropped)",
                _clipped_term_only,
                "negative-above",
            ),
        ),
        notes=(
            "Any min(r A, x) is at most r A, so clipping the advantage instead of the ratio "
            "(min(r A, r clip(A, 1 - eps, 1 + eps))) satisfies this bound too: that bug is a "
            "mutant of `ppo-clip-gradient`, whose slopes it changes. The exact leg checks the "
            "gap itself, not only its sign, so a derivation picking the wrong term of the min "
            "in some region is caught."
        ),
    ),
    Claim(
        id="ppo-clip-gradient",
        title="The clipped surrogate's gradient switches off only in the direction A favours",
        summary=(
            "Clipping zeroes a sample's gradient only once the ratio has moved past 1 +/- "
            "epsilon in the direction its advantage favours; moves the other way are never "
            "clipped."
        ),
        statement=Statement(
            sp.Subs(sp.Derivative(clipped_surrogate(_x, A, epsilon), _x), _x, r),
            clip_slope,
            derivation="slope",
            where=r"A \ne 0,\ r \ne 1 \pm \epsilon,\ 0 < \epsilon < 1",
        ),
        assumptions=(
            "r is not at a kink r = 1 +- eps, where the objective has no derivative; A != 0.",
            "Six derivations, one per sign of A and open region of r (below, inside, above), "
            "checked to cover that domain.",
            "Inside the clip range the slope is A, the gradient of the unclipped surrogate "
            "r A (with r = 1 at the old policy, where PPO starts each update).",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (7) and "
            "Fig. 1.",
        ),
        symbolic=SymbolicLeg((), cases=(slope_analysis,)),
        exact=ExactLeg(
            slope_examples,
            lhs=central_difference,
            rhs=slope_by_cases,
            rhs_reason=_RHS_REASON,
            rtol=_slope_rtol,
            description=(
                "central difference of min(r A, clip(r) A) from the definition with a step "
                "inside the linear piece (truncation error 0) vs the slope the case analysis "
                "proves at the region containing (r, A, eps)"
            ),
        ),
        mutants=(
            _slope_mutant(
                "flat-on-both-sides",
                "slope 0 whenever r leaves the range, as if the objective were clip(r) A",
                {"positive-below": sp.Integer(0), "negative-above": sp.Integer(0)},
                "positive-below",
            ),
            _slope_mutant(
                "sign-of-advantage-ignored",
                "flat above 1 + eps and unclipped below 1 - eps, whatever the sign of A",
                {"negative-below": -_a_open, "negative-above": sp.Integer(0)},
                "negative-below",
            ),
            _slope_mutant(
                "advantage-clipped",
                "min(r A, r clip(A, 1 - eps, 1 + eps)): the advantage clipped instead of the ratio",
                {
                    g.name: sp.Min(g.advantage, clip(g.advantage, g.eps), evaluate=False)
                    for g in SLOPE_REGIONS
                },
                "positive-above",
            ),
        ),
    ),
)
