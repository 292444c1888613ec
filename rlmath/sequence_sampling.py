r"""Sampling responses token by token from a :class:`~rlmath.SequenceModel`: the LLM sampler.

The Monte-Carlo legs of the LLM claims draw prompts and responses the way an inference engine
does, **token by token** from the next-token probabilities, never from the enumerated
sequence probabilities of :mod:`rlmath.sequence_model` (so a leg that compares sampled means
with an exact value computed by enumeration compares two code paths):

$$ x \sim \rho, \qquad y_t \sim \pi_\theta(\cdot \mid x, y_{<t}) = \mathrm{softmax}(\theta_{x, n_t}),
   \quad t = 1, 2, \dots \text{ until } y_t = \mathrm{EOS} \text{ or } t = L, $$

with $n_t$ the node of the prefix $y_{<t}$ (node $\mathrm{off}_d + c$ for a prefix of depth
$d$ whose tokens read as a base-$K$ number give $c$; :mod:`rlmath.sequence_model`'s
numbering). The loop runs over the positions $t < L$ only and is vectorised over the batch.

Conventions (those of :mod:`rlmath.sequence_model` and of the ``response_mask`` of TRL,
OpenRLHF and verl):

- Token arrays are ``[B, T]`` int with **time on axis 1**, ``T = L`` (the model's
  ``max_length``) and **responses only** (no prompt tokens); position ``t`` (0-based column)
  holds $y_{t+1}$. After a response's end the row is padded with :data:`PAD` (``-1``).
- **EOS is a response token**: ``response_mask`` is 1 on it, and it counts in ``lengths``.
  A response that reaches $L$ ordinary tokens is truncated (no EOS appended).
- ``response_indices`` are rows of ``model.responses`` (the enumeration order), computed from
  the sampled tokens by the numbering rule (response $i < N$: node $i$'s prefix then EOS;
  response $N + c$: the truncated response with code $c$), so per-response tables such as
  ``model.total_rewards()[prompts, response_indices]`` can be looked up.
- Each categorical draw uses one uniform $u \sim U[0, 1)$ and the inverse of the cumulative
  distribution $F_k = \sum_{j \le k} p_j / \sum_j p_j$: the outcome is
  $\#\{k : F_k \le u\}$, which never picks an outcome of probability 0 and, since
  $F_{\text{last}} = 1$ exactly, never leaves the range.

References:
    Williams, R. J. "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8, 1992 (the score function of a sampled
    sequence).
    Devroye, L. *Non-Uniform Random Variate Generation*, Springer, 1986, Sec. III.2.1
    (inversion for discrete distributions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlmath._validation import (
    FloatArray,
    as_float_array,
    check_array_bytes,
    check_finite,
    check_integer,
)
from rlmath.sequence_model import SequenceModel

__all__ = [
    "PAD",
    "SampledResponses",
    "sample_groups",
    "sample_responses",
    "sampled_log_probabilities",
    "score_sums",
]

#: Padding of ``tokens`` and ``nodes`` after a response's end.
PAD: int = -1

IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class SampledResponses:
    r"""A batch of $B$ sampled responses, in groups of ``group_size`` consecutive rows.

    Attributes:
        tokens: ``[B, T]`` int, $y_{t+1}$ in column $t$ (``T = L``), :data:`PAD` after the end.
        nodes: ``[B, T]`` int, the node (prefix $y_{\le t}$) at which column $t$'s token was
            drawn, :data:`PAD` after the end.
        response_mask: ``[B, T]`` bool, 1 on response tokens (EOS included).
        lengths: ``[B]`` int, $|y|$ (EOS included).
        ends_with_eos: ``[B]`` bool, false for responses truncated at $L$.
        response_indices: ``[B]`` int, the row of ``model.responses`` of each response.
        prompts: ``[B]`` int, the prompt $x$ of each response.
        groups: ``[B]`` int, the group of each response: rows ``g G .. g G + G - 1`` form
            group ``g`` (one prompt, ``G = group_size``).
        group_size: $G$ (1 for :func:`sample_responses`).
    """

    tokens: IntArray
    nodes: IntArray
    response_mask: BoolArray
    lengths: IntArray
    ends_with_eos: BoolArray
    response_indices: IntArray
    prompts: IntArray
    groups: IntArray
    group_size: int

    @property
    def n_responses(self) -> int:
        """$B$, the number of sampled responses."""
        return int(self.lengths.shape[0])

    @property
    def n_groups(self) -> int:
        """$B / G$, the number of groups."""
        return self.n_responses // self.group_size

    def grouped(self, values: Any) -> NDArray[Any]:
        """``values`` ``[B, ...]`` reshaped to ``[n_groups, G, ...]`` (rows of a group together)."""
        array = np.asarray(values)
        if array.ndim == 0 or array.shape[0] != self.n_responses:
            raise ValueError(
                f"values must have shape [B, ...] with B = {self.n_responses}, got {array.shape}"
            )
        return array.reshape((self.n_groups, self.group_size) + array.shape[1:])


def _check_model(model: Any) -> SequenceModel:
    if not isinstance(model, SequenceModel):
        raise TypeError(f"model must be a SequenceModel, got {type(model).__name__}")
    return model


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), got "
            f"{type(rng).__name__}"
        )
    return rng


def _cumulative(probabilities: FloatArray) -> FloatArray:
    """$F_k = \\sum_{j \\le k} p_j / \\sum_j p_j$ along the last axis (last entry exactly 1)."""
    cumulative = np.cumsum(probabilities, axis=-1)
    result: FloatArray = cumulative / cumulative[..., -1:]
    return result


def _inverse_cdf(cumulative: FloatArray, uniforms: FloatArray) -> IntArray:
    """Outcome $\\#\\{k : F_k \\le u\\}$ per row: ``cumulative`` ``[B, V]``, ``uniforms`` ``[B]``."""
    outcome: IntArray = (cumulative <= uniforms[:, None]).sum(axis=1).astype(np.intp)
    return outcome


def _check_prompts(prompts: Any, n: int, n_prompts: int) -> IntArray:
    array = np.asarray(prompts)
    if array.dtype == np.bool_ or array.dtype.kind not in "iu":
        raise TypeError(f"prompts must be integers, got dtype {array.dtype}")
    if array.ndim == 0:
        array = np.full(n, int(array))
    if array.shape != (n,):
        raise ValueError(
            f"prompts must be an integer or have shape [n] = {(n,)}, got {array.shape}"
        )
    if n and (array.min() < 0 or array.max() >= n_prompts):
        raise ValueError(
            f"prompts must be in [0, {n_prompts - 1}] (the model has {n_prompts} prompts), got "
            f"values in [{int(array.min())}, {int(array.max())}]"
        )
    result: IntArray = array.astype(np.intp)
    return result


def sample_responses(
    model: SequenceModel, n: int, rng: np.random.Generator, *, prompts: Any = None
) -> SampledResponses:
    r"""Draw $n$ prompts $x \sim \rho$ and one response to each, token by token.

    $$ y_t \sim \pi_\theta(\cdot \mid x, y_{<t}) = \mathrm{softmax}(\theta_{x, n_t}),
       \qquad \Pr(y \mid x) = \prod_{t=1}^{|y|} \pi_\theta(y_t \mid x, y_{<t}), $$

    stopping at EOS or after $L$ tokens. The randomness is one uniform array
    ``rng.random((n, L + 1))``: column 0 draws the prompt (unused when ``prompts`` is given),
    column $t + 1$ the token at position $t$, by inversion of the next-token CDF. So row $b$
    depends only on row $b$ of the uniforms, and the first $m$ responses of a sample of
    $n > m$ are those of a sample of $m$ from the same generator state.

    Args:
        model: a :class:`~rlmath.SequenceModel` (``[X, N, K + 1]`` logits, EOS id ``K``).
        n: $B \ge 1$, the number of responses.
        rng: a ``numpy.random.Generator``.
        prompts: ``None`` (draw from $\rho$), one prompt id for every row, or ``[n]`` ids.

    Returns:
        :class:`SampledResponses` with ``[n, L]`` token arrays, ``groups = arange(n)`` and
        ``group_size = 1``.

    Raises:
        TypeError: if ``model`` is not a SequenceModel, ``rng`` not a Generator, ``n`` not an
            integer or ``prompts`` not integers.
        ValueError: if ``n < 1``, ``prompts`` has the wrong shape or an id out of range, or
            the arrays would exceed ``rlmath._validation.MAX_ARRAY_BYTES``.

    Examples:
        >>> import numpy as np
        >>> from rlmath import SequenceModel
        >>> model = SequenceModel(np.zeros((1, 2, 2)), max_length=2, prompt_probabilities=[1.0])
        >>> sample = sample_responses(model, 4, np.random.default_rng(0))
        >>> sample.tokens.shape, sample.response_mask.sum(axis=1).tolist() == sample.lengths.tolist()
        ((4, 2), True)
    """
    model = _check_model(model)
    B = check_integer(n, "n", minimum=1)
    rng = _check_rng(rng)
    X, N, V = model.theta.shape
    K, L = V - 1, model.max_length
    check_array_bytes(8 * B * (L + 1) * 6, f"[n, L] sample arrays (L = {L})", name="n", value=B)
    uniforms = rng.random((B, L + 1))
    if prompts is None:
        x = _inverse_cdf(
            np.broadcast_to(_cumulative(model.prompt_probabilities), (B, X)), uniforms[:, 0]
        )
    else:
        x = _check_prompts(prompts, B, X)
    cumulative = _cumulative(np.exp(model.next_token_log_probabilities()))  # [X, N, V]
    tokens = np.full((B, L), PAD, dtype=np.intp)
    nodes = np.full((B, L), PAD, dtype=np.intp)
    lengths = np.full(B, L, dtype=np.intp)
    ends_with_eos = np.zeros(B, dtype=bool)
    indices = np.zeros(B, dtype=np.intp)
    code = np.zeros(B, dtype=np.intp)  # the prefix's tokens as a base-K number
    alive = np.arange(B)
    offset = 0  # off_t = sum_{j < t} K^j, the first node of depth t
    for t in range(L):
        node = offset + code[alive]
        token = _inverse_cdf(cumulative[x[alive], node], uniforms[alive, t + 1])
        tokens[alive, t] = token
        nodes[alive, t] = node
        stop = token == K
        ended = alive[stop]
        lengths[ended] = t + 1
        ends_with_eos[ended] = True
        indices[ended] = node[stop]  # response i < N: node i's prefix, then EOS
        alive = alive[~stop]
        code[alive] = code[alive] * K + token[~stop]
        offset += K**t
    indices[alive] = N + code[alive]  # truncated at L: response N + c
    return SampledResponses(
        tokens=tokens,
        nodes=nodes,
        response_mask=tokens != PAD,
        lengths=lengths,
        ends_with_eos=ends_with_eos,
        response_indices=indices,
        prompts=x,
        groups=np.arange(B, dtype=np.intp),
        group_size=1,
    )


def sample_groups(
    model: SequenceModel, n_groups: int, group_size: int, rng: np.random.Generator
) -> SampledResponses:
    r"""Draw ``n_groups`` prompts $x_g \sim \rho$ and $G$ i.i.d. responses to each.

    $$ x_g \sim \rho, \qquad y_{g,1}, \dots, y_{g,G} \overset{\text{i.i.d.}}{\sim}
       \pi_\theta(\cdot \mid x_g) \quad \text{(token by token, as in } :func:`sample_responses`). $$

    The prompts come from ``rng.random(n_groups)`` (inversion of $\rho$'s CDF), then the
    responses from :func:`sample_responses` with each prompt repeated $G$ times.

    Args:
        model: a :class:`~rlmath.SequenceModel`.
        n_groups: number of groups $\ge 1$.
        group_size: $G \ge 1$.
        rng: a ``numpy.random.Generator``.

    Returns:
        :class:`SampledResponses` with ``B = n_groups * G`` rows, group-major: rows
        ``g G .. g G + G - 1`` are group ``g``, ``groups = repeat(arange(n_groups), G)``.

    Raises:
        TypeError: for a wrong type of ``model``, ``rng``, ``n_groups`` or ``group_size``.
        ValueError: if ``n_groups < 1`` or ``group_size < 1``, or the arrays would be too large.

    Examples:
        >>> import numpy as np
        >>> from rlmath import SequenceModel
        >>> model = SequenceModel(np.zeros((2, 1, 2)), max_length=1, prompt_probabilities=[0.5, 0.5])
        >>> batch = sample_groups(model, 3, 4, np.random.default_rng(1))
        >>> batch.tokens.shape, batch.groups.tolist()[:5], batch.grouped(batch.prompts).shape
        ((12, 1), [0, 0, 0, 0, 1], (3, 4))
    """
    model = _check_model(model)
    count = check_integer(n_groups, "n_groups", minimum=1)
    G = check_integer(group_size, "group_size", minimum=1)
    rng = _check_rng(rng)
    X = model.n_prompts
    check_array_bytes(
        8 * count * G * (model.max_length + 1) * 6,
        f"[n_groups * group_size, L] sample arrays (L = {model.max_length})",
        name="n_groups",
        value=count,
    )
    x = _inverse_cdf(
        np.broadcast_to(_cumulative(model.prompt_probabilities), (count, X)), rng.random(count)
    )
    sample = sample_responses(model, count * G, rng, prompts=np.repeat(x, G))
    return SampledResponses(
        tokens=sample.tokens,
        nodes=sample.nodes,
        response_mask=sample.response_mask,
        lengths=sample.lengths,
        ends_with_eos=sample.ends_with_eos,
        response_indices=sample.response_indices,
        prompts=sample.prompts,
        groups=np.repeat(np.arange(count, dtype=np.intp), G),
        group_size=G,
    )


def _check_sample(model: SequenceModel, sample: Any) -> SampledResponses:
    if not isinstance(sample, SampledResponses):
        raise TypeError(f"sample must be SampledResponses, got {type(sample).__name__}")
    if sample.tokens.shape[1] != model.max_length:
        raise ValueError(
            f"sample must come from a model with max_length = {model.max_length}, got "
            f"{sample.tokens.shape[1]} token columns"
        )
    if (
        int(sample.tokens.max(initial=PAD)) > model.n_tokens
        or int(sample.prompts.max(initial=0)) >= model.n_prompts
        or int(sample.nodes.max(initial=PAD)) >= model.n_nodes
    ):
        raise ValueError("sample must come from a model of the same vocabulary, nodes and prompts")
    return sample


def sampled_log_probabilities(model: SequenceModel, sample: SampledResponses) -> FloatArray:
    r"""$\log\pi_\theta(y_b \mid x_b) = \sum_t \log\pi_\theta(y_{b,t} \mid x_b, y_{b,<t})$, ``[B]``.

    Summed over the sampled tokens (``response_mask``) from the next-token log-probabilities,
    not looked up in the enumeration.

    Raises:
        TypeError: if ``model`` or ``sample`` has the wrong type.
        ValueError: if ``sample`` does not fit ``model``.
    """
    model = _check_model(model)
    sample = _check_sample(model, sample)
    log_pi = model.next_token_log_probabilities()
    mask = sample.response_mask
    per_token = np.where(
        mask,
        log_pi[sample.prompts[:, None], np.maximum(sample.nodes, 0), np.maximum(sample.tokens, 0)],
        0.0,
    )
    result: FloatArray = per_token.sum(axis=1)
    return result


def score_sums(model: SequenceModel, sample: SampledResponses, weights: Any) -> FloatArray:
    r"""Per group, $\sum_{b \in g} \sum_t w_{b,t}\, \nabla_\theta \log\pi_\theta(y_{b,t} \mid x_b, y_{b,<t})$.

    With the softmax score at node $n$ of prompt $x$,

    $$ \frac{\partial \log\pi_\theta(v' \mid x, n)}{\partial\theta_{x,n,v}}
       = \mathbb 1[v' = v] - \pi_\theta(v \mid x, n), $$

    computed from the sampled nodes and tokens and the next-token probabilities. The weights
    are detached (advantages, rewards to go, normalisers): the result is the gradient of the
    surrogate $\sum w \log\pi$ of each group.

    Args:
        model: the :class:`~rlmath.SequenceModel` that produced ``sample``.
        sample: :class:`SampledResponses`.
        weights: ``[B]`` (one weight per response, on every one of its tokens) or ``[B, T]``
            per token (entries outside ``response_mask`` are ignored); finite.

    Returns:
        ``[n_groups, X, N, K + 1]`` float64 (``n_groups = B`` for :func:`sample_responses`).

    Raises:
        TypeError: for a wrong type of ``model`` or ``sample``, or non-numeric weights.
        ValueError: for weights of the wrong shape or non-finite, or too large an output.
    """
    model = _check_model(model)
    sample = _check_sample(model, sample)
    X, N, V = model.theta.shape
    B, T = sample.tokens.shape
    w = as_float_array(weights, "weights")
    if w.shape == (B,):
        w = np.broadcast_to(w[:, None], (B, T))
    elif w.shape != (B, T):
        raise ValueError(
            f"weights must have shape [B] = {(B,)} or [B, T] = {(B, T)}, got {w.shape}"
        )
    check_finite(w, "weights")
    S = sample.n_groups
    check_array_bytes(
        8 * S * X * N * V * 2,
        f"[n_groups, X, N, K + 1] score sums (n_groups = {S})",
        name="sample",
        value=f"a sample of {S} groups",
    )
    rows, columns = np.nonzero(sample.response_mask)
    cell = (sample.groups[rows] * X + sample.prompts[rows]) * N + sample.nodes[rows, columns]
    w_valid = w[rows, columns]
    chosen = np.bincount(
        cell * V + sample.tokens[rows, columns], weights=w_valid, minlength=S * X * N * V
    ).reshape(S, X, N, V)
    visits = np.bincount(cell, weights=w_valid, minlength=S * X * N).reshape(S, X, N)
    probabilities = np.exp(model.next_token_log_probabilities())
    result: FloatArray = np.asarray(
        chosen - visits[..., None] * probabilities[None], dtype=np.float64
    )
    return result
