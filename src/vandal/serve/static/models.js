// The model bar: pick, create (from 1-16 good images) and delete models. Other views follow the
// chosen model through onModelChange.
import { api, upload } from "./api.js";
import { $, clearErrors, showError } from "./dom.js";

const NAME_RULE = /^(?!\.)[A-Za-z0-9_.-]{1,64}$/;
const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"];
const MAX_REFERENCES = 16;

export const current = { model: null, names: [] };
const listeners = [];
export const onModelChange = (listener) => listeners.push(listener);

export function isImage(file) {
  const name = file.name.toLowerCase();
  return IMAGE_EXTENSIONS.some((ext) => name.endsWith(ext)) || (file.type || "").startsWith("image/");
}

export function fileLabel(file) { return file.webkitRelativePath || file.relativePath || file.name; }

let references = [];

export async function loadModels(select) {
  const body = await api("models");
  const menu = $("model-select");
  const keep = select === undefined ? menu.value : select;
  menu.replaceChildren(new Option(body.models.length ? "(choose a model)" : "(none yet)", ""));
  for (const model of body.models) {
    const option = new Option(model.error ? `${model.name} (unreadable)` : model.name, model.name);
    option.disabled = Boolean(model.error);
    menu.appendChild(option);
  }
  if (!body.models.length) $("create-panel").open = true;
  current.names = body.models.filter((m) => !m.error).map((m) => m.name);
  if (keep && body.models.some((m) => m.name === keep)) menu.value = keep;
  else if (!keep && current.names.length === 1) menu.value = current.names[0];
  await selectModel(menu.value ? body.models.find((m) => m.name === menu.value) : null);
}

/** Re-read the chosen model's summary (after a rollback or new references). */
export async function reloadModel() {
  if (current.model) await selectModel(await api(`models/${encodeURIComponent(current.model.name)}`));
}

async function selectModel(summary) {
  const changed = !current.model || !summary || current.model.name !== summary.name;
  current.model = summary;
  $("delete-model").disabled = !summary;
  $("model-info").textContent = summary
    ? `${summary.backbone}, ${summary.references} reference image(s), image threshold ${summary.image_threshold}` +
      (summary.version !== undefined ? `, version ${summary.version}` : "")
    : "";
  for (const listener of listeners) await listener(summary, changed);
}

function setReferences(files) {
  const images = files.filter(isImage);
  references = images;
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
  const files = references;
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
  if (!current.model || !confirm(`Delete model "${current.model.name}"?`)) return;
  try {
    await api(`models/${encodeURIComponent(current.model.name)}`, { method: "DELETE" });
    await loadModels("");
  } catch (error) { showError(error.message); }
}

// ------------------------------------------------------------------ drops (files and folders)
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

export function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    onFiles(await droppedFiles(event));
  });
}

export function wireModels() {
  $("model-select").addEventListener("change", async (event) => {
    clearErrors();
    try {
      await selectModel(event.target.value ? await api(`models/${encodeURIComponent(event.target.value)}`) : null);
    } catch (error) { showError(error.message); }
  });
  $("refresh-models").addEventListener("click", () => loadModels().catch((e) => showError(e.message)));
  $("delete-model").addEventListener("click", deleteModel);
  $("reference-files").addEventListener("change", (event) => setReferences([...event.target.files]));
  dropZone($("reference-drop"), setReferences);
  $("create-model").addEventListener("click", createModel);
}
