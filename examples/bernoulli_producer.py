"""Seed 000's producer: every 100 ms, a sample of a Bernoulli (p = 0.72), published to a feed.

python examples/bernoulli_producer.py URL FEED --token TOKEN [--count N] [--interval S]
"""

import argparse
import asyncio
import random

from streamsite_client import Client


async def main(url: str, feed: str, token: str, p: float, interval: float, count: int) -> None:
    print(f"True p = {p}")
    async with Client(url, token=token).publisher(feed) as publisher:
        sent = 0
        while not count or sent < count:
            value = int(random.uniform(0, 1) <= p)
            await publisher.send(value)  # acknowledged in the background; resent after a drop
            print(f"Sending message {value}")
            sent += 1
            await asyncio.sleep(interval)
    # Leaving the block waited for every acknowledgement.


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("url")
    args.add_argument("feed")
    args.add_argument("--token", required=True)
    args.add_argument("--p", type=float, default=0.72)
    args.add_argument("--interval", type=float, default=0.1)
    args.add_argument("--count", type=int, default=0, help="stop after N samples (0: never)")
    a = args.parse_args()
    asyncio.run(main(a.url, a.feed, a.token, a.p, a.interval, a.count))
