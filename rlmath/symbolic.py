r"""Deciding, with sympy, that one step of a derivation equals (or bounds) the previous one.

What "proved" means
-------------------
:func:`prove_equal` returns the name of a rewriting for ``a == b`` only when all of this holds:

1. **Domain guards** (:func:`domain_problem` finds none), checked on the two expressions as
   written:

   - *Denominators.* Every factor of a denominator (the base of a power whose exponent is not
     provably non-negative; commuting bases only) that the assumptions do not prove non-zero
     must appear, up to sign, as a denominator factor of the *other* side too. So ``x y / y
     -> x`` is refused for a real ``y`` (the left side is undefined at ``y = 0``, the right is
     not) and proved for ``y > 0``, while ``(1 - p)^{-1}`` may stay on both sides of a step
     (along a derivation the possibly-undefined set then never changes). A summation index
     counts as an integer ``>= low`` (when the range is provably not reversed) and an
     integration variable as lying strictly between its limits. ``k + s`` is non-zero for an
     integer ``k`` and a symbol declared ``integer=False``, and ``1 - s`` for a symbol
     declared ``less_than_one`` (below): how a discount $0 < \gamma < 1$ keeps $1/(1-\gamma)$.
   - *Kinks.* A derivative of ``Abs``, ``Max``, ``Min``, ``Piecewise``, ``Heaviside``,
     ``sign`` or ``DiracDelta`` of the variable is allowed only where the point (the ``Subs``
     point around it, or every admissible value of a free variable) provably lies off the
     kink: each such function is replaced, innermost first, by the smooth branch it takes on a
     neighbourhood of the point (the sign of each argument, or of each difference of ``Max``/
     ``Min`` arguments, must be decided there, or the two arguments must be identical), and
     the rewritings see that branch. ``floor``, ``ceiling``, ``frac``, ``Mod`` and ``arg`` of
     the variable refuse the step.
   - *Non-commuting powers.* sympy differentiates ``A**n`` as if ``A`` commuted with its
     derivative (right only for ``n = -1``). Derivatives of non-commuting expressions are
     therefore expanded here by the ordered product rule, ``A**n`` as ``n`` factors and
     ``d(A^{-1}) = -A^{-1} (dA) A^{-1}``; a non-integer or variable exponent, or any other
     function of a non-commuting argument, refuses the step.

2. **A rewriting** from :data:`REWRITINGS` reduces ``a - b`` to exactly ``0``. None of them
   forces anything: logarithms and powers are expanded only where sympy's assumptions make
   the rule valid (``expand_log`` and ``expand`` without ``force``: ``log(x y) = log x +
   log y`` needs all but one factor positive, ``log(x^a) = a log x`` needs ``x > 0`` or
   ``-1 < a <= 1``), so a log of merely real or complex arguments is never split, and
   ``sqrt(x^2)``, ``(x^a)^b`` stay as they are for a real ``x``. When none succeeds and a
   symbol is declared ``less_than_one`` (a keyword sympy stores but does not reason with:
   ``Symbol("u", positive=True, less_than_one=True)`` is a number in (0, 1)), they are tried
   once more after substituting ``u = t/(1 + t)`` (``u = 1 - t`` for a real ``u < 1``) with a
   fresh ``t > 0``: a bijection onto the declared range, after which sympy knows
   ``1 - u > 0``.

3. **A numeric screen** (before any rewriting): every step (other than a literally identical
   one) is first evaluated at two random admissible points (:func:`refuted_at_random_point`):
   rationals respecting every assumption (carried at 60 digits), small integers for sizes (so
   that sums expand), random 3 x 3 rational matrices for non-commuting symbols, random smooth
   functions for undefined functions, derivatives taken after substitution. A step a point
   refutes is refused at once, before any rewriting runs: no rewriting, sound or not, can
   accept it, and sympy never spends minutes simplifying a false difference (a broken step of
   a long derivation used to cost ``simplify`` over ten minutes of CPU). So every *accepted*
   step has survived the random points; a gap that :func:`is_nonnegative` declares
   non-negative but that is negative at a point raises :class:`ProverBug` (never a silent
   "proved"). A point where evaluation fails (an unsupported construct, a singular value)
   proves nothing.

Hence a proved step ``a == b`` means: for every assignment of the symbols admitted by their
declared assumptions at which the denominators shared by both sides are non-zero, both sides
are equal (and a derivative is taken where the function is smooth), *provided* sympy's
rewritings and assumption system are correct. That proviso is what is taken on trust; the
screen samples it at a few points, it does not prove it. Also on trust: the declared
assumptions themselves (``less_than_one`` included); sympy's automatic evaluation when an
expression is built (``x*y/y`` *is* ``x`` once built, ``q(x)/q(x)`` is ``1``: nothing is left
for the guards to see); non-commuting symbols as formal matrices (an inverse written ``M**-1``
is assumed to exist); singularities other than denominators and kinks (a ``log`` or ``sqrt``
at ``0``); and ``is_nonnegative``'s one rule for integrals (see :class:`log_bound_gap`).

The prover is itself tested on every ``rlmath verify`` run (:mod:`rlmath.self_test`): a table
of false steps of the classes above (logs, powers and roots of real or complex arguments,
non-commuting powers, possibly-zero cancellations, kinks, captured summation indices) must all
be refused and their true forms proved, and a deliberately unsound rewriting must still not
accept a false step (the screen refuses it first); a failure fails the run, whatever the claims say.

For an inequality, the stated gap must be proved equal to the difference (as above) and
sympy's assumption system must declare the gap non-negative (:func:`is_nonnegative`).

The rewritings are tried cheapest first; ``simplify`` comes last because it is slow and, on
``Sum``/``IndexedBase`` expressions, sometimes fails where ``doit`` followed by ``cancel``
succeeds. The method name returned is the rewriting's, ``"derivative_rules"`` when the
guards' rewriting of derivatives alone made the two sides identical, with a suffix when the
``less_than_one`` substitution was needed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import mpmath
import sympy
from sympy.core.function import AppliedUndef
from sympy.simplify.simplify import factor_sum, sum_simplify

from rlmath.named_functions import Named

__all__ = [
    "LESS_THAN_ONE",
    "LOG_BOUND_REMAINDER",
    "MATRIX_SIZE",
    "REWRITINGS",
    "IndexSum",
    "ProverBug",
    "Refutation",
    "difference_is_zero",
    "disproved_at_random_point",
    "domain_problem",
    "is_nonnegative",
    "log_bound_gap",
    "negative_at_random_point",
    "prove_equal",
    "refuted_at_random_point",
]


class ProverBug(AssertionError):
    """A rewriting "proved" a step that a random admissible point refutes.

    Raised instead of returning a proof: the rewriting (or sympy under it) is unsound on this
    input, and the message shows the step and the refuting point.
    """


# ============================================================================ rewritings
@lru_cache(maxsize=1024)
def _integral_value(integral: sympy.Integral) -> sympy.Basic:
    return integral.doit()


@lru_cache(maxsize=4096)
def _done(e: sympy.Basic) -> sympy.Basic:
    """``e.doit()``, each integral evaluated once per process (sympy's meijerg is slow).

    Cached: every rewriting after "doit" starts from the same ``doit`` of the same
    difference, which is computed once (sympy expressions are immutable and hashable).
    """
    if e.has(sympy.Integral):
        e = e.replace(lambda x: isinstance(x, sympy.Integral), _integral_value)
    return e.doit()


def _doit(e: sympy.Basic) -> sympy.Basic:
    return _done(e)


def _expand_all(e: sympy.Basic) -> sympy.Basic:
    # no force: a log (or power) is split only where the assumptions make the rule valid
    return sympy.expand(sympy.expand_log(_done(e)))


def _doit_twice(e: sympy.Basic) -> sympy.Basic:
    # ``doit`` is not idempotent on derivatives of sums: d/d theta_k of a Sum whose summand
    # holds another Sum (a softmax normaliser) leaves Sum(... KroneckerDelta(a, k) ...)
    # unevaluated, which a second ``doit`` evaluates.
    return _done(e).doit()


def _cancel(e: sympy.Basic) -> sympy.Basic:
    return sympy.cancel(sympy.together(_done(e)))


def _piecewise(e: sympy.Basic) -> sympy.Basic:
    done = _done(e)
    if not done.has(sympy.Piecewise):
        # piecewise_fold is the identity here and "simplify" already ran on the same input
        return done
    return sympy.piecewise_fold(done).simplify()


def _rename_summation_indices(e: sympy.Basic, depth: int = 0) -> sympy.Basic:
    """Rename every summation index to ``_k<depth>`` (alpha-renaming), outermost first."""
    if isinstance(e, sympy.Sum):
        body, limits = e.function, []
        for offset, (index, low, high) in enumerate(e.limits):
            canonical = sympy.Symbol(f"_k{depth + offset}", integer=True)
            body = body.xreplace({index: canonical})
            limits.append((canonical, low, high))
        return sympy.Sum(_rename_summation_indices(body, depth + len(limits)), *limits)
    if not e.args:
        return e
    return e.func(*(_rename_summation_indices(a, depth) for a in e.args))


def _sums(e: sympy.Basic) -> sympy.Basic:
    """Split sums over their terms, pull out factors free of the index, and alpha-rename.

    ``Sum(f[i], i) - Sum(f[j], j)`` is 0 only up to renaming the bound index, which no other
    rewriting does; nested sums that become factors (``Sum(p[i] * Sum(p[j] d[j], j), i)``)
    are pulled out first so that they meet their twins at the same depth.
    """
    e = _done(e)
    if not e.has(sympy.Sum):
        return e  # nothing to rename: "expand" and "cancel" already tried the rest
    e = sympy.expand(sympy.expand_log(e))
    for _ in range(2):  # split, then factor the pieces the split exposed
        e = e.replace(lambda x: isinstance(x, sympy.Sum), lambda x: factor_sum(x.expand()))
        e = sympy.expand(e)
    return sympy.cancel(sympy.together(_rename_summation_indices(e)))


def _distribute(e: sympy.Basic) -> sympy.Basic:
    """Distribute each term one level (``a (b + c) -> a b + a c``), leaving the factors whole.

    For non-commuting symbols (matrices): ``N (x - M y)`` with ``N = M^{-1}`` becomes
    ``N x - y`` because ``N M`` meets as a product and cancels, whereas a deep ``expand``
    first expands ``M`` inside and never sees ``N M`` again.
    """
    e = _done(e)
    return sympy.Add(*(sympy.expand_mul(term, deep=False) for term in sympy.Add.make_args(e)))


def _shift_to_zero(s: sympy.Sum) -> sympy.Sum:
    (index, low, high), *rest = s.limits
    if rest or low == 0:
        return s
    return sympy.Sum(s.function.xreplace({index: index + low}), (index, 0, high - low))


def _sum_ranges(e: sympy.Basic) -> sympy.Basic:
    """Merge sums over adjacent ranges, then shift every range to start at 0.

    Proves splitting off a term (``Sum(f, (k, 0, 0)) + Sum(f, (k, 1, K)) = Sum(f, (k, 0, K))``)
    and shifting an index (``Sum(f(k), (k, 1, K)) = Sum(f(k + 1), (k, 0, K - 1))``); ``doit``
    must not run first, or the one-term sum is evaluated before it can be merged.
    """
    try:
        e = sum_simplify(e)
    except StopIteration:  # sympy's sum_add on a term without a Sum factor
        pass
    e = e.replace(lambda x: isinstance(x, sympy.Sum), _shift_to_zero)
    return sympy.cancel(sympy.together(_rename_summation_indices(sympy.expand(e))))


def _simplify(e: sympy.Basic) -> sympy.Basic:
    return sympy.simplify(_done(e))


#: (name, rewriting) pairs, tried in order until one reduces a difference to zero. None
#: forces a log or power rule (``force=True`` would split ``log(x y)`` for real ``x, y``).
REWRITINGS: tuple[tuple[str, Callable[[sympy.Basic], sympy.Basic]], ...] = (
    ("identical", lambda e: e),
    ("doit", _doit),
    ("expand", _expand_all),
    ("cancel", _cancel),
    ("doit_twice", _doit_twice),
    ("sums", _sums),
    ("distribute", _distribute),
    ("sum_ranges", _sum_ranges),
    ("simplify", _simplify),
    ("piecewise_fold", _piecewise),
)


def _is_zero(e: sympy.Basic) -> bool:
    """Whether a rewriting's result *is* the number 0 (structurally; matrices entry by entry).

    Structural, not ``e.is_zero``: the assumption system's ``is_zero`` on a large
    unevaluated difference took a fifth of all proving time (measured over the shipped
    derivations) and never decided a step that a rewriting did not also reduce to 0.
    """
    if isinstance(e, sympy.MatrixBase):
        return all(_is_zero(x) for x in e)
    return bool(e == 0)


#: Rewritings that can only help when the expression contains the given kind of object.
_NEEDS: dict[str, tuple[type, ...]] = {
    "sums": (sympy.Sum,),
    "sum_ranges": (sympy.Sum,),
    "doit_twice": (sympy.Sum, sympy.Derivative, sympy.Integral, sympy.Product),
    "piecewise_fold": (sympy.Piecewise, sympy.Min, sympy.Max, sympy.KroneckerDelta),
}

_Rewritings = tuple[tuple[str, Callable[[sympy.Basic], sympy.Basic]], ...]


@lru_cache(maxsize=4096)
def _cached_zero(difference: sympy.Basic, rewritings: _Rewritings) -> str | None:
    if isinstance(difference, sympy.MatrixBase):
        return _matrix_zero(difference, rewritings)
    for name, rewrite in rewritings:
        needs = _NEEDS.get(name)
        if needs is not None and not any(difference.has(kind) for kind in needs):
            continue  # cannot change anything: skip the (often slow) attempt
        try:
            reduced = rewrite(difference)
        except Exception:  # sympy raises many kinds (even StopIteration): "not proved this way"
            continue
        if _is_zero(reduced):
            return name
    return None


def _matrix_zero(difference: sympy.MatrixBase, rewritings: _Rewritings) -> str | None:
    """A matrix is zero when every entry is; each entry is decided (and cached) on its own.

    Entry by entry, an entry already proved (in this step or an earlier one) is not
    rewritten again, and an entry that needs "expand" does not make the others that "doit"
    proved pay for "expand" as well (a Gaussian integral costs seconds per evaluation). The
    name is that of the latest rewriting in ``rewritings`` that any entry needed, so a
    step is reported as "identical" only when every entry is.
    """
    order = {name: position for position, (name, _) in enumerate(rewritings)}
    latest = 0
    for entry in difference:
        name = _cached_zero(entry, rewritings)
        if name is None:
            return None
        latest = max(latest, order[name])
    return rewritings[latest][0]


def difference_is_zero(difference: sympy.Basic) -> str | None:
    """The name of the first rewriting in :data:`REWRITINGS` that reduces ``difference`` to 0.

    The bare rewriting search, without the domain guards or the numeric screen of
    :func:`prove_equal` (use that to decide a step). Results are cached on the (hashable,
    immutable) sympy expression and the rewritings, so a derivation checked twice in one
    process costs one check.
    """
    if isinstance(difference, sympy.MatrixBase):
        difference = sympy.ImmutableMatrix(difference)
    return _cached_zero(difference, REWRITINGS)


# ============================================================================ domain guards
class _Refused(Exception):
    """The step is outside what the prover may decide (a kink, a non-commuting power, ...)."""


#: The assumption (a sympy keyword it keeps but does not reason with) that a real symbol is
#: ``< 1``: ``Symbol("gamma", positive=True, less_than_one=True)`` is a discount in (0, 1).
LESS_THAN_ONE = "less_than_one"


def _below_one(atom: sympy.Basic) -> bool:
    return (
        isinstance(atom, sympy.Symbol)
        and atom.is_real is True
        and atom.assumptions0.get(LESS_THAN_ONE) is True
    )


def _reparametrisation(e: sympy.Basic) -> dict[sympy.Basic, sympy.Expr]:
    """``x -> t/(1 + t)`` (``0 < x < 1``) or ``x -> 1 - t`` (``x < 1``), ``t > 0``, per marked symbol.

    Each map is a bijection from ``t > 0`` onto the symbol's declared range, so an identity
    holds on the range exactly when it holds after the substitution, and sympy's assumption
    system, which cannot express ``x < 1``, then knows ``1 - x > 0``.
    """
    out: dict[sympy.Basic, sympy.Expr] = {}
    for symbol in sorted(e.free_symbols, key=sympy.default_sort_key):
        if _below_one(symbol):
            t = sympy.Symbol(f"_{symbol.name}_t", positive=True)
            out[symbol] = t / (1 + t) if symbol.is_positive else 1 - t
    return out


def _is_noninteger(e: sympy.Expr) -> bool:
    """True when ``e`` is provably not an integer (``k - s`` for an integer k, ``s`` not)."""
    if e.is_integer is False:
        return True
    if e.is_Mul and len(e.args) == 2 and e.args[0] == -1:
        return _is_noninteger(e.args[1])
    if e.is_Add:
        others = [t for t in e.args if t.is_integer is not True]
        return len(others) == 1 and _is_noninteger(others[0])
    return False


def _is_nonzero(e: sympy.Expr) -> bool:
    """Whether the assumptions prove ``e != 0`` (``None`` from sympy counts as no)."""
    if e.is_nonzero is True or (e.is_zero is False and e.is_finite is True):
        return True
    if e.is_commutative is not True:
        return False
    if _is_noninteger(e):
        return True  # 0 is an integer
    substitution = _reparametrisation(e)
    if substitution:
        return _is_nonzero(e.xreplace(substitution))
    try:
        numerator, denominator = sympy.fraction(sympy.together(e))
        if denominator.is_nonzero is not True and denominator != 1:
            return False
        return any(c.is_nonzero is True for c in (numerator, sympy.expand(numerator)))
    except Exception:  # a failed attempt is "not proved"
        return False


def _canonical_factor(e: sympy.Expr) -> sympy.Expr:
    """``e`` or ``-e``, expanded, the one without a leading minus: the same for both signs."""
    plus = sympy.expand(e)
    return -plus if plus.could_extract_minus_sign() else plus


def _zero_factors(base: sympy.Expr) -> list[sympy.Expr]:
    """The factors of a denominator ``base`` that the assumptions do not prove non-zero."""
    if _is_nonzero(base):
        return []
    factors = list(sympy.Mul.make_args(base))
    if len(factors) == 1 and base.is_polynomial() and not base.has(sympy.Sum):
        try:
            _, pieces = sympy.factor_list(base)
            factors = [piece for piece, _ in pieces]
        except Exception:  # not a polynomial sympy can factor: keep it whole
            factors = [base]
    out = []
    for factor in factors:
        if factor.is_Pow and factor.exp.is_positive is True:
            factor = factor.base
        if not factor.is_number and not _is_nonzero(factor):
            out.append(_canonical_factor(factor))
        elif factor.is_number and factor.is_zero is not False:
            out.append(factor)
    return out


def _refined_body(e: sympy.Basic) -> sympy.Basic:
    """The body of a sum or integral with its bound variable replaced by one that knows its range.

    A summation index over a range that is provably not reversed becomes ``low + j`` with an
    integer ``j >= 0``; a real integration variable between finite limits becomes
    ``low + (high - low) t / (1 + t)`` with ``t > 0`` (strictly between the limits, where the
    integrand matters).
    """
    body = e.function
    for limit in e.limits:
        if len(limit) != 3:
            continue
        var, low, high = limit
        if isinstance(e, (sympy.Sum, sympy.Product)):
            if (high - low + 1).is_nonnegative is True:
                offset = sympy.Symbol(f"_{var}_offset", integer=True, nonnegative=True)
                body = body.xreplace({var: low + offset})
        elif isinstance(e, sympy.Integral) and var.is_real and low.is_finite and high.is_finite:
            t = sympy.Symbol(f"_{var}_inside", positive=True)
            body = body.xreplace({var: low + (high - low) * t / (1 + t)})
    return body


def _denominators(e: sympy.Basic, out: set[sympy.Expr]) -> None:
    """Add to ``out`` the possibly-zero denominator factors written in ``e``."""
    if isinstance(e, sympy.MatrixBase):
        for entry in e:
            _denominators(entry, out)
        return
    if isinstance(e, (sympy.Sum, sympy.Product, sympy.Integral)):
        _denominators(_refined_body(e), out)
        for limit in e.limits:
            for bound in limit[1:]:
                _denominators(bound, out)
        return
    if isinstance(e, sympy.Pow) and e.base.is_commutative and e.exp.is_nonnegative is not True:
        out.update(_zero_factors(e.base))
    for arg in e.args:
        if isinstance(arg, sympy.Basic):
            _denominators(arg, out)


def _possibly_zero_denominators(e: sympy.Basic) -> frozenset[sympy.Expr]:
    out: set[sympy.Expr] = set()
    _denominators(e, out)
    return frozenset(out)


#: Functions with a kink (or jump) where their argument vanishes.
_KINKS = (sympy.Abs, sympy.sign, sympy.Heaviside, sympy.DiracDelta)
#: Functions whose derivative sympy gets wrong on a set the prover cannot locate: refused.
_NOT_DIFFERENTIABLE = (sympy.floor, sympy.ceiling, sympy.frac, sympy.Mod, sympy.arg)


def _depends(e: sympy.Basic, variables: Sequence[sympy.Basic]) -> bool:
    """Whether ``e`` may depend on a variable (any entry of an ``IndexedBase`` counts)."""
    for v in variables:
        if e.has(v):
            return True
        if isinstance(v, sympy.Indexed) and any(t.base == v.base for t in e.atoms(sympy.Indexed)):
            return True
    return False


def _unnamed(e: sympy.Basic) -> sympy.Basic:
    """``e`` with every :class:`~rlmath.named_functions.Named` replaced by its definition."""
    if not e.has(Named):
        return e
    return e.replace(lambda sub: isinstance(sub, Named), lambda sub: sub.expression)


def _sign_at(e: sympy.Expr) -> int | None:
    """+1 or -1 when the assumptions decide the sign of ``e``, else ``None``."""
    e = _unnamed(e)
    substitution = _reparametrisation(e)
    if substitution:
        e = sympy.together(e.xreplace(substitution))
    for candidate in (e, sympy.expand(e)):
        if candidate.is_positive is True:
            return 1
        if candidate.is_negative is True:
            return -1
    try:
        factored = sympy.factor(e)
    except Exception:  # sympy could not factor it: the sign stays undecided
        return None
    if factored.is_positive is True:
        return 1
    if factored.is_negative is True:
        return -1
    return None


def _pick_extremum(
    args: Sequence[sympy.Expr], point: Mapping[sympy.Basic, sympy.Basic], largest: bool
) -> sympy.Expr:
    """The argument of ``Max`` (``largest``) or ``Min`` that wins on a neighbourhood of ``point``."""
    distinct: list[sympy.Expr] = []
    for a in args:
        if not any(sympy.expand(a - b) == 0 for b in distinct):
            distinct.append(a)
    for candidate in distinct:
        wins = True
        for other in distinct:
            if other is candidate:
                continue
            sign = _sign_at((candidate - other).xreplace(point))
            if sign != (1 if largest else -1):
                wins = False
                break
        if wins:
            return candidate
    raise _Refused("a Max/Min of the variable is not decided on a neighbourhood of the point")


def _local_truth(
    condition: sympy.Basic, variables: Sequence[sympy.Basic], point: Mapping[sympy.Basic, Any]
) -> bool | None:
    """The constant truth value of a ``Piecewise`` condition near ``point`` (``None``: undecided)."""
    if condition in (sympy.true, True):
        return True
    if condition in (sympy.false, False):
        return False
    if not _depends(condition, variables):
        return None
    replacements: dict[sympy.Basic, sympy.Basic] = {}
    for relation in condition.atoms(sympy.core.relational.Relational):
        if not _depends(relation, variables):
            continue
        if isinstance(relation, (sympy.Eq, sympy.Ne)):
            raise _Refused("a Piecewise condition is an equation in the variable")
        sign = _sign_at((relation.lhs - relation.rhs).xreplace(point))
        if sign is None:
            raise _Refused("a Piecewise condition is not decided near the point")
        value = relation.func(sign, 0)  # the relation's truth for a difference of this sign
        replacements[relation] = sympy.true if value else sympy.false
    decided = condition.xreplace(replacements)
    decided = sympy.simplify_logic(decided) if decided not in (sympy.true, sympy.false) else decided
    if decided in (sympy.true, sympy.false):
        return bool(decided)
    raise _Refused("a Piecewise condition is not decided near the point")


def _localize(
    e: sympy.Basic, variables: Sequence[sympy.Basic], point: Mapping[sympy.Basic, sympy.Basic]
) -> sympy.Basic:
    """``e`` with every kink function of ``variables`` replaced by its branch near ``point``.

    Innermost first, so the arguments examined are smooth; raises :class:`_Refused` when a
    branch is not decided (the point may be on a kink).
    """
    if not e.args or not _depends(e, variables):
        return e
    e = _unnamed(e)  # a name is its definition: decide the kinks with the definitions
    args = [_localize(a, variables, point) for a in e.args]
    if isinstance(e, sympy.Piecewise):
        for expression, condition in args:
            truth = _local_truth(condition, variables, point)
            if truth is None:
                break
            if truth:
                return expression
        if all(not _depends(c, variables) for _, c in args):
            return e.func(*(sympy.ExprCondPair(x, c) for x, c in args))
        raise _Refused("a Piecewise of the variable is not decided near the point")
    rebuilt = e.func(*args) if any(a is not b for a, b in zip(args, e.args, strict=True)) else e
    if not isinstance(rebuilt, sympy.Basic) or not _depends(rebuilt, variables):
        return rebuilt
    if isinstance(rebuilt, (sympy.Max, sympy.Min)):
        return _pick_extremum(rebuilt.args, point, isinstance(rebuilt, sympy.Max))
    if isinstance(rebuilt, _KINKS):
        sign = _sign_at(rebuilt.args[0].xreplace(point))
        if sign is None:
            raise _Refused(f"{rebuilt.func.__name__} of the variable at a possible kink")
        if isinstance(rebuilt, sympy.Abs):
            return rebuilt.args[0] if sign > 0 else -rebuilt.args[0]
        if isinstance(rebuilt, sympy.sign):
            return sympy.Integer(sign)
        if isinstance(rebuilt, sympy.Heaviside):
            return sympy.Integer(1 if sign > 0 else 0)
        return sympy.Integer(0)  # DiracDelta away from 0
    if isinstance(rebuilt, _NOT_DIFFERENTIABLE):
        raise _Refused(f"a derivative of {rebuilt.func.__name__} of the variable")
    return rebuilt


def _nc_power_derivative(base: sympy.Expr, exponent: sympy.Basic, x: sympy.Basic) -> sympy.Expr:
    """d/dx ``base**exponent`` for a non-commuting base, by the ordered product rule."""
    if not exponent.is_Integer:
        raise _Refused("a derivative of a non-integer power of a non-commuting expression")
    n = int(exponent)
    if n < 0:
        base, derivative = base**-1, -(base**-1) * _nc_diff(base, x) * base**-1
        n = -n
    else:
        derivative = _nc_diff(base, x)
    return sympy.Add(*(base**k * derivative * base ** (n - 1 - k) for k in range(n)))


def _nc_diff(e: sympy.Basic, x: sympy.Basic) -> sympy.Expr:
    """d/dx ``e`` keeping the order of non-commuting factors (sympy's is wrong for powers)."""
    if not _depends(e, [x]):
        return sympy.Integer(0)
    if e.is_commutative:
        return sympy.diff(e, x)
    if isinstance(e, sympy.Add):
        return sympy.Add(*(_nc_diff(t, x) for t in e.args))
    if isinstance(e, sympy.Mul):
        factors = list(e.args)
        terms = []
        for i, factor in enumerate(factors):
            d = _nc_diff(factor, x)
            if d != 0:
                terms.append(sympy.Mul(*factors[:i], d, *factors[i + 1 :]))
        return sympy.Add(*terms)
    if isinstance(e, sympy.Pow):
        if _depends(e.exp, [x]):
            raise _Refused("a derivative of a non-commuting power with a variable exponent")
        return _nc_power_derivative(e.base, e.exp, x)
    if isinstance(e, (AppliedUndef, sympy.Derivative, sympy.Symbol)):
        return sympy.Derivative(e, x)
    raise _Refused(f"a derivative of {type(e).__name__} of a non-commuting argument")


def _expand_nc_derivative(d: sympy.Derivative) -> sympy.Expr:
    result = d.expr
    for variable, count in d.variable_count:
        for _ in range(int(count)):
            result = _nc_diff(result, variable)
    return result


def _prepare(e: sympy.Basic, point: Mapping[sympy.Basic, sympy.Basic] | None = None) -> Any:
    """``e`` with derivatives made safe: kinks localised, non-commuting products explicit.

    ``point`` maps variables to the values of the enclosing ``Subs``; a variable not in it is
    free, so a kink must be decided for all its admissible values. Raises :class:`_Refused`.
    """
    point = {} if point is None else point
    if isinstance(e, sympy.MatrixBase):
        return e.applyfunc(lambda entry: _prepare(entry, point))
    if not e.args or not e.has(sympy.Derivative):
        return e
    if isinstance(e, sympy.Subs):
        inner = {**point, **dict(zip(e.variables, e.point, strict=True))}
        expr = _prepare(e.expr, inner)
        return e if expr is e.expr else sympy.Subs(expr, e.variables, e.point)
    if isinstance(e, sympy.Derivative):
        expr = _prepare(e.expr, point)
        variables = [v for v, _ in e.variable_count]
        here = {v: point.get(v, v) for v in variables}
        here.update({k: v for k, v in point.items() if k not in here})
        expr = _localize(expr, variables, here)
        if not expr.is_commutative:
            return _expand_nc_derivative(sympy.Derivative(expr, *e.variable_count))
        return e if expr is e.expr else sympy.Derivative(expr, *e.variable_count)
    args = [_prepare(a, point) if isinstance(a, sympy.Basic) else a for a in e.args]
    if all(a is b for a, b in zip(args, e.args, strict=True)):
        return e
    return e.func(*args)


def _sympified(a: Any, b: Any) -> tuple[Any, Any]:
    """Both sides as sympy objects, matrices immutable (hashable, for the caches)."""
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        return sympy.ImmutableMatrix(a), sympy.ImmutableMatrix(b)
    return sympy.sympify(a), sympy.sympify(b)


def _pairs(a: Any, b: Any) -> list[tuple[Any, Any]]:
    if isinstance(a, sympy.MatrixBase):
        return list(zip(a, b, strict=True))
    return [(a, b)]


def _guarded(a: Any, b: Any) -> tuple[Any, Any] | str:
    """``a`` and ``b`` prepared for the rewritings, or why the step is refused."""
    for left, right in _pairs(a, b):
        lhs, rhs = _possibly_zero_denominators(left), _possibly_zero_denominators(right)
        for factor in sorted(lhs ^ rhs, key=sympy.default_sort_key):
            return (
                f"a denominator factor {factor} is not provably non-zero and is not shared "
                "by both sides"
            )
    try:
        return _prepare(a), _prepare(b)
    except _Refused as refused:
        return str(refused)


def domain_problem(a: Any, b: Any) -> str | None:
    """Why the step ``a == b`` is outside what :func:`prove_equal` may decide, or ``None``.

    The guards of the module docstring: a possibly-zero denominator on one side only, a
    derivative at a possible kink, a derivative of a non-commuting power that cannot be made
    a product.

    Examples:
        >>> x, y = sympy.symbols("x y", real=True)
        >>> domain_problem((x * y + y) / y, x + 1)
        'a denominator factor y is not provably non-zero and is not shared by both sides'
        >>> domain_problem(sympy.Derivative(sympy.Abs(x), x), sympy.sign(x))
        'Abs of the variable at a possible kink'
    """
    a, b = _sympified(a, b)
    if isinstance(a, sympy.MatrixBase) and a.shape != b.shape:
        return "the two matrices have different shapes"
    guarded = _guarded(a, b)
    return guarded if isinstance(guarded, str) else None


# ============================================================================ deciding steps
def prove_equal(a: sympy.Basic, b: sympy.Basic) -> str | None:
    """The rewriting that proves ``a == b`` symbolically, or ``None`` if none does.

    The step must pass the domain guards (:func:`domain_problem`), then survive evaluation at
    random admissible points (a refuted step is refused before any rewriting runs), then a
    rewriting must reduce the difference to 0 (see the module docstring for what that
    guarantees).

    Examples:
        >>> x = sympy.Symbol("x", positive=True)
        >>> prove_equal(sympy.log(x**2), 2 * sympy.log(x))
        'expand'
        >>> prove_equal(x, x + 1) is None
        True
        >>> y = sympy.Symbol("y", real=True)
        >>> prove_equal(sympy.log(y**2), 2 * sympy.log(y)) is None  # false for y < 0
        True
    """
    a, b = _sympified(a, b)
    if isinstance(a, sympy.MatrixBase) and a.shape != b.shape:
        return None
    guarded = _guarded(a, b)
    if isinstance(guarded, str):
        return None
    prepared_a, prepared_b = guarded
    if _screened_out(a, b):
        return None
    difference = prepared_a - prepared_b
    method = difference_is_zero(difference)
    substitution = _reparametrisation(difference) if method is None else {}
    if substitution:
        method = difference_is_zero(difference.xreplace(substitution))
        if method is not None:
            method += ", with x = t/(1 + t) for 0 < x < 1"
    if method == "identical" and not _is_zero(a - b):
        method = "derivative_rules"  # the kink branches and the product rule did it
    return method


def _screened_out(a: sympy.Basic, b: sympy.Basic) -> bool:
    """Whether a random admissible point refutes ``a == b`` (checked before any rewriting)."""
    if isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase):
        # entries written identically on both sides cannot refute the step: evaluate the rest
        changed = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
        if not changed:
            return False
        a = sympy.ImmutableMatrix([x for x, _ in changed])
        b = sympy.ImmutableMatrix([y for _, y in changed])
    elif a == b:
        return False
    return _refuted(a, b, 0, 2) is not None


def is_nonnegative(expression: sympy.Basic) -> bool:
    """Whether sympy's assumption system proves ``expression >= 0`` (``None`` counts as no).

    Raises:
        ProverBug: sympy declares it non-negative but it is negative at a random admissible
            point.
    """
    if isinstance(expression, sympy.MatrixBase):
        return all(is_nonnegative(x) for x in expression)
    # lazily, cheapest first: simplify is slow and raises on some Sum expressions
    for rewrite in (lambda e: e, sympy.factor, sympy.simplify):
        try:
            if rewrite(expression).is_nonnegative is True:
                break
        except (TypeError, ValueError, NotImplementedError, RecursionError, StopIteration):
            continue
    else:
        return False
    refutation = _negative_at_random_point(expression, 0, 2)
    if refutation is not None:
        raise ProverBug(f"sympy declared {expression} >= 0, but it is not: {refutation}")
    return True


# ============================================================================ random points
class _Inconclusive(Exception):
    """The expression cannot be evaluated at the point: no verdict."""


#: Side of the random matrices standing for non-commuting symbols.
MATRIX_SIZE = 3
_MAX_TERMS = 200  # a sum or product with more terms than this is not expanded
_DIGITS = 60  # working precision of the values (more inside derivatives)
_TOLERANCE = sympy.Float("1e-30", _DIGITS)  # relative
_QUADRATURE_DIGITS = 30  # of a numeric quadrature (its error estimate must be below 1e-20)
_QUADRATURE_TOLERANCE = sympy.Float("1e-12", _DIGITS)  # relative, after a numeric quadrature

#: Assumptions a drawn value must satisfy exactly as the atom does (True, False or unknown).
_FACTS = (
    "integer",
    "rational",
    "real",
    "positive",
    "negative",
    "nonnegative",
    "nonpositive",
    "zero",
    "nonzero",
    "even",
    "odd",
    "prime",
    "composite",
    "finite",
    "infinite",
    "imaginary",
    "irrational",
    "noninteger",
    "transcendental",
)


def _respects(atom: sympy.Basic, value: sympy.Basic) -> bool:
    for fact in _FACTS:
        wanted = getattr(atom, f"is_{fact}", None)
        if wanted is not None and getattr(value, f"is_{fact}", None) is not wanted:
            return False
    return not (_below_one(atom) and not value < 1)


def _random_rational(rng: random.Random, sign: int = 0) -> sympy.Rational:
    """A rational in (0, 1) (admissible for probabilities and discounts), signed if ``sign``."""
    value = sympy.Rational(rng.randint(3, 29), 31)
    if sign < 0 or (sign == 0 and rng.random() < 0.5):
        return -value
    return value


def _candidate(atom: sympy.Basic, rng: random.Random) -> sympy.Basic:
    positive = atom.is_positive or atom.is_nonnegative
    negative = atom.is_negative or atom.is_nonpositive
    if atom.is_integer:
        # sizes: 2 and 3 most often (1 and 0 are degenerate: a softmax over one action)
        sizes = (1, 2, 2, 3, 3) if atom.is_positive or atom.is_negative else (0, 1, 2, 2, 3, 3)
        magnitude = rng.choice(sizes)
        return sympy.Integer(-magnitude if negative else magnitude)
    return _random_rational(rng, 1 if positive else -1 if negative else 0)


def _random_matrix(rng: random.Random) -> sympy.ImmutableMatrix:
    return sympy.ImmutableMatrix(
        MATRIX_SIZE,
        MATRIX_SIZE,
        [sympy.Rational(rng.randint(-9, 9), rng.randint(1, 4)) for _ in range(MATRIX_SIZE**2)],
    )


_Function = Callable[[Sequence[Any]], Any]
_SMOOTH_FACTS = ("positive", "nonnegative", "negative", "nonpositive", "nonzero", "real", "finite")


def _function_kind(node: AppliedUndef) -> int:
    """+1 for a positive (or non-negative, non-zero) function, -1 for negative, 0 for real."""
    for fact in _FACTS:
        if fact not in _SMOOTH_FACTS and getattr(node, f"is_{fact}", None):
            raise _Inconclusive(f"no random function is {fact}")
    if node.is_positive or node.is_nonnegative or (node.is_nonzero and not node.is_negative):
        return 1
    if node.is_negative or node.is_nonpositive:
        return -1
    return 0


def _dot(coefficients: Sequence[Any], args: Sequence[Any]) -> Any:
    return sympy.Add(*(c * a for c, a in zip(coefficients, args, strict=True)))


def _matrix_function(rng: random.Random, k: int) -> tuple[_Function, str]:
    """A random matrix polynomial ``M0 + sum_i x_i M_i + x_1^2 Q`` (for a non-commuting function)."""
    constant, curvature = _random_matrix(rng), _random_matrix(rng)
    slopes = [_random_matrix(rng) for _ in range(k)]

    def function(args: Sequence[Any]) -> Any:
        out = constant + curvature * args[0] ** 2 if args else constant
        for slope, arg in zip(slopes, args, strict=True):
            out = out + slope * arg
        return out

    return function, f"random {MATRIX_SIZE}x{MATRIX_SIZE} matrix polynomial"


def _smooth_function(node: AppliedUndef, rng: random.Random) -> tuple[_Function, str]:
    """A random smooth function with the assumptions of ``node``, and a description of it.

    ``c0 + b.x + c exp(d.x)`` for a real function; ``s (exp(c0 + b.x) + c exp(d.x))`` with
    ``c > 0`` and ``s = +1`` (``-1``) for a positive (negative) one.
    """
    k = len(node.args)
    if not node.is_commutative:
        return _matrix_function(rng, k)
    kind = _function_kind(node)
    c0, c1, c2 = _random_rational(rng), _random_rational(rng, 1), _random_rational(rng)
    b = [_random_rational(rng) for _ in range(k)]
    d = [_random_rational(rng) for _ in range(k)]

    def body(args: Sequence[Any]) -> Any:
        if kind == 0:
            return c0 + _dot(b, args) + c2 * sympy.exp(_dot(d, args))
        return kind * (sympy.exp(c0 + _dot(b, args)) + c1 * sympy.exp(_dot(d, args)))

    xs = sympy.symbols(f"x1:{k + 1}")
    return body, str(body(xs))


@lru_cache(maxsize=65536)
def _drawn_scalar(key: str, atom: sympy.Basic) -> sympy.Basic:
    """The exact value of ``atom`` at the point ``key``, respecting its assumptions."""
    rng = random.Random(f"{key}|{sympy.srepr(atom)}")
    for _ in range(20):
        value = _candidate(atom, rng)
        if _respects(atom, value):
            return value
    raise _Inconclusive(f"no random value respects the assumptions of {atom}")


@lru_cache(maxsize=65536)
def _drawn_matrix(key: str, atom: sympy.Basic) -> sympy.ImmutableMatrix:
    return _random_matrix(random.Random(f"{key}|{sympy.srepr(atom)}"))


@lru_cache(maxsize=65536)
def _drawn_function(key: str, function: Any, nargs: int) -> tuple[_Function, str]:
    sample = function(*sympy.symbols(f"x1:{nargs + 1}", real=True))
    return _smooth_function(sample, random.Random(f"{key}|{function}|{nargs}"))


class _Point:
    """A random admissible point, drawn lazily: a value per atom, a function per function.

    Each value depends only on the point's ``key`` and the atom (not on what else was drawn),
    so an expression has one value per point however it is reached, and can be cached.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        # what was drawn, per atom; printed only once, by :meth:`printed_labels`
        self.drawn: dict[Any, Any] = {}

    def scalar(self, atom: sympy.Basic, digits: int) -> Any:
        value = _drawn_scalar(self.key, atom)
        self.drawn[atom] = value
        return _at_precision(value, digits)

    def matrix(self, atom: sympy.Basic) -> Any:
        self.drawn[atom] = f"random {MATRIX_SIZE}x{MATRIX_SIZE} rational matrix"
        return _drawn_matrix(self.key, atom)

    def function(self, node: AppliedUndef) -> _Function:
        function, description = _drawn_function(self.key, node.func, len(node.args))
        self.drawn[node.func] = description
        return function

    def printed_labels(self) -> tuple[tuple[str, str], ...]:
        """``(atom, value)`` as text, sorted: what a refutation reports of the point."""
        return tuple(sorted({str(atom): str(value) for atom, value in self.drawn.items()}.items()))


@lru_cache(maxsize=65536)
def _at_precision(value: sympy.Basic, digits: int) -> sympy.Basic:
    """An exact integer as it is; any other drawn value as a Float of ``digits`` digits."""
    return value if value.is_Integer else sympy.Float(value, digits)


@lru_cache(maxsize=65536)
def _indexed_atom(base: sympy.IndexedBase, indices: tuple[sympy.Integer, ...]) -> sympy.Indexed:
    """``base[indices]`` (building an ``Indexed`` runs sympy's assumptions: built once)."""
    return sympy.Indexed(base, *indices)


def _describe(labels: Mapping[str, str]) -> str:
    items = [f"{name}={value}" for name, value in sorted(labels.items())]
    if len(items) > 12:
        items = items[:12] + [f"... ({len(items) - 12} more)"]
    return ", ".join(items)


def _is_matrix(value: Any) -> bool:
    return isinstance(value, sympy.MatrixBase)


def _scalar(value: Any) -> Any:
    if _is_matrix(value):
        raise _Inconclusive("a matrix where a scalar is needed")
    return value


def _add(values: Sequence[Any]) -> Any:
    total = sympy.Add(*(v for v in values if not _is_matrix(v)))
    matrices = [v for v in values if _is_matrix(v)]
    if not matrices:
        return total
    out = matrices[0]
    for m in matrices[1:]:
        out = out + m
    if total != 0:
        if out.rows != out.cols:
            raise _Inconclusive("a scalar added to a non-square matrix")
        out = out + total * sympy.eye(out.rows)
    return out


def _mul(values: Sequence[Any]) -> Any:
    scalar: Any = sympy.Integer(1)
    matrix: Any = None
    for v in values:
        if _is_matrix(v):
            matrix = v if matrix is None else matrix * v
        else:
            scalar = scalar * v
    if matrix is None:
        return scalar
    return matrix if scalar == 1 else scalar * matrix


def _power(base: Any, exponent: Any) -> Any:
    exponent = _scalar(exponent)
    if not _is_matrix(base):
        return sympy.Pow(base, exponent)
    if not (isinstance(exponent, sympy.Basic) and exponent.is_Integer):
        raise _Inconclusive("a non-integer power of a matrix")
    if exponent < 0:
        if base.det() == 0:
            raise _Inconclusive("a singular matrix inverted")
        return base.inv() ** int(-exponent)
    return base ** int(exponent)


def _integer_bound(value: Any) -> int:
    value = _scalar(value)
    if not (isinstance(value, sympy.Basic) and value.is_Integer):
        raise _Inconclusive("a bound that is not an integer at the point")
    return int(value)


def _karr_range(low: int, high: int) -> tuple[range, bool]:
    """The indices of sympy's (Karr's) sum from ``low`` to ``high``, and whether it is negated."""
    if high >= low - 1:
        return range(low, high + 1), False
    return range(high + 1, low), True


def _mp_limit(value: Any) -> Any:
    value = _scalar(value)
    if value == sympy.oo:
        return mpmath.inf
    if value == -sympy.oo:
        return -mpmath.inf
    if not value.is_number:
        raise _Inconclusive("an integral limit that is not a number")
    return mpmath.mpmathify(sympy.N(value, 45))


def _stencil(order: int) -> tuple[list[int], list[sympy.Rational]]:
    """Offsets and weights of the central difference for the ``order``-th derivative."""
    half = order // 2 + 1
    offsets = list(range(-half, half + 1))
    weights = sympy.finite_diff_weights(order, offsets, 0)[order][-1]
    return offsets, list(weights)


class _Evaluator:
    """Evaluates a sympy expression at a :class:`_Point`.

    Values are numbers (integers exact, the rest floats of ``digits`` significant digits) or
    matrices of them. A derivative of order ``k`` is a central finite difference with step
    ``10^-(digits/2 + 2)`` whose terms are evaluated with ``k (digits/2 + 2)`` more digits, so
    that neither the truncation nor the rounding error reaches the working precision. The
    variable of an integral stays a symbol (``kept``) until the numeric quadrature.
    """

    def __init__(self, point: _Point, digits: int = _DIGITS) -> None:
        self.point = point
        self.digits = digits
        self.approximate = False  # a numeric quadrature happened: use the looser tolerance

    def value(self, e: Any, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        if isinstance(e, sympy.MatrixBase):
            return sympy.ImmutableMatrix(
                e.rows, e.cols, [_scalar(self.value(x, env, kept)) for x in e]
            )
        if not isinstance(e, sympy.Basic):
            return sympy.sympify(e)
        if e in env:
            return env[e]
        if e.is_Number or isinstance(e, sympy.NumberSymbol) or e is sympy.I:
            return e
        if isinstance(e, sympy.Symbol):
            if e in kept:
                return e
            return self.point.scalar(e, self.digits) if e.is_commutative else self.point.matrix(e)
        handler = _HANDLERS.get(type(e))
        if handler is None:
            handler = next((h for kind, h in _HANDLERS.items() if isinstance(e, kind)), None)
        if handler is not None:
            return handler(self, e, env, kept)
        return self._generic(e, env, kept)

    def _indexed(self, e: sympy.Indexed, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        atom = self._concrete(e, env, kept)
        if atom in env:
            return env[atom]
        if not atom.is_commutative:
            return self.point.matrix(atom)
        return self.point.scalar(atom, self.digits)

    def _concrete(self, e: sympy.Basic, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        """A derivative variable, or an ``Indexed`` with its base and indices evaluated."""
        if isinstance(e, sympy.Symbol):
            return e
        if isinstance(e, sympy.Indexed):
            base = env.get(e.base, e.base)
            if not isinstance(base, sympy.IndexedBase):
                raise _Inconclusive(f"the base of {e} is not an IndexedBase at the point")
            indices = [_scalar(self.value(i, env, kept)) for i in e.indices]
            if any(not (isinstance(i, sympy.Basic) and i.is_Integer) for i in indices):
                raise _Inconclusive(f"the indices of {e} are not integers at the point")
            return _indexed_atom(base, tuple(indices))
        raise _Inconclusive(f"a derivative with respect to {e}")

    def _idx(self, e: sympy.Idx, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        return self.value(e.label, env, kept)

    def _undefined(self, e: AppliedUndef, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        args = [_scalar(self.value(a, env, kept)) for a in e.args]
        return self.point.function(e)(args)

    def _derivative(self, e: sympy.Derivative, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        pairs = [(self._concrete(v, env, kept), int(c)) for v, c in e.variable_count]
        if any(v in kept for v, _ in pairs):
            raise _Inconclusive("a derivative with respect to an integration variable")
        return self._difference(e.expr, pairs, dict(env), kept)

    def _difference(
        self,
        expr: sympy.Basic,
        pairs: Sequence[tuple[Any, int]],
        env: dict[Any, Any],
        kept: frozenset[Any],
    ) -> Any:
        """The mixed derivative of ``expr`` over ``pairs`` at ``env``, by central differences."""
        if not pairs:
            return self.value(expr, env, kept)
        (variable, order), rest = pairs[0], pairs[1:]
        centre = _scalar(env[variable] if variable in env else self.value(variable, env, kept))
        outer_digits = self.digits
        step_digits = outer_digits // 2 + 2
        step = sympy.Float(sympy.Rational(1, 10**step_digits), outer_digits)
        self.digits = outer_digits + order * step_digits
        try:
            centre = sympy.Float(centre, self.digits)
            terms = []
            for offset, weight in zip(*_stencil(order), strict=True):
                if weight == 0:
                    continue
                shifted = {**env, variable: centre + offset * step}
                terms.append(_mul([weight, self._difference(expr, rest, shifted, kept)]))
        finally:
            self.digits = outer_digits
        return _mul([_add(terms), step**-order])

    def _subs(self, e: sympy.Subs, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        inner = dict(env)
        for variable, point in zip(e.variables, e.point, strict=True):
            if isinstance(variable, sympy.IndexedBase) and isinstance(point, sympy.IndexedBase):
                inner[variable] = env.get(point, point)  # a renamed sequence
            elif isinstance(variable, sympy.Symbol):
                inner[variable] = self.value(point, env, kept)
            else:
                raise _Inconclusive(f"a substitution for {variable}")
        return self.value(e.expr, inner, kept - frozenset(e.variables))

    def _sum(
        self, e: sympy.Sum | sympy.Product, env: Mapping[Any, Any], kept: frozenset[Any]
    ) -> Any:
        *inner_limits, limit = e.limits
        if len(limit) != 3:
            raise _Inconclusive("an indefinite sum")
        index, low, high = limit
        body = e.func(e.function, *inner_limits) if inner_limits else e.function
        indices, negated = _karr_range(
            _integer_bound(self.value(low, env, kept)), _integer_bound(self.value(high, env, kept))
        )
        if len(indices) > _MAX_TERMS:
            raise _Inconclusive("too many terms to expand")
        inner_kept = kept - {index}
        terms = [self.value(body, {**env, index: sympy.Integer(k)}, inner_kept) for k in indices]
        if isinstance(e, sympy.Product):
            total = _mul(terms)
            return _power(total, -1) if negated else total
        total = _add(terms)
        return -total if negated else total

    def _integral(self, e: sympy.Integral, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        *inner_limits, limit = e.limits
        if len(limit) != 3:
            raise _Inconclusive("an indefinite integral")
        var, low, high = limit
        body_expr = e.func(e.function, *inner_limits) if inner_limits else e.function
        bounds = [_mp_limit(self.value(b, env, kept)) for b in (low, high)]
        inner_env = {k: v for k, v in env.items() if k != var}
        body = _scalar(self.value(body_expr, inner_env, kept | {var}))
        if body.free_symbols - {var}:
            raise _Inconclusive("an integrand with symbols left")
        function = sympy.lambdify(var, body, modules="mpmath")
        with mpmath.workdps(_QUADRATURE_DIGITS):
            value, error = mpmath.quad(function, bounds, error=True)
            if not mpmath.isfinite(value) or error > mpmath.mpf("1e-20") * max(1, abs(value)):
                raise _Inconclusive("numeric quadrature did not converge")
            z = mpmath.mpc(value)
        self.approximate = True
        return sympy.Float(z.real, _QUADRATURE_DIGITS) + sympy.I * sympy.Float(
            z.imag, _QUADRATURE_DIGITS
        )

    def _add_node(self, e: sympy.Add, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        return _add([self.value(a, env, kept) for a in e.args])

    def _mul_node(self, e: sympy.Mul, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        return _mul([self.value(a, env, kept) for a in e.args])

    def _pow_node(self, e: sympy.Pow, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        return _power(self.value(e.base, env, kept), self.value(e.exp, env, kept))

    def _refuse(self, e: sympy.Basic, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        raise _Inconclusive(f"cannot evaluate {type(e).__name__}")

    def _generic(self, e: sympy.Basic, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        if not e.args:
            if e.free_symbols:
                raise _Inconclusive(f"an unknown atom {e}")
            return e
        out = e.func(*(_scalar(self.value(a, env, kept)) for a in e.args))
        if isinstance(out, sympy.Function) and not type(out).__module__.startswith("sympy"):
            out = out.doit(deep=False)  # a project function (log_bound_gap): its definition
        return out


_Handler = Callable[[_Evaluator, Any, Mapping[Any, Any], frozenset[Any]], Any]
#: Evaluation per node type, most specific first (``IndexSum`` is a ``Sum``).
_HANDLERS: dict[type, _Handler] = {
    sympy.Indexed: _Evaluator._indexed,
    sympy.Idx: _Evaluator._idx,
    AppliedUndef: _Evaluator._undefined,
    sympy.Derivative: _Evaluator._derivative,
    sympy.Subs: _Evaluator._subs,
    sympy.Sum: _Evaluator._sum,
    sympy.Product: _Evaluator._sum,
    sympy.Integral: _Evaluator._integral,
    sympy.Add: _Evaluator._add_node,
    sympy.Mul: _Evaluator._mul_node,
    sympy.Pow: _Evaluator._pow_node,
    sympy.IndexedBase: _Evaluator._refuse,
    sympy.Lambda: _Evaluator._refuse,
    sympy.Limit: _Evaluator._refuse,
    sympy.Order: _Evaluator._refuse,
    sympy.MatrixExpr: _Evaluator._refuse,
}


@dataclass(frozen=True)
class Refutation:
    """A random admissible point where two expressions differ, for a report.

    Attributes:
        point: the values drawn, ``"n=2, p[2]=3/31, A=random 3x3 rational matrix, ..."``.
        lhs: the left side's value there (the worst entry, for a matrix), as a short string.
        rhs: the right side's value there.
        difference: ``|lhs - rhs|`` (the largest over the entries).
    """

    point: str
    lhs: str
    rhs: str
    difference: float

    def __str__(self) -> str:
        return f"refuted at {self.point}: lhs={self.lhs}, rhs={self.rhs}"


def _entries(value: Any, like: Any) -> list[Any]:
    """The entries of ``value``, a scalar promoted to ``c I`` to compare with a square matrix."""
    if _is_matrix(value):
        return list(value)
    if _is_matrix(like):
        if like.rows != like.cols:
            raise _Inconclusive("a scalar compared with a non-square matrix")
        return list(value * sympy.eye(like.rows))
    return [value]


def _number(e: Any) -> Any:
    n = sympy.N(e, _DIGITS)
    if not n.is_number or n.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        raise _Inconclusive("not a finite number at the point")
    return n


def _compare(lhs: Any, rhs: Any, approximate: bool, point: str) -> Refutation | None:
    left, right = _entries(lhs, rhs), _entries(rhs, lhs)
    if len(left) != len(right):
        raise _Inconclusive("shapes differ")
    worst: tuple[Any, Any, Any] | None = None
    scale = sympy.Integer(1)
    for a, b in zip(left, right, strict=True):
        na, nb = _number(a), _number(b)
        gap = sympy.Abs(_number(na - nb))
        scale = sympy.Max(scale, 1 + sympy.Abs(na) + sympy.Abs(nb))
        if worst is None or gap > worst[0]:
            worst = (gap, na, nb)
    if worst is None:
        return None
    tolerance = _QUADRATURE_TOLERANCE if approximate else _TOLERANCE
    gap, na, nb = worst
    if gap <= tolerance * scale:
        return None
    return Refutation(point, str(sympy.N(na, 8)), str(sympy.N(nb, 8)), float(gap))


_Evaluated = tuple[Any, bool, tuple[tuple[str, str], ...]]


@lru_cache(maxsize=8192)
def _evaluated(e: Any, key: str) -> _Evaluated | None:
    """(value, whether a quadrature was used, labels of the atoms drawn) at point ``key``."""
    point = _Point(key)
    evaluator = _Evaluator(point)
    try:
        if isinstance(e, sympy.Basic) and e.has(sympy.UnevaluatedExpr):
            # UnevaluatedExpr only stops construction-time rewriting: its value is its argument
            e = e.replace(lambda x: isinstance(x, sympy.UnevaluatedExpr), lambda x: x.args[0])
        value = evaluator.value(e, {}, frozenset())
    except Exception:  # anything sympy cannot evaluate is inconclusive
        return None
    return value, evaluator.approximate, point.printed_labels()


def _refute_once(a: Any, b: Any, key: str) -> Refutation | None:
    left, right = _evaluated(a, key), _evaluated(b, key)
    if left is None or right is None:
        return None
    labels = dict(left[2]) | dict(right[2])
    try:
        return _compare(left[0], right[0], left[1] or right[1], _describe(labels))
    except Exception:  # a value that is not a finite number: inconclusive
        return None


@lru_cache(maxsize=4096)
def _refuted(a: Any, b: Any, seed: int, trials: int) -> Refutation | None:
    for trial in range(trials):
        found = _refute_once(a, b, f"{seed}/{trial}")
        if found is not None:
            return found
    return None


@lru_cache(maxsize=4096)
def _negative_at_random_point(e: Any, seed: int, trials: int) -> Refutation | None:
    """A random admissible point where ``e`` is clearly negative or not real, or ``None``."""
    for trial in range(trials):
        evaluated = _evaluated(e, f"{seed}/{trial}")
        if evaluated is None or _is_matrix(evaluated[0]):
            continue
        try:
            n = _number(evaluated[0])
        except _Inconclusive:
            continue
        tolerance = (_QUADRATURE_TOLERANCE if evaluated[1] else _TOLERANCE) * (1 + sympy.Abs(n))
        real, imaginary = sympy.re(n), sympy.im(n)
        if real < -tolerance or sympy.Abs(imaginary) > tolerance:
            return Refutation(
                _describe(dict(evaluated[2])), str(sympy.N(n, 8)), ">= 0", float(-real)
            )
    return None


def negative_at_random_point(e: Any, *, seed: int = 0, trials: int = 3) -> Refutation | None:
    """A random admissible point where ``e`` is clearly negative (or not real), or ``None``.

    Refutes an inequality ``e >= 0`` the way :func:`refuted_at_random_point` refutes an
    equation (same points, same tolerance); ``None`` proves nothing.

    Examples:
        >>> x = sympy.Symbol("x", positive=True)
        >>> negative_at_random_point(x - 2) is not None  # x in (0, 1)
        True
        >>> negative_at_random_point(x**2) is None
        True
    """
    if isinstance(e, sympy.Basic) and e.has(sympy.UnevaluatedExpr):
        e = e.replace(lambda x: isinstance(x, sympy.UnevaluatedExpr), lambda x: x.args[0])
    return _negative_at_random_point(sympy.sympify(e), seed, trials)


def refuted_at_random_point(a: Any, b: Any, *, seed: int = 0, trials: int = 3) -> Refutation | None:
    """A random admissible point where ``a`` and ``b`` clearly differ, or ``None``.

    Every step proved here is an identity for *all* values the symbols' assumptions admit, so
    a point where the two sides differ shows that no sound rewriting can prove ``a == b``.
    ``None`` proves nothing (no refuting point among ``trials`` tries, or evaluation failed).

    The point: integer symbols (sizes, indices) get small values (1 to 3 when positive, else
    0 to 3, mostly 2 and 3) so that sums and products with symbolic bounds expand (with
    sympy's convention for reversed ranges); other symbols and ``IndexedBase`` entries get rationals in (-1, 1),
    or (0, 1) when non-negative, each checked against every assumption the atom has
    (including ``less_than_one``); non-commuting symbols get random 3 x 3 rational matrices
    (a scalar ``c`` is ``c I``); undefined functions get random smooth functions with their
    assumptions (``c0 + b.x + c exp(d.x)``, or ``exp(c0 + b.x) + c exp(d.x)`` with ``c > 0``
    for a positive one; a matrix polynomial for a non-commuting one). Each value depends
    only on ``seed``, the trial and the atom. Everything is substituted first, then
    evaluated with 60 significant digits: ``Subs`` at its point, derivatives by central
    differences carried at higher precision (error far below the tolerance), integrals by
    quadrature at 30 digits. The two sides are refuted when they differ by more than
    ``1e-30`` (``1e-12`` after a quadrature) times ``1 + |lhs| + |rhs|`` (entrywise for
    matrices, worst entry reported).

    Examples:
        >>> x = sympy.Symbol("x", positive=True)
        >>> refuted_at_random_point(sympy.log(x**2), 2 * sympy.log(x)) is None
        True
        >>> A, B = sympy.symbols("A B", commutative=False)
        >>> refuted_at_random_point(A * B, B * A) is not None
        True
    """
    a, b = _sympified(a, b)
    return _refuted(a, b, seed, trials)


def disproved_at_random_point(
    a: sympy.Basic, b: sympy.Basic, *, trials: int = 2, seed: int = 0
) -> bool:
    """True when :func:`refuted_at_random_point` finds a point where ``a != b``.

    Kept for callers that only need the verdict; ``False`` means "inconclusive".

    Examples:
        >>> x = sympy.Symbol("x", positive=True)
        >>> disproved_at_random_point(sympy.log(x**2), 2 * sympy.log(x))
        False
        >>> disproved_at_random_point(x**2, x)
        True
    """
    return refuted_at_random_point(a, b, seed=seed, trials=trials) is not None


# ============================================================================ shared objects
class IndexSum(sympy.Sum):  # type: ignore[misc]
    r"""$\sum_{i=0}^{n-1} f_i$ over ``IndexedBase`` terms, simplified term by term only.

    ``Sum.doit`` tries closed forms (Gosper's algorithm, hypergeometric terms) that cannot
    exist for an arbitrary sequence ``f[i]`` and cost seconds per sum; this sum evaluates only
    inside its terms, or expands term by term once its bounds are numbers. Otherwise it
    prints, differentiates and compares as ``Sum``.
    """

    def doit(self, **hints: object) -> sympy.Expr:
        if all(low.is_Integer and high.is_Integer for _, low, high in self.limits):
            return sympy.Sum(self.function, *self.limits).doit(**hints)
        function = self.function.doit(**hints) if hints.get("deep", True) else self.function
        return self.func(function, *self.limits)


_x = sympy.Symbol("x", positive=True)
_s = sympy.Symbol("s", nonnegative=True)
_v = sympy.Symbol("v", positive=True)

#: $(x-1)^2 (1-s) / (1 + (x-1)s)^2$: Taylor's integral remainder of $x - 1 - \log x$, so that
#: $x - 1 - \log x = \int_0^1$ of it $ds$ (lemma ``log-bound`` in ``proofs/kl_divergence.py``).
LOG_BOUND_REMAINDER = (_x - 1) ** 2 * (1 - _s) / (1 + (_x - 1) * _s) ** 2


class log_bound_gap(sympy.Function):  # type: ignore[misc]  # noqa: N801 (sympy style)
    r"""$g(x) = x - 1 - \log x$, which is $\ge 0$ for $x > 0$ (lemma ``log-bound``).

    sympy's assumption system learns $g(x) \ge 0$ from the lemma's last integral: for $x > 0$
    it asks sympy whether :data:`LOG_BOUND_REMAINDER` is non-negative at $s = v / (1 + v)$,
    $v > 0$ (every $s \in (0, 1)$), and an integral over $[0, 1]$ of a non-negative integrand
    is non-negative (the one rule taken on trust). ``doit`` rewrites $g$ to its definition,
    which is how steps using it are checked.
    """

    nargs = 1

    def doit(self, deep: bool = True, **hints: object) -> sympy.Expr:
        (arg,) = self.args
        if deep:
            arg = arg.doit(deep=deep, **hints)
        return arg - 1 - sympy.log(arg)

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_positive or None

    def _eval_is_finite(self) -> bool | None:
        return self.args[0].is_positive or None

    def _eval_is_extended_nonnegative(self) -> bool | None:
        (arg,) = self.args
        if arg.is_positive is not True:
            return None
        inside = LOG_BOUND_REMAINDER.subs(_s, _v / (1 + _v)).subs(_x, arg)
        return sympy.factor(sympy.cancel(inside)).is_nonnegative or None
