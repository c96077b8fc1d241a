"""smrnb.figures.paper_figures end to end: on the committed fixture runs (no checkpoints: the no-run path) and on a tiny
run trained for two steps in a temporary runs directory (the trained path, with a second `none` run for the CKA)."""
import os
from pathlib import Path
import pandas as pd
import pytest
from smrnb.figures import paper_figures, find_trained_encoder, finished_runs
from smrnb.results import FIXTURE_RUNS

ROOT = Path(__file__).resolve().parents[1]
PNGS = {"diversity": "pcae_fig3_diversity.png", "attention": "maelite_fig3_attention.png", "cka": "maelite_fig4_cka.png"}


def _check_outputs(res, out, tiny_depth, y_depth):
    for key, name in PNGS.items():
        assert res[key] == out / name and res[key].is_file() and res[key].stat().st_size > 1000, key
    div = pd.read_csv(res["diversity_csv"])
    assert list(div.columns) == ["model", "layer", "diversity", "tokens", "panel"]
    assert ((div.diversity > 0) & (div.diversity <= 1 + 1e-9)).all()
    last = div.groupby("model").layer.max()
    assert last["toy random init, PCAE dropping"] == 6 and last["vit_tiny_patch16_224 random init, random dropping"] == 12
    for m, g in div.groupby("model"): assert sorted(g.layer) == list(range(last[m] + 1)), m
    att = pd.read_csv(res["attention_csv"])
    assert list(att.columns) == ["model", "depth", "head", "entropy", "distance", "distance_unit"]
    assert set(att.distance_unit) == {"patch steps x 14"}   # MAE-lite's units, named on the axis
    assert sorted(att.groupby("model").depth.max()) == sorted([tiny_depth, 12])
    assert (att.distance > 0).all() and (att.entropy > 0).all()
    cka = pd.read_csv(res["cka_csv"], index_col=0)
    assert cka.shape == (tiny_depth + 1, y_depth + 1) and list(cka.index) == list(range(tiny_depth + 1))   # layer 0: the embedding
    assert ((cka.values > -1e-6) & (cka.values < 1 + 1e-6)).all()
    assert (out / "figures_note.txt").read_text().strip() == res["note"]


def test_fixture_runs_have_no_checkpoint_so_figures_use_stand_ins(tmp_path, toy):
    assert (FIXTURE_RUNS / "tiny").is_dir()
    assert finished_runs(FIXTURE_RUNS) == [] and find_trained_encoder(FIXTURE_RUNS) is None
    res = paper_figures(FIXTURE_RUNS, tmp_path / "figs", data_root=toy, n_images=8)
    assert "no finished tiny run" in res["note"] and "random weights" in res["note"], res["note"]
    assert "CKA against the timm model" in res["note"], res["note"]
    _check_outputs(res, tmp_path / "figs", tiny_depth=6, y_depth=12)
    div = pd.read_csv(res["diversity_csv"])
    assert not div.model.str.contains("trained").any()


@pytest.fixture
def trained_runs(tmp_path, toy):
    "A runs dir with a `tm` run and a `none` run of smr_ablation_4e, two steps each, launched from `tmp_path` (relative paths)."
    from smrnb.tiny import tiny_config
    from smrnb.train import train
    cwd = os.getcwd(); os.chdir(tmp_path)
    try:
        for name, over in (("tm-0000", {}), ("none-0000", dict(schedule=None))):
            cfg = tiny_config("smr", f"runs/tiny/smr_ablation_4e/{name}", toy, epochs=1, max_steps=2, batch_size=8, arch="toy", **over)
            train(cfg, progress=False)
    finally: os.chdir(cwd)
    return tmp_path / "runs"


def test_paper_figures_on_trained_runs(trained_runs, tmp_path, toy):
    out = tmp_path / "figs"
    res = paper_figures(trained_runs, out, data_root=toy, n_images=8)
    assert "tm-0000" in res["note"] and "none-0000" in res["note"] and "no finished" not in res["note"], res["note"]
    _check_outputs(res, out, tiny_depth=6, y_depth=6)                       # CKA: tm run vs the none run (both 6 blocks)
    div = pd.read_csv(res["diversity_csv"])
    b = div[div.panel == "(b) models, no dropping"]
    assert set(b.model) == {"smr_ablation_4e/tm-0000 (trained)", "smr_ablation_4e/none-0000 (trained)",
                            "vit_tiny_patch16_224 32px/4px (random init)"}
    assert (b.groupby("model").tokens.max() == 64).all() and (b.groupby("model").tokens.min() == 64).all()
    att = pd.read_csv(res["attention_csv"])
    assert set(att.model) == {"smr_ablation_4e/tm-0000 (trained)", "vit_tiny_patch16_224 32px/4px (random init)"}


def test_missing_timm_weights_file_is_named(tmp_path, toy):
    with pytest.raises(FileNotFoundError, match="not found"):
        paper_figures(FIXTURE_RUNS, tmp_path, data_root=toy, n_images=8, timm_weights=tmp_path / "nope.pth")
