"""Seed 003's IOPin sketch: on every clock tick, toggle a pin (0/1) with probability CHANCE
and publish its state with the tick's timestamp (which matches a tick to its pin state).

    python examples/iopin.py URL CLOCK_FEED --key CLOCK_KEY PIN_FEED --token PIN_TOKEN
                             [--chance 0.6] [--since SEQ] [--count N]
"""

import argparse
import asyncio
import random

from streamsite_client import Client


async def main(a: argparse.Namespace) -> None:
    client, state, ticks = Client(a.url), 0, 0
    async with client.publisher(a.pin, token=a.token) as pin:
        async for tick in client.follow(a.clock, since=a.since, key=a.key):
            print(f"[ IOPin ] new tick triggered on clock: {tick.value}")
            if random.random() < a.chance:
                state = 1 - state
            print(f"[ IOPin ] toggling pin state: {state}")
            await pin.send(state, ts=tick.ts)
            ticks += 1
            if a.count and ticks >= a.count:
                break


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("url")
    args.add_argument("clock")
    args.add_argument("--key", required=True)
    args.add_argument("pin")
    args.add_argument("--token", required=True)
    args.add_argument("--chance", type=float, default=0.6)
    args.add_argument("--since", type=int, default=None, help="replay ticks after this seq")
    args.add_argument("--count", type=int, default=0, help="stop after N ticks (0: never)")
    asyncio.run(main(args.parse_args()))
