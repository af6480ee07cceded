"""`hearth extract`: pull a JSON object that fits a schema out of free text, with the model's
tokens masked by the schema (hearth.structured), then validated; prints the object."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hearth.cli.index_cmds import print_json
from hearth.errors import CapabilityError, HearthError

EXTRACT_INSTRUCTION = (
    "Extract the information in the user's text as JSON matching this JSON Schema. Use only "
    "what the text says.\nJSON Schema: {schema}"
)


def read_schema(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HearthError(f"--schema {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HearthError(
            f"--schema {path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def extract(
    text: str = typer.Argument(..., help="The text to extract from ('-' reads standard input)."),
    schema_file: Path = typer.Option(..., "--schema", help="A JSON Schema file.", metavar="FILE"),
    model: str | None = typer.Option(
        None,
        "--model",
        help="A model spec whose output can be constrained [default: the configured chat model].",
    ),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print the object on one line."),
) -> None:
    """Extract a JSON object that fits a JSON Schema from free text."""
    import sys

    from hearth import llm
    from hearth.config import Settings
    from hearth.structured import compile
    from hearth.types import Message

    schema = read_schema(schema_file)
    constraint = compile(schema)  # a keyword that cannot be enforced fails here, named
    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise HearthError("nothing to extract from: the text is empty")
    settings = Settings()
    chat_model = llm.load(model or settings.model, context_size=settings.context_size)
    if not getattr(chat_model, "supports_json_schema", False):
        raise CapabilityError(
            f"{chat_model.name} cannot constrain its output yet; use a local model "
            "(--model local:smollm2, local:qwen2.5-coder-0.5b or a .gguf file)"
        )
    messages = [
        Message("system", EXTRACT_INSTRUCTION.format(schema=json.dumps(schema))),
        Message("user", text),
    ]
    reply = chat_model.chat(messages, constraint=constraint, temperature=0, max_tokens=max_tokens)
    if reply.finish_reason == "length":
        raise HearthError(
            f"the object did not end within --max-tokens {max_tokens}; raise it "
            f"(cut at: {reply.text[-60:]!r})"
        )
    value = constraint.parse(reply.text)
    if as_json:
        print_json(value)
    else:
        typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def register(app: typer.Typer) -> None:
    app.command()(extract)
