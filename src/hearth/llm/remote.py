"""What the two remote backends (OpenAI-compatible, Anthropic) share: parameter checks (tools
included), the tokenizer-free token estimate, stream() on top of stream_events(), retried calls.

Hand-written glue; the HTTP work is done by the official `openai` and `anthropic` SDKs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from hearth.errors import BackendError, RemoteModelNotFoundError
from hearth.llm.presets import PLACEHOLDER_KEY, Endpoint
from hearth.llm.retry import Failure, GaveUp, RetryPolicy, call_with_retries
from hearth.llm.tool_calls import tool_request
from hearth.structured import as_constraint
from hearth.types import Message, StreamEnd, Usage, generation_kwargs, text_deltas

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT = 120.0  # seconds per attempt; for streams, the longest wait between chunks
DEFAULT_CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class RemoteParams:
    """Validated sampling parameters. temperature/top_p left as None are not sent, so the
    server's defaults apply; unknown names are a TypeError, as for the local backend."""

    max_tokens: int = 256
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # a hearth.structured Constraint (or what compile() takes): forwarded as the server's own
    # structured-output request where the backend has one
    constraint: Any = None
    # OpenAI function definitions, checked by hearth.llm.tool_calls (each backend sends them in
    # its server's shape) and "auto" | "none" | "required" | {"type": "function", ...}
    tools: Any = None
    tool_choice: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "constraint", as_constraint(self.constraint))
        if self.tools or self.tool_choice not in (None, "auto", "none"):
            # checked even under "none": the definitions still travel (earlier calls refer to them)
            choice = None if self.tool_choice == "none" else self.tool_choice
            checked = tool_request(self.tools, choice)  # ValueError naming a bad definition
            object.__setattr__(self, "tools", checked.tools)
        else:
            object.__setattr__(self, "tools", None)
            object.__setattr__(self, "tool_choice", None)  # nothing to choose from
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be within 0..2, got {self.temperature}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be within (0, 1], got {self.top_p}")

    @classmethod
    def from_kwargs(cls, **params: Any) -> RemoteParams:
        given = generation_kwargs(cls, params)
        if "max_tokens" in given:
            given["max_tokens"] = int(given["max_tokens"])
        return cls(**given)


# ASCII words count one token per 5 letters, every digit group of up to 3, punctuation mark and
# non-ASCII character one token each. Checked against SmolLM2's 49k BPE vocabulary on English
# prose and Python: within about 10%, slightly above (the safe side when budgeting a prompt).
# CJK text is underestimated (about 0.6x): real tokenizers split those characters into bytes.
_PIECES = re.compile(r"[A-Za-z]+|\d{1,3}|[^\sA-Za-z\d]")
WORD_CHARS_PER_TOKEN = 5
TOKENS_PER_MESSAGE = 4  # role name and the template's separators around each message
TOKENS_REPLY_PRIMER = 3  # the template's opening of the assistant's turn


def estimate_text_tokens(text: str) -> int:
    """Tokens in `text` without a tokenizer (see the note above for how close it is)."""
    return sum(
        math.ceil(len(p) / WORD_CHARS_PER_TOKEN) if p[0].isascii() and p[0].isalpha() else 1
        for p in _PIECES.findall(text)
    )


def estimate_prompt_tokens(messages: list[Message]) -> int:
    """Prompt tokens of a chat request, estimated: text plus template overhead per message."""
    return TOKENS_REPLY_PRIMER + sum(
        TOKENS_PER_MESSAGE + estimate_text_tokens(m.content) for m in messages
    )


class RemoteChatModel:
    """Base of the HTTP backends. Cheap to build (no network, no SDK import); the client is
    made on first use. Subclasses supply `_make_client`, `_classify` (exception -> retry
    decision), `_error` (exception -> HearthError) and the chat / stream calls."""

    can_stream = True
    # Set by the backends that forward tools / JSON Schema outputs natively (hearth.generate
    # validates whatever comes back)
    supports_tools = False
    supports_json_schema = False

    def __init__(
        self,
        endpoint: Endpoint,
        context_size: int,
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        self.endpoint = endpoint
        self.name = name or f"{endpoint.preset.prefix}:{endpoint.model}"
        self.model = endpoint.model
        self.base_url = endpoint.base_url
        self.context_size = context_size
        self.timeout = float(timeout)
        retry = retry or RetryPolicy()
        if max_retries is not None:
            retry = dataclasses.replace(retry, max_retries=max_retries)
        self.retry = retry
        self.last_finish_reason: str | None = None  # of the latest stream()
        self.last_usage_estimated = False  # True when the server sent no usage and we estimated
        self.last_retries = 0  # retries the latest request needed
        self._client: Any = None
        self._lock = threading.Lock()

    # -- subclass hooks ------------------------------------------------------------------------

    def _make_client(self) -> Any:
        raise NotImplementedError

    def _classify(self, exc: Exception) -> Failure | None:
        raise NotImplementedError

    def _error(self, exc: Exception, retries: int) -> Exception:
        raise NotImplementedError

    # -- shared machinery ----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def close(self) -> None:
        """Release the HTTP connection pool (a later request opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _call(self, attempt: Callable[[], T], what: str) -> T:
        """One request with the retry policy; failures come out as Hearth errors."""
        try:
            result, self.last_retries = call_with_retries(
                attempt, self.retry, self._classify, f"{what} {self.name} at {self.base_url}"
            )
        except GaveUp as gave_up:
            self.last_retries = gave_up.retries
            raise self._error(gave_up.error, gave_up.retries) from gave_up.error
        return result

    def _usage(
        self, messages: list[Message], text: str, prompt: int | None, completion: int | None
    ) -> Usage:
        """Usage from the server's numbers; estimated (and flagged) when it sent none."""
        self.last_usage_estimated = prompt is None or completion is None
        if self.last_usage_estimated:
            log.info("%s sent no token usage; using Hearth's estimate", self.base_url)
        return Usage(
            estimate_prompt_tokens(messages) if prompt is None else prompt,
            estimate_text_tokens(text) if completion is None else completion,
        )

    # -- clear errors (the subclasses map their SDK's exceptions onto these) -------------------

    def _after(self, retries: int) -> str:
        return f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""

    def _where(self) -> str:
        """How the URL was chosen and how to change it."""
        ep = self.endpoint
        how = f"{ep.preset.base_url_env} or " if ep.preset.base_url_env else ""
        source = {"spec": "the model spec", "preset": f"the {ep.preset.prefix} preset"}.get(
            ep.url_from, ep.url_from
        )
        return (
            f"(URL from {source}; change it with {how}"
            f"{ep.preset.prefix}:{ep.model}@http://HOST:PORT/v1)"
        )

    def status_error(self, status: int, detail: str, url: str, retries: int) -> BackendError:
        """The Hearth error for an HTTP error status, with what to do about it."""
        ep = self.endpoint
        said = f"{url} answered {status}: {detail}" if detail else f"{url} answered {status}"
        if status in (401, 403):
            key = ep.key_env or "the API key"
            given = "was not set" if ep.api_key == PLACEHOLDER_KEY else "was refused"
            return BackendError(
                f"{self.name}: {said}. The API key {given}: set {key}=... to a valid key "
                f"for {ep.preset.title}",
                status=status,
                url=url,
            )
        if status == 404 and (self.model in detail or "model" in detail.lower()):
            return RemoteModelNotFoundError(
                f"{self.name}: {said}. The server has no model {self.model!r}; "
                f"{ep.preset.model_hint}",
                status=status,
                url=url,
            )
        if status == 404:
            return BackendError(
                f"{self.name}: {said}. Is the base URL right? {self._where()}",
                status=status,
                url=url,
            )
        if status == 429:
            return BackendError(
                f"{self.name}: rate limited{self._after(retries)}: {said}. Wait and try again, "
                "or allow more retries (load(..., max_retries=N))",
                status=status,
                url=url,
            )
        return BackendError(f"{self.name}: {said}{self._after(retries)}", status=status, url=url)

    def timeout_error(self, url: str, retries: int) -> BackendError:
        return BackendError(
            f"{self.name}: no answer from {url} within {self.timeout:g}s{self._after(retries)}; "
            "check the server or raise the timeout (load(..., timeout=SECONDS))",
            url=url,
        )

    def connection_error(self, url: str, retries: int, cause: object) -> BackendError:
        return BackendError(
            f"{self.name}: cannot reach {url}{self._after(retries)} ({cause}). Is the server "
            f"running? {self._where()}",
            url=url,
        )

    def count_tokens(self, messages: list[Message]) -> int:
        """An ESTIMATE of the prompt tokens (no tokenizer, no request; see
        estimate_text_tokens): remote tokenizers are not available offline. Use the usage the
        server reports after a call for exact numbers."""
        return estimate_prompt_tokens(messages)

    def stream(self, messages: list[Message], **params: Any) -> Iterator[str]:
        return text_deltas(self.stream_events(messages, **params), self._note_end)

    def _note_end(self, end: StreamEnd) -> None:
        self.last_finish_reason = end.finish_reason

    def stream_events(self, messages: list[Message], **params: Any) -> Iterator[str | StreamEnd]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, base_url={self.base_url!r})"
