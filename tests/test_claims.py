"""The claim framework: every check can fail, failures name what failed, the CLI reports it."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import sympy as sp
from hypothesis import strategies as st

from rlmath.claims import (
    Case,
    CaseAnalysis,
    Claim,
    Derivation,
    ExactLeg,
    LegResult,
    MonteCarloLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    local_constants_neutralised,
    monte_carlo_leg,
    normwise_error,
    regions_cover,
    violation,
    worst_component,
)
from rlmath.claims import exact_leg as exact_leg_module
from rlmath.cli import main
from rlmath.symbolic import is_nonnegative, prove_equal
from rlmath.verify import find_claims, load_claims, verify_claim

x = sp.Symbol("x", positive=True)
y = sp.Symbol("y", real=True)


def toy_derivation() -> Derivation:
    # (x + 1)^2 = x^2 + 2x + 1 >= 2x + 1   (gap x^2 >= 0)
    return Derivation(
        "toy",
        (
            Step((x + 1) ** 2, "definition"),
            Step(x**2 + 2 * x + 1, "binomial expansion"),
            Step(2 * x + 1, "drop the square", relation=">=", gap=x**2),
        ),
    )


def toy_claim(**overrides) -> Claim:
    fields = dict(
        id="toy",
        title="toy",
        statement=Statement((x + 1) ** 2, 2 * x + 1, ">="),
        assumptions=("x > 0",),
        references=("folklore",),
        symbolic=SymbolicLeg((toy_derivation(),)),
        exact=ExactLeg(
            st.floats(0.0, 10.0),
            lhs=lambda v: v * v + 2.0 * v + 1.0,  # expanded: another way to compute (x+1)^2
            symbols=(x,),
            arguments=lambda v: (v,),
            rtol=1e-12,
        ),
        mutants=(
            Mutant(
                "double-slope",
                "4x + 1 for 2x + 1: false for 0 < x < 2",
                symbolic=SymbolicMutation("toy", 4 * x + 1),
            ),
        ),
    )
    fields.update(overrides)
    return Claim(**fields)


# ----------------------------------------------------------------------------- symbolic checks
def test_prove_equal_accepts_identities_and_rejects_non_identities():
    assert prove_equal(sp.log(x**2), 2 * sp.log(x)) is not None
    assert prove_equal(sp.sin(y) ** 2 + sp.cos(y) ** 2, sp.Integer(1)) is not None
    assert prove_equal(x, x + 1) is None
    assert prove_equal(sp.Matrix([x, 1]), sp.Matrix([x, 1, 0])) is None


def test_is_nonnegative_uses_assumptions_only():
    assert is_nonnegative(x**2 + x)
    assert not is_nonnegative(y)  # a real of unknown sign is not proved non-negative


def test_toy_claim_is_verified_and_its_mutant_killed():
    result = verify_claim(toy_claim())
    assert result.verified, result.failures()
    mutant = result.mutants[0]
    assert mutant.killed
    # the symbolic leg rejected it by a refutation; the exact leg got the lambdified mutant
    assert set(mutant.verdicts) == {"symbolic", "exact"}
    assert "refuted" in mutant.verdicts["symbolic"].failure
    assert mutant.verdicts["exact"].status == "failed"
    legs = result.legs
    assert legs["symbolic"].evidence["statement_tied"] is True
    assert legs["exact"].evidence["control"]["rejected"] is True
    assert legs["exact"].evidence["rhs"] == "lambdified conclusion"


def test_statement_is_rendered_and_tied_to_the_derivation():
    claim = toy_claim()
    assert claim.statement_latex == sp.latex((x + 1) ** 2) + r" \ge " + sp.latex(2 * x + 1)
    # a statement whose rhs is not the conclusion (a dropped term) fails the symbolic leg
    untied = toy_claim(statement=Statement((x + 1) ** 2, 2 * x, ">="))
    result = untied.symbolic.run()
    assert result.status == "failed" and "statement rhs = conclusion" in result.failure
    with pytest.raises(ValueError, match="relation"):
        toy_claim(statement=Statement((x + 1) ** 2, 2 * x + 1, "="))


def test_an_explicit_rhs_or_text_statement_needs_a_reason():
    explicit = toy_claim(
        exact=ExactLeg(
            st.floats(0, 1),
            lhs=lambda v: (v + 1) ** 2,
            rhs=lambda v: (v + 1) ** 2,
            rtol=1e-12,
            relation=">=",
        ),
        statement="(x+1)^2 >= 2x + 1",
    )
    problems = explicit.coverage_problems()
    assert any("rhs_reason" in p for p in problems)
    assert any("statement_reason" in p for p in problems)
    assert not verify_claim(explicit).verified


def test_a_true_mutant_survives_and_an_undecidable_one_is_an_error_not_a_rejection():
    true_but_rewritten = Mutant(
        "rewritten", "2x + 1 written as 1 + 2x", symbolic=SymbolicMutation("toy", 1 + x + x)
    )
    result = verify_claim(toy_claim(mutants=(true_but_rewritten,)))
    assert not result.verified
    assert result.mutants[0].verdicts["symbolic"].status == "verified"
    # (x+1)^2 >= 2x is true but the stated gap x^2 is wrong: no point refutes it and sympy
    # cannot prove it, so there is no verdict: a defect of the mutant, never a rejection
    wrong_gap = Mutant(
        "wrong-gap", "true bound, wrong gap", symbolic=SymbolicMutation("toy", 2 * x)
    )
    result = verify_claim(toy_claim(mutants=(wrong_gap,)))
    verdict = result.mutants[0].verdicts["symbolic"]
    assert verdict.status == "error" and "no verdict" in verdict.failure
    assert not result.mutants[0].killed and not result.verified
    assert any("(error)" in line for line in result.failures())


def test_a_crashing_mutant_is_a_defect_not_a_rejection():
    crashing = Mutant(
        "typo",
        "a mutant with a bug",
        symbolic=SymbolicMutation("toy", 4 * x + 1),
        exact=lambda v: 1 / 0,
    )
    result = verify_claim(toy_claim(mutants=(crashing,)))
    verdict = result.mutants[0].verdicts["exact"]
    assert verdict.status == "error" and "ZeroDivisionError" in verdict.failure
    assert not result.mutants[0].killed
    assert not result.verified and result.errors


def test_an_exception_in_the_true_claim_is_an_error_with_its_reason():
    leg = ExactLeg(
        st.floats(0, 1), lhs=lambda v: v, rhs=lambda v: 1 / 0, rtol=1e-12, rhs_reason="test"
    )
    result = leg.run(seed=0)
    assert result.status == "error" and "ZeroDivisionError" in result.failure
    bad_tolerance = ExactLeg(
        st.floats(0, 1), lhs=lambda v: v, rhs=lambda v: v, rtol=lambda v: 1 / 0, rhs_reason="test"
    )
    assert bad_tolerance.run(seed=0).status == "error"


def test_exact_control_catches_a_leg_that_cannot_fail(monkeypatch):
    # rtol = 1e6: any rhs passes. First the tolerance cap says it is no exact comparison ...
    lenient = ExactLeg(
        st.floats(0.5, 1), lhs=lambda v: v, rhs=lambda v: 2 * v, rtol=1e6, rhs_reason="test"
    )
    result = lenient.run(seed=0)
    assert result.status == "error" and "MAX_EXACT_RTOL" in result.failure
    # ... and without the cap, the control (rhs moved by 1e3 tolerances) is accepted
    monkeypatch.setattr(exact_leg_module, "MAX_EXACT_RTOL", math.inf)
    result = lenient.run(seed=0)
    assert result.status == "error" and "control" in result.failure


def test_an_exact_tolerance_loosened_past_the_cap_is_an_error_not_a_pass():
    # "loosened to quiet a flaky check": a 1e-2 slack still rejects mutants and its control
    # (which scales with the tolerance) still fails, so only the cap can catch it
    loosened = ExactLeg(
        st.floats(0.5, 1),
        lhs=lambda v: v,
        rhs=lambda v: v * (1 + 1e-3),
        rtol=lambda v: 1e-2 + 1e-14,
        rhs_reason="test",
    )
    result = loosened.run(seed=0)
    assert result.status == "error" and "not an exact comparison" in result.failure


def test_monte_carlo_leg_control_and_errors():
    leg = monte_carlo_leg(
        st.floats(0.0, 1.0),
        lambda mean, rng, n: rng.normal(mean, 1.0, size=n),
        lambda mean: mean,
        n_samples=2000,
    )
    result = leg.run(seed=1)
    assert result.ok and result.evidence["control"]["rejected"] is True
    assert leg.run(seed=1, variant=lambda mean, rng, n: rng.normal(mean + 1, 1.0, size=n)).rejected
    crash = leg.run(seed=1, variant=lambda mean, rng, n: 1 / 0)
    assert crash.status == "error"
    nan = leg.run(seed=1, variant=lambda mean, rng, n: np.full(n, np.nan))
    assert nan.status == "error"
    # a hand-written check that reports no control is an error, not a verified leg
    no_control = MonteCarloLeg(lambda seed, variant: LegResult("verified", {}))
    assert no_control.run().status == "error"


def test_case_analysis_must_cover_its_domain():
    a, r, e = sp.Symbol("A", real=True), sp.Symbol("r", real=True), sp.Symbol("e", positive=True)
    assert regions_cover(sp.true, [a > 0, a < 0, sp.Eq(a, 0)])
    assert not regions_cover(sp.true, [a > 0, a < 0])
    assert regions_cover(sp.Ne(a, 0), [a > 0, a < 0])
    regions = [(a >= 0) & (r > 1 + e), (a >= 0) & (r <= 1 + e), a < 0]
    assert regions_cover(sp.true, regions)
    assert not regions_cover(sp.true, regions[:2])
    derivation = Derivation("d", (Step(a**2, "def"), Step(a * a, "a^2 = a a")))
    half = CaseAnalysis("half", sp.true, (Case(a > 0, derivation),))
    result = SymbolicLeg((), cases=(half,)).run()
    assert result.status == "failed" and "cover" in result.failure
    rho = sp.Symbol("rho", positive=True)
    misplaced = CaseAnalysis(
        "misplaced",
        sp.true,
        (Case(a > 0, derivation, {a: -rho}), Case(a <= 0, replace(derivation, name="e"))),
    )
    result = SymbolicLeg((), cases=(misplaced,)).run()
    assert result.status == "failed" and "parametrisation" in result.failure


def test_identical_steps_are_flagged():
    same = Derivation("same", (Step(2 * x, "def"), Step(x + x, "x + x = 2x")))  # sympy: 2*x twice
    result = SymbolicLeg((same,)).run()
    assert result.ok
    assert result.evidence["identical_steps"] == ["same step 1: x + x = 2x"]
    unevaluated = Derivation(
        "unevaluated", (Step(2 * x, "def"), Step(sp.Add(x, x, evaluate=False), "x + x = 2x"))
    )
    assert SymbolicLeg((unevaluated,)).run().evidence["identical_steps"] == []


def test_worst_component_breaks_ties_by_first_index():
    assert worst_component([1.0, -3.0, 3.0 * (1 + 1e-12), 2.0]) == 1
    assert worst_component([1.0, 3.0 * (1 + 1e-12), -3.0, 2.0]) == 1
    assert worst_component([0.5, np.nan, 4.0]) == 1


def test_the_private_hypothesis_hook_that_keeps_examples_seed_only_exists():
    # If a Hypothesis upgrade renames the hook, examples would silently depend on which
    # modules are imported: this test fails instead (see reproducibility.seed_only_generation).
    assert local_constants_neutralised()


def test_inequality_step_without_gap_or_with_wrong_gap_fails():
    steps = toy_derivation().steps
    no_gap = replace(steps[2], gap=None)
    wrong_gap = replace(steps[2], gap=x**2 + 1)
    negative_gap = Derivation("neg", (Step(y**2 + y, "def"), Step(y**2, "drop y", ">=", gap=y)))
    for bad in (no_gap, wrong_gap):
        derivation = replace(toy_derivation(), steps=(*steps[:2], bad))
        assert SymbolicLeg((derivation,)).run().status == "failed"
    assert SymbolicLeg((negative_gap,)).run().status == "failed"


def test_mutant_that_survives_fails_the_claim():
    harmless = Mutant("same", "identical conclusion", symbolic=SymbolicMutation("toy", 2 * x + 1))
    result = verify_claim(toy_claim(mutants=(harmless,)))
    assert not result.verified
    assert any("survived the symbolic leg" in line for line in result.failures())


def test_exact_leg_reports_the_failing_example():
    leg = ExactLeg(
        st.floats(0, 1), lhs=lambda v: v, rhs=lambda v: v + 1e-3, rtol=1e-12, rhs_reason="test"
    )
    result = leg.run(seed=0)
    assert result.status == "failed" and "example" in result.failure


def test_witnesses_are_checked_at_every_seed():
    # a variant wrong only at v = 0.75, which random floats in [0, 1] essentially never hit:
    # the generated examples accept it, the witness rejects it at every seed
    def variant(v):
        return v + (1.0 if v == 0.75 else 0.0)

    plain = ExactLeg(st.floats(0, 1), lhs=lambda v: v, rhs=lambda v: v, rtol=1e-12, rhs_reason="t")
    witnessed = replace(plain, witnesses=(0.75,), witness_reason="the one point that separates")
    for seed in (0, 1, 2):
        assert plain.run(seed=seed, variant=variant).status == "verified"
        result = witnessed.run(seed=seed, variant=variant)
        assert result.status == "failed" and "0.75" in result.failure
        assert witnessed.run(seed=seed).status == "verified"  # the true rhs passes the witness
    with pytest.raises(ValueError, match="witness_reason"):
        replace(plain, witnesses=(0.75,))


def test_normwise_error_and_violation():
    assert normwise_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert normwise_error([1.0, 2.0], [1.0, 2.5]) == pytest.approx(0.5 / 2.5)
    assert normwise_error([1.0], [1.0, 2.0]) == float("inf")
    assert normwise_error([np.nan], [1.0]) == float("inf")
    assert violation(1.0, 2.0, "<=") == 0.0 and violation(3.0, 2.0, "<=") > 0


@pytest.mark.parametrize(
    "overrides, match",
    [
        pytest.param({"mutants": ()}, "at least one mutant", id="no-mutants"),
        pytest.param(
            {"mutants": (Mutant("a", "a", exact=lambda v: v), Mutant("a", "b", exact=lambda v: v))},
            "duplicate mutant ids",
            id="duplicate-mutant-ids",
        ),
        pytest.param(
            {"mutants": (Mutant("a", "applies to nothing"),)}, "applies to no leg", id="no-variant"
        ),
        pytest.param(
            {"mutants": (Mutant("a", "mc", monte_carlo=object()),)},
            "no monte_carlo leg",
            id="variant-for-missing-leg",
        ),
    ],
)
def test_claim_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        toy_claim(**overrides)


def test_derivation_needs_two_steps():
    with pytest.raises(ValueError, match="at least two steps"):
        Derivation("short", (Step(x, "def"),))


# ----------------------------------------------------------------------------- real claims
def _break_step(claim: Claim, derivation_index: int, step_index: int) -> Claim:
    derivation = claim.symbolic.derivations[derivation_index]
    steps = list(derivation.steps)
    expression = steps[step_index].expression
    if isinstance(expression, sp.MatrixBase):  # + 1 elementwise: 2*0 + 1 != 0
        broken = 2 * expression + sp.ones(*expression.shape)
    else:
        broken = 2 * expression + 1
    steps[step_index] = replace(steps[step_index], expression=broken)
    derivations = list(claim.symbolic.derivations)
    derivations[derivation_index] = replace(derivation, steps=tuple(steps))
    # keep the leg's case analyses (and anything else it holds): only the one step changes
    return replace(claim, symbolic=replace(claim.symbolic, derivations=tuple(derivations)))


def _some_steps():
    """(claim id, derivation index, step index) for a spread of real derivation steps."""
    picks = []
    for claim in load_claims():
        for d, derivation in enumerate(claim.symbolic.derivations):
            n = len(derivation.steps)
            for s in sorted({1, n // 2, n - 1}):
                if s >= 1 and derivation.steps[s].relation == "=":
                    picks.append((claim.id, d, s))
    return picks[:: max(1, len(picks) // 12)]  # about a dozen, across claims


@pytest.mark.parametrize("claim_id, derivation_index, step_index", _some_steps())
def test_breaking_one_step_fails_verify_naming_that_step(claim_id, derivation_index, step_index):
    (claim,) = find_claims(claim_id)
    broken = _break_step(claim, derivation_index, step_index)
    result = broken.symbolic.run()
    assert result.status == "failed"
    name = claim.symbolic.derivations[derivation_index].name
    # the broken step differs from both neighbours: the failure names it or the step after it
    assert f"derivation {name!r}, step {step_index}" in result.failure or (
        f"derivation {name!r}, step {step_index + 1}" in result.failure
    )


# ----------------------------------------------------------------------------- the CLI
def test_verify_cli_json_and_exit_codes(tmp_path, capsys):
    out = tmp_path / "verify.json"
    assert (
        main(
            [
                "verify",
                "--only",
                "importance-sampling-*",
                "--seed",
                "3",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    payload = json.loads(out.read_text())
    assert payload["seed"] == 3
    for claim in payload["claims"]:
        assert claim["status"] == "verified"
        assert {"symbolic", "exact"} <= set(claim["legs"])
        assert all(leg["status"] == "verified" for leg in claim["legs"].values())
        assert claim["mutants"] and all(m["killed"] for m in claim["mutants"])
    assert "importance-sampling-unbiased" in capsys.readouterr().out
    assert main(["verify", "--only", "no-such-claim", "--quiet"]) == 2


def test_verify_cli_fails_and_says_how_to_reproduce(monkeypatch, capsys):
    import rlmath.cli.verify as cli_verify

    (claim,) = find_claims("importance-sampling-unbiased")
    broken = _break_step(claim, 0, 1)
    monkeypatch.setattr(cli_verify, "find_claims", lambda only: [broken])
    assert main(["verify", "--seed", "5", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAILED importance-sampling-unbiased" in out
    assert "step 1" in out
    assert "rlmath verify --only importance-sampling-unbiased --seed 5" in out


def test_random_point_disproof_never_fires_on_a_proved_step():
    # The shortcut that rejects mutants quickly must be sound: every step the symbolic leg
    # proves is an identity, so it may never be "disproved" at an admissible random point.
    from rlmath.symbolic import disproved_at_random_point

    for claim in load_claims():
        for derivation in claim.symbolic.derivations:
            for k in range(1, len(derivation.steps)):
                step = derivation.steps[k]
                if step.relation == "=":
                    previous = derivation.steps[k - 1].expression
                    assert not disproved_at_random_point(previous, step.expression), (
                        f"{claim.id} / {derivation.name} step {k}"
                    )


def test_generated_examples_do_not_depend_on_imported_modules(tmp_path, monkeypatch):
    # Hypothesis mixes literal constants of loaded local modules into generation; a leg's
    # examples must depend on the seed alone (else evidence differs between a checkout and a
    # wheel, or with import order).
    from rlmath.claims import draw_examples

    strategy = st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3)
    before = draw_examples(strategy, 12, seed=7)
    (tmp_path / "lots_of_constants.py").write_text(
        "VALUES = [" + ", ".join(f"{v}.123456789" for v in range(-500, 500)) + "]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("lots_of_constants")
    assert draw_examples(strategy, 12, seed=7) == before


def test_verify_cli_refuses_an_unwritable_json_path_before_running(tmp_path, capsys):
    missing = tmp_path / "no-such-folder" / "out.json"
    assert main(["verify", "--only", "importance-sampling-unbiased", "--json", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err
    assert main(["verify", "--only", "importance-sampling-unbiased", "--json", str(tmp_path)]) == 2


def test_a_leg_that_raises_becomes_a_reported_error_with_a_reproduce_line(monkeypatch, capsys):
    import rlmath.cli.verify as cli_verify

    (claim,) = find_claims("importance-sampling-unbiased")

    def explode(example):
        raise RuntimeError("boom")

    broken = replace(claim, exact=replace(claim.exact, lhs=explode))
    monkeypatch.setattr(cli_verify, "find_claims", lambda only: [broken])
    assert main(["verify", "--seed", "2", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "RuntimeError: boom" in out
    assert "rlmath verify --only importance-sampling-unbiased --seed 2" in out


def test_only_imports_just_the_proof_files_it_needs():
    import subprocess
    import sys

    code = (
        "import sys; from rlmath.verify import find_claims; find_claims('importance-sampling-*');"
        "print(sorted(m for m in sys.modules if m.startswith('rlmath_proofs.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['rlmath_proofs.importance_sampling']"


def test_the_template_proof_file_verifies():
    # proofs/_template.py is what newcomers copy: it must stay a verified claim.
    from rlmath.verify import _load_module, proofs_directory

    module = _load_module(proofs_directory() / "_template.py")
    (claim,) = module.CLAIMS
    result = verify_claim(claim, seed=0)
    assert result.verified, "\n".join(result.failures())
    assert not claim.coverage_problems()


def test_only_takes_several_patterns_separated_by_commas():
    chosen = find_claims("bonferroni-false-alarm, sample-size-*")
    assert [c.id for c in chosen] == ["bonferroni-false-alarm", "sample-size-reaches-power"]
    with pytest.raises(ValueError, match="names no claim"):
        find_claims(" , ")


def test_fail_fast_stops_at_the_first_failing_claim_and_still_fails(monkeypatch, capsys):
    import rlmath.cli.verify as cli_verify

    (claim,) = find_claims("importance-sampling-unbiased")
    broken = _break_step(claim, 0, 1)
    others = find_claims("bonferroni-false-alarm,sample-size-reaches-power")
    monkeypatch.setattr(cli_verify, "find_claims", lambda only: [broken, *others])
    assert main(["verify", "--quiet", "--jobs", "1", "--fail-fast"]) == 1
    out = capsys.readouterr().out
    assert "stopped at the first failure (--fail-fast): 1 of 3 claims run" in out
    assert "self-tests passed" in out


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_verification_workers_and_in_process_runs_use_one_blas_thread():
    # idle OpenBLAS threads busy-wait on the other worker's core (verify --jobs 2: 70.7 s ->
    # 43.4 s with one thread per worker); a pool without the initializer reports the default
    from rlmath.verify import one_blas_thread, worker_pool

    with worker_pool(1) as pool:
        assert set(pool.apply(_blas_threads)) == {1}
    with one_blas_thread():
        assert set(_blas_threads()) == {1}
