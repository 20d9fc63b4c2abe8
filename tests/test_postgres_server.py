"""The suite's own PostgreSQL server (tests/postgres.py) accepts connections and queries."""
from __future__ import annotations


def test_server_accepts_queries(postgres_url):
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT current_database(), 1 + 1")).one() == ("harness", 2)
    finally:
        engine.dispose()
