// The live feed page: the first page of the reader's feed, older pages on scroll, and new items as the
// read service streams them (Server-Sent Events read with fetch, so the bearer token goes in a header,
// which EventSource cannot send). No build step, no CDN: plain browser JavaScript.
"use strict";

const feed = document.getElementById("feed");
const statusLine = document.getElementById("status");
const more = document.getElementById("more");
const end = document.getElementById("end");
const bell = document.getElementById("bell");
const unreadBadge = document.getElementById("unread");
const notificationPanel = document.getElementById("notifications");
const notificationList = document.getElementById("notification-list");
let session = null; // {userId, headers, cursor, lastEventId, abort}

// Post and user ids are 64-bit integers: above 2**53 a JavaScript number would round them (two posts of the
// same millisecond would get the same id), so they are kept as the exact digits of the JSON text.
function parseJson(text) {
  return JSON.parse(text, (key, value, context) =>
    (key === "post_id" || key === "author_id") && context ? context.source : value);
}

function setStatus(text, kind) {
  statusLine.textContent = text;
  statusLine.className = kind || "";
}

function parseReader(value) {
  value = value.trim();
  const parts = value.split(".");
  if (parts.length !== 3) throw new Error("paste a bearer token: fanout token USER_ID prints one");
  // The user id is only shown; the read service takes it from the token it verifies.
  const claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
  return { userId: String(claims.sub), headers: { Authorization: "Bearer " + value } };
}

function render(item, isNew) {
  if (document.getElementById("post-" + item.post_id)) return;
  const li = document.createElement("li");
  li.id = "post-" + item.post_id;
  li.dataset.id = item.post_id;
  if (isNew) li.className = "new";
  const meta = document.createElement("div");
  meta.className = "meta";
  const badge = document.createElement("span");
  const pulled = item.via === "timeline";
  badge.className = "badge " + (pulled ? "pull" : "push");
  badge.textContent = pulled ? "pull" : "push";
  badge.title = pulled ? "merged at read from a celebrity's timeline" : "pushed into this inbox by the worker";
  const who = document.createElement("span");
  who.textContent = "user " + item.author_id;
  const when = document.createElement("time");
  when.dateTime = new Date(item.created_at).toISOString();
  when.textContent = new Date(item.created_at).toLocaleString();
  meta.append(badge, who, when);
  const body = document.createElement("p");
  body.className = "body";
  body.textContent = item.body; // text, never HTML
  li.append(meta, body);
  // Newest first: before the first item with a smaller id (ids are time-sortable).
  const id = BigInt(item.post_id);
  const after = [...feed.children].find((el) => BigInt(el.dataset.id) < id);
  feed.insertBefore(li, after || null);
}

async function loadPage() {
  if (!session || session.loading || session.cursor === null) return;
  session.loading = true;
  more.hidden = false;
  const query = new URLSearchParams({ limit: "20" });
  if (session.cursor) query.set("cursor", session.cursor);
  try {
    const response = await fetch(`/v1/feed?${query}`, { headers: session.headers });
    const page = parseJson(await response.text());
    if (!response.ok) throw new Error(page.error || response.statusText);
    page.items.forEach((item) => render(item, false));
    session.cursor = page.next_cursor;
    end.hidden = session.cursor !== null;
  } catch (err) {
    setStatus("Could not read the feed: " + err.message, "error");
  } finally {
    session.loading = false;
    more.hidden = true;
  }
}

// Notifications: the bell shows the unread count; the list shows groups ("user 3 and 2 others liked your
// post …"), newest first, replaced in place whenever the notifier changes one (event: notification).
function renderNotification(n, readUpTo) {
  const id = "notification-" + n.id;
  const old = document.getElementById(id);
  if (old) old.remove();
  if (!n.actors) return; // the group's last actor left
  const li = document.createElement("li");
  li.id = id;
  li.dataset.id = n.id;
  if (n.id > readUpTo) li.className = "unread";
  li.textContent = n.text; // text, never HTML
  const after = [...notificationList.children].find((el) => Number(el.dataset.id) < n.id);
  notificationList.insertBefore(li, after || null);
}

function showUnread(count) {
  unreadBadge.textContent = count >= 100 ? "99+" : String(count);
  unreadBadge.className = count ? "" : "none";
}

async function loadNotifications(s) {
  try {
    const response = await fetch("/v1/notifications?limit=20", { headers: s.headers });
    const page = await response.json();
    if (!response.ok) throw new Error(page.error || response.statusText);
    s.readUpTo = page.read_up_to;
    notificationList.replaceChildren();
    page.notifications.forEach((n) => renderNotification(n, s.readUpTo));
    showUnread(page.unread);
    bell.hidden = false;
  } catch (err) {
    setStatus("Could not read the notifications: " + err.message, "error");
  }
}

async function refreshUnread(s) {
  const response = await fetch("/v1/notifications/unread", { headers: s.headers });
  if (response.ok) showUnread((await response.json()).unread);
}

bell.addEventListener("click", () => {
  notificationPanel.hidden = !notificationPanel.hidden;
  bell.setAttribute("aria-expanded", String(!notificationPanel.hidden));
});

function handleEvent(s, event) {
  if (event.event === "notification") {
    renderNotification(JSON.parse(event.data), s.readUpTo || 0);
    refreshUnread(s);
  } else if (event.event === "post") {
    render(parseJson(event.data), true);
    if (event.id) s.lastEventId = event.id;
  } else if (event.event === "delete") {
    const gone = document.getElementById("post-" + parseJson(event.data).post_id);
    if (gone) gone.remove();
  } else if (event.event === "reauth") {
    // The token expired: the server ended the stream. A new token is needed; no reconnecting with this one.
    s.expired = true;
    setStatus("Your token has expired: paste a new one to keep the feed live.", "error");
  }
  // "resume": the server dropped this stream as too far behind; the loop reconnects with lastEventId.
}

async function stream(s) {
  while (session === s) {
    const headers = { ...s.headers, Accept: "text/event-stream" };
    if (s.lastEventId) headers["Last-Event-ID"] = s.lastEventId;
    try {
      const response = await fetch("/v1/feed/stream", { headers, signal: s.abort.signal });
      if (!response.ok) throw new Error((await response.json()).error || response.statusText);
      setStatus(`Live: new posts for user ${s.userId} appear as they are delivered.`, "live");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = { event: "message", data: "", id: null };
          for (const line of block.split("\n")) {
            const at = line.indexOf(":");
            if (at <= 0) continue; // a comment (heartbeat) or a blank line
            const field = line.slice(0, at);
            const val = line.slice(at + 1).replace(/^ /, "");
            if (field === "data") event.data += val;
            else if (field === "event" || field === "id") event[field] = val;
          }
          if (event.data) handleEvent(s, event);
        }
      }
    } catch (err) {
      if (session !== s) return;
      setStatus("Stream interrupted (" + err.message + "); reconnecting…", "error");
    }
    if (session !== s || s.expired) return;
    await new Promise((r) => setTimeout(r, 2000));
  }
}

document.getElementById("who").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (session) session.abort.abort();
  feed.replaceChildren();
  notificationList.replaceChildren();
  end.hidden = true;
  let reader;
  try {
    reader = parseReader(document.getElementById("reader").value);
  } catch (err) {
    setStatus(err.message, "error");
    return;
  }
  session = { ...reader, cursor: "", lastEventId: null, abort: new AbortController(), loading: false };
  setStatus("Connecting…");
  const s = session;
  await Promise.all([loadPage(), loadNotifications(s)]);
  const top = feed.firstElementChild;
  if (top) s.lastEventId = top.dataset.id; // the stream resumes after what the page shows
  stream(s);
});

new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadPage();
}).observe(document.getElementById("sentinel"));
