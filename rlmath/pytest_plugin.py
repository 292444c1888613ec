"""pytest plugin: the ``rlmath_conforms`` fixture (installed with rlmath; no configuration).

Use it in your own test suite::

    def test_my_gae(rlmath_conforms):
        rlmath_conforms(my_gae, "generalized_advantage_estimation", seed=0)

It calls :func:`rlmath.assert_conforms` (the implementation runs in a worker process, with
time limits), so a non-conforming implementation fails the test with the full report, and
pytest's traceback starts at your test, not inside rlmath.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def rlmath_conforms() -> Callable[..., Any]:
    """``rlmath_conforms(impl, spec, **options)``: assert that ``impl`` conforms to ``spec``."""

    def conforms(impl: Callable[..., Any], spec: Any, **options: Any) -> Any:
        __tracebackhide__ = True
        from rlmath.conformance import assert_conforms

        return assert_conforms(impl, spec, **options)

    return conforms
