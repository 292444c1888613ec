r"""Gradients of the KL estimators k1, k2, k3: as a reward penalty and as a loss, for every n.

Main statements. For a family of distributions $\pi_\theta$ on $n + 1$ outcomes, a fixed
reference $\rho$ ($= \pi_\mathrm{ref}$), samples $a \sim \pi_\theta$, $r(a) = \rho(a)/\pi_\theta(a)$
and the estimators $k_1 = -\log r$, $k_2 = \tfrac12(\log r)^2$, $k_3 = (r - 1) - \log r$ of
$F(\theta) = \mathrm{KL}(\pi_\theta \,\|\, \rho)$ (Schulman 2020 with $q = \pi_\theta$ sampled
and $p = \rho$), write $R(\theta) = \mathrm{KL}(\rho\,\|\,\pi_\theta)$ and
$K_2(\theta) = \mathbb E_{\pi_\theta}[k_2]$. Then

| usage | $k_1$ | $k_2$ | $k_3$ |
|---|---|---|---|
| (a) penalty, score function $\mathbb E[k\,\nabla\log\pi_\theta]$ | $\nabla F$ | $\nabla(K_2 - F)$: biased | $\nabla F - \nabla R$: biased |
| (b) loss, autodiff $\mathbb E[\nabla_\theta k]$ | $0$ | $\nabla F$ | $\nabla R$ (the KL the other way round) |

Conventions. $\mathrm{KL}(\pi\,\|\,\rho) = \sum_a \pi(a)\log(\pi(a)/\rho(a))$; samples from
$\pi_\theta$; $\log r = \log\rho(a) - \log\pi_\theta(a)$ (``reference_log_probs - log_probs`` of
:mod:`rlmath.reference`). (a): $k$ is a reward, detached, no gradient flows through it;
(b): the samples are fixed, the gradient flows through $\log\pi_\theta(a)$ inside $k$ only
(not through the sampling).

Proof sketch. A gradient is determined by its directional derivatives, so fix a direction and
write $s_a = \frac{d}{dh}\log\pi_a$ for the score along it. Every score has mean zero,
$\mathbb E_\pi[s] = \sum_a \frac{d\pi_a}{dh} = \frac{d}{dh}\sum_a \pi_a = 0$, hence
$s_a = c_a - \bar c$ with $c = s$ and $\bar c = \sum_b \pi_b c_b / \sum_b \pi_b$; conversely
every such vector is the score of the softmax family along $\delta = c$ (lemma
``softmax-score``). The derivations take $\pi_a > 0$, $\rho_a > 0$, $c_a$ real and $n$
arbitrary, with $s_a = c_a - \bar c$, so $\mathbb E_\pi[s] = 0$ is an identity (lemma
``expected-score``). A directional derivative of a function of $\pi$ depends only on the tangent
$d\pi_a = \pi_a s_a$; it is computed along the curve $\pi_a(h) = \pi_a e^{h s_a}$, which has
that tangent (lemma ``score``). Then $\nabla F = \mathbb E_\pi[(k_1 + 1) s] = \mathbb E_\pi[k_1 s]$,
$\nabla R = -\sum_a \rho_a s_a$, $\nabla K_2 = \mathbb E_\pi[(k_2 + k_1) s]$; $\nabla k_1 = s$,
$\nabla k_2 = k_1 s$, $\nabla k_3 = (1 - r)s$, and $k_3 = k_1 + r - 1$ for (a).

References. Schulman, J., "Approximating KL Divergence", blog post, 2020 (k1, k2, k3).
Williams, R. J., "Simple statistical gradient-following algorithms for connectionist
reinforcement learning", *Machine Learning* 8, 1992 (the score-function gradient).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
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
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    agreement_row,
    draw_examples,
    row_steps,
    shifted_control,
)
from rlmath.reference import kl_estimator_k1, kl_estimator_k2, kl_estimator_k3
from rlmath.statistics import DEFAULT_FALSE_ALARM, agreement, sample_size
from rlmath.symbolic import IndexSum
from rlmath.testing import logits, probability_vectors
from rlmath.tolerances import exact_rtol

# ============================================================================ symbols (general n)
# n + 1 >= 2 outcomes: with one outcome every score is 0 and every row vanishes, so the
# random-point refutation of a mutant (sizes drawn small) would meet a point where it holds.
n = sp.Symbol("n", integer=True, positive=True)
a = sp.Symbol("a", integer=True)
b = sp.Symbol("b", integer=True)
pi = sp.IndexedBase("pi", positive=True)  # pi_theta(a) at the current theta
rho = sp.IndexedBase("rho", positive=True)  # the reference; the identities need no sum = 1
c = sp.IndexedBase("c", real=True)  # the score is c - mean(c): any mean-zero vector
theta = sp.IndexedBase("theta", real=True)  # softmax logits (lemma 'softmax-score')
delta = sp.IndexedBase("delta", real=True)  # a direction in logit space
h = sp.Symbol("h", real=True)  # the step along the direction
ZERO = sp.Integer(0)


def over(term: sp.Expr, index: sp.Symbol = a) -> sp.Expr:
    r"""$\sum_{\text{index}=0}^{n}$ term over the $n + 1$ outcomes (unevaluated)."""
    return IndexSum(term, (index, 0, n))


#: $\bar c = \sum_b \pi_b c_b / \sum_b \pi_b$ ($= \mathbb E_\pi[c]$ for a probability vector).
mean_c = over(pi[b] * c[b], b) / over(pi[b], b)


def score(i: sp.Expr = a) -> sp.Expr:
    r"""$s_i = c_i - \bar c$: the score $\frac{d}{dh}\log\pi_i$ along the direction."""
    return c[i] - mean_c


def moved(i: sp.Expr = a) -> sp.Expr:
    r"""$\pi_i(h) = \pi_i e^{h s_i}$: a curve through $\pi$ with tangent $\pi_i s_i$."""
    return pi[i] * sp.exp(h * score(i))


def at_zero(expression: sp.Expr) -> sp.Subs:
    r"""$\frac{d}{dh}$ expression at $h = 0$: the directional derivative."""
    return sp.Subs(sp.Derivative(expression, h), h, 0)


def expect(term: sp.Expr) -> sp.Expr:
    r"""$\mathbb E_{a\sim\pi}[\text{term}] = \sum_a \pi_a\, \text{term}_a$."""
    return over(pi[a] * term)


def k1(step: sp.Expr | None = None) -> sp.Expr:
    r"""$k_1(a) = -\log r = \log(\pi_a/\rho_a)$ (along the curve if ``step`` is $h$)."""
    probability = pi[a] if step is None else moved(a)
    return sp.log(probability / rho[a])


def k2(step: sp.Expr | None = None) -> sp.Expr:
    return k1(step) ** 2 / 2


def k3(step: sp.Expr | None = None) -> sp.Expr:
    probability = pi[a] if step is None else moved(a)
    return rho[a] / probability - 1 + k1(step)


d_log_pi = at_zero(sp.log(moved(a)))

#: Directional derivatives of the potentials F = KL(pi||rho), R = KL(rho||pi), K2 = E_pi[k2].
grad_forward = at_zero(over(moved(a) * k1(h)))
grad_reverse = at_zero(over(rho[a] * sp.log(rho[a] / moved(a))))
grad_k2_mean = at_zero(over(moved(a) * k2(h)))
#: ... and evaluated (the product and chain rules done), lambdifiable.
GRADIENTS = {
    "F": expect((k1() + 1) * score()),
    "R": -over(rho[a] * score()),
    "K2": expect((k2() + k1()) * score()),
}

# ============================================================================ lemmas
score_lemma = Derivation(
    "score",
    (
        Step(d_log_pi, "d/dh log pi_a(h) at h = 0 along the curve pi_a(h) = pi_a e^(h s_a)"),
        Step(at_zero(sp.log(pi[a]) + h * score()), "log(pi_a e^(h s_a)) = log pi_a + h s_a"),
        Step(score(), "d/dh (log pi_a + h s_a) = s_a"),
    ),
    statement=r"\tfrac{d}{dh}\log\pi_a(h)\big|_0 = s_a",
)

expected_score = Derivation(
    "expected-score",
    (
        Step(expect(score()), "E_pi[s] = sum_a pi_a (c_a - mean c)"),
        Step(expect(c[a]) - mean_c * over(pi[a]), "linearity of the sum"),
        Step(ZERO, "mean c = sum_b pi_b c_b / sum_b pi_b"),
    ),
    statement=r"\mathbb E_\pi[s] = 0",
)

softmax_score = Derivation(
    "softmax-score",
    (
        Step(
            at_zero(
                sp.log(sp.exp(theta[a] + h * delta[a]) / over(sp.exp(theta[b] + h * delta[b]), b))
            ),
            "the softmax policy moved along delta: d/dh log pi_{theta + h delta}(a) at h = 0",
        ),
        Step(
            at_zero(theta[a] + h * delta[a] - sp.log(over(sp.exp(theta[b] + h * delta[b]), b))),
            "log softmax = theta_a + h delta_a - log Z",
        ),
        Step(
            delta[a] - over(sp.exp(theta[b]) * delta[b], b) / over(sp.exp(theta[b]), b),
            "d log Z / dh = sum_b delta_b e^(theta_b) / Z at h = 0: the form c - mean c with "
            "c = delta and pi proportional to e^theta",
        ),
    ),
    statement=r"\tfrac{d}{dh}\log\pi_{\theta+h\delta}(a)\big|_0 = \delta_a - \mathbb E_\pi[\delta]",
)

# ============================================================================ the classification
# One row per usage: (a) penalties E[k grad log pi] (score function, no gradient through k),
# (b) losses E[grad k] (samples fixed, the gradient through log pi(a) inside k only).
USAGES = ("penalty-k1", "penalty-k2", "penalty-k3", "loss-k1", "loss-k2", "loss-k3")
#: Each row's conclusion: the directional derivatives of the potentials, evaluated (the
#: statement's right-hand side, written with the potentials, is proved equal to this column).
EXPLICIT = {
    "penalty-k1": GRADIENTS["F"],
    "penalty-k2": GRADIENTS["K2"] - GRADIENTS["F"],
    "penalty-k3": GRADIENTS["F"] - GRADIENTS["R"],
    "loss-k1": ZERO,
    "loss-k2": GRADIENTS["F"],
    "loss-k3": GRADIENTS["R"],
}


CHAINS: dict[str, tuple[tuple[sp.Expr, str], ...]] = {
    "penalty-k1": (
        (expect(k1() * d_log_pi), "E[k1 grad log pi]"),
        (
            EXPLICIT["penalty-k1"],
            "lemma 'score' (d log pi_a = s_a), and E_pi[s] = 0 added (lemma 'expected-score')",
        ),
    ),
    "penalty-k2": (
        (expect(k2() * d_log_pi), "E[k2 grad log pi]"),
        (expect(k2() * score()), "lemma 'score'"),
        (
            EXPLICIT["penalty-k2"],
            "add and subtract E[(k1 + 1) s], with E_pi[s] = 0 (lemma 'expected-score')",
        ),
    ),
    "penalty-k3": (
        (expect(k3() * d_log_pi), "E[k3 grad log pi]"),
        (over((rho[a] - pi[a] + pi[a] * k1()) * score()), "lemma 'score', and pi r = rho"),
        (EXPLICIT["penalty-k3"], "E_pi[s] = 0 (lemma 'expected-score')"),
    ),
    "loss-k1": (
        (expect(at_zero(k1(h))), "E[grad k1], samples fixed"),
        (expect(score()), "d k1 = d log pi = s (lemma 'score')"),
        (EXPLICIT["loss-k1"], "E_pi[s] = 0 (lemma 'expected-score')"),
    ),
    "loss-k2": (
        (expect(at_zero(k2(h))), "E[grad k2], samples fixed"),
        (expect(k1() * score()), "chain rule: d (k1^2/2) = k1 s"),
        (EXPLICIT["loss-k2"], "E_pi[s] = 0 added (lemma 'expected-score')"),
    ),
    "loss-k3": (
        (expect(at_zero(k3(h))), "E[grad k3], samples fixed"),
        (over((pi[a] - rho[a]) * score()), "d(rho/pi) = -(rho/pi) s and d k1 = s; weight pi"),
        (EXPLICIT["loss-k3"], "E_pi[s] = 0 (lemma 'expected-score')"),
    ),
}


def explicit_column(**rows_: sp.Expr) -> sp.Matrix:
    """The explicit conclusion with some rows replaced (by usage, ``penalty_k1=...``): a mutant."""
    values = dict(EXPLICIT)
    for name, value in rows_.items():
        values[name.replace("_", "-")] = value
    return sp.Matrix([values[name] for name in USAGES])


classification = Derivation(
    "classification",
    row_steps(*(CHAINS[name] for name in USAGES)),
    statement=(
        r"\mathbb E[k_1\nabla\log\pi] = \mathbb E[\nabla k_2] = \nabla\mathrm{KL}(\pi\,\|\,\rho),"
        r"\ \mathbb E[\nabla k_1] = 0,\ \mathbb E[\nabla k_3] = \nabla\mathrm{KL}(\rho\,\|\,\pi),"
        r"\ \mathbb E[k_3\nabla\log\pi] = \nabla\mathrm{KL}(\pi\,\|\,\rho) - \nabla\mathrm{KL}(\rho\,\|\,\pi),"
        r"\ \mathbb E[k_2\nabla\log\pi] = \nabla(\mathbb E_\pi k_2 - \mathrm{KL}(\pi\,\|\,\rho))"
    ),
)

usages_statement = sp.Matrix([CHAINS[name][0][0] for name in USAGES])
classification_statement = sp.Matrix(
    [
        grad_forward,
        grad_k2_mean - grad_forward,
        grad_forward - grad_reverse,
        ZERO,
        grad_forward,
        grad_reverse,
    ]
)

# ============================================================================ exact leg
# An example is (theta, rho, delta): logits, a reference and a direction, n + 1 = 2..6
# outcomes. The leg compares the six usages along delta, by enumeration over a -- the penalty
# rows with the values of rlmath.reference.kl_estimator_k1/k2/k3 and complex-step derivatives of
# log softmax along delta, the loss rows with complex-step derivatives of each k's definition
# -- with the lambdified conclusion of 'classification' at pi = softmax(theta), rho, c = delta
# (lemma 'softmax-score': the softmax score along delta is delta - E_pi[delta]).
STEP = 1e-30  # complex step: f'(x) = Im f(x + i h) / h exactly up to rounding (no cancellation)
REFERENCE_ESTIMATORS = {"k1": kl_estimator_k1, "k2": kl_estimator_k2, "k3": kl_estimator_k3}


def _log_softmax(logit: np.ndarray) -> np.ndarray:
    shifted = logit - logit.real.max()
    return shifted - np.log(np.sum(np.exp(shifted)))  # complex-safe


def _k_definitions(log_pi: np.ndarray, log_ref: np.ndarray) -> dict[str, np.ndarray]:
    """k1, k2, k3 written out (complex-safe, for the complex step of the loss rows)."""
    log_r = log_ref - log_pi
    return {"k1": -log_r, "k2": log_r**2 / 2, "k3": np.exp(log_r) - 1 - log_r}


def enumerated_usages(example: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """``[6, 1]``: each usage's expected directional derivative, by enumeration over a.

    Penalty rows: sum_a pi_a k(a) d log pi_a, with k(a) from rlmath.reference (the estimators
    under test) and d log pi_a a complex step of log softmax along delta. Loss rows:
    sum_a pi_a d k(a), a complex step of each k's definition. No formula of the derivation is
    used.
    """
    logit, reference, direction = example
    log_ref = np.log(reference)
    log_pi = _log_softmax(logit)
    probabilities = np.exp(log_pi)
    moved_log_pi = _log_softmax(logit + 1j * STEP * direction)
    d_log_pi = moved_log_pi.imag / STEP
    d_k = {
        name: values.imag / STEP for name, values in _k_definitions(moved_log_pi, log_ref).items()
    }
    out = [
        probabilities @ (REFERENCE_ESTIMATORS[name](log_pi, log_ref) * d_log_pi)
        for name in ("k1", "k2", "k3")
    ]
    out += [probabilities @ d_k[name] for name in ("k1", "k2", "k3")]
    return np.array(out)[:, None]


def exact_arguments(
    example: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Values of (pi, rho, c, n): pi = softmax(theta), c = delta, n + 1 outcomes."""
    logit, reference, direction = example
    return np.exp(_log_softmax(logit)), reference, direction, len(logit) - 1


def _example_distance(example: tuple[np.ndarray, ...]) -> float:
    logit, reference = example[:2]
    probabilities = np.exp(_log_softmax(logit))
    return float(probabilities @ (np.log(probabilities) - np.log(reference)))


MAX_EXACT_OUTCOMES = 6
exact_examples = (
    st.integers(2, MAX_EXACT_OUTCOMES)
    .flatmap(
        lambda size: st.tuples(
            logits(size, max_abs=3.0),
            probability_vectors(size, allow_zeros=False, min_probability=0.01),
            logits(size, max_abs=1.0).filter(lambda d: np.ptp(d) >= 0.1),
        )
    )
    .filter(lambda ex: _example_distance(ex) > 1e-2)
)


def _error_scale(example: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    # Every row sums terms pi_a (|k| + ...) |s_a| with |s_a| <= 2 max|delta|, the k's at most
    # 1 + |log(pi/rho)|^2 + rho/pi: errors are measured against the size of these terms.
    logit, reference, direction = example
    log_pi = _log_softmax(logit)
    probabilities = np.exp(log_pi)
    size = float(
        probabilities @ (1 + np.abs(log_pi - np.log(reference)) ** 2 + reference / probabilities)
    )
    return 2.0 * float(np.abs(direction).max()) * size


def _exact_rtol(example: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    # sums of n + 1 terms, each with the mean of the direction (another n + 1 terms), 3 sums
    return exact_rtol(1.0, 3 * len(example[0]) ** 2)


# ============================================================================ Monte-Carlo leg
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


CLASSIFICATION = {
    "penalty-k1": "grad KL(pi||ref)",
    "penalty-k2": "biased: grad(E_pi[k2] - KL(pi||ref))",
    "penalty-k3": "biased: grad KL(pi||ref) - grad KL(ref||pi)",
    "loss-k1": "zero",
    "loss-k2": "grad KL(pi||ref)",
    "loss-k3": "grad KL(ref||pi)",
}


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
    sampled, ref = log_pi[actions], np.log(reference[actions])
    weights = {  # the penalties and k2' = k1 from rlmath.reference (the estimators under test)
        "penalty-k1": kl_estimator_k1(sampled, ref),
        "penalty-k2": kl_estimator_k2(sampled, ref),
        "penalty-k3": kl_estimator_k3(sampled, ref),
        "loss-k1": np.ones_like(log_r),
        "loss-k2": kl_estimator_k1(sampled, ref),
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


@cache
def _mc_draws(seed: int) -> tuple[tuple[tuple[np.ndarray, np.ndarray], np.ndarray], ...]:
    """The examples of ``seed`` and the actions a ~ pi_theta drawn for each (shared by the true
    claim and its variants, which see the same draws; each run recomputes its terms)."""
    out = []
    for index, example in enumerate(draw_examples(mc_examples, N_MC_EXAMPLES, seed)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        probabilities = np.exp(_log_softmax(example[0]))
        out.append((example, rng.choice(len(probabilities), size=N_SAMPLES, p=probabilities)))
    return tuple(out)


def mc_check(seed: int, variant: Mapping[str, Any] | None) -> LegResult:
    """Sample a ~ pi_theta, average the six usages' gradient terms, test against the claims.

    On the true claim, the terms of each example moved by a few standard errors must be
    rejected (the control, :func:`rlmath.claims.shifted_control`).
    """
    true_claim = variant is None
    variant = variant or {}
    rows, table, controls, passed = [], [], [], True
    for index, (example, actions) in enumerate(_mc_draws(seed)):
        logit, reference = example
        terms = per_sample_terms(example, actions, variant.get("estimators"))
        claims = claimed_gradients(logit, reference)
        for name, claim in variant.get("claims", {}).items():
            claims[name] = claim(logit, reference)
        expected = np.stack([claims[name] for name in USAGES])
        alpha = FALSE_ALARM / N_MC_EXAMPLES
        result = agreement(terms, expected, false_alarm=alpha, seed=[seed, index])
        passed = passed and result.agrees
        if true_claim:
            controls.append(
                shifted_control(terms, expected, result, false_alarm=alpha, seed=[seed, index])
            )
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
    evidence: dict[str, Any] = {
        "false_alarm": FALSE_ALARM,
        "samples_per_example": N_SAMPLES,
        "examples": rows,
        "table": table,
    }
    if true_claim:
        evidence["control"] = {"shift_in_critical_se": 2.0, "rejected": all(controls)}
    if passed:
        return LegResult("verified", evidence)
    bad = next(row for row in rows if not row["agrees"])
    return LegResult("failed", evidence, f"estimate disagrees with the claimed gradient: {bad}")


def _forward(logit: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return claimed_gradients(logit, reference)["penalty-k1"]


def _minus_reverse(logit: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return -claimed_gradients(logit, reference)["loss-k3"]


CLAIMS = (
    Claim(
        id="kl-estimator-gradients",
        title="Which KL estimator gives the KL gradient: k1/k2/k3 as penalty or as loss",
        statement=Statement(
            usages_statement,
            classification_statement,
            derivation="classification",
            where=(
                r"a = 0..n;\ \text{rows: } k_1, k_2, k_3 \text{ as a penalty } \mathbb E_{a\sim\pi}"
                r"[k(a)\, \tfrac{d}{dh}\log\pi_a], \text{ then as a loss } \mathbb E_{a\sim\pi}"
                r"[\tfrac{d}{dh} k(a)];\ k_1 = \log\tfrac{\pi}{\rho},\ k_2 = \tfrac12 k_1^2,"
                r"\ k_3 = \tfrac{\rho}{\pi} - 1 + k_1;\ \tfrac{d}{dh}\big|_{h=0} \text{ along "
                r"any direction, score } s_a = c_a - \bar c,\ \pi_a(h) = \pi_a e^{h s_a}"
            ),
            symbol_names={rho.label: r"\rho"},
        ),
        assumptions=(
            "pi_theta is a smooth family of distributions on n + 1 >= 2 outcomes, positive on "
            "every outcome; rho (= pi_ref) is fixed and positive. The derivations hold for "
            "every n (sums over a = 0..n with a symbolic n).",
            "The score along a direction, s_a = d log pi_a / dh, has E_pi[s] = d/dh sum_a "
            "pi_a = 0; every such vector is c - mean_pi(c) for c = s, which is how the "
            "derivations write it, so E_pi[s] = 0 is proved (lemma 'expected-score') rather "
            "than assumed. Lemma 'softmax-score' shows the softmax policy's score along delta "
            "is of this form with c = delta (the exact and Monte-Carlo legs use softmax).",
            "A directional derivative of a function of pi depends only on the tangent "
            "d pi_a = pi_a s_a; the derivations compute it along the curve pi_a e^(h s_a), "
            "which has that tangent (chain rule).",
            "Samples a ~ pi_theta; r = rho(a)/pi_theta(a); expectations are over a ~ pi_theta.",
            "Penalty use: no gradient through k (score-function estimator, k detached); loss "
            "use: gradient through log pi_theta(a) inside k only, samples held fixed.",
            "The exact leg checks n + 1 = 2..6 outcomes, the Monte-Carlo leg 2..4.",
        ),
        references=(
            "Schulman, J., *Approximating KL Divergence*, blog post, 2020, "
            "http://joschu.net/blog/kl-approx.html.",
            "Williams, R. J., *Simple statistical gradient-following algorithms for "
            "connectionist reinforcement learning*, Machine Learning 8, 1992.",
        ),
        summary=(
            "For the gradient of KL(pi || pi_ref) with samples from pi, use k1 as a detached "
            "reward penalty or k2 as a loss; k3, unbiased as a value, gives the gradient of "
            "KL(pi_ref || pi) as a loss and a biased one as a penalty, and k1 as a loss gives 0."
        ),
        symbolic=SymbolicLeg((classification, score_lemma, expected_score, softmax_score)),
        exact=ExactLeg(
            exact_examples,
            lhs=enumerated_usages,
            symbols=(pi, rho, c, n),
            arguments=exact_arguments,
            rtol=_exact_rtol,
            error_scale=_error_scale,
            max_examples=25,
            description=(
                "the six expected directional derivatives of a softmax policy along delta by "
                "enumeration over a (penalty rows: rlmath.reference.kl_estimator_k1/k2/k3 "
                "times complex-step derivatives of log softmax; loss rows: complex-step "
                "derivatives of each k), vs the lambdified conclusion of 'classification' at "
                "pi = softmax(theta), c = delta"
            ),
        ),
        monte_carlo=MonteCarloLeg(
            mc_check,
            description=(
                "mean per-sample gradient terms of the six usages over a ~ pi_theta (the k's "
                "from rlmath.reference) vs the complex-step gradient of the divergence each is "
                "claimed to equal"
            ),
        ),
        mutants=(
            Mutant(
                "autodiff-k1-gives-kl-gradient",
                "k1 used as a loss claimed to give grad KL(pi || rho) (it gives 0)",
                symbolic=SymbolicMutation(
                    "classification", explicit_column(loss_k1=GRADIENTS["F"])
                ),
                monte_carlo={"claims": {"loss-k1": _forward}},
            ),
            Mutant(
                "autodiff-k3-gives-forward-kl-gradient",
                "k3 used as a loss claimed to give grad KL(pi || rho) (it gives grad KL(rho || pi))",
                symbolic=SymbolicMutation(
                    "classification", explicit_column(loss_k3=GRADIENTS["F"])
                ),
                monte_carlo={"claims": {"loss-k3": _forward}},
            ),
            Mutant(
                "autodiff-k3-derivative-sign",
                "d k3 / d log pi taken as r - 1 instead of 1 - r: k3 as a loss claimed to give "
                "-grad KL(rho || pi)",
                symbolic=SymbolicMutation(
                    "classification", explicit_column(loss_k3=-GRADIENTS["R"])
                ),
                monte_carlo={"estimators": {"loss-k3": np.expm1}},
            ),
            Mutant(
                "k3-penalty-gives-kl-gradient",
                "k3 as a reward penalty claimed to give grad KL(pi || rho), because k3 is unbiased",
                symbolic=SymbolicMutation(
                    "classification", explicit_column(penalty_k3=GRADIENTS["F"])
                ),
                monte_carlo={"claims": {"penalty-k3": _forward}},
            ),
            Mutant(
                "k2-penalty-gives-kl-gradient",
                "k2 as a reward penalty claimed to give grad KL(pi || rho)",
                symbolic=SymbolicMutation(
                    "classification", explicit_column(penalty_k2=GRADIENTS["F"])
                ),
                monte_carlo={"claims": {"penalty-k2": _forward}},
            ),
            Mutant(
                "k1-penalty-sign-flipped",
                "penalty log r instead of -log r (ratio inverted): gives -grad KL, claimed grad KL",
                symbolic=SymbolicMutation(
                    "classification", explicit_column(penalty_k1=-GRADIENTS["F"])
                ),
                monte_carlo={"estimators": {"penalty-k1": lambda log_r: log_r}},
            ),
        ),
        notes=(
            "The derivations are general in the number of outcomes: probabilities $\\pi_a$ and "
            "$\\rho_a$ are positive symbols, the score is $s_a = c_a - \\bar c$ (every score has "
            "mean zero and every mean-zero vector is of this form), and derivatives are taken "
            "along the curve $\\pi_a e^{h s_a}$, whose tangent is the family's. The derivation "
            "`classification` walks each row to the derivative of a potential and ends with "
            "those derivatives evaluated (lambdified for the exact leg, which compares them "
            "with the usages of a softmax policy computed by enumeration along a random "
            "direction). The penalty rows of the exact leg and the Monte-Carlo terms use "
            "`rlmath.reference.kl_estimator_k1/k2/k3`, so a wrong estimator there fails this "
            "claim. The Monte-Carlo leg's evidence holds the classification table (usage x "
            "estimator -> the gradient it equals, its distance to grad KL(pi||rho), and the MC "
            "|z|).\n\n"
            "**At sequence level** (a response $y = y_1 \\dots y_T$ sampled from $\\pi$, "
            "$\\ell_t = \\log\\pi(y_t \\mid y_{<t}) - \\log\\mathrm{ref}(y_t \\mid y_{<t})$, $s_t$ the "
            "token scores, $M = \\mathbb E[\\sum_t s_t \\sum_{t' > t} \\ell_{t'}]$), the per-token "
            "placements of the LLM-RL libraries follow (claims in `proofs/llm_sequence_kl.py`):\n\n"
            "| usage | expected gradient | claim |\n"
            "|---|---|---|\n"
            "| per-token $k_1$ in the loss | $0$ | `llm-token-k1-loss-zero-gradient` |\n"
            "| per-token $k_1$ in the reward, summed to go (times $-\\beta$) | "
            "$-\\beta\\nabla\\mathrm{KL}_\\mathrm{seq}(\\pi\\Vert \\mathrm{ref})$, exact | "
            "`llm-k1-reward-to-go-sequence-kl-gradient` |\n"
            "| per-token $k_1$ in the reward, not summed to go | "
            "$-\\beta(\\nabla\\mathrm{KL}_\\mathrm{seq} - M)$ | "
            "`llm-k1-reward-to-go-sequence-kl-gradient` (mutant) |\n"
            "| per-token $k_2$ in the loss | $\\nabla\\mathrm{KL}_\\mathrm{seq} - M$ (prefixes "
            "frozen; Tang & Munos 2025) | `llm-token-k2-loss-partial-kl-gradient` |\n"
            "| sequence $k_2 = \\frac12(\\sum_t \\ell_t)^2$ in the loss | "
            "$\\nabla\\mathrm{KL}_\\mathrm{seq}(\\pi\\Vert \\mathrm{ref})$ | "
            "`llm-token-k2-loss-partial-kl-gradient` (variant) |\n"
            "| per-token $k_3$ in the loss (GRPO) | $\\sum_h d_\\pi(h)\\nabla\\mathrm{KL}"
            "(\\mathrm{ref}(\\cdot \\mid h)\\Vert \\pi(\\cdot \\mid h))$, $d_\\pi$ frozen | "
            "`llm-token-k3-loss-per-token-forward-kl` |\n"
            "| per-token $k_3$ times the detached prefix ratio, or sequence $k_3$ | "
            "$\\nabla\\mathrm{KL}_\\mathrm{seq}(\\mathrm{ref}\\Vert \\pi)$ | "
            "`llm-token-k3-loss-per-token-forward-kl` (variants) |"
        ),
    ),
)
