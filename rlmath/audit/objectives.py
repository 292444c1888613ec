r"""The named objectives of a gradient audit and their exact gradients, by enumeration of the model.

Each objective is a function of the logits ``theta[x, n, :]`` of a
:class:`~rlmath.sequence_model.SequenceModel`; its gradient at the model's $\theta$ is computed
here from the model alone (enumeration of responses and prefixes, score functions, closed-form
per-node divergences), never from a loss, so that comparing a loss's expected gradient with it
is a comparison of two independent computations.

Objectives (family ``"llm"``; $\rho$ the prompt law, $R(x, y)$ the total reward, $|y|$ the
length with EOS, $d_\theta(x, n)$ the probability that $\pi_\theta$ generates prefix $n$,
$\mathrm{KL}_n(p \| q) = \mathrm{KL}(p(\cdot|x,n) \,\|\, q(\cdot|x,n))$):

$$ J = \sum_x \rho(x) \sum_y \pi_\theta(y|x) R(x, y), \qquad
   \mathrm{KL}(\pi \| \mathrm{ref}) = \sum_x \rho(x) \sum_y \pi_\theta(y|x)
   \log\frac{\pi_\theta(y|x)}{\pi_\mathrm{ref}(y|x)}, $$

$$ \text{token KL}(\pi \| \mathrm{ref}) = \sum_x \rho(x) \sum_n \bar d(x, n)\,
   \mathrm{KL}_n(\pi_\theta \| \pi_\mathrm{ref}), \qquad
   \text{token KL}(\mathrm{ref} \| \pi) = \sum_x \rho(x) \sum_n \bar d(x, n)\,
   \mathrm{KL}_n(\pi_\mathrm{ref} \| \pi_\theta), \quad \bar d = d_\theta \text{ held fixed}, $$

(the per-token k2 and k3 in the loss: claims ``llm-token-k2-loss-partial-kl-gradient``,
``llm-token-k3-loss-per-token-forward-kl``),

$$ \text{length-reweighted } J = \sum_x \rho(x) \sum_y \pi_\theta(y|x)
   \frac{R(x, y) - \bar\mu_x}{|y|}, \quad \bar\mu_x = \mathbb E_{\pi_\theta}[R \mid x]
   \text{ held fixed} $$

(claim ``grpo-length-normalisation-bias``: the 1/|y| token mean with the group mean ascends
$(1 - 1/G)$ times this), and for binary rewards

$$ \text{prompt-reweighted } J = \sum_x \rho(x)\, \Phi_G(p_x), \qquad
   \Phi_G'(p) = c_G(p) = \sum_{k=0}^{G-1} \binom{G-1}{k} p^k (1-p)^{G-1-k}
   \big(a_+(k+1) - a_-(k)\big), $$

$p_x = \Pr_{\pi_\theta}[R = 1 \mid x]$, $a_\pm(m)$ the advantages of a success / failure in a
group with $m$ successes, $(\pm(1 - m/G) \text{ or } -m/G)/(s_m + \epsilon)$ with
$s_m = \sqrt{m(G-m)/(G(G - \mathrm{ddof}))}$, and $0$ for a group of equal rewards (claim
``group-std-normalisation``). Off-policy (responses from a behaviour policy $\mu$), the
**token-IS surrogate** $\sum_x \rho(x) \sum_n d_\mu(x, n) \sum_v \pi_\theta(v|x,n)
Q_\mu(x, n, v)$ with $d_\mu$, $Q_\mu$ frozen (claim ``token-vs-sequence-correction``).

Sign convention: objectives whose name starts with ``J`` are maximised, divergences (names
starting with ``KL`` or ``token KL``) minimised; a loss follows objective $O$ with factor
$c > 0$ when $\mathbb E[\nabla_\theta \mathcal L] = -c \nabla O$ (maximised) or
$+c \nabla O$ (minimised): :attr:`NamedObjective.loss_direction`.

References:
    Williams 1992 (score function); Shao et al. 2024 (GRPO, eq. (3)); Liu et al. 2025
    (Dr. GRPO, Sec. 3.1); Tang and Munos 2025, arXiv:2506.09477 (per-token KL gradients);
    Yao et al. 2025 (token-level importance correction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import binom

from rlmath._validation import FloatArray, check_integer, check_real_scalar
from rlmath.sequence_model import SequenceModel

__all__ = [
    "ATOMIC_OBJECTIVES",
    "NamedObjective",
    "grpo_prompt_factor",
    "named_objective_gradients",
    "named_objectives",
    "node_reach_probabilities",
]

#: The objectives a loss's expected gradient is decomposed on (combinations of them are
#: found by least squares). The combined names (``J - beta ...``) are candidates for a
#: verdict only.
ATOMIC_OBJECTIVES: tuple[str, ...] = (
    "J",
    "length-reweighted J",
    "prompt-reweighted J",
    "token-IS surrogate",
    "KL(pi||ref)",
    "KL(ref||pi)",
    "token KL(pi||ref)",
    "token KL(ref||pi)",
)


@dataclass(frozen=True, eq=False)
class NamedObjective:
    r"""One named objective and its exact gradient at the model's $\theta$.

    Attributes:
        name: the name (a key of :func:`named_objective_gradients`).
        gradient: $\nabla_\theta O$, ``[X, N, K + 1]``.
        sense: ``"maximise"`` or ``"minimise"``.
        description: what the objective is, in words (used in audit summaries).
        claim: id of the claim that says which estimator follows it, or ``None``.
        atomic: whether it is a basis objective of the decomposition.
    """

    name: str
    gradient: FloatArray
    sense: Literal["maximise", "minimise"]
    description: str
    claim: str | None
    atomic: bool

    @property
    def loss_direction(self) -> FloatArray:
        r"""$-\nabla O$ (maximised) or $+\nabla O$ (minimised): what a loss following $O$ descends."""
        return -self.gradient if self.sense == "maximise" else self.gradient


def node_reach_probabilities(model: SequenceModel, *, theta: Any = None) -> FloatArray:
    r"""$d(x, n)$: the probability that the policy generates prefix $n$ of prompt $x$, ``[X, N]``.

    $d(x, 0) = 1$ and $d(x, \text{child}(n, v)) = d(x, n)\, \pi(v \mid x, n)$ over the prefix
    tree (breadth-first numbering of :mod:`rlmath.sequence_model`: the child of node
    $\mathrm{off}_d + c$ by token $v < K$ is $\mathrm{off}_{d+1} + cK + v$).

    Args:
        model: a :class:`~rlmath.sequence_model.SequenceModel`.
        theta: logits ``[X, N, K + 1]`` of the policy (default ``model.theta``).

    Returns:
        ``[X, N]`` float64.

    Examples:
        >>> model = SequenceModel(np.zeros((1, 3, 3)), max_length=2,
        ...                       prompt_probabilities=[1.0])
        >>> node_reach_probabilities(model).round(6).tolist()  # 3 tokens: 1/3 each
        [[1.0, 0.333333, 0.333333]]
    """
    if not isinstance(model, SequenceModel):
        raise TypeError(f"model must be a SequenceModel, got {type(model).__name__}")
    table = model.theta if theta is None else np.asarray(theta, dtype=np.float64)
    if table.shape != model.theta.shape:
        raise ValueError(f"theta must have shape {model.theta.shape}, got {table.shape}")
    shift = table.max(axis=-1, keepdims=True)
    pi = np.exp(table - shift)
    pi /= pi.sum(axis=-1, keepdims=True)
    K, L = model.n_tokens, model.max_length
    offsets = [sum(K**j for j in range(d)) for d in range(L + 1)]
    reach = np.zeros((model.n_prompts, model.n_nodes))
    reach[:, 0] = 1.0
    for d in range(L - 1):
        codes = np.arange(K**d)
        parents = offsets[d] + codes
        for v in range(K):
            children = offsets[d + 1] + codes * K + v
            reach[:, children] = reach[:, parents] * pi[:, parents, v]
    return reach


def grpo_prompt_factor(p: float, group_size: int, *, ddof: int = 1, epsilon: float = 0.0) -> float:
    r"""$c_G(p)$: the factor of $\nabla p_x$ in GRPO's expected update with binary rewards.

    $$ c_G(p) = \sum_{k=0}^{G-1} \binom{G-1}{k} p^k (1-p)^{G-1-k} \big(a_+(k+1) - a_-(k)\big),
       \quad a_+(m) = \frac{1 - m/G}{s_m + \epsilon}, \quad a_-(m) = \frac{-m/G}{s_m + \epsilon},
       \quad s_m = \sqrt{\frac{m (G - m)}{G (G - \mathrm{ddof})}}, $$

    with $a_+(G) = a_-(0) = 0$ (a group of equal rewards has advantage 0, the convention of
    :func:`rlmath.llm_reference.grpo_advantages`).

    Args:
        p: success probability in $[0, 1]$.
        group_size: $G \ge 2$.
        ddof: 0 (population std) or 1 (sample std, ``torch.std``'s default).
        epsilon: $\epsilon \ge 0$ added to the std.

    Returns:
        $c_G(p)$.

    Examples:
        >>> round(grpo_prompt_factor(0.3, 2), 12) == round(2**-0.5, 12)  # G = 2: 1/sqrt(2)
        True

    References:
        Shao et al. 2024, Sec. 4.1.2; Liu et al. 2025, Sec. 3.1.
    """
    p = check_real_scalar(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    G = check_integer(group_size, "group_size", minimum=2)
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
    eps = check_real_scalar(epsilon, "epsilon")
    if eps < 0:
        raise ValueError(f"epsilon must be >= 0, got {eps!r}")

    m = np.arange(1, G, dtype=np.float64)  # 1..G-1 successes: a group that is not tied
    std = np.sqrt(m * (G - m) / (G * (G - ddof)))
    a_plus = np.concatenate([(1.0 - m / G) / (std + eps), [0.0]])  # a_+(1..G)
    a_minus = np.concatenate([[0.0], (-m / G) / (std + eps)])  # a_-(0..G-1)
    weights = binom.pmf(np.arange(G), G - 1, p)  # Binomial(G - 1, p), no overflow for large G
    return float(weights @ (a_plus - a_minus))


def _next_token_probabilities(table: FloatArray) -> tuple[FloatArray, FloatArray]:
    shift = table.max(axis=-1, keepdims=True)
    log_pi = table - shift - np.log(np.exp(table - shift).sum(axis=-1, keepdims=True))
    return np.exp(log_pi), log_pi


def _token_kl_gradients(model: SequenceModel) -> tuple[FloatArray, FloatArray]:
    r"""$\sum_n \rho\, d_\theta(n) \nabla \mathrm{KL}_n$ in both directions, $d_\theta$ fixed.

    For $p = \mathrm{softmax}(\theta_n)$: $\nabla_{\theta_n} \mathrm{KL}(p \| q) =
    p \odot (\log p - \log q - \mathrm{KL}(p \| q))$ and $\nabla_{\theta_n} \mathrm{KL}(q \| p)
    = p - q$ (differentiate $\sum_v p_v \log(p_v/q_v)$ and $-\sum_v q_v \log p_v$ with
    $\partial \log p_v / \partial \theta_w = \mathbb 1[v = w] - p_w$).
    """
    pi, log_pi = _next_token_probabilities(model.theta)
    ref, log_ref = _next_token_probabilities(model.reference_theta)
    weight = model.prompt_probabilities[:, None] * node_reach_probabilities(model)
    kl_nodes = (pi * (log_pi - log_ref)).sum(axis=-1, keepdims=True)
    forward = weight[:, :, None] * pi * (log_pi - log_ref - kl_nodes)
    backward = weight[:, :, None] * (pi - ref)
    return forward, backward


def _is_binary(values: FloatArray) -> bool:
    return bool(np.all((values == 0.0) | (values == 1.0)))


def _token_is_surrogate_gradient(model: SequenceModel, behaviour: SequenceModel) -> FloatArray:
    r"""$\nabla_\theta \sum_x \rho \sum_n d_\mu(n) \sum_v \pi_\theta(v|n) Q_\mu(n, v)$, $d_\mu, Q_\mu$ fixed.

    $Q_\mu(n, v) = \mathbb E_\mu[R \mid (n, v) \in y]$ (total reward: the rewards earned before
    the token add a constant per node, which the softmax gradient
    $\pi_v (Q_v - \sum_w \pi_w Q_w)$ removes).
    """
    X, N, V = model.theta.shape
    r = model.responses
    mu_y = behaviour.probabilities()  # [X, R]
    rewards = model.total_rewards()
    flat = (r.nodes * V + r.tokens)[r.mask]  # [M]
    response_of = np.broadcast_to(np.arange(r.count)[:, None], r.mask.shape)[r.mask]
    pi, _ = _next_token_probabilities(model.theta)
    mu, _ = _next_token_probabilities(behaviour.theta)
    reach_mu = node_reach_probabilities(behaviour)
    gradient = np.zeros((X, N, V))
    for x in range(X):
        value = np.bincount(flat, weights=(mu_y[x] * rewards[x])[response_of], minlength=N * V)
        through = (reach_mu[x][:, None] * mu[x]).ravel()  # P_mu((n, v) in y) = d_mu(n) mu(v|n)
        q = np.divide(value, through, out=np.zeros(N * V), where=through > 0).reshape(N, V)
        centred = q - (pi[x] * q).sum(axis=-1, keepdims=True)
        gradient[x] = model.prompt_probabilities[x] * reach_mu[x][:, None] * pi[x] * centred
    return gradient


def named_objectives(
    model: SequenceModel,
    *,
    family: str = "llm",
    beta: float = 0.1,
    group_size: int = 4,
    ddof: int = 1,
    std_epsilon: float = 0.0,
    behaviour: SequenceModel | None = None,
) -> dict[str, NamedObjective]:
    r"""The library of named objectives with their exact gradients (see the module docstring).

    Args:
        model: a :class:`~rlmath.sequence_model.SequenceModel` ($\theta = \theta_\mathrm{old}$).
        family: ``"llm"`` (the only family with a library so far).
        beta: $\beta \ge 0$ of the regularised objectives.
        group_size: $G$ (for the prompt-reweighted objective).
        ddof: the std's ddof of the prompt-reweighted objective (0 or 1).
        std_epsilon: the $\epsilon$ added to the std in the prompt-reweighted objective.
        behaviour: the sampling policy $\mu$ as a model with the same shapes (only its
            ``theta`` is used), or ``None`` (on-policy). Off-policy adds the token-IS surrogate.

    Returns:
        ``{name: NamedObjective}`` in library order. "prompt-reweighted J" is present only
        when every reward is 0 or 1 and ``group_size >= 2``; "token-IS surrogate" only with a
        behaviour policy.

    Raises:
        TypeError: if ``model`` is not a SequenceModel.
        ValueError: for an unknown ``family``, ``beta < 0`` or a behaviour model of other
            shapes.

    Examples:
        >>> model = SequenceModel.random(1, 1, 2, seed=0)
        >>> list(named_objectives(model))[:3]
        ['J', 'J - beta KL(pi||ref)', 'J - beta KL(ref||pi)']
    """
    if not isinstance(model, SequenceModel):
        raise TypeError(f"model must be a SequenceModel, got {type(model).__name__}")
    if family != "llm":
        raise ValueError(f"family must be 'llm' for a SequenceModel, got {family!r}")
    beta = check_real_scalar(beta, "beta")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    G = check_integer(group_size, "group_size", minimum=1)
    if behaviour is not None:
        if not isinstance(behaviour, SequenceModel):
            raise TypeError(f"behaviour must be a SequenceModel, got {type(behaviour).__name__}")
        if behaviour.theta.shape != model.theta.shape:
            raise ValueError(
                f"behaviour must have theta of shape {model.theta.shape}, got "
                f"{behaviour.theta.shape}"
            )
    rho = model.prompt_probabilities[:, None]
    p = model.probabilities()
    log_p, log_ref = model.log_probabilities(), model.log_probabilities(reference=True)
    rewards = model.total_rewards()
    grad_j = model.objective_gradient()
    grad_kl = model.weighted_score_sum(rho * p * (log_p - log_ref))
    grad_kl_reverse = model.weighted_score_sum(-rho * model.probabilities(reference=True))
    token_forward, token_backward = _token_kl_gradients(model)
    mean_reward = (p * rewards).sum(axis=1, keepdims=True)
    lengths = model.responses.lengths[None, :].astype(np.float64)
    grad_length = model.weighted_score_sum(rho * p * (rewards - mean_reward) / lengths)

    def make(
        name: str, gradient: FloatArray, description: str, claim: str | None, atomic: bool
    ) -> NamedObjective:
        sense: Literal["maximise", "minimise"] = (
            "minimise" if name.startswith(("KL", "token KL")) else "maximise"
        )
        gradient = np.asarray(gradient, dtype=np.float64)
        gradient.setflags(write=False)
        return NamedObjective(name, gradient, sense, description, claim, atomic)

    library = [
        make("J", grad_j, "the expected reward J", "llm-sequence-policy-gradient", True),
        make(
            "J - beta KL(pi||ref)",
            grad_j - beta * grad_kl,
            f"J - {beta:g} KL(pi||ref), the sequence KL sampled from pi (k1 summed to go in "
            "the reward, or k2 at sequence level in the loss)",
            "llm-k1-reward-to-go-sequence-kl-gradient",
            False,
        ),
        make(
            "J - beta KL(ref||pi)",
            grad_j - beta * grad_kl_reverse,
            f"J - {beta:g} KL(ref||pi), the sequence KL in the other direction (k3 "
            "importance-weighted by the prefix ratio, or at sequence level)",
            "llm-token-k3-loss-per-token-forward-kl",
            False,
        ),
        make(
            "J - beta token KL(pi||ref)",
            grad_j - beta * token_forward,
            f"J - {beta:g} token KL(pi||ref): per-node KL(pi||ref) averaged over prefixes with "
            "the prefix distribution held fixed (k2 per token in the loss)",
            "llm-token-k2-loss-partial-kl-gradient",
            False,
        ),
        make(
            "J - beta token KL(ref||pi)",
            grad_j - beta * token_backward,
            f"J - {beta:g} token KL(ref||pi): per-node KL(ref||pi) averaged over prefixes from "
            "pi held fixed (k3 per token in the loss, GRPO's choice)",
            "llm-token-k3-loss-per-token-forward-kl",
            False,
        ),
        make(
            "length-reweighted J",
            grad_length,
            "the length-reweighted objective sum_x rho(x) E_x[(R - mu_x)/|y|] with mu_x fixed: "
            "per-response weights 1/|y| (each response's token mean, GRPO's 1/|o|)",
            "grpo-length-normalisation-bias",
            True,
        ),
    ]
    if G >= 2 and _is_binary(rewards):
        success = (p * rewards).sum(axis=1)
        factors = np.array(
            [
                grpo_prompt_factor(float(min(max(s, 0.0), 1.0)), G, ddof=ddof, epsilon=std_epsilon)
                for s in success
            ]
        )
        library.append(
            make(
                "prompt-reweighted J",
                factors[:, None, None] * grad_j,
                f"the prompt-reweighted objective sum_x rho(x) Phi_G(p_x), each prompt's "
                f"gradient weighted by c_G(p_x) (GRPO's std normalisation, G = {G}, "
                f"ddof = {ddof}, epsilon = {std_epsilon:g}; binary rewards)",
                "group-std-normalisation",
                True,
            )
        )
    if behaviour is not None:
        library.append(
            make(
                "token-IS surrogate",
                _token_is_surrogate_gradient(model, behaviour),
                "the token-IS surrogate sum_x rho sum_n d_mu(n) sum_v pi(v|n) Q_mu(n, v) with "
                "d_mu and Q_mu frozen (per-token importance ratios pi/mu)",
                "token-vs-sequence-correction",
                True,
            )
        )
    library += [
        make(
            "KL(pi||ref)",
            grad_kl,
            "the sequence KL(pi||ref), sampled from pi",
            "llm-k1-reward-to-go-sequence-kl-gradient",
            True,
        ),
        make(
            "KL(ref||pi)",
            grad_kl_reverse,
            "the sequence KL(ref||pi)",
            "llm-token-k3-loss-per-token-forward-kl",
            True,
        ),
        make(
            "token KL(pi||ref)",
            token_forward,
            "per-node KL(pi||ref) over prefixes from pi held fixed (the partial gradient of k2 "
            "per token in the loss)",
            "llm-token-k2-loss-partial-kl-gradient",
            True,
        ),
        make(
            "token KL(ref||pi)",
            token_backward,
            "per-node KL(ref||pi) over prefixes from pi held fixed (the partial gradient of k3 "
            "per token in the loss)",
            "llm-token-k3-loss-per-token-forward-kl",
            True,
        ),
    ]
    return {objective.name: objective for objective in library}


def named_objective_gradients(
    model: SequenceModel,
    *,
    family: str = "llm",
    beta: float = 0.1,
    group_size: int = 4,
    ddof: int = 1,
    std_epsilon: float = 0.0,
    behaviour: SequenceModel | None = None,
) -> dict[str, FloatArray]:
    r"""$\{\text{name}: \nabla_\theta O\}$ for the objectives of :func:`named_objectives`.

    Each gradient is ``[X, N, K + 1]``, the ascent direction of the objective (for a divergence,
    the direction that increases it). Arguments as in :func:`named_objectives`.

    Examples:
        >>> model = SequenceModel.random(2, 2, 2, seed=0)
        >>> gradients = named_objective_gradients(model)
        >>> bool(np.allclose(gradients["J"], model.objective_gradient()))
        True
    """
    return {
        name: objective.gradient
        for name, objective in named_objectives(
            model,
            family=family,
            beta=beta,
            group_size=group_size,
            ddof=ddof,
            std_epsilon=std_epsilon,
            behaviour=behaviour,
        ).items()
    }
