"""Documents of the shared world (tests/conftest.py): acme's is shared by key, globex's is not."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from documents.models import Document
from documents.services import document_create

CORPUS = Path(__file__).resolve().parent / "corpus"
BAD_CORPUS: dict[str, dict[str, Any]] = json.loads((CORPUS / "bad" / "MANIFEST.json").read_text())


def numbers_tsv(rows: int, *, tag: str = "") -> bytes:
    """A header ``n  square  tag`` and ``rows`` rows: row i (1-based) is ``i  i*i  tag``."""
    lines = ["n\tsquare\ttag", *(f"{i}\t{i * i}\t{tag}" for i in range(1, rows + 1))]
    return ("\n".join(lines) + "\n").encode()


def big_tsv(rows: int = 100_000) -> bytes:
    """About 10 MB for 100,000 rows: row i starts with i, so every page can be checked."""
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
    lines = ["id\t" + "\t".join(f"column {n}" for n in range(1, 10))]
    for i in range(1, rows + 1):
        cells = ("".join(rng.choices(alphabet, k=9)) for _ in range(9))
        lines.append(f"{i}\t" + "\t".join(cells))
    return ("\n".join(lines) + "\n").encode()


def tsv_of_size(size: int) -> bytes:
    """A TSV file of exactly ``size`` bytes (at least a few hundred): numbered rows, padded."""
    row = "\t".join(["x" * 9] * 9)
    lines, length, i = ["id\tvalues"], len("id\tvalues\n"), 0
    while length + 2 * (len(row) + 10) < size:
        i += 1
        lines.append(f"{i}\t{row}")
        length += len(lines[-1]) + 1
    prefix = f"{i + 1}\t"
    lines.append(prefix + "y" * (size - length - len(prefix) - 1))
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) == size
    return data


@pytest.fixture
def acme_document(world) -> Document:
    """250 rows (3 pages of 100), followable by share key, owned by alice's tenant."""
    return document_create(
        tenant=world.acme,
        name="numbers",
        data=numbers_tsv(250, tag="v1"),
        uploaded_by=world.alice,
        share="follow",
    ).document


@pytest.fixture
def globex_document(world) -> Document:
    return document_create(
        tenant=world.globex, name="secret", data=numbers_tsv(5), share="steer"
    ).document
