r"""Tests of ``rlmath.exact``: Bellman equations, occupancy, the policy gradient, trajectories.

Tolerances. Exact-vs-exact comparisons use ``rlmath.tolerances.exact_rtol`` relative to the
largest value a quantity can take: $|V| \le R T$ with $R = \max|r|$ and the effective horizon
$T = 1/(1-\gamma)$ (infinite horizon, condition number ``discounted_condition_number``) or
$T = H$ (finite horizon, $H$ backward steps). Gradient entries are at most $2 R T^2$.

The finite-difference check of the gradient uses the central difference along each logit,

$$ \left|\frac{J(\theta + h e_{sa}) - J(\theta - h e_{sa})}{2h} - \partial_{sa} J\right|
   \le \frac{M_3 h^2}{6} + \frac{\delta}{h}, $$

truncation (Taylor with Lagrange remainder) plus rounding, where $\delta$ is the absolute
error of one evaluation of $J$ (``value_atol`` below) and
$M_3 = R\,(0.25 T^2 + 0.578 T^3 + 0.75 T^4)$ bounds $|\partial^3 J / \partial\theta_{sa}^3|$
(derived in ``rlmath.tolerances.softmax_objective_third_derivative_bound``). The step
$h = (3\delta/M_3)^{1/3}$ minimises the bound, which is the tolerance
(``rlmath.tolerances.central_difference_step``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import example, given
from hypothesis import strategies as st

import rlmath.exact
from rlmath import SoftmaxPolicy, TabularMDP, exact
from rlmath.testing import (
    central_difference_gradient,
    mdps_and_policies,
    softmax_policies,
    tabular_mdps,
)
from rlmath.tolerances import (
    KRYLOV_RESIDUAL_RTOL,
    central_difference_step,
    discounted_condition_number,
    exact_rtol,
    softmax_objective_third_derivative_bound,
)

discounted = mdps_and_policies(tabular_mdps(sparse=st.booleans()))
finite_horizon = mdps_and_policies(
    tabular_mdps(max_states=3, max_actions=2, horizon=st.integers(1, 3), sparse=st.booleans())
)


# ----------------------------------------------------------------------------- tolerances
def effective_horizon(mdp: TabularMDP) -> float:
    """T: 1 / (1 - gamma) for an infinite horizon, H for a finite one."""
    return 1.0 / (1.0 - mdp.gamma) if mdp.horizon is None else float(mdp.horizon)


def reward_bound(mdp: TabularMDP) -> float:
    """R = max |r| (1 when all rewards are 0, so tolerances stay positive)."""
    return float(np.abs(mdp.r).max()) or 1.0


def value_atol(mdp: TabularMDP) -> float:
    """Absolute accuracy of an exact V, Q, A or J: exact_rtol relative to |V| <= R T."""
    terms = mdp.n_states * mdp.n_actions
    if mdp.horizon is None:
        rtol = exact_rtol(discounted_condition_number(mdp.gamma), n_terms=terms)
    else:
        rtol = exact_rtol(n_terms=terms * mdp.horizon)
    return rtol * reward_bound(mdp) * effective_horizon(mdp)


def gradient_atol(mdp: TabularMDP) -> float:
    """Absolute accuracy of an exact gradient, whose entries are at most 2 R T^2."""
    return 2.0 * value_atol(mdp) * effective_horizon(mdp)


def assert_close(actual, expected, atol: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0.0, atol=atol)


# ----------------------------------------------------------------------------- gradient checks
def finite_difference_gradient(mdp: TabularMDP, policy: SoftmaxPolicy) -> tuple[np.ndarray, float]:
    """Central differences of exact.objective along every logit, and their error bound."""
    third = softmax_objective_third_derivative_bound(reward_bound(mdp), effective_horizon(mdp))
    h, bound = central_difference_step(third, value_atol(mdp))
    fd = central_difference_gradient(
        lambda theta: exact.objective(mdp, SoftmaxPolicy(theta)), policy.theta, h
    )
    return fd, bound + gradient_atol(mdp)


def finite_difference_mismatch(mdp, policy, gradient) -> str | None:
    """Why ``gradient`` is not the derivative of exact.objective, or None if it is."""
    fd, atol = finite_difference_gradient(mdp, policy)
    error = float(np.abs(gradient - fd).max())
    return None if error <= atol else f"|grad - finite difference| = {error:.3g} > {atol:.3g}"


def closed_form_gradient(mdp: TabularMDP, policy: SoftmaxPolicy) -> np.ndarray:
    """d(s) pi(a|s) A(s, a) / (1 - gamma): the softmax policy gradient theorem."""
    d, A = exact.occupancy(mdp, policy), exact.advantage(mdp, policy)
    return d[:, None] * policy.probabilities() * A / (1.0 - mdp.gamma)


def closed_form_mismatch(mdp, policy, gradient) -> str | None:
    """Why ``gradient`` differs from the closed form, or None if it agrees."""
    error = float(np.abs(gradient - closed_form_gradient(mdp, policy)).max())
    atol = gradient_atol(mdp)
    return None if error <= atol else f"|grad - closed form| = {error:.3g} > {atol:.3g}"


@given(discounted)
def test_policy_gradient_equals_finite_differences(pair):
    mdp, policy = pair
    assert finite_difference_mismatch(mdp, policy, exact.policy_gradient(mdp, policy)) is None


@given(finite_horizon)
def test_finite_horizon_policy_gradient_equals_finite_differences(pair):
    mdp, policy = pair
    assert finite_difference_mismatch(mdp, policy, exact.policy_gradient(mdp, policy)) is None


@given(discounted)
def test_policy_gradient_equals_softmax_closed_form(pair):
    mdp, policy = pair
    assert closed_form_mismatch(mdp, policy, exact.policy_gradient(mdp, policy)) is None


@given(finite_horizon)
def test_finite_horizon_policy_gradient_equals_trajectory_enumeration(pair):
    mdp, policy = pair
    paths = exact.trajectories(mdp, policy, mdp.horizon)
    atol = gradient_atol(mdp) * paths.probabilities.size
    assert_close(
        exact.policy_gradient(mdp, policy),
        exact.trajectory_policy_gradient(mdp, policy, mdp.horizon),
        atol,
    )


def test_policy_gradient_by_hand():
    """Two states, gamma = 0.9, uniform policy; state 1 absorbing with reward 0 (V(1) = 0).

    V(0) = 0.5 (0 + 0.9 V(0)) + 0.5 (1 + 0) gives V(0) = 10/11; Q(0, .) = (9/11, 1), so
    A(0, .) = (-1/11, 1/11). Pr(s_t = 0) = 0.5^t gives d(0) = 0.1 / 0.55 = 2/11, and
    grad(0, a) = d(0) pi A / (1 - gamma) = (2/11)(1/2)(+-1/11) / 0.1 = +-10/121.
    """
    P = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    mdp = TabularMDP(P, r=[[0.0, 1.0], [0.0, 0.0]], rho0=[1.0, 0.0], gamma=0.9)
    uniform = SoftmaxPolicy.uniform(2, 2)
    atol = gradient_atol(mdp)
    assert_close(exact.value(mdp, uniform), [10 / 11, 0.0], atol)
    assert_close(exact.advantage(mdp, uniform), [[-1 / 11, 1 / 11], [0.0, 0.0]], atol)
    assert_close(exact.occupancy(mdp, uniform), [2 / 11, 9 / 11], atol)
    assert_close(exact.policy_gradient(mdp, uniform), [[-10 / 121, 10 / 121], [0.0, 0.0]], atol)


# ----------------------------------------------------------------------------- mutants
def stationary_distribution(mdp: TabularMDP, policy: SoftmaxPolicy) -> np.ndarray:
    """mu = P_pi^T mu, sum mu = 1 (the eigenvector of eigenvalue 1)."""
    P_pi = np.einsum("sa,sat->st", policy.probabilities(), mdp.dense_transitions())
    eigenvalues, eigenvectors = np.linalg.eig(P_pi.T)
    mu = np.real(eigenvectors[:, np.argmin(np.abs(eigenvalues - 1.0))])
    return mu / mu.sum()


def score_function_gradient(
    mdp, policy, *, state_weights=None, action_values=None, score=None, horizon_factor=True
):
    r"""$\frac{1}{1-\gamma} \sum_s w(s) \sum_{a'} \pi(a'|s)\, W(s,a')\, \mathrm{score}(s, a')$.

    Defaults give the policy gradient theorem: w = d (discounted occupancy), W = A, and the
    softmax score $\partial \log\pi(a'|s) / \partial\theta_{s,b} = 1[a' = b] - \pi(b|s)$
    (``score[s, a', b]``). Each mutant below changes one ingredient.
    """
    pi = policy.probabilities()
    w = exact.occupancy(mdp, policy) if state_weights is None else state_weights(mdp, policy)
    W = exact.advantage(mdp, policy) if action_values is None else action_values(mdp, policy)
    if score is None:
        score = np.eye(mdp.n_actions)[None, :, :] - pi[:, None, :]
    factor = 1.0 / (1.0 - mdp.gamma) if horizon_factor else 1.0
    return factor * np.einsum("s,sa,sa,sab->sb", w, pi, W, score(pi) if callable(score) else score)


MUTANTS = [
    pytest.param(
        functools.partial(score_function_gradient, state_weights=lambda m, p: m.rho0),
        id="rho0-instead-of-occupancy",
    ),
    pytest.param(
        functools.partial(score_function_gradient, horizon_factor=False),
        id="missing-1/(1-gamma)",
    ),
    pytest.param(
        functools.partial(score_function_gradient, state_weights=stationary_distribution),
        id="stationary-instead-of-discounted",
    ),
    pytest.param(  # score e_a: pi * Q without subtracting pi . Q
        functools.partial(
            score_function_gradient,
            action_values=exact.q_value,
            score=lambda pi: np.broadcast_to(
                np.eye(pi.shape[1]), (pi.shape[0],) + (pi.shape[1],) * 2
            ),
        ),
        id="pi-times-Q-without-subtracting",
    ),
    pytest.param(  # 1[a' = b] replaced by pi(a'|s): score pi(a'|s) - pi(b|s)
        functools.partial(
            score_function_gradient, score=lambda pi: pi[:, :, None] - pi[:, None, :]
        ),
        id="indicator-replaced-by-pi",
    ),
    pytest.param(  # grad pi instead of grad log pi: score multiplied by pi(a'|s)
        functools.partial(
            score_function_gradient,
            score=lambda pi: pi[:, :, None] * (np.eye(pi.shape[1]) - pi[:, None, :]),
        ),
        id="grad-pi-instead-of-grad-log-pi",
    ),
]

ACCEPTED = [
    pytest.param(exact.policy_gradient, id="exact.policy_gradient"),
    pytest.param(score_function_gradient, id="score-function-with-A"),
    pytest.param(  # the baseline V(s) has zero expectation under the score
        functools.partial(score_function_gradient, action_values=exact.q_value),
        id="Q-instead-of-A",
    ),
]


@functools.cache
def fixed_example() -> tuple[TabularMDP, SoftmaxPolicy]:
    mdp = TabularMDP.random(4, 3, seed=2024, gamma=0.9)
    return mdp, SoftmaxPolicy(np.random.default_rng(7).normal(size=(4, 3)))


@pytest.mark.parametrize("mutant", MUTANTS)
def test_wrong_gradients_are_rejected(mutant):
    mdp, policy = fixed_example()
    wrong = mutant(mdp, policy)
    _, fd_atol = finite_difference_gradient(mdp, policy)
    # the example is one where the mutant really differs, far beyond the tolerance
    assert np.abs(wrong - exact.policy_gradient(mdp, policy)).max() > 100 * fd_atol
    assert finite_difference_mismatch(mdp, policy, wrong) is not None
    assert closed_form_mismatch(mdp, policy, wrong) is not None


@pytest.mark.parametrize("gradient", ACCEPTED)
def test_equivalent_gradients_are_accepted(gradient):
    mdp, policy = fixed_example()
    assert finite_difference_mismatch(mdp, policy, gradient(mdp, policy)) is None
    assert closed_form_mismatch(mdp, policy, gradient(mdp, policy)) is None


@given(discounted)
def test_q_instead_of_advantage_gives_the_same_gradient(pair):
    mdp, policy = pair
    with_q = score_function_gradient(mdp, policy, action_values=exact.q_value)
    assert_close(with_q, exact.policy_gradient(mdp, policy), gradient_atol(mdp))


# ----------------------------------------------------------------------------- Bellman equations
def policy_transitions(mdp: TabularMDP, policy: SoftmaxPolicy) -> np.ndarray:
    return np.einsum("sa,sat->st", policy.probabilities(), mdp.dense_transitions())


@given(discounted)
def test_bellman_equations(pair):
    mdp, policy = pair
    pi, P = policy.probabilities(), mdp.dense_transitions()
    V, Q, A = exact.value(mdp, policy), exact.q_value(mdp, policy), exact.advantage(mdp, policy)
    atol = value_atol(mdp)
    r_pi = (pi * mdp.r).sum(axis=1)
    assert_close(V, r_pi + mdp.gamma * policy_transitions(mdp, policy) @ V, atol)
    assert_close(Q, mdp.r + mdp.gamma * P @ V, atol)
    assert_close(A, Q - V[:, None], atol)
    assert_close((pi * A).sum(axis=1), 0.0, atol)
    assert exact.objective(mdp, policy) == pytest.approx(mdp.rho0 @ V, abs=atol)


@given(discounted)
def test_occupancy_is_the_discounted_state_distribution(pair):
    mdp, policy = pair
    d = exact.occupancy(mdp, policy)
    atol = occupancy_atol(mdp)
    assert (d >= -atol).all()
    assert d.sum() == pytest.approx(1.0, abs=atol)
    flow = (1.0 - mdp.gamma) * mdp.rho0 + mdp.gamma * policy_transitions(mdp, policy).T @ d
    assert_close(d, flow, atol)


@given(discounted, st.data())
def test_performance_difference_lemma(pair, data):
    """J(pi) - J(pi') = E_{s ~ d^pi, a ~ pi}[A^{pi'}(s, a)] / (1 - gamma) (Kakade & Langford 2002)."""
    mdp, policy = pair
    other = data.draw(softmax_policies(mdp.n_states, mdp.n_actions), label="other policy")
    d, pi = exact.occupancy(mdp, policy), policy.probabilities()
    expected = (d[:, None] * pi * exact.advantage(mdp, other)).sum() / (1.0 - mdp.gamma)
    difference = exact.objective(mdp, policy) - exact.objective(mdp, other)
    assert difference == pytest.approx(expected, abs=4 * value_atol(mdp))


# ----------------------------------------------------------------------------- finite horizon
@given(finite_horizon)
def test_finite_horizon_objective_equals_trajectory_enumeration(pair):
    mdp, policy = pair
    paths = exact.trajectories(mdp, policy, mdp.horizon)
    n_paths = paths.probabilities.size  # each a product of 2H factors, then summed
    assert paths.probabilities.sum() == pytest.approx(
        1.0, abs=exact_rtol(n_terms=2 * mdp.horizon + n_paths)
    )
    atol = value_atol(mdp) * n_paths
    assert exact.objective(mdp, policy) == pytest.approx(paths.expected_return(), abs=atol)


@given(finite_horizon)
def test_finite_horizon_backward_induction(pair):
    mdp, policy = pair
    pi, P = policy.probabilities(), mdp.dense_transitions()
    V, Q = exact.finite_horizon_values(mdp, policy)
    atol = value_atol(mdp)
    assert V.shape == (mdp.horizon + 1, mdp.n_states)
    assert Q.shape == (mdp.horizon, mdp.n_states, mdp.n_actions)
    assert (V[-1] == 0).all()
    assert_close(Q, mdp.r + mdp.gamma * np.einsum("sat,ht->hsa", P, V[1:]), atol)
    assert_close(V[:-1], (pi * Q).sum(axis=2), atol)
    assert_close(exact.value(mdp, policy), V[0], atol)
    assert_close(exact.advantage(mdp, policy), Q[0] - V[0][:, None], atol)


@given(finite_horizon)
def test_finite_horizon_occupancy(pair):
    mdp, policy = pair
    H = mdp.horizon
    p = exact.state_distributions(mdp, policy, H)
    atol = exact_rtol(n_terms=mdp.n_states * H)
    assert_close(p.sum(axis=1), 1.0, atol)
    assert_close(p[1:], p[:-1] @ policy_transitions(mdp, policy), atol)
    weights = mdp.gamma ** np.arange(H)
    assert_close(exact.occupancy(mdp, policy), weights @ p / weights.sum(), atol)


# ----------------------------------------------------------------------------- storage
def as_sparse(mdp: TabularMDP) -> TabularMDP:
    return TabularMDP(sp.csr_array(mdp.transition_matrix), mdp.r, mdp.rho0, mdp.gamma, mdp.horizon)


def assert_storage_agrees(mdp, other, policy, *, value_atol: float, occupancy_atol: float):
    """Values, objective and gradient agree within ``value_atol`` (which scales with the
    rewards), the occupancy (a distribution) within ``occupancy_atol``."""
    for quantity in (exact.value, exact.q_value, exact.advantage, exact.policy_gradient):
        assert_close(quantity(other, policy), quantity(mdp, policy), value_atol)
    assert exact.objective(other, policy) == pytest.approx(
        exact.objective(mdp, policy), abs=value_atol
    )
    assert_close(exact.occupancy(other, policy), exact.occupancy(mdp, policy), occupancy_atol)


def occupancy_atol(mdp: TabularMDP) -> float:
    """Absolute accuracy of an exact occupancy (entries in [0, 1])."""
    if mdp.horizon is None:
        return exact_rtol(discounted_condition_number(mdp.gamma), n_terms=mdp.n_states)
    return exact_rtol(n_terms=mdp.n_states * mdp.horizon)


@given(mdps_and_policies(tabular_mdps(horizon=st.none() | st.integers(1, 4))))
def test_dense_and_sparse_storage_agree(pair):
    mdp, policy = pair
    assert_storage_agrees(
        mdp,
        as_sparse(mdp),
        policy,
        value_atol=gradient_atol(mdp),
        occupancy_atol=occupancy_atol(mdp),
    )


@given(discounted)
@example(  # regression: GMRES broke down on |b| ~ 1e-198 (inner products underflowed)
    (TabularMDP(np.ones((1, 1, 1)), [[2.14e-198]], [1.0], 0.5), SoftmaxPolicy.uniform(1, 1))
)
def test_gmres_path_agrees_with_dense_lu(pair):
    """Krylov error: |x - x*| <= delta |b| / (1 - gamma) (delta = KRYLOV_RESIDUAL_RTOL), so V
    moves by delta R T, the occupancy by delta (1-norm), gradient entries d/(1-gamma) pi A by
    at most 4 delta R T^2."""
    mdp, policy = pair
    T = effective_horizon(mdp)
    krylov_value_atol = 4 * KRYLOV_RESIDUAL_RTOL * reward_bound(mdp) * T**2 + gradient_atol(mdp)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rlmath.exact, "SPARSE_DIRECT_MAX_STATES", 0)
        sparse = as_sparse(mdp)
        assert rlmath.exact._DiscountedSystem(sparse, policy.probabilities()).method == "GMRES"
        assert_storage_agrees(
            mdp,
            sparse,
            policy,
            value_atol=krylov_value_atol,
            occupancy_atol=KRYLOV_RESIDUAL_RTOL + occupancy_atol(mdp),
        )


# ----------------------------------------------------------------------------- optimal control
@given(discounted)
@example(  # regression: an absolute tie slack of 1e-12 made all tiny rewards look equal
    (TabularMDP(np.ones((1, 2, 1)), [[-3.3e-22, 0.0]], [1.0], 0.0), SoftmaxPolicy.uniform(1, 2))
)
def test_policy_iteration_is_optimal(pair):
    mdp, policy = pair
    V_star, pi_star = exact.policy_iteration(mdp)
    # policy_iteration keeps the current action on ties up to 1e-12 |Q|max, |Q| <= R T: a
    # kept action may lose 1e-12 R T per step, 1e-12 R T^2 in value.
    atol = value_atol(mdp) + 1e-12 * reward_bound(mdp) * effective_horizon(mdp) ** 2
    assert set(np.unique(pi_star)) <= {0.0, 1.0} and (pi_star.sum(axis=1) == 1).all()
    assert (V_star >= exact.value(mdp, policy) - atol).all()
    optimal_q = mdp.r + mdp.gamma * mdp.dense_transitions() @ V_star
    assert_close(V_star, optimal_q.max(axis=1), atol)  # Bellman optimality
    assert_close(exact.value(mdp, pi_star), V_star, atol)


# ----------------------------------------------------------------------------- bad input
def _mdp(horizon=None):
    return TabularMDP(np.ones((2, 2, 2)) / 2, np.zeros((2, 2)), [0.5, 0.5], 0.5, horizon)


def _wide_mdp(horizon):
    """One state, 1000 actions: small to build, big per step of backward induction."""
    return TabularMDP(np.ones((1, 1000, 1)), np.zeros((1, 1000)), [1.0], 1.0, horizon)


def _chain(n_states):
    """Deterministic self-loops from a uniform start: n_states trajectories of any horizon."""
    P = sp.csr_array(sp.eye_array(n_states))
    return TabularMDP(P, np.zeros((n_states, 1)), np.full(n_states, 1 / n_states), 0.5)


BAD_CALLS = [
    pytest.param(
        lambda: exact.value(_mdp(), np.full((3, 2), 0.5)),
        ValueError,
        r"policy must have shape \[S, A\] = \(2, 2\), got \(3, 2\)",
        id="policy-wrong-shape",
    ),
    pytest.param(
        lambda: exact.objective(_mdp(), SoftmaxPolicy.uniform(2, 3)),
        ValueError,
        r"policy must have shape \[S, A\] = \(2, 2\), got \(2, 3\)",
        id="softmax-policy-wrong-shape",
    ),
    pytest.param(
        lambda: exact.occupancy(_mdp(), [[0.5, 0.6], [0.5, 0.5]]),
        ValueError,
        r"policy must sum to 1 along axis -1 .* at index \(0,\)",
        id="policy-not-distribution",
    ),
    pytest.param(
        lambda: exact.q_value(_mdp(), [0.5, 0.5]),
        ValueError,
        "policy must have 2 dimensions",
        id="policy-one-dimensional",
    ),
    pytest.param(
        lambda: exact.policy_gradient(_mdp(), np.full((2, 2), 0.5)),
        TypeError,
        "policy must be a SoftmaxPolicy, got ndarray",
        id="gradient-of-array",
    ),
    pytest.param(
        lambda: exact.value("mdp", np.full((2, 2), 0.5)),
        TypeError,
        "mdp must be a TabularMDP, got str",
        id="not-an-mdp",
    ),
    pytest.param(
        lambda: exact.finite_horizon_values(_mdp(), np.full((2, 2), 0.5)),
        ValueError,
        "mdp must have a finite horizon",
        id="backward-induction-infinite",
    ),
    pytest.param(
        lambda: exact.policy_iteration(_mdp(horizon=3)),
        ValueError,
        "policy_iteration needs an infinite-horizon MDP",
        id="policy-iteration-finite",
    ),
    pytest.param(
        lambda: exact.trajectories(_mdp(), np.full((2, 2), 0.5), 3, max_trajectories=10),
        ValueError,
        "more than max_trajectories = 10",
        id="too-many-trajectories",
    ),
    pytest.param(
        lambda: exact.trajectories(_mdp(), np.full((2, 2), 0.5), 0),
        ValueError,
        "horizon must be >= 1, got 0",
        id="trajectories-horizon",
    ),
    pytest.param(
        lambda: exact.state_distributions(_mdp(), np.full((2, 2), 0.5), 2.0),
        TypeError,
        "horizon must be an integer, got float",
        id="state-distributions-horizon",
    ),
    pytest.param(
        lambda: exact.policy_iteration(_mdp(), max_iterations=0),
        ValueError,
        "max_iterations must be >= 1, got 0",
        id="policy-iteration-zero-iterations",
    ),
    pytest.param(
        lambda: exact.policy_iteration(_mdp(), max_iterations=2.5),
        TypeError,
        "max_iterations must be an integer, got float",
        id="policy-iteration-float-iterations",
    ),
    pytest.param(  # 10^6 steps of [S, A] = [1, 1000] values: 7.46 GiB
        lambda: exact.finite_horizon_values(_wide_mdp(10**6), [[1e-3] * 1000]),
        ValueError,
        r"mdp.horizon = 1000000 would need 7.46 GiB for V \[H \+ 1, S\] and Q \[H, S, A\] "
        r"float64 \(S = 1, A = 1000\), more than the limit of 4 GiB",
        id="backward-induction-too-much-memory",
    ),
    pytest.param(
        lambda: exact.state_distributions(_mdp(), np.full((2, 2), 0.5), 10**9),
        ValueError,
        r"horizon must be <= 1000000 .*got 1000000000; it would need 14.9 GiB for the \[H, S\]",
        id="state-distributions-horizon-huge",
    ),
    pytest.param(  # 600 states, 10^6 steps: [H, S] float64 is 4.47 GiB
        lambda: exact.state_distributions(_chain(600), np.ones((600, 1)), 10**6),
        ValueError,
        r"horizon = 1000000 would need 4.47 GiB for the \[H, S\] float64 distributions "
        r"\(S = 600\), more than the limit of 4 GiB",
        id="state-distributions-too-much-memory",
    ),
    pytest.param(
        lambda: exact.trajectories(_mdp(), np.full((2, 2), 0.5), 10**12),
        ValueError,
        r"horizon must be <= 1000000 .*got 1000000000000; it would need 14.6 TiB",
        id="trajectories-horizon-huge",
    ),
    pytest.param(  # 300 deterministic trajectories of 10^6 steps: 16 bytes per step each
        lambda: exact.trajectories(_chain(300), np.ones((300, 1)), 10**6),
        ValueError,
        r"horizon = 1000000 would need 4.47 GiB for the states and actions of at least 300 "
        r"trajectories",
        id="trajectories-too-much-memory",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_bad_input_is_rejected_with_its_message(call, error, message):
    with pytest.raises(error, match=message):
        call()
