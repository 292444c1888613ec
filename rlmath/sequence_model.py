r"""Tabular autoregressive policies over token sequences: the exact model of LLM-RL.

A *sequence model* is the smallest object on which the mathematics of RL for language models
(REINFORCE, RLOO, GRPO, KL-regularised RLHF) can be checked exactly: a finite vocabulary, a
maximum response length $L$, a finite set of prompts, and one free logit vector for every
node of the prefix tree, so every response, every group of responses and every expectation
can be enumerated.

Conventions (used throughout this module):

- **Vocabulary.** ``n_tokens`` $= K \ge 1$ ordinary tokens with ids $0..K-1$ and one EOS token
  with id $K$ (the last): ``vocabulary_size = K + 1``.
- **Prompts.** $x \in \{0..X-1\}$ with probabilities ``prompt_probabilities[x]`` $= \rho(x)$.
- **Responses.** A response $y = (y_1, \dots, y_T)$ either *ends at EOS* ($y_T = $ EOS,
  $T \le L$, all earlier tokens ordinary) or is *truncated*: $T = L$ ordinary tokens and no
  EOS. **EOS is a token of the response**: its log-probability is part of
  $\log\pi(y \mid x)$, its score part of the policy gradient, and it counts in the length
  $|y| = T$ used by token-mean aggregation (as in the ``response_mask`` of TRL, OpenRLHF and
  verl, where the generated EOS is a response token). **Truncation, not forced EOS**: at
  length $L$ generation stops (``max_new_tokens``); no EOS is appended and no probability is
  spent on it, so prefixes of length $L$ carry no logits.
- **Prefix tree.** The decision nodes are the prefixes of $0..L-1$ ordinary tokens,
  $N = \sum_{d=0}^{L-1} K^d$ of them, numbered breadth first: node
  $\mathrm{off}_d + c$ is the prefix of depth $d$ whose tokens, read as a base-$K$ number,
  give $c$ (with $\mathrm{off}_d = \sum_{j<d} K^j$; node 0 is the empty prefix). The logits
  ``theta[x, n, :]`` (shape ``[X, N, K + 1]``) define
  $\pi_\theta(\cdot \mid x, n) = \mathrm{softmax}(\theta_{x,n})$.
- **Enumeration order.** There are $R = N + K^L$ responses: response $i < N$ is node $i$'s
  prefix followed by EOS; response $N + c$ is the truncated response of $L$ ordinary tokens
  with base-$K$ code $c$. With $K = 3$, $L = 3$: $R = 13 + 27 = 40$.

Then

$$ \pi_\theta(y \mid x) = \prod_{t=1}^{T} \pi_\theta(y_t \mid x, y_{<t}), \qquad
   \sum_{y} \pi_\theta(y \mid x) = 1, $$

$$ J(\theta) = \sum_x \rho(x) \sum_y \pi_\theta(y \mid x)\, R(x, y), \qquad
   R(x, y) = r(x, y) + \sum_{t=1}^{T} r_{\mathrm{tok}}(x, y_{<t}, y_t), $$

$$ \mathrm{KL}(\pi_\theta \,\|\, \pi_{\mathrm{ref}})
   = \sum_x \rho(x) \sum_y \pi_\theta(y \mid x)
     \log\frac{\pi_\theta(y \mid x)}{\pi_{\mathrm{ref}}(y \mid x)} $$

(sequence level, sampled from $\pi_\theta$, differentiated as part of the objective), and
the gradients are sums of token scores
$\partial \log\pi_\theta(y_t \mid x, n) / \partial\theta_{x,n,v} = \mathbb 1[y_t = v]
- \pi_\theta(v \mid x, n)$ (:meth:`SequenceModel.weighted_score_sum`).

**Why not a** :class:`~rlmath.TabularMDP` **at the core.** The model *is* a finite-horizon MDP
(states = prefixes, deterministic concatenation, $\gamma = 1$, $H = L$), and
:meth:`SequenceModel.to_tabular_mdp` builds it so the Bellman machinery of
:mod:`rlmath.exact` applies and serves as an independent check (dynamic programming against
enumeration). But the objects of LLM-RL are *sequence-level*: the KL between sequence
distributions, rewards of complete responses, and above all estimators built from *groups*
of responses (GRPO's group-normalised advantages, RLOO's leave-one-out baselines) are
functions of whole responses, not of (state, action) pairs. So the model stores the prefix
tree and enumerates responses and groups directly; the MDP is a view.

**Groups.** :func:`expected_over_groups` computes $\mathbb E_x \mathbb E_{y_{1:G} \sim
\pi(\cdot|x)^{\otimes G}}[f(x, y_{1:G})]$ exactly. For a statistic invariant under permuting
the group (every GRPO/RLOO loss and gradient is) it sums over multisets (type classes):
$\binom{R + G - 1}{G}$ of them instead of $R^G$ ordered tuples (123410 instead of 2.56M for
$R = 40$, $G = 4$), each weighted by its multinomial probability
$\frac{G!}{\prod_i m_i!} \prod_i \pi(y_i \mid x)^{m_i}$.

Size limits: :data:`MAX_RESPONSES` responses per prompt, :data:`MAX_GROUPS` groups per
prompt; above them a ``ValueError`` names the argument and the count.

References:
    Williams, R. J. "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8, 1992 (REINFORCE, the score function).
    Ziegler, D. M. et al. "Fine-Tuning Language Models from Human Preferences", 2019, eq. (2)
    (KL-regularised reward, KL(pi || pi_ref) sampled from pi).
    Shao, Z. et al. "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
    Language Models", 2024, Sec. 4.1, eq. (3) (GRPO, group-normalised advantages).
    Ahmadian, A. et al. "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
    from Human Feedback in LLMs", ACL 2024, eq. (5) (RLOO).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from rlmath._validation import (
    FloatArray,
    as_float_array,
    check_array_bytes,
    check_finite,
    check_integer,
    check_probabilities,
    check_real_scalar,
)
from rlmath.mdp import TabularMDP
from rlmath.policy import SoftmaxPolicy, _log_softmax

__all__ = [
    "MAX_GROUPS",
    "MAX_RESPONSES",
    "GroupBatch",
    "Responses",
    "SequenceModel",
    "count_groups",
    "count_nodes",
    "count_responses",
    "enumerate_responses",
    "expected_over_groups",
    "group_indices",
]

#: Largest number of responses per prompt, $N + K^L$, that the model enumerates. Each response
#: holds ``[L]`` token and node ids and every per-response array is ``[X, R]``; 10^6
#: responses of length 10 is about 160 MB.
MAX_RESPONSES: int = 1_000_000

#: Default largest number of groups per prompt that :func:`expected_over_groups` evaluates
#: (multisets or ordered tuples): the ``[count, G]`` index array is built once and the
#: statistic is called on batches; 2e6 groups of 4 is 64 MB of indices and a few seconds of
#: NumPy work per prompt for a simple statistic.
MAX_GROUPS: int = 2_000_000

IntArray = NDArray[np.intp]


# ----------------------------------------------------------------------------- counting
def count_nodes(n_tokens: int, max_length: int) -> int:
    r"""Number of decision nodes (prefixes of $0..L-1$ ordinary tokens): $\sum_{d<L} K^d$.

    Examples:
        >>> count_nodes(3, 3)  # 1 + 3 + 9
        13
    """
    K = check_integer(n_tokens, "n_tokens", minimum=1)
    L = check_integer(max_length, "max_length", minimum=1)
    return sum(K**d for d in range(L))


def count_responses(n_tokens: int, max_length: int) -> int:
    r"""Number of complete responses: $\sum_{d<L} K^d$ ending at EOS plus $K^L$ truncated.

    Examples:
        >>> count_responses(3, 3)  # 13 ending in EOS + 27 truncated at L = 3
        40
    """
    nodes = count_nodes(n_tokens, max_length)
    truncated: int = int(n_tokens) ** int(max_length)
    return nodes + truncated


def count_groups(n_responses: int, group_size: int, *, ordered: bool = False) -> int:
    r"""Number of groups of $G$ responses: $R^G$ ordered tuples or $\binom{R+G-1}{G}$ multisets.

    Examples:
        >>> count_groups(40, 4), count_groups(40, 4, ordered=True)
        (123410, 2560000)
    """
    R = check_integer(n_responses, "n_responses", minimum=1)
    G = check_integer(group_size, "group_size", minimum=1)
    return R**G if ordered else math.comb(R + G - 1, G)


# ----------------------------------------------------------------------------- responses
@dataclass(frozen=True, eq=False)
class Responses:
    r"""Every complete response of a prefix tree, in the module's enumeration order.

    Attributes:
        tokens: ``[R, L]`` int, $y_t$ for positions $t = 1..L$ (column ``t - 1``), ``-1``
            after the end.
        nodes: ``[R, L]`` int, the node (prefix $y_{<t}$) at which $y_t$ was chosen, ``-1``
            after the end.
        lengths: ``[R]`` int, $|y| = T$ (EOS included).
        ends_with_eos: ``[R]`` bool, false for truncated responses.
        mask: ``[R, L]`` bool, ``tokens >= 0`` (the ``response_mask``).
    """

    tokens: IntArray
    nodes: IntArray
    lengths: IntArray
    ends_with_eos: NDArray[np.bool_]
    mask: NDArray[np.bool_]

    @property
    def count(self) -> int:
        """Number of responses $R$."""
        return int(self.lengths.shape[0])

    def as_tuples(self) -> list[tuple[int, ...]]:
        """The responses as tuples of token ids (EOS included), for readable tests."""
        return [
            tuple(int(v) for v in row[:n]) for row, n in zip(self.tokens, self.lengths, strict=True)
        ]


def _digits(codes: IntArray, n_tokens: int, depth: int) -> IntArray:
    """Base-``n_tokens`` digits of ``codes``, most significant first: ``[len(codes), depth]``."""
    powers = n_tokens ** np.arange(depth - 1, -1, -1, dtype=np.intp)
    digits: IntArray = (codes[:, None] // powers[None, :]) % n_tokens
    return digits


def enumerate_responses(n_tokens: int, max_length: int) -> Responses:
    r"""Enumerate all $R = \sum_{d<L} K^d + K^L$ responses (see the module's conventions).

    Args:
        n_tokens: number of ordinary tokens $K \ge 1$ (EOS has id ``n_tokens``).
        max_length: maximum response length $L \ge 1$ (EOS included).

    Returns:
        :class:`Responses`.

    Raises:
        ValueError: if there would be more than :data:`MAX_RESPONSES` responses.

    Examples:
        >>> enumerate_responses(2, 2).as_tuples()  # EOS = 2
        [(2,), (0, 2), (1, 2), (0, 0), (0, 1), (1, 0), (1, 1)]
    """
    K = check_integer(n_tokens, "n_tokens", minimum=1)
    L = check_integer(max_length, "max_length", minimum=1)
    count = count_responses(K, L)
    if count > MAX_RESPONSES:
        raise ValueError(
            f"max_length = {L} with n_tokens = {K} gives {count} responses per prompt, more "
            f"than rlmath.sequence_model.MAX_RESPONSES = {MAX_RESPONSES}; use a smaller "
            "vocabulary or max_length"
        )
    offsets = [sum(K**j for j in range(d)) for d in range(L + 1)]
    tokens = np.full((count, L), -1, dtype=np.intp)
    nodes = np.full((count, L), -1, dtype=np.intp)
    lengths = np.empty(count, dtype=np.intp)
    eos = np.zeros(count, dtype=np.bool_)
    # responses ending in EOS: node i = (depth d, code c) followed by EOS, at row i
    for d in range(L + 1):
        codes = np.arange(K**d, dtype=np.intp)
        rows = offsets[d] + codes  # offsets[L] = N: truncated responses follow the nodes
        prefix = _digits(codes, K, d)
        tokens[rows, :d] = prefix
        for t in range(d):  # the node of position t + 1 is the prefix of its first t tokens
            nodes[rows, t] = offsets[t] + codes // K ** (d - t)
        if d < L:
            tokens[rows, d] = K
            nodes[rows, d] = offsets[d] + codes
            lengths[rows] = d + 1
            eos[rows] = True
        else:
            lengths[rows] = L
    for array in (tokens, nodes, lengths, eos):
        array.setflags(write=False)
    mask = tokens >= 0
    mask.setflags(write=False)
    return Responses(tokens, nodes, lengths, eos, mask)


# ----------------------------------------------------------------------------- the model
def _as_logit_table(value: Any, name: str, shape: tuple[int, ...] | None) -> FloatArray:
    table = as_float_array(value, name, ndim=3)
    if shape is not None and table.shape != shape:
        raise ValueError(f"{name} must have shape [X, N, K + 1] = {shape}, got {table.shape}")
    check_finite(table, name)
    table.setflags(write=False)
    return table


RewardsLike = Any  # an [X, R] array, or a callable (prompt, tokens tuple) -> float


@dataclass(frozen=True, eq=False)
class SequenceModel:
    r"""A tabular autoregressive policy $\pi_\theta(y \mid x)$ with a reference and rewards.

    $$ \pi_\theta(y \mid x) = \prod_{t=1}^{|y|} \mathrm{softmax}(\theta_{x, n_t})_{y_t},
       \qquad n_t = \text{node of the prefix } y_{<t}, $$

    with the conventions of :mod:`rlmath.sequence_model` (EOS id ``K`` is a response token;
    truncation at ``max_length`` without EOS).

    Args:
        theta: logits ``[X, N, K + 1]`` float64, finite; ``N = count_nodes(K, L)``.
        max_length: $L \ge 1$.
        prompt_probabilities: $\rho$, ``[X]``, a distribution.
        rewards: sequence rewards $r(x, y)$, ``[X, R]`` in the order of
            :func:`enumerate_responses`, or a callable ``(prompt, tokens) -> float`` with
            ``tokens`` a tuple of ids (EOS included); ``None`` means zero.
        token_rewards: per-token rewards $r_{\mathrm{tok}}(x, n, v)$ for emitting ``v`` at
            node ``n``, ``[X, N, K + 1]``; ``None`` means zero. They depend only on the prefix
            and the token, so they are causal (an MDP reward ``r[s, a]``).
        reference_theta: logits of $\pi_{\mathrm{ref}}$, ``[X, N, K + 1]``; ``None`` means
            all zeros (the uniform next-token reference).

    Raises:
        TypeError: if an array is not numeric or ``rewards`` is neither array nor callable.
        ValueError: naming the argument, for shapes, non-finite entries, a ``theta`` whose
            node axis does not match ``max_length``, or more than :data:`MAX_RESPONSES`
            responses.

    Examples:
        >>> import numpy as np
        >>> model = SequenceModel(np.zeros((1, 1, 2)), max_length=1,
        ...                       prompt_probabilities=[1.0], rewards=[[1.0, 0.0]])
        >>> model.probabilities().tolist(), model.objective()  # responses (EOS,) and (0,)
        ([[0.5, 0.5]], 0.5)
    """

    theta: Any
    max_length: int
    prompt_probabilities: Any
    rewards: RewardsLike = None
    token_rewards: Any = None
    reference_theta: Any = None
    responses: Responses = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        L = check_integer(self.max_length, "max_length", minimum=1)
        theta = _as_logit_table(self.theta, "theta", None)
        X, N, V = theta.shape
        if X == 0:
            raise ValueError(f"theta must have at least one prompt, got shape {theta.shape}")
        if V < 2:
            raise ValueError(
                f"theta must have a last axis of K + 1 >= 2 (K ordinary tokens and EOS), got {V}"
            )
        K = V - 1
        expected_nodes = count_responses(K, L) - K**L  # validates the response count first
        responses = enumerate_responses(K, L)
        if N != expected_nodes:
            raise ValueError(
                f"theta must have N = count_nodes({K}, {L}) = {expected_nodes} nodes on axis 1 "
                f"for max_length = {L}, got shape {theta.shape}"
            )
        set_(self, "max_length", L)
        set_(self, "theta", theta)
        set_(self, "responses", responses)
        rho = as_float_array(self.prompt_probabilities, "prompt_probabilities", ndim=1)
        if rho.shape != (X,):
            raise ValueError(f"prompt_probabilities must have shape [X] = {(X,)}, got {rho.shape}")
        check_probabilities(rho, "prompt_probabilities")
        rho.setflags(write=False)
        set_(self, "prompt_probabilities", rho)

        R = responses.count
        if self.rewards is None:
            rewards = np.zeros((X, R))
        elif callable(self.rewards):
            tuples = responses.as_tuples()
            rewards = np.empty((X, R))
            for x in range(X):
                for i, y in enumerate(tuples):
                    value = self.rewards(x, y)
                    rewards[x, i] = check_real_scalar(value, f"rewards({x}, {y})")
        else:
            rewards = as_float_array(self.rewards, "rewards", ndim=2)
            if rewards.shape != (X, R):
                raise ValueError(
                    f"rewards must have shape [X, R] = {(X, R)} (R = count_responses({K}, {L})), "
                    f"got {rewards.shape}"
                )
        check_finite(rewards, "rewards")
        rewards.setflags(write=False)
        set_(self, "rewards", rewards)
        token_rewards = (
            np.zeros(theta.shape)
            if self.token_rewards is None
            else as_float_array(self.token_rewards, "token_rewards", ndim=3)
        )
        if token_rewards.shape != theta.shape:
            raise ValueError(
                f"token_rewards must have the shape of theta {theta.shape}, got {token_rewards.shape}"
            )
        check_finite(token_rewards, "token_rewards")
        token_rewards.setflags(write=False)
        set_(self, "token_rewards", token_rewards)
        reference = (
            np.zeros(theta.shape)
            if self.reference_theta is None
            else _as_logit_table(self.reference_theta, "reference_theta", theta.shape)
        )
        reference.setflags(write=False)
        set_(self, "reference_theta", reference)

    # ------------------------------------------------------------------ sizes
    @property
    def n_prompts(self) -> int:
        """Number of prompts $X$."""
        return int(self.theta.shape[0])

    @property
    def n_nodes(self) -> int:
        """Number of decision nodes $N$ per prompt."""
        return int(self.theta.shape[1])

    @property
    def n_tokens(self) -> int:
        """Number of ordinary tokens $K$ (EOS has id ``K``)."""
        return int(self.theta.shape[2]) - 1

    @property
    def eos(self) -> int:
        """The EOS token id, ``n_tokens``."""
        return self.n_tokens

    @property
    def n_responses(self) -> int:
        """Number of complete responses $R$ per prompt."""
        return self.responses.count

    def __repr__(self) -> str:
        return (
            f"SequenceModel(n_prompts={self.n_prompts}, n_tokens={self.n_tokens}+EOS, "
            f"max_length={self.max_length}, n_responses={self.n_responses})"
        )

    def with_theta(self, theta: Any) -> SequenceModel:
        """The same model (prompts, rewards, reference) with new logits ``theta``."""
        return SequenceModel(
            theta,
            self.max_length,
            self.prompt_probabilities,
            self.rewards,
            self.token_rewards,
            self.reference_theta,
        )

    @classmethod
    def random(
        cls,
        n_prompts: int,
        n_tokens: int,
        max_length: int,
        *,
        seed: int | None,
        logit_scale: float = 1.0,
        reward_scale: float = 1.0,
        token_rewards: bool = False,
    ) -> SequenceModel:
        r"""A random model: normal logits (policy and reference), normal rewards, Dirichlet $\rho$.

        Args:
            n_prompts: $X \ge 1$.
            n_tokens: $K \ge 1$.
            max_length: $L \ge 1$.
            seed: seed of ``numpy.random.default_rng``.
            logit_scale: standard deviation of the logits.
            reward_scale: standard deviation of the rewards.
            token_rewards: whether to draw per-token rewards too.

        Examples:
            >>> SequenceModel.random(2, 3, 3, seed=0)
            SequenceModel(n_prompts=2, n_tokens=3+EOS, max_length=3, n_responses=40)
        """
        X = check_integer(n_prompts, "n_prompts", minimum=1)
        N = count_nodes(n_tokens, max_length)
        R = count_responses(n_tokens, max_length)
        if R > MAX_RESPONSES:
            enumerate_responses(n_tokens, max_length)  # raises the size-limit error
        shape = (X, N, int(n_tokens) + 1)
        rng = np.random.default_rng(seed)
        scale = check_real_scalar(logit_scale, "logit_scale")
        rscale = check_real_scalar(reward_scale, "reward_scale")
        theta = scale * rng.standard_normal(shape)
        reference = scale * rng.standard_normal(shape)
        rewards = rscale * rng.standard_normal((X, R))
        per_token = rscale * rng.standard_normal(shape) if token_rewards else None
        rho = rng.dirichlet(np.ones(X))
        return cls(theta, max_length, rho, rewards, per_token, reference)

    # ------------------------------------------------------------------ probabilities
    def next_token_log_probabilities(self, *, reference: bool = False) -> FloatArray:
        r"""$\log \pi(v \mid x, n)$ for every prompt, node and token, ``[X, N, K + 1]``."""
        return _log_softmax(self.reference_theta if reference else self.theta)

    def token_log_probabilities(self, *, reference: bool = False) -> FloatArray:
        r"""$\log\pi(y_t \mid x, y_{<t})$ of every response, ``[X, R, L]`` (0 after the end)."""
        log_pi = self.next_token_log_probabilities(reference=reference)
        result: FloatArray = _token_log_probabilities(log_pi, self.responses)
        return result

    def log_probabilities(self, *, reference: bool = False) -> FloatArray:
        r"""$\log\pi(y \mid x) = \sum_t \log\pi(y_t \mid x, y_{<t})$, ``[X, R]``."""
        return self.token_log_probabilities(reference=reference).sum(axis=2)  # type: ignore[no-any-return]

    def probabilities(self, *, reference: bool = False) -> FloatArray:
        r"""$\pi(y \mid x)$, ``[X, R]``; each row sums to 1."""
        return np.exp(self.log_probabilities(reference=reference))

    def total_rewards(self) -> FloatArray:
        r"""$R(x, y) = r(x, y) + \sum_t r_{\mathrm{tok}}(x, y_{<t}, y_t)$, ``[X, R]``."""
        return self.rewards + _gather_tokens(self.token_rewards, self.responses).sum(axis=2)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ objectives
    def objective(self) -> float:
        r"""$J(\theta) = \sum_x \rho(x) \sum_y \pi_\theta(y \mid x) R(x, y)$."""
        p = self.probabilities()
        return float(self.prompt_probabilities @ (p * self.total_rewards()).sum(axis=1))

    def kl_to_reference(self) -> float:
        r"""Sequence-level $\mathrm{KL}(\pi_\theta \| \pi_{\mathrm{ref}})$, averaged over prompts.

        $$ \sum_x \rho(x) \sum_y \pi_\theta(y|x)
           \left[\log\pi_\theta(y|x) - \log\pi_{\mathrm{ref}}(y|x)\right] \ge 0 $$

        (sampled from $\pi_\theta$; computed from log-probabilities, so exact zeros of
        $\pi_\theta$ contribute $0 \log 0 = 0$).
        """
        log_p = self.log_probabilities()
        log_ref = self.log_probabilities(reference=True)
        p = np.exp(log_p)
        terms = np.where(p > 0, p * (log_p - log_ref), 0.0)
        return float(self.prompt_probabilities @ terms.sum(axis=1))

    def regularized_objective(self, beta: float) -> float:
        r"""$J(\theta) - \beta\, \mathrm{KL}(\pi_\theta \| \pi_{\mathrm{ref}})$, $\beta \ge 0$."""
        beta = _check_beta(beta)
        return self.objective() - beta * self.kl_to_reference()

    # ------------------------------------------------------------------ gradients
    def weighted_score_sum(self, weights: Any) -> FloatArray:
        r"""$\sum_{x, i, t} w_{x,i,t}\, \nabla_\theta \log\pi_\theta(y_{i,t} \mid x, y_{i,<t})$.

        With the softmax score at node $n$,

        $$ \frac{\partial}{\partial \theta_{x,n,v}} = \sum_{i, t:\ n_{i,t} = n}
           w_{x,i,t} \left(\mathbb 1[y_{i,t} = v] - \pi_\theta(v \mid x, n)\right). $$

        This is the vector-Jacobian product of the token log-probabilities: the gradient of
        any loss $\sum w \log\pi$ whose weights $w$ are detached (advantages, importance
        weights at the sampling policy, aggregation normalisers).

        Args:
            weights: ``[X, R]`` (one weight per response, applied to every token, so the
                result is $\sum_{x,i} w_{x,i} \nabla \log\pi(y_i \mid x)$) or ``[X, R, L]``
                (per token; entries after a response's end are ignored).

        Returns:
            ``[X, N, K + 1]`` float64.
        """
        X, R, L = self.n_prompts, self.n_responses, self.max_length
        w = as_float_array(weights, "weights")
        if w.shape == (X, R):
            w = np.broadcast_to(w[:, :, None], (X, R, L))
        elif w.shape != (X, R, L):
            raise ValueError(
                f"weights must have shape [X, R] = {(X, R)} or [X, R, L], got {w.shape}"
            )
        check_finite(w, "weights")
        return _weighted_score_sum(self.next_token_log_probabilities(), self.responses, w)

    def objective_gradient(self) -> FloatArray:
        r"""Exact $\nabla_\theta J$, ``[X, N, K + 1]``, by the score function summed over tokens.

        $$ \nabla_\theta J = \sum_x \rho(x) \sum_y \pi_\theta(y|x)\, R(x, y)
           \sum_{t=1}^{|y|} \nabla_\theta \log\pi_\theta(y_t \mid x, y_{<t}) $$

        (the EOS token's score included).

        References:
            Williams 1992; Ahmadian et al. 2024, eq. (3).
        """
        weights = self.prompt_probabilities[:, None] * self.probabilities() * self.total_rewards()
        return _weighted_score_sum(
            self.next_token_log_probabilities(),
            self.responses,
            np.broadcast_to(weights[:, :, None], weights.shape + (self.max_length,)),
        )

    def regularized_objective_gradient(self, beta: float) -> FloatArray:
        r"""Exact $\nabla_\theta [J - \beta\,\mathrm{KL}(\pi_\theta \| \pi_{\mathrm{ref}})]$, ``[X, N, K + 1]``.

        $$ \nabla_\theta = \sum_x \rho(x) \sum_y \pi_\theta(y|x)
           \left[R(x,y) - \beta \log\frac{\pi_\theta(y|x)}{\pi_{\mathrm{ref}}(y|x)}\right]
           \nabla_\theta \log\pi_\theta(y|x), $$

        using $\mathbb E_{\pi_\theta}[\nabla_\theta \log\pi_\theta] = 0$ for the term where
        the gradient hits the $\log\pi_\theta$ inside the KL.

        References:
            Ziegler et al. 2019, eq. (2).
        """
        beta = _check_beta(beta)
        log_p = self.log_probabilities()
        log_ref = self.log_probabilities(reference=True)
        p = np.exp(log_p)
        regularized = self.total_rewards() - beta * np.where(p > 0, log_p - log_ref, 0.0)
        weights = self.prompt_probabilities[:, None] * p * regularized
        return _weighted_score_sum(
            self.next_token_log_probabilities(),
            self.responses,
            np.broadcast_to(weights[:, :, None], weights.shape + (self.max_length,)),
        )

    def response_scores(self) -> FloatArray:
        r"""$\nabla_\theta \log\pi_\theta(y \mid x)$ for every response, dense ``[X, R, X, N, K + 1]``.

        Only block ``[x, i, x]`` is non-zero. Meant for statistics of
        :func:`expected_over_groups` that need each member's full gradient.

        Raises:
            ValueError: if the array would exceed ``rlmath._validation.MAX_ARRAY_BYTES``.
        """
        X, R, N, V = self.n_prompts, self.n_responses, self.n_nodes, self.n_tokens + 1
        check_array_bytes(
            8 * X * R * X * N * V,
            f"dense response scores [X, R, X, N, K + 1] (X = {X}, R = {R}, N = {N})",
            name="max_length",
            value=self.max_length,
        )
        out = np.zeros((X, R, X, N, V))
        pi = np.exp(self.next_token_log_probabilities())
        r = self.responses
        for t in range(self.max_length):
            rows = np.flatnonzero(r.mask[:, t])
            n, v = r.nodes[rows, t], r.tokens[rows, t]
            for x in range(X):
                out[x, rows, x, n, :] -= pi[x, n]
                out[x, rows, x, n, v] += 1.0
        return out

    # ------------------------------------------------------------------ MDP view
    def to_tabular_mdp(self) -> TabularMDP:
        r"""The equivalent finite-horizon MDP: states are (prompt, prefix), $\gamma = 1$, $H = L$.

        State ``x * N + n`` is node ``n`` of prompt ``x``; state ``X * N`` is an absorbing,
        zero-reward terminal state. Actions are the $K + 1$ token ids. Token ``v < K`` at a
        node of depth $d < L - 1$ moves deterministically to the child prefix; EOS, and any
        token at depth $L - 1$, move to the terminal state. The reward ``r[s, v]`` is the
        token reward plus, when the action completes a response $y$, the sequence reward
        $r(x, y)$. ``rho0`` puts $\rho(x)$ on the root of prompt $x$. Transitions are stored
        sparse (one successor per row). Use with :meth:`to_softmax_policy`; then
        ``rlmath.exact.objective(mdp, policy) == self.objective()``.
        """
        X, N, V, K, L = (
            self.n_prompts,
            self.n_nodes,
            self.n_tokens + 1,
            self.n_tokens,
            self.max_length,
        )
        S = X * N + 1
        terminal = X * N
        depth = np.concatenate([np.full(K**d, d) for d in range(L)])
        offsets = np.array([sum(K**j for j in range(d)) for d in range(L + 1)])
        code = np.arange(N) - offsets[depth]
        successor = np.full((N, V), -1, dtype=np.intp)  # within one prompt, -1 = terminal
        inner = depth < L - 1
        for v in range(K):
            successor[inner, v] = offsets[depth[inner] + 1] + code[inner] * K + v
        completed = np.full((N, V), -1, dtype=np.intp)  # response index completed by (n, v)
        completed[:, K] = np.arange(N)  # node n + EOS is response n
        last = depth == L - 1
        for v in range(K):
            completed[last, v] = N + code[last] * K + v
        columns = np.empty((S, V), dtype=np.intp)
        r = np.zeros((S, V))
        for x in range(X):
            columns[x * N : (x + 1) * N] = np.where(successor >= 0, x * N + successor, terminal)
            r[x * N : (x + 1) * N] = self.token_rewards[x] + np.where(
                completed >= 0, self.rewards[x][np.maximum(completed, 0)], 0.0
            )
        columns[terminal] = terminal
        P = sp.csr_array((np.ones(S * V), columns.ravel(), np.arange(S * V + 1)), shape=(S * V, S))
        rho0 = np.zeros(S)
        rho0[np.arange(X) * N] = self.prompt_probabilities
        return TabularMDP(P, r, rho0, gamma=1.0, horizon=L)

    def to_softmax_policy(self) -> SoftmaxPolicy:
        """The policy of :meth:`to_tabular_mdp`: ``theta`` as ``[X * N + 1, K + 1]`` (terminal row 0)."""
        flat = self.theta.reshape(self.n_prompts * self.n_nodes, self.n_tokens + 1)
        return SoftmaxPolicy(np.vstack([flat, np.zeros((1, self.n_tokens + 1))]))


def _check_beta(beta: Any) -> float:
    value = check_real_scalar(beta, "beta")
    if value < 0:
        raise ValueError(f"beta must be >= 0, got {value!r}")
    return value


def _gather_tokens(table: FloatArray, responses: Responses) -> FloatArray:
    """``table[x, n_t, y_t]`` for every response position, ``[X, R, L]`` (0 after the end)."""
    n = np.maximum(responses.nodes, 0)
    v = np.maximum(responses.tokens, 0)
    gathered: FloatArray = np.where(responses.mask[None], table[:, n, v], 0.0)
    return gathered


def _token_log_probabilities(log_pi: Any, responses: Responses) -> Any:
    """Works for real and complex ``log_pi`` (complex-step differentiation in tests)."""
    n = np.maximum(responses.nodes, 0)
    v = np.maximum(responses.tokens, 0)
    return np.where(responses.mask[None], log_pi[:, n, v], 0.0)


def _weighted_score_sum(log_pi: FloatArray, responses: Responses, weights: Any) -> FloatArray:
    X, N, V = log_pi.shape
    mask = responses.mask
    w = np.where(mask[None], weights, 0.0)  # [X, R, L]
    flat = (responses.nodes * V + responses.tokens)[mask]  # [M] over valid positions
    w_valid = w[:, mask]  # [X, M]
    # sum of w over the positions where (node, token) = (n, v), and where node = n
    chosen = np.zeros((X, N * V))
    visits = np.zeros((X, N))
    for x in range(X):
        chosen[x] = np.bincount(flat, weights=w_valid[x], minlength=N * V)
        visits[x] = np.bincount(responses.nodes[mask], weights=w_valid[x], minlength=N)
    gradient: FloatArray = chosen.reshape(X, N, V) - visits[:, :, None] * np.exp(log_pi)
    return gradient


# ----------------------------------------------------------------------------- groups
def group_indices(
    n_responses: int, group_size: int, *, ordered: bool = False, max_groups: int = MAX_GROUPS
) -> tuple[IntArray, FloatArray]:
    r"""All groups of $G$ response indices, and the log of each group's combinatorial factor.

    Multisets (``ordered=False``): the sorted tuples $i_1 \le \dots \le i_G$, with
    $\log \frac{G!}{\prod_i m_i!}$ (the number of orderings). Ordered tuples: all $R^G$ of
    them, in lexicographic order, each with factor 1 (log 0).

    Args:
        n_responses: $R \ge 1$.
        group_size: $G \ge 1$.
        ordered: enumerate ordered tuples instead of multisets.
        max_groups: refuse above this many groups.

    Returns:
        ``(groups, log_multiplicity)``: ``[M, G]`` int and ``[M]`` float64.

    Raises:
        ValueError: if the count exceeds ``max_groups`` (naming ``group_size`` and the count).

    Examples:
        >>> groups, log_m = group_indices(2, 2)
        >>> groups.tolist(), np.exp(log_m).round(12).tolist()
        ([[0, 0], [0, 1], [1, 1]], [1.0, 2.0, 1.0])
    """
    R = check_integer(n_responses, "n_responses", minimum=1)
    G = check_integer(group_size, "group_size", minimum=1)
    max_groups = check_integer(max_groups, "max_groups", minimum=1)
    count = count_groups(R, G, ordered=ordered)
    if count > max_groups:
        kind = "ordered tuples" if ordered else "multisets (type classes)"
        raise ValueError(
            f"group_size = {G} with {R} responses per prompt gives {count} {kind} per prompt, "
            f"more than max_groups = {max_groups}; use a smaller group_size or model"
        )
    check_array_bytes(8 * count * (G + 1), f"{count} groups of {G}", name="group_size", value=G)
    if ordered:
        groups = np.stack(np.unravel_index(np.arange(count), (R,) * G), axis=1).astype(np.intp)
        return groups, np.zeros(count)
    groups = np.arange(R, dtype=np.intp)[:, None]
    for _ in range(G - 1):  # append every index >= the last one
        last = groups[:, -1]
        extend = R - last
        parent = np.repeat(np.arange(groups.shape[0]), extend)
        start = np.cumsum(extend) - extend
        step = np.arange(parent.size) - np.repeat(start, extend)
        groups = np.column_stack([groups[parent], last[parent] + step])
    # log G! - sum_i log m_i!, with log m! = sum_{k<=m} log k along each run of equal indices
    run = np.ones(groups.shape[0])
    log_factor = np.zeros(groups.shape[0])
    for j in range(1, G):
        run = np.where(groups[:, j] == groups[:, j - 1], run + 1.0, 1.0)
        log_factor += np.log(run)
    return groups, math.lgamma(G + 1) - log_factor


@dataclass(frozen=True, eq=False)
class GroupBatch:
    r"""A batch of groups of $G$ responses to one prompt, handed to a group statistic.

    Attributes:
        model: the :class:`SequenceModel`.
        prompt: the prompt index $x$.
        responses: ``[B, G]`` int, response indices (rows of ``model.responses``); sorted
            within a row when the groups are multisets.
        log_probabilities: ``[B, G]``, $\log\pi_\theta(y_j \mid x)$.
        rewards: ``[B, G]``, $R(x, y_j)$ (sequence plus token rewards).
        lengths: ``[B, G]`` int, $|y_j|$ (EOS included).
    """

    model: SequenceModel
    prompt: int
    responses: IntArray
    log_probabilities: FloatArray
    rewards: FloatArray
    lengths: IntArray

    def permuted(self, order: Any) -> GroupBatch:
        """The same groups with members reordered by ``order`` (a permutation of ``range(G)``)."""
        idx = np.asarray(order)
        return GroupBatch(
            self.model,
            self.prompt,
            self.responses[:, idx],
            self.log_probabilities[:, idx],
            self.rewards[:, idx],
            self.lengths[:, idx],
        )


def expected_over_groups(
    model: SequenceModel,
    group_size: int,
    statistic: Callable[[GroupBatch], Any],
    *,
    method: Literal["multiset", "ordered"] = "multiset",
    batch_size: int = 65_536,
    max_groups: int = MAX_GROUPS,
    check_symmetry: bool = True,
) -> FloatArray:
    r"""Exact $\mathbb E_{x \sim \rho}\, \mathbb E_{y_{1:G} \sim \pi_\theta(\cdot|x)^{\otimes G}}[f(x, y_{1:G})]$.

    Ordered tuples (``method="ordered"``, any statistic):

    $$ \sum_x \rho(x) \sum_{i_1..i_G} \Big(\prod_{j} \pi_\theta(y_{i_j} \mid x)\Big)
       f(x, y_{i_1}, \dots, y_{i_G}). $$

    Multisets (``method="multiset"``, the default): valid only for a statistic invariant
    under permuting the group's members (true of every GRPO/RLOO loss and gradient, which
    sum a symmetric function over members), because then all orderings of a multiset
    contribute the same value:

    $$ \sum_x \rho(x) \sum_{i_1 \le \dots \le i_G} \frac{G!}{\prod_i m_i!}
       \Big(\prod_j \pi_\theta(y_{i_j} \mid x)\Big) f(x, y_{i_1}, \dots, y_{i_G}), $$

    $m_i$ the multiplicity of response $i$. Group probabilities are formed in log space.
    Groups of probability exactly 0 are skipped (the statistic is not evaluated on them).

    Args:
        model: a :class:`SequenceModel`.
        group_size: $G \ge 1$.
        statistic: maps a :class:`GroupBatch` of ``B`` groups to an array ``[B, ...]``
            (any trailing shape, the same for every batch), finite.
        method: ``"multiset"`` or ``"ordered"``.
        batch_size: groups per call of ``statistic`` (bounds its memory).
        max_groups: refuse above this many groups per prompt (default :data:`MAX_GROUPS`).
        check_symmetry: with multisets, evaluate ``statistic`` once more on up to 64 groups
            with their members cyclically shifted and raise ``ValueError`` if the value
            changes (beyond ``1e-9`` relative), i.e. the statistic is not permutation
            invariant and the multiset sum would be wrong.

    Returns:
        The expectation, float64 of the statistic's trailing shape (``[]`` for scalars).

    Raises:
        TypeError: if ``model`` is not a :class:`SequenceModel` or ``statistic`` not callable.
        ValueError: if the number of groups exceeds ``max_groups``, the statistic returns a
            wrong shape or a non-finite value, or fails the symmetry check.

    Examples:
        >>> import numpy as np
        >>> model = SequenceModel(np.zeros((1, 1, 2)), max_length=1,
        ...                       prompt_probabilities=[1.0], rewards=[[1.0, 0.0]])
        >>> # E[max reward in a group of 2] = 1 - P(both rewards 0) = 1 - 1/4
        >>> float(expected_over_groups(model, 2, lambda g: g.rewards.max(axis=1)))
        0.75
    """
    if not isinstance(model, SequenceModel):
        raise TypeError(f"model must be a SequenceModel, got {type(model).__name__}")
    if not callable(statistic):
        raise TypeError(f"statistic must be callable, got {type(statistic).__name__}")
    if method not in ("multiset", "ordered"):
        raise ValueError(f"method must be 'multiset' or 'ordered', got {method!r}")
    G = check_integer(group_size, "group_size", minimum=1)
    batch_size = check_integer(batch_size, "batch_size", minimum=1)
    if not isinstance(check_symmetry, bool):
        raise TypeError(f"check_symmetry must be a bool, got {type(check_symmetry).__name__}")
    groups, log_multiplicity = group_indices(
        model.n_responses, G, ordered=method == "ordered", max_groups=max_groups
    )
    log_p = model.log_probabilities()
    rewards = model.total_rewards()
    lengths = model.responses.lengths
    total: FloatArray | None = None
    trailing: tuple[int, ...] | None = None

    def evaluate(x: int, rows: IntArray) -> FloatArray:
        nonlocal trailing
        members = groups[rows]
        batch = GroupBatch(
            model, x, members, log_p[x][members], rewards[x][members], lengths[members]
        )
        value = np.asarray(statistic(batch))
        if np.iscomplexobj(value) or value.dtype.kind not in "biuf":
            raise TypeError(f"statistic must return real numbers, got dtype {value.dtype}")
        value = value.astype(np.float64, copy=False)
        if value.ndim == 0 or value.shape[0] != rows.size:
            raise ValueError(
                f"statistic must return an array [B, ...] with B = {rows.size} groups, "
                f"got shape {value.shape}"
            )
        if trailing is None:
            trailing = value.shape[1:]
        elif value.shape[1:] != trailing:
            raise ValueError(
                f"statistic must return the same trailing shape for every batch, got "
                f"{value.shape[1:]} after {trailing}"
            )
        check_finite(value, "statistic(group)")
        return value

    for x in range(model.n_prompts):
        if model.prompt_probabilities[x] == 0:
            continue
        log_weight = log_multiplicity + log_p[x][groups].sum(axis=1)
        weight = np.exp(log_weight)
        live = np.flatnonzero(weight > 0)
        if check_symmetry and method == "multiset" and G > 1 and live.size:
            sample = live[np.unique(np.linspace(0, live.size - 1, min(64, live.size)).astype(int))]
            members = groups[sample]
            batch = GroupBatch(
                model, x, members, log_p[x][members], rewards[x][members], lengths[members]
            )
            shifted = np.roll(np.arange(G), 1)
            a = evaluate(x, sample)
            b = np.asarray(statistic(batch.permuted(shifted)), dtype=np.float64)
            scale = max(float(np.abs(a).max(initial=0.0)), 1e-300)
            if b.shape != a.shape or float(np.abs(a - b).max(initial=0.0)) > 1e-9 * scale:
                raise ValueError(
                    "statistic is not invariant under permuting a group's members, so "
                    "method='multiset' would be wrong; use method='ordered' (or pass "
                    "check_symmetry=False if the difference is only rounding)"
                )
        for start in range(0, live.size, batch_size):
            rows = live[start : start + batch_size]
            value = evaluate(x, rows)
            contribution = model.prompt_probabilities[x] * np.tensordot(
                weight[rows], value, axes=(0, 0)
            )
            total = contribution if total is None else total + contribution
    if total is None:  # unreachable: some prompt has positive probability and groups exist
        raise ValueError("no group of positive probability")
    return np.asarray(total, dtype=np.float64)
