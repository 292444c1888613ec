"""Tests of rlmath.statistics: critical values, sample sizes, the agreement verdict, and the
empirical false-alarm rate of the whole Monte-Carlo check (opt-in, ``-m slow``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from rlmath import SoftmaxPolicy, TabularMDP, exact
from rlmath import estimators as E
from rlmath.sampling import rollouts
from rlmath.statistics import (
    DEFAULT_FALSE_ALARM,
    Agreement,
    agreement,
    critical_value,
    detection_power,
    sample_size,
)


# ----------------------------------------------------------------------------- critical values
def test_critical_values_match_known_quantiles():
    assert critical_value(0.05) == pytest.approx(1.959964, abs=1e-6)
    assert critical_value(0.05, n_components=5) == pytest.approx(critical_value(0.01))
    assert critical_value(0.05, degrees_of_freedom=9) == pytest.approx(2.262157, abs=1e-6)
    # more components and fewer degrees of freedom both raise the bar
    assert critical_value(1e-6, n_components=100) > critical_value(1e-6)
    assert critical_value(1e-6, degrees_of_freedom=30) > critical_value(1e-6)


def test_sample_size_gives_the_requested_power():
    for delta, sigma, m in ((0.1, 1.0, 1), (0.02, 3.0, 24), (1.0, 0.5, 6)):
        n = sample_size(delta, sigma, n_components=m)
        assert detection_power(delta, sigma, n, n_components=m) >= 0.99
        assert detection_power(delta, sigma, n - 10, n_components=m) < 0.99 or n <= 12
    # the textbook formula at alpha = 0.05, power 0.8: ((1.96 + 0.8416) * 2 / 0.5)^2 = 125.6
    assert sample_size(0.5, 2.0, false_alarm=0.05, power=0.8) == 126


def test_detection_power_at_zero_shift_is_the_false_alarm():
    assert detection_power(0.0, 1.0, 1000, false_alarm=0.01) == pytest.approx(0.01)
    assert detection_power(0.1, 0.0, 10) == 1.0


# ----------------------------------------------------------------------------- the verdict
def test_agreement_by_hand():
    # samples 0, 2, 4: mean 2, sd 2 (ddof 1), se 2 / sqrt(3)
    verdict = agreement([[0.0], [2.0], [4.0]], [1.0], false_alarm=0.05)
    assert verdict.estimate.tolist() == [2.0]
    assert verdict.standard_error[0] == pytest.approx(2 / math.sqrt(3))
    assert verdict.z_scores[0] == pytest.approx(math.sqrt(3) / 2)
    assert verdict.n_samples == 3 and verdict.n_components == 1 and verdict.agrees


def test_scalar_samples_give_a_scalar_verdict():
    verdict = agreement(np.arange(10.0), 4.5)
    assert verdict.estimate.shape == () and verdict.agrees and verdict.max_abs_z == 0.0


def test_constant_components_compare_to_float_resolution():
    samples = np.column_stack([np.full(100, 0.1), np.full(100, 0.3)])
    resolution = 64 * np.finfo(np.float64).eps
    verdict = agreement(samples, [0.1, 0.3])
    assert verdict.agrees
    # floored at the resolution of the vector's largest component (a normwise comparison)
    np.testing.assert_allclose(verdict.standard_error, resolution * np.array([0.3, 0.3]))
    assert verdict.estimate.tolist() == [0.1, 0.3]  # the value itself, not a rounded mean
    # a rounding-level difference (one ulp) agrees; a real one (1e-9) is rejected
    assert agreement(samples, [0.1, np.nextafter(0.3, 1.0)]).agrees
    verdict = agreement(samples, [0.1, 0.3 + 1e-9])
    assert not verdict.agrees and verdict.z_scores[1] < -1e3
    assert verdict.failing.tolist() == [False, True]


def test_a_component_far_below_the_vector_is_judged_normwise():
    # Component 1 is made of an event of probability ~1e-185 that no sample shows, so its
    # sample spread (~1e-196) says nothing about its error; a difference of 1% of that
    # component is ~1e-187, far below the normwise accuracy of a reference of size 1e-3.
    rng = np.random.default_rng(0)
    big = rng.normal(1e-3, 1e-3, size=5000)
    tiny = 1e-185 * (1 + 1e-11 * rng.normal(size=5000))
    samples = np.column_stack([big, tiny])
    assert agreement(samples, [1e-3, 1.01e-185]).agrees
    # ... while the same relative difference on a component of the vector's size is caught
    assert not agreement(
        np.column_stack([big, 1e-3 + 1e-14 * rng.normal(size=5000)]), [1e-3, 1.01e-3]
    ).agrees


def test_subnormal_rounding_is_not_mistaken_for_bias():
    # importance-sampling-unbiased at seed 152: f = (-5e-324, -1.64), p = (1, 0), q = (0.555,
    # 0.445); the term f p / q rounds to -1e-323 (exact mean -5e-324): rounding, not bias
    x = np.where(np.random.default_rng(0).random(2000) < 0.555, -1e-323, 0.0)
    assert agreement(x, -5e-324).agrees
    assert not agreement(x, 1e-300).agrees  # a normal-sized difference is still seen


def test_rounding_level_spread_is_not_mistaken_for_sampling_noise():
    # A quantity constant in exact arithmetic, computed with rounding noise of a few ulps:
    # its sample sd is ~1e-16, so without the floor a 1-ulp offset of the reference gave |z|
    # in the hundreds (seen in the KL-estimator claims).
    rng = np.random.default_rng(0)
    x = 0.7 + rng.integers(-2, 3, size=5000) * np.finfo(np.float64).eps
    assert agreement(x, np.nextafter(0.7, 1.0)).agrees
    assert not agreement(x, 0.7 + 1e-9).agrees


def test_batch_means_on_a_correlated_chain():
    # AR(1) with coefficient 0.9: the i.i.d. standard error is too small by about sqrt(19);
    # batch means recover the right scale and use a Student-t critical value
    rng = np.random.default_rng(0)
    noise = rng.normal(size=200_000)
    x = np.empty_like(noise)
    x[0] = noise[0]
    for k in range(1, x.size):
        x[k] = 0.9 * x[k - 1] + noise[k]
    naive = agreement(x, 0.0)
    batched = agreement(x, 0.0, n_batches=50)
    assert batched.standard_error / naive.standard_error == pytest.approx(math.sqrt(19), rel=0.35)
    assert batched.method == "t-test on 50 batch means" and batched.n_samples == 200_000
    assert batched.critical_value == pytest.approx(critical_value(degrees_of_freedom=49))
    assert batched.agrees


def test_bonferroni_uses_the_number_of_components():
    verdict = agreement(np.random.default_rng(1).normal(size=(50, 4, 5)), np.zeros((4, 5)))
    assert verdict.critical_value == pytest.approx(
        critical_value(DEFAULT_FALSE_ALARM, n_components=20)
    )


def test_report_str_and_json():
    samples = np.random.default_rng(2).normal(size=(1000, 2))
    verdict = agreement(
        np.column_stack([samples, np.ones(1000)]), [0.0, 5.0, 0.0], name="g", seed=3
    )
    text = str(verdict)
    assert text.startswith("g: DISAGREES") and "n = 1000" in text and "seed 3" in text
    lines = text.splitlines()  # worst first: the constant mismatch, then the shifted mean
    assert "(2,)" in lines[2] and "(1,)" in lines[3]
    data = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))
    assert data["agrees"] is False and data["z_scores"][2] > 1e12 and data["n_samples"] == 1000
    assert isinstance(verdict, Agreement)


BAD_ARGUMENTS = [
    pytest.param(lambda: agreement([1.0], 0.0), ValueError, "at least 2 rows", id="one-sample"),
    pytest.param(
        lambda: agreement([[1.0, np.nan]] * 3, 0.0), ValueError, "finite", id="nan-sample"
    ),
    pytest.param(
        lambda: agreement(np.ones((3, 2)), [1, 2, 3]), ValueError, "broadcast", id="reference-shape"
    ),
    pytest.param(
        lambda: agreement(np.ones((3, 2)), 1, false_alarm=0),
        ValueError,
        "false_alarm must be in",
        id="alpha-0",
    ),
    pytest.param(
        lambda: agreement(np.ones(3), 1, n_batches=1),
        ValueError,
        "n_batches must be >= 2",
        id="one-batch",
    ),
    pytest.param(
        lambda: agreement(np.ones(3), 1, n_batches=4),
        ValueError,
        "n_batches must be <=",
        id="too-many-batches",
    ),
    pytest.param(
        lambda: agreement("abc", 1), TypeError, "samples must be an array", id="string-samples"
    ),
    pytest.param(
        lambda: sample_size(0.0, 1.0), ValueError, "delta must be non-zero", id="zero-delta"
    ),
    pytest.param(
        lambda: sample_size(0.1, -1.0), ValueError, "sigma must be >= 0", id="negative-sigma"
    ),
    pytest.param(
        lambda: sample_size(0.1, 1.0, power=1.0), ValueError, "power must be in", id="power-1"
    ),
    pytest.param(
        lambda: critical_value(0.1, n_components=0),
        ValueError,
        "n_components must be >= 1",
        id="no-components",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_ARGUMENTS)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------- false alarms
@pytest.mark.slow
def test_false_alarm_rate_of_correct_estimators_is_consistent_with_alpha():
    """Run the whole check on correct estimators over many seeds at alpha = 0.01.

    - scalar check (mean discounted return vs exact J): one component, so the rejection rate
      should equal alpha; two-sided binomial test.
    - gradient check (reward-to-go REINFORCE vs exact gradient, 6 components, Bonferroni):
      the rate is at most alpha; one-sided binomial test against rates above alpha.
    The binomial tests themselves fail a correct implementation with probability 1e-3.
    """
    alpha, n_seeds, n_episodes, horizon, gamma = 0.01, 1500, 2000, 4, 0.8
    base = TabularMDP.random(3, 2, seed=1, gamma=gamma)
    mdp = TabularMDP(base.P, base.r, base.rho0, gamma, horizon=horizon)
    policy = SoftmaxPolicy(np.random.default_rng(2).normal(size=(3, 2)))
    J, gradient = exact.objective(mdp, policy), exact.policy_gradient(mdp, policy)
    discounts = gamma ** np.arange(horizon)[:, None]
    scalar_rejections = gradient_rejections = 0
    for seed in range(n_seeds):
        out = rollouts(mdp, policy, n_episodes=n_episodes, horizon=horizon, seed=seed)
        returns = (discounts * out.rewards).sum(axis=0)
        scalar_rejections += not agreement(returns, J, false_alarm=alpha).agrees
        samples = E.reinforce_reward_to_go(out, policy, gamma=gamma)
        gradient_rejections += not agreement(samples, gradient, false_alarm=alpha).agrees
    scalar = stats.binomtest(scalar_rejections, n_seeds, alpha)
    assert scalar.pvalue > 1e-3, f"{scalar_rejections}/{n_seeds} scalar rejections at alpha={alpha}"
    vector = stats.binomtest(gradient_rejections, n_seeds, alpha, alternative="greater")
    assert vector.pvalue > 1e-3, (
        f"{gradient_rejections}/{n_seeds} gradient rejections at alpha={alpha}"
    )


def test_agreement_is_scale_invariant_down_to_tiny_magnitudes():
    # Terms of order 1e-270 have squares that underflow float64; the z-test must not turn
    # that into a zero standard error (found by `rlmath verify --seed 10`).
    x = np.random.default_rng(0).normal(size=(1000, 2))
    for scale in (1e-270, 1.0, 1e270):
        result = agreement(x * scale + 2 * scale, [2 * scale, 2 * scale])
        reference = agreement(x + 2, [2.0, 2.0])
        np.testing.assert_allclose(result.z_scores, reference.z_scores, rtol=1e-12)
        assert result.agrees
        assert not agreement(x * scale + 2 * scale, [2.5 * scale, 2 * scale]).agrees
