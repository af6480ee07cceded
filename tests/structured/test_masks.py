"""Token masks on a real vocabulary (SmolLM2's, read from its GGUF by llama.cpp): any walk
through the allowed tokens ends in a text the constraint accepts, and forbidden tokens are
refused."""

from __future__ import annotations

import numpy as np
import pytest

from hearth.structured import compile

SCHEMA = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
        "mood": {"enum": ["calm", "busy"]},
    },
    "required": ["ok", "n", "mood"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def vocab(chat_model):
    return chat_model._load(), chat_model.structured_tokenizer()


@pytest.mark.parametrize("seed", range(5))
def test_random_walks_through_the_mask_end_in_accepted_text(vocab, seed):
    llama, tokenizer = vocab
    c = compile(SCHEMA)
    m = c.matcher(tokenizer)
    rng = np.random.default_rng(seed)
    tokens: list[int] = []
    while not m.done and len(tokens) < 200:
        allowed = np.flatnonzero(m.allowed())
        assert allowed.size > 0, m.error
        token = int(rng.choice(allowed))
        assert m.advance(token)
        tokens.append(token)
    assert m.done
    text = tokenizer.decode_str([t for t in tokens if t != llama.token_eos()])
    assert c.accepts(text), text
    value = c.parse(text)
    assert set(value) == {"ok", "n", "mood"}
    assert ", " in text or text.count(",") == 0  # generation writes json.dumps's separators


def test_the_mask_forbids_and_mask_logits_applies_it(vocab):
    llama, tokenizer = vocab
    m = compile(["yes", "no"]).matcher(tokenizer)
    allowed = m.allowed()
    yes = llama.tokenize(b"yes", add_bos=False, special=False)[0]
    story = llama.tokenize(b" Once", add_bos=False, special=False)[0]
    assert allowed[yes] and not allowed[story]
    logits = np.zeros((1, llama.n_vocab()), dtype=np.float32)
    m.mask_logits(logits)
    assert np.isinf(logits[0, story]) and logits[0, yes] == 0
    assert not m.advance(story) and m.error
