// Hearth's web UI: chat with streamed answers and cited passages, a document viewer, and
// document upload/list/delete. Plain ES module, no framework, no build step; it talks only to
// Hearth's public HTTP API (/v1/...). Document text is untrusted: it is only ever put into the
// page as text nodes (textContent), never as HTML.

const KEY_STORAGE = "hearth.apiKey";
const MODEL_STORAGE = "hearth.model";
const RAG_MODEL = "hearth-rag";

const $ = (id) => document.getElementById(id);

const state = {
  history: [], // previous turns, [{role, content}], sent with every request
  controller: null, // AbortController of the answer being streamed
  documentCache: new Map(), // document id -> {id, source, text, ...}
  viewerDocumentId: null,
};

// ---------------------------------------------------------------------------------------------
// API access

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

async function errorFromResponse(res) {
  let message = `${res.status} ${res.statusText || "error"}`;
  let code = "";
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code || body.error.type || "";
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch {
    // Not JSON: keep the status line.
  }
  if (res.status === 401 || res.status === 403) showKeyBar();
  return new ApiError(res.status, message, code);
}

// fetch() with the API key, turning network failures and non-2xx answers into ApiError.
async function api(path, { method = "GET", json, body, signal } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `Cannot reach the Hearth server (${err.message}). Is "hearth serve" still running?`);
  }
  if (!res.ok) throw await errorFromResponse(res);
  return res;
}

function describeError(err) {
  if (err instanceof ApiError) {
    const status = err.status ? ` (HTTP ${err.status}${err.code ? `, ${err.code}` : ""})` : "";
    return `${err.message}${status}`;
  }
  return String(err && err.message ? err.message : err);
}

// Server-sent events from a fetch body: yields the data of each event. Lines may be split
// across network reads, so a partial line waits in the buffer for the rest.
async function* readServerSentEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  const takeLine = (final) => {
    const match = /\r\n|\n|\r/.exec(buffer);
    if (!match) return null;
    // A lone "\r" at the end may be the first half of "\r\n": wait for the next read.
    if (match[0] === "\r" && match.index === buffer.length - 1 && !final) return null;
    const line = buffer.slice(0, match.index);
    buffer = buffer.slice(match.index + match[0].length);
    return line;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let line;
      while ((line = takeLine(done)) !== null) {
        if (line === "") {
          if (data.length) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line[5] === " " ? 6 : 5));
        } // other fields (event:, id:, retry:) and ":" comments are not used by Hearth
      }
      if (done) break;
    }
    if (buffer.startsWith("data:")) data.push(buffer.slice(buffer[5] === " " ? 6 : 5));
    if (data.length) yield data.join("\n");
  } finally {
    reader.releaseLock();
  }
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function baseName(path) {
  const parts = String(path || "").split(/[\\/]/);
  return parts[parts.length - 1] || String(path || "");
}

function formatBytes(n) {
  if (typeof n !== "number") return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function showAlert(message) {
  $("alert-text").textContent = message;
  $("alert").hidden = false;
}

function hideAlert() {
  $("alert").hidden = true;
  $("alert-text").textContent = "";
}

// ---------------------------------------------------------------------------------------------
// API key

function showKeyBar() {
  $("key-bar").hidden = false;
  $("key-toggle").setAttribute("aria-expanded", "true");
  $("api-key").value = apiKey();
  $("api-key").focus();
}

function hideKeyBar() {
  $("key-bar").hidden = true;
  $("key-toggle").setAttribute("aria-expanded", "false");
}

function setupKeyBar() {
  $("key-toggle").addEventListener("click", () => ($("key-bar").hidden ? showKeyBar() : hideKeyBar()));
  $("key-bar").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    hideKeyBar();
    hideAlert();
    refreshAll();
  });
  $("key-clear").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    $("api-key").value = "";
  });
}

// ---------------------------------------------------------------------------------------------
// Models

// /v1/models lists the embedder too; it cannot chat, so it stays out of the picker.
function isChatModel(entry) {
  const kind = entry.type || entry.kind || (entry.hearth && entry.hearth.type) || "";
  if (kind) return kind !== "embedding";
  return !/minilm|embed/i.test(entry.id);
}

async function loadModels() {
  const res = await api("/v1/models");
  const body = await res.json();
  const ids = (body.data || []).filter(isChatModel).map((m) => m.id);
  const select = $("model");
  const wanted = select.value || localStorage.getItem(MODEL_STORAGE) || RAG_MODEL;
  select.replaceChildren(...ids.map((id) => el("option", { value: id, text: id })));
  if (ids.includes(wanted)) select.value = wanted;
  else if (ids.includes(RAG_MODEL)) select.value = RAG_MODEL;
  syncModelOptions();
}

function syncModelOptions() {
  $("extractive-field").hidden = $("model").value !== RAG_MODEL;
}

// ---------------------------------------------------------------------------------------------
// Chat

function scrollMessagesIfNear(force = false) {
  const list = $("messages");
  const near = list.scrollHeight - list.scrollTop - list.clientHeight < 120;
  if (force || near) list.scrollTop = list.scrollHeight;
}

function addUserMessage(text) {
  $("empty-state")?.remove();
  const item = el("li", { className: "msg user" }, el("div", { className: "bubble", text }));
  $("messages").append(item);
  scrollMessagesIfNear(true);
}

function locationOf(citation) {
  const parts = [];
  if (citation.page !== null && citation.page !== undefined) parts.push(`page ${citation.page}`);
  if (citation.headings && citation.headings.length) parts.push(citation.headings.join(" › "));
  parts.push(`chars ${citation.start}–${citation.end}`);
  return parts.join(" · ");
}

// One assistant turn: its answer (streamed, then replaced by the verified answer) and, beside
// it, the numbered sources it cites.
class AssistantMessage {
  constructor(model) {
    this.answer = el("div", { className: "answer", "data-state": "streaming" });
    this.meta = el("div", { className: "msg-meta", text: `${model} · thinking…` });
    this.sources = el("ol", { className: "citations", "aria-label": "Sources" });
    this.sourcesBox = el(
      "div",
      { className: "sources", hidden: true },
      el("h3", { className: "sources-title", text: "Sources" }),
      this.sources,
    );
    this.item = el(
      "li",
      { className: "msg assistant", "data-state": "streaming" },
      el("div", { className: "bubble" }, this.answer, this.meta),
      this.sourcesBox,
    );
    this.model = model;
    this.cards = new Map();
    $("messages").append(this.item);
    scrollMessagesIfNear(true);
  }

  setState(value) {
    this.item.dataset.state = value;
    this.answer.dataset.state = value;
  }

  streamed(text) {
    this.answer.textContent = text;
    this.meta.textContent = `${this.model} · writing…`;
    scrollMessagesIfNear();
  }

  finish(answer, citations, info) {
    this.renderSources(citations);
    this.renderAnswer(answer);
    if (info.steps && info.steps.length) this.renderSteps(info.steps);
    const parts = [this.model];
    if (info.usage && info.usage.completion_tokens > 0) parts.push(plural(info.usage.completion_tokens, "token"));
    parts.push(`${info.seconds.toFixed(1)} s`);
    if (info.finishReason === "length") parts.push("cut at the token limit");
    this.meta.textContent = parts.join(" · ");
    this.setState("done");
    scrollMessagesIfNear();
  }

  stopped(text) {
    this.answer.textContent = text;
    this.meta.textContent = `${this.model} · stopped`;
    this.setState("stopped");
  }

  failed(message) {
    this.answer.replaceChildren(el("span", { className: "error-text", role: "alert", text: message }));
    this.meta.textContent = `${this.model} · failed`;
    this.setState("error");
  }

  // hearth-agent's tool calls, folded under the answer: tool, input, what came back.
  renderSteps(steps) {
    const list = el("ol", { className: "agent-steps-list" });
    for (const step of steps) {
      const input = step.input ? JSON.stringify(step.input) : "";
      list.append(
        el(
          "li",
          { className: step.ok === false ? "agent-step failed" : "agent-step" },
          el("code", { className: "agent-step-call", text: `${step.tool || "answer"} ${input}` }),
          el("pre", { className: "agent-step-output", text: step.output || "" }),
        ),
      );
    }
    const box = el(
      "details",
      { className: "agent-steps" },
      el("summary", { text: plural(steps.length, "tool step") }),
      list,
    );
    this.item.querySelector(".bubble").insertBefore(box, this.meta);
  }

  // The answer as text, with each "[n]" that names a source turned into a button.
  renderAnswer(answer) {
    const nodes = [];
    let at = 0;
    for (const match of answer.matchAll(/\[(\d+)\]/g)) {
      const card = this.cards.get(Number(match[1]));
      if (!card) continue;
      if (match.index > at) nodes.push(document.createTextNode(answer.slice(at, match.index)));
      nodes.push(
        el("button", {
          type: "button",
          className: "marker",
          "aria-label": `Show source ${match[1]}`,
          text: match[0],
          onclick: () => card.click(),
        }),
      );
      at = match.index + match[0].length;
    }
    nodes.push(document.createTextNode(answer.slice(at)));
    this.answer.replaceChildren(...nodes);
  }

  renderSources(citations) {
    if (!citations || !citations.length) return;
    for (const citation of citations) {
      const card = el(
        "button",
        {
          type: "button",
          className: "cite-card",
          title: citation.source,
          "data-n": citation.n,
          onclick: () => {
            for (const other of document.querySelectorAll(".cite-card.active")) other.classList.remove("active");
            card.classList.add("active");
            openDocument(citation.document_id, { start: citation.start, end: citation.end, citation });
          },
        },
        el("span", { className: "cite-n", text: citation.n }),
        el(
          "span",
          { className: "cite-body" },
          el("span", { className: "cite-source", text: baseName(citation.source) }),
          el("span", { className: "cite-where", text: locationOf(citation) }),
          el("span", { className: "cite-quote", text: citation.text }),
        ),
      );
      this.cards.set(Number(citation.n), card);
      this.sources.append(el("li", {}, card));
    }
    this.sourcesBox.hidden = false;
  }
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("model").disabled = busy;
}

async function sendMessage(text) {
  const model = $("model").value;
  const messages = [...state.history, { role: "user", content: text }];
  addUserMessage(text);
  const view = new AssistantMessage(model);
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);

  const request = { model, messages, stream: true, stream_options: { include_usage: true } };
  if (model === RAG_MODEL && $("extractive").checked) request.hearth = { extractive: true };

  const started = performance.now();
  let raw = "";
  let verified = null;
  let usage = null;
  let finishReason = null;
  let steps = null;
  try {
    const res = await api("/v1/chat/completions", { method: "POST", json: request, signal: controller.signal });
    for await (const data of readServerSentEvents(res.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(0, chunk.error.message || "the server stopped the answer", chunk.error.code);
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) continue;
      const delta = choice.delta || {};
      if (delta.content) {
        raw += delta.content;
        view.streamed(raw);
      }
      if (delta.answer !== undefined || delta.citations !== undefined) {
        verified = { answer: delta.answer ?? raw, citations: delta.citations || [] };
      }
      if (delta.steps) steps = delta.steps;
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
    const answer = verified ? verified.answer : raw;
    view.finish(answer, verified ? verified.citations : [], {
      usage,
      finishReason,
      steps,
      seconds: (performance.now() - started) / 1000,
    });
    state.history.push({ role: "user", content: text }, { role: "assistant", content: answer });
  } catch (err) {
    if (err.name === "AbortError") {
      view.stopped(raw);
      if (raw) state.history.push({ role: "user", content: text }, { role: "assistant", content: raw });
    } else {
      view.failed(describeError(err));
    }
  } finally {
    state.controller = null;
    setBusy(false);
    $("prompt").focus();
  }
}

function setupChat() {
  const prompt = $("prompt");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || state.controller) return;
    prompt.value = "";
    sendMessage(text);
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  // Aborting the fetch closes the connection; the server stops generating when it sees that.
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("new-chat").addEventListener("click", () => {
    if (state.controller) state.controller.abort();
    state.history = [];
    $("messages").replaceChildren();
    prompt.focus();
  });
  $("model").addEventListener("change", () => {
    localStorage.setItem(MODEL_STORAGE, $("model").value);
    syncModelOptions();
  });
}

// ---------------------------------------------------------------------------------------------
// Document viewer

async function fetchDocument(id) {
  if (!state.documentCache.has(id)) {
    const res = await api(`/v1/documents/${encodeURIComponent(id)}`);
    state.documentCache.set(id, await res.json());
  }
  return state.documentCache.get(id);
}

// Shows a document's text; with a span, marks text[start:end) and scrolls it into view.
async function openDocument(id, span = null) {
  const viewer = $("viewer");
  const textBox = $("viewer-text");
  viewer.hidden = false;
  document.body.classList.add("viewer-open");
  state.viewerDocumentId = id;
  $("viewer-meta").textContent = "Loading…";
  textBox.replaceChildren();
  let doc;
  try {
    doc = await fetchDocument(id);
  } catch (err) {
    $("viewer-meta").textContent = "";
    textBox.replaceChildren(el("p", { className: "error-text", role: "alert", text: describeError(err) }));
    return;
  }
  if (state.viewerDocumentId !== id) return; // another document was opened meanwhile
  const text = doc.text || "";
  $("viewer-title").textContent = baseName(doc.source);
  $("viewer-title").title = doc.source;
  if (span) {
    const start = Math.max(0, Math.min(span.start, text.length));
    const end = Math.max(start, Math.min(span.end, text.length));
    const mark = el("mark", { className: "span", text: text.slice(start, end) });
    textBox.replaceChildren(document.createTextNode(text.slice(0, start)), mark, document.createTextNode(text.slice(end)));
    const where = span.citation ? locationOf(span.citation) : `chars ${start}–${end}`;
    $("viewer-meta").textContent = `${doc.source} · ${where}`;
    mark.scrollIntoView({ block: "center" });
  } else {
    textBox.textContent = text;
    textBox.scrollTop = 0;
    $("viewer-meta").textContent = `${doc.source} · ${plural(text.length, "character")}`;
  }
}

function closeViewer() {
  $("viewer").hidden = true;
  document.body.classList.remove("viewer-open");
  state.viewerDocumentId = null;
  for (const card of document.querySelectorAll(".cite-card.active")) card.classList.remove("active");
}

// ---------------------------------------------------------------------------------------------
// Documents: list, upload, delete

function renderDocuments(docs) {
  const list = $("doc-list");
  const totalChunks = docs.reduce((sum, d) => sum + (d.chunks || 0), 0);
  $("docs-summary").textContent = docs.length
    ? `${plural(docs.length, "document")}, ${plural(totalChunks, "chunk")}`
    : "No documents yet. Upload some to ask about them.";
  const sorted = [...docs].sort((a, b) => baseName(a.source).localeCompare(baseName(b.source)));
  list.replaceChildren(
    ...sorted.map((doc) => {
      const name = baseName(doc.source);
      const details = [doc.file_type || doc.media_type, plural(doc.chunks || 0, "chunk"), formatBytes(doc.bytes)];
      return el(
        "li",
        { className: "doc", "data-id": doc.id },
        el(
          "button",
          { type: "button", className: "doc-open", title: doc.source, onclick: () => openDocument(doc.id) },
          el("span", { className: "doc-name", text: name }),
          el("span", { className: "doc-details", text: details.filter(Boolean).join(" · ") }),
        ),
        el("button", {
          type: "button",
          className: "ghost small doc-delete",
          "aria-label": `Delete ${name}`,
          title: `Remove ${doc.source} from the index`,
          text: "Delete",
          onclick: (event) => deleteDocument(doc, event.currentTarget),
        }),
      );
    }),
  );
}

async function loadDocuments() {
  const res = await api("/v1/documents");
  const body = await res.json();
  renderDocuments(body.data || []);
}

async function deleteDocument(doc, button) {
  button.disabled = true;
  try {
    await api(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
    state.documentCache.delete(doc.id);
    if (state.viewerDocumentId === doc.id) closeViewer();
    showReport([el("p", { text: `Deleted ${baseName(doc.source)}.` })]);
    await loadDocuments();
  } catch (err) {
    button.disabled = false;
    showAlert(`Could not delete ${baseName(doc.source)}: ${describeError(err)}`);
  }
}

function showReport(nodes) {
  const box = $("ingest-report");
  box.replaceChildren(...nodes);
  box.hidden = false;
}

function renderIngestReport(report) {
  const counts = ["added", "updated", "unchanged", "removed"]
    .map((field) => `${field} ${report[field] ?? 0}`)
    .join(", ");
  const nodes = [
    el("p", { className: "report-counts", text: counts }),
    el("p", { className: "hint", text: `The index holds ${plural(report.documents ?? 0, "document")}, ${plural(report.chunks ?? 0, "chunk")}.` }),
  ];
  const skipped = report.skipped || [];
  if (skipped.length) {
    nodes.push(
      el("p", { className: "report-skipped-title", text: `Skipped ${plural(skipped.length, "file")}:` }),
      el(
        "ul",
        { className: "report-skipped" },
        ...skipped.map((s) => el("li", {}, el("strong", { text: baseName(s.path) }), `: ${s.reason}`)),
      ),
    );
  }
  showReport(nodes);
}

async function uploadFiles(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  const dropzone = $("dropzone");
  dropzone.classList.add("busy");
  showReport([el("p", { text: `Uploading ${plural(files.length, "file")}…` })]);
  try {
    const res = await api("/v1/ingest", { method: "POST", body: form });
    renderIngestReport(await res.json());
    state.documentCache.clear(); // re-ingested documents may have new text
    await loadDocuments();
  } catch (err) {
    showReport([el("p", { className: "error-text", role: "alert", text: `Upload failed: ${describeError(err)}` })]);
  } finally {
    dropzone.classList.remove("busy");
    $("upload").value = "";
  }
}

function setupDocuments() {
  $("upload").addEventListener("change", (event) => uploadFiles([...event.target.files]));
  $("docs-refresh").addEventListener("click", () => loadDocuments().catch((err) => showAlert(describeError(err))));
  const dropzone = $("dropzone");
  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    uploadFiles([...event.dataTransfer.files]);
  });
  $("viewer-close").addEventListener("click", closeViewer);
  $("alert-close").addEventListener("click", hideAlert);
}

// ---------------------------------------------------------------------------------------------

async function refreshAll() {
  const results = await Promise.allSettled([loadModels(), loadDocuments()]);
  const failures = results.filter((r) => r.status === "rejected").map((r) => describeError(r.reason));
  if (failures.length) showAlert([...new Set(failures)].join(" — "));
}

setupKeyBar();
setupChat();
setupDocuments();
refreshAll();
