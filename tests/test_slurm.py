"""The launcher against a real SLURM cluster (CI brings a single-node one up with .ci/slurm-up):
a job array with dependent evaluation jobs, and a preempted job that is requeued and resumes."""
import json, re, shutil, subprocess, time
from pathlib import Path
import pytest
import torch
from conftest import run, status_rows, tiny_sets

def _no_slurm() -> str:
    "Why the real-SLURM tests cannot run here ('' when a controller answers)."
    if shutil.which("sbatch") is None:
        return "no SLURM on this machine: .ci/run brings one up with .ci/slurm-up (the same tests run with --cluster local in test_launch.py)"
    try: r = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e: return f"SLURM is installed but sinfo failed ({e}): bring a controller up with .ci/slurm-up (root)"
    if r.returncode: return f"SLURM is installed but no controller answers ({r.stderr.strip()[:120]}): bring it up with .ci/slurm-up (root)"
    return ""

_WHY = _no_slurm()
pytestmark = pytest.mark.skipif(bool(_WHY), reason=_WHY or "SLURM is up")


def wait_all_done(exp, runs_root, toy, limit_s=900):
    t0 = time.time()
    while time.time() - t0 < limit_s:
        st = run("--exp", exp, "--status", "--runs-root", str(runs_root), *tiny_sets(toy))
        lines = status_rows(st.stdout)
        if lines and all(l.split()[1] == "done" for l in lines): return lines
        assert not any(l.split()[1] == "failed" for l in lines), st.stdout
        time.sleep(3)
    raise AssertionError(f"runs not done after {limit_s} s:\n{st.stdout}")


def test_slurm_job_array_then_dependent_evaluation(tmp_path, toy):
    r = run("--exp", "smr_ablation_4f", "--scale", "tiny", "--cluster", "slurm", "--runs-root", str(tmp_path), *tiny_sets(toy))
    assert r.returncode == 0, r.stdout + r.stderr
    pre = re.findall(r"pre-train job (\S+), eval job (\S+)", r.stdout)
    assert len(pre) == 5
    assert all("_" in p for p, _ in pre)                       # array task ids: <array>_<task>
    assert len({p.split("_")[0] for p, _ in pre}) == 1         # one array
    lines = wait_all_done("smr_ablation_4f", tmp_path, toy)
    assert len(lines) == 5 and len(list(tmp_path.glob("tiny/smr_ablation_4f/*/eval.json"))) == 5


def test_slurm_preemption_requeues_and_resumes(tmp_path, toy, monkeypatch):
    """Deterministic: the trainer pauses once its step-2 checkpoint is written (SMRNB_PAUSE_AT_STEP, exported to the
    job by sbatch), then the test preempts it; it cannot finish before the signal on any machine."""
    import submitit
    from conftest import wait_for
    from smrnb.launch import RunJob
    from smrnb.tiny import tiny_config
    from smrnb.train import train
    cfg = lambda name: tiny_config("smr", tmp_path / name, toy, epochs=4, batch_size=16, ckpt_every=2, log_every=1).to_dict()
    train(cfg("straight"), progress=False)
    monkeypatch.setenv("SMRNB_PAUSE_AT_STEP", "2")
    ex = submitit.AutoExecutor(folder=str(tmp_path / "jobs" / "%j"), cluster="slurm", slurm_max_num_timeout=3)
    ex.update_parameters(timeout_min=30, cpus_per_task=2, mem_gb=2, name="smrnb-preempt")   # > 10 min: the preemption branch
    job = ex.submit(RunJob(cfg("requeued"), "pretrain"))
    wait_for(lambda: (tmp_path / "requeued" / "paused").exists(), f"the SLURM job to pause at step 2 (job state {job.state})")
    job._interrupt()                   # USR2 as on preemption: RunJob.checkpoint -> requeue -> resume
    job.result()
    assert "resuming" in job.stdout(), job.stdout()[-2000:]
    ck = tmp_path / "requeued" / "checkpoints" / "last.pt"
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=False)["model"]
    b = torch.load(ck, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
