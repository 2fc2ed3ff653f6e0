// The gateway's chat page: no build step, nothing from other sites, and the model's text is only
// ever set as text (textContent), never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const store = { model: "gateway.model", conversation: "gateway.conversation", local: "gateway.local", key: "gateway.key" };
const state = { controller: null, local: false, busy: false };

// ---- talking to the gateway ------------------------------------------------------------------

function headers(extra = {}) {
  const key = sessionStorage.getItem(store.key);
  return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
}

async function api(path, options = {}) {
  let response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (response.status === 401) {
    await askForKey();
    response = await fetch(path, { ...options, headers: headers(options.headers) });
  }
  return response;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error.message;
  } catch {
    return `The gateway answered HTTP ${response.status}.`;
  }
}

function askForKey() {
  const dialog = $("key-dialog");
  $("change-key").hidden = false;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      sessionStorage.setItem(store.key, $("key").value.trim());
      resolve();
    }, { once: true });
    if (!dialog.open) dialog.showModal();
  });
}

// ---- the page's parts --------------------------------------------------------------------------

function setStatus(name, text) {
  const status = $("status");
  status.dataset.state = name;
  status.textContent = text;
}

function setBusy(busy) {
  state.busy = busy;
  const button = $("send");
  button.textContent = busy ? "Stop" : "Send";
  button.dataset.mode = busy ? "stop" : "send";
}

function bubble(role, text = "") {
  const element = document.createElement("div");
  element.className = `message ${role}`;
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = text;
  element.append(body);
  $("messages").append(element);
  element.scrollIntoView({ block: "end" });
  return element;
}

function note(element, className, text) {
  const line = document.createElement("span");
  line.className = className;
  line.textContent = text;
  if (className === "meta") element.append(line);
  else element.insertBefore(line, element.querySelector(".body"));
  return line;
}

function showError(message, element) {
  setStatus("error", `Error: ${message}`);
  const target = element || bubble("error");
  target.classList.add("error");
  note(target, "meta", `Error: ${message}`);
}

// ---- models and conversations ------------------------------------------------------------------

async function loadModels() {
  const response = await api("/v1/models");
  if (!response.ok) return showError(await errorMessage(response));
  const select = $("model");
  select.replaceChildren();
  for (const model of (await response.json()).data) {
    if (/embed/i.test(model.id)) continue; // embedding models (hash-embedding, ...) cannot chat
    const option = document.createElement("option");
    option.value = option.textContent = model.id;
    select.append(option);
  }
  const remembered = localStorage.getItem(store.model);
  if (remembered && [...select.options].some((o) => o.value === remembered)) select.value = remembered;
}

async function loadConversations() {
  const list = $("conversations");
  const response = await api("/api/v1/conversations?limit=50");
  if (!response.ok) {
    state.local = true;  // no server-side conversations here: this browser keeps the one conversation
    list.replaceChildren();
    return;
  }
  list.replaceChildren();
  const current = localStorage.getItem(store.conversation);
  for (const conversation of (await response.json()).data) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = conversation.title || "Untitled";
    button.dataset.id = conversation.id;
    button.setAttribute("aria-current", String(conversation.id === current));
    button.addEventListener("click", () => openConversation(conversation.id));
    item.append(button);
    list.append(item);
  }
}

async function openConversation(id) {
  if (state.busy) return;
  $("messages").replaceChildren();
  localStorage.setItem(store.conversation, id);
  const response = await api(`/api/v1/conversations/${encodeURIComponent(id)}?limit=500`);
  if (response.status === 404) {
    localStorage.removeItem(store.conversation);
    return loadConversations();
  }
  if (!response.ok) return showError(await errorMessage(response));
  for (const message of (await response.json()).messages) {
    if (message.role !== "user" && message.role !== "assistant") continue;
    const element = bubble(message.role, typeof message.content === "string" ? message.content : "");
    if (message.role === "assistant") {
      const how = message.incomplete ? (message.error === "cancelled" ? " · stopped" : " · incomplete") : "";
      note(element, "meta", `${message.model || ""}${how}`);
    }
  }
  await loadConversations();
}

function restoreLocal() {
  $("messages").replaceChildren();
  for (const message of JSON.parse(localStorage.getItem(store.local) || "[]")) bubble(message.role, message.content);
}

function newConversation() {
  if (state.busy) return;
  localStorage.removeItem(store.conversation);
  localStorage.removeItem(store.local);
  $("messages").replaceChildren();
  setStatus("idle", "Idle");
  loadConversations();
  $("prompt").focus();
}

async function conversationId() {
  let id = localStorage.getItem(store.conversation);
  if (id || state.local) return id;
  const response = await api("/api/v1/conversations", { method: "POST" });
  if (!response.ok) {
    state.local = true;
    return null;
  }
  id = (await response.json()).id;
  localStorage.setItem(store.conversation, id);
  return id;
}

// ---- one turn ----------------------------------------------------------------------------------

function* events(buffer) {
  // Whole SSE events from the front of buffer.text; a partial one stays for the next read.
  let end;
  while ((end = buffer.text.indexOf("\n\n")) >= 0) {
    const block = buffer.text.slice(0, end);
    buffer.text = buffer.text.slice(end + 2);
    let name = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) name = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    if (data) yield [name, JSON.parse(data)];
  }
}

async function send(text) {
  const model = $("model").value;
  bubble("user", text);
  const answer = bubble("assistant");
  const body = answer.querySelector(".body");
  setBusy(true);
  setStatus("waiting", "Waiting for the first token…");
  const started = performance.now();
  let firstToken = null, ended = false;
  state.controller = new AbortController();
  try {
    const id = await conversationId();
    const history = state.local ? JSON.parse(localStorage.getItem(store.local) || "[]") : [];
    const payload = { model, messages: [...history, { role: "user", content: text }] };
    if (id) payload.conversation_id = id;
    const response = await api("/api/v1/chat", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify(payload),
      signal: state.controller.signal,
    });
    if (!response.ok) {
      ended = true;
      return showError(await errorMessage(response), answer);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const buffer = { text: "" };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer.text += decoder.decode(value, { stream: true });
      for (const [name, data] of events(buffer)) {
        if (name === "token") {
          if (firstToken === null) {
            firstToken = performance.now();
            setStatus("streaming", "Streaming…");
          }
          body.textContent += data.content;
        } else if (name === "reasoning") {
          (answer.querySelector(".reasoning") || note(answer, "reasoning", "")).textContent += data.content;
        } else if (name === "tool_call" && data.server) {
          note(answer, "tool", `Calling ${data.name} on ${data.server}…`);
        } else if (name === "tool_result") {
          note(answer, "tool", `${data.name} answered${data.is_error ? " with an error" : ""}: ${data.content}`);
        } else if (name === "complete") {
          ended = true;
          const ttft = (firstToken ?? performance.now()) - started;
          const generating = (performance.now() - (firstToken ?? started)) / 1000;
          const speed = generating > 0 ? data.usage.completion_tokens / generating : 0;
          note(answer, "meta", `${data.model} · TTFT ${Math.round(ttft)} ms · ${speed.toFixed(1)} tok/s`);
          setStatus("idle", "Idle");
        } else if (name === "error") {
          ended = true;
          showError(data.error.message, answer);
        }
      }
    }
    if (!ended) showError("The answer stopped before it was complete (the connection ended).", answer);
    if (state.local) {
      const kept = [...history, { role: "user", content: text }, { role: "assistant", content: body.textContent }];
      localStorage.setItem(store.local, JSON.stringify(kept));
    }
  } catch (error) {
    if (error.name === "AbortError") {
      note(answer, "meta", "Stopped");
      setStatus("idle", "Stopped");
    } else {
      showError(`The gateway could not be reached (${error.message}).`, answer);
    }
  } finally {
    state.controller = null;
    setBusy(false);
    if (!state.local) loadConversations();
  }
}

// ---- wiring ------------------------------------------------------------------------------------

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  if (state.busy) {
    state.controller?.abort();
    return;
  }
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("model").addEventListener("change", () => localStorage.setItem(store.model, $("model").value));
$("new").addEventListener("click", newConversation);
$("change-key").addEventListener("click", async () => {
  sessionStorage.removeItem(store.key);
  await askForKey();
  await loadModels();
});

(async () => {
  await loadModels();
  await loadConversations();
  const id = localStorage.getItem(store.conversation);
  if (state.local) restoreLocal();
  else if (id) await openConversation(id);
  if ($("status").dataset.state !== "error") setStatus("idle", "Idle");
})();
