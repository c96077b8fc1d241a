"""Largest per-GPU pre-training batch, SMR vs SD, at ViT-L and ViT-H on an 80 GB GPU, and what the 10B model needs.

Analytic (always): `smrnb.scale.largest_batch`, the per-GPU memory of a training step of `smrnb.train` from the analytic
cost model (`nbs/34_scale.ipynb`: parameters counted exactly, activations checked against what autograd keeps), bf16,
for one GPU without sharding and for `--world` GPUs with DDP or FSDP, each with and without activation checkpointing.

Measured (CUDA only; `--no-measure` skips it): the largest batch one GPU trains, by a doubling then binary search over
the batch; a probe is two training steps as `smrnb.train` runs them (forward under bf16 autocast, zero_grad, backward,
fused AdamW, the EMA update if any) with a random-weight CLIP teacher (nothing downloaded; speed and memory do not depend
on the weights), and fails on `torch.OutOfMemoryError` or when the peak allocated memory plus the planner's reserve is
over the budget (so a 141 GB H200 measures the 80 GB budget too). Sharded rows need `--world` GPUs: not measured here.
Without CUDA every measured column reads "not measured".

Then `smrnb.scale.plan_10b`: GPUs and memory per GPU for the paper's 10B ViT (Appendix F) with SMR and SD.

    .venv/bin/python benchmarks/scale.py                        # ViT-L and ViT-H, 80 GB, 8 GPUs; measured on CUDA
    .venv/bin/python benchmarks/scale.py --archs vit_large --no-measure
"""
import argparse, gc, json, platform, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch

NM = "not measured"


def largest_true(fits, cap: int) -> int:
    "The largest b in [1, cap] with fits(b) (0 if not even 1), for a `fits` true up to some batch and false after: doubling, then bisection."
    if cap < 1 or not fits(1): return 0
    lo = 1                                   # fits(lo) is true
    hi = 2
    while hi <= cap and fits(hi): lo, hi = hi, hi * 2
    hi = min(hi, cap + 1)                    # fits(hi) is false, or hi is past the cap
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid): lo = mid
        else: hi = mid
    return lo


def measure_largest_batch(cfg: dict, grad_checkpointing: bool, budget_bytes: float, reserve_bytes: float, dev, cap: int) -> int:
    "The largest batch of `cfg` one CUDA device trains within `budget_bytes` (see the module's docstring)."
    from smrnb.pretrain import Pretrainer
    from smrnb.train import TrainConfig, build_optimizer
    cfg = dict(cfg)
    if cfg.get("target_kw"): cfg["target_kw"] = {"model_name": cfg["target_kw"]["model_name"], "allow_random": True}
    tc = TrainConfig.from_dict(cfg)
    torch.manual_seed(0)
    model = Pretrainer(tc).to(dev).train()
    if grad_checkpointing: model.encoder.set_grad_checkpointing(True)
    opt = build_optimizer(model, tc)

    def fits(b: int) -> bool:
        try:
            x = torch.randn(b, 3, tc.img_size, tc.img_size, device=dev)
            torch.cuda.reset_peak_memory_stats(dev)
            for _ in range(2):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(x)["loss"]
                opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
                if hasattr(model.target, "update"): model.target.update(model.encoder, 0.5)
            torch.cuda.synchronize(dev)
            ok = torch.cuda.max_memory_allocated(dev) + reserve_bytes <= budget_bytes
        except torch.OutOfMemoryError:
            ok = False
        x = loss = None
        gc.collect(); torch.cuda.empty_cache()
        return ok

    try: return largest_true(fits, cap)
    finally:
        del model, opt; gc.collect(); torch.cuda.empty_cache()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--archs", default="vit_large,vit_huge"); p.add_argument("--methods", default="smr,sd")
    p.add_argument("--budget-gib", type=float, default=None, help="memory per GPU (default: an '80 GB' GPU as torch sees it)")
    p.add_argument("--world", type=int, default=8, help="GPUs of the sharded / DDP rows")
    p.add_argument("--global-batch", type=int, default=2048, help="the 10B plan's global batch (Table 5's recipe)")
    p.add_argument("--no-measure", action="store_true", help="analytic only, even on CUDA")
    p.add_argument("--cap", type=int, default=8192, help="largest batch a measurement tries")
    p.add_argument("--no-10b", action="store_true"); p.add_argument("--out", default=None, help="also write the results as JSON here")
    a = p.parse_args(argv)
    import pandas as pd
    from smrnb.scale import GPU_80GB_GIB, RESERVE_GIB, largest_batch, memory_plan, plan_config, plan_10b
    budget = a.budget_gib or GPU_80GB_GIB
    cuda = torch.cuda.is_available() and not a.no_measure
    dev = torch.device("cuda") if cuda else None
    name = torch.cuda.get_device_name(dev) if cuda else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads): analytic only"
    W = a.world
    print(f"device: {name} | torch {torch.__version__}")
    print(f"budget {budget:g} GiB per GPU ({RESERVE_GIB:g} GiB of it reserved: CUDA context, NCCL, fragmentation), bf16 autocast, AdamW; "
          f"per-GPU batch; 'ckpt': activation checkpointing of the encoder's blocks")
    cols = [("1 GPU", dict(world=1)), ("1 GPU ckpt", dict(world=1, grad_checkpointing=True)),
            (f"DDP x{W}", dict(world=W)), (f"DDP x{W} ckpt", dict(world=W, grad_checkpointing=True)),
            (f"FSDP x{W}", dict(world=W, fsdp=True)), (f"FSDP x{W} ckpt", dict(world=W, fsdp=True, grad_checkpointing=True))]
    rows = []
    for arch in a.archs.split(","):
        for method in a.methods.split(","):
            cfg = plan_config(method, arch)
            r = dict(arch=arch, method=method, teacher=cfg.get("target_kw", {}).get("model_name", "pixel"))
            for col, kw in cols: r[col] = largest_batch(method, arch, budget, **kw)
            for col, ckpt in (("measured 1 GPU", False), ("measured 1 GPU ckpt", True)):
                r[col] = (measure_largest_batch(cfg, ckpt, budget * 2**30, RESERVE_GIB * 2**30, dev, a.cap) if cuda else NM)
            rows.append(r)
    df = pd.DataFrame(rows)
    print("\nLargest per-GPU batch (analytic unless 'measured')")
    print(df.to_string(index=False))
    methods = a.methods.split(",")
    if {"smr", "sd"} <= set(methods):
        print("\nSMR / SD largest-batch ratio (analytic)")
        for arch in a.archs.split(","):
            s, d = (df[(df.arch == arch) & (df.method == m)].iloc[0] for m in ("smr", "sd"))
            print(f"  {arch:10s} " + "  ".join(f"{col}: {s[col] / d[col]:.2f}" if d[col] else f"{col}: -" for col, _ in cols))
    arch0 = a.archs.split(",")[0]
    print(f"\nWhere the memory goes: {arch0}, 128 images per GPU, DDP x{W} (GiB)")
    parts = {m: memory_plan(m, arch0, 128, W).table().set_index("part")["gib"] for m in methods}
    print(pd.DataFrame(parts).fillna(0).round(2).to_string())
    res = dict(device=name, budget_gib=budget, world=W, rows=rows)
    if not a.no_10b:
        t = plan_10b(a.global_batch, budget)
        print(f"\n10B ViT (vit_10b: 50 blocks x 4096, {t.attrs['trained_params'] / 1e9:.2f}B trained parameters with SMR's decoder), "
              f"CLIP-L teacher, global batch {a.global_batch}, {budget:g} GiB per GPU")
        print(t.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        print(f"full checkpoint (fp32 weights + AdamW moments): {t.attrs['checkpoint_gb']:.0f} GB; rank 0 gathers it in CPU memory "
              f"to save, every process reads it to resume")
        none8 = t[t.sharding == "none (DDP)"]
        print(f"Appendix F: 8 x 80 GB GPUs. Without partitioning the model states alone are {none8.states_gib_at_8.min():.0f}+ GiB "
              f"per GPU: no method fits ('without model partitioning' cannot hold; the appendix says DeepSpeed). Sharded over 8: "
              + ", ".join(f"{r.method} {r.batch_per_gpu_at_8} images/GPU{' (ckpt)' if r.grad_ckpt else ''}"
                          for r in t[t.sharding == "FSDP"].itertuples()))
        res["plan_10b"] = t.to_dict("records")
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
