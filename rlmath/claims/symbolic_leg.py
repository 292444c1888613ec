r"""The symbolic leg: every step of every derivation proved by sympy, ties and case analyses.

What this leg checks, and how each check can fail:

- **Steps.** Each :class:`Step` is proved equal to (or, with a non-negative ``gap``, bounded
  by) the previous one by :func:`rlmath.symbolic.prove_equal`. Steps that repeat the previous
  expression (the same sympy object, or the same printed LaTeX: sympy rewrote what was written
  when it was built) are listed in the evidence as ``identical_steps``: the rule written next
  to them was never exercised.
- **Starting point.** A derivation's ``definition`` (where the claim has one) must be proved
  equal to its first step; the claim's :class:`~rlmath.claims.Statement` ties its sides to the
  first step and the conclusion of a named derivation (checked by the claim).
- **Case analyses.** A :class:`CaseAnalysis` lists regions (sympy predicates); their union must
  cover the stated domain, decided by :func:`regions_cover` (propositional over the signs of
  the atoms, which is sound); each case's parametrisation must land in its region.
- **Control.** Each derivation's conclusion, shifted by a constant, must be *refuted* at a
  random admissible point (:func:`rlmath.symbolic.refuted_at_random_point`); if it is not, the
  leg cannot tell a wrong conclusion from a right one and reports an ``"error"``.
- **Mutants.** A :class:`SymbolicMutation` replaces one derivation's conclusion. The leg
  *rejects* it (status ``"failed"``) only when a random admissible point refutes the last step
  (the mutant then is false, whatever any rewriting could do); if sympy instead proves it, the
  mutant is a true statement and survives (``"verified"``); if neither, there is no verdict
  (``"error"``: "sympy could not prove it" is not a rejection).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import sympy

from rlmath.claims.results import LegResult, error_result
from rlmath.symbolic import (
    ProverBug,
    is_nonnegative,
    negative_at_random_point,
    prove_equal,
    refuted_at_random_point,
)

__all__ = [
    "Case",
    "CaseAnalysis",
    "Derivation",
    "Relation",
    "Step",
    "SymbolicLeg",
    "SymbolicMutation",
    "perturbed",
    "refute_step",
    "regions_cover",
    "row_steps",
]

Relation = Literal["=", "<=", ">="]


# ============================================================================ steps
@dataclass(frozen=True)
class Step:
    """One line of a derivation: an expression and the rule that licenses it.

    ``relation`` relates the *previous* expression to this one, read top to bottom:
    ``">="`` means previous >= this. For an inequality, ``gap`` must be given: sympy must prove
    ``gap`` equal to the (non-negative) difference and its assumptions must show ``gap >= 0``.
    The first step of a derivation is its starting point; when the claim has a definition,
    give it as the derivation's ``definition`` and it is checked.
    """

    expression: Any
    rule: str
    relation: Relation = "="
    gap: Any = None


@dataclass(frozen=True)
class Derivation:
    """A named chain of steps; its last expression is the conclusion.

    Attributes:
        name: short name, unique within the claim ("categorical", "bernoulli", ...).
        steps: at least two steps; each is checked against the previous one.
        statement: optional LaTeX of what this derivation shows (for the docs).
        definition: optional expression the first step must be proved equal to (the
            definition the derivation starts from).
    """

    name: str
    steps: tuple[Step, ...]
    statement: str = ""
    definition: Any = None

    def __post_init__(self) -> None:
        if len(self.steps) < 2:
            raise ValueError(f"derivation {self.name!r} needs at least two steps")
        if self.steps[0].relation != "=" or self.steps[0].gap is not None:
            raise ValueError(f"derivation {self.name!r}: the first step cannot carry a relation")

    @property
    def conclusion(self) -> Any:
        return self.steps[-1].expression

    @property
    def start(self) -> Any:
        return self.steps[0].expression

    def with_conclusion(self, expression: Any) -> Derivation:
        """The same derivation with its last expression replaced (how mutants are checked)."""
        return replace(
            self, steps=(*self.steps[:-1], replace(self.steps[-1], expression=expression))
        )

    def check_step(self, index: int) -> str | None:
        """Prove step ``index`` from step ``index - 1``; return the method, or None if unproved.

        Raises:
            rlmath.symbolic.ProverBug: if a rewriting "proves" a step a random point refutes.
        """
        previous, current = self.steps[index - 1].expression, self.steps[index]
        if current.relation == "=":
            return prove_equal(previous, current.expression)
        gap = current.gap
        if gap is None:
            return None
        if current.relation == ">=":
            difference = previous - current.expression
        else:
            difference = current.expression - previous
        method = prove_equal(difference, gap)
        if method is None or not is_nonnegative(gap):
            return None
        return f"{method}; gap >= 0"


def row_steps(*chains: tuple[tuple[Any, str], ...]) -> tuple[Step, ...]:
    """Steps of a column-vector derivation: at step k every row takes its own k-th step.

    Each chain is ((expression, rule), ...) for one row; a row whose chain has ended stays. Every
    row's change is proved entry by entry (each entry of the difference must vanish), and the
    rule of the step lists the rule of each row that moved.
    """
    out = [
        Step(
            sympy.Matrix([chain[0][0] for chain in chains]),
            "; ".join(f"row {k + 1}: {c[0][1]}" for k, c in enumerate(chains)),
        )
    ]
    for index in range(1, max(len(chain) for chain in chains)):
        current = [chain[min(index, len(chain) - 1)][0] for chain in chains]
        rules = [f"row {k + 1}: {c[index][1]}" for k, c in enumerate(chains) if index < len(c)]
        out.append(Step(sympy.Matrix(current), "; ".join(rules)))
    return tuple(out)


def perturbed(expression: Any) -> Any:
    """``expression`` plus the constant 1/7 (a matrix of them for a matrix): never equal to it."""
    if isinstance(expression, sympy.MatrixBase):
        return expression + sympy.ones(*expression.shape) / 7
    return expression + sympy.Rational(1, 7)


#: Random points tried before a refutation gives up (each returns at the first that refutes).
#: A mutant can coincide with the truth at a degenerate point (a size of 1, drawn about one
#: time in five): with 3 tries, seeds 31, 43, 63, 139 and 173 of 200 drew only such points for
#: two KL claims; with 10, all ten being degenerate has probability about (1/5)^10 = 1e-7.
REFUTATION_TRIALS = 10


def refute_step(previous: Any, current: Any, relation: Relation, seed: int = 0) -> str | None:
    """A description of a random admissible point where ``previous relation current`` is false.

    For ``"="`` the two sides differ there; for ``">="`` (previous >= current) the difference
    ``previous - current`` is negative there (and symmetrically for ``"<="``). ``None``: no
    refuting point found (which proves nothing).
    """
    if relation == "=":
        found = refuted_at_random_point(previous, current, seed=seed, trials=REFUTATION_TRIALS)
    else:
        difference = previous - current if relation == ">=" else current - previous
        found = negative_at_random_point(difference, seed=seed, trials=REFUTATION_TRIALS)
    return None if found is None else str(found)


# ============================================================================ case analyses
def _sign_atoms(predicate: sympy.Basic) -> set[sympy.Expr]:
    """The expressions ``lhs - rhs`` of every relation in ``predicate``, sign-normalised."""
    out: set[sympy.Expr] = set()
    for relation in predicate.atoms(sympy.core.relational.Relational):
        out.add(_canonical(relation.lhs - relation.rhs)[0])
    return out


def _canonical(expression: sympy.Expr) -> tuple[sympy.Expr, int]:
    """(e, s) with ``expression = s * e``, the same e for ``expression`` and ``-expression``."""
    positive = sympy.expand(expression)
    negative = sympy.expand(-expression)
    if sympy.default_sort_key(negative) < sympy.default_sort_key(positive):
        return negative, -1
    return positive, 1


def _as_sign_formula(predicate: sympy.Basic, signs: Mapping[sympy.Expr, tuple[Any, Any]]) -> Any:
    """``predicate`` as a propositional formula over (positive, zero) booleans per atom."""
    if predicate is sympy.true or predicate is True:
        return sympy.true
    if predicate is sympy.false or predicate is False:
        return sympy.false
    if isinstance(predicate, sympy.core.relational.Relational):
        expression, sign = _canonical(predicate.lhs - predicate.rhs)
        positive, zero = signs[expression]
        negative = ~positive & ~zero
        if sign < 0:
            positive, negative = negative, positive
        table = {
            sympy.StrictGreaterThan: positive,
            sympy.GreaterThan: positive | zero,
            sympy.StrictLessThan: negative,
            sympy.LessThan: negative | zero,
            sympy.Equality: zero,
            sympy.Unequality: ~zero,
        }
        return table[type(predicate)]
    if isinstance(predicate, sympy.And | sympy.Or | sympy.Not):
        return predicate.func(*(_as_sign_formula(a, signs) for a in predicate.args))
    raise TypeError(f"region predicates must be And/Or/Not of relations, got {predicate!r}")


def regions_cover(domain: sympy.Basic, regions: Sequence[sympy.Basic]) -> bool:
    r"""Whether every point of ``domain`` lies in one of ``regions`` (sound, not complete).

    Each relation ``lhs ? rhs`` is reduced to the sign of ``e = lhs - rhs`` (negative, zero or
    positive, exactly one), with ``e`` and ``-e`` identified. The question "domain and no
    region" is then propositional over those signs, decided by ``sympy.satisfiable``. Treating
    the signs of different expressions as independent can only add points, so "unsatisfiable"
    proves coverage; coverage that needs arithmetic between the atoms is not found.
    """
    atoms = _sign_atoms(domain)
    for region in regions:
        atoms |= _sign_atoms(region)
    signs: dict[sympy.Expr, tuple[Any, Any]] = {}
    for k, atom in enumerate(sorted(atoms, key=sympy.default_sort_key)):
        signs[atom] = (sympy.Symbol(f"_pos{k}"), sympy.Symbol(f"_zero{k}"))
    exclusive = sympy.And(*(~(positive & zero) for positive, zero in signs.values()))
    uncovered = sympy.And(
        _as_sign_formula(domain, signs),
        sympy.Not(sympy.Or(*(_as_sign_formula(r, signs) for r in regions))),
        exclusive,
    )
    return sympy.satisfiable(uncovered) is False


@dataclass(frozen=True)
class Case:
    """One region of a case analysis and the derivation that holds there.

    Attributes:
        region: a sympy predicate in the analysis's variables (``(A > 0) & (r > 1 + eps)``).
        derivation: the derivation on this region.
        parametrisation: variable -> expression in parameters whose assumptions place the
            point inside the region (``{r: 1 + eps + rho}`` with ``rho`` positive); the region
            predicate with it substituted must simplify to ``True``.
    """

    region: Any
    derivation: Derivation
    parametrisation: Mapping[Any, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseAnalysis:
    """A statement proved region by region: the regions must cover ``domain``.

    Attributes:
        name: a name for the report.
        domain: the predicate the claim is stated on (``sympy.true`` for everything).
        cases: the regions, each with its derivation.
    """

    name: str
    domain: Any
    cases: tuple[Case, ...]

    def derivations(self) -> tuple[Derivation, ...]:
        return tuple(case.derivation for case in self.cases)

    def check(self) -> str | None:
        """``None`` if the regions cover the domain and each parametrisation lies in its region;
        else a sentence saying what is wrong."""
        if not regions_cover(self.domain, [c.region for c in self.cases]):
            return (
                f"case analysis {self.name!r}: the regions do not (provably) cover the domain "
                f"{self.domain}"
            )
        for case in self.cases:
            if not case.parametrisation:
                continue
            inside = sympy.simplify(case.region.xreplace(dict(case.parametrisation)))
            if inside is not sympy.true:
                return (
                    f"case analysis {self.name!r}, derivation {case.derivation.name!r}: the "
                    f"parametrisation {dict(case.parametrisation)} is not provably in the "
                    f"region {case.region} (got {inside})"
                )
        return None


def _says_nothing(previous: Any, current: Any) -> bool:
    """Whether a step repeats the previous expression: the same sympy object, or the same
    printed LaTeX (sympy rewrote what was written when it was built)."""
    if previous == current:
        return True
    try:
        return bool(_printed(previous) == _printed(current))
    except Exception:  # printing failed: judge by structure alone
        return False


def _printed(expression: Any) -> str:
    """The step's LaTeX as a page shows it (cached: each step is the "previous" of the next)."""
    try:
        return _printed_cached(expression)
    except TypeError:  # a mutable matrix is not hashable
        from rlmath.docs.formatting import step_latex

        return str(step_latex(expression))


@lru_cache(maxsize=4096)
def _printed_cached(expression: Any) -> str:
    from rlmath.docs.formatting import step_latex

    return str(step_latex(expression))


# ============================================================================ the leg
@dataclass(frozen=True)
class SymbolicMutation:
    """A mutant's wrong conclusion for the derivation named ``derivation``."""

    derivation: str
    conclusion: Any


@dataclass(frozen=True)
class SymbolicLeg:
    """Every step of every derivation proved by sympy; see the module docstring.

    Attributes:
        derivations: the derivations (case analyses contribute theirs through ``cases``).
        cases: case analyses whose coverage is checked; their derivations are checked like
            the others (do not list them twice).
        name: ``"symbolic"``.
        ties: (what, a, b, substitution) that must be proved equal: ``a`` with the
            ``substitution`` pairs substituted (a case's parametrisation; done when the leg
            runs), and ``b``; the claim sets them from its statement (statement lhs = first
            step, statement rhs = conclusion).
    """

    derivations: tuple[Derivation, ...]
    cases: tuple[CaseAnalysis, ...] = ()
    name: str = "symbolic"
    ties: tuple[tuple[str, Any, Any, tuple[tuple[Any, Any], ...]], ...] = ()

    def all_derivations(self) -> tuple[Derivation, ...]:
        out = list(self.derivations)
        for analysis in self.cases:
            out += analysis.derivations()
        return tuple(out)

    def derivation(self, name: str) -> Derivation:
        for derivation in self.all_derivations():
            if derivation.name == name:
                return derivation
        names = [d.name for d in self.all_derivations()]
        raise ValueError(f"no derivation {name!r}; the derivations are {names}")

    def run(self, seed: int = 0, variant: SymbolicMutation | None = None) -> LegResult:
        start = time.perf_counter()
        try:
            if variant is None:
                result = self._run_true(seed)
            else:
                result = self._run_mutant(seed, variant)
        except ProverBug as bug:
            result = LegResult("error", {"prover_bug": True}, f"prover bug: {bug}")
        except Exception as exc:  # any other crash: a defect, never a verdict
            result = error_result("the symbolic leg", exc)
        return replace(result, seconds=time.perf_counter() - start)

    def _run_true(self, seed: int) -> LegResult:
        n_steps = 0
        identical: list[str] = []
        methods: dict[str, list[str]] = {}  # the rewriting that proved each step (for the docs)
        for analysis in self.cases:
            problem = analysis.check()
            if problem is not None:
                return LegResult("failed", {"steps_checked": n_steps}, problem)
        for derivation in self.all_derivations():
            if derivation.definition is not None:
                method = prove_equal(derivation.definition, derivation.start)
                if method is None:
                    return LegResult(
                        "failed",
                        {"steps_checked": n_steps},
                        f"derivation {derivation.name!r}, step 0: sympy could not prove it equal "
                        "to the definition it starts from",
                    )
            for index in range(1, len(derivation.steps)):
                method = derivation.check_step(index)
                n_steps += 1
                step = derivation.steps[index]
                if method is None:
                    return LegResult(
                        "failed",
                        {"steps_checked": n_steps},
                        f"derivation {derivation.name!r}, step {index} ({step.rule!r}): sympy could "
                        f"not prove it {'equal to' if step.relation == '=' else step.relation} "
                        f"step {index - 1}",
                    )
                methods.setdefault(derivation.name, []).append(method)
                if _says_nothing(derivation.steps[index - 1].expression, step.expression):
                    identical.append(f"{derivation.name} step {index}: {step.rule}")
        for what, a, b, substitution in self.ties:
            if substitution:
                a = a.xreplace(dict(substitution))
            if prove_equal(a, b) is None:
                return LegResult(
                    "failed",
                    {"steps_checked": n_steps},
                    f"{what}: sympy could not prove them equal",
                )
        controls = self._controls(seed)
        evidence: dict[str, Any] = {
            "derivations": len(self.all_derivations()),
            "steps_checked": n_steps,
            "identical_steps": identical,
            "step_methods": methods,
            "case_analyses": len(self.cases),
            "statement_tied": bool(self.ties),
            "control": controls,
        }
        unrefuted = [name for name, found in controls.items() if found is None]
        if unrefuted:
            return LegResult(
                "error",
                evidence,
                "control: a perturbed conclusion was not refuted at any random point for "
                f"derivations {unrefuted}, so this leg could not reject a wrong conclusion there",
            )
        return LegResult("verified", evidence)

    def _controls(self, seed: int) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for derivation in self.all_derivations():
            last = derivation.steps[-1]
            previous = derivation.steps[-2].expression
            if last.relation == "=":
                wrong = perturbed(last.expression)
            elif last.relation == ">=":
                # previous >= previous + 1 + |conclusion| is false everywhere, and refuting it
                # needs the conclusion's value (so the control checks that it evaluates)
                wrong = previous + 1 + sympy.Abs(last.expression)
            else:
                wrong = previous - 1 - sympy.Abs(last.expression)
            out[derivation.name] = refute_step(previous, wrong, last.relation, seed)
        return out

    def _run_mutant(self, seed: int, variant: SymbolicMutation) -> LegResult:
        original = self.derivation(variant.derivation)
        mutated = original.with_conclusion(variant.conclusion)
        last = mutated.steps[-1]
        previous = mutated.steps[-2].expression
        index = len(mutated.steps) - 1
        refutation = refute_step(previous, last.expression, last.relation, seed)
        where = f"derivation {mutated.name!r}, step {index} ({last.rule!r})"
        if refutation is not None:
            return LegResult(
                "failed",
                {"refuted": refutation},
                f"{where}: refuted at a random point, {refutation}",
            )
        if mutated.check_step(index) is not None:
            return LegResult("verified", {"proved": True}, None)
        return LegResult(
            "error",
            {"refuted": None},
            f"{where}: no verdict: sympy could not prove the mutant's conclusion and no random "
            "admissible point refuted it",
        )

    @staticmethod
    def steps_of(derivations: Sequence[Derivation]) -> int:
        return sum(len(d.steps) - 1 for d in derivations)
