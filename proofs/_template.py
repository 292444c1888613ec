r"""TEMPLATE — copy to ``proofs/<topic>.py`` and edit (files starting with ``_`` are not loaded).

Title: the score function has mean zero.

Main statement. For a distribution $\pi_a \propto e^{\theta_a}$ on $n$ outcomes,

$$ \mathbb E_{a \sim \pi}\!\left[\partial_{\theta_k} \log \pi_a\right] = 0. $$

Conventions. Gradients are with respect to the logits $\theta$.

Proof sketch. $\mathbb E[\partial \log \pi] = \sum_a \pi_a \partial\pi_a / \pi_a
= \partial \sum_a \pi_a = \partial 1 = 0$.

References. Williams, R. J., "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8, 1992, eq. (9).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    complex_step_gradient,
    monte_carlo_leg,
)
from rlmath.symbolic import IndexSum
from rlmath.testing import logits
from rlmath.tolerances import exact_rtol

# ----------------------------------------------------------------------------- symbols
n = sp.Symbol("n", integer=True, positive=True)  # number of outcomes: the proof is for every n
a = sp.Idx("a")
pi = sp.IndexedBase("pi", positive=True)  # probabilities on the support: positive
d_pi = sp.IndexedBase(r"\partial\pi", real=True)  # their derivative in one logit


def over_outcomes(term: sp.Expr) -> sp.Expr:
    """$\\sum_{a=0}^{n-1}$ term (unevaluated; IndexSum keeps sympy from seeking closed forms)."""
    return IndexSum(term, (a, 0, n - 1))


# ----------------------------------------------------------------------------- derivation
# "Probabilities sum to one" enters as a hypothesis: the derivative of sum_a pi_a is the sum of
# the derivatives, and that derivative is 0 -- so state d_pi summing to 0 as the step's rule
# and write the last expression in terms of that sum.
score_mean = Derivation(
    "score-mean",
    (
        Step(
            over_outcomes(sp.Mul(pi[a], d_pi[a] / pi[a], evaluate=False)),
            "E[d log pi] = sum pi d pi / pi",
        ),
        Step(over_outcomes(d_pi[a]), "pi / pi = 1 (pi > 0 on the support)"),
    ),
    statement=r"\mathbb E_\pi[\partial\log\pi] = \sum_a \partial\pi_a",
)

# ----------------------------------------------------------------------------- exact leg
examples = st.integers(2, 6).flatmap(logits)  # logits [n]


def softmax(theta: np.ndarray) -> np.ndarray:
    shifted = np.exp(theta - theta.max().real)
    return shifted / shifted.sum()


def expected_score(theta: np.ndarray) -> np.ndarray:
    """Independent side: d/d theta_k of sum_a pi_a (complex step of the definition), per k."""
    return complex_step_gradient(lambda z: softmax(z).sum(), theta)


def arguments(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Values of (pi, d_pi, n); d_pi[a] is the row d pi_a / d theta_k over k, so the
    lambdified sum over a is the vector of all k at once."""
    p = softmax(theta)
    jacobian = np.diag(p) - np.outer(p, p)  # [a, k] = pi_a (1[a = k] - pi_k)
    return p, jacobian, len(theta)


CLAIMS = (
    Claim(
        id="template-score-zero-mean",  # written literally: `rlmath verify --only` reads it
        title="The score has mean zero",
        statement=Statement(score_mean.start, score_mean.conclusion),  # rendered and tied
        assumptions=("Finitely many outcomes, softmax in the logits.",),
        references=("Williams, R. J., *Simple statistical gradient-following algorithms*, 1992.",),
        summary="Any constant can be subtracted from the reward without biasing the gradient.",
        symbolic=SymbolicLeg((score_mean,)),
        exact=ExactLeg(
            examples,
            lhs=expected_score,
            symbols=(pi, d_pi, n),  # the conclusion is lambdified into the rhs
            arguments=arguments,
            rtol=exact_rtol(n_terms=6),
            # zero-valued claim: a normwise error of two rounding-noise vectors means nothing,
            # so measure the absolute error against the scale of the terms (probabilities <= 1)
            error_scale=lambda theta: 1.0,
            description="complex-step derivative of sum_a pi_a vs the lambdified sum of d pi",
        ),
        monte_carlo=monte_carlo_leg(
            # not uniform: at uniform logits the mutant's estimate is 0 too (nothing to see)
            examples.filter(lambda t: len(t) >= 2 and float(np.ptp(t)) > 0.5),
            lambda theta, rng, m: (
                np.eye(len(theta))[rng.choice(len(theta), m, p=softmax(theta))] - softmax(theta)
            ),
            lambda theta: np.zeros(len(theta)),
            n_samples=20_000,
            description="mean of e_a - pi over a ~ pi vs 0",
        ),
        mutants=(
            Mutant(
                "unweighted-score",
                "sum_a d log pi_a: the weights pi_a forgotten",
                symbolic=SymbolicMutation("score-mean", over_outcomes(d_pi[a] / pi[a])),
                # the exact variant is the lambdified wrong conclusion, automatically
                monte_carlo=lambda theta, rng, m: (
                    np.ones((m, len(theta))) - softmax(theta) * len(theta)
                ),
            ),
        ),
    ),
)
