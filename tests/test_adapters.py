"""Adapters: implementations written in other libraries' conventions, checked against the spec."""

from __future__ import annotations

import numpy as np
import pytest

from rlmath import adapters, reference
from rlmath.conformance import check

SPEC = "generalized_advantage_estimation"
SEED = 11


def cleanrl_style(rewards, values, dones, last_values, *, gamma, gae_lambda):
    batch, steps = rewards.shape
    advantages = np.zeros_like(rewards)
    running = np.zeros(batch)
    for t in reversed(range(steps)):
        next_values = last_values if t == steps - 1 else values[:, t + 1]
        not_done = 1.0 - dones[:, t]
        delta = rewards[:, t] + gamma * next_values * not_done - values[:, t]
        running = delta + gamma * gae_lambda * not_done * running
        advantages[:, t] = running
    return advantages


def sb3_style(rewards, values, episode_starts, last_value, last_done, *, gamma, gae_lambda):
    steps = len(rewards)
    advantages = np.zeros(steps)
    running = 0.0
    for t in reversed(range(steps)):
        if t == steps - 1:
            not_terminal, next_value = 1.0 - last_done, last_value
        else:
            not_terminal, next_value = 1.0 - episode_starts[t + 1], values[t + 1]
        delta = rewards[t] + gamma * next_value * not_terminal - values[t]
        running = delta + gamma * gae_lambda * not_terminal * running
        advantages[t] = running
    return advantages


def rlax_style(r_t, discount_t, values, *, lambda_):
    delta = r_t + discount_t * values[1:] - values[:-1]
    advantages = np.zeros_like(r_t)
    running = 0.0
    for t in reversed(range(len(r_t))):
        running = delta[t] + discount_t[t] * lambda_ * running
        advantages[t] = running
    return advantages


def torchrl_style(state_value, next_state_value, reward, done, terminated, *, gamma, lmbda):
    not_done = 1.0 - done.astype(np.float64)
    not_terminated = 1.0 - terminated.astype(np.float64)
    delta = reward + gamma * next_state_value * not_terminated - state_value
    advantages = np.zeros_like(delta)
    running = np.zeros_like(delta[:, 0])
    for t in reversed(range(delta.shape[1])):
        running = delta[:, t] + gamma * lmbda * not_done[:, t] * running
        advantages[:, t] = running
    return advantages


def torchrl_style_no_bootstrap_on_truncation(
    state_value, next_state_value, reward, done, terminated, *, gamma, lmbda
):
    # a real bug class: `done` used where `terminated` belongs, so truncated steps lose V(s')
    return torchrl_style(
        state_value, next_state_value, reward, done, done, gamma=gamma, lmbda=lmbda
    )


ADAPTED = [
    pytest.param(
        adapters.gae_from_batch_major_dones(cleanrl_style, discount="gamma", lambda_="gae_lambda"),
        id="batch-major-dones",
    ),
    pytest.param(
        adapters.gae_from_episode_starts(sb3_style, discount="gamma", lambda_="gae_lambda"),
        id="episode-starts",
    ),
    pytest.param(adapters.gae_from_per_step_discounts(rlax_style), id="per-step-discounts"),
    pytest.param(
        adapters.gae_from_next_values(torchrl_style, discount="gamma", lambda_="lmbda"),
        id="next-values",
    ),
]


@pytest.mark.parametrize("adapted", ADAPTED)
def test_adapted_correct_implementations_conform(adapted):
    report = check(adapted, SPEC, seed=SEED, examples=60)
    assert report.conforms, str(report)


def test_an_adapted_bug_is_rejected():
    adapted = adapters.gae_from_next_values(
        torchrl_style_no_bootstrap_on_truncation, discount="gamma", lambda_="lmbda"
    )
    report = check(adapted, SPEC, seed=SEED, examples=100)
    assert not report.conforms and report.failure.kind == "wrong value"


def test_episode_segments():
    segments = list(adapters.episode_segments([0, 0, 1, 0, 0], [0, 1, 1, 0, 0]))
    assert segments == [(0, 2, "truncated"), (2, 3, "terminated"), (3, 5, "open")]
    with pytest.raises(ValueError, match="1-D"):
        list(adapters.episode_segments([[0]], [[0]]))


def test_adapters_refuse_batched_inputs_clearly():
    adapted = adapters.gae_from_per_step_discounts(rlax_style)
    with pytest.raises(ValueError, match="1-D"):
        adapted(
            np.zeros((2, 2)),
            np.zeros((2, 2)),
            np.zeros((2, 2), bool),
            np.zeros((2, 2), bool),
            np.zeros((2, 2)),
            np.zeros(2),
            discount=0.9,
            lambda_=0.9,
        )


def test_adapter_equals_reference_on_a_hand_example():
    # two episodes: a truncation after step 1 (bootstrap 10), then an open one (bootstrap 2)
    args = (
        np.array([1.0, 2.0, 3.0]),
        np.array([0.5, 0.5, 0.5]),
        np.array([False, False, False]),
        np.array([False, True, False]),
        np.array([0.0, 10.0, 0.0]),
        np.array(2.0),
    )
    expected = reference.generalized_advantage_estimation(*args, discount=0.9, lambda_=0.8)
    for adapted in (p.values[0] for p in ADAPTED):
        np.testing.assert_allclose(adapted(*args, discount=0.9, lambda_=0.8), expected, rtol=1e-12)


def test_the_pytest_fixture(pytester):
    pytester.makepyfile(
        """
        import numpy as np
        from rlmath import reference

        def test_good(rlmath_conforms):
            rlmath_conforms(reference.discounted_returns, "discounted_returns", seed=0, examples=10)

        def test_bad(rlmath_conforms):
            rlmath_conforms(lambda rewards, dones, *, discount: rewards, "discounted_returns",
                            seed=0, examples=30)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")  # the fixture comes by entry point
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*does not conform*"])
