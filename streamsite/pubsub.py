"""The hub's subscription to one Redis server: an asyncio protocol over hiredis.

Why not redis-py's PubSub, which the hub used before: every message it hands
over passes through five coroutine layers (get_message, parse_response, the
retry wrapper, read_response, its pure-Python RESP parser) and a timeout
context. On a process whose feeds are small, where each commit publishes to
many groups, that was a fifth of the event loop's time (docs/ARCHITECTURE.md,
"Many small feeds"); hiredis's parser, fed by the loop's own protocol, reads
every message of one socket read in one call. Commands stay with redis-py;
this speaks only the subscriber's part of RESP: SUBSCRIBE, UNSUBSCRIBE, PING,
AUTH, and the pushes Redis sends back. (``send_commands`` is the one other
raw path: pre-packed commands over a redis-py connection, for the
publisher thread and the ingest quota.) On a Redis Cluster the hub uses
streamsite.cluster.ShardedSubscription (redis-py's sharded PubSub) instead.

Like redis-py, it reconnects by itself: once a read has raised because the
connection was lost, the next call connects again and subscribes to every
channel it holds, and Redis confirms each, which is how the hub learns that
messages may have been missed (Hub._confirmed).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis
import redis

CONNECT_TIMEOUT_SECONDS = 2.0
# Replies parsed but not yet read by the hub: past this many, the socket is not read
# until half are taken (Redis then holds the rest, up to its output buffer limit
# for pub/sub clients, and drops a subscriber that far behind).
MAX_UNREAD_REPLIES = 10_000
_KINDS = {b"message": "message", b"subscribe": "subscribe", b"unsubscribe": "unsubscribe"}


def command(*parts: str | bytes) -> bytes:
    """One command as RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def send_commands(client: redis.Redis, commands: list[bytes]) -> list[Any]:
    """Writes RESP commands (see ``command``) in one send on a connection of the client's
    pool and returns their replies; raises the first error (a ResponseError too).

    For the few hot paths that send the same small commands all the time (the hub's
    publisher, the ingest writer's quota): redis-py's Pipeline costs ~25 us of Python
    per command (its command stack, response callbacks and observability hooks).

    A connection that fails mid-way is dropped (its replies would be out of
    step). One found broken before anything was sent is tried once more, as
    redis-py's default retry would; once sent, a command is never sent twice.
    """
    pool = client.connection_pool
    for attempt in (1, 2):
        connection = pool.get_connection()  # connected (or raises ConnectionError)
        sent = False
        try:
            connection.send_packed_command([b"".join(commands)])
            sent = True
            replies = [connection.read_response() for _ in commands]
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
            if sent or attempt == 2:
                raise
        except BaseException:
            connection.disconnect()
            raise
        else:
            return replies
        finally:
            pool.release(connection)

    raise AssertionError("unreachable")  # the second attempt returns or raises


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.replies: deque[Any] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                self.replies.append(reply)
        except hiredis.ProtocolError as exc:
            self.lost = redis.ConnectionError(f"unreadable reply from Redis: {exc}")
            if self.transport is not None:
                self.transport.abort()
        if len(self.replies) > MAX_UNREAD_REPLIES and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = redis.ConnectionError(f"connection to Redis lost ({exc or 'closed'})")
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> list[Any]:
        replies = list(self.replies)
        self.replies.clear()
        if self.paused and self.transport is not None and self.lost is None:
            self.paused = False
            self.transport.resume_reading()
        return replies

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 (the hub's read timeout)
        """Until a reply arrives, the connection is lost, or ``timeout`` passes."""
        if self.replies or self.lost is not None:
            return
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self.waiter, timeout)
        except TimeoutError:
            pass
        finally:
            self.waiter = None


class Subscription:
    """Subscribe, unsubscribe, ping and read, as the hub does with redis-py's PubSub."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self._unix = parsed.path if parsed.scheme == "unix" else None
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or 6379
        self._tls = parsed.scheme == "rediss"
        self._username = unquote(parsed.username) if parsed.username else None
        self._password = unquote(parsed.password) if parsed.password else None
        self._channels: set[str] = set()
        self._protocol: _Protocol | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> _Protocol:
        """The live connection; a new one (authenticated, every channel subscribed again)
        if there is none. Raises redis.ConnectionError if Redis cannot be reached."""
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        async with self._lock:
            protocol = self._protocol
            if protocol is not None and protocol.lost is None:
                return protocol
            self._protocol = None
            protocol = await self._connect()
            if self._channels:
                self._write(protocol, command("SUBSCRIBE", *sorted(self._channels)))
            self._protocol = protocol
            return protocol

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                if self._unix is not None:
                    _, protocol = await loop.create_unix_connection(_Protocol, self._unix)
                else:
                    context = ssl.create_default_context() if self._tls else None
                    _, protocol = await loop.create_connection(
                        _Protocol, self._host, self._port, ssl=context
                    )
                if self._password is not None:
                    auth = [self._username] if self._username else []
                    self._write(protocol, command("AUTH", *auth, self._password))
                    await protocol.wait(CONNECT_TIMEOUT_SECONDS)
                    (answer,) = protocol.take() or [protocol.lost]
                    if isinstance(answer, BaseException):
                        protocol.transport.close()  # type: ignore[union-attr]
                        raise redis.AuthenticationError(f"Redis refused AUTH: {answer}")
        except (OSError, TimeoutError) as exc:
            raise redis.ConnectionError(f"cannot reach Redis: {exc}") from exc
        return protocol

    @staticmethod
    def _write(protocol: _Protocol, data: bytes) -> None:
        if protocol.transport is None or protocol.lost is not None:
            raise redis.ConnectionError("connection to Redis lost")
        protocol.transport.write(data)

    async def subscribe(self, channel: str) -> None:
        protocol = await self._ready()
        if channel not in self._channels:
            self._channels.add(channel)
            self._write(protocol, command("SUBSCRIBE", channel))

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            self._write(protocol, command("UNSUBSCRIBE", channel))

    async def ping(self) -> None:
        self._write(await self._ready(), command("PING"))

    async def read_messages(self, timeout: float) -> list[dict[str, Any]]:  # noqa: ASYNC109 (PubSub's)
        """Every message and confirmation that has arrived, waiting up to ``timeout``
        for the first; in redis-py's shape (``type``, ``channel``, ``data``). Raises
        redis.ConnectionError once everything read before the connection was lost is out."""
        protocol = self._protocol
        if protocol is not None and protocol.lost is not None and not protocol.replies:
            self._protocol = None
            raise protocol.lost  # once; the next read connects again
        if protocol is None:
            protocol = await self._ready()
        await protocol.wait(timeout)
        replies = protocol.take()
        messages = []
        for reply in replies:
            if isinstance(reply, BaseException):
                raise redis.ResponseError(str(reply))
            if isinstance(reply, list) and len(reply) == 3:
                kind = _KINDS.get(reply[0])
                if kind is not None:
                    messages.append({"type": kind, "channel": reply[1], "data": reply[2]})
                    continue
            messages.append({"type": "pong", "channel": None, "data": reply})
        return messages

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
