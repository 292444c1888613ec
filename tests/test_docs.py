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

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlmath.claims import LegResult
from rlmath.cli import main
from rlmath.docs import (
    EVIDENCE_FILE,
    SEED,
    compute_evidence,
    extra_pages_in,
    markdown_pages,
    plot_files,
    stale_files,
)
from rlmath.docs.formatting import format_number
from rlmath.docs.pages import evidence_markdown, evidence_record
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


def test_markdown_pages_are_fresh(pages):
    differing = [
        path
        for path, text in pages.items()
        if not (DOCS / path).is_file() or (DOCS / path).read_text(encoding="utf-8") != text
    ]
    assert not differing, f"out of date: {differing}; {REGENERATE}"
    stale = [p for p in stale_files(DOCS, pages) if not p.startswith("plots/")]
    assert not stale, f"files no longer generated: {stale}; {REGENERATE}"


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
