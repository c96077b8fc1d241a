"""The Table 1 benchmark's CPU smoke run: every method's bare step and real training loop run and are reported;
what a CPU cannot measure (GPU memory, MFU) is marked n/m, never estimated."""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_table1_cpu_smoke(tmp_path):
    out = tmp_path / "t1.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/table1.py"), "--device", "cpu", "--arch", "test", "--batch", "4",
                        "--steps", "2", "--warmup", "1", "--workers", "0", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {l.split()[0]: l.split() for l in r.stdout.splitlines() if l.split()[:2] in (["smr", "eager"], ["mae", "eager"], ["sd", "eager"], ["mim_sd", "eager"])}
    assert set(rows) == {"smr", "mae", "sd", "mim_sd"}, r.stdout
    assert rows["smr"][5] == "1.000" and rows["mae"][6] == "0.67" and rows["mim_sd"][6] == "1.14"      # ratios beside Table 1's
    assert all(row[4] == "n/m" and row[-1] == "n/m" for row in rows.values())                          # no GPU memory, no MFU on CPU
    import json
    res = json.loads(out.read_text())["results"]
    assert all(x["loop_images_per_s"] > 0 and x["images_per_s"] > 0 and x["flops_per_step"] > 0 for x in res)


def test_encoder_step_cpu_smoke():
    "encoder_step.py runs at a test size with the dense-tracking comparison and prints every line it promises."
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/encoder_step.py"), "--device", "cpu", "--arch", "test", "--schedule", "8x3",
                        "--batch", "2", "--steps", "1", "--warmup", "1", "--dense"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for what in ("smr_dense step:", "measured/analytic", "compressors' share", "owner index / dense source tracking", "timm VisionTransformer"):
        assert what in r.stdout, (what, r.stdout)
