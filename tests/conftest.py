import subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = [sys.executable, str(ROOT / "slurm" / "launch.py")]


def run(*args, cwd=None, timeout=900):
    "Run slurm/launch.py with `args`; returns the CompletedProcess."
    return subprocess.run(LAUNCH + list(args), capture_output=True, text=True, cwd=cwd, timeout=timeout)


def status_rows(stdout: str) -> list:
    "The run lines of `--status` (a table: two header lines, then one run per line: id, state, what differs, detail)."
    return [l for l in stdout.splitlines()[2:] if l.strip()]


def tiny_sets(toy):
    "--set arguments that make a tiny experiment run in seconds on the given toy set."
    return ["--set", f"data_root={toy}", "--set", "epochs=1", "--set", "batch_size=32", "--set", "warmup_epochs=1"]


@pytest.fixture(scope="session")
def stand_in_teacher_dir(tmp_path_factory):
    """A folder holding a stand-in for the tiny paper's fixed teacher (`toy-teacher-v1.pt`, random weights of the same
    architecture, and its record with its SHA-256): the real one takes minutes to build and is not in a clean clone."""
    import json, torch
    from smrnb.data import file_sha256
    from smrnb.encoders import create_encoder
    from smrnb.train import atomic_save
    d = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    atomic_save(dict(arch="test", kwargs=dict(img_size=32), encoder=create_encoder("test", img_size=32).state_dict()), d / "toy-teacher-v1.pt")
    (d / "toy-teacher-v1.json").write_text(json.dumps(dict(sha256=file_sha256(d / "toy-teacher-v1.pt"), stand_in=True)))
    return d


@pytest.fixture(autouse=True)
def _teacher_for_tiny_runs(request, monkeypatch):
    """Tests that launch tiny runs (they use the `toy` set, or ask for `teacher_env`) train against the stand-in teacher
    (`$SMRNB_TEACHER_DIR`, inherited by the launcher's processes); every other test sees the real configuration."""
    if {"toy", "teacher_env"} & set(request.fixturenames):
        monkeypatch.setenv("SMRNB_TEACHER_DIR", str(request.getfixturevalue("stand_in_teacher_dir")))


@pytest.fixture
def teacher_env():
    "Ask for the stand-in teacher (see `_teacher_for_tiny_runs`)."


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    from smrnb.data import make_toy_dataset
    d = tmp_path_factory.mktemp("toy")
    make_toy_dataset(d, n_train=7, n_val=2, size=32)
    return d


def wait_for(cond, what: str, limit_s: float = 600, proc=None):
    """Poll `cond()` until it is true. The limit only stops a hung test; no outcome depends on how long this takes.
    `proc`: a subprocess whose early exit ends the wait with its output."""
    import time
    t0 = time.monotonic()
    while not cond():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n{out[-3000:]}\n{err[-3000:]}")
        assert time.monotonic() - t0 < limit_s, f"gave up waiting for {what} after {limit_s} s"
        time.sleep(0.1)


def paused_pid(run_dir) -> int:
    "The pid of the trainer paused in `run_dir` by SMRNB_PAUSE_AT_STEP / pause_at_step."
    import json
    return json.loads((Path(run_dir) / "paused").read_text())["pid"]
