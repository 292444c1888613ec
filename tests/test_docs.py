"""The generated documentation is fresh, deterministic, complete, and matches a verify run.

What runs by default (a few seconds plus two claims' verify runs):

- every Markdown page of ``docs/`` equals what ``rlmath docs`` renders now from the current
  claims and specs and the committed evidence records (``docs/claims/evidence.json``), so a
  change to a claim's statement, derivation, mutants, notes or references, a new claim or a
  new spec without regenerating the docs fails here;
- the committed evidence of two claims equals a fresh ``rlmath verify --seed 0 --json`` run;
- rendering twice gives the same bytes (pages and a figure).

Opt-in (``-m slow``): the full regeneration (every claim verified again, every figure drawn),
compared byte for byte with ``docs/`` (the figures need the matplotlib that drew them), and the
Sphinx build with ``-W`` plus the headless-Chromium check of the built site.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import sympy as sp

from rlmath.claims import Derivation, LegResult, Step
from rlmath.cli import main
from rlmath.docs import (
    EVIDENCE_FILE,
    SEED,
    claim_sources,
    compute_evidence,
    extra_pages_in,
    findings,
    markdown_pages,
    plot_files,
    stale_files,
)
from rlmath.docs.formatting import (
    ascii_math_to_latex,
    display_latex,
    format_number,
    rule_markdown,
    step_latex,
)
from rlmath.docs.pages import (
    MISSING_SUMMARY,
    OTHER_TOPIC,
    TOPICS,
    claim_page,
    claim_topic,
    displayed_steps,
    evidence_markdown,
    evidence_record,
    index_page,
    merged_steps,
    missing_summaries,
)
from rlmath.verify import load_claims

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REGENERATE = "run `rlmath docs` and commit docs/"

pytestmark = pytest.mark.skipif(
    not (DOCS / EVIDENCE_FILE).is_file(), reason="docs/ not generated in this checkout"
)


def committed_records() -> dict[str, dict]:
    evidence = json.loads((DOCS / EVIDENCE_FILE).read_text(encoding="utf-8"))
    return {record["id"]: record for record in evidence["claims"]}


@pytest.fixture(scope="module")
def claims():
    return load_claims()


@pytest.fixture(scope="module")
def pages(claims):
    records = committed_records()
    missing = sorted({c.id for c in claims} - set(records))
    assert not missing, f"claims without a page: {missing}; {REGENERATE}"
    return markdown_pages(claims, records, extra_pages=extra_pages_in(DOCS))


# ----------------------------------------------------------------------------- freshness
def test_every_claim_and_spec_has_a_page(claims, pages):
    from rlmath.specs import SPECS

    for claim in claims:
        assert (DOCS / f"claims/{claim.id}.md").is_file(), f"no page for {claim.id}; {REGENERATE}"
    for name in SPECS:
        assert (DOCS / f"specs/{name}.md").is_file(), f"no page for spec {name}; {REGENERATE}"


def _differing(pages, names):
    return [
        path
        for path in names
        if not (DOCS / path).is_file() or (DOCS / path).read_text(encoding="utf-8") != pages[path]
    ]


def test_markdown_pages_are_fresh(pages):
    from rlmath.docs.audit_page import unreproducible_files

    # without PyTorch the audit page cannot be regenerated as committed: the next test
    # compares it where PyTorch is installed, and is skipped (not passed) elsewhere
    differing = _differing(pages, [p for p in pages if p not in unreproducible_files()])
    assert not differing, f"out of date: {differing}; {REGENERATE}"
    stale = [p for p in stale_files(DOCS, pages) if not p.startswith("plots/")]
    assert not stale, f"files no longer generated: {stale}; {REGENERATE}"


def test_audit_page_is_fresh(pages):
    from rlmath.docs.audit_page import AUDIT_JSON, AUDIT_PAGE

    pytest.importorskip("torch", reason="the audit page's PyTorch rows need PyTorch")
    differing = _differing(pages, [AUDIT_PAGE, AUDIT_JSON])
    assert not differing, f"out of date: {differing}; {REGENERATE}"


def test_every_figure_is_committed():
    from rlmath.plots import FIGURES

    for figure in FIGURES:
        path = DOCS / f"plots/{figure.name}.png"
        assert path.is_file(), f"missing {path}; {REGENERATE}"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- evidence
EVIDENCE_CLAIMS = ("importance-sampling-unbiased", "importance-sampling-variance")


@pytest.mark.parametrize("claim_id", EVIDENCE_CLAIMS)
def test_page_evidence_matches_a_verify_run(claim_id, claims, tmp_path, capsys):
    """The page shows exactly what `rlmath verify --only ID --seed 0 --json` reports."""
    claim = next(c for c in claims if c.id == claim_id)
    out = tmp_path / "verify.json"
    assert main(["verify", "--only", claim_id, "--seed", str(SEED), "--json", str(out)]) == 0
    capsys.readouterr()
    reported = json.loads(out.read_text())["claims"][0]
    record = evidence_record(claim, reported)
    assert record == committed_records()[claim_id], f"evidence changed; {REGENERATE}"
    page = (DOCS / f"claims/{claim_id}.md").read_text(encoding="utf-8")
    assert evidence_markdown(claim, record) in page
    # The numbers themselves, as the page prints them.
    exact = reported["legs"]["exact"]
    assert f"| generated examples | {exact['examples']} |" in page
    assert exact["max_error"] <= exact["rtol"]
    assert f"seed {SEED}" in page
    for mutant in reported["mutants"]:
        assert f"`{mutant['id']}`" in page


def test_exact_evidence_hides_rounding_noise_but_shows_failures(claims):
    claim = claims[0]
    passed = LegResult("verified", {"examples": 40, "max_error": 2.2e-16, "rtol": 1.04e-13})
    failed = LegResult("failed", {"examples": 3, "max_error": 0.5, "rtol": 1e-13}, "boom")
    result = {"id": claim.id, "status": "verified", "seed": 0, "mutants": []}
    shown = evidence_record(claim, {**result, "legs": {"exact": passed.to_dict()}})
    assert shown["legs"]["exact"]["max_error"] == "<= rtol"
    assert "seconds" not in json.dumps(shown)
    shown = evidence_record(claim, {**result, "legs": {"exact": failed.to_dict()}})
    assert shown["legs"]["exact"]["max_error"] == "0.5"
    assert shown["legs"]["exact"]["failure"] == "boom"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (-0.0, "0"), (1 / 3, "0.333"), (12345.678, "1.23e+04"), (7, "7"), (True, "yes")],
)
def test_format_number(value, text):
    assert format_number(value) == text


# ----------------------------------------------------------------------------- determinism
def test_rendering_twice_gives_the_same_bytes(claims, pages):
    again = markdown_pages(claims, committed_records(), extra_pages=extra_pages_in(DOCS))
    assert again == pages


def test_a_figure_is_byte_identical_when_drawn_twice():
    pytest.importorskip("matplotlib")
    from rlmath.plots import FIGURES, render_png

    figure = next(f for f in FIGURES if f.name == "ppo_clip")
    assert render_png(figure) == render_png(figure)


def test_plots_module_does_not_import_matplotlib():
    code = "import sys, rlmath.plots, rlmath.docs; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ----------------------------------------------------------------------------- opt-in
@pytest.mark.slow
def test_full_regeneration_matches_docs(claims):
    """Every claim verified again and every figure drawn: docs/ must match byte for byte."""
    pytest.importorskip("matplotlib")
    records = compute_evidence(claims, seed=SEED)
    expected = {
        path: text.encode("utf-8")
        for path, text in markdown_pages(claims, records, extra_pages=extra_pages_in(DOCS)).items()
    }
    expected.update(plot_files())
    differing = [p for p, b in expected.items() if (DOCS / p).read_bytes() != b]
    assert not differing, f"out of date: {differing}; {REGENERATE}"


@pytest.mark.slow
def test_site_builds_and_renders_in_chromium(tmp_path):
    """sphinx-build -W succeeds and headless Chromium shows typeset math and the figures."""
    if importlib.util.find_spec("sphinx") is None:
        pytest.skip('needs the docs extra: pip install "rlmath[docs]"')
    html = tmp_path / "html"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(html),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    if shutil.which("chromium") is None:
        pytest.skip("no chromium (Debian package chromium) for the rendering check")
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts/check_site_chromium.py"), str(html)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


# ----------------------------------------------------------------------------- typesetting
@pytest.mark.parametrize(
    ("rule", "markdown"),
    [
        ("d log f = df / f", r"$d \log f = df / f$"),
        ("move gamma lambda into the sum", r"move $\gamma \lambda$ into the sum"),
        ("(gamma lambda)^(l+1)", r"$(\gamma \lambda)^{l+1}$"),
        (
            "sum_i q_i k_i with k1 = -log r",
            r"$\sum_{i} q_{i} k_{i}$ with $k_{1} = -\log r$",
        ),
        (
            "E_q[X] = E_p[f] (derivation 'unbiased')",
            r"$\E_{q}[X] = \E_{p}[f]$ (derivation 'unbiased')",
        ),
        ("KL(pi || pi_ref) >= 0", r"$\KL (\pi \| \pi_{\mathrm{ref}}) \ge 0$"),
        ("log of a product is the sum of the logs", "log of a product is the sum of the logs"),
        ("A KL penalty", "A KL penalty"),
        # written math is kept as written, the rest escaped
        (
            "the bound $\\log x \\le x - 1$ with *g* and a_b",
            "the bound $\\log x \\le x - 1$ with \\*g\\* and a\\_b",
        ),
        # prose with Markdown specials and no formula: escaped, never typeset
        ("see [this] | that", "see \\[this\\] \\| that"),
        ("- a leading dash", "\\- a leading dash"),
        # a subscript with its own subscript, e-notation, abbreviations, years and ordinals
        ("E_pi_old[rho f]", r"$\E_{\pi_{\mathrm{old}}}[\rho f]$"),
        ("alpha = 1e-06 and 2.5e-3", r"$\alpha = 10^{-6}$ and $2.5 \times 10^{-3}$"),
        ("below c A (Ye et al.).", "below $c A$ (Ye et al.)."),
        ("Shao et al. 2024, eq. (3)", "Shao et al. 2024, eq. (3)"),
        ("the G samples are i.i.d.", "the $G$ samples are i.i.d."),
        ("the k-th TD error", "the k-th TD error"),
        ("log-sum-exp of the logits", "log-sum-exp of the logits"),
        ("-+ beta sigma(z) and +-0.75", r"$\mp \beta \sigma (z)$ and $\pm 0.75$"),
        ("r in {0, 1}", r"$r$ in $\{0, 1\}$"),
        ("J = rho_0^T V", r"$J = \rho_{0}^{\top} V$"),
    ],
)
def test_rule_markdown(rule, markdown):
    assert rule_markdown(rule) == markdown


def test_rule_markdown_can_be_switched_off():
    assert rule_markdown("d log f = df / f", automatic=False) == "d log f = df / f"


def test_ascii_math_refuses_prose_and_unbalanced_brackets():
    assert ascii_math_to_latex("the sum of the logs") is None
    assert ascii_math_to_latex("f(x") is None
    assert ascii_math_to_latex("pi*(y) / pi_ref(y)") == r"\pi^{*}(y) / \pi_{\mathrm{ref}}(y)"


def test_identity_matrix_prints_as_I():
    S = sp.Symbol("S", integer=True, positive=True)
    P = sp.MatrixSymbol("P", S, S)
    assert step_latex(sp.Identity(S) - P) == "I - P"
    assert step_latex(sp.eye(3)) == "I_{3}"
    assert step_latex(sp.Matrix([[1, 0], [0, 2]])) != "I_{2}"
    # the proofs write the identity as the number 1 in a non-commutative product
    gamma = sp.Symbol("gamma")
    Pi, Pn = sp.symbols("Pi P", commutative=False)
    assert step_latex((1 - gamma * Pi * Pn) ** -1) == r"\left(I - \gamma \Pi P\right)^{-1}"
    assert step_latex(2 - gamma * Pi * Pn) == r"2 I - \gamma \Pi P"
    # a commutative sum keeps its number
    assert step_latex(1 - gamma) == "1 - \\gamma"


def test_a_name_whose_definition_has_a_sum_is_not_bracketed_as_a_factor():
    from rlmath.named_functions import Named

    k, m = sp.Symbol("k", integer=True), sp.Symbol("m", integer=True)
    n = sp.Symbol("n", integer=True, positive=True)
    theta, Q = sp.IndexedBase("theta", real=True), sp.IndexedBase("Q", real=True)
    quotient = sp.exp(theta[k]) / sp.Sum(sp.exp(theta[m]), (m, 0, n))
    product = Named(r"\pi_{k}", quotient) * Q[k]
    assert sp.latex(product) == r"\left(\pi_{k}\right) {Q}_{k}"  # sympy sees the sum inside
    assert step_latex(product) == r"\pi_{k} {Q}_{k}"
    # the other factors are bracketed as before
    assert r"\left({Q}_{k} + 1\right)" in step_latex(Named(r"\pi_{k}", quotient) * (Q[k] + 1))


def test_transposes_print_with_top():
    assert step_latex(sp.Symbol("rho_0^T", commutative=False)) == r"\rho_{0}^{\top}"
    assert step_latex(sp.MatrixSymbol("A", 2, 2).T) == r"A^{\top}"


def test_a_long_display_writes_the_logistic_function_as_sigma():
    theta = sp.IndexedBase("theta")
    logistic = sp.exp(theta[0]) / (sp.exp(theta[0]) + 1)
    short = display_latex(logistic, "=")
    assert r"\sigma" not in short and r"\frac" in short
    long = display_latex(sp.Add(*(logistic * sp.Symbol(f"x_{i}") for i in range(12))), "=")
    assert r"\sigma{\left({\theta}_{0} \right)}" in long and "e^{" not in long
    # a product of two logistic functions, nested as the proofs build them
    nested = sp.Mul(logistic, sp.exp(theta[1]) / (sp.exp(theta[1]) + 1), evaluate=False)
    wide = display_latex(sp.Add(*(nested * sp.Symbol(f"x_{i}") for i in range(6))), width=20)
    assert r"\sigma{\left({\theta}_{1} \right)}" in wide and "e^{" not in wide
    assert r"\sigma{\left(- {\theta}_{0} \right)}" in display_latex(
        sp.Add(*(sp.Symbol(f"x_{i}") / (sp.exp(theta[0]) + 1) for i in range(12))), width=20
    )


def test_e_notation_in_prose_is_typeset_and_in_tables_pipes_stay_out_of_math():
    from rlmath.docs.formatting import escape_markdown
    from rlmath.docs.pages import prose_markdown

    assert escape_markdown("false alarm 1e-06, id k1e-3") == "false alarm $10^{-6}$, id k1e-3"
    assert prose_markdown("mean of 1/|y|", in_table=True) == r"mean of $1/\vert y\vert$"
    assert prose_markdown("KL(p || q)", in_table=True) == r"$\KL (p \Vert q)$"


def test_long_sums_are_broken_into_aligned_rows():
    terms = sp.symbols("x_0:40")
    latex = display_latex(sp.Add(*terms), "=")
    assert latex.startswith("\\begin{aligned}[t]\n&= ") and latex.endswith("\\end{aligned}")
    rows = latex.split("\\\\\n")
    assert len(rows) > 2 and all(row.count("x_{") <= 16 for row in rows)
    assert sum(row.count("x_{") for row in rows) == 40  # every term, once
    assert display_latex(terms[0] + terms[1], "=") == "= x_{0} + x_{1}"  # short: one line


def test_long_matrix_entries_are_broken_inside_their_cells():
    terms = sp.symbols("x_0:40")
    latex = display_latex(sp.Matrix([[sp.Add(*terms)], [terms[0]]]), "=")
    assert latex.startswith("= \\left[\\begin{matrix}\\begin{aligned}[t]&")
    assert latex.count("\\quad +") >= 2 and latex.endswith("\\\\x_{0}\\end{matrix}\\right]")
    small = sp.Matrix([[1, 2], [3, 4]])
    assert display_latex(small, "=", width=1) == "= " + step_latex(small)


def test_steps_that_print_the_same_are_merged_and_reported():
    x = sp.Symbol("x")
    derivation = Derivation(
        "merge-me",
        (
            Step(sp.Add(x, x, evaluate=False), "start"),
            Step(sp.UnevaluatedExpr(x) * 2, "collect"),
            Step(2 * x, "evaluate"),  # prints as 2 x, like the step before
        ),
    )
    lines = displayed_steps(derivation)
    assert [line.indices for line in lines] == [(0,), (1, 2)]
    claim = types.SimpleNamespace(
        id="toy",
        summary="",
        statement=types.SimpleNamespace(symbol_names={}),
        symbolic=types.SimpleNamespace(all_derivations=lambda: (derivation,)),
    )
    merged = merged_steps(claim)
    assert len(merged) == 1 and "steps 1, 2" in merged[0] and "'evaluate'" in merged[0]
    notes = findings([claim])
    assert any("toy: no summary" in n for n in notes) and any("print the same" in n for n in notes)


def test_derivation_steps_print_symbols_with_the_statements_names():
    xx = sp.Symbol("xx", positive=True)
    derivation = Derivation("named", (Step(xx + xx, "start"), Step(2 * xx, "add")))
    names = {xx: r"\mathbb E|X|^2"}
    plain = [line.latex for line in displayed_steps(derivation)]
    named = [line.latex for line in displayed_steps(derivation, symbol_names=names)]
    assert all("xx" in latex for latex in plain)
    assert all("xx" not in latex and r"\mathbb E|X|^2" in latex for latex in named)


def test_rlmath_docs_reports_findings(claims, capsys, monkeypatch, tmp_path):
    """`rlmath docs` prints the notes (here: a claim without a summary) before it writes."""
    import rlmath.cli.docs as cli_docs

    without = [dataclasses.replace(claims[0], summary="")]
    monkeypatch.setattr(cli_docs, "load_claims", lambda: without)
    monkeypatch.setattr(cli_docs, "generate", lambda out, **kwargs: {})
    assert main(["docs", "--out", str(tmp_path), "--quiet", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert f"note: {claims[0].id}: no summary" in printed


@pytest.fixture(scope="module")
def rendered(claims, request):
    """Pages of the claims that have committed evidence (new claims have none until the lead
    regenerates docs/), rendered by the current generator."""
    records = committed_records()
    known = [claim for claim in claims if claim.id in records]
    if len(known) == len(claims):  # every claim has its evidence: the pages already rendered
        return known, request.getfixturevalue("pages")
    return known, markdown_pages(known, records, extra_pages=extra_pages_in(DOCS))


def test_every_claim_page_has_a_summary_or_a_visible_placeholder(rendered):
    claims, pages = rendered
    for claim in claims:
        page = pages[f"claims/{claim.id}.md"]
        head = page[: page.index("## Statement")]
        assert "{admonition} In one sentence" in head
        if claim.summary.strip():
            assert rule_markdown(claim.summary.strip()) in head
        else:
            assert MISSING_SUMMARY in head and "rlmath-summary-missing" in head
    missing = missing_summaries(claims)
    assert missing == [c.id for c in claims if not c.summary.strip()]
    if missing:  # the list the lead fills in (not a failure)
        print("claims without a summary:", ", ".join(missing))


def test_rewriting_tags_come_from_the_evidence(claims):
    claim = next(c for c in claims if c.id == "importance-sampling-unbiased")
    record = committed_records()[claim.id]
    derivation = claim.symbolic.all_derivations()[0]
    methods = {derivation.name: ["expand"] * (len(derivation.steps) - 1)}
    legs = {**record["legs"], "symbolic": {**record["legs"]["symbolic"], "step_methods": methods}}
    page = claim_page(claim, {**record, "legs": legs})
    assert page.count('<span class="rlmath-rewriting"') == len(derivation.steps) - 1
    assert "sympy rewritings used (tagged on each step) | expand" in page


def test_index_lists_every_claim_under_a_topic_with_its_summary(rendered):
    claims, pages = rendered
    index = pages["index.md"]
    assert index.index("## Quick start") < index.index("## What is proved, by topic")
    assert "assert_conforms(" in index and "rlmath check" in index and "rlmath verify" in index
    records = committed_records()
    sources = claim_sources(claims)
    for claim in claims:
        topic = claim_topic(claim.id, sources.get(claim.id, ""))
        section = index[index.index(f"### {topic}\n") :]
        section = section[: section.index("\n#", 1)]
        assert f"](claims/{claim.id}.md)" in section, (claim.id, topic)
    assert [t for t, _ in TOPICS][0] == "Policy gradient"
    # a new claim of a new proof file appears without editing the index
    new = dataclasses.replace(claims[0], id="brand-new-claim", summary="It is new.")
    record = {**next(iter(records.values())), "id": new.id}
    page = index_page([new], {new.id: record}, sources={new.id: "proofs/new_topic.py"})
    assert (
        f"### {OTHER_TOPIC}\n\n- [" in page and "](claims/brand-new-claim.md): It is new." in page
    )
