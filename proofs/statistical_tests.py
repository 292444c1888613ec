r"""The calibration of the Monte-Carlo legs' test: Bonferroni keeps the family false alarm at alpha.

Main statement. Every Monte-Carlo leg compares $m$ components at once and fails a correct claim
when some $|z_i| > c$, with $c = z_{1 - \alpha/(2m)}$ (:func:`rlmath.statistics.critical_value`).
Under the null each $z_i$ is (asymptotically) standard normal, so

$$ \Pr\Big(\max_i |z_i| > c\Big) \;\le\; \sum_{i=1}^m \Pr(|z_i| > c)
   \;=\; m \cdot 2\,(1 - \Phi(c)) \;=\; \alpha, $$

the first step by the union bound (Boole's inequality), whatever the dependence between the
components. This is the false-alarm probability that ``rlmath verify`` states for each leg.

Conventions. $\Phi$ is the standard normal distribution function; $\alpha \in (0, 1)$ is the
family false-alarm probability, $m \ge 1$ the number of components.

Proof sketch. $1 - \Phi(c) = \alpha/(2m)$ by the choice of $c$; multiply by $2m$.

References. Bonferroni, C. E., "Teoria statistica delle classi e calcolo delle probabilita",
1936; Casella, G. and Berger, R. L., *Statistical Inference*, 2nd ed., 2002, Sec. 11.2.5
(Bonferroni's inequality for simultaneous tests).
"""

from __future__ import annotations

import sympy as sp
from hypothesis import strategies as st
from scipy import stats

from rlmath.claims import (
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
)
from rlmath.statistics import critical_value
from rlmath.tolerances import exact_rtol

# ----------------------------------------------------------------------------- symbols
alpha = sp.Symbol("alpha", positive=True)  # family false alarm, in (0, 1)
m = sp.Symbol("m", integer=True, positive=True)  # components tested together

# ----------------------------------------------------------------------------- derivation
# 1 - Phi(c) = alpha / (2 m) defines c, so the tail is written through alpha from the start.
phi_at_c = sp.Add(1, -alpha / (2 * m), evaluate=False)  # Phi(c), by the choice of c
family_bound = Derivation(
    "family-bound",
    (
        Step(
            sp.Mul(2, m, sp.Add(1, -phi_at_c, evaluate=False), evaluate=False),
            "union bound: P(max_i |z_i| > c) <= sum_i P(|z_i| > c) = m 2 (1 - Phi(c)), "
            "with Phi(c) = 1 - alpha/(2m) by the choice c = z_{1 - alpha/(2m)}",
        ),
        Step(alpha, "cancel: 2 m alpha / (2 m) = alpha"),
    ),
    statement=r"2m\,(1 - \Phi(c)) = lpha,\ c = z_{1 - lpha/(2m)}",
)

# ----------------------------------------------------------------------------- exact leg
# An example is (alpha, m): from the loose alpha of a quick check to the 1e-6 verify uses and
# the 1e-12 of a strict run, and from one component to the 400 of a large gradient.
examples = st.tuples(
    st.sampled_from((0.05, 1e-3, 1e-6, 1e-9, 1e-12)) | st.floats(1e-12, 0.2),
    st.integers(1, 400),
)


def bonferroni_total(example: tuple[float, int]) -> float:
    """Independent side: m * 2 * P(Z > c) with c from rlmath and the tail from scipy.stats."""
    a, k = example
    c = critical_value(a, n_components=k)
    return float(k * 2.0 * stats.norm.sf(c))


def _rtol(example: tuple[float, int]) -> float:
    # d log(1 - Phi(c)) / d log c ~ c^2 for large c: a relative rounding eps in c (ndtri)
    # becomes c^2 eps in the tail; plus the few operations of the product.
    a, k = example
    c = -float(stats.norm.ppf(a / (2 * k)))
    return exact_rtol(condition_number=1.0 + c * c, n_terms=8)


CLAIMS = (
    Claim(
        id="bonferroni-false-alarm",
        title="The Monte-Carlo legs' z-test has family false alarm alpha (Bonferroni)",
        summary=(
            "Testing m gradient components at once, each at level alpha/m two-sided, keeps the "
            "chance that a correct claim fails at alpha, the false-alarm probability verify "
            "states."
        ),
        statement=Statement(family_bound.start, family_bound.conclusion),
        assumptions=(
            "Each z_i is standard normal under the null (the CLT regime of rlmath.statistics).",
            "The union bound (Boole's inequality) is the first step's rule; it holds for any "
            "dependence between the components, and the claim is that the bound equals alpha.",
        ),
        references=(
            "Casella, G. and Berger, R. L., *Statistical Inference*, 2nd ed., 2002, Sec. 11.2.5.",
            "Bonferroni, C. E., *Teoria statistica delle classi e calcolo delle probabilita*, "
            "1936.",
        ),
        symbolic=SymbolicLeg((family_bound,)),
        exact=ExactLeg(
            examples,
            lhs=bonferroni_total,
            symbols=(alpha, m),
            arguments=lambda example: (example[0], example[1]),
            rtol=_rtol,
            description=(
                "m * 2 * scipy.stats.norm.sf(c) with c = rlmath.statistics.critical_value(alpha,"
                " n_components=m) vs the lambdified conclusion alpha"
            ),
        ),
        mutants=(
            Mutant(
                "one-sided-critical-value",
                "c = z_{1 - alpha/m} (a one-sided quantile for a two-sided test): 2 alpha",
                symbolic=SymbolicMutation("family-bound", 2 * alpha),
            ),
            Mutant(
                "no-bonferroni",
                "c = z_{1 - alpha/2} for every component (alpha not shared): m alpha",
                symbolic=SymbolicMutation("family-bound", m * alpha),
            ),
        ),
        notes=(
            "The exact leg runs the shipped `critical_value` and measures the tail it leaves "
            "with `scipy.stats.norm.sf`, an independent implementation of the normal tail, so "
            "a one-sided quantile or a dropped Bonferroni division in `rlmath.statistics` makes "
            "`rlmath verify` fail. The no-Bonferroni mutant coincides with the truth at m = 1, "
            "which the examples include; the other examples reject it."
        ),
    ),
)
