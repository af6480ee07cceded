"""Wiring for CLI commands: builds settings, store, embedder, retriever and model on demand.

Every object is created lazily so a command pays only for what it uses.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from hearth.config import Settings, load_settings
from hearth.errors import HearthError

err_console = Console(stderr=True)


@dataclass
class AppContext:
    index: Path | None = None
    embedder_name: str | None = None
    store_url: str | None = None
    _settings: Settings | None = None
    _store: Any = None
    _embedder: Any = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(
                index=self.index, embedder=self.embedder_name, store=self.store_url
            )
        return self._settings

    def store(self, create: bool = True):
        from hearth.index.stores import is_postgres_url, open_store

        if self._store is None:
            s = self.settings()
            path = s.db_path
            if not is_postgres_url(s.store):
                if not create and not path.exists():
                    raise HearthError(
                        f"no index at {path.parent}: run `hearth ingest PATH` first "
                        "(or point at another index with --index DIR / HEARTH_INDEX)"
                    )
                path.parent.mkdir(parents=True, exist_ok=True)
            self._store = open_store(s.store, path)
        return self._store

    def embedder(self):
        from hearth.index.embedder import load_embedder

        if self._embedder is None:
            s = self.settings()
            self._embedder = load_embedder(
                s.embedder, backend=s.embed_backend, batch_size=s.embed_batch_size
            )
            self.store().check_embedder(self._embedder.name, self._embedder.dim)
        return self._embedder

    def retriever(
        self,
        kind: str | None = None,
        *,
        strategy: str | None = None,
        rerank: str | None = None,
        mmr: float | None = None,
        compress: bool | None = None,
    ):
        """The retrieval pipeline the flags and settings name. `kind` may be a retriever
        ("hybrid", "bm25", "dense") or a strategy ("multi-query", "hyde", ...), so lists like
        `hearth eval --strategies bm25,hyde` mix both."""
        from hearth.rag.pipeline import STRATEGY_NAMES, build_pipeline

        s = self.settings()
        if kind in STRATEGY_NAMES and strategy is None:
            kind, strategy = None, kind
        return build_pipeline(
            self.store(),
            self.embedder(),
            retriever=kind or s.retriever,
            strategy=strategy or s.strategy,
            rerank=rerank or s.rerank,
            mmr=s.mmr if mmr is None else mmr,
            compress=s.compress if compress is None else compress,
            model=lambda: self.chat_model(s.instruct_model),
        )

    def chat_model(self, spec: str | None = None):
        from hearth import llm

        s = self.settings()
        return llm.load(spec or s.model, context_size=s.context_size)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def run_guarded(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run the app. Hearth's own errors print as one clean line, not a traceback; with --json
    every failure (a bad flag included) prints one `{"error": ...}` object on stdout instead,
    and the exit status is non-zero either way."""
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    try:
        code = app(args=args, standalone_mode=False, prog_name="hearth")
    except HearthError as exc:
        _fail(str(exc), 1, as_json)
    except Exception as exc:  # noqa: BLE001 - sorted below
        if _is_usage_error(exc):  # bad flags, missing arguments (click's or typer's own)
            if not as_json:
                exc.show()  # type: ignore[attr-defined]
                sys.exit(exc.exit_code)  # type: ignore[attr-defined]
            _fail(exc.format_message(), exc.exit_code, as_json)  # type: ignore[attr-defined]
        if type(exc).__name__ == "Abort":
            _fail("aborted", 130, as_json)
        if not as_json:  # a bug: the traceback helps
            raise
        import traceback

        traceback.print_exc()  # and --json still gets its one object
        _fail(f"internal error ({type(exc).__name__}: {exc})", 1, as_json)
    if isinstance(code, int) and code:
        sys.exit(code)


def _is_usage_error(exc: Exception) -> bool:
    """click.ClickException and typer's vendored copy (typer >= 0.20) look alike; neither is
    importable from the other, so recognise them by what they do."""
    return all(hasattr(exc, a) for a in ("format_message", "exit_code", "show"))


def _fail(message: str, code: int, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"error": message}, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    else:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code or 1)
