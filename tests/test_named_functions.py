"""Named sub-expressions: printed by name, proved, evaluated and lambdified by definition."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from rlmath.named_functions import Named, SoftmaxProbability, definitions, softmax_probabilities
from rlmath.symbolic import prove_equal, refuted_at_random_point

theta = sp.IndexedBase("theta", real=True)
x = sp.Symbol("x", real=True)
PI = softmax_probabilities([theta[0], theta[1], theta[2]])


def quotient(v: int) -> sp.Expr:
    """The softmax entry written out by hand (not by the class under test)."""
    return sp.exp(theta[v]) / (sp.exp(theta[0]) + sp.exp(theta[1]) + sp.exp(theta[2]))


@pytest.mark.parametrize("v", [0, 1, 2])
def test_softmax_doit_is_the_quotient(v: int) -> None:
    assert sp.simplify(PI[v].doit() - quotient(v)) == 0


@pytest.mark.parametrize(("v", "w"), [(0, 0), (0, 1), (2, 1), (1, 1)])
def test_softmax_derivative_matches_the_definition(v: int, w: int) -> None:
    # fdiff (sympy's chain rule on the kept-whole function) against d/d theta_w of the quotient
    by_rule = sp.diff(PI[v], theta[w]).doit()
    by_definition = sp.diff(quotient(v), theta[w])
    assert sp.simplify(by_rule - by_definition) == 0


def test_softmax_prints_by_name_and_lambdifies_to_the_quotient() -> None:
    assert sp.latex(PI[1]) == r"\pi_{1}"
    assert sp.latex(SoftmaxProbability(1, theta[2, 0], theta[2, 1]) ** 2) == r"\pi_{2,1}^{2}"
    logits = np.array([0.3, -1.0, 2.0])
    value = sp.lambdify([theta], PI[2], modules="numpy")(logits)
    assert value == pytest.approx(np.exp(logits[2]) / np.exp(logits).sum(), rel=1e-15)
    assert PI[0].is_positive


def test_the_prover_proves_and_refutes_steps_through_the_definition() -> None:
    step = sp.Derivative(sp.log(PI[0]), theta[0])
    assert prove_equal(step, 1 - PI[0]) is not None
    assert prove_equal(step, 1 - PI[1]) is None  # 1 - pi_1 is not 1 - pi_0 with three logits
    assert refuted_at_random_point(step, 1 - PI[1]) is not None


def test_named_prints_its_name_and_stands_for_its_expression() -> None:
    m = Named(r"m_{2}", x**2)
    assert sp.latex(3 * m) == r"3 m_{2}"
    assert m.doit() == x**2
    assert sp.Derivative(m, x).doit() == 2 * x
    assert prove_equal(m + m, 2 * x**2) is not None
    assert refuted_at_random_point(m, x**3) is not None


def test_definitions_lists_each_name_once_nested_ones_after() -> None:
    J = Named("J", PI[0] * x + PI[1])
    found = [(sp.latex(name), definition) for name, definition in definitions([J, J * 2])]
    assert [name for name, _ in found] == ["J", r"\pi_{v}"]
    assert found[0][1] == PI[0] * x + PI[1]


def test_definitions_refuse_two_meanings_of_one_name() -> None:
    with pytest.raises(ValueError, match="two definitions are named J"):
        definitions([Named("J", x), Named("J", x + 1)])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda: SoftmaxProbability(0, theta[0]), "at least two logits", id="one-logit"),
        pytest.param(
            lambda: SoftmaxProbability(2, theta[0], theta[1]), r"in \[0, 2\), got 2", id="index"
        ),
        pytest.param(
            lambda: SoftmaxProbability(x, theta[0], theta[1]), "index must be an integer", id="symbol"
        ),
        pytest.param(lambda: Named("", x), "non-empty LaTeX string", id="empty-name"),
    ],
)
def test_bad_arguments(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        build()
