"""CPU smoke runs of benchmarks/scale.py (the memory planner's largest batches and the 10B plan) and benchmarks/loader.py
(the data loader's images/s), at small sizes: every promised line is printed, GPU-only columns read "not measured",
never estimated. No assertion depends on a speed."""
import importlib.util, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_largest_true_search():
    "The measured column's search: the largest batch a monotone predicate accepts, with few probes."
    largest_true = _bench("scale").largest_true
    for limit in (0, 1, 2, 3, 7, 8, 9, 100, 1000):
        probes = []
        def fits(b): probes.append(b); return b <= limit
        assert largest_true(fits, 512) == min(limit, 512)
        assert len(probes) <= 2 * 10 + 2 and max(probes) <= 512
    assert largest_true(lambda b: True, 5) == 5


def test_scale_cpu_smoke(tmp_path):
    import json
    out = tmp_path / "scale.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/scale.py"), "--archs", "vit_large", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for what in ("Largest per-GPU batch", "SMR / SD largest-batch ratio", "Where the memory goes", "10B ViT", "full checkpoint",
                 "Appendix F", "no method fits"):
        assert what in r.stdout, (what, r.stdout)
    res = json.loads(out.read_text())
    rows = {row["method"]: row for row in res["rows"]}
    assert set(rows) == {"smr", "sd"} and all(row["measured 1 GPU"] == "not measured" for row in rows.values())
    assert rows["smr"]["1 GPU"] > rows["sd"]["1 GPU"] > 0 and rows["smr"]["FSDP x8"] >= rows["smr"]["DDP x8"]
    plan = {(p["method"], p["sharding"], p["grad_ckpt"]): p for p in res["plan_10b"]}
    assert plan[("smr", "none (DDP)", False)]["batch_per_gpu_at_8"] == 0 and plan[("smr", "FSDP", False)]["batch_per_gpu_at_8"] > 0


def test_loader_cpu_smoke():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/loader.py"), "--n", "24", "--batch", "4", "--img", "64",
                        "--workers", "0,1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = [l.split() for l in r.stdout.splitlines()]
    rates = {(l[0], l[1]): l[2] for l in lines if len(l) >= 3 and l[0] in ("pil", "tv-cpu", "tv-cuda") and l[1].isdigit()}
    assert set(rates) == {(p, w) for p in ("pil", "tv-cpu", "tv-cuda") for w in ("0", "1")}, r.stdout
    assert all(float(rates[(p, w)]) > 0 for p in ("pil", "tv-cpu") for w in ("0", "1"))
    import torch
    if not torch.cuda.is_available(): assert rates[("tv-cuda", "0")] == "not", r.stdout     # "not measured"
    assert "crops with the same boxes" in r.stdout and "tv-cpu / pil" in r.stdout
