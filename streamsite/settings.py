"""Streamsite settings: everything comes from the environment (see .env.example)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from streamsite.checkout import recorded_redis_url
from streamsite.env import env_bool, env_int, env_list, env_origins, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "django-insecure-streamsite-development-only"
SECRET_KEY = env_str("SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG else None)
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example).")

# With DEBUG on and no ALLOWED_HOSTS, Django accepts localhost, 127.0.0.1 and [::1].
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# A script that asks for JSON gets the refusal as JSON (docs/openapi.json), a browser the page.
CSRF_FAILURE_VIEW = "streamsite.views.csrf_failure"
# The origins (scheme://host[:port]) the site's pages are served from: a WebSocket
# carries the session only from these (streamsite/security.py). Empty: https://
# on each of ALLOWED_HOSTS (port 443). `make run` sets it to its own port.
SITE_ORIGINS = env_origins("SITE_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "tenants.adminconfig.ConsoleAdminConfig",  # django.contrib.admin, owners let in
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "streamsite.apps.StreamsiteConfig",  # system checks (streamsite/checks.py)
    "tenants",
    "streams",
    "documents",
]

# The Daphne processes serve /static/ (WhiteNoise: streamsite/staticfiles.py) unless a
# proxy does (deploy/nginx-locations.conf; SERVE_STATIC=0).
SERVE_STATIC = env_bool("SERVE_STATIC", True)

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # /static/ (WhiteNoise), unless a proxy serves it: see STATIC_ROOT below.
    *(["streamsite.staticfiles.StaticFilesMiddleware"] if SERVE_STATIC else []),
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out sign-in into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# Sign-in throttling (django-axes) on both sign-in pages (/accounts/login/ and
# /admin/login/): after AXES_FAILURE_LIMIT failures for one username, or from
# one client address, further attempts (the right password too) get a 429 page
# for AXES_COOLOFF_MINUTES. The address is REMOTE_ADDR, which Daphne takes from
# X-Forwarded-For only when started with --proxy-headers (deploy/ does, behind
# nginx); without it a forged header changes nothing. Lift a lockout with
# `manage.py axes_reset_username <name>`, `axes_reset_ip <address>`, `axes_reset`
# or by deleting the attempt in the admin (Axes > Access attempts).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ALLOWED_CORS_ORIGINS = ""

ROOT_URLCONF = "streamsite.urls"
ASGI_APPLICATION = "streamsite.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default; PostgreSQL (or anything dj-database-url reads) via DATABASE_URL.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Persistent connections: consumers reach the database through a worker
        # thread, and opening a connection per call costs more than the query.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take SQLite's write lock at BEGIN, so two writers
    # serialise instead of failing with "database is locked" on upgrade; WAL lets
    # readers (viewers, the web process) run while a producer writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The end-to-end tests run Daphne in a subprocess, which must see the test
    # database: a file, not SQLite's in-memory default.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
# In production `manage.py collectstatic` writes content-hashed, compressed copies to
# STATIC_ROOT and the pages name the hashed files (cached for a year); in DEBUG the
# files are served from static/ and the apps as they are (no collectstatic needed).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Messages live in the session (server side), not in a cookie: the admin shows
# a new producer token or share link once, as a message (tenants/admin_base.py).
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Redis carries the live events between processes (groups keyed by UUID). A
# deployment names it; in a checkout with DEBUG on it is the private Redis that
# `make run` records (streamsite/checkout.py), and none at all while `make run`
# is not running: never whatever else listens on 127.0.0.1:6379.
REDIS_URL: str
REDIS_URL_ORIGIN: str  # environment, make run, none or default (streamsite.W002)
if env_str("REDIS_URL"):
    REDIS_URL, REDIS_URL_ORIGIN = env_str("REDIS_URL") or "", "environment"
elif DEBUG:
    REDIS_URL = recorded_redis_url() or f"unix://{VAR_DIR / 'redis' / 'not-running.sock'}"
    REDIS_URL_ORIGIN = "make run" if recorded_redis_url() else "none"
else:
    REDIS_URL, REDIS_URL_ORIGIN = "redis://127.0.0.1:6379/0", "default"
# Each event loop's one Redis pool (streamsite/runtime.py): connections for commands
# (presence, slots, quotas, metrics) beside the hub's subscription, and how long a
# burst waits for a free one before that call fails.
REDIS_POOL_SIZE = env_int("REDIS_POOL_SIZE", 50, minimum=1)
REDIS_POOL_TIMEOUT_SECONDS = env_int("REDIS_POOL_TIMEOUT_SECONDS", 10, minimum=1)
# REDIS_URL names any node of a Redis Cluster (7+): groups use sharded pub/sub
# (SSUBSCRIBE/SPUBLISH) and every key is routed to its slot (streamsite/cluster.py).
REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
# The Channels layer: channels-redis's pub/sub layer on the same Redis, whose groups
# are the hub's (streamsite/hub.py, "The channel layer"): group_send(group, {"type":
# "stream.frame", "frame": ...}) from any process or shell reaches the group's viewers.
CHANNEL_LAYERS = {
    "default": {
        # On a cluster, the same layer whose group_send SPUBLISHes (streamsite/cluster.py).
        "BACKEND": "streamsite.cluster.ClusterChannelLayer"
        if REDIS_CLUSTER
        else "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "streamsite", "serializer_format": "json"},
    }
}

# Feeds
FEED_REPLAY_LIMIT = env_int("FEED_REPLAY_LIMIT", 10_000, minimum=1)
FEED_DEFAULT_RETENTION = env_int("FEED_DEFAULT_RETENTION", 100_000, minimum=1)

# Documents
DOCUMENT_PAGE_SIZE = env_int("DOCUMENT_PAGE_SIZE", 100, minimum=1)
DOCUMENT_MAX_BYTES = env_int("DOCUMENT_MAX_BYTES", 10 * 1024 * 1024, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = DOCUMENT_MAX_BYTES + 1024 * 1024
# Worker processes per server process that parse uploads (documents/parsing.py);
# 0 parses in the request's own thread.
DOCUMENT_PARSE_WORKERS = env_int("DOCUMENT_PARSE_WORKERS", 1, minimum=0)
# Daphne closes the socket (code 1009) on any WebSocket message over this size,
# 1 MiB by default. A document upload is one binary message of up to
# DOCUMENT_MAX_BYTES; the extra megabyte lets a slightly larger file still get a
# readable `too_large` error frame. Daphne's `runserver` reads these two names;
# `python -m streamsite.server` passes them to Daphne.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = DOCUMENT_MAX_BYTES + 1024 * 1024
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE

# Largest HTTP request body on routes without a limit of their own (document
# uploads: DOCUMENT_MAX_BYTES + 1 MiB; the publish API: PUBLISH_MAX_BYTES). Refused
# (413) before it is buffered: see streamsite/bodylimits.py.
HTTP_MAX_BODY_BYTES = env_int("HTTP_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)

# Production hardening: on whenever DEBUG is off (manage.py check --deploy clean).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL") or "INFO"},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        # Lockouts are warnings; every successful sign-in is an info line.
        "axes": {"level": "WARNING"},
    },
}

# /metrics requires "Authorization: Bearer <METRICS_TOKEN>" when set.
METRICS_TOKEN = env_str("METRICS_TOKEN") or ""

# Largest HTTP publish body and publish-socket frame.
PUBLISH_MAX_BYTES = env_int("PUBLISH_MAX_BYTES", 256 * 1024, minimum=1024)
# Group commit pacing (streams/ingest.py): while many publish sockets are busy, at
# most one commit of published samples per this many ms per process (0: no pacing).
INGEST_COMMIT_INTERVAL_MS = env_int("INGEST_COMMIT_INTERVAL_MS", 20, minimum=0)
# Frames a publisher may send per second (sustained; twice that in a burst).
PUBLISH_RATE_LIMIT = env_int("PUBLISH_RATE_LIMIT", 20_000, minimum=1)
# A WebSocket with more than this much unsent is closed (4008): see streamsite/server.py.
WEBSOCKET_MAX_PENDING_BYTES = env_int("WEBSOCKET_MAX_PENDING_BYTES", 4 * 1024 * 1024, minimum=1024)
# A WebSocket handshake not done this long after its TCP connection is dropped
# (Daphne's --websocket_connect_timeout; its own default, 5 s, turned a reconnect
# storm into a retry storm: every handshake queued past 5 s was refused and retried).
WEBSOCKET_CONNECT_TIMEOUT_SECONDS = env_int("WEBSOCKET_CONNECT_TIMEOUT_SECONDS", 30, minimum=1)
# Open WebSockets one signed-in user may hold at once.
MAX_CONNECTIONS_PER_USER = env_int("MAX_CONNECTIONS_PER_USER", 50, minimum=1)
# Open connections (WebSockets and Server-Sent Events) per credential, counted in
# Redis across processes (streamsite/slots.py); 4429 or HTTP 429 beyond.
MAX_CONNECTIONS_PER_SHARE_KEY = env_int("MAX_CONNECTIONS_PER_SHARE_KEY", 500, minimum=1)
MAX_CONNECTIONS_PER_ADDRESS = env_int("MAX_CONNECTIONS_PER_ADDRESS", 1000, minimum=1)

# Per-tenant quotas: the defaults; a superuser sets a tenant's own in the admin
# (tenants/quotas.py).
QUOTA_MAX_FEEDS = env_int("QUOTA_MAX_FEEDS", 100, minimum=0)
QUOTA_MAX_DOCUMENTS = env_int("QUOTA_MAX_DOCUMENTS", 100, minimum=0)
QUOTA_MAX_STORED_BYTES = env_int("QUOTA_MAX_STORED_BYTES", 1024**3, minimum=0)
QUOTA_SAMPLES_PER_SECOND = env_int("QUOTA_SAMPLES_PER_SECOND", 10_000, minimum=0)
QUOTA_CONCURRENT_UPLOADS = env_int("QUOTA_CONCURRENT_UPLOADS", 2, minimum=0)
QUOTA_CONCURRENT_EXPORTS = env_int("QUOTA_CONCURRENT_EXPORTS", 2, minimum=0)
