"""Types for views: what a view behind ``login_required`` may assume of its request."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest


class AuthenticatedHttpRequest(HttpRequest):
    """The request of a ``login_required`` view: ``request.user`` is a signed-in user.

    For type checkers only (django-stubs' documented pattern); nothing is checked
    at run time beyond what ``login_required`` already ensures.
    """

    user: User
