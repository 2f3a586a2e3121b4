// The jobs page of the chainsync REST bridge: lists jobs, follows the running ones over
// server-sent events (read with fetch so the bearer token goes in a header, never in a URL),
// starts, cancels and deletes jobs, and shows a job's result records.
// Every value from the API is put on the page as text (textContent), never as HTML.

const TOKEN_KEY = "chainsync.token";
const POLL_MS = 5000; // refresh of the first page of /jobs, for jobs started elsewhere
const LIST_LIMIT = 20;
const RESULT_PAGE = 1000; // records of each kind per GET result call while loading a job's records
const MAX_RESULT_PAGES = 200;
const ROWS_PER_PAGE = 20; // records per page in the job view (paged here, after loading)
const MAX_TIMINGS = 1000;
const MAX_RECONNECTS = 50;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
// The record kinds come from each result (its `totals`); these are the columns chosen for the kinds the page
// knows. Another kind shows its id and first scalar fields (docs/adding-a-contract.md).
const COLUMNS = {
  proposals: [
    ["id", "Id"], ["titleCid", "Title CID"], ["creator", "Creator"], ["yesVotes", "Yes"], ["noVotes", "No"],
    ["activeStatus", "Active"], ["categoryId", "Category"], ["removed", "Removed"],
  ],
  petitions: [
    ["id", "Id"], ["titleCid", "Title CID"], ["creator", "Creator"], ["signaturesCount", "Signatures"],
    ["signaturesRequired", "Required"], ["completed", "Completed"], ["removed", "Removed"],
  ],
  reports: [
    ["id", "Id"], ["titleCid", "Title CID"], ["creator", "Creator"], ["upvotes", "Up"], ["downvotes", "Down"],
    ["resolved", "Resolved"], ["removed", "Removed"],
  ],
};

// For the latency measurement in docs/jobs-page.md: one entry per SSE `job` event drawn.
window.chainsyncTimings = [];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  jobs: new Map(), // id -> job JSON
  rows: new Map(), // id -> <tr>
  streams: new Map(), // id -> AbortController
  total: 0, // jobs on the server, as the last list said
  nextPageToken: "",
  loadedMore: false, // "More" was used: later polls of the first page leave nextPageToken alone
  selected: "",
  records: null, // {jobId, byKind: {proposals: [...]}, kind, page, query}
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- API ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "";
    this.field = (body && body.details && body.details.field) || "";
  }
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  if (state.token) out.Authorization = `Bearer ${state.token}`;
  return out;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}), cache: "no-store" };
  if (body) init.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    setConn("The bridge cannot be reached", true);
    throw new ApiError(0, { error: `the bridge cannot be reached (${err.message})` });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.status === 401) needToken(data && data.error);
  if (!response.ok) throw new ApiError(response.status, data);
  setConn("", false);
  return data;
}

const jobPath = (id) => encodeURIComponent(id);

// --- auth -----------------------------------------------------------------

function needToken(message) {
  $("token-panel").hidden = false;
  $("token-error").textContent = state.token ? `The token was refused: ${message || "401"}` : "";
  stopAllStreams();
}

function updateTokenControls() {
  $("forget-token").hidden = !state.token;
}

function useToken(token) {
  state.token = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  updateTokenControls();
}

// --- formatting -----------------------------------------------------------

function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

// "2026-11-29 08:46:57.891 UTC" from an RFC 3339 time (the full value stays in the API).
function when(iso) {
  if (!iso) return "—";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d{1,3})?\d*Z$/.exec(iso);
  return m ? `${m[1]} ${m[2]}${m[3] || ""} UTC` : iso;
}

function age(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "—";
  const s = Math.max(0, (Date.now() - t) / 1000);
  return s < 1 ? "now" : `${duration(s)} ago`;
}

// RFC 3339 strings with 0 to 9 fraction digits do not sort as text: compare milliseconds.
const created = (job) => Date.parse(job.createdAt) || 0;

function range(job) {
  return job.fromBlock ? `${job.fromBlock} – ${job.toBlock}` : "—";
}

function rate(job) {
  const r = job.stats ? Number(job.stats.blocksPerSecond) : 0;
  return r > 0 ? r.toFixed(r < 10 ? 1 : 0) : "—";
}

function eta(job) {
  return TERMINAL.has(job.status) ? "—" : duration(job.stats ? Number(job.stats.etaSeconds) : 0);
}

function setConn(text, bad) {
  $("conn").textContent = text;
  $("conn").classList.toggle("bad", Boolean(bad));
}

// --- the jobs table -------------------------------------------------------

function makeRow(id) {
  const progress = el("progress", { max: "100", value: "0", "aria-label": `progress of job ${id}` });
  const cancel = el("button", { type: "button", class: "cancel" }, "Cancel");
  const remove = el("button", { type: "button", class: "delete danger" }, "Delete");
  const open = el("button", { type: "button", class: "link open", title: id }, id.slice(0, 8));
  const row = el(
    "tr",
    { dataset: { jobId: id } },
    el("td", { class: "state" }, el("span", { class: "badge" })),
    el("td", { class: "type" }),
    el("td", { class: "range" }),
    el("td", { class: "progress" }, el("div", { class: "meter" }, progress, el("span", { class: "pct" }))),
    el("td", { class: "rate num" }),
    el("td", { class: "eta num" }),
    el("td", { class: "age num" }),
    el("td", { class: "id" }, open),
    el("td", { class: "actions" }, cancel, " ", remove),
  );
  row.addEventListener("click", (e) => {
    if (e.target.closest("button.cancel")) cancelJob(id);
    else if (e.target.closest("button.delete")) deleteJob(id);
    else openJob(id);
  });
  return row;
}

function drawRow(job) {
  let row = state.rows.get(job.id);
  if (!row) {
    row = makeRow(job.id);
    state.rows.set(job.id, row);
    placeRow(job.id, row);
  }
  const badge = row.querySelector(".badge");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  row.querySelector(".type").textContent = job.type;
  row.querySelector(".range").textContent = range(job);
  row.querySelector("progress").value = job.progress;
  row.querySelector(".pct").textContent = `${job.progress}%`;
  row.querySelector(".rate").textContent = rate(job);
  row.querySelector(".eta").textContent = eta(job);
  row.querySelector(".age").textContent = age(job.createdAt);
  row.querySelector(".age").title = job.createdAt;
  row.querySelector("button.cancel").disabled = TERMINAL.has(job.status);
  row.classList.toggle("selected", state.selected === job.id);
  drawCount();
}

function drawCount() {
  $("jobs-empty").hidden = state.jobs.size > 0;
  const total = Math.max(state.total, state.jobs.size);
  $("jobs-count").textContent = total > state.jobs.size ? `(${state.jobs.size} of ${total})` : `(${total})`;
}

// Newest first: a row goes before the first row created before it.
function placeRow(id, row) {
  const mine = created(state.jobs.get(id));
  const body = $("jobs-body");
  for (const other of body.children) {
    const job = state.jobs.get(other.dataset.jobId);
    if (job && created(job) < mine) {
      body.insertBefore(row, other);
      return;
    }
  }
  body.append(row);
}

function storeJob(job) {
  const known = state.jobs.get(job.id);
  // Events and polls can cross: never let an older snapshot (lower progress, non-terminal) replace a newer one.
  if (known && TERMINAL.has(known.status) && !TERMINAL.has(job.status)) return known;
  if (known && known.status === job.status && job.progress < known.progress) return known;
  state.jobs.set(job.id, job);
  drawRow(job);
  if (state.selected === job.id) drawJobView(job);
  if (!TERMINAL.has(job.status)) follow(job.id);
  return job;
}

function dropJob(id) {
  const ctrl = state.streams.get(id);
  if (ctrl) ctrl.abort();
  state.jobs.delete(id);
  const row = state.rows.get(id);
  if (row) row.remove();
  state.rows.delete(id);
  if (state.selected === id) closeJobView();
  state.total = Math.max(0, state.total - 1);
  drawCount();
}

async function loadJobs({ more = false } = {}) {
  const query = new URLSearchParams({ limit: String(LIST_LIMIT) });
  if (more && state.nextPageToken) query.set("pageToken", state.nextPageToken);
  try {
    const data = await api("GET", `/jobs?${query}`);
    $("jobs-error").textContent = "";
    $("token-panel").hidden = true;
    for (const job of data.jobs) storeJob(job);
    if (!more) dropDeletedElsewhere(data);
    if (more) state.loadedMore = true;
    if (more || !state.loadedMore) state.nextPageToken = data.nextPageToken || "";
    $("more").hidden = !state.nextPageToken;
    state.total = data.pagination.total;
    drawCount();
  } catch (err) {
    if (err.status !== 401) $("jobs-error").textContent = `Could not list jobs: ${err.message}`;
  }
}

// A job inside the first page's time window that the page does not hold was deleted by someone else.
// (A job newer than the page's newest may have been started after the page was read: it stays.)
function dropDeletedElsewhere(firstPage) {
  if (!firstPage.jobs.length) return;
  const listed = new Set(firstPage.jobs.map((j) => j.id));
  const newest = created(firstPage.jobs[0]);
  const oldest = firstPage.nextPageToken ? created(firstPage.jobs.at(-1)) : -Infinity;
  for (const [id, job] of [...state.jobs]) {
    if (!listed.has(id) && created(job) < newest && created(job) > oldest) dropJob(id);
  }
}

function tickAges() {
  for (const [id, row] of state.rows) {
    const job = state.jobs.get(id);
    if (job) row.querySelector(".age").textContent = age(job.createdAt);
  }
}

// --- following a job over server-sent events ------------------------------

// Parses a text/event-stream body; calls onEvent({event, data, id}) per event.
// Resolves "end" after `event: end`, "closed" when the server closed the stream.
async function readEvents(body, onEvent, onRetry) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", data: [], id: null };
  for (let reads = 0; reads < 1_000_000; reads++) {
    const { value, done } = await reader.read();
    if (done) return "closed";
    const receivedAt = now();
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop(); // an incomplete last line waits for the next chunk
    for (const line of lines) {
      if (line === "") {
        if (event.data.length || event.event !== "message") {
          const verdict = onEvent({ event: event.event, data: event.data.join("\n"), id: event.id, receivedAt });
          if (verdict === "end") {
            reader.cancel().catch(() => {});
            return "end";
          }
        }
        event = { event: "message", data: [], id: null };
        continue;
      }
      if (line.startsWith(":")) continue; // a ping
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.event = text;
      else if (field === "data") event.data.push(text);
      else if (field === "id") event.id = text;
      else if (field === "retry" && /^\d+$/.test(text)) onRetry(Number(text));
    }
  }
  return "closed";
}

function follow(id) {
  if (state.streams.has(id)) return;
  const ctrl = new AbortController();
  state.streams.set(id, ctrl);
  followLoop(id, ctrl).finally(() => {
    if (state.streams.get(id) === ctrl) state.streams.delete(id);
  });
}

async function followLoop(id, ctrl) {
  let lastEventId = "";
  let retryMs = 2000;
  for (let attempt = 0; attempt < MAX_RECONNECTS && !ctrl.signal.aborted; attempt++) {
    const extra = { Accept: "text/event-stream" };
    if (lastEventId) extra["Last-Event-ID"] = lastEventId;
    let response;
    try {
      response = await fetch(`/api/blockchain/sync/events/${jobPath(id)}`, {
        headers: headers(extra),
        cache: "no-store",
        signal: ctrl.signal,
      });
    } catch {
      if (ctrl.signal.aborted) return;
      await sleep(retryMs);
      continue;
    }
    if (response.status === 204) return; // ended, and we saw its last event
    if (response.status === 401) return needToken();
    if (response.status === 404) return; // deleted
    if (!response.ok) {
      await sleep(retryMs);
      continue;
    }
    let verdict;
    try {
      verdict = await readEvents(
        response.body,
        (ev) => {
          if (ev.id) lastEventId = ev.id;
          if (ev.event === "job") onJobEvent(JSON.parse(ev.data), ev.receivedAt);
          if (ev.event === "error") setConn(`Stream of job ${id.slice(0, 8)}: ${JSON.parse(ev.data).error}`, true);
          return ev.event === "end" ? "end" : "";
        },
        (ms) => {
          retryMs = ms;
        },
      );
    } catch {
      if (ctrl.signal.aborted) return;
      verdict = "closed";
    }
    if (verdict === "end") return;
    await sleep(retryMs); // the stream broke: reconnect, resuming after lastEventId
  }
}

function onJobEvent(job, receivedAt) {
  const shown = storeJob(job);
  const domAt = now();
  requestAnimationFrame(() => {
    const timings = window.chainsyncTimings;
    timings.push({
      jobId: job.id,
      progress: job.progress,
      status: job.status,
      drawnProgress: shown.progress,
      endedAt: job.endedAt || null,
      eventTime: job.eventTime || null,
      receivedAt,
      domAt,
      drawnAt: now(),
    });
    if (timings.length > MAX_TIMINGS) timings.splice(0, timings.length - MAX_TIMINGS);
  });
}

function stopAllStreams() {
  for (const ctrl of state.streams.values()) ctrl.abort();
  state.streams.clear();
}

// --- start, cancel, delete ------------------------------------------------

async function startJob(event) {
  event.preventDefault();
  const blocksInput = $("blocks-back");
  const full = $("full-sync").checked;
  const errorBox = $("start-error");
  errorBox.textContent = "";
  blocksInput.removeAttribute("aria-invalid");
  const body = {};
  if (full) body.isFullSync = true;
  else if (blocksInput.value.trim() !== "") {
    const n = Number(blocksInput.value);
    body.blocksBack = Number.isInteger(n) ? n : blocksInput.value; // the API names the field if it is bad
  }
  $("start-button").disabled = true;
  try {
    const data = await api("POST", "/api/blockchain/sync", body);
    storeJob(data.job);
  } catch (err) {
    const field = err.field ? `${err.field}: ` : "";
    errorBox.textContent = err.message.startsWith(field) ? err.message : `${field}${err.message}`;
    if (err.field === "blocksBack") blocksInput.setAttribute("aria-invalid", "true");
  } finally {
    $("start-button").disabled = false;
  }
}

async function cancelJob(id) {
  try {
    const data = await api("POST", `/jobs/${jobPath(id)}:cancel`);
    storeJob(data.job);
  } catch (err) {
    $("jobs-error").textContent = `Cancel failed: ${err.message}`;
  }
}

async function deleteJob(id) {
  if (!window.confirm(`Delete job ${id} and its result?`)) return;
  try {
    await api("DELETE", `/jobs/${jobPath(id)}`);
    dropJob(id);
  } catch (err) {
    if (err.status === 404) dropJob(id);
    else $("jobs-error").textContent = `Delete failed: ${err.message}`;
  }
}

// --- the job view ---------------------------------------------------------

function openJob(id) {
  state.selected = id;
  for (const [other, row] of state.rows) row.classList.toggle("selected", other === id);
  state.records = null;
  $("records").hidden = true;
  $("records-status").textContent = "";
  $("search").value = "";
  $("job-view").hidden = false;
  drawJobView(state.jobs.get(id));
  $("job-view").scrollIntoView({ block: "start" });
}

function closeJobView() {
  state.selected = "";
  state.records = null;
  $("job-view").hidden = true;
  for (const row of state.rows.values()) row.classList.remove("selected");
}

function drawJobView(job) {
  if (!job) return;
  $("job-title").textContent = `Job ${job.id}`;
  const s = job.stats || {};
  const items = [
    ["State", job.status],
    ["Type", job.type],
    ["Progress", `${job.progress}%`],
    ["Message", job.message || "—"],
    ["Range", range(job)],
    ["Blocks", `${s.blocksDone ?? "?"} of ${s.blocksTotal ?? "?"}`],
    ["Events found", s.eventsFound ?? "—"],
    ["Records", `${s.recordsDone ?? "?"} of ${s.recordsTotal ?? "?"}`],
    ["Created", when(job.createdAt)],
    ["Started", when(job.startedAt)],
    ["Ended", when(job.endedAt)],
    ["Took", job.startedAt && job.endedAt ? duration((Date.parse(job.endedAt) - Date.parse(job.startedAt)) / 1e3) : "—"],
  ];
  const dl = $("job-details");
  dl.replaceChildren(...items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const failed = Boolean(job.error) && job.status !== "completed";
  $("job-failure").hidden = !failed;
  $("failure-code").textContent = failed ? job.errorCode || "" : "";
  $("failure-message").textContent = failed ? job.error : "";
  if (job.status === "completed" && (!state.records || state.records.jobId !== job.id)) loadRecords(job.id);
}

function columnsOf(kind, sample) {
  if (COLUMNS[kind]) return [...COLUMNS[kind]];
  const scalar = Object.keys(sample || {}).filter((k) => k !== "id" && ["string", "boolean"].includes(typeof sample[k]));
  return [["id", "Id"], ...scalar.slice(0, 7).map((k) => [k, k])];
}

function kindTabs(kinds) {
  const tabs = $("kind-tabs");
  if (tabs.dataset.kinds === kinds.join(",")) return;
  tabs.dataset.kinds = kinds.join(",");
  tabs.replaceChildren(
    ...kinds.map((kind) => {
      const tab = el("button", { type: "button", role: "tab", id: `tab-${kind}`, "aria-controls": "records-table" });
      tab.dataset.kind = kind;
      tab.addEventListener("click", () => {
        if (!state.records) return;
        state.records.kind = kind;
        state.records.page = 0;
        drawRecords();
      });
      return tab;
    }),
  );
}

async function loadRecords(jobId) {
  const records = { jobId, kinds: [], byKind: {}, kind: "", page: 0, query: "" };
  state.records = records;
  $("records-status").textContent = "Loading records…";
  let token = "";
  try {
    for (let page = 0; page < MAX_RESULT_PAGES; page++) {
      const query = new URLSearchParams({ pageSize: String(RESULT_PAGE) });
      if (token) query.set("pageToken", token);
      const data = await api("GET", `/api/blockchain/sync/result/${jobPath(jobId)}?${query}`);
      if (state.records !== records) return; // another job was opened meanwhile
      if (!records.kinds.length) {
        records.kinds = Object.keys(data.result.totals);
        records.kind = records.kinds[0];
        for (const kind of records.kinds) records.byKind[kind] = [];
      }
      for (const kind of records.kinds) records.byKind[kind].push(...data.result[kind]);
      records.summary = data.result;
      token = data.nextPageToken || "";
      if (!token) break;
    }
  } catch (err) {
    if (state.records === records) $("records-status").textContent = `Could not load the result: ${err.message}`;
    return;
  }
  const r = records.summary;
  $("records-status").textContent =
    `Blocks ${r.fromBlock}–${r.toBlock} on chain ${r.chainId}: ${r.eventsCount} events, ` +
    `processed in ${r.processingTime} ms.`;
  $("records").hidden = false;
  drawRecords();
}

function matches(record, query) {
  if (!query) return true;
  for (const [key, value] of Object.entries(record)) {
    if (typeof value !== "string") continue;
    if ((key === "id" || key === "creator" || key.endsWith("Cid") || key.toLowerCase().includes("title"))
        && value.toLowerCase().includes(query)) return true;
  }
  return false;
}

function show(value) {
  if (value === true) return "yes";
  if (value === false) return "no";
  if (value === null || value === undefined || value === "") return "—";
  return String(value);
}

function drawRecords() {
  const records = state.records;
  if (!records) return;
  kindTabs(records.kinds);
  for (const kind of records.kinds) {
    const tab = $(`tab-${kind}`);
    const selected = kind === records.kind;
    tab.setAttribute("aria-selected", String(selected));
    tab.textContent = `${kind[0].toUpperCase()}${kind.slice(1)} (${records.byKind[kind].length})`;
  }
  const columns = columnsOf(records.kind, records.byKind[records.kind][0]);
  if (records.byKind[records.kind].some((r) => typeof r.title === "string")) {
    columns.splice(1, 0, ["title", "Title"]); // text resolved from IPFS (docs/ipfs.md), when the server does that
  }
  $("records-head").replaceChildren(
    el("tr", {}, ...columns.map(([key, label]) => el("th", { scope: "col", class: `c-${key}` }, label))),
  );
  const shown = records.byKind[records.kind].filter((r) => matches(r, records.query));
  const pages = Math.max(1, Math.ceil(shown.length / ROWS_PER_PAGE));
  records.page = Math.min(records.page, pages - 1);
  const slice = shown.slice(records.page * ROWS_PER_PAGE, (records.page + 1) * ROWS_PER_PAGE);
  $("records-body").replaceChildren(
    ...slice.map((r) =>
      el(
        "tr",
        { dataset: { recordId: r.id } },
        ...columns.map(([key]) => el("td", { class: `f-${key}`, title: show(r[key]) }, show(r[key]))),
      ),
    ),
  );
  if (!slice.length) {
    $("records-body").append(el("tr", {}, el("td", { colspan: String(columns.length), class: "muted" }, "No records.")));
  }
  $("page-info").textContent = `${shown.length} record${shown.length === 1 ? "" : "s"}, page ${records.page + 1} of ${pages}`;
  $("prev-page").disabled = records.page === 0;
  $("next-page").disabled = records.page >= pages - 1;
}

// --- wiring ---------------------------------------------------------------

function init() {
  updateTokenControls();
  $("start-form").addEventListener("submit", startJob);
  $("full-sync").addEventListener("change", () => {
    $("blocks-back").disabled = $("full-sync").checked;
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    useToken($("token").value.trim());
    $("token").value = "";
    loadJobs();
  });
  $("forget-token").addEventListener("click", () => {
    useToken("");
    stopAllStreams();
    $("token-panel").hidden = false;
    $("token-error").textContent = "";
  });
  $("refresh").addEventListener("click", () => loadJobs());
  $("more").addEventListener("click", () => loadJobs({ more: true }));
  $("close-view").addEventListener("click", closeJobView);
  $("search").addEventListener("input", () => {
    if (!state.records) return;
    state.records.query = $("search").value.trim().toLowerCase();
    state.records.page = 0;
    drawRecords();
  });
  $("prev-page").addEventListener("click", () => {
    state.records.page -= 1;
    drawRecords();
  });
  $("next-page").addEventListener("click", () => {
    state.records.page += 1;
    drawRecords();
  });
  loadJobs();
  setInterval(() => {
    if ($("token-panel").hidden) loadJobs();
  }, POLL_MS);
  setInterval(tickAges, 1000);
}

init();
