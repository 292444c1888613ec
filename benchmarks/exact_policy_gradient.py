"""Speed of ``rlmath.exact.policy_gradient`` against baselines run in the same process.

Run: ``python benchmarks/exact_policy_gradient.py`` (add ``--quick`` for smaller sizes).

1. Dense random MDP, S = 2000, A = 8 (P is 2000 x 8 x 2000 float64 = 256 MB): the time of
   ``policy_gradient`` divided by the time of one ``numpy.linalg.solve`` of a 2000 x 2000
   system. The floor is one LU factorisation (shared by the value and the occupancy solve)
   plus two passes over P (for P_pi and for P V). Timings are the minimum over repeats,
   baseline and candidate interleaved so that machine load affects both alike.
2. Sparse random MDP, S = 100000, A = 4, 3 successors per pair: build + differentiate time,
   the solver used, and the residuals that make the result "exact"
   (``rlmath.tolerances.KRYLOV_RESIDUAL_RTOL``).
3. Optional: torch autograd through the same dense solve, if torch is importable.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlmath import SoftmaxPolicy, TabularMDP, exact
from rlmath.tolerances import KRYLOV_RESIDUAL_RTOL


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def dense(n_states: int, n_actions: int, repeats: int) -> None:
    mdp = TabularMDP.random(n_states, n_actions, seed=0, gamma=0.99)
    policy = SoftmaxPolicy(np.random.default_rng(1).normal(size=(n_states, n_actions)))
    pi = policy.probabilities()
    M = np.eye(n_states) - mdp.gamma * np.einsum("sa,sat->st", pi, mdp.P)
    b = (pi * mdp.r).sum(axis=1)
    solve_times, gradient_times = [], []
    for _ in range(repeats):  # interleaved
        solve_times.append(best_of(lambda: np.linalg.solve(M, b), 1))
        gradient_times.append(best_of(lambda: exact.policy_gradient(mdp, policy), 1))
    t_solve, t_grad = min(solve_times), min(gradient_times)
    print(f"dense S={n_states} A={n_actions} (P: {mdp.P.nbytes / 2**20:.0f} MiB)")
    print(f"  numpy.linalg.solve        {t_solve * 1e3:8.1f} ms   (baseline)")
    print(
        f"  exact.policy_gradient     {t_grad * 1e3:8.1f} ms   ratio {t_grad / t_solve:.2f}x (target <= 1.6x)"
    )
    try:
        import torch
    except ImportError:
        print("  torch not installed: autograd comparison skipped")
        return
    torch.set_num_threads(2)
    P_t = torch.from_numpy(np.array(mdp.P))
    r_t = torch.from_numpy(np.array(mdp.r))
    rho_t = torch.from_numpy(np.array(mdp.rho0))
    theta0 = torch.from_numpy(np.array(policy.theta))

    def torch_gradient():
        theta = theta0.clone().requires_grad_(True)
        p = torch.softmax(theta, dim=1)
        P_pi = torch.einsum("sa,sat->st", p, P_t)
        V = torch.linalg.solve(
            torch.eye(n_states, dtype=torch.float64) - mdp.gamma * P_pi, (p * r_t).sum(1)
        )
        (rho_t @ V).backward()
        return theta.grad

    g_torch = torch_gradient().numpy()
    err = np.abs(g_torch - exact.policy_gradient(mdp, policy)).max() / np.abs(g_torch).max()
    torch_times = []
    for _ in range(repeats):
        torch_times.append(best_of(torch_gradient, 1))
    t_torch = min(torch_times)
    print(
        f"  torch autograd, same solve {t_torch * 1e3:7.1f} ms   ratio {t_torch / t_solve:.2f}x "
        f"(rlmath / torch = {t_grad / t_torch:.2f}; max rel. difference {err:.1e})"
    )


def sparse(n_states: int, n_actions: int, n_successors: int) -> None:
    start = time.perf_counter()
    mdp = TabularMDP.random(n_states, n_actions, seed=0, n_successors=n_successors, gamma=0.99)
    policy = SoftmaxPolicy(np.random.default_rng(1).normal(size=(n_states, n_actions)))
    built = time.perf_counter()
    grad = exact.policy_gradient(mdp, policy)
    done = time.perf_counter()
    # the residual check that makes the result exact (also enforced inside the solver)
    V = exact.value(mdp, policy)
    pi = policy.probabilities()
    P_pi = exact._policy_transitions(mdp, pi)
    b = (pi * mdp.r).sum(axis=1)
    value_residual = np.abs(V - mdp.gamma * (P_pi @ V) - b).max() / np.abs(b).max()
    d = exact.occupancy(mdp, policy) / (1 - mdp.gamma)
    occupancy_residual = np.abs(d - mdp.gamma * (P_pi.T @ d) - mdp.rho0).sum() / mdp.rho0.sum()
    system = exact._DiscountedSystem(mdp, pi)
    print(
        f"sparse S={n_states} A={n_actions} successors<={n_successors} (nnz {mdp.P.nnz}), solver: {system.method}"
    )
    print(
        f"  build {built - start:.2f} s + differentiate {done - built:.2f} s = {done - start:.2f} s (target < 5 s)"
    )
    print(
        f"  value residual |MV-b|_inf/|b|_inf = {value_residual:.1e}, occupancy residual "
        f"|M^T d-rho0|_1 = {occupancy_residual:.1e} (bound {KRYLOV_RESIDUAL_RTOL:g}); |grad|_inf = {np.abs(grad).max():.3g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.quick:
        dense(300, 4, 3)
        sparse(5000, 4, 3)
    else:
        dense(2000, 8, args.repeats)
        sparse(100_000, 4, 3)


if __name__ == "__main__":
    main()
