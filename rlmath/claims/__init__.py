r"""The claim framework: a statement, sympy derivations, numeric legs, and mutants.

A :class:`Claim` is one identity (or inequality) of the theory, checked by *legs*, one module
each:

- :mod:`rlmath.claims.symbolic_leg`: every step of every :class:`Derivation` proved by sympy
  (:mod:`rlmath.symbolic`), the statement tied to the derivation, case analyses that cover
  their domain;
- :mod:`rlmath.claims.exact_leg`: on Hypothesis-generated examples, an independently computed
  left-hand side against the lambdified conclusion, within a float64 tolerance
  (:mod:`rlmath.tolerances`);
- :mod:`rlmath.claims.monte_carlo_leg`: sampled estimates against the exact value under a
  calibrated test (:mod:`rlmath.statistics`).

A :class:`Mutant` is a plausible *wrong* version of the claim; each leg it applies to must
reject it *by a verdict* (:mod:`rlmath.claims.results`). Each leg also runs a built-in control
that must fail. :mod:`rlmath.claims.claim` ties the parts together,
:mod:`rlmath.claims.scaffolding` holds the pieces legs share, and :mod:`rlmath.verify` finds
the claims in ``proofs/`` and runs them.
"""

from rlmath.claims.claim import Claim, Mutant, Statement, lambdify, lazy_lambdify
from rlmath.claims.exact_leg import (
    ExactLeg,
    ExactVariant,
    absolute_error,
    normwise_error,
    violation,
)
from rlmath.claims.monte_carlo_leg import (
    MonteCarloLeg,
    MonteCarloVariant,
    agreement_row,
    monte_carlo_leg,
    shifted_control,
    worst_component,
)
from rlmath.claims.reproducibility import draw_examples, local_constants_neutralised
from rlmath.claims.results import LegResult, error_result
from rlmath.claims.scaffolding import (
    complex_step_gradient,
    detectable,
    exact_moments,
    one_slot_cache,
)
from rlmath.claims.symbolic_leg import (
    Case,
    CaseAnalysis,
    Derivation,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    regions_cover,
    row_steps,
)

__all__ = [
    "Case",
    "CaseAnalysis",
    "Claim",
    "Derivation",
    "ExactLeg",
    "ExactVariant",
    "LegResult",
    "MonteCarloLeg",
    "MonteCarloVariant",
    "Mutant",
    "Statement",
    "Step",
    "SymbolicLeg",
    "SymbolicMutation",
    "absolute_error",
    "agreement_row",
    "complex_step_gradient",
    "detectable",
    "draw_examples",
    "error_result",
    "exact_moments",
    "lambdify",
    "lazy_lambdify",
    "local_constants_neutralised",
    "monte_carlo_leg",
    "normwise_error",
    "one_slot_cache",
    "regions_cover",
    "row_steps",
    "shifted_control",
    "violation",
    "worst_component",
]
