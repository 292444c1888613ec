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
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    agreement_row,
    draw_examples,
    row_steps,
    shifted_control,
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


# ============================================================================ notation
# The statement and the potentials are written with pi(a), pi_{theta + h delta}(a) and rho(a) as
# functions of a summed outcome a; they evaluate to the instance's expressions term by term.
class Policy(sp.Function):  # type: ignore[misc]
    r"""$\pi_{\theta + h\delta}(a)$ of the instance; arguments (a, h, theta_0..2, delta_0..2).

    Printed $\pi(a)$ at $h = 0$; once $a$ is an integer (``Sum.doit``, a random point) it is
    the softmax expression, which is how the statement is proved equal to the derivation.
    """

    @classmethod
    def eval(cls, a: sp.Expr, step: sp.Expr, *parameters: sp.Expr) -> sp.Expr | None:
        if not a.is_Integer:
            return None
        logit, direction = parameters[:N], parameters[N:]
        weights = [sp.exp(logit[b] + step * direction[b]) for b in OUTCOMES]
        return weights[int(a)] / sum(weights)

    def _eval_is_positive(self) -> bool:
        return True

    def _latex(self, printer) -> str:  # type: ignore[no-untyped-def]
        a = printer._print(self.args[0])
        if self.args[1] == 0:
            return rf"\pi({a})"
        return rf"\pi_{{\theta + {printer._print(self.args[1])}\delta}}({a})"


class Reference(sp.Function):  # type: ignore[misc]
    r"""$\rho(a)$ of the instance; arguments (a, rho_0..2)."""

    @classmethod
    def eval(cls, a: sp.Expr, *weights: sp.Expr) -> sp.Expr | None:
        return weights[int(a)] if a.is_Integer else None

    def _eval_is_positive(self) -> bool:
        return True

    def _latex(self, printer) -> str:  # type: ignore[no-untyped-def]
        return rf"\rho({printer._print(self.args[0])})"


_a = sp.Symbol("a", integer=True, nonnegative=True)


def _pi_h(step: sp.Expr = ZERO) -> sp.Expr:
    return Policy(_a, step, *theta, *delta)


_rho_a = Reference(_a, *rho)


def _k(name: str, step: sp.Expr = ZERO) -> sp.Expr:
    k1 = sp.log(_pi_h(step) / _rho_a)
    return {"k1": k1, "k2": k1**2 / 2, "k3": _rho_a / _pi_h(step) - 1 + k1}[name]


class OutcomeSum(sp.Sum):  # type: ignore[misc]
    r"""$\sum_{a=0}^{n-1}$ that, with numeric bounds, substitutes each outcome *before* evaluating.

    ``Sum.doit`` evaluates its summand first, while the outcome is still a symbol (so the chain
    rule meets $\pi(a)$ unevaluated); substituting first turns each term into exactly the
    instance's expression, so the statement meets the derivation term by term.
    """

    def doit(self, **hints: Any) -> sp.Expr:
        ((index, low, high),) = self.limits
        if not (low.is_Integer and high.is_Integer):
            return super().doit(**hints)
        terms = (
            self.function.xreplace({index: sp.Integer(k)}) for k in range(int(low), int(high) + 1)
        )
        return sp.Add(*(term.doit(**hints) for term in terms))


def _over_outcomes(term: sp.Expr) -> sp.Sum:
    return OutcomeSum(term, (_a, 0, N - 1))


#: Directional derivatives of the three potentials: F = KL(pi||rho), R = KL(rho||pi), K2 = E_pi[k2].
grad_forward = at_zero(_over_outcomes(_pi_h(h) * _k("k1", h)))
grad_reverse = at_zero(_over_outcomes(_rho_a * sp.log(_rho_a / _pi_h(h))))
grad_k2_mean = at_zero(_over_outcomes(_pi_h(h) * _k("k2", h)))

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

# ============================================================================ the classification
# One row per usage: (a) penalties E[k grad log pi] (score function, no gradient through k),
# (b) losses E[grad k] (samples fixed, the gradient through log pi(a) inside k only).
USAGES = ("penalty-k1", "penalty-k2", "penalty-k3", "loss-k1", "loss-k2", "loss-k3")
CHAINS: dict[str, tuple[tuple[sp.Expr, str], ...]] = {
    "penalty-k1": (
        (expect(lambda a: log_ratio_k1(a) * at_zero(sp.log(pi(a, h)))), "E[k1 grad log pi]"),
        (expect(lambda a: log_ratio_k1(a) * score(a)), "lemma 'score'"),
        (grad_forward, "product rule: dF = E[s k1] + E[s], and E[s] = 0 (lemma 'expected-score')"),
    ),
    "penalty-k2": (
        (expect(lambda a: k2(a) * at_zero(sp.log(pi(a, h)))), "E[k2 grad log pi]"),
        (expect(lambda a: k2(a) * score(a)), "lemma 'score'"),
        (
            grad_k2_mean - expect(lambda a: log_ratio_k1(a) * score(a)),
            "product rule: d E_pi[k2] = E[k2 s] + E[k1 s], since d k2 = k1 s",
        ),
        (grad_k2_mean - grad_forward, "E[k1 s] = grad KL(pi || rho) (row 1)"),
    ),
    "penalty-k3": (
        (expect(lambda a: k3(a) * at_zero(sp.log(pi(a, h)))), "E[k3 grad log pi]"),
        (
            sum((rho[a] - pi(a) + pi(a) * log_ratio_k1(a)) * score(a) for a in OUTCOMES),
            "lemma 'score', and pi r = rho",
        ),
        (
            sum(rho[a] * score(a) for a in OUTCOMES) + expect(lambda a: log_ratio_k1(a) * score(a)),
            "E_pi[s] = 0 (lemma 'expected-score')",
        ),
        (
            grad_forward - grad_reverse,
            "d KL(rho || pi) = -sum_a rho_a s_a; E[k1 s] = grad KL(pi || rho)",
        ),
    ),
    "loss-k1": (
        (expect(lambda a: at_zero(log_ratio_k1(a, h))), "E[grad k1], samples fixed"),
        (expect(score), "d k1 = d log pi = s (lemma 'score')"),
        (sp.Integer(0), "E_pi[s] = 0 (lemma 'expected-score')"),
    ),
    "loss-k2": (
        (expect(lambda a: at_zero(k2(a, h))), "E[grad k2], samples fixed"),
        (expect(lambda a: log_ratio_k1(a) * score(a)), "chain rule: d (k1^2/2) = k1 s"),
        (grad_forward, "= grad KL(pi || rho) (row 1)"),
    ),
    "loss-k3": (
        (expect(lambda a: at_zero(k3(a, h))), "E[grad k3], samples fixed"),
        (
            sum((-rho[a] + pi(a)) * score(a) for a in OUTCOMES),
            "d(rho/pi) = -(rho/pi) s and d k1 = s; weight pi",
        ),
        (-sum(rho[a] * score(a) for a in OUTCOMES), "E_pi[s] = 0 (lemma 'expected-score')"),
        (grad_reverse, "d KL(rho || pi) = -sum_a rho_a d log pi_a"),
    ),
}
#: What each usage's expected gradient is: the derivative forms the rows reach.
CLASSIFIED = sp.Matrix([CHAINS[name][-1][0] for name in USAGES])
#: ... and as explicit expressions (sympy's derivatives of the potentials), lambdifiable.
GRADIENTS = {
    "F": grad_forward.doit(),
    "R": grad_reverse.doit(),
    "K2": grad_k2_mean.doit(),
}
EXPLICIT = dict(zip(USAGES, CLASSIFIED.doit(), strict=True))


rows = row_steps  # rlmath.claims.row_steps: one step per row of a column derivation


def explicit_column(**rows_: sp.Expr) -> sp.Matrix:
    """The explicit conclusion with some rows replaced (by usage, ``penalty_k1=...``): a mutant."""
    values = dict(EXPLICIT)
    for name, value in rows_.items():
        values[name.replace("_", "-")] = value
    return sp.Matrix([values[name] for name in USAGES])


classification = Derivation(
    "classification",
    (
        *rows(*(CHAINS[name] for name in USAGES)),
        Step(
            explicit_column(),
            "differentiate: the directional derivatives of KL(pi || rho), KL(rho || pi) and "
            "E_pi[k2] along delta, evaluated",
        ),
    ),
    statement=(
        r"\mathbb E[k_1\nabla\log\pi] = \mathbb E[\nabla k_2] = \nabla\mathrm{KL}(\pi\,\|\,\rho),"
        r"\ \mathbb E[\nabla k_1] = 0,\ \mathbb E[\nabla k_3] = \nabla\mathrm{KL}(\rho\,\|\,\pi),"
        r"\ \mathbb E[k_3\nabla\log\pi] = \nabla\mathrm{KL}(\pi\,\|\,\rho) - \nabla\mathrm{KL}(\rho\,\|\,\pi),"
        r"\ \mathbb E[k_2\nabla\log\pi] = \nabla(\mathbb E_\pi k_2 - \mathrm{KL}(\pi\,\|\,\rho))"
    ),
)


usages_statement = sp.Matrix(
    [_over_outcomes(_pi_h() * _k(k) * at_zero(sp.log(_pi_h(h)))) for k in ("k1", "k2", "k3")]
    + [_over_outcomes(_pi_h() * at_zero(_k(k, h))) for k in ("k1", "k2", "k3")]
)
classification_statement = sp.Matrix(
    [
        grad_forward,
        grad_k2_mean - grad_forward,
        grad_forward - grad_reverse,
        0,
        grad_forward,
        grad_reverse,
    ]
)

# ============================================================================ exact leg (n = 3)
# An example is (theta, rho, delta): logits, a reference and a direction. The leg compares the
# six usages along delta by enumeration over a, with complex-step derivatives of log pi and of
# each k along delta, with the lambdified conclusion of 'classification' (sympy's derivatives of
# the potentials) at the same point and direction.
STEP = 1e-30  # complex step: f'(x) = Im f(x + i h) / h exactly up to rounding (no cancellation)


def _log_softmax(logit: np.ndarray) -> np.ndarray:
    return logit - np.log(np.sum(np.exp(logit)))  # complex-safe: logits are bounded here


def _k_values(log_pi: np.ndarray, log_ref: np.ndarray) -> dict[str, np.ndarray]:
    log_r = log_ref - log_pi
    return {"k1": -log_r, "k2": log_r**2 / 2, "k3": np.exp(log_r) - 1 - log_r}


def enumerated_usages(example: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """``[6, 1]``: each usage's expected directional derivative, by enumeration over a.

    The derivatives along delta of log pi_a and of k(a) are complex steps of their definitions
    (``Im f(theta + i h delta) / h``), so no formula of the derivation is used.
    """
    logit, reference, direction = example
    log_ref = np.log(reference)
    log_pi = _log_softmax(logit)
    probabilities = np.exp(log_pi)
    k_at = _k_values(log_pi, log_ref)
    moved_log_pi = _log_softmax(logit + 1j * STEP * direction)
    d_log_pi = moved_log_pi.imag / STEP
    d_k = {name: values.imag / STEP for name, values in _k_values(moved_log_pi, log_ref).items()}
    out = [probabilities @ (k_at[name] * d_log_pi) for name in ("k1", "k2", "k3")]
    out += [probabilities @ d_k[name] for name in ("k1", "k2", "k3")]
    return np.array(out)[:, None]


def exact_arguments(example: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[float, ...]:
    """Values of (theta_0..2, delta_0..2, rho_0..2)."""
    logit, reference, direction = example
    return (*map(float, logit), *map(float, direction), *map(float, reference))


def _example_distance(example: tuple[np.ndarray, ...]) -> float:
    logit, reference = example[:2]
    probabilities = np.exp(_log_softmax(logit))
    return float(probabilities @ (np.log(probabilities) - np.log(reference)))


exact_examples = st.tuples(
    logits(N, max_abs=3.0),
    probability_vectors(N, allow_zeros=False, min_probability=0.01),
    logits(N, max_abs=1.0).filter(lambda d: np.ptp(d) >= 0.1),
).filter(lambda ex: _example_distance(ex) > 1e-2)


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
    """Sample a ~ pi_theta, average the six usages' gradient terms, test against the claims.

    On the true claim, the terms of each example moved by a few standard errors must be
    rejected (the control, :func:`rlmath.claims.shifted_control`).
    """
    true_claim = variant is None
    variant = variant or {}
    rows, table, controls, passed = [], [], [], True
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


CLAIMS = (
    Claim(
        id="kl-estimator-gradients",
        title="Which KL estimator gives the KL gradient: k1/k2/k3 as penalty or as loss",
        statement=Statement(
            usages_statement,
            classification_statement,
            derivation="classification",
            where=(
                r"n = 3;\ \text{rows: } k_1, k_2, k_3 \text{ as a penalty } \mathbb E_{a\sim\pi}"
                r"[k(a) \nabla \log \pi(a)], \text{ then as a loss } \mathbb E_{a\sim\pi}[\nabla k(a)];"
                r"\ k_1 = \log\tfrac{\pi}{\rho},\ k_2 = \tfrac12 k_1^2,\ k_3 = \tfrac{\rho}{\pi} - 1 + k_1;"
                r"\ \tfrac{d}{dh}\big|_{h=0} \text{ along an arbitrary direction } \delta"
            ),
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
        summary=(
            "For the gradient of KL(pi || rho), use k1 as a reward penalty or k2 as a loss; k3, "
            "unbiased as a value, gives the reverse KL's gradient as a loss and a biased one as "
            "a penalty, and k1 as a loss gives 0."
        ),
        symbolic=SymbolicLeg((classification, score_lemma, expected_score)),
        exact=ExactLeg(
            exact_examples,
            lhs=enumerated_usages,
            symbols=(*theta, *delta, *rho),
            arguments=exact_arguments,
            rtol=exact_rtol(1.0, 3 * N),
            error_scale=_error_scale,
            max_examples=25,
            description=(
                "the six expected directional derivatives by enumeration over a, with "
                "complex-step derivatives of log pi and of each k along delta, vs the "
                "lambdified conclusion of 'classification' (sympy's derivatives of KL(pi||rho), "
                "KL(rho||pi) and E_pi[k2])"
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
            "The statement is written with $\\pi(a)$, $\\pi_{\\theta + h\\delta}(a)$ and "
            "$\\rho(a)$ as functions of the outcome that evaluate to the instance's softmax "
            "expressions once $a$ is a number, which is how sympy proves it equal to the "
            "derivation's first step and conclusion. The derivation `classification` walks "
            "each row to the derivative of a potential and ends with those derivatives "
            "evaluated (explicit expressions, lambdified for the exact leg, which compares them "
            "with the usages computed by enumeration along a random direction). The "
            "Monte-Carlo leg's evidence holds the classification table (usage x estimator -> "
            "the gradient it equals, its distance to grad KL(pi||rho), and the MC |z|)."
        ),
    ),
)
