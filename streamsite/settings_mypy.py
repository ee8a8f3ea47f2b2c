"""Settings for mypy's django-stubs plugin (``[tool.django-stubs]`` in pyproject.toml).

The plugin imports the settings to learn the installed apps and models; with
nothing exported that needs the checkout's development defaults, as manage.py
applies them. Never used to run anything.
"""

from streamsite.checkout import apply_development_defaults

apply_development_defaults()

from streamsite.settings import *  # noqa: E402, F403
