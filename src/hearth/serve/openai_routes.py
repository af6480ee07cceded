"""OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings.

Any OpenAI client works against them (the `openai` SDK is what the tests use). Generation runs
in a worker thread behind the fair scheduler (hearth.serve.runner); `hearth-rag` is one more
model id whose answers carry their verified citations. Chat models call `tools` in OpenAI's
shape (hearth.serve.tools), their arguments held to each tool's schema.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from hearth.serve import schemas as s
from hearth.serve.agent import agent_events, agent_task, agent_tools
from hearth.serve.config import AGENT_MODEL_ID, GRAPH_MODEL_ID, RAG_MODEL_ID
from hearth.serve.errors import APIError, from_exception, model_not_found, unsupported
from hearth.serve.generation import Delta, Finish, Item, chat_events
from hearth.serve.rag import check_graph_request, rag_events, split_conversation
from hearth.serve.response_format import constraint_for
from hearth.serve.runner import CLIENT_CLOSED, ClientGone, EventStreamResponse, Generation
from hearth.serve.state import ServerState
from hearth.serve.tools import call_deltas, check_combination, message_calls, tool_params
from hearth.types import Message, ToolCall, Usage

router = APIRouter(prefix="/v1", tags=["openai"])

GENERATION_ERRORS = s.error_responses(400, 401, 403, 404, 413, 422, 429, 500)
STREAM_DESCRIPTION = (
    "JSON (`stream: false`) or server-sent events (`stream: true`): one `data: {chunk}` line "
    "per chunk, then `data: [DONE]`."
)


def _state(request: Request) -> ServerState:
    return request.app.state.hearth


def _caller(request: Request) -> str:
    caller = getattr(request.state, "caller", None)
    return caller.id if caller is not None else "anonymous"


def _resolve(state: ServerState, model_id: str, wanted: tuple[str, ...], route: str) -> str:
    kind = state.models.kind(model_id)
    if kind is None:
        raise model_not_found(model_id, state.models.ids())
    if kind not in wanted:
        other = "/v1/embeddings" if kind == "embedding" else "/v1/chat/completions"
        raise APIError(
            400,
            f"{model_id!r} is a {kind} model and cannot be used with {route}; use {other}",
            code="model_not_supported",
            param="model",
        )
    return kind


# --------------------------------------------------------------------------- models


@router.get("/models", response_model=s.ModelList, responses=s.error_responses(401, 403, 429, 500))
async def list_models(request: Request) -> JSONResponse:
    """The served models: chat model specs, `hearth-rag` and the embedder."""
    return JSONResponse({"object": "list", "data": _state(request).models.cards()})


@router.get(
    "/models/{model_id:path}",
    response_model=s.ModelCard,
    responses=s.error_responses(401, 403, 404, 429, 500),
)
async def get_model(request: Request, model_id: str = PathParam(max_length=1000)) -> JSONResponse:
    """One served model."""
    state = _state(request)
    for card in state.models.cards():
        if card["id"] == model_id:
            return JSONResponse(card)
    raise model_not_found(model_id, state.models.ids())


# --------------------------------------------------------------------------- parameters


def _check_sampling(body: s.SamplingFields, rag: bool, model_id: str = RAG_MODEL_ID) -> None:
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise unsupported(name, "is not supported by Hearth's models; leave it at 0")
    if body.logit_bias:
        raise unsupported("logit_bias", "is not supported by Hearth's models")
    if rag:
        if body.stop:
            raise unsupported("stop", f"{model_id} does not take stop sequences")
        if body.seed is not None:
            raise unsupported("seed", f"{model_id} does not take a seed")
        if body.top_p not in (None, 1.0):
            raise unsupported("top_p", f"{model_id} does not take top_p")
    elif body.hearth is not None:
        raise unsupported(
            "hearth", f"these options apply to models {RAG_MODEL_ID!r} and {GRAPH_MODEL_ID!r}"
        )


def _check_chat_extras(body: s.ChatCompletionRequest) -> None:
    if body.logprobs or body.top_logprobs:
        raise unsupported("logprobs", "log probabilities are not returned")


def _check_completion_extras(body: s.CompletionRequest) -> None:
    if body.echo:
        raise unsupported("echo", "is not supported")
    if body.suffix:
        raise unsupported("suffix", "is not supported")
    if body.best_of not in (None, 1):
        raise unsupported("best_of", "is not supported; use n")
    if body.logprobs:
        raise unsupported("logprobs", "log probabilities are not returned")


def _generation_params(body: s.SamplingFields, max_tokens: int | None, state: ServerState):
    """Keyword arguments for ChatModel.stream_events (only what the client set, plus the
    server's defaults for max_tokens and temperature)."""
    settings = state.settings
    params: dict[str, Any] = {
        "max_tokens": max_tokens or settings.max_tokens,
        "temperature": settings.temperature if body.temperature is None else body.temperature,
    }
    if body.top_p is not None:
        if body.top_p == 0:
            params["temperature"] = 0.0  # only the most likely token: greedy
        else:
            params["top_p"] = body.top_p
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    stops = [stop for stop in stops if stop]
    if stops:
        params["stop"] = stops
    if body.seed is not None:
        params["seed"] = body.seed
    return params


def _to_messages(messages: list[s.ChatMessage]) -> list[Message]:
    """Hearth's messages; an assistant turn keeps its tool calls, a tool turn its call id (400
    without one, or for a call whose arguments are not JSON)."""
    out = []
    for i, m in enumerate(messages):
        role = "system" if m.role == "developer" else m.role
        if m.role == "tool" and not m.tool_call_id:
            raise APIError(400, f"messages[{i}]: a tool message needs the tool_call_id it "
                           "answers", param=f"messages[{i}].tool_call_id")  # fmt: skip
        for j, c in enumerate(m.tool_calls or []):
            try:
                json.loads(c.function.arguments or "{}")
            except ValueError:
                raise APIError(400, f"messages[{i}].tool_calls[{j}].function.arguments is not "
                               "JSON", param=f"messages[{i}].tool_calls[{j}].function.arguments",
                               ) from None  # fmt: skip
        calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or []]
        name = m.name if m.role == "tool" else None
        out.append(Message(role, m.text(), calls, m.tool_call_id, name))  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------- running


class _Collected:
    """A finished non-streaming generation: text and Finish per choice."""

    def __init__(self, n: int) -> None:
        self.texts: list[list[str]] = [[] for _ in range(n)]
        self.finishes: dict[int, Finish] = {}

    def usage(self, shared_prompt: bool) -> dict[str, Any]:
        finishes = [self.finishes[i] for i in sorted(self.finishes)]
        return _usage_json([f.usage for f in finishes], shared_prompt)


def _usage_json(usages: list[Usage], shared_prompt: bool) -> dict[str, Any]:
    if shared_prompt:
        prompt = usages[0].prompt_tokens if usages else 0
        cached = usages[0].cached_tokens if usages else 0
    else:
        prompt = sum(u.prompt_tokens for u in usages)
        cached = sum(u.cached_tokens for u in usages)
    completion = sum(u.completion_tokens for u in usages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


async def _run(
    request: Request,
    model_id: str,
    make_items: Callable[[], Iterator[Item]],
    choices: int,
    shared_prompt: bool,
    stream_frames: Callable[[Generation, Item], AsyncIterator[bytes]] | None,
    respond: Callable[[_Collected], dict[str, Any]],
) -> Response:
    """Admit, generate, and answer: JSON from `respond`, or SSE frames from `stream_frames`."""
    state = _state(request)
    generation = Generation(state, request.receive, _caller(request), model_id)
    try:
        pump = await generation.start(make_items)
    except ClientGone:  # left while waiting for a slot: nobody to answer
        return Response(status_code=CLIENT_CLOSED)
    handed_over = False
    try:
        if stream_frames is not None:
            try:
                first = await pump.__anext__()  # errors before the first byte get a real status
            except StopAsyncIteration:
                return Response(status_code=CLIENT_CLOSED)
            except Exception as exc:
                return from_exception(exc).response()
            handed_over = True
            return EventStreamResponse(stream_frames(generation, first), generation)
        collected = _Collected(choices)
        try:
            async for item in pump:
                if isinstance(item, Delta):
                    generation.note_first_token()
                    collected.texts[item.index].append(item.text)
                else:
                    collected.finishes[item.index] = item
                    generation.note_usage(item.usage.prompt_tokens, item.usage.completion_tokens)
        except Exception as exc:
            return from_exception(exc).response()
        if pump.cancelled:
            return Response(status_code=CLIENT_CLOSED)
        if len(collected.finishes) < choices:  # a backend that never said it was done
            missing = RuntimeError(f"{model_id}: the generation ended without a StreamEnd")
            return from_exception(missing).response()
        return JSONResponse(respond(collected))
    finally:
        if not handed_over:
            generation.close()


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


async def _items(first: Item, pump: AsyncIterator[Item]) -> AsyncIterator[Item]:
    yield first
    async for item in pump:
        yield item


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------- chat


@router.post(
    "/chat/completions",
    response_model=s.ChatCompletion,
    responses={
        200: {
            "description": STREAM_DESCRIPTION,
            "content": {
                "text/event-stream": {
                    "schema": {"$ref": "#/components/schemas/ChatCompletionChunk"}
                }
            },
        },
        **GENERATION_ERRORS,
    },
)
async def chat_completions(body: s.ChatCompletionRequest, request: Request) -> Response:
    """Chat with a served model, or ask the index with model `hearth-rag` (answers carry
    `message.citations`; when streaming, the final chunk carries `delta.citations` and
    `delta.answer`)."""
    state = _state(request)
    kind = _resolve(state, body.model, ("chat", "rag", "agent"), "/v1/chat/completions")
    agent = kind == "agent"
    rag = kind == "rag" or agent  # answers from the index: text, verified sources
    _check_sampling(body, rag, body.model)
    _check_chat_extras(body)
    if body.agent is not None and not agent:
        raise unsupported("agent", f"these options apply to model {AGENT_MODEL_ID!r} only")
    if agent and body.hearth is not None:
        raise unsupported("hearth", f"model {AGENT_MODEL_ID!r} takes its options in `agent`")
    if agent and body.n != 1:
        raise unsupported("n", f"model {AGENT_MODEL_ID!r} gives one answer per request")
    params = _generation_params(body, body.max_completion_tokens or body.max_tokens, state)
    model = state.models.chat(body.model)
    n = body.n
    if rag and body.response_format and body.response_format.get("type", "text") != "text":
        raise unsupported("response_format", f"model {body.model!r} answers in text")
    if rag and body.tools and body.tool_choice != "none":
        raise unsupported(
            "tools", f"model {body.model!r} answers from the index with its own tools"
        )
    if not rag:
        params.update(tool_params(body.tools, body.tool_choice, model))
        check_combination(body.response_format, params)
        constraint = constraint_for(body.response_format, model)
        if constraint is not None:
            params["constraint"] = constraint
    one_call = body.parallel_tool_calls is False
    if agent:
        task = agent_task(body.messages)
        agent_tools(state.index, body.agent)  # a bad tool name is a 400 before any work

        def make_items() -> Iterator[Item]:
            return agent_events(
                state.index, model, task, body.agent, max_tokens=params["max_tokens"]
            )

    elif rag:
        question, history = split_conversation(body.messages)
        check_graph_request(state.index, body.model, body.hearth)
        graph = body.model == GRAPH_MODEL_ID

        def make_items() -> Iterator[Item]:
            return rag_events(
                state.index,
                model,
                question,
                history,
                body.hearth,
                n=n,
                max_tokens=params["max_tokens"],
                temperature=params["temperature"],
                graph=graph,
            )

    else:
        messages = _to_messages(body.messages)

        def make_items() -> Iterator[Item]:
            return chat_events(model, messages, params, n)

    completion_id, created = _new_id("chatcmpl"), int(time.time())
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def respond(collected: _Collected) -> dict[str, Any]:
        choices = []
        for i in range(n):
            finish = collected.finishes[i]
            message: dict[str, Any] = {"role": "assistant", "content": "".join(collected.texts[i])}
            calls = _calls(finish, one_call)
            if calls:
                message["content"] = message["content"] or None  # OpenAI: null beside calls
                message["tool_calls"] = message_calls(calls)
            if rag:
                message["content"] = finish.answer or ""
                message["citations"] = finish.citations or []
            if agent:
                message["steps"], message["agent"] = finish.steps or [], finish.agent
            choices.append(
                {"index": i, "message": message, "finish_reason": finish.reason, "logprobs": None}
            )
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": choices,
            "usage": collected.usage(shared_prompt=not rag),
        }

    async def frames(generation: Generation, first: Item) -> AsyncIterator[bytes]:
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
        base["model"] = body.model

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
            obj = {**base, "choices": choices}
            if include_usage:
                obj["usage"] = usage
            return _frame(obj)

        started: set[int] = set()
        usages: list[Usage] = []
        try:
            async for item in _items(first, generation.pump):
                if item.index not in started:
                    started.add(item.index)
                    delta = {"role": "assistant", "content": ""}
                    yield chunk([{"index": item.index, "delta": delta, "finish_reason": None}])
                if isinstance(item, Delta):
                    generation.note_first_token()
                    delta = {"content": item.text}
                    yield chunk([{"index": item.index, "delta": delta, "finish_reason": None}])
                    continue
                generation.note_usage(item.usage.prompt_tokens, item.usage.completion_tokens)
                usages.append(item.usage)
                for calls in call_deltas(_calls(item, one_call)):
                    delta = {"tool_calls": calls}
                    yield chunk([{"index": item.index, "delta": delta, "finish_reason": None}])
                delta = {}
                if rag:
                    delta = {"citations": item.citations or [], "answer": item.answer or ""}
                if agent:
                    delta |= {"steps": item.steps or [], "agent": item.agent}
                yield chunk([{"index": item.index, "delta": delta, "finish_reason": item.reason}])
        except Exception as exc:
            yield _frame(from_exception(exc).body())
            yield DONE
            return
        if include_usage and len(usages) == n:
            yield chunk([], _usage_json(usages, shared_prompt=not rag))
        yield DONE

    return await _run(
        request, body.model, make_items, n, not rag, frames if body.stream else None, respond
    )


def _calls(finish: Finish, one_call: bool) -> list[ToolCall]:
    """The calls a choice made (only the first with parallel_tool_calls false)."""
    return finish.tool_calls[:1] if one_call else finish.tool_calls


# --------------------------------------------------------------------------- completions


@router.post(
    "/completions",
    response_model=s.Completion,
    responses={
        200: {
            "description": STREAM_DESCRIPTION,
            "content": {
                "text/event-stream": {"schema": {"$ref": "#/components/schemas/Completion"}}
            },
        },
        **GENERATION_ERRORS,
    },
)
async def completions(body: s.CompletionRequest, request: Request) -> Response:
    """Complete each prompt. Chat models read the prompt as one user message (through the
    model's chat template); `hearth-rag` reads it as a question and adds `citations`."""
    state = _state(request)
    kind = _resolve(state, body.model, ("chat", "rag"), "/v1/completions")
    rag = kind == "rag"
    _check_sampling(body, rag, body.model)
    _check_completion_extras(body)
    params = _generation_params(body, body.max_tokens, state)
    model = state.models.chat(body.model)
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if rag and any(not p.strip() for p in prompts):
        raise APIError(400, f"{body.model} needs a non-empty question", param="prompt")
    n = body.n
    total = n * len(prompts)
    graph = body.model == GRAPH_MODEL_ID
    if rag:
        check_graph_request(state.index, body.model, body.hearth)

    def make_items() -> Iterator[Item]:
        for p, prompt in enumerate(prompts):
            if rag:
                items = rag_events(
                    state.index,
                    model,
                    prompt.strip(),
                    [],
                    body.hearth,
                    n=n,
                    max_tokens=params["max_tokens"],
                    temperature=params["temperature"],
                    graph=graph,
                )
            else:
                items = chat_events(model, [Message("user", prompt)], params, n)
            try:
                for item in items:
                    item.index += p * n
                    yield item
            finally:
                items.close()

    completion_id, created = _new_id("cmpl"), int(time.time())
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def choice(index: int, text: str, finish: Finish | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": index,
            "text": text,
            "finish_reason": finish.reason if finish else None,
            "logprobs": None,
        }
        if rag and finish is not None:
            out["citations"] = finish.citations or []
        return out

    def respond(collected: _Collected) -> dict[str, Any]:
        choices = []
        for i in range(total):
            finish = collected.finishes[i]
            text = (finish.answer or "") if rag else "".join(collected.texts[i])
            choices.append(choice(i, text, finish))
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": choices,
            "usage": collected.usage(shared_prompt=False),
        }

    async def frames(generation: Generation, first: Item) -> AsyncIterator[bytes]:
        base = {"id": completion_id, "object": "text_completion", "created": created}
        base["model"] = body.model
        usages: list[Usage] = []
        try:
            async for item in _items(first, generation.pump):
                if isinstance(item, Delta):
                    generation.note_first_token()
                    yield _frame({**base, "choices": [choice(item.index, item.text, None)]})
                    continue
                generation.note_usage(item.usage.prompt_tokens, item.usage.completion_tokens)
                usages.append(item.usage)
                final = choice(item.index, "", item)
                if rag:
                    final["answer"] = item.answer or ""
                yield _frame({**base, "choices": [final]})
        except Exception as exc:
            yield _frame(from_exception(exc).body())
            yield DONE
            return
        if include_usage and len(usages) == total:
            yield _frame({**base, "choices": [], "usage": _usage_json(usages, False)})
        yield DONE

    return await _run(
        request, body.model, make_items, total, False, frames if body.stream else None, respond
    )


# --------------------------------------------------------------------------- embeddings


@router.post(
    "/embeddings",
    response_model=s.EmbeddingList,
    responses=s.error_responses(400, 401, 403, 404, 413, 422, 429, 500),
)
async def embeddings(body: s.EmbeddingRequest, request: Request) -> Response:
    """Vectors from the index's embedder (L2-normalised float32; `encoding_format: base64`
    sends the little-endian float32 bytes)."""
    state = _state(request)
    _resolve(state, body.model, ("embedding",), "/v1/embeddings")
    dim = state.models.embedder_dim
    if body.dimensions is not None and body.dimensions != dim:
        raise unsupported("dimensions", f"{body.model} only makes {dim}-d vectors")
    texts = [body.input] if isinstance(body.input, str) else body.input
    vectors, tokens = await run_in_threadpool(_embed, state, texts)
    if body.encoding_format == "base64":
        rows = [base64.b64encode(v.astype("<f4", copy=False).tobytes()).decode() for v in vectors]
    else:
        rows = vectors.tolist()
    payload = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)],
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


def _embed(state: ServerState, texts: list[str]) -> tuple[np.ndarray, int]:
    embedder = state.models.embedder()
    vectors = embedder.embed(texts)
    counter = getattr(embedder, "count_tokens_batch", None)
    counts = counter(texts) if counter else [embedder.count_tokens(t) for t in texts]
    return vectors, int(sum(counts))
