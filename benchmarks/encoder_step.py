"""Training-step benchmark of the compressed encoder (issue: foundation, section 6).

Times one training step (forward + backward) of ViT-S/16 at 224 on this machine for
  full   : the smrnb encoder with no schedule (all 197 tokens in every block)
  smr    : the same weights with SMR_25x4 (tm, compression between attention and MLP)
  timm   : timm's own VisionTransformer with the same weights
  smr_dense (with --dense): SMR tracking the dense one-hot source (B, N, P) through the blocks,
           as ToMe does, instead of the owner index (B, P) the encoder carries
and prints, from this one run:
  * measured time ratio smr/full  vs the analytic FLOP ratio (smrnb.complexity)
  * the compressors' share of the smr step (torch.profiler: forward under record_function,
    backward = the autograd nodes of the compression ops)
  * full/timm time ratio (the encoder's overhead over timm when nothing is compressed)
Steps are interleaved (full, smr, timm, full, ...) so drift hits all three alike; medians reported.

    .venv/bin/python benchmarks/encoder_step.py [--arch vit_small] [--batch 8] [--steps 8] [--device cpu]
"""
import argparse, platform, statistics, time
import torch
import timm
import smrnb.compress as C
from smrnb.encoders import create_encoder
from smrnb.backbones.vit import timm_equivalent
from smrnb.complexity import encoder_cost

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--arch", default="vit_small"); p.add_argument("--schedule", default="25x4")
p.add_argument("--compressor", default="tm"); p.add_argument("--batch", type=int, default=8)
p.add_argument("--steps", type=int, default=8); p.add_argument("--warmup", type=int, default=2)
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
p.add_argument("--dense", action="store_true", help="also time SMR with the dense source tracking (the representation before the owner index)")
a = p.parse_args()
if a.threads: torch.set_num_threads(a.threads)
dev = torch.device(a.device)
amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)

torch.manual_seed(0)
full = create_encoder(a.arch).to(dev).train()
smr = create_encoder(a.arch, a.schedule, a.compressor).to(dev).train()
smr.load_state_dict(full.state_dict())
name, kw = timm_equivalent(a.arch)
ref = timm.create_model(name, pretrained=False, **kw).to(dev).train()
ref.load_state_dict(full.state_dict())
x = torch.randn(a.batch, 3, full.patch_embed.img_size[0], full.patch_embed.img_size[1], device=dev)

def sync():
    if dev.type == "cuda": torch.cuda.synchronize()

def step(model):
    model.zero_grad(set_to_none=True)
    with amp:
        out = model.forward_features(x)
        y = out if torch.is_tensor(out) else out.x
        loss = y.float().pow(2).mean()
    loss.backward()

models = {"full": full, "smr": smr, "timm": ref}
if a.dense:
    dense = create_encoder(a.arch, a.schedule, a.compressor).to(dev).train()
    dense.load_state_dict(full.state_dict()); dense.track = "source"
    models["smr_dense"] = dense
times = {k: [] for k in models}
for i in range(a.warmup + a.steps):
    for k, m in models.items():
        sync(); t0 = time.perf_counter(); step(m); sync()
        if i >= a.warmup: times[k].append(time.perf_counter() - t0)
med = {k: statistics.median(v) for k, v in times.items()}

# compressors' share of the smr step, from one profiled step
BWD = ("GatherBackward0", "ScatterReduceBackward0", "DivBackward0", "MulBackward0", "CatBackward0")
orig = C.compress
def traced(*args, **kwargs):
    with torch.profiler.record_function("smrnb.compress"): return orig(*args, **kwargs)
import smrnb.backbones.vit as M
M.compress = traced
acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
step(smr); sync()
with torch.profiler.profile(activities=acts) as prof:
    sync(); t0 = time.perf_counter(); step(smr); sync(); prof_step = time.perf_counter() - t0
M.compress = orig
ev = prof.key_averages()
attr = "device_time_total" if dev.type == "cuda" else "cpu_time_total"
fwd = sum(getattr(e, attr) for e in ev if e.key == "smrnb.compress")
bwd = sum(getattr(e, attr) for e in ev if any(e.key.endswith(b) for b in BWD))
total = sum(getattr(e, "self_" + attr) for e in ev)
share = (fwd + bwd) / total

flop_ratio = encoder_cost(a.arch, a.schedule, a.compressor).macs / encoder_cost(a.arch).macs
time_ratio = med["smr"] / med["full"]
print(f"device: {torch.cuda.get_device_name() if dev.type == 'cuda' else platform.processor() or platform.machine()}, "
      f"torch {torch.__version__}, timm {timm.__version__}, threads {torch.get_num_threads()}, "
      f"{'bf16 autocast' if dev.type == 'cuda' else 'fp32'}")
print(f"{a.arch} at {x.shape[-1]}px, batch {a.batch}, {a.steps} timed steps (median) after {a.warmup} warm-up, forward + backward")
for k in models: print(f"  {k:9s} step: {med[k] * 1000:8.1f} ms   ({a.batch / med[k]:.1f} images/s)")
print(f"SMR_{a.schedule} ({a.compressor}) / full-token: measured time ratio {time_ratio:.3f}, analytic FLOP ratio {flop_ratio:.3f} "
      f"-> measured/analytic {time_ratio / flop_ratio:.3f} (goal within 10%: {'yes' if abs(time_ratio / flop_ratio - 1) <= 0.10 else 'NO'})")
print(f"compressors' share of the SMR step (profiled): {share * 100:.1f}% (forward {fwd / total * 100:.1f}%, backward {bwd / total * 100:.1f}%) "
      f"(goal under 5%: {'yes' if share < 0.05 else 'NO'})")
if a.dense: print(f"owner index / dense source tracking (SMR step time): {med['smr'] / med['smr_dense']:.3f}")
r = med["full"] / med["timm"]
print(f"no schedule / timm VisionTransformer: {r:.3f} (goal within 3%: {'yes' if abs(r - 1) <= 0.03 else 'NO'})")
