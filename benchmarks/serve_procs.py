"""Start and stop the HTTP servers the serving benchmarks measure, each as its own process.

`hearth serve` and llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`), both on
127.0.0.1, both on the bundled SmolLM2 GGUF with all cores; stdlib subprocess plus httpx polling.
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
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    name: str
    base_url: str
    proc: subprocess.Popen
    log_path: Path
    model_id: str

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def n_threads(model_path: Path | str | None = None) -> int:
    """The llama.cpp threads Hearth's backend picks by default for `model_path` (the bundled
    model when None), so the peer server can be given the same number."""
    from hearth.llm import smollm2_path
    from hearth.llm.llamacpp import default_threads

    return default_threads(Path(model_path) if model_path else smollm2_path())


def wait_ready(server: Server, path: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with code {server.proc.returncode} before it was ready; "
                f"its log ({server.log_path}) ends with:\n{server.log_tail()}"
            )
        try:
            if httpx.get(server.base_url + path, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(
        f"{server.name} did not answer {path} within {timeout_s:.0f} s; its log "
        f"({server.log_path}) ends with:\n{server.log_tail()}"
    )


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


@contextlib.contextmanager
def _running(name, cmd, model_id, ready_path, timeout_s, log_dir, env=None) -> Iterator[Server]:
    port = int(cmd[cmd.index("--port") + 1])
    log_path = Path(log_dir) / f"{name.replace(' ', '_').replace('.', '_')}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(name, f"http://127.0.0.1:{port}", proc, log_path, model_id)
    try:
        wait_ready(server, ready_path, timeout_s)
        yield server
    finally:
        stop(server)


def hearth_command(index_dir: str, port: int, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hearth",
        "--index",
        index_dir,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


@contextlib.contextmanager
def hearth_server(
    extra_args: list[str] | None = None,
    *,
    model_id: str = "local:smollm2",
    timeout_s: float = 300.0,
    log_dir: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`hearth serve` on a fresh empty index in a temporary folder (`env`: extra variables)."""
    with tempfile.TemporaryDirectory(prefix="hearth-bench-serve-") as tmp:
        cmd = hearth_command(str(Path(tmp) / "index"), free_port(), list(extra_args or []))
        log = log_dir or tmp
        with _running("hearth serve", cmd, model_id, "/health", timeout_s, log, env) as s:
            yield s


@contextlib.contextmanager
def llama_cpp_server(
    model_path: str,
    *,
    threads: int | None = None,
    model_id: str = "local:smollm2",
    timeout_s: float = 300.0,
    log_dir: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """llama-cpp-python's OpenAI server, set up like Hearth's llama.cpp backend.

    Same context (2048), batch (512), threads (decode: `threads`; prompt: every core) and
    seed; the GGUF's own chat template (no --chat_format). Two of its defaults are changed
    because they would handicap it, not Hearth: `--interrupt_requests False` (by default a new
    request cuts off the one streaming, which would end most concurrent streams early) and
    `--logits_all False` (by default it keeps the logits of every prompt token, extra work
    Hearth does not do).
    """
    from hearth.llm.llamacpp import prompt_threads

    threads = threads or n_threads()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        model_path,
        "--model_alias",
        model_id,
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--n_ctx",
        "2048",
        "--n_batch",
        "512",
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(prompt_threads(threads)),  # prompts on every core, as Hearth reads them
        "--seed",
        "0",
        "--logits_all",
        "False",
        "--interrupt_requests",
        "False",
        "--verbose",
        "False",
    ]
    with tempfile.TemporaryDirectory(prefix="hearth-bench-peer-") as tmp:
        with _running(
            "llama_cpp.server", cmd, model_id, "/v1/models", timeout_s, log_dir or tmp
        ) as s:
            yield s
