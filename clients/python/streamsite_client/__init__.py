"""Streamsite's Python client: follow feeds, publish samples, share documents, read history.

Async first (``Client``); ``streamsite_client.sync`` wraps it for plain scripts.
See clients/python/README.md.
"""

from streamsite_client.backoff import Backoff
from streamsite_client.client import Client
from streamsite_client.documents import DocumentSession
from streamsite_client.errors import (
    AccessDenied,
    AccessRevoked,
    BadRequest,
    Closed,
    ConnectionLost,
    DocumentError,
    GaveUp,
    HTTPError,
    PublisherClosed,
    PublishError,
    PublishFailed,
    ResyncError,
    StreamsiteError,
    TooManyConnections,
)
from streamsite_client.feeds import FeedStream
from streamsite_client.frames import (
    Ack,
    Disconnected,
    FeedEvent,
    Hello,
    Page,
    Presence,
    Resync,
    Sample,
    Uploaded,
)
from streamsite_client.publisher import Publisher

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AccessRevoked",
    "Ack",
    "Backoff",
    "BadRequest",
    "Client",
    "Closed",
    "ConnectionLost",
    "Disconnected",
    "DocumentError",
    "DocumentSession",
    "FeedEvent",
    "FeedStream",
    "GaveUp",
    "HTTPError",
    "Hello",
    "Page",
    "Presence",
    "PublishError",
    "PublishFailed",
    "Publisher",
    "PublisherClosed",
    "Resync",
    "ResyncError",
    "Sample",
    "StreamsiteError",
    "TooManyConnections",
    "Uploaded",
]
