"""Open a built site in headless Chromium and list what is wrong with it: `python docs/check_site.py _docs/html`.

Every page reachable from index.html is loaded from a local server (127.0.0.1): it must log no console error and
no failed request, every internal link must name a page (and an anchor) that exists, and every `<img>` must have a
non-zero natural width. Screenshots of the index and of one paper page go to `<html>/_screenshots/`. Chromium is
Debian's `chromium` (`apt-get install chromium`), driven by playwright (its own browser download is never used).
"""
from __future__ import annotations
import functools, http.server, shutil, sys, threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse
from playwright.sync_api import sync_playwright

SCREENSHOTS = {"index.html": "index.png", "papers/smr.html": "paper_smr.png"}
SKIP_PREFIXES = ("_sources/", "_static/", "_images/")   # files, not pages
HANG_GUARD_MS = 600_000   # how long a page may take to load: only a hang reaches it, however loaded the machine


def chromium_path() -> str | None:
    "The system Chromium (Debian's `chromium`), or None."
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if p := shutil.which(name): return p
    return None

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

def serve(root: Path):
    "A threaded HTTP server on 127.0.0.1 (a free port) serving `root`; returns (server, base url)."
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"

def launch(pw):
    exe = chromium_path()
    if exe is None: raise RuntimeError("no Chromium on this machine: apt-get install chromium")
    return pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])

PAGE_FACTS = """() => ({
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth, complete: i.complete})),
})"""

def visit(page, url: str, problems: list, where: str) -> dict:
    "Load one page; record its console errors, failed requests and broken images in `problems`; return its links and ids."
    errors = []
    on_console = lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    on_pageerror = lambda e: errors.append(f"page error: {e}")
    on_failed = lambda r: errors.append(f"request failed: {r.url} ({r.failure})")
    on_response = lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
    page.on("console", on_console); page.on("pageerror", on_pageerror)
    page.on("requestfailed", on_failed); page.on("response", on_response)
    try:
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        facts = page.evaluate(PAGE_FACTS)
    finally:
        page.remove_listener("console", on_console); page.remove_listener("pageerror", on_pageerror)
        page.remove_listener("requestfailed", on_failed); page.remove_listener("response", on_response)
    problems += [f"{where}: {e}" for e in errors]
    problems += [f"{where}: image {i['src']} has natural width 0" for i in facts["images"] if not i["width"]]
    return facts

def check_site(html, screenshots: bool = True, log=print) -> list:
    "Every problem found on the site in folder `html` (empty when it is sound); writes the screenshots."
    html = Path(html)
    if not (html / "index.html").is_file(): return [f"{html}: no index.html (build the site first: bash .ci/docs)"]
    srv, base = serve(html)
    problems, seen, ids, todo, links = [], set(), {}, ["index.html"], []
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(HANG_GUARD_MS)
            while todo:
                rel = todo.pop()
                if rel in seen: continue
                seen.add(rel)
                facts = visit(page, base + rel, problems, rel)
                ids[rel] = set(facts["ids"])
                if screenshots and rel in SCREENSHOTS:
                    (html / "_screenshots").mkdir(exist_ok=True)
                    page.screenshot(path=str(html / "_screenshots" / SCREENSHOTS[rel]), full_page=True)
                for href in facts["links"]:
                    u, frag = urldefrag(href)
                    if not u.startswith(base): continue            # the outside world is not checked (no internet here)
                    target = urlparse(u).path[1:] or "index.html"
                    if target.endswith("/"): target += "index.html"
                    links.append((rel, target, frag))
                    if target.endswith(".html") and not target.startswith(SKIP_PREFIXES) and (html / target).is_file(): todo.append(target)
            browser.close()
    finally:
        srv.shutdown()
    for rel, target, frag in links:
        if not (html / target).exists(): problems.append(f"{rel}: link to {target}, which does not exist")
        elif frag and target in ids and frag not in ids[target]: problems.append(f"{rel}: link to {target}#{frag}: no such anchor")
    missing = [s for s in SCREENSHOTS if s not in seen and (html / s).is_file()]
    problems += [f"{s}: not reachable from index.html" for s in missing]
    log(f"[check_site] {len(seen)} pages, {len(links)} internal links, {len(problems)} problem(s)")
    return problems

if __name__ == "__main__":
    found = check_site(sys.argv[1] if len(sys.argv) > 1 else "_docs/html")
    print("\n".join(found) if found else "the site is sound")
    sys.exit(1 if found else 0)
