"""iTPN vs Fast-iTPN inference time and peak memory, in one run: token migration at 0/10/20/30/40 % with token gathering off/on (Fast-iTPN §4, Fig. 5: up to 70 % faster).

  baseline : the model with migration 0 and gathering off, i.e. the plain iTPN forward (HiViT loop + pyramid)
  variants : the same weights with `migration_ratio` r (tokens dropped from the backbone, replenished in the pyramid) and/or
             token gathering (window attention + one gathering token per window, cross-attention to all gathering tokens),
             and window attention alone (Figure 5's "window attention")
The launcher's `acceleration` evaluation (experiment itpn_speed) times the fine-tuned classifier the same way, settings alternated.
Times are medians of --steps forward passes (no grad, eval mode), after --warmup; ratios are against the baseline of this run.
Peak memory: CUDA torch.cuda.max_memory_allocated above the allocation before the forward; CPU the rise of the process's peak
resident set (VmHWM, reset through /proc/self/clear_refs after malloc_trim) over one forward, "n/a" where Linux does not allow it.

    .venv/bin/python benchmarks/itpn.py [--arch fast_itpn_base] [--img-size 224] [--batch 8] [--steps 5] [--window 7] [--device cuda]
"""
import argparse, ctypes, gc, statistics, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from smrnb.backbones.itpn import create_itpn
from smrnb.methods.itpn import accelerated
from benchmarks.timing import timed

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--arch", default="fast_itpn_base"); p.add_argument("--img-size", type=int, default=224)
p.add_argument("--batch", type=int, default=8); p.add_argument("--steps", type=int, default=5)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--ratios", default="0,0.1,0.2,0.3,0.4", help="migration ratios (fraction of the stage-3 tokens)")
p.add_argument("--window", type=int, default=7, help="gathering window, in patches (7: 2x2 windows at 224 px)")
p.add_argument("--migration-window", type=int, default=None,
               help="A/B matching within w x w windows (default: the gathering window, as Fast-iTPN §4.1); 0: over all tokens")
p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
a = p.parse_args()
dev = torch.device(a.device)
torch.manual_seed(0)
model = create_itpn(a.arch, img_size=a.img_size, gather_window=a.window, migration_window=a.migration_window).to(dev).eval()
imgs = torch.randn(a.batch, 3, a.img_size, a.img_size, device=dev)
amp = torch.autocast("cuda", torch.bfloat16, enabled=a.amp and dev.type == "cuda")
P = model.num_patches

def forward():
    with torch.no_grad(), amp: return model(imgs)

def _status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key): return int(line.split()[1]) * 1024

def peak_bytes():
    "Peak memory of one forward above what was allocated before it (None where it cannot be measured)."
    if dev.type == "cuda":
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(dev); base = torch.cuda.memory_allocated(dev)
        forward(); torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(dev) - base
    try:
        gc.collect(); ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f: f.write("5")
        base = _status("VmRSS:")
        forward()
        return _status("VmHWM:") - base
    except OSError: return None

def measure(ratio, gathering, window_attention=False):
    with accelerated(model, dict(migration_ratio=ratio, gathering=gathering, window_attention=window_attention)):
        for _ in range(a.warmup): forward()
        ts = []
        for _ in range(a.steps):
            t, out = timed(forward, dev); ts.append(t)
        moved = sum(gi[0].numel() for _, gi in out.migrated)
        return statistics.median(ts), peak_bytes(), P - moved

mib = lambda b: "n/a" if b is None else f"{b / 2**20:.1f} MiB"
def ratio(x, base): return "n/a" if x is None or not base else f"{x / base:.2f}x"

name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
print(f"device {name}, arch {a.arch}, img {a.img_size}, batch {a.batch}, {a.steps} timed forwards (medians), "
      f"{P} patches, gathering window {a.window}, migration window {model.migration_window or 'global'}")
bt, bm, _ = measure(0.0, False)
print(f"iTPN baseline: {bt * 1e3:.2f} ms, peak {mib(bm)}")
for g in (False, True):
    for r in [float(x) for x in a.ratios.split(",")]:
        t, m, left = measure(r, g)
        print(f"Fast-iTPN migration {r:.0%} gathering {'on ' if g else 'off'}: {t * 1e3:.2f} ms ({ratio(t, bt)} time), "
              f"peak {mib(m)} ({ratio(m, bm)} memory), {left}/{P} tokens at the backbone's end")
t, m, left = measure(0.0, False, window_attention=True)
print(f"Fast-iTPN window attention alone (no gathering tokens): {t * 1e3:.2f} ms ({ratio(t, bt)} time), "
      f"peak {mib(m)} ({ratio(m, bm)} memory), {left}/{P} tokens at the backbone's end")
