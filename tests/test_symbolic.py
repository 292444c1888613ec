"""The prover refuses false steps, proves their true forms, and checks itself at random points."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest
import sympy as sp

from rlmath import symbolic
from rlmath.self_test import PROVER_CASES as CASES
from rlmath.symbolic import (
    LESS_THAN_ONE,
    ProverBug,
    Refutation,
    disproved_at_random_point,
    domain_problem,
    is_nonnegative,
    prove_equal,
    refuted_at_random_point,
)

x, y = sp.symbols("x y", real=True)
a, b = sp.symbols("a b", real=True)
p, q = sp.symbols("p q", positive=True)
z = sp.Symbol("z")  # complex
t = sp.Symbol("t", real=True)
A = sp.Function("A", commutative=False)(t)  # a matrix depending on t
dA = sp.Derivative(A, t)


def d(expression: sp.Expr, variable: sp.Symbol = t) -> sp.Derivative:
    return sp.Derivative(expression, variable)


def at(expression: sp.Expr, variable: sp.Symbol, value: sp.Expr) -> sp.Subs:
    """d expression / d variable at ``variable = value``."""
    return sp.Subs(sp.Derivative(expression, variable), variable, value)


def ramp(v: sp.Expr) -> sp.Piecewise:
    return sp.Piecewise((v, v > 0), (0, True))


# The table lives in rlmath.self_test so that `rlmath verify` runs it too (a self-test).
FALSE_STEPS = [pytest.param(lhs, rhs, id=name) for name, lhs, rhs, _ in CASES]
TRUE_STEPS = [pytest.param(*true, id=name) for name, _, _, true in CASES if true is not None]


def test_the_table_is_large_enough():
    assert len(FALSE_STEPS) >= 15
    assert len(TRUE_STEPS) >= 15


@pytest.mark.parametrize(("lhs", "rhs"), FALSE_STEPS)
def test_false_step_is_refused(lhs, rhs):
    assert prove_equal(lhs, rhs) is None


@pytest.mark.parametrize(("lhs", "rhs"), TRUE_STEPS)
def test_true_form_is_proved(lhs, rhs):
    assert prove_equal(lhs, rhs) is not None


@pytest.mark.parametrize(("lhs", "rhs"), TRUE_STEPS)
def test_true_form_is_never_refuted(lhs, rhs):
    assert refuted_at_random_point(lhs, rhs, seed=3, trials=3) is None


@pytest.mark.parametrize(
    ("lhs", "rhs"),
    [
        pytest.param(sp.log(x * y), sp.log(x) + sp.log(y), id="log-product-of-reals"),
        pytest.param(sp.log(x**2), 2 * sp.log(x), id="log-square-of-real"),
        pytest.param(sp.sqrt(x**2), x, id="sqrt-square-of-real"),
        pytest.param(d(A**2), 2 * A * dA, id="d-square-commuted"),
        pytest.param(d(A**3), 3 * A**2 * dA, id="d-cube-commuted"),
        pytest.param(d(A**-1), -(A**-2) * dA, id="d-inverse-on-the-left"),
    ],
)
def test_false_steps_are_refuted_at_a_random_point(lhs, rhs):
    assert refuted_at_random_point(lhs, rhs, trials=12) is not None


# ----------------------------------------------------------------------------- domain guards
def test_domain_problem_names_the_reason():
    assert "denominator factor y" in domain_problem((x * y + y) / y, x + 1)
    assert domain_problem((x * p + p) / p, x + 1) is None
    assert "kink" in domain_problem(d(sp.Abs(x), x), sp.sign(x))
    assert "non-integer power" in domain_problem(d(sp.sqrt(A)), 0)
    assert domain_problem(d(A**2), dA * A + A * dA) is None


def test_a_denominator_shared_by_both_sides_is_allowed():
    assert prove_equal(x / y + 1 / y, (x + 1) / y) is not None


def test_a_summation_index_knows_its_range():
    n = sp.Symbol("n", integer=True, nonnegative=True)
    k = sp.Symbol("k", integer=True)
    lam = sp.Symbol("lambda", real=True)
    # 0**k and lam**k are no denominators for k = 1..n, though k alone is any integer
    assert domain_problem(sp.Sum(lam**k, (k, 1, n)), lam * sp.Sum(lam**k, (k, 0, n - 1))) is None
    assert prove_equal(sp.Sum(0**k, (k, 1, n)), 0) is not None


def test_a_discount_below_one_keeps_one_over_one_minus_gamma():
    gamma = sp.Symbol("gamma", positive=True)
    below = sp.Symbol("gamma", positive=True, **{LESS_THAN_ONE: True})
    non_integer = sp.Symbol("gamma", positive=True, integer=False)
    for g in (below, non_integer):
        assert prove_equal(sp.Mul(1 / (1 - g), 1 - g, x, evaluate=False), x) is not None
    assert prove_equal(sp.Mul(1 / (1 - gamma), 1 - gamma, x, evaluate=False), x) is None


def test_less_than_one_makes_one_minus_x_positive_for_logs():
    u = sp.Symbol("u", positive=True, **{LESS_THAN_ONE: True})
    assert prove_equal(sp.log((1 - u) ** 2), 2 * sp.log(1 - u)) is not None
    assert prove_equal(sp.log((1 - p) ** 2), 2 * sp.log(1 - p)) is None


def test_the_ppo_style_kink_away_from_the_point_is_proved():
    epsilon, rho = sp.symbols("epsilon rho", positive=True)
    r = sp.Symbol("r", real=True)
    clipped = sp.Min(r * p, sp.Min(sp.Max(r, 1 - epsilon), 1 + epsilon) * p, evaluate=False)
    assert prove_equal(at(clipped, r, 1 + epsilon + rho), 0) is not None
    assert prove_equal(at(clipped, r, 1 + epsilon), 0) is None  # on the kink


# ----------------------------------------------------------------------------- random points
def test_refutes_non_commuting_matrices():
    B = sp.Symbol("B", commutative=False)
    C = sp.Symbol("C", commutative=False)
    found = refuted_at_random_point(B * C, C * B)
    assert isinstance(found, Refutation)
    assert "random 3x3 rational matrix" in found.point
    assert refuted_at_random_point((1 - B) ** -1 * (1 - B), sp.Integer(1)) is None


def test_refutes_a_false_identity_with_an_undefined_function():
    f = sp.Function("f")
    assert refuted_at_random_point(d(f(x) ** 2, x), d(f(x), x)) is not None
    assert refuted_at_random_point(d(f(x) ** 2, x), 2 * f(x) * d(f(x), x)) is None
    g = sp.Function("g", positive=True)
    assert refuted_at_random_point(d(sp.log(g(x, y)), y), d(g(x, y), y) / g(x, y)) is None


def test_refutes_a_false_sum_identity_with_a_symbolic_size():
    n = sp.Symbol("n", integer=True, positive=True)
    i = sp.Symbol("i", integer=True)
    w = sp.IndexedBase("w", positive=True)
    found = refuted_at_random_point(
        sp.Sum(w[i] ** 2, (i, 0, n - 1)), sp.Sum(w[i], (i, 0, n - 1)) ** 2
    )
    assert found is not None
    assert "n=" in found.point and "w[0]=" in found.point
    total = symbolic.IndexSum(w[i], (i, 0, n - 1))
    assert refuted_at_random_point(sp.Sum(w[i] / total, (i, 0, n - 1)), 1) is None


def test_refutation_is_a_frozen_report():
    found = refuted_at_random_point(x**2, x)
    assert found is not None
    assert str(found).startswith("refuted at x=")
    assert "lhs=" in str(found) and "rhs=" in str(found)
    assert found.difference > 0
    with pytest.raises(FrozenInstanceError):
        found.lhs = "0"  # type: ignore[misc]


def test_refutes_matrices_entrywise_and_respects_assumptions():
    assert refuted_at_random_point(sp.Matrix([x, 1]), sp.Matrix([x, 2])) is not None
    assert refuted_at_random_point(sp.Abs(p), p) is None  # p > 0 gets positive values only
    assert refuted_at_random_point(sp.Abs(x), x, trials=6) is not None


def test_derivatives_and_substitutions_are_evaluated_after_substitution():
    h = sp.Symbol("h", real=True)
    assert refuted_at_random_point(at(sp.exp(2 * h), h, 0), 2) is None
    assert refuted_at_random_point(at(sp.exp(2 * h), h, 0), 1) is not None
    assert refuted_at_random_point(sp.Derivative(sp.sin(h), (h, 2)), -sp.sin(h)) is None


def test_what_cannot_be_evaluated_is_inconclusive():
    assert refuted_at_random_point(sp.Limit(1 / x, x, sp.oo), 1) is None
    assert not disproved_at_random_point(sp.Limit(1 / x, x, sp.oo), 1)
    assert disproved_at_random_point(x + 1, x)


# ----------------------------------------------------------------------------- prover bugs
def test_an_unsound_rewriting_cannot_accept_a_false_step(monkeypatch):
    monkeypatch.setattr(symbolic, "REWRITINGS", (("everything is zero", lambda e: sp.Integer(0)),))
    assert prove_equal(x**2 + sp.Rational(13, 7), x + sp.Rational(17, 5)) is None
    # the true step is still "proved" by it: the screen refuses only what a point refutes
    assert prove_equal(x + 1, 1 + x) == "everything is zero"


def test_an_unsound_nonnegativity_is_caught(monkeypatch):
    class Liar(sp.Function):  # claims to be non-negative, is not
        def _eval_is_extended_nonnegative(self) -> bool:
            return True

        def _eval_is_extended_real(self) -> bool:
            return True

        def _eval_is_finite(self) -> bool:
            return True

        def doit(self, **hints: object) -> sp.Expr:
            return self.args[0] - 1

    assert isinstance(ProverBug("x"), AssertionError)
    with pytest.raises(ProverBug):
        is_nonnegative(Liar(sp.Rational(1, 3)))
