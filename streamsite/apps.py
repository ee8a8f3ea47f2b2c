from django.apps import AppConfig


class StreamsiteConfig(AppConfig):
    """The project package as an app: it holds no models, only the system checks."""

    name = "streamsite"

    def ready(self) -> None:
        from streamsite import checks  # noqa: F401  (registers them)
