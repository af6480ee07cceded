"""Soak: 1,000 streamed chat requests from 16 concurrent clients, a quarter hanging up mid-stream.

The server must stay up, answer every request that stays connected, free the generation slot
of every one that hangs up, and not keep growing in memory. The load comes from the serving
benchmark's client (benchmarks/loadgen.py: httpx, asyncio); RSS is read with psutil.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.serve_support import start_hearth_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import loadgen  # noqa: E402

pytestmark = pytest.mark.slow

REQUESTS = 1000
CLIENTS = 16
SAMPLE_AT = (200, 600, 1000)  # completed requests at which the server's RSS is read
TIME_LIMIT_S = 900  # a bound against hanging: the run takes about 2.5 minutes on 2 busy cores
# Growth allowed from the 600th to the 1,000th request. Measured: a few MiB of warm-up growth
# that flattens out (a 3,000-request run: 322 MiB at 250, 337 at 1,000, 344 at 2,000, still 344
# at 3,000); 5-8 MiB in this window. A leak of 60 KiB per request would exceed the bound.
RSS_GROWTH_LIMIT = 24 * 2**20

PROMPTS = [
    "Say hello.",
    "Name a colour.",
    "Count to three.",
    "What is two plus two?",
    "Name a fruit.",
    "Give me one word.",
    "Say something kind.",
    "Name an animal.",
]


def rss(pid: int) -> int:
    """Resident memory of the server process and any children it started."""
    proc = psutil.Process(pid)
    return proc.memory_info().rss + sum(
        child.memory_info().rss for child in proc.children(recursive=True)
    )


def hangs_up(i: int) -> bool:
    return i % 4 == 3


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory):
    index = tmp_path_factory.mktemp("soak") / "index"
    with start_hearth_server(index, "--queue-size", str(4 * CLIENTS)) as handle:
        yield handle


def test_a_thousand_requests_with_a_quarter_hanging_up(soak_server):
    headers = {"Authorization": f"Bearer {soak_server.api_key}"}
    bodies = [
        {
            "model": "local:smollm2",
            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "max_tokens": 6,
            "temperature": 0.0 if i % 2 else 0.8,
            "seed": i,
        }
        for i in range(REQUESTS)
    ]
    pid = soak_server.proc.pid
    samples: dict[int, int] = {}
    finished = 0

    def on_done(_output) -> None:
        nonlocal finished
        finished += 1
        if finished in SAMPLE_AT:
            samples[finished] = rss(pid)

    start = time.monotonic()
    try:
        outputs, duration = asyncio.run(
            asyncio.wait_for(
                loadgen.run_load(
                    soak_server.base_url,
                    bodies,
                    CLIENTS,
                    headers=headers,
                    disconnect=hangs_up,
                    timeout_s=300,
                    on_done=on_done,
                ),
                timeout=TIME_LIMIT_S,
            )
        )
    except TimeoutError:
        pytest.fail(f"only {finished} of {REQUESTS} requests finished in {TIME_LIMIT_S} s")
    assert len(outputs) == REQUESTS

    hung_up = [o for o in outputs if hangs_up(o.index)]
    stayed = [o for o in outputs if not hangs_up(o.index)]
    # Every hang-up happened after a first chunk had arrived, i.e. mid-stream.
    assert all(o.disconnected for o in hung_up), [o.error for o in hung_up if not o.disconnected]
    failures = [(o.index, o.error) for o in stayed if not (o.ok and o.text.strip())]
    assert not failures, f"{len(failures)} of {len(stayed)} failed, first: {failures[:5]}"

    # Still up, and every hung-up generation gave its slot back.
    with httpx.Client(base_url=soak_server.base_url, headers=headers, timeout=60) as client:
        deadline = time.monotonic() + 30
        while True:
            health = client.get("/health")
            assert health.status_code == 200
            state = health.json()
            if state["generations_running"] == 0 and state["queue_depth"] == 0:
                break
            assert time.monotonic() < deadline, f"slots still busy after the run: {state}"
            time.sleep(0.2)
        answer = client.post(
            "/v1/chat/completions",
            json={
                "model": "local:smollm2",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 4,
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"].strip()

    mib = {k: round(v / 2**20, 1) for k, v in samples.items()}
    print(
        f"\nsoak: {REQUESTS} requests in {duration:.0f} s ({time.monotonic() - start:.0f} s "
        f"wall), server RSS MiB at {mib}"
    )
    assert set(samples) == set(SAMPLE_AT)
    growth = samples[1000] - samples[600]
    assert growth < RSS_GROWTH_LIMIT, (
        f"server RSS grew {growth / 2**20:.1f} MiB from request 600 to 1000 (samples MiB: {mib})"
    )
