"""Run the service and socket tests again on PostgreSQL, when one is reachable.

`make test` runs the suite on SQLite. The message and routing paths write some of their
SQL by hand, differently per database (chat/store/sql.py: one statement per send on
PostgreSQL, two on SQLite), and on PostgreSQL the everyday send runs on the event loop
(chat/store/loop.py), so their tests also run here on the production database.
With no PostgreSQL reachable this says so and succeeds: the e2e tests already fall back
to SQLite the same way.

    python -m tests.on_postgresql [pytest arguments]
"""

import os
import secrets
import subprocess
import sys

from devstack.database import POSTGRES_ADMIN_URLS, postgres_admin_url, postgres_url

# The tests whose statements differ between SQLite and PostgreSQL.
MODULES = (
    "tests/test_services_messages.py",
    # The everyday send runs on the event loop on PostgreSQL only (chat/store/loop.py).
    "tests/test_consumers_send_on_loop.py",
    "tests/test_consumers_visitor.py",
    # A hello's statements: the visitor with its site, the conversation with its rating.
    "tests/test_hello_cost.py",
    # PostgreSQL only: a hello's reads on the event loop agree with the ORM path's.
    "tests/test_hello_on_loop.py",
    "tests/test_consumers_agent.py",
    "tests/test_consumers_lanes.py",
    "tests/test_services_routing.py",
    "tests/test_services_routing_burst.py",
    "tests/test_queue_versions.py",
    "tests/test_features_attachments.py",
    "tests/test_lifecycle.py",
    # Messages name their author from hand-written SQL on the everyday send.
    "tests/test_features_transfer.py",
    # The kept events for webhooks are written inside the send's one statement.
    "tests/test_webhooks.py",
    "tests/test_api_rest.py",
    # A verified user's record is one per site and user: a partial unique index.
    "tests/test_identity.py",
    # One live call per conversation is a partial unique index; its decisions take the
    # conversation's row lock (SELECT ... FOR UPDATE, a no-op on SQLite).
    "tests/test_services_calls.py",
    "tests/test_consumers_calls.py",
    # The email channel: claims with SKIP LOCKED, the thread's row lock, partial unique
    # constraints (one contact per address, one site per inbound address).
    "tests/test_services_inbox.py",
    # The bot's keyword search is PostgreSQL full-text there, FTS5 on SQLite.
    "tests/test_kb_import.py",
    "tests/test_consumers_bot.py",
    # Whether the bot had the chat comes back from the everyday send's statement.
    "tests/test_kb_bot.py",
    # Agent assist's article suggestions are that search too.
    "tests/test_kb_assist.py",
    # A system message's code and parameters: a column default the send path's
    # hand-written INSERT relies on, and the migration that codes stored rows.
    "tests/test_system_messages.py",
)


def main(args: list[str]) -> int:
    admin_url = postgres_admin_url()
    if admin_url is None:
        print(
            "tests.on_postgresql: skipped, no PostgreSQL accepted a connection at "
            + ", ".join(POSTGRES_ADMIN_URLS)
        )
        return 0
    # pytest-django creates (and drops) test_<name>: a name of its own per run, so two
    # runs on one server do not drop each other's database.
    name = f"supportdesk_{secrets.token_hex(4)}"
    env = {**os.environ, "DATABASE_URL": postgres_url(admin_url, name)}
    print(f"tests.on_postgresql: the service tests on {admin_url.rsplit('@', 1)[-1]}")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *MODULES, *args]
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
