"""Agent pages: the dashboard shell; everything live goes over /ws/agent/."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import AgentProfile


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    agent = AgentProfile.objects.filter(user=request.user).first()
    if agent is None:
        return render(request, "agents/not_an_agent.html", status=403)
    return render(request, "agents/dashboard.html", {"agent": agent})
