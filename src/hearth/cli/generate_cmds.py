"""`hearth generate`: run a prompt through Hearth's own PyTorch engine with any decoding
strategy, stream the text (or print JSON), and draw the beam-search tree on request."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from hearth.cli.index_cmds import print_json
from hearth.engine.config import PRECISIONS
from hearth.errors import HearthError

STRATEGIES = ("greedy", "beam", "sample", "contrastive")


def check_flags(
    strategy: str,
    num_beams: int | None,
    temperature: float | None,
    top_k: int | None,
    top_p: float | None,
    min_p: float | None,
    seed: int | None,
    tree: Path | None,
) -> None:
    """Refuse flag combinations that would be silently ignored."""
    if strategy not in STRATEGIES:
        raise HearthError(f"--strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if num_beams is not None and strategy != "beam":
        raise HearthError("--num-beams needs --strategy beam")
    if tree is not None:
        if strategy != "beam":
            raise HearthError("--tree draws the beam-search tree: add --strategy beam")
        if tree.suffix.lower() not in (".png", ".html"):
            raise HearthError(f"--tree {tree}: use a .png or .html file name")
    sampling = {"--temperature": temperature, "--top-p": top_p, "--min-p": min_p, "--seed": seed}
    given = [flag for flag, value in sampling.items() if value is not None]
    if given and strategy != "sample":
        raise HearthError(f"{', '.join(given)} only apply to --strategy sample")
    if top_k is not None and strategy not in ("sample", "contrastive"):
        raise HearthError("--top-k only applies to --strategy sample or contrastive")


def generate(
    prompt: str = typer.Argument(..., help="The prompt text."),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt in the chat template."),
    strategy: str = typer.Option("greedy", "--strategy", help="greedy, beam, sample, contrastive."),
    num_beams: int | None = typer.Option(None, "--num-beams", min=1, help="Beams (default 4)."),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0),
    top_k: int | None = typer.Option(None, "--top-k", min=0),
    top_p: float | None = typer.Option(None, "--top-p"),
    min_p: float | None = typer.Option(None, "--min-p"),
    seed: int | None = typer.Option(None, "--seed", help="Makes sampling reproducible."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1),
    model: str | None = typer.Option(
        None,
        "--model",
        help="An embedded model (smollm2, qwen2.5-coder-0.5b; engine:NAME works too), a .gguf "
        "file or a safetensors folder [default: smollm2].",
    ),
    tree: Path | None = typer.Option(
        None, "--tree", help="Draw the beam-search tree to FILE.png or FILE.html."
    ),
    speculative: str = typer.Option(
        "none", "--speculative", help="none, prompt-lookup or draft (greedy/sample only)."
    ),
    draft_model: Path | None = typer.Option(
        None,
        "--draft-model",
        help="Draft .gguf sharing the tokenizer (default: the first "
        "quarter of the target's layers).",
    ),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="int8, bf16 or fp32 weights (fp32 equals transformers token for token) "
        "[default: the model's measured default: int8 for the embedded models, fp32 for other "
        "files; docs/engine.md].",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Generate text with Hearth's own engine (KV-cached), any decoding strategy."""
    check_flags(strategy, num_beams, temperature, top_k, top_p, min_p, seed, tree)
    if speculative not in ("none", "prompt-lookup", "draft"):
        raise HearthError(f"--speculative {speculative!r}: use none, prompt-lookup or draft")
    if speculative != "none" and strategy not in ("greedy", "sample"):
        raise HearthError("--speculative works with --strategy greedy or sample")
    if draft_model is not None and speculative != "draft":
        raise HearthError("--draft-model needs --speculative draft")
    if draft_model is not None and not draft_model.exists():
        raise HearthError(f"--draft-model {draft_model}: no such file or folder")
    model_path = resolve_model(model)
    if precision is not None and precision not in PRECISIONS:
        raise HearthError(f"--precision {precision!r}: use {', '.join(PRECISIONS)}")

    from hearth.engine.generator import Generator
    from hearth.engine.sampling import SamplingParams

    options = {
        "num_beams": num_beams,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "min_p": min_p,
        "seed": seed,
    }
    try:
        params = SamplingParams(
            strategy=strategy,
            max_tokens=max_tokens,
            early_stopping=True,
            **{k: v for k, v in options.items() if v is not None},
        )
    except ValueError as exc:
        raise HearthError(str(exc)) from None
    generator = Generator(model_path, precision=precision).warm_up()

    if as_json or strategy == "beam" or speculative != "none":
        report = generator.run(
            prompt, params, chat=chat, speculative=speculative, draft_model=draft_model
        )
        if tree is not None:
            from hearth.engine.tree_plot import plot_tree

            plot_tree(report.tree, tree, generator.decode)
        if as_json:
            print_json(report.as_json())
            return
        sys.stdout.write(report.text + "\n")
        _stats(len(report.token_ids), report.seconds, generator, tree)
        return

    start, count = time.perf_counter(), 0
    for delta in generator.stream(prompt, params, chat=chat):
        count += len(delta.token_ids)
        sys.stdout.write(delta.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    _stats(count, time.perf_counter() - start, generator, None)


def resolve_model(spec: str | None) -> Path | None:
    """--model as an embedded model's name (`qwen2.5-coder-0.5b`, `engine:qwen`...), verified
    by hash, or a path; None means the default model."""
    if spec is None:
        return None
    from hearth.llm import catalog, embedded_path

    name = spec.removeprefix("engine:").removeprefix("local:")
    if catalog.find(name) is not None:
        return embedded_path(name)
    path = Path(name).expanduser()
    if not path.exists():
        raise HearthError(
            f"--model {spec}: no such file or folder, and not an embedded model "
            f"({catalog.known_names()}); give a local .gguf file or safetensors folder"
        )
    return path


def _stats(tokens: int, seconds: float, generator, tree: Path | None) -> None:
    """Speed counted from the request (prompt reading included); the one-time load and
    quantization are said beside it, not left out."""
    drawn = f"; tree drawn to {tree}" if tree is not None else ""
    per_second = tokens / seconds if seconds > 0 else 0.0
    warm = generator.warmup_seconds
    what = "loading" if generator.precision == "fp32" else f"loading + {generator.precision}"
    sys.stderr.write(
        f"[{tokens} tokens in {seconds:.2f} s, {per_second:.1f} tokens/s; "
        f"{what} took {warm:.1f} s before ({tokens / (seconds + warm):.1f} tokens/s with it)"
        f"{drawn}]\n"
    )


def register(app: typer.Typer) -> None:
    app.command()(generate)
