"""The FastAPI app: wires settings, models, index, fair scheduler, limits and metrics together.

`create_app(config, settings)` builds one app; `app_from_env()` is the factory uvicorn's
`--workers N` imports in every worker process (it reads the config `hearth serve` left in
HEARTH_SERVE_CONFIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from hearth.config import Settings, load_settings
from hearth.serve import schemas as s
from hearth.serve.auth import AccessMiddleware
from hearth.serve.config import AGENT_MODEL_ID, GRAPH_MODEL_ID, RAG_MODEL_ID, ServeConfig
from hearth.serve.errors import install_error_handlers
from hearth.serve.limits import BodyLimitMiddleware, RateLimiter
from hearth.serve.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from hearth.serve.models import ServedModels
from hearth.serve.scheduler import ModelSchedulers
from hearth.serve.state import ServedIndex, ServerState

log = logging.getLogger("hearth.serve")

STATIC_DIR = Path(__file__).parent / "static"
CONFIG_ENV = "HEARTH_SERVE_CONFIG"  # JSON handed from `hearth serve --workers N` to workers


def build_state(config: ServeConfig, settings: Settings) -> ServerState:
    """Models, index, queue and metrics for one app (cheap: no weights are loaded here)."""
    from hearth.index.embedder import load_embedder
    from hearth.llm import default_concurrency

    embedder = load_embedder(
        settings.embedder, backend=settings.embed_backend, batch_size=settings.embed_batch_size
    )
    from hearth.llm.llamacpp_batch import BatchConfig

    def slots_of(spec: str) -> int:
        return config.max_concurrency or default_concurrency(spec)

    def batching(spec: str) -> BatchConfig | None:
        n = slots_of(spec)
        if n == 1:
            return None
        host = config.prefix_cache_mib
        return BatchConfig(
            slots=n,
            prefix_cache=config.prefix_cache,
            speculative=config.prompt_lookup,
            host_cache_bytes=None if host is None else int(host * 2**20),
        )

    models = ServedModels(
        [settings.model, settings.instruct_model, *config.extra_models],
        embedder,
        context_size=settings.context_size,
        batching=batching,
        agent_spec=settings.instruct_model,
    )
    index = ServedIndex(settings, models, agent_db=config.agent_db)
    slots = {spec: slots_of(spec) for spec in models.chat_specs()}
    aliases = {
        name: models.spec_of(name) for name in (RAG_MODEL_ID, GRAPH_MODEL_ID, AGENT_MODEL_ID)
    }
    scheduler = ModelSchedulers(slots, config.queue_size, aliases=aliases)
    metrics = Metrics(lambda: scheduler.queue_depth, lambda: scheduler.running, models.batch_stats)
    return ServerState(config, settings, models, index, scheduler, metrics)


def create_app(config: ServeConfig | None = None, settings: Settings | None = None) -> FastAPI:
    """The Hearth HTTP app for `config` (server knobs) and `settings` (index, models)."""
    config = config or ServeConfig()
    settings = settings or load_settings()
    state = build_state(config, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        access = f"{len(config.api_keys)} API key(s)" if config.api_keys else "this machine only"
        slots = ", ".join(f"{spec} {n}" for spec, n in state.scheduler.slots.items())
        log.info(
            "serving %s from the index at %s (%s; generation slots: %s; queue %d per model)",
            ", ".join(state.models.ids()),
            state.index.root.resolve(),
            access,
            slots,
            config.queue_size,
        )
        if config.warm_up:
            state.warm_up_thread = threading.Thread(
                target=state.models.warm_up, name="hearth-warm-up", daemon=True
            )
            state.warm_up_thread.start()
        else:
            state.models.ready.set()
        yield
        # uvicorn has let in-flight requests finish; wait for generations they left running.
        if not await state.scheduler.wait_idle(timeout=max(config.graceful_timeout, 1.0)):
            log.warning("shutting down with generations still running")
        await asyncio.to_thread(state.index.close)
        await asyncio.to_thread(state.models.close)

    app = FastAPI(
        title="Hearth",
        summary="OpenAI-compatible API and RAG over your documents, served locally.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.hearth = state
    install_error_handlers(app)

    from hearth.serve import hearth_routes, openai_routes

    app.include_router(openai_routes.router)
    app.include_router(hearth_routes.router)
    _add_service_routes(app, state)

    # Outermost first: count everything, then authenticate, then cap the body.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    limiter = RateLimiter(config.rate_limit) if config.rate_limit else None
    app.add_middleware(AccessMiddleware, keys=config.api_keys, limiter=limiter)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, routes=lambda: app.routes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _add_service_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health", response_model=s.Health, tags=["service"])
    async def health() -> JSONResponse:
        """Liveness (no key needed): always 200 while the process serves requests."""
        return JSONResponse(
            {
                "status": "ok",
                "ready": state.models.ready.is_set(),
                "models": state.models.ids(),
                "queue_depth": state.scheduler.queue_depth,
                "generations_running": state.scheduler.running,
            }
        )

    @app.get(
        "/metrics",
        tags=["service"],
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **s.error_responses(401, 403),
        },
    )
    async def metrics() -> Response:
        """Prometheus text format: requests, latencies, tokens, queue depth, load."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    if (STATIC_DIR / "index.html").is_file():

        @app.get("/", include_in_schema=False)
        async def web_ui() -> FileResponse:
            return FileResponse(STATIC_DIR / "index.html")

        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus bearer auth on the /v1 routes."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=app.routes,
    )
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the server's API keys (--api-key / HEARTH_API_KEYS)",
    }
    # Streamed chunks are not any route's response model: list their schema explicitly.
    chunk = s.ChatCompletionChunk.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = chunk.pop("$defs", {})
    schema["components"]["schemas"].update(defs)
    schema["components"]["schemas"]["ChatCompletionChunk"] = chunk
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{"bearerAuth": []}]
    app.openapi_schema = schema
    return schema


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hearth")
    except Exception:
        return "0"


def app_from_env() -> FastAPI:
    """The app for one uvicorn worker, configured by `hearth serve --workers N`."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start workers with `hearth serve --workers`")
    data = json.loads(raw)
    config = ServeConfig(**data["serve"])
    settings = load_settings(**data["settings"])
    return create_app(config, settings)
