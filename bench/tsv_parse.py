"""Time `documents.tsv.parse_tsv` on ~10 MB, 100,000-row, 10-column files.

Run from the repository root: `python bench/tsv_parse.py`. Prints the best of
five runs for each shape of file; nothing is written to disk.
"""

import functools
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from documents.tsv import TSVLimits, parse_tsv  # noqa: E402

ROWS = 100_000
COLUMNS = 10
RUNS = 5


def make_cells(rng: random.Random) -> list[list[str]]:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
    return [
        ["".join(rng.choices(alphabet, k=rng.randint(4, 14))) for _ in range(COLUMNS)]
        for _ in range(ROWS)
    ]


def plain(cells: list[list[str]], newline: str = "\n") -> bytes:
    header = "\t".join(f"column {n}" for n in range(1, COLUMNS + 1))
    body = newline.join("\t".join(row) for row in cells)
    return (header + newline + body + newline).encode()


def some_quoted(cells: list[list[str]]) -> bytes:
    """One row in ten has a quoted cell holding a tab, a quote and a line break."""
    quoted = [
        [f'"{row[0]}\t""x""\n{row[0]}"', *row[1:]] if index % 10 == 0 else row
        for index, row in enumerate(cells)
    ]
    return plain(quoted)


def all_quoted(cells: list[list[str]]) -> bytes:
    """Every cell quoted, as some exporters write; cells are shortened to keep
    the file about the same size."""
    return plain([[f'"{cell[:-2]}"' for cell in row] for row in cells])


def every_row_refused_by_csv(cells: list[list[str]]) -> bytes:
    """Worst case: every row starts with `"x"y`, which the csv module refuses,
    so each row is read by the pure-Python reader."""
    return plain([['"x"y', *(f'"{cell[:-3]}"' for cell in row[1:])] for row in cells])


def best_of(runs: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    cells = make_cells(random.Random(20240601))
    shapes = {
        "plain, LF": plain(cells),
        "plain, CRLF": plain(cells, "\r\n"),
        "1 row in 10 with a quoted multi-line cell": some_quoted(cells),
        "every cell quoted": all_quoted(cells),
        "worst case: every row refused by csv": every_row_refused_by_csv(cells),
    }
    # The bench measures speed, not the upload limit: allow a little over 10 MB.
    limits = TSVLimits(max_bytes=12 * 1024 * 1024)
    for name, data in shapes.items():
        parsed = parse_tsv(data, limits=limits)
        assert len(parsed.rows) == ROWS, name
        seconds = best_of(RUNS, functools.partial(parse_tsv, data, limits=limits))
        print(f"{name:45} {len(data) / 1e6:5.1f} MB  {seconds * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
