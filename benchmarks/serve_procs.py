"""Start and stop the HTTP servers the serving benchmarks measure, each as its own process.

`hearth serve`, llama.cpp's own C++ server (`llama-server`, built by llama_server.py from the
installed llama-cpp-python's source) and llama-cpp-python's OpenAI server
(`python -m llama_cpp.server`), all on 127.0.0.1 and the same GGUF; stdlib subprocess plus httpx
polling, psutil for the servers' memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Server:
    name: str
    base_url: str
    proc: subprocess.Popen
    log_path: Path
    model_id: str
    cmd: list[str] = field(default_factory=list)

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
    server = Server(name, f"http://127.0.0.1:{port}", proc, log_path, model_id, list(cmd))
    try:
        wait_ready(server, ready_path, timeout_s)
        yield server
    finally:
        stop(server)


class RssSampler:
    """Peak resident memory of a server process and its children, sampled on a thread.

    `with RssSampler(pid) as rss: ...` then `rss.peak_mib`; sampled every `interval_s` (a
    short-lived spike between two samples can be missed; the samples taken are kept as a count).
    """

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> int:
        import psutil

        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak_bytes = max(self.peak_bytes, total)
        self.samples += 1
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


def cores() -> int:
    """The cores this process may run on (what "all cores" means for a server)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
    """`hearth serve` on a fresh empty index in a temporary folder (`env`: extra variables).

    `model_id` is the chat model spec requests name; hearth serve serves its settings' `model`
    and `instruct_model` (both Qwen2.5-Coder by default) plus any `--model`, so the benchmark sets
    HEARTH_MODEL and HEARTH_INSTRUCT_MODEL to `model_id` (unless `env` sets them): the server then
    loads that one model only, as the peers do, and its memory is that model's.
    """
    env = {"HEARTH_MODEL": model_id, "HEARTH_INSTRUCT_MODEL": model_id, **(env or {})}
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


@contextlib.contextmanager
def llama_server(
    model_path: str,
    slots: int,
    *,
    threads: int | None = None,
    ctx_per_slot: int = 2048,
    model_id: str = "local:smollm2",
    binary: str | None = None,
    extra_args: list[str] | None = None,
    timeout_s: float = 300.0,
    log_dir: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """llama.cpp's own server with its best settings for `slots` concurrent clients.

    - `-np slots`: one slot per client, so every client is decoded in the same batch
      (continuous batching is on by default: `--cont-batching`, passed anyway).
    - `-c slots * ctx_per_slot`: with an explicit -np and no `--kv-unified` the context is split
      evenly between the slots, so each slot gets `ctx_per_slot` tokens (2048: Hearth's context).
    - `-t` / `-tb` every core (`threads`, default all): decode and prompt reading.
    - its defaults otherwise: batch 2048 / ubatch 512, flash attention auto, prompt cache on
      (`cache_prompt` per request, `--cache-ram` 8 GiB host cache), the GGUF's chat template
      (jinja), no web UI requests made.
    Ready when `/health` answers 200 (503 while the model loads). `binary`: default the cached
    build from llama_server.py (built on first use).
    """
    if binary is None:
        import llama_server as builder

        binary = str(builder.ensure())
    threads = threads or cores()
    cmd = [
        binary,
        "--model",
        model_path,
        "--alias",
        model_id,
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--parallel",
        str(slots),
        "--ctx-size",
        str(slots * ctx_per_slot),
        "--threads",
        str(threads),
        "--threads-batch",
        str(threads),
        "--cont-batching",
        "--no-webui",
        *(extra_args or []),
    ]
    with tempfile.TemporaryDirectory(prefix="hearth-bench-llama-server-") as tmp:
        with _running(
            "llama-server", cmd, model_id, "/health", timeout_s, log_dir or tmp, env
        ) as s:
            yield s
