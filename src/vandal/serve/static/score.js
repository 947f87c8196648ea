// Scoring: drop test images -> a grid of results sorted by score; the threshold slider relabels
// cards in the browser (pred_score units); CSV download of what is shown; a viewer per image.
import { api } from "./api.js";
import { $, csvField, element, saveBlob, showError, clearErrors } from "./dom.js";
import { current, dropZone, fileLabel, isImage, onModelChange } from "./models.js";

const PARALLEL_REQUESTS = 2;   // the server scores one model's images one at a time; two keep it busy
const state = { results: [], threshold: 0.5, pending: 0, done: 0, total: 0 };
const listeners = [];
/** Called after each scored batch (the inspections view refreshes). */
export const onScored = (listener) => listeners.push(listener);

function clearResults() {
  for (const result of state.results) URL.revokeObjectURL(result.original);
  state.results = [];
  $("results").replaceChildren();
  updateCounts();
}

function scoreFiles(files) {
  if (!current.model) return;
  const images = files.filter(isImage);
  const ignored = files.length - images.length;
  if (ignored) showError(`ignored ${ignored} file(s) that are not images (by their extension)`);
  if (!images.length) return;
  const queue = [...images];
  state.total += images.length;
  state.pending += images.length;
  updateProgress();
  const model = current.model.name;
  const worker = async () => {
    for (let file = queue.shift(); file; file = queue.shift()) {
      await scoreOne(model, file);
      state.pending -= 1; state.done += 1;
      updateProgress();
    }
  };
  for (let i = 0; i < Math.min(PARALLEL_REQUESTS, images.length); i++) worker();
}

async function scoreOne(model, file) {
  const form = new FormData();
  form.append("files", file, fileLabel(file));
  try {
    const body = await api(`models/${encodeURIComponent(model)}/predict`, { method: "POST", body: form });
    if (!current.model || current.model.name !== model) return;  // the model changed meanwhile
    for (const result of body.results) addResult(result, file);
  } catch (error) {
    showError(error.message.includes(fileLabel(file)) ? error.message : `${fileLabel(file)}: ${error.message}`);
  }
}

function updateProgress() {
  const bar = $("score-progress"), status = $("score-status");
  bar.hidden = state.pending === 0;
  bar.max = Math.max(1, state.total); bar.value = state.done;
  status.textContent = state.pending ? `scoring: ${state.done} of ${state.total}` :
    (state.total ? `scored ${state.results.length} image(s)` : "");
  if (!state.pending && state.total) {
    state.total = 0; state.done = 0;
    for (const listener of listeners) listener();
  }
}

const png = (data) => (data ? `data:image/png;base64,${data}` : "");

function addResult(result, file) {
  const entry = {
    file: result.file, score: result.pred_score, label: result.pred_label, original: URL.createObjectURL(file),
    overlay: png(result.overlay_png), map: png(result.anomaly_map_png), mask: png(result.mask_png),
  };
  state.results.push(entry);
  const card = element("figure", { className: "card", "data-testid": "result-card" });
  card.dataset.file = entry.file;
  card.dataset.score = String(entry.score);
  if (result.inspection_id !== undefined) card.dataset.inspection = String(result.inspection_id);
  const image = element("img", { src: entry.overlay || entry.original, alt: entry.file, loading: "lazy" });
  const caption = element("figcaption", {},
    element("span", { className: "name", textContent: entry.file, title: entry.file }),
    element("span", { className: "verdict" }),
    element("span", { className: "score", textContent: `score ${entry.score.toFixed(3)}` }));
  card.append(image, caption);
  card.addEventListener("click", () => openViewer(entry));
  entry.card = card;
  // Insert in place: cards stay sorted by score, highest first.
  const grid = $("results");
  const after = [...grid.children].find((other) => Number(other.dataset.score) < entry.score);
  grid.insertBefore(card, after || null);
  label(entry);
  updateCounts();
  growSlider(entry.score);
}

function label(entry) {
  entry.label = !(entry.score <= state.threshold);  // as the detector: a NaN score is flagged
  entry.card.dataset.label = String(entry.label);
  entry.card.querySelector(".verdict").textContent = entry.label ? "anomalous" : "normal";
}

function setThreshold(value) {
  state.threshold = Number(value);
  const slider = $("threshold");
  if (Number(slider.max) < state.threshold * 2) slider.max = String(state.threshold * 2);
  slider.value = String(state.threshold);
  $("threshold-value").textContent = state.threshold.toFixed(3);
  for (const entry of state.results) label(entry);
  updateCounts();
}

function growSlider(score) {
  const slider = $("threshold");
  const wanted = Math.ceil(Math.max(Number(slider.max), score * 1.05) * 100) / 100;
  if (Number.isFinite(wanted) && wanted > Number(slider.max)) {
    slider.max = String(wanted);
    slider.value = String(state.threshold);
  }
}

function updateCounts() {
  const flagged = state.results.filter((entry) => entry.label).length;
  $("counts").textContent = state.results.length
    ? `${flagged} anomalous, ${state.results.length - flagged} normal of ${state.results.length}` : "";
  $("download-csv").disabled = !state.results.length;
}

function downloadCsv() {
  const rows = [["file", "pred_score", "pred_label", "image_threshold", "model"]];
  const sorted = [...state.results].sort((a, b) => b.score - a.score);
  for (const entry of sorted) rows.push([entry.file, entry.score, entry.label, state.threshold, current.model.name]);
  const text = rows.map((row) => row.map(csvField).join(",")).join("\n") + "\n";
  saveBlob(new Blob([text], { type: "text/csv" }), `${current.model.name}-results.csv`);
}

// ------------------------------------------------------------------ viewer
let viewing = null;

function openViewer(entry) {
  viewing = entry;
  $("viewer-title").textContent = entry.file;
  $("viewer-score").textContent = `score ${entry.score.toFixed(3)}: ${entry.label ? "anomalous" : "normal"}`;
  show(entry.overlay ? "overlay" : "original");
  $("viewer").showModal();
}

const SMALLEST_VIEW = 512;  // small images are enlarged (pixels kept sharp); larger ones shown 1:1

function fitImage(image) {
  const small = image.naturalWidth < SMALLEST_VIEW && image.naturalHeight < SMALLEST_VIEW;
  const scale = small ? SMALLEST_VIEW / Math.max(image.naturalWidth, image.naturalHeight) : 1;
  image.style.width = `${Math.round(image.naturalWidth * scale)}px`;
  image.style.imageRendering = small ? "pixelated" : "auto";
}

function show(view) {
  if (!viewing) return;
  const image = $("viewer-image");
  image.onload = () => fitImage(image);
  image.src = viewing[view] || viewing.original;
  for (const tab of document.querySelectorAll(".tabs button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === view));
    tab.disabled = !viewing[tab.dataset.view];
  }
}

export function wireScoring() {
  onModelChange((summary, changed) => {
    $("test-panel").hidden = !summary;
    if (summary && changed) { clearResults(); setThreshold(summary.image_threshold); }
  });
  for (const id of ["test-files", "test-folder"]) {
    $(id).addEventListener("change", (event) => { scoreFiles([...event.target.files]); event.target.value = ""; });
  }
  dropZone($("test-drop"), scoreFiles);
  $("threshold").addEventListener("input", (event) => setThreshold(event.target.value));
  $("download-csv").addEventListener("click", downloadCsv);
  $("clear-results").addEventListener("click", () => { clearResults(); clearErrors(); });
  for (const tab of document.querySelectorAll(".tabs button")) tab.addEventListener("click", () => show(tab.dataset.view));
  $("viewer-close").addEventListener("click", () => $("viewer").close());
  $("viewer").addEventListener("click", (event) => { if (event.target === $("viewer")) $("viewer").close(); });
}
