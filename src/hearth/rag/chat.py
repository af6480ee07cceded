"""Multi-turn chat: sessions kept in the store, follow-ups condensed into standalone queries.

Hand-written because the embedded 135M model rewrites follow-ups unreliably: its rewrite is
validated and, when it fails, replaced by a deterministic one that carries the earlier topic.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from hearth.errors import HearthError
from hearth.index.store import STOPWORDS as ENGLISH_STOPWORDS
from hearth.types import ChatModel, Filters, Message

log = logging.getLogger(__name__)

MAX_SESSION_NAME = 200
ROLES = ("system", "user", "assistant")


class SessionNameError(HearthError):
    """A chat session name Hearth cannot store (empty, too long, control characters)."""


class SessionStore(Protocol):
    """The part of the index store a chat session needs."""

    def append_message(self, session: str, role: str, content: str) -> Any: ...

    def session_messages(self, session: str) -> list[Message]: ...

    def list_sessions(self) -> list[str]: ...


# --------------------------------------------------------------------------- words

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_'\-\.]*[A-Za-z0-9]|[A-Za-z0-9]")

# English function words (shared with BM25) plus contractions, question words and verbs so
# generic they say nothing about a topic.
STOPWORDS = ENGLISH_STOPWORDS | frozenset(
    """
    actually also aren't can't cannot couldn't describe didn't doesn't don't else ever
    every explain get gets getting give go goes hadn't hasn't haven't he'd he'll he's
    here's how's however i'd i'll i'm i've isn't it's know let's like make makes may
    mean means might much must mustn't need needs ok okay one ones ought please really
    say says shall shan't she'd she'll she's shouldn't show tell thank thanks that's
    there's they'd they'll they're they've thing things though upon us use used using
    want wants wasn't way we'd we'll we're we've well weren't what's when's where's
    whether who's whose why's won't wouldn't yes yet you'd you'll you're you've
    """.split()
)

# Words that point back at something said earlier.
ANAPHORA = frozenset(
    """
    it its it's itself they them their theirs themselves this these those that he him his she
    her there former latter above aforementioned same such one ones else
    """.split()
)
_DEMONSTRATIVES = frozenset({"that", "this", "these", "those", "one", "ones", "same", "such"})

# Openings that only make sense as a continuation ("and the price?", "what about windows?").
_CONTINUATION = re.compile(
    r"^\s*(and|also|but|so|then|or|plus|what about|how about|what else|why not|"
    r"same for|same with|and what|and how|and why|and when|and where|and who)\b",
    re.IGNORECASE,
)
# "is it possible to ...", "it is better to ...": a dummy "it" that refers to nothing.
_DUMMY_IT = re.compile(
    r"\b(is it|it is|it's|isn't it|was it|would it be|will it be)\s+"
    r"(possible|ok|okay|safe|better|best|necessary|worth|true|allowed|normal|faster|slower)\b",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|i can ?not|i can't|i'm unable|i am unable|"
    r"as an ai|i don't know|i do not know|i don't have|i do not have|cannot help|can't help)\b",
    re.IGNORECASE,
)
_LABEL = re.compile(
    r"^\s*(standalone question|rewritten question|rewritten|standalone|question|query|answer|"
    r"assistant|user|output)\s*:\s*",
    re.IGNORECASE,
)


def words(text: str) -> list[str]:
    """Word tokens in order, original casing, trailing dots and quotes removed."""
    return [w.strip(".'-") for w in _WORD.findall(text) if w.strip(".'-")]


def _norm(word: str) -> str:
    """A light stem so "files"/"file" and "Directory"/"directory" compare equal."""
    w = word.lower()
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def content_words(text: str) -> list[str]:
    """Words that carry meaning (no stopwords, no pronouns), first occurrence order, unique."""
    seen: set[str] = set()
    out: list[str] = []
    for w in words(text):
        low = w.lower()
        if low in STOPWORDS or low in ANAPHORA or len(low) < 2 or low.isdigit() and len(low) < 3:
            continue
        key = _norm(w)
        if key not in seen:
            seen.add(key)
            out.append(w)
    return out


def has_anaphora(text: str) -> bool:
    """True when the text leans on earlier turns: a continuation opening or a pointing pronoun."""
    if _CONTINUATION.search(text):
        return True
    toks = [w.lower() for w in words(_DUMMY_IT.sub(" ", text))]
    for i, tok in enumerate(toks):
        if tok not in ANAPHORA:
            continue
        if tok in _DEMONSTRATIVES and i > 0:
            prev = toks[i - 1]
            # "files that match", "the one thing": relative/ordinary use after a content word.
            if prev not in STOPWORDS and prev not in ANAPHORA:
                continue
        if tok == "one" and i > 0 and toks[i - 1] in {"no", "any", "every", "each", "some"}:
            continue
        return True
    return False


def is_standalone(followup: str, min_content_words: int = 2) -> bool:
    """A question that names its own topic and points at nothing earlier."""
    return len(content_words(followup)) >= min_content_words and not has_anaphora(followup)


# --------------------------------------------------------------------------- condensing


class Condensed(NamedTuple):
    """The standalone query and how it was made (for logs, tests and `--verbose`)."""

    query: str
    method: str  # "first" | "standalone" | "llm" | "llm+terms" | "fallback"
    llm_text: str | None = None  # the model's raw rewrite, when one was asked for
    rejected: str | None = None  # why the model's rewrite was not used as is


def topic_terms(history: list[Message], followup: str, max_terms: int = 6) -> list[str]:
    """Key content words of the latest user turns that the follow-up does not already have.

    Walks back through user turns (latest first) so a chain of follow-ups still carries the
    topic of the question that started it.
    """
    have = {_norm(w) for w in content_words(followup)}
    terms: list[str] = []
    for msg in reversed(history):
        if msg.role != "user":
            continue
        for w in content_words(msg.content):
            if _norm(w) not in have:
                have.add(_norm(w))
                terms.append(w)
        if len(terms) >= 2 and not has_anaphora(msg.content):
            break  # this turn named its own topic: older turns are older topics
        if len(terms) >= max_terms:
            break
    return terms[:max_terms]


def deterministic_rewrite(history: list[Message], followup: str) -> str:
    """The follow-up plus the earlier topic's key words: robust, if not pretty."""
    terms = topic_terms(history, followup)
    base = _CONTINUATION.sub("", followup, count=1).strip(" ,") or followup.strip()
    if not terms:
        return followup.strip()
    return f"{base} ({' '.join(terms)})"


_SYSTEM = "Rewrite the follow-up question into a standalone question. Reply with the question only."
# One worked example as a real chat turn: the 135M model follows that far better than rules.
_EXAMPLE = [
    Message("user", "Previous question: What is the Eiffel Tower?\nFollow-up: how tall is it?"),
    Message("assistant", "How tall is the Eiffel Tower?"),
]


def _topic_questions(history: list[Message]) -> list[str]:
    """The latest user questions, back to (and including) the one that named its own topic."""
    out: list[str] = []
    for msg in reversed(history):
        if msg.role != "user":
            continue
        out.append(" ".join(msg.content.split()))
        if is_standalone(msg.content) or len(out) == 3:
            break
    return out[::-1]


def _rewrite_prompt(history: list[Message], followup: str) -> list[Message]:
    previous = " ".join(_topic_questions(history))
    ask = f"Previous question: {previous}\nFollow-up: {' '.join(followup.split())}"
    return [Message("system", _SYSTEM), *_EXAMPLE, Message("user", ask)]


def _clean_rewrite(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = _LABEL.sub("", lines[0])
    line = _LABEL.sub("", line)  # "Standalone question: Question: ..." happens
    return line.strip().strip("\"'`“”").strip()


def _norm_text(text: str) -> str:
    return " ".join(w.lower() for w in words(text))


def validate_rewrite(rewrite: str, history: list[Message], followup: str) -> str | None:
    """Why a model rewrite is unusable, or None when it may be used."""
    if not rewrite:
        return "empty"
    if _REFUSAL.search(rewrite):
        return "refusal"
    earlier = " ".join(m.content for m in history if m.role != "system")
    prev_user = next((m.content for m in reversed(history) if m.role == "user"), "")
    limit = max(30, 2 * (len(words(followup)) + len(words(prev_user))))
    if len(words(rewrite)) > limit:
        return f"too long ({len(words(rewrite))} words, limit {limit})"
    if followup.rstrip().endswith("?") and not rewrite.rstrip().endswith("?"):
        return "not a question"
    if any(_norm_text(rewrite) == _norm_text(m.content) for m in history if m.role == "user"):
        return "repeats an earlier question"
    asked = {_norm(w) for w in content_words(followup)}
    kept = asked & {_norm(w) for w in content_words(rewrite)}
    if asked and len(kept) < len(asked) / 2:
        return f"lost the follow-up's own words ({len(kept)}/{len(asked)} kept)"
    known = {_norm(w) for w in content_words(earlier + " " + followup)}
    own = [_norm(w) for w in content_words(rewrite)]
    if not own:
        return "no content words"
    grounded = sum(w in known for w in own)
    if grounded == 0:
        return "shares no content words with the conversation"
    if grounded / len(own) < 0.5:
        return f"mostly words from nowhere ({grounded}/{len(own)} grounded)"
    return None


def condense(
    history: list[Message],
    followup: str,
    model: ChatModel | None,
    *,
    max_tokens: int = 48,
) -> Condensed:
    """Turn `followup` into a query retrieval can use on its own, and say how."""
    followup = followup.strip()
    if not any(m.role == "user" for m in history):
        return Condensed(followup, "first")
    if is_standalone(followup):
        return Condensed(followup, "standalone")
    fallback = deterministic_rewrite(history, followup)
    if model is None:
        return Condensed(fallback, "fallback", rejected="no model")
    try:
        result = model.chat(
            _rewrite_prompt(history, followup), max_tokens=max_tokens, temperature=0.0
        )
    except (HearthError, RuntimeError, ValueError, OSError) as exc:
        log.warning("follow-up rewrite failed, using the deterministic one: %s", exc)
        return Condensed(fallback, "fallback", rejected=f"model error: {exc}")
    raw = result.text
    rewrite = _clean_rewrite(raw)
    problem = validate_rewrite(rewrite, history, followup)
    if problem:
        return Condensed(fallback, "fallback", raw, problem)
    # The rewrite is sane; make sure it kept the earlier topic, which is the point of it.
    terms = topic_terms(history, followup)
    have = {_norm(w) for w in content_words(rewrite)}
    missing = [t for t in terms if _norm(t) not in have]
    if not terms or len(missing) <= len(terms) / 2:
        return Condensed(rewrite, "llm", raw)
    if len(missing) == len(terms):
        return Condensed(fallback, "fallback", raw, "dropped the earlier topic")
    return Condensed(f"{rewrite} ({' '.join(missing)})", "llm+terms", raw)


def condense_question(history: list[Message], followup: str, model: ChatModel | None) -> str:
    """Rewrite a follow-up ("and how much does it cost?") into a standalone retrieval query.

    Standalone questions are returned unchanged; `model=None` uses the deterministic rewrite.
    """
    return condense(history, followup, model).query


# --------------------------------------------------------------------------- sessions


@dataclass
class ChatTurn:
    """One answered turn: what was asked, what retrieval searched for, and the answer."""

    question: str
    condensed: Condensed
    answer: Any  # hearth.rag.answer.Answer


def check_session_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise SessionNameError("chat session name is empty: pass a name such as --session work")
    if len(name) > MAX_SESSION_NAME:
        raise SessionNameError(
            f"chat session name is {len(name)} characters long; use at most {MAX_SESSION_NAME}"
        )
    if any(ord(c) < 32 for c in name):
        raise SessionNameError(
            f"chat session name {name!r} contains control characters; use printable text"
        )
    return name.strip()


class ChatSession:
    """A named conversation stored in the index; opening an existing name resumes it."""

    def __init__(self, store: SessionStore, name: str, *, max_history: int = 6) -> None:
        self.store = store
        self.name = check_session_name(name)
        self.max_history = max_history
        self._messages: list[Message] = list(store.session_messages(self.name))

    @property
    def messages(self) -> list[Message]:
        """Every stored turn, oldest first (a copy)."""
        return list(self._messages)

    @property
    def resumed(self) -> bool:
        """True when this session already had turns when it was opened."""
        return bool(self._messages)

    def history(self, max_messages: int | None = None) -> list[Message]:
        """The latest turns, as passed to the model and to `condense_question`."""
        n = self.max_history if max_messages is None else max_messages
        return self._messages[-n:] if n > 0 else []

    def add(self, role: str, content: str) -> Message:
        if role not in ROLES:
            raise HearthError(f"chat role {role!r} is not one of {', '.join(ROLES)}")
        self.store.append_message(self.name, role, content)
        msg = Message(role, content)  # type: ignore[arg-type]
        self._messages.append(msg)
        return msg

    @staticmethod
    def names(store: SessionStore) -> list[str]:
        """Names of all stored sessions."""
        return list(store.list_sessions())

    def condense(self, question: str, model: ChatModel | None) -> Condensed:
        return condense(self.history(), question, model)

    def ask(
        self,
        question: str,
        answerer: Any,
        model: ChatModel | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
        extractive: bool = False,
    ) -> ChatTurn:
        """Condense, answer with `answerer` (a hearth.rag.answer.Answerer), record both turns."""
        events = self.stream(question, answerer, model, k=k, filters=filters, extractive=extractive)
        return next(e for e in events if isinstance(e, ChatTurn))

    def stream(
        self,
        question: str,
        answerer: Any,
        model: ChatModel | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
        extractive: bool = False,
    ) -> Iterator[str | ChatTurn]:
        """Like `ask`, yielding text deltas first and the finished ChatTurn last."""
        condensed = self.condense(question, model)
        events = answerer.stream(
            condensed.query, k=k, filters=filters, extractive=extractive, history=self.history()
        )
        for event in events:
            if isinstance(event, str):
                yield event
            else:
                self._record(question, event)
                yield ChatTurn(question, condensed, event)

    def _record(self, question: str, answer: Any) -> None:
        self.add("user", question)
        self.add("assistant", getattr(answer, "text", str(answer)))
