r"""Real toy-text MDPs from gymnasium, checked against an independent computation.

The independent side never builds a ``TabularMDP``: it reads ``env.unwrapped.P`` (lists of
``(probability, next_state, reward, terminated)``) into an expected reward ``[S, A]`` and a
*continuation* kernel ``[S, A, S]`` holding only the non-terminating transitions, so
termination simply ends the return (the kernel is sub-stochastic). Values come from iterative
policy evaluation, $V \leftarrow \sum_a \pi(a|s) (r(s,a) + \gamma \sum_{s'} K(s'|s,a) V(s'))$,
and gradients from central differences of $\rho_0^\top V$.

Tolerances, with $R = \max|r|$, $T = 1/(1-\gamma)$ and $n$ the number of terms in one update
($A$ times the largest number of outcomes): one sweep is exact to
$\epsilon = $ ``exact_rtol(n_terms=n)`` $\cdot R T$; iterating until a sweep changes $V$ by at most
$\epsilon$ leaves a truncation error $\le \gamma/(1-\gamma)\,\epsilon$, and rounding in the fixed
point adds at most $T \epsilon$, so $|V - V^\pi| \le 2 T \epsilon$. The central difference is
within $M_3 h^2 / 6 + \delta / h$ of the derivative with $\delta = 2 T \epsilon$ and $M_3$ from
``rlmath.tolerances.softmax_objective_third_derivative_bound`` (see ``tests/test_exact.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.special

from rlmath import SoftmaxPolicy, TabularMDP, exact
from rlmath.testing import central_difference_gradient
from rlmath.tolerances import (
    central_difference_step,
    discounted_condition_number,
    exact_rtol,
    softmax_objective_third_derivative_bound,
)

gymnasium = pytest.importorskip("gymnasium")

GAMMA = 0.9


@dataclass(frozen=True)
class EnvModel:
    """``env.unwrapped.P`` as arrays, termination handled by dropping the continuation."""

    reward: np.ndarray  # [S, A]: sum over outcomes of probability * reward
    continuation: np.ndarray  # [S, A, S]: probability of s2 over NON-terminating outcomes
    rho0: np.ndarray  # [S]
    n_terms: int  # terms summed in one Bellman update

    @classmethod
    def of(cls, env) -> EnvModel:
        base = env.unwrapped
        S, A = len(base.P), len(base.P[0])
        reward, continuation = np.zeros((S, A)), np.zeros((S, A, S))
        outcomes = 1
        for s, by_action in base.P.items():
            for a, transitions in by_action.items():
                outcomes = max(outcomes, len(transitions))
                for probability, next_state, r, terminated in transitions:
                    reward[s, a] += probability * r
                    if not terminated:  # the return stops at termination
                        continuation[s, a, next_state] += probability
        rho0 = np.asarray(base.initial_state_distrib, dtype=np.float64)
        return cls(reward, continuation, rho0, A * outcomes)

    def sweep_error(self, gamma: float) -> float:
        """epsilon: rounding of one sweep, relative to |V| <= R T."""
        return exact_rtol(n_terms=self.n_terms) * np.abs(self.reward).max() / (1.0 - gamma)

    def values(self, pi: np.ndarray, gamma: float) -> np.ndarray:
        """Iterative policy evaluation until a sweep changes V by at most epsilon."""
        V = np.zeros(len(self.rho0))
        epsilon = self.sweep_error(gamma)
        for _ in range(100_000):
            new = (pi * (self.reward + gamma * self.continuation @ V)).sum(axis=1)
            change = np.abs(new - V).max()
            V = new
            if change <= epsilon:
                return V
        raise AssertionError("iterative policy evaluation did not converge")

    def objective(self, theta: np.ndarray, gamma: float) -> float:
        return float(self.rho0 @ self.values(scipy.special.softmax(theta, axis=1), gamma))

    def value_error(self, gamma: float) -> float:
        """|J_iterative - J| <= 2 T epsilon."""
        return 2.0 * self.sweep_error(gamma) / (1.0 - gamma)


def exact_objective_error(mdp: TabularMDP) -> float:
    R, T = float(np.abs(mdp.r).max()), 1.0 / (1.0 - mdp.gamma)
    return exact_rtol(discounted_condition_number(mdp.gamma), n_terms=mdp.n_states) * R * T


def with_absorbing_row(theta: np.ndarray) -> SoftmaxPolicy:
    """rlmath appends one absorbing terminal state: give it (irrelevant) zero logits."""
    return SoftmaxPolicy(np.vstack([theta, np.zeros((1, theta.shape[1]))]))


def frozen_lake_logits(n_states: int, seed: int) -> np.ndarray:
    """Random logits nudged toward down and right (actions 1, 2), so the goal is reached."""
    theta = np.random.default_rng(seed).normal(size=(n_states, 4))
    theta[:, 1:3] += 2.0
    return theta


def independent_gradient(model: EnvModel, theta: np.ndarray, gamma: float):
    """Central differences of the iterative objective, and their error bound."""
    R, T = float(np.abs(model.reward).max()), 1.0 / (1.0 - gamma)
    third = softmax_objective_third_derivative_bound(R, T)
    h, bound = central_difference_step(third, model.value_error(gamma))
    fd = central_difference_gradient(lambda logits: model.objective(logits, gamma), theta, h)
    return fd, bound


def check_policy_gradient(env, theta: np.ndarray, gamma: float) -> None:
    model = EnvModel.of(env)
    mdp = TabularMDP.from_gymnasium(env, gamma=gamma)
    policy = with_absorbing_row(theta)
    J = model.objective(theta, gamma)
    assert exact.objective(mdp, policy) == pytest.approx(
        J, abs=model.value_error(gamma) + exact_objective_error(mdp)
    )
    fd, bound = independent_gradient(model, theta, gamma)
    grad = exact.policy_gradient(mdp, policy)
    atol = bound + exact_objective_error(mdp) / (1.0 - gamma)
    assert np.abs(grad).max() > 20 * atol  # the comparison below is not vacuous
    np.testing.assert_allclose(grad[:-1], fd, rtol=0, atol=atol)
    np.testing.assert_allclose(grad[-1], 0.0, rtol=0, atol=atol)  # A = 0 in the absorbing state


@pytest.mark.parametrize("seed", [0, 1])
def test_frozen_lake_4x4_objective_and_gradient(seed):
    env = gymnasium.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    check_policy_gradient(env, frozen_lake_logits(16, seed), GAMMA)


def test_frozen_lake_8x8_objective_and_gradient():
    env = gymnasium.make("FrozenLake-v1", map_name="8x8", is_slippery=True)
    check_policy_gradient(env, frozen_lake_logits(64, seed=0), GAMMA)


def test_frozen_lake_check_rejects_a_gradient_without_the_horizon_factor():
    env = gymnasium.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    theta = frozen_lake_logits(16, seed=0)
    fd, bound = independent_gradient(EnvModel.of(env), theta, GAMMA)
    mdp = TabularMDP.from_gymnasium(env, gamma=GAMMA)
    wrong = (1.0 - GAMMA) * exact.policy_gradient(mdp, with_absorbing_row(theta))[:-1]
    assert np.abs(wrong - fd).max() > 20 * bound


@pytest.mark.slow
@pytest.mark.parametrize(
    ("map_name", "gamma"), [("4x4", 0.5), ("4x4", 0.95), ("8x8", 0.95)], ids=str
)
def test_frozen_lake_other_discounts(map_name, gamma):
    env = gymnasium.make("FrozenLake-v1", map_name=map_name, is_slippery=True)
    n_states = len(env.unwrapped.P)
    check_policy_gradient(env, frozen_lake_logits(n_states, seed=1), gamma)


@pytest.mark.parametrize(
    "name",
    [pytest.param("Taxi-v4", id="taxi"), pytest.param("CliffWalking-v1", id="cliff-walking")],
)
def test_objective_matches_iterative_evaluation(name):
    env = gymnasium.make(name)
    model = EnvModel.of(env)
    mdp = TabularMDP.from_gymnasium(env, gamma=GAMMA)
    assert mdp.n_states == len(model.rho0) + 1
    theta = np.random.default_rng(0).normal(size=model.reward.shape)
    J = model.objective(theta, GAMMA)
    assert exact.objective(mdp, with_absorbing_row(theta)) == pytest.approx(
        J, abs=model.value_error(GAMMA) + exact_objective_error(mdp)
    )
