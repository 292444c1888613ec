r"""The sequence-level policy gradient of an autoregressive policy is a sum of token scores.

Main statement. For a tabular autoregressive policy $\pi_\theta(y \mid x) = \prod_{t=1}^{|y|}
\pi_\theta(y_t \mid x, y_{<t})$ over responses that end at EOS or are truncated at length $L$
(:mod:`rlmath.sequence_model`), with a sequence reward $r(x, y)$ and per-token rewards
$r_t = r_{\mathrm{tok}}(x, y_{<t}, y_t)$, $R(x, y) = r(x, y) + \sum_t r_t$,

$$ \nabla_\theta\, \mathbb E_{x \sim \rho}\, \mathbb E_{y \sim \pi_\theta(\cdot|x)}[R(x, y)]
   = \mathbb E_{x}\, \mathbb E_{y}\Big[\sum_{t=1}^{|y|}
     \nabla_\theta \log\pi_\theta(y_t \mid x, y_{<t})
     \Big(r(x, y) + \sum_{t' \ge t} r_{t'}\Big)\Big]. $$

The score of **every** token, EOS included, carries the reward to go from that token on
(causality: rewards earned before token $t$ drop out).

Conventions. Logits ``theta[x, n, v]``, one vector per (prompt, prefix) node; EOS is a token
of the response (its score counts); truncation at $L$ appends no EOS. The objective is
maximised (no loss sign). The sequence reward $r(x, y)$ is received with the last token, so it
belongs to every token's reward to go. Weighting each score by the *total* reward $R(x, y)$,
past rewards included, is also correct (step "the score of the product is the sum of the
token scores" below): the two differ by terms of mean zero, so that form is not a mutant.

Proof sketch. Differentiate the finite sum over responses term by term;
$\nabla\pi = \pi \nabla\log\pi$; the log of the autoregressive product is the sum of the
token log-probabilities; a reward $r_{t'}$ with $t' < t$ is fixed given the prefix $y_{<t}$,
and the score of $y_t$ has mean zero under $\pi_\theta(\cdot \mid x, y_{<t})$, so those terms
vanish.

References. Williams, R. J., "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8, 1992 (REINFORCE);
Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed., 2018,
Sec. 13.3 (reward to go, eq. 13.8); Ahmadian, A. et al., "Back to Basics: Revisiting
REINFORCE Style Optimization for Learning from Human Feedback in LLMs", ACL 2024, eq. (3)
(the whole response as one action, sequence-level REINFORCE);
Shao, Z. et al., "DeepSeekMath", 2024, Sec. 4.1 (token-level scores in GRPO).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

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
)
from rlmath.sequence_model import SequenceModel
from rlmath.testing import sequence_models
from rlmath.tolerances import exact_rtol

# ============================================================================ symbolic instance
# A fully symbolic instance: one prompt, K = 1 ordinary token (id 0) plus EOS (id 1), L = 2.
# Nodes: 0 = the empty prefix, 1 = the prefix (0). Responses, as (node, token) pairs:
# (EOS), (0, EOS), (0, 0) truncated. Every logit, token reward and sequence reward is a symbol.
theta = sp.IndexedBase("theta", real=True)
u = sp.IndexedBase("u", real=True)  # token rewards u[n, v]
f = sp.IndexedBase("f", real=True)  # sequence rewards f[i]
EOS = 1
RESPONSES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, EOS),),
    ((0, 0), (1, EOS)),
    ((0, 0), (1, 0)),
)
LOGITS = tuple(theta[n, v] for n in (0, 1) for v in (0, EOS))


def pi(n: int, v: int) -> sp.Expr:
    """Softmax next-token probability at node n (unevaluated quotient)."""
    return sp.exp(theta[n, v]) / (sp.exp(theta[n, 0]) + sp.exp(theta[n, EOS]))


def sequence_probability(i: int) -> sp.Expr:
    """pi(y_i) = product of the token probabilities (unevaluated)."""
    factors = [pi(n, v) for n, v in RESPONSES[i]]
    return factors[0] if len(factors) == 1 else sp.Mul(*factors, evaluate=False)


def total_reward(i: int) -> sp.Expr:
    return sp.Add(f[i], *(u[n, v] for n, v in RESPONSES[i]), evaluate=False)


def reward_to_go(i: int, t: int) -> sp.Expr:
    """f[i] plus the token rewards from position t on (the sequence reward comes at the end)."""
    return sp.Add(f[i], *(u[n, v] for n, v in RESPONSES[i][t:]), evaluate=False)


def score(n: int, v: int, logit: sp.Expr) -> sp.Expr:
    """d log pi(v | n) / d logit = 1[logit = theta[n, v]] - pi(w | n) if logit = theta[n, w]."""
    m, w = logit.indices
    if m != n:
        return sp.Integer(0)
    return sp.Integer(int(w == v)) - pi(n, int(w))


def over_responses(term: Any) -> sp.Expr:
    return sp.Add(*(term(i) for i in range(len(RESPONSES))), evaluate=False)


def gradient(entry: Any) -> sp.Matrix:
    """The column of partial derivatives, one entry per logit."""
    return sp.Matrix([entry(logit) for logit in LOGITS])


def causal_form(weight: Any, tokens: Any = None) -> sp.Matrix:
    """sum_i pi(y_i) sum_t score_t(y_i) weight(i, t), over the tokens ``tokens(i)``."""
    tokens = tokens or (lambda i: range(len(RESPONSES[i])))

    def entry(logit: sp.Expr) -> sp.Expr:
        return over_responses(
            lambda i: sp.Mul(
                sequence_probability(i),
                sp.Add(
                    *(
                        sp.Mul(
                            score(RESPONSES[i][t][0], RESPONSES[i][t][1], logit),
                            weight(i, t),
                            evaluate=False,
                        )
                        for t in tokens(i)
                    ),
                    evaluate=False,
                ),
                evaluate=False,
            )
        )

    return gradient(entry)


objective = over_responses(
    lambda i: sp.Mul(sequence_probability(i), total_reward(i), evaluate=False)
)
sequence_policy_gradient = Derivation(
    "sequence-policy-gradient",
    (
        Step(
            gradient(lambda logit: sp.Derivative(objective, logit)),
            "the gradient of J = sum_y pi(y) R(y), one entry per logit",
        ),
        Step(
            gradient(
                lambda logit: over_responses(
                    lambda i: total_reward(i) * sp.Derivative(sequence_probability(i), logit)
                )
            ),
            "differentiate the finite sum term by term; rewards do not depend on theta",
        ),
        Step(
            gradient(
                lambda logit: over_responses(
                    lambda i: (
                        total_reward(i)
                        * sequence_probability(i)
                        * sp.Derivative(sp.log(sequence_probability(i)), logit)
                    )
                )
            ),
            "d pi = pi d log pi (pi > 0)",
        ),
        Step(
            gradient(
                lambda logit: over_responses(
                    lambda i: (
                        total_reward(i)
                        * sequence_probability(i)
                        * sp.Add(
                            *(sp.Derivative(sp.log(pi(n, v)), logit) for n, v in RESPONSES[i]),
                            evaluate=False,
                        )
                    )
                )
            ),
            "the log of the autoregressive product is the sum of the token log-probabilities",
        ),
        Step(
            causal_form(lambda i, t: total_reward(i)),
            "the score of the product is the sum of the token scores 1[v = w] - pi(w | n), "
            "each weighted by the total reward (also a correct estimator's form)",
        ),
        Step(
            causal_form(reward_to_go),
            "causality: rewards before token t are fixed given its prefix, and the token's "
            "score has mean zero under pi(. | prefix), so they drop out",
        ),
    ),
    statement=(
        r"\nabla_\theta \mathbb E_{y}[R(y)] = \mathbb E_y\big[\sum_t \nabla\log\pi(y_t|y_{<t})"
        r"\,(r(y) + \sum_{t' \ge t} r_{t'})\big]"
    ),
)

EOS_DROPPED = causal_form(
    reward_to_go, tokens=lambda i: [t for t, (_, v) in enumerate(RESPONSES[i]) if v != EOS]
)
IMMEDIATE_REWARD = causal_form(
    lambda i, t: u[RESPONSES[i][t]] + f[i] if t == len(RESPONSES[i]) - 1 else u[RESPONSES[i][t]]
)


# ============================================================================ exact leg
# lhs: complex-step derivatives of J, where J is computed by backward induction over the
# prefix tree (values of the nodes of depth L-1, then L-2, ..., then the roots), with complex
# logits: no use of the enumeration of responses or of SequenceModel.weighted_score_sum.
# rhs: the model's enumeration (every response, its probability and per-token scores) with
# per-token weights rho(x) pi(y|x) (r(x, y) + sum_{t' >= t} r_{t'}).
examples = sequence_models(
    min_prompts=2, max_prompts=2, min_length=2, max_length=3, max_tokens=3, token_rewards=True
)


def _objective_by_backward_induction(model: SequenceModel, logits: np.ndarray) -> complex:
    K, L, N = model.n_tokens, model.max_length, model.n_nodes
    shift = logits.real.max(axis=-1, keepdims=True)
    e = np.exp(logits - shift)
    p = e / e.sum(axis=-1, keepdims=True)
    X = model.n_prompts
    value_below: Any = None
    for d in range(L - 1, -1, -1):
        offset = sum(K**j for j in range(d))
        nodes = offset + np.arange(K**d)
        here = p[:, nodes, :]  # [X, K^d, K + 1]
        eos_value = model.token_rewards[:, nodes, K] + model.rewards[:, nodes]  # response n
        if d == L - 1:  # ordinary tokens complete truncated responses N + code
            below = model.rewards[:, N:].reshape(X, K**d, K)
        else:
            below = value_below.reshape(X, K**d, K)
        continuation = model.token_rewards[:, nodes, :K] + below
        value_below = here[..., K] * eos_value + (here[..., :K] * continuation).sum(axis=-1)
    return complex(model.prompt_probabilities @ value_below[:, 0])


def complex_step_objective_gradient(model: SequenceModel) -> np.ndarray:
    return complex_step_gradient(lambda z: _objective_by_backward_induction(model, z), model.theta)


def _token_reward_table(model: SequenceModel) -> np.ndarray:
    r = model.responses
    gathered = model.token_rewards[:, np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)]
    return np.where(r.mask[None], gathered, 0.0)


def _reward_to_go(model: SequenceModel) -> np.ndarray:
    """[X, R, L]: r(x, y) + sum_{t' >= t} r_{t'} (0 after the end)."""
    token_r = _token_reward_table(model)
    to_go = np.flip(np.cumsum(np.flip(token_r, axis=2), axis=2), axis=2)
    return np.where(model.responses.mask[None], to_go + model.rewards[:, :, None], 0.0)


def _sequence_weights(model: SequenceModel, probabilities: np.ndarray | None = None) -> np.ndarray:
    p = model.probabilities() if probabilities is None else probabilities
    return model.prompt_probabilities[:, None, None] * p[:, :, None]  # type: ignore[no-any-return]


def causal_score_sum(model: SequenceModel) -> np.ndarray:
    return model.weighted_score_sum(_sequence_weights(model) * _reward_to_go(model))


def eos_score_dropped(model: SequenceModel) -> np.ndarray:
    keep = model.responses.tokens != model.eos
    return model.weighted_score_sum(_sequence_weights(model) * _reward_to_go(model) * keep[None])


def immediate_reward_only(model: SequenceModel) -> np.ndarray:
    r = model.responses
    last = np.arange(model.max_length)[None, :] == (r.lengths[:, None] - 1)
    immediate = _token_reward_table(model) + model.rewards[:, :, None] * last[None]
    return model.weighted_score_sum(_sequence_weights(model) * immediate)


def prompt_marginal(model: SequenceModel) -> np.ndarray:
    """pi(y | x) replaced by the prompt-marginal sum_x' rho(x') pi(y | x') in the weights."""
    marginal = model.prompt_probabilities @ model.probabilities()
    weights = _sequence_weights(model, np.broadcast_to(marginal, model.rewards.shape))
    return model.weighted_score_sum(weights * _reward_to_go(model))


def _error_scale(model: SequenceModel) -> float:
    """sum_x rho sum_y pi |R| 2 |y|: the size of the terms both sides accumulate."""
    terms = (
        model.probabilities()
        * (np.abs(model.rewards) + np.abs(_token_reward_table(model)).sum(axis=2))
        * 2
        * model.responses.lengths
    )
    return max(float(model.prompt_probabilities @ terms.sum(axis=1)), 1e-300)


def _rtol(model: SequenceModel) -> float:
    return exact_rtol(1.0, model.n_responses * model.max_length)


CLAIMS = (
    Claim(
        id="llm-sequence-policy-gradient",
        title="The sequence-level policy gradient is a sum of token scores times the reward to go",
        statement=Statement(
            sequence_policy_gradient.start,
            sequence_policy_gradient.conclusion,
            where=(
                r"\text{one prompt, tokens } \{0, \mathrm{EOS}=1\},\ L = 2;\ "
                r"\theta_{n,v} \text{ logits at node } n,\ u_{n,v} \text{ token rewards},\ "
                r"f_i \text{ sequence rewards of } (\mathrm{EOS}), (0, \mathrm{EOS}), (0, 0)"
            ),
            symbol_names={theta: r"\theta", u: "u", f: "f"},
        ),
        assumptions=(
            "Tabular autoregressive softmax policy: one free logit vector per (prompt, prefix) "
            "node; responses end at EOS (EOS is a response token) or are truncated at L.",
            "Rewards r(x, y) and r_tok(x, prefix, token) do not depend on theta; each token "
            "reward depends only on the prefix and the token (it is causal).",
            "Symbolic leg: a fully symbolic small instance (one prompt, one ordinary token plus "
            "EOS, L = 2: three responses, four logits, four token rewards and three sequence "
            "rewards, all symbols), every entry of the gradient.",
            "Exact leg: 2 prompts, 1-3 ordinary tokens plus EOS, L = 2-3 (up to 40 responses "
            "per prompt), random logits, sequence and token rewards, prompt probabilities.",
        ),
        references=(
            "Williams, R. J., *Simple statistical gradient-following algorithms for "
            "connectionist reinforcement learning*, Machine Learning 8, 1992.",
            "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd "
            "ed., 2018, Sec. 13.3, eq. (13.8).",
            "Ahmadian, A. et al., *Back to Basics: Revisiting REINFORCE Style Optimization for "
            "Learning from Human Feedback in LLMs*, ACL 2024, eq. (3).",
        ),
        summary=(
            "In LLM policy-gradient code, sum the log-prob gradients of every response token, "
            "EOS included, and weight each by the reward still to come; leaving EOS out of the "
            "response mask biases the gradient."
        ),
        symbolic=SymbolicLeg((sequence_policy_gradient,)),
        exact=ExactLeg(
            examples,
            lhs=complex_step_objective_gradient,
            rhs=causal_score_sum,
            rhs_reason=(
                "the symbolic leg proves the identity on a small symbolic instance; the exact "
                "leg checks it at every size drawn through rlmath.sequence_model's enumeration "
                "of responses and SequenceModel.weighted_score_sum (the library code), which "
                "a lambdified four-logit formula would not exercise"
            ),
            rtol=_rtol,
            error_scale=_error_scale,
            max_examples=25,
            description=(
                "complex-step derivatives of J computed by backward induction over the prefix "
                "tree vs sum over every enumerated response of rho(x) pi(y|x) sum_t "
                "score_t (r(x, y) + sum_{t' >= t} r_t') (SequenceModel.weighted_score_sum)"
            ),
        ),
        mutants=(
            Mutant(
                "eos-score-dropped",
                "the EOS token's score left out (EOS masked out of the response mask)",
                symbolic=SymbolicMutation("sequence-policy-gradient", EOS_DROPPED),
                exact=eos_score_dropped,
            ),
            Mutant(
                "immediate-reward-only",
                "each token's score weighted by its own reward only (future rewards and, "
                "before the last token, the sequence reward dropped)",
                symbolic=SymbolicMutation("sequence-policy-gradient", IMMEDIATE_REWARD),
                exact=immediate_reward_only,
            ),
            Mutant(
                "prompt-marginal",
                "responses weighted by the prompt-marginal sum_x' rho(x') pi(y|x') instead of "
                "pi(y|x); only visible with two prompts, so no symbolic variant",
                exact=prompt_marginal,
            ),
        ),
    ),
)
