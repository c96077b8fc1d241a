"""Fine-tuning as the launcher's evaluation job runs it: the recipe recorded in eval.json, another recipe pending
(with its own checkpoint), and a preempted fine-tune that is requeued by submitit and resumes from its checkpoint."""
import json, os, signal
from pathlib import Path
import pytest
import torch
from conftest import wait_for, paused_pid
from smrnb.launch import RunJob, evaluate_run, run_state
from smrnb.tiny import tiny_config
from smrnb.train import train

FT = dict(epochs=2, batch_size=16, warmup_epochs=1, num_workers=0, device="cpu", mixup=0.0, cutmix=0.0, rpe=True)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, toy):
    d = tmp_path_factory.mktemp("ft")
    cfg = tiny_config("smr", d / "run", toy, epochs=1, batch_size=16, ckpt_every=2, log_every=1).to_dict()
    train(cfg, progress=False)
    return cfg


def test_finetune_evaluation_records_its_recipe(pretrained):
    res = evaluate_run(pretrained, "finetune", FT)
    run = Path(pretrained["run_dir"])
    ev = json.loads((run / "eval.json").read_text())
    assert ev["eval_kw"] == FT and ev["finetune"]["layer_decay"] == 0.65 and ev["finetune"]["rpe"] is True
    assert 0 <= ev["top1_finetune"] <= 1 and len(ev["history"]) == 2 and res["top1_finetune"] == ev["top1_finetune"]
    assert run_state(run, "finetune", FT) == ("done", "")
    other = dict(FT, lr=5e-4)
    state, detail = run_state(run, "finetune", other)
    assert state == "evaluating" and "with other settings" in detail          # another recipe is pending
    assert len(list((run / "finetune").iterdir())) == 1                        # one checkpoint folder per recipe


def test_preempted_finetune_resumes(pretrained, tmp_path, monkeypatch):
    import submitit
    ft = dict(FT, epochs=3, ckpt_every=2)
    cfg = dict(pretrained)
    straight = evaluate_run(cfg, "finetune", ft)
    (Path(cfg["run_dir"]) / "eval.json").unlink()
    ckdir = next(p for p in (Path(cfg["run_dir"]) / "finetune").iterdir() if json.loads(json.dumps(ft)) ==
                 {k: torch.load(p / "last.pt", weights_only=False)["finetune"][k] for k in ft})
    weights = torch.load(ckdir / "last.pt", weights_only=False)["model"]
    import shutil; shutil.rmtree(ckdir)
    monkeypatch.setenv("SMRNB_PAUSE_AT_STEP", "2")
    ex = submitit.LocalExecutor(folder=str(tmp_path / "jobs"), max_num_timeout=3)
    ex.update_parameters(timeout_min=60)
    job = ex.submit(RunJob(cfg, "evaluate", "finetune", ft))
    wait_for(lambda: (ckdir / "paused").exists(), "the fine-tune to pause after its step-2 checkpoint")
    os.kill(paused_pid(ckdir), signal.SIGUSR2)                                 # preemption: requeued by submitit
    res = job.result()
    out = job.stdout()
    assert "Requeued" in out and "fine-tuning: resuming" in out and "from step 2" in out, out[-2000:]
    again = torch.load(ckdir / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)           # resumed, not restarted: the same weights
    assert res["top1_finetune"] == straight["top1_finetune"] and res["history"] == straight["history"]
