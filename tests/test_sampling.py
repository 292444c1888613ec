"""Tests of rlmath.sampling: alias tables, the vectorised sampler and its seeding scheme."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmath import SoftmaxPolicy, TabularMDP, estimators, exact
from rlmath.sampling import (
    DEFAULT_BLOCK_SIZE,
    alias_sample,
    alias_table,
    discounted_rollouts,
    rollouts,
    sample_actions,
    transition_alias_table,
)
from rlmath.statistics import agreement


def assert_same_rollouts(a, b, episodes=slice(None)):
    """Every field of ``b`` equals that of ``a`` restricted to ``episodes`` (the last axis)."""
    for field in dataclasses.fields(a):
        left, right = getattr(a, field.name), getattr(b, field.name)
        if isinstance(left, np.ndarray):
            left = left[..., episodes]
        np.testing.assert_array_equal(left, right, err_msg=field.name)


def slot_masses(table, K):
    """Probability of each outcome implied by an alias table: 1/K per slot, split in two."""
    R = table.n_rows
    out = np.zeros((R, int(max(table.outcomes.max(), table.aliases.max())) + 1))
    rows = np.repeat(np.arange(R), table.n_slots)
    np.add.at(out, (rows, table.outcomes.ravel()), table.thresholds.ravel() / K)
    np.add.at(out, (rows, table.aliases.ravel()), (1 - table.thresholds.ravel()) / K)
    return out


def random_distributions(seed, rows, size, zero_fraction):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(size, 0.5), size=rows)
    p[rng.random(p.shape) < zero_fraction] = 0.0
    p[:, 0] += p.sum(axis=1) == 0  # keep every row a distribution
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def small():
    """A 4-state, 3-action random MDP with horizon 5 and a random softmax policy."""
    mdp = TabularMDP.random(4, 3, seed=11, gamma=0.9, horizon=5)
    policy = SoftmaxPolicy(np.random.default_rng(12).normal(size=(4, 3)))
    return mdp, policy


@pytest.fixture(scope="module")
def frozenlake():
    gymnasium = pytest.importorskip("gymnasium")
    env = gymnasium.make("FrozenLake-v1", map_name="4x4")
    return TabularMDP.from_gymnasium(env, gamma=0.95)


# ----------------------------------------------------------------------------- alias tables
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 6),
    size=st.integers(1, 40),
    zero_fraction=st.sampled_from([0.0, 0.3, 0.9]),
)
def test_alias_table_reproduces_probabilities(seed, rows, size, zero_fraction):
    p = random_distributions(seed, rows, size, zero_fraction)
    table = alias_table(p)
    assert ((table.thresholds >= 0) & (table.thresholds <= 1)).all()
    np.testing.assert_allclose(slot_masses(table, size)[:, :size], p, atol=1e-14)


def test_alias_table_never_aliases_to_zero_probability():
    p = random_distributions(3, 50, 9, 0.5)
    table = alias_table(p)
    assert (np.take_along_axis(p, table.aliases, axis=1) > 0).all()


def test_alias_sample_on_a_uniform_grid_matches_probabilities():
    # M evenly spaced uniforms: each slot's share is within 1/M of exact, outcomes within 2K/M
    p = np.array([[0.5, 0.0, 0.2, 0.3], [0.05, 0.05, 0.0, 0.9]])
    M = 400_000
    u = (np.arange(M) + 0.5) / M
    for row in range(2):
        draws = alias_sample(alias_table(p), np.full(M, row), u)
        np.testing.assert_allclose(np.bincount(draws, minlength=4) / M, p[row], atol=2 * 4 / M)


def test_alias_sample_handles_extreme_uniforms():
    table = alias_table([[0.0, 0.7, 0.0, 0.3]])
    u = np.array([0.0, np.nextafter(1.0, 0.0), 0.25, np.nextafter(0.25, 0.0)])
    assert set(alias_sample(table, None, u).tolist()) <= {1, 3}


def test_sparse_transition_table_matches_dense():
    mdp = TabularMDP.random(30, 3, seed=4, n_successors=5)
    table = transition_alias_table(mdp)
    assert table.n_slots == 5
    masses = slot_masses(table, table.n_slots)
    implied = np.zeros((90, 30))
    implied[:, : masses.shape[1]] = masses
    np.testing.assert_allclose(implied, mdp.P.toarray(), atol=1e-14)


# ----------------------------------------------------------------------------- reproducibility
def test_output_does_not_depend_on_chunk_size(small):
    mdp, policy = small
    runs = [
        rollouts(mdp, policy, n_episodes=1000, horizon=5, seed=3, block_size=64, chunk_size=c)
        for c in (64, 192, 1024)
    ]
    for other in runs[1:]:
        assert_same_rollouts(runs[0], other)


def test_output_does_not_depend_on_chunk_size_with_termination(frozenlake):
    kwargs = dict(n_episodes=700, horizon=40, seed=9, block_size=32, terminal_states=[16])
    policy = SoftmaxPolicy.uniform(17, 4)
    a = rollouts(frozenlake, policy, chunk_size=32, **kwargs)
    b = rollouts(frozenlake, policy, chunk_size=32 * 7, **kwargs)
    assert_same_rollouts(a, b)


def test_first_episodes_do_not_depend_on_n_episodes(small):
    mdp, policy = small
    big = rollouts(mdp, policy, n_episodes=300, horizon=5, seed=1, block_size=128, chunk_size=256)
    cut = rollouts(mdp, policy, n_episodes=200, horizon=5, seed=1, block_size=128, chunk_size=256)
    assert_same_rollouts(big, cut, episodes=slice(200))


def test_seed_reproducible_and_seed_sequence_accepted(small):
    mdp, policy = small
    a = rollouts(mdp, policy, n_episodes=50, horizon=5, seed=7)
    b = rollouts(mdp, policy, n_episodes=50, horizon=5, seed=np.random.SeedSequence(7))
    c = rollouts(mdp, policy, n_episodes=50, horizon=5, seed=8)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(a.actions, c.actions)


def test_outputs_are_read_only(small):
    mdp, policy = small
    out = rollouts(mdp, policy, n_episodes=4, horizon=5, seed=0)
    with pytest.raises(ValueError):
        out.rewards[0, 0] = 1.0


# ----------------------------------------------------------------------------- contents
def test_rewards_and_log_probs_are_looked_up(small):
    mdp, policy = small
    out = rollouts(mdp, policy, n_episodes=500, horizon=5, seed=2)
    np.testing.assert_array_equal(out.rewards, mdp.r[out.states, out.actions])
    np.testing.assert_array_equal(
        out.log_probs, policy.log_probabilities()[out.states, out.actions]
    )
    assert out.alive.all() and out.truncated[-1].all() and not out.truncated[:-1].any()
    assert not out.terminated.any()
    assert out.n_steps == 5 and out.n_episodes == 500 and out.n_env_steps == 2500


def test_state_distributions_agree_with_exact(small):
    # indicator samples 1[s_t = s], [N, T, S], against Pr(s_t = s) from forward propagation
    mdp, policy = small
    out = rollouts(mdp, policy, n_episodes=20_000, horizon=5, seed=5)
    indicators = (out.states.T[:, :, None] == np.arange(4)).astype(float)
    verdict = agreement(indicators, exact.state_distributions(mdp, policy, 5), seed=5)
    assert verdict.agrees, str(verdict)


def test_final_states_follow_the_transitions(small):
    # s_T given (s_{T-1}, a_{T-1}) is distributed as P(. | s, a): the mean of 1[s_T = s'] over
    # episodes equals E[P(s' | s_{T-1}, a_{T-1})], so their difference has mean 0
    mdp, policy = small
    out = rollouts(mdp, policy, n_episodes=20_000, horizon=5, seed=6)
    indicators = (out.final_states[:, None] == np.arange(4)).astype(float)
    verdict = agreement(indicators - mdp.P[out.states[-1], out.actions[-1]], 0.0)
    assert verdict.agrees, str(verdict)


def test_sparse_mdp_state_distributions_agree_with_exact():
    mdp = TabularMDP.random(40, 3, seed=21, n_successors=4, gamma=0.9)
    policy = SoftmaxPolicy(np.random.default_rng(22).normal(size=(40, 3)))
    out = rollouts(mdp, policy, n_episodes=20_000, horizon=3, seed=23)
    indicators = (out.states[2][:, None] == np.arange(40)).astype(float)
    verdict = agreement(indicators, exact.state_distributions(mdp, policy, 3)[2])
    assert verdict.agrees, str(verdict)


def test_array_policy_with_zeros_never_samples_them(small):
    mdp, _ = small
    pi = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    out = rollouts(mdp, pi, n_episodes=2000, horizon=5, seed=4)
    assert (pi[out.states, out.actions] > 0).all()
    assert np.isfinite(out.log_probs).all()


def test_termination_masks_and_padding(frozenlake):
    terminal = frozenlake.n_states - 1
    policy = SoftmaxPolicy.uniform(frozenlake.n_states, 4)
    out = rollouts(
        frozenlake, policy, n_episodes=3000, horizon=30, seed=8, terminal_states=[terminal]
    )
    alive, ended = out.alive, out.terminated | out.truncated
    # alive is a prefix of each episode; each episode ends exactly once, on its last alive step
    assert (alive[1:] <= alive[:-1]).all()
    assert (ended.sum(axis=0) == 1).all()
    last = out.lengths - 1
    assert ended[last, np.arange(3000)].all()
    assert not (out.terminated & out.truncated).any()
    assert (out.truncated[:-1] == 0).all()
    # terminated iff the final state is the terminal one
    np.testing.assert_array_equal(out.terminated.any(axis=0), out.final_states == terminal)
    assert (out.states[alive] != terminal).all()
    # padding: final state, action 0, reward 0, log-prob 0
    pad = ~alive
    assert (out.states[pad] == np.broadcast_to(out.final_states, alive.shape)[pad]).all()
    assert (out.actions[pad] == 0).all() and (out.rewards[pad] == 0).all()
    assert (out.log_probs[pad] == 0).all()
    assert out.n_env_steps == int(out.lengths.sum())
    # next_states: s_{t+1} within the episode, the final state on its last step
    nxt = out.next_states()
    np.testing.assert_array_equal(nxt[:-1][alive[1:]], out.states[1:][alive[1:]])
    np.testing.assert_array_equal(nxt[last, np.arange(3000)], out.final_states)


def test_terminal_mask_and_indices_agree(frozenlake):
    policy = SoftmaxPolicy.uniform(17, 4)
    mask = np.zeros(17, dtype=bool)
    mask[16] = True
    a = rollouts(frozenlake, policy, n_episodes=100, horizon=20, seed=1, terminal_states=mask)
    b = rollouts(frozenlake, policy, n_episodes=100, horizon=20, seed=1, terminal_states=[16])
    np.testing.assert_array_equal(a.alive, b.alive)


def test_frozenlake_discounted_return_agrees_with_exact(frozenlake):
    # with the absorbing terminal state, stopping at termination leaves every return unchanged
    H, gamma = 30, frozenlake.gamma
    policy = SoftmaxPolicy.uniform(17, 4)
    out = rollouts(frozenlake, policy, n_episodes=20_000, horizon=H, seed=3, terminal_states=[16])
    returns = (gamma ** np.arange(H)[:, None] * out.rewards).sum(axis=0)
    finite = TabularMDP(frozenlake.P, frozenlake.r, frozenlake.rho0, gamma, horizon=H)
    verdict = agreement(returns[:, None], [exact.objective(finite, policy)])
    assert verdict.agrees, str(verdict)


def test_sample_actions_distribution():
    pi = np.array([[0.1, 0.9], [0.6, 0.4]])
    states = np.repeat(np.arange(2)[None, :], 20_000, axis=0)
    actions = sample_actions(pi, states, seed=0)
    assert actions.shape == states.shape
    assert agreement((actions == 1).astype(float), pi[:, 1]).agrees


# ----------------------------------------------------------------------------- validation
BAD_ROLLOUT_ARGUMENTS = [
    pytest.param(dict(mdp="P"), TypeError, "mdp must be a TabularMDP", id="mdp-not-mdp"),
    pytest.param(dict(n_episodes=0), ValueError, "n_episodes must be >= 1", id="no-episodes"),
    pytest.param(
        dict(n_episodes=2.5), TypeError, "n_episodes must be an integer", id="float-episodes"
    ),
    pytest.param(dict(horizon=0), ValueError, "horizon must be >= 1", id="no-horizon"),
    pytest.param(dict(seed=-1), ValueError, "seed must be >= 0", id="negative-seed"),
    pytest.param(dict(seed="a"), TypeError, "seed must be an integer", id="string-seed"),
    pytest.param(
        dict(chunk_size=100), ValueError, "multiple of block_size", id="chunk-not-multiple"
    ),
    pytest.param(dict(block_size=0), ValueError, "block_size must be >= 1", id="no-block"),
    pytest.param(
        dict(policy=np.ones((4, 2)) / 2), ValueError, "policy must have shape", id="policy-shape"
    ),
    pytest.param(
        dict(policy=np.ones((4, 3))), ValueError, "policy must sum to 1", id="policy-not-stochastic"
    ),
    pytest.param(
        dict(terminal_states=[7]),
        ValueError,
        "terminal_states must be indices",
        id="terminal-range",
    ),
    pytest.param(
        dict(terminal_states=np.ones(3, bool)), ValueError, "mask must have shape", id="mask-shape"
    ),
    pytest.param(
        dict(terminal_states=[0.5]),
        TypeError,
        "terminal_states must be a bool",
        id="terminal-float",
    ),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD_ROLLOUT_ARGUMENTS)
def test_rollouts_rejects_bad_arguments(small, change, error, message):
    mdp, policy = small
    arguments = dict(mdp=mdp, policy=policy, n_episodes=4, horizon=3, seed=0) | change
    with pytest.raises(error, match=message):
        rollouts(
            arguments.pop("mdp"),
            arguments.pop("policy"),
            chunk_size=arguments.pop("chunk_size", DEFAULT_BLOCK_SIZE),
            **arguments,
        )


BAD_ALIAS_ARGUMENTS = [
    pytest.param([[0.5, 0.6]], "must sum to 1", id="not-normalised"),
    pytest.param([[-0.5, 1.5]], "must be non-negative", id="negative"),
    pytest.param(np.ones((2, 2, 2)) / 2, "shape", id="three-dimensional"),
]


@pytest.mark.parametrize(("probabilities", "message"), BAD_ALIAS_ARGUMENTS)
def test_alias_table_rejects_bad_probabilities(probabilities, message):
    with pytest.raises(ValueError, match=message):
        alias_table(probabilities)


def test_sample_actions_rejects_bad_states():
    with pytest.raises(ValueError, match="states must be in"):
        sample_actions([[1.0]], [1], seed=0)
    with pytest.raises(TypeError, match="states must be integers"):
        sample_actions([[1.0]], [0.0], seed=0)


# ----------------------------------------------------------------------------- the engine
def reference_episodes(
    mdp, pi, *, n_episodes, seed, block_size, horizon=None, gamma=None, terminal=()
):
    """The seeding scheme of the module docstring, block by block, with :func:`alias_sample`.

    Returns ``(states, actions, alive)`` ``[T, N]`` and ``final_states`` ``[N]`` (``T``: the
    horizon, or the longest geometric length when ``gamma`` is given).
    """
    root = np.random.SeedSequence(seed)
    policy, transitions = alias_table(pi), transition_alias_table(mdp)
    initial, is_terminal = alias_table(mdp.rho0), np.isin(np.arange(mdp.n_states), terminal)
    n_blocks = -(-n_episodes // block_size)
    generators = [
        np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=(b,)))
        for b in range(n_blocks)
    ]
    if gamma is None:
        limits = np.full((n_blocks, block_size), horizon)
    else:  # H = 1 + floor(log(1 - u) / log(gamma)), P(H > t) = gamma^t
        limits = np.stack(
            [1 + np.floor(np.log1p(-g.random(block_size)) / np.log(gamma)) for g in generators]
        ).astype(int)
        horizon = int(limits.reshape(-1)[:n_episodes].max())
    width = n_blocks * block_size
    states, actions = np.zeros((horizon, width), int), np.zeros((horizon, width), int)
    alive, final = np.zeros((horizon, width), bool), np.zeros(width, int)
    for b, generator in enumerate(generators):
        columns = b * block_size + np.arange(block_size)
        s = alias_sample(initial, None, generator.random(block_size))
        for t in range(horizon):
            u = generator.random((columns.size, 2))
            a = alias_sample(policy, s, u[:, 0])
            following = alias_sample(transitions, s * mdp.n_actions + a, u[:, 1])
            states[t, columns], actions[t, columns], alive[t, columns] = s, a, True
            ended = is_terminal[following] | (limits[b, columns - b * block_size] == t + 1)
            final[columns[ended]] = following[ended]
            columns, s = columns[~ended], following[~ended]
            if not columns.size:
                break
        final[columns] = s
    return (
        states[:, :n_episodes],
        actions[:, :n_episodes],
        alive[:, :n_episodes],
        final[:n_episodes],
    )


ENGINE_CASES = [
    pytest.param("small", None, id="dense"),
    pytest.param("frozenlake", [16], id="frozenlake-terminal"),
    pytest.param("sparse", [0, 5], id="sparse-terminals"),
]


@pytest.fixture(scope="module")
def engine_mdps(small, frozenlake):
    sparse = TabularMDP.random(12, 3, seed=13, n_successors=4, gamma=0.9)
    return {"small": small[0], "frozenlake": frozenlake, "sparse": sparse}


@pytest.mark.parametrize(("name", "terminal"), ENGINE_CASES)
@pytest.mark.parametrize("discounted", [False, True], ids=["horizon", "geometric"])
def test_rollouts_equal_the_reference_loop(engine_mdps, name, terminal, discounted):
    # the vectorised engine (fused alias tables, packed alive episodes) draws exactly what the
    # documented scheme does, uniform for uniform: same episodes, bit for bit
    mdp = engine_mdps[name]
    pi = SoftmaxPolicy(np.random.default_rng(14).normal(size=(mdp.n_states, mdp.n_actions)))
    kwargs = dict(n_episodes=300, seed=15, block_size=64)
    reference = dict(terminal=terminal or (), **kwargs)
    if discounted:
        out = discounted_rollouts(
            mdp, pi, gamma=0.7, chunk_size=128, terminal_states=terminal, **kwargs
        )
        expected = reference_episodes(mdp, pi.probabilities(), gamma=0.7, **reference)
    else:
        out = rollouts(mdp, pi, horizon=12, chunk_size=128, terminal_states=terminal, **kwargs)
        expected = reference_episodes(mdp, pi.probabilities(), horizon=12, **reference)
    states, actions, alive, final = expected
    np.testing.assert_array_equal(out.alive, alive)
    np.testing.assert_array_equal(out.states[alive], states[alive])
    np.testing.assert_array_equal(out.actions[alive], actions[alive])
    np.testing.assert_array_equal(out.final_states, final)


def test_fused_draw_matches_alias_sample_at_slot_edges():
    # the loop's fused test K u < c_k (c_k = k + t_k rounded up) against the textbook
    # K u - k < t_k, on the uniforms on and next to every cut point, where rounding would bite
    from rlmath.sampling import _fuse, _fused_draw

    table = alias_table(random_distributions(17, 40, 7, 0.3))
    K = table.n_slots
    edges = ((np.arange(K) + table.thresholds) / K).ravel()
    u = np.concatenate([np.nextafter(edges, -1.0), edges, np.nextafter(edges, 2.0)])
    u = np.clip(u, 0.0, np.nextafter(1.0, 0.0))
    rows = np.tile(np.repeat(np.arange(40), K), 3)
    flat = rows * K + (u * K).astype(np.intp)
    out = np.empty(u.size, dtype=np.int32)
    _fused_draw(_fuse(table, np.int32), flat, u * K, out, np.empty(u.size), np.empty(u.size, bool))
    np.testing.assert_array_equal(out, alias_sample(table, rows, u))


def test_states_and_actions_are_int32(small):
    mdp, policy = small
    for out in (
        rollouts(mdp, policy, n_episodes=10, horizon=3, seed=0),
        discounted_rollouts(mdp, policy, n_episodes=10, seed=0),
    ):
        assert out.states.dtype == out.actions.dtype == out.final_states.dtype == np.int32
        assert out.rewards.dtype == out.log_probs.dtype == np.float64


# ----------------------------------------------------------------------------- discounted
@pytest.fixture(scope="module")
def tiny():
    """A 3-state, 2-action infinite-horizon MDP with gamma = 0.8 and a random softmax policy."""
    mdp = TabularMDP.random(3, 2, seed=31, gamma=0.8)
    policy = SoftmaxPolicy(np.random.default_rng(32).normal(size=(3, 2)))
    return mdp, policy


@pytest.fixture(scope="module")
def tiny_episodes(tiny):
    mdp, policy = tiny
    return discounted_rollouts(mdp, policy, n_episodes=40_000, seed=41)


def z_score(samples, exact_mean, exact_sd=None):
    """(sample mean - exact) / standard error, with the exact sd when it is known."""
    sd = samples.std(ddof=1) if exact_sd is None else exact_sd
    return (samples.mean() - exact_mean) / (sd / np.sqrt(samples.size))


def test_discounted_return_agrees_with_exact_objective(tiny, tiny_episodes):
    # E[sum_{t<H} r_t] = J exactly; |z| <= 5 fails for a correct sampler with probability
    # about 5.7e-7 (normal approximation; the seed is fixed, so the test is deterministic)
    mdp, policy = tiny
    returns = tiny_episodes.rewards.sum(axis=0)
    assert abs(z_score(returns, exact.objective(mdp, policy))) <= 5.0


def test_discounted_lengths_are_geometric(tiny_episodes):
    # E[H] = 1 / (1 - gamma), sd = sqrt(gamma) / (1 - gamma); P(H > t) = gamma^t (agreement:
    # false alarm 1e-6 over the 8 tail probabilities)
    gamma, lengths = 0.8, tiny_episodes.lengths
    assert abs(z_score(lengths, 1 / (1 - gamma), np.sqrt(gamma) / (1 - gamma))) <= 5.0
    times = np.arange(1, 9)
    verdict = agreement((lengths[:, None] > times).astype(float), gamma**times)
    assert verdict.agrees, str(verdict)
    assert tiny_episodes.n_steps == lengths.max()
    ends = np.arange(tiny_episodes.n_episodes)
    assert tiny_episodes.truncated[lengths - 1, ends].all()
    assert tiny_episodes.truncated.sum() == tiny_episodes.n_episodes
    assert not tiny_episodes.terminated.any()


def test_discounted_policy_gradient_agrees_with_exact(tiny, tiny_episodes):
    # E[sum_{t<H} grad log pi(a_t|s_t) sum_{t'=t}^{H-1} r_t'] = grad J: the undiscounted
    # reward-to-go estimator on geometric episodes (agreement: false alarm 1e-6, Bonferroni)
    mdp, policy = tiny
    terms = estimators.reinforce_reward_to_go(tiny_episodes, policy, gamma=1.0)
    verdict = agreement(terms, exact.policy_gradient(mdp, policy))
    assert verdict.agrees, str(verdict)


def test_discounted_stops_at_terminal_states(frozenlake):
    policy = SoftmaxPolicy.uniform(17, 4)
    out = discounted_rollouts(
        frozenlake, policy, n_episodes=3000, seed=8, gamma=0.9, terminal_states=[16]
    )
    last, ends = out.lengths - 1, np.arange(3000)
    ended = out.terminated | out.truncated
    assert (ended.sum(axis=0) == 1).all() and ended[last, ends].all()
    np.testing.assert_array_equal(out.terminated[last, ends], out.final_states == 16)
    assert out.terminated.any() and out.truncated.any()
    assert (out.states[out.alive] != 16).all()
    pad = ~out.alive
    assert (out.states[pad] == np.broadcast_to(out.final_states, pad.shape)[pad]).all()
    assert (out.rewards[pad] == 0).all() and (out.actions[pad] == 0).all()


def test_discounted_output_does_not_depend_on_chunk_size(frozenlake):
    kwargs = dict(n_episodes=700, seed=9, gamma=0.95, block_size=32, terminal_states=[16])
    policy = SoftmaxPolicy.uniform(17, 4)
    a = discounted_rollouts(frozenlake, policy, chunk_size=32, **kwargs)
    b = discounted_rollouts(frozenlake, policy, chunk_size=32 * 7, **kwargs)
    c = discounted_rollouts(frozenlake, policy, chunk_size=32 * 22, **kwargs)
    assert_same_rollouts(a, b)
    assert_same_rollouts(a, c)


def test_discounted_first_episodes_do_not_depend_on_n_episodes(small):
    mdp, policy = small
    kwargs = dict(seed=1, block_size=128, chunk_size=256)
    big = discounted_rollouts(mdp, policy, n_episodes=300, **kwargs)
    cut = discounted_rollouts(mdp, policy, n_episodes=200, **kwargs)
    # the time axis is the longest of the episodes asked for; beyond it, only padding
    T = cut.n_steps
    assert not big.alive[T:, :200].any()
    for field in ("states", "actions", "rewards", "log_probs", "alive", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(big, field)[:T, :200], getattr(cut, field))
    np.testing.assert_array_equal(big.final_states[:200], cut.final_states)


def test_discounted_gamma_zero_is_one_step(small):
    mdp, policy = small
    out = discounted_rollouts(mdp, policy, n_episodes=50, seed=2, gamma=0.0)
    assert out.n_steps == 1 and out.truncated.all() and out.alive.all()


def test_discounted_gamma_defaults_to_the_mdp(tiny):
    mdp, policy = tiny
    a = discounted_rollouts(mdp, policy, n_episodes=200, seed=3)
    b = discounted_rollouts(mdp, policy, n_episodes=200, seed=3, gamma=0.8)
    assert_same_rollouts(a, b)


def test_discounted_raises_rather_than_truncating(small):
    mdp, policy = small  # gamma = 0.9: some of 1000 lengths exceed 5 (P(H > 5) = 0.59 each)
    with pytest.raises(ValueError, match="max_steps = 5 is shorter than a sampled episode"):
        discounted_rollouts(mdp, policy, n_episodes=1000, seed=4, gamma=0.9, max_steps=5)
    out = discounted_rollouts(mdp, policy, n_episodes=1000, seed=4, gamma=0.9, max_steps=500)
    assert out.n_steps <= 500


BAD_DISCOUNTED_ARGUMENTS = [
    pytest.param(dict(gamma=1.0), ValueError, r"gamma must be in \[0, 1\)", id="gamma-one"),
    pytest.param(dict(gamma=-0.1), ValueError, r"gamma must be in \[0, 1\)", id="gamma-negative"),
    pytest.param(dict(gamma=float("nan")), ValueError, "gamma must be in", id="gamma-nan"),
    pytest.param(dict(gamma="0.5"), TypeError, "gamma must be a real number", id="gamma-string"),
    pytest.param(dict(mdp="P"), TypeError, "mdp must be a TabularMDP", id="mdp-not-mdp"),
    pytest.param(dict(n_episodes=0), ValueError, "n_episodes must be >= 1", id="no-episodes"),
    pytest.param(dict(max_steps=0), ValueError, "max_steps must be >= 1", id="no-steps"),
    pytest.param(dict(max_steps=2.0), TypeError, "max_steps must be an integer", id="float-steps"),
    pytest.param(dict(seed=-1), ValueError, "seed must be >= 0", id="negative-seed"),
    pytest.param(
        dict(chunk_size=100), ValueError, "multiple of block_size", id="chunk-not-multiple"
    ),
    pytest.param(
        dict(policy=np.ones((4, 2)) / 2), ValueError, "policy must have shape", id="policy-shape"
    ),
    pytest.param(
        dict(policy=np.ones((4, 3))), ValueError, "policy must sum to 1", id="policy-not-stochastic"
    ),
    pytest.param(
        dict(terminal_states=[7]), ValueError, "terminal_states must be indices", id="terminal"
    ),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD_DISCOUNTED_ARGUMENTS)
def test_discounted_rollouts_rejects_bad_arguments(small, change, error, message):
    mdp, policy = small
    arguments = dict(mdp=mdp, policy=policy, n_episodes=4, seed=0) | change
    with pytest.raises(error, match=message):
        discounted_rollouts(
            arguments.pop("mdp"),
            arguments.pop("policy"),
            chunk_size=arguments.pop("chunk_size", DEFAULT_BLOCK_SIZE),
            **arguments,
        )


def test_discounted_gamma_from_a_finite_horizon_mdp_is_rejected(small):
    mdp, policy = small  # horizon 5: gamma may be 1 there, not for geometric stopping
    undiscounted = TabularMDP(mdp.P, mdp.r, mdp.rho0, 1.0, horizon=5)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\).*mdp\.gamma"):
        discounted_rollouts(undiscounted, policy, n_episodes=4, seed=0)


def test_transition_tables_are_reused_per_mdp_and_released():
    from rlmath import sampling

    mdp, policy = TabularMDP.random(5, 2, seed=3), SoftmaxPolicy.uniform(5, 2)
    first = rollouts(mdp, policy, n_episodes=20, horizon=4, seed=0)
    key = id(mdp)
    table = sampling._TRANSITION_TABLES[key][1]
    again = rollouts(mdp, policy, n_episodes=20, horizon=4, seed=0)
    assert sampling._TRANSITION_TABLES[key][1] is table
    assert_same_rollouts(first, again)
    others = [TabularMDP.random(5, 2, seed=s) for s in range(5)]
    for other in others:
        discounted_rollouts(other, policy, n_episodes=2, seed=0)
    assert len(sampling._TRANSITION_TABLES) <= sampling._CACHED_MDPS
    assert key not in sampling._TRANSITION_TABLES  # evicted: the least recently sampled
    del others, other
    gc.collect()
    assert not sampling._TRANSITION_TABLES  # released with their MDPs
    del mdp
