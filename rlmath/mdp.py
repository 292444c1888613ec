r"""Finite (tabular) Markov decision processes: the ground truth every claim is checked on.

Conventions (used throughout rlmath):

- States $s \in \{0, \dots, S-1\}$, actions $a \in \{0, \dots, A-1\}$, time starts at $t = 0$
  (the source post counts from $t = 1$; only the labels differ).
- ``P[s, a, s2]`` $= p(s_{t+1} = s2 \mid s_t = s, a_t = a)$; each ``P[s, a, :]`` sums to 1.
- ``r[s, a]`` $= \mathbb{E}[r_t \mid s_t = s, a_t = a]$: the reward for taking $a_t$ in $s_t$,
  received at the same time index $t$. A reward ``r[s, a, s2]`` that depends on the next state
  is reduced to its expectation $\sum_{s_2} P[s, a, s_2]\, r[s, a, s_2]$, which leaves every
  expected return unchanged.
- ``rho0[s]`` $= p(s_0 = s)$.
- The return is $\sum_{t=0}^{H-1} \gamma^t r_t$ with $H = \infty$ (then $0 \le \gamma < 1$) or a
  finite horizon $H$ (then $0 \le \gamma \le 1$).

Termination is modelled by an absorbing, zero-reward state (see
:meth:`TabularMDP.from_gymnasium`), so "done" never needs special handling in exact code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp

from rlmath._validation import (
    FloatArray,
    as_float_array,
    check_finite,
    check_horizon,
    check_integer,
    check_probabilities,
    check_real_scalar,
    check_seed,
)
from rlmath.tolerances import PROBABILITY_SUM_ATOL

__all__ = ["TabularMDP"]

#: scipy.sparse ships no type information, so sparse matrices are typed as Any.
SparseMatrix: TypeAlias = Any


def _read_only(array: FloatArray) -> FloatArray:
    array.setflags(write=False)
    return array


def _check_sparse_dtype(P: SparseMatrix, name: str) -> None:
    """Refuse sparse matrices that would not convert to float64 exactly (complex, non-numeric)."""
    kind = np.dtype(P.dtype).kind
    if kind == "c":  # the float64 cast would drop the imaginary part (a ComplexWarning)
        raise TypeError(f"{name} must be real, got a complex sparse matrix (dtype {P.dtype})")
    if kind not in "biuf":
        raise TypeError(f"{name} must be a sparse matrix of real numbers, got dtype {P.dtype}")


def _check_sparse_transitions(P: SparseMatrix, n_states: int, n_actions: int) -> None:
    data = P.data
    for bad, expected in ((~np.isfinite(data), "finite"), (data < 0, "non-negative")):
        if bad.any():  # report the (s, a, s2) index, not the position in P.data
            k = int(np.flatnonzero(bad)[0])
            row = int(np.searchsorted(np.asarray(P.indptr), k, side="right")) - 1
            s, a = divmod(row, n_actions)
            raise ValueError(
                f"P must be {expected}, got {data[k]!r} at index {(s, a, int(P.indices[k]))}"
            )
    sums = np.asarray(P.sum(axis=1)).ravel()
    off = np.abs(sums - 1.0) > PROBABILITY_SUM_ATOL
    if off.any():
        row = int(np.flatnonzero(off)[0])
        s, a = divmod(row, n_actions)
        raise ValueError(
            f"P must sum to 1 over next states (within {PROBABILITY_SUM_ATOL:g}), "
            f"got sum {sums[row]!r} at index {(s, a)}"
        )


@dataclass(frozen=True, eq=False)
class TabularMDP:
    r"""A finite MDP $(\mathcal S, \mathcal A, P, r, \rho_0, \gamma, H)$ with validated arrays.

    All arrays are float64 and read-only after construction. Transitions are stored either
    dense, ``P`` of shape ``[S, A, S]``, or sparse, a ``scipy.sparse.csr_array`` of shape
    ``[S * A, S]`` whose row ``s * A + a`` is $p(\cdot \mid s, a)$ (see :attr:`is_sparse`).

    Args:
        P: transition probabilities, ``[S, A, S]`` array, or a scipy sparse matrix/array of
            shape ``[S * A, S]`` (row ``s * A + a``).
        r: expected rewards ``[S, A]``, or ``[S, A, S]`` (reduced by expectation under ``P``).
        rho0: initial state distribution ``[S]``.
        gamma: discount; in $[0, 1)$, or $[0, 1]$ when ``horizon`` is given.
        horizon: number of steps $1 \le H \le$ ``rlmath._validation.MAX_HORIZON`` (10^6) of a
            finite-horizon problem, or ``None`` for an infinite discounted one.

    Raises:
        TypeError: if an argument is not numeric, or ``P`` is complex.
        ValueError: naming the argument and the first offending index, for shape mismatches,
            negative or non-finite probabilities, rows of ``P`` or ``rho0`` not summing to 1
            (within ``rlmath.tolerances.PROBABILITY_SUM_ATOL``), non-finite rewards, or
            ``gamma``/``horizon`` out of range.

    Examples:
        >>> import numpy as np
        >>> P = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
        >>> mdp = TabularMDP(P, r=[[0.0, 1.0], [0.0, 0.0]], rho0=[1.0, 0.0], gamma=0.9)
        >>> mdp.n_states, mdp.n_actions, mdp.gamma
        (2, 2, 0.9)
    """

    P: Any
    r: Any
    rho0: Any
    gamma: float
    horizon: int | None = None
    n_states: int = field(init=False)
    n_actions: int = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.horizon is not None:
            set_(self, "horizon", check_integer(self.horizon, "horizon", minimum=1))
        gamma = check_real_scalar(self.gamma, "gamma")
        if self.horizon is None and not 0.0 <= gamma < 1.0:
            raise ValueError(
                f"gamma must be in [0, 1) for an infinite-horizon MDP, got {gamma!r} "
                "(pass horizon=H to allow gamma = 1)"
            )
        if self.horizon is not None and not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1] for a finite-horizon MDP, got {gamma!r}")
        set_(self, "gamma", gamma)

        if sp.issparse(self.P):
            _check_sparse_dtype(self.P, "P")
            P = sp.csr_array(self.P, dtype=np.float64, copy=True)
            P.sum_duplicates()
            if P.shape[0] % max(P.shape[1], 1) != 0 or P.shape[1] == 0:
                raise ValueError(
                    f"sparse P must have shape [S * A, S], got {P.shape} "
                    f"({P.shape[0]} rows is not a multiple of S = {P.shape[1]})"
                )
            n_states, n_actions = P.shape[1], P.shape[0] // P.shape[1]
            if n_actions == 0:
                raise ValueError(f"P must have at least one action, got shape {P.shape}")
            _check_sparse_transitions(P, n_states, n_actions)
            for part in (P.data, P.indices, P.indptr):
                part.setflags(write=False)
        else:
            P = as_float_array(self.P, "P", ndim=3)
            n_states, n_actions, n_next = P.shape
            if n_states == 0 or n_actions == 0:
                raise ValueError(f"P must have at least one state and action, got shape {P.shape}")
            if n_next != n_states:
                raise ValueError(
                    f"P must have shape [S, A, S], got {P.shape} (last axis {n_next} != S = {n_states})"
                )
            check_probabilities(P, "P", axis=-1)
            _read_only(P)
        if self.horizon is not None:  # the limit, now that the memory it implies is known
            check_horizon(
                self.horizon,
                bytes_per_step=8 * n_states * (n_actions + 1),
                what="the [H + 1, S] and [H, S, A] float64 values of rlmath.exact",
            )
        set_(self, "P", P)
        set_(self, "n_states", int(n_states))
        set_(self, "n_actions", int(n_actions))

        r = as_float_array(self.r, "r")
        if r.shape == (n_states, n_actions, n_states):
            check_finite(r, "r")
            if sp.issparse(P):
                flat = sp.csr_array(P.multiply(r.reshape(n_states * n_actions, n_states)))
                r = np.asarray(flat.sum(axis=1)).reshape(n_states, n_actions)
            else:
                r = np.einsum("ijk,ijk->ij", P, r)
        elif r.shape != (n_states, n_actions):
            raise ValueError(
                f"r must have shape [S, A] = {(n_states, n_actions)} or [S, A, S], got {r.shape}"
            )
        check_finite(r, "r")
        set_(self, "r", _read_only(np.ascontiguousarray(r)))

        rho0 = as_float_array(self.rho0, "rho0", ndim=1)
        if rho0.shape != (n_states,):
            raise ValueError(f"rho0 must have shape [S] = {(n_states,)}, got {rho0.shape}")
        check_probabilities(rho0, "rho0")
        set_(self, "rho0", _read_only(rho0))

    # ------------------------------------------------------------------ views
    @property
    def is_sparse(self) -> bool:
        """Whether transitions are stored as a sparse ``[S * A, S]`` matrix."""
        return bool(sp.issparse(self.P))

    @property
    def transition_matrix(self) -> FloatArray | SparseMatrix:
        """Transitions as an ``[S * A, S]`` matrix (row ``s * A + a``), dense or sparse."""
        if self.is_sparse:
            return self.P
        return self.P.reshape(self.n_states * self.n_actions, self.n_states)

    def dense_transitions(self) -> FloatArray:
        """Transitions as a dense ``[S, A, S]`` array (a copy when stored sparse)."""
        if self.is_sparse:
            dense = self.P.toarray().reshape(self.n_states, self.n_actions, self.n_states)
            return _read_only(dense)
        return self.P  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        storage = f"sparse, nnz={self.P.nnz}" if self.is_sparse else "dense"
        horizon = "" if self.horizon is None else f", horizon={self.horizon}"
        return (
            f"TabularMDP(n_states={self.n_states}, n_actions={self.n_actions}, "
            f"gamma={self.gamma}{horizon}, {storage})"
        )

    # ----------------------------------------------------------- constructors
    @classmethod
    def random(
        cls,
        n_states: int,
        n_actions: int,
        *,
        seed: int | np.random.SeedSequence | None,
        n_successors: int | None = None,
        gamma: float = 0.9,
        horizon: int | None = None,
        reward_scale: float = 1.0,
        concentration: float = 1.0,
    ) -> TabularMDP:
        r"""A random MDP: Dirichlet transitions, standard-normal rewards, Dirichlet $\rho_0$.

        Each ``P[s, a, :]`` is drawn from $\mathrm{Dirichlet}(\alpha \mathbf 1)$ over all
        states (dense storage) or over ``n_successors`` distinct successors drawn uniformly
        without replacement (sparse ``[S * A, S]`` storage). Rewards are
        ``reward_scale`` times standard normal; ``rho0`` is $\mathrm{Dirichlet}(\mathbf 1)$.

        Args:
            n_states: number of states $S \ge 1$.
            n_actions: number of actions $A \ge 1$.
            seed: seed of ``numpy.random.default_rng`` (required, for reproducibility;
                ``None`` means fresh entropy).
            n_successors: at most this many successors per (s, a), stored sparse; ``None``
                for dense transitions.
            gamma: discount.
            horizon: finite horizon, or ``None``.
            reward_scale: standard deviation of the rewards.
            concentration: Dirichlet concentration $\alpha > 0$ (small: near-deterministic).

        Returns:
            A :class:`TabularMDP`.

        Examples:
            >>> mdp = TabularMDP.random(5, 2, seed=0, n_successors=2)
            >>> mdp.is_sparse, mdp.P.nnz <= 5 * 2 * 2
            (True, True)
        """
        n_states = check_integer(n_states, "n_states", minimum=1)
        n_actions = check_integer(n_actions, "n_actions", minimum=1)
        seed = check_seed(seed)
        reward_scale = check_real_scalar(reward_scale, "reward_scale")
        concentration = check_real_scalar(concentration, "concentration")
        if concentration <= 0:
            raise ValueError(f"concentration must be > 0, got {concentration!r}")
        rng = np.random.default_rng(seed)
        n_pairs = n_states * n_actions
        if n_successors is None:
            P: Any = rng.dirichlet(np.full(n_states, concentration), size=n_pairs)
            P = P.reshape(n_states, n_actions, n_states)
        else:
            k = check_integer(n_successors, "n_successors", minimum=1)
            if k > n_states:
                raise ValueError(f"n_successors must be <= n_states = {n_states}, got {k}")
            # k distinct successors per row: the first k of a random key order (vectorised).
            if k == n_states:
                columns = np.tile(np.arange(n_states), (n_pairs, 1))
            elif k * 4 <= n_states:
                columns = rng.integers(0, n_states, size=(n_pairs, k))
                columns.sort(axis=1)
                clash = (np.diff(columns, axis=1) == 0).any(axis=1)
                while clash.any():  # redraw the few rows with a repeated successor
                    redo = rng.integers(0, n_states, size=(int(clash.sum()), k))
                    redo.sort(axis=1)
                    columns[clash] = redo
                    clash = (np.diff(columns, axis=1) == 0).any(axis=1)
            else:
                columns = np.argsort(rng.random((n_pairs, n_states)), axis=1)[:, :k]
            weights = rng.gamma(concentration, size=(n_pairs, k))
            weights /= weights.sum(axis=1, keepdims=True)
            P = sp.csr_array(
                (weights.ravel(), columns.ravel(), np.arange(0, n_pairs * k + 1, k)),
                shape=(n_pairs, n_states),
            )
        r = reward_scale * rng.standard_normal((n_states, n_actions))
        rho0 = rng.dirichlet(np.ones(n_states))
        return cls(P, r, rho0, gamma, horizon)

    @classmethod
    def from_mdptoolbox(
        cls,
        P: Any,
        R: Any,
        discount: float,
        *,
        rho0: Any = None,
        horizon: int | None = None,
    ) -> TabularMDP:
        r"""Build from the pymdptoolbox layout: ``P[a, s, s2]`` and ``R[s, a]``/``R[a, s, s2]``/``R[s]``.

        pymdptoolbox has no initial distribution; ``rho0`` defaults to uniform.

        Args:
            P: ``[A, S, S]`` array, or a sequence of ``A`` dense or sparse ``[S, S]`` matrices.
            R: rewards ``[S, A]``, ``[A, S, S]`` (next-state dependent, reduced by expectation)
                or ``[S]`` (state reward, the same for every action).
            discount: discount factor $\gamma$, in $[0, 1)$ (or $[0, 1]$ with ``horizon``).
            rho0: initial distribution ``[S]``; ``None`` for uniform.
            horizon: finite horizon, or ``None``.

        Returns:
            A :class:`TabularMDP` (sparse storage when ``P`` holds sparse matrices).

        References:
            Cordwell, S. et al. *pymdptoolbox* documentation, ``mdptoolbox.mdp.MDP`` (2015).

        Examples:
            >>> import numpy as np
            >>> P = np.array([[[0.5, 0.5], [0.8, 0.2]], [[0.0, 1.0], [0.1, 0.9]]])
            >>> mdp = TabularMDP.from_mdptoolbox(P, np.array([[5.0, 10.0], [-1.0, 2.0]]), 0.9)
            >>> mdp.r.tolist(), mdp.dense_transitions()[0, 1].tolist()
            ([[5.0, 10.0], [-1.0, 2.0]], [0.0, 1.0])
        """
        discount = check_real_scalar(discount, "discount")
        if horizon is None and not 0.0 <= discount < 1.0:
            raise ValueError(
                f"discount must be in [0, 1) for an infinite-horizon MDP, got {discount!r} "
                "(pass horizon=H to allow discount = 1)"
            )
        if horizon is not None and not 0.0 <= discount <= 1.0:
            raise ValueError(
                f"discount must be in [0, 1] for a finite-horizon MDP, got {discount!r}"
            )
        if isinstance(P, Sequence) and len(P) and any(sp.issparse(m) for m in P):
            blocks = []
            for a, m in enumerate(P):
                if sp.issparse(m):
                    _check_sparse_dtype(m, f"P[{a}]")
                else:
                    m = as_float_array(m, f"P[{a}]", ndim=2)
                blocks.append(sp.csr_array(m, dtype=np.float64))
            n_actions, n_states = len(blocks), blocks[0].shape[0]
            for a, block in enumerate(blocks):
                if block.shape != (n_states, n_states):
                    raise ValueError(
                        f"P[{a}] must have shape {(n_states, n_states)}, got {block.shape}"
                    )
            # row s * A + a of the stacked matrix is P[a][s]: interleave the action blocks.
            stacked = sp.vstack(blocks, format="csr")
            order = (
                np.arange(n_actions)[None, :] * n_states + np.arange(n_states)[:, None]
            ).ravel()
            transitions: Any = stacked[order]
        else:
            dense = as_float_array(P, "P", ndim=3)
            n_actions, n_states, n_next = dense.shape
            if n_next != n_states:
                raise ValueError(f"P must have shape [A, S, S], got {dense.shape}")
            transitions = dense.transpose(1, 0, 2)
        R_array = as_float_array(R, "R")
        if R_array.shape == (n_states,):
            rewards = np.repeat(R_array[:, None], n_actions, axis=1)
        elif R_array.shape == (n_actions, n_states, n_states):
            rewards = R_array.transpose(1, 0, 2)
        elif R_array.shape == (n_states, n_actions):
            rewards = R_array
        else:
            raise ValueError(
                f"R must have shape [S] = {(n_states,)}, [S, A] = {(n_states, n_actions)} or "
                f"[A, S, S] = {(n_actions, n_states, n_states)}, got {R_array.shape}"
            )
        if rho0 is None:
            rho0 = np.full(n_states, 1.0 / n_states)
        return cls(transitions, rewards, rho0, discount, horizon)

    @classmethod
    def from_gymnasium(cls, env: Any, *, gamma: float, horizon: int | None = None) -> TabularMDP:
        r"""Build from a gymnasium toy-text environment that exposes ``env.unwrapped.P``.

        ``env.unwrapped.P[s][a]`` is a list of ``(probability, next_state, reward,
        terminated)``. rlmath appends one absorbing, zero-reward state with index
        ``n_states - 1``: a transition with ``terminated=True`` goes there instead of to its
        listed next state, so returns after termination are exactly zero. Rewards become
        their expectation ``r[s, a] = sum p * reward``. Duplicate next states are summed.
        The initial distribution is ``env.unwrapped.initial_state_distrib`` (FrozenLake,
        Taxi), or a point mass on ``env.unwrapped.start_state_index`` (CliffWalking).

        Args:
            env: a gymnasium environment (FrozenLake-v1, Taxi-v4, CliffWalking-v1, ...).
            gamma: discount factor.
            horizon: finite horizon, or ``None``. (Gymnasium's own ``TimeLimit`` truncation is
                not modelled; pass ``horizon`` to model one.)

        Returns:
            A :class:`TabularMDP` with ``n_states = env.observation_space.n + 1``.

        Raises:
            TypeError: if the environment exposes no tabular ``P``.
        """
        base = getattr(env, "unwrapped", env)
        table = getattr(base, "P", None)
        if not isinstance(table, dict):
            raise TypeError(
                f"env must expose a tabular model env.unwrapped.P (a dict), got {type(env).__name__}"
            )
        n_env_states = len(table)
        n_actions = len(table[0])
        terminal = n_env_states
        n_states = n_env_states + 1
        P = np.zeros((n_states, n_actions, n_states))
        r = np.zeros((n_states, n_actions))
        for s in range(n_env_states):
            if len(table[s]) != n_actions:
                raise ValueError(
                    f"env.unwrapped.P[{s}] has {len(table[s])} actions, expected {n_actions}"
                )
            for a in range(n_actions):
                for probability, next_state, reward, terminated in table[s][a]:
                    P[s, a, terminal if terminated else int(next_state)] += probability
                    r[s, a] += probability * reward
        P[terminal, :, terminal] = 1.0
        initial = getattr(base, "initial_state_distrib", None)
        rho0 = np.zeros(n_states)
        if initial is not None:
            rho0[:n_env_states] = np.asarray(initial, dtype=np.float64)
        elif hasattr(base, "start_state_index"):
            rho0[int(base.start_state_index)] = 1.0
        else:
            raise TypeError(
                "env.unwrapped has neither initial_state_distrib nor start_state_index; "
                "cannot tell the initial distribution"
            )
        return cls(P, r, rho0, gamma, horizon)
