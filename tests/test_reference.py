"""Tests of rlmath.reference against independent definitions and symbolic derivatives.

Every reference function is checked against a second route to the same number: a direct
O(T^2) sum, a definition by enumeration, or a derivative taken by sympy. Hand-computed
examples say where their numbers come from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sympy
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rlmath import reference
from rlmath.tolerances import exact_rtol

RTOL = exact_rtol(n_terms=64)

# --------------------------------------------------------------------------------------------
# Strategies (small and local; the edge-case strategies of rlmath.specs are tested elsewhere)
# --------------------------------------------------------------------------------------------

finite = st.floats(-10.0, 10.0, allow_nan=False)
unit = st.floats(0.0, 1.0)


@st.composite
def trajectories(draw: Any, *, max_steps: int = 7) -> dict[str, Any]:
    """One time-major [T] trajectory with independent termination/truncation flags."""
    steps = draw(st.integers(1, max_steps))
    vector = hnp.arrays(np.float64, steps, elements=finite)
    flags = hnp.arrays(np.bool_, steps)
    return {
        "rewards": draw(vector),
        "values": draw(vector),
        "terminated": draw(flags),
        "truncated": draw(flags),
        "final_values": draw(vector),
        "last_value": draw(finite),
    }


def next_value_by_definition(trajectory: dict[str, Any], t: int) -> float:
    """The bootstrap value v'_t, written as the case distinction of the docstring."""
    if trajectory["terminated"][t]:
        return 0.0
    if trajectory["truncated"][t]:
        return float(trajectory["final_values"][t])
    if t == len(trajectory["rewards"]) - 1:
        return float(trajectory["last_value"])
    return float(trajectory["values"][t + 1])


def episode_end(trajectory: dict[str, Any], t: int) -> int:
    """Last step of t's episode inside the buffer."""
    done = trajectory["terminated"] | trajectory["truncated"]
    while t < len(done) - 1 and not done[t]:
        t += 1
    return t


def gae_by_direct_sum(trajectory: dict[str, Any], discount: float, lambda_: float) -> np.ndarray:
    """O(T^2): A_t = sum_{l=0}^{e(t)-t} (gamma lambda)^l delta_{t+l} (GAE paper, eq. 16)."""
    steps = len(trajectory["rewards"])
    deltas = [
        trajectory["rewards"][t]
        + discount * next_value_by_definition(trajectory, t)
        - trajectory["values"][t]
        for t in range(steps)
    ]
    return np.array(
        [
            sum(
                (discount * lambda_) ** (k - t) * deltas[k]
                for k in range(t, episode_end(trajectory, t) + 1)
            )
            for t in range(steps)
        ]
    )


def n_step_return(trajectory: dict[str, Any], t: int, n: int, discount: float) -> float:
    """G_{t:t+n}: n rewards then the bootstrap value, stopped at the episode/buffer end."""
    end = episode_end(trajectory, t)
    last = min(t + n - 1, end)
    total = sum(discount ** (k - t) * trajectory["rewards"][k] for k in range(t, last + 1))
    return float(total + discount ** (last - t + 1) * next_value_by_definition(trajectory, last))


def lambda_return_by_definition(
    trajectory: dict[str, Any], discount: float, lambda_: float
) -> np.ndarray:
    """G^lambda_t = (1 - lambda) sum_{n<h} lambda^{n-1} G_{t:t+n} + lambda^{h-1} G_{t:t+h},
    h = steps to the end of the episode or buffer (Sutton and Barto 2018, eq. 12.18)."""
    steps = len(trajectory["rewards"])
    result = []
    for t in range(steps):
        horizon = episode_end(trajectory, t) - t + 1
        weighted = sum(
            (1 - lambda_) * lambda_ ** (n - 1) * n_step_return(trajectory, t, n, discount)
            for n in range(1, horizon)
        )
        result.append(
            weighted + lambda_ ** (horizon - 1) * n_step_return(trajectory, t, horizon, discount)
        )
    return np.array(result)


def call(function: Any, trajectory: dict[str, Any], **hyper: float) -> np.ndarray:
    args = [
        trajectory[k]
        for k in ("rewards", "values", "terminated", "truncated", "final_values", "last_value")
    ]
    result: np.ndarray = function(*args, **hyper)
    return result


# --------------------------------------------------------------------------------------------
# Returns, TD errors, GAE, lambda-returns
# --------------------------------------------------------------------------------------------


def test_discounted_returns_hand_example_with_boundary_at_first_and_last_step() -> None:
    # Episodes: [0], [1, 2], [3]; gamma = 0.5. By hand: G0 = 1; G2 = 3, G1 = 2 + 1.5 = 3.5; G3 = 4.
    got = reference.discounted_returns(
        [1.0, 2.0, 3.0, 4.0], [True, False, True, False], discount=0.5
    )
    np.testing.assert_allclose(got, [1.0, 3.5, 3.0, 4.0], rtol=RTOL)


@given(trajectories(), unit)
def test_discounted_returns_equal_direct_sum_over_each_episode(
    trajectory: dict[str, Any], discount: float
) -> None:
    dones = trajectory["terminated"] | trajectory["truncated"]
    got = reference.discounted_returns(trajectory["rewards"], dones, discount=discount)
    expected = [
        sum(
            discount ** (k - t) * trajectory["rewards"][k]
            for k in range(t, episode_end(trajectory, t) + 1)
        )
        for t in range(len(dones))
    ]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL * 100)


@given(trajectories(), unit, unit)
def test_gae_equals_direct_sum_of_td_errors(
    trajectory: dict[str, Any], discount: float, lambda_: float
) -> None:
    got = call(
        reference.generalized_advantage_estimation, trajectory, discount=discount, lambda_=lambda_
    )
    np.testing.assert_allclose(
        got, gae_by_direct_sum(trajectory, discount, lambda_), rtol=RTOL, atol=RTOL * 100
    )


@given(trajectories(), unit)
def test_gae_with_lambda_zero_is_the_td_error(trajectory: dict[str, Any], discount: float) -> None:
    got = call(
        reference.generalized_advantage_estimation, trajectory, discount=discount, lambda_=0.0
    )
    np.testing.assert_array_equal(
        got, call(reference.temporal_difference_errors, trajectory, discount=discount)
    )


@given(trajectories(), unit)
def test_gae_with_lambda_one_is_bootstrapped_return_minus_value(
    trajectory: dict[str, Any], discount: float
) -> None:
    # Returns to the episode end, plus the discounted bootstrap value at that end.
    steps = len(trajectory["rewards"])
    returns = [n_step_return(trajectory, t, steps, discount) for t in range(steps)]
    got = call(
        reference.generalized_advantage_estimation, trajectory, discount=discount, lambda_=1.0
    )
    np.testing.assert_allclose(
        got, np.array(returns) - trajectory["values"], rtol=RTOL, atol=RTOL * 100
    )


@given(trajectories(), unit, unit)
def test_lambda_returns_equal_weighted_n_step_returns(
    trajectory: dict[str, Any], discount: float, lambda_: float
) -> None:
    got = call(reference.lambda_returns, trajectory, discount=discount, lambda_=lambda_)
    np.testing.assert_allclose(
        got, lambda_return_by_definition(trajectory, discount, lambda_), rtol=RTOL, atol=RTOL * 100
    )


@given(trajectories(), unit, unit)
def test_lambda_returns_are_gae_plus_values(
    trajectory: dict[str, Any], discount: float, lambda_: float
) -> None:
    advantages = call(
        reference.generalized_advantage_estimation, trajectory, discount=discount, lambda_=lambda_
    )
    got = call(reference.lambda_returns, trajectory, discount=discount, lambda_=lambda_)
    np.testing.assert_allclose(got, advantages + trajectory["values"], rtol=RTOL, atol=RTOL * 100)


@given(
    st.lists(trajectories(max_steps=5), min_size=1, max_size=3).filter(
        lambda ts: len({len(t["rewards"]) for t in ts}) == 1
    ),
    unit,
    unit,
)
def test_gae_batched_equals_loop(
    batch: list[dict[str, Any]], discount: float, lambda_: float
) -> None:
    stacked = {key: np.stack([np.asarray(t[key]) for t in batch], axis=-1) for key in batch[0]}
    got = call(
        reference.generalized_advantage_estimation, stacked, discount=discount, lambda_=lambda_
    )
    for column, trajectory in enumerate(batch):
        single = call(
            reference.generalized_advantage_estimation,
            trajectory,
            discount=discount,
            lambda_=lambda_,
        )
        np.testing.assert_array_equal(got[:, column], single)


@given(trajectories(), trajectories(), unit, unit)
def test_gae_of_concatenated_episodes_equals_gae_of_each(
    first: dict[str, Any], second: dict[str, Any], discount: float, lambda_: float
) -> None:
    # Masking equals slicing: end the first buffer with a termination and concatenate; the first
    # part's advantages must not see the second part, whose last_value is the only one used.
    first = dict(first, terminated=first["terminated"].copy())
    first["terminated"][-1] = True
    joined = {
        key: np.concatenate([first[key], second[key]]) for key in first if key != "last_value"
    }
    joined["last_value"] = second["last_value"]
    got = call(
        reference.generalized_advantage_estimation, joined, discount=discount, lambda_=lambda_
    )
    steps = len(first["rewards"])
    np.testing.assert_array_equal(
        got[:steps],
        call(reference.generalized_advantage_estimation, first, discount=discount, lambda_=lambda_),
    )
    np.testing.assert_allclose(
        got[steps:],
        call(
            reference.generalized_advantage_estimation, second, discount=discount, lambda_=lambda_
        ),
        rtol=RTOL,
        atol=RTOL,
    )


def test_gae_hand_example_termination_and_truncation_on_same_step() -> None:
    # Step 0 both terminated and truncated: termination wins, no bootstrap from final value 100.
    # delta_0 = 1 - 0.5 = 0.5; step 1 (new episode, end of buffer): delta_1 = 2 + 0.9*3 - 1 = 3.7.
    got = reference.generalized_advantage_estimation(
        [1.0, 2.0],
        [0.5, 1.0],
        [True, False],
        [True, False],
        [100.0, np.nan],
        3.0,
        discount=0.9,
        lambda_=0.7,
    )
    np.testing.assert_allclose(got, [0.5, 3.7], rtol=RTOL)


# --------------------------------------------------------------------------------------------
# PPO losses against sympy
# --------------------------------------------------------------------------------------------

log_prob = st.floats(-5.0, 0.0)


@st.composite
def ppo_batches(draw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    n = draw(st.integers(1, 6))
    new = draw(hnp.arrays(np.float64, n, elements=log_prob))
    old = draw(hnp.arrays(np.float64, n, elements=log_prob))
    advantages = draw(hnp.arrays(np.float64, n, elements=finite))
    epsilon = draw(st.floats(0.05, 0.5))
    # Stay off the kinks rho = 1 +- epsilon, where the loss has no derivative.
    ratio = np.exp(new - old)
    if np.any(np.abs(ratio - (1 + epsilon)) < 1e-6) or np.any(np.abs(ratio - (1 - epsilon)) < 1e-6):
        new = new + 1e-3
    return new, old, advantages, epsilon


new_lp, old_lp, adv_sym, eps_sym = sympy.symbols("l o A epsilon", real=True)
_ratio = sympy.exp(new_lp - old_lp)
_ppo_term = -sympy.Min(
    _ratio * adv_sym, sympy.Max(sympy.Min(_ratio, 1 + eps_sym), 1 - eps_sym) * adv_sym
)
_ppo_term_value = sympy.lambdify((new_lp, old_lp, adv_sym, eps_sym), _ppo_term, "numpy")
_ppo_term_gradient = sympy.lambdify(
    (new_lp, old_lp, adv_sym, eps_sym), sympy.diff(_ppo_term, new_lp), "numpy"
)


@given(ppo_batches())
def test_ppo_loss_and_gradient_match_sympy(
    batch: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    new, old, advantages, epsilon = batch
    n = len(new)
    expected_loss = np.mean(
        [_ppo_term_value(*args, epsilon) for args in zip(new, old, advantages, strict=True)]
    )
    expected_gradient = [
        float(_ppo_term_gradient(*args, epsilon)) / n
        for args in zip(new, old, advantages, strict=True)
    ]
    np.testing.assert_allclose(
        reference.ppo_clipped_surrogate_loss(new, old, advantages, clip_epsilon=epsilon),
        expected_loss,
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        reference.ppo_clipped_surrogate_loss_gradient(new, old, advantages, clip_epsilon=epsilon),
        expected_gradient,
        rtol=1e-12,
        atol=1e-12,
    )


@given(ppo_batches())
def test_ppo_with_infinite_clip_is_ratio_times_advantage(
    batch: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    new, old, advantages, _ = batch
    got = reference.ppo_clipped_surrogate_loss(new, old, advantages, clip_epsilon=np.inf)
    np.testing.assert_allclose(got, -np.mean(np.exp(new - old) * advantages), rtol=RTOL, atol=RTOL)


@given(ppo_batches())
def test_ppo_clipped_objective_lower_bounds_unclipped(
    batch: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    # ppo-clip-lower-bound: the loss is at least the unclipped loss.
    new, old, advantages, epsilon = batch
    clipped = reference.ppo_clipped_surrogate_loss(new, old, advantages, clip_epsilon=epsilon)
    unclipped = reference.ppo_clipped_surrogate_loss(new, old, advantages, clip_epsilon=np.inf)
    assert clipped >= unclipped - RTOL * (1 + abs(unclipped))


values_sym, old_values_sym, returns_sym = sympy.symbols("V W R", real=True)
_clipped_value = old_values_sym + sympy.Max(
    sympy.Min(values_sym - old_values_sym, eps_sym), -eps_sym
)
_value_term = sympy.Max((values_sym - returns_sym) ** 2, (_clipped_value - returns_sym) ** 2) / 2
_value_term_value = sympy.lambdify(
    (values_sym, old_values_sym, returns_sym, eps_sym), _value_term, "numpy"
)
_value_term_gradient = sympy.lambdify(
    (values_sym, old_values_sym, returns_sym, eps_sym), sympy.diff(_value_term, values_sym), "numpy"
)


@given(st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=6), st.floats(0.05, 2.0))
def test_clipped_value_loss_and_gradient_match_sympy(
    rows: list[tuple[float, float, float]], epsilon: float
) -> None:
    values, old, returns = (np.array(column) for column in zip(*rows, strict=True))
    # Off the kinks: |V - W| = epsilon and ties between the two squared errors.
    values = np.where(np.abs(np.abs(values - old) - epsilon) < 1e-6, values + 1e-3, values)
    clipped = old + np.clip(values - old, -epsilon, epsilon)
    gap = np.abs((values - returns) ** 2 - (clipped - returns) ** 2)
    near_tie = (gap < 1e-6) & (np.abs(values - old) > epsilon)
    expected = np.mean(
        [_value_term_value(v, w, r, epsilon) for v, w, r in zip(values, old, returns, strict=True)]
    )
    np.testing.assert_allclose(
        reference.clipped_value_loss(values, old, returns, clip_epsilon=epsilon),
        expected,
        rtol=1e-12,
        atol=1e-12,
    )
    expected_gradient = np.array(
        [
            float(_value_term_gradient(v, w, r, epsilon))
            for v, w, r in zip(values, old, returns, strict=True)
        ]
    )
    got = reference.clipped_value_loss_gradient(values, old, returns, clip_epsilon=epsilon)
    np.testing.assert_allclose(
        got[~near_tie], expected_gradient[~near_tie] / len(values), rtol=1e-12, atol=1e-12
    )


# --------------------------------------------------------------------------------------------
# KL estimators by enumeration over a categorical distribution
# --------------------------------------------------------------------------------------------

distributions = st.integers(2, 6).flatmap(
    lambda k: st.tuples(
        hnp.arrays(np.float64, k, elements=st.floats(0.05, 1.0)),
        hnp.arrays(np.float64, k, elements=st.floats(0.05, 1.0)),
    )
)


@given(distributions)
def test_k1_and_k3_are_unbiased_and_k2_is_biased(pair: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = (weights / weights.sum() for weights in pair)
    exact_kl = float(np.sum(p * np.log(p / q)))
    # E_{x ~ p}[k(x)] by enumeration: sum_x p(x) k(x).
    for estimator in (reference.kl_estimator_k1, reference.kl_estimator_k3):
        np.testing.assert_allclose(
            np.sum(p * estimator(np.log(p), np.log(q))), exact_kl, rtol=1e-10, atol=1e-12
        )
    assert np.all(reference.kl_estimator_k3(np.log(p), np.log(q)) >= 0)  # kl-nonnegative per sample
    assert np.all(reference.kl_estimator_k2(np.log(p), np.log(q)) >= 0)
    # k2's expectation is 1/2 E[(log p/q)^2], a different number in general (biased).
    np.testing.assert_allclose(
        np.sum(p * reference.kl_estimator_k2(np.log(p), np.log(q))),
        0.5 * np.sum(p * np.log(p / q) ** 2),
        rtol=1e-12,
        atol=1e-15,
    )


@given(distributions)
def test_expected_estimator_gradients_by_enumeration(pair: tuple[np.ndarray, np.ndarray]) -> None:
    # kl-estimator-gradients: with x ~ p fixed, E_p[d k3 / d log p(x)] = E_p[1 - q/p] = 0 (the
    # score-function part is not in the pathwise derivative); E_p[d k2 / d log p(x)] =
    # E_p[log p/q] = KL(p||q). Pathwise derivatives from sympy.
    p, q = (weights / weights.sum() for weights in pair)
    lp, lq = sympy.symbols("lp lq", real=True)
    d = lp - lq
    d_k2 = sympy.lambdify((lp, lq), sympy.diff(d**2 / 2, lp), "numpy")
    d_k3 = sympy.lambdify((lp, lq), sympy.diff(sympy.exp(-d) - 1 + d, lp), "numpy")
    np.testing.assert_allclose(np.sum(p * d_k3(np.log(p), np.log(q))), 0.0, atol=1e-12)
    np.testing.assert_allclose(
        np.sum(p * d_k2(np.log(p), np.log(q))), np.sum(p * np.log(p / q)), rtol=1e-12, atol=1e-12
    )


def test_k3_is_accurate_for_tiny_log_ratio() -> None:
    # k3(d) = d^2/2 - d^3/6 + ... ; at d = 1e-9 the naive exp(-d) - 1 + d cancels to ~1e-16 noise.
    np.testing.assert_allclose(reference.kl_estimator_k3([1e-9], [0.0]), [0.5e-18], rtol=1e-6)


def test_kl_estimators_direction_and_log_ratio_convention() -> None:
    # log r = reference_log_probs - log_probs (x sampled from the first argument's policy):
    # k1 = -log r, k2 = (log r)^2 / 2, k3 = (r - 1) - log r, by hand at log r = -1 and +2.
    log_probs, reference_log_probs = np.array([0.0, -3.0]), np.array([-1.0, -1.0])
    log_r = np.array([-1.0, 2.0])
    np.testing.assert_array_equal(reference.kl_estimator_k1(log_probs, reference_log_probs), -log_r)
    np.testing.assert_array_equal(
        reference.kl_estimator_k2(log_probs, reference_log_probs), log_r**2 / 2
    )
    np.testing.assert_allclose(
        reference.kl_estimator_k3(log_probs, reference_log_probs),
        np.exp(log_r) - 1 - log_r,
        rtol=1e-15,
    )


def test_kl_estimators_are_infinite_where_the_reference_has_probability_zero() -> None:
    # pi_ref(x) = 0 at a sample of pi: KL(pi || pi_ref) is infinite, and so is every estimator
    with np.errstate(all="raise"):
        for estimator in (
            reference.kl_estimator_k1,
            reference.kl_estimator_k2,
            reference.kl_estimator_k3,
        ):
            assert estimator([-1.0], [-np.inf])[0] == np.inf
        # log r overflows to +inf (r = inf): k3 is +inf, not inf - inf = NaN
        assert reference.kl_estimator_k3([-1e308], [1e308])[0] == np.inf
        assert reference.kl_estimator_k3([0.0], [1000.0])[0] == np.inf


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(([-np.inf], [0.0]), "log_probs must be finite", id="log-probs-minus-inf"),
        pytest.param(([np.nan], [0.0]), "log_probs must be finite", id="log-probs-nan"),
        pytest.param(
            ([0.0], [np.inf]), "reference_log_probs must be finite or -inf", id="reference-plus-inf"
        ),
        pytest.param(([0.0, 0.0], [0.0]), "reference_log_probs must have the shape", id="shapes"),
    ],
)
def test_kl_estimators_reject_bad_log_probs(
    arguments: tuple[list[float], ...], message: str
) -> None:
    for estimator in (
        reference.kl_estimator_k1,
        reference.kl_estimator_k2,
        reference.kl_estimator_k3,
    ):
        with pytest.raises(ValueError, match=message):
            estimator(*arguments)


# --------------------------------------------------------------------------------------------
# Entropy
# --------------------------------------------------------------------------------------------


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 5)), elements=finite))
def test_entropy_equals_definition_and_is_shift_invariant(logits: np.ndarray) -> None:
    p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    expected = -np.sum(p * np.log(p), axis=-1)
    np.testing.assert_allclose(
        reference.categorical_entropy(logits), expected, rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        reference.categorical_entropy(logits + 1e3), expected, rtol=1e-9, atol=1e-10
    )
    assert np.all(
        reference.categorical_entropy(logits) <= np.log(logits.shape[-1]) + 1e-12
    )  # kl-nonnegative


def test_entropy_with_huge_logits_is_finite() -> None:
    # softmax(1e3, -1e3) is (1, e^-2000) to float64: entropy 0 (up to 2000 e^-2000).
    np.testing.assert_allclose(reference.categorical_entropy([1e3, -1e3]), 0.0, atol=1e-300)


# --------------------------------------------------------------------------------------------
# DPO and Bradley-Terry against sympy
# --------------------------------------------------------------------------------------------

pc, pr, rc, rr, beta_sym = sympy.symbols("pc pr rc rr beta", real=True)
_dpo_term = -sympy.log(1 / (1 + sympy.exp(-beta_sym * ((pc - rc) - (pr - rr)))))
_dpo_args = (pc, pr, rc, rr, beta_sym)
_dpo_value = sympy.lambdify(_dpo_args, _dpo_term, "numpy")
_dpo_d_chosen = sympy.lambdify(_dpo_args, sympy.diff(_dpo_term, pc), "numpy")
_dpo_d_rejected = sympy.lambdify(_dpo_args, sympy.diff(_dpo_term, pr), "numpy")


@given(
    st.lists(st.tuples(log_prob, log_prob, log_prob, log_prob), min_size=1, max_size=5),
    st.floats(0.01, 2.0),
)
def test_dpo_loss_and_gradient_match_sympy(rows: list[tuple[float, ...]], beta: float) -> None:
    columns = [np.array(column) for column in zip(*rows, strict=True)]
    n = len(rows)
    np.testing.assert_allclose(
        reference.dpo_loss(*columns, beta=beta), np.mean(_dpo_value(*columns, beta)), rtol=1e-10
    )
    d_chosen, d_rejected = reference.dpo_loss_gradient(*columns, beta=beta)
    np.testing.assert_allclose(d_chosen, _dpo_d_chosen(*columns, beta) / n, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(
        d_rejected, _dpo_d_rejected(*columns, beta) / n, rtol=1e-10, atol=1e-15
    )


@given(
    st.lists(st.tuples(log_prob, log_prob, log_prob, log_prob), min_size=1, max_size=5),
    st.floats(0.01, 2.0),
)
def test_dpo_is_bradley_terry_on_the_implicit_reward(
    rows: list[tuple[float, ...]], beta: float
) -> None:
    # dpo-implicit-reward: r(y) = beta (log pi(y) - log pi_ref(y)).
    chosen, rejected, ref_chosen, ref_rejected = (
        np.array(column) for column in zip(*rows, strict=True)
    )
    np.testing.assert_allclose(
        reference.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=beta),
        reference.bradley_terry_loss(
            beta * (chosen - ref_chosen), beta * (rejected - ref_rejected)
        ),
        rtol=1e-13,
    )


def test_dpo_loss_is_finite_where_naive_log_sigmoid_underflows() -> None:
    # z = 1 * ((-1000 - 0) - (0 - 0)) = -1000; -log sigma(-1000) = 1000 + log(1 + e^-1000) = 1000.
    assert reference.dpo_loss([-1000.0], [0.0], [0.0], [0.0], beta=1.0) == 1000.0


# --------------------------------------------------------------------------------------------
# Normalisation and the adaptive KL rule
# --------------------------------------------------------------------------------------------


@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 5)),
        elements=st.sampled_from([0.0, 0.1, 1.0]) | finite,
    ),
    st.sampled_from([0, 1]),
)
def test_group_normalized_advantages_are_standardised_rows(rewards: np.ndarray, ddof: int) -> None:
    got = reference.group_normalized_advantages(rewards, ddof=ddof)
    for row, result in zip(rewards, got, strict=True):
        # batched == loop over groups through normalized_advantages
        np.testing.assert_array_equal(result, reference.normalized_advantages(row, ddof=ddof))
        if np.ptp(row) == 0 or len(row) - ddof <= 0:
            np.testing.assert_array_equal(result, 0.0)
        else:
            np.testing.assert_allclose(result.mean(), 0.0, atol=1e-12)
            np.testing.assert_allclose(result.std(ddof=ddof), 1.0, rtol=1e-9)


def test_normalized_advantages_use_the_whole_batch() -> None:
    # [T=2, B=2]: mean 2.5, population std sqrt(1.25); per-column normalisation would give +-1.
    batch = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(
        reference.normalized_advantages(batch), (batch - 2.5) / np.sqrt(1.25), rtol=RTOL
    )


@pytest.mark.parametrize(
    ("advantages", "unit"),
    [
        pytest.param([1.7e308, 0.85e308], [2.0, 1.0], id="near-max-same-sign"),
        pytest.param([1.7e308, -1.7e308, -1.7e308, -1.7e308], [1, -1, -1, -1], id="near-max-mixed"),
        pytest.param([1e308, -1e308, 1e308], [1, -1, 1], id="sum-overflows"),
        pytest.param([5e-324, 0.0, 1e-323], [1.0, 0.0, 2.0], id="subnormal"),
    ],
)
@pytest.mark.parametrize("ddof", [0, 1])
def test_normalized_advantages_do_not_overflow_near_the_float_range(advantages, unit, ddof) -> None:
    """Standardising is scale-free: entries near 1e308 give what the same pattern gives at 1."""
    with np.errstate(over="raise", invalid="raise"):
        got = reference.normalized_advantages(advantages, ddof=ddof)
    np.testing.assert_allclose(got, reference.normalized_advantages(unit, ddof=ddof), rtol=1e-12)


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        pytest.param(0.0, 0.5, id="zero-kl-halves"),
        pytest.param(0.01 / 1.5 * 0.99, 0.5, id="just-below-band-halves"),
        pytest.param(0.01 / 1.5 * 1.01, 1.0, id="just-inside-band-keeps"),
        pytest.param(0.015 * 0.99, 1.0, id="just-below-upper-keeps"),
        pytest.param(0.015 * 1.01, 2.0, id="just-above-upper-doubles"),
    ],
)
def test_adaptive_kl_coefficient_table(observed: float, expected: float) -> None:
    # PPO paper rule with target 0.01: halve below 0.01/1.5, double above 0.015.
    assert reference.adaptive_kl_coefficient(1.0, observed, target_kl=0.01) == expected


# --------------------------------------------------------------------------------------------
# Bad arguments, one table
# --------------------------------------------------------------------------------------------

_TRAJECTORY = ([1.0, 2.0], [0.0, 0.0], [False, False], [False, False], [0.0, 0.0], 0.0)

BAD_ARGUMENTS = [
    pytest.param(
        reference.discounted_returns,
        ([], []),
        {"discount": 0.9},
        ValueError,
        "T >= 1",
        id="returns-empty",
    ),
    pytest.param(
        reference.discounted_returns,
        ([1.0], [2]),
        {"discount": 0.9},
        ValueError,
        "dones",
        id="returns-flag-2",
    ),
    pytest.param(
        reference.discounted_returns,
        ([1.0], [True]),
        {"discount": 1.5},
        ValueError,
        "discount",
        id="returns-discount",
    ),
    pytest.param(
        reference.discounted_returns,
        (["a"], [True]),
        {"discount": 0.5},
        TypeError,
        "rewards",
        id="returns-string",
    ),
    pytest.param(
        reference.generalized_advantage_estimation,
        _TRAJECTORY[:1] + ([0.0],) + _TRAJECTORY[2:],
        {"discount": 0.9, "lambda_": 0.9},
        ValueError,
        "values",
        id="gae-values-shape",
    ),
    pytest.param(
        reference.generalized_advantage_estimation,
        _TRAJECTORY[:5] + ([0.0, 0.0],),
        {"discount": 0.9, "lambda_": 0.9},
        ValueError,
        "last_value",
        id="gae-last-value-shape",
    ),
    pytest.param(
        reference.generalized_advantage_estimation,
        _TRAJECTORY,
        {"discount": 0.9, "lambda_": -0.1},
        ValueError,
        "lambda_",
        id="gae-lambda",
    ),
    pytest.param(
        reference.generalized_advantage_estimation,
        _TRAJECTORY[:3] + ([False, True], [0.0, np.nan], 0.0),
        {"discount": 0.9, "lambda_": 0.9},
        ValueError,
        "final_values",
        id="gae-nan-final-value-used",
    ),
    pytest.param(
        reference.lambda_returns,
        ([np.inf, 0.0],) + _TRAJECTORY[1:],
        {"discount": 0.9, "lambda_": 0.9},
        ValueError,
        "rewards",
        id="lambda-inf-reward",
    ),
    pytest.param(
        reference.ppo_clipped_surrogate_loss,
        ([0.0], [0.0, 1.0], [1.0]),
        {"clip_epsilon": 0.2},
        ValueError,
        "old_log_probs",
        id="ppo-shape",
    ),
    pytest.param(
        reference.ppo_clipped_surrogate_loss,
        ([0.0], [0.0], [1.0]),
        {"clip_epsilon": 0.0},
        ValueError,
        "clip_epsilon",
        id="ppo-clip-zero",
    ),
    pytest.param(
        reference.ppo_clipped_surrogate_loss,
        ([0.0], [0.0], [1.0]),
        {"clip_epsilon": "0.2"},
        TypeError,
        "clip_epsilon",
        id="ppo-clip-string",
    ),
    pytest.param(
        reference.clipped_value_loss,
        ([], [], []),
        {"clip_epsilon": 0.2},
        ValueError,
        "empty",
        id="value-empty",
    ),
    pytest.param(
        reference.kl_estimator_k3,
        ([0.0], [np.nan]),
        {},
        ValueError,
        "reference_log_probs",
        id="k3-nan",
    ),
    pytest.param(
        reference.adaptive_kl_coefficient,
        (0.0, 0.01),
        {"target_kl": 0.01},
        ValueError,
        "kl_coefficient",
        id="adaptive-beta-zero",
    ),
    pytest.param(
        reference.adaptive_kl_coefficient,
        (1.0, -0.01),
        {"target_kl": 0.01},
        ValueError,
        "observed_kl",
        id="adaptive-negative-kl",
    ),
    pytest.param(
        reference.categorical_entropy, ([np.nan, 0.0],), {}, ValueError, "logits", id="entropy-nan"
    ),
    pytest.param(
        reference.categorical_entropy,
        ([-np.inf, -np.inf],),
        {},
        ValueError,
        "finite entry",
        id="entropy-all-masked",
    ),
    pytest.param(
        reference.dpo_loss,
        ([0.0], [0.0], [0.0], [0.0]),
        {"beta": -1.0},
        ValueError,
        "beta",
        id="dpo-beta",
    ),
    pytest.param(
        reference.bradley_terry_loss,
        ([0.0], [0.0, 1.0]),
        {},
        ValueError,
        "rejected_rewards",
        id="bt-shape",
    ),
    pytest.param(
        reference.group_normalized_advantages,
        ([0.0, 1.0],),
        {},
        ValueError,
        "2 dimensions",
        id="grpo-1d",
    ),
    pytest.param(
        reference.group_normalized_advantages,
        ([[0.0, 1.0]],),
        {"ddof": 2},
        ValueError,
        "ddof",
        id="grpo-ddof",
    ),
    pytest.param(
        reference.normalized_advantages,
        ([0.0, 1.0],),
        {"epsilon": -1e-8},
        ValueError,
        "epsilon",
        id="norm-epsilon",
    ),
]


@pytest.mark.parametrize(("function", "args", "kwargs", "error", "match"), BAD_ARGUMENTS)
def test_bad_arguments_are_rejected_with_a_message_naming_them(
    function: Any, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        function(*args, **kwargs)


def test_every_public_function_states_claim_conventions_and_reference() -> None:
    for name in reference.__all__:
        doc = getattr(reference, name).__doc__
        for section in ("Claim:", "Conventions:", "Args:", "Returns:", "Examples:", "References:"):
            assert section in doc, f"{name} docstring lacks {section}"


def test_all_is_sorted() -> None:
    assert reference.__all__ == sorted(reference.__all__)


# --------------------------------------------------------------------------------------------
# Policy-gradient, dual-clip PPO and actor-critic losses
# --------------------------------------------------------------------------------------------


@given(ppo_batches())
def test_ppo_gradient_at_the_old_policy_is_the_policy_gradient_loss_gradient(
    batch: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    # ppo-clip-gradient: at rho = 1 no clip is active and -rho A / N = -A / N, the gradient of
    # -mean(log_probs * A).
    new, _, advantages, epsilon = batch
    ppo = reference.ppo_clipped_surrogate_loss_gradient(new, new, advantages, clip_epsilon=epsilon)
    np.testing.assert_array_equal(ppo, -advantages / len(advantages))
    # and the loss is linear in log_probs with that slope: one step changes it by -A_i h / N
    h = 0.5
    for i in range(len(new)):
        moved = new.copy()
        moved[i] += h
        change = reference.policy_gradient_loss(moved, advantages) - reference.policy_gradient_loss(
            new, advantages
        )
        np.testing.assert_allclose(change, -advantages[i] * h / len(new), rtol=1e-9, atol=1e-12)


@given(ppo_batches())
def test_dual_clip_with_infinite_c_is_the_ppo_loss(
    batch: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    new, old, advantages, epsilon = batch
    np.testing.assert_array_equal(
        reference.dual_clip_ppo_loss(new, old, advantages, clip_epsilon=epsilon, dual_clip=np.inf),
        reference.ppo_clipped_surrogate_loss(new, old, advantages, clip_epsilon=epsilon),
    )


@given(ppo_batches(), st.floats(1.01, 10.0))
def test_dual_clip_changes_only_negative_advantages_beyond_c(
    batch: tuple[np.ndarray, np.ndarray, np.ndarray, float], c: float
) -> None:
    new, old, advantages, epsilon = batch
    ratio = np.exp(new - old)
    for i in range(len(new)):
        args = ([new[i]], [old[i]], [advantages[i]])
        dual = reference.dual_clip_ppo_loss(*args, clip_epsilon=epsilon, dual_clip=c)
        ppo = reference.ppo_clipped_surrogate_loss(*args, clip_epsilon=epsilon)
        if advantages[i] >= 0 or ratio[i] <= c:
            assert dual == ppo
        else:  # the objective is bounded below by c A: the loss by -c A = c |A|
            np.testing.assert_allclose(dual, -c * advantages[i], rtol=1e-15)
            assert dual <= ppo


def test_dual_clip_hand_example_both_signs() -> None:
    # By hand, eps = 0.2, c = 3: rho = 10, A = +1: PPO's min(10, 1.2) = 1.2 (the dual clip does
    # not apply to A > 0); rho = 10, A = -2: max(min(-20, -2.4), -6) = -6. Loss -(1.2 - 6) / 2.
    got = reference.dual_clip_ppo_loss(
        [np.log(10.0)] * 2, [0.0, 0.0], [1.0, -2.0], clip_epsilon=0.2, dual_clip=3.0
    )
    np.testing.assert_allclose(got, 2.4, rtol=1e-15)


@st.composite
def actor_critic_batches(draw: Any) -> dict[str, Any]:
    new, old, advantages, epsilon = draw(ppo_batches())
    n = len(new)
    vector = hnp.arrays(np.float64, n, elements=finite)
    return {
        "arrays": (
            new,
            old,
            advantages,
            draw(vector),
            draw(vector),
            draw(vector),
            new - draw(hnp.arrays(np.float64, n, elements=st.floats(-3.0, 3.0))),
        ),
        "clip_epsilon": epsilon,
    }


@given(actor_critic_batches())
def test_actor_critic_with_zero_coefficients_is_the_ppo_loss(batch: dict[str, Any]) -> None:
    new, old, advantages, *_ = batch["arrays"]
    zero = {"value_coefficient": 0.0, "entropy_coefficient": 0.0, "kl_coefficient": 0.0}
    expected = reference.ppo_clipped_surrogate_loss(
        new, old, advantages, clip_epsilon=batch["clip_epsilon"]
    )
    got = reference.actor_critic_loss(*batch["arrays"], clip_epsilon=batch["clip_epsilon"], **zero)
    assert got == expected
    # reference_log_probs may be omitted when there is no KL term
    got = reference.actor_critic_loss(
        *batch["arrays"][:6], clip_epsilon=batch["clip_epsilon"], **zero
    )
    assert got == expected


@given(actor_critic_batches(), unit, unit, unit)
def test_actor_critic_loss_is_its_terms_with_their_signs(
    batch: dict[str, Any], c_v: float, c_e: float, beta: float
) -> None:
    # + c_v * (1/2 mean squared error) - c_e * mean entropy + beta * mean k3, each term from the
    # reference function that defines it.
    new, old, advantages, values, returns, entropy, ref = batch["arrays"]
    epsilon = batch["clip_epsilon"]
    expected = (
        reference.ppo_clipped_surrogate_loss(new, old, advantages, clip_epsilon=epsilon)
        + c_v * reference.clipped_value_loss(values, values, returns, clip_epsilon=np.inf)
        - c_e * np.mean(entropy)
        + beta * np.mean(reference.kl_estimator_k3(new, ref))
    )
    got = reference.actor_critic_loss(
        *batch["arrays"],
        clip_epsilon=epsilon,
        value_coefficient=c_v,
        entropy_coefficient=c_e,
        kl_coefficient=beta,
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_actor_critic_entropy_lowers_and_kl_raises_the_loss() -> None:
    # The signs, by hand: rho = 1, A = 0, V = R: only the entropy and KL terms remain.
    # entropy 2 with c_e = 0.5 gives -1; r = pi_ref / pi = 2 gives k3 = 1 - log 2 (> 0).
    args = ([0.0], [0.0], [0.0], [1.0], [1.0], [2.0], [np.log(2.0)])
    got = reference.actor_critic_loss(
        *args,
        clip_epsilon=0.2,
        value_coefficient=1.0,
        entropy_coefficient=0.5,
        kl_coefficient=1.0,
    )
    np.testing.assert_allclose(got, -1.0 + (1.0 - np.log(2.0)), rtol=1e-15)


# Central differences of the loss against the gradient each spec checks in autodiff frameworks.


@st.composite
def moderate_loss_examples(draw: Any, name: str) -> Any:
    """Examples of the spec ``name`` with moderate inputs (central differences are accurate)
    and at least 1e-2 in log-ratio (or margin) units away from every kink."""
    from rlmath.specs import SPECS, Example

    spec = SPECS[name]
    hyper = {key: draw(strategy) for key, strategy in spec.hyperparameters.items()}
    n = draw(st.integers(1, 4))

    def vector(low: float, high: float) -> np.ndarray:
        return draw(hnp.arrays(np.float64, n, elements=st.floats(low, high)))

    new, log_ratio = vector(-5.0, 0.0), vector(-1.0, 1.0)
    epsilon = hyper.get("clip_epsilon", 0.2)
    kinks = [np.log1p(epsilon), np.log1p(-epsilon), np.log(hyper.get("dual_clip", 10.0))]
    assume(np.min(np.abs(log_ratio[:, None] - np.array(kinks)[None, :])) > 1e-2)
    arrays = {
        "log_probs": new,
        "old_log_probs": new - log_ratio,
        "advantages": vector(-10.0, 10.0),
        "values": vector(-10.0, 10.0),
        "returns": vector(-10.0, 10.0),
        "entropy": vector(-5.0, 5.0),
        "reference_log_probs": new - vector(-1.0, 1.0),
        "policy_chosen_log_probs": vector(-20.0, 0.0),
        "policy_rejected_log_probs": vector(-20.0, 0.0),
        "reference_chosen_log_probs": vector(-20.0, 0.0),
        "reference_rejected_log_probs": vector(-20.0, 0.0),
        "chosen_lengths": draw(hnp.arrays(np.int64, n, elements=st.integers(1, 20))),
        "rejected_lengths": draw(hnp.arrays(np.int64, n, elements=st.integers(1, 20))),
    }
    example = Example({key: arrays[key] for key in spec.arguments}, hyper)
    if name == "preference_loss" and hyper["loss_type"] == "hinge":
        a = example.arguments
        margin = (a["policy_chosen_log_probs"] - a["reference_chosen_log_probs"]) - (
            a["policy_rejected_log_probs"] - a["reference_rejected_log_probs"]
        )
        assume(np.min(np.abs(hyper["beta"] * margin - 1)) > 1e-2)
    return example


@pytest.mark.parametrize(
    "name", ["policy_gradient_loss", "dual_clip_ppo_loss", "actor_critic_loss", "preference_loss"]
)
def test_spec_gradients_match_central_differences_of_the_reference(name: str) -> None:
    from rlmath.specs import SPECS

    spec = SPECS[name]

    @settings(max_examples=30, database=None)
    @given(moderate_loss_examples(name))
    def inner(example: Any) -> None:
        h = 1e-6
        for argument, (expected, _) in spec.gradient(example).items():  # type: ignore[misc]
            for i in range(len(expected)):
                values = []
                for sign in (1.0, -1.0):
                    moved = {k: np.array(v, copy=True) for k, v in example.arguments.items()}
                    moved[argument][i] += sign * h
                    values.append(spec.expected(type(example)(moved, example.hyperparameters)))
                step = (example.arguments[argument][i] + h) - (example.arguments[argument][i] - h)
                difference = float(values[0][0] - values[1][0]) / step
                np.testing.assert_allclose(
                    difference, expected[i], rtol=1e-5, atol=1e-7, err_msg=f"{argument}[{i}]"
                )

    inner()


# --------------------------------------------------------------------------------------------
# n-step returns and V-trace
# --------------------------------------------------------------------------------------------


@given(trajectories(), unit, st.integers(1, 9))
def test_n_step_returns_equal_the_direct_definition(
    trajectory: dict[str, Any], discount: float, n_steps: int
) -> None:
    # n_step_return (top of this file) writes the sum of n rewards and the bootstrap out.
    expected = [
        n_step_return(trajectory, t, n_steps, discount) for t in range(len(trajectory["rewards"]))
    ]
    got = call(reference.n_step_returns, trajectory, discount=discount, n_steps=n_steps)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL)


@given(trajectories(), unit)
def test_one_step_return_is_the_td_target(trajectory: dict[str, Any], discount: float) -> None:
    # r_t + gamma v'_t = delta_t + V(s_t)
    got = call(reference.n_step_returns, trajectory, discount=discount, n_steps=1)
    td = call(reference.temporal_difference_errors, trajectory, discount=discount)
    np.testing.assert_allclose(got, td + trajectory["values"], rtol=RTOL, atol=RTOL)


@given(trajectories(), unit, st.integers(0, 3))
def test_n_step_returns_with_n_at_least_t_are_lambda_one_returns(
    trajectory: dict[str, Any], discount: float, extra: int
) -> None:
    # The Monte-Carlo return to the end of the episode, bootstrapped there.
    n_steps = len(trajectory["rewards"]) + extra
    got = call(reference.n_step_returns, trajectory, discount=discount, n_steps=n_steps)
    expected = call(reference.lambda_returns, trajectory, discount=discount, lambda_=1.0)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL)


def test_n_step_returns_hand_example_with_termination_and_truncation() -> None:
    # gamma = 1, n = 2; step 1 terminates, step 3 is truncated with final value 10, V(s_5) = 7.
    # G_0 = r0 + r1 (window cut by the termination, no bootstrap) = 3;  G_1 = r1 = 2;
    # G_2 = r2 + r3 + final value 10 = 17;  G_3 = r3 + 10 = 14;  G_4 = r4 + last value 7 = 12.
    got = reference.n_step_returns(
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [False, True, False, False, False],
        [False, False, False, True, False],
        [0.0, 0.0, 0.0, 10.0, 0.0],
        7.0,
        discount=1.0,
        n_steps=2,
    )
    np.testing.assert_array_equal(got, [3.0, 2.0, 17.0, 14.0, 12.0])


@given(
    st.lists(st.tuples(trajectories(max_steps=4), st.integers(1, 4)), min_size=1, max_size=3),
    unit,
)
def test_n_step_batched_equals_loop(
    pairs: list[tuple[dict[str, Any], int]], discount: float
) -> None:
    trajectories_, _ = zip(*pairs, strict=True)
    steps = min(len(t["rewards"]) for t in trajectories_)
    keys = ("rewards", "values", "terminated", "truncated", "final_values")
    batched = [np.stack([t[k][:steps] for t in trajectories_], axis=1) for k in keys]
    last = np.array([t["last_value"] for t in trajectories_])
    got = reference.n_step_returns(*batched, last, discount=discount, n_steps=3)
    for column, trajectory in enumerate(trajectories_):
        single = [trajectory[k][:steps] for k in keys]
        np.testing.assert_array_equal(
            got[:, column],
            reference.n_step_returns(
                *single, trajectory["last_value"], discount=discount, n_steps=3
            ),
        )


def vtrace_by_direct_sum(
    trajectory: dict[str, Any],
    log_ratios: np.ndarray,
    discount: float,
    rho_bar: float,
    c_bar: float,
) -> np.ndarray:
    """IMPALA eq. (1): v_t = V_t + sum_k gamma^(k-t) (prod_{i<k} c_i) rho_k delta_k, O(T^2)."""
    ratio = np.exp(log_ratios)
    rho, c = np.minimum(rho_bar, ratio), np.minimum(c_bar, ratio)
    steps = len(trajectory["rewards"])
    deltas = [
        trajectory["rewards"][k]
        + discount * next_value_by_definition(trajectory, k)
        - trajectory["values"][k]
        for k in range(steps)
    ]
    result = []
    for t in range(steps):
        total = 0.0
        for k in range(t, episode_end(trajectory, t) + 1):
            traces = np.prod(c[t:k]) if k > t else 1.0
            total += discount ** (k - t) * traces * rho[k] * deltas[k]
        result.append(trajectory["values"][t] + total)
    return np.array(result)


def vtrace_call(trajectory: dict[str, Any], log_ratios: np.ndarray, **hyper: float) -> np.ndarray:
    behaviour = np.full(len(log_ratios), -1.0)
    return call(
        lambda *args, **kw: reference.vtrace_targets(
            *args, behaviour + log_ratios, behaviour, **kw
        ),
        trajectory,
        **hyper,
    )


thresholds = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, np.inf]), st.floats(0.0, 3.0))


@given(st.data(), trajectories(), unit, thresholds, thresholds)
def test_vtrace_equals_the_sum_of_impala_equation_one(
    data: Any, trajectory: dict[str, Any], discount: float, rho_bar: float, c_bar: float
) -> None:
    steps = len(trajectory["rewards"])
    log_ratios = data.draw(hnp.arrays(np.float64, steps, elements=st.floats(-2.0, 2.0)))
    got = vtrace_call(
        trajectory,
        log_ratios,
        discount=discount,
        clip_rho_threshold=rho_bar,
        clip_c_threshold=c_bar,
    )
    expected = vtrace_by_direct_sum(trajectory, log_ratios, discount, rho_bar, c_bar)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@given(
    trajectories(), unit, st.sampled_from([1.0, 1.5, np.inf]), st.sampled_from([1.0, 3.0, np.inf])
)
def test_vtrace_on_policy_is_the_lambda_one_return(
    trajectory: dict[str, Any], discount: float, rho_bar: float, c_bar: float
) -> None:
    # pi = mu and thresholds >= 1: every rho_t = c_t = 1, so the corrections are GAE(lambda = 1).
    steps = len(trajectory["rewards"])
    got = vtrace_call(
        trajectory,
        np.zeros(steps),
        discount=discount,
        clip_rho_threshold=rho_bar,
        clip_c_threshold=c_bar,
    )
    expected = call(reference.lambda_returns, trajectory, discount=discount, lambda_=1.0)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL)


@given(st.data(), trajectories(), unit, thresholds)
def test_vtrace_with_zero_trace_threshold_is_the_one_step_target(
    data: Any, trajectory: dict[str, Any], discount: float, rho_bar: float
) -> None:
    # c_bar = 0 cuts every trace: v_t = V(s_t) + rho_t delta_t.
    steps = len(trajectory["rewards"])
    log_ratios = data.draw(hnp.arrays(np.float64, steps, elements=st.floats(-2.0, 2.0)))
    got = vtrace_call(
        trajectory, log_ratios, discount=discount, clip_rho_threshold=rho_bar, clip_c_threshold=0.0
    )
    td = call(reference.temporal_difference_errors, trajectory, discount=discount)
    rho = np.minimum(rho_bar, np.exp(log_ratios))
    np.testing.assert_allclose(got, trajectory["values"] + rho * td, rtol=RTOL, atol=RTOL)


# --------------------------------------------------------------------------------------------
# Preference losses (TRL loss_type)
# --------------------------------------------------------------------------------------------

preference_rows = st.lists(
    st.tuples(log_prob, log_prob, log_prob, log_prob, st.integers(1, 30), st.integers(1, 30)),
    min_size=1,
    max_size=5,
)


def preference_columns(rows: list[tuple[float, ...]]) -> list[np.ndarray]:
    return [np.array(column) for column in zip(*rows, strict=True)]


@given(preference_rows, st.floats(0.01, 2.0))
def test_sigmoid_preference_loss_without_smoothing_is_dpo(
    rows: list[tuple[float, ...]], beta: float
) -> None:
    columns = preference_columns(rows)
    assert reference.preference_loss(
        *columns, beta=beta, loss_type="sigmoid"
    ) == reference.dpo_loss(*columns[:4], beta=beta)


def _swapped(columns: list[np.ndarray]) -> list[np.ndarray]:
    """The same pairs with the preference label flipped (chosen and rejected exchanged)."""
    pc, pr, rc, rr, lc, lr = columns
    return [pr, pc, rr, rc, lr, lc]


@given(preference_rows, st.floats(0.01, 2.0), st.floats(0.0, 0.5))
def test_conservative_dpo_is_dpo_averaged_over_flipped_labels(
    rows: list[tuple[float, ...]], beta: float, epsilon: float
) -> None:
    # cDPO (Mitchell 2023): the DPO loss of a label that is flipped with probability epsilon.
    columns = preference_columns(rows)
    expected = (1 - epsilon) * reference.dpo_loss(*columns[:4], beta=beta) + epsilon * (
        reference.dpo_loss(*_swapped(columns)[:4], beta=beta)
    )
    got = reference.preference_loss(
        *columns, beta=beta, loss_type="sigmoid", label_smoothing=epsilon
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@given(preference_rows, st.floats(0.01, 2.0), st.floats(0.0, 0.45))
def test_robust_dpo_is_unbiased_under_label_flips(
    rows: list[tuple[float, ...]], beta: float, epsilon: float
) -> None:
    # rDPO's defining property (Chowdhury et al. 2024): averaged over labels flipped with
    # probability epsilon, the robust loss is the clean DPO loss.
    columns = preference_columns(rows)

    def robust(cols: list[np.ndarray]) -> float:
        return reference.preference_loss(
            *cols, beta=beta, loss_type="robust", label_smoothing=epsilon
        )

    averaged = (1 - epsilon) * robust(columns) + epsilon * robust(_swapped(columns))
    expected = reference.dpo_loss(*columns[:4], beta=beta)
    np.testing.assert_allclose(averaged, expected, rtol=1e-9, atol=1e-9)


def test_hinge_and_ipo_hand_examples() -> None:
    # Margin z = (pc - rc) - (pr - rr) = (-1 + 2) - (-3 + 2) = 2 for the first pair and 0 for the
    # second. Hinge (SLiC): relu(1 - beta z): beta = 1 gives relu(-1) = 0 and relu(1) = 1,
    # mean 0.5; beta = 0.1 gives 0.8 and 1, mean 0.9.
    pairs = ([-1.0, -2.0], [-3.0, -2.0], [-2.0, -2.0], [-2.0, -2.0])
    assert reference.preference_loss(*pairs, beta=1.0, loss_type="hinge") == 0.5
    np.testing.assert_allclose(
        reference.preference_loss(*pairs, beta=0.1, loss_type="hinge"), 0.9, rtol=1e-15
    )
    # IPO (Azar et al. 2023, eq. 17) with TRL's length averaging, beta = 0.25 (1/(2 beta) = 2):
    # lengths (1, 1) for the first pair: z~ = 2, loss 0; lengths (2, 4) for the second:
    # z~ = (-2/2 + 2/2) - (-2/4 + 2/4) = 0, loss (0 - 2)^2 = 4. Mean 2.
    got = reference.preference_loss(*pairs, [1, 2], [1, 4], beta=0.25, loss_type="ipo")
    assert got == 2.0


@given(preference_rows, st.floats(0.01, 2.0))
def test_ipo_uses_length_averaged_log_probs(rows: list[tuple[float, ...]], beta: float) -> None:
    # Reduction: IPO with lengths L equals IPO with lengths 1 on the log-probs divided by L.
    pc, pr, rc, rr, lc, lr = preference_columns(rows)
    ones = np.ones_like(lc)
    averaged = (pc / lc, pr / lr, rc / lc, rr / lr, ones, ones)
    np.testing.assert_allclose(
        reference.preference_loss(pc, pr, rc, rr, lc, lr, beta=beta, loss_type="ipo"),
        reference.preference_loss(*averaged, beta=beta, loss_type="ipo"),
        rtol=1e-12,
    )


@given(preference_rows, st.floats(0.01, 2.0), st.sampled_from(["sigmoid", "hinge", "robust"]))
def test_lengths_matter_only_to_ipo(
    rows: list[tuple[float, ...]], beta: float, loss_type: str
) -> None:
    columns = preference_columns(rows)
    assert reference.preference_loss(
        *columns, beta=beta, loss_type=loss_type
    ) == reference.preference_loss(*columns[:4], beta=beta, loss_type=loss_type)


_PAIR = ([0.0], [0.0], [0.0], [0.0])

BAD_ARGUMENTS_OF_THE_LOSS_VARIANTS = [
    pytest.param(
        reference.policy_gradient_loss,
        ([0.0], [1.0, 2.0]),
        {},
        ValueError,
        "advantages",
        id="pg-shape",
    ),
    pytest.param(reference.policy_gradient_loss, ([], []), {}, ValueError, "empty", id="pg-empty"),
    pytest.param(
        reference.dual_clip_ppo_loss,
        ([0.0], [0.0], [1.0]),
        {"clip_epsilon": 0.2, "dual_clip": 1.0},
        ValueError,
        "dual_clip",
        id="dual-clip-one",
    ),
    pytest.param(
        reference.dual_clip_ppo_loss,
        ([0.0], [0.0], [1.0]),
        {"clip_epsilon": 0.2, "dual_clip": "3"},
        TypeError,
        "dual_clip",
        id="dual-clip-string",
    ),
    pytest.param(
        reference.actor_critic_loss,
        ([0.0], [0.0], [1.0], [0.0], [0.0], [0.0]),
        {
            "clip_epsilon": 0.2,
            "value_coefficient": 0.5,
            "entropy_coefficient": 0.01,
            "kl_coefficient": 0.1,
        },
        ValueError,
        "reference_log_probs",
        id="actor-critic-kl-without-reference",
    ),
    pytest.param(
        reference.actor_critic_loss,
        ([0.0], [0.0], [1.0], [0.0], [0.0], [0.0], [0.0]),
        {
            "clip_epsilon": 0.2,
            "value_coefficient": 0.5,
            "entropy_coefficient": -0.01,
            "kl_coefficient": 0.1,
        },
        ValueError,
        "entropy_coefficient",
        id="actor-critic-negative-entropy-coefficient",
    ),
    pytest.param(
        reference.actor_critic_loss,
        ([0.0], [0.0], [1.0], [0.0], [0.0], [0.0, 1.0], [0.0]),
        {
            "clip_epsilon": 0.2,
            "value_coefficient": 0.5,
            "entropy_coefficient": 0.01,
            "kl_coefficient": 0.1,
        },
        ValueError,
        "entropy",
        id="actor-critic-entropy-shape",
    ),
    pytest.param(
        reference.n_step_returns,
        _TRAJECTORY,
        {"discount": 0.9, "n_steps": 0},
        ValueError,
        "n_steps",
        id="n-step-zero",
    ),
    pytest.param(
        reference.n_step_returns,
        _TRAJECTORY,
        {"discount": 0.9, "n_steps": 2.5},
        TypeError,
        "n_steps",
        id="n-step-float",
    ),
    pytest.param(
        reference.vtrace_targets,
        (*_TRAJECTORY, [0.0, 0.0], [0.0, 0.0]),
        {"discount": 0.9, "clip_rho_threshold": -1.0},
        ValueError,
        "clip_rho_threshold",
        id="vtrace-negative-threshold",
    ),
    pytest.param(
        reference.vtrace_targets,
        (*_TRAJECTORY, [0.0], [0.0, 0.0]),
        {"discount": 0.9},
        ValueError,
        "log_probs",
        id="vtrace-log-probs-shape",
    ),
    pytest.param(
        reference.vtrace_targets,
        (*_TRAJECTORY, [0.0, 0.0], [0.0, np.nan]),
        {"discount": 0.9},
        ValueError,
        "behaviour_log_probs",
        id="vtrace-nan-behaviour",
    ),
    pytest.param(
        reference.preference_loss,
        _PAIR,
        {"beta": 0.1, "loss_type": "kto"},
        ValueError,
        "loss_type",
        id="preference-unknown-type",
    ),
    pytest.param(
        reference.preference_loss,
        _PAIR,
        {"beta": 0.1, "loss_type": 3},
        TypeError,
        "loss_type",
        id="preference-type-not-str",
    ),
    pytest.param(
        reference.preference_loss,
        _PAIR,
        {"beta": 0.1, "loss_type": "ipo"},
        ValueError,
        "chosen_lengths",
        id="ipo-without-lengths",
    ),
    pytest.param(
        reference.preference_loss,
        (*_PAIR, [3], [0]),
        {"beta": 0.1, "loss_type": "ipo"},
        ValueError,
        "rejected_lengths",
        id="ipo-zero-length",
    ),
    pytest.param(
        reference.preference_loss,
        _PAIR,
        {"beta": 0.1, "loss_type": "robust", "label_smoothing": 0.5},
        ValueError,
        "label_smoothing",
        id="robust-smoothing-half",
    ),
    pytest.param(
        reference.preference_loss,
        _PAIR,
        {"beta": 0.1, "loss_type": "sigmoid", "label_smoothing": 0.7},
        ValueError,
        "label_smoothing",
        id="sigmoid-smoothing-above-half",
    ),
]


@pytest.mark.parametrize(
    ("function", "args", "kwargs", "error", "match"), BAD_ARGUMENTS_OF_THE_LOSS_VARIANTS
)
def test_bad_arguments_of_the_loss_variants_are_rejected(
    function: Any, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        function(*args, **kwargs)
