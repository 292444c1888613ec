r"""Clipped surrogates of LLM-RL at $\theta = \theta_\mathrm{old}$, where clipping bites, and gradient accumulation.

Setting. The tabular autoregressive policy of :mod:`rlmath.sequence_model` (prompts
$x \sim \rho$, responses $y$ that end at EOS or are truncated at $L$, one logit vector per
prefix node) and the per-token losses of :mod:`rlmath.llm_reference` on padded ``[B, T]``
tensors. $z_{b,t} = \log\pi_\theta(y_{b,t} \mid x_b, y_{b,<t})$ is the only argument gradients
flow through; $\log\pi_{\theta_\mathrm{old}}$, advantages and normalisers are detached.

Main statements.

1. **PPO / GRPO / DAPO surrogate at the old policy** (``llm-ppo-surrogate-gradient-at-old``).
   The per-token loss $\ell_{b,t} = -\min(\rho_{b,t} A_{b,t}, \mathrm{clip}(\rho_{b,t},
   1 - \epsilon_\mathrm{low}, 1 + \epsilon_\mathrm{high}) A_{b,t})$ (with or without the dual
   clip $c > 1$), $\rho = e^{z - z_\mathrm{old}}$, has at $\theta = \theta_\mathrm{old}$

   $$ \frac{\partial \ell_{b,t}}{\partial z_{b,t}}\Big|_{z = z_\mathrm{old}} = -A_{b,t},
      \qquad \nabla_\theta \ell_{b,t} = -A_{b,t}\, \nabla_\theta \log\pi_\theta(y_{b,t}
      \mid x_b, y_{b,<t}), $$

   whatever $\epsilon_\mathrm{low}, \epsilon_\mathrm{high} > 0$ and $c$: the ratio $1$ lies
   strictly inside every clip range, so the clipped loss is the score-function (REINFORCE)
   estimator there. Hence, aggregated by ``seq-mean-token-sum`` over a group of $G \ge 2$
   responses with RLOO advantages, or over single responses with reward-to-go advantages
   $A_t = r(x, y) + \sum_{t' \ge t} r_{t'}$, the expected gradient of the loss is exactly
   $-\nabla_\theta J$.
2. **GSPO** (``gspo-gradient-at-old``). With the sequence ratio
   $s_b = (\pi_\theta(y_b)/\pi_{\theta_\mathrm{old}}(y_b))^{1/|y_b|}$ (the geometric mean of
   the token ratios) and $\mathcal L = -\frac{1}{|B|}\sum_b \min(s_b A_b,
   \mathrm{clip}(s_b) A_b)$,

   $$ \nabla_\theta \mathcal L = -\frac{1}{|B|}\sum_b \mathbb 1[\text{unclipped}_b]\,
      \frac{s_b A_b}{|y_b|}\,\nabla_\theta\log\pi_\theta(y_b \mid x_b), $$

   every token of a sequence weighted alike; at $\theta_\mathrm{old}$ ($s_b = 1$) this is the
   length-normalised sequence gradient $-\frac{1}{|B|}\sum_b \frac{A_b}{|y_b|}
   \nabla\log\pi(y_b)$, whose expectation with RLOO advantages is
   $-\sum_x \rho(x)\big(\nabla\mathbb E_x[r/|y|] - \mu_x \nabla\mathbb E_x[1/|y|]\big)$
   ($\mu_x = \mathbb E_x[r]$ held fixed), not $-\nabla J$.
3. **Where clipping bites** (``ppo-clip-zeroes-gradient``). Off the kinks and for $A \ne 0$,
   $\partial\ell/\partial z = 0$ exactly when $A > 0, \rho > 1 + \epsilon_\mathrm{high}$, or
   $A < 0, \rho < 1 - \epsilon_\mathrm{low}$, or $A < 0, \rho > c$ (dual clip); otherwise it
   is $-\rho A$.
4. **Gradient accumulation** (``gradient-accumulation-normalisation``). For micro-batches
   with token-loss sums $S_k$ and token counts $N_k \ge 1$, $N = \sum_k N_k$,

   $$ \frac1K\sum_k \frac{S_k}{N_k} - \frac{\sum_k S_k}{N}
      = \sum_k\Big(\frac1K - \frac{N_k}{N}\Big)\frac{S_k}{N_k}, \qquad
      \sum_k \frac{S_k}{N} = \frac{\sum_k S_k}{N}: $$

   averaging micro-batch token means is biased unless all $N_k$ are equal; dividing each
   micro-batch's token sum by the global count is exact.

Conventions. Losses are minimised ($\ell = -$ objective), so the targets are $-\nabla J$.
EOS is a response token (its score counts). The exact legs evaluate every expectation by
enumerating responses and groups (:func:`rlmath.sequence_model.expected_over_groups`).

Proof sketch. (1) On the neighbourhood $\log(1 - \epsilon_\mathrm{low}) < z - z_\mathrm{old}
< \log(1 + \epsilon_\mathrm{high})$ the clip is the identity, both terms of the min are
$\rho A$ and the dual clip ($\rho < c$) is inactive, so $\ell = -e^{z - z_\mathrm{old}} A$,
whose derivative at $z_\mathrm{old}$ is $-A$. The chain rule gives the token score. The
expectation is then that of the REINFORCE estimator: unbiased with RLOO (claim
``rloo-unbiased``) and with the reward to go (claim ``llm-sequence-policy-gradient``).
(2) $\partial s_b/\partial z_{b,t} = s_b/|y_b|$ (the exponential of a mean); the clipped
branch is constant. (3) A case analysis on the signs of $A$, $\rho - (1 - \epsilon_\mathrm{low})$,
$\rho - (1 + \epsilon_\mathrm{high})$ and $\rho - c$. (4) Linearity:
$S_k/N = (N_k/N)(S_k/N_k)$.

References. Schulman, J. et al., "Proximal Policy Optimization Algorithms", arXiv:1707.06347,
2017, eq. (7) (at $\theta = \theta_\mathrm{old}$ the clipped objective's gradient is the policy
gradient); Yu, Q. et al., "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
arXiv:2503.14476, 2025, eq. (8)-(10) (clip-higher: $\epsilon_\mathrm{high} \ne
\epsilon_\mathrm{low}$); Ye, D. et al., "Mastering Complex Control in MOBA Games with Deep
Reinforcement Learning", AAAI 2020 (dual clip); Shao, Z. et al., "DeepSeekMath", 2024,
Sec. 4.1 (GRPO's per-token clipped surrogate); Ahmadian, A. et al., "Back to Basics", ACL
2024 (RLOO); Zheng, C. et al., "Group Sequence Policy Optimization", arXiv:2507.18071, 2025,
eq. (5)-(7), (10); Liu, Z. et al., "Understanding R1-Zero-Like Training: A Critical
Perspective" (Dr. GRPO), arXiv:2503.20783, 2025, Sec. 3.1; Hugging Face, "Fixing Gradient
Accumulation", blog post, 16 Oct 2024.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath.claims import (
    Case,
    CaseAnalysis,
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
    lazy_lambdify,
    monte_carlo_leg,
    row_steps,
)
from rlmath.llm_reference import (
    accumulated_token_mean,
    aggregate_loss,
    gspo_loss,
    gspo_loss_gradient,
    ppo_token_loss,
    ppo_token_loss_gradient,
    rloo_advantages,
)
from rlmath.named_functions import Named
from rlmath.sequence_model import GroupBatch, SequenceModel, count_groups, expected_over_groups
from rlmath.symbolic import IndexSum
from rlmath.testing import sequence_models
from rlmath.tolerances import EPS, central_difference_step, exact_rtol

# ============================================================================ shared pieces


def _key(*arrays: Any) -> str:
    """A content hash of the arrays (caches exact computations across the legs' runs)."""
    digest = hashlib.sha1()
    for array in arrays:
        digest.update(np.ascontiguousarray(np.asarray(array, dtype=np.float64)).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def complex_objective(model: SequenceModel, logits: np.ndarray) -> complex:
    r"""$J = \sum_x \rho(x) \sum_y \prod_t \mathrm{softmax}(\theta)_{x, n_t, y_t} R(x, y)$ at complex logits.

    Written directly from the response table (complex-safe log-softmax), with no use of
    :meth:`SequenceModel.weighted_score_sum` or of any group enumeration.
    """
    shift = logits.real.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(logits - shift).sum(axis=-1, keepdims=True)) + shift
    log_pi = logits - log_z
    r = model.responses
    n, v = np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)
    log_p = np.where(r.mask[None], log_pi[:, n, v], 0.0).sum(axis=2)  # [X, R]
    return complex(model.prompt_probabilities @ (np.exp(log_p) * model.total_rewards()).sum(axis=1))


def objective_gradient_by_complex_step(model: SequenceModel) -> np.ndarray:
    r"""$\nabla_\theta J$, ``[X, N, K + 1]``, by complex-step differentiation of :func:`complex_objective`."""
    return complex_step_gradient(lambda z: complex_objective(model, z), model.theta)


def reward_to_go(model: SequenceModel) -> np.ndarray:
    r"""$r(x, y) + \sum_{t' \ge t} r_\mathrm{tok}(x, y_{<t'}, y_{t'})$, ``[X, R, L]`` (0 after the end)."""
    r = model.responses
    token = model.token_rewards[:, np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)]
    token = np.where(r.mask[None], token, 0.0)
    to_go = np.flip(np.cumsum(np.flip(token, axis=2), axis=2), axis=2)
    return np.where(r.mask[None], to_go + model.rewards[:, :, None], 0.0)


#: Central-difference step in a token log-probability. Near z_old the per-token loss is
#: -A e^{z - z_old} (claim 1) or, elsewhere, -A e^{z - z_old} or a constant (claim 3): its third
#: derivative is at most |A| r e^{h} <= 1.01 |A| r on the stencil, and one evaluation is off by
#: a few ulps of |A| r; central_difference_step gives the step for 2 ulps.
FD_STEP, _ = central_difference_step(1.01, 2.0 * EPS)


def token_difference_error(max_abs_log_prob: float) -> float:
    r"""Error bound of :func:`per_token_central_difference`, relative to $\max |rA|$.

    $$ \frac{M_3 h^2}{6} + \frac{\delta}{h}, \qquad M_3 = 1.01, \quad
       \delta = (2 + \max|z|)\,\varepsilon $$

    (:func:`rlmath.tolerances.central_difference_step`'s bound at the step actually used): the
    log-ratio $z - z_\mathrm{old}$ is rounded to about $|z|$ ulps absolute, the exponential
    and the product add two ulps.
    """
    delta = (2.0 + float(max_abs_log_prob)) * EPS
    return 1.01 * FD_STEP**2 / 6.0 + delta / FD_STEP


def per_token_central_difference(
    loss: Callable[[np.ndarray], np.ndarray], z: np.ndarray
) -> np.ndarray:
    r"""$(\ell(z + h) - \ell(z - h)) / ((z + h) - (z - h))$ entry by entry, $h$ = :data:`FD_STEP`.

    Valid because each entry $\ell_{b,t}$ depends only on its own $z_{b,t}$ (a per-token loss):
    shifting every entry at once gives every partial derivative from two evaluations.
    """
    up, down = z + FD_STEP, z - FD_STEP
    return (loss(up) - loss(down)) / (up - down)


# ============================================================================ 1. PPO at theta_old
# ---------------------------------------------------------------------------- symbolic leg
z = sp.Symbol("z", real=True)  # log pi_theta(y_t | prefix)
z_old = sp.Symbol("z_old", real=True)  # log pi_theta_old(y_t | prefix)
A = sp.Symbol("A", real=True)
eps_low = sp.Symbol("epsilon_low", positive=True)
eps_high = sp.Symbol("epsilon_high", positive=True)
kappa = sp.Symbol("kappa", positive=True)


def ratio(log_prob: sp.Expr, old: sp.Expr) -> sp.Expr:
    r"""$\rho = e^{z - z_\mathrm{old}}$."""
    return sp.exp(log_prob - old)


def clip(value: sp.Expr, low: sp.Expr, high: sp.Expr) -> sp.Expr:
    r"""$\mathrm{clip}(v, 1 - \epsilon_\mathrm{low}, 1 + \epsilon_\mathrm{high})$, unevaluated."""
    return sp.Min(sp.Max(value, 1 - low, evaluate=False), 1 + high, evaluate=False)


def ppo_objective(r: sp.Expr, advantage: sp.Expr, dual_term: sp.Expr | None) -> sp.Expr:
    r"""$\min(\rho A, \mathrm{clip}(\rho) A)$; with the dual clip, $\max(\cdot, cA)$ (for $A < 0$).

    ``dual_term`` is $cA$ (``None``: no dual clip), as ``ppo_token_loss`` applies it where
    $A < 0$.
    """
    inner = sp.Min(r * advantage, clip(r, eps_low, eps_high) * advantage, evaluate=False)
    if dual_term is None:
        return inner
    return sp.Max(inner, dual_term, evaluate=False)


def slope_at_old(advantage: sp.Expr, dual_term: sp.Expr | None) -> sp.Subs:
    r"""$\partial\ell / \partial z$ at $z = z_\mathrm{old}$, $\ell = -$ the clipped objective."""
    return sp.Subs(
        sp.Derivative(-ppo_objective(ratio(z, z_old), advantage, dual_term), z), z, z_old
    )


def _ppo_old_derivation(
    name: str, advantage: sp.Expr, dual_term: sp.Expr | None, where: str
) -> Derivation:
    return Derivation(
        name,
        (
            Step(
                slope_at_old(advantage, dual_term),
                f"d loss / d log pi_theta(y_t) at theta = theta_old ({where})",
            ),
            Step(
                sp.Subs(sp.Derivative(-ratio(z, z_old) * advantage, z), z, z_old),
                "on the neighbourhood log(1 - eps_low) < z - z_old < log(1 + eps_high) (and "
                "z - z_old < log c) of z_old the clip is the identity, both terms of the min "
                "are rho A and the dual clip is inactive: the loss is -rho A there",
            ),
            Step(
                sp.Mul(
                    -advantage,
                    sp.exp(sp.Add(z_old, -z_old, evaluate=False), evaluate=False),
                    evaluate=False,
                ),
                "d e^{z - z_old} / dz = e^{z - z_old}, evaluated at z = z_old",
            ),
            Step(-advantage, "e^0 = 1: the ratio is 1 at the old policy"),
        ),
        statement=r"\partial\ell/\partial\log\pi_\theta\,|_{\theta_\mathrm{old}} = -A",
    )


a_neg = sp.Symbol("a", positive=True)  # |A| for A < 0, the only sign the dual clip acts on
ppo_old = _ppo_old_derivation("ppo-at-old", A, None, "asymmetric clip, no dual clip, any A")
# c A with c = 1 + kappa and A = -a, written expanded (-a - kappa a) so that the dual clip's
# distance to the unclipped value at rho = 1, kappa a > 0, is visibly positive
ppo_old_dual = _ppo_old_derivation(
    "ppo-at-old-dual-clip", -a_neg, -a_neg - kappa * a_neg, "dual clip c = 1 + kappa, A = -a < 0"
)

# ---------------------------------------------------------------------------- exact leg
# lhs (four [X, N, K + 1] blocks), each E[grad_theta of the aggregated loss] at theta = theta_old:
#   [0] groups of G ~ pi_old with rloo_advantages, d loss / d z from ppo_token_loss_gradient;
#   [1] the same with d loss / d z by central differences of ppo_token_loss (the loss itself);
#   [2] single responses, reward-to-go token advantages, ppo_token_loss_gradient;
#   [3] the same by central differences of ppo_token_loss.
# Each block chains d loss / d z with the token scores through SequenceModel.weighted_score_sum,
# the groups enumerated by expected_over_groups (every multiset of G responses per prompt).
# rhs: -grad J by complex-step differentiation of J written from the response table.
PPO_BLOCKS = 4


@st.composite
def _ppo_examples(draw: st.DrawFn) -> tuple[Any, ...]:
    model = draw(
        sequence_models(
            min_prompts=1,
            max_prompts=2,
            max_tokens=2,
            min_length=2,
            max_length=3,
            token_rewards=True,
        )
    )
    size = draw(st.integers(2, 3))
    low = draw(st.sampled_from([0.2, 0.1, 0.05]) | st.floats(0.01, 0.5))
    high = draw(st.sampled_from([0.28, 0.2, 0.4]) | st.floats(0.01, 1.0))
    dual_clip = draw(st.sampled_from([None, 3.0]) | st.floats(1.05, 10.0))
    return model, size, low, high, dual_clip


ppo_examples = _ppo_examples()


def _clip_arguments(example: tuple[Any, ...]) -> dict[str, Any]:
    _, _, low, high, dual_clip = example
    return {"clip_low": low, "clip_high": high, "dual_clip": dual_clip}


def _token_slopes(
    example: tuple[Any, ...],
    z_new: np.ndarray,
    z_old: np.ndarray,
    adv: np.ndarray,
    mask: np.ndarray,
    by_differences: bool,
) -> np.ndarray:
    """d loss_{b,t} / d z_{b,t}: ppo_token_loss_gradient, or central differences of ppo_token_loss."""
    clips = _clip_arguments(example)
    if by_differences:
        return per_token_central_difference(
            lambda value: ppo_token_loss(value, z_old, adv, mask, **clips), z_new
        )
    return ppo_token_loss_gradient(z_new, z_old, adv, mask, **clips)


def _expected_rloo_gradient(example: tuple[Any, ...], by_differences: bool) -> np.ndarray:
    model, size = example[0], example[1]
    X, R, L = model.n_prompts, model.n_responses, model.max_length
    token_log_p = model.token_log_probabilities()  # [X, R, L], theta = theta_old
    mask = model.responses.mask

    def statistic(batch: GroupBatch) -> np.ndarray:
        B = batch.responses.shape[0]
        members = batch.responses.ravel()  # [B * G]
        z_new = token_log_p[batch.prompt][members]
        z_old = token_log_p[batch.prompt][members].copy()  # theta = theta_old: equal values
        adv = rloo_advantages(batch.rewards.ravel(), np.repeat(np.arange(B), size))
        m = mask[members]
        slopes = _token_slopes(
            example, z_new, z_old, np.where(m, adv[:, None], 0.0), m, by_differences
        )
        weights = slopes / size  # seq-mean-token-sum over the G sequences of the group
        table = np.zeros((B * size, X, R, L))
        table[np.arange(B * size), batch.prompt, members] = weights
        out: np.ndarray = table.reshape(B, size, X, R, L).sum(axis=1)
        return out

    per_token = expected_over_groups(model, size, statistic)  # [X, R, L]
    return model.weighted_score_sum(per_token)


def _expected_reward_to_go_gradient(example: tuple[Any, ...], by_differences: bool) -> np.ndarray:
    model = example[0]
    token_log_p = model.token_log_probabilities()
    mask = model.responses.mask
    advantages = reward_to_go(model)
    weights = np.zeros(token_log_p.shape)
    for x in range(model.n_prompts):
        slopes = _token_slopes(
            example, token_log_p[x], token_log_p[x].copy(), advantages[x], mask, by_differences
        )
        weights[x] = model.prompt_probabilities[x] * model.probabilities()[x][:, None] * slopes
    return model.weighted_score_sum(weights)


_SIDES: dict[str, np.ndarray] = {}


def _example_key(example: tuple[Any, ...]) -> str:
    model = example[0]
    return _key(
        model.theta,
        model.rewards,
        model.token_rewards,
        model.prompt_probabilities,
        [example[1], example[2], example[3], -1.0 if example[4] is None else example[4]],
    )


def ppo_expected_loss_gradients(example: tuple[Any, ...]) -> np.ndarray:
    """lhs: the four expected loss gradients at theta = theta_old, ``[4, X, N, K + 1]``.

    Cached by content: the legs evaluate the same examples for the claim, its control and
    each mutant.
    """
    key = _example_key(example)
    if key not in _SIDES:
        if len(_SIDES) > 32:
            _SIDES.clear()
        _SIDES[key] = np.stack(
            [
                _expected_rloo_gradient(example, by_differences=False),
                _expected_rloo_gradient(example, by_differences=True),
                _expected_reward_to_go_gradient(example, by_differences=False),
                _expected_reward_to_go_gradient(example, by_differences=True),
            ]
        )
    return _SIDES[key]


def scaled_objective_gradient(
    factors: tuple[float, ...],
) -> Callable[[tuple[Any, ...]], np.ndarray]:
    """rhs: factor_k * grad J for block k (the claim: every factor -1)."""

    def rhs(example: tuple[Any, ...]) -> np.ndarray:
        gradient = objective_gradient_by_complex_step(example[0])
        return np.stack([f * gradient for f in factors])

    return rhs


def _rloo_shrunk(example: tuple[Any, ...]) -> np.ndarray:
    size = example[1]
    shrink = 1.0 - 1.0 / size
    return scaled_objective_gradient((-shrink, -shrink, -1.0, -1.0))(example)


def _ppo_error_scale(example: tuple[Any, ...]) -> float:
    """Size of the accumulated terms: |A| <= 2 max|R| (RLOO) or max reward to go, |score| <= 2 per token."""
    model = example[0]
    bound = max(
        2.0 * float(np.abs(model.total_rewards()).max(initial=0.0)),
        float(np.abs(reward_to_go(model)).max(initial=0.0)),
        1e-300,
    )
    return 2.0 * model.max_length * bound


def _ppo_rtol(example: tuple[Any, ...]) -> float:
    """Rounding of the group sums (exact_rtol) plus the central-difference bound, relative to |A|."""
    model, size = example[0], example[1]
    groups = count_groups(model.n_responses, size) * model.n_prompts
    largest = float(np.abs(model.token_log_probabilities()).max(initial=0.0))
    return exact_rtol(1.0, groups * size * model.max_length) + token_difference_error(largest)


# ---------------------------------------------------------------------------- Monte-Carlo leg
# Groups sampled as a trainer does: x ~ rho, G responses ~ pi_theta_old(. | x) drawn token by
# token from the next-token distributions (rlmath.sequence_model's prefix tree, no use of the
# response probabilities), RLOO advantages, d loss / d z from ppo_token_loss_gradient, each
# group's gradient sum_i sum_t (1/G) slope_{i,t} grad log pi(y_{i,t}). Its mean is compared
# with -grad J (complex step) by rlmath.statistics.agreement at false alarm 1e-6 for the leg.
# Logits within +-1 and prompt probabilities >= 0.1 keep every prefix of the tree visited
# often at this sample size (a component made only of events too rare to be sampled would be
# judged on rounding noise).
# The mutants' estimators: the inverted-ratio surrogate differentiated by central differences
# of ppo_token_loss(old, new) in its second argument, and the clipped-at-one estimator (0).
PPO_MC_SAMPLES = 20_000
PPO_MC_FALSE_ALARM = 1e-6


def _token_scores(model: SequenceModel) -> np.ndarray:
    r"""$\nabla_\theta \log\pi(y_{r,t} \mid x, y_{r,<t})$ for every response and position, ``[X, R, L, D]``."""
    X, R, L = model.n_prompts, model.n_responses, model.max_length
    D = model.theta.size
    pi = np.exp(model.next_token_log_probabilities())
    out = np.zeros((X, R, L, D))
    V = model.n_tokens + 1
    r = model.responses
    for x in range(X):
        for i in range(R):
            for t in range(int(r.lengths[i])):
                n, v = int(r.nodes[i, t]), int(r.tokens[i, t])
                start = (x * model.n_nodes + n) * V
                out[x, i, t, start : start + V] -= pi[x, n]
                out[x, i, t, start + v] += 1.0
    return out


def _sample_responses(model: SequenceModel, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Response indices for prompts ``x`` [M], generated token by token down the prefix tree."""
    K, L = model.n_tokens, model.max_length
    pi = np.exp(model.next_token_log_probabilities())
    offsets = [sum(K**j for j in range(d)) for d in range(L + 1)]
    code = np.zeros(x.size, dtype=np.intp)
    out = np.full(x.size, -1, dtype=np.intp)
    for depth in range(L):
        live = out < 0
        node = offsets[depth] + code
        u = rng.random(x.size)
        cumulative = np.cumsum(pi[x, node], axis=1)
        token = np.minimum((u[:, None] > cumulative).sum(axis=1), K)
        stop = live & (token == K)
        out[stop] = node[stop]  # response index of "node + EOS" is the node
        code = np.where(live & ~stop, code * K + token, code)
    truncated = out < 0
    out[truncated] = offsets[L] + code[truncated]
    return out


def _ppo_group_terms(
    slopes_of: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> Callable[[tuple[Any, ...], np.random.Generator, int], np.ndarray]:
    def sample(example: tuple[Any, ...], rng: np.random.Generator, n: int) -> np.ndarray:
        model, size = example[0], example[1]
        scores = _token_scores(model)
        x = rng.choice(model.n_prompts, size=n, p=model.prompt_probabilities)
        members = _sample_responses(model, np.repeat(x, size), rng).reshape(n, size)
        prompts = np.repeat(x, size)
        flat = members.ravel()
        rewards = model.total_rewards()[prompts, flat]
        advantages = rloo_advantages(rewards, np.repeat(np.arange(n), size))
        mask = model.responses.mask[flat]
        z_new = model.token_log_probabilities()[prompts, flat]
        slopes = slopes_of(z_new, z_new.copy(), np.where(mask, advantages[:, None], 0.0), mask)
        per_member = np.einsum("mt,mtd->md", slopes / size, scores[prompts, flat])
        return per_member.reshape(n, size, -1).sum(axis=1)

    return sample


def _library_slopes(example: tuple[Any, ...]) -> Callable[..., np.ndarray]:
    return lambda new, old, adv, mask: ppo_token_loss_gradient(
        new, old, adv, mask, **_clip_arguments(example)
    )


def _ppo_mc_sample(example: tuple[Any, ...], rng: np.random.Generator, n: int) -> np.ndarray:
    return _ppo_group_terms(_library_slopes(example))(example, rng, n)


def _inverted_ratio_sample(
    example: tuple[Any, ...], rng: np.random.Generator, n: int
) -> np.ndarray:
    """The surrogate with rho = pi_old / pi_theta: ppo_token_loss(old, new) differentiated in new."""
    clips = _clip_arguments(example)

    def slopes(new: np.ndarray, old: np.ndarray, adv: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return per_token_central_difference(
            lambda value: ppo_token_loss(old, value, adv, mask, **clips), new
        )

    return _ppo_group_terms(slopes)(example, rng, n)


def _clipped_at_one_sample(
    example: tuple[Any, ...], rng: np.random.Generator, n: int
) -> np.ndarray:
    return _ppo_group_terms(lambda new, old, adv, mask: np.zeros(new.shape))(example, rng, n)


def _ppo_mc_reference(example: tuple[Any, ...]) -> np.ndarray:
    return -objective_gradient_by_complex_step(example[0]).ravel()


def _ppo_mc_moments(example: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and sd of one group's gradient (expected_over_groups of the term and its square)."""
    model, size = example[0], example[1]
    scores = _token_scores(model)
    token_log_p = model.token_log_probabilities()

    def statistic(batch: GroupBatch, square: bool) -> np.ndarray:
        B = batch.responses.shape[0]
        flat = batch.responses.ravel()
        advantages = rloo_advantages(batch.rewards.ravel(), np.repeat(np.arange(B), size))
        mask = model.responses.mask[flat]
        z_new = token_log_p[batch.prompt][flat]
        slopes = _library_slopes(example)(
            z_new, z_new.copy(), np.where(mask, advantages[:, None], 0.0), mask
        )
        terms = np.einsum("mt,mtd->md", slopes / size, scores[batch.prompt][flat])
        group = terms.reshape(B, size, -1).sum(axis=1)
        out: np.ndarray = group**2 if square else group
        return out

    mean = expected_over_groups(model, size, lambda b: statistic(b, False))
    second = expected_over_groups(model, size, lambda b: statistic(b, True))
    return mean, np.sqrt(np.maximum(second - mean**2, 0.0))


def _ppo_mc_visible(example: tuple[Any, ...]) -> bool:
    """Both sampled mutants (shifts 2 grad J and grad J) rejected with power 0.99."""
    mean, sd = _ppo_mc_moments(example)
    alpha = PPO_MC_FALSE_ALARM / 2
    return detectable(mean, sd, PPO_MC_SAMPLES, false_alarm=alpha)  # the smaller shift: |grad J|


ppo_mc_examples = (
    st.tuples(
        sequence_models(
            min_prompts=1,
            max_prompts=2,
            max_tokens=2,
            min_length=2,
            max_length=3,
            max_abs_logit=1.0,
            token_rewards=True,
        ),
        st.integers(2, 3),
        st.sampled_from([0.2, 0.1]),
        st.sampled_from([0.28, 0.2]),
        st.sampled_from([None, 3.0]),
    )
    .filter(lambda example: float(example[0].prompt_probabilities.min()) >= 0.1)
    .filter(_ppo_mc_visible)
)


PPO_SHARED_ASSUMPTIONS = (
    "theta = theta_old: the data were sampled by the policy being differentiated (the first "
    "gradient step of each PPO/GRPO update, or any step when there is one step per batch).",
    "Advantages, old log-probabilities and normalisers are detached; eps_low, eps_high > 0; "
    "dual clip c > 1 or none.",
)

CLAIMS_PPO = (
    Claim(
        id="llm-ppo-surrogate-gradient-at-old",
        title="At theta = theta_old the clipped PPO/GRPO token loss is the policy-gradient estimator",
        statement=Statement(
            ppo_old.start,
            ppo_old.conclusion,
            where=(
                r"\rho = e^{z - z_\mathrm{old}},\ z = \log\pi_\theta(y_t \mid x, y_{<t}),\ "
                r"\epsilon_\mathrm{low}, \epsilon_\mathrm{high} > 0"
            ),
            symbol_names={
                z_old: r"z_\mathrm{old}",
                eps_low: r"\epsilon_\mathrm{low}",
                eps_high: r"\epsilon_\mathrm{high}",
            },
        ),
        assumptions=(
            *PPO_SHARED_ASSUMPTIONS,
            "Symbolic leg: one token, every quantity a symbol (log-probabilities z, z_old, "
            "advantage A, clip range eps_low, eps_high, dual clip c = 1 + kappa); the chain "
            "rule to theta and the unbiasedness of the score-function estimator are the "
            "claims rloo-unbiased and llm-sequence-policy-gradient, and are checked here by "
            "the exact leg.",
            "Exact leg: 1-2 prompts, 1-2 ordinary tokens plus EOS, L = 2-3, token rewards; "
            "groups of G = 2-3 with RLOO advantages (rlmath.llm_reference.rloo_advantages), "
            "aggregated by seq-mean-token-sum (1/G per sequence); single responses with "
            "reward-to-go advantages, weight 1; clip ranges in (0.01, 1), dual clip none or "
            "in (1.05, 10).",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, "
            "2017, eq. (7).",
            "Yu, Q. et al., *DAPO: An Open-Source LLM Reinforcement Learning System at Scale*, "
            "arXiv:2503.14476, 2025, eq. (8)-(10) (clip-higher).",
            "Ye, D. et al., *Mastering Complex Control in MOBA Games with Deep Reinforcement "
            "Learning*, AAAI 2020 (dual clip).",
            "Ahmadian, A. et al., *Back to Basics: Revisiting REINFORCE Style Optimization for "
            "Learning from Human Feedback in LLMs*, ACL 2024 (RLOO).",
        ),
        summary=(
            "On the first step after sampling, PPO/GRPO/DAPO's clipped per-token loss has "
            "exactly the REINFORCE gradient -A grad log pi(y_t), whatever the (asymmetric) "
            "clip range or dual clip: with RLOO or reward-to-go advantages and a token-sum "
            "per sequence its expected gradient is exactly -grad J."
        ),
        notes=(
            "Clipping only matters after the first step of an update: at theta_old every ratio "
            "is 1, strictly inside [1 - eps_low, 1 + eps_high] and below the dual clip c. So "
            "bugs that live in the clipping (max instead of min, the clip applied on the wrong "
            "side for the advantage's sign, swapped eps_low/eps_high) do not change this "
            "gradient and are mutants of `ppo-clip-zeroes-gradient` instead. What does change "
            "it: an inverted ratio (pi_old / pi_theta) flips the sign, and treating ratio 1 as "
            "clipped kills it. Other aggregations change the expectation: a per-response 1/|y| "
            "gives the length-reweighted objective of `grpo-length-normalisation-bias`."
        ),
        symbolic=SymbolicLeg((ppo_old, ppo_old_dual)),
        monte_carlo=monte_carlo_leg(
            ppo_mc_examples,
            _ppo_mc_sample,
            _ppo_mc_reference,
            n_samples=PPO_MC_SAMPLES,
            false_alarm=PPO_MC_FALSE_ALARM,
            description=(
                "mean over sampled groups (x ~ rho, G responses generated token by token from "
                "pi_theta_old) of the RLOO / seq-mean-token-sum gradient of ppo_token_loss at "
                "theta_old (ppo_token_loss_gradient times the token scores) vs -grad J by "
                "complex step"
            ),
        ),
        exact=ExactLeg(
            ppo_examples,
            lhs=ppo_expected_loss_gradients,
            rhs=scaled_objective_gradient((-1.0,) * PPO_BLOCKS),
            rhs_reason=(
                "grad J of the sequence model is the complex-step derivative of J written from "
                "the response table (not lambdifiable from the one-token symbolic instance); "
                "the factor -1 is the conclusion's -A with E[A grad log pi] = grad J"
            ),
            rtol=_ppo_rtol,
            error_scale=_ppo_error_scale,
            max_examples=8,
            description=(
                "E over every multiset of G responses (RLOO advantages, seq-mean-token-sum) and "
                "over single responses (reward-to-go advantages) of sum_t (d loss_t / d log "
                "pi_t) grad log pi_t at theta = theta_old, with d loss / d log pi from "
                "ppo_token_loss_gradient and by central differences of ppo_token_loss, vs "
                "-grad J by complex step"
            ),
        ),
        mutants=(
            Mutant(
                "ratio-inverted",
                "rho = pi_old / pi_theta: the gradient at theta_old is +A grad log pi, so the "
                "expected loss gradient is +grad J (an ascent direction of the loss)",
                symbolic=SymbolicMutation("ppo-at-old", A),
                exact=scaled_objective_gradient((1.0,) * PPO_BLOCKS),
                monte_carlo=_inverted_ratio_sample,
            ),
            Mutant(
                "clipped-at-ratio-one",
                "ratio 1 counted as clipped (a closed clip range read as 'at the bound'): zero "
                "gradient at theta_old",
                symbolic=SymbolicMutation("ppo-at-old-dual-clip", sp.Integer(0)),
                exact=scaled_objective_gradient((0.0,) * PPO_BLOCKS),
                monte_carlo=_clipped_at_one_sample,
            ),
            Mutant(
                "rloo-shrinks-like-group-mean",
                "the RLOO blocks equal -(1 - 1/G) grad J, as if the leave-one-out baseline "
                "included the member itself",
                exact=_rloo_shrunk,
            ),
        ),
    ),
)


# ============================================================================ 2. GSPO at theta_old
# ---------------------------------------------------------------------------- symbolic leg
# One sequence of three tokens (|y| = 3, every log-probability a symbol): s is the geometric
# mean of the token ratios, exp of the mean log-ratio. The batch mean over |B| sequences only
# multiplies by 1/|B| (the exact leg checks it).
GSPO_LENGTH = 3
z_tok = sp.IndexedBase("z", real=True)  # log pi_theta(y_t), t = 1..3
w_tok = sp.IndexedBase("w", real=True)  # log pi_theta_old(y_t)
TOKENS = tuple(range(1, GSPO_LENGTH + 1))


def mean_log_ratio(new: Any = z_tok) -> sp.Expr:
    r"""$\frac{1}{|y|}\sum_t (z_t - w_t)$, unevaluated."""
    return sp.Mul(
        sp.Rational(1, GSPO_LENGTH),
        sp.Add(*(new[t] - w_tok[t] for t in TOKENS), evaluate=False),
        evaluate=False,
    )


# s = (pi / pi_old)^{1/|y|}, kept whole and printed as s (its definition is listed on the
# page; ``doit``, where every proving rewriting starts, gives the exponential)
sequence_ratio = Named("s", sp.exp(mean_log_ratio(), evaluate=False))
AT_OLD = {z_tok[t]: w_tok[t] for t in TOKENS}


def gspo_objective(s: sp.Expr, advantage: sp.Expr) -> sp.Expr:
    r"""$\min(sA, \mathrm{clip}(s, 1 - \epsilon_\mathrm{low}, 1 + \epsilon_\mathrm{high}) A)$."""
    return sp.Min(s * advantage, clip(s, eps_low, eps_high) * advantage, evaluate=False)


def _at_old(expression: sp.Expr) -> sp.Subs:
    return sp.Subs(expression, tuple(AT_OLD), tuple(AT_OLD.values()))


gspo_at_old = Derivation(
    "gspo-at-old",
    (
        Step(
            _at_old(sp.Derivative(-gspo_objective(sequence_ratio, A), z_tok[1])),
            "d loss / d log pi_theta(y_1) of one sequence at theta = theta_old",
        ),
        Step(
            _at_old(sp.Derivative(-sequence_ratio * A, z_tok[1])),
            "s = 1 at theta_old, strictly inside [1 - eps_low, 1 + eps_high]: on a "
            "neighbourhood the loss is -s A",
        ),
        Step(
            _at_old(sp.Mul(-A, sp.Rational(1, GSPO_LENGTH), sequence_ratio, evaluate=False)),
            "chain rule: d s / d z_1 = s d(mean log-ratio)/d z_1 = s / |y|, then z = w",
        ),
        Step(
            sp.Mul(
                -A,
                sp.Rational(1, GSPO_LENGTH),
                sp.exp(sp.Integer(0), evaluate=False),
                evaluate=False,
            ),
            "at z = w every token log-ratio, and so their mean, is 0",
        ),
        Step(-A / GSPO_LENGTH, "s = e^0 = 1 at the old policy"),
    ),
    statement=r"\partial\ell/\partial\log\pi_\theta(y_t)\,|_{\theta_\mathrm{old}} = -A/|y|",
)

gspo_token_weight = Derivation(
    "gspo-token-weight",
    (
        Step(
            sp.Derivative(-sequence_ratio * A, z_tok[1]),
            "d loss / d log pi_theta(y_1) where the sequence is not clipped (any theta)",
        ),
        Step(
            sp.Mul(-A, sp.Rational(1, GSPO_LENGTH), sequence_ratio, evaluate=False),
            "chain rule: d e^{m} / d z_1 = e^{m} d m / d z_1 with m the mean log-ratio, "
            "d m / d z_1 = 1/|y|: every token of the sequence gets the same weight s / |y|",
        ),
    ),
    statement=r"\partial\ell/\partial\log\pi_\theta(y_t) = -A\, s/|y| \text{ (unclipped)}",
)

GSPO_ARITHMETIC = sp.Mul(
    -A, sp.Rational(1, GSPO_LENGTH), sp.exp(z_tok[1] - w_tok[1]), evaluate=False
)

# ---------------------------------------------------------------------------- exact leg
# Blocks ([X, N, K + 1] each):
#   [0] grad_theta gspo_loss(log pi_theta, log pi_old, A, mask) on the batch of every response
#       of every prompt (advantages drawn per example; theta_old = theta + delta u), by central
#       differences of gspo_loss in theta;
#   [1] the same from gspo_loss_gradient chained with the token scores (weighted_score_sum);
#   [2] at theta = theta_old, E over every multiset of G responses (RLOO advantages) of the
#       gspo_loss_gradient chain.
# rhs [0], [1]: -(1/|B|) sum_b 1[unclipped] s_b A_b / |y_b| grad log pi(y_b), with
#   s_b = (pi_theta(y_b) / pi_old(y_b))^{1/|y_b|} from sequence log-probabilities and
#   grad log pi(y_b) from SequenceModel.response_scores (no GSPO code);
# rhs [2]: -sum_x rho(x) (grad E_x[r/|y|] - mu_x grad E_x[1/|y|]), by complex step.


@st.composite
def _gspo_examples(draw: st.DrawFn) -> tuple[Any, ...]:
    model = draw(
        sequence_models(min_prompts=1, max_prompts=2, max_tokens=2, min_length=2, max_length=3)
    )
    size = draw(st.integers(2, 3))
    delta = draw(st.sampled_from([0.0, 0.05, 0.3]) | st.floats(0.0, 0.5))
    if delta == 0.0:  # at theta_old even GSPO's tiny published ranges stay unclipped
        low = draw(st.sampled_from([3e-4, 0.2]) | st.floats(1e-3, 0.5))
        high = draw(st.sampled_from([4e-4, 0.28]) | st.floats(1e-3, 0.5))
    else:
        low, high = draw(st.floats(0.01, 0.3)), draw(st.floats(0.01, 0.3))
    seed = draw(st.integers(0, 2**31 - 1))
    return model, size, low, high, delta, seed


_GSPO_BATCHES: dict[str, tuple[SequenceModel, np.ndarray, np.ndarray]] = {}


def _gspo_batch(example: tuple[Any, ...]) -> tuple[SequenceModel, np.ndarray, np.ndarray]:
    """(old model, advantages [X, R], direction u): theta_old = theta + delta u (cached)."""
    model, _, _, _, delta, seed = example
    key = _key(model.theta, [delta, seed])
    if key not in _GSPO_BATCHES:
        if len(_GSPO_BATCHES) > 256:
            _GSPO_BATCHES.clear()
        _GSPO_BATCHES[key] = _draw_gspo_batch(model, delta, seed)
    return _GSPO_BATCHES[key]


def _draw_gspo_batch(
    model: SequenceModel, delta: float, seed: int
) -> tuple[SequenceModel, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(model.theta.shape)
    advantages = rng.standard_normal((model.n_prompts, model.n_responses))
    old = model.with_theta(model.theta + delta * direction)
    return old, advantages, direction


def _flat(values: np.ndarray) -> np.ndarray:
    """[X, R, ...] -> [X * R, ...] (the batch: every response of every prompt)."""
    return values.reshape((values.shape[0] * values.shape[1],) + values.shape[2:])


def _gspo_batch_loss(example: tuple[Any, ...], theta: np.ndarray) -> float:
    model, _, low, high, _, _ = example
    old, advantages, _ = _gspo_batch(example)
    mask = np.broadcast_to(model.responses.mask, (model.n_prompts,) + model.responses.mask.shape)
    return gspo_loss(
        _flat(model.with_theta(theta).token_log_probabilities()),
        _flat(old.token_log_probabilities()),
        _flat(advantages),
        _flat(mask),
        clip_low=low,
        clip_high=high,
    )


def _sequence_ratios(example: tuple[Any, ...]) -> np.ndarray:
    """s [X, R] = exp((log pi_theta(y) - log pi_old(y)) / |y|) from sequence log-probabilities."""
    model = example[0]
    old, _, _ = _gspo_batch(example)
    lengths = (model.responses.tokens >= 0).sum(axis=1)  # |y| from the token table
    return np.exp((model.log_probabilities() - old.log_probabilities()) / lengths)


def _gspo_fd_step(example: tuple[Any, ...]) -> tuple[float, float]:
    """central_difference_step for the batch loss along one logit (see _gspo_rtol)."""
    model = example[0]
    _, advantages, _ = _gspo_batch(example)
    scale = float((_sequence_ratios(example) * np.abs(advantages)).max()) * 1.01
    # |d^3 s / d theta^3| <= s (|m'''| + 3 |m'| |m''| + |m'|^3) <= 2 s for the mean log-ratio
    # m (log-softmax derivatives 1, 1/4, 1/(6 sqrt 3)); the loss is a mean of such terms
    # times |A|. One evaluation: about (X R L) roundings of that size.
    terms = model.n_prompts * model.n_responses * model.max_length
    return central_difference_step(2.0 * scale, 4.0 * EPS * scale * terms)


def _gspo_unclipped_margin(example: tuple[Any, ...]) -> float:
    """Smallest |log s_b - log(1 +- eps)|: the stencil must not cross a clip boundary."""
    _, _, low, high, _, _ = example
    log_s = np.log(_sequence_ratios(example))
    return float(min(np.abs(log_s - np.log1p(high)).min(), np.abs(log_s - np.log1p(-low)).min()))


def _away_from_gspo_kinks(example: tuple[Any, ...]) -> bool:
    # one logit moves every mean log-ratio by at most h (|d log pi / d theta| <= 1)
    return _gspo_unclipped_margin(example) > 10.0 * _gspo_fd_step(example)[0]


gspo_examples = _gspo_examples().filter(_away_from_gspo_kinks)


def _gspo_gradient_by_differences(example: tuple[Any, ...]) -> np.ndarray:
    model = example[0]
    step = _gspo_fd_step(example)[0]
    out = np.zeros(model.theta.shape)
    for index in np.ndindex(model.theta.shape):
        up, down = model.theta.copy(), model.theta.copy()
        up[index] += step
        down[index] -= step
        out[index] = (_gspo_batch_loss(example, up) - _gspo_batch_loss(example, down)) / (
            up[index] - down[index]
        )
    return out


def _gspo_gradient_by_library(example: tuple[Any, ...]) -> np.ndarray:
    model, _, low, high, _, _ = example
    old, advantages, _ = _gspo_batch(example)
    mask = np.broadcast_to(model.responses.mask, (model.n_prompts,) + model.responses.mask.shape)
    slopes = gspo_loss_gradient(
        _flat(model.token_log_probabilities()),
        _flat(old.token_log_probabilities()),
        _flat(advantages),
        _flat(mask),
        clip_low=low,
        clip_high=high,
    )
    return model.weighted_score_sum(slopes.reshape(model.n_prompts, model.n_responses, -1))


def _expected_gspo_gradient_at_old(example: tuple[Any, ...]) -> np.ndarray:
    model, size, low, high, _, _ = example
    X, R, L = model.n_prompts, model.n_responses, model.max_length
    token_log_p = model.token_log_probabilities()
    mask = model.responses.mask

    def statistic(batch: GroupBatch) -> np.ndarray:
        B = batch.responses.shape[0]
        members = batch.responses.ravel()  # [B * G]
        advantages = rloo_advantages(batch.rewards.ravel(), np.repeat(np.arange(B), size))
        # One call on the B groups stacked: gspo_loss averages over its |B| = B G sequences,
        # and a sequence's gradient depends on the batch only through that 1/|B|, so B times
        # the stacked slopes are each group's own (|B| = G) slopes.
        slopes = B * gspo_loss_gradient(
            token_log_p[batch.prompt][members],
            token_log_p[batch.prompt][members].copy(),
            advantages,
            mask[members],
            clip_low=low,
            clip_high=high,
        )
        table = np.zeros((B * size, X, R, L))
        table[np.arange(B * size), batch.prompt, members] = slopes
        out: np.ndarray = table.reshape(B, size, X, R, L).sum(axis=1)
        return out

    return model.weighted_score_sum(expected_over_groups(model, size, statistic))


_GSPO_SIDES: dict[str, np.ndarray] = {}


def gspo_gradients(example: tuple[Any, ...]) -> np.ndarray:
    """lhs: [central differences, gspo_loss_gradient, expected at theta_old], ``[3, X, N, K + 1]``."""
    model = example[0]
    key = _key(model.theta, model.rewards, model.prompt_probabilities, list(example[1:]))
    if key not in _GSPO_SIDES:
        if len(_GSPO_SIDES) > 32:
            _GSPO_SIDES.clear()
        _GSPO_SIDES[key] = np.stack(
            [
                _gspo_gradient_by_differences(example),
                _gspo_gradient_by_library(example),
                _expected_gspo_gradient_at_old(example),
            ]
        )
    return _GSPO_SIDES[key]


def _length_normalised_target(model: SequenceModel, *, normalised: bool = True) -> np.ndarray:
    """-sum_x rho (grad E_x[r/|y|] - mu_x grad E_x[1/|y|]) by complex step (1/|y| -> 1 if not normalised)."""
    lengths = (model.responses.tokens >= 0).sum(axis=1).astype(np.float64)
    inverse = 1.0 / lengths if normalised else np.ones_like(lengths)
    rewards = model.total_rewards()

    def weighted(table: np.ndarray) -> np.ndarray:
        def objective(logits: np.ndarray) -> complex:
            shift = logits.real.max(axis=-1, keepdims=True)
            log_pi = logits - (np.log(np.exp(logits - shift).sum(axis=-1, keepdims=True)) + shift)
            r = model.responses
            n, v = np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)
            log_p = np.where(r.mask[None], log_pi[:, n, v], 0.0).sum(axis=2)
            return complex(model.prompt_probabilities @ (np.exp(log_p) * table).sum(axis=1))

        return complex_step_gradient(objective, model.theta)

    mean_reward = (model.probabilities() * rewards).sum(axis=1)  # mu_x
    # mu_x held fixed: grad of sum_x rho(x) mu_x E_x[1/|y|] is the mu_x-weighted gradient
    return -(weighted(rewards * inverse) - weighted(mean_reward[:, None] * inverse[None, :]))


def gspo_target(
    *, geometric: bool = True, normalised: bool = True
) -> Callable[[tuple[Any, ...]], np.ndarray]:
    """rhs: -(1/|B|) sum_b 1[unclipped] s_b A_b / |y_b| grad log pi(y_b) (twice) and the expected target.

    ``geometric=False``: the arithmetic mean of the token ratios (each token weighted by its own
    ratio rho_t / |y|, clipped by the arithmetic mean); ``normalised=False``: no 1/|y|.
    """

    def rhs(example: tuple[Any, ...]) -> np.ndarray:
        model, _, low, high, _, _ = example
        old, advantages, _ = _gspo_batch(example)
        lengths = (model.responses.tokens >= 0).sum(axis=1).astype(np.float64)
        per_length = 1.0 / lengths if normalised else np.ones_like(lengths)
        batch_size = model.n_prompts * model.n_responses
        if geometric:
            s = _sequence_ratios(example)
            token_weight = np.broadcast_to(s[:, :, None], s.shape + (model.max_length,))
        else:
            token_ratio = np.exp(model.token_log_probabilities() - old.token_log_probabilities())
            token_ratio = np.where(model.responses.mask[None], token_ratio, 0.0)
            s = token_ratio.sum(axis=2) / lengths
            token_weight = token_ratio
        active = ((advantages > 0) & (s <= 1 + high)) | ((advantages < 0) & (s >= 1 - low))
        weights = -(active * advantages * per_length)[:, :, None] * token_weight / batch_size
        if geometric:  # one weight per sequence: the sequence score, no token-level code
            scores = model.response_scores()  # [X, R, X, N, K + 1]
            batch = np.einsum("xr,xr...->...", weights[:, :, 0], scores)
        else:
            batch = model.weighted_score_sum(weights)
        expected = _length_normalised_target(model, normalised=normalised)
        return np.stack([batch, batch, expected])

    return rhs


def _gspo_error_scale(example: tuple[Any, ...]) -> float:
    model = example[0]
    _, advantages, _ = _gspo_batch(example)
    size = float((_sequence_ratios(example) * np.abs(advantages)).max())
    reward = 2.0 * float(np.abs(model.total_rewards()).max(initial=0.0))
    return max(2.0 * model.max_length * max(size, reward), 1e-300)


def _gspo_rtol(example: tuple[Any, ...]) -> float:
    """Rounding of the sums plus the central-difference bound, relative to the error scale."""
    model, size = example[0], example[1]
    groups = count_groups(model.n_responses, size) * model.n_prompts
    _, bound = _gspo_fd_step(example)
    return exact_rtol(1.0, groups * size * model.max_length) + bound / _gspo_error_scale(example)


CLAIMS_GSPO = (
    Claim(
        id="gspo-gradient-at-old",
        title="GSPO's gradient gives every token of a sequence the weight s A / |y|; at "
        "theta_old it is the length-normalised sequence gradient",
        statement=Statement(
            gspo_at_old.start,
            gspo_at_old.conclusion,
            where=(
                r"|y| = 3,\ s = \exp\big(\tfrac{1}{|y|}\sum_t (z_t - w_t)\big),\ z_t = "
                r"\log\pi_\theta(y_t),\ w_t = \log\pi_{\theta_\mathrm{old}}(y_t)"
            ),
            symbol_names={
                z_tok: "z",
                w_tok: "w",
                eps_low: r"\epsilon_\mathrm{low}",
                eps_high: r"\epsilon_\mathrm{high}",
            },
        ),
        assumptions=(
            "Sequence-level advantages A_b (detached), one per response; gspo_loss averages "
            "over the non-empty sequences of the batch (1/|B|); |y| counts EOS.",
            "Symbolic leg: a fully symbolic sequence of three tokens (log-probabilities z_t, "
            "w_t, advantage A, clip range eps_low, eps_high symbols); the other lengths, the "
            "1/|B| and the chain rule to theta are checked by the exact leg.",
            "Exact leg: 1-2 prompts, 1-2 ordinary tokens plus EOS, L = 2-3; the batch of every "
            "response of every prompt with random advantages at theta_old = theta + delta u, "
            "delta in [0, 0.5] (points within 10 central-difference steps of a clip boundary "
            "are not drawn), and the expectation at theta_old over every multiset of G = 2-3 "
            "responses with RLOO advantages.",
        ),
        references=(
            "Zheng, C. et al., *Group Sequence Policy Optimization*, arXiv:2507.18071, 2025, "
            "eq. (5)-(7) (sequence ratio, loss) and eq. (10) (its gradient: every token "
            "weighted by s A / |y|).",
            "Liu, Z. et al., *Understanding R1-Zero-Like Training: A Critical Perspective* (Dr. "
            "GRPO), arXiv:2503.20783, 2025, Sec. 3.1 (the 1/|y| length bias).",
        ),
        summary=(
            "GSPO's geometric-mean ratio makes every token of a response share one weight "
            "s A / |y|, so at theta_old its update is the 1/|y|-normalised sequence gradient: "
            "with RLOO advantages it ascends E[(r - E r)/|y|], a length-reweighted objective, "
            "not J."
        ),
        notes=(
            "The arithmetic mean of the token ratios has the same gradient at theta_old (all "
            "ratios are 1) but weights each token by its own ratio rho_t / |y| away from it; "
            "the exact leg draws delta > 0 to tell them apart. The expected update at "
            "theta_old is that of `grpo-length-normalisation-bias` with RLOO's baseline "
            "instead of the group mean (no (1 - 1/G) factor)."
        ),
        symbolic=SymbolicLeg((gspo_at_old, gspo_token_weight)),
        exact=ExactLeg(
            gspo_examples,
            lhs=gspo_gradients,
            rhs=gspo_target(),
            rhs_reason=(
                "the conclusion for the sequence model needs the sequence scores of every "
                "response and the complex-step gradients of E[r/|y|] and E[1/|y|] (not "
                "lambdifiable from the three-token symbolic instance); the weights are the "
                "conclusions' s A / |y| and A / |y|"
            ),
            rtol=_gspo_rtol,
            error_scale=_gspo_error_scale,
            max_examples=8,
            description=(
                "grad_theta gspo_loss on a batch (central differences of gspo_loss, and "
                "gspo_loss_gradient chained with the token scores) and its expectation at "
                "theta_old over RLOO groups, vs -(1/|B|) sum_b g_b grad log pi(y_b) with "
                "the weight g_b = s_b A_b / |y_b|, from sequence scores, and "
                "-(grad E[r/|y|] - mu grad E[1/|y|]) by complex step"
            ),
        ),
        mutants=(
            Mutant(
                "arithmetic-mean-ratio",
                "s = (1/|y|) sum_t rho_t: each token weighted by its own ratio rho_t A / |y| "
                "(equal at theta_old, wrong away from it)",
                symbolic=SymbolicMutation("gspo-token-weight", GSPO_ARITHMETIC),
                exact=gspo_target(geometric=False),
            ),
            Mutant(
                "missing-one-over-length",
                "the sequence gradient without 1/|y|: -A grad log pi(y), whose expectation "
                "with RLOO is -grad J",
                symbolic=SymbolicMutation("gspo-at-old", -A),
                exact=gspo_target(normalised=False),
            ),
        ),
    ),
)


# ============================================================================ 3. where clipping bites
# ---------------------------------------------------------------------------- symbolic leg
# Variables of the statement: the ratio r = e^u (u = log pi_theta - log pi_old), the advantage A,
# the clip range eps_low, eps_high and the dual clip c. The loss, as ppo_token_loss computes it:
#   l = -max(min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), c min(A, 0)),
# (the dual clip's max(., c A) where A < 0; for A > 0 the max with c min(A, 0) = 0 changes nothing
# because the min is r A > 0 or (1 + eps_high) A > 0 there). Its derivative in u = the
# derivative in log pi_theta. Eight open regions, a decision tree on the signs of A, r - (1 -
# eps_low), r - (1 + eps_high) and r - c, each parametrised by positive distances (omega = r,
# sigma, tau, kappa) so that sympy decides every min and max; the regions cover every point with
# A != 0 off the kinks r = 1 - eps_low, 1 + eps_high, c.
r_clip = sp.Symbol("r", positive=True)
c_clip = sp.Symbol("c", positive=True)
u_clip = sp.Symbol("u", real=True)  # log-ratio, the variable of the derivative
CLIP_VARIABLES = (r_clip, A, eps_low, eps_high, c_clip)


def clip_loss(r: sp.Expr, advantage: sp.Expr, low: sp.Expr, high: sp.Expr, c: sp.Expr) -> sp.Expr:
    r"""$-\max(\min(rA, \mathrm{clip}(r, 1-\epsilon_\mathrm{low}, 1+\epsilon_\mathrm{high})A), c\min(A, 0))$, unevaluated."""
    inner = sp.Min(
        r * advantage,
        sp.Min(sp.Max(r, 1 - low, evaluate=False), 1 + high, evaluate=False) * advantage,
        evaluate=False,
    )
    # min(A, 0) evaluated: once A = +-a is substituted it is 0 or -a, so the dual clip's term
    # c min(A, 0) is a plain product the kink guard can compare
    return -sp.Max(inner, c * sp.Min(advantage, 0), evaluate=False)


def clip_slope_at(
    r: sp.Expr, advantage: sp.Expr, low: sp.Expr, high: sp.Expr, c: sp.Expr
) -> sp.Subs:
    r"""$\partial\ell/\partial u$ at $u = \log r$, $\ell$ as a function of $u$ through $r = e^u$."""
    return sp.Subs(
        sp.Derivative(clip_loss(sp.exp(u_clip), advantage, low, high, c), u_clip),
        u_clip,
        sp.log(r),
    )


omega, sigma, tau, kappa_c = (
    sp.Symbol(n, positive=True) for n in ("omega", "sigma", "tau", "kappa_c")
)
a_abs = sp.Symbol("a", positive=True)
_Ppos, _Pneg = A > 0, A < 0
_above, _below = r_clip > 1 + eps_high, r_clip < 1 - eps_low
_not_above, _not_below = r_clip < 1 + eps_high, r_clip > 1 - eps_low
_dual, _not_dual = r_clip > c_clip, r_clip < c_clip

#: (name, where, region, parametrisation, slope of the loss in u at the parametrised point)
CLIP_REGIONS: tuple[tuple[str, str, Any, dict[Any, sp.Expr], sp.Expr], ...] = (
    (
        "positive-above",
        "A > 0, r > 1 + eps_high: the clipped term (1 + eps_high) A is the min",
        _Ppos & _above,
        {r_clip: 1 + eps_high + sigma, A: a_abs},
        sp.Integer(0),
    ),
    (
        "positive-inside",
        "A > 0, 1 - eps_low < r < 1 + eps_high: clip(r) = r, the min is r A",
        _Ppos & _not_above & _not_below,
        {r_clip: omega, A: a_abs, eps_low: 1 - omega + sigma, eps_high: omega + tau - 1},
        -omega * a_abs,
    ),
    (
        "positive-below",
        "A > 0, r < 1 - eps_low: r A < (1 - eps_low) A, unclipped",
        _Ppos & _below,
        {r_clip: omega, A: a_abs, eps_low: 1 - omega - sigma, eps_high: omega + sigma + tau - 1},
        -omega * a_abs,
    ),
    (
        "negative-below",
        "A < 0, r < 1 - eps_low: the clipped term (1 - eps_low) A is the min, above c A",
        _Pneg & _below,
        {
            r_clip: omega,
            A: -a_abs,
            eps_low: 1 - omega - sigma,
            eps_high: omega + sigma + tau - 1,
            c_clip: omega + sigma + kappa_c,
        },
        sp.Integer(0),
    ),
    (
        "negative-inside",
        "A < 0, 1 - eps_low < r < 1 + eps_high, r < c: unclipped r A",
        _Pneg & _not_below & _not_above & _not_dual,
        {
            r_clip: omega,
            A: -a_abs,
            eps_low: 1 - omega + sigma,
            eps_high: omega + tau - 1,
            c_clip: omega + kappa_c,
        },
        omega * a_abs,
    ),
    (
        "negative-above",
        "A < 0, 1 + eps_high < r < c: r A < (1 + eps_high) A, unclipped",
        _Pneg & _not_below & _above & _not_dual,
        {
            r_clip: omega,
            A: -a_abs,
            eps_low: 1 - omega + sigma,
            eps_high: omega - tau - 1,
            c_clip: omega + kappa_c,
        },
        omega * a_abs,
    ),
    (
        "negative-dual-inside",
        "A < 0, r > c (and r < 1 + eps_high): the dual clip c A is the max",
        _Pneg & _not_below & _not_above & _dual,
        {
            r_clip: omega,
            A: -a_abs,
            eps_low: 1 - omega + sigma,
            eps_high: omega + tau - 1,
            c_clip: omega - kappa_c,
        },
        sp.Integer(0),
    ),
    (
        "negative-dual-above",
        "A < 0, r > c, r > 1 + eps_high: the dual clip c A is the max",
        _Pneg & _not_below & _above & _dual,
        {
            r_clip: omega,
            A: -a_abs,
            eps_low: 1 - omega + sigma,
            eps_high: omega - tau - 1,
            c_clip: omega - kappa_c,
        },
        sp.Integer(0),
    ),
)


def _clip_derivation(name: str, where: str, at: dict[Any, sp.Expr], slope: sp.Expr) -> Derivation:
    values = [at.get(v, v) for v in CLIP_VARIABLES]
    return Derivation(
        f"clip-{name}",
        (
            Step(clip_slope_at(*values), "d loss / d log pi_theta at a point of this region"),
            Step(
                slope,
                f"{where}; on a neighbourhood of the point the loss is what the min/max "
                f"picks, with derivative {sp.sstr(slope)} in log pi_theta",
            ),
        ),
        statement=rf"\partial\ell/\partial\log\pi_\theta = {sp.latex(slope)} \quad ({name})",
    )


clip_analysis = CaseAnalysis(
    "clip",
    sp.Ne(A, 0) & sp.Ne(r_clip, 1 + eps_high) & sp.Ne(r_clip, 1 - eps_low) & sp.Ne(r_clip, c_clip),
    tuple(
        Case(region, _clip_derivation(name, where, at, slope), at)
        for name, where, region, at, slope in CLIP_REGIONS
    ),
)

#: The statement's right-hand side: zero exactly where the clip (or dual clip) binds.
clip_token_slope = sp.Piecewise(
    (0, (A > 0) & (r_clip > 1 + eps_high)),
    (0, (A < 0) & (r_clip < 1 - eps_low)),
    (0, (A < 0) & (r_clip > c_clip)),
    (-r_clip * A, True),
    evaluate=False,
)

# ---------------------------------------------------------------------------- exact leg
# lhs: [central differences of ppo_token_loss in log_probs (each entry depends on its own
#       log-prob only, so one pair of evaluations gives all), ppo_token_loss_gradient], [2, B, T].
# rhs: the statement's piecewise slope, lambdified, at every token (0 at masked positions).


@st.composite
def _clip_examples(draw: st.DrawFn) -> tuple[Any, ...]:
    """[B, T] log-probs, old log-probs, advantages, mask; clip_low/high; dual clip or None.

    Log-ratios are at least 0.01 from every kink (log(1 - eps_low), log(1 + eps_high), log c),
    advantages at least 1e-3 from 0; both signs of A and all regions are drawn.
    """
    rows, columns = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    low = draw(st.sampled_from([0.2, 0.1]) | st.floats(0.01, 0.9))
    high = draw(st.sampled_from([0.28, 0.2]) | st.floats(0.01, 2.0))
    dual_clip = draw(st.sampled_from([None, 3.0]) | st.floats(1.02, 5.0))
    kinks = [np.log1p(-low), np.log1p(high)] + ([] if dual_clip is None else [np.log(dual_clip)])
    size = rows * columns
    log_ratio = np.array(
        draw(
            st.lists(
                st.floats(-3.0, 3.0).filter(lambda v: min(abs(v - k) for k in kinks) >= 0.01),
                min_size=size,
                max_size=size,
            )
        )
    ).reshape(rows, columns)
    old = np.array(draw(st.lists(st.floats(-8.0, 0.0), min_size=size, max_size=size))).reshape(
        rows, columns
    )
    magnitude = np.array(
        draw(st.lists(st.floats(1e-3, 1e3), min_size=size, max_size=size))
    ).reshape(rows, columns)
    sign = np.array(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=size, max_size=size)))
    mask = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size))).reshape(
        rows, columns
    )
    mask[0, 0] = True
    return old + log_ratio, old, magnitude * sign.reshape(rows, columns), mask, low, high, dual_clip


clip_examples = _clip_examples()

#: eps_low = 0.1 < eps_high = 0.3; r = 1.2 (A = 1) is inside [0.9, 1.3] but above 1 + eps_low,
#: r = 0.85 (A = -1) is clipped (below 0.9) but inside [1 - eps_high, 1 + eps_low] = [0.7, 1.1].
CLIP_WITNESS = (
    np.array([[-1.0 + np.log(1.2), -1.0 + np.log(0.85)]]),
    np.array([[-1.0, -1.0]]),
    np.array([[1.0, -1.0]]),
    np.array([[True, True]]),
    0.1,
    0.3,
    None,
)


def _clip_kwargs(example: tuple[Any, ...]) -> dict[str, Any]:
    return {"clip_low": example[4], "clip_high": example[5], "dual_clip": example[6]}


def clip_gradients(example: tuple[Any, ...]) -> np.ndarray:
    """lhs: [central differences of ppo_token_loss, ppo_token_loss_gradient], ``[2, B, T]``."""
    new, old, adv, mask = example[:4]
    kwargs = _clip_kwargs(example)
    by_differences = per_token_central_difference(
        lambda value: ppo_token_loss(value, old, adv, mask, **kwargs), new
    )
    return np.stack([by_differences, ppo_token_loss_gradient(new, old, adv, mask, **kwargs)])


def clip_statement_slope(expression: sp.Expr) -> Callable[[tuple[Any, ...]], np.ndarray]:
    """rhs: ``expression`` (a piecewise slope in r, A, eps_low, eps_high, c) at every token."""
    function = lazy_lambdify(CLIP_VARIABLES, expression)

    def rhs(example: tuple[Any, ...]) -> np.ndarray:
        new, old, adv, mask, low, high, dual_clip = example
        r = np.exp(new - old)
        c = np.inf if dual_clip is None else dual_clip
        slope = np.broadcast_to(
            np.asarray(function(r, adv, low, high, c), dtype=np.float64), r.shape
        )
        out = np.where(mask, slope, 0.0)
        return np.stack([out, out])

    return rhs


def _clip_error_scale(example: tuple[Any, ...]) -> float:
    new, old, adv, mask = example[:4]
    return max(float(np.abs(np.exp(new - old) * adv)[mask].max(initial=0.0)), 1e-300)


def _clip_rtol(example: tuple[Any, ...]) -> float:
    """:func:`token_difference_error` (relative to max |r A|) plus the rounding of one product.

    On the stencil the loss is -A e^{u} or a constant (the step is far smaller than the 0.01
    distance to every kink).
    """
    new = example[0]
    return token_difference_error(float(np.abs(new).max(initial=0.0))) + exact_rtol()


def _clip_mutant(
    id_: str,
    description: str,
    wrong: sp.Expr,
    target: str | None,
    wrong_value: sp.Expr | None = None,
) -> Mutant:
    return Mutant(
        id_,
        description,
        symbolic=None if target is None else SymbolicMutation(f"clip-{target}", wrong_value),
        exact=clip_statement_slope(wrong),
    )


def _piecewise(*zero_where: Any, slope: sp.Expr = -r_clip * A) -> sp.Expr:
    return sp.Piecewise(*((0, cond) for cond in zero_where), (slope, True), evaluate=False)


CLAIMS_CLIP = (
    Claim(
        id="ppo-clip-zeroes-gradient",
        title="The token loss's gradient is -rho A inside the clip region and exactly zero where "
        "the (asymmetric or dual) clip binds",
        statement=Statement(
            clip_slope_at(*CLIP_VARIABLES),
            clip_token_slope,
            derivation="clip",
            where=(
                r"r = \pi_\theta/\pi_{\theta_\mathrm{old}} = e^u,\ A \ne 0,\ r \ne 1 - "
                r"\epsilon_\mathrm{low},\ 1 + \epsilon_\mathrm{high},\ c;\ c > 1"
            ),
            symbol_names={eps_low: r"\epsilon_\mathrm{low}", eps_high: r"\epsilon_\mathrm{high}"},
        ),
        assumptions=(
            "The per-token loss of ppo_token_loss: -min(r A, clip(r, 1 - eps_low, 1 + eps_high) "
            "A), and with a dual clip c > 1 its max with c A where A < 0; r = exp(log pi_theta - "
            "log pi_old); old log-probs and advantages detached; eps_low, eps_high > 0.",
            "Away from the kinks r = 1 - eps_low, 1 + eps_high, c (no derivative there) and "
            "A != 0. Without a dual clip, c = infinity (the dual regions are empty).",
            "Symbolic leg: eight open regions (a decision tree on the signs of A, r - (1 - "
            "eps_low), r - (1 + eps_high), r - c), checked to cover that domain, each with a "
            "parametrisation by positive distances; every quantity a symbol.",
            "Exact leg: [B, T] arrays with B = 1-4, T = 1-6, log-ratios in [-3, 3] at least 0.01 "
            "from every kink, old log-probs in [-8, 0], |A| in [1e-3, 1e3] of both signs, "
            "random masks, eps_low in (0.01, 0.9), eps_high in (0.01, 2), dual clip none or in "
            "(1.02, 5).",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, "
            "2017, eq. (7) and Fig. 1.",
            "Yu, Q. et al., *DAPO: An Open-Source LLM Reinforcement Learning System at Scale*, "
            "arXiv:2503.14476, 2025, eq. (8)-(10) (decoupled eps_low, eps_high: clip-higher).",
            "Ye, D. et al., *Mastering Complex Control in MOBA Games with Deep Reinforcement "
            "Learning*, AAAI 2020, Sec. 3 (dual clip: max(., c A) for A < 0).",
        ),
        summary=(
            "A token's PPO/DAPO gradient -rho A grad log pi switches off exactly when its ratio "
            "has passed 1 + eps_high with A > 0, 1 - eps_low with A < 0, or the dual clip c with "
            "A < 0; everywhere else, including ratios far on the side A disfavours below c, it "
            "is the full unclipped gradient."
        ),
        notes=(
            "The scalar version with a symmetric clip is `ppo-clip-gradient` (derivative in r); "
            "this claim is the token-level loss of `rlmath.llm_reference.ppo_token_loss` with "
            "DAPO's asymmetric range and the dual clip, differentiated in log pi_theta (so the "
            "unclipped slope is -rho A, not -A), and checks `ppo_token_loss_gradient` against "
            "central differences of `ppo_token_loss`. The dual clip only acts on A < 0: with "
            "c < 1 + eps_high it zeroes the gradient of ratios in (c, 1 + eps_high) too."
        ),
        symbolic=SymbolicLeg((), cases=(clip_analysis,)),
        exact=ExactLeg(
            clip_examples,
            lhs=clip_gradients,
            rhs=clip_statement_slope(clip_token_slope),
            rhs_reason=(
                "a case analysis has one conclusion per region: the rhs is the statement's "
                "piecewise slope, lambdified, which the symbolic leg ties to every region's "
                "conclusion (with that region's parametrisation substituted)"
            ),
            rtol=_clip_rtol,
            error_scale=_clip_error_scale,
            max_examples=40,
            witnesses=(CLIP_WITNESS,),
            witness_reason=(
                "an asymmetric range (eps_low = 0.1, eps_high = 0.3) with r = 1.2 for A > 0 and "
                "r = 0.85 for A < 0: both ratios lie between the two candidate bounds, so "
                "exchanging eps_low and eps_high moves each across its clip"
            ),
            description=(
                "central differences of ppo_token_loss in log_probs (step inside the smooth "
                "piece) and ppo_token_loss_gradient, vs the piecewise slope (0 where the clip "
                "binds, -rho A elsewhere) at every token"
            ),
        ),
        mutants=(
            _clip_mutant(
                "max-instead-of-min",
                "max(r A, clip(r) A): the gradient survives above 1 + eps_high for A > 0 and "
                "vanishes below 1 - eps_low instead",
                _piecewise((A > 0) & (r_clip < 1 - eps_low), (A < 0) & (r_clip > 1 + eps_high)),
                "positive-above",
                -(1 + eps_high + sigma) * a_abs,
            ),
            _clip_mutant(
                "sign-of-advantage-ignored",
                "the gradient zeroed whenever r leaves [1 - eps_low, 1 + eps_high], whatever the "
                "sign of A (as if the loss were -clip(r) A)",
                _piecewise(
                    r_clip > 1 + eps_high, r_clip < 1 - eps_low, (A < 0) & (r_clip > c_clip)
                ),
                "negative-above",
                sp.Integer(0),
            ),
            _clip_mutant(
                "dual-clip-ignored",
                "no zero above the dual clip c for A < 0",
                _piecewise((A > 0) & (r_clip > 1 + eps_high), (A < 0) & (r_clip < 1 - eps_low)),
                "negative-dual-inside",
                omega * a_abs,
            ),
            _clip_mutant(
                "ratio-factor-dropped",
                "the unclipped gradient in log pi taken as -A (the derivative in r, without "
                "d r / d log pi = r)",
                _piecewise(
                    (A > 0) & (r_clip > 1 + eps_high),
                    (A < 0) & (r_clip < 1 - eps_low),
                    (A < 0) & (r_clip > c_clip),
                    slope=-A,
                ),
                "positive-inside",
                -a_abs,
            ),
            _clip_mutant(
                "clip-bounds-swapped",
                "eps_low and eps_high exchanged (the upper bound 1 + eps_low, the lower 1 - "
                "eps_high); a statement about the pair, so no single region's value",
                _piecewise(
                    (A > 0) & (r_clip > 1 + eps_low),
                    (A < 0) & (r_clip < 1 - eps_high),
                    (A < 0) & (r_clip > c_clip),
                ),
                None,
            ),
        ),
    ),
)


# ============================================================================ 4. accumulation
# ---------------------------------------------------------------------------- symbolic leg
# K micro-batches; micro-batch k has token-loss sum S_k and N_k >= 1 response tokens; the
# global count is N (= sum_k N_k, which the algebra never needs: every identity below holds
# for any N > 0, and the exact leg supplies the true global count).
n_micro = sp.Symbol("K", integer=True, positive=True)
k_idx = sp.Idx("k")
loss_sum = sp.IndexedBase("S", real=True)
count = sp.IndexedBase("N", positive=True)  # N_k
total_count = sp.Symbol("N_total", positive=True)
equal_count = sp.Symbol("M", positive=True)


def over_micro_batches(term: sp.Expr) -> sp.Expr:
    r"""$\sum_{k=0}^{K-1}$ term (unevaluated)."""
    return IndexSum(term, (k_idx, 0, n_micro - 1))


S_k, N_k = loss_sum[k_idx], count[k_idx]
micro_mean = S_k / N_k  # token mean of micro-batch k
global_mean = over_micro_batches(S_k) / total_count

accumulation = Derivation(
    "accumulation",
    row_steps(
        (
            (
                sp.Add(
                    sp.Mul(1 / n_micro, over_micro_batches(micro_mean), evaluate=False),
                    -global_mean,
                    evaluate=False,
                ),
                "micro-batch token means averaged over the K accumulation steps, minus the "
                "global token mean",
            ),
            (
                sp.Add(
                    over_micro_batches(S_k / (n_micro * N_k)),
                    -over_micro_batches(sp.Mul(N_k / total_count, micro_mean, evaluate=False)),
                    evaluate=False,
                ),
                "linearity; S_k / N = (N_k / N)(S_k / N_k) with N_k > 0",
            ),
            (
                over_micro_batches(
                    sp.Mul(
                        sp.Add(1 / n_micro, -N_k / total_count, evaluate=False),
                        micro_mean,
                        evaluate=False,
                    )
                ),
                "collect the two sums term by term: each micro-batch mean is weighted by "
                "1/K instead of its token share N_k / N",
            ),
        ),
        (
            (
                sp.Add(over_micro_batches(S_k / total_count), -global_mean, evaluate=False),
                "the fix: each micro-batch's token sum divided by the global count N, summed "
                "over micro-batches, minus the global token mean",
            ),
            (
                sp.Add(
                    sp.Mul(1 / total_count, over_micro_batches(S_k), evaluate=False),
                    -global_mean,
                    evaluate=False,
                ),
                "linearity: the constant 1/N leaves the sum",
            ),
            (sp.Integer(0), "the two terms are the same number"),
        ),
    ),
    statement=(
        r"\frac1K\sum_k \frac{S_k}{N_k} - \frac{\sum_k S_k}{N} = \sum_k \Big(\frac1K - "
        r"\frac{N_k}{N}\Big)\frac{S_k}{N_k}, \qquad \sum_k \frac{S_k}{N} - \frac{\sum_k S_k}{N} = 0"
    ),
)


def _equal_share() -> sp.Expr:
    """N_k / N with N_k = M and N = K M, written unevaluated."""
    return sp.Mul(
        equal_count,
        sp.Pow(sp.Mul(n_micro, equal_count, evaluate=False), -1, evaluate=False),
        evaluate=False,
    )


equal_counts = Derivation(
    "equal-counts",
    (
        Step(
            over_micro_batches(
                sp.Mul(
                    sp.Add(1 / n_micro, -_equal_share(), evaluate=False),
                    loss_sum[k_idx] / equal_count,
                    evaluate=False,
                )
            ),
            "the difference of 'accumulation' with every N_k = M, so N = K M",
        ),
        Step(
            over_micro_batches(
                sp.Mul(
                    sp.Add(1 / n_micro, -1 / n_micro, evaluate=False),
                    loss_sum[k_idx] / equal_count,
                    evaluate=False,
                )
            ),
            "M / (K M) = 1/K: equal token counts give every micro-batch the share 1/K",
        ),
        Step(sp.Integer(0), "every weight 1/K - 1/K is 0"),
    ),
    statement=r"N_k = M \ \forall k \implies \frac1K\sum_k \frac{S_k}{N_k} = \frac{\sum_k S_k}{N}",
)

# ---------------------------------------------------------------------------- exact leg
# lhs: [mean_k aggregate_loss(micro-batch k, "token-mean") - aggregate_loss(batch, "token-mean"),
#       accumulated_token_mean(micro-batches) - aggregate_loss(batch, "token-mean")], with the
#       batch = the micro-batches padded to a common length and stacked (rlmath.llm_reference).
# rhs: the lambdified conclusion, with S_k, N_k and N counted by a direct loop over the entries
#      (math.fsum), not by the library.


@st.composite
def _micro_batch_splits(draw: st.DrawFn) -> list[tuple[np.ndarray, np.ndarray]]:
    """K = 1..5 micro-batches ([B_k, T_k] losses, NaN at padding; masks with >= 1 token each)."""
    micro = []
    for _ in range(draw(st.integers(1, 5))):
        rows, columns = draw(st.integers(1, 4)), draw(st.integers(1, 6))
        mask = np.array(
            draw(st.lists(st.booleans(), min_size=rows * columns, max_size=rows * columns))
        ).reshape(rows, columns)
        if not mask.any():
            mask[draw(st.integers(0, rows - 1)), 0] = True
        values = np.array(
            draw(
                st.lists(
                    st.floats(-10.0, 10.0, allow_nan=False),
                    min_size=rows * columns,
                    max_size=rows * columns,
                )
            )
        ).reshape(rows, columns)
        micro.append((np.where(mask, values, np.nan), mask))
    return micro


micro_batch_splits = _micro_batch_splits()


def _stacked(micro: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The full batch: every micro-batch padded (NaN losses, False mask) to the longest T_k."""
    width = max(loss.shape[1] for loss, _ in micro)
    losses = [
        np.pad(loss, ((0, 0), (0, width - loss.shape[1])), constant_values=np.nan)
        for loss, _ in micro
    ]
    masks = [np.pad(m, ((0, 0), (0, width - m.shape[1])), constant_values=False) for _, m in micro]
    return np.vstack(losses), np.vstack(masks)


def accumulation_sides(micro: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """lhs, from rlmath.llm_reference: [[averaged micro means - global], [fix - global]]."""
    losses, mask = _stacked(micro)
    global_mean = aggregate_loss(losses, mask, "token-mean")
    averaged = float(np.mean([aggregate_loss(loss, m, "token-mean") for loss, m in micro]))
    fixed = accumulated_token_mean(micro)
    return np.array([[averaged - global_mean], [fixed - global_mean]])


def _counts(micro: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, int]:
    """S_k, N_k and N by a loop over the entries."""
    sums, counts = [], []
    for loss, mask in micro:
        entries = [float(v) for v, m in zip(loss.ravel(), mask.ravel(), strict=True) if m]
        sums.append(math.fsum(entries))
        counts.append(len(entries))
    return np.array(sums), np.array(counts, dtype=np.float64), int(sum(counts))


def accumulation_arguments(micro: list[tuple[np.ndarray, np.ndarray]]) -> tuple[Any, ...]:
    """Values of (S, N_k, N_total, K)."""
    sums, counts, total = _counts(micro)
    return sums, counts, float(total), len(micro)


def _accumulation_scale(micro: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The size of the terms that cancel: the largest |loss| (every mean is bounded by it)."""
    return max(max(float(np.nanmax(np.abs(loss))) for loss, _ in micro), 1e-300)


def _accumulation_rtol(micro: list[tuple[np.ndarray, np.ndarray]]) -> float:
    _, _, total = _counts(micro)
    return exact_rtol(1.0, total + len(micro))


def _row(first: sp.Expr, second: sp.Expr | None = None) -> sp.Matrix:
    """The column (bias row, fix row); the fix row defaults to its true value 0."""
    return sp.Matrix([first, sp.Integer(0) if second is None else second])


CLAIMS_ACCUMULATION = (
    Claim(
        id="gradient-accumulation-normalisation",
        title="Averaging micro-batch token means is not the token mean; dividing by the global "
        "token count is",
        statement=Statement(
            accumulation.start,
            accumulation.conclusion,
            where=(
                r"S_k = \sum_{b,t} m^{(k)}_{b,t}\ell^{(k)}_{b,t},\ N_k = \sum_{b,t} m^{(k)}_{b,t}"
                r" \ge 1,\ N_\mathrm{total} = \sum_k N_k"
            ),
            symbol_names={total_count: r"N_\mathrm{total}"},
        ),
        assumptions=(
            "K >= 1 micro-batches of one optimiser step, each with at least one response token "
            "(a token mean of an empty micro-batch is undefined); each micro-batch padded to "
            "its own length (the stacked batch pads to the longest).",
            "The losses are any per-token values: the identities are linear in them, so they "
            "hold for the gradients (the per-token loss gradients in place of the losses) as "
            "well as for the loss values.",
            "Symbolic leg: any K (a symbol) and any sums S_k, counts N_k > 0 and N > 0; the "
            "equal-count corollary with N_k = M, N = K M.",
            "Exact leg: K = 1-5 micro-batches of 1-4 rows and 1-6 positions, random masks and "
            "losses in [-10, 10], NaN at masked positions.",
        ),
        references=(
            "Hugging Face, *Fixing Gradient Accumulation*, blog post, 16 Oct 2024 (Unsloth and "
            "transformers 4.46: divide by the total number of non-padding tokens across the "
            "accumulation steps).",
            "Yu, Q. et al., *DAPO: An Open-Source LLM Reinforcement Learning System at Scale*, "
            "arXiv:2503.14476, 2025, Sec. 3.3 (token-level loss over the whole batch).",
            "Liu, Z. et al., *Understanding R1-Zero-Like Training: A Critical Perspective* (Dr. "
            "GRPO), arXiv:2503.20783, 2025, Sec. 3.1 (normalisers that depend on the batch).",
        ),
        summary=(
            "With gradient accumulation, 'token-mean per micro-batch, then average' weights each "
            "micro-batch by 1/K instead of its token share N_k/N, so tokens in short "
            "micro-batches count more; summing each micro-batch's token losses and dividing by "
            "the global token count of the step is exactly the full-batch token mean."
        ),
        notes=(
            "The two agree for every loss only when all micro-batches have the same number of "
            "response tokens (derivation equal-counts), which padding to a common length does "
            "not give: the mask, not the padded shape, counts. The same weights multiply the "
            "per-token gradients, so the accumulated gradient has the same error."
        ),
        symbolic=SymbolicLeg((accumulation, equal_counts)),
        exact=ExactLeg(
            micro_batch_splits,
            lhs=accumulation_sides,
            symbols=(loss_sum, count, total_count, n_micro),
            arguments=accumulation_arguments,
            rtol=_accumulation_rtol,
            error_scale=_accumulation_scale,
            max_examples=25,
            description=(
                "mean over micro-batches of aggregate_loss(token-mean) and "
                "accumulated_token_mean, each minus aggregate_loss(token-mean) of the stacked "
                "batch, vs the lambdified differences with S_k, N_k, N counted by a loop"
            ),
        ),
        mutants=(
            Mutant(
                "averaged-means-exact",
                "the average of the micro-batch token means is the global token mean (local "
                "counts harmless)",
                symbolic=SymbolicMutation("accumulation", _row(sp.Integer(0))),
            ),
            Mutant(
                "share-and-one-over-k-swapped",
                "the difference is sum_k (N_k / N - 1/K) mean_k (the sign of the weights flipped)",
                symbolic=SymbolicMutation(
                    "accumulation",
                    _row(over_micro_batches((N_k / total_count - 1 / n_micro) * micro_mean)),
                ),
            ),
            Mutant(
                "difference-on-sums",
                "the difference is sum_k (1/K - N_k / N) S_k (the micro-batch sums, not means)",
                symbolic=SymbolicMutation(
                    "accumulation",
                    _row(over_micro_batches((1 / n_micro - N_k / total_count) * S_k)),
                ),
            ),
            Mutant(
                "global-count-fix-still-biased",
                "dividing each micro-batch sum by the global count still leaves the averaging "
                "bias sum_k (1/K - N_k / N) mean_k",
                symbolic=SymbolicMutation(
                    "accumulation",
                    _row(
                        over_micro_batches((1 / n_micro - N_k / total_count) * micro_mean),
                        over_micro_batches((1 / n_micro - N_k / total_count) * micro_mean),
                    ),
                ),
            ),
        ),
    ),
)

CLAIMS = (*CLAIMS_PPO, *CLAIMS_GSPO, *CLAIMS_CLIP, *CLAIMS_ACCUMULATION)
