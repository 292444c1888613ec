"""rlmath: proves and checks the mathematics of policy-gradient RL, PPO, actor-critic and RLHF.

Layout: ground truth (``mdp``, ``policy``, ``exact``; ``sequence_model`` for token-level
policies over responses) -> claims (``proofs/``) -> legs
(symbolic, exact, Monte Carlo) -> outputs (``rlmath verify``, docs, ``conformance``).
"""

from rlmath import (
    conformance,
    estimators,
    exact,
    llm_reference,
    reference,
    sampling,
    sequence_model,
    sequence_sampling,
    specs,
    statistics,
)
from rlmath._version import __version__
from rlmath.conformance import assert_conforms, check
from rlmath.mdp import TabularMDP
from rlmath.policy import SoftmaxPolicy
from rlmath.sequence_model import SequenceModel, expected_over_groups

__all__ = [
    "SequenceModel",
    "SoftmaxPolicy",
    "TabularMDP",
    "__version__",
    "assert_conforms",
    "check",
    "conformance",
    "estimators",
    "exact",
    "expected_over_groups",
    "llm_reference",
    "reference",
    "sampling",
    "sequence_model",
    "sequence_sampling",
    "specs",
    "statistics",
]
