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


def test_engine_model_calls_tools_and_streams_them(served_index):
    """Tools and response_format on an engine model, through the official client: the call's
    arguments validate, streamed as OpenAI's deltas (id and name first, then pieces)."""
    import json

    import jsonschema

    params = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"]}  # fmt: skip
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": params}}]
    ask = [{"role": "user", "content": "What is the weather like in Paris?"}]
    with start_hearth_server(served_index, "--model", ENGINE) as server:
        server.wait_ready(timeout=300)
        client = server.openai()
        reply = client.chat.completions.create(
            model=ENGINE, messages=ask, tools=tools, tool_choice="required", max_tokens=40
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        jsonschema.validate(json.loads(call.function.arguments), params)
        chunks = list(client.chat.completions.create(
            model=ENGINE, messages=ask, tools=tools, tool_choice="required", max_tokens=40,
            stream=True,
        ))  # fmt: skip
        deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
        assert deltas[0].id and deltas[0].function.name == "get_weather"
        arguments = "".join(d.function.arguments or "" for d in deltas)
        jsonschema.validate(json.loads(arguments), params)
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        person = client.chat.completions.create(
            model=ENGINE, messages=[{"role": "user", "content": "Ada is 36."}], max_tokens=40,
            response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": {
                "type": "object", "properties": {"age": {"type": "integer"}},
                "required": ["age"]}}},
        )  # fmt: skip
        assert isinstance(json.loads(person.choices[0].message.content)["age"], int)
