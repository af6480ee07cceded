"""`hearth eval`: score a dataset of questions (answers and contexts given, or produced by Hearth's
own pipeline per strategy) with the LLM judge or its non-LLM fallback; JSON and an HTML report.

A thin shell over hearth.evaluate: reads and checks the dataset, wires the judge and pipelines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from hearth.cli.index_cmds import print_json
from hearth.errors import HearthError

err = Console(stderr=True, highlight=False)

STRATEGY_HELP = (
    "Comma-separated strategies to compare, each answering every row: hybrid, bm25, dense "
    "(and any other name the index's retriever accepts)."
)


def read_dataset(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL dataset; a malformed line or a row without "question" is an error
    naming the file and line."""
    if not path.exists():
        raise HearthError(f"dataset {path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HearthError(f"{path}, line {n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise HearthError(f"{path}, line {n}: a row must be a JSON object")
            q = row.get("question")
            if not isinstance(q, str) or not q.strip():
                raise HearthError(f'{path}, line {n}: the row has no "question" (a string)')
            contexts = row.get("contexts")
            if contexts is not None and (
                not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts)
            ):
                raise HearthError(f'{path}, line {n}: "contexts" must be a list of strings')
            for key in ("answer", "ground_truth"):
                if row.get(key) is not None and not isinstance(row[key], str):
                    raise HearthError(f'{path}, line {n}: "{key}" must be a string')
            gold = row.get("gold")
            if gold is not None and not isinstance(gold, list):
                raise HearthError(f'{path}, line {n}: "gold" must be a list of sources or ids')
            rows.append(row)
    if not rows:
        raise HearthError(f"dataset {path} has no rows")
    return rows


def evaluate(
    ctx: typer.Context,
    dataset: Path = typer.Option(..., "--dataset", help="JSONL rows: question, answer, contexts, "
                                 "ground_truth, gold (all but question optional).", metavar="FILE"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    report: Path | None = typer.Option(None, "--report", help="Write an HTML report here.",
                                       metavar="PATH"),
    strategies: str | None = typer.Option(None, "--strategies", help=STRATEGY_HELP),
    judge_model: str | None = typer.Option(
        None, "--judge", help="Judge model spec (default: the instruct_model setting)."
    ),
    no_llm_judge: bool = typer.Option(
        False, "--no-llm-judge", help="Score with the non-LLM fallback only (fast)."
    ),
    k: int | None = typer.Option(None, "-k", "--top-k", min=1, max=50,
                                 help="Passages to retrieve; also the k of hit@k, MRR@k, nDCG@k."),
    model: str | None = typer.Option(None, "--model", help="Chat model answering rows that "
                                     "have no answer (default: the model setting)."),
) -> None:  # fmt: skip
    """Evaluate answers: faithfulness, answer relevancy, context precision and recall (always a
    number in [0, 1]), plus hit@k / MRR / nDCG where rows give gold sources or chunk ids."""
    from hearth.llm.llamacpp import prefer_passive_openmp

    prefer_passive_openmp()
    from hearth.evaluate import FallbackJudge, HearthPipeline, LLMJudge, evaluate_rows

    rows = read_dataset(dataset)
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    app = ctx.obj
    s = app.settings()
    k = k or s.top_k
    needs_index = bool(names) or any(
        r.get("answer") is None or r.get("contexts") is None or r.get("gold") for r in rows
    )
    if needs_index:
        app.store(create=False)  # a clear error when there is no index
        embedder = app.embedder()
    else:
        from hearth.index.embedder import load_embedder

        embedder = load_embedder(s.embedder, backend=s.embed_backend)
    if names:
        for name in names:
            app.retriever(name)  # an unknown strategy fails before any work
    if no_llm_judge:
        judge = FallbackJudge(embedder)
    else:
        from hearth import llm

        spec = judge_model or s.instruct_model
        judge = LLMJudge(
            llm.load(spec, context_size=max(s.context_size or 0, 4096)),
            embedder,
            on_retry=lambda what, exc: err.print(f"[yellow]judge retry[/] {what}: {exc}"),
        )

    answer_model = None

    def pipeline_for(name: str | None):
        nonlocal answer_model
        from hearth.rag.answer import Answerer

        if answer_model is None:
            answer_model = app.chat_model(model)
        answerer = Answerer(
            app.retriever(name),
            answer_model,
            app.embedder(),
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            min_relevance=s.min_relevance,
        )
        return HearthPipeline(answerer, k=k)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("evaluating", total=len(rows) * len(names or [None]))

        def progress(done: int, total: int, row: dict[str, Any]) -> None:
            bar.update(task, completed=done)

        result = evaluate_rows(
            rows,
            judge=judge,
            pipeline_for=pipeline_for if needs_index else None,
            strategies=names,
            k=k,
            progress=progress,
        )
    if report is not None:
        from hearth.evaluate import write_report

        write_report(result, report)
        result["report"] = str(report)
    if as_json:
        print_json(result)
        return
    _print_summary(result)


def _print_summary(result: dict[str, Any]) -> None:
    from rich.table import Table

    out = Console(highlight=False)
    by = result.get("by_strategy") or {"all rows": result["mean"]}
    cols = list(next(iter(by.values())).keys())
    table = Table(title=f"mean over {len(result['rows'])} rows (judge: {result['judge']})")
    table.add_column("strategy")
    for c in cols:
        table.add_column(c, justify="right")
    for name, mean in by.items():
        table.add_row(str(name), *(f"{mean.get(c, 0.0):.3f}" for c in cols))
    out.print(table)
    if result.get("fallback_rows"):
        out.print(
            f"[yellow]{result['fallback_rows']} row(s) had a metric scored by the non-LLM "
            "fallback (the judge failed); --json shows which[/]"
        )
    if result.get("report"):
        out.print(f"report: {result['report']}")


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
