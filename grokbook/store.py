"""The run store: finished runs on disk, keyed by the config hash.

Layout under the store's root (``$GROKBOOK_HOME``, else the user cache directory)::

    runs/<hash>/config.json     the RunConfig, human-readable
    runs/<hash>/run.bin         the Run: an .npz payload followed by its SHA-256
    runs/<hash>/checkpoint.bin  while training: the last TrainState, same framing
    runs/<hash>.lock            held while a process trains or repairs that run
    train.log                   one line per run trained, with its wall time

Every file is written to a temporary name and renamed, so a reader never sees half a
file. A file whose checksum does not match is reported (``CorruptRunWarning``), kept
aside as ``*.corrupt`` and the run is trained again; it is never loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
from filelock import FileLock

from .config import RunConfig
from .train import METRICS, Run, TrainState, fit

_DIGEST = 32  # bytes of SHA-256 appended to every stored payload


class CorruptRunWarning(UserWarning):
    """A stored run or checkpoint failed its integrity check and will be retrained."""


class CorruptFile(Exception):
    """Internal: a framed file whose payload does not match its checksum."""


def default_home() -> Path:
    """``$GROKBOOK_HOME`` if set, else the platform's user cache directory."""
    env = os.environ.get("GROKBOOK_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("grokbook"))


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` plus its SHA-256 to ``path`` via a temporary file and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.write(hashlib.sha256(payload).digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_checked(path: Path) -> bytes:
    """The payload of a file written by :func:`_write_atomic`; ``CorruptFile`` if the
    file is truncated or altered."""
    blob = path.read_bytes()
    payload, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if len(blob) < _DIGEST or hashlib.sha256(payload).digest() != digest:
        raise CorruptFile(f"{path} ({len(blob)} bytes) fails its SHA-256 check")
    return payload


def _run_to_bytes(run: Run) -> bytes:
    arrays = {f"m_{k}": v for k, v in run.metrics.items()}
    arrays.update(val_steps=run.val_steps, val_loss=run.val_loss, val_acc=run.val_acc,
                  snapshot_steps=run.snapshot_steps, snapshots=run.snapshots,
                  diverged_at=np.array(-1 if run.diverged_at is None else run.diverged_at),
                  wall_time_s=np.array(run.wall_time_s),
                  config=np.array(json.dumps(run.config.to_dict())))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _run_from_bytes(payload: bytes) -> Run:
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        diverged = int(z["diverged_at"])
        return Run(
            config=RunConfig.from_dict(json.loads(str(z["config"]))),
            metrics={k: z[f"m_{k}"] for k in METRICS},
            val_steps=z["val_steps"], val_loss=z["val_loss"], val_acc=z["val_acc"],
            snapshot_steps=z["snapshot_steps"], snapshots=z["snapshots"],
            diverged_at=None if diverged < 0 else diverged,
            wall_time_s=float(z["wall_time_s"]),
        )


class RunStore:
    """Runs on disk keyed by :meth:`RunConfig.hash`, safe to share between processes.

    ``checkpoint_every_s``: seconds of training between checkpoints of a run in
    progress (a killed run resumes from the last one and ends bit-identical).
    """

    def __init__(self, path: Optional[str | os.PathLike[str]] = None,
                 checkpoint_every_s: float = 30.0) -> None:
        self.root = Path(path).expanduser() if path is not None else default_home()
        self.checkpoint_every_s = checkpoint_every_s

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def _dir(self, config: RunConfig) -> Path:
        return self.root / "runs" / config.hash()

    def _lock(self, config: RunConfig) -> FileLock:
        (self.root / "runs").mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / "runs" / f"{config.hash()}.lock"))

    def _quarantine(self, path: Path, err: Exception) -> None:
        bad = path.with_suffix(path.suffix + ".corrupt")
        os.replace(path, bad)
        warnings.warn(f"{err}; kept aside as {bad.name}, the run will be retrained",
                      CorruptRunWarning, stacklevel=3)

    def load(self, config: RunConfig) -> Optional[Run]:
        """The stored run of ``config``, or None if there is none (or it was corrupt,
        in which case it is reported and moved aside)."""
        path = self._dir(config) / "run.bin"
        if not path.exists():
            return None
        try:
            run = _run_from_bytes(_read_checked(path))
        except (CorruptFile, ValueError, KeyError, OSError) as err:
            with self._lock(config):
                if path.exists():
                    self._quarantine(path, err if isinstance(err, CorruptFile)
                                     else CorruptFile(f"{path} cannot be read: {err}"))
            return None
        if run.config != config:
            raise RuntimeError(f"{path} holds {run.config}, not {config}: hash collision?")
        return run

    def __contains__(self, config: RunConfig) -> bool:
        return (self._dir(config) / "run.bin").exists()

    def save(self, run: Run, note: str = "") -> None:
        """Store ``run`` (atomically) under its config's hash, with a line in train.log."""
        d = self._dir(run.config)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(run.config.to_dict(), indent=1))
        _write_atomic(d / "run.bin", _run_to_bytes(run))
        with open(self.root / "train.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {run.config.hash()} "
                      f"{run.wall_time_s:.1f}s{note}\n")

    def _load_checkpoint(self, config: RunConfig) -> Optional[TrainState]:
        path = self._dir(config) / "checkpoint.bin"
        if not path.exists():
            return None
        try:
            return pickle.loads(_read_checked(path))
        except (CorruptFile, pickle.UnpicklingError, EOFError, AttributeError) as err:
            self._quarantine(path, err if isinstance(err, CorruptFile)
                             else CorruptFile(f"{path} cannot be read: {err}"))
            return None

    def _save_checkpoint(self, config: RunConfig, state: TrainState) -> None:
        _write_atomic(self._dir(config) / "checkpoint.bin", pickle.dumps(state))

    def get_or_train(self, config: RunConfig, **fit_kwargs: Any) -> Run:
        """The run of ``config``: loaded if stored, else trained (resuming from its
        checkpoint if there is one) and stored. Concurrent callers for the same config
        wait for one another: the run is trained once."""
        run = self.load(config)
        if run is not None:
            return run
        with self._lock(config):
            run = self.load(config)  # another process may have finished it meanwhile
            if run is not None:
                return run
            state = self._load_checkpoint(config)
            run = fit(config, state=state, checkpoint=lambda s: self._save_checkpoint(config, s),
                      checkpoint_every_s=self.checkpoint_every_s, **fit_kwargs)
            self.save(run, note=f" resumed from step {state.step}" if state else "")
            (self._dir(config) / "checkpoint.bin").unlink(missing_ok=True)
            return run

    def configs(self) -> Iterator[RunConfig]:
        """Configs of every stored (finished) run."""
        for p in sorted((self.root / "runs").glob("*/config.json")):
            if (p.parent / "run.bin").exists():
                yield RunConfig.from_dict(json.loads(p.read_text()))
