r"""Self-tests of the machinery that judges the claims, run by ``rlmath verify`` before them.

A green claim means something only if the judge works. The shipped proofs contain no false
step and no crashing mutant, so a prover that accepts false steps, or a verdict rule that counts
a crash as a rejection, would change no claim's verdict: ``rlmath verify`` would stay green
while its guarantee is gone. These checks make such a defect fail the run itself:

- **the prover refuses false steps** (a table of :data:`PROVER_CASES`: logs, powers and square
  roots of real or complex arguments, derivatives of non-commuting powers, cancellations of a
  possibly-zero factor, derivatives at kinks, capture of nested summation indices, sums evaluated to fewer terms) without
  any prover bug, **and proves their true forms**;
- **random points refute** the false steps (the refutation that judges symbolic mutants);
- **the numeric screen** (random points, before any rewriting) keeps a deliberately unsound
  rewriting from accepting a false step, and
  ``is_nonnegative`` does not take an unknown sign for a non-negative one; an inequality step
  is accepted only with a gap proved equal to the difference *and* non-negative;
- **a crashing mutant is a defect, not a rejection**, and a wrong mutant is rejected, on a
  tiny canary claim run through :func:`rlmath.verify.verify_claim`;
- **the exact legs' conditioning bound is attained**: $\kappa_\infty(I - \gamma P) =
  (1 + \gamma)/(1 - \gamma)$ for a fixed-point-free permutation $P$ (so
  :func:`rlmath.tolerances.discounted_condition_number` is the bound, not a looser or tighter
  number), and it bounds $\kappa_\infty$ for random stochastic $P$.
- **the rewritings are sound without the screen**: the false steps of the table are refused with
  the numeric screen switched off (each layer must be sound on its own; the screen alone
  would hide an unsound rewriting from every other check);
- **the central-difference bound is attained**: $M_3 h^2/6 + \delta/h$ of
  :func:`rlmath.tolerances.central_difference_step` is the exact error of $f = M_3 x^3/6$ with
  evaluation errors $\pm\delta$ (exact rationals), and its step minimises it;
- **exact-leg inequalities have their direction**, **the exact control needs every example**
  (one control example that cannot reject the shifted rhs makes the leg an error), and **a
  statement is tied to its derivation's conclusion** (a canary with another rhs fails):
  machinery that no shipped claim reaches, since their legs compare equalities, reject every
  shifted example and state their conclusions;
- **the Monte-Carlo control is demanded of the true claim** (a leg reporting no rejected
  control is an error; a mutant's run needs none): every shipped Monte-Carlo leg reports a
  rejected control, so a wrapper that stopped demanding it would change no verdict;
- **the third-derivative bound is the chain-rule majorant**:
  :func:`rlmath.tolerances.softmax_objective_third_derivative_bound` equals the Leibniz
  recursion of its derivation, with $D_k = 2\max|\sigma^{(k)}|$ maximised by sympy; the bound
  is far above any third derivative a claim meets, so a tighter (wrong) bound would change no
  verdict.

Each check returns a :class:`SelfTestResult`; any exception in a check is a failed result with
its reason, never a traceback. ``rlmath verify`` prints the results, writes them to its JSON and
exits non-zero when one fails. The table is also what ``tests/test_symbolic.py`` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

__all__ = [
    "PROVER_CASES",
    "SELF_TESTS",
    "SelfTestResult",
    "run_self_tests",
]


@dataclass(frozen=True)
class SelfTestResult:
    """One self-test: its name, whether it passed, and what was checked or what went wrong."""

    name: str
    passed: bool
    detail: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


class SelfTestFailure(AssertionError):
    """A self-test found the machinery wrong (its message says how)."""


# ----------------------------------------------------------------------------- the prover table
_x, _y = sp.symbols("x y", real=True)
_a, _b = sp.symbols("a b", real=True)
_p, _q = sp.symbols("p q", positive=True)
_z = sp.Symbol("z")  # complex
_t = sp.Symbol("t", real=True)
_A = sp.Function("A", commutative=False)(_t)  # a matrix depending on t
_dA = sp.Derivative(_A, _t)
_n, _m = sp.symbols("n m", integer=True, positive=True)
_i, _j, _k, _l = sp.symbols("i j k l", integer=True)
_w = sp.IndexedBase("w", real=True)
_a_w = sp.IndexedBase("a", real=True)
_b = sp.IndexedBase("b", real=True)


def _d(expression: sp.Expr, variable: sp.Symbol = _t) -> sp.Derivative:
    return sp.Derivative(expression, variable)


def _at(expression: sp.Expr, variable: sp.Symbol, value: sp.Expr) -> sp.Subs:
    """d expression / d variable at ``variable = value``."""
    return sp.Subs(sp.Derivative(expression, variable), variable, value)


def _ramp(v: sp.Expr) -> sp.Piecewise:
    return sp.Piecewise((v, v > 0), (0, True))


def _weighted_inner_sum(body: sp.Expr, outer: sp.Symbol, inner: sp.Symbol) -> sp.Sum:
    r"""$\sum_{outer=0}^{n} a_{outer} \sum_{inner=0}^{m}$ body."""
    return sp.Sum(_a_w[outer] * sp.Sum(body, (inner, 0, _m)), (outer, 0, _n))


#: (id, false step lhs, its rhs, the true form (lhs, rhs) or None). Each false step is false at
#: some admissible point of its symbols' assumptions; each true form is an identity.
PROVER_CASES: tuple[tuple[str, Any, Any, tuple[Any, Any] | None], ...] = (
    (
        "log-product-of-reals",
        sp.log(_x * _y),
        sp.log(_x) + sp.log(_y),
        (sp.log(_p * _q), sp.log(_p) + sp.log(_q)),
    ),
    (
        "log-quotient-of-reals",
        sp.log(_x / _y),
        sp.log(_x) - sp.log(_y),
        (sp.log(_p / _q), sp.log(_p) - sp.log(_q)),
    ),
    ("log-square-of-real", sp.log(_x**2), 2 * sp.log(_x), (sp.log(_p**2), 2 * sp.log(_p))),
    ("log-power-of-real", sp.log(_x**_a), _a * sp.log(_x), (sp.log(_p**_a), _a * sp.log(_p))),
    ("log-exp-of-complex", sp.log(sp.exp(_z)), _z, (sp.log(sp.exp(_x)), _x)),
    ("sqrt-square-of-real", sp.sqrt(_x**2), _x, (sp.sqrt(_p**2), _p)),
    (
        "sqrt-product-of-reals",
        sp.sqrt(_x * _y),
        sp.sqrt(_x) * sp.sqrt(_y),
        (sp.sqrt(_p * _q), sp.sqrt(_p) * sp.sqrt(_q)),
    ),
    ("power-of-power-of-real", (_x**_a) ** _b, _x ** (_a * _b), ((_p**_a) ** _b, _p ** (_a * _b))),
    (
        "power-of-product-of-reals",
        (_x * _y) ** _a,
        _x**_a * _y**_a,
        ((_p * _q) ** _a, _p**_a * _q**_a),
    ),
    ("d-square-commuted", _d(_A**2), 2 * _A * _dA, (_d(_A**2), _dA * _A + _A * _dA)),
    (
        "d-square-sympy-form",
        _d(_A**2),
        2 * _A**2 * _dA * _A**-1,
        (_d(_A**2), _dA * _A + _A * _dA),
    ),
    ("d-square-on-the-right", _d(_A**2), 2 * _dA * _A, (_d(_A * _A), _A * _dA + _dA * _A)),
    (
        "d-cube-commuted",
        _d(_A**3),
        3 * _A**2 * _dA,
        (_d(_A**3), _dA * _A**2 + _A * _dA * _A + _A**2 * _dA),
    ),
    (
        "d-inverse-on-the-left",
        _d(_A**-1),
        -(_A**-2) * _dA,
        (_d(_A**-1), -(_A**-1) * _dA * _A**-1),
    ),
    (
        "d-inverse-on-the-right",
        _d(_A**-1),
        -_dA * _A**-2,
        (_d(_A**-2), -(_A**-1) * (_A**-1 * _dA * _A**-1) - _A**-1 * _dA * _A**-2),
    ),
    ("d-sqrt-of-matrix", _d(sp.sqrt(_A)), _dA * _A ** sp.Rational(-1, 2) / 2, None),
    (
        "cancel-possibly-zero",
        sp.Mul(_x, _y, 1 / _y, evaluate=False),
        _x,
        (sp.Mul(_x, _p, 1 / _p, evaluate=False), _x),
    ),
    ("cancel-in-a-quotient", (_x * _y + _y) / _y, _x + 1, ((_x * _p + _p) / _p, _x + 1)),
    (
        "divide-and-multiply",
        _x,
        sp.Mul(_x * _y, 1 / _y, evaluate=False),
        (_x, sp.Mul(_x * _p, 1 / _p, evaluate=False)),
    ),
    ("d-abs-everywhere", _d(sp.Abs(_x), _x), sp.sign(_x), (_d(sp.Abs(_p), _p), 1)),
    ("d-abs-at-the-kink", _at(sp.Abs(_x), _x, 0), 0, (_at(sp.Abs(_x), _x, 2), 1)),
    (
        "d-max-everywhere",
        _d(sp.Max(_x, 0), _x),
        sp.Heaviside(_x),
        (_at(sp.Max(_x, 0), _x, _p), 1),
    ),
    (
        "d-max-at-the-kink",
        _at(sp.Max(_x, 0), _x, 0),
        sp.Rational(1, 2),
        (_at(sp.Max(_x, 0), _x, -_p), 0),
    ),
    (
        "d-min-everywhere",
        _d(sp.Min(_x, 1), _x),
        sp.Heaviside(1 - _x),
        (_at(sp.Min(_x, 1), _x, 1 + _p), 0),
    ),
    (
        "d-heaviside-everywhere",
        _d(sp.Heaviside(_x), _x),
        sp.DiracDelta(_x),
        (_at(sp.Heaviside(_x), _x, _p), 0),
    ),
    ("d-sign-at-the-kink", _at(sp.sign(_x), _x, 0), 0, (_at(sp.sign(_x), _x, -_p), 0)),
    ("d-piecewise-at-the-kink", _at(_ramp(_x), _x, 0), 0, (_at(_ramp(_x), _x, _p), 1)),
    (
        "d-piecewise-everywhere",
        _d(_ramp(_x), _x),
        sp.Piecewise((1, _x > 0), (0, True)),
        None,
    ),
    (
        # b[i, j] is not b[j, i] inside a sum weighted by a[i]; renaming the inner bound index
        # to the outer one's name (variable capture) would make the two sides one expression.
        # (Nested Sum objects: sympy merges Sum(Sum(f, j), i) into one Sum with two limits.)
        "inner-sum-transposed",
        _weighted_inner_sum(_b[_i, _j], _i, _j),
        _weighted_inner_sum(_b[_j, _i], _i, _j),
        (_weighted_inner_sum(_b[_i, _j], _i, _j), _weighted_inner_sum(_b[_k, _l], _k, _l)),
    ),
    (
        "two-term-sum-as-one-term",
        sp.Sum(_w[_i], (_i, 0, 1)),
        _w[0],
        (sp.Sum(_w[_i], (_i, 0, 1)), _w[0] + _w[1]),
    ),
    (
        "sum-of-a-product-split",
        sp.Sum(_w[_i] * _w[_i], (_i, 0, _n)),
        sp.Sum(_w[_i], (_i, 0, _n)) * sp.Sum(_w[_j], (_j, 0, _n)),
        (
            sp.Sum(_w[_i] * (_w[_i] + 1), (_i, 0, _n)),
            sp.Sum(_w[_j] ** 2, (_j, 0, _n)) + sp.Sum(_w[_k], (_k, 0, _n)),
        ),
    ),
)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SelfTestFailure(message)


def _refuse_every_false_step(how: str) -> None:
    """Every false step of :data:`PROVER_CASES` is refused by ``prove_equal`` (no ProverBug)."""
    from rlmath.symbolic import ProverBug, prove_equal

    for name, lhs, rhs, _ in PROVER_CASES:
        try:
            method = prove_equal(lhs, rhs)
        except ProverBug as bug:
            raise SelfTestFailure(
                f"the prover raised a prover bug on the false step {name!r}{how}: {bug}"
            ) from bug
        _check(method is None, f"the prover accepted the false step {name!r}{how} by {method!r}")


def prover_refuses_false_steps() -> str:
    """Every false step of :data:`PROVER_CASES` is refused (no proof, no ProverBug)."""
    _refuse_every_false_step("")
    return f"{len(PROVER_CASES)} false steps refused"


def rewritings_refuse_false_steps_without_the_screen() -> str:
    """With the numeric screen switched off, the rewritings alone refuse every false step.

    The screen refuses a refuted step before any rewriting runs, so an unsound rewriting
    (one that maps an expression whose sums ``doit`` evaluated away to 0, say) changes no
    verdict of :func:`prover_refuses_false_steps` nor of any shipped claim: this check is the
    one that sees it. Both layers must be sound on their own.
    """
    from rlmath import symbolic

    saved = symbolic._screened_out
    symbolic._screened_out = lambda a, b: False
    try:
        _refuse_every_false_step(" (numeric screen off)")
    finally:
        symbolic._screened_out = saved
    return f"{len(PROVER_CASES)} false steps refused by the rewritings alone"


def prover_proves_true_forms() -> str:
    """The true form of every false step is proved (the guards do not refuse everything)."""
    from rlmath.symbolic import prove_equal

    true_forms = [(name, true) for name, _, _, true in PROVER_CASES if true is not None]
    for name, (lhs, rhs) in true_forms:
        _check(prove_equal(lhs, rhs) is not None, f"the true form of {name!r} is not proved")
    return f"{len(true_forms)} true forms proved"


def random_points_refute_false_steps() -> str:
    """Random admissible points refute the false steps whose value can be evaluated."""
    from rlmath.symbolic import refuted_at_random_point

    chosen = (
        "log-product-of-reals",
        "log-square-of-real",
        "sqrt-square-of-real",
        "d-square-commuted",
        "d-cube-commuted",
        "d-inverse-on-the-left",
        "inner-sum-transposed",
    )
    table = {name: (lhs, rhs) for name, lhs, rhs, _ in PROVER_CASES}
    for name in chosen:
        lhs, rhs = table[name]
        _check(
            refuted_at_random_point(lhs, rhs, seed=0, trials=12) is not None,
            f"no random point refutes the false step {name!r}",
        )
    for name, _, _, true in PROVER_CASES:
        if true is not None and name in chosen:
            _check(
                refuted_at_random_point(*true, seed=3, trials=3) is None,
                f"a random point 'refutes' the true form of {name!r}",
            )
    return f"{len(chosen)} false steps refuted at random points, their true forms not"


def screen_stops_unsound_rewriting() -> str:
    """With a rewriting that maps everything to 0 installed, a false step is still refused."""
    from rlmath import symbolic

    saved = symbolic.REWRITINGS
    symbolic.REWRITINGS = (("everything is zero (self-test)", lambda e: sp.Integer(0)),)
    try:
        method = symbolic.prove_equal(_x**2 + sp.Rational(13, 7), _x + sp.Rational(17, 5))
    finally:
        symbolic.REWRITINGS = saved
    _check(
        method is None,
        f"an unsound rewriting proved a false step ({method!r}): the numeric screen did not run",
    )
    return "a false step was refused by the numeric screen although a rewriting maps it to 0"


def nonnegativity_is_decided_not_assumed() -> str:
    """``is_nonnegative`` proves p >= 0 and (p - 1)^2 >= 0, refuses x and p - 1."""
    from rlmath.symbolic import is_nonnegative

    _check(bool(is_nonnegative(_p)), "is_nonnegative(p) with p > 0 is not proved")
    _check(bool(is_nonnegative((_p - 1) ** 2)), "is_nonnegative((p - 1)^2) is not proved")
    for expression in (_x, _p - 1, -_p, sp.log(_p)):
        _check(
            not is_nonnegative(expression), f"is_nonnegative({expression}) accepted: sign unknown"
        )
    return "signs proved where known, refused where unknown"


def inequality_steps_need_a_nonnegative_gap() -> str:
    """x <= x + y is refused for real y (gap of unknown sign), proved for positive p."""
    from rlmath.claims import Derivation, Step

    def chain(gap: Any) -> Any:
        return Derivation("gap", (Step(_x, "start"), Step(_x + gap, "add the gap", "<=", gap)))

    _check(chain(_p).check_step(1) is not None, "x <= x + p with p > 0 is not proved")
    _check(chain(_y).check_step(1) is None, "x <= x + y is accepted with y of unknown sign")
    wrong = Derivation("gap", (Step(_x, "start"), Step(_x + _p, "a wrong gap", "<=", 2 * _p)))
    _check(wrong.check_step(1) is None, "an inequality step is accepted with a wrong gap")
    return "inequality steps proved only with a proved, non-negative gap"


def _canary_claim(statement_rhs: Any = None) -> Any:
    """A tiny claim: (x + 1)^2 = x^2 + 2x + 1, a wrong mutant and a crashing mutant.

    ``statement_rhs`` replaces the statement's right-hand side (the conclusion by default).
    """
    from hypothesis import strategies as st

    from rlmath.claims import (
        Claim,
        Derivation,
        ExactLeg,
        Mutant,
        Statement,
        Step,
        SymbolicLeg,
        SymbolicMutation,
    )
    from rlmath.tolerances import exact_rtol

    u = sp.Symbol("u", real=True)
    square = Derivation(
        "canary-square",
        (
            Step(sp.Pow(sp.Add(u, 1, evaluate=False), 2, evaluate=False), "start"),
            Step(sp.Add(u**2, 2 * u, 1, evaluate=False), "expand"),
        ),
    )

    def crash(example: float) -> float:
        raise RuntimeError("a deliberately crashing mutant (self-test canary)")

    return Claim(
        id="self-test-canary",
        title="canary",
        statement=Statement(
            square.start, square.conclusion if statement_rhs is None else statement_rhs
        ),
        assumptions=("u real",),
        references=("none: a self-test",),
        symbolic=SymbolicLeg((square,)),
        exact=ExactLeg(
            st.floats(-3.0, 3.0),
            lhs=lambda v: (v + 1.0) * (v + 1.0),
            symbols=(u,),
            arguments=lambda v: (v,),
            rtol=exact_rtol(n_terms=4),
            error_scale=lambda v: 1.0 + v * v,
            max_examples=5,
            description="(v + 1)(v + 1) vs the lambdified conclusion",
        ),
        mutants=(
            Mutant(
                "wrong",
                "u^2 + 2u: the constant dropped",
                SymbolicMutation("canary-square", u**2 + 2 * u),
            ),
            Mutant("crashing", "its exact leg raises", exact=crash),
        ),
    )


def verdicts_need_a_verdict() -> str:
    """On the canary, the wrong mutant is rejected and the crashing one is a defect."""
    from rlmath.verify import verify_claim

    result = verify_claim(_canary_claim(), seed=0)
    wrong, crashing = result.mutants
    _check(
        all(leg.ok for leg in result.legs.values()),
        f"the canary's legs failed: {result.failures()}",
    )
    _check(wrong.killed, "a wrong mutant of the canary was not rejected")
    _check(not crashing.killed, "a crashing mutant counted as rejected")
    _check(bool(crashing.defects), "a crashing mutant was not reported as a defect")
    _check(not result.verified, "a claim with a crashing mutant counted as verified")
    return "wrong mutant rejected by verdicts; crashing mutant reported as a defect"


def _permutation_without_fixed_point(size: int) -> np.ndarray:
    return np.roll(np.eye(size), 1, axis=1)


def discount_conditioning_bound_is_attained() -> str:
    r"""$\kappa_\infty(I - \gamma P) = (1+\gamma)/(1-\gamma)$ for a cyclic $P$, $\le$ for any $P$."""
    from rlmath.tolerances import discounted_condition_number

    rng = np.random.default_rng(0)
    for gamma in (0.0, 0.5, 0.9, 0.99, 0.999):
        bound = discounted_condition_number(gamma)
        for size in (2, 3, 5):
            cyclic = np.eye(size) - gamma * _permutation_without_fixed_point(size)
            attained = float(np.linalg.cond(cyclic, np.inf))
            _check(
                abs(attained - bound) <= 1e-9 * bound,
                f"discounted_condition_number({gamma}) = {bound:.17g}, but a {size}-cycle "
                f"attains kappa_inf(I - gamma P) = {attained:.17g}",
            )
            stochastic = rng.dirichlet(np.ones(size), size=size)
            other = float(np.linalg.cond(np.eye(size) - gamma * stochastic, np.inf))
            _check(
                other <= bound * (1 + 1e-9),
                f"kappa_inf(I - gamma P) = {other:.17g} exceeds the bound {bound:.17g}",
            )
    return "kappa_inf(I - gamma P) bound attained by cycles, respected by random P"


def central_difference_bound_is_attained() -> str:
    r"""The central-difference bound $M_3 h^2/6 + \delta/h$ is attained, and $h$ minimises it.

    For $f(x) = M_3 x^3/6$ (so $|f^{(3)}| = M_3$) and evaluation errors $+\delta$ at $x + h$
    and $-\delta$ at $x - h$, the central difference is off by exactly

    $$ \frac{f(x+h) + \delta - f(x-h) + \delta}{2h} - f'(x)
       = \frac{M_3 h^2}{6} + \frac{\delta}{h}, $$

    computed here in exact rational arithmetic at the step
    :func:`rlmath.tolerances.central_difference_step` returns: its bound must equal that worst
    case (not a looser or tighter number), and the worst case must be larger at $1.1 h$ and
    $h / 1.1$ (the step is the minimiser $(3\delta/M_3)^{1/3}$). The claims' checks never come
    near the worst case, so a tighter bound would change no verdict.
    """
    from fractions import Fraction

    from rlmath.tolerances import central_difference_step, exact_rtol

    def worst_case(third: float, delta: float, step: float) -> float:
        m3, d, h, x = Fraction(third), Fraction(delta), Fraction(step), Fraction(1, 3)

        def f(v: Fraction) -> Fraction:
            return m3 * v**3 / 6

        return float(((f(x + h) + d) - (f(x - h) - d)) / (2 * h) - m3 * x**2 / 2)

    cases = 0
    for third in (1e-3, 1.0, 6.0, 1e5):
        for delta in (1e-16, 1e-12, 1e-6):
            h, bound = central_difference_step(third, delta)
            attained = worst_case(third, delta, h)
            _check(
                abs(bound - attained) <= exact_rtol(n_terms=8) * attained,
                f"central_difference_step({third:g}, {delta:g}) bounds the error by {bound:.17g}, "
                f"but f = M3 x^3/6 with errors +-delta attains {attained:.17g} at h = {h:.6g}",
            )
            for other in (1.1 * h, h / 1.1):
                _check(
                    worst_case(third, delta, other) > attained,
                    f"central_difference_step({third:g}, {delta:g}): the step {h:.6g} does not "
                    f"minimise the bound (smaller at {other:.6g})",
                )
            cases += 1
    return f"central-difference bound attained and minimised by the step in {cases} cases"


def exact_inequalities_have_their_direction() -> str:
    """``violation(l, r, "<=")`` is 0 when l <= r and positive when l > r (">=": mirrored).

    No shipped claim's exact leg compares an inequality (their statements' inequalities are
    checked through equalities), so a reversed direction would change no verdict.
    """
    from rlmath.claims.exact_leg import violation

    for relation, holds, fails in (("<=", (1.0, 2.0), (2.0, 1.0)), (">=", (2.0, 1.0), (1.0, 2.0))):
        _check(violation(*holds, relation) == 0.0, f"{holds[0]} {relation} {holds[1]} is violated")
        _check(violation(*fails, relation) > 0.0, f"{fails[0]} {relation} {fails[1]} holds")
    return "exact-leg inequalities violated in their direction only"


def exact_control_needs_every_example() -> str:
    """The exact leg's control fails when one of its examples cannot reject the shifted rhs.

    On ``lhs = rhs = v`` with the error measured relative to 1, the shift of a thousand
    tolerances (about 1e-11) is lost in rounding at ``v = 1e20`` and rejected at ``v = 1/2``:
    with both among the control's examples, the control must say the leg cannot fail. Every
    shipped leg rejects the shift on every example, so a control content with *some* example
    would change no verdict.
    """
    from hypothesis import strategies as st

    from rlmath.claims import ExactLeg
    from rlmath.claims.exact_leg import CONTROL_EXAMPLES
    from rlmath.tolerances import exact_rtol

    leg = ExactLeg(
        st.sampled_from((0.5, 1e20)),
        lhs=lambda v: v,
        rhs=lambda v: v,
        rhs_reason="a self-test of the control",
        rtol=exact_rtol(),
        error_scale=lambda v: 1.0,
    )
    checked = (0.5,) * (CONTROL_EXAMPLES - 1) + (1e20,)  # the examples a run checked
    control = leg.control(0, lambda v: v, checked=checked)
    _check(
        not control["rejected"],
        "the exact control passed although one of its examples accepted the shifted rhs",
    )
    return "an exact control with one unrejected example reports that the leg cannot fail"


def statement_is_tied_to_the_conclusion() -> str:
    """A canary whose statement's rhs is not its derivation's conclusion fails the symbolic leg."""
    u = sp.Symbol("u", real=True)
    result = _canary_claim(statement_rhs=u**2 + 2 * u).symbolic.run(0)
    _check(
        result.status == "failed" and "statement rhs" in str(result.failure),
        f"a statement tied to the wrong conclusion was not caught: {result.status}, "
        f"{result.failure}",
    )
    return "a statement whose rhs is not the conclusion fails the symbolic leg"


def monte_carlo_control_is_demanded() -> str:
    """A Monte-Carlo leg whose true-claim run reports no rejected control is an error.

    :meth:`rlmath.claims.MonteCarloLeg.run` turns a verified true-claim result without
    ``evidence["control"]["rejected"] is True`` into an error (the leg has not shown that it
    can fail); a mutant's run (``variant`` given) is judged by its verdict alone.
    """
    from rlmath.claims.monte_carlo_leg import MonteCarloLeg
    from rlmath.claims.results import LegResult

    for evidence, what in (
        ({}, "no control"),
        ({"control": {"rejected": False}}, "an accepted control"),
    ):
        leg = MonteCarloLeg(lambda seed, variant, e=evidence: LegResult("verified", e))
        status = leg.run(0).status
        _check(
            status == "error", f"a Monte-Carlo leg reporting {what} was {status!r}, not an error"
        )
        status = leg.run(0, variant=lambda example, rng, n: None).status
        _check(
            status == "verified", f"a mutant's Monte-Carlo run was asked for a control: {status!r}"
        )
    return "a true-claim Monte-Carlo run without a rejected control is an error; mutants need none"


def _sigmoid_derivative_maximum(order: int) -> sp.Expr:
    r"""$\max_{0 \le \sigma \le 1} |\sigma^{(k)}|$, with $\sigma^{(k)}$ a polynomial in $\sigma$."""
    s = sp.Symbol("sigma", real=True)
    derivative: sp.Expr = s
    for _ in range(order):  # d/dtheta = sigma (1 - sigma) d/dsigma
        derivative = sp.expand(sp.diff(derivative, s) * s * (1 - s))
    critical = sp.real_roots(sp.Poly(sp.diff(derivative, s), s))
    candidates = [sp.Integer(0), sp.Integer(1), *[r for r in critical if 0 <= r <= 1]]
    return sp.Max(*[sp.Abs(derivative.subs(s, c)) for c in candidates])


def third_derivative_bound_is_the_majorant() -> str:
    r"""The softmax third-derivative bound equals the chain-rule majorant, computed another way.

    Differentiating $(I - \gamma P_\pi) V = r_\pi$ $k$ times and bounding term by term
    (Leibniz rule, $\|(I - \gamma P_\pi)^{-1}\|_\infty \le T$, $|Q| \le RT$) gives
    $B_k = T\,(D_k R T + \sum_{j=1}^{k-1} \binom{k}{j} D_j B_{k-j})$, where
    $D_k = 2 \max_\sigma |\sigma^{(k)}|$ is maximised exactly by sympy (the critical points of
    $\sigma^{(k)}$ as a polynomial in $\sigma$). $B_3$ must equal
    :func:`rlmath.tolerances.softmax_objective_third_derivative_bound` (a closed form with
    hard-coded $D_k$) at several $(R, T)$; an exponent or a coefficient off changes it by a
    factor of at least $T$ or 2 at $T = 10$.
    """
    from rlmath.tolerances import exact_rtol, softmax_objective_third_derivative_bound

    D = {k: float(2 * _sigmoid_derivative_maximum(k)) for k in (1, 2, 3)}
    cases = 0
    for R, T in ((1.0, 1.0), (2.0, 10.0), (0.5, 100.0), (3.0, 7.5)):
        B = {0: R * T}
        for k in (1, 2, 3):
            lower = sum(int(sp.binomial(k, j)) * D[j] * B[k - j] for j in range(1, k))
            B[k] = T * (D[k] * R * T + lower)
        shipped = softmax_objective_third_derivative_bound(R, T)
        _check(
            abs(shipped - B[3]) <= exact_rtol(n_terms=16) * B[3],
            f"softmax_objective_third_derivative_bound({R:g}, {T:g}) = {shipped:.17g}, but the "
            f"Leibniz majorant is {B[3]:.17g}",
        )
        cases += 1
    return f"third-derivative bound = Leibniz majorant (sympy-maximised D_k) in {cases} cases"


#: The self-tests, in the order they run: (name, check returning what it verified).
SELF_TESTS: tuple[tuple[str, Callable[[], str]], ...] = (
    ("prover refuses false steps", prover_refuses_false_steps),
    (
        "rewritings refuse false steps without the screen",
        rewritings_refuse_false_steps_without_the_screen,
    ),
    ("prover proves true forms", prover_proves_true_forms),
    ("random points refute false steps", random_points_refute_false_steps),
    ("numeric screen stops an unsound rewriting", screen_stops_unsound_rewriting),
    ("non-negativity decided, not assumed", nonnegativity_is_decided_not_assumed),
    ("inequality steps need a non-negative gap", inequality_steps_need_a_nonnegative_gap),
    ("a crash is a defect, not a rejection", verdicts_need_a_verdict),
    ("conditioning bound attained", discount_conditioning_bound_is_attained),
    ("central-difference bound attained", central_difference_bound_is_attained),
    ("exact inequalities have their direction", exact_inequalities_have_their_direction),
    ("exact control needs every example", exact_control_needs_every_example),
    ("statement tied to the conclusion", statement_is_tied_to_the_conclusion),
    ("Monte-Carlo control demanded", monte_carlo_control_is_demanded),
    ("third-derivative bound is the majorant", third_derivative_bound_is_the_majorant),
)


def run_self_tests() -> list[SelfTestResult]:
    """Run :data:`SELF_TESTS`; an exception in one is its failure (with the reason), never raised."""
    results = []
    for name, check in SELF_TESTS:
        start = time.perf_counter()
        try:
            detail, passed = check(), True
        except SelfTestFailure as failure:
            detail, passed = str(failure), False
        except Exception as exc:  # a crash of the machinery is a failure too
            detail, passed = f"raised {type(exc).__name__}: {exc}", False
        results.append(SelfTestResult(name, passed, detail, time.perf_counter() - start))
    return results
