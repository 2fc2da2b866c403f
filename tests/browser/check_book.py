"""Open every page of the built book in headless Chromium and check it as a reader
meets it.

Fails (exit 1) on: a broken internal link or image, an error or traceback in an output
cell, or a figure that does not render (not loaded, or zero-size). Saves a full-page
screenshot of every page to ``_build/screenshots/``.

    python tests/browser/check_book.py [_build/html]

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$CHROMIUM``) and the
``playwright`` Python package (its own browser download is not used).
"""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# In-page checks: images that did not load or have no size, and output cells that
# show an error. myst-nb renders errors in `.output.error` / `.output.traceback`.
PAGE_CHECKS = """
() => {
  const problems = [];
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
  return {problems, links, images};
}
"""


# A known, harmless error of jupyter-book 1's theme: sphinx-thebe declares its config
# script twice on every page. Anything else on the console fails the check.
KNOWN_JS_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


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
        for path in pages:
            rel = path.relative_to(root).as_posix()
            console_errors.clear()
            response = page.goto(base + rel, wait_until="load")
            if response is None or not response.ok:
                failures.append(f"{rel}: HTTP {response.status if response else 'no response'}")
                continue
            page.wait_for_timeout(200)
            result = page.evaluate(PAGE_CHECKS)
            for problem in result["problems"]:
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
            page.screenshot(path=str(shots / (rel.replace("/", "__").removesuffix(".html") + ".png")),
                            full_page=True)
            print(f"checked {rel}: {len(result['images'])} images, {len(result['links'])} links")
        browser.close()
    server.shutdown()
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    print(f"check_book: {len(pages)} pages, {len(failures)} problems; screenshots in {shots}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
