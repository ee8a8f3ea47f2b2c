from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from tenants.models import Tenant
from tenants.services import tenant_create, user_allow_admin, user_get_or_create


class Command(BaseCommand):
    help = (
        "Create a tenant and make USERNAME its owner. A missing user is created with the "
        "password from DJANGO_SUPERUSER_PASSWORD (as createsuperuser --noinput does)."
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
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"Tenant {slug!r} already exists.")
        user, created = user_get_or_create(username=owner)
        try:
            tenant = tenant_create(slug=slug, name=name, owner=user)
        except IntegrityError as exc:
            raise CommandError(f"Could not create tenant {slug!r}: {exc}") from exc
        if staff:
            user_allow_admin(user=user)
        if created and not user.has_usable_password():
            self.stderr.write(
                f"User {owner!r} was created without a password "
                "(set DJANGO_SUPERUSER_PASSWORD to give one)."
            )
        self.stdout.write(f"Created tenant {tenant.slug} owned by {user.get_username()}.")
