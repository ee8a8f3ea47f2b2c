"""Documents of the shared world (tests/conftest.py): acme's is shared by key, globex's is not."""

from __future__ import annotations

import json
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
