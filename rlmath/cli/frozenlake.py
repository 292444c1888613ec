"""``rlmath frozenlake``: J and the exact policy gradient of FrozenLake under a uniform policy."""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--map", choices=["4x4", "8x8"], default="4x4", help="map size")
    parser.add_argument("--gamma", type=float, default=0.99, help="discount in [0, 1)")
    parser.add_argument(
        "--not-slippery", action="store_true", help="deterministic moves (is_slippery=False)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        import gymnasium
    except ImportError:
        print("rlmath frozenlake needs gymnasium: pip install 'rlmath[gymnasium]'")
        return 2
    from rlmath import SoftmaxPolicy, TabularMDP, exact

    env = gymnasium.make("FrozenLake-v1", map_name=args.map, is_slippery=not args.not_slippery)
    mdp = TabularMDP.from_gymnasium(env, gamma=args.gamma)
    policy = SoftmaxPolicy.uniform(mdp.n_states, mdp.n_actions)
    J = exact.objective(mdp, policy)
    grad = exact.policy_gradient(mdp, policy)
    print(f"FrozenLake-v1 {args.map} (slippery={not args.not_slippery}), gamma={args.gamma}")
    print(f"{mdp.n_states - 1} grid states + 1 absorbing terminal state, {mdp.n_actions} actions")
    print(f"J(uniform) = {J:.12g}")
    print("grad_theta J  [state, action: left down right up]:")
    with np.printoptions(precision=6, suppress=True, linewidth=100):
        for s, row in enumerate(grad[:-1]):
            print(f"  s={s:2d}  {row}")
    return 0
