"""Every public reference function is called by some claim, so `rlmath verify` runs it.

Users check their code against :mod:`rlmath.reference` and :mod:`rlmath.llm_reference`; a
function that no claim calls is checked only by unit tests, and an injected error in it would
leave `rlmath verify` green (issue "The reference under proof").
"""

from __future__ import annotations

import re

import pytest

import rlmath.llm_reference
import rlmath.reference
from rlmath.verify import proofs_directory

#: Public names no claim names, each with the reason.
NOT_CALLED_DIRECTLY = {
    "AGGREGATION_MODES": "a constant: the names of aggregate_loss's modes",
}


def _proof_text() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8")
        for path in sorted(proofs_directory().glob("*.py"))
        if not path.name.startswith("_")
    )


@pytest.mark.parametrize(
    "module", [rlmath.reference, rlmath.llm_reference], ids=lambda m: m.__name__
)
def test_every_reference_function_is_called_by_a_claim(module):
    text = _proof_text()
    uncalled = [
        name
        for name in module.__all__
        if name not in NOT_CALLED_DIRECTLY and not re.search(rf"\b{name}\b", text)
    ]
    assert not uncalled, f"no proof file calls {module.__name__}.{uncalled}"


def test_the_exemptions_are_still_public_names_that_no_claim_names():
    public = set(rlmath.reference.__all__) | set(rlmath.llm_reference.__all__)
    assert set(NOT_CALLED_DIRECTLY) <= public
    text = _proof_text()
    named = [name for name in NOT_CALLED_DIRECTLY if re.search(rf"\b{name}\b", text)]
    assert not named, f"claimed now, drop the exemption: {named}"
