"""PCAE vs MAE training-step throughput, in one run (PCAE §4.1 "Throughput comparison": 739.7 vs 328.4 img/s, 2.25x, ViT-B, V100 32GB).

  MAE  step: student on the visible patches + smrnb Decoder (8 blocks) over all patch positions + norm-pix loss on the masked ones
  PCAE step: student on the visible patches + PCAETeacher (EMA, no grad) on the masked patches with ms dropping
             (147 -> 73 -> 36 -> 18 for ViT-B) + PCAEDecoder over [cls, visible, surviving positions] + cosine loss + EMA update
Both steps include forward, backward and an AdamW step; they are interleaved (mae, pcae, mae, ...) and medians reported.

    .venv/bin/python benchmarks/pcae.py [--arch vit_base] [--batch 64] [--steps 10] [--device cuda]
"""
import argparse, statistics, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from smrnb.encoders import create_encoder
from benchmarks.timing import timed
from smrnb.decoder import Decoder
from smrnb.pretrain import random_masking, recon_loss
from smrnb.targets import pixel_target
from smrnb.methods.pcae import PCAETeacher, PCAEDecoder, masked_complement, pcae_loss

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--arch", default="vit_base"); p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=10); p.add_argument("--warmup", type=int, default=1)
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--mask-ratio", type=float, default=0.75)
p.add_argument("--mae-decoder-depth", type=int, default=8)
p.add_argument("--pcae-decoder-depth", type=int, default=2, help="PCAE Appendix A: two decoder blocks")
p.add_argument("--decoder-width", type=int, default=0, help="0: min(512, encoder width)")
p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
a = p.parse_args()
dev = torch.device(a.device)
torch.manual_seed(0)

def build():
    enc = create_encoder(a.arch).to(dev)
    return enc

mae_enc, pcae_enc = build(), build()
P, D = mae_enc.patch_embed.num_patches, mae_enc.embed_dim
grid, ps, img = mae_enc.patch_embed.grid_size, mae_enc.patch_embed.patch_size[0], mae_enc.patch_embed.img_size
W = a.decoder_width or min(512, D)
heads = max(1, W // 64)
mae_dec = Decoder(grid, D, ps * ps * 3, width=W, depth=a.mae_decoder_depth, num_heads=heads).to(dev)
pcae_dec = PCAEDecoder(grid, D, D, width=W, depth=a.pcae_decoder_depth, num_heads=heads).to(dev)
depth = len(pcae_enc.blocks)
third = max(1, depth // 3)
teacher = PCAETeacher(pcae_enc, blocks=tuple(third * i for i in range(3))).to(dev)   # ViT-B: after blocks 0, 4, 8
opt_mae = torch.optim.AdamW(list(mae_enc.parameters()) + list(mae_dec.parameters()), lr=1e-4)
opt_pcae = torch.optim.AdamW(list(pcae_enc.parameters()) + list(pcae_dec.parameters()), lr=1e-4)
imgs = torch.randn(a.batch, 3, *img, device=dev)
amp = torch.autocast("cuda", torch.bfloat16, enabled=a.amp and dev.type == "cuda")
info = {}

def mae_step():
    keep, mask = random_masking(a.batch, P, a.mask_ratio, device=dev)
    with amp:
        out = mae_enc.forward_features(imgs, keep=keep)
        pred = mae_dec(out.x, out.owner)
    loss = recon_loss(pred, pixel_target(imgs, ps), "mse", mask=mask)
    opt_mae.zero_grad(set_to_none=True); loss.backward(); opt_mae.step()
    info["mae_tokens"] = P + 1

def pcae_step(i):
    keep, _ = random_masking(a.batch, P, a.mask_ratio, device=dev)
    masked = masked_complement(keep, P)
    with amp:
        tgt, pos = teacher(imgs, masked)
        out = pcae_enc.forward_features(imgs, keep=keep)
        pred = pcae_dec(out.x, keep, pos)
    loss = pcae_loss(pred, tgt)
    opt_pcae.zero_grad(set_to_none=True); loss.backward(); opt_pcae.step()
    teacher.update(pcae_enc, min(1.0, i / max(1, a.steps)))
    info["pcae_targets"], info["pcae_masked"] = pos.shape[1], masked.shape[1]

for i in range(a.warmup): mae_step(); pcae_step(i)
tm, tp = [], []
for i in range(a.steps):
    tm.append(timed(mae_step, dev)[0]); tp.append(timed(lambda: pcae_step(i), dev)[0])
mae_ips, pcae_ips = a.batch / statistics.median(tm), a.batch / statistics.median(tp)
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
print(f"device {name}, arch {a.arch}, batch {a.batch}, {a.steps} timed steps (medians), mask ratio {a.mask_ratio}")
print(f"MAE  step: decoder {a.mae_decoder_depth} blocks x {info['mae_tokens']} tokens, pixel loss: {mae_ips:.1f} img/s")
print(f"PCAE step: teacher {info['pcae_masked']} -> {info['pcae_targets']} tokens, decoder {a.pcae_decoder_depth} blocks x "
      f"{1 + P - info['pcae_masked'] + info['pcae_targets']} tokens, cosine loss: {pcae_ips:.1f} img/s")
print(f"ratio PCAE/MAE: {pcae_ips / mae_ips:.2f}x (paper: 739.7 / 328.4 = 2.25x, ViT-B, V100 32GB)")
