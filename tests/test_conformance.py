"""Tests of rlmath.specs, rlmath.conformance and ``rlmath check``.

Every correct variant in ``implementations.numpy_correct`` must be accepted and every mutant in
``implementations.numpy_mutants`` rejected with the failure kind its bug implies, at the default
number of examples. Torch and JAX variants run when the framework is installed. No test asserts
a wall-clock time (that fails on a loaded machine); speed belongs in ``benchmarks/``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from implementations.numpy_correct import CORRECT
from implementations.numpy_mutants import MUTANTS

from rlmath import reference
from rlmath.cli.check import run as run_check
from rlmath.conformance import assert_conforms, check, load_target
from rlmath.specs import SPECS, Spec, get_spec

SEED = 20240


def _id(entry: tuple[Any, ...]) -> str:
    return f"{entry[0]}-{entry[1].__name__}"


@pytest.mark.parametrize("entry", CORRECT, ids=[_id(e) for e in CORRECT])
def test_correct_variant_is_accepted(entry: tuple[str, Any, dict[str, Any]]) -> None:
    name, implementation, options = entry
    report = check(implementation, name, seed=SEED, **options)
    assert report.conforms, str(report)


@pytest.mark.parametrize("entry", MUTANTS, ids=[_id(e) for e in MUTANTS])
def test_mutant_is_rejected_with_a_helpful_report(entry: tuple[str, Any, str, str]) -> None:
    name, implementation, kind, _bug = entry
    report = check(implementation, name, seed=SEED)
    assert not report.conforms, f"mutant accepted: {entry}"
    assert report.failure is not None
    allowed = {"non-deterministic", "wrong value"} if kind == "non-deterministic" else {kind}
    assert report.failure.kind in allowed, str(report)
    text = str(report)
    # The report shows the input, the diff and a reproducer naming the reference.
    for argument in get_spec(name).arguments:
        assert f"{argument} = " in text
    assert f"expected = {name}(" in text


def test_every_spec_has_a_correct_variant_and_a_rejected_mutant() -> None:
    # the LLM-RL specs' variants and mutants are run by tests/test_llm_reference.py
    from implementations import llm_numpy

    assert {entry[0] for entry in CORRECT + llm_numpy.CORRECT} == set(SPECS)
    assert {entry[0] for entry in MUTANTS + llm_numpy.MUTANTS} == set(SPECS)


def test_reproducer_reproduces_the_failure() -> None:
    from implementations import numpy_mutants

    report = check(
        numpy_mutants.gae_ignores_truncation, "generalized_advantage_estimation", seed=SEED
    )
    assert report.failure is not None
    namespace: dict[str, Any] = {}
    exec(report.reproducer(), namespace)  # noqa: S102 - the snippet is ours
    assert not np.allclose(namespace["expected"], namespace["actual"])


def test_diff_names_the_wrong_index() -> None:
    # One entry wrong by 1 at index 2 of a 4-step all-continuing trajectory.
    def off_at_two(*args: Any, **kwargs: Any) -> np.ndarray:
        result = reference.temporal_difference_errors(*args, **kwargs)
        if len(result) > 2:
            result[2] += 1.0
        return result

    report = check(off_at_two, "temporal_difference_errors", seed=SEED)
    assert report.failure is not None and report.failure.kind == "wrong value"
    assert "(2,)" in report.failure.details
    assert len(report.failure.example.arguments["rewards"]) == 3  # shrunk to the smallest T


def test_assert_conforms_raises_with_the_report() -> None:
    with pytest.raises(AssertionError, match="does not conform"):
        assert_conforms(lambda lp, ref: ref - lp, "kl_estimator_k1", seed=SEED, examples=20)


def test_hyperparameters_can_be_fixed_and_unknown_ones_are_rejected() -> None:
    seen: list[float] = []

    def spy(rewards: Any, dones: Any, *, discount: float) -> Any:
        seen.append(discount)
        return reference.discounted_returns(rewards, dones, discount=discount)

    assert check(
        spy,
        "discounted_returns",
        seed=SEED,
        examples=10,
        hyperparameters={"discount": 0.25},
        isolation="none",  # the spy's list lives in this process
    ).conforms
    assert set(seen) == {0.25}
    with pytest.raises(ValueError, match="unknown"):
        check(spy, "discounted_returns", hyperparameters={"gamma": 0.9})


BAD_CHECK_ARGUMENTS = [
    pytest.param({"impl": 3, "spec": "kl_estimator_k1"}, TypeError, "impl", id="impl-not-callable"),
    pytest.param({"spec": "gae"}, ValueError, "unknown spec", id="unknown-spec"),
    pytest.param(
        {"spec": "kl_estimator_k1", "examples": 0}, ValueError, "examples", id="zero-examples"
    ),
    pytest.param(
        {"spec": "kl_estimator_k1", "framework": "tf"}, ValueError, "framework", id="framework"
    ),
    pytest.param({"spec": "kl_estimator_k1", "dtype": "float16"}, ValueError, "dtype", id="dtype"),
    pytest.param({"spec": "kl_estimator_k1", "seed": 1.5}, TypeError, "seed", id="seed-float"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_CHECK_ARGUMENTS)
def test_bad_check_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    arguments = {"impl": reference.kl_estimator_k1, **kwargs}
    with pytest.raises(error, match=match):
        check(arguments.pop("impl"), arguments.pop("spec"), **arguments)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        pytest.param("no_colon", "target must be", id="no-colon"),
        pytest.param("rlmath.reference:nothing", "no attribute", id="missing-attribute"),
        pytest.param("rlmath.reference:__all__", "not callable", id="not-callable"),
        pytest.param("missing/file.py:f", "does not exist", id="missing-file"),
        pytest.param("no_such_module_xyz:f", "cannot import", id="missing-module"),
    ],
)
def test_load_target_errors(target: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_target(target)


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------


def _assert_finite_references_and_scales(spec: Spec, example: Any) -> None:
    for precision in (np.float64, np.float32):
        seen = example.rounded(np.dtype(precision))
        for output, scale in zip(spec.expected(seen), spec.error_scale(seen), strict=True):
            assert np.all(np.isfinite(output))
            assert np.all(np.isfinite(np.broadcast_to(scale, output.shape)))
        if spec.gradient is not None:
            for value, scale in spec.gradient(seen).values():
                assert np.all(np.isfinite(value)) and np.all(np.isfinite(scale))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_inputs_give_finite_references_and_scales(name: str) -> None:
    spec = SPECS[name]

    @settings(max_examples=30, database=None)
    @given(spec.examples())
    def inner(example: Any) -> None:
        _assert_finite_references_and_scales(spec, example)

    inner()


WITNESSED = sorted(name for name, spec in SPECS.items() if spec.witnesses is not None)


@pytest.mark.parametrize("name", WITNESSED)
def test_spec_witnesses_give_finite_references_and_scales(name: str) -> None:
    spec = SPECS[name]
    witnesses = spec.witness_examples()
    assert witnesses, name
    for example in witnesses:
        _assert_finite_references_and_scales(spec, example)


def test_witnesses_take_the_fixed_hyperparameters_and_the_contract() -> None:
    spec = SPECS["kl_penalty_per_token"]
    assert {w.hyperparameters["estimator"] for w in spec.witness_examples()} == {"k1", "k2", "k3"}
    bounded = spec.witness_examples({"estimator": "k2"}, {"max_abs_log_ratio": 0.5})
    assert bounded and all(w.hyperparameters == {"estimator": "k2"} for w in bounded)
    for witness in bounded:
        a = witness.arguments
        log_ratio = (a["log_probs"] - a["reference_log_probs"])[a["response_mask"]]
        assert np.abs(log_ratio).max() <= 0.5 * (1 + 1e-12)
    with pytest.raises(ValueError, match="unknown"):
        spec.witness_examples({"beta": 0.1})


def _aggregate_wrong_on_the_first_witness(per_token: Any, response_mask: Any, mode: str) -> Any:
    # right but on one fixed [5, 6] mask, which the drawn inputs do not meet
    from rlmath.llm_reference import aggregate_loss
    from rlmath.llm_specs import WITNESS_MASKS

    wrong = response_mask.shape == WITNESS_MASKS[0].shape and np.array_equal(
        response_mask, WITNESS_MASKS[0]
    )
    return aggregate_loss(per_token, response_mask, mode) + (1.0 if wrong else 0.0)


def test_a_failure_on_a_witness_is_reported_as_one() -> None:
    report = check(
        _aggregate_wrong_on_the_first_witness,
        "aggregate_loss",
        seed=SEED,
        examples=20,
        isolation="none",
    )
    witnesses = len(SPECS["aggregate_loss"].witness_examples())
    assert report.witnesses == witnesses
    assert report.failure is not None and report.failure.kind == "wrong value"
    assert report.failure.witness
    assert f"20 examples + {witnesses} witnesses" in str(report)
    assert "a fixed witness of the spec" in str(report)
    assert report.to_dict()["failure"]["witness"] is True
    assert report.to_dict()["witnesses"] == witnesses


def test_a_conforming_report_counts_the_witnesses() -> None:
    report = check(reference.kl_estimator_k1, "kl_estimator_k1", seed=SEED, examples=5)
    assert report.conforms and report.witnesses == 0
    assert "5 examples," in str(report)


BAD_WITNESS_SETTINGS = [
    pytest.param({"witness_reason": "x"}, "without witnesses", id="reason-without-witnesses"),
    pytest.param({"witnesses": lambda hyper: []}, "witness_reason", id="no-reason"),
    pytest.param(
        {"witnesses": lambda hyper: [], "witness_reason": "x"},
        "witness_hyperparameters must give values",
        id="missing-hyperparameter",
    ),
    pytest.param(
        {
            "witnesses": lambda hyper: [],
            "witness_reason": "x",
            "witness_hyperparameters": {"estimator": ()},
        },
        "needs a value",
        id="no-value",
    ),
]


@pytest.mark.parametrize(("settings", "match"), BAD_WITNESS_SETTINGS)
def test_bad_witness_settings(settings: dict[str, Any], match: str) -> None:
    spec = SPECS["kl_penalty_per_token"]
    fields = {
        name: getattr(spec, name)
        for name in ("name", "reference", "arguments", "hyperparameters", "outputs")
        + ("conventions", "claim", "draw_arguments", "error_scale")
    }
    with pytest.raises(ValueError, match=match):
        Spec(**fields, **settings)


def test_spec_gradients_match_the_reference_gradient_functions() -> None:
    # Reduction: the gradients the specs use for torch checks equal the public gradient functions.
    ppo = SPECS["ppo_clipped_surrogate_loss"]
    dpo = SPECS["dpo_loss"]

    @settings(max_examples=30, database=None)
    @given(ppo.examples(), dpo.examples())
    def inner(ppo_example: Any, dpo_example: Any) -> None:
        expected = SPECS["ppo_clipped_surrogate_loss_gradient"].expected(ppo_example)[0]
        np.testing.assert_array_equal(ppo.gradient(ppo_example)["log_probs"][0], expected)  # type: ignore[misc]
        chosen, rejected = SPECS["dpo_loss_gradient"].expected(dpo_example)
        grads = dpo.gradient(dpo_example)  # type: ignore[misc]
        np.testing.assert_allclose(grads["policy_chosen_log_probs"][0], chosen, rtol=1e-12, atol=0)
        np.testing.assert_allclose(
            grads["policy_rejected_log_probs"][0], rejected, rtol=1e-12, atol=0
        )

    inner()


def test_describe_states_conventions_for_every_spec() -> None:
    for spec in SPECS.values():
        text = spec.describe()
        assert spec.signature in text and "claim:" in text


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    import argparse

    from rlmath.cli import check as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return run_check(parser.parse_args(argv))


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _cli(["implementations.numpy_correct:k1", "--spec", "kl_estimator_k1", "--seed", "1"]) == 0
    )
    assert "OK" in capsys.readouterr().out
    assert _cli(["implementations.numpy_mutants:k1_sign_flipped", "--spec", "kl_estimator_k1"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert (
        _cli(
            ["tests/implementations/numpy_correct.py:bradley_terry", "--spec", "bradley_terry_loss"]
        )
        == 0
    )
    assert _cli(["implementations.numpy_correct:k1", "--spec", "no_such_spec"]) == 2
    assert _cli(["implementations.numpy_correct:k1"]) == 2
    assert (
        _cli(["implementations.numpy_correct:k1", "--spec", "kl_estimator_k1", "--param", "x"]) == 2
    )
    assert (
        _cli(
            [
                "implementations.numpy_correct:normalize_cleanrl_style",
                "--spec",
                "normalized_advantages",
                "--param",
                "ddof=1",
                "--param",
                "epsilon=1e-8",
            ]
        )
        == 0
    )
    assert _cli(["--list"]) == 0
    assert "generalized_advantage_estimation(rewards, values" in capsys.readouterr().out
    assert _cli(["--describe", "dpo_loss"]) == 0
    assert "logaddexp" in capsys.readouterr().out
    assert _cli(["--describe", "nope"]) == 2


@pytest.mark.parametrize("adapter", ["batch_major_gae_adapter", "per_step_discount_gae_adapter"])
def test_documented_adapters_conform(adapter: str) -> None:
    implementation = load_target(f"examples/conformance_adapters.py:{adapter}")
    assert_conforms(implementation, "generalized_advantage_estimation", seed=SEED)


def test_cli_is_registered() -> None:
    from rlmath.cli import COMMANDS

    assert COMMANDS["check"][0] == "check"


# --------------------------------------------------------------------------------------------
# PyTorch (optional)
# --------------------------------------------------------------------------------------------


def test_torch_variants_and_gradient_mutants() -> None:
    torch = pytest.importorskip("torch")
    from implementations.torch_variants import TORCH_CORRECT, TORCH_MUTANTS

    # Tiny tensors: torch's intra-op thread pool costs ~15 ms per op on a 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_torch_variants(TORCH_CORRECT, TORCH_MUTANTS)
    finally:
        torch.set_num_threads(threads)


def _check_torch_variants(TORCH_CORRECT: Any, TORCH_MUTANTS: Any) -> None:  # noqa: N803

    for name, implementation, options in TORCH_CORRECT:
        report = check(implementation, name, seed=SEED, **options)
        assert report.framework == "torch"
        assert report.conforms, str(report)
    for name, implementation, kind, bug in TORCH_MUTANTS:
        report = check(implementation, name, seed=SEED)
        assert report.failure is not None, f"torch mutant accepted: {bug}"
        # A wrong value may shrink to an input where only the gradient still differs.
        allowed = {kind, "wrong gradient"} if kind == "wrong value" else {kind}
        assert report.failure.kind in allowed, str(report)


# --------------------------------------------------------------------------------------------
# JAX (optional)
# --------------------------------------------------------------------------------------------


def test_jax_variants_and_gradient_mutants() -> None:
    pytest.importorskip("jax")
    from implementations.jax_variants import JAX_CORRECT, JAX_MUTANTS

    for name, implementation, options in JAX_CORRECT:
        report = check(implementation, name, seed=SEED, **options)
        assert report.framework == "jax"
        assert report.conforms, str(report)
    for name, implementation, kind, bug in JAX_MUTANTS:
        report = check(implementation, name, seed=SEED)
        assert report.failure is not None, f"jax mutant accepted: {bug}"
        # A wrong value may shrink to an input where only the gradient still differs.
        allowed = {kind, "wrong gradient"} if kind == "wrong value" else {kind}
        assert report.failure.kind in allowed, str(report)


def test_jax_reproducer_computes_in_float64() -> None:
    pytest.importorskip("jax")
    from implementations.jax_variants import gae_ignores_truncation

    report = check(gae_ignores_truncation, "generalized_advantage_estimation", seed=SEED)
    assert report.failure is not None
    # Without x64, JAX would silently run the snippet in float32.
    assert "jax_enable_x64" in report.reproducer()
    namespace: dict[str, Any] = {}
    exec(report.reproducer(), namespace)  # noqa: S102 - the snippet is ours
    assert np.asarray(namespace["actual"]).dtype == np.float64
    assert not np.allclose(namespace["expected"], namespace["actual"])


def test_jax_entropy_gradient_flushed_to_zero_is_within_the_floor() -> None:
    # Gaps of ~705..720 nats put a probability near or below the smallest normal float64;
    # XLA on CPU flushes subnormals to 0, so jax.grad returns 0 where the reference has
    # ~1e-306..1e-304. The flush-to-zero floor (used by `rlmath check` for JAX) covers that.
    jax = pytest.importorskip("jax")
    from implementations.jax_variants import categorical_entropy

    from rlmath.specs import Example
    from rlmath.tolerances import conformance_atol

    jax.config.update("jax_enable_x64", True)
    logits = np.array([[0.0, -705.0], [0.0, -709.9], [0.0, -720.0]])
    actual = np.asarray(jax.grad(lambda x: categorical_entropy(x).sum())(jax.numpy.asarray(logits)))
    assert actual.dtype == np.float64
    example = Example({"logits": logits}, {})
    expected, _scale = get_spec("categorical_entropy").gradient(example)["logits"]
    floor = conformance_atol(np.float64, flush_to_zero=True)
    assert np.all(np.abs(actual - expected) <= floor), (actual, expected, floor)
    values = np.asarray(categorical_entropy(jax.numpy.asarray(logits)))
    expected_values = reference.categorical_entropy(logits)
    np.testing.assert_allclose(values, expected_values, rtol=1e-12, atol=floor)
