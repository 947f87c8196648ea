// Charts as inline SVG, drawn from plain numbers (no library): columns over time buckets, a score
// histogram with the threshold line, stacked columns of review outcomes. Colours come from CSS
// classes (style.css), so nothing here needs inline styles.
const NS = "http://www.w3.org/2000/svg";
const WIDTH = 440, HEIGHT = 220;
const PAD = { left: 46, right: 14, top: 22, bottom: 42 };
const MOST_BAR = 56;  // the widest column, so one bucket is not a wall

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

const text = (x, y, content, className = "axis-label", anchor = "middle") =>
  svg("text", { x, y, class: className, "text-anchor": anchor }, content);

function frame(title) {
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "plot", role: "img", "aria-label": title });
  root.append(svg("title", {}, title));
  return root;
}

const plotWidth = WIDTH - PAD.left - PAD.right;
const plotHeight = HEIGHT - PAD.top - PAD.bottom;
const yOf = (fraction) => PAD.top + plotHeight * (1 - fraction);

/** A round top for an axis of counts (1, 2, 5 x 10^n steps) -> [top, step]. */
export function niceTop(largest, ticks = 4) {
  const raw = Math.max(largest, 1) / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= raw);
  return [Math.max(1, Math.ceil(largest / step)) * step, step];
}

/** Horizontal grid lines and labels every ``step`` from 0 to ``top`` (format: the label of a value). */
function yAxis(root, top, step, format) {
  for (let value = 0; value <= top + step / 1e6; value += step) {
    const y = yOf(value / top);
    root.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid" }));
    root.append(text(PAD.left - 6, y + 4, format(value), "axis-label", "end"));
  }
}

/** Up to ``most`` labels under the columns, evenly spread. */
function xLabels(root, labels, slot, most = 6) {
  const step = Math.max(1, Math.ceil(labels.length / most));
  labels.forEach((label, i) => {
    if (i % step === 0) root.append(text(PAD.left + slot * (i + 0.5), HEIGHT - PAD.bottom + 16, label));
  });
}

export function empty(title, message) {
  const root = frame(title);
  root.append(text(WIDTH / 2, HEIGHT / 2, message, "plot-empty"));
  return root;
}

const barWidth = (slot) => Math.min(slot * 0.7, MOST_BAR);
const percent = (value) => `${Math.round(value * 100)}%`;

/** Columns of a share (0..1) per bucket: [{label, share, hint}] -> <svg>. */
export function shareColumns(title, buckets) {
  if (!buckets.length) return empty(title, "nothing scored yet");
  const root = frame(title);
  const largest = Math.max(0.01, ...buckets.map((b) => b.share));
  const [top, step] = largest > 0.5 ? [1, 0.25] : niceTop(largest * 100).map((v) => v / 100);
  yAxis(root, top, step, percent);
  const slot = plotWidth / buckets.length;
  buckets.forEach((bucket, i) => {
    const height = plotHeight * (bucket.share / top);
    const bar = svg("rect", { x: PAD.left + slot * (i + 0.5) - barWidth(slot) / 2, y: yOf(0) - height, width: barWidth(slot),
                              height: Math.max(height, 0.5), class: "bar-flagged", "data-share": bucket.share });
    bar.append(svg("title", {}, `${bucket.label}: ${bucket.hint}`));
    root.append(bar);
  });
  xLabels(root, buckets.map((b) => b.label), slot);
  return root;
}

/** Histogram of scores with a vertical line at ``threshold`` (bins above it in the flagged colour).
 * The axis ends at ``ZOOM`` x the threshold, where decisions are made; higher scores fall in the last bin. */
const ZOOM = 4;

export function histogram(title, scores, threshold, most = 24) {
  const finite = scores.filter(Number.isFinite);
  if (!finite.length) return empty(title, "no scores yet");
  const root = frame(title);
  const largest = Math.max(...finite);
  const shown = Math.max(2 * threshold, Math.min(largest * 1.02, ZOOM * threshold));
  // Bins of a width that divides the threshold: each bin lies wholly on one side of the line.
  const width = threshold / Math.max(1, Math.round((most * threshold) / shown));
  const bins = Math.ceil(shown / width - 1e-9);
  const high = bins * width;
  const clipped = largest >= high;
  const counts = new Array(bins).fill(0);
  for (const score of finite) counts[Math.min(bins - 1, Math.max(0, Math.floor(score / width)))] += 1;
  const [top, step] = niceTop(Math.max(...counts));
  yAxis(root, top, step, String);
  const xOf = (value) => PAD.left + plotWidth * (value / high);
  counts.forEach((count, i) => {
    if (!count) return;
    const height = plotHeight * (count / top);
    const above = (i + 0.5) * width > threshold;  // bins start on the threshold, so the centre decides
    const bar = svg("rect", { x: xOf(i * width) + 1, y: yOf(0) - height, width: Math.max(1, xOf(width) - PAD.left - 2),
                              height, class: above ? "bar-flagged" : "bar-normal" });
    const range = clipped && i === bins - 1 ? `${(i * width).toFixed(2)} or more`
      : `${(i * width).toFixed(2)}-${((i + 1) * width).toFixed(2)}`;
    bar.append(svg("title", {}, `${count} with score ${range}`));
    root.append(bar);
  });
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    const label = (high * tick).toFixed(2) + (tick === 1 && clipped ? "+" : "");
    root.append(text(xOf(high * tick), HEIGHT - PAD.bottom + 16, label, "axis-label", tick === 1 ? "end" : "middle"));
  }
  const x = xOf(threshold);
  root.append(svg("line", { x1: x, x2: x, y1: PAD.top - 6, y2: yOf(0), class: "threshold-line",
                            "data-testid": "threshold-line", "data-threshold": threshold }));
  const right = x < WIDTH * 0.7;  // the label beside the line, on the side with room
  root.append(text(right ? x + 5 : x - 5, PAD.top - 9, `threshold ${threshold}`, "threshold-label",
                   right ? "start" : "end"));
  root.append(text(PAD.left + plotWidth / 2, HEIGHT - 8, "pred_score", "axis-title"));
  return root;
}

/** Stacked columns per bucket: buckets [{label, values: {key: count}}], series [{key, name, legend, className}]. */
export function stackedColumns(title, buckets, series) {
  const totals = buckets.map((b) => series.reduce((sum, s) => sum + (b.values[s.key] || 0), 0));
  if (!totals.some((t) => t > 0)) return empty(title, "no reviews yet");
  const root = frame(title);
  const [top, step] = niceTop(Math.max(...totals));
  yAxis(root, top, step, String);
  const slot = plotWidth / buckets.length;
  buckets.forEach((bucket, i) => {
    let base = 0;
    for (const s of series) {
      const count = bucket.values[s.key] || 0;
      if (!count) continue;
      const y = yOf((base + count) / top);
      const rect = svg("rect", { x: PAD.left + slot * (i + 0.5) - barWidth(slot) / 2, y, width: barWidth(slot),
                                 height: yOf(base / top) - y, class: s.className });
      rect.append(svg("title", {}, `${bucket.label}: ${count} ${s.name}`));
      root.append(rect);
      base += count;
    }
  });
  xLabels(root, buckets.map((b) => b.label), slot);
  let x = PAD.left;
  for (const s of series) {  // the legend, in one row under the axis
    root.append(svg("rect", { x, y: HEIGHT - 14, width: 10, height: 10, class: s.className }));
    root.append(text(x + 14, HEIGHT - 5, s.legend, "legend", "start"));
    x += 24 + s.legend.length * 6.6;
  }
  return root;
}
