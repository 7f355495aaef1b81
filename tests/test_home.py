"""`GET /` is a page (what runs here, where to go), never Django's 404; the docs it
links to are served; the admin says whose it is."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_landing_page_says_what_runs_here_and_links_everywhere(client, settings):
    settings.SUPPORTDESK_DEMO_SHOP_URL = ""

    page = client.get("/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Live chat for customer support" in html
    for href in ('href="/agent/"', 'href="/admin/"', 'href="/docs/protocol"', 'href="/healthz"'):
        assert href in html
    assert 'src="http://testserver/widget.js" data-site="SITE_KEY"' in html.replace("&lt;", "<")
    assert "Demo shop" not in html


def test_make_runs_demo_shop_is_linked_when_it_runs(client, settings):
    settings.SUPPORTDESK_DEMO_SHOP_URL = "http://127.0.0.1:8001/"

    html = client.get("/").content.decode()

    assert 'href="http://127.0.0.1:8001/"' in html


def test_each_linked_document_is_served_as_text_and_nothing_else(client):
    protocol = client.get("/docs/protocol")
    assert protocol.status_code == 200
    assert protocol["Content-Type"] == "text/plain; charset=utf-8"
    assert b"# supportdesk protocol" in b"".join(protocol.streaming_content)
    assert client.get("/docs/settings").status_code == 404
    assert client.get("/docs/..%2Fsupportdesk%2Fsettings.py").status_code == 404


def test_the_admin_is_branded_and_counts_in_proper_plurals(admin_client):
    index = admin_client.get("/admin/").content.decode()
    assert "supportdesk administration" in index
    assert "Audit log entries" in index
