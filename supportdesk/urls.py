from django.contrib import admin
from django.urls import include, path

from chat.admin import analytics_view
from integrations.api import api
from integrations.views import api_docs

urlpatterns = [
    path("", include("chat.urls")),
    # Before the API's own routes: its human page (the OpenAPI document rendered here).
    path("api/v1/docs", api_docs, name="api-docs"),
    path("api/v1/", api.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    # set_language: an agent's dashboard language, kept in the language cookie.
    path("i18n/", include("django.conf.urls.i18n")),
    # Providers' inbound mail webhooks (the email channel, inbox/webhooks.py), e.g.
    # /anymail/mailgun/inbound/ and /anymail/postmark/inbound/.
    path("anymail/", include("anymail.urls")),
    # Before admin.site.urls, whose catch-all would answer 404; admin_view makes it
    # staff only, with the admin's login redirect.
    path("admin/analytics/", admin.site.admin_view(analytics_view), name="admin-analytics"),
    path("admin/", admin.site.urls),
]
