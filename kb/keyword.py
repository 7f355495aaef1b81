"""Keyword search in the database: SQLite FTS5 or PostgreSQL full-text search, each
stemming English words its own way. It names candidate articles, best first; how sure
the bot is of one is scored in kb/search.py."""

from django.db import connection

from . import text

FTS_TABLE = "kb_article_fts"


def candidates(site_id: int, words: list[str], limit: int = 20) -> list[int]:
    """Ids of the site's articles sharing a word with `words` (a question's content
    words, `text.query_words`), best match first."""
    words = [w for w in words if text.is_plain_word(w)]
    if not words:
        return []
    if connection.vendor == "postgresql":
        sql, params = _postgresql(site_id, words, limit)
    else:
        sql, params = _sqlite(site_id, words, limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _sqlite(site_id: int, words: list[str], limit: int) -> tuple[str, list]:
    # Quoted, every word is a plain term (no FTS5 operator can be injected); OR: any
    # shared word makes a candidate, bm25 ranks them (a title word counts 3 times).
    match = " OR ".join(f'"{word}"' for word in words)
    return (
        f"SELECT f.rowid FROM {FTS_TABLE} f JOIN kb_article a ON a.id = f.rowid"
        f" WHERE {FTS_TABLE} MATCH %s AND a.site_id = %s"
        f" ORDER BY bm25({FTS_TABLE}, 3.0, 1.0) LIMIT %s",
        [match, site_id, limit],
    )


def _postgresql(site_id: int, words: list[str], limit: int) -> tuple[str, list]:
    # Words are [a-z0-9]+ (text.query_words), so joining them is a valid tsquery.
    query = " | ".join(words)
    return (
        "SELECT id FROM kb_article, to_tsquery('english', %s) q"
        " WHERE site_id = %s AND to_tsvector('english', title || ' ' || body) @@ q"
        " ORDER BY ts_rank(setweight(to_tsvector('english', title), 'A')"
        " || setweight(to_tsvector('english', body), 'B'), q) DESC, id LIMIT %s",
        [query, site_id, limit],
    )
