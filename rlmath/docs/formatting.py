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

__all__ = [
    "RELATION_LATEX",
    "dollar_math_to_rst",
    "escape_markdown",
    "format_number",
    "format_value",
    "step_latex",
    "table",
]

#: ``Step.relation`` (previous ``relation`` this) as the LaTeX that starts the line.
RELATION_LATEX = {"=": "=", "<=": r"\le", ">=": r"\ge"}


def format_number(value: Any, digits: int = 3) -> str:
    """A number as text: ints exactly, floats to ``digits`` significant digits, no ``-0``.

    Non-finite floats (and the strings ``"inf"``/``"nan"`` that JSON evidence uses for them)
    are spelled ``inf``, ``-inf``, ``nan``.

    Examples:
        >>> format_number(2.185486451815913e-16), format_number(40), format_number(-0.0001)
        ('2.19e-16', '40', '-0.0001')
        >>> format_number(-1e-300, digits=1), format_number(float("nan")), format_number("inf")
        ('-1e-300', 'nan', 'inf')
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

    Examples:
        >>> escape_markdown("E[X^2] with *p* and $p_i$ | q")
        'E\\[X^2\\] with \\*p\\* and $p_i$ \\| q'
    """
    parts = _MATH.split(text)
    return "".join(
        part if index % 2 else _MARKDOWN_SPECIALS.sub(r"\\\1", part)
        for index, part in enumerate(parts)
    )


def _primed_latex(name: str) -> str:
    base, _, subscript = name.partition("_")
    stem = base.rstrip("'")
    text = "{" + str(sympy.latex(sympy.Symbol(stem))) + "'" * (len(base) - len(stem)) + "}"
    return text + (f"_{{{subscript}}}" if subscript else "")


class _Printer(LatexPrinter):  # type: ignore[misc]
    """sympy's LaTeX printer, with a power of a sum parenthesised.

    sympy prints ``Sum(...)**2`` as ``\\sum_{i} e^{x_i}^{2}``, which TeX (and MathJax) reject
    as a double exponent when the summand itself ends in a superscript.
    """

    def _print_Pow(self, expr: Any) -> str:
        if isinstance(expr.base, sympy.Sum):
            base = self._print(expr.base)
            return rf"\left({base}\right)^{{{self._print(expr.exp)}}}"
        return str(super()._print_Pow(expr))


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
    # A primed name ("pi'", "pi'_0") prints as pi'_{0}^{2}: a double exponent in TeX (the
    # prime is a superscript) and no backslash. Print it as a braced group, {\pi'}_{0}^{2}.
    primed = {
        symbol: _primed_latex(symbol.name)
        for symbol in getattr(expression, "atoms", lambda *_: set())(sympy.Symbol)
        if "'" in symbol.name
    }
    names = {**primed, **dict(symbol_names or {})}
    settings = {"symbol_names": names} if names else {}
    return str(_Printer(settings).doprint(expression))


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
