"""View helpers shared by the feed and document pages, and the invitation page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from streamsite.http import AuthenticatedHttpRequest
from tenants import services


def not_found_or_sign_in(request: HttpRequest, *, key: str | None, what: str) -> HttpResponse:
    """The answer when the access helper says no: an anonymous visitor without a
    key is asked to sign in; anyone else gets 404, "not yours" alike "no such"."""
    if not request.user.is_authenticated and not key:
        return redirect_to_login(request.get_full_path())
    raise Http404(f"No such {what}.")


@login_required
def invitation_accept(request: AuthenticatedHttpRequest) -> HttpResponse:
    """``/invitations/?token=``: an owner's invitation to join their tenant; POST accepts.

    The token rides in the query string, which the access log leaves out.
    """
    token = request.GET.get("token", "")
    error = invitation = None
    try:
        invitation = services.invitation_read(token=token, user=request.user)
        if request.method == "POST":
            services.invitation_accept(token=token, user=request.user)
            messages.success(request, f"You are now a member of {invitation.tenant}.")
            return redirect("dashboard")
    except services.InvitationError as exc:
        error = str(exc)
    status = 400 if error else 200
    return render(
        request,
        "tenants/invitation.html",
        {"invitation": invitation, "error": error},
        status=status,
    )
