"""Tests of the Hypothesis strategies in ``rlmath.testing``: validity, coverage, shrinking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from rlmath import SoftmaxPolicy, TabularMDP
from rlmath.testing import (
    NEAR_DETERMINISTIC_MASS,
    logits,
    mdps_and_policies,
    probability_vectors,
    softmax_policies,
    tabular_mdps,
)
from rlmath.tolerances import EPS

#: find() settings: no example database (nothing written to disk), enough examples to reach
#: the rarer branches of the strategies.
SEARCH = settings(database=None, max_examples=1000)

TINY = float(np.finfo(np.float64).tiny)  # smallest normal float64


def minimal(strategy, condition=lambda value: True):
    """The simplest example of ``strategy`` satisfying ``condition`` (shrunk by Hypothesis)."""
    return find(strategy, condition, settings=SEARCH)


# ----------------------------------------------------------------------------- validity
@given(probability_vectors(min_size=1, max_size=6))
def test_probability_vectors_are_distributions_without_subnormals(p):
    assert p.dtype == np.float64 and p.ndim == 1 and 1 <= p.size <= 6
    assert (p >= 0).all()
    assert abs(p.sum() - 1.0) <= p.size * EPS  # normalised in float64: a few ulps
    positive = p[p > 0]
    assert (positive >= 1e-12 * (1 - p.size * EPS)).all()  # min_probability, up to rounding
    assert (positive >= TINY).all()


@given(probability_vectors(4, allow_zeros=False, min_probability=0.01))
def test_probability_vectors_respect_min_probability_without_zeros(p):
    assert p.shape == (4,)
    assert (p >= 0.01 * (1 - 4 * EPS)).all()


@given(probability_vectors(st.integers(2, 3)))
def test_probability_vectors_accept_a_size_strategy(p):
    assert p.size in (2, 3)


@given(logits((2, 3), max_abs=1e4))
def test_logits_are_bounded_and_normal(theta):
    assert theta.shape == (2, 3) and theta.dtype == np.float64
    assert (np.abs(theta) <= 1e4).all()
    assert ((theta == 0) | (np.abs(theta) >= TINY)).all()


@given(softmax_policies(3, 2, max_abs_logit=5.0))
def test_softmax_policies_have_the_requested_shape(policy):
    assert isinstance(policy, SoftmaxPolicy)
    assert policy.theta.shape == (3, 2) and (np.abs(policy.theta) <= 5.0).all()


@given(tabular_mdps(min_states=2, max_states=3, min_actions=2, max_actions=2, sparse=True))
def test_tabular_mdps_respect_bounds_and_storage(mdp):
    assert isinstance(mdp, TabularMDP) and mdp.is_sparse
    assert 2 <= mdp.n_states <= 3 and mdp.n_actions == 2
    assert 0.0 <= mdp.gamma <= 0.95 and mdp.horizon is None
    assert (np.abs(mdp.r) <= 1.0).all()


@given(tabular_mdps(horizon=st.integers(1, 3), gamma=1.0))
def test_tabular_mdps_with_a_finite_horizon(mdp):
    assert mdp.horizon in (1, 2, 3) and mdp.gamma == 1.0


@given(mdps_and_policies(tabular_mdps(max_states=3), max_abs_logit=2.0))
def test_mdps_and_policies_match_in_shape(pair):
    mdp, policy = pair
    assert policy.theta.shape == (mdp.n_states, mdp.n_actions)
    assert (np.abs(policy.theta) <= 2.0).all()


# ----------------------------------------------------------------------------- coverage
@pytest.mark.parametrize(
    "condition",
    [
        pytest.param(lambda p: (p == 0).any() and p.max() < 1, id="exact-zeros"),
        pytest.param(lambda p: p.max() == 1.0, id="one-hot"),
        pytest.param(
            lambda p: 1 - 2 * NEAR_DETERMINISTIC_MASS < p.max() < 1, id="near-deterministic"
        ),
        pytest.param(lambda p: 0.2 < p.min() and p.max() < 0.6, id="spread"),
    ],
)
def test_probability_vectors_reach_every_kind(condition):
    assert condition(minimal(probability_vectors(3), condition))


def test_tabular_mdps_reach_near_deterministic_and_zero_transitions():
    def both(mdp):
        return (mdp.P == 0).any() and ((mdp.P > 1 - 1e-8) & (mdp.P < 1)).any()

    assert both(minimal(tabular_mdps(min_states=2), both))


# ----------------------------------------------------------------------------- shrinking
def test_probability_vectors_shrink_to_uniform():
    assert minimal(probability_vectors(4)).tolist() == [0.25] * 4


def test_tabular_mdps_shrink_to_the_smallest_simplest_mdp():
    mdp = minimal(tabular_mdps(min_states=2, max_states=4, min_actions=1, max_actions=3))
    assert (mdp.n_states, mdp.n_actions, mdp.gamma) == (2, 1, 0.0)
    assert (mdp.r == 0).all()
    np.testing.assert_array_equal(mdp.rho0, [0.5, 0.5])


@pytest.mark.parametrize("states", [3, 4])
def test_tabular_mdps_shrink_to_the_fewest_states_that_fail(states):
    mdp = minimal(tabular_mdps(max_states=5), lambda m: m.n_states >= states)
    assert (mdp.n_states, mdp.n_actions) == (states, 1)


def test_softmax_policies_shrink_to_uniform():
    policy = minimal(softmax_policies(2, 3))
    assert (policy.theta == 0).all()


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("function", "kwargs", "message"),
    [
        pytest.param(probability_vectors, {"size": 0}, "size must be >= 1", id="size-zero"),
        pytest.param(
            probability_vectors, {"size": 2.5}, "size must be an integer", id="size-float"
        ),
        pytest.param(
            probability_vectors, {"size": True}, "size must be an integer", id="size-bool"
        ),
        pytest.param(
            probability_vectors, {"size": 3, "max_size": 4}, "either size or", id="size-and-max"
        ),
        pytest.param(probability_vectors, {"min_size": 0}, "min_size must be >= 1", id="min-size"),
        pytest.param(
            probability_vectors,
            {"min_size": 3, "max_size": 2},
            "max_size=2 < min_size=3",
            id="max-size-below-min",
        ),
        pytest.param(
            probability_vectors, {"allow_zeros": 1}, "allow_zeros must be a bool", id="zeros-int"
        ),
        pytest.param(
            probability_vectors, {"min_probability": 0.0}, "min_probability", id="min-prob-zero"
        ),
        pytest.param(
            probability_vectors,
            {"min_probability": float("nan")},
            "min_probability",
            id="min-prob-nan",
        ),
        pytest.param(
            probability_vectors,
            {"size": 3, "min_probability": 0.5},
            "min_probability=0.5 is infeasible",
            id="min-prob-infeasible",
        ),
        pytest.param(logits, {"shape": -1}, "shape must be >= 0", id="logits-shape"),
        pytest.param(logits, {"shape": (2, "a")}, r"shape\[1\] must be", id="logits-shape-entry"),
        pytest.param(
            logits, {"shape": 2, "max_abs": -1.0}, "max_abs must be >= 0", id="logits-negative"
        ),
        pytest.param(
            logits,
            {"shape": 2, "max_abs": float("inf")},
            "max_abs must be finite",
            id="logits-infinite",
        ),
        pytest.param(
            softmax_policies, {"n_states": 0, "n_actions": 2}, "n_states", id="policy-states"
        ),
        pytest.param(
            softmax_policies, {"n_states": 1, "n_actions": 1.0}, "n_actions", id="policy-actions"
        ),
        pytest.param(
            softmax_policies,
            {"n_states": 1, "n_actions": 1, "max_abs_logit": "big"},
            "max_abs must be a real number",
            id="policy-logit-bound",
        ),
        pytest.param(tabular_mdps, {"min_states": 0}, "min_states must be >= 1", id="min-states"),
        pytest.param(
            tabular_mdps,
            {"min_states": 5, "max_states": 4},
            "max_states=4 < min_states=5",
            id="states-interval",
        ),
        pytest.param(
            tabular_mdps,
            {"min_actions": 3, "max_actions": 2},
            "max_actions=2 < min_actions=3",
            id="actions-interval",
        ),
        pytest.param(tabular_mdps, {"gamma": 1.0}, "infinite horizon", id="gamma-one-infinite"),
        pytest.param(tabular_mdps, {"gamma": 1.5, "horizon": 3}, "gamma must be in", id="gamma"),
        pytest.param(tabular_mdps, {"horizon": 0}, "horizon must be >= 1", id="horizon"),
        pytest.param(tabular_mdps, {"sparse": "yes"}, "sparse must be a bool", id="sparse"),
        pytest.param(tabular_mdps, {"max_abs_reward": -1}, "max_abs_reward", id="reward-bound"),
        pytest.param(
            tabular_mdps,
            {"max_states": 4, "min_probability": 0.3},
            "min_probability=0.3 is infeasible",
            id="mdp-min-prob",
        ),
        pytest.param(mdps_and_policies, {"mdps": 3}, "mdps must be a SearchStrategy", id="mdps"),
        pytest.param(mdps_and_policies, {"max_abs_logit": -2.0}, "max_abs", id="pair-logits"),
    ],
)
def test_invalid_arguments_raise_invalid_argument(function, kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        function(**kwargs).validate()


def test_invalid_drawn_size_raises_invalid_argument():
    with pytest.raises(InvalidArgument, match="size must be >= 1"):
        minimal(probability_vectors(st.just(0)))
