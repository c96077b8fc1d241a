"""The main job, `python -m smrnb.report`, end to end at reduced size: every paper's experiments (each of their runs pre-trained
and evaluated through the launcher, the runs of one seed sharing the cores), two seeds, then the report. Reduced size: it runs in
`$SMRNB_TOY_DIR`, a toy set of 7 + 2 images per class (one step per epoch), against the stand-in teacher; the main job and
its report read both from the environment, so the report finds every run as current."""
import os, re, subprocess, sys
import pandas as pd
from smrnb.data import make_toy_dataset
from smrnb.experiments import get_experiment
from smrnb.report import PAPERS, TABLE_EXPERIMENTS, TIMING

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_main_job_runs_and_reports_every_paper(tmp_path, teacher_env):
    make_toy_dataset(tmp_path / "toy", n_train=7, n_val=2, size=32)
    env = dict(os.environ, SMRNB_TOY_DIR=str(tmp_path / "toy"), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-m", "smrnb.report", "--seeds", "0,1", "--runs_dir", str(tmp_path / "runs"),
                        "--out_dir", str(tmp_path / "report")], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=3000)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert f"toy set: {tmp_path / 'toy'} ($SMRNB_TOY_DIR, used as it is)" in r.stdout and not (tmp_path / "data").exists()
    out = tmp_path / "report"
    # every paper's experiments ran, seed by seed: one pool per seed, then the timing tables once
    seeded = [TABLE_EXPERIMENTS[t] for p in PAPERS.values() for t in p if t not in TIMING]
    assert len(re.findall(r"^== .*\(tiny scale, seed [01]\)$", r.stdout, re.M)) == 2, r.stdout[-3000:]
    for e in seeded: assert re.search(rf"^== .*\b{e}\b.*\(tiny scale, seed 1\)$", r.stdout, re.M), e
    for t in TIMING:
        if t in {t for p in PAPERS.values() for t in p}: assert f"== {TABLE_EXPERIMENTS[t]} (tiny scale, timing)" in r.stdout, t
    # runs of the same config are pre-trained once: Figure 2's SMR model is 4e's TM run, drop40 is pcae300, fig2's MAE is Table 5's
    for what in ("smr_fig2/smr-", "pcae_dropping/drop40-", "maelite_fig2/mae_tiny-"):
        assert re.search(rf"pre-training reused from \S+ \(the same config\) -> \S+{what}", r.stdout), (what, r.stdout[-3000:])
    # every table of the experiments it ran holds our numbers, no run left behind
    sm = pd.read_csv(out / "summary.csv")
    ran = sm[sm.table.isin([t for p in PAPERS.values() for t in p])]
    assert set(ran.table) == {t for p in PAPERS.values() for t in p}, sorted(ran.table)
    assert (ran.runs_done == ran.runs).all() and (ran.with_ours > 0).all(), ran.to_string()
    for t in ran.table:
        if t in ("fig2",): continue
        md = (out / f"table_{t}.md").read_text()
        assert "not launched" not in md and "python slurm/launch.py" not in md, (t, md)
    # each paper's orderings tested over the two seeds: one line per paper in summary.md
    papers = pd.read_csv(out / "summary_papers.csv").set_index("paper")
    assert set(papers.index) == set(PAPERS), papers
    for p, line in papers.orderings.items():
        assert re.fullmatch(r"\d+ of \d+ hold, \d+ reversed, \d+ within noise", line), (p, line)
    summary = (out / "summary.md").read_text()
    assert summary.startswith("Orderings per paper") and all(f"| {p} " in summary for p in PAPERS), summary
    # the claims beyond the printed numbers are among them, each with its source line
    for t, claim in (("PCAE-1e", "pcae300.top1_finetune"), ("GreenMIM-2", "greenmim800.pretrain_images_per_s"),
                     ("MAELITE-fig2", "mae_tiny.top1_reserved_3"), ("PCAE-5", "drop40.throughput_gain")):
        v = pd.read_csv(out / f"orderings_{t}.csv")
        row = v[v.better == claim]
        assert len(row) and row.n.iloc[0] == 2 and row.source.iloc[0].startswith("seed 00"), (t, v.to_string())
    assert len(pd.read_csv(out / "orderings_ITPN-8.csv")) == 1                  # Table 8: iPT > w/o iPT, from the paper's numbers
    assert get_experiment("itpn_ipt").variants[0].name == "no_ipt"
