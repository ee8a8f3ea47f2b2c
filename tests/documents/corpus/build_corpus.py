"""Write the TSV corpus used by tests/documents/test_tsv.py.

The files in bad/ and good/ are committed; this script is how they were made
(several are binary) and how to change them: edit the tables below, run
`python tests/documents/corpus/build_corpus.py`, and commit the result.
Each MANIFEST.json records what parse_tsv must make of each file.
"""

import gzip
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def tiny_png() -> bytes:
    """A real, valid 1x1 grey PNG."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def tiny_zip() -> bytes:
    """A real ZIP archive, as an .xlsx spreadsheet is, with a fixed date."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("sheet.tsv", (2024, 1, 1, 0, 0, 0)), "a\tb\n1\t2\n")
    return buffer.getvalue()


TOO_MANY_COLUMNS = "a\tb\tc\n1\t2\t3\n" + "\t".join(["x"] * 1001) + "\n"

# name -> (bytes, expected code, expected line, TSVLimits overrides, what it shows)
BAD: dict[str, tuple[bytes, str, int | None, dict[str, int], str]] = {
    "empty.tsv": (b"", "empty", None, {}, "zero bytes"),
    "whitespace_only.tsv": (b"  \t\n\r\n \n", "empty", None, {}, "spaces, tabs, line breaks"),
    "bom_only.tsv": (b"\xef\xbb\xbf", "empty", None, {}, "a UTF-8 BOM and nothing else"),
    "utf16_bom_only.tsv": (b"\xff\xfe", "empty", None, {}, "a UTF-16 BOM and nothing else"),
    "png_image.tsv": (tiny_png(), "binary", None, {}, "a real 1x1 PNG"),
    "zip_archive.tsv": (tiny_zip(), "binary", None, {}, "a real ZIP, as .xlsx files are"),
    "gzip_compressed.tsv": (
        gzip.compress(b"a\tb\n1\t2\n", mtime=0),
        "binary",
        None,
        {},
        "a gzip-compressed TSV",
    ),
    "nul_byte_line3.tsv": (
        b"a\tb\n1\t2\n3\x00\t4\n5\t6\n",
        "binary",
        3,
        {},
        "a NUL byte on line 3",
    ),
    "latin1_line3.tsv": (
        "name\tcity\nAnn\tParis\nJosé\tMálaga\n".encode("latin-1"),
        "encoding",
        3,
        {},
        "Latin-1 bytes (not UTF-8) on line 3",
    ),
    "latin1_cr_line_ends_line4.tsv": (
        "name\rAnn\rBob\rRenée\r".encode("latin-1"),
        "encoding",
        4,
        {},
        "bad UTF-8 on line 4 of a file with CR line ends",
    ),
    "utf16_without_bom.tsv": (
        "a\tb\n1\t2\n".encode("utf-16-le"),
        "encoding",
        1,
        {},
        "UTF-16 with no byte-order mark",
    ),
    "utf16_damaged_line2.tsv": (
        b"\xff\xfe" + "a\tb\n1\t".encode("utf-16-le") + b"\x00\xd8" + "x\n".encode("utf-16-le"),
        "encoding",
        2,
        {},
        "UTF-16 with an unpaired surrogate on line 2",
    ),
    "utf32.tsv": (
        "a\tb\n".encode("utf-32"),
        "encoding",
        1,
        {},
        "UTF-32, which is not supported",
    ),
    "unmatched_quote_line4.tsv": (
        b'a\tb\n1\t2\n3\t4\n"5\tsix\n7\t8\n',
        "unmatched_quote",
        4,
        {},
        "a quote opened on line 4 never closes",
    ),
    "unmatched_quote_after_multiline_field_line4.tsv": (
        b'a\tb\tc\n1\t2\t3\n"multi\nline"\t"opens on 4\tc\n7\t8\t9\n',
        "unmatched_quote",
        4,
        {},
        "the row starts on line 3; the unmatched quote opens on line 4",
    ),
    "field_too_long_line3.tsv": (
        b'a\tb\n1\t2\n"a field that starts on line 3\nand is too long"\t4\n',
        "field_too_long",
        3,
        {"max_field_chars": 40},
        "a quoted 45-character field starting on line 3, limit 40",
    ),
    "too_many_columns_line3.tsv": (
        TOO_MANY_COLUMNS.encode(),
        "too_many_columns",
        3,
        {},
        "1,001 fields on line 3 with the default limit of 1,000",
    ),
    "too_large.tsv": (
        b"a\tb\n" + b"1\t2\n" * 20,
        "too_large",
        None,
        {"max_bytes": 64},
        "84 bytes with a 64-byte limit",
    ),
    "empty_header.tsv": (b"\t\t\n1\t2\t3\n", "empty_header", 1, {}, "a header of empty names"),
    "blank_first_line.tsv": (
        b"\nname\tage\nAnn\t3\n",
        "empty_header",
        1,
        {},
        "the column names are on line 2, not line 1",
    ),
    "quoted_empty_header.tsv": (
        b'""\t" "\n1\t2\n',
        "empty_header",
        1,
        {},
        "quoted, but still empty, column names",
    ),
}

PEOPLE = 'name\tcity\tnote\nZoë\tMálaga\t東京 🚀\nBob\tOslo\t5" screen\n'
PEOPLE_TABLE = {
    "columns": ["name", "city", "note"],
    "rows": [["Zoë", "Málaga", "東京 🚀"], ["Bob", "Oslo", '5" screen']],
    "padded_lines": [],
    "warnings": [],
}

# name -> (bytes, expected ParsedTSV fields)
GOOD: dict[str, tuple[bytes, dict[str, Any]]] = {
    "utf8.tsv": (PEOPLE.encode(), {"encoding": "utf-8", **PEOPLE_TABLE}),
    "utf8_bom.tsv": (b"\xef\xbb\xbf" + PEOPLE.encode(), {"encoding": "utf-8-sig", **PEOPLE_TABLE}),
    "utf16_le_bom.tsv": (
        b"\xff\xfe" + PEOPLE.encode("utf-16-le"),
        {"encoding": "utf-16", **PEOPLE_TABLE},
    ),
    "utf16_be_bom.tsv": (
        b"\xfe\xff" + PEOPLE.encode("utf-16-be"),
        {"encoding": "utf-16", **PEOPLE_TABLE},
    ),
    "crlf.tsv": (
        PEOPLE.replace("\n", "\r\n").replace("Bob", "\r\nBob").encode(),
        {"encoding": "utf-8", **PEOPLE_TABLE},
    ),
    "cr_only.tsv": (PEOPLE.replace("\n", "\r").encode(), {"encoding": "utf-8", **PEOPLE_TABLE}),
    "ragged.tsv": (
        b"a\tb\tc\n1\t2\t3\n4\n5\t6\t7\t8\t9\n10\t11\t12\n",
        {
            "encoding": "utf-8",
            "columns": ["a", "b", "c", "column_4", "column_5"],
            "rows": [
                ["1", "2", "3", "", ""],
                ["4", "", "", "", ""],
                ["5", "6", "7", "8", "9"],
                ["10", "11", "12", "", ""],
            ],
            "padded_lines": [3, 4],
            "warnings": [
                "Some rows have more fields than the header's 3; "
                "added columns column_4, column_5, empty in the rows that lack them.",
                "Line 3 had 1 of 3 fields; padded.",
                "Line 4 had 5 fields, more than the header's 3; "
                "the extra ones are in column_4, column_5.",
            ],
        },
    ),
    "quoted.tsv": (
        b'id\ttext\n1\t"a\ttab"\n2\t"two\r\nlines"\n3\t"say ""hi"""\n4\t5" screen\n'
        b'5\t""\n"6\n"\n7\t"Hello" she said\n',
        {
            "encoding": "utf-8",
            "columns": ["id", "text"],
            "rows": [
                ["1", "a\ttab"],
                ["2", "two\r\nlines"],
                ["3", 'say "hi"'],
                ["4", '5" screen'],
                ["5", ""],
                ["6\n", ""],
                ["7", '"Hello" she said'],
            ],
            "padded_lines": [8],
            "warnings": ["Line 8 had 1 of 2 fields; padded."],
        },
    ),
    "header_only.tsv": (
        b"a\tb\tc\n",
        {
            "encoding": "utf-8",
            "columns": ["a", "b", "c"],
            "rows": [],
            "padded_lines": [],
            "warnings": [],
        },
    ),
    "blank_lines.tsv": (
        b"a\tb\n\n1\t2\n   \n\t\n3\t4\n\n\n",
        {
            "encoding": "utf-8",
            "columns": ["a", "b"],
            "rows": [["1", "2"], ["", ""], ["3", "4"]],
            "padded_lines": [],
            "warnings": [],
        },
    ),
    "repeated_and_missing_names.tsv": (
        b"name\tname\t\tname_2\n1\t2\t3\t4\n",
        {
            "encoding": "utf-8",
            "columns": ["name", "name_3", "column_3", "name_2"],
            "rows": [["1", "2", "3", "4"]],
            "padded_lines": [],
            "warnings": [
                'Column 2 repeats the name "name"; it is called "name_3".',
                "Column 3 has no name; it is called column_3.",
            ],
        },
    ),
}


def write(folder: Path, files: dict[str, bytes], manifest: dict[str, Any]) -> None:
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.tsv"):
        old.unlink()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    text = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    (folder / "MANIFEST.json").write_text(text, encoding="utf-8")


def main() -> None:
    write(
        HERE / "bad",
        {name: entry[0] for name, entry in BAD.items()},
        {
            name: {"code": code, "line": line, "limits": limits, "about": about}
            for name, (_, code, line, limits, about) in BAD.items()
        },
    )
    write(
        HERE / "good",
        {name: data for name, (data, _) in GOOD.items()},
        {name: expected for name, (_, expected) in GOOD.items()},
    )


if __name__ == "__main__":
    main()
