"""Real-world JSON Schemas: how many hearth.structured compiles and generates valid output for,
and what compiling and masking cost, next to outlines-core and XGrammar in the same run.

The schemas (deduplicated, each with its source):
  * bfcl: the function-parameter schemas of the Berkeley Function-Calling Leaderboard
    (`bfcl-eval` on PyPI, downloaded once with pip), turned into JSON Schema the way BFCL's own
    OpenAI handler does (its GORILLA_TO_OPENAPI type map: `dict` -> object, `float` -> number...);
  * openai-sdk / anthropic-sdk: the JSON Schema of every pydantic model in `openai.types` and
    `anthropic.types` (the API's OpenAPI components as the SDKs generate them);
  * package: schema files shipped in installed packages (jsonschema's metaschemas, setuptools'
    and schemathesis' config schemas).
Formats are annotations (as hearth compiles by default); XGrammar runs with strict_mode=False
and outlines-core with its default whitespace, so every engine takes what the schema allows.

Measured on the SmolLM2-135M vocabulary (49,152 tokens; the same token bytes for every engine,
read from the GGUF with `gguf`; hearth's tokenizer is the production one, read by llguidance
from llama.cpp's vocabulary):
  * compile: hearth on every schema (compiled / refused with a ConstraintError / other error);
    the three engines on a seeded sample, engine order rotated schema by schema, each engine in
    a worker process of its own (a peer that runs past --timeout is killed, counted as a
    timeout, and its worker restarted);
    hearth's compile time is `compile(schema)` + the first `matcher(tokenizer)`, outlines-core's
    `build_regex_from_schema` + `Index(regex, vocabulary)`, XGrammar's `compile_json_schema`
    (1 thread, no cache);
  * valid output: `hearth.generate` on --gen-model (Qwen2.5-Coder-0.5B, the embedded instruction
    model, by default) answers under each constraint for a sample of compiled schemas, retries
    included; the answer must be JSON that jsonschema validates;
  * mask time: SmolLM2 answers again under the schema with `additionalProperties: false` added
    where it was open (outlines-core writes no unnamed properties, and refuses them); each engine
    builds its mask from the schema itself, is driven through those answer tokens and times the
    mask before each token (hearth: `Matcher.allowed()`, the bool mask it applies; llguidance:
    the bitmask under it; outlines-core: `Guide.write_mask_into`; XGrammar:
    `fill_next_token_bitmask`), engines rotated per schema, --rounds times; every engine must
    allow each token and EOS.
    The table compares the masks of the answers every engine took to the end (the same tokens
    for all); an engine that refuses a valid answer's token is listed, and its masks up to
    there are reported apart ("all_timed").

    python benchmarks/structured_speed.py               # ~15 minutes on 2 busy cores
    python benchmarks/structured_speed.py --reuse       # masks again, same compiles/answers
    python benchmarks/structured_speed.py --peer-sample 40 --gen-sample 10   # a quick run

Claims (from the structured-outputs issue): >= 76% of the schemas compile and generate valid
output (llguidance's figure on 10k real-world schemas); hearth mask p50 <= 50 us and no slower
than outlines-core; hearth compile p50 <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from common import cache_dir, markdown_table, percentile, verdict, write_result

BFCL = "bfcl-eval==2026.3.23"
ENGINES = ("hearth", "outlines-core", "xgrammar")
MASKERS = ("hearth", "llguidance", "outlines-core", "xgrammar")
SEPARATORS = (", ", ": ")


# ------------------------------------------------------------------------------ the schemas


def _bfcl_wheel() -> Path:
    home = cache_dir() / "bfcl"
    found = sorted(home.glob("bfcl_eval-*.whl"))
    if found:
        return found[-1]
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", BFCL, "--no-deps", "-d", str(home), "-q"],
        check=True,
    )
    return sorted(home.glob("bfcl_eval-*.whl"))[-1]


def _gorilla_to_json_schema(node: Any, mapping: dict[str, str]) -> Any:
    """BFCL's type names made JSON Schema's (as BFCL's OpenAI handler does, but all the way
    down); unknown types become string, as there."""
    if isinstance(node, list):
        return [_gorilla_to_json_schema(v, mapping) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, str):
            out[key] = mapping.get(value, "string")
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: _gorilla_to_json_schema(v, mapping) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            out[key] = _gorilla_to_json_schema(value, mapping)
        else:
            out[key] = value
    return out


def bfcl_schemas() -> list[dict]:
    wheel = _bfcl_wheel()
    found = []
    with zipfile.ZipFile(wheel) as zf:
        scope: dict[str, Any] = {}
        exec(zf.read("bfcl_eval/constants/type_mappings.py").decode(), scope)
        mapping = scope["GORILLA_TO_OPENAPI"]
        names = sorted(
            n
            for n in zf.namelist()
            if n.startswith("bfcl_eval/data/")
            and n.endswith(".json")
            and "/possible_answer/" not in n
            and "/unused_datasets/" not in n
            and "memory_prereq" not in n
        )
        for name in names:
            text = zf.read(name).decode()
            try:
                entries = [json.loads(line) for line in text.splitlines() if line.strip()]
            except json.JSONDecodeError:  # a whole-file JSON, not JSON lines
                whole = json.loads(text)
                entries = whole if isinstance(whole, list) else []
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                functions = entry.get("function") or ([entry] if "parameters" in entry else [])
                question = ""
                with_q = entry.get("question")
                if with_q and isinstance(with_q[0], list) and with_q[0]:
                    question = str(with_q[0][-1].get("content", ""))
                for fn in functions:
                    if not isinstance(fn, dict) or not isinstance(fn.get("parameters"), dict):
                        continue
                    schema = _gorilla_to_json_schema(fn["parameters"], mapping)
                    prompt = question or f"Call {fn.get('name')}: {fn.get('description', '')}"
                    found.append(
                        {"source": "bfcl", "where": f"{Path(name).name}:{fn.get('name')}",
                         "schema": schema, "prompt": prompt[:500]}
                    )  # fmt: skip
    return found


def sdk_schemas() -> list[dict]:
    import importlib
    import inspect
    import pkgutil
    import warnings

    import pydantic

    found = []
    for package in ("openai.types", "anthropic.types"):
        try:
            root = importlib.import_module(package)
        except ImportError:
            continue
        source = package.split(".")[0] + "-sdk"
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            try:
                module = importlib.import_module(info.name)
            except Exception:
                continue
            for name, obj in vars(module).items():
                if not (
                    inspect.isclass(obj)
                    and issubclass(obj, pydantic.BaseModel)
                    and obj.__module__ == module.__name__
                ):
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        schema = obj.model_json_schema()
                except Exception:
                    continue
                found.append(
                    {"source": source, "where": f"{info.name}.{name}", "schema": schema,
                     "prompt": f"Write an example {name} object as JSON."}
                )  # fmt: skip
    return found


def package_schemas() -> list[dict]:
    import site

    found = []
    for root in map(Path, site.getsitepackages()):
        for path in sorted(root.rglob("*.json")):
            if path.stat().st_size > 2_000_000:
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            marker = str(data.get("$schema", "")) if isinstance(data, dict) else ""
            if "json-schema.org" not in marker:
                continue  # CycloneDX SBOMs etc. name a $schema but are not schemas
            where = str(path.relative_to(root))
            found.append(
                {"source": "package", "where": where, "schema": data,
                 "prompt": f"Write an example document for {data.get('title') or where}, as JSON."}
            )  # fmt: skip
    return found


def gather(refresh: bool) -> list[dict]:
    """All schemas, deduplicated (first source wins), cached in the bench cache folder."""
    cached = cache_dir() / "structured_schemas.json"
    if cached.is_file() and not refresh:
        return json.loads(cached.read_text())
    seen: set[str] = set()
    schemas = []
    for item in [*bfcl_schemas(), *sdk_schemas(), *package_schemas()]:
        key = json.dumps(item["schema"], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        item["id"] = len(schemas)
        schemas.append(item)
    cached.write_text(json.dumps(schemas))
    return schemas


# ------------------------------------------------------------------------------ the vocabulary


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed (the GGUF stores `gpt2` tokens in it)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def gguf_vocabulary(path: Path) -> tuple[list[bytes], int, list[int]]:
    """(token bytes by id, EOS id, control token ids) from a `gpt2`-tokenizer GGUF."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = reader.fields
    if bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() != "gpt2":
        raise SystemExit(f"{path}: only byte-level BPE (gpt2) vocabularies are read here")
    tokens = fields["tokenizer.ggml.tokens"]
    types = fields["tokenizer.ggml.token_type"]
    decoder = _byte_decoder()
    token_bytes, control = [], []
    for i, (t, k) in enumerate(zip(tokens.data, types.data, strict=True)):
        text = bytes(tokens.parts[t]).decode("utf-8")
        if int(types.parts[k][0]) != 1:  # control / user-defined: no text to match
            control.append(i)
            token_bytes.append(text.encode())
        else:
            token_bytes.append(bytes(decoder[c] for c in text))
    eos = int(fields["tokenizer.ggml.eos_token_id"].parts[-1][0])
    return token_bytes, eos, control


# ------------------------------------------------------------------------------ the worker


class Engines:
    """One engine on the vocabulary, in a worker process of its own (a peer stopped for
    running too long takes only its own process down)."""

    def __init__(
        self, engine: str, gguf_path: str, token_bytes: list[bytes], eos: int, control: list[int]
    ):
        import numpy as np

        self.np = np
        self.eos = eos
        self.vocab_size = len(token_bytes)
        skip = set(control)
        if engine == "hearth":
            import llama_cpp

            from hearth.structured.tokenizers import llama_tokenizer

            self._llama = llama_cpp.Llama(gguf_path, vocab_only=True, verbose=False)
            self.ll_tokenizer = llama_tokenizer(self._llama._model.vocab)
        elif engine == "outlines-core":
            import outlines_core

            by_bytes: dict[bytes, list[int]] = {}
            for i, b in enumerate(token_bytes):
                if i not in skip:
                    by_bytes.setdefault(b, []).append(i)
            self.oc_vocab = outlines_core.Vocabulary(eos, by_bytes)
        else:
            import xgrammar

            info = xgrammar.TokenizerInfo(
                [b"" if i in skip else b for i, b in enumerate(token_bytes)],
                xgrammar.VocabType.RAW,
                vocab_size=self.vocab_size,
                stop_token_ids=[eos],
            )
            self.xgr_compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self._compile(engine, {"type": "object", "properties": {"a": {"type": "integer"}}})

    def tokenize(self, text: str) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _compile(self, engine: str, schema: Any) -> Any:
        if engine == "hearth":
            from hearth.structured import compile as compile_constraint
            from hearth.structured import constraint as hc

            hc._cache.clear()  # each schema's first compile is what is timed
            return compile_constraint(schema).matcher(self.ll_tokenizer)
        if engine == "outlines-core":
            import outlines_core
            from outlines_core.json_schema import build_regex_from_schema

            regex = build_regex_from_schema(json.dumps(schema))
            return outlines_core.Index(regex, self.oc_vocab)
        return self.xgr_compiler.compile_json_schema(
            json.dumps(schema), any_whitespace=False, separators=SEPARATORS, strict_mode=False
        )

    def compile(self, engine: str, schema: Any) -> tuple[str, float, str]:
        """(status, ms, detail): status compiled | refused | error."""
        from hearth.errors import ConstraintError

        started = time.perf_counter()
        try:
            self._compile(engine, schema)
        except ConstraintError as exc:
            return "refused", 0.0, exc.keyword or str(exc)[:120]
        except Exception as exc:
            status = "error" if engine == "hearth" else "refused"
            return status, 0.0, f"{type(exc).__name__}: {str(exc)[:160]}"
        return "compiled", 1000 * (time.perf_counter() - started), ""

    def mask(self, engine: str, schema: Any, tokens: list[int]) -> dict:
        """Microseconds to compute the mask before each token; whether each token and then
        EOS were allowed."""
        np = self.np
        clock = time.perf_counter_ns
        us: list[float] = []
        rejected_at = None
        compiled = self._compile("hearth" if engine == "llguidance" else engine, schema)
        if engine in ("hearth", "llguidance"):
            matcher = compiled  # a fresh hearth Matcher

            def step(token: int | None) -> bool:
                if engine == "hearth":
                    t0 = clock()
                    allowed = matcher.allowed()
                    us.append((clock() - t0) / 1000)
                    ok = bool(allowed[self.eos if token is None else token])
                else:
                    t0 = clock()
                    words = matcher._inner.compute_bitmask()
                    us.append((clock() - t0) / 1000)
                    t = self.eos if token is None else token
                    ok = bool(words[t // 8] >> (t % 8) & 1)
                return ok and (token is None or matcher.advance(token))

        elif engine == "outlines-core":
            import outlines_core

            guide = outlines_core.Guide(compiled)
            bits = np.zeros((self.vocab_size + 31) // 32, dtype=np.int32)

            def step(token: int | None) -> bool:
                t0 = clock()
                guide.write_mask_into(bits.ctypes.data, bits.size, 4)
                us.append((clock() - t0) / 1000)
                t = self.eos if token is None else token
                if not (int(bits[t // 32]) >> (t % 32)) & 1:
                    return False
                if token is not None:
                    guide.advance(token, return_tokens=False)
                return True

        else:
            import xgrammar

            matcher = xgrammar.GrammarMatcher(compiled)
            bits = xgrammar.allocate_token_bitmask(1, self.vocab_size)

            def step(token: int | None) -> bool:
                t0 = clock()
                matcher.fill_next_token_bitmask(bits)
                us.append((clock() - t0) / 1000)
                t = self.eos if token is None else token
                if not (int(bits[0, t // 32]) >> (t % 32)) & 1:
                    return False
                return token is None or matcher.accept_token(token)

        for i, token in enumerate([*tokens, None]):
            if not step(token):
                rejected_at = i
                break
        return {"us": us, "rejected_at": rejected_at, "tokens": len(tokens)}


def _worker(conn, args) -> None:
    engines = Engines(*args)
    conn.send(("ready", None))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        op, params = msg
        try:
            conn.send(("ok", getattr(engines, op)(*params)))
        except Exception as exc:
            conn.send(("exc", f"{type(exc).__name__}: {exc}"))


class Worker:
    """An engine in a child process, so a peer stuck on one schema can be stopped."""

    def __init__(self, args: tuple) -> None:
        self.args = args
        self.proc = None
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.args), daemon=True)
        self.proc.start()
        if not self.conn.poll(600):
            raise SystemExit("the engine worker did not start in 10 minutes")
        self.conn.recv()

    def call(self, op: str, *params: Any, timeout: float) -> Any:
        self.conn.send((op, params))
        if self.conn.poll(timeout):
            try:
                kind, value = self.conn.recv()
            except EOFError:
                kind, value = "died", None
        else:
            kind, value = "timeout", None
        if kind in ("timeout", "died"):
            self.proc.kill()
            self.proc.join()
            self.restarts += 1
            self._start()
            raise TimeoutError(kind)
        if kind == "exc":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(10)


# ------------------------------------------------------------------------------ the run


def _p(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def compile_all(
    workers: dict[str, Worker], schemas: list[dict], sample: set[int], timeout: float
) -> dict:
    """Every schema through hearth; the sample through all three, order rotated per schema."""
    from rich.progress import track

    outcome: dict[str, dict[int, tuple[str, float, str]]] = {e: {} for e in ENGINES}
    for n, item in enumerate(track(schemas, description="compiling", transient=True)):
        engines = ENGINES if item["id"] in sample else ("hearth",)
        shift = n % len(engines)
        for engine in engines[shift:] + engines[:shift]:
            try:
                result = workers[engine].call(
                    "compile", engine, item["schema"], timeout=timeout if engine != "hearth" else 60
                )
            except TimeoutError as exc:
                result = ("timeout", 0.0, f"{exc} after {timeout:.0f} s")
            except RuntimeError as exc:
                result = ("error", 0.0, str(exc)[:160])
            outcome[engine][item["id"]] = tuple(result)
    return outcome


def closed(node: Any) -> Any:
    """`node` with `additionalProperties: false` wherever an object schema leaves it open: its
    instances are instances of `node` too, and outlines-core (which never writes properties
    a schema does not name) takes them."""
    if isinstance(node, list):
        return [closed(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: closed(v) for k, v in node.items()}
    if "properties" in out and out.get("additionalProperties", True) in (True, {}):
        out["additionalProperties"] = False
    return out


def generate_valid(
    schemas: list[dict], ids: list[int], max_tokens: int, close: bool = False
) -> dict[int, dict]:
    """SmolLM2 (llama.cpp, greedy) under hearth's constraint for each schema (`close`: its
    closed() form): its answer and whether jsonschema validates it against the schema."""
    from rich.progress import track

    from hearth import llm
    from hearth.structured import compile as compile_constraint
    from hearth.structured import validation_error
    from hearth.types import Message

    model = llm.load("local:smollm2", context_size=4096)
    by_id = {s["id"]: s for s in schemas}
    out = {}
    for i in track(ids, description="generating", transient=True):
        item = by_id[i]
        shown = json.dumps(item["schema"])
        if len(shown) > 1500:  # the constraint holds all of it; the prompt shows a part
            shown = shown[:1500] + " ..."
        messages = [
            Message("system", f"Answer with JSON only, matching this JSON Schema:\n{shown}"),
            Message("user", item["prompt"]),
        ]
        started = time.perf_counter()
        try:
            result = model.chat(
                messages,
                constraint=compile_constraint(closed(item["schema"]) if close else item["schema"]),
                max_tokens=max_tokens,
                temperature=0.0,
            )
        except Exception as exc:
            out[i] = {"status": "error", "detail": f"{type(exc).__name__}: {str(exc)[:160]}"}
            continue
        seconds = time.perf_counter() - started
        text = result.text
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            status = "truncated" if result.finish_reason == "length" else "not JSON"
            out[i] = {"status": status, "tail": text[-80:], "seconds": seconds}
            continue
        problem = validation_error(item["schema"], value)
        out[i] = {
            "status": "invalid" if problem else "valid",
            "detail": problem,
            "text": text,
            "seconds": seconds,
            "tokens": result.usage.completion_tokens,
        }
    return out


def generate_checked(
    schemas: list[dict], ids: list[int], max_tokens: int, spec: str
) -> dict[int, dict]:
    """The product's path for each schema: `hearth.generate` on `spec` (the schema shown, tokens
    masked, an answer cut off at max_tokens asked again sampled, an invalid one sent back with
    its error, two retries). Valid when it returns (checked again here), else why not."""
    from rich.progress import track

    from hearth import generate, llm
    from hearth.errors import HearthError, StructuredOutputError
    from hearth.structured import validation_error

    model = llm.load(spec, context_size=8192)
    by_id = {s["id"]: s for s in schemas}
    out = {}
    for i in track(ids, description=f"generating ({spec})", transient=True):
        item = by_id[i]
        started = time.perf_counter()
        try:
            value = generate(model, item["prompt"], schema=item["schema"], max_tokens=max_tokens)
        except StructuredOutputError as exc:
            cut = "cut off at max_tokens" in str(exc)
            out[i] = {"status": "truncated" if cut else "invalid", "detail": str(exc)[:200],
                      "seconds": time.perf_counter() - started}  # fmt: skip
            continue
        except HearthError as exc:  # e.g. a schema too long for the context
            out[i] = {"status": "error", "detail": f"{type(exc).__name__}: {str(exc)[:160]}"}
            continue
        problem = validation_error(item["schema"], value)
        out[i] = {
            "status": "invalid" if problem else "valid",
            "detail": problem,
            "text": json.dumps(value)[:400],
            "seconds": time.perf_counter() - started,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--peer-sample",
        type=int,
        default=200,
        help="schemas compiled by all three engines (seeded sample; 0 = all)",
    )
    parser.add_argument(
        "--gen-sample",
        type=int,
        default=30,
        help="compiled schemas SmolLM2 generates for (validity, mask tokens)",
    )
    parser.add_argument("--gen-max-tokens", type=int, default=192)
    parser.add_argument(
        "--gen-model",
        default="local:qwen2.5-coder-0.5b",
        help="the model whose answers decide validity, through hearth.generate (the embedded "
        "instruction model by default; local:smollm2 for the small one)",
    )
    parser.add_argument(
        "--regenerate", action="store_true", help="with --reuse: generate the answers again"
    )
    parser.add_argument(
        "--mask-sample",
        type=int,
        default=30,
        help="valid answers every engine is driven through for mask times",
    )
    parser.add_argument("--rounds", type=int, default=2, help="mask passes per engine")
    parser.add_argument("--limit", type=int, default=0, help="use only this many schemas")
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="seconds a peer may take on one schema (then killed)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refresh", action="store_true", help="gather the schemas again")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the last run's compile outcomes and answers (same settings): masks only",
    )
    args = parser.parse_args()  # fmt: skip

    from hearth import llm

    started = time.perf_counter()
    schemas = gather(args.refresh)
    rng = random.Random(args.seed)
    if args.limit:
        schemas = rng.sample(schemas, min(args.limit, len(schemas)))
    by_source = Counter(s["source"] for s in schemas)
    print(f"{len(schemas)} distinct schemas: {dict(by_source)}", flush=True)

    gguf_path = llm.smollm2_path()
    vocab = gguf_vocabulary(gguf_path)
    workers = {e: Worker((e, str(gguf_path), *vocab)) for e in ENGINES}
    workers["llguidance"] = workers["hearth"]
    ids = [s["id"] for s in schemas]
    sample = set(ids if not args.peer_sample else rng.sample(ids, min(args.peer_sample, len(ids))))
    state_path = cache_dir() / "structured_speed_state.json"
    state_key = [args.limit, args.peer_sample, args.seed, args.timeout, len(schemas)]
    state = json.loads(state_path.read_text()) if args.reuse and state_path.is_file() else {}
    if state.get("key") == state_key:  # --reuse: compile outcomes and answers of the last run
        outcome = {e: {int(i): tuple(r) for i, r in v.items()} for e, v in state["outcome"].items()}
        print("reusing the compile outcomes and answers of the last run", flush=True)
    else:
        state = {}
        outcome = compile_all(workers, schemas, sample, args.timeout)
    by_id = {s["id"]: s for s in schemas}

    # -- compile coverage and time
    compile_rows, per_engine = [], {}
    for engine in ENGINES:
        for scope, chosen in (("all", set(ids)), ("sample", sample)):
            got = {i: r for i, r in outcome[engine].items() if i in chosen}
            if not got or (engine != "hearth" and scope == "all"):
                continue
            status = Counter(r[0] for r in got.values())
            ms = [r[1] for r in got.values() if r[0] == "compiled"]
            reasons = Counter(r[2] for r in got.values() if r[0] != "compiled")
            per_engine[f"{engine}/{scope}"] = {
                "schemas": len(got),
                "status": dict(status),
                "compile_share": status["compiled"] / len(got),
                "compile_ms_p50": _p(ms, 50),
                "compile_ms_p90": _p(ms, 90),
                "compile_ms_p99": _p(ms, 99),
                "top_reasons": dict(reasons.most_common(15)),
            }
            compile_rows.append([
                engine, f"{scope} ({len(got)})", f"{100 * status['compiled'] / len(got):.1f}%",
                status["refused"], status["error"], status["timeout"],
                _p(ms, 50), _p(ms, 90), _p(ms, 99),
            ])  # fmt: skip
    for source in sorted(by_source):
        got = [outcome["hearth"][s["id"]] for s in schemas if s["source"] == source]
        share = sum(r[0] == "compiled" for r in got) / len(got)
        per_engine[f"hearth/{source}"] = {"schemas": len(got), "compile_share": share}

    # same schemas, ratios: compile time where both compiled
    ratio_compile = {}
    for peer in ("outlines-core", "xgrammar"):
        both = [
            outcome[peer][i][1] / outcome["hearth"][i][1]
            for i in sample
            if outcome["hearth"][i][0] == outcome[peer][i][0] == "compiled"
            and outcome["hearth"][i][1] > 0
        ]
        ratio_compile[peer] = {"schemas": len(both), "peer_over_hearth_p50": _p(both, 50)}

    # -- generation on the model (validity) and the tokens masks are timed on
    compiled_in_sample = [i for i in sorted(sample) if outcome["hearth"][i][0] == "compiled"]
    gen_ids = rng.sample(compiled_in_sample, min(args.gen_sample, len(compiled_in_sample)))
    if state and not args.regenerate:
        generated = {int(i): g for i, g in state["generated"].items()}
    else:
        generated = generate_checked(schemas, gen_ids, args.gen_max_tokens, args.gen_model)
        made_by = {"command": " ".join(sys.argv), "at": time.strftime("%Y-%m-%d %H:%M:%S")}
        state_path.write_text(
            json.dumps(
                {"key": state_key, "outcome": outcome, "generated": generated, "made_by": made_by}
            )
        )
    gen_status = Counter(g["status"] for g in generated.values())
    valid_share = gen_status["valid"] / max(len(generated), 1)
    # answers the model finished (not cut off at --gen-max-tokens): what the engine decides
    finished = len(generated) - gen_status["truncated"]
    valid_finished_share = gen_status["valid"] / max(finished, 1)
    hearth_all = per_engine["hearth/all"]
    coverage = hearth_all["compile_share"] * valid_share

    # the answers masks are timed on: written under the closed schema (no properties the schema
    # does not name, which outlines-core refuses), valid for the schema itself; every engine
    # builds its mask from the schema as it is
    compiled_by_all = [i for i in gen_ids if all(outcome[e][i][0] == "compiled" for e in ENGINES)]
    answers = generate_valid(
        schemas, compiled_by_all[: args.mask_sample], args.gen_max_tokens, close=True
    )
    mask_ids = [i for i in answers if answers[i]["status"] == "valid"]
    # (engine, schema) -> microseconds per token, over the rounds; whole: every token taken
    timed_us: dict[tuple[str, int], list[float]] = {}
    whole: dict[tuple[str, int], bool] = {}
    rejections = []
    for n, i in enumerate(mask_ids):
        tokens = workers["hearth"].call("tokenize", answers[i]["text"], timeout=60)
        for r in range(args.rounds):
            shift = (n + r) % len(MASKERS)
            order = MASKERS[shift:] + MASKERS[:shift]
            if r % 2:
                order = order[::-1]
            for engine in order:
                try:
                    got = workers[engine].call(
                        "mask", engine, by_id[i]["schema"], tokens, timeout=120
                    )
                except (TimeoutError, RuntimeError) as exc:
                    rejections.append({"id": i, "engine": engine, "error": str(exc)[:160]})
                    continue
                if got["rejected_at"] is not None:
                    rejections.append(
                        {"id": i, "engine": engine, "at": got["rejected_at"],
                         "of": got["tokens"], "where": by_id[i]["where"]}
                    )  # fmt: skip
                timed_us.setdefault((engine, i), []).extend(got["us"])
                whole[engine, i] = whole.get((engine, i), True) and got["rejected_at"] is None
    for e in ENGINES:
        workers[e].close()
    # the claim compares the same masks: answers every engine took to the end
    common = [i for i in mask_ids if all(whole.get((e, i)) for e in MASKERS)]
    times = {e: [u for i in common for u in timed_us.get((e, i), [])] for e in MASKERS}
    every = {e: [u for (x, _), v in timed_us.items() if x == e for u in v] for e in MASKERS}
    per_schema = {
        e: {by_id[i]["where"]: percentile(timed_us[e, i], 50) for i in common} for e in MASKERS
    }

    mask = {
        e: {"tokens": len(v), "p50_us": _p(v, 50), "p99_us": _p(v, 99), "mean_us": (
            sum(v) / len(v) if v else None), "schemas": len(common),
            "all_timed": {"tokens": len(every[e]), "p50_us": _p(every[e], 50),
                          "p99_us": _p(every[e], 99)}}
        for e, v in times.items()
    }  # fmt: skip
    oc50 = mask["outlines-core"]["p50_us"]
    mask_rows = [
        [e, m["tokens"], m["p50_us"], m["p99_us"], m["mean_us"],
         (m["p50_us"] / oc50) if (oc50 and m["p50_us"]) else None]
        for e, m in mask.items()
    ]  # fmt: skip

    compile_table = markdown_table(
        ["engine", "schemas", "compiled", "refused", "errors", "timeouts",
         "compile ms p50", "p90", "p99"],
        compile_rows,
    )  # fmt: skip
    mask_table = markdown_table(
        [
            f"engine ({len(common)} answers all take)",
            "masks timed",
            "mask us p50",
            "p99",
            "mean",
            "p50 / outlines-core",
        ],
        mask_rows,
    )
    gen_table = markdown_table(
        [f"generated ({args.gen_model})", "valid", "truncated", "invalid", "not JSON", "error"],
        [[len(generated), gen_status["valid"], gen_status["truncated"], gen_status["invalid"],
          gen_status["not JSON"], gen_status["error"]]],
    )  # fmt: skip
    table = "\n\n".join([compile_table, mask_table, gen_table])
    h50 = mask["hearth"]["p50_us"]
    claims = {
        ">= 76% of real-world schemas compile and generate valid output (compile share x valid "
        "share of the generated sample)": coverage >= 0.76,
        "hearth mask p50 <= 50 us": h50 is not None and h50 <= 50,
        "hearth mask p50 no slower than outlines-core": bool(h50 and oc50 and h50 <= oc50),
        "hearth compile p50 <= 5 ms": (hearth_all["compile_ms_p50"] or 1e9) <= 5,
    }
    print(f"\nschemas: {len(schemas)} {dict(by_source)}")
    print(compile_table, "\n", mask_table, "\n", gen_table, sep="\n")
    print(f"\nhearth compiles {100 * hearth_all['compile_share']:.1f}% of {len(schemas)}; "
          f"valid answers on {gen_status['valid']}/{len(generated)} generated; "
          f"coverage estimate {100 * coverage:.1f}%; valid among finished answers "
          f"{gen_status['valid']}/{finished}")  # fmt: skip
    for peer, r in ratio_compile.items():
        if r["peer_over_hearth_p50"]:
            print(f"compile time {peer} / hearth (median per schema, {r['schemas']} schemas): "
                  f"{r['peer_over_hearth_p50']:.2f}x")  # fmt: skip
    for e in MASKERS:
        if oc50 and mask[e]["p50_us"]:
            print(f"mask p50 {e} / outlines-core: {mask[e]['p50_us'] / oc50:.2f}x")
    print(f"hearth refusals (top): {hearth_all['top_reasons']}")
    if rejections:
        print(f"{len(rejections)} mask runs where an engine refused a valid answer's token: "
              f"{rejections[:6]}")  # fmt: skip
    for claim, ok in claims.items():
        print(f"{claim}: {verdict(ok)}")
    path = write_result(
        "structured_speed",
        {
            "settings": vars(args),
            "vocabulary": {"model": "SmolLM2-135M-Instruct", "tokens": len(vocab[0])},
            "schemas": {"total": len(schemas), "by_source": dict(by_source), "bfcl": BFCL},
            "compile": per_engine,
            "compile_ratio_vs_hearth": ratio_compile,
            "generation": {
                "status": dict(gen_status),
                "valid_share": valid_share,
                "valid_share_of_finished": valid_finished_share,
                "coverage_estimate": coverage,
                "answers": {
                    by_id[i]["where"]: {k: v for k, v in g.items() if k != "text"}
                    for i, g in generated.items()
                },
            },
            "mask": mask,
            "mask_schemas": [by_id[i]["where"] for i in mask_ids],
            "mask_per_schema_p50_us": per_schema,
            "rejections": rejections,
            "worker_restarts": {e: workers[e].restarts for e in ENGINES},
            # with --reuse: the run whose compile outcomes and answers these are
            "compile_and_answers_from": state.get("made_by") if state else None,
            "seconds": time.perf_counter() - started,
            "table": table,
            "claims": claims,
        },
    )
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
