r"""The ``"actor-critic"`` family of the gradient audit: trajectories of a tiny finite-horizon MDP.

A *batch* is one trajectory $\tau = (s_0, a_0, r_0, \dots, s_{T-1}, a_{T-1}, r_{T-1})$ of a
finite-horizon :class:`~rlmath.TabularMDP` ($T = H$ steps, discount $\gamma$) under the tabular
softmax policy $\pi_\theta(a \mid s) = \mathrm{softmax}(\theta_s)_a$, enumerated exactly with
:func:`rlmath.exact.trajectories`; at $\theta = \theta_\mathrm{old}$

$$ \mathbb E[\nabla_\theta \mathcal L] = \sum_\tau p_\theta(\tau)\, \nabla_\theta
   \mathcal L(\tau). $$

**Calling convention** (per-step arrays of :mod:`rlmath.reference`, time on axis 0, $r_t$
follows $a_t$): ``loss(log_probs, *, old_log_probs, logits, rewards, values, terminated,
truncated, final_values, last_value, discount) -> scalar``, each keyword passed only if
declared:

- ``log_probs`` ``[T]``: $\log\pi_\theta(a_t \mid s_t)$ (differentiable); ``logits`` ``[T, A]``:
  $\theta_{s_t}$ (differentiable; log-probs are ``log_softmax(logits)`` gathered at $a_t$).
- ``old_log_probs`` ``[T]``: their detached values; ``rewards`` ``[T]``: $r(s_t, a_t)$;
  ``values`` ``[T]``: the exact $V^\pi_t(s_t)$ of the finite-horizon problem (constants, by
  backward induction, :func:`rlmath.exact.finite_horizon_values`).
- ``terminated`` ``[T]`` bool: true at the last step (the episode ends at $H$, nothing is
  bootstrapped); ``truncated`` ``[T]`` all false; ``final_values`` ``[T]`` zeros;
  ``last_value`` ``[]`` 0; ``discount``: $\gamma$ (a Python float).

Named objectives (all maximised; $p_t(s) = \Pr(s_t = s)$, $Q_t$, $V_t$ of the finite horizon):

$$ \nabla J = \sum_t \gamma^t \sum_s p_t(s) \sum_a \pi(a|s) (Q_t - V_t)(s, a)\, \nabla\log\pi(a|s),
   \qquad \text{``J without gamma}^t\text{''}: \text{ the same without } \gamma^t, $$

the direction followed by every implementation that weights $\hat A_t \nabla\log\pi$ equally
over time (A2C, PPO: Thomas 2014; Nota and Thomas 2020), not the gradient of any function in
general; and "state entropy" $\sum_t \sum_s p_t(s) H(\pi(\cdot|s))$ with $p_t$ held fixed (the
expected gradient of an entropy bonus in the loss).

References:
    Sutton et al. 2000 (policy gradient theorem); Thomas, P. "Bias in natural actor-critic
    algorithms", ICML 2014; Nota, C. and Thomas, P. S. "Is the policy gradient a gradient?",
    AAMAS 2020; Mnih et al. 2016 (A2C); Schulman et al. 2017 (PPO).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlmath._validation import FloatArray, check_integer
from rlmath.audit.engine import (
    ExpectedGradient,
    _call_plan,
    _describe,
    _differentiator,
)
from rlmath.audit.objectives import NamedObjective
from rlmath.exact import finite_horizon_values, policy_gradient, state_distributions, trajectories
from rlmath.mdp import TabularMDP
from rlmath.policy import SoftmaxPolicy
from rlmath.tolerances import EPS

__all__ = [
    "ACTOR_CRITIC_KEYWORDS",
    "MAX_AUDIT_TRAJECTORIES",
    "TabularActorCritic",
    "actor_critic_expected_gradient",
    "actor_critic_models",
    "actor_critic_objectives",
]

#: Keyword arguments the family ``"actor-critic"`` can pass to a loss.
ACTOR_CRITIC_KEYWORDS: tuple[str, ...] = (
    "old_log_probs",
    "logits",
    "rewards",
    "values",
    "terminated",
    "truncated",
    "final_values",
    "last_value",
    "discount",
)

#: Largest number of trajectories an actor-critic audit enumerates per model.
MAX_AUDIT_TRAJECTORIES: int = 200_000


@dataclass(frozen=True, eq=False)
class TabularActorCritic:
    r"""A finite-horizon MDP and the logits $\theta$ ``[S, A]`` of the softmax policy audited.

    Attributes:
        mdp: a :class:`~rlmath.TabularMDP` with ``horizon`` set.
        theta: ``[S, A]`` logits ($\theta_\mathrm{old}$).
    """

    mdp: TabularMDP
    theta: FloatArray

    def __post_init__(self) -> None:
        if not isinstance(self.mdp, TabularMDP):
            raise TypeError(f"mdp must be a TabularMDP, got {type(self.mdp).__name__}")
        if self.mdp.horizon is None:
            raise ValueError("mdp must have a finite horizon (mdp.horizon is None)")
        policy = SoftmaxPolicy(self.theta)  # validates
        if policy.theta.shape != (self.mdp.n_states, self.mdp.n_actions):
            raise ValueError(
                f"theta must have shape [S, A] = {(self.mdp.n_states, self.mdp.n_actions)}, got "
                f"{policy.theta.shape}"
            )
        object.__setattr__(self, "theta", policy.theta)

    @property
    def policy(self) -> SoftmaxPolicy:
        """The softmax policy of ``theta``."""
        return SoftmaxPolicy(self.theta)


def actor_critic_models(
    n_models: int = 5,
    *,
    seed: int = 0,
    n_states: int = 3,
    n_actions: int = 2,
    horizon: int = 3,
    discount: float = 0.9,
) -> list[TabularActorCritic]:
    r"""Seeded random finite-horizon MDPs: Dirichlet transitions and $\rho_0$, normal rewards and logits.

    Examples:
        >>> actor_critic_models(1)[0].mdp.n_states
        3
    """
    n_models = check_integer(n_models, "n_models", minimum=1)
    out = []
    for m in range(n_models):
        rng = np.random.default_rng([seed, m, 7])
        P = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
        mdp = TabularMDP(
            P,
            rng.standard_normal((n_states, n_actions)),
            rng.dirichlet(np.ones(n_states)),
            gamma=discount,
            horizon=horizon,
        )
        out.append(TabularActorCritic(mdp, rng.standard_normal((n_states, n_actions))))
    return out


def actor_critic_objectives(model: TabularActorCritic) -> dict[str, NamedObjective]:
    r"""The named objectives of the family (module docstring), gradients ``[S, A]``.

    "J" is :func:`rlmath.exact.policy_gradient` (backward induction and forward state
    distributions); the other two from the same $p_t$, $Q_t$, $V_t$ with their closed forms
    ($\nabla_{\theta_s} H(\pi_s) = -\pi_s \odot (\log\pi_s + H(\pi_s))$).
    """
    mdp, policy = model.mdp, model.policy
    pi = policy.probabilities()
    log_pi = np.log(pi)
    V, Q = finite_horizon_values(mdp, pi)
    H = mdp.horizon
    assert H is not None
    visits = state_distributions(mdp, pi, H)  # [H, S]
    undiscounted = np.einsum("ts,sa,tsa->sa", visits, pi, Q - V[:-1, :, None])
    entropy = -(pi * log_pi).sum(axis=1, keepdims=True)
    state_entropy = visits.sum(axis=0)[:, None] * (-pi * (log_pi + entropy))

    def make(
        name: str, gradient: FloatArray, description: str, claim: str | None
    ) -> NamedObjective:
        gradient = np.asarray(gradient, dtype=np.float64)
        gradient.setflags(write=False)
        return NamedObjective(name, gradient, "maximise", description, claim, True)

    return {
        "J": make(
            "J",
            policy_gradient(mdp, policy),
            "the discounted return J = E[sum_t gamma^t r_t]",
            "policy-gradient-theorem",
        ),
        "J without gamma^t": make(
            "J without gamma^t",
            undiscounted,
            "sum_t E[(Q_t - V_t) grad log pi(a_t|s_t)] with every step weighted alike (no "
            "gamma^t): the direction of A2C / PPO losses, not the gradient of J unless "
            "gamma = 1 (Nota and Thomas 2020)",
            None,
        ),
        "state entropy": make(
            "state entropy",
            state_entropy,
            "sum_t E[H(pi(.|s_t))] with the state distribution held fixed (an entropy bonus "
            "in the loss)",
            "categorical-entropy-reference",
        ),
    }


def _batches(
    model: TabularActorCritic,
) -> tuple[Any, Callable[[np.ndarray], dict[str, np.ndarray]]]:
    mdp = model.mdp
    pi = model.policy.probabilities()
    log_pi = np.log(pi)
    paths = trajectories(mdp, pi, mdp.horizon or 1, max_trajectories=MAX_AUDIT_TRAJECTORIES)
    V, _ = finite_horizon_values(mdp, pi)
    T = paths.states.shape[1]
    time = np.arange(T)

    def batch(rows: np.ndarray) -> dict[str, np.ndarray]:
        s, a = paths.states[rows], paths.actions[rows]
        lp = log_pi[s, a]
        C = len(rows)
        terminated = np.zeros((C, T), dtype=bool)
        terminated[:, -1] = True
        return {
            "log_probs": lp,
            "old_log_probs": lp.copy(),
            "logits": model.theta[s],
            "tokens": a,
            "response_mask": np.ones((C, T), dtype=bool),
            "rewards": mdp.r[s, a],
            "values": V[time, s],
            "terminated": terminated,
            "truncated": np.zeros((C, T), dtype=bool),
            "final_values": np.zeros((C, T)),
            "last_value": np.zeros(C),
            "states": s,
        }

    return paths, batch


def actor_critic_expected_gradient(
    loss: Callable[..., Any],
    *,
    model: TabularActorCritic,
    backend: str = "auto",
    differentiate: str = "auto",
    chunk_size: int = 8192,
    **constants: Any,
) -> ExpectedGradient:
    r"""$\sum_\tau p_\theta(\tau) \nabla_\theta \mathcal L(\tau)$, ``[S, A]``, with its error scale.

    Differentiation as in :mod:`rlmath.audit.engine` (``backend``, ``differentiate``); the
    log-prob gradient is carried to $\theta$ by
    $\partial\log\pi(a_t|s_t)/\partial\theta_{s,b} = \mathbb 1[s = s_t](\mathbb 1[b = a_t] -
    \pi(b|s))$, the logit gradient by adding it to row $s_t$.

    Raises:
        TypeError, ValueError: as :func:`rlmath.audit.expected_gradient`; more than
            :data:`MAX_AUDIT_TRAJECTORIES` trajectories.
    """
    if not isinstance(model, TabularActorCritic):
        raise TypeError(f"model must be a TabularActorCritic, got {type(model).__name__}")
    chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)
    if "discount" in constants:
        raise ValueError("constants must not override the family argument 'discount'")
    plan = _call_plan(loss, constants, ACTOR_CRITIC_KEYWORDS, "actor-critic")
    if "discount" in plan.keywords:  # a Python float, not a batched array
        keywords = tuple(k for k in plan.keywords if k != "discount")
        plan = type(plan)(
            keywords, {**plan.constants, "discount": model.mdp.gamma}, plan.takes_logits
        )
    paths, batch = _batches(model)
    first = {k: v[0] for k, v in batch(np.array([0])).items()}
    differentiator, chosen, wrt, notes, state = _differentiator(
        loss, plan, differentiate, backend, first
    )
    S, A = model.theta.shape
    pi = model.policy.probabilities()
    gradient = np.zeros((S, A))
    scale = np.zeros((S, A))
    error_bound = np.zeros((S, A))
    n = len(paths.probabilities)
    for start in range(0, n, chunk_size):
        rows = np.arange(start, min(n, start + chunk_size))
        arrays = batch(rows)
        values, grads, errors = differentiator(arrays)
        if not (np.all(np.isfinite(values)) and np.all(np.isfinite(grads))):
            raise ValueError("loss must be finite with a finite gradient on every trajectory")
        w = paths.probabilities[rows]
        s, a = arrays["states"], arrays["tokens"]
        if wrt == "log_probs":
            contribution = w[:, None] * grads  # [C, T]
            np.add.at(gradient, (s, a), contribution)
            np.add.at(gradient, s, -contribution[..., None] * pi[s])
            np.add.at(scale, s, np.abs(contribution)[..., None] * np.ones(A))
            if errors is not None:
                np.add.at(error_bound, s, (w[:, None] * errors)[..., None] * np.ones(A))
        else:
            contribution = w[:, None, None] * grads  # [C, T, A]
            np.add.at(gradient, s, contribution)
            np.add.at(scale, s, np.abs(contribution))
            if errors is not None:
                np.add.at(error_bound, s, w[:, None, None] * errors)
    return ExpectedGradient(
        gradient=gradient,
        scale=scale,
        method_error=error_bound,
        backend=chosen,
        differentiation=_describe(chosen, wrt, state),
        method="trajectories",
        n_groups=n,
        dtype_eps=float(state.get("dtype_eps", EPS)),
        padding_gradient=0.0,
        notes=tuple(notes),
    )
