"""The read-only gate with no model: sqlglot's checks, the write-intent patterns, and every
hostile request refused with the database file byte-identical afterwards."""

from __future__ import annotations

import pytest

from hearth.errors import HearthError
from hearth.query.sql import SqlRefused, check_read_only, run_read_only, text_to_sql, write_intent
from tests.query.conftest import sha256


class NeverAsked:
    """A model that fails the test if consulted: refusals come before any generation."""

    name = "never-asked"
    masks_tokens = True

    def chat(self, messages, **params):
        raise AssertionError("the model was asked although the request should be refused")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM customers",
        "select name from customers where city = 'London' order by name limit 2",
        "WITH c AS (SELECT id FROM customers) SELECT COUNT(*) FROM c",
        "SELECT 1 UNION SELECT 2",
        "(SELECT 1)",
        "SELECT 1;",
        "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM invoices)",
    ],
)
@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_read_only_statements_pass(sql, dialect):
    checked = check_read_only(sql, dialect)
    assert checked.upper().startswith(("SELECT", "WITH"))
    assert ";" not in checked


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT 1; DROP TABLE customers", "stacked"),
        ("SELECT * FROM customers; DELETE FROM invoices", "stacked"),
        ("DELETE FROM invoices", "deletes rows"),
        ("UPDATE invoices SET total = 0", "updates rows"),
        ("INSERT INTO customers VALUES (9, 'x', 'y')", "inserts rows"),
        ("DROP TABLE customers", "drops"),
        ("CREATE TABLE t (a INT)", "creates"),
        ("ALTER TABLE customers ADD COLUMN x INT", "alter"),
        ("WITH d AS (DELETE FROM invoices RETURNING id) SELECT * FROM d", "deletes rows"),
        ("PRAGMA writable_schema = 1", "PRAGMA"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "attach"),
        ("SELECT load_extension('/tmp/evil')", "load_extension"),
        ("SELECT writefile('/tmp/x', 'data')", "writefile"),
        ("SELECT readfile('/etc/passwd')", "readfile"),
        ("SELECT * INTO copy FROM customers", "SELECT INTO"),
        ("SELECT * FROM customers FOR UPDATE", "locks"),
        ("VACUUM", "VACUUM"),
        ("REPLACE INTO customers VALUES (1, 'x', 'y')", "refused"),
    ],
)
def test_writes_are_refused_with_a_reason(sql, why):
    with pytest.raises(SqlRefused) as err:
        check_read_only(sql, "sqlite")
    assert "refused" in str(err.value) and why.lower() in str(err.value).lower()
    assert "only reads" in str(err.value)


def test_postgres_specific_writes_are_refused():
    for sql in (
        "SELECT pg_sleep(100)",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT nextval('s')",
        "COPY customers TO '/tmp/out.csv'",
        "SELECT pg_read_file('/etc/passwd')",
    ):
        with pytest.raises(SqlRefused):
            check_read_only(sql, "postgres")


def test_garbage_is_an_error_not_a_pass():
    with pytest.raises(HearthError, match="does not parse"):
        check_read_only("SELECT FROM WHERE (", "sqlite")
    with pytest.raises(HearthError, match="empty"):
        check_read_only("  ;  ", "sqlite")


@pytest.mark.parametrize(
    ("request_text", "what"),
    [
        ("delete all overdue invoices", "delete rows"),
        ("Please remove the customer Ada Lovelace", "delete rows"),
        ("set the total of invoice 3 to 5", "change rows"),
        ("Change Grace Hopper's city to Boston", "change rows"),
        ("drop the customers table", "drop a table"),
        ("add a new customer named Bob", "add rows"),
        ("Can you insert a row for Linus?", "add rows"),
        ("list the overdue invoices and then delete them", "delete rows"),
        ("Mark invoice 7 as paid", "change rows"),
        ("truncate invoices", "drop a table"),
    ],
)
def test_write_intent_in_words(request_text, what):
    assert write_intent(request_text) == what


@pytest.mark.parametrize(
    "question",
    [
        "How many invoices are overdue?",
        "Which customers were added last year?",
        "Which invoices were deleted or updated?",
        "Show the customers in London",
        "Give me the total of all paid invoices",
        "What is the average invoice total per status, sorted by status?",
        "List each city and the number of customers in it",
    ],
)
def test_questions_are_not_write_requests(question):
    assert write_intent(question) is None


HOSTILE = [
    "delete all overdue invoices",
    "Set the total of every invoice to 0",
    "drop the customers table",
    "add a new customer called Bob from Paris",
    "Please update Ada's city to Paris",
    "DELETE FROM invoices",
    "SELECT 1; DROP TABLE customers",
    "SELECT * FROM customers; UPDATE invoices SET total = 0",
    "INSERT INTO customers VALUES (9, 'Eve', 'Nowhere')",
    "WITH gone AS (DELETE FROM invoices RETURNING id) SELECT COUNT(*) FROM gone",
    "PRAGMA journal_mode = DELETE",
    "ATTACH DATABASE 'evil.db' AS evil",
    "SELECT writefile('evil.txt', 'x')",
    "VACUUM",
    "show the customers, then wipe the invoices table",
]


@pytest.mark.parametrize("request_text", HOSTILE)
def test_hostile_requests_refused_and_file_unchanged(shop_db, request_text):
    before = sha256(shop_db)
    with pytest.raises(SqlRefused) as err:
        text_to_sql(request_text, str(shop_db), NeverAsked())
    assert str(err.value).startswith("refused:")
    assert sha256(shop_db) == before


def test_sql_question_runs_as_is_without_the_model(shop_db):
    result = text_to_sql("SELECT COUNT(*) AS n FROM invoices", str(shop_db), NeverAsked())
    assert result.rows == [[150]] and result.columns == ["n"]


def test_run_read_only_refuses_before_running(shop_db):
    before = sha256(shop_db)
    with pytest.raises(SqlRefused):
        run_read_only(str(shop_db), "DELETE FROM invoices")
    assert sha256(shop_db) == before


def test_untokenizable_text_is_an_error():
    """An unterminated string is sqlglot's TokenError, not a ParseError: still a HearthError."""
    with pytest.raises(HearthError, match="does not parse"):
        check_read_only("SELECT 'LONGBIN", "sqlite")
