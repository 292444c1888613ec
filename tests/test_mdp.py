"""Tests of ``rlmath.mdp.TabularMDP``: validation, storage views and constructors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from rlmath import TabularMDP
from rlmath.testing import tabular_mdps
from rlmath.tolerances import PROBABILITY_SUM_ATOL, exact_rtol

P2 = np.full((2, 2, 2), 0.5)  # two states, two actions, uniform transitions
R2 = np.zeros((2, 2))
RHO2 = [0.5, 0.5]


def with_entry(array, index, value):
    out = np.array(array, dtype=float)
    out[index] = value
    return out


# ----------------------------------------------------------------------------- storage
@given(tabular_mdps(sparse=st.booleans(), horizon=st.none() | st.integers(1, 5)))
def test_storage_views_agree(mdp):
    S, A = mdp.n_states, mdp.n_actions
    dense = mdp.dense_transitions()
    flat = mdp.transition_matrix
    assert dense.shape == (S, A, S)
    np.testing.assert_array_equal(sp.csr_array(flat).toarray().reshape(S, A, S), dense)
    assert mdp.r.shape == (S, A) and mdp.rho0.shape == (S,)
    np.testing.assert_allclose(dense.sum(axis=2), 1.0, rtol=0, atol=PROBABILITY_SUM_ATOL)


@given(tabular_mdps())
def test_arrays_are_read_only(mdp):
    for array in (mdp.P, mdp.r, mdp.rho0):
        with pytest.raises(ValueError, match="read-only"):
            array[(0,) * array.ndim] = 0.5


@given(tabular_mdps(sparse=True))
def test_sparse_round_trip_through_dense(mdp):
    dense = TabularMDP(mdp.dense_transitions(), mdp.r, mdp.rho0, mdp.gamma)
    assert not dense.is_sparse and mdp.is_sparse
    np.testing.assert_array_equal(dense.dense_transitions(), mdp.dense_transitions())


def test_next_state_rewards_are_reduced_by_expectation():
    """r[s, a] = sum_s2 P[s, a, s2] r[s, a, s2]: row (0, 0) is 0.25 * 4 + 0.75 * 8 = 7."""
    P = np.array([[[0.25, 0.75]], [[1.0, 0.0]]])
    r3 = np.array([[[4.0, 8.0]], [[2.0, 100.0]]])
    for transitions in (P, sp.csr_array(P.reshape(2, 2))):
        mdp = TabularMDP(transitions, r3, [1.0, 0.0], 0.5)
        np.testing.assert_allclose(mdp.r, [[7.0], [2.0]], rtol=exact_rtol(n_terms=2))


@given(
    n_states=st.integers(1, 6),
    n_actions=st.integers(1, 3),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_mdps_are_valid(n_states, n_actions, data, seed):
    k = data.draw(st.none() | st.integers(1, n_states), label="n_successors")
    mdp = TabularMDP.random(n_states, n_actions, seed=seed, n_successors=k)
    assert (mdp.n_states, mdp.n_actions) == (n_states, n_actions)
    assert mdp.is_sparse == (k is not None)
    if k is not None:
        successors = np.diff(mdp.P.indptr)
        assert (successors <= k).all()


def test_random_is_reproducible():
    first, second = (TabularMDP.random(4, 2, seed=3, n_successors=2) for _ in range(2))
    np.testing.assert_array_equal(first.dense_transitions(), second.dense_transitions())
    np.testing.assert_array_equal(first.r, second.r)


def test_from_mdptoolbox_dense_and_sparse_layouts_agree():
    """pymdptoolbox's P[a, s, s2] becomes P[s, a, s2]; R[s] is repeated over actions."""
    P = np.array([[[0.5, 0.5], [0.8, 0.2]], [[0.0, 1.0], [0.1, 0.9]]])
    dense = TabularMDP.from_mdptoolbox(P, np.array([1.0, 2.0]), 0.9)
    sparse = TabularMDP.from_mdptoolbox([sp.csr_array(m) for m in P], np.array([1.0, 2.0]), 0.9)
    assert sparse.is_sparse
    np.testing.assert_array_equal(dense.dense_transitions(), P.transpose(1, 0, 2))
    np.testing.assert_array_equal(sparse.dense_transitions(), dense.dense_transitions())
    np.testing.assert_array_equal(dense.r, [[1.0, 1.0], [2.0, 2.0]])
    np.testing.assert_array_equal(dense.rho0, [0.5, 0.5])


# ----------------------------------------------------------------------------- bad input
BAD_CALLS = [
    pytest.param(
        lambda: TabularMDP(with_entry(P2, (1, 0, 1), -0.5), R2, RHO2, 0.5),
        ValueError,
        r"P must be non-negative, got .*-0\.5.* at index \(1, 0, 1\)",
        id="P-negative",
    ),
    pytest.param(
        lambda: TabularMDP(with_entry(P2, (0, 1, 0), np.nan), R2, RHO2, 0.5),
        ValueError,
        r"P must be finite, got .*nan.* at index \(0, 1, 0\)",
        id="P-nan",
    ),
    pytest.param(
        lambda: TabularMDP(with_entry(P2, (1, 1, 1), np.inf), R2, RHO2, 0.5),
        ValueError,
        r"P must be finite, got .*inf.* at index \(1, 1, 1\)",
        id="P-infinite",
    ),
    pytest.param(
        lambda: TabularMDP(
            sp.csr_array(with_entry(P2, (1, 1, 0), -0.5).reshape(4, 2)), R2, RHO2, 0.5
        ),
        ValueError,
        r"P must be non-negative, got .*-0\.5.* at index \(1, 1, 0\)",
        id="sparse-P-negative",
    ),
    pytest.param(
        lambda: TabularMDP(
            sp.csr_array(with_entry(P2, (1, 0, 1), np.nan).reshape(4, 2)), R2, RHO2, 0.5
        ),
        ValueError,
        r"P must be finite, got .*nan.* at index \(1, 0, 1\)",
        id="sparse-P-nan",
    ),
    pytest.param(
        lambda: TabularMDP(with_entry(P2, (1, 0, 1), 0.6), R2, RHO2, 0.5),
        ValueError,
        r"P must sum to 1 along axis -1 .*got sum 1\.1 at index \(1, 0\)",
        id="P-row-sum",
    ),
    pytest.param(
        lambda: TabularMDP(P2 + 1e-8, R2, RHO2, 0.5),
        ValueError,
        r"P must sum to 1 .*within 1e-09",
        id="P-row-sum-beyond-atol",
    ),
    pytest.param(
        lambda: TabularMDP(sp.csr_array(np.full((4, 2), 0.4)), R2, RHO2, 0.5),
        ValueError,
        r"P must sum to 1 over next states .* at index \(0, 0\)",
        id="sparse-P-row-sum",
    ),
    pytest.param(
        lambda: TabularMDP(np.full((2, 2), 0.5), R2, RHO2, 0.5),
        ValueError,
        r"P must have 3 dimensions, got shape \(2, 2\)",
        id="P-two-dimensional",
    ),
    pytest.param(
        lambda: TabularMDP(np.full((2, 2, 4), 0.25), R2, RHO2, 0.5),
        ValueError,
        r"P must have shape \[S, A, S\], got \(2, 2, 4\)",
        id="P-last-axis",
    ),
    pytest.param(
        lambda: TabularMDP(sp.csr_array(np.full((3, 2), 0.5)), R2, RHO2, 0.5),
        ValueError,
        r"sparse P must have shape \[S \* A, S\], got \(3, 2\)",
        id="sparse-P-rows",
    ),
    pytest.param(
        lambda: TabularMDP(P2, np.zeros((2, 3)), RHO2, 0.5),
        ValueError,
        r"r must have shape \[S, A\] = \(2, 2\) or \[S, A, S\], got \(2, 3\)",
        id="r-shape",
    ),
    pytest.param(
        lambda: TabularMDP(P2, with_entry(R2, (1, 0), np.nan), RHO2, 0.5),
        ValueError,
        r"r must be finite, got .*nan.* at index \(1, 0\)",
        id="r-nan",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, [1.0], 0.5),
        ValueError,
        r"rho0 must have shape \[S\] = \(2,\), got \(1,\)",
        id="rho0-shape",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, [0.5, 0.4], 0.5),
        ValueError,
        r"rho0 must sum to 1 .*got sum 0\.9",
        id="rho0-sum",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, [1.5, -0.5], 0.5),
        ValueError,
        r"rho0 must be non-negative, got .*-0\.5.* at index \(1,\)",
        id="rho0-negative",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, RHO2, 1.0),
        ValueError,
        r"gamma must be in \[0, 1\) for an infinite-horizon MDP, got 1\.0",
        id="gamma-one-infinite-horizon",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, RHO2, -0.1),
        ValueError,
        r"gamma must be in \[0, 1\) .* got -0\.1",
        id="gamma-negative",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, RHO2, 1.5, horizon=3),
        ValueError,
        r"gamma must be in \[0, 1\] for a finite-horizon MDP, got 1\.5",
        id="gamma-above-one-finite-horizon",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, RHO2, float("nan")),
        ValueError,
        "gamma must be finite, got nan",
        id="gamma-nan",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, RHO2, 0.5, horizon=0),
        ValueError,
        "horizon must be >= 1, got 0",
        id="horizon-zero",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, RHO2, 0.5, horizon=2.0),
        TypeError,
        "horizon must be an integer, got float",
        id="horizon-float",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, RHO2, "0.5"),
        TypeError,
        "gamma must be a real number, got str",
        id="gamma-string",
    ),
    pytest.param(
        lambda: TabularMDP(P2.astype(str), R2, RHO2, 0.5),
        TypeError,
        "P must be an array of real numbers",
        id="P-numeric-strings",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, [object(), object()], 0.5),
        TypeError,
        "rho0 must be an array of real numbers, got list",
        id="rho0-objects",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2 + 1j, RHO2, 0.5),
        TypeError,
        "r must be",
        id="r-complex",
    ),
    pytest.param(
        lambda: TabularMDP.random(3, 2, seed=0, n_successors=4),
        ValueError,
        "n_successors must be <= n_states = 3, got 4",
        id="random-too-many-successors",
    ),
    pytest.param(
        lambda: TabularMDP.random(0, 2, seed=0),
        ValueError,
        "n_states must be >= 1, got 0",
        id="random-no-states",
    ),
    pytest.param(
        lambda: TabularMDP.random(2, 2, seed=0, concentration=0.0),
        ValueError,
        "concentration must be > 0, got 0.0",
        id="random-concentration",
    ),
    pytest.param(
        lambda: TabularMDP(sp.csr_array(P2.reshape(4, 2) + 0.5j), R2, RHO2, 0.5),
        TypeError,
        r"P must be real, got a complex sparse matrix \(dtype complex128\)",
        id="sparse-P-complex",
    ),
    pytest.param(
        lambda: TabularMDP(P2, R2, RHO2, 0.5, horizon=10**12),
        ValueError,
        r"horizon must be <= 1000000 .*MAX_HORIZON.*got 1000000000000; "
        r"it would need 43.7 TiB for the \[H \+ 1, S\] and \[H, S, A\] float64 values",
        id="horizon-huge",
    ),
    pytest.param(
        lambda: TabularMDP.from_mdptoolbox(P2, R2, 1.5),
        ValueError,
        r"discount must be in \[0, 1\) for an infinite-horizon MDP, got 1\.5",
        id="mdptoolbox-discount-range",
    ),
    pytest.param(
        lambda: TabularMDP.from_mdptoolbox(P2, R2, "0.9"),
        TypeError,
        "discount must be a real number, got str",
        id="mdptoolbox-discount-string",
    ),
    pytest.param(
        lambda: TabularMDP.from_mdptoolbox(P2, R2, 1.5, horizon=3),
        ValueError,
        r"discount must be in \[0, 1\] for a finite-horizon MDP, got 1\.5",
        id="mdptoolbox-discount-range-finite-horizon",
    ),
    pytest.param(
        lambda: TabularMDP.from_mdptoolbox(
            [sp.csr_array(np.eye(2)), sp.csr_array(np.eye(2) * (1 + 1j))], R2, 0.5
        ),
        TypeError,
        r"P\[1\] must be real, got a complex sparse matrix",
        id="mdptoolbox-sparse-P-complex",
    ),
    pytest.param(
        lambda: TabularMDP.random(2, 2, seed="abc"),
        TypeError,
        "seed must be an int >= 0, a numpy.random.SeedSequence or None, got str",
        id="random-seed-string",
    ),
    pytest.param(
        lambda: TabularMDP.random(2, 2, seed=1.5),
        TypeError,
        "seed must be an int >= 0, a numpy.random.SeedSequence or None, got float",
        id="random-seed-float",
    ),
    pytest.param(
        lambda: TabularMDP.random(2, 2, seed=-1),
        ValueError,
        "seed must be >= 0, got -1",
        id="random-seed-negative",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_bad_input_is_rejected_with_its_message(call, error, message):
    with pytest.raises(error, match=message):
        call()
