"""The read-only gate of `hearth sql`: a statement is parsed with sqlglot and let through only if
it is exactly one SELECT (or WITH ... SELECT, or a UNION of them) with no write anywhere inside;
a natural-language request to change data is refused before any SQL is written.

Hand-written: the allow/deny rules and the write-intent word patterns; parsing is sqlglot's.
"""

from __future__ import annotations

import logging
import re

import sqlglot
from sqlglot import exp

from hearth.errors import HearthError


class SqlRefused(HearthError):
    """A request or statement that would change data (or escape the read-only sandbox)."""


ONLY_READS = "hearth sql only reads"

# sqlglot dialect names for the databases hearth sql runs on
DIALECTS = {"sqlite": "sqlite", "postgres": "postgres", "postgresql": "postgres"}

# Node types that write, change the session or reach outside the database. Looked up by name so
# the list survives sqlglot renaming a class (AlterTable -> Alter, ...).
_WRITE_NODES = (
    "Insert", "Update", "Delete", "Merge", "Drop", "Create", "Alter", "AlterTable",
    "AlterColumn", "RenameTable", "TruncateTable", "Into", "Command", "Pragma", "Attach",
    "Detach", "Set", "Transaction", "Commit", "Rollback", "Copy", "Grant", "Revoke", "Use",
    "Analyze", "LoadData", "Kill", "Lock", "Refresh", "Cache", "Uncache", "Comment", "Describe",
    "Summarize", "Vacuum", "Install", "Export",
)  # fmt: skip
WRITE_NODES = tuple(getattr(exp, n) for n in _WRITE_NODES if hasattr(exp, n))

# Functions that write files, load code, sleep, signal or change server state.
DENIED_FUNCTIONS = frozenset(
    {
        # SQLite (fileio / extension loading / fts3 pointer tricks)
        "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zeroblob",
        # PostgreSQL
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import",
        "lo_export", "lo_unlink", "lo_create", "lo_put", "lo_from_bytea", "dblink",
        "dblink_exec", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_terminate_backend",
        "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "set_config", "nextval",
        "setval", "pg_advisory_lock", "pg_advisory_xact_lock", "pg_notify", "query_to_xml",
        "pg_file_write", "copy", "current_setting",
    }
)  # fmt: skip

# What a refused node is called in the error message
_NODE_WORDS = {
    "Insert": "inserts rows", "Update": "updates rows", "Delete": "deletes rows",
    "Merge": "merges rows", "Drop": "drops an object", "Create": "creates an object",
    "Alter": "alters a table", "AlterTable": "alters a table", "TruncateTable": "empties a table",
    "Into": "creates a table (SELECT INTO)", "Pragma": "is a PRAGMA",
    "Attach": "attaches a database", "Detach": "detaches a database",
    "Set": "changes a setting", "Transaction": "controls transactions",
    "Commit": "controls transactions", "Rollback": "controls transactions",
    "Copy": "copies data in or out", "Grant": "changes privileges", "Lock": "locks rows",
}  # fmt: skip

# Statement keywords that mark the question itself as SQL (checked directly, no model)
_SQL_START = re.compile(
    r"^\s*\(?\s*(select|with|insert|update|delete|drop|create|alter|pragma|attach|detach|"
    r"replace|vacuum|reindex|analyze|begin|commit|rollback|truncate|grant|revoke|copy|"
    r"merge|upsert|set|explain|values|call|do|lock|savepoint|release)\b",
    re.IGNORECASE,
)


# A write statement at the start or after a `;` (for texts sqlglot cannot parse)
_WRITE_START = re.compile(
    r"(?:^|;)\s*(?:insert|update|delete|drop|create|alter|pragma|attach|detach|replace|vacuum|"
    r"reindex|truncate|grant|revoke|copy|merge|upsert|set|begin|commit|call|do|lock)\b",
    re.IGNORECASE,
)

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its "falling back to Command" warnings


def dialect_of(name: str) -> str:
    try:
        return DIALECTS[name.lower()]
    except KeyError:
        raise HearthError(f"unknown SQL dialect {name!r}: use sqlite or postgres") from None


def check_read_only(sql: str, dialect: str) -> str:
    """The single read-only statement in `sql`, written back by sqlglot in `dialect`; SqlRefused
    saying why when it is not one read-only statement (a stacked second statement, a write at
    any depth, a PRAGMA, ATTACH, a file or extension function), HearthError when it does not
    parse."""
    dialect = dialect_of(dialect)
    text = sql.strip()
    if not text:
        raise HearthError("empty SQL statement")
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as exc:  # ParseError, TokenError (an open quote)
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if _WRITE_START.search(text):  # unparsable, but plainly a write: say so
            raise SqlRefused(
                f"refused: the statement writes or changes the database ({first}); {ONLY_READS}"
            ) from None
        raise HearthError(f"the SQL does not parse ({dialect}): {first}") from None
    if not statements:
        raise HearthError("empty SQL statement")
    if len(statements) > 1:
        kinds = ", ".join(_statement_kind(s) for s in statements)
        raise SqlRefused(
            f"refused: {len(statements)} stacked statements ({kinds}); {ONLY_READS} and runs "
            "exactly one SELECT"
        )
    statement = statements[0]
    root = statement.unnest() if isinstance(statement, exp.Subquery) else statement
    for node in root.walk():
        _check_node(node)
    if not isinstance(root, exp.Select | exp.Union | exp.Intersect | exp.Except):
        # nothing in it writes (that was refused above): a malformed answer, not a threat
        raise HearthError(
            f"the statement is {_statement_kind(root)}, not a SELECT; hearth sql runs one "
            "SELECT (or WITH ... SELECT)"
        )
    return root.sql(dialect=dialect, comments=False)


def _check_node(node: exp.Expression) -> None:
    if isinstance(node, WRITE_NODES):
        name = type(node).__name__
        what = _NODE_WORDS.get(name, f"is {_statement_kind(node)}")
        if isinstance(node, exp.Command):
            what = f"is a {str(node.this).upper()} command"
        raise SqlRefused(f"refused: the statement {what}; {ONLY_READS}")
    if isinstance(node, exp.Func):
        name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
        if name in DENIED_FUNCTIONS:
            raise SqlRefused(
                f"refused: the statement calls {name}(), which reaches outside the data; "
                f"{ONLY_READS}"
            )
    if isinstance(node, exp.Lock):  # SELECT ... FOR UPDATE
        raise SqlRefused(f"refused: the statement locks rows (FOR UPDATE); {ONLY_READS}")


def _statement_kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return type(node).__name__.upper()


def looks_like_sql(text: str) -> str | None:
    """Whether `text` is SQL: "statement" when it starts with a statement keyword and sqlglot
    parses it into statements it understands, "command" when sqlglot only recognises a
    command word ("VACUUM", but also "Set the price of X to 5": read for intent first), None
    for words ("delete all overdue invoices", "With which ..."), read for their intent."""
    if not _SQL_START.match(text):
        return None
    try:
        parsed = [s for s in sqlglot.parse(text, read="sqlite") if s is not None]
    except sqlglot.errors.SqlglotError:
        return None
    if not parsed:
        return None
    return "command" if all(isinstance(s, exp.Command) for s in parsed) else "statement"


# -- write intent in natural language -----------------------------------------------------------

_VERBS = {
    "delete rows": "delete|remove|erase|purge|wipe|clear|destroy|expunge|discard|get rid of",
    "drop a table": "drop|truncate",
    "change rows": "update|set|change|modify|edit|alter|rename|replace|overwrite|mark|"
    "increase|decrease|raise|reduce|increment|decrement|bump|reset|assign|deactivate|archive",
    "add rows": "insert|add|create|append|upsert|save",
    "change permissions": "grant|revoke",
}
_LEAD = (
    r"(?:^|[.;!?:,\n]|\band\b|\bthen\b|\balso\b|\bplease\b|\bjust\b|\bnow\b|"
    r"\b(?:can|could|would|will) you\b|\b(?:want|need|like) (?:you )?to\b|\bgo ahead and\b|"
    r"\btry to\b|\blet'?s\b|\bi'?d like to\b|\bhelp me\b|\bshould\b|\bmust\b)"
)
_INTENT = [
    (what, re.compile(_LEAD + r"\s*(?:please\s+)?(?:" + verbs + r")\b", re.IGNORECASE))
    for what, verbs in _VERBS.items()
]
# "set X to Y", "change X to Y", "X should be Y" anywhere in the request
_ASSIGN = re.compile(
    r"\b(?:set|change|update|modify|rename|increase|decrease|raise|reduce)\b[^?]*\bto\b",
    re.IGNORECASE,
)
# "give everyone a raise", "grant the Sales team a bonus"
_GIFT = re.compile(
    r"\b(?:give|grant|award)\b[^?]*\b(?:raise|bonus|discount|promotion|refund)\b", re.IGNORECASE
)
_SQL_WRITE_WORDS = re.compile(
    r"\b(?:insert\s+into|delete\s+from|update\s+\w+\s+set|drop\s+(?:table|view|index|database)|"
    r"truncate\s+table|alter\s+table|create\s+(?:table|view|index)|attach\s+database|pragma)\b",
    re.IGNORECASE,
)
# A question about past changes reads like a request ("which rows were deleted"): these start
# a question, and then a verb must stand at a clause start in the imperative to count.
_QUESTION_START = re.compile(
    r"^\s*(?:what|which|who|whom|whose|when|where|why|how|list|show|give me|find|count|"
    r"return|display|get|tell me|is|are|was|were|do|does|did|has|have|name)\b",
    re.IGNORECASE,
)


def write_intent(request: str) -> str | None:
    """What change `request` asks for ("delete rows", "drop a table", ...), or None when it
    reads as a question. Word patterns: an imperative write verb at the start of a clause, an
    assignment ("set X to Y"), or SQL write keywords in the text."""
    text = " ".join(request.split())
    if _SQL_WRITE_WORDS.search(text):
        match = _SQL_WRITE_WORDS.search(text).group(0).lower()  # type: ignore[union-attr]
        for what, verbs in _VERBS.items():
            if re.match(r"(?:" + verbs + r")\b", match):
                return what
        return "change the database"
    question = bool(_QUESTION_START.match(text))
    for what, pattern in _INTENT:
        for found in pattern.finditer(text):
            # a question's own first word is no imperative ("list ...", "how many were
            # added"); a later clause still counts ("list them and then delete them")
            if not (question and found.start() == 0):
                return what
    if not question and (_ASSIGN.search(text) or _GIFT.search(text)):
        return "change rows"
    return None


def refuse_write_request(request: str) -> None:
    """SqlRefused when `request` asks to change data; nothing otherwise."""
    what = write_intent(request)
    if what is not None:
        raise SqlRefused(f"refused: the request asks to {what}; {ONLY_READS}")
