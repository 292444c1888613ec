"""Tests of rlmath.audit: exact expected gradients, named objectives, verdicts, CLI, assertion.

Models are small (2 prompts, 2 ordinary tokens + EOS, L = 2: 7 responses, 210 multisets of
G = 4 per prompt) so the file runs in seconds. Expected verdicts come from the claims (cited
per test), never from the engine: RLOO is unbiased for grad J (``rloo-unbiased``), the group
mean shrinks it by 1 - 1/G (``group-mean-baseline-shrinks``), GRPO's std reweights prompts
(``group-std-normalisation``), the 1/|y| token mean reweights lengths and a constant normaliser
L only rescales (``grpo-length-normalisation-bias``), k1 / k2 / k3 in the loss give zero / the
partial forward / the partial reverse token KL (``llm-sequence-kl`` claims).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rlmath.audit import (
    audit,
    audit_models,
    expected_gradient,
    expected_gradient_details,
    grpo_prompt_factor,
    named_objective_gradients,
    named_objectives,
    node_reach_probabilities,
)
from rlmath.claims import complex_step_gradient
from rlmath.testing import assert_expected_gradient

torch = pytest.importorskip("torch")

G = 4
N_MODELS = 3


# ----------------------------------------------------------------------------- losses (torch)
def _sequence_sum(log_probs, mask):
    return (log_probs * mask).sum(-1)


def rloo_torch(log_probs, *, rewards, response_mask):
    advantages = rewards - (rewards.sum() - rewards) / (rewards.shape[0] - 1)
    return -(advantages * _sequence_sum(log_probs, response_mask)).mean()


def group_mean_torch(log_probs, *, rewards, response_mask):
    advantages = rewards - rewards.mean()
    return -(advantages * _sequence_sum(log_probs, response_mask)).mean()


def grpo_std_torch(log_probs, *, old_log_probs, rewards, response_mask):
    """PPO ratio and clip at the old policy, torch.std (ddof = 1), 0 for a tied group."""
    std = rewards.std()
    advantages = torch.where(
        std > 0, (rewards - rewards.mean()) / torch.where(std > 0, std, 1.0), 0.0
    )
    ratio = torch.exp(log_probs - old_log_probs)
    adv = advantages[:, None]
    per_token = -torch.minimum(ratio * adv, torch.clamp(ratio, 0.8, 1.28) * adv)
    return (per_token * response_mask).sum(-1).mean()


def dr_grpo_torch(log_probs, *, rewards, response_mask):
    advantages = rewards - rewards.mean()
    B, T = response_mask.shape
    return -(advantages[:, None] * log_probs * response_mask).sum() / (B * T)


def seq_mean_token_mean_torch(log_probs, *, rewards, response_mask):
    advantages = rewards - rewards.mean()
    per_sequence = (advantages[:, None] * log_probs * response_mask).sum(-1) / response_mask.sum(-1)
    return -per_sequence.mean()


def k3_torch(log_probs, *, ref_log_probs, response_mask):
    log_ratio = ref_log_probs - log_probs
    return ((torch.exp(log_ratio) - 1 - log_ratio) * response_mask).sum() / response_mask.shape[0]


def rloo_k3_torch(log_probs, *, rewards, ref_log_probs, response_mask):
    return rloo_torch(log_probs, rewards=rewards, response_mask=response_mask) + 0.1 * k3_torch(
        log_probs, ref_log_probs=ref_log_probs, response_mask=response_mask
    )


# the subtly wrong losses of the acceptance
def rloo_k3_wrong_sign_torch(log_probs, *, rewards, ref_log_probs, response_mask):
    """The KL term added with the wrong sign."""
    return rloo_torch(log_probs, rewards=rewards, response_mask=response_mask) - 0.1 * k3_torch(
        log_probs, ref_log_probs=ref_log_probs, response_mask=response_mask
    )


def micro_batch_token_mean_torch(log_probs, *, rewards, response_mask):
    """Dr. GRPO's token sum, but two micro-batches each normalised by its own token count."""
    per_token = -(rewards - rewards.mean())[:, None] * log_probs * response_mask
    halves = (slice(0, 2), slice(2, None))
    return sum(per_token[h].sum() / response_mask[h].sum() for h in halves) / 2


def seq_mean_normalised_before_mask_torch(log_probs, *, rewards, response_mask):
    """GRPO's per-sequence token mean, but divided by T before the mask is applied."""
    per_token = -(rewards - rewards.mean())[:, None] * log_probs
    return ((per_token / per_token.shape[-1]) * response_mask).sum(-1).mean()


def whiten_then_mask_torch(log_probs, *, rewards, response_mask):
    """Token advantages whitened over the padded [B, T] tensor, the mask applied afterwards."""
    advantages = rewards - (rewards.sum() - rewards) / (rewards.shape[0] - 1)
    token_advantages = advantages[:, None] * response_mask
    token_advantages = (token_advantages - token_advantages.mean()) / (
        token_advantages.std() + 1e-6
    )
    return -(token_advantages * response_mask * log_probs).sum() / log_probs.numel()


# ----------------------------------------------------------------------------- losses (numpy)
def rloo_numpy(log_probs, *, rewards, response_mask):
    advantages = rewards - (rewards.sum() - rewards) / (rewards.shape[0] - 1)
    return -(advantages * (log_probs * response_mask).sum(axis=1)).mean()


def ppo_rloo_numpy(log_probs, *, old_log_probs, rewards, response_mask):
    """Complex-safe ratio, no clip: the complex-step path."""
    advantages = rewards - (rewards.sum() - rewards) / (rewards.shape[0] - 1)
    ratio = np.exp(log_probs - old_log_probs)
    return -(advantages[:, None] * ratio * response_mask).sum() / response_mask.shape[0]


def ppo_rloo_abs_numpy(log_probs, *, old_log_probs, rewards, response_mask):
    """The same loss with an abs on the perturbed argument: not complex-analytic."""
    advantages = rewards - (rewards.sum() - rewards) / (rewards.shape[0] - 1)
    ratio = np.exp(log_probs - old_log_probs)
    return -(advantages[:, None] * np.abs(ratio) * response_mask).sum() / response_mask.shape[0]


def _numpy_only(loss):
    """Wrap a NumPy loss so that torch tensors are rejected (forces the NumPy path in auto)."""

    def wrapped(log_probs, *, old_log_probs, rewards, response_mask):
        if not isinstance(log_probs, np.ndarray):
            raise TypeError("numpy arrays only")
        return loss(
            log_probs, old_log_probs=old_log_probs, rewards=rewards, response_mask=response_mask
        )

    return wrapped


# ----------------------------------------------------------------------------- verdicts
@pytest.mark.parametrize(
    ("loss", "objective", "coefficient"),
    [
        pytest.param(rloo_torch, "J", 1.0, id="rloo-unbiased"),
        pytest.param(group_mean_torch, "J", 1 - 1 / G, id="group-mean-shrinks"),
        pytest.param(dr_grpo_torch, "J", (1 - 1 / G) / 2, id="dr-grpo-constant-normaliser"),
        pytest.param(grpo_std_torch, "prompt-reweighted J", 1.0, id="grpo-std"),
        pytest.param(
            seq_mean_token_mean_torch, "length-reweighted J", 1 - 1 / G, id="grpo-token-mean"
        ),
        pytest.param(k3_torch, "token KL(ref||pi)", 1.0, id="k3-in-loss"),
        pytest.param(rloo_k3_torch, "J - beta token KL(ref||pi)", 1.0, id="rloo-plus-k3"),
    ],
)
def test_correct_losses_get_the_verdict_their_claim_proves(loss, objective, coefficient):
    report = audit(loss, n_models=N_MODELS, group_size=G, beta=0.1)
    assert report.verdict == "unbiased", report.summary()
    assert report.objective == objective, report.summary()
    assert math.isclose(report.coefficient, coefficient, rel_tol=1e-9)
    assert report.relative_residual <= report.tolerance


def test_numpy_loss_gets_the_same_verdict_without_torch_autograd():
    report = audit(rloo_numpy, n_models=2, group_size=3, backend="numpy")
    assert (report.verdict, report.objective, report.backend) == ("unbiased", "J", "numpy")
    assert math.isclose(report.coefficient, 1.0, rel_tol=1e-9)
    assert "complex step" in report.differentiation


def test_k1_in_the_loss_has_zero_expected_gradient():
    def k1(log_probs, *, ref_log_probs, response_mask):
        return ((log_probs - ref_log_probs) * response_mask).sum() / response_mask.shape[0]

    report = audit(k1, n_models=2, group_size=2)
    assert report.verdict == "zero", report.summary()
    assert not report.passed  # no named objective is followed
    assert assert_expected_gradient(k1, objective="0", n_models=2, group_size=2).passed
    with pytest.raises(AssertionError, match="expected a zero expected gradient"):
        assert_expected_gradient(k3_torch, objective="0", n_models=1, group_size=2)


def test_kl_in_the_reward_follows_the_regularised_objective():
    """RLOO on R - beta sum_t k1 (detached): E = grad J - beta grad KL(pi||ref) (Ziegler 2019)."""

    def loss(log_probs, *, old_log_probs, ref_log_probs, rewards, response_mask):
        shaped = rewards - 0.1 * ((old_log_probs - ref_log_probs) * response_mask).sum(-1)
        return rloo_torch(log_probs, rewards=shaped, response_mask=response_mask)

    report = audit(loss, n_models=N_MODELS, group_size=3, beta=0.1)
    assert (report.verdict, report.objective) == ("unbiased", "J - beta KL(pi||ref)"), (
        report.summary()
    )


def test_wrong_kl_sign_is_biased_and_the_sign_is_named():
    report = audit(rloo_k3_wrong_sign_torch, n_models=N_MODELS, group_size=G)
    assert report.verdict == "biased"
    assert "wrong sign" in report.explanation and "token KL(ref||pi)" in report.explanation
    assert report.decomposition["token KL(ref||pi)"] == pytest.approx(-0.1, rel=1e-9)


def test_micro_batch_local_token_counts_are_biased_and_named():
    report = audit(micro_batch_token_mean_torch, n_models=N_MODELS, group_size=G)
    assert report.verdict == "biased"
    assert report.method == "ordered"  # the loss depends on the order of the rows
    assert "micro-batches" in report.explanation
    assert report.relative_residual > 1e3 * report.tolerance


def test_mask_applied_after_normalisation_is_biased_against_the_intended_objective():
    report = audit(
        seq_mean_normalised_before_mask_torch,
        n_models=N_MODELS,
        group_size=G,
        objective="length-reweighted J",
    )
    assert report.verdict == "biased" and not report.passed
    assert "constant token normaliser L" in report.explanation  # it is Dr. GRPO's, not 1/|y|
    whitened = audit(whiten_then_mask_torch, n_models=N_MODELS, group_size=G)
    assert whitened.verdict == "biased"
    assert "normaliser or weight depends on the sampled group" in whitened.explanation


def test_off_policy_sequence_ratio_recovers_j_and_token_ratios_follow_the_surrogate():
    """Claim token-vs-sequence-correction: sequence ratio -> grad J; token ratios -> surrogate."""

    def sequence_ratio(log_probs, *, old_log_probs, behaviour_log_probs, rewards, response_mask):
        weight = torch.exp(((old_log_probs - behaviour_log_probs) * response_mask).sum(-1))
        return -(weight * rewards * _sequence_sum(log_probs, response_mask)).mean()

    def token_ratio(log_probs, *, old_log_probs, behaviour_log_probs, rewards, response_mask):
        weight = torch.exp(old_log_probs - behaviour_log_probs)
        return -(rewards[:, None] * weight * log_probs * response_mask).sum(-1).mean()

    options = {"n_models": 2, "group_size": 1, "behaviour": "perturbed", "rewards": "gaussian"}
    sequence = audit(sequence_ratio, **options)
    assert (sequence.verdict, sequence.objective) == ("unbiased", "J"), sequence.summary()
    token = audit(token_ratio, **options)
    assert (token.verdict, token.objective) == ("unbiased", "token-IS surrogate"), token.summary()


# ----------------------------------------------------------------------------- the engine
@pytest.fixture(scope="module")
def model():
    return audit_models(1, seed=3)[0][0]


def test_numpy_complex_step_differences_and_torch_agree(model):
    def ppo_rloo_torch(log_probs, *, old_log_probs, rewards, response_mask):
        advantages = rewards - (rewards.sum() - rewards) / (rewards.shape[0] - 1)
        ratio = torch.exp(log_probs - old_log_probs)
        return -(advantages[:, None] * ratio * response_mask).sum() / response_mask.shape[0]

    torch_path = expected_gradient_details(ppo_rloo_torch, model=model, group_size=3)
    stepped = expected_gradient_details(_numpy_only(ppo_rloo_numpy), model=model, group_size=3)
    differenced = expected_gradient_details(
        _numpy_only(ppo_rloo_abs_numpy), model=model, group_size=3
    )
    assert stepped.backend == differenced.backend == "numpy"
    assert "complex step" in stepped.differentiation
    assert "differences" in differenced.differentiation
    assert any("complex-step derivatives disagree" in n for n in differenced.notes)
    scale = torch_path.absolute_tolerance() + stepped.absolute_tolerance()
    assert np.abs(stepped.gradient - torch_path.gradient).max() <= scale
    bound = torch_path.absolute_tolerance() + differenced.absolute_tolerance()
    assert np.linalg.norm(differenced.gradient - torch_path.gradient) <= bound
    # and all three equal -grad J (RLOO): the exact value, from the model alone
    assert np.allclose(torch_path.gradient, -model.objective_gradient(), rtol=0, atol=1e-13)


def test_logits_path_agrees_with_the_log_prob_path(model):
    by_log_probs = expected_gradient(group_mean_torch, model=model, group_size=3)
    by_logits = expected_gradient_details(
        group_mean_torch, model=model, group_size=3, differentiate="logits"
    )
    assert "logits" in by_logits.differentiation
    assert np.abs(by_logits.gradient - by_log_probs).max() <= 1e-14


def test_entropy_bonus_through_logits_is_the_partial_entropy_gradient(model):
    r"""E[grad sum_t H(pi(.|n_t))] = sum_n d(n) grad H_n, d held fixed; grad H = -pi(log pi + H)."""

    def entropy_loss(log_probs, *, logits, response_mask):
        log_pi = torch.log_softmax(logits, dim=-1)
        entropy = -(log_pi.exp() * log_pi).sum(-1)
        return -(entropy * response_mask).sum()

    for backend in ("torch", "numpy"):
        got = expected_gradient(
            entropy_loss if backend == "torch" else _numpy_entropy,
            model=model,
            group_size=1,
            backend=backend,
        )
        shift = model.theta - model.theta.max(axis=-1, keepdims=True)
        log_pi = shift - np.log(np.exp(shift).sum(axis=-1, keepdims=True))
        pi = np.exp(log_pi)
        entropy = -(pi * log_pi).sum(axis=-1, keepdims=True)
        weight = model.prompt_probabilities[:, None] * node_reach_probabilities(model)
        expected = -weight[:, :, None] * (-pi * (log_pi + entropy))
        assert np.abs(got - expected).max() <= 1e-12, backend


def _numpy_entropy(log_probs, *, logits, response_mask):
    shift = logits - logits.real.max(axis=-1, keepdims=True)
    log_pi = shift - np.log(np.exp(shift).sum(axis=-1, keepdims=True))
    entropy = -(np.exp(log_pi) * log_pi).sum(axis=-1)
    return -(entropy * response_mask).sum()


def test_vmap_failure_falls_back_to_a_loop_and_says_so(model):
    def with_item(log_probs, *, rewards, response_mask):
        if float(rewards.std().item()) == 0.0:  # data-dependent Python control flow
            return (log_probs * 0.0).sum()
        return group_mean_torch(log_probs, rewards=rewards, response_mask=response_mask)

    looped = expected_gradient_details(with_item, model=model, group_size=2)
    assert any("vmap failed" in note for note in looped.notes)
    reference = expected_gradient(group_mean_torch, model=model, group_size=2)
    assert np.abs(looped.gradient - reference).max() <= 1e-14


def test_jax_backend_agrees_with_torch(model):
    jnp = pytest.importorskip("jax.numpy")

    def rloo_jax(log_probs, *, rewards, response_mask):
        advantages = rewards - (rewards.sum() - rewards) / (rewards.shape[0] - 1)
        return -(advantages * jnp.sum(log_probs * response_mask, axis=1)).mean()

    got = expected_gradient_details(rloo_jax, model=model, group_size=3)  # auto: jax
    assert got.backend == "jax"
    reference = expected_gradient(rloo_torch, model=model, group_size=3)
    assert np.abs(got.gradient - reference).max() <= 1e-13
    through_logits = expected_gradient_details(
        rloo_jax, model=model, group_size=3, backend="jax", differentiate="logits"
    ).gradient
    assert np.abs(through_logits - reference).max() <= 1e-13


# ----------------------------------------------------------------------------- objectives
def test_named_objectives_agree_with_complex_step_derivatives_of_their_values(model):
    """Each gradient against complex-step derivatives of the objective's *value* (other means)."""
    gradients = named_objective_gradients(model, beta=0.1, group_size=G)
    X, N, V = model.theta.shape
    r = model.responses
    rho = model.prompt_probabilities
    d_fixed = node_reach_probabilities(model)
    mu = (model.probabilities() * model.total_rewards()).sum(axis=1, keepdims=True)

    def log_softmax(table):
        shift = table.real.max(axis=-1, keepdims=True)
        return table - shift - np.log(np.exp(table - shift).sum(axis=-1, keepdims=True))

    def sequence_log_probs(table):
        lp = log_softmax(table)[:, np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)]
        return np.where(r.mask[None], lp, 0.0).sum(axis=2)

    log_ref_node = log_softmax(model.reference_theta)
    log_ref = sequence_log_probs(model.reference_theta)

    def value(name):
        def f(flat):
            table = flat.reshape(X, N, V)
            log_p = sequence_log_probs(table)
            p = np.exp(log_p)
            log_pi = log_softmax(table)
            pi = np.exp(log_pi)
            R = model.total_rewards()
            if name == "J":
                return rho @ (p * R).sum(axis=1)
            if name == "KL(pi||ref)":
                return rho @ (p * (log_p - log_ref)).sum(axis=1)
            if name == "KL(ref||pi)":
                return rho @ (np.exp(log_ref) * (log_ref - log_p)).sum(axis=1)
            if name == "length-reweighted J":
                return rho @ (p * (R - mu) / r.lengths[None]).sum(axis=1)
            ref = np.exp(log_ref_node)
            if name == "token KL(pi||ref)":
                return rho @ (d_fixed * (pi * (log_pi - log_ref_node)).sum(axis=-1)).sum(axis=1)
            if name == "token KL(ref||pi)":
                return rho @ (d_fixed * (ref * (log_ref_node - log_pi)).sum(axis=-1)).sum(axis=1)
            raise KeyError(name)

        return f

    for name in (
        "J",
        "KL(pi||ref)",
        "KL(ref||pi)",
        "length-reweighted J",
        "token KL(pi||ref)",
        "token KL(ref||pi)",
    ):
        numeric = complex_step_gradient(value(name), model.theta.ravel()).reshape(X, N, V)
        assert np.abs(numeric - gradients[name]).max() <= 1e-13, name
    assert np.allclose(
        gradients["J - beta KL(pi||ref)"], model.regularized_objective_gradient(0.1), atol=1e-15
    )


def test_grpo_prompt_factor_matches_closed_forms():
    # G = 2: one success and one failure give advantages +-1/sqrt(2) (ddof 1): c = sqrt(2)
    # times... the claim: for G = 2 the factor is the constant 1/sqrt(2) (ddof = 1)
    for p in (0.1, 0.5, 0.9):
        assert grpo_prompt_factor(p, 2) == pytest.approx(1 / math.sqrt(2), rel=1e-12)
        assert grpo_prompt_factor(p, 3) == pytest.approx(2 / math.sqrt(3), rel=1e-12)
    # large G: c_G(p) -> 1/sqrt(p(1-p)) (Liu et al. 2025, Sec. 3.1)
    assert grpo_prompt_factor(0.3, 4000, ddof=0) == pytest.approx(1 / math.sqrt(0.21), rel=1e-2)


def test_library_holds_the_contract_names(model):
    names = set(named_objectives(model, behaviour=model))
    for name in (
        "J",
        "J - beta KL(pi||ref)",
        "J - beta KL(ref||pi)",
        "KL(pi||ref)",
        "KL(ref||pi)",
        "token KL(pi||ref)",
        "token KL(ref||pi)",
        "length-reweighted J",
        "prompt-reweighted J",
        "token-IS surrogate",
    ):
        assert name in names


# ----------------------------------------------------------------------------- bad inputs
def _needs_unknown(log_probs, *, advantages):
    return log_probs.sum()


def _vector_loss(log_probs, *, rewards):
    return log_probs.sum(-1)


def _nan_loss(log_probs, *, rewards):
    return log_probs.sum() * float("nan")


BAD_CASES = [
    pytest.param({"loss": 3}, TypeError, "loss must be callable", id="not-callable"),
    pytest.param(
        {"loss": _needs_unknown}, TypeError, "'advantages'", id="unknown-required-parameter"
    ),
    pytest.param({"loss": _vector_loss}, ValueError, "scalar", id="non-scalar"),
    pytest.param({"loss": _nan_loss}, ValueError, "finite", id="non-finite"),
    pytest.param({"group_size": 12}, ValueError, "group_size", id="too-many-groups"),
    pytest.param({"group_size": 0}, ValueError, "group_size", id="group-size-zero"),
    pytest.param({"backend": "tensorflow"}, ValueError, "backend", id="unknown-backend"),
    pytest.param({"family": "mdp"}, ValueError, "family", id="unknown-family"),
    pytest.param(
        {"family": "actor-critic"}, TypeError, "TabularActorCritic", id="actor-critic-model"
    ),
    pytest.param({"behaviour": np.zeros((1, 1, 2))}, ValueError, "behaviour", id="behaviour-shape"),
    pytest.param({"model": "model"}, TypeError, "model", id="model-type"),
    pytest.param({"loss": rloo_numpy, "beta": 1.0}, TypeError, "'beta'", id="unknown-constant"),
]


@pytest.mark.parametrize(("changes", "error", "message"), BAD_CASES)
def test_bad_arguments_raise_named_errors(model, changes, error, message):
    arguments = {"loss": rloo_torch, "model": model, "group_size": 2} | changes
    loss = arguments.pop("loss")
    with pytest.raises(error, match=message):
        expected_gradient_details(loss, max_groups=10_000, **arguments)


def test_audit_refuses_unknown_objectives_and_sizes():
    with pytest.raises(ValueError, match="objective"):
        audit(rloo_torch, n_models=1, group_size=2, objective="grad of nothing")
    with pytest.raises(ValueError, match="n_models"):
        audit(rloo_torch, n_models=0)
    with pytest.raises(ValueError, match="rewards"):
        audit(rloo_torch, n_models=1, rewards="poisson")


# ----------------------------------------------------------------------------- assertion, CLI
def test_assert_expected_gradient_passes_and_fails_readably():
    report = assert_expected_gradient(
        rloo_torch, objective="J", family="llm", coefficient=1.0, n_models=2, group_size=3
    )
    assert report.passed
    with pytest.raises(AssertionError) as failure:
        assert_expected_gradient(seq_mean_token_mean_torch, objective="J", n_models=2, group_size=3)
    text = str(failure.value)
    assert "seq_mean_token_mean_torch" in text and "length-reweighted J" in text
    with pytest.raises(AssertionError, match="not 0.5"):
        assert_expected_gradient(
            rloo_torch, objective="J", coefficient=0.5, n_models=1, group_size=3
        )


LOSS_FILE = """
import numpy as np

def rloo(log_probs, *, rewards, response_mask):
    advantages = rewards - (rewards.sum() - rewards) / (rewards.shape[0] - 1)
    return -(advantages * (log_probs * response_mask).sum(axis=1)).mean()

def token_mean(log_probs, *, rewards, response_mask):
    advantages = rewards - rewards.mean()
    return -(advantages[:, None] * log_probs * response_mask).sum() / response_mask.sum()
"""


def test_cli_audits_a_file_target_and_writes_json(tmp_path: Path, capsys):
    from rlmath.cli import main

    target = tmp_path / "my_losses.py"
    target.write_text(LOSS_FILE)
    out = tmp_path / "report.json"
    arguments = ["--models", "2", "--group-size", "3", "--backend", "numpy"]
    assert main(["audit", f"{target}:rloo", *arguments, "--json", str(out)]) == 0
    assert "unbiased for c * grad(J)" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["verdict"] == "unbiased" and data["objective"] == "J" and data["passed"]
    assert main(["audit", f"{target}:token_mean", *arguments, "--objective", "J"]) == 1
    assert "biased" in capsys.readouterr().out
    assert main(["audit", f"{target}:missing"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["audit", f"{target}:rloo", "--objective", "no such objective"]) == 2


# ----------------------------------------------------------------------------- actor-critic
def _discounted_returns_torch(rewards, discount):
    weights = torch.pow(discount, torch.arange(rewards.shape[0], dtype=torch.float64))
    return torch.flip(torch.cumsum(torch.flip(weights * rewards, [0]), 0), [0]) / weights, weights


def reinforce_discounted(log_probs, *, rewards, discount):
    """sum_t gamma^t G_t grad log pi(a_t|s_t): the policy gradient theorem (Sutton et al. 2000)."""
    returns, weights = _discounted_returns_torch(rewards, discount)
    return -(weights * returns * log_probs).sum()


def a2c_with_entropy(log_probs, *, logits, rewards, values, discount):
    returns, _ = _discounted_returns_torch(rewards, discount)
    log_pi = torch.log_softmax(logits, -1)
    entropy = -(log_pi.exp() * log_pi).sum(-1)
    return -((returns - values) * log_probs).mean() - 0.01 * entropy.mean()


def ppo_gae_numpy(
    log_probs,
    *,
    old_log_probs,
    rewards,
    values,
    terminated,
    truncated,
    final_values,
    last_value,
    discount,
):
    """rlmath.reference GAE(0.95) and PPO's clipped ratio, in NumPy."""
    from rlmath import reference

    advantages = reference.generalized_advantage_estimation(
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        last_value,
        discount=discount,
        lambda_=0.95,
    )
    ratio = np.exp(log_probs - old_log_probs)
    return -np.mean(np.minimum(ratio * advantages, np.clip(ratio, 0.8, 1.2) * advantages))


def reinforce_undiscounted_returns(log_probs, *, rewards, discount):
    """A mutant: gamma^t kept on the score but the returns summed without discount."""
    _, weights = _discounted_returns_torch(rewards, discount)
    returns = torch.flip(torch.cumsum(torch.flip(rewards, [0]), 0), [0])
    return -(weights * returns * log_probs).sum()


def test_actor_critic_verdicts():
    """REINFORCE with gamma^t: grad J; A2C/PPO weight steps alike: Nota and Thomas (2020)."""
    exact = audit(reinforce_discounted, family="actor-critic", n_models=N_MODELS)
    assert (exact.verdict, exact.objective, exact.coefficient) == (
        "unbiased",
        "J",
        pytest.approx(1.0),
    )
    a2c = audit(a2c_with_entropy, family="actor-critic", n_models=N_MODELS)
    assert a2c.verdict == "unbiased" and a2c.objective.startswith("J without gamma^t")
    assert a2c.decomposition["state entropy"] == pytest.approx(0.01 / 3, rel=1e-9)
    ppo = audit(ppo_gae_numpy, family="actor-critic", n_models=N_MODELS, backend="numpy")
    assert (ppo.verdict, ppo.objective) == ("unbiased", "J without gamma^t"), ppo.summary()
    assert ppo.coefficient == pytest.approx(1 / 3, rel=1e-9)  # the mean over T = 3 steps
    mutant = audit(reinforce_undiscounted_returns, family="actor-critic", n_models=N_MODELS)
    assert mutant.verdict == "biased", mutant.summary()


def test_actor_critic_objectives_against_trajectory_enumeration():
    """grad J by Bellman recursions equals the literal trajectory sum (rlmath.exact)."""
    from rlmath.audit.actor_critic import actor_critic_models, actor_critic_objectives
    from rlmath.exact import trajectory_policy_gradient

    model = actor_critic_models(1, seed=5)[0]
    objectives = actor_critic_objectives(model)
    literal = trajectory_policy_gradient(model.mdp, model.policy, model.mdp.horizon)
    assert np.abs(objectives["J"].gradient - literal).max() <= 1e-13
