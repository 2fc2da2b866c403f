"""Open every page of the built book in headless Chromium and check it as a reader
meets it.

Fails (exit 1) on: a broken internal link or image, an error or traceback in an output
cell, a figure that does not render (not loaded, or zero-size), a figure shown twice on
one page (the same image data, inline or from a file, twice in the page's content: see
:func:`duplicate_images`), raw TeX left in the text
once MathJax has typeset (or a formula MathJax could not typeset), and anything the page
loads, or declares as a script, from outside the book. The browser reads the book
offline: every request that leaves the book's own local server is blocked, so a
formula that needs a CDN shows up as raw TeX. Saves a full-page screenshot of every
page to ``_build/screenshots/``.

    python tests/browser/check_book.py [_build/html]

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$CHROMIUM``) and the
``playwright`` Python package (its own browser download is not used).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html.parser
import http.server
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional
from urllib.parse import unquote, unquote_to_bytes, urldefrag, urljoin, urlparse

if TYPE_CHECKING:
    from playwright.sync_api import Route

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# TeX as a reader would see it when MathJax did not run: math delimiters, environments,
# common macros, and $...$ spans (the source of a JavaScript regular expression).
RAW_TEX = (r"\\[()\[\]]|\\(?:begin|end)\{|\\(?:frac|mathrm|mathbf|mathbb|mathcal|operatorname|text|"
           r"sqrt|sum|prod|int|log|exp|cdot|times|le|ge|leq|geq|approx|sim|infty|partial|nabla|"
           r"alpha|beta|gamma|delta|epsilon|eta|theta|lambda|mu|sigma|tau|omega)(?![A-Za-z])|"
           r"\$[^$\s][^$\n]*?\$")
# Where TeX is expected to stay as it is: code, and formulae that MathJax has typeset.
NOT_PROSE = "pre, code, kbd, samp, script, style, textarea, mjx-container, .highlight"

# In-page checks: raw TeX or MathJax errors once MathJax has typeset, scripts from
# outside the book, images that did not load or have no size, and output cells that
# show an error. myst-nb renders errors in `.output.error` / `.output.traceback`.
PAGE_CHECKS = """
async ({notProse, rawTex}) => {
  const problems = [];
  // MathJax typesets after its deferred script has run; wait for it (never for long).
  // Offline with a CDN MathJax, window.MathJax is only Sphinx's config: nothing to wait for.
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    const failed = e => { problems.push(`MathJax failed: ${e}`); return true; };
    const done = await Promise.race([mj.startup.promise.then(() => true, failed),
                                     new Promise(ok => setTimeout(() => ok(false), 30000))]);
    if (!done) problems.push('MathJax did not finish typesetting within 30 s');
  }
  for (const el of document.querySelectorAll('mjx-merror'))
    problems.push(`MathJax error: ${el.getAttribute('data-mjx-error') || el.textContent.slice(0, 200)}`);
  // Raw TeX: visible text outside code, and outside what MathJax has typeset.
  const tex = new RegExp(rawTex);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(notProse) || !parent.checkVisibility()) continue;
    if (node.textContent.match(tex)) raw.push(node.textContent.trim().slice(0, 80));
  }
  if (raw.length)
    problems.push(`raw TeX in ${raw.length} places, e.g. ${JSON.stringify(raw.slice(0, 3))}`);
  for (const s of document.querySelectorAll('script[src]'))
    if (new URL(s.src, location.href).origin !== location.origin)
      problems.push(`script from outside the book: ${s.getAttribute('src')}`);
  for (const img of document.querySelectorAll('main img, article img')) {
    const r = img.getBoundingClientRect();
    if (!img.complete || img.naturalWidth === 0 || r.width === 0 || r.height === 0)
      problems.push(`image does not render: ${img.getAttribute('src')}`);
  }
  for (const el of document.querySelectorAll('.output.error, .output.traceback, .cell_output .traceback'))
    problems.push(`error output: ${el.innerText.slice(0, 200)}`);
  for (const el of document.querySelectorAll('.cell_output pre, .cell_output .output'))
    if (/Traceback \\(most recent call last\\)|^\\w*Error: /m.test(el.innerText))
      problems.push(`traceback in output: ${el.innerText.slice(0, 200)}`);
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  const images = [...document.querySelectorAll('img[src]')].map(i => i.getAttribute('src'));
  const formulae = document.querySelectorAll('mjx-container').length;
  return {problems, links, images, formulae};
}
"""


# A known, harmless error of jupyter-book 1's theme: sphinx-thebe declares its config
# script twice on every page. Anything else on the console fails the check.
KNOWN_JS_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


class _Images(html.parser.HTMLParser):
    """The ``src`` of every ``<img>`` inside the page's content (``<main>`` or
    ``<article>``, or the whole page when it has neither), in order."""

    CONTENT = ("main", "article")

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0          # how many content elements are open here
        self.inside: list[str] = []
        self.everywhere: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if tag in self.CONTENT:
            self.depth += 1
        src = dict(attrs).get("src") if tag == "img" else None
        if src:
            self.everywhere.append(src)
            if self.depth:
                self.inside.append(src)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.CONTENT and self.depth:
            self.depth -= 1

    def sources(self) -> list[str]:
        return self.inside if self.inside or self.depth else self.everywhere


def _data_uri_bytes(src: str) -> Optional[bytes]:
    """The payload of a ``data:`` URI (base64 or percent-encoded), or None for another src."""
    if not src.startswith("data:"):
        return None
    head, _, data = src[5:].partition(",")
    return base64.b64decode(data + "=" * (-len(data) % 4)) if head.endswith(";base64") else unquote_to_bytes(data)


def duplicate_images(page_html: str, read: Optional[Callable[[str], Optional[bytes]]] = None) -> list[str]:
    """The figures a page shows more than once: one line per image whose data appears
    twice or more among the ``<img>`` of the page's content (``<main>`` or
    ``<article>``: a logo in the header and the footer is not a figure), with how many
    times. Inline images (``data:`` URIs) are compared by their decoded bytes; others by
    ``read(src)``, the bytes of the file the src refers to (None, or no ``read``: by the
    src itself), so one figure saved under two names counts too."""
    parser = _Images()
    parser.feed(page_html)
    seen: dict[str, list[str]] = {}
    for src in parser.sources():
        data = _data_uri_bytes(src)
        if data is None and read is not None:
            data = read(src)
        key = hashlib.sha256(data).hexdigest() if data is not None else f"src:{src}"
        seen.setdefault(key, []).append(src)
    return [f"one figure shown {len(srcs)} times: " + ", ".join(dict.fromkeys(src[:80] for src in srcs))
            for srcs in seen.values() if len(srcs) > 1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def local_target(root: Path, base: str, page_url: str, ref: str) -> Path | None:
    """The file an internal link or image refers to, or None for an external one."""
    url, _ = urldefrag(urljoin(page_url, ref))
    if not url.startswith(base):
        return None
    rel = unquote(urlparse(url).path)[len(urlparse(base).path):]
    target = root / rel
    return target / "index.html" if rel == "" or rel.endswith("/") else target


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    root = Path(argv[1] if len(argv) > 1 else "_build/html").resolve()
    if not (root / "index.html").exists():
        print(f"check_book: no built book at {root}", file=sys.stderr)
        return 1
    shots = root.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    pages = sorted(p for p in root.rglob("*.html")
                   if not p.relative_to(root).parts[0].startswith("_") and p.name not in ("genindex.html", "search.html"))
    server, base = serve(root)
    failures: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                     args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        console_errors: list[str] = []
        page.on("pageerror", lambda exc: console_errors.append(str(exc)))
        # Offline: the book's own server answers, every other request is blocked.
        blocked: list[str] = []

        def offline(route: Route) -> None:
            if route.request.url.startswith(base):
                route.continue_()
            else:
                blocked.append(f"{route.request.resource_type} {route.request.url}")
                route.abort("internetdisconnected")

        page.route("**/*", offline)

        def read(src: str) -> Optional[bytes]:
            """The bytes of the book's file an image of the current page refers to."""
            target = local_target(root, base, page.url, src)
            return target.read_bytes() if target is not None and target.is_file() else None

        for path in pages:
            rel = path.relative_to(root).as_posix()
            console_errors.clear()
            blocked.clear()
            response = page.goto(base + rel, wait_until="load")
            if response is None or not response.ok:
                failures.append(f"{rel}: HTTP {response.status if response else 'no response'}")
                continue
            page.wait_for_timeout(200)
            page.wait_for_load_state("load")  # the page a redirect (index.html) went on to
            result = page.evaluate(PAGE_CHECKS, {"notProse": NOT_PROSE, "rawTex": RAW_TEX})
            for problem in result["problems"]:
                failures.append(f"{rel}: {problem}")
            for problem in duplicate_images(page.content(), read):
                failures.append(f"{rel}: {problem}")
            for ref in result["links"] + result["images"]:
                if ref.startswith(("mailto:", "javascript:")):
                    continue
                target = local_target(root, base, page.url, ref)
                if target is not None and not target.exists():
                    failures.append(f"{rel}: broken internal link or image {ref!r}")
            for err in console_errors:
                if not any(known in err for known in KNOWN_JS_ERRORS):
                    failures.append(f"{rel}: JavaScript error: {err[:200]}")
            for request in blocked:
                failures.append(f"{rel}: needs the network (blocked): {request[:200]}")
            page.screenshot(path=str(shots / (rel.replace("/", "__").removesuffix(".html") + ".png")),
                            full_page=True)
            print(f"checked {rel}: {len(result['images'])} images, {len(result['links'])} links, "
                  f"{result['formulae']} formulae")
        browser.close()
    server.shutdown()
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    print(f"check_book: {len(pages)} pages, {len(failures)} problems; screenshots in {shots}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
