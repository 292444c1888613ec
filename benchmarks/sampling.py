"""Throughput of ``rlmath.sampling`` against a gymnasium Python loop and the raw RNG.

Run: ``python benchmarks/sampling.py`` (needs gymnasium). Prints one table; nothing is
asserted (the acceptance targets are printed next to the numbers, with whether they are met).

Every figure is a rate or ratio of **CPU time** of this process (``time.process_time``). The
three things compared are measured back to back in each of ``--repeats`` rounds, and each
speed reported is the best of its rounds: on a shared machine other processes only ever slow
a measurement down (the CPU time of this process grows too when they compete for the caches,
the memory bus or a hyperthreaded core), so the best round is the closest to the speed
itself, and the ratios are of those best speeds.

What is measured:

- **rollouts**: ``rollouts(mdp, uniform policy, n_episodes=100_000, horizon=100, seed=...)``.
  Throughput counts only real environment steps (``Rollouts.n_env_steps``, the alive steps),
  so episodes that end early on FrozenLake are not padded into the count. Reported: the
  best of the rounds, each run right after an untimed run of the same case (the steady state
  of a loop that samples a batch, uses it and drops it: the fresh output arrays get the
  memory pages, huge pages included, that the previous batch freed), and the first (cold) run
  of the process separately. Every run, cold or warm, pays the operating system for the
  first touch of its ~270 MB of fresh output arrays (page faults) and builds the policy's
  alias table; the transitions' alias table is built by the first run on an MDP (the cold
  run) and reused by later runs on it (``rollouts`` keeps it for the last few MDPs sampled).
- **discounted_rollouts**: ``discounted_rollouts(FrozenLake 8x8, uniform policy,
  n_episodes=100_000, gamma=0.95, terminal_states=[64])``: each episode stops at its
  geometric length $H$ (mean 20) or at the goal or a hole, whichever comes first (about 14
  steps on average); the time axis is the longest $H$ (about 225 steps), so most of its
  ~600 MB of output is padding, which shows in its steps/s.
- **gymnasium loop**: ``gymnasium.make("FrozenLake-v1", map_name="8x8")`` stepped in a Python
  loop for ``--gym-seconds`` of CPU time in all (split over the rounds) with uniformly random
  actions (drawn in advance, so the loop measures ``env.step`` and ``env.reset``), resetting
  when an episode terminates or is truncated.
- **RNG limit**: the time ``Generator.random`` takes to draw as many float64 uniforms as the
  sampler consumed (2 per alive step, plus 1 per episode of every whole block for the initial
  state and, for ``discounted_rollouts``, 1 more for its length), into a reused buffer, timed
  over repeated passes for as long as the sampler's run took: the speed the sampler would
  have if everything but the random numbers were free. Fraction = sampler steps/s divided by
  RNG-limit steps/s.

Dense random MDP: ``TabularMDP.random(500, 6, seed=0)``, no terminal states (every step is
alive).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rlmath import SoftmaxPolicy, TabularMDP
from rlmath.sampling import DEFAULT_BLOCK_SIZE, Rollouts, discounted_rollouts, rollouts

#: FrozenLake 8x8 ``rollouts`` must run at least this many times the gymnasium loop's steps/s.
TARGET_FROZENLAKE_RATIO = 100.0
#: Each ``rollouts`` case must reach at least this fraction of its RNG limit (the discounted
#: case is shown for its steps/s against the gymnasium loop, with no target).
TARGET_RNG_FRACTION = 0.10

DISCOUNT = 0.95


def gymnasium_loop_steps_per_second(seconds: float, seed: int = 0) -> float:
    """Steps per CPU second of a Python loop over ``env.step`` on FrozenLake 8x8, random actions."""
    import gymnasium

    env = gymnasium.make("FrozenLake-v1", map_name="8x8")
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 4, size=2_000_000).tolist()
    steps = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(1000):
            _, _, terminated, truncated, _ = env.step(actions[steps % len(actions)])
            steps += 1
            if terminated or truncated:
                env.reset()
    return steps / (time.process_time() - start)


def rng_seconds(n_uniforms: int, at_least: float = 0.0, buffer_size: int = 1 << 16) -> float:
    """CPU seconds for ``Generator.random`` to draw ``n_uniforms`` float64 into a reused buffer.

    The draws are repeated (whole passes) until ``at_least`` CPU seconds have gone by, and the
    time per pass is returned: measured over as long as the run it is compared with, the RNG
    is as exposed to other processes as that run was.
    """
    generator = np.random.default_rng(0)
    buffer = np.empty(buffer_size)
    generator.random(out=buffer)  # warm up
    passes = 0
    start = time.process_time()
    while True:
        for _ in range(n_uniforms // buffer_size):
            generator.random(out=buffer)
        generator.random(out=buffer[: n_uniforms % buffer_size])
        passes += 1
        elapsed = time.process_time() - start
        if elapsed >= at_least:
            return elapsed / passes


def uniforms_consumed(out: Rollouts, per_episode: int) -> int:
    """Uniforms drawn: 2 per alive step, ``per_episode`` per episode of every (whole) block."""
    n_blocks = -(-out.n_episodes // out.block_size)
    return 2 * out.n_env_steps + per_episode * n_blocks * out.block_size


def timed(run: Callable[[int], Rollouts], seed: int) -> tuple[float, Rollouts]:
    """(CPU seconds, output) of ``run(seed)``."""
    start = time.process_time()
    out = run(seed)
    return time.process_time() - start, out


@dataclass
class Case:
    """One sampler configuration and its measurements over the rounds."""

    label: str
    run: Callable[[int], Rollouts]
    per_episode: int  # uniforms per episode besides the 2 per step
    cold: float = 0.0  # steps/s of the first run
    steps: int = 0  # alive steps of the last run
    rates: list[float] = field(default_factory=list)  # steps/s, per round
    rng_rates: list[float] = field(default_factory=list)  # RNG-limit steps/s, per round

    def measure(self, seed: int) -> None:
        """A warm-up run, a timed run, then the time the RNG alone takes to draw what it drew."""
        self.run(seed + 1000)  # untimed; the timed run gets the memory it frees
        seconds, out = timed(self.run, seed)
        self.steps = out.n_env_steps
        rng = rng_seconds(uniforms_consumed(out, self.per_episode), at_least=seconds)
        del out
        self.rates.append(self.steps / seconds)
        self.rng_rates.append(self.steps / rng)

    @property
    def rate(self) -> float:
        """Best steps/s over the rounds."""
        return max(self.rates)

    @property
    def rng_fraction(self) -> float:
        """Best steps/s as a fraction of the best RNG-limit steps/s."""
        return self.rate / max(self.rng_rates)


def build_cases(episodes: int, horizon: int) -> list[Case]:
    """FrozenLake 8x8 and a dense random MDP under ``rollouts``; FrozenLake discounted."""
    import gymnasium

    frozenlake = TabularMDP.from_gymnasium(
        gymnasium.make("FrozenLake-v1", map_name="8x8"), gamma=0.99
    )
    dense = TabularMDP.random(500, 6, seed=0)
    terminal = [frozenlake.n_states - 1]

    def horizon_run(
        mdp: TabularMDP, terminal_states: list[int] | None
    ) -> Callable[[int], Rollouts]:
        policy = SoftmaxPolicy.uniform(mdp.n_states, mdp.n_actions)
        return lambda seed: rollouts(
            mdp,
            policy,
            n_episodes=episodes,
            horizon=horizon,
            seed=seed,
            terminal_states=terminal_states,
        )

    uniform = SoftmaxPolicy.uniform(frozenlake.n_states, frozenlake.n_actions)

    def discounted_run(seed: int) -> Rollouts:
        return discounted_rollouts(
            frozenlake,
            uniform,
            n_episodes=episodes,
            seed=seed,
            gamma=DISCOUNT,
            terminal_states=terminal,
        )

    return [
        Case("FrozenLake 8x8", horizon_run(frozenlake, terminal), per_episode=1),
        Case("dense random S=500 A=6", horizon_run(dense, None), per_episode=1),
        Case(f"FL 8x8 discounted g={DISCOUNT:g}", discounted_run, per_episode=2),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5, help="measurement rounds")
    parser.add_argument("--gym-seconds", type=float, default=2.5)
    args = parser.parse_args()

    cases = build_cases(args.episodes, args.horizon)
    for case in cases:  # the cold run, which is also the warm-up of the timed rounds
        seconds, out = timed(case.run, 0)
        case.cold = out.n_env_steps / seconds
        del out
    gym_rates = []
    for round_ in range(args.repeats):
        gym_rates.append(gymnasium_loop_steps_per_second(args.gym_seconds / args.repeats))
        for case in cases:
            case.measure(seed=round_ + 1)
    gym = max(gym_rates)

    print(
        f"N = {args.episodes} episodes, horizon {args.horizon} (discounted: geometric), "
        f"block {DEFAULT_BLOCK_SIZE}; steps = alive env steps; CPU time, "
        f"best of {args.repeats} rounds"
    )
    header = (
        f"{'case':<26} {'alive steps':>12} {'cold M/s':>9} {'best M/s':>9} "
        f"{'x gym loop':>10} {'RNG-limit M/s':>13} {'x RNG limit':>11}"
    )
    print(header)
    print("-" * len(header))
    print(f"{'gymnasium Python loop':<26} {'':>12} {'':>9} {gym / 1e6:9.3f} {1.0:10.1f}")
    for case in cases:
        print(
            f"{case.label:<26} {case.steps:12d} {case.cold / 1e6:9.3f} {case.rate / 1e6:9.3f} "
            f"{case.rate / gym:10.1f} {max(case.rng_rates) / 1e6:13.2f} {case.rng_fraction:11.3f}"
        )
    ratio = cases[0].rate / gym
    fractions = ", ".join(
        f"{case.label} {case.rng_fraction:.1%} "
        f"({'met' if case.rng_fraction >= TARGET_RNG_FRACTION else 'MISSED'})"
        for case in cases[:2]
    )
    print(
        f"targets: FrozenLake 8x8 >= {TARGET_FROZENLAKE_RATIO:g}x the gymnasium loop: "
        f"{ratio:.1f}x ({'met' if ratio >= TARGET_FROZENLAKE_RATIO else 'MISSED'}); "
        f">= {TARGET_RNG_FRACTION:.0%} of the RNG limit: {fractions}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
