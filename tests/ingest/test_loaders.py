"""Each loader on real files written to tmp_path: text, structure metadata, and errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fpdf import FPDF

from hearth.errors import LoadError, UnsupportedFileError
from hearth.ingest import LOADERS, hash_file, load_document


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def make_pdf(path: Path, pages: list[str]) -> Path:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


# -- common behaviour ------------------------------------------------------------------------


def test_document_fields_hash_and_absolute_source(tmp_path, monkeypatch):
    path = write(tmp_path / "notes.md", "# Notes\n\nBuy milk.\n")
    monkeypatch.chdir(tmp_path)
    doc = load_document(Path("notes.md"))
    raw = path.read_bytes()
    assert doc.source == str(path.resolve())
    assert doc.content_hash == hashlib.sha256(raw).hexdigest() == hash_file(path)
    assert doc.media_type == "text/markdown"
    assert doc.file_type == "md"


@pytest.mark.parametrize(
    ("name", "file_type"),
    [("a.md", "md"), ("a.markdown", "md"), ("a.mdx", "md"), ("a.txt", "txt"),
     ("a.text", "txt"), ("a.rst", "txt"), ("a.LOG", "txt"), ("a.htm", "html"),
     ("a.html", "html"), ("a.json", "json"), ("a.jsonl", "jsonl"), ("a.csv", "csv")],
)  # fmt: skip
def test_extensions_map_to_file_types(tmp_path, name, file_type):
    content = {
        "json": '{"k": "v"}',
        "jsonl": '{"k": "v"}\n',
        "csv": "k\nv\n",
        "html": "<p>v</p>",
    }.get(file_type, "some words")
    doc = load_document(write(tmp_path / name, content))
    assert doc.file_type == file_type
    assert "v" in doc.text or "words" in doc.text


def test_unknown_extension_is_unsupported_with_reason(tmp_path):
    path = write(tmp_path / "photo.png", b"\x89PNG\r\n")
    with pytest.raises(UnsupportedFileError, match=r"unsupported file type '\.png'"):
        load_document(path)
    assert ".png" not in LOADERS


def test_binary_content_with_text_extension_is_unsupported(tmp_path):
    path = write(tmp_path / "data.txt", b"header\x00\x01\x02\x03" + bytes(200))
    with pytest.raises(UnsupportedFileError, match="binary content") as info:
        load_document(path)
    assert str(path) in str(info.value)


def test_oversize_file_is_refused_before_reading(tmp_path):
    path = write(tmp_path / "big.txt", "word " * 100)
    with pytest.raises(LoadError) as info:
        load_document(path, max_bytes=100)
    message = str(info.value)
    assert str(path) in message and "500 bytes" in message and "limit of 100 bytes" in message
    assert load_document(path, max_bytes=500).text.startswith("word")


def test_empty_and_blank_files_are_load_errors(tmp_path):
    with pytest.raises(LoadError, match="empty file"):
        load_document(write(tmp_path / "empty.md", b""))
    with pytest.raises(LoadError, match="no text content"):
        load_document(write(tmp_path / "blank.txt", "  \n\n\t\n"))


def test_missing_file_is_a_load_error(tmp_path):
    with pytest.raises(LoadError, match="file not found"):
        load_document(tmp_path / "gone.txt")


# -- text and markdown -----------------------------------------------------------------------


def test_markdown_keeps_headings_and_normalises_newlines(tmp_path):
    path = write(tmp_path / "guide.md", b"# Guide\r\n\r\n## Setup\r\nRun it.\r\n")
    doc = load_document(path)
    assert doc.text == "# Guide\n\n## Setup\nRun it.\n"
    assert doc.metadata["title"] == "Guide"


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16", "utf-8-sig"])
def test_text_files_in_common_encodings(tmp_path, encoding):
    text = "Café crème – naïve façade. Größe über Straße."
    if encoding == "latin-1":
        text = text.replace("–", "-")
    doc = load_document(write(tmp_path / "note.txt", text.encode(encoding)))
    assert doc.text == text
    assert doc.file_type == "txt"


# -- html ------------------------------------------------------------------------------------

PAGE = """<!doctype html><html><head><title>House guide</title>
<style>.hidden { display: none }</style><script>var token = "SCRIPTTEXT";</script></head>
<body><header><a href="/">SITEBANNER</a></header>
<nav><ul><li>NAVLINK home</li><li>NAVLINK about</li></ul></nav>
<main><article><header><h1>House manual</h1></header>
<p>Welcome to the <b>house</b>. Read this first.</p>
<h2>Door code</h2><p>The code is <em>4512</em>.<br>Press enter.</p>
<ul><li>First item</li><li><p>Second item</p></li></ul>
<pre># not a heading
echo hi</pre>
<form><input value="FORMTEXT"><button>SUBMITTEXT</button></form>
</article><aside>ASIDETEXT</aside></main>
<footer>FOOTERTEXT copyright</footer></body></html>"""


def test_html_keeps_main_content_only(tmp_path):
    doc = load_document(write(tmp_path / "page.html", PAGE))
    for chrome in ("SCRIPTTEXT", "SITEBANNER", "NAVLINK", "FORMTEXT", "SUBMITTEXT", "ASIDETEXT",
                   "FOOTERTEXT", "display: none"):  # fmt: skip
        assert chrome not in doc.text
    assert "Welcome to the house. Read this first." in doc.text
    assert "The code is 4512.\nPress enter." in doc.text
    assert "- First item" in doc.text and "- Second item" in doc.text
    assert doc.metadata["title"] == "House guide"


def test_html_headings_become_markdown_lines_and_pre_a_fence(tmp_path):
    doc = load_document(write(tmp_path / "page.html", PAGE))
    lines = doc.text.split("\n")
    assert "# House manual" in lines  # the article's own header is content, not chrome
    assert "## Door code" in lines
    assert "```\n# not a heading\necho hi\n```" in doc.text


def test_html_without_main_uses_body_and_drops_page_header(tmp_path):
    html = (
        "<html><body><header>TOPBAR</header><h1>Title</h1><div><p>Body text.</p></div>"
        "<div role='navigation'>ROLENAV</div><footer>BOTTOM</footer></body></html>"
    )
    doc = load_document(write(tmp_path / "plain.htm", html))
    assert doc.text == "# Title\n\nBody text."


def test_html_declared_charset_is_honoured(tmp_path):
    html = '<html><head><meta charset="windows-1252"></head><body><p>Café – ok</p></body></html>'
    doc = load_document(write(tmp_path / "old.html", html.encode("cp1252")))
    assert "Café – ok" in doc.text


def test_html_with_only_scripts_is_a_load_error(tmp_path):
    html = "<html><head><script>x()</script></head><body><nav>menu</nav></body></html>"
    with pytest.raises(LoadError, match="no text content"):
        load_document(write(tmp_path / "empty.html", html))


# -- pdf -------------------------------------------------------------------------------------


def test_pdf_text_per_page_with_page_spans(tmp_path):
    path = make_pdf(
        tmp_path / "manual.pdf",
        ["Alpha page about boilers.", "Beta page about fuses.", "", "Delta page about doors."],
    )
    doc = load_document(path)
    assert doc.file_type == "pdf" and doc.media_type == "application/pdf"
    pages = doc.metadata["pages"]
    assert [p[2] for p in pages] == [1, 2, 4]  # the blank third page has no span
    assert doc.metadata["page_count"] == 4
    found = {p[2]: doc.text[p[0] : p[1]] for p in pages}
    assert "Alpha" in found[1] and "Beta" in found[2] and "Delta" in found[4]
    assert all(a[1] <= b[0] for a, b in zip(pages, pages[1:], strict=False))


@pytest.mark.parametrize(
    "content",
    [b"%PDF-1.4\n1 0 obj garbage garbage", b"this is not a pdf at all", "truncated"],
)
def test_corrupt_pdf_is_a_load_error_naming_the_file(tmp_path, content):
    if content == "truncated":
        whole = make_pdf(tmp_path / "whole.pdf", ["Some text."]).read_bytes()
        content = whole[: len(whole) // 3]
    path = write(tmp_path / "broken.pdf", content)
    with pytest.raises(LoadError) as info:
        load_document(path)
    assert str(path) in str(info.value)
    assert "corrupt" in str(info.value)


def test_pdf_without_text_may_be_scanned(tmp_path):
    path = make_pdf(tmp_path / "scan.pdf", ["", ""])
    with pytest.raises(LoadError, match="no extractable text.*scanned"):
        load_document(path)


def test_encrypted_pdf_is_a_load_error(tmp_path):
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.cell(0, 10, "Secret")
    pdf.set_encryption(owner_password="owner", user_password="user")
    path = tmp_path / "locked.pdf"
    pdf.output(str(path))
    with pytest.raises(LoadError, match="encrypted"):
        load_document(path)


# -- json and jsonl --------------------------------------------------------------------------


def test_json_becomes_key_path_lines_with_json_paths(tmp_path):
    data = {
        "house": {
            "door": {"code": 4512, "locked": True},
            "rooms": [{"name": "Kitchen"}, {"name": "Attic"}],
            "tags": ["warm", "old"],
            "odd key": None,
        }
    }
    doc = load_document(write(tmp_path / "house.json", json.dumps(data, indent=2)))
    lines = doc.text.split("\n")
    assert "house.door.code: 4512" in lines
    assert "house.door.locked: true" in lines
    assert "house.rooms[1].name: Attic" in lines
    assert 'house.tags: ["warm", "old"]' in lines
    assert 'house["odd key"]: null' in lines
    spans = {path: doc.text[s:e] for s, e, path in doc.metadata["json_paths"]}
    assert spans["$.house.rooms[1].name"] == "house.rooms[1].name: Attic"
    assert spans["$.house.door.code"] == "house.door.code: 4512"


def test_json_top_level_records_are_separated_by_blank_lines(tmp_path):
    records = [{"id": 1, "title": "first"}, {"id": 2, "title": "second"}]
    doc = load_document(write(tmp_path / "list.json", json.dumps(records)))
    assert doc.text == "id: 1\ntitle: first\n\nid: 2\ntitle: second"
    assert [p for _, _, p in doc.metadata["json_paths"]] == [
        "$[0].id", "$[0].title", "$[1].id", "$[1].title"
    ]  # fmt: skip


def test_malformed_json_names_path_line_and_column(tmp_path):
    path = write(tmp_path / "bad.json", '{\n  "a": 1,\n  "b": [1, 2,,]\n}')
    with pytest.raises(LoadError) as info:
        load_document(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "column 14" in message


def test_jsonl_records_and_bad_line_number(tmp_path):
    good = write(tmp_path / "log.jsonl", '{"user": "ann", "n": 1}\n\n{"user": "bob", "n": 2}\n')
    doc = load_document(good)
    assert doc.file_type == "jsonl"
    assert doc.text == "user: ann\nn: 1\n\nuser: bob\nn: 2"
    assert doc.metadata["json_paths"][2][2] == "$[1].user"
    bad = write(tmp_path / "bad.jsonl", '{"a": 1}\n{"a": 2}\n\n{"a": 3,}\n')
    with pytest.raises(LoadError) as info:
        load_document(bad)
    assert str(bad) in str(info.value) and "line 4" in str(info.value)


# -- csv -------------------------------------------------------------------------------------


def test_csv_rows_as_column_value_lines_with_row_spans(tmp_path):
    path = write(tmp_path / "people.csv", 'name;city;age\nAlice;Paris;30\nBob;"Lyon; FR";41\n')
    doc = load_document(path)
    assert doc.metadata["delimiter"] == ";"
    assert doc.text == "name: Alice\ncity: Paris\nage: 30\n\nname: Bob\ncity: Lyon; FR\nage: 41"
    rows = {n: doc.text[s:e] for s, e, n in doc.metadata["rows"]}
    assert rows[2].startswith("name: Alice") and rows[3].endswith("age: 41")


def test_csv_without_header_names_columns(tmp_path):
    doc = load_document(write(tmp_path / "nums.csv", "1,2\n3,4\n"))
    assert doc.text == "col1: 1\ncol2: 2\n\ncol1: 3\ncol2: 4"
    assert [n for _, _, n in doc.metadata["rows"]] == [1, 2]


def test_csv_tab_delimited_is_sniffed(tmp_path):
    doc = load_document(write(tmp_path / "t.csv", "item\tprice\nlamp\t12\nrug\t40\n"))
    assert "item: rug\nprice: 40" in doc.text


def test_html_page_wrapped_in_one_form_keeps_its_content(tmp_path):
    html = (
        "<html><body><form action='/page.aspx'><h1>Policies</h1><p>Doors lock at ten.</p>"
        "<input type='hidden' value='VIEWSTATE'></form>"
        "<form><input name='q'><button>SEARCHBUTTON</button> search the site</form></body></html>"
    )
    doc = load_document(write(tmp_path / "aspx.html", html))
    assert doc.text == "# Policies\n\nDoors lock at ten."
