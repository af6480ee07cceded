"""The read-only runner on real SQLite files: results, the row cap, the timeout, missing and
foreign files, and a write that bypasses the checker still failing with the file unchanged."""

from __future__ import annotations

import json

import pytest

from hearth.errors import HearthError
from hearth.query.sql import SqlExecutionError, run_read_only
from hearth.query.sql_exec import SqliteDatabase, connect
from hearth.query.sql_grammar import grammar_text, sql_constraint
from hearth.query.sql_schema import read_schema
from tests.query.conftest import sha256


def test_result_shape_and_json(shop_db):
    result = run_read_only(
        str(shop_db),
        "SELECT c.name, COUNT(*) AS n FROM customers c JOIN invoices i ON i.customer_id = c.id "
        "WHERE i.status = 'overdue' GROUP BY c.name ORDER BY c.name",
    )
    assert result.columns == ["name", "n"]
    assert sum(r[1] for r in result.rows) == 30
    out = json.loads(json.dumps(result.to_json()))
    assert set(out) >= {"sql", "columns", "rows", "truncated", "repairs", "dialect"}
    assert out["truncated"] is False and out["dialect"] == "sqlite"


def test_row_cap(shop_db):
    result = run_read_only(str(shop_db), "SELECT id FROM invoices ORDER BY id", max_rows=10)
    assert result.rows == [[i] for i in range(1, 11)] and result.truncated
    exact = run_read_only(str(shop_db), "SELECT id FROM invoices", max_rows=150)
    assert len(exact.rows) == 150 and not exact.truncated


def test_timeout_stops_a_runaway_query(shop_db):
    runaway = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r"
    )
    with pytest.raises(SqlExecutionError, match="timeout"):
        run_read_only(str(shop_db), runaway, timeout_s=0.3)


def test_missing_file_is_never_created(tmp_path):
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(HearthError, match="no database file"):
        run_read_only(str(missing), "SELECT 1")
    assert not missing.exists()


def test_not_a_sqlite_file(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(HearthError, match="not a SQLite database"):
        run_read_only(str(other), "SELECT 1")


def test_execution_error_says_what_and_where(shop_db):
    with pytest.raises(SqlExecutionError, match=r"no such column: nme .*shop\.sqlite"):
        run_read_only(str(shop_db), "SELECT nme FROM customers")


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM invoices",
        "UPDATE invoices SET total = 0",
        "DROP TABLE customers",
        "CREATE TABLE t (a)",
        "PRAGMA journal_mode = WAL",
        "ATTACH DATABASE ':memory:' AS m",
    ],
)
def test_runner_alone_cannot_write(shop_db, sql):
    """Even SQL that never went through the checker cannot change the file."""
    before = sha256(shop_db)
    with SqliteDatabase(shop_db) as db, pytest.raises(SqlExecutionError):
        db.query(sql)
    assert sha256(shop_db) == before


def test_schema_and_grammar(shop_db):
    with connect(str(shop_db)) as db:
        schema = read_schema(db)
    assert [t.name for t in schema.tables] == ["customers", "invoices"]
    invoices = schema.table("invoices")
    assert invoices.rows == 150
    fk = next(c for c in invoices.columns if c.name == "customer_id")
    assert fk.references == ("customers", "id")
    status = next(c for c in invoices.columns if c.name == "status")
    assert set(status.samples) <= {"paid", "overdue", "open"} and len(status.samples) == 3
    text = schema.prompt("overdue invoices")
    assert text.startswith("CREATE TABLE customers") and "REFERENCES customers(id)" in text
    assert "'overdue'" in text

    grammar = sql_constraint(schema)
    assert "customer_id" in grammar_text(schema)
    for ok in (
        "SELECT COUNT(*) FROM invoices WHERE status = 'overdue'",
        "SELECT c.name, SUM(i.total) AS spent FROM customers c JOIN invoices i "
        "ON i.customer_id = c.id GROUP BY c.name ORDER BY spent DESC LIMIT 3",
        "select distinct city from customers where name like 'A%'",
        "WITH big_cte AS (SELECT customer_id FROM invoices WHERE total > 100) "
        "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM big_cte)",
        "SELECT CASE WHEN total > 50 THEN 'big' ELSE 'small' END FROM invoices",
        "SELECT name FROM customers WHERE id NOT IN (SELECT customer_id FROM invoices);",
    ):
        assert grammar.accepts(ok), ok
    for bad in (
        "SELECT nme FROM customers",  # no such column
        "SELECT name FROM clients",  # no such table
        "DELETE FROM invoices",
        "SELECT 1; DROP TABLE customers",
    ):
        assert not grammar.accepts(bad), bad


def test_schema_prompt_is_capped(tmp_path):
    import sqlite3

    path = tmp_path / "wide.sqlite"
    conn = sqlite3.connect(path)
    for i in range(40):
        conn.execute(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, label_{i} TEXT, value REAL)")
    conn.execute("CREATE TABLE rockets (id INTEGER PRIMARY KEY, launch_site TEXT)")
    conn.commit()
    conn.close()
    with connect(str(path)) as db:
        schema = read_schema(db)
    text = schema.prompt("Which launch site did the rockets use?", max_chars=800)
    assert text.startswith("CREATE TABLE rockets") and len(text) < 1200
    assert "other tables, not shown" in text
