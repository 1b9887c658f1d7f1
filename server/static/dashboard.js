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

async function api(path, { method = "GET" } = {}) {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(ROOT + path, { method, headers, cache: "no-store" });
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

// Runs `task` soon, at most once per REFRESH_EVERY_MS, however many times it is asked.
class Coalesce {
  constructor(task) {
    this.task = task;
    this.timer = null;
    this.last = 0;
  }

  request() {
    if (this.timer !== null) return;
    const wait = Math.max(0, this.last + REFRESH_EVERY_MS - Date.now());
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
  constructor(filters, cursor) {
    this.filters = filters;
    this.cursor = cursor;
    this.body = $("jobs-body");
    this.rows = new Map();
    this.nextCursor = null;
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
    const query = new URLSearchParams();
    for (const name of ["status", "task", "queue"]) {
      if (this.filters[name]) query.set(name, this.filters[name]);
    }
    query.set("limit", String(PAGE_SIZE));
    if (this.cursor) query.set("cursor", this.cursor);
    return query;
  }

  async load() {
    this.body.setAttribute("aria-busy", "true");
    this.buffer = [];
    try {
      const { payload } = await api(`/jobs?${this.query()}`);
      this.eventsPath = samePath(payload.events);
      this.nextCursor = payload.next_cursor;
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
    if (this.buffer !== null) this.buffer.push(event);
    else this.apply(event);
    if (event.kind !== "progress" && event.kind !== "log") this.counts.request();
  }

  matches(job) {
    return ["status", "task", "queue"].every(
      (name) => !this.filters[name] || this.filters[name] === job[name],
    );
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
    if (this.cursor || !this.matches(event)) return; // live rows join the first page only
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
  }

  updateEmpty() {
    $("jobs-empty").hidden = this.rows.size > 0;
  }

  renderPaging() {
    const base = new URLSearchParams();
    for (const name of ["status", "task", "queue"]) {
      if (this.filters[name]) base.set(name, this.filters[name]);
    }
    const first = $("page-first");
    first.hidden = !this.cursor;
    first.href = `${ROOT}/?${base}`;
    const next = $("page-next");
    next.hidden = !this.nextCursor;
    if (this.nextCursor) {
      const query = new URLSearchParams(base);
      query.set("cursor", this.nextCursor);
      next.href = `${ROOT}/?${query}`;
    }
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

async function jobsView() {
  const params = new URLSearchParams(window.location.search);
  const filters = {};
  for (const name of ["status", "task", "queue"]) {
    filters[name] = params.get(name) || "";
    $(`filter-${name}`).value = filters[name];
  }
  const cursor = params.get("cursor") || "";
  for (const link of document.querySelectorAll("#counts a")) {
    if (link.dataset.status === filters.status) link.setAttribute("aria-current", "page");
  }
  const parts = [];
  if (filters.status) parts.push(filters.status);
  if (filters.task) parts.push(`task ${filters.task}`);
  if (filters.queue) parts.push(`queue ${filters.queue}`);
  if (filters.status === "failed") {
    setText("jobs-title", "Failed jobs (dead letter)");
    $("nav-jobs").removeAttribute("aria-current");
    $("nav-failed").setAttribute("aria-current", "page");
  }
  // Submit only the filters that are set, so the URL stays short and shareable.
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const name of ["status", "task", "queue"]) {
      const value = $(`filter-${name}`).value.trim();
      if (value) query.set(name, value);
    }
    window.location.assign(`${ROOT}/${query.size ? `?${query}` : ""}`);
  });
  // A <select> does not submit its form on Enter as a text field does.
  $("filter-status").addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    $("filters").requestSubmit();
  });
  setText("jobs-caption", `${parts.length ? `Jobs: ${parts.join(", ")}` : "All jobs"}, newest first${
    cursor ? " (an older page)" : ", live"}`);
  await new JobsTable(filters, cursor).start();
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
    const waiting = job.waiting_reason && ["queued", "retrying"].includes(job.status);
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

// --- start ------------------------------------------------------------------------------

const VIEWS = { jobs: jobsView, job: jobView, queues: queuesView, find: findView };

setUpKeyForm();
setUpFindForm();
const view = VIEWS[document.body.dataset.view];
if (view) view().catch(showPageError);
