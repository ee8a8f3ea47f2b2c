"""Seed 003's buzzer sketch: buzz (publish 1, with the pin sample's timestamp) each time the
pin flips from 0 to 1.

    python examples/buzzer.py URL PIN_FEED --key PIN_KEY BUZZ_FEED --token BUZZ_TOKEN
                              [--since SEQ] [--count N]
"""

import argparse
import asyncio

from streamsite_client import Client


async def main(a: argparse.Namespace) -> None:
    client, pin, seen = Client(a.url), 0, 0
    async with client.publisher(a.buzz, token=a.token) as buzzer:
        async for sample in client.follow(a.pin, since=a.since, key=a.key):
            if pin == 0 and sample.value == 1:
                print(f"[ Buzzer ] bzzz (pin seq {sample.seq})")
                await buzzer.send(1, ts=sample.ts)
            pin = int(sample.value)
            seen += 1
            if a.count and seen >= a.count:
                break


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("url")
    args.add_argument("pin")
    args.add_argument("--key", required=True)
    args.add_argument("buzz")
    args.add_argument("--token", required=True)
    args.add_argument("--since", type=int, default=None, help="replay pin samples after this seq")
    args.add_argument("--count", type=int, default=0, help="stop after N pin samples (0: never)")
    asyncio.run(main(args.parse_args()))
