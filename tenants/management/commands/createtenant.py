import os
import secrets

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import IntegrityError

from tenants.models import Tenant
from tenants.services import tenant_create, user_allow_admin, user_get_or_create


class Command(BaseCommand):
    help = (
        "Create a tenant and make USERNAME its owner. A missing user is created with the "
        "password from DJANGO_SUPERUSER_PASSWORD, else a new random one, printed once."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, help="username of the owner")
        parser.add_argument("--name", default="", help="display name (default: the slug)")
        parser.add_argument(
            "--staff",
            action="store_true",
            help="also let the owner sign in to /admin/, where they manage this tenant's objects",
        )

    def handle(self, *args, slug: str, owner: str, name: str, staff: bool, **options):
        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(
                f"{slug!r} is not a slug: use letters, digits, hyphens and underscores."
            ) from None
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"Tenant {slug!r} already exists.")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        user, created = user_get_or_create(username=owner, password=password)
        try:
            tenant = tenant_create(slug=slug, name=name, owner=user)
        except IntegrityError as exc:
            raise CommandError(f"Could not create tenant {slug!r}: {exc}") from exc
        if staff:
            user_allow_admin(user=user)
        if created and not os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            self.stdout.write(f"Created user {owner} with password {password} (shown only once).")
        self.stdout.write(f"Created tenant {tenant.slug} owned by {user.get_username()}.")
