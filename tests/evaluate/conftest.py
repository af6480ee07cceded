"""Rows built from the rag test documents (GUIDE / TRAVEL), clean and deliberately corrupted."""

from __future__ import annotations

import pytest

from tests.rag.conftest import GUIDE, TRAVEL  # noqa: F401 - the documents the rows quote

STORAGE = (
    "Hearth keeps its whole index in one SQLite file named index.sqlite3 inside the .hearth "
    "folder. The file uses WAL mode, so readers never block the writer."
)
MODELS = (
    "The default chat model is SmolLM2-135M-Instruct, quantized to Q4_1. It runs on llama.cpp "
    "and needs about 150 MB of memory. Any other GGUF file can be passed with the model option."
)
INSTALL = (
    "Install Hearth with pip install hearth. Python 3.11 is required. On Windows, run it "
    "inside WSL."
)
TRAIN = (
    "The night train from Vienna to Rome leaves at 19:40 and arrives at 10:05 the next "
    "morning. Sleeping cars have two or four berths."
)
EIFFEL = (
    "The Eiffel Tower was completed in 1889 for the World's Fair. It is 330 metres tall and "
    "was the tallest structure in the world for 41 years."
)
UNRELATED = [
    "Tomatoes need watering every morning in July. The greenhouse vents open at 24 degrees.",
    "The coffee machine costs 12 euros a month per person. It is cleaned every Friday.",
]

CLEAN = [
    {
        "question": "Where does Hearth keep its index?",
        "answer": "Hearth keeps its index in one SQLite file named index.sqlite3 in the .hearth "
        "folder.",
        "contexts": [STORAGE, MODELS],
        "ground_truth": "In one SQLite file, index.sqlite3, inside the .hearth folder.",
    },
    {
        "question": "How much memory does the default chat model need?",
        "answer": "The default chat model, SmolLM2-135M-Instruct, needs about 150 MB of memory.",
        "contexts": [MODELS, STORAGE],
        "ground_truth": "About 150 MB of memory.",
    },
    {
        "question": "Which Python version does Hearth require?",
        "answer": "Hearth requires Python 3.11.",
        "contexts": [INSTALL, MODELS],
        "ground_truth": "Python 3.11 is required.",
    },
    {
        "question": "When does the night train from Vienna to Rome leave?",
        "answer": "It leaves Vienna at 19:40 and arrives in Rome at 10:05 the next morning.",
        "contexts": [TRAIN, EIFFEL],
        "ground_truth": "The night train leaves at 19:40.",
    },
    {
        "question": "How tall is the Eiffel Tower?",
        "answer": "The Eiffel Tower is 330 metres tall.",
        "contexts": [EIFFEL, TRAIN],
        "ground_truth": "It is 330 metres tall.",
    },
    {
        "question": "When was the Eiffel Tower completed?",
        "answer": "The Eiffel Tower was completed in 1889 for the World's Fair.",
        "contexts": [EIFFEL, TRAIN],
        "ground_truth": "It was completed in 1889.",
    },
]

# an unrelated or contradicting answer: faithfulness must fall
WRONG_ANSWERS = [
    "Hearth stores its index in a PostgreSQL server in the cloud.",
    "The default chat model needs 12 GB of memory and a GPU.",
    "Hearth requires Python 2.7 and runs only on macOS.",
    "The night train leaves Vienna at 6:15 in the morning and has no sleeping cars.",
    "The Eiffel Tower is 95 metres tall and made of stone.",
    "Tomatoes need watering every morning in July.",
]


def with_wrong_answer(row: dict, i: int) -> dict:
    return {**row, "answer": WRONG_ANSWERS[i]}


def with_unrelated_contexts(row: dict) -> dict:
    return {**row, "contexts": list(UNRELATED)}


@pytest.fixture(scope="session")
def clean_rows() -> list[dict]:
    return [dict(r) for r in CLEAN]
