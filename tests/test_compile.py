"""`compile=True` (torch.compile of the model in the training loop) trains the same run as eager on CPU: the same losses
and, after two optimizer steps, the same weights (to float tolerance). Dropout-free (inductor draws its own random
numbers), SMR with a pixel target. About a minute and a half on 2 cores, most of it compiling."""
import json
import torch
from smrnb.tiny import tiny_config
from smrnb.train import train


def test_compiled_and_eager_training_agree(tmp_path, toy):
    base = tiny_config("smr", tmp_path / "x", toy, epochs=1, batch_size=16, log_every=1).to_dict()
    base.update(drop_path=0.0, max_steps=2)
    eager = train(dict(base, run_dir=str(tmp_path / "eager")), progress=False)
    comp = train(dict(base, run_dir=str(tmp_path / "compiled"), compile=True), progress=False)
    assert eager["steps"] == comp["steps"] == 2
    le = [json.loads(l)["loss"] for l in (tmp_path / "eager/metrics.jsonl").read_text().splitlines()]
    lc = [json.loads(l)["loss"] for l in (tmp_path / "compiled/metrics.jsonl").read_text().splitlines()]
    assert len(le) == 2 and all(abs(a - b) < 1e-5 for a, b in zip(le, lc)), (le, lc)
    a = torch.load(tmp_path / "eager/checkpoints/last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "compiled/checkpoints/last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
