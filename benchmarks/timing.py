"""Shared timing helper for the benchmark scripts: wall-clock seconds of one call, CUDA-synchronised on both sides."""
import time
import torch

def sync(dev):
    "Wait for queued CUDA work on `dev` (a no-op on CPU)."
    if torch.device(dev).type == "cuda": torch.cuda.synchronize(dev)

def timed(f, dev):
    "`(seconds, f())`: one call of `f`, with the device synchronised before and after."
    sync(dev)
    t = time.perf_counter(); out = f()
    sync(dev)
    return time.perf_counter() - t, out
