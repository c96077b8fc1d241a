"""The registry's paper-scale CLIP teachers are OpenAI's architecture (QuickGELU): a state dict saved from a random
`ViT-B-16-quickgelu` model, loaded through the registry's own teacher config, gives the saved model's patch tokens;
loaded under the plain GELU name it would silently give another teacher."""
import pytest
import torch
import open_clip
from smrnb.experiments import CLIP_B, CLIP_L, run_configs
from smrnb.pretrain import Pretrainer
from smrnb.targets import ClipTarget, make_target
from smrnb.train import TrainConfig


def test_registry_teachers_are_quickgelu():
    assert CLIP_B["model_name"] == "ViT-B-16-quickgelu" and CLIP_L["model_name"] == "ViT-L-14-quickgelu"
    kws = {r["config"]["target_kw"]["model_name"] for r in run_configs("smr_table2", "paper") if r["config"].get("target_kw")}
    assert kws == {"ViT-B-16-quickgelu", "ViT-L-14-quickgelu"}
    with torch.device("meta"):
        m = open_clip.create_model(CLIP_B["model_name"], device="meta")
    assert isinstance(m.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)


def test_registry_teacher_config_loads_a_quickgelu_state_dict(tmp_path):
    torch.manual_seed(0)
    saved = open_clip.create_model("ViT-B-16-quickgelu").eval()
    f = tmp_path / "ViT-B-16-quickgelu.pt"
    torch.save(saved.state_dict(), f)
    x = torch.randn(1, 3, 224, 224)
    want = ClipTarget(saved)(x)
    cfg = TrainConfig(method="smr", arch="vit_base", target="clip", target_kw=dict(CLIP_B, checkpoint=str(f)))
    teacher = Pretrainer(cfg).target                                  # the way a run builds it
    torch.testing.assert_close(teacher(x), want, atol=0, rtol=0)
    gelu = make_target("clip", model_name="ViT-B-16", checkpoint=str(f))  # the old registry name: silently another network
    assert (gelu(x) - want).abs().mean() > 1e-3
