r"""Vectorised Monte-Carlo rollouts of a tabular MDP: the sampler behind the Monte-Carlo leg.

Two samplers share one engine: :func:`rollouts` (episodes of at most ``horizon`` steps) and
:func:`discounted_rollouts` (episodes of the infinite-horizon discounted problem, stopped at a
geometric time so that undiscounted sums along them are unbiased for discounted quantities).

Every categorical draw (initial state, action, next state) is an $O(1)$ lookup in a Walker
alias table, built for all rows at once with NumPy, and consumes exactly one uniform
$u \sim U[0, 1)$: with $K$ slots per row, slot $k = \lfloor K u \rfloor$ and the fraction
$K u - k$ decides between the slot's own outcome and its alias (:func:`alias_sample`). The
rollout loop draws from a *fused* layout of the same table: the test $K u - k < t_k$ is made
as $K u < c_k$ with $c_k = k + t_k$ rounded up to a float, which decides every float
$K u$ exactly as the fraction does, and a slot's outcome and alias sit side by side, so a
draw is two gathers: $c_k$, then the one of the two it picks (the outcomes are those of
:func:`alias_sample`, uniform for uniform).

Randomness is organised so that results never depend on how the work is split in memory:

- Episodes are grouped in *blocks* of ``block_size`` consecutive episodes. Block ``b`` draws
  from its own ``numpy.random.Generator`` seeded by the child ``SeedSequence`` with spawn key
  ``seed.spawn_key + (b,)``, in a fixed order: in :func:`discounted_rollouts` only,
  ``block_size`` uniforms for the episodes' geometric lengths; then ``block_size`` uniforms
  for the initial states; then at each step $t$ two uniforms per episode of the block that is
  still alive, in episode order (the first picks $a_t$, the second $s_{t+1}$). What a block
  draws therefore depends on nothing but its own stream, and a cut last block is simulated
  whole (its episodes beyond ``n_episodes`` come after the kept ones in every step's draws),
  so the first $n$ episodes are the same whatever ``n_episodes`` is (for
  :func:`discounted_rollouts`, up to the length of the time axis: the longest of the
  ``n_episodes`` episodes). Ended episodes draw nothing, so the cost follows the number of
  real steps.
- Episodes are simulated in memory *chunks* of ``chunk_size`` episodes (a multiple of
  ``block_size``): working memory is $O(\text{chunk size})$, reused by every chunk, and the
  output is identical for every chunk size.

Conventions: time-major arrays ``[T, N]`` with times $0..T-1$; $r_t = r(s_t, a_t)$ is the
*expected* reward that :class:`~rlmath.TabularMDP` stores, received at time $t$ (every
estimator's mean is as with sampled rewards, whose conditional mean given $(s_t, a_t)$ it is;
variances are those of this expected-reward MDP);
``terminated[t]`` means $s_{t+1}$ is a terminal state; ``truncated[t]`` means the episode was
cut after step $t$ without entering one: by the horizon (only at $t = T-1$) in
:func:`rollouts`, by the geometric stop ($t = H - 1$) in :func:`discounted_rollouts`; at most
one of the two is true, termination taking precedence. States and actions are int32 (int64
only for more than $2^{31} - 1$ states or actions).

References:
    Walker, A. J. "An efficient method for generating discrete random variables with general
    distributions", ACM TOMS 3(3), 1977.
    Vose, M. D. "A linear algorithm for generating random numbers with a given distribution",
    IEEE TSE 17(9), 1991.
    O'Neill, M. E. "PCG: A family of simple fast space-efficient statistically good algorithms
    for random number generation", 2014 (NumPy's default bit generator, PCG64).
    Sutton, R. S. and Barto, A. G. *Reinforcement Learning: An Introduction*, 2nd ed., 2018,
    Sec. 5.8 (discounting as a probability of termination).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rlmath._validation import (
    FloatArray,
    as_float_array,
    check_integer,
    check_interval,
    check_probabilities,
)
from rlmath.mdp import TabularMDP
from rlmath.policy import SoftmaxPolicy, as_probabilities

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "MAX_STEPS_TAIL",
    "AliasTable",
    "Rollouts",
    "alias_sample",
    "alias_table",
    "discounted_rollouts",
    "rollouts",
    "sample_actions",
    "transition_alias_table",
]

IntArray = NDArray[np.intp]
#: States and actions of :class:`Rollouts`: int32 (see :func:`_index_dtype`).
StepIntArray = NDArray[np.signedinteger[Any]]
BoolArray = NDArray[np.bool_]
SeedLike = int | np.random.SeedSequence | None

#: Episodes per unit of randomness (one child ``SeedSequence`` each). Part of the definition of
#: the output: changing it changes the sampled episodes.
DEFAULT_BLOCK_SIZE: int = 1024

#: Episodes simulated together in memory (a multiple of the block size). Only a performance
#: knob: the output does not depend on it. 16 blocks keep each per-step vector (128 KiB of
#: float64) in cache.
DEFAULT_CHUNK_SIZE: int = 16 * DEFAULT_BLOCK_SIZE

#: Default bound on $\Pr(\text{some geometric length exceeds max\_steps})$ in
#: :func:`discounted_rollouts` (``max_steps=None``).
MAX_STEPS_TAIL: float = 1e-12


# ----------------------------------------------------------------------------- alias tables
@dataclass(frozen=True, eq=False)
class AliasTable:
    r"""Walker alias tables for $R$ categorical distributions over $K$ slots each.

    Drawing from row $i$ with one uniform $u$: $k = \lfloor K u \rfloor$, then outcome
    ``outcomes[i, k]`` if $K u - k <$ ``thresholds[i, k]`` else ``aliases[i, k]``.

    Attributes:
        thresholds: ``[R, K]`` float64 in $[0, 1]$, the probability of keeping slot $k$.
        outcomes: ``[R, K]`` int, the outcome of each slot (its own index for dense rows; a
            column index for padded sparse rows).
        aliases: ``[R, K]`` int, the outcome taken when slot $k$ is not kept.
    """

    thresholds: FloatArray
    outcomes: IntArray
    aliases: IntArray

    @property
    def n_rows(self) -> int:
        """Number of distributions $R$."""
        return int(self.thresholds.shape[0])

    @property
    def n_slots(self) -> int:
        """Slots per row $K$."""
        return int(self.thresholds.shape[1])


def alias_table(probabilities: ArrayLike, *, outcomes: ArrayLike | None = None) -> AliasTable:
    r"""Alias tables of every row of ``probabilities`` (Vose's pairing, vectorised over rows).

    With $q_k = K p_k$, slots with $q_k < 1$ ("small") are paired in turn with a slot with
    $q_l \ge 1$ ("large"): the small slot keeps probability $q_k$ and aliases to $l$, and $l$
    gives away $1 - q_k$; when $q_l$ drops below 1 it becomes the next small slot. Every slot
    then holds mass exactly $1/K$, split between at most two outcomes, so

    $$ \Pr(\text{outcome} = j) = \frac{1}{K} \sum_{k} \left(t_k \mathbb 1[o_k = j]
       + (1 - t_k) \mathbb 1[\alpha_k = j]\right) = p_j. $$

    The loop runs over pairing rounds ($\le K$), each vectorised over all $R$ rows, so the
    cost is $O(R K)$. Slots left unpaired when the other kind runs out differ from 1 by
    rounding only and keep themselves.

    Args:
        probabilities: ``[R, K]`` (or ``[K]``, one row) non-negative rows summing to 1.
        outcomes: ``[R, K]`` outcome label of each slot; ``None`` for ``0..K-1``.

    Returns:
        :class:`AliasTable` with ``R`` rows (1 for a vector input).

    Raises:
        ValueError: if a row is not a probability distribution or ``outcomes`` has another
            shape.

    References:
        Vose 1991, Sec. III (the small/large work lists); Walker 1977.

    Examples:
        >>> table = alias_table([0.5, 0.25, 0.25])
        >>> # slot masses (1/3 each): (0: 0.75 of it, rest alias), ... sum back to p
        >>> p = np.zeros(3)
        >>> np.add.at(p, table.outcomes[0], table.thresholds[0] / 3)
        >>> np.add.at(p, table.aliases[0], (1 - table.thresholds[0]) / 3)
        >>> p.round(12).tolist()
        [0.5, 0.25, 0.25]
    """
    p = as_float_array(probabilities, "probabilities")
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"probabilities must have shape [R, K] with K >= 1, got {p.shape}")
    check_probabilities(p, "probabilities", axis=1)
    R, K = p.shape
    if outcomes is None:
        labels = np.broadcast_to(np.arange(K, dtype=np.intp), (R, K))
    else:
        labels = np.asarray(outcomes, dtype=np.intp)
        if labels.shape != (R, K):
            raise ValueError(
                f"outcomes must have shape {(R, K)} like probabilities, got {labels.shape}"
            )

    thresholds, alias_slot = _vose_pairing(p * K)
    aliases = np.take_along_axis(labels, alias_slot, axis=1)
    return AliasTable(thresholds, np.ascontiguousarray(labels), aliases)


def _vose_pairing(q: FloatArray) -> tuple[FloatArray, IntArray]:
    r"""Thresholds and alias slots ``[R, K]`` of the scaled rows ``q`` $= K p$ (overwritten).

    Per row: the small slots ($q_k < 1$) in index order, then the large ones; each round
    pairs the row's current small slot $k$ with its current large slot $l$ ($t_k = q_k$,
    alias $l$, $q_l \mathrel{-}= 1 - q_k$), and $l$ is the next small slot once $q_l < 1$.
    Rounds are vectorised over the rows still pairing, kept packed, with flat indices into
    the ``[R K]`` arrays (fancy indexing of 2-d arrays is several times slower).
    """
    R, K = q.shape
    thresholds = np.ones(R * K)
    alias_slot = np.tile(np.arange(K, dtype=np.intp), R)  # slot within the row
    small = q < 1.0
    order = np.argsort(~small, axis=1, kind="stable")  # per row: small slots, then large ones
    n_small = small.sum(axis=1)
    row_start = np.arange(R, dtype=np.intp) * K
    ordered = (order + row_start[:, None]).ravel()  # flat slot ids, each row in that order
    flat_q = q.ravel()
    # state of the rows still pairing, as positions in `ordered`
    rows = np.flatnonzero((n_small > 0) & (n_small < K))
    start, small_end = row_start[rows], row_start[rows] + n_small[rows]
    next_small, next_large = start.copy(), small_end.copy()  # the current small / large slot
    current = ordered[start]  # flat id of the small slot being filled
    while rows.size:
        large = np.take(ordered, next_large, mode="wrap")
        kept = np.take(flat_q, current, mode="wrap")
        thresholds[current] = kept
        alias_slot[current] = large - start
        residual = np.take(flat_q, large, mode="wrap")
        residual -= 1.0 - kept
        flat_q[large] = residual
        demoted = residual < 1.0  # the large slot becomes the next small one
        next_large += demoted
        next_small += ~demoted
        following = np.take(ordered, np.minimum(next_small, start + K - 1), mode="wrap")
        current = np.where(demoted, large, following)
        active = (demoted | (next_small < small_end)) & (next_large < start + K)
        if not active.all():
            keep = np.flatnonzero(active)
            rows, start, small_end = rows[keep], start[keep], small_end[keep]
            next_small, next_large, current = next_small[keep], next_large[keep], current[keep]
    return thresholds.reshape(R, K), alias_slot.reshape(R, K)


def alias_sample(table: AliasTable, rows: IntArray | None, uniforms: FloatArray) -> IntArray:
    r"""One draw from row ``rows[n]`` of ``table`` per uniform ``uniforms[n]``.

    $$ k = \lfloor K u \rfloor, \qquad
       x = \begin{cases} o_{i,k} & K u - k < t_{i,k} \\ \alpha_{i,k} & \text{otherwise} \end{cases} $$

    ($K u < K$ for every float64 $u < 1$, so $k \le K - 1$ without clipping.)

    Args:
        table: an :class:`AliasTable`.
        rows: ``[N]`` int row indices, or ``None`` for row 0 everywhere.
        uniforms: ``[N]`` float64 in $[0, 1)$, one per draw.

    Returns:
        ``[N]`` int outcomes.

    Examples:
        >>> table = alias_table([[1.0, 0.0], [0.0, 1.0]])
        >>> alias_sample(table, np.array([0, 1, 1]), np.array([0.9, 0.1, 0.5])).tolist()
        [0, 1, 1]
    """
    K = table.n_slots
    scaled = uniforms * K
    slot = scaled.astype(np.intp)
    fraction = scaled - slot
    flat = slot if rows is None else rows * K + slot
    keep = fraction < table.thresholds.ravel()[flat]
    return np.where(keep, table.outcomes.ravel()[flat], table.aliases.ravel()[flat])


def transition_alias_table(mdp: TabularMDP) -> AliasTable:
    r"""Alias tables of $p(\cdot \mid s, a)$ for every pair, row ``s * A + a``.

    Dense transitions give $K = S$ slots per row. Sparse (csr) rows are padded with
    zero-probability slots to the largest number of stored successors, so $K$ is that number.

    Args:
        mdp: a :class:`~rlmath.TabularMDP`, dense or sparse.

    Returns:
        :class:`AliasTable` with ``S * A`` rows whose outcomes are next states.
    """
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    if not mdp.is_sparse:
        return alias_table(mdp.transition_matrix)
    P = mdp.P
    counts = np.diff(P.indptr)
    width = max(int(counts.max()), 1)
    row_of = np.repeat(np.arange(P.shape[0]), counts)
    slot_of = np.arange(P.nnz) - P.indptr[row_of]
    padded = np.zeros((P.shape[0], width))
    columns = np.zeros((P.shape[0], width), dtype=np.intp)
    columns[:] = P.indices[P.indptr[:-1]][:, None] if P.nnz else 0  # padding: a real successor
    padded[row_of, slot_of] = P.data
    columns[row_of, slot_of] = P.indices
    return alias_table(padded, outcomes=columns)


# ----------------------------------------------------------------------------- seeds
def _root_seed(seed: SeedLike) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is not None:
        check_integer(seed, "seed", minimum=0)
    return np.random.SeedSequence(seed)


def _block_generator(root: np.random.SeedSequence, block: int) -> np.random.Generator:
    """Generator of block ``block``: the child with spawn key ``root.spawn_key + (block,)``.

    Built directly rather than by ``root.spawn`` so it does not depend on (or change) how many
    children ``root`` has spawned before.
    """
    child = np.random.SeedSequence(
        root.entropy, spawn_key=(*root.spawn_key, block), pool_size=root.pool_size
    )
    return np.random.default_rng(child)


def sample_actions(
    policy: SoftmaxPolicy | ArrayLike, states: ArrayLike, *, seed: SeedLike
) -> IntArray:
    r"""Draw $a \sim \pi(\cdot \mid s)$ independently for each entry of ``states``.

    Args:
        policy: a :class:`~rlmath.SoftmaxPolicy` or a row-stochastic ``[S, A]`` array.
        states: int array of any shape ``B``, values in ``0..S-1``.
        seed: an int, a ``numpy.random.SeedSequence``, or ``None`` (fresh entropy).

    Returns:
        ``B`` int actions.

    Examples:
        >>> sample_actions([[0.0, 1.0], [1.0, 0.0]], [0, 1, 0], seed=0).tolist()
        [1, 0, 1]
    """
    pi = _policy_array(policy)
    s = np.asarray(states)
    if not np.issubdtype(s.dtype, np.integer):
        raise TypeError(f"states must be integers, got dtype {s.dtype}")
    if s.size and (s.min() < 0 or s.max() >= pi.shape[0]):
        raise ValueError(
            f"states must be in [0, {pi.shape[0]}), got {int(s[(s < 0) | (s >= pi.shape[0])].ravel()[0])}"
        )
    uniforms = np.random.default_rng(_root_seed(seed)).random(s.shape)
    flat = alias_sample(alias_table(pi), s.astype(np.intp).ravel(), uniforms.ravel())
    return flat.reshape(s.shape)


def _policy_array(policy: SoftmaxPolicy | ArrayLike) -> FloatArray:
    if isinstance(policy, SoftmaxPolicy):
        return policy.probabilities()
    pi = as_float_array(policy, "policy", ndim=2)
    check_probabilities(pi, "policy", axis=1)
    return pi


# ----------------------------------------------------------------------------- rollouts
@dataclass(frozen=True, eq=False)
class Rollouts:
    r"""$N$ episodes of at most $T$ steps, time-major.

    Step $t$ of episode $n$ is *alive* (a real environment step) until the episode ends; after
    that its entries are padding: ``alive`` false, ``actions`` 0, ``rewards`` 0, ``log_probs``
    0, ``terminated``/``truncated`` false, and ``states`` equal to ``final_states`` (so, for an
    absorbing zero-reward terminal state, ``r[states, actions]`` is 0 there too).

    Attributes:
        states: ``[T, N]`` int (int32 from the samplers here), $s_t$, times 0..T-1.
        actions: ``[T, N]`` int (int32 from the samplers here), $a_t \sim \pi(\cdot \mid s_t)$.
        rewards: ``[T, N]`` float64, $r_t = r(s_t, a_t)$, times 0..T-1.
        log_probs: ``[T, N]`` float64, $\log \pi(a_t \mid s_t)$ of the sampling policy.
        terminated: ``[T, N]`` bool, $s_{t+1}$ is a terminal state (the last alive step).
        truncated: ``[T, N]`` bool, the episode was cut after step $t$ without entering a
            terminal state (its last alive step): by the horizon, $t = T-1$, in
            :func:`rollouts`; by the geometric stop, $t = H - 1$, in
            :func:`discounted_rollouts`.
        alive: ``[T, N]`` bool, step $t$ happened.
        final_states: ``[N]`` int, the state after the last alive step ($s_{t+1}$ of that step:
            the terminal state entered, or the state the cut left the episode in).
        seed_entropy: the root ``SeedSequence`` entropy (for the record).
        block_size: episodes per random stream.
    """

    states: StepIntArray
    actions: StepIntArray
    rewards: FloatArray
    log_probs: FloatArray
    terminated: BoolArray
    truncated: BoolArray
    alive: BoolArray
    final_states: StepIntArray
    seed_entropy: Any
    block_size: int

    @property
    def n_steps(self) -> int:
        """The horizon $T$ (length of the time axis)."""
        return int(self.states.shape[0])

    @property
    def n_episodes(self) -> int:
        """The number of episodes $N$."""
        return int(self.states.shape[1])

    @property
    def lengths(self) -> IntArray:
        """``[N]`` number of alive steps of each episode."""
        return self.alive.sum(axis=0)  # type: ignore[no-any-return]

    @property
    def n_env_steps(self) -> int:
        """Total number of alive steps (real environment steps) over all episodes."""
        return int(np.count_nonzero(self.alive))

    def next_states(self) -> StepIntArray:
        r"""``[T, N]`` int, $s_{t+1}$ for times 0..T-1 (``final_states`` at and after the end)."""
        following = np.concatenate([self.states[1:], self.final_states[None, :]])
        nxt = np.where(self.alive[1:], self.states[1:], self.final_states[None, :])
        following[:-1] = nxt
        return following


def _terminal_mask(terminal_states: ArrayLike | None, n_states: int) -> BoolArray:
    mask = np.zeros(n_states, dtype=bool)
    if terminal_states is None:
        return mask
    given = np.asarray(terminal_states)
    if given.dtype == bool:
        if given.shape != (n_states,):
            raise ValueError(
                f"terminal_states as a mask must have shape [S] = {(n_states,)}, got {given.shape}"
            )
        return given.copy()
    if not np.issubdtype(given.dtype, np.integer):
        raise TypeError(
            f"terminal_states must be a bool mask [S] or integer indices, got dtype {given.dtype}"
        )
    if given.size and (given.min() < 0 or given.max() >= n_states):
        raise ValueError(
            f"terminal_states must be indices in [0, {n_states}), got {given.tolist()}"
        )
    mask[given] = True
    return mask


def rollouts(
    mdp: TabularMDP,
    policy: SoftmaxPolicy | ArrayLike,
    *,
    n_episodes: int,
    horizon: int,
    seed: SeedLike,
    terminal_states: ArrayLike | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Rollouts:
    r"""Sample ``n_episodes`` episodes of ``mdp`` under ``policy`` in parallel, time-major.

    $$ s_0 \sim \rho_0, \qquad a_t \sim \pi(\cdot \mid s_t), \qquad r_t = r(s_t, a_t),
       \qquad s_{t+1} \sim P(\cdot \mid s_t, a_t), \qquad t = 0, \dots, T - 1, $$

    stopping an episode when $s_{t+1}$ is in ``terminal_states`` (``terminated[t]``) or at
    $t = T - 1$ (``truncated[t]``). There is no Python loop over episodes: the loop runs over
    chunks, steps and random blocks, and each step advances every alive episode of a chunk
    with alias-table draws (see the module docstring for the seeding scheme). The alias
    tables of the transitions are built once per MDP object and reused by later calls on it
    (the last few MDPs sampled, while they live).

    Args:
        mdp: a :class:`~rlmath.TabularMDP`, dense or sparse. Its ``gamma`` and ``horizon`` are
            not used (discounting belongs to the estimators).
        policy: a :class:`~rlmath.SoftmaxPolicy` or a row-stochastic ``[S, A]`` array.
        n_episodes: number of episodes $N \ge 1$.
        horizon: number of steps $T \ge 1$.
        seed: an int, a ``numpy.random.SeedSequence``, or ``None`` (fresh entropy); the
            output is a deterministic function of it (and of ``block_size``).
        terminal_states: states whose entry ends an episode, as a bool mask ``[S]`` or
            indices; ``None`` for none. For :meth:`TabularMDP.from_gymnasium` MDPs pass
            ``[mdp.n_states - 1]``.
        block_size: episodes per random stream (changing it changes the output).
        chunk_size: episodes simulated together, a multiple of ``block_size`` (the output
            does not depend on it; working memory is proportional to it).

    Returns:
        :class:`Rollouts` with arrays ``[T, N]`` (27 bytes per step and episode: int32 states
        and actions, float64 rewards and log-probabilities, three bool masks).

    Raises:
        TypeError: if ``mdp`` is not a :class:`~rlmath.TabularMDP` or an argument has the wrong
            type.
        ValueError: for non-positive sizes, a ``chunk_size`` that is not a multiple of
            ``block_size``, or a policy of the wrong shape.

    Examples:
        >>> from rlmath import TabularMDP
        >>> chain = TabularMDP(np.array([[[0.0, 1.0]], [[0.0, 1.0]]]), r=[[1.0], [0.0]],
        ...                    rho0=[1.0, 0.0], gamma=0.5)
        >>> out = rollouts(chain, [[1.0], [1.0]], n_episodes=3, horizon=4, seed=0,
        ...                terminal_states=[1])
        >>> out.states[:, 0].tolist(), out.alive[:, 0].tolist(), out.terminated[0].tolist()
        ([0, 1, 1, 1], [True, False, False, False], [True, True, True])
        >>> out.rewards.sum(axis=0).tolist(), out.final_states.tolist()
        ([1.0, 1.0, 1.0], [1, 1, 1])
    """
    _check_mdp(mdp)
    n_episodes = check_integer(n_episodes, "n_episodes", minimum=1)
    horizon = check_integer(horizon, "horizon", minimum=1)
    block_size, chunk_size = _check_sizes(block_size, chunk_size)
    tables = _build_tables(mdp, policy, terminal_states)
    root = _root_seed(seed)
    generators = _block_generators(root, -(-n_episodes // block_size))
    return _sample(
        tables, generators, n_episodes, horizon, None, block_size, chunk_size, root.entropy
    )


def discounted_rollouts(
    mdp: TabularMDP,
    policy: SoftmaxPolicy | ArrayLike,
    *,
    n_episodes: int,
    seed: SeedLike,
    gamma: float | None = None,
    max_steps: int | None = None,
    terminal_states: ArrayLike | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Rollouts:
    r"""Episodes of the infinite-horizon $\gamma$-discounted problem, by geometric stopping.

    Each episode runs as in :func:`rollouts` but for its own random length
    $H \sim \mathrm{Geometric}(1 - \gamma)$ on $\{1, 2, \dots\}$, independent of the path:

    $$ \Pr(H > t) = \gamma^t, \qquad \mathbb E[H] = \frac{1}{1 - \gamma}, \qquad
       H = 1 + \left\lfloor \frac{\log(1 - u)}{\log\gamma} \right\rfloor,\ u \sim U[0, 1), $$

    so it acts at times $0..H-1$ (``truncated[H-1]``, the geometric stop), or until it enters a
    terminal state (``terminated``, which takes precedence). Stopping after each step with
    probability $1 - \gamma$ *is* the discount (discounting as termination), so plain
    undiscounted sums along the sampled path are unbiased, with no truncation bias, for the
    discounted objective and its gradient: with $H$ independent of the path and
    $\Pr(H > t') = \gamma^{t'}$,

    $$ \mathbb E\Big[\sum_{t<H} r_t\Big] = \sum_{t \ge 0} \gamma^t\, \mathbb E[r_t] = J,
       \qquad
       \mathbb E\Big[\sum_{t<H} \nabla\log\pi(a_t \mid s_t) \sum_{t'=t}^{H-1} r_{t'}\Big]
       = \mathbb E\Big[\sum_{t \ge 0} \nabla\log\pi(a_t \mid s_t)
         \sum_{t' \ge t} \gamma^{t'} r_{t'}\Big] = \nabla J $$

    (bounded rewards: the sums converge absolutely, so they may be swapped with the
    expectation; the last step is the policy gradient theorem with the $\gamma^t$ factor).
    In :mod:`rlmath.estimators` these are the estimators with ``gamma=1.0``. A terminal state
    must be absorbing with reward 0 (as in :meth:`TabularMDP.from_gymnasium`) for stopping
    there to leave $J$ unchanged.

    The time axis has $T = \max_n H_n$ steps (about $\log N / (1 - \gamma)$; memory is
    27 bytes per step and episode). Lengths are unbounded in principle; ``max_steps`` caps
    them *explicitly*: if some $H_n$ exceeds it, a ``ValueError`` is raised (before any
    simulation) rather than truncating. The default cap is the least $m$ with
    $N \gamma^m \le$ :data:`MAX_STEPS_TAIL` $= 10^{-12}$, so by the union bound a call raises
    with probability at most $10^{-12}$; no episode is ever cut short.

    Args:
        mdp: a :class:`~rlmath.TabularMDP`, dense or sparse (its ``horizon`` is not used:
            the problem sampled is the infinite-horizon one with discount ``gamma``).
        policy: a :class:`~rlmath.SoftmaxPolicy` or a row-stochastic ``[S, A]`` array.
        n_episodes: number of episodes $N \ge 1$.
        seed: an int, a ``numpy.random.SeedSequence``, or ``None`` (fresh entropy); the
            output is a deterministic function of it (and of ``block_size``).
        gamma: discount $\gamma \in [0, 1)$; ``None`` for ``mdp.gamma``.
        max_steps: cap $m \ge 1$ on every length $H_n$ (exceeding it raises), or ``None`` for
            the default above.
        terminal_states: as in :func:`rollouts`.
        block_size: episodes per random stream (changing it changes the output).
        chunk_size: episodes simulated together, a multiple of ``block_size`` (the output
            does not depend on it).

    Returns:
        :class:`Rollouts` with arrays ``[T, N]``; ``lengths`` are the $\min(H_n, \text{time to
        termination})$.

    Raises:
        TypeError: if ``mdp`` is not a :class:`~rlmath.TabularMDP` or an argument has the wrong
            type.
        ValueError: for $\gamma \notin [0, 1)$, non-positive sizes, a bad ``chunk_size`` or
            policy (as in :func:`rollouts`), or a sampled length above ``max_steps``.

    References:
        Sutton and Barto 2018, Sec. 5.8 (discounting as a probability of termination);
        Thomas, P. "Bias in Natural Actor-Critic Algorithms", ICML 2014 (the discounted
        objective's gradient needs the $\gamma^t$ weighting that geometric stopping supplies);
        Zhang, K., Koppel, A., Zhu, H., Başar, T. "Global Convergence of Policy Gradient
        Methods to (Almost) Locally Optimal Policies", SIAM J. Control Optim. 58(6), 2020
        (random geometric horizons for unbiased policy gradients).

    Examples:
        >>> from rlmath import TabularMDP
        >>> loop = TabularMDP(np.ones((1, 1, 1)), r=[[1.0]], rho0=[1.0], gamma=0.75)
        >>> out = discounted_rollouts(loop, [[1.0]], n_episodes=20_000, seed=0)
        >>> # undiscounted along the path; exact J = 1/(1 - 0.75)
        >>> J = out.rewards.sum(axis=0)
        >>> bool(abs(J.mean() - 4.0) < 5 * J.std() / np.sqrt(20_000))
        True
        >>> last = out.truncated[out.lengths - 1, np.arange(20_000)]
        >>> bool(last.all()), out.states.dtype
        (True, dtype('int32'))
    """
    _check_mdp(mdp)
    n_episodes = check_integer(n_episodes, "n_episodes", minimum=1)
    gamma = _check_discount(mdp.gamma if gamma is None else gamma, from_mdp=gamma is None)
    cap = _max_steps(n_episodes, gamma) if max_steps is None else max_steps
    cap = check_integer(cap, "max_steps", minimum=1)
    block_size, chunk_size = _check_sizes(block_size, chunk_size)
    tables = _build_tables(mdp, policy, terminal_states)
    root = _root_seed(seed)
    generators = _block_generators(root, -(-n_episodes // block_size))
    uniforms = np.empty(len(generators) * block_size)
    _fill(generators, list(range(0, uniforms.size + 1, block_size)), uniforms)
    lengths = _geometric_lengths(uniforms, gamma)
    longest = int(lengths[:n_episodes].max())
    if longest > cap:
        episode = int(np.argmax(lengths[:n_episodes]))
        raise ValueError(
            f"max_steps = {cap} is shorter than a sampled episode: episode {episode} has "
            f"geometric length H = {longest} (Pr(H > {cap}) = gamma^{cap} = {gamma**cap:.3g} "
            "per episode); raise max_steps, or pass None for a cap exceeded with probability "
            f"<= {MAX_STEPS_TAIL:g}"
        )
    return _sample(
        tables, generators, n_episodes, longest, lengths, block_size, chunk_size, root.entropy
    )


# ----------------------------------------------------------------------------- validation
def _check_mdp(mdp: Any) -> None:
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")


def _check_sizes(block_size: Any, chunk_size: Any) -> tuple[int, int]:
    block_size = check_integer(block_size, "block_size", minimum=1)
    chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)
    if chunk_size % block_size != 0:
        raise ValueError(
            f"chunk_size must be a multiple of block_size = {block_size}, got {chunk_size}"
        )
    return block_size, chunk_size


def _check_discount(gamma: Any, *, from_mdp: bool) -> float:
    try:
        return check_interval(gamma, "gamma", low=0.0, high=1.0, high_open=True)
    except ValueError as error:
        if not from_mdp:
            raise
        raise ValueError(f"{error} (gamma=None takes mdp.gamma; pass gamma in [0, 1))") from None


# ----------------------------------------------------------------------------- geometric lengths
def _geometric_lengths(uniforms: FloatArray, gamma: float) -> IntArray:
    r"""$H = 1 + \lfloor \log(1 - u) / \log\gamma \rfloor$: $\Pr(H > t) = \Pr(1 - u \le \gamma^t) = \gamma^t$.

    Args:
        uniforms: ``[M]`` float64 in $[0, 1)$ ($1 - u \in (0, 1]$, so the log is finite).
        gamma: $\gamma \in [0, 1)$ ($\gamma = 0$ gives $H = 1$).

    Returns:
        ``[M]`` int lengths $\ge 1$ (exact up to the rounding of the logarithms).
    """
    if gamma == 0.0:
        return np.ones(uniforms.shape, dtype=np.intp)
    ratio = np.log1p(-uniforms) / math.log(gamma)
    return (np.floor(ratio) + 1.0).astype(np.intp)


def _max_steps(n_episodes: int, gamma: float, tail: float = MAX_STEPS_TAIL) -> int:
    r"""Least $m \ge 1$ with $N \gamma^m \le$ ``tail``: $\Pr(\max_n H_n > m) \le N \gamma^m$."""
    if gamma == 0.0:
        return 1
    m = max(1, math.ceil(math.log(tail / n_episodes) / math.log(gamma)))
    while n_episodes * gamma**m > tail:  # guard against rounding in the logarithms
        m += 1
    return m


# ----------------------------------------------------------------------------- the engine
@dataclass(frozen=True, eq=False)
class _FusedTable:
    r"""An :class:`AliasTable` in the layout the rollout loop draws from (see :func:`_fuse`).

    Attributes:
        cuts: ``[R K]`` float64, $c_{i,k}$: $k + t_{i,k}$ rounded up to a float.
        choices: ``[2 R K]`` int, ``outcomes[i, k]`` at $2 f$ and ``aliases[i, k]`` at
            $2 f + 1$, $f = i K + k$ (int32 when the outcomes fit).
        n_slots: $K$.
    """

    cuts: FloatArray
    choices: StepIntArray
    n_slots: int


def _fuse(table: AliasTable, dtype: type[np.signedinteger[Any]]) -> _FusedTable:
    r"""The fused form of ``table``, exact: $K u - k < t_k \iff K u < c_k$ for every float $u$.

    For the float $x = K u$ and $k = \lfloor x \rfloor$, $x - k$ is computed exactly, so the
    alias test compares the reals $x < k + t_k$. The smallest float $c_k \ge k + t_k$ decides
    it the same way for every float $x$, since no float lies in $[k + t_k, c_k)$. It is
    $k + t_k$ rounded to nearest, moved up one float where that rounded down; the test
    $c_k - k < t_k$ is exact, as $c_k - k$ is (Sterbenz: $k \le c_k \le 2k$ for $k \ge 1$),
    and for a float $c \ge 0$ the next float up has the bit pattern of $c$ plus one.

    Args:
        table: an :class:`AliasTable` ``[R, K]``.
        dtype: integer type of the outcomes (large enough for every outcome).

    Returns:
        :class:`_FusedTable` with the same outcome for every row and uniform.
    """
    slots = np.arange(table.n_slots, dtype=np.float64)
    cuts = slots + table.thresholds
    rounded_down = cuts - slots < table.thresholds
    bits = cuts.view(np.int64)
    np.add(bits, rounded_down, out=bits)  # next float up: cuts >= 0, so its bit pattern + 1
    choices = np.stack([table.outcomes, table.aliases], axis=-1).astype(dtype)
    return _FusedTable(cuts.ravel(), choices.ravel(), table.n_slots)


def _fused_draw(
    table: _FusedTable,
    flat: IntArray,
    scaled: FloatArray,
    out: StepIntArray,
    cut: FloatArray,
    alias: BoolArray,
) -> None:
    r"""Alias draws into ``out``: $x_n$ = ``choices[2 f_n + [K u_n \ge c_{f_n}]]``.

    Args:
        table: a :class:`_FusedTable`.
        flat: ``[n]`` intp slot indices $f_n = i_n K + \lfloor K u_n \rfloor$ (overwritten).
        scaled: ``[n]`` float64 $K u_n$.
        out: ``[n]`` int of the dtype of ``table.choices``, receives the outcomes.
        cut: ``[n]`` float64 scratch.
        alias: ``[n]`` bool scratch.
    """
    # Methods and positional `out`: this runs twice per step, and with a few hundred alive
    # episodes NumPy's per-call overhead is what costs. mode="wrap": the indices are in range
    # by construction, and mode="raise" would copy `out` (to leave it untouched on an error).
    table.cuts.take(flat, out=cut, mode="wrap")
    np.greater_equal(scaled, cut, alias)
    flat += flat
    flat += alias
    table.choices.take(flat, out=out, mode="wrap")


@dataclass(frozen=True, eq=False)
class _Tables:
    initial: _FusedTable  # 1 row over S states
    policy: _FusedTable  # S rows over A actions: row s starts at slot s A
    transitions: _FusedTable  # S A rows (pair s A + a) over next states
    rewards: FloatArray  # [S A]
    log_pi: FloatArray  # [S A]
    terminal: BoolArray  # [S]
    has_terminal: bool
    n_actions: int
    index_dtype: type[np.signedinteger[Any]]  # of states and actions, in the loop and output


def _index_dtype(n_states: int, n_actions: int) -> type[np.signedinteger[Any]]:
    """int32 for states and actions, unless they do not fit (then intp)."""
    return np.int32 if max(n_states, n_actions) <= np.iinfo(np.int32).max else np.intp


def _build_tables(
    mdp: TabularMDP, policy: SoftmaxPolicy | ArrayLike, terminal_states: ArrayLike | None
) -> _Tables:
    S, A = mdp.n_states, mdp.n_actions
    pi = as_probabilities(policy, S, A)
    if isinstance(policy, SoftmaxPolicy):
        log_pi = policy.log_probabilities()
    else:
        with np.errstate(divide="ignore"):
            log_pi = np.log(pi)  # -inf only where pi = 0, which is never sampled
    terminal = _terminal_mask(terminal_states, S)
    dtype = _index_dtype(S, A)
    return _Tables(
        initial=_fuse(alias_table(mdp.rho0), dtype),
        policy=_fuse(alias_table(pi), dtype),
        transitions=_transition_table(mdp, dtype),
        rewards=np.ascontiguousarray(mdp.r, dtype=np.float64).ravel(),
        log_pi=np.ascontiguousarray(log_pi, dtype=np.float64).ravel(),
        terminal=terminal,
        has_terminal=bool(terminal.any()),
        n_actions=A,
        index_dtype=dtype,
    )


#: Fused transition tables of the most recently sampled MDPs, oldest first:
#: ``{id(mdp): (weak reference to mdp, table)}``, at most :data:`_CACHED_MDPS` entries.
_TRANSITION_TABLES: dict[int, tuple[weakref.ref[TabularMDP], _FusedTable]] = {}
_CACHED_MDPS = 4


def _transition_table(mdp: TabularMDP, dtype: type[np.signedinteger[Any]]) -> _FusedTable:
    """The fused alias table of ``mdp``'s transitions, kept for the last few MDP objects.

    A :class:`~rlmath.TabularMDP` does not change (its arrays are read-only), so the table is
    a function of the object, and repeated calls on one MDP (batch after batch) build it
    once. Building it costs $O(S A K)$, as much as sampling $10^5$ to $10^6$ steps of a dense
    MDP with a few hundred states. A table is kept only while its MDP lives (a weak
    reference) and among the :data:`_CACHED_MDPS` most recently sampled.
    """
    key = id(mdp)
    cached = _TRANSITION_TABLES.pop(key, None)
    if cached is None or cached[0]() is not mdp or cached[1].choices.dtype != dtype:
        table = _fuse(transition_alias_table(mdp), dtype)
        cached = (weakref.ref(mdp, lambda _: _TRANSITION_TABLES.pop(key, None)), table)
    _TRANSITION_TABLES[key] = cached  # now the most recent
    while len(_TRANSITION_TABLES) > _CACHED_MDPS:
        del _TRANSITION_TABLES[next(iter(_TRANSITION_TABLES))]
    return cached[1]


def _block_generators(root: np.random.SeedSequence, n_blocks: int) -> list[np.random.Generator]:
    return [_block_generator(root, b) for b in range(n_blocks)]


def _fill(generators: list[np.random.Generator], offsets: list[int], out: FloatArray) -> None:
    """Uniforms into rows ``offsets[j]:offsets[j + 1]`` of ``out`` from ``generators[j]``."""
    for generator, low, high in zip(generators, offsets[:-1], offsets[1:], strict=True):
        if high > low:
            generator.random(out=out[low:high])


_OUTPUTS = (
    "states",
    "actions",
    "rewards",
    "log_probs",
    "terminated",
    "truncated",
    "alive",
    "final_states",
)


def _sample(
    tables: _Tables,
    generators: list[np.random.Generator],
    n_episodes: int,
    n_steps: int,
    limits: IntArray | None,
    block_size: int,
    chunk_size: int,
    seed_entropy: Any,
) -> Rollouts:
    """Simulate ``n_episodes`` episodes of at most ``n_steps`` steps, chunk by chunk.

    ``generators`` holds one generator per block (``ceil(N / block_size)``); ``limits`` the
    ``[len(generators) * block_size]`` geometric lengths, or ``None`` (the horizon only).
    """
    T, N = n_steps, n_episodes
    dtype = tables.index_dtype
    out = Rollouts(
        states=np.empty((T, N), dtype=dtype),
        actions=np.zeros((T, N), dtype=dtype),
        rewards=np.zeros((T, N)),
        log_probs=np.zeros((T, N)),
        terminated=np.zeros((T, N), dtype=bool),
        truncated=np.zeros((T, N), dtype=bool),
        alive=np.empty((T, N), dtype=bool),
        final_states=np.empty(N, dtype=dtype),
        seed_entropy=seed_entropy,
        block_size=block_size,
    )
    blocks_per_chunk = chunk_size // block_size
    n_blocks = len(generators)
    work = _Workspace.allocate(min(blocks_per_chunk, n_blocks) * block_size, tables)
    arrays = {name: getattr(out, name) for name in _OUTPUTS}
    for first_block in range(0, n_blocks, blocks_per_chunk):
        chunk = generators[first_block : first_block + blocks_per_chunk]
        start = first_block * block_size
        stop = start + len(chunk) * block_size
        if stop <= N:  # whole chunk: write straight into the output
            views = {name: array[..., start:stop] for name, array in arrays.items()}
        else:  # the last block is cut: simulate it whole (so episodes do not depend on N)
            views = {
                name: np.zeros(array.shape[:-1] + (stop - start,), dtype=array.dtype)
                for name, array in arrays.items()
            }
        chunk_limits = None if limits is None else limits[start:stop]
        _simulate_chunk(tables, chunk, block_size, chunk_limits, work, views)
        if stop > N:
            for name, array in arrays.items():
                array[..., start:N] = views[name][..., : N - start]
    for array in arrays.values():
        array.setflags(write=False)
    return out


@dataclass(eq=False)
class _Workspace:
    """Scratch vectors ``[W]`` of the rollout loop, allocated once per call, reused by chunks.

    A step with $n$ alive episodes works on the prefixes ``[:n]``; ``state`` and
    ``next_state`` swap roles after every step.
    """

    draws: FloatArray  # [W, 2] the step's uniforms u per episode, then (A u, K u) in place
    slot_next: IntArray  # floor(K u) of the next-state draw
    state: StepIntArray  # s_t of the alive episodes
    next_state: StepIntArray  # s_{t+1}
    action: StepIntArray  # a_t
    pair: IntArray  # s_t A + a_t
    flat: IntArray  # slot indices of a draw
    cut: FloatArray  # c of the drawn slots
    alias: BoolArray  # the alias was taken
    values: FloatArray  # looked-up rewards / log-probabilities; initial uniforms
    ended: BoolArray  # the episode ends after step t
    columns: StepIntArray  # [W] by column: s_t while alive, then the final state

    @classmethod
    def allocate(cls, width: int, tables: _Tables) -> _Workspace:
        dtype = tables.index_dtype
        return cls(
            draws=np.empty((width, 2)),
            slot_next=np.empty(width, dtype=np.intp),
            state=np.empty(width, dtype=dtype),
            next_state=np.empty(width, dtype=dtype),
            action=np.empty(width, dtype=dtype),
            pair=np.empty(width, dtype=np.intp),
            flat=np.empty(width, dtype=np.intp),
            cut=np.empty(width),
            alias=np.empty(width, dtype=bool),
            values=np.empty(width),
            ended=np.empty(width, dtype=bool),
            columns=np.empty(width, dtype=dtype),
        )


def _simulate_chunk(
    tables: _Tables,
    generators: list[np.random.Generator],
    block_size: int,
    limits: IntArray | None,
    work: _Workspace,
    out: dict[str, NDArray[Any]],
) -> None:
    """Simulate whole blocks of episodes into ``out`` (arrays ``[T, len(generators) * block_size]``).

    Each block's generator draws, at each step, two uniforms per *alive* episode of the block,
    in episode order, so the draws of a block depend on nothing but its own stream. The alive
    episodes are kept packed at the front of the work vectors, in episode order; ``index``
    maps them to their columns once some have ended (``None`` while all are alive).
    """
    T = out["states"].shape[0]
    width = len(generators) * block_size
    bounds = np.arange(len(generators) + 1) * block_size  # first episode of each block
    offsets = bounds.tolist()
    _initial_states(tables.initial, generators, offsets, width, work)
    lengths = np.full(width, T, dtype=np.intp)
    final = out["final_states"]
    index: IntArray | None = None
    n = width
    for t in range(T):
        _step(tables, generators, offsets, n, work)
        _record(tables, out, t, index, n, work)
        stopped = _stopped(tables, t, limits, n, work)
        if stopped is None:
            work.state, work.next_state = work.next_state, work.state
            continue
        final_state = work.next_state[stopped]
        if index is None:  # from now on states are recorded through work.columns
            work.columns[:width] = work.next_state[:width]
            columns = stopped
        else:
            columns = index[stopped]
            work.columns[columns] = final_state
        final[columns] = final_state
        lengths[columns] = t + 1
        kept = np.logical_not(work.ended[:n], work.ended[:n])  # pack the survivors
        index = kept.nonzero()[0] if index is None else index[kept]
        following = work.next_state[:n][kept]
        n = following.size
        work.state[:n] = following
        if limits is not None:
            limits = limits[kept]
        if n == 0:
            out["states"][t + 1 :] = work.columns[:width]  # padding: the final states
            break
        offsets = index.searchsorted(bounds).tolist()
    else:  # cut by the horizon after step T - 1
        final[slice(None) if index is None else index] = work.state[:n]
    _finish(tables, out, lengths)


def _initial_states(
    table: _FusedTable,
    generators: list[np.random.Generator],
    offsets: list[int],
    width: int,
    work: _Workspace,
) -> None:
    r"""$s_0 \sim \rho_0$ into ``work.state[:width]``, one uniform per episode."""
    scaled = work.values[:width]
    _fill(generators, offsets, scaled)
    scaled *= table.n_slots
    flat = work.flat[:width]
    flat[:] = scaled  # floor(K u): the table has one row
    _fused_draw(table, flat, scaled, work.state[:width], work.cut[:width], work.alias[:width])


def _step(
    tables: _Tables,
    generators: list[np.random.Generator],
    offsets: list[int],
    n: int,
    work: _Workspace,
) -> None:
    r"""One step of the ``n`` alive episodes: $a_t$, the pair $s_t A + a_t$ and $s_{t+1}$."""
    draws = work.draws[:n]
    _fill(generators, offsets, draws)
    scaled_action, scaled_next = draws[:, 0], draws[:, 1]
    scaled_action *= tables.n_actions  # A u
    scaled_next *= tables.transitions.n_slots  # K u
    pair, flat, action = work.pair[:n], work.flat[:n], work.action[:n]
    cut, alias = work.cut[:n], work.alias[:n]
    flat[...] = scaled_action  # floor(A u), as A u >= 0
    np.multiply(work.state[:n], tables.n_actions, pair)  # policy row s starts at slot s A
    flat += pair
    _fused_draw(tables.policy, flat, scaled_action, action, cut, alias)
    pair += action
    slot_next = work.slot_next[:n]
    slot_next[...] = scaled_next  # floor(K u)
    np.multiply(pair, tables.transitions.n_slots, flat)
    flat += slot_next
    _fused_draw(tables.transitions, flat, scaled_next, work.next_state[:n], cut, alias)


def _record(
    tables: _Tables,
    out: dict[str, NDArray[Any]],
    t: int,
    index: IntArray | None,
    n: int,
    work: _Workspace,
) -> None:
    """Write step ``t`` of the ``n`` alive episodes into row ``t`` of the outputs.

    Once some episodes have ended (``index`` given), the states go through ``work.columns``,
    which keeps each ended episode's final state: copying it whole writes the padding too.
    """
    states, actions = out["states"][t], out["actions"][t]
    rewards, log_probs = out["rewards"][t], out["log_probs"][t]
    state, action, pair = work.state[:n], work.action[:n], work.pair[:n]
    if index is None:  # all alive: whole rows, filled in place
        states[...] = state
        actions[...] = action
        tables.rewards.take(pair, out=rewards, mode="wrap")
        tables.log_pi.take(pair, out=log_probs, mode="wrap")
        return
    values = work.values[:n]
    columns = work.columns[: states.size]
    columns[index] = state
    states[...] = columns
    actions[index] = action
    rewards[index] = tables.rewards.take(pair, out=values, mode="wrap")
    log_probs[index] = tables.log_pi.take(pair, out=values, mode="wrap")


def _stopped(
    tables: _Tables, t: int, limits: IntArray | None, n: int, work: _Workspace
) -> IntArray | None:
    """Positions of the alive episodes that end after step ``t`` (``None`` if none does).

    An episode ends when $s_{t+1}$ is terminal or $t + 1$ is its geometric length
    (``limits``, ``[n]``); without either nothing ends before the horizon. The mask is left
    in ``work.ended[:n]``.
    """
    ended = work.ended[:n]
    if tables.has_terminal:
        tables.terminal.take(work.next_state[:n], out=ended, mode="wrap")
        if limits is not None:
            ended |= limits == t + 1
    elif limits is not None:
        np.equal(limits, t + 1, ended)
    else:
        return None
    stopped = ended.nonzero()[0]
    return stopped if stopped.size else None


def _finish(tables: _Tables, out: dict[str, NDArray[Any]], lengths: IntArray) -> None:
    """The masks ``alive``, ``terminated`` and ``truncated`` from the episodes' lengths.

    An episode was terminated exactly when its final state is terminal: entering one ends
    it, and it ends in no other way in a terminal state.
    """
    T, width = out["states"].shape
    np.less(np.arange(T)[:, None], lengths[None, :], out["alive"])
    terminated = tables.terminal[out["final_states"]]
    last, columns = lengths - 1, np.arange(width)
    out["terminated"][last[terminated], columns[terminated]] = True
    out["truncated"][last[~terminated], columns[~terminated]] = True
