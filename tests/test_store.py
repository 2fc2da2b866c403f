import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from grokbook import RunConfig
from grokbook.store import CorruptRunWarning, RunStore
from grokbook.train import METRICS, fit

# A run long enough to be interrupted part-way: ~2-5 s on a 2-core CPU.
SLOW = dict(p=23, r=0.5, n_layers=1, d_model=16, n_heads=2, steps=300, n_snapshots=8)

CHILD = textwrap.dedent("""
    import sys
    from grokbook import RunConfig
    from grokbook.store import RunStore
    cfg = RunConfig(**{cfg})
    RunStore(sys.argv[1], checkpoint_every_s=0.2).get_or_train(cfg, progress=False)
    print("finished", flush=True)
""")


def assert_same_run(a, b):
    for name in METRICS:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)
    for attr in ("val_steps", "val_loss", "val_acc", "snapshot_steps", "snapshots"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)


def start_child(tmp_path: Path, cfg: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD.format(cfg=cfg), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(tmp_path: Path, cfg: RunConfig, proc: subprocess.Popen) -> None:
    ckpt = tmp_path / "runs" / cfg.hash() / "checkpoint.bin"
    deadline = time.time() + 120
    while not ckpt.exists():
        assert proc.poll() is None, f"child ended before a checkpoint: {proc.communicate()}"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_identical(tmp_path, sig):
    cfg = RunConfig(**SLOW)
    proc = start_child(tmp_path, SLOW)
    wait_for_checkpoint(tmp_path, cfg, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert "finished" not in out
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in err and "checkpoint saved" in err
    store = RunStore(tmp_path)
    assert cfg not in store and (tmp_path / "runs" / cfg.hash() / "checkpoint.bin").exists()
    resumed = store.get_or_train(cfg, progress=False)
    assert "resumed from step" in (tmp_path / "train.log").read_text()
    assert_same_run(resumed, fit(cfg, progress=False))
    assert not (tmp_path / "runs" / cfg.hash() / "checkpoint.bin").exists()


def test_corrupted_run_is_reported_and_retrained(tmp_path, tiny):
    store = RunStore(tmp_path)
    good = store.get_or_train(tiny, progress=False)
    path = tmp_path / "runs" / tiny.hash() / "run.bin"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.warns(CorruptRunWarning, match="fails its SHA-256 check"):
        assert store.load(tiny) is None
    assert (path.parent / "run.bin.corrupt").exists()  # kept aside, not deleted
    again = store.get_or_train(tiny, progress=False)
    assert_same_run(good, again)
    assert len((tmp_path / "train.log").read_text().splitlines()) == 2


def test_truncated_run_is_reported_and_retrained(tmp_path, tiny):
    store = RunStore(tmp_path)
    good = store.get_or_train(tiny, progress=False)
    path = tmp_path / "runs" / tiny.hash() / "run.bin"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(CorruptRunWarning):
        again = store.get_or_train(tiny, progress=False)
    assert_same_run(good, again)


def test_corrupted_checkpoint_is_reported_and_ignored(tmp_path, tiny):
    store = RunStore(tmp_path)
    ckpt = tmp_path / "runs" / tiny.hash() / "checkpoint.bin"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x00" * 100)
    with pytest.warns(CorruptRunWarning, match="checkpoint.bin"):
        run = store.get_or_train(tiny, progress=False)
    assert_same_run(run, fit(tiny, progress=False))


def test_concurrent_requests_train_once(tmp_path):
    cfg = RunConfig(**SLOW)
    procs = [start_child(tmp_path, SLOW) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len((tmp_path / "train.log").read_text().splitlines()) == 1
    store = RunStore(tmp_path)
    assert_same_run(store.load(cfg), fit(cfg, progress=False))


def test_store_lists_configs_and_diverged_runs_are_stored(tmp_path, tiny):
    store = RunStore(tmp_path)
    bad = tiny.replace(optimizer="sgd", lr=1e6, warmup_steps=0)
    run = store.get_or_train(bad, progress=False)
    assert run.diverged_at is not None
    assert store.load(bad).diverged_at == run.diverged_at
    assert list(store.configs()) == [bad]
    assert json.loads((tmp_path / "runs" / bad.hash() / "config.json").read_text())["lr"] == 1e6


def test_default_home_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GROKBOOK_HOME", str(tmp_path / "elsewhere"))
    assert RunStore().root == tmp_path / "elsewhere"
