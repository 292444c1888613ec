r"""The Kullback-Leibler divergence: non-negative, flat at the reference, curved like Fisher.

Main statements. For distributions $p, q$ on $n$ outcomes, and tabular softmax policies
$\pi_\theta(a) = e^{\theta_a} / \sum_b e^{\theta_b}$ with a reference $\pi' = \pi_{\theta'}$,

$$ \mathrm{KL}(p \,\|\, q) = \sum_i p_i \log\frac{p_i}{q_i} \ge 0 \qquad\text{(Gibbs)}, $$

$$ \nabla_\theta \mathrm{KL}(\pi_{\theta'} \,\|\, \pi_\theta) = \pi_\theta - \pi_{\theta'}, \qquad
   \frac{\partial \mathrm{KL}(\pi_\theta \,\|\, \pi_{\theta'})}{\partial\theta_k}
   = \pi_\theta(k)\Big(\log\frac{\pi_\theta(k)}{\pi_{\theta'}(k)} - \mathrm{KL}(\pi_\theta\,\|\,\pi_{\theta'})\Big), $$

both zero at $\theta = \theta'$; both Hessians at $\theta = \theta'$ equal the Fisher information
$F = \mathrm{diag}(\pi') - \pi'\,{\pi'}^\top$, so
$\mathrm{KL} = \tfrac12\, \delta^\top F \delta + O(|\delta|^3)$ for $\theta = \theta' + \delta$;
and for trajectories of length $H$ in an MDP,

$$ \mathrm{KL}\big(p_\theta(\tau) \,\|\, p_{\theta'}(\tau)\big)
   = \mathbb E_{\tau\sim p_\theta}\Big[\sum_{t=0}^{H-1}
     \mathrm{KL}\big(\pi_\theta(\cdot|s_t) \,\|\, \pi_{\theta'}(\cdot|s_t)\big)\Big]. $$

Conventions. $\mathrm{KL}(p\,\|\,q) = \sum_i p_i \log(p_i/q_i)$: the *first* argument is the
distribution the expectation is taken under; $0 \log 0 = 0$; natural logarithms. Gradients are
with respect to the logits $\theta$ of the second argument unless said otherwise (both
directions are treated). Time starts at $t = 0$.

Proof sketch. *Gibbs*: $\log x \le x - 1$ for $x > 0$ (the gap $x - 1 - \log x$ is a Taylor
remainder $\int_0^1 (x-1)^2 (1-s) / (1 + (x-1)s)^2\, ds$ with a non-negative integrand); weight it
by $p_i$ at $x = q_i/p_i$ and sum. *Gradient and Hessian*: a directional derivative
$\frac{d}{dt} \mathrm{KL}(\cdot)|_{t=0}$ along $\theta + t\delta$ for an arbitrary direction
$\delta$ is $\langle \nabla \mathrm{KL}, \delta \rangle$, and the second one is
$\delta^\top \nabla^2 \mathrm{KL}\, \delta$; with $\log \pi_\theta(a) = \theta_a - \log Z(\theta)$
both reduce to moments of $\delta$ under $\pi$ (a symmetric matrix is determined by its
quadratic form). *Chain rule*: $\log p_\theta(\tau)/p_{\theta'}(\tau)$ is a sum of per-step
log-ratios because $\rho_0$ and $P$ cancel; the expectation of step $t$'s log-ratio given $s_t$
is the per-state KL.

References. Kullback, S. and Leibler, R. A., "On Information and Sufficiency", *Ann. Math.
Statist.* 22, 1951. Cover, T. M. and Thomas, J. A., *Elements of Information Theory*, 2nd ed.,
2006, Thm. 2.6.3 (information inequality) and Thm. 2.5.3 (chain rule for relative entropy).
Schulman, J. et al., "Trust Region Policy Optimization", ICML 2015, Sec. 6 (the KL's Hessian
is the Fisher information). Amari, S., "Natural Gradient Works Efficiently in Learning",
*Neural Computation* 10, 1998 (Fisher metric as the KL's local quadratic form).
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp
from hypothesis import strategies as st
from scipy.special import rel_entr

from rlmath import TabularMDP, estimators, exact
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
    lazy_lambdify,
    monte_carlo_leg,
    row_steps,
)
from rlmath.estimators import kl_k1, kl_k3, kl_terms
from rlmath.named_functions import Named
from rlmath.policy import SoftmaxPolicy, log_softmax
from rlmath.sampling import rollouts, sample_actions
from rlmath.statistics import DEFAULT_FALSE_ALARM, sample_size
from rlmath.symbolic import LOG_BOUND_REMAINDER, IndexSum, log_bound_gap
from rlmath.testing import logits, mdps_and_policies, probability_vectors, tabular_mdps
from rlmath.tolerances import exact_rtol

# ============================================================================ Gibbs' inequality
# ----------------------------------------------------------------------------- lemma log x <= x - 1
x = sp.Symbol("x", positive=True)
y = sp.Symbol("y", positive=True)  # integration variable on [1, x]
s = sp.Symbol("s", nonnegative=True)  # integration variable on [0, 1]

#: The Taylor remainder of g(x) = x - 1 - log x about 1, as an integral over s in [0, 1]: the
#: very expression whose sign rlmath.symbolic.log_bound_gap consults (same symbols x, s).
remainder_integrand = LOG_BOUND_REMAINDER
assert remainder_integrand == (x - 1) ** 2 * (1 - s) / (1 + (x - 1) * s) ** 2


class g(log_bound_gap):  # type: ignore[misc]  # noqa: N801 (sympy style: printed as g)
    r"""$g(x) = x - 1 - \log x \ge 0$ (:class:`rlmath.symbolic.log_bound_gap`), printed $g$.

    ``_imp_`` is its NumPy implementation, which ``sympy.lambdify`` uses when a conclusion
    containing $g$ becomes the exact leg's right-hand side.
    """

    _imp_ = staticmethod(lambda value: value - 1 - np.log(value))


log_bound = Derivation(
    "log-bound",
    (
        Step(x - 1 - sp.log(x), "the gap g(x) = x - 1 - log x of the bound log x <= x - 1"),
        Step(
            sp.Integral(1 - 1 / y, (y, 1, x)),
            "fundamental theorem of calculus: g(1) = 0 and g'(y) = 1 - 1/y",
        ),
        Step(
            sp.Integral((x - y) / y**2, (y, 1, x)),
            "Taylor's theorem with integral remainder: g'(1) = 0 and g''(y) = 1/y^2",
        ),
        Step(sp.Integral(remainder_integrand, (s, 0, 1)), "substitute y = 1 + (x - 1) s"),
        Step(
            sp.Integer(0),
            "the integrand (x - 1)^2 (1 - s) / (1 + (x - 1) s)^2 is >= 0 for x > 0, s in [0, 1]",
            relation=">=",
            gap=g(x),
        ),
    ),
    statement=r"x - 1 - \log x \ge 0 \quad (x > 0)",
)

# ----------------------------------------------------------------------------- Gibbs
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
p = sp.IndexedBase("p", positive=True)  # the sampled side, on its support
q = sp.IndexedBase("q", positive=True)
u = sp.IndexedBase("u", positive=True)  # unnormalised weights: p = u / sum(u)
w = sp.IndexedBase("w", positive=True)  # unnormalised weights: q = w / sum(w)


def total(expression: sp.Expr) -> sp.Sum:
    """$\\sum_{i=0}^{n-1}$ expression."""
    return IndexSum(expression, (i, 0, n - 1))


def kl_sum(first: sp.IndexedBase, second: sp.IndexedBase) -> sp.Sum:
    r"""$\mathrm{KL}(\text{first} \,\|\, \text{second}) = \sum_i \text{first}_i \log(\text{first}_i / \text{second}_i)$."""
    return total(first[i] * sp.log(first[i] / second[i]))


def remainder_form(first: sp.IndexedBase, second: sp.IndexedBase) -> sp.Expr:
    r"""$\sum_i f_i\, g(s_i / f_i) + \sum_i f_i - \sum_i s_i$: KL(first || second) rewritten with $g$."""
    return total(first[i] * g(second[i] / first[i])) + total(first[i]) - total(second[i])


kl_pq = kl_sum(p, q)

# For positive vectors p, q (not necessarily normalised): KL(p || q) equals the sum of the
# non-negative gaps p_i g(q_i / p_i) plus sum p - sum q. This identity is what the exact leg
# evaluates (on the support of p, where it holds for the restricted, unnormalised vectors).
kl_remainder = Derivation(
    "kl-remainder",
    (
        Step(kl_pq, "definition of KL(p || q), p the sampled side, on the support of p"),
        Step(-total(p[i] * sp.log(q[i] / p[i])), "log(p/q) = -log(q/p)"),
        Step(
            total(p[i] * g(q[i] / p[i]) + p[i] - q[i]),
            "-log x = g(x) + 1 - x (the definition of g) at x = q_i / p_i, times p_i",
        ),
        Step(remainder_form(p, q), "linearity of the sum"),
    ),
    statement=r"\mathrm{KL}(p\,\|\,q) = \sum_i p_i\, g(q_i/p_i) + \sum_i p_i - \sum_i q_i",
)

# The inequality: drop the non-negative gaps (lemma 'log-bound').
gibbs = Derivation(
    "gibbs",
    (
        Step(kl_pq, "definition of KL(p || q), p the sampled side, on the support of p"),
        Step(
            total(p[i] * g(q[i] / p[i]) + p[i] - q[i]),
            "derivation 'kl-remainder' (before the sum is split)",
        ),
        Step(
            total(p[i] - q[i]),
            "g(x) >= 0 (lemma 'log-bound') at x = q_i / p_i, weighted by p_i > 0",
            relation=">=",
            gap=total(p[i] * g(q[i] / p[i])),
        ),
        Step(total(p[i]) - total(q[i]), "linearity of the sum"),
    ),
    statement=r"\mathrm{KL}(p\,\|\,q) \ge \sum_i p_i - \sum_i q_i \quad (p, q > 0)",
)

# Every positive probability vector is u / sum(u) for some positive u (take u = p itself).
normalised = Derivation(
    "normalised",
    (
        Step(
            total(u[i] / total(u[i])) - total(w[i] / total(w[i])),
            "the bound of 'gibbs' for probability vectors p = u / sum u, q = w / sum w",
        ),
        Step(sp.Integer(0), "sum_i u_i / sum_j u_j = 1"),
    ),
    statement=r"\sum_i p_i - \sum_i q_i = 1 - 1 = 0",
)

# ============================================================================ softmax geometry
j = sp.Symbol("j", integer=True)
h = sp.Symbol("h", real=True)  # step along the direction delta
theta = sp.IndexedBase("theta", real=True)  # logits of the moving policy
theta_ref = sp.IndexedBase("theta_ref", real=True)  # logits of the reference theta'
delta = sp.IndexedBase("delta", real=True)  # an arbitrary direction in logit space


def partition(logit: sp.Expr) -> sp.Sum:
    r"""$Z(\theta) = \sum_i e^{\theta_i}$, for ``logit = lambda i: theta[i]``-style bases."""
    return IndexSum(sp.exp(logit(i)), (i, 0, n - 1))


def softmax(logit, k: sp.Symbol) -> sp.Expr:  # type: ignore[no-untyped-def]
    r"""$\pi(k) = e^{\theta_k} / Z(\theta)$ for the logits ``logit(k)``."""
    return sp.exp(logit(k)) / partition(logit)


def moving(k: sp.Symbol) -> sp.Expr:
    """The logit theta_k + h delta_k of the moved policy."""
    return theta[k] + h * delta[k]


def pi(k: sp.Symbol) -> sp.Expr:
    return softmax(lambda m: theta[m], k)


def pi_ref(k: sp.Symbol) -> sp.Expr:
    return softmax(lambda m: theta_ref[m], k)


def pi_moved(k: sp.Symbol) -> sp.Expr:
    return softmax(moving, k)


def at_zero(expression: sp.Expr, order: int = 1) -> sp.Subs:
    r"""$\frac{d^{order}}{dh^{order}}$ expression at $h = 0$ (left unevaluated)."""
    return sp.Subs(sp.Derivative(expression, (h, order)), h, 0)


def mean(probability, term) -> sp.Sum:  # type: ignore[no-untyped-def]
    r"""$\sum_j \text{probability}(j)\, \text{term}(j)$ (inner sums use the index $j$)."""
    return IndexSum(probability(j) * term(j), (j, 0, n - 1))


mean_delta = mean(pi, lambda m: delta[m])  # E_pi[delta]
kl_reverse = mean(pi, lambda m: sp.log(pi(m) / pi_ref(m)))  # KL(pi_theta || pi_theta')


rows = row_steps  # rlmath.claims.row_steps: one step per row of a column derivation


def log_ratio(numerator: sp.Expr, denominator: sp.Expr) -> sp.Expr:
    """``log numerator - log denominator`` (written so, sympy would merge the two fractions)."""
    return sp.log(numerator) - sp.log(denominator)


def from_reference(k: sp.Symbol) -> sp.Expr:
    """The logit theta'_k + h delta_k: a step of size h from the reference along delta."""
    return theta_ref[k] + h * delta[k]


def pi_stepped(k: sp.Symbol) -> sp.Expr:
    return softmax(from_reference, k)


kl_forward_step = total(pi_ref(i) * log_ratio(pi_ref(i), pi_stepped(i)))  # KL(pi' || pi_theta)
kl_reverse_step = total(pi_stepped(i) * log_ratio(pi_stepped(i), pi_ref(i)))  # KL(pi_theta || pi')

# ----------------------------------------------------------------------------- gradients
# Row 1: KL(pi_theta' || pi_theta); row 2: KL(pi_theta || pi_theta'); each differentiated along
# an arbitrary direction delta, which gives <gradient, delta>.
kl_forward_moved = total(pi_ref(i) * log_ratio(pi_ref(i), pi_moved(i)))
kl_reverse_moved = total(pi_moved(i) * log_ratio(pi_moved(i), pi_ref(i)))
forward_gradient_form = total((pi(i) - pi_ref(i)) * delta[i])
reverse_gradient_form = total(pi(i) * (sp.log(pi(i) / pi_ref(i)) - kl_reverse) * delta[i])

gradients = Derivation(
    "gradients",
    rows(
        (
            (at_zero(kl_forward_moved), "directional derivative of KL(pi_theta' || pi_theta)"),
            (
                at_zero(sp.log(partition(moving)) - total(pi_ref(i) * moving(i))),
                "log pi_theta(i) = theta_i - log Z(theta) and sum pi' = 1; drop terms free of h",
            ),
            (
                total(delta[i] * sp.exp(theta[i])) / partition(lambda m: theta[m])
                - total(pi_ref(i) * delta[i]),
                "d/dh log Z(theta + h delta) = sum_i delta_i e^(theta_i + h delta_i) / Z, at h = 0",
            ),
            (
                forward_gradient_form,
                "collect the coefficient of delta_i: the gradient is pi_theta - pi_theta'",
            ),
        ),
        (
            (at_zero(kl_reverse_moved), "directional derivative of KL(pi_theta || pi_theta')"),
            (
                total(pi(i) * (delta[i] - mean_delta) * sp.log(pi(i) / pi_ref(i)))
                + total(pi(i) * (delta[i] - mean_delta)),
                "product rule, with d pi_i / dh = pi_i (delta_i - E_pi[delta]) at h = 0",
            ),
            (
                total(pi(i) * (delta[i] - mean_delta) * sp.log(pi(i) / pi_ref(i))),
                "E_pi[delta - E_pi delta] = 0: the expected score vanishes",
            ),
            (reverse_gradient_form, "collect the coefficient of delta_i"),
        ),
    ),
    statement=(
        r"\nabla_\theta \mathrm{KL}(\pi_{\theta'}\,\|\,\pi_\theta) = \pi_\theta - \pi_{\theta'},"
        r"\quad \partial_{\theta_k} \mathrm{KL}(\pi_\theta\,\|\,\pi_{\theta'})"
        r" = \pi_\theta(k)\big(\log\tfrac{\pi_\theta(k)}{\pi_{\theta'}(k)}"
        r" - \mathrm{KL}(\pi_\theta\,\|\,\pi_{\theta'})\big)"
    ),
)

# The claim: both directional derivatives at theta = theta' (the derivatives of 'gradients'
# with theta replaced by theta') vanish, whatever the direction delta.
reference_gradients = sp.Matrix([at_zero(kl_forward_step), at_zero(kl_reverse_step)])
gradients_at_reference = Derivation(
    "at-reference",
    (
        Step(
            reference_gradients,
            "the directional derivatives of both KLs at theta = theta' (derivation 'gradients')",
        ),
        Step(
            sp.zeros(2, 1),
            "at theta = theta': pi_theta - pi_theta' = 0, and log(pi'/pi') = 0 = KL(pi' || pi')",
        ),
    ),
    statement=(
        r"\nabla_\theta \mathrm{KL}(\pi_{\theta'}\,\|\,\pi_\theta)\big|_{\theta=\theta'} = 0"
        r" = \nabla_\theta \mathrm{KL}(\pi_\theta\,\|\,\pi_{\theta'})\big|_{\theta=\theta'}"
    ),
)

# ----------------------------------------------------------------------------- curvature


second_moment = total(pi_ref(i) * delta[i] ** 2)  # E_pi'[delta^2]
first_moment = total(pi_ref(i) * delta[i])  # E_pi'[delta]
#: delta^T (diag pi' - pi' pi'^T) delta, the Fisher quadratic form at the reference.
fisher_form = second_moment - first_moment**2
log_partition_step = sp.log(partition(from_reference))
mean_stepped = total(pi_stepped(i) * delta[i])  # m(h) = E_{pi_theta}[delta] = (log Z)'(h)

# Row 1: KL(pi' || pi_theta), row 2: KL(pi_theta || pi'), theta = theta' + h delta; the second
# derivative in h at 0 is delta^T (Hessian at theta') delta.
curvature = Derivation(
    "curvature",
    rows(
        (
            (
                at_zero(kl_forward_step, 2),
                "second directional derivative of KL(pi_theta' || pi_theta) at theta = theta' + h delta",
            ),
            (
                at_zero(log_partition_step - total(pi_ref(i) * from_reference(i)), 2),
                "log pi_theta(i) = theta_i - log Z(theta) and sum pi' = 1; drop terms free of h",
            ),
            (at_zero(log_partition_step, 2), "a linear function of h has second derivative 0"),
            (
                total(delta[i] ** 2 * sp.exp(theta_ref[i])) / partition(lambda m: theta_ref[m])
                - (total(delta[i] * sp.exp(theta_ref[i])) / partition(lambda m: theta_ref[m])) ** 2,
                "(log Z)'' = Z''/Z - (Z'/Z)^2 with Z^(k)(0) = sum_i delta_i^k e^(theta'_i)",
            ),
            (
                fisher_form,
                "e^(theta'_i) / Z(theta') = pi'_i: this is delta^T (diag pi' - pi' pi'^T) delta",
            ),
        ),
        (
            (
                at_zero(kl_reverse_step, 2),
                "second directional derivative of KL(pi_theta || pi_theta') at theta = theta' + h delta",
            ),
            (
                at_zero(h * mean_stepped - log_partition_step, 2),
                "log(pi_theta(i)/pi'(i)) = h delta_i - log(Z(theta)/Z(theta')), sum pi_theta = 1; "
                "drop the constant log Z(theta')",
            ),
            (
                2 * at_zero(mean_stepped, 1) - at_zero(log_partition_step, 2),
                "(h m(h))'' = 2 m'(h) + h m''(h), which is 2 m'(0) at h = 0",
            ),
            (
                fisher_form,
                "m = (log Z)', so m'(0) = (log Z)''(0) = delta^T F delta (row 1): 2 F - F = F",
            ),
        ),
    ),
    statement=(
        r"\delta^\top \nabla^2_\theta \mathrm{KL}(\pi_{\theta'}\,\|\,\pi_\theta)\big|_{\theta'} \delta"
        r" = \delta^\top \nabla^2_\theta \mathrm{KL}(\pi_\theta\,\|\,\pi_{\theta'})\big|_{\theta'} \delta"
        r" = \delta^\top F \delta"
    ),
)

fisher = Derivation(
    "fisher",
    (
        Step(
            total(pi_ref(i) * (delta[i] - first_moment) ** 2),
            "Fisher information E_{a~pi'}[(score . delta)^2], softmax score e_a - pi' (so "
            "score . delta = delta_a - E_pi'[delta])",
        ),
        Step(
            second_moment - 2 * first_moment * first_moment + first_moment**2 * total(pi_ref(i)),
            "expand the square; E_pi'[delta] is a constant",
        ),
        Step(fisher_form, "sum pi' = 1"),
    ),
    statement=r"\mathbb E_{a\sim\pi'}[(\nabla\log\pi'(a)\cdot\delta)^2] = \delta^\top(\mathrm{diag}\,\pi' - \pi'\,{\pi'}^\top)\delta",
)


def taylor_polynomial(kl: sp.Expr) -> sp.Expr:
    """Degree-2 Taylor polynomial in h of ``kl`` about h = 0 (derivatives left unevaluated)."""
    return sp.Subs(kl, h, 0) + h * at_zero(kl, 1) + h**2 / 2 * at_zero(kl, 2)


quadratic_model = h**2 / 2 * fisher_form
# Rows: the Taylor polynomials of both KLs, and h^2/2 times the Fisher information as the
# expected squared score; all three are the quadratic model h^2/2 delta^T F delta.
taylor = Derivation(
    "taylor",
    rows(
        (
            (
                taylor_polynomial(kl_forward_step),
                "Taylor polynomial of degree 2 of KL(pi' || pi_theta' + h delta)",
            ),
            (
                quadratic_model,
                "KL(pi' || pi') = 0, zero gradient (kl-gradient-vanishes-at-reference), "
                "curvature delta^T F delta (derivation 'curvature')",
            ),
        ),
        (
            (
                taylor_polynomial(kl_reverse_step),
                "Taylor polynomial of degree 2 of KL(pi_theta' + h delta || pi')",
            ),
            (
                quadratic_model,
                "KL(pi' || pi') = 0, zero gradient (kl-gradient-vanishes-at-reference), "
                "curvature delta^T F delta (derivation 'curvature')",
            ),
        ),
        (
            (
                h**2 / 2 * total(pi_ref(i) * (delta[i] - first_moment) ** 2),
                "h^2/2 E_{a~pi'}[(score . delta)^2]",
            ),
            (quadratic_model, "derivation 'fisher'"),
        ),
    ),
    statement=(
        r"\mathrm{KL}(\pi_{\theta'}\,\|\,\pi_{\theta'+h\delta}),\ "
        r"\mathrm{KL}(\pi_{\theta'+h\delta}\,\|\,\pi_{\theta'})"
        r" = \tfrac{h^2}{2}\delta^\top F\delta + O(h^3)"
    ),
)

# ============================================================================ trajectories
# General horizon, by induction on H. D_H = KL(p_theta || p_theta') over H-step trajectories
# (s_0, a_0, ..., s_{H-1}, a_{H-1}); K_H = sum_{t<H} E_theta[KL(pi_theta(.|s_t) || pi_theta'(.|s_t))]
# the chain rule's right side. Both are 0 at H = 0 (the empty trajectory), and both grow by the
# same term from H to H + 1:
#   D_{H+1} = D_H + E_theta[KL_{s_H}]    (derivation 'induction-step'),
#   K_{H+1} = K_H + E_theta[KL_{s_H}]    (derivation 'right-side-step': the sum over t gains t = H),
# so D_H = K_H for every H. 'base-case' is the first step done directly (H = 1, from rho_0).
# In the induction step an (H+1)-step trajectory is an H-step prefix j (j < M, M any number:
# every prefix of positive probability) followed by s_H ~ P(.|prefix j) (the dynamics from the
# prefix's last state and action, the same for both policies) and a_H ~ pi(.|s_H). Every
# distribution is a normalised weight vector (C_j = c_j / sum c, T_{j,s} = x_{j,s} / sum_y x_{j,y},
# pi(a|s) = e_{s,a} / sum_b e_{s,b}), so every distribution with positive entries is covered and
# every log of a product splits (positive factors).
# The sums run over j = 0..M, s = 0..S, a = 0..A: at least two prefixes, states and actions
# (M, S, A >= 1), so that a random point where a mutant differs (it needs two of each) is drawn
# at every trial. Size 1 is covered too: an instance with one prefix, state or action is the
# instance with that element split into two identical halves (half the weight each under both
# policies: the halves' terms add up to the original term, and KL_s is the same at both), an
# exact reduction.
n_prefixes = sp.Symbol("M", integer=True, positive=True)  # prefixes j = 0..M
n_states = sp.Symbol("S", integer=True, positive=True)  # states s = 0..S
n_actions = sp.Symbol("A", integer=True, positive=True)  # actions a = 0..A
_j, _sH, _aH, _l, _y, _b = sp.symbols("j s a l y b", integer=True)
prefix_weight = sp.IndexedBase("c", positive=True)  # p_theta(prefix j) = c_j / sum_l c_l
prefix_weight_ref = sp.IndexedBase("c_ref", positive=True)  # p_theta'(prefix j), same dynamics
next_state_weight = sp.IndexedBase("x", positive=True)  # P(s_H = s | prefix j) = x_{j,s} / sum_y
policy_weight = sp.IndexedBase("e", positive=True)  # pi_theta(a|s) = e_{s,a} / sum_b e_{s,b}
policy_weight_ref = sp.IndexedBase("e_ref", positive=True)  # pi_theta'(a|s)
initial_weight = sp.IndexedBase("z", positive=True)  # rho_0(s) = z_s / sum_y z_y (base case)
per_time_kl = sp.IndexedBase("kappa", real=True)  # kappa_t = E_theta[KL_{s_t}]
horizon_ = sp.Symbol("H", integer=True, nonnegative=True)
time_ = sp.Symbol("t", integer=True)
TRAJECTORY_NAMES = {
    prefix_weight_ref: "c'",
    policy_weight_ref: "e'",
    per_time_kl: r"\kappa",
}


_REFERENCE_WEIGHTS = (prefix_weight_ref, policy_weight_ref)


def _policy_subscript(weights: sp.IndexedBase) -> str:
    return r"{\theta'}" if weights in _REFERENCE_WEIGHTS else r"\theta"


def prefix_probability(index: sp.Expr, weights: sp.IndexedBase = prefix_weight) -> sp.Expr:
    """p(prefix index) under theta (``prefix_weight``) or theta' (``prefix_weight_ref``).

    Printed by name, p_theta(j); its ``doit`` (where every proof starts) is c_j / sum_l c_l.
    """
    return Named(
        rf"p_{_policy_subscript(weights)}({sp.latex(index)})",
        weights[index] / IndexSum(weights[_l], (_l, 0, n_prefixes)),
    )


def next_state_probability(index: sp.Expr, state: sp.Expr) -> sp.Expr:
    """P(s_H = state | prefix index): the dynamics, shared by both trajectory distributions."""
    return Named(
        rf"P({sp.latex(state)} \mid {sp.latex(index)})",
        next_state_weight[index, state] / IndexSum(next_state_weight[index, _y], (_y, 0, n_states)),
    )


def initial_probability(state: sp.Expr) -> sp.Expr:
    return Named(
        rf"\rho_0({sp.latex(state)})",
        initial_weight[state] / IndexSum(initial_weight[_y], (_y, 0, n_states)),
    )


def step_policy(
    state: sp.Expr, action: sp.Expr, weights: sp.IndexedBase = policy_weight
) -> sp.Expr:
    """pi_theta(action | state) (``policy_weight``) or pi_theta' (``policy_weight_ref``)."""
    return Named(
        rf"\pi_{_policy_subscript(weights)}({sp.latex(action)} \mid {sp.latex(state)})",
        weights[state, action] / IndexSum(weights[state, _b], (_b, 0, n_actions)),
    )


def step_kl(
    state: sp.Expr,
    first: sp.IndexedBase = policy_weight,
    second: sp.IndexedBase = policy_weight_ref,
) -> sp.Sum:
    r"""$\mathrm{KL}_s = \sum_a \pi_1(a|s) \log(\pi_1(a|s) / \pi_2(a|s))$, sampled side first."""
    inside = step_policy(state, _aH, first)
    return IndexSum(inside * sp.log(inside / step_policy(state, _aH, second)), (_aH, 0, n_actions))


def over_extensions(term: sp.Expr) -> sp.Sum:
    """sum_j p_theta(j) sum_s P(s|j) sum_a pi_theta(a|s) term: over the (H+1)-step trajectories."""
    inner = IndexSum(step_policy(_sH, _aH) * term, (_aH, 0, n_actions))
    return IndexSum(
        prefix_probability(_j)
        * IndexSum(next_state_probability(_j, _sH) * inner, (_sH, 0, n_states)),
        (_j, 0, n_prefixes),
    )


def last_state_kl(
    prefix_weights: sp.IndexedBase = prefix_weight,
    first: sp.IndexedBase = policy_weight,
    second: sp.IndexedBase = policy_weight_ref,
) -> sp.Sum:
    """E[KL_{s_H}] with s_H reached from a prefix drawn with ``prefix_weights``."""
    return IndexSum(
        prefix_probability(_j, prefix_weights)
        * IndexSum(
            next_state_probability(_j, _sH) * step_kl(_sH, first, second), (_sH, 0, n_states)
        ),
        (_j, 0, n_prefixes),
    )


_prefix_log_ratio = sp.log(prefix_probability(_j) / prefix_probability(_j, prefix_weight_ref))
_step_log_ratio = sp.log(step_policy(_sH, _aH) / step_policy(_sH, _aH, policy_weight_ref))
prefix_kl = IndexSum(prefix_probability(_j) * _prefix_log_ratio, (_j, 0, n_prefixes))  # D_H


def _written_ratio() -> sp.Expr:
    """log(p_theta(tau) / p_theta'(tau)), both products kept whole (nothing cancelled)."""
    moved = sp.Mul(
        prefix_probability(_j),
        next_state_probability(_j, _sH),
        step_policy(_sH, _aH),
        evaluate=False,
    )
    reference = sp.Mul(
        prefix_probability(_j, prefix_weight_ref),
        next_state_probability(_j, _sH),
        step_policy(_sH, _aH, policy_weight_ref),
        evaluate=False,
    )
    # named p(tau), tau = (j, s_H, a_H): the product is its definition (listed under the step)
    return sp.log(Named(r"p_\theta(\tau)", moved) / Named(r"p_{\theta'}(\tau)", reference))


trajectory_chain_rule = Derivation(
    "induction-step",
    (
        Step(
            over_extensions(_written_ratio()),
            "KL(p_theta || p_theta') over the (H+1)-step trajectories (prefix j, s_H, a_H): "
            "p(tau) = p(j) P(s_H|j) pi(a_H|s_H), the same dynamics P under both policies",
        ),
        Step(
            over_extensions(_prefix_log_ratio) + over_extensions(_step_log_ratio),
            "log of a product is the sum of the logs (every factor positive), P(s_H|j) cancels; "
            "linearity",
        ),
        Step(
            IndexSum(
                prefix_probability(_j)
                * _prefix_log_ratio
                * IndexSum(
                    next_state_probability(_j, _sH)
                    * IndexSum(step_policy(_sH, _aH), (_aH, 0, n_actions)),
                    (_sH, 0, n_states),
                ),
                (_j, 0, n_prefixes),
            )
            + last_state_kl(),
            "the prefix's log-ratio does not depend on (s_H, a_H); the inner sum of the second "
            "term is KL_{s_H}",
        ),
        Step(
            prefix_kl + last_state_kl(),
            "marginalise the last step: sum_a pi(a|s_H) = 1, sum_s P(s|j) = 1; what is left is "
            "D_H + E_theta[KL_{s_H}]",
        ),
    ),
    statement=r"D_{H+1} = D_H + \mathbb E_\theta[\mathrm{KL}(\pi_\theta(\cdot|s_H)\,\|\,\pi_{\theta'}(\cdot|s_H))]",
)
REFERENCE_STATE_DISTRIBUTION = prefix_kl + last_state_kl(prefix_weights=prefix_weight_ref)
PER_STATE_KL_REVERSED = prefix_kl + last_state_kl(first=policy_weight_ref, second=policy_weight)
PREFIX_KL_DROPPED = last_state_kl()


def _written_first_ratio() -> sp.Expr:
    moved = sp.Mul(initial_probability(_sH), step_policy(_sH, _aH), evaluate=False)
    reference = sp.Mul(
        initial_probability(_sH), step_policy(_sH, _aH, policy_weight_ref), evaluate=False
    )
    return sp.log(sp.Mul(moved, sp.Pow(reference, -1, evaluate=False), evaluate=False))


def _over_first_step(term: sp.Expr) -> sp.Sum:
    inner = IndexSum(step_policy(_sH, _aH) * term, (_aH, 0, n_actions))
    return IndexSum(initial_probability(_sH) * inner, (_sH, 0, n_states))


trajectory_chain_rule_base = Derivation(
    "base-case",
    (
        Step(
            _over_first_step(_written_first_ratio()),
            "KL(p_theta || p_theta') over the 1-step trajectories (s_0, a_0): "
            "p(tau) = rho_0(s_0) pi(a_0|s_0) under both policies",
        ),
        Step(
            _over_first_step(_step_log_ratio),
            "log of a product is the sum of the logs; rho_0(s_0) cancels",
        ),
        Step(
            sp.Sum(
                IndexSum(initial_probability(_sH) * step_kl(_sH), (_sH, 0, n_states)),
                (time_, 0, 0),
            ),
            "the inner sum is KL_{s_0}, and Pr_theta(s_0 = s) = rho_0(s): the chain rule's "
            "right side sum_{t<1} E_theta[KL_{s_t}]",
        ),
    ),
    statement=r"D_1 = \sum_{t<1} \mathbb E_\theta[\mathrm{KL}_{s_t}] = K_1",
)

right_side_step = Derivation(
    "right-side-step",
    (
        Step(
            sp.Sum(per_time_kl[time_], (time_, 0, horizon_)),
            "K_{H+1} = sum_{t<H+1} kappa_t, kappa_t = E_theta[KL(pi_theta(.|s_t) || "
            "pi_theta'(.|s_t))]",
        ),
        Step(
            sp.Sum(per_time_kl[time_], (time_, 0, horizon_ - 1))
            + sp.Sum(per_time_kl[time_], (time_, horizon_, horizon_)),
            "split off the last time t = H",
        ),
        Step(
            sp.Sum(per_time_kl[time_], (time_, 0, horizon_ - 1)) + per_time_kl[horizon_],
            "K_H + kappa_H: the same increment E_theta[KL_{s_H}] as D_{H+1} - D_H",
        ),
    ),
    statement=r"K_{H+1} = K_H + \mathbb E_\theta[\mathrm{KL}_{s_H}]",
)


# ============================================================================ exact legs
def kl_by_enumeration(first: np.ndarray, second: np.ndarray) -> float:
    r"""$\sum_i p_i \log(p_i/q_i)$ over the support of $p$ ($0 \log 0 = 0$), summed literally."""
    support = first > 0
    return float(np.sum(first[support] * np.log(first[support] / second[support])))


# ----------------------------------------------------------------------------- Gibbs
# (p, q) with q > 0 (so KL is finite); p may have zeros, be one-hot or near-deterministic.
distribution_pairs = st.integers(1, 6).flatmap(
    lambda size: st.tuples(probability_vectors(size), probability_vectors(size, allow_zeros=False))
)


def kl_by_scipy(example: tuple[np.ndarray, np.ndarray]) -> float:
    """KL(p || q) = sum of scipy.special.rel_entr(p, q) (its own 0 log 0 = 0 convention)."""
    first, second = example
    return float(rel_entr(first, second).sum())


def on_support(example: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Values of (p, q, n) for 'kl-remainder': both vectors restricted to the support of p.

    The derivation is for positive, not necessarily normalised vectors, so it applies to the
    restrictions (q restricted no longer sums to 1, and its sum enters the conclusion).
    """
    first, second = example
    support = first > 0
    return first[support], second[support], int(support.sum())


def _gibbs_error_scale(example: tuple[np.ndarray, np.ndarray]) -> float:
    # Each term p g(q/p) = q - p - p log(q/p) is computed with an error of a few ulps of
    # q + p + p |log(q/p)|, and sum p, sum q of ulps of 1: the attainable accuracy is relative to
    # these sizes, not to the KL (which is 0 for p = q).
    first, second, _ = on_support(example)
    return float(np.sum(first + second + first * np.abs(np.log(second / first))))


# ----------------------------------------------------------------------------- gradient
@st.composite
def _logit_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(theta, theta'): independent, or theta a small step away from theta'."""
    size = draw(st.integers(2, 5))
    reference = draw(logits(size))
    step = draw(logits(size))
    scale = draw(st.sampled_from([1.0, 1e-3, 1e-8]))
    moved = draw(st.sampled_from([step, reference + scale * step]))
    return moved, reference


logit_pairs = _logit_pairs()


def _log_softmax_complex(z: np.ndarray) -> np.ndarray:
    """log softmax for complex logits (shift by the largest real part; analytic in z)."""
    shifted = z - z.real.max()
    return shifted - np.log(np.exp(shifted).sum())


def _kl_both_directions(z: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[KL(pi' || pi_z), KL(pi_z || pi')] for complex logits z, straight from the definition."""
    log_moved = _log_softmax_complex(z)
    log_ref = log_softmax(reference)
    return np.array(
        [
            np.sum(np.exp(log_ref) * (log_ref - log_moved)),
            np.sum(np.exp(log_moved) * (log_moved - log_ref)),
        ]
    )


def complex_step_gradients(example: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    r"""$[\nabla_\theta \mathrm{KL}(\pi'\|\pi_\theta); \nabla_\theta \mathrm{KL}(\pi_\theta\|\pi')]$, ``[2, 1, n]``.

    Complex-step differentiation of the definition (:func:`rlmath.claims.complex_step_gradient`),
    exact to rounding; shaped like the lambdified column [row 1; row 2] of 'gradients'.
    """
    moved, reference = example
    gradient = complex_step_gradient(lambda z: _kl_both_directions(z, reference), moved)
    return gradient.T[:, None, :]  # type: ignore[no-any-return]


def gradient_arguments(example: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Values of (theta, theta', delta, n): delta[i] is the unit row e_i, so the lambdified
    directional derivative sum_i (...) delta_i is the whole gradient at once."""
    moved, reference = example
    return moved, reference, np.eye(moved.size), moved.size


_gradients = lazy_lambdify([theta, theta_ref, delta, n], gradients.conclusion)


def closed_form_gradients(example: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The lambdified conclusion of 'gradients' as ``[2, n]`` (forward, reverse)."""
    moved = example[0]
    return np.asarray(_gradients(*gradient_arguments(example)), dtype=np.float64).reshape(
        2, moved.size
    )


def _gradient_error_scale(example: tuple[np.ndarray, np.ndarray]) -> float:
    # Each partial sums terms of size <= 2 (1 + max |log pi/pi'|) that cancel down to the
    # result (to 0 at the reference): the attainable accuracy is relative to those terms.
    moved, reference = example
    return 2.0 * (1.0 + float(np.abs(log_softmax(moved) - log_softmax(reference)).max()))


def _probabilities(logit: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logit))


# ----------------------------------------------------------------------------- curvature
@st.composite
def _reference_and_direction(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(theta', delta) with delta not constant (a constant shift leaves a softmax unchanged)."""
    size = draw(st.integers(2, 5))
    reference = draw(logits(size))
    direction = draw(logits(size, max_abs=3.0).filter(lambda d: np.ptp(d) >= 0.1))
    return reference, direction


reference_and_direction = _reference_and_direction()
_quadratic_model = lazy_lambdify([theta_ref, delta, h, n], quadratic_model)


def _step_size(example: tuple[np.ndarray, np.ndarray]) -> float:
    r"""$h$ with the Taylor remainder at most $10^{-10}$ of the quadratic term (see ``_hessian_rtol``)."""
    reference, direction = example
    pr = _probabilities(reference)
    variance = float(pr @ (direction - pr @ direction) ** 2)
    spread = float(np.ptp(direction))
    return 1e-10 * variance / spread**3


def taylor_arguments(
    example: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Values of (theta', delta, h, n) for the lambdified conclusion of 'taylor'."""
    reference, direction = example
    return reference, direction, _step_size(example), reference.size


def kl_at_small_step(example: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    r"""[KL(pi' || pi_{theta'+h delta}); KL(pi_{theta'+h delta} || pi'); h^2/2 E_pi'[(score.delta)^2]], ``[3, 1]``.

    The two KLs straight from the definition in 80-digit arithmetic (mpmath), the step
    $\theta' + h\delta$ taken exactly; the Fisher form from ``SoftmaxPolicy.score_row``.
    """
    reference, direction = example
    step = _step_size(example)
    with mpmath.workdps(80):
        ref = [mpmath.mpf(float(a)) for a in reference]
        moved = [
            a + mpmath.mpf(step) * mpmath.mpf(float(d)) for a, d in zip(ref, direction, strict=True)
        ]

        def log_softmax_mp(values: list) -> list:  # type: ignore[type-arg]
            normaliser = mpmath.log(mpmath.fsum(mpmath.exp(a) for a in values))
            return [a - normaliser for a in values]

        lr, lm = log_softmax_mp(ref), log_softmax_mp(moved)
        forward = mpmath.fsum(mpmath.exp(a) * (a - b) for a, b in zip(lr, lm, strict=True))
        reverse = mpmath.fsum(mpmath.exp(b) * (b - a) for a, b in zip(lr, lm, strict=True))
    policy = SoftmaxPolicy(reference[None, :])
    scores = policy.score_row(np.zeros(reference.size, dtype=int), np.arange(reference.size))
    fisher_value = float(policy.probabilities()[0] @ (scores @ direction) ** 2)
    return np.array([[float(forward)], [float(reverse)], [step**2 / 2 * fisher_value]])


def _hessian_rtol(example: tuple[np.ndarray, np.ndarray]) -> float:
    # Taylor remainder: |f'''| <= spread^3/2 + h spread^4/4 along delta (third and fourth
    # cumulants of delta are at most spread^3/4 and spread^4/4), so
    # |f(h) - h^2/2 f''(0)| <= h^3/6 (spread^3/2 + h spread^4/4), relative to h^2/2 Var;
    # plus the rounding of E[delta^2] - E[delta]^2, conditioned by E[delta^2] / Var.
    reference, direction = example
    pr = _probabilities(reference)
    variance = float(pr @ (direction - pr @ direction) ** 2)
    spread, step = float(np.ptp(direction)), _step_size(example)
    remainder = step / 3 * (spread**3 / 2 + step * spread**4 / 4) / variance
    return remainder + exact_rtol(float(pr @ direction**2) / variance, reference.size)


# ----------------------------------------------------------------------------- chain rule
@st.composite
def _mdp_two_policies_horizon(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    mdp, policy = draw(mdps_and_policies(tabular_mdps(max_states=3, max_actions=3)))
    reference = draw(logits((mdp.n_states, mdp.n_actions)).map(SoftmaxPolicy))
    return mdp, policy, reference, draw(st.integers(1, 4))


mdp_two_policies_horizon = _mdp_two_policies_horizon()


def _steered_witness():  # type: ignore[no-untyped-def]
    """2 states, action a leads to state a (probability 0.9): theta prefers action 0, theta'
    action 1, so at t = 2 the two policies' state distributions differ (0.82 vs 0.18 on
    state 0 after the first step); horizon 3."""
    P = 0.9 * np.eye(2)[np.array([[0, 1], [0, 1]])] + 0.05
    mdp = TabularMDP(P, np.zeros((2, 2)), np.array([0.5, 0.5]), gamma=0.9)
    policy = SoftmaxPolicy(np.array([[1.5, -1.5], [1.0, 0.0]]))
    reference = SoftmaxPolicy(np.array([[-1.5, 1.5], [0.0, 1.0]]))
    return mdp, policy, reference, 3


STEERED_WITNESS = _steered_witness()


def _trajectory_log_probabilities(example):  # type: ignore[no-untyped-def]
    r"""Every trajectory of positive $p_\theta$, with $\log p_\theta(\tau)$ and $\log p_{\theta'}(\tau)$.

    $p_{\theta'}(\tau)$ is the full product $\rho_0 \prod \pi_{\theta'} \prod P$ on the same
    trajectories (nothing cancelled by hand); $p_\theta > 0$ implies $p_{\theta'} > 0$ since
    softmax policies have full support.
    """
    mdp, policy, reference, horizon = example
    paths = exact.trajectories(mdp, policy, horizon)
    P = mdp.dense_transitions()
    log_ref = np.log(mdp.rho0[paths.states[:, 0]])
    for time in range(horizon):
        s, a = paths.states[:, time], paths.actions[:, time]
        log_ref = log_ref + reference.log_probabilities()[s, a]
        if time + 1 < horizon:
            log_ref = log_ref + np.log(P[s, a, paths.states[:, time + 1]])
    return paths.probabilities, np.log(paths.probabilities), log_ref


def trajectory_kl(example) -> float:  # type: ignore[no-untyped-def]
    r"""$\sum_\tau p_\theta(\tau) \log(p_\theta(\tau)/p_{\theta'}(\tau))$, summed over every trajectory."""
    prob, log_moved, log_ref = _trajectory_log_probabilities(example)
    return float(prob @ (log_moved - log_ref))


def _per_state_kl(first: SoftmaxPolicy, second: SoftmaxPolicy) -> np.ndarray:
    lf, ls = first.log_probabilities(), second.log_probabilities()
    return (np.exp(lf) * (lf - ls)).sum(axis=1)  # type: ignore[no-any-return]


def chain_rule_value(example, weights=None, reversed_kl=False) -> float:  # type: ignore[no-untyped-def]
    r"""$\sum_{t<H} \sum_s \Pr_\theta(s_t = s)\, \mathrm{KL}_s$, the chain rule's right-hand side."""
    mdp, policy, reference, horizon = example
    distributions = exact.state_distributions(mdp, weights or policy, horizon)
    kl = _per_state_kl(reference, policy) if reversed_kl else _per_state_kl(policy, reference)
    return float(distributions.sum(axis=0) @ kl)


def _chain_rule_error_scale(example) -> float:  # type: ignore[no-untyped-def]
    # Each trajectory's log-ratio subtracts two logs, each of a product of 2H factors: the
    # attainable accuracy is relative to sum_tau p (|log p| + |log p'| + 2H), not to the KL.
    prob, log_moved, log_ref = _trajectory_log_probabilities(example)
    return float(prob @ (np.abs(log_moved) + np.abs(log_ref) + 2 * example[3]))


def _chain_rule_rtol(example) -> float:  # type: ignore[no-untyped-def]
    mdp, _, _, horizon = example  # at most (S A)^H trajectories of H steps each
    return exact_rtol(1.0, (mdp.n_states * mdp.n_actions) ** horizon * horizon)


TRAJECTORY_SYMBOLS = (
    prefix_weight,
    prefix_weight_ref,
    next_state_weight,
    policy_weight,
    policy_weight_ref,
    n_states,
    n_actions,
    n_prefixes,
)


def induction_arguments(example) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """Values of TRAJECTORY_SYMBOLS for the step from H - 1 to H steps (H = example[3]).

    The prefixes are the (H-1)-step trajectories of positive p_theta
    (rlmath.exact.trajectories), c their p_theta, c' their p_theta' (the full product with the
    dynamics, as for the lhs), x[j] = P(. | s_{H-2}, a_{H-2}) of prefix j; for H = 1 the one
    empty prefix (c = c' = 1) with x = rho_0.
    """
    mdp, policy, reference, horizon = example
    if horizon == 1:
        moved, ref, successor = np.ones(1), np.ones(1), mdp.rho0[None, :]
    else:
        shorter = (mdp, policy, reference, horizon - 1)
        moved, _, log_ref = _trajectory_log_probabilities(shorter)
        paths = exact.trajectories(mdp, policy, horizon - 1)  # the same prefixes, same order
        ref = np.exp(log_ref)
        successor = mdp.dense_transitions()[paths.states[:, -1], paths.actions[:, -1]]
    return (
        moved,
        ref,
        successor,
        policy.probabilities(),
        reference.probabilities(),
        mdp.n_states - 1,  # the sums run over 0..S, 0..A, 0..M
        mdp.n_actions - 1,
        len(moved) - 1,
    )


# ============================================================================ Monte-Carlo legs
# Each leg draws MC_EXAMPLES examples from a strategy whose filter keeps only examples in which
# (a) every component of the correct estimator has a per-sample standard deviation of at least
# MIN_RELATIVE_SD of its size (so no component is constant, or constant up to rounding: see the
# zero-SE caveat in rlmath.statistics), and (b) every mutant's Monte-Carlo variant shifts some
# component by at least MIN_EFFECT of that component's per-sample standard deviation under the
# variant. Means and standard deviations are exact (enumeration of outcomes or trajectories).
# By (b), sample_size(MIN_EFFECT, 1) samples reject every variant with power >= 0.99 at the
# leg's false alarm 1e-6 (Bonferroni over the examples and the components).
MC_EXAMPLES = 2
MIN_EFFECT = 0.05
MIN_RELATIVE_SD = 1e-2


def _mc_samples(n_components: int) -> int:
    """sample_size(MIN_EFFECT, 1) at the leg's per-example false alarm, for ``n_components``."""
    return sample_size(
        MIN_EFFECT,
        1.0,
        false_alarm=DEFAULT_FALSE_ALARM / MC_EXAMPLES,
        n_components=n_components,
    )


def _moments(terms: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and standard deviation over outcomes of probability ``weights``: ``[K, ...]``."""
    mean = np.tensordot(weights, terms, axes=1)
    return mean, np.sqrt(np.tensordot(weights, (terms - mean) ** 2, axes=1))


def _standardised_effect(moments: tuple[np.ndarray, np.ndarray], reference: np.ndarray) -> float:
    """max over components of |mean - reference| / sd (components with sd = 0 count 0)."""
    mean, sd = moments
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.where(sd > 0, np.abs(mean - reference) / sd, 0.0)
    return float(effect.max())


def _separated(correct, variants, reference) -> bool:  # type: ignore[no-untyped-def]
    """The filter: the correct terms vary in every component, and every variant is detectable."""
    mean, sd = correct
    scale = np.maximum(np.abs(mean), np.abs(reference))
    if not np.all(sd >= MIN_RELATIVE_SD * np.maximum(scale, 1e-3)):
        return False
    return all(_standardised_effect(v, reference) >= MIN_EFFECT for v in variants)


# ----------------------------------------------------------------------------- Gibbs
# Samples x ~ p, log r = log q(x) - log p(x); per-sample terms [k1, k3, min(k3, 0)]: k1 and k3
# are unbiased for KL(p || q), and k3 = r - 1 - log r = g(r) >= 0 sample by sample (the lemma
# 'log-bound' at x = r), so its negative part is identically 0 (compared exactly).
def _gibbs_terms(first: np.ndarray, second: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """``[N, 3]``: k1, k3 and min(k3, 0) at ``outcomes``, log r = log second - log first."""
    log_first, log_second = np.log(first[outcomes]), np.log(second[outcomes])
    k3 = kl_k3(log_first, log_second)  # sampled first: log r = log second - log first
    return np.stack([kl_k1(log_first, log_second), k3, np.minimum(k3, 0.0)], axis=-1)


def gibbs_samples(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """x ~ p: the estimators of KL(p || q) and the negative part of k3, ``[count, 3]``."""
    first, second = example
    return _gibbs_terms(first, second, rng.choice(first.size, size=count, p=first))


def sign_flipped_gibbs_samples(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    first, second = example  # mutant: -k1, -k3 (estimates of -KL), and the negative part of -k3
    terms = -_gibbs_terms(first, second, rng.choice(first.size, size=count, p=first))
    terms[:, 2] = np.minimum(terms[:, 1], 0.0)
    return terms


def reverse_weighted_gibbs_samples(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    first, second = example  # mutant: x ~ q, so k1 = log p(x)/q(x) has mean sum q log(p/q)
    return _gibbs_terms(first, second, rng.choice(second.size, size=count, p=second))


def direction_swapped_gibbs_samples(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    first, second = example  # mutant: the estimators of KL(q || p), x ~ q and r = p/q
    return _gibbs_terms(second, first, rng.choice(second.size, size=count, p=second))


def gibbs_reference(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    kl = kl_by_scipy(example)
    return np.array([kl, kl, 0.0])


def _gibbs_separated(example) -> bool:  # type: ignore[no-untyped-def]
    first, second = example
    terms = _gibbs_terms(first, second, np.arange(first.size))
    flipped = -terms
    flipped[:, 2] = np.minimum(flipped[:, 1], 0.0)
    mean, sd = _moments(terms, first)
    reference = gibbs_reference(example)
    # k1 and k3 must vary; the negative part of k3 is 0 by the lemma (compared exactly)
    return _separated((mean[:2], sd[:2]), [], reference[:2]) and all(
        _standardised_effect(_moments(variant, weights), reference) >= MIN_EFFECT
        for variant, weights in (
            (flipped, first),
            (terms, second),
            (_gibbs_terms(second, first, np.arange(first.size)), second),
        )
    )


gibbs_mc_examples = (
    st.integers(2, 5)
    .flatmap(
        lambda size: st.tuples(
            probability_vectors(size, allow_zeros=False, min_probability=0.05),
            probability_vectors(size, allow_zeros=False, min_probability=0.05),
        )
    )
    .filter(_gibbs_separated)
)
# 3 components: sample_size(0.05, 1) at false alarm 5e-7 over 3 components = 22,859 samples.
GIBBS_SAMPLES = _mc_samples(3)


# ----------------------------------------------------------------------------- gradient
# At theta = theta' and at a moved theta = theta' + step: the score-function estimators of both
# KL gradients. KL(pi' || pi_theta) = E_{a~pi'}[log pi'(a) - log pi_theta(a)], sampled from pi'
# (which does not depend on theta): per-sample gradient -grad log pi_theta(a) = -(e_a - pi_theta).
# KL(pi_theta || pi') = E_{b~pi_theta}[f_theta(b)], f = log pi_theta - log pi': per-sample
# gradient score(b) f(b) + grad f(b) = (e_b - pi_theta)(log pi_theta(b)/pi'(b) + 1).
def _forward_term(a, log_moving, log_ref):  # type: ignore[no-untyped-def]
    return -(np.eye(log_moving.size)[a] - np.exp(log_moving))


def _reverse_term(b, log_moving, log_ref):  # type: ignore[no-untyped-def]
    score = np.eye(log_moving.size)[b] - np.exp(log_moving)
    return score * (log_moving[b] - log_ref[b] + 1.0)[..., None]


def _negative_entropy_term(b, log_moving, log_ref):  # type: ignore[no-untyped-def]
    score = np.eye(log_moving.size)[b] - np.exp(log_moving)  # gradient of E[log pi_theta] only
    return score * (log_moving[b] + 1.0)[..., None]


def _cross_entropy_term(b, log_moving, log_ref):  # type: ignore[no-untyped-def]
    score = np.eye(log_moving.size)[b] - np.exp(log_moving)  # gradient of -E[log pi'] only
    return score * (-log_ref[b])[..., None]


def _unnormalised_forward_term(a, log_moving, log_ref):  # type: ignore[no-untyped-def]
    return -np.eye(log_moving.size)[a]  # grad log pi_theta(a) taken as e_a: log Z forgotten


def _points(example) -> list[tuple[np.ndarray, np.ndarray]]:  # type: ignore[no-untyped-def]
    """(log pi_theta, log pi') at theta = theta' and at theta = theta' + step."""
    reference, step = example
    log_ref = log_softmax(reference)
    return [(log_ref, log_ref), (log_softmax(reference + step), log_ref)]


def _gradient_sampler(forward=_forward_term, reverse=_reverse_term):  # type: ignore[no-untyped-def]
    def sample(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        """``[count, 4, n]``: forward and reverse terms at theta', then at theta' + step."""
        rows = []
        for log_moving, log_ref in _points(example):
            a = rng.choice(log_ref.size, size=count, p=np.exp(log_ref))
            b = rng.choice(log_moving.size, size=count, p=np.exp(log_moving))
            rows += [forward(a, log_moving, log_ref), reverse(b, log_moving, log_ref)]
        return np.stack(rows, axis=1)

    return sample


def _gradient_moments(example, forward=_forward_term, reverse=_reverse_term):  # type: ignore[no-untyped-def]
    means, sds = [], []
    for log_moving, log_ref in _points(example):
        outcomes = np.arange(log_ref.size)
        for term, weights in (
            (forward(outcomes, log_moving, log_ref), np.exp(log_ref)),
            (reverse(outcomes, log_moving, log_ref), np.exp(log_moving)),
        ):
            mean, sd = _moments(term, weights)
            means.append(mean)
            sds.append(sd)
    return np.array(means), np.array(sds)


def gradient_reference(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The lambdified closed forms at (theta', theta') and (theta' + step, theta'): ``[4, n]``."""
    reference, step = example
    return np.concatenate(
        [
            closed_form_gradients((reference, reference)),
            closed_form_gradients((reference + step, reference)),
        ]
    )


GRADIENT_MUTANT_TERMS = {
    "negative-entropy-only": {"reverse": _negative_entropy_term},
    "cross-entropy-only": {"reverse": _cross_entropy_term},
    "normaliser-forgotten": {"forward": _unnormalised_forward_term},
}


def _gradient_separated(example) -> bool:  # type: ignore[no-untyped-def]
    return _separated(
        _gradient_moments(example),
        [_gradient_moments(example, **terms) for terms in GRADIENT_MUTANT_TERMS.values()],
        gradient_reference(example),
    )


gradient_mc_examples = (
    st.integers(2, 5)
    .flatmap(lambda size: st.tuples(logits(size, max_abs=1.5), logits(size, max_abs=1.5)))
    .filter(_gradient_separated)
)
# 4 rows x up to 5 actions = 20 components: sample_size(0.05, 1) at false alarm 5e-7 = 24,962.
GRADIENT_SAMPLES = _mc_samples(20)


# ----------------------------------------------------------------------------- curvature
# a ~ pi' and b ~ pi_theta, theta = theta' + h delta; per-sample terms [(score(a) . delta)^2,
# k3 of KL(pi' || pi_theta) / h^2, k3 of KL(pi_theta || pi') / h^2]: the Fisher form
# E_pi'[(score . delta)^2], and both KLs (unbiased k3) divided by h^2, whose means are
# delta^T F delta and 1/2 delta^T F delta + O(h). The step h = MC_STEP_FACTOR Var/spread^3 keeps
# the Taylor remainder below MC_STEP_FACTOR/6 + O(MC_STEP_FACTOR^2) of the quadratic term (the
# bound of _hessian_rtol), about 2e-7: with the filter's relative sd >= 1e-2 and the sample
# count below, that bias is below 0.01 standard errors.
MC_STEP_FACTOR = 1e-6


def _mc_step(example) -> float:  # type: ignore[no-untyped-def]
    reference, direction = example
    pr = _probabilities(reference)
    return (
        MC_STEP_FACTOR
        * float(pr @ (direction - pr @ direction) ** 2)
        / float(np.ptp(direction)) ** 3
    )


def _step_log_ratio(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    r"""$\log\pi_{\theta'+h\delta}(a) - \log\pi'(a) = h\delta_a - \log(1 + \sum_i \pi'_i (e^{h\delta_i} - 1))$, ``[n]``.

    Written with ``expm1``/``log1p`` so the O(h) result keeps its relative precision.
    """
    reference, direction = example
    step = _mc_step(example)
    return step * direction - np.log1p(_probabilities(reference) @ np.expm1(step * direction))


def _curvature_terms(example, a, b, *, outer_product=True, half=True) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``[N, 3]`` terms at a ~ pi', b ~ pi_theta (see above); the flags make the mutants."""
    reference, direction = example
    pr = _probabilities(reference)
    projected = direction[a] - (pr @ direction if outer_product else 0.0)  # score(a) . delta
    log_ratio = _step_log_ratio(example)
    step = _mc_step(example)
    if half:
        # log pi_theta - log pi' enters only as a difference, computed with expm1/log1p:
        # k3(log_probs=0, reference_log_probs=log_ratio) has log r = log_ratio exactly
        zero_a, zero_b = np.zeros(np.shape(a)), np.zeros(np.shape(b))
        forward = kl_k3(zero_a, log_ratio[a])  # a ~ pi': log r = log pi_theta(a) - log pi'(a)
        reverse = kl_k3(log_ratio[b], zero_b)  # b ~ pi_theta: log r = log pi'(b) - log pi_theta(b)
    else:  # mutant: KL estimated by (log r)^2, the 1/2 of k2 forgotten
        forward, reverse = log_ratio[a] ** 2, log_ratio[b] ** 2
    return np.stack([projected**2, forward / step**2, reverse / step**2], axis=-1)


def _curvature_sampler(**flags: bool):  # type: ignore[no-untyped-def]
    def sample(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        reference, _ = example
        pr = _probabilities(reference)
        moved = pr * np.exp(_step_log_ratio(example))
        a = rng.choice(pr.size, size=count, p=pr)
        b = rng.choice(pr.size, size=count, p=moved / moved.sum())
        return _curvature_terms(example, a, b, **flags)

    return sample


_fisher_form = lazy_lambdify([theta_ref, delta, n], fisher_form)


def curvature_reference(example) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The lambdified delta^T F delta and h^2/2 delta^T F delta / h^2 (twice)."""
    reference, direction = example
    step = _mc_step(example)
    quadratic = _quadratic_model(reference, direction, step, reference.size) / step**2
    return np.array([_fisher_form(reference, direction, reference.size), quadratic, quadratic])


def _curvature_moments(example, **flags: bool):  # type: ignore[no-untyped-def]
    reference, _ = example
    pr = _probabilities(reference)
    moved = pr * np.exp(_step_log_ratio(example))
    outcomes = np.arange(pr.size)
    terms = _curvature_terms(example, outcomes, outcomes, **flags)
    first, sd_first = _moments(terms[:, :2], pr)
    last, sd_last = _moments(terms[:, 2:], moved / moved.sum())
    return np.concatenate([first, last]), np.concatenate([sd_first, sd_last])


CURVATURE_MUTANT_FLAGS = {
    "fisher-without-outer-product": {"outer_product": False},
    "no-half": {"half": False},
}


def _curvature_separated(example) -> bool:  # type: ignore[no-untyped-def]
    return _separated(
        _curvature_moments(example),
        [_curvature_moments(example, **flags) for flags in CURVATURE_MUTANT_FLAGS.values()],
        curvature_reference(example),
    )


curvature_mc_examples = (
    st.integers(2, 5)
    .flatmap(
        lambda size: st.tuples(
            logits(size, max_abs=1.5),
            logits(size, max_abs=3.0).filter(lambda d: np.ptp(d) >= 0.5),
        )
    )
    .filter(_curvature_separated)
)
# 3 components: sample_size(0.05, 1) at false alarm 5e-7 over 3 components = 22,859 samples.
CURVATURE_SAMPLES = _mc_samples(3)


# ----------------------------------------------------------------------------- chain rule
# tau ~ p_theta (rlmath.sampling.rollouts); per-episode term sum_t log pi_theta(a_t|s_t) /
# pi_theta'(a_t|s_t) (rlmath.estimators.trajectory_kl with k1), whose mean is the trajectory KL,
# against the chain rule's sum_t sum_s Pr_theta(s_t = s) KL_s. The MDPs let the actions steer the
# state (each (s, a) moves to one successor with probability 1 - eps, else uniformly), so the
# state distributions of theta and theta' differ; the logits go up to 3 so the two KL directions
# differ. The variants draw fresh actions b_t at each visited state (rlmath.sampling.sample_actions)
# and take the per-state k1 with rlmath.estimators.kl_terms.
@st.composite
def _steerable_example(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    S, A = draw(st.integers(2, 3)), draw(st.integers(2, 3))
    successor = np.array(draw(st.lists(st.integers(0, S - 1), min_size=S * A, max_size=S * A)))
    noise = draw(st.floats(0.05, 0.3))
    P = (1.0 - noise) * np.eye(S)[successor.reshape(S, A)] + noise / S
    rho0 = draw(probability_vectors(S, allow_zeros=False, min_probability=0.1))
    mdp = TabularMDP(P, np.zeros((S, A)), rho0, gamma=0.9)
    policy = SoftmaxPolicy(draw(logits((S, A), max_abs=3.0)))
    reference = SoftmaxPolicy(draw(logits((S, A), max_abs=3.0)))
    return mdp, policy, reference, draw(st.integers(3, 5))


def trajectory_kl_samples(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """tau ~ p_theta: per-episode sum_t log(pi_theta(a_t|s_t) / pi_theta'(a_t|s_t)), ``[count]``."""
    mdp, policy, reference, horizon = example
    episodes = rollouts(
        mdp, policy, n_episodes=count, horizon=horizon, seed=int(rng.integers(2**63))
    )
    return estimators.trajectory_kl(episodes, reference, estimator=kl_k1)


def _fresh_action_sampler(walker: int, first: int):  # type: ignore[no-untyped-def]
    """tau ~ p_{example[walker]}, b_t ~ example[first](.|s_t), per-episode sum of k1 of
    KL(example[first] || the other policy) at (s_t, b_t)."""

    def sample(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        mdp, horizon = example[0], example[3]
        sampled, other = example[first], example[3 - first]
        seed = int(rng.integers(2**63))
        states = rollouts(mdp, example[walker], n_episodes=count, horizon=horizon, seed=seed).states
        fresh = sample_actions(sampled, states, seed=int(rng.integers(2**63)))
        return kl_terms(sampled, other, states, fresh, estimator=kl_k1).sum(axis=0)  # type: ignore[no-any-return]

    return sample


reference_state_samples = _fresh_action_sampler(walker=2, first=1)  # states from theta'
reversed_kl_samples = _fresh_action_sampler(walker=1, first=2)  # KL(pi_theta' || pi_theta)


def last_step_log_ratio_samples(example, rng: np.random.Generator, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Mutant prefix-kl-dropped: tau ~ p_theta, the last step's log pi_theta/pi_theta' only."""
    mdp, policy, reference, horizon = example
    episodes = rollouts(
        mdp, policy, n_episodes=count, horizon=horizon, seed=int(rng.integers(2**63))
    )
    step_ratio = policy.log_probabilities() - reference.log_probabilities()
    return step_ratio[episodes.states[-1], episodes.actions[-1]]  # type: ignore[no-any-return]


def _fresh_action_moments(example, walker: int, first: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Exact mean and sd of a _fresh_action_sampler's term, over every trajectory of the walker.

    Given the states, the terms of different steps are independent with mean KL_s and variance
    Var_{b~first}[log first/other] at s_t: total variance = E[conditional variance] + Var[mean].
    """
    mdp, horizon = example[0], example[3]
    log_first, log_other = (
        example[first].log_probabilities(),
        example[3 - first].log_probabilities(),
    )
    log_ratio, p_first = log_first - log_other, np.exp(log_first)
    kl = (p_first * log_ratio).sum(axis=1)
    spread = (p_first * (log_ratio - kl[:, None]) ** 2).sum(axis=1)
    paths = exact.trajectories(mdp, example[walker], horizon)
    conditional_mean, conditional_variance = (
        kl[paths.states].sum(axis=1),
        spread[paths.states].sum(axis=1),
    )
    mean = float(paths.probabilities @ conditional_mean)
    variance = float(paths.probabilities @ (conditional_variance + (conditional_mean - mean) ** 2))
    return mean, np.sqrt(variance)


def _chain_rule_separated(example) -> bool:  # type: ignore[no-untyped-def]
    mdp, policy, reference, horizon = example
    paths = exact.trajectories(mdp, policy, horizon)
    step_ratio = policy.log_probabilities() - reference.log_probabilities()
    terms = step_ratio[paths.states, paths.actions].sum(axis=1)
    target = np.array(chain_rule_value(example))
    variants = [
        tuple(np.array(v) for v in _fresh_action_moments(example, walker, first))
        for walker, first in ((2, 1), (1, 2))
    ]
    last = step_ratio[paths.states[:, -1], paths.actions[:, -1]]  # last_step_log_ratio_samples
    variants.append(_moments(last, paths.probabilities))
    return _separated(_moments(terms, paths.probabilities), variants, target)


chain_rule_mc_examples = _steerable_example().filter(_chain_rule_separated)
# 1 component: sample_size(0.05, 1) at false alarm 5e-7 = 21,625 episodes of 3-5 steps.
CHAIN_RULE_SAMPLES = _mc_samples(1)


# ============================================================================ claims
CLAIMS = (
    Claim(
        id="kl-nonnegative",
        title="Gibbs' inequality: the KL divergence is non-negative",
        statement=Statement(
            kl_pq,
            total(p[i]) - total(q[i]),
            relation=">=",
            derivation="gibbs",
            where=(
                r"p_i, q_i > 0;\ \text{for probability vectors the bound is } 1 - 1 = 0"
                r"\text{, so } \mathrm{KL}(p\,\|\,q) \ge 0"
            ),
        ),
        assumptions=(
            "Finitely many outcomes, any number n >= 1 of them (the derivation is for general n).",
            "q_i > 0 wherever p_i > 0 (otherwise KL = +infinity and the bound is trivial); "
            "0 log 0 = 0.",
            "The symbolic derivation runs on the support of p (p_i > 0) for positive vectors "
            "that need not be normalised; the derivation 'normalised' shows that the bound "
            "sum p - sum q is 0 for probability vectors. Outcomes with p_i = 0 add 0 to KL and "
            "-q_i <= 0 to the bound, so the bound still holds.",
        ),
        references=(
            "Kullback, S. and Leibler, R. A., *On Information and Sufficiency*, Ann. Math. "
            "Statist. 22, 1951.",
            "Cover, T. M. and Thomas, J. A., *Elements of Information Theory*, 2nd ed., 2006, "
            "Thm. 2.6.3 (information inequality).",
        ),
        summary=(
            "A KL penalty or a KL estimate that comes out negative is a bug (up to sampling "
            "noise for k1): the divergence itself never is."
        ),
        symbolic=SymbolicLeg((log_bound, kl_remainder, gibbs, normalised)),
        exact=ExactLeg(
            distribution_pairs,
            lhs=kl_by_scipy,
            symbols=(p, q, n),
            arguments=on_support,
            derivation="kl-remainder",
            rtol=lambda ex: exact_rtol(1.0, ex[0].size),
            error_scale=_gibbs_error_scale,
            description=(
                "KL(p || q) as the sum of scipy.special.rel_entr(p, q) vs the lambdified "
                "conclusion of 'kl-remainder', sum_i p_i g(q_i/p_i) + sum p - sum q with "
                "g(x) = x - 1 - log x, on the support of p; pairs include zeros, one-hot and "
                "near-deterministic p"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            gibbs_mc_examples,
            gibbs_samples,
            gibbs_reference,
            n_samples=GIBBS_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "means of k1 = -log r and k3 = r - 1 - log r over x ~ p (log r = log q(x)/p(x)) "
                "vs KL(p || q) by scipy.special.rel_entr, and the negative part min(k3, 0) vs 0"
            ),
        ),
        mutants=(
            Mutant(
                "direction-swapped",
                "KL(q || p) in place of KL(p || q): the expectation taken under the other "
                "distribution, with the ratio inverted",
                symbolic=SymbolicMutation("kl-remainder", remainder_form(q, p)),
                monte_carlo=direction_swapped_gibbs_samples,
            ),
            Mutant(
                "sign-flipped",
                "-KL(p || q), i.e. the log-ratio the wrong way round (sum p log(q/p))",
                symbolic=SymbolicMutation("kl-remainder", -remainder_form(p, q)),
                monte_carlo=sign_flipped_gibbs_samples,
            ),
            Mutant(
                "reverse-weighted",
                "sum_i q_i log(p_i / q_i): weights q instead of p (this is -KL(q || p) <= 0)",
                symbolic=SymbolicMutation("kl-remainder", total(q[i] * sp.log(p[i] / q[i]))),
                monte_carlo=reverse_weighted_gibbs_samples,
            ),
        ),
        notes=(
            "The only fact sympy does not derive by itself is that an integral over [0, 1] of a "
            "non-negative integrand is non-negative: the lemma `log-bound` rewrites "
            "$g(x) = x - 1 - \\log x$ as $\\int_0^1 (x-1)^2 (1-s)/(1 + (x-1)s)^2\\, ds$ (each step "
            "proved by evaluating the integrals), and the sympy function `log_bound_gap` "
            "(printed $g$) reports $g(x) \\ge 0$ for $x > 0$ exactly when sympy proves that "
            "integrand non-negative at $s = v/(1+v)$, $v > 0$. The exact leg compares the KL "
            "itself, not the inequality: the identity `kl-remainder` (KL as the sum of the "
            "non-negative gaps $p_i\\, g(q_i/p_i)$ plus $\\sum p - \\sum q$) is lambdified on "
            "the support of $p$ and compared with scipy's `rel_entr`, so a wrong KL (another "
            "direction, a sign) fails there even though it might still be non-negative. The "
            "Monte-Carlo leg samples x ~ p: k1 and k3 are unbiased for KL(p || q), and "
            "k3 = g(r) >= 0 is the lemma sample by sample, so the negative part min(k3, 0) is "
            "identically 0 and is compared with 0 exactly (rlmath.statistics: constant terms). "
            "Its mutant variants estimate KL(q || p), negate the estimators, or draw x from q "
            "instead of p."
        ),
    ),
    Claim(
        id="kl-gradient-vanishes-at-reference",
        title="The gradient of the KL to a reference policy vanishes at the reference",
        statement=Statement(
            reference_gradients,
            sp.zeros(2, 1),
            derivation="at-reference",
            where=(
                r"\text{every direction } \delta;\ \pi_\theta(i) = e^{\theta_i} / \textstyle\sum_j "
                r"e^{\theta_j};\ \text{rows: } \mathrm{KL}(\pi_{\theta'}\,\|\,\pi_\theta),\ "
                r"\mathrm{KL}(\pi_\theta\,\|\,\pi_{\theta'})"
            ),
            symbol_names={theta_ref.label: r"\theta'"},
        ),
        assumptions=(
            "Softmax policy over n actions (general n), logits theta; the reference is "
            "pi_theta' with logits theta'.",
            "Gradients are taken through directional derivatives d/dh KL(theta + h delta) at "
            "h = 0 for an arbitrary direction delta; the gradient is the coefficient of delta.",
        ),
        references=(
            "Schulman, J. et al., *Trust Region Policy Optimization*, ICML 2015, Sec. 6 and "
            "App. C (the KL's first-order term vanishes).",
            "Cover, T. M. and Thomas, J. A., *Elements of Information Theory*, 2nd ed., 2006, "
            "Thm. 2.6.3 (KL is minimised, at 0, where the distributions agree).",
        ),
        summary=(
            "A KL penalty to a reference policy exerts no force at the reference itself, in "
            "either direction: away from it, grad KL(pi' || pi) = pi - pi'."
        ),
        symbolic=SymbolicLeg((gradients, gradients_at_reference)),
        exact=ExactLeg(
            logit_pairs,
            lhs=complex_step_gradients,
            symbols=(theta, theta_ref, delta, n),
            arguments=gradient_arguments,
            derivation="gradients",
            rtol=lambda ex: exact_rtol(1.0, 2 * ex[0].size),
            error_scale=_gradient_error_scale,
            description=(
                "both KL gradients by complex-step differentiation of the definition vs the "
                "lambdified conclusion of 'gradients' (pi_theta - pi' and pi_k (log pi_k/pi'_k "
                "- KL)) at delta = e_k, on independent and nearby (theta, theta'), the latter "
                "down to theta = theta'"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            gradient_mc_examples,
            _gradient_sampler(),
            gradient_reference,
            n_samples=GRADIENT_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "score-function estimators of both KL gradients, -(e_a - pi_theta) at a ~ pi' "
                "and (e_b - pi_theta)(log pi_theta(b)/pi'(b) + 1) at b ~ pi_theta, at theta = "
                "theta' and at theta' + step, vs the lambdified conclusion of 'gradients' "
                "(0 at theta')"
            ),
        ),
        mutants=(
            Mutant(
                "negative-entropy-only",
                "the gradient of sum pi log pi alone (the cross term -sum pi log pi' dropped), "
                "pi_k (log pi_k - sum pi log pi), which is not zero at the reference",
                symbolic=SymbolicMutation(
                    "gradients",
                    sp.Matrix(
                        [
                            forward_gradient_form,
                            total(
                                pi(i)
                                * (sp.log(pi(i)) - mean(pi, lambda m: sp.log(pi(m))))
                                * delta[i]
                            ),
                        ]
                    ),
                ),
                monte_carlo=_gradient_sampler(**GRADIENT_MUTANT_TERMS["negative-entropy-only"]),
            ),
            Mutant(
                "cross-entropy-only",
                "the gradient of -sum pi log pi' alone (the entropy term dropped)",
                symbolic=SymbolicMutation(
                    "gradients",
                    sp.Matrix(
                        [
                            forward_gradient_form,
                            total(
                                -pi(i)
                                * (sp.log(pi_ref(i)) - mean(pi, lambda m: sp.log(pi_ref(m))))
                                * delta[i]
                            ),
                        ]
                    ),
                ),
                monte_carlo=_gradient_sampler(**GRADIENT_MUTANT_TERMS["cross-entropy-only"]),
            ),
            Mutant(
                "normaliser-forgotten",
                "grad KL(pi' || pi_theta) = -pi' from log pi_theta(i) = theta_i: the gradient of "
                "log Z(theta) forgotten",
                symbolic=SymbolicMutation(
                    "gradients",
                    sp.Matrix([-total(pi_ref(i) * delta[i]), reverse_gradient_form]),
                ),
                monte_carlo=_gradient_sampler(**GRADIENT_MUTANT_TERMS["normaliser-forgotten"]),
            ),
        ),
        notes=(
            "The statement is the derivation `at-reference`: both directional derivatives at "
            "theta = theta' vanish. The exact leg checks the general-theta gradients of "
            "`gradients` (of which `at-reference` is the value at theta = theta'), on pairs "
            "down to theta = theta'; there both sides are rounding noise, so the tolerance is "
            "relative to the size of the terms that cancel, not of the result. Each mutant "
            "changes the general gradient, and so is also non-zero at the reference. "
            "Penalties whose gradient also vanishes at the reference (the log-ratio "
            "expectation under pi', any smooth function of KL) are not mutants. The Monte-Carlo "
            "leg averages the score-function gradient estimators a practitioner would use (the "
            "sampling side fixed for KL(pi' || pi_theta), the log-derivative trick for "
            "KL(pi_theta || pi')) at theta' and at a moved theta; each mutant's variant is the "
            "same estimator with the mutant's mistake (a dropped term, the score without -pi)."
        ),
    ),
    Claim(
        id="kl-hessian-is-fisher",
        title="The Hessian of the KL at the reference is the Fisher information",
        statement=Statement(
            curvature.start,
            curvature.conclusion,
            derivation="curvature",
            where=(
                r"\text{every direction } \delta;\ \text{rows: } \mathrm{KL}(\pi_{\theta'}\,\|\,"
                r"\pi_{\theta'+h\delta}),\ \mathrm{KL}(\pi_{\theta'+h\delta}\,\|\,\pi_{\theta'});\ "
                r"\text{both are } \delta^\top F \delta,\ F = \mathrm{diag}(\pi') - \pi'\,{\pi'}^\top"
            ),
            symbol_names={theta_ref.label: r"\theta'"},
        ),
        assumptions=(
            "Softmax policy over n actions (general n), logits theta = theta' + h delta.",
            "A symmetric matrix is determined by its quadratic form: the derivations compute "
            "delta^T H delta for an arbitrary direction delta.",
        ),
        references=(
            "Schulman, J. et al., *Trust Region Policy Optimization*, ICML 2015, Sec. 6 "
            "(quadratic approximation of the KL constraint by the Fisher information).",
            "Amari, S., *Natural Gradient Works Efficiently in Learning*, Neural Computation 10, "
            "1998.",
        ),
        summary=(
            "Near the reference, either KL is h^2/2 delta^T F delta with F the Fisher "
            "information: a KL trust region is a Fisher-metric ball (natural gradient, TRPO)."
        ),
        symbolic=SymbolicLeg((curvature, fisher, taylor)),
        exact=ExactLeg(
            reference_and_direction,
            lhs=kl_at_small_step,
            symbols=(theta_ref, delta, h, n),
            arguments=taylor_arguments,
            derivation="taylor",
            rtol=_hessian_rtol,
            description=(
                "KL(pi' || pi_{theta'+h delta}) and KL(pi_{theta'+h delta} || pi') in 80-digit "
                "arithmetic, and h^2/2 E_pi'[(score . delta)^2] from SoftmaxPolicy.score_row, vs "
                "the lambdified conclusion of 'taylor', h^2/2 delta^T F delta; h is chosen so "
                "that the Taylor remainder is at most 1e-10 of the quadratic term (the bound is "
                "in the tolerance)"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            curvature_mc_examples,
            _curvature_sampler(),
            curvature_reference,
            n_samples=CURVATURE_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "the Fisher form as the mean of (score(a) . delta)^2, a ~ pi', and both KLs at "
                "theta' + h delta by k3 (a ~ pi', b ~ pi_theta) over h^2, vs the lambdified "
                "delta^T F delta and h^2/2 delta^T F delta / h^2"
            ),
        ),
        mutants=(
            Mutant(
                "fisher-without-outer-product",
                "F = diag(pi'): the -pi' pi'^T term dropped",
                symbolic=SymbolicMutation("taylor", sp.Matrix([h**2 / 2 * second_moment] * 3)),
                monte_carlo=_curvature_sampler(
                    **CURVATURE_MUTANT_FLAGS["fisher-without-outer-product"]
                ),
            ),
            Mutant(
                "no-half",
                "KL ~ delta^T F delta: the 1/2 of Taylor's theorem forgotten",
                symbolic=SymbolicMutation("taylor", sp.Matrix([2 * quadratic_model] * 3)),
                monte_carlo=_curvature_sampler(**CURVATURE_MUTANT_FLAGS["no-half"]),
            ),
            Mutant(
                "log-partition-curvature-without-mean",
                "(log Z)'' taken as Z''/Z, the -(Z'/Z)^2 forgotten: both Hessians diag(pi')",
                symbolic=SymbolicMutation("curvature", sp.Matrix([second_moment, second_moment])),
            ),
        ),
        notes=(
            "The statement is the derivation `curvature` (second directional derivatives of "
            "both KLs at the reference); the exact leg evaluates the lambdified conclusion of "
            "`taylor`, the quadratic models those curvatures give, against the KLs at a small "
            "step. The Monte-Carlo leg estimates the Fisher form as "
            "E_{a~pi'}[(score(a) . delta)^2] and both KLs at theta' + h delta with the unbiased "
            "k3 (h chosen so that the Taylor remainder is below 2e-7 of the quadratic term, far "
            "below a standard error). Its variants: the score taken as e_a (no -pi', giving "
            "diag pi'), and the KL estimated by (log r)^2, the 1/2 of k2 forgotten."
        ),
    ),
    Claim(
        id="trajectory-kl-chain-rule",
        title="The KL between trajectory distributions is the expected sum of per-state KLs",
        statement=Statement(
            trajectory_chain_rule.start,
            trajectory_chain_rule.conclusion,
            where=(
                r"j \le M \text{ indexes the } H\text{-step prefixes } (s_0, a_0, \dots, "
                r"s_{H-1}, a_{H-1}),\ s \text{ and } a \text{ are } s_H, a_H;\ "
                r"\text{the distributions are normalised positive weights (defined below)};\ "
                r"\text{so the left side is } D_{H+1} = "
                r"\mathrm{KL}(p_\theta(\tau)\,\|\,p_{\theta'}(\tau)) \text{ over } H+1 "
                r"\text{ steps};\ \text{the right side is } D_H + \mathbb E_\theta[\mathrm{KL}_{s_H}];\ "
                r"\text{with } D_0 = 0 \text{ and } K_{H+1} = K_H + \mathbb E_\theta"
                r"[\mathrm{KL}_{s_H}] \text{ this gives};\ D_H = \sum_{t<H} \mathbb E_\theta[\mathrm{KL}(\pi_\theta"
                r"(\cdot|s_t)\,\|\,\pi_{\theta'}(\cdot|s_t))] \text{ for every } H"
            ),
            symbol_names=TRAJECTORY_NAMES,
        ),
        assumptions=(
            "Both trajectory distributions share rho_0 and P; trajectories have H steps "
            "(s_0, a_0, ..., s_{H-1}, a_{H-1}).",
            "pi_theta' > 0 wherever pi_theta > 0 (true for softmax policies).",
            "Symbolic leg: induction on the horizon, for any numbers of states, actions and "
            "prefixes. D_H = KL(p_theta || p_theta') over H steps and K_H = sum_{t<H} "
            "E_theta[KL(pi_theta(.|s_t) || pi_theta'(.|s_t))] are both 0 at H = 0 (the empty "
            "trajectory, an empty sum). 'induction-step' proves D_{H+1} = D_H + "
            "E_theta[KL_{s_H}] for any H-step prefix distributions of the two policies that "
            "share the dynamics to s_H; 'right-side-step' proves K_{H+1} = K_H + kappa_H, "
            "kappa_H = E_theta[KL_{s_H}] (the sum over t gains t = H); so D_H = K_H for every "
            "H. 'base-case' does H = 1 directly (rho_0 cancels). The prefix distributions and "
            "E_theta[KL_{s_H}] = sum_j p_theta(j) sum_s P(s|j) KL_s are the marginals of the "
            "trajectory distribution (tower property), taken as definitions.",
            "Distributions are written as normalised positive weights, so prefixes, next states "
            "or actions of probability 0 are left out of the sums (0 log 0 = 0). The sums run "
            "over at least two prefixes, states and actions (j = 0..M, s = 0..S, a = 0..A with "
            "M, S, A >= 1, so that the random points that refute the mutants always have two of "
            "each); one prefix, state or action is the same instance with that element split "
            "into two identical halves (half the weight each under both policies), so every "
            "size is covered.",
            "Exact leg: MDPs with up to 3 states, 3 actions and horizon 1-4; the Monte-Carlo "
            "leg horizons 3 to 5.",
        ),
        references=(
            "Cover, T. M. and Thomas, J. A., *Elements of Information Theory*, 2nd ed., 2006, "
            "Thm. 2.5.3 (chain rule for relative entropy).",
            "Schulman, J. et al., *Trust Region Policy Optimization*, ICML 2015, Sec. 5 "
            "(state-averaged KL between policies).",
        ),
        summary=(
            "The KL between the trajectory distributions of two policies is the per-state "
            "policy KL summed over time under the first policy's state distribution: the "
            "dynamics cancel."
        ),
        symbolic=SymbolicLeg((trajectory_chain_rule, trajectory_chain_rule_base, right_side_step)),
        exact=ExactLeg(
            mdp_two_policies_horizon,
            lhs=trajectory_kl,
            rtol=_chain_rule_rtol,
            symbols=TRAJECTORY_SYMBOLS,
            arguments=induction_arguments,
            error_scale=_chain_rule_error_scale,
            witnesses=(STEERED_WITNESS,),
            witness_reason=(
                "two states that the actions steer (action a leads to state a with "
                "probability 0.9) and two policies preferring opposite actions, horizon 3: the "
                "policies' state distributions at the last step differ, so weighting the "
                "per-state KL by the reference's states changes the value (random MDPs may "
                "have one state or dynamics the actions barely move)"
            ),
            description=(
                "KL over every H-step trajectory (rlmath.exact.trajectories, p_theta' recomputed "
                "with the dynamics) vs the lambdified induction step D_{H-1} + "
                "E_theta[KL_{s_{H-1}}] on the (H-1)-step prefixes (for H = 1 the empty prefix "
                "and rho_0)"
            ),
        ),
        monte_carlo=monte_carlo_leg(
            chain_rule_mc_examples,
            trajectory_kl_samples,
            chain_rule_value,
            n_samples=CHAIN_RULE_SAMPLES,
            n_examples=MC_EXAMPLES,
            description=(
                "per-episode sum_t log pi_theta(a_t|s_t)/pi_theta'(a_t|s_t) over tau ~ p_theta "
                "(rollouts, trajectory_kl with k1) vs the unrolled statement sum_t sum_s "
                "Pr_theta(s_t = s) KL_s (rlmath.exact.state_distributions)"
            ),
        ),
        mutants=(
            Mutant(
                "reference-state-distribution",
                "states weighted by the reference policy's state distribution (s_H reached "
                "from theta' prefixes)",
                symbolic=SymbolicMutation("induction-step", REFERENCE_STATE_DISTRIBUTION),
                monte_carlo=reference_state_samples,
            ),
            Mutant(
                "per-state-kl-reversed",
                "KL(pi_theta' || pi_theta) per state instead of KL(pi_theta || pi_theta')",
                symbolic=SymbolicMutation("induction-step", PER_STATE_KL_REVERSED),
                monte_carlo=reversed_kl_samples,
            ),
            Mutant(
                "prefix-kl-dropped",
                "the KL of the last step only: the prefix's KL D_H not carried into D_{H+1}",
                symbolic=SymbolicMutation("induction-step", PREFIX_KL_DROPPED),
                monte_carlo=last_step_log_ratio_samples,
            ),
        ),
        notes=(
            "The statement is the induction step D_{H+1} = D_H + E_theta[KL_{s_H}]; with "
            "D_0 = 0 and the same recursion for the right side (derivation `right-side-step`) "
            "it gives the chain rule for every horizon. The exact leg checks the step on every "
            "horizon 1-4 (the lhs enumerates whole trajectories, the rhs is the lambdified "
            "conclusion on the shorter prefixes); the Monte-Carlo leg checks the unrolled "
            "statement: it samples trajectories of theta and sums the per-step log-ratios "
            "(k1; rlmath.estimators.trajectory_kl), on MDPs whose actions steer the state, so "
            "that the state distributions of theta and theta' differ, against sum_t sum_s "
            "Pr_theta(s_t = s) KL_s. The mutants' variants draw fresh actions at each visited "
            "state: with the states from theta' trajectories, or with the per-state KL's "
            "arguments swapped (kl_terms(pi', pi)); or keep the last step's log-ratio only."
        ),
    ),
)
