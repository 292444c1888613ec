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
above $[1-\epsilon, 1+\epsilon]$). Each region is parametrised by positive distances to the
kinks ($r = 1 + \epsilon + \rho$, or $\epsilon = (\sigma + \tau)/2$ and $r = 1 - \epsilon +
\sigma$ inside), so sympy decides which term the $\min$ picks; the bound's gap is then $\rho|A|$
or $0$, and the derivative is that of $rA$ or of a constant. $A = 0$ is trivial (everything
is $0$).

References. Schulman, J., Wolski, F., Dhariwal, P., Radford, A. and Klimov, O., "Proximal
Policy Optimization Algorithms", arXiv:1707.06347, 2017, eq. (7) and Fig. 1 (the
pessimistic bound and the regions where the objective is flat).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    lambdify,
)
from rlmath.tolerances import EPS, exact_rtol

# ----------------------------------------------------------------------------- symbols
r = sp.Symbol("r", real=True)  # the probability ratio, as a variable
A = sp.Symbol("A", real=True)
epsilon = sp.Symbol("epsilon", positive=True)
a = sp.Symbol("a", positive=True)  # |A| in the case analysis
rho = sp.Symbol("rho", positive=True)  # distance beyond a kink
sigma = sp.Symbol("sigma", positive=True)  # inside: distance above 1 - epsilon
tau = sp.Symbol("tau", positive=True)  # inside: distance below 1 + epsilon


def clip(ratio: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$\mathrm{clip}(r, 1 - \epsilon, 1 + \epsilon) = \min(\max(r, 1 - \epsilon), 1 + \epsilon)$."""
    return sp.Min(sp.Max(ratio, 1 - eps, evaluate=False), 1 + eps, evaluate=False)


def clipped_surrogate(ratio: sp.Expr, advantage: sp.Expr, eps: sp.Expr) -> sp.Expr:
    r"""$L^{\mathrm{CLIP}} = \min(r A, \mathrm{clip}(r, 1-\epsilon, 1+\epsilon) A)$, unevaluated."""
    return sp.Min(ratio * advantage, clip(ratio, eps) * advantage, evaluate=False)


# The six regions: (name, ratio, advantage, epsilon, what min picks, bound gap, slope).
inside_eps = (sigma + tau) / 2
REGIONS = (
    ("positive-above", 1 + epsilon + rho, a, epsilon, (1 + epsilon) * a, rho * a, 0),
    ("positive-inside", 1 - inside_eps + sigma, a, inside_eps, r * a, 0, a),
    ("positive-below", 1 - epsilon - rho, a, epsilon, r * a, 0, a),
    ("negative-below", 1 - epsilon - rho, -a, epsilon, -(1 - epsilon) * a, rho * a, 0),
    ("negative-inside", 1 - inside_eps + sigma, -a, inside_eps, -r * a, 0, -a),
    ("negative-above", 1 + epsilon + rho, -a, epsilon, -r * a, 0, -a),
)
_WHERE = {
    "positive-above": "A > 0, r = 1 + eps + rho > 1 + eps: the clipped term (1 + eps) A is smaller",
    "positive-inside": "A > 0, 1 - eps < r < 1 + eps: clip(r) = r, both terms are r A",
    "positive-below": "A > 0, r = 1 - eps - rho < 1 - eps: r A < (1 - eps) A, unclipped",
    "negative-below": "A < 0, r = 1 - eps - rho < 1 - eps: the clipped term (1 - eps) A is smaller",
    "negative-inside": "A < 0, 1 - eps < r < 1 + eps: clip(r) = r, both terms are r A",
    "negative-above": "A < 0, r = 1 + eps + rho > 1 + eps: r A < (1 + eps) A, unclipped",
}


# ----------------------------------------------------------------------------- lower bound
def bound_derivation(name, ratio, advantage, eps, picked, gap, slope) -> Derivation:  # type: ignore[no-untyped-def]
    return Derivation(
        f"bound-{name}",
        (
            Step(ratio * advantage, "the unclipped surrogate r A"),
            Step(
                clipped_surrogate(ratio, advantage, eps),
                f"{_WHERE[name]}; the gap r A - L is {gap}",
                relation=">=",
                gap=sp.sympify(gap),
            ),
            Step(picked.subs(r, ratio), "evaluate the min in this region"),
        ),
        statement=rf"r A \ge L^{{\mathrm{{CLIP}}}} \quad ({name})",
    )


bounds = tuple(bound_derivation(*region) for region in REGIONS)


# ----------------------------------------------------------------------------- gradient
def slope_derivation(name, ratio, advantage, eps, picked, gap, slope) -> Derivation:  # type: ignore[no-untyped-def]
    def derivative_at(expression: sp.Expr) -> sp.Subs:
        return sp.Subs(sp.Derivative(expression, r), r, ratio)

    return Derivation(
        f"slope-{name}",
        (
            Step(
                derivative_at(clipped_surrogate(r, advantage, eps)),
                "d L^CLIP / dr at a ratio in this region",
            ),
            Step(
                derivative_at(picked.subs(epsilon, eps)),
                f"{_WHERE[name]}, on a neighbourhood of r",
            ),
            Step(sp.sympify(slope), "differentiate: d(r A)/dr = A, a constant has slope 0"),
        ),
        statement=rf"\frac{{dL^{{\mathrm{{CLIP}}}}}}{{dr}} = {sp.latex(slope)} \quad ({name})",
    )


slopes = tuple(slope_derivation(*region) for region in REGIONS)

#: The slopes assembled over the regions (A = |A| or -|A|): 0 where the clip binds.
clip_slope = sp.Piecewise(
    (0, (A > 0) & (r > 1 + epsilon)),
    (0, (A < 0) & (r < 1 - epsilon)),
    (A, True),
)

# ----------------------------------------------------------------------------- exact legs
ratios = st.one_of(
    st.floats(0.0, 3.0),
    st.floats(0.0, 1e6),
    st.sampled_from([0.0, 1.0, 1e-300, 1e300]),
)
advantages = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1e-300, -1e-300, 1e300]))
epsilons = st.floats(0.01, 0.99)
bound_examples = st.tuples(ratios, advantages, epsilons).map(np.array)


def surrogate(example: np.ndarray) -> float:
    """min(r A, clip(r, 1 - eps, 1 + eps) A) with numpy's minimum and clip."""
    ratio, advantage, eps = example
    return float(np.minimum(ratio * advantage, np.clip(ratio, 1 - eps, 1 + eps) * advantage))


_unclipped = lambdify([r, A], r * A)  # the bound every derivation starts from


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
_slope = lambdify([r, A, epsilon], clip_slope)


def _half_width(example: np.ndarray) -> float:
    ratio, _, eps = example
    return 0.5 * min(abs(ratio - 1 + eps), abs(ratio - 1 - eps))


def central_difference(example: np.ndarray) -> float:
    r"""$(L(r + h) - L(r - h)) / ((r + h) - (r - h))$ with $h$ half the distance to the nearest kink.

    $L$ is linear on $[r - h, r + h]$, so the truncation error is exactly 0; dividing by the
    step actually represented leaves only the rounding of the two evaluations.
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


def _symmetric_clip(example: np.ndarray) -> float:
    ratio, advantage, eps = example  # the slope of clip(r) A: zero on both sides, whatever A
    return 0.0 if (ratio > 1 + eps or ratio < 1 - eps) else float(advantage)


def _sign_ignored(example: np.ndarray) -> float:
    ratio, advantage, eps = example  # as if A > 0 always: flat above 1 + eps only
    return 0.0 if ratio > 1 + eps else float(advantage)


def _clipped_advantage(example: np.ndarray) -> float:
    ratio, advantage, eps = example  # slope of min(r A, r clip(A, 1 - eps, 1 + eps))
    return float(min(advantage, np.clip(advantage, 1 - eps, 1 + eps)))


def _region_point(index: int) -> sp.Expr:
    return REGIONS[index][1]


CLAIMS = (
    Claim(
        id="ppo-clip-lower-bound",
        title="PPO's clipped surrogate is a lower bound of the unclipped one",
        statement=(
            r"\min\!\big(rA,\ \mathrm{clip}(r, 1-\epsilon, 1+\epsilon) A\big) \le rA"
            r"\qquad (r \ge 0,\ A \in \mathbb R,\ 0 < \epsilon < 1)"
        ),
        assumptions=(
            "Case analysis: A > 0 and A < 0, each with r below, inside or above "
            "[1 - eps, 1 + eps] (six derivations); A = 0 makes both sides 0. The kinks "
            "r = 1 +- eps belong to both neighbouring regions by continuity.",
            "The bound holds for every real r; r >= 0 is where ratios live.",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (7) "
            "(the clipped objective is a pessimistic bound on the unclipped one).",
        ),
        symbolic=SymbolicLeg(bounds),
        exact=ExactLeg(
            bound_examples,
            lhs=lambda ex: _unclipped(ex[0], ex[1]),
            rhs=surrogate,
            rtol=exact_rtol(),
            relation=">=",
            description=(
                "r A >= min(r A, clip(r) A) with numpy on (r, A, eps) including r = 0, r far "
                "outside the clip range (1e6, 1e300), A = 0 and huge A"
            ),
        ),
        mutants=(
            Mutant(
                "max-instead-of-min",
                "max(r A, clip(r) A): an upper bound, not a lower one",
                symbolic=SymbolicMutation(
                    "bound-positive-below",
                    sp.Max(_region_point(2) * a, (1 - epsilon) * a, evaluate=False),
                ),
                exact=lambda ex: float(
                    np.maximum(ex[0] * ex[1], np.clip(ex[0], 1 - ex[2], 1 + ex[2]) * ex[1])
                ),
            ),
            Mutant(
                "clipped-term-only",
                "clip(r) A without the min (the unclipped term dropped)",
                symbolic=SymbolicMutation("bound-positive-below", (1 - epsilon) * a),
                exact=lambda ex: float(np.clip(ex[0], 1 - ex[2], 1 + ex[2]) * ex[1]),
            ),
        ),
        notes=(
            "Any min(r A, x) is at most r A, so clipping the advantage instead of the ratio "
            "(min(r A, r clip(A, 1 - eps, 1 + eps))) satisfies this bound too: that bug is a "
            "mutant of `ppo-clip-gradient`, whose slopes it changes."
        ),
    ),
    Claim(
        id="ppo-clip-gradient",
        title="The clipped surrogate's gradient switches off only in the direction A favours",
        statement=(
            r"\frac{d}{dr}\min\!\big(rA, \mathrm{clip}(r, 1-\epsilon, 1+\epsilon)A\big) = "
            r"\begin{cases} 0 & A > 0,\ r > 1+\epsilon \ \text{ or } \ A < 0,\ r < 1-\epsilon \\"
            r" A & \text{otherwise} \end{cases}"
        ),
        assumptions=(
            "r is not at a kink r = 1 +- eps, where the objective has no derivative; A != 0.",
            "Six derivations, one per sign of A and region of r (below, inside, above).",
            "Inside the clip range the slope is A, the gradient of the unclipped surrogate "
            "r A (with r = 1 at the old policy, where PPO starts each update).",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (7) and "
            "Fig. 1.",
        ),
        symbolic=SymbolicLeg(slopes),
        exact=ExactLeg(
            slope_examples,
            lhs=central_difference,
            rhs=lambda ex: _slope(*ex),
            rtol=_slope_rtol,
            description=(
                "central difference of min(r A, clip(r) A) with a step inside the linear piece "
                "(truncation error 0) vs the lambdified piecewise slope"
            ),
        ),
        mutants=(
            Mutant(
                "flat-on-both-sides",
                "slope 0 whenever r leaves the range, as if the objective were clip(r) A",
                symbolic=SymbolicMutation("slope-positive-below", sp.Integer(0)),
                exact=_symmetric_clip,
            ),
            Mutant(
                "sign-of-advantage-ignored",
                "flat above 1 + eps and unclipped below 1 - eps, whatever the sign of A",
                symbolic=SymbolicMutation("slope-negative-below", -a),
                exact=_sign_ignored,
            ),
            Mutant(
                "advantage-clipped",
                "min(r A, r clip(A, 1 - eps, 1 + eps)): the advantage clipped instead of the ratio",
                symbolic=SymbolicMutation(
                    "slope-positive-above", sp.Min(a, clip(a, epsilon), evaluate=False)
                ),
                exact=_clipped_advantage,
            ),
        ),
    ),
)
