from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """The REST API, API keys and signed webhooks: supportdesk inside other systems."""

    name = "integrations"
    verbose_name = "Integrations"
