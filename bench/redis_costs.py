"""What Redis itself spends per Streamsite operation: redis-server CPU per message.

docs/SCALING.md builds its capacity model from the cost of each part; this is the
Redis part. A private redis-server (streamsite.redisproc) is driven with exactly
the commands Streamsite sends for each event, pipelined so that the client is not
the bottleneck, and the server's own CPU (psutil) is divided by the events sent:

- ``publish-S``: one live message (a ~200-byte sample frame) to a group that S
  processes subscribe to (each Daphne process subscribes once per group, however
  many of its viewers watch it), classic PUBLISH;
- ``spublish-S``: the same with sharded pub/sub (SPUBLISH/SSUBSCRIBE, REDIS_CLUSTER=1);
- ``handshake``: a viewer's arrival and departure (the connection-cap claim script
  over three caps, presence enter, then their release and presence leave).

Run: ``python bench/redis_costs.py`` (about 20 s); ``--count`` events per row.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamsite.redisproc import PrivateRedis  # noqa: E402
from streamsite.slots import _CLAIM  # noqa: E402

FRAME = json.dumps(
    {
        "type": "sample",
        "seq": 123456,
        "value": 1,
        "ts": 1764633600.123,
        "stats": {"n": 123456, "mean": 0.72, "lo": 0.7174, "hi": 0.7226},
    }
)


class Subscriber(threading.Thread):
    """A raw socket subscribed to one channel, read and thrown away (a Daphne process)."""

    def __init__(self, port: int, channel: str, sharded: bool) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        command = b"SSUBSCRIBE" if sharded else b"SUBSCRIBE"
        name = channel.encode()
        self.sock.sendall(
            b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(command), command, len(name), name)
        )
        self.sock.recv(4096)  # the confirmation

    def run(self) -> None:
        try:
            while self.sock.recv(1 << 20):
                pass
        except OSError:
            pass


def server_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def publishes(client: redis.Redis, port: int, count: int, subscribers: int, sharded: bool):
    channel = f"streamsite__group__feed.{uuid.uuid4()}"
    readers = [Subscriber(port, channel, sharded) for _ in range(subscribers)]
    for reader in readers:
        reader.start()
    command = "SPUBLISH" if sharded else "PUBLISH"
    pipe = client.pipeline(transaction=False)
    for index in range(count):
        pipe.execute_command(command, channel, f"{index}\t{FRAME}")
        if index % 500 == 499:
            pipe.execute()
    pipe.execute()
    for reader in readers:
        reader.sock.close()


def handshakes(client: redis.Redis, count: int) -> None:
    claim = client.register_script(_CLAIM)
    group = f"feed.{uuid.uuid4()}"
    pipe = client.pipeline(transaction=False)
    for index in range(count):
        member = uuid.uuid4().hex
        now = time.time()
        keys = [f"slots:{{slots}}:{kind}:{index % 7}" for kind in ("user", "key", "address")]
        claim(keys=keys, args=[now, now - 45, member, 10**6, 10**6, 10**6, 90], client=pipe)
        pipe.zadd(f"presence:{{{group}}}", {member: now})
        pipe.hset(f"presence-info:{{{group}}}", member, '{"user": null, "via": "share key"}')
        pipe.zcount(f"presence:{{{group}}}", now - 45, "+inf")
        for key in keys:
            pipe.zrem(key, member)
        pipe.zrem(f"presence:{{{group}}}", member)
        pipe.hdel(f"presence-info:{{{group}}}", member)
        if index % 100 == 99:
            pipe.execute()
    pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50_000)
    args = parser.parse_args()
    server = PrivateRedis().start()
    try:
        client = redis.Redis.from_url(server.url)
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        rows = []
        for sharded in (False, True):
            for subscribers in (1, 4, 16):
                before = server_cpu(process)
                publishes(client, server.port, args.count, subscribers, sharded)
                used = server_cpu(process) - before
                name = f"{'spublish' if sharded else 'publish'}-{subscribers}"
                rows.append((name, used / args.count * 1e6))
        count = args.count // 5
        before = server_cpu(process)
        handshakes(client, count)
        rows.append(("handshake", (server_cpu(process) - before) / count * 1e6))
        print("| Redis work | redis-server CPU µs per event |")
        print("| --- | --- |")
        for name, micros in rows:
            print(f"| {name} | {micros:.1f} |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
