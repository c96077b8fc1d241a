#!/usr/bin/env python
"""Launch a paper experiment: expand it into runs, skip those done, submit the rest with submitit.

    python slurm/launch.py --list
    python slurm/launch.py --exp smr_ablation_4f --scale tiny --cluster local
    python slurm/launch.py --exp smr_ablation_4f --scale paper --dry-run              # the plan for slurm: resources, batch, lr, memory
    python slurm/launch.py --exp smr_ablation_4f --scale paper --cluster slurm --partition gpu
    python slurm/launch.py --exp smr_ablation_4f --status
    python slurm/launch.py --exp smr_table2 --set epochs=10 --set batch_size=512 --dry-run
    python slurm/launch.py --exp smr_ablation_4f --amend lr=1e-4 --amend clip_grad=1.0   # resume diverged runs
    python slurm/launch.py --exp smr_table2 --scale paper --eval-set lr=5e-4 --dry-run     # Table 6's other reading

Ctrl-C or SIGTERM with --cluster local/debug cancels the jobs this launcher started (exit status 130); their runs
keep their last checkpoint and launching again resumes them. SLURM jobs outlive the launcher: follow them with --status.
--scale paper needs --cluster (slurm, or local to run on this machine on purpose); --cluster defaults to local
only at --scale tiny. --dry-run prints every job's resources, submitit parameters, batch per GPU, peak lr and
activation-memory estimate, with a WARNING where it exceeds --gpu-mem-gb.
"""
import argparse, sys
from pathlib import Path

EPILOG = """examples:
  python slurm/launch.py --exp smr_ablation_4f --scale tiny --cluster local      # run it here, then --status
  python slurm/launch.py --exp smr_ablation_4f --scale paper --dry-run           # the plan a cluster user submits

--list names every experiment. Ctrl-C or SIGTERM with --cluster local/debug cancels the jobs this launcher started
(exit 130); their runs keep their last checkpoint and launching again resumes them. SLURM jobs outlive the launcher:
follow them with --status."""

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository, when run without the venv's .pth


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=EPILOG)
    p.add_argument("--exp", help="experiment name (see --list)")
    p.add_argument("--scale", default="tiny", choices=("tiny", "paper"))
    p.add_argument("--cluster", default=None, choices=("slurm", "local", "debug"),
                   help="where the jobs run (default: local at --scale tiny; --scale paper must say: slurm, or local on purpose; "
                        "a paper-scale --dry-run without it plans for slurm)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (one line per run, the totals); submit nothing")
    p.add_argument("--verbose", action="store_true", help="with --dry-run: every job's config, resources, submitit parameters, batch, lr and memory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key in every run (JSON or Python literals: 3, 1e-4, none, (0.9,0.95)); checked before anything runs")
    p.add_argument("--eval-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the evaluation (fine-tuning: any FinetuneConfig field, e.g. lr=5e-4 or warmup_epochs=5, "
                        "accum_iter=2); a run evaluated with other settings is evaluated again")
    p.add_argument("--amend", action="append", default=[], metavar="KEY=VALUE",
                   help="resume diverged runs with a new lr/blr/min_lr/clip_grad/warmup_epochs (same run ids; recorded in config.json history)")
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="one run per variant and seed (e.g. 0,1,2); seed 0 is the run launched without --seeds")
    p.add_argument("--variants", default=None, metavar="V1,V2,...",
                   help="only these variants of the experiment (e.g. a --set that fits some of them)")
    p.add_argument("--list", action="store_true", help="list the experiments")
    p.add_argument("--status", action="store_true", help="show each run's state")
    p.add_argument("--runs-root", default="runs", help="where run directories go (default: runs/)")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--parallel", type=int, default=1, help="local/debug: runs at a time")
    p.add_argument("--gpu-mem-gb", type=float, default=80.0,
                   help="GPU memory (GiB) the --dry-run checks each job's activation estimate against (default 80: H100 / A100 80GB)")
    p.add_argument("--allow-over-memory", action="store_true",
                   help="submit even when a job's activation estimate exceeds --gpu-mem-gb (the plan refuses it otherwise)")
    a = p.parse_args(argv)
    from smrnb.experiments import EXPERIMENTS
    from smrnb import launch as L
    from smrnb.experiments import parse_overrides
    if a.list:
        for name, e in EXPERIMENTS.items(): print(f"{name:20s} Table/Fig {e.table:6s} {e.description}")
        return 0
    if not a.exp: p.error("--exp NAME is required (or --list)")
    try:
        overrides, amend = parse_overrides(a.set), parse_overrides(a.amend, amend=True)
        evals = L.parse_eval_set(a.eval_set)
        seeds = L.parse_seeds(a.seeds)
        variants = [v.strip() for v in a.variants.split(",")] if a.variants is not None else None
        if a.status: L.status(a.exp, a.scale, overrides, a.runs_root, eval_overrides=evals, seeds=seeds, variants=variants); return 0
        L.launch(a.exp, a.scale, a.cluster, overrides, a.dry_run, a.runs_root, a.partition, a.parallel, amend=amend,
                 gpu_mem_gb=a.gpu_mem_gb, eval_overrides=evals, seeds=seeds, variants=variants, allow_over_memory=a.allow_over_memory,
                 verbose=a.verbose)
    except L.LaunchInterrupted as e:
        print(str(e), file=sys.stderr); return 130
    except KeyboardInterrupt:                      # before any job was started
        print("interrupted: nothing was started", file=sys.stderr); return 130
    except (ValueError, RuntimeError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr); return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
