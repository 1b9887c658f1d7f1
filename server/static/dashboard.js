// The tidings dashboard. The pages it runs on hold no data: everything comes from the
// API (with the API key from sessionStorage, asked for after a 401) and from the SSE
// streams, opened with the tokenised URLs the API returns, so a key is never in a URL.
// Every value reaches the page through textContent or an attribute, never as HTML.

const KEY_STORAGE = "tidings.apiKey";
const ROOT = document.body.dataset.root || "";
// Statuses, event kinds and which statuses allow what: sent by the server with the page.
const MODEL = JSON.parse(document.body.dataset.model);
const KINDS = MODEL.kinds;
const TERMINAL = new Set(MODEL.terminal);
const CANCELLABLE = new Set(MODEL.cancellable);
const RETRYABLE = new Set(MODEL.retryable);
const STATUSES = MODEL.statuses;
const PAGE_SIZE = 50;
// Live inserts grow the first page; past this many rows the list is read afresh.
const MAX_LIVE_ROWS = 500;
// Re-reading counts or queue depth after events happens at most this often.
const REFRESH_EVERY_MS = 1000;
const MAX_BACKOFF_MS = 15000;
const HEARTBEAT_REREAD_MS = 5000;

class AuthNeeded extends Error {}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// --- DOM and formatting -----------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child); // strings become text
  }
  return node;
}

function setText(id, text) {
  $(id).textContent = text;
}

function fmtDate(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  const today = date.toDateString() === new Date().toDateString();
  return today
    ? date.toLocaleTimeString()
    : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function timeEl(iso, text = fmtDate(iso)) {
  return iso ? el("time", { datetime: iso, title: iso }, text) : "–";
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 1) return `${Math.max(0, Math.round(seconds * 1000))} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function fractionOf(current, total) {
  if (current === null || current === undefined || !total) return null;
  return Math.max(0, Math.min(1, current / total));
}

function fmtPercent(fraction) {
  return `${Math.floor(fraction * 100)}%`;
}

function fmtNumber(value) {
  return value === null || value === undefined ? "–" : String(value);
}

function statusBadge(node, status) {
  node.className = `status status-${status}`;
  node.textContent = status;
}

// Show a <progress>: a value when the fraction is known, indeterminate while running
// without one, hidden otherwise. `label` holds the percentage as text.
function showProgress(bar, label, fraction, status) {
  const line = bar.closest(".progress-line");
  if (line) line.hidden = fraction === null && status !== "running";
  if (fraction !== null) {
    bar.hidden = false;
    bar.value = fraction;
    label.textContent = fmtPercent(fraction);
  } else if (status === "running") {
    bar.hidden = false;
    bar.removeAttribute("value");
    label.textContent = "";
  } else {
    bar.hidden = true;
    label.textContent = "–";
  }
}

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

// Links from the API are absolute; open streams same-origin, by path.
function samePath(link) {
  const url = new URL(link, window.location.href);
  return url.pathname + url.search;
}

function setLive(state, text) {
  const node = $("live");
  node.dataset.state = state;
  node.textContent = text;
}

function showPageError(error) {
  if (error instanceof AuthNeeded) {
    askForKey(error);
    return;
  }
  const node = $("page-error");
  node.hidden = false;
  node.textContent = error instanceof ApiError ? error.message : `Something went wrong: ${error}`;
}

// --- the API and the key ----------------------------------------------------------------

function storedKey() {
  return window.sessionStorage.getItem(KEY_STORAGE);
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(ROOT + path, init);
  if (response.status === 401) throw new AuthNeeded(key ? "rejected" : "missing");
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload && payload.error ? payload.error : {};
    throw new ApiError(
      response.status,
      error.code || "http_error",
      error.message || `the server answered ${response.status}`,
    );
  }
  $("page-error").hidden = true; // whatever went wrong before (a 503, say) is over
  return { payload, response };
}

let askedForKey = false;

function askForKey(reason) {
  if (askedForKey) return;
  askedForKey = true;
  setLive("idle", "");
  if (reason && reason.message === "rejected") {
    window.sessionStorage.removeItem(KEY_STORAGE);
    setText("key-error", "That key was not accepted. Check it and try again.");
  }
  $("key-panel").hidden = false;
  $("main").hidden = true; // an empty scaffold would only confuse
  $("forget-key").hidden = true;
  $("key-input").focus();
}

function setUpKeyForm() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    window.sessionStorage.setItem(KEY_STORAGE, key);
    // Start the view afresh with the key: simpler and surer than re-wiring every stream.
    window.location.reload();
  });
  const forget = $("forget-key");
  forget.hidden = !storedKey();
  forget.addEventListener("click", () => {
    window.sessionStorage.removeItem(KEY_STORAGE);
    window.location.reload();
  });
}

// The search box in the header: a full id or a prefix, both opened as /ui/jobs/<text>,
// whose page finds the job (a prefix is looked up among this key's jobs).
function setUpFindForm() {
  $("find-job").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("find-job-input").value.trim();
    if (text) window.location.assign(`${ROOT}/ui/jobs/${encodeURIComponent(text)}`);
  });
}

// An EventSource that says when it is live or reconnecting. The browser reconnects by
// itself after a dropped connection (sending Last-Event-ID); when it gives up (an HTTP
// error: an expired token, a 503), `onGiveUp` is called to open a fresh one.
function openStream(path, { onEvent, onOpen, onGiveUp, extraEvents = {} }) {
  setLive("connecting", "connecting…");
  const source = new EventSource(path);
  for (const kind of KINDS) {
    source.addEventListener(kind, (message) => onEvent(JSON.parse(message.data)));
  }
  for (const [name, handler] of Object.entries(extraEvents)) {
    source.addEventListener(name, handler);
  }
  source.addEventListener("open", () => {
    setLive("live", "live");
    if (onOpen) onOpen();
  });
  source.addEventListener("error", () => {
    setLive("reconnecting", "reconnecting…");
    if (source.readyState === EventSource.CLOSED) onGiveUp();
  });
  return source;
}

class Backoff {
  constructor() {
    this.delay = 0;
  }

  next() {
    this.delay = Math.min(this.delay ? this.delay * 2 : 500, MAX_BACKOFF_MS);
    return this.delay;
  }

  reset() {
    this.delay = 0;
  }
}

// Runs `task` soon, at most once per `every` ms, however many times it is asked.
class Coalesce {
  constructor(task, every = REFRESH_EVERY_MS) {
    this.task = task;
    this.every = every;
    this.timer = null;
    this.last = 0;
  }

  request() {
    if (this.timer !== null) return;
    const wait = Math.max(0, this.last + this.every - Date.now());
    this.timer = window.setTimeout(() => {
      this.timer = null;
      this.last = Date.now();
      this.task().catch(showPageError);
    }, wait);
  }
}

// --- jobs view: the live table ----------------------------------------------------------

function jobState(job) {
  return {
    id: job.id,
    task: job.task,
    queue: job.queue,
    status: job.status,
    attempt: job.attempt,
    current: job.progress.current,
    total: job.progress.total,
    message: job.progress.message,
    created: job.created_at,
  };
}

function withEvent(state, event) {
  const next = { ...state, status: event.status, attempt: event.attempt };
  if (event.kind === "retrying" && event.data && event.data.next_attempt) {
    next.attempt = event.data.next_attempt; // the event names the attempt that failed
  }
  if (event.kind === "progress") {
    next.current = event.current;
    next.total = event.total;
    next.message = event.message;
  }
  return next;
}

class JobsTable {
  constructor(filters, cursor, oldest = false) {
    this.filters = filters;
    this.cursor = cursor;
    this.oldest = oldest;
    this.body = $("jobs-body");
    this.rows = new Map();
    this.nextCursor = null;
    this.prevCursor = null;
    this.position = null;
    this.listeners = []; // called with every event of the live stream
    this.onRender = () => {};
    this.eventsPath = null;
    this.source = null;
    this.buffer = null; // events that arrive while the list is being read
    this.loading = false;
    this.again = false;
    this.fetching = new Map(); // job id -> events held until its row exists
    this.backoff = new Backoff();
    this.counts = new Coalesce(() => this.loadCounts());
  }

  async start() {
    await Promise.all([this.load(), this.loadCounts()]);
    this.loadTaskNames();
    this.follow();
  }

  query() {
    const query = filterQuery(this.filters);
    query.set("limit", String(PAGE_SIZE));
    if (this.cursor) query.set("cursor", this.cursor);
    if (this.oldest) query.set("page", "oldest");
    query.set("position", "true");
    return query;
  }

  async load() {
    this.body.setAttribute("aria-busy", "true");
    this.buffer = [];
    try {
      const { payload } = await api(`/jobs?${this.query()}`);
      this.eventsPath = samePath(payload.events);
      this.nextCursor = payload.next_cursor;
      this.prevCursor = payload.prev_cursor;
      this.position = payload.position;
      this.render(payload.jobs.map(jobState));
      const held = this.buffer;
      this.buffer = null;
      for (const event of held) this.apply(event);
    } finally {
      this.buffer = null;
      this.body.setAttribute("aria-busy", "false");
    }
  }

  // Read the list again (after a reconnect or a `resync`), once at a time.
  resync() {
    this.counts.request();
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.body.setAttribute("aria-busy", "true");
    (async () => {
      do {
        this.again = false;
        try {
          await this.load();
        } catch (error) {
          showPageError(error);
        }
      } while (this.again);
      this.loading = false;
    })();
  }

  follow() {
    const source = openStream(this.eventsPath, {
      onEvent: (event) => this.onEvent(event),
      onOpen: () => {
        this.backoff.reset();
        this.resync(); // whatever happened while no stream was open
      },
      onGiveUp: () => this.reopenLater(),
      extraEvents: { resync: () => this.resync() },
    });
    this.source = source;
  }

  reopenLater() {
    this.source = null;
    window.setTimeout(async () => {
      try {
        await this.load(); // a fresh stream token comes with the list
        this.follow();
      } catch (error) {
        if (error instanceof AuthNeeded) showPageError(error);
        else this.reopenLater();
      }
    }, this.backoff.next());
  }

  onEvent(event) {
    for (const listener of this.listeners) listener(event);
    if (this.buffer !== null) this.buffer.push(event);
    else this.apply(event);
    if (event.kind !== "progress" && event.kind !== "log") this.counts.request();
  }

  matches(job) {
    return jobMatches(this.filters, job);
  }

  apply(event) {
    const row = this.rows.get(event.job_id);
    if (row) {
      this.fill(row, withEvent(row.state, event));
      return;
    }
    const held = this.fetching.get(event.job_id);
    if (held) {
      held.push(event);
      return;
    }
    // Live rows join the first page only.
    if (this.cursor || this.oldest || !this.matches(event)) return;
    if (event.kind === "queued" && event.seq === 1) {
      this.insert({
        id: event.job_id,
        task: event.task,
        queue: event.queue,
        status: event.status,
        attempt: event.attempt,
        current: null,
        total: null,
        message: null,
        created: event.at,
      });
    } else {
      this.fetchAndInsert(event.job_id);
    }
  }

  // A job this page has not shown yet now matches the filters (it failed, say): read it.
  async fetchAndInsert(jobId) {
    const held = [];
    this.fetching.set(jobId, held);
    try {
      const { payload } = await api(`/jobs/${encodeURIComponent(jobId)}`);
      if (!this.rows.has(jobId) && this.matches(payload)) this.insert(jobState(payload));
    } catch (error) {
      if (error instanceof AuthNeeded) showPageError(error);
    } finally {
      this.fetching.delete(jobId);
    }
    const row = this.rows.get(jobId);
    if (row) for (const event of held) this.fill(row, withEvent(row.state, event));
  }

  insert(state) {
    const created = Date.parse(state.created);
    let before = null;
    for (const tr of this.body.children) {
      if (Date.parse(this.rows.get(tr.dataset.jobId).state.created) <= created) {
        before = tr;
        break;
      }
    }
    if (before === null && this.nextCursor) return; // it sorts onto a later page
    const row = this.makeRow(state.id);
    this.fill(row, state);
    this.body.insertBefore(row.tr, before);
    this.rows.set(state.id, row);
    this.updateEmpty();
    this.position = withLiveRow(this.position);
    renderPagingLinks(this);
    if (this.rows.size > MAX_LIVE_ROWS) this.resync();
  }

  makeRow(id) {
    const link = el("a", { href: `${ROOT}/ui/jobs/${encodeURIComponent(id)}`, title: id },
      el("code", {}, id.slice(0, 8)));
    const status = el("span", {});
    const bar = el("progress", { max: "1", "aria-label": `Progress of job ${id.slice(0, 8)}` });
    const percent = el("span", { className: "percent" });
    const cells = {
      task: el("td", { dataset: { label: "Task" } }),
      queue: el("td", { className: "wide", dataset: { label: "Queue" } }),
      attempt: el("td", { className: "wide num", dataset: { label: "Attempt" } }),
      created: el("td", { className: "wide", dataset: { label: "Created" } }),
    };
    const tr = el("tr", { dataset: { jobId: id } },
      selectCell(id),
      el("th", { scope: "row" }, link),
      cells.task,
      cells.queue,
      el("td", { dataset: { label: "Status" } }, status),
      cells.attempt,
      el("td", { className: "progress-cell", dataset: { label: "Progress" } }, bar, " ", percent),
      cells.created);
    return { tr, cells, status, bar, percent, state: null };
  }

  fill(row, state) {
    const previous = row.state;
    row.state = state;
    row.tr.dataset.status = state.status;
    statusBadge(row.status, state.status);
    row.cells.task.textContent = state.task;
    row.cells.queue.textContent = state.queue;
    row.cells.attempt.textContent = String(state.attempt);
    if (!previous || previous.created !== state.created) {
      row.cells.created.replaceChildren(timeEl(state.created));
    }
    showProgress(row.bar, row.percent, fractionOf(state.current, state.total), state.status);
    row.bar.title = state.message || "";
  }

  render(states) {
    const rows = new Map();
    for (const state of states) {
      const row = this.rows.get(state.id) || this.makeRow(state.id);
      this.fill(row, state);
      rows.set(state.id, row);
    }
    this.rows = rows;
    this.body.replaceChildren(...[...rows.values()].map((row) => row.tr));
    this.updateEmpty();
    this.renderPaging();
    this.onRender();
  }

  updateEmpty() {
    $("jobs-empty").hidden = this.rows.size > 0;
  }

  renderPaging() {
    renderPagingLinks(this);
  }

  async loadCounts() {
    const { payload } = await api("/stats");
    let all = 0;
    let capped = false;
    for (const status of STATUSES) {
      const count = payload.counts[status] || 0;
      all += count;
      capped = capped || count >= payload.cap;
      const node = document.querySelector(`[data-count="${status}"]`);
      node.textContent = count >= payload.cap ? `${payload.cap}+` : String(count);
      node.closest("a").classList.toggle("nonzero", count > 0);
    }
    document.querySelector('[data-count=""]').textContent = capped ? `${all}+` : String(all);
  }

  async loadTaskNames() {
    try {
      const { payload } = await api("/tasks");
      $("task-names").replaceChildren(
        ...payload.tasks.map((task) => el("option", { value: task.name })),
      );
    } catch {
      // Only a convenience for the filter: the table works without it.
    }
  }
}

// --- jobs view: filters, position, bulk actions, trends ---------------------------------

// The list's filters as the API names them; the page's URL uses the same names.
const FILTER_FIELDS = [
  "status", "task", "task_prefix", "task_contains", "queue", "queue_prefix", "queue_contains",
  "created_after", "created_before",
];
const NAME_MATCHES = { exact: "", prefix: "_prefix", contains: "_contains" };
// Terminal events come in bursts; the trends are read again at most this often.
const TRENDS_EVERY_MS = 2000;

function filtersFrom(params) {
  const filters = {};
  for (const name of FILTER_FIELDS) filters[name] = params.get(name) || "";
  return filters;
}

function filterQuery(filters, skip = []) {
  const query = new URLSearchParams();
  for (const name of FILTER_FIELDS) {
    if (filters[name] && !skip.includes(name)) query.set(name, filters[name]);
  }
  return query;
}

// Whether a job (or an event, which carries task, queue and status) passes the filters.
function jobMatches(filters, job) {
  if (filters.status && filters.status !== job.status) return false;
  for (const column of ["task", "queue"]) {
    const value = job[column] || "";
    if (filters[column] && filters[column] !== value) return false;
    if (filters[`${column}_prefix`] && !value.startsWith(filters[`${column}_prefix`])) return false;
    if (filters[`${column}_contains`] && !value.includes(filters[`${column}_contains`])) return false;
  }
  // A job the page learns of live was created just now: after any start, before no end.
  return !filters.created_before;
}

function describeFilters(filters) {
  const parts = [];
  if (filters.status) parts.push(filters.status);
  for (const column of ["task", "queue"]) {
    if (filters[column]) parts.push(`${column} ${filters[column]}`);
    if (filters[`${column}_prefix`]) parts.push(`${column} starts with ${filters[`${column}_prefix`]}`);
    if (filters[`${column}_contains`]) parts.push(`${column} contains ${filters[`${column}_contains`]}`);
  }
  if (filters.created_after) parts.push(`created from ${fmtDate(filters.created_after)}`);
  if (filters.created_before) parts.push(`created before ${fmtDate(filters.created_before)}`);
  return parts;
}

// <input type="datetime-local"> holds local time without a zone; the API wants an offset.
function localInputValue(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}

function isoFromLocalInput(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

function fillFilterForm(filters) {
  $("filter-status").value = filters.status;
  for (const column of ["task", "queue"]) {
    let match = "prefix";
    for (const [name, suffix] of Object.entries(NAME_MATCHES)) {
      if (filters[`${column}${suffix}`]) match = name;
    }
    $(`filter-${column}-match`).value = match;
    $(`filter-${column}`).value = filters[`${column}${NAME_MATCHES[match]}`];
  }
  $("filter-created-after").value = localInputValue(filters.created_after);
  $("filter-created-before").value = localInputValue(filters.created_before);
}

// Submit only the filters that are set, so the URL stays short and shareable.
function filterFormQuery() {
  const query = new URLSearchParams();
  const status = $("filter-status").value;
  if (status) query.set("status", status);
  for (const column of ["task", "queue"]) {
    const value = $(`filter-${column}`).value.trim();
    const suffix = NAME_MATCHES[$(`filter-${column}-match`).value] ?? "";
    if (value) query.set(`${column}${suffix}`, value);
  }
  for (const name of ["created_after", "created_before"]) {
    const iso = isoFromLocalInput($(`filter-${name.replace("_", "-")}`).value);
    if (iso) query.set(name, iso);
  }
  return query;
}

function fmtCount(value) {
  return Number(value).toLocaleString("en-US");
}

function positionText(position, rows, oldest) {
  if (!position || !rows) return "";
  let total = position.total_exact ? fmtCount(position.total) : `${fmtCount(position.cap)}+`;
  if (position.total === null) total = "many"; // counting took too long
  if (position.first === null) {
    return oldest ? `the oldest ${fmtCount(rows)} of ${total}` : `${fmtCount(rows)} of ${total}`;
  }
  return `${fmtCount(position.first)}–${fmtCount(position.last)} of ${total}`;
}

// A job that joined the first page live is one more in the list, and on this page.
function withLiveRow(position) {
  if (!position || position.total === null) return position;
  const total = position.total + 1;
  return {
    ...position,
    total,
    total_exact: position.total_exact && total < position.cap,
    last: position.last === null ? null : position.last + 1,
  };
}

function renderPagingLinks(table) {
  const base = filterQuery(table.filters);
  const link = (id, visible, extra) => {
    const node = $(id);
    node.hidden = !visible;
    const query = new URLSearchParams(base);
    for (const [name, value] of Object.entries(extra)) query.set(name, value);
    node.href = `${ROOT}/${query.size ? `?${query}` : ""}`;
  };
  link("page-first", Boolean(table.prevCursor), {});
  link("page-prev", Boolean(table.prevCursor), table.prevCursor ? { cursor: table.prevCursor } : {});
  link("page-next", Boolean(table.nextCursor), table.nextCursor ? { cursor: table.nextCursor } : {});
  link("page-last", Boolean(table.nextCursor), { page: "oldest" });
  setText("page-position", positionText(table.position, table.rows.size, table.oldest));
}

// The checkbox in front of each row; what is selected lives in `BulkActions`.
function selectCell(id) {
  return el("td", { className: "select-cell", dataset: { label: "Select" } },
    el("input", { type: "checkbox", className: "select-job", dataset: { jobId: id },
      "aria-label": `Select job ${id.slice(0, 8)}` }));
}

// Asks before acting: resolves true when the user confirms.
function confirmAction(title, text, confirmLabel) {
  const dialog = $("bulk-confirm");
  setText("bulk-confirm-title", title);
  setText("bulk-confirm-text", text);
  setText("bulk-confirm-go", confirmLabel);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"),
      { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    $("bulk-confirm-keep").focus();
  });
}

function describeOutcomes(counts, more) {
  const words = {
    retried: "retried", cancelled: "cancelled", cancel_requested: "asked to stop",
    skipped: "skipped (their status does not allow it)", not_found: "not found",
  };
  const parts = Object.entries(counts).map(([outcome, n]) => `${fmtCount(n)} ${words[outcome] || outcome}`);
  let text = parts.length ? `${parts.join(", ")}.` : "Nothing to do.";
  if (more) text += " More failed jobs match: run it again to retry the next ones.";
  return text;
}

class BulkActions {
  constructor(table) {
    this.table = table;
    this.selected = new Set();
    this.busy = false;
  }

  start() {
    this.table.body.addEventListener("change", (event) => {
      const box = event.target.closest(".select-job");
      if (!box) return;
      if (box.checked) this.selected.add(box.dataset.jobId);
      else this.selected.delete(box.dataset.jobId);
      this.update();
    });
    $("select-all").addEventListener("change", (event) => {
      for (const box of this.table.body.querySelectorAll(".select-job")) {
        box.checked = event.target.checked;
        if (box.checked) this.selected.add(box.dataset.jobId);
        else this.selected.delete(box.dataset.jobId);
      }
      this.update();
    });
    $("bulk-cancel").addEventListener("click", () => this.onSelected("cancel"));
    $("bulk-retry").addEventListener("click", () => this.onSelected("retry"));
    $("bulk-retry-failed").addEventListener("click", () => this.onRetryFailed());
    this.update();
  }

  // Rows come and go as the list is read again: keep only what is still on the page.
  update() {
    const onPage = new Set(this.table.rows.keys());
    for (const id of this.selected) if (!onPage.has(id)) this.selected.delete(id);
    for (const box of this.table.body.querySelectorAll(".select-job")) {
      box.checked = this.selected.has(box.dataset.jobId);
    }
    const count = this.selected.size;
    setText("selected-count", count ? `${fmtCount(count)} selected` : "None selected");
    $("bulk-cancel").disabled = this.busy || count === 0;
    $("bulk-retry").disabled = this.busy || count === 0;
    $("bulk-retry-failed").disabled = this.busy;
    const all = $("select-all");
    all.checked = count > 0 && count === onPage.size;
    all.indeterminate = count > 0 && count < onPage.size;
  }

  async onSelected(action) {
    const ids = [...this.selected];
    const count = fmtCount(ids.length);
    const noun = ids.length === 1 ? "job" : "jobs";
    const confirmed = await confirmAction(
      action === "retry" ? `Retry ${count} ${noun}?` : `Cancel ${count} ${noun}?`,
      action === "retry"
        ? "Each failed or cancelled one runs again as a new attempt; the others are left as they are."
        : "Waiting ones are cancelled now; running ones are asked to stop; finished ones are left as they are.",
      action === "retry" ? `Retry ${count}` : `Cancel ${count}`,
    );
    if (confirmed) await this.send({ action, ids });
  }

  async onRetryFailed() {
    const filters = { ...this.table.filters, status: "failed" };
    const query = filterQuery(filters);
    query.set("limit", "1");
    query.set("position", "true");
    const { payload, response } = await api(`/jobs?${query}`);
    const total = payload.position.total;
    if (!total) {
      setText("bulk-outcome", "No failed jobs match these filters.");
      return;
    }
    // Jobs that fail after this moment are left for another request (the server's clock).
    const counted = new Date(response.headers.get("date") || Date.now());
    const failedBefore = new Date(counted.getTime() + 1000).toISOString();
    const described = describeFilters({ ...filters, status: "" });
    const shown = payload.position.total_exact ? fmtCount(total) : `${fmtCount(payload.position.cap)}+`;
    const confirmed = await confirmAction(
      `Retry ${shown} failed ${total === 1 ? "job" : "jobs"}?`,
      `Every failed job${described.length ? ` where ${described.join(", ")}` : ""} runs again ` +
        "as a new attempt, the oldest first, up to 1,000 in one go.",
      `Retry ${shown}`,
    );
    if (confirmed) {
      const filter = Object.fromEntries(filterQuery(this.table.filters, ["status"]));
      await this.send({ action: "retry", filter, failed_before: failedBefore });
    }
  }

  async send(body) {
    this.busy = true;
    this.update();
    setText("bulk-outcome", "Working…");
    try {
      const { payload } = await api("/jobs/bulk", { method: "POST", body });
      setText("bulk-outcome", describeOutcomes(payload.counts, payload.more));
      this.selected.clear();
      this.table.resync();
    } catch (error) {
      setText("bulk-outcome", "");
      showPageError(error);
    } finally {
      this.busy = false;
      this.update();
    }
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child);
  return node;
}

function fmtSeconds(value) {
  return value === null || value === undefined ? "–" : fmtDuration(value);
}

// The trends panel: read from `/stats/trends` when the page opens and again, debounced,
// whenever the list's live stream reports a job that finished. Nothing polls.
class TrendsPanel {
  constructor(filters) {
    this.filters = filters;
    this.reads = 0;
    this.refresh = new Coalesce(() => this.load(), TRENDS_EVERY_MS);
  }

  query() {
    // The trends follow the page's task and queue filters; they cover every outcome.
    return filterQuery(this.filters, ["status", "created_after", "created_before"]);
  }

  onEvent(event) {
    if (TERMINAL.has(event.kind)) this.refresh.request();
  }

  async load() {
    const query = this.query();
    const parts = describeFilters(Object.fromEntries(query));
    setText("trends-title", `Trends, last hour${parts.length ? `: ${parts.join(", ")}` : ""}`);
    const { payload } = await api(`/stats/trends${query.size ? `?${query}` : ""}`);
    this.reads += 1;
    $("trends").dataset.reads = String(this.reads);
    this.render(payload);
  }

  render(trends) {
    const overall = trends.overall;
    const minutes = trends.per_minute;
    const perMinute = overall.jobs / Math.max(1, minutes.length);
    const failureRate = overall.jobs ? overall.failed / overall.jobs : 0;
    setText("trends-summary", overall.jobs
      ? `${fmtCount(overall.jobs)} finished · ${perMinute.toFixed(1)}/min · ` +
        `${(failureRate * 100).toFixed(1)}% failed` +
        (trends.covered_from ? ` (the newest ${fmtCount(trends.jobs_read)})` : "")
      : "No jobs finished in the last hour.");
    $("trends-summary").dataset.jobs = String(overall.jobs);
    setText("trend-wait-p50", fmtSeconds(overall.wait_p50_s));
    setText("trend-wait-p95", fmtSeconds(overall.wait_p95_s));
    setText("trend-run-p50", fmtSeconds(overall.run_p50_s));
    setText("trend-run-p95", fmtSeconds(overall.run_p95_s));
    this.drawChart(minutes, overall);
    this.renderNames(trends);
  }

  drawChart(minutes, overall) {
    const svg = $("trends-chart");
    const width = 600;
    const height = 120;
    const peak = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed + m.cancelled));
    const slot = width / Math.max(1, minutes.length);
    const bars = [];
    minutes.forEach((minute, index) => {
      let top = height;
      for (const outcome of ["succeeded", "failed", "cancelled"]) {
        const count = minute[outcome];
        if (!count) continue;
        const h = (count / peak) * (height - 4);
        top -= h;
        bars.push(svgEl("rect", {
          x: (index * slot + 1).toFixed(2), y: top.toFixed(2),
          width: Math.max(1, slot - 2).toFixed(2), height: h.toFixed(2),
          class: `bar bar-${outcome}`, "data-minute": minute.minute,
        }, svgEl("title", {}, `${new Date(minute.minute).toLocaleTimeString()}: ${count} ${outcome}`)));
      }
    });
    const baseline = svgEl("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5,
      class: "baseline" });
    const keep = [...svg.children].filter((node) => ["title", "desc"].includes(node.tagName));
    svg.replaceChildren(...keep, baseline, ...bars);
    setText("trends-chart-desc", overall.jobs
      ? `${overall.succeeded} succeeded, ${overall.failed} failed, ${overall.cancelled} ` +
        `cancelled in the last hour; the busiest minute had ${peak}.`
      : "No jobs finished in the last hour.");
  }

  renderNames(trends) {
    const row = (kind, item) => el("tr", { dataset: { [kind]: item[kind] } },
      el("th", { scope: "row" }, `${kind} `, el("code", {}, item[kind])),
      el("td", { className: "num", dataset: { label: "Jobs" } }, fmtCount(item.jobs)),
      el("td", { className: "num", dataset: { label: "Failed" } }, fmtCount(item.failed)),
      el("td", { className: "num", dataset: { label: "Wait p50 / p95" } },
        `${fmtSeconds(item.wait_p50_s)} / ${fmtSeconds(item.wait_p95_s)}`),
      el("td", { className: "num", dataset: { label: "Run p50 / p95" } },
        `${fmtSeconds(item.run_p50_s)} / ${fmtSeconds(item.run_p95_s)}`));
    $("trends-names-body").replaceChildren(
      ...trends.tasks.map((item) => row("task", item)),
      ...trends.queues.map((item) => row("queue", item)));
  }
}

async function jobsView() {
  const params = new URLSearchParams(window.location.search);
  const filters = filtersFrom(params);
  fillFilterForm(filters);
  const cursor = params.get("cursor") || "";
  const oldest = !cursor && params.get("page") === "oldest";
  for (const link of document.querySelectorAll("#counts a")) {
    if (link.dataset.status === filters.status) link.setAttribute("aria-current", "page");
  }
  const parts = describeFilters(filters);
  if (filters.status === "failed") {
    setText("jobs-title", "Failed jobs (dead letter)");
    $("nav-jobs").removeAttribute("aria-current");
    $("nav-failed").setAttribute("aria-current", "page");
  }
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = filterFormQuery();
    window.location.assign(`${ROOT}/${query.size ? `?${query}` : ""}`);
  });
  // A <select> does not submit its form on Enter as a text field does.
  for (const id of ["filter-status", "filter-task-match", "filter-queue-match"]) {
    $(id).addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      $("filters").requestSubmit();
    });
  }
  let where = ", live";
  if (cursor) where = " (another page)";
  if (oldest) where = " (the oldest page)";
  setText("jobs-caption", `${parts.length ? `Jobs: ${parts.join(", ")}` : "All jobs"}, newest first${where}`);
  const table = new JobsTable(filters, cursor, oldest);
  const bulk = new BulkActions(table);
  table.onRender = () => bulk.update();
  const trends = new TrendsPanel(filters);
  table.listeners.push((event) => trends.onEvent(event));
  bulk.start();
  await Promise.all([table.start(), trends.load()]);
}

// --- job view ---------------------------------------------------------------------------

function describeEvent(event) {
  const data = event.data || {};
  switch (event.kind) {
    case "progress": {
      const done = event.total ? `${event.current}/${event.total}` : fmtNumber(event.current);
      return event.message ? `${done} · ${event.message}` : done;
    }
    case "started":
      return `attempt ${event.attempt}`;
    case "retrying": {
      const when = data.delay_s !== undefined ? ` in ${fmtDuration(data.delay_s)}` : "";
      return `${event.message || "failed"} · attempt ${data.next_attempt ?? "?"}${when}`;
    }
    case "succeeded":
      return data.run_s !== undefined ? `after ${fmtDuration(data.run_s)}` : "";
    default:
      return event.message || "";
  }
}

const LOG_PAGE = 200; // events per page of the history
const LOG_KEEP = 1000; // most events the log holds while it follows a job live

function logItem(event) {
  const at = new Date(event.at);
  return el("li", { dataset: { seq: event.seq, kind: event.kind } },
    el("span", { className: "seq" }, `#${event.seq}`), " ",
    timeEl(event.at, at.toLocaleTimeString()), " ",
    el("span", { className: `kind kind-${event.kind}` }, event.kind), " ",
    el("span", { className: "detail" }, describeEvent(event)));
}

class JobPage {
  constructor(jobId) {
    this.jobId = jobId;
    this.job = null;
    this.lastSeq = 0; // the last event shown: nothing at or below it is shown again
    this.source = null;
    this.startedAt = null;
    this.cancelAsked = false;
    this.backoff = new Backoff();
    this.log = $("event-log");
    this.olderBefore = null;
  }

  async start() {
    $("cancel-job").addEventListener("click", () => this.cancel());
    $("retry-job").addEventListener("click", () => this.retry());
    $("older-events").addEventListener("click", () => this.loadOlder().catch(showPageError));
    this.render(await this.fetch());
    await this.loadLatest();
    this.follow();
  }

  // The log starts with the latest page of the history (a job may have a hundred thousand
  // events); older pages load on demand, and the stream follows on after the last shown.
  async loadLatest() {
    const page = await this.historyPage(this.job.seq + 1);
    for (const event of page.events) this.log.append(logItem(event));
    const last = page.events[page.events.length - 1];
    if (last) this.lastSeq = Math.max(this.lastSeq, last.seq);
    this.showOlder(page.previous_before);
    const box = this.log.parentElement;
    box.scrollTop = box.scrollHeight;
  }

  async loadOlder() {
    const page = await this.historyPage(this.olderBefore);
    const box = this.log.parentElement;
    const fromBottom = box.scrollHeight - box.scrollTop;
    this.log.prepend(...page.events.map(logItem));
    box.scrollTop = box.scrollHeight - fromBottom; // the reader stays where they were
    this.showOlder(page.previous_before);
  }

  async historyPage(before) {
    const path = `/jobs/${encodeURIComponent(this.jobId)}/events?before=${before}&limit=${LOG_PAGE}`;
    const { payload } = await api(path);
    return payload;
  }

  showOlder(before) {
    this.olderBefore = before;
    $("older-events").hidden = before === null;
  }

  async fetch() {
    try {
      const { payload } = await api(`/jobs/${encodeURIComponent(this.jobId)}`);
      return payload;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        throw new ApiError(404, "not_found", "There is no such job (for this API key).");
      }
      throw error;
    }
  }

  follow() {
    const url = new URL(samePath(this.job.links.events), window.location.href);
    if (this.lastSeq) url.searchParams.set("after", String(this.lastSeq));
    const source = openStream(url.pathname + url.search, {
      onEvent: (event) => {
        if (this.source === source) this.onEvent(event);
      },
      onOpen: () => this.backoff.reset(),
      onGiveUp: () => this.reopenLater(source),
    });
    this.source = source;
  }

  closeStream() {
    if (this.source) this.source.close();
    this.source = null;
  }

  // The browser gave up on the stream (the server restarted with a new stream secret,
  // or answered 503): read the job for a fresh token and go on after the last event.
  reopenLater(source) {
    if (this.source !== source) return;
    this.source = null;
    window.setTimeout(async () => {
      try {
        this.render(await this.fetch());
        this.follow();
      } catch (error) {
        if (error instanceof AuthNeeded || (error instanceof ApiError && error.status === 404)) {
          showPageError(error);
        } else {
          this.reopenLater(null);
        }
      }
    }, this.backoff.next());
  }

  onEvent(event) {
    if (event.seq <= this.lastSeq) return; // replayed after a reconnect: already shown
    if (event.seq > this.lastSeq + 1) {
      // Not expected (the server fills holes), but never show events out of order.
      this.closeStream();
      this.follow();
      return;
    }
    this.lastSeq = event.seq;
    this.appendLog(event);
    this.applyEvent(event);
    if (TERMINAL.has(event.kind)) this.settle();
  }

  // After a terminal event: read the job for its result or error. Further events mean
  // it was retried, so follow on from here.
  async settle() {
    this.closeStream();
    setLive("done", "finished");
    try {
      const job = await this.fetch();
      this.render(job);
      if (!TERMINAL.has(job.status)) this.follow();
    } catch (error) {
      showPageError(error);
    }
  }

  appendLog(event) {
    const box = this.log.parentElement;
    // Follow the tail while the reader is at the bottom; leave them be when scrolled up.
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    this.log.append(logItem(event));
    // A long live run keeps the newest LOG_KEEP on the page; older ones load on demand.
    if (atBottom && this.log.childElementCount > LOG_KEEP) {
      while (this.log.childElementCount > LOG_KEEP) this.log.firstElementChild.remove();
      this.showOlder(Number(this.log.firstElementChild.dataset.seq));
    }
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  applyEvent(event) {
    const status = event.status;
    this.status = status;
    statusBadge($("job-status"), status);
    const attempt = event.kind === "retrying" && event.data ? event.data.next_attempt : event.attempt;
    this.showAttempt(attempt, this.job.max_attempts);
    if (event.kind === "started") {
      this.startedAt = event.at;
      $("job-started").replaceChildren(timeEl(event.at));
      $("job-finished").replaceChildren("–");
      setText("job-runtime", "–");
    }
    if (event.kind === "queued" || event.kind === "requeued") this.startedAt = null;
    let eta = null;
    if (event.kind === "progress") {
      const fraction = fractionOf(event.current, event.total);
      showProgress($("job-progress"), $("job-percent"), fraction, status);
      setText("job-message", event.message || "");
      if (fraction && fraction < 1 && this.startedAt) {
        const elapsed = (Date.parse(event.at) - Date.parse(this.startedAt)) / 1000;
        eta = (elapsed * (1 - fraction)) / fraction;
      }
    } else if (status !== "running") {
      showProgress($("job-progress"), $("job-percent"), this.fraction(), status);
    }
    if (TERMINAL.has(status)) {
      $("job-finished").replaceChildren(timeEl(event.at));
      if (this.startedAt) {
        setText("job-runtime", fmtDuration((Date.parse(event.at) - Date.parse(this.startedAt)) / 1000));
      }
    }
    setText("job-eta", eta === null ? "–" : `about ${fmtDuration(eta)}`);
    if (event.kind === "cancelled" && this.cancelAsked) this.outcome("Cancelled.");
    this.showActions(status, null);
  }

  fraction() {
    const bar = $("job-progress");
    return bar.hasAttribute("value") && !bar.hidden ? bar.value : null;
  }

  showAttempt(attempt, max) {
    setText("job-attempt", max ? `${attempt} of ${max}` : String(attempt));
  }

  render(job) {
    this.job = job;
    this.status = job.status;
    document.title = `Job ${job.id.slice(0, 8)} (${job.status}) · tidings`;
    statusBadge($("job-status"), job.status);
    setText("job-task", job.task);
    this.showAttempt(job.attempt, job.max_attempts);
    setText("job-queue", `${job.queue} (priority ${job.priority})`);
    $("job-created").replaceChildren(timeEl(job.created_at));
    $("job-started").replaceChildren(timeEl(job.started_at));
    $("job-finished").replaceChildren(timeEl(job.finished_at));
    this.startedAt = job.started_at;
    const runtime = job.started_at && job.finished_at
      ? (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000
      : null;
    setText("job-runtime", fmtDuration(runtime));
    const progress = job.progress;
    showProgress($("job-progress"), $("job-percent"), progress.fraction, job.status);
    setText("job-message", progress.message || "");
    setText("job-eta", progress.eta_s === null ? "–" : `about ${fmtDuration(progress.eta_s)}`);
    const waiting = job.waiting_reason && ["waiting", "queued", "retrying"].includes(job.status);
    setText("job-waiting", waiting ? `Waiting: ${job.waiting_reason}` : "");
    $("job-waiting").hidden = !waiting;
    setText("job-args", pretty(job.args));
    $("result-section").hidden = job.status !== "succeeded";
    setText("job-result", pretty(job.result));
    const error = job.error;
    $("error-section").hidden = !error;
    if (error) {
      setText("error-title", job.status === "failed" ? "Error" : "Last error");
      setText("error-type", error.type || "Error");
      setText("error-message", error.message || "");
      $("error-details").hidden = !error.traceback;
      setText("error-traceback", error.traceback || "");
    }
    this.showActions(job.status, job.cancel_requested_at);
  }

  showActions(status, cancelRequestedAt) {
    const cancel = $("cancel-job");
    const retry = $("retry-job");
    const hadFocus = document.activeElement;
    cancel.hidden = !CANCELLABLE.has(status);
    if (cancelRequestedAt && status === "running") {
      cancel.disabled = true;
      cancel.textContent = "Cancel requested";
    } else if (!this.busy) {
      cancel.disabled = false;
      cancel.textContent = "Cancel job";
    }
    retry.hidden = !RETRYABLE.has(status);
    if ((hadFocus === cancel || hadFocus === retry) && hadFocus.hidden) {
      const other = hadFocus === cancel ? retry : cancel;
      (other.hidden ? $("action-outcome") : other).focus();
    }
  }

  outcome(text, failed = false) {
    const node = $("action-outcome");
    node.textContent = text;
    node.classList.toggle("error-text", failed);
  }

  async act(button, path, describe) {
    this.busy = true;
    button.disabled = true;
    try {
      const { payload, response } = await api(path, { method: "POST" });
      this.outcome(describe(response.status, payload));
      return payload;
    } catch (error) {
      if (error instanceof AuthNeeded) showPageError(error);
      else this.outcome(error.message, true);
      return null;
    } finally {
      this.busy = false;
      button.disabled = false;
    }
  }

  async cancel() {
    this.outcome("Cancelling…");
    this.cancelAsked = true;
    const job = await this.act($("cancel-job"), `/jobs/${encodeURIComponent(this.jobId)}/cancel`,
      // The `cancelled` event may have come in before this answer did.
      (status) => (status === 202 && !TERMINAL.has(this.status)
        ? "Cancel requested: the worker is stopping the job…"
        : "Cancelled."));
    if (job) this.showActions(job.status, job.cancel_requested_at);
  }

  async retry() {
    this.outcome("Retrying…");
    this.cancelAsked = false;
    const job = await this.act($("retry-job"), `/jobs/${encodeURIComponent(this.jobId)}/retry`,
      (_, payload) => `Retried: attempt ${payload.attempt} is queued.`);
    if (job) {
      this.render(job);
      if (!this.source) this.follow();
    }
  }
}

async function jobView() {
  // The relations panel is a convenience: the job's own view reports what fails for both.
  showJobRelations(document.body.dataset.jobId).catch(() => {});
  await new JobPage(document.body.dataset.jobId).start();
}

// --- queues and workers view ------------------------------------------------------------

class QueuesPage {
  constructor() {
    this.workers = [];
    this.serverNow = Date.now();
    this.fetchedAt = performance.now();
    this.backoff = new Backoff();
    this.refreshSoon = new Coalesce(() => this.refresh());
  }

  async start() {
    $("refresh").addEventListener("click", () => this.refresh().catch(showPageError));
    await this.refresh();
    await this.follow();
    // Heartbeats live only in Postgres (no event announces them), so while the tab is
    // visible the tables are read again every few seconds; ages tick on the page between.
    window.setInterval(() => this.tickAges(), 1000);
    window.setInterval(() => {
      if (document.visibilityState === "visible") this.refreshSoon.request();
    }, HEARTBEAT_REREAD_MS);
  }

  async refresh() {
    const [queues, workers] = await Promise.all([api("/queues"), api("/workers")]);
    // Ages are measured on the server's clock (its Date header), not this machine's.
    this.serverNow = Date.parse(workers.response.headers.get("date")) || Date.now();
    this.fetchedAt = performance.now();
    this.renderQueues(queues.payload.queues);
    this.renderLimits(queues.payload.queues);
    this.renderWorkers(workers.payload.workers);
    setText("refreshed", `Updated ${new Date().toLocaleTimeString()}`);
  }

  // Depth changes with every lifecycle event, so the tenant's live stream drives rereads.
  async follow() {
    const { payload } = await api("/jobs?limit=1");
    this.source = openStream(samePath(payload.events), {
      onEvent: (event) => {
        if (event.kind !== "progress" && event.kind !== "log") this.refreshSoon.request();
      },
      onOpen: () => {
        this.backoff.reset();
        this.refreshSoon.request();
      },
      onGiveUp: () => {
        window.setTimeout(() => this.follow().catch(showPageError), this.backoff.next());
      },
      extraEvents: { resync: () => this.refreshSoon.request() },
    });
  }

  renderQueues(queues) {
    const body = $("queues-body");
    body.replaceChildren(...queues.map((queue) => el("tr", { dataset: { queue: queue.queue } },
      el("th", { scope: "row" }, queue.queue),
      el("td", { className: "num", dataset: { field: "due", label: "Due" } }, fmtNumber(queue.due)),
      el("td", { className: "num", dataset: { field: "scheduled", label: "Scheduled" } }, fmtNumber(queue.scheduled)),
      el("td", { className: "num", dataset: { field: "running", label: "Running" } },
        fmtNumber(queue.running)),
      el("td", { className: "num", dataset: { field: "oldest_due", label: "Oldest due" } },
        queue.oldest_due_s === null ? "–" : fmtDuration(queue.oldest_due_s)),
      el("td", { className: "num", dataset: { field: "workers", label: "Workers" } },
        fmtNumber(queue.workers)),
      el("td", { className: "num", dataset: { field: "slots", label: "Slots" } },
        fmtNumber(queue.slots)))));
    body.setAttribute("aria-busy", "false");
    $("queues-empty").hidden = queues.length > 0;
  }

  // Per queue: each concurrency key's running count against its limit, and each rate
  // limit's bucket (tokens now of its burst, the rate, claims it refused).
  renderLimits(queues) {
    const rows = [];
    for (const queue of queues) {
      for (const key of queue.concurrency_keys || []) {
        rows.push(el("tr", { dataset: { queue: queue.queue, limit: "key" } },
          el("th", { scope: "row" }, queue.queue),
          el("td", { dataset: { label: "Limit" } }, "concurrency key"),
          el("td", { className: "wide", dataset: { label: "Key" } }, key.key),
          el("td", { className: "num", dataset: { field: "in_use", label: "In use" } },
            `${fmtNumber(key.running)} of ${fmtNumber(key.max_per_key ?? 1)} running`),
          el("td", { className: "num", dataset: { field: "waiting", label: "Waiting" } },
            fmtNumber(key.waiting)),
          el("td", { className: "num", dataset: { label: "Refused" } }, "–")));
      }
      for (const rate of queue.rate_limits || []) {
        rows.push(el("tr", { dataset: { queue: queue.queue, limit: "rate" } },
          el("th", { scope: "row" }, queue.queue),
          el("td", { dataset: { label: "Limit" } }, `rate ${fmtNumber(rate.per_s)}/s`),
          el("td", { className: "wide", dataset: { label: "Key" } }, rate.key),
          el("td", { className: "num", dataset: { field: "in_use", label: "In use" } },
            `${rate.tokens.toFixed(1)} of ${fmtNumber(rate.burst)} tokens`),
          el("td", { className: "num", dataset: { field: "waiting", label: "Waiting" } },
            fmtNumber(rate.waiting)),
          el("td", { className: "num", dataset: { field: "refused", label: "Refused" } },
            fmtNumber(rate.limited))));
      }
    }
    const body = $("limits-body");
    body.replaceChildren(...rows);
    body.setAttribute("aria-busy", "false");
    $("limits-empty").hidden = rows.length > 0;
  }

  renderWorkers(workers) {
    const body = $("workers-body");
    this.ages = [];
    body.replaceChildren(...workers.map((worker) => {
      const age = el("td", { className: "num", dataset: { field: "heartbeat", label: "Heartbeat" } });
      this.ages.push({ node: age, at: Date.parse(worker.heartbeat_at) });
      return el("tr", { dataset: { worker: worker.id } },
        el("th", { scope: "row" }, el("span", { className: "worker-id" }, worker.id),
          worker.hostname === null ? ""
            : el("span", { className: "muted host" }, ` ${worker.hostname} · pid ${worker.pid}`)),
        el("td", { dataset: { label: "Queues" } }, worker.queues.join(", ")),
        el("td", { className: "num", dataset: { field: "running", label: "Running" } },
          fmtNumber(worker.running)),
        el("td", { className: "num", dataset: { field: "concurrency", label: "Concurrency" } },
          fmtNumber(worker.concurrency)),
        age,
        el("td", { className: "wide", dataset: { label: "Started" } }, timeEl(worker.started_at)));
    }));
    body.setAttribute("aria-busy", "false");
    $("workers-empty").hidden = workers.length > 0;
    this.tickAges();
  }

  tickAges() {
    const now = this.serverNow + (performance.now() - this.fetchedAt);
    for (const { node, at } of this.ages || []) {
      const seconds = Math.max(0, (now - at) / 1000);
      node.textContent = `${Math.floor(seconds)} s ago`;
      node.classList.toggle("stale", seconds > 10);
    }
  }
}

async function queuesView() {
  await new QueuesPage().start();
}

// --- finding a job by the first characters of its id -----------------------------------

async function findView() {
  const prefix = document.body.dataset.idPrefix;
  // One match opens that job; up to ten more are listed, to pick from.
  const { payload } = await api(`/jobs?${new URLSearchParams({ id_prefix: prefix, limit: "10" })}`);
  const found = payload.jobs;
  if (found.length === 1) {
    window.location.replace(`${ROOT}/ui/jobs/${encodeURIComponent(found[0].id)}`);
    return;
  }
  if (found.length === 0) {
    setText("find-title", "No such job");
    setText("find-outcome", `No job's id starts with ${prefix}.`);
    return;
  }
  setText("find-outcome", `${found.length}${payload.next_cursor ? " or more" : ""} jobs' ids start with ${
    prefix}: type more of the id.`);
  const list = $("find-matches");
  for (const job of found) {
    list.append(el("li", {},
      el("a", { href: `${ROOT}/ui/jobs/${encodeURIComponent(job.id)}` }, el("code", {}, job.id)),
      ` ${job.task} · ${job.status} · ${fmtDate(job.created_at)}`));
  }
  list.hidden = false;
}

// --- batches: the list, one batch live, and a job's relations ---------------------------

function batchPath(batchId, suffix = "") {
  return `/batches/${encodeURIComponent(batchId)}${suffix}`;
}

function batchLink(batch) {
  return el("a", { href: `${ROOT}/ui/batches/${encodeURIComponent(batch.id)}`, title: batch.id },
    batch.name ? `${batch.name} ` : "", el("code", {}, batch.id.slice(0, 8)));
}

function jobLink(jobId) {
  return el("a", { href: `${ROOT}/ui/jobs/${encodeURIComponent(jobId)}`, title: jobId },
    el("code", {}, jobId.slice(0, 8)));
}

function fmtEta(seconds) {
  return seconds === null || seconds === undefined ? "–" : `about ${fmtDuration(seconds)}`;
}

async function batchesView() {
  const cursor = new URLSearchParams(window.location.search).get("cursor") || "";
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (cursor) query.set("cursor", cursor);
  const body = $("batches-body");
  const { payload } = await api(`/batches?${query}`);
  body.replaceChildren(...payload.batches.map((batch) => {
    const bar = el("progress", { max: "1", value: String(batch.progress.fraction),
      "aria-label": `Progress of batch ${batch.name || batch.id.slice(0, 8)}` });
    const status = el("span", {});
    statusBadge(status, batch.status);
    return el("tr", { dataset: { batchId: batch.id, status: batch.status } },
      el("th", { scope: "row" }, batchLink(batch)),
      el("td", { dataset: { label: "Status" } }, status),
      el("td", { className: "progress-cell", dataset: { label: "Progress" } }, bar, " ",
        el("span", { className: "percent" }, fmtPercent(batch.progress.fraction))),
      el("td", { className: "num", dataset: { label: "Ended", field: "done" } },
        `${batch.progress.done}/${batch.total}`),
      el("td", { className: "num", dataset: { label: "Failed", field: "failed" } },
        fmtNumber(batch.counts.failed)),
      el("td", { className: "wide", dataset: { label: "Created" } }, timeEl(batch.created_at)));
  }));
  body.setAttribute("aria-busy", "false");
  $("batches-empty").hidden = payload.batches.length > 0;
  $("batches-first").hidden = !cursor;
  const next = $("batches-next");
  next.hidden = !payload.next_cursor;
  if (payload.next_cursor) {
    next.href = `${ROOT}/ui/batches?${new URLSearchParams({ cursor: payload.next_cursor })}`;
  }
}

class BatchPage {
  constructor(batchId, status, cursor) {
    this.batchId = batchId;
    this.status = status; // the member table's filter
    this.cursor = cursor;
    this.batch = null;
    this.rows = new Map();
    this.source = null;
    this.lastSeq = 0; // the last member transition shown
    this.finished = false;
    this.backoff = new Backoff();
    this.body = $("members-body");
  }

  async start() {
    $("cancel-batch").addEventListener("click", () => this.act("cancel"));
    $("retry-batch").addEventListener("click", () => this.act("retry"));
    this.render(await this.fetch());
    await this.loadMembers();
    this.follow();
  }

  async fetch() {
    try {
      const { payload } = await api(batchPath(this.batchId));
      return payload;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        throw new ApiError(404, "not_found", "There is no such batch (for this API key).");
      }
      throw error;
    }
  }

  render(batch) {
    this.batch = batch;
    this.lastSeq = Math.max(this.lastSeq, batch.seq);
    const label = batch.name || batch.id.slice(0, 8);
    document.title = `Batch ${label} (${batch.status}) · tidings`;
    setText("batch-name", batch.name || "");
    $("batch-created").replaceChildren(timeEl(batch.created_at));
    $("batch-started").replaceChildren(timeEl(batch.started_at));
    $("batch-finished").replaceChildren(timeEl(batch.finished_at));
    this.showStatus(batch.status);
    this.showProgress({ counts: batch.counts, total: batch.total, progress: batch.progress,
      eta_s: batch.eta_s });
  }

  showStatus(status) {
    this.finished = status === "finished";
    statusBadge($("batch-status"), status);
    $("batch-progress").dataset.status = status;
    $("cancel-batch").hidden = this.finished;
    if (this.finished) setText("batch-eta", "–");
  }

  // A `progress` event, or the same fields of the batch itself.
  showProgress({ counts, total, progress, eta_s: etaS }) {
    const fraction = this.finished ? 1 : progress.fraction;
    const bar = $("batch-progress");
    bar.value = fraction;
    setText("batch-percent", fmtPercent(fraction));
    setText("batch-done", `${progress.done} of ${total} ended`);
    setText("batch-total", String(total));
    setText("batch-eta", this.finished ? "–" : fmtEta(etaS));
    this.showCounts(counts, total);
  }

  showCounts(counts, total) {
    for (const status of STATUSES) {
      const node = document.querySelector(`[data-batch-count="${status}"]`);
      if (!node) continue;
      const count = counts[status] || 0;
      node.textContent = String(count);
      node.closest("a").classList.toggle("nonzero", count > 0);
    }
    document.querySelector('[data-batch-count=""]').textContent = String(total);
    $("retry-batch").hidden = !(counts.failed > 0);
  }

  query() {
    const query = new URLSearchParams({ batch_id: this.batchId, limit: String(PAGE_SIZE) });
    if (this.status) query.set("status", this.status);
    if (this.cursor) query.set("cursor", this.cursor);
    return query;
  }

  async loadMembers() {
    this.body.setAttribute("aria-busy", "true");
    const { payload } = await api(`/jobs?${this.query()}`);
    this.rows = new Map();
    this.body.replaceChildren(...payload.jobs.map((job) => this.makeRow({
      id: job.id, task: job.task, status: job.status, dependsOn: job.depends_on || [],
      at: job.finished_at || job.started_at || job.created_at,
    })));
    this.body.setAttribute("aria-busy", "false");
    this.updateEmpty();
    this.renderPaging(payload.next_cursor);
  }

  makeRow(member) {
    const status = el("span", {});
    const when = el("td", { className: "wide", dataset: { label: "Last change" } });
    const deps = member.dependsOn.length
      ? member.dependsOn.flatMap((id, index) => (index ? [" ", jobLink(id)] : [jobLink(id)]))
      : ["–"];
    const tr = el("tr", { dataset: { jobId: member.id } },
      el("th", { scope: "row" }, jobLink(member.id)),
      el("td", { dataset: { label: "Task" } }, member.task || ""),
      el("td", { dataset: { label: "Status" } }, status),
      el("td", { className: "wide", dataset: { label: "Depends on" } }, ...deps),
      when);
    const row = { tr, status, when };
    this.fill(row, member.status, member.at);
    this.rows.set(member.id, row);
    return tr;
  }

  fill(row, status, at) {
    row.tr.dataset.status = status;
    statusBadge(row.status, status);
    row.when.replaceChildren(timeEl(at));
  }

  updateEmpty() {
    $("members-empty").hidden = this.rows.size > 0;
  }

  renderPaging(nextCursor) {
    const base = `${ROOT}/ui/batches/${encodeURIComponent(this.batchId)}`;
    const filter = this.status ? { status: this.status } : {};
    const first = $("members-first");
    first.hidden = !this.cursor;
    first.href = `${base}?${new URLSearchParams(filter)}`;
    const next = $("members-next");
    next.hidden = !nextCursor;
    if (nextCursor) next.href = `${base}?${new URLSearchParams({ ...filter, cursor: nextCursor })}`;
  }

  // The batch's stream, through the tokenised link its JSON carries (the browser resumes
  // it with Last-Event-ID by itself); from the seq the page was drawn at.
  follow() {
    if (this.finished) {
      setLive("done", "finished");
      return;
    }
    const url = new URL(samePath(this.batch.links.events), window.location.href);
    url.searchParams.set("after", String(this.lastSeq));
    const source = openStream(url.pathname + url.search, {
      onEvent: () => {}, // every batch event is one of the names below
      onOpen: () => this.backoff.reset(),
      onGiveUp: () => this.reopenLater(source),
      extraEvents: {
        job: (message) => this.onMember(JSON.parse(message.data)),
        progress: (message) => {
          if (!this.finished) this.showProgress(JSON.parse(message.data));
        },
        "batch.finished": (message) => this.onFinished(JSON.parse(message.data)),
      },
    });
    this.source = source;
  }

  closeStream() {
    if (this.source) this.source.close();
    this.source = null;
  }

  // The browser gave up (the token expired, the server restarted with a new secret, a
  // 503): read the batch for a fresh token and go on after the last transition shown.
  reopenLater(source) {
    if (this.source !== source) return;
    this.source = null;
    window.setTimeout(async () => {
      try {
        const lastSeq = this.lastSeq;
        this.batch = await this.fetch();
        this.lastSeq = lastSeq;
        this.follow();
      } catch (error) {
        if (error instanceof AuthNeeded || (error instanceof ApiError && error.status === 404)) {
          showPageError(error);
        } else {
          this.reopenLater(null);
        }
      }
    }, this.backoff.next());
  }

  onMember(event) {
    if (event.seq <= this.lastSeq) return; // replayed after a reconnect: already shown
    this.lastSeq = event.seq;
    const row = this.rows.get(event.job_id);
    if (row) {
      this.fill(row, event.status, event.at);
      return;
    }
    // A member that now matches the filter joins the first page, at the top.
    if (this.cursor || (this.status && this.status !== event.status)) return;
    const tr = this.makeRow({ id: event.job_id, task: event.task, status: event.status,
      dependsOn: [], at: event.at });
    this.body.prepend(tr);
    this.updateEmpty();
  }

  async onFinished(event) {
    this.closeStream(); // the server ends the stream here: do not let the browser reopen it
    this.lastSeq = Math.max(this.lastSeq, event.seq);
    this.showStatus("finished");
    this.showProgress({ counts: event.counts, total: event.total,
      progress: { done: event.total, total: event.total, fraction: 1 }, eta_s: null });
    $("batch-finished").replaceChildren(timeEl(event.finished_at));
    setLive("done", "finished");
    try {
      this.render(await this.fetch());
    } catch (error) {
      showPageError(error);
    }
  }

  async act(what) {
    const button = $(`${what}-batch`);
    const outcome = $("batch-outcome");
    button.disabled = true;
    outcome.classList.remove("error-text");
    outcome.textContent = what === "cancel" ? "Cancelling…" : "Retrying…";
    try {
      const { payload } = await api(batchPath(this.batchId, `/${what}`), { method: "POST" });
      outcome.textContent = what === "cancel"
        ? `Cancelled ${payload.cancelled} member${payload.cancelled === 1 ? "" : "s"}.`
        : `Retried ${payload.retried} member${payload.retried === 1 ? "" : "s"}.`;
      const wasFinished = this.finished;
      this.render(payload.batch);
      if (wasFinished && !this.finished) this.follow(); // retried members run again
    } catch (error) {
      if (error instanceof AuthNeeded) showPageError(error);
      else {
        outcome.textContent = error.message;
        outcome.classList.add("error-text");
      }
    } finally {
      button.disabled = false;
    }
  }
}

async function batchView() {
  const params = new URLSearchParams(window.location.search);
  const status = params.get("status") || "";
  const cursor = params.get("cursor") || "";
  $("member-status").value = status;
  for (const link of document.querySelectorAll("#batch-counts a")) {
    if (link.dataset.status === status) link.setAttribute("aria-current", "page");
  }
  setText("members-caption", `${status ? `Members: ${status}` : "All members"}, newest first${
    cursor ? " (a later page)" : ", live"}`);
  $("member-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("member-status").value;
    const query = value ? `?${new URLSearchParams({ status: value })}` : "";
    window.location.assign(`${window.location.pathname}${query}`);
  });
  $("member-status").addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    $("member-filters").requestSubmit();
  });
  await new BatchPage(document.body.dataset.batchId, status, cursor).start();
}

// Most dependencies and children a job page lists (each dependency costs one read).
const RELATIONS_SHOWN = 50;

function relationItem(job) {
  const status = el("span", {});
  statusBadge(status, job.status);
  return el("li", { dataset: { jobId: job.id, status: job.status } },
    jobLink(job.id), " ", el("span", { className: "task" }, job.task), " ", status);
}

// A job's batch, parent, dependencies (with their status) and children, as links.
async function showJobRelations(jobId) {
  const { payload: job } = await api(`/jobs/${encodeURIComponent(jobId)}`);
  const dependsOn = job.depends_on || [];
  const [batch, deps, children] = await Promise.all([
    job.batch_id
      ? api(batchPath(job.batch_id)).then(({ payload }) => payload, () => ({ id: job.batch_id }))
      : null,
    Promise.all(dependsOn.slice(0, RELATIONS_SHOWN).map((id) => api(`/jobs/${encodeURIComponent(id)}`)
      .then(({ payload }) => payload, () => ({ id, task: "", status: "unknown" })))),
    api(`/jobs?${new URLSearchParams({ parent_id: jobId, limit: String(RELATIONS_SHOWN) })}`)
      .then(({ payload }) => payload.jobs, () => []),
  ]);
  if (batch) $("rel-batch").replaceChildren(batchLink(batch));
  if (job.parent_id) $("rel-parent").replaceChildren(jobLink(job.parent_id));
  $("rel-batch-item").hidden = !batch;
  $("rel-parent-item").hidden = !job.parent_id;
  $("rel-deps").replaceChildren(...deps.map(relationItem));
  $("rel-deps-item").hidden = deps.length === 0;
  setText("rel-policy", job.on_dependency_failure && deps.length
    ? `(if one fails: ${job.on_dependency_failure})` : "");
  $("rel-children").replaceChildren(...children.map(relationItem));
  $("rel-children-item").hidden = children.length === 0;
  $("relations-section").hidden = !(batch || job.parent_id || deps.length || children.length);
}

// --- start ------------------------------------------------------------------------------

const VIEWS = {
  jobs: jobsView, job: jobView, queues: queuesView, find: findView,
  batches: batchesView, batch: batchView,
};

setUpKeyForm();
setUpFindForm();
const view = VIEWS[document.body.dataset.view];
if (view) view().catch(showPageError);
