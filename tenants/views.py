"""View helpers shared by the feed and document pages."""

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse


def not_found_or_sign_in(request: HttpRequest, *, key: str | None, what: str) -> HttpResponse:
    """The answer when the access helper says no: an anonymous visitor without a
    key is asked to sign in; anyone else gets 404, "not yours" alike "no such"."""
    if not request.user.is_authenticated and not key:
        return redirect_to_login(request.get_full_path())
    raise Http404(f"No such {what}.")
