"""Render the built site in headless Chromium and check that the math is typeset and plots load.

Usage (after ``rlmath docs`` and ``sphinx-build -W --keep-going -b html docs docs/_build/html``)::

    python scripts/check_site_chromium.py docs/_build/html [--screenshots DIR]

The site is served on a loopback port (as a reader's web server would); Chromium runs with
networking features off, so anything fetched from the internet would fail, which is the point:
MathJax must come from the site itself. For each page the rendered DOM must

- contain MathJax output (``mjx-container``) where the page has math, and no MathJax error
  (``mjx-merror``);
- show no raw TeX in its visible text: no ``$$``, ``\\(``, ``\\[``, ``\\frac``, ``\\sum``,
  ``\\mathbb``, ``\\nabla`` outside code blocks;
- reference only images that exist in the site and are PNG files.

Screenshots (``--screenshots``) are written for a look by eye. Exit status 0 when every page
passes; needs the ``chromium`` binary (Debian package ``chromium``).
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

RAW_TEX = ("$$", "\\(", "\\[", "\\frac", "\\sum", "\\mathbb", "\\nabla", "\\mathrm")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
SKIPPED_TAGS = {"script", "style", "pre", "code", "mjx-container", "head", "title"}


class _Visible(html.parser.HTMLParser):
    """Collects visible text, MathJax containers, MathJax errors and image sources."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skip_depth = 0
        self.stack: list[str] = []
        self.text: list[str] = []
        self.math = 0
        self.errors = 0
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "mjx-container":
            self.math += 1
        if tag == "mjx-merror":
            self.errors += 1
        if tag == "img":
            self.images += [value or "" for name, value in attrs if name == "src"]
        if tag in ("img", "br", "meta", "link", "input", "hr"):
            return
        self.stack.append(tag)
        if tag in SKIPPED_TAGS:
            self.skip_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.stack:
            return
        while self.stack:
            top = self.stack.pop()
            if top in SKIPPED_TAGS:
                self.skip_depth -= 1
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.skip_depth == 0:
            self.text.append(data)


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


def _chromium(binary: str, url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        completed = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"chromium failed on {url}: {completed.stderr[-2000:]}")
    return completed.stdout


def check_page(
    binary: str, base: str, site: Path, page: str, screenshots: Path | None
) -> list[str]:
    """Problems of one page (empty when it passes)."""
    url = f"{base}/{page}"
    dom = _chromium(binary, url, "--virtual-time-budget=15000", "--dump-dom")
    parser = _Visible()
    parser.feed(dom)
    visible = " ".join(parser.text)
    problems = [f"{page}: raw TeX {token!r} visible" for token in RAW_TEX if token in visible]
    source = (site / page).read_text(encoding="utf-8")
    has_math = 'class="math' in source
    if has_math and parser.math == 0:
        problems.append(f"{page}: has math but no mjx-container (MathJax did not run)")
    if parser.errors:
        problems.append(f"{page}: {parser.errors} MathJax error(s) (mjx-merror)")
    for src in parser.images:
        if src.startswith(("http://", "https://", "data:")):
            if not src.startswith(base) and not src.startswith("data:"):
                problems.append(f"{page}: image from outside the site: {src}")
            continue
        image = (site / page).parent / src.split("#")[0].split("?")[0]
        if not image.is_file():
            problems.append(f"{page}: image {src} missing")
        elif image.suffix == ".png" and image.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            problems.append(f"{page}: image {src} is not a PNG")
    if screenshots is not None:
        target = screenshots / (page.replace("/", "__").removesuffix(".html") + ".png")
        _chromium(
            binary,
            url,
            "--virtual-time-budget=15000",
            "--window-size=1280,2400",
            f"--screenshot={target}",
        )
    print(
        f"{'ok ' if not problems else 'BAD'} {page}: {parser.math} typeset formulas, "
        f"{len(parser.images)} images"
    )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site", type=Path, help="the built HTML folder")
    parser.add_argument("--pages", nargs="*", help="pages to check (default: a representative set)")
    parser.add_argument("--all", action="store_true", help="check every page of the site")
    parser.add_argument("--screenshots", type=Path, help="write a PNG screenshot of each page here")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)
    site: Path = args.site.resolve()
    if args.all:
        pages = sorted(
            p.relative_to(site).as_posix()
            for p in site.rglob("*.html")
            if not p.relative_to(site).as_posix().startswith(("_", "genindex", "search"))
        )
    elif args.pages:
        pages = args.pages
    else:
        claims = sorted(p.relative_to(site).as_posix() for p in (site / "claims").glob("*.html"))
        specs = sorted(p.relative_to(site).as_posix() for p in (site / "specs").glob("*.html"))
        pages = ["index.html", "figures.html", "api.html", *claims[:3], *specs[:2]]
    if args.screenshots is not None:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    server, base = _serve(site)
    try:
        problems = [
            problem
            for page in pages
            for problem in check_page(args.chromium, base, site, page, args.screenshots)
        ]
    finally:
        server.shutdown()
    for problem in problems:
        print(f"  - {problem}")
    print(f"{len(pages) - len({p.split(':')[0] for p in problems})}/{len(pages)} pages pass")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
