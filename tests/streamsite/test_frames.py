"""The wire protocol as code (streamsite/frames.py) against its catalogue (docs/PROTOCOL.md).

Both ways: every frame type, field, error code and close code the module
defines is documented, and everything documented is defined. And the code
builds frames only through the module.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from streamsite import frames

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = (ROOT / "docs" / "PROTOCOL.md").read_text()


def _section(title: str) -> str:
    start = PROTOCOL.index(f"\n## {title}\n")
    end = PROTOCOL.find("\n## ", start + 1)
    return PROTOCOL[start : end if end != -1 else None]


def _table_rows(text: str, first_header: str) -> list[list[str]]:
    """The body rows of the markdown table whose first header cell is ``first_header``."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        header = line.lstrip().startswith("|") and cells[0] == first_header
        if header and index + 1 < len(lines) and lines[index + 1].lstrip().startswith("| ---"):
            rows = []
            for body in lines[index + 2 :]:
                if not body.lstrip().startswith("|"):
                    break
                rows.append([c.strip() for c in body.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table headed {first_header!r} in docs/PROTOCOL.md")


def _names(cell: str) -> set[str]:
    """The field names of a cell: its backticked words, not those in parentheses."""
    return set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", cell)))


def test_every_frame_type_and_field_is_documented_and_nothing_more():
    documented = {}
    for row in _table_rows(_section("Frame catalogue"), "`type`"):
        (frame_type,) = _names(row[0])
        documented[frame_type] = (_names(row[1]) | {"type"}, _names(row[2]))
    defined = {t: tuple(set(s) for s in frames.fields(t)) for t in frames.FRAMES}
    assert documented == defined


def test_every_error_code_is_documented_and_nothing_more():
    rows = _table_rows(_section("Frame catalogue"), "`error`")
    assert {_names(row[0]).pop() for row in rows} == {code.value for code in frames.ErrorCode}
    # Common rules list the socket codes; each is one of them.
    listed = re.search(r"Codes:\n(.*?)\. A refusal", _section("Common rules"), re.S)
    assert listed and _names(listed.group(1)) <= {code.value for code in frames.ErrorCode}


def test_every_close_code_is_documented_and_nothing_more():
    rows = _table_rows(_section("Common rules"), "code")
    assert {int(row[0]) for row in rows} == {int(code) for code in frames.Close}


def test_the_per_socket_tables_name_only_catalogued_frames():
    tables = _table_rows(_section("Feeds"), "frame") + _table_rows(_section("Documents"), "frame")
    named = {_names(row[0]).pop() for row in tables}
    assert named and named <= set(frames.FRAMES)


def test_builders_give_frames_that_check():
    stats = {"n": 1}
    built = [
        frames.hello(
            feed={"uuid": "u", "name": "n", "kind": "binary"}, last_seq=0, stats=stats, watching=1
        ),
        json.loads(frames.sample_text(seq=1, value=1, ts=2.5, stats_json=json.dumps(stats))),
        frames.resync(reason="r", since=3, oldest_seq=None),
        frames.presence(2),
        frames.ack(4),
        frames.ack(4, duplicate=True),
        frames.ack(4, duplicate=False, seqs=[3, 2, 4], duplicates=[1]),
        frames.page(
            page_no=1,
            page_size=100,
            total_number=0,
            total_pages=1,
            columns=["a"],
            data=[],
            version=1,
            state=1,
        ),  # fmt: skip
        frames.uploaded(version=2, row_count=3, warnings=[]),
        frames.error(frames.ErrorCode.QUOTA_EXCEEDED, "m", limit="max_documents"),
        frames.error(frames.ErrorCode.INVALID_TSV, "m", reason="empty", line=None),
        frames.error(frames.ErrorCode.BAD_PARAM, "m", param="since"),
    ]
    for frame in built:
        assert frames.check(json.loads(frames.encode(frame))) == frame
    assert frames.ack(4) == {"type": "ack", "seq": 4}  # the optional fields only when given


def test_check_refuses_a_frame_with_a_missing_or_unknown_field_or_code():
    with pytest.raises(ValueError, match="missing"):
        frames.check({"type": "hello", "feed": {}, "last_seq": 0, "stats": {}})
    with pytest.raises(ValueError, match="unexpected"):
        frames.check({"type": "presence", "watching": 1, "who": []})
    with pytest.raises(ValueError, match="unknown error code"):
        frames.check({"type": "error", "error": "oops", "message": ""})
    with pytest.raises(ValueError, match="not a known frame"):
        frames.check({"type": "access_changed"})
    with pytest.raises(ValueError):
        frames.error("oops", "an unknown code is a bug, not a frame")


def test_frames_of_other_modules_are_built_here(settings):
    from streamsite.bodylimits import BodyLimit, too_large_body
    from streamsite.slots import Claim, Refused, too_many_connections
    from tenants.quotas import QuotaExceeded

    checked = [
        json.loads(too_large_body(BodyLimit("PUBLISH_MAX_BYTES", 10))),
        too_many_connections(Refused(Claim("connections_per_user", "k", 50))),
        QuotaExceeded("max_documents", "too many").frame(),
    ]
    for frame in checked:
        frames.check(frame)


_SOURCES = [
    path
    for app in ("streamsite", "streams", "documents", "tenants")
    for path in sorted((ROOT / app).rglob("*.py"))
    if "migrations" not in path.parts
]


def _hand_built_frames(source: str) -> list[int]:
    """Lines of dict displays ``{"type": <a catalogued frame type>, ...}``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "type"
                    and isinstance(value, ast.Constant)
                    and value.value in frames.FRAMES
                ):
                    found.append(node.lineno)
    return found


@pytest.mark.parametrize("path", _SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_builds_a_frame_by_hand_or_imports_encode_from_elsewhere(path):
    text = path.read_text()
    if path.name == "frames.py" and path.parent.name == "streamsite":
        return
    assert _hand_built_frames(text) == [], "build frames with streamsite.frames"
    for imported in re.findall(r"from (\S+) import [^\n]*\bencode\b", text):
        assert imported == "streamsite.frames", f"encode imported from {imported}"


def test_the_hand_built_frame_finder_finds_one():
    assert _hand_built_frames('x = 1\nsend({"type": "ack", "seq": 1})\n') == [2]


def test_a_sample_frame_is_exactly_what_json_would_write():
    stats = '{"n":3,"mean":0.5}'
    for value in [0, 1, -7, 2**70, 0.1, -2.5e-300, 1.7976931348623157e308, 123456789.123]:
        for ts in [0.0, 1764662400.123456, 1e-7]:
            text = frames.sample_text(seq=9, value=value, ts=ts, stats_json=stats)
            expected = json.dumps(
                {"type": "sample", "seq": 9, "value": value, "ts": ts, "stats": json.loads(stats)},
                separators=(",", ":"),
            )
            assert text == expected


def test_encode_is_compact_and_refuses_nan():
    assert frames.encode({"type": "ack", "seq": 1, "x": [1.5, None]}) == (
        '{"type":"ack","seq":1,"x":[1.5,null]}'
    )
    with pytest.raises(ValueError):
        frames.encode({"value": float("nan")})
