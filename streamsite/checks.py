"""System checks for the misconfigurations the README and OPERATIONS.md warn about.

They describe a deployment, so they run with ``manage.py check --deploy`` (the
README's recipe runs it after ``collectstatic``, before starting anything), and
say nothing while DEBUG is on. Each id, what it means and its fix is listed in
docs/OPERATIONS.md ("System checks").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.http.request import validate_host

from streamsite.security import parse_origin

TAG = "streamsite"
_MANIFEST_STORAGES = ("ManifestStaticFilesStorage", "CompressedManifestStaticFilesStorage")


@register(TAG, deploy=True)
def check_hosts_and_origins(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    if not settings.ALLOWED_HOSTS:
        return [
            Error(
                "ALLOWED_HOSTS is empty with DEBUG off: every request is refused (400).",
                hint="Set ALLOWED_HOSTS to the host names the site is served on.",
                id="streamsite.E001",
            )
        ]
    messages: list[CheckMessage] = []
    secure = [
        name for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE") if getattr(settings, name)
    ]
    for entry in settings.SITE_ORIGINS:
        origin = parse_origin(entry.replace("://*.", "://."))
        if origin is None:  # env_origins already refused the shape; a wildcard stays
            continue
        host = origin.host.lstrip(".")
        if not validate_host(host, settings.ALLOWED_HOSTS):
            messages.append(
                Error(
                    f"SITE_ORIGINS names {entry}, whose host is not in ALLOWED_HOSTS: its pages "
                    "are refused (400), so no browser there can open a socket.",
                    hint="Add the host to ALLOWED_HOSTS, or correct SITE_ORIGINS.",
                    id="streamsite.E002",
                )
            )
        if origin.scheme == "http" and secure:
            messages.append(
                Error(
                    f"SITE_ORIGINS names the plain-HTTP origin {entry} while "
                    f"{' and '.join(secure)} {'are' if len(secure) > 1 else 'is'} on: browsers there are redirected to https, or "
                    "never send the session cookie back, so nobody can sign in there.",
                    hint="Serve the site over https (the proxy terminates TLS) and name the "
                    "https:// origin, or turn those settings off for a plain-HTTP site.",
                    id="streamsite.E003",
                )
            )
    return messages


@register(TAG, deploy=True)
def check_static_files(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    backend = settings.STORAGES["staticfiles"]["BACKEND"]
    if not backend.endswith(_MANIFEST_STORAGES):
        return []
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if manifest.is_file():
        return []
    return [
        Error(
            f"No static files manifest at {manifest}: every page fails (500) naming a "
            "static file that was not collected.",
            hint="Run `python manage.py collectstatic --noinput` with this STATIC_ROOT "
            "(after each upgrade too).",
            id="streamsite.E004",
        )
    ]


@register(TAG, deploy=True)
def check_shared_services(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    messages: list[CheckMessage] = []
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        messages.append(
            Warning(
                "The database is SQLite with DEBUG off. With several Daphne processes and "
                "runproducers (deploy/), every write waits for one file lock.",
                hint="Set DATABASE_URL to PostgreSQL (postgres://user:password@host/name).",
                id="streamsite.W001",
            )
        )
    if settings.REDIS_URL_ORIGIN == "default":
        messages.append(
            Warning(
                f"REDIS_URL is not set: live events go to {settings.REDIS_URL}, whatever listens "
                "there, and processes on other hosts never hear each other.",
                hint="Set REDIS_URL to the Redis every Streamsite process shares.",
                id="streamsite.W002",
            )
        )
    return messages


@register(TAG, deploy=True)
def check_redis_cluster(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With REDIS_CLUSTER=1, REDIS_URL must name a node of a cluster that serves every slot."""
    if settings.DEBUG or not settings.REDIS_CLUSTER:
        return []
    import redis

    where = settings.REDIS_URL.rsplit("@", 1)[-1]  # never a password
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    try:
        info = client.execute_command("CLUSTER", "INFO")
        problem = None if "cluster_state:ok" in _text(info) else "its cluster_state is not ok"
    except redis.ResponseError as exc:
        problem = f"it is not a cluster node ({exc})"
    except (redis.RedisError, OSError) as exc:
        problem = f"it does not answer ({exc})"
    finally:
        client.close()
    if problem is None:
        return []
    return [
        Error(
            f"REDIS_CLUSTER is on and REDIS_URL names {where}, but {problem}: live events, "
            "presence and connection caps would fail.",
            hint="Point REDIS_URL at a node of a Redis Cluster (Redis 7+) whose slots are all "
            "served, or set REDIS_CLUSTER=0 for a single Redis.",
            id="streamsite.E005",
        )
    ]


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)
