"""The analytic cost of the hierarchical backbones (HiViT, ConvViT) with SMR compression in their attention stage:
exact against FlopCounterMode on the tiny presets, base numbers printed, baseline > SMR (SMR Table 8)."""
import pytest
import torch
from smrnb.backbones.convit import create_convit
from smrnb.backbones.hivit import create_hivit
from smrnb.complexity import hier_encoder_cost, measured_hier_flops, measured_flops, table8_hier
from smrnb.backbones.vit import CompressedAttention, CompressedBlock

KW = dict(block_fn=CompressedBlock, attn_layer=CompressedAttention)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("arch,make", [("hivit_test", create_hivit), ("convit_test", create_convit)])
@pytest.mark.parametrize("sched,comp,place", [(None, "tm", "mlp"), ([4, 2], "tm", "mlp"), ([4, 2], "tm", "block"), ("3x1", "td", "mlp")])
def test_analytic_equals_measured_tiny(arch, make, sched, comp, place, one_thread):
    torch.manual_seed(0)
    m, x = make(arch, **KW).train(), torch.randn(2, 3, 64, 64)
    a = hier_encoder_cost(arch, sched, comp, place)
    assert measured_hier_flops(m, x, sched, comp, place) == 2 * 2 * a.macs     # batch 2, FLOPs = 2 MACs
    if sched is None: assert measured_flops(m, x) == 2 * 2 * a.macs
    assert a.macs == a.stem_macs + a.stage_macs


def test_base_models_meta_and_ordering(one_thread):
    for arch, make in (("hivit_base_3324", create_hivit), ("convit_base", create_convit)):
        with torch.device("meta"):
            m, x = make(arch, **KW), torch.empty(1, 3, 224, 224)
            full, smr = hier_encoder_cost(arch), hier_encoder_cost(arch, "25x4")
            assert measured_hier_flops(m, x, "25x4") == 2 * smr.macs
        print(f"{arch}: full {full.gmacs:.2f} GMACs, SMR 25x4 {smr.gmacs:.2f} GMACs (uncompressed part {full.stem_macs / 1e9:.2f})")
        assert full.macs > smr.macs and full.stem_macs == smr.stem_macs
        assert smr.counts[:6] == [196, 171, 146, 121, 96, 96]
    t = table8_hier()
    print(t[["model", "convention", "baseline", "smr", "paper_baseline", "paper_smr", "abs_err"]].head(20).round(2).to_string())
    assert (t.baseline > t.smr).all()
    vit_conv = t[t.convention == "GMACs, SMR adds 2 decoder blocks w768 (compress at mlp); no heads"].set_index("model")
    assert abs(vit_conv.loc["ConvViT-B", "smr"] - 19.1) < 0.05 and abs(vit_conv.loc["ConvViT-B", "baseline"] - 23.2) < 0.15
    assert abs(vit_conv.loc["HiViT-B", "smr"] - 13.3) < 0.25 and abs(vit_conv.loc["HiViT-B", "baseline"] - 18.1) < 0.3
