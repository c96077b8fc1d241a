"""benchmarks/pcae.py runs at a tiny CPU size and prints both throughputs and their ratio (values not asserted: timing)."""
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pcae_benchmark_cpu_smoke():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/pcae.py"), "--arch", "test", "--batch", "8", "--steps", "3",
                        "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ips = {m[1]: float(m[2]) for m in re.finditer(r"^(MAE|PCAE) +step:.*: ([0-9.]+) img/s$", r.stdout, re.M)}
    assert set(ips) == {"MAE", "PCAE"} and all(v > 0 for v in ips.values()), r.stdout
    m = re.search(r"^ratio PCAE/MAE: ([0-9.]+)x", r.stdout, re.M)
    assert m, r.stdout
    assert abs(float(m[1]) - ips["PCAE"] / ips["MAE"]) <= 0.01 * float(m[1]) + 0.006, r.stdout   # the ratio is of the two printed rates
    assert "teacher 48 -> 6 tokens" in r.stdout, r.stdout       # 64 patches, 75 % masked, halved after blocks 0, 1, 2
