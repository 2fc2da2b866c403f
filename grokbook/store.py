"""The run store: finished runs on disk, keyed by the config hash.

Layout under the store's root (``$GROKBOOK_HOME``, else the user cache directory)::

    runs/<hash>/config.json     the RunConfig, human-readable
    runs/<hash>/run.bin         the Run: an .npz payload followed by its SHA-256
    runs/<hash>/checkpoint.bin  while training: the last TrainState, same framing
    runs/<hash>.lock            held while a process trains or repairs that run
    runs/<hash>.mismatch-<n>/   a run directory set aside: its run.bin held another run
    train.log                   one line per run trained, with its wall time
    chapters/<chapter>.json     the runs a chapter used when last run by ``grokbook run``

Nothing read from the store can execute code: runs and checkpoints are ``.npz``
archives of plain arrays (read with ``allow_pickle=False``) and JSON; a file that holds
anything else, a pickle included, is refused. The checksum only detects accidents (it
is no secret). Every file but the log is written to a fresh temporary name and renamed
over its target, so a reader never sees half a file and a symlink planted in the store
is replaced, never followed; the log is appended with ``O_NOFOLLOW``. A file that fails
its check is reported (``CorruptRunWarning``), kept aside as ``*.corrupt`` (``*.2.corrupt``
and so on for later ones) and the run is trained again. A run file whose configuration
is not that of its directory (copied from another run's directory) is reported and its
directory set aside as ``<hash>.mismatch-<n>``; the run is trained again. A new store is private (0700); one that
other users can write to is reported (``StoreWarning``) by the first read or write of a
process. A ``runs/`` or ``chapters/`` that is a symbolic link is refused (``StoreError``):
the store never reads or writes through a link inside it (the root itself may be one).

Every warning is also written, one line, to the file ``$GROKBOOK_PROGRESS`` names when it
is an absolute path: ``grokbook run`` sets it in the kernel and copies the file to the
terminal, so that warnings raised while a chapter executes reach the user, not only the
notebook.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import stat
import threading
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from . import settings
from .config import RunConfig
from .trainer import METRICS, Run, TrainState, default_device, snapshot_schedule
from .progress import Progress, announce, relay_warning
from .run import check_writer
from .training import fit

_DIGEST = 32  # bytes of SHA-256 appended to every stored payload
_RUN_NAME = re.compile(r"[0-9a-f]{16}(-[a-z]+)?")  # a run's directory: its key (see RunStore.key)
_MB = 2 ** 20


class CorruptRunWarning(UserWarning):
    """A stored run or checkpoint failed its integrity check and will be retrained."""


class StoreWarning(UserWarning):
    """A store that others can write to, or a file that could not be written."""


class StoreError(RuntimeError):
    """The store cannot take a run: not enough space, or a path it refuses to use."""


class CorruptFile(Exception):
    """Internal: a stored file that is truncated, altered or not of the expected kind."""


def default_home() -> Path:
    """``$GROKBOOK_HOME`` if set (a relative path is taken from the current directory),
    else the platform's user cache directory."""
    env = settings.home()
    if env is not None:
        return env
    import platformdirs

    return Path(platformdirs.user_cache_dir("grokbook"))


def _warn(message: str, category: type[Warning], stacklevel: int = 2) -> None:
    """``warnings.warn(message, category, stacklevel)`` as if called in place of ``_warn``,
    and the same message as one line to ``$GROKBOOK_PROGRESS`` when that names a file
    (see :func:`grokbook.progress.relay_warning`)."""
    warnings.warn(message, category, stacklevel=stacklevel + 1)
    relay_warning(message)


def _write_atomic(path: Path, payload: bytes, framed: bool = True) -> None:
    """Write ``payload`` (plus its SHA-256 when ``framed``) to a new temporary file
    beside ``path`` and rename it over ``path``: a symlink at ``path`` is replaced,
    never followed, and a failed write leaves no partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            if framed:
                f.write(hashlib.sha256(payload).digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_regular(path: Path) -> bytes:
    """The bytes of ``path``, which must be a regular file (not a symlink, directory or
    device): ``CorruptFile`` otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise CorruptFile(f"{path} cannot be opened as a plain file ({err.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CorruptFile(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _read_checked(path: Path) -> bytes:
    """The payload of a file written by :func:`_write_atomic`; ``CorruptFile`` if the
    file is truncated, altered or not an ``.npz`` archive."""
    blob = _read_regular(path)
    payload, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if len(blob) < _DIGEST or hashlib.sha256(payload).digest() != digest:
        raise CorruptFile(f"{path} ({len(blob)} bytes) fails its SHA-256 check")
    if not payload.startswith(b"PK"):
        kind = "a pickle, which grokbook never loads (it could run code)" if payload[:1] == b"\x80" \
            else "not an .npz archive"
        raise CorruptFile(f"{path} holds {kind}")
    return payload


def _read_members(path: Path, skip: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays of the framed ``.npz`` file ``path`` but those named in ``skip``, read
    from the archive without reading the rest of the file: the whole file's SHA-256 is
    not checked (that would read all of it), each array read is checked by its zip
    CRC-32. ``CorruptFile`` for a file that is not a regular file or not an archive;
    object arrays (pickles) raise ``ValueError``; a damaged member ``BadZipFile``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise CorruptFile(f"{path} cannot be opened as a plain file ({err.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptFile(f"{path} is not a regular file")
        if f.read(2) != b"PK":
            raise CorruptFile(f"{path} holds no .npz archive")
        f.seek(0)
        with zipfile.ZipFile(f) as z:
            arrays = {}
            for member in z.namelist():
                key = member.removesuffix(".npy")
                if key not in skip:
                    with z.open(member) as m:
                        arrays[key] = np.lib.format.read_array(m, allow_pickle=False)
            return arrays


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _load_npz(payload: bytes) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` payload; object arrays (pickles) raise ``ValueError``."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _run_to_bytes(run: Run) -> bytes:
    arrays = {f"m_{k}": v for k, v in run.metrics.items()}
    arrays.update(val_steps=run.val_steps, val_loss=run.val_loss, val_acc=run.val_acc,
                  snapshot_steps=run.snapshot_steps, snapshots=run.snapshots,
                  diverged_at=np.array(-1 if run.diverged_at is None else run.diverged_at),
                  wall_time_s=np.array(run.wall_time_s),
                  config=np.array(json.dumps(run.config.to_dict())))
    return _npz(arrays)


def _run_from_bytes(payload: bytes) -> Run:
    return _run_from_arrays(_load_npz(payload))


def _run_from_arrays(z: dict[str, np.ndarray]) -> Run:
    """The Run of the arrays of a stored run; without ``snapshots``, an empty
    ``(0, 0)`` array stands for them."""
    diverged = int(z["diverged_at"])
    return Run(
        config=RunConfig.from_dict(json.loads(str(z["config"]))),
        metrics={k: z[f"m_{k}"] for k in METRICS},
        val_steps=z["val_steps"], val_loss=z["val_loss"], val_acc=z["val_acc"],
        snapshot_steps=z["snapshot_steps"], snapshots=z.get("snapshots", np.zeros((0, 0), np.float32)),
        diverged_at=None if diverged < 0 else diverged,
        wall_time_s=float(z["wall_time_s"]),
    )


def _state_to_bytes(s: TrainState) -> bytes:
    arrays = {f"opt_{k}": v.numpy() for k, v in s.opt.items()}
    arrays.update(
        step=np.array(s.step), flat=s.flat.numpy(), theta0=s.theta0.numpy(),
        prev_delta=s.prev_delta.numpy(), metrics=s.metrics,
        val=np.array(s.val, dtype=np.float64).reshape(-1, 3),
        snapshot_steps=np.array([t for t, _ in s.snapshots], dtype=np.int64),
        snapshots=np.stack([w for _, w in s.snapshots]) if s.snapshots
        else np.zeros((0, s.flat.numel()), np.float32),
        wall_time_s=np.array(s.wall_time_s))
    if s.at_validation is not None:
        t, w, opt = s.at_validation
        arrays.update(at_val_step=np.array(t), at_val_w=w.numpy(), **{f"at_val_{k}": x.numpy() for k, x in opt.items()})
    return _npz(arrays)


def _state_from_bytes(payload: bytes) -> TrainState:
    z = _load_npz(payload)
    return TrainState(
        step=int(z["step"]), flat=torch.from_numpy(z["flat"]),
        opt={k[4:]: torch.from_numpy(v) for k, v in z.items() if k.startswith("opt_")},
        metrics=z["metrics"], val=[(int(t), float(l), float(a)) for t, l, a in z["val"]],
        snapshots=list(zip(z["snapshot_steps"].tolist(), z["snapshots"])),
        theta0=torch.from_numpy(z["theta0"]), prev_delta=torch.from_numpy(z["prev_delta"]),
        wall_time_s=float(z["wall_time_s"]),
        at_validation=(int(z["at_val_step"]), torch.from_numpy(z["at_val_w"]),
                       {k[7:]: torch.from_numpy(v) for k, v in z.items()
                        if k.startswith("at_val_") and k not in ("at_val_step", "at_val_w")})
        if "at_val_step" in z else None)


#: What reading a damaged or hostile file can raise; all of it means "corrupt".
_READ_ERRORS = (CorruptFile, ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile)


class _RunLock:
    """An exclusive lock on one run, across processes (``flock`` on a lock file opened
    without following symlinks) and re-entrant within a thread, so that code holding a
    run's lock can repair that run without deadlocking on itself."""

    _mutex = threading.Lock()
    _local: dict[str, threading.RLock] = {}   # path -> the in-process lock
    _held: dict[str, list[int]] = {}          # path -> [fd, depth] while held

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        with self._mutex:
            self.rlock = self._local.setdefault(self.path, threading.RLock())

    def __enter__(self) -> "_RunLock":
        self.rlock.acquire()
        held = self._held.get(self.path)
        if held is not None:
            held[1] += 1
            return self
        try:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self.rlock.release()
            raise
        self._held[self.path] = [fd, 1]
        return self

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
        try:
            return os.open(self.path, flags, 0o600)
        except OSError:
            if not os.path.islink(self.path):
                raise
            os.unlink(self.path)  # a planted symlink: removed, its target untouched
            return os.open(self.path, flags, 0o600)

    def __exit__(self, *_: Any) -> None:
        held = self._held[self.path]
        held[1] -= 1
        if held[1] == 0:
            del self._held[self.path]
            fcntl.flock(held[0], fcntl.LOCK_UN)
            os.close(held[0])
        self.rlock.release()


def data_shape(config: RunConfig) -> tuple[int, int, int, int, int]:
    """The sizes of ``config``'s data set without building it: ``(examples, vocab_size,
    n_classes, input width, target width)``, widths in values per example (see
    :class:`grokbook.tasks.Dataset`)."""
    if config.task == "digits":
        return 1797, 12, 10, 64, 1
    n_classes = 120 if config.task == "s5" else config.p
    n = 120 * 120 if config.task == "s5" else config.p * (config.p - 1) if config.task == "div" else config.p ** 2
    if config.arch == "grok":
        return n, n_classes + 3, n_classes, 6, 2
    return n, n_classes + 2, n_classes, 4, 1


def n_parameters(config: RunConfig) -> int:
    """How many weights ``config``'s model has (built on the meta device: no memory,
    no data set)."""
    from .models import build_model

    _, vocab, n_classes, _, _ = data_shape(config)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return sum(p.numel() for p in build_model(config, vocab, n_classes).parameters())


def stored_size_bytes(config: RunConfig) -> int:
    """About how many bytes the run of ``config`` and its checkpoint take on disk."""
    n_snap = len(snapshot_schedule(config.steps, config.n_snapshots))
    return 4 * n_parameters(config) * (2 * n_snap + 8) + 2 * 8 * config.steps * (len(METRICS) + 3) + _MB


#: Bytes of memory a process takes for torch and the book's code before any run (measured
#: 224-230 MB on Linux, torch 2.13 CPU), counted by :func:`memory_bytes`.
RUNTIME_BYTES = 300 * _MB


def memory_bytes(config: RunConfig) -> dict[str, int]:
    """About how many bytes of memory training ``config`` alone takes at its peak, by
    part; the sum is what :func:`grokbook.notebooks.check_memory` compares with the
    memory available.

    - ``curves``: the per-step metrics, ``steps x len(METRICS)``: a float32 buffer while
      training, then a float64 copy, the run's arrays and their serialised copy (28
      bytes per value), and the validation schedule's ``(steps,)`` int64 temporaries;
    - ``snapshots``: ``n_snapshots x n_params`` float32, kept, stacked and serialised
      (three copies);
    - ``dataset``: every example's inputs and targets as int64 (float32 features for
      ``digits``), three copies while the split is built;
    - ``model``: eight ``(n_params,)`` float32 vectors (weights, two optimiser moments,
      gradient, initial weights, last update and temporaries);
    - ``activations``: what a forward and backward pass over one batch (the whole
      training split when ``batch_size`` is 0) keeps, per example 2 x tokens x
      (``d_model`` + hidden) x ``n_layers`` float32 values for the book's transformer
      (4 x for ``arch='grok'``, which computes every position; 2 x (2 ``d_model`` +
      ``n_layers`` x hidden) for the MLP), plus the logits three times; and a forward
      pass over the validation split. Calibrated by the peak memory of 3 full-batch
      steps (Linux, CPU): at p 97 and 199, 0.71 and 1.34 GB measured against 0.56 and
      1.34 GB estimated (the MLP at p 97: 0.40 against 0.37; ``arch='grok'`` at p 199:
      3.05 against 3.1);
    - ``runtime``: torch and this package, :data:`RUNTIME_BYTES`.

    An ensemble of M runs needs about M times the model and the activations."""
    n, vocab, n_classes, x_width, y_width = data_shape(config)
    n_params = n_parameters(config)
    n_train = int(round(config.r * n))
    n_val = n - n_train
    batch = config.batch_size if 0 < config.batch_size < n_train else n_train
    width = config.d_model + config.hidden
    if config.model == "mlp":
        per_example = 2 * (2 * config.d_model + config.n_layers * config.hidden)
        per_val = 2 * config.d_model + config.hidden
        outputs = n_classes
    else:
        per_example = (4 if config.arch == "grok" else 2) * x_width * width * config.n_layers
        per_val = x_width * width
        outputs = 2 * vocab if config.arch == "grok" else n_classes
    item = 4 if config.task == "digits" else 8
    return {
        "curves": config.steps * (len(METRICS) * 28 + 3 * 8),
        "snapshots": 3 * 4 * n_params * len(snapshot_schedule(config.steps, config.n_snapshots)),
        "dataset": 3 * n * (x_width + y_width) * item,
        "model": 8 * 4 * n_params,
        "activations": 4 * (batch * (per_example + 3 * outputs) + n_val * (per_val + outputs)),
        "runtime": RUNTIME_BYTES,
    }


class RunStore:
    """Runs on disk keyed by :meth:`RunConfig.hash`, safe to share between processes.

    A run's identity is its configuration and the kind of device it is trained on: on
    the CPU a run is bit-identical whatever the thread count and whether it was trained
    alone or in an ensemble, but a GPU computes other roundings, so runs trained on
    ``cuda`` are kept apart (``runs/<hash>-cuda``) from CPU runs (``runs/<hash>``).
    ``device``: where this store trains (CUDA when available by default).

    A run in progress is checkpointed every ``checkpoint_every_s`` seconds of training
    and every ``checkpoint_every_steps`` steps (0: not by steps); a killed run resumes
    from the last checkpoint and ends bit-identical to an uninterrupted one.
    """

    _warned: set[str] = set()  # roots already reported as writable by others

    def __init__(self, path: Optional[str | os.PathLike[str]] = None,
                 checkpoint_every_s: float = 30.0, checkpoint_every_steps: int = 0,
                 device: Optional[torch.device | str] = None) -> None:
        self.root = Path(path).expanduser().absolute() if path is not None else default_home()
        self.checkpoint_every_s = checkpoint_every_s
        self.checkpoint_every_steps = checkpoint_every_steps
        self.device = torch.device(device) if device is not None else default_device()

    def key(self, config: RunConfig) -> str:
        """The name of ``config``'s run in this store: its hash, plus the device kind
        when that is not the CPU."""
        return config.hash() if self.device.type == "cpu" else f"{config.hash()}-{self.device.type}"

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def _runs_path(self) -> Path:
        """``root/runs``; ``StoreError`` if it is a symbolic link (the store never
        follows one inside itself). Reports once per process a root that other users
        can write to."""
        runs = self.root / "runs"
        if runs.is_symlink():
            raise StoreError(f"{runs} is a symbolic link (to {os.readlink(runs)}): the store does not read or "
                             "write through links; replace it by a directory or set GROKBOOK_HOME to the target")
        self._check_shared()
        return runs

    def _check_shared(self) -> None:
        """Warn (``StoreWarning``, once per root and process) if other users can write
        to the root."""
        if str(self.root) in self._warned:
            return
        try:
            mode = self.root.stat().st_mode
        except OSError:  # no store yet
            return
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            self._warned.add(str(self.root))
            who = "every user" if mode & stat.S_IWOTH else "its group"
            _warn(f"the run store {self.root} is writable by {who} (mode {stat.S_IMODE(mode):o}): whoever can "
                  "write there decides what the book shows. Use chmod 700 unless it is a store shared on purpose.",
                  StoreWarning, stacklevel=2)

    def _runs(self) -> Path:
        """``root/runs``, created private if missing (see :meth:`_runs_path`)."""
        runs = self._runs_path()
        if not runs.is_dir():
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=0o700, exist_ok=True)
            runs.mkdir(mode=0o700, exist_ok=True)
            self._check_shared()  # a root that existed before runs/
        return runs

    def _dir(self, config: RunConfig) -> Path:
        return self._runs_path() / self.key(config)

    def _run_dir(self, config: RunConfig) -> Path:
        """The directory of ``config``'s run, created if missing; never a symlink."""
        d = self._runs() / self.key(config)
        if d.is_symlink():
            raise StoreError(f"{d} is a symbolic link: the store does not write through links")
        d.mkdir(exist_ok=True)
        return d

    def _lock(self, config: RunConfig) -> _RunLock:
        return _RunLock(self._runs() / f"{self.key(config)}.lock")

    def _quarantine(self, path: Path, err: Exception) -> None:
        bad, n = path.with_name(path.name + ".corrupt"), 1
        while os.path.lexists(bad):
            n += 1
            bad = path.with_name(f"{path.name}.{n}.corrupt")
        os.replace(path, bad)
        _warn(f"{err}; kept aside as {bad.name}, the run will be retrained", CorruptRunWarning, stacklevel=3)

    def _read(self, config: RunConfig, name: str, parse: Any) -> Any:
        """``parse`` of the checked payload of ``name`` in ``config``'s run directory;
        None if it is missing, or damaged (then reported and moved aside)."""
        path = self._dir(config) / name
        if not os.path.lexists(path):
            return None
        try:
            return parse(_read_checked(path))
        except _READ_ERRORS as err:
            with self._lock(config):
                if os.path.lexists(path):
                    self._quarantine(path, err if isinstance(err, CorruptFile)
                                     else CorruptFile(f"{path} cannot be read: {err}"))
            return None

    def _set_aside(self, config: RunConfig) -> None:
        """Move ``config``'s run directory, whose ``run.bin`` holds another run, to
        ``<key>.mismatch-<n>`` (the first free ``n``) and report it; nothing is deleted.
        Done under the run's lock, after checking again: another process may have set it
        aside and trained the right run meanwhile."""
        with self._lock(config):
            d = self._dir(config)
            held = self._read(config, "run.bin", _run_from_bytes)
            if held is None or held.config == config:
                return
            n = 1
            while os.path.lexists(d.with_name(f"{d.name}.mismatch-{n}")):
                n += 1
            aside = d.with_name(f"{d.name}.mismatch-{n}")
            os.rename(d, aside)
            _warn(f"{d / 'run.bin'} holds the run {held.config.hash()}, not {config.hash()} (a file copied from "
                  f"another run's directory?); the directory is kept aside as {aside.name} and the run "
                  f"{self.key(config)} will be trained again", CorruptRunWarning, stacklevel=3)

    def load(self, config: RunConfig) -> Optional[Run]:
        """The stored run of ``config``, or None if there is none (or it was corrupt,
        in which case it is reported and moved aside, or held another config's run, in
        which case it is reported and its directory set aside: see :meth:`_set_aside`)."""
        run = self._read(config, "run.bin", _run_from_bytes)
        if run is not None and run.config != config:
            self._set_aside(config)
            return None
        if run is not None:
            self._log_use(run)
        return run

    def _log_use(self, run: Run) -> None:
        """Append a JSON line naming ``run`` (and its store and config) to the file
        ``$GROKBOOK_RUNS_LOG`` if set: :func:`grokbook.notebooks.run_chapter` sets it to
        learn which runs a chapter used."""
        log = settings.runs_log()
        if not log:
            return
        line = json.dumps({"hash": self.key(run.config), "store": str(self.root), "config": run.config.to_dict()})
        # one write of an O_APPEND file: lines of concurrent processes do not interleave
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def __contains__(self, config: RunConfig) -> bool:
        return os.path.lexists(self._dir(config) / "run.bin")

    def _check_space(self, need: int) -> None:
        free = shutil.disk_usage(self._runs()).free
        if free < need:
            raise StoreError(f"not enough space in {self.root}: {free / _MB:.0f} MB free, a run needs "
                             f"about {need / _MB:.0f} MB; free some space or set GROKBOOK_HOME elsewhere")

    def save(self, run: Run, note: str = "") -> None:
        """Store ``run`` (atomically) under its config's hash, with a line in train.log."""
        d = self._run_dir(run.config)
        payload = _run_to_bytes(run)
        self._check_space(2 * len(payload))
        _write_atomic(d / "config.json", json.dumps(run.config.to_dict(), indent=1).encode(), framed=False)
        _write_atomic(d / "run.bin", payload)
        line = (f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.key(run.config)} "
                f"{run.wall_time_s:.1f}s{note}\n").encode()
        log = self.root / "train.log"
        if log.is_symlink():
            log.unlink()  # a planted link: removed, its target untouched
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _finish(self, run: Run, note: str) -> None:
        """Store a run just trained and drop its checkpoint; if it cannot be stored,
        warn and keep the checkpoint (the caller still gets ``run``)."""
        self._log_use(run)
        try:
            self.save(run, note)
        except OSError as err:
            _warn(f"the run {self.key(run.config)} was trained but could not be stored ({err}); "
                  "it is returned, and its last checkpoint is kept", StoreWarning, stacklevel=3)
            return
        (self._dir(run.config) / "checkpoint.bin").unlink(missing_ok=True)

    def _load_checkpoint(self, config: RunConfig) -> Optional[TrainState]:
        return self._read(config, "checkpoint.bin", _state_from_bytes)

    def _save_checkpoint(self, config: RunConfig, state: TrainState) -> None:
        """Write ``state``; a failed write (a full disk) is reported and training goes on."""
        try:
            _write_atomic(self._run_dir(config) / "checkpoint.bin", _state_to_bytes(state))
        except OSError as err:
            _warn(f"checkpoint of run {self.key(config)} at step {state.step} not written ({err}); "
                  "training goes on", StoreWarning, stacklevel=2)

    def get_or_train(self, config: RunConfig, *, writer: Any = None, **fit_kwargs: Any) -> Run:
        """The run of ``config``: loaded if stored, else trained (resuming from its
        checkpoint if there is one) and stored. Concurrent callers for the same config
        wait for one another: the run is trained once. ``StoreError`` before training
        if the disk cannot hold the result.

        ``writer``: a TensorBoard writer (``add_scalar(tag, value, global_step)``, e.g.
        ``torch.utils.tensorboard.SummaryWriter``). The run, loaded or trained, is written
        to it once it is there, the same scalars either way (see
        :meth:`~grokbook.run.Run.write_scalars`: ``train/<metric>`` per step, ``val/loss``,
        ``val/acc``); nothing stored changes. TypeError, before anything, if it has no
        ``add_scalar``."""
        if "device" in fit_kwargs:
            raise TypeError("get_or_train() takes no device: a store trains on its own, RunStore(device=...)")
        check_writer(writer)
        run = self._get_or_train(config, **fit_kwargs)
        if writer is not None:
            run.write_scalars(writer)
        return run

    def _get_or_train(self, config: RunConfig, **fit_kwargs: Any) -> Run:
        """:meth:`get_or_train` without its writer."""
        run = self.load(config)
        announce([config], [] if run is not None else [[config]], self)
        if run is not None:
            return run
        with self._lock(config):
            run = self.load(config)  # another process may have finished it meanwhile
            if run is not None:
                return run
            self._check_space(stored_size_bytes(config))
            state = self._load_checkpoint(config)
            progress = Progress(1, 1)
            run = fit(config, state=state, checkpoint=lambda s: self._save_checkpoint(config, s),
                      checkpoint_every_s=self.checkpoint_every_s,
                      checkpoint_every_steps=self.checkpoint_every_steps, device=self.device, **fit_kwargs)
            self._finish(run, f" resumed from step {state.step}" if state else "")
            progress.update(1)
            return run

    def get_or_train_ensemble(self, configs: Sequence[RunConfig]) -> list[Run]:
        """The runs of ``configs`` (which must be stackable, see
        :func:`grokbook.ensemble.stackable`): those not stored are trained as ensembles,
        checkpointed like single runs (each row in its run's directory). Rows are
        bit-identical to single runs, so each resumes from its own checkpoint: the rows
        at the same checkpoint step train together."""
        from .ensemble import fit_ensemble

        unique = list({c.hash(): c for c in configs}.values())
        with contextlib.ExitStack() as locks:
            for c in sorted(unique, key=RunConfig.hash):  # one order everywhere: no deadlock
                locks.enter_context(self._lock(c))
            runs = {c.hash(): self.load(c) for c in unique}
            todo = [c for c in unique if runs[c.hash()] is None]
            if todo:  # stackable rows share every field that sets a run's size
                self._check_space(len(todo) * stored_size_bytes(todo[0]))
            by_step: dict[int, list[tuple[RunConfig, Optional[TrainState]]]] = {}
            for c in todo:
                state = self._load_checkpoint(c)
                by_step.setdefault(state.step if state else 0, []).append((c, state))
            for step, group in sorted(by_step.items()):
                group_configs = [c for c, _ in group]

                def checkpoint(rows: list[TrainState], group_configs=group_configs) -> None:
                    for c, s in zip(group_configs, rows):
                        self._save_checkpoint(c, s)

                trained = fit_ensemble(group_configs, states=[s for _, s in group] if step else None,
                                       checkpoint=checkpoint, checkpoint_every_s=self.checkpoint_every_s,
                                       checkpoint_every_steps=self.checkpoint_every_steps, device=self.device)
                for run in trained:
                    self._finish(run, f" (ensemble of {len(group)}{f', resumed from step {step}' if step else ''})")
                    runs[run.config.hash()] = run
        return [runs[c.hash()] for c in configs]  # type: ignore[misc]

    def configs(self) -> Iterator[RunConfig]:
        """Configs of every stored (finished) run trained on this store's kind of device;
        an unreadable ``config.json`` is reported and skipped."""
        for p in sorted(self._runs_path().glob("*/config.json")):
            if not (p.parent / "run.bin").exists():
                continue
            try:
                config = RunConfig.from_dict(json.loads(_read_regular(p)))
            except (CorruptFile, ValueError, TypeError, OSError) as err:
                _warn(f"{p} skipped: {err}", CorruptRunWarning, stacklevel=2)
                continue
            if p.parent.name == self.key(config):  # a run of this store's device
                yield config

    def hashes(self) -> list[str]:
        """Names of every stored finished run, sorted: ``<hash>`` for CPU runs,
        ``<hash>-<device>`` for the others (see :meth:`key`). Directories set aside
        (``*.mismatch-<n>``) are not runs."""
        runs = self._runs_path().glob("*/run.bin")
        return sorted(p.parent.name for p in runs if _RUN_NAME.fullmatch(p.parent.name))

    def load_hash(self, name: str, snapshots: bool = True) -> Optional[Run]:
        """The stored run called ``name`` (one of :meth:`hashes`, of any device); None
        if it is missing or fails its check (reported, left in place).

        ``snapshots=False`` reads everything but the weight snapshots (``run.snapshots``
        is then an empty ``(0, 0)`` array), from the archive without reading the rest of
        the file: about 4 times faster on the book's runs, for listing a store. Each array
        read is checked by its zip CRC-32 instead of the file's SHA-256."""
        path = self._runs_path() / name / "run.bin"
        if not name or os.sep in name or name.startswith(".") or not os.path.lexists(path):  # a name, never a path
            return None
        try:
            run = _run_from_bytes(_read_checked(path)) if snapshots else \
                _run_from_arrays(_read_members(path, skip=("snapshots",)))
        except _READ_ERRORS as err:
            _warn(f"{path} cannot be read: {err}", CorruptRunWarning, stacklevel=2)
            return None
        if run.config.hash() != name.split("-")[0]:
            _warn(f"{path} holds the run {run.config.hash()}, not {name}", CorruptRunWarning, stacklevel=2)
            return None
        return run

    def size_on_disk(self, name: str) -> int:
        """Bytes of the files in the directory of the stored run ``name`` (a name of
        :meth:`hashes`); 0 if there is none."""
        total = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self._runs_path() / name) as entries:
            for e in entries:
                if e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
        return total

    def _chapters_path(self) -> Path:
        """``root/chapters``; ``StoreError`` if it is a symbolic link."""
        d = self.root / "chapters"
        if d.is_symlink():
            raise StoreError(f"{d} is a symbolic link (to {os.readlink(d)}): the store does not read or write "
                             "through links; replace it by a directory")
        return d

    def save_chapter_runs(self, chapter: str, record: dict[str, Any]) -> Path:
        """Write ``record`` (JSON-able: the runs chapter ``chapter`` used) to
        ``chapters/<chapter>.json``, atomically; returns that path."""
        self._runs()  # the root, created private if missing
        d = self._chapters_path()
        d.mkdir(mode=0o700, exist_ok=True)
        _write_atomic(d / f"{chapter}.json", json.dumps(record, indent=1, default=str).encode(), framed=False)
        return d / f"{chapter}.json"

    def chapter_runs(self, chapter: str) -> Optional[dict[str, Any]]:
        """The record :meth:`save_chapter_runs` wrote for ``chapter``, or None if there
        is none; ``CorruptFile`` (not a regular file) or ``ValueError`` (not JSON)."""
        self._runs_path()  # refuses a symlinked runs/, reports a shared root
        path = self._chapters_path() / f"{chapter}.json"
        return json.loads(_read_regular(path)) if os.path.lexists(path) else None


def train(config: RunConfig, store: Optional[RunStore] = None, *, writer: Any = None, **kwargs: Any) -> Run:
    """Train ``config``; with a :class:`RunStore`, fetch it from the store or train and
    store it (resuming from a checkpoint if one is there). ``writer``: a TensorBoard
    writer the finished run is written to, loaded or trained (see
    :meth:`RunStore.get_or_train`, :func:`~grokbook.training.fit`)."""
    if store is not None:
        return store.get_or_train(config, writer=writer, **kwargs)
    return fit(config, writer=writer, **kwargs)
