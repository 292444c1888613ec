r"""Generate the documentation from the claims: ``rlmath docs [--out DIR]``.

The documentation *is* the derivations: every claim page is printed from the same
:class:`~rlmath.claims.Claim` objects that ``rlmath verify`` checks, and its evidence is a
seeded ``verify_claim(claim, seed=SEED)`` run. The output folder (``docs/`` by default) gets

- ``index.md``: what rlmath is, the table of claims, how to check your own implementation;
- ``claims/<id>.md``: one page per claim, and ``claims/evidence.json``, the evidence records
  every page was rendered from (see :func:`rlmath.docs.pages.evidence_record`);
- ``specs/<name>.md``: one page per conformance spec of :mod:`rlmath.specs`;
- ``figures.md`` and ``plots/<name>.png``: the figures of :mod:`rlmath.plots`;
- ``audit.md`` and ``audit.json``: "What does your loss optimise?", the audit verdicts of the
  loss zoo :data:`rlmath.audit.styles.LOSS_STYLES` (:mod:`rlmath.docs.audit_page`).

Hand-written pages (``conf.py``, ``api.md``, ``conformance.md``, ``_static/``) and
``libraries.md`` (written by ``scripts/library_report.py``) are left alone;
the generated folders ``claims/``, ``specs/`` and ``plots/`` are owned by the generator (files
it did not write there are deleted).

Determinism: fixed seeds, no timestamps, three significant digits for every number, and no
last-bit float noise on the pages (see :mod:`rlmath.docs.formatting`), so two runs give the
same bytes, and the Markdown is the same on every machine. The PNGs are byte-identical for the
same matplotlib and NumPy versions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rlmath.claims import Claim
from rlmath.docs.pages import (
    claim_page,
    evidence_page,
    evidence_record,
    index_page,
    merged_steps,
    missing_summaries,
    spec_page,
)
from rlmath.verify import ClaimResult, load_claims, proofs_directory, verify_claims

__all__ = [
    "EVIDENCE_FILE",
    "GENERATED_DIRECTORIES",
    "SEED",
    "claim_sources",
    "compute_evidence",
    "figures_page",
    "findings",
    "generate",
    "markdown_pages",
    "plot_files",
    "stale_files",
]

#: Seed of the verify run whose evidence the pages show (``rlmath verify --seed 0``).
SEED = 0
#: Evidence records of every claim, relative to the output folder.
EVIDENCE_FILE = "claims/evidence.json"
#: Folders that belong to the generator.
GENERATED_DIRECTORIES = ("claims", "specs", "plots")
#: Hand-written top-level pages listed in the index when they exist in the output folder.
EXTRA_PAGES = ("api", "conformance", "libraries")


def claim_sources(claims: Iterable[Claim]) -> dict[str, str]:
    """``proofs/<file>.py`` of each claim id (claims loaded by :func:`rlmath.verify.load_claims`)."""
    wanted = {claim.id for claim in claims}
    out: dict[str, str] = {}
    try:
        directory = proofs_directory()
    except FileNotFoundError:  # pragma: no cover - only without any proofs folder
        return out
    for path in sorted(directory.glob("*.py")):
        module = sys.modules.get(f"rlmath_proofs.{path.stem}")
        for claim in getattr(module, "CLAIMS", ()):
            if claim.id in wanted:
                out[claim.id] = f"proofs/{path.name}"
    return out


def compute_evidence(
    claims: Iterable[Claim],
    *,
    seed: int = SEED,
    progress: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> dict[str, dict[str, Any]]:
    """Verify each claim with ``seed`` (in ``jobs`` processes) and return evidence records by id.

    The results do not depend on ``jobs`` (see :func:`rlmath.verify.verify_claims`).
    """

    def done(result: ClaimResult) -> None:
        if progress is not None:
            progress(result.claim.id)

    results = verify_claims(list(claims), seed=seed, jobs=jobs, on_done=done)
    return {r.claim.id: evidence_record(r.claim, r.to_dict()) for r in results}


def findings(claims: Iterable[Claim]) -> list[str]:
    """What ``rlmath docs`` reports about the pages (nothing here fails the build).

    - claims without a ``summary`` (their page shows a visible placeholder);
    - consecutive derivation steps that print identically, merged into one line on the page
      (they differ only in how sympy holds them: the rule of the second was not needed, or
      the steps should be built unevaluated).
    """
    claims = list(claims)
    out = [
        f"{claim_id}: no summary (one sentence for an RL practitioner); the page shows a "
        "placeholder"
        for claim_id in missing_summaries(claims)
    ]
    for claim in claims:
        out += merged_steps(claim)
    return out


def _specs() -> list[Any]:
    try:
        from rlmath.specs import SPECS
    except ImportError:  # pragma: no cover - specs are part of the package
        return []
    return sorted(SPECS.values(), key=lambda spec: str(spec.name))


def figures_page() -> str:
    """The page of figures: each PNG of :data:`rlmath.plots.FIGURES` with its caption."""
    from rlmath.docs.formatting import format_number, table
    from rlmath.docs.pages import GENERATED_NOTE
    from rlmath.plots import FIGURES, kl_estimator_moments

    out = [
        GENERATED_NOTE,
        "# Figures",
        "",
        "Drawn by `rlmath.plots` from exact quantities (`rlmath.exact`) and seeded Monte-Carlo "
        "samples (`rlmath.sampling`, `rlmath.estimators`).",
        "",
    ]
    for figure in FIGURES:
        out += [
            f"(figure-{figure.name.replace('_', '-')})=",
            f"## {figure.title}",
            "",
            f"![{figure.name}](plots/{figure.name}.png)",
            "",
            figure.caption,
            "",
        ]
        if figure.name == "kl_estimators":
            rows = []
            for mu in (0.1, 0.5, 1.0, 2.0):
                kl = mu**2 / 2
                moments = kl_estimator_moments(mu)
                for name in ("k1", "k2", "k3"):
                    mean, std = moments[name]
                    bias = mean - kl
                    rows.append(
                        [
                            format_number(mu),
                            format_number(kl),
                            f"$k_{name[1]}$",
                            format_number(bias / kl if abs(bias / kl) > 1e-9 else 0.0),
                            format_number(std / kl),
                        ]
                    )
            out += [
                "Exact bias and standard deviation of one sample, relative to the true KL "
                "(Gauss-Hermite quadrature, `rlmath.plots.kl_estimator_moments`):",
                "",
                table(["$\\mu$", "KL", "estimator", "bias / KL", "std / KL"], rows),
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def markdown_pages(
    claims: list[Claim],
    records: Mapping[str, Mapping[str, Any]],
    *,
    extra_pages: Iterable[str] = (),
) -> dict[str, str]:
    """Every generated text file, by path relative to the output folder (no verify run here).

    Args:
        claims: every claim, in :func:`~rlmath.verify.load_claims` order.
        records: the evidence record of each claim (:func:`compute_evidence`, or
            ``claims/evidence.json`` of an earlier run).
        extra_pages: hand-written top-level pages to list in the index.
    """
    missing = [claim.id for claim in claims if claim.id not in records]
    if missing:
        raise ValueError(f"records must hold every claim, missing {missing}")
    specs = _specs()
    sources = claim_sources(claims)
    known = [claim.id for claim in claims]
    from rlmath.docs.audit_page import AUDIT_JSON, AUDIT_PAGE, audit_json, audit_page, audit_records

    audits = audit_records()
    pages = {
        "index.md": index_page(
            claims,
            records,
            specs=specs,
            extra_pages=("audit", *extra_pages),
            sources=sources,
        ),
        "figures.md": figures_page(),
        AUDIT_PAGE: audit_page(audits, known_claims=known),
        AUDIT_JSON: audit_json(audits),
        "evidence.md": evidence_page(claims, records),
    }
    for claim in claims:
        pages[f"claims/{claim.id}.md"] = claim_page(
            claim, records[claim.id], source=sources.get(claim.id, "")
        )
    for spec in specs:
        pages[f"specs/{spec.name}.md"] = spec_page(spec, known_claims=known)
    evidence = {"seed": _seed_of(records), "claims": [records[c.id] for c in claims]}
    pages[EVIDENCE_FILE] = json.dumps(evidence, indent=1, ensure_ascii=False) + "\n"
    return pages


def _seed_of(records: Mapping[str, Mapping[str, Any]]) -> int:
    seeds = {record["seed"] for record in records.values()}
    if len(seeds) > 1:
        raise ValueError(f"records must share one seed, got {sorted(seeds)}")
    return int(seeds.pop()) if seeds else SEED


def plot_files() -> dict[str, bytes]:
    """Every figure as PNG bytes, by path relative to the output folder (needs matplotlib)."""
    from rlmath.plots import FIGURES, render_png

    return {f"plots/{figure.name}.png": render_png(figure) for figure in FIGURES}


def _keep_unreproducible(out: Path, files: Mapping[str, bytes]) -> set[str]:
    """Committed audit files kept as they are when PyTorch is missing (a note on stderr)."""
    from rlmath.docs.audit_page import unreproducible_files

    kept = {name for name in unreproducible_files() if (out / name).is_file() and name in files}
    if kept:
        print(
            f"rlmath docs: kept {sorted(kept)} as committed: PyTorch is not installed, and "
            "the audit page's PyTorch rows need it",
            file=sys.stderr,
        )
    return kept


def extra_pages_in(out: Path) -> list[str]:
    """The hand-written top-level pages of :data:`EXTRA_PAGES` present in ``out``."""
    return [name for name in EXTRA_PAGES if (out / f"{name}.md").is_file()]


def stale_files(out: Path, expected: Mapping[str, Any]) -> list[str]:
    """Files in the generated folders of ``out`` that the generator would not write."""
    stale = []
    for directory in GENERATED_DIRECTORIES:
        folder = out / directory
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                relative = path.relative_to(out).as_posix()
                if path.is_file() and relative not in expected:
                    stale.append(relative)
    return stale


def generate(
    out: Path,
    *,
    seed: int = SEED,
    claims: list[Claim] | None = None,
    plots: bool = True,
    progress: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> dict[str, bytes]:
    """Write the documentation into ``out`` and return every generated file's bytes.

    Args:
        out: the output folder (created if needed).
        seed: seed of the verify run behind the evidence.
        claims: the claims (default: every claim of ``proofs/``).
        plots: also draw the figures (needs matplotlib).
        progress: called with each claim id once it is verified.
        jobs: worker processes for the verify run (results do not depend on it).

    Returns:
        ``{relative path: bytes}`` of every file written.
    """
    claims = load_claims() if claims is None else claims
    records = compute_evidence(claims, seed=seed, progress=progress, jobs=jobs)
    files: dict[str, bytes] = {
        path: text.encode("utf-8")
        for path, text in markdown_pages(claims, records, extra_pages=extra_pages_in(out)).items()
    }
    if plots:
        files.update(plot_files())
    for relative in stale_files(out, files):
        if not plots and relative.startswith("plots/"):
            continue
        (out / relative).unlink()
    kept = _keep_unreproducible(out, files)
    for relative, content in files.items():
        if relative in kept:
            continue
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)
    return files
