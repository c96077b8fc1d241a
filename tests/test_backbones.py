"""Slower checks of the HiViT and ConViT backbones (nbs/07_hivit.ipynb, nbs/08_convit.ipynb): the real 224 / 14x14 geometry
at narrow widths, MAE-style random masks, gradients, a few optimisation steps, bf16 autocast, state-dict round trips and the
base presets on the meta device. CPU only; a few seconds in all."""
import io
import pytest
import torch
from smrnb.backbones.hivit import create_hivit, gather_tokens, keep_from_mask, mask_from_keep
from smrnb.backbones.convit import create_convit, stage_mask

NARROW_HIVIT = dict(img_size=224, embed_dim=32, stem_depths=(1, 1), depth=2, num_heads=2)
NARROW_CONVIT = dict(img_size=224, embed_dims=(8, 16, 32), depths=(1, 1, 2), num_heads=2)


def random_keep(batch, n, k, seed=0):
    "MAE's per-sample random masking: `k` of `n` patches kept, in random order."
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(batch)])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_hivit_224_drop_before_stem_equals_drop_after():
    m = create_hivit("hivit_base", **NARROW_HIVIT, rel_pos_bias=True).eval()
    x = torch.randn(2, 3, 224, 224)
    keep = random_keep(2, 196, 49)
    with torch.no_grad():
        full = m.forward_stem(x)
        torch.testing.assert_close(m.forward_stem(x, keep), gather_tokens(full, keep), atol=1e-5, rtol=0)
        h = gather_tokens(full, keep)
        for blk, bias in zip(m.blocks, m.rel_pos_biases(keep)): h = blk(h, attn_mask=bias)
        torch.testing.assert_close(m.forward_features(x, keep), m.norm(h), atol=1e-5, rtol=0)
        # the dropped patches' pixels are never read
        pix = stage_mask(mask_from_keep(keep, 196).float(), (14, 14), 16).bool().expand_as(x)
        x2 = torch.where(pix, torch.randn_like(x) * 5, x)
        torch.testing.assert_close(m.forward_features(x2, keep), m.forward_features(x, keep), atol=1e-5, rtol=0)


def test_convit_224_masked_pixels_change_nothing_visible():
    m = create_convit("convit_base", **NARROW_CONVIT, fuse=True).eval()
    x = torch.randn(2, 3, 224, 224)
    mask = mask_from_keep(random_keep(2, 196, 49, seed=1), 196)        # 75% masked, as ConvMAE pre-trains
    pix = stage_mask(mask.float(), (14, 14), 16).bool().expand_as(x)
    x2 = torch.where(pix, torch.randn_like(x) * 5, x)
    with torch.no_grad():
        o1, o2 = m.forward_features(x, mask=mask), m.forward_features(x2, mask=mask)
        assert o1.shape == (2, 49, 32)
        torch.testing.assert_close(o1, o2, atol=1e-5, rtol=0)
        keep = keep_from_mask(mask)
        assert (m.forward_features(x, keep) - m.forward_features(x2, keep)).abs().max() > 1e-2   # no mask: it leaks
        f1, f2, f3 = m.forward_conv(x, mask)
        assert [tuple(f.shape[-2:]) for f in (f1, f2, f3)] == [(56, 56), (28, 28), (14, 14)]


@pytest.mark.parametrize("name", ["hivit", "convit"])
def test_gradients_reach_every_parameter_and_training_reduces_a_loss(name):
    if name == "hivit":
        m = create_hivit("hivit_test", rel_pos_bias=True, drop_path_rate=0.1)
        kw = dict(keep=random_keep(4, 16, 8))
    else:
        m = create_convit("convit_test", fuse=True, drop_path_rate=0.1)
        kw = dict(mask=mask_from_keep(random_keep(4, 16, 8), 16))
    x, target = torch.randn(4, 3, 64, 64), torch.randn(4, 8, 32)
    m.train()
    m.forward_features(x, **kw).pow(2).mean().backward()
    missing = [k for k, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == [], missing
    m.zero_grad()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = (m.forward_features(x, **kw) - target).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", ["hivit", "convit"])
def test_bf16_autocast_checkpointing_and_state_dict_round_trip(name):
    make = (lambda: create_hivit("hivit_test", rel_pos_bias=True)) if name == "hivit" else (lambda: create_convit("convit_test", fuse=True))
    m, x = make().eval(), torch.randn(2, 3, 64, 64)
    kw = dict(keep=random_keep(2, 16, 6)) if name == "hivit" else dict(mask=mask_from_keep(random_keep(2, 16, 6), 16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(m.forward_features(x, **kw).float()).all()
    buf = io.BytesIO(); torch.save(m.state_dict(), buf); buf.seek(0)
    m2 = make().eval(); m2.load_state_dict(torch.load(buf))
    m2.set_grad_checkpointing()
    out = m2.forward_features(x, **kw)                                  # grad enabled: the checkpointed path
    torch.testing.assert_close(out, m.forward_features(x, **kw), atol=1e-6, rtol=0)
    out.sum().backward()
    assert m2.pos_embed.grad is not None


def test_base_presets_take_keep_and_mask_on_meta():
    with torch.device("meta"):
        x, keep = torch.empty(2, 3, 224, 224), torch.zeros(2, 49, dtype=torch.long)
        h = create_hivit("hivit_base_3324", rel_pos_bias=True)
        assert h.forward_features(x, keep).shape == (2, 49, 512)
        c = create_convit("convit_base", fuse=True)
        assert c.forward_features(x, keep, torch.zeros(2, 196, dtype=torch.bool)).shape == (2, 49, 768)
        assert c(x).shape == (2, 768) and h(x).shape == (2, 512)
