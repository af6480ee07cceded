"""Hearth's own routes over the index: upload and ingest files, list/read/delete documents, search.

Uploads are saved under <index>/uploads/<name> and ingested with the same Indexer as
`hearth ingest`; a file that cannot be read is reported in `skipped` and whatever was stored
for that name before stays as it was (file on disk included).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hearth.index.store import NotInIndexError
from hearth.rag.retrievers import hit_to_json
from hearth.serve import schemas as s
from hearth.serve.errors import APIError
from hearth.serve.rag import make_filters
from hearth.serve.state import ServedIndex, ServerState

router = APIRouter(prefix="/v1", tags=["hearth"])

MAX_NAME_BYTES = 255
DOCUMENT_ID = PathParam(ge=1, le=2**63 - 1, description="the document's id (GET /v1/documents)")


def _index(request: Request) -> ServedIndex:
    state: ServerState = request.app.state.hearth
    return state.index


def safe_name(filename: str | None) -> str | None:
    """`filename` when it is a plain file name that is safe to create in the uploads folder;
    None for paths ("../x", "a/b"), hidden names, control characters and over-long names."""
    if not filename:
        return None
    name = filename.strip()
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates: no file system takes them
        return None
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or any(sep in name for sep in ("/", "\\"))
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
        or size > MAX_NAME_BYTES
    ):
        return None
    return name


# --------------------------------------------------------------------------- ingest


@router.post(
    "/ingest",
    response_model=s.IngestReport,
    responses=s.error_responses(400, 401, 403, 413, 422, 429, 500),
)
async def ingest(
    request: Request,
    files: list[UploadFile] = File(description="one or more files (field name `files`)"),
) -> JSONResponse:
    """Add or update documents from uploaded files; unreadable ones are listed in `skipped`."""
    index = _index(request)
    try:
        report = await run_in_threadpool(_ingest_uploads, index, files)
    finally:
        for upload in files:
            await upload.close()
    return JSONResponse(report)


def _ingest_uploads(index: ServedIndex, uploads: list[UploadFile]) -> dict[str, Any]:
    with index.ingest_lock:
        scratch = index.root.resolve() / ".upload-tmp"
        try:
            return _ingest_uploads_locked(index, uploads, scratch)
        finally:
            with contextlib.suppress(OSError):  # only when empty: nothing of this call is left
                scratch.rmdir()


def _ingest_uploads_locked(
    index: ServedIndex, uploads: list[UploadFile], scratch: Path
) -> dict[str, Any]:
    skipped: list[dict[str, str]] = []
    saved: dict[str, str] = {}  # real path of the saved file -> name the client gave
    backups: dict[Path, Path] = {}  # saved file -> the earlier file of that name, set aside
    uploads_dir = index.uploads.resolve()
    uploads_dir.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    for upload in uploads:
        name = safe_name(upload.filename)
        if name is None:
            skipped.append(
                {
                    "path": upload.filename or "",
                    "reason": "unsafe file name: send a plain name without folders, "
                    "leading dots or control characters",
                }
            )
            continue
        target = uploads_dir / name
        if os.path.realpath(target) in saved:
            skipped.append({"path": name, "reason": "the same file name was sent twice"})
            continue
        part = scratch / f"{uuid.uuid4().hex}.part"
        with part.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
        if target.exists():
            backup = scratch / f"{uuid.uuid4().hex}.bak"
            os.replace(target, backup)
            backups[target] = backup
        os.replace(part, target)
        saved[os.path.realpath(target)] = name

    report = index.indexer().ingest(list(saved), progress=False) if saved else None
    if report is None:
        totals = index.store.stats()
        result = {"added": 0, "updated": 0, "unchanged": 0, "removed": 0}
        result |= {"documents": totals["documents"], "chunks": totals["chunks"]}
        return {**result, "skipped": skipped}

    for item in report.skipped:
        real = os.path.realpath(item["path"])
        name = saved.get(real)
        if name is None:
            continue
        target = Path(real)
        backup = backups.pop(target, None)
        if backup is not None:
            os.replace(backup, target)  # the stored document still matches this file
        else:
            target.unlink(missing_ok=True)
        skipped.append({"path": name, "reason": item["reason"]})
    for backup in backups.values():
        backup.unlink(missing_ok=True)
    return {
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "skipped": skipped,
        "documents": report.documents,
        "chunks": report.chunks,
    }


# --------------------------------------------------------------------------- documents


@router.get(
    "/documents", response_model=s.DocumentList, responses=s.error_responses(401, 403, 429, 500)
)
async def list_documents(request: Request) -> JSONResponse:
    """Every indexed document, ordered by source."""
    rows = await run_in_threadpool(_index(request).store.list_documents)
    data = []
    for row in rows:
        row = dict(row)
        row["bytes"] = row.pop("size")
        data.append(row)
    return JSONResponse({"object": "list", "data": data})


@router.get(
    "/documents/{doc_id}",
    response_model=s.DocumentDetail,
    responses=s.error_responses(401, 403, 404, 422, 429, 500),
)
async def get_document(request: Request, doc_id: int = DOCUMENT_ID) -> JSONResponse:
    """One document with its extracted text (citation spans index into `text`)."""
    store = _index(request).store
    try:
        doc = await run_in_threadpool(store.get_document, doc_id)
    except NotInIndexError:
        raise _no_document(doc_id) from None
    return JSONResponse(
        {
            "id": doc_id,
            "source": doc.source,
            "media_type": doc.media_type,
            "file_type": doc.file_type,
            "content_hash": doc.content_hash,
            "text": doc.text,
            "metadata": doc.metadata,
        }
    )


@router.delete(
    "/documents/{doc_id}",
    response_model=s.Deleted,
    responses=s.error_responses(401, 403, 404, 422, 429, 500),
)
async def delete_document(request: Request, doc_id: int = DOCUMENT_ID) -> JSONResponse:
    """Remove a document (its chunks and vectors go with it; an uploaded file is deleted too)."""
    index = _index(request)
    try:
        await run_in_threadpool(_delete, index, doc_id)
    except NotInIndexError:
        raise _no_document(doc_id) from None
    return JSONResponse({"id": doc_id, "deleted": True})


def _delete(index: ServedIndex, doc_id: int) -> None:
    with index.ingest_lock:
        source = index.store.get_document(doc_id).source
        index.store.delete_sources([source])
        path = Path(source)
        if path.parent == index.uploads.resolve():
            path.unlink(missing_ok=True)  # else re-ingesting uploads/ would bring it back


def _no_document(doc_id: int) -> APIError:
    return APIError(
        404, f"no document with id {doc_id}; GET /v1/documents lists them", code="not_found"
    )


# --------------------------------------------------------------------------- search


@router.post(
    "/search",
    response_model=s.SearchResult,
    responses=s.error_responses(400, 401, 403, 413, 422, 429, 500),
)
async def search(body: s.SearchRequest, request: Request) -> JSONResponse:
    """The passages that best match `query` (hybrid by default; bm25 or dense on request)."""
    index = _index(request)
    k = body.k or index.settings.top_k
    filters = make_filters(body)
    pipeline = index.retriever(body.retriever, body.strategy, body.rerank)
    out: dict[str, Any] = {}

    def run() -> Any:
        query, narrowed = body.query, filters
        if body.self_query:
            found = index.self_query(body.query, filters)
            query, narrowed = found.query, (None if found.filters.is_empty() else found.filters)
            out["self_query"] = found.to_json()
        return pipeline.run(query, k=k, filters=narrowed)

    found = await run_in_threadpool(run)
    out["hits"] = [hit_to_json(h, document_ids=True) for h in found.hits]
    if found.generated:
        out["stages"] = found.generated
    return JSONResponse(out)
