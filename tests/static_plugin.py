"""Loaded by pytest (-p, see pyproject.toml) before Django reads its settings.

The suite runs as production does (DEBUG off): pages name content-hashed static
files from the manifest that ``collectstatic`` writes, and the servers the tests
start serve them with WhiteNoise. So the files are collected once per run, into
``var/test-static`` (only changed files are copied again), before any test.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("STATIC_ROOT", str(ROOT / "var" / "test-static"))
subprocess.run(
    [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
    cwd=ROOT,
    # The settings refuse DEBUG off without a key; this one never serves anything.
    env={"SECRET_KEY": "collectstatic-only", **os.environ, "DEBUG": "0"},
    check=True,
)
