"""The GPU suite's CPU rehearsal (`benchmarks/gpu_suite.py --smoke`): every part runs at toy sizes and is recorded as ok in
the results .md and .json, the compile cells say why they were not measured, and nothing that was not measured carries a
number. Nothing here depends on timing or on a GPU; about half a minute on 2 cores."""
import importlib.util, json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["table1", "encoder", "hier", "scale", "pytest"]


def _suite():
    spec = importlib.util.spec_from_file_location("bench_gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_gpu_suite_smoke(tmp_path):
    # caps far above what any part needs: the outcome must not depend on how loaded the machine is (the caps themselves are
    # tested deterministically below, with a cap of 0 s)
    caps = ",".join(f"{p}=1800" for p in PARTS)
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_suite.py"), "--smoke", "--out", str(tmp_path), "--caps", caps,
                        "--max-wall", "9000"], capture_output=True, text=True, timeout=3000, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    mds, jsons = sorted(tmp_path.glob("cpu-smoke-*.md")), sorted(tmp_path.glob("cpu-smoke-*.json"))
    assert len(mds) == 1 and len(jsons) == 1 and mds[0].stem == jsons[0].stem, list(tmp_path.iterdir())
    assert (tmp_path / f"{mds[0].stem}.log").is_file()
    res, md = json.loads(jsons[0].read_text()), mds[0].read_text()
    assert res["device"] == "cpu-smoke" and res["smoke"] is True and res["torch"]
    parts = {p["name"]: p for p in res["parts"]}
    assert list(parts) == PARTS
    for name, p in parts.items():
        assert p["status"] == "ok", (name, p["status"], p.get("reason"), p.get("errors"), p.get("log_tail"))
        assert f"## {p['number']}. {name}:" in md and f"| {p['number']} {name} |" in md
        assert p["rows"], name                                          # each part measured something
    assert "cpu-smoke" in md and "torch " + res["torch"] in md
    # part 1: every method, eager measured; compiled measured or recorded with its reason
    t1 = {(x["method"], x["mode"]): x for x in parts["table1"]["rows"]}
    assert set(t1) == {(m, mode) for m in ("smr", "sd", "mae", "mim_sd") for mode in ("eager", "compiled")}
    for (m, mode), x in t1.items():
        if mode == "eager" or x["status"] == "ok":
            assert x["status"] == "ok" and x["bare_images_per_s"] > 0 and x["loop_images_per_s"] > 0 and x["gflop_per_step"] > 0, x
        else:
            assert x["status"].startswith("not measured: ") and len(x["status"]) > 30, x       # the reason
            assert "bare_images_per_s" not in x                                                # and no number
    s1 = parts["table1"]["summary"]
    assert s1["smr_over_sd_images_per_s_bare_eager"] > 0 and s1["flop_ideal_smr_over_sd_eager"] > 0
    assert all(x["bare_peak_gb"] is None and x["mfu_bare"] is None for x in t1.values() if x["status"] == "ok")   # no GPU: not measured
    assert "mfu" in parts["table1"]["not_measured"] and "not measured" in md
    # parts 2-5: the numbers each promises
    s2 = parts["encoder"]["summary"]
    assert {x["model"] for x in parts["encoder"]["rows"]} == {"full", "smr", "timm"}
    assert s2["time_ratio_smr_over_full"] > 0 and s2["flop_ratio_smr_over_full"] > 0 and 0 <= s2["compressors_share_pct"] <= 100
    assert {x["bench"] for x in parts["hier"]["rows"]} == {"greenmim", "pcae", "mfm", "fast_itpn"}
    fast = {x["variant"]: x for x in parts["hier"]["rows"] if x["bench"] == "fast_itpn"}
    assert {"base", "m40", "m0_gather", "m40_gather", "window"} <= set(fast) and fast["m40"]["tokens_left"] < fast["base"]["tokens_left"]
    s4 = parts["scale"]["summary"]
    assert {"smr_largest_planner", "smr_largest_measured", "sd_largest_planner", "sd_largest_measured"} <= set(s4)
    assert all(x["planner_gib"] > 0 and x["measured_peak_gib"] is None for x in parts["scale"]["rows"])
    tests = {x["test"]: x["outcome"] for x in parts["pytest"]["rows"]}
    assert tests and all(o == "PASSED" for o in tests.values()), tests


def test_scale_search_probes_up_then_down():
    "Part 4's search: from the planner's pick upwards while a probe fits, else downwards; a probe that cannot run counts as not fitting."
    search = _suite().search_largest
    for n in (1, 3, 4):
        for largest in range(-1, n):                 # the true answer
            for start in range(n):
                probed = []
                def probe(i): probed.append(i); return i <= largest
                assert search(n, start, probe) == largest
                assert len(probed) == len(set(probed)) and len(probed) <= abs(largest - start) + 2
    assert _suite().search_largest(4, 2, lambda i: None if i == 3 else True) == 2     # 3 not probed: 2 is the largest measured


def test_a_part_over_its_cap_is_recorded_as_timed_out(tmp_path):
    "A cap of 0 s: the part's process is killed at once (no machine starts Python in 0 s), recorded as timed out, the others not run."
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_suite.py"), "--smoke", "--parts", "encoder", "--caps", "encoder=0",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]          # a part that did not finish fails the suite's exit code
    parts = {p["name"]: p for p in json.loads(next(tmp_path.glob("cpu-smoke-*.json")).read_text())["parts"]}
    assert parts["encoder"]["status"] == "timed out" and "over its cap of 0 s" in parts["encoder"]["reason"], parts["encoder"]
    assert {p["status"] for n, p in parts.items() if n != "encoder"} == {"not run"}
