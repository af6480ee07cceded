"""The web UI in a real browser: Debian's chromium, driven by playwright, against a real
`hearth serve` (real model, real embedder, real SQLite index) on 127.0.0.1."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/hearth_ui.png")
# Generation runs on a shared 2-core CPU: give the browser waits room.
WAIT_MS = 180_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """A server of its own, so uploads and deletes here never touch other modules' index."""
    from tests.serve_support import make_small_index, start_hearth_server

    index = make_small_index(tmp_path_factory.mktemp("webui") / "index")
    with start_hearth_server(index) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"]
        )
        yield chromium
        chromium.close()


class PageWatch:
    """Everything the page logged and requested, to assert on afterwards."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))

    def assert_only_local(self, base_url: str) -> None:
        network = [u for u in self.requests if not u.startswith(("data:", "blob:"))]
        assert network, "the page made no requests at all"
        outside = [u for u in network if not u.startswith(base_url + "/")]
        assert not outside, f"requests left the local server: {outside}"


def open_page(browser, server, key: str | None):
    """A fresh browser context whose localStorage holds `key` (None: no key saved)."""
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(WAIT_MS)
    if key is not None:
        context.add_init_script(f"localStorage.setItem('hearth.apiKey', {json.dumps(key)})")
    page = context.new_page()
    watch = PageWatch(page)
    page.goto(server.base_url + "/")
    return context, page, watch


def mark_in_view(page) -> bool:
    """Whether the highlighted span overlaps the visible part of the viewer's scroll box."""
    return page.evaluate(
        """() => {
          const m = document.querySelector('#viewer-text mark').getBoundingClientRect();
          const box = document.getElementById('viewer-text').getBoundingClientRect();
          return m.bottom > box.top && m.top < box.bottom;
        }"""
    )


def test_page_loads_offline_and_lists_chat_models(browser, ui_server):
    context, page, watch = open_page(browser, ui_server, ui_server.api_key)
    try:
        model = page.get_by_label("Model")
        page.wait_for_function("document.querySelectorAll('#model option').length > 1")
        options = model.locator("option").all_text_contents()
        assert "hearth-rag" in options and "local:qwen2.5-coder-0.5b" in options
        assert model.input_value() == "hearth-rag"
        assert not any("minilm" in o.lower() for o in options), options  # the embedder can't chat
        page.locator("#doc-list li").first.wait_for()
        assert page.locator("#alert").is_hidden()
        page.wait_for_load_state("networkidle")
        assert watch.errors == []
        watch.assert_only_local(ui_server.base_url)
    finally:
        context.close()


def test_ask_streams_answer_then_citation_opens_exact_span(browser, ui_server):
    context, page, watch = open_page(browser, ui_server, ui_server.api_key)
    try:
        page.wait_for_function("document.querySelectorAll('#model option').length > 1")
        # Record the answer's length at every change while it is still streaming.
        page.evaluate(
            """() => {
              window.__streamed = [];
              new MutationObserver(() => {
                const a = document.querySelector('.msg.assistant:last-child .answer');
                if (a && a.dataset.state === 'streaming') {
                  window.__streamed.push(a.textContent.length);
                }
              }).observe(document.getElementById('messages'),
                         {subtree: true, childList: true, characterData: true});
            }"""
        )
        prompt = page.get_by_label("Message")
        prompt.fill("How do I reset the door code?")  # handbook.md of the small index
        prompt.press("Enter")
        page.locator(".msg.assistant[data-state=done]").wait_for()

        streamed = page.evaluate("window.__streamed")
        growing = sorted({n for n in streamed if n > 0})
        assert len(growing) >= 2, f"the answer did not arrive in pieces: {streamed}"
        answer = page.locator(".msg.assistant .answer").last.text_content()
        assert answer.strip()

        card = page.locator(".cite-card").first
        card.wait_for()
        quote = card.locator(".cite-quote").text_content()
        assert quote.strip()
        card.click()
        mark = page.locator("#viewer-text mark")
        mark.wait_for()
        assert mark.text_content() == quote
        assert mark_in_view(page), "the highlighted span was not scrolled into view"
        source_name = card.locator(".cite-source").text_content()
        assert page.locator("#viewer-title").text_content() == source_name

        # A marker in the answer opens the same kind of view.
        markers = page.locator(".msg.assistant .answer .marker")
        if markers.count():
            markers.first.click()
            page.locator("#viewer-text mark").wait_for()

        page.screenshot(path=str(SCREENSHOT))
        assert watch.errors == []
        watch.assert_only_local(ui_server.base_url)
    finally:
        context.close()


def test_stop_ends_the_answer_and_history_goes_with_the_next_question(browser, ui_server):
    context, page, watch = open_page(browser, ui_server, ui_server.api_key)
    try:
        page.wait_for_function("document.querySelectorAll('#model option').length > 1")
        page.get_by_label("Model").select_option("local:smollm2")
        sent = []
        page.on(
            "request",
            lambda r: r.url.endswith("/v1/chat/completions") and sent.append(r.post_data_json),
        )
        prompt = page.get_by_label("Message")
        prompt.fill("Write a very long story about a lighthouse keeper and his cat.")
        prompt.press("Enter")
        page.wait_for_function(
            "document.querySelector('.msg.assistant .answer').textContent.length > 0"
        )
        page.get_by_role("button", name="Stop").click()
        stopped = page.locator(".msg.assistant[data-state=stopped] .answer")
        stopped.wait_for()
        partial = stopped.text_content()
        assert partial
        assert page.get_by_role("button", name="Send").is_visible()

        prompt.fill("Give the cat a name.")
        prompt.press("Enter")
        page.locator(".msg.assistant[data-state=done]").wait_for()
        assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant", "user"]
        assert sent[-1]["messages"][1]["content"] == partial
        assert sent[-1]["stream"] is True
        assert sent[-1]["stream_options"] == {"include_usage": True}
        assert watch.errors == []
    finally:
        context.close()


def test_agent_answer_shows_its_tool_steps(browser, ui_server):
    context, page, watch = open_page(browser, ui_server, ui_server.api_key)
    try:
        page.wait_for_function("document.querySelectorAll('#model option').length > 1")
        page.get_by_label("Model").select_option("hearth-agent")
        prompt = page.get_by_label("Message")
        prompt.fill("Use the calculator to compute 1234 * 5678, then tell me the result.")
        prompt.press("Enter")
        page.locator(".msg.assistant[data-state=done]").wait_for(timeout=240_000)
        steps = page.locator(".msg.assistant .agent-steps")
        assert "tool step" in steps.locator("summary").text_content()
        steps.locator("summary").click()
        assert "calculator" in steps.locator(".agent-step-call").first.text_content()
        assert "7006652" in steps.locator(".agent-step-output").first.text_content()
        assert watch.errors == []
        watch.assert_only_local(ui_server.base_url)
    finally:
        context.close()


def test_upload_lists_then_delete_removes_document(browser, ui_server, tmp_path):
    name = f"webui-note-{uuid.uuid4().hex[:8]}.md"
    note = tmp_path / name
    note.write_text("# Lantern room\n\nThe lantern room key hangs behind the blue door.\n")
    context, page, watch = open_page(browser, ui_server, ui_server.api_key)
    try:
        page.locator("#doc-list li").first.wait_for()
        page.get_by_label("Upload files").set_input_files(str(note))
        listed = page.locator("#doc-list .doc-name", has_text=name)
        listed.wait_for()
        assert "added 1" in page.locator("#ingest-report").text_content()

        listed.click()  # opens the uploaded document's text
        page.locator("#viewer-text", has_text="behind the blue door").wait_for()

        page.get_by_role("button", name=f"Delete {name}").click()
        listed.wait_for(state="detached")
        assert page.locator("#viewer").is_hidden()
        assert watch.errors == []
    finally:
        context.close()


def test_api_errors_are_shown_and_a_key_fixes_them(browser, ui_server):
    context, page, _ = open_page(browser, ui_server, "wrong-key")
    try:
        alert = page.locator("#alert")
        alert.wait_for()
        assert "401" in alert.text_content()
        key_field = page.get_by_label("API key", exact=True)
        assert key_field.is_visible()

        key_field.fill(ui_server.api_key)
        page.get_by_role("button", name="Save key").click()
        page.wait_for_function("document.querySelectorAll('#model option').length > 1")
        assert alert.is_hidden()

        # An unknown model: the server's 404 message shows in the conversation.
        page.evaluate(
            """() => {
              const s = document.getElementById('model');
              s.append(new Option('no-such-model', 'no-such-model'));
              s.value = 'no-such-model';
            }"""
        )
        prompt = page.get_by_label("Message")
        prompt.fill("hello")
        prompt.press("Enter")
        failed = page.locator(".msg.assistant[data-state=error] .error-text")
        failed.wait_for()
        assert "404" in failed.text_content()
        assert "no-such-model" in failed.text_content()
    finally:
        context.close()
