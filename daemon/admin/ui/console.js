// The operator console (SPEC §15). Everything it shows comes from the admin
// API, called with the token the operator signed in with (sessionStorage:
// this tab only, gone when it closes; never a cookie). Every value is put
// into the page as text (textContent), never as markup.

const TOKEN = "privacyd.token";
const main = document.getElementById("main");
const flash = document.getElementById("flash");
let me = null; // {name, role} of the signed-in token
let generation = 0; // bumped by every navigation and sign-out: a slower, older load paints nothing

class SignedOut extends Error {}

// --- the API --------------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN) ?? ""}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.status === 401) {
    signOut("Sign in again: the token was not accepted.");
    throw new SignedOut();
  }
  if (!response.ok) {
    const error = new Error(data?.error?.message ?? `the API answered ${response.status}`);
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

// --- building the page ----------------------------------------------------

// el("td", {class: "num"}, "3", child, …): attributes, then text or nodes.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") {
      for (const [event, handler] of Object.entries(v)) node.addEventListener(event, handler);
    } else {
      node.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function table(headings, rows, caption) {
  return el("div", { class: "scroll" },
    el("table", {},
      caption ? el("caption", { class: "muted" }, caption) : null,
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col", class: h.num ? "num" : null }, h.text ?? h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: headings.length, class: "muted" }, "None")))));
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function daysLeft(request) {
  if (request.days_left === null || request.days_left === undefined) return el("span", { class: "muted" }, "—");
  if (request.overdue) return el("span", { class: "bad" }, `overdue by ${-request.days_left} day(s)`);
  const n = request.days_left;
  return el("span", { class: n < 7 ? "warn" : null }, `${n} day(s) left`); // as the overview counts "within 7 days"
}

function status(s) {
  const cls = { failed: "bad", dead: "bad", awaiting_approval: "warn", pending: "warn", completed: "good", delivered: "good" }[s];
  return el("span", { class: cls, "data-status": s }, s.replaceAll("_", " "));
}

function show(title, ...content) {
  if (!me && title !== "Sign in") return; // signed out while this page loaded
  main.replaceChildren(el("h1", {}, title), ...content.filter((c) => c !== null && c !== undefined));
  document.title = `${title} · privacyd`;
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href");
    const here = location.hash || "#/";
    a.toggleAttribute("aria-current", target === "#/" ? here === "#/" : here.startsWith(target));
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
}

function say(text) {
  flash.textContent = text;
}

const isOperator = () => me?.role === "operator";

// --- confirmations --------------------------------------------------------

// What the API takes as a reason: one line, 1 to 500 bytes.
function oneLine(text) {
  const line = text.replace(/\s+/g, " ").trim();
  if (new TextEncoder().encode(line).length > 500) throw new Error("Keep it under 500 bytes.");
  return line;
}

// Asks before acting; `fields` are inputs whose values go to `act`. An
// error from the API stays in the dialog, with its message. Enter in a
// field confirms; Cancel and Escape close (not while the action runs).
function confirmAction({ title, text, fields = [], okLabel = "Confirm", act, refresh = true }) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const error = document.getElementById("confirm-error");
  error.textContent = "";
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  ok.textContent = okLabel;
  const inputs = fields.map((f) => {
    const input = f.type === "select"
      ? el("select", { name: f.name }, f.options.map((o) => el("option", { value: o }, o.replaceAll("_", " "))))
      : el("input", { name: f.name, type: f.type ?? "text", required: f.required, min: f.min, max: f.max, maxlength: f.maxlength });
    return [f.name, input, el("label", {}, f.label, input)];
  });
  document.getElementById("confirm-fields").replaceChildren(...inputs.map(([, , label]) => label));
  let busy = false;
  cancel.onclick = () => dialog.close();
  dialog.oncancel = (event) => { if (busy) event.preventDefault(); };
  const form = document.getElementById("confirm-form");
  form.onsubmit = async (event) => {
    event.preventDefault();
    if (busy || !form.reportValidity()) return;
    const values = Object.fromEntries(inputs.map(([name, input]) => [name, input.value]));
    busy = ok.disabled = cancel.disabled = true;
    const mine = generation;
    try {
      await act(values);
      dialog.close();
      if (refresh && mine === generation) route();
    } catch (e) {
      if (!(e instanceof SignedOut)) error.textContent = e.message;
    } finally {
      busy = ok.disabled = cancel.disabled = false;
    }
  };
  dialog.showModal();
  (inputs[0]?.[1] ?? ok).focus();
}

function actionButton(label, options, cls) {
  return el("button", { type: "button", class: cls, on: { click: () => confirmAction(options) } }, label);
}

// --- pages ----------------------------------------------------------------

function signIn(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("session").hidden = true;
  const input = el("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true });
  const error = el("p", { class: "error", role: "alert", id: "signin-error" }, message ?? "");
  const form = el("form", { class: "signin", on: { submit: async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, input.value.trim());
    try {
      await start();
    } catch (e) {
      if (!(e instanceof SignedOut)) error.textContent = e.message;
    }
  } } },
  el("label", {}, "Admin token", input),
  el("button", { type: "submit", class: "primary" }, "Sign in"),
  error);
  show("Sign in", el("p", { class: "muted" }, "The admin token from privacyd's admin.tokens_file (make run keeps the operator's in var/keys/operator-token). It stays in this tab only."), form);
  input.focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN);
  me = null;
  generation += 1;
  const dialog = document.getElementById("confirm");
  if (dialog.open) dialog.close();
  signIn(message);
}

function auditState(audit) {
  if (!audit) return el("p", { id: "audit-state", class: "muted" }, "Being verified; look again in a moment.");
  return el("p", { id: "audit-state", class: audit.intact ? "good" : "bad" },
    audit.intact ? `Intact: ${audit.entries} entries, every hash verified (${when(audit.verified_at)}).`
      : `Broken at entry ${audit.broken_seq}: ${audit.problem} (${when(audit.verified_at)})`);
}

async function overview(paint) {
  const o = await api("GET", "/v1/overview");
  const rows = Object.entries(o.requests).map(([type, c]) => el("tr", {},
    el("th", { scope: "row" }, el("a", { href: `#/requests?type=${type}` }, type)),
    el("td", { class: "num", "data-count": `${type}-open` }, c.open),
    el("td", { class: "num", "data-count": `${type}-due` }, c.due_within_7_days),
    el("td", { class: c.overdue ? "num bad" : "num", "data-count": `${type}-overdue` }, c.overdue)));
  const n = o.notices;
  const card = (label, value, href, id, bad) => el("a", { class: "card", href },
    el("div", { class: bad && value ? "n bad" : "n", "data-count": id }, value), el("div", {}, label));
  let state = auditState(o.audit);
  const verify = el("button", { type: "button", id: "verify-audit", on: { click: async () => {
    verify.disabled = true;
    try {
      const fresh = auditState(await api("GET", "/v1/audit/verify"));
      state.replaceWith(fresh);
      state = fresh;
    } catch (e) {
      if (!(e instanceof SignedOut)) say(e.message);
    } finally {
      verify.disabled = false;
    }
  } } }, "Verify now");
  paint("Overview",
    el("h2", {}, "Open requests"),
    table(["Type", { text: "Open", num: true }, { text: "Due within 7 days", num: true }, { text: "Overdue", num: true }], rows),
    el("h2", {}, "Notices"),
    el("div", { class: "cards" },
      card("dead notices", n.dead, "#/notices?status=dead", "notices-dead", true),
      card("awaiting a partner's acknowledgement", n.awaiting_acknowledgement, "#/notices?acknowledged=false", "notices-unacknowledged"),
      card("acknowledgements overdue", n.acknowledgement_overdue, "#/notices?overdue=true", "notices-ack-overdue", true)),
    el("h2", {}, "Audit trail"),
    state,
    verify);
}

const REQUEST_STATUSES = ["received", "running", "awaiting_approval", "completed", "rejected", "failed"];
const REQUEST_TYPES = ["access", "deletion", "disassociation"];

function filterForm(params, selects, base) {
  const controls = selects.map(([name, options]) => el("label", {}, name,
    el("select", { name }, el("option", { value: "" }, "any"),
      options.map((o) => el("option", { value: o, selected: params.get(name) === o }, o.replaceAll("_", " "))))));
  return el("form", { class: "filters", on: { submit: (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const [name] of selects) {
      const v = event.target.elements[name].value;
      if (v) q.set(name, v);
    }
    location.hash = `${base}${q.size ? `?${q}` : ""}`;
  } } }, controls, el("button", { type: "submit" }, "Filter"));
}

function nextPage(base, params, cursor) {
  if (!cursor) return null;
  const q = new URLSearchParams(params);
  q.set("cursor", cursor);
  return el("p", {}, el("a", { href: `${base}?${q}`, id: "next-page" }, "Next page →"));
}

async function requests(params, paint) {
  const q = new URLSearchParams();
  for (const k of ["status", "type", "cursor"]) if (params.get(k)) q.set(k, params.get(k));
  const page = await api("GET", `/v1/requests?${q}`);
  const rows = page.requests.map((r) => el("tr", { "data-request": r.id },
    el("td", { class: "id" }, el("a", { href: `#/requests/${encodeURIComponent(r.id)}` }, r.id)),
    el("td", {}, r.type), el("td", {}, status(r.status)), el("td", {}, r.partner_id ?? "—"),
    el("td", {}, when(r.received_at)), el("td", {}, when(r.deadline)), el("td", {}, daysLeft(r))));
  paint("Requests",
    filterForm(params, [["status", REQUEST_STATUSES], ["type", REQUEST_TYPES]], "#/requests"),
    table(["Request", "Type", "Status", "Partner", "Received", "Deadline", "Time left"], rows),
    nextPage("#/requests", params, page.next_cursor));
}

function noticeRows(notices, withRequest) {
  return notices.map((n) => {
    const ack = n.acknowledgement
      ? [`${n.acknowledgement.outcome.replaceAll("_", " ")} by ${n.acknowledgement.by ?? "?"}, ${when(n.acknowledgement.at)}`,
        n.acknowledgement.note ? el("div", { class: "muted" }, `“${n.acknowledgement.note}”`) : null]
      : n.acknowledge_by ? el("span", { class: n.overdue ? "bad" : "warn" }, `${n.overdue ? "overdue since" : "due by"} ${when(n.acknowledge_by)}`) : "—";
    const actions = [];
    if (isOperator() && n.status === "dead") {
      actions.push(actionButton("Retry", { title: `Retry notice ${n.id}?`, text: "It is sent again from its first attempt, with the same id.", okLabel: "Retry",
        act: async () => { await api("POST", `/v1/notices/${encodeURIComponent(n.id)}/retry`); say(`Notice ${n.id} queued again.`); } }));
    }
    if (isOperator() && n.acknowledge_by && !n.acknowledgement) {
      actions.push(actionButton("Acknowledge", { title: `Record the partner's acknowledgement of ${n.id}?`,
        text: "For an answer the partner gave another way (by phone, by letter).", okLabel: "Record",
        fields: [{ name: "outcome", label: "Outcome", type: "select", options: ["erased", "retained", "no_data"] },
          { name: "note", label: "Note (optional)", maxlength: 500 }],
        act: async (v) => {
          const body = { outcome: v.outcome };
          const note = oneLine(v.note);
          if (note) body.note = note;
          await api("POST", `/v1/notices/${encodeURIComponent(n.id)}/acknowledge`, body);
          say(`Acknowledgement of ${n.id} recorded.`);
        } }));
    }
    return el("tr", { "data-notice": n.id },
      el("td", { class: "id" }, n.id),
      withRequest ? el("td", { class: "id" }, el("a", { href: `#/requests/${encodeURIComponent(n.request_id)}` }, n.request_id)) : null,
      el("td", {}, `${n.channel} → ${n.recipient}`), el("td", {}, status(n.status)), el("td", { class: "num" }, n.attempts),
      el("td", {}, n.last_error ?? "—"), el("td", {}, when(n.delivered_at)), el("td", {}, ack), el("td", {}, actions));
  });
}

const NOTICE_HEADINGS = ["Notice", "To", "Status", { text: "Attempts", num: true }, "Last error", "Delivered", "Acknowledgement", ""];

async function notices(params, paint) {
  const q = new URLSearchParams();
  for (const k of ["status", "acknowledged", "overdue", "cursor"]) if (params.get(k)) q.set(k, params.get(k));
  const page = await api("GET", `/v1/notices?${q}`);
  const headings = [...NOTICE_HEADINGS];
  headings.splice(1, 0, "Request");
  paint("Notices",
    filterForm(params, [["status", ["pending", "delivered", "dead"]], ["acknowledged", ["true", "false"]], ["overdue", ["true", "false"]]], "#/notices"),
    table(headings, noticeRows(page.notices, true)),
    nextPage("#/notices", params, page.next_cursor));
}

function requestActions(r) {
  if (!isOperator()) return null;
  const id = encodeURIComponent(r.id);
  const buttons = [];
  const reject = () => actionButton("Reject", { title: `Reject ${r.id}?`, text: "The person is told why, in their mail. The reason is kept with the request: write no personal data in it.",
    okLabel: "Reject", fields: [{ name: "reason", label: "Reason", required: true, maxlength: 500 }],
    act: async (v) => { await api("POST", `/v1/requests/${id}/reject`, { reason: oneLine(v.reason) }); say(`${r.id} rejected.`); } }, "danger");
  if (r.status === "awaiting_approval") {
    buttons.push(actionButton("Approve", { title: `Approve ${r.id}?`, text: "The workflow goes on from its approval step.", okLabel: "Approve",
      act: async () => { await api("POST", `/v1/requests/${id}/approve`); say(`${r.id} approved.`); } }, "primary"));
    buttons.push(reject());
  }
  if (r.status === "failed") {
    buttons.push(actionButton("Retry", { title: `Retry ${r.id}?`, text: "The failed step runs again.", okLabel: "Retry",
      act: async () => { await api("POST", `/v1/requests/${id}/retry`); say(`${r.id} retried.`); } }));
    // One that would only fail again is closed this way (the person is told).
    buttons.push(reject());
  }
  if (!["completed", "rejected"].includes(r.status) && !r.extended) {
    buttons.push(actionButton("Extend deadline", { title: `Extend the deadline of ${r.id}?`, text: "Once only, up to what its jurisdiction allows; the Partner Center is told why.",
      okLabel: "Extend", fields: [{ name: "days", label: "Days (empty: all the jurisdiction allows)", type: "number", min: 1 },
        { name: "reason", label: "Reason", required: true, maxlength: 500 }],
      act: async (v) => {
        const body = { reason: oneLine(v.reason) };
        if (v.days) body.days = Number(v.days);
        await api("POST", `/v1/requests/${id}/extend`, body);
        say(`The deadline of ${r.id} was extended.`);
      } }));
  }
  return buttons.length ? el("div", { class: "actions", id: "request-actions" }, buttons) : null;
}

async function request(id, paint) {
  const path = `/v1/requests/${encodeURIComponent(id)}`;
  const [r, audit] = await Promise.all([api("GET", path), api("GET", `${path}/audit`)]);
  const fact = (k, v) => [el("dt", {}, k), el("dd", {}, v)];
  const steps = r.steps.map((s) => el("tr", { "data-step": s.id },
    el("td", { class: "num" }, s.index + 1), el("td", {}, s.id), el("td", {}, s.action), el("td", {}, status(s.status)),
    el("td", { class: "num" }, s.attempts), el("td", {}, s.error ? el("span", { class: "bad" }, s.error) : "—"),
    el("td", {}, when(s.started_at)), el("td", {}, when(s.finished_at))));
  const entries = audit.entries.map((e) => el("tr", {},
    el("td", { class: "num" }, e.seq), el("td", {}, when(e.at)), el("td", {}, e.event), el("td", {}, el("pre", {}, JSON.stringify(e.detail)))));
  paint(`Request ${r.id}`,
    el("dl", { class: "facts" },
      fact("Type", r.type), fact("Status", status(r.status)), fact("Reason", r.reason ?? "—"),
      fact("Partner", r.partner_id ?? "—"), fact("Jurisdiction", r.jurisdiction),
      fact("Received", when(r.received_at)), fact("Deadline", [when(r.deadline), " · ", daysLeft(r)]),
      fact("Extended", r.extended ? `${when(r.extended.at)}: ${r.extended.reason ?? ""}` : "no"),
      fact("Workflow", r.workflow ? `${r.workflow.name} v${r.workflow.version}` : "not started")),
    requestActions(r),
    el("h2", {}, "Steps"),
    table([{ text: "#", num: true }, "Step", "Action", "Status", { text: "Attempts", num: true }, "Error", "Started", "Finished"], steps),
    el("h2", {}, "Notices"),
    table(NOTICE_HEADINGS, noticeRows(r.notices, false)),
    el("h2", {}, "Audit entries"),
    table([{ text: "#", num: true }, "At", "Event", "Detail"], entries));
}

function reload(paint) {
  const result = el("div", { id: "reload-result" });
  const run = async () => {
    try {
      await api("POST", "/v1/reload");
      result.replaceChildren(el("p", { class: "good" }, "Reloaded: workflows, policies, templates, secrets and tokens are in use."));
    } catch (e) {
      if (e instanceof SignedOut) return;
      const problems = e.data?.problems ?? [];
      result.replaceChildren(el("p", { class: "bad" }, e.message),
        el("ol", { class: "problems" }, problems.map((p) => el("li", {}, `${p.path}:${p.line}:${p.column}: ${p.message} [${p.rule}]`))));
    }
  };
  paint("Reload",
    el("p", {}, "Reads the YAML again. All of it is checked first: with any problem nothing changes, and each is listed here with its position."),
    isOperator() ? actionButton("Reload the YAML", { title: "Reload the YAML?", text: "Workflows, policies, templates, secrets and tokens are read again.", okLabel: "Reload", act: run, refresh: false }, "primary")
      : el("p", { class: "muted" }, "Reloading needs the operator role."),
    result);
}

// --- routing --------------------------------------------------------------

const REQUEST_ID = /^req_[A-Za-z0-9]{1,64}$/;

async function route() {
  if (!me) return;
  const hash = location.hash.replace(/^#/, "") || "/";
  if (!hash.startsWith("/")) return; // an anchor in the page (the skip link), not a page
  const mine = ++generation;
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query ?? "");
  // Each page loads, then paints only if no newer navigation (or a
  // sign-out) came meanwhile.
  const paint = (...args) => {
    if (mine === generation) show(...args);
  };
  try {
    if (path === "/") await overview(paint);
    else if (path === "/requests") await requests(params, paint);
    else if (path.startsWith("/requests/")) {
      const id = decodeURIComponent(path.slice("/requests/".length));
      if (REQUEST_ID.test(id)) await request(id, paint);
      else paint("Not found", el("p", {}, "That is not a request id."));
    } else if (path === "/notices") await notices(params, paint);
    else if (path === "/reload") reload(paint);
    else paint("Not found", el("p", {}, "There is no such page."));
    if (mine === generation) main.focus();
  } catch (e) {
    if (e instanceof SignedOut) return;
    paint("Something went wrong", el("p", { class: "error", role: "alert" }, e.message));
  }
}

async function start() {
  if (!sessionStorage.getItem(TOKEN)) return signIn();
  me = await api("GET", "/v1/whoami");
  document.getElementById("who").textContent = `${me.name} (${me.role})`;
  document.getElementById("nav").hidden = false;
  document.getElementById("session").hidden = false;
  await route();
}

document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
document.querySelector("a.skip").addEventListener("click", (event) => {
  event.preventDefault(); // the page's own hash routes: leave it as it is
  main.focus();
});
window.addEventListener("hashchange", () => {
  say(""); // what the last action said belongs to the last page
  route();
});
start().catch((e) => {
  if (!(e instanceof SignedOut)) signIn(e.message);
});
