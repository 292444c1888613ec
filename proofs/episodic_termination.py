r"""Episodic termination: expected return and length from the absorbing-chain fundamental matrix.

Main statement. Let an episode start at $s_0 \sim \rho_0$ (on non-terminal states), act
$a_t \sim \pi(\cdot|s_t)$, collect $r_t = r(s_t, a_t)$, move to $s_{t+1} \sim P(\cdot|s_t,a_t)$,
and *end after step $t$ when $s_{t+1}$ is terminal* ($s_{t+1} \in \mathcal T$) or at
$t = H - 1$. With the continuation kernel $K = P_\pi D$ ($D = \mathrm{diag}(\mathbb 1[s
\notin \mathcal T])$: move, then survive only outside $\mathcal T$), step $t$ happens in state
$s$ with probability $(\rho_0^\top K^t)_s$, so for $C = \gamma K$

$$ \mathbb E\Big[\sum_{t<\text{end}} \gamma^t r_t\Big] = \rho_0^\top \sum_{t<H} C^t r_\pi
   = \rho_0^\top (I - C^H)(I - C)^{-1} r_\pi , $$

and with $\gamma = 1$, $r_\pi = \mathbf 1$ the expected length is
$\rho_0^\top (I - K^H) N \mathbf 1$ with the fundamental matrix $N = (I - K)^{-1}$
(Kemeny & Snell: $N_{ss'}$ is the expected number of visits to $s'$ from $s$ before
absorption; $H \to \infty$ gives $\rho_0^\top N \mathbf 1$).

Proof sketch. $S_h = \sum_{t<h} C^t$ satisfies $S_0 = 0$ and $S_h = I + C S_{h-1}$ (first
step); by induction $S_h = (I - C^h)(I - C)^{-1}$: $I + C(I - C^{h-1})(I-C)^{-1}
= ((I - C) + C - C^h)(I - C)^{-1}$. Every expression is a rational function of the one matrix
$C$, so they commute and a scalar identity in $x \ne 1$ transfers to $C$ of every size. $I - C$ is invertible when $\gamma < 1$ or when termination is reachable from
every non-terminal state (spectral radius of $K$ below 1).

Why this claim. ``rlmath.sampling.rollouts(..., terminal_states=...)`` implements the
stopping rule; a sampler that stops one step late (on $s_t \in \mathcal T$), early, or never,
changes the expected return and length whenever terminal states are *not* absorbing with
reward 0 -- so the generated MDPs give terminal states ordinary rewards and transitions.

References. Kemeny, J. G. and Snell, J. L., *Finite Markov Chains*, Van Nostrand, 1960,
Thm. 3.2.4 (fundamental matrix) and Thm. 3.3.5 (expected time to absorption); Sutton, R. S.
and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed., 2018, Sec. 3.3-3.4
(episodes end on entering a terminal state; episodic returns).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import SoftmaxPolicy, TabularMDP
from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    monte_carlo_leg,
)
from rlmath.sampling import rollouts
from rlmath.tolerances import exact_rtol

# ============================================================================ derivation
h = sp.Symbol("h", integer=True, positive=True)  # steps, h >= 1
# C stands for the S x S matrix gamma P_pi D (the discounted continuation kernel). Every
# expression below is a rational function of C alone, with (I - C) the only denominator: such
# expressions commute with each other, and x -> C is a ring homomorphism from the rational
# functions with denominators powers of (1 - x) to matrices (I - C invertible). So an identity
# of rational functions in one commuting x != 1 (proved here, with x declared in (0, 1) for
# the prover's guards) holds for the matrix C: the symbol may be commutative.
C = sp.Symbol("C", positive=True, less_than_one=True)
M_inv = sp.Pow(1 - C, -1)  # (I - C)^{-1}; gamma = 1: the fundamental matrix N


def closed_form(steps: sp.Expr) -> sp.Expr:
    r"""$(I - C^{steps})(I - C)^{-1}$ (= $\sum_{t<steps} C^t$)."""
    return sp.Mul(1 - C**steps, M_inv, evaluate=False)


induction_step = Derivation(
    "induction-step",
    (
        Step(
            1 + C * closed_form(h - 1),
            "first step: S_h = I + C S_{h-1}; induction hypothesis S_{h-1} = (I - C^{h-1})(I - C)^{-1}",
        ),
        Step(
            sp.Mul(sp.Add(1 - C, C - C**h, evaluate=False), M_inv, evaluate=False),
            "I = (I - C)(I - C)^{-1}; factor (I - C)^{-1} out; C C^{h-1} = C^h",
        ),
        Step(closed_form(h), "(I - C) + C = I"),
    ),
    statement=r"I + C\,(I - C^{h-1})(I - C)^{-1} = (I - C^h)(I - C)^{-1}",
)

base_case = Derivation(
    "base-case",
    (
        Step(
            sp.Mul(sp.Add(1, -sp.Pow(C, 1, evaluate=False), evaluate=False), M_inv, evaluate=False),
            "the closed form at h = 1",
        ),
        Step(sp.Integer(1), "(I - C)(I - C)^{-1} = I = S_1 = C^0"),
    ),
    statement=r"(I - C)(I - C)^{-1} = I = S_1",
)

# ============================================================================ examples
# Dense MDPs (every transition probability >= 0.05 / S), so termination is reachable from every
# state in one step and I - K is invertible even for gamma = 1. Terminal states keep ordinary
# rewards and transitions (NOT absorbing, NOT zero-reward): stopping there late or never
# changes both components. rho_0 is supported on the non-terminal states.


@st.composite
def episodic_examples(draw):  # type: ignore[no-untyped-def]
    S = draw(st.integers(2, 4))
    A = draw(st.integers(1, 3))
    H = draw(st.integers(2, 5))
    gamma = draw(st.sampled_from([0.5, 0.9, 1.0]))
    n_terminal = draw(st.integers(1, S - 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    P = rng.dirichlet(np.ones(S), size=(S, A))
    P = 0.95 * P + 0.05 / S
    P /= P.sum(axis=-1, keepdims=True)
    r = rng.uniform(0.5, 2.0, size=(S, A))
    terminal = np.zeros(S, dtype=bool)
    terminal[rng.permutation(S)[:n_terminal]] = True
    rho0 = np.where(terminal, 0.0, rng.uniform(0.2, 1.0, size=S))
    rho0 /= rho0.sum()
    mdp = TabularMDP(P, r=r, rho0=rho0, gamma=min(gamma, 0.99))
    policy = SoftmaxPolicy(rng.uniform(-1.5, 1.5, size=(S, A)))
    return mdp, policy, terminal, H, gamma


examples = episodic_examples()


def _policy_terms(example):  # type: ignore[no-untyped-def]
    """(P_pi [S, S], r_pi [S]) from the MDP's arrays and the policy's probabilities."""
    mdp, policy, _, _, _ = example
    pi = policy.probabilities()
    P = np.asarray(mdp.P, dtype=np.float64)
    r = np.asarray(mdp.r, dtype=np.float64)
    return np.einsum("sa,sat->st", pi, P), (pi * r).sum(axis=1)


def _continuation(example, *, survive_before_move: bool = False, stop: bool = True):  # type: ignore[no-untyped-def]
    """K = P_pi D (or D P_pi: survive on s_t, one step late; or P_pi: never stop), [S, S]."""
    P_pi, _ = _policy_terms(example)
    D = np.diag((~example[2]).astype(np.float64))
    if not stop:
        return P_pi
    return D @ P_pi if survive_before_move else P_pi @ D


# ----------------------------------------------------------------------------- exact leg
def alive_loop(example) -> np.ndarray:
    """[E return, E length] by a direct loop over time on the alive-state distribution.

    alpha_0 = rho_0; alpha_{t+1}(s') = sum_s alpha_t(s) P_pi(s, s') 1[s' not terminal];
    accumulate gamma^t alpha_t . r_pi and alpha_t . 1 for t < H.
    """
    mdp, _, terminal, H, gamma = example
    P_pi, r_pi = _policy_terms(example)
    alpha = np.asarray(mdp.rho0, dtype=np.float64).copy()
    value = length = 0.0
    for t in range(H):
        value += gamma**t * float(alpha @ r_pi)
        length += float(alpha.sum())
        alpha = (alpha @ P_pi) * ~terminal
    return np.array([value, length])


def fundamental_matrix_form(example, **kernel) -> np.ndarray:  # type: ignore[no-untyped-def]
    """[rho_0^T (I - C^H)(I - C)^{-1} r_pi with C = gamma K; rho_0^T (I - K^H) N 1, N = (I - K)^{-1}].

    The right factor (I - C)^{-1} x is an LU solve (numpy.linalg.solve); C^H by
    numpy.linalg.matrix_power. ``kernel`` selects a mutant's continuation kernel.
    """
    mdp, _, _, H, gamma = example
    _, r_pi = _policy_terms(example)
    K = _continuation(example, **kernel)
    rho0 = np.asarray(mdp.rho0, dtype=np.float64)
    eye = np.eye(K.shape[0])

    def summed(Ckernel: np.ndarray, vector: np.ndarray) -> float:
        weights = np.linalg.solve(eye - Ckernel, vector)  # (I - C)^{-1} v
        return float(rho0 @ (eye - np.linalg.matrix_power(Ckernel, H)) @ weights)

    return np.array([summed(gamma * K, r_pi), summed(K, np.ones_like(r_pi))])


def _rtol(example) -> float:  # type: ignore[no-untyped-def]
    K = _continuation(example)
    H = example[3]
    return exact_rtol(float(np.linalg.cond(np.eye(K.shape[0]) - K)) * H, K.shape[0] * H)


def _longer_horizon(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    mdp, policy, terminal, H, gamma = example
    return fundamental_matrix_form((mdp, policy, terminal, H + 1, gamma))


# ----------------------------------------------------------------------------- Monte-Carlo leg
N_EPISODES = 40_000
MC_EXAMPLES = 3
MC_FALSE_ALARM = 1e-6


def _episode_terms(rewards: np.ndarray, alive: np.ndarray, gamma: float) -> np.ndarray:
    """[N, 2]: sum_t gamma^t r_t and the number of steps, over the alive steps of each episode."""
    weights = gamma ** np.arange(rewards.shape[0])[:, None]
    return np.stack([(weights * rewards * alive).sum(axis=0), alive.sum(axis=0)], axis=1)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


def sampled_episodes(example, rng, n):  # type: ignore[no-untyped-def]
    """rlmath.sampling.rollouts with terminal_states (the rule under test), per-episode terms."""
    mdp, policy, terminal, H, gamma = example
    out = rollouts(mdp, policy, n_episodes=n, horizon=H, seed=_seed(rng), terminal_states=terminal)
    return _episode_terms(out.rewards, out.alive, gamma)


def _untruncated(example, rng, n):  # type: ignore[no-untyped-def]
    """Episodes of H steps with no terminal states, and the terminal flag of each s_t."""
    mdp, policy, terminal, H, gamma = example
    out = rollouts(mdp, policy, n_episodes=n, horizon=H, seed=_seed(rng))
    return out, terminal[out.states]


def late_stop(example, rng, n):  # type: ignore[no-untyped-def]
    """Mutant: the episode ends after step t when s_t (not s_{t+1}) is terminal."""
    out, at_terminal = _untruncated(example, rng, n)
    ended_before = np.concatenate([np.zeros_like(at_terminal[:1]), at_terminal[:-1]])
    alive = np.cumsum(ended_before, axis=0) == 0
    return _episode_terms(out.rewards, alive, example[4])


def never_stop(example, rng, n):  # type: ignore[no-untyped-def]
    """Mutant: terminal states ignored (every episode runs H steps)."""
    out, _ = _untruncated(example, rng, n)
    return _episode_terms(out.rewards, np.ones_like(out.alive), example[4])


def early_stop(example, rng, n):  # type: ignore[no-untyped-def]
    """Mutant: the step that enters the terminal state is not counted (reward and length)."""
    mdp, policy, terminal, H, gamma = example
    out = rollouts(mdp, policy, n_episodes=n, horizon=H, seed=_seed(rng), terminal_states=terminal)
    return _episode_terms(out.rewards, out.alive & ~out.terminated, gamma)


def longer_horizon(example, rng, n):  # type: ignore[no-untyped-def]
    """Mutant: H + 1 steps (the horizon cut one step late)."""
    mdp, policy, terminal, H, gamma = example
    return sampled_episodes((mdp, policy, terminal, H + 1, gamma), rng, n)


CLAIMS = (
    Claim(
        id="episodic-return-fundamental-matrix",
        title="Episodic return and length from the absorbing-chain fundamental matrix",
        statement=Statement(
            induction_step.start,
            induction_step.conclusion,
            derivation="induction-step",
            where=(
                r"C = \gamma P_\pi D,\ D = \mathrm{diag}(\mathbb 1[s \notin \mathcal T]);\ "
                r"S_h = \sum_{t<h} C^t = I + C S_{h-1};\ "
                r"\mathbb E[\textstyle\sum_{t<\text{end}} \gamma^t r_t] = \rho_0^\top S_H r_\pi;\ "
                r"\text{the } 1 \text{ of } 1 - C \text{ is the identity matrix } I"
            ),
        ),
        assumptions=(
            "Finite states and actions; an episode ends after step t when s_{t+1} is terminal, "
            "or at t = H - 1; rho_0 is supported on non-terminal states.",
            "I - gamma P_pi D is invertible: gamma < 1, or (gamma = 1, the length) termination "
            "reachable from every non-terminal state (the examples' dense P guarantees it).",
            "The derivation treats C as one commuting symbol: every expression is a rational "
            "function of the single matrix C with denominator I - C, so the identity of "
            "rational functions transfers to C of every size; base case h = 1 and the "
            "induction step give every horizon H.",
        ),
        references=(
            "Kemeny, J. G. and Snell, J. L., *Finite Markov Chains*, 1960, Thm. 3.2.4 and "
            "Thm. 3.3.5 (the fundamental matrix N = (I - Q)^{-1}, expected steps to absorption).",
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed., "
            "2018, Sec. 3.3-3.4 (episodes end on entering a terminal state; episodic returns).",
        ),
        summary=(
            "An episode that ends on entering a terminal state has expected return "
            "rho_0^T (I - C^H)(I - C)^{-1} r_pi with C = gamma P_pi restricted to surviving "
            "moves; a sampler that stops one step late, early or never gets it wrong."
        ),
        symbolic=SymbolicLeg((induction_step, base_case)),
        exact=ExactLeg(
            examples,
            lhs=alive_loop,
            rhs=fundamental_matrix_form,
            rhs_reason=(
                "the conclusion is a product of non-commuting symbols; the rhs evaluates it "
                "as rho_0^T (I - C^H) solve(I - C, v) with C = gamma P_pi D (v = r_pi) and "
                "C = P_pi D (v = 1, the fundamental matrix), P_pi from the MDP's arrays"
            ),
            rtol=_rtol,
            max_examples=40,
            description=(
                "a direct loop over t < H of the alive-state distribution alpha_{t+1} = "
                "(alpha_t P_pi) 1[not terminal] (return and length) vs the fundamental-matrix "
                "closed form rho_0^T (I - C^H)(I - C)^{-1} v"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            examples,
            sampled_episodes,
            fundamental_matrix_form,
            n_samples=N_EPISODES,
            n_examples=MC_EXAMPLES,
            false_alarm=MC_FALSE_ALARM,
            description=(
                "per-episode discounted return and length of rlmath.sampling.rollouts with "
                "terminal_states (terminal states have ordinary rewards and transitions) vs "
                "the fundamental-matrix closed form"
            ),
        ),
        mutants=(
            Mutant(
                "stop-one-step-late",
                "the episode ends when s_t is terminal (one step after entering it; exact: "
                "K = D P_pi)",
                exact=lambda ex: fundamental_matrix_form(ex, survive_before_move=True),
                monte_carlo=late_stop,
            ),
            Mutant(
                "never-stop",
                "terminal states ignored (exact: K = P_pi)",
                exact=lambda ex: fundamental_matrix_form(ex, stop=False),
                monte_carlo=never_stop,
            ),
            Mutant(
                "stop-one-step-early",
                "the step that enters the terminal state is dropped (its reward and its count)",
                monte_carlo=early_stop,
            ),
            Mutant(
                "horizon-off-by-one",
                "C^{H+1} in place of C^H: one step more than the horizon",
                symbolic=SymbolicMutation("induction-step", closed_form(h + 1)),
                exact=_longer_horizon,
                monte_carlo=longer_horizon,
            ),
        ),
        notes=(
            "The exact leg's two sides are independent algorithms: a loop over time on the "
            "alive-state distribution, and one LU solve with a matrix power. The Monte-Carlo "
            "leg reads only the sampled rewards and alive masks of "
            "`rlmath.sampling.rollouts(..., terminal_states=...)`, so an error in its "
            "stopping rule cannot hide. Terminal states are deliberately not absorbing "
            "zero-reward states: there stopping late would change nothing."
        ),
    ),
)
