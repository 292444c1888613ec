"""Library adapters without the libraries: the pure conventions they rest on, their lazy
imports, and the verl bootstrap-token reduction against a transcription of verl's loop.

The adapters' runs against the real libraries are in ``scripts/library_report.py`` (opt-in).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from rlmath import adapters, reference
from rlmath.adapters import _library
from rlmath.conformance import check

torch = pytest.importorskip("torch")


def test_next_state_values_by_hand():
    # step 0 truncated (final value 7), step 1 terminated (0), step 2 open (last_value 4);
    # step 3 is both: termination wins
    got = adapters.next_state_values(
        [1.0, 2.0, 3.0, 5.0], [0, 1, 0, 1], [1, 0, 0, 1], [7.0, 8.0, 9.0, 6.0], 4.0
    )
    np.testing.assert_array_equal(got, [7.0, 0.0, 5.0, 0.0])


def test_next_state_values_reduce_td_errors_to_one_step():
    # delta_t = r_t + gamma v'_t - V(s_t) is the reference TD error (an independent function)
    rng = np.random.default_rng(3)
    steps = 9
    r, v, finals = rng.normal(size=steps), rng.normal(size=steps), rng.normal(size=steps)
    term, trunc = rng.random(steps) < 0.3, rng.random(steps) < 0.3
    nxt = adapters.next_state_values(v, term, trunc, finals, 1.5)
    expected = reference.temporal_difference_errors(r, v, term, trunc, finals, 1.5, discount=0.7)
    np.testing.assert_allclose(r + 0.7 * nxt - v, expected, rtol=1e-13, atol=1e-13)


def test_next_state_values_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="share one shape"):
        adapters.next_state_values([1.0, 2.0], [0], [0], [0.0], 0.0)


def test_segmentwise_adapters_keep_a_float32_result_float32():
    # a float32 implementation must be judged as float32, not widened to float64
    def sb3_float32(rewards, values, starts, last_value, last_done, *, discount, lambda_):
        out = np.zeros(len(rewards), dtype=np.float32)
        running = np.float32(0.0)
        for t in reversed(range(len(rewards))):
            nxt, keep = (last_value, 1 - last_done) if t == len(rewards) - 1 else (values[t + 1], 1)
            delta = np.float32(rewards[t] + discount * nxt * keep - values[t])
            running = np.float32(delta + discount * lambda_ * keep * running)
            out[t] = running
        return out

    adapted = adapters.gae_from_episode_starts(sb3_float32)
    result = adapted(np.ones(3), np.zeros(3), np.zeros(3, bool), np.zeros(3, bool), np.zeros(3),
                     0.0, discount=0.9, lambda_=0.9)
    assert result.dtype == np.float32


def test_require_names_the_pip_package():
    with pytest.raises(ImportError, match="pip install no-such-package"):
        _library.require("rlmath_no_such_module", "no-such-package")


@pytest.mark.parametrize(
    ("module", "attribute", "package"),
    [
        ("torchrl", "generalized_advantage_estimate", "torchrl"),
        ("skrl", "ppo_gae_advantages", "skrl"),
        ("tianshou", "episodic_return_advantages", "tianshou"),
        ("stable_baselines3", "rollout_buffer_advantages", "stable-baselines3"),
        ("verl", "gae_returns", "verl"),
    ],
)
def test_library_adapters_import_lazily(monkeypatch, module, attribute, package):
    import importlib

    adapter = getattr(importlib.import_module(f"rlmath.adapters.{module}"), attribute)
    for name in list(sys.modules):  # make the library unimportable for this test only
        if name.split(".")[0] in ("torchrl", "skrl", "tianshou", "stable_baselines3", "verl"):
            monkeypatch.delitem(sys.modules, name)
    for root in ("torchrl", "skrl", "tianshou", "stable_baselines3", "verl"):
        monkeypatch.setitem(sys.modules, root, None)
    one, flag = np.zeros(2), np.zeros(2, bool)
    with pytest.raises(ImportError, match=f"pip install {package}"):
        adapter(one, one, flag, flag, one, 0.0, discount=0.9, lambda_=0.9)


def _verl_gae_transcribed(token_level_rewards, values, response_mask, gamma, lam):
    """verl 0.9.1 ``compute_gae_advantage_return``'s loop, transcribed (whitening left out:
    the adapter reads the returns only)."""
    nextvalues, lastgaelam, reversed_advantages = 0, 0, []
    for t in reversed(range(token_level_rewards.shape[-1])):
        delta = token_level_rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam_ = delta + gamma * lam * lastgaelam
        nextvalues = values[:, t] * response_mask[:, t] + (1 - response_mask[:, t]) * nextvalues
        lastgaelam = lastgaelam_ * response_mask[:, t] + (1 - response_mask[:, t]) * lastgaelam
        reversed_advantages.append(lastgaelam)
    advantages = torch.stack(reversed_advantages[::-1], dim=1)
    return advantages, advantages + values


def test_verl_bootstrap_token_reduction_conforms(monkeypatch):
    from rlmath.adapters import verl

    fake = types.SimpleNamespace(compute_gae_advantage_return=_verl_gae_transcribed)
    monkeypatch.setattr(verl, "_core", lambda: fake)
    report = check(verl.gae_returns, "lambda_returns", seed=5, examples=40, isolation="none")
    assert report.conforms, str(report)


def test_verl_without_the_bootstrap_token_is_rejected(monkeypatch):
    # a wrong use: the last response token of every row is dropped (for a truncated or open
    # piece that is the bootstrap token, so V(s_final) is lost; for a terminated one a step)
    from rlmath.adapters import verl

    def no_bootstrap(token_level_rewards, values, response_mask, gamma, lam):
        keep = response_mask.clone()
        ends = keep.sum(dim=1).long()
        for row, end in enumerate(ends.tolist()):
            if end > 1:
                keep[row, end - 1] = 0
        masked_r, masked_v = token_level_rewards * keep, values * keep
        return _verl_gae_transcribed(masked_r, masked_v, keep, gamma, lam)

    monkeypatch.setattr(verl, "_core", lambda: types.SimpleNamespace(
        compute_gae_advantage_return=no_bootstrap))
    report = check(verl.gae_returns, "lambda_returns", seed=5, examples=60, isolation="none")
    assert not report.conforms and report.failure.kind == "wrong value"
