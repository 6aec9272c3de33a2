"""Inside training jobs on torch.distributed (gloo on loopback, processes spawned by the tests).

One 2-rank ``torchrun`` job (:func:`worker_main`) does every in-library check; its ranks write what they saw to
files and the tests compare that here with single-process references computed in this process:

* ``extract(..., distributed=True)``: each rank holds its share (whole batches, global ids), every
  accumulator fed during the extraction holds all samples' statistics afterwards (equal to one process's to
  1e-12 relative, bitwise the same on both ranks, still torch tensors on their device);
  ``gather_featureset`` gives rank 0 the single-process FeatureSet bitwise; a layer that fails on one rank
  stops both with the failing rank's message;
* a DDP training loop (DistributedDataParallel, each rank half of every batch) with a ``Tracker`` on the
  DDP-wrapped model: rank 0 writes the table, rank 1 writes nothing and holds the same rows; the table equals,
  value for value, a single-process Tracker on the same weights, and agrees with a 1-process training run of
  the same loop (the only difference: DDP averages two half-batch gradients, float32 rounding);
* the CLI: ``deepspan compare`` and ``deepspan track`` under ``torchrun --nproc_per_node 2`` print and write
  what one process prints and writes (:func:`test_cli_under_torchrun_matches_one_process`);
* the Lightning callback under Lightning's DDP strategy writes the table of a 1-process Lightning run.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import deepspan  # noqa: E402
from deepspan.data import Dataset, load_digits  # noqa: E402
from deepspan.linalg.streaming import ClassStatsAccumulator, GramAccumulator  # noqa: E402
from deepspan.track import Tracker  # noqa: E402
from test_distributed import _free_port, _launch  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
BATCH = 64           # extraction batch size: 300 probe samples -> shares of 128 and 172 (whole batches)
LAYERS = ["1", "3"]  # Linear(64, 32), Linear(32, 32)
EPOCHS = 2
TRAIN_N = 512

LAUNCHER = """\
import sys
sys.path.insert(0, {tests!r})
from test_distributed_training import worker_main
worker_main()
"""


def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


def make_probe() -> Dataset:
    d = load_digits()
    return Dataset("digits-probe", d.X[1200:1500], d.y[1200:1500], d.ids[1200:1500])


def make_accumulators() -> dict:
    return {"1": [GramAccumulator(), ClassStatsAccumulator()], "3": GramAccumulator()}


def make_tracker(model, out: Path | None, **kwargs) -> Tracker:
    return Tracker(model, make_probe(), LAYERS, k=3, center="both", n_vectors=2, batch_size=BATCH, out_dir=out,
                   spectrum_layer="4", output_layer="5", classifier="5", **kwargs)


def train_and_track(rank: int, world: int, out: Path | None) -> dict:
    """Train make_model() for EPOCHS epochs on TRAIN_N digits in batches of 64 (rank r of world takes its slice
    of every batch; DDP averages the gradients), stepping a Tracker at init and after every epoch."""
    d = load_digits()
    X = torch.as_tensor(d.X[:TRAIN_N], dtype=torch.float32)
    y = torch.as_tensor(d.y[:TRAIN_N])
    model = make_model()
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    tracker = make_tracker(net, None if out is None else out / f"tracked{rank}")
    alone = make_tracker(model, None, distributed=False) if rank == 0 and world > 1 else None
    steps = []
    tracker.step(epoch=0, label="init")
    if alone is not None:
        alone.step(epoch=0, label="init")
    for epoch in range(1, EPOCHS + 1):
        for i in range(0, TRAIN_N, 64):
            part = slice(i + rank * 64 // world, i + (rank + 1) * 64 // world)
            loss = F.cross_entropy(net(X[part]), y[part])
            opt.zero_grad()
            loss.backward()
            opt.step()
        steps.append(tracker.step(epoch=epoch))
        if alone is not None:
            alone.step(epoch=epoch)
    tracker.finalize()
    if alone is not None:
        alone.finalize()
    again = tracker.step(epoch=EPOCHS)  # already recorded: skipped on every rank, by rank 0's table
    return {"rows": tracker.rows, "order": tracker.order, "steps": steps, "again": again,
            "alone_rows": None if alone is None else alone.rows,
            "series": tracker.series("angle_to_data", "3"),
            "u": {k: v.copy() for k, v in tracker.U.items()},
            "weights": {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}}


def _caught(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return ("error", type(exc).__name__, str(exc))


PL_BATCH = 32  # per process under DDP; the 1-process run takes 2 x PL_BATCH (the same samples per step)


def lightning_fit(out: Path, devices: int) -> Tracker:
    """Fit a LightningModule around make_model() for EPOCHS epochs with a DeepspanCallback; ``devices`` CPU
    processes (``devices`` = 2: Lightning's DDP strategy inside the torchrun job that started this process)."""
    import lightning as L
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from deepspan.track.lightning import DeepspanCallback

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_model()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    d = load_digits()
    data = TensorDataset(torch.as_tensor(d.X[:TRAIN_N], dtype=torch.float32), torch.as_tensor(d.y[:TRAIN_N]))
    # each DDP process takes every devices-th sample, in order (Lightning's own DistributedSampler would
    # shuffle): per step the processes together see the same 64 samples as one process with batches of 64
    rank = int(os.environ.get("RANK", "0"))
    sampler = DistributedSampler(data, num_replicas=devices, rank=rank, shuffle=False) if devices > 1 else None
    loader = DataLoader(data, batch_size=PL_BATCH * 2 // devices, sampler=sampler)
    module = Module()
    tracker = Tracker(None, make_probe(), ["net.1", "net.3"], k=3, batch_size=BATCH, out_dir=out / f"pl{rank}")
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
                        use_distributed_sampler=False, callbacks=[DeepspanCallback(tracker)])
    trainer.fit(module, loader)
    return tracker


def worker_main() -> None:
    import datetime

    import torch.distributed as dist

    from deepspan.features import extract, gather_featureset

    out = Path(sys.argv[2])
    if sys.argv[1] == "lightning":  # Lightning sets up the process group itself
        tracker = lightning_fit(out, 2)
        with open(out / f"rank{tracker._rank_and_world()[0]}.pkl", "wb") as f:
            pickle.dump({"rows": tracker.rows, "order": tracker.order}, f)
        return
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=float(sys.argv[3])))
    rank, world = dist.get_rank(), dist.get_world_size()
    res: dict = {"rank": rank, "world": world}

    model = make_model()
    accs = make_accumulators()
    fs = extract(model, make_probe(), LAYERS, accumulators=accs, batch_size=BATCH, distributed=True)
    res["local"] = (fs.sample_ids, {k: fs[k] for k in fs.layers}, fs.labels, fs.provenance["distributed"])
    res["accs"] = {k: [a.state_dict() for a in (v if isinstance(v, list) else [v])] for k, v in accs.items()}
    res["acc_types"] = [type(accs["1"][0]._mean).__name__, type(accs["3"]._scatter).__name__]
    full = gather_featureset(fs)
    res["gathered"] = None if full is None else (full.sample_ids, {k: full[k] for k in full.layers}, full.labels,
                                                 full.sample_hash)
    # a layer that does not exist on rank 1 only: both ranks stop, rank 0 with rank 1's message
    res["failure"] = _caught(lambda: extract(model, make_probe(), ["nope" if rank == 1 else "1"], batch_size=BATCH,
                                             distributed=True))

    res["training"] = train_and_track(rank, world, out)
    with open(out / f"rank{rank}.pkl", "wb") as f:
        pickle.dump(res, f)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    pytest.importorskip("torch.distributed")
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "worker_training.py"
    script.write_text(LAUNCHER.format(tests=str(TESTS_DIR)))
    codes, _, logs = _launch(tmp, 2, "training", 60.0, torchrun=True, script=script)
    assert codes == [0], "\n\n".join(logs)[-6000:]
    results = []
    for r in range(2):
        with open(tmp / f"rank{r}.pkl", "rb") as f:
            results.append(pickle.load(f))
    return tmp, results


# --- extract(..., distributed=True) ---------------------------------------------------------------


def test_distributed_extract_shares_whole_batches_and_reduces_accumulators(job):
    _, results = job
    probe = make_probe()
    accs = make_accumulators()
    ref = deepspan.extract(make_model(), probe, LAYERS, accumulators=accs, batch_size=BATCH)
    # shares: whole batches of 64, in order, with global ids
    shares = [res["local"][3] for res in results]
    assert [(s["start"], s["stop"]) for s in shares] == [(0, 128), (128, 300)]
    for res, s in zip(results, shares):
        ids, feats, labels, _ = res["local"]
        assert ids.tolist() == probe.ids[s["start"]:s["stop"]].tolist()
        assert np.array_equal(labels, probe.y[s["start"]:s["stop"]])
        for layer in LAYERS:
            assert np.array_equal(feats[layer], ref[layer][s["start"]:s["stop"]])  # the same forward passes
    # every accumulator holds all 300 samples on both ranks, as one process's does, still torch state
    for res in results:
        assert res["acc_types"] == ["Tensor", "Tensor"]
        for layer, states in res["accs"].items():
            want = accs[layer] if isinstance(accs[layer], list) else [accs[layer]]
            for state, acc, other in zip(states, want, results[0]["accs"][layer]):
                got = type(acc).from_state_dict(state)
                assert got.n_samples == 300
                a, b = got.finalize(), acc.finalize()
                for field in ("mean", "scatter", "means", "scatters", "counts"):
                    if hasattr(a, field):
                        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-12, atol=1e-9)
                for key in ("mean", "scatter"):
                    if key in state:
                        assert np.array_equal(state[key], other[key])  # bitwise the same on both ranks


def test_gather_featureset_gives_rank0_the_single_process_features(job):
    _, results = job
    probe = make_probe()
    ref = deepspan.extract(make_model(), probe, LAYERS, batch_size=BATCH)
    ids, feats, labels, sample_hash = results[0]["gathered"]
    assert results[1]["gathered"] is None
    assert ids.tolist() == ref.sample_ids.tolist() and sample_hash == ref.sample_hash == probe.sample_hash
    assert np.array_equal(labels, ref.labels)
    for layer in LAYERS:
        assert feats[layer].dtype == ref[layer].dtype and np.array_equal(feats[layer], ref[layer])


def test_a_layer_failing_on_one_rank_stops_both(job):
    _, results = job
    status, kind, message = results[1]["failure"]
    assert (status, kind) == ("error", "InputError") and "unknown layer 'nope'" in message
    status, kind, message = results[0]["failure"]
    assert (status, kind) == ("error", "RankFailedError")
    assert "rank 1: InputError: unknown layer 'nope'" in message


# --- the Tracker inside DDP training ---------------------------------------------------------------


def _values(rows):
    return {(r["checkpoint"], r["layer"], r["centered"], r["quantity"]): r["value"] for r in rows}


def test_tracker_in_ddp_rank0_writes_the_single_process_table(job):
    tmp, results = job
    t0, t1 = results[0]["training"], results[1]["training"]
    assert t0["order"] == t1["order"] == ["init", "e1", "e2"]
    assert (tmp / "tracked0" / "rows.csv").is_file() and not (tmp / "tracked1").exists()  # rank 1 wrote nothing
    # both ranks hold the same rows; the written table is them
    assert t0["rows"] == t1["rows"] and t0["steps"] == t1["steps"] and t0["again"] == t1["again"] == []
    assert t0["series"] == t1["series"] and len(t0["series"]) == 3
    for key, U in t0["u"].items():
        assert np.array_equal(U, t1["u"][key])
    saved = json.loads((tmp / "tracked0" / "rows.json").read_text())
    assert saved["rows"] == t0["rows"] and saved["provenance"]["model"] == "Sequential"
    # the DDP table equals a single-process Tracker's on the same weights, value for value
    got, alone = _values(t0["rows"]), _values(t0["alone_rows"])
    assert got.keys() == alone.keys() and len(got) > 150
    assert {q for (_, _, _, q) in got} >= {"sigma_1", "energy_r2", "angle_to_data", "angle_to_previous",
                                           "angle_to_final", "nc1", "pi_star_C", "nc4"}
    assert got == alone  # bitwise: the same forward passes, gathered in order


def test_ddp_training_table_agrees_with_one_process_training(job, tmp_path):
    _, results = job
    one = train_and_track(0, 1, tmp_path)
    # the weights differ only by the rounding of averaging two half-batch gradients
    for name, w in one["weights"].items():
        np.testing.assert_allclose(results[0]["training"]["weights"][name], w, rtol=0, atol=1e-6)
    got, ref = _values(results[0]["training"]["rows"]), _values(one["rows"])
    assert got.keys() == ref.keys()
    for key, value in got.items():
        quantity = key[3]
        if quantity.startswith("angle"):  # degrees (measured: 3.7e-6 at most)
            assert value == pytest.approx(ref[key], abs=1e-4), key
        elif quantity in ("regime", "k90_pi_star"):
            assert value == ref[key], key
        else:  # measured: 1.1e-7 relative at most
            assert value == pytest.approx(ref[key], rel=1e-5, abs=1e-9), key
    with open(tmp_path / "tracked0" / "rows.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(one["rows"])


# --- the CLI under torchrun -------------------------------------------------------------------------

MODEL_FILE = """\
from torch import nn


def net():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
"""


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "--", "deepspan.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("command", ["compare", "track"])
def test_cli_under_torchrun_matches_one_process(tmp_path, command):
    """`deepspan compare` / `deepspan track` under torchrun (2 processes, the README's form: `-m -- deepspan.cli`)
    print what one process prints and write the same JSON / CSV."""
    from click.testing import CliRunner

    from deepspan.cli import main

    (tmp_path / "model.py").write_text(MODEL_FILE)
    for seed in range(3):
        torch.save(make_model(seed).state_dict(), tmp_path / f"e{seed}.pt")
    common = ["--model", "model.py:net"] if command == "compare" else []
    probe = ["--layer", "1", "--layer", "3", "--n", "297", "--batch-size", "64"]

    def args(tag: str) -> list[str]:
        if command == "compare":
            return ["compare", "e0.pt", "e1.pt", *common, *probe, "--json", f"{tag}.json", "--csv", f"{tag}.csv"]
        return ["track", "model.py:net", "e0.pt", "e1.pt", "e2.pt", *probe, "--out", tag]

    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        one = CliRunner().invoke(main, args("one"))
    finally:
        os.chdir(old)
    assert one.exit_code == 0, one.output
    two = _torchrun(args("two"), tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "Traceback" not in two.stderr
    assert two.stdout.replace("two", "one") == one.output  # rank 0 prints it once; rank 1 prints nothing
    if command == "compare":
        assert json.loads((tmp_path / "two.json").read_text()) == json.loads((tmp_path / "one.json").read_text())
        assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    else:
        assert (tmp_path / "two" / "rows.csv").read_bytes() == (tmp_path / "one" / "rows.csv").read_bytes()
        for name in sorted(p.name for p in (tmp_path / "one" / "u").iterdir()):
            assert np.array_equal(np.load(tmp_path / "two" / "u" / name), np.load(tmp_path / "one" / "u" / name))


def test_the_readme_script_computes_the_angle_on_two_processes(tmp_path):
    """The README's ~10-line script, as printed there, on 2 torchrun processes: the single-process angle."""
    import re

    readme = (TESTS_DIR.parent / "README.md").read_text()
    script = re.search(r"```python\n(# angle\.py -- run with: torchrun.*?)```", readme, re.S).group(1)
    assert len([line for line in script.splitlines() if line and not line.startswith("#")]) <= 13
    (tmp_path / "angle.py").write_text(script)
    from deepspan.zoo.models import MLP

    nets = []
    for seed in range(2):
        torch.manual_seed(seed)
        nets.append(MLP())
        torch.save(nets[-1].state_dict(), tmp_path / f"{'ab'[seed]}.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                          "127.0.0.1", "--master_port", str(_free_port()), "angle.py", "a.pt", "b.pt"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    probe = deepspan.data.load("digits", "test")
    fa, fb = (deepspan.extract(net, probe, "relu2") for net in nets)
    want = deepspan.angle(deepspan.pvector(fa["relu2"]), deepspan.pvector(fb["relu2"]))
    assert 1.0 < want < 89.0
    assert run.stdout == f"P-vector angle at relu2: {want:.4f} degrees\n"  # printed once, by rank 0


def test_cli_commands_that_do_not_split_refuse_torchrun(monkeypatch):
    from click.testing import CliRunner

    from deepspan.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    res = CliRunner().invoke(main, ["demo"])
    assert res.exit_code == 1 and "deepspan demo runs in one process; start it without torchrun" in res.output
    monkeypatch.setenv("RANK", "1")
    res = CliRunner().invoke(main, ["demo"])
    assert res.exit_code == 1 and res.output == ""  # the other ranks stop silently: rank 0 says why


# --- the Lightning callback under Lightning's DDP strategy ---------------------------------------------


def test_lightning_callback_under_ddp_writes_the_one_process_table(tmp_path):
    pytest.importorskip("lightning")
    script = tmp_path / "worker_lightning.py"
    script.write_text(LAUNCHER.format(tests=str(TESTS_DIR)))
    codes, _, logs = _launch(tmp_path, 2, "lightning", 60.0, torchrun=True, script=script)
    assert codes == [0], "\n\n".join(logs)[-6000:]
    ranks = []
    for r in range(2):
        with open(tmp_path / f"rank{r}.pkl", "rb") as f:
            ranks.append(pickle.load(f))
    assert ranks[0] == ranks[1] and ranks[0]["order"] == ["init", "e1", "e2"]
    assert (tmp_path / "pl0" / "rows.json").is_file() and not (tmp_path / "pl1").exists()  # rank 1 wrote nothing
    one = lightning_fit(tmp_path / "one", 1)
    got, ref = _values(ranks[0]["rows"]), _values(one.rows)
    assert got.keys() == ref.keys() and len(got) > 30
    for key, value in got.items():
        if key[0] == "init":
            assert value == ref[key], key  # the same initial weights, the same forward passes
        elif key[3].startswith("angle"):
            assert value == pytest.approx(ref[key], abs=1e-4), key
        else:
            assert value == pytest.approx(ref[key], rel=1e-5, abs=1e-9), key


# --- one process: the pieces, without a process group -----------------------------------------------


def test_shard_align_splits_whole_blocks():
    from deepspan.distributed import shard

    for n in (0, 1, 63, 64, 65, 300, 1000):
        for world in (1, 2, 3, 5):
            for align in (1, 7, 64):
                parts = [shard(n, r, world, align=align) for r in range(world)]
                assert np.array_equal(np.concatenate([p.indices for p in parts]), np.arange(n))
                assert all(p.start % align == 0 for p in parts if len(p))
                blocks = [-(-len(p) // align) for p in parts]
                assert max(blocks) - min(blocks) <= 1  # whole blocks, as even as they go
    assert [(p.start, p.stop) for p in (shard(300, r, 2, align=64) for r in range(2))] == [(0, 128), (128, 300)]
    with pytest.raises(deepspan.InputError, match="align must be a positive"):
        shard(10, 0, 2, align=0)


def test_extraction_shares_are_whole_batches_unless_ranks_would_idle():
    from deepspan.features.extract import share

    def spans(n, world, batch):
        return [(p.start, p.stop) for p in (share(n, r, world, batch) for r in range(world))]

    assert spans(300, 2, 64) == [(0, 128), (128, 300)]
    assert spans(297, 2, 256) == [(0, 256), (256, 297)]  # the README script: whole batches
    assert spans(300, 3, 256) == [(0, 100), (100, 200), (200, 300)]  # 2 batches for 3 ranks: 100 each
    assert spans(2, 3, 256) == [(0, 0), (0, 1), (1, 2)]  # fewer samples than ranks: one rank has none


def test_load_state_dict_replaces_state_in_place_and_keeps_the_device():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    full = GramAccumulator().update(X)
    acc = GramAccumulator().update(torch.as_tensor(X[:10]))  # torch state
    assert acc.load_state_dict(full.state_dict()) is acc
    assert isinstance(acc._mean, torch.Tensor) and acc.n_samples == 40
    np.testing.assert_array_equal(acc.finalize().scatter, full.finalize().scatter)
    host = GramAccumulator().update(X[:3])
    host.load_state_dict(full.state_dict())
    assert isinstance(host._mean, np.ndarray)
    cls = ClassStatsAccumulator().update(torch.as_tensor(X), torch.as_tensor(np.arange(40) % 3))
    other = ClassStatsAccumulator().update(torch.as_tensor(X[:6]), torch.as_tensor(np.arange(6) % 2))
    other.load_state_dict(cls.state_dict())
    assert other._state_device() == torch.device("cpu") and other.n_samples == 40
    np.testing.assert_array_equal(other.finalize().scatters, cls.finalize().scatters)
    with pytest.raises(deepspan.InputError, match="not 'GramAccumulator'"):
        GramAccumulator().load_state_dict(cls.state_dict())


def test_rows_of_every_data_kind_gives_the_rows_and_global_ids():
    from torch.utils.data import DataLoader, TensorDataset

    from deepspan.features.extract import count_samples, iterate_batches, rows_of

    probe = make_probe()
    X = torch.as_tensor(probe.X, dtype=torch.float32)
    kinds = {"dataset": probe, "tensor": X, "array": probe.X,
             "torch-dataset": TensorDataset(X, torch.as_tensor(probe.y)),
             "loader": DataLoader(TensorDataset(X, torch.as_tensor(probe.y)), batch_size=50)}
    for name, data in kinds.items():
        assert count_samples(data) == 300
        part, ids = rows_of(data, 100, 164)
        rows = np.concatenate([np.asarray(x).reshape(len(x), -1) for x, _ in iterate_batches(part)[0]])
        np.testing.assert_array_equal(rows, probe.X[100:164].reshape(64, -1).astype(rows.dtype), err_msg=name)
        want = probe.ids[100:164] if name == "dataset" else np.arange(100, 164).astype(str)
        assert ids.tolist() == want.tolist(), name
    shuffled = DataLoader(TensorDataset(X), batch_size=50, shuffle=True)
    with pytest.raises(deepspan.InputError, match="sequential one"):
        rows_of(shuffled, 0, 10)
    with pytest.raises(deepspan.InputError, match="drop_last"):
        rows_of(DataLoader(TensorDataset(X), batch_size=64, drop_last=True), 0, 10)
    with pytest.raises(deepspan.InputError, match="one id per sample"):
        rows_of(X, 0, 10, ids=np.arange(5))

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(X)

    with pytest.raises(deepspan.InputError, match="needs their number up front"):
        count_samples(DataLoader(Stream(), batch_size=10))


def test_distributed_flags_without_a_process_group_change_nothing(tmp_path):
    from deepspan.features import gather_featureset

    model, probe = make_model(), make_probe()
    plain = deepspan.extract(model, probe, LAYERS, batch_size=BATCH)
    flagged = deepspan.extract(model, probe, LAYERS, batch_size=BATCH, distributed=True)
    assert gather_featureset(flagged) is flagged
    for layer in LAYERS:
        assert np.array_equal(plain[layer], flagged[layer])
    assert "distributed" not in flagged.provenance
    a = make_tracker(model, tmp_path / "a")
    b = make_tracker(model, tmp_path / "b", distributed=True)
    a.step(epoch=0)
    b.step(epoch=0)
    assert a.rows == b.rows
    with pytest.raises(deepspan.InputError, match="distributed must be None"):
        make_tracker(model, None, distributed="yes")


def test_a_data_parallel_wrapper_is_unwrapped_and_keeps_the_names_given(tmp_path):
    model, probe = make_model(), make_probe()
    wrapped = nn.DataParallel(model)  # on CPU it just calls the module; DDP needs a process group
    plain = deepspan.extract(model, probe, ["1", "3"], batch_size=BATCH)
    fs = deepspan.extract(wrapped, probe, ["module.1", "3"], batch_size=BATCH, accumulators={"module.1": GramAccumulator()})
    assert fs.layers == ["module.1", "3"]
    assert np.array_equal(fs["module.1"], plain["1"]) and np.array_equal(fs["3"], plain["3"])
    t = Tracker(wrapped, probe, ["module.3"], k=2, batch_size=BATCH, spectrum_layer="module.4", output_layer="5",
                classifier="module.5", out_dir=tmp_path)
    t.step(epoch=0)
    ref = Tracker(model, probe, ["3"], k=2, batch_size=BATCH, spectrum_layer="4", output_layer="5", classifier="5")
    ref.step(epoch=0)
    assert [r["value"] for r in t.rows] == [r["value"] for r in ref.rows]
    assert json.loads((tmp_path / "rows.json").read_text())["provenance"]["model"] == "Sequential"
    with pytest.raises(deepspan.InputError, match="classifier 'nope' is not a module"):
        Tracker(model, probe, ["3"], batch_size=BATCH, spectrum_layer="4", classifier="nope").step(epoch=0)
