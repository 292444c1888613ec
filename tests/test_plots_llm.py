"""The numbers behind the LLM-RL figures agree with the claims' closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlmath.plots import aggregation_weights, group_estimator_moments, length_drift


def test_aggregation_weights_are_the_stated_normalisers():
    lengths = np.array([[1, 3]])
    assert aggregation_weights(lengths, "seq-mean-token-sum", 4).tolist() == [[0.5, 0.5]]
    assert aggregation_weights(lengths, "seq-mean-token-sum-norm", 4).tolist() == [[1 / 8, 1 / 8]]
    assert aggregation_weights(lengths, "token-mean", 4).tolist() == [[0.25, 0.25]]
    assert aggregation_weights(lengths, "seq-mean-token-mean", 4).tolist() == [[0.5, 1 / 6]]
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregation_weights(lengths, "sum", 4)


def test_length_drift_shows_the_length_bias_of_per_response_normalisation():
    drift = length_drift()
    # a constant normaliser is a positive multiple of grad J: the same pull on length
    for name in ("seq-mean-token-sum", "seq-mean-token-sum-norm"):
        assert np.allclose(drift[name], drift["J"], atol=1e-6)
    correct, incorrect = drift["seq-mean-token-mean"]
    assert correct < 0 < incorrect  # Dr. GRPO: short correct, long incorrect responses


def test_group_estimator_moments_match_the_claims_factors():
    sizes = (2, 3, 4)
    moments = group_estimator_moments(sizes)
    for scale, cosine, variance in moments["RLOO (leave one out)"]:
        assert scale == pytest.approx(1.0, rel=1e-9) and cosine == pytest.approx(1.0, rel=1e-9)
        assert variance > 0
    for G, (scale, _, _) in zip(sizes, moments["group mean (Dr. GRPO)"], strict=True):
        assert scale == pytest.approx(1 - 1 / G, rel=1e-9)
    grpo = moments["GRPO (mean and std)"]
    # one prompt, binary rewards: c_2 = 1/sqrt(2), c_3 = 2/sqrt(3) (claim group-std-normalisation)
    assert grpo[0][0] == pytest.approx(1 / math.sqrt(2), rel=1e-9)
    assert grpo[1][0] == pytest.approx(2 / math.sqrt(3), rel=1e-9)
