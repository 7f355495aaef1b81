"""`python -m bench.create_agents --capacity N --site KEY USER:PASSWORD ...`: the operator
command `create_agent`, called once per agent in one Django process.

The same command an operator runs (`call_command` executes its `handle`); batching only
saves a Django start-up per agent, which is most of the bench's set-up time.
"""

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("logins", nargs="+", help="USERNAME:PASSWORD")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
    import django

    django.setup()
    from django.core.management import call_command

    for pair in args.logins:
        username, password = pair.split(":", 1)
        call_command(
            "create_agent",
            username,
            password=password,
            capacity=args.capacity,
            site=[args.site],
        )


if __name__ == "__main__":
    main()
