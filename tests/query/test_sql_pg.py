"""`hearth sql` on PostgreSQL (a real server from the pg_url fixture; skipped without one):
schema reading, a read-only query, refusals, and a write that bypasses the checker failing
inside the READ ONLY transaction with the rows untouched."""

from __future__ import annotations

import pytest

from hearth.query.sql import SqlExecutionError, SqlRefused, run_read_only
from hearth.query.sql_exec import PostgresDatabase, connect
from hearth.query.sql_schema import read_schema


@pytest.fixture
def pg_shop(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
        conn.execute(
            "CREATE TABLE invoices (id INTEGER PRIMARY KEY, "
            "customer_id INTEGER REFERENCES customers(id), total NUMERIC(10, 2))"
        )
        conn.execute("INSERT INTO customers VALUES (1, 'Ada', 'London'), (2, 'Grace', 'New York')")
        conn.execute(
            "INSERT INTO invoices SELECT g, 1 + g % 2, g * 1.5 FROM generate_series(1, 50) g"
        )
    return pg_url


def _count(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT COUNT(*) FROM invoices").fetchone()[0]


def test_postgres_read_only(pg_shop):
    result = run_read_only(
        pg_shop,
        "SELECT c.name, SUM(i.total) AS spent FROM customers c JOIN invoices i "
        "ON i.customer_id = c.id GROUP BY c.name ORDER BY c.name",
        max_rows=1,
    )
    assert result.dialect == "postgres" and result.columns == ["name", "spent"]
    assert result.rows == [["Ada", 975]] and result.truncated

    with connect(pg_shop) as db:
        schema = read_schema(db)
    invoices = schema.table("invoices")
    assert invoices.rows == 50
    assert next(c for c in invoices.columns if c.name == "customer_id").references == (
        "customers",
        "id",
    )
    assert next(c for c in invoices.columns if c.name == "id").primary_key

    with pytest.raises(SqlExecutionError, match="timeout"):
        run_read_only(pg_shop, "SELECT COUNT(*) FROM generate_series(1, 1000000000)", timeout_s=0.3)

    for hostile in (
        "DELETE FROM invoices",
        "SELECT 1; DROP TABLE invoices",
        "WITH d AS (DELETE FROM invoices RETURNING id) SELECT COUNT(*) FROM d",
    ):
        with pytest.raises(SqlRefused):
            run_read_only(pg_shop, hostile)
    with PostgresDatabase(pg_shop) as db:  # past the checker: the transaction is read-only
        with pytest.raises(SqlExecutionError, match="read-only"):
            db.query("DELETE FROM invoices")
        with pytest.raises(SqlExecutionError, match="read-only"):
            db.query("WITH d AS (DELETE FROM invoices RETURNING id) SELECT COUNT(*) FROM d")
    assert _count(pg_shop) == 50


def test_postgres_question_with_the_model(pg_shop, sql_model):
    from hearth.query.sql import text_to_sql

    result = text_to_sql("How many invoices are there?", pg_shop, sql_model)
    assert result.dialect == "postgres" and result.rows == [[50]], result.to_json()
    assert _count(pg_shop) == 50
