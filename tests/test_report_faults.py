"""The report never hides or crashes on bad results: non-finite values are shown as invalid (and kept out of diffs, ratios
and rank correlations), and a run with a file the report cannot use is a row in state `unreadable`, while the rest of
the report is still written."""
import json, shutil
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from smrnb.results import FIXTURE_RUNS, _fake_run
from smrnb.report import build_report, compactness_frame, compactness_table
from smrnb.compare import report_table, fmt_table, save_table, _num

BAD_BYTES = b"step 1 \xff\xfe\xfa not utf-8\n"


def fixture_copy(tmp_path) -> Path:
    "A writable copy of the committed report fixture."
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURE_RUNS, runs)
    return runs


def run_dir(runs: Path, exp: str, variant: str, seed: int = 0) -> Path:
    "The fixture's run directory of `exp/variant` at `seed` (there is one per variant and seed)."
    (d,) = [p for p in (runs / "tiny" / exp).glob(f"{variant}-*") if p.name.rsplit("-", 1)[0] == variant
            and json.loads((p / "config.json").read_text())["config"].get("seed", 0) == seed]
    return d


def shown(df: pd.DataFrame, variant: str, col: str, metric: str | None = None) -> str:
    "The text of one cell of a `report_table` as the report shows it."
    sel = df.variant == variant
    if metric is not None: sel &= df.metric == metric
    return fmt_table(df)[sel][col].iloc[0]


def test_nan_value_is_shown_invalid_and_not_used(tmp_path):
    runs = fixture_copy(tmp_path)
    (run_dir(runs, "smr_ablation_4f", "k15x4") / "eval.json").write_text('{"evaluate": "linear_probe", "linear_probe": NaN, "knn": 0.1}')
    df = report_table("smr_ablation_4f", runs)
    assert shown(df, "k15x4", "ours") == "NaN (invalid)"
    assert shown(df, "k15x4", "ours_rank") == "invalid" and shown(df, "k15x4", "diff") == "—"   # tiny scale: no diff at all
    assert "not measured" not in shown(df, "k15x4", "todo")
    assert "linear_probe" in shown(df, "k15x4", "detail") and "NaN" in shown(df, "k15x4", "detail")
    ev = json.loads((run_dir(runs, "smr_ablation_4f", "k20x4") / "eval.json").read_text())
    assert shown(df, "k20x4", "ours") == _num(100 * ev["linear_probe"], 2)            # the other rows are untouched
    md = save_table(df, tmp_path / "out", "t").read_text()
    assert "NaN (invalid)" in md


def test_inf_gmacs_makes_ratios_invalid_not_zero(tmp_path):
    runs = fixture_copy(tmp_path)
    ev = run_dir(runs, "smr_table8", "smr") / "eval.json"
    ev.write_text(json.dumps(dict(json.loads(ev.read_text()), gmacs=float("inf"))))       # json writes Infinity
    df = report_table("smr_table8", runs)
    assert shown(df, "smr", "ours") == "inf (invalid)"
    assert shown(df, "sd", "ours_vs_smr") == "invalid"                                # SD / inf is not a ratio of 0.00
    assert shown(df, "smr", "ours_vs_smr") == "invalid"
    sd = json.loads((run_dir(runs, "smr_table8", "sd") / "eval.json").read_text())["gmacs"]
    assert shown(df, "sd", "ours") == _num(sd, 2) and shown(df, "sd", "paper_vs_smr") == "1.38"
    assert not np.isinf(df[["ours", "diff", "ours_vs_smr"]].to_numpy(dtype=float)).any()   # nothing infinite is left to compute with
    assert shown(df, "smr", "ours_rank") == "invalid" and shown(df, "sd", "ours_rank") == "—"
    assert (df.ours_vs_smr.fillna(-1) != 0).all()


def test_compactness_invalid_loss(tmp_path):
    c = [dict(task=t, fraction=f, loss=float("nan") if (t, f) == ("smr", 0.5) else f) for t in ("smr", "mim") for f in (0.25, 0.5, 0.75)]
    _fake_run(tmp_path, "smr_fig2", "smr", eval=dict(evaluate="compactness", compactness=c))
    ct = fmt_table(compactness_table(compactness_frame(tmp_path)), 4).set_index(["model", "task"])
    assert ct.loc[("smr", "smr"), "loss@50%"] == "NaN (invalid)"
    assert ct.loc[("smr", "mim"), "loss@50%"] == "0.5000"


CORRUPT = {  # name: (experiment, variant, file, content)
    "eval_list": ("smr_ablation_4e", "tm", "eval.json", b'[0.3, 0.2]'),
    "eval_string": ("smr_ablation_4e", "tm", "eval.json", b'{"evaluate": "linear_probe", "linear_probe": "high"}'),
    "metrics_running": ("smr_ablation_4f", "k35x4", "metrics.jsonl", BAD_BYTES),
    "metrics_done": ("smr_ablation_4f", "k15x4", "metrics.jsonl", BAD_BYTES),
    "error_txt": ("smr_ablation_4f", "k30x4", "error.txt", BAD_BYTES),
    "summary_json": ("smr_ablation_4f", "k15x4", "summary.json", b'{"steps": 5, "epochs": "\xff"}'),
    "config_json": ("smr_ablation_4f", "k15x4", "config.json", b'{"config": {"method": "\xff\xfe"}}'),
    "compactness_string": ("smr_fig2", "smr", "eval.json", b'{"evaluate": "compactness", "compactness": [{"task": "smr", "fraction": 0.5, "loss": "low"}]}'),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_unreadable_file_is_a_row_state(tmp_path, case):
    exp, variant, name, content = CORRUPT[case]
    runs = fixture_copy(tmp_path)
    (run_dir(runs, exp, variant) / name).write_bytes(content)
    if exp == "smr_fig2":
        assert compactness_frame(runs).model.tolist().count("smr") == 0                 # nothing of the unreadable run is used
    df = report_table(exp, runs).set_index("variant")
    assert df.loc[variant, "state"] == "unreadable"
    assert df.loc[variant, "detail"].startswith(f"unreadable: {name}: "), df.loc[variant, "detail"]
    assert np.isnan(df.loc[variant, "ours"])
    others = df.drop(index=variant)
    assert "unreadable" not in set(others.state) and "done" in set(others.state)          # the other rows are still there
    if exp != "smr_fig2": assert others.ours.notna().sum() >= 1
    fmt_table(df.reset_index()); save_table(df.reset_index(), tmp_path / "out", "t")


@pytest.mark.parametrize("case", ["eval_list", "eval_string", "metrics_running", "error_txt"])
def test_report_survives_corruption(tmp_path, case):
    exp, variant, name, content = CORRUPT[case]
    runs = fixture_copy(tmp_path)
    (run_dir(runs, exp, variant) / name).write_bytes(content)
    html = case == "eval_list"
    out = build_report(runs, tmp_path / "report", tables="4e,4f,8", html=html)
    t = "4e" if exp == "smr_ablation_4e" else "4f"
    rows = [l for l in (out / f"table_{t}.md").read_text().splitlines() if f"| {variant} " in l]
    assert len(rows) == 1 and "unreadable" in rows[0] and f"unreadable: {name}: " in rows[0], rows
    for f in ("table_4e.md", "table_4f.md", "table_8.md", "table_8_analytic.md", "summary.md", "summary.csv"):
        assert (out / f).stat().st_size > 0, f
    for t, e, v in (("4e", "smr_ablation_4e", "none"), ("4f", "smr_ablation_4f", "k20x4")):   # other rows' numbers (means over seeds)
        mean = report_table(e, FIXTURE_RUNS, seeds=[0, 1, 2]).set_index("variant").loc[v, "ours"]
        assert _num(mean, 2) in (out / f"table_{t}.md").read_text(), (t, v, mean)
    assert len(pd.read_csv(out / "summary.csv")) == 3
    assert "gmacs" in (out / "table_8.md").read_text()
    if html: assert "unreadable" in (out / "report.html").read_text()


def test_invalid_values_counted_in_summary(tmp_path):
    runs = fixture_copy(tmp_path)
    (run_dir(runs, "smr_ablation_4f", "k15x4") / "eval.json").write_text('{"evaluate": "linear_probe", "linear_probe": NaN, "knn": 0.1}')
    ev = run_dir(runs, "smr_table8", "smr") / "eval.json"
    ev.write_text(json.dumps(dict(json.loads(ev.read_text()), gmacs=float("inf"))))
    out = build_report(runs, tmp_path / "report", tables="4e,4f,8", html=False)
    sm = pd.read_csv(out / "summary.csv").set_index("table")
    assert sm.loc["4f", "invalid"] == 1 and sm.loc["8", "invalid"] == 1 and sm.loc["4e", "invalid"] == 0
    assert "invalid" in (out / "summary_tables.md").read_text().splitlines()[0] and "Per table:" in (out / "summary.md").read_text()
    assert "NaN at seed 0 (invalid)" in (out / "table_4f.md").read_text()      # over seeds: which seed's value is invalid
    t8 = (out / "table_8.md").read_text()
    assert "inf (invalid)" in t8 and "0.00" not in t8


def test_a_run_with_a_damaged_config_belongs_to_no_other_seed(tmp_path):
    """Only seed 0 of k15x4 was launched and its config.json is damaged: seed 0's row is `unreadable`; seeds 1 and 2 were never
    launched and say so (naming the damaged run, whose seed cannot be read), instead of repeating seed 0's damage."""
    runs = fixture_copy(tmp_path)
    for s in (1, 2): shutil.rmtree(run_dir(runs, "smr_ablation_4f", "k15x4", s))
    d0 = run_dir(runs, "smr_ablation_4f", "k15x4", 0)
    (d0 / "config.json").write_bytes(CORRUPT["config_json"][3])
    rows = {s: report_table("smr_ablation_4f", runs, seeds=[s]).set_index("variant").loc["k15x4"] for s in (0, 1, 2)}
    assert rows[0].state == "unreadable"
    for s in (1, 2):
        assert rows[s].state == "not launched", (s, rows[s].state, rows[s].detail)
        assert f"{d0.name} of this variant has an unreadable config.json (seed unknown)" in rows[s].detail
    t = report_table("smr_ablation_4f", runs, seeds=[0, 1, 2]).set_index("variant").loc["k15x4"]
    assert "seed 0: unreadable" in t.detail and "seed 1: not launched" in t.detail and t.n_seeds == 0


def test_a_finished_run_with_truncated_metrics_says_so(tmp_path):
    runs = fixture_copy(tmp_path)
    d = run_dir(runs, "smr_ablation_4f", "k20x4")
    m = d / "metrics.jsonl"
    m.write_text("\n".join(m.read_text().splitlines()[:-2]) + "\n")      # the last two rows lost
    steps = json.loads((d / "summary.json").read_text())["steps"]
    r = report_table("smr_ablation_4f", runs).set_index("variant").loc["k20x4"]
    assert r.state == "truncated metrics" and f"of the {steps} summary.json counts" in r.detail, (r.state, r.detail)
    assert np.isfinite(r.ours) and r.todo == ""                                      # its evaluation stands; nothing to relaunch
    assert report_table("smr_ablation_4f", runs).set_index("variant").loc["k25x4", "state"] == "done"   # the others untouched


def test_an_older_config_counts_in_seed_averaged_tables_as_in_one_seed_tables(tmp_path):
    """One rule for every table: a seed whose run finished under an older config is shown with its number and the keys that
    differ, in a seed-averaged table as in a one-seed table (the orderings are tested on current configs only)."""
    runs = fixture_copy(tmp_path)
    d = run_dir(runs, "smr_ablation_4f", "k20x4", 1)
    c = json.loads((d / "config.json").read_text()); c["config"]["epochs"] = 99
    (d / "config.json").write_text(json.dumps(c))
    d.rename(d.with_name("k20x4-00000000"))                                         # the run id an older recipe gave it
    one = report_table("smr_ablation_4f", runs, seeds=[1]).set_index("variant").loc["k20x4"]
    assert one.state == "older config" and "differs: epochs: 99 -> " in one.detail and np.isfinite(one.ours)
    t = report_table("smr_ablation_4f", runs, seeds=[0, 1, 2]).set_index("variant").loc["k20x4"]
    assert t.n_seeds == 3 and "seed 1: older config" in t.detail and "differs: epochs: 99 -> " in t.detail, (t.n_seeds, t.detail)
    assert f"1: {one.ours:.4g}" in t.seed_values
