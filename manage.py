#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

In a checkout, ``python manage.py ...`` works with any Python 3.11+: when Django
is not importable it runs again with the checkout's ``.venv`` (which ``make run``
and ``make test`` set up). With nothing exported, it uses the same development
setup as ``make run`` (streamsite/checkout.py).
"""

import os
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv"
VENV_PYTHON = VENV / "bin" / "python"


def _run_in_venv_if_needed() -> None:
    try:
        import django  # noqa: F401
    except ImportError:
        # sys.prefix, not sys.executable: a venv's python is a symlink to the base one.
        if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV.resolve():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        sys.exit(
            "Django is not installed here: run `make run` (or `make test`) once to set up .venv."
        )


def main() -> None:
    _run_in_venv_if_needed()
    from streamsite.checkout import apply_development_defaults

    apply_development_defaults()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
