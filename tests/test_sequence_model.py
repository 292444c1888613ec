"""Tests of rlmath.sequence_model: the tabular autoregressive policy over token sequences.

Independent sides: probabilities by a dictionary walk over prefix tuples (no node
arithmetic), gradients by complex-step and central differences of J, group expectations by
Python loops over ordered G-tuples (itertools.product), and the objective and gradient by the
Bellman recursion of rlmath.exact on the MDP view.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmath import exact
from rlmath.sequence_model import (
    MAX_GROUPS,
    MAX_RESPONSES,
    SequenceModel,
    count_groups,
    count_nodes,
    count_responses,
    enumerate_responses,
    expected_over_groups,
    group_indices,
)
from rlmath.testing import central_difference_gradient, sequence_models
from rlmath.tolerances import (
    central_difference_step,
    exact_rtol,
    softmax_objective_third_derivative_bound,
)


# ----------------------------------------------------------------------------- helpers
def prefix_walk_log_probabilities(model: SequenceModel, reference: bool = False) -> np.ndarray:
    """log pi(y | x) by walking each response's prefixes through a dict {prefix tuple: node}.

    The node numbering is rebuilt breadth first from itertools.product, not from the module's
    base-K arithmetic.
    """
    K, L = model.n_tokens, model.max_length
    node_of = {}
    for d in range(L):
        for prefix in itertools.product(range(K), repeat=d):
            node_of[prefix] = len(node_of)
    theta = model.reference_theta if reference else model.theta
    out = np.zeros((model.n_prompts, model.n_responses))
    for x in range(model.n_prompts):
        for i, y in enumerate(model.responses.as_tuples()):
            total = 0.0
            for t, token in enumerate(y):
                row = theta[x, node_of[y[:t]]]
                total += row[token] - (row.max() + math.log(np.exp(row - row.max()).sum()))
            out[x, i] = total
    return out


def complex_log_probabilities(model: SequenceModel, theta: np.ndarray) -> np.ndarray:
    """log pi(y | x) for complex logits (complex-step differentiation), ``[X, R]``."""
    shift = theta.real.max(axis=-1, keepdims=True)
    log_pi = theta - shift - np.log(np.exp(theta - shift).sum(axis=-1, keepdims=True))
    r = model.responses
    gathered = log_pi[:, np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)]
    return np.where(r.mask[None], gathered, 0.0).sum(axis=2)


def complex_regularized_objective(model: SequenceModel, theta: np.ndarray, beta: float) -> complex:
    log_p = complex_log_probabilities(model, theta)
    log_ref = model.log_probabilities(reference=True)
    p = np.exp(log_p)
    value = p * (model.total_rewards() - beta * (log_p - log_ref))
    return complex(model.prompt_probabilities @ value.sum(axis=1))


def complex_step_gradient(function, theta: np.ndarray, h: float = 1e-20) -> np.ndarray:
    grad = np.zeros(theta.shape)
    for index in np.ndindex(*theta.shape):
        z = theta.astype(np.complex128)
        z[index] += 1j * h
        grad[index] = function(z).imag / h
    return grad


def gradient_scale(model: SequenceModel, beta: float = 0.0) -> float:
    """sum_x rho sum_y pi |W| * 2 |y|: a bound on the sum of absolute terms of the gradient."""
    log_p = model.log_probabilities()
    W = model.total_rewards() - beta * (log_p - model.log_probabilities(reference=True))
    terms = np.exp(log_p) * np.abs(W) * 2 * model.responses.lengths
    return max(float(model.prompt_probabilities @ terms.sum(axis=1)), 1e-300)


def grpo_gradient_weights(batch, eps: float = 1e-4) -> np.ndarray:
    """Per-member weights c_j of the GRPO token-mean loss gradient sum_j c_j grad log pi(y_j)."""
    r = batch.rewards
    advantages = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, keepdims=True) + eps)
    return -advantages / batch.lengths.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- enumeration
def test_counts_match_hand_counts():
    # K = 3, L = 3: 1 + 3 + 9 prefixes followed by EOS, 27 truncated (the issue's count)
    assert count_nodes(3, 3) == 13
    assert count_responses(3, 3) == 40
    assert count_groups(40, 4) == math.comb(43, 4) == 123410
    assert count_groups(40, 4, ordered=True) == 40**4


def test_enumeration_small_example():
    responses = enumerate_responses(2, 2)  # EOS = 2; written out by hand
    assert responses.as_tuples() == [(2,), (0, 2), (1, 2), (0, 0), (0, 1), (1, 0), (1, 1)]
    assert responses.lengths.tolist() == [1, 2, 2, 2, 2, 2, 2]
    assert responses.ends_with_eos.tolist() == [True, True, True, False, False, False, False]
    assert responses.nodes.tolist() == [[0, -1], [0, 1], [0, 2], [0, 1], [0, 1], [0, 2], [0, 2]]


@pytest.mark.parametrize("K, L", [(1, 1), (1, 4), (2, 3), (3, 3), (4, 2)])
def test_enumeration_is_every_response_once(K, L):
    tuples = enumerate_responses(K, L).as_tuples()
    expected = {p + (K,) for d in range(L) for p in itertools.product(range(K), repeat=d)}
    expected |= set(itertools.product(range(K), repeat=L))
    assert len(tuples) == len(set(tuples)) == len(expected) == count_responses(K, L)
    assert set(tuples) == expected


@given(sequence_models(max_prompts=3, allow_zero_prompts=True))
def test_probabilities_sum_to_one_per_prompt(model):
    p = model.probabilities()
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=exact_rtol(n_terms=p.shape[1]))
    p_ref = model.probabilities(reference=True)
    np.testing.assert_allclose(p_ref.sum(axis=1), 1.0, rtol=0, atol=exact_rtol(n_terms=p.shape[1]))


@given(sequence_models())
def test_log_probabilities_match_prefix_walk(model):
    L = model.max_length
    for reference in (False, True):
        walked = prefix_walk_log_probabilities(model, reference)
        got = model.log_probabilities(reference=reference)
        # each token log-prob is within a few ulps of |logit| <= 5 + log(K + 1); L of them
        np.testing.assert_allclose(got, walked, rtol=0, atol=exact_rtol(n_terms=L) * 10)


def test_uniform_model_probabilities_by_hand():
    # uniform over K + 1 = 3 tokens, L = 2: (EOS,) has 1/3, every other response 1/9
    model = SequenceModel(np.zeros((1, 3, 3)), 2, [1.0])
    np.testing.assert_allclose(model.probabilities()[0], [1 / 3] + [1 / 9] * 6, rtol=1e-15)


# ----------------------------------------------------------------------------- gradients
@given(sequence_models(token_rewards=st.booleans()))
def test_objective_gradient_matches_central_differences(model):
    R_max = max(float(np.abs(model.total_rewards()).max()), 1e-300)
    n_terms = model.n_responses * model.max_length
    # along one logit theta[x, n, :] J is a one-step softmax bandit at node n: T = 1
    step, bound = central_difference_step(
        softmax_objective_third_derivative_bound(R_max, 1.0), exact_rtol(n_terms=n_terms) * R_max
    )
    differences = central_difference_gradient(
        lambda theta: model.with_theta(theta).objective(), model.theta, step
    )
    analytic = model.objective_gradient()
    tolerance = bound + exact_rtol(n_terms=n_terms) * gradient_scale(model)
    np.testing.assert_allclose(analytic, differences, rtol=0, atol=tolerance)


@pytest.mark.parametrize("beta", [0.0, 0.1, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_regularized_gradient_matches_complex_step(beta, seed):
    model = SequenceModel.random(2, 2, 3, seed=seed, token_rewards=True)
    steps = complex_step_gradient(
        lambda z: complex_regularized_objective(model, z, beta), model.theta
    )
    analytic = model.regularized_objective_gradient(beta)
    n_terms = model.n_responses * model.max_length
    tolerance = exact_rtol(n_terms=n_terms) * gradient_scale(model, beta)
    np.testing.assert_allclose(analytic, steps, rtol=0, atol=tolerance)
    # and the complex-step value is the model's value
    value = complex_regularized_objective(model, model.theta.astype(complex), beta).real
    assert value == pytest.approx(model.regularized_objective(beta), abs=1e-13)


def test_kl_is_zero_at_the_reference_and_positive_elsewhere():
    model = SequenceModel.random(2, 2, 2, seed=3)
    assert model.kl_to_reference() > 0
    same = SequenceModel(model.theta, 2, model.prompt_probabilities, reference_theta=model.theta)
    assert same.kl_to_reference() == 0.0
    np.testing.assert_array_equal(
        same.regularized_objective_gradient(1.0), same.objective_gradient()
    )


@given(sequence_models(token_rewards=True))
def test_reward_to_go_per_token_weights_give_the_same_gradient(model):
    # causality: sum_t score_t * (rewards from t on) has the same expectation as total reward
    r = model.responses
    token_r = np.where(
        r.mask[None], model.token_rewards[:, np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)], 0.0
    )
    to_go = np.flip(np.cumsum(np.flip(token_r, axis=2), axis=2), axis=2) + model.rewards[:, :, None]
    weights = model.prompt_probabilities[:, None, None] * model.probabilities()[:, :, None] * to_go
    causal = model.weighted_score_sum(weights)
    tolerance = exact_rtol(n_terms=model.n_responses * model.max_length) * gradient_scale(model)
    np.testing.assert_allclose(causal, model.objective_gradient(), rtol=0, atol=tolerance)


def test_weighted_score_sum_equals_dense_scores():
    model = SequenceModel.random(2, 3, 2, seed=4)
    w = np.random.default_rng(0).normal(size=(model.n_prompts, model.n_responses))
    dense = np.einsum("xi,xiynv->ynv", w, model.response_scores())
    np.testing.assert_allclose(model.weighted_score_sum(w), dense, rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------- MDP view
@given(sequence_models(token_rewards=st.booleans(), allow_zero_prompts=True))
def test_mdp_view_has_the_same_objective_and_gradient(model):
    mdp, policy = model.to_tabular_mdp(), model.to_softmax_policy()
    assert mdp.horizon == model.max_length and mdp.gamma == 1.0
    R_max = max(float(np.abs(model.total_rewards()).max()), 1e-300)
    n_terms = model.n_responses * model.max_length
    assert exact.objective(mdp, policy) == pytest.approx(
        model.objective(), rel=0, abs=exact_rtol(n_terms=n_terms) * R_max
    )
    grad = exact.policy_gradient(mdp, policy)
    np.testing.assert_array_equal(grad[-1], 0.0)  # the terminal state is never visited at t < L
    np.testing.assert_allclose(
        grad[:-1].reshape(model.theta.shape),
        model.objective_gradient(),
        rtol=0,
        atol=exact_rtol(n_terms=n_terms) * gradient_scale(model),
    )


def test_mdp_view_trajectories_are_the_responses():
    model = SequenceModel.random(1, 2, 2, seed=5)
    paths = exact.trajectories(model.to_tabular_mdp(), model.to_softmax_policy(), 2)
    # (EOS,) padded by one terminal step (any of 3 actions), then 2 first tokens x 3 second
    # tokens ((v, EOS) and the 4 truncated responses): 3 + 6 trajectories for 7 responses
    assert paths.probabilities.size == 1 * 3 + 2 * 3
    assert paths.expected_return() == pytest.approx(model.objective(), abs=1e-14)


# ----------------------------------------------------------------------------- groups
def brute_force_over_ordered_groups(model, G, member_statistic):
    """sum_x rho(x) sum over ordered G-tuples prod pi * f, by a Python loop."""
    p = model.probabilities()
    W = model.total_rewards()
    lengths = model.responses.lengths
    total = 0.0
    for x in range(model.n_prompts):
        for tup in itertools.product(range(model.n_responses), repeat=G):
            idx = list(tup)
            prob = float(np.prod(p[x, idx]))
            total = total + model.prompt_probabilities[x] * prob * member_statistic(
                x, idx, W[x, idx], lengths[idx]
            )
    return total


def grpo_gradient_by_member(model, x, idx, rewards, lengths, eps=1e-4):
    advantages = (rewards - rewards.mean()) / (rewards.std() + eps)
    scores = model.response_scores()
    return -sum(advantages[j] * scores[x, i] for j, i in enumerate(idx)) / lengths.sum()


@pytest.mark.parametrize("G", [1, 2, 3])
def test_group_expectation_matches_brute_force_ordered_tuples(G):
    model = SequenceModel.random(2, 1, 2, seed=6, token_rewards=True)  # K = 1, L = 2: R = 2 + 1
    assert model.n_responses == 3
    scores = model.response_scores()

    def statistic(batch):
        c = grpo_gradient_weights(batch)
        return np.einsum("bg,bgynv->bynv", c, scores[batch.prompt][batch.responses])

    brute = brute_force_over_ordered_groups(
        model, G, lambda x, idx, r, n: grpo_gradient_by_member(model, x, idx, r, n)
    )
    tolerance = exact_rtol(n_terms=model.n_responses**G) * 10
    for method in ("multiset", "ordered"):
        got = expected_over_groups(model, G, statistic, method=method, batch_size=2)
        np.testing.assert_allclose(got, brute, rtol=0, atol=tolerance)


def test_group_expectation_of_a_max_matches_brute_force():
    model = SequenceModel.random(2, 2, 2, seed=7)  # R = 3 + 4 = 7
    brute = brute_force_over_ordered_groups(model, 3, lambda x, idx, r, n: r.max() * n.min())
    got = expected_over_groups(model, 3, lambda b: b.rewards.max(axis=1) * b.lengths.min(axis=1))
    assert float(got) == pytest.approx(brute, abs=exact_rtol(n_terms=7**3) * 4)


@given(sequence_models(token_rewards=st.booleans()), st.integers(1, 3))
@settings(max_examples=10)
def test_group_mean_reward_is_the_objective_and_weights_sum_to_one(model, G):
    ones = expected_over_groups(model, G, lambda b: np.ones(b.responses.shape[0]))
    assert float(ones) == pytest.approx(
        1.0, abs=exact_rtol(n_terms=count_groups(model.n_responses, G))
    )
    mean = expected_over_groups(model, G, lambda b: b.rewards.mean(axis=1))
    R_max = float(np.abs(model.total_rewards()).max())
    n = count_groups(model.n_responses, G) * model.max_length * G
    assert float(mean) == pytest.approx(
        model.objective(), abs=exact_rtol(n_terms=n) * R_max + 1e-300
    )


def test_rloo_expected_gradient_is_the_policy_gradient():
    # RLOO: sum_j (r_j - mean of the others) grad log pi(y_j) / G is unbiased (Ahmadian et al.)
    model = SequenceModel.random(2, 2, 2, seed=8, token_rewards=True)
    scores = model.response_scores()
    G = 3

    def rloo(batch):
        r = batch.rewards
        baseline = (r.sum(axis=1, keepdims=True) - r) / (G - 1)
        return np.einsum(
            "bg,bgynv->bynv", (r - baseline) / G, scores[batch.prompt][batch.responses]
        )

    got = expected_over_groups(model, G, rloo)
    np.testing.assert_allclose(got, model.objective_gradient(), rtol=0, atol=1e-12)


def test_grpo_fast_path_equals_dense_statistic():
    # E[grad] of a loss linear in log pi with detached weights: aggregate weights per response
    model = SequenceModel.random(2, 3, 2, seed=9)
    scores = model.response_scores()
    dense = expected_over_groups(
        model,
        3,
        lambda b: np.einsum(
            "bg,bgynv->bynv", grpo_gradient_weights(b), scores[b.prompt][b.responses]
        ),
    )
    R = model.n_responses
    per_response = np.zeros((model.n_prompts, R))
    for x in range(model.n_prompts):
        one_hot = np.eye(model.n_prompts)[x][:, None]

        def member_weights(b, x=x, one_hot=one_hot):
            c = grpo_gradient_weights(b)
            counts = np.zeros((b.responses.shape[0], R))
            np.add.at(counts, (np.arange(b.responses.shape[0])[:, None], b.responses), c)
            return counts[:, None, :] * one_hot[None] * (b.prompt == x)

        per_response += expected_over_groups(model, 3, member_weights)
    np.testing.assert_allclose(model.weighted_score_sum(per_response), dense, rtol=0, atol=1e-13)


def test_symmetry_check_refuses_an_order_dependent_statistic():
    model = SequenceModel.random(1, 2, 2, seed=10)
    first = lambda b: b.rewards[:, 0]  # noqa: E731 - depends on which member is first
    with pytest.raises(ValueError, match="not invariant under permuting"):
        expected_over_groups(model, 2, first)
    brute = brute_force_over_ordered_groups(model, 2, lambda x, idx, r, n: r[0])
    got = expected_over_groups(model, 2, first, method="ordered")
    assert float(got) == pytest.approx(brute, abs=1e-14)
    assert float(got) == pytest.approx(model.objective(), abs=1e-14)


def test_group_indices_small_example():
    groups, log_m = group_indices(3, 2)  # written out by hand
    assert groups.tolist() == [[0, 0], [0, 1], [0, 2], [1, 1], [1, 2], [2, 2]]
    np.testing.assert_allclose(np.exp(log_m), [1, 2, 2, 1, 2, 1], rtol=1e-15)
    groups, log_m = group_indices(3, 4)
    assert groups.shape == (15, 4)  # C(6, 4)
    assert np.exp(log_m).sum() == pytest.approx(3**4, rel=1e-14)  # all orderings counted once


# ----------------------------------------------------------------------------- size limits
def test_size_limits_name_the_argument_and_the_count():
    K, L = 10, 6
    count = count_responses(K, L)
    assert count > MAX_RESPONSES
    with pytest.raises(ValueError, match=rf"max_length = 6 .* {count} responses"):
        enumerate_responses(K, L)
    with pytest.raises(ValueError, match=rf"{count} responses"):
        SequenceModel(np.zeros((1, count_nodes(K, L), K + 1)), L, [1.0])
    with pytest.raises(ValueError, match=r"group_size = 4 .* 2560000 ordered tuples"):
        group_indices(40, 4, ordered=True)
    assert count_groups(40, 4) <= MAX_GROUPS  # the issue's case fits as multisets
    model = SequenceModel.random(1, 3, 3, seed=0)
    with pytest.raises(
        ValueError, match=r"group_size = 4 .* 123410 multisets .* max_groups = 1000"
    ):
        expected_over_groups(model, 4, lambda b: b.rewards[:, 0], max_groups=1000)


# ----------------------------------------------------------------------------- validation
_GOOD = {"theta": np.zeros((1, 3, 3)), "max_length": 2, "prompt_probabilities": [1.0]}
BAD_MODELS = [
    ("theta-2d", {"theta": np.zeros((3, 3))}, ValueError, "theta must have 3 dimensions"),
    ("theta-nan", {"theta": np.full((1, 3, 3), np.nan)}, ValueError, "theta must be finite"),
    ("theta-nodes", {"theta": np.zeros((1, 4, 3))}, ValueError, "N = count_nodes"),
    ("theta-eos-only", {"theta": np.zeros((1, 1, 1)), "max_length": 1}, ValueError, "K \\+ 1 >= 2"),
    ("theta-str", {"theta": "abc"}, TypeError, "theta must be"),
    ("length-0", {"max_length": 0}, ValueError, "max_length must be >= 1"),
    ("length-float", {"max_length": 2.0}, TypeError, "max_length must be an integer"),
    ("rho-sum", {"prompt_probabilities": [0.5]}, ValueError, "prompt_probabilities must sum to 1"),
    (
        "rho-shape",
        {"prompt_probabilities": [0.5, 0.5]},
        ValueError,
        "prompt_probabilities must have shape",
    ),
    ("rewards-shape", {"rewards": np.zeros((1, 6))}, ValueError, "rewards must have shape"),
    ("rewards-inf", {"rewards": np.full((1, 7), np.inf)}, ValueError, "rewards must be finite"),
    ("rewards-callable", {"rewards": lambda x, y: "a"}, TypeError, r"rewards\(0, \(2,\)\)"),
    (
        "token-rewards",
        {"token_rewards": np.zeros((1, 3, 2))},
        ValueError,
        "token_rewards must have",
    ),
    (
        "reference",
        {"reference_theta": np.zeros((1, 2, 3))},
        ValueError,
        "reference_theta must have",
    ),
]


@pytest.mark.parametrize(
    "changes, error, match", [c[1:] for c in BAD_MODELS], ids=[c[0] for c in BAD_MODELS]
)
def test_bad_model_arguments(changes, error, match):
    with pytest.raises(error, match=match):
        SequenceModel(**{**_GOOD, **changes})


BAD_GROUP_CALLS = [
    ("G-0", {"group_size": 0}, ValueError, "group_size must be >= 1"),
    ("method", {"method": "sorted"}, ValueError, "method must be"),
    ("batch", {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ("not-callable", {"statistic": 3}, TypeError, "statistic must be callable"),
    ("shape", {"statistic": lambda b: np.zeros(2)}, ValueError, "statistic must return an array"),
    ("scalar", {"statistic": lambda b: 1.0}, ValueError, "statistic must return an array"),
    (
        "nan",
        {"statistic": lambda b: np.full(b.responses.shape[0], np.nan)},
        ValueError,
        "must be finite",
    ),
    (
        "complex",
        {"statistic": lambda b: np.zeros(b.responses.shape[0], complex)},
        TypeError,
        "real",
    ),
    ("model", {"model": object()}, TypeError, "model must be a SequenceModel"),
]


@pytest.mark.parametrize(
    "changes, error, match", [c[1:] for c in BAD_GROUP_CALLS], ids=[c[0] for c in BAD_GROUP_CALLS]
)
def test_bad_group_arguments(changes, error, match):
    arguments = {
        "model": SequenceModel(**_GOOD),
        "group_size": 2,
        "statistic": lambda b: b.rewards.sum(axis=1),
    }
    arguments.update(changes)
    model, G, statistic = (
        arguments.pop("model"),
        arguments.pop("group_size"),
        arguments.pop("statistic"),
    )
    with pytest.raises(error, match=match):
        expected_over_groups(model, G, statistic, **arguments)


def test_bad_beta_and_weights():
    model = SequenceModel(**_GOOD)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        model.regularized_objective(-1.0)
    with pytest.raises(TypeError, match="beta must be a real number"):
        model.regularized_objective_gradient("0.1")
    with pytest.raises(ValueError, match="weights must have shape"):
        model.weighted_score_sum(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="weights must be finite"):
        model.weighted_score_sum(np.full((1, 7), np.nan))
