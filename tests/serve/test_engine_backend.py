"""`hearth serve --model engine:smollm2`: Hearth's own engine behind the OpenAI API. Its model
gets 16 generation slots by default (llama.cpp's keeps 1), concurrent requests run at once
through the engine's batch, and each answer equals the same request sent alone."""

from __future__ import annotations

import re
import threading
import time

import httpx

from tests.serve_support import start_hearth_server

ENGINE = "engine:smollm2"
PROMPTS = [
    "Name a primary color.",
    "What is two plus two?",
    "Say hello in French.",
    "Name a planet.",
    "What do bees make?",
    "Name a fruit that is yellow.",
]


def _ask(client, prompt: str) -> str:
    reply = client.chat.completions.create(
        model=ENGINE,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=20,
        temperature=0,
    )
    return reply.choices[0].message.content


def test_engine_model_serves_concurrent_requests_in_one_batch(served_index):
    with start_hearth_server(served_index, "--model", ENGINE) as server:
        server.wait_ready(timeout=300)
        slots = re.search(r"generation slots: ([^;]+);", server.log())
        assert slots is not None, server.log()
        assert "local:smollm2 1" in slots.group(1) and f"{ENGINE} 16" in slots.group(1)

        client = server.openai()
        together: dict[str, str] = {}
        running: list[int] = []
        done = threading.Event()

        def watch() -> None:
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                while not done.is_set():
                    running.append(http.get("/health").json()["generations_running"])
                    time.sleep(0.02)

        def ask(prompt: str) -> None:
            together[prompt] = _ask(client, prompt)

        watcher = threading.Thread(target=watch)
        watcher.start()
        threads = [threading.Thread(target=ask, args=(p,)) for p in PROMPTS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        done.set()
        watcher.join()

        assert sorted(together) == sorted(PROMPTS)
        assert max(running) >= 3, f"requests did not run at once: {max(running)}"
        alone = {p: _ask(client, p) for p in PROMPTS}
        assert together == alone
        assert all(text.strip() for text in together.values())
