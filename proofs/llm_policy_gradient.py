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

from collections.abc import Callable
from dataclasses import replace
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
    detectable,
    exact_moments,
    monte_carlo_leg,
)
from rlmath.named_functions import SoftmaxProbability
from rlmath.sequence_model import SequenceModel
from rlmath.sequence_sampling import SampledResponses, sample_responses, score_sums
from rlmath.statistics import DEFAULT_FALSE_ALARM
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
    """pi_{n,v} = exp(theta[n, v]) / sum_w exp(theta[n, w]): the next-token probability at node
    n, kept whole and printed by name (``doit`` gives the quotient the prover works with)."""
    return SoftmaxProbability(sp.Integer(v), theta[n, 0], theta[n, EOS])


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


# ============================================================================ Monte-Carlo leg
# Responses are *sampled*: rlmath.sequence_sampling.sample_responses draws x ~ rho and y token
# by token from the next-token probabilities (not from the enumerated sequence probabilities).
# One response's term is sum_t w_t score_t, each token's score 1[y_t = v] - pi(v | x, y_<t)
# computed from the sampled nodes and tokens (rlmath.sequence_sampling.score_sums), with the
# token rewards r_tok(x, y_<t, y_t) read at the sampled (node, token) and the sequence reward
# looked up by the sampled response's index. Two correct forms are stacked: w_t = the reward to
# go r(x, y) + sum_{t' >= t} r_t' (the claim) and w_t = R(x, y), the total reward (also
# unbiased: the past rewards add terms of mean zero). Their means over MC_RESPONSES responses
# are tested against grad J, the complex-step derivative of J by backward induction (the exact
# leg's lhs), by rlmath.statistics.agreement at false alarm MC_FALSE_ALARM per leg (Bonferroni
# over the MC_EXAMPLES examples and every component).
#
# Mutants are the wrong estimators themselves, on the same sampled responses: the EOS token's
# score dropped (both forms), each score weighted by its immediate reward only, and responses
# drawn for another prompt x' ~ rho (the prompt-marginal law) but scored and rewarded at x.
#
# Examples: logits in [-1, 1], then token 0's moved by +-0.75 per prompt (:func:`distinct_prompts`;
# every next-token probability > 0.02 with K + 1 <= 3 tokens: no rare response, terms close
# enough to normal at the 1e-6 tail), rewards varied (:func:`varied_rewards`), token rewards on. Power: an example is kept only if every mutant is
# rejected with probability >= 0.99 at MC_RESPONSES (rlmath.claims.detectable), from the exact
# mean and standard deviation of each mutant's terms (rlmath.claims.exact_moments over every
# (prompt, response) pair, weighted by rho(x) pi(y|x), or rho(x) sum_x' rho(x') pi(y|x') for
# the prompt-marginal mutant).
MC_EXAMPLES = 2
MC_FALSE_ALARM = DEFAULT_FALSE_ALARM  # per leg, shared by its examples (monte_carlo_leg's split)
ALPHA = MC_FALSE_ALARM / MC_EXAMPLES
MC_RESPONSES = 20_000
MIN_SD = 1e-6  # components with a smaller sd (rounding-level: no signal) give no power


def varied_rewards(model: SequenceModel) -> SequenceModel:
    """The model with sequence rewards r + 0.5 ((i + x) mod 3 - 1) (never all zero)."""
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
    """The model with token 0's logit moved by +0.75 for prompt 0 and -0.75 for prompt 1.

    Hypothesis's simplest models give both prompts the same logits, where the prompt-marginal
    law equals each prompt's own and that mutant is true; the offsets make the laws differ.
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


def enumerated_batch(model: SequenceModel) -> SampledResponses:
    """Every (prompt, response) pair as a batch ``[X R, L]``, prompt-major (for the moments)."""
    r = model.responses
    X, R = model.n_prompts, model.n_responses
    return SampledResponses(
        tokens=np.tile(r.tokens, (X, 1)),
        nodes=np.tile(r.nodes, (X, 1)),
        response_mask=np.tile(r.mask, (X, 1)),
        lengths=np.tile(r.lengths, X),
        ends_with_eos=np.tile(r.ends_with_eos, X),
        response_indices=np.tile(np.arange(R), X),
        prompts=np.repeat(np.arange(X), R),
        groups=np.arange(X * R),
        group_size=1,
    )


def sampled_token_rewards(model: SequenceModel, batch: SampledResponses) -> np.ndarray:
    """r_tok(x, y_<t, y_t) at the batch's (prompt, node, token), ``[B, L]`` (0 after the end)."""
    mask = batch.response_mask
    table = model.token_rewards[
        batch.prompts[:, None], np.maximum(batch.nodes, 0), np.maximum(batch.tokens, 0)
    ]
    return np.where(mask, table, 0.0)  # type: ignore[no-any-return]


def reward_to_go_weights(model: SequenceModel, batch: SampledResponses) -> np.ndarray:
    """w_t = r(x, y) + sum_{t' >= t} r_t', ``[B, L]``."""
    token_r = sampled_token_rewards(model, batch)
    to_go = np.flip(np.cumsum(np.flip(token_r, axis=1), axis=1), axis=1)
    sequence_r = model.rewards[batch.prompts, batch.response_indices]
    return to_go + sequence_r[:, None]  # type: ignore[no-any-return]


def total_reward_weights(model: SequenceModel, batch: SampledResponses) -> np.ndarray:
    """w_t = R(x, y) = r(x, y) + sum_t' r_t' on every token, ``[B, L]``."""
    total = sampled_token_rewards(model, batch).sum(axis=1)
    total = total + model.rewards[batch.prompts, batch.response_indices]
    return np.broadcast_to(total[:, None], batch.tokens.shape)


def immediate_reward_weights(model: SequenceModel, batch: SampledResponses) -> np.ndarray:
    """Mutant: w_t = r_t, plus r(x, y) on the last token only, ``[B, L]``."""
    last = np.arange(model.max_length)[None, :] == (batch.lengths[:, None] - 1)
    sequence_r = model.rewards[batch.prompts, batch.response_indices]
    return sampled_token_rewards(model, batch) + sequence_r[:, None] * last  # type: ignore[no-any-return]


def without_eos(weights: Callable[[SequenceModel, SampledResponses], np.ndarray]) -> Any:
    """Mutant: the same weights with the EOS token's score left out."""

    def dropped(model: SequenceModel, batch: SampledResponses) -> np.ndarray:
        return weights(model, batch) * (batch.tokens != model.eos)  # type: ignore[no-any-return]

    return dropped


CORRECT_FORMS = (reward_to_go_weights, total_reward_weights)
EOS_DROPPED_FORMS = (without_eos(reward_to_go_weights), without_eos(total_reward_weights))
IMMEDIATE_FORMS = (immediate_reward_weights, immediate_reward_weights)


def response_terms(
    model: SequenceModel, batch: SampledResponses, forms: tuple[Any, ...]
) -> np.ndarray:
    """``[B, F, X, N, K + 1]``: sum_t w_t grad log pi(y_t | x, y_<t) per response and form."""
    return np.stack([score_sums(model, batch, form(model, batch)) for form in forms], axis=1)


def response_sampler(forms: tuple[Any, ...], *, prompt_marginal: bool = False) -> Any:
    """``(model, rng, n) -> [n, F, X, N, K + 1]`` for monte_carlo_leg.

    With ``prompt_marginal`` (a mutant), y is drawn for a prompt x' ~ rho and the terms are
    computed at an independent x ~ rho.
    """

    def sample(model: SequenceModel, rng: np.random.Generator, n: int) -> np.ndarray:
        batch = sample_responses(model, n, rng)
        if prompt_marginal:
            scored_at = sample_responses(model, n, rng).prompts  # x ~ rho, independent of x'
            batch = replace(batch, prompts=scored_at)
        return response_terms(model, batch, forms)

    return sample


def stacked_gradient(model: SequenceModel) -> np.ndarray:
    """grad J (complex step of the backward induction) once per correct form, ``[2, X, N, K + 1]``."""
    return np.stack([complex_step_objective_gradient(model)] * len(CORRECT_FORMS))


def _moments(
    model: SequenceModel, forms: tuple[Any, ...], marginal: bool
) -> tuple[np.ndarray, np.ndarray]:
    probabilities = model.probabilities()  # [X, R]
    if marginal:
        probabilities = np.broadcast_to(
            model.prompt_probabilities @ probabilities, probabilities.shape
        )
    weights = (model.prompt_probabilities[:, None] * probabilities).ravel()
    return exact_moments(weights, response_terms(model, enumerated_batch(model), forms))


def mutants_detectable(model: SequenceModel) -> bool:
    """The example filter: every mutant is rejected with power >= 0.99 at MC_RESPONSES."""
    gradient = stacked_gradient(model)
    for forms, marginal in (
        (EOS_DROPPED_FORMS, False),
        (IMMEDIATE_FORMS, False),
        (CORRECT_FORMS, True),
    ):
        mean, sd = _moments(model, forms, marginal)
        shift = np.where(sd > MIN_SD, mean - gradient, 0.0)
        if not detectable(shift, sd, MC_RESPONSES, false_alarm=ALPHA):
            return False
    return True


mc_examples = (
    sequence_models(
        min_prompts=2,
        max_prompts=2,
        max_tokens=2,
        min_length=2,
        max_length=3,
        max_abs_logit=1.0,
        token_rewards=True,
    )
    .map(varied_rewards)
    .map(distinct_prompts)
    .filter(mutants_detectable)
)


CLAIMS = (
    Claim(
        id="llm-sequence-policy-gradient",
        title="The sequence-level policy gradient is a sum of token scores times the reward to go",
        statement=Statement(
            sequence_policy_gradient.start,
            sequence_policy_gradient.conclusion,
            where=(
                r"\text{one prompt, tokens } \{0, \mathrm{EOS}=1\},\ L = 2;\ "
                r"\theta_{n,v} \text{ logits at node } n;\ "
                r"u_{n,v} \text{ token rewards},\ "
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
            "Monte-Carlo leg: 2 examples with 2 prompts, 1-2 ordinary tokens plus EOS, L = 2-3, "
            "logits in [-1, 1] with token 0 moved by +-0.75 per prompt, varied sequence and "
            "random token rewards; 20,000 responses sampled token by token each, kept only if "
            "every mutant is detected with power 0.99; false alarm 1e-6.",
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
        monte_carlo=monte_carlo_leg(
            mc_examples,
            response_sampler(CORRECT_FORMS),
            stacked_gradient,
            n_samples=MC_RESPONSES,
            n_examples=MC_EXAMPLES,
            false_alarm=MC_FALSE_ALARM,
            description=(
                "mean over sampled responses (prompts from rho, tokens drawn one by one: "
                "rlmath.sequence_sampling) of sum_t score_t (r(x, y) + sum_{t' >= t} r_t') and "
                "of sum_t score_t R(x, y), each vs the complex-step gradient of J by backward "
                "induction"
            ),
        ),
        mutants=(
            Mutant(
                "eos-score-dropped",
                "the EOS token's score left out (EOS masked out of the response mask)",
                symbolic=SymbolicMutation("sequence-policy-gradient", EOS_DROPPED),
                exact=eos_score_dropped,
                monte_carlo=response_sampler(EOS_DROPPED_FORMS),
            ),
            Mutant(
                "immediate-reward-only",
                "each token's score weighted by its own reward only (future rewards and, "
                "before the last token, the sequence reward dropped)",
                symbolic=SymbolicMutation("sequence-policy-gradient", IMMEDIATE_REWARD),
                exact=immediate_reward_only,
                monte_carlo=response_sampler(IMMEDIATE_FORMS),
            ),
            Mutant(
                "prompt-marginal",
                "responses weighted by the prompt-marginal sum_x' rho(x') pi(y|x') instead of "
                "pi(y|x); only visible with two prompts, so no symbolic variant",
                exact=prompt_marginal,
                monte_carlo=response_sampler(CORRECT_FORMS, prompt_marginal=True),
            ),
        ),
    ),
)
