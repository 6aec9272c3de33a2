"""deepspan.distributed on real multi-process gloo jobs on loopback (spawned by the tests).

Each job starts 2 or 3 Python processes with a small launcher script written to ``tmp_path`` that runs
:func:`worker_main` below; the ranks write their results to files and the tests compare them, here,
with single-process references. One job per world size does every check (each process imports torch,
~3 s); the 2-rank job goes through ``python -m torch.distributed.run`` (the README's ``torchrun``), the
others start the ranks directly (so nothing but the process group stops a surviving rank).

* ``all_reduce`` of every accumulator kind of ``test_accumulator_protocol.CASES`` equals one pass over
  all rows (finalized statistics field by field to 1e-12 relative), bitwise the same on every rank,
  ``acc`` unchanged; also with a rank that holds no samples;
* ``reduce`` to dst=0 (and to the last rank): the all_reduce result there, ``None`` elsewhere;
* ``pvector`` equals single-process ``deepspan.pvector`` (u to 1e-10, singular values to 1e-12 relative,
  the sample hash of the ids), centered and uncentered, uneven shards (3 ranks on 301 samples), list /
  callable / torch / single-array batches, a Shard, round-robin shards with ``local_indices``;
* ``angle`` equals ``deepspan.angle(deepspan.pvector(A), deepspan.pvector(B))`` to 1e-6 degrees;
* a local failure on one rank (a second pass in another order, ids on two ranks, different accumulator
  kinds) is raised on every rank, and the group keeps working;
* a rank that raises *before* a collective (and exits, or stays alive) makes the others exit with an
  error within the process group's timeout, with no process left hanging.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import deepspan
from deepspan.features.featureset import hash_sample_ids
from test_accumulator_protocol import CASES, N, assert_states_equal, assert_stats_close, fed, one_pass

TESTS_DIR = Path(__file__).resolve().parent
CHECK_TIMEOUT_S = 60.0   # process-group timeout of the check jobs (nothing should wait that long)
FAIL_TIMEOUT_S = 5.0     # process-group timeout of the failure jobs: the survivors must stop within it
HARD_DEADLINE_S = 120.0  # every process still running then is killed and the test fails

LAUNCHER = """\
import sys
sys.path.insert(0, {tests!r})
from test_distributed import worker_main
worker_main()
"""


# --- data shared by the workers and the references ------------------------------------------------


def n_samples(world: int) -> int:
    return 300 if world == 2 else 301  # 301 on 3 ranks: shards of 100, 100, 101


def features(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (n x 12, well separated spectrum, large column means), B (n x 9, another 'model'), the ids."""
    rng = np.random.default_rng(20250101)
    A = rng.standard_normal((n, 12)) * np.geomspace(4.0, 0.5, 12) + 3.0 * rng.standard_normal(12)
    B = np.tanh(A @ rng.standard_normal((12, 9)) / 3.0) + 0.3 * rng.standard_normal((n, 9)) + 1.0
    ids = np.array([f"img{i:05d}" for i in range(n)])
    return A, B, ids


def _batches(x: np.ndarray, size: int = 16) -> list[np.ndarray]:
    return [x[i:i + size] for i in range(0, len(x), size)]


def _caught(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return ("error", type(exc).__name__, str(exc))


# --- the worker (runs in the spawned ranks) -------------------------------------------------------


def worker_main() -> None:
    import datetime

    import torch
    import torch.distributed as dist

    from deepspan import distributed as dd

    job, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=float(sys.argv[3])))
    rank, world = dist.get_rank(), dist.get_world_size()
    res: dict = {"rank": rank, "world": world}
    if job.startswith("fail-"):
        _fail_job(job, out, rank, world)
        return

    # 1. every accumulator kind: all_reduce and reduce
    for name in sorted(CASES):
        acc = fed(name, dd.shard(N).slice)
        before = acc.state_dict()
        res[f"local_n/{name}"] = acc.n_samples
        red = dd.all_reduce(acc)
        res[f"all_reduce/{name}"] = (red is acc, red.n_samples, red.finalize(), red.state_dict())
        res[f"unchanged/{name}"] = (before, acc.state_dict())
        got = dd.reduce(acc, dst=0)
        res[f"reduce0/{name}"] = None if got is None else got.state_dict()
        got = dd.reduce(acc, dst=world - 1)
        res[f"reduce_last/{name}"] = None if got is None else got.state_dict()
        res[f"unchanged_after_reduce/{name}"] = acc.state_dict()
    # a rank without samples (shard(world - 1) gives rank 0 nothing)
    A, B, ids = features(n_samples(world))
    part = dd.shard(world - 1)
    assert len(part) == (0 if rank == 0 else 1)
    res["empty_rank"] = dd.all_reduce(deepspan.GramAccumulator().update(A[part.slice])).finalize()
    # classes held by some ranks only: sorted labels, so contiguous shards hold different classes
    labels = np.arange(len(A)) * 6 // len(A)
    part = dd.shard(len(A))
    res["class_split"] = dd.all_reduce(deepspan.ClassStatsAccumulator().update(A[part.slice], labels[part.slice]))
    res["class_split"] = (res["class_split"].finalize(), dd.reduce(
        deepspan.ClassStatsAccumulator().update(A[part.slice], labels[part.slice]), dst=world - 1))
    res["class_split"] = (res["class_split"][0], None if res["class_split"][1] is None else
                          res["class_split"][1].finalize())
    # an accumulator of the user's own (not a deepspan class): gathered whole and merged in rank order
    res["user_acc"] = dd.all_reduce(SumAccumulator().update(A[part.slice])).finalize()
    # ranks reducing different kinds: refused on every rank
    other = deepspan.GramAccumulator() if rank == 0 else deepspan.CrossGramAccumulator()
    res["mixed_kinds"] = _caught(lambda: dd.all_reduce(other))

    # 2. the P-vector
    part = dd.shard(ids)
    local, local_b = A[part.slice], B[part.slice]
    batches = _batches(local)
    p = {
        "list-uncentered": dd.pvector(batches, part.ids, center=False),
        "callable-torch-centered": dd.pvector(lambda: (torch.as_tensor(b) for b in batches), part.ids, center=True),
        "array-shard-centered": dd.pvector(local, part, center=True),
        "no-ids-uncentered": dd.pvector(tuple(batches), None),
    }
    rr = np.arange(rank, len(ids), world)  # round robin: rank r holds samples r, r + world, ...
    p["round-robin-centered"] = dd.pvector(_batches(A[rr], 7), ids[rr], center=True, local_indices=rr)
    res["pvector"] = {k: (v.u, v.v, v.singular_values, v.total_energy, v.sample_hash, v.n_samples, v.centered)
                      for k, v in p.items()}

    # 3. the angle (one pass: generators are fine)
    res["angle"] = {
        center: dd.angle((b for b in batches), _batches(local_b), part.ids, center=center)
        for center in (False, True)
    }
    Q = np.linalg.qr(np.random.default_rng(5).standard_normal((12, 12)))[0]
    res["angle_rotated"] = dd.angle(local, local @ Q, part, center=False)  # the same P-vector: 0 degrees

    # 4. local failures are raised on every rank, and the group keeps working
    def shuffled_on_last_rank():
        calls = {"n": 0}

        def source():
            calls["n"] += 1
            flip = rank == world - 1 and calls["n"] == 2
            return iter(batches[::-1] if flip else batches)
        return source

    res["second_pass_reordered"] = _caught(lambda: dd.pvector(shuffled_on_last_rank(), part.ids))
    wrong_ids = dd.shard(ids, 0, world).ids if rank == 1 else part.ids  # rank 1 claims rank 0's ids
    res["ids_on_two_ranks"] = _caught(lambda: dd.angle(local[:len(wrong_ids)], local_b[:len(wrong_ids)], wrong_ids))
    res["after_failures"] = dd.all_reduce(deepspan.GramAccumulator().update(local)).n_samples
    with open(out / f"rank{rank}.pkl", "wb") as f:
        pickle.dump(res, f)
    dist.destroy_process_group()


def _fail_job(job: str, out: Path, rank: int, world: int) -> None:
    """Rank world-1 raises before all_reduce (and exits, or stays alive); the others wait in all_reduce."""
    from deepspan import distributed as dd

    A = features(n_samples(world))[0]
    acc = deepspan.GramAccumulator().update(A[dd.shard(len(A)).slice])
    if rank == world - 1:
        try:
            raise RuntimeError("simulated failure before the collective")
        finally:
            if job == "fail-hangs":  # the failed rank does not exit (e.g. stuck joining data-loader workers)
                (out / f"hanging{rank}").write_text("")
                time.sleep(600)
    (out / f"waiting{rank}").write_text(repr(time.time()))
    dd.all_reduce(acc)
    (out / f"returned{rank}").write_text("all_reduce returned although a rank never joined")


class SumAccumulator:
    """A user's accumulator (the protocol only, not a deepspan class): row count and column sums."""

    def __init__(self, n: int = 0, total=None) -> None:
        self.n, self.total = n, total

    @property
    def n_samples(self) -> int:
        return self.n

    def update(self, batch):
        x = np.asarray(batch, dtype=np.float64)
        self.n += len(x)
        self.total = x.sum(0) if self.total is None else self.total + x.sum(0)
        return self

    def merge(self, other):
        self.n += other.n
        if other.total is not None:
            self.total = other.total if self.total is None else self.total + other.total
        return self

    def finalize(self):
        return self.n, self.total

    def state_dict(self):
        return {"kind": "SumAccumulator", "n": self.n, "total": self.total}

    @classmethod
    def from_state_dict(cls, d):
        return cls(d["n"], d["total"])


# --- the launcher (runs in the test process) ------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(tmp: Path, world: int, job: str, pg_timeout: float, torchrun: bool = False, wait_for=None,
            script: Path | None = None):
    """Start the job's ranks; wait until those in ``wait_for`` (default: all) exit, or HARD_DEADLINE_S; kill what
    remains (each rank runs in its
    own session, killed by its process-group id). Returns (return codes, exit times as time.time() or None for a
    process killed at the deadline, logs). ``script``: a launcher of another test module's worker (default:
    this module's :func:`worker_main`)."""
    if script is None:
        script = tmp / "worker.py"
        script.write_text(LAUNCHER.format(tests=str(TESTS_DIR)))
    port = _free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [str(script), job, str(tmp), str(pg_timeout)]
    if torchrun:
        cmds = [([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world), "--master_addr",
                  "127.0.0.1", "--master_port", str(port), *args], env)]
    else:
        cmds = [([sys.executable, *args], {**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(world)]
    start = time.monotonic()
    procs, logs = [], []
    for i, (cmd, e) in enumerate(cmds):
        log = open(tmp / f"log{i}.txt", "wb")
        logs.append(log)
        procs.append(subprocess.Popen(cmd, env=e, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    exited = [None] * len(procs)
    wait_for = range(len(procs)) if wait_for is None else wait_for
    while time.monotonic() - start < HARD_DEADLINE_S and any(exited[i] is None for i in wait_for):
        for i, proc in enumerate(procs):
            if exited[i] is None and proc.poll() is not None:
                exited[i] = time.time()
        time.sleep(0.05)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)  # the session this test started for that rank
            proc.wait()
    for log in logs:
        log.close()
    texts = [(tmp / f"log{i}.txt").read_text(errors="replace") for i in range(len(procs))]
    return [proc.returncode for proc in procs], exited, texts


@pytest.fixture(scope="module", params=[2, 3], ids=["2-ranks", "3-ranks"])
def job(request, tmp_path_factory):
    pytest.importorskip("torch.distributed")
    world = request.param
    tmp = tmp_path_factory.mktemp(f"dist{world}")
    codes, _, logs = _launch(tmp, world, "checks", CHECK_TIMEOUT_S, torchrun=world == 2)
    assert codes == [0] * len(codes), "\n\n".join(logs)[-6000:]
    results = []
    for r in range(world):
        with open(tmp / f"rank{r}.pkl", "rb") as f:
            results.append(pickle.load(f))
    assert [res["rank"] for res in results] == list(range(world))
    return world, results


# --- the checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_all_reduce_equals_one_pass_on_every_rank(job, name):
    world, results = job
    ref = one_pass(name).finalize()
    for res in results:
        is_same, n, stats, state = res[f"all_reduce/{name}"]
        assert not is_same and n == N
        assert_stats_close(stats, ref)
        assert_states_equal(state, results[0][f"all_reduce/{name}"][3])  # bitwise the same on every rank
        before, after = res[f"unchanged/{name}"]
        assert_states_equal(after, before)  # acc itself is not changed
    # the ranks really held different rows: contiguous shards of N // world or N // world + 1 rows
    local = [res[f"local_n/{name}"] for res in results]
    assert sum(local) == N and max(local) - min(local) <= 1 and len(local) == world


@pytest.mark.parametrize("name", sorted(CASES))
def test_reduce_gives_dst_the_all_reduce_result_and_others_none(job, name):
    world, results = job
    reduced = results[0][f"all_reduce/{name}"][3]
    for res in results:
        r = res["rank"]
        for key, dst in ((f"reduce0/{name}", 0), (f"reduce_last/{name}", world - 1)):
            if r == dst:
                assert_states_equal(res[key], reduced)
            else:
                assert res[key] is None
        assert_states_equal(res[f"unchanged_after_reduce/{name}"], res[f"unchanged/{name}"][0])


def test_classes_on_some_ranks_only_and_a_users_accumulator(job):
    world, results = job
    A = features(n_samples(world))[0]
    labels = np.arange(len(A)) * 6 // len(A)
    ref = deepspan.ClassStatsAccumulator().update(A, labels).finalize()
    for res in results:
        got, reduced = res["class_split"]
        assert got.classes.tolist() == list(range(6))
        np.testing.assert_array_equal(got.counts, ref.counts)
        np.testing.assert_allclose(got.means, ref.means, rtol=1e-12)
        np.testing.assert_allclose(got.scatters, ref.scatters, rtol=1e-12, atol=1e-9)
        if res["rank"] == world - 1:
            np.testing.assert_allclose(reduced.scatters, ref.scatters, rtol=1e-12, atol=1e-9)
        else:
            assert reduced is None
        n, total = res["user_acc"]
        assert n == len(A) and np.allclose(total, A.sum(0), rtol=1e-12)


def test_a_rank_without_samples_and_mixed_kinds(job):
    world, results = job
    A = features(n_samples(world))[0]
    ref = deepspan.GramAccumulator().update(A[:world - 1]).finalize()
    for res in results:
        assert_stats_close(res["empty_rank"], ref)
        status, kind, message = res["mixed_kinds"]
        assert (status, kind) == ("error", "InputError")
        assert "rank 0: GramAccumulator, rank 1: CrossGramAccumulator" in message


@pytest.mark.parametrize("case", ["list-uncentered", "callable-torch-centered", "array-shard-centered",
                                  "no-ids-uncentered", "round-robin-centered"])
def test_distributed_pvector_equals_single_process(job, case):
    world, results = job
    A, _, ids = features(n_samples(world))
    center = case.endswith("-centered")
    ref = deepspan.pvector(A, center=center)
    exact = deepspan.pvector(A, center=center, method="exact")
    np.testing.assert_allclose(exact.u, ref.u, rtol=0, atol=1e-10)  # so the route of the reference does not matter
    np.testing.assert_allclose(exact.singular_values, ref.singular_values, rtol=1e-12, atol=0)
    assert ref.gap < 0.9
    for res in results:
        u, v, s, energy, sample_hash, n, centered = res["pvector"][case]
        assert n == len(A) and centered == center and u.shape == (len(A),)
        np.testing.assert_allclose(u, ref.u, rtol=0, atol=1e-10)
        np.testing.assert_allclose(np.abs(v), np.abs(ref.v), rtol=0, atol=1e-10)
        assert np.sign(v @ ref.v) == 1.0  # the same sign rule
        np.testing.assert_allclose(s, ref.singular_values, rtol=1e-12, atol=0)
        assert energy == pytest.approx(ref.total_energy, rel=1e-12)
        assert sample_hash == (None if case == "no-ids-uncentered" else hash_sample_ids(ids))
        assert np.array_equal(u, results[0]["pvector"][case][0])  # bitwise the same on every rank


def test_distributed_angle_equals_single_process(job):
    world, results = job
    A, B, _ = features(n_samples(world))
    for res in results:
        for center in (False, True):
            ref = deepspan.angle(deepspan.pvector(A, center=center), deepspan.pvector(B, center=center))
            assert 1.0 < ref < 89.0
            assert res["angle"][center] == pytest.approx(ref, abs=1e-6)
            assert res["angle"][center] == results[0]["angle"][center]
        # the cross-Gram route resolves the cosine: an angle of exactly 0 comes back below ~1e-6 degrees
        assert 0.0 <= res["angle_rotated"] < 1e-6 * 5


def test_local_failures_are_raised_on_every_rank(job):
    world, results = job
    for res in results:
        r = res["rank"]
        status, kind, message = res["second_pass_reordered"]
        assert status == "error"
        if r == world - 1:
            assert kind == "SampleMismatchError" and "another order" in message
        else:
            assert kind == "RankFailedError" and f"rank {world - 1}: SampleMismatchError" in message
        status, kind, message = res["ids_on_two_ranks"]
        assert (status, kind) == ("error", "SampleMismatchError")
        assert "is on rank 0 and on rank 1" in message
        assert res["after_failures"] == n_samples(world)  # the group still works


@pytest.mark.parametrize("mode", ["fail-exits", "fail-hangs"])
def test_a_rank_that_raises_before_a_collective_stops_the_others(tmp_path, mode):
    """The last rank raises before all_reduce; it exits (fail-exits) or stays alive (fail-hangs). The ranks
    waiting in all_reduce must exit non-zero within the process group's timeout (FAIL_TIMEOUT_S) of entering
    it, with gloo's error; none may hang (a hanging rank would be killed at HARD_DEADLINE_S, failing here)."""
    pytest.importorskip("torch.distributed")
    world = 2 if mode == "fail-exits" else 3
    launched = time.time()
    survivors = range(world - 1)
    codes, exited, logs = _launch(tmp_path, world, mode, FAIL_TIMEOUT_S,
                                  wait_for=range(world) if mode == "fail-exits" else survivors)
    for r in survivors:
        assert exited[r] is not None, f"rank {r} hung:\n{logs[r][-3000:]}"
        assert codes[r] != 0
        assert not (tmp_path / f"returned{r}").exists()
        entered = float((tmp_path / f"waiting{r}").read_text())  # time.time() when it entered all_reduce
        assert exited[r] - entered < FAIL_TIMEOUT_S + 10.0  # the timeout, plus the time to print and exit
        assert exited[r] - launched < 60.0
        assert "simulated failure" not in logs[r]
        assert ("Timed out" in logs[r]) or ("Connection closed" in logs[r]), logs[r][-3000:]
    if mode == "fail-exits":
        assert codes[world - 1] != 0 and "simulated failure before the collective" in logs[world - 1]
        assert exited[world - 1] is not None
    else:
        assert (tmp_path / f"hanging{world - 1}").exists()
        assert exited[world - 1] is None  # it was still alive after the others had stopped: killed here
        assert all("Timed out" in logs[r] for r in survivors), logs[0][-3000:]


# --- one process: no process group ----------------------------------------------------------------


def test_shard_slices_are_contiguous_cover_everything_and_carry_ids():
    from deepspan.distributed import shard

    for n in (0, 1, 2, 41, 301):
        for world in (1, 2, 3, 7):
            parts = [shard(n, r, world) for r in range(world)]
            assert [(p.start, p.stop) for p in parts] == [(r * n // world, (r + 1) * n // world) for r in range(world)]
            assert np.array_equal(np.concatenate([p.indices for p in parts]), np.arange(n))
            assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    ids = np.array([f"s{i}" for i in range(10)])
    p = shard(ids, 2, 3)
    assert (p.start, p.stop, p.n_total) == (6, 10, 10) and p.ids.tolist() == ["s6", "s7", "s8", "s9"]
    assert ids[p.slice].tolist() == p.ids.tolist() and shard(10, 2, 3).ids is None
    assert (shard(5).rank, shard(5).world, len(shard(5))) == (0, 1, 5)  # no process group: everything on rank 0
    for bad in [dict(rank=3, world=3), dict(rank=-1, world=2), dict(rank=0, world=0), dict(rank=True, world=2)]:
        with pytest.raises(deepspan.InputError):
            shard(10, **bad)
    with pytest.raises(deepspan.InputError, match="1-D"):
        shard(np.zeros((3, 2)), 0, 1)


def test_without_a_process_group_everything_is_local():
    from deepspan import distributed as dd

    A, B, ids = features(60)
    acc = deepspan.GramAccumulator().update(A)
    assert dd.all_reduce(acc) is acc and dd.reduce(acc) is acc
    with pytest.raises(deepspan.InputError, match="only rank is 0"):
        dd.reduce(acc, dst=1)
    with pytest.raises(deepspan.InputError, match="needs a deepspan accumulator"):
        dd.all_reduce(np.eye(3))
    for center in (False, True):
        p = dd.pvector(lambda: iter(_batches(A, 7)), ids, center=center)
        ref = deepspan.pvector(A, center=center, sample_hash=hash_sample_ids(ids))
        np.testing.assert_allclose(p.u, ref.u, atol=1e-12, rtol=0)
        assert p.sample_hash == ref.sample_hash and p.method == "gram-stream"
        a = dd.angle(iter(_batches(A)), _batches(B), ids, center=center)
        assert a == pytest.approx(deepspan.angle(ref, deepspan.pvector(B, center=center)), abs=1e-9)


def test_bad_local_inputs_get_clear_errors():
    from deepspan import distributed as dd

    A, B, ids = features(30)
    with pytest.raises(deepspan.InputError, match="one-shot iterator"):
        dd.pvector(iter(_batches(A)), ids)
    with pytest.raises(deepspan.SampleMismatchError, match="local_ids has 29 ids"):
        dd.pvector(A, ids[:29])
    with pytest.raises(deepspan.SampleMismatchError, match="local_b gave more batches"):
        dd.angle(_batches(A)[:1], _batches(B), None)
    with pytest.raises(deepspan.SampleMismatchError, match="not a permutation"):
        dd.pvector(A, ids, local_indices=np.arange(1, 31))
    with pytest.raises(deepspan.SampleMismatchError, match="appears twice on rank 0"):
        dd.pvector(A, np.r_[ids[:29], ids[:1]])
    with pytest.raises(deepspan.InputError, match="callable returning"):
        dd.pvector(42, None)


def test_importing_deepspan_does_not_import_torch_distributed():
    code = ("import sys, deepspan, deepspan.distributed; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
