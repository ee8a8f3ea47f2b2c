"""Time documents end to end: a ~10 MB, 100,000-row upload, a new version, and page reads.

Run from the repository root: `python bench/documents.py`. It uses a scratch
database made the way the tests make theirs (a temporary SQLite file, or
`test_<name>` on the server of DATABASE_URL, dropped afterwards), so it never
touches real data. Prints the median of several runs for each step.
"""

import functools
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

# Pages here are rendered in-process, without collectstatic: name the static
# files as they are (the page's cost, not the manifest's, is measured).
settings.STORAGES = {
    **settings.STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import (  # noqa: E402
    setup_databases,
    setup_test_environment,
    teardown_databases,
    teardown_test_environment,
)

from bench.tsv_parse import make_cells, plain  # noqa: E402
from documents import selectors, services  # noqa: E402
from documents.tsv import parse_tsv  # noqa: E402
from tenants.services import tenant_create  # noqa: E402

UPLOAD_RUNS = 3
READ_RUNS = 200
HTTP_RUNS = 20


def median_ms(runs: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def main() -> None:
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        database["TEST"]["NAME"] = str(Path(tempfile.mkdtemp()) / "bench.sqlite3")
    print(f"database: {connection.vendor}")
    setup_test_environment()  # lets the test client in (ALLOWED_HOSTS)
    state = setup_databases(verbosity=0, interactive=False)
    try:
        run()
    finally:
        teardown_databases(state, verbosity=0)
        teardown_test_environment()


def run() -> None:
    data = plain(make_cells(random.Random(20240601)))
    rows = len(parse_tsv(data).rows)
    print(f"file: {len(data) / 1e6:.1f} MB, {rows:,} rows, 10 columns")
    user = get_user_model().objects.create_user("bench")
    tenant = tenant_create(slug="bench", owner=user)

    parse = median_ms(UPLOAD_RUNS, lambda: parse_tsv(data))
    document = services.document_create(tenant=tenant, name="big", data=data).document
    replace = median_ms(
        UPLOAD_RUNS,
        lambda: services.document_replace(document=document, data=data, uploaded_by=user),
    )
    print(f"parse only                         {parse:7.0f} ms")
    print(f"new version (parse, store, delete) {replace:7.0f} ms")

    document.refresh_from_db()
    pages = selectors.page_count(document.row_count, settings.DOCUMENT_PAGE_SIZE)
    for label, page_no in [("first", 1), ("middle", pages // 2), ("last", pages)]:
        read = median_ms(READ_RUNS, functools.partial(selectors.document_page, document, page_no))
        services.document_page_set(document=document, page_no=page_no)
        shared = median_ms(READ_RUNS, lambda: selectors.document_current_page(document.pk))
        print(
            f"page {page_no:>4} ({label:6}) read {read:5.2f} ms, "
            f"shared page (document row + chunk) {shared:5.2f} ms"
        )
    client = Client()
    client.force_login(user)
    url = document.get_absolute_url()
    assert client.get(url).status_code == 200
    http = median_ms(HTTP_RUNS, lambda: client.get(url))
    print(f"HTTP document page (last page, rendered) {http:5.1f} ms")


if __name__ == "__main__":
    main()
