"""HTTP surface: POST /api/v1/visitor-sessions for the widget, and /healthz for the proxy."""

import json

import pytest

from chat.models import Site, Visitor, hash_token

pytestmark = pytest.mark.django_db

URL = "/api/v1/visitor-sessions"
ACME_ORIGIN = "https://acme.example"


def post_session(client, payload, *, origin: str | None = ACME_ORIGIN, raw: str | None = None):
    headers = {"Origin": origin} if origin is not None else {}
    body = raw if raw is not None else json.dumps(payload)
    return client.post(URL, data=body, content_type="application/json", headers=headers)


def test_new_visitor_gets_201_with_a_token_and_the_visitor_socket_url(client, personas):
    response = post_session(client, {"site_key": personas.acme.key})

    assert response.status_code == 201
    data = response.json()
    assert data["ws_url"] == "/ws/visitor/"
    visitor = Visitor.objects.get(token_hash=hash_token(data["visitor_token"]))
    assert visitor.site == personas.acme


def test_known_token_is_returned_unchanged_and_keeps_the_same_visitor(client, personas):
    token = personas.token(personas.v1)
    visitors_before = Visitor.objects.count()

    response = post_session(client, {"site_key": personas.acme.key, "visitor_token": token})

    assert response.status_code == 201
    assert response.json()["visitor_token"] == token
    assert Visitor.objects.count() == visitors_before


def test_unknown_token_gets_a_fresh_visitor(client, personas):
    response = post_session(
        client, {"site_key": personas.acme.key, "visitor_token": "made-up-by-the-client"}
    )

    assert response.status_code == 201
    token = response.json()["visitor_token"]
    assert token != "made-up-by-the-client"
    assert Visitor.objects.filter(token_hash=hash_token(token), site=personas.acme).exists()


def test_another_sites_token_is_not_honoured_on_this_site(client, personas):
    globex = Site.objects.create(name="globex", allowed_origins=["https://globex.example"])

    response = post_session(
        client,
        {"site_key": globex.key, "visitor_token": personas.token(personas.v1)},
        origin="https://globex.example",
    )

    assert response.status_code == 201
    token = response.json()["visitor_token"]
    assert token != personas.token(personas.v1)
    assert Visitor.objects.get(token_hash=hash_token(token)).site == globex


def test_unknown_site_key_is_a_404_json_error(client, personas):
    response = post_session(client, {"site_key": "no-such-site"})

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_disabled_site_is_a_404_json_error_and_creates_no_visitor(client, personas):
    Site.objects.filter(pk=personas.acme.pk).update(enabled=False)
    visitors_before = Visitor.objects.count()

    response = post_session(client, {"site_key": personas.acme.key})

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert Visitor.objects.count() == visitors_before


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://acme.example", "https://acme.example:8443"],
)
def test_an_origin_the_site_does_not_allow_is_a_403_json_error(client, personas, origin):
    visitors_before = Visitor.objects.count()

    response = post_session(client, {"site_key": personas.acme.key}, origin=origin)

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert Visitor.objects.count() == visitors_before


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(ACME_ORIGIN, id="site-origin"),
        pytest.param("http://testserver", id="app-own-origin-widget-frame"),
        pytest.param(None, id="no-origin-non-browser"),
    ],
)
def test_the_sites_origin_the_apps_own_origin_or_no_origin_are_accepted(client, personas, origin):
    response = post_session(client, {"site_key": personas.acme.key}, origin=origin)

    assert response.status_code == 201


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("site_key=abc", id="not-json"),
        pytest.param("", id="empty-body"),
        pytest.param('["site_key"]', id="json-array"),
        pytest.param("{}", id="no-site-key"),
        pytest.param('{"site_key": 5}', id="site-key-number"),
        pytest.param('{"site_key": ""}', id="site-key-empty"),
        pytest.param('{"site_key": "KEY", "visitor_token": 7}', id="token-number"),
        pytest.param('{"site_key": "KEY", "visitor_token": ["t"]}', id="token-list"),
    ],
)
def test_malformed_request_is_a_400_json_error_and_creates_no_visitor(client, personas, raw):
    visitors_before = Visitor.objects.count()

    response = post_session(client, None, raw=raw.replace("KEY", personas.acme.key))

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert response.json()["detail"]
    assert Visitor.objects.count() == visitors_before


def test_oversized_request_body_is_refused_with_a_json_error(client, personas):
    payload = {"site_key": personas.acme.key, "visitor_token": "t", "padding": "x" * 10_000}

    response = post_session(client, payload)

    assert response.status_code == 413
    assert response.json()["error"] == "too_long"


def test_get_is_not_allowed_on_visitor_sessions(client, personas):
    assert client.get(URL).status_code == 405


def test_healthz_answers_200_when_the_database_answers(client, settings):
    settings.REDIS_URL = ""

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_healthz_answers_503_when_the_configured_redis_does_not(client, settings):
    # Nothing listens on port 1, so the connection is refused at once.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["redis"] == "unavailable"
