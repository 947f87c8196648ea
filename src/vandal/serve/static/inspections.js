// The inspections view: filters, the list (newest first, "load more" along the server's cursor) and
// the review queue (unreviewed only; flagged and near-threshold first). The selected record is shown
// and reviewed by review.js.
import { api, request } from "./api.js";
import { $, element, formatTime, saveBlob, showError } from "./dom.js";
import { current, onModelChange } from "./models.js";
import { showRecord } from "./review.js";

const PAGE = 100;
const QUEUE_LIMIT = 1000;  // unreviewed records read for the queue (newest first)
const NEAR = 0.2;          // "near the threshold": within 20% of it, below

export const list = { records: [], next: null, index: -1, mode: "queue" };

const thresholdOf = (record) =>
  Number(record.image_threshold ?? (current.model && current.model.name === record.model
    ? current.model.image_threshold : 0.5));

/** Review priority: flagged, then near-threshold normals, then the rest; the least certain first. */
export function queueOrder(records) {
  const group = (r) => (r.pred_label ? 0 : r.pred_score >= (1 - NEAR) * thresholdOf(r) ? 1 : 2);
  const doubt = (r) => Math.abs(r.pred_score - thresholdOf(r)) / thresholdOf(r);
  return [...records].sort((a, b) => group(a) - group(b) || doubt(a) - doubt(b));
}

function filters() {
  const query = new URLSearchParams();
  for (const [field, id] of [["model", "filter-model"], ["label", "filter-label"], ["verdict", "filter-verdict"]]) {
    if ($(id).value) query.set(field, $(id).value);
  }
  for (const field of ["since", "until"]) {
    const value = $(`filter-${field}`).value;  // local time from the picker, sent as UTC
    if (value) query.set(field, new Date(value).toISOString());
  }
  if (list.mode === "queue") query.set("verdict", "none");
  return query;
}

async function readPage(query, cursor) {
  const page = new URLSearchParams(query);
  page.set("limit", String(PAGE));
  if (cursor) page.set("cursor", cursor);
  return api(`inspections?${page}`);
}

let loading = 0;  // the newest load: an older one still answering (a mode or filter changed) is dropped

export async function loadInspections() {
  const query = filters(), mode = list.mode, token = ++loading;
  const records = [];
  let next = null;
  try {
    do {
      const body = await readPage(query, next);
      if (token !== loading) return;
      records.push(...body.inspections);
      next = body.next;
    } while (mode === "queue" && next && records.length < QUEUE_LIMIT);
  } catch (error) {
    if (token === loading) showError(`listing inspections: ${error.message}`);
  }
  if (token !== loading) return;
  list.records = mode === "queue" ? queueOrder(records) : records;
  list.next = next;
  render();
  select(list.records.length ? 0 : -1);
}

async function loadMore() {
  if (!list.next) return;
  try {
    const body = await readPage(filters(), list.next);
    list.records.push(...body.inspections);
    list.next = body.next;
  } catch (error) { showError(error.message); }
  render();
}

function row(record, i) {
  const flagged = Boolean(record.pred_label);
  const item = element("tr", { "data-testid": "inspection-row", className: "record" },
    element("td", { className: "time", textContent: formatTime(record.time) }),
    element("td", { textContent: `${record.model} v${record.version}` }),
    element("td", { className: "name", textContent: record.file, title: record.file }),
    element("td", { className: "num", textContent: Number(record.pred_score).toFixed(3) }),
    element("td", {}, element("span", { className: `tag ${flagged ? "bad" : "good"}`,
                                        textContent: flagged ? "flagged" : "normal" })),
    element("td", {}, element("span", { className: `tag verdict-${record.verdict || "none"}`,
                                        textContent: record.verdict || "unreviewed" })));
  item.dataset.id = String(record.id);
  item.dataset.verdict = record.verdict || "";
  item.addEventListener("click", () => select(i));
  return item;
}

export function render() {
  $("inspection-rows").replaceChildren(...list.records.map(row));
  $("load-more").hidden = !list.next || list.mode === "queue";
  const unreviewed = list.records.filter((r) => !r.verdict).length;
  $("inspection-count").textContent = list.mode === "queue"
    ? `${unreviewed} to review${list.next ? " (the newest " + QUEUE_LIMIT + ")" : ""}`
    : `${list.records.length} shown${list.next ? ", more below" : ""}`;
  highlight();
}

function highlight() {
  [...$("inspection-rows").children].forEach((tr, i) => tr.classList.toggle("selected", i === list.index));
}

/** Show record ``i`` (clamped); -1 clears the detail pane. */
export function select(i) {
  list.index = list.records.length ? Math.max(0, Math.min(list.records.length - 1, i)) : -1;
  highlight();
  const selected = $("inspection-rows").children[list.index];
  if (selected) selected.scrollIntoView({ block: "nearest" });
  showRecord(list.index >= 0 ? list.records[list.index] : null);
}

/** After a review: redraw, then go on to the next record (in the queue: the next one still unreviewed). */
export function reviewed() {
  render();
  if (list.mode !== "queue") { select(list.index + 1); return; }
  const waiting = (r, i) => !r.verdict && i !== list.index;
  const after = list.records.findIndex((r, i) => i > list.index && waiting(r, i));
  const next = after >= 0 ? after : list.records.findIndex(waiting);  // then any left above
  select(next >= 0 ? next : list.index);
}

async function downloadCsv() {
  const query = filters();
  if (list.mode === "queue") query.delete("verdict");
  if ($("filter-verdict").value) query.set("verdict", $("filter-verdict").value);
  try {
    const response = await request(`inspections.csv?${query}`);
    saveBlob(await response.blob(), "inspections.csv");
  } catch (error) { showError(`downloading inspections: ${error.message}`); }
}

function setMode(mode) {
  list.mode = mode;
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  }
  $("filter-verdict").disabled = mode === "queue";
  loadInspections();
}

export function wireInspections() {
  onModelChange((summary, changed) => {
    const menu = $("filter-model");
    const keep = current.model ? current.model.name : menu.value;
    menu.replaceChildren(new Option("all models", ""), ...current.names.map((name) => new Option(name, name)));
    menu.value = current.names.includes(keep) ? keep : "";
    if (changed && !$("inspections-view").hidden) loadInspections();
  });
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); loadInspections(); });
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  $("load-more").addEventListener("click", loadMore);
  $("inspections-csv").addEventListener("click", downloadCsv);
}
