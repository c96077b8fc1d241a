"""Slower checks of `smrnb.backbones.swin` (the notebook `nbs/09_swin.ipynb` holds the quick ones).

- On Swin-B's geometry at 224 px (grids 56/28/14/7, window 7, so the 8x8-token mask cells do not line up with the
  windows; the last stage has one unshifted window) at a tiny width, `forward_visible` equals the dense timm stages
  with every window's attention restricted to its visible tokens, for several masks and ratios, and equals
  `forward_features` when everything is visible.
- `benchmarks/greenmim.py` runs at a tiny size and prints its lines in the expected format (no assertion on speed).
"""
import re, subprocess, sys
from pathlib import Path

import pytest
import torch
from timm.models.swin_transformer import window_partition, window_reverse

from smrnb.backbones.swin import create_swin, token_mask
from smrnb.backbones.group_attention import batch_mask

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _masked_block(blk, x, vis):
    "The dense timm block, each window's attention restricted to its visible keys (a token always sees itself)."
    B, H, W, C = x.shape
    (w, _), (s, _) = blk.window_size, blk.shift_size
    h, v = blk.norm1(x), vis
    if s: h, v = torch.roll(h, (-s, -s), (1, 2)), torch.roll(v, (-s, -s), (0, 1))
    win, vw = window_partition(h, (w, w)).view(-1, w * w, C), window_partition(v[None, :, :, None], (w, w)).view(-1, w * w)
    mask = torch.zeros(len(vw), w * w, w * w) if blk.attn_mask is None else blk.attn_mask.clone()
    mask = mask.masked_fill(~(vw[:, None, :] | torch.eye(w * w, dtype=torch.bool)), float("-inf"))
    o = window_reverse(blk.attn(win, mask=mask).view(-1, w, w, C), (w, w), H, W)
    x = x + (torch.roll(o, (s, s), (1, 2)) if s else o)
    return x + blk.mlp(blk.norm2(x))


def _masked_reference(model, x, mask):
    t = model.patch_embed(x)
    for layer, g in zip(model.layers, model.grids):
        t, vis = layer.downsample(t), token_mask(mask, g)
        for blk in layer.blocks: t = _masked_block(blk, t, vis)
    return model.norm(t)[:, token_mask(mask, model.grids[-1])]


@torch.no_grad()
def test_visible_equals_masked_dense_on_swin_b_geometry():
    torch.manual_seed(0)
    m = create_swin("swin_base", embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4)).eval()
    for blk in (b for l in m.layers for b in l.blocks): torch.nn.init.normal_(blk.attn.relative_position_bias_table)
    assert [(b.window_size[0], b.shift_size[0]) for b in m.layers[3].blocks] == [(7, 0), (7, 0)]
    x = torch.randn(2, 3, 224, 224)
    full = torch.ones(7, 7, dtype=torch.bool)
    torch.testing.assert_close(m.forward_visible(x, full), m.forward_features(x).flatten(1, 2), atol=1e-4, rtol=0)
    for seed, ratio in ((0, 0.75), (1, 0.75), (2, 0.9), (3, 0.5)):
        mask = batch_mask(7, ratio, torch.Generator().manual_seed(seed))
        got = m.forward_visible(x, mask)
        assert got.shape == (2, int(mask.sum()), 64)
        torch.testing.assert_close(got, _masked_reference(m, x, mask), atol=1e-4, rtol=0)


def test_benchmark_cpu_smoke():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/greenmim.py"), "--device", "cpu", "--arch", "swin_test",
                        "--batch", "2", "--steps", "1", "--warmup", "0", "--threads", "1"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("greenmim benchmark: swin_test img 64 batch 2 mask_ratio 0.75")
    num = r"[\d.]+"
    assert re.fullmatch(rf"dense \(mask tokens\)\s+stage-1 tokens\s+256\s+step\s+{num} ms\s+saved activations\s+{num} MiB", lines[1]), lines[1]
    assert re.fullmatch(rf"greenmim \(visible\)\s+stage-1 tokens\s+64\s+step\s+{num} ms \(plans {num} ms of it\)\s+saved activations\s+{num} MiB", lines[2]), lines[2]
    assert re.match(rf"speedup dense/greenmim: {num}x \(without plans -?{num}x\)\s+activation memory: [+-]{num}%", lines[3]), lines[3]
