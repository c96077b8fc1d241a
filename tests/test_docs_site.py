"""The documentation site (docs/build.py) built and opened in headless Chromium, and JupyterLab running a cell of the project.

The browser is Debian's `chromium` driven by playwright; where it is absent the browser tests skip and say so (`.ci/run`
installs it). `$SMRNB_DOCS_SITE` names an already built site (`.ci/test` builds the whole one) to check instead of the
subset these tests build.
"""
import html as html_lib, json, os, re, secrets, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest
from smrnb import __version__

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs"))
import build as docs_build          # noqa: E402  docs/build.py
from check_site import HANG_GUARD_MS, check_site, chromium_path, launch   # noqa: E402
from playwright.sync_api import sync_playwright   # noqa: E402

needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="no Chromium here (apt-get install chromium; .ci/run installs it)")
SUBSET = "04_vis"   # a notebook that draws pictures: its page must show them


def test_nbdev_directives_become_cell_tags():
    flags = {"slow", "gpu"}
    assert docs_build.cell_tags("#| export\ndef f(): pass", flags, "x") == ("def f(): pass", [])
    assert docs_build.cell_tags("#| hide\nimport nbdev", flags, "x") == ("import nbdev", ["remove-cell"])
    assert docs_build.cell_tags("#| default_exp vis", flags, "x") == ("", ["remove-cell"])
    assert docs_build.cell_tags("#| eval: false\nrun()", flags, "x")[1] == ["skip-execution"]
    assert docs_build.cell_tags("#|slow\nrun()", flags, "x")[1] == ["skip-execution"]
    assert docs_build.cell_tags("#| echo: false\n1", flags, "x")[1] == ["remove-input"]
    assert docs_build.cell_tags("x = 1  # | not a directive", flags, "x") == ("x = 1  # | not a directive", [])
    with pytest.raises(ValueError, match=r"nb.ipynb cell 3: nbdev directive '#\| exec_doc .*docs/build.py"):
        docs_build.cell_tags("#| exec_doc\n1", flags, "nb.ipynb cell 3")


def test_every_notebook_stages():
    "The site's staging refuses an unknown directive, and nbformat a repeated cell id: every notebook of nbs/ passes both."
    flags = docs_build.test_flags()
    for nb in sorted((REPO / "nbs").glob("[0-9]*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        ids = [c.get("id") for c in cells]
        assert len(set(ids)) == len(ids), f"{nb.name}: cell ids {sorted({i for i in ids if ids.count(i) > 1})} repeat"
        for i, c in enumerate(cells):
            if c["cell_type"] == "code": docs_build.cell_tags("".join(c["source"]), flags, f"{nb.name} cell {i}")


def test_missing_notebook_links_become_text():
    text = "see [`01_compress`](../nbs/01_compress.ipynb) and [`04_vis`](../nbs/04_vis.ipynb)"
    assert docs_build.unlink_missing(text, {"04_vis"}) == "see `01_compress` (`nbs/01_compress.ipynb`) and [`04_vis`](../nbs/04_vis.ipynb)"


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="--only 99_nothing: no such notebook"):
        docs_build.notebook_names("04_vis,99_nothing")
    with pytest.raises(SystemExit, match="no such folder"):
        docs_build.stage_results(tmp_path / "src", tmp_path / "no_report")
    with pytest.raises(SystemExit, match="not a report folder"):
        docs_build.snapshot(tmp_path)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site to check: the one `.ci/test` built (`$SMRNB_DOCS_SITE`, its html folder), rebuilt once without changes;
    or else a subset (the index, the paper pages, one notebook, the API), built twice."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if os.environ.get("SMRNB_DOCS_SITE"):
        html = Path(os.environ["SMRNB_DOCS_SITE"]); out, only = html.parent, []
    else:
        out = tmp_path_factory.mktemp("docs"); html, only = out / "html", ["--only", SUBSET]
    run = lambda: subprocess.run([sys.executable, str(REPO / "docs" / "build.py"), "--out", str(out)] + only,
                                 capture_output=True, text=True, env=env, timeout=3600)
    first = None if not only else run()
    assert first is None or first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    again = run()     # nothing changed: every notebook comes from the cache
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    return dict(html=html, subset=bool(only), first=first and first.stdout, rebuild=again.stdout)


def _text(page: Path) -> str:
    "A page's text without its tags (highlighted code is split into spans)."
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", "", page.read_text())))

def test_site_pages_and_cache(site):
    html = site["html"]
    for page in ["index.html", "guide.html", "api/index.html", "api/smrnb.compress.html"] + \
                [f"papers/{p}.html" for p in docs_build.PAPER_NAMES]:
        assert (html / page).is_file(), page
    index = _text(html / "index.html")
    assert "Semantic Merging and Reconstruction" in index and "bash .ci/setup && .venv/bin/python -m smrnb.report" in index  # the story
    assert "bash .ci/test" in index and "Pictures from the tiny paper" in index
    assert re.search(r'<img [^>]*src="_images/figure_2', (html / "index.html").read_text())   # its pictures
    smr = _text(html / "papers" / "smr.html")
    assert "smr_ablation_4e" in smr and "not the test fixture" in smr and "Table 4e" in smr    # experiments, results, their source
    assert "python slurm/launch.py --exp smr_ablation_4e --scale paper --dry-run" in smr
    assert 'src="../_images/fig3_tm' in (html / "papers" / "smr.html").read_text()
    api = (html / "api" / "smrnb.compress.html").read_text()
    assert 'id="smrnb.compress.compress"' in api and "automodule" not in api                  # autodoc ran
    vis = (html / "nbs" / "04_vis.html").read_text()
    assert "merging_figure" in vis and "#| export" not in vis and "#| hide" not in vis          # no nbdev directives
    assert re.search(r'<img [^>]*src="[^"]*\.png"', vis)                                         # an executed picture
    if site["first"] is not None: assert "1 notebook(s) executed" in site["first"], site["first"]
    assert "0 notebook(s) executed" in site["rebuild"], site["rebuild"]


@needs_chromium
def test_site_in_a_browser(site):
    "Every page loads with no console error or failed request, every internal link resolves, every image has a width."
    problems = check_site(site["html"])
    assert not problems, "\n".join(problems[:40])
    for shot in ("index.png", "paper_smr.png"):
        f = site["html"] / "_screenshots" / shot
        assert f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 10_000, f


@needs_chromium
def test_browser_check_finds_faults(tmp_path):
    "The check itself can fail: a broken link, a missing anchor, a broken image and a console error are all reported."
    (tmp_path / "index.html").write_text(
        '<html><head><link rel="icon" href="data:,"></head><body><a href="missing.html">x</a><a href="b.html#nope">y</a>'
        '<a href="https://example.org/">outside</a><img src="broken.png"><script>console.error("boom")</script></body></html>')
    (tmp_path / "b.html").write_text('<html><head><link rel="icon" href="data:,"></head><body id="top">b</body></html>')
    problems = check_site(tmp_path, screenshots=False)
    text = "\n".join(problems)
    assert "link to missing.html, which does not exist" in text
    assert "link to b.html#nope: no such anchor" in text
    assert "broken.png has natural width 0" in text and "HTTP 404" in text
    assert "console error: boom" in text
    assert "example.org" not in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def _kernel_idle(base: str, token: str, name: str) -> bool:
    "Whether the server has a session for notebook `name` whose kernel is idle."
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=10) as r:
        return any(s.get("path", "").endswith(name) and (s.get("kernel") or {}).get("execution_state") == "idle" for s in json.load(r))

@needs_chromium
def test_jupyterlab_runs_a_cell_in_the_project_kernel(tmp_path):
    "JupyterLab on 127.0.0.1 opens a notebook; a cell importing smrnb runs in the project's kernel and its output is on the page."
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [],
                     "source": "import smrnb, sys\nprint('smrnb', smrnb.__version__, 'kernel', sys.prefix)"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "check.ipynb").write_text(json.dumps(nb))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"))
    log = open(tmp_path / "lab.log", "w")    # a file, not a pipe: a server whose pipe is full stops answering
    lab = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                            f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=None",
                            "--LabApp.extension_manager=readonly"] + (["--allow-root"] if os.geteuid() == 0 else []),
                           cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(1200):     # wait for the server to answer (a hang guard, not a timing assumption)
            if lab.poll() is not None: pytest.fail(f"jupyter lab exited: {(tmp_path / 'lab.log').read_text()[-3000:]}")
            try: urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5); break
            except OSError: time.sleep(0.5)
        else: pytest.fail("jupyter lab never answered on " + base)
        with sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(HANG_GUARD_MS)
            try:
                page.goto(f"{base}/lab/tree/check.ipynb?token={token}")
                page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=HANG_GUARD_MS)
                for _ in range(1200):   # the notebook's kernel has started and is idle (the server says so; a hang guard)
                    if _kernel_idle(base, token, "check.ipynb"): break
                    time.sleep(0.5)
                else: pytest.fail("the notebook's kernel never became idle")
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=HANG_GUARD_MS)
                page.click(".jp-Notebook .jp-Cell .cm-content")
                page.keyboard.press("Shift+Enter")
                out = page.wait_for_selector(".jp-OutputArea-output:has-text('smrnb')", timeout=HANG_GUARD_MS).inner_text()
            except Exception:
                page.screenshot(path=str(tmp_path / "jupyterlab-failed.png"))
                raise AssertionError(f"JupyterLab: no output (screenshot {tmp_path / 'jupyterlab-failed.png'}); the page says "
                                     f"{page.inner_text('body')[-1500:]!r}; the server said {(tmp_path / 'lab.log').read_text()[-3000:]}")
            page.screenshot(path=str(tmp_path / "jupyterlab.png"))
            browser.close()
        assert f"smrnb {__version__} kernel {sys.prefix}" in out, out
    finally:
        lab.terminate()
        try: lab.wait(timeout=30)
        except subprocess.TimeoutExpired: lab.kill()
        log.close()
