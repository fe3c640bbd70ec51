// The web chat page: plain JavaScript over the public contract (REST + WebSocket).
// Everything shown comes from the server and is inserted as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 30;
const TYPING_SHOW_MS = 3000;
const TYPING_SEND_MS = 2500;
const READ_SEND_MS = 500;

const state = {
  token: sessionStorage.getItem("im.access"),
  refresh: sessionStorage.getItem("im.refresh"),
  me: null,
  groups: new Map(),     // group_id -> Group
  members: new Map(),    // group_id -> Map(user_id -> Member)
  messages: new Map(),   // group_id -> Map(seq -> Message), each message once
  contiguous: new Map(), // group_id -> highest seq with nothing missing below it (since the first loaded)
  nextPage: new Map(),   // group_id -> next history page to load, or 0 when all is loaded
  unread: new Map(),     // group_id -> unread count, from the server (Group, `connected`) and pushes since
  readSent: new Map(),   // group_id -> highest seq sent in a `read` frame
  readTimer: null,
  current: null,
  ws: null,
  attempt: 0,
  typing: new Map(),     // user_id -> timer
  lastTypingSent: 0,
  stopped: false,
  streams: new Map(),    // record_id -> {group_id, user_message_id, text}: an AI answer as it is written
  drafts: new Map(),     // record_id -> {group_id, user_message_id, content}: review mode, doctors only
  escalations: new Map(), // group_id -> reason: an escalation waits for a doctor to write
  draftsLoaded: new Set(),
};

// --- REST -----------------------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401 && state.refresh && path !== "/api/auth/token/refresh") {
    if (await refreshToken()) return api(method, path, body);
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    error.code = data.error && data.error.code;
    error.status = response.status;
    throw error;
  }
  return data;
}

async function refreshToken() {
  try {
    const data = await api("POST", "/api/auth/token/refresh", { refresh: state.refresh });
    setTokens(data.access, state.refresh);
    return true;
  } catch (e) {
    return false;
  }
}

function setTokens(access, refresh) {
  state.token = access;
  state.refresh = refresh || null;
  sessionStorage.setItem("im.access", access);
  if (refresh) sessionStorage.setItem("im.refresh", refresh); else sessionStorage.removeItem("im.refresh");
}

// --- login ------------------------------------------------------------------------------------------

async function start() {
  state.stopped = false;
  if (!state.token) return showLogin();
  try {
    state.me = await api("GET", "/api/user/me");
  } catch (e) {
    sessionStorage.clear();
    state.token = null;
    return showLogin(e.status === 401 ? "The token is not valid; log in again." : e.message);
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("me").textContent = `${state.me.username} (${state.me.user_role})`;
  await loadGroups();
  connect();
}

function showLogin(message) {
  $("login").hidden = false;
  $("app").hidden = true;
  $("login-error").textContent = message || "";
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const data = await api("POST", "/api/auth/token",
      { username: $("login-username").value.trim(), password: $("login-password").value });
    setTokens(data.access, data.refresh);
    start();
  } catch (e) {
    $("login-error").textContent = e.status === 401 ? "Wrong username or password." : e.message;
  }
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setTokens($("token-input").value.trim(), null);
  start();
});

$("logout").addEventListener("click", async () => {
  state.stopped = true;
  if (state.ws) state.ws.close();
  if (state.refresh) await api("POST", "/api/auth/logout", { refresh: state.refresh }).catch(() => null);
  sessionStorage.clear();
  location.reload();
});

// --- groups and history ---------------------------------------------------------------------------------

async function loadGroups() {
  const data = await api("GET", "/api/group/?page_size=100");
  state.groups = new Map(data.groups.map((g) => [g.group_id, g]));
  for (const group of data.groups) setUnread(group.group_id, group.unread_count);
  renderGroups();
  if (state.current && !state.groups.has(state.current)) closeGroup();
  if (!state.current && data.groups.length) openGroup(data.groups[0].group_id);
}

function renderGroups() {
  const list = $("groups");
  list.replaceChildren();
  for (const group of state.groups.values()) {
    const item = document.createElement("li");
    item.className = "group-item" + (group.group_id === state.current ? " active" : "");
    item.dataset.groupId = group.group_id;
    const name = document.createElement("span");
    name.textContent = group.group_name;
    item.append(name);
    if (state.escalations.has(group.group_id) || (group.ai_paused && state.me.user_role === "DOCTOR")) {
      const alert = document.createElement("span");
      alert.className = "alert";
      alert.title = "An escalation waits for a doctor";
      alert.textContent = "!";
      item.append(alert);
    }
    const unread = state.unread.get(group.group_id) || 0;
    if (unread) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = String(unread);
      item.append(badge);
    }
    item.addEventListener("click", () => openGroup(group.group_id));
    list.append(item);
  }
}

async function openGroup(groupId) {
  state.current = groupId;
  state.unread.delete(groupId);
  renderGroups();
  const group = state.groups.get(groupId);
  $("group-title").textContent = group.group_name;
  $("composer").hidden = false;
  $("ai-thinking").hidden = true;
  $("typing").textContent = "";
  await loadMembers(groupId);
  if (!state.messages.has(groupId)) {
    state.messages.set(groupId, new Map());
    state.nextPage.set(groupId, 1);
    await loadOlder(groupId);
  }
  renderMessages({ toBottom: true });
  sync(groupId);
  markRead(groupId);
}

function setUnread(groupId, count) {
  if (groupId === state.current || !count) state.unread.delete(groupId);
  else state.unread.set(groupId, count);
}

// Tell the server how far the shown group has been read: at most one `read` frame per READ_SEND_MS, so that a
// sync of many messages costs one frame, not one per message (frames are rate-limited per connection).
function markRead(groupId) {
  if (groupId !== state.current || state.readTimer) return;
  state.readTimer = setTimeout(() => {
    state.readTimer = null;
    const current = state.current;
    const seq = state.contiguous.get(current) || 0;
    if (!current || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    if (seq <= (state.readSent.get(current) || 0)) return;
    state.readSent.set(current, seq);
    state.ws.send(JSON.stringify({ type: "read", group_id: current, seq }));
  }, READ_SEND_MS);
}

function closeGroup() {
  state.current = null;
  $("group-title").textContent = "Pick a group";
  $("composer").hidden = true;
  $("ai-mode-label").hidden = true;
  $("escalation-banner").hidden = true;
  $("messages").replaceChildren();
}

async function loadMembers(groupId) {
  const data = await api("GET", `/api/group/${groupId}/members`);
  state.members.set(groupId, new Map(data.members.map((m) => [m.user_id, m])));
  renderMembers();
}

function renderMembers() {
  const groupId = state.current;
  if (!groupId) return;
  const members = state.members.get(groupId) || new Map();
  $("members").textContent = [...members.values()].map((m) => `${m.username} (${m.user_role})`).join(", ");
  const group = state.groups.get(groupId);
  const doctor = isDoctorIn(groupId);
  $("ai-mode-label").hidden = !doctor;
  if (group) $("ai-mode").value = group.ai_mode || (group.ai_enabled ? "auto" : "off");
  if (doctor && group && group.ai_mode === "review" && !state.draftsLoaded.has(groupId)) loadDrafts(groupId);
  renderEscalation();
}

async function loadOlder(groupId) {
  const page = state.nextPage.get(groupId);
  if (!page) return false;
  const data = await api("GET", `/api/message/list?group_id=${encodeURIComponent(groupId)}&page=${page}&page_size=${PAGE_SIZE}`);
  const store = state.messages.get(groupId);
  for (const message of data.messages) store.set(message.seq, message);
  state.nextPage.set(groupId, page * PAGE_SIZE < data.total ? page + 1 : 0);
  if (page === 1) {
    state.contiguous.set(groupId, data.messages.length ? data.messages[0].seq : 0);
    advanceContiguous(groupId);
  }
  return data.messages.length > 0;
}

$("messages").addEventListener("scroll", async () => {
  const box = $("messages");
  const groupId = state.current;
  if (box.scrollTop > 40 || !groupId || !state.nextPage.get(groupId) || box.dataset.loading) return;
  box.dataset.loading = "1";
  const before = box.scrollHeight;
  try {
    if (await loadOlder(groupId)) {
      renderMessages();
      box.scrollTop = box.scrollHeight - before;
    }
  } finally {
    delete box.dataset.loading;
  }
});

// --- messages ------------------------------------------------------------------------------------------

function addMessage(message) {
  const store = state.messages.get(message.group_id);
  if (!store) {  // a group not opened yet: count it, load it when opened
    if (message.from_user_id !== state.me.user_id) {
      state.unread.set(message.group_id, (state.unread.get(message.group_id) || 0) + 1);
      renderGroups();
    }
    return;
  }
  const known = store.has(message.seq);
  store.set(message.seq, message);
  const group = state.groups.get(message.group_id);
  if (group && message.seq > group.last_seq) group.last_seq = message.seq;
  const before = state.contiguous.get(message.group_id) || 0;
  advanceContiguous(message.group_id);
  if (message.seq > (state.contiguous.get(message.group_id) || 0) + 1 && message.seq > before + 1) {
    sync(message.group_id);  // a gap: fetch what is missing
  }
  if (message.msg_type === "AI_REPLY") {
    streamsEnd(message.group_id, message.reply_to);  // the stored reply replaces the text as it was written
    if (message.group_id === state.current) $("ai-thinking").hidden = true;
  }
  if (message.from_role === "DOCTOR" && !known && state.escalations.has(message.group_id)) {
    escalationSet(message.group_id, null);  // a doctor wrote: the pause is over
  } else if (message.from_role === "DOCTOR" && group && group.ai_paused) {
    escalationSet(message.group_id, null);
  }
  if (!known && message.group_id === state.current) {
    renderMessages({ toBottom: nearBottom() });
    markRead(message.group_id);
  }
}

function advanceContiguous(groupId) {
  const store = state.messages.get(groupId);
  let seq = state.contiguous.get(groupId) || 0;
  while (store.has(seq + 1)) seq += 1;
  state.contiguous.set(groupId, seq);
}

function nearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function senderOf(message) {
  const members = state.members.get(message.group_id);
  const member = members && members.get(message.from_user_id);
  return member ? member.username : message.from_user_id;
}

function renderMessages({ toBottom = false } = {}) {
  const groupId = state.current;
  const box = $("messages");
  const items = [...(state.messages.get(groupId) || new Map()).values()].sort((a, b) => a.seq - b.seq);
  const nodes = [];
  if (state.nextPage.get(groupId)) {
    const more = document.createElement("div");
    more.className = "loading-older";
    more.textContent = "Scroll up for earlier messages";
    nodes.push(more);
  }
  for (const message of items) nodes.push(messageNode(message));
  for (const notice of noticesFor(groupId)) nodes.push(notice);
  nodes.push(...streamNodes(groupId), ...draftNodes(groupId));
  box.replaceChildren(...nodes);
  if (toBottom) box.scrollTop = box.scrollHeight;
}

function messageNode(message) {
  const node = document.createElement("div");
  node.className = `msg from-${message.from_role}` + (message.from_user_id === state.me.user_id ? " mine" : "");
  node.dataset.seq = String(message.seq);
  node.dataset.messageId = message.message_id;
  node.dataset.msgType = message.msg_type;
  const meta = document.createElement("div");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "sender";
  who.textContent = senderOf(message);
  const role = document.createElement("span");
  role.className = `role role-${message.from_role}`;
  role.textContent = message.from_role === "AI_ASSISTANT" ? "AI assistant" : message.from_role.toLowerCase();
  const when = document.createElement("time");
  when.textContent = new Date(message.created_at).toLocaleTimeString();
  meta.append(who, role, when);
  const content = document.createElement("div");
  content.className = "content";
  if (message.msg_type === "IMAGE" && /^https?:\/\//i.test(message.content)) {
    const link = document.createElement("a");
    link.href = message.content;
    link.rel = "noopener noreferrer";
    link.target = "_blank";
    link.textContent = message.content;
    content.append(link);
  } else {
    content.textContent = message.content;
  }
  node.append(meta, content);
  return node;
}

// Membership and AI notices, kept per group and shown after the messages they follow.
const notices = new Map();

function notice(groupId, text, kind = "") {
  if (!notices.has(groupId)) notices.set(groupId, []);
  const node = document.createElement("div");
  node.className = `notice ${kind}`.trim();
  node.textContent = text;
  notices.get(groupId).push(node);
  if (groupId === state.current) renderMessages({ toBottom: nearBottom() });
}

function noticesFor(groupId) {
  return notices.get(groupId) || [];
}

// --- sending ---------------------------------------------------------------------------------------------

function newClientMsgId() {
  if (window.crypto && crypto.randomUUID) return `web-${crypto.randomUUID()}`;
  return `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

async function send(content) {
  const groupId = state.current;
  const frame = { type: "send_message", group_id: groupId, content, client_msg_id: newClientMsgId() };
  $("chat-error").textContent = "";
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(frame));
    return;
  }
  try {  // offline: the same send over HTTP, idempotent by client_msg_id
    addMessage(await api("POST", "/api/message/send",
      { group_id: groupId, content, client_msg_id: frame.client_msg_id }));
  } catch (e) {
    $("chat-error").textContent = e.message;
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("composer-input");
  const content = input.value.trim();
  if (!content || !state.current) return;
  input.value = "";
  send(content);
});

$("composer-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
    return;
  }
  const now = Date.now();
  if (state.ws && state.ws.readyState === WebSocket.OPEN && state.current && now - state.lastTypingSent > TYPING_SEND_MS) {
    state.lastTypingSent = now;
    state.ws.send(JSON.stringify({ type: "typing", group_id: state.current }));
  }
});

const MODE_NOTICES = {
  auto: "The AI assistant is on.",
  review: "The AI assistant drafts answers; a doctor approves each before the patient sees it.",
  off: "The AI assistant is off: a doctor has taken over.",
};

$("ai-mode").addEventListener("change", async (event) => {
  const groupId = state.current;
  const before = state.groups.get(groupId);
  try {
    const group = await api("PATCH", `/api/group/${groupId}`, { ai_mode: event.target.value });
    state.groups.set(groupId, group);
    notice(groupId, MODE_NOTICES[group.ai_mode]);
  } catch (e) {
    event.target.value = before.ai_mode;
    $("chat-error").textContent = e.message;
  }
});

function isDoctorIn(groupId) {
  const members = state.members.get(groupId);
  const mine = members && members.get(state.me.user_id);
  return !!(mine && mine.user_role === "DOCTOR");
}

// --- the AI's answers as they are written, drafts and escalations ----------------------------------------------

function streamDelta(frame) {
  const stream = state.streams.get(frame.record_id);
  // index 0 starts the text afresh: a stream cut short is answered again from the beginning.
  const text = frame.index === 0 || !stream ? frame.text : stream.text + frame.text;
  state.streams.set(frame.record_id, { group_id: frame.group_id, user_message_id: frame.user_message_id, text });
  if (frame.group_id === state.current) renderMessages({ toBottom: nearBottom() });
}

function streamsEnd(groupId, userMessageId) {
  for (const [recordId, stream] of state.streams) {
    if (stream.group_id === groupId && stream.user_message_id === userMessageId) state.streams.delete(recordId);
  }
}

function streamNodes(groupId) {
  const nodes = [];
  for (const stream of state.streams.values()) {
    if (stream.group_id !== groupId) continue;
    const node = document.createElement("div");
    node.className = "msg from-AI_ASSISTANT streaming";
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = "AI assistant is writing…";
    const content = document.createElement("div");
    content.className = "content";
    content.textContent = stream.text;
    node.append(meta, content);
    nodes.push(node);
  }
  return nodes;
}

async function loadDrafts(groupId) {
  state.draftsLoaded.add(groupId);
  try {
    const data = await api("GET", `/api/ai/interactions?group_id=${encodeURIComponent(groupId)}&status=AWAITING_REVIEW&page_size=100`);
    for (const record of data.interactions) {
      state.drafts.set(record.record_id, { group_id: groupId, user_message_id: record.user_message_id,
        content: record.draft });
    }
    if (groupId === state.current) renderMessages();
  } catch (e) {
    state.draftsLoaded.delete(groupId);
  }
}

function draftNodes(groupId) {
  const nodes = [];
  for (const [recordId, draft] of state.drafts) {
    if (draft.group_id !== groupId) continue;
    const node = document.createElement("div");
    node.className = "draft";
    node.dataset.recordId = recordId;
    const title = document.createElement("div");
    title.className = "meta";
    title.textContent = "AI draft awaiting your review (the patient does not see it)";
    const text = document.createElement("textarea");
    text.className = "draft-text";
    text.rows = 3;
    text.value = draft.content;
    const approve = document.createElement("button");
    approve.className = "draft-approve";
    approve.textContent = "Approve";
    approve.addEventListener("click", () => decide(recordId, "approve",
      text.value === draft.content ? {} : { content: text.value }));
    const reject = document.createElement("button");
    reject.className = "draft-reject";
    reject.textContent = "Reject";
    reject.addEventListener("click", () => decide(recordId, "reject", {}));
    node.append(title, text, approve, reject);
    nodes.push(node);
  }
  return nodes;
}

async function decide(recordId, verb, body) {
  try {
    await api("POST", `/api/ai/interactions/${recordId}/${verb}`, body);
    state.drafts.delete(recordId);
    if (verb === "reject") notice(state.current, "You rejected the AI's draft; nothing was sent.");
    renderMessages({ toBottom: nearBottom() });
  } catch (e) {
    if (e.status === 409) state.drafts.delete(recordId);  // another doctor decided first
    $("chat-error").textContent = e.message;
    renderMessages();
  }
}

function escalationSet(groupId, reason) {
  if (reason) state.escalations.set(groupId, reason); else state.escalations.delete(groupId);
  const group = state.groups.get(groupId);
  if (group) group.ai_paused = !!reason;
  renderGroups();
  renderEscalation();
}

function renderEscalation() {
  const groupId = state.current;
  const group = groupId && state.groups.get(groupId);
  const waiting = group && isDoctorIn(groupId) && (state.escalations.has(groupId) || group.ai_paused);
  const banner = $("escalation-banner");
  banner.hidden = !waiting;
  if (waiting) {
    const reason = state.escalations.get(groupId);
    banner.textContent = `Escalation${reason ? `: ${reason}` : ""}. The patient was told a doctor is alerted; ` +
      "the AI assistant is paused until a doctor writes here.";
  }
}

// --- WebSocket ----------------------------------------------------------------------------------------------

function setStatus(stateName, text) {
  const status = $("conn-status");
  status.dataset.state = stateName;
  status.textContent = text;
}

function connect() {
  if (state.stopped) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/${state.me.user_id}?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  setStatus("connecting", "connecting…");
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (state.ws !== ws || state.stopped) return;
    reconnectAfter(event.code);
  };
}

// The server's close codes (see the README's reconnect recipe) say whether and when to come back.
const CLOSE = { TOKEN: 4401, NOT_ALLOWED: 4403, TOO_MANY: 4429, SLOW_READER: 4008, RESTARTING: 1012 };

function reconnectAfter(code) {
  $("conn-status").dataset.closeCode = code;
  if (code === CLOSE.NOT_ALLOWED) {
    // Deactivated or not allowed: retrying cannot help.
    state.stopped = true;
    setStatus("stopped", "signed out");
    sessionStorage.clear();
    return showLogin("Your account can no longer connect. Contact the care team's administrator.");
  }
  let delay;
  if (code === CLOSE.SLOW_READER || code === CLOSE.RESTARTING) {
    delay = Math.random() * 500; // at once (spread a little, so a restarted server's clients do not all come together)
  } else {
    // Exponential backoff with jitter; longer for too many connections.
    const base = code === CLOSE.TOO_MANY ? 5000 : 500;
    delay = Math.min(30000, base * 2 ** state.attempt) * (0.5 + Math.random() / 2);
    state.attempt += 1;
  }
  setStatus("reconnecting", `reconnecting in ${Math.ceil(delay / 1000)} s`);
  setTimeout(async () => {
    if (code === CLOSE.TOKEN || state.attempt > 2) {
      if (!(await refreshToken()) && code === CLOSE.TOKEN) {
        state.stopped = true;
        setStatus("stopped", "signed out");
        sessionStorage.clear();
        return showLogin("Your session has ended; log in again.");
      }
    }
    connect(); // `connected` then syncs every open group from its last seq
  }, delay);
}

function sync(groupId) {
  // A group whose first page is still loading syncs when it arrives (openGroup), from the page's newest seq.
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN || !state.contiguous.has(groupId)) return;
  state.ws.send(JSON.stringify({ type: "sync", group_id: groupId, after_seq: state.contiguous.get(groupId) || 0 }));
}

function handle(frame) {
  switch (frame.type) {
    case "connected":
      state.attempt = 0;
      setStatus("online", "online");
      for (const { group_id: groupId } of frame.groups) if (state.messages.has(groupId)) sync(groupId);
      for (const group of frame.groups) setUnread(group.group_id, group.unread_count);
      state.readSent.clear();  // a new connection: say again how far the shown group is read
      if (state.current) markRead(state.current);
      renderGroups();
      if (frame.groups.some((g) => !state.groups.has(g.group_id))) loadGroups();
      break;
    case "message":
    case "ai_reply":
      addMessage(frame);
      break;
    case "message_ack":
      addMessage(frame.message);
      break;
    case "sync_result":
      for (const message of frame.messages) addMessage(message);
      if (frame.has_more) sync(frame.group_id);
      break;
    case "ai_status":
      if (frame.status === "thinking") {
        if (frame.group_id === state.current) $("ai-thinking").hidden = false;
      } else {
        if (frame.group_id === state.current) $("ai-thinking").hidden = true;
        // suppressed: a doctor took over (or switched the AI off) while it was answering; it stays silent, and
        // whatever of its answer was shown as it was written goes.
        streamsEnd(frame.group_id, frame.user_message_id);
        if (frame.group_id === state.current) renderMessages({ toBottom: nearBottom() });
        if (frame.status === "failed") notice(frame.group_id, "The AI assistant could not answer this time.", "failed");
      }
      break;
    case "escalation": // doctors only: a red flag, or the AI asked for a human; the AI is paused until one writes
      escalationSet(frame.group_id, frame.reason);
      break;
    case "ai_draft": // doctors only, review mode: approve (edited or not) or reject
      state.streams.delete(frame.record_id);
      state.drafts.set(frame.record_id, { group_id: frame.group_id, user_message_id: frame.user_message_id,
        content: frame.content });
      if (frame.group_id === state.current) $("ai-thinking").hidden = true;
      if (frame.group_id === state.current) renderMessages({ toBottom: nearBottom() });
      break;
    case "ai_delta":
      streamDelta(frame);
      break;
    case "typing":
      showTyping(frame);
      break;
    case "member_joined":
    case "member_left":
      memberChanged(frame);
      break;
    case "read_receipt":
      // Our own read on another tab or device: that group is read up to there.
      if (frame.user_id === state.me.user_id && frame.last_read_seq >= (state.groups.get(frame.group_id) || {}).last_seq) {
        state.unread.delete(frame.group_id);
        renderGroups();
      }
      break;
    case "error":
      $("chat-error").textContent = frame.message;
      break;
    default:
      break;
  }
}

function showTyping(frame) {
  if (frame.group_id !== state.current) return;
  clearTimeout(state.typing.get(frame.user_id));
  state.typing.set(frame.user_id, setTimeout(() => { state.typing.delete(frame.user_id); renderTyping(); }, TYPING_SHOW_MS));
  renderTyping();
}

function renderTyping() {
  const members = state.members.get(state.current) || new Map();
  const names = [...state.typing.keys()].map((id) => (members.get(id) || { username: id }).username);
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

async function memberChanged(frame) {
  const mine = frame.user_id === state.me.user_id;
  const known = state.members.get(frame.group_id);
  const before = known && known.get(frame.user_id);
  if (mine) {
    await loadGroups();
    if (frame.type === "member_left") {
      state.messages.delete(frame.group_id);
      return;
    }
  }
  if (state.members.has(frame.group_id)) await loadMembers(frame.group_id);
  const members = state.members.get(frame.group_id);
  const member = (members && members.get(frame.user_id)) || before || { username: "A member" };
  const name = mine ? "You" : member.username;
  notice(frame.group_id, `${name} ${frame.type === "member_joined" ? "joined" : "left"} (${frame.user_role}).`);
}

start();
