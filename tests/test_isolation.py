"""Hostile implementations: each is reported non-conforming, with the right kind, in time.

The implementation runs in a worker process (:mod:`rlmath.isolation`), so exiting, crashing,
hanging or tampering with rlmath cannot make a check pass or take the test run down.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import numpy as np
import pytest

from rlmath import reference
from rlmath.conformance import assert_conforms, check
from rlmath.isolation import Worker
from rlmath.specs import get_spec

SPEC = "discounted_returns"
SEED = 3


def correct(rewards: Any, dones: Any, *, discount: float) -> Any:
    return reference.discounted_returns(rewards, dones, discount=discount)


def raises(rewards: Any, dones: Any, *, discount: float) -> Any:
    raise RuntimeError("hostile")


def nan(rewards: Any, dones: Any, *, discount: float) -> Any:
    return np.full_like(rewards, np.nan)


def wrong_type(rewards: Any, dones: Any, *, discount: float) -> Any:
    return "not an array"


def wrong_shape(rewards: Any, dones: Any, *, discount: float) -> Any:
    return np.append(correct(rewards, dones, discount=discount), 0.0)


def mutates(rewards: Any, dones: Any, *, discount: float) -> Any:
    out = correct(rewards, dones, discount=discount)
    rewards[...] = 0.0
    return out


def non_deterministic(rewards: Any, dones: Any, *, discount: float) -> Any:
    return correct(rewards, dones, discount=discount) + np.random.default_rng().normal()


def sleeps(rewards: Any, dones: Any, *, discount: float) -> Any:
    time.sleep(3600)


def exits(rewards: Any, dones: Any, *, discount: float) -> Any:
    sys.exit(0)


def hard_exits(rewards: Any, dones: Any, *, discount: float) -> Any:
    os._exit(0)


def kills_itself(rewards: Any, dones: Any, *, discount: float) -> Any:
    os.kill(os.getpid(), signal.SIGKILL)


def exhausts_memory(rewards: Any, dones: Any, *, discount: float) -> Any:
    hoard = []
    while True:
        hoard.append(np.ones(2**24))


def tampers_with_the_spec(rewards: Any, dones: Any, *, discount: float) -> Any:
    spec = get_spec(SPEC)
    object.__setattr__(spec, "reference", lambda *args, **kwargs: np.zeros_like(rewards))
    return np.zeros_like(rewards)


def tampers_with_the_reference(rewards: Any, dones: Any, *, discount: float) -> Any:
    reference.discounted_returns = lambda rewards, dones, *, discount: np.zeros_like(rewards)
    return np.zeros_like(rewards)


HOSTILE = [
    pytest.param(raises, "exception", id="raise"),
    pytest.param(nan, "non-finite", id="nan"),
    pytest.param(wrong_type, "wrong dtype", id="wrong-type"),
    pytest.param(wrong_shape, "wrong shape", id="wrong-shape"),
    pytest.param(mutates, "mutated input", id="mutate-inputs"),
    pytest.param(non_deterministic, "non-deterministic", id="non-deterministic"),
    pytest.param(sleeps, "timed out", id="sleep-forever"),
    pytest.param(exits, "exited", id="sys-exit-0"),
    pytest.param(hard_exits, "exited", id="os-exit-0"),
    pytest.param(kills_itself, "crashed", id="kill-itself"),
    pytest.param(tampers_with_the_spec, "wrong value", id="tamper-with-spec"),
    pytest.param(tampers_with_the_reference, "wrong value", id="tamper-with-reference"),
]


@pytest.mark.parametrize("impl, kind", HOSTILE)
def test_hostile_implementation_is_rejected_with_its_kind(impl, kind):
    report = check(impl, SPEC, seed=SEED, examples=30, timeout=2.0)
    assert not report.conforms
    assert report.failure.kind == kind, str(report)
    assert "does not conform" in str(report)
    with pytest.raises(AssertionError, match="does not conform"):
        assert_conforms(impl, SPEC, seed=SEED, examples=30, timeout=2.0)
    # the parent's spec and reference are untouched
    assert get_spec(SPEC).reference is reference.discounted_returns
    assert check(correct, SPEC, seed=SEED, examples=5).conforms


@pytest.mark.skipif(not hasattr(os, "fork"), reason="memory limits need POSIX")
def test_memory_exhaustion_under_a_limit_is_reported():
    report = check(exhausts_memory, SPEC, seed=SEED, examples=5, memory_limit=2**31, timeout=20.0)
    assert not report.conforms
    assert report.failure.kind in ("exception", "crashed"), str(report)


def test_in_process_mode_reports_sys_exit_instead_of_exiting():
    report = check(exits, SPEC, seed=SEED, examples=5, isolation="none")
    assert report.failure is not None and report.failure.kind == "exited"


def test_total_time_limit():
    def slow(rewards, dones, *, discount):
        time.sleep(0.05)
        return correct(rewards, dones, discount=discount)

    report = check(slow, SPEC, seed=SEED, examples=100, total_timeout=0.5)
    assert report.failure is not None and report.failure.kind == "timed out"
    assert "total time limit" in report.failure.message


@pytest.mark.parametrize(
    "options, error, match",
    [
        pytest.param({"timeout": 0}, ValueError, "timeout", id="zero-timeout"),
        pytest.param({"total_timeout": -1}, ValueError, "total_timeout", id="negative-total"),
        pytest.param({"isolation": "thread"}, ValueError, "isolation", id="bad-isolation"),
        pytest.param({"hyperparameters": {"discount": 1.5}}, ValueError, "domain", id="bad-param"),
    ],
)
def test_bad_options_are_usage_errors(options, error, match):
    with pytest.raises(error, match=match):
        check(correct, SPEC, seed=SEED, examples=5, **options)


def test_a_wrong_signature_is_refused_before_any_example():
    calls = []

    def two_arguments(rewards, *, discount):
        calls.append(1)
        return rewards

    with pytest.raises(TypeError, match="signature"):
        check(two_arguments, SPEC, seed=SEED, examples=5, isolation="none")
    assert not calls


def test_worker_outcomes():
    with Worker(lambda x: x + 1) as worker:
        assert worker.call(1, timeout=10).value == 2
        assert worker.call(2, timeout=10).value == 3  # the same child answers again
    with Worker(lambda x: os._exit(3)) as worker:
        outcome = worker.call(1, timeout=10)
        assert outcome.kind == "exited" and "code 3" in outcome.detail
        assert worker.call(1, timeout=10).kind == "exited"  # a fresh child after a death


# ----------------------------------------------------------------------------- realistic inputs
def wrong_above_50(rewards: Any, dones: Any, *, discount: float) -> Any:
    out = correct(rewards, dones, discount=discount)
    if len(rewards) > 50:
        out = out.copy()
        out[-1] += 1.0
    return out


def test_a_bug_that_needs_long_inputs_is_found():
    report = check(wrong_above_50, SPEC, seed=SEED, examples=100)
    assert not report.conforms and report.failure.kind == "wrong value"
    # shrinking reaches the shortest input that shows the bug
    assert len(report.failure.example.arguments["rewards"]) == 51


def test_batched_inputs_are_generated_when_assumed():
    shapes = []

    def spy(rewards, dones, *, discount):
        shapes.append(np.shape(rewards))
        return correct(rewards, dones, discount=discount)

    assert check(
        spy, SPEC, seed=SEED, examples=60, isolation="none", assume={"batch": True}
    ).conforms
    assert any(len(shape) == 2 for shape in shapes)
    shapes.clear()
    assert check(spy, SPEC, seed=SEED, examples=60, isolation="none").conforms
    assert all(len(shape) == 1 for shape in shapes)  # 1-D by default, as documented


def clamped_k3(log_probs: Any, reference_log_probs: Any) -> Any:
    log_ratio = np.clip(np.asarray(reference_log_probs) - np.asarray(log_probs), -20.0, 20.0)
    return np.expm1(log_ratio) - log_ratio


def test_a_deliberately_clamped_implementation_conforms_within_its_contract():
    assert not check(clamped_k3, "kl_estimator_k3", seed=SEED, examples=200).conforms
    report = check(
        clamped_k3, "kl_estimator_k3", seed=SEED, examples=200, assume={"max_abs_log_ratio": 20.0}
    )
    assert report.conforms, str(report)
    assert "assuming max_abs_log_ratio=20.0" in str(report)


@pytest.mark.parametrize(
    "assume, error",
    [
        pytest.param({"no_such": 1}, ValueError, id="unknown"),
        pytest.param({"batch": 1}, TypeError, id="not-a-bool"),
        pytest.param({"max_steps": 0}, ValueError, id="below-minimum"),
    ],
)
def test_bad_assumptions_are_usage_errors(assume, error):
    with pytest.raises(error, match="assum"):
        check(correct, SPEC, seed=SEED, examples=5, assume=assume)
