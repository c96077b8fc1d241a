"""slurm/launch.py end to end on this machine (no SLURM): plan, debug/local runs, status, skipping, errors, requeue."""
import json, re, shutil, subprocess, sys
from pathlib import Path
import pytest
import torch

from conftest import run, status_rows, tiny_sets


def test_list_and_errors():
    r = run("--list")
    assert r.returncode == 0 and "smr_ablation_4f" in r.stdout and "smr_table2" in r.stdout
    r = run("--exp", "smr_ablation_4z", "--dry-run", "--verbose")
    assert r.returncode == 2 and "smr_ablation_4f" in r.stderr          # close names listed
    r = run("--exp", "smr_ablation_4f", "--dry-run", "--verbose", "--set", "epoch=3")
    assert r.returncode == 2 and "epochs" in r.stderr                   # valid keys listed
    if shutil.which("sbatch") is None:
        r = run("--exp", "smr_ablation_4f", "--cluster", "slurm", "--runs-root", "/tmp/smrnb-nosbatch")
        assert r.returncode == 2 and "--cluster local" in r.stderr


def test_paper_dry_run_prints_a_plan():
    r = run("--exp", "smr_ablation_4f", "--scale", "paper", "--dry-run", "--verbose", "--cluster", "slurm", "--runs-root", "/tmp/smrnb-plan")
    assert r.returncode == 0, r.stderr
    assert "not launched" in r.stdout and "gpus_per_node" in r.stdout and "imagenet" in r.stdout.lower()


def test_debug_cluster_runs_evaluates_skips(tmp_path, toy):
    args = ["--exp", "smr_ablation_4f", "--scale", "tiny", "--cluster", "debug", "--runs-root", str(tmp_path)] + tiny_sets(toy)
    r = run(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    # one line per run as it starts and as it ends: its index of the total, the time so far, an estimate of the time left
    assert re.search(r"^\[1/5\] k15x4-\w+: pre-train job", r.stdout, re.M) and "(1 of 5 ended, " in r.stdout, r.stdout
    assert re.search(r"\(4 of 5 ended, [\d.]+ min; about \d+ min left\)", r.stdout) and re.search(r"^\[5/5\] k35x4-\w+: done \(5 of 5 ended, [\d.]+ min\)$", r.stdout, re.M), r.stdout
    st = run("--exp", "smr_ablation_4f", "--status", "--runs-root", str(tmp_path), *tiny_sets(toy))
    lines = status_rows(st.stdout)
    assert lines and all(l.split()[1] == "done" for l in lines), st.stdout
    evals = list(tmp_path.glob("tiny/smr_ablation_4f/*/eval.json"))
    assert len(evals) == len(lines)
    again = run(*args)
    assert "all" in again.stdout and "done" in again.stdout             # nothing resubmitted
    assert not list(tmp_path.rglob("%j")), sorted(p.name for p in (tmp_path / "_submitit" / "smr_ablation_4f").iterdir())   # no stray folder


def test_local_preemption_requeues_and_resumes_to_the_same_weights(tmp_path, toy, monkeypatch):
    """A local submitit job that is preempted (SIGUSR2, as on a timeout) is checkpointed and requeued by submitit
    (RunJob is Checkpointable), resumes from last.pt, and ends with the same weights as an uninterrupted run.
    Deterministic: the trainer pauses once its step-2 checkpoint is written (SMRNB_PAUSE_AT_STEP) and the test
    sends the signal then, whatever the machine's speed."""
    import os, signal
    import submitit
    from conftest import wait_for, paused_pid
    from smrnb.launch import RunJob
    from smrnb.tiny import tiny_config
    from smrnb.train import train
    cfg = lambda name: tiny_config("smr", tmp_path / name, toy, epochs=3, batch_size=16, ckpt_every=2, log_every=1).to_dict()
    train(cfg("straight"), progress=False)
    monkeypatch.setenv("SMRNB_PAUSE_AT_STEP", "2")                           # the job's environment is copied at submit
    ex = submitit.LocalExecutor(folder=str(tmp_path / "jobs"), max_num_timeout=3)
    ex.update_parameters(timeout_min=60)
    job = ex.submit(RunJob(cfg("requeued"), "pretrain"))
    wait_for(lambda: (tmp_path / "requeued" / "paused").exists(), "the trainer to pause after its step-2 checkpoint")
    os.kill(paused_pid(tmp_path / "requeued"), signal.SIGUSR2)             # preemption: submitit checkpoints and requeues
    job.result()
    out = job.stdout()
    assert "Requeued" in out and "resuming" in out and "from step 2" in out, out[-2000:]
    assert (tmp_path / "requeued" / "done").exists(), job.stderr()
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "requeued/checkpoints/last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hierarchical_rows_and_greenmim_run_through_the_launcher(tmp_path, toy):
    """Table 2's HiViT / ConViT rows (SMR compressing their attention stage, MAE / ConvMAE, FD-CLIP) and GreenMIM's Swin
    pre-train and evaluate at tiny scale through slurm/launch.py, each on its family's tiny student."""
    for exp in ("smr_table2", "greenmim_swin"):
        r = run("--exp", exp, "--scale", "tiny", "--cluster", "debug", "--runs-root", str(tmp_path), *tiny_sets(toy))
        assert r.returncode == 0, r.stdout + r.stderr
    want = {"hivit_smr300": ("hivit_toy", "smr"), "hivit_mae": ("hivit_toy", "mae"), "hivit_fdclip300": ("hivit_toy", "sd"),
            "convit_smr300": ("convit_toy", "smr"), "convmae": ("convit_toy", "convmae"), "greenmim800": ("swin_toy", "greenmim"),
            "simmim800": ("swin_toy", "simmim")}
    for variant, (arch, method) in want.items():
        (d,) = tmp_path.glob(f"tiny/*/{variant}-*")
        c = json.loads((d / "config.json").read_text())["config"]
        assert (c["arch"], c["method"]) == (arch, method), (variant, c["arch"], c["method"])
        ev = json.loads((d / "eval.json").read_text())
        assert 0 <= ev["linear_probe"] <= 1, (variant, ev)
        loss = [json.loads(l)["loss"] for l in (d / "metrics.jsonl").read_text().splitlines()]
        assert loss and all(x == x and x < 1e3 for x in loss), (variant, loss)
    c = json.loads(next(tmp_path.glob("tiny/smr_table2/convmae-*/config.json")).read_text())["config"]
    assert c["encoder_kw"] == {"fuse": True} and c["init"] == "mae"      # ConvMAE pre-trains with its multi-scale fusion
    c = json.loads(next(tmp_path.glob("tiny/smr_table2/hivit_smr300-*/config.json")).read_text())["config"]
    assert c["schedule"] == "1-2:17-16"              # 25x4 in blocks 1-4 of 24 -> blocks 1-2 of 12, 100 x 64/196 tokens
    r = run("--exp", "greenmim_swin", "--scale", "paper", "--dry-run", "--verbose", "--cluster", "slurm", "--runs-root", str(tmp_path / "plan"))
    assert r.returncode == 0 and "layer decay 0.9" in r.stdout and "swin_base" in r.stdout, r.stdout + r.stderr


def test_pcae_and_maelite_run_through_the_launcher(tmp_path, toy):
    """PCAE (Table 1's rows and the throughput timing runs) and MAE-lite's MAE vs D-MAE pre-train and evaluate at tiny scale
    through slurm/launch.py: PCAE's decoder predicts the EMA teacher's survivors, D-MAE distils the fixed toy teacher."""
    for exp in ("pcae_table1", "pcae_throughput", "maelite_dmae"):
        r = run("--exp", exp, "--scale", "tiny", "--cluster", "debug", "--runs-root", str(tmp_path), *tiny_sets(toy))
        assert r.returncode == 0, r.stdout + r.stderr
    want = {"pcae_table1": {"mae1600": "mae", "pcae300": "pcae", "pcae800": "pcae"}, "pcae_throughput": {"mae": "mae", "pcae": "pcae"},
            "maelite_dmae": {"mae_tiny": "mae", "dmae_tiny": "dmae"}}
    for exp, variants in want.items():
        for variant, method in variants.items():
            (d,) = tmp_path.glob(f"tiny/{exp}/{variant}-*")
            c = json.loads((d / "config.json").read_text())["config"]
            assert c["method"] == method, (exp, variant, c["method"])
            ev = json.loads((d / "eval.json").read_text())
            if exp == "pcae_throughput": assert ev["images_per_s"] > 0 and ev["gmacs"] > 0, ev
            else: assert 0 <= ev["linear_probe"] <= 1, (exp, variant, ev)
            rows = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
            assert rows and all(x["loss"] == x["loss"] and x["loss"] < 1e3 for x in rows), (variant, rows)
            if method == "pcae": assert all(0 <= x["loss"] <= 2 for x in rows)             # 1 - cosine
            if method == "dmae": assert all(x["distill"] > 0 for x in rows)                # the distillation term, logged
    c = json.loads(next(tmp_path.glob("tiny/pcae_throughput/pcae-*/config.json")).read_text())["config"]
    assert c["mask_ratio"] == 0.9
    c = json.loads(next(tmp_path.glob("tiny/maelite_dmae/dmae_tiny-*/config.json")).read_text())["config"]
    assert c["distill"]["checkpoint"].endswith("toy-teacher-v1.pt") and c["distill"]["layers"] == [[-1, -1]]
    # D-MAE's checkpoints hold the student once and not the frozen teacher (reloaded from its file)
    (d,) = tmp_path.glob("tiny/maelite_dmae/dmae_tiny-*")
    sd = torch.load(next((d / "checkpoints").glob("*.pt")), map_location="cpu", weights_only=False)["model"]
    assert not any(k.startswith("distill.teacher.") for k in sd) and any(k.startswith("distill.mixers.") for k in sd)
    r = run("--exp", "maelite_dmae", "--scale", "paper", "--dry-run", "--verbose", "--cluster", "slurm", "--runs-root", str(tmp_path / "plan"))
    assert r.returncode == 0 and "vit_tiny" in r.stdout and "layer decay 0.85" in r.stdout, r.stdout + r.stderr


def test_pcae_token_dropping_runs_through_the_launcher(tmp_path, toy):
    """PCAE's Table 5 at tiny scale: the pre-trained run is fine-tuned without and with dropping (two checkpoints), the drop
    ratio reaches its target (warm-up / 50), inference is timed both ways, and the report shows the two cells."""
    from smrnb.compare import report_table
    r = run("--exp", "pcae_dropping", "--scale", "tiny", "--cluster", "debug", "--runs-root", str(tmp_path), *tiny_sets(toy),
            "--eval-set", "batch_size=4", "--eval-set", "num_workers=0", "--eval-set", "throughput_batch=2", "--eval-set", "throughput_iters=1")
    assert r.returncode == 0, r.stdout + r.stderr
    (d,) = tmp_path.glob("tiny/pcae_dropping/drop40-*")
    ev = json.loads((d / "eval.json").read_text())
    assert ev["evaluate"] == "token_dropping" and ev["eval_kw"]["drop"] == {"max_ratio": 0.4, "warmup_epochs": 0.2, "ramp_epochs": 0.5}
    assert ev["throughput"]["ratio"] == 0.4 and ev["throughput"]["layers"] == [0, 3, 5]       # 0/7/10 of 12 -> 0/3/5 of the toy's 6
    assert ev["tokens"] == [64, 38, 38, 38, 22, 22, 13] and ev["finetune"]["rpe"] is False
    assert abs(ev["top1_drop"] - 100 * (ev["top1_finetune"] - ev["top1_dropping"])) < 1e-9
    assert ev["throughput"]["images_per_s_full"] > 0 and ev["throughput"]["images_per_s_drop"] > 0
    assert len(list((d / "finetune").glob("*/last.pt"))) == 2                                # one checkpoint per recipe
    df = report_table("pcae_dropping", tmp_path, "tiny").set_index("metric")
    assert df.loc["top1_drop", "ours"] == ev["top1_drop"] and df.loc["top1_drop", "ours_metric"] == "top1_drop", df   # (state: "older config",
    # since --set moved the data)
    assert df.loc["throughput_gain", "ours"] == ev["throughput_gain"] and df.loc["throughput_gain", "paper"] == 88, df
    r = run("--exp", "pcae_dropping", "--scale", "paper", "--dry-run", "--verbose", "--cluster", "slurm", "--runs-root", str(tmp_path / "plan"))
    assert r.returncode == 0 and "token dropping: fine-tuned twice" in r.stdout and "RPE off" in r.stdout, r.stdout + r.stderr
    r = run("--exp", "pcae_dropping", "--scale", "tiny", "--dry-run", "--verbose", "--runs-root", str(tmp_path / "plan"), "--eval-set", "rpe=true")
    assert r.returncode != 0 and "rpe=False" in r.stdout + r.stderr, r.stdout + r.stderr


def test_maelite_layer_reservation_runs_through_the_launcher(tmp_path, toy):
    """MAE-lite's Figure 2 at tiny scale: the pre-trained MAE-Tiny stand-in is fine-tuned once per number of reserved blocks
    (one checkpoint each), and the report reads the curve."""
    from smrnb.report import reserved_frame
    r = run("--exp", "maelite_fig2", "--scale", "tiny", "--cluster", "debug", "--runs-root", str(tmp_path), *tiny_sets(toy),
            "--eval-set", "batch_size=4", "--eval-set", "num_workers=0", "--eval-set", "reserve=[6,0]")
    assert r.returncode == 0, r.stdout + r.stderr
    (d,) = tmp_path.glob("tiny/maelite_fig2/mae_tiny-*")
    ev = json.loads((d / "eval.json").read_text())
    assert ev["evaluate"] == "layer_reservation" and ev["depth"] == 6 and sorted(ev["reserved"]) == ["0", "6"], ev
    assert ev["top1_finetune"] == ev["reserved"]["6"] and all(0 <= a <= 1 for a in ev["reserved"].values())
    assert sorted(p.parent.name.split("-")[-1] for p in (d / "finetune").glob("*/last.pt")) == ["reserve0", "reserve6"]
    rf = reserved_frame(tmp_path, "tiny")
    assert list(rf.layers) == [0, 6] and list(rf.top1) == [100 * ev["reserved"]["0"], 100 * ev["reserved"]["6"]], rf
    r = run("--exp", "maelite_fig2", "--scale", "paper", "--dry-run", "--verbose", "--cluster", "slurm", "--runs-root", str(tmp_path / "plan"))
    assert r.returncode == 0 and "layer reservation: fine-tuned 7 times" in r.stdout and "layer decay 0.85" in r.stdout, r.stdout + r.stderr
    r = run("--exp", "maelite_fig2", "--scale", "tiny", "--dry-run", "--verbose", "--runs-root", str(tmp_path / "plan"), "--eval-set", "reserve=3")
    assert r.returncode != 0 and "reserve=3" in r.stdout + r.stderr, r.stdout + r.stderr


def test_itpn_mfm_runs_through_the_launcher(tmp_path, toy):
    """iTPN (seed 004) at tiny scale: itpn_toy pre-trains with MFM against its EMA copy and against the fixed toy teacher
    (the CLIP row's stand-in) through slurm/launch.py, logs both loss terms, and is linear-probed; the paper plan shows iTPN-B."""
    r = run("--exp", "itpn_mfm", "--scale", "tiny", "--cluster", "debug", "--runs-root", str(tmp_path), *tiny_sets(toy))
    assert r.returncode == 0, r.stdout + r.stderr
    for variant, target in (("ema400", "ema"), ("ema", "ema"), ("clip", "frozen")):
        (d,) = tmp_path.glob(f"tiny/itpn_mfm/{variant}-*")
        c = json.loads((d / "config.json").read_text())["config"]
        assert (c["method"], c["arch"], c["target"]) == ("mfm", "itpn_toy", target), c
        rows = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
        assert rows and all(abs(x["loss"] - x["pixel"] - 0.3 * x["feature"]) < 1e-3 * max(1, x["loss"]) for x in rows), rows
        assert 0 <= json.loads((d / "eval.json").read_text())["linear_probe"] <= 1
    r = run("--exp", "itpn_mfm", "--scale", "paper", "--dry-run", "--verbose", "--cluster", "slurm", "--runs-root", str(tmp_path / "plan"))
    assert r.returncode == 0 and "itpn_base" in r.stdout, r.stdout + r.stderr


def test_itpn_speed_runs_through_the_launcher(tmp_path, toy):
    """Fast-iTPN's Figure 5 at tiny scale: fast_itpn_toy pre-trains with MFM, is fine-tuned once, and every Figure 5 setting is
    applied to the fine-tuned classifier: its top-1, its tokens and its inference speed against the plain model, in the report."""
    from smrnb.methods.itpn import FIG5_SETTINGS
    from smrnb.compare import report_table
    from smrnb.report import acceleration_frame
    r = run("--exp", "itpn_speed", "--scale", "tiny", "--cluster", "debug", "--runs-root", str(tmp_path), *tiny_sets(toy),
            "--eval-set", "batch_size=4", "--eval-set", "num_workers=0", "--eval-set", "throughput_batch=2", "--eval-set", "throughput_iters=1")
    assert r.returncode == 0, r.stdout + r.stderr
    (d,) = tmp_path.glob("tiny/itpn_speed/fast-*")
    assert json.loads((d / "config.json").read_text())["config"]["arch"] == "fast_itpn_toy"
    ev = json.loads((d / "eval.json").read_text())
    assert ev["evaluate"] == "acceleration" and set(ev["speedup"]) == set(FIG5_SETTINGS) and set(ev["top1"]) == {"base", *FIG5_SETTINGS}
    assert ev["top1"]["base"] == ev["top1_finetune"] and all(0 <= a <= 1 for a in ev["top1"].values())
    assert ev["tokens"]["base"] == ev["tokens"]["window"] == 64 and ev["tokens"]["m40"] == 64 - 4 * 6, ev["tokens"]   # 6 of each window's 16
    assert set(ev["dense_cos"]) == set(FIG5_SETTINGS) and all(-1 <= c <= 1 for c in ev["dense_cos"].values()), ev["dense_cos"]
    assert len(list((d / "finetune").glob("*/last.pt"))) == 1                                # fine-tuned once
    df = report_table("itpn_speed", tmp_path, "tiny").set_index("metric")
    assert df.loc["speedup_m40", "ours"] == ev["speedup"]["m40"] and df.loc["speedup_m40", "paper"] == 27, df
    af = acceleration_frame(tmp_path, "tiny").set_index("setting")
    assert af.loc["m40", "top1"] == 100 * ev["top1"]["m40"] and af.loc["base", "speedup"] == 0, af
    r = run("--exp", "itpn_speed", "--scale", "paper", "--dry-run", "--verbose", "--cluster", "slurm", "--runs-root", str(tmp_path / "plan"))
    assert r.returncode == 0 and "fast_itpn_base" in r.stdout and "acceleration: fine-tuned once" in r.stdout, r.stdout + r.stderr
    r = run("--exp", "itpn_speed", "--scale", "tiny", "--dry-run", "--verbose", "--runs-root", str(tmp_path / "plan"), "--eval-set", 'settings=["m10","m50"]')
    assert r.returncode != 0 and "settings=" in r.stdout + r.stderr and "m40_gather" in r.stdout + r.stderr, r.stdout + r.stderr
    r = run("--exp", "itpn_speed", "--scale", "tiny", "--dry-run", "--verbose", "--runs-root", str(tmp_path / "plan"), "--set", "arch=toy",
            "--set", "method=mae", "--set", "target=pixel", "--set", "target_kw={}")   # a ViT run: refused before any job
    assert r.returncode != 0 and "needs an iTPN" in r.stdout + r.stderr, r.stdout + r.stderr


def test_itpn_table1_counts_the_fine_tuning_models(tmp_path, toy):
    """iTPN's Table 1 at tiny scale: a 5-step MFM timing run of itpn_toy, then the complexity evaluation counts the
    fine-tuning classifier's parameters and GMACs (FlopCounterMode) for any backbone; the report puts them beside 79 M / 17.8 G."""
    from smrnb.complexity import classifier_cost
    from smrnb.compare import report_table
    r = run("--exp", "itpn_table1", "--scale", "tiny", "--cluster", "debug", "--runs-root", str(tmp_path), *tiny_sets(toy))
    assert r.returncode == 0, r.stdout + r.stderr
    want = classifier_cost("itpn_toy", img_size=32)
    for v in ("base", "large"):
        (d,) = tmp_path.glob(f"tiny/itpn_table1/{v}-*")
        ev = json.loads((d / "eval.json").read_text())
        assert ev["params_m"] == want["params_m"] and ev["classifier_gmacs"] == want["gmacs"] and ev["images_per_s"] > 0, ev
        assert "gmacs" not in ev and "ViT" in ev["gmacs_note"], ev                      # Table 8's pre-training count: ViT only
    df = report_table("itpn_table1", tmp_path, "tiny").set_index(["variant", "metric"])
    assert df.loc[("base", "params_m"), "ours"] == want["params_m"] and df.loc[("base", "params_m"), "paper"] == 79, df
    assert df.loc[("large", "classifier_gmacs"), "paper"] == 61.2 and df.loc[("large", "classifier_gmacs"), "ours"] == want["gmacs"], df
    r = run("--exp", "itpn_table1", "--scale", "paper", "--dry-run", "--verbose", "--cluster", "slurm", "--runs-root", str(tmp_path / "plan"))
    assert r.returncode == 0 and "itpn_large" in r.stdout and "complexity" in r.stdout, r.stdout + r.stderr
