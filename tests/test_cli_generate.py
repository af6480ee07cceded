"""`hearth generate` end to end in a subprocess with the real embedded SmolLM2: JSON output,
beam search with a drawn tree, and clean one-line errors for bad flag combinations."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

KEYS = {
    "text", "token_ids", "tokens_per_second", "seconds", "warmup_seconds",
    "tokens_per_second_with_warmup", "precision", "strategy",
    "draft_tokens_accepted", "draft_tokens_proposed",
}  # fmt: skip


def hearth(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hearth", "generate", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_greedy_json():
    out = hearth("The capital of France is", "--max-tokens", "16", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == KEYS
    assert data["strategy"] == "greedy"
    assert "Paris" in data["text"]
    assert 1 <= len(data["token_ids"]) <= 16
    assert data["tokens_per_second"] > 0
    assert (data["draft_tokens_accepted"], data["draft_tokens_proposed"]) == (0, 0)
    from hearth.engine.config import default_precision

    assert data["precision"] == default_precision(None) == "int8"  # measured for SmolLM2
    # loading and quantizing are counted beside the speed, not hidden from it
    assert data["warmup_seconds"] > 0
    with_warmup = len(data["token_ids"]) / (data["seconds"] + data["warmup_seconds"])
    assert data["tokens_per_second_with_warmup"] == pytest.approx(with_warmup, rel=0.02)


@pytest.mark.slow
def test_fp32_and_the_instruction_model_by_name():
    fp32 = hearth("The capital of France is", "--max-tokens", "8", "--precision", "fp32", "--json")
    assert fp32.returncode == 0, fp32.stderr
    assert json.loads(fp32.stdout)["precision"] == "fp32"
    qwen = hearth("def add(a, b):", "--model", "qwen2.5-coder-0.5b", "--max-tokens", "24",
                  "--precision", "fp32", "--json")  # fmt: skip
    assert qwen.returncode == 0, qwen.stderr
    assert "return a + b" in json.loads(qwen.stdout)["text"]  # (after a comment, at times)


RAG_PROMPT = (
    "Context: The Hearth engine stores its vectors in a SQLite file named index.sqlite3 "
    "inside the .hearth folder.\nQuestion: Where does the Hearth engine store its vectors?\n"
    "Answer: The Hearth engine stores its vectors in"
)


@pytest.mark.slow
def test_speculative_prompt_lookup_gives_the_greedy_text_and_counts_drafts():
    plain = json.loads(hearth(RAG_PROMPT, "--max-tokens", "20", "--json").stdout)
    out = hearth(RAG_PROMPT, "--max-tokens", "20", "--speculative", "prompt-lookup", "--json")
    assert out.returncode == 0, out.stderr
    spec = json.loads(out.stdout)
    assert spec["token_ids"] == plain["token_ids"]
    assert spec["draft_tokens_proposed"] > 0
    assert 0 < spec["draft_tokens_accepted"] <= spec["draft_tokens_proposed"]


@pytest.mark.slow
def test_beam_with_tree_png(tmp_path):
    png = tmp_path / "out.png"
    out = hearth(
        "The capital of France is", "--strategy", "beam", "--num-beams", "3",
        "--max-tokens", "8", "--tree", str(png), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["strategy"] == "beam" and data["token_ids"]
    with Image.open(png) as img:
        img.verify()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tree", "t.png"], "--strategy beam"),
        (["--strategy", "beam", "--tree", "t.svg"], ".png or .html"),
        (["--num-beams", "3"], "--num-beams needs"),
        (["--strategy", "beam", "--speculative", "draft"], "greedy or sample"),
        (["--draft-model", "m.gguf"], "--speculative draft"),
        (["--temperature", "0.7"], "--strategy sample"),
        (["--strategy", "nope"], "choose one of"),
        (["--strategy", "sample", "--top-p", "1.5"], "top_p"),
        (["--model", "/no/such/model.gguf"], "no such file"),
    ],
)
def test_bad_flags_are_one_line_errors(args, message, tmp_path):
    out = hearth("hi", *args, cwd=tmp_path)
    assert out.returncode == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr
