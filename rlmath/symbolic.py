r"""Deciding, with sympy, that one step of a derivation equals (or bounds) the previous one.

A step is accepted only when sympy *proves* it: the difference of the two expressions reduces
to exactly ``0`` under one of a fixed list of rewritings, or (for an inequality) the stated gap
equals the difference and sympy's assumption system declares the gap non-negative. No float is
ever evaluated here: a numeric spot check is not a proof.

The rewritings are tried cheapest first; ``simplify`` comes last because it is slow and, on
``Sum``/``IndexedBase`` expressions, sometimes fails where ``doit`` followed by ``cancel``
succeeds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache

import sympy
from sympy.core.function import AppliedUndef
from sympy.simplify.simplify import factor_sum, sum_simplify

__all__ = [
    "LOG_BOUND_REMAINDER",
    "REWRITINGS",
    "IndexSum",
    "difference_is_zero",
    "disproved_at_random_point",
    "is_nonnegative",
    "log_bound_gap",
    "prove_equal",
]


def _doit(e: sympy.Basic) -> sympy.Basic:
    return e.doit()


def _expand_all(e: sympy.Basic) -> sympy.Basic:
    return sympy.expand(sympy.expand_log(e.doit(), force=True))


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
    e = sympy.expand(sympy.expand_log(e, force=True))
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


#: (name, rewriting) pairs, tried in order until one reduces a difference to zero.
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


@lru_cache(maxsize=4096)
def _cached_zero(difference: sympy.Basic) -> str | None:
    for name, rewrite in REWRITINGS:
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
    """The name of the first rewriting that reduces ``difference`` to 0, or ``None``.

    Results are cached on the (hashable, immutable) sympy expression, so a derivation checked
    twice in one process costs one check.
    """
    if isinstance(difference, sympy.MatrixBase):
        difference = sympy.ImmutableMatrix(difference)
    return _cached_zero(difference)


def prove_equal(a: sympy.Basic, b: sympy.Basic) -> str | None:
    """The rewriting that proves ``a == b`` symbolically, or ``None`` if none does.

    Examples:
        >>> x = sympy.Symbol("x", positive=True)
        >>> prove_equal(sympy.log(x**2), 2 * sympy.log(x))
        'expand'
        >>> prove_equal(x, x + 1) is None
        True
    """
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        a, b = sympy.ImmutableMatrix(a), sympy.ImmutableMatrix(b)
        if a.shape != b.shape:
            return None
    return difference_is_zero(a - b)


def is_nonnegative(expression: sympy.Basic) -> bool:
    """Whether sympy's assumption system proves ``expression >= 0`` (``None`` counts as no)."""
    if isinstance(expression, sympy.MatrixBase):
        return all(is_nonnegative(x) for x in expression)
    # lazily, cheapest first: simplify is slow and raises on some Sum expressions
    for rewrite in (lambda e: e, sympy.factor, sympy.simplify):
        try:
            if rewrite(expression).is_nonnegative is True:
                return True
        except (TypeError, ValueError, NotImplementedError, RecursionError, StopIteration):
            continue
    return False


def _random_value(symbol: sympy.Basic, rng: random.Random) -> sympy.Basic:
    """A random exact value that respects the symbol's sympy assumptions."""
    if symbol.is_integer:
        low = 1 if symbol.is_positive else 0
        return sympy.Integer(rng.randint(low, 3))
    numerator = rng.randint(3, 29)
    value = sympy.Rational(numerator, 31)  # in (0, 1): also admissible for discounts
    if symbol.is_positive or symbol.is_nonnegative:
        return value
    return value if rng.random() < 0.5 else -value


def disproved_at_random_point(
    a: sympy.Basic, b: sympy.Basic, *, trials: int = 2, seed: int = 0
) -> bool:
    """True when ``a - b`` is clearly non-zero at a random point admissible for its symbols.

    Every step sympy proves here is an identity for *all* values the symbols' assumptions
    admit, so a non-zero value at one admissible point shows that no rewriting can prove
    ``a == b``. Used to reject mutants quickly; ``False`` means "inconclusive" (the full
    attempt then runs). Integer symbols (sizes) get small values so that sums expand; other
    symbols get rationals in (-1, 1), or (0, 1) when positive. Expressions with
    non-commutative symbols, undefined functions or integrals are left inconclusive. The
    value is computed to 50 significant digits and called non-zero above 1e-30 relative to
    the magnitude of the two sides.

    Examples:
        >>> x = sympy.Symbol("x", positive=True)
        >>> disproved_at_random_point(sympy.log(x**2), 2 * sympy.log(x))
        False
        >>> disproved_at_random_point(x**2, x)
        True
    """
    difference = a - b
    if isinstance(difference, sympy.MatrixBase) or not difference.is_commutative:
        return False
    if difference.has(sympy.Integral) or difference.atoms(AppliedUndef):
        return False
    rng = random.Random(seed)
    for _ in range(trials):
        try:
            integers = {s: _random_value(s, rng) for s in difference.free_symbols if s.is_integer}
            point = difference.xreplace(integers).doit()
            a_point = a.xreplace(integers).doit()
            b_point = b.xreplace(integers).doit()
            if point.has(sympy.Sum) or point.has(sympy.Product):
                return False  # a sum whose bounds did not become numbers
            atoms = point.free_symbols | point.atoms(sympy.Indexed)
            values = {s: _random_value(s, rng) for s in sorted(atoms, key=sympy.default_sort_key)}
            value = sympy.N(point.xreplace(values).doit(), 50)
            scale = sympy.N(abs(a_point.xreplace(values)) + abs(b_point.xreplace(values)) + 1, 50)
        except Exception:  # anything sympy cannot evaluate is inconclusive
            return False
        if not (value.is_number and scale.is_number) or value.has(sympy.nan, sympy.zoo):
            return False
        if value.is_real is not True or scale.is_finite is not True:
            return False
        if abs(value) > sympy.Float("1e-30", 50) * scale:
            return True
    return False


# ============================================================================ shared objects
class IndexSum(sympy.Sum):  # type: ignore[misc]
    r"""$\sum_{i=0}^{n-1} f_i$ over ``IndexedBase`` terms, simplified term by term only.

    ``Sum.doit`` tries closed forms (Gosper's algorithm, hypergeometric terms) that cannot
    exist for an arbitrary sequence ``f[i]`` and cost seconds per sum; this sum evaluates only
    inside its terms, or expands term by term once its bounds are numbers (so that
    :func:`disproved_at_random_point` can evaluate it). Otherwise it prints, differentiates
    and compares as ``Sum``.
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
