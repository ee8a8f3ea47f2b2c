"""A private nginx in front of Daphne processes, for the deploy tests and the benchmark.

Debian's nginx binary, run unprivileged in the foreground with every file inside
one directory (``prefix``), listening on a loopback port. The site includes
deploy/nginx-locations.conf itself, the file production includes, with only the
static directory changed, so what is tested and measured is the recipe.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PRODUCTION_STATIC_ROOT = "/srv/streamsite/static/"
_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str | None:
    """The nginx program, or None when it is not installed."""
    for candidate in (shutil.which("nginx") or "", "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def replaced(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; fails if the deploy file no longer says ``old``."""
    assert old in text, f"deploy/ no longer contains {old!r}: update its users"
    return text.replace(old, new)


def locations(static_root: Path) -> str:
    """deploy/nginx-locations.conf serving static files from ``static_root``."""
    text = (DEPLOY / "nginx-locations.conf").read_text()
    return replaced(text, PRODUCTION_STATIC_ROOT, f"{static_root}/")


def site(upstream_ports: list[int], port: int, locations_path: Path) -> str:
    """The upstream ``streamsite`` (one line per Daphne port) and a server on ``port``."""
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstream_ports)
    return (
        f"    upstream streamsite {{\n{servers}\n    }}\n"
        f"    server {{\n        listen 127.0.0.1:{port};\n"
        f"        include {locations_path};\n    }}\n"
    )


def main_config(prefix: Path, site: str, worker_connections: int = 512) -> str:
    """nginx's main file: everything inside ``prefix``, in the foreground, one worker."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the pytest tmp dirs
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in _TEMP_KINDS)
    return f"""{user}worker_processes 1;
worker_rlimit_nofile {max(1024, 2 * worker_connections + 64)};
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} notice;
events {{ worker_connections {worker_connections}; }}
http {{
    {mime}
    default_type application/octet-stream;
{temp}
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {prefix / "access.log"} upstreams;
{site}
}}
"""


@dataclass
class Nginx:
    process: subprocess.Popen
    port: int
    prefix: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def upstreams_of(self, path: str, timeout: float = 10.0) -> list[str]:
        """``$upstream_addr`` of each logged request for ``path`` (logged once it ends)."""
        deadline = time.monotonic() + timeout
        while True:
            log = (self.prefix / "access.log").read_text()
            found = [line.split()[-1] for line in log.splitlines() if line.split()[1] == path]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_nginx(
    binary: str, prefix: Path, site: str, port: int, worker_connections: int = 512
) -> Nginx:
    """nginx with ``site`` in its http block, once it listens on ``port``."""
    for kind in _TEMP_KINDS:
        (prefix / kind).mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(main_config(prefix, site, worker_connections))
    errors = prefix / "error.log"
    checked = subprocess.run(
        [binary, "-t", "-c", str(config), "-p", str(prefix), "-e", str(errors)],
        capture_output=True,
        text=True,
    )
    if checked.returncode != 0:
        raise RuntimeError(f"nginx -t refused {config}:\n{checked.stderr}")
    process = subprocess.Popen(
        [binary, "-c", str(config), "-p", str(prefix), "-e", str(errors)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"nginx did not listen on {port}:\n{errors.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return Nginx(process, port, prefix)
        except OSError:
            time.sleep(0.1)
