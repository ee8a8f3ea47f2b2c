"""Uploads are parsed in a worker process (documents/parsing.py), errors and all."""

from __future__ import annotations

import os
import signal

import pytest

from documents import parsing
from documents.tsv import TSVError, TSVLimits, json_pack, pack_tsv

LIMITS = TSVLimits()
FILE = b"name\tscore\nada\t3\nbob\n" + b"".join(b"row%d\t%d\n" % (n, n) for n in range(250))


def test_an_upload_parsed_in_a_worker_equals_one_parsed_here():
    packed = parsing.pack_upload(FILE, rows_per_pack=100, limits=LIMITS)
    here = pack_tsv(FILE, pack=json_pack, rows_per_pack=100, limits=LIMITS)
    assert packed == here and packed.row_count == 252 and len(packed.packs) == 3


def test_a_refused_file_is_refused_with_its_code_and_line_from_the_worker():
    with pytest.raises(TSVError) as refused:
        parsing.pack_upload(b'a\tb\n1\t"open\n', rows_per_pack=100, limits=LIMITS)
    assert (refused.value.code, refused.value.line) == ("unmatched_quote", 2)


def test_the_parse_does_not_run_in_the_server_process():
    assert parsing._executor().submit(os.getpid).result() != os.getpid()


def test_a_worker_that_dies_fails_one_upload_clearly_and_is_replaced():
    worker = parsing._executor().submit(os.getpid).result()
    os.kill(worker, signal.SIGKILL)
    with pytest.raises(parsing.ParserUnavailable, match="send it again"):
        parsing.pack_upload(FILE, rows_per_pack=100, limits=LIMITS)
    assert parsing.pack_upload(FILE, rows_per_pack=100, limits=LIMITS).row_count == 252
