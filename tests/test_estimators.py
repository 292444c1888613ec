"""Tests of rlmath.estimators: unbiasedness against exact values, mutants, reductions.

Every Monte-Carlo check uses rlmath.statistics.agreement at its default per-check false-alarm
probability (1e-6, Bonferroni over components) with a fixed seed and N_EPISODES episodes. The
mutant tests also check that N_EPISODES gives power >= 0.99 against the mutant (plug-in
estimate of the shift and per-sample spread of its worst component).
"""

from __future__ import annotations

import numpy as np
import pytest

from rlmath import SoftmaxPolicy, TabularMDP, exact
from rlmath import estimators as E
from rlmath.sampling import rollouts, sample_actions
from rlmath.statistics import DEFAULT_POWER, agreement, detection_power
from rlmath.tolerances import exact_rtol

S, A, H, GAMMA = 3, 2, 4, 0.8
N_EPISODES = 20_000


@pytest.fixture(scope="module")
def setting():
    """A random 3-state, 2-action MDP with horizon 4, a target theta and a behaviour theta'."""
    base = TabularMDP.random(S, A, seed=1, gamma=GAMMA)
    mdp = TabularMDP(base.P, base.r, base.rho0, GAMMA, horizon=H)
    rng = np.random.default_rng(2)
    policy = SoftmaxPolicy(rng.normal(size=(S, A)))
    behaviour = SoftmaxPolicy(policy.theta + rng.normal(scale=0.7, size=(S, A)))
    return mdp, policy, behaviour


@pytest.fixture(scope="module")
def on_policy(setting):
    mdp, policy, _ = setting
    return rollouts(mdp, policy, n_episodes=N_EPISODES, horizon=H, seed=10)


@pytest.fixture(scope="module")
def off_policy(setting):
    mdp, _, behaviour = setting
    return rollouts(mdp, behaviour, n_episodes=N_EPISODES, horizon=H, seed=11)


@pytest.fixture(scope="module")
def gradient(setting):
    mdp, policy, _ = setting
    return exact.policy_gradient(mdp, policy)


def exact_advantages(mdp, policy):
    """Finite-horizon A_t(s, a) = Q_t(s, a) - V_t(s), [H, S, A]."""
    V, Q = exact.finite_horizon_values(mdp, policy)
    return Q - V[:-1, :, None]


def gathered(table, out):
    """table[t, s_t, a_t] for every step, [T, N]."""
    return table[np.arange(out.n_steps)[:, None], out.states, out.actions]


def state_kl(p, q):
    """Exact KL(p(.|s) || q(.|s)) per state, from [S, A] log-probabilities."""
    return (np.exp(p) * (p - q)).sum(axis=1)


def assert_agrees(samples, reference, name):
    verdict = agreement(samples, reference, name=name)
    assert verdict.agrees, str(verdict)


def assert_rejected_with_power(samples, reference, name):
    verdict = agreement(samples, reference, name=name)
    assert not verdict.agrees, str(verdict)
    # power of N_EPISODES against this mutant, judged on its most shifted component
    shift = np.abs(verdict.estimate - verdict.reference).ravel()
    sigma = samples.reshape(samples.shape[0], -1).std(axis=0, ddof=1)
    worst = int(np.argmax(shift / np.where(sigma > 0, sigma, np.inf)))
    power = detection_power(
        shift[worst], sigma[worst], N_EPISODES, n_components=verdict.n_components
    )
    assert power >= DEFAULT_POWER, f"{name}: power {power:.3f} at n = {N_EPISODES}"


# ----------------------------------------------------------------------------- unbiased estimators
def test_reinforce_estimators_agree_with_exact_gradient(setting, on_policy, gradient):
    mdp, policy, _ = setting
    V = exact.value(mdp, policy)
    estimates = {
        "total return": E.reinforce_total_return(on_policy, policy, gamma=GAMMA),
        "reward to go": E.reinforce_reward_to_go(on_policy, policy, gamma=GAMMA),
        "constant baseline": E.reinforce_with_baseline(
            on_policy, policy, gamma=GAMMA, baseline=0.7
        ),
        "state baseline": E.reinforce_with_baseline(on_policy, policy, gamma=GAMMA, baseline=V),
        "optimal baseline (LOO)": E.reinforce_optimal_baseline(on_policy, policy, gamma=GAMMA),
    }
    for name, samples in estimates.items():
        assert samples.shape == (N_EPISODES, S, A)
        assert_agrees(samples, gradient, name)


def test_importance_weighted_gradient_agrees_with_exact(setting, off_policy, gradient):
    _, policy, _ = setting
    for per_decision in (True, False):
        samples = E.importance_weighted_policy_gradient(
            off_policy, policy, gamma=GAMMA, per_decision=per_decision
        )
        assert_agrees(samples, gradient, f"importance weighted (per_decision={per_decision})")


def test_surrogate_value_and_gradient_agree_with_exact(setting, off_policy):
    # J^{theta'}(theta) = sum_t gamma^t E_{s_t ~ theta'} sum_a pi_theta(a|s_t) A'_t(s_t, a)
    mdp, policy, behaviour = setting
    advantage = exact_advantages(mdp, behaviour)  # A^{theta'}_t, [H, S, A]
    occupancy = exact.state_distributions(mdp, behaviour, H) * GAMMA ** np.arange(H)[:, None]
    pi = policy.probabilities()
    value = np.einsum("ts,sa,tsa->", occupancy, pi, advantage)
    mean_advantage = np.einsum("sa,tsa->ts", pi, advantage)
    grad = np.einsum("ts,sa,tsa->sa", occupancy, pi, advantage - mean_advantage[:, :, None])
    A_t = gathered(advantage, off_policy)
    assert_agrees(
        E.surrogate_objective(off_policy, policy, A_t, gamma=GAMMA)[:, None], [value], "surrogate"
    )
    assert_agrees(
        E.surrogate_gradient(off_policy, policy, A_t, gamma=GAMMA), grad, "surrogate gradient"
    )


def test_surrogate_gradient_at_reference_is_policy_gradient(setting, on_policy, gradient):
    mdp, policy, _ = setting
    A_t = gathered(exact_advantages(mdp, policy), on_policy)
    assert_agrees(
        E.surrogate_gradient(on_policy, policy, A_t, gamma=GAMMA), gradient, "surrogate at theta'"
    )


def test_kl_estimators_per_state_agree_with_exact(setting):
    _, policy, other = setting
    log_p, log_q = policy.log_probabilities(), other.log_probabilities()
    states = np.repeat(np.arange(S)[None, :], N_EPISODES, axis=0)
    actions = sample_actions(policy, states, seed=4)
    kl = state_kl(log_p, log_q)
    for estimator in (E.kl_k1, E.kl_k3):
        assert_agrees(
            E.kl_terms(policy, other, states, actions, estimator=estimator), kl, estimator.__name__
        )
    # k2 is biased for KL; its own mean is E_p[(log q - log p)^2] / 2
    k2_mean = 0.5 * (np.exp(log_p) * (log_q - log_p) ** 2).sum(axis=1)
    assert_agrees(E.kl_terms(policy, other, states, actions, estimator=E.kl_k2), k2_mean, "k2 mean")


def test_trajectory_kl_agrees_with_path_kl(setting, on_policy):
    # KL(p_theta(tau) || p_theta'(tau)) = sum_t E_{s_t ~ theta} KL(pi(.|s_t) || pi'(.|s_t))
    mdp, policy, other = setting
    kl = state_kl(policy.log_probabilities(), other.log_probabilities())
    path_kl = (exact.state_distributions(mdp, policy, H) @ kl).sum()
    for estimator in (E.kl_k1, E.kl_k3):
        terms = E.trajectory_kl(on_policy, other, estimator=estimator)
        assert_agrees(terms[:, None], [path_kl], f"trajectory {estimator.__name__}")


# ----------------------------------------------------------------------------- mutants
def test_mutants_are_rejected(setting, on_policy, off_policy, gradient):
    mdp, policy, other = setting
    rewards_to_go = E._reward_to_go(on_policy.rewards, GAMMA)
    discounts = GAMMA ** np.arange(H)[:, None]
    action_baseline = (on_policy.actions == 0).astype(float)  # b(s_t, a_t) = 1[a_t = 0]
    mutants = {
        "missing gamma^t": E.reinforce_reward_to_go(
            on_policy, policy, gamma=GAMMA, discount_score=False
        ),
        "wrong sign": -E.reinforce_reward_to_go(on_policy, policy, gamma=GAMMA),
        "baseline depending on the action": E.weighted_score_sum(
            on_policy, policy, discounts * (rewards_to_go - action_baseline)
        ),
        "missing importance weight": E.reinforce_reward_to_go(off_policy, policy, gamma=GAMMA),
    }
    for name, samples in mutants.items():
        assert_rejected_with_power(samples, gradient, name)

    kl = state_kl(policy.log_probabilities(), other.log_probabilities())
    path_kl = (exact.state_distributions(mdp, policy, H) @ kl).sum()
    flipped = E.trajectory_kl(on_policy, other, estimator=lambda lp, ref: -E.kl_k1(lp, ref))
    assert_rejected_with_power(flipped[:, None], np.array([path_kl]), "k1 with the sign flipped")

    # surrogate without the ratio: estimates J^{theta'}(theta') = 0, not J^{theta'}(theta)
    advantage = exact_advantages(mdp, other)
    A_t = gathered(advantage, off_policy)
    occupancy = exact.state_distributions(mdp, other, H) * discounts
    value = np.einsum("ts,sa,tsa->", occupancy, policy.probabilities(), advantage)
    no_ratio = (discounts * A_t).sum(axis=0)
    assert_rejected_with_power(no_ratio[:, None], np.array([value]), "surrogate without ratio")


# ----------------------------------------------------------------------------- reductions
def test_weighted_score_sum_equals_loop_of_scores(setting, on_policy):
    _, policy, _ = setting
    out = rollouts(
        TabularMDP.random(S, A, seed=3, gamma=0.5), policy, n_episodes=7, horizon=3, seed=1
    )
    weights = np.random.default_rng(0).normal(size=(3, 7))
    expected = np.zeros((7, S, A))
    for n in range(7):
        for t in range(3):
            expected[n] += weights[t, n] * policy.score(out.states[t, n], out.actions[t, n])
    np.testing.assert_allclose(E.weighted_score_sum(out, policy, weights), expected, atol=1e-14)


def test_reductions_between_estimators(setting, on_policy, off_policy):
    mdp, policy, behaviour = setting
    rtg = E.reinforce_reward_to_go(on_policy, policy, gamma=GAMMA)
    # a zero baseline is no baseline
    np.testing.assert_array_equal(
        E.reinforce_with_baseline(on_policy, policy, gamma=GAMMA, baseline=0.0), rtg
    )
    # a state baseline is reward-to-go minus the score sum weighted by gamma^t b(s_t) (the
    # mean-preserving sign flip G_t + b(s_t) passes every unbiasedness test, not this one)
    b = exact.value(mdp, policy)
    baseline_term = E.weighted_score_sum(
        on_policy, policy, GAMMA ** np.arange(H)[:, None] * b[on_policy.states]
    )
    np.testing.assert_allclose(
        E.reinforce_with_baseline(on_policy, policy, gamma=GAMMA, baseline=b),
        rtg - baseline_term,
        rtol=exact_rtol(n_terms=2 * H),
        atol=exact_rtol(n_terms=2 * H) * np.abs(rtg).max(),
    )
    # with gamma = 1 the score discount is 1
    np.testing.assert_array_equal(
        E.reinforce_reward_to_go(on_policy, policy, gamma=1.0, discount_score=False),
        E.reinforce_reward_to_go(on_policy, policy, gamma=1.0),
    )
    # importance weights are exactly 1 when target = behaviour
    np.testing.assert_array_equal(
        E.importance_weighted_policy_gradient(on_policy, policy, gamma=GAMMA), rtg
    )
    # the surrogate gradient at theta = theta' with A_t = G_t is reward-to-go REINFORCE
    G = E._reward_to_go(on_policy.rewards, GAMMA)
    np.testing.assert_allclose(
        E.surrogate_gradient(on_policy, policy, G, gamma=GAMMA), rtg, atol=1e-13
    )
    # the surrogate value at theta = theta' is the sum of discounted advantages
    np.testing.assert_allclose(
        E.surrogate_objective(on_policy, policy, G, gamma=GAMMA),
        (GAMMA ** np.arange(H)[:, None] * G).sum(axis=0),
    )
    # KL of a policy with itself: every estimator gives exactly 0
    for estimator in (E.kl_k1, E.kl_k2, E.kl_k3):
        assert not E.trajectory_kl(on_policy, policy, estimator=estimator).any()


def test_optimal_baseline_minimises_the_weighted_squares(setting, on_policy):
    # b* = sum g^2 R / sum g^2 minimises sum_n g_n^2 (R_n - b)^2 in every component
    _, policy, _ = setting
    b = E.optimal_constant_baseline(on_policy, policy, gamma=GAMMA)
    g = E.weighted_score_sum(on_policy, policy, np.ones((H, N_EPISODES)))
    R = (GAMMA ** np.arange(H)[:, None] * on_policy.rewards).sum(axis=0)

    def spread(baseline):
        return (g**2 * (R[:, None, None] - baseline) ** 2).sum(axis=0)

    for step in (-0.1, 0.1):
        assert (spread(b) <= spread(b + step)).all()


def test_kl_estimators_signs_and_values():
    log_ratio = np.linspace(-3, 3, 13)  # log r = reference_log_probs - log_probs
    zero = np.zeros_like(log_ratio)
    assert (E.kl_k2(zero, log_ratio) >= 0).all() and (E.kl_k3(zero, log_ratio) >= 0).all()
    np.testing.assert_allclose(
        E.kl_k3(zero, log_ratio), np.exp(log_ratio) - 1 - log_ratio, rtol=1e-14
    )
    np.testing.assert_array_equal(E.kl_k1(zero, log_ratio), -log_ratio)
    np.testing.assert_array_equal(E.kl_k2(zero, log_ratio), log_ratio**2 / 2)
    # the direction: log_probs are the sampled policy's, so swapping the arguments flips log r
    np.testing.assert_array_equal(E.kl_k1(log_ratio, zero), log_ratio)
    # small log-ratios keep their digits: k3 ~ x^2 / 2
    assert E.kl_k3([0.0], [1e-9])[0] == pytest.approx(5e-19, rel=1e-6)


def test_kl_wrappers_are_the_reference_functions():
    # one implementation: the estimators' names give the reference's values bit for bit
    from rlmath import reference

    rng = np.random.default_rng(0)
    log_probs, reference_log_probs = rng.normal(size=(2, 50))
    for wrapper, function in (
        (E.kl_k1, reference.kl_estimator_k1),
        (E.kl_k2, reference.kl_estimator_k2),
        (E.kl_k3, reference.kl_estimator_k3),
    ):
        np.testing.assert_array_equal(
            wrapper(log_probs, reference_log_probs), function(log_probs, reference_log_probs)
        )


def test_kl_to_a_policy_with_zeros_is_infinite():
    p, q = [[0.5, 0.5]], [[1.0, 0.0]]
    for estimator in (E.kl_k1, E.kl_k2, E.kl_k3):
        terms = E.kl_terms(p, q, [0, 0], [0, 1], estimator=estimator)
        assert np.isfinite(terms[0]) and terms[1] == np.inf


def test_kl_k3_of_a_huge_log_ratio_is_infinite_like_the_reference():
    """r = e^1000 overflows: +inf, as rlmath.reference.kl_estimator_k3 gives, with no warning."""
    with np.errstate(over="raise", invalid="raise"):
        assert E.kl_k3([0.0], [1000.0])[0] == np.inf
        assert E.kl_k3([0.0], [-1000.0])[0] == pytest.approx(999.0)
        assert E.kl_k3([-1e308], [1e308])[0] == np.inf  # log r overflows to +inf: not NaN


# ----------------------------------------------------------------------------- validation
BAD_ARGUMENTS = [
    pytest.param(
        lambda out, pi: E.reinforce_total_return("x", pi, gamma=0.5),
        TypeError,
        "rollouts must be",
        id="rollouts-type",
    ),
    pytest.param(
        lambda out, pi: E.reinforce_total_return(out, "p", gamma=0.5),
        TypeError,
        "policy must be a SoftmaxPolicy",
        id="policy-type",
    ),
    pytest.param(
        lambda out, pi: E.reinforce_total_return(out, pi, gamma=1.5),
        ValueError,
        "gamma must be in",
        id="gamma-range",
    ),
    pytest.param(
        lambda out, pi: E.reinforce_total_return(out, SoftmaxPolicy.uniform(2, 2), gamma=0.5),
        ValueError,
        "policy must cover the sampled states",
        id="policy-too-small",
    ),
    pytest.param(
        lambda out, pi: E.reinforce_with_baseline(out, pi, gamma=0.5, baseline=[1.0, 2.0]),
        ValueError,
        "baseline must be a scalar or",
        id="baseline-shape",
    ),
    pytest.param(
        lambda out, pi: E.weighted_score_sum(out, pi, np.ones(3)),
        ValueError,
        "weights must have shape",
        id="weights-shape",
    ),
    pytest.param(
        lambda out, pi: E.surrogate_objective(out, pi, np.ones((2, 2)), gamma=0.5),
        ValueError,
        "advantages must have shape",
        id="advantages-shape",
    ),
    pytest.param(
        lambda out, pi: E.kl_terms([[0.5, 0.5]], [[1.0]], [0], [0]),
        ValueError,
        "other must have the shape",
        id="kl-shapes",
    ),
    pytest.param(
        lambda out, pi: E.trajectory_kl(out, [[0.5, 0.6]] * 3),
        ValueError,
        "other must sum to 1",
        id="kl-other-not-stochastic",
    ),
    pytest.param(
        lambda out, pi: E.kl_k1([0.0, 0.0], [0.0, np.nan]),
        ValueError,
        r"reference_log_probs must be finite or -inf .*got .*nan.* at index \(1,\)",
        id="k1-nan-reference",
    ),
    pytest.param(
        lambda out, pi: E.kl_k2([np.nan], [0.0]),
        ValueError,
        r"log_probs must be finite, got .*nan.* at index \(0,\)",
        id="k2-nan-log-probs",
    ),
    pytest.param(
        lambda out, pi: E.kl_k3([0.0], [np.inf]),
        ValueError,
        r"reference_log_probs must be finite or -inf .*got .*inf.* at index \(0,\)",
        id="k3-plus-inf-reference",
    ),
    pytest.param(
        lambda out, pi: E.kl_k3([-np.inf], [0.0]),
        ValueError,
        r"log_probs must be finite, got .*inf.* at index \(0,\)",
        id="k3-minus-inf-log-probs",
    ),
    pytest.param(
        lambda out, pi: E.kl_k3([0.0, 0.0], [0.0]),
        ValueError,
        "reference_log_probs must have",
        id="k3-shapes",
    ),
    pytest.param(
        lambda out, pi: E.kl_k3(["a"], [0.0]),
        TypeError,
        "log_probs must be an array of real numbers",
        id="k3-strings",
    ),
    pytest.param(  # log pi(a|s) = -inf: log r = +inf (k1 -inf) or NaN (k3, or q = 0 too)
        lambda out, pi: E.kl_terms([[1.0, 0.0]], [[1.0, 0.0]], [0, 0], [0, 1]),
        ValueError,
        r"actions must be sampled from policy, got action 1 in state 0 .* at index \(1,\)",
        id="kl-terms-action-impossible-under-policy",
    ),
    pytest.param(
        lambda out, pi: E.kl_terms([[0.5, 0.5]], [[0.5, 0.5]], [0], [2]),
        ValueError,
        r"actions must be in \[0, 2\), got 2 at index \(0,\)",
        id="kl-terms-action-out-of-range",
    ),
    pytest.param(
        lambda out, pi: E.kl_terms([[0.5, 0.5]], [[0.5, 0.5]], [0.0], [0]),
        TypeError,
        "states must be integers, got dtype float64",
        id="kl-terms-float-states",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_ARGUMENTS)
def test_estimators_reject_bad_arguments(setting, on_policy, call, error, message):
    with pytest.raises(error, match=message):
        call(on_policy, setting[1])
