"""The pre-training data loader alone, in images/s: JPEG decode, RandomResizedCrop (bicubic) and flip to uint8 tensors, batched.

Pipelines, each at every `--workers` count (DataLoader worker processes):
  pil      the training pipeline as it is: `smrnb.train.build_dataset` (ManifestDataset + `pretrain_transform(uint8=True)`:
           PIL decode, torchvision's RandomResizedCrop on the PIL image) through `SeededDataset` and the loop's batch sampler
           (`RunBatches`), as `smrnb.train` builds its DataLoader.
  tv-cpu   the same sampler and seeding; the worker reads the file and decodes it with `torchvision.io.decode_jpeg` on the
           CPU, then crops, resizes (bicubic, antialias) and flips the uint8 tensor (torchvision.transforms.v2).
  tv-cuda  the workers only read the files' bytes; the main process decodes each batch on the GPU
           (`decode_jpeg(list, device='cuda')`, nvjpeg) and crops, resizes and flips there. CUDA only: "not measured" otherwise.
Images/s counts the batches after the first (worker start-up left out), to the last one on the host (tv-cuda: on the GPU).
Also printed: how far tv-cpu is from pil: the decoded pixels, and the crops for the same crop boxes (uint8 levels).

The images: `--n` JPEGs (quality 90) of random sizes in [256, 500] px, smooth random colour fields plus noise, written
with PIL into a temporary folder with a manifest, so the pipelines read real files.

    .venv/bin/python benchmarks/loader.py                       # 256 images, 224 px crops, batch 32, workers 0,1,2
    .venv/bin/python benchmarks/loader.py --n 2048 --workers 0,4,8,16 --batch 128
"""
import argparse, math, platform, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
import torch

NM = "not measured"


def make_jpegs(root: Path, n: int, seed: int = 0, lo: int = 256, hi: int = 500) -> list:
    "Write `n` JPEGs of random sizes in [lo, hi] px and a manifest (all 'train'); returns their (w, h)."
    import pandas as pd
    from PIL import Image
    from smrnb.data import write_manifest
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    sizes, rows = [], []
    for i in range(n):
        w, h = (int(v) for v in rng.integers(lo, hi + 1, 2))
        field = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        px = np.asarray(field, dtype=np.int16) + rng.normal(0, 12, (h, w, 3)).astype(np.int16)
        Image.fromarray(px.clip(0, 255).astype(np.uint8)).save(root / "img" / f"{i:05d}.jpg", quality=90)
        sizes.append((w, h)); rows.append(dict(path=f"img/{i:05d}.jpg", label=0, split="train"))
    write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    return sizes


class TVJpeg(torch.utils.data.Dataset):
    "JPEG files decoded by torchvision (CPU) and cropped / flipped as uint8 tensors; `raw=True`: the files' bytes only (decoded later on the GPU)."
    def __init__(self, root, paths, img_size: int, scale=(0.2, 1.0), raw: bool = False):
        from torchvision.transforms import v2
        self.root, self.paths, self.raw = Path(root), list(paths), raw
        self.tf = v2.Compose([v2.RandomResizedCrop(img_size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                              v2.RandomHorizontalFlip()])
    def __len__(self): return len(self.paths)
    def __getitem__(self, i):
        from torchvision.io import ImageReadMode, decode_jpeg, read_file
        data = read_file(str(self.root / self.paths[i]))
        if self.raw: return data, 0
        return self.tf(decode_jpeg(data, mode=ImageReadMode.RGB)), 0


def _raw_collate(batch): return [b[0] for b in batch]


def gpu_batch(datas, tf, dev) -> torch.Tensor:
    "Decode a list of encoded JPEGs on `dev` (nvjpeg), crop / resize / flip each, stack."
    from torchvision.io import ImageReadMode, decode_jpeg
    imgs = decode_jpeg(datas, mode=ImageReadMode.RGB, device=dev)
    return torch.stack([tf(im) for im in imgs])


def run(loader, n_batches: int, finish=None, sync=None) -> float:
    "Images/s over the batches after the first."
    it, t0, images = iter(loader), None, 0
    for b in range(n_batches):
        x = next(it)
        if finish is not None: x = finish(x)
        if sync is not None: sync()
        if b == 0: t0 = time.perf_counter()
        else: images += x[0].shape[0] if isinstance(x, (list, tuple)) else x.shape[0]
    return images / max(time.perf_counter() - t0, 1e-9)


def fidelity(root: Path, paths, img_size: int, k: int = 8) -> dict:
    "How far tv-cpu is from pil on the first `k` images: the decoded pixels, and the crops with the same boxes (no flip), in uint8 levels."
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms import functional as F, v2
    dec, crop, worst = [], [], 0.0
    for i, p in enumerate(paths[:k]):
        with Image.open(root / p) as im: pil = im.convert("RGB")
        t = decode_jpeg(read_file(str(root / p)), mode=ImageReadMode.RGB)
        dec.append((F.pil_to_tensor(pil).float() - t.float()).abs().mean().item())
        torch.manual_seed(i)
        box = v2.RandomResizedCrop.get_params(t, scale=[0.2, 1.0], ratio=[3 / 4, 4 / 3])
        a = F.pil_to_tensor(F.resized_crop(pil, *box, [img_size, img_size], F.InterpolationMode.BICUBIC))
        b = v2.functional.resized_crop(t, *box, [img_size, img_size], v2.InterpolationMode.BICUBIC, antialias=True)
        diff = (a.float() - b.float()).abs()
        crop.append(diff.mean().item()); worst = max(worst, diff.max().item())
    return dict(decode=sum(dec) / len(dec), crop=sum(crop) / len(crop), crop_max=worst)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--n", type=int, default=256, help="JPEG files"); p.add_argument("--img", type=int, default=224)
    p.add_argument("--batch", type=int, default=32); p.add_argument("--workers", default="0,1,2")
    p.add_argument("--pipelines", default="pil,tv-cpu,tv-cuda"); p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the main process (the trainer's compute owns the cores; workers use 1)")
    a = p.parse_args(argv)
    import PIL, torchvision
    from PIL import features
    from torch.utils.data import DataLoader
    from smrnb.train import RunBatches, SeededDataset, TrainConfig, build_dataset
    torch.set_num_threads(a.threads)
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda") if cuda else None
    workers = [int(w) for w in a.workers.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        t = time.perf_counter(); sizes = make_jpegs(root, a.n); t_gen = time.perf_counter() - t
        mb = sum(f.stat().st_size for f in (root / "img").iterdir()) / 2**20
        cfg = TrainConfig(data_root=str(root), img_size=a.img, batch_size=a.batch)
        ds_pil = build_dataset(cfg, uint8=True)
        paths = ds_pil.paths
        steps = len(ds_pil) // a.batch
        if steps < 2: raise SystemExit(f"--n {a.n} gives {steps} batch of {a.batch}: at least 2 are needed")
        name = torch.cuda.get_device_name(dev) if cuda else "no CUDA"
        print(f"CPU: {platform.machine()}, {torch.get_num_threads()} torch thread(s) in the main process | GPU: {name} | torch {torch.__version__} | "
              f"torchvision {torchvision.__version__} | Pillow {PIL.__version__} (libjpeg-turbo: {features.check_feature('libjpeg_turbo')})")
        print(f"images: {a.n} JPEG (q90, {mb:.1f} MiB), {min(s[0] for s in sizes)}-{max(s[0] for s in sizes)} px wide, mean "
              f"{np.mean([s[0] for s in sizes]):.0f}x{np.mean([s[1] for s in sizes]):.0f} (written in {t_gen:.1f} s); {a.img} px crops, "
              f"batch {a.batch}, {steps} batches, images/s over batches 2-{steps}")
        print(f"\n{'pipeline':9s} {'workers':>7s} {'images/s':>12s}")
        for pipe in a.pipelines.split(","):
            for w in workers:
                sampler = RunBatches(len(paths), a.batch, 0, 0, steps, steps)
                kw = dict(batch_sampler=sampler, num_workers=w, generator=torch.Generator())
                if pipe == "pil":
                    r = run(DataLoader(SeededDataset(ds_pil, 0), **kw), steps)
                elif pipe == "tv-cpu":
                    r = run(DataLoader(SeededDataset(TVJpeg(root, paths, a.img), 0), **kw), steps)
                elif pipe == "tv-cuda":
                    if not cuda: r = NM
                    else:
                        from torchvision.transforms import v2
                        tf = v2.Compose([v2.RandomResizedCrop(a.img, scale=(0.2, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                                         v2.RandomHorizontalFlip()])
                        r = run(DataLoader(SeededDataset(TVJpeg(root, paths, a.img, raw=True), 0), collate_fn=_raw_collate, **kw), steps,
                                finish=lambda datas: gpu_batch(datas, tf, dev), sync=lambda: torch.cuda.synchronize(dev))
                else: raise SystemExit(f"unknown pipeline {pipe!r}; valid: pil, tv-cpu, tv-cuda")
                results[(pipe, w)] = r
                print(f"{pipe:9s} {w:7d} {r if isinstance(r, str) else format(r, '12.1f'):>12s}" + (" (no CUDA)" if r == NM else ""), flush=True)
        base = {w: results.get(("pil", w)) for w in workers}
        for pipe in ("tv-cpu", "tv-cuda"):
            rel = [f"{w} workers {results[(pipe, w)] / base[w]:.2f}x" for w in workers
                   if isinstance(results.get((pipe, w)), float) and isinstance(base[w], float)]
            if rel: print(f"{pipe} / pil: " + ", ".join(rel))
        f = fidelity(root, paths, a.img)
        print(f"tv-cpu vs pil on 8 images (uint8 levels): decoded pixels mean |difference| {f['decode']:.4f}; crops with the same "
              f"boxes mean {f['crop']:.4f}, max {f['crop_max']:.0f}")
    return results


if __name__ == "__main__":
    main()
