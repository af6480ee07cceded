"""Entity resolution: the mentions "Ada Lovelace", "Lovelace" and "ada lovelace's" become one
entity; "John Smith" and "Jane Smith", "Paris" and "Paris Hilton" stay apart.

Three passes: normalise (case, punctuation, titles, possessives); merge a mention into a
longer name it ends ("Lovelace" -> "Ada Lovelace"; not "London" -> "East London", see
PLACE_MODIFIERS) when that name is the only such one in the same document, or in the graph;
merge names whose embeddings (the index's embedder) are closer than EMBED_THRESHOLD (0.88,
tuned on pairs measured with MiniLM: "New York"/"New York City" 0.93 and "NYC"/"New York
City" 0.90 merge; "London"/"East London" 0.85, "John Smith"/"Jane Smith" 0.67 and
"Paris"/"Paris Hilton" 0.65 do not). Aliases are kept.
Hand-written (a small union-find); the vectors are the embedder's.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from hearth.types import Embedder

EMBED_THRESHOLD = 0.88
TITLES = frozenset(
    "the a an mr mrs ms miss dr prof professor sir dame lady lord mx rev".split()
)  # dropped from the front of a name when more words follow
# A longer name starting with one of these is a different place, not the short name in full
# ("East London" is not "London", "New York" not "York").
PLACE_MODIFIERS = frozenset(
    "north south east west northern southern eastern western new old upper lower greater "
    "central great little port mount lake fort saint st san santa los las".split()
)
_POSSESSIVE = re.compile(r"(?:'s|’s|'|’)(?=\s|$)")
_NON_WORD = re.compile(r"[^\w\s]")


def normalise(name: str) -> str:
    """The key names are compared by: lower case, no possessive, no punctuation, no leading
    title ("Dr. Ada Lovelace's" -> "ada lovelace")."""
    text = _POSSESSIVE.sub("", name.strip().lower())
    words = _NON_WORD.sub(" ", text).split()
    while len(words) > 1 and words[0] in TITLES:
        words = words[1:]
    return " ".join(words)


@dataclass
class Entity:
    """A resolved entity: an id, the display name (its most frequent full form) and every
    other form it was written in."""

    id: int
    name: str
    aliases: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "aliases": self.aliases}


@dataclass
class Resolution:
    entities: list[Entity]
    # (document id, mention as written) -> entity id
    mentions: dict[tuple[int | None, str], int]

    def entity_of(self, name: str, document_id: int | None = None) -> int | None:
        found = self.mentions.get((document_id, name))
        if found is not None:
            return found
        key = normalise(name)
        for (_, written), eid in self.mentions.items():
            if normalise(written) == key:
                return eid
        return None


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def _ends_with(short: list[str], long: list[str]) -> bool:
    return (
        len(short) < len(long)
        and long[-len(short) :] == short
        and long[-len(short) - 1] not in PLACE_MODIFIERS
    )


def resolve(
    mentions: Iterable[tuple[int | None, str]],
    embedder: Embedder | None = None,
    *,
    threshold: float = EMBED_THRESHOLD,
) -> Resolution:
    """Resolve (document id, name) mentions into entities."""
    written: dict[tuple[int | None, str], str] = {}  # mention -> key
    forms: dict[str, Counter] = defaultdict(Counter)  # key -> written forms
    docs: dict[str, set] = defaultdict(set)  # key -> documents
    for doc, name in mentions:
        key = normalise(name)
        if not key:
            continue
        written[(doc, name)] = key
        forms[key][name] += 1
        docs[key].add(doc)
    tokens = {k: k.split() for k in forms}

    # pass 2: a name that ends a longer one in the same document (or in the graph) is that one
    targets: dict[tuple, str] = {}
    for key in forms:
        longer = [c for c in forms if _ends_with(tokens[key], tokens[c])]
        if not longer:
            continue
        for doc in docs[key]:
            here = [c for c in longer if doc in docs[c]]
            # the shortest of those that contain each other is enough: union-find chains them
            here = [c for c in here if not any(_ends_with(tokens[o], tokens[c]) for o in here)]
            if len(here) == 1:
                targets[(doc, key)] = here[0]
            elif not here:
                top = [
                    c for c in longer if not any(_ends_with(tokens[o], tokens[c]) for o in longer)
                ]
                if len(top) == 1:
                    targets[(doc, key)] = top[0]
    ambiguous = {k for k in forms if len({targets.get((d, k)) for d in docs[k]} - {None}) > 1}

    def node(doc, key: str) -> str:
        return f"{key}\x00{doc}" if key in ambiguous else key

    uf = _UnionFind()
    for key in forms:
        for doc in docs[key]:
            uf.find(node(doc, key))
    for (doc, key), target in targets.items():
        uf.union(node(doc, key), node(doc, target) if doc in docs[target] else target)

    # pass 3: embedding similarity between the groups' names
    groups: dict[str, set[str]] = defaultdict(set)
    for key in forms:
        for doc in docs[key]:
            groups[uf.find(node(doc, key))].add(key)
    roots = sorted(groups)
    if embedder is not None and len(roots) > 1:
        names = [max(groups[r], key=lambda k: (len(tokens[k]), k)) for r in roots]
        vecs = np.asarray(embedder.embed(names), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12
        sims = vecs @ vecs.T
        for i, j in zip(*np.nonzero(np.triu(sims, 1) >= threshold), strict=True):
            if not _conflict(names[i], names[j]):
                uf.union(roots[i], roots[j])

    # entities, numbered in a stable order
    members: dict[str, list[tuple]] = defaultdict(list)
    for (doc, name), key in written.items():
        members[uf.find(node(doc, key))].append((doc, name, key))
    entities: list[Entity] = []
    out: dict[tuple, int] = {}
    ordered = sorted(members.values(), key=lambda ms: min(normalise(m[1]) for m in ms))
    for eid, ms in enumerate(ordered, start=1):
        counts: Counter = Counter()
        for _, _, key in ms:
            counts.update(forms[key])
        longest = max(len(tokens[k]) for _, _, k in ms)
        full = [n for n in counts if len(tokens[normalise(n)]) == longest]
        name = max(full, key=lambda n: (counts[n], n[:1].isupper(), -len(n)))
        aliases = sorted({n for _, n, _ in ms} - {name})
        entities.append(Entity(eid, name, aliases))
        for doc, n, _ in ms:
            out[(doc, n)] = eid
    return Resolution(entities, out)


def _conflict(a: str, b: str) -> bool:
    """Two person-like names with the same surname and different first names (John Smith,
    Jane Smith) are different people however close their vectors."""
    ta, tb = normalise(a).split(), normalise(b).split()
    return len(ta) > 1 and len(tb) > 1 and ta[-1] == tb[-1] and ta[0] != tb[0]
