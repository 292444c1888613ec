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

from collections.abc import Callable
from functools import lru_cache

import sympy

__all__ = ["REWRITINGS", "difference_is_zero", "is_nonnegative", "prove_equal"]


def _doit(e: sympy.Basic) -> sympy.Basic:
    return e.doit()


def _expand_all(e: sympy.Basic) -> sympy.Basic:
    return sympy.expand(sympy.expand_log(e.doit(), force=True))


def _cancel(e: sympy.Basic) -> sympy.Basic:
    return sympy.cancel(sympy.together(e.doit()))


def _piecewise(e: sympy.Basic) -> sympy.Basic:
    return sympy.piecewise_fold(e.doit()).simplify()


def _simplify(e: sympy.Basic) -> sympy.Basic:
    return sympy.simplify(e.doit())


#: (name, rewriting) pairs, tried in order until one reduces a difference to zero.
REWRITINGS: tuple[tuple[str, Callable[[sympy.Basic], sympy.Basic]], ...] = (
    ("identical", lambda e: e),
    ("doit", _doit),
    ("expand", _expand_all),
    ("cancel", _cancel),
    ("simplify", _simplify),
    ("piecewise_fold", _piecewise),
)


def _is_zero(e: sympy.Basic) -> bool:
    if isinstance(e, sympy.MatrixBase):
        return all(_is_zero(x) for x in e)
    return bool(e == 0 or e.is_zero is True)


@lru_cache(maxsize=4096)
def _cached_zero(difference: sympy.Basic) -> str | None:
    for name, rewrite in REWRITINGS:
        try:
            if isinstance(difference, sympy.MatrixBase):
                reduced: sympy.Basic = difference.applyfunc(rewrite)
            else:
                reduced = rewrite(difference)
        except (TypeError, ValueError, NotImplementedError, RecursionError, AttributeError):
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
    for candidate in (expression, sympy.factor(expression), sympy.simplify(expression)):
        if candidate.is_nonnegative is True:
            return True
    return False
