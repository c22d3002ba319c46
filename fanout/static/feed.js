// The live feed page: the first page of the reader's feed, older pages on scroll, and new items as the
// read service streams them (Server-Sent Events read with fetch, so the bearer token goes in a header,
// which EventSource cannot send). Posts, follows and read marks go to the ingest API, another origin that lets
// this page in (CORS). No build step, no CDN: plain browser JavaScript.
"use strict";

const feed = document.getElementById("feed");
const statusLine = document.getElementById("status");
const more = document.getElementById("more");
const end = document.getElementById("end");
const bell = document.getElementById("bell");
const unreadBadge = document.getElementById("unread");
const notificationPanel = document.getElementById("notifications");
const notificationList = document.getElementById("notification-list");
const me = document.getElementById("me");
const actions = document.getElementById("act");
const postResult = document.getElementById("post-result");
const followResult = document.getElementById("follow-result");
const TOKEN_KEY = "fanout.token"; // sessionStorage: this tab stays signed in across reloads, and no other tab
const ingestPort = document.querySelector('meta[name="fanout-ingest-port"]').content;
const ingestApi = `${location.protocol}//${location.hostname}:${ingestPort}`;
let session = null; // {userId, headers, cursor, lastEventId, abort, readUpTo}

// Post, user and notification ids are 64-bit integers: above 2**53 a JavaScript number would round them (two
// posts of the same millisecond would get the same id), so they are kept as the exact digits of the JSON text.
const EXACT = new Set(["post_id", "author_id", "id", "read_up_to", "next_before"]);
function parseJson(text) {
  return JSON.parse(text, (key, value, context) => (EXACT.has(key) && context ? context.source : value));
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
  if (BigInt(n.id) > BigInt(readUpTo)) li.className = "unread";
  li.textContent = n.text; // text, never HTML
  const after = [...notificationList.children].find((el) => BigInt(el.dataset.id) < BigInt(n.id));
  notificationList.insertBefore(li, after || null);
}

function showUnread(count) {
  unreadBadge.textContent = count >= 100 ? "99+" : String(count);
  unreadBadge.className = count ? "" : "none";
}

async function loadNotifications(s) {
  try {
    const response = await fetch("/v1/notifications?limit=20", { headers: s.headers });
    const page = parseJson(await response.text());
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

// Marked read when the list is closed, not when it opens: a group the person has not seen the end of stays
// one group (the notifier starts a new group for a notice after the read mark).
async function markRead(s) {
  const newest = notificationList.firstElementChild;
  if (!newest || BigInt(newest.dataset.id) <= BigInt(s.readUpTo || 0)) return;
  try {
    await write(s, "POST", "/v1/notifications/read", `{"up_to": ${newest.dataset.id}}`);
    s.readUpTo = newest.dataset.id;
    notificationList.querySelectorAll("li.unread").forEach((li) => {
      if (BigInt(li.dataset.id) <= BigInt(s.readUpTo)) li.classList.remove("unread");
    });
    await refreshUnread(s);
  } catch (err) {
    setStatus("Could not mark the notifications read: " + err.message, "error");
  }
}

bell.addEventListener("click", () => {
  notificationPanel.hidden = !notificationPanel.hidden;
  bell.setAttribute("aria-expanded", String(!notificationPanel.hidden));
  if (notificationPanel.hidden && session) markRead(session);
});

function handleEvent(s, event) {
  if (event.event === "notification") {
    renderNotification(parseJson(event.data), s.readUpTo || 0);
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
    sessionStorage.removeItem(TOKEN_KEY);
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

// Sign in with a bearer token (pasted, or from a signed-in link) and show that user's feed, live.
async function connect(token) {
  let reader;
  try {
    reader = parseReader(token);
  } catch (err) {
    setStatus(err.message, "error");
    return;
  }
  if (session) session.abort.abort();
  feed.replaceChildren();
  notificationList.replaceChildren();
  end.hidden = true;
  sessionStorage.setItem(TOKEN_KEY, token.trim());
  session = { ...reader, cursor: "", lastEventId: null, abort: new AbortController(), loading: false };
  me.textContent = `Signed in as user ${reader.userId}.`;
  me.hidden = actions.hidden = false;
  postResult.textContent = followResult.textContent = "";
  setStatus("Connecting…");
  const s = session;
  await Promise.all([loadPage(), loadNotifications(s)]);
  const top = feed.firstElementChild;
  if (top) s.lastEventId = top.dataset.id; // the stream resumes after what the page shows
  stream(s);
}

document.getElementById("who").addEventListener("submit", (e) => {
  e.preventDefault();
  connect(document.getElementById("reader").value);
});

// --- writes, through the ingest API ------------------------------------------------------------------

// An Idempotency-Key per click: a request the network lost can be sent again without posting twice. Built from
// getRandomValues, which (unlike crypto.randomUUID) also works on a plain-http address other than localhost.
function randomUuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; // version 4
  b[8] = (b[8] & 0x3f) | 0x80; // the RFC 4122 variant
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// The ingest API's answer as JSON, or an Error whose message says what went wrong, for the page to show.
async function write(s, method, path, body, extraHeaders) {
  const headers = { ...s.headers, ...extraHeaders };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(ingestApi + path, { method, headers, body });
  } catch (err) {
    // A refused CORS request looks like a network error: both causes are named.
    throw new Error(`the ingest API at ${ingestApi} did not answer (${err.message}): is it running, and is ` +
                    `${location.origin} one of its FANOUT_PAGE_ORIGINS?`);
  }
  const text = await response.text();
  let answer = {};
  try {
    if (text) answer = parseJson(text);
  } catch {
    answer = { error: text.slice(0, 200) };
  }
  if (!response.ok) throw new Error(`${response.status}: ${answer.error || response.statusText}`);
  return answer;
}

function showResult(element, text, kind) {
  element.textContent = text;
  element.className = "result " + kind;
}

document.getElementById("compose").addEventListener("submit", async (e) => {
  e.preventDefault();
  const s = session;
  const text = document.getElementById("post-body");
  const button = document.getElementById("post-button");
  if (!s) return;
  if (!text.value.trim()) {
    showResult(postResult, "Nothing to post: write something first.", "error");
    return;
  }
  button.disabled = true;
  try {
    const body = JSON.stringify({ body: text.value });
    const accepted = await write(s, "POST", "/v1/posts", body, { "Idempotency-Key": randomUuid() });
    postResult.dataset.postId = accepted.post_id;
    showResult(postResult, `Posted: post ${accepted.post_id}, on its way to your followers' feeds.`, "ok");
    text.value = "";
  } catch (err) {
    showResult(postResult, "Not posted: " + err.message, "error");
  } finally {
    button.disabled = false;
  }
});

document.getElementById("follow").addEventListener("submit", async (e) => {
  e.preventDefault();
  const s = session;
  const follow = e.submitter?.value !== "unfollow"; // Enter in the field submits with the first button: Follow
  const field = document.getElementById("followee");
  const id = field.value.trim();
  if (!s) return;
  // Sent as the digits typed: a number above 2**53 would be rounded to another user's id.
  if (!/^[1-9][0-9]{0,15}$/.test(id)) {
    showResult(followResult, "A user id is a whole number from 1, such as 2.", "error");
    return;
  }
  try {
    if (follow) await write(s, "POST", "/v1/follows", `{"followee_id": ${id}}`);
    else await write(s, "DELETE", `/v1/follows?followee_id=${id}`);
    showResult(followResult, follow ? `Following user ${id}: their posts now come into this feed.`
      : `Unfollowed user ${id}: their posts leave this feed.`, "ok");
  } catch (err) {
    showResult(followResult, `Could not ${follow ? "follow" : "unfollow"} user ${id}: ${err.message}`, "error");
  }
});

// --- signing in from the address ------------------------------------------------------------------------

// A signed-in link (`fanout up`, `fanout token USER_ID --url`) is /#token=<jwt>. The fragment never reaches a
// server; it leaves the address bar and this history entry at once (replaced, not a new entry), so a copied
// address, a bookmark or a shared screen never shows it. The token stays in this tab's sessionStorage.
function tokenFromAddress() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (token !== null) history.replaceState(history.state, "", location.pathname + location.search);
  return token;
}

const startToken = tokenFromAddress() || sessionStorage.getItem(TOKEN_KEY);
if (startToken) connect(startToken);

new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadPage();
}).observe(document.getElementById("sentinel"));
