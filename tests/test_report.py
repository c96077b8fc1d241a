"""The report end to end: papermill runs nbs/tables.ipynb with a real Jupyter kernel, nbconvert writes the HTML."""
import json, subprocess, sys
from pathlib import Path
import pytest
from smrnb.report import build_report, FIXTURE_RUNS, REPO


def test_report_on_fixture(tmp_path):
    out = build_report(FIXTURE_RUNS, tmp_path / "report", tables="2,4e,4f,8,fig2,fig3-5")
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
    for f in ("figure_2.png", "fig3_tm.png", "fig4_compressors.png", "fig5_td.png", "table_8_gmacs.png", "summary.csv"):
        assert (out / f).stat().st_size > 0, f


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
