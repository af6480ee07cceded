"""What the model is shown of a database: tables, columns with types, primary and foreign keys,
row counts and a few sample values per text column, written as compact CREATE TABLE lines;
for a schema too long for the prompt, the tables the question's words point at come first.

Hand-written: reading the catalog (SQLite PRAGMAs, PostgreSQL information_schema) and the
keyword-overlap ranking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hearth.query.sql_exec import Database

SAMPLES = 3  # distinct sample values per text column
SAMPLE_CHARS = 40  # longest sample value shown
MAX_TABLES = 50  # tables read from the catalog at most
SCHEMA_TIMEOUT_S = 5.0


def quote_identifier(name: str) -> str:
    """`name` as SQL writes it: bare when it is a plain identifier (or schema.table of two),
    else in double quotes."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", name):
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Column:
    name: str
    type: str = ""
    primary_key: bool = False
    references: tuple[str, str] | None = None  # (table, column)
    samples: list = field(default_factory=list)


@dataclass
class Table:
    name: str
    columns: list[Column]
    rows: int | None = None


@dataclass
class Schema:
    dialect: str
    tables: list[Table]

    def table(self, name: str) -> Table | None:
        low = name.lower()
        return next((t for t in self.tables if t.name.lower() == low), None)

    def prompt(self, question: str = "", max_chars: int = 3000) -> str:
        """The schema as CREATE TABLE lines, in catalog order when it fits in `max_chars` (the
        same prompt prefix for every question, so a model's prompt cache reuses it); else the
        tables `question` points at first and the rest left out, with a line saying which."""
        texts = [create_table(t) for t in self.tables]
        if sum(len(t) + 1 for t in texts) <= max_chars or not question:
            ordered = list(self.tables)
        else:
            ordered = rank_tables(self.tables, question)
        parts, used, left = [], 0, []
        for table in ordered:
            text = create_table(table)
            if parts and used + len(text) > max_chars:
                left.append(table.name)
                continue
            parts.append(text)
            used += len(text) + 1
        if left:
            parts.append(f"-- other tables, not shown: {', '.join(left)}")
        return "\n".join(parts)


def create_table(table: Table) -> str:
    lines = []
    for i, c in enumerate(table.columns):
        line = f"  {quote_identifier(c.name)} {c.type or 'ANY'}".rstrip()
        if c.primary_key:
            line += " PRIMARY KEY"
        if c.references:
            line += f" REFERENCES {quote_identifier(c.references[0])}({c.references[1]})"
        if i < len(table.columns) - 1:
            line += ","
        if c.samples:
            line += "  -- e.g. " + ", ".join(_sample(v) for v in c.samples)
        lines.append(line)
    rows = f" -- {table.rows} rows" if table.rows is not None else ""
    body = "\n".join(lines)
    return f"CREATE TABLE {quote_identifier(table.name)} ({rows}\n{body}\n);"


def _sample(value) -> str:
    if isinstance(value, str):
        text = value if len(value) <= SAMPLE_CHARS else value[: SAMPLE_CHARS - 3] + "..."
        return "'" + text.replace("'", "''") + "'"
    return str(value)


def _words(text: str) -> set[str]:
    words = set()
    for w in re.findall(r"[a-z0-9]+", text.lower().replace("_", " ")):
        words.add(w)
        if len(w) > 3 and w.endswith("s"):
            words.add(w[:-1])  # "invoices" ~ "invoice"
        elif len(w) > 2:
            words.add(w + "s")
    return words


def rank_tables(tables: list[Table], question: str) -> list[Table]:
    """Tables by how many of the question's words their names, columns and samples share (a
    table that a named one references counts half), ties in catalog order."""
    q = _words(question)

    def own(t: Table) -> float:
        score = 3.0 * len(q & _words(t.name))
        for c in t.columns:
            score += len(q & _words(c.name))
            score += 0.5 * sum(len(q & _words(str(s))) for s in c.samples)
        return score

    scores = {t.name: own(t) for t in tables}
    for t in tables:
        for c in t.columns:
            if c.references and scores.get(t.name, 0) > 0 and c.references[0] in scores:
                scores[c.references[0]] += 0.5 * scores[t.name] / (1 + scores[c.references[0]])
    order = {t.name: i for i, t in enumerate(tables)}
    return sorted(tables, key=lambda t: (-scores[t.name], order[t.name]))


_TEXT_TYPES = re.compile(r"char|text|clob|string|enum|^$", re.IGNORECASE)


def read_schema(db: Database, *, samples: int = SAMPLES) -> Schema:
    """The schema of the database `db` is connected to (tables and views)."""
    if db.dialect == "postgres":
        tables = _postgres_tables(db)
    else:
        tables = _sqlite_tables(db)
    for table in tables:
        name = quote_identifier(table.name)
        try:
            table.rows = db.query(f"SELECT COUNT(*) FROM {name}", timeout_s=SCHEMA_TIMEOUT_S)[1][0][
                0
            ]
        except Exception:  # noqa: BLE001 - a count is a nicety
            table.rows = None
        if samples <= 0:
            continue
        for col in table.columns:
            if not _TEXT_TYPES.search(col.type) or col.primary_key:
                continue
            c = quote_identifier(col.name)
            sql = f"SELECT DISTINCT {c} FROM {name} WHERE {c} IS NOT NULL LIMIT {int(samples)}"
            try:
                col.samples = [r[0] for r in db.query(sql, timeout_s=SCHEMA_TIMEOUT_S)[1]]
            except Exception:  # noqa: BLE001 - samples are a nicety
                col.samples = []
    return Schema(db.dialect, tables)


def _sqlite_tables(db: Database) -> list[Table]:
    names = db.catalog(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
        max_rows=MAX_TABLES,
    )
    tables = []
    for (name,) in names:
        info = db.catalog("SELECT name, type, pk FROM pragma_table_info(?)", (name,))
        fks = db.catalog('SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)', (name,))
        refs = {src: (tbl, dst) for src, tbl, dst in fks}
        columns = [Column(c, t or "", bool(pk), refs.get(c)) for c, t, pk in info]
        for col in columns:  # `REFERENCES t` without a column means t's primary key
            if col.references and col.references[1] is None:
                col.references = (col.references[0], "id")
        tables.append(Table(name, columns))
    return tables


def _postgres_tables(db: Database) -> list[Table]:
    names = db.catalog(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
        "AND table_type IN ('BASE TABLE', 'VIEW') ORDER BY table_schema, table_name",
        max_rows=MAX_TABLES,
    )
    tables = []
    for schema, name in names:
        cols = db.catalog(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, name),
        )
        keys = db.catalog(
            "SELECT kcu.column_name, tc.constraint_type, ccu.table_name, ccu.column_name "
            "FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu "
            "ON tc.constraint_name = kcu.constraint_name AND tc.table_schema = kcu.table_schema "
            "LEFT JOIN information_schema.constraint_column_usage ccu "
            "ON ccu.constraint_name = tc.constraint_name AND ccu.table_schema = tc.table_schema "
            "WHERE tc.table_schema = %s AND tc.table_name = %s "
            "AND tc.constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')",
            (schema, name),
        )
        pks = {k[0] for k in keys if k[1] == "PRIMARY KEY"}
        refs = {k[0]: (k[2], k[3]) for k in keys if k[1] == "FOREIGN KEY" and k[2]}
        label = name if schema == "public" else f"{schema}.{name}"
        columns = [Column(c, t.upper(), c in pks, refs.get(c)) for c, t in cols]
        tables.append(Table(label, columns))
    return tables
