"""Query routing: decide for a question whether to retrieve at all, with which strategy and from
which index, before any search runs (`Router.route(question) -> Route`).

Hand-written: the fast router is nearest-prototype over the small labelled examples below, with
the embedder Hearth already loaded, plus a few surface features (no library ships a router for
our Embedder / ChatModel interfaces offline); the optional model router is one hearth.generate
call under an enum schema, falling back to the fast router when the model fails.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hearth import generate  # the facade: hearth.llm loads on the first call
from hearth.types import ChatModel, Embedder

log = logging.getLogger(__name__)

NO_RETRIEVAL = "none"  # the label of questions that need no documents
LABELS = (NO_RETRIEVAL, "standard", "decompose", "step-back", "hyde")

# Labelled prototypes of each route. Short and generic: the embedder matches the question's
# kind (a greeting, a comparison, a vague "why"), the features below catch the forms that
# embeddings miss (arithmetic, "X and Y" comparisons, bare keywords).
PROTOTYPES: dict[str, tuple[str, ...]] = {
    NO_RETRIEVAL: (
        "hi",
        "hello there!",
        "good morning",
        "hey, how are you?",
        "thanks, that helps",
        "thank you very much",
        "bye, see you later",
        "who are you?",
        "what can you do?",
        "what is 2 + 2?",
        "calculate 15 times 7",
        "write a poem about the sea",
        "tell me a joke",
        "write a short story about a dragon",
    ),
    "standard": (
        "Where is the log file written?",
        "What is the default output format?",
        "How do I install it on Windows?",
        "What port does the server listen on?",
        "When does the shop open on Sundays?",
        "How much does the basic plan cost?",
        "Who wrote the second chapter?",
        "What does error code E-102 mean?",
        "config file location",
        "supported file types",
        "install command",
        "API key environment variable",
    ),
    "decompose": (
        "Compare the storage options and the model options",
        "What is the difference between keyword search and vector search?",
        "Who founded the company and when did it go public?",
        "What are the install steps, and which license does it use?",
        "Compare A with B in speed and memory",
        "What are the pros and cons of each backend?",
        "Which is faster, X or Y, and why?",
        "How much does the plan cost and what does it include?",
    ),
    "step-back": (
        "Why does my search return nothing when I filter by PDF?",
        "Why is my answer so slow on this laptop?",
        "Why did ingesting this file fail with an error?",
        "My results look wrong after I changed the settings, why?",
        "Why would two copies of a passage show up in the results?",
        "What should I check before deploying this to production?",
    ),
    "hyde": (
        "What is the main idea behind the design?",
        "Explain the philosophy of the project",
        "What is the thinking behind keeping everything local?",
        "How does the whole thing work, roughly?",
        "What makes this approach different?",
        "Tell me something about the history of it all",
    ),
}

# surface features: (label, bonus, pattern) - a match adds `bonus` to the label's similarity
_GREETING = r"^\W*(hi|hello|hey|hiya|yo|thanks|thank you|thx|good (morning|afternoon|evening|night)|bye|goodbye|see you)\b\W*(\w+\W*){0,3}$"  # noqa: E501
_ARITHMETIC = r"^\W*(what is|what's|calculate|compute|how much is)?\s*[-+(]*\d[\d.,\s]*(\s*[-+*/x×÷^%]\s*[-+(]*\d[\d.,]*\)*)+\s*[?=.!]*\s*$"  # noqa: E501
_CREATIVE = r"^\W*(please\s+)?(write|compose|make up|tell)( me)? (a|an|some) (poem|haiku|limerick|song|story|joke|riddle)\b"  # noqa: E501
_COMPARE = (
    r"\b(compare|comparison|difference between|differences between|versus|vs\.?|pros and cons)\b"  # noqa: E501
)
_TWO_QUESTIONS = (
    r"\?.*\S.*\?|\b(and|also)\s+(what|how|when|where|why|which|who|is|are|does|do|can)\b"  # noqa: E501
)
_WH = r"^\W*(what|how|when|where|why|which|who|whom|whose|is|are|does|do|can|could|should|would|will)\b"  # noqa: E501
FEATURES: tuple[tuple[str, str, float, re.Pattern[str]], ...] = tuple(
    (name, label, bonus, re.compile(pattern, re.IGNORECASE))
    for name, label, bonus, pattern in (
        ("a greeting", NO_RETRIEVAL, 0.35, _GREETING),
        ("arithmetic", NO_RETRIEVAL, 0.5, _ARITHMETIC),
        ("a creative request", NO_RETRIEVAL, 0.4, _CREATIVE),
        ("a comparison", "decompose", 0.3, _COMPARE),
        ("several questions", "decompose", 0.25, _TWO_QUESTIONS),
    )
)
KEYWORD_BONUS = 0.2  # a short query without a question form: search it as it is
NO_RETRIEVAL_MARGIN = 0.05  # skipping retrieval costs a wrong answer: it must win clearly
TOP = 3  # a label's similarity: the mean of its best TOP prototype similarities

MODEL_PROMPT = """Classify this message for a document search assistant. Choices:
none: greeting, thanks, chit-chat, arithmetic or creative writing; needs no documents.
standard: one direct question or search keywords.
decompose: several questions in one, or a comparison of two or more things.
step-back: a specific problem best answered with general background first.
hyde: a vague or abstract question worded unlike documentation.

Message: {question}"""
MODEL_MAX_TOKENS = 32


@dataclass
class Route:
    """A routing decision. `strategy` is a strategy name ("standard", "decompose", ...) or
    "none" when `retrieve` is false; `index` the chosen index (None: the default one);
    `scores` the evidence: {"strategy": {label: score}, "index": {name: similarity}}."""

    retrieve: bool
    strategy: str
    index: str | None = None
    reason: str = ""
    scores: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as `--json` prints it."""
        return asdict(self)


class Router:
    """Classifies questions. The fast router (no model) scores each label by the mean cosine of
    the question to its TOP nearest prototypes, adds the FEATURES bonuses, and takes the best
    label among `strategies` (plus "none"); "none" must beat the best retrieval label by
    NO_RETRIEVAL_MARGIN. With `model`, the model picks the label (enum schema) and the fast
    router is the fallback. With `indexes` ({name: description}), the index whose description
    embeds closest to the question is chosen.

    Cheap to build; `warm_up()` (or the first `route`) embeds the prototypes and descriptions.
    """

    def __init__(
        self,
        embedder: Embedder,
        model: ChatModel | str | None = None,
        *,
        indexes: Mapping[str, str] | None = None,
        strategies: Sequence[str] = LABELS[1:],
        prototypes: Mapping[str, Sequence[str]] = PROTOTYPES,
        retries: int = 1,
    ):
        unknown = set(prototypes) - set(LABELS)
        if unknown:
            raise ValueError(f"unknown route labels {sorted(unknown)}: use {list(LABELS)}")
        self.embedder = embedder
        self.model = model
        self.indexes = dict(indexes or {})
        # routes this router may choose: "none", and the given strategies that have prototypes
        self.labels = [NO_RETRIEVAL] + [s for s in strategies if s in prototypes and s in LABELS]
        if "standard" not in self.labels:
            self.labels.append("standard")
        self.prototypes = {label: tuple(prototypes.get(label, ())) for label in self.labels}
        self.retries = retries
        self._label_vectors: dict[str, np.ndarray] | None = None
        self._index_vectors: np.ndarray | None = None

    def warm_up(self) -> None:
        if self._label_vectors is None:
            texts = [t for label in self.labels for t in self.prototypes[label]]
            vectors = self._embed(texts)
            out, i = {}, 0
            for label in self.labels:
                n = len(self.prototypes[label])
                out[label] = vectors[i : i + n]
                i += n
            self._label_vectors = out
        if self._index_vectors is None and len(self.indexes) > 1:
            self._index_vectors = self._embed(list(self.indexes.values()))

    def route(self, question: str) -> Route:
        """Whether to retrieve for `question`, how, and from which index."""
        self.warm_up()
        vector = self._embed([question])[0]
        route = self.classify_model(question, vector) if self.model is not None else None
        if route is None or route.strategy not in self.labels:
            fast = self.classify_fast(question, vector)
            if route is not None:  # the model answered outside the labels allowed here
                fast.reason = f"model said {route.strategy!r}, not available here; {fast.reason}"
            route = fast
        if route.retrieve:
            route.index, route.scores["index"] = self.pick_index(question, vector)
        return route

    def classify_fast(self, question: str, vector: np.ndarray | None = None) -> Route:
        """The offline decision: prototypes and features, no model."""
        self.warm_up()
        assert self._label_vectors is not None
        if vector is None:
            vector = self._embed([question])[0]
        text = " ".join(question.split())
        scores: dict[str, float] = {}
        for label, vectors in self._label_vectors.items():
            sims = np.sort(vectors @ vector)[::-1][:TOP] if len(vectors) else np.zeros(1)
            scores[label] = float(sims.mean())
        why: list[str] = []
        for name, label, bonus, pattern in FEATURES:
            if label in scores and pattern.search(text):
                scores[label] += bonus
                why.append(f"looks like {name}")
        words = re.findall(r"\w+", text)
        if 0 < len(words) <= 4 and "?" not in text and not re.match(_WH, text, re.IGNORECASE):
            if not any(label == NO_RETRIEVAL and p.search(text) for _, label, _, p in FEATURES):
                scores["standard"] += KEYWORD_BONUS
                why.append("looks like search keywords")
        retrieval = {label: s for label, s in scores.items() if label != NO_RETRIEVAL}
        best = max(retrieval, key=lambda label: (retrieval[label], label == "standard"))
        rounded = {label: round(s, 4) for label, s in scores.items()}
        if not text:
            return Route(False, NO_RETRIEVAL, reason="empty question", scores={"strategy": rounded})
        if scores[NO_RETRIEVAL] >= retrieval[best] + NO_RETRIEVAL_MARGIN:
            reason = "fast router: needs no documents (closest to greetings, chit-chat, "
            reason += "arithmetic or creative requests)"
            return Route(
                False, NO_RETRIEVAL, reason=_with(reason, why), scores={"strategy": rounded}
            )
        reason = f"fast router: closest to {best!r} examples"
        return Route(True, best, reason=_with(reason, why), scores={"strategy": rounded})

    def classify_model(self, question: str, vector: np.ndarray | None = None) -> Route | None:
        """The model's decision (enum schema over this router's labels); None when the model
        fails, so the caller falls back to the fast router."""
        if self.model is None:
            return None
        schema = {
            "type": "object",
            "properties": {"route": {"enum": list(self.labels)}},
            "required": ["route"],
            "additionalProperties": False,
        }
        try:
            value = generate(
                self.model,
                MODEL_PROMPT.format(question=question[:2000]),
                schema,
                retries=self.retries,
                max_tokens=MODEL_MAX_TOKENS,
                temperature=0.0,
            )
        except Exception as exc:  # noqa: BLE001 - a failing model means "use the fast router"
            log.warning("model router failed (%s); using the fast router", exc)
            fast = self.classify_fast(question, vector)
            fast.reason = f"model router failed ({type(exc).__name__}: {exc}); {fast.reason}"
            return fast
        label = value["route"]
        reason = f"model router chose {label!r}"
        return Route(label != NO_RETRIEVAL, label, reason=reason, scores={"strategy": {label: 1.0}})

    def pick_index(
        self, question: str, vector: np.ndarray | None = None
    ) -> tuple[str | None, dict[str, float]]:
        """(the index whose description is closest to the question, similarity per index);
        (None, {}) without indexes, the only one when there is one."""
        if not self.indexes:
            return None, {}
        names = list(self.indexes)
        if len(names) == 1:
            return names[0], {names[0]: 1.0}
        self.warm_up()
        assert self._index_vectors is not None
        if vector is None:
            vector = self._embed([question])[0]
        sims = self._index_vectors @ vector
        scores = {name: round(float(s), 4) for name, s in zip(names, sims, strict=True)}
        return names[int(np.argmax(sims))], scores

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.embedder.embed(texts), dtype=np.float32)


def _with(reason: str, why: list[str]) -> str:
    return f"{reason} ({'; '.join(why)})" if why else reason
