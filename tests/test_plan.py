"""The paper-scale dry run a cluster user checks before submitting: every job's resources, submitit parameters, batch
per GPU, peak lr and activation-memory estimate; evaluation jobs with their pre-training's resources; no silent
`--cluster local` at paper scale. CPU-only, no SLURM needed (the SLURM submission is checked with a fake executor)."""
import io, json, re
from contextlib import contextmanager
from types import SimpleNamespace

from conftest import run

PAPER = dict(nodes=1, tasks_per_node=8, gpus_per_node=8, cpus_per_task=10, timeout_min=4320, mem_gb=480)

from smrnb.experiments import EXPERIMENTS
T2 = len(EXPERIMENTS["smr_table2"].variants)   # Table 2's rows: ViT-B, HiViT-B, ConViT-B (12)


def _dry(tmp_path, *more):
    r = run("--exp", "smr_table2", "--scale", "paper", "--dry-run", "--verbose", "--runs-root", str(tmp_path), *more)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _jobs(out: str) -> dict:
    "{stage: [the lines of each job of that stage]} from a dry run's output."
    jobs, cur = {"pre-training": [], "evaluation": []}, None
    for l in out.splitlines():
        m = re.match(r"    (pre-training|evaluation) job", l)
        if m: cur = [l]; jobs[m[1]].append(cur)
        elif l.startswith("      ") and cur is not None: cur.append(l)
        else: cur = None
    return jobs


def test_paper_dry_run_shows_every_job_with_its_resources_batch_lr_and_memory(tmp_path):
    out = _dry(tmp_path, "--cluster", "slurm")
    assert "not launched" in out and "gpus_per_node" in out and "imagenet" in out.lower()      # the per-run lines stay
    jobs = _jobs(out)
    assert len(jobs["pre-training"]) == T2 and len(jobs["evaluation"]) == T2, out
    for job in jobs["pre-training"] + jobs["evaluation"]:
        text = "\n".join(job)
        assert "1 node x 8 GPUs, 8 tasks per node (8 processes), 10 CPUs per task, mem 480 GB, time limit 72:00:00" in job[0], text
        params = json.loads(next(l for l in job if l.startswith("      submitit: ")).split(": ", 1)[1])
        assert {k: params[k] for k in PAPER} == PAPER, text                  # evaluation: the pre-training's resources
        gib = float(re.search(r"activations: ~([\d.]+) GiB per GPU \((\d+) images; .*\) of 80 GiB", text)[1])
        assert 0.5 < gib < 80, text
    ev = "\n".join(jobs["evaluation"][0])
    assert "(finetune, afterok on the pre-training job)" in ev
    assert "batch 1024 total = 128 per GPU x 8 GPUs, accum_iter 1 (micro-batch 128); peak lr 0.002 (blr 0.0005 x 1024 / 256)" in ev
    assert "(128 images; encoder vit_base 224px, no compression; bf16)" in ev
    pre = "\n".join(jobs["pre-training"][0])
    assert "batch: 2048 total = 256 per GPU x 8 GPUs; peak lr 0.0015 (blr 0.0001875 x 2048 / 256)" in pre
    assert "(256 images; encoder vit_base 224px schedule 25x4 tm, decoder 2 blocks x 768 over 197 tokens; bf16)" in pre
    mae = "\n".join(next(j for j in jobs["pre-training"] if "4096" in j[2]))
    assert "batch: 4096 total = 512 per GPU x 8 GPUs; peak lr 0.0024" in mae and "49 of 196 patches" in mae
    assert "bf16 autocast" in out and "not counted: weights, gradients, AdamW states, the teacher" in out   # assumptions stated
    assert "WARNING" not in out and "every job's activation estimate fits 80 GiB per GPU" in out
    assert not tmp_path.joinpath("paper").exists()                          # a dry run writes nothing


def test_a_small_gpu_draws_a_warning(tmp_path):
    out = _dry(tmp_path, "--cluster", "slurm", "--gpu-mem-gb", "1")
    warn = [l for l in out.splitlines() if l.startswith("WARNING: ")]
    assert len(warn) == T2, out             # pre-training accumulates micro-batches that fit by itself; fine-tuning warns per row
    assert all("finetune" in l and "exceed the GPU's 1 GiB (--gpu-mem-gb)" in l and "accum_iter" in l for l in warn)
    assert len(re.findall(r"memory: \d+ images per GPU need ~[\d.]+ GiB of activations: accumulating \d+ micro-batches", out)) == T2
    assert f"{T2} WARNING(s)" in out.splitlines()[-1]
    out = _dry(tmp_path, "--cluster", "slurm", "--gpu-mem-gb", "1", "--set", "accum_iter=1")   # chosen by the user: kept, and warned
    warn = [l for l in out.splitlines() if l.startswith("WARNING: ")]
    assert len(warn) == 2 * T2 and "accumulating" not in out, out
    assert any("pretrain" in l and "exceed the GPU's 1 GiB (--gpu-mem-gb)" in l and "batch_size" in l for l in warn)


def test_paper_scale_needs_an_explicit_cluster(tmp_path):
    r = run("--exp", "smr_table2", "--scale", "paper", "--runs-root", str(tmp_path))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--scale paper needs --cluster" in r.stderr and "--cluster slurm" in r.stderr and "--cluster local" in r.stderr
    assert not any(tmp_path.iterdir())                                      # refused before anything was written
    out = _dry(tmp_path)                                                    # a dry run plans for slurm, and says so first
    first, second = out.splitlines()[:2]
    assert "showing the plan for --cluster slurm" in first and "cluster=slurm" in second and '"mem_gb": 480' in second
    tiny = run("--exp", "smr_table2", "--dry-run", "--verbose", "--runs-root", str(tmp_path))   # tiny scale: local stays the default
    assert tiny.returncode == 0 and tiny.stdout.splitlines()[0].startswith(f"{T2} runs, {T2} to launch on cluster=local"), tiny.stdout


def test_slurm_submits_evaluations_with_the_pretraining_resources(tmp_path, monkeypatch):
    from smrnb import launch as L
    made = []

    class FakeExecutor:
        def __init__(self, params): self.params, self.jobs = dict(params), []; made.append(self)
        def update_parameters(self, **kw): self.params.update(kw)
        @contextmanager
        def batch(self): yield
        def submit(self, job):
            j = SimpleNamespace(job_id=str(1000 + sum(len(e.jobs) for e in made))); self.jobs.append((job, j)); return j

    monkeypatch.setattr(L, "make_executor", lambda cluster, folder, params: FakeExecutor(params))
    monkeypatch.chdir(tmp_path)            # the CLIP teachers the plan checks for, as files of this "cluster" (empty: never read here)
    for line in L.missing_files(L.plan("smr_table2", "paper", runs_root=str(tmp_path))):
        f = tmp_path / re.search(r" (\S+) \(\d+ runs?: ", line)[1]; f.parent.mkdir(parents=True, exist_ok=True); f.touch()
    L.launch("smr_table2", "paper", "slurm", runs_root=str(tmp_path), file=io.StringIO())
    pre, evals = made[0], made[1:]
    assert [j.stage for j, _ in pre.jobs] == ["pretrain"] * T2 and len(evals) == T2
    ids = {j.config["run_dir"]: jid.job_id for j, jid in pre.jobs}
    for e in evals:
        (job, _), = e.jobs
        assert job.stage == "evaluate" and job.evaluate == "finetune" and job.eval_kw["batch_size"] == 1024
        assert {k: e.params[k] for k in PAPER} == PAPER
        assert e.params["slurm_additional_parameters"] == {"dependency": f"afterok:{ids[job.config['run_dir']]}"}


def test_help_prints_its_description_once_with_two_examples():
    r = run("--help")
    assert r.returncode == 0 and r.stdout.count("Launch a paper experiment") == 1, r.stdout
    assert r.stdout.count("python slurm/launch.py --exp") == 2 and "--variants" in r.stdout and "--allow-over-memory" in r.stdout


def test_the_paper_dry_run_fits_on_one_screen(tmp_path):
    "One line per run (what differs, its jobs, the memory estimate, its state) and the totals; the full plan with --verbose."
    r = run("--exp", "smr_ablation_4f", "--scale", "paper", "--dry-run", "--cluster", "slurm", "--runs-root", str(tmp_path))
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) < 40, r.stdout
    rows = [l for l in lines if l.startswith("k")]
    assert len(rows) == 5 and all("pretrain -> finetune" in l and "not launched" in l and " GiB" in l for l in rows), r.stdout
    assert 'schedule="15x4"' in rows[0] and "config:" not in r.stdout
    assert "totals: 5 runs to launch, 10 jobs, 5,760 GPU-hours requested" in r.stdout and "--verbose shows" in lines[-1]
