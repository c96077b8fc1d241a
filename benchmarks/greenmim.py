"""Training-step benchmark of GreenMIM's visible-only Swin vs the dense Swin with mask tokens (issue 13, part 3).

One run, same weights, same random batch masks (a new one each step, drawn at the coarsest grid, §3.5):
  dense   : `SwinEncoder.forward_features(x, mask)`: all tokens, masked patches replaced by the mask token (SimMIM)
  greenmim: `SwinEncoder.forward_visible(x, mask)`: visible tokens only, group window attention, sparse merging
A step is forward + backward of a simple loss on the visible tokens' outputs (mean square). Prints the median
step time (greenmim's with and without making the group plans, which depend on the mask only and can be made
by the data loader), the bytes autograd saves for backward in one forward (saved-tensor hooks, parameters
excluded: the activation memory), on CUDA also the peak allocated memory of a step, and the ratios.
Steps are interleaved (dense, greenmim, dense, ...) so drift hits both alike. GreenMIM reports ~2.7x faster
and ~70% less memory for Swin-B on GPU.

    .venv/bin/python benchmarks/greenmim.py [--arch swin_tiny] [--img 224] [--batch 2] [--steps 3] [--mask_ratio 0.75] [--device cpu]
"""
import argparse, statistics, time
import torch
from smrnb.backbones.swin import SWIN_PRESETS, create_swin, token_mask
from smrnb.backbones.group_attention import batch_mask

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--arch", default="swin_tiny", choices=list(SWIN_PRESETS)); p.add_argument("--img", type=int, default=None)
p.add_argument("--batch", type=int, default=2); p.add_argument("--steps", type=int, default=3)
p.add_argument("--warmup", type=int, default=1); p.add_argument("--mask_ratio", type=float, default=0.75)
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
a = p.parse_args()
if a.threads: torch.set_num_threads(a.threads)
dev = torch.device(a.device)

torch.manual_seed(0)
model = create_swin(a.arch, **({} if a.img is None else {"img_size": a.img})).to(dev).train()
img, g = model.patch_embed.img_size[0], model.grids[-1]
x = torch.randn(a.batch, 3, img, img, device=dev)
gen = torch.Generator().manual_seed(0)

def sync():
    if dev.type == "cuda": torch.cuda.synchronize()

def loss_of(kind, mask, plans=None):
    if kind == "dense": return model.forward_features(x, mask)[:, token_mask(mask, g)].pow(2).mean()
    return model.forward_visible(x, mask, plans).pow(2).mean()

def saved_bytes(kind, mask):
    "Bytes of the tensors autograd saves in one forward (each storage once, parameters excluded)."
    params, seen = {q.untyped_storage().data_ptr() for q in model.parameters()}, {}
    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params: seen[st.data_ptr()] = st.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t): loss_of(kind, mask)
    return sum(seen.values())

def step(kind, mask):
    "(step seconds, plan seconds, peak CUDA bytes or None)."
    model.zero_grad(set_to_none=True)
    if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    sync(); t0 = time.perf_counter()
    plans = model.plans(mask) if kind == "greenmim" else None
    sync(); t1 = time.perf_counter()
    loss_of(kind, mask, plans).backward()
    sync(); t2 = time.perf_counter()
    peak = torch.cuda.max_memory_allocated() - base if dev.type == "cuda" else None
    return t2 - t0, t1 - t0, peak

kinds = ("dense", "greenmim")
res = {k: [] for k in kinds}
for i in range(a.warmup + a.steps):
    mask = batch_mask(g, a.mask_ratio, gen).to(dev)
    for k in kinds:
        r = step(k, mask)
        if i >= a.warmup: res[k].append(r)
mask = batch_mask(g, a.mask_ratio, gen).to(dev)
mem = {k: saved_bytes(k, mask) for k in kinds}
med = {k: statistics.median(r[0] for r in res[k]) for k in kinds}
plan = statistics.median(r[1] for r in res["greenmim"])
n_tok = {"dense": model.grids[0] ** 2, "greenmim": int(token_mask(mask, model.grids[0]).sum())}

print(f"greenmim benchmark: {a.arch} img {img} batch {a.batch} mask_ratio {a.mask_ratio} steps {a.steps} "
      f"device {dev.type} threads {torch.get_num_threads()} torch {torch.__version__}")
for k, name in (("dense", "dense (mask tokens)"), ("greenmim", "greenmim (visible)")):
    extra = f" (plans {plan * 1e3:.1f} ms of it)" if k == "greenmim" else ""
    peak = f"  peak allocated {statistics.median(r[2] for r in res[k]) / 2**20:.1f} MiB" if dev.type == "cuda" else ""
    print(f"{name:<20} stage-1 tokens {n_tok[k]:>5}  step {med[k] * 1e3:9.1f} ms{extra}  saved activations {mem[k] / 2**20:8.1f} MiB{peak}")
print(f"speedup dense/greenmim: {med['dense'] / med['greenmim']:.2f}x (without plans {med['dense'] / (med['greenmim'] - plan):.2f}x)  "
      f"activation memory: {100 * (mem['greenmim'] / mem['dense'] - 1):+.1f}%  (GreenMIM paper, Swin-B on GPU: ~2.7x, ~-70%)")
