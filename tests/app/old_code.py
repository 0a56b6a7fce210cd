"""Data folders made by the code of an earlier commit (its own source tree, in a child process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def run_old_code(commit: str, tmp_path: Path, script: str, *args) -> dict:
    """Run the Python code `script` (with `args`) on the source tree of `commit`; the last line
    of its output, read as JSON. Skips when the repository's history is not here."""
    old = tmp_path / f"code-{commit}"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "app", "ingest", "engine"],
                             capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"the repository's history is not here ({archive.stderr.decode().strip()})")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    run = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                         timeout=300, cwd=old,           # (python -c puts its cwd first on the path)
                         env={**os.environ, "PYTHONPATH": str(old)})
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])
