r"""Byte-stable text for the generated pages: numbers, Markdown escapes, LaTeX of sympy steps.

Every number that reaches a page goes through :func:`format_number` (three significant
digits, no ``-0``), so the pages do not change with the last bits of a float. Quantities that
*are* last-bit noise (the normwise error of an exact leg, about $10^{-16}$, which varies with
the BLAS and the CPU) are not printed at all: a page says the error is within the tolerance,
and ``rlmath verify --json`` has the raw value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import sympy
from sympy.printing.latex import LatexPrinter

from rlmath.named_functions import Named

__all__ = [
    "RELATION_LATEX",
    "ascii_math_to_latex",
    "display_latex",
    "dollar_math_to_rst",
    "escape_markdown",
    "format_number",
    "format_value",
    "rule_markdown",
    "scientific_latex",
    "split_display",
    "step_latex",
    "table",
    "top_level_pieces",
    "visible_length",
]

#: ``Step.relation`` (previous ``relation`` this) as the LaTeX that starts the line.
RELATION_LATEX = {"=": "=", "<=": r"\le", ">=": r"\ge"}


def format_number(value: Any, digits: int = 3) -> str:
    """A number as text: ints exactly, floats to ``digits`` significant digits, no ``-0``.

    Non-finite floats (and the strings ``"inf"``/``"nan"`` that JSON evidence uses for them)
    are spelled ``inf``, ``-inf``, ``nan``.

    Examples:
        >>> format_number(2.185486451815913e-16), format_number(40)
        ('2.19e-16', '40')
        >>> format_number(-0.0001), format_number(-1e-300, digits=1)
        ('-0.0001', '-1e-300')
        >>> format_number(float("nan")), format_number("inf")
        ('nan', 'inf')
        >>> format_number(-0.0)
        '0'
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    number = float(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    if number == 0.0:
        return "0"
    return f"{number:.{digits}g}"


def _shape(value: Sequence[Any]) -> tuple[int, ...]:
    shape = [len(value)]
    first = value[0] if value else None
    while isinstance(first, list):
        shape.append(len(first))
        first = first[0] if first else None
    return tuple(shape)


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for part in value for x in _flatten(part)]
    return [value]


def format_value(value: Any, *, max_items: int = 6) -> str:
    """Any JSON evidence value as Markdown: numbers formatted, short lists shown, long summarised.

    Examples:
        >>> format_value([0.1234567, -2.0]), format_value(None), format_value("t-test")
        ('[0.123, -2]', '–', 't-test')
        >>> format_value([[1.0, 2.0, 3.0], [4.0, 5.0, -6.0]], max_items=4)
        'array 2×3, max abs 6'
    """
    if value is None:
        return "–"
    if isinstance(value, list):
        flat = _flatten(value)
        if len(flat) <= max_items and all(not isinstance(x, list) for x in value):
            return "[" + ", ".join(format_value(x) for x in value) + "]"
        numbers = [abs(float(x)) for x in flat if isinstance(x, int | float)]
        shape = "×".join(str(n) for n in _shape(value))
        if numbers:
            return f"array {shape}, max abs {format_number(max(numbers))}"
        return f"array {shape}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {format_value(v)}" for k, v in value.items())
    if isinstance(value, bool | int | float):
        return format_number(value)
    return escape_markdown(str(value))


_MATH = re.compile(r"(\$\$.*?\$\$|\$[^$]+\$)", re.DOTALL)
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_<>\[\]|])")


def escape_markdown(text: str) -> str:
    r"""Escape Markdown inline syntax in ``text``, leaving ``$...$`` math segments untouched.

    Numbers in e-notation become inline math (``1e-06`` is $10^{-6}$).

    Examples:
        >>> escape_markdown("E[X^2] with *p* and $p_i$ | q")
        'E\\[X^2\\] with \\*p\\* and $p_i$ \\| q'
        >>> escape_markdown("alpha 1e-06")
        'alpha $10^{-6}$'
    """
    parts = _MATH.split(text)
    return "".join(
        part if index % 2 else _scientific_text(_MARKDOWN_SPECIALS.sub(r"\\\1", part))
        for index, part in enumerate(parts)
    )


def _scientific_text(text: str) -> str:
    """Numbers in e-notation in plain text (no math, no code) as inline math."""
    return re.sub(r"(?<![\w.\\])" + _SCIENTIFIC.pattern, lambda m: f"${scientific_latex(m)}$", text)


def _primed_latex(name: str) -> str:
    base, _, subscript = name.partition("_")
    stem = base.rstrip("'")
    text = "{" + str(sympy.latex(sympy.Symbol(stem))) + "'" * (len(base) - len(stem)) + "}"
    return text + (f"_{{{subscript}}}" if subscript else "")


class _Printer(LatexPrinter):  # type: ignore[misc]
    """sympy's LaTeX printer, with a power of a sum parenthesised and the identity matrix as I.

    sympy prints ``Sum(...)**2`` as ``\\sum_{i} e^{x_i}^{2}``, which TeX (and MathJax) reject
    as a double exponent when the summand itself ends in a superscript.

    The identity matrix is printed ``I``: ``Identity(n)`` (sympy: ``\\mathbb{I}``), an explicit
    identity matrix (sympy: its ones and zeros) as ``I_{n}``, and the number term of a sum of
    non-commuting symbols (the proofs write ``1 - gamma*Pi*P`` for the matrix
    ``I - gamma Pi P``; sympy: ``- \\gamma \\Pi P + 1``) as ``I``, first.
    """

    #: When set (a display too wide for the page), the logistic function is printed as
    #: sigma: e^x/(e^x + 1) as sigma(x) and 1/(e^x + 1) as sigma(-x) (see :func:`display_latex`).
    logistic = False

    def _print_Mul(self, expr: Any) -> str:
        if self.logistic:
            folded = _fold_logistic(expr)
            if folded is not expr:
                return str(self._print(folded))
        return str(super()._print_Mul(expr))

    def _needs_mul_brackets(self, expr: Any, first: bool = False, last: bool = False) -> bool:
        """sympy's rule, with each named sub-expression seen as the one symbol it prints as.

        sympy brackets a factor that contains a sum (it would run into the next factor), and
        a name whose *definition* has a sum (``pi'_j`` for a softmax) counts: ``(pi'_j) Q_j``.
        A name prints as one symbol, so it is judged as one.
        """
        needed = bool(super()._needs_mul_brackets(expr, first=first, last=last))
        if not needed or last or not expr.has(Named):
            return needed
        if super()._needs_mul_brackets(expr, first=first, last=True):
            return True  # bracketed for another reason than a sum inside
        return _has_printed_sum(expr)

    def _print_Pow(self, expr: Any) -> str:
        if self.logistic and _logistic_argument(expr) is not None:
            return str(self._print(_SIGMA(-_logistic_argument(expr))))
        if isinstance(expr.base, sympy.Sum):
            base = self._print(expr.base)
            return rf"\left({base}\right)^{{{self._print(expr.exp)}}}"
        return str(super()._print_Pow(expr))

    def _print_Identity(self, expr: Any) -> str:
        return "I"

    def _print_Transpose(self, expr: Any) -> str:
        return re.sub(r"\^\{T\}$", r"^{\\top}", str(super()._print_Transpose(expr)))

    #: When set, entries of a matrix wider than this many typeset characters that are sums
    #: are broken into aligned rows inside their cell (see :func:`display_latex`).
    break_width: int | None = None

    def _print_MatrixBase(self, expr: Any) -> str:
        rows, columns = expr.shape
        if rows == columns and rows >= 2 and expr == sympy.eye(rows):
            return f"I_{{{rows}}}"
        width = self.break_width
        if width is None or rows == 0 or columns == 0:
            return str(super()._print_MatrixBase(expr))
        self.break_width = None  # nested matrices print as sympy does
        try:
            cells = [
                " & ".join(self._cell(expr[i, j], width) for j in range(columns))
                for i in range(rows)
            ]
        finally:
            self.break_width = width
        return r"\left[\begin{matrix}" + r"\\".join(cells) + r"\end{matrix}\right]"

    def _cell(self, entry: Any, width: int) -> str:
        latex = str(self._print(entry))
        if visible_length(latex) <= width:
            return latex
        if isinstance(entry, sympy.Mul):
            return self.broken_product(entry, width) or latex
        if not isinstance(entry, sympy.Add):
            return latex
        rows = _pack(self.signed_terms(entry), width)
        if len(rows) == 1:
            return latex
        lines = [f"&{rows[0]}"] + [rf"&\quad {row}" for row in rows[1:]]
        return "\\begin{aligned}[t]" + r" \\ ".join(lines) + "\\end{aligned}"

    def broken_product(self, expr: Any, width: int) -> str | None:
        r"""A long product ``c (a + b + ...)`` as ``c`` and its widest sum in big parentheses,
        the sum broken into aligned rows at its top-level signs (None if that does not help:
        no sum wider than ``width``, non-commuting factors, or a sum that fits one row)."""
        if not isinstance(expr, sympy.Mul) or not expr.is_commutative:
            return None
        factors = list(expr.args)
        sums = [f for f in factors if isinstance(f, sympy.Add)]
        if not sums:
            return None
        widest = max(sums, key=lambda f: visible_length(str(self._print(f))))
        if visible_length(str(self._print(widest))) <= width:
            return None
        factors.remove(widest)
        rest = ""
        if factors:
            rest = str(self._print(sympy.Mul(*factors, evaluate=False)))
            if rest == "-1":
                rest = "-"
        rows = _pack(self.signed_terms(widest), max(width - visible_length(rest) - 2, 16))
        if len(rows) == 1:
            return None
        lines = [f"&{rows[0]}"] + [rf"&\quad {row}" for row in rows[1:]]
        inner = "\\begin{aligned}[t]" + r" \\ ".join(lines) + "\\end{aligned}"
        return rf"{rest} \left({inner}\right)".strip()

    def signed_terms(self, expr: Any) -> list[tuple[str, str]]:
        """The terms of a sum as (sign, LaTeX) pairs in printing order; sign is "" or "-"."""
        terms = list(self._as_ordered_terms(expr))
        identity: list[Any] = []
        if not expr.is_commutative:
            identity = [t for t in terms if t.is_commutative and t.is_number]
            terms = [t for t in terms if not (t.is_commutative and t.is_number)]
        out: list[tuple[str, str]] = []
        for number in identity:  # c * I, first
            sign = "-" if number.could_extract_minus_sign() else ""
            magnitude = -number if sign else number
            out.append((sign, "I" if magnitude == 1 else f"{self._print(magnitude)} I"))
        for term in terms:
            sign = ""
            if term.could_extract_minus_sign():
                sign, term = "-", -term
            tex = self._print(term)
            if self._needs_add_brackets(term):
                tex = rf"\left({tex}\right)"
            out.append((sign, tex))
        return out

    def _print_Add(self, expr: Any, order: Any = None) -> str:
        if expr.is_commutative or not any(t.is_commutative and t.is_number for t in expr.args):
            return str(super()._print_Add(expr, order=order))
        return _join_terms(self.signed_terms(expr))


_SIGMA = sympy.Function("sigma")


def _has_printed_sum(expr: Any) -> bool:
    """Whether a sum, product or integral of ``expr`` is printed (not inside a name)."""
    if isinstance(expr, Named):
        return False
    if isinstance(expr, (sympy.Sum, sympy.Product, sympy.Integral)):
        return True
    return any(_has_printed_sum(arg) for arg in expr.args if isinstance(arg, sympy.Basic))


def _logistic_argument(expr: Any) -> Any:
    """``x`` if ``expr`` is ``1/(e^x + 1)``, else None."""
    if not (isinstance(expr, sympy.Pow) and expr.exp == -1 and isinstance(expr.base, sympy.Add)):
        return None
    terms = expr.base.args
    if len(terms) != 2 or sympy.Integer(1) not in terms:
        return None
    (other,) = [t for t in terms if t != 1]
    return other.args[0] if isinstance(other, sympy.exp) else None


def _factors(expr: Any) -> list[Any]:
    """The factors of a product, nested unevaluated products flattened."""
    out: list[Any] = []
    for factor in expr.args:
        out += _factors(factor) if isinstance(factor, sympy.Mul) else [factor]
    return out


def _fold_logistic(expr: Any) -> Any:
    """``expr`` (a product) with ``e^x * 1/(e^x + 1)`` as ``sigma(x)``, a lone ``1/(e^x + 1)``
    as ``sigma(-x)`` (``expr`` itself when it has neither)."""
    factors = _factors(expr)
    changed = False
    for index, factor in enumerate(factors):
        argument = _logistic_argument(factor)
        if argument is None:
            continue
        partners = [
            j for j, f in enumerate(factors) if isinstance(f, sympy.exp) and f.args[0] == argument
        ]
        partner = partners[0] if partners else None
        if partner is None:
            factors[index] = _SIGMA(-argument)  # 1/(e^x + 1) = sigma(-x)
        else:
            factors[index] = _SIGMA(argument)
            factors[partner] = sympy.Integer(1)
        changed = True
    if not changed:
        return expr
    return sympy.Mul(*[f for f in factors if f != 1], evaluate=False)


def _join_terms(terms: Sequence[tuple[str, str]], *, first: bool = True) -> str:
    """``a - b + c`` from signed terms; ``first=False`` writes the leading sign too."""
    out = ""
    for index, (sign, tex) in enumerate(terms):
        if index == 0 and first:
            out += ("- " if sign else "") + tex
        else:
            out += (" - " if sign else " + ") + tex
    return out.strip()


def _printer(expression: Any, symbol_names: Any = None) -> _Printer:
    # A primed name ("pi'", "pi'_0") prints as pi'_{0}^{2}: a double exponent in TeX (the
    # prime is a superscript) and no backslash. Print it as a braced group, {\pi'}_{0}^{2}.
    # A transposed name ("rho_0^T") prints with \top, as hand-written statements do.
    symbols = getattr(expression, "atoms", lambda *_: set())(sympy.Symbol)
    primed = {symbol: _primed_latex(symbol.name) for symbol in symbols if "'" in symbol.name}
    primed.update(
        {
            symbol: str(sympy.latex(sympy.Symbol(symbol.name[:-2]))) + r"^{\top}"
            for symbol in symbols
            if symbol.name.endswith("^T") and "'" not in symbol.name
        }
    )
    names = {**primed, **dict(symbol_names or {})}
    settings = {"symbol_names": names} if names else {}
    return _Printer(settings)


def step_latex(expression: Any, symbol_names: Any = None) -> str:
    r"""LaTeX of one derivation expression (sympy's printer; a string is taken as LaTeX).

    Examples:
        >>> import sympy as sp
        >>> step_latex(sp.Symbol("x") ** 2 / 2)
        '\\frac{x^{2}}{2}'
        >>> step_latex(sp.Symbol("pi'_0") ** 2)
        "{\\pi'}_{0}^{2}"
        >>> step_latex(sp.IndexedBase("pi'")[0] ** 2)
        "{{\\pi'}}_{0}^{2}"
        >>> i = sp.Symbol("i", integer=True)
        >>> step_latex(sp.Sum(sp.exp(sp.IndexedBase("x")[i]), (i, 0, 2)) ** 2)
        '\\left(\\sum_{i=0}^{2} e^{{x}_{i}}\\right)^{2}'
    """
    if isinstance(expression, str):
        return expression
    return str(_printer(expression, symbol_names).doprint(expression))


_COMMAND = re.compile(
    r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])|\\(?:mathrm|operatorname|text)"
)


def visible_length(latex: str) -> int:
    r"""About how many characters wide ``latex`` is when typeset (a command counts as one).

    Examples:
        >>> visible_length(r"\left(\gamma \lambda\right)^{l}")
        6
    """
    text = _COMMAND.sub("", latex)
    text = re.sub(r"\\[A-Za-z]+ ?", "x", text)
    return len(re.sub(r"[{}\s]|\\[,;!]", "", text))


#: Typeset characters per line of a display before it is broken into aligned rows.
DISPLAY_WIDTH = 64


def _pack(terms: Sequence[tuple[str, str]], width: int) -> list[str]:
    """Signed terms packed into rows of at most ``width`` visible characters (>= 1 term each)."""
    rows: list[list[tuple[str, str]]] = [[]]
    length = 0
    for term in terms:
        size = visible_length(term[1]) + 2
        if rows[-1] and length + size > width:
            rows.append([])
            length = 0
        rows[-1].append(term)
        length += size
    return [_join_terms(row, first=index == 0) for index, row in enumerate(rows)]


def display_latex(
    expression: Any, relation: str = "", *, symbol_names: Any = None, width: int = DISPLAY_WIDTH
) -> str:
    r"""The LaTeX of one displayed derivation line: ``relation expression``, broken if long.

    A line longer than ``width`` typeset characters whose expression is a sum is broken at its
    top-level ``+`` and ``-`` signs into the rows of an ``aligned`` environment (the relation
    on the first row, later rows indented by ``\quad``), as a textbook breaks a long
    equation. In a long display the logistic function is written
    $\sigma(x) = e^x/(e^x + 1)$ (and $1/(e^x + 1)$ as $\sigma(-x)$). Anything else is one line
    (the page scrolls it sideways if it is too wide).

    Examples:
        >>> import sympy as sp
        >>> display_latex(sp.Symbol("x") + 1, "=")
        '= x + 1'
        >>> x = sp.symbols("x:6")
        >>> print(display_latex(sp.Add(*x), "=", width=12))
        \begin{aligned}[t]
        &= x_{0} + x_{1} \\
        &\quad + x_{2} + x_{3} \\
        &\quad + x_{4} + x_{5}
        \end{aligned}
    """
    prefix = f"{relation} " if relation else ""
    if isinstance(expression, str):
        return prefix + expression
    printer = _printer(expression, symbol_names)
    latex = str(printer.doprint(expression))
    if visible_length(latex) > width and not printer.logistic:
        printer.logistic = True  # a long display: e^x/(e^x + 1) as sigma(x), shorter
        latex = str(printer.doprint(expression))
    if visible_length(latex) > width and isinstance(expression, sympy.MatrixBase):
        printer.break_width = width  # break the long entries inside their cells
        return prefix + str(printer.doprint(expression))
    if visible_length(latex) > width and isinstance(expression, sympy.Mul):
        broken = printer.broken_product(expression, width - visible_length(prefix))
        return prefix + (broken or latex)
    if visible_length(latex) > width and isinstance(expression, sympy.Integral):
        broken = _broken_integral(printer, expression, width - visible_length(prefix))
        return prefix + (broken or latex)
    if visible_length(latex) > width and isinstance(expression, sympy.Subs):
        broken = _broken_derivative_at(printer, expression, width - visible_length(prefix))
        return prefix + (broken or latex)
    if visible_length(latex) <= width or not isinstance(expression, sympy.Add):
        return prefix + latex
    rows = _pack(printer.signed_terms(expression), width)
    if len(rows) == 1:
        return prefix + latex
    lines = [f"&{prefix}{rows[0]}"] + [rf"&\quad {row}" for row in rows[1:]]
    return "\\begin{aligned}[t]\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def top_level_pieces(latex: str, separators: Sequence[str]) -> list[str]:
    r"""``latex`` cut after each separator that is outside braces (``\text{a; b}`` stays
    whole); a piece keeps the separator's first character when that is ``,`` or ``;``.

    Examples:
        >>> top_level_pieces(r"a;\ \text{b; c};\ d", (";\\ ", "; "))
        ['a;', '\\text{b; c};', 'd']
    """
    pieces: list[str] = []
    depth, start, index = 0, 0, 0
    while index < len(latex):
        char = latex[index]
        depth += {"{": 1, "}": -1}.get(char, 0)
        found = next((sep for sep in separators if latex.startswith(sep, index)), None)
        if depth == 0 and found is not None:
            pieces.append(latex[start : index + (1 if found[0] in ",;" else 0)])
            index += len(found)
            start = index
            continue
        index += 1
    pieces.append(latex[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


#: Typeset characters per row of a docstring's display formula (the API page's column is
#: narrower than a claim page's: the formula sits inside the function's description).
DOCSTRING_WIDTH = 56
#: Where a hand-written docstring formula may be cut: after a comma and a wide space.
DOCSTRING_SEPARATORS = (", \\qquad ", ",\\qquad ", " \\qquad ", ", \\quad ")


def split_display(
    latex: str,
    width: int = DISPLAY_WIDTH,
    *,
    separators: Sequence[str] = (",\\ ", ";\\ "),
    joiner: str = "\\ ",
) -> str:
    r"""A hand-written display (a derivation's statement) over aligned rows if it is long.

    The LaTeX is cut at each top-level ``separators`` (outside braces; default ``,\ `` and
    ``;\ ``) and the pieces are packed into rows of at most ``width`` typeset characters,
    pieces of one row joined by ``joiner``; a display that fits, has no such separator, or is
    already laid out (``\\``, ``\begin``), is returned unchanged.

    Examples:
        >>> print(split_display(r"a = b,\ c = d;\ e = f", width=10))
        \begin{aligned}
        &a = b,\ c = d; \\
        &e = f
        \end{aligned}
    """
    if visible_length(latex) <= width:
        return latex
    if "\\\\" in latex or "\\begin" in latex:
        return latex  # already laid out by hand
    pieces = top_level_pieces(latex, separators)
    if len(pieces) == 1:
        return latex
    rows: list[str] = []
    for piece in pieces:
        if rows and visible_length(rows[-1] + piece) <= width:
            rows[-1] += joiner + piece
        else:
            rows.append(piece)
    if len(rows) == 1:
        return latex
    body = [f"&{row.strip()}" for row in rows]
    return "\\begin{aligned}\n" + " \\\\\n".join(body) + "\n\\end{aligned}"


def _broken_derivative_at(printer: _Printer, expression: Any, width: int) -> str | None:
    r"""A first derivative at a point, $\partial_v f |_{v = p}$, of a long ``f``: a sum (or a
    product with a long sum) broken into aligned rows in big parentheses, the bar after them.

    Examples:
        >>> import sympy as sp
        >>> s, N, a = sp.Symbol("s"), sp.Symbol("N"), sp.symbols("a:4")
        >>> terms = sp.Add(*(a[k] * s**k for k in range(1, 4)))
        >>> f = sp.Mul(sp.Pow(N, -1), terms, evaluate=False)
        >>> e = sp.Subs(sp.Derivative(f, s), s, 0)
        >>> print(_broken_derivative_at(_printer(f), e, 24).replace(r"\\ ", "\\\\\n"))
        \left. \frac{\partial}{\partial s} \frac{1}{N} \left(\begin{aligned}[t]&a_{1} s + a_{2} s^{2} \\
        &\quad + a_{3} s^{3}\end{aligned}\right) \right|_{s=0}
    """
    derivative = expression.expr
    if len(expression.variables) != 1 or not isinstance(derivative, sympy.Derivative):
        return None
    if len(derivative.variable_count) != 1 or derivative.variable_count[0][1] != 1:
        return None
    variable = derivative.variable_count[0][0]
    inner, room = derivative.expr, max(width - 8, 16)
    if isinstance(inner, sympy.Mul):
        body = printer.broken_product(inner, room)
    elif isinstance(inner, sympy.Add):
        rows = _pack(printer.signed_terms(inner), room)
        lines = [f"&{rows[0]}"] + [rf"&\quad {row}" for row in rows[1:]]
        aligned = "\\begin{aligned}[t]" + r" \\ ".join(lines) + "\\end{aligned}"
        body = None if len(rows) == 1 else rf"\left({aligned}\right)"
    else:
        body = None
    if body is None:
        return None
    head = rf"\frac{{\partial}}{{\partial {printer._print(variable)}}}"
    point = f"{printer._print(expression.variables[0])}={printer._print(expression.point[0])}"
    return rf"\left. {head} {body} \right|_{{{point}}}"


def _broken_integral(printer: _Printer, expression: Any, width: int) -> str | None:
    """A one-variable definite integral of a long product, its sum broken in parentheses."""
    if len(expression.limits) != 1 or len(expression.limits[0]) != 3:
        return None
    variable, low, high = expression.limits[0]
    integrand = printer.broken_product(expression.function, width - 8)
    if integrand is None:
        return None
    bounds = rf"\int\limits_{{{printer._print(low)}}}^{{{printer._print(high)}}}"
    return rf"{bounds} {integrand}\, d{printer._print(variable)}"


# ----------------------------------------------------------------------------- rules
#: Greek letters written out in ASCII rules, as LaTeX.
GREEK = {
    **{
        name: "\\" + name
        for name in (
            "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho "
            "sigma tau phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega ell"
        ).split()
    },
    "eps": r"\epsilon",
}
#: Function and operator names written out in ASCII rules, as LaTeX (``\E``, ``\KL``: macros
#: of docs/conf.py).
FUNCTIONS = {
    "log": r"\log",
    "exp": r"\exp",
    "sum": r"\sum",
    "prod": r"\prod",
    "int": r"\int",
    "min": r"\min",
    "max": r"\max",
    "grad": r"\nabla",
    "Pr": r"\Pr",
    "KL": r"\KL",
    "Var": r"\operatorname{Var}",
    "Cov": r"\operatorname{Cov}",
    "diag": r"\operatorname{diag}",
    "clip": r"\operatorname{clip}",
}
#: Short English words that are never a product of two variables.
_WORDS = set(
    "a al an am as at be by do eq et go he if in is it me my no of on or so to up us we vs".split()
)
_OPERATORS = {
    "=": "=",
    "+": "+",
    "-": "-",
    "*": r"\cdot",
    ".": r"\cdot",
    "/": "/",
    "<": "<",
    ">": ">",
    "<=": r"\le",
    ">=": r"\ge",
    "!=": r"\ne",
    "->": r"\to",
    "~": r"\sim",
    "||": r"\|",
    "+/-": r"\pm",
    "+-": r"\pm",
    "-+": r"\mp",
}
_BRACKETS = {"(": ")", "[": "]", "{": "}"}
_NAME = re.compile(r"[A-Za-z]+")
_INNER_OPERATOR = re.compile(r"\+/-|\+-|-\+|<=|>=|!=|->|\|\||~|\.\.\.?")


def _chunks(text: str) -> list[str] | None:
    """``text`` split at spaces outside brackets (None if its brackets do not balance)."""
    out, current, stack = [], "", []
    for char in text:
        if char in _BRACKETS:
            stack.append(_BRACKETS[char])
        elif char in _BRACKETS.values():
            if not stack or stack.pop() != char:
                return None
        if char == " " and not stack:
            out.append(current)
            current = ""
        else:
            current += char
    if stack:
        return None
    return [*out, current]


def _allowed_name(name: str, start: int, chunk: str) -> bool:
    """Whether a run of letters in a chunk can be math: a variable, a Greek letter, a function."""
    if name in GREEK or name in FUNCTIONS or name == "E":
        return True
    if start > 0 and chunk[start - 1] in "_^":  # a subscript word: pi_ref, L^CLIP
        return True
    if name[0] == "d" and (name[1:] in GREEK or (len(name) == 2 and name not in _WORDS)):
        return True
    return len(name) == 1 or (len(name) == 2 and name not in _WORDS and not name.isupper())


def _kind(chunk: str) -> str:
    """'op', 'number', 'function' (a bare function name), 'math' or 'text'."""
    if chunk in _OPERATORS:
        return "op"
    if re.fullmatch(r"\(?[\d.,\-]+\)?", chunk) and any(c.isdigit() for c in chunk):
        return "number"  # 0.5, -1, and (9) or (2017): an equation number, a year
    if re.fullmatch(r"[\w'+\-]+-(?:th|st|nd|rd)", chunk):
        return "text"  # k-th, (t+1)-st: an ordinal
    if re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]\.?", chunk):
        return "text"  # i.i.d., e.g.: abbreviations
    if re.search(r"[A-Za-z]{3,}-[A-Za-z]", chunk):
        return "text"  # log-sum-exp, on-policy: hyphenated words
    if chunk in FUNCTIONS:
        return "function"
    if not any(char.isalnum() for char in chunk):  # "|", "--", "(...)": punctuation
        return "text"
    if not chunk or re.search(r"[\\$#%&\"`@!?;:]", chunk.replace("!=", "")):
        return "text"
    if chunk.endswith("'s") or chunk in ("e.g.", "i.e.", "a", "I") or chunk in _WORDS:
        return "text"
    if chunk.isalpha() and len(chunk) == 2 and chunk not in GREEK and chunk[0] != "d":
        return "text"
    if any(not _allowed_name(m.group(), m.start(), chunk) for m in _NAME.finditer(chunk)):
        return "text"
    return "math"


def _group(text: str, position: int) -> tuple[str, int]:
    """The script argument starting at ``text[position]``: a braced or bracketed group, or a
    name (with primes), a number, or one character."""
    if position >= len(text):
        return "", position
    char = text[position]
    if char in "({":
        depth, end = 0, position
        for end in range(position, len(text)):
            depth += {"(": 1, "{": 1, ")": -1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
        inner = text[position + 1 : end]
        if char == "(" and re.fullmatch(r"[A-Za-z0-9]", inner):
            inner = f"({inner})"  # Z^(k): the k-th derivative, not a power
        return _convert(inner), end + 1
    match = re.compile(r"-?[A-Za-z]+'*|-?\d+'*|\*").match(text, position)
    if match is None:
        return _convert(char), position + 1
    word = match.group()
    if word == "*":
        latex = "*"  # b^*: a starred superscript, not a product
    elif re.fullmatch(r"[A-Za-z]{3,}", word) and word not in GREEK and word not in FUNCTIONS:
        latex = rf"\mathrm{{{word}}}"  # pi_ref, L^CLIP
    else:
        latex = _convert(word)
    end = match.end()
    if re.fullmatch(r"[A-Za-z]+'*", word) and text[end : end + 1] == "_":
        # a subscript with its own subscript: E_pi_old is E_{pi_{old}}, not E_{pi}_{old}
        inner, end = _group(text, end + 1)
        latex = f"{latex}_{{{inner}}}"
    return latex, end


_SCIENTIFIC = re.compile(r"([-+]?\d+(?:\.\d+)?)e([-+]?)0*(\d+)(?![\w.])")


def scientific_latex(match: re.Match[str]) -> str:
    r"""A number in e-notation (a match of ``_SCIENTIFIC``) as LaTeX.

    ``1e-06`` is ``10^{-6}``, ``2.5e-3`` is ``2.5 \times 10^{-3}``.
    """
    mantissa, sign, exponent = match.groups()
    power = f"10^{{{'-' if sign == '-' else ''}{exponent}}}"
    if mantissa in ("1", "+1"):
        return power
    if mantissa == "-1":
        return f"-{power}"
    return rf"{mantissa.lstrip('+')} \times {power}"


def _convert(text: str) -> str:
    """ASCII math (no surrounding prose) as LaTeX."""
    out: list[str] = []
    index = 0
    while index < len(text):
        scientific = _SCIENTIFIC.match(text, index)
        if scientific is not None and not text[index - 1 : index].isalnum():
            out.append(scientific_latex(scientific))
            index = scientific.end()
            continue
        operator = _INNER_OPERATOR.match(text, index)
        if operator is not None:
            token = operator.group()
            out.append(r" \dots " if token.startswith("..") else f" {_OPERATORS[token]} ")
            index = operator.end()
            continue
        char = text[index]
        if char in "_^":
            argument, index = _group(text, index + 1)
            if char == "^" and argument == "T":  # rho_0^T: the transpose
                argument = r"\top"
            out.append(f"{char}{{{argument}}}")
            continue
        if char in "{}":  # a set {0, 1}: literal braces (a group after _ or ^ is read above)
            out.append("\\" + char)
            index += 1
            continue
        if char == "*":
            # pi* (the optimal policy): a star after a name; a*b: a product
            after = text[index + 1 : index + 2]
            before = text[index - 1 : index] if index else ""
            name = re.search(r"[A-Za-z]+'*$", text[:index])
            optimal = name is not None and (name.group() in GREEK or name.group().isupper())
            star = before.isalnum() or before in ("'", ")")
            ends = ("", " ", "_", ")", "/", ",") + (("(",) if optimal else ())
            out.append("^{*}" if star and after in ends else r" \cdot ")
            index += 1
            continue
        if char == "." and not (
            text[index - 1 : index].isdigit() and text[index + 1 : index + 2].isdigit()
        ):
            out.append(r" \cdot ")
            index += 1
            continue
        if char in "%&#":
            out.append("\\" + char)
            index += 1
            continue
        name = _NAME.match(text, index)
        if name is None:
            out.append(char)
            index += 1
            continue
        word = name.group()
        index = name.end()
        follows = text[index : index + 1]
        if word in GREEK:
            out.append(GREEK[word] + " ")
        elif word == "E" and (follows in ("_", "[") or text[index : index + 2].strip() != ""):
            out.append(r"\E ")
        elif word in FUNCTIONS:
            out.append(FUNCTIONS[word] + " ")
        elif word[0] == "d" and word[1:] in GREEK:
            out.append("d" + GREEK[word[1:]] + " ")
        elif re.fullmatch(r"[A-Za-z]", word) and re.match(r"\d+(?!\d*[.\w])", text[index:]):
            digits = re.match(r"\d+", text[index:])
            assert digits is not None
            out.append(f"{word}_{{{digits.group()}}}")  # k1 -> k_1
            index += digits.end()
        else:
            out.append(word)
    latex = re.sub(r" +", " ", "".join(out)).strip()
    return re.sub(r" +(?=[_^)\]}'])|(?<=[({\[]) +", "", latex)


def ascii_math_to_latex(text: str) -> str | None:
    r"""A formula written in ASCII (``E_q[X^2]``, ``sum_i p_i``, ``gamma lambda``) as LaTeX.

    Greek letters and the functions of :data:`FUNCTIONS` written out become their LaTeX,
    ``x_ab`` and ``x^(l+1)`` become ``x_{ab}``, ``x^{l+1}``, ``<=``, ``->``, ``~``, ``||``,
    ``+/-`` their symbols, ``pi*`` is ``\pi^{*}`` and ``k1`` is ``k_{1}``. Returns None when
    ``text`` does not look like a formula (its brackets do not balance, it holds a word).

    Examples:
        >>> ascii_math_to_latex("E_q[(p/q)^2 f^2]")
        '\\E_{q}[(p/q)^{2} f^{2}]'
        >>> ascii_math_to_latex("KL(pi_theta || pi_ref)")
        '\\KL (\\pi_{\\theta} \\| \\pi_{\\mathrm{ref}})'
        >>> ascii_math_to_latex("the sum") is None
        True
    """
    chunks = _chunks(text)
    if chunks is None or any(_kind(c) == "text" for c in chunks if c):
        return None
    return " ".join(_OPERATORS[c] if _kind(c) == "op" else _convert(c) for c in chunks if c).strip()


_TRAILING = re.compile(r"[,;:.]+$")


def _rule_pieces(text: str) -> list[tuple[bool, str]]:
    """``text`` as (is_math, piece) pairs, pieces of math converted to LaTeX."""
    chunks = _chunks(text)
    if chunks is None:
        return [(False, text)]
    kinds = []
    for chunk in chunks:
        core = _TRAILING.sub("", chunk) if chunk not in _OPERATORS else chunk
        kinds.append((chunk, core, _kind(core) if core else "text"))
    # a bare function name is math only when an argument follows it ("log x", not "the log of")
    for index, (chunk, core, kind) in enumerate(kinds):
        if kind == "function":
            following = kinds[index + 1][2] if index + 1 < len(kinds) else "text"
            if chunk == core and following in ("math", "function", "number"):
                kinds[index] = (chunk, core, "math")
            else:
                kinds[index] = (chunk, core, "text")
    pieces: list[tuple[bool, str]] = []
    run: list[str] = []

    def close(trailing: str = "") -> None:
        while run and _kind(run[-1]) == "op":  # "x ~" then prose: the operator stays text
            trailing = f" {run.pop()}" + (f"{trailing}" if trailing else "")
        kinds_in_run = [_kind(c) for c in run]
        substantive = "math" in kinds_in_run or "function" in kinds_in_run
        relation = len(run) >= 2 and "op" in kinds_in_run  # ">= 0"
        if substantive or relation:
            latex = " ".join(
                _OPERATORS[c]
                if kind == "op"
                else (r"\E" if c == "E" and index + 1 < len(run) else _convert(c))
                for index, (c, kind) in enumerate(zip(run, kinds_in_run, strict=True))
            ).strip()
            pieces.append((True, latex))
        elif run:
            pieces.append((False, " ".join(run)))
        run.clear()
        if trailing:
            pieces.append((False, trailing))

    for index, (chunk, core, _unused) in enumerate(kinds):  # "= I": the identity matrix
        neighbours = [kinds[j][2] for j in (index - 1, index + 1) if 0 <= j < len(kinds)]
        if core == "I" and "op" in neighbours:
            kinds[index] = (chunk, core, "math")
    if len(kinds) > 1 and kinds[0][1] == "A" and kinds[1][2] == "text":  # "A KL penalty ..."
        kinds[0] = (kinds[0][0], kinds[0][1], "text")
    for chunk, core, kind in kinds:
        if kind in ("math", "op", "number"):
            run.append(core)
            if chunk != core:  # trailing punctuation ends the formula
                close(chunk[len(core) :])
            continue
        close()
        closing = chunk.rfind(")")
        if (
            kind == "text"
            and chunk[:1] == "("
            and closing > 1
            and not chunk[closing + 1 :].strip(",;:.")
        ):
            if _chunks(chunk[1:closing]) is not None:
                pieces.append((False, "("))
                pieces += _rule_pieces(chunk[1:closing])
                pieces.append((False, chunk[closing:]))
                continue
        pieces.append((False, chunk))
    close()
    return pieces


def _escape_text(text: str) -> str:
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def rule_markdown(rule: str, *, automatic: bool = True) -> str:
    r"""A rule string of a derivation step as Markdown: its math typeset, the rest text.

    ``$...$`` in the rule is inline LaTeX, typeset as written; a rule with any ``$`` is taken
    as written (only its ``$...$`` parts are math). In a rule without ``$``, and with
    ``automatic``, formulas written in ASCII (runs of variables, Greek letters and operators:
    ``d log f = df / f``, ``E_q[X]``, ``sum_i q_i k_i``, ``(gamma lambda)^(l+1)``) become inline
    math (:func:`ascii_math_to_latex`); words stay text, with Markdown's special characters
    escaped.

    Examples:
        >>> rule_markdown("d log f = df / f")
        '$d \\log f = df / f$'
        >>> rule_markdown("move gamma lambda into the sum")
        'move $\\gamma \\lambda$ into the sum'
        >>> rule_markdown("the identity $I^{-1} = I$ and *no* other_rule")
        'the identity $I^{-1} = I$ and \\*no\\* other\\_rule'
        >>> rule_markdown("q(x) > 0 (support condition): E_p[f]")
        '$q(x) > 0$ (support condition): $\\E_{p}[f]$'
    """
    if "$" in rule or not automatic:
        return escape_markdown(rule)
    out = ""
    for is_math, piece in _rule_pieces(rule):
        if is_math:
            text = f"${piece}$"
        else:
            text = _escape_text(piece)
        if (
            out
            and not out.endswith(("(", " "))
            and not piece.startswith((")", ",", ";", ":", ".", " "))
        ):
            out += " "
        out += text
    out = re.sub(r"^([-+#>])", r"\\\1", out.strip())
    return re.sub(r"^(\d+)\. ", r"\1\\. ", out)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown pipe table (cells must already be escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- docstrings
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)((?:[^$\n]|\n(?![ \t]*\n))+?)(?<![\\\s])\$(?!\$)")
_LITERAL = re.compile(r"(``.+?``)", re.DOTALL)


def _inline_to_role(text: str) -> str:
    parts = _LITERAL.split(text)
    return "".join(
        part if index % 2 else _INLINE.sub(lambda m: f":math:`{m.group(1)}`", part)
        for index, part in enumerate(parts)
    )


def _is_doctest(line: str) -> bool:
    stripped = line.lstrip()
    return stripped.startswith((">>>", "... ")) or stripped == "..."


def _display_math(lines: Sequence[str]) -> list[tuple[str, bool]]:
    """Lines with ``$$`` blocks turned into ``.. math::`` blocks; True marks lines to keep as is."""
    out: list[tuple[str, bool]] = []
    index = 0
    in_doctest = False  # a doctest block runs from a ">>>" line to the next blank line
    while index < len(lines):
        line = lines[index]
        in_doctest = _is_doctest(line) or (in_doctest and bool(line.strip()))
        masked = _LITERAL.sub(lambda m: "x" * len(m.group(0)), line)
        start = -1 if in_doctest else masked.find("$$")
        if start == -1:
            out.append((line, in_doctest))
            index += 1
            continue
        block = line[start + 2 :]
        end = index
        while "$$" not in block and end + 1 < len(lines):
            end += 1
            block += "\n" + lines[end]
        if "$$" not in block:  # unbalanced: leave the text as it is
            out.append((line, False))
            index += 1
            continue
        body, _, after = block.partition("$$")
        before = line[:start]
        indent = " " * (len(line) - len(line.lstrip()))
        if before.strip():
            out += [(before.rstrip(), False), ("", False)]
        out += [(f"{indent}.. math::", True), ("", True)]
        body_lines = [text.strip() for text in body.strip("\n").split("\n")]
        one_line = " ".join(text for text in body_lines if text)
        laid_out = split_display(
            one_line, DOCSTRING_WIDTH, separators=DOCSTRING_SEPARATORS, joiner=" \\qquad "
        )
        if laid_out != one_line:  # a long formula over aligned rows (the API page is narrow)
            body_lines = laid_out.split("\n")
        out += [(f"{indent}   {text}" if text else "", True) for text in body_lines]
        out.append(("", True))
        if after.strip():
            out.append((indent + after.strip(), False))
        index = end + 1
    return out


def dollar_math_to_rst(lines: Sequence[str]) -> list[str]:
    r"""Turn the ``$$ ... $$`` and ``$ ... $`` math of a docstring into reStructuredText math.

    rlmath docstrings write LaTeX between dollars (house style); autodoc reads docstrings as
    reStructuredText, which has no dollar math. Display math becomes a ``.. math::`` block
    (indented like the ``$$`` line), inline math a ``:math:`` role (also when it runs over a
    line break); doctest lines (``>>>``, ``...``) and ````literals```` are left alone.

    Examples:
        >>> dollar_math_to_rst(["Sum $x_i$ is", "", "  $$ a = b", "     + c $$", "done."])
        ['Sum :math:`x_i` is', '', '  .. math::', '', '     a = b', '     + c', '', 'done.']
        >>> dollar_math_to_rst(["so $|a| =", "  b$ holds"])
        ['so :math:`|a| =', '  b` holds']
        >>> dollar_math_to_rst(["``$$`` is literal", ">>> f('$x$')", "'$x$'"])
        ['``$$`` is literal', ">>> f('$x$')", "'$x$'"]
    """
    out: list[str] = []
    chunk: list[str] = []
    for line, keep in [*_display_math(lines), ("", True)]:
        if keep:
            if chunk:
                out += _inline_to_role("\n".join(chunk)).split("\n")
                chunk = []
            out.append(line)
        else:
            chunk.append(line)
    return out[:-1]
