"""iTPN / Fast-iTPN: tiny CPU checks of the model and of benchmarks/itpn.py (timings printed, never asserted)."""
import re, subprocess, sys
from pathlib import Path
import pytest, torch
from smrnb.itpn import ITPN, MFM, create_itpn, migration_counts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return create_itpn("itpn_toy").eval(), torch.randn(2, 3, 32, 32)


def test_ratio_zero_and_no_gathering_is_plain_itpn(toy):
    m, x = toy
    with torch.no_grad():
        plain = m(x).merged
        m.migration_ratio = 0.2; mig = m(x); m.migration_ratio = 0.0
        m.gathering = True; ga = m(x); m.gathering = False
        again = m(x).merged
    assert torch.equal(plain, again)
    assert not torch.allclose(mig.merged, plain) and not torch.allclose(ga.merged, plain)
    gx, gi = mig.migrated[0]
    assert torch.equal(mig.pyramid_input[1, gi[1]], gx[1])       # replenished at their positions
    assert sum(g.shape[1] for _, g in mig.migrated) == sum(migration_counts(64, 4, 0.2))


def test_windowed_acceleration_needs_the_whole_image(toy):
    m, x = toy
    m.gathering = True
    try:
        with pytest.raises(ValueError, match="whole image"): m(x, keep=torch.arange(16).expand(2, 16))
    finally: m.gathering = False


def test_mfm_trains_the_pyramid():
    torch.manual_seed(0)
    model = create_itpn("itpn_toy", depth=2)
    mfm = MFM(model)
    masked = torch.rand(2, 64).argsort(1) < 48
    r = mfm(torch.randn(2, 3, 32, 32), masked)
    r["loss"].backward()
    assert torch.isfinite(r["loss"]) and model.split8.reduction.weight.grad.abs().sum() > 0


def test_itpn_benchmark_cpu_smoke():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/itpn.py"), "--arch", "itpn_toy", "--img-size", "32", "--batch", "2",
                        "--steps", "2", "--window", "4", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    base = re.search(r"^iTPN baseline: ([0-9.]+) ms", r.stdout, re.M)
    rows = re.findall(r"^Fast-iTPN migration (\d+)% gathering (on |off): ([0-9.]+) ms \(([0-9.]+)x time\).*, (\d+)/64 tokens",
                      r.stdout, re.M)
    assert base and len(rows) == 10, r.stdout
    assert {(int(p), g.strip()) for p, g, *_ in rows} == {(p, g) for p in (0, 10, 20, 30, 40) for g in ("on", "off")}
    for p, g, ms, rt, left in rows:
        assert abs(float(rt) - float(ms) / float(base[1])) <= 0.01 * float(rt) + 0.006, r.stdout   # ratio of the printed times
        # windows of 16 tokens when gathering, else 64 tokens matched globally
        assert int(left) == 64 - (4 * sum(migration_counts(16, 4, int(p) / 100)) if g.strip() == "on" else sum(migration_counts(64, 4, int(p) / 100)))
