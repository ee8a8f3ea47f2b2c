"""Time `documents.tsv.parse_tsv` on ~10 MB files, against Python's csv module on the same bytes.

Run from the repository root: `python bench/tsv_parse.py` (`--quick`: one run
each). Prints, for each shape of file, the best of several runs of
`parse_tsv`, of `csv.reader` (decoding included, its default dialect with a
tab delimiter: not our dialect, but the speed of C on the same bytes), their
ratio, and how the time grows when the file is halved (2.0 is linear).
Nothing is written to disk.

The first five shapes are ordinary files (100,000 rows, 10 columns); the
others are pathological but legal: what a hostile uploader would send to make
the parser slow.
"""

import argparse
import csv
import functools
import io
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from documents.tsv import TSVError, TSVLimits, parse_tsv  # noqa: E402

ROWS = 100_000
COLUMNS = 10
RUNS = 5
MB = 1024 * 1024


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
    """Every row starts with `"x"y`, which the csv module refuses."""
    return plain([['"x"y', *(f'"{cell[:-3]}"' for cell in row[1:])] for row in cells])


# --- Pathological shapes, each about `size` bytes --------------------------------


def quote_a_quote_b(size: int) -> bytes:
    """`"a"b` on every line: each closing quote is followed by text, so no field is quoted."""
    return b"h\n" + b'"a"b\n' * (size // 5)


def long_text_then_quote_x(size: int) -> bytes:
    """`"` + 90,000 characters + `"x`: the quoted-looking field turns literal at its very end."""
    line = b'"' + b"a" * 90_000 + b'"x\n'
    return b"h\n" + line * (size // len(line))


def unmatched_looking(size: int) -> bytes:
    """`a<tab>"b`: every second field opens a quote that the next line's quote cannot close."""
    return b"h\tk\n" + b'a\t"b\n' * (size // 5) + b'x\t"y"\n'


def many_tabs(size: int) -> bytes:
    """999 tabs a row: 1,000 empty fields under a 1,000-column header."""
    header = "\t".join(f"c{n}" for n in range(1000)).encode()
    return header + b"\n" + (b"\t" * 999 + b"\n") * (size // 1000)


def many_short_lines(size: int) -> bytes:
    """`x` lines: millions of one-byte rows."""
    return b"h\n" + b"x\n" * (size // 2)


def many_short_quoted_lines(size: int) -> bytes:
    return b"h\n" + b'"x"\n' * (size // 4)


def one_quoted_field_spanning_the_file(size: int) -> bytes:
    """A quoted field of every line of the file (read with a field limit that allows it)."""
    return b'h\n"' + b"text\n" * (size // 5) + b'"\n'


PATHOLOGICAL: dict[str, Callable[[int], bytes]] = {
    '"a"b rows': quote_a_quote_b,
    '" + 90,000 chars + "x': long_text_then_quote_x,
    'unmatched-looking a\\t"b': unmatched_looking,
    "999 tabs a row": many_tabs,
    "1-byte lines (4.3 million)": many_short_lines,
    '"x" lines (2.2 million)': many_short_quoted_lines,
    "one quoted field, whole file": one_quoted_field_spanning_the_file,
}


def best_of(runs: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


def parse_or_error(data: bytes, limits: TSVLimits) -> object:
    try:
        return parse_tsv(data, limits=limits)
    except TSVError as error:
        return error


def csv_reference(data: bytes) -> object:
    csv.field_size_limit(sys.maxsize)  # the spanning field; this process only
    text = data.decode()
    return list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))


def interleaved(runs: int, *actions: Callable[[], object]) -> list[float]:
    """The best time of each action, running them in turn: on a shared machine,
    load then slows them alike and their ratios stay meaningful."""
    best = [float("inf")] * len(actions)
    for _ in range(runs):
        for index, action in enumerate(actions):
            start = time.perf_counter()
            action()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def report(name: str, data: bytes, limits: TSVLimits, runs: int, half: bytes | None) -> None:
    actions = [
        functools.partial(parse_or_error, data, limits),
        functools.partial(csv_reference, data),
    ]
    if half is not None:
        actions.append(functools.partial(parse_or_error, half, limits))
    ours, reference, *halved = interleaved(runs, *actions)
    growth = f"  x2 size: x{ours / halved[0]:.1f} time" if halved else ""
    print(
        f"{name:42} {len(data) / 1e6:5.1f} MB  {ours * 1000:7.0f} ms"
        f"  csv {reference * 1000:6.0f} ms  ratio {ours / reference:4.1f}{growth}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per measurement")
    runs = 1 if parser.parse_args().quick else RUNS
    cells = make_cells(random.Random(20240601))
    shapes = {
        "plain, LF": plain(cells),
        "plain, CRLF": plain(cells, "\r\n"),
        "1 row in 10 with a quoted multi-line cell": some_quoted(cells),
        "every cell quoted": all_quoted(cells),
        "every row refused by csv": every_row_refused_by_csv(cells),
    }
    # The bench measures speed, not the upload limit: allow a little over 10 MB.
    limits = TSVLimits(max_bytes=12 * MB)
    for name, data in shapes.items():
        parsed = parse_tsv(data, limits=limits)
        assert len(parsed.rows) == ROWS, name
        report(name, data, limits, runs, None)
    # A field limit that lets the spanning field be read to its end.
    roomy = TSVLimits(max_bytes=12 * MB, max_field_chars=12 * MB)
    for name, make in PATHOLOGICAL.items():
        report(name, make(int(8.7 * 1e6)), roomy, min(runs, 3), make(int(4.35 * 1e6)))


if __name__ == "__main__":
    main()
