"""`hearth eval` end to end: a real index of real files, real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.evaluate import METRICS
from tests.test_cli import DOOR, GARDEN, run_hearth


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evalcorpus")
    (root / "notes").mkdir()
    (root / "notes" / "handbook.md").write_text(DOOR, encoding="utf-8")
    (root / "notes" / "garden.txt").write_text(GARDEN, encoding="utf-8")
    out = run_hearth("ingest", "notes", "--json", index=root / "idx", cwd=root)
    assert out.returncode == 0, out.stderr
    return root


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


ROWS = [
    {  # answer and contexts given: judged as they are
        "id": "given",
        "question": "What is the front door code?",
        "answer": "The front door code is 4711.",
        "contexts": ["The front door code is 4711."],
        "ground_truth": "The code is 4711.",
    },
    {  # contexts from the pipeline, gold source for retrieval metrics
        "id": "retrieved",
        "question": "When do tomatoes need watering?",
        "answer": "Every morning in July.",
        "gold": ["garden.txt"],
    },
    {"id": "empty", "question": "How much is the coffee machine?", "answer": "", "contexts": []},
]


def test_eval_json_rows_in_input_order_with_all_metrics(corpus: Path, tmp_path: Path):
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    report = tmp_path / "out" / "report.html"
    out = run_hearth(
        "eval", "--dataset", str(data), "--json", "--no-llm-judge", "--report", str(report),
        "--strategies", "bm25,dense", "-k", "3",
        index=corpus / "idx", cwd=corpus,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"rows", "mean", "by_strategy"}
    assert [(r["id"], r["strategy"]) for r in result["rows"]] == [
        (i, s) for i in ("given", "retrieved", "empty") for s in ("bm25", "dense")
    ]
    for row in result["rows"]:
        for m in METRICS:
            assert isinstance(row[m], float) and 0.0 <= row[m] <= 1.0
    given, retrieved = result["rows"][0], result["rows"][2]
    assert given["faithfulness"] == 1.0 and "generated" not in given
    assert retrieved["generated"] == ["contexts"] and retrieved["contexts"]
    assert retrieved["hit@3"] == 1.0 and "mrr@3" in retrieved and "ndcg@3" in retrieved
    empty = result["rows"][4]
    assert empty["faithfulness"] == 0.0 and "empty answer" in empty["reasons"]["faithfulness"]
    assert set(result["by_strategy"]) == {"bm25", "dense"}
    html = report.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2 and "<script" not in html
    assert "bm25" in html and "dense" in html


def test_eval_answers_rows_with_the_pipeline(corpus: Path, tmp_path: Path):
    data = write_rows(tmp_path / "rows.jsonl", [{"question": "What is the front door code?"}])
    out = run_hearth(
        "eval", "--dataset", str(data), "--json", "--no-llm-judge",
        index=corpus / "idx", cwd=corpus, env={"HEARTH_MODEL": "local:smollm2"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)["rows"]
    assert row["generated"] == ["answer", "contexts"] and row["answer"] and row["contexts"]
    assert all(0.0 <= row[m] <= 1.0 for m in METRICS)


@pytest.mark.parametrize(
    "lines,message",
    [
        (['{"question": "ok?"}', "{not json"], "line 2: not valid JSON"),
        (
            ['{"question": "ok?"}', "", '{"answer": "no question"}'],
            'line 3: the row has no "question"',
        ),
        (['{"question": "q?", "contexts": "one string"}'], '"contexts" must be a list of strings'),
    ],
)
def test_malformed_dataset_is_a_clear_error(corpus: Path, tmp_path: Path, lines, message):
    data = write_rows(tmp_path / "bad.jsonl", lines)
    out = run_hearth(
        "eval", "--dataset", str(data), "--json", "--no-llm-judge", index=corpus / "idx", cwd=corpus
    )
    assert out.returncode != 0
    error = json.loads(out.stdout)["error"]
    assert message in error and "bad.jsonl" in error
