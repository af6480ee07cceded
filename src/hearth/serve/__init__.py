"""Hearth over HTTP: OpenAI-compatible routes, `hearth-rag` with citations, document routes,
the web UI, metrics. FastAPI + uvicorn do the HTTP; `create_app` wires Hearth's parts in.

Nothing heavy is imported here: `hearth serve --help` stays instant.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from hearth.serve.app import create_app

        return create_app
    if name == "ServeConfig":
        from hearth.serve.config import ServeConfig

        return ServeConfig
    raise AttributeError(name)
