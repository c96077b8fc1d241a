"""iTPN / Fast-iTPN: tiny CPU checks of the model and of benchmarks/itpn.py (timings printed, never asserted)."""
import math, re, subprocess, sys
from pathlib import Path
import pytest, torch
from smrnb.backbones.itpn import ITPN, create_itpn, migration_counts
from smrnb.methods.itpn import MFM

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return create_itpn("itpn_toy").eval(), torch.randn(2, 3, 32, 32)


def test_ratio_zero_and_no_gathering_is_plain_itpn(toy):
    m, x = toy
    with torch.no_grad():
        plain = m(x).merged
        m.migration_ratio = 0.2; mig = m(x); m.migration_ratio = 0.0
        m.gathering = True; ga = m(x); m.gathering = False
        again = m(x).merged
    assert torch.equal(plain, again)
    assert not torch.allclose(mig.merged, plain) and not torch.allclose(ga.merged, plain)
    gx, gi = mig.migrated[0]
    assert torch.equal(mig.pyramid_input[1, gi[1]], gx[1])       # replenished at their positions
    assert gi.shape[1] == 4                                        # within each of the 4 windows (the preset's gather_window 4)
    assert sum(g.shape[1] * g.shape[2] for _, g in mig.migrated) == 4 * sum(migration_counts(16, 4, 0.2))


def test_windowed_acceleration_needs_the_whole_image(toy):
    m, x = toy
    m.gathering = True
    try:
        with pytest.raises(ValueError, match="whole image"): m(x, keep=torch.arange(16).expand(2, 16))
    finally: m.gathering = False


def test_mfm_trains_the_pyramid():
    torch.manual_seed(0)
    model = create_itpn("itpn_toy", depth=2)
    mfm = MFM(model)
    masked = torch.rand(2, 64).argsort(1) < 48
    r = mfm(torch.randn(2, 3, 32, 32), masked)
    r["loss"].backward()
    assert torch.isfinite(r["loss"]) and model.split8.reduction.weight.grad.abs().sum() > 0


def test_itpn_benchmark_cpu_smoke():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/itpn.py"), "--arch", "itpn_toy", "--img-size", "32", "--batch", "2",
                        "--steps", "2", "--window", "4", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    base = re.search(r"^iTPN baseline: ([0-9.]+) ms", r.stdout, re.M)
    rows = re.findall(r"^Fast-iTPN migration (\d+)% gathering (on |off): ([0-9.]+) ms \(([0-9.]+)x time\).*, (\d+)/64 tokens",
                      r.stdout, re.M)
    assert base and len(rows) == 10, r.stdout
    assert re.search(r"^Fast-iTPN window attention alone \(no gathering tokens\): [0-9.]+ ms .*, 64/64 tokens", r.stdout, re.M), r.stdout
    assert {(int(p), g.strip()) for p, g, *_ in rows} == {(p, g) for p in (0, 10, 20, 30, 40) for g in ("on", "off")}
    for p, g, ms, rt, left in rows:
        assert abs(float(rt) - float(ms) / float(base[1])) <= 0.01 * float(rt) + 0.006, r.stdout   # ratio of the printed times
        # migration within the 4 windows of 16 tokens, with or without gathering (Fast-iTPN §4.1)
        assert int(left) == 64 - 4 * sum(migration_counts(16, 4, int(p) / 100)), r.stdout


# --- end to end: pre-train a tiny iTPN with smrnb.train (method="mfm"), resume it, probe it as the launcher does ------------------

@pytest.fixture(scope="module")
def itpn_toy_set(tmp_path_factory):
    from smrnb.data import make_toy_dataset
    d = tmp_path_factory.mktemp("itpn_toy_set")
    make_toy_dataset(d, n_train=7, n_val=2, size=32)
    return d


def _mfm_config(data_root, run_dir, **over) -> dict:
    "A tiny MFM run: itpn_toy at 32 px, 3 steps of batches of 2, a checkpoint every step."
    return dict(dict(method="mfm", arch="itpn_toy", img_size=32, data_root=str(data_root), run_dir=str(run_dir), seed=0, epochs=1,
                     batch_size=2, max_steps=3, lr=1e-3, warmup_epochs=1, min_lr=0.0, drop_path=0.0, log_every=1, ckpt_every=1),
                **over)


@pytest.mark.parametrize("target", ["ema", "frozen"])
def test_mfm_pretrains_resumes_and_probes(target, itpn_toy_set, stand_in_teacher_dir, tmp_path):
    import json, math
    from smrnb.launch import evaluate_run
    from smrnb.tiny import load_encoder
    from smrnb.train import SimulatedCrash, TrainConfig, load_checkpoint, train
    kw = {} if target == "ema" else dict(target="frozen", target_kw={"checkpoint": str(stand_in_teacher_dir / "toy-teacher-v1.pt")})
    config = _mfm_config(itpn_toy_set, tmp_path / target, **kw)
    torch.manual_seed(0)
    with pytest.raises(SimulatedCrash): train(config, crash_at_step=2, progress=False)
    assert load_checkpoint(tmp_path / target / "checkpoints/last.pt")["step"] == 1      # step 2's state waits for a finite step 3
    s = train(config, progress=False)                                                     # resumes from step 1
    assert (s["steps"], s["method"], s["target"]) == (3, "mfm", target)
    rows = [json.loads(l) for l in (tmp_path / target / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]                                         # step 2 of the crashed attempt trimmed
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("loss", "pixel", "feature")), r
        assert abs(r["loss"] - (r["pixel"] + 0.3 * r["feature"])) <= 1e-4 * max(1.0, abs(r["loss"])), r
    # the probe reads the student (the ITPN the optimiser trained), never the EMA / frozen teacher
    cfg = TrainConfig.from_dict(config)
    enc, sd = load_encoder(cfg), load_checkpoint(tmp_path / target / "checkpoints/last.pt")["model"]
    k = "blocks.0.attn.qkv.weight"
    assert torch.equal(enc.state_dict()[k], sd["encoder." + k])
    if target == "ema": assert not torch.equal(sd["target.encoder." + k], sd["encoder." + k])
    else:
        assert not any(n.startswith("target.") for n in sd)                              # the frozen teacher: reloaded from its file
        gone = TrainConfig.from_dict(dict(config, target_kw={"checkpoint": str(tmp_path / "moved-away.pt")}))
        assert torch.equal(load_encoder(gone).state_dict()[k], sd["encoder." + k])      # reading the student needs no teacher file
    res = evaluate_run(config, "linear_probe", {"epochs": 5, "batch_size": 4})
    assert 0.0 <= res["linear_probe"] <= 1.0 and 0.0 <= res["knn"] <= 1.0, res
    assert json.loads((tmp_path / target / "eval.json").read_text())["linear_probe"] == res["linear_probe"]


def test_itpn_linear_probe_feature_is_the_last_stage_mean():
    from smrnb.evaluate import extract_features
    from smrnb.encoders import create_encoder
    torch.manual_seed(0)
    enc = create_encoder("itpn_toy").eval()
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 0])
    f, fy = extract_features(enc, [(x, y)])
    with torch.no_grad(): want = enc.forward_backbone(x)[1].mean(1)
    assert torch.allclose(f, want, atol=1e-6) and torch.equal(fy, y)


def test_launcher_memory_estimate_plans_itpn():
    from smrnb.jobplan import act_memory
    for stage in ("pretrain", "finetune"):
        b, what = act_memory(dict(method="mfm", arch="itpn_base", img_size=224), 64, stage)
        assert math.isfinite(b) and b > 0 and "itpn_base" in what, (stage, b, what)
    from smrnb.jobplan import measured_act_per_image, _measured_config, BF16_ACT_BYTES
    from smrnb.train import TrainConfig
    cfg = dict(method="mfm", arch="itpn_toy", img_size=32)
    b, what = act_memory(cfg, 8, "pretrain")                          # MFM: measured, the pyramid included
    per = measured_act_per_image(_measured_config(TrainConfig.from_dict(cfg).resolved()), "pretrain")
    assert "measured" in what and b == per * BF16_ACT_BYTES / 4 * 8, (b, per, what)
    for stage in ("pretrain", "finetune"):                            # Swin (GreenMIM): measured as well, both stages
        b, what = act_memory(dict(method="greenmim", arch="swin_toy", img_size=32), 8, stage)
        assert math.isfinite(b) and b > 0 and "measured" in what and "swin_toy" in what, (stage, b, what)


def test_mfm_checkpoint_holds_the_itpn_once():
    """The Pretrainer's MFM borrows its ITPN (the `encoder`): its state dict has the backbone once, and a checkpoint written
    when MFM owned it (`decoder.model.*` beside `encoder.*`) still loads, into the same weights."""
    from smrnb.train import TrainConfig, load_model_state
    from smrnb.pretrain import Pretrainer
    cfg = TrainConfig(method="mfm", arch="itpn_toy", img_size=32, target="ema").resolved()
    torch.manual_seed(0); a = Pretrainer(cfg)
    torch.manual_seed(1); b = Pretrainer(cfg)
    sd = a.state_dict()
    assert not any(k.startswith("decoder.model.") for k in sd) and a.decoder.model is a.encoder
    old = dict(sd, **{"decoder.model." + k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")})
    load_model_state(b, old)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in sd.items())
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(2); la = a(x)["loss"]
    torch.manual_seed(2); lb = b(x)["loss"]
    assert torch.equal(la, lb)
