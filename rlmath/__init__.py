"""rlmath: proves and checks the mathematics of policy-gradient RL, PPO, actor-critic and RLHF.

Layout: ground truth (``mdp``, ``policy``, ``exact``) -> claims (``proofs/``) -> legs
(symbolic, exact, Monte Carlo) -> outputs (``rlmath verify``, docs, ``conformance``).
"""

from rlmath import conformance, estimators, exact, reference, sampling, specs, statistics
from rlmath._version import __version__
from rlmath.conformance import assert_conforms, check
from rlmath.mdp import TabularMDP
from rlmath.policy import SoftmaxPolicy

__all__ = [
    "SoftmaxPolicy",
    "TabularMDP",
    "__version__",
    "assert_conforms",
    "check",
    "conformance",
    "estimators",
    "exact",
    "reference",
    "sampling",
    "specs",
    "statistics",
]
