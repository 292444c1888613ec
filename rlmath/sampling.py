r"""Vectorised Monte-Carlo rollouts of a tabular MDP: the sampler behind the Monte-Carlo leg.

Every categorical draw (initial state, action, next state) is an $O(1)$ lookup in a Walker
alias table, built for all rows at once with NumPy, and consumes exactly one uniform
$u \sim U[0, 1)$: with $K$ slots per row, slot $k = \lfloor K u \rfloor$ and the fraction
$K u - k$ decides between the slot's own outcome and its alias.

Randomness is organised so that results never depend on how the work is split in memory:

- Episodes are grouped in *blocks* of ``block_size`` consecutive episodes. Block ``b`` draws
  from its own ``numpy.random.Generator`` seeded by the child ``SeedSequence`` with spawn key
  ``seed.spawn_key + (b,)``, in a fixed order: ``block_size`` uniforms for the initial states,
  then at each step $t$ two uniforms per episode of the block that is still alive, in episode
  order (the first picks $a_t$, the second $s_{t+1}$). What a block draws therefore depends on
  nothing but its own stream, and a cut last block is simulated whole, so the first $n$
  episodes are the same whatever ``n_episodes`` is. Ended episodes draw nothing, so the cost
  follows the number of real steps.
- Episodes are simulated in memory *chunks* of ``chunk_size`` episodes (a multiple of
  ``block_size``): working memory is $O(\text{chunk size})$ and the output is identical for
  every chunk size.

Conventions: time-major arrays ``[T, N]`` with times $0..T-1$; $r_t = r(s_t, a_t)$ is the
*expected* reward that :class:`~rlmath.TabularMDP` stores, received at time $t$ (every
estimator's mean is as with sampled rewards, whose conditional mean given $(s_t, a_t)$ it is;
variances are those of this expected-reward MDP);
``terminated[t]`` means $s_{t+1}$ is a terminal state; ``truncated[t]`` means the horizon cut
the episode after step $t$ (only at $t = T-1$); at most one of the two is true, termination
taking precedence.

References:
    Walker, A. J. "An efficient method for generating discrete random variables with general
    distributions", ACM TOMS 3(3), 1977.
    Vose, M. D. "A linear algorithm for generating random numbers with a given distribution",
    IEEE TSE 17(9), 1991.
    O'Neill, M. E. "PCG: A family of simple fast space-efficient statistically good algorithms
    for random number generation", 2014 (NumPy's default bit generator, PCG64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rlmath._validation import FloatArray, as_float_array, check_integer, check_probabilities
from rlmath.mdp import TabularMDP
from rlmath.policy import SoftmaxPolicy, as_probabilities

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "AliasTable",
    "Rollouts",
    "alias_sample",
    "alias_table",
    "rollouts",
    "sample_actions",
    "transition_alias_table",
]

IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]
SeedLike = int | np.random.SeedSequence | None

#: Episodes per unit of randomness (one child ``SeedSequence`` each). Part of the definition of
#: the output: changing it changes the sampled episodes.
DEFAULT_BLOCK_SIZE: int = 1024

#: Episodes simulated together in memory (a multiple of the block size). Only a performance
#: knob: the output does not depend on it. 16 blocks keep each per-step vector (128 KiB of
#: float64) in cache.
DEFAULT_CHUNK_SIZE: int = 16 * DEFAULT_BLOCK_SIZE


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

    q = p * K
    thresholds = np.ones((R, K))
    alias_slot = np.tile(np.arange(K, dtype=np.intp), (R, 1))
    small = q < 1.0
    order = np.argsort(~small, axis=1, kind="stable")  # per row: small slots, then large ones
    n_small = small.sum(axis=1)
    next_small = np.zeros(R, dtype=np.intp)  # position in `order` of the next small slot
    next_large = n_small.copy()  # position in `order` of the current large slot
    rows = np.arange(R)
    current = order[rows, 0]  # the small slot being filled
    active = (n_small > 0) & (n_small < K)
    while active.any():
        i = rows[active]
        k, large = current[i], order[i, next_large[i]]
        thresholds[i, k] = q[i, k]
        alias_slot[i, k] = large
        q[i, large] -= 1.0 - q[i, k]
        demoted = q[i, large] < 1.0  # the large slot becomes the next small one
        next_large[i] += demoted
        next_small[i] += ~demoted
        has_small = demoted | (next_small[i] < n_small[i])
        current[i] = np.where(demoted, large, order[i, np.minimum(next_small[i], K - 1)])
        active[i] = has_small & (next_large[i] < K)
    aliases = np.take_along_axis(labels, alias_slot, axis=1)
    return AliasTable(thresholds, np.ascontiguousarray(labels), aliases)


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
        states: ``[T, N]`` int, $s_t$, times 0..T-1.
        actions: ``[T, N]`` int, $a_t \sim \pi(\cdot \mid s_t)$, times 0..T-1.
        rewards: ``[T, N]`` float64, $r_t = r(s_t, a_t)$, times 0..T-1.
        log_probs: ``[T, N]`` float64, $\log \pi(a_t \mid s_t)$ of the sampling policy.
        terminated: ``[T, N]`` bool, $s_{t+1}$ is a terminal state (the last alive step).
        truncated: ``[T, N]`` bool, the horizon ended the episode after step $t$ ($t = T-1$).
        alive: ``[T, N]`` bool, step $t$ happened.
        final_states: ``[N]`` int, the state after the last alive step ($s_{t+1}$ of that step:
            the terminal state entered, or $s_T$).
        seed_entropy: the root ``SeedSequence`` entropy (for the record).
        block_size: episodes per random stream.
    """

    states: IntArray
    actions: IntArray
    rewards: FloatArray
    log_probs: FloatArray
    terminated: BoolArray
    truncated: BoolArray
    alive: BoolArray
    final_states: IntArray
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

    def next_states(self) -> IntArray:
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
    with alias-table draws (see the module docstring for the seeding scheme).

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
        :class:`Rollouts` with arrays ``[T, N]`` (about 35 bytes per step and episode:
        ``[T, N]`` int64 states and actions, float64 rewards and log-probabilities, three
        bool masks).

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
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    n_episodes = check_integer(n_episodes, "n_episodes", minimum=1)
    horizon = check_integer(horizon, "horizon", minimum=1)
    block_size = check_integer(block_size, "block_size", minimum=1)
    chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)
    if chunk_size % block_size != 0:
        raise ValueError(
            f"chunk_size must be a multiple of block_size = {block_size}, got {chunk_size}"
        )
    S, A = mdp.n_states, mdp.n_actions
    pi = as_probabilities(policy, S, A)
    if isinstance(policy, SoftmaxPolicy):
        log_pi = policy.log_probabilities()
    else:
        with np.errstate(divide="ignore"):
            log_pi = np.log(pi)  # -inf only where pi = 0, which is never sampled
    terminal = _terminal_mask(terminal_states, S)
    root = _root_seed(seed)

    tables = _Tables(
        initial=alias_table(mdp.rho0),
        policy=alias_table(pi),
        transitions=transition_alias_table(mdp),
        rewards=np.ascontiguousarray(mdp.r).ravel(),
        log_pi=np.ascontiguousarray(log_pi).ravel(),
        terminal=terminal,
        n_actions=A,
    )
    T, N = horizon, n_episodes
    out = Rollouts(
        states=np.empty((T, N), dtype=np.intp),
        actions=np.zeros((T, N), dtype=np.intp),
        rewards=np.zeros((T, N)),
        log_probs=np.zeros((T, N)),
        terminated=np.zeros((T, N), dtype=bool),
        truncated=np.zeros((T, N), dtype=bool),
        alive=np.zeros((T, N), dtype=bool),
        final_states=np.empty(N, dtype=np.intp),
        seed_entropy=root.entropy,
        block_size=block_size,
    )
    blocks_per_chunk = chunk_size // block_size
    n_blocks = -(-N // block_size)
    arrays = {name: getattr(out, name) for name in _OUTPUTS}
    for first_block in range(0, n_blocks, blocks_per_chunk):
        blocks = range(first_block, min(first_block + blocks_per_chunk, n_blocks))
        start = first_block * block_size
        stop = start + len(blocks) * block_size
        if stop <= N:  # whole chunk: write straight into the output
            views = {name: array[..., start:stop] for name, array in arrays.items()}
        else:  # the last block is cut: simulate it whole (so episodes do not depend on N)
            views = {
                name: np.zeros(array.shape[:-1] + (stop - start,), dtype=array.dtype)
                for name, array in arrays.items()
            }
        _simulate_chunk(tables, [_block_generator(root, b) for b in blocks], block_size, views)
        if stop > N:
            for name, array in arrays.items():
                array[..., start:N] = views[name][..., : N - start]
    for array in arrays.values():
        array.setflags(write=False)
    return out


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


@dataclass(frozen=True)
class _Tables:
    initial: AliasTable
    policy: AliasTable
    transitions: AliasTable
    rewards: FloatArray  # [S * A]
    log_pi: FloatArray  # [S * A]
    terminal: BoolArray  # [S]
    n_actions: int


def _simulate_chunk(
    tables: _Tables,
    generators: list[np.random.Generator],
    block_size: int,
    out: dict[str, NDArray[Any]],
) -> None:
    """Simulate whole blocks of episodes into ``out`` (arrays ``[T, len(generators) * block_size]``).

    Each block's generator draws, at each step, two uniforms per *alive* episode of the block,
    in episode order, so the draws of a block depend on nothing but its own stream.
    """
    T = out["states"].shape[0]
    width = len(generators) * block_size
    initial = np.empty((len(generators), block_size))
    for j, generator in enumerate(generators):
        generator.random(out=initial[j])
    state = alias_sample(tables.initial, None, initial.reshape(width))

    final = out["final_states"]
    draws = np.empty((width, 2))
    index: IntArray | slice = slice(None)  # the alive episodes (a slice while all are alive)
    bounds = np.arange(len(generators) + 1) * block_size  # first episode of each block
    offsets = bounds
    for t in range(T):
        for j, generator in enumerate(generators):
            if offsets[j + 1] > offsets[j]:
                generator.random(out=draws[offsets[j] : offsets[j + 1]])
        n_alive = int(offsets[-1])
        action = alias_sample(tables.policy, state, draws[:n_alive, 0])
        pair = state * tables.n_actions + action
        next_state = alias_sample(tables.transitions, pair, draws[:n_alive, 1])
        out["states"][t, index] = state
        out["actions"][t, index] = action
        out["rewards"][t, index] = tables.rewards[pair]
        out["log_probs"][t, index] = tables.log_pi[pair]
        out["alive"][t, index] = True
        ended = tables.terminal[next_state]
        if not ended.any():
            state = next_state
            continue
        alive_index = np.arange(width) if isinstance(index, slice) else index
        out["terminated"][t, alive_index[ended]] = True
        final[alive_index[ended]] = next_state[ended]
        keep = ~ended
        index, state = alive_index[keep], next_state[keep]
        offsets = np.searchsorted(index, bounds)
        if index.size == 0:
            break
    else:
        final[index] = state
        out["truncated"][T - 1, index] = True
    # padding after the end: the final state, so r[states, actions] stays meaningful there
    np.copyto(out["states"], final[None, :], where=~out["alive"])
