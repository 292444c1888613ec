r"""PPO with a KL penalty: at the old policy, the penalty does not change the gradient.

Main statement. For a tabular softmax policy with logits $\theta$, the old policy $\theta'$,
its normalised discounted occupancy $d' = d^{\theta'}$ and advantage $A' = A^{\theta'}$, the
surrogate

$$ J^{\theta'}(\theta) = \mathbb E_{s \sim d',\, a \sim \pi_{\theta'}}\!\left[
   \frac{\pi_\theta(a|s)}{\pi_{\theta'}(a|s)} A'(s, a)\right], \qquad
   J_{\mathrm{PPO}}(\theta) = J^{\theta'}(\theta) - \beta\, \mathbb E_{s\sim d'}\,
   \mathrm{KL}\big(\pi_{\theta'}(\cdot|s) \,\|\, \pi_\theta(\cdot|s)\big) $$

has, for every $\beta$,

$$ \frac{\partial J_{\mathrm{PPO}}}{\partial \theta_{s,a}}\Big|_{\theta = \theta'}
   = \frac{\partial J^{\theta'}}{\partial \theta_{s,a}}\Big|_{\theta = \theta'}
   = d'(s)\, \pi_{\theta'}(a|s)\, A'(s, a)
   = (1 - \gamma)\, \frac{\partial J}{\partial \theta_{s,a}}\Big|_{\theta = \theta'}. $$

The same holds with the penalty's KL in the other direction,
$\mathrm{KL}(\pi_\theta(\cdot|s) \,\|\, \pi_{\theta'}(\cdot|s))$.

Conventions. $d'$ is *normalised* ($\sum_s d'(s) = 1$, ``rlmath.exact.occupancy``), so the
policy gradient theorem reads $\nabla J = \mathbb E_{s\sim d, a\sim\pi}[\nabla\log\pi\, A] /
(1 - \gamma)$ and the surrogate's gradient is $(1-\gamma)\nabla J$. The states are sampled from
the old policy's occupancy; the penalty's KL is $\mathrm{KL}(\pi_{\theta'} \,\|\, \pi_\theta)$,
old policy first (the expectation is under the sampling policy).

Proof sketch. Along a direction $\delta$, $\frac{d}{dh}\pi_{\theta'+h\delta}(a|s)|_{h=0} =
\pi'(a|s)(\delta_{s,a} - \mathbb E_{\pi'}\delta_s)$; the ratio's derivative at $h = 0$ is the
score, and $\mathbb E_{\pi'}[A'] = 0$ removes the baseline term. The penalty's derivative is
$d'(s) (\pi_\theta - \pi')\cdot\delta_s$, zero at $\theta = \theta'$ (claim
``kl-gradient-vanishes-at-reference``). Each state's row of $\theta$ enters only its own term,
so the derivation is per state (the sum over states is linear).

References. Schulman, J. et al., "Proximal Policy Optimization Algorithms", 2017, eq. (8)
(adaptive KL penalty). Kakade, S. and Langford, J., "Approximately Optimal Approximate
Reinforcement Learning", ICML 2002 (the surrogate's gradient at the old policy). Schulman, J.
et al., "Trust Region Policy Optimization", ICML 2015, eq. (3)-(4).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import TabularMDP, estimators, exact
from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    lazy_lambdify,
    monte_carlo_leg,
)
from rlmath.named_functions import Named
from rlmath.policy import SoftmaxPolicy
from rlmath.sampling import Rollouts, rollouts
from rlmath.statistics import DEFAULT_FALSE_ALARM, sample_size
from rlmath.symbolic import IndexSum
from rlmath.testing import logits, mdps_and_policies, tabular_mdps
from rlmath.tolerances import discounted_condition_number, exact_rtol

# ----------------------------------------------------------------------------- symbols
# n + 1 >= 2 actions: with a single action every gradient here is 0 and the claim is trivial,
# and random-point refutation (sizes drawn from 1..3) would meet that degenerate case in about
# one seed in 27 for every mutant (all of them vanish with one action).
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
j = sp.Symbol("j", integer=True)
k_ = sp.Symbol("k", integer=True)  # the softmax normaliser's index
h = sp.Symbol("h", real=True)  # step along delta
beta = sp.Symbol("beta", nonnegative=True)
d_s = sp.Symbol("d_s", nonnegative=True)  # d^theta'(s), the old policy's occupancy of s
theta_ref = sp.IndexedBase("theta_ref", real=True)  # row s of the old logits theta'
delta = sp.IndexedBase("delta", real=True)  # row s of the direction
Q = sp.IndexedBase("Q", real=True)  # Q^theta'(s, .)


def total(expression: sp.Expr, index: sp.Symbol = i) -> sp.Sum:
    """$\\sum_{index=0}^{n}$ expression: over the n + 1 actions."""
    return IndexSum(expression, (index, 0, n))


def softmax(logit, k: sp.Symbol) -> sp.Expr:  # type: ignore[no-untyped-def]
    return sp.exp(logit(k)) / total(sp.exp(logit(k_)), k_)


def pi_ref(k: sp.Symbol) -> sp.Expr:
    r"""$\pi_{\theta'}(k|s)$, shown by name as $\pi'_k$ (the page lists its definition)."""
    return Named(rf"\pi'_{{{sp.latex(k)}}}", softmax(lambda m: theta_ref[m], k))


def pi_stepped(k: sp.Symbol) -> sp.Expr:
    r"""$\pi_{\theta' + h\delta}(k|s)$, shown by name as $\pi^{h}_k$.

    Written out, every probability is a two-storey quotient of exponentials, and a step with a
    few of them is wider than the page; the name keeps each step to one line, and the prover
    still sees the quotient (``Named.doit``).
    """
    return Named(rf"\pi^{{h}}_{{{sp.latex(k)}}}", softmax(lambda m: theta_ref[m] + h * delta[m], k))


def advantage(k: sp.Symbol) -> sp.Expr:
    r"""$A'(s, k) = Q'(s, k) - V'(s)$ with $V'(s) = \sum_j \pi'(j|s) Q'(s, j)$."""
    return Q[k] - total(pi_ref(j) * Q[j], j)


def at_zero(expression: sp.Expr) -> sp.Subs:
    r"""$\frac{d}{dh}$ expression at $h = 0$: the directional derivative along $\delta$."""
    return sp.Subs(sp.Derivative(expression, h), h, 0)


mean_delta = total(pi_ref(j) * delta[j], j)
# pi'(i) (pi_theta(i) / pi'(i)) A'(i), kept unevaluated: the importance weight's cancellation
# against the sampling probability is part of the first step, not done when it is built.
surrogate_s = d_s * total(
    sp.Mul(
        pi_ref(i),
        sp.Mul(pi_stepped(i), sp.Pow(pi_ref(i), -1, evaluate=False), evaluate=False),
        advantage(i),
        evaluate=False,
    )
)
penalty_s = d_s * total(pi_ref(i) * sp.log(pi_ref(i) / pi_stepped(i)))
penalty_reverse_s = d_s * total(pi_stepped(i) * sp.log(pi_stepped(i) / pi_ref(i)))

# ----------------------------------------------------------------------------- derivations
surrogate_gradient = Derivation(
    "surrogate-gradient",
    (
        Step(
            at_zero(surrogate_s),
            "state s's term of J^theta'(theta' + h delta), differentiated along delta at h = 0",
        ),
        Step(
            d_s * total(pi_ref(i) * (delta[i] - mean_delta) * advantage(i)),
            "d/dh pi_{theta'+h delta}(i|s) = pi'(i|s) (delta_i - E_pi'[delta]) at h = 0",
        ),
        Step(
            d_s * total(pi_ref(i) * advantage(i) * delta[i])
            - d_s * mean_delta * total(pi_ref(i) * advantage(i)),
            "expand; E_pi'[delta] is a constant of the sum",
        ),
        Step(
            d_s * total(pi_ref(i) * advantage(i) * delta[i]),
            "E_{a~pi'}[A'(s, a)] = V'(s) - V'(s) = 0",
        ),
    ),
    statement=r"\partial_{\theta_{s,a}} J^{\theta'}|_{\theta'} = d'(s)\,\pi'(a|s)\,A'(s,a)",
)

penalty_gradient = Derivation(
    "penalty-gradient",
    (
        Step(at_zero(penalty_s), "state s's KL(pi' || pi_theta) term, along delta at h = 0"),
        Step(
            d_s * (total(delta[i] * sp.exp(theta_ref[i])) / total(sp.exp(theta_ref[i])))
            - d_s * mean_delta,
            "log pi_theta(i) = theta_i - log Z(theta): d/dh gives E_pi'[delta] from log Z, "
            "minus E_pi'[delta] from the linear term",
        ),
        Step(sp.Integer(0), "e^(theta'_i) / Z(theta') = pi'_i: the two cancel"),
    ),
    statement=r"\nabla_\theta\, \mathbb E_{s\sim d'}\mathrm{KL}(\pi'\,\|\,\pi_\theta)|_{\theta'} = 0",
)

penalty_reverse_gradient = Derivation(
    "penalty-reverse-gradient",
    (
        Step(at_zero(penalty_reverse_s), "state s's KL(pi_theta || pi') term, along delta"),
        Step(
            d_s * total(pi_ref(i) * (delta[i] - mean_delta) * (sp.log(pi_ref(i) / pi_ref(i)) + 1)),
            "product rule at h = 0: d pi_i/dh = pi'_i (delta_i - E_pi' delta), d log pi_i/dh = "
            "delta_i - E_pi' delta",
        ),
        Step(sp.Integer(0), "log(pi'/pi') = 0 and E_pi'[delta - E_pi' delta] = 0"),
    ),
    statement=r"\nabla_\theta\, \mathbb E_{s\sim d'}\mathrm{KL}(\pi_\theta\,\|\,\pi')|_{\theta'} = 0",
)

ppo_gradient = Derivation(
    "ppo-gradient",
    (
        Step(
            at_zero(surrogate_s - beta * penalty_s),
            "state s's term of J_PPO(theta' + h delta), along delta at h = 0",
        ),
        Step(
            at_zero(surrogate_s) - beta * at_zero(penalty_s),
            "linearity of the derivative",
        ),
        Step(
            surrogate_gradient.conclusion,
            "'surrogate-gradient' and 'penalty-gradient' (the penalty's term is beta * 0): the "
            "penalty drops out for every beta",
        ),
    ),
    statement=(
        r"\partial_{\theta_{s,a}} J_{\mathrm{PPO}}|_{\theta'} = d'(s)\,\pi'(a|s)\,A'(s,a)"
        r" = (1-\gamma)\,\partial_{\theta_{s,a}} J|_{\theta'}"
    ),
)


# ----------------------------------------------------------------------------- exact leg
@st.composite
def _examples(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    mdp, policy = draw(mdps_and_policies(tabular_mdps(max_states=4, min_actions=2, max_actions=3)))
    return mdp, policy, draw(st.floats(0.0, 100.0))


examples = _examples()
COMPLEX_STEP = 1e-30


def _complex_log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.real.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _complex_step_gradient(function, theta: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    r"""$\partial f / \partial\theta_{s,a} = \mathrm{Im} f(\theta + i h e_{s,a}) / h$ for every entry.

    Complex-step differentiation (Squire and Trapp, SIAM Review 40, 1998): no subtraction,
    so at $h = 10^{-30}$ it is exact to rounding for any $f$ analytic in $\theta$.
    """
    grad = np.zeros(theta.shape)
    for index in np.ndindex(theta.shape):
        bump = np.zeros(theta.shape, dtype=complex)
        bump[index] = 1j * COMPLEX_STEP
        grad[index] = function(theta + bump).imag / COMPLEX_STEP
    return grad


def objective_complex(mdp, logits: np.ndarray) -> complex:  # type: ignore[no-untyped-def]
    r"""$J = \rho_0^\top (I - \gamma P_\pi)^{-1} r_\pi$ by a dense complex solve (no rlmath.exact)."""
    pi = np.exp(_complex_log_softmax(logits))
    P = mdp.dense_transitions()
    P_pi = np.einsum("sa,sat->st", pi, P)
    r_pi = (pi * mdp.r).sum(axis=1)
    return complex(mdp.rho0 @ np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P_pi, r_pi))


def ppo_objective_complex(example, logits: np.ndarray, reverse: bool = False) -> complex:  # type: ignore[no-untyped-def]
    r"""$J^{\theta'}(\theta) - \beta\, \mathbb E_{d'} \mathrm{KL}$ straight from its definition."""
    mdp, policy, beta_value = example
    occupancy = exact.occupancy(mdp, policy)
    adv = exact.advantage(mdp, policy)
    log_old, log_new = policy.log_probabilities(), _complex_log_softmax(logits)
    old, new = np.exp(log_old), np.exp(log_new)
    surrogate = occupancy @ (old * (new / old) * adv).sum(axis=1)
    if reverse:
        kl = (new * (log_new - log_old)).sum(axis=1)
    else:
        kl = (old * (log_old - log_new)).sum(axis=1)
    return complex(surrogate - beta_value * (occupancy @ kl))


def gradients_by_complex_step(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    """[grad J_PPO (KL(pi'||pi)), grad J_PPO (KL(pi||pi')), (1 - gamma) grad J], at theta'."""
    mdp, policy, _ = example
    theta = policy.theta.astype(complex)
    return np.array(
        [
            _complex_step_gradient(lambda z: ppo_objective_complex(example, z), theta),
            _complex_step_gradient(lambda z: ppo_objective_complex(example, z, True), theta),
            (1 - mdp.gamma) * _complex_step_gradient(lambda z: objective_complex(mdp, z), theta),
        ]
    )


STATE_SYMBOLS = (d_s, theta_ref, Q, delta, n)


def _state_arguments(example):  # type: ignore[no-untyped-def]
    r"""Values of (d_s, theta', Q', delta, n) for every block, state s and action a at once.

    The lambdified conclusion is evaluated entrywise over trailing axes: ``theta_ref[i]`` is
    the array of $\theta'_{s,i}$ over all (block, s, a), ``delta[i] = 1[i = a]`` (the
    direction $e_{s,a}$), so the result is the ``[3, S, A]`` array of
    $d'(s) \sum_i \pi'_i A'_i \delta_i = d'(s) \pi'(a|s) A'(s, a)$, the same in each of the
    three blocks the left-hand side computes.
    """
    mdp, policy, _ = example
    occupancy, q = exact.occupancy(mdp, policy), exact.q_value(mdp, policy)
    S, A = mdp.n_states, mdp.n_actions
    shape = (3, S, A)
    weights = np.broadcast_to(occupancy[None, :, None], shape)
    logits_ = np.broadcast_to(policy.theta.T[:, None, :, None], (A, *shape))
    values = np.broadcast_to(q.T[:, None, :, None], (A, *shape))
    unit = np.broadcast_to(np.eye(A)[:, None, None, :], (A, *shape))
    return weights, logits_, values, unit, A - 1  # n + 1 = A actions


_state_gradient = lazy_lambdify(STATE_SYMBOLS, ppo_gradient.conclusion)


def derived_gradient(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    r"""The lambdified $d'(s) \pi'(a|s) A'(s, a)$, ``[S, A]`` (for the mutants' variants)."""
    return np.asarray(_state_gradient(*_state_arguments(example)))[0]


def _error_scale(example) -> float:  # type: ignore[no-untyped-def]
    # A' = Q - V cancels terms of size max|Q|, and the penalty's gradient cancels beta-sized
    # terms down to 0: the attainable accuracy is relative to those terms.
    mdp, policy, beta_value = example
    return float(np.abs(exact.q_value(mdp, policy)).max()) + beta_value + 1.0


def _rtol(example) -> float:  # type: ignore[no-untyped-def]
    mdp, _, _ = example  # solves conditioned by (1 + gamma) / (1 - gamma)
    return exact_rtol(discounted_condition_number(mdp.gamma), mdp.n_states * mdp.n_actions)


def _without_one_minus_gamma(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    mdp, policy, _ = example  # grad J_PPO = grad J: the surrogate's (1 - gamma) forgotten
    return np.array([exact.policy_gradient(mdp, policy)] * 3)


def _entropy_penalty(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    mdp, policy, beta_value = example  # penalty sum pi log pi (log pi' dropped): slope != 0
    pi, log_pi = policy.probabilities(), policy.log_probabilities()
    occupancy = exact.occupancy(mdp, policy)
    centred = log_pi - (pi * log_pi).sum(axis=1, keepdims=True)
    wrong = derived_gradient(example) - beta_value * occupancy[:, None] * pi * centred
    return np.array([wrong, wrong, derived_gradient(example)])


# ----------------------------------------------------------------------------- Monte-Carlo leg
# Trajectories of the old policy theta' in the H-step MDP (rlmath.sampling.rollouts); at
# theta = theta' the per-episode gradient of J_PPO, normalised like the claim's occupancy, is
#
#   g = (1/W) sum_t gamma^t (A'_t(s_t, a_t) score_t - beta k_t),  W = sum_{t<H} gamma^t,
#
# with the surrogate's terms from rlmath.estimators.surrogate_gradient (ratio 1 at theta'), the
# exact finite-horizon advantages A'_t = Q_t - V_t of theta' (rlmath.exact.finite_horizon_values),
# and the penalty's per-sample gradient k_t: for KL(pi' || pi_theta) = E_{a~pi'}[log pi' - log
# pi_theta], -score_t; for KL(pi_theta || pi') = E_{a~pi'}[rho log rho], rho = pi_theta/pi',
# rho (log rho + 1) score_t. The normalised finite-horizon occupancy is sum_t gamma^t Pr(s_t = s)
# / W (rlmath.exact.occupancy), so the claim reads E[g] = grad J_H(theta') / W, the H-step
# counterpart of (1 - gamma) grad J (1/W -> 1 - gamma as H -> oo); the reference is
# rlmath.exact.policy_gradient of the H-step MDP divided by W.
#
# The filter keeps examples in which every component of g varies (sd >= MIN_SD: every state is
# visited, so none is compared exactly) and each mutant's variant shifts some component by at
# least MIN_EFFECT of its per-sample sd; means and sds are exact, over every trajectory
# (rlmath.exact.trajectories, H <= 4, at most 6561 of them).
MC_EXAMPLES = 2
MIN_EFFECT = 0.05
MIN_SD = 1e-3


def _finite_horizon(example):  # type: ignore[no-untyped-def]
    mdp, policy, beta_value, horizon = example
    return TabularMDP(mdp.P, mdp.r, mdp.rho0, mdp.gamma, horizon=horizon)


def _as_rollouts(paths, policy: SoftmaxPolicy) -> Rollouts:  # type: ignore[no-untyped-def]
    """Every enumerated trajectory as a Rollouts batch (time-major), for exact moments."""
    states, actions = paths.states.T.copy(), paths.actions.T.copy()
    T, N = states.shape
    truncated = np.zeros((T, N), dtype=bool)
    truncated[-1] = True
    return Rollouts(
        states=states,
        actions=actions,
        rewards=np.zeros((T, N)),
        log_probs=policy.log_probabilities()[states, actions],
        terminated=np.zeros((T, N), dtype=bool),
        truncated=truncated,
        alive=np.ones((T, N), dtype=bool),
        final_states=states[-1],
        seed_entropy=None,
        block_size=1,
    )


PenaltyWeights = Callable[[Rollouts, SoftmaxPolicy], np.ndarray]


def _forward_penalty_weights(episodes: Rollouts, policy: SoftmaxPolicy) -> np.ndarray:
    """KL(pi' || pi_theta): the per-step gradient of -log pi_theta(a_t|s_t) is -score_t."""
    return -np.ones(episodes.states.shape)


def _reverse_penalty_weights(episodes: Rollouts, policy: SoftmaxPolicy) -> np.ndarray:
    """KL(pi_theta || pi') = E_{pi'}[rho log rho]: rho (log rho + 1) times score_t."""
    log_rho = policy.log_probabilities()[episodes.states, episodes.actions] - episodes.log_probs
    return np.exp(log_rho) * (log_rho + 1.0)  # type: ignore[no-any-return]


def _entropy_penalty_weights(episodes: Rollouts, policy: SoftmaxPolicy) -> np.ndarray:
    """Mutant: a penalty E_{pi_theta}[log pi_theta] = E_{pi'}[rho log pi_theta] (log pi' dropped)."""
    log_pi = policy.log_probabilities()[episodes.states, episodes.actions]
    return np.exp(log_pi - episodes.log_probs) * (log_pi + 1.0)  # type: ignore[no-any-return]


def _ppo_gradient_terms(
    example: tuple[TabularMDP, SoftmaxPolicy, float, int],
    episodes: Rollouts,
    penalties: tuple[PenaltyWeights, ...] = (_forward_penalty_weights, _reverse_penalty_weights),
    normalise: bool = True,
) -> np.ndarray:
    """``[N, 2, S, A]``: per-episode gradient of J_PPO at theta' with each penalty direction."""
    mdp, policy, beta_value, horizon = example
    finite = _finite_horizon(example)
    V, Q = exact.finite_horizon_values(finite, policy)
    times = np.arange(horizon)[:, None]
    advantages = Q[times, episodes.states, episodes.actions] - V[times, episodes.states]
    discounts = mdp.gamma ** np.arange(horizon, dtype=np.float64)[:, None]
    surrogate = estimators.surrogate_gradient(episodes, policy, advantages, gamma=mdp.gamma)
    rows = [
        surrogate
        - beta_value
        * estimators.weighted_score_sum(episodes, policy, discounts * penalty(episodes, policy))
        for penalty in penalties
    ]
    scale = 1.0 / discounts.sum() if normalise else 1.0
    return scale * np.stack(rows, axis=1)


def _ppo_sampler(**variant):  # type: ignore[no-untyped-def]
    def sample(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        """theta' trajectories: per-episode J_PPO gradients, ``[count, 2, S, A]``."""
        mdp, policy, _, horizon = example
        episodes = rollouts(
            mdp, policy, n_episodes=count, horizon=horizon, seed=int(rng.integers(2**63))
        )
        return _ppo_gradient_terms(example, episodes, **variant)

    return sample


def normalised_policy_gradient(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    """grad J_H(theta') / W (rlmath.exact.policy_gradient of the H-step MDP), for both rows."""
    mdp, policy, _, horizon = example
    weight = float((mdp.gamma ** np.arange(horizon, dtype=np.float64)).sum())
    return np.array([exact.policy_gradient(_finite_horizon(example), policy) / weight] * 2)


PPO_VARIANTS = {
    "one-minus-gamma-dropped": {"normalise": False},
    "entropy-penalty": {"penalties": (_entropy_penalty_weights, _entropy_penalty_weights)},
}


def _ppo_moments(example, **variant):  # type: ignore[no-untyped-def]
    mdp, policy, _, horizon = example
    paths = exact.trajectories(mdp, policy, horizon)
    terms = _ppo_gradient_terms(example, _as_rollouts(paths, policy), **variant)
    mean = np.tensordot(paths.probabilities, terms, axes=1)
    return mean, np.sqrt(np.tensordot(paths.probabilities, (terms - mean) ** 2, axes=1))


def _ppo_separated(example) -> bool:  # type: ignore[no-untyped-def]
    reference = normalised_policy_gradient(example)
    if not np.all(_ppo_moments(example)[1] >= MIN_SD):
        return False
    for variant in PPO_VARIANTS.values():
        mean, sd = _ppo_moments(example, **variant)
        with np.errstate(divide="ignore", invalid="ignore"):
            effect = np.where(sd > 0, np.abs(mean - reference) / sd, 0.0)
        if effect.max() < MIN_EFFECT:
            return False
    return True


@st.composite
def _mc_examples(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """(mdp, theta', beta, H): 2-3 states and actions, every transition >= 0.1, H in 3..4."""
    mdp = draw(
        tabular_mdps(
            min_states=2,
            max_states=3,
            min_actions=2,
            max_actions=3,
            gamma=st.floats(0.3, 0.9),
            allow_zeros=False,
            min_probability=0.1,
        )
    )
    policy = draw(logits((mdp.n_states, mdp.n_actions), max_abs=1.5).map(SoftmaxPolicy))
    return mdp, policy, draw(st.floats(0.5, 2.0)), draw(st.integers(3, 4))


mc_examples = _mc_examples().filter(_ppo_separated)
MAX_COMPONENTS = 2 * 3 * 3
# Power >= 0.99 against each variant on each example (the filter's effect >= 0.05 sd in some
# component): sample_size(0.05, 1) at false alarm 5e-7 over up to 18 components = 24,846
# episodes of at most 4 steps.
N_SAMPLES = sample_size(
    MIN_EFFECT, 1.0, false_alarm=DEFAULT_FALSE_ALARM / MC_EXAMPLES, n_components=MAX_COMPONENTS
)


CLAIMS = (
    Claim(
        id="ppo-kl-penalty-gradient",
        title="At the old policy, the KL penalty leaves PPO's gradient unchanged",
        summary=(
            "At the start of each PPO update (theta = theta_old) a KL penalty of any of the "
            "usual forms contributes zero gradient: it only acts once the policy has moved."
        ),
        statement=Statement(
            lhs=ppo_gradient.start,
            rhs=ppo_gradient.conclusion,
            derivation="ppo-gradient",
            where=(
                r"\text{state } s\text{'s term of } J^{\theta'}(\theta' + h\delta) - \beta\,"
                r"d'(s)\,\mathrm{KL}(\pi_{\theta'}\,\|\,\pi_{\theta' + h\delta}),\ "
                r"d_s = d'(s),\ \theta_{\mathrm{ref}} = \theta'_{s,\cdot};\ "
                r"\text{at } \delta = e_{s,a}: d'(s)\,\pi'(a|s)\,A'(s,a) = (1-\gamma)\,"
                r"\partial_{\theta_{s,a}} J(\theta')"
            ),
            symbol_names={theta_ref.label: r"\theta_{\mathrm{ref}}"},
        ),
        assumptions=(
            "Tabular softmax policy; infinite-horizon discounted MDP, 0 <= gamma < 1.",
            "J^theta'(theta) = E_{s~d', a~pi'}[pi_theta(a|s)/pi'(a|s) A'(s, a)] with d' the "
            "normalised discounted occupancy of the old policy and A' its advantage.",
            "Any beta >= 0; the penalty's KL in either direction (both are checked).",
            "The derivation is per state s and general in the number of actions n + 1 >= 2 "
            "(one action is trivial: every gradient is 0); the sum "
            "over states is linear and each row of theta enters only its own state's term.",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, 2017, eq. (8).",
            "Kakade, S. and Langford, J., *Approximately Optimal Approximate Reinforcement "
            "Learning*, ICML 2002, Sec. 4.",
            "Schulman, J. et al., *Trust Region Policy Optimization*, ICML 2015, eq. (3)-(4).",
        ),
        symbolic=SymbolicLeg(
            (surrogate_gradient, penalty_gradient, penalty_reverse_gradient, ppo_gradient)
        ),
        exact=ExactLeg(
            examples,
            lhs=gradients_by_complex_step,
            rtol=_rtol,
            symbols=STATE_SYMBOLS,
            arguments=_state_arguments,
            error_scale=_error_scale,
            description=(
                "complex-step gradients at theta' of J_PPO (both KL directions, occupancy and "
                "advantage from rlmath.exact) and of (1 - gamma) J (its own dense complex "
                "solve) vs the lambdified d'(s) pi'(a|s) A'(s, a), A' = Q' - V' from "
                "rlmath.exact.q_value"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            mc_examples,
            _ppo_sampler(),
            normalised_policy_gradient,
            n_samples=N_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "per-episode gradient at theta' of J_PPO over H-step trajectories of theta': "
                "surrogate_gradient with exact A'_t minus beta times the per-sample gradient of "
                "either KL penalty, normalised by sum_t gamma^t, vs rlmath.exact.policy_gradient "
                "of the H-step MDP normalised the same way"
            ),
        ),
        mutants=(
            Mutant(
                "one-minus-gamma-dropped",
                "grad J_PPO(theta') = grad J(theta'): the normalised occupancy's (1 - gamma) "
                "forgotten",
                exact=_without_one_minus_gamma,
                monte_carlo=_ppo_sampler(**PPO_VARIANTS["one-minus-gamma-dropped"]),
            ),
            Mutant(
                "entropy-penalty",
                "a penalty sum pi log pi (log pi' dropped from the KL), whose gradient at "
                "theta' is not zero",
                symbolic=SymbolicMutation(
                    "penalty-gradient",
                    # d_s sum_i pi'_i (log pi'_i - E_pi' log pi') delta_i; log pi' = theta' - log Z
                    d_s
                    * total(
                        pi_ref(i) * (theta_ref[i] - total(pi_ref(j) * theta_ref[j], j)) * delta[i]
                    ),
                ),
                exact=_entropy_penalty,
                monte_carlo=_ppo_sampler(**PPO_VARIANTS["entropy-penalty"]),
            ),
            Mutant(
                "occupancy-dropped",
                "pi'(a|s) A'(s, a) without the state weight d'(s)",
                symbolic=SymbolicMutation(
                    "ppo-gradient", total(pi_ref(i) * advantage(i) * delta[i])
                ),
            ),
        ),
        notes=(
            "Penalties whose gradient also vanishes at theta' are not mutants: beta "
            "E_{a~pi'}[log pi'/pi_theta] is the KL itself; beta E_{a~pi'}[pi_theta/pi'] is "
            "the constant beta (sum_a pi_theta = 1); beta |theta - theta'|^2 and the squared "
            "log-ratio (k2) are flat at theta' too. The (1 - gamma) mutant is exact-only: the "
            "per-state derivation never mentions J, whose relation to the surrogate is the "
            "policy gradient theorem with a normalised occupancy. The Monte-Carlo leg runs on "
            "H-step trajectories of theta', where the normalised occupancy is "
            "sum_t gamma^t Pr(s_t = s) / W, W = sum_{t<H} gamma^t, so the claimed gradient is "
            "grad J_H / W (1/W -> 1 - gamma as H -> infinity); its (1 - gamma) variant omits "
            "1/W. The occupancy-dropped mutant has no Monte-Carlo variant: a trajectory "
            "estimator weights each state by its visits, and there is no per-episode estimator "
            "of the unweighted sum over states."
        ),
    ),
)
