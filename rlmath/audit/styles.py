r"""A zoo of policy losses written in the styles of popular libraries, each with the verdict its claim proves.

Every entry of :data:`LOSS_STYLES` is a :class:`LossStyle`: a loss of one group written the way a
library writes it (the reductions, the advantage estimator, what is detached, the aggregation
mode; the source is cited per entry), the family it belongs to, and the *expected* verdict of
:func:`rlmath.audit.audit` together with the id of the claim in ``proofs/`` whose statement
gives that verdict. The expected verdicts are written here from the claims' statements and
closed forms (``basis`` says how), not from the audit's output; ``tests/test_audit_styles.py``
checks that the audit agrees, and ``rlmath docs`` prints the table
(:mod:`rlmath.docs.audit_page`).

Calling convention: :mod:`rlmath.audit.engine` (family ``"llm"``: one group, log-probs
``[G, T]`` with ``response_mask`` ``[G, T]``, rewards ``[G]``) and
:mod:`rlmath.audit.actor_critic` (family ``"actor-critic"``: one trajectory, arrays ``[T]``).
Conventions used throughout: losses are minimised; old, reference and behaviour log-probs,
advantages, returns, normalisers and importance weights are constants (detached); a KL always
names its direction, $\mathrm{KL}(\pi \| \pi_\mathrm{ref})$ sampled from $\pi$; the token
aggregation modes are verl's (``agg_loss``):

$$ \text{token-mean} = \frac{\sum_{b,t} m_{b,t} \ell_{b,t}}{\sum_{b,t} m_{b,t}}, \quad
   \text{seq-mean-token-mean} = \frac1B \sum_b \frac{\sum_t m_{b,t} \ell_{b,t}}{\sum_t m_{b,t}},
   \quad \text{seq-mean-token-sum} = \frac1B \sum_b \sum_t m_{b,t} \ell_{b,t},
   \quad \text{seq-mean-token-sum-norm} = \frac{\sum_{b,t} m_{b,t} \ell_{b,t}}{B\, T}. $$

PyTorch styles import torch only when called (the registry loads without it, and the NumPy
styles run without torch or JAX).

References:
    verl ``verl/trainer/ppo/core_algos.py`` (``agg_loss``, ``compute_grpo_outcome_advantage``,
    ``compute_policy_loss_vanilla``, ``compute_policy_loss_gspo``, ``kl_penalty``); Hugging
    Face TRL ``trl/trainer/grpo_trainer.py`` (``GRPOTrainer.compute_loss``, ``loss_type``
    ``"grpo"``, ``"bnpo"``, ``"dr_grpo"``); OpenRLHF ``openrlhf/models/loss.py``
    (``PolicyLoss``) and the REINFORCE++ experience maker; Shao et al. 2024 (GRPO,
    arXiv:2402.03300, eq. 3); Yu et al. 2025 (DAPO, arXiv:2503.14476, eqs. 8 and 10); Liu et
    al. 2025 (Dr. GRPO, arXiv:2503.20783, Sec. 3.1); Ahmadian et al. 2024 (RLOO,
    arXiv:2402.14740, eq. 6); Hu 2025 (REINFORCE++, arXiv:2501.03262, eqs. 8-10); Zheng et
    al. 2025 (GSPO, arXiv:2507.18071, eqs. 5-7); MiniMax 2025 (CISPO, arXiv:2506.13585, eq.
    4); Schulman et al. 2017 (PPO); Mnih et al. 2016 (A2C).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LOSS_STYLES", "LossStyle", "style"]

VERDICTS = ("unbiased", "biased", "zero")
FAMILIES = ("llm", "actor-critic")
BACKENDS = ("torch", "numpy")

#: The audit settings of the table (and of the tests): three generated models, G = 4, beta 0.1,
#: binary rewards, 2 prompts, 2 ordinary tokens + EOS, L = 2 (family "llm"); three random
#: finite-horizon MDPs with 3 states, 2 actions, T = 3, gamma = 0.9 (family "actor-critic").
GROUP_SIZE = 4
MAX_LENGTH = 2
HORIZON = 3
BETA = 0.1
N_MODELS = 3
CLIP = 0.2
CLIP_HIGH = 0.28  # DAPO's clip-higher epsilon_high
STD_EPSILON = 1e-6  # verl's compute_grpo_outcome_advantage epsilon
ENTROPY_COEFFICIENT = 0.01
VALUE_COEFFICIENT = 0.5


@dataclass(frozen=True)
class LossStyle:
    r"""One loss of the zoo and the verdict its claim proves.

    Attributes:
        name: kebab-case name (the row of the docs table).
        imitates: the library and the code or paper it imitates, with the source
            ("verl ``core_algos.agg_loss`` token-mean").
        loss: the loss of one batch (calling convention of its family).
        family: ``"llm"`` or ``"actor-critic"``.
        backend: ``"torch"`` or ``"numpy"`` (what the loss is written in).
        expected_verdict: ``"unbiased"``, ``"biased"`` or ``"zero"``.
        expected_objective: the named objective the claim says the loss follows (unbiased), or
            the one it is audited against (``objective``, for a loss that misses its intended
            objective), else ``None``.
        expected_coefficient: the claim's factor $c$ as a function of $(G, L)$ (family llm) or
            $(1, T)$ (actor-critic), or ``None`` when the claim gives none.
        expected_terms: decomposition coefficients the claim fixes, ``{atomic name: value}``
            as functions of $(G, L)$ (e.g. the entropy bonus $c_e / T$).
        explanation_contains: phrases the audit's explanation must contain (a biased verdict
            must name the difference).
        claim: id of the claim in ``proofs/`` whose statement gives the verdict.
        basis: how the expected verdict follows from the claim (one or two sentences).
        objective: the objective passed to ``audit(objective=...)`` (the one the author meant),
            or ``None`` for a free verdict.
        options: further keyword arguments of :func:`rlmath.audit.audit`.
        wrong: whether this is one of the subtly wrong losses.
    """

    name: str
    imitates: str
    loss: Callable[..., Any]
    family: str
    backend: str
    expected_verdict: str
    expected_objective: str | None
    expected_coefficient: Callable[[int, int], float] | None
    claim: str
    basis: str
    expected_terms: Mapping[str, Callable[[int, int], float]] = field(default_factory=dict)
    explanation_contains: tuple[str, ...] = ()
    objective: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    wrong: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.expected_verdict not in VERDICTS:
            raise ValueError(
                f"expected_verdict must be one of {VERDICTS}, got {self.expected_verdict!r}"
            )
        if not callable(self.loss):
            raise TypeError(f"loss must be callable, got {type(self.loss).__name__}")

    def audit_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`rlmath.audit.audit` for the table's setting."""
        arguments: dict[str, Any] = {"family": self.family, "n_models": N_MODELS}
        if self.family == "llm":
            arguments.update(group_size=GROUP_SIZE, beta=BETA, max_length=MAX_LENGTH)
        arguments["backend"] = self.backend
        if self.objective is not None:
            arguments["objective"] = self.objective
        arguments.update(self.options)
        return arguments

    def sizes(self) -> tuple[int, int]:
        """$(G, L)$ of the setting (family llm) or $(1, T)$ (actor-critic)."""
        return (GROUP_SIZE, MAX_LENGTH) if self.family == "llm" else (1, HORIZON)


# ============================================================================ PyTorch helpers
def _torch() -> Any:
    import torch

    return torch


def _float_mask(response_mask: Any, like: Any) -> Any:
    return response_mask.to(like.dtype)


def _agg_loss(loss_mat: Any, mask: Any, mode: str) -> Any:
    """verl ``core_algos.agg_loss`` (module docstring): reduce a ``[B, T]`` token loss."""
    if mode == "token-mean":
        return (loss_mat * mask).sum() / mask.sum()
    if mode == "seq-mean-token-mean":
        return ((loss_mat * mask).sum(-1) / mask.sum(-1)).mean()
    if mode == "seq-mean-token-sum":
        return (loss_mat * mask).sum(-1).mean()
    if mode == "seq-mean-token-sum-norm":
        return (loss_mat * mask).sum() / (mask.shape[0] * mask.shape[-1])
    raise ValueError(f"loss_agg_mode must be a verl mode, got {mode!r}")


def _grpo_advantages_torch(rewards: Any, *, scale: bool = True) -> Any:
    r"""verl ``compute_grpo_outcome_advantage``: $(r - \bar r)/(\mathrm{std}(r) + 10^{-6})$, ddof 1."""
    torch = _torch()
    centred = rewards - rewards.mean()
    if not scale:
        return centred
    return centred / (torch.std(rewards) + STD_EPSILON)


def _rloo_advantages_torch(rewards: Any) -> Any:
    r"""$r_i - \frac{1}{G-1}\sum_{j \ne i} r_j$ (TRL ``RLOOTrainer``, OpenRLHF ``rloo``)."""
    return rewards - (rewards.sum() - rewards) / (rewards.shape[0] - 1)


def _ppo_token_loss_torch(
    log_probs: Any, old_log_probs: Any, advantages: Any, low: float, high: float
) -> Any:
    r"""verl ``compute_policy_loss_vanilla``: $-\min(\rho A, \mathrm{clip}(\rho, 1-\epsilon_l, 1+\epsilon_h) A)$."""
    torch = _torch()
    ratio = torch.exp(log_probs - old_log_probs)
    adv = advantages[:, None] if advantages.dim() == 1 else advantages
    return torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1 - low, 1 + high))


def _reverse_cumsum_torch(values: Any) -> Any:
    torch = _torch()
    return torch.flip(torch.cumsum(torch.flip(values, [-1]), -1), [-1])


def _k3_torch(log_probs: Any, ref_log_probs: Any) -> Any:
    r"""TRL ``per_token_kl``: $k_3 = e^{z_\mathrm{ref} - z} - (z_\mathrm{ref} - z) - 1$.

    verl's ``kl_penalty(..., "low_var_kl")`` is the same $k_3$ clamped to $[-10, 10]$; the clamp
    zeroes the gradient of tokens with $k_3 > 10$ ($\pi_\mathrm{ref}/\pi > 12$), which the
    generated models reach at some seeds, so it is left out here (the claim has no clamp).
    """
    torch = _torch()
    log_ratio = ref_log_probs - log_probs
    return torch.exp(log_ratio) - log_ratio - 1


# ============================================================================ LLM losses (torch)
def grpo_seq_mean_token_mean(
    log_probs: Any,
    *,
    old_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""GRPO as in TRL ``loss_type="grpo"`` / verl ``seq-mean-token-mean``, without the std.

    $$ \mathcal L = -\frac1G \sum_i \frac{1}{|y_i|} \sum_t \min(\rho_{i,t} A_i,
       \mathrm{clip}(\rho_{i,t}, 0.8, 1.2) A_i), \quad A_i = r_i - \bar r $$

    (TRL ``scale_rewards=False``: the group-mean baseline, each response's token mean).
    """
    mask = _float_mask(response_mask, log_probs)
    advantages = _grpo_advantages_torch(rewards, scale=False)
    per_token = _ppo_token_loss_torch(log_probs, old_log_probs, advantages, CLIP, CLIP)
    return _agg_loss(per_token, mask, "seq-mean-token-mean")


def grpo_std_seq_mean_token_mean(
    log_probs: Any,
    *,
    old_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""GRPO with verl's std-normalised advantages and ``seq-mean-token-mean`` (DeepSeekMath eq. 3).

    $$ A_i = \frac{r_i - \bar r}{\mathrm{std}(r) + 10^{-6}}, \quad
       \mathcal L = -\frac1G \sum_i \frac{1}{|y_i|} \sum_t \min(\rho A_i, \mathrm{clip}(\rho) A_i). $$
    """
    mask = _float_mask(response_mask, log_probs)
    advantages = _grpo_advantages_torch(rewards)
    per_token = _ppo_token_loss_torch(log_probs, old_log_probs, advantages, CLIP, CLIP)
    return _agg_loss(per_token, mask, "seq-mean-token-mean")


def grpo_std_seq_mean_token_sum(
    log_probs: Any,
    *,
    old_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""GRPO advantages (std, ddof 1, $\epsilon = 10^{-6}$) with verl ``seq-mean-token-sum``."""
    mask = _float_mask(response_mask, log_probs)
    advantages = _grpo_advantages_torch(rewards)
    per_token = _ppo_token_loss_torch(log_probs, old_log_probs, advantages, CLIP, CLIP)
    return _agg_loss(per_token, mask, "seq-mean-token-sum")


def grpo_token_mean(log_probs: Any, *, old_log_probs: Any, rewards: Any, response_mask: Any) -> Any:
    r"""GRPO with verl ``loss_agg_mode="token-mean"`` (TRL ``"bnpo"``): one token mean over the group.

    $$ \mathcal L = -\frac{\sum_{i,t} m_{i,t} \min(\rho A_i, \mathrm{clip}(\rho) A_i)}
       {\sum_{i,t} m_{i,t}}, \quad A_i = (r_i - \bar r)/(\mathrm{std}(r) + 10^{-6}). $$
    """
    mask = _float_mask(response_mask, log_probs)
    advantages = _grpo_advantages_torch(rewards)
    per_token = _ppo_token_loss_torch(log_probs, old_log_probs, advantages, CLIP, CLIP)
    return _agg_loss(per_token, mask, "token-mean")


def dr_grpo(log_probs: Any, *, old_log_probs: Any, rewards: Any, response_mask: Any) -> Any:
    r"""Dr. GRPO as in TRL ``loss_type="dr_grpo"``: no std, a constant normaliser $G \cdot L$.

    $$ \mathcal L = -\frac{1}{G L} \sum_{i,t} m_{i,t} \min(\rho A_i, \mathrm{clip}(\rho) A_i),
       \quad A_i = r_i - \bar r $$

    (``max_completion_length`` = $L$; verl ``seq-mean-token-sum-norm``).
    """
    mask = _float_mask(response_mask, log_probs)
    advantages = _grpo_advantages_torch(rewards, scale=False)
    per_token = _ppo_token_loss_torch(log_probs, old_log_probs, advantages, CLIP, CLIP)
    return _agg_loss(per_token, mask, "seq-mean-token-sum-norm")


def dapo_clip_higher_token_mean(
    log_probs: Any,
    *,
    old_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""DAPO (eq. 8): clip-higher $(\epsilon_l, \epsilon_h) = (0.2, 0.28)$, token-mean over the group.

    Dynamic sampling drops groups of equal rewards; their advantages are 0 here, so they add
    nothing either way.
    """
    mask = _float_mask(response_mask, log_probs)
    advantages = _grpo_advantages_torch(rewards)
    per_token = _ppo_token_loss_torch(log_probs, old_log_probs, advantages, CLIP, CLIP_HIGH)
    return _agg_loss(per_token, mask, "token-mean")


def rloo(log_probs: Any, *, old_log_probs: Any, rewards: Any, response_mask: Any) -> Any:
    r"""RLOO (Ahmadian et al. 2024, eq. 6): leave-one-out baseline, sequence log-prob sum, mean over G.

    $$ \mathcal L = -\frac1G \sum_i \Big(r_i - \frac{1}{G-1}\sum_{j\ne i} r_j\Big)
       \sum_t m_{i,t}\, \rho_{i,t}, \quad \rho = e^{z - \mathrm{sg}(z)} $$

    (the ratio form of TRL's ``RLOOTrainer`` with one PPO epoch: equal in gradient to
    $\log\pi$ at $\theta_\mathrm{old}$).
    """
    torch = _torch()
    mask = _float_mask(response_mask, log_probs)
    advantages = _rloo_advantages_torch(rewards)
    ratio = torch.exp(log_probs - old_log_probs)
    return _agg_loss(-advantages[:, None] * ratio, mask, "seq-mean-token-sum")


def reinforce_plus_plus(
    log_probs: Any,
    *,
    old_log_probs: Any,
    ref_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""REINFORCE++ (Hu 2025, eqs. 8-10; OpenRLHF): k1 in the reward, returns to go, global whitening.

    $$ R_{i,t} = r_i \mathbb 1[t = |y_i|] - \beta k_1(i, t), \quad G_{i,t} = \sum_{t' \ge t}
       R_{i,t'}, \quad A = \frac{G - \mathrm{mean}_m(G)}{\mathrm{std}_m(G) + 10^{-8}}, \quad
       \mathcal L = \frac1G \sum_i \frac{\sum_t m\, \ell_{i,t}}{\sum_t m} $$

    with $k_1 = z_\mathrm{old} - z_\mathrm{ref}$ (detached), the mean and population std taken
    over every response token of the batch (OpenRLHF's masked whitening), and PPO's clipped
    token loss $\ell$ (OpenRLHF ``PolicyLoss``: masked mean over each sequence's tokens).
    """
    mask = _float_mask(response_mask, log_probs)
    k1 = (old_log_probs - ref_log_probs) * mask
    last = mask * (mask.sum(-1, keepdim=True) == mask.cumsum(-1)).to(mask.dtype)
    returns = _reverse_cumsum_torch((rewards[:, None] * last - BETA * k1) * mask)
    count = mask.sum()
    mean = (returns * mask).sum() / count
    std = (((returns - mean) ** 2 * mask).sum() / count).sqrt()
    advantages = (returns - mean) / (std + 1e-8)
    per_token = _ppo_token_loss_torch(log_probs, old_log_probs, advantages, CLIP, CLIP)
    return _agg_loss(per_token, mask, "seq-mean-token-mean")


def rloo_k1_in_reward(
    log_probs: Any,
    *,
    old_log_probs: Any,
    ref_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""k1 in the reward, summed to go (PPO-RLHF / REINFORCE++ style), with RLOO's baseline.

    $$ \mathcal L = -\frac1G \sum_i \sum_t m_{i,t} \Big(r_i - b_i - \beta \sum_{t' \ge t}
       k_1(i, t')\Big) \log\pi(y_{i,t}), \quad k_1 = \mathrm{sg}(z_\mathrm{old} - z_\mathrm{ref}),
       \quad b_i = \frac{1}{G-1}\sum_{j\ne i} r_j. $$
    """
    mask = _float_mask(response_mask, log_probs)
    kl_to_go = _reverse_cumsum_torch((old_log_probs - ref_log_probs) * mask)
    advantages = _rloo_advantages_torch(rewards)[:, None] - BETA * kl_to_go
    return _agg_loss(-advantages * log_probs, mask, "seq-mean-token-sum")


def gspo(log_probs: Any, *, old_log_probs: Any, rewards: Any, response_mask: Any) -> Any:
    r"""GSPO (Zheng et al. 2025, eqs. 5-7) as verl ``compute_policy_loss_gspo``, with RLOO advantages.

    $$ s_i = \exp\Big(\frac{1}{|y_i|}\sum_t m_{i,t}(z_{i,t} - z^\mathrm{old}_{i,t})\Big), \quad
       s_{i,t} = \mathrm{sg}(s_i)\, e^{z_{i,t} - \mathrm{sg}(z_{i,t})}, \quad
       \mathcal L = \text{seq-mean-token-mean of } \max(-A_i s_{i,t},
       -A_i \mathrm{clip}(s_{i,t}, 1 - 3\cdot10^{-4}, 1 + 4\cdot10^{-4})). $$
    """
    torch = _torch()
    mask = _float_mask(response_mask, log_probs)
    advantages = _rloo_advantages_torch(rewards)[:, None]
    lengths = mask.sum(-1, keepdim=True)
    sequence_log_ratio = ((log_probs - old_log_probs) * mask).sum(-1, keepdim=True) / lengths
    token_log_ratio = sequence_log_ratio.detach() + log_probs - log_probs.detach()
    ratio = torch.exp(torch.clamp(token_log_ratio, max=10.0))
    per_token = torch.maximum(
        -advantages * ratio, -advantages * torch.clamp(ratio, 1 - 3e-4, 1 + 4e-4)
    )
    return _agg_loss(per_token, mask, "seq-mean-token-mean")


def cispo(log_probs: Any, *, old_log_probs: Any, rewards: Any, response_mask: Any) -> Any:
    r"""CISPO (MiniMax-M1, eq. 4): the clipped ratio detached as a weight on $\log\pi$, RLOO advantages.

    $$ \mathcal L = -\frac1G \sum_i \sum_t m_{i,t}\, \mathrm{sg}\big(\mathrm{clip}(\rho_{i,t},
       0, 1 + \epsilon_h)\big) A_i \log\pi(y_{i,t}), \quad \epsilon_h = 0.28 $$

    (token-sum per response here; the paper's token mean over the batch would add the group
    token-count normaliser of ``grpo-token-mean``).
    """
    torch = _torch()
    mask = _float_mask(response_mask, log_probs)
    advantages = _rloo_advantages_torch(rewards)[:, None]
    weight = torch.clamp(torch.exp(log_probs - old_log_probs), max=1 + CLIP_HIGH).detach()
    return _agg_loss(-weight * advantages * log_probs, mask, "seq-mean-token-sum")


def k1_in_loss(log_probs: Any, *, ref_log_probs: Any, response_mask: Any) -> Any:
    r"""verl ``kl_penalty(..., "kl")`` used as a loss (``use_kl_loss``): $k_1 = z - z_\mathrm{ref}$, token sums."""
    mask = _float_mask(response_mask, log_probs)
    return _agg_loss(log_probs - ref_log_probs, mask, "seq-mean-token-sum")


def k2_in_loss(log_probs: Any, *, ref_log_probs: Any, response_mask: Any) -> Any:
    r"""verl ``kl_penalty(..., "mse")`` as a loss: $k_2 = \frac12 (z - z_\mathrm{ref})^2$, token sums."""
    mask = _float_mask(response_mask, log_probs)
    return _agg_loss(0.5 * (log_probs - ref_log_probs) ** 2, mask, "seq-mean-token-sum")


def k3_in_loss(log_probs: Any, *, ref_log_probs: Any, response_mask: Any) -> Any:
    r"""TRL ``per_token_kl`` as a loss: $k_3$ per token, token sums (verl ``low_var_kl`` unclamped)."""
    mask = _float_mask(response_mask, log_probs)
    return _agg_loss(_k3_torch(log_probs, ref_log_probs), mask, "seq-mean-token-sum")


def importance_weighted_k3(
    log_probs: Any,
    *,
    old_log_probs: Any,
    ref_log_probs: Any,
    response_mask: Any,
) -> Any:
    r"""$k_3$ per token weighted by the detached prefix ratio $\pi_\mathrm{ref}(y_{<t})/\pi(y_{<t})$.

    $$ \mathcal L = \frac1G \sum_i \sum_t m_{i,t} \exp\Big(\sum_{t' < t}
       (z^\mathrm{ref}_{i,t'} - z^\mathrm{old}_{i,t'})\Big) k_3(i, t) $$

    (claim ``llm-token-k3-loss-per-token-forward-kl``: this is the sequence KL(ref || pi)).
    """
    torch = _torch()
    mask = _float_mask(response_mask, log_probs)
    log_ratio = (ref_log_probs - old_log_probs) * mask
    prefix = torch.cumsum(log_ratio, -1) - log_ratio
    weighted = torch.exp(prefix) * _k3_torch(log_probs, ref_log_probs)
    return _agg_loss(weighted, mask, "seq-mean-token-sum")


def rloo_plus_k3(
    log_probs: Any,
    *,
    old_log_probs: Any,
    ref_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""TRL's GRPO recipe with ``beta = 0.1``: RLOO's policy term plus $\beta k_3$ per token in the loss."""
    return rloo(
        log_probs, old_log_probs=old_log_probs, rewards=rewards, response_mask=response_mask
    ) + BETA * k3_in_loss(log_probs, ref_log_probs=ref_log_probs, response_mask=response_mask)


# ---------------------------------------------------------------------------- the subtly wrong
def rloo_minus_k3(
    log_probs: Any,
    *,
    old_log_probs: Any,
    ref_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""Wrong: the KL term added with the wrong sign, $\mathcal L_\mathrm{RLOO} - \beta k_3$."""
    return rloo(
        log_probs, old_log_probs=old_log_probs, rewards=rewards, response_mask=response_mask
    ) - BETA * k3_in_loss(log_probs, ref_log_probs=ref_log_probs, response_mask=response_mask)


def token_mean_normalised_before_mask(
    log_probs: Any,
    *,
    old_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""Wrong: GRPO's per-response token mean meant, but divided by $T$ before the mask is applied.

    $$ \mathcal L = -\frac1G \sum_i \sum_t m_{i,t} \frac{\rho_{i,t} A_i}{T} $$

    (``loss_mat.mean(-1)`` taken over the padded row, then ``* mask``): the normaliser is the
    padded width, Dr. GRPO's constant, not $|y_i|$.
    """
    torch = _torch()
    mask = _float_mask(response_mask, log_probs)
    advantages = _grpo_advantages_torch(rewards, scale=False)[:, None]
    per_token = -advantages * torch.exp(log_probs - old_log_probs)
    return ((per_token / per_token.shape[-1]) * mask).sum(-1).mean()


def whiten_before_mask(
    log_probs: Any,
    *,
    old_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""Wrong: REINFORCE++-style token whitening over the padded ``[B, T]`` tensor, masked afterwards.

    $$ \tilde A = \frac{A m - \mathrm{mean}(A m)}{\mathrm{std}(A m) + 10^{-6}} \text{ over all }
       B T \text{ entries}, \quad \mathcal L = -\frac{1}{B T} \sum m\, \tilde A\, \rho $$

    with RLOO's $A$: padding zeros enter the mean and the std.
    """
    torch = _torch()
    mask = _float_mask(response_mask, log_probs)
    token_advantages = _rloo_advantages_torch(rewards)[:, None] * mask
    whitened = (token_advantages - token_advantages.mean()) / (token_advantages.std() + 1e-6)
    ratio = torch.exp(log_probs - old_log_probs)
    return _agg_loss(-whitened * ratio, mask, "seq-mean-token-sum-norm")


def micro_batch_token_mean(
    log_probs: Any,
    *,
    old_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""Wrong: gradient accumulation over 2 micro-batches, each a token mean by its *local* token count.

    $$ \mathcal L = \frac12 \sum_{k=1}^{2} \frac{\sum_{i \in k, t} m_{i,t}\, \ell_{i,t}}
       {\sum_{i \in k, t} m_{i,t}}, \quad \ell = -A_i \rho_{i,t},\ A_i = r_i - \bar r $$

    (rows 0-1 and 2-3; the fix divides every micro-batch by the global count).
    """
    torch = _torch()
    mask = _float_mask(response_mask, log_probs)
    advantages = _grpo_advantages_torch(rewards, scale=False)[:, None]
    per_token = -advantages * torch.exp(log_probs - old_log_probs) * mask
    half = per_token.shape[0] // 2
    parts = ((0, half), (half, per_token.shape[0]))
    return sum(per_token[a:b].sum() / mask[a:b].sum() for a, b in parts) / len(parts)


# ============================================================================ LLM losses (numpy)
def rloo_numpy(log_probs: Any, *, rewards: Any, response_mask: Any) -> Any:
    r"""RLOO in NumPy: $-\frac1G \sum_i (r_i - \frac{1}{G-1}\sum_{j\ne i} r_j) \sum_t m\, z$."""
    G = rewards.shape[0]
    advantages = rewards - (rewards.sum() - rewards) / (G - 1)
    return -(advantages * (log_probs * response_mask).sum(axis=1)).mean()


def dr_grpo_numpy(log_probs: Any, *, old_log_probs: Any, rewards: Any, response_mask: Any) -> Any:
    r"""Dr. GRPO in NumPy (no clip binds at $\theta_\mathrm{old}$): $-\frac{1}{GL}\sum m (r - \bar r) e^{z - z_\mathrm{old}}$."""
    advantages = (rewards - rewards.mean())[:, None]
    ratio = np.exp(log_probs - old_log_probs)
    return -(advantages * ratio * response_mask).sum() / response_mask.size


def k3_in_loss_numpy(log_probs: Any, *, ref_log_probs: Any, response_mask: Any) -> Any:
    r"""$k_3$ per token in the loss, in NumPy: $\frac1G\sum m\,(e^{z_\mathrm{ref} - z} - (z_\mathrm{ref} - z) - 1)$."""
    log_ratio = ref_log_probs - log_probs
    return ((np.exp(log_ratio) - log_ratio - 1) * response_mask).sum() / response_mask.shape[0]


def k1_in_reward_numpy(
    log_probs: Any,
    *,
    old_log_probs: Any,
    ref_log_probs: Any,
    rewards: Any,
    response_mask: Any,
) -> Any:
    r"""k1 in the reward summed to go with RLOO's baseline, in NumPy (as :func:`rloo_k1_in_reward`)."""
    G = rewards.shape[0]
    k1 = (old_log_probs - ref_log_probs) * response_mask
    kl_to_go = np.cumsum(k1[:, ::-1], axis=1)[:, ::-1]
    advantages = (rewards - (rewards.sum() - rewards) / (G - 1))[:, None] - BETA * kl_to_go
    return -(advantages * log_probs * response_mask).sum() / G


# ============================================================================ actor-critic
def _discounted_returns_torch(rewards: Any, discount: float) -> Any:
    torch = _torch()
    weights = torch.pow(discount, torch.arange(rewards.shape[0], dtype=rewards.dtype))
    return torch.flip(torch.cumsum(torch.flip(weights * rewards, [0]), 0), [0]) / weights


def _gae_torch(rewards: Any, values: Any, discount: float, lambda_: float) -> Any:
    """GAE over one trajectory that terminates at its last step (no bootstrap)."""
    torch = _torch()
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])])
    deltas = rewards + discount * next_values - values
    T = rewards.shape[0]
    factors = (discount * lambda_) ** torch.arange(T, dtype=rewards.dtype)
    # A_t = sum_{k >= t} (gamma lambda)^(k - t) delta_k
    return torch.flip(torch.cumsum(torch.flip(factors * deltas, [0]), 0), [0]) / factors


def ppo_value_entropy(
    log_probs: Any,
    *,
    old_log_probs: Any,
    logits: Any,
    rewards: Any,
    values: Any,
    discount: float,
) -> Any:
    r"""PPO (CleanRL / Stable-Baselines3 style): clipped surrogate, value loss and entropy bonus.

    $$ \mathcal L = \frac1T \sum_t \Big[\max(-\hat A_t \rho_t, -\hat A_t \mathrm{clip}(\rho_t,
       0.8, 1.2)) + \tfrac{c_v}{2} (V_t - \hat R_t)^2 - c_e H(\pi(\cdot|s_t))\Big] $$

    with GAE($\gamma$, 0.95) advantages from the exact values, $\hat R = \hat A + V$, $c_v = 0.5$,
    $c_e = 0.01$. The values are the exact $V^\pi$ (constants of the audit), so the value loss
    moves no policy parameter.
    """
    torch = _torch()
    advantages = _gae_torch(rewards, values, discount, 0.95)
    ratio = torch.exp(log_probs - old_log_probs)
    policy = torch.maximum(
        -advantages * ratio, -advantages * torch.clamp(ratio, 1 - CLIP, 1 + CLIP)
    )
    value_loss = 0.5 * (values - (advantages + values)) ** 2
    log_pi = torch.log_softmax(logits, -1)
    entropy = -(log_pi.exp() * log_pi).sum(-1)
    return (policy + VALUE_COEFFICIENT * value_loss - ENTROPY_COEFFICIENT * entropy).mean()


def a2c(log_probs: Any, *, logits: Any, rewards: Any, values: Any, discount: float) -> Any:
    r"""A2C (Mnih et al. 2016; Stable-Baselines3 ``A2C``): Monte-Carlo returns minus $V$, entropy bonus.

    $$ \mathcal L = -\frac1T \sum_t (G_t - V_t) \log\pi(a_t|s_t) - \frac{c_e}{T}\sum_t H(\pi(\cdot|s_t)) $$
    """
    torch = _torch()
    returns = _discounted_returns_torch(rewards, discount)
    log_pi = torch.log_softmax(logits, -1)
    entropy = -(log_pi.exp() * log_pi).sum(-1)
    return -((returns - values) * log_probs).mean() - ENTROPY_COEFFICIENT * entropy.mean()


def reinforce_discounted(log_probs: Any, *, rewards: Any, discount: float) -> Any:
    r"""REINFORCE with $\gamma^t$ kept (Sutton et al. 2000): $-\sum_t \gamma^t G_t \log\pi(a_t|s_t)$."""
    torch = _torch()
    weights = torch.pow(discount, torch.arange(rewards.shape[0], dtype=rewards.dtype))
    return -(weights * _discounted_returns_torch(rewards, discount) * log_probs).sum()


def a2c_numpy(log_probs: Any, *, rewards: Any, values: Any, discount: float) -> Any:
    r"""A2C's policy term in NumPy: $-\frac1T \sum_t (G_t - V_t) \log\pi(a_t|s_t)$."""
    T = rewards.shape[0]
    weights = discount ** np.arange(T)
    returns = np.cumsum((weights * rewards)[::-1])[::-1] / weights
    return -((returns - values) * log_probs).mean()


# ============================================================================ the registry
def _constant(value: float) -> Callable[[int, int], float]:
    return lambda G, L: value


def style(name: str) -> LossStyle:
    """The :class:`LossStyle` called ``name``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).

    Examples:
        >>> entry = style("rloo-numpy")
        >>> entry.expected_verdict, entry.expected_objective, entry.claim
        ('unbiased', 'J', 'rloo-unbiased')
    """
    for entry in LOSS_STYLES:
        if entry.name == name:
            return entry
    raise ValueError(f"name must be one of {[s.name for s in LOSS_STYLES]}, got {name!r}")


_NORMALISER = "normaliser or weight depends on the sampled group"

LOSS_STYLES: tuple[LossStyle, ...] = (
    LossStyle(
        "grpo-seq-mean-token-mean",
        "TRL GRPOTrainer loss_type='grpo' with scale_rewards=False; verl agg_loss "
        "'seq-mean-token-mean' (Shao et al. 2024, eq. 3)",
        grpo_seq_mean_token_mean,
        "llm",
        "torch",
        "unbiased",
        "length-reweighted J",
        lambda G, L: 1 - 1 / G,
        "grpo-length-normalisation-bias",
        "The claim: dividing each response's token sum by |y| with the group-mean baseline gives "
        "(1 - 1/G) grad E[(r - E r)/|y|] with E r fixed; the clip does not bind at theta_old "
        "(llm-ppo-surrogate-gradient-at-old).",
    ),
    LossStyle(
        "grpo-std-seq-mean-token-sum",
        "verl compute_grpo_outcome_advantage (std, ddof 1, eps 1e-6) with agg_loss "
        "'seq-mean-token-sum'",
        grpo_std_seq_mean_token_sum,
        "llm",
        "torch",
        "unbiased",
        "prompt-reweighted J",
        _constant(1.0),
        "group-std-normalisation",
        "The claim: with 0/1 rewards the std-normalised advantage moves prompt x along grad p_x "
        "with the weight c_G(p_x): the gradient of sum_x rho(x) Phi_G(p_x), factor 1.",
        options={"std_epsilon": STD_EPSILON},
    ),
    LossStyle(
        "grpo-std-seq-mean-token-mean",
        "DeepSeekMath GRPO (Shao et al. 2024, eq. 3): std-normalised advantages and each "
        "response's token mean (TRL loss_type='grpo', verl 'seq-mean-token-mean')",
        grpo_std_seq_mean_token_mean,
        "llm",
        "torch",
        "biased",
        None,
        None,
        "group-std-normalisation",
        "Two reweightings at once: the std weights prompts by c_G(p_x) (group-std-normalisation) "
        "and 1/|y| weights responses by length (grpo-length-normalisation-bias); the product "
        "depends on the group's rewards and lengths jointly, which neither named objective nor "
        "their fixed combination is.",
        explanation_contains=(_NORMALISER,),
        options={"std_epsilon": STD_EPSILON},
    ),
    LossStyle(
        "grpo-token-mean",
        "verl agg_loss 'token-mean' / TRL loss_type='bnpo': one token mean over the group",
        grpo_token_mean,
        "llm",
        "torch",
        "biased",
        None,
        None,
        "grpo-length-normalisation-bias",
        "The claim: only a constant normaliser leaves grad J's direction; the group's token "
        "count sum_i |y_i| is random and correlated with the advantages, so the update follows "
        "no objective of the library.",
        explanation_contains=(_NORMALISER,),
        options={"std_epsilon": STD_EPSILON},
    ),
    LossStyle(
        "dr-grpo",
        "TRL GRPOTrainer loss_type='dr_grpo' (Liu et al. 2025, Sec. 3.1): no std, normaliser "
        "G * max_completion_length",
        dr_grpo,
        "llm",
        "torch",
        "unbiased",
        "J",
        lambda G, L: (1 - 1 / G) / L,
        "grpo-length-normalisation-bias",
        "The claim: a constant token budget only rescales grad J; the group mean includes the "
        "response itself (group-mean-baseline-shrinks: 1 - 1/G), and the budget is L: "
        "c = (1 - 1/G)/L.",
    ),
    LossStyle(
        "dapo-clip-higher-token-mean",
        "DAPO (Yu et al. 2025, eq. 8; verl recipe/dapo): clip (0.2, 0.28), token-mean over "
        "the group, std-normalised advantages",
        dapo_clip_higher_token_mean,
        "llm",
        "torch",
        "biased",
        None,
        None,
        "grpo-length-normalisation-bias",
        "Clip-higher is invisible at theta_old (llm-ppo-surrogate-gradient-at-old), so the "
        "verdict is the token-mean's: a group-dependent token count, not a constant normaliser "
        "(grpo-length-normalisation-bias).",
        explanation_contains=(_NORMALISER,),
        options={"std_epsilon": STD_EPSILON},
    ),
    LossStyle(
        "rloo",
        "TRL RLOOTrainer / OpenRLHF advantage_estimator='rloo' (Ahmadian et al. 2024, eq. 6): "
        "leave-one-out baseline, sequence sums",
        rloo,
        "llm",
        "torch",
        "unbiased",
        "J",
        _constant(1.0),
        "rloo-unbiased",
        "The claim: RLOO's advantage is an unbiased policy-gradient estimator at every G, "
        "factor 1.",
    ),
    LossStyle(
        "rloo-numpy",
        "RLOO written in NumPy (complex-step differentiation; no torch or JAX needed)",
        rloo_numpy,
        "llm",
        "numpy",
        "unbiased",
        "J",
        _constant(1.0),
        "rloo-unbiased",
        "As rloo: the claim's factor 1.",
    ),
    LossStyle(
        "dr-grpo-numpy",
        "Dr. GRPO written in NumPy (complex steps through exp; the clip does not bind at "
        "theta_old and is left out)",
        dr_grpo_numpy,
        "llm",
        "numpy",
        "unbiased",
        "J",
        lambda G, L: (1 - 1 / G) / L,
        "grpo-length-normalisation-bias",
        "As dr-grpo: c = (1 - 1/G)/L.",
    ),
    LossStyle(
        "reinforce++-global-whitening",
        "OpenRLHF REINFORCE++ (Hu 2025, eqs. 8-10): k1 in the reward, returns to go, "
        "advantages whitened over every token of the batch",
        reinforce_plus_plus,
        "llm",
        "torch",
        "biased",
        None,
        None,
        "group-std-normalisation",
        "The claim: dividing by a std computed from the sampled group reweights by a "
        "group-dependent factor; here the mean and std are over tokens, so they also depend on "
        "the lengths: no objective of the library is followed.",
        explanation_contains=(_NORMALISER,),
    ),
    LossStyle(
        "k1-in-reward-rloo",
        "PPO-RLHF / REINFORCE++ KL shaping (OpenRLHF compute_reward, verl apply_kl_penalty "
        "'kl'): -beta k1 per token in the reward, summed to go, RLOO baseline",
        rloo_k1_in_reward,
        "llm",
        "torch",
        "unbiased",
        "J - beta KL(pi||ref)",
        _constant(1.0),
        "llm-k1-reward-to-go-sequence-kl-gradient",
        "The claim: -beta k1 in the reward summed to go gives exactly -beta grad KL(pi||ref) of "
        "sequences; with RLOO (rloo-unbiased) the update is grad(J - beta KL(pi||ref)), "
        "factor 1.",
    ),
    LossStyle(
        "k1-in-reward-numpy",
        "k1 in the reward summed to go with RLOO's baseline, in NumPy",
        k1_in_reward_numpy,
        "llm",
        "numpy",
        "unbiased",
        "J - beta KL(pi||ref)",
        _constant(1.0),
        "llm-k1-reward-to-go-sequence-kl-gradient",
        "As k1-in-reward-rloo.",
    ),
    LossStyle(
        "gspo",
        "verl compute_policy_loss_gspo (Zheng et al. 2025, eqs. 5-7): geometric-mean sequence "
        "ratio, seq-mean-token-mean, here with RLOO advantages",
        gspo,
        "llm",
        "torch",
        "unbiased",
        "length-reweighted J",
        _constant(1.0),
        "gspo-gradient-at-old",
        "The claim: at theta_old every token gets the weight s A/|y| with s = 1, so with RLOO "
        "advantages GSPO ascends E[(r - E r)/|y|], factor 1.",
    ),
    LossStyle(
        "cispo",
        "CISPO (MiniMax 2025, eq. 4): sg(clip(ratio, 0, 1 + 0.28)) A log pi, RLOO advantages, "
        "token sums",
        cispo,
        "llm",
        "torch",
        "unbiased",
        "J",
        _constant(1.0),
        "rloo-unbiased",
        "At theta_old the detached clipped ratio is 1, so each token's gradient is -A grad log "
        "pi: the RLOO estimator (rloo-unbiased), factor 1.",
    ),
    LossStyle(
        "k1-in-loss",
        "verl kl_penalty 'kl' with use_kl_loss: k1 = log pi - log pi_ref per token, token sums",
        k1_in_loss,
        "llm",
        "torch",
        "zero",
        None,
        None,
        "llm-token-k1-loss-zero-gradient",
        "The claim: k1 in the loss has exactly zero expected gradient (the expected score is 0).",
    ),
    LossStyle(
        "k2-in-loss",
        "verl kl_penalty 'mse' with use_kl_loss: k2 = (log pi - log pi_ref)^2 / 2, token sums",
        k2_in_loss,
        "llm",
        "torch",
        "unbiased",
        "token KL(pi||ref)",
        _constant(1.0),
        "llm-token-k2-loss-partial-kl-gradient",
        "The claim: per-token k2 in the loss differentiates the per-token KL(pi||ref) with the "
        "prefixes frozen (the partial gradient), factor 1.",
    ),
    LossStyle(
        "k3-in-loss",
        "TRL GRPOTrainer per_token_kl (verl kl_penalty 'low_var_kl' without its clamp at 10): "
        "k3 per token, token sums",
        k3_in_loss,
        "llm",
        "torch",
        "unbiased",
        "token KL(ref||pi)",
        _constant(1.0),
        "llm-token-k3-loss-per-token-forward-kl",
        "The claim: per-token k3 in the loss follows the per-token KL(ref||pi) at the prefixes "
        "pi visits, factor 1.",
    ),
    LossStyle(
        "k3-in-loss-numpy",
        "k3 per token in the loss, in NumPy",
        k3_in_loss_numpy,
        "llm",
        "numpy",
        "unbiased",
        "token KL(ref||pi)",
        _constant(1.0),
        "llm-token-k3-loss-per-token-forward-kl",
        "As k3-in-loss.",
    ),
    LossStyle(
        "importance-weighted-k3",
        "k3 per token weighted by the detached prefix ratio pi_ref(y_<t)/pi(y_<t) (the "
        "correction of claim llm-token-k3-loss-per-token-forward-kl)",
        importance_weighted_k3,
        "llm",
        "torch",
        "unbiased",
        "KL(ref||pi)",
        _constant(1.0),
        "llm-token-k3-loss-per-token-forward-kl",
        "The claim: weighting token t by the detached prefix ratio makes per-token k3 the "
        "sequence KL(ref||pi), factor 1.",
    ),
    LossStyle(
        "rloo-plus-k3",
        "TRL GRPOTrainer with beta = 0.1 (k3 per token added to the loss), RLOO advantages",
        rloo_plus_k3,
        "llm",
        "torch",
        "unbiased",
        "J - beta token KL(ref||pi)",
        _constant(1.0),
        "llm-token-k3-loss-per-token-forward-kl",
        "rloo-unbiased for the policy term plus the claim's per-token KL(ref||pi) for beta k3: "
        "grad(J - beta token KL(ref||pi)), factor 1.",
    ),
    # ------------------------------------------------------------------ the subtly wrong
    LossStyle(
        "wrong-kl-sign",
        "wrong: RLOO minus beta k3 (the KL term added with the wrong sign)",
        rloo_minus_k3,
        "llm",
        "torch",
        "biased",
        None,
        None,
        "llm-token-k3-loss-per-token-forward-kl",
        "The claim gives +beta grad token KL(ref||pi) for +beta k3; with -beta the "
        "decomposition is J plus the divergence with coefficient -beta: the loss pushes away "
        "from pi_ref.",
        expected_terms={"J": _constant(1.0), "token KL(ref||pi)": _constant(-BETA)},
        explanation_contains=("wrong sign", "token KL(ref||pi)"),
        wrong=True,
    ),
    LossStyle(
        "wrong-mask-after-normalisation",
        "wrong: the token mean over the padded row (loss_mat.mean(-1)) and then the mask, where "
        "GRPO's per-response token mean was meant",
        token_mean_normalised_before_mask,
        "llm",
        "torch",
        "biased",
        "length-reweighted J",
        None,
        "grpo-length-normalisation-bias",
        "The claim: 1/|y| gives the length-reweighted objective, a constant normaliser (the "
        "padded width T = L) only rescales grad J: the loss follows (1 - 1/G)/L grad J, not the "
        "length-reweighted J it was written for.",
        explanation_contains=("does not follow length-reweighted J", "constant token normaliser L"),
        objective="length-reweighted J",
        wrong=True,
    ),
    LossStyle(
        "wrong-whiten-before-mask",
        "wrong: token advantages whitened over the padded [B, T] tensor (padding zeros in the "
        "mean and std), the mask applied afterwards",
        whiten_before_mask,
        "llm",
        "torch",
        "biased",
        None,
        None,
        "group-std-normalisation",
        "A std (and mean) of the sampled group's padded tensor scales each group differently "
        "(group-std-normalisation), here also through the padding count: no named objective.",
        explanation_contains=(_NORMALISER,),
        wrong=True,
    ),
    LossStyle(
        "wrong-micro-batch-local-token-mean",
        "wrong: gradient accumulation over 2 micro-batches, each normalised by its own token "
        "count, then averaged",
        micro_batch_token_mean,
        "llm",
        "torch",
        "biased",
        None,
        None,
        "gradient-accumulation-normalisation",
        "The claim: averaging micro-batch token means weights each micro-batch by 1/K instead of "
        "its token share, a weight that depends on the sampled rows and their order.",
        explanation_contains=(_NORMALISER, "micro-batches"),
        wrong=True,
    ),
    # ------------------------------------------------------------------ actor-critic
    LossStyle(
        "reinforce-discounted",
        "REINFORCE with gamma^t kept (Sutton et al. 2000; Spinning Up's reward-to-go form)",
        reinforce_discounted,
        "actor-critic",
        "torch",
        "unbiased",
        "J",
        _constant(1.0),
        "reward-to-go-unbiased",
        "The claim: the score weighted by the (discounted) reward to go is unbiased for grad J, "
        "factor 1.",
    ),
    LossStyle(
        "ppo-value-entropy",
        "PPO as CleanRL ppo.py / Stable-Baselines3 PPO: clipped surrogate, GAE(0.95), value "
        "loss c_v = 0.5, entropy bonus c_e = 0.01, mean over steps",
        ppo_value_entropy,
        "actor-critic",
        "torch",
        "unbiased",
        "J without gamma^t + 0.01 state entropy",
        lambda G, T: 1 / T,
        "actor-critic-loss-reference",
        "At theta_old the clip does not bind (ppo-clip-gradient); with exact values E[GAE_t | "
        "s_t, a_t] = Q_t - V_t (td-error-is-advantage); the value loss has no policy gradient "
        "and the entropy bonus enters with minus c_e (actor-critic-loss-reference): "
        "(1/T) grad(J without gamma^t) + (c_e/T) grad(state entropy).",
        expected_terms={
            "J without gamma^t": lambda G, T: 1 / T,
            "state entropy": lambda G, T: ENTROPY_COEFFICIENT / T,
        },
    ),
    LossStyle(
        "a2c",
        "A2C (Mnih et al. 2016; Stable-Baselines3 A2C): Monte-Carlo returns minus V, entropy "
        "bonus 0.01, mean over steps",
        a2c,
        "actor-critic",
        "torch",
        "unbiased",
        "J without gamma^t + 0.01 state entropy",
        lambda G, T: 1 / T,
        "td-error-is-advantage",
        "E[G_t - V_t | s_t, a_t] = Q_t - V_t, the advantage (td-error-is-advantage, "
        "baseline-unbiased), weighted alike over steps (no gamma^t), plus the entropy bonus: "
        "(1/T) grad(J without gamma^t) + (c_e/T) grad(state entropy).",
        expected_terms={
            "J without gamma^t": lambda G, T: 1 / T,
            "state entropy": lambda G, T: ENTROPY_COEFFICIENT / T,
        },
    ),
    LossStyle(
        "a2c-numpy",
        "A2C's policy term in NumPy (no entropy bonus)",
        a2c_numpy,
        "actor-critic",
        "numpy",
        "unbiased",
        "J without gamma^t",
        lambda G, T: 1 / T,
        "td-error-is-advantage",
        "As a2c without the entropy bonus: (1/T) grad(J without gamma^t).",
    ),
)
