"""A small Sphinx extension for the rlmath site: dollar math in docstrings.

rlmath docstrings write their LaTeX between dollars (``$$ ... $$`` and ``$ ... $``), which
MyST understands in Markdown pages but autodoc, reading docstrings as reStructuredText, does
not. This extension rewrites docstring math into ``.. math::`` blocks and ``:math:`` roles
(:func:`rlmath.docs.formatting.dollar_math_to_rst`) after napoleon has turned the Google-style
sections into reStructuredText.
"""

from __future__ import annotations

from typing import Any

from rlmath.docs.formatting import dollar_math_to_rst

#: After napoleon (which listens with the default priority 500).
PRIORITY = 600


def process_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """``autodoc-process-docstring`` handler: rewrite the dollar math of ``lines`` in place."""
    lines[:] = dollar_math_to_rst(lines)


def setup(app: Any) -> dict[str, Any]:
    """Register the handler (Sphinx calls this for each extension)."""
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", process_docstring, priority=PRIORITY)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
