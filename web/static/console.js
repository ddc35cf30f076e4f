// The agent console: polls the queue and the open conversation every second. Every text from a
// shopper or the bot is put in the page with textContent, so markup in messages shows as text.
(function () {
  "use strict";
  const POLL_MS = 1000;
  const me = document.body.dataset.agent;
  let selected = null;
  let lastTranscriptSize = -1;

  const $ = (id) => document.getElementById(id);

  function showError(message) {
    const box = $("console-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function api(method, path, body) {
    const response = await fetch("/console/api/" + path, {
      method: method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
      credentials: "same-origin",
    });
    if (response.status === 401) { window.location = "/console/login"; throw new Error("logged out"); }
    const data = await response.json();
    if (!response.ok) { throw new Error(data.error || ("HTTP " + response.status)); }
    return data;
  }

  function describe(handoff) {
    const who = handoff.agent ? " - " + handoff.agent : "";
    const rating = handoff.rating ? " - rated " + handoff.rating + "/5" : "";
    return handoff.reason.replace(/_/g, " ") + " - chat " + handoff.conversation_id.slice(0, 10) + who + rating;
  }

  function fillList(id, items, label, onOpen) {
    const list = $(id);
    list.replaceChildren();
    if (!items.length) {
      const empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = list.dataset.empty;
      list.append(empty);
      return;
    }
    for (const item of items) {
      const li = document.createElement("li");
      li.dataset.handoffId = item.id || "";
      if (onOpen) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label(item);
        button.addEventListener("click", () => onOpen(item));
        li.append(button);
        if (selected === item.id) { li.className = "selected"; }
      } else {
        li.textContent = label(item);
      }
      list.append(li);
    }
  }

  function open(handoff) {
    selected = handoff.id;
    lastTranscriptSize = -1;
    $("conversation").hidden = false;
    refreshConversation();
  }

  async function refreshQueue() {
    const queue = await api("GET", "queue");
    fillList("queue-waiting", queue.waiting, describe, open);
    fillList("queue-active", queue.active, describe, open);
    fillList("queue-resolved", queue.resolved, describe, open);
    fillList("queue-tickets", queue.tickets,
      (t) => t.number + " - " + t.email + " - " + t.summary, null);
  }

  function renderTranscript(lines) {
    const list = $("transcript");
    if (lines.length === lastTranscriptSize) { return; }
    lastTranscriptSize = lines.length;
    list.replaceChildren();
    for (const line of lines) {
      const li = document.createElement("li");
      const kind = line.from === "shopper" || line.from === "bot" || line.from === "system" ? line.from : "agent";
      li.className = "from-" + kind;
      const speaker = document.createElement("span");
      speaker.className = "speaker";
      speaker.textContent = line.from === "shopper" ? "Shopper:" : line.from === "bot" ? "Bot:" :
        line.from === "system" ? "" : line.from + ":";
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = line.text;
      li.append(speaker, text);
      list.append(li);
    }
    list.scrollTop = list.scrollHeight;
  }

  function renderContext(conversation) {
    const context = $("context");
    context.replaceChildren();
    const facts = Object.assign({ "reason for handoff": conversation.reason.replace(/_/g, " ") },
      conversation.shop || {}, conversation.context, conversation.slots);
    for (const [name, value] of Object.entries(facts)) {
      const dt = document.createElement("dt");
      dt.textContent = name.replace(/_/g, " ");
      const dd = document.createElement("dd");
      dd.textContent = typeof value === "string" ? value : JSON.stringify(value);
      context.append(dt, dd);
    }
  }

  async function refreshConversation() {
    if (selected === null) { return; }
    const conversation = await api("GET", "conversations/" + selected);
    $("conversation-title").textContent = "Chat " + conversation.conversation_id;
    const owner = conversation.agent ? " by " + conversation.agent : "";
    $("conversation-status").textContent = "Status: " + conversation.status + owner +
      (conversation.rating ? " - rated " + conversation.rating + "/5" : "");
    const mine = conversation.status === "active" && conversation.agent === me;
    $("claim").hidden = conversation.status !== "waiting";
    $("resolve").hidden = !mine;
    $("reply").hidden = !mine;
    if (conversation.transcript) { renderTranscript(conversation.transcript); }
    renderContext(conversation);
    if (conversation.error) { showError(conversation.error); }
  }

  async function act(method, path, body) {
    try {
      await api(method, path, body);
      showError("");
    } catch (error) {
      showError(error.message);
    }
    await tick();
  }

  $("claim").addEventListener("click", () => act("POST", "conversations/" + selected + "/claim"));
  $("resolve").addEventListener("click", () => act("POST", "conversations/" + selected + "/resolve"));
  $("reply").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("reply-text");
    const text = input.value.trim();
    if (!text) { return; }
    input.value = "";
    act("POST", "conversations/" + selected + "/messages", { text: text });
  });

  let running = false;
  async function tick() {
    if (running) { return; }
    running = true;
    try {
      await refreshQueue();
      await refreshConversation();
    } catch (error) {
      if (error.message !== "logged out") { showError("Cannot reach the console server: " + error.message); }
    } finally {
      running = false;
    }
  }

  tick();
  setInterval(tick, POLL_MS);
})();
