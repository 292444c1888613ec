"""The self-tests that `rlmath verify` runs pass, and each fails when its machinery is broken."""

from __future__ import annotations

import dataclasses

import pytest
import sympy as sp

from rlmath import self_test, symbolic, tolerances
from rlmath.claims import results
from rlmath.self_test import SELF_TESTS, SelfTestResult, run_self_tests


@pytest.fixture(scope="module")
def shipped() -> list[SelfTestResult]:
    return run_self_tests()


def test_every_self_test_passes_on_the_shipped_machinery(shipped):
    checks = shipped
    assert [c.name for c in checks] == [name for name, _ in SELF_TESTS]
    assert all(c.passed for c in checks), [c.detail for c in checks if not c.passed]


def _failing(name: str) -> SelfTestResult:
    (check,) = [c for c in run_self_tests() if c.name == name]
    assert not check.passed
    return check


def test_a_prover_that_forces_log_rules_fails_the_self_test(monkeypatch):
    forced = (("expand (forced)", lambda e: sp.expand(sp.expand_log(e, force=True))),)
    monkeypatch.setattr(symbolic, "REWRITINGS", forced + symbolic.REWRITINGS)
    check = _failing("prover refuses false steps")
    assert "log-product-of-reals" in check.detail


def test_a_prover_that_proves_nothing_fails_the_self_test(monkeypatch):
    monkeypatch.setattr(symbolic, "REWRITINGS", ())
    assert "is not proved" in _failing("prover proves true forms").detail


def test_a_disabled_numeric_screen_fails_the_self_test(monkeypatch):
    monkeypatch.setattr(symbolic, "_screened_out", lambda a, b: False)
    detail = _failing("numeric screen stops an unsound rewriting").detail
    assert "the numeric screen did not run" in detail


def test_an_error_counted_as_rejection_fails_the_self_test(monkeypatch):
    monkeypatch.setattr(results.LegResult, "rejected", property(lambda r: r.status != "verified"))
    assert (
        "crashing mutant counted as rejected"
        in _failing("a crash is a defect, not a rejection").detail
    )


def test_a_looser_conditioning_bound_fails_the_self_test(monkeypatch):
    monkeypatch.setattr(tolerances, "discounted_condition_number", lambda g: 1.0 / (1.0 - g))
    assert "attains" in _failing("conditioning bound attained").detail


def test_a_crashing_self_test_is_a_failure_not_a_traceback(monkeypatch):
    def broken() -> str:
        raise KeyError("boom")

    monkeypatch.setattr(self_test, "SELF_TESTS", (("broken", broken),))
    (check,) = run_self_tests()
    assert not check.passed and "KeyError" in check.detail
    assert check.to_dict()["passed"] is False


def test_the_prover_table_is_large_enough():
    assert len(self_test.PROVER_CASES) >= 15
    assert sum(true is not None for *_, true in self_test.PROVER_CASES) >= 15


def test_each_self_test_says_what_it_checked(shipped):
    for check in shipped:
        assert check.detail  # what was verified, in words (the timing is reported, not tested)


def test_an_inequality_rule_that_skips_the_sign_check_fails_the_self_test(monkeypatch):
    from rlmath.claims import symbolic_leg

    monkeypatch.setattr(symbolic_leg, "is_nonnegative", lambda gap: True)
    assert "unknown sign" in _failing("inequality steps need a non-negative gap").detail


def test_an_unsound_rewriting_behind_the_screen_fails_the_self_test(monkeypatch):
    # the 'sums' rewriting returning 0 once doit left no Sum (campaign sy-sums-returns-zero)
    def sums_to_zero(e):
        return sp.Integer(0) if e.has(sp.Sum) and not e.doit().has(sp.Sum) else e

    unsound = (("sums to zero", sums_to_zero),)
    monkeypatch.setattr(symbolic, "REWRITINGS", unsound + symbolic.REWRITINGS)
    detail = _failing("rewritings refuse false steps without the screen").detail
    assert "two-term-sum-as-one-term" in detail
    assert symbolic._screened_out is not None  # the check restored the screen


def test_a_central_difference_bound_without_rounding_fails_the_self_test(monkeypatch):
    def truncation_only(third, delta):
        m3 = max(third, delta)
        h = (3.0 * delta / m3) ** (1.0 / 3.0)
        return h, m3 * h**2 / 6.0

    monkeypatch.setattr(tolerances, "central_difference_step", truncation_only)
    assert "attains" in _failing("central-difference bound attained").detail


def test_a_reversed_inequality_fails_the_self_test(monkeypatch):
    from rlmath.claims import exact_leg

    monkeypatch.setattr(exact_leg, "violation", lambda lhs, rhs, relation: 0.0)
    assert "holds" in _failing("exact inequalities have their direction").detail


def test_a_control_content_with_one_example_fails_the_self_test(monkeypatch):
    from rlmath.claims import exact_leg

    monkeypatch.setattr(
        exact_leg.ExactLeg, "control", lambda self, seed, rhs, checked=(): {"rejected": True}
    )
    assert "accepted the shifted rhs" in _failing("exact control needs every example").detail


def test_an_untied_statement_fails_the_self_test(monkeypatch):
    from rlmath.claims import claim

    def untied(leg, **changes):  # the claim no longer hands the leg its statement's ties
        changes.pop("ties", None)
        return dataclasses.replace(leg, **changes)

    monkeypatch.setattr(claim, "replace", untied)
    assert "not caught" in _failing("statement tied to the conclusion").detail
