from django.urls import path

from . import attachment_views, dashboard_views, views, widget_views

urlpatterns = [
    path("", views.home, name="home"),
    path("agent/", dashboard_views.dashboard, name="agent-dashboard"),
    path("docs/<slug:slug>", views.docs, name="docs"),
    path("api/v1/visitor-sessions", views.visitor_sessions, name="visitor-sessions"),
    path("api/v1/offline-messages", views.offline_messages, name="offline-messages"),
    path("api/v1/attachments", attachment_views.upload, name="attachments"),
    path("attachments/<int:attachment_id>/", attachment_views.download, name="attachment"),
    path(
        "attachments/<int:attachment_id>/thumbnail/",
        attachment_views.thumbnail,
        name="attachment-thumbnail",
    ),
    path("healthz", views.healthz, name="healthz"),
    path("widget.js", widget_views.widget_js, name="widget-js"),
    path("widget/config/<str:site_key>/", widget_views.widget_config, name="widget-config"),
    path("widget/frame/<str:site_key>/", widget_views.widget_frame, name="widget-frame"),
    path("widget/text/<str:language>.json", widget_views.widget_text, name="widget-text"),
]
