"""Read-only execution for `hearth sql`: a SQLite file opened `mode=ro` with `query_only` and an
authorizer that allows reads only, or PostgreSQL in a READ ONLY transaction that is rolled
back; every query runs under a deadline and returns at most `max_rows` rows.

Hand-written: the connection settings, the deadline and the row cap; sqlite3 and psycopg run
the SQL.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.errors import HearthError

SQLITE_HEADER = b"SQLite format 3\x00"
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


class SqlExecutionError(HearthError):
    """The database rejected or could not finish a statement (the text is the database's)."""


@dataclass
class SqlResult:
    """What a read-only query gave: the statement run, its columns and rows (JSON-able values),
    whether the row cap cut the rows off, the repairs made on the way, and the dialect."""

    sql: str
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False
    repairs: list[dict[str, str]] = field(default_factory=list)
    dialect: str = "sqlite"
    question: str | None = None
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sql": self.sql, "columns": self.columns, "rows": self.rows}
        out["truncated"] = self.truncated
        out["repairs"] = self.repairs
        out["dialect"] = self.dialect
        if self.question is not None:
            out["question"] = self.question
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 3)
        return out


def is_postgres(db: str) -> bool:
    from hearth.index.stores import is_postgres_url

    return is_postgres_url(db)


def describe_db(db: str) -> str:
    """`db` fit for messages (a PostgreSQL password redacted)."""
    if is_postgres(db):
        from hearth.index.pg_store import redact_url

        return redact_url(db)
    return str(db)


def json_value(value: Any) -> Any:
    """A database value as JSON can hold it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.date | dt.time | dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID | dt.timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


class Database:
    """A read-only connection: `query(sql, ...)` -> (columns, rows, truncated)."""

    dialect = "sqlite"

    def query(
        self, sql: str, params: tuple = (), *, max_rows: int = 100, timeout_s: float = 10.0
    ) -> tuple[list[str], list[list[Any]], bool]:
        raise NotImplementedError

    def catalog(self, sql: str, params: tuple = (), *, max_rows: int = 500) -> list[list[Any]]:
        """Rows of Hearth's own catalog query (schema reading), still on the read-only
        connection."""
        return self.query(sql, params, max_rows=max_rows, timeout_s=5.0)[1]

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(db: str) -> Database:
    """A read-only Database on a SQLite file path or a postgresql:// URL."""
    if is_postgres(db):
        return PostgresDatabase(db)
    return SqliteDatabase(db)


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise HearthError(f"no database file at {self.path} (hearth sql never creates one)")
        if not self.path.is_file():
            raise HearthError(f"{self.path} is not a file; pass a SQLite database file")
        with self.path.open("rb") as f:
            if f.read(16) != SQLITE_HEADER:
                raise HearthError(f"{self.path} is not a SQLite database (no SQLite header)")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise HearthError(f"cannot open {self.path} read-only: {exc}") from None
        self._conn.set_authorizer(_authorize)
        self._deadline = float("inf")
        self._conn.set_progress_handler(self._past_deadline, 1000)

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def query(self, sql, params=(), *, max_rows=100, timeout_s=10.0):
        self._deadline = time.monotonic() + timeout_s
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, params)
            columns = [d[0] for d in cursor.description or ()]
            fetched = cursor.fetchmany(max_rows + 1)
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc) and time.monotonic() > self._deadline:
                raise SqlExecutionError(
                    f"the query ran past the {timeout_s:g}s timeout on {self.path} and was stopped"
                ) from None
            raise SqlExecutionError(f"{exc} (SQLite, {self.path})") from None
        except sqlite3.DatabaseError as exc:
            raise SqlExecutionError(f"{exc} (SQLite, {self.path})") from None
        finally:
            self._deadline = float("inf")
            cursor.close()
        truncated = len(fetched) > max_rows
        rows = [[json_value(v) for v in row] for row in fetched[:max_rows]]
        return columns, rows, truncated

    def catalog(self, sql, params=(), *, max_rows=500):
        # SQLite's pragma_* table functions ask the authorizer for an UPDATE of sqlite_master
        # as they build themselves: Hearth's own catalog queries run without it (the file is
        # still opened mode=ro with query_only)
        self._conn.set_authorizer(None)
        try:
            return self.query(sql, params, max_rows=max_rows, timeout_s=5.0)[1]
        finally:
            self._conn.set_authorizer(_authorize)

    def close(self) -> None:
        self._conn.close()


def _authorize(action: int, arg1, arg2, _db, _trigger) -> int:
    """sqlite3's authorizer: reads, functions (but file and extension ones) and recursive
    CTEs; anything else is denied before it runs."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else 0
    return sqlite3.SQLITE_DENY


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise HearthError('PostgreSQL needs psycopg 3: pip install "psycopg[binary]"') from None
        self.url = url
        try:
            self._conn = psycopg.connect(
                url, connect_timeout=10, options="-c default_transaction_read_only=on"
            )
        except psycopg.Error as exc:
            raise HearthError(f"cannot connect to {describe_db(url)}: {exc}") from None
        self._conn.read_only = True  # every transaction: BEGIN READ ONLY

    def query(self, sql, params=(), *, max_rows=100, timeout_s=10.0):
        import psycopg

        conn = self._conn
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (str(max(1, int(timeout_s * 1000))),),
                )
                cur.execute(sql, params or None)
                columns = [d.name for d in cur.description or ()]
                fetched = cur.fetchmany(max_rows + 1) if cur.description else []
        except psycopg.errors.QueryCanceled:
            raise SqlExecutionError(
                f"the query ran past the {timeout_s:g}s timeout on {describe_db(self.url)} "
                "and was stopped"
            ) from None
        except psycopg.Error as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SqlExecutionError(f"{message} (PostgreSQL, {describe_db(self.url)})") from None
        finally:
            conn.rollback()  # nothing is ever kept
        truncated = len(fetched) > max_rows
        rows = [[json_value(v) for v in row] for row in fetched[:max_rows]]
        return columns, rows, truncated

    def close(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._conn.close()
