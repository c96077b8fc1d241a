"""Faults a researcher meets: two writers, signals, bad --set values, divergence, damaged files, unwritable folders.
Each test triggers its fault deterministically (a held lock, a paused trainer, a corrupted file): none depends on the
machine's speed. The report's side (bad results in eval.json and friends) is in test_report_faults.py."""
import json, os, signal, subprocess, sys, threading
from pathlib import Path
import pytest
import torch

from conftest import LAUNCH, ROOT, run, status_rows, tiny_sets, wait_for, paused_pid
from smrnb.launch import run_state
from smrnb.tiny import tiny_config
from smrnb.train import RunDir, RunLocked, load_checkpoint, train


def cfg(tmp_path, toy, name, **kw):
    return tiny_config("smr", tmp_path / name, toy, **{**dict(epochs=3, batch_size=16, ckpt_every=2, log_every=1), **kw}).to_dict()


def spawn_train(config: dict, pause_at_step: int):
    "A trainer in another process that pauses (holding the run) after its checkpoint of `pause_at_step`."
    code = f"import json; from smrnb.train import train; train(json.loads({json.dumps(json.dumps(config))}), progress=False, pause_at_step={pause_at_step})"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def weights(run_dir):
    return torch.load(Path(run_dir) / "checkpoints/last.pt", weights_only=False)["model"]


# ----------------------------------------------------------------------------- 2. one run, one writer

def test_second_trainer_refused_then_waits_and_takes_over_from_a_killed_holder(tmp_path, toy):
    c = cfg(tmp_path, toy, "r")
    first = spawn_train(c, pause_at_step=2)
    wait_for(lambda: (tmp_path / "r/paused").exists(), "the first trainer to pause at step 2", proc=first)
    pid = paused_pid(tmp_path / "r")
    with pytest.raises(RunLocked, match=f"being written by pid {pid} on host"):
        train(c, progress=False)
    assert run_state(tmp_path / "r")[0] == "running" and f"pid {pid}" in run_state(tmp_path / "r")[1]
    code = f"import json; from smrnb.train import train; train(json.loads({json.dumps(json.dumps(c))}), progress=False, wait=True)"
    waiter = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in waiter.stdout:                       # blocks until the waiter says it queues behind the holder
        seen.append(line)
        if "waiting for it" in line: break
    assert f"held by pid {pid}" in "".join(seen), "".join(seen)
    first.kill(); first.wait()                       # kill -9: the kernel releases the lock
    rest = waiter.stdout.read(); waiter.wait()
    assert waiter.returncode == 0, rest
    assert f"the last holder, pid {pid}" in rest and "taking it over" in rest and "resuming" in rest and "from step 2" in rest, rest
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["step"] == 12 and (tmp_path / "r/done").exists()
    train(cfg(tmp_path, toy, "straight"), progress=False)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "r")
    assert all(torch.equal(a[k], b[k]) for k in a)      # done and last.pt agree: the finished weights
    steps = [json.loads(l)["step"] for l in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))               # each step logged once
    before = (tmp_path / "r/checkpoints/last.pt").read_bytes()
    assert train(c, progress=False)["steps"] == 12 and (tmp_path / "r/checkpoints/last.pt").read_bytes() == before


def test_second_launcher_skips_a_run_another_process_holds(tmp_path, toy):
    from smrnb.launch import plan
    runs = plan("smr_table8", "tiny", {"data_root": str(toy), "epochs": 1, "batch_size": 32, "warmup_epochs": 1}, str(tmp_path))
    held = runs[0]["config"]["run_dir"]
    with RunDir(held).lock("train"):
        r = run("--exp", "smr_table8", "--cluster", "debug", "--runs-root", str(tmp_path), *tiny_sets(toy))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{runs[0]['run_id']}: skip: running (pid {os.getpid()} on host" in r.stdout
    assert not (Path(held) / "metrics.jsonl").exists()                  # untouched by the second launcher
    assert (Path(runs[1]["config"]["run_dir"]) / "done").exists()


# ----------------------------------------------------------------------------- 3. signals and stale state

@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_signal_to_local_launcher_cancels_its_jobs(tmp_path, toy, how):
    env = dict(os.environ, SMRNB_PAUSE_AT_STEP="2")
    args = ["--exp", "smr_table8", "--cluster", "local", "--runs-root", str(tmp_path)] + tiny_sets(toy) + ["--set", "epochs=2", "--set", "ckpt_every=2"]
    # SIGINT back to its default in the launcher: a suite started in the background of a non-interactive shell inherits it ignored
    p = subprocess.Popen(LAUNCH + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: any(tmp_path.glob("tiny/smr_table8/*/paused")), "the first run to pause at step 2", proc=p)
    run_dir = next(tmp_path.glob("tiny/smr_table8/*/paused")).parent
    trainer = paused_pid(run_dir)
    if how == "sigterm": p.send_signal(signal.SIGTERM)
    else: os.killpg(p.pid, signal.SIGINT)            # a terminal's Ctrl-C reaches the whole foreground group
    try: out, err = p.communicate(timeout=300)
    finally:                                         # never leave a paused trainer behind, whatever failed
        for pid in (trainer, p.pid):
            try: os.kill(pid, signal.SIGKILL)
            except ProcessLookupError: pass
    assert p.returncode == 130, out + err
    assert "Traceback" not in err and err.strip().count("\n") == 0 and err.startswith("interrupted: cancelled job(s)"), err
    with pytest.raises(ProcessLookupError): os.kill(trainer, 0)
    assert not (run_dir / "error.txt").exists() and RunDir(run_dir).holder() is None
    state, detail = run_state(run_dir, "complexity")
    assert state == "interrupted" and "has ended" in detail and "resumes" in detail, (state, detail)
    r = run(*args)                                   # again, without the pause: resumes and finishes
    assert r.returncode == 0, r.stdout + r.stderr
    st = status_rows(run("--status", *[a for a in args if a not in ("--cluster", "local")]).stdout)
    assert len(st) == 2 and all(l.split()[1] == "done" for l in st), st
    log = "".join(f.read_text() for f in (tmp_path / "_submitit").rglob("*.out"))
    assert f"resuming {run_dir} from step 2" in log


def test_failure_record_kept_until_a_new_attempt_starts(tmp_path, toy, monkeypatch):
    import smrnb.launch as L
    runs = L.plan("smr_table8", "tiny", {"data_root": str(toy), "epochs": 1, "batch_size": 32, "warmup_epochs": 1}, str(tmp_path))
    d = Path(runs[0]["config"]["run_dir"]); d.mkdir(parents=True)
    (d / "error.txt").write_text("pretrain failed\nValueError: boom\n")

    class BrokenExecutor:
        def submit(self, *a, **k): raise RuntimeError("sbatch: error: Batch job submission failed")
    monkeypatch.setattr(L, "make_executor", lambda *a, **k: BrokenExecutor())
    with pytest.raises(RuntimeError, match="submission failed"):
        L.launch("smr_table8", "tiny", "local", {"data_root": str(toy), "epochs": 1, "batch_size": 32, "warmup_epochs": 1}, runs_root=str(tmp_path))
    assert run_state(d) == ("failed", "ValueError: boom")


# ----------------------------------------------------------------------------- 4. --set values checked in the plan step

@pytest.mark.parametrize("value,msg", [("epochs=abc", "epochs must be an integer"), ("lr=-1", "lr must be a finite number > 0"),
                                       ("batch_size=0", "batch_size must be an integer >= 1"), ("epochs=0", "epochs must be an integer >= 1"),
                                       ("betas=(0.9,1.5)", "betas must be two numbers in [0, 1)"), ("clip_grad=abc", "clip_grad must be a number or none")])
def test_bad_set_values_fail_the_plan(value, msg, tmp_path):
    r = run("--exp", "smr_ablation_4f", "--dry-run", "--verbose", "--runs-root", str(tmp_path), "--set", value)
    assert r.returncode == 2 and msg in r.stderr and value.split("=")[0] in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_python_tuple_in_set_is_a_tuple(tmp_path):
    r = run("--exp", "smr_ablation_4f", "--dry-run", "--verbose", "--runs-root", str(tmp_path), "--set", "betas=(0.9,0.95)")
    assert r.returncode == 0 and '"betas": [0.9, 0.95]' in r.stdout, r.stderr


def test_one_failed_run_does_not_stop_the_others(tmp_path, toy):
    from smrnb.launch import plan
    sets = {"data_root": str(toy), "epochs": 1, "batch_size": 32, "warmup_epochs": 1}
    runs = plan("smr_table8", "tiny", sets, str(tmp_path))
    bad = Path(runs[0]["config"]["run_dir"]) / "checkpoints"; bad.mkdir(parents=True)
    (bad / "last.pt").write_bytes(b"not a checkpoint")                 # the first run fails at once
    r = run("--exp", "smr_table8", "--cluster", "local", "--runs-root", str(tmp_path), *tiny_sets(toy))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"1 of 2 runs failed" in r.stderr and runs[0]["run_id"] in r.stderr and "is unreadable" in r.stderr
    assert (Path(runs[1]["config"]["run_dir"]) / "eval.json").exists()  # the second run went on


# ----------------------------------------------------------------------------- 5. the NaN guard keeps its promise

def test_divergence_keeps_the_last_good_checkpoint_and_resumes_when_amended(tmp_path, toy):
    c = dict(cfg(tmp_path, toy, "r", ckpt_every=1), lr=1e10, warmup_epochs=2)
    with pytest.raises(FloatingPointError, match=r"not finite at step 3 .*last\.pt \(step 1\) is the last good state"):
        train(c, progress=False)
    ck = load_checkpoint(tmp_path / "r/checkpoints/last.pt")
    assert ck["step"] == 1 and all(v.abs().max() < 1e3 for v in ck["model"].values() if v.is_floating_point())
    with pytest.raises(ValueError, match="amend it explicitly"):
        train(dict(c, lr=1e-3), progress=False)
    s = train(dict(c, lr=1e-3, clip_grad=1.0), progress=False, amend=True)
    assert s["steps"] == 12 and s["final_loss"] == s["final_loss"]
    meta = json.loads((tmp_path / "r/config.json").read_text())
    assert meta["config"]["lr"] == 1e-3 and meta["history"] == [dict(meta["history"][0], step=1, changes={"clip_grad": [None, 1.0], "lr": [1e10, 1e-3]})]


def test_launcher_amend_keeps_the_run_id(tmp_path, toy):
    base = ["--exp", "smr_table8", "--runs-root", str(tmp_path), *tiny_sets(toy)]
    before = {l.split()[0] for l in status_rows(run(*base, "--status").stdout)}
    r = run(*base, "--cluster", "debug", "--amend", "lr=1e-4")
    assert r.returncode == 0, r.stdout + r.stderr
    after = status_rows(run(*base, "--status").stdout)
    assert {l.split()[0] for l in after} == before and all(l.split()[1] == "done" for l in after)
    for f in tmp_path.glob("tiny/smr_table8/*/config.json"): assert json.loads(f.read_text())["config"]["lr"] == 1e-4
    r = run(*base, "--dry-run", "--verbose", "--amend", "epochs=5")
    assert r.returncode == 2 and "only blr, clip_grad, lr, min_lr, warmup_epochs" in r.stderr


# ----------------------------------------------------------------------------- 6. damaged files name themselves

def test_damaged_checkpoint_and_config_are_named_with_the_fix(tmp_path, toy):
    c = cfg(tmp_path, toy, "r", epochs=2)
    with pytest.raises(Exception): train(c, crash_at_step=7, progress=False)
    ck = tmp_path / "r/checkpoints/last.pt"
    ck.write_bytes(ck.read_bytes()[:1000])                              # cut short
    with pytest.raises(RuntimeError, match=rf"checkpoint {ck} is unreadable .*Move it aside \(mv {ck} {ck}.bad\): the run then resumes from prev.pt"):
        train(c, progress=False)
    os.replace(ck, f"{ck}.bad")
    s = train(c, progress=False)                                        # from prev.pt (step 4)
    assert s["steps"] == 8
    cj = tmp_path / "r/config.json"; (tmp_path / "r/done").unlink()
    cj.write_text(cj.read_text()[:50])
    with pytest.raises(ValueError, match=rf"{cj} is unreadable .*move it aside"):
        train(c, progress=False)


def test_stale_temporaries_are_removed_and_a_full_disk_says_so(tmp_path, toy, monkeypatch):
    c = cfg(tmp_path, toy, "r")
    (tmp_path / "r/checkpoints").mkdir(parents=True)
    for pid in (11, 12, 13): (tmp_path / f"r/checkpoints/.last.pt.tmp{pid}").write_bytes(b"x" * 100)
    (tmp_path / "r/.config.json.tmp14").write_text("{")
    # a full disk, deterministically: the temporary of this process's first checkpoint points at /dev/full
    orig = RunDir.clean_temporaries
    def clean_then_fill(self):
        gone = orig(self)
        os.symlink("/dev/full", self.path / f"checkpoints/.last.pt.tmp{os.getpid()}")
        return gone
    monkeypatch.setattr(RunDir, "clean_temporaries", clean_then_fill)
    with pytest.raises(OSError, match=f"no space left on {tmp_path / 'r/checkpoints'} while writing last.pt"):
        train(c, progress=False)
    assert sorted(p.name for p in (tmp_path / "r/checkpoints").iterdir()) == []   # no stale or partial file
    assert not list((tmp_path / "r").glob(".*.tmp*"))
    monkeypatch.undo()
    assert train(c, progress=False)["steps"] == 12


def test_unwritable_runs_directory_is_a_clear_error(tmp_path, toy):
    (tmp_path / "file").write_text("")
    r = run("--exp", "smr_table8", "--cluster", "local", "--runs-root", str(tmp_path / "file" / "runs"), *tiny_sets(toy))
    assert r.returncode == 2 and "is not writable" in r.stderr and "--runs-root" in r.stderr and "Traceback" not in r.stderr, r.stderr
    if os.geteuid() != 0:                            # root ignores permission bits
        ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(0o555)
        r = run("--exp", "smr_table8", "--cluster", "local", "--runs-root", str(ro), *tiny_sets(toy))
        assert r.returncode == 2 and f"the runs directory {ro}/_submitit/smr_table8 is not writable" in r.stderr, r.stderr


def test_slurm_requeue_survives_the_sigterm_it_triggers(tmp_path, monkeypatch):
    """`scontrol requeue` of the job's own id makes SLURM terminate the job's processes, `scontrol` included if it has
    not exited yet (a busy controller: it failed CI once). A fake `scontrol` that receives that SIGTERM mid-request
    kills submitit's own requeue; the hardened one (`RunJob` installs it) completes."""
    import subprocess, types
    from submitit.slurm.slurm import SlurmJobEnvironment
    from smrnb.launch import _requeue_immune
    fake = tmp_path / "scontrol"
    fake.write_text(f"#!/bin/sh\nkill -TERM $$\necho \"$@\" > {tmp_path}/requested\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    env = types.SimpleNamespace(job_id="42")
    original = SlurmJobEnvironment.__dict__["_requeue"] if SlurmJobEnvironment._requeue is not _requeue_immune else None
    if original is not None:                          # submitit's own, unless a RunJob in this process replaced it already
        with pytest.raises(subprocess.CalledProcessError): original(env, 3)
    _requeue_immune(env, 3)
    assert (tmp_path / "requested").read_text().split() == ["requeue", "42"]
