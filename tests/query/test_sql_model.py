"""Text-to-SQL with the real instruction model (Qwen2.5-Coder-0.5B under the schema's grammar):
an exact end-to-end answer, a repair from the database's error, and the `hearth sql` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hearth.query.sql import text_to_sql
from tests.query.conftest import sha256

QWEN = "local:qwen2.5-coder-0.5b"


def test_question_answered_exactly(shop_db, sql_model):
    before = sha256(shop_db)
    result = text_to_sql("How many invoices are overdue?", str(shop_db), sql_model)
    assert result.rows == [[30]], result.to_json()
    assert "invoices" in result.sql.lower() and "overdue" in result.sql
    assert sha256(shop_db) == before


class BrokenFirstAnswer:
    """Qwen, except that its first answer is replaced by a query naming a missing column: the
    database's error must go back to the real model, which then writes a query that runs."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.masks_tokens = model.masks_tokens
        self.name = model.name

    def chat(self, messages, **params):
        self.calls.append(messages)
        if len(self.calls) == 1:
            from hearth.types import ChatResult

            return ChatResult("SELECT full_name FROM customers WHERE city = 'London'", self.name)
        return self.model.chat(messages, **params)


def test_execution_error_is_repaired(shop_db, sql_model):
    model = BrokenFirstAnswer(sql_model)
    result = text_to_sql(
        "What are the names of the customers in London?", str(shop_db), model, max_repairs=2
    )
    assert result.repairs[0]["sql"].startswith("SELECT full_name")
    assert "no such column: full_name" in result.repairs[0]["error"]
    assert "no such column: full_name" in model.calls[1][-1].content  # fed back
    assert sorted(r[0] for r in result.rows) == ["Ada Lovelace", "Alan Turing"]


def run_hearth(*args: str, cwd: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HEARTH_INSTRUCT_MODEL": QWEN}
    return subprocess.run(
        [sys.executable, "-m", "hearth", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_answers_and_refuses(shop_db, tmp_path):
    before = sha256(shop_db)
    ok = run_hearth("sql", "How many customers are there?", "--db", str(shop_db), "--json",
                    cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["rows"] == [[4]] and out["columns"] and out["sql"].upper().startswith("SELECT")

    refused = run_hearth("sql", "delete all overdue invoices", "--db", str(shop_db), "--json",
                         cwd=tmp_path)  # fmt: skip
    assert refused.returncode != 0
    error = json.loads(refused.stdout)["error"]
    assert error.startswith("refused:") and "delete" in error and "only reads" in error

    stacked = run_hearth("sql", "SELECT 1; DROP TABLE customers", "--db", str(shop_db),
                         cwd=tmp_path)  # fmt: skip
    assert stacked.returncode != 0 and "stacked" in stacked.stderr
    assert sha256(shop_db) == before


def test_grammar_masks_stay_open_on_the_model_vocabulary(shop_db, sql_model):
    """After `i.customer` the model's `_id` token must stay allowed: an ambiguous grammar can
    overflow llguidance's Earley items and leave only end-of-text (a truncated query)."""
    from hearth.query.sql_exec import connect
    from hearth.query.sql_grammar import sql_constraint
    from hearth.query.sql_schema import read_schema

    with connect(str(shop_db)) as db:
        constraint = sql_constraint(read_schema(db))
    llama = sql_model._load()
    matcher = constraint.matcher(sql_model.structured_tokenizer())
    prefix = "SELECT c.name, SUM(i.total) AS spent FROM customers c JOIN invoices i ON i.customer"
    for token in llama.tokenize(prefix.encode(), add_bos=False, special=False):
        assert matcher.advance(token)
    allowed = matcher.allowed()
    assert matcher.error is None
    assert allowed[llama.tokenize(b"_id", add_bos=False, special=False)[0]]
