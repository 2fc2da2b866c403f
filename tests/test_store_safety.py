"""The run store under real-world damage (issue 35): its warnings reach the terminal from
the command, from a chapter's kernel and from the API; a run file copied into another
run's directory is set aside and retrained; a symlinked runs/ is refused; runs are listed
without reading their snapshots."""

import os
import shutil
import zipfile

import numpy as np
import pytest

from grokbook import RunConfig, notebooks
from grokbook.cli import main
from grokbook.store import CorruptRunWarning, RunStore, StoreError, StoreWarning
from grokbook.training import fit


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Each test starts with no store reported as shared and no warning relayed yet."""
    monkeypatch.setattr(RunStore, "_warned", set())
    monkeypatch.setattr(notebooks, "RELAYED_WARNINGS", set())


def assert_same_run(a, b):
    for name in a.metrics:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)
    np.testing.assert_array_equal(a.val_acc, b.val_acc)
    np.testing.assert_array_equal(a.snapshots, b.snapshots)


def stderr_lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


# --- warnings reach the terminal --------------------------------------------------------


def test_export_of_a_truncated_run_warns_in_one_line(tiny, capsys, tmp_path):
    store = RunStore()
    store.get_or_train(tiny, progress=False)
    path = store.root / "runs" / tiny.hash() / "run.bin"
    path.write_bytes(path.read_bytes()[:1000])
    assert main(["export", tiny.hash(), "-o", str(tmp_path / "out")]) == 2
    err = stderr_lines(capsys)
    assert len(err) == 2, err
    assert err[0].startswith("grokbook: warning: ") and str(path) in err[0] and "cannot be read" in err[0]
    assert err[1] == f"grokbook: error: the stored run {tiny.hash()} cannot be read"


def test_a_shared_store_is_reported_by_export_and_runs(tiny, capsys, tmp_path):
    store = RunStore()
    store.get_or_train(tiny, progress=False)
    store.root.chmod(0o777)
    assert main(["export", tiny.hash(), "-o", str(tmp_path / "out")]) == 0
    err = stderr_lines(capsys)
    assert err == [f"grokbook: warning: the run store {store.root} is writable by every user (mode 777): whoever "
                   "can write there decides what the book shows. Use chmod 700 unless it is a store shared on "
                   "purpose."]
    RunStore._warned.clear()  # as in a new process: reported once per process
    notebooks.RELAYED_WARNINGS.clear()
    assert main(["runs"]) == 0
    assert sum("writable by every user" in line for line in stderr_lines(capsys)) == 1


def test_api_loads_report_a_shared_store(tiny):
    store = RunStore()
    store.get_or_train(tiny, progress=False)
    store.root.chmod(0o770)
    with pytest.warns(StoreWarning, match="writable by its group"):
        assert store.load(tiny) is not None
    RunStore._warned.clear()
    with pytest.warns(StoreWarning, match="writable by its group"):
        assert store.hashes() == [tiny.hash()]
    RunStore._warned.clear()
    with pytest.warns(StoreWarning, match="writable by its group"):
        assert store.load_hash(tiny.hash()) is not None


def test_store_warnings_are_relayed_to_the_progress_file(tiny, tmp_path, monkeypatch):
    store = RunStore()
    store.get_or_train(tiny, progress=False)
    path = store.root / "runs" / tiny.hash() / "run.bin"
    path.write_bytes(path.read_bytes()[:1000])
    notices = tmp_path / "notices.log"
    monkeypatch.setenv("GROKBOOK_PROGRESS", str(notices))
    with pytest.warns(CorruptRunWarning):
        assert store.load(tiny) is None
    (line,) = notices.read_text().splitlines()
    assert line.startswith("grokbook: warning: ") and "fails its SHA-256 check" in line and "run.bin.corrupt" in line


WARNING_CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Warn

```{code-cell} ipython3
:tags: [parameters]

n = 1  # unused
```

```{code-cell} ipython3
from grokbook import RunConfig
from grokbook.store import RunStore

store, config = RunStore(), RunConfig(p=11, steps=2)
(store.root / "runs" / config.hash()).mkdir(parents=True)
(store.root / "runs" / config.hash() / "run.bin").write_bytes(b"garbage" * 10)
print(store.load(config))  # None, and a CorruptRunWarning in the kernel
```
"""


def test_a_store_warning_in_the_kernel_reaches_the_terminal_once(tmp_path, capfd, monkeypatch):
    root = tmp_path / "root"
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text("title: test\n")
    (root / "book" / "01_warn.md").write_text(WARNING_CHAPTER)
    monkeypatch.setattr(notebooks, "book_root", lambda: root)
    home = tmp_path / "shared_store"
    home.mkdir()
    home.chmod(0o777)
    monkeypatch.setenv("GROKBOOK_HOME", str(home))
    assert main(["run", "warn", "-o", str(tmp_path / "warn.ipynb")]) == 0
    err = capfd.readouterr().err
    corrupt = [line for line in err.splitlines() if "SHA-256" in line]
    assert corrupt == [f"grokbook: warning: {home}/runs/{RunConfig(p=11, steps=2).hash()}/run.bin (70 bytes) fails "
                       "its SHA-256 check; kept aside as run.bin.corrupt, the run will be retrained"], err
    # raised before the kernel starts, in the kernel, and after (recording the runs used): shown once
    shared = [line for line in err.splitlines() if "writable by every user" in line]
    assert shared == [f"grokbook: warning: the run store {home} is writable by every user (mode 777): whoever can "
                      "write there decides what the book shows. Use chmod 700 unless it is a store shared on "
                      "purpose."], err


# --- a run file copied into another run's directory ---------------------------------------


def test_a_run_copied_into_another_runs_directory_is_set_aside_and_retrained(tiny):
    store = RunStore()
    other = tiny.replace(seed=1)
    store.get_or_train(tiny, progress=False)
    store.get_or_train(other, progress=False)
    runs = store.root / "runs"
    shutil.copy(runs / other.hash() / "run.bin", runs / tiny.hash() / "run.bin")
    with pytest.warns(CorruptRunWarning) as caught:
        run = store.get_or_train(tiny, progress=False)
    (warning,) = [w for w in caught if issubclass(w.category, CorruptRunWarning)]
    message = str(warning.message)
    assert other.hash() in message and tiny.hash() in message and f"{tiny.hash()}.mismatch-1" in message
    assert run.config == tiny
    assert_same_run(run, fit(tiny, progress=False))
    aside = runs / f"{tiny.hash()}.mismatch-1"
    assert (aside / "run.bin").read_bytes() == (runs / other.hash() / "run.bin").read_bytes()  # kept, not deleted
    assert store.hashes() == sorted([tiny.hash(), other.hash()])  # a set-aside directory is not a run
    assert_same_run(store.load(tiny), run)  # re-runs find the retrained run, no warning
    shutil.copy(runs / other.hash() / "run.bin", runs / tiny.hash() / "run.bin")
    with pytest.warns(CorruptRunWarning, match="mismatch-2"):
        assert store.load(tiny) is None
    assert (aside / "run.bin").exists() and (runs / f"{tiny.hash()}.mismatch-2" / "run.bin").exists()


def test_a_mismatching_run_in_a_sweep_is_retrained(tiny):
    from grokbook.sweeping import sweep

    store = RunStore()
    a, b = tiny, tiny.replace(seed=1)
    sweep([a, b], store=store, progress=False)
    runs = store.root / "runs"
    shutil.copy(runs / b.hash() / "run.bin", runs / a.hash() / "run.bin")
    with pytest.warns(CorruptRunWarning, match="mismatch-1"):
        got = sweep([a, b], store=store, progress=False)
    assert [r.config for r in got] == [a, b]


# --- a symlinked runs/ ------------------------------------------------------------------------


@pytest.fixture
def linked_store(tmp_path):
    """A store whose runs/ is a symbolic link to an empty directory elsewhere."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    (root / "runs").symlink_to(elsewhere)
    return root, elsewhere


def test_a_symlinked_runs_directory_is_refused_and_nothing_written(linked_store, tiny):
    root, elsewhere = linked_store
    store = RunStore(root)
    for call in (lambda: store.get_or_train(tiny, progress=False), lambda: store.load(tiny), store.hashes,
                 lambda: list(store.configs()), lambda: store.load_hash("0" * 16),
                 lambda: store.save_chapter_runs("grokking", {})):
        with pytest.raises(StoreError, match=f"^{root / 'runs'} is a symbolic link \\(to {elsewhere}\\)"):
            call()
    assert list(elsewhere.iterdir()) == [] and sorted(p.name for p in root.iterdir()) == ["runs"]


def test_the_command_refuses_a_symlinked_store_in_one_line(linked_store, capsys, monkeypatch, tmp_path):
    import papermill

    def started(*args, **kwargs):
        raise AssertionError("papermill started a kernel")

    root, elsewhere = linked_store
    monkeypatch.setenv("GROKBOOK_HOME", str(root))
    monkeypatch.setattr(papermill, "execute_notebook", started)
    for argv in (["runs"], ["export", "0123"], ["run", "grokking", "-o", str(tmp_path / "g.ipynb")]):
        assert main(argv) == 2
        err = stderr_lines(capsys)
        assert len(err) == 1 and err[0].startswith(f"grokbook: error: {root / 'runs'} is a symbolic link"), err
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "g.ipynb").exists()


# --- reading without the snapshots --------------------------------------------------------


def test_load_without_snapshots_reads_the_same_curves(tiny):
    store = RunStore()
    full = store.get_or_train(tiny, progress=False)
    light = store.load_hash(tiny.hash(), snapshots=False)
    assert light.config == tiny and light.snapshots.shape == (0, 0) and light.diverged_at == full.diverged_at
    for name in full.metrics:
        np.testing.assert_array_equal(light.metrics[name], full.metrics[name])
    for attr in ("val_steps", "val_loss", "val_acc", "snapshot_steps"):
        np.testing.assert_array_equal(getattr(light, attr), getattr(full, attr))


def test_a_damaged_array_is_reported_when_read_without_snapshots(tiny):
    store = RunStore()
    store.get_or_train(tiny, progress=False)
    path = store.root / "runs" / tiny.hash() / "run.bin"
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("val_acc.npy")
    blob = bytearray(path.read_bytes())
    blob[info.header_offset + 30 + len(info.filename) + info.file_size - 1] ^= 0xFF  # the array's last byte
    path.write_bytes(bytes(blob))
    with pytest.warns(CorruptRunWarning, match="cannot be read"):
        assert store.load_hash(tiny.hash(), snapshots=False) is None
    assert path.exists()  # reported, left in place (as load_hash does)


def test_size_on_disk_counts_the_run_directory(tiny):
    store = RunStore()
    store.get_or_train(tiny, progress=False)
    d = store.root / "runs" / tiny.hash()
    assert store.size_on_disk(tiny.hash()) == sum(os.path.getsize(p) for p in d.iterdir())
    assert store.size_on_disk("f" * 16) == 0
