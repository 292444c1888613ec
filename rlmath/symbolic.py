r"""Deciding, with sympy, that one step of a derivation equals (or bounds) the previous one.

What "proved" means
-------------------
:func:`prove_equal` returns the name of a rewriting for ``a == b`` only when all of this holds:

1. **Domain guards** (:func:`domain_problem` finds none), checked on the two expressions as
   written:

   - *Denominators.* Every factor of a denominator (the base of a power whose exponent is not
     provably non-negative, commuting bases only) that the symbols' assumptions do not prove
     non-zero must appear, up to sign, as a denominator factor of the *other* side too. So
     ``x y / y -> x`` is refused for a real ``y`` (the left side is undefined at ``y = 0``, the
     right is not), proved for ``y > 0``, and ``(1 - p)^{-1}`` may stay on both sides of a step.
     A summation index counts as an integer ``>= low`` (when the range is provably not
     reversed) and an integration variable as lying strictly between its limits; a symbol
     declared ``integer=False`` makes ``k + s`` non-zero for an integer ``k`` (how a discount
     $0 < \gamma < 1$ keeps $1/(1 - \gamma)$ legal).
   - *Kinks.* A derivative of ``Abs``, ``Max``, ``Min``, ``Piecewise``, ``Heaviside``,
     ``sign`` or ``DiracDelta`` of the variable is allowed only where the point (the ``Subs``
     point around it, or every admissible value of a free variable) provably lies off the
     kink: each such function is replaced, innermost first, by the smooth branch it takes on a
     neighbourhood of the point (the sign of each argument, or of each difference of ``Max``/
     ``Min`` arguments, must be decided there, or the two arguments must be identical).
     ``floor``, ``ceiling``, ``frac``, ``Mod`` and ``arg`` of the variable refuse the step.
   - *Non-commuting powers.* sympy differentiates ``A**n`` as if ``A`` commuted with its
     derivative (right only for ``n = -1``). Derivatives of non-commuting expressions are
     therefore expanded here by the ordered product rule, ``A**n`` as ``n`` factors and
     ``d(A^{-1}) = -A^{-1} (dA) A^{-1}``; a non-integer or variable exponent, or any other
     function of a non-commuting argument, refuses the step.

2. **A rewriting** from :data:`REWRITINGS` reduces ``a - b`` to exactly ``0``. None of them
   forces anything: logarithms and powers are expanded only where sympy's assumptions make
   the rule valid (``expand_log`` and ``expand`` without ``force``: ``log(x y) = log x +
   log y`` needs all but at most one factor positive, ``log(x^a) = a log x`` needs ``x > 0``
   or ``-1 < a <= 1``), so a log of merely real or complex arguments is never split.

3. **A numeric sanity check** (acceptance side): every step a rewriting proves (other than the
   literally identical ones) is evaluated at two random admissible points
   (:func:`refuted_at_random_point`): exact rationals respecting the assumptions, small
   integers for sizes (so that sums expand), random 3 x 3 rational matrices for non-commuting
   symbols, random smooth functions for undefined functions, derivatives taken after
   substitution. If the point refutes what a rewriting proved, that is a prover bug and
   :class:`ProverBug` is raised (never a silent "proved"). Likewise for a gap that
   :func:`is_nonnegative` proves non-negative. A point where evaluation fails proves nothing.

Hence a proved step ``a == b`` means: for every assignment of the symbols admitted by their
sympy assumptions at which the denominators shared by both sides are non-zero, both sides are
defined and equal (and, for a derivative, the function is differentiable there), *provided*
sympy's rewritings and assumption system are correct. That proviso is what is taken on trust;
the sanity check samples it, it does not prove it. Also on trust: sympy's automatic
evaluation when an expression is built (``x*y/y`` *is* ``x`` once built, ``q(x)/q(x)`` is
``1``: nothing is left for the guards to see), non-commuting symbols as formal matrices (an
inverse written ``M**-1`` is assumed to exist), singularities other than denominators and
kinks (a ``log`` or ``sqrt`` at ``0`` inside a derivative), and ``is_nonnegative``'s one rule
for integrals (see :class:`log_bound_gap`).

For an inequality, the stated gap must be proved equal to the difference (as above) and
sympy's assumption system must declare the gap non-negative (:func:`is_nonnegative`).

The rewritings are tried cheapest first; ``simplify`` comes last because it is slow and, on
``Sum``/``IndexedBase`` expressions, sometimes fails where ``doit`` followed by ``cancel``
succeeds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import mpmath
import sympy
from sympy.core.function import AppliedUndef
from sympy.simplify.simplify import factor_sum, sum_simplify

__all__ = [
    "LOG_BOUND_REMAINDER",
    "REWRITINGS",
    "IndexSum",
    "ProverBug",
    "Refutation",
    "difference_is_zero",
    "disproved_at_random_point",
    "domain_problem",
    "is_nonnegative",
    "log_bound_gap",
    "prove_equal",
    "refuted_at_random_point",
]


class ProverBug(AssertionError):
    """A rewriting "proved" a step that a random admissible point refutes.

    Raised instead of returning a proof: the rewriting (or sympy under it) is unsound on this
    input, and the message shows the step and the refuting point.
    """


# ============================================================================ rewritings
def _doit(e: sympy.Basic) -> sympy.Basic:
    return e.doit()


def _expand_all(e: sympy.Basic) -> sympy.Basic:
    # no force: a log (or power) is split only where the assumptions make the rule valid
    return sympy.expand(sympy.expand_log(e.doit()))


def _doit_twice(e: sympy.Basic) -> sympy.Basic:
    # ``doit`` is not idempotent on derivatives of sums: d/d theta_k of a Sum whose summand
    # holds another Sum (a softmax normaliser) leaves Sum(... KroneckerDelta(a, k) ...)
    # unevaluated, which a second ``doit`` evaluates.
    return e.doit().doit()


def _cancel(e: sympy.Basic) -> sympy.Basic:
    return sympy.cancel(sympy.together(e.doit()))


def _piecewise(e: sympy.Basic) -> sympy.Basic:
    done = e.doit()
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
    e = e.doit()
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
    e = e.doit()
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
    return sympy.simplify(e.doit())


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
    if isinstance(e, sympy.MatrixBase):
        return all(_is_zero(x) for x in e)
    return bool(e == 0 or e.is_zero is True)


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
    for name, rewrite in rewritings:
        needs = _NEEDS.get(name)
        if needs is not None and not any(difference.has(kind) for kind in needs):
            continue  # cannot change anything: skip the (often slow) attempt
        try:
            if isinstance(difference, sympy.MatrixBase):
                reduced: sympy.Basic = difference.applyfunc(rewrite)
            else:
                reduced = rewrite(difference)
        except Exception:  # sympy raises many kinds (even StopIteration): "not proved this way"
            continue
        if _is_zero(reduced):
            return name
    return None


def difference_is_zero(difference: sympy.Basic) -> str | None:
    """The name of the first rewriting in :data:`REWRITINGS` that reduces ``difference`` to 0.

    The bare rewriting search, without the domain guards or the numeric sanity check of
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
        return True
    try:
        numerator, denominator = sympy.fraction(sympy.together(e))
        if denominator.is_nonzero is not True and denominator != 1:
            return False
        candidates: Iterable[sympy.Expr] = (numerator, sympy.expand(numerator))
        return any(c.is_nonzero is True or _is_noninteger(c) for c in candidates)
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


def _sign_at(e: sympy.Expr) -> int | None:
    """+1 or -1 when the assumptions decide the sign of ``e``, else ``None``."""
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
    guarded = _guarded(a, b)
    return guarded if isinstance(guarded, str) else None


# ============================================================================ deciding steps
def prove_equal(a: sympy.Basic, b: sympy.Basic) -> str | None:
    """The rewriting that proves ``a == b`` symbolically, or ``None`` if none does.

    The step must pass the domain guards (:func:`domain_problem`), then a rewriting must
    reduce the difference to 0, then the step must survive evaluation at random admissible
    points (see the module docstring for what that guarantees).

    Raises:
        ProverBug: a rewriting reduced the difference to 0 but a random admissible point
            refutes the step (an unsound rewriting, or a bug in sympy).

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
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        a, b = sympy.ImmutableMatrix(a), sympy.ImmutableMatrix(b)
        if a.shape != b.shape:
            return None
    guarded = _guarded(a, b)
    if isinstance(guarded, str):
        return None
    prepared_a, prepared_b = guarded
    method = difference_is_zero(prepared_a - prepared_b)
    if method is not None and not _is_zero(a - b):
        _sanity_check(a, b, method)
    return method


def _sanity_check(a: sympy.Basic, b: sympy.Basic, method: str) -> None:
    refutation = _refuted(a, b, 0, 2)
    if refutation is not None:
        raise ProverBug(
            f"rewriting {method!r} proved a step that a random admissible point refutes:\n"
            f"  {a}\n  = {b}\n  {refutation}"
        )


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
    refutation = _refuted(expression, sympy.Abs(expression), 0, 2)
    if refutation is not None:
        raise ProverBug(f"sympy declared {expression} >= 0, but it is not: {refutation}")
    return True


# ============================================================================ random points
class _Inconclusive(Exception):
    """The expression cannot be evaluated at the point: no verdict."""


#: Side of the random matrices standing for non-commuting symbols.
MATRIX_SIZE = 3
_MAX_TERMS = 200  # a sum or product with more terms than this is not expanded
_DIGITS = 50
_EXACT_TOLERANCE = sympy.Float("1e-30", _DIGITS)  # relative, when everything was exact
_QUADRATURE_TOLERANCE = sympy.Float("1e-12", _DIGITS)  # relative, after numeric quadrature

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
    return True


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
        low = 1 if atom.is_positive or atom.is_negative else 0
        magnitude = rng.randint(low, 3)
        return sympy.Integer(-magnitude if negative else magnitude)
    return _random_rational(rng, 1 if positive else -1 if negative else 0)


def _random_matrix(rng: random.Random) -> sympy.ImmutableMatrix:
    return sympy.ImmutableMatrix(
        MATRIX_SIZE,
        MATRIX_SIZE,
        [sympy.Rational(rng.randint(-9, 9), rng.randint(1, 4)) for _ in range(MATRIX_SIZE**2)],
    )


_SMOOTH_FACTS = ("positive", "nonnegative", "negative", "nonpositive", "nonzero", "real")


def _function_kind(node: AppliedUndef) -> int:
    """+1 for a positive (or non-negative, non-zero) function, -1 for negative, 0 for real."""
    for fact in _FACTS:
        if fact not in _SMOOTH_FACTS + ("finite",) and getattr(node, f"is_{fact}", None):
            raise _Inconclusive(f"no random function is {fact}")
    if node.is_positive or node.is_nonnegative or (node.is_nonzero and not node.is_negative):
        return 1
    if node.is_negative or node.is_nonpositive:
        return -1
    return 0


def _smooth_function(
    node: AppliedUndef, rng: random.Random
) -> tuple[Callable[[Sequence[Any]], Any], str]:
    """A random smooth function with the assumptions of ``node``, and a description of it."""
    k = len(node.args)
    xs = sympy.symbols(f"x1:{k + 1}")
    if not node.is_commutative:
        constant, *slopes = (_random_matrix(rng) for _ in range(k + 1))
        curvature = _random_matrix(rng)

        def matrix_function(args: Sequence[Any]) -> Any:
            out = constant + curvature * args[0] ** 2 if args else constant
            for slope, arg in zip(slopes, args, strict=False):
                out = out + slope * arg
            return out

        return matrix_function, f"random {MATRIX_SIZE}x{MATRIX_SIZE} matrix polynomial"
    kind = _function_kind(node)
    c0, c1 = _random_rational(rng), _random_rational(rng, 1)
    b = [_random_rational(rng) for _ in range(k)]
    d = [_random_rational(rng) for _ in range(k)]
    linear = c0 + sum((bi * x for bi, x in zip(b, xs, strict=True)), sympy.Integer(0))
    exponent = sum((di * x for di, x in zip(d, xs, strict=True)), sympy.Integer(0))
    if kind == 0:
        body = linear + _random_rational(rng) * sympy.exp(exponent)
    else:
        body = kind * (sympy.exp(linear) + c1 * sympy.exp(exponent))
    lam = sympy.Lambda(xs, body)
    return (lambda args: lam(*args)), str(body)


class _Point:
    """A random admissible point, drawn lazily: a value per atom, a function per function."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.values: dict[sympy.Basic, Any] = {}
        self.functions: dict[tuple[Any, int], Callable[[Sequence[Any]], Any]] = {}
        self.labels: dict[str, str] = {}

    def scalar(self, atom: sympy.Basic) -> Any:
        if atom not in self.values:
            for _ in range(20):
                value = _candidate(atom, self.rng)
                if _respects(atom, value):
                    break
            else:
                raise _Inconclusive(f"no random value respects the assumptions of {atom}")
            self.values[atom] = value
            self.labels[str(atom)] = str(value)
        return self.values[atom]

    def matrix(self, atom: sympy.Basic) -> Any:
        if atom not in self.values:
            self.values[atom] = _random_matrix(self.rng)
            self.labels[str(atom)] = f"random {MATRIX_SIZE}x{MATRIX_SIZE} rational matrix"
        return self.values[atom]

    def function(self, node: AppliedUndef) -> Callable[[Sequence[Any]], Any]:
        key = (node.func, len(node.args))
        if key not in self.functions:
            self.functions[key], description = _smooth_function(node, self.rng)
            self.labels[f"{node.func}"] = description
        return self.functions[key]

    def describe(self) -> str:
        items = [f"{name}={value}" for name, value in sorted(self.labels.items())]
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
    scalars = [v for v in values if not _is_matrix(v)]
    matrices = [v for v in values if _is_matrix(v)]
    total = sympy.Add(*scalars)
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
    if not exponent.is_Integer:
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


def _numeric_limit(value: Any) -> Any:
    value = _scalar(value)
    if value in (sympy.oo, -sympy.oo) or value.is_number:
        return value
    raise _Inconclusive("an integral limit that is not a number")


def _mp_limit(value: Any) -> Any:
    if value == sympy.oo:
        return mpmath.inf
    if value == -sympy.oo:
        return -mpmath.inf
    return mpmath.mpmathify(sympy.N(value, 45))


class _Evaluator:
    """Evaluates a sympy expression at a :class:`_Point` (values may keep derivative variables)."""

    def __init__(self, point: _Point) -> None:
        self.point = point
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
            return self._symbol(e, kept)
        handler = _HANDLERS.get(type(e))
        if handler is None:
            for kind, candidate in _HANDLERS.items():
                if isinstance(e, kind):
                    handler = candidate
                    break
        if handler is not None:
            return handler(self, e, env, kept)
        return self._generic(e, env, kept)

    def _symbol(self, e: sympy.Symbol, kept: frozenset[Any]) -> Any:
        if e in kept:
            return e
        if not e.is_commutative:
            return self.point.matrix(e)
        return self.point.scalar(e)

    def _indexed(self, e: sympy.Indexed, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        atom = self._concrete(e, env, kept)
        if atom in env:
            return env[atom]
        if atom in kept:
            return atom
        if not atom.is_commutative:
            return self.point.matrix(atom)
        return self.point.scalar(atom)

    def _concrete(self, e: sympy.Basic, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        """A derivative variable or an ``Indexed`` with its indices evaluated."""
        if isinstance(e, sympy.Symbol):
            return e
        if isinstance(e, sympy.Indexed):
            indices = [_scalar(self.value(i, env, kept)) for i in e.indices]
            if any(not i.is_Integer for i in indices):
                raise _Inconclusive(f"the indices of {e} are not integers at the point")
            return sympy.Indexed(e.base, *indices)
        raise _Inconclusive(f"a derivative with respect to {e}")

    def _idx(self, e: sympy.Idx, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        return self.value(e.label, env, kept)

    def _undefined(self, e: AppliedUndef, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        args = [_scalar(self.value(a, env, kept)) for a in e.args]
        return self.point.function(e)(args)

    def _derivative(self, e: sympy.Derivative, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        pairs = [(self._concrete(v, env, kept), int(c)) for v, c in e.variable_count]
        variables = frozenset(v for v, _ in pairs)
        inner_env = {k: v for k, v in env.items() if k not in variables}
        body = self.value(e.expr, inner_env, kept | variables)
        for variable, count in pairs:
            body = body.diff(variable, count)
        values = {}
        for variable in variables:
            if variable in env:
                values[variable] = env[variable]
            elif variable not in kept:
                values[variable] = self.value(variable, env, kept)
        return body.xreplace(values) if values else body

    def _subs(self, e: sympy.Subs, env: Mapping[Any, Any], kept: frozenset[Any]) -> Any:
        points = [self.value(p, env, kept) for p in e.point]
        inner = {**env, **dict(zip(e.variables, points, strict=True))}
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
        low_v = _numeric_limit(self.value(low, env, kept))
        high_v = _numeric_limit(self.value(high, env, kept))
        inner_env = {k: v for k, v in env.items() if k != var}
        body = _scalar(self.value(body_expr, inner_env, kept | {var}))
        if body.free_symbols - {var}:
            raise _Inconclusive("an integrand with symbols left")
        if body.is_rational_function(var):
            result = sympy.integrate(body, (var, low_v, high_v))
            if not result.has(sympy.Integral):
                return result
        return self._quadrature(body, var, low_v, high_v)

    def _quadrature(self, body: sympy.Expr, var: sympy.Symbol, low: Any, high: Any) -> Any:
        function = sympy.lambdify(var, body, modules="mpmath")
        with mpmath.workdps(40):
            bounds = [_mp_limit(low), _mp_limit(high)]
            value, error = mpmath.quad(function, bounds, error=True)
            if not mpmath.isfinite(value) or error > mpmath.mpf("1e-25") * max(1, abs(value)):
                raise _Inconclusive("numeric quadrature did not converge")
            self.approximate = True
            z = mpmath.mpc(value)
            return sympy.Float(z.real, 40) + sympy.I * sympy.Float(z.imag, 40)

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
        args = [_scalar(self.value(a, env, kept)) for a in e.args]
        out = e.func(*args)
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
    if isinstance(e, sympy.Basic) and e.has(sympy.Function):
        e = e.doit()
    n = sympy.N(e, _DIGITS)
    if not n.is_number or n.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        raise _Inconclusive("not a finite number at the point")
    return n


def _compare(lhs: Any, rhs: Any, approximate: bool, point: _Point) -> Refutation | None:
    left, right = _entries(lhs, rhs), _entries(rhs, lhs)
    if len(left) != len(right):
        raise _Inconclusive("shapes differ")
    worst: tuple[Any, Any, Any] | None = None
    scale = sympy.Integer(1)
    for a, b in zip(left, right, strict=True):
        na, nb = _number(a), _number(b)
        gap = sympy.Abs(_number(a - b))
        scale = sympy.Max(scale, sympy.Abs(na) + sympy.Abs(nb))
        if worst is None or gap > worst[0]:
            worst = (gap, na, nb)
    if worst is None:
        return None
    tolerance = _QUADRATURE_TOLERANCE if approximate else _EXACT_TOLERANCE
    gap, na, nb = worst
    if gap <= tolerance * scale:
        return None
    return Refutation(point.describe(), str(sympy.N(na, 8)), str(sympy.N(nb, 8)), float(gap))


def _refute_once(a: Any, b: Any, rng: random.Random) -> Refutation | None:
    point = _Point(rng)
    evaluator = _Evaluator(point)
    lhs = evaluator.value(a, {}, frozenset())
    rhs = evaluator.value(b, {}, frozenset())
    return _compare(lhs, rhs, evaluator.approximate, point)


@lru_cache(maxsize=4096)
def _refuted(a: Any, b: Any, seed: int, trials: int) -> Refutation | None:
    for trial in range(trials):
        rng = random.Random(f"{seed}/{trial}")
        try:
            found = _refute_once(a, b, rng)
        except Exception:  # noqa: BLE001 (anything sympy cannot evaluate is inconclusive)
            continue
        if found is not None:
            return found
    return None


def refuted_at_random_point(a: Any, b: Any, *, seed: int = 0, trials: int = 3) -> Refutation | None:
    """A random admissible point where ``a`` and ``b`` clearly differ, or ``None``.

    Every step proved here is an identity for *all* values the symbols' assumptions admit, so
    a point where the two sides differ shows that no sound rewriting can prove ``a == b``.
    ``None`` proves nothing (no refuting point among ``trials`` tries, or evaluation failed).

    The point: integer symbols (sizes, indices) get small values (1 to 3 when positive, else
    0 to 3) so that sums and products with symbolic bounds expand (sympy's convention for
    reversed ranges); other symbols and ``IndexedBase`` entries get exact rationals in
    (-1, 1), or (0, 1) when non-negative, each checked against every assumption the atom has;
    non-commuting symbols get random 3 x 3 rational matrices (a scalar ``c`` is ``c I``);
    undefined functions get random smooth functions with their assumptions
    (``a + b.x + c exp(d.x)``, or ``exp(a + b.x) + c exp(d.x)`` with ``c > 0`` for a positive
    one; a matrix polynomial for a non-commuting one). Derivatives are taken after
    substituting everything but their variables, ``Subs`` is evaluated at its point, and
    integrals exactly (rational integrands) or by quadrature at 40 digits. A value is refuted
    when the difference exceeds ``1e-30`` (``1e-12`` after a quadrature) times
    ``1 + |lhs| + |rhs|``, computed to 50 significant digits (entrywise for matrices).

    Examples:
        >>> x = sympy.Symbol("x", positive=True)
        >>> refuted_at_random_point(sympy.log(x**2), 2 * sympy.log(x)) is None
        True
        >>> A, B = sympy.symbols("A B", commutative=False)
        >>> refuted_at_random_point(A * B, B * A) is not None
        True
    """
    if isinstance(a, sympy.MatrixBase):
        a = sympy.ImmutableMatrix(a)
    if isinstance(b, sympy.MatrixBase):
        b = sympy.ImmutableMatrix(b)
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
