/* chatbot widget. <script src=".../widget.js" defer data-title data-color data-text-color data-position=left
   data-server data-token|data-token-url>. Speaks /v1/ws; model and source text only become text nodes. */
(() => {
"use strict";
const me = document.currentScript || document.querySelector('script[src*="widget.js"]');
if (!me) return;
const d = me.dataset, title = d.title || "Ask the docs";
const server = (d.server || new URL(me.src, location.href).origin).replace(/\/+$/, "");
const STYLE = ":host{all:initial}*{box-sizing:border-box}" +
  ".w{--a:#2563eb;--t:#fff;position:fixed;bottom:20px;right:20px;z-index:2147483000;font:14px/1.5 system-ui,sans-serif;color:#111}" +
  ".l{right:auto;left:20px}.bub{width:56px;height:56px;border-radius:50%;border:0;background:var(--a);color:var(--t);cursor:pointer;box-shadow:0 4px 14px #0004;display:grid;place-items:center}" +
  ".bub:hover{filter:brightness(1.1)}svg{width:26px;fill:currentColor}" +
  ".p{position:absolute;bottom:72px;right:0;width:min(380px,calc(100vw - 40px));height:min(560px,calc(100vh - 110px));background:#fff;border-radius:14px;box-shadow:0 12px 40px #0004;display:flex;flex-direction:column;overflow:hidden;animation:in .18s ease-out}" +
  ".l .p{right:auto;left:0}[hidden]{display:none!important}@keyframes in{from{opacity:0;transform:translateY(8px)}}" +
  ".hd{background:var(--a);color:var(--t);padding:10px 8px 10px 16px;display:flex;align-items:center}h2{font-size:15px;margin:0;flex:1}" +
  ".x{background:none;border:0;color:inherit;font-size:22px;line-height:1;cursor:pointer;padding:4px 8px}" +
  ".log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px;background:#fafafa}" +
  ".m{max-width:88%;padding:8px 12px;border-radius:12px;overflow-wrap:anywhere}.u{align-self:flex-end;background:var(--a);color:var(--t);white-space:pre-wrap}" +
  ".b{align-self:flex-start;background:#fff;border:1px solid #e5e5e5}.hint{color:#666;text-align:center;margin:auto}" +
  ".md p,.md ul,.md ol,pre{margin:0 0 8px}.md>:last-child{margin:0}.md p{white-space:pre-line}.md ul,.md ol{padding-left:20px}.h{font-weight:600}" +
  "code{font:12.5px ui-monospace,monospace;background:#f2f2f2;border-radius:4px;padding:1px 4px}" +
  "pre{background:#111;color:#fafafa;padding:10px;border-radius:8px;overflow-x:auto}pre code{background:none;padding:0;color:inherit}" +
  "a{color:var(--a)}.c{font-size:11px;vertical-align:super;line-height:0;text-decoration:none;font-weight:600}" +
  ".typing>p:last-child::after,.typing:empty::after{content:'';display:inline-block;width:7px;height:14px;background:currentColor;opacity:.4;vertical-align:text-bottom;animation:bl 1s steps(2) infinite}@keyframes bl{50%{opacity:0}}" +
  ".src{list-style:disc;margin:8px 0 0;padding:8px 0 0 20px;border-top:1px solid #e5e5e5;font-size:12px;color:#555}.hl{background:#fef3c7}" +
  ".refs{margin:1px 0 4px;padding-left:10px;list-style:none}" +
  ".n{font-size:12px;color:#666;font-style:italic;margin-top:6px}.err{color:#b91c1c;font-style:normal}" +
  ".st{font-size:12px;padding:5px 14px;color:#92400e;background:#fffbeb}.f{display:flex;gap:8px;padding:10px;border-top:1px solid #e5e5e5}" +
  "textarea{flex:1;resize:none;border:1px solid #ccc;border-radius:10px;padding:8px 10px;font:inherit;color:inherit;height:40px;max-height:120px}" +
  ".go,.stop{border:0;border-radius:10px;padding:0 16px;font:inherit;font-weight:600;cursor:pointer;background:var(--a);color:var(--t)}" +
  ".stop{background:#fff;color:#b91c1c;border:1px solid #fca5a5}:focus-visible{outline:2px solid var(--a);outline-offset:2px}.hd :focus-visible{outline-color:var(--t);outline-offset:-2px}" +
  ".fb button{margin:6px 4px 0 0;border:1px solid #ddd;background:#fff;border-radius:8px}.fb [aria-pressed=true]{background:var(--a)}" +
  "@media (max-width:480px){.p{position:fixed;inset:0;width:auto;height:auto;border-radius:0}}" +
  "@media (prefers-reduced-motion:reduce){*,::after{animation:none!important}}";
const CHAT = "M6 3h12a3 3 0 0 1 3 3v8a3 3 0 0 1-3 3h-8l-5 4v-4H6a3 3 0 0 1-3-3V6a3 3 0 0 1 3-3z";
const CLOSE = "M6.4 5 5 6.4l5.6 5.6L5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z";

const el = (tag, cls, text, attrs) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
};
const txt = (s) => document.createTextNode(s);

// -- safe markdown: paragraphs, lists, headings, fences, `code`, **bold**, *em*, http(s) links, [n] --
const INLINE = /`([^`\n]+)`|\*\*(\S(?:[^*]*\S)?)\*\*|\*(\S(?:[^*\n]*\S)?)\*|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)|\[(\d{1,3})\]|(https?:\/\/[^\s<>()]*[^\s<>().,;:!?'"])/g;
function link(parent, href, label) {
  let u = null;
  try { u = new URL(href); } catch (e) { /* not a URL: text */ }
  if (!u || !/^https?:$/.test(u.protocol)) return parent.append(label);
  parent.append(el("a", null, label, { href: u.href, target: "_blank", rel: "noopener noreferrer" }));
}
function inline(parent, s, ans) {
  const re = new RegExp(INLINE.source, "g");
  let last = 0, m;
  while ((m = re.exec(s))) {
    parent.append(s.slice(last, m.index));
    if (m[1] != null) parent.append(el("code", null, m[1]));
    else if (m[2] != null) inline(parent.appendChild(el("strong")), m[2], ans);
    else if (m[3] != null) inline(parent.appendChild(el("em")), m[3], ans);
    else if (m[4] != null) link(parent, m[5], m[4]);
    else if (m[6] != null) cite(parent, +m[6], ans, m[0]);
    else link(parent, m[7], m[7]);
    last = re.lastIndex;
  }
  parent.append(s.slice(last));
}
function markdown(src, ans) {
  const out = document.createDocumentFragment(), lines = src.split("\n");
  let para = [], list = null, i = 0, m;
  const flush = () => {
    if (para.length) inline(out.appendChild(el("p")), para.join("\n"), ans);
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i++];
    if ((m = /^\s*(```|~~~)/.exec(line))) {
      flush(); list = null;
      const code = [];
      while (i < lines.length && !lines[i].trim().startsWith(m[1])) code.push(lines[i++]);
      i++;
      out.appendChild(el("pre")).append(el("code", null, code.join("\n")));
    } else if ((m = /^\s*([-*+]|(\d{1,3})[.)])\s+(.*)$/.exec(line))) {
      flush();
      const tag = m[2] ? "OL" : "UL";
      if (!list || list.tagName !== tag) {
        list = out.appendChild(el(tag));
        if (m[2] > 1) list.start = +m[2];
      }
      inline(list.appendChild(el("li")), m[3], ans);
    } else if ((m = /^\s{0,3}#{1,6}\s+(.*)$/.exec(line))) {
      flush(); list = null;
      inline(out.appendChild(el("p", "h")), m[1], ans);
    } else if (line.trim()) {
      list = null; para.push(line);
    } else {
      flush(); list = null;
    }
  }
  flush();
  return out;
}
function cite(parent, n, ans, raw) {
  const s = ans.sources.find((x) => x.n === n), id = ans.key + "-" + n;
  if (!s) return parent.append(raw);
  const label = [`Source ${n}: ${s.title || s.source}`, pages(s)].filter(Boolean).join(", ");
  const a = parent.appendChild(el("a", "c", raw, { href: "#" + id, "aria-label": label }));
  a.onclick = (e) => {
    e.preventDefault(); // the footnote is in our shadow root: no navigation of the host page
    const li = root.getElementById(id);
    li.scrollIntoView({ block: "nearest" });
    li.focus();
    li.classList.add("hl");
    setTimeout(() => li.classList.remove("hl"), 1500);
  };
}

// -- DOM --
const host = el("div", null, null, { "data-chatbot-widget": "" }), root = host.attachShadow({ mode: "open" });
const wrap = el("div", d.position === "left" ? "w l" : "w");
for (const [name, value] of [["--a", d.color], ["--t", d.textColor]]) {
  if (value && CSS.supports("color", value)) wrap.style.setProperty(name, value);
}
const panel = wrap.appendChild(el("div", "p", null, { role: "dialog", "aria-label": title, id: "panel" }));
const head = panel.appendChild(el("div", "hd"));
head.append(el("h2", null, title));
const closer = head.appendChild(el("button", "x", "\u00d7", { type: "button", "aria-label": "Close chat" }));
const log = panel.appendChild(el("div", "log", null, { role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0" }));
const hint = log.appendChild(el("p", "hint", "Ask a question; answers cite their sources."));
const status = panel.appendChild(el("div", "st", null, { role: "status" }));
const form = panel.appendChild(el("form", "f"));
const input = form.appendChild(el("textarea", null, null, { rows: "1", placeholder: "Ask a question\u2026", "aria-label": "Your question" }));
const send = form.appendChild(el("button", "go", "Send", { type: "submit" }));
const stop = form.appendChild(el("button", "stop", "Stop", { type: "button", "aria-label": "Stop the answer" }));
const bubble = wrap.appendChild(el("button", "bub", null, { type: "button", "aria-controls": "panel" }));
const NS = "http://www.w3.org/2000/svg", icon = bubble.appendChild(document.createElementNS(NS, "svg"));
icon.setAttribute("viewBox", "0 0 24 24");
icon.setAttribute("aria-hidden", "true");
const path = icon.appendChild(document.createElementNS(NS, "path"));
try { // a constructed sheet needs no 'unsafe-inline' in the host page's CSP
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(STYLE);
  root.adoptedStyleSheets = [sheet];
} catch (e) { root.append(el("style", null, STYLE)); }
root.append(wrap);
status.hidden = stop.hidden = true;

const look = (open) => {
  panel.hidden = !open;
  bubble.setAttribute("aria-expanded", open);
  bubble.setAttribute("aria-label", open ? "Close chat" : "Open chat: " + title);
  path.setAttribute("d", open ? CLOSE : CHAT);
};
const setOpen = (open) => {
  look(open);
  if (open) { input.focus(); connect(); } else bubble.focus();
};
look(false);
bubble.onclick = () => setOpen(panel.hidden);
closer.onclick = () => setOpen(false);
wrap.onkeydown = (e) => { if (e.key === "Escape" && !panel.hidden) setOpen(false); };
input.onkeydown = (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
};
input.oninput = () => { input.style.height = ""; input.style.height = Math.min(input.scrollHeight + 2, 120) + "px"; };
form.onsubmit = (e) => {
  e.preventDefault();
  const q = input.value.trim();
  if (!q || busy()) return;
  input.value = ""; input.style.height = "";
  ask(q);
};
stop.onclick = () => {
  if (!busy()) return;
  if (cur.sent) queue({ type: "stop", message_id: cur.id || undefined });
  else { outbox = []; finish(cur, "Stopped.", "n stopped"); } // it never reached the server
};

const say = (text) => { status.textContent = text; status.hidden = !text; };
const busy = () => !!(cur && !cur.ended);
const pinned = (fn) => { // keep the log scrolled to the end if it was there
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
  fn();
  if (stick) log.scrollTop = log.scrollHeight;
};

// -- answers --
let cur = null, count = 0, conversationId = null;
function ask(q) {
  const ans = cur = { key: "a" + ++count, id: null, seq: 0, text: "", sources: [], ended: false, sent: false };
  ans.box = el("div", "m b", null, { "aria-busy": "true" });
  ans.body = ans.box.appendChild(el("div", "md typing"));
  ans.foot = ans.box.appendChild(el("div"));
  hint.remove();
  pinned(() => log.append(el("div", "m u", q), ans.box));
  stop.hidden = false; send.hidden = true;
  queue({ type: "ask", message: q, conversation_id: conversationId || undefined });
}
function render(ans) {
  cancelAnimationFrame(ans.raf); ans.raf = 0;
  pinned(() => ans.body.replaceChildren(markdown(ans.text, ans)));
}
function pages(s) { // "p. 13", "pp. 13\u201314", or "" when the loader stored no page
  const a = s.page_start, b = s.page_end;
  if (!Number.isInteger(a)) return "";
  return Number.isInteger(b) && b > a ? `pp. ${a}\u2013${b}` : `p. ${a}`;
}
function footnotes(ans) { // one entry per document; its cited chunks ([n], page, section) listed under it
  const ol = el("ol", "src", null, { "aria-label": "Sources" }), docs = new Map();
  for (const s of ans.sources) {
    const key = s.doc_id || s.source;
    let doc = docs.get(key);
    if (!doc) {
      const li = ol.appendChild(el("li", "doc"));
      li.append((s.title || s.source) + " \u2014 ");
      if (/^https?:\/\//.test(s.source)) link(li, s.source, s.source); else li.append(el("code", null, s.source));
      doc = li.appendChild(el("ul", "refs"));
      docs.set(key, doc);
    }
    const where = (s.heading_path || []).filter((h) => h && h !== s.title), page = pages(s);
    const label = [`[${s.n}]`, page, where.join(" \u203a ")].filter(Boolean).join(" ");
    doc.appendChild(el("li", null, label, {
      id: ans.key + "-" + s.n, tabindex: "-1",
      "aria-label": [`Source ${s.n}`, page, ...where].filter(Boolean).join(", "),
    }));
  }
  pinned(() => ans.foot.replaceChildren(ol));
}
function finish(ans, note, cls) {
  if (ans.ended) return;
  ans.ended = true;
  render(ans);
  ans.body.classList.remove("typing");
  ans.box.removeAttribute("aria-busy");
  if (note) pinned(() => ans.box.append(el("div", cls, note)));
  else if (ans.id) pinned(() => ans.box.append(thumbs(ans)));
  if (root.activeElement === stop) input.focus();
  stop.hidden = true; send.hidden = false;
}
function onFrame(f) {
  const ans = cur;
  if (!ans || ans.ended) return;
  if (f.message_id) {
    if (f.type === "start" && !ans.id) { ans.id = f.message_id; conversationId = f.conversation_id || conversationId; }
    if (f.message_id !== ans.id || !(f.seq > ans.seq)) return; // another answer's frame, or one we have
    ans.seq = f.seq;
  }
  if (f.type === "sources") { ans.sources = f.sources || []; footnotes(ans); render(ans); }
  else if (f.type === "token") { ans.text += f.delta || ""; ans.raf = ans.raf || requestAnimationFrame(() => render(ans)); }
  else if (f.type === "done") finish(ans);
  else if (f.type === "stopped") finish(ans, "Stopped.", "n stopped");
  else if (f.type === "error" && (f.message_id || !ans.id || f.code === "unknown_message")) {
    if (f.code === "unknown_conversation") conversationId = null;
    const m = f.message || "Something went wrong.";
    finish(ans, f.retry_after ? `${m} Try again in ${Math.ceil(f.retry_after)} s.` : m, "n err");
  }
}

// -- thumbs (cid: one vote per browser) --
const cid = ((r) => { try { return localStorage.chatbotCid ||= r; } catch (e) { return r; } })(Math.random().toString(36).slice(2));
function thumbs(ans) {
  const bar = el("div", "fb", null, { role: "group", "aria-label": "Rate this answer" });
  for (const [rating, label, face] of [["up", "Helpful", "👍"], ["down", "Not helpful", "👎"]]) {
    const b = bar.appendChild(el("button", null, face, { type: "button", "aria-label": label, "aria-pressed": false }));
    b.onclick = async () => {
      const t = await token(), ok = await fetch(`${server}/v1/messages/${ans.id}/feedback` + (t ? "?token=" + encodeURIComponent(t) : ""), { method: "POST", body: JSON.stringify({ rating, client_id: cid }) }).then((r) => r.ok, () => 0);
      if (ok) for (const x of bar.children) x.setAttribute("aria-pressed", x === b);
      say(ok ? "" : "Feedback not sent.");
    };
  }
  return bar;
}

// -- connection: opened on demand; after a drop, reconnect with backoff and resume after the last seq --
let ws = null, opening = false, timer = 0, tries = 0, outbox = [];
function queue(frame) {
  outbox.push(frame);
  if (ws && ws.readyState === 1) flush(); else connect();
}
function flush() {
  while (outbox.length) {
    const f = outbox.shift();
    ws.send(JSON.stringify(f));
    if (f.type === "ask") cur.sent = true;
  }
}
async function token() {
  if (!d.tokenUrl) return d.token;
  try { return (await (await fetch(d.tokenUrl, { credentials: "same-origin" })).json()).token; } catch (e) { return d.token; }
}
async function connect() {
  if (ws || opening || timer) return;
  opening = true;
  const t = await token();
  opening = false;
  const s = ws = new WebSocket(server.replace(/^http/, "ws") + "/v1/ws" + (t ? "?token=" + encodeURIComponent(t) : ""));
  s.onopen = () => {
    s.opened = true; tries = 0; say("");
    if (busy() && cur.id) s.send(JSON.stringify({ type: "resume", message_id: cur.id, after: cur.seq }));
    flush();
  };
  s.onmessage = (e) => {
    let f;
    try { f = JSON.parse(e.data); } catch (err) { return; }
    onFrame(f);
  };
  s.onclose = () => {
    if (ws !== s) return;
    ws = null;
    const lost = s.opened ? "Connection lost. Reconnecting\u2026" : "Can't connect to the chat server.";
    if (busy() && cur.sent && !cur.id) finish(cur, "The connection dropped before the answer started; please ask again.", "n err");
    if (!busy() && !outbox.length) return say(s.opened ? "" : lost);
    if (++tries > 5) {
      outbox = [];
      finish(cur, "Can't connect to the chat server. Please try again later.", "n err");
      return say("");
    }
    say(s.opened ? lost : lost + " Retrying\u2026");
    timer = setTimeout(() => { timer = 0; connect(); }, Math.min(8000, 200 * 2 ** tries) * (0.75 + Math.random() / 2));
  };
}

const mount = () => document.body.append(host);
if (document.body) mount(); else addEventListener("DOMContentLoaded", mount);
})();
