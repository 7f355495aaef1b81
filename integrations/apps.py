from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IntegrationsConfig(AppConfig):
    """The REST API, API keys and signed webhooks: supportdesk inside other systems."""

    name = "integrations"
    verbose_name = _("Integrations")
