r"""Gradients of the KL estimators k1, k2, k3: as a reward penalty and as a loss.

Main statements. For a softmax policy $\pi_\theta$ on $n$ outcomes, a fixed reference
$\rho$, samples $a \sim \pi_\theta$, $r(a) = \rho(a)/\pi_\theta(a)$ and the estimators
$k_1 = -\log r$, $k_2 = \tfrac12(\log r)^2$, $k_3 = (r - 1) - \log r$ of
$F(\theta) = \mathrm{KL}(\pi_\theta \,\|\, \rho)$, write $R(\theta) = \mathrm{KL}(\rho\,\|\,\pi_\theta)$
and $K_2(\theta) = \mathbb E_{\pi_\theta}[k_2]$. Then

| usage | $k_1$ | $k_2$ | $k_3$ |
|---|---|---|---|
| (a) penalty, score function $\mathbb E[k\,\nabla\log\pi_\theta]$ | $\nabla F$ | $\nabla(K_2 - F)$: biased | $\nabla F - \nabla R$: biased |
| (b) loss, autodiff $\mathbb E[\nabla_\theta k]$ | $0$ | $\nabla F$ | $\nabla R$ (the reverse KL) |

Conventions. $\mathrm{KL}(\pi\,\|\,\rho) = \sum_a \pi(a)\log(\pi(a)/\rho(a))$; samples from
$\pi_\theta$; gradients with respect to the logits $\theta$. (a): $k$ is a reward, no gradient
flows through it; (b): the samples are fixed, the gradient flows through $\log\pi_\theta(a)$
inside $k$ only (not through the sampling).

Proof sketch. A gradient is determined by its directional derivatives along every direction
$\delta$, so each statement is shown for $\frac{d}{dh}\big|_{h=0}$ along $\theta + h\delta$.
The score along $\delta$ is $s_a = \delta_a - \mathbb E_\pi[\delta]$ with
$\mathbb E_\pi[s] = 0$; $\nabla F = \mathbb E_\pi[k_1 s]$ (product rule, the expected score
vanishes), $\nabla R = -\sum_a \rho_a s_a = \mathbb E_\pi[-r s]$. Then $\nabla k_1 = s$,
$\nabla k_2 = k_1 s$, $\nabla k_3 = (1 - r)s$, and $k_3 = k_1 + r - 1$ for (a).

Limitation: the symbolic derivations are a fully symbolic instance with $n = 3$ outcomes
(every logit, direction entry and reference probability a symbol); general $n$ with
``sympy.Sum`` was too slow (tens of seconds per step). The Monte-Carlo leg checks $n = 2..4$.

References. Schulman, J., "Approximating KL Divergence", blog post, 2020 (k1, k2, k3).
Williams, R. J., "Simple statistical gradient-following algorithms for connectionist
reinforcement learning", *Machine Learning* 8, 1992 (the score-function gradient).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    LegResult,
    MonteCarloLeg,
    Mutant,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    agreement_row,
    draw_examples,
    lambdify,
)
from rlmath.statistics import DEFAULT_FALSE_ALARM, agreement, sample_size
from rlmath.testing import logits, probability_vectors
from rlmath.tolerances import exact_rtol

# ============================================================================ symbols (n = 3)
N = 3
OUTCOMES = range(N)
theta = sp.symbols(f"theta0:{N}", real=True)  # logits of pi_theta
delta = sp.symbols(f"delta0:{N}", real=True)  # a direction in logit space
rho = sp.symbols(f"rho0:{N}", positive=True)  # the reference (the identities need no sum = 1)
h = sp.Symbol("h", real=True)
ZERO = sp.Integer(0)


def partition(step: sp.Expr = ZERO) -> sp.Expr:
    return sum(sp.exp(theta[b] + step * delta[b]) for b in OUTCOMES)


def pi(a: int, step: sp.Expr = ZERO) -> sp.Expr:
    r"""$\pi_{\theta + h\delta}(a)$, the softmax policy moved along $\delta$."""
    return sp.exp(theta[a] + step * delta[a]) / partition(step)


def log_ratio_k1(a: int, step: sp.Expr = ZERO) -> sp.Expr:
    r"""$k_1(a) = -\log r = \log(\pi(a)/\rho(a))$."""
    return sp.log(pi(a, step) / rho[a])


def at_zero(expression: sp.Expr) -> sp.Subs:
    r"""$\frac{d}{dh}$ expression at $h = 0$: the directional derivative along $\delta$."""
    return sp.Subs(sp.Derivative(expression, h), h, 0)


def expect(term: Callable[[int], sp.Expr]) -> sp.Expr:
    r"""$\mathbb E_{a\sim\pi_\theta}[\text{term}(a)] = \sum_a \pi_\theta(a)\, \text{term}(a)$."""
    return sum(pi(a) * term(a) for a in OUTCOMES)


mean_delta = expect(lambda a: delta[a])


def score(a: int) -> sp.Expr:
    r"""$s_a = \delta_a - \mathbb E_\pi[\delta]$: the score $\nabla\log\pi(a)$ along $\delta$."""
    return delta[a] - mean_delta


def k2(a: int, step: sp.Expr = ZERO) -> sp.Expr:
    return log_ratio_k1(a, step) ** 2 / 2


def k3(a: int, step: sp.Expr = ZERO) -> sp.Expr:
    return rho[a] / pi(a, step) - 1 + log_ratio_k1(a, step)


#: Directional derivatives of the three potentials: F = KL(pi||rho), R = KL(rho||pi), K2 = E_pi[k2].
grad_forward = at_zero(sum(pi(a, h) * log_ratio_k1(a, h) for a in OUTCOMES))
grad_reverse = at_zero(sum(rho[a] * sp.log(rho[a] / pi(a, h)) for a in OUTCOMES))
grad_k2_mean = at_zero(sum(pi(a, h) * k2(a, h) for a in OUTCOMES))

# ============================================================================ lemmas
score_lemma = Derivation(
    "score",
    (
        Step(sp.Matrix([at_zero(sp.log(pi(a, h))) for a in OUTCOMES]), "d/dh log pi_a along delta"),
        Step(
            sp.Matrix([at_zero(theta[a] + h * delta[a] - sp.log(partition(h))) for a in OUTCOMES]),
            "log softmax = theta_a + h delta_a - log Z",
        ),
        Step(sp.Matrix([score(a) for a in OUTCOMES]), "d log Z / dh = sum_b delta_b pi_b at h = 0"),
    ),
    statement=r"\tfrac{d}{dh}\log\pi_{\theta+h\delta}(a)\big|_0 = \delta_a - \mathbb E_\pi[\delta]",
)

expected_score = Derivation(
    "expected-score",
    (
        Step(expect(score), "E_pi[s]"),
        Step(sp.Integer(0), "E_pi[delta] - E_pi[delta] sum_a pi_a, and sum_a pi_a = 1"),
    ),
    statement=r"\mathbb E_\pi[s] = 0",
)

# ============================================================================ (a) penalties
penalty_k1 = Derivation(
    "penalty-k1",
    (
        Step(expect(lambda a: log_ratio_k1(a) * at_zero(sp.log(pi(a, h)))), "E[k1 grad log pi]"),
        Step(expect(lambda a: log_ratio_k1(a) * score(a)), "lemma 'score'"),
        Step(
            grad_forward,
            "product rule: dF = E[s k1] + E[s], and E[s] = 0 (lemma 'expected-score')",
        ),
    ),
    statement=r"\mathbb E[k_1 \nabla\log\pi] = \nabla\mathrm{KL}(\pi\,\|\,\rho)",
)

penalty_k2 = Derivation(
    "penalty-k2",
    (
        Step(expect(lambda a: k2(a) * at_zero(sp.log(pi(a, h)))), "E[k2 grad log pi]"),
        Step(expect(lambda a: k2(a) * score(a)), "lemma 'score'"),
        Step(
            grad_k2_mean - expect(lambda a: log_ratio_k1(a) * score(a)),
            "product rule: d E_pi[k2] = E[k2 s] + E[k1 s], since d k2 = k1 s",
        ),
        Step(grad_k2_mean - grad_forward, "E[k1 s] = grad KL(pi || rho) (derivation 'penalty-k1')"),
    ),
    statement=r"\mathbb E[k_2 \nabla\log\pi] = \nabla\big(\mathbb E_\pi[k_2] - \mathrm{KL}(\pi\,\|\,\rho)\big)",
)

penalty_k3 = Derivation(
    "penalty-k3",
    (
        Step(expect(lambda a: k3(a) * at_zero(sp.log(pi(a, h)))), "E[k3 grad log pi]"),
        Step(
            sum((rho[a] - pi(a) + pi(a) * log_ratio_k1(a)) * score(a) for a in OUTCOMES),
            "lemma 'score', and pi r = rho",
        ),
        Step(
            sum(rho[a] * score(a) for a in OUTCOMES) + expect(lambda a: log_ratio_k1(a) * score(a)),
            "E_pi[s] = 0 (lemma 'expected-score')",
        ),
        Step(
            grad_forward - grad_reverse,
            "d KL(rho || pi) = -sum_a rho_a s_a; E[k1 s] = grad KL(pi || rho)",
        ),
    ),
    statement=(
        r"\mathbb E[k_3 \nabla\log\pi] = \nabla\mathrm{KL}(\pi\,\|\,\rho)"
        r" - \nabla\mathrm{KL}(\rho\,\|\,\pi)"
    ),
)

# ============================================================================ (b) losses
loss_k1 = Derivation(
    "loss-k1",
    (
        Step(expect(lambda a: at_zero(log_ratio_k1(a, h))), "E[grad k1], samples fixed"),
        Step(expect(score), "d k1 = d log pi = s (lemma 'score')"),
        Step(sp.Integer(0), "E_pi[s] = 0 (lemma 'expected-score')"),
    ),
    statement=r"\mathbb E[\nabla k_1] = 0",
)

loss_k2 = Derivation(
    "loss-k2",
    (
        Step(expect(lambda a: at_zero(k2(a, h))), "E[grad k2], samples fixed"),
        Step(expect(lambda a: log_ratio_k1(a) * score(a)), "chain rule: d (k1^2/2) = k1 s"),
        Step(grad_forward, "= grad KL(pi || rho) (derivation 'penalty-k1')"),
    ),
    statement=r"\mathbb E[\nabla k_2] = \nabla\mathrm{KL}(\pi\,\|\,\rho)",
)

loss_k3 = Derivation(
    "loss-k3",
    (
        Step(expect(lambda a: at_zero(k3(a, h))), "E[grad k3], samples fixed"),
        Step(
            sum((-rho[a] + pi(a)) * score(a) for a in OUTCOMES),
            "d(rho/pi) = -(rho/pi) s and d k1 = s; weight pi",
        ),
        Step(-sum(rho[a] * score(a) for a in OUTCOMES), "E_pi[s] = 0 (lemma 'expected-score')"),
        Step(grad_reverse, "d KL(rho || pi) = -sum_a rho_a d log pi_a"),
    ),
    statement=r"\mathbb E[\nabla k_3] = \nabla\mathrm{KL}(\rho\,\|\,\pi)",
)

USAGES = ("penalty-k1", "penalty-k2", "penalty-k3", "loss-k1", "loss-k2", "loss-k3")
DERIVATIONS = {d.name: d for d in (penalty_k1, penalty_k2, penalty_k3, loss_k1, loss_k2, loss_k3)}
CLASSIFICATION = {
    "penalty-k1": "grad KL(pi||ref)",
    "penalty-k2": "biased: grad(E_pi[k2] - KL(pi||ref))",
    "penalty-k3": "biased: grad KL(pi||ref) - grad KL(ref||pi)",
    "loss-k1": "zero",
    "loss-k2": "grad KL(pi||ref)",
    "loss-k3": "grad KL(ref||pi)",
}

# ============================================================================ exact leg (n = 3)
_symbols = [*theta, *delta, *rho]


def _gradient_function(expression: sp.Expr) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Lambdify a directional derivative; evaluate along e_0, e_1, e_2 to get the gradient."""
    f = lambdify(_symbols, sp.sympify(expression).doit())

    def gradient(logit: np.ndarray, reference: np.ndarray) -> np.ndarray:
        eye = np.eye(N)
        return np.array([float(f(*logit, *eye[k], *reference)) for k in OUTCOMES])

    return gradient


_conclusions = {name: _gradient_function(DERIVATIONS[name].conclusion) for name in USAGES}
_grad_forward = _gradient_function(grad_forward)
_grad_reverse = _gradient_function(grad_reverse)


def _log_softmax(logit: np.ndarray) -> np.ndarray:
    return logit - np.log(np.sum(np.exp(logit)))  # complex-safe: logits are bounded here


def _k_values(log_pi: np.ndarray, log_ref: np.ndarray) -> dict[str, np.ndarray]:
    log_r = log_ref - log_pi
    return {"k1": -log_r, "k2": log_r**2 / 2, "k3": np.exp(log_r) - 1 - log_r}


STEP = 1e-30  # complex step: f'(x) = Im f(x + i h) / h exactly up to rounding (no cancellation)


def enumerated_gradients(logit: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[6, n]``: each usage's expected gradient, by enumeration over a, complex-step gradients."""
    n_outcomes = len(logit)
    log_ref = np.log(reference)
    log_pi = _log_softmax(logit)
    probabilities = np.exp(log_pi)
    k_at = _k_values(log_pi, log_ref)
    score_rows = np.empty((n_outcomes, n_outcomes))  # [a, b] = d log pi_a / d theta_b
    k_grad = {name: np.empty((n_outcomes, n_outcomes)) for name in k_at}
    for b in range(n_outcomes):
        moved = logit.astype(complex)
        moved[b] += 1j * STEP
        moved_log_pi = _log_softmax(moved)
        score_rows[:, b] = moved_log_pi.imag / STEP
        for name, values in _k_values(moved_log_pi, log_ref).items():
            k_grad[name][:, b] = values.imag / STEP
    rows = [probabilities @ (k_at[name][:, None] * score_rows) for name in ("k1", "k2", "k3")]
    rows += [probabilities @ k_grad[name] for name in ("k1", "k2", "k3")]
    return np.array(rows)


def _potentials(logit: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[F, R, K2] = [KL(pi||rho), KL(rho||pi), E_pi[k2]] at logits theta (complex-safe)."""
    log_pi = _log_softmax(logit)
    log_ref = np.log(reference)
    probabilities = np.exp(log_pi)
    return np.array(
        [
            probabilities @ (log_pi - log_ref),
            reference @ (log_ref - log_pi),
            probabilities @ ((log_pi - log_ref) ** 2 / 2),
        ]
    )


def potential_gradients(logit: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[3, n]`` complex-step gradients of F, R, K2 (independent of the sympy derivations)."""
    out = np.empty((3, len(logit)))
    for b in range(len(logit)):
        moved = logit.astype(complex)
        moved[b] += 1j * STEP
        out[:, b] = _potentials(moved, reference).imag / STEP
    return out


def claimed_gradients(logit: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    """The classification as numbers: each usage's claimed gradient from exact potentials."""
    forward, reverse, k2_mean = potential_gradients(logit, reference)
    return {
        "penalty-k1": forward,
        "penalty-k2": k2_mean - forward,
        "penalty-k3": forward - reverse,
        "loss-k1": np.zeros_like(forward),
        "loss-k2": forward,
        "loss-k3": reverse,
    }


def _example_distance(example: tuple[np.ndarray, np.ndarray]) -> float:
    logit, reference = example
    probabilities = np.exp(_log_softmax(logit))
    return float(probabilities @ (np.log(probabilities) - np.log(reference)))


exact_examples = st.tuples(
    logits(N, max_abs=3.0), probability_vectors(N, allow_zeros=False, min_probability=0.01)
).filter(lambda ex: _example_distance(ex) > 1e-2)


def exact_lhs(example: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Six usages by enumeration, then the gradients of F and R by complex step: ``[8, 3]``."""
    logit, reference = example
    forward, reverse, _ = potential_gradients(logit, reference)
    return np.vstack([enumerated_gradients(logit, reference), forward, reverse])


def exact_rhs(
    example: tuple[np.ndarray, np.ndarray], replace: Mapping[str, Any] | None = None
) -> np.ndarray:
    """The lambdified conclusions (``replace`` maps a usage to a mutant's claimed gradient)."""
    logit, reference = example
    replace = replace or {}
    rows = [
        replace[name](logit, reference) if name in replace else _conclusions[name](logit, reference)
        for name in USAGES
    ]
    return np.vstack([*rows, _grad_forward(logit, reference), _grad_reverse(logit, reference)])


def _rtol(example: tuple[np.ndarray, np.ndarray]) -> float:
    logit, reference = example
    log_pi = _log_softmax(logit)
    probabilities = np.exp(log_pi)
    size = float(
        probabilities @ (1 + np.abs(log_pi - np.log(reference)) ** 2 + reference / probabilities)
    )
    scale = max(float(np.abs(exact_lhs(example)).max()), 1e-300)
    return exact_rtol(max(1.0, size / scale), 3 * N)


# ============================================================================ Monte-Carlo leg
def _mc_effects(example: tuple[np.ndarray, np.ndarray]) -> tuple[float, float, float]:
    """(smallest mutant effect, largest and smallest per-sample sd) for an example, exactly.

    The smallest sd must not be ~0: a component that is constant in exact arithmetic (e.g.
    loss-k3 with a uniform two-outcome policy) carries only rounding noise, whose tiny standard
    error would turn a 1e-13 rounding difference into a huge z.
    """
    logit, reference = example
    forward, reverse, k2_mean = potential_gradients(logit, reference)
    effects = [forward, forward - reverse, reverse, k2_mean - 2 * forward]
    smallest = min(float(np.abs(e).max()) for e in effects)
    probabilities = np.exp(_log_softmax(logit))
    terms = per_sample_terms(example, np.arange(len(logit)))  # [a, 6, n]: each outcome once
    mean = np.einsum("a,aun->un", probabilities, terms)
    sd = np.sqrt(np.einsum("a,aun->un", probabilities, (terms - mean) ** 2))
    return smallest, float(sd.max()), float(sd.min())


def per_sample_terms(
    example: tuple[np.ndarray, np.ndarray],
    actions: np.ndarray,
    estimators: Mapping[str, Callable[..., np.ndarray]] | None = None,
) -> np.ndarray:
    """``[N, 6, n]`` per-sample gradient terms of the six usages at sampled actions.

    Penalty: $k(a)(e_a - \\pi)$. Loss: $k'(\\log\\pi(a))\\,(e_a - \\pi)$, the autodiff gradient
    with $k_1' = 1$, $k_2' = k_1$, $k_3' = 1 - r$ (derivatives in $\\log\\pi(a)$).
    """
    logit, reference = example
    log_pi = _log_softmax(logit)
    probabilities = np.exp(log_pi)
    log_r = np.log(reference[actions]) - log_pi[actions]
    scores = np.eye(len(logit))[actions] - probabilities  # [N, n]
    weights = {
        "penalty-k1": -log_r,
        "penalty-k2": log_r**2 / 2,
        "penalty-k3": np.expm1(log_r) - log_r,
        "loss-k1": np.ones_like(log_r),
        "loss-k2": -log_r,
        "loss-k3": -np.expm1(log_r),
    }
    for name, function in (estimators or {}).items():
        weights[name] = function(log_r)
    return np.stack([weights[name][:, None] * scores for name in USAGES], axis=1)


MC_MIN_EFFECT = 0.1
MC_MAX_SD = 3.0
MC_MIN_SD = 1e-3
N_MC_EXAMPLES = 2
FALSE_ALARM = DEFAULT_FALSE_ALARM
MAX_OUTCOMES = 4
# Power 0.99 for every mutant on every example: the filter guarantees an effect >= 0.1 in some
# component with per-sample sd <= 3; 6 usages x up to 4 outcomes components, 2 examples.
N_SAMPLES = sample_size(
    MC_MIN_EFFECT,
    MC_MAX_SD,
    false_alarm=FALSE_ALARM / N_MC_EXAMPLES,
    n_components=6 * MAX_OUTCOMES,
)

mc_examples = (
    st.integers(2, MAX_OUTCOMES)
    .flatmap(
        lambda size: st.tuples(
            logits(size, max_abs=1.5),
            probability_vectors(size, allow_zeros=False, min_probability=0.05),
        )
    )
    .filter(
        lambda ex: (
            (effects := _mc_effects(ex))[0] >= MC_MIN_EFFECT
            and effects[1] <= MC_MAX_SD
            and effects[2] >= MC_MIN_SD
        )
    )
)


def mc_check(seed: int, variant: Mapping[str, Any] | None) -> LegResult:
    """Sample a ~ pi_theta, average the six usages' gradient terms, test against the claims."""
    variant = variant or {}
    rows, table, passed = [], [], True
    for index, example in enumerate(draw_examples(mc_examples, N_MC_EXAMPLES, seed)):
        logit, reference = example
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        probabilities = np.exp(_log_softmax(logit))
        actions = rng.choice(len(logit), size=N_SAMPLES, p=probabilities)
        terms = per_sample_terms(example, actions, variant.get("estimators"))
        claims = claimed_gradients(logit, reference)
        for name, claim in variant.get("claims", {}).items():
            claims[name] = claim(logit, reference)
        expected = np.stack([claims[name] for name in USAGES])
        result = agreement(
            terms, expected, false_alarm=FALSE_ALARM / N_MC_EXAMPLES, seed=[seed, index]
        )
        passed = passed and result.agrees
        forward = potential_gradients(logit, reference)[0]
        if index == 0:
            for u, name in enumerate(USAGES):
                usage, estimator = name.split("-")
                table.append(
                    {
                        "usage": "penalty (score function)"
                        if usage == "penalty"
                        else "loss (autodiff)",
                        "estimator": estimator,
                        "expected_gradient": CLASSIFICATION[name],
                        "distance_to_grad_kl": float(np.abs(claims[name] - forward).max()),
                        "max_abs_z": float(np.abs(result.z_scores[u]).max()),
                    }
                )
        rows.append(agreement_row(index, result))
    evidence = {
        "false_alarm": FALSE_ALARM,
        "samples_per_example": N_SAMPLES,
        "examples": rows,
        "table": table,
    }
    if passed:
        return LegResult("verified", evidence)
    bad = next(row for row in rows if not row["agrees"])
    return LegResult("failed", evidence, f"estimate disagrees with the claimed gradient: {bad}")


def _forward(logit: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return claimed_gradients(logit, reference)["penalty-k1"]


CLAIMS = (
    Claim(
        id="kl-estimator-gradients",
        title="Which KL estimator gives the KL gradient: k1/k2/k3 as penalty or as loss",
        statement=(
            r"\mathbb E[k_1\nabla\log\pi] = \mathbb E[\nabla k_2] = \nabla\mathrm{KL}(\pi\,\|\,\rho),"
            r"\quad \mathbb E[\nabla k_1] = 0,\quad \mathbb E[\nabla k_3] = \nabla\mathrm{KL}(\rho\,\|\,\pi),"
            r"\quad \mathbb E[k_3\nabla\log\pi] = \nabla\mathrm{KL}(\pi\,\|\,\rho) - \nabla\mathrm{KL}(\rho\,\|\,\pi),"
            r"\quad \mathbb E[k_2\nabla\log\pi] = \nabla(\mathbb E_\pi k_2 - \mathrm{KL}(\pi\,\|\,\rho))"
        ),
        assumptions=(
            "pi_theta is a softmax policy over n outcomes with logits theta; rho is fixed, rho > 0.",
            "Samples a ~ pi_theta; r = rho(a)/pi_theta(a); expectations are over a ~ pi_theta.",
            "Penalty use: no gradient through k (score-function estimator); loss use: gradient "
            "through log pi_theta(a) inside k only, samples held fixed.",
            "The symbolic leg is the fully symbolic instance n = 3 (general n was too slow in "
            "sympy); the exact leg checks n = 3, the Monte-Carlo leg n = 2..4.",
        ),
        references=(
            "Schulman, J., *Approximating KL Divergence*, blog post, 2020, "
            "http://joschu.net/blog/kl-approx.html.",
            "Williams, R. J., *Simple statistical gradient-following algorithms for "
            "connectionist reinforcement learning*, Machine Learning 8, 1992.",
        ),
        symbolic=SymbolicLeg(
            (
                score_lemma,
                expected_score,
                penalty_k1,
                penalty_k2,
                penalty_k3,
                loss_k1,
                loss_k2,
                loss_k3,
            )
        ),
        exact=ExactLeg(
            exact_examples,
            lhs=exact_lhs,
            rhs=exact_rhs,
            rtol=_rtol,
            max_examples=25,
            description=(
                "the six expected gradients by enumeration over a with complex-step per-sample "
                "gradients, and complex-step gradients of KL(pi||rho), KL(rho||pi), vs the "
                "lambdified sympy conclusions"
            ),
        ),
        monte_carlo=MonteCarloLeg(
            mc_check,
            description=(
                "mean per-sample gradient terms of the six usages over a ~ pi_theta vs the "
                "complex-step gradient of the divergence each is claimed to equal"
            ),
        ),
        mutants=(
            Mutant(
                "autodiff-k1-gives-kl-gradient",
                "k1 used as a loss claimed to give grad KL(pi || rho) (it gives 0)",
                symbolic=SymbolicMutation("loss-k1", grad_forward),
                exact=lambda ex: exact_rhs(ex, {"loss-k1": _grad_forward}),
                monte_carlo={"claims": {"loss-k1": _forward}},
            ),
            Mutant(
                "autodiff-k3-gives-forward-kl-gradient",
                "k3 used as a loss claimed to give grad KL(pi || rho) (it gives grad KL(rho || pi))",
                symbolic=SymbolicMutation("loss-k3", grad_forward),
                exact=lambda ex: exact_rhs(ex, {"loss-k3": _grad_forward}),
                monte_carlo={"claims": {"loss-k3": _forward}},
            ),
            Mutant(
                "k3-penalty-gives-kl-gradient",
                "k3 as a reward penalty claimed to give grad KL(pi || rho), because k3 is unbiased",
                symbolic=SymbolicMutation("penalty-k3", grad_forward),
                exact=lambda ex: exact_rhs(ex, {"penalty-k3": _grad_forward}),
                monte_carlo={"claims": {"penalty-k3": _forward}},
            ),
            Mutant(
                "k2-penalty-gives-kl-gradient",
                "k2 as a reward penalty claimed to give grad KL(pi || rho)",
                symbolic=SymbolicMutation("penalty-k2", grad_forward),
                exact=lambda ex: exact_rhs(ex, {"penalty-k2": _grad_forward}),
                monte_carlo={"claims": {"penalty-k2": _forward}},
            ),
            Mutant(
                "k1-penalty-sign-flipped",
                "penalty log r instead of -log r (ratio inverted): gives -grad KL, claimed grad KL",
                symbolic=SymbolicMutation("penalty-k1", -grad_forward),
                exact=lambda ex: exact_rhs(
                    ex, {"penalty-k1": lambda t, r: -_conclusions["penalty-k1"](t, r)}
                ),
                monte_carlo={"estimators": {"penalty-k1": lambda log_r: log_r}},
            ),
        ),
        notes=(
            "The Monte-Carlo leg's evidence holds the classification table (usage x estimator "
            "-> the gradient it equals, its distance to grad KL(pi||rho), and the MC |z|)."
        ),
    ),
)
