"""Operator commands: create_site and create_agent, as the contract documents them."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from agents.models import AgentProfile, CannedResponse
from agents.selectors import usable_canned_responses
from chat import selectors
from chat.management.commands.seed_demo import DEMO_CANNED_RESPONSES
from chat.models import Site, new_site_key

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    """Run a command; returns its stdout (stderr is the operator's chatter)."""
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- create_site ----------------------------------------------------------------------


def test_create_site_prints_the_key_alone_on_the_last_line_and_allows_its_origins():
    out = run(
        "create_site",
        "--name",
        "Shop",
        "--origin",
        "https://shop.example",
        "--origin",
        "https://www.shop.example",
    )

    key = out.splitlines()[-1]
    site = Site.objects.get(key=key)
    assert site.name == "Shop"
    assert site.enabled
    assert site.allows_origin("https://shop.example")
    assert site.allows_origin("https://www.shop.example")
    assert not site.allows_origin("https://evil.example")


def test_create_site_stores_origins_in_their_canonical_form():
    key = run("create_site", "--name", "Shop", "--origin", "https://Shop.Example/").splitlines()[-1]

    assert Site.objects.get(key=key).allows_origin("https://shop.example")


def test_each_create_site_makes_a_new_site_with_its_own_key():
    first = run("create_site", "--name", "A", "--origin", "https://a.example").splitlines()[-1]
    second = run("create_site", "--name", "B", "--origin", "https://b.example").splitlines()[-1]

    assert first != second
    assert Site.objects.count() == 2


@pytest.mark.parametrize(
    "origin",
    [
        "shop.example",
        "ftp://shop.example",
        "https://",
        "https://shop.example/widget",
        "https://shop.example/?x=1",
        "https://shop.example/#top",
    ],
)
def test_create_site_refuses_anything_but_an_origin_and_creates_nothing(origin):
    with pytest.raises(CommandError):
        run("create_site", "--name", "Shop", "--origin", origin)

    assert not Site.objects.exists()


def test_create_site_without_an_origin_is_refused():
    with pytest.raises(CommandError):
        run("create_site", "--name", "Shop")

    assert not Site.objects.exists()


def test_create_site_with_an_inbound_email_gives_the_site_the_email_channel():
    key = (
        run(
            "create_site",
            "--name",
            "Shop",
            "--origin",
            "https://shop.example",
            "--inbound-email",
            "Help@Support.Shop.example",
        )
        .strip()
        .splitlines()[-1]
    )

    assert Site.objects.get(key=key).inbound_email == "help@support.shop.example"


@pytest.mark.parametrize(
    "address, reason",
    [
        ("not-an-address", "Not an email address"),
        ("help+x@support.shop.example", "may not hold"),
        ("HELP@support.shop.example", "already receives"),
    ],
)
def test_create_site_refuses_an_unusable_inbound_email_and_creates_nothing(address, reason):
    Site.objects.create(name="Other", inbound_email="help@support.shop.example")
    with pytest.raises(CommandError, match=reason):
        run(
            "create_site",
            "--name",
            "Shop",
            "--origin",
            "https://shop.example",
            "--inbound-email",
            address,
        )

    assert Site.objects.count() == 1


def test_site_keys_never_start_with_a_dash_so_create_agent_site_takes_them_as_values():
    # One random key in 64 would otherwise start with "-" and `--site KEY` would fail.
    assert not [key for key in (new_site_key() for _ in range(2000)) if key.startswith("-")]


# --- create_agent ---------------------------------------------------------------------


def agent_named(username: str) -> AgentProfile:
    return AgentProfile.objects.select_related("user").get(user__username=username)


def routable_for(site: Site) -> set[str]:
    return {a.user.username for a in selectors.routable_agents(site.id).select_related("user")}


def test_create_agent_makes_a_login_with_capacity_3_serving_every_site(personas):
    globex = Site.objects.create(name="globex", allowed_origins=["https://globex.example"])

    out = run("create_agent", "carol", "--password", "carol-secret-1")

    carol = agent_named("carol")
    assert "carol" in out
    assert carol.user.check_password("carol-secret-1")
    assert carol.user.is_active
    assert carol.capacity == 3
    # Serving every site: once present, carol can be routed chats of any site.
    AgentProfile.objects.filter(pk=carol.pk).update(
        status=AgentProfile.Status.AVAILABLE, last_heartbeat=timezone.now()
    )
    assert "carol" in routable_for(personas.acme)
    assert "carol" in routable_for(globex)


def test_create_agent_again_updates_the_same_login_instead_of_adding_one(personas):
    globex = Site.objects.create(name="globex", allowed_origins=["https://globex.example"])
    run("create_agent", "carol", "--password", "first-secret-1")

    run(
        "create_agent",
        "carol",
        "--password",
        "second-secret-2",
        "--capacity",
        "5",
        "--site",
        personas.acme.key,
    )

    assert get_user_model().objects.filter(username="carol").count() == 1
    assert AgentProfile.objects.filter(user__username="carol").count() == 1
    carol = agent_named("carol")
    assert carol.user.check_password("second-secret-2")
    assert not carol.user.check_password("first-secret-1")
    assert carol.capacity == 5
    assert set(carol.sites.all()) == {personas.acme}
    AgentProfile.objects.filter(pk=carol.pk).update(
        status=AgentProfile.Status.AVAILABLE, last_heartbeat=timezone.now()
    )
    assert "carol" in routable_for(personas.acme)
    assert "carol" not in routable_for(globex)

    run("create_agent", "carol", "--password", "second-secret-2")

    assert agent_named("carol").capacity == 3
    assert "carol" in routable_for(globex)


def test_create_agent_with_several_sites_serves_exactly_those(personas):
    globex = Site.objects.create(name="globex", allowed_origins=["https://globex.example"])
    initech = Site.objects.create(name="initech", allowed_origins=["https://initech.example"])

    run(
        "create_agent",
        "carol",
        "--password",
        "carol-secret-1",
        "--site",
        personas.acme.key,
        "--site",
        globex.key,
    )

    assert set(agent_named("carol").sites.all()) == {personas.acme, globex}
    assert initech not in agent_named("carol").sites.all()


def test_create_agent_reactivates_a_deactivated_login(personas):
    run("create_agent", "carol", "--password", "carol-secret-1")
    get_user_model().objects.filter(username="carol").update(is_active=False)

    run("create_agent", "carol", "--password", "carol-secret-1")

    assert agent_named("carol").user.is_active


def test_create_agent_with_an_unknown_site_key_is_refused_and_creates_nothing(personas):
    with pytest.raises(CommandError, match="no-such-site"):
        run(
            "create_agent",
            "carol",
            "--password",
            "carol-secret-1",
            "--site",
            personas.acme.key,
            "--site",
            "no-such-site",
        )

    assert not get_user_model().objects.filter(username="carol").exists()


def test_create_agent_with_a_negative_capacity_is_refused(personas):
    with pytest.raises(CommandError):
        run("create_agent", "carol", "--password", "carol-secret-1", "--capacity", "-1")

    assert not get_user_model().objects.filter(username="carol").exists()


# --- seed_demo (what `make run` starts from) -------------------------------------------


def test_seed_demo_gives_the_demo_agent_shared_canned_responses_and_says_so():
    out = run("seed_demo")

    demo = agent_named("demo")
    usable = {r["shortcut"]: r for r in usable_canned_responses(demo.pk)}
    assert {"hello", "hours", "refund"} <= set(usable)
    assert all(r["shared"] for r in usable.values())
    assert "refund" in usable["refund"]["body"]
    assert "/hello" in out and "/refund" in out


def test_seed_demo_twice_adds_no_duplicates_and_keeps_an_operators_edit():
    run("seed_demo")
    CannedResponse.objects.filter(shortcut="hours").update(body="Open 8 to 20, every day.")
    site_key = Site.objects.get(name="Demo shop").key

    run("seed_demo")

    assert Site.objects.filter(name="Demo shop").count() == 1
    assert Site.objects.get(name="Demo shop").key == site_key
    assert get_user_model().objects.filter(username__in=["demo", "admin"]).count() == 2
    shortcuts = list(CannedResponse.objects.values_list("shortcut", flat=True))
    assert len(shortcuts) == len(set(shortcuts)) == len(DEMO_CANNED_RESPONSES)
    assert CannedResponse.objects.get(shortcut="hours").body == "Open 8 to 20, every day."
