r"""A claim is one object: statement, derivations, legs and mutants tied together.

- The **statement** is a :class:`Statement` (sympy ``lhs``, ``relation``, ``rhs``): its LaTeX
  is *rendered* from those expressions, and the symbolic leg proves ``lhs`` equal to the first
  step and ``rhs`` equal to the conclusion of the named derivation. A plain LaTeX string is
  still accepted with a ``statement_reason`` saying why it cannot be tied (shown in reports).
- The **exact leg's rhs** is the lambdified conclusion of that derivation (``symbols`` and
  ``arguments`` on the leg); a mutant's :class:`SymbolicMutation` of the same derivation then
  gives the exact leg its wrong rhs automatically, so the two legs judge the same statement.
- Every leg is exercised by at least one mutant, and at least one mutant applies to every leg.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sympy

from rlmath.claims.exact_leg import ExactLeg, ExactVariant
from rlmath.claims.monte_carlo_leg import MonteCarloLeg, MonteCarloVariant
from rlmath.claims.results import Leg
from rlmath.claims.symbolic_leg import Relation, SymbolicLeg, SymbolicMutation

__all__ = ["Claim", "Mutant", "Statement", "lambdify"]

_LATEX_RELATION = {"=": "=", "<=": r"\le", ">=": r"\ge"}


def lambdify(symbols: Sequence[Any], expression: Any) -> Callable[..., Any]:
    """``sympy.lambdify`` to NumPy, for turning a derivation's conclusion into an exact rhs."""
    return sympy.lambdify(symbols, expression, modules="numpy")  # type: ignore[no-any-return]


def lazy_lambdify(symbols: Sequence[Any], expression: Any) -> Callable[..., Any]:
    """:func:`lambdify`, done on the first call, not when the proof file is imported (mutants
    are lambdified only when their claim is verified)."""
    cache: list[Callable[..., Any]] = []

    def function(*values: object) -> Any:
        if not cache:
            cache.append(lambdify(symbols, expression))
        return cache[0](*values)

    return function


@dataclass(frozen=True)
class Statement:
    r"""What a claim states, as sympy expressions: ``lhs relation rhs``.

    Attributes:
        lhs: the quantity the claim is about (proved equal to the derivation's first step).
        rhs: what it equals or is bounded by (proved equal to the derivation's conclusion).
        relation: ``"="``, ``"<="`` or ``">="``.
        derivation: the derivation that proves it (default: the claim's first), or the name of
            a case analysis: then each case's derivation is tied to the statement with the
            case's parametrisation substituted into ``lhs`` and ``rhs``.
        where: conditions shown after the formula (LaTeX), e.g. ``r \ge 0,\ 0 < \epsilon < 1``;
            they restate the assumptions and are not checked.
        symbol_names: LaTeX for symbols whose default rendering is unclear.
    """

    lhs: Any
    rhs: Any
    relation: Relation = "="
    derivation: str | None = None
    where: str = ""
    symbol_names: Mapping[Any, str] = field(default_factory=dict)

    def latex(self) -> str:
        from rlmath.docs.formatting import step_latex  # the printer of the derivation pages

        left = step_latex(self.lhs, self.symbol_names)
        right = step_latex(self.rhs, self.symbol_names)
        out = f"{left} {_LATEX_RELATION[self.relation]} {right}"
        if self.where:
            out += rf" \qquad ({self.where})"
        return out


@dataclass(frozen=True)
class Mutant:
    """A plausible wrong version of a claim: what it hands each leg.

    Attributes:
        id: short kebab-case id, unique within the claim ("drop-one-over-one-minus-gamma").
        description: what is wrong, in one sentence.
        symbolic: the wrong conclusion of a named derivation; when the exact leg's rhs is the
            lambdified conclusion of that derivation, it is also the exact leg's variant.
        exact: an explicit wrong right-hand side (example -> value), if the exact leg's rhs
            is explicit or the wrong statement is not a conclusion.
        monte_carlo: the wrong estimator (for :func:`~rlmath.claims.monte_carlo_leg`:
            (example, rng, n) -> terms), if the Monte-Carlo leg applies.
    """

    id: str
    description: str
    symbolic: SymbolicMutation | None = None
    exact: ExactVariant | None = None
    monte_carlo: MonteCarloVariant | Any = None

    def variants(self) -> dict[str, Any]:
        out = {"symbolic": self.symbolic, "exact": self.exact, "monte_carlo": self.monte_carlo}
        return {leg: v for leg, v in out.items() if v is not None}


def _bind_exact(exact: ExactLeg, conclusion: Any) -> ExactLeg:
    """The exact leg with ``rhs`` = the lambdified ``conclusion``."""
    if exact.arguments is None:
        return exact
    function = lazy_lambdify(list(exact.symbols), conclusion)
    arguments = exact.arguments

    def rhs(example: Any) -> Any:
        return function(*arguments(example))

    return replace(exact, rhs=rhs, bound=True)


@dataclass(frozen=True)
class Claim:
    """One identity of the theory, with its proof, evidence and mutants.

    Attributes:
        id: kebab-case id (``policy-gradient-theorem``).
        title: a short human title.
        statement: a :class:`Statement` (rendered and tied to the derivation), or LaTeX
            (display math, no ``$$``) with ``statement_reason``.
        assumptions: sentences, each one assumption.
        references: "Author(s), *Title*, year, eq./thm." strings.
        symbolic: the derivations.
        exact: the exact leg.
        mutants: at least one; each leg that applies must reject each.
        monte_carlo: the Monte-Carlo leg, where the claim is about an expectation.
        notes: conventions or remarks worth a paragraph in the docs (Markdown, may be empty).
        statement_reason: why a LaTeX-string statement is not a :class:`Statement`.
        summary: one sentence for an RL practitioner (docs).
    """

    id: str
    title: str
    statement: Statement | str
    assumptions: tuple[str, ...]
    references: tuple[str, ...]
    symbolic: SymbolicLeg
    exact: ExactLeg
    mutants: tuple[Mutant, ...]
    monte_carlo: MonteCarloLeg | None = None
    notes: str = ""
    statement_reason: str = ""
    summary: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.mutants:
            raise ValueError(f"claim {self.id!r} needs at least one mutant")
        ids = [m.id for m in self.mutants]
        if len(set(ids)) != len(ids):
            raise ValueError(f"claim {self.id!r} has duplicate mutant ids: {ids}")
        names = {d.name for d in self.symbolic.all_derivations()}
        analyses = {a.name: a for a in self.symbolic.cases}
        if isinstance(self.statement, Statement):
            known = names | set(analyses)
            if self.statement.derivation is not None and self.statement.derivation not in known:
                raise ValueError(
                    f"claim {self.id!r}: the statement names derivation "
                    f"{self.statement.derivation!r}, not one of {sorted(known)}"
                )
        elif not isinstance(self.statement, str):
            raise TypeError(f"claim {self.id!r}: statement must be a Statement or a str")
        if self.exact.derivation is not None and self.exact.derivation not in names:
            raise ValueError(
                f"claim {self.id!r}: the exact leg names derivation {self.exact.derivation!r}, "
                f"not one of {sorted(names)}"
            )
        if self.exact.rhs is None and self.exact.arguments is None:
            raise ValueError(
                f"claim {self.id!r}: the exact leg needs symbols + arguments (the lambdified "
                "conclusion) or an explicit rhs with rhs_reason"
            )
        for mutant in self.mutants:
            if not mutant.variants():
                raise ValueError(f"claim {self.id!r}, mutant {mutant.id!r} applies to no leg")
            if mutant.symbolic is not None and mutant.symbolic.derivation not in names:
                raise ValueError(
                    f"claim {self.id!r}, mutant {mutant.id!r} names derivation "
                    f"{mutant.symbolic.derivation!r}, not one of {sorted(names)}"
                )
            if mutant.monte_carlo is not None and self.monte_carlo is None:
                raise ValueError(f"claim {self.id!r}, mutant {mutant.id!r}: no monte_carlo leg")
        # Tie the parts together: the statement's sides to the derivation (to every case of a
        # case analysis, with the case's parametrisation substituted), the exact rhs to the
        # conclusion.
        ties: list[tuple[str, Any, Any]] = []
        if isinstance(self.statement, Statement):
            if self.main_derivation in analyses:
                cases = [
                    (c.derivation, dict(c.parametrisation), f" (case {c.derivation.name})")
                    for c in analyses[self.main_derivation].cases
                ]
            else:
                cases = [(self.symbolic.derivation(self.main_derivation), {}, "")]
            for derivation, substitution, where in cases:
                # the case's parametrisation is substituted when the tie is proved, not here
                # (rebuilding Min/Max under xreplace was a third of loading the proof files)
                pairs = tuple(substitution.items())
                lhs, rhs = self.statement.lhs, self.statement.rhs
                ties.append((f"statement lhs = first step{where}", lhs, derivation.start, pairs))
                ties.append(
                    (f"statement rhs = conclusion{where}", rhs, derivation.conclusion, pairs)
                )
                if self.statement.relation != self._relation_of(derivation):
                    raise ValueError(
                        f"claim {self.id!r}: the statement's relation "
                        f"{self.statement.relation!r} is not that of derivation "
                        f"{derivation.name!r} ({self._relation_of(derivation)!r})"
                    )
        object.__setattr__(self, "symbolic", replace(self.symbolic, ties=tuple(ties)))
        exact_name = self.exact.derivation or self.main_derivation
        if self.exact.relation is None:
            if self.exact.arguments is None:
                inherited = "="  # an explicit rhs states its own relation (default "=")
            elif exact_name in names:
                inherited = self._relation_of(self.symbolic.derivation(exact_name))
            elif exact_name in analyses and analyses[exact_name].cases:
                inherited = self._relation_of(analyses[exact_name].cases[0].derivation)
            else:
                inherited = "="
            relation: Relation = "="
            if inherited == "<=":
                relation = "<="
            elif inherited == ">=":
                relation = ">="
            object.__setattr__(self, "exact", replace(self.exact, relation=relation))
        if exact_name in names:
            exact_derivation = self.symbolic.derivation(exact_name)
            object.__setattr__(self, "exact", _bind_exact(self.exact, exact_derivation.conclusion))
        elif self.exact.arguments is not None:
            raise ValueError(
                f"claim {self.id!r}: the exact leg lambdifies a conclusion, but {exact_name!r} "
                "is a case analysis; name one derivation (derivation=...) or give rhs"
            )

    @staticmethod
    def _relation_of(derivation: Any) -> str:
        relations = {s.relation for s in derivation.steps[1:]} - {"="}
        if not relations:
            return "="
        if len(relations) > 1:
            return "mixed"
        # previous >= this, read top to bottom: start >= conclusion
        return str(relations.pop())

    @property
    def main_derivation(self) -> str:
        """The derivation (or case analysis) the statement, and by default the exact leg, is about."""
        if isinstance(self.statement, Statement) and self.statement.derivation is not None:
            return self.statement.derivation
        return self.symbolic.all_derivations()[0].name

    @property
    def statement_latex(self) -> str:
        """The statement's LaTeX: rendered from the sympy statement, or the given string."""
        if isinstance(self.statement, Statement):
            return self.statement.latex()
        return self.statement.strip()

    @property
    def statement_tied(self) -> bool:
        return isinstance(self.statement, Statement)

    def legs(self) -> dict[str, Leg]:
        """The legs this claim has, by name, in order symbolic, exact, monte_carlo."""
        legs: dict[str, Leg] = {"symbolic": self.symbolic, "exact": self.exact}
        if self.monte_carlo is not None:
            legs["monte_carlo"] = self.monte_carlo
        return legs

    def mutant_variants(self, mutant: Mutant) -> dict[str, Any]:
        """What ``mutant`` hands each leg, including the exact variant its conclusion implies."""
        out = mutant.variants()
        if (
            "exact" not in out
            and mutant.symbolic is not None
            and self.exact.lambdified
            and mutant.symbolic.derivation == (self.exact.derivation or self.main_derivation)
        ):
            function = lambdify(list(self.exact.symbols), mutant.symbolic.conclusion)
            arguments = self.exact.arguments
            assert arguments is not None
            out["exact"] = lambda example: function(*arguments(example))
        order = ("symbolic", "exact", "monte_carlo")
        return {leg: out[leg] for leg in order if leg in out}

    def coverage_problems(self) -> list[str]:
        """What keeps the claim from being one object whose every leg can fail.

        Legs no mutant exercises; no mutant that exercises every leg; a LaTeX statement with
        no ``statement_reason``; an explicit exact rhs with no ``rhs_reason``.
        """
        problems = []
        if not self.statement_tied and not self.statement_reason.strip():
            problems.append(
                "the statement is LaTeX text, not a Statement tied to the derivation, and "
                "gives no statement_reason"
            )
        if not self.exact.lambdified and not self.exact.rhs_reason.strip():
            problems.append(
                "the exact leg's rhs is explicit, not the lambdified conclusion, and gives no "
                "rhs_reason"
            )
        per_mutant = [set(self.mutant_variants(m)) for m in self.mutants]
        for leg in self.legs():
            if not any(leg in legs for legs in per_mutant):
                problems.append(f"no mutant applies to the {leg} leg")
        if not any(set(self.legs()) <= legs for legs in per_mutant):
            problems.append("no single mutant applies to every leg")
        return problems
