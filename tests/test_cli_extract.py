"""`hearth extract` end to end in a subprocess with the real SmolLM2: the object fits the
schema; a schema that cannot be enforced, or is not JSON, is a one-line error naming why."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.schemas import PERSON

SCHEMA = PERSON
TEXT = "Maria Lopez is 34 years old and lives in Valencia."


def hearth(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hearth", "extract", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
    )  # fmt: skip


def test_extract_prints_an_object_that_fits(tmp_path):
    (tmp_path / "person.json").write_text(json.dumps(SCHEMA))
    out = hearth("--schema", "person.json", TEXT, "--model", "local:smollm2", "--json",
                 cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    person = json.loads(out.stdout)
    assert set(person) == {"name", "age"} and person["age"] == 34
    assert "Maria" in person["name"]


def test_bad_schemas_are_clear_errors(tmp_path):
    (tmp_path / "unique.json").write_text(json.dumps({"type": "array", "uniqueItems": True}))
    out = hearth("--schema", "unique.json", TEXT, "--model", "local:smollm2", "--json",
                 cwd=tmp_path)  # fmt: skip
    assert out.returncode != 0
    assert "uniqueItems" in json.loads(out.stdout)["error"]
    (tmp_path / "broken.json").write_text('{"type": "object",\n "properties": }')
    out = hearth("--schema", "broken.json", TEXT, cwd=tmp_path)
    assert out.returncode != 0 and "line 2" in out.stderr
