"""django.contrib.admin with the console's site, which lets tenant owners in (tenants/admin_site.py).

Its own module: INSTALLED_APPS imports it before the models exist.
"""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    default_site = "tenants.admin_site.ConsoleSite"
