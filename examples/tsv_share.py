"""Seeds 002 and 004: share a TSV file at a URL; everyone looking sees the same page.

Uploads a new version (optional), turns to a page (optional), then prints the
shared page each time anyone changes it.

    python examples/tsv_share.py URL DOCUMENT --key KEY [--upload FILE.tsv] [--page N] [--count N]
"""

import argparse
import asyncio
from pathlib import Path

from streamsite_client import Client


async def main(a: argparse.Namespace, data: bytes | None) -> None:
    async with Client(a.url, key=a.key).document(a.document) as doc:
        if data is not None:
            uploaded = await doc.upload(data)
            print(f"uploaded version {uploaded.version}: {uploaded.row_count} rows")
        if a.page:
            await doc.turn(a.page)
        shown = 0
        async for page in doc.pages():
            print(f"page {page.page_no}/{page.total_pages} of version {page.version}, "
                  f"{page.total_number} rows")  # fmt: skip
            print("\t".join(page.columns))
            for row in page.data[:5]:
                print("\t".join(row))
            shown += 1
            if a.count and shown >= a.count:
                break


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("url")
    args.add_argument("document")
    args.add_argument("--key")
    args.add_argument("--upload", help="a TSV file to upload as the new version")
    args.add_argument("--page", type=int, help="turn everyone to this page")
    args.add_argument("--count", type=int, default=0, help="stop after N pages shown (0: never)")
    a = args.parse_args()
    asyncio.run(main(a, Path(a.upload).read_bytes() if a.upload else None))
