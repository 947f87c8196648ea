// vandal inspection page: plain JavaScript, no build step, no network beyond this server.
// Flow: pick or create a model -> drop test images -> a grid of results sorted by score; the
// threshold slider relabels cards in the browser (pred_score units); CSV download of what is shown.
"use strict";

const NAME_RULE = /^(?!\.)[A-Za-z0-9_.-]{1,64}$/;
const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"];
const MAX_REFERENCES = 16;
const PARALLEL_REQUESTS = 2;   // the server scores one model's images one at a time; two keep it busy
const MAX_RETRIES = 5;         // when the server answers 503 (queue full), after its Retry-After

const $ = (id) => document.getElementById(id);
const state = { model: null, results: [], references: [], threshold: 0.5, pending: 0, done: 0, total: 0 };

// ------------------------------------------------------------------ errors and requests
function showError(message) {
  const item = document.createElement("li");
  item.textContent = message;
  $("error").appendChild(item);
}

function clearErrors() { $("error").replaceChildren(); }

async function detailOf(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, options);
    if (response.status === 503 && attempt < MAX_RETRIES) {
      await sleep(1000 * Number(response.headers.get("Retry-After") || 1));
      continue;
    }
    if (!response.ok) throw new Error(await detailOf(response));
    return response.status === 204 ? null : response.json();
  }
}

// XMLHttpRequest for uploads: fetch cannot report upload progress.
function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); };
    xhr.upload.onload = () => onProgress(1);
    xhr.onerror = () => reject(new Error("the server could not be reached"));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error(body && body.detail ? String(body.detail) : `${xhr.status} ${xhr.statusText}`));
    };
    xhr.send(form);
  });
}

// ------------------------------------------------------------------ files, folders, drops
function isImage(file) {
  const name = file.name.toLowerCase();
  return IMAGE_EXTENSIONS.some((ext) => name.endsWith(ext)) || (file.type || "").startsWith("image/");
}

function fileLabel(file) { return file.webkitRelativePath || file.relativePath || file.name; }

async function entryFiles(entry, prefix = "") {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    file.relativePath = prefix + file.name;
    return [file];
  }
  const reader = entry.createReader();
  const files = [];
  for (;;) {  // readEntries answers in chunks until it answers nothing
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) files.push(...await entryFiles(child, prefix + entry.name + "/"));
  }
  return files;
}

async function droppedFiles(event) {
  const items = [...(event.dataTransfer.items || [])];
  const entries = items.map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...event.dataTransfer.files];
  const nested = await Promise.all(entries.map((entry) => entryFiles(entry)));
  return nested.flat();
}

function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    onFiles(await droppedFiles(event));
  });
}

// ------------------------------------------------------------------ models
async function loadModels(select) {
  const body = await api("models");
  const menu = $("model-select");
  const keep = select || menu.value;
  menu.replaceChildren(new Option(body.models.length ? "(choose a model)" : "(none yet)", ""));
  for (const model of body.models) {
    const option = new Option(model.error ? `${model.name} (unreadable)` : model.name, model.name);
    option.disabled = Boolean(model.error);
    menu.appendChild(option);
  }
  if (keep && body.models.some((m) => m.name === keep)) menu.value = keep;
  await selectModel(menu.value ? body.models.find((m) => m.name === menu.value) : null);
}

async function selectModel(summary) {
  const changed = !state.model || !summary || state.model.name !== summary.name;
  state.model = summary;
  $("delete-model").disabled = !summary;
  $("test-panel").hidden = !summary;
  if (!summary) { $("model-info").textContent = ""; return; }
  $("model-info").textContent = `${summary.backbone}, ${summary.references} reference image(s), ` +
    `image threshold ${summary.image_threshold}, sources: ${(summary.sources || []).join(", ")}`;
  if (changed) { clearResults(); setThreshold(summary.image_threshold); }
}

function setReferences(files) {
  const images = files.filter(isImage);
  state.references = images;
  const skipped = files.length - images.length;
  $("reference-list").textContent = images.length
    ? `${images.length} image(s): ${images.map(fileLabel).slice(0, 6).join(", ")}${images.length > 6 ? ", ..." : ""}` +
      (skipped ? ` (${skipped} non-image file(s) ignored)` : "")
    : "No images chosen.";
}

async function createModel() {
  clearErrors();
  const name = $("model-name").value.trim();
  if (!NAME_RULE.test(name)) {
    showError(`model name "${name}" is not allowed: use 1-64 letters, digits, '_', '.' or '-', not starting with a dot`);
    return;
  }
  const files = state.references;
  if (files.length < 1 || files.length > MAX_REFERENCES) {
    showError(`choose 1 to ${MAX_REFERENCES} good images (chosen: ${files.length})`);
    return;
  }
  const form = new FormData();
  for (const file of files) form.append("files", file, fileLabel(file));
  const bar = $("create-progress"), status = $("create-status");
  bar.hidden = false; bar.value = 0; $("create-model").disabled = true;
  status.textContent = "uploading...";
  try {
    const summary = await upload(`models/${encodeURIComponent(name)}`, form, (fraction) => {
      bar.value = fraction;
      if (fraction >= 1) { bar.removeAttribute("value"); status.textContent = `fitting on ${files.length} image(s)...`; }
    });
    status.textContent = `created "${summary.name}" from ${summary.references} image(s)`;
    await loadModels(summary.name);
    $("create-panel").open = false;
  } catch (error) {
    status.textContent = "";
    showError(`creating "${name}": ${error.message}`);
  } finally {
    bar.hidden = true; $("create-model").disabled = false;
  }
}

async function deleteModel() {
  if (!state.model || !confirm(`Delete model "${state.model.name}"?`)) return;
  try {
    await api(`models/${encodeURIComponent(state.model.name)}`, { method: "DELETE" });
    state.model = null;
    await loadModels("");
  } catch (error) { showError(error.message); }
}

// ------------------------------------------------------------------ scoring
function clearResults() {
  for (const result of state.results) URL.revokeObjectURL(result.original);
  state.results = [];
  $("results").replaceChildren();
  updateCounts();
}

function scoreFiles(files) {
  if (!state.model) return;
  const images = files.filter(isImage);
  const ignored = files.length - images.length;
  if (ignored) showError(`ignored ${ignored} file(s) that are not images (by their extension)`);
  if (!images.length) return;
  const queue = [...images];
  state.total += images.length;
  state.pending += images.length;
  updateProgress();
  const model = state.model.name;
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
    if (!state.model || state.model.name !== model) return;  // the model changed meanwhile
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
  if (!state.pending) { state.total = 0; state.done = 0; }
}

const png = (data) => (data ? `data:image/png;base64,${data}` : "");

function addResult(result, file) {
  const entry = {
    file: result.file, score: result.pred_score, label: result.pred_label, original: URL.createObjectURL(file),
    overlay: png(result.overlay_png), map: png(result.anomaly_map_png), mask: png(result.mask_png),
  };
  state.results.push(entry);
  const card = document.createElement("figure");
  card.className = "card";
  card.setAttribute("data-testid", "result-card");
  card.dataset.file = entry.file;
  card.dataset.score = String(entry.score);
  const image = document.createElement("img");
  image.src = entry.overlay || entry.original;
  image.alt = entry.file;
  image.loading = "lazy";
  const caption = document.createElement("figcaption");
  const name = document.createElement("span");
  name.className = "name"; name.textContent = entry.file; name.title = entry.file;
  const verdict = document.createElement("span");
  verdict.className = "verdict";
  const score = document.createElement("span");
  score.className = "score"; score.textContent = `score ${entry.score.toFixed(3)}`;
  caption.append(name, verdict, score);
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

// ------------------------------------------------------------------ threshold, counts, CSV
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

function csvField(value) {
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function downloadCsv() {
  const rows = [["file", "pred_score", "pred_label", "image_threshold", "model"]];
  const sorted = [...state.results].sort((a, b) => b.score - a.score);
  for (const entry of sorted) rows.push([entry.file, entry.score, entry.label, state.threshold, state.model.name]);
  const blob = new Blob([rows.map((row) => row.map(csvField).join(",")).join("\n") + "\n"], { type: "text/csv" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${state.model.name}-results.csv`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
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
  const source = viewing[view];
  const image = $("viewer-image");
  image.onload = () => fitImage(image);
  image.src = source || viewing.original;
  for (const tab of document.querySelectorAll(".tabs button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === view));
    tab.disabled = !viewing[tab.dataset.view];
  }
}

// ------------------------------------------------------------------ wiring
function start() {
  $("model-select").addEventListener("change", async (event) => {
    clearErrors();
    if (!event.target.value) { await selectModel(null); return; }
    try {
      await selectModel(await api(`models/${encodeURIComponent(event.target.value)}`));
    } catch (error) { showError(error.message); }
  });
  $("refresh-models").addEventListener("click", () => loadModels().catch((e) => showError(e.message)));
  $("delete-model").addEventListener("click", deleteModel);
  $("reference-files").addEventListener("change", (event) => setReferences([...event.target.files]));
  dropZone($("reference-drop"), setReferences);
  $("create-model").addEventListener("click", createModel);
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
  api("health").then((body) => { $("version").textContent = `v${body.version}`; }).catch(() => {});
  loadModels().catch((error) => showError(`listing models: ${error.message}`));
}

start();
