"""A small Sphinx extension for the rlmath site: dollar math in docstrings.

rlmath docstrings write their LaTeX between dollars (``$$ ... $$`` and ``$ ... $``), which
MyST understands in Markdown pages but autodoc, reading docstrings as reStructuredText, does
not. This extension rewrites docstring math into ``.. math::`` blocks and ``:math:`` roles
(:func:`rlmath.docs.formatting.dollar_math_to_rst`) after napoleon has turned the Google-style
sections into reStructuredText.

Before napoleon, the first line of a property's, attribute's or module constant's docstring
loses a ``summary: more`` colon (napoleon would read the words before it as the *type* and
print a "Type" field holding the summary).

MathJax is loaded on every page (``set_html_assets_policy("always")``): the sidebar of every
page lists the claim titles, and some hold math.
"""

from __future__ import annotations

import re
from typing import Any

from rlmath.docs.formatting import dollar_math_to_rst

#: After napoleon (which listens with the default priority 500).
PRIORITY = 600
#: Before napoleon.
EARLY_PRIORITY = 400
_INLINE_TYPE = re.compile(r"^(\s*[^:`]+?):\s+(\S)")


def untype_first_line(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """``autodoc-process-docstring`` handler (before napoleon): no inline type in a property.

    Examples:
        >>> lines = ["The statement's LaTeX: rendered from sympy.", "", "More."]
        >>> untype_first_line(None, "property", "x", None, None, lines)
        >>> lines[0]
        "The statement's LaTeX, rendered from sympy."
    """
    if what in ("property", "attribute", "data") and lines:
        lines[0] = _INLINE_TYPE.sub(r"\1, \2", lines[0], count=1)


def process_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """``autodoc-process-docstring`` handler: rewrite the dollar math of ``lines`` in place."""
    lines[:] = dollar_math_to_rst(lines)


def setup(app: Any) -> dict[str, Any]:
    """Register the handler (Sphinx calls this for each extension)."""
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", untype_first_line, priority=EARLY_PRIORITY)
    app.connect("autodoc-process-docstring", process_docstring, priority=PRIORITY)
    # MathJax on every page: the navigation lists the claim titles, which hold math, also on
    # pages without math of their own (libraries.html showed raw \( ... \) in its sidebar)
    app.set_html_assets_policy("always")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
