"""FSDP2 (`TrainConfig(fsdp=True)`, `smrnb.fsdp`) on CPU: two gloo processes train a tiny SMR model with an EMA teacher.

(a) A sharded run takes the same steps as the unsharded single-process run with the same global batch (weights, the EMA
    teacher, AdamW's moments) and logs the same losses as DDP on the same two processes.
(b) A run checkpointed under FSDP on 2 processes resumes without FSDP on 1 process, and one checkpointed without FSDP on
    1 process resumes under FSDP on 2, each ending where the uninterrupted run ends.
(c) fsdp=True on one process, or with bf16 on CPU, is refused with what to do, before the run directory is touched.
(d) A hierarchical encoder (HiViT, SMR-compressed) sharded on 2 processes ends where its unsharded run ends; an iTPN
    pre-trained with MFM and its EMA teacher ends where DDP on the same 2 processes ends (Swin is refused by `check_fsdp`:
    nbs/20_fsdp.ipynb).

Why the runs can agree: drop path is 0 (its masks come from per-process RNG streams, which differ between 1 and 2
processes), SMR's TM compressor is deterministic, the data order and each image's augmentation are seeded by (seed,
epoch, index), and the loss is a mean over equal halves, so the 2-process gradient (the mean of the halves' gradients)
is the 1-process one up to float rounding. The FSDP and DDP runs on 2 processes agree exactly (the same sums).

Tolerances. float32 sums taken in another order differ by ~1e-7 relative to the magnitudes summed. AdamW turns a gradient
into a step of at most ~lr (1e-3) per weight; over 10 steps rounding moved weights by at most 1.2e-7 when this was
written, so WEIGHT_ATOL = 1e-5 (1% of one step) has a ~80x margin, while a real fault (another batch, a missing gradient
reduction, an EMA update on the wrong shards) moves weights by ~lr or more. AdamW's step ignores the scale of the
gradient, so the moments are compared too, each tensor to 1e-5 of its largest element (rounding: ~3e-7; an element near
zero has an absolute, not relative, rounding error): gradients summed instead of averaged would be off by 100%. The key
bias of attention is left out (see `_determined`): its gradient is zero up to rounding, and what AdamW makes of noise is
not reproducible. Each test takes ~10-25 s on 2 cores; nothing depends on time (crashes come from `crash_at_step`)."""
import os, socket
import pytest
import torch
import torch.multiprocessing as mp
from smrnb.data import make_toy_dataset

WEIGHT_ATOL, MOMENT_TOL = 1e-5, 1e-5
BASE = dict(method="smr", arch="test", img_size=32, schedule="8x2", target="ema", decoder_depth=1, decoder_width=32,
            decoder_heads=2, drop_path=0.0, epochs=2, batch_size=8, lr=1e-3, warmup_epochs=1, clip_grad=1.0, log_every=1,
            ckpt_every=2, device="cpu", seed=0)          # 40 toy images: 5 steps per epoch, 10 steps


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _env(rank, world, port):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _ckpt(run_dir):
    return torch.load(f"{run_dir}/checkpoints/last.pt", weights_only=False)


def _losses(run_dir):
    import json
    return [json.loads(l)["loss"] for l in open(f"{run_dir}/metrics.jsonl").read().splitlines()]


def _param_names():
    "Parameter names in the optimizer state's numbering (`smrnb.fsdp._param_names`) of the model BASE builds."
    from smrnb.pretrain import Pretrainer
    from smrnb.fsdp import _param_names
    from smrnb.train import TrainConfig, build_optimizer
    cfg = TrainConfig.from_dict(BASE)
    model = Pretrainer(cfg)
    return _param_names(model, build_optimizer(model, cfg))


def _determined(name, t):
    """`t` without the key bias (the middle third of an `attn.qkv.bias`): softmax is invariant to it (it adds q.b_k to every
    logit of a query), so its gradient is 0 in exact arithmetic and rounding noise in floats, which AdamW's normalised
    step turns into moves of up to ~lr: its values are not determined by the computation, in any run."""
    if not name.endswith("attn.qkv.bias"): return t
    w = t.numel() // 3                                 # (q, k, v) biases of one width each
    return torch.cat([t[:w], t[2 * w:]])


def _assert_same_weights(got, want):
    "The same weights in two checkpoints of any model (each attention's key bias left out: see `_determined`)."
    for k, v in want["model"].items():
        torch.testing.assert_close(_determined(k, got["model"][k]), _determined(k, v), atol=WEIGHT_ATOL, rtol=0, msg=lambda m: f"{k}: {m}")


def _assert_same_state(got, want):
    "Two checkpoints hold the same training state: weights (the EMA teacher's included), AdamW's moments, the format."
    names = _param_names()
    assert got["step"] == want["step"]
    assert list(got["model"]) == list(want["model"]) and any(k.startswith("target.") for k in want["model"])
    _assert_same_weights(got, want)
    go, wo = got["optimizer"], want["optimizer"]
    assert [len(g["params"]) for g in go["param_groups"]] == [len(g["params"]) for g in wo["param_groups"]]
    assert sorted(go["state"]) == sorted(wo["state"])
    for j, s in wo["state"].items():
        assert float(go["state"][j]["step"]) == float(s["step"])
        for m in ("exp_avg", "exp_avg_sq"):
            want_m = _determined(names[j], s[m])
            torch.testing.assert_close(_determined(names[j], go["state"][j][m]), want_m, rtol=0,
                                       atol=MOMENT_TOL * float(want_m.abs().max()), msg=lambda e: f"{names[j]} {m}: {e}")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("fsdp")
    make_toy_dataset(d / "toy", n_train=4, n_val=1, size=32, seed=0)
    return d


@pytest.fixture(scope="module")
def reference(toy):
    "The uninterrupted run on one process, without FSDP (in this process: no WORLD_SIZE set)."
    from smrnb.train import train
    assert "WORLD_SIZE" not in os.environ
    train(dict(BASE, data_root=str(toy / "toy"), run_dir=str(toy / "ref")), progress=False)
    return _ckpt(toy / "ref")


def _worker_a(rank, world, port, root):
    _env(rank, world, port)
    import torch.distributed as dist
    import smrnb.fsdp as fsdp
    from smrnb.train import train
    orig = fsdp.shard_model
    def recording(model, *a, **kw):                  # what this process holds of the parameters once train() sharded them
        out = orig(model, *a, **kw)
        local = sum(p.to_local().numel() for p in model.parameters())
        torch.save(dict(local=local, total=sum(p.numel() for p in model.parameters())), f"{root}/shard{rank}.pt")
        return out
    fsdp.shard_model = recording
    train(dict(BASE, data_root=f"{root}/toy", run_dir=f"{root}/fsdp", fsdp=True, grad_checkpointing=True), progress=False)
    dist.destroy_process_group()


def _worker(rank, world, port, cfg, crash_at_step=None):
    "One run of `cfg` on 2 processes (each run its own processes: see test_fsdp_matches_unsharded_and_ddp)."
    _env(rank, world, port)
    import torch.distributed as dist
    from smrnb.train import SimulatedCrash, train
    if crash_at_step is None: train(cfg, progress=False)
    else:
        with pytest.raises(SimulatedCrash): train(cfg, crash_at_step=crash_at_step, progress=False)
    dist.destroy_process_group()


def test_fsdp_matches_unsharded_and_ddp(toy, reference):
    # The FSDP and the DDP run each get fresh processes, as the launcher gives each run. With both in one pair of processes,
    # rank 1 aborted in the DDP run's first step ("terminate called without an active exception", SIGABRT) twice: once in
    # CI, once in ~340 runs of this test here. The cause is inside torch (gloo / c10d), not pinned down; one suspect is
    # the FSDP run's ~40k objects in reference cycles, freed by Python's cycle collector at whatever moment it runs.
    mp.start_processes(_worker_a, args=(2, _free_port(), str(toy)), nprocs=2, start_method="spawn")
    mp.start_processes(_worker, args=(2, _free_port(), dict(BASE, data_root=str(toy / "toy"), run_dir=str(toy / "ddp"))), nprocs=2,
                       start_method="spawn")
    shards = [torch.load(toy / f"shard{r}.pt") for r in range(2)]
    total = shards[0]["total"]
    assert all(s["total"] == total and s["local"] < 0.6 * total for s in shards)       # each process holds about half
    assert sum(s["local"] for s in shards) == total
    fsdp, ddp = _ckpt(toy / "fsdp"), _ckpt(toy / "ddp")
    assert fsdp["step"] == 10 and len(fsdp["rng"]) == 2 and fsdp["config"]["fsdp"] is True
    _assert_same_state(fsdp, reference)             # sharded (+ checkpointed blocks) on 2 = unsharded on 1
    _assert_same_state(ddp, reference)              # and DDP on 2 too: the reference is the right one
    lf, ld = _losses(toy / "fsdp"), _losses(toy / "ddp")   # rank 0's loss on its half of each batch
    assert len(lf) == len(ld) == 10
    torch.testing.assert_close(torch.tensor(lf), torch.tensor(ld), rtol=1e-5, atol=0)


def test_resume_across_fsdp_and_world_size(toy, reference):
    from smrnb.train import SimulatedCrash, train
    data = str(toy / "toy")
    with pytest.raises(SimulatedCrash):               # c: without FSDP on 1 process, killed after step 5
        train(dict(BASE, data_root=data, run_dir=str(toy / "c")), crash_at_step=5, progress=False)
    assert _ckpt(toy / "c")["step"] == 4
    for run, crash in (("b", 5), ("c", None)):     # b: FSDP on 2, killed after step 5; c: resumed under FSDP on 2
        mp.start_processes(_worker, args=(2, _free_port(), dict(BASE, data_root=data, run_dir=str(toy / run), fsdp=True), crash),
                           nprocs=2, start_method="spawn")
    b_mid = _ckpt(toy / "b")
    assert b_mid["step"] == 4 and len(b_mid["rng"]) == 2 and not (toy / "b/done").exists()
    train(dict(BASE, data_root=data, run_dir=str(toy / "b")), progress=False)          # b: resumed without FSDP on 1 process
    for run in ("b", "c"):
        assert (toy / run / "done").exists()
        _assert_same_state(_ckpt(toy / run), reference)
        assert len(_losses(toy / run)) == 10                                       # each step logged once


def test_fsdp_bad_combinations_are_refused(tmp_path):
    from smrnb.fsdp import check_fsdp
    from smrnb.train import TrainConfig, train
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="this run has 1 process: there is nothing to shard over. Set fsdp=false"):
        train(dict(BASE, data_root=str(tmp_path / "none"), run_dir=str(run), fsdp=True), progress=False)
    assert not run.exists()                                                        # refused before anything was written
    with pytest.raises(ValueError, match="fsdp=True with bf16 .* use amp='off' on cpu"):
        check_fsdp(TrainConfig(fsdp=True, amp="bf16"), 2, "cpu")
    check_fsdp(TrainConfig(fsdp=True), 2, "cpu")                                   # fp32 on CPU: what the tests above run


def test_fsdp_shards_a_hierarchical_encoder(toy):
    """HiViT (its stages' blocks are FSDP units, the stem and merges stay in the root) with SMR's compression and an EMA
    teacher: sharded on 2 processes, it ends where the unsharded run on 1 ends. The same tolerances as above."""
    from smrnb.train import train
    cfg = dict(BASE, arch="hivit_test", schedule="1x2", data_root=str(toy / "toy"))
    train(dict(cfg, run_dir=str(toy / "hivit_ref")), progress=False)
    mp.start_processes(_worker, args=(2, _free_port(), dict(cfg, run_dir=str(toy / "hivit_fsdp"), fsdp=True)), nprocs=2, start_method="spawn")
    got, want = _ckpt(toy / "hivit_fsdp"), _ckpt(toy / "hivit_ref")
    assert got["step"] == want["step"] == 10 and got["config"]["fsdp"] is True
    assert list(got["model"]) == list(want["model"])
    _assert_same_weights(got, want)


def test_fsdp_shards_itpn_mfm_like_ddp(toy):
    """iTPN pre-trained with MFM and its EMA teacher (which MFM calls through `forward_backbone`, a unit of its own): FSDP on
    2 processes takes the steps DDP takes on the same 2 (its masks are drawn per process, so the unsharded run on 1 differs;
    FSDP and DDP draw the same), the teacher's weights included."""
    cfg = dict(BASE, method="mfm", arch="itpn_toy", target="ema", schedule=None, decoder_width=None, decoder_heads=None,
               data_root=str(toy / "toy"))
    for run, fsdp in (("mfm_fsdp", True), ("mfm_ddp", False)):
        mp.start_processes(_worker, args=(2, _free_port(), dict(cfg, run_dir=str(toy / run), fsdp=fsdp)), nprocs=2, start_method="spawn")
    got, want = _ckpt(toy / "mfm_fsdp"), _ckpt(toy / "mfm_ddp")
    assert got["step"] == want["step"] == 10 and got["config"]["fsdp"] is True
    assert list(got["model"]) == list(want["model"]) and any(k.startswith("target.") for k in want["model"])
    _assert_same_weights(got, want)
    torch.testing.assert_close(torch.tensor(_losses(toy / "mfm_fsdp")), torch.tensor(_losses(toy / "mfm_ddp")), rtol=1e-5, atol=0)
