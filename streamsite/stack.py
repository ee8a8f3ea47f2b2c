"""`make run`: the whole service on one machine, with demo data.

Starts a private Redis when REDIS_URL is not set, migrates, loads the demo
tenant, then runs Daphne and every enabled producer until Ctrl-C, and stops
everything it started. While it runs, the Redis it uses is recorded in
``var/redis/url``, so that ``python manage.py ...`` in another shell of the
checkout reaches the same Redis (streamsite/checkout.py); the site's address
is recorded in ``var/server/url`` the same way.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from streamsite.checkout import (
    apply_development_defaults,
    forget_redis_url,
    forget_server_url,
    record_redis_url,
    record_server_url,
)
from streamsite.redisproc import ensure_redis_url

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def main() -> int:
    # Lines as they happen, also into a pipe or a file (`make run | tee run.log`,
    # a test waiting for the URL): block buffering held them back until exit.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    apply_development_defaults()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
    # The pages are served on this port: only they may open sockets with the session.
    port = os.environ.get("PORT", "8000")
    host = os.environ.get("HOST", "127.0.0.1")
    os.environ.setdefault(
        "SITE_ORIGINS",
        ",".join(f"http://{name}:{port}" for name in dict.fromkeys((host, "localhost"))),
    )
    redis = ensure_redis_url()
    if redis is not None:
        print(f"Started a private Redis at {redis.url}")
    redis_url = os.environ["REDIS_URL"]
    record_redis_url(redis_url)
    try:
        return run_service()
    finally:
        forget_redis_url(redis_url)
        if redis is not None:
            redis.stop()


def run_service() -> int:
    port = os.environ.get("PORT", "8000")
    host = os.environ.get("HOST", "127.0.0.1")
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), check=True)
    demo = subprocess.run(
        manage("loaddemo", "--base-url", f"http://{host}:{port}"),
        check=True,
        capture_output=True,
        text=True,
    )

    children = [
        subprocess.Popen(
            [sys.executable, "-m", "streamsite.server", "-b", host, "-p", port],
            cwd=ROOT,
        ),
        subprocess.Popen(manage("runproducers"), cwd=ROOT),
    ]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print()
    record_server_url(f"http://{host}:{port}")
    print(f"Streamsite is running at http://{host}:{port}/")
    print(demo.stdout.strip())
    print("It runs every enabled producer (no need for runproducers); Ctrl-C stops it all.")
    print()
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        forget_server_url(f"http://{host}:{port}")
    print("Stopped.")
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
