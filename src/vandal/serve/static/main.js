// vandal inspection page: plain JavaScript modules, no build step, no network beyond this server,
// nothing inline (it runs under a strict Content-Security-Policy). Views: score images, inspections
// (with the review queue), the model's trends and versions.
import { may, signIn, wireSignOut } from "./auth.js";
import { api } from "./api.js";
import { $, showError } from "./dom.js";
import { list, loadInspections, reviewed, select, wireInspections } from "./inspections.js";
import { loadModels, wireModels } from "./models.js";
import { wireReview } from "./review.js";
import { onScored, wireScoring } from "./score.js";
import { refreshTrends, wireTrends } from "./trends.js";

const VIEWS = ["score", "inspections", "model"];

function showView(view) {
  for (const name of VIEWS) {
    $(`${name}-view`).hidden = name !== view;
    $(`tab-${name}`).setAttribute("aria-selected", String(name === view));
  }
  if (view === "inspections") loadInspections();
  if (view === "model") refreshTrends();
}

function start() {
  wireSignOut();
  api("health").then((body) => { $("version").textContent = `v${body.version}`; }).catch(() => {});
  for (const name of VIEWS) $(`tab-${name}`).addEventListener("click", () => showView(name));
  wireModels();
  wireScoring();
  wireInspections();
  wireReview({
    next: () => select(list.index + 1),
    previous: () => select(list.index - 1),
    reviewed,
  });
  wireTrends();
  onScored(() => { if (!$("inspections-view").hidden) loadInspections(); });
  signIn(async () => {
    await loadModels().catch((error) => showError(`listing models: ${error.message}`));
    if (!may("inspector")) showView("inspections");  // a viewer cannot score: start where it can look
  });
}

start();
