"""Tests of rlmath.sequence_sampling: responses drawn token by token from a SequenceModel.

Independent sides: the sampled frequencies against the enumerated probabilities
``SequenceModel.probabilities()`` (a chi-square test, scipy.stats.chi2), the sampled tokens
against the rows of ``model.responses`` their indices name, log-probabilities against
``SequenceModel.log_probabilities``, score sums against the dense
``SequenceModel.response_scores`` table.

False alarms: each chi-square test rejects a correct sampler with probability ALPHA = 1e-6
(the tests are deterministic given their seeds, so a pass stays a pass; the level says how
unlikely a seed is to make a correct sampler fail).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rlmath.sequence_model import SequenceModel
from rlmath.sequence_sampling import (
    PAD,
    SampledResponses,
    sample_groups,
    sample_responses,
    sampled_log_probabilities,
    score_sums,
)

ALPHA = 1e-6


def chi_square_p_value(counts: np.ndarray, probabilities: np.ndarray) -> float:
    """Pearson's chi-square goodness of fit, cells of probability 0 must have count 0."""
    counts = counts.ravel().astype(np.float64)
    p = probabilities.ravel()
    assert (counts[p == 0] == 0).all()
    keep = p > 0
    expected = counts.sum() * p[keep]
    assert expected.min() >= 5, "cells too small for the chi-square approximation"
    statistic = float(((counts[keep] - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(statistic, keep.sum() - 1))


MODELS = [
    (1, 1, 1),  # (X, K, L): two responses
    (2, 2, 3),
    (1, 3, 2),
    (3, 1, 4),
]


@pytest.mark.parametrize("X, K, L", MODELS)
def test_frequencies_match_probabilities(X: int, K: int, L: int) -> None:
    model = SequenceModel.random(X, K, L, seed=X + 10 * K + 100 * L, logit_scale=0.5)
    n = 100_000
    sample = sample_responses(model, n, np.random.default_rng(7))
    joint = model.prompt_probabilities[:, None] * model.probabilities()  # [X, R]
    cell = sample.prompts * model.n_responses + sample.response_indices
    counts = np.bincount(cell, minlength=joint.size)
    assert chi_square_p_value(counts, joint) > ALPHA


def test_group_frequencies_match_probabilities() -> None:
    """Groups: prompts from rho per group, members i.i.d. given it (pairs of a group of 2)."""
    model = SequenceModel.random(2, 1, 2, seed=3, logit_scale=0.5)  # R = 3
    batch = sample_groups(model, 60_000, 2, np.random.default_rng(11))
    R = model.n_responses
    pairs = batch.grouped(batch.response_indices)
    prompts = batch.grouped(batch.prompts)
    assert (prompts == prompts[:, :1]).all()
    p = model.probabilities()
    joint = model.prompt_probabilities[:, None, None] * p[:, :, None] * p[:, None, :]
    cell = (prompts[:, 0] * R + pairs[:, 0]) * R + pairs[:, 1]
    counts = np.bincount(cell, minlength=joint.size)
    assert chi_square_p_value(counts, joint) > ALPHA


def test_wrong_probabilities_are_rejected() -> None:
    """Power of the frequency test: the same counts against another model's law fail."""
    model = SequenceModel.random(1, 2, 2, seed=5, logit_scale=0.5)
    other = model.with_theta(
        model.theta + 0.2 * np.random.default_rng(0).standard_normal(model.theta.shape)
    )
    sample = sample_responses(model, 100_000, np.random.default_rng(7))
    counts = np.bincount(sample.response_indices, minlength=model.n_responses)
    assert chi_square_p_value(counts, other.probabilities()[0]) < ALPHA


def test_given_prompts_are_used() -> None:
    model = SequenceModel.random(3, 2, 2, seed=0, logit_scale=0.5)
    prompts = np.array([2, 0, 1, 2, 2])
    sample = sample_responses(model, 5, np.random.default_rng(0), prompts=prompts)
    assert sample.prompts.tolist() == prompts.tolist()
    fixed = sample_responses(model, 1000, np.random.default_rng(0), prompts=1)
    assert (fixed.prompts == 1).all()
    big = sample_responses(model, 50_000, np.random.default_rng(1), prompts=1)
    counts = np.bincount(big.response_indices, minlength=model.n_responses)
    assert chi_square_p_value(counts, model.probabilities()[1]) > ALPHA


@pytest.mark.parametrize("X, K, L", MODELS)
def test_shapes_masks_and_indices(X: int, K: int, L: int) -> None:
    model = SequenceModel.random(X, K, L, seed=1)
    sample = sample_responses(model, 2_000, np.random.default_rng(3))
    B = 2_000
    for array in (sample.tokens, sample.nodes, sample.response_mask):
        assert array.shape == (B, L)
    for array in (sample.lengths, sample.ends_with_eos, sample.response_indices, sample.prompts):
        assert array.shape == (B,)
    assert sample.tokens.dtype.kind == "i" and sample.response_mask.dtype == np.bool_
    # the mask is a prefix of each row of length |y|, padding after it
    positions = np.arange(L)[None, :]
    assert (sample.response_mask == (positions < sample.lengths[:, None])).all()
    assert (sample.tokens[~sample.response_mask] == PAD).all()
    assert (sample.nodes[~sample.response_mask] == PAD).all()
    # EOS only as the last token, and exactly when the response ends with EOS
    eos = sample.tokens == model.eos
    assert (eos.sum(axis=1) == sample.ends_with_eos).all()
    last = sample.tokens[np.arange(B), sample.lengths - 1]
    assert ((last == model.eos) == sample.ends_with_eos).all()
    assert (sample.lengths[~sample.ends_with_eos] == L).all()
    # the indices name the rows of the enumeration with the same tokens, nodes and lengths
    rows = model.responses
    assert (rows.tokens[sample.response_indices] == sample.tokens).all()
    assert (rows.nodes[sample.response_indices] == sample.nodes).all()
    assert (rows.lengths[sample.response_indices] == sample.lengths).all()
    assert sample.groups.tolist() == list(range(B)) and sample.group_size == 1


def test_log_probabilities_and_scores_match_the_enumeration() -> None:
    model = SequenceModel.random(2, 2, 3, seed=4)
    rng = np.random.default_rng(9)
    sample = sample_groups(model, 300, 3, rng)
    log_p = sampled_log_probabilities(model, sample)
    expected = model.log_probabilities()[sample.prompts, sample.response_indices]
    np.testing.assert_allclose(log_p, expected, rtol=1e-13, atol=1e-13)
    weights = rng.standard_normal(sample.n_responses)
    sums = score_sums(model, sample, weights)
    dense = model.response_scores()[sample.prompts, sample.response_indices]  # [B, X, N, V]
    reference = sample.grouped(weights[:, None, None, None] * dense).sum(axis=1)
    np.testing.assert_allclose(sums, reference, rtol=0, atol=1e-13)
    # per-token weights equal to the response weight give the same sums
    per_token = np.broadcast_to(weights[:, None], sample.tokens.shape)
    np.testing.assert_allclose(score_sums(model, sample, per_token), sums, rtol=0, atol=1e-15)


def test_seeds_reproducible_and_prefix_consistent() -> None:
    model = SequenceModel.random(2, 2, 3, seed=2)
    a = sample_responses(model, 500, np.random.default_rng(42))
    b = sample_responses(model, 500, np.random.default_rng(42))
    c = sample_responses(model, 800, np.random.default_rng(42))
    d = sample_responses(model, 500, np.random.default_rng(43))
    assert (a.tokens == b.tokens).all() and (a.prompts == b.prompts).all()
    assert (c.tokens[:500] == a.tokens).all() and (c.prompts[:500] == a.prompts).all()
    assert not (d.tokens == a.tokens).all()
    g1 = sample_groups(model, 100, 4, np.random.default_rng(5))
    g2 = sample_groups(model, 100, 4, np.random.default_rng(5))
    assert (g1.tokens == g2.tokens).all() and (g1.groups == g2.groups).all()


def test_zero_probability_tokens_and_prompts_are_never_drawn() -> None:
    theta = np.zeros((2, 2, 2))  # K = 1, L = 2: nodes () and (0,)
    theta[:, 0, 1] = -800.0  # EOS at the root has probability exp(-800) = 0 in float64
    model = SequenceModel(theta, 2, [0.0, 1.0])
    assert model.probabilities()[1, 0] == 0.0
    sample = sample_responses(model, 5_000, np.random.default_rng(0))
    assert (sample.prompts == 1).all()
    assert (sample.tokens[:, 0] != model.eos).all()


BAD_ARGUMENTS = [
    ("model-not-a-model", lambda m, g: sample_responses("m", 3, g), TypeError, "model"),
    ("n-float", lambda m, g: sample_responses(m, 3.0, g), TypeError, "n"),
    ("n-zero", lambda m, g: sample_responses(m, 0, g), ValueError, "n"),
    ("rng-int", lambda m, g: sample_responses(m, 3, 0), TypeError, "rng"),
    (
        "prompts-float",
        lambda m, g: sample_responses(m, 3, g, prompts=[0.0, 1.0, 0.0]),
        TypeError,
        "prompts",
    ),
    (
        "prompts-shape",
        lambda m, g: sample_responses(m, 3, g, prompts=[0, 1]),
        ValueError,
        "prompts",
    ),
    (
        "prompts-range",
        lambda m, g: sample_responses(m, 3, g, prompts=[0, 2, 0]),
        ValueError,
        "prompts",
    ),
    ("n-groups-zero", lambda m, g: sample_groups(m, 0, 2, g), ValueError, "n_groups"),
    ("group-size-zero", lambda m, g: sample_groups(m, 2, 0, g), ValueError, "group_size"),
    ("group-size-bool", lambda m, g: sample_groups(m, 2, True, g), TypeError, "group_size"),
    ("groups-rng", lambda m, g: sample_groups(m, 2, 2, None), TypeError, "rng"),
    ("too-many", lambda m, g: sample_responses(m, 10**12, g), ValueError, "n"),
    (
        "weights-shape",
        lambda m, g: score_sums(m, sample_responses(m, 3, g), np.ones(4)),
        ValueError,
        "weights",
    ),
    (
        "weights-nan",
        lambda m, g: score_sums(m, sample_responses(m, 3, g), [1.0, np.nan, 0.0]),
        ValueError,
        "weights",
    ),
    ("sample-type", lambda m, g: score_sums(m, "s", [1.0]), TypeError, "sample"),
    (
        "sample-other-model",
        lambda m, g: sampled_log_probabilities(
            m, sample_responses(SequenceModel.random(2, 2, 3, seed=0), 3, g)
        ),
        ValueError,
        "sample",
    ),
]


@pytest.mark.parametrize(
    "call, error, name",
    [case[1:] for case in BAD_ARGUMENTS],
    ids=[case[0] for case in BAD_ARGUMENTS],
)
def test_bad_arguments(call, error, name) -> None:  # type: ignore[no-untyped-def]
    model = SequenceModel.random(2, 2, 2, seed=0)
    with pytest.raises(error, match=name):
        call(model, np.random.default_rng(0))


def test_grouped_checks_shape() -> None:
    model = SequenceModel.random(1, 1, 1, seed=0)
    batch = sample_groups(model, 2, 3, np.random.default_rng(0))
    assert isinstance(batch, SampledResponses) and batch.n_groups == 2
    with pytest.raises(ValueError, match="values"):
        batch.grouped(np.zeros(5))
