"""A new method, evaluation or paper is one new file: dropped into a copy of the package (no other file edited), the
registries find it (`smrnb.config.registry_modules`), the launcher lists and plans it, and a real `--cluster local` job
(another process, as on SLURM) pre-trains with the new method and runs the new evaluation."""
import json, os, shutil, subprocess, sys, textwrap
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parent.parent

METHOD = '''
import torch, torch.nn as nn
from smrnb.methods.base import Pretrainer, recon_loss, register_method

@register_method("toy_pixels", schedule=None, input_mask="none", mask_ratio=0.0, target="pixel", loss_on="all", decoder_depth=0)
class ToyPixels(Pretrainer):
    "Each patch's final token regresses that patch's normalised pixels through one linear layer."
    def __init__(self, cfg, target=None):
        super().__init__(cfg, target)
        self.target = target if target is not None else self.make_target()
        self.decoder = nn.Linear(self.encoder.embed_dim, self.target_dim)
    def forward(self, imgs, generator=None):
        out = self.encoder.forward_features(imgs, generator)
        pred = self.decoder(out.x[:, self.encoder.num_prefix_tokens:])
        with torch.no_grad(): tgt = self.target(imgs)
        return dict(loss=recon_loss(pred, tgt), pred=pred, target=tgt, counts=out.counts)
'''

EVALUATION = '''
from smrnb.evaluations.base import register_evaluation

def _check(own, ft):
    if not isinstance(own.get("trainable", False), bool): raise ValueError("--eval-set trainable: true or false")

@register_evaluation("toy_params", keys=("trainable",), check=_check)
def run_toy_params(ctx, kw):
    enc = ctx.encoder()
    return dict(params=sum(p.numel() for p in enc.parameters() if p.requires_grad or not kw.get("trainable", False)))
'''

PAPER = '''
import numpy as np
from smrnb.experiments.base import PAPER_GPU, TINY_CPU, Experiment, Variant, published, register_experiment

register_experiment(Experiment(
    "toy_new_paper", "toy", "A paper added as one file",
    base={"paper": dict(arch="vit_base", epochs=100),
          "tiny": dict(arch="test", img_size=32, data_root=DATA_ROOT, epochs=1, batch_size=32, warmup_epochs=1)},
    variants=[Variant("pixels", dict(method="toy_pixels"), evaluate="toy_params",
                      paper=published("toy", "pixels", np.nan, note="no published number"))],
    resources={"paper": dict(PAPER_GPU), "tiny": dict(TINY_CPU)}))
'''


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    "The package and the launcher copied, plus one new file in each registry folder; a toy set for its runs."
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "smrnb", root / "smrnb", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "slurm", root / "slurm", ignore=shutil.ignore_patterns("__pycache__"))
    data = root / "toy"
    (root / "smrnb" / "methods" / "toy_pixels.py").write_text(METHOD)
    (root / "smrnb" / "evaluations" / "toy_params.py").write_text(EVALUATION)
    (root / "smrnb" / "experiments" / "toy_paper.py").write_text(f"DATA_ROOT = {str(data)!r}\n" + PAPER)
    (root / "smrnb" / "paper_numbers_toy.csv").write_text("table,row,metric,value,unit,experiment,variant,producible,reason,source\n"
                                                          "toy,pixels,top1_finetune,,%,toy_new_paper,pixels,yes,,no published number\n")
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", f"from smrnb.data import make_toy_dataset; make_toy_dataset({str(data)!r}, n_train=64, n_val=16, size=32)"],
                   env=env, check=True, cwd=root)
    return root, env


def run(root, env, *args):
    return subprocess.run([sys.executable, *args], env=env, cwd=root, capture_output=True, text=True, timeout=900)


def test_the_new_files_are_registered(repo_copy):
    root, env = repo_copy
    r = run(root, env, "-c", textwrap.dedent("""
        import smrnb.pretrain, smrnb.evaluations, smrnb.experiments
        print(smrnb.pretrain.__file__)
        print(list(smrnb.pretrain.METHOD_CLASSES)[-1], list(smrnb.evaluations.EVALUATIONS)[-1], list(smrnb.experiments.EXPERIMENTS)[-1])
        print(list(smrnb.evaluations.EVALUATIONS)[:7])
        from smrnb.results import paper_cells, check_paper_cells
        print(sorted(paper_cells().query("table == 'toy'").experiment), check_paper_cells())
        """))
    assert r.returncode == 0, r.stderr
    where, last, builtins, papers = r.stdout.splitlines()
    assert where.startswith(str(root)), where            # the copy, not the repository's package
    assert last.split() == ["toy_pixels", "toy_params", "toy_new_paper"]
    assert papers == "['toy_new_paper'] []", papers       # its published numbers found, and they agree with its registration
    assert builtins == str(["finetune", "linear_probe", "compactness", "complexity", "token_dropping", "layer_reservation", "acceleration"])


def test_the_new_evaluation_checks_its_settings_in_the_plan(repo_copy):
    root, env = repo_copy
    r = run(root, env, "slurm/launch.py", "--exp", "toy_new_paper", "--eval-set", "trainable=3", "--dry-run", "--verbose")
    assert r.returncode != 0 and "--eval-set trainable: true or false" in r.stdout + r.stderr, r.stdout + r.stderr
    r = run(root, env, "slurm/launch.py", "--list")
    assert r.returncode == 0 and "toy_new_paper" in r.stdout, r.stdout + r.stderr


def test_a_local_job_runs_the_new_method_and_evaluation(repo_copy):
    "The job is another process (submitit's local executor): it finds the new files by itself, as a SLURM job would."
    root, env = repo_copy
    r = run(root, env, "slurm/launch.py", "--exp", "toy_new_paper", "--scale", "tiny", "--cluster", "local", "--runs-root", str(root / "runs"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    evals = list((root / "runs").rglob("eval.json"))
    assert len(evals) == 1, r.stdout[-3000:]
    got = json.loads(evals[0].read_text())
    assert got["params"] > 0, got
    cfg = json.loads((evals[0].parent / "config.json").read_text())
    assert cfg["config"]["method"] == "toy_pixels", cfg
