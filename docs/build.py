"""Build the documentation site into `_docs/html`: `bash .ci/docs` (or `.venv/bin/python docs/build.py`).

The site is Sphinx + myst-nb. This script stages its sources in `_docs/src`: the pages of `docs/`, the README's story
(index) and the rest of the README (guide), one page per paper (the method, its experiments from the registry, the
report's tables and figures), every notebook of `nbs/` with its nbdev directives turned into myst-nb cell tags, and one
API page per module. Then it runs Sphinx, which executes each notebook at its tiny test sizes and keeps its outputs in
`_docs/cache` (jupyter-cache, keyed by the notebook's code), so a rebuild without changes executes nothing.

    python docs/build.py                        # the whole site; results from the committed snapshot docs/results/
    python docs/build.py --report reports/tiny  # the paper pages show your own main job's report instead
    python docs/build.py --only 04_vis,36_demo  # a subset of the notebooks (the browser test builds one)
    python docs/build.py --snapshot reports/tiny  # refresh docs/results/ from a report (then commit it)
    python docs/build.py --check                # also open every page in headless Chromium (docs/check_site.py)
"""
from __future__ import annotations
import argparse, configparser, json, os, pkgutil, re, shutil, subprocess, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
sys.path[:0] = [str(REPO), str(DOCS)]
import jupyter_server_mathjax                     # noqa: E402  MathJax, served from the site itself
import pandas as pd                               # noqa: E402
from jupyter_cache import get_cache              # noqa: E402
import smrnb                                      # noqa: E402
from smrnb.experiments import EXPERIMENTS         # noqa: E402
from smrnb.report import PAPERS, PAPER_REPORT, TABLE_EXPERIMENTS, TIMING   # noqa: E402
from check_site import check_site                 # noqa: E402  docs/check_site.py
PAPER_NAMES = {"smr": "SMR", "pcae": "PCAE", "greenmim": "GreenMIM", "maelite": "MAE-lite", "itpn": "iTPN / Fast-iTPN"}
PAPER_FIGURES = {   # the report's figure files, per paper (their captions)
    "smr": [("figure_2.png", "Figure 2: reconstruction loss against the share of tokens removed, SMR vs MIM+SD"),
            ("loss_curves.png", "Pre-training loss curves (mean ± sd over the seeds)"),
            ("fig3_tm.png", "Figure 3: token merging (TM) on the toy set, by the number of merged tokens"),
            ("fig4_compressors.png", "Figure 4: the four compressors (TM / TD / ITF / RD)"),
            ("fig5_td.png", "Figure 5: token dropping (TD), by the number of dropped tokens"),
            ("table_1_minutes_per_epoch.png", "Table 1: time per epoch, relative to SMR"),
            ("table_1_memory_gb_per_gpu.png", "Table 1: memory, relative to SMR"),
            ("table_8_gmacs.png", "Table 8: GMACs, relative to SMR")],
    "pcae": [("pcae_fig3_diversity.png", "PCAE Figure 3: token diversity (nuclear norm) through the blocks")],
    "greenmim": [("greenmim_fig4.png", "GreenMIM Figure 4: the optimal group size and its cost (Algorithm 1)")],
    "maelite": [("maelite_figure_2.png", "MAE-lite Figure 2: fine-tuned top-1 with the first k pre-trained blocks kept"),
                ("maelite_fig3_attention.png", "MAE-lite Figure 3: attention distance and entropy per block"),
                ("maelite_fig4_cka.png", "MAE-lite Figure 4: layer similarity (CKA) between two models")],
    "itpn": []}
INDEX_FIGURES = ["figure_2.png", "loss_curves.png", "fig3_tm.png"]
TABLE_COLUMNS = ["row", "variant", "paper", "ours", "ours_sd", "n_seeds", "ours_metric", "state"]
ORDERING_COLUMNS = ["better", "worse", "ours_metric", "n", "diff_mean", "diff_sd", "p", "verdict", "source"]
SNAPSHOT_KEEP = (".png", ".md", ".csv", ".txt")


def write_if_changed(path: Path, text: str | bytes) -> bool:
    "Write `path` only when its content differs, so that Sphinx's incremental build re-reads only what changed."
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    if path.is_file() and path.read_bytes() == data: return False
    path.write_bytes(data); return True


# ---- notebooks: nbdev directives -> myst-nb cell tags ------------------------------------------------------------
DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(?P<key>[A-Za-z_][\w-]*)\s*:?\s*(?P<value>.*?)\s*$")

def test_flags() -> set:
    "The `tst_flags` of settings.ini: cells flagged with one of them are not run by nbdev_test, nor by the site."
    c = configparser.ConfigParser(); c.read(REPO / "settings.ini")
    return set(c["DEFAULT"].get("tst_flags", "").split())

def cell_tags(source: str, flags: set, where: str) -> tuple[str, list]:
    "`(source without its nbdev directives, myst-nb tags)` for one code cell; an unknown directive is refused."
    tags, kept = [], []
    for line in source.split("\n"):
        m = DIRECTIVE.match(line)
        if not m: kept.append(line); continue
        key, value = m["key"], m["value"].lower()
        if key in ("hide", "default_exp"): tags.append("remove-cell")
        elif key in ("export", "exports", "exporti", "export_to"): pass
        elif key == "eval" and value == "false": tags.append("skip-execution")
        elif key == "echo" and value == "false": tags.append("remove-input")
        elif key == "output" and value == "false": tags.append("remove-output")
        elif key in flags: tags.append("skip-execution")
        else: raise ValueError(f"{where}: nbdev directive '#| {key} {value}' has no counterpart in docs/build.py "
                               "(cell_tags): add one there, or remove the directive")
    return "\n".join(kept).strip("\n"), sorted(set(tags))

def stage_notebook(src: Path, dst: Path, flags: set) -> dict:
    "Copy notebook `src` to `dst` with myst-nb tags for its nbdev directives; returns its title and description."
    nb = json.loads(src.read_text())
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code": continue
        code, tags = cell_tags("".join(c["source"]), flags, f"{src.name} cell {i}")
        c["source"], c["outputs"], c["execution_count"] = code, [], None
        if tags: c.setdefault("metadata", {})["tags"] = sorted(set(c.get("metadata", {}).get("tags", [])) | set(tags))
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    write_if_changed(dst, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    head = "".join(nb["cells"][0]["source"]).split("\n") if nb["cells"] else []
    title = next((l[2:].strip() for l in head if l.startswith("# ")), src.stem)
    desc = next((l[1:].strip() for l in head if l.startswith(">")), "")
    return dict(name=src.stem, title=title, description=desc)

def notebook_names(only: str | None) -> list:
    "The numbered notebooks of nbs/ in order (tables.ipynb is the report's papermill notebook: the paper pages show its output)."
    names = sorted(p.stem for p in (REPO / "nbs").glob("[0-9]*.ipynb"))
    if only is None: return names
    want = [n.strip() for n in only.split(",") if n.strip()]
    if bad := [n for n in want if n not in names]:
        raise SystemExit(f"error: --only {','.join(bad)}: no such notebook in nbs/ (e.g. {names[0]}, {names[-1]})")
    return want

def stage_notebooks(src: Path, only: str | None) -> list:
    flags, infos = test_flags(), []
    names = notebook_names(only)
    for old in (src / "nbs").glob("*.ipynb"):
        if old.stem not in names: old.unlink()
    for n in names: infos.append(stage_notebook(REPO / "nbs" / f"{n}.ipynb", src / "nbs" / f"{n}.ipynb", flags))
    lines = ["# The notebooks", "", "The library, one concept per notebook, in the order it is built: each module's code, "
             "a sentence on it and a small test at tiny CPU sizes, with the outputs of a run made when this site was built.", "",
             "| notebook | what it holds |", "|---|---|"]
    lines += [f"| [{i['name']}]({i['name']}.ipynb) | {i['description'] or i['title']} |" for i in infos]
    lines += ["", "```{toctree}", ":hidden:", ":maxdepth: 1", ""] + [n for n in names] + ["```", ""]
    write_if_changed(src / "nbs" / "index.md", "\n".join(lines))
    return infos


# ---- the paper pages: the method (docs/papers/<paper>.md), its experiments (the registry), its results (a report) ----
EXTRA_TABLES = {"fig2": ["figure_2.csv"], "8": ["table_8_analytic.csv"], "ITPN-fig5": ["itpn_figure_5.csv"],
                "MAELITE-fig2": ["maelite_figure_2.csv"], "greenmim-fig4": ["greenmim_fig4_best.csv"]}

def md_table(df) -> str:
    return df.fillna("—").to_markdown(index=False)

def experiments_section(paper: str) -> list:
    "Markdown: the paper's registered experiments, the main job's share of them, and the commands that run each."
    exps = [EXPERIMENTS[TABLE_EXPERIMENTS[t]] for t in PAPER_REPORT[paper] if t in TABLE_EXPERIMENTS]
    rows = [dict(experiment=f"`{e.name}`", table=e.table, variants=" ".join(v.name for v in e.variants),
                 **{"main job": ("once (timing)" if e.table in TIMING else "seeds 0, 1, 2") if e.table in PAPERS[paper] else "—",
                    "paper scale": f"{e.resources['paper']['nodes']} x {e.resources['paper']['gpus_per_node']} GPUs, "
                                   f"{e.resources['paper']['timeout_min'] / 60:g} h per job"}) for e in exps]
    out = ["## Its experiments", "",
           f"Each table of the paper is a registered experiment (`smrnb.experiments`). The main job "
           f"(`python -m smrnb.report --papers {paper}`, or all five papers by default) runs the ones marked in *main job* "
           "at tiny scale on this machine, then rebuilds the tables below; every experiment also has a paper-scale plan "
           "for SLURM.", "", md_table(pd.DataFrame(rows)), ""]
    for e in exps:
        out += [f"### `{e.name}` (table {e.table})", "", e.description, "", "```bash",
                f"python slurm/launch.py --exp {e.name} --scale tiny --cluster local --seeds 0,1,2   # on this machine",
                f"python slurm/launch.py --exp {e.name} --scale paper --dry-run   # the paper-scale plan: one line per run",
                f"python slurm/launch.py --exp {e.name} --scale paper --cluster slurm   # submit it", "```", ""]
    return out

def table_markdown(path: Path, columns=None) -> list:
    df = pd.read_csv(path)
    todo = sorted({t for t in df.get("todo", pd.Series(dtype=str)).dropna() if str(t).strip()})
    if columns: df = df[[c for c in columns if c in df.columns]]
    out = [md_table(df), ""]
    if todo: out += ["Missing numbers are filled by:", "", "```bash", *todo, "```", ""]
    return out

def results_section(paper: str, results: Path, source: str) -> list:
    "Markdown: the report's tables, orderings and figures for `paper`, from the report folder `results`."
    out = ["## Results", "", source, ""]
    for t in PAPER_REPORT[paper]:
        files = [results / f"table_{t}.csv"] + [results / f for f in EXTRA_TABLES.get(t, [])]
        files = [f for f in files if f.is_file()]
        if not files: continue
        out += [f"### Table {t}", ""]
        for f in files: out += table_markdown(f, TABLE_COLUMNS if f.name.startswith("table_") and "analytic" not in f.name else None)
        if (o := results / f"orderings_{t}.csv").is_file():
            out += ["The paper's orderings, tested over the seeds (one-sided paired t-test, p < 0.05):", ""]
            out += table_markdown(o, ORDERING_COLUMNS)
    figs = [(f, cap) for f, cap in PAPER_FIGURES[paper] if (results / f).is_file()]
    if figs: out += ["### Figures", ""]
    for f, cap in figs: out += [f"```{{figure}} ../results/{f}", ":width: 90%", "", cap, "```", ""]
    return out

def results_source(results: Path) -> str:
    "One paragraph: where the results shown come from."
    note = results / "SOURCE.md"
    if note.is_file(): return note.read_text().strip()
    when = time.strftime("%Y-%m-%d", time.gmtime((results / "summary.md").stat().st_mtime)) if (results / "summary.md").is_file() else "an unknown date"
    return f"From the report in `{results}` (written {when} by `python -m smrnb.report`)."

NB_LINK = re.compile(r"\[([^\]]+)\]\(\.\./nbs/([\w-]+)\.ipynb\)")

def unlink_missing(text: str, have: set) -> str:
    "Links to notebooks that a subset build (`--only`) leaves out become plain text, so that every link resolves."
    return NB_LINK.sub(lambda m: m[0] if m[2] in have else f"{m[1]} (`nbs/{m[2]}.ipynb`)", text)

def stage_papers(src: Path, results: Path, have: set) -> list:
    source = results_source(results)
    for paper in PAPER_NAMES:
        intro = unlink_missing((DOCS / "papers" / f"{paper}.md").read_text().rstrip(), have)
        text = "\n".join([intro, ""] + experiments_section(paper) + results_section(paper, results, source))
        write_if_changed(src / "papers" / f"{paper}.md", text + "\n")
    return list(PAPER_NAMES)


# ---- API pages: one per module, from its docstrings ------------------------------------------------------------
def module_notebook(mod: str) -> str | None:
    "The notebook a module is exported from (nbdev writes `# %% ../nbs/NAME.ipynb` above each cell)."
    f = REPO / (mod.replace(".", "/") + ".py")
    if not f.is_file(): f = REPO / mod.replace(".", "/") / "__init__.py"
    m = re.search(r"^# %% [./]*nbs/([\w-]+)\.ipynb", f.read_text(), re.M) if f.is_file() else None
    return m[1] if m else None

def stage_api(src: Path, notebooks: list) -> list:
    mods = sorted(m.name for m in pkgutil.walk_packages(smrnb.__path__, "smrnb.") if not m.name.split(".")[-1].startswith("_"))
    have = {n["name"] for n in notebooks}
    lines = ["# API reference", "", "Every module of the library, from its docstrings; each is exported from one notebook.", "",
             "```{toctree}", ":maxdepth: 1", ""] + [m for m in mods] + ["```", ""]
    write_if_changed(src / "api" / "index.md", "\n".join(lines))
    for m in mods:
        nb = module_notebook(m)
        where = (f"Exported from [`nbs/{nb}.ipynb`](../nbs/{nb}.ipynb)." if nb in have else
                 f"Exported from `nbs/{nb}.ipynb`." if nb else "")
        write_if_changed(src / "api" / f"{m}.md", f"# `{m}`\n\n{where}\n\n```{{eval-rst}}\n.. automodule:: {m}\n```\n")
    return mods


# ---- the index (the README's story and pictures) and the guide (the rest of the README) -------------------------
STORY_END = "<!-- docs: the story ends here -->"

def stage_index(src: Path, results: Path, papers: list, with_notebooks: bool):
    readme = (REPO / "README.md").read_text()
    if readme.count(STORY_END) != 1:
        raise SystemExit(f"error: README.md must hold the line {STORY_END!r} once (where the site's index stops and its guide starts)")
    write_if_changed(src / "_include" / "README.md", readme)
    figs = [f for f in INDEX_FIGURES if (results / f).is_file()]
    caps = {f: c for p in PAPER_FIGURES.values() for f, c in p}
    lines = ["```{include} _include/README.md", f":end-before: {STORY_END}", "```", ""]
    if figs:
        lines += ["## Pictures from the tiny paper", "", results_source(results), ""]
        for f in figs: lines += [f"```{{figure}} results/{f}", ":width: 90%", "", caps[f], "```", ""]
    lines += ["## The papers", "", "| paper | its page: the method, its experiments, its tables and figures |", "|---|---|"]
    lines += [f"| {PAPER_NAMES[p]} | [{PAPER_NAMES[p]}](papers/{p}.md) |" for p in papers]
    lines += ["", "The [guide](guide.md) holds the rest of the README (the tests, the toy set, the teacher, the report, the "
              "launcher, fidelity, the layout, benchmarks)" + (", the [notebooks](nbs/index.md) the library itself" if with_notebooks else "")
              + " and the [API reference](api/index.md) every module.", "",
              "```{toctree}", ":hidden:", ":caption: Papers", ""] + [f"papers/{p}" for p in papers] + ["```", "",
              "```{toctree}", ":hidden:", ":caption: Using it", "", "guide"] + (["nbs/index"] if with_notebooks else []) + ["api/index", "```", ""]
    write_if_changed(src / "index.md", "\n".join(lines))
    write_if_changed(src / "guide.md", "\n".join(["# Guide", "", "The rest of the README: the tests, the toy set and the "
                     "teacher, the report, the launcher, fidelity to the reference implementations, the layout and benchmarks.", "",
                     "```{include} _include/README.md", f":start-after: {STORY_END}", "```", ""]))

def report_files(report: Path) -> list:
    "The tables, figures and notes of a report folder (what the site shows and what a snapshot keeps)."
    return [f for f in sorted(report.iterdir()) if f.is_file() and f.suffix in SNAPSHOT_KEEP]

def stage_results(src: Path, results: Path):
    if not results.is_dir(): raise SystemExit(f"error: --report {results}: no such folder (a report folder is written by `python -m smrnb.report`)")
    for f in report_files(results): write_if_changed(src / "results" / f.name, f.read_bytes())


# ---- build ----------------------------------------------------------------------------------------------------
def cache_records(cache: Path) -> int:
    if not cache.exists(): return 0
    return len(get_cache(str(cache)).list_cache_records())

def stage(out: Path, results: Path, only: str | None) -> Path:
    src = out / "src"
    notebooks = stage_notebooks(src, only)
    stage_results(src, results)
    papers = stage_papers(src, results, {n["name"] for n in notebooks})
    stage_index(src, results, papers, with_notebooks=bool(notebooks))
    stage_api(src, notebooks)
    for f in ("conf.py", "favicon.svg"): write_if_changed(src / f, (DOCS / f).read_bytes())
    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    for link, target in (("data_manifests", REPO / "data_manifests"), ("nbs/fixtures", REPO / "nbs" / "fixtures"),
                         ("_extra_static/mathjax", mathjax)):
        if not (src / link).exists(): (src / link).parent.mkdir(parents=True, exist_ok=True); (src / link).symlink_to(target)
    return src

def sphinx(src: Path, out: Path, jobs: int) -> tuple[int, Path]:
    "Run Sphinx on the staged sources; returns its exit code and the warnings file."
    # the kernels draw inline (no MPLBACKEND), so the pictures reach the page; IN_TEST as nbdev_test sets it (a notebook's
    # closing `nbdev_export()` cell then does nothing)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(SMRNB_DOCS_CACHE=str(out / "cache"), IN_TEST="1", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p]))
    warnings = out / "warnings.txt"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", str(jobs), "-d", str(out / "doctrees"),
           "-w", str(warnings), str(src), str(out / "html")]
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:   # each kernel says it talks TCP on 127.0.0.1 unencrypted: noise here, everything else passes
        if "Kernel is running over TCP without encryption" not in line: sys.stderr.write(line)
    return proc.wait(), warnings

def build(out=REPO / "_docs", report=None, only=None, jobs=2) -> Path:
    "Stage and build the site in `out` (`out/html/index.html`); raises SystemExit naming what failed."
    out = Path(out); results = Path(report) if report else DOCS / "results"
    t0, before = time.time(), cache_records(out / "cache")
    src = stage(out, results, only)
    rc, warnings = sphinx(src, out, jobs)
    n_warn = len([l for l in warnings.read_text().splitlines() if "WARNING" in l or "ERROR" in l]) if warnings.is_file() else 0
    executed = cache_records(out / "cache") - before
    print(f"[docs] {out / 'html' / 'index.html'}: {time.time() - t0:.0f} s, {executed} notebook(s) executed "
          f"(the others from the cache), {n_warn} warning(s){f' in {warnings}' if n_warn else ''}")
    if rc: raise SystemExit(f"error: sphinx-build failed (exit {rc}); see the messages above and {warnings}")
    return out / "html"

def snapshot(report: Path):
    "Replace docs/results/ with the tables, figures and notes of the report folder `report` (then commit it)."
    report = Path(report)
    if not (report / "summary.md").is_file(): raise SystemExit(f"error: --snapshot {report}: no summary.md there (not a report folder of `python -m smrnb.report`)")
    dst = DOCS / "results"
    shutil.rmtree(dst, ignore_errors=True); dst.mkdir(parents=True)
    for f in report_files(report): shutil.copyfile(f, dst / f.name)
    (dst / "SOURCE.md").write_text(f"From a real tiny run: the report `python -m smrnb.report` wrote in `{report}`, copied here on "
                                   f"{time.strftime('%Y-%m-%d')} by `python docs/build.py --snapshot {report}`.\n")
    print(f"[docs] docs/results/: {len(list(dst.iterdir()))} files from {report}; edit docs/results/SOURCE.md to say which run it was")

def main(argv=None):
    ap = argparse.ArgumentParser(description="Build the documentation site (Sphinx + myst-nb) into _docs/html.",
                                 epilog="examples:\n  bash .ci/docs\n  bash .ci/docs --report reports/tiny --check",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "_docs"), help="build folder (default _docs): src/, cache/, html/")
    ap.add_argument("--report", help="report folder whose tables and figures the paper pages show (default: the snapshot docs/results/)")
    ap.add_argument("--only", help="comma-separated notebooks to include (default: every numbered notebook)")
    ap.add_argument("--jobs", type=int, default=2, help="Sphinx processes reading (and executing) pages at once (default 2)")
    ap.add_argument("--check", action="store_true", help="then open every page in headless Chromium (docs/check_site.py)")
    ap.add_argument("--snapshot", metavar="REPORT", help="only copy a report folder's tables and figures into docs/results/")
    a = ap.parse_args(argv)
    if a.snapshot: return snapshot(a.snapshot)
    html = build(a.out, a.report, a.only, a.jobs)
    if a.check:
        problems = check_site(html)
        if problems: raise SystemExit("error: the browser check found:\n  " + "\n  ".join(problems))

if __name__ == "__main__":
    main()
