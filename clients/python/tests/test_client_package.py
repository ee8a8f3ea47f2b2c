"""The package stands on its own: no Django, typed (mypy --strict from its pyproject)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_client_imports_nothing_of_django():
    code = (
        "import sys, streamsite_client, streamsite_client.sync\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'channels'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE_ROOT
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_the_package_passes_mypy_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "streamsite_client"],
        capture_output=True, text=True, cwd=PACKAGE_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
