"""The sandbox tools run in: each call in its own thread under a time limit, watched by a
Python audit hook that refuses a shell, file writes, reads outside the index and Python's own
files, and the network (unless the run grants them); plus a screen for openly hostile tasks.

The real guarantee is that no tool can do these things (none is given a shell, a file or a
socket); the hook catches a tool (a user's plugin) that tries anyway. Hand-written on the
stdlib (`sys.addaudithook`, PEP 578); it is no defence against native code (ctypes loads are
refused, but a C extension already loaded can do anything).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from hearth.errors import HearthError


class SandboxError(HearthError, PermissionError):
    """A tool tried something its run was not given (a shell, a write, a read, the network)."""


_SHELL = {
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "os.startfile", "pty.spawn", "os.kill", "os.killpg", "ctypes.dlopen",
    "sys.addaudithook", "sys.settrace", "sys.setprofile", "os.putenv", "os.unsetenv",
}  # fmt: skip
_WRITES = {
    "os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown", "os.symlink",
    "os.link", "os.truncate", "os.utime", "os.chflags", "os.lchmod", "os.mkfifo", "os.mknod",
    "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move",
    "shutil.chown", "shutil.make_archive", "shutil.unpack_archive",
}  # fmt: skip
_NETWORK = {
    "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg",
    "urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect",
    "imaplib.open", "poplib.connect", "telnetlib.Telnet.open", "webbrowser.open",
}  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# always readable: what a lazy import or the embedder reads
_SYSTEM_READS = ("/proc/self", "/sys/devices/system/cpu", "/sys/fs/cgroup", "/dev/null",
                 "/dev/urandom", "/proc/cpuinfo", "/proc/meminfo")  # fmt: skip


@dataclass(frozen=True)
class Policy:
    """What one tool call may do beyond computing."""

    network: bool = False
    writes: bool = False
    read_roots: tuple[str, ...] = ()  # absolute paths (folders or files) it may read


_state = threading.local()
_installed = False
_install_lock = threading.Lock()


def python_roots() -> tuple[str, ...]:
    """Where Python and the installed packages live (readable, so tools can import)."""
    import hearth

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(hearth.__file__).parent)}
    roots.update(p for p in sys.path if "-packages" in p)
    hf = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    roots.add(hf)
    return tuple(os.path.realpath(r) for r in roots if r)


def _within(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _path_of(raw: Any) -> str | None:
    if isinstance(raw, bytes):
        raw = os.fsdecode(raw)
    if not isinstance(raw, str):
        return None  # a file descriptor: opened before (and checked then)
    if raw.startswith("file:"):  # sqlite URIs
        raw = unquote(raw[5:].split("?", 1)[0])
    if raw in ("", ":memory:"):
        return None
    return os.path.realpath(raw)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    policy: Policy | None = getattr(_state, "policy", None)
    if policy is None:
        return
    if event in _SHELL:
        raise SandboxError(f"sandbox: {event} is not allowed (tools get no shell or processes)")
    if event in _WRITES and not policy.writes:
        raise SandboxError(f"sandbox: {event} is not allowed (tools may not change files)")
    if event in _NETWORK and not policy.network:
        raise SandboxError(f"sandbox: {event} is not allowed (this run has no network)")
    if event == "open":
        path, mode, flags = (list(args) + [None, None, None])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing and not policy.writes:
            raise SandboxError(f"sandbox: writing {path!r} is not allowed (tools may not write)")
        if not writing:
            _check_read(path, policy)
    elif event == "sqlite3.connect":
        _check_read(args[0] if args else None, policy)
    elif event in ("os.listdir", "os.scandir", "glob.glob"):
        _check_read(args[0] if args else None, policy)


def _check_read(raw: Any, policy: Policy) -> None:
    path = _path_of(raw)
    if path is None or _within(path, policy.read_roots) or _within(path, _SYSTEM_READS):
        return
    raise SandboxError(f"sandbox: reading {raw!r} is not allowed (tools read only the index)")


def install() -> None:
    """Add the audit hook once per process (it cannot be removed; it only acts in threads
    running a tool, and costs one attribute lookup elsewhere)."""
    global _installed
    with _install_lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None
    finished: bool = False


def run_sandboxed(fn: Callable[[], Any], policy: Policy, timeout_s: float) -> Outcome:
    """Run `fn()` in a daemon thread under `policy` for at most `timeout_s` seconds. A call
    still running then is abandoned (Python threads cannot be killed) and stays sandboxed."""
    install()
    outcome = Outcome()

    def target() -> None:
        _state.policy = policy
        try:
            outcome.value = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the model as an observation
            outcome.error = exc
        finally:
            outcome.finished = True

    thread = threading.Thread(target=target, name="hearth-agent-tool", daemon=True)
    thread.start()
    thread.join(max(timeout_s, 0.0))
    return outcome


# -- a screen for openly hostile tasks ------------------------------------------------------

_HOSTILE = [
    (r"\brm\s+-[a-z]*[rf]|\bsudo\b|\bchmod\s|\bmkfs\b|:\(\)\s*\{|\bdd\s+if=|\bshutdown\b",
     "runs a shell command"),
    (r"\b(bash|sh|zsh|powershell|cmd\.exe|terminal|shell)\b.{0,40}\b(run|execute|command)|"
     r"\b(run|execute)\b.{0,40}\b(shell|bash|command line|terminal)\b", "asks for a shell"),
    (r"/etc/|/root/|~/\.|\.ssh\b|\bid_rsa\b|/proc/|\bpasswd\b|\bshadow\b|\.env\b",
     "reads system or secret files"),
    (r"\b(import|__import__|exec|eval|subprocess|os\.system|popen)\b\s*[\(\s'\"]?\s*"
     r"(os|sys|subprocess|shutil|socket|\()", "runs code"),
    (r"\b(write|create|save|delete|remove|overwrite|modify)\b.{0,30}\b(file|files|disk|folder)\b",
     "changes files"),
    (r"\b(fetch|download|curl|wget|visit|open|browse|get|post)\b.{0,40}(https?://|ftp://|www\.)|"
     r"(https?://|ftp://)", "uses the network"),
]  # fmt: skip
_COMPILED = [(re.compile(p, re.IGNORECASE | re.DOTALL), why) for p, why in _HOSTILE]


def screen_task(
    task: str, *, allow_network: bool = False, allow_writes: bool = False
) -> str | None:
    """A refusal when `task` plainly asks the agent to break out of its sandbox (a shell,
    system files, running code, changing files, the network it was not given); else None."""
    for pattern, why in _COMPILED:
        if why == "uses the network" and allow_network:
            continue
        if why == "changes files" and allow_writes:
            continue
        if pattern.search(task):
            return (
                f"I can't do that: the task {why}, and this agent has no such capability. "
                "Its tools only search the index, do arithmetic and query the given database "
                "read-only."
            )
    return None
