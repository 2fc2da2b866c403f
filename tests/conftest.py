"""Shared fixtures: tiny configs, and an isolated run store for every test."""

import pytest
import torch

from grokbook import RunConfig


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the user's run store from a test; one thread in every process the
    tests start (tiny models gain nothing from more, and several processes at once
    with several threads each oversubscribe the cores, ten times slower)."""
    monkeypatch.setenv("GROKBOOK_HOME", str(tmp_path_factory.mktemp("grokbook_home")))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _loggers_restored(monkeypatch):
    """The command silences some libraries' loggers after Ctrl-C (cli.AFTER_INTERRUPT_LOGGERS);
    a test that makes it do so in this process leaves them as they were for the next."""
    import logging

    from grokbook.cli import AFTER_INTERRUPT_LOGGERS

    for name in AFTER_INTERRUPT_LOGGERS:
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))
        monkeypatch.setattr(logger, "propagate", logger.propagate)


@pytest.fixture
def tiny() -> RunConfig:
    """A config that trains in well under a second."""
    return RunConfig(p=11, r=0.5, n_layers=1, d_model=16, n_heads=2, steps=40, n_snapshots=6,
                     lr=3e-3, warmup_steps=5)


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(1)


@pytest.fixture
def float64():
    """Default dtype float64 for the test (oracle comparisons to rounding)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


#: Test modules whose every test starts a kernel or worker processes.
_SLOW_MODULES = {"test_chapters", "test_sweep_faults", "test_export", "test_offline_math"}
#: Calls in a test's own source that start a kernel or another process.
_SLOW_CALLS = ("subprocess", "Popen", "start_child", "run_chapter", "executor=", "Client(", "cli.main(", "main([")


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` the tests that start kernels or processes, so that
    ``pytest -m "not slow"`` is a fast loop; ``make test`` runs everything."""
    import inspect

    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        try:
            source = inspect.getsource(item.function)
        except (OSError, TypeError):
            source = ""
        if module in _SLOW_MODULES or any(call in source for call in _SLOW_CALLS):
            item.add_marker(pytest.mark.slow)
