r"""KL-regularised reward maximisation: the Gibbs optimum, and DPO's implicit reward.

Main statements. For a reference policy $\pi_{\mathrm{ref}}$ over $n$ responses $y$ (one
prompt $x$, left implicit), a reward $r$ and $\beta > 0$,

$$ \max_\pi\ \mathbb E_{y\sim\pi}[r(y)] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_{\mathrm{ref}})
   \quad\text{is attained at}\quad
   \pi^*(y) = \frac{\pi_{\mathrm{ref}}(y)\, e^{r(y)/\beta}}{Z}, \quad
   Z = \sum_y \pi_{\mathrm{ref}}(y)\, e^{r(y)/\beta}, $$

with value $\beta \log Z$, because for every $\pi$

$$ \mathbb E_\pi[r] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})
   = \beta \log Z - \beta\,\mathrm{KL}(\pi\,\|\,\pi^*). $$

Inverting, $r(y) = \beta \log\frac{\pi^*(y)}{\pi_{\mathrm{ref}}(y)} + \beta\log Z$; $Z$ cancels
in the Bradley-Terry probability, and the DPO loss
$\mathcal L = -\log\sigma(u)$, $u = \beta(\log\frac{\pi(y_w)}{\pi_{\mathrm{ref}}(y_w)} -
\log\frac{\pi(y_l)}{\pi_{\mathrm{ref}}(y_l)})$, has
$\partial\mathcal L/\partial\log\pi(y_w) = -\beta\sigma(-u)$ and
$\partial\mathcal L/\partial\log\pi(y_l) = +\beta\sigma(-u)$.

Conventions. $\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})$ is under the *trained* policy $\pi$
(the sampled side in RLHF). The objective is maximised; the DPO loss is minimised.
$\sigma(u) = 1/(1 + e^{-u})$. $y_w$ is the preferred response, $y_l$ the other.

Proof sketch. Write $r/\beta = \log e^{r/\beta}$ inside the KL: the objective becomes
$-\beta \sum \pi \log(\pi / (\pi_{\mathrm{ref}} e^{r/\beta})) = -\beta\sum\pi\log(\pi/\pi^*) +
\beta\log Z$. The optimum follows from $\mathrm{KL} \ge 0$ (claim ``kl-nonnegative``; here its
gap $\sum_y \pi\, g(\pi^*/\pi)$, $g(x) = x - 1 - \log x \ge 0$). The implicit reward is the
logarithm of $\pi^*$'s definition; the loss gradient is $\sigma'/\sigma = 1 - \sigma = \sigma(-u)$.

References. Rafailov, R., Sharma, A., Mitchell, E., Ermon, S., Manning, C. D. and Finn, C.,
"Direct Preference Optimization: Your Language Model is Secretly a Reward Model", NeurIPS
2023, eq. (4) (optimum), (5) (implicit reward), (6)-(7) (Z cancels; the DPO loss) and the
gradient in Sec. 4. Ziegler, D. M. et al., "Fine-Tuning Language Models from Human
Preferences", arXiv:1909.08593, 2019 (KL-regularised RLHF). Donsker, M. D. and Varadhan,
S. R. S., "Asymptotic evaluation of certain Markov process expectations for large time",
Comm. Pure Appl. Math. 28, 1975 (the Gibbs variational principle).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import strategies as st
from scipy.special import expit, logsumexp

from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    lambdify,
    monte_carlo_leg,
)
from rlmath.statistics import DEFAULT_FALSE_ALARM, sample_size
from rlmath.symbolic import IndexSum, log_bound_gap
from rlmath.testing import logits, probability_vectors
from rlmath.tolerances import exact_rtol

# ----------------------------------------------------------------------------- helpers


# ============================================================================ Gibbs optimum
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
beta = sp.Symbol("beta", positive=True)
u = sp.IndexedBase("u", positive=True)  # pi = u / sum u: any positive distribution
reference = sp.IndexedBase("pi_ref", positive=True)  # pi_ref = reference / sum reference
reward = sp.IndexedBase("r", real=True)


def total(expression: sp.Expr) -> sp.Sum:
    """$\\sum_{i=0}^{n-1}$ expression."""
    return IndexSum(expression, (i, 0, n - 1))


pi = u[i] / total(u[i])
pi_ref = reference[i] / total(reference[i])
partition = total(pi_ref * sp.exp(reward[i] / beta))  # Z
pi_star = pi_ref * sp.exp(reward[i] / beta) / partition
kl_to_optimum = total(pi * sp.log(pi / pi_star))

objective_identity = Derivation(
    "objective-identity",
    (
        Step(
            total(pi * reward[i]) - beta * total(pi * sp.log(pi / pi_ref)),
            "the KL-regularised objective E_pi[r] - beta KL(pi || pi_ref)",
        ),
        Step(-beta * total(pi * (sp.log(pi / pi_ref) - reward[i] / beta)), "factor out -beta"),
        Step(
            -beta * total(pi * sp.log(pi / (pi_ref * sp.exp(reward[i] / beta)))),
            "r / beta = log e^(r / beta)",
        ),
        Step(
            -beta * total(pi * (sp.log(pi / pi_star) - sp.log(partition))),
            "pi_ref e^(r/beta) = Z pi*",
        ),
        Step(
            beta * sp.log(partition) * total(pi) - beta * kl_to_optimum,
            "linearity; log Z is a constant of the sum",
        ),
        Step(beta * sp.log(partition) - beta * kl_to_optimum, "sum pi = 1"),
    ),
    statement=(
        r"\mathbb E_\pi[r] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})"
        r" = \beta\log Z - \beta\,\mathrm{KL}(\pi\,\|\,\pi^*)"
    ),
)

optimum = Derivation(
    "optimum",
    (
        Step(
            beta * sp.log(partition) - beta * kl_to_optimum,
            "the objective of any pi ('objective-identity')",
        ),
        Step(
            beta * sp.log(partition),
            "KL(pi || pi*) = sum_i pi_i g(pi*_i / pi_i) >= 0 (Gibbs, claim kl-nonnegative), "
            "with equality iff pi = pi*",
            relation="<=",
            gap=beta * total(pi * log_bound_gap(pi_star / pi)),
        ),
    ),
    statement=r"\mathbb E_\pi[r] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}}) \le \beta\log Z",
)

value_at_optimum = Derivation(
    "value-at-optimum",
    (
        Step(
            beta * sp.log(partition)
            - beta * total(pi_star * sp.log(sp.Mul(pi_star, 1 / pi_star, evaluate=False))),
            "'objective-identity' at pi = pi*",
        ),
        Step(beta * sp.log(partition), "KL(pi* || pi*) = sum pi* log 1 = 0: the bound is attained"),
    ),
    statement=r"\mathbb E_{\pi^*}[r] - \beta\,\mathrm{KL}(\pi^*\,\|\,\pi_{\mathrm{ref}}) = \beta\log Z",
)

# ============================================================================ DPO
r_w, r_l = sp.symbols("r_w r_l", real=True)  # rewards of the preferred / other response
ref_w, ref_l = sp.symbols("pi_ref_w pi_ref_l", positive=True)
Z = sp.Symbol("Z", positive=True)  # the prompt's partition function
star_w, star_l = ref_w * sp.exp(r_w / beta) / Z, ref_l * sp.exp(r_l / beta) / Z  # pi*(y)


def sigmoid(argument: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-argument))


implicit_reward = Derivation(
    "implicit-reward",
    (
        Step(r_w, "the reward of a response y"),
        Step(beta * sp.log(sp.exp(r_w / beta)), "log exp = identity"),
        Step(beta * sp.log(Z * star_w / ref_w), "e^(r/beta) = Z pi*(y) / pi_ref(y) (eq. 4)"),
        Step(
            beta * sp.log(star_w / ref_w) + beta * sp.log(Z),
            "log of a product (eq. 5)",
        ),
    ),
    statement=r"r(y) = \beta\log\frac{\pi^*(y)}{\pi_{\mathrm{ref}}(y)} + \beta\log Z",
)

preference = Derivation(
    "bradley-terry",
    (
        Step(sigmoid(r_w - r_l), "Bradley-Terry: P(y_w > y_l) = sigma(r(y_w) - r(y_l))"),
        Step(
            sigmoid(
                beta * sp.log(star_w / ref_w)
                + beta * sp.log(Z)
                - (beta * sp.log(star_l / ref_l) + beta * sp.log(Z))
            ),
            "substitute the implicit reward of each response ('implicit-reward')",
        ),
        Step(
            sigmoid(beta * sp.log(star_w / ref_w) - beta * sp.log(star_l / ref_l)),
            "beta log Z cancels: it depends on the prompt only (eq. 6)",
        ),
    ),
    statement=(
        r"\sigma(r_w - r_l) = \sigma\big(\beta\log\tfrac{\pi^*(y_w)}{\pi_{\mathrm{ref}}(y_w)}"
        r" - \beta\log\tfrac{\pi^*(y_l)}{\pi_{\mathrm{ref}}(y_l)}\big)"
    ),
)

logp_w, logp_l = sp.symbols("ell_w ell_l", real=True)  # log pi(y_w), log pi(y_l)
logref_w, logref_l = sp.symbols("ell_ref_w ell_ref_l", real=True)
margin = beta * ((logp_w - logref_w) - (logp_l - logref_l))  # u
dpo_loss = -sp.log(sigmoid(margin))

dpo_gradient = Derivation(
    "dpo-gradient",
    (
        Step(
            sp.Matrix([sp.Derivative(dpo_loss, logp_w), sp.Derivative(dpo_loss, logp_l)]),
            "gradient of the DPO loss -log sigma(u) in the policy's log-probabilities (eq. 7)",
        ),
        Step(
            sp.Matrix([-beta, beta]) * sp.exp(-margin) / (1 + sp.exp(-margin)),
            "d/du -log sigma(u) = -sigma'(u)/sigma(u) = -e^(-u)/(1 + e^(-u)); du/d ell_w = beta, "
            "du/d ell_l = -beta",
        ),
        Step(
            sp.Matrix([-beta * sigmoid(-margin), beta * sigmoid(-margin)]),
            "e^(-u) / (1 + e^(-u)) = sigma(-u)",
        ),
    ),
    statement=(
        r"\frac{\partial\mathcal L}{\partial\log\pi(y_w)} = -\beta\sigma(-u),\quad"
        r"\frac{\partial\mathcal L}{\partial\log\pi(y_l)} = \beta\sigma(-u)"
    ),
)


# ============================================================================ exact legs
@st.composite
def _bandit(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """(pi, pi_ref, r, beta) over 1-6 responses; pi may have zeros, pi_ref > 0."""
    size = draw(st.integers(1, 6))
    policy = draw(probability_vectors(size))
    ref = draw(probability_vectors(size, allow_zeros=False))
    rewards = draw(logits(size, max_abs=5.0))
    return policy, ref, rewards, draw(st.floats(0.05, 5.0))


bandits = _bandit()


def _kl(first: np.ndarray, second: np.ndarray) -> float:
    support = first > 0
    return float(np.sum(first[support] * np.log(first[support] / second[support])))


def gibbs_policy(ref: np.ndarray, rewards: np.ndarray, temperature: float) -> np.ndarray:
    r"""$\pi^* \propto \pi_{\mathrm{ref}} e^{r/\beta}$, normalised in log space."""
    logits_ = np.log(ref) + rewards / temperature
    return np.exp(logits_ - logsumexp(logits_))  # type: ignore[no-any-return]


def objectives_by_enumeration(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    """[objective(pi), objective(pi*)] with objective = E_pi[r] - beta KL(pi || pi_ref), summed."""
    policy, ref, rewards, temperature = example
    star = gibbs_policy(ref, rewards, temperature)
    return np.array(
        [
            policy @ rewards - temperature * _kl(policy, ref),
            star @ rewards - temperature * _kl(star, ref),
        ]
    )


_identity = lambdify([u, reference, reward, beta, n], objective_identity.conclusion)
_value = lambdify([reference, reward, beta, n], optimum.conclusion)


def derived_values(example, star=gibbs_policy, value=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """[beta log Z - beta KL(pi || pi*), beta log Z]; zeros of pi handled by 0 log 0 = 0."""
    policy, ref, rewards, temperature = example
    if value is None:
        value = _value(ref, rewards, temperature, ref.size)
    identity = value - temperature * _kl(policy, star(ref, rewards, temperature))
    if np.all(policy > 0):  # the lambdified identity itself (log 0 is not defined there)
        identity = _identity(policy, ref, rewards, temperature, ref.size)
    return np.array([identity, value])


def _objective_error_scale(example) -> float:  # type: ignore[no-untyped-def]
    # E[r] and beta KL (terms of size max|r| + beta max|log pi/pi_ref|) cancel to the result,
    # which may be near 0: the attainable accuracy is relative to those terms.
    policy, ref, rewards, temperature = example
    with np.errstate(divide="ignore"):
        logs = np.abs(np.log(np.where(policy > 0, policy, 1.0) / ref)).max()
    return float(np.abs(rewards).max() + temperature * (logs + np.abs(np.log(ref)).max()) + 1)


def _sign_flipped_star(ref, rewards, temperature):  # type: ignore[no-untyped-def]
    return gibbs_policy(ref, -rewards, temperature)


def _beta_inverted_star(ref, rewards, temperature):  # type: ignore[no-untyped-def]
    return gibbs_policy(ref, rewards * temperature**2, temperature)  # e^(beta r)


def _partition(example) -> float:  # type: ignore[no-untyped-def]
    _, ref, rewards, temperature = example
    return float(ref @ np.exp(rewards / temperature))


@st.composite
def _preferences(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """(pi_ref, r, beta, log pi(y_w), log pi(y_l), log pi_ref(y_w), log pi_ref(y_l)); y_w = 0, y_l = 1."""
    size = draw(st.integers(2, 6))
    ref = draw(probability_vectors(size, allow_zeros=False, min_probability=1e-6))
    rewards = draw(logits(size, max_abs=5.0))
    temperature = draw(st.floats(0.05, 5.0))
    log_probs = draw(logits(4, max_abs=20.0))
    return ref, rewards, temperature, log_probs


preferences = _preferences()
_reward_rhs = lambdify([r_w, beta, ref_w, Z], implicit_reward.conclusion)
_preference_rhs = lambdify([r_w, r_l, beta, ref_w, ref_l, Z], preference.conclusion)
_gradient_rhs = lambdify([logp_w, logp_l, logref_w, logref_l, beta], dpo_gradient.conclusion)


def _dpo_loss(log_probs: np.ndarray, temperature: float) -> complex:
    """-log sigma(u) in a form valid for complex arguments: log(1 + e^(-u))."""
    w, l_, rw, rl = log_probs
    margin_value = temperature * ((w - rw) - (l_ - rl))
    return np.log1p(np.exp(-margin_value)) if margin_value.real > -30 else -margin_value  # type: ignore[no-any-return]


def dpo_by_definition(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    r"""[r(y_w), sigma(r_w - r_l), dL/d log pi(y_w), dL/d log pi(y_l)], from the definitions.

    The gradient by complex-step differentiation of the loss (no subtraction; exact to
    rounding at step $10^{-30}$).
    """
    ref, rewards, temperature, log_probs = example
    grads = []
    for k in range(2):
        bump = np.zeros(4, dtype=complex)
        bump[k] = 1e-30j
        grads.append(_dpo_loss(log_probs.astype(complex) + bump, temperature).imag / 1e-30)
    return np.array([rewards[0], expit(rewards[0] - rewards[1]), *grads])


def dpo_derived(example, reward_rhs=None, preference_rhs=None, gradient_rhs=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The lambdified conclusions, with pi* and Z computed from pi_ref and r."""
    ref, rewards, temperature, log_probs = example
    Z_value = float(ref @ np.exp(rewards / temperature))
    reward_value = (reward_rhs or _reward_rhs)(rewards[0], temperature, ref[0], Z_value)
    preference_value = (preference_rhs or _preference_rhs)(
        rewards[0], rewards[1], temperature, ref[0], ref[1], Z_value
    )
    gradient = np.ravel((gradient_rhs or _gradient_rhs)(*log_probs, temperature))
    return np.array([reward_value, preference_value, *gradient])


def _dpo_rtol(example) -> float:  # type: ignore[no-untyped-def]
    # beta log(pi*/pi_ref) + beta log Z = r re-assembles r from logs of size |r|/beta + |log Z|
    # (times beta); the gradient entries are beta sigma(-u) to relative rounding.
    ref, rewards, temperature, _ = example
    log_z = abs(float(np.log(ref @ np.exp(rewards / temperature))))
    scale = float(np.abs(rewards).max() + temperature * (log_z + abs(np.log(ref[:2])).max()) + 1)
    return exact_rtol(scale, 8)


# ============================================================================ Monte-Carlo legs
# Each leg draws MC_EXAMPLES examples from a strategy whose filter keeps only examples in which
# every component of the correct estimator varies (per-sample sd >= MIN_SD, so none is constant
# up to rounding: see the zero-SE caveat in rlmath.statistics) and every mutant's Monte-Carlo
# variant shifts some component by at least MIN_EFFECT of that component's per-sample standard
# deviation under the variant (exact means and sds, by enumeration). sample_size(MIN_EFFECT, 1)
# samples then reject every variant with power >= 0.99 at the leg's false alarm 1e-6.
MC_EXAMPLES = 2
MIN_EFFECT = 0.05
MIN_SD = 1e-2


def _mc_samples(n_components: int) -> int:
    """sample_size(MIN_EFFECT, 1) at the leg's per-example false alarm, for ``n_components``."""
    return sample_size(
        MIN_EFFECT, 1.0, false_alarm=DEFAULT_FALSE_ALARM / MC_EXAMPLES, n_components=n_components
    )


def _moments(terms: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and sd over outcomes of probability ``weights`` (axis 0 of ``terms``)."""
    mean = np.tensordot(weights, terms, axes=1)
    return mean, np.sqrt(np.tensordot(weights, (terms - mean) ** 2, axes=1))


def _standardised_effect(moments: tuple[np.ndarray, np.ndarray], reference: np.ndarray) -> float:
    """max over components of |mean - reference| / sd (components with sd = 0 count 0)."""
    mean, sd = moments
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.where(sd > 0, np.abs(mean - reference) / sd, 0.0).max())


# ----------------------------------------------------------------------------- the optimum
# For a generic pi (full support), the identity objective(pi) = beta log Z - beta KL(pi || pi*)
# is checked by sampling its right-hand side: y ~ pi, per-sample term beta log Z - beta log(pi(y)
# / pi*(y)) (k1 for the KL, pi* and Z built by the claim's formulas, beta log Z lambdified from
# 'optimum'), against E_pi[r] - beta KL(pi || pi_ref) by enumeration. The mutants' variants use
# their pi* or their value in the same estimator. At pi = pi* the per-sample term is the constant
# beta log Z, so the value at the optimum is a zero-variance check: the exact leg covers it.
def _objective_rhs_terms(example, outcomes, star=gibbs_policy, value=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """beta log Z - beta log(pi(y)/pi*(y)) at ``outcomes`` (a mutant passes its pi* or value)."""
    policy, ref, rewards, temperature = example
    if value is None:
        value = _value(ref, rewards, temperature, ref.size)
    log_star = np.log(star(ref, rewards, temperature))
    return value - temperature * (np.log(policy[outcomes]) - log_star[outcomes])  # type: ignore[no-any-return]


def _objective_sampler(**variant):  # type: ignore[no-untyped-def]
    def sample(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        """y ~ pi: the identity's right-hand side, one term per sample, ``[count]``."""
        policy = example[0]
        mutant = {k: f(example) if k == "value" else f for k, f in variant.items()}
        return _objective_rhs_terms(
            example, rng.choice(policy.size, size=count, p=policy), **mutant
        )

    return sample


OBJECTIVE_VARIANTS = {
    "reward-sign-flipped": {"star": _sign_flipped_star},
    "beta-inverted": {"star": _beta_inverted_star},
    "value-beta-Z": {"value": lambda ex: ex[3] * _partition(ex)},
    "value-without-beta": {"value": lambda ex: np.log(_partition(ex))},
}


def objective_by_enumeration(example) -> float:  # type: ignore[no-untyped-def]
    """E_pi[r] - beta KL(pi || pi_ref), summed over responses."""
    return float(objectives_by_enumeration(example)[0])


def _objective_separated(example) -> bool:  # type: ignore[no-untyped-def]
    policy = example[0]
    outcomes = np.arange(policy.size)
    reference = objective_by_enumeration(example)
    if _moments(_objective_rhs_terms(example, outcomes), policy)[1] < MIN_SD:
        return False
    for variant in OBJECTIVE_VARIANTS.values():
        mutant = {k: f(example) if k == "value" else f for k, f in variant.items()}
        moments = _moments(_objective_rhs_terms(example, outcomes, **mutant), policy)
        if _standardised_effect(moments, reference) < MIN_EFFECT:
            return False
    return True


@st.composite
def _generic_bandit(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """(pi, pi_ref, r, beta) with 2-5 responses, pi and pi_ref >= 0.05 (log-ratios bounded)."""
    size = draw(st.integers(2, 5))
    policy = draw(probability_vectors(size, allow_zeros=False, min_probability=0.05))
    ref = draw(probability_vectors(size, allow_zeros=False, min_probability=0.05))
    rewards = draw(logits(size, max_abs=3.0))
    return policy, ref, rewards, draw(st.floats(0.2, 3.0))


objective_mc_examples = _generic_bandit().filter(_objective_separated)
# 1 component: sample_size(0.05, 1) at false alarm 5e-7 = 21,625 responses.
OBJECTIVE_SAMPLES = _mc_samples(1)


# ----------------------------------------------------------------------------- DPO
# Per sample, three independent checks on one prompt with responses y_0, y_1:
# 0. Bradley-Terry as a random-utility model: y_0 is preferred when r_0 + G_0 > r_1 + G_1 with
#    G_0, G_1 standard Gumbel (their difference is logistic), so the indicator's mean is
#    sigma(r_0 - r_1); reference: the lambdified 'bradley-terry' conclusion, sigma of the beta
#    log-ratio margin of pi* (Z cancelled).
# 1. The implicit reward beta log(pi*(y)/pi_ref(y)) + beta log Z of a response y ~ pi*, whose mean
#    must be E_{pi*}[r] (by enumeration).
# 2. The DPO gradient with respect to log pi(y_0) under that sampled preference: the claimed
#    formula (lambdified 'dpo-gradient') with (y_w, y_l) = (y_0, y_1) or (y_1, y_0); reference:
#    the complex-step derivative of the expected loss p L(u_01) + (1 - p) L(-u_01),
#    p = sigma(r_0 - r_1), the population DPO gradient at the policy log pi.
def _gumbel(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return -np.log(-np.log(rng.random(shape)))


def _dpo_terms(example, first_preferred, responses, *, implicit_reward=True, gradient=None):  # type: ignore[no-untyped-def]
    """``[N, 3]`` per-sample terms for preference indicators and responses y ~ pi* (see above)."""
    ref, rewards, temperature, log_probs = example
    gradient = gradient or _gradient_rhs
    star = gibbs_policy(ref, rewards, temperature)
    log_z = np.log(_partition((None, ref, rewards, temperature)))
    reward = temperature * np.log(star[responses] / ref[responses])
    if implicit_reward:
        reward = reward + temperature * log_z
    w, l_, ref_w, ref_l = log_probs
    as_winner = np.ravel(gradient(w, l_, ref_w, ref_l, temperature))[0]  # d L / d log pi(y_w)
    as_loser = np.ravel(gradient(l_, w, ref_l, ref_w, temperature))[1]  # d L / d log pi(y_l)
    grad = np.where(first_preferred, as_winner, as_loser)
    return np.stack([first_preferred.astype(np.float64), reward, grad], axis=-1)


def _dpo_sampler(**variant):  # type: ignore[no-untyped-def]
    def sample(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        ref, rewards, temperature, _ = example
        noise = _gumbel(rng, (count, 2))
        first_preferred = rewards[0] + noise[:, 0] > rewards[1] + noise[:, 1]
        star = gibbs_policy(ref, rewards, temperature)
        responses = rng.choice(ref.size, size=count, p=star)
        return _dpo_terms(example, first_preferred, responses, **variant)

    return sample


def _expected_dpo_loss(log_probs: np.ndarray, temperature: float, preferred: float) -> complex:
    """p L(y_0 over y_1) + (1 - p) L(y_1 over y_0), p = ``preferred`` (complex-safe)."""
    w, l_, ref_w, ref_l = log_probs
    swapped = np.array([l_, w, ref_l, ref_w])
    return preferred * _dpo_loss(log_probs, temperature) + (1 - preferred) * _dpo_loss(
        swapped, temperature
    )


def dpo_reference(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    """[lambdified BT probability, E_{pi*}[r], complex-step population gradient in log pi(y_0)]."""
    ref, rewards, temperature, log_probs = example
    z_value = _partition((None, ref, rewards, temperature))
    preferred = float(expit(rewards[0] - rewards[1]))
    bump = np.zeros(4, dtype=complex)
    bump[0] = 1e-30j
    grad = _expected_dpo_loss(log_probs.astype(complex) + bump, temperature, preferred).imag / 1e-30
    return np.array(
        [
            _preference_rhs(rewards[0], rewards[1], temperature, ref[0], ref[1], z_value),
            gibbs_policy(ref, rewards, temperature) @ rewards,
            grad,
        ]
    )


_sigma_of_u_rhs = lambdify(
    [logp_w, logp_l, logref_w, logref_l, beta],
    sp.Matrix([-beta * sigmoid(margin), beta * sigmoid(margin)]),
)
DPO_VARIANTS = {
    "log-Z-dropped": {"implicit_reward": False},
    "gradient-sign-flipped": {"gradient": lambda *args: -np.ravel(_gradient_rhs(*args))},
    "sigma-of-u": {"gradient": _sigma_of_u_rhs},
}


def _dpo_moments(example, **variant):  # type: ignore[no-untyped-def]
    """Exact means and sds: the preference over its two outcomes, y over pi*."""
    ref, rewards, temperature, _ = example
    preferred = float(expit(rewards[0] - rewards[1]))
    pair = _dpo_terms(example, np.array([True, False]), np.zeros(2, dtype=int), **variant)
    responses = _dpo_terms(example, np.zeros(ref.size, dtype=bool), np.arange(ref.size), **variant)
    mean_pair, sd_pair = _moments(pair, np.array([preferred, 1 - preferred]))
    mean_y, sd_y = _moments(responses, gibbs_policy(ref, rewards, temperature))
    return (
        np.array([mean_pair[0], mean_y[1], mean_pair[2]]),
        np.array([sd_pair[0], sd_y[1], sd_pair[2]]),
    )


def _dpo_separated(example) -> bool:  # type: ignore[no-untyped-def]
    reference = dpo_reference(example)
    if not np.all(_dpo_moments(example)[1] >= MIN_SD):
        return False
    return all(
        _standardised_effect(_dpo_moments(example, **v), reference) >= MIN_EFFECT
        for v in DPO_VARIANTS.values()
    )


@st.composite
def _moderate_preferences(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """Like ``preferences`` with moderate sizes: every probability and sigma(+-u) away from 0."""
    size = draw(st.integers(2, 5))
    ref = draw(probability_vectors(size, allow_zeros=False, min_probability=0.05))
    rewards = draw(logits(size, max_abs=3.0))
    temperature = draw(st.floats(0.2, 2.0))
    return ref, rewards, temperature, draw(logits(4, max_abs=2.0))


dpo_mc_examples = _moderate_preferences().filter(_dpo_separated)
# 3 components: sample_size(0.05, 1) at false alarm 5e-7 over 3 components = 22,859 samples.
DPO_SAMPLES = _mc_samples(3)


CLAIMS = (
    Claim(
        id="kl-regularized-optimal-policy",
        title="The KL-regularised optimal policy is the Gibbs policy, with value beta log Z",
        statement=(
            r"\arg\max_\pi \mathbb E_{y\sim\pi}[r(y)] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})"
            r" = \pi^* = \frac{\pi_{\mathrm{ref}}\,e^{r/\beta}}{Z},\quad"
            r" \max = \beta\log Z,\quad Z = \sum_y \pi_{\mathrm{ref}}(y)\,e^{r(y)/\beta}"
        ),
        assumptions=(
            "Finitely many responses (general n), one prompt; beta > 0; pi_ref > 0.",
            "The symbolic derivation takes pi > 0 (written u / sum u); responses with "
            "pi(y) = 0 add 0 to both sides (0 log 0 = 0).",
            "The inequality step uses Gibbs' inequality; its gap is sympy-proved "
            "non-negative through the lemma of kl-nonnegative (function log_bound_gap).",
        ),
        references=(
            "Rafailov, R. et al., *Direct Preference Optimization*, NeurIPS 2023, eq. (4).",
            "Ziegler, D. M. et al., *Fine-Tuning Language Models from Human Preferences*, "
            "2019, Sec. 2.",
            "Donsker, M. D. and Varadhan, S. R. S., *Asymptotic evaluation of certain Markov "
            "process expectations for large time*, Comm. Pure Appl. Math. 28, 1975.",
        ),
        symbolic=SymbolicLeg((objective_identity, optimum, value_at_optimum)),
        exact=ExactLeg(
            bandits,
            lhs=objectives_by_enumeration,
            rhs=derived_values,
            rtol=lambda ex: exact_rtol(1.0, 4 * ex[1].size),
            error_scale=_objective_error_scale,
            description=(
                "E_pi[r] - beta KL(pi || pi_ref) by enumeration at a generated pi and at pi* "
                "vs the lambdified beta log Z - beta KL(pi || pi*) and beta log Z"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            objective_mc_examples,
            _objective_sampler(),
            objective_by_enumeration,
            n_samples=OBJECTIVE_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "the identity's right-hand side sampled at y ~ pi, beta log Z - beta log(pi(y)/"
                "pi*(y)) (k1 for KL(pi || pi*)), vs E_pi[r] - beta KL(pi || pi_ref) by enumeration"
            ),
        ),
        mutants=(
            Mutant(
                "reward-sign-flipped",
                "pi* proportional to pi_ref e^(-r/beta)",
                symbolic=SymbolicMutation(
                    "objective-identity",
                    beta * sp.log(partition)
                    - beta
                    * total(pi * sp.log(pi / (pi_ref * sp.exp(-reward[i] / beta) / partition))),
                ),
                exact=lambda ex: derived_values(ex, star=_sign_flipped_star),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["reward-sign-flipped"]),
            ),
            Mutant(
                "beta-inverted",
                "pi* proportional to pi_ref e^(beta r)",
                symbolic=SymbolicMutation(
                    "objective-identity",
                    beta * sp.log(partition)
                    - beta
                    * total(pi * sp.log(pi / (pi_ref * sp.exp(beta * reward[i]) / partition))),
                ),
                exact=lambda ex: derived_values(ex, star=_beta_inverted_star),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["beta-inverted"]),
            ),
            Mutant(
                "value-beta-Z",
                "optimal value beta Z instead of beta log Z",
                symbolic=SymbolicMutation("value-at-optimum", beta * partition),
                exact=lambda ex: derived_values(ex, value=ex[3] * _partition(ex)),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["value-beta-Z"]),
            ),
            Mutant(
                "value-without-beta",
                "optimal value log Z, the temperature forgotten",
                symbolic=SymbolicMutation("value-at-optimum", sp.log(partition)),
                exact=lambda ex: derived_values(ex, value=np.log(_partition(ex))),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["value-without-beta"]),
            ),
        ),
        notes=(
            "The Monte-Carlo leg samples the identity's right-hand side at a generic pi "
            "(beta log Z - beta log(pi(y)/pi*(y)), y ~ pi) and compares it with the objective "
            "by enumeration; each mutant's variant puts its pi* or its value in that estimator. "
            "At pi = pi* the per-sample objective r(y) - beta log(pi*(y)/pi_ref(y)) is the "
            "constant beta log Z, so sampling there tests nothing a single evaluation does not: "
            "the value at the optimum is left to the symbolic and exact legs."
        ),
    ),
    Claim(
        id="dpo-implicit-reward",
        title="DPO: the implicit reward, the cancellation of Z, and the loss gradient",
        statement=(
            r"r(y) = \beta\log\tfrac{\pi^*(y)}{\pi_{\mathrm{ref}}(y)} + \beta\log Z,\quad"
            r" \sigma(r_w - r_l) = \sigma\big(\beta\log\tfrac{\pi^*(y_w)}{\pi_{\mathrm{ref}}(y_w)}"
            r" - \beta\log\tfrac{\pi^*(y_l)}{\pi_{\mathrm{ref}}(y_l)}\big),\quad"
            r" \nabla_{(\log\pi(y_w), \log\pi(y_l))}\mathcal L_{\mathrm{DPO}} = \beta\sigma(-u)\,(-1, 1)"
        ),
        assumptions=(
            "pi* is the optimum of kl-regularized-optimal-policy for one prompt x; Z = Z(x) "
            "does not depend on the response.",
            "L_DPO = -log sigma(u), u = beta (log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)); "
            "the gradient is with respect to the two log-probabilities.",
        ),
        references=(
            "Rafailov, R. et al., *Direct Preference Optimization: Your Language Model is "
            "Secretly a Reward Model*, NeurIPS 2023, eq. (5), (6), (7) and the gradient in "
            "Sec. 4.",
            "Bradley, R. A. and Terry, M. E., *Rank Analysis of Incomplete Block Designs*, "
            "Biometrika 39, 1952.",
        ),
        symbolic=SymbolicLeg((implicit_reward, preference, dpo_gradient)),
        exact=ExactLeg(
            preferences,
            lhs=dpo_by_definition,
            rhs=dpo_derived,
            rtol=_dpo_rtol,
            description=(
                "[r(y_w), sigma(r_w - r_l), complex-step gradient of -log sigma(u)] vs the "
                "lambdified conclusions with pi* = pi_ref e^(r/beta) / Z computed numerically"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            dpo_mc_examples,
            _dpo_sampler(),
            dpo_reference,
            n_samples=DPO_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "Gumbel-sampled Bradley-Terry preferences vs the lambdified sigma of the beta "
                "log-ratio margin; the implicit reward at y ~ pi* vs E_pi*[r]; the claimed DPO "
                "gradient under sampled preferences vs the complex-step population gradient"
            ),
        ),
        mutants=(
            Mutant(
                "log-Z-dropped",
                "r(y) = beta log(pi*(y)/pi_ref(y)): the prompt's beta log Z dropped",
                symbolic=SymbolicMutation("implicit-reward", beta * sp.log(star_w / ref_w)),
                exact=lambda ex: dpo_derived(
                    ex, reward_rhs=lambdify([r_w, beta, ref_w, Z], beta * sp.log(star_w / ref_w))
                ),
                monte_carlo=_dpo_sampler(**DPO_VARIANTS["log-Z-dropped"]),
            ),
            Mutant(
                "gradient-sign-flipped",
                "dL/d log pi(y_w) = +beta sigma(-u): the loss would push y_w down",
                symbolic=SymbolicMutation(
                    "dpo-gradient", sp.Matrix([beta * sigmoid(-margin), -beta * sigmoid(-margin)])
                ),
                exact=lambda ex: dpo_derived(
                    ex, gradient_rhs=lambda *args: -np.ravel(_gradient_rhs(*args))
                ),
                monte_carlo=_dpo_sampler(**DPO_VARIANTS["gradient-sign-flipped"]),
            ),
            Mutant(
                "sigma-of-u",
                "beta sigma(u) instead of beta sigma(-u): the weight of the well-ranked pairs",
                symbolic=SymbolicMutation(
                    "dpo-gradient", sp.Matrix([-beta * sigmoid(margin), beta * sigmoid(margin)])
                ),
                exact=lambda ex: dpo_derived(
                    ex,
                    gradient_rhs=lambdify(
                        [logp_w, logp_l, logref_w, logref_l, beta],
                        sp.Matrix([-beta * sigmoid(margin), beta * sigmoid(margin)]),
                    ),
                ),
                monte_carlo=_dpo_sampler(**DPO_VARIANTS["sigma-of-u"]),
            ),
        ),
        notes=(
            "The log-Z mutant survives the preference probability (Z cancels there either "
            "way); the reward identity rejects it. Z is computed from pi_ref and r, pi* from "
            "its definition, so the exact leg's preference probability is checked at the true "
            "optimum. The Monte-Carlo leg samples preferences from Bradley-Terry as a "
            "random-utility model (Gumbel noise on the rewards, no sigma), the implicit reward at "
            "responses of pi*, and the claimed DPO gradient under the sampled preferences, whose "
            "mean must be the gradient of the expected loss (the population DPO gradient)."
        ),
    ),
)
