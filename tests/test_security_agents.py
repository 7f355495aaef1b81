"""A deactivated agent keeps nothing: the dashboards they have open are closed (4401)
within moments of the deactivation, however it happens, and a login that is only edited
keeps its sockets."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)

# Far longer than any wait below: a close seen in time did not come from the heartbeat.
NO_HEARTBEAT_IN_TIME = 3600.0
PROMPTLY = 2.0


async def save_user(user_id: int, **fields) -> None:
    def save():
        user = get_user_model().objects.get(pk=user_id)
        for name, value in fields.items():
            setattr(user, name, value)
        user.save()

    await ws.db(save)


async def test_deactivating_an_agent_closes_each_of_their_dashboards_at_once(
    personas, sockets, settings
):
    settings.SUPPORTDESK_HEARTBEAT_INTERVAL = NO_HEARTBEAT_IN_TIME
    first_tab, _ready = await sockets.agent(personas.alice)
    second_tab, _ready = await sockets.agent(personas.alice)
    bob, _ready = await sockets.agent(personas.bob)

    await save_user(personas.alice.user_id, is_active=False)

    assert (await ws.receive_close(first_tab, timeout=PROMPTLY))[0] == 4401
    assert (await ws.receive_close(second_tab, timeout=PROMPTLY))[0] == 4401
    assert await ws.frames_before_pong(bob) == []


async def test_deactivating_an_agent_in_the_admin_closes_their_dashboard(
    personas, sockets, settings
):
    settings.SUPPORTDESK_HEARTBEAT_INTERVAL = NO_HEARTBEAT_IN_TIME
    dashboard, _ready = await sockets.agent(personas.alice)

    def untick_active_in_the_admin() -> int:
        admin = get_user_model().objects.create_superuser("root", password="root-pass")
        client = Client()
        client.force_login(admin)
        user = get_user_model().objects.get(pk=personas.alice.user_id)
        response = client.post(
            f"/admin/auth/user/{user.pk}/change/",
            {
                "username": user.username,
                "first_name": "",
                "last_name": "",
                "email": "",
                # is_active left unticked
                "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
                "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
                "initial-date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
                "initial-date_joined_1": user.date_joined.strftime("%H:%M:%S"),
            },
        )
        return response.status_code

    assert await ws.db(untick_active_in_the_admin) == 302
    assert (await ws.receive_close(dashboard, timeout=PROMPTLY))[0] == 4401
    assert not (await ws.db(get_user_model().objects.get, pk=personas.alice.user_id)).is_active


async def test_a_bulk_deactivation_is_caught_by_the_next_heartbeat(personas, sockets, settings):
    # QuerySet.update() sends no signal: the heartbeat loop is the backstop.
    settings.SUPPORTDESK_HEARTBEAT_INTERVAL = 0.2
    dashboard, _ready = await sockets.agent(personas.alice)

    await ws.db(get_user_model().objects.filter(pk=personas.alice.user_id).update, is_active=False)

    assert (await ws.receive_close(dashboard, timeout=PROMPTLY))[0] == 4401


async def test_editing_an_active_agents_login_leaves_their_dashboard_open(
    personas, sockets, settings
):
    settings.SUPPORTDESK_HEARTBEAT_INTERVAL = NO_HEARTBEAT_IN_TIME
    dashboard, _ready = await sockets.agent(personas.alice)

    await save_user(personas.alice.user_id, email="alice@example.com")

    assert await ws.frames_before_pong(dashboard) == []
