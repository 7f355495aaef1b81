from django.urls import path

from . import views

urlpatterns = [
    path("api/v1/visitor-sessions", views.visitor_sessions, name="visitor-sessions"),
    path("healthz", views.healthz, name="healthz"),
]
