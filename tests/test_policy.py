r"""Tests of ``rlmath.policy``: softmax probabilities, score, entropy and Fisher information.

Finite-difference tolerance for the score: along one logit $\theta_{s,b}$,
$\partial \log\pi(a|s) = 1[a=b] - \pi(b|s)$, $\partial^2 = -\sigma'$ and $\partial^3 = -\sigma''$
with $\sigma$ the logistic function, so $M_3 = \max|\sigma''| = 1/(6\sqrt3)$. One evaluation of
``log_softmax`` is off by at most $\delta$ = ``exact_rtol(n_terms=A)`` times the largest logit
magnitude (the shift by the maximum and the log-sum-exp of $A$ terms), and the central
difference is within $M_3 h^2/6 + \delta/h$ (``rlmath.tolerances.central_difference_step``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmath import SoftmaxPolicy
from rlmath.policy import as_probabilities, log_softmax
from rlmath.testing import (
    central_difference_gradient,
    logits,
    probability_vectors,
    softmax_policies,
)
from rlmath.tolerances import central_difference_step, exact_rtol

shapes = st.tuples(st.integers(1, 4), st.integers(1, 4))


@st.composite
def policies(draw, max_abs_logit=10.0):
    n_states, n_actions = draw(shapes)
    return draw(softmax_policies(n_states, n_actions, max_abs_logit=max_abs_logit))


def all_pairs(policy: SoftmaxPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Every (s, a) as two [S, A] integer arrays."""
    return np.indices(policy.theta.shape)


# ----------------------------------------------------------------------------- probabilities
@given(policies(max_abs_logit=1e4))
def test_log_probabilities_are_finite_for_huge_logits(policy):
    log_p = policy.log_probabilities()
    assert np.isfinite(log_p).all() and (log_p <= 0).all()
    atol = exact_rtol(n_terms=policy.n_actions)
    assert (log_p.max(axis=1) >= -np.log(policy.n_actions) - atol).all()  # the likeliest action
    np.testing.assert_allclose(policy.probabilities().sum(axis=1), 1.0, rtol=0, atol=atol)


def test_log_softmax_of_extreme_logits():
    """[1e4, -1e4]: the shift makes the exponents 0 and -2e4; exp(-2e4) underflows to 0."""
    assert log_softmax(np.array([1e4, -1e4])).tolist() == [0.0, -2e4]
    assert log_softmax(np.array([-1e4, -1e4])).tolist() == pytest.approx([-np.log(2)] * 2)


def test_log_softmax_accepts_array_likes_and_minus_inf():
    np.testing.assert_array_equal(log_softmax([1.0, 1.0]), log_softmax(np.array([1.0, 1.0])))
    assert log_softmax([[0.0, -np.inf]]).tolist() == [[0.0, -np.inf]]  # a masked action


@pytest.mark.parametrize(
    "theta",
    [
        pytest.param([[1.7e308, -1.7e308]], id="max-and-min"),
        pytest.param([[-1.7e308, 1.7e308, 0.0]], id="max-min-and-zero"),
        pytest.param([[1.7e308, 1.7e308]], id="two-maxima"),
    ],
)
def test_entropy_and_probabilities_at_the_float_range(theta):
    """Logits +-1.7e308: x - max overflows to -inf, so those actions get probability 0 exactly."""
    policy = SoftmaxPolicy(theta)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        entropy = policy.entropy()
        probabilities = policy.probabilities()
    top = np.asarray(theta) == np.max(theta)
    expected = np.where(top, 1.0 / top.sum(), 0.0)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-15)
    np.testing.assert_allclose(entropy, [np.log(top.sum())], rtol=1e-15)


def test_probabilities_by_hand():
    """Logits (0, log 3): weights 1 and 3 out of 4."""
    policy = SoftmaxPolicy([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(policy.probabilities(), [[0.25, 0.75]], rtol=4 * exact_rtol())
    np.testing.assert_allclose(policy.score(0, 1), [[-0.25, 0.25]], rtol=4 * exact_rtol())


@given(policies())
def test_probabilities_are_invariant_to_shifting_a_row(policy):
    shifted = SoftmaxPolicy(policy.theta + np.arange(policy.n_states)[:, None])
    atol = exact_rtol(n_terms=policy.n_actions) * (1 + np.abs(policy.theta).max())
    np.testing.assert_allclose(shifted.probabilities(), policy.probabilities(), rtol=0, atol=atol)


# ----------------------------------------------------------------------------- score
@given(policies())
def test_score_equals_finite_difference_of_log_probabilities(policy):
    A = policy.n_actions
    delta = exact_rtol(n_terms=A) * max(1.0, 2 * float(np.abs(policy.theta).max()))
    h, bound = central_difference_step(1.0 / (6.0 * np.sqrt(3.0)), delta)
    fd = central_difference_gradient(log_softmax, policy.theta, h)
    fd = fd.transpose(2, 3, 0, 1)  # [s', b, s, a] -> [s, a, s', b] like policy.score
    np.testing.assert_allclose(policy.score(*all_pairs(policy)), fd, rtol=0, atol=bound)


@given(policies())
def test_score_row_is_the_nonzero_row_of_the_score(policy):
    states, actions = all_pairs(policy)
    full = policy.score(states, actions)
    rows = policy.score_row(states, actions)
    np.testing.assert_array_equal(full[states, actions, states], rows)
    full[states, actions, states] = 0.0
    assert (full == 0).all()


@given(policies())
def test_expected_score_is_zero(policy):
    """sum_a pi(a|s) grad log pi(a|s) = grad sum_a pi(a|s) = 0."""
    states, actions = all_pairs(policy)
    expected = np.einsum("sa,sab->sb", policy.probabilities(), policy.score_row(states, actions))
    np.testing.assert_allclose(expected, 0.0, rtol=0, atol=exact_rtol(n_terms=policy.n_actions))


# ----------------------------------------------------------------------------- entropy, Fisher
@given(policies(max_abs_logit=1e4))
def test_entropy_is_between_zero_and_log_actions(policy):
    H = policy.entropy()
    atol = exact_rtol(n_terms=policy.n_actions) * max(1.0, np.log(policy.n_actions))
    assert H.shape == (policy.n_states,)
    assert (H >= 0).all()
    assert (H <= np.log(policy.n_actions) + atol).all()


def test_uniform_policy_has_maximal_entropy():
    np.testing.assert_allclose(SoftmaxPolicy.uniform(2, 5).entropy(), np.log(5), rtol=exact_rtol(5))


@given(policies(), st.data())
def test_fisher_information_is_expected_outer_product_of_scores(policy, data):
    S, A = policy.theta.shape
    weights = data.draw(probability_vectors(S), label="state weights")
    pi = policy.probabilities()
    states, actions = all_pairs(policy)
    g = policy.score(states, actions).reshape(S, A, S * A)
    enumerated = np.einsum("s,sa,sai,saj->ij", weights, pi, g, g)
    atol = exact_rtol(n_terms=S * A)
    np.testing.assert_allclose(policy.fisher_information(weights), enumerated, rtol=0, atol=atol)
    rows = policy.score_row(states, actions)  # [S, A, A]: row s of each score
    per_state = np.einsum("sa,sai,saj->sij", pi, rows, rows)
    np.testing.assert_allclose(policy.state_fisher_information(), per_state, rtol=0, atol=atol)


# ----------------------------------------------------------------------------- bad input
BAD_CALLS = [
    pytest.param(
        lambda: SoftmaxPolicy([0.0, 1.0]),
        ValueError,
        r"theta must have 2 dimensions, got shape \(2,\)",
        id="theta-one-dimensional",
    ),
    pytest.param(
        lambda: SoftmaxPolicy(np.zeros((1, 2, 3))),
        ValueError,
        "theta must have 2 dimensions",
        id="theta-three-dimensional",
    ),
    pytest.param(
        lambda: SoftmaxPolicy(np.zeros((0, 2))),
        ValueError,
        "theta must have at least one state and action",
        id="theta-empty",
    ),
    pytest.param(
        lambda: SoftmaxPolicy([[0.0, np.nan]]),
        ValueError,
        r"theta must be finite, got .*nan.* at index \(0, 1\)",
        id="theta-nan",
    ),
    pytest.param(
        lambda: SoftmaxPolicy([[0.0], [-np.inf]]),
        ValueError,
        r"theta must be finite, got .*inf.* at index \(1, 0\)",
        id="theta-infinite",
    ),
    pytest.param(
        lambda: SoftmaxPolicy([["a", "b"]]),
        TypeError,
        "theta must be an array of real numbers",
        id="theta-strings",
    ),
    pytest.param(
        lambda: SoftmaxPolicy([[1j, 0.0]]),
        TypeError,
        "theta must be",
        id="theta-complex",
    ),
    pytest.param(
        lambda: SoftmaxPolicy.uniform(2, 2).score(0.5, 0),
        TypeError,
        "states must be integers",
        id="score-float-state",
    ),
    pytest.param(
        lambda: SoftmaxPolicy.uniform(2, 2).score(0, 2),
        ValueError,
        r"actions must be in \[0, 2\), got 2",
        id="score-action-out-of-range",
    ),
    pytest.param(
        lambda: SoftmaxPolicy.uniform(2, 2).score([0, 1], [0]),
        ValueError,
        "states and actions must have the same shape",
        id="score-shape-mismatch",
    ),
    pytest.param(
        lambda: SoftmaxPolicy.uniform(2, 2).fisher_information([1.0]),
        ValueError,
        r"state_weights must have shape \[S\] = \(2,\), got \(1,\)",
        id="fisher-weights-shape",
    ),
    pytest.param(
        lambda: SoftmaxPolicy.uniform(2, 2).fisher_information([0.7, 0.7]),
        ValueError,
        "state_weights must sum to 1",
        id="fisher-weights-not-distribution",
    ),
    pytest.param(
        lambda: as_probabilities([[0.5, 0.5]], 2, 2),
        ValueError,
        r"policy must have shape \[S, A\] = \(2, 2\), got \(1, 2\)",
        id="as-probabilities-shape",
    ),
    pytest.param(
        lambda: as_probabilities([[-0.5, 1.5]], 1, 2),
        ValueError,
        r"policy must be non-negative, got .*-0.5.* at index \(0, 0\)",
        id="as-probabilities-negative",
    ),
    pytest.param(
        lambda: log_softmax(np.array([])),
        ValueError,
        r"logits must not be empty, got shape \(0,\)",
        id="log-softmax-empty",
    ),
    pytest.param(
        lambda: log_softmax(np.zeros((2, 0))),
        ValueError,
        r"logits must not be empty, got shape \(2, 0\)",
        id="log-softmax-empty-rows",
    ),
    pytest.param(
        lambda: log_softmax([0.0, np.nan]),
        ValueError,
        r"logits must be finite or -inf .*got .*nan.* at index \(1,\)",
        id="log-softmax-nan",
    ),
    pytest.param(
        lambda: log_softmax([[0.0, np.inf]]),
        ValueError,
        r"logits must be finite or -inf .*got .*inf.* at index \(0, 1\)",
        id="log-softmax-plus-inf",
    ),
    pytest.param(
        lambda: log_softmax([[0.0, 1.0], [-np.inf, -np.inf]]),
        ValueError,
        "logits must have a finite entry along axis -1",
        id="log-softmax-row-all-minus-inf",
    ),
    pytest.param(
        lambda: log_softmax(["a", "b"]),
        TypeError,
        "logits must be an array of real numbers",
        id="log-softmax-strings",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_bad_input_is_rejected_with_its_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


@given(logits((2, 3)))
def test_policies_are_read_only(theta):
    policy = SoftmaxPolicy(theta)
    with pytest.raises(ValueError, match="read-only"):
        policy.theta[0, 0] = 1.0
