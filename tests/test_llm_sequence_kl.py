"""Checks of the machinery of proofs/llm_sequence_kl.py that its claims rely on.

The claims compare library enumerations with complex-step derivatives of divergences written
over the prefix tree, and a Monte-Carlo leg with a token-by-token sampler; these tests check
those pieces against independent computations (SequenceModel's own KL, closed forms of the
estimators' derivatives, empirical frequencies).
"""

from __future__ import annotations

import numpy as np
import pytest

from rlmath.sequence_model import SequenceModel
from rlmath.verify import _load_module, proofs_directory

kl = _load_module(proofs_directory() / "llm_sequence_kl.py")

MODELS = [
    SequenceModel.random(1, 1, 2, seed=0, logit_scale=1.0),
    SequenceModel.random(2, 2, 3, seed=1, logit_scale=1.5),
    SequenceModel.random(2, 3, 3, seed=2, logit_scale=1.0),
]
IDS = ["X1-K1-L2", "X2-K2-L3", "X2-K3-L3"]


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_tree_kl_is_the_sequence_model_kl(model: SequenceModel) -> None:
    # The chain rule of the KL over the prefix tree (the claims' independent side) equals the
    # enumeration of SequenceModel.kl_to_reference.
    log_pi = kl._log_softmax(model.theta)
    log_ref = kl._log_softmax(model.reference_theta)
    tree = model.prompt_probabilities @ (
        kl._reach(model, log_pi) * kl._node_kl(log_pi, log_ref)
    ).sum(1)
    assert tree == pytest.approx(model.kl_to_reference(), rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_prefix_law_gradient_is_the_missing_term(model: SequenceModel) -> None:
    # Tang & Munos's term E[sum_t s_t sum_{t' > t} k1_t'] (enumerated) = the gradient through
    # the prefix law of sum_h d(h) KL_h (complex step).
    future = -kl.reward_to_go(model, 1.0) - kl.token_k1(model)
    enumerated = kl._expectation(model, future)
    np.testing.assert_allclose(kl.prefix_law_kl_gradient(model), enumerated, rtol=0, atol=1e-13)
    assert np.abs(enumerated).max() > 1e-4  # not a comparison of zeros


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_derivatives_in_log_probs_match_closed_forms(estimator: str) -> None:
    # d k1 / d log pi = 1, d k2 / d log pi = l = log pi - log ref, d k3 / d log pi = 1 - r.
    model = MODELS[1]
    log_pi, log_ref, mask = kl._token_tables(model)
    derivative, bound = kl._derivative_in_log_probs(estimator, log_pi, log_ref, mask)
    ell = log_pi - log_ref
    closed = {"k1": np.ones_like(ell), "k2": ell, "k3": 1 - np.exp(-ell)}[estimator]
    np.testing.assert_allclose(derivative, np.where(mask, closed, 0.0), rtol=0, atol=bound)
    assert bound < 1e-6


def test_sampler_frequencies_match_probabilities() -> None:
    model = MODELS[1]
    rng = np.random.default_rng(0)
    n = 200_000
    prompts, responses = kl.sample_responses(model, rng, n)
    counts = np.zeros((model.n_prompts, model.n_responses))
    np.add.at(counts, (prompts, responses), 1.0)
    p = model.prompt_probabilities[:, None] * model.probabilities()
    # each frequency within 6 binomial standard errors (false alarm ~ 1e-9 per cell)
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) <= 6 * se + 1e-12)


def test_sampler_never_returns_a_response_twice_as_long_as_allowed() -> None:
    model = MODELS[2]
    prompts, responses = kl.sample_responses(model, np.random.default_rng(1), 1000)
    assert prompts.min() >= 0 and prompts.max() < model.n_prompts
    assert responses.min() >= 0 and responses.max() < model.n_responses
