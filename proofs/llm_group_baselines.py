r"""Group baselines in LLM policy gradients: RLOO, group mean, GRPO std and length normalisation.

Setting. A prompt $x \sim \rho$ and a *group* of $G \ge 2$ responses
$y_1, \dots, y_G \sim \pi_\theta(\cdot \mid x)$, i.i.d. given $x$, with rewards
$r_i = R(x, y_i)$ and sequence scores $s_i = \nabla_\theta \log\pi_\theta(y_i \mid x)$ (the sum
of the token scores, EOS included: claim ``llm-sequence-policy-gradient``). A *group
estimator* with advantages $A_i$ is

$$ \hat g = \frac1G \sum_{i=1}^G A_i\, s_i, \qquad
   J(\theta) = \mathbb E_{x}\,\mathbb E_{y \sim \pi_\theta(\cdot|x)}[R(x, y)]. $$

Main statements (every expectation over $x$ and the group):

1. **RLOO** (Kool et al. 2019; Ahmadian et al. 2024):
   $A_i = r_i - \frac{1}{G-1}\sum_{j \ne i} r_j$ gives $\mathbb E[\hat g] = \nabla_\theta J$.
2. **Group mean** (the baseline includes the member itself):
   $A_i = r_i - \frac1G \sum_j r_j$ gives $\mathbb E[\hat g] = (1 - \frac1G)\nabla_\theta J$.
3. **GRPO std normalisation** (Shao et al. 2024, Sec. 4.1.2, the outcome-supervision
   advantage $\tilde r_i = (r_i - \mathrm{mean}(r)) / \mathrm{std}(r)$), for **binary**
   rewards $r \in \{0, 1\}$: with $p_x(\theta) = \Pr_{y \sim \pi_\theta(\cdot|x)}[r = 1]$,

   $$ \mathbb E[\hat g] = \sum_x \rho(x)\, c_G(p_x)\, \nabla_\theta p_x, \qquad
      c_G(p) = \sum_{k=0}^{G-1} \binom{G-1}{k} p^k (1-p)^{G-1-k}
      \big(a_+(k+1) - a_-(k)\big) > 0, $$

   where $a_+(m)$ and $a_-(m)$ are the advantages of a success and of a failure in a group
   with $m$ successes: with the sample std (``ddof = 1``, ``torch.std``'s default),
   $a_+(m) = \sqrt{(G-1)(G-m)/(G m)}$ ($0$ at $m = G$) and
   $a_-(m) = -\sqrt{(G-1) m / (G (G-m))}$ ($0$ at $m = 0$). So for one prompt the expected
   GRPO update is **parallel** to $\nabla_\theta J$ with the positive factor $c_G(p)$; across
   prompts it is the gradient of $\sum_x \rho(x) \Phi_G(p_x)$ with $\Phi_G' = c_G$: each
   prompt's gradient is reweighted by its own $c_G(p_x)$, which is *not* parallel to
   $\nabla_\theta J = \sum_x \rho(x) \nabla p_x$ once $G \ge 4$ (for $G = 2, 3$ the factor is
   the constant $1/\sqrt2$, $2/\sqrt3$). As $G \to \infty$, $c_G(p) \to 1/\sqrt{p(1-p)}$, the
   inverse std of the prompt's reward: Dr. GRPO's "question-level difficulty bias" (Liu et
   al. 2025, Sec. 3.1), which upweights prompts that are nearly always or nearly never
   solved.
4. **Length normalisation** (Shao et al. 2024, eq. (3); Liu et al. 2025, Sec. 3.1): with the
   group-mean advantage and each response's token scores averaged over its length $|y_i|$,

   $$ \mathbb E\Big[\frac1G \sum_i \frac{A_i}{|y_i|} s_i\Big]
      = \Big(1 - \frac1G\Big) \sum_x \rho(x)\Big(\nabla_\theta \mathbb E_x\Big[\frac{r}{|y|}\Big]
        - \mathbb E_x[r]\, \nabla_\theta \mathbb E_x\Big[\frac{1}{|y|}\Big]\Big), $$

   the gradient of $\mathbb E[(r - \mu_x)/|y|]$ with $\mu_x = \mathbb E_x[r]$ held fixed, not
   of $J$; with a constant normaliser $\Lambda$ (Dr. GRPO) it is
   $\frac{1 - 1/G}{\Lambda} \nabla_\theta J$.

Conventions. The objective is maximised (no loss sign). The advantages are detached
(constants for the gradient). GRPO's $0/0$ for a group of equal rewards is $0$ (the limit of
$(r_i - \bar r)/(\mathrm{std} + \varepsilon)$, whose numerator is exactly $0$); we take
$\varepsilon = 0$ elsewhere. No clipping, no KL term and one gradient step at the sampling
policy (so PPO-style ratios are 1): these claims are about the advantage, not the surrogate.

Proof sketch. By exchangeability $\mathbb E[\hat g] = \mathbb E[A_1 s_1]$. For RLOO and the
group mean, linearity and independence give $\mathbb E[r_j s_1] = \mathbb E[r]\,\mathbb E[s]
= 0$ for $j \ne 1$ (the score has mean zero), so only the $j = 1$ term, $\mathbb E[r_1 s_1] =
\nabla J$ (log-derivative trick), survives: with weight $1$ for RLOO and $1 - 1/G$ for the
mean. For GRPO, the other $G - 1$ members enter $A_1$ only through their number of
successes $k \sim \mathrm{Binomial}(G-1, p)$, independent of $y_1$; averaging over $k$ leaves
a function $h(r_1)$, affine in $r_1 \in \{0, 1\}$: $h(r) = h(0) + c_G(p) r$. The constant
$h(0)$ multiplies $\mathbb E[s_1] = 0$; the rest is $c_G(p)\,\mathbb E[r_1 s_1] = c_G(p)
\nabla p$.

References. Kool, W., van Hoof, H. and Welling, M., "Buy 4 REINFORCE samples, get a baseline
for free!", ICLR Workshop 2019 (the leave-one-out baseline); Ahmadian, A. et al.,
"Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in
LLMs", ACL 2024 (RLOO, the leave-one-out advantage); Shao, Z. et al., "DeepSeekMath: Pushing the Limits of
Mathematical Reasoning in Open Language Models", 2024, Sec. 4.1.2 (GRPO outcome supervision:
$\hat A_{i,t} = \tilde r_i = (r_i - \mathrm{mean}(r))/\mathrm{std}(r)$); Liu, Z. et al.,
"Understanding R1-Zero-Like Training: A Critical Perspective", 2025, Sec. 3.1 (Dr. GRPO: the
std normalisation's question-level difficulty bias).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from functools import lru_cache
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
    detectable,
    monte_carlo_leg,
)
from rlmath.llm_reference import dr_grpo_advantages, grpo_advantages, rloo_advantages
from rlmath.named_functions import Named, SoftmaxProbability
from rlmath.sequence_model import GroupBatch, SequenceModel, count_groups, expected_over_groups
from rlmath.sequence_sampling import sample_groups, score_sums
from rlmath.statistics import DEFAULT_FALSE_ALARM
from rlmath.testing import sequence_models
from rlmath.tolerances import exact_rtol

# ============================================================================ symbolic instance
# One prompt whose responses are three outcomes a = 0, 1, 2 with softmax probabilities
# pi_a = exp(theta_a) / sum_b exp(theta_b) (a categorical law over whole responses: the
# sequence-level view; the autoregressive factorisation is the exact leg's business) and
# rewards f_a. The score of outcome a in logit theta_k is 1[a = k] - pi_k. The group size G
# is a symbol (RLOO: G = H + 1 with H >= 1, so that 1/(G - 1) is defined).
theta = sp.IndexedBase("theta", real=True)
f = sp.IndexedBase("f", real=True)
G = sp.Symbol("G", integer=True, positive=True)
H = sp.Symbol("H", integer=True, positive=True)  # G - 1 for RLOO
OUTCOMES = (0, 1, 2)
ell = sp.IndexedBase("ell", positive=True)  # response lengths |y_a| (EOS included)


def pi(a: int) -> sp.Expr:
    """pi_a = exp(theta_a) / sum_b exp(theta_b), kept whole and printed by name (``doit`` gives
    the quotient the prover works with)."""
    return SoftmaxProbability(sp.Integer(a), *(theta[b] for b in OUTCOMES))


def score(a: int, k: int) -> sp.Expr:
    """d log pi_a / d theta_k = 1[a = k] - pi_k."""
    return sp.Add(sp.Integer(int(a == k)), -pi(k), evaluate=False)


# The expectations below are sympy expressions kept whole under a name (rlmath.named_functions:
# the page shows the name and lists its definition; ``doit``, which every proving rewriting
# starts from, replaces the name by the sum it stands for).
def expected_reward_times_score(k: int, reward: Callable[[int], Any] = lambda a: f[a]) -> sp.Expr:
    """E[r_1 s_{1,k}] = sum_a pi_a r_a (1[a = k] - pi_k)."""
    return Named(
        rf"\E[r_1 s_{{1,{k}}}]",
        sp.Add(
            *(sp.Mul(pi(a), reward(a), score(a, k), evaluate=False) for a in OUTCOMES),
            evaluate=False,
        ),
    )


def _score_term(a: int, k: int, per_length: bool) -> sp.Expr:
    """(1[a = k] - pi_k), divided by the length ell_a with ``per_length`` (token-mean)."""
    return score(a, k) / ell[a] if per_length else score(a, k)


def expected_other_reward_times_score(k: int, *, per_length: bool = False) -> sp.Expr:
    """E[r_2 s_{1,k}] (j != i): sum over the pair (a, b) of pi_a pi_b f_b (1[a = k] - pi_k);
    with ``per_length`` E[r_2 s_{1,k} / |y_1|], each term divided by ell_a."""
    over = r" / \ell_1" if per_length else ""
    return Named(
        rf"\E[r_2 s_{{1,{k}}}{over}]",
        sp.Add(
            *(
                sp.Mul(pi(a), pi(b), f[b], _score_term(a, k, per_length), evaluate=False)
                for a in OUTCOMES
                for b in OUTCOMES
            ),
            evaluate=False,
        ),
    )


def expected_score(k: int, *, per_length: bool = False) -> sp.Expr:
    """E[s_k] = sum_a pi_a (1[a = k] - pi_k); with ``per_length`` E[s_k / |y|]."""
    over = r" / \ell" if per_length else ""
    return Named(
        rf"\E[s_{{{k}}}{over}]",
        sp.Add(
            *(sp.Mul(pi(a), _score_term(a, k, per_length), evaluate=False) for a in OUTCOMES),
            evaluate=False,
        ),
    )


def expected_reward() -> sp.Expr:
    """E[r] = sum_b pi_b f_b."""
    return Named(
        r"\E[r]",
        sp.Add(*(sp.Mul(pi(b), f[b], evaluate=False) for b in OUTCOMES), evaluate=False),
    )


def expected_reward_times_expected_score(k: int) -> sp.Expr:
    """E[r] E[s_k] = (sum_b pi_b f_b)(sum_a pi_a (1[a = k] - pi_k))."""
    return sp.Mul(expected_reward(), expected_score(k), evaluate=False)


def objective_gradient(k: int, reward: Callable[[int], Any] = lambda a: f[a]) -> sp.Expr:
    """d/d theta_k of J = sum_a pi_a r_a (unevaluated derivative)."""
    J = sp.Add(*(sp.Mul(pi(a), reward(a), evaluate=False) for a in OUTCOMES), evaluate=False)
    return sp.Derivative(Named("J", J), theta[k])


def column(entry: Callable[[int], Any]) -> sp.Matrix:
    """One entry per logit theta_0, theta_1, theta_2."""
    return sp.Matrix([entry(k) for k in OUTCOMES])


def group_form(own: Any, other: Any, own_weight: Any, other_weight: Any) -> Any:
    r"""(1/G) G [own - (own_weight own + other_weight other)]: the written expectation."""
    return sp.Mul(
        1 / G,
        G,
        sp.Add(
            own, -sp.Add(own_weight * own, other_weight * other, evaluate=False), evaluate=False
        ),
        evaluate=False,
    )


# --- 1. RLOO: A_i = r_i - (1/(G-1)) sum_{j != i} r_j, with G = H + 1
def _rloo_entry(other: Callable[[int], Any]) -> Callable[[int], Any]:
    return lambda k: sp.Mul(
        1 / (H + 1),
        H + 1,
        sp.Add(
            expected_reward_times_score(k),
            -sp.Mul(1 / H, H, other(k), evaluate=False),
            evaluate=False,
        ),
        evaluate=False,
    )


rloo = Derivation(
    "rloo",
    (
        Step(
            column(_rloo_entry(expected_other_reward_times_score)),
            "linearity: E[(1/G) sum_i (r_i - (1/(G-1)) sum_{j != i} r_j) s_i]; the G members are "
            "i.i.d., so every i contributes E[r_1 s_1] - (1/(G-1)) (G-1) E[r_2 s_1], and the "
            "pair (y_1, y_2) has the product law pi_a pi_b (G = H + 1)",
        ),
        Step(
            column(_rloo_entry(expected_reward_times_expected_score)),
            "independence of y_1 and y_2: the double sum factorises into E[r] E[s]",
        ),
        Step(
            column(expected_reward_times_score),
            "E[s] = sum_a pi_a (1[a = k] - pi_k) = 0 (probabilities sum to one)",
        ),
        Step(column(objective_gradient), "log-derivative trick: E[r s] = dJ/d theta_k"),
    ),
    statement=r"\mathbb E[\hat g_{\mathrm{RLOO}}] = \nabla_\theta J",
)


# --- 2. group mean: A_i = r_i - (1/G) sum_j r_j (the member itself included)
def _mean_entry(other: Callable[[int], Any]) -> Callable[[int], Any]:
    return lambda k: group_form(expected_reward_times_score(k), other(k), 1 / G, (G - 1) / G)


group_mean = Derivation(
    "group-mean",
    (
        Step(
            column(_mean_entry(expected_other_reward_times_score)),
            "linearity: E[(1/G) sum_i (r_i - (1/G) sum_j r_j) s_i]; i.i.d. members: every i "
            "contributes E[r_1 s_1] - (1/G)(E[r_1 s_1] + (G-1) E[r_2 s_1]) (one term j = i, "
            "G - 1 terms j != i with the product law pi_a pi_b)",
        ),
        Step(
            column(_mean_entry(expected_reward_times_expected_score)),
            "independence of y_1 and y_2: the double sum factorises into E[r] E[s]",
        ),
        Step(
            column(lambda k: (1 - 1 / G) * expected_reward_times_score(k)),
            "E[s] = 0: the j != i terms vanish, and the j = i term leaves the weight 1 - 1/G",
        ),
        Step(
            column(lambda k: (1 - 1 / G) * objective_gradient(k)),
            "log-derivative trick: E[r s] = dJ/d theta_k",
        ),
    ),
    statement=r"\mathbb E[\hat g_{\mathrm{mean}}] = (1 - 1/G)\,\nabla_\theta J",
)


# --- 3. GRPO, binary rewards: an instance with G = 4 and rewards (1, 1, 0)
GRPO_G = 4
BINARY = (1, 1, 0)


def success_advantage(m: int, group_size: int) -> Any:
    r"""$a_+(m) = \sqrt{(G-1)(G-m)/(G m)}$: a success in a group of m successes (0 at m = G)."""
    if m == group_size:
        return sp.Integer(0)
    return sp.sqrt(sp.Rational((group_size - 1) * (group_size - m), group_size * m))


def failure_advantage(m: int, group_size: int) -> Any:
    r"""$a_-(m) = -\sqrt{(G-1) m/(G (G-m))}$: a failure in a group of m successes (0 at m = 0)."""
    if m == 0:
        return sp.Integer(0)
    return -sp.sqrt(sp.Rational((group_size - 1) * m, group_size * (group_size - m)))


# The success probability p = pi_0 + pi_1 enters the binomial law of the other members' number
# of successes; it is kept as a parameter p in (0, 1) there (the identity holds for every p, so
# the algebra never needs p = pi_0 + pi_1; only the law of k does, as the rule of step 1 says).
p = sp.Symbol("p", positive=True, less_than_one=True)


def binomial_weight(k: int, n: int) -> sp.Expr:
    return sp.Mul(sp.binomial(n, k), p**k, (1 - p) ** (n - k), evaluate=False)


def mean_advantage(reward: int) -> sp.Expr:
    """h(r) = E_k[A_1 | r_1 = r], k ~ Binomial(G - 1, p) successes among the others."""
    advantage = success_advantage if reward == 1 else failure_advantage
    return Named(
        f"h({reward})",
        sp.Add(
            *(
                sp.Mul(
                    binomial_weight(k, GRPO_G - 1), advantage(k + reward, GRPO_G), evaluate=False
                )
                for k in range(GRPO_G)
            ),
            evaluate=False,
        ),
    )


def grpo_factor_expression() -> sp.Expr:
    """c_G(p) = sum_k Binom(k; G-1, p) (a_+(k + 1) - a_-(k))."""
    return Named(
        f"c_{{{GRPO_G}}}(p)",
        sp.Add(
            *(
                sp.Mul(
                    binomial_weight(k, GRPO_G - 1),
                    sp.Add(
                        success_advantage(k + 1, GRPO_G),
                        -failure_advantage(k, GRPO_G),
                        evaluate=False,
                    ),
                    evaluate=False,
                )
                for k in range(GRPO_G)
            ),
            evaluate=False,
        ),
    )


def _binary(a: int) -> sp.Integer:
    return sp.Integer(BINARY[a])


grpo_binary = Derivation(
    "grpo-binary",
    (
        Step(
            column(
                lambda k: sp.Add(
                    *(
                        sp.Mul(pi(a), score(a, k), mean_advantage(BINARY[a]), evaluate=False)
                        for a in OUTCOMES
                    ),
                    evaluate=False,
                )
            ),
            "exchangeability: E[g] = E[A_1 s_1]; given y_1, A_1 depends on the others only "
            "through their number of successes k ~ Binomial(G - 1, p), independent of y_1, "
            "so E[A_1 | y_1] = h(r_1) = sum_k Binom(k) a_{+/-}(k + r_1)",
        ),
        Step(
            column(
                lambda k: sp.Add(
                    *(
                        sp.Mul(
                            pi(a),
                            score(a, k),
                            sp.Add(
                                mean_advantage(0),
                                sp.Mul(grpo_factor_expression(), _binary(a), evaluate=False),
                                evaluate=False,
                            ),
                            evaluate=False,
                        )
                        for a in OUTCOMES
                    ),
                    evaluate=False,
                )
            ),
            "binary rewards: h(r) = h(0) + (h(1) - h(0)) r with h(1) - h(0) = c_G(p)",
        ),
        Step(
            column(
                lambda k: sp.Add(
                    sp.Mul(mean_advantage(0), expected_score(k), evaluate=False),
                    sp.Mul(
                        grpo_factor_expression(),
                        expected_reward_times_score(k, _binary),
                        evaluate=False,
                    ),
                    evaluate=False,
                )
            ),
            "linearity: h(0) E[s] + c_G(p) E[r s]",
        ),
        Step(
            column(
                lambda k: sp.Mul(
                    grpo_factor_expression(),
                    expected_reward_times_score(k, _binary),
                    evaluate=False,
                )
            ),
            "E[s] = 0 (probabilities sum to one)",
        ),
        Step(
            column(
                lambda k: sp.Mul(
                    grpo_factor_expression(), objective_gradient(k, _binary), evaluate=False
                )
            ),
            "log-derivative trick: E[r s] = dp/d theta_k = dJ/d theta_k (binary r: J = p)",
        ),
    ),
    statement=r"\mathbb E[\hat g_{\mathrm{GRPO}}] = c_G(p)\,\nabla_\theta p",
)

# mutants' wrong conclusions
RLOO_SHRINKS = column(lambda k: (1 - 1 / (H + 1)) * objective_gradient(k))
RLOO_INFLATED = column(lambda k: (H + 1) / H * objective_gradient(k))
MEAN_UNBIASED = column(objective_gradient)
MEAN_SHRINKS_BY_G_MINUS_1 = column(lambda k: (1 - 1 / (G + 1)) * objective_gradient(k))
GRPO_UNBIASED = column(lambda k: objective_gradient(k, _binary))
GRPO_INVERSE_STD = column(lambda k: objective_gradient(k, _binary) / sp.sqrt(p * (1 - p)))


# --- 4. token-mean (1/|y|) aggregation with the group-mean advantage, and a constant normaliser
Lam = sp.Symbol("Lambda", positive=True)  # Dr. GRPO's constant normaliser (a token budget)


def expected_reward_times_score_over_length(k: int) -> sp.Expr:
    """E[r_1 s_{1,k} / |y_1|] = sum_a pi_a f_a (1[a = k] - pi_k) / ell_a."""
    return Named(
        rf"\E[r_1 s_{{1,{k}}} / \ell_1]",
        sp.Add(
            *(sp.Mul(pi(a), f[a] / ell[a], score(a, k), evaluate=False) for a in OUTCOMES),
            evaluate=False,
        ),
    )


def expected_other_reward_times_score_over_length(k: int) -> sp.Expr:
    """E[r_2 s_{1,k} / |y_1|] = sum_{a, b} pi_a pi_b f_b (1[a = k] - pi_k) / ell_a."""
    return expected_other_reward_times_score(k, per_length=True)


def expected_score_over_length(k: int) -> sp.Expr:
    """E[s_k / |y|] = sum_a pi_a (1[a = k] - pi_k) / ell_a."""
    return expected_score(k, per_length=True)


def length_weighted_gradient(k: int, reward: Callable[[int], Any]) -> sp.Expr:
    """d/d theta_k of E[reward / ell] = sum_a pi_a reward(a) / ell_a (unevaluated derivative)."""
    weights = [reward(a) for a in OUTCOMES]
    name = r"\E[1 / \ell]" if all(w == 1 for w in weights) else r"\E[r / \ell]"
    return sp.Derivative(
        Named(
            name,
            sp.Add(*(sp.Mul(pi(a), w / ell[a], evaluate=False) for a, w in zip(OUTCOMES, weights))),
        ),
        theta[k],
    )


def _token_mean_entry(other: Callable[[int], Any]) -> Callable[[int], Any]:
    return lambda k: group_form(
        expected_reward_times_score_over_length(k), other(k), 1 / G, (G - 1) / G
    )


def _length_biased_conclusion(k: int) -> sp.Expr:
    return (1 - 1 / G) * sp.Add(
        length_weighted_gradient(k, lambda a: f[a]),
        -sp.Mul(expected_reward(), length_weighted_gradient(k, lambda a: 1), evaluate=False),
        evaluate=False,
    )


token_mean = Derivation(
    "token-mean",
    (
        Step(
            column(_token_mean_entry(expected_other_reward_times_score_over_length)),
            "linearity: E[(1/G) sum_i (r_i - (1/G) sum_j r_j) s_i / |y_i|]; i.i.d. members: "
            "every i contributes E[r_1 s_1/|y_1|] - (1/G)(E[r_1 s_1/|y_1|] + (G-1) E[r_2 "
            "s_1/|y_1|]), the pair (y_1, y_2) with the product law pi_a pi_b",
        ),
        Step(
            column(
                lambda k: group_form(
                    expected_reward_times_score_over_length(k),
                    sp.Mul(expected_reward(), expected_score_over_length(k), evaluate=False),
                    1 / G,
                    (G - 1) / G,
                )
            ),
            "independence of y_1 and y_2: E[r_2 s_1/|y_1|] = E[r] E[s/|y|], and E[s/|y|] is "
            "not 0: the score is weighted by 1/|y|",
        ),
        Step(
            column(
                lambda k: (
                    (1 - 1 / G)
                    * sp.Add(
                        expected_reward_times_score_over_length(k),
                        -sp.Mul(expected_reward(), expected_score_over_length(k), evaluate=False),
                        evaluate=False,
                    )
                )
            ),
            "collect: (1 - 1/G)(E[r s/|y|] - E[r] E[s/|y|])",
        ),
        Step(
            column(_length_biased_conclusion),
            "log-derivative trick with the theta-free weights r/|y| and 1/|y|: "
            "E[w s] = d E[w]/d theta_k",
        ),
    ),
    statement=(
        r"\mathbb E[\hat g_{1/|y|}] = (1 - \tfrac1G)\big(\nabla\mathbb E[r/|y|]"
        r" - \mathbb E[r]\,\nabla\mathbb E[1/|y|]\big)"
    ),
)

constant_normaliser = Derivation(
    "constant-normaliser",
    (
        Step(
            column(lambda k: sp.Mul(1 / Lam, _mean_entry(expected_other_reward_times_score)(k))),
            "Dr. GRPO: E[(1/G) sum_i (r_i - mean_j r_j) (1/Lambda) s_i], the same i.i.d. "
            "expansion as the group mean with the constant 1/Lambda in front",
        ),
        Step(
            column(lambda k: sp.Mul(1 / Lam, _mean_entry(expected_reward_times_expected_score)(k))),
            "independence of y_1 and y_2: the double sum factorises into E[r] E[s]",
        ),
        Step(
            column(lambda k: sp.Mul(1 / Lam, (1 - 1 / G) * objective_gradient(k))),
            "E[s] = 0 and the log-derivative trick E[r s] = dJ/d theta_k",
        ),
    ),
    statement=r"\mathbb E[\hat g_{1/\Lambda}] = \frac{1 - 1/G}{\Lambda}\,\nabla_\theta J",
)

LENGTH_BASELINE_TERM_DROPPED = column(
    lambda k: (1 - 1 / G) * length_weighted_gradient(k, lambda a: f[a])
)
LENGTH_HARMLESS = column(lambda k: (1 - 1 / G) * objective_gradient(k))
CONSTANT_UNSCALED = column(lambda k: (1 - 1 / G) * objective_gradient(k))


# ============================================================================ exact legs
# lhs: expected_over_groups of the per-group estimator (1/G) sum_i A_i grad log pi(y_i|x),
#      exact over every multiset of G responses per prompt (rlmath.sequence_model), with the
#      member scores from SequenceModel.response_scores.
# rhs: the conclusion's factor times grad J, where grad J is the complex-step derivative of
#      J(theta) = sum_x rho(x) sum_y prod_t softmax(theta)[x, n_t, y_t] R(x, y) evaluated
#      directly with complex logits: no group enumeration, no response_scores.
def complex_objective(
    model: SequenceModel, logits: np.ndarray, rewards: np.ndarray | None = None
) -> complex:
    """J at complex logits ``[X, N, K + 1]``, from the response enumeration (complex-safe).

    ``rewards`` ``[X, R]`` replaces the model's total rewards (default: those).
    """
    shift = logits.real.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(logits - shift).sum(axis=-1, keepdims=True)) + shift
    log_pi = logits - log_z
    r = model.responses
    n, v = np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)
    log_p = np.where(r.mask[None], log_pi[:, n, v], 0.0).sum(axis=2)  # [X, R]
    table = model.total_rewards() if rewards is None else rewards
    per_prompt = (np.exp(log_p) * table).sum(axis=1)
    return complex(model.prompt_probabilities @ per_prompt)


def complex_step_objective_gradient(model: SequenceModel) -> np.ndarray:
    """grad J ``[X, N, K + 1]`` by complex-step differentiation of :func:`complex_objective`."""
    return complex_step_gradient(lambda z: complex_objective(model, z), model.theta)


def complex_step_weighted_gradient(model: SequenceModel, rewards: np.ndarray) -> np.ndarray:
    """grad of sum_x rho(x) sum_y pi(y|x) rewards[x, y], by complex step, ``[X, N, K + 1]``."""
    return complex_step_gradient(lambda z: complex_objective(model, z, rewards), model.theta)


def leave_one_out_advantages(rewards: np.ndarray) -> np.ndarray:
    r"""$A_i = r_i - \frac{1}{G-1}\sum_{j \ne i} r_j$ per row; rewards ``[B, G]``, ``G >= 2``."""
    size = rewards.shape[1]
    advantages: np.ndarray = rewards - (rewards.sum(axis=1, keepdims=True) - rewards) / (size - 1)
    return advantages


def group_mean_advantages(rewards: np.ndarray) -> np.ndarray:
    r"""$A_i = r_i - \frac1G \sum_j r_j$ per row; rewards ``[B, G]``."""
    advantages: np.ndarray = rewards - rewards.mean(axis=1, keepdims=True)
    return advantages


def group_normalised_advantages(rewards: np.ndarray) -> np.ndarray:
    r"""GRPO: $A_i = (r_i - \bar r)/\mathrm{std}(r)$, sample std (``ddof = 1``), 0 when std = 0.

    Shao et al. 2024, Sec. 4.1.2. A group of equal rewards has a numerator of exactly 0, so
    its advantages are 0 (the limit of ``std + eps`` as eps -> 0).
    """
    centred = group_mean_advantages(rewards)
    std = rewards.std(axis=1, ddof=1, keepdims=True)
    advantages: np.ndarray = np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)
    return advantages


@lru_cache(maxsize=8)
def _response_scores(model: SequenceModel) -> np.ndarray:
    return model.response_scores()


def expected_group_estimator(
    model: SequenceModel, group_size: int, advantages: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """E over x and groups of (1/G) sum_i A_i grad log pi(y_i | x), exact, ``[X, N, K + 1]``."""
    scores = _response_scores(model)  # [X, R, X, N, K + 1]

    def statistic(batch: GroupBatch) -> np.ndarray:
        A = advantages(batch.rewards)  # [B, G]
        members = scores[batch.prompt][batch.responses]  # [B, G, X, N, K + 1]
        mean: np.ndarray = np.einsum("bg,bg...->b...", A, members) / batch.responses.shape[1]
        return mean

    return expected_over_groups(model, group_size, statistic)


def expected_length_normalised_estimator(
    model: SequenceModel, group_size: int, normaliser: float | None
) -> np.ndarray:
    """E of (1/G) sum_i (r_i - mean_j r_j) / n_i grad log pi(y_i|x), ``[X, N, K + 1]``.

    ``n_i = |y_i|`` (GRPO's per-response token mean) when ``normaliser`` is None, else the
    constant ``normaliser`` (Dr. GRPO).
    """
    scores = _response_scores(model)

    def statistic(batch: GroupBatch) -> np.ndarray:
        A = group_mean_advantages(batch.rewards)
        n = batch.lengths if normaliser is None else np.full(batch.lengths.shape, normaliser)
        members = scores[batch.prompt][batch.responses]
        mean: np.ndarray = np.einsum("bg,bg...->b...", A / n, members) / batch.responses.shape[1]
        return mean

    return expected_over_groups(model, group_size, statistic)


def length_normalisation_sides(example: tuple[SequenceModel, int]) -> np.ndarray:
    """lhs: [token-mean, constant L] expected estimators, ``[2, X, N, K + 1]``."""
    model, size = example
    return np.stack(
        [
            expected_length_normalised_estimator(model, size, None),
            expected_length_normalised_estimator(model, size, float(model.max_length)),
        ]
    )


def _length_gradients(model: SequenceModel) -> tuple[np.ndarray, np.ndarray]:
    """(grad sum rho E_x[r/|y|], mu_x-weighted grad sum rho E_x[1/|y|]), each [X, N, K + 1]."""
    # |y| counted from the token table (EOS included), not from Responses.lengths (which the
    # group batches, i.e. the lhs, carry)
    lengths = (model.responses.tokens >= 0).sum(axis=1)
    inverse_length = np.broadcast_to(1.0 / lengths, model.rewards.shape)
    reward_over_length = complex_step_weighted_gradient(
        model, model.total_rewards() * inverse_length
    )
    over_length = complex_step_weighted_gradient(model, np.array(inverse_length))
    mean_reward = (model.probabilities() * model.total_rewards()).sum(axis=1)  # mu_x, [X]
    return reward_over_length, mean_reward[:, None, None] * over_length


def length_normalisation_conclusion(
    *, baseline_term: bool = True, length_weighted: bool = True, constant_scaled: bool = True
) -> Callable[[tuple[SequenceModel, int]], np.ndarray]:
    """rhs: [(1 - 1/G)(grad E[r/|y|] - mu grad E[1/|y|]), (1 - 1/G)/L grad J] (and mutants)."""

    def rhs(example: tuple[SequenceModel, int]) -> np.ndarray:
        model, size = example
        shrink = 1 - 1 / size
        gradient = complex_step_objective_gradient(model)
        if length_weighted:
            reward_part, baseline_part = _length_gradients(model)
            token_mean = shrink * (reward_part - (baseline_part if baseline_term else 0.0))
        else:
            token_mean = shrink * gradient
        constant = shrink * gradient / (model.max_length if constant_scaled else 1.0)
        return np.stack([token_mean, constant])

    return rhs


length_examples = st.tuples(
    sequence_models(min_prompts=1, max_prompts=2, max_tokens=2, min_length=2, max_length=3),
    st.integers(2, 4),
)


def _error_scale(example: tuple[SequenceModel, int], advantage_bound: float) -> float:
    """Size of the accumulated terms: |A| <= advantage_bound, |score|_inf <= 2 per token."""
    model, _ = example
    return max(advantage_bound * 2.0 * model.max_length, 1e-300)


def _rtol(example: tuple[SequenceModel, int]) -> float:
    model, size = example
    groups = count_groups(model.n_responses, size) * model.n_prompts
    return exact_rtol(1.0, groups * size * model.max_length)


def _reward_bound(model: SequenceModel) -> float:
    return 2.0 * float(np.abs(model.total_rewards()).max(initial=0.0))


def scaled_gradient(
    factor: Callable[[int], float], *, copies: int = 1
) -> Callable[[tuple[SequenceModel, int]], Any]:
    """example -> factor(G) grad J (``copies`` stacked copies when ``copies > 1``)."""

    def rhs(example: tuple[SequenceModel, int]) -> np.ndarray:
        model, size = example
        scaled = factor(size) * complex_step_objective_gradient(model)
        return np.stack([scaled] * copies) if copies > 1 else scaled

    return rhs


def rescaled_group_mean_advantages(rewards: np.ndarray) -> np.ndarray:
    r"""RLOO written differently: $\frac{G}{G-1}(r_i - \frac1G\sum_j r_j)$ (the same numbers)."""
    size = rewards.shape[1]
    advantages: np.ndarray = size / (size - 1) * group_mean_advantages(rewards)
    return advantages


def others_over_group_size_advantages(rewards: np.ndarray) -> np.ndarray:
    r"""A correct variant: $r_i - \frac1G \sum_{j \ne i} r_j$ (any baseline of the others is unbiased)."""
    size = rewards.shape[1]
    advantages: np.ndarray = rewards - (rewards.sum(axis=1, keepdims=True) - rewards) / size
    return advantages


#: RLOO as written, RLOO as the rescaled group mean, and the others' sum over G: all unbiased.
RLOO_FORMS = (
    leave_one_out_advantages,
    rescaled_group_mean_advantages,
    others_over_group_size_advantages,
)


def rloo_forms_expected(example: tuple[SequenceModel, int]) -> np.ndarray:
    """lhs of rloo-unbiased: the expected estimator of each of RLOO_FORMS, ``[3, X, N, K + 1]``."""
    model, size = example
    return np.stack([expected_group_estimator(model, size, form) for form in RLOO_FORMS])


baseline_examples = st.tuples(
    sequence_models(min_prompts=1, max_prompts=2, max_tokens=2, min_length=1, max_length=3),
    st.integers(2, 4),
)


# --- GRPO: binary rewards and the exact factor c_G(p) (independent numeric evaluation)
def binary_rewards(model: SequenceModel) -> SequenceModel:
    """The same model with 0/1 rewards 1[r > 0] XOR 1[(i + x) mod 3 = 0], no token rewards.

    The XOR with a pattern that differs between prompts keeps the examples Hypothesis favours
    (all rewards 0) from having no successes at all or the same success rate in every prompt,
    where the prompt reweighting cannot be seen.
    """
    X, R = model.rewards.shape
    pattern = (np.arange(R)[None, :] + np.arange(X)[:, None]) % 3 == 0
    return SequenceModel(
        model.theta,
        model.max_length,
        model.prompt_probabilities,
        ((model.rewards > 0) ^ pattern).astype(np.float64),
        None,
        model.reference_theta,
    )


def grpo_factor(p: float, group_size: int) -> float:
    r"""$c_G(p) = \sum_{k<G} \binom{G-1}{k} p^k (1-p)^{G-1-k} (a_+(k+1) - a_-(k))$ (float)."""
    size = group_size

    def a_plus(m: int) -> float:
        return 0.0 if m == size else math.sqrt((size - 1) * (size - m) / (size * m))

    def a_minus(m: int) -> float:
        return 0.0 if m == 0 else -math.sqrt((size - 1) * m / (size * (size - m)))

    return sum(
        math.comb(size - 1, k) * p**k * (1 - p) ** (size - 1 - k) * (a_plus(k + 1) - a_minus(k))
        for k in range(size)
    )


def success_probabilities(model: SequenceModel) -> np.ndarray:
    """p_x = sum_y pi(y|x) 1[r(x, y) = 1], ``[X]``."""
    return (model.probabilities() * model.rewards).sum(axis=1)  # type: ignore[no-any-return]


def prompt_reweighted_gradient(
    factor: Callable[[float, int], float],
) -> Callable[[tuple[SequenceModel, int]], np.ndarray]:
    """sum_x rho(x) factor(p_x) grad p_x: block x of grad J (theta is per prompt) scaled."""

    def rhs(example: tuple[SequenceModel, int]) -> np.ndarray:
        model, size = example
        gradient = complex_step_objective_gradient(model)
        scale = np.array([factor(float(p), size) for p in success_probabilities(model)])
        return scale[:, None, None] * gradient  # type: ignore[no-any-return]

    return rhs


def pooled_factor_gradient(example: tuple[SequenceModel, int]) -> np.ndarray:
    """Mutant: one factor c_G(p_bar) for all prompts (parallel to grad J across prompts)."""
    model, size = example
    pooled = float(model.prompt_probabilities @ success_probabilities(model))
    return grpo_factor(pooled, size) * complex_step_objective_gradient(model)


def inverse_std_factor(p: float, group_size: int) -> float:
    """Mutant factor 1/sqrt(p(1-p)) (the G -> infinity limit), 0 at p in {0, 1}."""
    variance = p * (1 - p)
    return 1.0 / math.sqrt(variance) if variance > 0 else 0.0


grpo_examples = st.tuples(
    sequence_models(min_prompts=2, max_prompts=2, max_tokens=2, min_length=2, max_length=3).map(
        binary_rewards
    ),
    st.integers(4, 5),
)


def _grpo_scale(example: tuple[SequenceModel, int]) -> float:
    _, size = example
    return _error_scale(example, math.sqrt(size))  # |A_i| <= (G-1)/sqrt(G) < sqrt(G)


# ============================================================================ Monte-Carlo legs
# Groups are *sampled*: rlmath.sequence_sampling.sample_groups draws x ~ rho for each group and
# its G responses token by token from the next-token probabilities (not from the enumerated
# sequence probabilities). A group's term is (1/G) sum_i w_i sum_t score_t(y_i), each token's
# score 1[y_t = v] - pi(v | x, y_<t) computed from the sampled nodes and tokens
# (rlmath.sequence_sampling.score_sums), the rewards looked up by the sampled responses'
# indices. Each claim's weights w_i are written two or three ways: the claim's own [n, G]
# advantage function above, and rlmath.llm_reference's [B] function with group ids (a second
# implementation, the one an LLM trainer would call). The mean over MC_GROUPS groups is tested
# against the exact target (the exact leg's rhs: the conclusion's factor times the complex-step
# grad J) by rlmath.statistics.agreement at false alarm MC_FALSE_ALARM per leg (Bonferroni
# over the MC_EXAMPLES examples and every component).
#
# Mutants are wrong statements E[g] = wrong(example). A mutant's Monte-Carlo variant is the
# same sampled terms moved by reference(example) - wrong(example): its mean is the reference
# exactly when the mutant's statement is true, and its z-scores are those of the sample mean
# against wrong(example), so the variant fails exactly when the sampled estimate rejects the
# mutant's value.
#
# Examples: logits in [-1, 1], token 0's moved by +-0.75 per prompt (so the prompts' laws
# differ; every next-token probability >= e^-1.75 / (e^-1.75 + 2 e) > 0.03 with K + 1 <= 3
# tokens, so no response is rare and the per-group terms, bounded, are close enough to normal
# at the 1e-6 tail for n in the tens of thousands). Power: an example is kept only if
# every mutant is rejected with probability >= 0.99 at MC_GROUPS groups
# (rlmath.claims.detectable, normal approximation), from the exact mean and standard deviation
# of every component (expected_over_groups of the term and of its square).
MC_EXAMPLES = 2
MC_FALSE_ALARM = DEFAULT_FALSE_ALARM  # per leg, shared by its examples (monte_carlo_leg's split)
ALPHA = MC_FALSE_ALARM / MC_EXAMPLES
MIN_SD = 1e-6  # components with a smaller sd (rounding-level: no signal) give no power

#: weights(rewards [n, G], lengths [n, G], model) -> [n, G]: the per-response w_i of a form.
Weights = Callable[[np.ndarray, np.ndarray, SequenceModel], np.ndarray]


def _group_ids(rewards: np.ndarray) -> np.ndarray:
    """Group ids [n * G] of the flattened rows (row-major: group g is rows g G .. g G + G - 1)."""
    return np.repeat(np.arange(rewards.shape[0]), rewards.shape[1])


def claim_form(advantages: Callable[[np.ndarray], np.ndarray]) -> Weights:
    """w_i = A_i by one of this file's [n, G] advantage functions."""
    return lambda rewards, lengths, model: advantages(rewards)


def library_form(function: Callable[..., np.ndarray], **options: Any) -> Weights:
    """w_i = A_i by an rlmath.llm_reference [B] advantage function with group ids."""

    def weights(rewards: np.ndarray, lengths: np.ndarray, model: SequenceModel) -> np.ndarray:
        flat = function(rewards.ravel(), _group_ids(rewards), **options)
        return np.asarray(flat).reshape(rewards.shape)

    return weights


def token_mean_form(rewards: np.ndarray, lengths: np.ndarray, model: SequenceModel) -> np.ndarray:
    """GRPO's per-response token mean: w_i = (r_i - mean_j r_j) / |y_i| (|y| as sampled)."""
    return group_mean_advantages(rewards) / lengths


def token_budget_form(rewards: np.ndarray, lengths: np.ndarray, model: SequenceModel) -> np.ndarray:
    """Dr. GRPO: w_i = A_i / L with A_i = dr_grpo_advantages (the constant token budget L)."""
    flat = dr_grpo_advantages(rewards.ravel(), _group_ids(rewards)).reshape(rewards.shape)
    return flat / model.max_length  # type: ignore[no-any-return]


def _fingerprint(example: tuple[SequenceModel, int]) -> tuple[Any, ...]:
    model, size = example
    digest = hashlib.sha256()
    for array in (model.theta, model.prompt_probabilities, model.total_rewards()):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return (digest.hexdigest(), model.theta.shape, model.max_length, size)


def sampled_group_terms(
    example: tuple[SequenceModel, int],
    rng: np.random.Generator,
    n_groups: int,
    forms: tuple[Weights, ...],
) -> np.ndarray:
    """``[n_groups, F, X, N, K + 1]``: (1/G) sum_i w_i grad log pi(y_i | x) per sampled group."""
    model, size = example
    batch = sample_groups(model, n_groups, size, rng)
    rewards = batch.grouped(model.total_rewards()[batch.prompts, batch.response_indices])
    lengths = batch.grouped(batch.lengths).astype(np.float64)
    return np.stack(
        [score_sums(model, batch, form(rewards, lengths, model).ravel()) / size for form in forms],
        axis=1,
    )


# The legs run the true estimator and then each mutant on the same examples with the same seeds
# (monte_carlo_leg seeds example k of seed s with SeedSequence([s, k])): the sampled terms are
# computed once per (seed, example, forms) and reused; likewise the exact moments per example.
_TERMS: dict[tuple[Any, ...], np.ndarray] = {}
_MOMENTS: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}


def _remember(
    cache: dict[tuple[Any, ...], Any],
    key: tuple[Any, ...],
    make: Callable[[], Any],
    capacity: int = 2 * MC_EXAMPLES,
) -> Any:
    """``cache[key]``, computed by ``make()`` if absent (oldest entries dropped at capacity)."""
    if key not in cache:
        while len(cache) >= capacity:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def group_sampler(
    forms: tuple[Weights, ...],
) -> Callable[[tuple[SequenceModel, int], np.random.Generator, int], np.ndarray]:
    """``(example, rng, n) -> [n, F, X, N, K + 1]`` terms for monte_carlo_leg (cached)."""

    def sample(example: tuple[SequenceModel, int], rng: np.random.Generator, n: int) -> np.ndarray:
        seed = int(rng.integers(2**63))
        key = (seed, n, id(forms), _fingerprint(example))
        return _remember(  # type: ignore[no-any-return]
            _TERMS, key, lambda: sampled_group_terms(example, np.random.default_rng(seed), n, forms)
        )

    return sample


def exact_term_moments(
    example: tuple[SequenceModel, int], forms: tuple[Weights, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and sd ``[F, X, N, K + 1]`` of the group terms (expected_over_groups)."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        model, size = example
        scores = _response_scores(model)

        def statistic(batch: GroupBatch) -> np.ndarray:
            members = scores[batch.prompt][batch.responses]  # [B, G, X, N, K + 1]
            lengths = batch.lengths.astype(np.float64)
            terms = np.stack(
                [
                    np.einsum("bg,bg...->b...", form(batch.rewards, lengths, model), members) / size
                    for form in forms
                ],
                axis=1,
            )
            return np.stack([terms, terms**2], axis=1)

        first, second = expected_over_groups(model, size, statistic)
        return first, np.sqrt(np.maximum(second - first**2, 0.0))

    return _remember(_MOMENTS, (id(forms), _fingerprint(example)), compute, capacity=256)  # type: ignore[no-any-return]


def mutants_detectable(
    forms: tuple[Weights, ...], n_groups: int, wrongs: tuple[Callable[[Any], Any], ...]
) -> Callable[[tuple[SequenceModel, int]], bool]:
    """The example filter: every wrong statement is rejected with power >= 0.99 at n_groups."""

    def keep(example: tuple[SequenceModel, int]) -> bool:
        mean, sd = exact_term_moments(example, forms)
        for wrong in wrongs:
            shift = np.where(sd > MIN_SD, mean - np.asarray(wrong(example)), 0.0)
            if not detectable(shift, sd, n_groups, false_alarm=ALPHA):
                return False
        return True

    return keep


def statement_variant(
    sample: Callable[[Any, np.random.Generator, int], np.ndarray],
    reference: Callable[[Any], Any],
    wrong: Callable[[Any], Any],
) -> Callable[[Any, np.random.Generator, int], np.ndarray]:
    """The Monte-Carlo variant of the wrong statement E[g] = wrong: terms + reference - wrong."""

    def variant(example: Any, rng: np.random.Generator, n: int) -> np.ndarray:
        return sample(example, rng, n) + (
            np.asarray(reference(example)) - np.asarray(wrong(example))
        )

    return variant


def stacked(rhs: Callable[[Any], Any], copies: int) -> Callable[[Any], np.ndarray]:
    """example -> ``copies`` stacked copies of rhs(example) (one per form)."""
    return lambda example: np.stack([np.asarray(rhs(example))] * copies)


def varied_rewards(model: SequenceModel) -> SequenceModel:
    """The model with rewards r + 0.5 ((i + x) mod 3 - 1): never all equal within a prompt.

    Hypothesis's simplest models have all rewards 0, where every group estimator is 0 and no
    mutant can be seen; the pattern (as in :func:`binary_rewards`) keeps rewards varied.
    """
    X, R = model.rewards.shape
    pattern = 0.5 * (((np.arange(R)[None, :] + np.arange(X)[:, None]) % 3) - 1.0)
    return SequenceModel(
        model.theta,
        model.max_length,
        model.prompt_probabilities,
        model.rewards + pattern,
        model.token_rewards,
        model.reference_theta,
    )


def distinct_prompts(model: SequenceModel) -> SequenceModel:
    """The model with token 0's logit moved by +0.75 for even prompts and -0.75 for odd ones.

    Hypothesis's simplest models give every prompt the same logits; then a sampler that drew
    every response from the wrong prompt's policy would go unseen. With the offsets the
    prompts' response laws differ.
    """
    theta = np.array(model.theta)
    theta[:, :, 0] += 0.75 * np.where(np.arange(model.n_prompts) % 2 == 0, 1.0, -1.0)[:, None]
    return SequenceModel(
        theta,
        model.max_length,
        model.prompt_probabilities,
        model.rewards,
        model.token_rewards,
        model.reference_theta,
    )


def mixed_binary_rewards(model: SequenceModel) -> SequenceModel:
    """0/1 rewards 1[r > 0] with response x mod R a success and (x + 1) mod R a failure.

    So that 0 < p_x < 1 for every prompt (at p_x in {0, 1} every GRPO advantage is 0).
    """
    X, R = model.rewards.shape
    rewards = (model.rewards > 0).astype(np.float64)
    rows = np.arange(X)
    rewards[rows, rows % R] = 1.0
    rewards[rows, (rows + 1) % R] = 0.0
    return SequenceModel(
        model.theta,
        model.max_length,
        model.prompt_probabilities,
        rewards,
        None,
        model.reference_theta,
    )


def _mc_models(**sizes: Any) -> st.SearchStrategy[SequenceModel]:
    """Models of the Monte-Carlo legs: logits in [-1, 1] (no rare response; token 0's logit is
    then moved by +-0.75 per prompt, :func:`distinct_prompts`)."""
    return sequence_models(max_abs_logit=1.0, **sizes)


# RLOO: the leave-one-out advantage as written, the others' sum over G (also unbiased), and
# rlmath.llm_reference.rloo_advantages (G/(G-1) (r_i - mean), computed from the group mean).
RLOO_MC_FORMS = (
    claim_form(leave_one_out_advantages),
    claim_form(others_over_group_size_advantages),
    library_form(rloo_advantages),
)
# group mean: as written and rlmath.llm_reference.dr_grpo_advantages.
MEAN_MC_FORMS = (claim_form(group_mean_advantages), library_form(dr_grpo_advantages))
# GRPO: as written and rlmath.llm_reference.grpo_advantages with epsilon = 0 (sample std).
GRPO_MC_FORMS = (
    claim_form(group_normalised_advantages),
    library_form(grpo_advantages, epsilon=0.0, ddof=1),
)
# length normalisation: the token mean 1/|y_i| and the constant token budget L (the two
# statements of the exact leg, in its order).
LENGTH_MC_FORMS = (token_mean_form, token_budget_form)

# Group counts. The smallest shifts are the group-mean off-by-one (1/G - 1/(G+1) of grad J),
# the length baseline term and GRPO's pooled factor (c_G(p_x) - c_G(p_bar), a few per cent:
# hence G = 6-8 there, where c_G varies more with p); the filters drop examples where these
# are not detected with power 0.99 at these counts (about 0.1-0.3 s of sampling each).
MC_GROUPS = 20_000
GRPO_MC_GROUPS = 40_000

rloo_mc_reference = stacked(scaled_gradient(lambda size: 1.0), len(RLOO_MC_FORMS))
RLOO_MC_WRONG = {
    "rloo-shrinks-like-mean": stacked(scaled_gradient(lambda s: 1 - 1 / s), len(RLOO_MC_FORMS)),
    "rloo-inflated-by-g-over-g-minus-1": stacked(
        scaled_gradient(lambda s: s / (s - 1)), len(RLOO_MC_FORMS)
    ),
}
rloo_mc_sampler = group_sampler(RLOO_MC_FORMS)
rloo_mc_examples = st.tuples(
    _mc_models(min_prompts=2, max_prompts=2, min_tokens=2, max_tokens=2, min_length=2, max_length=3)
    .map(varied_rewards)
    .map(distinct_prompts),
    st.integers(2, 4),
).filter(mutants_detectable(RLOO_MC_FORMS, MC_GROUPS, tuple(RLOO_MC_WRONG.values())))

mean_mc_reference = stacked(scaled_gradient(lambda s: 1 - 1 / s), len(MEAN_MC_FORMS))
MEAN_MC_WRONG = {
    "group-mean-unbiased": stacked(scaled_gradient(lambda s: 1.0), len(MEAN_MC_FORMS)),
    "shrink-by-g-over-g-plus-1": stacked(
        scaled_gradient(lambda s: 1 - 1 / (s + 1)), len(MEAN_MC_FORMS)
    ),
}
mean_mc_sampler = group_sampler(MEAN_MC_FORMS)
mean_mc_examples = st.tuples(
    _mc_models(min_prompts=2, max_prompts=2, min_tokens=2, max_tokens=2, min_length=2, max_length=3)
    .map(varied_rewards)
    .map(distinct_prompts),
    st.integers(2, 4),
).filter(mutants_detectable(MEAN_MC_FORMS, MC_GROUPS, tuple(MEAN_MC_WRONG.values())))

grpo_mc_reference = stacked(prompt_reweighted_gradient(grpo_factor), len(GRPO_MC_FORMS))
GRPO_MC_WRONG = {
    "grpo-unbiased": stacked(scaled_gradient(lambda s: 1.0), len(GRPO_MC_FORMS)),
    "inverse-std-factor": stacked(
        prompt_reweighted_gradient(inverse_std_factor), len(GRPO_MC_FORMS)
    ),
    "parallel-across-prompts": stacked(pooled_factor_gradient, len(GRPO_MC_FORMS)),
}
grpo_mc_sampler = group_sampler(GRPO_MC_FORMS)
grpo_mc_examples = st.tuples(
    _mc_models(min_prompts=2, max_prompts=2, max_tokens=2, min_length=2, max_length=2)
    .map(mixed_binary_rewards)
    .map(distinct_prompts),
    st.integers(6, 8),
).filter(mutants_detectable(GRPO_MC_FORMS, GRPO_MC_GROUPS, tuple(GRPO_MC_WRONG.values())))

length_mc_reference = length_normalisation_conclusion()
LENGTH_MC_WRONG = {
    "baseline-length-term-dropped": length_normalisation_conclusion(baseline_term=False),
    "length-normalisation-harmless": length_normalisation_conclusion(length_weighted=False),
    "dr-grpo-unscaled": length_normalisation_conclusion(constant_scaled=False),
}
length_mc_sampler = group_sampler(LENGTH_MC_FORMS)
length_mc_examples = st.tuples(
    _mc_models(min_prompts=2, max_prompts=2, min_tokens=2, max_tokens=2, min_length=2, max_length=3)
    .map(varied_rewards)
    .map(distinct_prompts),
    st.integers(2, 4),
).filter(mutants_detectable(LENGTH_MC_FORMS, MC_GROUPS, tuple(LENGTH_MC_WRONG.values())))


def group_leg(
    examples: st.SearchStrategy[tuple[SequenceModel, int]],
    sampler: Callable[[Any, np.random.Generator, int], np.ndarray],
    reference: Callable[[Any], Any],
    n_groups: int,
    description: str,
) -> Any:
    return monte_carlo_leg(
        examples,
        sampler,
        reference,
        n_samples=n_groups,
        n_examples=MC_EXAMPLES,
        false_alarm=MC_FALSE_ALARM,
        description=description,
    )


SHARED_ASSUMPTIONS = (
    "Tabular autoregressive softmax policy over a finite vocabulary with EOS (a response "
    "token) and truncation at L; the G responses of a group are i.i.d. given the prompt.",
    "Advantages are detached (treated as constants when differentiating); one update at the "
    "sampling policy: no ratio, clipping or KL term.",
)

CLAIMS = (
    Claim(
        id="rloo-unbiased",
        title="The leave-one-out (RLOO) baseline gives an unbiased policy gradient",
        statement=Statement(
            rloo.start,
            rloo.conclusion,
            where=(
                r"G = H + 1 \ge 2 \text{ responses};\ \text{three outcomes with rewards } f_a "
                r"\text{ and softmax probabilities } \pi_a"
            ),
            symbol_names={theta: r"\theta", f: "f"},
        ),
        assumptions=(
            *SHARED_ASSUMPTIONS,
            "Symbolic leg: any group size G = H + 1 >= 2 (a symbol), one prompt whose "
            "response law is a symbolic softmax over three outcomes with symbolic rewards (the "
            "sequence-level view; the autoregressive factorisation is checked by the exact "
            "leg).",
            "Exact leg: 1-2 prompts, 1-2 ordinary tokens plus EOS, L = 1-3, G = 2-4, random "
            "logits, rewards and prompt probabilities.",
            "Monte-Carlo leg: 2 examples with 2 prompts, 2 ordinary tokens plus EOS, L = 2-3, "
            "G = 2-4, logits in [-1, 1] moved by +-0.75 per prompt on token 0, rewards varied by "
            "a fixed pattern; 20,000 sampled groups "
            "each, kept only if every mutant is detected with power 0.99; false alarm 1e-6.",
        ),
        references=(
            "Kool, W., van Hoof, H. and Welling, M., *Buy 4 REINFORCE samples, get a baseline "
            "for free!*, ICLR Workshop 2019 (the leave-one-out baseline).",
            "Ahmadian, A. et al., *Back to Basics: Revisiting REINFORCE Style Optimization for "
            "Learning from Human Feedback in LLMs*, ACL 2024 (RLOO advantage r_i - mean_{j != i} r_j).",
        ),
        summary=(
            "RLOO's advantage r_i minus the mean of the other G - 1 rewards is an unbiased "
            "policy-gradient estimator at every group size, so it needs no rescaling."
        ),
        notes=(
            "Any baseline built only from the *other* members is unbiased, whatever its "
            "scale: r_i - (1/G) sum_{j != i} r_j, for instance, is unbiased too, so dividing "
            "the leave-one-out sum by G instead of G - 1 is a correct variant, not a mutant "
            "(its baseline is shrunk, so its variance is larger). What breaks unbiasedness is "
            "the member's own reward in its baseline (claim group-mean-baseline-shrinks). "
            "RLOO's advantage equals G/(G-1) times the group-mean advantage. The exact leg "
            "checks all three forms (as written, as the rescaled group mean, and with the "
            "others' sum over G) against grad J."
        ),
        symbolic=SymbolicLeg((rloo,)),
        exact=ExactLeg(
            baseline_examples,
            lhs=rloo_forms_expected,
            rhs=scaled_gradient(lambda size: 1.0, copies=len(RLOO_FORMS)),
            rhs_reason=(
                "the conclusion involves grad J of the sequence model, which is computed by "
                "complex-step differentiation of J (not lambdifiable from the symbolic "
                "instance); the factor is the conclusion's (1)"
            ),
            rtol=_rtol,
            error_scale=lambda example: _error_scale(example, _reward_bound(example[0])),
            max_examples=15,
            description=(
                "expected_over_groups of (1/G) sum_i A_i grad log pi(y_i|x) (every multiset of "
                "G responses per prompt) for A_i = r_i - mean_{j != i} r_j, for G/(G-1) (r_i - "
                "mean_j r_j) and for r_i - (1/G) sum_{j != i} r_j, each vs the complex-step "
                "gradient of J"
            ),
        ),
        monte_carlo=group_leg(
            rloo_mc_examples,
            rloo_mc_sampler,
            rloo_mc_reference,
            MC_GROUPS,
            "mean over sampled groups (prompts from rho, responses token by token: rlmath.sequence_sampling) of (1/G) sum_i A_i sum_t score_t(y_i) for the leave-one-out advantage, the others' sum over G and rlmath.llm_reference.rloo_advantages, each vs the complex-step grad J",
        ),
        mutants=(
            Mutant(
                "rloo-shrinks-like-mean",
                "E[RLOO] = (1 - 1/G) grad J, as if the leave-one-out mean shrank like the group "
                "mean",
                symbolic=SymbolicMutation("rloo", RLOO_SHRINKS),
                exact=scaled_gradient(lambda size: 1 - 1 / size, copies=len(RLOO_FORMS)),
                monte_carlo=statement_variant(
                    rloo_mc_sampler, rloo_mc_reference, RLOO_MC_WRONG["rloo-shrinks-like-mean"]
                ),
            ),
            Mutant(
                "rloo-inflated-by-g-over-g-minus-1",
                "E[RLOO] = G/(G-1) grad J (the G/(G-1) between RLOO and group-mean advantages "
                "read as a bias of RLOO)",
                symbolic=SymbolicMutation("rloo", RLOO_INFLATED),
                exact=scaled_gradient(lambda size: size / (size - 1), copies=len(RLOO_FORMS)),
                monte_carlo=statement_variant(
                    rloo_mc_sampler,
                    rloo_mc_reference,
                    RLOO_MC_WRONG["rloo-inflated-by-g-over-g-minus-1"],
                ),
            ),
        ),
    ),
    Claim(
        id="group-mean-baseline-shrinks",
        title="The group-mean baseline shrinks the policy gradient by exactly 1 - 1/G",
        statement=Statement(
            group_mean.start,
            group_mean.conclusion,
            where=(
                r"G \ge 1 \text{ responses};\ \text{three outcomes with rewards } f_a "
                r"\text{ and softmax probabilities } \pi_a"
            ),
            symbol_names={theta: r"\theta", f: "f"},
        ),
        assumptions=(
            *SHARED_ASSUMPTIONS,
            "Symbolic leg: any group size G >= 1 (a symbol), one prompt whose response law is "
            "a symbolic softmax over three outcomes with symbolic rewards.",
            "Exact leg: 1-2 prompts, 1-2 ordinary tokens plus EOS, L = 1-3, G = 2-4, random "
            "logits, rewards and prompt probabilities.",
            "Monte-Carlo leg: 2 examples with 2 prompts, 2 ordinary tokens plus EOS, L = 2-3, "
            "G = 2-4, logits in [-1, 1] moved by +-0.75 per prompt on token 0, rewards varied by "
            "a fixed pattern; 20,000 sampled groups "
            "each, kept only if every mutant is detected with power 0.99; false alarm 1e-6.",
        ),
        references=(
            "Shao, Z. et al., *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in "
            "Open Language Models*, 2024, Sec. 4.1.2 (the group-mean baseline of GRPO).",
            "Kool, W., van Hoof, H. and Welling, M., *Buy 4 REINFORCE samples, get a baseline "
            "for free!*, ICLR Workshop 2019 (the leave-one-out correction G/(G-1)).",
        ),
        summary=(
            "Subtracting the group mean that includes the response itself scales the expected "
            "gradient by 1 - 1/G (half the gradient at G = 2): biased in scale only, fixed by "
            "the factor G/(G-1), which turns it into RLOO."
        ),
        symbolic=SymbolicLeg((group_mean,)),
        exact=ExactLeg(
            baseline_examples,
            lhs=lambda example: expected_group_estimator(
                example[0], example[1], group_mean_advantages
            ),
            rhs=scaled_gradient(lambda size: 1 - 1 / size),
            rhs_reason=(
                "grad J of the sequence model is the complex-step derivative of J (not "
                "lambdifiable from the symbolic instance); the factor is the conclusion's "
                "1 - 1/G"
            ),
            rtol=_rtol,
            error_scale=lambda example: _error_scale(example, _reward_bound(example[0])),
            max_examples=15,
            description=(
                "expected_over_groups of (1/G) sum_i (r_i - mean_j r_j) grad log pi(y_i|x) vs "
                "(1 - 1/G) times the complex-step gradient of J"
            ),
        ),
        monte_carlo=group_leg(
            mean_mc_examples,
            mean_mc_sampler,
            mean_mc_reference,
            MC_GROUPS,
            "mean over sampled groups (token by token: rlmath.sequence_sampling) of (1/G) sum_i (r_i - mean_j r_j) sum_t score_t(y_i), the advantage as written and by rlmath.llm_reference.dr_grpo_advantages, vs (1 - 1/G) times the complex-step grad J",
        ),
        mutants=(
            Mutant(
                "group-mean-unbiased",
                "E[group-mean estimator] = grad J (the own-reward term forgotten)",
                symbolic=SymbolicMutation("group-mean", MEAN_UNBIASED),
                exact=scaled_gradient(lambda size: 1.0),
                monte_carlo=statement_variant(
                    mean_mc_sampler, mean_mc_reference, MEAN_MC_WRONG["group-mean-unbiased"]
                ),
            ),
            Mutant(
                "shrink-by-g-over-g-plus-1",
                "E = (1 - 1/(G+1)) grad J (an off-by-one in the group size)",
                symbolic=SymbolicMutation("group-mean", MEAN_SHRINKS_BY_G_MINUS_1),
                exact=scaled_gradient(lambda size: 1 - 1 / (size + 1)),
                monte_carlo=statement_variant(
                    mean_mc_sampler, mean_mc_reference, MEAN_MC_WRONG["shrink-by-g-over-g-plus-1"]
                ),
            ),
        ),
    ),
    Claim(
        id="group-std-normalisation",
        title="GRPO's std normalisation reweights prompts by a factor of their success rate",
        statement=Statement(
            grpo_binary.start,
            grpo_binary.conclusion,
            where=(
                r"G = 4;\ \text{three outcomes with probabilities } "
                r"\pi_a \text{ (softmax)},\ "
                r"\text{binary rewards } (1, 1, 0);\ p = \pi_0 + \pi_1"
            ),
            symbol_names={theta: r"\theta"},
        ),
        assumptions=(
            *SHARED_ASSUMPTIONS,
            "Binary rewards r in {0, 1}; advantages (r_i - mean)/std with the sample std "
            "(ddof = 1) and 0 for a group of equal rewards (eps -> 0).",
            "Symbolic leg: a fully symbolic small instance, G = 4 and one prompt whose response "
            "law is a symbolic softmax over three outcomes with rewards (1, 1, 0); the "
            "factor c_4(p) is written out as its binomial sum. General G is checked only by the "
            "exact leg (G = 4, 5): sympy does not carry the binomial sum with a symbolic G.",
            "Exact leg: 2 prompts, 1-2 ordinary tokens plus EOS, L = 2-3, G = 4-5, random "
            "logits and prompt probabilities, rewards 1[r > 0] of random rewards.",
            "Monte-Carlo leg: 2 examples with 2 prompts, 1-2 ordinary tokens plus EOS, L = 2, "
            "G = 6-8 (where c_G varies enough with p for the pooled-factor mutant to be seen), "
            "logits in [-1, 1] moved by +-0.75 per prompt on token 0, 0/1 rewards with a "
            "success and a failure in every prompt; "
            "40,000 sampled groups each, kept only if every mutant is detected with power "
            "0.99; false alarm 1e-6.",
            "c_G(p) > 0 for 0 < p < 1 because every bracket a_+(k+1) - a_-(k) is positive "
            "(a_+ >= 0 >= a_-, and for k = 0, a_+(1) > 0): shown by the formula, not checked "
            "by a leg.",
        ),
        references=(
            "Shao, Z. et al., *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in "
            "Open Language Models*, 2024, Sec. 4.1.2 (outcome-supervision advantage "
            "(r_i - mean(r))/std(r)).",
            "Liu, Z. et al., *Understanding R1-Zero-Like Training: A Critical Perspective*, "
            "2025, Sec. 3.1 (Dr. GRPO: question-level difficulty bias of the std).",
        ),
        summary=(
            "With 0/1 rewards, GRPO's std-normalised advantage moves each prompt along its own "
            "grad p_x with a positive weight c_G(p_x) that depends on the prompt's success "
            "rate, so across prompts it ascends a reweighted objective, not J (from G = 4 on)."
        ),
        notes=(
            "For G = 2 and G = 3 the factor is the constant 1/sqrt(2) and 2/sqrt(3) (GRPO is "
            "then a rescaled unbiased estimator); from G = 4 on it depends on p and is "
            "largest for prompts that are nearly always or nearly never solved, approaching "
            "1/sqrt(p(1 - p)) as G grows. With non-binary rewards the expected update is in "
            "general not parallel to grad J even for one prompt (the std depends on the "
            "reward values); no closed form is claimed there."
        ),
        symbolic=SymbolicLeg((grpo_binary,)),
        exact=ExactLeg(
            grpo_examples,
            lhs=lambda example: expected_group_estimator(
                example[0], example[1], group_normalised_advantages
            ),
            rhs=prompt_reweighted_gradient(grpo_factor),
            rhs_reason=(
                "grad J of the sequence model is the complex-step derivative of J, and c_G(p_x) "
                "is evaluated from its binomial sum for each prompt's exact success "
                "probability; the symbolic instance fixes G = 4 and three outcomes, so its "
                "conclusion cannot be lambdified onto the sequence model"
            ),
            rtol=_rtol,
            error_scale=_grpo_scale,
            max_examples=12,
            description=(
                "expected_over_groups of (1/G) sum_i (r_i - mean)/std grad log pi(y_i|x) with "
                "0/1 rewards vs sum_x c_G(p_x) times prompt x's block of the complex-step "
                "gradient of J"
            ),
        ),
        monte_carlo=group_leg(
            grpo_mc_examples,
            grpo_mc_sampler,
            grpo_mc_reference,
            GRPO_MC_GROUPS,
            "mean over sampled groups of G = 6-8 (token by token: rlmath.sequence_sampling) of (1/G) sum_i (r_i - mean)/std sum_t score_t(y_i) with 0/1 rewards, the advantage as written and by rlmath.llm_reference.grpo_advantages(epsilon=0), vs sum_x c_G(p_x) times prompt x's block of the complex-step grad J",
        ),
        mutants=(
            Mutant(
                "grpo-unbiased",
                "E[GRPO] = grad J: the std normalisation taken to be harmless",
                symbolic=SymbolicMutation("grpo-binary", GRPO_UNBIASED),
                exact=scaled_gradient(lambda size: 1.0),
                monte_carlo=statement_variant(
                    grpo_mc_sampler, grpo_mc_reference, GRPO_MC_WRONG["grpo-unbiased"]
                ),
            ),
            Mutant(
                "inverse-std-factor",
                "each prompt weighted by 1/std = 1/sqrt(p_x(1 - p_x)) (the large-G limit taken "
                "as exact)",
                symbolic=SymbolicMutation("grpo-binary", GRPO_INVERSE_STD),
                exact=prompt_reweighted_gradient(inverse_std_factor),
                monte_carlo=statement_variant(
                    grpo_mc_sampler, grpo_mc_reference, GRPO_MC_WRONG["inverse-std-factor"]
                ),
            ),
            Mutant(
                "parallel-across-prompts",
                "E[GRPO] = c_G(p_bar) grad J with one factor for all prompts (parallel to "
                "grad J across prompts); a two-prompt statement, so no symbolic variant",
                exact=pooled_factor_gradient,
                monte_carlo=statement_variant(
                    grpo_mc_sampler, grpo_mc_reference, GRPO_MC_WRONG["parallel-across-prompts"]
                ),
            ),
        ),
    ),
    Claim(
        id="grpo-length-normalisation-bias",
        title="GRPO's 1/|y| token mean ascends a length-reweighted objective; a constant "
        "normaliser does not",
        statement=Statement(
            token_mean.start,
            token_mean.conclusion,
            where=(
                r"\text{three outcomes with probabilities } "
                r"\pi_a \text{ (softmax)},\ \text{rewards } f_a,\ "
                r"\text{lengths } \ell_a > 0;\ G \ge 1"
            ),
            symbol_names={theta: r"\theta", f: "f", ell: r"\ell", Lam: r"\Lambda"},
        ),
        assumptions=(
            *SHARED_ASSUMPTIONS,
            "Advantage r_i - mean_j r_j (GRPO without the std, Dr. GRPO's advantage), so that "
            "the length effect is seen alone; |y| counts the EOS token.",
            "Token-mean aggregation: each response's token scores are summed and divided by "
            "its own length |y_i| (GRPO, Shao et al. 2024, eq. (3)); Dr. GRPO divides by a "
            "constant Lambda instead (the exact leg uses Lambda = L).",
            "Symbolic leg: any G (a symbol), one prompt whose response law is a symbolic "
            "softmax over three outcomes with symbolic rewards and positive symbolic lengths.",
            "Exact leg: 1-2 prompts, 1-2 ordinary tokens plus EOS, L = 2-3 (so lengths vary), "
            "G = 2-4, random logits, rewards and prompt probabilities.",
            "Monte-Carlo leg: 2 examples with 2 prompts, 2 ordinary tokens plus EOS, L = 2-3, "
            "G = 2-4, logits in [-1, 1] moved by +-0.75 per prompt on token 0, rewards varied "
            "by a fixed pattern; 20,000 sampled groups each, |y| as sampled, kept only if every mutant is detected with power "
            "0.99; false alarm 1e-6.",
        ),
        references=(
            "Shao, Z. et al., *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in "
            "Open Language Models*, 2024, eq. (3) (the 1/|o_i| token mean of the GRPO "
            "objective).",
            "Liu, Z. et al., *Understanding R1-Zero-Like Training: A Critical Perspective*, "
            "2025, Sec. 3.1 (response-level length bias; Dr. GRPO's constant "
            "normaliser).",
        ),
        summary=(
            "Dividing each response's token-score sum by its own length |y| makes the expected "
            "update (1 - 1/G) times the gradient of E[(r - E r)/|y|] with E r held fixed, "
            "which favours short above-average and long below-average responses, while "
            "dividing by a constant token budget (Dr. GRPO) only rescales grad J."
        ),
        notes=(
            "Per prompt the token-mean update is (1 - 1/G) grad_theta E_y[(r - mu)/|y|] with "
            "mu = E[r | x] held fixed (the exact leg's right-hand side). Two effects: each "
            "reward is weighted by 1/|y|, and the baseline no longer drops out: its share "
            "-(1 - 1/G) mu grad E[1/|y|] moves the length distribution by itself (toward "
            "longer responses when mu > 0, shorter when mu < 0); forgetting it is the mutant "
            "baseline-length-term-dropped. With a constant normaliser the 1/Lambda factors "
            "out of the expectation and the baseline term vanishes as usual (E[s] = 0)."
        ),
        symbolic=SymbolicLeg((token_mean, constant_normaliser)),
        exact=ExactLeg(
            length_examples,
            lhs=length_normalisation_sides,
            rhs=length_normalisation_conclusion(),
            rhs_reason=(
                "the gradients of E[r/|y|], E[1/|y|] and J of the sequence model are "
                "complex-step derivatives (not lambdifiable from the symbolic instance); the "
                "factors are the conclusions' (1 - 1/G) and (1 - 1/G)/Lambda"
            ),
            rtol=_rtol,
            error_scale=lambda example: _error_scale(example, _reward_bound(example[0])),
            max_examples=12,
            description=(
                "expected_over_groups of (1/G) sum_i (r_i - mean) / n_i grad log pi(y_i|x) with "
                "n_i = |y_i| and with n_i = L, vs (1 - 1/G)(grad E[r/|y|] - mu_x grad "
                "E[1/|y|]) and (1 - 1/G)/L grad J, all gradients by complex step"
            ),
        ),
        monte_carlo=group_leg(
            length_mc_examples,
            length_mc_sampler,
            length_mc_reference,
            MC_GROUPS,
            "mean over sampled groups (token by token: rlmath.sequence_sampling) of (1/G) sum_i A_i / |y_i| sum_t score_t(y_i) (|y_i| as sampled) and of (1/G) sum_i A_i / L sum_t score_t(y_i) (A_i by rlmath.llm_reference.dr_grpo_advantages), vs the exact leg's complex-step right-hand sides",
        ),
        mutants=(
            Mutant(
                "baseline-length-term-dropped",
                "E = (1 - 1/G) grad E[r/|y|]: the baseline assumed to cancel as without the "
                "1/|y| weights",
                symbolic=SymbolicMutation("token-mean", LENGTH_BASELINE_TERM_DROPPED),
                exact=length_normalisation_conclusion(baseline_term=False),
                monte_carlo=statement_variant(
                    length_mc_sampler,
                    length_mc_reference,
                    LENGTH_MC_WRONG["baseline-length-term-dropped"],
                ),
            ),
            Mutant(
                "length-normalisation-harmless",
                "E = (1 - 1/G) grad J: the per-response 1/|y| taken to be a harmless rescaling",
                symbolic=SymbolicMutation("token-mean", LENGTH_HARMLESS),
                exact=length_normalisation_conclusion(length_weighted=False),
                monte_carlo=statement_variant(
                    length_mc_sampler,
                    length_mc_reference,
                    LENGTH_MC_WRONG["length-normalisation-harmless"],
                ),
            ),
            Mutant(
                "dr-grpo-unscaled",
                "the constant normaliser's 1/Lambda forgotten: E = (1 - 1/G) grad J",
                symbolic=SymbolicMutation("constant-normaliser", CONSTANT_UNSCALED),
                exact=length_normalisation_conclusion(constant_scaled=False),
                monte_carlo=statement_variant(
                    length_mc_sampler, length_mc_reference, LENGTH_MC_WRONG["dr-grpo-unscaled"]
                ),
            ),
        ),
    ),
)
