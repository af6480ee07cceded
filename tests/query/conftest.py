"""Fixtures for the text-to-SQL tests: a small shop database built in a temp folder, its hash,
and the instruction model (Qwen2.5-Coder-0.5B) loaded once for this folder's model tests."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

SHOP = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT);
CREATE TABLE invoices (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
    status TEXT, total REAL);
INSERT INTO customers VALUES (1, 'Ada Lovelace', 'London'), (2, 'Grace Hopper', 'New York'),
    (3, 'Alan Turing', 'London'), (4, 'Edsger Dijkstra', 'Austin');
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_shop(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(SHOP)
    statuses = ["paid", "paid", "overdue", "open", "paid"]
    conn.executemany(
        "INSERT INTO invoices VALUES (?, ?, ?, ?)",
        [(i, 1 + i % 4, statuses[i % 5], 10.0 * i) for i in range(1, 151)],
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def shop_db(tmp_path_factory) -> Path:
    """customers (4 rows) and invoices (150 rows: 30 overdue); tests must leave it unchanged."""
    return build_shop(tmp_path_factory.mktemp("sql") / "shop.sqlite")


@pytest.fixture(scope="module")
def sql_model():
    from hearth import llm

    return llm.load("local:qwen2.5-coder-0.5b", context_size=2048)
