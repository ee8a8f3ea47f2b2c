"""Producer configs given on the command line: JSON whose feed fields may name feeds."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError

from streams.producers import FEED_FIELDS, ConfigError, validate_config
from streams.selectors import FeedNotFound, feed_by_reference
from tenants.models import Tenant


def config_from_option(tenant: Tenant, kind: str, raw: str) -> dict[str, Any]:
    """``--config`` as given (``{"source": "pin"}``), feed names turned into the tenant's
    feed UUIDs, checked and with defaults filled in; CommandError says what is wrong."""
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise CommandError(f"--config is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CommandError("--config must be a JSON object, e.g. '{\"interval_ms\": 500}'")
    for field in FEED_FIELDS.get(kind, ()):
        if isinstance(config.get(field), str):
            try:
                config[field] = str(feed_by_reference(tenant, config[field]).uuid)
            except FeedNotFound as exc:
                raise CommandError(f"{field}: {exc}") from exc
    try:
        return validate_config(kind, config)
    except ConfigError as exc:
        raise CommandError(f"Bad producer config: {exc}") from exc
