"""The run store: resume after a kill, concurrent callers, corrupt and hostile files,
a full disk. No test here waits for the clock: interrupted children announce each
checkpoint and wait to be told to go on, so every signal lands at a known step."""

import errno
import hashlib
import io
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from grokbook import RunConfig
from grokbook.ensemble import fit_ensemble
from grokbook.store import CorruptRunWarning, RunStore, StoreError, StoreWarning, default_home
from grokbook.sweeping import grid
from grokbook.trainer import METRICS
from grokbook.training import fit

SLOW = dict(p=23, r=0.5, n_layers=1, d_model=16, n_heads=2, steps=300, n_snapshots=8)

# A child that trains through the store, prints "checkpoint K" after each checkpoint
# is written and then blocks until the test writes a line to its stdin.
CHILD = textwrap.dedent("""
    import sys
    from grokbook import RunConfig
    from grokbook.store import RunStore

    class Announcing(RunStore):
        def _save_checkpoint(self, config, state):
            super()._save_checkpoint(config, state)
            if config == configs[-1]:  # the last row of an ensemble is written last
                print(f"checkpoint {{state.step}}", flush=True)
                sys.stdin.readline()

    configs = [RunConfig(**c) for c in {cfgs}]
    store = Announcing(sys.argv[1], checkpoint_every_s=float("inf"), checkpoint_every_steps=50)
    if len(configs) == 1:
        store.get_or_train(configs[0], progress=False)
    else:
        store.get_or_train_ensemble(configs)
    print("finished", flush=True)
""")


def assert_same_run(a, b):
    for name in METRICS:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)
    for attr in ("val_steps", "val_loss", "val_acc", "snapshot_steps", "snapshots"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)


def start_child(tmp_path: Path, cfgs: list[dict]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD.format(cfgs=cfgs), str(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def expect_line(proc: subprocess.Popen, line: str) -> None:
    got = proc.stdout.readline().strip()
    assert got == line, f"child said {got!r}, expected {line!r}; stderr: {proc.stderr.read()[-2000:]}"


def go_on(proc: subprocess.Popen) -> None:
    proc.stdin.write("\n")
    proc.stdin.flush()


def stop_at_step_100(proc: subprocess.Popen, sig: int) -> tuple[str, str]:
    """Let the child pass its checkpoint at step 50, signal it while it waits at step
    100, then let it go on (if it is still alive)."""
    expect_line(proc, "checkpoint 50")
    go_on(proc)
    expect_line(proc, "checkpoint 100")
    proc.send_signal(sig)
    if sig != signal.SIGKILL:
        go_on(proc)
    return proc.communicate(timeout=300)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_resumes_identical(tmp_path, sig):
    cfg = RunConfig(**SLOW)
    out, err = stop_at_step_100(start_child(tmp_path, [SLOW]), sig)
    assert "finished" not in out
    if sig != signal.SIGKILL:
        assert f"interrupted by {signal.Signals(sig).name} at step 100; checkpoint saved" in err
    store = RunStore(tmp_path)
    assert cfg not in store and (tmp_path / "runs" / cfg.hash() / "checkpoint.bin").exists()
    resumed = store.get_or_train(cfg, progress=False)
    assert "resumed from step 100" in (tmp_path / "train.log").read_text()
    assert_same_run(resumed, fit(cfg, progress=False))
    assert not (tmp_path / "runs" / cfg.hash() / "checkpoint.bin").exists()


def test_killed_ensemble_resumes_identical(tmp_path):
    configs = grid(RunConfig(**SLOW), seed=[0, 1, 2])
    out, _ = stop_at_step_100(start_child(tmp_path, [c.to_dict() for c in configs]), signal.SIGKILL)
    assert "finished" not in out
    store = RunStore(tmp_path)
    runs = store.get_or_train_ensemble(configs)
    assert (tmp_path / "train.log").read_text().count("(ensemble of 3, resumed from step 100)") == 3
    for a, b in zip(runs, fit_ensemble(configs)):
        assert_same_run(a, b)
    assert not any((tmp_path / "runs" / c.hash() / "checkpoint.bin").exists() for c in configs)


def test_a_single_run_resumes_from_an_ensemble_checkpoint_identical(tmp_path):
    configs = grid(RunConfig(**SLOW), seed=[0, 1])
    stop_at_step_100(start_child(tmp_path, [c.to_dict() for c in configs]), signal.SIGKILL)
    run = RunStore(tmp_path).get_or_train(configs[0], progress=False)
    assert "resumed from step 100" in (tmp_path / "train.log").read_text()
    assert_same_run(run, fit(configs[0], progress=False))


def blocked_flock_waiters(path: Path) -> int:
    """How many processes wait in flock() for ``path`` (from /proc/locks)."""
    ino = os.stat(path).st_ino
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if "->" in line and line.split()[-3].endswith(f":{ino}"))


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_concurrent_requests_overlap_and_train_once(tmp_path):
    cfg = RunConfig(**SLOW)
    store = RunStore(tmp_path)
    lock = store._lock(cfg)
    with lock:  # both children must be waiting on this lock before either may train
        procs = [subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import sys
                from grokbook import RunConfig
                from grokbook.store import RunStore
                RunStore(sys.argv[1]).get_or_train(RunConfig(**{SLOW}), progress=False)
                print("finished", flush=True)
            """), str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
        # Poll the kernel's lock table (an event, not a delay); the timeout is a safety net.
        deadline = time.monotonic() + 300
        while blocked_flock_waiters(Path(lock.path)) < 2:
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline, "the children never waited on the run's lock"
            time.sleep(0.01)
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 and "finished" in o for p, (o, _) in zip(procs, outs)), outs
    assert len((tmp_path / "train.log").read_text().splitlines()) == 1
    assert_same_run(store.load(cfg), fit(cfg, progress=False))


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


def test_a_second_corruption_keeps_the_first(tmp_path, tiny):
    store = RunStore(tmp_path)
    store.get_or_train(tiny, progress=False)
    path = tmp_path / "runs" / tiny.hash() / "run.bin"
    for k in (1, 2):
        path.write_bytes(b"garbage %d" % k + b"\x00" * 40)
        with pytest.warns(CorruptRunWarning):
            store.get_or_train(tiny, progress=False)
    assert (path.parent / "run.bin.corrupt").read_bytes().startswith(b"garbage 1")
    assert (path.parent / "run.bin.2.corrupt").read_bytes().startswith(b"garbage 2")


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


@pytest.mark.parametrize("name", ["run.bin", "checkpoint.bin"])
def test_a_directory_in_place_of_a_file_is_set_aside(tmp_path, tiny, name):
    store = RunStore(tmp_path)
    (tmp_path / "runs" / tiny.hash() / name).mkdir(parents=True)
    with pytest.warns(CorruptRunWarning, match="not a regular file|cannot be opened"):
        run = store.get_or_train(tiny, progress=False)
    assert_same_run(run, fit(tiny, progress=False))
    assert (tmp_path / "runs" / tiny.hash() / f"{name}.corrupt").is_dir()
    assert store.load(tiny) is not None


class _Payload:
    """Unpickling this creates the directory ``path``: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _framed(payload: bytes) -> bytes:
    return payload + hashlib.sha256(payload).digest()


@pytest.mark.parametrize("name", ["run.bin", "checkpoint.bin"])
@pytest.mark.parametrize("kind", ["pickle", "npz with an object array"])
def test_a_planted_pickle_is_refused_and_never_executed(tmp_path, tiny, name, kind):
    marker = tmp_path / "code_ran"
    if kind == "pickle":
        payload = pickle.dumps(_Payload(marker))
    else:
        buf = io.BytesIO()
        np.savez(buf, metrics=np.array([_Payload(marker)], dtype=object))
        payload = buf.getvalue()
    path = tmp_path / "store" / "runs" / tiny.hash() / name
    path.parent.mkdir(parents=True)
    path.write_bytes(_framed(payload))
    store = RunStore(tmp_path / "store")
    with pytest.warns(CorruptRunWarning, match="pickle" if kind == "pickle" else "cannot be read"):
        run = store.get_or_train(tiny, progress=False)
    assert not marker.exists()
    assert_same_run(run, fit(tiny, progress=False))


def test_writes_replace_planted_symlinks_and_never_follow_them(tmp_path, tiny):
    victims = {name: tmp_path / f"victim_{name}" for name in ("config", "log", "lock")}
    for v in victims.values():
        v.write_text("precious\n")
    root = tmp_path / "store"
    run_dir = root / "runs" / tiny.hash()
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").symlink_to(victims["config"])
    (root / "train.log").symlink_to(victims["log"])
    (root / "runs" / f"{tiny.hash()}.lock").symlink_to(victims["lock"])
    RunStore(root).get_or_train(tiny, progress=False)
    assert all(v.read_text() == "precious\n" for v in victims.values())
    assert not (run_dir / "config.json").is_symlink()
    assert json.loads((run_dir / "config.json").read_text()) == tiny.to_dict()
    assert not (root / "train.log").is_symlink() and tiny.hash() in (root / "train.log").read_text()


def test_a_symlinked_run_directory_is_refused(tmp_path, tiny):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "store" / "runs").mkdir(parents=True)
    (tmp_path / "store" / "runs" / tiny.hash()).symlink_to(elsewhere)
    with pytest.raises(StoreError, match="symbolic link"):
        RunStore(tmp_path / "store").get_or_train(tiny, progress=False)
    assert list(elsewhere.iterdir()) == []


def test_a_new_store_is_private_and_a_shared_one_is_reported(tmp_path, tiny):
    store = RunStore(tmp_path / "new" / "store")
    store.get_or_train(tiny, progress=False)
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
    open_root = tmp_path / "open"
    open_root.mkdir()
    open_root.chmod(0o777)
    with pytest.warns(StoreWarning, match="writable by every user"):
        RunStore(open_root).get_or_train(tiny, progress=False)


def test_one_bad_config_json_does_not_hide_the_others(tmp_path, tiny):
    store = RunStore(tmp_path)
    other = tiny.replace(seed=1)
    for c in (tiny, other):
        store.get_or_train(c, progress=False)
    (tmp_path / "runs" / other.hash() / "config.json").write_text("{not json")
    with pytest.warns(CorruptRunWarning, match="config.json skipped"):
        assert list(store.configs()) == [tiny]


def test_a_corrupt_run_met_while_holding_its_lock_does_not_deadlock(tmp_path, tiny):
    store = RunStore(tmp_path)
    store.get_or_train(tiny, progress=False)
    (tmp_path / "runs" / tiny.hash() / "run.bin").write_bytes(b"\x00" * 64)
    result = []

    def load_under_lock():
        with store._lock(tiny), pytest.warns(CorruptRunWarning):
            result.append(store.load(tiny))

    worker = threading.Thread(target=load_under_lock, daemon=True)
    worker.start()
    worker.join(timeout=120)  # a safety net: without re-entrant locks this never returns
    assert not worker.is_alive() and result == [None]


def test_too_little_space_is_refused_before_training(tmp_path, tiny, monkeypatch):
    import grokbook.store as store_module

    real = store_module.shutil.disk_usage
    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(StoreError, match="not enough space"):
        RunStore(tmp_path).get_or_train(tiny, progress=False)
    assert not (tmp_path / "train.log").exists()


def _full_disk_for(monkeypatch, name: str) -> None:
    """Make every write of the file ``name`` fail as on a full disk."""
    import grokbook.store as store_module

    real = store_module._write_atomic

    def failing(path, payload, framed=True):
        if path.name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, payload, framed)

    monkeypatch.setattr(store_module, "_write_atomic", failing)


def test_a_failed_checkpoint_write_warns_and_training_goes_on(tmp_path, tiny, monkeypatch):
    _full_disk_for(monkeypatch, "checkpoint.bin")
    store = RunStore(tmp_path, checkpoint_every_steps=10)
    with pytest.warns(StoreWarning, match="checkpoint of run .* at step [123]0 not written"):
        run = store.get_or_train(tiny, progress=False)
    assert_same_run(run, fit(tiny, progress=False))
    assert store.load(tiny) is not None


def test_a_finished_run_that_cannot_be_stored_is_still_returned(tmp_path, tiny, monkeypatch):
    _full_disk_for(monkeypatch, "run.bin")
    store = RunStore(tmp_path)
    with pytest.warns(StoreWarning, match="trained but could not be stored"):
        run = store.get_or_train(tiny, progress=False)
    assert_same_run(run, fit(tiny, progress=False))
    leftovers = [p.name for p in (tmp_path / "runs" / tiny.hash()).iterdir()]
    assert "run.bin" not in leftovers and not [n for n in leftovers if n.endswith(".tmp")]
    monkeypatch.undo()
    assert_same_run(store.get_or_train(tiny, progress=False), run)  # nothing blocks the retry


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import grokbook.store as store_module

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "fsync", full)
    with pytest.raises(OSError):
        store_module._write_atomic(tmp_path / "run.bin", b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


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


def test_a_relative_home_is_taken_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GROKBOOK_HOME", "rel/store")
    assert default_home() == tmp_path / "rel" / "store" and RunStore().root.is_absolute()


def test_the_store_trains_on_its_own_device(tmp_path, tiny):
    with pytest.raises(TypeError, match="RunStore\\(device=...\\)"):
        RunStore(tmp_path).get_or_train(tiny, progress=False, device="cpu")
