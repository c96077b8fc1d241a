"""DDP on CPU (gloo): two processes train one tiny run; the global batch is split across ranks, rank 0 writes."""
import os, socket
import torch
import torch.multiprocessing as mp
from smrnb.data import make_toy_dataset


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _worker(rank, world, port, cfg, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist
    from smrnb.train import train
    summary = train(cfg, progress=False)
    torch.save(dict(summary=summary), f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_ddp_gloo_two_processes(tmp_path):
    make_toy_dataset(tmp_path / "toy", n_train=4, n_val=1, size=32, seed=0)
    cfg = dict(method="mae", arch="test", img_size=32, decoder_depth=1, decoder_width=32, decoder_heads=2,
               data_root=str(tmp_path / "toy"), epochs=1, batch_size=8, blr=1e-3, warmup_epochs=1, log_every=1,
               run_dir=str(tmp_path / "run"), drop_path=0.0)
    mp.start_processes(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, start_method="spawn")
    s0 = torch.load(tmp_path / "rank0.pt")["summary"]
    s1 = torch.load(tmp_path / "rank1.pt")["summary"]
    assert s0["world_size"] == 2 and s1["world_size"] == 2
    assert s0["steps"] == s1["steps"] == 40 // 8
    assert (tmp_path / "run" / "done").exists()
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == s0["steps"]    # only rank 0 logs
