"""Every route of the URLconf and of the WebSocket router, with its parameters filled.

The security matrices are generated from here, so a route added tomorrow is
covered tomorrow. A parameter nobody taught ``OBJECT_PARAMETERS`` to fill is
an error, not a silent skip.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern

from streamsite.routing import websocket_urlpatterns

# The object each route parameter names, by parameter name.
OBJECT_PARAMETERS = {"feed_uuid": "feed", "document_uuid": "document"}

# Namespaces that address no tenant object by UUID: the admin's object ids are
# primary keys, guarded by the admin's own permissions (see the report in
# test_isolation_matrix.py).
# "admin-overrides" replaces admin URLs (the view-on-site redirect, scoped in
# tenants/admin_base.py and tested in tests/tenants/test_admin_view_on_site.py).
UNSCOPED_NAMESPACES = {"admin", "admin-overrides"}

# Django's syntax for a route parameter: <converter:name> or <name>.
_PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass(frozen=True)
class Route:
    template: str  # "feeds/<uuid:feed_uuid>/", as in the URLconf (no leading slash)
    callback: Any
    regex_parameters: tuple[str, ...] = ()  # named groups of a re_path() route

    @property
    def parameters(self) -> list[str]:
        if self.regex_parameters:
            return list(self.regex_parameters)
        return [m["name"] for m in _PARAMETER.finditer(self.template)]

    def fill(self, objects: dict[str, Any]) -> str:
        """This route's path naming ``objects`` (``{"feed": feed, "document": document}``)."""
        unknown = [
            name
            for name in self.parameters
            if self.regex_parameters or name not in OBJECT_PARAMETERS
        ]
        if unknown:
            raise LookupError(
                f"{self} takes {unknown}, which tests/security/routes.py cannot fill: "
                "declare it with path() and a parameter named in OBJECT_PARAMETERS, so "
                "that the security matrices cover it"
            )
        return "/" + _PARAMETER.sub(
            lambda m: str(objects[OBJECT_PARAMETERS[m["name"]]].uuid), self.template
        )

    def subject(self, objects: dict[str, Any]) -> Any:
        """The object this route is about (the one its last parameter names)."""
        self.fill(objects)  # fails loudly on a parameter it cannot fill
        return objects[OBJECT_PARAMETERS[self.parameters[-1]]]

    def __str__(self) -> str:
        return "/" + self.template


def _routes(patterns: list[Any], prefix: str = "") -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace not in UNSCOPED_NAMESPACES:
                yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            groups = ()
            if isinstance(entry.pattern, RegexPattern):
                groups = tuple(entry.pattern.regex.groupindex)
            yield Route(prefix + str(entry.pattern), entry.callback, groups)


def http_routes() -> list[Route]:
    """Every HTTP route, nested includes too, the admin aside."""
    return list(_routes(get_resolver().url_patterns))


def http_object_routes() -> list[Route]:
    return [route for route in http_routes() if route.parameters]


def websocket_object_routes() -> list[Route]:
    """Every WebSocket route that takes a parameter (the catch-all refusal takes none)."""
    return [route for route in _routes(websocket_urlpatterns) if route.parameters]


def consumer_of(route: Route) -> type:
    return route.callback.consumer_class
