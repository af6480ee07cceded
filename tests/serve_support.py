"""Test harness for `hearth serve`: start the real server as a subprocess on 127.0.0.1, and
build a small real index for it. Shared by the server, web UI, fuzz and soak tests.

    with start_hearth_server(index_dir) as server:
        client = server.openai()            # the official openai SDK, pointed at the server
        httpx.get(server.base_url + "/health")
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]

# Facts the RAG tests ask about: each sits in exactly one file.
HANDBOOK = """# Office handbook

## Door code

The front door code is 4711. To reset the door code, hold the star key for five
seconds, type the old code, then type the new code twice. Only facilities staff may
reset it.

## Coffee machine

The coffee machine costs 12 euros a month per person. It is cleaned every Friday.
"""

GARDEN = """# Garden notes

Tomatoes need watering every morning in July. The greenhouse vents open at 24 degrees.
Basil grows best next to the tomatoes.
"""

BIKES = """# Bike shed

The bike shed behind building C holds 40 bikes. The shed key is kept at the reception desk.
Electric bikes charge from the sockets on the north wall.
"""

SMALL_CORPUS = {"handbook.md": HANDBOOK, "garden.md": GARDEN, "bikes.md": BIKES}


def make_small_index(index_dir: Path, *, with_repo_docs: bool = False) -> Path:
    """Ingest SMALL_CORPUS (three short Markdown files with known facts, written next to the
    index in `<index_dir>-corpus/`) and optionally the repo's docs/*.md into `index_dir`,
    in-process with the real embedder. Returns `index_dir`."""
    from hearth.config import load_settings
    from hearth.index.embedder import load_embedder
    from hearth.index.indexer import Indexer
    from hearth.index.store import SQLiteStore
    from hearth.ingest.splitter import Splitter

    index_dir = Path(index_dir)
    corpus = index_dir.parent / f"{index_dir.name}-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, text in SMALL_CORPUS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    inputs = [str(corpus)]
    if with_repo_docs:
        inputs.append(str(REPO / "docs"))
    settings = load_settings(index=index_dir)
    embedder = load_embedder(settings.embedder, backend=settings.embed_backend)
    splitter = Splitter(
        embedder.count_tokens,
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.chunk_overlap,
    )
    with SQLiteStore(settings.db_path) as store:
        report = Indexer(store, embedder, splitter).ingest(inputs, progress=False)
    if report.skipped:
        raise RuntimeError(f"make_small_index skipped files: {report.skipped}")
    return index_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerHandle:
    base_url: str  # "http://127.0.0.1:PORT"
    api_key: str | None
    index: Path
    proc: subprocess.Popen
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)

    def openai(self, **kw: Any):
        """An official `openai.OpenAI` client for this server (no retries unless asked)."""
        import openai

        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 120)
        return openai.OpenAI(
            base_url=self.base_url + "/v1", api_key=self.api_key or "no-key-needed", **kw
        )

    def http(self, **kw: Any) -> httpx.Client:
        """An httpx client with the base URL and the API key header set."""
        kw.setdefault("timeout", 120)
        return httpx.Client(base_url=self.base_url, headers=self.headers, **kw)

    def metrics(self) -> str:
        return httpx.get(self.base_url + "/metrics", headers=self.headers, timeout=30).text

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the background warm-up has loaded the models."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if httpx.get(self.base_url + "/health", timeout=10).json().get("ready"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"server at {self.base_url} not ready after {timeout} s")


@contextlib.contextmanager
def start_hearth_server(
    index_dir: Path,
    *extra_cli_args: str,
    env: dict[str, str] | None = None,
    api_key: str | None = "test-key",
    startup_timeout: float = 120,
    cwd: Path | None = None,
) -> Iterator[ServerHandle]:
    """Run `python -m hearth --index DIR serve --port <free> [--api-key KEY] ARGS...` on
    127.0.0.1; yield a ServerHandle once /health answers; SIGTERM it (then kill) on exit.

    HEARTH_API_KEYS from the outer environment is dropped unless `env` sets it."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    full_env.pop("HEARTH_API_KEYS", None)
    full_env.update(env or {})
    log_file = tempfile.NamedTemporaryFile(
        "w+b", prefix="hearth-serve-", suffix=".log", delete=False
    )
    log_path = Path(log_file.name)
    proc, base_url = None, ""
    try:
        for _attempt in range(3):  # a free port can be taken between choosing and binding it
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            cmd = [sys.executable, "-m", "hearth", "--index", str(index_dir), "serve"]
            cmd += ["--host", "127.0.0.1", "--port", str(port)]
            if api_key:
                cmd += ["--api-key", api_key]
            cmd += list(extra_cli_args)
            proc = subprocess.Popen(
                cmd, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=cwd or REPO
            )
            if _wait_for_health(proc, base_url, startup_timeout):
                break
            if proc.poll() is None or "address already in use" not in _read(log_path).lower():
                _stop(proc)
                raise RuntimeError(f"hearth serve did not start:\n{_read(log_path)[-4000:]}")
        else:
            raise RuntimeError(f"hearth serve found no free port:\n{_read(log_path)[-4000:]}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        yield ServerHandle(base_url, api_key, Path(index_dir), proc, log_path, headers)
    finally:
        if proc is not None:
            _stop(proc)
        log_file.close()
        log_path.unlink(missing_ok=True)


def stop_server(handle: ServerHandle, timeout: float = 60) -> int:
    """SIGTERM the server and wait for it to exit; returns its exit code."""
    return _stop(handle.proc, timeout)


def _wait_for_health(proc: subprocess.Popen, base_url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(base_url + "/health", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")
