"""Open every page of the built site in headless Chromium and check what a reader sees.

Usage::

    python scripts/check_site_chromium.py docs/_build/html [--screenshots DIR]
    python scripts/check_site_chromium.py --build [--screenshots DIR]   # sphinx-build first

Opt-in (never part of ``.ci/run``); needs the ``chromium`` binary (Debian: ``apt-get install
chromium``) and, for ``--build``, the docs extra (``pip install ".[docs]"``). No other
dependency: the pages are served on a loopback port by a small HTTP server that appends a probe
script to every HTML page; the probe waits until MathJax has typeset the page, measures it, and
writes its findings into the DOM, which ``chromium --headless --dump-dom`` prints.

For every page (``--pages`` to choose some):

- MathJax ran where the page has math, and reported no error: no ``mjx-merror`` element and no
  "Math input error" text; each formula that failed is listed with its TeX and MathJax's message;
- no raw TeX in the visible text (``$$``, ``\\frac``, ... outside code);
- nothing sticks out at the right edge: no element ends right of the viewport unless it is
  inside a scroll container (``overflow-x: auto``/``scroll``/``hidden``, as display math and
  code blocks are), and the page itself does not scroll sideways; checked at each
  ``--widths`` (default 1280 and 800 CSS pixels);
- no display formula (``mjx-container[display]``, ``div.math``) and no code block
  (``div.highlight``, ``pre``) needs sideways scrolling: its content is no wider than its box
  (``scrollWidth <= clientWidth + 1``). A scroll box keeps the page from overflowing, but a
  reader who must scroll a formula to read it is reading a formula cut off at the right edge.
  At the first width (default 1280) such a box fails the page; at the other widths it is a note;
- every claim page (``claims/*.html``) has its reader's summary (the box of class
  ``rlmath-summary`` without ``rlmath-summary-missing``; ``--allow-missing-summaries`` reports
  the placeholders without failing);
- no two consecutive steps of a derivation (the items of a list of display formulas) show the
  same formula (after the relation that starts the line);
- no id is used twice on a page (a link to it would be ambiguous);
- every internal link points to a page of the site, and its ``#fragment`` (if any) to an id
  on that page; images exist and PNGs are PNGs.

Chromium runs with networking features off and a fresh profile (``--user-data-dir``) per call,
so anything fetched from the internet fails: MathJax must come from the site itself. A call that
times out (a loaded machine) is tried again (``--retries``, default 2 more times).
``--screenshots DIR`` writes a PNG of each page (first width). Exit status 0 when every page passes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import html
import html.parser
import http.server
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
PROBE_ID = "rlmath-site-probe"
#: The boxes that scroll sideways (rlmath.css): display math and code blocks.
SCROLL_BOXES = 'mjx-container[display="true"], div.math, div.highlight, pre'

#: Runs in the page once MathJax is done: what a reader would see, as JSON in a <pre>.
PROBE = r"""
<script>
(function () {
  function scrolls(element) {
    var style = getComputedStyle(element);
    return ["auto", "scroll", "hidden", "clip"].indexOf(style.overflowX) >= 0;
  }
  function describe(element) {
    var text = (element.textContent || "").trim().replace(/\s+/g, " ").slice(0, 60);
    var cls = (element.getAttribute("class") || "").split(/\s+/).slice(0, 2).join(".");
    return element.tagName.toLowerCase() + (cls ? "." + cls : "") + " '" + text + "'";
  }
  function texOf(container) {
    var items = [];
    try {
      items = MathJax.startup.document.getMathItemsWithin(document.body);
    } catch (e) { items = []; }
    for (var i = 0; i < items.length; i++) {
      if (items[i].typesetRoot === container) {
        return String(items[i].math).trim().replace(/\s+/g, " ").slice(0, 100);
      }
    }
    return "";
  }
  function failingTex() {
    var out = [];
    var errors = document.getElementsByTagName("mjx-merror");
    var items = [];
    try {
      items = MathJax.startup.document.getMathItemsWithin(document.body);
    } catch (e) { items = []; }
    for (var i = 0; i < items.length && out.length < 20; i++) {
      var root = items[i].typesetRoot;
      if (!root || !root.querySelector) continue;
      var error = root.querySelector("mjx-merror");
      if (error) {
        out.push((error.getAttribute("data-mjx-error") || "error") + ": "
                 + String(items[i].math).trim().slice(0, 300));
      }
    }
    if (!out.length && errors.length) out.push(errors.length + " error(s), TeX not found");
    return out;
  }
  function probe() {
    var width = document.documentElement.clientWidth;
    var overflowing = [];
    var all = document.body.getElementsByTagName("*");
    for (var i = 0; i < all.length && overflowing.length < 20; i++) {
      var element = all[i];
      if (element.id === "PROBE_ID") continue;
      var rect = element.getBoundingClientRect();
      if (rect.width === 0 || rect.height === 0 || rect.right <= width + 1) continue;
      var style = getComputedStyle(element);
      if (style.visibility === "hidden" || style.display === "none") continue;
      if (style.position === "fixed") continue;
      var clipped = false, reported = false;
      for (var parent = element.parentElement; parent; parent = parent.parentElement) {
        if (overflowing.indexOf(parent) >= 0) { reported = true; break; }
        // an off-canvas drawer (furo's table of contents on narrow screens) is not content
        if (getComputedStyle(parent).position === "fixed") { clipped = true; break; }
        if (parent !== document.body && parent !== document.documentElement && scrolls(parent)
            && parent.getBoundingClientRect().right <= width + 1) { clipped = true; break; }
      }
      if (!clipped && !reported) overflowing.push(element);
    }
    // display formulas and code blocks whose content is wider than their box: the reader
    // must scroll that box sideways (the box itself fits; its content does not)
    var scrolling = [];
    var boxes = document.body.querySelectorAll(SCROLL_BOXES);
    for (var j = 0; j < boxes.length; j++) {
      var box = boxes[j];
      if (box.scrollWidth <= box.clientWidth + 1 || box.clientWidth === 0) continue;
      var counted = false;
      for (var k = 0; k < scrolling.length; k++) {
        if (scrolling[k].contains(box) || box.contains(scrolling[k])) { counted = true; break; }
      }
      if (!counted) scrolling.push(box);
    }
    var body = document.body.innerText || "";
    var result = {
      width: width,
      scroll_width: document.documentElement.scrollWidth,
      math: document.getElementsByTagName("mjx-container").length,
      merrors: document.getElementsByTagName("mjx-merror").length,
      math_input_error: body.indexOf("Math input error") >= 0,
      overflowing: overflowing.map(function (e) {
        return describe(e) + " ends at " + Math.round(e.getBoundingClientRect().right) + "px";
      }),
      failing_tex: failingTex(),
      sideways: scrolling.slice(0, 20).map(function (e) {
        var container = e.tagName.toLowerCase() === "mjx-container" ? e
          : e.querySelector("mjx-container");
        var tex = container ? texOf(container) : "";
        var what = container ? "display formula " : "code block ";
        return what + (tex ? "'" + tex + "'" : describe(e)) + ": content "
          + e.scrollWidth + "px in a " + e.clientWidth + "px box";
      }),
      sideways_count: scrolling.length,
      summary: document.querySelectorAll(".rlmath-summary").length,
      summary_missing: document.querySelectorAll(".rlmath-summary-missing").length
    };
    var out = document.createElement("pre");
    out.id = "PROBE_ID";
    out.style.display = "none";
    out.textContent = JSON.stringify(result);
    document.body.appendChild(out);
  }
  function start() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(function () { setTimeout(probe, 50); });
    } else {
      setTimeout(probe, 50);
    }
  }
  if (document.readyState === "complete") start(); else window.addEventListener("load", start);
})();
</script>
""".replace("PROBE_ID", PROBE_ID).replace("SCROLL_BOXES", json.dumps(SCROLL_BOXES))


class _Visible(html.parser.HTMLParser):
    """Visible text, images, links, ids and the probe's JSON of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skip_depth = 0
        self.stack: list[str] = []
        self.text: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.in_probe = False
        self.probe = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        if tag == "pre" and values.get("id") == PROBE_ID:
            self.in_probe = True
        if tag in ("img", "br", "meta", "link", "input", "hr"):
            return
        self.stack.append(tag)
        if tag in SKIPPED_TAGS:
            self.skip_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.in_probe = False
        if tag not in self.stack:
            return
        while self.stack:
            top = self.stack.pop()
            if top in SKIPPED_TAGS:
                self.skip_depth -= 1
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.in_probe:
            self.probe += data
        elif self.skip_depth == 0:
            self.text.append(data)


def _handler(root: Path) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        """Serves the site; HTML pages get the probe script before ``</body>``."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def send_head(self):  # type: ignore[no-untyped-def]
            path = Path(self.translate_path(self.path))
            if path.is_dir():
                path = path / "index.html"
            if path.suffix != ".html" or not path.is_file():
                return super().send_head()
            text = path.read_text(encoding="utf-8")
            body = text.replace("</body>", PROBE + "</body>", 1).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
            pass

    return Handler


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


#: Seconds one Chromium call may take, and how many more times a call that timed out is tried.
TIMEOUT = 240
RETRIES = 2


def _chromium(binary: str, url: str, *extra: str) -> str:
    for attempt in range(RETRIES + 1):
        with tempfile.TemporaryDirectory(prefix="rlmath-chromium-") as profile:
            try:
                completed = subprocess.run(
                    [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                    capture_output=True,
                    text=True,
                    timeout=TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                if attempt == RETRIES:
                    raise
                print(f"  (timeout after {TIMEOUT}s on {url}; trying again)", flush=True)
                continue
        break
    if completed.returncode != 0:
        raise RuntimeError(f"chromium failed on {url}: {completed.stderr[-2000:]}")
    return completed.stdout


_LIST = re.compile(r"<(/?)(ol|ul)\b[^>]*>")
_DISPLAY = re.compile(r'<div class="math[^"]*">\s*\\\[(.*?)\\\]\s*</div>', re.DOTALL)
_RELATION = re.compile(r"^(?:\\begin\{aligned\}(?:\[t\])?\s*&?\s*)?(?:=|\\le|\\ge)\s*")


def _normalised_tex(tex: str) -> str:
    """A display's TeX without the relation that starts it and without layout whitespace."""
    tex = html.unescape(tex).strip()
    tex = _RELATION.sub("", tex)
    tex = re.sub(r"\\begin\{aligned\}(\[t\])?|\\end\{aligned\}|&|\\\\|\\quad", " ", tex)
    return re.sub(r"\s+", "", tex)


def identical_consecutive_steps(source: str) -> list[str]:
    """Consecutive items of one list (a derivation's steps) whose display formulas are equal.

    Examples:
        >>> step = '<li><p>rule</p><div class="math">\\[= x + 1\\]</div></li>'
        >>> identical_consecutive_steps("<ol>" + step + step + "</ol>")
        ['steps 1 and 2 of a list show the same formula: x+1']
        >>> identical_consecutive_steps("<ol>" + step + step.replace("x", "y") + "</ol>")
        []
    """
    problems: list[str] = []
    depth = 0
    start = 0
    for match in _LIST.finditer(source):
        if match.group(1) == "":
            if depth == 0:
                start = match.end()
            depth += 1
            continue
        depth -= 1
        if depth != 0:
            continue
        items = re.split(r"<li\b[^>]*>", source[start : match.start()])[1:]
        formulas = [
            _normalised_tex(found.group(1)) if (found := _DISPLAY.search(item)) else None
            for item in items
        ]
        for number, (before, after) in enumerate(zip(formulas, formulas[1:]), start=1):
            if before is not None and before == after:
                problems.append(
                    f"steps {number} and {number + 1} of a list show the same formula: "
                    f"{before[:120]}"
                )
    return problems


def duplicate_ids(source: str) -> list[str]:
    """The ids that more than one element of ``source`` (an HTML page) has.

    Examples:
        >>> duplicate_ids('<p id="a"></p><p id="b"></p><span id="a"></span>')
        ['a']
    """
    ids = re.findall(r"<[a-zA-Z][^>]*?\sid=\"([^\"]+)\"", source)
    seen: set[str] = set()
    return sorted({i for i in ids if i in seen or seen.add(i)})


@functools.cache
def _ids_of(page: Path) -> frozenset[str]:
    parser = _Visible()
    parser.feed(page.read_text(encoding="utf-8"))
    return frozenset(parser.ids)


def _link_problems(site: Path, page: str, links: list[str], base: str) -> list[str]:
    problems = []
    here = (site / page).parent
    for href in links:
        if href.startswith(base):
            href = href[len(base) :].lstrip("/")
            target_dir = site
        else:
            target_dir = here
        parsed = urllib.parse.urlsplit(href)
        if parsed.scheme or parsed.netloc or href.startswith(("mailto:", "javascript:")):
            continue  # external: not this check's business (the viewer has no network)
        path = urllib.parse.unquote(parsed.path)
        target = (site / page) if not path else (target_dir / path)
        if target.is_dir():
            target = target / "index.html"
        try:
            target.resolve().relative_to(site)
        except ValueError:
            problems.append(f"{page}: link {href!r} leaves the site")
            continue
        if not target.is_file():
            problems.append(f"{page}: broken link {href!r} (no {target.relative_to(site)})")
        elif parsed.fragment and target.suffix == ".html":
            if urllib.parse.unquote(parsed.fragment) not in _ids_of(target):
                problems.append(f"{page}: broken link {href!r} (no id #{parsed.fragment})")
    return problems


def check_page(
    binary: str,
    base: str,
    site: Path,
    page: str,
    *,
    widths: tuple[int, ...],
    screenshots: Path | None,
    allow_missing_summaries: bool,
) -> tuple[list[str], list[str]]:
    """(problems, notes) of one page; it passes when there are no problems."""
    url = f"{base}/{page}"
    problems: list[str] = []
    notes: list[str] = []
    parser = _Visible()
    math = 0
    for index, width in enumerate(widths):
        extra = ["--dump-dom", f"--window-size={width},900"]
        if index == 0 and screenshots is not None:  # one launch: the DOM and a tall screenshot
            target = screenshots / (page.replace("/", "__").removesuffix(".html") + ".png")
            extra = ["--dump-dom", f"--window-size={width},2400", f"--screenshot={target}"]
        dom = _chromium(binary, url, "--virtual-time-budget=20000", *extra)
        parser = _Visible()
        parser.feed(dom)
        if not parser.probe:
            problems.append(f"{page}: the probe did not run at width {width} (page script error?)")
            continue
        result = json.loads(parser.probe)
        if result["merrors"] or result["math_input_error"]:
            problems.append(f"{page}: {result['merrors']} MathJax error(s) (mjx-merror)")
            problems += [f"{page}: TeX failed: {tex}" for tex in result.get("failing_tex", [])]
        source = (site / page).read_text(encoding="utf-8")
        if 'class="math' in source and result["math"] == 0:
            problems.append(f"{page}: has math but no mjx-container (MathJax did not run)")
        if result["scroll_width"] > result["width"] + 1:
            problems.append(
                f"{page}: at width {width} the page scrolls sideways "
                f"({result['scroll_width']}px > {result['width']}px)"
            )
        for element in result["overflowing"]:
            problems.append(f"{page}: at width {width}, cut off at the right edge: {element}")
        for box in result["sideways"]:
            message = f"{page}: at width {width}, needs sideways scrolling: {box}"
            (problems if index == 0 else notes).append(message)
        if result["sideways_count"] > len(result["sideways"]):
            more = result["sideways_count"] - len(result["sideways"])
            (problems if index == 0 else notes).append(
                f"{page}: at width {width}, {more} more boxes need sideways scrolling"
            )
        if index == 0 and page.startswith("claims/"):
            if not result["summary"]:
                problems.append(f"{page}: no reader's summary box")
            elif result["summary_missing"]:
                message = f"{page}: the summary is the placeholder (the claim has no summary)"
                (notes if allow_missing_summaries else problems).append(message)
        if index == 0:
            visible = " ".join(parser.text)
            problems += [f"{page}: raw TeX {t!r} visible" for t in RAW_TEX if t in visible]
            problems += _link_problems(site, page, parser.links, base)
            problems += [f"{page}: {p}" for p in identical_consecutive_steps(source)]
            problems += [f"{page}: id #{i} used more than once" for i in duplicate_ids(source)]
            for src in parser.images:
                if src.startswith("data:"):
                    continue
                if src.startswith(("http://", "https://")) and not src.startswith(base):
                    problems.append(f"{page}: image from outside the site: {src}")
                    continue
                relative = src[len(base) :].lstrip("/") if src.startswith(base) else src
                folder = site if src.startswith(base) else (site / page).parent
                image = folder / relative.split("#")[0].split("?")[0]
                if not image.is_file():
                    problems.append(f"{page}: image {src} missing")
                elif image.suffix == ".png" and image.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
                    problems.append(f"{page}: image {src} is not a PNG")
            math = result["math"]
    status = "ok " if not problems else "BAD"
    print(f"{status} {page}: {math} typeset formulas, {len(parser.images)} images")
    return problems, notes


def _build(out: Path) -> Path:
    """``sphinx-build -b html docs OUT`` (the committed pages, as the lead regenerates them)."""
    command = [sys.executable, "-m", "sphinx", "-q", "-b", "html", str(ROOT / "docs"), str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"sphinx-build failed:\n{completed.stderr[-4000:]}")
    return out


def _pages(site: Path, chosen: list[str] | None) -> list[str]:
    if chosen:
        return chosen
    return sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not p.relative_to(site).as_posix().startswith(("_", "genindex", "search", "py-modindex"))
    )


def main(argv: list[str] | None = None) -> int:
    global RETRIES, TIMEOUT  # noqa: PLW0603 - the module's defaults, set once from the CLI
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site", type=Path, nargs="?", help="the built HTML folder")
    parser.add_argument("--build", action="store_true", help="build docs/ with sphinx first")
    parser.add_argument("--pages", nargs="*", help="pages to check (default: every page)")
    parser.add_argument("--all", action="store_true", help="every page (the default)")
    parser.add_argument("--screenshots", type=Path, help="write a PNG screenshot of each page here")
    parser.add_argument(
        "--widths", type=int, nargs="+", default=[1280, 800], help="viewport widths (CSS px)"
    )
    parser.add_argument(
        "--allow-missing-summaries",
        action="store_true",
        help="report claim pages that show the summary placeholder without failing",
    )
    parser.add_argument("--jobs", type=int, default=2, help="pages checked at once (default 2)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument(
        "--retries", type=int, default=RETRIES, help="tries again after a timeout (default 2)"
    )
    parser.add_argument(
        "--timeout", type=int, default=TIMEOUT, help="seconds per Chromium call (default 240)"
    )
    args = parser.parse_args(argv)
    RETRIES, TIMEOUT = max(0, args.retries), args.timeout
    if shutil.which(args.chromium) is None and not Path(args.chromium).is_file():
        print(f"no chromium binary {args.chromium!r} (Debian: apt-get install chromium)")
        return 2
    with tempfile.TemporaryDirectory(prefix="rlmath-site-") as scratch:
        if args.build:
            site = _build(Path(scratch) / "html")
        elif args.site is None:
            parser.error("give the built HTML folder, or --build")
        else:
            site = args.site.resolve()
        pages = _pages(site, args.pages)
        if args.screenshots is not None:
            args.screenshots.mkdir(parents=True, exist_ok=True)
        server, base = _serve(site)
        problems: list[str] = []
        notes: list[str] = []

        def check(page: str) -> tuple[list[str], list[str]]:
            try:
                return checker(page)
            except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
                return [f"{page}: could not be checked: {error}"], []

        checker = functools.partial(
            check_page,
            args.chromium,
            base,
            site,
            widths=tuple(args.widths),
            screenshots=args.screenshots,
            allow_missing_summaries=args.allow_missing_summaries,
        )
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                for found, noted in pool.map(check, pages):
                    problems += found
                    notes += noted
        finally:
            server.shutdown()
    for note in notes:
        print(f"  note: {note}")
    for problem in problems:
        print(f"  - {problem}")
    bad = len({p.split(":")[0] for p in problems})
    print(f"{len(pages) - bad}/{len(pages)} pages pass")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
