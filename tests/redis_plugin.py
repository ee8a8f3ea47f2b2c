"""Loaded by pytest (-p, see pyproject.toml) before Django reads its settings.

The suite always runs against a real Redis: REDIS_URL when it is set, else a
private redis-server started here and stopped when the run ends.
"""

import os
from pathlib import Path

from streamsite.redisproc import ensure_redis_url

# The SQLite test database is a file here (see settings), so Daphne can share it.
(Path(__file__).resolve().parent.parent / "var").mkdir(exist_ok=True)

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-never-used-outside-the-test-suite")
# The test process closes its connections (worker threads included) so the test
# database can be dropped at the end; servers the tests start keep the default.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
# The test client speaks plain HTTP; TLS is the proxy's job (deploy/nginx.conf).
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
_private_redis = ensure_redis_url()


def pytest_report_header(config):
    return f"redis: {os.environ['REDIS_URL']}" + (" (private)" if _private_redis else "")


def pytest_unconfigure(config):
    if _private_redis is not None:
        _private_redis.stop()
