"""Oracle tests: `smrnb.compress.compress("tm"/"td", ...)` against a deliberately simple reference.

The reference below is written directly from the specification of ToMe's bipartite soft matching
(alternating split, cosine similarity, best-partner score, top-r sources, size-weighted merge,
union of sources), one image at a time with plain Python loops over Python floats (float64).
It shares no code with `smrnb` and uses no batching, gather or scatter.
"""
import math

import pytest
import torch

from smrnb.compress import compress

# ----------------------------------------------------------------------------- reference


def _unit(row):
    n = math.sqrt(sum(v * v for v in row))
    return [v / n for v in row]


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def ref_match(metric, r, class_token):
    """Spec steps 1-4 for one image. `metric` is a list of T rows.

    Returns (A, B, partner, src, unm): A/B are token indices of the two sets, partner[ai] is the
    position in B of A[ai]'s best match, src/unm are positions in A (sources / kept A tokens)."""
    T = len(metric)
    m = [_unit(row) for row in metric]                       # 1. cosine similarity
    A = list(range(0, T, 2))                                 # 2. alternate split
    B = list(range(1, T, 2))
    score, partner = [], []
    for ai, i in enumerate(A):                               # 3. best B partner of every A token
        best_s, best_j = -math.inf, None
        for bj, j in enumerate(B):
            s = _dot(m[i], m[j])
            if s > best_s:
                best_s, best_j = s, bj
        if class_token and ai == 0:
            best_s = -math.inf                               # the class token is never a source
        score.append(best_s)
        partner.append(best_j)
    ranked = sorted(range(len(A)), key=lambda ai: score[ai], reverse=True)   # 4. rank, descending
    src, unm = ranked[:r], ranked[r:]
    if class_token:
        unm = sorted(unm)                                    # ascending A order, class token first
    return A, B, partner, src, unm


def ref_one(method, x, size, source, metric, r, class_token):
    """Spec steps 5/6 for one image; every argument is a list (of rows), `size` a list of floats."""
    A, B, partner, src, unm = ref_match(metric, r, class_token)
    out_x, out_size, out_src = [], [], []
    for ai in unm:                                           # unmerged A tokens, unchanged
        i = A[ai]
        out_x.append(list(x[i]))
        out_size.append(size[i])
        out_src.append(list(source[i]))
    for bj, j in enumerate(B):                               # then every B token, in B order
        if method == "td":
            out_x.append(list(x[j]))
            out_size.append(size[j])
            out_src.append(list(source[j]))
            continue
        members = [A[ai] for ai in src if partner[ai] == bj]
        new_size = size[j] + sum(size[i] for i in members)
        new_x = []
        for c in range(len(x[j])):
            acc = size[j] * x[j][c]
            for i in members:
                acc += size[i] * x[i][c]
            new_x.append(acc / new_size)
        new_src = list(source[j])
        for i in members:
            new_src = [max(a, b) for a, b in zip(new_src, source[i])]
        out_x.append(new_x)
        out_size.append(new_size)
        out_src.append(new_src)
    assert len(out_x) == len(x) - r
    return out_x, out_size, out_src


def reference(method, x, r, metric=None, size=None, source=None, class_token=True):
    """Batched wrapper: loops over images, returns float64 tensors (x, size (B,N,1), source)."""
    Bn, T, _ = x.shape
    if metric is None:
        metric = x
    if size is None:
        size = torch.ones(Bn, T, 1, dtype=torch.float64)
    if source is None:
        source = torch.eye(T, dtype=torch.float64).expand(Bn, T, T)
    xs, ss, srcs = [], [], []
    for b in range(Bn):
        ox, osz, osrc = ref_one(method, x[b].double().tolist(), size[b, :, 0].double().tolist(),
                                source[b].double().tolist(), metric[b].double().tolist(), r, class_token)
        xs.append(ox)
        ss.append(osz)
        srcs.append(osrc)
    return (torch.tensor(xs, dtype=torch.float64).reshape(Bn, T - r, x.shape[-1]),
            torch.tensor(ss, dtype=torch.float64).reshape(Bn, T - r, 1),
            torch.tensor(srcs, dtype=torch.float64).reshape(Bn, T - r, source.shape[-1]))


def limit(T, class_token):
    return (T - 1) // 2 if class_token else T // 2


def assert_same(state, ref, atol=1e-5):
    rx, rs, rsrc = ref
    assert state.x.shape == rx.shape
    assert state.size.shape == rs.shape
    assert state.source.shape == rsrc.shape
    torch.testing.assert_close(state.x.double(), rx, atol=atol, rtol=0)
    assert torch.equal(state.size.double(), rs), "size differs"
    assert torch.equal(state.source.double(), rsrc), "source differs"


# ----------------------------------------------------------------------------- single calls

# (B, T, C, r, class_token); r given as "max" is resolved to the per-call limit
CASES = [
    (1, 2, 3, 1, False),
    (1, 3, 3, 1, True),
    (2, 3, 4, 1, False),
    (2, 4, 5, 1, True),
    (2, 4, 5, 2, False),
    (3, 7, 8, 2, True),
    (3, 8, 8, 3, False),
    (2, 16, 6, 5, True),
    (2, 17, 6, 5, False),
    (2, 50, 16, "max", True),
    (2, 51, 16, "max", True),
    (2, 50, 16, "max", False),
    (2, 51, 16, "max", False),
    (2, 197, 32, 25, True),
    (2, 196, 32, 25, False),
    (1, 197, 24, "max", True),
    (4, 33, 12, 1, True),
]


def _resolve(r, T, class_token):
    return limit(T, class_token) if r == "max" else r


@pytest.mark.parametrize("method", ["tm", "td"])
@pytest.mark.parametrize("separate_metric", [False, True], ids=["metric=x", "metric=rand"])
@pytest.mark.parametrize("Bn,T,C,r,class_token", CASES)
def test_single_call_matches_reference(method, separate_metric, Bn, T, C, r, class_token):
    r = _resolve(r, T, class_token)
    g = torch.Generator().manual_seed(1000 * T + 10 * C + r)
    x = torch.randn(Bn, T, C, generator=g)
    metric = torch.randn(Bn, T, 7, generator=g) if separate_metric else None
    out = compress(method, x, r, metric=metric, class_token=class_token)
    assert out.x.shape == (Bn, T - r, C)
    assert_same(out, reference(method, x, r, metric=metric, class_token=class_token))


@pytest.mark.parametrize("method", ["tm", "td"])
@pytest.mark.parametrize("class_token", [True, False])
def test_nonunit_size_and_source_passed_in(method, class_token):
    "Arbitrary incoming sizes and (0/1) sources, as after earlier merges, are weighted / unioned per spec."
    g = torch.Generator().manual_seed(7 + class_token)
    Bn, T, C, P = 3, 41, 10, 60
    x = torch.randn(Bn, T, C, generator=g)
    size = torch.randint(1, 6, (Bn, T, 1), generator=g).float()
    source = (torch.rand(Bn, T, P, generator=g) < 0.2).float()
    r = limit(T, class_token)
    out = compress(method, x, r, size=size, source=source, class_token=class_token)
    assert_same(out, reference(method, x, r, size=size, source=source, class_token=class_token))


@pytest.mark.parametrize("method", ["tm", "td"])
@pytest.mark.parametrize("class_token", [True, False])
def test_float64_tight(method, class_token):
    "In float64 smrnb and the reference agree to ~1e-12."
    g = torch.Generator().manual_seed(99)
    x = torch.randn(2, 64, 9, generator=g, dtype=torch.float64)
    r = 20
    out = compress(method, x, r, class_token=class_token)
    assert out.x.dtype == torch.float64
    assert_same(out, reference(method, x, r, class_token=class_token), atol=1e-12)


# ----------------------------------------------------------------------------- successive calls

@pytest.mark.parametrize("method", ["tm", "td"])
@pytest.mark.parametrize("separate_metric", [False, True], ids=["metric=x", "metric=rand"])
@pytest.mark.parametrize("class_token", [True, False])
def test_successive_calls(method, separate_metric, class_token):
    "4 calls of r=25 from 197 tokens, size and source passed along; reference fed its own outputs."
    g = torch.Generator().manual_seed(2024 + 2 * separate_metric + class_token)
    Bn, T, C = 2, 197, 16
    x = torch.randn(Bn, T, C, generator=g)
    s_x, s_size, s_src = x, None, None                  # smrnb chain
    r_x, r_size, r_src = x.double(), None, None         # reference chain (independent)
    for step in range(4):
        n = s_x.shape[1]
        metric = torch.randn(Bn, n, 8, generator=g) if separate_metric else None
        out = compress(method, s_x, 25, metric=metric, size=s_size, source=s_src, class_token=class_token)
        ref = reference(method, r_x, 25, metric=metric if separate_metric else r_x,
                        size=r_size, source=r_src, class_token=class_token)
        assert out.n == n - 25
        assert out.source.shape == (Bn, n - 25, T)
        assert_same(out, ref)
        s_x, s_size, s_src = out.x, out.size, out.source
        r_x, r_size, r_src = ref
    assert s_x.shape[1] == T - 100


# ----------------------------------------------------------------------------- r = 0

@pytest.mark.parametrize("method", ["tm", "td"])
@pytest.mark.parametrize("T,class_token", [(10, True), (11, True), (10, False), (11, False)])
def test_r_zero(method, T, class_token):
    """r=0 removes nothing. smrnb returns the input unchanged (as the original ToMe does for r<=0).
    Read literally, spec step 5 would output the same tokens reordered as [A..., B...]; check that
    the token *set* is the same as the reference's."""
    g = torch.Generator().manual_seed(T)
    x = torch.randn(2, T, 5, generator=g)
    out = compress(method, x, 0, class_token=class_token)
    assert torch.equal(out.x, x)
    assert torch.equal(out.size, torch.ones(2, T, 1))
    assert torch.equal(out.source, torch.eye(T).expand(2, T, T))
    rx, rs, rsrc = reference(method, x, 0, class_token=class_token)
    perm = rsrc.argmax(-1)                              # original index of each reference token
    for b in range(2):
        assert sorted(perm[b].tolist()) == list(range(T))
        torch.testing.assert_close(rx[b], x[b, perm[b]].double(), atol=0, rtol=0)
    assert torch.equal(rs, torch.ones(2, T, 1, dtype=torch.float64))


# ----------------------------------------------------------------------------- hand-checked cases

def test_toy_case():
    "values [0,1,2,3], keys make 0~1 (identical) and 2~3 (close), r=1, no class token."
    x = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 4, 1)
    k = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]]).view(1, 4, 2)
    expected = torch.tensor([2.0, 0.5, 3.0]).view(1, 3, 1)
    out = compress("tm", x, 1, metric=k, class_token=False)
    torch.testing.assert_close(out.x, expected)
    assert out.size.view(-1).tolist() == [1.0, 2.0, 1.0]
    assert out.source[0].tolist() == [[0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]]
    rx, _, _ = reference("tm", x, 1, metric=k, class_token=False)   # the oracle agrees by hand too
    torch.testing.assert_close(rx, expected.double())
    td = compress("td", x, 1, metric=k, class_token=False)
    torch.testing.assert_close(td.x, torch.tensor([2.0, 1.0, 3.0]).view(1, 3, 1))


@pytest.mark.parametrize("method", ["tm", "td"])
def test_cls_kept_first_197(method):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 197, 32, generator=g)
    out = compress(method, x, 25, class_token=True)
    assert out.x.shape == (2, 172, 32)
    assert torch.equal(out.x[:, 0], x[:, 0])
    assert torch.equal(out.size[:, 0], torch.ones(2, 1))
    assert torch.equal(out.source[:, 0], torch.eye(197)[0].expand(2, 197))


@pytest.mark.parametrize("separate_metric", [False, True], ids=["metric=x", "metric=rand"])
@pytest.mark.parametrize("class_token", [True, False])
def test_source_size_invariant(separate_metric, class_token):
    "After several tm merges of an unchanged x, every token is (source @ x_original) / size."
    g = torch.Generator().manual_seed(5 + class_token)
    Bn, T, C = 3, 197, 20
    x0 = torch.randn(Bn, T, C, generator=g, dtype=torch.float64)
    s_x, s_size, s_src = x0, None, None
    for r in (30, 25, 20, 15, 10):
        metric = torch.randn(Bn, s_x.shape[1], 6, generator=g, dtype=torch.float64) if separate_metric else None
        out = compress("tm", s_x, r, metric=metric, size=s_size, source=s_src, class_token=class_token)
        s_x, s_size, s_src = out.x, out.size, out.source
    assert s_x.shape[1] == T - 100
    assert torch.equal(s_size, s_src.sum(-1, keepdim=True))            # size counts original tokens
    assert torch.equal(s_src.sum(1), torch.ones(Bn, T, dtype=torch.float64))  # a partition of them
    torch.testing.assert_close(s_x, (s_src @ x0) / s_size, atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("method", ["tm", "td"])
@pytest.mark.parametrize("T,class_token", [(197, True), (196, True), (10, False), (11, False), (2, True)])
def test_r_above_limit_raises(method, T, class_token):
    x = torch.randn(1, T, 4)
    lim = limit(T, class_token)
    assert compress(method, x, lim, class_token=class_token).n == T - lim   # the limit itself is fine
    with pytest.raises(ValueError):
        compress(method, x, lim + 1, class_token=class_token)


@pytest.mark.parametrize("method", ["tm", "td"])
def test_negative_r_raises(method):
    with pytest.raises(ValueError):
        compress(method, torch.randn(1, 10, 4), -1)


def test_unknown_method_raises():
    with pytest.raises(ValueError):
        compress("tome", torch.randn(1, 10, 4), 2)
