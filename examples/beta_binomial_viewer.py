"""Seed 000's viewer: follow a binary feed and keep the Beta-Binomial posterior (prior Beta(2, 2)).

python examples/beta_binomial_viewer.py URL FEED --key KEY [--since SEQ] [--count N]
"""

import argparse
import asyncio

from streamsite_client import Client


async def main(url: str, feed: str, key: str, since: int | None, count: int) -> None:
    successes = trials = 0
    # Reconnects by itself and resumes where it left off: no sample missed or counted twice.
    async for sample in Client(url, key=key).follow(feed, since=since):
        successes += int(sample.value)
        trials += 1
        alpha, beta = 2 + successes, 2 + trials - successes
        print(f"α = {alpha}; β = {beta}; mean = {successes / trials}")
        if count and trials >= count:
            break


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("url")
    args.add_argument("feed")
    args.add_argument("--key", required=True)
    args.add_argument("--since", type=int, default=None, help="replay after this seq")
    args.add_argument("--count", type=int, default=0, help="stop after N samples (0: never)")
    a = args.parse_args()
    asyncio.run(main(a.url, a.feed, a.key, a.since, a.count))
