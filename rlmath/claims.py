r"""The claim framework: a statement, a sympy derivation, numeric legs, and mutants.

A :class:`Claim` is one identity (or inequality) of the theory. It is checked by *legs*:

- ``symbolic`` (:class:`SymbolicLeg`): one or more :class:`Derivation`\ s, each a list of
  :class:`Step`\ s; sympy must prove every step equal to (or bounded by) the previous one
  (:mod:`rlmath.symbolic`). Nothing numeric happens in this leg.
- ``exact`` (:class:`ExactLeg`): on Hypothesis-generated examples (MDPs, distributions,
  parameters), an exactly computed left-hand side is compared with the right-hand side,
  typically the derivation's conclusion turned into NumPy by ``sympy.lambdify``, within a
  tolerance derived from float64 precision (:mod:`rlmath.tolerances`).
- ``monte_carlo``: a sampled estimate compared with the exact value by a calibrated test
  (:class:`MonteCarloLeg`).

A :class:`Mutant` is a plausible *wrong* version of the claim (a dropped term, a sign flip, a
missing importance weight). It gives, for each leg that applies, the wrong ingredient: a wrong
conclusion for a derivation, a wrong right-hand side for the exact leg, a wrong estimator for
the Monte-Carlo leg. The very same check then runs with it, and must fail: that is how we know
each check can fail.

The whole framework is this file; :mod:`rlmath.verify` finds the claims in ``proofs/`` and
runs them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
import sympy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.strategies import SearchStrategy

from rlmath.statistics import Agreement, agreement
from rlmath.symbolic import disproved_at_random_point, is_nonnegative, prove_equal

__all__ = [
    "Claim",
    "Derivation",
    "ExactLeg",
    "LegResult",
    "MonteCarloLeg",
    "Mutant",
    "Step",
    "SymbolicLeg",
    "SymbolicMutation",
    "agreement_row",
    "draw_examples",
    "lambdify",
    "monte_carlo_leg",
]

Relation = Literal["=", "<=", ">="]


# ============================================================================ reproducibility
@contextmanager
def _seed_only_generation() -> Iterator[None]:
    """Make Hypothesis's examples a function of the seed (and Hypothesis's version) alone.

    Recent Hypothesis versions mix literal constants harvested from the *local* modules loaded
    in the process (not site-packages, not tests) into generation. The examples of a leg would
    then depend on which modules happen to be imported, and differ between a source checkout
    and an installed wheel, so evidence would not be reproducible from ``--seed``. While a leg
    generates examples, the local-constant pool is empty. (A private hook: on Hypothesis
    versions without it this does nothing, and there is nothing to neutralise.)
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants

        original = providers._get_local_constants
        cache = providers.CONSTANTS_CACHE
    except (ImportError, AttributeError):  # pragma: no cover - other Hypothesis versions
        yield
        return
    empty = Constants()
    providers._get_local_constants = lambda: empty
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


# ============================================================================ results
@dataclass(frozen=True)
class LegResult:
    """Outcome of one leg on the true claim or on one mutant.

    Attributes:
        status: ``"verified"`` or ``"failed"``.
        evidence: JSON-ready numbers and facts (examples run, max error, tolerance, ...).
        failure: for a failed leg, a sentence naming what failed (the step, the example).
        seconds: wall time of the leg.
    """

    status: Literal["verified", "failed"]
    evidence: Mapping[str, Any]
    failure: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "verified"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, **self.evidence}
        if self.failure is not None:
            out["failure"] = self.failure
        out["seconds"] = round(self.seconds, 3)
        return out


class Leg(Protocol):
    """What every leg offers: a name and ``run(seed, variant)``."""

    @property
    def name(self) -> str: ...

    def run(self, seed: int, variant: Any = None) -> LegResult: ...


# ============================================================================ symbolic
@dataclass(frozen=True)
class Step:
    """One line of a derivation: an expression and the rule that licenses it.

    ``relation`` relates the *previous* expression to this one, read top to bottom:
    ``">="`` means previous >= this. For an inequality, ``gap`` must be given: sympy must prove
    ``gap`` equal to the (non-negative) difference and its assumptions must show ``gap >= 0``.
    The first step of a derivation is its starting point; its rule says where it comes from
    ("definition", "by the previous lemma", ...) and is not checked against anything.
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
    """

    name: str
    steps: tuple[Step, ...]
    statement: str = ""

    def __post_init__(self) -> None:
        if len(self.steps) < 2:
            raise ValueError(f"derivation {self.name!r} needs at least two steps")
        if self.steps[0].relation != "=" or self.steps[0].gap is not None:
            raise ValueError(f"derivation {self.name!r}: the first step cannot carry a relation")

    @property
    def conclusion(self) -> Any:
        return self.steps[-1].expression

    def with_conclusion(self, expression: Any) -> Derivation:
        """The same derivation with its last expression replaced (how mutants are checked)."""
        return replace(
            self, steps=(*self.steps[:-1], replace(self.steps[-1], expression=expression))
        )

    def check_step(self, index: int) -> str | None:
        """Prove step ``index`` from step ``index - 1``; return the method, or None if unproved."""
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


@dataclass(frozen=True)
class SymbolicMutation:
    """A mutant's wrong conclusion for the derivation named ``derivation``."""

    derivation: str
    conclusion: Any


@dataclass(frozen=True)
class SymbolicLeg:
    """Every step of every derivation proved by sympy.

    A :class:`SymbolicMutation` variant replaces one derivation's conclusion; the leg then
    fails at the last step (the mutant does not follow), which is the point.
    """

    derivations: tuple[Derivation, ...]
    name: str = "symbolic"

    @staticmethod
    def _disproved(derivation: Derivation, index: int) -> bool:
        step = derivation.steps[index]
        if step.relation != "=":
            return False
        return disproved_at_random_point(derivation.steps[index - 1].expression, step.expression)

    def run(self, seed: int = 0, variant: SymbolicMutation | None = None) -> LegResult:
        start = time.perf_counter()
        derivations = self.derivations
        if variant is not None:
            names = [d.name for d in derivations]
            if variant.derivation not in names:
                raise ValueError(
                    f"mutant names derivation {variant.derivation!r}, not one of {names}"
                )
            derivations = tuple(
                d.with_conclusion(variant.conclusion) if d.name == variant.derivation else d
                for d in derivations
            )
        n_steps = 0
        methods: dict[str, list[str]] = {}
        for derivation in derivations:
            methods[derivation.name] = []
            mutated = variant is not None and derivation.name == variant.derivation
            for index in range(1, len(derivation.steps)):
                last = index == len(derivation.steps) - 1
                if mutated and last and self._disproved(derivation, index):
                    method = None  # false at an admissible point: no rewriting can prove it
                else:
                    method = derivation.check_step(index)
                n_steps += 1
                if method is None:
                    step = derivation.steps[index]
                    return LegResult(
                        "failed",
                        {"steps_checked": n_steps},
                        f"derivation {derivation.name!r}, step {index} ({step.rule!r}): sympy could "
                        f"not prove it {'equal to' if step.relation == '=' else step.relation} "
                        f"step {index - 1}",
                        time.perf_counter() - start,
                    )
                methods[derivation.name].append(method)
        return LegResult(
            "verified",
            {"derivations": len(derivations), "steps_checked": n_steps},
            None,
            time.perf_counter() - start,
        )


# ============================================================================ exact
def normwise_error(lhs: Any, rhs: Any) -> float:
    r"""$\|\ell - r\|_\infty / \max(\|\ell\|_\infty, \|r\|_\infty)$ (0 when both are 0; inf on shape mismatch)."""
    left, right = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
    if left.shape != right.shape:
        return math.inf
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        return math.inf
    scale = max(float(np.abs(left).max(initial=0.0)), float(np.abs(right).max(initial=0.0)))
    difference = float(np.abs(left - right).max(initial=0.0))
    if difference == 0.0:
        return 0.0
    return difference / scale


def absolute_error(lhs: Any, rhs: Any) -> float:
    r"""$\|\ell - r\|_\infty$ (inf on a shape mismatch or a non-finite entry)."""
    left, right = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
    if left.shape != right.shape or not (np.isfinite(left).all() and np.isfinite(right).all()):
        return math.inf
    return float(np.abs(left - right).max(initial=0.0))


def violation(lhs: Any, rhs: Any, relation: Relation) -> float:
    """How much ``lhs relation rhs`` is violated, relative to the scale (0 when it holds)."""
    if relation == "=":
        return normwise_error(lhs, rhs)
    left, right = np.asarray(lhs, dtype=np.float64), np.asarray(rhs, dtype=np.float64)
    if left.shape != right.shape and right.shape != () and left.shape != ():
        return math.inf
    excess = left - right if relation == "<=" else right - left
    scale = max(float(np.abs(left).max(initial=0.0)), float(np.abs(right).max(initial=0.0)), 1.0)
    worst = float(np.max(excess, initial=-math.inf))
    if not math.isfinite(worst) and worst != -math.inf:
        return math.inf
    return max(worst, 0.0) / scale


@dataclass(frozen=True)
class ExactLeg:
    """Both sides computed exactly on generated examples and compared.

    Attributes:
        strategy: Hypothesis strategy of examples (anything ``lhs``/``rhs`` accept).
        lhs: example -> exactly computed left-hand side (array or float).
        rhs: example -> right-hand side, usually the lambdified sympy conclusion.
        rtol: normwise relative tolerance: a float, or example -> float (for tolerances that
            depend on conditioning, e.g. ``exact_rtol(discounted_condition_number(gamma))``).
        relation: ``lhs relation rhs`` must hold (``"<="`` for inequalities).
        max_examples: examples generated per run.
        description: one sentence saying what lhs and rhs compute, for the report and docs.
        error_scale: optional example -> positive float. When given (for ``"="``), the error
            is ``max|lhs - rhs| / error_scale(example)`` instead of normwise: use it when the
            right-hand side subtracts large terms (a variance as $E[X^2] - (E X)^2$), so the
            attainable accuracy is relative to those terms, not to the (possibly zero) result.
        extra_evidence: optional ``() -> dict`` computed once on the true claim and merged
            into the evidence (e.g. a ``"table"`` of exact values that verify and the docs
            print); it must be deterministic.
    """

    strategy: SearchStrategy[Any]
    lhs: Callable[[Any], Any]
    rhs: Callable[[Any], Any]
    rtol: float | Callable[[Any], float]
    relation: Relation = "="
    max_examples: int = 40
    description: str = ""
    extra_evidence: Callable[[], Mapping[str, Any]] | None = None
    error_scale: Callable[[Any], float] | None = None
    name: str = "exact"

    def run(self, seed: int = 0, variant: Callable[[Any], Any] | None = None) -> LegResult:
        """Run on ``max_examples`` examples; a ``variant`` replaces ``rhs`` (a mutant)."""
        start = time.perf_counter()
        rhs = self.rhs if variant is None else variant
        worst = {"error": 0.0, "rtol": 0.0}
        failing: list[tuple[Any, float, float, str | None]] = []
        examples = [0]

        def check(example: Any) -> None:
            examples[0] += 1
            tolerance = self.rtol(example) if callable(self.rtol) else self.rtol
            try:
                with np.errstate(all="ignore"):  # a NaN/inf result counts as an infinite error
                    left, right = self.lhs(example), rhs(example)
                    if self.error_scale is not None and self.relation == "=":
                        error = absolute_error(left, right) / self.error_scale(example)
                    else:
                        error = violation(left, right, self.relation)
            except Exception as exc:  # any crash of either side is a failure of this example
                failing.append((example, math.inf, tolerance, f"{type(exc).__name__}: {exc}"))
                raise AssertionError from exc
            if error > tolerance:
                failing.append((example, error, tolerance, None))
                raise AssertionError
            if error >= worst["error"]:
                worst["error"], worst["rtol"] = error, tolerance

        phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if variant is None else [])
        runner = hypothesis_seed(seed)(
            settings(
                max_examples=self.max_examples,
                database=None,
                deadline=None,
                phases=phases,
                report_multiple_bugs=False,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )(given(self.strategy)(check))
        )
        try:
            with _seed_only_generation():
                runner()
        except AssertionError:
            example, error, tolerance, crash = failing[-1]
            reason = crash or f"normwise error {error:.3g} > rtol {tolerance:.3g}"
            return LegResult(
                "failed",
                {"examples": examples[0], "max_error": error, "rtol": tolerance},
                f"lhs {self.relation} rhs fails on example {example!r}: {reason}",
                time.perf_counter() - start,
            )
        evidence: dict[str, Any] = {
            "examples": examples[0],
            "max_error": worst["error"],
            "rtol": worst["rtol"],
        }
        if variant is None and self.extra_evidence is not None:
            evidence.update(self.extra_evidence())
        return LegResult("verified", evidence, None, time.perf_counter() - start)


# ============================================================================ Monte Carlo
@dataclass(frozen=True)
class MonteCarloLeg:
    """A sampled estimate compared with an exact reference by a calibrated statistical test.

    Attributes:
        check: ``(seed, estimator) -> LegResult``: draws samples with ``seed``, estimates with
            ``estimator`` (``None``: the correct one), and compares with the exact value using
            :mod:`rlmath.statistics`; the evidence holds estimate, standard error, z and samples.
        description: one sentence saying what is estimated and what it is compared with.
    """

    check: Callable[[int, Any], LegResult]
    description: str = ""
    name: str = "monte_carlo"

    def run(self, seed: int = 0, variant: Any = None) -> LegResult:
        start = time.perf_counter()
        result = self.check(seed, variant)
        return replace(result, seconds=time.perf_counter() - start)


class _Enough(BaseException):
    """Raised inside a Hypothesis run to stop drawing once enough examples are collected."""


def draw_examples(strategy: SearchStrategy[Any], count: int, seed: int) -> list[Any]:
    """``count`` examples from ``strategy``, reproducibly from ``seed`` (Hypothesis's generator).

    Hypothesis's first draws are its simplest examples, so strategies used here should exclude
    degenerate cases (a single action, say) in which no mutant can be seen.
    """
    drawn: list[Any] = []

    def collect(example: Any) -> None:
        drawn.append(example)
        if len(drawn) >= count:
            raise _Enough  # a BaseException: Hypothesis stops at once, no replay or shrinking

    try:
        with _seed_only_generation():
            hypothesis_seed(seed)(
                settings(
                    max_examples=max(count * 4, 10),
                    database=None,
                    deadline=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )(given(strategy)(collect))
            )()
    except _Enough:
        pass
    if len(drawn) < count:
        raise ValueError(
            f"the strategy produced only {len(drawn)} distinct examples, {count} asked"
        )
    return drawn


def agreement_row(example: int, result: Agreement) -> dict[str, Any]:
    """The evidence of one Monte-Carlo example: its component with the largest $|z|$.

    Keys: example, estimate, standard_error, reference, z, critical_z, components, samples,
    agrees (what ``rlmath verify`` prints and the docs tabulate).
    """
    flat_z = np.atleast_1d(np.asarray(result.z_scores, dtype=np.float64)).ravel()
    worst = int(np.argmax(np.where(np.isnan(flat_z), np.inf, np.abs(flat_z))))
    return {
        "example": example,
        "estimate": float(np.ravel(result.estimate)[worst]),
        "standard_error": float(np.ravel(result.standard_error)[worst]),
        "reference": float(np.ravel(result.reference)[worst]),
        "z": float(flat_z[worst]),
        "critical_z": float(result.critical_value),
        "components": int(flat_z.size),
        "samples": int(result.n_samples),
        "agrees": bool(result.agrees),
    }


def monte_carlo_leg(
    examples: SearchStrategy[Any],
    sample: Callable[[Any, np.random.Generator, int], Any],
    reference: Callable[[Any], Any],
    *,
    n_samples: int,
    n_examples: int = 2,
    false_alarm: float = 1e-6,
    description: str = "",
) -> MonteCarloLeg:
    r"""A Monte-Carlo leg: sampled per-sample terms tested against an exact reference.

    For each of ``n_examples`` examples drawn from ``examples`` (reproducibly from the seed),
    ``sample(example, rng, n_samples)`` returns ``[n_samples, ...]`` i.i.d. per-sample terms
    whose mean estimates ``reference(example)``; :func:`rlmath.statistics.agreement` tests
    them at false-alarm probability ``false_alarm / n_examples`` (Bonferroni across examples
    and, inside, across components), so the leg false-alarms with probability at most
    ``false_alarm``. A mutant's variant is another ``sample`` function (a wrong estimator).

    The evidence lists, per example, the estimate, standard error, reference and z of the
    component with the largest $|z|$, the number of components, and the sample count.
    """

    def check(seed: int, variant: Any) -> LegResult:
        estimator = sample if variant is None else variant
        rows = []
        passed = True
        for k, example in enumerate(draw_examples(examples, n_examples, seed)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
            with np.errstate(all="ignore"):
                terms = np.asarray(estimator(example, rng, n_samples), dtype=np.float64)
                exact = np.asarray(reference(example), dtype=np.float64)
            if not np.isfinite(terms).all():
                rows.append({"example": k, "failure": "non-finite sample terms"})
                passed = False
                continue
            result = agreement(terms, exact, false_alarm=false_alarm / n_examples, seed=[seed, k])
            rows.append(agreement_row(k, result))
            passed = passed and bool(result.agrees)
        evidence = {
            "false_alarm": false_alarm,
            "samples_per_example": n_samples,
            "examples": rows,
        }
        if passed:
            return LegResult("verified", evidence)
        bad = [r for r in rows if not r.get("agrees", False)]
        return LegResult("failed", evidence, f"estimate disagrees with the exact value: {bad[0]}")

    return MonteCarloLeg(check, description)


# ============================================================================ claim
@dataclass(frozen=True)
class Mutant:
    """A plausible wrong version of a claim.

    Attributes:
        id: short kebab-case id, unique within the claim ("drop-one-over-one-minus-gamma").
        description: what is wrong, in one sentence.
        symbolic: the wrong conclusion (:class:`SymbolicMutation`), if the symbolic leg applies.
        exact: the wrong right-hand side (example -> value), if the exact leg applies.
        monte_carlo: the wrong estimator, if the Monte-Carlo leg applies.
    """

    id: str
    description: str
    symbolic: SymbolicMutation | None = None
    exact: Callable[[Any], Any] | None = None
    monte_carlo: Any = None

    def variants(self) -> dict[str, Any]:
        out = {"symbolic": self.symbolic, "exact": self.exact, "monte_carlo": self.monte_carlo}
        return {leg: v for leg, v in out.items() if v is not None}


@dataclass(frozen=True)
class Claim:
    """One identity of the theory, with its proof, evidence and mutants.

    Attributes:
        id: kebab-case id (``policy-gradient-theorem``).
        title: a short human title.
        statement: the statement in LaTeX (display math, no ``$$``).
        assumptions: sentences, each one assumption.
        references: "Author(s), *Title*, year, eq./thm." strings.
        symbolic: the derivations.
        exact: the exact leg.
        monte_carlo: the Monte-Carlo leg, where the claim is about an expectation.
        mutants: at least one; each leg that applies must reject each.
        notes: conventions or remarks worth a paragraph in the docs (Markdown, may be empty).
    """

    id: str
    title: str
    statement: str
    assumptions: tuple[str, ...]
    references: tuple[str, ...]
    symbolic: SymbolicLeg
    exact: ExactLeg
    mutants: tuple[Mutant, ...]
    monte_carlo: MonteCarloLeg | None = None
    notes: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.mutants:
            raise ValueError(f"claim {self.id!r} needs at least one mutant")
        ids = [m.id for m in self.mutants]
        if len(set(ids)) != len(ids):
            raise ValueError(f"claim {self.id!r} has duplicate mutant ids: {ids}")
        for mutant in self.mutants:
            unknown = set(mutant.variants()) - set(self.legs())
            if unknown:
                raise ValueError(
                    f"claim {self.id!r}, mutant {mutant.id!r}: no leg {sorted(unknown)}"
                )
            if not mutant.variants():
                raise ValueError(f"claim {self.id!r}, mutant {mutant.id!r} applies to no leg")

    def legs(self) -> dict[str, Leg]:
        """The legs this claim has, by name, in order symbolic, exact, monte_carlo."""
        legs: dict[str, Leg] = {"symbolic": self.symbolic, "exact": self.exact}
        if self.monte_carlo is not None:
            legs["monte_carlo"] = self.monte_carlo
        return legs


def lambdify(symbols: Sequence[Any], expression: Any) -> Callable[..., Any]:
    """``sympy.lambdify`` to NumPy, for turning a derivation's conclusion into an exact rhs."""
    return sympy.lambdify(symbols, expression, modules="numpy")  # type: ignore[no-any-return]
