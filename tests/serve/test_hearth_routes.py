"""Hearth's own routes on a real server: upload and ingest, list/read/delete documents, search."""

from __future__ import annotations

import json

import pytest

from hearth.serve import schemas as s

PARKING = "# Parking\n\nThe parking garage under building D opens at 6 am on weekdays.\n"


def search(http, query: str, **extra) -> list[dict]:
    response = http.post("/v1/search", json={"query": query, **extra})
    assert response.status_code == 200, response.text
    s.SearchResult.model_validate(response.json())
    return response.json()["hits"]


def documents(http) -> list[dict]:
    response = http.get("/v1/documents")
    assert response.status_code == 200
    s.DocumentList.model_validate(response.json())
    return response.json()["data"]


def test_upload_list_read_search_delete(hearth_server, served_index):
    with hearth_server.http() as http:
        before = documents(http)
        report = http.post(
            "/v1/ingest", files=[("files", ("parking.md", PARKING, "text/markdown"))]
        )
        assert report.status_code == 200, report.text
        body = s.IngestReport.model_validate(report.json())
        assert (body.added, body.updated, body.skipped) == (1, 0, [])
        assert body.documents == len(before) + 1

        saved = served_index.resolve() / "uploads" / "parking.md"
        assert saved.read_text() == PARKING
        assert not (served_index.resolve() / ".upload-tmp").exists()  # no scratch left behind
        listed = {d["source"]: d for d in documents(http)}
        doc = listed[str(saved)]
        assert doc["file_type"] == "md" and doc["chunks"] >= 1 and doc["bytes"] == len(PARKING)

        detail = http.get(f"/v1/documents/{doc['id']}").json()
        s.DocumentDetail.model_validate(detail)
        assert detail["text"].strip() == PARKING.strip()

        hits = search(http, "when does the parking garage open", k=2)
        assert hits[0]["document_id"] == doc["id"]
        assert detail["text"][hits[0]["start"] : hits[0]["end"]] == hits[0]["text"]
        bm25 = search(http, "parking garage", retriever="bm25", filters={"file_types": ["md"]})
        assert bm25[0]["source"] == str(saved)

        deleted = http.delete(f"/v1/documents/{doc['id']}")
        assert deleted.json() == {"id": doc["id"], "deleted": True}
        assert not saved.exists()
        assert http.get(f"/v1/documents/{doc['id']}").status_code == 404
        assert http.delete(f"/v1/documents/{doc['id']}").status_code == 404
        assert all(h["document_id"] != doc["id"] for h in search(http, "parking garage"))
        assert len(documents(http)) == len(before)


def test_bad_upload_is_skipped_and_the_stored_version_kept(hearth_server, served_index):
    good = json.dumps({"lockers": "Lockers on floor 2 open with the badge."})
    with hearth_server.http() as http:
        first = http.post(
            "/v1/ingest", files=[("files", ("lockers.json", good, "application/json"))]
        )
        assert first.json()["added"] == 1
        doc = next(d for d in documents(http) if d["source"].endswith("/uploads/lockers.json"))

        files = [
            ("files", ("lockers.json", "{not json", "application/json")),
            ("files", ("../escape.md", PARKING, "text/markdown")),
            ("files", ("tool.exe", b"MZ\x00\x01", "application/octet-stream")),
        ]
        report = http.post("/v1/ingest", files=files)
        assert report.status_code == 200
        body = report.json()
        assert body["added"] == body["updated"] == 0
        reasons = {item["path"]: item["reason"] for item in body["skipped"]}
        assert set(reasons) == {"lockers.json", "../escape.md", "tool.exe"}
        assert "unsafe file name" in reasons["../escape.md"]
        assert "unsupported" in reasons["tool.exe"]

        # The earlier version is still stored and still on disk; nothing escaped uploads/.
        kept = http.get(f"/v1/documents/{doc['id']}").json()
        assert "badge" in kept["text"]
        uploads = served_index.resolve() / "uploads"
        assert (uploads / "lockers.json").read_text() == good
        assert not (served_index.resolve() / "escape.md").exists()
        assert not (uploads / "tool.exe").exists()
        assert not (served_index.resolve() / ".upload-tmp").exists()  # backups restored, gone
        http.delete(f"/v1/documents/{doc['id']}")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"query": ""}, 422),
        ({"query": "x", "k": 0}, 422),
        ({"query": "x", "retriever": "magic"}, 422),
        ({"query": "x", "filters": {"nope": 1}}, 422),
        ({"query": "x", "filters": {"date_from": "June"}}, 422),
        ({"query": "x", "self_query": "maybe"}, 422),
    ],
)
def test_search_validates_its_body(hearth_server, body, status):
    with hearth_server.http() as http:
        response = http.post("/v1/search", json=body)
    assert response.status_code == status
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_ingest_without_files_is_a_422(hearth_server):
    with hearth_server.http() as http:
        response = http.post("/v1/ingest", data={"other": "x"})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "files"


def test_search_date_filters_and_self_query(hearth_server):
    """The small corpus's files carry no date of their own: each is dated by its mtime (today)."""
    with hearth_server.http() as http:
        assert search(http, "parking garage", filters={"date_from": "2000-01-01"})
        assert search(http, "parking garage", filters={"date_to": "2000-01-01"}) == []
        response = http.post(
            "/v1/search",
            json={"query": "markdown notes about parking from 2019", "self_query": True},
        )
        assert response.status_code == 200, response.text
        got = s.SearchResult.model_validate(response.json())
        assert got.self_query is not None
        assert got.self_query["filters"]["date_from"] == "2019-01-01"
        assert "parking" in got.self_query["query"].lower()
        assert got.hits == []  # nothing in the index is from 2019
