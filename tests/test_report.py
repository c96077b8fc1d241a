"""The report end to end: papermill runs nbs/tables.ipynb with a real Jupyter kernel, nbconvert writes the HTML."""
import html, json, re, subprocess, sys
from html.parser import HTMLParser
from pathlib import Path
import numpy as np
import pytest
from smrnb.experiments import EXPERIMENTS
from smrnb.report import build_report
from smrnb.compare import report_table, display_columns, _num
from smrnb.results import _fake_run, FIXTURE_RUNS, REPO


class Cells(HTMLParser):
    "The text of every table cell of an HTML page, and how many header cells are inside table bodies (index columns)."
    def __init__(self):
        super().__init__(); self.cells, self.body_th, self._cell, self._body = [], 0, None, False
    def handle_starttag(self, tag, attrs):
        if tag == "tbody": self._body = True
        if tag in ("td", "th"): self._cell = ""; self.body_th += tag == "th" and self._body
    def handle_endtag(self, tag):
        if tag == "tbody": self._body = False
        if tag in ("td", "th") and self._cell is not None: self.cells.append(self._cell.strip()); self._cell = None
    def handle_data(self, data):
        if self._cell is not None: self._cell += data


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    "The whole report on the committed fixture, HTML included (built once for the tests that read it)."
    return build_report(FIXTURE_RUNS, tmp_path_factory.mktemp("full") / "report")


def test_html_has_no_stderr(full_report):
    page = (full_report / "report.html").read_text()
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in page          # no red box (e.g. tqdm's IProgress warning)
    assert "TqdmWarning" not in page


def test_html_tables_in_full(full_report):
    page = (full_report / "report.html").read_text()
    p = Cells(); p.feed(page)
    assert len(p.cells) > 500 and p.body_th == 0                                   # every table, none with an index column
    assert not [c for c in p.cells if c.endswith("...")]                           # nothing cut
    cmds = {m.strip() for f in full_report.glob("*.md") for m in re.findall(r"python slurm/launch\.py [^|]*", f.read_text())}
    assert len(cmds) >= 10 and all(c in p.cells or html.escape(c) in page for c in cmds), cmds - set(p.cells)   # every launch command, whole
    for line in (full_report / "table_8_analytic.md").read_text().splitlines()[2:]:  # Table 8's conventions, whole
        assert line.split("|")[1].strip() in p.cells
    text = re.sub(r"<[^>]+>", " ", page[page.index("<main"):])
    assert re.sub(r"\s+", " ", text).strip().endswith("every figure as PNG.")    # the page ends on a whole sentence
    assert "must show every state" not in page


def test_precision_and_memory_label(full_report):
    t8 = (full_report / "table_8.md").read_text()
    for v in ("sd", "smr"):                                                        # tiny GMACs: 3 significant digits (not 0.02 vs 0.02)
        (ev,) = [json.loads((d / "eval.json").read_text()) for d in (FIXTURE_RUNS / "tiny/smr_table8").glob(f"{v}-*")]
        assert ev["gmacs"] < 0.1 and _num(ev["gmacs"], 2) in t8 and len(_num(ev["gmacs"], 2).lstrip("0.")) >= 3
    t1 = (full_report / "table_1.md").read_text()
    assert "peak_rss_gb (process, CPU)" in t1                                     # the runs recorded their device: what is measured


def test_no_diff_between_unlike_quantities(full_report, tmp_path):
    for e in EXPERIMENTS.values():                                                 # tiny scale: a toy set, a tiny model, this machine
        df = report_table(e.name, FIXTURE_RUNS, "tiny")
        assert df["diff"].isna().all() and not df.invalid_cells.str.contains(r"\bdiff\b").any(), e.name
        assert "diff" not in display_columns(df, "tiny")
    for f in full_report.glob("table_*.md"):                                       # and none in the report's tables
        assert not re.search(r"\|\s*diff\s*\|", f.read_text().splitlines()[0]), f.name
    _fake_run(tmp_path, "smr_ablation_4e", "tm", "paper", eval=dict(evaluate="finetune", top1_finetune=0.853))
    _fake_run(tmp_path, "smr_ablation_4e", "none", "paper", eval=dict(evaluate="linear_probe", linear_probe=0.7))
    _fake_run(tmp_path, "smr_table1", "smr", "paper", eval=dict(evaluate="complexity", gmacs=12.8, images_per_s=1000, peak_mem_mb=14000),
              summary=dict(steps=10, epochs=0.01))
    df = report_table("smr_ablation_4e", tmp_path, "paper").set_index("variant")
    assert abs(df.loc["tm", "diff"] - (85.3 - 85.4)) < 1e-9                       # paper scale, the paper's metric: a difference
    assert np.isnan(df.loc["none", "diff"]) and df.loc["none", "ours_metric"] == "top1_linear"   # a linear probe is not a fine-tune
    t1 = report_table("smr_table1", tmp_path, "paper").set_index(["variant", "metric"])
    assert np.isnan(t1.loc[("smr", "memory_gb_per_gpu"), "diff"])                 # device not recorded: not the paper's quantity
    for (v, m), r in t1.iterrows():
        assert np.isnan(r["diff"]) or m == r.ours_metric


def test_ranks_and_ratios_on_fixture():
    t4e = report_table("smr_ablation_4e", FIXTURE_RUNS).set_index("variant")
    assert t4e.loc[["tm", "itf", "none"], "paper_rank"].tolist() == [1, 2, 3]     # ranked over the rows that have both numbers
    assert t4e.loc[["td", "rd"], "ours_rank"].isna().all()
    t8 = report_table("smr_table8", FIXTURE_RUNS).set_index("variant")
    ev = {v: json.loads(next((FIXTURE_RUNS / "tiny/smr_table8").glob(f"{v}-*/eval.json")).read_text()) for v in ("sd", "smr")}
    assert abs(t8.loc["sd", "paper_vs_smr"] - 17.6 / 12.8) < 1e-9
    assert abs(t8.loc["sd", "ours_vs_smr"] - ev["sd"]["gmacs"] / ev["smr"]["gmacs"]) < 1e-9 and t8.loc["sd", "ours_vs_smr"] > 1   # SD costs more


def test_report_on_fixture(full_report):
    out = full_report
    nb = json.loads((out / "tables.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])      # papermill's parameters
    html = (out / "report.html").read_text()
    assert "smr_ablation_4f" in html and html.count("<img") >= 5
    assert "report_table(" not in html                                                             # input cells hidden
    t4f = (out / "table_4f.md").read_text()
    assert "84.70" in t4f and "failed" in t4f and "running" in t4f
    t4e = (out / "table_4e.md").read_text()
    assert "older config" in t4e and "evaluating" in t4e and "—" in t4e
    assert "python slurm/launch.py --exp smr_table2 --scale tiny --cluster local" in (out / "table_2.md").read_text()
    for f in ("figure_2.png", "fig3_tm.png", "fig4_compressors.png", "fig5_td.png", "table_8_gmacs.png", "summary.csv", "loss_curves.png",
              "orderings_4e.md", "orderings_4f.md", "orderings_fig2.md"):
        assert (out / f).stat().st_size > 0, f
    assert "ours_sd" in t4e and "n_seeds" in t4e                                                  # mean ± sd over the fixture's seeds
    o4e = (out / "orderings_4e.md").read_text()
    assert "| tm " in o4e and "verdict" in o4e.splitlines()[0]                                     # the paper's best (TM) against the others
    assert re.search(r"\b(holds|within noise|reversed)\b", o4e)
    assert "The teacher:" in html and "the one in the runs’ configs" in html                     # its record travels with the runs
    assert "derived" in (out / "table_4a.md").read_text() and "paper_source" not in (out / "table_4e.md").read_text()


def test_report_paper_scale_without_runs(tmp_path):
    (tmp_path / "runs").mkdir()
    out = build_report(tmp_path / "runs", tmp_path / "report", scale="paper", tables="4f,8", html=False)
    t = (out / "table_4f.md").read_text()
    assert t.count("not launched") == 5 and "--scale paper --cluster slurm" in t


def test_report_cli_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "smrnb.report", "--run", "4z", "--runs_dir", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "unknown table(s) ['4z']" in r.stderr
    r = subprocess.run([sys.executable, "-m", "smrnb.report", "--run", "", "--runs_dir", str(tmp_path / "nope"), "--out_dir", str(tmp_path / "o")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode != 0 and "does not exist" in r.stderr
