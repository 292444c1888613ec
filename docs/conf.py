"""Sphinx configuration of the rlmath documentation.

Build: ``rlmath docs && sphinx-build -W --keep-going -b html docs docs/_build/html``
(``pip install "rlmath[docs]"``). The Markdown pages (MyST) are generated from the claims by
``rlmath docs``; ``api.md`` and ``conformance.md`` are written by hand.

Math is typeset by MathJax 3 served from the site itself: the files come from the PyPI
package ``sphinx-mathjax-offline`` (MathJax 3.2.2), copied into ``_static/mathjax`` at build
time, so the built site needs no network when it is viewed.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from rlmath import __version__

project = "rlmath"
author = "rlmath developers"
copyright = "rlmath developers"  # noqa: A001 - Sphinx's name
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "rlmath.docs.sphinx_extension",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
root_doc = "index"

# ----------------------------------------------------------------------------- MyST
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# ----------------------------------------------------------------------------- math
#: The macros every page may use, defined once (house style): \E and \KL.
MATH_MACROS = {"E": r"\mathbb{E}", "KL": r"\mathrm{KL}"}
mathjax3_config = {"tex": {"macros": MATH_MACROS}}


def _mathjax_directory() -> Path:
    """The ``mathjax`` folder shipped by the ``sphinx-mathjax-offline`` wheel."""
    try:
        distribution = importlib.metadata.distribution("sphinx-mathjax-offline")
    except importlib.metadata.PackageNotFoundError as error:
        raise RuntimeError(
            'MathJax is served from the site: pip install "rlmath[docs]" '
            "(it brings sphinx-mathjax-offline)"
        ) from error
    for file in distribution.files or ():
        if file.name == "tex-chtml.js" and file.parent.name == "mathjax":
            return Path(str(distribution.locate_file(file))).parent
    raise RuntimeError("sphinx-mathjax-offline is installed but has no mathjax/tex-chtml.js")


# The folder is copied to _static/mathjax; mathjax_path is relative to _static. The site's own
# stylesheet (_static/rlmath.css: display math and code scroll instead of being cut off at the
# right edge, the tags naming each step's sympy rewriting, the summary box) is added to furo's.
_MATHJAX = _mathjax_directory()
html_static_path = ["_static", str(_MATHJAX.parent)]
html_css_files = ["rlmath.css"]
mathjax_path = "mathjax/tex-chtml.js"

# ----------------------------------------------------------------------------- autodoc
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: no duplicate entries for dataclass fields

# ----------------------------------------------------------------------------- HTML
html_theme = "furo"
html_title = f"rlmath {__version__}"
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
