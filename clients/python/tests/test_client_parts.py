"""The pieces that need no server: backoff, addresses, history rows, documents' page shapes."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from streamsite_client import AccessDenied, Backoff, GaveUp, Sample
from streamsite_client._connection import Credentials, Endpoint
from streamsite_client.backoff import Retry
from streamsite_client.history import parse_rows, to_dataframe
from streamsite_client.sync import Client as SyncClient


def test_backoff_doubles_up_to_its_maximum_with_jitter_below_the_ceiling():
    backoff = Backoff(initial=1.0, maximum=8.0, jitter=0.5)
    rng = random.Random(7)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (12, 8)]:
        delays = [backoff.delay(failures, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # spread: clients do not come back at once


def test_slow_failures_start_further_up_and_success_resets():
    retry = Retry(Backoff(initial=1.0, maximum=60.0, jitter=0.0, slow_start=4))
    assert retry.failed("close 1011", slow=True) == 8.0
    assert retry.failed("close 1006") == 2.0
    retry.succeeded()
    assert retry.failed("close 1006") == 1.0


def test_max_attempts_gives_up():
    retry = Retry(Backoff(max_attempts=2))
    retry.failed("x")
    with pytest.raises(GaveUp):
        retry.failed("y")


@pytest.mark.parametrize(
    ("base", "ws", "http"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws/feeds/u/?key=k", "http://127.0.0.1:8000"),
        ("https://example.org/", "wss://example.org/ws/feeds/u/?key=k", "https://example.org"),
        ("https://h/prefix", "wss://h/prefix/ws/feeds/u/?key=k", "https://h"),
        ("127.0.0.1:9", "ws://127.0.0.1:9/ws/feeds/u/?key=k", "http://127.0.0.1:9"),
    ],
)
def test_addresses(base, ws, http):
    endpoint = Endpoint(base)
    assert endpoint.ws_url("/ws/feeds/u/", {"key": "k", "since": None}) == ws
    assert endpoint.origin == http


def test_headers_carry_the_token_as_bearer_and_the_cookie_with_an_origin():
    endpoint = Endpoint("https://h")
    credentials = Credentials(token="t", session_cookie="sessionid=s; other=1")
    assert endpoint.headers(credentials, bearer=True) == {
        "Authorization": "Bearer t",
        "Cookie": "sessionid=s; other=1",
        "Origin": "https://h",
    }
    assert endpoint.headers(Credentials(key="k")) == {}


def row(seq: int) -> dict:
    return {"type": "sample", "seq": seq, "value": seq / 2, "ts": 100.0 + seq, "stats": {"n": seq}}


@pytest.mark.parametrize(
    "body",
    [
        '[{"type": "sample", "seq": 1, "value": 0.5, "ts": 101.0, "stats": {"n": 1}}]',
        '{"samples": [{"type": "sample", "seq": 1, "value": 0.5, "ts": 101.0, "stats": {"n": 1}}]}',
        '{"type": "sample", "seq": 1, "value": 0.5, "ts": 101.0, "stats": {"n": 1}}\n',
    ],
)
def test_history_rows_are_read_from_an_array_an_object_or_json_lines(body):
    assert [Sample.from_frame(r) for r in parse_rows(body)] == [Sample(1, 0.5, 101.0)]


def test_history_rows_from_several_json_lines():
    body = "\n".join(json.dumps(row(seq)) for seq in (1, 2, 3))
    assert [r["seq"] for r in parse_rows(body)] == [1, 2, 3]


def test_history_as_a_dataframe_indexed_by_seq():
    pandas = pytest.importorskip("pandas")
    frame = to_dataframe([Sample.from_frame(row(seq)) for seq in (4, 5)])
    assert list(frame.index) == [4, 5]
    assert list(frame["value"]) == [2.0, 2.5] and list(frame["stats_n"]) == [4, 5]
    assert frame["time"].iloc[0] == pandas.Timestamp(104.0, unit="s", tz="UTC")


class HistoryHandler(BaseHTTPRequestHandler):
    """Answers like Streamsite's history endpoint: a JSON array of sample frames
    after ``since``, at most ``limit`` (capped at 7 here, to exercise paging)."""

    stored = [row(seq) for seq in range(1, 24)]
    requests: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        type(self).requests.append(query)
        if query.get("key") != "K":
            self.send_response(404)
            self.end_headers()
            return
        since, limit = int(query.get("since", 0)), min(int(query.get("limit", 10_000)), 7)
        body = json.dumps([r for r in self.stored if r["seq"] > since][:limit]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def history_server():
    HistoryHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), HistoryHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_history_pages_through_everything_and_honours_since_and_limit(history_server):
    with SyncClient(history_server, key="K") as client:
        everything = client.history("f")
        some = client.history("f", since=5, limit=10)
        with pytest.raises(AccessDenied):
            client.history("f", key="wrong")
    assert [s.seq for s in everything] == list(range(1, 24))
    assert everything[0] == Sample(1, 0.5, 101.0) and everything[0].stats == {"n": 1}
    assert [s.seq for s in some] == list(range(6, 16))
    assert all(r["format"] == "json" for r in HistoryHandler.requests)
