"""slurm/launch.py end to end on this machine (no SLURM): plan, debug/local runs, status, skipping, errors, requeue."""
import json, shutil, subprocess, sys, time
from pathlib import Path
import pytest
import torch

from conftest import run, tiny_sets


def test_list_and_errors():
    r = run("--list")
    assert r.returncode == 0 and "smr_ablation_4f" in r.stdout and "smr_table2" in r.stdout
    r = run("--exp", "smr_ablation_4z", "--dry-run")
    assert r.returncode == 2 and "smr_ablation_4f" in r.stderr          # close names listed
    r = run("--exp", "smr_ablation_4f", "--dry-run", "--set", "epoch=3")
    assert r.returncode == 2 and "epochs" in r.stderr                   # valid keys listed
    if shutil.which("sbatch") is None:
        r = run("--exp", "smr_ablation_4f", "--cluster", "slurm", "--runs-root", "/tmp/smrnb-nosbatch")
        assert r.returncode == 2 and "--cluster local" in r.stderr


def test_paper_dry_run_prints_a_plan():
    r = run("--exp", "smr_ablation_4f", "--scale", "paper", "--dry-run", "--cluster", "slurm", "--runs-root", "/tmp/smrnb-plan")
    assert r.returncode == 0, r.stderr
    assert "not launched" in r.stdout and "gpus_per_node" in r.stdout and "imagenet" in r.stdout.lower()


def test_debug_cluster_runs_evaluates_skips(tmp_path, toy):
    args = ["--exp", "smr_ablation_4f", "--scale", "tiny", "--cluster", "debug", "--runs-root", str(tmp_path)] + tiny_sets(toy)
    r = run(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    st = run("--exp", "smr_ablation_4f", "--status", "--runs-root", str(tmp_path), *tiny_sets(toy))
    lines = [l for l in st.stdout.splitlines() if l.strip()]
    assert lines and all(l.split()[1] == "done" for l in lines), st.stdout
    evals = list(tmp_path.glob("tiny/smr_ablation_4f/*/eval.json"))
    assert len(evals) == len(lines)
    again = run(*args)
    assert "all" in again.stdout and "done" in again.stdout             # nothing resubmitted


def test_local_timeout_requeue_resumes_to_the_same_weights(tmp_path, toy):
    """A local submitit job that reaches its time limit gets the signal, is checkpointed and requeued by
    submitit (RunJob is Checkpointable), resumes from last.pt, and ends with the same weights as an
    uninterrupted run. The run is sized from this machine's measured speed so that it needs about three
    attempts of 40 s (submitit's local controller allows 6)."""
    import math, time
    import submitit
    from smrnb.launch import RunJob
    from smrnb.tiny import tiny_config
    from smrnb.train import train
    cfg = lambda name, epochs: tiny_config("smr", tmp_path / name, toy, epochs=epochs, batch_size=16, ckpt_every=2,
                                           log_every=1).to_dict()
    t = time.time(); train(cfg("calibrate", 5), progress=False)             # 20 steps
    rate = 20 / (time.time() - t)
    epochs = max(10, math.ceil(75 * rate / 4))                               # ~75 s of training, 4 steps an epoch
    train(cfg("straight", epochs), progress=False)
    ex = submitit.LocalExecutor(folder=str(tmp_path / "jobs"), max_num_timeout=10)
    ex.update_parameters(timeout_min=0.75, signal_delay_s=5)                # the signal after 40 s
    job = ex.submit(RunJob(cfg("requeued", epochs), "pretrain"))
    job.wait()
    out = job.stdout()
    assert "Requeued" in out and "resuming" in out, out[-2000:]
    assert (tmp_path / "requeued" / "done").exists(), job.stderr()
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "requeued/checkpoints/last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
