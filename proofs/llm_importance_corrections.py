r"""Train/inference mismatch: the ratio factorisation, TIS, MIS, and token- vs sequence-level correction.

Setting. The responses are sampled by an *inference engine* $\mu$ (vLLM, SGLang: other
kernels, other precision), a slightly perturbed copy of the trainer's $\pi_{\theta_\mathrm{old}}$;
the trainer recomputes $\pi_{\theta_\mathrm{old}}$ and optimises $\pi_\theta$. All three are
tabular autoregressive policies over the same prefix tree (:mod:`rlmath.sequence_model`),
$\pi(y \mid x) = \prod_t \pi(y_t \mid x, y_{<t})$, with token ratios
$\rho_t = \pi_{\theta_\mathrm{old}}(y_t \mid x, y_{<t}) / \mu(y_t \mid x, y_{<t})$ and the
sequence ratio $\rho(y) = \prod_t \rho_t$.

Main statements (each for a distribution over outcomes: the responses of one prompt
(sequence level) or the next tokens at one prefix (token level)).

1. **Ratio factorisation.** $\pi_\theta / \mu = (\pi_{\theta_\mathrm{old}} / \mu)
   (\pi_\theta / \pi_{\theta_\mathrm{old}})$ per token and, as a product over tokens, per
   sequence, so that
   $\mathbb E_{\mu}[(\pi_{\theta_\mathrm{old}}/\mu)(\pi_\theta/\pi_{\theta_\mathrm{old}})\,f]
   = \mathbb E_{\pi_\theta}[f]$.
2. **Truncated IS (TIS) bias.** For a cap $C > 0$,
   $\mathbb E_\mu[\min(\rho, C) f] - \mathbb E_{\pi_{\theta_\mathrm{old}}}[f]
   = -\mathbb E_\mu[(\rho - C)_+ f]$ (Ionides 2008).
3. **Masked IS (MIS).** $\mathbb E_\mu[\rho\, \mathbb 1[\rho \le C] f]
   = \mathbb E_{\pi_{\theta_\mathrm{old}}}[f\, \mathbb 1[\rho \le C]]$: the expectation of
   $f$ restricted to the unmasked outcomes, not normalised (not the conditional mean).
4. **Token- vs sequence-level correction** of the policy gradient at $\theta =
   \theta_\mathrm{old}$ (the first step on a batch), with $y \sim \mu$, total reward $R(x, y)$
   and scores $s_t = \nabla_\theta\log\pi_\theta(y_t \mid x, y_{<t})$:

   $$ \mathbb E_\mu\Big[\rho(y)\, R\, \sum_t s_t\Big] = \nabla_\theta J(\theta), \qquad
      \mathbb E_\mu\Big[R \sum_t \rho_t\, s_t\Big]
      = \nabla_{\theta'} \sum_x \rho(x) \sum_{n} d_\mu(x, n) \sum_v \pi_{\theta'}(v \mid x, n)\,
        Q_\mu(x, n, v)\Big|_{\theta' = \theta}, $$

   where $d_\mu(x, n)$ is the probability under $\mu$ of reaching the prefix $n$ and
   $Q_\mu(x, n, v)$ the expected reward from emitting $v$ at $n$ on (token reward of $v$,
   later token rewards and the sequence reward), the continuation sampled from $\mu$: both
   held fixed. The token-level correction fixes only the *current* token's law; the prefix
   stays distributed as under $\mu$ and the continuation is scored under $\mu$, so it is the
   gradient of a different (frozen) surrogate, not of $J$, whenever $\mu \ne \pi_\theta$.

Conventions. $\mu$ is the sampler; every ratio is trainer over sampler, formed as
$\exp(\log\pi - \log\mu)$; the TIS/MIS weights (:func:`rlmath.llm_reference.
truncated_importance_weights`, :func:`~rlmath.llm_reference.masked_importance_weights`) are
detached constants, a ratio equal to $C$ is kept by MIS; $(z)_+ = \max(z, 0)$. Objectives are
maximised (the PPO loss gradient of :func:`~rlmath.llm_reference.ppo_token_loss_gradient` is
negated where used). EOS is a response token; responses are truncated at $L$ without EOS.

Proof sketch. 1-3: write the expectation under $\mu$ as a finite sum; $\mu\cdot(\pi/\mu) =
\pi$ on the support, and $\min(\rho, C) = \rho - (\rho - C)_+$ (cases $\rho \le C$, $\rho >
C$). 4: the sequence ratio turns $\mathbb E_\mu$ into $\mathbb E_{\pi_\theta}$ and the
log-derivative trick gives $\nabla J$; for the token ratio, condition on the prefix $y_{<t}$
(law $d_\mu$) and on $y_t$: the ratio turns only $\mu(y_t \mid \cdot)$ into
$\pi_\theta(y_t \mid \cdot)$, the rest of the response keeps its $\mu$ law (giving $Q_\mu$),
and rewards before $t$ drop out since $\mathbb E_{\pi_\theta}[s_t \mid y_{<t}] = 0$.

References. Ionides, E. L., "Truncated importance sampling", J. Comput. Graph. Stat. 17(2),
2008 (the truncated weight and its bias); Yao, F., Liu, L., Zhang, D., Shen, Y., Gao, J. et
al., "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training", blog post
(fengyao.notion.site/off-policy-rl), 2025 (the vLLM/FSDP mismatch, per-token TIS with $C = 2$
in verl); Liu, J., Li, Y. et al., "When Speed Kills Stability: Demystifying RL Collapse from
the Training-Inference Mismatch", 2025 (masked IS, token- vs sequence-level correction);
Owen, A. B., *Monte Carlo theory, methods and examples*, 2013, ch. 9, eq. (9.3) (importance
sampling); Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd
ed., 2018, Sec. 13.2 (policy gradient theorem: on-policy state distribution and $Q^\pi$).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

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
    exact_moments,
    lazy_lambdify,
    monte_carlo_leg,
    one_slot_cache,
)
from rlmath.llm_reference import (
    masked_importance_weights,
    ppo_token_loss_gradient,
    truncated_importance_weights,
)
from rlmath.sequence_model import SequenceModel
from rlmath.symbolic import IndexSum
from rlmath.testing import sequence_models
from rlmath.tolerances import exact_rtol


# ============================================================================ symbols
class U(sp.Function):  # noqa: N801 (sympy style)
    r"""An expression kept whole (as in ``proofs/importance_sampling.py``): ``m U(o/m)`` is not
    merged into ``o`` when built, so cancelling $\mu/\mu$ is a step sympy proves; ``doit``
    unwraps it, it prints as its argument and lambdifies to it."""

    nargs = 1

    def doit(self, deep: bool = True, **hints: object) -> sp.Expr:
        (argument,) = self.args
        return argument.doit(deep=deep, **hints) if deep else argument

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_extended_real  # type: ignore[no-any-return]

    def _eval_is_extended_positive(self) -> bool | None:
        return self.args[0].is_extended_positive  # type: ignore[no-any-return]

    def _latex(self, printer, exp=None) -> str:  # type: ignore[no-untyped-def]
        inner = printer._print(self.args[0])
        return inner if exp is None else rf"\left({inner}\right)^{{{exp}}}"

    def _numpycode(self, printer) -> str:  # type: ignore[no-untyped-def]
        return f"({printer._print(self.args[0])})"

    _pythoncode = _lambdacode = _numpycode


class _Defined(sp.Function):  # noqa: N801 (sympy style)
    """A function kept whole when built (so sympy's constructors, e.g. ``Sum``'s
    ``piecewise_fold``, do not rewrite it) whose ``doit`` is its ``definition``: the prover and
    the random-point refutation see the definition, the docs its own ``_latex``, and
    ``lambdify`` prints the definition."""

    def doit(self, deep: bool = True, **hints: object) -> sp.Expr:
        args = [a.doit(deep=deep, **hints) if deep else a for a in self.args]
        return self.definition(*args)

    @staticmethod
    def definition(*args: sp.Expr) -> sp.Expr:
        raise NotImplementedError

    def _eval_is_extended_real(self) -> bool | None:
        return True if all(a.is_extended_real for a in self.args) else None

    def _numpycode(self, printer) -> str:  # type: ignore[no-untyped-def]
        return f"({printer._print(self.definition(*self.args))})"

    _pythoncode = _lambdacode = _numpycode


class Minimum(_Defined):  # noqa: N801
    r"""$\min(a, b) = \tfrac12 (a + b - |a - b|)$ (lemma ``min-and-excess-by-cases``)."""

    nargs = 2

    @staticmethod
    def definition(a: sp.Expr, b: sp.Expr) -> sp.Expr:  # type: ignore[override]
        return (a + b - sp.Abs(a - b)) / 2

    def _latex(self, printer, exp=None) -> str:  # type: ignore[no-untyped-def]
        a, b = (printer._print(x) for x in self.args)
        return rf"\min\left({a}, {b}\right)" + ("" if exp is None else f"^{{{exp}}}")


class PositivePart(_Defined):  # noqa: N801
    r"""$(z)_+ = \max(z, 0) = \tfrac12 (z + |z|)$ (lemma ``min-and-excess-by-cases``)."""

    nargs = 1

    @staticmethod
    def definition(z: sp.Expr) -> sp.Expr:  # type: ignore[override]
        return (z + sp.Abs(z)) / 2

    def _latex(self, printer, exp=None) -> str:  # type: ignore[no-untyped-def]
        inner = printer._print(self.args[0])
        return rf"\left({inner}\right)_+" + ("" if exp is None else f"^{{{exp}}}")


class AtMost(_Defined):  # noqa: N801
    r"""The indicator $\mathbb 1[a \le b]$ (1 on the boundary, as MIS keeps a ratio equal to C)."""

    nargs = 2

    @staticmethod
    def definition(a: sp.Expr, b: sp.Expr) -> sp.Expr:  # type: ignore[override]
        return sp.Piecewise((1, a <= b), (0, True))

    def _eval_is_extended_real(self) -> bool | None:
        return True

    def _eval_is_extended_nonnegative(self) -> bool | None:
        return True

    def _latex(self, printer, exp=None) -> str:  # type: ignore[no-untyped-def]
        a, b = (printer._print(x) for x in self.args)
        return rf"\mathbb{{1}}\left[{a} \le {b}\right]" + ("" if exp is None else f"^{{{exp}}}")


n = sp.Symbol("n", integer=True, positive=True)  # outcomes of one distribution
i = sp.Symbol("i", integer=True)
T = sp.Symbol("T", integer=True, positive=True)  # tokens of one response
t = sp.Symbol("t", integer=True)
m = sp.IndexedBase("mu", positive=True)  # sampler mu (inference engine)
o = sp.IndexedBase("pi_old", positive=True)  # trainer's pi_theta_old
p = sp.IndexedBase("pi", positive=True)  # pi_theta
f = sp.IndexedBase("f", real=True)
C = sp.Symbol("C", positive=True)  # the cap
SYMBOL_NAMES = {
    m: r"\mu",
    o: r"\pi_{\mathrm{old}}",
    p: r"\pi_\theta",
    f: "f",
    n: "n",
    C: "C",
    T: "T",
}


def E(term: sp.Expr) -> sp.Expr:
    r"""$\sum_{i=0}^{n-1}$ term (unevaluated; one distribution's outcomes)."""
    return IndexSum(term, (i, 0, n - 1))


def under(distribution: sp.IndexedBase, term: sp.Expr) -> sp.Expr:
    r"""$\mathbb E_{i \sim \text{distribution}}[\text{term}]$ as a sum over the outcomes."""
    return E(distribution[i] * term)


rho = U(o[i] / m[i])  # pi_old / mu, the TIS/MIS ratio


# ============================================================================ shared examples
@dataclass(frozen=True, eq=False)
class MismatchExample:
    r"""The trainer's $\pi_{\theta_\mathrm{old}}$ (``model``, with rewards), the sampler's logits
    $\mu$ (``rollout_theta``), the trained policy's logits $\pi_\theta$ (``new_theta``) and a
    cap $C > 1$ (all logits ``[X, N, K + 1]``)."""

    model: SequenceModel
    rollout_theta: np.ndarray
    new_theta: np.ndarray
    cap: float

    def __repr__(self) -> str:
        return (
            f"MismatchExample({self.model!r}, cap={self.cap:.6g}, "
            f"max|mu - old| = {np.abs(self.rollout_theta - self.model.theta).max():.3g})"
        )


def _pattern(shape: tuple[int, ...], phase: float) -> np.ndarray:
    """A fixed non-constant pattern, so that a shrunk example (zero draws) still has mu != pi_old."""
    return np.cos(phase + 1.7 * np.arange(math.prod(shape))).reshape(shape)


def _log_ratios(model: SequenceModel, rollout_theta: np.ndarray) -> np.ndarray:
    """Every token and sequence log-ratio log pi_old - log mu of the example (for choosing C)."""
    mu = model.with_theta(rollout_theta)
    token = model.next_token_log_probabilities() - mu.next_token_log_probabilities()
    sequence = model.log_probabilities() - mu.log_probabilities()
    return np.concatenate([token.ravel(), sequence.ravel()])


def _cap_between_ratios(values: np.ndarray, choice: int) -> float | None:
    """A cap C > 1 at the log-midpoint of a gap between consecutive distinct ratios >= 1.

    C is then at least a quarter of that gap (in log) away from every ratio, so rounding in
    the two sides' ratios never puts one outcome on different sides of C; at least one ratio
    lies above C (the truncation is active).
    """
    above = np.unique(np.concatenate([[0.0], values[values > 0]]))
    gaps = [(a, b) for a, b in zip(above, above[1:], strict=False) if b - a > 1e-3]
    if not gaps:
        return None
    a, b = gaps[choice % len(gaps)]
    return float(np.exp(0.5 * (a + b)))


@st.composite
def mismatch_examples(
    draw: st.DrawFn,
    *,
    max_prompts: int = 2,
    max_tokens: int = 2,
    min_length: int = 1,
    max_length: int = 3,
    rollout_scale: float = 1.0,
    new_scale: float = 1.0,
    ties: bool = False,
) -> MismatchExample:
    """pi_old from rlmath.testing.sequence_models; mu = pi_old + pattern + seeded noise; pi_theta too.

    ``rollout_scale`` scales mu's perturbation (at 1: a fixed pattern of amplitude 0.4 plus
    uniform noise in [-0.5, 0.5] per logit), ``new_scale`` pi_theta's (amplitude 0.3). With
    ``ties``, about half the examples are *boundary* examples: mu's logits at prompt 0's root
    are pi_old's and C = 1, so every ratio there (the root's tokens, and the response that is
    EOS alone) is exactly 1 = C in float64, both as exp(log pi_old - log mu) and as a quotient
    of probabilities (identical floats): the case a ratio equal to the cap.
    """
    model = draw(
        sequence_models(
            min_prompts=1,
            max_prompts=max_prompts,
            max_tokens=max_tokens,
            min_length=min_length,
            max_length=max_length,
            max_abs_logit=2.0,
            token_rewards=True,
        )
    )
    shape = model.theta.shape
    # the perturbations come from a drawn seed (drawing them entry by entry through Hypothesis
    # costs most of the leg's time); uniform in [-0.5, 0.5] times the scale
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(-0.5, 0.5, (2, *shape))
    rollout = model.theta + rollout_scale * (0.4 * _pattern(shape, 0.3) + noise[0])
    new = model.theta + new_scale * (0.3 * _pattern(shape, 1.1) + noise[1])
    if ties and draw(st.booleans()):
        rollout[0, 0, :] = model.theta[0, 0, :]
        return MismatchExample(model, rollout, new, 1.0)
    cap = _cap_between_ratios(_log_ratios(model, rollout), draw(st.integers(0, 64)))
    if cap is None:  # every ratio <= 1 would mean mu = pi_old; the pattern prevents it
        cap = 2.0
    return MismatchExample(model, rollout, new, cap)


@one_slot_cache
def _policies(example: MismatchExample) -> tuple[SequenceModel, SequenceModel, SequenceModel]:
    """(mu, pi_old, pi_theta) as SequenceModels sharing pi_old's prompts and rewards."""
    model = example.model
    return model.with_theta(example.rollout_theta), model, model.with_theta(example.new_theta)


def sequence_values(example: MismatchExample) -> np.ndarray:
    """f at sequence level, ``[X, R]``: the total reward plus a fixed pattern (never all zero)."""
    model = example.model
    return model.total_rewards() + 0.5 * _pattern(model.rewards.shape, 0.7)  # type: ignore[no-any-return]


def token_values(example: MismatchExample) -> np.ndarray:
    """f at token level, ``[X, N, K + 1]``: the token reward of (prefix, token) plus a pattern."""
    model = example.model
    return model.token_rewards + 0.5 * _pattern(model.theta.shape, 2.3)  # type: ignore[no-any-return]


def outcome_table(sequence: np.ndarray, token: np.ndarray, pad: float) -> np.ndarray:
    """``[R, X + X N]``: column x is prompt x's responses, column X + x N + n node n's tokens.

    The token columns have K + 1 <= R outcomes; the rest of the column is ``pad``.
    """
    X, R = sequence.shape
    _, N, V = token.shape
    out = np.full((R, X + X * N), float(pad))
    out[:, :X] = sequence.T
    out[:V, X:] = token.reshape(X * N, V).T
    return out


def _error_scale(example: MismatchExample) -> float:
    """max over distributions of E_pi_old |f| and E_pi_theta |f|: the size of the summed terms."""
    _, old, new = _policies(example)
    scales = []
    for policy in (old, new):
        seq = (policy.probabilities() * np.abs(sequence_values(example))).sum(axis=1)
        tok = (np.exp(policy.next_token_log_probabilities()) * np.abs(token_values(example))).sum(
            axis=2
        )
        scales += [float(seq.max()), float(tok.max())]
    return max(max(scales), 1e-300)


def _rtol(example: MismatchExample) -> float:
    """Sums of R terms of L-fold products of ratios exp(log a - log b).

    The ratio of two log-probabilities of size up to ``lam`` carries a relative error of
    about ``lam`` ulps (the exponential amplifies the absolute error of its argument), so the
    condition number is ``1 + max |log prob|``.
    """
    mu, old, new = _policies(example)
    lam = max(float(np.abs(q.log_probabilities()).max()) for q in (mu, old, new))
    model = example.model
    return exact_rtol(1.0 + lam, model.n_responses * (model.max_length + 2))


def _token_arrays(policy: SequenceModel) -> np.ndarray:
    """Token log-probs of every response as ``[X R, L]`` rows (0 after the end)."""
    X, R, L = policy.n_prompts, policy.n_responses, policy.max_length
    return policy.token_log_probabilities().reshape(X * R, L)


def _response_mask(policy: SequenceModel) -> np.ndarray:
    return np.broadcast_to(
        policy.responses.mask[None], (policy.n_prompts,) + policy.responses.mask.shape
    ).reshape(policy.n_prompts * policy.n_responses, policy.max_length)


# ============================================================================ MC sampling from mu
class RolloutSample(NamedTuple):
    """Responses drawn from mu: prompts ``[n]``, response indices ``[n]``, and per position
    ``[n, L]``: whether it is a response token, log pi_old - log mu and log pi_theta - log
    pi_old of the sampled token (0 after the end)."""

    prompts: np.ndarray
    responses: np.ndarray
    mask: np.ndarray
    log_ratio_old_mu: np.ndarray
    log_ratio_new_old: np.ndarray


def sample_from_rollout(
    example: MismatchExample, rng: np.random.Generator, size: int
) -> RolloutSample:
    r"""Draw ``size`` prompts $x \sim \rho$ and responses $y \sim \mu(\cdot \mid x)$ token by token.

    Each token is drawn from $\mu(\cdot \mid x, y_{<t})$ by inverting its CDF at a uniform;
    the per-position log-ratios $\log\pi_{\theta_\mathrm{old}} - \log\mu$ and
    $\log\pi_\theta - \log\pi_{\theta_\mathrm{old}}$ of the sampled token are accumulated
    from the next-token tables while sampling (not read from the enumeration); the response
    index (enumeration order of :mod:`rlmath.sequence_model`) is where the walk ends.
    """
    mu, old, new = _policies(example)
    K, L, N = old.n_tokens, old.max_length, old.n_nodes
    log_mu = mu.next_token_log_probabilities()
    log_old = old.next_token_log_probabilities()
    log_new = new.next_token_log_probabilities()
    cdf = np.cumsum(np.exp(log_mu), axis=2)
    offsets = [sum(K**j for j in range(d)) for d in range(L + 1)]
    x = rng.choice(old.n_prompts, size=size, p=old.prompt_probabilities)
    code = np.zeros(size, dtype=np.intp)  # base-K code of the prefix at the current depth
    alive = np.ones(size, dtype=bool)
    response = np.full(size, -1, dtype=np.intp)
    mask = np.zeros((size, L), dtype=bool)
    ratio_old = np.zeros((size, L))
    ratio_new = np.zeros((size, L))
    for d in range(L):
        node = offsets[d] + code
        u = rng.random(size)
        v = np.minimum((u[:, None] > cdf[x, node]).sum(axis=1), K)
        mask[:, d] = alive
        ratio_old[alive, d] = (log_old[x, node, v] - log_mu[x, node, v])[alive]
        ratio_new[alive, d] = (log_new[x, node, v] - log_old[x, node, v])[alive]
        ended = alive & (v == K)
        response[ended] = node[ended]  # prefix n followed by EOS is response n
        alive = alive & (v != K)
        code = np.where(alive, code * K + v, code)
    response[alive] = N + code[alive]  # truncated: L ordinary tokens with base-K code
    return RolloutSample(x, response, mask, ratio_old, ratio_new)


def shifted_to(
    sample: Callable[[MismatchExample, np.random.Generator, int], np.ndarray],
    reference: Callable[[MismatchExample], np.ndarray],
    wrong: Callable[[MismatchExample], np.ndarray],
) -> Callable[[MismatchExample, np.random.Generator, int], np.ndarray]:
    r"""A mutant's Monte-Carlo variant: the same samples tested against the mutant's value.

    A test of $\bar t = w$ (the wrong value) is the test of $\bar t + (r - w) = r$ (the true
    reference $r$) on the same samples, so the variant returns the sampled terms plus
    $r - w$: it is rejected exactly when the sampled estimate refutes the wrong statement.
    """

    def variant(example: MismatchExample, rng: np.random.Generator, size: int) -> np.ndarray:
        terms = sample(example, rng, size)
        return terms + (np.asarray(reference(example)) - np.asarray(wrong(example)))

    return variant


#: Monte-Carlo sample size per example and false alarm of each Monte-Carlo leg.
N_SAMPLES = 100_000
FALSE_ALARM = 1e-6


# ============================================================================ 1. factorisation
# Per token: one token's three probabilities (positive symbols).
mu_t, old_t, new_t = sp.symbols("mu_t pi_old_t pi_t", positive=True)
token_factorisation = Derivation(
    "token-factorisation",
    (
        Step(U(new_t / mu_t), "the token ratio pi_theta / mu that corrects for the sampler"),
        Step(
            sp.Mul(U(old_t / mu_t), U(new_t / old_t), evaluate=False),
            "multiply and divide by pi_old > 0: (pi_old / mu)(pi_theta / pi_old)",
        ),
    ),
    statement=r"\frac{\pi_\theta}{\mu} = \frac{\pi_{\mathrm{old}}}{\mu}\frac{\pi_\theta}{\pi_{\mathrm{old}}}",
)

# Per sequence, any length T: the product over tokens, in log space.
lm = sp.IndexedBase("log_mu", real=True)
lo = sp.IndexedBase("log_pi_old", real=True)
lp = sp.IndexedBase("log_pi", real=True)


def over_tokens(term: sp.Expr) -> sp.Expr:
    return IndexSum(term, (t, 0, T - 1))


sequence_factorisation = Derivation(
    "sequence-factorisation",
    (
        Step(
            sp.exp(over_tokens(lp[t] - lm[t])),
            "the sequence ratio pi_theta(y)/mu(y) = prod_t pi_theta(y_t|.)/mu(y_t|.) "
            "= exp(sum_t (log pi_theta - log mu))",
        ),
        Step(
            sp.exp(over_tokens(sp.Add(lo[t] - lm[t], lp[t] - lo[t], evaluate=False))),
            "add and subtract log pi_old in every token",
        ),
        Step(
            sp.Mul(
                sp.exp(over_tokens(lo[t] - lm[t])),
                sp.exp(over_tokens(lp[t] - lo[t])),
                evaluate=False,
            ),
            "linearity of the sum over tokens; exp of a sum is the product of the exps: "
            "(pi_old(y)/mu(y)) (pi_theta(y)/pi_old(y))",
        ),
    ),
    statement=(
        r"\prod_t \frac{\pi_\theta}{\mu} = \prod_t\frac{\pi_{\mathrm{old}}}{\mu}"
        r"\prod_t\frac{\pi_\theta}{\pi_{\mathrm{old}}}"
    ),
)

factorised_weight = sp.Mul(U(o[i] / m[i]), U(p[i] / o[i]), evaluate=False)
factorised_mean = Derivation(
    "factorised-importance-weight",
    (
        Step(
            under(m, sp.Mul(factorised_weight, f[i], evaluate=False)),
            "E_mu[(pi_old/mu)(pi_theta/pi_old) f] over the outcomes (responses of a prompt, or "
            "tokens at a prefix)",
        ),
        Step(
            E(sp.Mul(U(m[i] / m[i]), U(o[i] / o[i]), p[i], f[i], evaluate=False)),
            "regroup the factors: mu (pi_old/mu)(pi_theta/pi_old) = (mu/mu)(pi_old/pi_old) pi_theta",
        ),
        Step(
            under(p, f[i]),
            "mu/mu = pi_old/pi_old = 1 (both positive on the support): E_pi_theta[f]",
        ),
    ),
    statement=r"\mathbb E_\mu[(\pi_{\mathrm{old}}/\mu)(\pi_\theta/\pi_{\mathrm{old}}) f] = \mathbb E_{\pi_\theta}[f]",
)

TRAINER_RATIO_ONLY = under(m, sp.Mul(U(p[i] / o[i]), f[i], evaluate=False))
INVERTED_MISMATCH = under(m, sp.Mul(U(m[i] / o[i]), U(p[i] / o[i]), f[i], evaluate=False))


def copies(table: np.ndarray, k: int = 2) -> np.ndarray:
    """``[R, k, items]``: ``k`` copies of an outcome table (one per form of the lhs)."""
    return np.broadcast_to(table[:, None, :], (table.shape[0], k, table.shape[1]))


def probability_table(policy: SequenceModel, pad: float) -> np.ndarray:
    """Sequence probabilities per prompt and next-token probabilities per prefix, ``[R, items]``."""
    return outcome_table(policy.probabilities(), np.exp(policy.next_token_log_probabilities()), pad)


def value_table(example: MismatchExample) -> np.ndarray:
    """f per prompt's responses and per prefix's tokens, ``[R, items]``, padded with 0."""
    return outcome_table(sequence_values(example), token_values(example), 0.0)


def factorisation_arguments(example: MismatchExample) -> tuple[Any, ...]:
    """(mu, pi_old, pi_theta, f, n) as ``[R, 2, X + X N]`` tables (two copies: two lhs forms).

    Padding outcomes have mu = pi_old = pi_theta = 1 and f = 0 (they add exactly 0).
    """
    mu, old, new = _policies(example)
    return (
        copies(probability_table(mu, 1.0)),
        copies(probability_table(old, 1.0)),
        copies(probability_table(new, 1.0)),
        copies(value_table(example)),
        old.n_responses,
    )


def factorised_expectations(example: MismatchExample) -> np.ndarray:
    r"""lhs, ``[2, X + X N]``: $\mathbb E_\mu[w f]$ per prompt and per prefix, by enumeration.

    Row 0: $w$ = the product over tokens of the shipped TIS weight with $C = \infty$
    ($\pi_{\theta_\mathrm{old}}/\mu$ per token) times $\exp(\log\pi_\theta - \log
    \pi_{\theta_\mathrm{old}})$ per token. Row 1: the direct ratio $\exp(\log\pi_\theta -
    \log\mu)$ of the sequence (of the token at a prefix).
    """
    mu, old, new = _policies(example)
    X, R = old.n_prompts, old.n_responses
    mask = _response_mask(old)
    mismatch = truncated_importance_weights(_token_arrays(old), _token_arrays(mu), mask, cap=np.inf)
    trainer = np.exp(_token_arrays(new) - _token_arrays(old))
    seq_factorised = np.where(mask, mismatch * trainer, 1.0).prod(axis=1).reshape(X, R)
    seq_direct = np.exp(new.log_probabilities() - mu.log_probabilities())
    lmu, lold, lnew = (q.next_token_log_probabilities() for q in (mu, old, new))
    N, V = old.n_nodes, old.n_tokens + 1
    tok_mismatch = truncated_importance_weights(
        lold.reshape(X * N, V), lmu.reshape(X * N, V), np.ones((X * N, V)), cap=np.inf
    ).reshape(X, N, V)
    tok_factorised = tok_mismatch * np.exp(lnew - lold)
    tok_direct = np.exp(lnew - lmu)
    seq_f, tok_f = sequence_values(example), token_values(example)
    p_mu, q_mu = mu.probabilities(), np.exp(lmu)
    rows = []
    for seq_w, tok_w in ((seq_factorised, tok_factorised), (seq_direct, tok_direct)):
        rows.append(
            np.concatenate(
                [(p_mu * seq_w * seq_f).sum(axis=1), (q_mu * tok_w * tok_f).sum(axis=2).ravel()]
            )
        )
    return np.stack(rows)


def _sequence_log_ratios(example: MismatchExample) -> tuple[np.ndarray, np.ndarray]:
    """(log pi_old - log mu, log pi_theta - log pi_old) of every response, ``[X, R]`` each."""
    mu, old, new = _policies(example)
    lo_, lm_, ln_ = old.log_probabilities(), mu.log_probabilities(), new.log_probabilities()
    return lo_ - lm_, ln_ - lo_


def enumerated_moments(example: MismatchExample, terms: np.ndarray) -> tuple[float, float]:
    """Mean and sd of a per-sample term ``[X, R]`` under x ~ rho, y ~ mu, by enumeration."""
    mu = _policies(example)[0]
    weights = (example.model.prompt_probabilities[:, None] * mu.probabilities()).ravel()
    mean, sd = exact_moments(weights, terms.ravel())
    return float(mean), float(sd)


def mc_detectable(
    example: MismatchExample,
    reference: float,
    mutants: tuple[np.ndarray, ...],
    *,
    max_weight: float,
    weights: np.ndarray,
) -> bool:
    """Keep examples with bounded weights (so the CLT holds at the 1e-6 tail, see
    rlmath.statistics) where every mutant's per-sample term ``[X, R]`` is detected with
    power 0.99 at N_SAMPLES (Bonferroni share of the false alarm over the two examples)."""
    if float(np.abs(weights).max()) > max_weight:
        return False
    for terms in mutants:
        mean, sd = enumerated_moments(example, terms)
        if not detectable(mean - reference, sd, N_SAMPLES, false_alarm=FALSE_ALARM / 2):
            return False
    return True


_factorised_rhs = lazy_lambdify((m, o, p, f, n), factorised_mean.conclusion)


def expected_under_new(example: MismatchExample) -> float:
    """E_x E_{pi_theta}[f]: the lambdified conclusion (responses enumerated under pi_theta)."""
    values = np.asarray(_factorised_rhs(*factorisation_arguments(example)))[0]
    return float(example.model.prompt_probabilities @ values[: example.model.n_prompts])


def _factorisation_mc_terms(example: MismatchExample) -> dict[str, np.ndarray]:
    mismatch, trainer = _sequence_log_ratios(example)
    values = sequence_values(example)
    return {
        "correct": np.exp(mismatch + trainer) * values,
        "trainer-ratio-only": np.exp(trainer) * values,
        "inverted-mismatch-ratio": np.exp(-mismatch + trainer) * values,
    }


def _factorisation_mc_ok(example: MismatchExample) -> bool:
    terms = _factorisation_mc_terms(example)
    mismatch, trainer = _sequence_log_ratios(example)
    return mc_detectable(
        example,
        expected_under_new(example),
        (terms["trainer-ratio-only"], terms["inverted-mismatch-ratio"]),
        max_weight=20.0,
        weights=np.exp(np.concatenate([mismatch + trainer, -mismatch + trainer]).ravel()),
    )


mc_examples = mismatch_examples(min_length=2, rollout_scale=0.6, new_scale=0.6).filter(
    _factorisation_mc_ok
)


def factorisation_samples(
    kind: str,
) -> Callable[[MismatchExample, np.random.Generator, int], np.ndarray]:
    """Per-sample terms w(y) f(y), y ~ mu token by token, with the weight of ``kind``."""

    def sample(example: MismatchExample, rng: np.random.Generator, size: int) -> np.ndarray:
        draw = sample_from_rollout(example, rng, size)
        values = sequence_values(example)[draw.prompts, draw.responses]
        mismatch, trainer = draw.log_ratio_old_mu, draw.log_ratio_new_old
        log_w = {
            "correct": mismatch.sum(axis=1) + trainer.sum(axis=1),
            "trainer-ratio-only": trainer.sum(axis=1),
            "inverted-mismatch-ratio": -mismatch.sum(axis=1) + trainer.sum(axis=1),
        }[kind]
        return np.exp(log_w) * values  # type: ignore[no-any-return]

    return sample


FACTORISATION_CLAIM = Claim(
    id="mismatch-ratio-factorisation",
    title="The sampler-to-trainer ratio factorises through pi_old and corrects mu-samples exactly",
    statement=Statement(
        factorised_mean.start,
        factorised_mean.conclusion,
        derivation="factorised-importance-weight",
        where=(
            r"\text{outcomes } i < n \text{ of one prompt's responses or one prefix's tokens};\ "
            r"\mu, \pi_{\mathrm{old}} > 0"
        ),
        symbol_names=SYMBOL_NAMES,
    ),
    assumptions=(
        "mu, pi_old and pi_theta are tabular autoregressive softmax policies over the same "
        "prefix tree (EOS a response token, truncation at L); mu and pi_old put positive "
        "probability on every token (softmax), so every ratio is defined.",
        "f is any function of the response (sequence level) or of the token at a prefix "
        "(token level); it does not depend on the policies.",
        "Symbolic leg: any number n of outcomes and any length T (IndexSum over symbolic "
        "sizes); the per-token factorisation on three positive symbols.",
        "Exact leg: 1-2 prompts, 1-2 ordinary tokens plus EOS, L = 1-3, logits of pi_old in "
        "[-2, 2], mu and pi_theta perturbed by a fixed pattern plus up to 0.5 per logit.",
    ),
    references=(
        "Yao, F. et al., *Your Efficient RL Framework Secretly Brings You Off-Policy RL "
        "Training*, blog post (fengyao.notion.site/off-policy-rl), 2025 (the mismatch ratio "
        "pi_old/mu next to PPO's pi_theta/pi_old).",
        "Owen, A. B., *Monte Carlo theory, methods and examples*, 2013, ch. 9, eq. (9.3).",
    ),
    summary=(
        "When vLLM samples and the trainer optimises, the correct importance weight is "
        "(pi_old/mu)(pi_theta/pi_old), per token and multiplied over the sequence; PPO's "
        "ratio pi_theta/pi_old alone estimates E_mu-reweighted quantities, not E_pi_theta."
    ),
    notes=(
        "The mutant trainer-ratio-only (PPO's ratio alone, the mismatch ignored) is biased by "
        "exactly E_mu[(pi_theta/pi_old) f] - E_pi_theta[f], which the exact leg sees whenever "
        "mu differs from pi_old; the inverted ratio mu/pi_old is the other plausible slip."
    ),
    symbolic=SymbolicLeg((factorised_mean, token_factorisation, sequence_factorisation)),
    exact=ExactLeg(
        mismatch_examples(),
        lhs=factorised_expectations,
        symbols=(m, o, p, f, n),
        arguments=factorisation_arguments,
        rtol=_rtol,
        error_scale=_error_scale,
        max_examples=25,
        description=(
            "E_mu[w f] per prompt (responses enumerated with their mu-probabilities) and per "
            "prefix (tokens with mu(.|prefix)), w the product over tokens of the shipped "
            "truncated_importance_weights at C = inf times exp(log pi_theta - log pi_old), and "
            "w = exp(log pi_theta - log mu) directly, vs the lambdified E_pi_theta[f] with "
            "pi_theta's own probabilities"
        ),
    ),
    monte_carlo=monte_carlo_leg(
        mc_examples,
        factorisation_samples("correct"),
        expected_under_new,
        n_samples=N_SAMPLES,
        false_alarm=FALSE_ALARM,
        description=(
            "x ~ rho, y ~ mu sampled token by token: mean of exp(sum_t log(pi_old/mu) + "
            "log(pi_theta/pi_old)) f(y) vs E_x E_pi_theta[f] by enumeration under pi_theta"
        ),
    ),
    mutants=(
        Mutant(
            "trainer-ratio-only",
            "E_mu[(pi_theta/pi_old) f] = E_pi_theta[f]: PPO's ratio alone, the mismatch "
            "pi_old/mu ignored",
            symbolic=SymbolicMutation("factorised-importance-weight", TRAINER_RATIO_ONLY),
            monte_carlo=factorisation_samples("trainer-ratio-only"),
        ),
        Mutant(
            "inverted-mismatch-ratio",
            "the mismatch factor inverted: (mu/pi_old)(pi_theta/pi_old)",
            symbolic=SymbolicMutation("factorised-importance-weight", INVERTED_MISMATCH),
            monte_carlo=factorisation_samples("inverted-mismatch-ratio"),
        ),
    ),
)


# ============================================================================ shared by TIS and MIS
def capped_arguments(pad_old: float) -> Callable[[MismatchExample], tuple[Any, ...]]:
    """example -> (mu, pi_old, f, C, n): ``[R, 2, X + X N]`` tables, the cap, R.

    Padding outcomes have mu = 1, pi_old = ``pad_old`` and f = 0 (they add exactly 0).
    """

    def arguments(example: MismatchExample) -> tuple[Any, ...]:
        mu, old, _ = _policies(example)
        return (
            copies(probability_table(mu, 1.0)),
            copies(probability_table(old, pad_old)),
            copies(value_table(example)),
            example.cap,
            old.n_responses,
        )

    return arguments


def capped_weights(
    example: MismatchExample, weights: Callable[..., np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The shipped TIS/MIS ``weights`` at sequence level ``[X, R]`` and token level ``[X, N, V]``.

    Sequence level: one entry per response with its sequence log-probabilities (the ratio
    of the whole response, ``[X R, 1]``); token level: one entry per (prefix, token) of the
    next-token tables (``[X N, V]``). The functions are elementwise, so this is their
    ``[B, T]`` contract with every entry a response token.
    """
    mu, old, _ = _policies(example)
    X, R, N, V = old.n_prompts, old.n_responses, old.n_nodes, old.n_tokens + 1
    seq = weights(
        old.log_probabilities().reshape(X * R, 1),
        mu.log_probabilities().reshape(X * R, 1),
        np.ones((X * R, 1)),
        cap=example.cap,
    ).reshape(X, R)
    tok = weights(
        old.next_token_log_probabilities().reshape(X * N, V),
        mu.next_token_log_probabilities().reshape(X * N, V),
        np.ones((X * N, V)),
        cap=example.cap,
    ).reshape(X, N, V)
    return seq, tok


def quotient_ratios(example: MismatchExample) -> tuple[np.ndarray, np.ndarray]:
    """pi_old / mu as a quotient of probabilities (not of log-probabilities), seq and token."""
    mu, old, _ = _policies(example)
    seq = old.probabilities() / mu.probabilities()
    tok = np.exp(old.next_token_log_probabilities()) / np.exp(mu.next_token_log_probabilities())
    return seq, tok


def expectations_under_rollout(
    example: MismatchExample, seq_weight: np.ndarray, tok_weight: np.ndarray
) -> np.ndarray:
    """``[X + X N]``: E_mu[w f] per prompt (responses) and per prefix (tokens), by enumeration."""
    mu, _, _ = _policies(example)
    seq = (mu.probabilities() * seq_weight * sequence_values(example)).sum(axis=1)
    tok = (np.exp(mu.next_token_log_probabilities()) * tok_weight * token_values(example)).sum(
        axis=2
    )
    return np.concatenate([seq, tok.ravel()])


def expectations_under_old(example: MismatchExample) -> np.ndarray:
    """``[X + X N]``: E_pi_old[f] per prompt and per prefix, by enumeration under pi_old."""
    _, old, _ = _policies(example)
    seq = (old.probabilities() * sequence_values(example)).sum(axis=1)
    tok = (np.exp(old.next_token_log_probabilities()) * token_values(example)).sum(axis=2)
    return np.concatenate([seq, tok.ravel()])


def prompt_average_of(
    expression: sp.Expr, arguments: Callable[[MismatchExample], tuple[Any, ...]]
) -> Callable[[MismatchExample], float]:
    """example -> sum_x rho(x) (the lambdified ``expression`` at prompt x's responses)."""
    function = lazy_lambdify((m, o, f, C, n), expression)

    def value(example: MismatchExample) -> float:
        values = np.asarray(function(*arguments(example)))[0]
        return float(example.model.prompt_probabilities @ values[: example.model.n_prompts])

    return value


def rollout_samples(
    weight: Callable[..., np.ndarray], *, centred: bool
) -> Callable[[MismatchExample, np.random.Generator, int], np.ndarray]:
    """x ~ rho, y ~ mu token by token; term w(y) f(y) (minus E_pi_old[f | x] if ``centred``).

    ``w`` is the shipped TIS/MIS function applied to the sampled response's summed token
    log-ratio (the sequence-level weight), one response per row.
    """

    def sample(example: MismatchExample, rng: np.random.Generator, size: int) -> np.ndarray:
        draw = sample_from_rollout(example, rng, size)
        x, y = draw.prompts, draw.responses
        w = weight(
            draw.log_ratio_old_mu.sum(axis=1)[:, None],
            np.zeros((size, 1)),
            np.ones((size, 1)),
            cap=example.cap,
        )[:, 0]
        terms = w * sequence_values(example)[x, y]
        if centred:
            _, old, _ = _policies(example)
            terms = terms - (old.probabilities() * sequence_values(example)).sum(axis=1)[x]
        return terms  # type: ignore[no-any-return]

    return sample


def enumerated_rollout_terms(
    example: MismatchExample, weight: Callable[..., np.ndarray], *, centred: bool
) -> np.ndarray:
    """The per-sample term of :func:`rollout_samples` at every (x, y), ``[X, R]``."""
    seq, _ = capped_weights(example, weight)
    terms = seq * sequence_values(example)
    if centred:
        _, old, _ = _policies(example)
        terms = terms - (old.probabilities() * sequence_values(example)).sum(axis=1)[:, None]
    return terms  # type: ignore[no-any-return]


def statement_mc_filter(
    weight: Callable[..., np.ndarray],
    *,
    centred: bool,
    reference: Callable[[MismatchExample], float],
    wrong: tuple[Callable[[MismatchExample], float], ...],
) -> Callable[[MismatchExample], bool]:
    """Bounded ratios (<= 20) and every wrong value detectable with power 0.99."""

    def keep(example: MismatchExample) -> bool:
        mismatch, _ = _sequence_log_ratios(example)
        if float(np.exp(mismatch).max()) > 20.0:
            return False
        _, sd = enumerated_moments(
            example, enumerated_rollout_terms(example, weight, centred=centred)
        )
        truth = reference(example)
        return all(
            detectable(truth - value(example), sd, N_SAMPLES, false_alarm=FALSE_ALARM / 2)
            for value in wrong
        )

    return keep


# ============================================================================ 2. TIS bias
truncated = Minimum(rho, C)


def excess_over(cap: sp.Expr) -> sp.Expr:
    """(rho - cap)_+."""
    return PositivePart(rho - cap)


excess = excess_over(C)
tis_bias = Derivation(
    "tis-bias",
    (
        Step(
            under(m, truncated * f[i]) - under(o, f[i]),
            "E_mu[min(rho, C) f] - E_pi_old[f], rho = pi_old/mu, over the outcomes",
        ),
        Step(
            under(m, sp.Add(rho, -excess, evaluate=False) * f[i]) - under(o, f[i]),
            "min(rho, C) = rho - (rho - C)_+ (lemma min-and-excess-by-cases: rho - 0 for "
            "rho <= C, rho - (rho - C) = C above)",
        ),
        Step(
            under(m, rho * f[i]) - under(m, excess * f[i]) - under(o, f[i]),
            "linearity of the expectation",
        ),
        Step(
            E(sp.Mul(U(m[i] / m[i]), o[i], f[i], evaluate=False))
            - under(m, excess * f[i])
            - under(o, f[i]),
            "regroup: mu (pi_old/mu) f = (mu/mu) pi_old f",
        ),
        Step(-under(m, excess * f[i]), "mu/mu = 1 (mu > 0): the E_pi_old[f] terms cancel"),
    ),
    statement=(
        r"\mathbb E_\mu[\min(\rho, C) f] - \mathbb E_{\pi_{\mathrm{old}}}[f] = "
        r"-\mathbb E_\mu[(\rho - C)_+ f]"
    ),
)

# Lemma: the definitions of min and (.)_+ used above are the case-wise ones.
r_ = sp.Symbol("r", real=True)
s_ = sp.Symbol("s", nonnegative=True)
min_and_excess = CaseAnalysis(
    "min-and-excess-by-cases",
    sp.true,
    (
        Case(
            r_ <= C,
            Derivation(
                "at-or-below-cap",
                (
                    Step(
                        sp.Matrix([Minimum(C - s_, C), PositivePart(C - s_ - C)]),
                        "min(r, C) and (r - C)_+ at r = C - s, s >= 0",
                    ),
                    Step(sp.Matrix([C - s_, 0]), "|-s| = s: min = r, (r - C)_+ = 0"),
                ),
            ),
            {r_: C - s_},
        ),
        Case(
            r_ >= C,
            Derivation(
                "above-cap",
                (
                    Step(
                        sp.Matrix([Minimum(C + s_, C), PositivePart(C + s_ - C)]),
                        "min(r, C) and (r - C)_+ at r = C + s, s >= 0",
                    ),
                    Step(sp.Matrix([C, s_]), "|s| = s: min = C, (r - C)_+ = r - C"),
                ),
            ),
            {r_: C + s_},
        ),
    ),
)

TIS_SIGN_FLIPPED = under(m, excess * f[i])
TIS_CAP_INVERTED = -under(m, excess_over(1 / C) * f[i])
TIS_LOWER_CLIP = -under(m, excess * f[i]) + under(m, PositivePart(1 / C - rho) * f[i])
tis_arguments = capped_arguments(1.0)


def tis_bias_sides(example: MismatchExample) -> np.ndarray:
    r"""lhs, ``[2, X + X N]``: $\mathbb E_\mu[w f] - \mathbb E_{\pi_{\mathrm{old}}}[f]$ by enumeration.

    Row 0: $w$ = the shipped :func:`truncated_importance_weights` with cap $C$ (sequence ratio
    per response, token ratio per (prefix, token)). Row 1: $w = \rho - \max(\rho - C, 0)$ with
    $\rho$ a quotient of probabilities (the truncation written differently).
    """
    shipped = capped_weights(example, truncated_importance_weights)
    written = tuple(r - np.maximum(r - example.cap, 0.0) for r in quotient_ratios(example))
    target = expectations_under_old(example)
    return np.stack([expectations_under_rollout(example, *w) - target for w in (shipped, written)])


tis_reference = prompt_average_of(tis_bias.conclusion, tis_arguments)
TIS_WRONG = {
    "bias-sign-flipped": prompt_average_of(TIS_SIGN_FLIPPED, tis_arguments),
    "cap-inverted": prompt_average_of(TIS_CAP_INVERTED, tis_arguments),
    "lower-clip-too": prompt_average_of(TIS_LOWER_CLIP, tis_arguments),
}
tis_samples = rollout_samples(truncated_importance_weights, centred=True)
tis_mc_examples = mismatch_examples(min_length=2, rollout_scale=1.0).filter(
    statement_mc_filter(
        truncated_importance_weights,
        centred=True,
        reference=tis_reference,
        wrong=tuple(TIS_WRONG.values()),
    )
)

TIS_CLAIM = Claim(
    id="truncated-is-bias",
    title="The exact bias of truncated importance sampling (TIS)",
    statement=Statement(
        tis_bias.start,
        tis_bias.conclusion,
        derivation="tis-bias",
        where=r"\rho = \pi_{\mathrm{old}}/\mu,\ C > 0,\ \text{outcomes } i < n",
        symbol_names=SYMBOL_NAMES,
    ),
    assumptions=(
        "mu and pi_old positive on every outcome (softmax policies); f any function of the "
        "outcome not depending on the policies; the weight min(rho, C) is detached.",
        "Symbolic leg: any number n of outcomes (IndexSum), any cap C > 0; min(a, b) is "
        "written (a + b - |a - b|)/2 and (z)_+ = (z + |z|)/2, and the case analysis "
        "min-and-excess-by-cases proves these equal min(r, C) and (r - C)_+ for r <= C and "
        "r >= C.",
        "Exact leg: sequence level (each prompt's responses, the sequence ratio) and token "
        "level (each prefix's next tokens, the token ratio); 1-2 prompts, 1-2 ordinary tokens "
        "plus EOS, L = 1-3; C > 1 between two ratios of the example, so the truncation bites.",
    ),
    references=(
        "Ionides, E. L., *Truncated importance sampling*, J. Comput. Graph. Stat. 17(2), 2008 "
        "(the truncated weight min(rho, C) and its bias).",
        "Yao, F. et al., *Your Efficient RL Framework Secretly Brings You Off-Policy RL "
        "Training*, blog post (fengyao.notion.site/off-policy-rl), 2025 (TIS with C = 2 in "
        "verl, tis_imp_ratio_cap).",
    ),
    summary=(
        "Capping the vLLM-to-trainer ratio at C (TIS) under-weights exactly the outcomes the "
        "trainer likes more than the sampler did: the estimate is off by -E_mu[(rho - C)_+ f], "
        "zero only if no ratio exceeds C."
    ),
    notes=(
        "The bias is the part of the importance weight cut off above C: for f >= 0 it is "
        "never positive. Truncating from below as well (clip(rho, 1/C, C)) would add "
        "+E_mu[(1/C - rho)_+ f]; the shipped function truncates only from above (mutant "
        "lower-clip-too). Per-token TIS (verl's default) satisfies the identity at every "
        "prefix; what it estimates for a whole response is claim token-vs-sequence-correction."
    ),
    symbolic=SymbolicLeg((tis_bias,), cases=(min_and_excess,)),
    exact=ExactLeg(
        mismatch_examples(),
        lhs=tis_bias_sides,
        symbols=(m, o, f, C, n),
        arguments=tis_arguments,
        rtol=_rtol,
        error_scale=_error_scale,
        max_examples=20,
        description=(
            "E_mu[w f] - E_pi_old[f] per prompt (responses with their mu- and "
            "pi_old-probabilities) and per prefix (tokens), w the shipped "
            "truncated_importance_weights (and rho - max(rho - C, 0) from probability "
            "quotients), vs the lambdified -E_mu[(rho - C)_+ f]"
        ),
    ),
    monte_carlo=monte_carlo_leg(
        tis_mc_examples,
        tis_samples,
        tis_reference,
        n_samples=N_SAMPLES,
        false_alarm=FALSE_ALARM,
        description=(
            "x ~ rho, y ~ mu token by token: mean of w(y) f(y) - E_pi_old[f | x] with w the "
            "shipped truncated_importance_weights of the sampled sequence log-ratio, vs the "
            "lambdified -E_x E_mu[(rho - C)_+ f]"
        ),
    ),
    mutants=(
        Mutant(
            "bias-sign-flipped",
            "E_mu[min(rho, C) f] - E_pi_old[f] = +E_mu[(rho - C)_+ f]",
            symbolic=SymbolicMutation("tis-bias", TIS_SIGN_FLIPPED),
            monte_carlo=shifted_to(tis_samples, tis_reference, TIS_WRONG["bias-sign-flipped"]),
        ),
        Mutant(
            "cap-inverted",
            "the bias of a cap at 1/C: -E_mu[(rho - 1/C)_+ f]",
            symbolic=SymbolicMutation("tis-bias", TIS_CAP_INVERTED),
            monte_carlo=shifted_to(tis_samples, tis_reference, TIS_WRONG["cap-inverted"]),
        ),
        Mutant(
            "lower-clip-too",
            "the bias of clip(rho, 1/C, C) (clipped from below as well): "
            "-E_mu[(rho - C)_+ f] + E_mu[(1/C - rho)_+ f]",
            symbolic=SymbolicMutation("tis-bias", TIS_LOWER_CLIP),
            monte_carlo=shifted_to(tis_samples, tis_reference, TIS_WRONG["lower-clip-too"]),
        ),
    ),
)


# ============================================================================ 3. MIS target
kept = AtMost(rho, C)  # 1[rho <= C]
mis_target = Derivation(
    "mis-target",
    (
        Step(
            under(m, sp.Mul(rho, kept, f[i], evaluate=False)),
            "E_mu[rho 1[rho <= C] f], rho = pi_old/mu: the MIS-weighted mean over the outcomes",
        ),
        Step(
            E(sp.Mul(U(m[i] / m[i]), o[i], kept, f[i], evaluate=False)),
            "regroup: mu (pi_old/mu) = (mu/mu) pi_old; the mask is a function of the outcome",
        ),
        Step(under(o, kept * f[i]), "mu/mu = 1 (mu > 0): E_pi_old[f 1[rho <= C]]"),
    ),
    statement=(
        r"\mathbb E_\mu[\rho\,\mathbb 1[\rho \le C] f] = "
        r"\mathbb E_{\pi_{\mathrm{old}}}[f\,\mathbb 1[\rho \le C]]"
    ),
)

MIS_UNBIASED = under(o, f[i])
MIS_CONDITIONAL = sp.Mul(under(o, kept * f[i]), 1 / under(o, kept), evaluate=False)
MIS_TIS_BIAS = under(o, f[i]) - under(m, excess * f[i])
# padding outcomes: mu = 1, pi_old = 0 (ratio 0, kept, but weight pi_old = 0), f = 0
mis_arguments = capped_arguments(0.0)


def mis_sides(example: MismatchExample) -> np.ndarray:
    r"""lhs, ``[2, X + X N]``: $\mathbb E_\mu[w f]$ per prompt and per prefix, by enumeration.

    Row 0: $w$ = the shipped :func:`masked_importance_weights` with cap $C$ (sequence ratio
    per response, token ratio per (prefix, token)). Row 1: $w = \rho$ where $\rho \le C$,
    else 0, with $\rho$ a quotient of probabilities.
    """
    shipped = capped_weights(example, masked_importance_weights)
    written = tuple(np.where(r <= example.cap, r, 0.0) for r in quotient_ratios(example))
    return np.stack([expectations_under_rollout(example, *w) for w in (shipped, written)])


mis_reference = prompt_average_of(mis_target.conclusion, mis_arguments)
MIS_WRONG = {
    "mis-unbiased": prompt_average_of(MIS_UNBIASED, mis_arguments),
    "mis-conditional-mean": prompt_average_of(MIS_CONDITIONAL, mis_arguments),
    "mis-has-tis-bias": prompt_average_of(MIS_TIS_BIAS, mis_arguments),
}
mis_samples = rollout_samples(masked_importance_weights, centred=False)
mis_mc_examples = mismatch_examples(min_length=2, rollout_scale=1.0).filter(
    statement_mc_filter(
        masked_importance_weights,
        centred=False,
        reference=mis_reference,
        wrong=tuple(MIS_WRONG.values()),
    )
)

MIS_CLAIM = Claim(
    id="masked-importance-sampling",
    title="Masked importance sampling (MIS) estimates the objective restricted to the kept outcomes",
    statement=Statement(
        mis_target.start,
        mis_target.conclusion,
        derivation="mis-target",
        where=r"\rho = \pi_{\mathrm{old}}/\mu,\ C > 0,\ \text{outcomes } i < n",
        symbol_names=SYMBOL_NAMES,
    ),
    assumptions=(
        "mu and pi_old positive on every outcome (softmax policies); f any function of the "
        "outcome not depending on the policies; the MIS weight rho 1[rho <= C] is detached, "
        "and a ratio equal to C is kept (as rlmath.llm_reference.masked_importance_weights).",
        "Symbolic leg: any number n of outcomes (IndexSum), any cap C > 0.",
        "Exact leg: sequence level (each prompt's responses, the sequence ratio) and token "
        "level (each prefix's next tokens, the token ratio); 1-2 prompts, 1-2 ordinary tokens "
        "plus EOS, L = 1-3; C > 1 at the log-midpoint of a gap between two ratios of the "
        "example (no ratio within a factor e^(5e-4) of C, so rounding cannot move an outcome "
        "across the mask), at least one ratio above C; or, in about half the examples, C = 1 "
        "with mu = pi_old at prompt 0's root, so that some ratios equal C exactly (in "
        "float64) and the boundary convention (kept) is checked.",
    ),
    references=(
        "Liu, J., Li, Y. et al., *When Speed Kills Stability: Demystifying RL Collapse from "
        "the Training-Inference Mismatch*, 2025 (masked importance sampling).",
        "Yao, F. et al., *Your Efficient RL Framework Secretly Brings You Off-Policy RL "
        "Training*, blog post (fengyao.notion.site/off-policy-rl), 2025.",
        "Owen, A. B., *Monte Carlo theory, methods and examples*, 2013, ch. 9, eq. (9.3).",
    ),
    summary=(
        "Zeroing the samples whose vLLM-to-trainer ratio exceeds C (MIS) gives an unbiased "
        "estimate of E_pi_old[f 1[rho <= C]]: the objective with the masked outcomes' mass "
        "removed, neither E_pi_old[f] nor the conditional mean over the kept outcomes."
    ),
    notes=(
        "Compared with TIS (claim truncated-is-bias), which keeps the masked outcomes at "
        "weight C, MIS drops their contribution entirely: its bias is -E_pi_old[f 1[rho > C]] "
        "= -E_mu[rho 1[rho > C] f], larger in size than TIS's -E_mu[(rho - C)_+ f] for f >= 0. "
        "Since E_mu[rho] = 1, with C >= 1 every distribution keeps some outcome, so the "
        "conditional mean of the mutant mis-conditional-mean is defined."
    ),
    symbolic=SymbolicLeg((mis_target,)),
    exact=ExactLeg(
        mismatch_examples(ties=True),
        lhs=mis_sides,
        symbols=(m, o, f, C, n),
        arguments=mis_arguments,
        rtol=_rtol,
        error_scale=_error_scale,
        max_examples=20,
        description=(
            "E_mu[w f] per prompt (responses with their mu-probabilities) and per prefix "
            "(tokens), w the shipped masked_importance_weights (and rho 1[rho <= C] from "
            "probability quotients), vs the lambdified E_pi_old[f 1[rho <= C]] with pi_old's "
            "probabilities"
        ),
    ),
    monte_carlo=monte_carlo_leg(
        mis_mc_examples,
        mis_samples,
        mis_reference,
        n_samples=N_SAMPLES,
        false_alarm=FALSE_ALARM,
        description=(
            "x ~ rho, y ~ mu token by token: mean of w(y) f(y) with w the shipped "
            "masked_importance_weights of the sampled sequence log-ratio, vs the lambdified "
            "E_x E_pi_old[f 1[rho <= C]]"
        ),
    ),
    mutants=(
        Mutant(
            "mis-unbiased",
            "E_mu[rho 1[rho <= C] f] = E_pi_old[f]: masking taken to be harmless",
            symbolic=SymbolicMutation("mis-target", MIS_UNBIASED),
            monte_carlo=shifted_to(mis_samples, mis_reference, MIS_WRONG["mis-unbiased"]),
        ),
        Mutant(
            "mis-conditional-mean",
            "MIS estimates the conditional mean E_pi_old[f | rho <= C] (as rejection sampling "
            "would after renormalising)",
            symbolic=SymbolicMutation("mis-target", MIS_CONDITIONAL),
            monte_carlo=shifted_to(mis_samples, mis_reference, MIS_WRONG["mis-conditional-mean"]),
        ),
        Mutant(
            "mis-has-tis-bias",
            "MIS biased like TIS: E_pi_old[f] - E_mu[(rho - C)_+ f]",
            symbolic=SymbolicMutation("mis-target", MIS_TIS_BIAS),
            monte_carlo=shifted_to(mis_samples, mis_reference, MIS_WRONG["mis-has-tis-bias"]),
        ),
    ),
)


# ============================================================================ 4. token vs sequence
# A fully symbolic instance: one prompt, K = 1 ordinary token (id 0) plus EOS (id 1), L = 2,
# as in proofs/llm_policy_gradient.py. Nodes: 0 = the empty prefix, 1 = the prefix (0).
# Responses (node, token) pairs: (EOS), (0, EOS), (0, 0) truncated, with rewards g_0, g_1, g_2.
# pi = pi_theta = pi_old at theta = theta_old (logits theta[n, v]); mu has logits phi[n, v].
theta = sp.IndexedBase("theta", real=True)
phi = sp.IndexedBase("phi", real=True)
g = sp.IndexedBase("g", real=True)  # sequence rewards
EOS = 1
RESPONSES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, EOS),),
    ((0, 0), (1, EOS)),
    ((0, 0), (1, 0)),
)
# One free logit per node: token 0 has logit theta[n], EOS has logit 0. Softmax is invariant
# to shifting a node's logits, so this is every two-token softmax, and the gradient entry of
# an EOS logit is minus that of the token's (a node's scores sum to zero).
LOGITS = (theta[0], theta[1])


def _sigmoid_softmax(table: sp.IndexedBase, node: int, v: int) -> sp.Expr:
    numerator = sp.exp(table[node]) if v == 0 else sp.Integer(1)
    return numerator / (sp.exp(table[node]) + 1)


def pi_(node: int, v: int) -> sp.Expr:
    """pi_theta(v | node) = softmax((theta[node], 0))_v (unevaluated quotient)."""
    return _sigmoid_softmax(theta, node, v)


def mu_(node: int, v: int) -> sp.Expr:
    """mu(v | node) = softmax((phi[node], 0))_v: the sampler, free of theta."""
    return _sigmoid_softmax(phi, node, v)


def product(factors: list[sp.Expr]) -> sp.Expr:
    return factors[0] if len(factors) == 1 else sp.Mul(*factors, evaluate=False)


def score(node: int, v: int, logit: sp.Expr) -> sp.Expr:
    """d log pi(v | node) / d theta[n] = 1[n = node] (1[v = 0] - pi(0 | node))."""
    if logit != theta[node]:
        return sp.Integer(0)
    return sp.Add(sp.Integer(int(v == 0)), -pi_(node, 0), evaluate=False)


def column(entry: Callable[[sp.Expr], sp.Expr]) -> sp.Matrix:
    """One entry per free logit theta[0], theta[1]."""
    return sp.Matrix([entry(logit) for logit in LOGITS])


def over_responses(term: Callable[[int], sp.Expr]) -> sp.Expr:
    return sp.Add(*(term(k) for k in range(len(RESPONSES))), evaluate=False)


def token_ratio(node: int, v: int) -> sp.Expr:
    return U(pi_(node, v) / mu_(node, v))


def q_value(node: int, v: int, law: Callable[[int, int], sp.Expr]) -> sp.Expr:
    """Expected reward after emitting v at node, the rest of the response drawn from ``law``."""
    if node == 0 and v == EOS:
        return g[0]
    if node == 0:
        return sp.Add(
            sp.Mul(law(1, EOS), g[1], evaluate=False),
            sp.Mul(law(1, 0), g[2], evaluate=False),
            evaluate=False,
        )
    return g[1] if v == EOS else g[2]


def prefix_probability(node: int, law: Callable[[int, int], sp.Expr]) -> sp.Expr:
    """d(node): the probability of reaching the prefix under ``law`` (1 at the root)."""
    return sp.Integer(1) if node == 0 else law(0, 0)


def node_form(
    logit: sp.Expr,
    weight: Callable[[int, int], sp.Expr],
    prefixes: Callable[[int, int], sp.Expr],
    continuations: Callable[[int, int], sp.Expr],
) -> sp.Expr:
    """sum_n d(n) sum_v weight(n, v) s(n, v) Q(n, v), d under ``prefixes``, Q under ``continuations``."""
    return sp.Add(
        *(
            sp.Mul(
                prefix_probability(node, prefixes),
                sp.Add(
                    *(
                        sp.Mul(
                            weight(node, v),
                            score(node, v, logit),
                            q_value(node, v, continuations),
                            evaluate=False,
                        )
                        for v in (0, EOS)
                    ),
                    evaluate=False,
                ),
                evaluate=False,
            )
            for node in (0, 1)
        ),
        evaluate=False,
    )


objective = over_responses(
    lambda k: sp.Mul(product([pi_(*tok) for tok in RESPONSES[k]]), g[k], evaluate=False)
)
frozen_surrogate = sp.Add(
    *(
        sp.Mul(
            prefix_probability(node, mu_),
            sp.Add(
                *(sp.Mul(pi_(node, v), q_value(node, v, mu_), evaluate=False) for v in (0, EOS)),
                evaluate=False,
            ),
            evaluate=False,
        )
        for node in (0, 1)
    ),
    evaluate=False,
)
GRADIENT_OF_J = column(lambda logit: sp.Derivative(objective, logit))
GRADIENT_OF_SURROGATE = column(lambda logit: sp.Derivative(frozen_surrogate, logit))


def sum_of_scores(k: int, logit: sp.Expr) -> sp.Expr:
    return sp.Add(*(score(node, v, logit) for node, v in RESPONSES[k]), evaluate=False)


sequence_correction = Derivation(
    "sequence-level-correction",
    (
        Step(
            column(
                lambda logit: over_responses(
                    lambda k: sp.Mul(
                        product([mu_(*tok) for tok in RESPONSES[k]]),
                        product([token_ratio(*tok) for tok in RESPONSES[k]]),
                        g[k],
                        sum_of_scores(k, logit),
                        evaluate=False,
                    )
                )
            ),
            "E_mu[rho(y) R(y) sum_t s_t] with rho(y) = prod_t pi(y_t|.)/mu(y_t|.), over the "
            "three responses with their mu-probabilities",
        ),
        Step(
            column(
                lambda logit: over_responses(
                    lambda k: sp.Mul(
                        product([pi_(*tok) for tok in RESPONSES[k]]),
                        g[k],
                        sum_of_scores(k, logit),
                        evaluate=False,
                    )
                )
            ),
            "mu(y) prod_t pi_t/mu_t = prod_t pi_t = pi(y): token by token, mu/mu = 1",
        ),
        Step(
            GRADIENT_OF_J,
            "log-derivative trick: sum_y pi(y) R(y) sum_t s_t = dJ/d theta (claim "
            "llm-sequence-policy-gradient)",
        ),
    ),
    statement=r"\mathbb E_\mu[\rho(y) R \textstyle\sum_t s_t] = \nabla_\theta J",
)

token_correction = Derivation(
    "token-level-correction",
    (
        Step(
            column(
                lambda logit: over_responses(
                    lambda k: sp.Mul(
                        product([mu_(*tok) for tok in RESPONSES[k]]),
                        g[k],
                        sp.Add(
                            *(
                                sp.Mul(token_ratio(*tok), score(*tok, logit), evaluate=False)
                                for tok in RESPONSES[k]
                            ),
                            evaluate=False,
                        ),
                        evaluate=False,
                    )
                )
            ),
            "E_mu[R(y) sum_t rho_t s_t] with rho_t = pi(y_t|.)/mu(y_t|.) (per-token TIS, no "
            "cap), over the three responses with their mu-probabilities",
        ),
        Step(
            column(
                lambda logit: node_form(
                    logit,
                    lambda node, v: sp.Mul(mu_(node, v), token_ratio(node, v), evaluate=False),
                    mu_,
                    mu_,
                )
            ),
            "collect the terms of each token position: the prefix before it has probability "
            "d_mu(n) under mu, the tokens after it, summed under mu, give Q_mu(n, v)",
        ),
        Step(
            column(lambda logit: node_form(logit, pi_, mu_, mu_)),
            "mu(v|n) (pi(v|n)/mu(v|n)) = pi(v|n): the ratio corrects the current token only",
        ),
        Step(
            GRADIENT_OF_SURROGATE,
            "log-derivative trick at each node, d_mu(n) and Q_mu(n, v) free of theta: "
            "sum_v pi s Q = d/d theta sum_v pi Q",
        ),
    ),
    statement=(
        r"\mathbb E_\mu[R \textstyle\sum_t \rho_t s_t] = \nabla_\theta \sum_n d_\mu(n) "
        r"\sum_v \pi_\theta(v|n) Q_\mu(n, v)"
    ),
)

TOKEN_UNBIASED = GRADIENT_OF_J
TOKEN_PI_PREFIXES = column(lambda logit: node_form(logit, pi_, pi_, mu_))
TOKEN_PI_CONTINUATIONS = column(lambda logit: node_form(logit, pi_, mu_, pi_))
SEQUENCE_LIKE_TOKEN = GRADIENT_OF_SURROGATE


# --- exact leg: both expected gradients by enumeration vs complex-step derivatives
def _node_tables(model: SequenceModel) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, depth [N], code [N], child [N, K]) of the prefix tree (child -1 at depth L-1)."""
    K, L, N = model.n_tokens, model.max_length, model.n_nodes
    offsets = [sum(K**j for j in range(d)) for d in range(L + 1)]
    depth = np.concatenate([np.full(K**d, d) for d in range(L)])
    code = np.arange(N) - np.array(offsets)[depth]
    child = np.full((N, K), -1, dtype=np.intp)
    inner = depth < L - 1
    for v in range(K):
        child[inner, v] = np.array(offsets)[depth[inner] + 1] + code[inner] * K + v
    return offsets, depth, code, child


def action_values(model: SequenceModel, probabilities: Any) -> Any:
    r"""$Q(x, n, v)$ by backward induction over depths, continuations drawn from ``probabilities``.

    ``probabilities`` ``[X, N, K + 1]`` (complex allowed); $Q(x, n, \mathrm{EOS}) =
    r_\mathrm{tok}(x, n, \mathrm{EOS}) + r(x, \text{response } n)$; for an ordinary token at
    depth $< L - 1$, $r_\mathrm{tok} + \sum_w \pi(w \mid \text{child}) Q(\text{child}, w)$;
    at depth $L - 1$, $r_\mathrm{tok} + r(x, \text{the truncated response})$. No response
    enumeration is used.
    """
    K, N = model.n_tokens, model.n_nodes
    _, depth, code, child = _node_tables(model)
    Q = np.zeros(probabilities.shape, dtype=np.result_type(probabilities, float))
    for d in range(model.max_length - 1, -1, -1):
        nodes = np.flatnonzero(depth == d)
        Q[:, nodes, K] = model.token_rewards[:, nodes, K] + model.rewards[:, nodes]
        for v in range(K):
            if d == model.max_length - 1:
                after = model.rewards[:, N + code[nodes] * K + v]
            else:
                kids = child[nodes, v]
                after = (probabilities[:, kids, :] * Q[:, kids, :]).sum(axis=2)
            Q[:, nodes, v] = model.token_rewards[:, nodes, v] + after
    return Q


def prefix_probabilities(model: SequenceModel, probabilities: np.ndarray) -> np.ndarray:
    """d(x, n) = probability of reaching prefix n under ``probabilities``, forward, ``[X, N]``."""
    K = model.n_tokens
    _, depth, _, child = _node_tables(model)
    d = np.zeros(probabilities.shape[:2])
    d[:, 0] = 1.0
    for level in range(model.max_length - 1):
        for node in np.flatnonzero(depth == level):
            for v in range(K):
                d[:, child[node, v]] = d[:, node] * probabilities[:, node, v]
    return d


def _softmax_complex(z: Any) -> Any:
    e = np.exp(z - z.real.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def objective_gradient_by_complex_step(model: SequenceModel) -> np.ndarray:
    """grad J ``[X, N, K + 1]``: complex step of J = sum_x rho(x) sum_v pi(v|root) Q_pi(root, v)."""

    def J(z: np.ndarray) -> Any:
        p_ = _softmax_complex(z)
        return model.prompt_probabilities @ (p_[:, 0, :] * action_values(model, p_)[:, 0, :]).sum(
            axis=1
        )

    return complex_step_gradient(J, model.theta)


def frozen_surrogate_gradient(example: MismatchExample) -> np.ndarray:
    """grad at theta of sum_x rho sum_n d_mu sum_v pi_theta'(v|n) Q_mu(n, v), d_mu, Q_mu fixed."""
    model = example.model
    mu = np.exp(_policies(example)[0].next_token_log_probabilities())
    d_mu, q_mu = prefix_probabilities(model, mu), action_values(model, mu)

    def S(z: np.ndarray) -> Any:
        weights = model.prompt_probabilities[:, None, None] * d_mu[:, :, None] * q_mu
        return (_softmax_complex(z) * weights).sum()

    return complex_step_gradient(S, model.theta)


def node_form_gradient(example: MismatchExample, prefixes: str, continuations: str) -> np.ndarray:
    r"""$\sum_n d(n) \sum_v \pi(v|n) s(v|n) Q(n, v)$ in closed form (mutants): entry $(x, n, u)$ is
    $\rho(x) d(x, n) \pi(u|n) (Q(n, u) - \sum_v \pi(v|n) Q(n, v))$; d and Q under mu or pi."""
    model = example.model
    laws = {
        "mu": np.exp(_policies(example)[0].next_token_log_probabilities()),
        "pi": np.exp(model.next_token_log_probabilities()),
    }
    d = prefix_probabilities(model, laws[prefixes])
    Q = action_values(model, laws[continuations])
    pi_table = laws["pi"]
    centred = Q - (pi_table * Q).sum(axis=2, keepdims=True)
    return model.prompt_probabilities[:, None, None] * d[:, :, None] * pi_table * centred  # type: ignore[no-any-return]


def correction_weights(example: MismatchExample) -> dict[str, np.ndarray]:
    r"""Per-token coefficients of the score, ``[X, R, L]``, at theta = theta_old.

    $-\partial\ell_t/\partial\log\pi_\theta$ from the shipped :func:`ppo_token_loss_gradient`
    with advantage $R(x, y)$ (at the ratio 1: $R$), times the shipped
    :func:`truncated_importance_weights` with $C = \infty$: per token $\rho_t$ (token level),
    or its product over the response (sequence level), or $\exp(\log\pi(y) - \log\mu(y))$
    (sequence level written directly).
    """
    mu, old, _ = _policies(example)
    X, R, L = old.n_prompts, old.n_responses, old.max_length
    mask = _response_mask(old)
    log_old = _token_arrays(old)
    advantages = np.broadcast_to(old.total_rewards()[:, :, None], (X, R, L)).reshape(X * R, L)
    coefficient = -ppo_token_loss_gradient(
        log_old, log_old, advantages, mask, clip_low=0.2, clip_high=0.28
    )
    rho_t = truncated_importance_weights(log_old, _token_arrays(mu), mask, cap=np.inf)
    rho_seq = np.where(mask, rho_t, 1.0).prod(axis=1, keepdims=True)
    direct = np.exp(old.log_probabilities() - mu.log_probabilities()).reshape(X * R, 1)
    return {
        "sequence": (coefficient * rho_seq).reshape(X, R, L),
        "token": (coefficient * rho_t).reshape(X, R, L),
        "sequence-direct": (coefficient * direct).reshape(X, R, L),
    }


CORRECTION_ROWS = ("sequence", "token", "sequence-direct")


def expected_corrected_gradients(example: MismatchExample) -> np.ndarray:
    """lhs ``[3, X, N, K + 1]``: E_x E_{y ~ mu} of each estimator, enumerating responses."""
    mu, old, _ = _policies(example)
    sampling = example.model.prompt_probabilities[:, None, None] * mu.probabilities()[:, :, None]
    weights = correction_weights(example)
    return np.stack([old.weighted_score_sum(sampling * weights[row]) for row in CORRECTION_ROWS])


def correction_conclusion(
    sequence: Callable[[MismatchExample], np.ndarray],
    token: Callable[[MismatchExample], np.ndarray],
) -> Callable[[MismatchExample], np.ndarray]:
    """rhs ``[3, X, N, K + 1]``: (sequence, token, sequence) expected gradients."""

    def rhs(example: MismatchExample) -> np.ndarray:
        seq = sequence(example)
        return np.stack([seq, token(example), seq])

    return rhs


def _gradient_of_j(example: MismatchExample) -> np.ndarray:
    return objective_gradient_by_complex_step(example.model)


correction_rhs = correction_conclusion(_gradient_of_j, frozen_surrogate_gradient)
CORRECTION_WRONG = {
    "token-level-unbiased": correction_conclusion(_gradient_of_j, _gradient_of_j),
    "token-level-pi-prefixes": correction_conclusion(
        _gradient_of_j, lambda ex: node_form_gradient(ex, "pi", "mu")
    ),
    "token-level-pi-continuations": correction_conclusion(
        _gradient_of_j, lambda ex: node_form_gradient(ex, "mu", "pi")
    ),
    "sequence-level-like-token": correction_conclusion(
        frozen_surrogate_gradient, frozen_surrogate_gradient
    ),
}


def _correction_error_scale(example: MismatchExample) -> float:
    """E_x E_mu[|w| |R| 2 L] over both estimators: the size of the accumulated terms."""
    mu, old, _ = _policies(example)
    sampling = example.model.prompt_probabilities[:, None, None] * mu.probabilities()[:, :, None]
    weights = correction_weights(example)
    return max(
        max(float((sampling * np.abs(w)).sum()) for w in weights.values()) * 2.0 * old.max_length,
        1e-300,
    )


# --- Monte Carlo: y ~ mu token by token, both estimators per sample
def token_scores(model: SequenceModel) -> np.ndarray:
    """Dense per-token scores ``[X, R, L, X, N, K + 1]`` (0 after the end)."""
    X, R, L, N, V = (
        model.n_prompts,
        model.n_responses,
        model.max_length,
        model.n_nodes,
        model.n_tokens + 1,
    )
    out = np.zeros((X, R, L, X, N, V))
    pi_table = np.exp(model.next_token_log_probabilities())
    r = model.responses
    for t_ in range(L):
        rows = np.flatnonzero(r.mask[:, t_])
        nodes, tokens = r.nodes[rows, t_], r.tokens[rows, t_]
        for x in range(X):
            out[x, rows, t_, x, nodes, :] -= pi_table[x, nodes]
            out[x, rows, t_, x, nodes, tokens] += 1.0
    return out


@one_slot_cache
def _token_scores_of(example: MismatchExample) -> np.ndarray:
    return token_scores(example.model)


def correction_samples(example: MismatchExample, rng: np.random.Generator, size: int) -> np.ndarray:
    """``[n, 2 X N (K + 1)]``: (sequence, token) estimators at x ~ rho, y ~ mu token by token.

    The ratios are the sampled tokens' pi_old/mu accumulated while sampling; the scores of
    the sampled response are looked up in the dense per-token score table.
    """
    draw = sample_from_rollout(example, rng, size)
    model = example.model
    scores = _token_scores_of(example)[draw.prompts, draw.responses]  # [n, L, X, N, V]
    reward = model.total_rewards()[draw.prompts, draw.responses]
    rho_t = np.exp(draw.log_ratio_old_mu) * draw.mask  # 0 after the end
    seq = (np.exp(draw.log_ratio_old_mu.sum(axis=1)) * reward)[:, None] * scores.sum(
        axis=1
    ).reshape(size, -1)
    tok = reward[:, None] * np.einsum("nt,nt...->n...", rho_t, scores).reshape(size, -1)
    return np.concatenate([seq, tok], axis=1)


def _two_rows(
    rhs: Callable[[MismatchExample], np.ndarray],
) -> Callable[[MismatchExample], np.ndarray]:
    return lambda example: np.asarray(rhs(example))[:2].ravel()


def enumerated_correction_terms(example: MismatchExample) -> np.ndarray:
    """The per-sample term of :func:`correction_samples` at every (x, y), ``[X, R, 2 X N V]``."""
    mu, old, _ = _policies(example)
    scores = _token_scores_of(example)
    X, R = old.n_prompts, old.n_responses
    weights = correction_weights(example)
    seq = np.einsum("xrt,xrt...->xr...", weights["sequence"], scores).reshape(X, R, -1)
    tok = np.einsum("xrt,xrt...->xr...", weights["token"], scores).reshape(X, R, -1)
    return np.concatenate([seq, tok], axis=2)


def _correction_mc_ok(example: MismatchExample) -> bool:
    """Every prompt sampled often (rho(x) >= 0.1: a component of a prompt drawn a handful of
    times has a mean the CLT cannot see), ratios within [1/10, 10], every mutant detectable
    with power 0.99 in some component (Bonferroni over components and the two examples)."""
    if float(example.model.prompt_probabilities.min()) < 0.1:
        return False
    mismatch, _ = _sequence_log_ratios(example)
    if float(np.exp(np.abs(mismatch)).max()) > 10.0:
        return False
    mu = _policies(example)[0]
    weights = (example.model.prompt_probabilities[:, None] * mu.probabilities()).ravel()
    terms = enumerated_correction_terms(example)
    _, sd = exact_moments(weights, terms.reshape(weights.size, -1))
    truth = _two_rows(correction_rhs)(example)
    return all(
        detectable(
            truth - _two_rows(wrong)(example), sd, N_CORRECTION_SAMPLES, false_alarm=FALSE_ALARM / 2
        )
        for wrong in CORRECTION_WRONG.values()
    )


N_CORRECTION_SAMPLES = 50_000
correction_mc_examples = mismatch_examples(min_length=2, max_length=2, rollout_scale=1.5).filter(
    _correction_mc_ok
)
correction_reference = _two_rows(correction_rhs)

CORRECTION_CLAIM = Claim(
    id="token-vs-sequence-correction",
    title="Per-token importance correction is biased for the sequence objective; the sequence ratio is not",
    statement=Statement(
        token_correction.start,
        token_correction.conclusion,
        derivation="token-level-correction",
        where=(
            r"\text{one prompt, tokens } \{0, \mathrm{EOS}=1\},\ L = 2;\ "
            r"\pi(0|n) = \mathrm{softmax}(\theta_n, 0)_0,\ \mu(0|n) = "
            r"\mathrm{softmax}(\phi_n, 0)_0,\ g_i \text{ rewards of } "
            r"(\mathrm{EOS}), (0, \mathrm{EOS}), (0, 0)"
        ),
        symbol_names={theta: r"\theta", phi: r"\phi", g: "g"},
    ),
    assumptions=(
        "Tabular autoregressive softmax policies over one prefix tree (EOS a response token, "
        "truncation at L); the gradient is taken at theta = theta_old, so PPO's ratio is 1 "
        "and the only correction is the mismatch ratio pi_old/mu (per-token TIS with C = "
        "infinity, or its product over the response); the weights and rewards are detached.",
        "Rewards r(x, y) and token rewards r_tok(x, prefix, token) do not depend on theta; "
        "every token's score is weighted by the total reward R(x, y) (GRPO-style outcome "
        "advantage without baseline).",
        "Symbolic leg: a fully symbolic instance (one prompt, one ordinary token plus EOS, "
        "L = 2: three responses, one free logit per node for pi and for mu with the EOS "
        "logit at 0 (softmax is shift invariant, so this is every two-token softmax, and an "
        "EOS logit's gradient entry is minus the token's), three rewards), both entries of "
        "the gradient.",
        "Exact leg: 1-2 prompts, 1-2 ordinary tokens plus EOS, L = 1-3, token rewards, mu "
        "perturbed from pi_old by a fixed pattern plus noise.",
    ),
    references=(
        "Yao, F. et al., *Your Efficient RL Framework Secretly Brings You Off-Policy RL "
        "Training*, blog post (fengyao.notion.site/off-policy-rl), 2025 (per-token TIS in "
        "verl).",
        "Liu, J., Li, Y. et al., *When Speed Kills Stability: Demystifying RL Collapse from "
        "the Training-Inference Mismatch*, 2025 (token- vs sequence-level importance "
        "sampling).",
        "Sutton, R. S. and Barto, A. G., *Reinforcement Learning: An Introduction*, 2nd ed., "
        "2018, Sec. 13.2 (the policy gradient theorem: prefix distribution and Q of the "
        "policy itself).",
    ),
    summary=(
        "Multiplying each token's loss by its own vLLM-to-trainer ratio fixes only that "
        "token's law: the expected update is the gradient of a surrogate with mu's prefix "
        "distribution and mu's continuation values, not grad J; only the product of the ratios "
        "over the response (sequence-level IS) is unbiased."
    ),
    notes=(
        "The token-level expectation differs from grad J = sum_n d_pi(n) sum_v pi(v|n) "
        "s(v|n) Q_pi(n, v) (policy gradient theorem) in both places where mu remains: the "
        "prefix law d_mu instead of d_pi and the continuation value Q_mu instead of Q_pi; the "
        "mutants token-level-pi-prefixes and token-level-pi-continuations each fix one of "
        "them and are still wrong. The bias vanishes as mu -> pi_old (first order in the "
        "mismatch), which is why per-token TIS works when the engine is close to the trainer. "
        "Rewards earned before token t drop out of either estimator (E_pi[s_t | prefix] = 0)."
    ),
    symbolic=SymbolicLeg((token_correction, sequence_correction)),
    exact=ExactLeg(
        mismatch_examples(),
        lhs=expected_corrected_gradients,
        rhs=correction_rhs,
        rhs_reason=(
            "the conclusions are gradients of J and of the frozen surrogate of the sequence "
            "model, computed by complex-step differentiation of backward-induction values "
            "(not lambdifiable from the three-response symbolic instance)"
        ),
        rtol=_rtol,
        error_scale=_correction_error_scale,
        max_examples=20,
        description=(
            "E_x E_{y ~ mu} of R(y) sum_t w_t grad log pi(y_t|.) by enumerating responses with "
            "their mu-probabilities (SequenceModel.weighted_score_sum), w_t from the shipped "
            "ppo_token_loss_gradient and truncated_importance_weights (C = inf): the product "
            "over the response, the per-token ratio, and exp(log pi(y) - log mu(y)); vs the "
            "complex-step gradient of J (by backward induction) and of sum_n d_mu sum_v "
            "pi_theta Q_mu with d_mu, Q_mu by forward/backward recursion under mu"
        ),
    ),
    monte_carlo=monte_carlo_leg(
        correction_mc_examples,
        correction_samples,
        correction_reference,
        n_samples=N_CORRECTION_SAMPLES,
        false_alarm=FALSE_ALARM,
        description=(
            "x ~ rho, y ~ mu token by token: mean of the sequence- and token-level corrected "
            "gradient estimators vs grad J and the frozen surrogate's gradient (complex step)"
        ),
    ),
    mutants=(
        Mutant(
            "token-level-unbiased",
            "per-token TIS (no cap) taken to be unbiased: E_mu[R sum_t rho_t s_t] = grad J",
            symbolic=SymbolicMutation("token-level-correction", TOKEN_UNBIASED),
            exact=CORRECTION_WRONG["token-level-unbiased"],
            monte_carlo=shifted_to(
                correction_samples,
                correction_reference,
                _two_rows(CORRECTION_WRONG["token-level-unbiased"]),
            ),
        ),
        Mutant(
            "token-level-pi-prefixes",
            "the token-level expectation with pi's prefix law d_pi (only Q stays mu's)",
            symbolic=SymbolicMutation("token-level-correction", TOKEN_PI_PREFIXES),
            exact=CORRECTION_WRONG["token-level-pi-prefixes"],
            monte_carlo=shifted_to(
                correction_samples,
                correction_reference,
                _two_rows(CORRECTION_WRONG["token-level-pi-prefixes"]),
            ),
        ),
        Mutant(
            "token-level-pi-continuations",
            "the token-level expectation with pi's continuation value Q_pi (only d stays mu's)",
            symbolic=SymbolicMutation("token-level-correction", TOKEN_PI_CONTINUATIONS),
            exact=CORRECTION_WRONG["token-level-pi-continuations"],
            monte_carlo=shifted_to(
                correction_samples,
                correction_reference,
                _two_rows(CORRECTION_WRONG["token-level-pi-continuations"]),
            ),
        ),
        Mutant(
            "sequence-level-like-token",
            "the sequence-level correction biased like the token-level one (the product of "
            "ratios taken to fix no more than one token)",
            symbolic=SymbolicMutation("sequence-level-correction", SEQUENCE_LIKE_TOKEN),
            exact=CORRECTION_WRONG["sequence-level-like-token"],
            monte_carlo=shifted_to(
                correction_samples,
                correction_reference,
                _two_rows(CORRECTION_WRONG["sequence-level-like-token"]),
            ),
        ),
    ),
)

CLAIMS = (FACTORISATION_CLAIM, TIS_CLAIM, MIS_CLAIM, CORRECTION_CLAIM)
