"""HTML (.html, .htm): the page's main content as text, headings as markdown `#` lines.

Hand-written walk over BeautifulSoup's tree (lxml parser) because a plain get_text() keeps
menus, scripts and footers and loses the headings the splitter needs for heading paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hearth.errors import LoadError
from hearth.ingest.dates import HTML_DATE_META, iso_date
from hearth.ingest.encoding import decode_bytes
from hearth.ingest.loaders.base import Parsed, normalize_newlines

# Never content: code, styling, page chrome, forms and embedded objects.
_DROP = {
    "script", "style", "noscript", "template", "nav", "aside", "button", "input",
    "select", "textarea", "iframe", "object", "embed", "svg", "canvas", "audio", "video",
    "map", "dialog", "head", "title", "meta", "link",
}  # fmt: skip
_DROP_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary", "menu"}
# header/footer are page chrome only outside a sectioning element (an article's own
# header holds its title).
_SECTIONING = {"article", "section", "main", "aside", "nav", "blockquote"}
_BLOCKS = {
    "p", "div", "section", "article", "main", "body", "html", "header", "footer", "ul", "ol",
    "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "blockquote", "figure",
    "figcaption", "details", "summary", "address", "hr", "caption", "center", "fieldset",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_SPACES = re.compile(r"[ \t\f\v\r\n\u00a0]+")


def parse_html(path: Path, data: bytes) -> Parsed:
    soup = _soup(data)
    title_tag = soup.find("title")
    title = _collapse(title_tag.get_text(" ")) if title_tag else ""
    day = _meta_date(soup)  # before _main_content, which drops the head
    root = _main_content(soup)
    text = normalize_newlines(_Renderer().render(root)) if root is not None else ""
    if not text.strip():
        raise LoadError(f"{path}: the HTML page has no text content (only markup or scripts)")
    metadata: dict[str, Any] = {}
    if title:
        metadata["title"] = title
    if day:
        metadata["date"], metadata["date_from"] = day, "meta"
    return Parsed(text, metadata)


def _meta_date(soup: Any) -> str | None:
    """The page's date from a `<meta name|property|itemprop=... content=...>` tag (the ones
    publishers set: date, dc.date, article:published_time...), or None."""
    for tag in soup.find_all("meta"):
        key = (tag.get("name") or tag.get("property") or tag.get("itemprop") or "").lower()
        if key in HTML_DATE_META and (day := iso_date(tag.get("content") or "")):
            return day
    return None


def _soup(data: bytes) -> Any:
    from bs4 import BeautifulSoup
    from bs4.dammit import EncodingDetector

    declared = EncodingDetector.find_declared_encoding(data, is_html=True)
    if declared:  # the page names its charset: let the parser honour it
        return BeautifulSoup(data, "lxml")
    return BeautifulSoup(decode_bytes(data), "lxml")


def _main_content(soup: Any) -> Any:
    """<main> if there is one, else the <article>(s), else <body>; with chrome removed."""
    for tag in soup.find_all(list(_DROP)):
        tag.decompose()
    for tag in soup.find_all(attrs={"role": True}):
        if not tag.decomposed and str(tag.get("role", "")).lower() in _DROP_ROLES:
            tag.decompose()
    for tag in soup.find_all(attrs={"hidden": True}):
        if not tag.decomposed:
            tag.decompose()
    page_chars = len((soup.body or soup).get_text())
    for form in soup.find_all("form"):
        # Some frameworks (ASP.NET WebForms) wrap the whole page in one <form>: keep that
        # one's content; a search box or sign-up form is chrome.
        wraps_page = form.find(["main", "article", "h1"]) is not None
        if wraps_page or len(form.get_text()) > page_chars / 2:
            form.unwrap()
        else:
            form.decompose()
    for tag in soup.find_all(["header", "footer"]):
        if not tag.decomposed and not any(p.name in _SECTIONING for p in tag.parents):
            tag.decompose()
    main = soup.find("main") or soup.find(attrs={"role": "main"})
    if main is not None:
        return main
    articles = soup.find_all("article")
    if len(articles) == 1:
        return articles[0]
    if articles:  # several articles and nothing around them worth keeping: render them all
        wrapper = soup.new_tag("div")
        for article in articles:
            wrapper.append(article.extract())
        return wrapper
    return soup.body or soup


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


class _Renderer:
    """Walks the tree once, emitting blocks (paragraphs, headings, list items, code)."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.inline: list[str] = []
        self.prefix = ""

    def render(self, root: Any) -> str:
        self.visit(root)
        self.flush()
        return "\n\n".join(self.blocks)

    def flush(self) -> None:
        lines = [_collapse(line) for line in "".join(self.inline).split("\n")]
        text = "\n".join(line for line in lines if line)
        self.inline = []
        if text:  # a list item's "- " waits for its first text, even inside a nested <p>
            self.blocks.append(self.prefix + text)
            self.prefix = ""

    def visit(self, node: Any) -> None:
        from bs4 import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction

        if isinstance(node, NavigableString):
            if not isinstance(node, Comment | Declaration | Doctype | ProcessingInstruction):
                self.inline.append(_SPACES.sub(" ", str(node)))
            return
        name = node.name
        if name in _HEADINGS:
            self.flush()
            heading = _collapse(node.get_text(" "))
            if heading:
                self.blocks.append("#" * _HEADINGS[name] + " " + heading)
        elif name == "pre":
            self.flush()
            code = node.get_text().strip("\n")
            if code.strip():
                self.blocks.append("```\n" + code + "\n```")
        elif name == "br":
            self.inline.append("\n")
        elif name == "li":
            self.flush()
            self.prefix = "- "
            self._children(node)
            self.flush()
        elif name == "tr":
            self.flush()
            cells = [_collapse(c.get_text(" ")) for c in node.find_all(["td", "th"])]
            row = " | ".join(c for c in cells if c)
            if row:
                self.blocks.append(row)
        elif name in _BLOCKS:
            self.flush()
            self._children(node)
            self.flush()
        else:
            self._children(node)

    def _children(self, node: Any) -> None:
        for child in list(node.children):
            self.visit(child)
