"""The tiny Table 8 counted as the paper counts it: the student's forward (encoder + decoder/head), the teacher excluded.
Runs the launcher's `complexity` evaluation on the tiny `smr_table8` configs (no pre-training needed: it counts shapes)."""
import json
from pathlib import Path
from types import SimpleNamespace
from smrnb.experiments import run_configs
from smrnb.launch import _evaluate
from smrnb.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _complexity(r, tmp_path) -> dict:
    config = dict(r["config"])
    tk = dict(config["target_kw"])
    if "checkpoint" in tk and not Path(tk["checkpoint"]).is_absolute(): tk["checkpoint"] = str(ROOT / tk["checkpoint"])
    config.update(target_kw=tk, run_dir=str(tmp_path / r["variant"]))
    run = SimpleNamespace(path=tmp_path / r["variant"])
    run.path.mkdir()
    rows = [dict(step=0, images_per_s=10.0, peak_mem_mb=100.0), dict(step=5, images_per_s=20.0, peak_mem_mb=120.0)]
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    return _evaluate(TrainConfig.from_dict(config), run, "complexity", {}, 0, None)


def test_tiny_table8_counts_encoder_and_decoder(tmp_path, teacher_env):
    runs = {r["variant"]: r for r in run_configs("smr_table8", "tiny")}
    assert set(runs) == {"sd", "smr"}
    res = {k: _complexity(r, tmp_path) for k, r in runs.items()}
    for k, v in res.items():
        print(k, {f: v[f] for f in ("gmacs", "encoder_gmacs", "decoder_gmacs")})
        assert abs(v["gmacs"] - (v["encoder_gmacs"] + v["decoder_gmacs"])) < 1e-12
        assert "teacher excluded" in v["gmacs_convention"] and "decoder" in v["gmacs_convention"]
        assert v["images_per_s"] == 20.0 and v["peak_mem_mb"] == 120.0 and v["act_mib_per_image"] > 0   # unchanged fields
    sd, smr = res["sd"], res["smr"]
    assert smr["decoder_gmacs"] > 0 and smr["decoder_gmacs"] > sd["decoder_gmacs"] > 0   # SMR's decoder vs SD's linear head
    assert smr["encoder_gmacs"] < sd["encoder_gmacs"]                                      # the compressed encoder
    assert sd["gmacs"] > smr["gmacs"]                                                      # and still cheaper with its decoder
