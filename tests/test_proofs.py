"""Every claim in proofs/ is verified: each leg passes and every mutant is rejected."""

from __future__ import annotations

import pytest

from rlmath.verify import load_claims, verify_claim

CLAIMS = load_claims()

#: The claim ids the project promises (issue "Claims and proofs"), each with both a symbolic
#: and an exact leg.
REQUIRED_IDS = (
    "expected-return-trajectory-sum",
    "log-derivative-trick",
    "trajectory-score-dynamics-free",
    "score-zero-mean",
    "baseline-unbiased",
    "reward-to-go-unbiased",
    "policy-gradient-theorem",
    "softmax-policy-gradient",
    "importance-sampling-unbiased",
    "importance-sampling-variance",
    "surrogate-matches-policy-gradient",
    "kl-nonnegative",
    "kl-gradient-vanishes-at-reference",
    "kl-hessian-is-fisher",
    "trajectory-kl-chain-rule",
    "ppo-kl-penalty-gradient",
    "ppo-clip-lower-bound",
    "ppo-clip-gradient",
    "td-error-is-advantage",
    "gae-closed-form",
    "performance-difference-lemma",
    "kl-regularized-optimal-policy",
    "dpo-implicit-reward",
)


def test_every_required_claim_exists():
    missing = sorted(set(REQUIRED_IDS) - {c.id for c in CLAIMS})
    assert not missing, f"claims missing from proofs/: {missing}"


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_claim_is_verified(claim):
    result = verify_claim(claim, seed=0)
    assert result.verified, "\n".join(result.failures())
    assert {"symbolic", "exact"} <= set(result.legs)


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_claim_is_documented(claim):
    assert claim.statement and claim.title and claim.references and claim.assumptions
    for mutant in claim.mutants:
        assert mutant.description


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 9))
def test_every_claim_is_verified_for_other_seeds(seed):
    # Hypothesis explores different examples for each seed: a claim whose tolerance or
    # example domain is wrong shows up here (e.g. seeds 3 and 10 found underflow cases).
    results = [verify_claim(c, seed=seed) for c in CLAIMS]
    failures = [f"{r.claim.id}: {r.failures()}" for r in results if not r.verified]
    assert not failures, "\n".join(failures)
