"""Independent checks of `smrnb.analysis` (the notebook `nbs/03_analysis.ipynb` holds the known-value tests).

- the public signatures that are checked from outside the repository;
- entropy and distance against plain loops over images, heads, queries and keys (CLS dropped and renormalised);
- `linear_cka` against Song et al.'s U-statistic written out as a mean over all ordered 4-tuples of distinct samples;
- `capture_attention` against the probabilities the models compute themselves when `fused_attn` is off
  (read from the input of `attn_drop`, which the non-fused paths call on the softmax);
- `token_diversity` against numpy's nuclear norm.
"""
import inspect
import itertools
import math

import numpy as np
import pytest
import timm
import torch

from smrnb.analysis import (MinibatchCKA, attention_distance, attention_entropy, capture_attention, capture_tokens,
                            linear_cka, token_diversity)
from smrnb.encoders import create_encoder


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_signatures():
    p = lambda f: list(inspect.signature(f).parameters)
    assert p(attention_entropy) == ["attn", "cls"] and inspect.signature(attention_entropy).parameters["cls"].default is True
    assert p(attention_distance) == ["attn", "grid", "patch_size", "cls"]
    assert p(linear_cka) == ["X", "Y"] and p(token_diversity) == ["tokens"]
    assert p(capture_attention) == ["model", "x", "layers"] and p(capture_tokens)[:2] == ["model", "x"]
    assert hasattr(MinibatchCKA, "update") and hasattr(MinibatchCKA, "compute")


def test_entropy_distance_loops():
    g = torch.Generator().manual_seed(0)
    h, w, ps = 2, 3, 16
    a = torch.randn(2, 3, 1 + h * w, 1 + h * w, generator=g, dtype=torch.float64).softmax(-1)
    ent, dist = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for b, hd, i in itertools.product(range(2), range(3), range(h * w)):
        row = a[b, hd, 1 + i, 1:] / a[b, hd, 1 + i, 1:].sum()
        ent[hd] += -sum(float(p) * math.log(float(p)) for p in row) / (2 * h * w)
        for j in range(h * w):
            d = ps * math.hypot(i // w - j // w, i % w - j % w)
            dist[hd] += float(row[j]) * d / (2 * h * w)
    torch.testing.assert_close(attention_entropy(a), ent)
    torch.testing.assert_close(attention_distance(a, (h, w), ps), dist)


def _hsic_u(K, L):
    "Song et al. (2012): mean over ordered distinct (i, j, q, r) of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq."
    n, s, c = len(K), 0., 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        s += K[i][j] * L[i][j] + K[i][j] * L[q][r] - 2 * K[i][j] * L[i][q]; c += 1
    return s / c


@pytest.mark.parametrize("n", [4, 6, 7])
def test_cka_u_statistic(n):
    g = torch.Generator().manual_seed(n)
    X, Y = torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g, dtype=torch.float64)
    Y = Y + X[:, :2]
    K, L = (X @ X.T).tolist(), (Y @ Y.T).tolist()
    ref = _hsic_u(K, L) / math.sqrt(_hsic_u(K, K) * _hsic_u(L, L))
    assert linear_cka(X, Y) == pytest.approx(ref, rel=1e-9)
    assert MinibatchCKA(1, 1).update([X], [Y]).compute()[0, 0].item() == pytest.approx(ref, rel=1e-9)


def _unfused_probs(model, x, n_blocks):
    "Probabilities computed by the models' own non-fused attention, read at the input of `attn_drop`."
    got, hs = {}, []
    for i, b in enumerate(model.blocks):
        b.attn.fused_attn = False
        hs.append(b.attn.attn_drop.register_forward_hook(lambda m, inp, out, i=i: got.__setitem__(i, inp[0])))
    with torch.no_grad(): model.forward_features(x)
    for h in hs: h.remove()
    return [got[i] for i in range(n_blocks)]


@pytest.mark.parametrize("which", ["timm", "smrnb", "smrnb_td"])
def test_capture_matches_unfused(which):
    torch.manual_seed(0)
    if which == "timm":
        m = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=0)
    else:
        m = create_encoder("test", **(dict(schedule="8x2", compressor="td") if which == "smrnb_td" else {}))
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    caps = capture_attention(m, x)
    refs = _unfused_probs(m, x, len(m.blocks))
    for c, r in zip(caps, refs): torch.testing.assert_close(c, r, atol=1e-5, rtol=1e-4)


def test_diversity_numpy():
    t = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = (t / t.norm(dim=-1, keepdim=True)).numpy()
    ref = [np.linalg.norm(a[b], "nuc") / 7 for b in range(3)]
    np.testing.assert_allclose(token_diversity(t).numpy(), ref, rtol=1e-10)
