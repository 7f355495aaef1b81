"""Attacks on embedding and transport: framing the agent, admin and login pages
(clickjacking), smuggling a second Origin header past the socket checks, and the
production settings an operator relies on (`check --deploy`, Secure cookies, HSTS)."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ws

REPO_ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "chat.example.com",
    "SECURE_SSL_REDIRECT": "1",
}


def run_with_production_env(*args: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SUPPORTDESK_", "DJANGO_"))
        and k not in {"SECURE_COOKIES", "REDIS_URL"}
    }
    env.update(PRODUCTION_ENV, DJANGO_SETTINGS_MODULE="supportdesk.settings")
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


# --- framing ----------------------------------------------------------------------------


def refuses_framing(response) -> bool:
    policy = response.get("Content-Security-Policy", "")
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in policy.split(";") if d.strip()}
    return (
        response.get("X-Frame-Options") == "DENY"
        and directives.get("frame-ancestors") == "frame-ancestors 'none'"
    )


@pytest.mark.parametrize(
    "path",
    ["/accounts/login/", "/admin/login/", "/admin/", "/agent/"],
    ids=["login", "admin-login", "admin-index", "dashboard"],
)
def test_staff_pages_refuse_to_be_framed_by_any_site(admin_client, client, db, path):
    anonymous = client.get(path)
    signed_in = admin_client.get(path)

    assert refuses_framing(anonymous), dict(anonymous.headers)
    assert refuses_framing(signed_in), dict(signed_in.headers)


def test_admin_change_pages_refuse_to_be_framed(admin_client, personas):
    for path in (
        f"/admin/chat/site/{personas.acme.pk}/change/",
        f"/admin/agents/agentprofile/{personas.alice.pk}/change/",
        "/admin/chat/conversation/",
    ):
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert refuses_framing(response), path


def test_a_page_with_its_own_policy_keeps_it(client, personas):
    response = client.get(f"/widget/frame/{personas.acme.key}/")

    assert "frame-ancestors https://acme.example" in response["Content-Security-Policy"]
    assert "X-Frame-Options" not in response


# --- a second Origin header ---------------------------------------------------------------


def with_second_origin(communicator, origin: str):
    """The allowed Origin first, another after it: a check reading only the first
    header would let the second through unseen."""
    communicator.scope["headers"].append((b"origin", origin.encode()))
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_a_smuggled_second_origin_on_a_visitor_socket_closes_with_4403(personas):
    tab = with_second_origin(ws.visitor_communicator(origin=ws.ACME_ORIGIN), ws.FOREIGN_ORIGIN)
    connected, _ = await tab.connect(timeout=ws.TIMEOUT)
    assert connected

    await tab.send_json_to(ws.hello(personas.acme.key, personas.token(personas.v1)))

    assert await ws.receive_close(tab) == (4403, [])


@pytest.mark.django_db(transaction=True)
async def test_a_smuggled_second_origin_on_an_agent_socket_is_refused_at_the_handshake(
    personas,
):
    cookie = await ws.session_cookie(personas.alice.user)
    socket = with_second_origin(
        ws.agent_communicator(cookie, origin=ws.APP_ORIGIN), ws.FOREIGN_ORIGIN
    )

    connected, _code = await socket.connect(timeout=ws.TIMEOUT)

    assert not connected


# --- production settings ------------------------------------------------------------------


def test_check_deploy_is_clean_with_production_env():
    done = run_with_production_env("manage.py", "check", "--deploy", "--fail-level", "WARNING")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
client = Client(HTTP_HOST="chat.example.com")
secure = client.get("/accounts/login/", secure=True)
plain = client.get("/accounts/login/")
cookie = secure.cookies["csrftoken"]
print(json.dumps({
    "debug": settings.DEBUG,
    "session_cookie": [settings.SESSION_COOKIE_SECURE, settings.SESSION_COOKIE_HTTPONLY,
                       settings.SESSION_COOKIE_SAMESITE],
    "csrf_cookie": [bool(cookie["secure"]), cookie["samesite"]],
    "hsts": secure.headers.get("Strict-Transport-Security"),
    "nosniff": secure.headers.get("X-Content-Type-Options"),
    "plain_http": [plain.status_code, plain.headers.get("Location")],
}))
"""


def test_production_cookies_are_secure_and_https_is_enforced_with_hsts():
    done = run_with_production_env("-c", PROBE)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["debug"] is False
    assert seen["session_cookie"] == [True, True, "Lax"]
    assert seen["csrf_cookie"] == [True, "Lax"]
    assert seen["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert seen["nosniff"] == "nosniff"
    assert seen["plain_http"] == [301, "https://chat.example.com/accounts/login/"]
