r"""sympy functions that a derivation shows by name and the prover sees by definition.

A derivation of a small symbolic instance (a softmax policy over a few logits) written with
the quotient $e^{\theta_v} / \sum_w e^{\theta_w}$ spelled out in every term is true but
unreadable: each probability is a two-storey fraction, and a page of them is wider than the
page. A textbook names the quantity once ($\pi_v$) and writes the derivation with the name.
The functions here do the same for sympy:

- they stay whole when built (no automatic evaluation), so a step reads ``pi_0 (1 - pi_0)``;
- ``doit`` rewrites them to their definition, and every rewriting of
  :func:`rlmath.symbolic.prove_equal` but "identical" starts from ``doit``: a step is proved
  about the definition, never about an opaque name (a step that holds for *any* function in
  that name's place is also proved, and is then true for the softmax as well);
- the random-point screen evaluates a project function by its ``doit`` (see
  ``rlmath.symbolic``'s evaluator), and ``lambdify`` prints the definition;
- their derivative (``fdiff``) is the textbook one, checked against the definition in
  ``tests/test_named_functions.py``.
"""

from __future__ import annotations

from typing import Any

import sympy
from sympy.core.symbol import Str

__all__ = [
    "Named",
    "NextTokenProbability",
    "SoftmaxProbability",
    "definitions",
    "softmax_probabilities",
]


class Named(sympy.Function):  # type: ignore[misc]
    r"""A sub-expression shown by its name: ``Named(name, expression)`` prints as ``name``.

    $$ \text{name} := \text{expression} $$

    ``name`` is LaTeX (``r"\E[r s]_{0}"``); ``doit`` gives ``expression``, so the prover and
    the random-point screen see the expression, never the name; a page lists the definition
    (:func:`definitions`). The derivative is the derivative of the expression.

    Args:
        name: the LaTeX the expression is shown as (a non-empty string).
        expression: the sympy expression it stands for.

    Raises:
        ValueError: an empty name.

    Examples:
        >>> x = sympy.Symbol("x", real=True)
        >>> e = Named(r"m_2", x**2)
        >>> sympy.latex(e + 1), e.doit(), sympy.Derivative(e, x).doit()
        ('m_2 + 1', x**2, 2*x)

    References:
        Spivak, M., *Calculus*, 4th ed., 2008, Ch. 1 (a definition is an abbreviation: the
        defined symbol may always be replaced by its definition).
    """

    @classmethod
    def eval(cls, name: Any, expression: Any) -> None:
        text = name.name if isinstance(name, Str) else name
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"name must be a non-empty LaTeX string, got {name!r}")
        if isinstance(expression, sympy.Number):
            return expression  # a name for a number (after a substitution) is the number
        return None

    def __new__(cls, name: Any, expression: Any, **options: Any) -> Any:
        if isinstance(name, str):
            name = Str(name)
        return super().__new__(cls, name, sympy.sympify(expression), **options)

    @property
    def label(self) -> str:
        return str(self.args[0].name)

    @property
    def expression(self) -> Any:
        return self.args[1]

    def doit(self, deep: bool = True, **hints: object) -> Any:
        return self.expression.doit(deep=deep, **hints) if deep else self.expression

    def _eval_derivative(self, variable: Any) -> Any:
        return self.expression.diff(variable)

    def _eval_is_extended_real(self) -> bool | None:
        return self.expression.is_extended_real  # type: ignore[no-any-return]

    def _eval_is_extended_positive(self) -> bool | None:
        return self.expression.is_extended_positive  # type: ignore[no-any-return]

    def _eval_is_extended_nonnegative(self) -> bool | None:
        return self.expression.is_extended_nonnegative  # type: ignore[no-any-return]

    def _eval_is_finite(self) -> bool | None:
        return self.expression.is_finite  # type: ignore[no-any-return]

    def _latex(self, printer: Any, exp: Any = None) -> str:
        return self.label if exp is None else rf"\left({self.label}\right)^{{{exp}}}"

    def _numpycode(self, printer: Any) -> str:
        return f"({printer._print(self.expression)})"

    _pythoncode = _lambdacode = _mpmathcode = _numpycode

    def definition(self) -> Any:
        """The expression the name stands for (shown on the page as its definition)."""
        return self.expression


class SoftmaxProbability(sympy.Function):  # type: ignore[misc]
    r"""Entry ``index`` of the softmax of ``logits``, printed as $\pi$ with the logit's indices.

    $$ \pi_v = \mathrm{softmax}(\theta)_v = \frac{e^{\theta_v}}{\sum_{w} e^{\theta_w}}, \qquad
       \frac{\partial \pi_v}{\partial \theta_w} = \pi_v\,(1[v = w] - \pi_w). $$

    Called as ``SoftmaxProbability(index, *logits)``. The printed name is the class attribute
    ``symbol`` (``\pi``; a subclass may set another, e.g. ``\mu`` for a behaviour policy),
    subscripted with the indices of ``logits[index]`` when that is an ``Indexed`` (the logit
    $\theta_{n,v}$ gives $\pi_{n,v}$), else with ``index``. ``doit`` gives the quotient.

    Args:
        index: which entry (an integer in ``[0, len(logits))``).
        *logits: the logits of one softmax (at least two, real).

    Raises:
        ValueError: fewer than two logits, or ``index`` not an integer in range.

    Examples:
        >>> theta = sympy.IndexedBase("theta", real=True)
        >>> p = SoftmaxProbability(1, theta[0], theta[1])
        >>> sympy.latex(p)
        '\\pi_{1}'
        >>> p.doit()
        exp(theta[1])/(exp(theta[0]) + exp(theta[1]))
        >>> q = SoftmaxProbability(0, theta[0], theta[1])
        >>> sympy.simplify(p.diff(theta[0]).doit() - (-p * q).doit())
        0

    References:
        Bridle, J. S., "Probabilistic interpretation of feedforward classification network
        outputs, with relationships to statistical pattern recognition", 1990 (the softmax);
        Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed.,
        2018, eq. (13.2) (softmax in action preferences) and Exercise 13.3 (its score).
    """

    symbol = r"\pi"

    @classmethod
    def eval(cls, index: Any, *logits: Any) -> None:
        if len(logits) < 2:
            raise ValueError(f"a softmax needs at least two logits, got {len(logits)}")
        if not (isinstance(index, sympy.Integer) and 0 <= int(index) < len(logits)):
            raise ValueError(
                f"index must be an integer in [0, {len(logits)}), got {index!r}"
            )
        return None  # stays whole: the name is the point

    @property
    def logits(self) -> tuple[Any, ...]:
        return tuple(self.args[1:])

    @property
    def index(self) -> int:
        return int(self.args[0])

    def doit(self, deep: bool = True, **hints: object) -> sympy.Expr:
        logits = [a.doit(deep=deep, **hints) for a in self.logits] if deep else self.logits
        return sympy.exp(logits[self.index]) / sympy.Add(*(sympy.exp(z) for z in logits))

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        if argindex == 1:
            raise sympy.core.function.ArgumentIndexError(self, argindex)
        other = argindex - 2
        partner = self.func(sympy.Integer(other), *self.logits)
        return self * (sympy.Integer(int(other == self.index)) - partner)

    def _eval_is_extended_real(self) -> bool | None:
        return True if all(z.is_extended_real for z in self.logits) else None

    def _eval_is_extended_positive(self) -> bool | None:
        return self._eval_is_extended_real()

    def _eval_is_finite(self) -> bool | None:
        return True if all(z.is_finite for z in self.logits) else None

    def subscript(self) -> str:
        """The printed subscript: the indices of ``logits[index]`` if it is an ``Indexed``,
        else ``index`` (a subclass may print another, e.g. node and token)."""
        logit = self.logits[self.index]
        if isinstance(logit, sympy.Indexed):
            return ",".join(sympy.latex(i) for i in logit.indices)
        return str(self.index)

    def _latex(self, printer: Any, exp: Any = None) -> str:
        out = f"{self.symbol}_{{{self.subscript()}}}"
        return out if exp is None else f"{out}^{{{exp}}}"

    def _numpycode(self, printer: Any) -> str:
        return f"({printer._print(self.doit(deep=False))})"

    _pythoncode = _lambdacode = _mpmathcode = _numpycode

    def definition(self) -> Any:
        """The quotient, with the entry's own index replaced by ``v`` when the logits are the
        entries ``theta[..., 0], theta[..., 1], ...`` of one ``IndexedBase`` (one definition
        for the whole softmax), else the quotient of this entry."""
        family = _family_index(self.logits)
        if family is None:
            return self.doit(deep=False)
        base, prefix = family
        v = sympy.Symbol("v", integer=True)
        return sympy.exp(base[(*prefix, v)]) / sympy.Add(*(sympy.exp(z) for z in self.logits))

    def defined_name(self) -> Any:
        """What :meth:`definition` defines: this entry, or the family's ``pi_{..., v}``."""
        family = _family_index(self.logits)
        if family is None:
            return self
        base, prefix = family
        return _Printed(Str(f"{self.symbol}_{{{','.join([*map(sympy.latex, prefix), 'v'])}}}"))


class NextTokenProbability(SoftmaxProbability):
    r"""$\pi_{n,v}$: entry $v$ of the softmax at the node $n$ of its first logit $\theta_n$.

    For a tabular next-token law written with one free logit per node (logits
    ``(theta[n], 0)``: two tokens, the second's logit fixed at 0), where the plain
    :class:`SoftmaxProbability` would print the constant logit's entry without its node.

    Examples:
        >>> theta = sympy.IndexedBase("theta", real=True)
        >>> p = NextTokenProbability(1, theta[3], 0)
        >>> sympy.latex(p), p.doit()
        ('\\pi_{3,1}', 1/(exp(theta[3]) + 1))
    """

    def subscript(self) -> str:
        first = self.logits[0]
        if not isinstance(first, sympy.Indexed):
            raise ValueError(f"the first logit must be an Indexed theta[n], got {first!r}")
        return ",".join([*(sympy.latex(i) for i in first.indices), str(self.index)])


class _Printed(sympy.Function):  # type: ignore[misc]
    """A bare LaTeX name (a definition's left-hand side), for printing only."""

    def _latex(self, printer: Any, exp: Any = None) -> str:
        return str(self.args[0].name)


def _family_index(logits: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]] | None:
    """(base, prefix) when ``logits`` are ``base[prefix..., 0], base[prefix..., 1], ...``."""
    if not all(isinstance(z, sympy.Indexed) for z in logits):
        return None
    base, prefix = logits[0].base, tuple(logits[0].indices[:-1])
    for position, z in enumerate(logits):
        if z.base != base or tuple(z.indices[:-1]) != prefix or z.indices[-1] != position:
            return None
    return base, prefix


def definitions(expression: Any) -> list[tuple[Any, Any]]:
    r"""The (name, definition) pairs of the named sub-expressions of ``expression``, in order.

    Every :class:`Named` and :class:`SoftmaxProbability` in ``expression`` (a sympy
    expression or matrix, or a sequence of them), and those inside their definitions, each
    once: a definition is listed after the ones that use it, in order of first appearance
    (a depth-first walk), one entry per softmax (its entries ``v = 0, 1, ...`` together).

    Raises:
        ValueError: two different definitions under one name.

    Examples:
        >>> x = sympy.Symbol("x", real=True)
        >>> theta = sympy.IndexedBase("theta", real=True)
        >>> p0, p1 = softmax_probabilities([theta[0], theta[1]])
        >>> for name, definition in definitions(Named("J", p0 * x)):
        ...     print(sympy.latex(name), "=", sympy.latex(definition))
        J = x \pi_{0}
        \pi_{v} = \frac{e^{{\theta}_{v}}}{e^{{\theta}_{0}} + e^{{\theta}_{1}}}
    """
    out: list[tuple[Any, Any]] = []
    seen: dict[str, Any] = {}

    def visit(e: Any) -> None:
        if isinstance(e, (list, tuple)):
            for item in e:
                visit(item)
            return
        if isinstance(e, sympy.MatrixBase):
            for item in e:
                visit(item)
            return
        if not isinstance(e, sympy.Basic):
            return
        if isinstance(e, (Named, SoftmaxProbability)):
            name = e.defined_name() if isinstance(e, SoftmaxProbability) else e
            key = sympy.latex(name)
            if key in seen:
                if seen[key] != e.definition():
                    raise ValueError(f"two definitions are named {key}: {seen[key]} and {e.definition()}")
                return
            seen[key] = e.definition()
            out.append((name, e.definition()))
            visit(e.definition())
            return
        for argument in e.args:
            visit(argument)

    visit(expression)
    return out


def softmax_probabilities(logits: Any, *, function: type = SoftmaxProbability) -> tuple[Any, ...]:
    r"""$(\pi_0, \dots, \pi_{K-1})$, the softmax of ``logits`` entry by entry, each kept whole.

    Args:
        logits: a sequence of at least two logits (sympy expressions).
        function: the :class:`SoftmaxProbability` subclass to use (its ``symbol`` is printed).

    Raises:
        ValueError: fewer than two logits.

    Examples:
        >>> theta = sympy.IndexedBase("theta", real=True)
        >>> [sympy.latex(p) for p in softmax_probabilities([theta[0, 0], theta[0, 1]])]
        ['\\pi_{0,0}', '\\pi_{0,1}']
    """
    logits = tuple(logits)
    return tuple(function(sympy.Integer(v), *logits) for v in range(len(logits)))
