"""The database a stack's processes share and its caller reads directly: a fresh
PostgreSQL database on 127.0.0.1:5432 when that answers (dropped afterwards), else a
SQLite file; or one named by URL, left as it is.

Migrating once and copying the result (`clone`) costs a fraction of a second per test
instead of a Django start-up per command.
"""

import secrets
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .waiting import StackError

POSTGRES_ADMIN_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
POSTGRESQL, SQLITE = "PostgreSQL", "SQLite"


def postgres_admin_url() -> str | None:
    """The first admin URL the local PostgreSQL (trust auth) accepts, or None."""
    try:
        import psycopg
    except ImportError:
        return None
    for url in POSTGRES_ADMIN_URLS:
        try:
            psycopg.connect(url, autocommit=True, connect_timeout=2).close()
            return url
        except psycopg.Error:
            continue
    return None


def postgres_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server of `admin_url`."""
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def _postgres(admin_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)


@dataclass
class Database:
    backend: str  # POSTGRESQL or SQLITE
    url: str
    name: str  # PostgreSQL: the database's name; SQLite: the file's path
    admin_url: str | None = None  # set when created here: `drop()` removes it

    @classmethod
    def create(cls, folder: Path, name: str, backend: str = "auto") -> "Database":
        """An empty database: `backend` "auto" (PostgreSQL when it answers on
        127.0.0.1:5432, else SQLite), "postgres" (raises if it does not answer) or
        "sqlite". PostgreSQL's is called supportdesk_NAME_<random>; SQLite's is the
        file NAME.sqlite3 in `folder`."""
        if backend not in ("auto", "postgres", "sqlite"):
            raise StackError(f"no database backend {backend!r}: auto, postgres or sqlite")
        admin_url = postgres_admin_url() if backend != "sqlite" else None
        if admin_url is not None:
            database = f"supportdesk_{name}_{secrets.token_hex(6)}"
            _postgres(admin_url, f'CREATE DATABASE "{database}"')
            return cls(POSTGRESQL, postgres_url(admin_url, database), database, admin_url)
        if backend == "postgres":
            raise StackError("PostgreSQL does not answer on 127.0.0.1:5432")
        return cls.at(f"sqlite:///{folder / f'{name}.sqlite3'}")

    @classmethod
    def at(cls, url: str) -> "Database":
        """The database at `url`, kept afterwards."""
        if url.startswith("sqlite"):
            return cls(SQLITE, url, url.removeprefix("sqlite:///"))
        return cls(POSTGRESQL, url, url.rsplit("/", 1)[-1].split("?")[0])

    def clone(self, folder: Path, name: str) -> "Database":
        """A new database holding what this one holds (`create`'s naming). PostgreSQL
        copies it as a template: nobody may be connected to this one meanwhile."""
        if self.backend == SQLITE:
            # Fold the write-ahead log into the file, so a plain copy is complete.
            conn = sqlite3.connect(self.name)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
            path = folder / f"{name}.sqlite3"
            shutil.copyfile(self.name, path)
            return Database.at(f"sqlite:///{path}")
        if self.admin_url is None:
            raise StackError(f"{self.name} was not created here: no admin URL to copy it")
        database = f"supportdesk_{name}_{secrets.token_hex(6)}"
        _postgres(self.admin_url, f'CREATE DATABASE "{database}" TEMPLATE "{self.name}"')
        url = postgres_url(self.admin_url, database)
        return Database(POSTGRESQL, url, database, self.admin_url)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """One statement, committed; its rows. Write `%s` placeholders for either
        backend."""
        if self.backend == POSTGRESQL:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        conn = sqlite3.connect(self.name, timeout=20)
        try:
            rows = conn.execute(sql.replace("%s", "?"), params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def version(self) -> str:
        if self.backend == SQLITE:
            return sqlite3.sqlite_version
        return self.query("SHOW server_version")[0][0]

    def drop(self) -> None:
        """Drop it if it was created here (a SQLite file goes with its folder)."""
        if self.admin_url is not None:
            _postgres(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
