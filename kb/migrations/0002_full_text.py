"""The articles' full-text index: an FTS5 table kept by triggers on SQLite, a GIN index
on PostgreSQL (kb/keyword.py queries them)."""

from django.db import migrations

FTS_TABLE = "kb_article_fts"
SQLITE_CREATE = [
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(title, body, content='kb_article',"
    " content_rowid='id', tokenize='porter unicode61')",
    f"CREATE TRIGGER kb_article_ai AFTER INSERT ON kb_article BEGIN INSERT INTO {FTS_TABLE}"
    "(rowid, title, body) VALUES (new.id, new.title, new.body); END",
    f"CREATE TRIGGER kb_article_ad AFTER DELETE ON kb_article BEGIN INSERT INTO {FTS_TABLE}"
    f"({FTS_TABLE}, rowid, title, body) VALUES ('delete', old.id, old.title, old.body); END",
    f"CREATE TRIGGER kb_article_au AFTER UPDATE ON kb_article BEGIN INSERT INTO {FTS_TABLE}"
    f"({FTS_TABLE}, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);"
    f" INSERT INTO {FTS_TABLE}(rowid, title, body) VALUES (new.id, new.title, new.body); END",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS kb_article_ai",
    "DROP TRIGGER IF EXISTS kb_article_ad",
    "DROP TRIGGER IF EXISTS kb_article_au",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
]
POSTGRESQL_CREATE = [
    "CREATE INDEX kb_article_fts ON kb_article USING gin"
    " (to_tsvector('english', title || ' ' || body))"
]
POSTGRESQL_DROP = ["DROP INDEX IF EXISTS kb_article_fts"]


def create(apps, schema_editor):
    statements = {
        "sqlite": SQLITE_CREATE,
        "postgresql": POSTGRESQL_CREATE,
    }.get(schema_editor.connection.vendor, [])
    for statement in statements:
        schema_editor.execute(statement)


def drop(apps, schema_editor):
    statements = {
        "sqlite": SQLITE_DROP,
        "postgresql": POSTGRESQL_DROP,
    }.get(schema_editor.connection.vendor, [])
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("kb", "0001_initial")]

    operations = [migrations.RunPython(create, drop)]
