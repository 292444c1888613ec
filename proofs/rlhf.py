r"""KL-regularised reward maximisation: the Gibbs optimum, and DPO's implicit reward.

Main statements. For a reference policy $\pi_{\mathrm{ref}}$ over $n$ responses $y$ (one
prompt $x$, left implicit), a reward $r$ and $\beta > 0$,

$$ \max_\pi\ \mathbb E_{y\sim\pi}[r(y)] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_{\mathrm{ref}})
   \quad\text{is attained at}\quad
   \pi^*(y) = \frac{\pi_{\mathrm{ref}}(y)\, e^{r(y)/\beta}}{Z}, \quad
   Z = \sum_y \pi_{\mathrm{ref}}(y)\, e^{r(y)/\beta}, $$

with value $\beta \log Z$, because for every $\pi$

$$ \mathbb E_\pi[r] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})
   = \beta \log Z - \beta\,\mathrm{KL}(\pi\,\|\,\pi^*). $$

Inverting, $r(y) = \beta \log\frac{\pi^*(y)}{\pi_{\mathrm{ref}}(y)} + \beta\log Z$; $Z$ cancels
in the Bradley-Terry probability, and the DPO loss
$\mathcal L = -\log\sigma(u)$, $u = \beta(\log\frac{\pi(y_w)}{\pi_{\mathrm{ref}}(y_w)} -
\log\frac{\pi(y_l)}{\pi_{\mathrm{ref}}(y_l)})$, has
$\partial\mathcal L/\partial\log\pi(y_w) = -\beta\sigma(-u)$ and
$\partial\mathcal L/\partial\log\pi(y_l) = +\beta\sigma(-u)$.

Conventions. $\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})$ is under the *trained* policy $\pi$
(the sampled side in RLHF). The objective is maximised; the DPO loss is minimised.
$\sigma(u) = 1/(1 + e^{-u})$. $y_w$ is the preferred response, $y_l$ the other.

Proof sketch. Write $r/\beta = \log e^{r/\beta}$ inside the KL: the objective becomes
$-\beta \sum \pi \log(\pi / (\pi_{\mathrm{ref}} e^{r/\beta})) = -\beta\sum\pi\log(\pi/\pi^*) +
\beta\log Z$. The optimum follows from $\mathrm{KL} \ge 0$ (claim ``kl-nonnegative``; here its
gap $\sum_y \pi\, g(\pi^*/\pi)$, $g(x) = x - 1 - \log x \ge 0$). It is the unique optimum:
$g(x) \ge (x-1)^2 / (2(1+x)^2)$ (lemma ``strict-log-bound``, Taylor's remainder again), so
$J(\pi^*) - J(\pi) = \beta\,\mathrm{KL}(\pi\,\|\,\pi^*) \ge \frac\beta2 \sum_y \pi
(\pi - \pi^*)^2 / (\pi + \pi^*)^2$, which is positive unless $\pi = \pi^*$. The implicit reward is the
logarithm of $\pi^*$'s definition; the loss gradient is $\sigma'/\sigma = 1 - \sigma = \sigma(-u)$.

References. Rafailov, R., Sharma, A., Mitchell, E., Ermon, S., Manning, C. D. and Finn, C.,
"Direct Preference Optimization: Your Language Model is Secretly a Reward Model", NeurIPS
2023, eq. (4) (optimum), (5) (implicit reward), (6)-(7) (Z cancels; the DPO loss) and the
gradient in Sec. 4. Ziegler, D. M. et al., "Fine-Tuning Language Models from Human
Preferences", arXiv:1909.08593, 2019 (KL-regularised RLHF). Donsker, M. D. and Varadhan,
S. R. S., "Asymptotic evaluation of certain Markov process expectations for large time",
Comm. Pure Appl. Math. 28, 1975 (the Gibbs variational principle).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import strategies as st
from scipy.special import expit, logsumexp, rel_entr

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
    lambdify,
    lazy_lambdify,
    monte_carlo_leg,
)
from rlmath.statistics import DEFAULT_FALSE_ALARM, sample_size
from rlmath.symbolic import LOG_BOUND_REMAINDER, IndexSum, log_bound_gap
from rlmath.testing import logits, probability_vectors
from rlmath.tolerances import exact_rtol

# ============================================================================ Gibbs optimum
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
j = sp.Symbol("j", integer=True)
beta = sp.Symbol("beta", positive=True)
w = sp.IndexedBase("w", positive=True)  # pi = w / sum w: any distribution with full support
pi_ref_ = sp.IndexedBase(r"\pi_{\mathrm{ref}}", positive=True)  # pi_ref > 0 (need not sum to 1)
reward = sp.IndexedBase("r", real=True)


def total(expression: sp.Expr, index: sp.Symbol = i) -> sp.Sum:
    """$\\sum_{index=0}^{n-1}$ expression."""
    return IndexSum(expression, (index, 0, n - 1))


pi = w[i] / total(w[j], j)
pi_ref = pi_ref_[i]
partition = total(pi_ref_[j] * sp.exp(reward[j] / beta), j)  # Z
pi_star = pi_ref * sp.exp(reward[i] / beta) / partition
kl_to_optimum = total(pi * sp.log(pi / pi_star))
objective = total(pi * reward[i]) - beta * total(pi * sp.log(pi / pi_ref))
identity_rhs = beta * sp.log(partition) - beta * kl_to_optimum

objective_identity = Derivation(
    "objective-identity",
    (
        Step(objective, "the KL-regularised objective E_pi[r] - beta KL(pi || pi_ref)"),
        Step(-beta * total(pi * (sp.log(pi / pi_ref) - reward[i] / beta)), "factor out -beta"),
        Step(
            -beta * total(pi * sp.log(pi / (pi_ref * sp.exp(reward[i] / beta)))),
            "r / beta = log e^(r / beta)",
        ),
        Step(
            -beta * total(pi * (sp.log(pi / pi_star) - sp.log(partition))),
            "pi_ref e^(r/beta) = Z pi*",
        ),
        Step(
            beta * sp.log(partition) * total(pi) - beta * kl_to_optimum,
            "linearity; log Z is a constant of the sum",
        ),
        Step(identity_rhs, "sum pi = 1"),
    ),
    statement=(
        r"\mathbb E_\pi[r] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})"
        r" = \beta\log Z - \beta\,\mathrm{KL}(\pi\,\|\,\pi^*)"
    ),
)

optimum = Derivation(
    "optimum",
    (
        Step(objective, "the KL-regularised objective of any pi with full support"),
        Step(identity_rhs, "derivation 'objective-identity'"),
        Step(
            beta * sp.log(partition),
            "KL(pi || pi*) = sum_i pi_i g(pi*_i / pi_i) >= 0 (Gibbs, claim kl-nonnegative), "
            "with equality iff pi = pi*",
            relation="<=",
            gap=beta * total(pi * log_bound_gap(pi_star / pi)),
        ),
    ),
    statement=r"\mathbb E_\pi[r] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}}) \le \beta\log Z",
)

value_at_optimum = Derivation(
    "value-at-optimum",
    (
        Step(
            beta * sp.log(partition)
            - beta * total(pi_star * sp.log(sp.Mul(pi_star, 1 / pi_star, evaluate=False))),
            "'objective-identity' at pi = pi*",
        ),
        Step(beta * sp.log(partition), "KL(pi* || pi*) = sum pi* log 1 = 0: the bound is attained"),
    ),
    statement=r"\mathbb E_{\pi^*}[r] - \beta\,\mathrm{KL}(\pi^*\,\|\,\pi_{\mathrm{ref}}) = \beta\log Z",
)

# ----------------------------------------------------------------------------- uniqueness
# J(pi*) - J(pi) = beta KL(pi || pi*) = beta sum_i pi_i g(pi*_i / pi_i), g(x) = x - 1 - log x,
# and g(x) >= (x - 1)^2 / (2 (1 + x)^2) (lemma 'strict-log-bound'), so the gap is at least
# (beta / 2) sum_i pi_i (pi_i - pi*_i)^2 / (pi_i + pi*_i)^2: a sum of non-negative terms, 0 only
# if pi_i = pi*_i for every i. Hence J(pi) = J(pi*) forces pi = pi*: pi* is the unique maximiser.
x_ = sp.Symbol("x", positive=True)
s_ = sp.Symbol("s", nonnegative=True)  # integration variable on [0, 1]
v_ = sp.Symbol("v", positive=True)
QUADRATIC_LOWER_BOUND = (x_ - 1) ** 2 / (2 * (1 + x_) ** 2)
#: The lemma's integrand: Taylor's remainder of g minus that of the quadratic lower bound.
STRICT_REMAINDER = LOG_BOUND_REMAINDER - (x_ - 1) ** 2 * (1 - s_) / (1 + x_) ** 2


class strict_log_bound_gap(sp.Function):  # noqa: N801 (sympy style)
    r"""$h(x) = x - 1 - \log x - \frac{(x-1)^2}{2(1+x)^2}$, which is $\ge 0$ for $x > 0$.

    sympy learns $h(x) \ge 0$ the way it learns it for
    :class:`rlmath.symbolic.log_bound_gap`: by lemma 'strict-log-bound', $h(x) = \int_0^1$
    :data:`STRICT_REMAINDER` $ds$, and that integrand at $s = v/(1+v)$ ($v > 0$: every
    $s \in (0, 1)$) factors into manifestly non-negative factors; an integral over $[0, 1]$ of a
    non-negative integrand is non-negative. ``doit`` gives the definition.
    """

    nargs = 1

    def doit(self, deep: bool = True, **hints: object) -> sp.Expr:
        (arg,) = self.args
        if deep:
            arg = arg.doit(deep=deep, **hints)
        return arg - 1 - sp.log(arg) - QUADRATIC_LOWER_BOUND.subs(x_, arg)

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_positive or None

    def _eval_is_finite(self) -> bool | None:
        return self.args[0].is_positive or None

    def _eval_is_extended_nonnegative(self) -> bool | None:
        (arg,) = self.args
        if arg.is_positive is not True:
            return None
        inside = STRICT_REMAINDER.subs(s_, v_ / (1 + v_)).subs(x_, arg)
        return sp.factor(sp.cancel(inside)).is_nonnegative or None

    def _latex(self, printer, exp=None) -> str:  # type: ignore[no-untyped-def]
        out = rf"h\left({printer._print(self.args[0])}\right)"
        return out if exp is None else rf"{out}^{{{exp}}}"


strict_log_bound = Derivation(
    "strict-log-bound",
    (
        Step(
            x_ - 1 - sp.log(x_) - QUADRATIC_LOWER_BOUND,
            "h(x) = g(x) - (x - 1)^2 / (2 (1 + x)^2), g(x) = x - 1 - log x",
        ),
        Step(
            sp.Integral(LOG_BOUND_REMAINDER, (s_, 0, 1)) - QUADRATIC_LOWER_BOUND,
            "lemma 'log-bound' (claim kl-nonnegative): g(x) is Taylor's integral remainder",
        ),
        Step(
            sp.Integral(LOG_BOUND_REMAINDER, (s_, 0, 1))
            - sp.Integral((x_ - 1) ** 2 * (1 - s_) / (1 + x_) ** 2, (s_, 0, 1)),
            "int_0^1 (1 - s) ds = 1/2",
        ),
        Step(
            sp.Integer(0),
            "linearity of the integral, and its integrand STRICT_REMAINDER = (x-1)^2 (1-s) "
            "[1/(1+(x-1)s)^2 - 1/(1+x)^2] is >= 0: for x > 0 and s in [0, 1], "
            "0 < 1 + (x-1)s <= 1 + x",
            relation=">=",
            gap=strict_log_bound_gap(x_),
        ),
    ),
    statement=r"x - 1 - \log x \ge \frac{(x-1)^2}{2(1+x)^2} \quad (x > 0)",
)

optimality_gap_bound = beta / 2 * total(pi * (pi - pi_star) ** 2 / (pi + pi_star) ** 2)
uniqueness = Derivation(
    "uniqueness",
    (
        Step(
            beta * sp.log(partition) - objective,
            "J(pi*) - J(pi): J(pi*) = beta log Z (derivation 'value-at-optimum')",
        ),
        Step(beta * kl_to_optimum, "derivation 'objective-identity'"),
        Step(
            beta * total(pi * log_bound_gap(pi_star / pi)),
            "KL(pi || pi*) = sum pi g(pi*/pi) + sum pi - sum pi* (derivation 'kl-remainder' of "
            "kl-nonnegative), and sum pi = sum pi* = 1",
        ),
        Step(
            beta * total(pi * QUADRATIC_LOWER_BOUND.subs(x_, pi_star / pi)),
            "lemma 'strict-log-bound' at x = pi*_i / pi_i, weighted by beta pi_i > 0",
            relation=">=",
            gap=beta * total(pi * strict_log_bound_gap(pi_star / pi)),
        ),
        Step(
            optimality_gap_bound,
            "multiply numerator and denominator by pi_i^2: a sum of non-negative terms, each 0 "
            "only if pi_i = pi*_i",
        ),
    ),
    statement=(
        r"J(\pi^*) - J(\pi) = \beta\,\mathrm{KL}(\pi\,\|\,\pi^*) \ge \frac\beta2 \sum_i \pi_i"
        r"\frac{(\pi_i - \pi^*_i)^2}{(\pi_i + \pi^*_i)^2},\ \text{which is } 0 \text{ only at } "
        r"\pi = \pi^*"
    ),
)

# ============================================================================ DPO
r_w, r_l = sp.symbols("r_w r_l", real=True)  # rewards of the preferred / other response
ref_w, ref_l = sp.symbols("pi_ref_w pi_ref_l", positive=True)  # pi_ref(y_w), pi_ref(y_l)
Z = sp.Symbol("Z", positive=True)  # the prompt's partition function


class sigmoid(sp.Function):  # noqa: N801 (sympy style)
    r"""$\sigma(x) = 1 / (1 + e^{-x})$, printed as $\sigma(x)$; ``doit`` gives the definition.

    Its derivative is $\sigma(x)\sigma(-x)$. Random-point evaluation
    (:func:`rlmath.symbolic.refuted_at_random_point`) and ``lambdify`` use the definition.
    """

    nargs = 1

    def doit(self, deep: bool = True, **hints: object) -> sp.Expr:
        (x,) = self.args
        if deep:
            x = x.doit(deep=deep, **hints)
        return 1 / (1 + sp.exp(-x))

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        (x,) = self.args
        return sigmoid(x) * sigmoid(-x)

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_extended_real  # type: ignore[no-any-return]

    def _eval_is_extended_positive(self) -> bool | None:
        return True if self.args[0].is_extended_real else None

    def _latex(self, printer, exp=None) -> str:  # type: ignore[no-untyped-def]
        out = rf"\sigma\left({printer._print(self.args[0])}\right)"
        return out if exp is None else rf"{out}^{{{exp}}}"

    def _numpycode(self, printer) -> str:  # type: ignore[no-untyped-def]
        return f"({printer._print(self.doit(deep=False))})"


class optimal_policy(sp.Function):  # noqa: N801 (sympy style)
    r"""$\pi^*(y) = \pi_{\mathrm{ref}}(y)\, e^{r(y)/\beta} / Z$ of arguments $(r(y), \pi_{\mathrm{ref}}(y), Z, \beta)$.

    Printed as $\pi^*(y)$ so that the statement reads like the paper; ``doit`` gives the
    definition (eq. 4), which is how steps using it are proved, evaluated and lambdified.
    """

    nargs = 4

    def doit(self, deep: bool = True, **hints: object) -> sp.Expr:
        args = [a.doit(deep=deep, **hints) for a in self.args] if deep else list(self.args)
        reward_, reference_, partition_, temperature = args
        return reference_ * sp.exp(reward_ / temperature) / partition_

    def _eval_is_extended_positive(self) -> bool | None:
        _, reference_, partition_, temperature = self.args
        if reference_.is_positive and partition_.is_positive and temperature.is_positive:
            return True
        return None

    def _eval_is_extended_real(self) -> bool | None:
        return self._eval_is_extended_positive()

    def _latex(self, printer, exp=None) -> str:  # type: ignore[no-untyped-def]
        label = str(self.args[0]).partition("_")[2] or "y"
        out = rf"\pi^*(y_{{{label}}})"
        return out if exp is None else rf"{out}^{{{exp}}}"

    def _numpycode(self, printer) -> str:  # type: ignore[no-untyped-def]
        return f"({printer._print(self.doit(deep=False))})"


star_w, star_l = optimal_policy(r_w, ref_w, Z, beta), optimal_policy(r_l, ref_l, Z, beta)


def implicit(star: sp.Expr, ref: sp.Symbol) -> sp.Expr:
    r"""$\beta\log\frac{\pi^*(y)}{\pi_{\mathrm{ref}}(y)} + \beta\log Z$, kept as a sum of two terms."""
    return sp.Add(beta * sp.log(star / ref), beta * sp.log(Z), evaluate=False)


implicit_reward_rhs = beta * sp.log(star_w / ref_w) + beta * sp.log(Z)
implicit_reward = Derivation(
    "implicit-reward",
    (
        Step(r_w, "the reward of a response y"),
        Step(beta * sp.log(sp.exp(r_w / beta), evaluate=False), "log e^x = x (x real)"),
        Step(beta * sp.log(Z * star_w / ref_w), "e^(r/beta) = Z pi*(y) / pi_ref(y) (eq. 4)"),
        Step(implicit_reward_rhs, "log of a product of positive factors (eq. 5)"),
    ),
    statement=r"r(y) = \beta\log\frac{\pi^*(y)}{\pi_{\mathrm{ref}}(y)} + \beta\log Z",
)

preference_rhs = sigmoid(beta * sp.log(star_w / ref_w) - beta * sp.log(star_l / ref_l))
preference = Derivation(
    "bradley-terry",
    (
        Step(sigmoid(r_w - r_l), "Bradley-Terry: P(y_w > y_l) = sigma(r(y_w) - r(y_l))"),
        Step(
            sigmoid(
                sp.Add(
                    implicit(star_w, ref_w),
                    sp.Mul(-1, implicit(star_l, ref_l), evaluate=False),
                    evaluate=False,
                )
            ),
            "substitute the implicit reward of each response ('implicit-reward')",
        ),
        Step(preference_rhs, "beta log Z cancels: it depends on the prompt only (eq. 6)"),
    ),
    statement=(
        r"\sigma(r_w - r_l) = \sigma\big(\beta\log\tfrac{\pi^*(y_w)}{\pi_{\mathrm{ref}}(y_w)}"
        r" - \beta\log\tfrac{\pi^*(y_l)}{\pi_{\mathrm{ref}}(y_l)}\big)"
    ),
)

logp_w, logp_l = sp.symbols("ell_w ell_l", real=True)  # log pi(y_w), log pi(y_l)
logref_w, logref_l = sp.symbols("ell_ref_w ell_ref_l", real=True)
margin = beta * ((logp_w - logref_w) - (logp_l - logref_l))  # u
dpo_loss = -sp.log(sigmoid(margin))
dpo_gradient_lhs = sp.Matrix([sp.Derivative(dpo_loss, logp_w), sp.Derivative(dpo_loss, logp_l)])
dpo_gradient_rhs = sp.Matrix([-beta * sigmoid(-margin), beta * sigmoid(-margin)])

dpo_gradient = Derivation(
    "dpo-gradient",
    (
        Step(
            dpo_gradient_lhs,
            "gradient of the DPO loss -log sigma(u) in the policy's log-probabilities (eq. 7)",
        ),
        Step(
            sp.Matrix([-beta, beta]) * sp.exp(-margin) / (1 + sp.exp(-margin)),
            "d/du -log sigma(u) = -sigma'(u)/sigma(u) = -e^(-u)/(1 + e^(-u)); du/d ell_w = beta, "
            "du/d ell_l = -beta",
        ),
        Step(dpo_gradient_rhs, "e^(-u) / (1 + e^(-u)) = sigma(-u)"),
    ),
    statement=(
        r"\frac{\partial\mathcal L}{\partial\log\pi(y_w)} = -\beta\sigma(-u),\quad"
        r"\frac{\partial\mathcal L}{\partial\log\pi(y_l)} = \beta\sigma(-u)"
    ),
)


# ============================================================================ exact legs
# ----------------------------------------------------------------------------- the optimum
@st.composite
def _bandit(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """(pi, pi_ref, r, beta) over 1-6 responses, pi and pi_ref > 0; now and then pi = pi*."""
    size = draw(st.integers(1, 6))
    ref = draw(probability_vectors(size, allow_zeros=False))
    rewards = draw(logits(size, max_abs=5.0))
    temperature = draw(st.floats(0.05, 5.0))
    if draw(st.booleans()):
        policy = gibbs_policy(ref, rewards, temperature)  # the optimum: KL(pi || pi*) = 0
        if np.all(policy > 0):
            return policy, ref, rewards, temperature
    return draw(probability_vectors(size, allow_zeros=False)), ref, rewards, temperature


bandits = _bandit()


def _kl(first: np.ndarray, second: np.ndarray) -> float:
    """KL(first || second) = sum rel_entr (scipy: 0 log 0 = 0)."""
    return float(rel_entr(first, second).sum())


def gibbs_policy(ref: np.ndarray, rewards: np.ndarray, temperature: float) -> np.ndarray:
    r"""$\pi^* \propto \pi_{\mathrm{ref}} e^{r/\beta}$, normalised in log space."""
    logits_ = np.log(ref) + rewards / temperature
    return np.exp(logits_ - logsumexp(logits_))  # type: ignore[no-any-return]


def objective_by_enumeration(example) -> float:  # type: ignore[no-untyped-def]
    """E_pi[r] - beta KL(pi || pi_ref), summed over responses (KL by scipy's rel_entr)."""
    policy, ref, rewards, temperature = example
    return float(policy @ rewards - temperature * _kl(policy, ref))


GIBBS_SYMBOLS = (w, pi_ref_, reward, beta, n)


def _gibbs_arguments(example):  # type: ignore[no-untyped-def]
    policy, ref, rewards, temperature = example
    return policy, ref, rewards, temperature, ref.size


_value = lazy_lambdify([pi_ref_, reward, beta, n], optimum.conclusion)  # beta log Z


def _objective_error_scale(example) -> float:  # type: ignore[no-untyped-def]
    # E[r] and beta KL (terms of size max|r| + beta max|log pi/pi_ref|) cancel to the result,
    # which may be near 0: the attainable accuracy is relative to those terms.
    policy, ref, rewards, temperature = example
    logs = np.abs(np.log(policy / ref)).max()
    return float(np.abs(rewards).max() + temperature * (logs + np.abs(np.log(ref)).max()) + 1)


def _partition(example) -> float:  # type: ignore[no-untyped-def]
    _, ref, rewards, temperature = example
    return float(ref @ np.exp(rewards / temperature))


def _gibbs_conclusion(star: sp.Expr, value: sp.Expr | None = None) -> sp.Expr:
    """A wrong 'objective-identity' conclusion: value - beta KL(pi || star) (value: beta log Z)."""
    value = beta * sp.log(partition) if value is None else value
    return value - beta * total(pi * sp.log(pi / star))


def _lambdified_gibbs(conclusion: sp.Expr):  # type: ignore[no-untyped-def]
    """An explicit exact variant: ``conclusion`` lambdified like the leg's rhs."""
    function = lambdify(GIBBS_SYMBOLS, conclusion)
    return lambda example: function(*_gibbs_arguments(example))


# ----------------------------------------------------------------------------- DPO
@st.composite
def _preferences(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """(pi_ref, r, beta, log pi(y_w), log pi(y_l), log pi_ref(y_w), log pi_ref(y_l)); y_w = 0, y_l = 1."""
    size = draw(st.integers(2, 6))
    ref = draw(probability_vectors(size, allow_zeros=False, min_probability=1e-6))
    rewards = draw(logits(size, max_abs=5.0))
    temperature = draw(st.floats(0.05, 5.0))
    log_probs = draw(logits(4, max_abs=20.0))
    return ref, rewards, temperature, log_probs


preferences = _preferences()
REWARD_SYMBOLS = (r_w, beta, ref_w, Z)
GRADIENT_SYMBOLS = (logp_w, logp_l, logref_w, logref_l, beta)
_preference_rhs = lazy_lambdify([r_w, r_l, beta, ref_w, ref_l, Z], preference.conclusion)
_gradient_rhs = lazy_lambdify(list(GRADIENT_SYMBOLS), dpo_gradient.conclusion)


def _reward_arguments(example):  # type: ignore[no-untyped-def]
    """Every response at once: (r, beta, pi_ref, Z), Z = sum_y pi_ref(y) e^(r(y)/beta)."""
    ref, rewards, temperature, _ = example
    return rewards, temperature, ref, _partition((None, ref, rewards, temperature))


def _gradient_arguments(example):  # type: ignore[no-untyped-def]
    ref, rewards, temperature, log_probs = example
    return (*log_probs, temperature)


def _dpo_loss(log_probs: np.ndarray, temperature: float) -> complex:
    """-log sigma(u) in a form valid for complex arguments: log(1 + e^(-u))."""
    w_, l_, rw, rl = log_probs
    margin_value = temperature * ((w_ - rw) - (l_ - rl))
    return np.log1p(np.exp(-margin_value)) if margin_value.real > -30 else -margin_value  # type: ignore[no-any-return]


def gradient_by_complex_step(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    r"""$[\partial\mathcal L/\partial\log\pi(y_w), \partial\mathcal L/\partial\log\pi(y_l)]$ as a column,
    by complex-step differentiation of the loss (no subtraction; exact to rounding)."""
    _, _, temperature, log_probs = example
    gradient = complex_step_gradient(lambda z: _dpo_loss(z, temperature), log_probs)
    return gradient[:2].reshape(2, 1)


def _reward_error_scale(example) -> float:  # type: ignore[no-untyped-def]
    # beta log(pi*/pi_ref) + beta log Z re-assembles r from logs of size |r|/beta + |log Z|
    # (times beta): the attainable accuracy is relative to those terms.
    ref, rewards, temperature, _ = example
    log_z = abs(float(np.log(_partition((None, ref, rewards, temperature)))))
    return float(np.abs(rewards).max() + temperature * (log_z + np.abs(np.log(ref)).max()) + 1)


# ============================================================================ Monte-Carlo legs
# Each leg draws MC_EXAMPLES examples from a strategy whose filter keeps only examples in which
# every component of the correct estimator varies (per-sample sd >= MIN_SD, so none is constant
# up to rounding: see the zero-SE caveat in rlmath.statistics) and every mutant's Monte-Carlo
# variant is detected with power >= 0.99 at the leg's sample size (rlmath.claims.detectable,
# exact means and sds by enumeration, rlmath.claims.exact_moments).
MC_EXAMPLES = 2
MIN_EFFECT = 0.05
MIN_SD = 1e-2
MC_FALSE_ALARM = DEFAULT_FALSE_ALARM / MC_EXAMPLES


def _mc_samples(n_components: int) -> int:
    """sample_size(MIN_EFFECT, 1) at the leg's per-example false alarm, for ``n_components``."""
    return sample_size(MIN_EFFECT, 1.0, false_alarm=MC_FALSE_ALARM, n_components=n_components)


def _separated(moments, reference, variants, n_samples: int) -> bool:  # type: ignore[no-untyped-def]
    """Every correct component varies, and every variant's shift is detectable."""
    if not np.all(moments()[1] >= MIN_SD):
        return False
    for variant in variants:
        mean, sd = moments(**variant)
        if not detectable(mean - reference, sd, n_samples, false_alarm=MC_FALSE_ALARM):
            return False
    return True


# ----------------------------------------------------------------------------- the optimum
# For a generic pi (full support), the identity objective(pi) = beta log Z - beta KL(pi || pi*)
# is checked by sampling its right-hand side: y ~ pi, per-sample term beta log Z - beta log(pi(y)
# / pi*(y)) (k1 for the KL, pi* and Z built by the claim's formulas, beta log Z lambdified from
# 'optimum'), against E_pi[r] - beta KL(pi || pi_ref) by enumeration. The mutants' variants put
# their pi*, value or KL direction in the same estimator. At pi = pi* the per-sample term is the
# constant beta log Z, so the value at the optimum is a zero-variance check: the exact leg
# covers it.
def _true_star(ref, rewards, temperature):  # type: ignore[no-untyped-def]
    return gibbs_policy(ref, rewards, temperature)


def _sign_flipped_star(ref, rewards, temperature):  # type: ignore[no-untyped-def]
    """pi_ref e^(-r/beta) / Z: the mutant's pi*, with the true Z (as its conclusion)."""
    return ref * np.exp(-rewards / temperature) / (ref @ np.exp(rewards / temperature))


def _beta_inverted_star(ref, rewards, temperature):  # type: ignore[no-untyped-def]
    """pi_ref e^(beta r) / Z, with the true Z (as the mutant's conclusion)."""
    return ref * np.exp(temperature * rewards) / (ref @ np.exp(rewards / temperature))


def _unnormalised_star(ref, rewards, temperature):  # type: ignore[no-untyped-def]
    """pi_ref e^(r/beta): the mutant's pi* without the normaliser 1/Z."""
    return ref * np.exp(rewards / temperature)


def _objective_rhs_terms(
    example, outcomes, star=_true_star, value=None, reverse=False
) -> np.ndarray:  # type: ignore[no-untyped-def]
    """value - beta (per-sample KL term) at ``outcomes`` y ~ pi (a mutant passes its variant).

    The KL term is log(pi(y)/pi*(y)) (k1 for KL(pi || pi*)), or with ``reverse`` the
    importance-weighted (pi*/pi) log(pi*/pi) (for KL(pi* || pi)).
    """
    policy, ref, rewards, temperature = example
    if value is None:
        value = _value(ref, rewards, temperature, ref.size)
    ratio = policy[outcomes] / star(ref, rewards, temperature)[outcomes]
    kl_term = -np.log(ratio) / ratio if reverse else np.log(ratio)
    return value - temperature * kl_term  # type: ignore[no-any-return]


def _objective_sampler(**variant):  # type: ignore[no-untyped-def]
    def sample(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        """y ~ pi: the identity's right-hand side, one term per sample, ``[count]``."""
        policy = example[0]
        mutant = {k: f(example) if k == "value" else f for k, f in variant.items()}
        return _objective_rhs_terms(
            example, rng.choice(policy.size, size=count, p=policy), **mutant
        )

    return sample


OBJECTIVE_VARIANTS = {
    "reward-sign-flipped": {"star": _sign_flipped_star},
    "beta-inverted": {"star": _beta_inverted_star},
    "normaliser-dropped": {"star": _unnormalised_star},
    "value-beta-Z": {"value": lambda ex: ex[3] * _partition(ex)},
    "value-without-beta": {"value": lambda ex: np.log(_partition(ex))},
    "kl-reversed": {"reverse": True},
}
# 1 component: sample_size(0.05, 1) at false alarm 5e-7 = 21,625 responses.
OBJECTIVE_SAMPLES = _mc_samples(1)


def _objective_moments(example, **variant):  # type: ignore[no-untyped-def]
    policy = example[0]
    mutant = {k: f(example) if k == "value" else f for k, f in variant.items()}
    terms = _objective_rhs_terms(example, np.arange(policy.size), **mutant)
    return exact_moments(policy, terms)


def _objective_separated(example) -> bool:  # type: ignore[no-untyped-def]
    return _separated(
        lambda **v: _objective_moments(example, **v),
        objective_by_enumeration(example),
        OBJECTIVE_VARIANTS.values(),
        OBJECTIVE_SAMPLES,
    )


@st.composite
def _generic_bandit(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """(pi, pi_ref, r, beta) with 2-5 responses, pi and pi_ref >= 0.05 (log-ratios bounded)."""
    size = draw(st.integers(2, 5))
    policy = draw(probability_vectors(size, allow_zeros=False, min_probability=0.05))
    ref = draw(probability_vectors(size, allow_zeros=False, min_probability=0.05))
    rewards = draw(logits(size, max_abs=3.0))
    return policy, ref, rewards, draw(st.floats(0.2, 3.0))


objective_mc_examples = _generic_bandit().filter(_objective_separated)


# ----------------------------------------------------------------------------- DPO
# Per sample, on one prompt with responses y_0, y_1:
# 0. Bradley-Terry as a random-utility model: y_0 is preferred when r_0 + G_0 > r_1 + G_1 with
#    G_0, G_1 standard Gumbel (their difference is logistic), so the indicator's mean is
#    sigma(r_0 - r_1); reference: the lambdified 'bradley-terry' conclusion, sigma of the beta
#    log-ratio margin of pi* (Z cancelled). A mutant's variant tests the indicator against its
#    own conclusion c': the terms are moved by (reference - c'), so they are accepted exactly
#    when the indicator's mean is c'.
# 1. The implicit reward beta log(pi*(y)/pi_ref(y)) + beta log Z of a response y ~ pi*, with pi*
#    computed numerically (log-space softmax) and Z by enumeration; its mean must be E_{pi*}[r].
# 2. (claim dpo-loss-gradient) The DPO gradient with respect to log pi(y_0) under the sampled
#    preference: the lambdified 'dpo-gradient' with (y_w, y_l) = (y_0, y_1) or (y_1, y_0);
#    reference: the complex-step derivative of the expected loss p L(u_01) + (1 - p) L(-u_01),
#    p = sigma(r_0 - r_1), the population DPO gradient at the policy log pi.
def _gumbel(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return -np.log(-np.log(rng.random(shape)))


def _dpo_terms(
    example,
    first_preferred,
    responses,
    *,
    implicit_reward=True,
    log_ratio_sign=1.0,
    preference=None,
    gradient=None,
):  # type: ignore[no-untyped-def]
    """``[N, 3]`` per-sample terms for preference indicators and responses y ~ pi* (see above)."""
    ref, rewards, temperature, log_probs = example
    gradient = gradient or _gradient_rhs
    star = gibbs_policy(ref, rewards, temperature)
    log_z = np.log(_partition((None, ref, rewards, temperature)))
    reward = log_ratio_sign * temperature * np.log(star[responses] / ref[responses])
    if implicit_reward:
        reward = reward + temperature * log_z
    indicator = first_preferred.astype(np.float64)
    if preference is not None:  # test the indicator against the mutant's conclusion
        indicator = indicator + (_bradley_terry(example) - preference(example))
    w_, l_, ref_w_, ref_l_ = log_probs
    as_winner = np.ravel(gradient(w_, l_, ref_w_, ref_l_, temperature))[0]  # dL / d log pi(y_w)
    as_loser = np.ravel(gradient(l_, w_, ref_l_, ref_w_, temperature))[1]  # dL / d log pi(y_l)
    grad = np.where(first_preferred, as_winner, as_loser)
    return np.stack([indicator, reward, grad], axis=-1)


def _bradley_terry(example, conclusion=None) -> float:  # type: ignore[no-untyped-def]
    """The lambdified 'bradley-terry' conclusion (or a mutant's) for (y_w, y_l) = (y_0, y_1)."""
    ref, rewards, temperature, _ = example
    function = _preference_rhs if conclusion is None else conclusion
    z_value = _partition((None, ref, rewards, temperature))
    return float(function(rewards[0], rewards[1], temperature, ref[0], ref[1], z_value))


def _dpo_sampler(columns: slice, **variant):  # type: ignore[no-untyped-def]
    def sample(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        ref, rewards, temperature, _ = example
        noise = _gumbel(rng, (count, 2))
        first_preferred = rewards[0] + noise[:, 0] > rewards[1] + noise[:, 1]
        star = gibbs_policy(ref, rewards, temperature)
        responses = rng.choice(ref.size, size=count, p=star)
        return _dpo_terms(example, first_preferred, responses, **variant)[:, columns]

    return sample


def _expected_dpo_loss(log_probs: np.ndarray, temperature: float, preferred: float) -> complex:
    """p L(y_0 over y_1) + (1 - p) L(y_1 over y_0), p = ``preferred`` (complex-safe)."""
    w_, l_, ref_w_, ref_l_ = log_probs
    swapped = np.array([l_, w_, ref_l_, ref_w_])
    return preferred * _dpo_loss(log_probs, temperature) + (1 - preferred) * _dpo_loss(
        swapped, temperature
    )


def dpo_reference(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    """[lambdified BT probability, E_{pi*}[r], complex-step population gradient in log pi(y_0)]."""
    ref, rewards, temperature, log_probs = example
    preferred = float(expit(rewards[0] - rewards[1]))
    grad = complex_step_gradient(
        lambda z: _expected_dpo_loss(z, temperature, preferred), log_probs
    )[0]
    return np.array(
        [_bradley_terry(example), gibbs_policy(ref, rewards, temperature) @ rewards, grad]
    )


REWARD_COLUMNS, GRADIENT_COLUMNS = slice(0, 2), slice(2, 3)
_beta_dropped = sigmoid(sp.log(star_w / ref_w) - sp.log(star_l / ref_l))
_gradient_sign_flipped = -dpo_gradient_rhs
_sigma_of_u = sp.Matrix([-beta * sigmoid(margin), beta * sigmoid(margin)])
REWARD_VARIANTS = {
    "log-Z-dropped": {"implicit_reward": False},
    "log-ratio-inverted": {"log_ratio_sign": -1.0},
    "beta-dropped": {
        "preference": lambda ex: _bradley_terry(
            ex, lambdify([r_w, r_l, beta, ref_w, ref_l, Z], _beta_dropped)
        )
    },
}
GRADIENT_VARIANTS = {
    "gradient-sign-flipped": {"gradient": lambdify(list(GRADIENT_SYMBOLS), _gradient_sign_flipped)},
    "sigma-of-u": {"gradient": lambdify(list(GRADIENT_SYMBOLS), _sigma_of_u)},
}


def _dpo_moments(example, **variant):  # type: ignore[no-untyped-def]
    """Exact means and sds: the preference over its two outcomes, y over pi*."""
    ref, rewards, temperature, _ = example
    preferred = float(expit(rewards[0] - rewards[1]))
    pair = _dpo_terms(example, np.array([True, False]), np.zeros(2, dtype=int), **variant)
    responses = _dpo_terms(example, np.zeros(ref.size, dtype=bool), np.arange(ref.size), **variant)
    mean_pair, sd_pair = exact_moments(np.array([preferred, 1 - preferred]), pair)
    mean_y, sd_y = exact_moments(gibbs_policy(ref, rewards, temperature), responses)
    return (
        np.array([mean_pair[0], mean_y[1], mean_pair[2]]),
        np.array([sd_pair[0], sd_y[1], sd_pair[2]]),
    )


def _dpo_separated(columns: slice, variants, n_samples: int):  # type: ignore[no-untyped-def]
    def keep(example) -> bool:  # type: ignore[no-untyped-def]
        def moments(**variant):  # type: ignore[no-untyped-def]
            mean, sd = _dpo_moments(example, **variant)
            return mean[columns], sd[columns]

        return _separated(moments, dpo_reference(example)[columns], variants, n_samples)

    return keep


@st.composite
def _moderate_preferences(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """Like ``preferences`` with moderate sizes: every probability and sigma(+-u) away from 0.

    pi*(y) = ref(y) e^{r(y)/beta} / Z >= min ref * e^{-(max r - min r)/beta}, so beta is raised
    to at least (max r - min r) / log 5 when the drawn one is smaller: every pi*(y) >= 0.05 / 5
    = 0.01, so each response is drawn about 200 times or more in the Monte-Carlo leg's samples.
    (With beta = 0.2 and a reward gap of 6, pi* put 1 - 3e-4 on one response: a sample that
    never met the others had standard error 3e-14 and z = 2e10, seed 54.)
    """
    size = draw(st.integers(2, 5))
    ref = draw(probability_vectors(size, allow_zeros=False, min_probability=0.05))
    rewards = draw(logits(size, max_abs=3.0))
    spread = float(np.max(rewards) - np.min(rewards))
    temperature = max(draw(st.floats(0.2, 2.0)), spread / np.log(5.0))
    return ref, rewards, temperature, draw(logits(4, max_abs=2.0))


# 2 and 1 components: sample_size(0.05, 1) at false alarm 5e-7 over 2 (1) components.
REWARD_SAMPLES, GRADIENT_SAMPLES = _mc_samples(2), _mc_samples(1)
reward_mc_examples = _moderate_preferences().filter(
    _dpo_separated(REWARD_COLUMNS, REWARD_VARIANTS.values(), REWARD_SAMPLES)
)
gradient_mc_examples = _moderate_preferences().filter(
    _dpo_separated(GRADIENT_COLUMNS, GRADIENT_VARIANTS.values(), GRADIENT_SAMPLES)
)

_DPO_SYMBOL_NAMES = {
    r_w: r"r(y_w)",
    ref_w: r"\pi_{\mathrm{ref}}(y_w)",
    ref_l: r"\pi_{\mathrm{ref}}(y_l)",
    logp_w: r"\log\pi(y_w)",
    logp_l: r"\log\pi(y_l)",
    logref_w: r"\log\pi_{\mathrm{ref}}(y_w)",
    logref_l: r"\log\pi_{\mathrm{ref}}(y_l)",
}


CLAIMS = (
    Claim(
        id="kl-regularized-optimal-policy",
        title="The KL-regularised optimal policy is the Gibbs policy, with value beta log Z",
        summary=(
            "The policy that maximises reward minus beta KL(pi || pi_ref) is pi_ref "
            "reweighted by exp(r / beta), and it is the only maximiser; its value is beta log"
            " Z."
        ),
        statement=Statement(
            lhs=objective,
            rhs=optimum.conclusion,
            relation="<=",
            derivation="optimum",
            where=(
                r"\pi_i = w_i / \textstyle\sum_j w_j \text{ any policy with full support},\ "
                r"\beta > 0,\ \pi_{\mathrm{ref}} > 0;\ \text{equality at } \pi^* = "
                r"\pi_{\mathrm{ref}} e^{r/\beta} / Z"
            ),
            symbol_names={w: "w", n: "n"},
        ),
        assumptions=(
            "Finitely many responses (general n), one prompt; beta > 0; pi_ref > 0.",
            "The derivations take pi > 0 (written w / sum w); responses with pi(y) = 0 add 0 "
            "to both sides (0 log 0 = 0); the exact leg's examples have full support.",
            "The inequality step uses Gibbs' inequality; its gap is sympy-proved "
            "non-negative through the lemma of kl-nonnegative (function log_bound_gap).",
            "Equality at pi = pi* (derivation value-at-optimum): the optimum is attained. "
            "Uniqueness (derivation uniqueness): J(pi*) - J(pi) = beta KL(pi || pi*) >= "
            "(beta/2) sum_i pi_i (pi_i - pi*_i)^2 / (pi_i + pi*_i)^2, by the lemma "
            "strict-log-bound x - 1 - log x >= (x-1)^2 / (2 (1+x)^2) (sympy-proved "
            "non-negative gap, function strict_log_bound_gap); the bound is a sum of "
            "non-negative terms that vanishes only at pi = pi* (pi > 0), so every other pi "
            "has a strictly smaller objective. The last implication (a sum of non-negative "
            "terms is 0 only if each is) is read off, not sympy-proved.",
        ),
        references=(
            "Rafailov, R. et al., *Direct Preference Optimization*, NeurIPS 2023, eq. (4).",
            "Ziegler, D. M. et al., *Fine-Tuning Language Models from Human Preferences*, "
            "2019, Sec. 2.",
            "Donsker, M. D. and Varadhan, S. R. S., *Asymptotic evaluation of certain Markov "
            "process expectations for large time*, Comm. Pure Appl. Math. 28, 1975.",
        ),
        symbolic=SymbolicLeg(
            (objective_identity, optimum, value_at_optimum, strict_log_bound, uniqueness)
        ),
        exact=ExactLeg(
            bandits,
            lhs=objective_by_enumeration,
            rtol=lambda ex: exact_rtol(1.0, 4 * ex[1].size),
            symbols=GIBBS_SYMBOLS,
            arguments=_gibbs_arguments,
            derivation="objective-identity",
            error_scale=_objective_error_scale,
            description=(
                "E_pi[r] - beta KL(pi || pi_ref) by enumeration (scipy rel_entr) at a generated "
                "pi, or at pi* (log-space softmax), vs the lambdified beta log Z - beta "
                "KL(pi || pi*) (which is beta log Z at pi*)"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            objective_mc_examples,
            _objective_sampler(),
            objective_by_enumeration,
            n_samples=OBJECTIVE_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "the identity's right-hand side sampled at y ~ pi, beta log Z - beta log(pi(y)/"
                "pi*(y)) (k1 for KL(pi || pi*)), vs E_pi[r] - beta KL(pi || pi_ref) by enumeration"
            ),
        ),
        mutants=(
            Mutant(
                "reward-sign-flipped",
                "pi* proportional to pi_ref e^(-r/beta)",
                symbolic=SymbolicMutation(
                    "objective-identity",
                    _gibbs_conclusion(pi_ref * sp.exp(-reward[i] / beta) / partition),
                ),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["reward-sign-flipped"]),
            ),
            Mutant(
                "beta-inverted",
                "pi* proportional to pi_ref e^(beta r)",
                symbolic=SymbolicMutation(
                    "objective-identity",
                    _gibbs_conclusion(pi_ref * sp.exp(beta * reward[i]) / partition),
                ),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["beta-inverted"]),
            ),
            Mutant(
                "normaliser-dropped",
                "pi* taken as pi_ref e^(r/beta), the normaliser 1/Z forgotten (the objective "
                "then reads beta log Z too high)",
                symbolic=SymbolicMutation(
                    "objective-identity",
                    _gibbs_conclusion(pi_ref * sp.exp(reward[i] / beta)),
                ),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["normaliser-dropped"]),
            ),
            Mutant(
                "value-beta-Z",
                "optimal value beta Z instead of beta log Z",
                symbolic=SymbolicMutation(
                    "objective-identity", _gibbs_conclusion(pi_star, beta * partition)
                ),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["value-beta-Z"]),
            ),
            Mutant(
                "value-without-beta",
                "optimal value log Z, the temperature forgotten",
                symbolic=SymbolicMutation(
                    "objective-identity", _gibbs_conclusion(pi_star, sp.log(partition))
                ),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["value-without-beta"]),
            ),
            Mutant(
                "kl-reversed",
                "beta log Z - beta KL(pi* || pi): the KL to the optimum in the wrong direction "
                "(no symbolic variant: with one response, which random points draw with "
                "probability 1/3 per trial, pi = pi* = 1 and it coincides with the claim)",
                exact=_lambdified_gibbs(
                    beta * sp.log(partition) - beta * total(pi_star * sp.log(pi_star / pi))
                ),
                monte_carlo=_objective_sampler(**OBJECTIVE_VARIANTS["kl-reversed"]),
            ),
        ),
        notes=(
            "The statement is tied to the derivation 'optimum' (the objective of any pi is at "
            "most beta log Z); the exact leg checks the identity it rests on, "
            "objective(pi) = beta log Z - beta KL(pi || pi*), at generic pi and at pi* (where "
            "it is the value beta log Z). The Monte-Carlo leg samples the identity's "
            "right-hand side at a generic pi (beta log Z - beta log(pi(y)/pi*(y)), y ~ pi) and "
            "compares it with the objective by enumeration; each mutant's variant puts its pi*, "
            "value or KL direction in that estimator. At pi = pi* the per-sample objective "
            "r(y) - beta log(pi*(y)/pi_ref(y)) is the constant beta log Z, so sampling there "
            "tests nothing a single evaluation does not."
        ),
    ),
    Claim(
        id="dpo-implicit-reward",
        title="DPO: the implicit reward, and the cancellation of Z in the preference",
        summary=(
            "DPO can train on preferences without a reward model because the implicit reward "
            "beta log(pi / pi_ref) differs from the true one only by a per-prompt constant, "
            "which cancels in the Bradley-Terry preference."
        ),
        statement=Statement(
            lhs=r_w,
            rhs=implicit_reward_rhs,
            derivation="implicit-reward",
            where=r"\pi^* = \pi_{\mathrm{ref}} e^{r/\beta} / Z,\ Z = \textstyle\sum_y \pi_{\mathrm{ref}}(y) e^{r(y)/\beta}",
            symbol_names=_DPO_SYMBOL_NAMES,
        ),
        assumptions=(
            "pi* is the optimum of kl-regularized-optimal-policy for one prompt x; Z = Z(x) "
            "does not depend on the response.",
            "Derivation bradley-terry: substituting the implicit reward into the Bradley-Terry "
            "probability sigma(r_w - r_l), beta log Z cancels (eq. 6).",
        ),
        references=(
            "Rafailov, R. et al., *Direct Preference Optimization: Your Language Model is "
            "Secretly a Reward Model*, NeurIPS 2023, eq. (5) and (6).",
            "Bradley, R. A. and Terry, M. E., *Rank Analysis of Incomplete Block Designs*, "
            "Biometrika 39, 1952.",
        ),
        symbolic=SymbolicLeg((implicit_reward, preference)),
        exact=ExactLeg(
            preferences,
            lhs=lambda ex: ex[1],
            rtol=exact_rtol(1.0, 8),
            symbols=REWARD_SYMBOLS,
            arguments=_reward_arguments,
            error_scale=_reward_error_scale,
            description=(
                "the rewards r(y) of every response vs the lambdified beta log(pi*(y)/pi_ref(y))"
                " + beta log Z with Z = sum_y pi_ref e^(r/beta) by enumeration"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            reward_mc_examples,
            _dpo_sampler(REWARD_COLUMNS),
            lambda ex: dpo_reference(ex)[REWARD_COLUMNS],
            n_samples=REWARD_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "Gumbel-sampled Bradley-Terry preferences vs the lambdified sigma of the beta "
                "log-ratio margin (Z cancelled); the implicit reward at y ~ pi* (pi* by a "
                "log-space softmax) vs E_pi*[r] by enumeration"
            ),
        ),
        mutants=(
            Mutant(
                "log-Z-dropped",
                "r(y) = beta log(pi*(y)/pi_ref(y)): the prompt's beta log Z dropped",
                symbolic=SymbolicMutation("implicit-reward", beta * sp.log(star_w / ref_w)),
                monte_carlo=_dpo_sampler(REWARD_COLUMNS, **REWARD_VARIANTS["log-Z-dropped"]),
            ),
            Mutant(
                "log-ratio-inverted",
                "r(y) = beta log(pi_ref(y)/pi*(y)) + beta log Z: the ratio upside down",
                symbolic=SymbolicMutation(
                    "implicit-reward", beta * sp.log(ref_w / star_w) + beta * sp.log(Z)
                ),
                monte_carlo=_dpo_sampler(REWARD_COLUMNS, **REWARD_VARIANTS["log-ratio-inverted"]),
            ),
            Mutant(
                "beta-dropped",
                "P(y_w > y_l) = sigma(log pi*(y_w)/pi_ref(y_w) - log pi*(y_l)/pi_ref(y_l)): "
                "the temperature dropped from the margin",
                symbolic=SymbolicMutation("bradley-terry", _beta_dropped),
                monte_carlo=_dpo_sampler(REWARD_COLUMNS, **REWARD_VARIANTS["beta-dropped"]),
            ),
        ),
        notes=(
            "The log-Z mutant survives the preference probability (Z cancels there either "
            "way); the reward identity rejects it. The exact leg's Z is computed from pi_ref "
            "and r by enumeration. The Monte-Carlo leg samples preferences from Bradley-Terry "
            "as a random-utility model (Gumbel noise on the rewards, no sigma) and the implicit "
            "reward at responses of pi*, with pi* from a log-space softmax. The DPO loss "
            "gradient is claim dpo-loss-gradient."
        ),
    ),
    Claim(
        id="dpo-loss-gradient",
        title="DPO: the gradient of the loss in the policy's log-probabilities",
        summary=(
            "The DPO loss gradient raises the chosen response's log-probability and lowers "
            "the rejected one's, each weighted by beta times how wrongly the implicit reward "
            "currently ranks the pair."
        ),
        statement=Statement(
            lhs=dpo_gradient_lhs,
            rhs=dpo_gradient_rhs,
            derivation="dpo-gradient",
            where=r"\mathcal L_{\mathrm{DPO}} = -\log\sigma(u),\ \sigma(x) = 1/(1 + e^{-x})",
            symbol_names=_DPO_SYMBOL_NAMES,
        ),
        assumptions=(
            "L_DPO = -log sigma(u), u = beta (log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)); "
            "the gradient is with respect to the two log-probabilities.",
        ),
        references=(
            "Rafailov, R. et al., *Direct Preference Optimization: Your Language Model is "
            "Secretly a Reward Model*, NeurIPS 2023, eq. (7) and the gradient in Sec. 4.",
        ),
        symbolic=SymbolicLeg((dpo_gradient,)),
        exact=ExactLeg(
            preferences,
            lhs=gradient_by_complex_step,
            rtol=exact_rtol(1.0, 8),
            symbols=GRADIENT_SYMBOLS,
            arguments=_gradient_arguments,
            description=(
                "complex-step gradient of the DPO loss log(1 + e^(-u)) in (log pi(y_w), "
                "log pi(y_l)) vs the lambdified beta sigma(-u) (-1, 1)"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            gradient_mc_examples,
            _dpo_sampler(GRADIENT_COLUMNS),
            lambda ex: dpo_reference(ex)[GRADIENT_COLUMNS],
            n_samples=GRADIENT_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "the claimed DPO gradient in log pi(y_0) under Gumbel-sampled Bradley-Terry "
                "preferences vs the complex-step population gradient of the expected loss"
            ),
        ),
        mutants=(
            Mutant(
                "gradient-sign-flipped",
                "dL/d log pi(y_w) = +beta sigma(-u): the loss would push y_w down",
                symbolic=SymbolicMutation("dpo-gradient", _gradient_sign_flipped),
                monte_carlo=_dpo_sampler(
                    GRADIENT_COLUMNS, **GRADIENT_VARIANTS["gradient-sign-flipped"]
                ),
            ),
            Mutant(
                "sigma-of-u",
                "beta sigma(u) instead of beta sigma(-u): the weight of the well-ranked pairs",
                symbolic=SymbolicMutation("dpo-gradient", _sigma_of_u),
                monte_carlo=_dpo_sampler(GRADIENT_COLUMNS, **GRADIENT_VARIANTS["sigma-of-u"]),
            ),
        ),
        notes=(
            "The Monte-Carlo leg samples the claimed gradient under preferences drawn from "
            "Bradley-Terry as a random-utility model; its mean must be the gradient of the "
            "expected loss (the population DPO gradient)."
        ),
    ),
)
