"""The agent dashboard page: who may open it, and the headers that keep it unframeable and
free of inline script."""

import json
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model

DASHBOARD = "/agent/"


class ScriptTags(HTMLParser):
    """Every <script> of a page (its src and inline code) and every inline event handler."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self.handlers: list[tuple[str, str]] = []
        self._inside = False

    def handle_starttag(self, tag, attrs):
        self.handlers += [(tag, name) for name, _value in attrs if name.startswith("on")]
        if tag == "script":
            attributes = dict(attrs)
            self.scripts.append(
                {"src": attributes.get("src"), "type": attributes.get("type"), "code": ""}
            )
            self._inside = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._inside = False

    def handle_data(self, data):
        if self._inside:
            self.scripts[-1]["code"] += data


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


@pytest.mark.django_db
def test_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get(DASHBOARD)

    assert response.status_code == 302
    assert response.headers["Location"] == f"/accounts/login/?next={DASHBOARD}"


@pytest.mark.django_db
def test_signed_in_user_without_agent_profile_gets_403_page(client):
    shopper = get_user_model().objects.create_user("carol", password="carol-pass")
    client.force_login(shopper)

    response = client.get(DASHBOARD)

    assert response.status_code == 403
    assert b"not an agent" in response.content


def test_agent_gets_the_dashboard_with_a_strict_csp_and_no_inline_script(client, personas):
    client.force_login(personas.alice.user)

    response = client.get(DASHBOARD)

    assert response.status_code == 200
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    # The socket lives on this host only; nothing else may be reached from the page.
    assert policy["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    page = ScriptTags()
    page.feed(response.content.decode())
    assert page.scripts, "the dashboard loads its script"
    # A data block is never run (its strings in the agent's language, chat/dashboard_text.py):
    # JSON that parses, the only script without a src.
    data = [script for script in page.scripts if script["type"] == "application/json"]
    assert [json.loads(script["code"])["connected"] for script in data] == ["Connected"]
    for script in page.scripts:
        if script in data:
            continue
        assert script["src"] and script["src"].startswith("/static/"), script
        assert not script["code"].strip(), script
    assert page.handlers == []


def test_dashboard_cannot_be_framed(client, personas):
    client.force_login(personas.alice.user)

    response = client.get(DASHBOARD)

    assert response.headers["X-Frame-Options"] == "DENY"


def test_dashboard_shows_the_agents_name_and_capacity_before_the_socket_connects(client, personas):
    client.force_login(personas.alice.user)

    response = client.get(DASHBOARD)

    assert response.context["agent"] == personas.alice
    html = response.content.decode()
    assert 'id="agent-name">Alice<' in html
    assert 'id="capacity">2<' in html
    assert 'data-socket-path="/ws/agent/"' in html


def test_403_page_is_not_frameable_either(client, db):
    shopper = get_user_model().objects.create_user("carol", password="carol-pass")
    client.force_login(shopper)

    response = client.get(DASHBOARD)

    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
