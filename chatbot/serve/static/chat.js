// The chat page: talks to the server's JSON API under the same origin (no frameworks, no
// external URLs). The conversation id and an API key, if the server asks for one, are kept
// in localStorage, so a reload shows the same conversation.
"use strict";

(() => {
  const CONVERSATION_KEY = "chatbot.conversation";
  const API_KEY = "chatbot.apiKey";
  const LOADING_RETRY_MS = 3000;   // 503 while the model loads: ask again after this
  const LOADING_TRIES = 100;       // ... this many times (about five minutes)

  const $ = (id) => document.getElementById(id);
  const logWrap = $("log-wrap");
  const log = $("log");
  const empty = $("empty");
  const thinking = $("thinking");
  const status = $("status");
  const announce = $("announce");
  const keyForm = $("key-form");
  const keyInput = $("key");
  const composer = $("composer");
  const input = $("input");
  const sendButton = $("send");
  const resetButton = $("reset");

  // localStorage may be unavailable (private windows, disabled storage): then values are
  // kept in memory, for this page only.
  const memory = new Map();
  const stored = {
    get(name) {
      try {
        return window.localStorage.getItem(name);
      } catch {
        return memory.has(name) ? memory.get(name) : null;
      }
    },
    set(name, value) {
      const absent = value === null || value === undefined;
      try {
        if (absent) window.localStorage.removeItem(name);
        else window.localStorage.setItem(name, String(value));
      } catch {
        if (absent) memory.delete(name);
        else memory.set(name, String(value));
      }
    },
  };

  let conversationId = Number.parseInt(stored.get(CONVERSATION_KEY) || "", 10) || null;
  let busy = false;
  let waitingForReply = false;

  function setConversation(id) {
    conversationId = id;
    stored.set(CONVERSATION_KEY, id);
  }

  // ---- status line -------------------------------------------------------------------

  function setStatus(text, isError = false) {
    status.textContent = text || "";
    status.classList.toggle("error", Boolean(text) && isError);
  }
  const showError = (text) => setStatus(text, true);
  const clearStatus = () => setStatus("");

  // ---- the server's API --------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, statusCode, code) {
      super(message);
      this.status = statusCode;
      this.code = code;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // The server's error object ({"error": {"message": ...}}), or a line made from the status.
  async function readError(response) {
    let message = "";
    let code = null;
    try {
      const body = await response.json();
      const error = body && body.error;
      if (error && typeof error === "object") {
        message = error.message || "";
        code = error.code || error.type || null;
      } else if (typeof error === "string") {
        message = error;
      } else if (body && typeof body.detail === "string") {
        message = body.detail;
      }
    } catch { /* not JSON */ }
    if (!message) message = `The server answered ${response.status} ${response.statusText}`.trim();
    return new ApiError(message, response.status, code);
  }

  // Waiting for the user to give an API key (after a 401).
  let keyWaiters = [];

  function askForKey(refused) {
    keyForm.hidden = false;
    thinking.hidden = true;
    showError(refused ? "The server refused that API key: enter the right one."
                      : "This server needs an API key: enter it below.");
    keyInput.value = "";
    keyInput.focus();
    return new Promise((resolve) => keyWaiters.push(resolve));
  }

  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    if (!key) return;
    stored.set(API_KEY, key);
    keyInput.value = "";
    keyForm.hidden = true;
    thinking.hidden = !waitingForReply;
    clearStatus();
    const waiting = keyWaiters;
    keyWaiters = [];
    waiting.forEach((resolve) => resolve());
    input.focus();
  });

  // One request to the API: JSON in and out; asks for a key on 401 and waits out a
  // loading model (503), then tries again. Throws ApiError with the server's message.
  async function api(method, path, body) {
    for (let attempt = 1; ; attempt++) {
      const headers = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const key = stored.get(API_KEY);
      if (key) headers.Authorization = `Bearer ${key}`;
      let response;
      try {
        response = await fetch(path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
          credentials: "same-origin",
        });
      } catch {
        throw new ApiError("Cannot reach the server. Is it still running?", 0, "network");
      }
      if (response.status === 401) {
        await askForKey(Boolean(key));
        continue;
      }
      if (response.status === 503 && attempt < LOADING_TRIES) {
        const after = Number.parseFloat(response.headers.get("Retry-After") || "");
        const wait = after > 0 ? Math.min(after * 1000, 30000) : LOADING_RETRY_MS;
        setStatus(`The model is still loading; trying again in ${Math.round(wait / 1000)} s…`);
        await sleep(wait);
        continue;
      }
      if (!response.ok) throw await readError(response);
      if (attempt > 1) clearStatus();
      if (response.status === 204) return null;
      return response.json();
    }
  }

  const conversationPath = (id, action = "") =>
    `api/conversations/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;

  // ---- the conversation on the page --------------------------------------------------

  function formatLatency(ms) {
    if (typeof ms !== "number") return "";
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  function scrollToEnd() {
    logWrap.scrollTop = logWrap.scrollHeight;
  }

  function updateEmpty() {
    empty.hidden = log.childElementCount > 0;
  }

  function clearLog() {
    log.replaceChildren();
    updateEmpty();
  }

  function setRating(item, rating) {
    item.querySelectorAll("button.rate").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.rating === rating));
    });
  }

  // A turn as a list item: {role, text, id, latency_ms, rating} as the API gives it.
  function addTurn(turn) {
    const item = document.createElement("li");
    const isBot = turn.role === "bot";
    item.className = `msg ${isBot ? "bot" : "user"}`;
    if (turn.id !== undefined && turn.id !== null) item.dataset.turnId = String(turn.id);
    if (conversationId !== null) item.dataset.conversationId = String(conversationId);

    const who = document.createElement("span");
    who.className = "visually-hidden";
    who.textContent = isBot ? "Bot said: " : "You said: ";
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = turn.text;
    item.append(who, bubble);

    if (isBot) {
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.setAttribute("role", "group");
      meta.setAttribute("aria-label", "Rate this reply");
      const latency = formatLatency(turn.latency_ms);
      if (latency) {
        const time = document.createElement("span");
        time.className = "latency";
        time.title = "Time to reply";
        time.textContent = latency;
        meta.append(time);
      }
      for (const [rating, label] of [["good", "Good"], ["bad", "Bad"]]) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = `rate ${rating}`;
        button.dataset.rating = rating;
        button.textContent = label;
        button.setAttribute("aria-label", `${label} reply`);
        button.setAttribute("aria-pressed", "false");
        meta.append(button);
      }
      item.append(meta);
      setRating(item, turn.rating || null);
    }
    log.append(item);
    updateEmpty();
    scrollToEnd();
    return item;
  }

  // Screen readers hear each new reply (the live region is emptied first so that the same
  // words twice are announced twice); the user's own words and restored turns are not read.
  function announceReply(text) {
    announce.textContent = "";
    window.setTimeout(() => { announce.textContent = `Bot: ${text}`; }, 50);
  }

  function setBusy(value, forReply = false) {
    busy = value;
    waitingForReply = value && forReply;
    sendButton.disabled = value;
    resetButton.disabled = value;
    thinking.hidden = !waitingForReply;
    log.setAttribute("aria-busy", String(value));
    if (waitingForReply) scrollToEnd();
  }

  function autosize() {
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight + 2}px`;
  }

  // ---- actions -----------------------------------------------------------------------

  async function newConversation() {
    const conversation = await api("POST", "api/conversations", { origin: "web" });
    setConversation(conversation.id);
  }

  async function postMessage(text) {
    if (conversationId === null) await newConversation();
    try {
      return await api("POST", conversationPath(conversationId, "messages"), { text });
    } catch (error) {
      if (error.status !== 404) throw error;
      // The conversation is gone (deleted elsewhere): go on in a new one.
      const pending = log.lastElementChild;
      clearLog();
      if (pending) log.append(pending);
      updateEmpty();
      await newConversation();
      const result = await api("POST", conversationPath(conversationId, "messages"), { text });
      setStatus("That conversation was gone; this is a new one.");
      return result;
    }
  }

  async function send() {
    const text = input.value;
    if (busy || !text.trim()) return;
    setBusy(true, true);
    clearStatus();
    const pending = addTurn({ role: "user", text });
    pending.classList.add("pending");
    input.value = "";
    autosize();
    try {
      const result = await postMessage(text);
      pending.classList.remove("pending");
      if (result.user_turn && result.user_turn.id !== undefined) {
        pending.dataset.turnId = String(result.user_turn.id);
      }
      pending.dataset.conversationId = String(conversationId);
      addTurn({ ...result.reply, role: "bot" });
      announceReply(result.reply.text);
    } catch (error) {
      pending.remove();
      updateEmpty();
      if (!input.value) {
        input.value = text;
        autosize();
      }
      showError(error.message);
    } finally {
      setBusy(false);
      input.focus();
    }
  }

  async function rate(item, rating) {
    const turnId = Number(item.dataset.turnId);
    const id = Number(item.dataset.conversationId || conversationId);
    if (!turnId || !id) return;
    const buttons = item.querySelectorAll("button.rate");
    buttons.forEach((button) => { button.disabled = true; });
    try {
      const result = await api("POST", conversationPath(id, "rate"), { rating, turn_id: turnId });
      setRating(item, (result && result.rating) || rating);
      setStatus(`Rated ${rating}. Thanks!`);
    } catch (error) {
      showError(error.message);
    } finally {
      buttons.forEach((button) => { button.disabled = false; });
    }
  }

  async function reset() {
    if (busy) return;
    clearStatus();
    if (conversationId === null) {
      clearLog();
      input.focus();
      return;
    }
    setBusy(true);
    try {
      const conversation = await api("POST", conversationPath(conversationId, "reset"));
      setConversation(conversation.id);
      clearLog();
      setStatus("New conversation: the bot has forgotten the last one.");
    } catch (error) {
      if (error.status === 404) {
        setConversation(null);  // gone already: the next message starts a new one
        clearLog();
      } else {
        showError(error.message);
      }
    } finally {
      setBusy(false);
      input.focus();
    }
  }

  // On load: show the kept conversation, if the server still has it.
  async function restore() {
    if (conversationId === null) return;
    setBusy(true);
    try {
      const conversation = await api("GET", conversationPath(conversationId));
      clearLog();
      for (const turn of conversation.turns || []) addTurn(turn);
    } catch (error) {
      if (error.status === 404) setConversation(null);  // a new one starts with the next message
      else showError(error.message);
    } finally {
      setBusy(false);
    }
  }

  // ---- wiring ------------------------------------------------------------------------

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });

  input.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter falls through to the textarea (a new line). Not while an
    // input method is composing a character.
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
      return;
    }
    event.preventDefault();
    send();
  });

  input.addEventListener("input", autosize);
  resetButton.addEventListener("click", reset);

  log.addEventListener("click", (event) => {
    const button = event.target.closest("button.rate");
    if (button) rate(button.closest("li.msg"), button.dataset.rating);
  });

  updateEmpty();
  restore().finally(() => input.focus());
})();
