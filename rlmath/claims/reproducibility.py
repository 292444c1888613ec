"""Examples that are a function of the seed alone: Hypothesis settings and the constant pool."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.strategies import SearchStrategy

__all__ = ["draw_examples", "local_constants_neutralised", "seed_only_generation"]


def local_constants_neutralised() -> bool:
    """Whether this Hypothesis version has the private hook that :func:`seed_only_generation` uses.

    ``tests/test_claims.py`` asserts this is True for the installed version, so that a
    Hypothesis upgrade that renames the hook fails a test instead of silently making examples
    depend on the imported modules.
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants  # noqa: F401
    except ImportError:
        return False
    return hasattr(providers, "_get_local_constants") and hasattr(providers, "CONSTANTS_CACHE")


@contextmanager
def seed_only_generation() -> Iterator[None]:
    """Make Hypothesis's examples a function of the seed (and Hypothesis's version) alone.

    Recent Hypothesis versions mix literal constants harvested from the *local* modules loaded
    in the process (not site-packages, not tests) into generation. The examples of a leg would
    then depend on which modules happen to be imported, and differ between a source checkout
    and an installed wheel, so evidence would not be reproducible from ``--seed``. While a leg
    generates examples, the local-constant pool is empty. (A private hook: on Hypothesis
    versions without it this does nothing; :func:`local_constants_neutralised` tells which.)
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants

        original = providers._get_local_constants
        cache = providers.CONSTANTS_CACHE
    except (ImportError, AttributeError):  # pragma: no cover - other Hypothesis versions
        yield
        return
    empty = Constants()
    providers._get_local_constants = lambda: empty
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


class _Enough(BaseException):
    """Raised inside a Hypothesis run to stop drawing once enough examples are collected."""


#: (id of the strategy, count, seed) -> (the strategy, its examples): a claim's Monte-Carlo
#: leg draws the same examples for the true claim and for each mutant. The strategy is kept
#: with its examples so that its id cannot be reused by another object while cached.
_DRAWN: dict[tuple[int, int, int], tuple[SearchStrategy[Any], list[Any]]] = {}
_DRAWN_LIMIT = 256


def draw_examples(strategy: SearchStrategy[Any], count: int, seed: int) -> list[Any]:
    """``count`` examples from ``strategy``, reproducibly from ``seed`` (Hypothesis's generator).

    Hypothesis's first draws are its simplest examples, so strategies used here should exclude
    degenerate cases (a single action, say) in which no mutant can be seen. The examples are a
    function of (strategy, count, seed), so they are drawn once per process and each call gets
    a deep copy (a caller may change an example in place).

    Raises:
        ValueError: if the strategy yields fewer than ``count`` examples.
    """
    key = (id(strategy), count, seed)
    cached = _DRAWN.get(key)
    if cached is not None and cached[0] is strategy:
        return copy.deepcopy(cached[1])
    drawn = _drawn_by_hypothesis(strategy, count, seed)
    try:
        kept = copy.deepcopy(drawn)
    except Exception:  # an example that cannot be copied is drawn again next time
        return drawn
    if len(_DRAWN) >= _DRAWN_LIMIT:
        _DRAWN.clear()
    _DRAWN[key] = (strategy, kept)
    return drawn


def _drawn_by_hypothesis(strategy: SearchStrategy[Any], count: int, seed: int) -> list[Any]:
    drawn: list[Any] = []

    def collect(example: Any) -> None:
        drawn.append(example)
        if len(drawn) >= count:
            raise _Enough  # a BaseException: Hypothesis stops at once, no replay or shrinking

    try:
        with seed_only_generation():
            hypothesis_seed(seed)(
                settings(
                    max_examples=max(count * 4, 10),
                    database=None,
                    deadline=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )(given(strategy)(collect))
            )()
    except _Enough:
        pass
    if len(drawn) < count:
        raise ValueError(
            f"the strategy produced only {len(drawn)} distinct examples, {count} asked"
        )
    return drawn
