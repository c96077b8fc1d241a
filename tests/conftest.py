import subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = [sys.executable, str(ROOT / "slurm" / "launch.py")]


def run(*args, cwd=None, timeout=900):
    "Run slurm/launch.py with `args`; returns the CompletedProcess."
    return subprocess.run(LAUNCH + list(args), capture_output=True, text=True, cwd=cwd, timeout=timeout)


def tiny_sets(toy):
    "--set arguments that make a tiny experiment run in seconds on the given toy set."
    return ["--set", f"data_root={toy}", "--set", "epochs=1", "--set", "batch_size=32", "--set", "warmup_epochs=1"]


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    from smrnb.data import make_toy_dataset
    d = tmp_path_factory.mktemp("toy")
    make_toy_dataset(d, n_train=7, n_val=2, size=32)
    return d
