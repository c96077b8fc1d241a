"""slurm/launch.py end to end on this machine (no SLURM): plan, debug/local runs, status, skipping, errors, requeue."""
import json, shutil, subprocess, sys
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
