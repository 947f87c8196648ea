// The model view: plots of its recent life (flagged share per bucket, the score histogram with
// the threshold line, review outcomes), its versions with rollback, and "add the reviewed-good
// images to the references" (the operator's confirmed false alarms teach the model).
import { api, postJson } from "./api.js";
import { may } from "./auth.js";
import { $, element, formatTime, showError } from "./dom.js";
import { current, onModelChange, reloadModel } from "./models.js";
import { histogram, shareColumns, stackedColumns } from "./plots.js";

const HISTOGRAM_LIMIT = 1000;  // the newest scores drawn in the histogram
const OUTCOMES = [  // the reviews of a bucket: the station's decision confirmed, or which way it erred
  { key: "confirmed", name: "decision(s) confirmed", legend: "confirmed", className: "bar-normal" },
  { key: "false_alarms", name: "false alarm(s): flagged, reviewed good", legend: "false alarm",
    className: "bar-false-alarm" },
  { key: "misses", name: "miss(es): passed, reviewed defect", legend: "miss", className: "bar-miss" },
];

const caption = (title) => element("figcaption", { textContent: title });
const name = () => encodeURIComponent(current.model.name);

function bucketLabel(start, bucket) {
  const time = new Date(start);
  if (Number.isNaN(time.getTime())) return String(start);
  return bucket === "hour"
    ? time.toLocaleString([], { month: "numeric", day: "numeric", hour: "2-digit" })
    : time.toLocaleDateString([], { month: "short", day: "numeric" });
}

/** Every inspection of the model matching ``query`` (newest first, at most ``limit``). */
async function inspections(query, limit) {
  const records = [];
  let cursor = null;
  do {
    const page = new URLSearchParams({ ...query, model: current.model.name, limit: "200" });
    if (cursor) page.set("cursor", cursor);
    const body = await api(`inspections?${page}`);
    records.push(...body.inspections);
    cursor = body.next;
  } while (cursor && records.length < limit);
  return records.slice(0, limit);
}

/** Whether the answers for ``model`` still matter (the user may have chosen another meanwhile). */
const still = (model) => current.model && current.model.name === model;

async function drawPlots() {
  const bucket = $("stats-bucket").value, model = current.model.name;
  const [stats, recent] = await Promise.all([
    api(`models/${name()}/stats?bucket=${bucket}`), inspections({}, HISTOGRAM_LIMIT)]);
  if (!still(model) || $("stats-bucket").value !== bucket) return;
  const buckets = stats.buckets.map((b) => ({ ...b, label: bucketLabel(b.start, bucket) }));
  const shares = buckets.map((b) => ({
    label: b.label, share: b.scored ? b.flagged / b.scored : 0, hint: `${b.flagged} of ${b.scored} flagged`,
  }));
  $("plot-flagged").replaceChildren(caption("Flagged share"), shareColumns(`Share flagged per ${bucket}`, shares));
  const scores = recent.map((r) => Number(r.pred_score));
  $("plot-histogram").replaceChildren(caption("Scores against the threshold"),
    histogram(`Scores of the newest ${recent.length} inspections`, scores, Number(current.model.image_threshold)));
  const outcomes = buckets.map((b) => ({
    label: b.label, values: { ...b, confirmed: b.reviewed - b.false_alarms - b.misses },
  }));
  $("plot-outcomes").replaceChildren(caption("What reviews said"),
    stackedColumns(`Review outcomes per ${bucket}`, outcomes, OUTCOMES));
  const totals = stats.total;
  $("stats-summary").textContent = `${totals.scored} scored, ${totals.flagged} flagged, ${totals.reviewed} ` +
    `reviewed: ${totals.false_alarms} false alarm(s), ${totals.misses} miss(es)`;
}

async function drawVersions() {
  const model = current.model.name;
  const body = await api(`models/${name()}/versions`);
  if (!still(model)) return;
  const live = current.model.version;
  const rows = [...body.versions].sort((a, b) => b.version - a.version).map((v) => {
    const button = element("button", { type: "button", className: "quiet", textContent: "Roll back",
                                       title: `make version ${v.version} current again`,
                                       disabled: v.version === live || !may("admin") });
    button.dataset.needs = "admin";
    button.classList.toggle("not-allowed", !may("admin"));
    button.addEventListener("click", () => rollback(v.version));
    const tr = element("tr", { "data-testid": "version-row" },
      element("td", { className: "num", textContent: `v${v.version}` }),
      element("td", { textContent: formatTime(v.time) }),
      element("td", { className: "num", textContent: String(v.references ?? "") }),
      element("td", { textContent: v.by || "" }),
      element("td", { textContent: v.action + (v.source_version ? ` to v${v.source_version}` : "") }),
      element("td", {}, v.version === live ? element("span", { className: "tag good", textContent: "live" }) : button));
    tr.dataset.version = String(v.version);
    return tr;
  });
  $("version-rows").replaceChildren(...rows);
}

async function rollback(version) {
  if (!confirm(`Roll "${current.model.name}" back to version ${version}? Inspections keep the version that scored them.`)) return;
  try {
    await postJson(`models/${name()}/rollback`, { version });
    await reloadModel();
  } catch (error) { showError(`rolling back to version ${version}: ${error.message}`); }
}

// Inspections added from this page, by model: the API does not say which reviewed-good images a
// version already took, so the page at least never offers the same ones twice in one visit.
const added = new Map();

async function countReviewedGood() {
  const model = current.model.name, done = added.get(model) || new Set();
  const good = (await inspections({ verdict: "good" }, HISTOGRAM_LIMIT)).filter((r) => !done.has(r.id));
  if (!still(model)) return;
  $("teach").dataset.ids = JSON.stringify(good.map((r) => r.id));
  $("teach-count").textContent = good.length
    ? `${good.length} inspection(s) of this model reviewed good` + (done.size ? " since the last addition" : "") +
      ` (${good.filter((r) => r.pred_label).length} of them false alarms).`
    : `No inspection of this model reviewed good${done.size ? " since the last addition" : " yet"}.`;
  $("teach").disabled = !good.length || !may("admin");
}

async function teach() {
  const ids = JSON.parse($("teach").dataset.ids || "[]");
  if (!ids.length || !confirm(`Add ${ids.length} reviewed-good image(s) to the references of "${current.model.name}"?`)) return;
  $("teach").disabled = true;
  $("teach-status").textContent = `adding ${ids.length} image(s)...`;
  try {
    const summary = await postJson(`models/${name()}/references`, { inspection_ids: ids });
    added.set(summary.name, new Set([...(added.get(summary.name) || []), ...ids]));
    $("teach-status").textContent = `now ${summary.references} reference image(s)` +
      (summary.version !== undefined ? `, version ${summary.version}` : "");
    await reloadModel();
  } catch (error) {
    $("teach-status").textContent = "";
    showError(`adding references: ${error.message}`);
    $("teach").disabled = false;
  }
}

/** Redraw everything for the chosen model (when its view is shown). */
export async function refreshTrends() {
  $("trends-empty").hidden = Boolean(current.model);
  $("trends").hidden = !current.model;
  if (!current.model || $("model-view").hidden) return;
  $("trends-model").textContent = `${current.model.name}, version ${current.model.version ?? "?"}`;
  const steps = [drawPlots(), drawVersions(), countReviewedGood()];
  for (const [step, what] of steps.map((s, i) => [s, ["plots", "versions", "reviewed images"][i]])) {
    try { await step; } catch (error) { showError(`${what} of ${current.model.name}: ${error.message}`); }
  }
}

export function wireTrends() {
  onModelChange(refreshTrends);
  $("stats-bucket").addEventListener("change", () => drawPlots().catch((e) => showError(e.message)));
  $("teach").addEventListener("click", teach);
}
