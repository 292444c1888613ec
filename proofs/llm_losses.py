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
    lazy_lambdify,
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


# ============================================================================ 2, 3. whitening
i, j = sp.Idx("i"), sp.Idx("j")
n_entries = sp.Symbol("n", integer=True, positive=True)  # response entries (or batch size)
divisor = sp.Symbol("m", positive=True)  # n - ddof
eps_w = sp.Symbol("epsilon", nonnegative=True)
scale_a = sp.Symbol("a", positive=True)
deviation = sp.IndexedBase("d", real=True)  # d_i = x_i - mean(x) over the response entries


def over_entries(term: sp.Expr, index: sp.Idx = i) -> sp.Expr:
    r"""$\sum_{i=0}^{n-1}$ term (unevaluated)."""
    return IndexSum(term, (index, 0, n_entries - 1))


_squares = over_entries(deviation[j] ** 2, j)
_variance = _squares / divisor  # sigma^2 (or s^2), divisor n - ddof

masked_variance_steps = Derivation(
    "masked-whiten-variance",
    (
        Step(
            over_entries((deviation[i] / sp.sqrt(_variance + eps_w)) ** 2) / divisor,
            "the ddof-variance (divisor m = n - ddof) of the whitened response entries "
            "d_i / sqrt(sigma^2 + epsilon), whose mean is 0",
        ),
        Step(
            over_entries(deviation[i] ** 2) / (divisor * (_variance + eps_w)),
            "sqrt(sigma^2 + epsilon) does not depend on i",
        ),
        Step(
            sp.Mul(_variance, sp.Pow(_variance + eps_w, -1), evaluate=False),
            "sigma^2 = sum_j d_j^2 / m (the definition, the same divisor)",
        ),
    ),
)
affine_steps = Derivation(
    "masked-whiten-affine",
    (
        Step(
            sp.sqrt(over_entries((scale_a * deviation[j]) ** 2, j) / divisor),
            "the std of the response entries of a x + b (epsilon = 0): its deviations from its "
            "mean are a d_j, the mean being affine",
        ),
        Step(
            sp.Pow(sp.Mul(scale_a**2, _variance, evaluate=False), sp.S.Half, evaluate=False),
            "sum_j (a d_j)^2 = a^2 sum_j d_j^2 (a does not depend on j)",
        ),
        Step(
            scale_a * sp.sqrt(_variance),
            "sqrt(a^2 S) = a sqrt(S) for a > 0: the std scales by a, so the whitened entries "
            "(a d_i) / (a sigma) = d_i / sigma do not change",
        ),
    ),
)
batch_variance_steps = Derivation(
    "batch-whiten-variance",
    (
        Step(
            over_entries((deviation[i] / (sp.sqrt(_variance) + eps_w)) ** 2) / divisor,
            "the ddof-variance (divisor m = B - ddof) of A_i = (u_i - mean u) / (s_u + epsilon) "
            "over the whole batch, whose mean is 0",
        ),
        Step(
            over_entries(deviation[i] ** 2) / (divisor * (sp.sqrt(_variance) + eps_w) ** 2),
            "s_u + epsilon is one number for the whole batch (not per group)",
        ),
        Step(
            sp.Mul(
                sp.Pow(sp.sqrt(_variance), 2, evaluate=False),
                sp.Pow(sp.sqrt(_variance) + eps_w, -2),
                evaluate=False,
            ),
            "s_u^2 = sum_j d_j^2 / m (the definition, the same divisor)",
        ),
    ),
)

VALUE_FLOATS = st.floats(-10.0, 10.0, allow_subnormal=False)
_masked_variance = lazy_lambdify(
    (deviation, divisor, eps_w, n_entries), masked_variance_steps.conclusion
)
_batch_variance = lazy_lambdify(
    (deviation, divisor, eps_w, n_entries), batch_variance_steps.conclusion
)


def _well_conditioned(values: np.ndarray) -> np.ndarray:
    """The values, or a constant array when max |x - mean| < 1e-6 max |x| (kappa <= 1e6)."""
    spread = float(np.max(np.abs(values - values.mean())))
    if spread < 1e-6 * float(np.max(np.abs(values))):
        return np.full(values.shape, values.flat[0])
    return values


def _moment_by_conclusion(
    values: list[float], epsilon: float, ddof: int, conclusion: Callable[..., Any], power: int
) -> float:
    """The conclusion at d = x - mean(x) (statistics.fmean), scaled by the power of two nearest
    max |d| (the conclusions are homogeneous of degree 0 in (d, epsilon^{1/power}))."""
    centre = statistics.fmean(values)
    d = np.array([value - centre for value in values])
    _, exponent = np.frexp(np.max(np.abs(d)))
    scale = float(np.ldexp(1.0, int(exponent)))
    return float(conclusion(d / scale, len(values) - ddof, epsilon / scale**power, len(values)))


def _variance_of(values: list[float], ddof: int) -> float:
    return statistics.variance(values) if ddof == 1 else statistics.pvariance(values)


def _output_moments(values: list[float], ddof: int) -> list[float]:
    """(mean, sum of squares / (n - ddof)) of output entries, by explicit sums (0 if n <= ddof)."""
    divisor_value = len(values) - ddof
    second = math.fsum(v * v for v in values) / divisor_value if divisor_value > 0 else 0.0
    return [math.fsum(values) / len(values), second]


# ---------------------------------------------------------------------------- masked_whiten
@dataclass(frozen=True)
class WhitenExample:
    """values, mask ``[B, T]`` (at least ddof + 1 response tokens), epsilon, ddof, and the
    affine map x -> a x + b of the invariance check."""

    values: np.ndarray
    mask: np.ndarray
    epsilon: float
    ddof: int
    a: float
    b: float


@st.composite
def whiten_examples(draw: st.DrawFn) -> WhitenExample:
    """1..3 rows of 1..5 entries in [-10, 10] (padding too, from a drawn NumPy seed: fast to
    generate), at least 2 response tokens, response values constant now and then, epsilon 0,
    1e-8 or in [1e-3, 1]."""
    rows, columns = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    if rows * columns < 2:
        columns = 2
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.uniform(-10.0, 10.0, (rows, columns))
    mask = rng.random((rows, columns)) < 0.7
    mask.ravel()[:2] = True
    selected = values[mask]
    values[mask] = (
        np.full(selected.shape, selected[0])
        if draw(st.integers(0, 5)) == 0
        else _well_conditioned(selected)
    )
    epsilon = draw(st.sampled_from([0.0, 1e-8]) | st.floats(1e-3, 1.0))
    return WhitenExample(
        values,
        mask,
        float(epsilon),
        draw(st.sampled_from([0, 1])),
        draw(st.floats(0.1, 10.0)),
        draw(st.floats(-10.0, 10.0)),
    )


def shipped_masked_whiten(example: WhitenExample) -> np.ndarray:
    """[entries of masked_whiten, their response mean and ddof-variance, the change of the
    entries (epsilon = 0) when the values are mapped to a x + b]."""
    whitened = masked_whiten(
        example.values, example.mask, epsilon=example.epsilon, ddof=example.ddof
    )
    moments = _output_moments(whitened[example.mask].tolist(), example.ddof)
    plain = masked_whiten(example.values, example.mask, epsilon=0.0, ddof=example.ddof)
    moved = masked_whiten(
        example.a * example.values + example.b, example.mask, epsilon=0.0, ddof=example.ddof
    )
    return np.concatenate([whitened.ravel(), np.array(moments), (moved - plain).ravel()])


def whitened_by_loop(
    example: WhitenExample,
    *,
    ddof: int | None = None,
    epsilon_outside: bool = False,
    remask: bool = True,
    statistics_over: str = "response",
) -> np.ndarray:
    """The whitened entries by the statistics module, entry by entry, as a (possibly buggy)
    implementation would compute them: ``statistics_over`` is "response", "all" (padding in
    the statistics) or "row" (per-row statistics)."""
    degrees = example.ddof if ddof is None else ddof
    out = np.zeros(example.values.shape)
    groups: list[tuple[np.ndarray, np.ndarray]]
    if statistics_over == "row":
        groups = [
            (np.eye(example.mask.shape[0], dtype=bool)[b][:, None] & example.mask, example.mask[b])
            for b in range(example.mask.shape[0])
            if example.mask[b].sum() > 0
        ]
    else:
        groups = [(example.mask, example.mask)]
    for selection, _ in groups:
        source = (
            np.ones(example.mask.shape, dtype=bool) if statistics_over == "all" else selection
        )
        values = example.values[source].tolist()
        if len(values) - degrees < 1 or all(v == values[0] for v in values):
            continue  # constant: 0 (the documented convention)
        centre = statistics.fmean(values)
        variance = _variance_of(values, degrees)
        spread = (
            math.sqrt(variance) + example.epsilon
            if epsilon_outside
            else math.sqrt(variance + example.epsilon)
        )
        rows_of = selection if statistics_over == "row" else np.ones(example.mask.shape, bool)
        for index in zip(*np.nonzero(rows_of), strict=True):
            if example.mask[index] or not remask:
                out[index] = (example.values[index] - centre) / spread
    return out


def expected_masked_whiten(example: WhitenExample, **bug: Any) -> np.ndarray:
    """[entries by loop, moments (0 and the lambdified sigma^2 / (sigma^2 + epsilon)), zeros]."""
    entries = whitened_by_loop(example, **bug)
    selected = example.values[example.mask].tolist()
    if all(v == selected[0] for v in selected):
        moments = [0.0, 0.0]
    elif bug.get("ddof") is not None:  # the other ddof: sigma'^2 in the normaliser
        other = bug["ddof"]
        ratio = len(selected) - example.ddof
        moments = [
            0.0,
            _variance_of(selected, other)
            * (len(selected) - other)
            / ratio
            / (_variance_of(selected, other) + example.epsilon),
        ]
    elif bug:
        moments = _output_moments(entries[example.mask].tolist(), example.ddof)
    else:
        variance = _moment_by_conclusion(
            selected, example.epsilon, example.ddof, _masked_variance, 2
        )
        moments = [0.0, variance]
    return np.concatenate([entries.ravel(), np.array(moments), np.zeros(example.values.size)])


def _whiten_rtol(example: WhitenExample) -> float:
    """exact_rtol with the conditioning of the deviations, before and after x -> a x + b."""
    selected = example.values[example.mask]
    if selected.max() == selected.min():  # constant: whitened to 0, nothing is computed
        return exact_rtol(n_terms=example.values.size + 8)
    spread = float(np.max(np.abs(selected - selected.mean())))
    moved = example.a * selected + example.b
    kappa = max(
        float(np.max(np.abs(selected))) / spread,
        float(np.max(np.abs(moved))) / (example.a * spread),
    )
    return exact_rtol(condition_number=kappa, n_terms=example.values.size + 8)


_WHITEN_WITNESS = WhitenExample(
    np.array([[1.0, 2.0, 3.0, 100.0], [4.0, 8.0, 5.0, -7.0]]),
    np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=bool),
    0.5,
    1,
    2.0,
    -3.0,
)

MASKED_WHITEN_CLAIM = Claim(
    id="masked-whiten-reference",
    title="Masked whitening: response mean 0, variance sigma^2/(sigma^2 + epsilon), padding 0",
    summary=(
        "rlmath.llm_reference.masked_whiten whitens with the statistics of the response tokens "
        "only, re-masks the padding to 0, and does not depend on the units of its input."
    ),
    statement=Statement(masked_variance_steps.start, masked_variance_steps.conclusion),
    assumptions=(
        "At least ddof + 1 response tokens; epsilon >= 0 is added to the variance inside the "
        "square root; constant response values are whitened to 0 (a convention).",
        "The affine invariance is for epsilon = 0 and a > 0 (derivation masked-whiten-affine).",
    ),
    references=(
        "verl, ``verl/utils/torch_functional.py``, ``masked_whiten``, ``masked_var``; Hu, J., "
        "*REINFORCE++*, arXiv:2501.03262, 2025.",
    ),
    symbolic=SymbolicLeg((masked_variance_steps, affine_steps)),
    exact=ExactLeg(
        whiten_examples(),
        lhs=shipped_masked_whiten,
        rhs=expected_masked_whiten,
        rhs_reason=(
            "three blocks: the entries by a loop over the statistics module (not a "
            "conclusion), the moments 0 and the lambdified conclusion sigma^2 / (sigma^2 + "
            "epsilon), and zeros for the affine invariance"
        ),
        rtol=_whiten_rtol,
        max_examples=25,
        error_scale=lambda example: float(max(1.0, example.values.size)),
        witnesses=(_WHITEN_WITNESS,),
        witness_reason=(
            "padding with a value far from the mean, two rows with different statistics and "
            "epsilon = 0.5: separates not-re-masked, padding-in-statistics, per-row-statistics "
            "and epsilon-outside-sqrt whatever the seed draws"
        ),
        description=(
            "the shipped masked_whiten (entries, their moments, the change under a x + b) vs a "
            "statistics-module loop, the lambdified variance and 0"
        ),
    ),
    mutants=(
        Mutant(
            "not-re-masked",
            "the padded positions keep (x - mu) / sqrt(sigma^2 + epsilon) (verl's function "
            "without its callers' mask)",
            exact=lambda example: expected_masked_whiten(example, remask=False),
        ),
        Mutant(
            "ddof-swapped",
            "the variance with the other ddof (NumPy's 0 for PyTorch's 1 or back)",
            symbolic=SymbolicMutation(
                "masked-whiten-variance", _variance / (_squares / (divisor + 1) + eps_w)
            ),
            exact=lambda example: expected_masked_whiten(example, ddof=1 - example.ddof),
        ),
        Mutant(
            "epsilon-outside-sqrt",
            "(x - mu) / (sigma + epsilon): GRPO's convention instead of verl's rsqrt(var + eps)",
            symbolic=SymbolicMutation(
                "masked-whiten-variance", _variance / (sp.sqrt(_variance) + eps_w) ** 2
            ),
            exact=lambda example: expected_masked_whiten(example, epsilon_outside=True),
        ),
        Mutant(
            "padding-in-statistics",
            "mean and variance over every entry, padding included",
            exact=lambda example: expected_masked_whiten(example, statistics_over="all"),
        ),
        Mutant(
            "per-row-statistics",
            "mean and variance per row instead of over all response tokens of the batch",
            exact=lambda example: expected_masked_whiten(example, statistics_over="row"),
        ),
        Mutant(
            "std-not-scale-equivariant",
            "the std of a x + b taken as sqrt(a) sigma (a variance-scale slip)",
            symbolic=SymbolicMutation("masked-whiten-affine", sp.sqrt(scale_a * _variance)),
        ),
    ),
)


# ---------------------------------------------------------------------------- batch whitening
@dataclass(frozen=True)
class BatchExample:
    """rewards [B], group ids [B] or None, epsilon, ddof."""

    rewards: np.ndarray
    groups: np.ndarray | None
    epsilon: float
    ddof: int


@st.composite
def batch_examples(draw: st.DrawFn) -> BatchExample:
    """1..8 rewards in [-10, 10] (from a drawn NumPy seed), no groups or up to 3 groups whose
    rewards are constant now and then, epsilon 0, 1e-8 or in [1e-3, 1], ddof 0 or 1."""
    size = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rewards = np.round(rng.uniform(-10.0, 10.0, size), draw(st.sampled_from([0, 1, 15])))
    groups = None
    if draw(st.booleans()):
        groups = rng.integers(0, 3, size)
        for g in np.unique(groups):
            if draw(st.integers(0, 4)) == 0:
                rewards[groups == g] = rewards[groups == g][0]
            else:
                rewards[groups == g] = _well_conditioned(rewards[groups == g])
    else:
        rewards = _well_conditioned(rewards)
    epsilon = draw(st.sampled_from([0.0, 1e-8]) | st.floats(1e-3, 1.0))
    return BatchExample(rewards, groups, float(epsilon), draw(st.sampled_from([0, 1])))


def shipped_batch_whitened(example: BatchExample) -> np.ndarray:
    """[advantages, their mean and ddof-variance over the batch]."""
    advantages = batch_whitened_advantages(
        example.rewards, example.groups, epsilon=example.epsilon, ddof=example.ddof
    )
    return np.concatenate([advantages, _output_moments(advantages.tolist(), example.ddof)])


def _centred(example: BatchExample, subtract_group_mean: bool = True) -> list[float]:
    """u: the rewards minus their group's mean (statistics.fmean; 0 for a constant group)."""
    rewards = example.rewards.tolist()
    if example.groups is None or not subtract_group_mean:
        return rewards
    out = []
    for index, value in enumerate(rewards):
        group = example.groups[index]
        members = [r for r, g in zip(rewards, example.groups, strict=True) if g == group]
        constant = all(m == members[0] for m in members)
        out.append(0.0 if constant else value - statistics.fmean(members))
    return out


def expected_batch_whitened(
    example: BatchExample,
    *,
    ddof: int | None = None,
    epsilon_inside: bool = False,
    per_group: bool = False,
    subtract_group_mean: bool = True,
) -> np.ndarray:
    """[(u - mean u) / (s_u + epsilon) by the statistics module, moments (0 and the lambdified
    s^2 / (s + epsilon)^2)], or what a buggy implementation computes (moments of its output)."""
    u = _centred(example, subtract_group_mean)
    degrees = example.ddof if ddof is None else ddof
    pools = (
        [[k for k in range(len(u)) if example.groups[k] == g] for g in np.unique(example.groups)]
        if per_group and example.groups is not None
        else [list(range(len(u)))]
    )
    advantages = [0.0] * len(u)
    for pool in pools:
        values = [u[k] for k in pool]
        if len(values) - degrees < 1 or all(v == values[0] for v in values):
            continue  # all equal (B = 1 included): 0, the documented convention
        centre = statistics.fmean(values)
        variance = _variance_of(values, degrees)
        spread = (
            math.sqrt(variance + example.epsilon)
            if epsilon_inside
            else math.sqrt(variance) + example.epsilon
        )
        for k in pool:
            advantages[k] = (u[k] - centre) / spread
    bug = ddof is not None or epsilon_inside or per_group or not subtract_group_mean
    if bug:
        moments = _output_moments(advantages, example.ddof)
    elif all(v == u[0] for v in u) or len(u) - example.ddof < 1:
        moments = [0.0, 0.0]
    else:
        moments = [0.0, _moment_by_conclusion(u, example.epsilon, example.ddof, _batch_variance, 1)]
    return np.concatenate([np.array(advantages), np.array(moments)])


def _batch_rtol(example: BatchExample) -> float:
    """exact_rtol with kappa = max |r| / max |u - mean u| (digits lost forming the deviations)."""
    u = np.array(_centred(example))
    if u.max() == u.min():  # all equal: 0 by convention, nothing is computed
        return exact_rtol(n_terms=2 * example.rewards.size + 8)
    spread = float(np.max(np.abs(u - u.mean())))
    kappa = float(np.max(np.abs(example.rewards))) / spread
    return exact_rtol(condition_number=kappa, n_terms=2 * example.rewards.size + 8)


_BATCH_WITNESS = BatchExample(
    np.array([1.0, 3.0, 10.0, 16.0, 0.0, 1.0]), np.array([0, 0, 1, 1, 2, 2]), 0.5, 1
)

BATCH_WHITEN_CLAIM = Claim(
    id="batch-whitened-advantages-reference",
    title="REINFORCE++ whitening: one mean and one std for the whole batch",
    summary=(
        "rlmath.llm_reference.batch_whitened_advantages subtracts the group mean (if groups are "
        "given), then whitens with the statistics of the whole batch: mean 0, variance "
        "s^2/(s + epsilon)^2, the same scale for every group."
    ),
    statement=Statement(batch_variance_steps.start, batch_variance_steps.conclusion),
    assumptions=(
        "epsilon >= 0 is added to the std; all-equal centred rewards (B = 1 included) give 0 "
        "(a convention); constant groups are centred to 0 exactly.",
    ),
    references=(
        "Hu, J., *REINFORCE++: A Simple and Efficient Approach for Aligning Large Language "
        "Models*, arXiv:2501.03262, 2025, Sec. 3; OpenRLHF, advantage_estimator = "
        "``reinforce``, ``reinforce_baseline``.",
    ),
    symbolic=SymbolicLeg((batch_variance_steps,)),
    exact=ExactLeg(
        batch_examples(),
        lhs=shipped_batch_whitened,
        rhs=expected_batch_whitened,
        rhs_reason=(
            "two blocks: the advantages by a loop over the statistics module (not a "
            "conclusion) and the moments 0 and the lambdified conclusion s^2 / (s + epsilon)^2"
        ),
        rtol=_batch_rtol,
        max_examples=25,
        error_scale=lambda example: float(max(1.0, example.rewards.size)),
        witnesses=(_BATCH_WITNESS,),
        witness_reason=(
            "three groups of different spreads with epsilon = 0.5: separates per-group-std, "
            "group-mean-not-subtracted and epsilon-inside-sqrt whatever the seed draws"
        ),
        description=(
            "the shipped batch_whitened_advantages (entries, mean, variance) vs a "
            "statistics-module loop and the lambdified variance"
        ),
    ),
    mutants=(
        Mutant(
            "ddof-swapped",
            "the std with the other ddof (NumPy's 0 for torch.std's 1 or back)",
            symbolic=SymbolicMutation(
                "batch-whiten-variance",
                _variance / (sp.sqrt(_squares / (divisor + 1)) + eps_w) ** 2,
            ),
            exact=lambda example: expected_batch_whitened(example, ddof=1 - example.ddof),
        ),
        Mutant(
            "epsilon-inside-sqrt",
            "(u - mean) / sqrt(s^2 + epsilon): masked_whiten's convention",
            symbolic=SymbolicMutation("batch-whiten-variance", _variance / (_variance + eps_w)),
            exact=lambda example: expected_batch_whitened(example, epsilon_inside=True),
        ),
        Mutant(
            "per-group-std",
            "the std of each group (GRPO) instead of the batch's",
            exact=lambda example: expected_batch_whitened(example, per_group=True),
        ),
        Mutant(
            "group-mean-not-subtracted",
            "groups given but the rewards whitened directly (REINFORCE++ for -baseline)",
            exact=lambda example: expected_batch_whitened(example, subtract_group_mean=False),
        ),
    ),
)


# ============================================================================ 5, 6. CISPO
z = sp.Symbol("z", real=True)  # log pi_theta(y_t | prefix), differentiated
z_copy = sp.Symbol("z'", real=True)  # the copy of z inside the stop-gradient
z_old = sp.Symbol("z_old", real=True)
A = sp.Symbol("A", real=True)
m_tok = sp.Symbol("m", nonnegative=True)  # the token's mask entry
eps_low = sp.Symbol("epsilon_low", positive=True)
eps_high = sp.Symbol("epsilon_high", positive=True)


def clip(value: sp.Expr) -> sp.Expr:
    r"""$\mathrm{clip}(v, 1 - \epsilon_\mathrm{low}, 1 + \epsilon_\mathrm{high})$, unevaluated
    (a lower bound $\le 0$ is inactive for a ratio $v > 0$, as the reference's $\max(\cdot, 0)$)."""
    return sp.Min(sp.Max(value, 1 - eps_low, evaluate=False), 1 + eps_high, evaluate=False)


def cispo_loss_expression(weight_argument: sp.Expr) -> sp.Expr:
    r"""$-m\,\mathrm{clip}(e^{z' - z_\mathrm{old}})\,A\,z$, weight at ``weight_argument``."""
    return -m_tok * clip(sp.exp(weight_argument - z_old)) * A * z


cispo_gradient_steps = Derivation(
    "cispo-gradient",
    (
        Step(
            sp.Subs(sp.Derivative(cispo_loss_expression(z_copy), z), z_copy, z),
            "d loss / d log pi_theta(y_t) with the stop-gradient: the weight is evaluated at a "
            "copy z' of z that is not differentiated, then z' = z",
        ),
        Step(
            -m_tok * clip(sp.exp(z - z_old)) * A,
            "the weight does not depend on z; d(A z)/dz = A",
        ),
    ),
)

rho_sym = sp.exp(z - z_old)
_inside = (rho_sym > 1 - eps_low) & (rho_sym < 1 + eps_high)
_ppo_clipped = ((A > 0) & (rho_sym > 1 + eps_high)) | ((A < 0) & (rho_sym < 1 - eps_low))


@dataclass(frozen=True)
class CispoExample:
    """log_probs, old_log_probs, advantages, mask ``[B, T]`` and the clip range."""

    log_probs: np.ndarray
    old_log_probs: np.ndarray
    advantages: np.ndarray
    mask: np.ndarray
    clip_low: float
    clip_high: float


@st.composite
def cispo_examples(draw: st.DrawFn) -> CispoExample:
    """1..3 rows of 1..5 tokens (from a drawn NumPy seed), log-probs in [-6, -0.05], log-ratios
    in [-1.5, 1.5] (inside and outside the clip range), advantages in [-3, 3]; clip_low above 1
    now and then (no lower clip, as MiniMax-M1)."""
    rows, columns = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    new = rng.uniform(-6.0, -0.05, (rows, columns))
    old = new - rng.uniform(-1.5, 1.5, (rows, columns))
    advantages = rng.uniform(-3.0, 3.0, (rows, columns))
    mask = rng.random((rows, columns)) < 0.8
    low = draw(st.sampled_from([0.2, 2.0]) | st.floats(0.01, 1.5))
    high = draw(st.sampled_from([0.28, 0.2]) | st.floats(0.01, 1.0))
    return CispoExample(new, old, advantages, mask, float(low), float(high))


def _clips(example: CispoExample) -> dict[str, float]:
    return {"clip_low": example.clip_low, "clip_high": example.clip_high}


def detached_loss_derivative(example: CispoExample) -> np.ndarray:
    r"""$\partial\ell_{b,t}/\partial z_{b,t}$ by complex-step differentiation of an independently
    written loss $-m\,w\,A\,z$, $w = \mathrm{clip}(e^{\mathrm{Re}\,z - z_\mathrm{old}})$: taking
    the weight from the real part is the stop-gradient (the complex step does not see it).
    Each entry depends only on its own $z$, so the gradient of the sum is the per-token
    derivative."""
    lower = max(1.0 - example.clip_low, 0.0)

    def loss(values: np.ndarray) -> complex:
        ratio = np.exp(values.real - example.old_log_probs)
        weight = np.minimum(np.maximum(ratio, lower), 1.0 + example.clip_high)
        return complex(np.sum(np.where(example.mask, -weight * example.advantages * values, 0.0)))

    return complex_step_gradient(loss, example.log_probs)


def shipped_cispo(example: CispoExample) -> np.ndarray:
    """[cispo_token_loss_gradient, the complex-step derivative of the detached loss,
    cispo_token_loss], ``[3, B, T]``."""
    args = (example.log_probs, example.old_log_probs, example.advantages, example.mask)
    return np.stack(
        [
            cispo_token_loss_gradient(*args, **_clips(example)),
            detached_loss_derivative(example),
            cispo_token_loss(*args, **_clips(example)),
        ]
    )


def _cispo_arguments(example: CispoExample) -> tuple[Any, ...]:
    """Values of (z, z_old, A, m, epsilon_low, epsilon_high), three blocks: the gradient twice,
    then the value, which is the gradient's conclusion with A replaced by A z (the loss
    -m w A z is linear in A z with the detached w)."""
    advantage_blocks = np.stack(
        [example.advantages, example.advantages, example.advantages * example.log_probs]
    )
    tile = np.stack([example.log_probs] * 3)
    return (
        tile,
        np.stack([example.old_log_probs] * 3),
        advantage_blocks,
        np.stack([example.mask.astype(np.float64)] * 3),
        example.clip_low,
        example.clip_high,
    )


_upper_clip_only = lazy_lambdify(
    (z, z_old, A, m_tok, eps_low, eps_high), -m_tok * sp.Min(rho_sym, 1 + eps_high) * A
)


def _cispo_mutant(id_: str, description: str, wrong: sp.Expr) -> Mutant:
    return Mutant(id_, description, symbolic=SymbolicMutation("cispo-gradient", wrong))


CISPO_CLAIM = Claim(
    id="cispo-token-loss-gradient-reference",
    title="CISPO's gradient: the clipped weight is detached, clipped tokens keep their gradient",
    summary=(
        "rlmath.llm_reference.cispo_token_loss_gradient is -clip(rho) A per token, clipped or "
        "not (the weight bounds the step, it does not drop the token), and cispo_token_loss is "
        "-clip(rho) A log pi."
    ),
    statement=Statement(cispo_gradient_steps.start, cispo_gradient_steps.conclusion),
    assumptions=(
        "rho = exp(log pi_theta - log pi_old) > 0, so a lower clip bound <= 0 is inactive.",
        "The stop-gradient is modelled by a copy z' of z that is not differentiated.",
    ),
    references=(
        "MiniMax et al., *MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning "
        "Attention*, arXiv:2506.13585, 2025, Sec. 3.1, eq. (4)-(5); verl, "
        "``compute_policy_loss_cispo``.",
    ),
    symbolic=SymbolicLeg((cispo_gradient_steps,)),
    exact=ExactLeg(
        cispo_examples(),
        lhs=shipped_cispo,
        symbols=(z, z_old, A, m_tok, eps_low, eps_high),
        arguments=_cispo_arguments,
        # exp of a log-ratio |d| <= 1.5 rounded to a few ulps of |z| <= 6: kappa <= 6 * e^1.5
        rtol=exact_rtol(condition_number=30.0, n_terms=4),
        max_examples=30,
        description=(
            "the shipped cispo_token_loss_gradient, the complex-step derivative of the "
            "detached loss and the shipped cispo_token_loss vs the lambdified -m clip(rho) A "
            "(A z for the value)"
        ),
    ),
    mutants=(
        _cispo_mutant(
            "weight-not-detached",
            "the stop-gradient forgotten: inside the clip range the weight rho is "
            "differentiated too, -m A (rho + rho z)",
            sp.Piecewise(
                (-m_tok * A * (rho_sym + rho_sym * z), _inside),
                (-m_tok * clip(rho_sym) * A, True),
            ),
        ),
        _cispo_mutant(
            "unclipped-weight", "the raw ratio rho as the weight", -m_tok * rho_sym * A
        ),
        _cispo_mutant(
            "clipped-tokens-dropped",
            "PPO's rule: no gradient where the clipped branch of the min is taken",
            sp.Piecewise((0, _ppo_clipped), (-m_tok * rho_sym * A, True)),
        ),
        Mutant(
            "upper-clip-only",
            "only the upper bound applied (the lower clip forgotten); exact leg only: the "
            "mutant differs from the claim only where rho < 1 - epsilon_low, a region random "
            "admissible points of the symbolic leg reach only now and then",
            exact=lambda example: _upper_clip_only(*_cispo_arguments(example)),
        ),
        _cispo_mutant("objective-not-loss", "the objective's sign", m_tok * clip(rho_sym) * A),
    ),
)


# ---------------------------------------------------------------------------- CISPO at theta_old
cispo_old_steps = Derivation(
    "cispo-at-old",
    (
        Step(
            sp.Subs(sp.Derivative(cispo_loss_expression(z_copy), z), (z, z_copy), (z_old, z_old)),
            "d loss / d log pi_theta(y_t) at theta = theta_old (z = z' = z_old), the weight "
            "detached",
        ),
        Step(
            -m_tok * clip(sp.exp(sp.Add(z_old, -z_old, evaluate=False), evaluate=False)) * A,
            "the weight does not depend on z; d(A z)/dz = A; then z' = z_old",
        ),
        Step(-m_tok * A, "e^0 = 1 lies inside [1 - eps_low, 1 + eps_high]: the weight is 1"),
    ),
)


@st.composite
def _old_examples(draw: st.DrawFn) -> tuple[SequenceModel, float, float]:
    model = draw(sequence_models(max_prompts=2, max_tokens=2, max_length=3))
    low = draw(st.sampled_from([0.2, 2.0]) | st.floats(0.01, 1.5))
    high = draw(st.sampled_from([0.28, 0.2]) | st.floats(0.01, 1.0))
    return model, float(low), float(high)


def _complex_objective(model: SequenceModel, logits: np.ndarray, rewards: np.ndarray) -> complex:
    r"""$\sum_x \rho(x) \sum_y \prod_t \mathrm{softmax}(\theta)_{x, n_t, y_t} R(x, y)$ at complex
    logits, written from the response table (complex-safe log-softmax)."""
    shift = logits.real.max(axis=-1, keepdims=True)
    log_pi = logits - (np.log(np.exp(logits - shift).sum(axis=-1, keepdims=True)) + shift)
    r = model.responses
    n, v = np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)
    log_p = np.where(r.mask[None], log_pi[:, n, v], 0.0).sum(axis=2)  # [X, R]
    return complex(model.prompt_probabilities @ (np.exp(log_p) * rewards).sum(axis=1))


def _objective_gradient(model: SequenceModel, rewards: np.ndarray) -> np.ndarray:
    r"""$\nabla_\theta \sum_x \rho(x) \mathbb E_y[R(x, y)]$ by complex-step differentiation."""
    return complex_step_gradient(lambda zz: _complex_objective(model, zz, rewards), model.theta)


def expected_cispo_gradient(example: tuple[SequenceModel, float, float]) -> np.ndarray:
    r"""$\mathbb E_x \mathbb E_{y \sim \pi_\mathrm{old}}[\sum_t \partial_z\ell_t
    \nabla\log\pi(y_t)]$
    at $\theta = \theta_\mathrm{old}$ by enumeration, the slopes from the shipped
    cispo_token_loss_gradient with $A_t = R(x, y)$ on every token (token sum per response)."""
    model, low, high = example
    z_now = model.token_log_probabilities()  # [X, R, L]
    mask = model.responses.mask
    weights = np.zeros(z_now.shape)
    rewards = model.total_rewards()
    for x in range(model.n_prompts):
        advantages = np.where(mask, rewards[x][:, None], 0.0)
        slopes = cispo_token_loss_gradient(
            z_now[x], z_now[x].copy(), advantages, mask, clip_low=low, clip_high=high
        )
        weights[x] = model.prompt_probabilities[x] * model.probabilities()[x][:, None] * slopes
    return model.weighted_score_sum(weights)


def _lengths(model: SequenceModel) -> np.ndarray:
    return model.responses.mask.sum(axis=1).astype(np.float64)


CISPO_OLD_CLAIM = Claim(
    id="cispo-gradient-at-old",
    title="At the old policy CISPO's expected gradient is minus the policy gradient",
    summary=(
        "At theta = theta_old CISPO's clipped weight is 1, so its token-summed loss with the "
        "sequence reward as every token's advantage has expected gradient -grad J (REINFORCE)."
    ),
    statement=Statement(cispo_old_steps.start, cispo_old_steps.conclusion),
    assumptions=(
        "theta = theta_old; responses sampled from pi_old; advantage A_t = R(x, y) on every "
        "token of the response; the per-token losses summed over tokens (not averaged).",
        "The exact leg evaluates the expectation by enumerating every response (SequenceModel).",
    ),
    references=(
        "MiniMax et al., *MiniMax-M1*, arXiv:2506.13585, 2025, eq. (4)-(5); Williams, R. J., "
        "*Simple statistical gradient-following algorithms*, Machine Learning 8, 1992.",
    ),
    symbolic=SymbolicLeg((cispo_old_steps,)),
    exact=ExactLeg(
        _old_examples(),
        lhs=expected_cispo_gradient,
        rhs=lambda example: -_objective_gradient(example[0], example[0].total_rewards()),
        rhs_reason=(
            "the conclusion is per token (-m A); the claim is about its expectation, -grad J, "
            "computed by complex-step differentiation of J written from the response table"
        ),
        rtol=lambda example: exact_rtol(
            condition_number=10.0, n_terms=example[0].n_prompts * example[0].n_responses * 3
        ),
        error_scale=lambda example: float(
            np.max(np.abs(example[0].total_rewards()), initial=1e-300)
        ),
        max_examples=15,
        description=(
            "enumerated E[sum_t cispo_token_loss_gradient * grad log pi] at theta_old vs -grad J "
            "by complex step"
        ),
    ),
    mutants=(
        Mutant(
            "weight-not-detached",
            "the clipped weight differentiated: -m A (1 + z_old) at theta_old",
            symbolic=SymbolicMutation("cispo-at-old", -m_tok * A * (1 + z_old)),
            exact=lambda example: (
                -_objective_gradient(example[0], example[0].total_rewards())
                - example[0].weighted_score_sum(
                    example[0].prompt_probabilities[:, None, None]
                    * example[0].probabilities()[:, :, None]
                    * example[0].total_rewards()[:, :, None]
                    * np.where(example[0].responses.mask, example[0].token_log_probabilities(), 0.0)
                )
            ),
        ),
        Mutant(
            "objective-not-loss",
            "the sign of the loss: +grad J",
            symbolic=SymbolicMutation("cispo-at-old", m_tok * A),
            exact=lambda example: _objective_gradient(example[0], example[0].total_rewards()),
        ),
        Mutant(
            "length-normalised",
            "the per-response token mean (GRPO's 1/|y|) taken for the token sum: the gradient "
            "of E[R / |y|]",
            exact=lambda example: -_objective_gradient(
                example[0], example[0].total_rewards() / _lengths(example[0])[None, :]
            ),
        ),
    ),
)


# ============================================================================ 4. combined loss
k_idx = sp.Idx("k")
n_tokens = sp.Symbol("n", integer=True, positive=True)  # B * T entries, flattened
weight = sp.IndexedBase("w", nonnegative=True)  # the aggregation weights of the mode
policy_term = sp.IndexedBase("ell", real=True)
kl_term = sp.IndexedBase("kl", real=True)
entropy_term = sp.IndexedBase("H", real=True)
beta = sp.Symbol("beta", nonnegative=True)
c_entropy = sp.Symbol("c_H", nonnegative=True)


def over_batch(term: sp.Expr) -> sp.Expr:
    r"""$\sum_{k=0}^{n-1}$ term over the flattened $[B, T]$ entries (unevaluated)."""
    return IndexSum(term, (k_idx, 0, n_tokens - 1))


combined_steps = Derivation(
    "combined-loss",
    (
        Step(
            over_batch(weight[k_idx] * policy_term[k_idx])
            + beta * over_batch(weight[k_idx] * kl_term[k_idx])
            - c_entropy * over_batch(weight[k_idx] * entropy_term[k_idx]),
            "agg(l) + beta agg(k) - c_H agg(H), each agg(x) = sum_k w_k x_k with the same "
            "mode's weights (token-mean m/N, seq-mean-token-mean m/(|B| n_b), "
            "seq-mean-token-sum m/|B|, seq-mean-token-sum-norm m/(B L))",
        ),
        Step(
            over_batch(
                weight[k_idx]
                * (policy_term[k_idx] + beta * kl_term[k_idx] - c_entropy * entropy_term[k_idx])
            ),
            "linearity of the sum: the KL term added, the entropy subtracted, token by token",
        ),
    ),
)


#: The four modes of aggregate_loss, each with its weights written in aggregation_weights.
MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


@dataclass(frozen=True)
class CombinedExample:
    """Per-token softmax logits [B, T, K] (policy and reference), sampled tokens [B, T],
    advantages and mask [B, T], a direction v [B, T, K], the coefficients and the mode."""

    logits: np.ndarray
    reference_logits: np.ndarray
    tokens: np.ndarray
    advantages: np.ndarray
    mask: np.ndarray
    direction: np.ndarray
    kl_coefficient: float
    entropy_coefficient: float
    mode: str
    normaliser: float | None


@st.composite
def combined_examples(draw: st.DrawFn) -> CombinedExample:
    """1..3 rows of 1..3 tokens over a vocabulary of 2..3 (from a drawn NumPy seed), logits in
    [-1.5, 1.5] (so |log pi_ref - log pi| <= 4.2), every mode, coefficients 0 now and then."""
    rows, columns = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    vocabulary = draw(st.integers(2, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (rows, columns, vocabulary)
    mask = rng.random((rows, columns)) < 0.75
    mask.ravel()[0] = True
    mode = draw(st.sampled_from(MODES))
    normaliser = (
        draw(st.none() | st.floats(1.0, 5.0)) if mode == "seq-mean-token-sum-norm" else None
    )
    return CombinedExample(
        rng.uniform(-1.5, 1.5, shape),
        rng.uniform(-1.5, 1.5, shape),
        rng.integers(0, vocabulary, (rows, columns)),
        rng.uniform(-3.0, 3.0, (rows, columns)),
        mask,
        rng.uniform(-1.0, 1.0, shape),
        float(draw(st.just(0.0) | st.floats(0.05, 1.0))),
        float(draw(st.just(0.0) | st.floats(0.01, 0.5))),
        mode,
        normaliser,
    )


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def per_token_terms(example: CombinedExample, logits: np.ndarray) -> tuple[np.ndarray, ...]:
    r"""$\ell = -A z$, $k_3 = e^{z_\mathrm{ref} - z} - (z_\mathrm{ref} - z) - 1$ and
    $H = -\sum_v \pi_v \log\pi_v$ per token, $z = \log\pi(y_t)$."""
    log_pi = _log_softmax(logits)
    chosen = np.take_along_axis(log_pi, example.tokens[..., None], axis=-1)[..., 0]
    reference = np.take_along_axis(
        _log_softmax(example.reference_logits), example.tokens[..., None], axis=-1
    )[..., 0]
    gap = reference - chosen
    entropy = -(np.exp(log_pi) * log_pi).sum(axis=-1)
    return -example.advantages * chosen, np.exp(gap) - gap - 1.0, np.maximum(entropy, 0.0)


def per_token_directional_derivatives(example: CombinedExample) -> tuple[np.ndarray, ...]:
    r"""$d/d\varepsilon$ of the three per-token terms at $\theta + \varepsilon v$, by hand:
    $z' = v_y - \pi \cdot v$, $\ell' = -A z'$, $k_3' = (1 - e^{z_\mathrm{ref} - z}) z'$,
    $H' = -\sum_j \pi_j (\log\pi_j + H) v_j$."""
    log_pi = _log_softmax(example.logits)
    pi = np.exp(log_pi)
    v = example.direction
    chosen = np.take_along_axis(log_pi, example.tokens[..., None], axis=-1)[..., 0]
    reference = np.take_along_axis(
        _log_softmax(example.reference_logits), example.tokens[..., None], axis=-1
    )[..., 0]
    slope = np.take_along_axis(v, example.tokens[..., None], axis=-1)[..., 0] - (pi * v).sum(-1)
    entropy = -(pi * log_pi).sum(axis=-1)
    d_entropy = -(pi * (log_pi + entropy[..., None]) * v).sum(axis=-1)
    return -example.advantages * slope, (1.0 - np.exp(reference - chosen)) * slope, d_entropy


def aggregation_weights(example: CombinedExample) -> np.ndarray:
    """The mode's weight of each token, written from the definitions (not aggregate_loss)."""
    mask = example.mask.astype(np.float64)
    lengths = mask.sum(axis=1)
    rows = float((lengths > 0).sum())
    if example.mode == "token-mean":
        return mask / mask.sum()
    if example.mode == "seq-mean-token-mean":
        return mask / np.where(lengths > 0, lengths, 1.0)[:, None] / rows
    if example.mode == "seq-mean-token-sum":
        return mask / rows
    constant = float(mask.shape[1]) if example.normaliser is None else example.normaliser
    return mask / (mask.shape[0] * constant)


#: Central difference along v: the third derivative of the combined loss along |v| <= 1 is
#: below 1e5 for these examples (k_3 contributes e^{4.2} times a polynomial of the derivatives of
#: log-softmax, times beta <= 1 and sum_k w_k <= T = 3), one evaluation is off by < 1e3 ulps.
COMBINED_STEP, COMBINED_ERROR = central_difference_step(1e5, 1e3 * EPS)


def shipped_combined(example: CombinedExample) -> np.ndarray:
    """[combined_policy_loss at theta, its central difference along v]."""

    def loss(logits: np.ndarray) -> float:
        policy, kl, entropy = per_token_terms(example, logits)
        return combined_policy_loss(
            policy,
            kl,
            entropy,
            example.mask,
            kl_coefficient=example.kl_coefficient,
            entropy_coefficient=example.entropy_coefficient,
            mode=example.mode,
            normaliser=example.normaliser,
        )

    up = example.logits + COMBINED_STEP * example.direction
    down = example.logits - COMBINED_STEP * example.direction
    return np.array([loss(example.logits), (loss(up) - loss(down)) / (2.0 * COMBINED_STEP)])


def _combined_arguments(example: CombinedExample) -> tuple[Any, ...]:
    """(w, l, k, H, beta, c_H, n), index first and two columns: the values and their
    derivatives along v (w is constant), so the lambdified sum gives [value, derivative]."""
    w = aggregation_weights(example).ravel()
    values = per_token_terms(example, example.logits)
    slopes = per_token_directional_derivatives(example)
    columns = [
        np.stack([a.ravel(), b.ravel()], axis=1) for a, b in zip(values, slopes, strict=True)
    ]
    return (
        np.stack([w, w], axis=1),
        *columns,
        example.kl_coefficient,
        example.entropy_coefficient,
        w.size,
    )


def _combined_mutant(id_: str, description: str, wrong: sp.Expr) -> Mutant:
    return Mutant(id_, description, symbolic=SymbolicMutation("combined-loss", wrong))


COMBINED_CLAIM = Claim(
    id="combined-policy-loss-reference",
    title="The combined actor loss adds the KL term and subtracts the entropy bonus",
    summary=(
        "rlmath.llm_reference.combined_policy_loss is sum_k w_k (l_k + beta k_k - c_H H_k) "
        "with the mode's weights: minimising it pulls towards the reference and raises the "
        "entropy, in value and in gradient."
    ),
    statement=Statement(combined_steps.start, combined_steps.conclusion),
    assumptions=(
        "The three per-token terms share the mask and the aggregation mode (as verl does).",
        "The exact leg uses a per-token softmax policy, l = -A log pi, the k3 estimator and the "
        "token entropy; the gradient is checked along a random direction of the logits.",
    ),
    references=(
        "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, "
        "2017, eq. (9); Shao, Z. et al., *DeepSeekMath*, arXiv:2402.03300, 2024, eq. (3); "
        "verl, ``verl/workers/actor/dp_actor.py``.",
    ),
    symbolic=SymbolicLeg((combined_steps,)),
    exact=ExactLeg(
        combined_examples(),
        lhs=shipped_combined,
        symbols=(weight, policy_term, kl_term, entropy_term, beta, c_entropy, n_tokens),
        arguments=_combined_arguments,
        rtol=max(COMBINED_ERROR, exact_rtol(n_terms=16)),
        # absolute error against the size of the terms (the value and slope may cancel to ~0)
        error_scale=lambda example: 1.0 + float(
            np.abs(aggregation_weights(example)).sum()
            * (3.0 + example.kl_coefficient * 70.0 + example.entropy_coefficient * 2.0)
        ),
        max_examples=30,
        description=(
            "the shipped combined_policy_loss and its central difference along v vs the "
            "lambdified sum of w (l + beta k - c_H H) at the terms and at their hand-derived "
            "directional derivatives"
        ),
    ),
    mutants=(
        _combined_mutant(
            "kl-sign-flipped",
            "the KL penalty subtracted (a reward-side sign in the loss)",
            over_batch(
                weight[k_idx]
                * (policy_term[k_idx] - beta * kl_term[k_idx] - c_entropy * entropy_term[k_idx])
            ),
        ),
        _combined_mutant(
            "entropy-sign-flipped",
            "the entropy added to the loss (minimising lowers the entropy)",
            over_batch(
                weight[k_idx]
                * (policy_term[k_idx] + beta * kl_term[k_idx] + c_entropy * entropy_term[k_idx])
            ),
        ),
        _combined_mutant(
            "coefficients-swapped",
            "beta on the entropy and c_H on the KL",
            over_batch(
                weight[k_idx]
                * (policy_term[k_idx] + c_entropy * kl_term[k_idx] - beta * entropy_term[k_idx])
            ),
        ),
    ),
)


CLAIMS = (
    GSPO_CLAIM,
    MASKED_WHITEN_CLAIM,
    BATCH_WHITEN_CLAIM,
    COMBINED_CLAIM,
    CISPO_CLAIM,
    CISPO_OLD_CLAIM,
)
