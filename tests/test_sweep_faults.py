"""Sweeps under faults: a killed sweep process, a script without a main guard, a
corrupt stored run."""

import os
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
from grokbook.sweeping import sweep
from grokbook.training import fit

#: Safety nets only: every wait below ends on an event long before these.
STARTUP_S = 300.0
EXIT_S = 60.0


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name ([] if ``pid`` is gone):
    [0] the state, [1] the parent pid, [19] the start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _workers(parent: int) -> dict[int, str]:
    """Live multiprocessing workers (spawned children) of ``parent``: pid -> start time."""
    found = {}
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else []
        if stat and stat[0] not in "ZX" and int(stat[1]) == parent:
            try:
                if b"spawn_main" in (entry / "cmdline").read_bytes():
                    found[int(entry.name)] = stat[19]
            except OSError:
                pass
    return found


def _alive(pid: int, start: str) -> bool:
    """Whether the process ``pid`` started at ``start`` still runs (a zombie does not)."""
    stat = _stat(pid)
    return bool(stat) and stat[0] not in "ZX" and stat[19] == start


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_exit_when_the_sweep_process_is_killed(tmp_path):
    long = RunConfig(p=23, r=0.5, n_layers=1, d_model=16, n_heads=2, steps=100_000)
    configs = [long, long.replace(seed=1)]
    script = tmp_path / "long_sweep.py"
    script.write_text(textwrap.dedent("""
        import sys
        from grokbook import RunConfig, sweep
        from grokbook.store import RunStore

        if __name__ == "__main__":
            long = RunConfig(p=23, r=0.5, n_layers=1, d_model=16, n_heads=2, steps=100_000)
            sweep([long, long.replace(seed=1)], executor=2, store=RunStore(sys.argv[1]), progress=False)
    """))
    root = tmp_path / "store"
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.DEVNULL, stderr=err)
    workers: dict[int, str] = {}
    try:
        # until both workers run and have started training (their runs' lock files exist)
        deadline = time.monotonic() + STARTUP_S
        while not (len(workers) == 2 and all(list(root.rglob(f"*{c.hash()}*")) for c in configs)):
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, f"workers {workers} never started training"
            workers.update(_workers(proc.pid))
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + EXIT_S
        while any(_alive(*w) for w in workers.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid, start in workers.items() if _alive(pid, start)], "orphaned workers"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid, start in workers.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)


def test_script_without_main_guard_falls_back_to_one_process(tiny, tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        from grokbook import RunConfig, sweep

        tiny = RunConfig(p=11, r=0.5, n_layers=1, d_model=16, n_heads=2, steps=40, n_snapshots=6,
                         lr=3e-3, warmup_steps=5)
        runs = sweep([tiny.replace(seed=0), tiny.replace(seed=1)], executor=2, progress=False)
        print("stored", len(runs))
    """))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "GROKBOOK_HOME": str(home)})
    assert res.returncode == 0, res.stderr
    assert "stored 2" in res.stdout
    assert 'if __name__ == "__main__":' in res.stderr and "in this process" in res.stderr, res.stderr
    store = RunStore(home)
    assert tiny.replace(seed=0) in store and tiny.replace(seed=1) in store


def test_corrupt_run_is_retrained_by_one_sweep(tiny, tmp_path):
    store = RunStore(tmp_path)
    store.get_or_train(tiny, progress=False)
    path = tmp_path / "runs" / tiny.hash() / "run.bin"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.warns(CorruptRunWarning):
        [run] = sweep([tiny], store=store, progress=False)
    fresh = fit(tiny, progress=False)
    np.testing.assert_array_equal(run.snapshots, fresh.snapshots)
    np.testing.assert_array_equal(run.metrics["train_loss"], fresh.metrics["train_loss"])
    assert tiny in store and store.load(tiny) is not None


def test_runs_missing_after_the_sweep_are_reported(tiny, tmp_path, monkeypatch):

    import grokbook.sweeping as sweep_module
    monkeypatch.setattr(sweep_module, "_train_groups", lambda groups, store, bar=None: None)  # stored elsewhere
    with pytest.raises(RuntimeError, match="share the store"):
        sweep([tiny], store=RunStore(tmp_path), progress=False)
