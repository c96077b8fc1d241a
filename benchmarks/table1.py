"""Table 1 measured: pre-training speed and memory of SMR against MAE, SD (FD-CLIP) and MIM+SD (BEiT-like).

For each method, at one architecture and per-device batch, in this one run:
  (a) the bare step: synthetic images, smrnb's `Pretrainer` + `build_optimizer`, forward + backward + AdamW
      (+ the EMA teacher's update), timed over `--steps` steps after `--warmup`, eager and (with --compile) compiled;
  (b) the real `smrnb.train.train()` loop on a generated toy set at the same size (data loading, logging, NaN guard,
      checkpointing at the end), its images/s read from the run's metrics (the first log interval left out);
and prints images/s, ms/step, peak memory (CUDA: `torch.cuda.max_memory_allocated`; CPU: not measured), each
method's time per image and memory relative to SMR beside the paper's Table 1 ratios, the loop's share of the
bare step, and model FLOP utilisation (FLOPs of one training step counted by torch's FlopCounterMode, which
`smrnb.complexity` is checked against, times steps/s, over the device's dense bf16 peak: `--peak-tflops`, known for
H100/H200/A100; not computed on CPU).

    python benchmarks/table1.py --device cpu --arch test --batch 4 --steps 2          # CI smoke run (seconds)
    python benchmarks/table1.py --arch vit_base --batch 128 --steps 20 --compile      # the paper's setting, on a GPU

The teacher: `--target clip` builds a random-weight `ViT-B-16-quickgelu` CLIP (speed does not depend on the weights;
nothing is downloaded), `ema` the student's EMA copy (the default on CPU, where a CLIP-B teacher would dominate), or
`pixel`. MAE always reconstructs pixels with its own recipe (decoder 512 x 8, 16 heads, 75% masking).
"""
import argparse, json, math, platform, statistics, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch

PAPER = {"mae": (9.2, 16.8), "mim_sd": (15.6, 18.7), "smr": (13.7, 14.1)}   # Table 1: minutes/epoch, GB/GPU (BEiT for mim_sd)
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}                   # dense bf16, NVIDIA's data sheets


def method_config(method: str, arch: str, img: int, target: str) -> dict:
    from smrnb.experiments import scale_schedule
    from smrnb.backbones.vit import resolve_arch
    P = (img // resolve_arch(arch)["patch_size"]) ** 2
    cfg = dict(method=method, arch=arch, img_size=img, drop_path=0.1)
    if method == "smr": cfg["schedule"] = scale_schedule("25x4", P / 196)
    if method == "mae": cfg.update(decoder_width=512, decoder_depth=8, decoder_heads=16)
    else:
        cfg["target"] = target
        if target == "clip": cfg["target_kw"] = {"model_name": "ViT-B-16-quickgelu", "allow_random": True}
    return cfg


def sync(dev):
    if dev.type == "cuda": torch.cuda.synchronize(dev)


def step_flops(model, x, use_bf16) -> float:
    "FLOPs of one forward + backward of `model` on `x`, counted by FlopCounterMode (SDPA through its math form on CPU)."
    from torch.utils.flop_counter import FlopCounterMode
    from torch.nn.attention import sdpa_kernel, SDPBackend
    ctx = sdpa_kernel(SDPBackend.MATH) if x.device.type == "cpu" else torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16)
    with ctx, FlopCounterMode(display=False) as fc:
        model(x)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def bare_step(cfg: dict, batch: int, steps: int, warmup: int, dev, compiled: bool) -> dict:
    from smrnb.pretrain import Pretrainer
    from smrnb.train import TrainConfig, build_optimizer
    torch.manual_seed(0)
    tc = TrainConfig.from_dict(dict(cfg, batch_size=batch))
    model = Pretrainer(tc).to(dev).train()
    opt = build_optimizer(model, tc)
    use_bf16 = dev.type == "cuda"
    x = torch.randn(batch, 3, tc.img_size, tc.img_size, device=dev)
    flops = step_flops(model, x, use_bf16)
    fwd = torch.compile(model) if compiled else model

    def one():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = fwd(x)["loss"]
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if hasattr(model.target, "update"): model.target.update(model.encoder, 0.5)

    for _ in range(warmup): one()
    sync(dev)
    if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(steps):
        t = time.perf_counter(); one(); sync(dev); times.append(time.perf_counter() - t)
    ms = 1000 * statistics.median(times)
    mem = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return dict(ms_per_step=ms, images_per_s=batch / ms * 1000, peak_gb=mem, flops_per_step=flops)


def train_loop(cfg: dict, batch: int, steps: int, warmup: int, dev, compiled: bool, data: Path, workers: int) -> dict:
    from smrnb.train import train
    n = steps + warmup
    with tempfile.TemporaryDirectory() as d:
        # ckpt_every=n: only the final checkpoint (written after the last logged row), whatever the toy set's epoch length
        tc = dict(cfg, data_root=str(data), batch_size=batch, epochs=10**6, max_steps=n, warmup_epochs=0, log_every=max(warmup, 1),
                  ckpt_every=n, num_workers=workers, device=dev.type, compile=compiled, run_dir=f"{d}/run", seed=0)
        train(tc, progress=False)
        rows = [json.loads(l) for l in Path(d, "run/metrics.jsonl").read_text().splitlines()]
    timed = rows[1:] or rows
    peak = max(r["peak_mem_mb"] for r in rows) / 1024 if dev.type == "cuda" else None    # CUDA's allocator, the whole run (CPU: not measured)
    return dict(images_per_s=sum(r["images_per_s"] for r in timed) / len(timed), peak_gb=peak)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="vit_base"); p.add_argument("--img", type=int, default=None, help="default: the arch's")
    p.add_argument("--batch", type=int, default=128, help="images per device"); p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3); p.add_argument("--methods", default="smr,mae,sd,mim_sd")
    p.add_argument("--target", default=None, choices=("clip", "ema", "pixel"), help="teacher of smr/sd/mim_sd (default: clip on CUDA, ema on CPU)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd steps and loops")
    p.add_argument("--no-loop", action="store_true", help="skip the real train() loop"); p.add_argument("--workers", type=int, default=8)
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the device (default: by its name)")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    a = p.parse_args(argv)
    from smrnb.backbones.vit import resolve_arch
    from smrnb.data import make_toy_dataset
    dev = torch.device(a.device)
    img = a.img or resolve_arch(a.arch).get("img_size", 224)
    target = a.target or ("clip" if dev.type == "cuda" else "ema")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    peak = a.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None) if dev.type == "cuda" else None
    methods = a.methods.split(",")
    print(f"device: {name} | torch {torch.__version__} | {a.arch} at {img}px, batch {a.batch} per device, {a.steps} timed steps "
          f"after {a.warmup} | teacher: {target} | {'bf16 autocast' if dev.type == 'cuda' else 'fp32'}")
    res = {}
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "toy"
        if not a.no_loop: make_toy_dataset(data, n_train=max(4, math.ceil(a.batch * (a.steps + a.warmup) / 10) + 1), n_val=1, size=img)
        for m in methods:
            cfg = method_config(m, a.arch, img, target)
            for mode in ("eager", "compiled") if a.compile else ("eager",):
                r = bare_step(cfg, a.batch, a.steps, a.warmup, dev, mode == "compiled")
                if not a.no_loop:
                    r["loop_images_per_s"] = train_loop(cfg, a.batch, a.steps, a.warmup, dev, mode == "compiled", data, a.workers)["images_per_s"]
                r["mfu"] = r["flops_per_step"] * r["images_per_s"] / a.batch / (peak * 1e12) if peak else None
                res[(m, mode)] = r
    na = "n/m"
    print(f"\n{'method':8s} {'mode':9s} {'ms/step':>9s} {'images/s':>9s} {'peak GB':>8s} {'time/SMR':>9s} {'paper':>6s} "
          f"{'mem/SMR':>8s} {'paper':>6s} {'loop img/s':>10s} {'loop/bare':>9s} {'MFU':>6s}")
    for (m, mode), r in res.items():
        s = res.get(("smr", mode))
        t_rel = s["images_per_s"] / r["images_per_s"] if s else None
        m_rel = r["peak_gb"] / s["peak_gb"] if s and r["peak_gb"] and s["peak_gb"] else None
        pt = PAPER[m][0] / PAPER["smr"][0] if m in PAPER else None
        pm = PAPER[m][1] / PAPER["smr"][1] if m in PAPER else None
        f = lambda v, fmt: na if v is None else format(v, fmt)
        loop = r.get("loop_images_per_s")
        r.update(time_vs_smr=t_rel, mem_vs_smr=m_rel, paper_time_vs_smr=pt, paper_mem_vs_smr=pm, loop_vs_bare=loop / r["images_per_s"] if loop else None)
        print(f"{m:8s} {mode:9s} {r['ms_per_step']:9.1f} {r['images_per_s']:9.1f} {f(r['peak_gb'], '8.2f'):>8s} {f(t_rel, '9.3f'):>9s} "
              f"{f(pt, '6.2f'):>6s} {f(m_rel, '8.3f'):>8s} {f(pm, '6.2f'):>6s} {f(loop, '10.1f'):>10s} {f(r['loop_vs_bare'], '9.3f'):>9s} "
              f"{f(r['mfu'], '6.1%'):>6s}")
    print("\nn/m: not measured on this device (GPU memory, MFU) or not run (--no-loop), never estimated. "
          "time/SMR: time per image relative to SMR (the paper's minutes per epoch at a fixed batch); paper: Table 1 "
          "(mim_sd against BEiT v1); MFU: counted step FLOPs x steps/s over the device's dense bf16 peak"
          + (f" ({peak:g} TFLOP/s)" if peak else " (not computed: no known peak for this device)"))
    if a.out:
        Path(a.out).write_text(json.dumps(dict(device=name, arch=a.arch, img=img, batch=a.batch, steps=a.steps, target=target,
                                               results=[dict(method=m, mode=mo, **r) for (m, mo), r in res.items()]), indent=1))
    return res


if __name__ == "__main__":
    main()
