"""Every chapter executes with the smoke profile through papermill, then nbval checks
that the executed notebook runs cleanly again (its runs come from the store)."""

import subprocess
import sys

import pytest

from grokbook.chapters import find_chapters, run_chapter

CHAPTERS = list(find_chapters())


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_smoke(name, tmp_path):
    out = run_chapter(name, profile="smoke", output=tmp_path / f"{name}.ipynb")
    assert out.exists()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
