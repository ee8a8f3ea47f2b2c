"""Seed 003's clock sketch: send a tick every DELAY seconds and wait for its acknowledgement.

python examples/clock.py URL CLOCK_FEED --token TOKEN [--tacks 5] [--delay 1]
"""

import argparse
import asyncio

from streamsite_client import Client


async def main(url: str, feed: str, token: str, tacks: int, delay: float) -> None:
    async with Client(url, token=token).publisher(feed) as ws:
        for payload in range(tacks):
            print(f"[ clock ] > {payload}")
            ack = await (await ws.send(payload))  # queued, then durable: the ack
            print(f"[ clock ] < {ack.seq}")
            await asyncio.sleep(delay)


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("url")
    args.add_argument("feed")
    args.add_argument("--token", required=True)
    args.add_argument("-t", "--tacks", type=int, default=5, help="number of clock ticks")
    args.add_argument("-d", "--delay", type=float, default=1.0, help="clock interval (s)")
    a = args.parse_args()
    asyncio.run(main(a.url, a.feed, a.token, a.tacks, a.delay))
