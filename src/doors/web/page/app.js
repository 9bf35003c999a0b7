// The chatpipe web page: one WebSocket to /ws speaking the JSON protocol (docs/web.md).
// Everything a user typed is put into the page with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  socket: null,
  name: "",
  password: "",
  role: "user",
  rooms: new Map(), // name -> { lines: [], members: [], unread: 0, topic: "" }
  current: null,
  joined: [], // rooms to rejoin after a reconnect
  history: [], // lines typed, for up/down
  historyAt: 0,
  backoff: 1000,
  held: new Map(), // id -> held line (moderators)
  reports: new Map(), // id -> report (moderators)
  audit: [], // recent audit entries (moderators)
  wanted: false, // the user asked to be connected
  reconnecting: false,
  welcomed: false, // the server took our hello on the current socket
};
const MAX_LINES = 500;

function status(text, bad) {
  $("status").textContent = text;
  $("status").classList.toggle("bad", !!bad);
}

function room(name) {
  if (!state.rooms.has(name)) {
    state.rooms.set(name, { lines: [], members: [], unread: 0, topic: "" });
  }
  return state.rooms.get(name);
}

function timeOf(iso) {
  const d = iso ? new Date(iso) : new Date();
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// One line of a room's view: parts are [className, text] pairs, all set as text.
function addLine(roomName, kind, parts, time) {
  const r = room(roomName);
  r.lines.push({ kind, parts, time });
  if (r.lines.length > MAX_LINES) r.lines.shift();
  if (roomName === state.current) {
    appendLine(r.lines[r.lines.length - 1]);
  } else if (kind === "message" || kind === "action" || kind === "private") {
    r.unread += 1;
    renderRooms();
  }
}

function appendLine(line) {
  const li = document.createElement("li");
  li.className = line.kind;
  const t = document.createElement("time");
  t.textContent = timeOf(line.time);
  li.appendChild(t);
  for (const [cls, text] of line.parts) {
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    li.appendChild(span);
  }
  const list = $("messages");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 30;
  list.appendChild(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function showRoom(name) {
  state.current = name;
  const r = room(name);
  r.unread = 0;
  $("room-title").textContent = name;
  $("topic").textContent = r.topic;
  const list = $("messages");
  list.replaceChildren();
  r.lines.forEach(appendLine);
  list.scrollTop = list.scrollHeight;
  renderRooms();
  renderMembers();
}

function renderRooms() {
  const ul = $("rooms");
  ul.replaceChildren();
  for (const name of state.joined) {
    const r = room(name);
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "#" + name;
    b.setAttribute("aria-current", name === state.current ? "true" : "false");
    if (r.unread > 0) {
      const u = document.createElement("span");
      u.className = "unread";
      u.textContent = String(r.unread);
      u.setAttribute("aria-label", r.unread + " unread");
      b.appendChild(u);
    }
    b.addEventListener("click", () => { showRoom(name); $("input").focus(); });
    li.appendChild(b);
    ul.appendChild(li);
  }
}

function renderMembers() {
  const ul = $("members");
  ul.replaceChildren();
  const r = state.current ? room(state.current) : null;
  if (!r) return;
  for (const m of r.members) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "member";
    b.dataset.name = m.name;
    if (m.role !== "user") {
      const mark = document.createElement("span");
      mark.className = "role";
      mark.textContent = "@";
      mark.title = m.role;
      b.appendChild(mark);
    }
    b.appendChild(document.createTextNode(m.name));
    b.setAttribute("aria-haspopup", "menu");
    b.addEventListener("click", () => openMenu(m.name, b));
    li.appendChild(b);
    ul.appendChild(li);
  }
}

// The moderator's panel: held lines with approve/deny, open reports with their lines and a
// resolve button, the recent audit log. Shown to moderators and admins only.
function renderPanel() {
  const panel = $("mod-panel");
  panel.hidden = state.role === "user";
  if (panel.hidden) return;
  const button = (label, command) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", () => send(command));
    return b;
  };
  const span = (cls, text) => {
    const s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  };
  const fill = (list, items, empty) => {
    list.replaceChildren();
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = empty;
      list.appendChild(li);
    }
    for (const li of items) list.appendChild(li);
  };
  fill($("held-list"), [...state.held.values()].map((h) => {
    const li = document.createElement("li");
    li.dataset.id = String(h.id);
    li.appendChild(span("meta", "#" + h.id + " " + h.from + " in #" + h.room + " (" + h.filter + ") " + timeOf(h.time)));
    li.appendChild(span("quote", h.text));
    li.appendChild(button("Approve", "/approve " + h.id));
    li.appendChild(button("Deny", "/deny " + h.id));
    return li;
  }), "Nothing is waiting.");
  fill($("report-list"), [...state.reports.values()].map((r) => {
    const li = document.createElement("li");
    li.dataset.id = String(r.id);
    li.appendChild(span("meta", "#" + r.id + " " + r.reporter + " reported " + r.reported + " in #" + r.room + " " + timeOf(r.time)));
    li.appendChild(span("quote", r.reason || "no reason given"));
    li.appendChild(span("context", r.context.join("\n")));
    li.appendChild(button("Resolve", "/resolve " + r.id));
    return li;
  }), "No open reports.");
  fill($("audit-list"), state.audit.slice().reverse().map((e) => {
    const li = document.createElement("li");
    li.textContent = timeOf(e.time) + " " + e.who + " " + e.what + " " + e.whom + (e.why ? ": " + e.why : "");
    return li;
  }), "Nothing yet.");
}

function openMenu(name, anchor) {
  const menu = $("member-menu");
  menu.replaceChildren();
  const item = (label, action) => {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("role", "menuitem");
    b.textContent = label;
    b.addEventListener("click", () => { closeMenu(); action(); });
    menu.appendChild(b);
  };
  item("Message " + name, () => { $("input").value = "/msg " + name + " "; $("input").focus(); });
  if (state.role !== "user" && name !== state.name) {
    item("Kick " + name, () => send("/kick " + name + " kicked from the web page"));
    item("Mute " + name + " for 10m", () => send("/mute " + name + " 10m"));
    item("Ban " + name, () => send("/ban " + name));
  }
  item("Close", () => anchor.focus());
  menu.style.top = (anchor.offsetTop + anchor.offsetHeight) + "px";
  menu.hidden = false;
  menu.querySelector("button").focus();
  menu.onkeydown = (e) => { if (e.key === "Escape") { closeMenu(); anchor.focus(); } };
}

function closeMenu() { $("member-menu").hidden = true; }

function send(text) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
    status("Not connected; your line was not sent.", true);
    return false;
  }
  state.socket.send(JSON.stringify({ type: "line", room: state.current, text }));
  return true;
}

function onMessage(m) {
  switch (m.type) {
    case "hello":
      break;
    case "welcome":
      state.welcomed = true;
      state.name = m.name;
      state.role = m.role;
      renderPanel();
      $("login").hidden = true;
      $("chat").hidden = false;
      status(state.reconnecting ? "Reconnected as " + m.name + "." : "Connected as " + m.name + ".");
      state.backoff = 1000;
      if (state.reconnecting) {
        // Back into the rooms we were in, besides the one the server put us in.
        for (const r of state.joined) if (!m.rooms.includes(r)) sendJoin(r);
      } else {
        state.joined = [];
      }
      state.reconnecting = false;
      $("input").focus();
      break;
    case "joined":
      if (m.name !== state.name || m.scope === "room") {
        const r = room(m.room);
        if (!r.members.some((x) => x.name === m.name)) r.members.push({ name: m.name, role: m.role });
        if (m.room === state.current) renderMembers();
      }
      if (m.name === state.name) {
        if (!state.joined.includes(m.room)) state.joined.push(m.room);
        if (!state.current || m.scope === "room" || !state.joined.includes(state.current)) showRoom(m.room);
        renderRooms();
      }
      addLine(m.room, "event", [["", m.name + " has joined " + (m.scope === "chat" ? "the chat" : "#" + m.room)]], m.time);
      break;
    case "left":
      room(m.room).members = room(m.room).members.filter((x) => x.name !== m.name);
      if (m.room === state.current) renderMembers();
      if (m.name === state.name && m.scope === "room") {
        state.joined = state.joined.filter((r) => r !== m.room);
        if (state.current === m.room && state.joined.length) showRoom(state.joined[state.joined.length - 1]);
        renderRooms();
      } else {
        addLine(m.room, "event", [["", m.name + " has left " + (m.scope === "chat" ? "the chat" : "#" + m.room)]], m.time);
      }
      break;
    case "message":
      addLine(m.room, "message", m.reviewed
        ? [["from", m.from + ":"], ["text", m.text], ["reviewed", " ✓ reviewed"]]
        : [["from", m.from + ":"], ["text", m.text]], m.time);
      break;
    case "action":
      addLine(m.room, "action", [["", "* "], ["from", m.from], ["text", m.text]], m.time);
      break;
    case "history":
      addLine(m.room, "history", m.kind === "action"
        ? [["", "* "], ["from", m.from], ["text", m.text]]
        : [["from", m.from + ":"], ["text", m.text]], m.time);
      break;
    case "private":
      addLine(state.current, "private", m.direction === "in"
        ? [["from", "[PM from " + m.from + "]"], ["text", m.text]]
        : [["from", "[PM to " + m.to + "]"], ["text", m.text]], m.time);
      break;
    case "renamed":
      if (m.old === state.name) state.name = m.new;
      for (const x of room(m.room).members) if (x.name === m.old) x.name = m.new;
      if (m.room === state.current) renderMembers();
      addLine(m.room, "event", [["", m.old + " is now known as " + m.new]], m.time);
      break;
    case "members":
      room(m.room).members = m.members;
      if (m.room === state.current) renderMembers();
      break;
    case "rooms":
      addLine(state.current, "notice", [["", "Rooms: " + m.rooms.map((r) => r.name + " (" + r.members + ")").join(", ")]], m.time);
      break;
    case "notice":
      onNotice(m);
      break;
    case "queue":
      state.held = new Map(m.held.map((h) => [h.id, h]));
      state.reports = new Map(m.reports.map((r) => [r.id, r]));
      renderPanel();
      break;
    case "held":
      state.held.set(m.id, m);
      renderPanel();
      break;
    case "report":
      state.reports.set(m.id, m);
      renderPanel();
      break;
    case "queue_done":
      (m.what === "held" ? state.held : state.reports).delete(m.id);
      renderPanel();
      break;
    case "audit":
      state.audit = state.audit.concat(m.entries).slice(-50);
      renderPanel();
      break;
  }
}

function onNotice(m) {
  // The greeting tells a hand-written client to send a hello; the page sends its own at once,
  // so the greeting is for nobody here (on a reconnect it would land in the chat log).
  if (m.code === "hello") return;
  if (!state.name || $("chat").hidden) {
    // Still logging in: the socket is open, but the server has not taken the name yet.
    const passwordWanted = m.code === "password_required" || m.code === "wrong_password";
    if (passwordWanted) {
      $("password-row").hidden = false;
      $("password").focus();
    }
    $("login-error").textContent = m.text;
    if (m.code === "banned" || m.code === "too_many_attempts") {
      state.wanted = false;
      status("Not connected.", true);
    } else {
      status(passwordWanted
        ? "Connected; enter the password for " + state.name + "."
        : "Connected; not logged in yet.");
    }
    return;
  }
  if (!state.welcomed) {
    // A reconnect the server refused (the name taken meanwhile, the password changed): the
    // status line must not keep saying "Reconnecting…".
    status("Could not log in again: " + m.text, true);
  }
  const target = m.room && state.rooms.has(m.room) ? m.room : state.current;
  if (m.code === "topic" && target) {
    // Shown on join, asked for, or just set by a moderator.
    room(target).topic = m.topic || "";
    if (target === state.current) $("topic").textContent = room(target).topic;
  }
  addLine(target, "notice", [["", m.text]], m.time);
  if (["kicked", "banned", "too_slow", "idle", "goodbye"].includes(m.code)) {
    // The server ended this session on purpose: say why, and do not reconnect by ourselves.
    state.wanted = false;
    status(m.text, true);
  }
  if (m.code === "shutting_down") status("The server is shutting down…", true);
}

function sendJoin(r) {
  state.socket.send(JSON.stringify({ type: "line", text: "/join " + r }));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/ws");
  state.socket = socket;
  state.welcomed = false;
  status(state.reconnecting ? "Reconnecting…" : "Connecting…");
  socket.onopen = () => {
    const hello = { type: "hello", name: state.name };
    if (state.password) hello.password = state.password;
    socket.send(JSON.stringify(hello));
  };
  socket.onmessage = (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch { return; }
    onMessage(m);
  };
  socket.onclose = () => {
    if (state.socket !== socket) return;
    state.socket = null;
    if (!state.wanted) return;
    if ($("chat").hidden) {
      status("Could not join; try again.", true);
      return;
    }
    const wait = state.backoff;
    state.backoff = Math.min(state.backoff * 2, 30000);
    state.reconnecting = true;
    status("Disconnected from the server. Reconnecting in " + Math.round(wait / 1000) + " s…", true);
    setTimeout(() => { if (state.wanted) connect(); }, wait);
  };
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.name = $("name").value.trim();
  state.password = $("password").value;
  $("login-error").textContent = "";
  state.wanted = true;
  state.reconnecting = false;
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.onopen();
  } else {
    connect();
  }
});

$("input-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value;
  if (!text.trim()) return;
  if (send(text)) {
    state.history.push(text);
    state.historyAt = state.history.length;
    $("input").value = "";
  }
});

$("input").addEventListener("keydown", (e) => {
  if (e.key === "ArrowUp" && state.historyAt > 0) {
    state.historyAt -= 1;
    $("input").value = state.history[state.historyAt];
    e.preventDefault();
  } else if (e.key === "ArrowDown" && state.historyAt < state.history.length) {
    state.historyAt += 1;
    $("input").value = state.history[state.historyAt] || "";
    e.preventDefault();
  }
});

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const r = $("join-room").value.trim().replace(/^#/, "");
  if (r && send("/join " + r)) $("join-room").value = "";
});

document.addEventListener("click", (e) => {
  if (!$("member-menu").contains(e.target) && !e.target.classList.contains("member")) closeMenu();
});
