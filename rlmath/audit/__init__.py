r"""Gradient audit: which objective does a policy loss's expected gradient actually follow?

A loss can match every reference value and still move the policy the wrong way: training
follows its *expected gradient*. On small models where every expectation is a finite sum,
:func:`expected_gradient` computes $\mathbb E[\nabla_\theta \mathcal L]$ exactly (every group
of responses enumerated with its probability, each differentiated by autodiff or complex
steps), and :func:`audit` compares it with the exact gradients of a library of named
objectives (:func:`named_objective_gradients`) over several generated models: "unbiased for
c * grad(NAME)" or "biased: closest NAME, cosine ..., relative residual ...".

Modules: :mod:`rlmath.audit.engine` (expected gradients, calling convention, backends),
:mod:`rlmath.audit.objectives` (the named objectives), :mod:`rlmath.audit.verdict`
(decomposition, verdict, :class:`AuditReport`), :mod:`rlmath.audit.actor_critic` (the family
"actor-critic": trajectories of tiny finite-horizon MDPs); ``rlmath.audit.styles`` holds losses written
in the styles of popular libraries (``LOSS_STYLES``).
"""

from typing import Any

from rlmath.audit.actor_critic import (
    TabularActorCritic,
    actor_critic_models,
    actor_critic_objectives,
)
from rlmath.audit.engine import (
    BACKENDS,
    LLM_KEYWORDS,
    MAX_AUDIT_GROUPS,
    ExpectedGradient,
    expected_gradient,
    expected_gradient_details,
)
from rlmath.audit.objectives import (
    ATOMIC_OBJECTIVES,
    NamedObjective,
    grpo_prompt_factor,
    named_objective_gradients,
    named_objectives,
    node_reach_probabilities,
)
from rlmath.audit.verdict import AuditReport, audit, audit_models, judge

__all__ = [
    "ATOMIC_OBJECTIVES",
    "BACKENDS",
    "LLM_KEYWORDS",
    "MAX_AUDIT_GROUPS",
    "AuditReport",
    "ExpectedGradient",
    "NamedObjective",
    "TabularActorCritic",
    "actor_critic_models",
    "actor_critic_objectives",
    "assert_expected_gradient",
    "audit",
    "audit_models",
    "expected_gradient",
    "expected_gradient_details",
    "grpo_prompt_factor",
    "judge",
    "named_objective_gradients",
    "named_objectives",
    "node_reach_probabilities",
]


def assert_expected_gradient(
    loss: Any, *, objective: str, family: str = "llm", **options: Any
) -> AuditReport:
    """:func:`rlmath.testing.assert_expected_gradient` (re-exported here)."""
    __tracebackhide__ = True
    from rlmath.testing import assert_expected_gradient as check

    report: AuditReport = check(loss, objective=objective, family=family, **options)
    return report


def __getattr__(name: str) -> Any:
    if name in ("LOSS_STYLES", "LossStyle"):  # the zoo imports this package: load it lazily
        from rlmath.audit import styles

        return getattr(styles, name)
    raise AttributeError(f"module 'rlmath.audit' has no attribute {name!r}")
