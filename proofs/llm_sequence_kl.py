r"""KL at sequence level: what k1, k2, k3 per token, in the loss or in the reward, differentiate.

Setting. A tabular autoregressive policy $\pi_\theta(y \mid x) = \prod_{t=1}^{|y|}
\pi_\theta(y_t \mid x, y_{<t})$ (:mod:`rlmath.sequence_model`: EOS is a response token,
truncation at $L$), a fixed reference $\pi_\mathrm{ref}$ of the same form, prompts
$x \sim \rho$, responses $y \sim \pi_\theta(\cdot \mid x)$. Per token write

$$ \ell_t = \log\pi_\theta(y_t \mid x, y_{<t}) - \log\pi_\mathrm{ref}(y_t \mid x, y_{<t})
   = k_1(y_t), \qquad r_t = e^{-\ell_t}, \qquad
   s_t = \nabla_\theta \log\pi_\theta(y_t \mid x, y_{<t}), $$

$k_2(y_t) = \tfrac12 \ell_t^2$, $k_3(y_t) = (r_t - 1) - \log r_t$ (Schulman 2020, computed by
:func:`rlmath.llm_reference.kl_penalty_per_token`), and the sequence-level divergences

$$ \mathrm{KL}_\mathrm{seq}(\pi_\theta \,\|\, \pi_\mathrm{ref})
   = \mathbb E_x \mathbb E_{y \sim \pi_\theta}\Big[\sum_t \ell_t\Big]
   = \mathbb E_x \sum_{h} d_\theta(h)\, \mathrm{KL}\big(\pi_\theta(\cdot|h) \,\|\,
     \pi_\mathrm{ref}(\cdot|h)\big), $$

$$ \mathrm{KL}_\mathrm{seq}(\pi_\mathrm{ref} \,\|\, \pi_\theta)
   = \mathbb E_x \sum_{h} d_\mathrm{ref}(h)\, \mathrm{KL}\big(\pi_\mathrm{ref}(\cdot|h) \,\|\,
     \pi_\theta(\cdot|h)\big), $$

where $h$ runs over the prefixes (decision nodes) and $d_\theta(h)$ is the probability that
$\pi_\theta$ generates the prefix $h$ (the chain rule of the KL divergence over the prefix
tree). "In the loss" means the per-token term is differentiated through
$\log\pi_\theta(y_t \mid \cdot)$ with the sampled tokens held fixed (autodiff, no gradient
through the sampling); "in the reward" means it is detached and enters through the score
function. Main statements (every expectation over $x \sim \rho$, $y \sim \pi_\theta$):

1. **k1 in the loss** (claim ``llm-token-k1-loss-zero-gradient``):
   $\mathbb E[\nabla_\theta \sum_t k_1(y_t)] = \mathbb E[\sum_t s_t] = 0$.
2. **k1 in the reward, summed to go** (claim ``llm-k1-reward-to-go-sequence-kl-gradient``):
   with the per-token reward $-\beta k_1$ and its reward to go
   $G_t = -\beta \sum_{t' \ge t} \ell_{t'}$ (:func:`rlmath.llm_reference.kl_reward_to_go`),
   $\mathbb E[\sum_t s_t G_t] = -\beta\, \nabla_\theta \mathrm{KL}_\mathrm{seq}(\pi_\theta \,\|\,
   \pi_\mathrm{ref})$: the KL part of the policy gradient of $J - \beta\,\mathrm{KL}_\mathrm{seq}$
   (ascent), exactly. Not summed to go ($G_t = -\beta \ell_t$) it is the partial gradient of 3.
3. **k2 in the loss, per token** (claim ``llm-token-k2-loss-partial-kl-gradient``):
   $$ \mathbb E\Big[\nabla_\theta \sum_t k_2(y_t)\Big]
      = \nabla_\theta \mathrm{KL}_\mathrm{seq}(\pi_\theta \,\|\, \pi_\mathrm{ref})
        - \mathbb E\Big[\sum_t s_t \sum_{t' > t} \ell_{t'}\Big], $$
   the missing term being the future tokens' log-ratios times the earlier scores (Tang and
   Munos 2025, Sec. 4): the per-token k2 loss differentiates $\sum_h d(h)\,\mathrm{KL}_h$ with
   the prefix distribution $d$ held fixed. Exact fixes: add the detached
   $\sum_t s_t \sum_{t'>t} \ell_{t'}$, or put $k_2$ at **sequence** level,
   $\tfrac12 (\sum_t \ell_t)^2$, in the loss (whose gradient $(\sum_t \ell_t)(\sum_t s_t)$
   has the expectation of 2: the on-policy equivalence of "k2 as loss" and "k1 in reward" of
   Liu et al. 2025 holds at sequence level, not per token).
4. **k3 in the loss, per token** (claim ``llm-token-k3-loss-per-token-forward-kl``):
   $$ \mathbb E\Big[\nabla_\theta \sum_t k_3(y_t)\Big]
      = \mathbb E_x \sum_h d_\theta(h)\, \nabla_\theta \mathrm{KL}\big(\pi_\mathrm{ref}(\cdot|h)
        \,\|\, \pi_\theta(\cdot|h)\big) \quad (d_\theta \text{ held fixed}), $$
   the per-token KL in the *other* direction, $\mathrm{KL}(\pi_\mathrm{ref} \| \pi_\theta)$,
   averaged over prefixes drawn from $\pi_\theta$: the gradient of no sequence KL. The
   importance-weighted form that fixes it weights each token by the detached **prefix** ratio
   $w_{<t} = \pi_\mathrm{ref}(y_{<t})/\pi_\theta(y_{<t})$:
   $\mathbb E[\sum_t w_{<t} \nabla k_3(y_t)] = \nabla_\theta \mathrm{KL}_\mathrm{seq}
   (\pi_\mathrm{ref} \,\|\, \pi_\theta)$, and so does $k_3$ at sequence level,
   $\nabla k_3(\sum_t \ell_t)$. Weighting by the whole sequence's ratio instead is wrong.

Conventions. $\ell_t = \log\pi_\theta - \log\pi_\mathrm{ref}$ (``log_probs -
reference_log_probs``; $\log r = -\ell$ is the library's); KL directions always written out;
$\beta \ge 0$; gradients with respect to the logits ``theta[x, n, v]``; the sampled tokens and
all detached quantities (rewards to go, importance weights) are constants.

Proof sketch. Every score has mean zero given its prefix, $\mathbb E[s_t \mid y_{<t}] = 0$;
a quantity fixed by the prefix $y_{<t}$ (a past $\ell_{t'}$, $t' < t$) times $s_t$ has mean
zero (causality). $\nabla \mathrm{KL}_\mathrm{seq} = \mathbb E[(\sum_t s_t)(\sum_{t'} \ell_{t'}
+ 1)] = \mathbb E[\sum_t s_t \sum_{t' \ge t}\ell_{t'}]$. Per-token: $\nabla k_1 = s_t$,
$\nabla k_2 = \ell_t s_t$, $\nabla k_3 = (1 - r_t) s_t$; regrouping the sum over responses by
prefixes, $\mathbb E_{v \sim \pi(\cdot|h)}[(1 - r) s] = -\sum_v \pi_\mathrm{ref}(v|h) s(v) =
\nabla \mathrm{KL}(\pi_\mathrm{ref}(\cdot|h) \| \pi_\theta(\cdot|h))$.

References. Tang, Y. and Munos, R., "On a few pitfalls in KL divergence gradient estimation
for RL", arXiv:2506.09477, 2025 (k1 as a loss has zero expected gradient; the per-token
estimate is a partial gradient, the full one carries the future log-ratios). Liu, K., Liu,
J. K., Chen, M. and Liu, Y., "Rethinking KL Regularization in RLHF: From Value Estimation to
Gradient Optimization", arXiv:2510.01555, 2025 ("k_n in reward" vs "k_n as loss"; k1 in
reward is the principled reverse-KL gradient; k3 as loss is biased). Shah, V. et al., "A
Comedy of Estimators: On KL Regularization in RL Training of LLMs", arXiv:2512.21852, 2025
(which estimator configurations give unbiased gradients). Schulman, J., "Approximating KL
Divergence", blog post, 2020 (k1, k2, k3). Williams, R. J., Machine Learning 8, 1992
(the score function).
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
    complex_step_gradient,
    detectable,
    draw_examples,
    exact_moments,
    shifted_control,
)
from rlmath.llm_reference import kl_penalty_per_token, kl_reward_to_go
from rlmath.named_functions import Named, NextTokenProbability
from rlmath.sequence_model import SequenceModel
from rlmath.statistics import DEFAULT_FALSE_ALARM, agreement
from rlmath.testing import sequence_models
from rlmath.tolerances import EPS, central_difference_step, exact_rtol

# ============================================================================ symbolic instance
# One prompt, K = 1 ordinary token (id 0) plus EOS (id 1), L = 2. Nodes: 0 = the empty
# prefix, 1 = the prefix (0). Responses as (node, token) pairs: (EOS), (0, EOS), (0, 0)
# truncated. With two tokens a softmax has one free logit per node (adding a constant to both
# logits changes nothing), so the EOS logit is 0: pi(0 | n) = e^theta_n / (e^theta_n + 1) and
# pi_ref(0 | n) = e^phi_n / (e^phi_n + 1), with theta_n, phi_n symbols. Both next-token laws
# sum to one at every node, as the regrouping by prefixes needs.
theta = sp.IndexedBase("theta", real=True)
phi = sp.IndexedBase("phi", real=True)
beta = sp.Symbol("beta", positive=True)
EOS = 1
NODES = (0, 1)
RESPONSES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, EOS),),
    ((0, 0), (1, EOS)),
    ((0, 0), (1, 0)),
)
LOGITS = tuple(theta[n] for n in NODES)
ZERO_COLUMN = sp.zeros(len(LOGITS), 1)


NextToken = NextTokenProbability  # pi_{n,v}: e^theta_n / (e^theta_n + 1) for token 0, 1/(...) for EOS


class ReferenceNextToken(NextTokenProbability):  # noqa: N801 (sympy style)
    r"""$\pi^{\mathrm{ref}}_{n,v}$: the same with the reference logit $\phi_n$."""

    symbol = r"\pi^{\mathrm{ref}}"


def pi(n: int, v: int) -> sp.Expr:
    r"""$\pi_\theta(v \mid n)$: $e^{\theta_n}/(e^{\theta_n} + 1)$ for token 0, $1/(e^{\theta_n} + 1)$ for EOS."""
    return NextToken(sp.Integer(v), theta[n], sp.Integer(0))


def ref(n: int, v: int) -> sp.Expr:
    r"""$\pi_\mathrm{ref}(v \mid n)$, the same with $\phi_n$."""
    return ReferenceNextToken(sp.Integer(v), phi[n], sp.Integer(0))


def log_ratio(n: int, v: int) -> sp.Expr:
    r"""$\ell_{n,v} = k_1 = \log\pi_\theta(v|n) - \log\pi_\mathrm{ref}(v|n)$, kept whole and
    printed by name (``doit``, where every proving rewriting starts, gives the difference)."""
    return Named(
        rf"\ell_{{{n},{v}}}", sp.Add(sp.log(pi(n, v)), -sp.log(ref(n, v)), evaluate=False)
    )


def score(n: int, v: int, logit: sp.Expr) -> sp.Expr:
    r"""$\partial \log\pi(v|n) / \partial\theta_m = \mathbb 1[m = n](\mathbb 1[v = 0] - \pi(0|n))$."""
    (m,) = logit.indices
    if m != n:
        return sp.Integer(0)
    # evaluated: an unevaluated Add holding a literal 0 (the EOS case) trips sympy's
    # assumption system (InconsistentAssumptions, depending on the hash seed)
    return sp.Integer(int(v == 0)) - pi(n, 0)


def product(factors: list[sp.Expr]) -> sp.Expr:
    return factors[0] if len(factors) == 1 else sp.Mul(*factors, evaluate=False)


def total(terms: list[sp.Expr]) -> sp.Expr:
    if not terms:
        return sp.Integer(0)
    return terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)


def sequence_probability(i: int, law: Callable[[int, int], sp.Expr] = pi) -> sp.Expr:
    r"""$\pi(y_i) = \prod_t \pi(y_t | y_{<t})$ (unevaluated)."""
    return product([law(n, v) for n, v in RESPONSES[i]])


def reach(n: int, law: Callable[[int, int], sp.Expr] = pi) -> sp.Expr:
    r"""$d(h)$: the probability of generating prefix $h$ (node 1 is the prefix (0))."""
    return sp.Integer(1) if n == 0 else law(0, 0)


def _times(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """a * b unevaluated, without literal factors 0 or 1 (which confuse sympy's assumptions)."""
    if a == 0 or b == 0:
        return sp.Integer(0)
    if a == 1:
        return b
    if b == 1:
        return a
    return sp.Mul(a, b, evaluate=False)


def over_responses(term: Callable[[int], sp.Expr]) -> sp.Expr:
    r"""$\sum_i \pi(y_i)\, \text{term}(i)$ (unevaluated): the expectation over $y \sim \pi$."""
    terms = [_times(sequence_probability(i), term(i)) for i in range(len(RESPONSES))]
    return total([t for t in terms if t != 0])


def over_tokens(i: int, term: Callable[[int, int, int], sp.Expr]) -> sp.Expr:
    r"""$\sum_t \text{term}(t, n_t, v_t)$ over the tokens of response $i$ (zero terms left out)."""
    terms = [term(t, n, v) for t, (n, v) in enumerate(RESPONSES[i])]
    return total([t for t in terms if t != 0])


def future_log_ratios(i: int, t: int, *, include_own: bool) -> sp.Expr:
    r"""$\sum_{t' \ge t} \ell_{t'}$ (or $t' > t$) along response $i$."""
    start = t if include_own else t + 1
    return total([log_ratio(n, v) for n, v in RESPONSES[i][start:]])


def past_log_ratios(i: int, t: int) -> sp.Expr:
    return total([log_ratio(n, v) for n, v in RESPONSES[i][:t]])


def column(entry: Callable[[sp.Expr], sp.Expr]) -> sp.Matrix:
    """One entry per free logit: theta_0 (the empty prefix) and theta_1 (the prefix (0))."""
    return sp.Matrix([entry(logit) for logit in LOGITS])


def scores_times(weight: Callable[[int, int], sp.Expr]) -> sp.Matrix:
    r"""$\mathbb E[\sum_t s_t\, w(i, t)]$, one entry per logit."""
    return column(
        lambda logit: over_responses(
            lambda i: over_tokens(i, lambda t, n, v: _times(score(n, v, logit), weight(i, t)))
        )
    )


def by_prefix(term: Callable[[int, int, sp.Expr], sp.Expr]) -> sp.Matrix:
    r"""$\sum_h d(h) \sum_v \pi(v|h)\, \text{term}(h, v)$: a token sum regrouped by prefixes."""
    return column(
        lambda logit: total(
            [
                sp.Mul(
                    reach(n),
                    total([sp.Mul(pi(n, v), term(n, v, logit), evaluate=False) for v in (0, EOS)]),
                    evaluate=False,
                )
                for n in NODES
            ]
        )
    )


#: KL_seq(pi || ref) = sum_y pi(y) log(pi(y) / ref(y)), written on whole sequences.
KL_FORWARD_SEQ = total(
    [
        sp.Mul(
            sequence_probability(i),
            sp.log(sequence_probability(i) / sequence_probability(i, ref)),
            evaluate=False,
        )
        for i in range(len(RESPONSES))
    ]
)
#: KL_seq(ref || pi) = sum_y ref(y) log(ref(y) / pi(y)).
KL_REVERSE_SEQ = total(
    [
        sp.Mul(
            sequence_probability(i, ref),
            sp.log(sequence_probability(i, ref) / sequence_probability(i)),
            evaluate=False,
        )
        for i in range(len(RESPONSES))
    ]
)


def node_kl(n: int, *, reverse: bool) -> sp.Expr:
    r"""$\mathrm{KL}(\pi(\cdot|n) \| \mathrm{ref}(\cdot|n))$, or $\mathrm{KL}(\mathrm{ref} \| \pi)$ with ``reverse``."""
    if reverse:
        return Named(
            rf"\KL_{{{n}}}(\pi^{{\mathrm{{ref}}}} \,\|\, \pi)",
            total(
                [sp.Mul(ref(n, v), sp.log(ref(n, v) / pi(n, v)), evaluate=False) for v in (0, EOS)]
            ),
        )
    return Named(
        rf"\KL_{{{n}}}(\pi \,\|\, \pi^{{\mathrm{{ref}}}})",
        total([sp.Mul(pi(n, v), sp.log(pi(n, v) / ref(n, v)), evaluate=False) for v in (0, EOS)]),
    )


def frozen_prefix_gradient(*, reverse: bool) -> sp.Matrix:
    r"""$\sum_h d_\theta(h)\, \nabla \mathrm{KL}_h$ with $d_\theta$ outside the derivative."""
    return column(
        lambda logit: total(
            [
                sp.Mul(reach(n), sp.Derivative(node_kl(n, reverse=reverse), logit), evaluate=False)
                for n in NODES
            ]
        )
    )


KL_GRADIENT = column(lambda logit: sp.Derivative(KL_FORWARD_SEQ, logit))
REVERSE_KL_GRADIENT = column(lambda logit: sp.Derivative(KL_REVERSE_SEQ, logit))
#: Tang & Munos's missing term E[sum_t s_t sum_{t' > t} l_t'].
MISSING_TERM = scores_times(lambda i, t: future_log_ratios(i, t, include_own=False))


# --- 1. k1 in the loss
k1_loss = Derivation(
    "k1-loss",
    (
        Step(
            column(
                lambda logit: over_responses(
                    lambda i: over_tokens(i, lambda t, n, v: sp.Derivative(log_ratio(n, v), logit))
                )
            ),
            "E_y[grad sum_t k1(y_t)] with the sampled tokens fixed: pi(y_i) is not "
            "differentiated, the gradient acts on k1 = log pi - log ref of each token",
        ),
        Step(
            scores_times(lambda i, t: sp.Integer(1)),
            "d k1 = d log pi(y_t | y_<t) = 1[w = v] - pi(w | n): log ref does not depend on theta",
        ),
        Step(
            by_prefix(score),
            "regroup the tokens by their prefix h: P(prefix h, then token v) = d(h) pi(v | h) "
            "(the continuations of a prefix have total probability 1)",
        ),
        Step(ZERO_COLUMN, "E_{v ~ pi(.|h)}[score] = sum_v pi(v|h)(1[w = v] - pi(w|h)) = 0"),
    ),
    statement=r"\mathbb E[\nabla_\theta \textstyle\sum_t k_1(y_t)] = 0",
)

# --- 2. k1 in the reward, summed to go
k1_reward = Derivation(
    "k1-reward-to-go",
    (
        Step(
            column(lambda logit: sp.Mul(-beta, sp.Derivative(KL_FORWARD_SEQ, logit))),
            "-beta grad KL_seq(pi || ref), KL_seq = sum_y pi(y) log(pi(y)/ref(y))",
        ),
        Step(
            column(
                lambda logit: sp.Mul(
                    -beta,
                    total(
                        [
                            sp.Add(
                                sp.Mul(
                                    sp.Derivative(sequence_probability(i), logit),
                                    sp.log(sequence_probability(i) / sequence_probability(i, ref)),
                                    evaluate=False,
                                ),
                                sp.Mul(
                                    sequence_probability(i),
                                    sp.Derivative(sp.log(sequence_probability(i)), logit),
                                    evaluate=False,
                                ),
                                evaluate=False,
                            )
                            for i in range(len(RESPONSES))
                        ]
                    ),
                    evaluate=False,
                )
            ),
            "product rule, term by term of the finite sum; log ref(y) does not depend on theta",
        ),
        Step(
            column(
                lambda logit: sp.Mul(
                    -beta,
                    over_responses(
                        lambda i: sp.Mul(
                            over_tokens(i, lambda t, n, v: score(n, v, logit)),
                            sp.Add(
                                over_tokens(i, lambda t, n, v: log_ratio(n, v)),
                                sp.Integer(1),
                                evaluate=False,
                            ),
                            evaluate=False,
                        )
                    ),
                    evaluate=False,
                )
            ),
            "d pi = pi d log pi; log of the autoregressive product = sum of token logs, so "
            "d log pi(y) = sum_t s_t and log(pi(y)/ref(y)) = sum_t l_t",
        ),
        Step(
            column(
                lambda logit: sp.Mul(
                    -beta,
                    over_responses(
                        lambda i: sp.Mul(
                            over_tokens(i, lambda t, n, v: score(n, v, logit)),
                            over_tokens(i, lambda t, n, v: log_ratio(n, v)),
                            evaluate=False,
                        )
                    ),
                    evaluate=False,
                )
            ),
            "E[sum_t s_t] = 0 (claim llm-token-k1-loss-zero-gradient): the +1 drops out",
        ),
        Step(
            scores_times(
                lambda i, t: sp.Mul(
                    -beta, future_log_ratios(i, t, include_own=True), evaluate=False
                )
            ),
            "causality: l_t' for t' < t is fixed by the prefix y_<t and E[s_t | y_<t] = 0, so "
            "each score keeps only the reward to go G_t = -beta sum_{t' >= t} l_t'",
        ),
    ),
    statement=r"-\beta\nabla_\theta\mathrm{KL}_\mathrm{seq} = \mathbb E[\textstyle\sum_t s_t G_t]",
)
K1_IMMEDIATE = scores_times(lambda i, t: sp.Mul(-beta, log_ratio(*RESPONSES[i][t]), evaluate=False))
K1_EXCLUSIVE = scores_times(
    lambda i, t: sp.Mul(-beta, future_log_ratios(i, t, include_own=False), evaluate=False)
)
K1_SIGN = scores_times(
    lambda i, t: sp.Mul(beta, future_log_ratios(i, t, include_own=True), evaluate=False)
)

# --- 3. k2 in the loss, per token
k2_loss = Derivation(
    "k2-loss",
    (
        Step(
            column(
                lambda logit: over_responses(
                    lambda i: over_tokens(
                        i,
                        lambda t, n, v: sp.Derivative(
                            sp.Mul(
                                sp.Rational(1, 2),
                                sp.Pow(-log_ratio(n, v), 2, evaluate=False),
                                evaluate=False,
                            ),
                            logit,
                        ),
                    )
                )
            ),
            "E_y[grad sum_t k2(y_t)], tokens fixed; k2 = (log r)^2 / 2, log r = -l",
        ),
        Step(
            scores_times(lambda i, t: log_ratio(*RESPONSES[i][t])),
            "chain rule: d (l^2 / 2) = l dl = l_t s_t",
        ),
        Step(
            column(
                lambda logit: sp.Add(
                    scores_times(lambda i, t: future_log_ratios(i, t, include_own=True))[
                        LOGITS.index(logit)
                    ],
                    -MISSING_TERM[LOGITS.index(logit)],
                    evaluate=False,
                )
            ),
            "add and subtract the future log-ratios: l_t = sum_{t' >= t} l_t' - sum_{t' > t} l_t'",
        ),
        Step(
            column(
                lambda logit: sp.Add(
                    sp.Derivative(KL_FORWARD_SEQ, logit),
                    -MISSING_TERM[LOGITS.index(logit)],
                    evaluate=False,
                )
            ),
            "E[sum_t s_t sum_{t' >= t} l_t'] = grad KL_seq(pi || ref) (claim "
            "llm-k1-reward-to-go-sequence-kl-gradient with beta = 1)",
        ),
    ),
    statement=r"\mathbb E[\nabla_\theta \textstyle\sum_t k_2(y_t)] = \nabla\mathrm{KL}_\mathrm{seq} - M",
)
k2_frozen_prefix = Derivation(
    "k2-loss-frozen-prefix",
    (
        Step(
            scores_times(lambda i, t: log_ratio(*RESPONSES[i][t])),
            "E[grad sum_t k2(y_t)] = E[sum_t l_t s_t] (derivation k2-loss, step 2)",
        ),
        Step(
            by_prefix(
                lambda n, v, logit: sp.Mul(log_ratio(n, v), score(n, v, logit), evaluate=False)
            ),
            "regroup the tokens by their prefix h (probability d(h) pi(v | h))",
        ),
        Step(
            frozen_prefix_gradient(reverse=False),
            "grad KL(pi(.|h) || ref(.|h)) = sum_v pi (l + 1) s = sum_v pi l s (E[s | h] = 0): "
            "the per-token KL gradient, the prefix law d(h) held fixed",
        ),
    ),
    statement=r"\mathbb E[\nabla \textstyle\sum_t k_2] = \sum_h d(h) \nabla\mathrm{KL}_h",
)
K2_FULL = KL_GRADIENT
K2_OWN_TOKEN = column(
    lambda logit: sp.Add(
        sp.Derivative(KL_FORWARD_SEQ, logit),
        -scores_times(lambda i, t: future_log_ratios(i, t, include_own=True))[LOGITS.index(logit)],
        evaluate=False,
    )
)
K2_PAST = column(
    lambda logit: sp.Add(
        sp.Derivative(KL_FORWARD_SEQ, logit),
        -scores_times(past_log_ratios)[LOGITS.index(logit)],
        evaluate=False,
    )
)
K2_SIGN = column(
    lambda logit: sp.Add(
        sp.Derivative(KL_FORWARD_SEQ, logit), MISSING_TERM[LOGITS.index(logit)], evaluate=False
    )
)


def _prefix_ratio(i: int, t: int) -> sp.Expr:
    r"""$w_{<t} = \mathrm{ref}(y_{<t}) / \pi(y_{<t})$ (1 for $t = 0$)."""
    prefix = RESPONSES[i][:t]
    if not prefix:
        return sp.Integer(1)
    return sp.Mul(
        product([ref(n, v) for n, v in prefix]),
        sp.Pow(product([pi(n, v) for n, v in prefix]), -1, evaluate=False),
        evaluate=False,
    )


def _weighted(i: int, t: int, weight: sp.Expr) -> sp.Expr:
    return _times(_prefix_ratio(i, t), weight)


def _k3(n: int, v: int) -> sp.Expr:
    r"""$k_3 = (r - 1) - \log r$, $r = \mathrm{ref}/\pi$."""
    r = sp.Mul(ref(n, v), sp.Pow(pi(n, v), -1, evaluate=False), evaluate=False)
    return Named(rf"k_3({v} \mid {n})", sp.Add(r, -1, -sp.log(r), evaluate=False))


def _one_minus_ratio(n: int, v: int) -> sp.Expr:
    return sp.Add(
        1, -sp.Mul(ref(n, v), sp.Pow(pi(n, v), -1, evaluate=False), evaluate=False), evaluate=False
    )


# --- 4. k3 in the loss, per token, and the prefix-weighted fix
k3_loss = Derivation(
    "k3-loss",
    (
        Step(
            column(
                lambda logit: over_responses(
                    lambda i: over_tokens(i, lambda t, n, v: sp.Derivative(_k3(n, v), logit))
                )
            ),
            "E_y[grad sum_t k3(y_t)], tokens fixed; k3 = (r - 1) - log r, r = ref / pi",
        ),
        Step(
            scores_times(lambda i, t: _one_minus_ratio(*RESPONSES[i][t])),
            "dr = -r s and d log r = -s: d k3 = (1 - r) s",
        ),
        Step(
            by_prefix(
                lambda n, v, logit: sp.Mul(
                    _one_minus_ratio(n, v), score(n, v, logit), evaluate=False
                )
            ),
            "regroup the tokens by their prefix h (probability d(h) pi(v | h))",
        ),
        Step(
            frozen_prefix_gradient(reverse=True),
            "sum_v pi (1 - ref/pi) s = sum_v pi s - sum_v ref s = -sum_v ref s "
            "= grad KL(ref(.|h) || pi(.|h)): the other direction, prefixes from pi, d(h) fixed",
        ),
    ),
    statement=(
        r"\mathbb E[\nabla \textstyle\sum_t k_3] = \sum_h d_\theta(h)\,"
        r"\nabla\mathrm{KL}(\pi_\mathrm{ref}(\cdot|h)\,\|\,\pi_\theta(\cdot|h))"
    ),
)
k3_prefix_weighted = Derivation(
    "k3-prefix-weighted",
    (
        Step(
            scores_times(lambda i, t: _weighted(i, t, _one_minus_ratio(*RESPONSES[i][t]))),
            "E_y[sum_t w_<t grad k3(y_t)], w_<t = ref(y_<t)/pi(y_<t) detached; d k3 = (1 - r) s",
        ),
        Step(
            column(
                lambda logit: total(
                    [
                        sp.Mul(
                            reach(n, ref),
                            total(
                                [
                                    sp.Mul(
                                        sp.Add(pi(n, v), -ref(n, v), evaluate=False),
                                        score(n, v, logit),
                                        evaluate=False,
                                    )
                                    for v in (0, EOS)
                                ]
                            ),
                            evaluate=False,
                        )
                        for n in NODES
                    ]
                )
            ),
            "regroup by prefix: d_pi(h) w(h) = d_ref(h), and pi(v|h)(1 - ref/pi) = pi - ref",
        ),
        Step(
            REVERSE_KL_GRADIENT,
            "sum_v pi s = 0 leaves -sum_h d_ref(h) sum_v ref(v|h) s = -E_ref[sum_t s_t] "
            "= grad KL_seq(ref || pi)",
        ),
    ),
    statement=r"\mathbb E[\textstyle\sum_t w_{<t}\nabla k_3] = \nabla\mathrm{KL}_\mathrm{seq}(\pi_\mathrm{ref}\,\|\,\pi)",
)
K3_SEQUENCE_FORWARD = KL_GRADIENT
K3_SEQUENCE_REVERSE = REVERSE_KL_GRADIENT
K3_PREFIX_DIFFERENTIATED = column(
    lambda logit: sp.Derivative(
        total([sp.Mul(reach(n), node_kl(n, reverse=True), evaluate=False) for n in NODES]), logit
    )
)
K3_WHOLE_RATIO = scores_times(
    lambda i, t: sp.Mul(
        _prefix_ratio(i, len(RESPONSES[i])), _one_minus_ratio(*RESPONSES[i][t]), evaluate=False
    )
)


# ============================================================================ numeric machinery
# Independent side ("target"): complex-step derivatives of divergences written over the prefix
# tree (the chain rule of the KL: sum_h d(h) KL_h), from complex log-softmaxes of theta; no
# enumeration of responses, no library score. Library side ("estimator"): every enumerated
# response, its probability (SequenceModel), the per-token k's from
# rlmath.llm_reference.kl_penalty_per_token / kl_reward_to_go (the functions under proof),
# their derivatives in log pi by central differences of those functions, and token scores
# built by a direct loop (1[v = w] - pi(w | n) at the token's node).
def _log_softmax(z: np.ndarray) -> np.ndarray:
    """Complex-safe log softmax over the last axis."""
    shifted = z - z.real.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # type: ignore[no-any-return]


@cache
def _tree(n_tokens: int, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(parent [N], token [N]) of every node (node 0: parent -1)."""
    K = n_tokens
    parent, token = [-1], [-1]
    offsets = [sum(K**j for j in range(d)) for d in range(max_length + 1)]
    for d in range(1, max_length):
        for c in range(K**d):
            parent.append(offsets[d - 1] + c // K)
            token.append(c % K)
    return np.array(parent), np.array(token)


def _reach(model: SequenceModel, log_p: np.ndarray) -> np.ndarray:
    """d(x, h): the probability of generating each prefix, ``[X, N]`` (complex-safe)."""
    parent, token = _tree(model.n_tokens, model.max_length)
    columns: list[Any] = [np.ones(log_p.shape[0], dtype=log_p.dtype)]
    for n in range(1, model.n_nodes):
        columns.append(columns[parent[n]] * np.exp(log_p[:, parent[n], token[n]]))
    return np.stack(columns, axis=1)


def _node_kl(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(p(.|h) || q(.|h)) per prompt and node, ``[X, N]``."""
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)  # type: ignore[no-any-return]


def _tree_gradient(model: SequenceModel, divergence: Callable[[np.ndarray], Any]) -> np.ndarray:
    return complex_step_gradient(lambda z: divergence(_log_softmax(z)), model.theta)


def kl_seq_gradient(model: SequenceModel) -> np.ndarray:
    r"""$\nabla \mathrm{KL}_\mathrm{seq}(\pi_\theta \| \pi_\mathrm{ref})$ = complex step of $\sum_h d_\theta(h) \mathrm{KL}_h$."""
    log_ref = _log_softmax(model.reference_theta)
    return _tree_gradient(
        model,
        lambda lp: model.prompt_probabilities @ (_reach(model, lp) * _node_kl(lp, log_ref)).sum(1),
    )


def reverse_kl_seq_gradient(model: SequenceModel) -> np.ndarray:
    r"""$\nabla \mathrm{KL}_\mathrm{seq}(\pi_\mathrm{ref} \| \pi_\theta)$ = complex step of $\sum_h d_\mathrm{ref}(h) \mathrm{KL}_h(\mathrm{ref} \| \pi)$."""
    log_ref = _log_softmax(model.reference_theta)
    d_ref = _reach(model, log_ref)
    return _tree_gradient(
        model, lambda lp: model.prompt_probabilities @ (d_ref * _node_kl(log_ref, lp)).sum(1)
    )


def frozen_prefix_kl_gradient(model: SequenceModel, *, reverse: bool) -> np.ndarray:
    r"""Complex step of $\sum_h \bar d(h)\, \mathrm{KL}_h$ with $\bar d$ the real (frozen) prefix law."""
    log_ref = _log_softmax(model.reference_theta)
    d = _reach(model, _log_softmax(model.theta))

    def divergence(lp: np.ndarray) -> Any:
        per_node = _node_kl(log_ref, lp) if reverse else _node_kl(lp, log_ref)
        return model.prompt_probabilities @ (d * per_node).sum(1)

    return _tree_gradient(model, divergence)


def prefix_law_kl_gradient(model: SequenceModel) -> np.ndarray:
    r"""Complex step of $\sum_h d_\theta(h) \overline{\mathrm{KL}}_h$, the per-node KL frozen: the gradient through the prefix law only."""
    log_ref = _log_softmax(model.reference_theta)
    kl = _node_kl(_log_softmax(model.theta), log_ref)
    return _tree_gradient(
        model, lambda lp: model.prompt_probabilities @ (_reach(model, lp) * kl).sum(1)
    )


def token_scores(model: SequenceModel) -> np.ndarray:
    r"""$s_{x,i,t} = \nabla_\theta \log\pi(y_{i,t} | x, y_{i,<t})$, ``[X, R, L, X, N, K + 1]`` (0 after the end), by a direct loop."""
    X, R, L = model.n_prompts, model.n_responses, model.max_length
    N, V = model.n_nodes, model.n_tokens + 1
    p = np.exp(_log_softmax(model.theta))
    out = np.zeros((X, R, L, X, N, V))
    nodes, tokens, mask = model.responses.nodes, model.responses.tokens, model.responses.mask
    for x in range(X):
        for i in range(R):
            for t in range(L):
                if mask[i, t]:
                    out[x, i, t, x, nodes[i, t]] -= p[x, nodes[i, t]]
                    out[x, i, t, x, nodes[i, t], tokens[i, t]] += 1.0
    return out


def _token_tables(model: SequenceModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log pi, log ref, mask), each ``[X * R, L]``: the padded token tensors of all responses."""
    X, R, L = model.n_prompts, model.n_responses, model.max_length
    log_pi = model.token_log_probabilities().reshape(X * R, L)
    log_ref = model.token_log_probabilities(reference=True).reshape(X * R, L)
    mask = np.broadcast_to(model.responses.mask[None], (X, R, L)).reshape(X * R, L)
    return log_pi, log_ref, mask


def _derivative_in_log_probs(
    estimator: str, log_pi: np.ndarray, log_ref: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, float]:
    r"""$\partial k / \partial \log\pi$ per token by a central difference of ``kl_penalty_per_token``.

    The step and the error bound come from :func:`rlmath.tolerances.central_difference_step`:
    $k_1$, $k_2$ are polynomials of degree $\le 2$ in $\log\pi$ (third derivative 0: only
    rounding), $k_3$ has $|\partial^3 k_3| = r \le e^{1} \max r$ within a step $\le 1$. Each
    evaluation is off by at most $16\varepsilon$ times a bound on $|k|$ there.
    """
    on = mask.astype(bool)
    lr = np.where(on, log_ref - log_pi, 0.0)
    ratio_bound = float(np.exp(lr.max(initial=0.0) + 1.0))
    size = (1.0 + float(np.abs(lr).max(initial=0.0))) ** 2 + ratio_bound + 1.0
    delta = 16.0 * EPS * size
    third = ratio_bound if estimator == "k3" else 0.0
    h, bound = central_difference_step(third, delta)
    h = min(h, 1.0)
    up, down = log_pi + h, log_pi - h
    step = np.where(on, up - down, 1.0)
    difference = kl_penalty_per_token(
        up, log_ref, mask, estimator=estimator
    ) - kl_penalty_per_token(down, log_ref, mask, estimator=estimator)
    return np.where(on, difference / step, 0.0), float(bound)


def _expectation(model: SequenceModel, weights: np.ndarray) -> np.ndarray:
    r"""$\sum_x \rho(x) \sum_i \pi(y_i|x) \sum_t w_{x,i,t}\, s_{x,i,t}$ for weights ``[X, R, L]`` (or a stack ``[S, X, R, L]``)."""
    p = model.prompt_probabilities[:, None] * model.probabilities()
    return np.einsum("xi,...xit,xitanv->...anv", p, weights, token_scores(model))


def _per_response(model: SequenceModel, weights: np.ndarray) -> np.ndarray:
    r"""$\sum_t w_{x,i,t}\, s_{x,i,t}$ for every (prompt, response): ``[X, R, ..., X, N, K + 1]`` (MC terms)."""
    return np.einsum("...xit,xitanv->xi...anv", weights, token_scores(model))


def _shape(model: SequenceModel, table: np.ndarray) -> np.ndarray:
    return table.reshape(model.n_prompts, model.n_responses, model.max_length)


def loss_weights(model: SequenceModel, estimator: str) -> tuple[np.ndarray, float]:
    r"""Per-token $\partial k / \partial\log\pi$ of a per-token loss, ``[X, R, L]``, and its error bound."""
    derivative, bound = _derivative_in_log_probs(estimator, *_token_tables(model))
    return _shape(model, derivative), bound


def sequence_loss_weights(model: SequenceModel, estimator: str) -> tuple[np.ndarray, float]:
    r"""$\partial k(\Lambda) / \partial \Lambda$ for $k$ at sequence level ($\Lambda = \log\pi(y) - \log\mathrm{ref}(y)$), on every token, ``[X, R, L]``."""
    X, R, L = model.n_prompts, model.n_responses, model.max_length
    log_pi = model.log_probabilities().reshape(X * R, 1)
    log_ref = model.log_probabilities(reference=True).reshape(X * R, 1)
    derivative, bound = _derivative_in_log_probs(estimator, log_pi, log_ref, np.ones((X * R, 1)))
    weights = np.broadcast_to(derivative.reshape(X, R, 1), (X, R, L)) * model.responses.mask[None]
    return weights, bound


def reward_to_go(model: SequenceModel, coefficient: float) -> np.ndarray:
    r"""$G_t = -\beta \sum_{t' \ge t} k_1$ from :func:`rlmath.llm_reference.kl_reward_to_go`, ``[X, R, L]``."""
    log_pi, log_ref, mask = _token_tables(model)
    return _shape(model, kl_reward_to_go(log_pi, log_ref, mask, kl_coefficient=coefficient))


def token_k1(model: SequenceModel) -> np.ndarray:
    r"""$\ell_t = k_1(y_t)$ from :func:`rlmath.llm_reference.kl_penalty_per_token`, ``[X, R, L]``."""
    log_pi, log_ref, mask = _token_tables(model)
    return _shape(model, kl_penalty_per_token(log_pi, log_ref, mask, estimator="k1"))


def prefix_ratios(model: SequenceModel) -> np.ndarray:
    r"""$w_{<t} = \exp\big(\sum_{t'<t} (\log\mathrm{ref} - \log\pi)\big)$ = $\exp(-\sum_{t'<t} k_1)$, ``[X, R, L]``."""
    k1 = token_k1(model)
    exclusive = np.cumsum(k1, axis=2) - k1
    return np.exp(-exclusive) * model.responses.mask[None]


def _scale(model: SequenceModel, *weights: np.ndarray) -> float:
    r"""$\sum_x \rho \sum_i \pi_i \sum_t 2(1 + \sum |w_t| + \sum_{t'} |\ell_{t'}|)$: the size of the accumulated terms."""
    p = model.prompt_probabilities[:, None] * model.probabilities()
    k1 = np.abs(token_k1(model)).sum(axis=2, keepdims=True)
    size = 1.0 + k1 + sum((np.abs(w) for w in weights), np.zeros(1))
    per_token = 2.0 * np.where(model.responses.mask[None], size, 0.0)
    return float(np.einsum("xi,xit->", p, per_token))


def _rtol(model: SequenceModel, scale: float, derivative_bound: float = 0.0) -> float:
    """Rounding of R * L accumulated terms, plus the central differences' error bound."""
    lengths = model.prompt_probabilities @ (model.probabilities() @ model.responses.lengths)
    return exact_rtol(1.0, 4 * model.n_responses * model.max_length) + (
        2.0 * derivative_bound * float(lengths) / scale
    )


# ============================================================================ examples
# 1-2 prompts, 1-3 ordinary tokens plus EOS, L = 2-3 (with L = 1 there are no future tokens
# and the missing term is 0), logits in [-2, 2] (token ratios ref/pi below e^5.4).
examples = sequence_models(
    min_prompts=1, max_prompts=2, max_tokens=3, min_length=2, max_length=3, max_abs_logit=2.0
)
reward_examples = st.tuples(examples, st.floats(0.1, 2.0))
MAX_EXACT_EXAMPLES = 15

# Monte Carlo: smaller models (K <= 2) so the per-sample terms have few components.
mc_models = sequence_models(
    min_prompts=1, max_prompts=2, max_tokens=2, min_length=2, max_length=3, max_abs_logit=1.5
)
MC_SAMPLES = 20_000
N_MC_EXAMPLES = 2
FALSE_ALARM = DEFAULT_FALSE_ALARM
MC_MIN_SD = 1e-3


def sample_responses(
    model: SequenceModel, rng: np.random.Generator, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` i.i.d. (prompt, response index): x ~ rho, then tokens drawn one at a time from
    pi(. | x, prefix) by inverse-CDF sampling until EOS or length L; the response is looked up
    by its token tuple among the enumerated responses."""
    X, K, L = model.n_prompts, model.n_tokens, model.max_length
    p = np.exp(model.next_token_log_probabilities())
    prompts = rng.choice(X, size=count, p=model.prompt_probabilities)
    tokens = np.full((count, L), -1)
    node = np.zeros(count, dtype=int)
    alive = np.ones(count, dtype=bool)
    offsets = [sum(K**j for j in range(d)) for d in range(L + 1)]
    for t in range(L):
        rows = np.flatnonzero(alive)
        cdf = np.cumsum(p[prompts[rows], node[rows]], axis=1)
        u = rng.random(rows.size)
        v = np.minimum((u[:, None] >= cdf).sum(axis=1), K)
        tokens[rows, t] = v
        alive[rows[v == K]] = False
        go = rows[v < K]
        if t < L - 1:
            node[go] = offsets[t + 1] + (node[go] - offsets[t]) * K + v[v < K]
    base = K + 2
    codes = ((tokens + 1) * base ** np.arange(L)).sum(axis=1)
    table = ((model.responses.tokens + 1) * base ** np.arange(L)).sum(axis=1)
    lookup = {int(c): i for i, c in enumerate(table)}
    return prompts, np.array([lookup[int(c)] for c in codes])


Terms = Callable[[SequenceModel], np.ndarray]  # model -> per-response terms [X, R, ...]
Target = Callable[[SequenceModel], np.ndarray]  # model -> exact expectation [...]


def _outcome_law(model: SequenceModel) -> np.ndarray:
    return (model.prompt_probabilities[:, None] * model.probabilities()).ravel()


def _mc_examples(terms: Terms, target: Target, variants: tuple[Mapping[str, Any], ...]) -> Any:
    """Models on which every mutant's shift is detectable with power 0.99 (exact moments)."""

    def usable(model: SequenceModel) -> bool:
        law = _outcome_law(model)
        table = terms(model)
        flat = table.reshape((law.size,) + table.shape[2:])
        mean, sd = exact_moments(law, flat)
        if float(sd.min()) < MC_MIN_SD:
            return False
        exact = target(model)
        for variant in variants:
            shifted_mean = mean
            if "terms" in variant:
                wrong = variant["terms"](model)
                shifted_mean, sd_wrong = exact_moments(law, wrong.reshape(flat.shape))
                sd_use = np.maximum(sd, sd_wrong)
            else:
                sd_use = sd
            claimed = variant["target"](model) if "target" in variant else exact
            if not detectable(
                shifted_mean - claimed,
                sd_use,
                MC_SAMPLES,
                false_alarm=FALSE_ALARM / N_MC_EXAMPLES,
            ):
                return False
        return True

    return mc_models.filter(usable)


def sequence_mc_leg(
    terms: Terms, target: Target, variants: tuple[Mapping[str, Any], ...], description: str
) -> MonteCarloLeg:
    """Sample (x, y) token by token, average the per-response gradient terms, test vs the target.

    A variant (a mutant) is a dict with ``"terms"`` (a wrong estimator) and/or ``"target"`` (a
    wrong claimed expectation). The examples are filtered so that every variant of the claim
    is detectable with power 0.99; the test's false alarm is ``FALSE_ALARM``, Bonferroni over
    the examples and the components.
    """
    strategy = _mc_examples(terms, target, variants)

    @cache
    def draws(seed: int) -> tuple[tuple[SequenceModel, np.ndarray, np.ndarray], ...]:
        out = []
        for index, model in enumerate(draw_examples(strategy, N_MC_EXAMPLES, seed)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
            out.append((model, *sample_responses(model, rng, MC_SAMPLES)))
        return tuple(out)

    def check(seed: int, variant: Mapping[str, Any] | None) -> LegResult:
        true_claim = variant is None
        variant = variant or {}
        rows, controls, passed = [], [], True
        alpha = FALSE_ALARM / N_MC_EXAMPLES
        for index, (model, prompts, responses) in enumerate(draws(seed)):
            table = variant.get("terms", terms)(model)
            sampled = table[prompts, responses]
            expected = variant.get("target", target)(model)
            result = agreement(sampled, expected, false_alarm=alpha, seed=[seed, index])
            passed = passed and result.agrees
            if true_claim:
                controls.append(
                    shifted_control(
                        sampled, expected, result, false_alarm=alpha, seed=[seed, index]
                    )
                )
            rows.append(agreement_row(index, result))
        evidence: dict[str, Any] = {
            "false_alarm": FALSE_ALARM,
            "samples_per_example": MC_SAMPLES,
            "examples": rows,
        }
        if true_claim:
            evidence["control"] = {"shift_in_critical_se": 2.0, "rejected": all(controls)}
        if passed:
            return LegResult("verified", evidence)
        bad = next(row for row in rows if not row["agrees"])
        return LegResult("failed", evidence, f"estimate disagrees with the claimed value: {bad}")

    return MonteCarloLeg(check, description=description)


COMMON_ASSUMPTIONS = (
    "Tabular autoregressive softmax policy and reference over a finite vocabulary with EOS "
    "(a response token) and truncation at L (rlmath.sequence_model); pi_theta > 0 and "
    "pi_ref > 0 on every token.",
    "Tokens y ~ pi_theta (on-policy, one gradient step at the sampling policy); 'in the "
    "loss': the gradient flows through log pi_theta(y_t | prefix) inside k with the sampled "
    "tokens fixed (not through the sampling); detached quantities (rewards to go, importance "
    "weights) are constants.",
    "Symbolic leg: a fully symbolic small instance (one prompt, one ordinary token plus EOS, "
    "L = 2: three responses; at each of the two nodes one free policy logit theta_n and one "
    "reference logit phi_n, symbols, the EOS logit 0 since a two-token softmax is invariant "
    "to a common shift), every entry of the gradient.",
    "Exact leg: 1-2 prompts, 1-3 ordinary tokens plus EOS, L = 2-3 (up to 40 responses per "
    "prompt), random logits in [-2, 2] for policy and reference, random prompt probabilities.",
    "Monte-Carlo leg: 1-2 prompts, 1-2 ordinary tokens, L = 2-3, logits in [-1.5, 1.5]; "
    f"{MC_SAMPLES} responses sampled token by token per example, {N_MC_EXAMPLES} examples, "
    f"false alarm {FALSE_ALARM:g} (Bonferroni over examples and components), every mutant "
    "detectable with power 0.99 on every example.",
)
REFERENCES = (
    "Tang, Y. and Munos, R., *On a few pitfalls in KL divergence gradient estimation for RL*, "
    "arXiv:2506.09477, 2025.",
    "Liu, K., Liu, J. K., Chen, M. and Liu, Y., *Rethinking KL Regularization in RLHF: From "
    "Value Estimation to Gradient Optimization*, arXiv:2510.01555, 2025.",
    "Shah, V. et al., *A Comedy of Estimators: On KL Regularization in RL Training of LLMs*, "
    "arXiv:2512.21852, 2025.",
    "Schulman, J., *Approximating KL Divergence*, blog post, 2020, "
    "http://joschu.net/blog/kl-approx.html.",
    "Williams, R. J., *Simple statistical gradient-following algorithms for connectionist "
    "reinforcement learning*, Machine Learning 8, 1992.",
)
SYMBOL_NAMES = {theta: r"\theta", phi: r"\phi", beta: r"\beta"}
WHERE = (
    r"\text{one prompt, tokens } \{0, \mathrm{EOS}=1\},\ L = 2;\ "
    r"\text{nodes } n = 0: (),\ n = 1: (0);\ "
    r"\pi_{n,v},\ \pi^{\mathrm{ref}}_{n,v} \text{ the next-token laws (logits } \theta_n, \phi_n"
    r" \text{ and } 0)"
)


# ============================================================================ claim 1: k1 loss
def k1_loss_expected(model: SequenceModel) -> np.ndarray:
    """[2, X, N, K + 1]: E[grad sum_t k1(y_t)] and E[grad k1(sum_t l_t)] (k1 of the whole
    sequence, a correct variant) by enumeration (library k1, central differences in log pi)."""
    weights = np.stack([loss_weights(model, "k1")[0], sequence_loss_weights(model, "k1")[0]])
    return _expectation(model, weights)


def k1_loss_terms(model: SequenceModel) -> np.ndarray:
    return _per_response(model, loss_weights(model, "k1")[0])


def _k1_loss_scale(model: SequenceModel) -> float:
    return _scale(model, loss_weights(model, "k1")[0], sequence_loss_weights(model, "k1")[0])


def _k1_loss_bound(model: SequenceModel) -> float:
    return max(loss_weights(model, "k1")[1], sequence_loss_weights(model, "k1")[1])


def _zero_gradient(model: SequenceModel) -> np.ndarray:
    return np.zeros(model.theta.shape)


def _zero_gradients(model: SequenceModel) -> np.ndarray:
    return np.zeros((2,) + model.theta.shape)


def _k1_loss_claims(wrong: Callable[[SequenceModel], np.ndarray]) -> Callable[..., Any]:
    """A mutant's rhs: per-token k1 in the loss claimed to give ``wrong`` (row 0)."""
    return lambda model: np.stack([wrong(model), _zero_gradient(model)])


def _per_token_forward(model: SequenceModel) -> np.ndarray:
    return frozen_prefix_kl_gradient(model, reverse=False)


K1_LOSS_MC_VARIANTS = (
    {"target": kl_seq_gradient},
    {"target": _per_token_forward},
)


# ============================================================================ claim 2: k1 reward
def k1_reward_forms(example: tuple[SequenceModel, float]) -> np.ndarray:
    """[2, X, N, K + 1]: E[sum_t s_t G_t] with G from kl_reward_to_go, and the whole-response
    penalty -beta sum_t' k1 on every token's score (a correct variant)."""
    model, coefficient = example
    whole = -coefficient * token_k1(model).sum(axis=2, keepdims=True) * model.responses.mask[None]
    return _expectation(model, np.stack([reward_to_go(model, coefficient), whole]))


def k1_reward_target(example: tuple[SequenceModel, float]) -> np.ndarray:
    model, coefficient = example
    g = -coefficient * kl_seq_gradient(model)
    return np.stack([g, g])


def _k1_reward_variant(weights: Callable[[SequenceModel, float], np.ndarray]) -> Callable[..., Any]:
    def rhs(example: tuple[SequenceModel, float]) -> np.ndarray:
        model, coefficient = example
        correct = k1_reward_forms(example)
        return np.stack([_expectation(model, weights(model, coefficient)), correct[1]])

    return rhs


def _immediate(model: SequenceModel, coefficient: float) -> np.ndarray:
    return -coefficient * token_k1(model)


def _exclusive(model: SequenceModel, coefficient: float) -> np.ndarray:
    return reward_to_go(model, coefficient) + coefficient * token_k1(model)


def _flipped(model: SequenceModel, coefficient: float) -> np.ndarray:
    return -reward_to_go(model, coefficient)


def _k1_reward_scale(example: tuple[SequenceModel, float]) -> float:
    model, coefficient = example
    return coefficient * _scale(model)


MC_BETA = 1.0


def _mc_reward_terms(weights: Callable[[SequenceModel, float], np.ndarray]) -> Terms:
    return lambda model: _per_response(model, weights(model, MC_BETA))


K1_REWARD_MC_VARIANTS = (
    {"terms": _mc_reward_terms(_immediate)},
    {"terms": _mc_reward_terms(_exclusive)},
    {"terms": _mc_reward_terms(_flipped)},
)


# ============================================================================ claim 3: k2 loss
def k2_loss_forms(model: SequenceModel) -> np.ndarray:
    """[3, X, N, K + 1]: E[grad sum_t k2] ; that + E[sum_t s_t sum_{t'>t} k1] (the detached
    fix) ; E[grad k2(sum_t l_t)] (k2 at sequence level). Library k's throughout."""
    per_token = loss_weights(model, "k2")[0]
    future = reward_to_go(model, 1.0) * -1.0 - token_k1(model)  # sum_{t' > t} k1
    sequence = sequence_loss_weights(model, "k2")[0]
    return _expectation(model, np.stack([per_token, per_token + future, sequence]))


def k2_loss_target(model: SequenceModel) -> np.ndarray:
    """[3, ...]: grad KL_seq - (gradient through the prefix law), grad KL_seq, grad KL_seq."""
    g = kl_seq_gradient(model)
    return np.stack([g - prefix_law_kl_gradient(model), g, g])


def _k2_bound(model: SequenceModel) -> float:
    return max(loss_weights(model, "k2")[1], sequence_loss_weights(model, "k2")[1])


def _k2_scale(model: SequenceModel) -> float:
    return _scale(model, loss_weights(model, "k2")[0], sequence_loss_weights(model, "k2")[0])


def _k2_variant(row: int, wrong: Callable[[SequenceModel], np.ndarray]) -> Callable[..., Any]:
    def rhs(model: SequenceModel) -> np.ndarray:
        out = k2_loss_target(model).copy()
        out[row] = wrong(model)
        return out

    return rhs


def _future_k1(model: SequenceModel) -> np.ndarray:
    return -reward_to_go(model, 1.0) - token_k1(model)


def _fix_with_past(model: SequenceModel) -> np.ndarray:
    """The library forms with the fix row built from the past log-ratios sum_{t' < t} k1."""
    out = k2_loss_forms(model).copy()
    k1 = token_k1(model)
    past = np.cumsum(k1, axis=2) - k1
    out[1] = _expectation(model, loss_weights(model, "k2")[0] + past)
    return out


def k2_loss_terms(model: SequenceModel) -> np.ndarray:
    return _per_response(model, loss_weights(model, "k2")[0])


def _k2_target_row0(model: SequenceModel) -> np.ndarray:
    return kl_seq_gradient(model) - prefix_law_kl_gradient(model)


K2_LOSS_MC_VARIANTS = (
    {"target": kl_seq_gradient},
    {"target": lambda model: kl_seq_gradient(model) + prefix_law_kl_gradient(model)},
    {
        "target": lambda model: (
            kl_seq_gradient(model) - _expectation(model, -reward_to_go(model, 1.0))
        )
    },
)


# ============================================================================ claim 4: k3 loss
def k3_loss_forms(model: SequenceModel) -> np.ndarray:
    """[3, ...]: E[grad sum_t k3] ; E[sum_t w_<t grad k3] ; E[grad k3(sum_t l_t)]."""
    per_token = loss_weights(model, "k3")[0]
    sequence = sequence_loss_weights(model, "k3")[0]
    return _expectation(model, np.stack([per_token, prefix_ratios(model) * per_token, sequence]))


def k3_loss_target(model: SequenceModel) -> np.ndarray:
    reverse = reverse_kl_seq_gradient(model)
    return np.stack([frozen_prefix_kl_gradient(model, reverse=True), reverse, reverse])


def _k3_bound(model: SequenceModel) -> float:
    return max(loss_weights(model, "k3")[1], sequence_loss_weights(model, "k3")[1])


def _k3_scale(model: SequenceModel) -> float:
    per_token = loss_weights(model, "k3")[0]
    return _scale(
        model, per_token, prefix_ratios(model) * per_token, sequence_loss_weights(model, "k3")[0]
    )


def _k3_forms_variant(
    row: int, weights: Callable[[SequenceModel], np.ndarray]
) -> Callable[..., Any]:
    """The library forms with row ``row`` computed from the wrong per-token weights."""

    def rhs(model: SequenceModel) -> np.ndarray:
        out = k3_loss_forms(model).copy()
        out[row] = _expectation(model, weights(model))
        return out

    return rhs


def _prefix_differentiated(model: SequenceModel) -> np.ndarray:
    r"""Complex step of $\sum_h d_\theta(h)\, \mathrm{KL}(\mathrm{ref}(\cdot|h) \| \pi_\theta(\cdot|h))$, prefix law differentiated."""
    log_ref = _log_softmax(model.reference_theta)
    return _tree_gradient(
        model,
        lambda lp: model.prompt_probabilities @ (_reach(model, lp) * _node_kl(log_ref, lp)).sum(1),
    )


def _whole_ratio_weighted(model: SequenceModel) -> np.ndarray:
    ratio = np.exp(-token_k1(model).sum(axis=2, keepdims=True)) * model.responses.mask[None]
    return ratio * loss_weights(model, "k3")[0]


def _token_ratio_weighted(model: SequenceModel) -> np.ndarray:
    ratio = np.exp(-token_k1(model)) * model.responses.mask[None]
    return ratio * loss_weights(model, "k3")[0]


def _k3_variant_row(row: int, wrong: Callable[[SequenceModel], np.ndarray]) -> Callable[..., Any]:
    def rhs(model: SequenceModel) -> np.ndarray:
        out = k3_loss_target(model).copy()
        out[row] = wrong(model)
        return out

    return rhs


def k3_mc_terms(model: SequenceModel) -> np.ndarray:
    per_token = loss_weights(model, "k3")[0]
    return _per_response(model, np.stack([per_token, prefix_ratios(model) * per_token]))


def k3_mc_target(model: SequenceModel) -> np.ndarray:
    return k3_loss_target(model)[:2]


def _k3_mc_target_row(row: int, wrong: Callable[[SequenceModel], np.ndarray]) -> Target:
    def target(model: SequenceModel) -> np.ndarray:
        out = k3_mc_target(model).copy()
        out[row] = wrong(model)
        return out

    return target


def _k3_mc_terms_row1(weights: Callable[[SequenceModel], np.ndarray]) -> Terms:
    def terms(model: SequenceModel) -> np.ndarray:
        per_token = loss_weights(model, "k3")[0]
        return _per_response(model, np.stack([per_token, weights(model)]))

    return terms


K3_LOSS_MC_VARIANTS = (
    {"target": _k3_mc_target_row(0, kl_seq_gradient)},
    {"target": _k3_mc_target_row(0, reverse_kl_seq_gradient)},
    {"terms": _k3_mc_terms_row1(_whole_ratio_weighted)},
)


CLAIMS = (
    Claim(
        id="llm-token-k1-loss-zero-gradient",
        title="Per-token k1 in the loss has zero expected gradient",
        statement=Statement(
            k1_loss.start, k1_loss.conclusion, where=WHERE, symbol_names=SYMBOL_NAMES
        ),
        assumptions=COMMON_ASSUMPTIONS,
        references=REFERENCES,
        summary=(
            "Adding sum_t (log pi - log pi_ref) of the sampled tokens to the loss and "
            "backpropagating regularises nothing: its expected gradient is exactly zero, "
            "although k1 is an unbiased estimate of the sequence KL."
        ),
        symbolic=SymbolicLeg((k1_loss,)),
        exact=ExactLeg(
            examples,
            lhs=k1_loss_expected,
            rhs=_zero_gradients,
            rhs_reason=(
                "the conclusion is 0; the lhs runs rlmath.llm_reference.kl_penalty_per_token "
                "(the function under proof) at every size drawn, which a lambdified "
                "four-logit formula would not exercise"
            ),
            rtol=lambda model: _rtol(model, _k1_loss_scale(model), _k1_loss_bound(model)),
            error_scale=_k1_loss_scale,
            max_examples=MAX_EXACT_EXAMPLES,
            description=(
                "rows: per-token k1 and k1 of the whole sequence in the loss; sum over every "
                "enumerated response of rho(x) pi(y|x) sum_t (d k / d log pi)_t s_t, with k1 "
                "from kl_penalty_per_token and its derivative by central differences, token "
                "scores by a direct loop, vs 0"
            ),
        ),
        monte_carlo=sequence_mc_leg(
            k1_loss_terms,
            _zero_gradient,
            K1_LOSS_MC_VARIANTS,
            "mean over responses sampled token by token of sum_t (d k1/d log pi) s_t vs 0",
        ),
        mutants=(
            Mutant(
                "k1-loss-gives-sequence-kl-gradient",
                "k1 is unbiased for KL_seq(pi || ref), so its gradient is claimed to be "
                "grad KL_seq (the gradient through the sampling is what it misses)",
                symbolic=SymbolicMutation("k1-loss", KL_GRADIENT),
                exact=_k1_loss_claims(kl_seq_gradient),
                monte_carlo=K1_LOSS_MC_VARIANTS[0],
            ),
            Mutant(
                "k1-loss-gives-per-token-kl-gradient",
                "claimed to give the per-token KL(pi || ref) gradient with prefixes held "
                "fixed (what k2 in the loss gives)",
                symbolic=SymbolicMutation("k1-loss", frozen_prefix_gradient(reverse=False)),
                exact=_k1_loss_claims(_per_token_forward),
                monte_carlo=K1_LOSS_MC_VARIANTS[1],
            ),
        ),
    ),
    Claim(
        id="llm-k1-reward-to-go-sequence-kl-gradient",
        title="k1 in the reward, summed to go, gives exactly the sequence-KL gradient",
        statement=Statement(
            k1_reward.start, k1_reward.conclusion, where=WHERE, symbol_names=SYMBOL_NAMES
        ),
        assumptions=COMMON_ASSUMPTIONS
        + (
            "The per-token reward is -beta k1 (beta >= 0), detached; G_t is its undiscounted "
            "sum over t' >= t (the token itself included), as kl_reward_to_go returns; the "
            "score-function update sum_t s_t G_t ascends J - beta KL_seq, so its KL part is "
            "-beta grad KL_seq(pi || ref).",
        ),
        references=REFERENCES
        + (
            "Ouyang, L. et al., *Training language models to follow instructions with human "
            "feedback*, NeurIPS 2022, eq. (2).",
        ),
        summary=(
            "Putting -beta (log pi - log pi_ref) per token into the reward and summing it to "
            "go (the PPO-RLHF / REINFORCE++ way) gives exactly -beta grad KL(pi || pi_ref) at "
            "sequence level; without the sum to go, or excluding the token itself, it does not."
        ),
        symbolic=SymbolicLeg((k1_reward,)),
        exact=ExactLeg(
            reward_examples,
            lhs=k1_reward_target,
            rhs=k1_reward_forms,
            rhs_reason=(
                "the symbolic leg proves the identity on a small symbolic instance; the exact "
                "leg checks it at every size drawn through rlmath.llm_reference.kl_reward_to_go "
                "and kl_penalty_per_token (the library code), which a lambdified four-logit "
                "formula would not exercise"
            ),
            rtol=lambda example: _rtol(example[0], _scale(example[0])),
            error_scale=_k1_reward_scale,
            max_examples=MAX_EXACT_EXAMPLES,
            description=(
                "-beta times complex-step derivatives of KL_seq = sum_h d(h) KL_h over the "
                "prefix tree vs the enumerated E[sum_t s_t G_t] with G from kl_reward_to_go, "
                "and E[sum_t s_t (-beta sum_t' k1)] (a correct variant)"
            ),
        ),
        monte_carlo=sequence_mc_leg(
            _mc_reward_terms(reward_to_go),
            lambda model: -MC_BETA * kl_seq_gradient(model),
            K1_REWARD_MC_VARIANTS,
            "mean over responses sampled token by token of sum_t s_t G_t (kl_reward_to_go, "
            "beta = 1) vs -grad KL_seq by complex step",
        ),
        mutants=(
            Mutant(
                "k1-reward-not-summed-to-go",
                "each token's score weighted by its own penalty -beta k1_t only (no reward to "
                "go): the partial gradient of per-token k2 in the loss",
                symbolic=SymbolicMutation("k1-reward-to-go", K1_IMMEDIATE),
                exact=_k1_reward_variant(_immediate),
                monte_carlo=K1_REWARD_MC_VARIANTS[0],
            ),
            Mutant(
                "k1-reward-to-go-excludes-own-token",
                "reward to go from t + 1 (the token's own penalty left out): off by one",
                symbolic=SymbolicMutation("k1-reward-to-go", K1_EXCLUSIVE),
                exact=_k1_reward_variant(_exclusive),
                monte_carlo=K1_REWARD_MC_VARIANTS[1],
            ),
            Mutant(
                "k1-reward-sign-flipped",
                "the penalty added to the reward with the wrong sign (+beta k1)",
                symbolic=SymbolicMutation("k1-reward-to-go", K1_SIGN),
                exact=_k1_reward_variant(_flipped),
                monte_carlo=K1_REWARD_MC_VARIANTS[2],
            ),
        ),
        notes=(
            "Sign conventions. `kl_reward_to_go` returns $G_t = -\\beta \\sum_{t' \\ge t} "
            "k_1(y_{t'})$, the reward to go of the per-token reward $-\\beta k_1$; added to the "
            "advantage of token $t$, the ascent direction $\\mathbb E[\\sum_t s_t G_t]$ is "
            "$-\\beta \\nabla \\mathrm{KL}_\\mathrm{seq}(\\pi_\\theta \\| \\pi_\\mathrm{ref})$, so "
            "the policy *loss* $-\\sum_t \\log\\pi_\\theta(y_t)\\, \\mathrm{sg}(G_t)$ has expected "
            "gradient $+\\beta \\nabla \\mathrm{KL}_\\mathrm{seq}$: minimising it lowers the KL. "
            "Summing the penalty of the *whole* response onto every token's score is also exact "
            "(second row of the exact leg): the past tokens' penalties multiply scores of mean "
            "zero. Not summing to go (each score times its own token's penalty only) gives "
            "the partial gradient of per-token $k_2$ in the loss (claim "
            "`llm-token-k2-loss-partial-kl-gradient`)."
        ),
    ),
    Claim(
        id="llm-token-k2-loss-partial-kl-gradient",
        title="Per-token k2 in the loss gives only a partial sequence-KL gradient",
        statement=Statement(
            k2_loss.start, k2_loss.conclusion, where=WHERE, symbol_names=SYMBOL_NAMES
        ),
        assumptions=COMMON_ASSUMPTIONS,
        references=REFERENCES,
        summary=(
            "(1/2)(log pi - log pi_ref)^2 per token in the loss differentiates the per-token "
            "KL with the prefixes frozen and misses E[sum_t s_t sum_{t'>t} k1_t'] of the "
            "sequence-KL gradient; k2 of the whole sequence, or that term added detached, "
            "gives the full gradient."
        ),
        symbolic=SymbolicLeg((k2_loss, k2_frozen_prefix)),
        exact=ExactLeg(
            examples,
            lhs=k2_loss_target,
            rhs=k2_loss_forms,
            rhs_reason=(
                "the symbolic leg proves the identity on a small symbolic instance; the exact "
                "leg checks it at every size drawn through kl_penalty_per_token and "
                "kl_reward_to_go (the library code), which a lambdified four-logit formula "
                "would not exercise"
            ),
            rtol=lambda model: _rtol(model, _k2_scale(model), _k2_bound(model)),
            error_scale=_k2_scale,
            max_examples=MAX_EXACT_EXAMPLES,
            description=(
                "rows: [grad KL_seq - grad through the prefix law, grad KL_seq, grad KL_seq] "
                "by complex steps over the prefix tree vs the enumerated [E grad sum_t k2, "
                "E grad sum_t k2 + E sum_t s_t sum_{t'>t} k1, E grad k2(sum_t l_t)] with the "
                "library k's (derivatives by central differences)"
            ),
        ),
        monte_carlo=sequence_mc_leg(
            k2_loss_terms,
            _k2_target_row0,
            K2_LOSS_MC_VARIANTS,
            "mean over responses sampled token by token of sum_t (d k2/d log pi) s_t vs "
            "grad KL_seq minus the complex-step gradient through the prefix law",
        ),
        mutants=(
            Mutant(
                "k2-loss-gives-sequence-kl-gradient",
                "per-token k2 in the loss claimed to give grad KL_seq(pi || ref) (true for one "
                "token, Liu et al.'s on-policy equivalence, not per token of a sequence)",
                symbolic=SymbolicMutation("k2-loss", K2_FULL),
                exact=_k2_variant(0, kl_seq_gradient),
                monte_carlo=K2_LOSS_MC_VARIANTS[0],
            ),
            Mutant(
                "missing-term-sign",
                "the missing term added instead of subtracted",
                symbolic=SymbolicMutation("k2-loss", K2_SIGN),
                exact=_k2_variant(
                    0, lambda model: kl_seq_gradient(model) + prefix_law_kl_gradient(model)
                ),
                monte_carlo=K2_LOSS_MC_VARIANTS[1],
            ),
            Mutant(
                "missing-term-includes-own-token",
                "the missing term taken as sum_{t' >= t} (the own token's log-ratio included)",
                symbolic=SymbolicMutation("k2-loss", K2_OWN_TOKEN),
                exact=_k2_variant(
                    0,
                    lambda model: (
                        kl_seq_gradient(model) - _expectation(model, -reward_to_go(model, 1.0))
                    ),
                ),
                monte_carlo=K2_LOSS_MC_VARIANTS[2],
            ),
            Mutant(
                "fix-with-past-log-ratios",
                "the fix adds the past tokens' log-ratios sum_{t' < t} k1 times s_t (mean "
                "zero), so the 'fixed' loss is claimed exact while it still misses the term",
                symbolic=SymbolicMutation("k2-loss", K2_PAST),
                exact=_fix_with_past,
            ),
        ),
        notes=(
            "Liu et al. (2025) prove that on-policy 'k2 as loss' is gradient-equivalent to "
            "'k1 in reward'. For a sequence this holds for k2 of the *sequence* log-ratio, "
            "$\\tfrac12(\\sum_t \\ell_t)^2$ (third row of the exact leg), not for the "
            "per-token sum $\\sum_t \\tfrac12 \\ell_t^2$ (first row), which misses Tang and "
            "Munos's term."
        ),
    ),
    Claim(
        id="llm-token-k3-loss-per-token-forward-kl",
        title="Per-token k3 in the loss follows the per-token KL(pi_ref || pi), not a sequence KL",
        statement=Statement(
            k3_loss.start, k3_loss.conclusion, where=WHERE, symbol_names=SYMBOL_NAMES
        ),
        assumptions=COMMON_ASSUMPTIONS,
        references=REFERENCES
        + (
            "Shao, Z. et al., *DeepSeekMath*, arXiv:2402.03300, 2024, eq. (4) (k3 in the GRPO "
            "loss).",
        ),
        summary=(
            "GRPO's per-token k3 loss pulls each next-token distribution towards pi_ref in "
            "KL(pi_ref || pi) at the prefixes pi itself visits: it is the gradient of neither "
            "KL(pi || pi_ref) nor KL(pi_ref || pi) of sequences; weighting token t by the "
            "detached prefix ratio pi_ref(y_<t)/pi(y_<t) makes it the sequence KL(pi_ref || pi)."
        ),
        symbolic=SymbolicLeg((k3_loss, k3_prefix_weighted)),
        exact=ExactLeg(
            examples,
            lhs=k3_loss_target,
            rhs=k3_loss_forms,
            rhs_reason=(
                "the symbolic leg proves the identities on a small symbolic instance; the "
                "exact leg checks them at every size drawn through kl_penalty_per_token (the "
                "library code), which a lambdified four-logit formula would not exercise"
            ),
            rtol=lambda model: _rtol(model, _k3_scale(model), _k3_bound(model)),
            error_scale=_k3_scale,
            max_examples=MAX_EXACT_EXAMPLES,
            description=(
                "rows: [sum_h d(h) grad KL(ref(.|h) || pi(.|h)) with d frozen, grad "
                "KL_seq(ref || pi), the same] by complex steps over the prefix tree vs the "
                "enumerated [E grad sum_t k3, E sum_t w_<t grad k3, E grad k3(sum_t l_t)] "
                "with k3 from kl_penalty_per_token (derivatives by central differences)"
            ),
        ),
        monte_carlo=sequence_mc_leg(
            k3_mc_terms,
            k3_mc_target,
            K3_LOSS_MC_VARIANTS,
            "mean over responses sampled token by token of [sum_t grad k3, sum_t w_<t grad k3] "
            "vs [frozen-prefix grad KL(ref || pi), grad KL_seq(ref || pi)] by complex steps",
        ),
        mutants=(
            Mutant(
                "k3-loss-gives-sequence-kl-gradient",
                "k3 is unbiased for KL(pi || ref), so per-token k3 in the loss is claimed to "
                "give grad KL_seq(pi || ref)",
                symbolic=SymbolicMutation("k3-loss", K3_SEQUENCE_FORWARD),
                exact=_k3_variant_row(0, kl_seq_gradient),
                monte_carlo=K3_LOSS_MC_VARIANTS[0],
            ),
            Mutant(
                "k3-loss-gives-sequence-reverse-kl-gradient",
                "per-token k3 claimed to give grad KL_seq(ref || pi) (prefixes from ref), "
                "i.e. the prefix distribution taken to be the reference's",
                symbolic=SymbolicMutation("k3-loss", K3_SEQUENCE_REVERSE),
                exact=_k3_variant_row(0, reverse_kl_seq_gradient),
                monte_carlo=K3_LOSS_MC_VARIANTS[1],
            ),
            Mutant(
                "k3-loss-prefix-law-differentiated",
                "claimed to be the full gradient of sum_h d_theta(h) KL(ref(.|h) || pi(.|h)), "
                "the prefix law differentiated too",
                symbolic=SymbolicMutation("k3-loss", K3_PREFIX_DIFFERENTIATED),
                exact=_k3_variant_row(0, _prefix_differentiated),
            ),
            Mutant(
                "k3-fix-weights-whole-sequence-ratio",
                "the importance-weighted fix with the whole response's ratio ref(y)/pi(y) on "
                "every token instead of the prefix ratio",
                symbolic=SymbolicMutation("k3-prefix-weighted", K3_WHOLE_RATIO),
                exact=_k3_forms_variant(1, _whole_ratio_weighted),
                monte_carlo=K3_LOSS_MC_VARIANTS[2],
            ),
        ),
        notes=(
            "Which fix is exact. For $\\mathrm{KL}_\\mathrm{seq}(\\pi_\\mathrm{ref} \\| "
            "\\pi_\\theta)$: the per-token $k_3$ loss weighted by the detached prefix ratio "
            "$w_{<t} = \\pi_\\mathrm{ref}(y_{<t})/\\pi_\\theta(y_{<t})$ (the token's own ratio "
            "is already inside $\\nabla k_3 = (1 - r_t) s_t$), and $k_3$ of the sequence "
            "log-ratio in the loss, $\\nabla k_3(\\sum_t \\ell_t) = (1 - \\pi_\\mathrm{ref}(y)/"
            "\\pi_\\theta(y)) \\sum_t s_t$ (rows 2 and 3 of the exact leg; heavy-tailed "
            "weights, so only row 2 is also sampled). Weighting every token by the whole "
            "response's ratio is wrong (mutant). For $\\mathrm{KL}_\\mathrm{seq}(\\pi_\\theta "
            "\\| \\pi_\\mathrm{ref})$, the direction RLHF regularises, use $k_1$ in the reward "
            "summed to go, $k_2$ of the sequence log-ratio in the loss, or per-token $k_2$ plus "
            "the detached future log-ratios (claims `llm-k1-reward-to-go-sequence-kl-gradient`, "
            "`llm-token-k2-loss-partial-kl-gradient`)."
        ),
    ),
)
