"""Throughput of ``rlmath.sampling.rollouts`` against a gymnasium Python loop and the raw RNG.

Run: ``python benchmarks/sampling.py`` (needs gymnasium). Prints one table; nothing is
asserted (the acceptance targets are printed next to the numbers).

What is measured:

- **rollouts**: ``rollouts(mdp, uniform policy, n_episodes=100_000, horizon=100, seed=...)``.
  Throughput counts only real environment steps (``Rollouts.n_env_steps``, the alive steps),
  so episodes that end early on FrozenLake are not padded into the count. Reported: the
  median of ``--repeats`` timed runs after one untimed warm-up run, and the first (cold) run
  separately. The cold run also pays the operating system for the first touch of the
  ~350 MB of output arrays (page faults), which later runs in the same process do not.
- **gymnasium loop**: ``gymnasium.make("FrozenLake-v1", map_name="8x8")`` stepped in a Python
  loop for about 2 s with uniformly random actions (drawn in advance, so the loop measures
  ``env.step`` and ``env.reset``), resetting when an episode terminates or is truncated.
- **RNG limit**: the time ``Generator.random`` takes to draw as many float64 uniforms as the
  sampler consumed (2 per alive step + 1 per episode for the initial state, counted by whole
  blocks), into a reused buffer: the speed the sampler would have if sampling were free.
  Ratio = sampler steps/s divided by RNG-limit steps/s.

Dense random MDP: ``TabularMDP.random(500, 6, seed=0)``, no terminal states (every step is
alive).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from rlmath import SoftmaxPolicy, TabularMDP
from rlmath.sampling import DEFAULT_BLOCK_SIZE, Rollouts, rollouts

TARGET_FROZENLAKE_RATIO = 50.0
TARGET_DENSE_STEPS = 5e6


def gymnasium_loop_steps_per_second(seconds: float, seed: int = 0) -> float:
    """Steps/s of a Python loop over ``env.step`` on FrozenLake 8x8 with random actions."""
    import gymnasium

    env = gymnasium.make("FrozenLake-v1", map_name="8x8")
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 4, size=2_000_000).tolist()
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(1000):
            _, _, terminated, truncated, _ = env.step(actions[steps % len(actions)])
            steps += 1
            if terminated or truncated:
                env.reset()
    return steps / (time.perf_counter() - start)


def rng_seconds(n_uniforms: int, buffer_size: int = 1 << 16) -> float:
    """Seconds for ``Generator.random`` to draw ``n_uniforms`` float64 into a reused buffer."""
    generator = np.random.default_rng(0)
    buffer = np.empty(buffer_size)
    generator.random(out=buffer)  # warm up
    start = time.perf_counter()
    for _ in range(n_uniforms // buffer_size):
        generator.random(out=buffer)
    generator.random(out=buffer[: n_uniforms % buffer_size])
    return time.perf_counter() - start


def uniforms_consumed(out: Rollouts) -> int:
    """Uniforms the sampler drew: 2 per alive step, 1 per episode of every (whole) block."""
    n_blocks = -(-out.n_episodes // out.block_size)
    return 2 * out.n_env_steps + n_blocks * out.block_size


def time_rollouts(run: Callable[[int], Rollouts], repeats: int) -> tuple[float, float, Rollouts]:
    """(cold seconds, median warm seconds, last output) of ``run(seed)``."""
    start = time.perf_counter()
    out = run(0)
    cold = time.perf_counter() - start
    warm = []
    for seed in range(1, repeats + 1):
        del out
        start = time.perf_counter()
        out = run(seed)
        warm.append(time.perf_counter() - start)
    return cold, statistics.median(warm), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gym-seconds", type=float, default=2.0)
    args = parser.parse_args()

    import gymnasium

    frozenlake = TabularMDP.from_gymnasium(
        gymnasium.make("FrozenLake-v1", map_name="8x8"), gamma=0.99
    )
    dense = TabularMDP.random(500, 6, seed=0)
    cases = {
        "FrozenLake 8x8": (frozenlake, [frozenlake.n_states - 1]),
        "dense random S=500 A=6": (dense, None),
    }
    gym = gymnasium_loop_steps_per_second(args.gym_seconds)

    print(
        f"rollouts: N = {args.episodes} episodes, horizon {args.horizon}, "
        f"block {DEFAULT_BLOCK_SIZE}; steps = alive env steps; "
        f"warm = median of {args.repeats} after a warm-up run"
    )
    header = (
        f"{'case':<24} {'alive steps':>12} {'cold M/s':>9} {'warm M/s':>9} "
        f"{'x gym loop':>10} {'RNG-limit M/s':>13} {'x RNG limit':>11}"
    )
    print(header)
    print("-" * len(header))
    print(f"{'gymnasium Python loop':<24} {'':>12} {'':>9} {gym / 1e6:9.3f} {1.0:10.1f}")
    for label, (mdp, terminal) in cases.items():
        policy = SoftmaxPolicy.uniform(mdp.n_states, mdp.n_actions)

        def run(
            seed: int,
            mdp: TabularMDP = mdp,
            policy: SoftmaxPolicy = policy,
            terminal: list[int] | None = terminal,
        ) -> Rollouts:
            return rollouts(
                mdp,
                policy,
                n_episodes=args.episodes,
                horizon=args.horizon,
                seed=seed,
                terminal_states=terminal,
            )

        cold, warm, out = time_rollouts(run, args.repeats)
        steps = out.n_env_steps
        rng_limit = steps / rng_seconds(uniforms_consumed(out))
        print(
            f"{label:<24} {steps:12d} {steps / cold / 1e6:9.3f} {steps / warm / 1e6:9.3f} "
            f"{steps / warm / gym:10.1f} {rng_limit / 1e6:13.2f} {steps / warm / rng_limit:11.3f}"
        )
    print(
        f"targets: FrozenLake >= {TARGET_FROZENLAKE_RATIO:g}x the gymnasium loop; "
        f"dense S=500 >= {TARGET_DENSE_STEPS / 1e6:g} M steps/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
