"""Hostile-but-realistic input to the newer methods' experiments (issue 27): every case is refused by the launcher before any
job starts (exit 2, one clear line, nothing written), where before it passed the plan and failed, or silently succeeded,
inside a job."""
import json
import pytest
from conftest import run


def _refused(tmp_path, *args, expect: str, dry: bool | None = True):
    "`dry`: a dry run, a local launch (False), or the launch `args` name (None)."
    r = run(*args, "--runs-root", str(tmp_path), *({True: ["--dry-run", "--verbose"], False: ["--cluster", "local"], None: []}[dry]))
    assert r.returncode == 2 and expect in r.stderr, r.stdout + r.stderr
    assert not any(tmp_path.iterdir()), sorted(p.name for p in tmp_path.rglob("*"))     # no run folder, no job folder
    return r.stderr


@pytest.mark.parametrize("exp, ratio, scale, patches", [
    ("pcae_throughput", 0.99, "tiny", 64),     # 0 of 64 visible: PCAE and MAE were pre-trained on nothing and marked done
    ("itpn_table1", 0.999, "paper", 196),
    ("greenmim_swin", 0.99, "tiny", 16),       # the coarsest grid of the toy Swin: a reshape error inside the job
    ("greenmim_swin", 0.95, "tiny", 16),       # SimMIM masks ceil(16 x 0.95) = 16: its variant is refused too
])
def test_a_ratio_that_leaves_no_visible_patch_is_refused_with_the_count(tmp_path, exp, ratio, scale, patches):
    err = _refused(tmp_path, "--exp", exp, "--scale", scale, "--set", f"mask_ratio={ratio}", expect=f"of the {patches} patches")
    assert "visible" in err and "for one visible patch" in err


@pytest.mark.parametrize("kw, expect", [
    ({"blocks": [0, 2, 99]}, "below depth=6"),
    ({"keep": 0.0}, "keep must be in (0, 1]"),
    ({"keep_ratio": 0.5}, "is not an option of target='pcae'"),
    ({"momentum": 1.5}, "momentum=1.5: an EMA momentum must be a number in [0, 1]"),
])
def test_pcae_teacher_keywords_are_checked_in_the_plan(tmp_path, kw, expect):
    _refused(tmp_path, "--exp", "pcae_throughput", "--variants", "pcae", "--set", f"target_kw={json.dumps(kw)}", expect=expect)


def test_a_set_that_fits_some_variants_names_them(tmp_path):
    err = _refused(tmp_path, "--exp", "pcae_throughput", "--set", 'target_kw={"keep": 0.3}',
                   expect="does not fit variant(s) mae")
    assert "It fits pcae: add --variants pcae" in err and "TypeError" not in err
    r = run("--exp", "pcae_throughput", "--set", 'target_kw={"keep": 0.3}', "--variants", "pcae", "--dry-run", "--verbose", "--runs-root", str(tmp_path))
    assert r.returncode == 0 and '"keep": 0.3' in r.stdout and "- mae-" not in r.stdout, r.stdout + r.stderr
    _refused(tmp_path, "--exp", "pcae_throughput", "--variants", "pcae,nope", expect="name distinct variants of pcae_throughput: mae, pcae")


def test_encoder_and_evaluation_keywords_are_checked_in_the_plan(tmp_path):
    _refused(tmp_path, "--exp", "itpn_table1", "--set", 'encoder_kw={"stem_layerscale": 0.1}', expect="did you mean")
    _refused(tmp_path, "--exp", "maelite_fig2", "--eval-set", "reserve=[0,2,99]", expect="[99] exceed the 6 blocks")


def test_a_missing_teacher_file_is_refused_before_any_job(tmp_path, monkeypatch):
    monkeypatch.setenv("SMRNB_TEACHER_DIR", str(tmp_path / "no-teachers"))    # the toy teacher D-MAE distils from: absent
    runs = tmp_path / "runs"; runs.mkdir()
    _refused(runs, "--exp", "maelite_dmae", expect="distill checkpoint (the D-MAE teacher)", dry=False)
    r = run("--exp", "maelite_dmae", "--dry-run", "--verbose", "--runs-root", str(runs))     # the dry run says so, and plans
    assert r.returncode == 0 and "a launch from this machine refuses to start" in r.stdout and "python -m smrnb.teacher" in r.stdout


def test_every_registered_paper_plan_fits_its_gpus(tmp_path):
    """Every experiment's paper plan fits the GPUs it asks for: where a batch per GPU would not (iTPN's MFM at 512 per GPU,
    Fast-iTPN's, PCAE's MAE timing run at 4096 on one GPU), the plan accumulates gradients over micro-batches that fit."""
    from smrnb.experiments import EXPERIMENTS, get_experiment
    from smrnb.jobplan import fit_accumulation, job_lines
    from smrnb.launch import executor_params, plan
    fitted = {}
    for name in EXPERIMENTS:
        runs = plan(name, "paper", runs_root=str(tmp_path))
        params = executor_params(get_experiment(name).resources["paper"], "slurm", f"smrnb-{name}")
        fit_accumulation(runs, params)
        for r in runs:
            _, w = job_lines(r, "slurm", params)
            assert not w, (name, w)
            if r["config"].get("accum_iter", 1) > 1: fitted[f"{name}/{r['variant']}"] = r["config"]["accum_iter"]
    assert fitted == {"pcae_throughput/mae": 4, "itpn_mfm/ema400": 2, "itpn_mfm/ema": 2, "itpn_mfm/clip": 2, "itpn_speed/fast": 2,
                      "itpn_ipt/ipt400": 2}, fitted   # Table 8: iTPN-B as in itpn_mfm; its HiViT-B row (MAE-style, 25% of the tokens) fits


def test_a_plan_that_does_not_fit_is_refused_unless_allowed(tmp_path):
    r = run("--exp", "itpn_mfm", "--scale", "paper", "--cluster", "slurm", "--dry-run", "--verbose", "--runs-root", str(tmp_path))
    assert r.returncode == 0 and "accumulating 2 micro-batches of 256 (accum_iter 2; the same batch 4096 and peak lr)" in r.stdout, r.stdout
    assert "accum_iter 2 (micro-batch 256)" in r.stdout and "WARNING" not in r.stdout
    err = _refused(tmp_path, "--exp", "itpn_mfm", "--scale", "paper", "--cluster", "slurm", "--set", "accum_iter=1",
                   expect="nothing was submitted: raise accum_iter", dry=None)
    assert "~110.3 GiB of activations per GPU exceed" in err
    r = run("--exp", "itpn_mfm", "--scale", "paper", "--cluster", "slurm", "--set", "accum_iter=1", "--allow-over-memory",
            "--runs-root", str(tmp_path))
    assert "nothing was submitted: raise accum_iter" not in r.stderr, r.stderr    # allowed: it goes on (here to the missing CLIP file)
