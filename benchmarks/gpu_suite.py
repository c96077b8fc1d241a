"""The GPU suite (issue 30): one command that measures, on one GPU, in under 8 minutes, what this project claims of speed
and memory, and writes `benchmarks/results/<device>-<date>.md` with a `.json` beside it (and a `.log` of its progress lines).

Parts (each in its own process, with its own time cap: a part over its cap is killed and recorded as timed out, with
whatever it had measured until then; the other parts still run; a global limit keeps the whole under 8 minutes):

  1 table1   Table 1 / Table 8: SMR 25x4 vs SD (FD-CLIP) vs MAE vs MIM+SD, ViT-B/16 at 224 px, batch 128, bf16, CLIP-B
             teacher (random weights): the bare step and the real `smrnb.train.train()` loop (short max_steps), eager and
             torch.compile'd (`--compile-methods`, default smr,sd); images/s, peak memory, MFU, the SMR/SD images/s ratio
             beside the FLOP-ideal ratio of the same run (the steps' FLOPs counted by FlopCounterMode), Table 8's MACs
             (benchmarks/table1.py's functions)
  2 encoder  the encoder alone, SMR 25x4 vs no compression: time ratio against the FLOP ratio, the compressors' share of
             the step, the no-schedule encoder vs timm (benchmarks/encoder_step.py)
  3 hier     GreenMIM vs SimMIM-style (mask tokens) Swin-B (benchmarks/greenmim.py), PCAE vs MAE ViT-B (benchmarks/pcae.py),
             an iTPN-B MFM training step (table1.py's bare step), Fast-iTPN-B inference with token migration 0-40 % and
             gathering (smrnb.methods.itpn.acceleration_throughput): images/s and peak memory
  4 scale    the largest ViT (vit_base < vit_large < vit_huge < vit_10b) whose SMR step fits one GPU vs the largest SD step,
             at `--scale-batch` images, within an 80 GB budget: smrnb.scale's memory plan beside the measured peak
  5 pytest   the test suite's GPU-relevant tests (bf16, compile, FSDP on one process, device paths), through pytest

Nothing is estimated: a number that was not measured reads "not measured" with the reason. The planner's and the FLOP
counter's numbers are predictions and are labelled so, beside what was measured.

    python benchmarks/gpu_suite.py                          # on the GPU machine (or: bash benchmarks/gpu_suite.sh)
    python benchmarks/gpu_suite.py --parts 1,4 --out /tmp/r # some parts, results elsewhere
    python benchmarks/gpu_suite.py --smoke --out /tmp/r     # every part at toy sizes on CPU (device "cpu-smoke"), ~1 minute
"""
from __future__ import annotations
import argparse, gc, json, math, os, platform, re, runpy, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT))

NM = "not measured"
PARTS = {  # name: (number, title, GPU cap s, smoke cap s)
    "table1": (1, "Table 1 / Table 8: SMR vs SD vs MAE vs MIM+SD (bare step and train() loop, eager and compiled)", 230, 70),
    "encoder": (2, "Encoder alone: SMR 25x4 vs no compression, compressors' share", 35, 40),
    "hier": (3, "GreenMIM vs SimMIM Swin-B, PCAE vs MAE ViT-B, iTPN-B MFM, Fast-iTPN-B inference", 70, 50),
    "scale": (4, "Largest ViT whose SMR / SD step fits one GPU: planner vs measured peak", 60, 40),
    "pytest": (5, "GPU-relevant pytest selection (bf16, compile, FSDP on 1 process, device paths)", 55, 60),
}
MAX_WALL_S, SMOKE_MAX_WALL_S = 460, 200     # the whole suite (gpu_suite.sh's wheel install comes on top: seconds)
PYTEST_GPU = ["tests/test_backbones.py::test_bf16_autocast_checkpointing_and_state_dict_round_trip",   # bf16 autocast
              "tests/test_fsdp.py::test_fsdp_bad_combinations_are_refused",      # FSDP on one process: refused before anything is written
              "tests/test_scale_bench.py::test_largest_true_search",
              "tests/test_scale_bench.py::test_loader_cpu_smoke",                 # device path: tv-cuda (nvjpeg) decodes on the GPU
              "tests/test_compile.py"]                                            # compile: train(device auto -> cuda, compile=True)
PYTEST_SMOKE = PYTEST_GPU[:3]
SCALE_LADDER, SCALE_LADDER_SMOKE = ["vit_base", "vit_large", "vit_huge", "vit_10b"], ["test", "toy", "test_deep"]


# ----------------------------------------------------------------------------------------------------------- helpers
def _f(v) -> str:
    "A value for the Markdown file: None -> 'not measured'; floats to a few significant digits."
    if v is None: return NM
    if isinstance(v, bool): return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v): return str(v)
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"
    return str(v).replace("|", "/").replace("\n", " ")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def _dist_version(name: str):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception: return None


class Part:
    "What one part measured so far, written to its state file after every change (a part killed at its cap keeps it)."
    def __init__(self, path: Path, args: dict):
        self.path, self.args = Path(path), args
        self.d = dict(rows=[], summary={}, not_measured={}, errors=[], notes=[], complete=False, device=None)
        self.save()

    def save(self): _write_json(self.path, self.d)
    def row(self, **r): self.d["rows"].append(r); self.save(); return r
    def set(self, **kv): self.d["summary"].update(kv); self.save()
    def nm(self, key, reason): self.d["not_measured"][key] = reason; self.save()
    def note(self, s): self.d["notes"].append(s); self.save()
    def error(self, what, e):
        msg = f"{what}: {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        self.d["errors"].append(msg); self.save(); print(f"ERROR {msg}", flush=True)
        return msg


def say(*a): print(*a, flush=True)


def _load_table1():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_table1", BENCH / "table1.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def run_script(name: str, args: list) -> dict:
    "Run benchmarks/<name> (a script that measures at import time) in this process with `args`; returns its globals."
    old = sys.argv
    sys.argv = [str(BENCH / name)] + [str(x) for x in args]
    try: return runpy.run_path(str(BENCH / name), run_name="__bench__")
    finally: sys.argv = old


def _free(dev):
    import torch
    gc.collect()
    if dev.type == "cuda": torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)


def _device_name(dev) -> str:
    import torch
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


# ------------------------------------------------------------------------------------------------ part 1: Table 1
def part_table1(a: dict, P: Part):
    import torch
    from smrnb.backbones.vit import resolve_arch
    from smrnb.complexity import table8
    from smrnb.data import make_toy_dataset
    t1 = _load_table1()
    dev = torch.device(a["device"])
    smoke, cuda = a["smoke"], dev.type == "cuda"
    arch = "test" if smoke else a["arch"]
    batch, steps, warmup = (4, 1, 1) if smoke else (a["batch"], a["steps"], a["warmup"])
    img = resolve_arch(arch).get("img_size", 224) if smoke else 224
    target = "clip" if cuda else "ema"
    name = _device_name(dev)
    peak = next((v for k, v in t1.PEAK_TFLOPS.items() if k in name), None) if cuda else None
    P.d["device"] = name
    P.set(arch=arch, img=img, batch=batch, timed_steps=steps, warmup_steps=warmup, teacher=target,
          precision="bf16 autocast" if cuda else "fp32 (CPU)")
    if peak: P.set(peak_tflops_bf16=peak)
    else: P.nm("mfu", "no CUDA device: CPU smoke run" if not cuda else f"no known dense bf16 peak for {name!r} (table1.PEAK_TFLOPS)")
    methods = ["smr", "sd", "mae", "mim_sd"]
    compiled_ok = set(a["compile_methods"].split(",")) if not smoke or a["smoke_compile"] else set()
    workers = 0 if smoke else a["workers"]
    t8 = table8("ViT-B", "25x4").iloc[0]
    P.set(table8_convention=t8.convention, table8_baseline_gmacs=float(t8.baseline), table8_smr_gmacs=float(t8.smr),
          table8_paper_gmacs=f"{t8.paper_baseline:g} / {t8.paper_smr:g}")
    P.note("table8_*: analytic (smrnb.complexity.table8, ViT-B, the convention closest to the paper's 17.6 / 12.8 GMACs), "
           "not measured")
    say(f"table1: {name}, {arch} {img}px batch {batch}, {steps} timed steps after {warmup}, teacher {target}, workers {workers}")
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "toy"
        make_toy_dataset(data, n_train=max(1, math.ceil(2 * batch / 10)), n_val=1, size=img)   # 2 batches an epoch, 10 classes
        for mode in ("eager", "compiled"):         # per mode: every method's bare step, then every method's loop (a
            rows = {}                              # cap that ends the part keeps as many SMR/SD pairs as it can)
            for m in methods:
                base = dict(method=m, mode=mode)
                if mode == "compiled" and m not in compiled_ok:
                    why = ("skipped in --smoke: inductor's CPU compile takes ~1.5 min even for the test model "
                           "(tests/test_compile.py); --smoke-compile runs it") if smoke and not a["smoke_compile"] else \
                          f"not in --compile-methods ({a['compile_methods']}): the part's cap leaves time to compile those only"
                    P.row(**base, status=f"{NM}: {why}"); continue
                cfg = t1.method_config(m, arch, img, target)
                if smoke and m == "mae": cfg.update(decoder_width=64, decoder_depth=1, decoder_heads=4)
                say(f"table1: {m} {mode}: bare step ...")
                t0 = time.time()
                try:
                    r = t1.bare_step(cfg, batch, steps, warmup, dev, mode == "compiled")
                except Exception as e:
                    P.row(**base, status=P.error(f"{m} {mode} bare step", e)); _free(dev); continue
                _free(dev)
                say(f"table1: {m} {mode}: bare {r['ms_per_step']:.1f} ms/step, {r['images_per_s']:.1f} images/s ({time.time() - t0:.0f} s)")
                gf = r["flops_per_step"] / 1e9
                rows[m] = (cfg, P.row(**base, status="pending: train() loop",       # the orchestrator words it if the part ends here
                                      bare_ms_per_step=r["ms_per_step"], bare_images_per_s=r["images_per_s"], bare_peak_gb=r["peak_gb"],
                                      loop_images_per_s=None, loop_peak_gb=None, loop_vs_bare=None, gflop_per_step=gf,
                                      mfu_bare=gf * 1e9 * r["images_per_s"] / batch / (peak * 1e12) if peak else None, mfu_loop=None))
                _table1_summary(P, t1)
            for m, (cfg, row) in rows.items():
                say(f"table1: {m} {mode}: train() loop ...")
                t0 = time.time()
                try:
                    loop = t1.train_loop(cfg, batch, steps, warmup, dev, mode == "compiled", data, workers)
                    row.update(status="ok", loop_images_per_s=loop["images_per_s"], loop_peak_gb=loop["peak_gb"],
                               loop_vs_bare=loop["images_per_s"] / row["bare_images_per_s"],
                               mfu_loop=row["gflop_per_step"] * 1e9 * loop["images_per_s"] / batch / (peak * 1e12) if peak else None)
                    say(f"table1: {m} {mode}: loop {loop['images_per_s']:.1f} images/s ({time.time() - t0:.0f} s)")
                except Exception as e: row["status"] = "train() loop " + P.error(f"{m} {mode} train() loop", e)
                _free(dev)
                _table1_summary(P, t1)
    if not cuda: P.nm("bare_peak_gb / loop_peak_gb", "CPU smoke run: CUDA's allocator is what is measured")


def _table1_summary(P: Part, t1):
    "Ratios against SMR beside Table 1's, and SMR/SD images/s beside the FLOP-ideal ratio, from the rows measured so far."
    rows = {(r["method"], r["mode"]): r for r in P.d["rows"] if "bare_images_per_s" in r}
    for (m, mode), r in rows.items():
        s = rows.get(("smr", mode))
        if s:
            r["time_vs_smr"] = s["bare_images_per_s"] / r["bare_images_per_s"]
            r["mem_vs_smr"] = r["bare_peak_gb"] / s["bare_peak_gb"] if r["bare_peak_gb"] and s["bare_peak_gb"] else None
        if m in t1.PAPER:
            r["paper_time_vs_smr"] = t1.PAPER[m][0] / t1.PAPER["smr"][0]; r["paper_mem_vs_smr"] = t1.PAPER[m][1] / t1.PAPER["smr"][1]
    for mode in ("eager", "compiled"):
        s, d = rows.get(("smr", mode)), rows.get(("sd", mode))
        if not (s and d): continue
        ideal = d["gflop_per_step"] / s["gflop_per_step"]
        bare = s["bare_images_per_s"] / d["bare_images_per_s"]
        kv = {f"smr_over_sd_images_per_s_bare_{mode}": bare, f"flop_ideal_smr_over_sd_{mode}": ideal,
              f"smr_over_sd_bare_vs_ideal_{mode}": bare / ideal}
        if s.get("loop_images_per_s") and d.get("loop_images_per_s"):
            kv[f"smr_over_sd_images_per_s_loop_{mode}"] = s["loop_images_per_s"] / d["loop_images_per_s"]
        if s.get("bare_peak_gb") and d.get("bare_peak_gb"): kv[f"smr_over_sd_peak_memory_bare_{mode}"] = s["bare_peak_gb"] / d["bare_peak_gb"]
        P.set(**kv)
    P.save()


# ------------------------------------------------------------------------------------------- part 2: the encoder
def part_encoder(a: dict, P: Part):
    import torch
    dev = torch.device(a["device"])
    if a["smoke"]: arch, sched, batch, steps, warmup = "test", "8x3", 2, 1, 1
    else: arch, sched, batch, steps, warmup = a["arch"], "25x4", a["batch"], 10, 3
    P.d["device"] = _device_name(dev)
    P.set(arch=arch, schedule=sched, compressor="tm", batch=batch, timed_steps=steps, warmup_steps=warmup,
          precision="bf16 autocast" if dev.type == "cuda" else "fp32 (CPU)")
    ns = run_script("encoder_step.py", ["--device", dev.type, "--arch", arch, "--schedule", sched, "--batch", batch,
                                        "--steps", steps, "--warmup", warmup])
    for k, t in ns["med"].items(): P.row(model=k, ms_per_step=1000 * t, images_per_s=batch / t)
    P.set(time_ratio_smr_over_full=ns["time_ratio"], flop_ratio_smr_over_full=ns["flop_ratio"],
          measured_over_flop_ratio=ns["time_ratio"] / ns["flop_ratio"], compressors_share_pct=100 * ns["share"],
          compressors_forward_pct=100 * ns["fwd"] / ns["total"], compressors_backward_pct=100 * ns["bwd"] / ns["total"],
          full_over_timm=ns["med"]["full"] / ns["med"]["timm"])
    P.note("flop_ratio: analytic (smrnb.complexity.encoder_cost, forward MACs); the compressors' share is from one profiled "
           "step (torch.profiler), the times are medians of interleaved steps")


# -------------------------------------------------------------------------- part 3: hierarchical / other methods
def part_hier(a: dict, P: Part):
    import torch
    dev = torch.device(a["device"])
    smoke, cuda = a["smoke"], dev.type == "cuda"
    P.d["device"] = _device_name(dev)
    P.set(precision="bf16 autocast (pcae, itpn, mfm); greenmim.py fp32" if cuda else "fp32 (CPU)")
    if not cuda: P.nm("peak_mib", "CPU smoke run: CUDA's allocator is what is measured")
    mib = lambda b: b / 2**20 if b is not None else None

    # (a) GreenMIM (visible tokens, group window attention) vs SimMIM-style dense Swin with mask tokens
    try:
        arch, batch = ("swin_toy", 2) if smoke else ("swin_base", a["hier_batch"])
        say(f"hier: greenmim.py {arch} batch {batch} ...")
        ns = run_script("greenmim.py", ["--device", dev.type, "--arch", arch, "--batch", batch, "--steps", 1 if smoke else 3,
                                        "--warmup", 0 if smoke else 1])
        import statistics
        for k, label in (("dense", "SimMIM-style Swin (mask tokens)"), ("greenmim", "GreenMIM Swin (visible tokens)")):
            pk = statistics.median(r[2] for r in ns["res"][k]) if cuda else None
            P.row(bench="greenmim", arch=arch, variant=label, batch=batch, ms_per_step=1000 * ns["med"][k],
                  images_per_s=batch / ns["med"][k], saved_activations_mib=mib(ns["mem"][k]), peak_mib=mib(pk),
                  stage1_tokens=ns["n_tok"][k])
        if cuda: P.note("greenmim peak_mib: the step's peak above what was allocated before it (greenmim.py; fp32, no autocast)")
        P.set(greenmim_speedup=ns["med"]["dense"] / ns["med"]["greenmim"],
              greenmim_activation_memory_change_pct=100 * (ns["mem"]["greenmim"] / ns["mem"]["dense"] - 1))
        ns.clear()                         # the script's globals: its models and optimisers
    except Exception as e: P.error("greenmim", e)
    _free(dev)

    # (b) PCAE vs MAE, ViT-B
    try:
        arch, batch = ("test", 2) if smoke else (a["arch"], a["hier_batch"])
        say(f"hier: pcae.py {arch} batch {batch} ...")
        ns = run_script("pcae.py", ["--device", dev.type, "--arch", arch, "--batch", batch, "--steps", 1 if smoke else 5,
                                    "--warmup", 1] + (["--amp"] if cuda else []))
        peaks = {}
        for k, f in (("mae", ns["mae_step"]), ("pcae", lambda: ns["pcae_step"](0))):
            if not cuda: peaks[k] = None; continue
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(dev); base = torch.cuda.memory_allocated(dev)
            f(); torch.cuda.synchronize()
            peaks[k] = torch.cuda.max_memory_allocated(dev) - base
        for k, ips in (("mae", ns["mae_ips"]), ("pcae", ns["pcae_ips"])):
            P.row(bench="pcae", arch=arch, variant=k.upper(), batch=batch, ms_per_step=1000 * batch / ips, images_per_s=ips,
                  peak_mib=mib(peaks[k]))
        P.set(pcae_over_mae_images_per_s=ns["pcae_ips"] / ns["mae_ips"])
        if cuda: P.note("pcae / mae peak_mib: the step's peak above what was allocated before it (both models are resident)")
        ns.clear()                         # the script's globals: its models and optimisers
    except Exception as e: P.error("pcae", e)
    _free(dev)

    # (c) iTPN-B pre-training step with MFM (pixel + feature regression; CLIP-B teacher on CUDA, EMA on CPU)
    try:
        t1 = _load_table1()
        arch, img, batch = ("itpn_toy", 32, 2) if smoke else ("itpn_base", 224, a["hier_batch"])
        cfg = dict(method="mfm", arch=arch, img_size=img, target="clip" if cuda else "ema")
        if cuda: cfg["target_kw"] = {"model_name": "ViT-B-16-quickgelu", "allow_random": True}
        say(f"hier: mfm {arch} batch {batch} (teacher {cfg['target']}) ...")
        r = t1.bare_step(cfg, batch, 1 if smoke else 5, 1 if smoke else 2, dev, False)
        P.row(bench="mfm", arch=arch, variant=f"iTPN MFM step (teacher {cfg['target']})", batch=batch, ms_per_step=r["ms_per_step"],
              images_per_s=r["images_per_s"], peak_mib=r["peak_gb"] * 1024 if r["peak_gb"] is not None else None,
              gflop_per_step=r["flops_per_step"] / 1e9)
    except Exception as e: P.error("mfm", e)
    _free(dev)

    # (d) Fast-iTPN-B inference: token migration 0-40 %, gathering off / on, window attention alone
    try:
        from smrnb.backbones.itpn import create_itpn
        from smrnb.methods.itpn import acceleration_throughput
        arch, img, win, batch = ("fast_itpn_toy", 32, 4, 2) if smoke else ("fast_itpn_base", 224, 7, a["hier_batch"])
        say(f"hier: Fast-iTPN inference {arch} batch {batch} ...")
        torch.manual_seed(0)
        model = create_itpn(arch, img_size=img, gather_window=win)
        settings = {f"m{p}": dict(migration_ratio=p / 100) for p in (10, 20, 30, 40)}
        settings |= {f"m{p}_gather": dict(migration_ratio=p / 100, gathering=True) for p in (0, 10, 20, 30, 40)}
        settings["window"] = dict(window_attention=True)
        r = acceleration_throughput(model, settings, batch=batch, iters=1 if smoke else 5, warmup=1 if smoke else 2, device=dev)
        for k in ["base"] + list(settings):
            s = settings.get(k, {})
            P.row(bench="fast_itpn", arch=arch, variant=k, batch=batch, migration_pct=100 * s.get("migration_ratio", 0.0),
                  gathering=bool(s.get("gathering")), window_attention=bool(s.get("window_attention")),
                  images_per_s=r["images_per_s"][k], speedup_pct=r["speedup"].get(k, 0.0), tokens_left=r["tokens"][k],
                  peak_mib=r["peak_mem_mb"][k])
        P.note("fast_itpn: 'base' is migration 0 and gathering off (the plain iTPN forward) with the same weights; forwards "
               "without grad, eval mode, settings alternated (smrnb.methods.itpn.acceleration_throughput); peak_mib above the "
               "allocation before the forward")
        del model
    except Exception as e: P.error("fast_itpn", e)
    _free(dev)


# ------------------------------------------------------------------------------------------ part 4: the scale probe
def probe_step(cfg: dict, batch: int, dev, budget_bytes: float, reserve_bytes: float) -> dict:
    """Two training steps of `cfg` at `batch` as `smrnb.train` runs them (bf16 autocast on CUDA, AdamW, the EMA update) on
    `dev`: {'fits', 'peak_gib' (CUDA's allocator; None on CPU), 'why'}; as benchmarks/scale.py's probe (OOM, or the peak
    plus the planner's reserve over the budget, fails)."""
    import torch
    from smrnb.pretrain import Pretrainer
    from smrnb.train import TrainConfig, build_optimizer
    cuda = dev.type == "cuda"
    tc = TrainConfig.from_dict(dict(cfg, batch_size=batch))
    torch.manual_seed(0)
    model = opt = x = loss = None
    try:
        with torch.device(dev): model = Pretrainer(tc)           # built on the device (CPU initialisation of ViT-H takes long)
        model = model.to(dev).train()
        opt = build_optimizer(model, tc)
        x = torch.randn(batch, 3, tc.img_size, tc.img_size, device=dev)
        if cuda: torch.cuda.reset_peak_memory_stats(dev)
        for _ in range(2):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                loss = model(x)["loss"]
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            if hasattr(model.target, "update"): model.target.update(model.encoder, 0.5)
        if cuda: torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev) if cuda else None
        fits = peak is None or peak + reserve_bytes <= budget_bytes
        return dict(fits=fits, peak_gib=peak / 2**30 if peak is not None else None,
                    why="" if fits else f"peak + {reserve_bytes / 2**30:g} GiB reserve over the {budget_bytes / 2**30:g} GiB budget")
    except torch.OutOfMemoryError:
        return dict(fits=False, peak_gib=None, why="CUDA out of memory")
    finally:
        del model, opt, x, loss
        _free(dev)


def search_largest(n: int, start: int, probe) -> int:
    """The index of the largest of `n` ladder entries (smallest first) that fits, probing from `start` (the planner's pick):
    upwards while each fits, else downwards until one fits. `probe(i)`: True (fits), False (does not), None (not probed:
    counts as not fitting). -1: none fits."""
    if probe(start):
        i = start
        while i + 1 < n and probe(i + 1): i += 1
        return i
    for i in range(start - 1, -1, -1):
        if probe(i): return i
    return -1


def part_scale(a: dict, P: Part):
    import torch
    from smrnb.scale import GPU_80GB_GIB, RESERVE_GIB, memory_plan, plan_config
    dev = torch.device(a["device"])
    smoke, cuda = a["smoke"], dev.type == "cuda"
    ladder = SCALE_LADDER_SMOKE if smoke else SCALE_LADDER
    batch = 2 if smoke else a["scale_batch"]
    budget = a["budget_gib"] or GPU_80GB_GIB
    P.d["device"] = _device_name(dev)
    over = dict(target="pixel", target_kw={}) if smoke else {}     # smoke: no CLIP teacher (a CPU CLIP-B would dominate)
    P.set(batch_per_gpu=batch, budget_gib=budget, reserve_gib=RESERVE_GIB, ladder=" < ".join(ladder),
          teacher="pixel (smoke)" if smoke else "CLIP-B up to width 768, CLIP-L above (smrnb.scale.plan_config)")
    if cuda: P.set(device_memory_gib=torch.cuda.get_device_properties(dev).total_memory / 2**30)
    else: P.nm("measured_peak_gib", "CPU smoke run: the probe's steps run, CUDA's allocator is what is measured")
    P.note("planner_gib: smrnb.scale.memory_plan (analytic, 1 GPU, bf16, no checkpointing, reserve included): a prediction, "
           "not a measurement; measured_peak_gib: torch.cuda.max_memory_allocated over two training steps (reserve excluded)")
    for method in ("smr", "sd"):
        plans = {}
        for arch in ladder:
            cfg = plan_config(method, arch, **over)
            mp = memory_plan(method, arch, batch, world=1, config=cfg)
            states = sum(mp.parts[k] for k in ("params", "grads", "optimizer", "autocast_copies", "teacher")) / 2**30
            plans[arch] = dict(cfg=cfg, gib=mp.gib, states_gib=states, fits=mp.gib <= budget)
        fit = [i for i, arch in enumerate(ladder) if plans[arch]["fits"]]
        k = fit[-1] if fit else 0
        P.set(**{f"{method}_largest_planner": ladder[k] if fit else "none"})
        measured, tried = {}, set()

        def probe(i):
            arch = ladder[i]; pl = plans[arch]; tried.add(i)
            if pl["states_gib"] > budget:
                why = f"not probed: the planner puts its model states alone at {pl['states_gib']:.0f} GiB, over the {budget:g} GiB budget"
                measured[i] = None
                P.row(method=method, arch=arch, planner_gib=pl["gib"], planner_fits=pl["fits"], measured_fits=None,
                      measured_peak_gib=None, planner_without_reserve_gib=pl["gib"] - RESERVE_GIB, status=why)
                say(f"scale: {method} {arch}: {why}")
                return None
            say(f"scale: {method} {arch} batch {batch}: two steps ...")
            t0 = time.time()
            try: r = probe_step(pl["cfg"], batch, dev, budget * 2**30, RESERVE_GIB * 2**30)
            except Exception as e:                  # not an answer either way: not measured, and the part is partial
                measured[i] = None
                P.row(method=method, arch=arch, planner_gib=pl["gib"], planner_fits=pl["fits"], measured_fits=None,
                      measured_peak_gib=None, planner_without_reserve_gib=pl["gib"] - RESERVE_GIB,
                      status=P.error(f"{method} {arch} probe", e))
                return None
            measured[i] = r["fits"]
            P.row(method=method, arch=arch, planner_gib=pl["gib"], planner_fits=pl["fits"], measured_fits=r["fits"],
                  measured_peak_gib=r["peak_gib"], planner_without_reserve_gib=pl["gib"] - RESERVE_GIB,
                  measured_over_planner=r["peak_gib"] / (pl["gib"] - RESERVE_GIB) if r["peak_gib"] else None,
                  status="ok" if r["fits"] else f"does not fit: {r['why']}")
            pk = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else NM
            say(f"scale: {method} {arch}: {'fits' if r['fits'] else 'does not fit (' + r['why'] + ')'}, peak {pk}, "
                f"planner {pl['gib']:.1f} GiB with the reserve ({time.time() - t0:.0f} s)")
            return r["fits"]

        i = search_largest(len(ladder), k, probe)
        largest = ladder[i] if i >= 0 else "none"
        if i + 1 < len(ladder) and i + 1 in tried and measured.get(i + 1) is None:
            P.note(f"{method}_largest_measured: {largest} fits; the next ({ladder[i + 1]}) was not probed (its model states are "
                   f"over the budget by the planner), so it is the largest measured only among those that can be built")
        P.set(**{f"{method}_largest_measured": largest})


# -------------------------------------------------------------------------------------------------- part 5: pytest
def part_pytest(a: dict, P: Part):
    sel = a["pytest"].split() if a["pytest"] else (PYTEST_SMOKE if a["smoke"] else PYTEST_GPU)
    P.d["device"] = "cuda" if not a["smoke"] else "cpu"
    P.set(selection=" ".join(sel))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--tb=short", "-rfE"] + sel
    say("pytest: " + " ".join(cmd[1:]))
    pat = re.compile(r"^(\S+::\S+)\s+(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")
    tail = []
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout:
            line = line.rstrip("\n"); say(line); tail = (tail + [line])[-40:]
            m = pat.match(line)
            if m: P.row(test=m[1], outcome=m[2])
    counts = {}
    for r in P.d["rows"]: counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    P.set(pytest_exit_code=p.returncode, **{k.lower(): v for k, v in counts.items()})
    if p.returncode != 0:
        bad = [r["test"] for r in P.d["rows"] if r["outcome"] in ("FAILED", "ERROR")]
        P.d["errors"].append(f"pytest exited {p.returncode}" + (f": {', '.join(bad)}" if bad else "") + " | " + " / ".join(tail[-5:]))
        P.save()


WORKERS = dict(table1=part_table1, encoder=part_encoder, hier=part_hier, scale=part_scale, pytest=part_pytest)


def worker(name: str, state: Path) -> int:
    a = json.loads(state.read_text())["args"]
    P = Part(state, a)
    import torch
    if a["smoke"]: torch.manual_seed(0)
    WORKERS[name](a, P)
    P.d["complete"] = True; P.save()
    return 0


# ------------------------------------------------------------------------------------------------- the orchestrator
def _select(parts: str) -> list:
    if parts in ("all", ""): return list(PARTS)
    by_num = {str(v[0]): k for k, v in PARTS.items()}
    out = []
    for p in parts.split(","):
        p = p.strip(); k = by_num.get(p, p)
        if k not in PARTS: raise SystemExit(f"--parts: unknown part {p!r}; parts: " + ", ".join(f"{v[0]} {k}" for k, v in PARTS.items()))
        out.append(k)
    return [k for k in PARTS if k in out]


def _gpu_name() -> str | None:
    "The GPU's name without creating a CUDA context in this process (nvidia-smi, else a child process)."
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if r.returncode == 0 and r.stdout.strip(): return r.stdout.strip().splitlines()[0].strip()
    except Exception: pass
    try:
        r = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.get_device_name(0))"], capture_output=True,
                           text=True, timeout=60)
        if r.returncode == 0: return r.stdout.strip()
    except Exception: pass
    return None


def _run_part(name: str, a: dict, cap: float, t_start: float, tmp: Path, log) -> dict:
    num, title = PARTS[name][:2]
    state = tmp / f"{name}.json"
    _write_json(state, dict(args=a))
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--state", str(state)]
    log(f"part {num} {name}: start (cap {cap:.0f} s) - {title}")
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)             # its own process group: a timeout ends it and its children
    tail = []

    def pump():
        for line in p.stdout:
            line = line.rstrip("\n")
            tail.append(line); del tail[:-60]
            log(f"  [{name}] {line}", when=time.time())
    th = threading.Thread(target=pump, daemon=True); th.start()
    timed_out = False
    try: p.wait(timeout=cap)
    except subprocess.TimeoutExpired:
        timed_out = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try: os.killpg(p.pid, sig)
            except ProcessLookupError: break
            try: p.wait(timeout=10); break
            except subprocess.TimeoutExpired: continue
    th.join(timeout=10)
    wall = time.time() - t0
    try: d = json.loads(state.read_text())
    except Exception: d = {}
    d.pop("args", None)
    d.setdefault("rows", []); d.setdefault("summary", {}); d.setdefault("not_measured", {}); d.setdefault("errors", []); d.setdefault("notes", [])
    if timed_out: status, reason = "timed out", f"over its cap of {cap:.0f} s: killed; what it measured until then is kept, the rest not measured"
    elif p.returncode != 0:
        err = next((l for l in reversed(tail) if re.match(r"^\w*(Error|Exception)\b", l)), tail[-1] if tail else "")
        status, reason = "failed", f"exit code {p.returncode}: {err[:300]}"
    elif d["errors"]: status, reason = "partial", "; ".join(d["errors"])[:800]
    elif not d.get("complete"): status, reason = "failed", "the part ended without finishing (no error recorded)"
    else: status, reason = "ok", ""
    for r in d["rows"]:                    # a measurement the part had begun and not finished
        if str(r.get("status", "")).startswith("pending: "): r["status"] = f"{r['status'][9:]}: {NM} (the part {status} before it)"
    log(f"part {num} {name}: {status} in {wall:.0f} s" + (f" ({reason})" if reason else ""))
    return dict(number=num, name=name, title=title, status=status, reason=reason or None, cap_s=cap, wall_s=round(wall, 1),
                log_tail=tail[-20:] if status != "ok" else [], **{k: v for k, v in d.items() if k != "complete"})


def _md(res: dict) -> str:
    L = [f"# smrnb GPU suite: {res['device']} ({res['date']})", ""]
    if res["smoke"]: L += ["**--smoke rehearsal on CPU at toy sizes: these numbers say nothing about a GPU.**", ""]
    L += [f"- device: {res['device']}" + (f" ({res['device_detail']})" if res.get("device_detail") else ""),
          f"- torch {res['torch']}, CUDA {res['cuda'] or 'none'}, Python {res['python']}, " +
          ", ".join(f"{k} {v or 'not installed'}" for k, v in res["packages"].items()),
          f"- command: `{res['command']}`",
          f"- started {res['started']}, wall {res['wall_s']:.0f} s (limit {res['max_wall_s']:.0f} s)",
          f"- git: {res.get('git') or 'unknown (no git metadata in this copy)'}", "",
          "| part | what | status | wall s | cap s | reason |", "|---|---|---|---|---|---|"]
    for p in res["parts"]:
        L.append(f"| {p['number']} {p['name']} | {_f(p['title'])} | {p['status']} | {_f(p['wall_s']) if p.get('wall_s') is not None else '-'} | {_f(p['cap_s']) if p.get('cap_s') is not None else '-'} | {_f(p['reason'] or '')} |")
    L.append("")
    for p in res["parts"]:
        L += [f"## {p['number']}. {p['name']}: {p['title']}", "", f"status: **{p['status']}**" + (f": {p['reason']}" if p["reason"] else ""), ""]
        if p["status"] == "not run":
            L += [f"{NM}: {p['reason']}", ""]; continue
        rows = p.get("rows") or []
        groups = {}
        for r in rows: groups.setdefault(r.get("bench"), []).append(r)      # one table per benchmark of the part
        for rs in groups.values():
            cols = []
            for r in rs:
                for k in r:
                    if k not in cols: cols.append(k)
            L += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            # a key the row lacks does not apply to it (its status says why): blank; a None value was not measured
            L += ["| " + " | ".join(_f(r[k]) if k in r else "" for k in cols) + " |" for r in rs]
            L.append("")
        if not rows and p["status"] != "ok": L += [f"{NM}: {p['reason']}", ""]
        if p.get("summary"): L += [f"- {k}: {_f(v)}" for k, v in p["summary"].items()] + [""]
        if p.get("not_measured"): L += [f"- {k}: {NM} ({v})" for k, v in p["not_measured"].items()] + [""]
        if p.get("notes"): L += [f"- note: {n}" for n in p["notes"]] + [""]
        if p.get("errors"): L += [f"- error: {e}" for e in p["errors"]] + [""]
        if p["status"] == "timed out": L += [f"- everything not in the table above: {NM} (the part timed out)", ""]
        if p.get("log_tail"): L += ["last output lines:", "", "```"] + p["log_tail"] + ["```", ""]
    L += ["`not measured` means exactly that; no number in this file is an estimate. Planner (smrnb.scale) and FLOP-counter "
          "numbers are predictions, labelled where they appear.", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--smoke", action="store_true", help="every part at toy sizes on CPU (device name 'cpu-smoke')")
    p.add_argument("--out", default=str(BENCH / "results"), help="folder for <device>-<date>.md/.json/.log (default benchmarks/results)")
    p.add_argument("--parts", default="all", help="comma-separated numbers or names: 1 table1, 2 encoder, 3 hier, 4 scale, 5 pytest")
    p.add_argument("--caps", default="", help="per-part caps in seconds, e.g. table1=300,scale=90 (defaults in the README)")
    p.add_argument("--max-wall", type=float, default=None, help=f"limit for the whole suite, s (default {MAX_WALL_S}; --smoke {SMOKE_MAX_WALL_S})")
    p.add_argument("--arch", default="vit_base", help="part 1/2/3's ViT"); p.add_argument("--batch", type=int, default=128, help="part 1/2's batch")
    p.add_argument("--steps", type=int, default=10, help="part 1's timed steps"); p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile-methods", default="smr,sd", help="part 1's methods that are also torch.compile'd")
    p.add_argument("--smoke-compile", action="store_true", help="--smoke: compile too (~1.5 min per method on a small CPU)")
    p.add_argument("--workers", type=int, default=min(12, max(1, (os.cpu_count() or 2) - 2)), help="part 1's loader workers")
    p.add_argument("--hier-batch", type=int, default=64, help="part 3's batch")
    p.add_argument("--scale-batch", type=int, default=256, help="part 4's per-GPU batch (at 128 both methods fit up to ViT-H by the planner)")
    p.add_argument("--budget-gib", type=float, default=None, help="part 4's memory budget (default: an '80 GB' GPU, 79 GiB)")
    p.add_argument("--pytest", default="", help="part 5's pytest arguments (default: the built-in selection)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS); p.add_argument("--state", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker: return worker(a.worker, Path(a.state))

    t_start = time.time()
    import torch
    cuda = torch.cuda.is_available()
    if not a.smoke and not cuda:
        print("gpu_suite: no CUDA device visible to torch. This suite measures one GPU; `--smoke` rehearses every part on CPU "
              "at toy sizes. Nothing was measured and no results file was written.", file=sys.stderr)
        return 2
    sel = _select(a.parts)
    caps = {k: float(v[3] if a.smoke else v[2]) for k, v in PARTS.items()}
    for kv in filter(None, a.caps.split(",")):
        k, v = kv.split("="); caps[_select(k)[0]] = float(v)
    max_wall = a.max_wall or (SMOKE_MAX_WALL_S if a.smoke else MAX_WALL_S)
    args = dict(vars(a), device="cpu" if a.smoke else "cuda")
    detail = None
    if a.smoke: device = "cpu-smoke"; detail = f"CPU {platform.machine()}, {os.cpu_count()} cores"
    else: device = _gpu_name() or "cuda"
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{_slug(device)}-{time.strftime('%Y-%m-%d')}"
    logf = open(f"{stem}.log", "w")

    def log(msg, when=None):
        line = f"[gpu_suite +{(when or time.time()) - t_start:5.0f}s] {msg}"
        print(line, flush=True); logf.write(line + "\n"); logf.flush()

    git = None
    try:
        h = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if h.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, timeout=20)
            git = h.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")
    except Exception: pass
    res = dict(suite="smrnb benchmarks/gpu_suite.py", smoke=a.smoke, device=device, device_detail=detail, torch=torch.__version__,
               cuda=torch.version.cuda, python=platform.python_version(), date=time.strftime("%Y-%m-%d"),
               started=time.strftime("%Y-%m-%d %H:%M:%S %z"), max_wall_s=max_wall, git=git,
               command="python benchmarks/gpu_suite.py " + " ".join(sys.argv[1:] if argv is None else argv),
               packages={k: _dist_version(k) for k in ("timm", "open_clip_torch", "torchvision", "pytest")},
               caps_s=caps, parts=[], wall_s=0.0)
    log(f"device {device} | torch {torch.__version__} | parts {', '.join(sel)} | limit {max_wall:.0f} s | results {stem}.md")

    def write():
        res["wall_s"] = time.time() - t_start
        _write_json(Path(f"{stem}.json"), res)
        Path(f"{stem}.md").write_text(_md(res))

    with tempfile.TemporaryDirectory(prefix="gpu_suite-") as tmp:
        for name in PARTS:
            num, title = PARTS[name][:2]
            left = max_wall - (time.time() - t_start)
            if name not in sel:
                r = dict(number=num, name=name, title=title, status="not run", reason=f"not selected (--parts {a.parts})")
            elif left < 5:
                r = dict(number=num, name=name, title=title, status="not run",
                         reason=f"the suite's {max_wall:.0f} s limit was reached before this part", cap_s=caps[name])
            else:
                r = _run_part(name, args, min(caps[name], left), t_start, Path(tmp), log)
            if r["status"] == "not run": log(f"part {num} {name}: not run ({r['reason']})")
            res["parts"].append(r)
            write()
    write()
    bad = [f"{r['number']} {r['name']}: {r['status']}" for r in res["parts"] if r["name"] in sel and r["status"] != "ok"]
    log(f"done in {time.time() - t_start:.0f} s: " + ("all selected parts ok" if not bad else "; ".join(bad)))
    log(f"wrote {stem}.md, {stem}.json, {stem}.log")
    logf.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
