"""`hearth serve`: the OpenAI-compatible HTTP API, hearth-rag and the web UI, on uvicorn."""

from __future__ import annotations

import json
import logging
import math
import os

import typer
from pydantic import ValidationError

from hearth.errors import ConfigError


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to listen on."),
    api_key: list[str] | None = typer.Option(
        None,
        "--api-key",
        help="Accept this Bearer key (repeatable; also HEARTH_API_KEYS=k1,k2). "
        "Without any key only this machine may connect.",
    ),
    model: list[str] | None = typer.Option(
        None, "--model", help="Also serve this chat model spec (repeatable)."
    ),
    max_concurrency: int | None = typer.Option(
        None,
        "--max-concurrency",
        min=1,
        help="Generations each chat model runs at once, sharing each decode step "
        "(continuous batching) [default: 16; 1 runs llama.cpp models one at a time].",
    ),
    queue_size: int = typer.Option(
        64, "--queue-size", min=0, help="Generations that may wait for a slot; more get 429."
    ),
    prefix_cache: bool = typer.Option(
        True,
        "--prefix-cache/--no-prefix-cache",
        help="Reuse the KV of a prompt's beginning computed for an earlier request "
        "(llama.cpp models; the engine always does).",
    ),
    prefix_cache_mib: float = typer.Option(
        None,
        "--prefix-cache-mib",
        min=0,
        help="Host memory for prompt prefixes pushed out of the batch slots, least recently "
        "used dropped first (llama.cpp models) [default: 10% of free memory, at most 1 GiB; "
        "0: none].",
    ),
    prompt_lookup: bool = typer.Option(
        True,
        "--prompt-lookup/--no-prompt-lookup",
        help="Draft greedy tokens from the prompt and verify them in the batch "
        "(llama.cpp models, temperature 0; output unchanged).",
    ),
    rate_limit: int | None = typer.Option(
        None, "--rate-limit", min=1, help="Requests per minute per API key (429 beyond)."
    ),
    max_upload_mb: float = typer.Option(
        64.0, "--max-upload-mb", min=0.001, help="Largest request body in MiB (413 beyond)."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Worker processes sharing the index (each loads the models)."
    ),
    graceful_timeout: float = typer.Option(
        30.0, "--graceful-timeout", min=0, help="Seconds in-flight requests get on shutdown."
    ),
    warm_up: bool = typer.Option(
        True, "--warm-up/--no-warm-up", help="Load the models at startup, in the background."
    ),
    agent_db: str | None = typer.Option(
        None,
        "--agent-db",
        metavar="FILE|URL",
        help="A SQLite file or postgresql:// URL that hearth-agent's sql tool may read "
        "(read-only).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
) -> None:
    """Serve the OpenAI-compatible API (plus hearth-rag, hearth-graph, hearth-agent and the
    web UI) over HTTP."""
    from hearth.llm.llamacpp import prefer_passive_openmp

    prefer_passive_openmp()  # before torch / llama.cpp load
    from hearth.serve.config import ServeConfig, keys_from_env

    settings = ctx.obj.settings()
    try:
        config = ServeConfig(
            host=host,
            port=port,
            api_keys=tuple(api_key or ()) + keys_from_env(),
            extra_models=tuple(model or ()),
            max_concurrency=max_concurrency,
            queue_size=queue_size,
            prefix_cache=prefix_cache,
            prefix_cache_mib=prefix_cache_mib,
            prompt_lookup=prompt_lookup,
            rate_limit=rate_limit,
            max_upload_mb=max_upload_mb,
            graceful_timeout=graceful_timeout,
            warm_up=warm_up,
            agent_db=_agent_db(agent_db),
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid server options ({problems})") from None
    config.check_exposure()
    level = log_level.lower()
    if level not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError(f"--log-level {log_level!r}: use debug, info, warning or error")
    logging.basicConfig(level=level.upper(), format="%(levelname)s:     %(name)s: %(message)s")

    import uvicorn

    common = dict(
        host=config.host,
        port=config.port,
        log_level=level,
        timeout_graceful_shutdown=math.ceil(config.graceful_timeout),
        access_log=level == "debug",
    )
    if workers > 1:
        from hearth.serve.app import CONFIG_ENV, build_state

        build_state(config, settings).index.close()  # a bad model or index fails here, once

        os.environ[CONFIG_ENV] = json.dumps(
            {"serve": config.model_dump(mode="json"), "settings": settings.model_dump(mode="json")}
        )
        uvicorn.run("hearth.serve.app:app_from_env", factory=True, workers=workers, **common)
        return
    from hearth.serve.app import create_app

    uvicorn.run(create_app(config, settings), **common)


def register(app: typer.Typer) -> None:
    app.command()(serve)


def _agent_db(db: str | None) -> str | None:
    """The --agent-db as an absolute path (workers may start elsewhere) or the URL; a file that
    does not exist is an error now, not at the first request."""
    from pathlib import Path

    from hearth.errors import ConfigError
    from hearth.index.stores import is_postgres_url

    if db is None or is_postgres_url(db):
        return db
    path = Path(db).expanduser()
    if not path.is_file():
        raise ConfigError(f"--agent-db {db}: no such database file")
    return str(path.resolve())
