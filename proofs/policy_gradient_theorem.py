r"""The policy-gradient theorem, and its closed form for a tabular softmax policy.

Main statements. For a differentiable policy $\pi_\theta$ on a finite discounted MDP
($0 \le \gamma < 1$, start distribution $\rho_0$) with $J(\theta) = \rho_0^\top V^{\pi_\theta}$,

$$ \nabla_\theta J(\theta) = \frac{1}{1-\gamma}\,
   \mathbb E_{s \sim d_\rho^\pi,\ a \sim \pi_\theta(\cdot|s)}
   \left[\nabla_\theta \log \pi_\theta(a|s)\, Q^\pi(s,a)\right], $$

and for tabular softmax logits $\theta_{s,a}$,

$$ \frac{\partial J}{\partial \theta_{s,a}} = \frac{1}{1-\gamma}\, d_\rho^\pi(s)\,
   \pi_\theta(a|s)\, A^\pi(s,a). $$

Conventions. $d_\rho^\pi(s) = (1-\gamma)\sum_t \gamma^t \Pr(s_t = s)$ is the *normalised*
discounted occupancy (it sums to 1), hence the factor $1/(1-\gamma)$. Matrices: $\Pi$ is the
$S \times SA$ policy matrix ($\Pi_{s,(s,a)} = \pi(a|s)$), $P$ the $SA \times S$ transition
matrix, $r$ the $SA$ reward vector, so $P_\pi = \Pi P$, $r_\pi = \Pi r$,
$V = (I - \gamma P_\pi)^{-1} r_\pi$, $Q = r + \gamma P V$, and
$d^\top = (1-\gamma)\rho_0^\top (I - \gamma P_\pi)^{-1}$. $J$ is an objective (maximised).
In the sympy expressions the non-commutative $1$ is the identity $I$.

Proof sketch. Differentiate $J = \rho_0^\top (I - \gamma \Pi P)^{-1} \Pi r$ by the product
rule and $\partial(M^{-1}) = -M^{-1}(\partial M) M^{-1}$; collect
$\rho_0^\top (I - \gamma P_\pi)^{-1} (\partial\Pi)(r + \gamma P V)$ and recognise $d$ and $Q$.
The symbols do not commute, so the argument holds for matrices of every size. Row $s$ of
$(\partial\Pi) Q$ is $\sum_a \partial\pi(a|s) Q(s,a) = \mathbb E_{a\sim\pi}[\partial\log\pi\,Q]$
(log-derivative). For softmax, $\partial \log\pi(b|s)/\partial\theta_{s,a} =
\mathbb 1[a=b] - \pi(a|s)$, and $\sum_b \pi_b(\mathbb 1[a=b]-\pi_a)Q_b = \pi_a(Q_a - V)$.

Sampling. Episodes of ``rlmath.sampling.discounted_rollouts`` stop after each step with
probability $1 - \gamma$ (length $H \sim \mathrm{Geometric}(1-\gamma)$), so the sampled path
itself carries the discount: $\mathbb E[\sum_{t<H} \nabla\log\pi(a_t|s_t) \sum_{t'=t}^{H-1}
r_{t'}] = \sum_t \gamma^t\, \mathbb E[\nabla\log\pi\, Q](s_t, a_t) = \nabla J$. That
REINFORCE estimator reads nothing but the sampled path, and the Monte-Carlo legs compare it
with central differences of ``exact.objective``.

References. Sutton, R. S., McAllester, D., Singh, S., Mansour, Y., "Policy Gradient Methods
for Reinforcement Learning with Function Approximation", NeurIPS 2000, Theorem 1; Agarwal,
A., Kakade, S. M., Lee, J. D., Mahajan, G., "On the Theory of Policy Gradient Methods", JMLR
22, 2021, Lemma C.1 (softmax); Sutton and Barto, *Reinforcement Learning: An
Introduction*, 2nd ed., 2018, eq. (13.2) (softmax in action preferences), Exercise 13.3
(its score) and Sec. 5.8 (discounting as termination).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import exact
from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    detectable,
    lambdify,
    monte_carlo_leg,
)
from rlmath.policy import SoftmaxPolicy
from rlmath.sampling import Rollouts, discounted_rollouts
from rlmath.testing import (
    discounted_return_moments,
    discounted_reward_to_go_moments,
    mdps_and_policies,
    objective_gradient_by_central_differences,
    tabular_mdps,
)
from rlmath.tolerances import RESOLUTION_FACTOR

# ============================================================================ the theorem
# Non-commuting symbols stand for matrices of any compatible sizes.
gamma = sp.Symbol("gamma", positive=True, integer=False)  # 0 < gamma < 1: 1 - gamma != 0
theta = sp.Symbol("theta", real=True)  # any one parameter (a coordinate of the logits)
rho = sp.Symbol("rho_0^T", commutative=False)  # 1 x S
P = sp.Symbol("P", commutative=False)  # SA x S
r = sp.Symbol("r", commutative=False)  # SA x 1
Pi = sp.Function("Pi", commutative=False)(theta)  # S x SA, depends on theta
dPi = sp.Derivative(Pi, theta)
M = 1 - gamma * Pi * P  # I - gamma P_pi
N = M**-1  # (I - gamma P_pi)^{-1}
V = N * Pi * r  # V^pi
Q = r + gamma * P * V  # Q^pi
occupancy_row = (1 - gamma) * rho * N  # d^T, the normalised discounted occupancy


def normalised(weighting: sp.Expr, q: sp.Expr = Q) -> sp.Expr:
    r"""$\frac{1}{1-\gamma}\,\text{weighting}\,(\partial\Pi)\,q$, kept unevaluated for reading."""
    return sp.Mul(1 / (1 - gamma), weighting, dPi, q, evaluate=False)


matrix_form = Derivation(
    "matrix-form",
    (
        Step(
            sp.Derivative(rho * N * Pi * r, theta), "J = rho_0^T V, V = (I - gamma Pi P)^{-1} Pi r"
        ),
        Step(
            rho * sp.Derivative(N, theta) * Pi * r + rho * N * dPi * r,
            "product rule; rho_0, P and r do not depend on theta",
        ),
        Step(
            gamma * rho * N * dPi * P * N * Pi * r + rho * N * dPi * r,
            "d(M^{-1}) = -M^{-1} (dM) M^{-1} with dM = -gamma (dPi) P",
        ),
        Step(
            normalised(occupancy_row),
            "factor rho_0^T (I - gamma P_pi)^{-1} dPi on the left, and write it as "
            "d^T / (1 - gamma) with d^T = (1 - gamma) rho_0^T (I - gamma P_pi)^{-1}; "
            "Q = r + gamma P V",
        ),
    ),
    statement=r"\partial_\theta J = \tfrac{1}{1-\gamma}\, d^\top (\partial_\theta \Pi)\, Q",
)

# Row s of (dPi) Q, for n actions: the log-derivative trick turns it into an expectation.
n = sp.Symbol("n", integer=True, positive=True)
a = sp.Symbol("a", integer=True)
pi = sp.Function("pi", positive=True)  # pi(a | s) as a function of theta
q_row = sp.IndexedBase("Q", real=True)
pi_a = pi(a, theta)
log_derivative = Derivation(
    "log-derivative",
    (
        Step(
            sp.Sum(sp.Derivative(pi_a, theta) * q_row[a], (a, 0, n - 1)),
            "row s of (dPi) Q: sum over actions of d pi(a|s) Q(s,a)",
        ),
        Step(
            sp.Sum(
                sp.Mul(
                    pi_a,
                    sp.Mul(sp.Derivative(pi_a, theta), sp.Pow(pi_a, -1), evaluate=False),
                    q_row[a],
                    evaluate=False,
                ),
                (a, 0, n - 1),
            ),
            "multiply and divide by pi(a|s) > 0",
        ),
        Step(
            sp.Sum(pi_a * sp.Derivative(sp.log(pi_a), theta) * q_row[a], (a, 0, n - 1)),
            "d log f = df / f: an expectation over a ~ pi(.|s)",
        ),
    ),
    statement=r"\sum_a \partial\pi(a|s)\,Q(s,a) = \mathbb E_{a\sim\pi}[\partial\log\pi(a|s)\,Q(s,a)]",
)

# ----------------------------------------------------------------------------- numeric form
# A conclusion of the matrix derivation is made numeric by replacing each non-commuting symbol
# with a MatrixSymbol of its size (rho_0^T: 1 x S, P: SA x S, r: SA x 1, Pi, dPi: S x SA, the
# non-commutative 1 in I - gamma Pi P: the S x S identity) and lambdifying the result. d and Q
# may also be given by name (d^T = (1 - gamma) rho_0^T (I - gamma Pi P)^{-1} and
# Q = r + gamma P V are then replaced by the values of exact.occupancy and exact.q_value);
# w is a state weighting given by value (the stationary and undiscounted mutants).
d_name, q_name, weights_name = sp.symbols("d Q_pi w", commutative=False)


@functools.lru_cache(maxsize=64)
def _matrix_function(expression: sp.Expr, S: int, A: int):
    """The lambdified ``expression`` with every non-commuting symbol an S x A-sized matrix."""
    shapes = {
        d_name: sp.MatrixSymbol("d", 1, S),
        weights_name: sp.MatrixSymbol("w", 1, S),
        q_name: sp.MatrixSymbol("Q", S * A, 1),
        rho: sp.MatrixSymbol("rho0", 1, S),
        P: sp.MatrixSymbol("P", S * A, S),
        r: sp.MatrixSymbol("r", S * A, 1),
        Pi: sp.MatrixSymbol("Pi", S, S * A),
        dPi: sp.MatrixSymbol("dPi", S, S * A),
    }
    named = expression.xreplace({occupancy_row: d_name, Q: q_name})
    identity = sp.Identity(S) - gamma * shapes[Pi] * shapes[P]
    matrices = named.xreplace({M: identity, **shapes})
    return lambdify([*shapes.values(), gamma], matrices)


def policy_matrix(policy: SoftmaxPolicy) -> np.ndarray:
    r"""$\Pi$, ``[S, S*A]``: row $s$ holds $\pi(\cdot|s)$ in columns $sA..sA+A-1$."""
    S, A = policy.n_states, policy.n_actions
    out = np.zeros((S, S * A))
    for s in range(S):
        out[s, s * A : (s + 1) * A] = policy.probabilities()[s]
    return out


def policy_derivatives(policy: SoftmaxPolicy) -> np.ndarray:
    r"""$\partial\Pi/\partial\theta_{s,a}$ for every logit: ``[S, A, S, S*A]``.

    Row $s$ of $\partial\Pi/\partial\theta_{s,a}$ is
    $\partial\pi(b|s)/\partial\theta_{s,a} = \pi(b|s)(\mathbb 1[a=b] - \pi(a|s))
    = \pi(a|s)(e_a - \pi(\cdot|s))_b$ (symmetric in $a, b$): ``SoftmaxPolicy.score_row``
    times $\pi(a|s)$. Other rows are zero.
    """
    S, A = policy.n_states, policy.n_actions
    probabilities = policy.probabilities()
    out = np.zeros((S, A, S, S * A))
    for s in range(S):
        for a_ in range(A):
            score = policy.score_row(np.array(s), np.array(a_))
            out[s, a_, s, s * A : (s + 1) * A] = probabilities[s, a_] * score
    return out


def theorem_gradient(conclusion: sp.Expr, example, *, weights=None, q=None) -> np.ndarray:
    """A matrix conclusion at every logit: ``[S, A]``.

    rho_0, P, r, Pi come from the example, dPi from ``policy_derivatives``; d (if named) is
    exact.occupancy, Q (if named) exact.q_value or ``q``, w the given ``weights``.
    """
    mdp, policy = example
    S, A = mdp.n_states, mdp.n_actions
    function = _matrix_function(conclusion, S, A)
    d = exact.occupancy(mdp, policy)[None, :]
    w = d if weights is None else np.asarray(weights)[None, :]
    q = exact.q_value(mdp, policy) if q is None else q
    fixed = (
        d,
        w,
        q.reshape(S * A, 1),
        mdp.rho0[None, :],
        mdp.dense_transitions().reshape(S * A, S),
        mdp.r.reshape(S * A, 1),
        policy_matrix(policy),
    )
    derivatives = policy_derivatives(policy)
    return np.array(
        [
            [
                float(np.asarray(function(*fixed, derivatives[s, a_], mdp.gamma)).reshape(-1)[0])
                for a_ in range(A)
            ]
            for s in range(S)
        ]
    )


# ----------------------------------------------------------------------------- finite differences
_last: dict[str, object] = {}


def _central_differences(mdp, policy) -> tuple[np.ndarray, float]:
    """(gradient, absolute error bound) of central differences of ``exact.objective``.

    ``rlmath.testing.objective_gradient_by_central_differences``, cached for the last pair
    (the legs ask for it several times per example).
    """
    key = (id(mdp), policy.theta.tobytes())
    if _last.get("key") != key or _last.get("mdp") is not mdp:
        result = objective_gradient_by_central_differences(mdp, policy)
        _last.update(key=key, mdp=mdp, result=result)
    return _last["result"]  # type: ignore[return-value]


def finite_difference_gradient(example) -> np.ndarray:
    """Central differences of ``exact.objective`` in each logit, ``[S, A]``."""
    return _central_differences(example[0], example[1])[0]


def finite_difference_bound(example) -> float:
    """The absolute error bound of every entry of ``finite_difference_gradient``."""
    return _central_differences(example[0], example[1])[1]


def finite_difference_rtol(example) -> float:
    """The absolute bound of ``finite_difference_bound`` relative to the gradient's size."""
    return finite_difference_bound(example) / float(
        np.abs(finite_difference_gradient(example)).max()
    )


def resolvable(example) -> bool:
    """Whether the gradient exceeds RESOLUTION_FACTOR (2e4) times the finite-difference bound.

    Below that (a constant objective, gamma = 0 with equal rewards, ...) central differences
    cannot tell a right formula from a wrong one; such examples are skipped, not passed.
    """
    bound = finite_difference_bound(example)
    return (
        float(np.abs(finite_difference_gradient(example)).max(initial=0.0))
        > RESOLUTION_FACTOR * bound
    )


examples = mdps_and_policies(tabular_mdps(max_states=4, max_actions=3), max_abs_logit=3.0).filter(
    resolvable
)


# ----------------------------------------------------------------------------- theorem exact leg
def theorem_lhs(example) -> np.ndarray:
    gradient = finite_difference_gradient(example)
    return np.stack([gradient, gradient, gradient])


def theorem_rhs(example, conclusion: sp.Expr = matrix_form.conclusion, weights=None) -> np.ndarray:
    """[the conclusion with Q; with A in place of Q; rlmath.exact.policy_gradient], ``[3, S, A]``.

    Row 2 (A in place of Q) must agree: a state baseline. Row 3 is the library's softmax form
    of the theorem, d(s) pi(a|s) A(s, a) / (1 - gamma) with d from the adjoint solve
    (I - gamma P_pi)^T x = rho_0 of its own factorisation: the only claim whose exact leg
    checks ``exact.policy_gradient`` in the infinite-horizon case (the other claims use its
    finite-horizon branch, or call it only inside a mutant). It is the same for every
    variant: a mutant of the conclusion changes rows 1-2 only.
    """
    mdp, policy = example
    with_q = theorem_gradient(conclusion, example, weights=weights)
    with_a = theorem_gradient(conclusion, example, weights=weights, q=exact.advantage(mdp, policy))
    return np.stack([with_q, with_a, exact.policy_gradient(mdp, policy)])


def stationary_distribution(example) -> np.ndarray:
    r"""A stationary distribution $\mu P_\pi = \mu$ of the policy's chain (least squares)."""
    mdp, policy = example[0], example[1]
    P_pi = np.einsum("sa,sat->st", policy.probabilities(), mdp.dense_transitions())
    S = mdp.n_states
    system = np.vstack([P_pi.T - np.eye(S), np.ones((1, S))])
    mu = np.linalg.lstsq(system, np.append(np.zeros(S), 1.0), rcond=None)[0]
    return _distribution(mu)


def undiscounted_visitation(example) -> np.ndarray:
    r"""$\frac1H \sum_{t<H} \Pr(s_t = s)$ over the effective horizon $H = \lceil 1/(1-\gamma)\rceil$."""
    mdp, policy = example[0], example[1]
    horizon = math.ceil(1.0 / (1.0 - mdp.gamma))
    return exact.state_distributions(mdp, policy, horizon).mean(axis=0)


def _distribution(weights: np.ndarray) -> np.ndarray:
    """Clip least-squares round-off (a stationary distribution's -1e-17) and renormalise."""
    clipped = np.clip(weights, 0.0, None)
    return clipped / clipped.sum()


initial_weighting = normalised(rho)
unnormalised = sp.Mul(occupancy_row, dPi, Q, evaluate=False)


def _weighted(weights_of):
    return lambda ex: theorem_rhs(ex, normalised(weights_name), weights=weights_of(ex))


# ============================================================================ softmax
# One state s with actions b = 0..n-1 and logits theta_b; the differentiated logit is theta_k,
# k < n, written n = k + 1 + m with m >= 0 so that sympy knows k is one of the actions.
k = sp.Symbol("k", integer=True, nonnegative=True)
m = sp.Symbol("m", integer=True, nonnegative=True)
n_actions = k + m + 1
b, c = sp.symbols("b c", integer=True)
logit = sp.IndexedBase("theta", real=True)
Z = sp.Sum(sp.exp(logit[c]), (c, 0, n_actions - 1))


def softmax(index: sp.Expr) -> sp.Expr:
    return sp.exp(logit[index]) / Z


softmax_score = Derivation(
    "softmax-score",
    (
        Step(
            sp.Derivative(sp.log(softmax(b)), logit[k]), "log pi(b|s) differentiated in theta_{s,k}"
        ),
        Step(sp.Derivative(logit[b] - sp.log(Z), logit[k]), "log(e^x / Z) = x - log Z"),
        Step(
            sp.KroneckerDelta(b, k)
            - sp.Sum(sp.KroneckerDelta(c, k) * sp.exp(logit[c]), (c, 0, n_actions - 1)) / Z,
            "d theta_b / d theta_k = 1[b = k]; d log Z = dZ / Z",
        ),
        Step(
            sp.KroneckerDelta(b, k) - softmax(k),
            "only c = k survives the sum, leaving e^{theta_k} / Z = pi(k|s)",
        ),
    ),
    statement=r"\partial\log\pi(b|s)/\partial\theta_{s,k} = \mathbb 1[b=k] - \pi(k|s)",
)

d_s = sp.Symbol("d_s", nonnegative=True)  # d(s)
p = sp.IndexedBase("pi", positive=True)  # pi(. | s), the softmax probabilities of state s
q = sp.IndexedBase("Q", real=True)  # Q(s, .)
prefactor = d_s / (1 - gamma)


def over_actions(summand: sp.Expr) -> sp.Sum:
    return sp.Sum(summand, (b, 0, n_actions - 1))


value_s = over_actions(p[b] * q[b])  # V(s) = E_{b ~ pi} Q(s, b)

softmax_gradient = Derivation(
    "softmax-gradient",
    (
        Step(
            prefactor * over_actions(p[b] * (sp.KroneckerDelta(b, k) - p[k]) * q[b]),
            "policy-gradient theorem at theta_{s,k} (only row s of Pi depends on it) with the "
            "softmax score (derivation softmax-score)",
        ),
        Step(
            prefactor * (over_actions(p[b] * sp.KroneckerDelta(b, k) * q[b]) - p[k] * value_s),
            "linearity of the sum over b",
        ),
        Step(prefactor * (p[k] * q[k] - p[k] * value_s), "only b = k survives"),
        Step(prefactor * p[k] * (q[k] - value_s), "A(s,k) = Q(s,k) - V(s), V(s) = E_pi Q(s,.)"),
    ),
    statement=r"\partial J/\partial\theta_{s,k} = \tfrac{1}{1-\gamma}\,d(s)\,\pi(k|s)\,A(s,k)",
)


# Exact leg: examples (mdp, policy, k); both sides are the column k of the gradient, [S].
def _with_action(example):
    mdp, policy = example
    return st.integers(0, mdp.n_actions - 1).map(lambda k_: (mdp, policy, k_))


def _column_resolvable(example) -> bool:
    """Column k of the gradient above RESOLUTION_FACTOR error bounds (else skipped)."""
    mdp, policy, k_ = example
    gradient, bound = _central_differences(mdp, policy)
    return float(np.abs(gradient[:, k_]).max(initial=0.0)) > RESOLUTION_FACTOR * bound


softmax_examples = (
    mdps_and_policies(tabular_mdps(max_states=4, max_actions=3), max_abs_logit=3.0)
    .flatmap(_with_action)
    .filter(_column_resolvable)
)


def softmax_lhs(example) -> np.ndarray:
    r"""$\partial J/\partial\theta_{s,k}$ for every $s$ by central differences of ``exact.objective``."""
    mdp, policy, k_ = example
    return _central_differences(mdp, policy)[0][:, k_]


def softmax_arguments(example) -> tuple:
    """Values of (d_s, pi, Q, gamma, k, m): vectors over the states, so the lambdified
    conclusion is column k at once (pi[b] is the [S] vector pi(b|.), Q[b] likewise)."""
    mdp, policy, k_ = example
    return (
        exact.occupancy(mdp, policy),
        policy.probabilities().T,
        exact.q_value(mdp, policy).T,
        mdp.gamma,
        k_,
        mdp.n_actions - 1 - k_,
    )


def softmax_rtol(example) -> float:
    mdp, policy, k_ = example
    gradient, bound = _central_differences(mdp, policy)
    return bound / float(np.abs(gradient[:, k_]).max())


wrong_action_score = prefactor * (p[k] * q[k] - over_actions(p[b] ** 2 * q[b]))


# ============================================================================ Monte-Carlo legs
# Whole episodes of the discounted problem (rlmath.sampling.discounted_rollouts: geometric
# stopping, no truncation), one per sample; every estimator reads only the sampled path:
# states, actions, rewards and the policy's own probabilities (for its score); no estimator of
# the true claims calls exact.occupancy or exact.q_value. Reference: central differences of
# exact.objective. Mutants are estimators of the wrong statements, on the same episodes (the
# state weightings of the stationary and undiscounted mutants are computed exactly: they are
# what those mutants get wrong).
MC_FALSE_ALARM = 1e-6  # per leg (monte_carlo_leg's default), shared by its examples
MC_EXAMPLES = 2
ALPHA = MC_FALSE_ALARM / MC_EXAMPLES  # the test each example's components share


@dataclass(frozen=True)
class EpisodeStatistics:
    r"""What the estimators need from ``n`` discounted episodes.

    Attributes:
        reinforce: ``[n, S, A]`` REINFORCE with reward-to-go and the policy's own score
            (``SoftmaxPolicy.score_row``), $\sum_{t<H} \nabla\log\pi(a_t|s_t)\, G_t$: what
            ``rlmath.estimators.reinforce_reward_to_go(..., gamma=1.0)`` computes (equal to
            rounding), over the alive steps only (the geometric stop is the discount).
        credit: ``[n, S, A]`` $\sum_{t<H} \mathbb 1[s_t = s, a_t = a]\, G_t$ with
            $G_t = \sum_{t'=t}^{H-1} r_{t'}$: any estimator $\sum_t \phi(s_t, a_t) G_t$ is
            ``credit`` contracted with $\phi$.
        first_state, first_action, first_return: ``[n]`` $s_0$, $a_0$ and $G_0$.
    """

    reinforce: np.ndarray
    credit: np.ndarray
    first_state: np.ndarray
    first_action: np.ndarray
    first_return: np.ndarray


def _statistics(example, episodes: Rollouts) -> EpisodeStatistics:
    """The sums along each episode, over its alive steps only (most of the [T, n] grid is
    padding after the geometric stop)."""
    mdp, policy = example[0], example[1]
    S, A = mdp.n_states, mdp.n_actions
    n_episodes = episodes.n_episodes
    rewards = np.where(episodes.alive, episodes.rewards, 0.0)
    to_go = np.cumsum(rewards[::-1], axis=0)[::-1]  # G_t = sum_{t' >= t} r_t', [T, n]
    steps, episode = np.nonzero(episodes.alive)
    states = episodes.states[steps, episode].astype(np.intp)
    actions = episodes.actions[steps, episode].astype(np.intp)
    credit_to_go = to_go[steps, episode]
    row = episode * S + states  # (episode, s_t)
    credit = np.bincount(
        row * A + actions, weights=credit_to_go, minlength=n_episodes * S * A
    ).reshape(n_episodes, S, A)
    # REINFORCE with the policy's own score (SoftmaxPolicy.score_row: row s_t of the gradient)
    scored = policy.score_row(states, actions) * credit_to_go[:, None]
    reinforce = np.stack(
        [np.bincount(row, weights=scored[:, b], minlength=n_episodes * S) for b in range(A)],
        axis=-1,
    ).reshape(n_episodes, S, A)
    return EpisodeStatistics(
        reinforce=reinforce,
        credit=credit,
        first_state=episodes.states[0].astype(np.intp),
        first_action=episodes.actions[0].astype(np.intp),
        first_return=to_go[0],
    )


def _fingerprint(example) -> str:
    mdp, policy = example[0], example[1]
    digest = hashlib.sha256()
    for array in (mdp.dense_transitions(), mdp.r, mdp.rho0, np.array([mdp.gamma]), policy.theta):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


# The legs run the true estimator and then each mutant on the same examples with the same
# seeds, so the same episodes: simulate them once per (seed, example) and keep MC_EXAMPLES.
_EPISODES: dict[tuple, EpisodeStatistics] = {}


def episode_statistics(example, seed: int, n_episodes: int) -> EpisodeStatistics:
    """``EpisodeStatistics`` of ``n_episodes`` discounted episodes from ``seed``."""
    key = (seed, n_episodes, _fingerprint(example))
    if key not in _EPISODES:
        while len(_EPISODES) >= MC_EXAMPLES:
            _EPISODES.pop(next(iter(_EPISODES)))
        mdp, policy = example[0], example[1]
        episodes = discounted_rollouts(mdp, policy, n_episodes=n_episodes, seed=seed)
        _EPISODES[key] = _statistics(example, episodes)
    return _EPISODES[key]


def sampler(terms: Callable[[object, EpisodeStatistics], np.ndarray]):
    """``(example, rng, n) -> terms(example, statistics of n episodes)`` for monte_carlo_leg."""

    def sample(example, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        return terms(example, episode_statistics(example, int(rng.integers(2**63)), n_samples))

    return sample


def _row_weights(rows: np.ndarray) -> np.ndarray:
    r"""``[S, A, S, A]`` weights $\phi_{(s,k)}(x, a) = \mathbb 1[x = s]\,\text{rows}[s, k, a]$."""
    S, A, _ = rows.shape
    out = np.zeros((S, A, S, A))
    for s in range(S):
        out[s, :, s, :] = rows[s]
    return out


# Row weights rows[s, k, a] of the softmax estimators sum_t phi(s_t, a_t) G_t: the closed-form
# score of derivation softmax-score (1[a = k] - pi(k|s)) and the wrong scores of the mutants.
def score_rows(pi_: np.ndarray) -> np.ndarray:
    """1[a = k] - pi(k|s): the softmax score."""
    return np.eye(pi_.shape[1])[None, :, :] - pi_[:, :, None]


def policy_free_rows(pi_: np.ndarray) -> np.ndarray:
    """1[a = k] / pi(k|s) - 1: mean A(s, k) whatever pi(k|s) (the pi factor dropped)."""
    return np.eye(pi_.shape[1])[None, :, :] / pi_[:, :, None] - 1.0


def wrong_action_rows(pi_: np.ndarray) -> np.ndarray:
    """1[a = k] - pi(a|s): the sampled action's probability in place of pi(k|s)."""
    return np.eye(pi_.shape[1])[None, :, :] - pi_[:, None, :]


def indicator_rows(pi_: np.ndarray) -> np.ndarray:
    """1[a = k]: the -pi(k|s) of the score (the baseline V) forgotten."""
    return np.broadcast_to(np.eye(pi_.shape[1]), (pi_.shape[0], *np.eye(pi_.shape[1]).shape)).copy()


def _credited(rows_of):
    def terms(example, stats: EpisodeStatistics) -> np.ndarray:
        rows = rows_of(example[1].probabilities())
        return np.einsum("nsa,ska->nsk", stats.credit, rows)

    return terms


def _scaled(terms, factor_of):
    return lambda example, stats: factor_of(example[0]) * terms(example, stats)


def _keep_normaliser(mdp) -> float:
    return 1.0


def _drop_normaliser(mdp) -> float:
    return 1.0 - mdp.gamma  # estimates (1 - gamma) grad J: "grad J = E_d[score Q]"


def _first_step(weights_of):
    r"""$\frac{w(s_0)}{\rho_0(s_0)}\,\nabla\log\pi(a_0|s_0)\, G_0 / (1-\gamma)$: the mean is the
    theorem with states weighted by $w$ instead of $d$ ($w = \rho_0$: the first step alone)."""

    def terms(example, stats: EpisodeStatistics) -> np.ndarray:
        mdp, policy = example
        ratio = weights_of(example) / mdp.rho0
        scale = ratio[stats.first_state] * stats.first_return / (1.0 - mdp.gamma)
        return policy.score(stats.first_state, stats.first_action) * scale[:, None, None]

    return terms


def _initial(example) -> np.ndarray:
    return example[0].rho0


theorem_terms = lambda example, stats: stats.reinforce  # noqa: E731
softmax_terms = _credited(score_rows)

# ----------------------------------------------------------------------------- power
# Each mutant's mean and the per-sample sd are exact (rlmath.testing: linear systems for the
# moments of sums along geometric episodes). An example is kept only if the reference's error
# (the central-difference bound) is below 1/100 of every standard error, so it moves no z by
# more than 0.01 (and no standard error is 0), and every mutant is rejected with power
# >= 0.99 (rlmath.claims.detectable, Bonferroni over the S A components at ALPHA).
#
# Policy-gradient theorem, 200000 episodes per example (gamma in [0.3, 0.8], every probability
# >= 0.05, logits in [-1.5, 1.5]; about 0.2 s to simulate): over 131 examples of that domain
# with non-constant rewards the share with power >= 0.99 is 1.00 (missing normaliser), 0.95
# (rho_0), 0.87 (stationary distribution) and 0.50 (undiscounted visitation, whose weights
# differ from d only through Pr(s_t = s) beyond the effective horizon, which these chains soon
# forget); the filter keeps about half of the examples. Softmax closed form, 100000 episodes:
# 1.00 for every mutant but the wrong action's score (0.92: a uniform row makes it true).
N_THEOREM = 200_000
N_SOFTMAX = 100_000


def _score_weights(policy: SoftmaxPolicy) -> np.ndarray:
    return _row_weights(score_rows(policy.probabilities()))


def _first_step_moments(example, weights_of) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and sd of the ``_first_step(weights_of)`` terms, ``[S, A]`` each."""
    mdp, policy = example
    pi_ = policy.probabilities()
    Q_, second = discounted_return_moments(mdp, policy)  # E[G_0 | s, a], E[G_0^2 | s, a]
    phi = _score_weights(policy)
    ratio = weights_of(example) / mdp.rho0
    start = mdp.rho0 * ratio / (1.0 - mdp.gamma)
    start_squared = mdp.rho0 * ratio**2 / (1.0 - mdp.gamma) ** 2
    mean = np.einsum("x,cdxa,xa,xa->cd", start, phi, pi_, Q_)
    moment = np.einsum("x,cdxa,xa,xa->cd", start_squared, phi**2, pi_, second)
    return mean, np.sqrt(np.maximum(moment - mean**2, 0.0))


def _reward_to_go_moments(rows_of, factor_of=_keep_normaliser):
    def moments(example) -> tuple[np.ndarray, np.ndarray]:
        mdp, policy = example
        weights = _row_weights(rows_of(policy.probabilities()))
        mean, sd = discounted_reward_to_go_moments(mdp, policy, weights)
        factor = factor_of(mdp)
        return factor * mean, factor * sd

    return moments


def _detectable(true_moments, mutant_moments, n_samples: int):
    def keep(example) -> bool:
        _, sd = true_moments(example)
        if not (sd / math.sqrt(n_samples) > 100.0 * finite_difference_bound(example)).all():
            return False
        gradient = finite_difference_gradient(example)
        for moments in mutant_moments:
            mean, mutant_sd = moments(example)
            if not detectable(mean - gradient, mutant_sd, n_samples, false_alarm=ALPHA):
                return False
        return True

    return keep


mc_examples = mdps_and_policies(
    tabular_mdps(
        min_states=2,
        max_states=4,
        min_actions=2,
        max_actions=3,
        gamma=st.floats(0.3, 0.8),
        allow_zeros=False,
        min_probability=0.05,
    ),
    max_abs_logit=1.5,
)
theorem_moments = _reward_to_go_moments(score_rows)
theorem_mc_examples = mc_examples.filter(
    _detectable(
        theorem_moments,
        (
            functools.partial(_first_step_moments, weights_of=_initial),
            _reward_to_go_moments(score_rows, _drop_normaliser),
            functools.partial(_first_step_moments, weights_of=stationary_distribution),
            functools.partial(_first_step_moments, weights_of=undiscounted_visitation),
        ),
        N_THEOREM,
    )
)
softmax_mc_examples = mc_examples.filter(
    _detectable(
        theorem_moments,
        (
            _reward_to_go_moments(policy_free_rows),
            _reward_to_go_moments(wrong_action_rows),
            _reward_to_go_moments(score_rows, _drop_normaliser),
            _reward_to_go_moments(indicator_rows),
        ),
        N_SOFTMAX,
    )
)


CLAIMS = (
    Claim(
        id="policy-gradient-theorem",
        title="The policy-gradient theorem (discounted, normalised occupancy)",
        statement=Statement(
            matrix_form.start,
            matrix_form.conclusion,
            derivation="matrix-form",
            where=(
                r"J(\theta) = \rho_0^\top V^\pi,\ V^\pi = (I - \gamma\Pi P)^{-1}\Pi r;\ "
                r"d_\rho^{\pi\top} = (1-\gamma)\rho_0^\top(I - \gamma\Pi P)^{-1},\ "
                r"Q^\pi = r + \gamma P V^\pi;\ \text{row } s \text{ of } "
                r"(\partial_\theta\Pi) Q^\pi = \mathbb E_{a\sim\pi}[\partial_\theta\log\pi(a|s)"
                r"\,Q^\pi(s,a)]"
            ),
            symbol_names={rho: r"\rho_0^\top"},
        ),
        assumptions=(
            "Finite states and actions, infinite horizon, 0 <= gamma < 1.",
            "The matrix derivation uses non-commuting symbols with only ring algebra and "
            "d(M^{-1}) = -M^{-1} dM M^{-1}: it holds for every number of states and actions.",
            "pi(a|s) > 0 where the score is taken (softmax policies), and pi is differentiable.",
            "d is the normalised discounted occupancy (1 - gamma) sum_t gamma^t Pr(s_t = s).",
        ),
        references=(
            "Sutton, R. S., McAllester, D., Singh, S., Mansour, Y., *Policy Gradient Methods for "
            "Reinforcement Learning with Function Approximation*, NeurIPS 2000, Theorem 1.",
            "Agarwal, A., Kakade, S. M., Lee, J. D., Mahajan, G., *On the Theory of Policy "
            "Gradient Methods*, JMLR 22, 2021 (the normalised-occupancy form).",
        ),
        summary=(
            "The gradient of the discounted return is the score times Q, averaged over the "
            "normalised discounted occupancy, times 1/(1 - gamma)."
        ),
        symbolic=SymbolicLeg((matrix_form, log_derivative)),
        exact=ExactLeg(
            examples,
            lhs=theorem_lhs,
            rhs=theorem_rhs,
            rhs_reason=(
                "the derivation is non-commutative (matrices of any size), which sympy cannot "
                "lambdify as it stands: the rhs IS the conclusion lambdified through "
                "MatrixSymbols (each non-commuting symbol an S x A-sized MatrixSymbol, the "
                "non-commutative 1 the identity, d and Q by name with the values of "
                "exact.occupancy and exact.q_value), evaluated at dPi/dtheta_{s,a} for every "
                "logit; a second row evaluates it with exact.advantage in place of Q (a state "
                "baseline, which must change nothing); a third row is "
                "rlmath.exact.policy_gradient (d pi A / (1 - gamma) from its own solve and "
                "adjoint solve), against the same finite differences"
            ),
            rtol=finite_difference_rtol,
            max_examples=30,
            description=(
                "central differences of exact.objective in every logit (error bound from "
                "rlmath.tolerances) vs the conclusion (1/(1-gamma)) d^T (dPi) Q lambdified "
                "through MatrixSymbols with d = exact.occupancy, Q = exact.q_value, and again "
                "with A = exact.advantage in place of Q, and rlmath.exact.policy_gradient"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            theorem_mc_examples,
            sampler(theorem_terms),
            finite_difference_gradient,
            n_samples=N_THEOREM,
            n_examples=MC_EXAMPLES,
            false_alarm=MC_FALSE_ALARM,
            description=(
                "REINFORCE with reward-to-go, sum_{t<H} score(s_t, a_t) sum_{t'=t}^{H-1} r_t' "
                "(SoftmaxPolicy.score_row; = rlmath.estimators.reinforce_reward_to_go with "
                "gamma = 1), over whole episodes of "
                "rlmath.sampling.discounted_rollouts (H ~ Geometric(1 - gamma): the discount and "
                "the occupancy come from the sampled path alone) vs central differences of "
                "exact.objective"
            ),
        ),
        mutants=(
            Mutant(
                "initial-distribution-weighting",
                "states weighted by rho_0 instead of the discounted occupancy (MC: the first "
                "step of each episode alone, score(s_0, a_0) G_0 / (1 - gamma))",
                symbolic=SymbolicMutation("matrix-form", initial_weighting),
                exact=lambda ex: theorem_rhs(ex, initial_weighting),
                monte_carlo=sampler(_first_step(_initial)),
            ),
            Mutant(
                "missing-normaliser",
                "the 1/(1 - gamma) in front of the normalised occupancy dropped (MC: (1 - gamma) "
                "times REINFORCE)",
                symbolic=SymbolicMutation("matrix-form", unnormalised),
                exact=lambda ex: theorem_rhs(ex, unnormalised),
                monte_carlo=sampler(_scaled(theorem_terms, _drop_normaliser)),
            ),
            Mutant(
                "stationary-distribution",
                "states weighted by a stationary distribution mu of P_pi (the average-reward "
                "weighting) instead of the discounted occupancy (MC: the first step, "
                "importance-weighted by mu(s_0) / rho_0(s_0))",
                exact=_weighted(stationary_distribution),
                monte_carlo=sampler(_first_step(stationary_distribution)),
            ),
            Mutant(
                "undiscounted-occupancy",
                "states weighted by the undiscounted visitation nu = (1/H) sum_{t<H} Pr(s_t = s) "
                "over the effective horizon H = ceil(1/(1-gamma)): the gamma^t state weights "
                "dropped (MC: the first step, importance-weighted by nu(s_0) / rho_0(s_0))",
                exact=_weighted(undiscounted_visitation),
                monte_carlo=sampler(_first_step(undiscounted_visitation)),
            ),
        ),
        notes=(
            "Replacing Q by A = Q - V is *not* a mutant: sum_a d pi(a|s) = 0, so a state "
            "baseline leaves the gradient unchanged. The exact leg checks this: its rhs stacks "
            "the conclusion with Q and with A, and both must match the finite differences. "
            "The exact leg's lhs is independent of the theorem: central differences of "
            "`exact.objective` with step and error bound from `rlmath.tolerances` "
            "(truncation M3 h^2/6 plus rounding delta/h). The Monte-Carlo leg never calls "
            "`exact.occupancy` or `exact.q_value`: the occupancy and Q come from sampled "
            "discounted episodes (geometric stopping), so an error in either exact routine "
            "cannot hide there (the exact leg, which uses them, would fail)."
        ),
    ),
    Claim(
        id="softmax-policy-gradient",
        title="Policy gradient of a tabular softmax policy",
        statement=Statement(
            softmax_gradient.start,
            softmax_gradient.conclusion,
            derivation="softmax-gradient",
            where=(
                r"\text{the left side is } \partial J/\partial\theta_{s,k} \text{ by the "
                r"policy-gradient theorem};\ "
                r"\text{the softmax score is } \mathbb 1[b=k] - \pi_k;\ "
                r"d_s = d_\rho^\pi(s),\ \pi_b = \pi(b|s),\ Q_b = Q^\pi(s,b),\ "
                r"n = k + m + 1 \text{ actions}"
            ),
            symbol_names={p: r"\pi", d_s: "d_s"},
        ),
        assumptions=(
            "Tabular softmax policy, one logit per (s, a); any number n of actions (general n "
            "in the derivations, written n = k + 1 + m, m >= 0, for the differentiated action k).",
            "Finite MDP, infinite horizon, 0 <= gamma < 1; d normalised discounted occupancy.",
            "Starts from the policy-gradient theorem (claim policy-gradient-theorem).",
        ),
        references=(
            "Agarwal, A., Kakade, S. M., Lee, J. D., Mahajan, G., *On the Theory of Policy "
            "Gradient Methods*, JMLR 22, 2021, Lemma C.1.",
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed., "
            "2018, eq. (13.2) and Exercise 13.3.",
        ),
        summary=(
            "For softmax logits, dJ/dtheta_{s,a} = d(s) pi(a|s) A(s,a) / (1 - gamma): the "
            "advantage, not Q, and weighted by the action's own probability."
        ),
        symbolic=SymbolicLeg((softmax_score, softmax_gradient)),
        exact=ExactLeg(
            softmax_examples,
            lhs=softmax_lhs,
            symbols=(d_s, p, q, gamma, k, m),
            arguments=softmax_arguments,
            rtol=softmax_rtol,
            max_examples=30,
            description=(
                "central differences of exact.objective in theta_{s,k} for every state (one "
                "action k per example) vs the lambdified conclusion d(s) pi(k|s) (Q(s,k) - "
                "sum_b pi(b|s) Q(s,b)) / (1 - gamma) with exact.occupancy and exact.q_value"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            softmax_mc_examples,
            sampler(softmax_terms),
            finite_difference_gradient,
            n_samples=N_SOFTMAX,
            n_examples=MC_EXAMPLES,
            false_alarm=MC_FALSE_ALARM,
            description=(
                "sum_{t<H} (1[a_t = k] - pi(k|s_t)) G_t in entry (s_t, k) (the closed-form "
                "softmax score of derivation softmax-score, reward-to-go G_t) over whole "
                "episodes of rlmath.sampling.discounted_rollouts vs central differences of "
                "exact.objective"
            ),
        ),
        mutants=(
            Mutant(
                "missing-policy-factor",
                "d(s) A(s,a) / (1 - gamma): the pi(a|s) from the softmax score dropped (MC: "
                "weights 1[a_t = k] / pi(k|s_t) - 1)",
                symbolic=SymbolicMutation("softmax-gradient", prefactor * (q[k] - value_s)),
                monte_carlo=sampler(_credited(policy_free_rows)),
            ),
            Mutant(
                "score-of-wrong-action",
                "score 1[b = k] - pi(b|s) instead of 1[b = k] - pi(k|s)",
                symbolic=SymbolicMutation("softmax-gradient", wrong_action_score),
                monte_carlo=sampler(_credited(wrong_action_rows)),
            ),
            Mutant(
                "missing-normaliser",
                "d(s) pi(a|s) A(s,a): the 1/(1 - gamma) dropped",
                symbolic=SymbolicMutation("softmax-gradient", d_s * p[k] * (q[k] - value_s)),
                monte_carlo=sampler(_scaled(softmax_terms, _drop_normaliser)),
            ),
            Mutant(
                "action-value-instead-of-advantage",
                "d(s) pi(a|s) Q(s,a) / (1 - gamma): the -pi(a|s) part of the score (which makes "
                "the baseline V) forgotten (MC: weights 1[a_t = k])",
                symbolic=SymbolicMutation("softmax-gradient", prefactor * p[k] * q[k]),
                monte_carlo=sampler(_credited(indicator_rows)),
            ),
        ),
        notes=(
            "Here Q in place of A *is* a mutant: entrywise, d pi Q differs from d pi A by "
            "d(s) pi(a|s) V(s). In the expectation form of the theorem the two agree. The "
            "exact leg's rhs is the lambdified conclusion (mutants' exact variants are their "
            "lambdified wrong conclusions); the Monte-Carlo leg estimates each version from "
            "sampled discounted episodes with the corresponding score weights."
        ),
    ),
)
