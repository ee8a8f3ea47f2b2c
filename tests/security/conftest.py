"""The objects of both tenants that the security matrices address by UUID."""

from __future__ import annotations

import pytest

from tests.documents import conftest as documents

# The document fixtures live with the document tests; the matrices need them too.
acme_document = documents.acme_document
globex_document = documents.globex_document


@pytest.fixture
def acme_objects(acme_feed, acme_document) -> dict:
    """Alice's tenant's objects, by the name routes.OBJECT_PARAMETERS uses."""
    return {"feed": acme_feed.feed, "document": acme_document}


@pytest.fixture
def globex_objects(globex_feed, globex_document) -> dict:
    """Charlie's own objects: what he legitimately holds keys and tokens for."""
    return {"feed": globex_feed.feed, "document": globex_document}
