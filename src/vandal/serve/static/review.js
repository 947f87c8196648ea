// One inspection in detail (image or heat map, score against its threshold) and its review:
// buttons and keyboard shortcuts (g good, d defect, j/k next/previous, o image/heat map).
import { blobUrl, postJson } from "./api.js";
import { may } from "./auth.js";
import { $, formatTime, showError } from "./dom.js";

// view: what is shown; preferred: what the user chose last (records without an overlay show the image)
const shown = { record: null, view: "overlay", preferred: "overlay", urls: {} };
let hooks = { next: () => {}, previous: () => {}, reviewed: () => {} };

function forget() {
  for (const url of Object.values(shown.urls)) if (url) URL.revokeObjectURL(url);
  shown.urls = {};
}

async function loadImage(view) {
  const { record, urls } = shown;  // this record's images: a later record gets a fresh ``urls``
  $("record-view").textContent = `showing the ${view === "overlay" ? "heat map" : "image as inspected"}`;
  if (!(view in urls)) {
    urls[view] = null;  // asked for once, even while the answer is on its way
    try {
      const url = await blobUrl(`inspections/${record.id}/${view === "overlay" ? "overlay" : "image"}`);
      if (shown.urls !== urls) { URL.revokeObjectURL(url); return; }  // moved on to another record
      urls[view] = url;
    } catch (error) {
      if (shown.urls === urls) $("record-missing").textContent = `${view}: ${error.message}`;
      return;
    }
  }
  if (shown.urls !== urls || shown.view !== view || !urls[view]) return;  // another record or view meanwhile
  const image = $("record-image");
  image.hidden = false;
  image.src = urls[view];
  $("record-missing").textContent = "";
}

/** Fill the detail pane with ``record`` (null: empty). */
export function showRecord(record) {
  forget();
  shown.record = record;
  $("record").hidden = !record;
  $("record-none").hidden = Boolean(record);
  if (!record) return;
  const threshold = record.image_threshold ?? null;
  $("record-file").textContent = record.file;
  $("record-score").textContent = `score ${Number(record.pred_score).toFixed(3)}` +
    (threshold !== null ? ` (threshold ${threshold})` : "") + `: ${record.pred_label ? "flagged" : "normal"}`;
  $("record-score").dataset.label = String(Boolean(record.pred_label));
  $("record-meta").textContent = `#${record.id} · ${formatTime(record.time)} · ${record.model} version ` +
    `${record.version}` + (record.key ? ` · by ${record.key}` : "") +
    (record.sha256 ? ` · sha256 ${record.sha256.slice(0, 12)}…` : "");
  $("record-verdict").textContent = record.verdict
    ? `reviewed: ${record.verdict}${record.note ? ` (${record.note})` : ""}` : "not reviewed yet";
  $("record-verdict").dataset.verdict = record.verdict || "";
  $("review-note").value = "";
  $("record-missing").textContent = "";
  $("record-image").hidden = true;  // until this record's image arrives
  $("record-toggle").disabled = !record.overlay;
  shown.view = record.overlay ? shown.preferred : "image";  // an overlay is kept only when predict made one
  loadImage(shown.view);
}

async function review(verdict) {
  const record = shown.record;
  if (!record || !may("inspector")) return;
  const note = $("review-note").value.trim();
  const body = { verdict };
  if (note) body.note = note;
  try {
    await postJson(`inspections/${record.id}/review`, body);
    record.verdict = verdict;
    record.note = note || null;
    hooks.reviewed(record);
  } catch (error) { showError(`reviewing #${record.id} (${record.file}): ${error.message}`); }
}

function toggleView() {
  if (!shown.record || !shown.record.overlay) return;
  shown.view = shown.preferred = shown.view === "overlay" ? "image" : "overlay";
  loadImage(shown.view);
}

const KEYS = { j: () => hooks.next(), k: () => hooks.previous(), g: () => review("good"),
               d: () => review("defect"), o: toggleView };

/** Keys act while the inspections view is shown and no text field has the focus. */
function onKey(event) {
  if ($("inspections-view").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, textarea, select, [contenteditable]")) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const action = KEYS[event.key];
  if (!action) return;
  event.preventDefault();
  action();
}

export function wireReview(callbacks) {
  hooks = callbacks;
  $("review-good").addEventListener("click", () => review("good"));
  $("review-defect").addEventListener("click", () => review("defect"));
  $("record-toggle").addEventListener("click", toggleView);
  $("record-next").addEventListener("click", () => hooks.next());
  $("record-previous").addEventListener("click", () => hooks.previous());
  document.addEventListener("keydown", onKey);
}
