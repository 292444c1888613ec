r"""The LLM-RL reference losses under proof: GSPO's ratio, CISPO, whitening, the combined loss.

Setting. Padded ``[B, T]`` token tensors with a ``response_mask`` $m$ (time on axis 1), as in
:mod:`rlmath.llm_reference`; $z_{b,t} = \log\pi_\theta(y_{b,t} \mid x_b, y_{b,<t})$ is the only
argument gradients flow through; old log-probs, advantages and normalisers are detached.
Each claim's exact leg calls the shipped function and compares it with a computation by other
means (the lambdified conclusion of a derivation, a loop over the statistics module,
complex-step derivatives of an independently written loss, enumeration on
:mod:`rlmath.sequence_model`), so that an error injected into the function makes
``rlmath verify`` fail.

Main statements.

1. **GSPO's sequence ratio** (``gspo-sequence-ratio-reference``). The geometric mean of the
   response tokens' ratios $\rho_t = e^{d_t}$, $d_t = z_t - z^\mathrm{old}_t$, is
   $$ \Big(\prod_t \rho_t^{m_t}\Big)^{1/N} = \exp\Big(\frac1N \sum_t m_t d_t\Big), \qquad
      N = \sum_t m_t, $$
   and $1$ for an empty row (an empty mean taken as 0).
2. **Masked whitening** (``masked-whiten-reference``). With $\mu$, $\sigma^2$ the mean and
   ``ddof``-variance of the response entries, $\tilde x = m (x - \mu)/\sqrt{\sigma^2 +
   \epsilon}$ has response mean 0, ``ddof``-variance $\sigma^2/(\sigma^2 + \epsilon)$, padding
   exactly 0, and for $\epsilon = 0$ is invariant under $x \mapsto a x + b$, $a > 0$.
3. **Batch whitening** (``batch-whitened-advantages-reference``). $A_i = (u_i - \bar u)/(s_u +
   \epsilon)$ with $u = r$ or $u = r - \bar r_{g(i)}$: mean 0, ``ddof``-variance
   $s_u^2/(s_u + \epsilon)^2$ over the whole batch (one std for all groups).
4. **The combined loss** (``combined-policy-loss-reference``).
   $\operatorname{agg}(\ell) + \beta\operatorname{agg}(k) - c_H\operatorname{agg}(H)
   = \sum_{b,t} w_{b,t}(\ell_{b,t} + \beta k_{b,t} - c_H H_{b,t})$ with the aggregation
   weights $w$ of the mode: the KL term is added, the entropy subtracted, in the value and in
   the gradient with respect to the logits.
5. **CISPO's gradient** (``cispo-token-loss-gradient-reference``). With the detached weight
   $\hat\rho = \mathrm{sg}[\mathrm{clip}(\rho, 1 - \epsilon_\mathrm{low}, 1 +
   \epsilon_\mathrm{high})]$, $\partial\ell_{b,t}/\partial z_{b,t} = -m\hat\rho A$, clipped or
   not; the value is $-m\hat\rho A z$.
6. **CISPO at the old policy** (``cispo-gradient-at-old``). At $\theta = \theta_\mathrm{old}$,
   $\hat\rho = 1$ and the expected gradient of the token-summed CISPO loss with reward-to-go
   advantages is $-\nabla_\theta J$.

Conventions. Losses are minimised. The stop-gradient $\mathrm{sg}[f(z)]$ is modelled by
evaluating $f$ at a copy $z'$ of $z$ that is not differentiated (then $z' = z$). $\epsilon$ is
added to the variance inside the square root in :func:`masked_whiten` (verl) and to the std in
:func:`batch_whitened_advantages` (OpenRLHF).

Proof sketch. (1) $\log$ of a product is the sum of the logs, $\log e^d = d$. (2), (3) the
normaliser does not depend on the index; the variance is the definition of $\sigma^2$
(or $s^2$); $\sqrt{a^2 S} = a\sqrt S$ for $a > 0$. (4) Linearity of the sum. (5) The
derivative of $-\mathrm{sg}[\hat\rho] A z$ in $z$ is $-\hat\rho A$. (6) At $z = z_\mathrm{old}$,
$\rho = 1$ lies inside every clip range; then (5) is the REINFORCE token weight, and with the
reward to go its expectation is $-\nabla J$ (claim ``llm-sequence-policy-gradient``).

References. Zheng, C. et al., "Group Sequence Policy Optimization", arXiv:2507.18071, 2025,
eq. (7); MiniMax et al., "MiniMax-M1", arXiv:2506.13585, 2025, Sec. 3.1, eq. (4)-(5); Hu, J.,
"REINFORCE++", arXiv:2501.03262, 2025, Sec. 3; verl, ``verl/utils/torch_functional.py``
(``masked_whiten``) and ``verl/workers/actor/dp_actor.py`` (``pg_loss - entropy_coeff * entropy
+ kl_loss * kl_loss_coef``); Schulman, J. et al., "Proximal Policy Optimization Algorithms",
arXiv:1707.06347, 2017, eq. (9); Williams, R. J., Machine Learning 8, 1992.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    lambdify,
)
from rlmath.llm_reference import (
    AGGREGATION_MODES,
    batch_whitened_advantages,
    cispo_token_loss,
    cispo_token_loss_gradient,
    combined_policy_loss,
    gspo_sequence_ratio,
    masked_whiten,
)
from rlmath.sequence_model import SequenceModel
from rlmath.symbolic import IndexSum
from rlmath.testing import sequence_models
from rlmath.tolerances import EPS, central_difference_step, exact_rtol


def lazy_lambdify(symbols: tuple, expression: sp.Expr) -> Callable[..., np.ndarray]:
    """:func:`rlmath.claims.lambdify`, done on the first call (not at import)."""
    cache: list[Callable[..., np.ndarray]] = []

    def function(*values: object) -> np.ndarray:
        if not cache:
            cache.append(lambdify(symbols, expression))
        return cache[0](*values)

    return function


LOG_PROBS = st.floats(-6.0, 0.0, allow_subnormal=False)


@st.composite
def token_masks(draw: st.DrawFn, rows: int, columns: int, min_tokens: int = 0) -> np.ndarray:
    """A random 0/1 ``[rows, columns]`` mask with at least ``min_tokens`` ones."""
    mask = np.array([[draw(st.booleans()) for _ in range(columns)] for _ in range(rows)])
    flat = mask.ravel()
    for index in range(min(min_tokens, flat.size)):
        flat[index] = True
    return flat.reshape(rows, columns)


# ============================================================================ 1. GSPO ratio
t = sp.Idx("t")
T = sp.Symbol("T", integer=True, positive=True)  # padded length
log_ratio = sp.IndexedBase("d", real=True)  # d_t = log pi_theta - log pi_old
mask_entry = sp.IndexedBase("m", nonnegative=True)  # m_t in {0, 1}
length = sp.Symbol("N", positive=True)  # N = sum_t m_t (1 for an empty row, whose sum is 0)


def over_tokens(term: sp.Expr) -> sp.Expr:
    r"""$\sum_{t=0}^{T-1}$ term (unevaluated)."""
    return IndexSum(term, (t, 0, T - 1))


gspo_ratio_steps = Derivation(
    "gspo-ratio",
    (
        Step(
            sp.exp(
                over_tokens(
                    sp.Mul(
                        mask_entry[t],
                        sp.log(sp.exp(log_ratio[t], evaluate=False), evaluate=False),
                        evaluate=False,
                    )
                )
                / length,
                evaluate=False,
            ),
            "the geometric mean of the response tokens' ratios rho_t = e^{d_t}: "
            "(prod_t rho_t^{m_t})^{1/N} = exp((1/N) sum_t m_t log rho_t), the log of a product "
            "being the sum of the logs",
        ),
        Step(sp.exp(over_tokens(mask_entry[t] * log_ratio[t]) / length), "log e^d = d for real d"),
    ),
)


@dataclass(frozen=True)
class RatioExample:
    """log_probs, old_log_probs, mask: ``[B, T]`` (padding values arbitrary)."""

    log_probs: np.ndarray
    old_log_probs: np.ndarray
    mask: np.ndarray


@st.composite
def ratio_examples(draw: st.DrawFn) -> RatioExample:
    """1..4 rows of 1..6 tokens, log-probs in [-6, 0] (|d| <= 6), empty rows now and then."""
    rows, columns = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    new = np.array([[draw(LOG_PROBS) for _ in range(columns)] for _ in range(rows)])
    old = np.array([[draw(LOG_PROBS) for _ in range(columns)] for _ in range(rows)])
    return RatioExample(new, old, draw(token_masks(rows, columns)))


def _ratio_arguments(example: RatioExample) -> tuple[Any, ...]:
    """(d, m, N, T) with time on the first axis, so the lambdified sum over t gives [B]."""
    lengths = example.mask.sum(axis=1).astype(np.float64)
    return (
        (example.log_probs - example.old_log_probs).T,
        example.mask.T.astype(np.float64),
        np.maximum(lengths, 1.0),
        example.mask.shape[1],
    )


def _shipped_ratio(example: RatioExample) -> np.ndarray:
    return gspo_sequence_ratio(example.log_probs, example.old_log_probs, example.mask)


def _ratio_mutant(id_: str, description: str, wrong: sp.Expr) -> Mutant:
    return Mutant(id_, description, symbolic=SymbolicMutation("gspo-ratio", wrong))


GSPO_CLAIM = Claim(
    id="gspo-sequence-ratio-reference",
    title="GSPO's sequence ratio is the geometric mean of the token ratios",
    summary=(
        "rlmath.llm_reference.gspo_sequence_ratio is exp of the mean masked log-ratio: the "
        "geometric (not arithmetic) mean of the response tokens' ratios, 1 for an empty row."
    ),
    statement=Statement(gspo_ratio_steps.start, gspo_ratio_steps.conclusion),
    assumptions=(
        "m_t in {0, 1}; N = sum_t m_t, taken as 1 for an empty row (whose sum is 0, so the "
        "ratio is e^0 = 1).",
        "Values at padded positions are arbitrary (the examples fill them with log-probs).",
    ),
    references=(
        "Zheng, C. et al., *Group Sequence Policy Optimization*, arXiv:2507.18071, 2025, eq. (7).",
    ),
    symbolic=SymbolicLeg((gspo_ratio_steps,)),
    exact=ExactLeg(
        ratio_examples(),
        lhs=_shipped_ratio,
        symbols=(log_ratio, mask_entry, length, T),
        arguments=_ratio_arguments,
        # exp(x) for |x| <= 6: the rounding of x (T + 2 terms, each |d| <= 6) is amplified by 6
        rtol=lambda example: exact_rtol(condition_number=6.0, n_terms=example.mask.shape[1] + 4),
        description=(
            "the shipped gspo_sequence_ratio vs the lambdified exp(sum_t m_t d_t / N) per row"
        ),
    ),
    mutants=(
        _ratio_mutant(
            "arithmetic-mean",
            "the arithmetic mean of the token ratios instead of the geometric mean",
            over_tokens(mask_entry[t] * sp.exp(log_ratio[t])) / length,
        ),
        _ratio_mutant(
            "not-length-normalised",
            "the plain sequence ratio pi_theta(y) / pi_old(y), the 1/|y| forgotten",
            sp.exp(over_tokens(mask_entry[t] * log_ratio[t])),
        ),
        _ratio_mutant(
            "padding-counted",
            "the log-ratios of the padded positions summed too",
            sp.exp(over_tokens(log_ratio[t]) / length),
        ),
        _ratio_mutant(
            "padded-length",
            "divided by the padded length T instead of the response length",
            sp.exp(over_tokens(mask_entry[t] * log_ratio[t]) / T),
        ),
    ),
    notes=(
        "GSPO clips this per-token average ratio, which is why its clip ranges are tiny "
        "(3e-4, 4e-4): the plain sequence ratio, a product of |y| token ratios, would leave any "
        "fixed range for long responses."
    ),
)


CLAIMS = (GSPO_CLAIM,)
