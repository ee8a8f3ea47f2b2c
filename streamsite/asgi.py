"""ASGI entry point: HTTP through Django, WebSockets through the Origin gate and session auth."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up: the routes import models.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402

from streamsite.bodylimits import BodyLimitApp  # noqa: E402
from streamsite.routing import WebSocketRouter, websocket_urlpatterns  # noqa: E402
from streamsite.security import OriginGate  # noqa: E402

# Static files are served by a middleware (streamsite/staticfiles.py). Under
# streamsite.server, Daphne's HTTP layer refuses oversized bodies first; this
# covers other ASGI servers (manage.py runserver, uvicorn).
http_app = BodyLimitApp(django_asgi_app)

websocket_router = WebSocketRouter(websocket_urlpatterns)
application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": OriginGate(
            AuthMiddlewareStack(websocket_router), without_session=websocket_router
        ),
    }
)
