"""What `hearth serve` was asked for: a small pydantic model that checks its values on creation.

API keys come from --api-key and HEARTH_API_KEYS; they never enter `hearth.config.Settings`, so
`hearth status` can print the settings without printing secrets.
"""

from __future__ import annotations

import ipaddress
import os

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hearth.errors import ConfigError

API_KEYS_ENV = "HEARTH_API_KEYS"
RAG_MODEL_ID = "hearth-rag"
GRAPH_MODEL_ID = "hearth-graph"  # hearth-rag with graph neighbours in the context
AGENT_MODEL_ID = "hearth-agent"  # the tool-using agent over the index


class ServeConfig(BaseModel):
    """Server knobs; `index`, models and the embedder come from hearth.config.Settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_keys: tuple[str, ...] = ()
    extra_models: tuple[str, ...] = ()  # served besides the settings' model and instruct_model
    # None: what the served models run well at once (16: llama.cpp and engine models batch)
    max_concurrency: int | None = Field(
        None, ge=1, le=128, description="generations running at once, per chat model"
    )
    queue_size: int = Field(64, ge=0, le=100_000, description="generations waiting; more: 429")
    prefix_cache: bool = True  # llama.cpp models reuse the KV of a prompt's cached beginning
    # host memory for prefixes pushed out of the batch slots; None: 10% of free memory, <= 1 GiB
    prefix_cache_mib: float | None = Field(None, ge=0, description="prefix cache in host memory")
    prompt_lookup: bool = True  # llama.cpp models draft greedy tokens from the prompt
    rate_limit: int | None = Field(None, ge=1, description="requests per minute per API key")
    max_upload_mb: float = Field(64.0, gt=0, description="largest request body, in MiB")
    graceful_timeout: float = Field(30.0, ge=0, description="seconds in-flight requests get")
    warm_up: bool = True  # load the chat model and embedder at startup, in the background
    # the database (SQLite file or postgresql:// URL) hearth-agent's read-only sql tool may read
    agent_db: str | None = None

    @field_validator("api_keys")
    @classmethod
    def _keys_are_usable(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))
        for key in cleaned:
            if any(ch.isspace() or ord(ch) < 33 for ch in key):
                raise ValueError("an API key contains whitespace or control characters")
        return cleaned

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def check_exposure(self) -> None:
        """Refuse to listen beyond this machine without any API key."""
        if not self.api_keys and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to listen on {self.host} without an API key: anyone who can reach "
                f"it could use the server. Pass --api-key KEY (or set {API_KEYS_ENV}=KEY1,KEY2), "
                "or listen on 127.0.0.1."
            )


def keys_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The comma-separated keys of HEARTH_API_KEYS (empty entries ignored)."""
    raw = (environ if environ is not None else os.environ).get(API_KEYS_ENV, "")
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1, "localhost" (a host name or a client address)."""
    if host is None:
        return False
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))
