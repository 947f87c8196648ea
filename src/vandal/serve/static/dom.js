// Small DOM helpers shared by the page's modules (no framework).
export const $ = (id) => document.getElementById(id);

/** element("li", {className: "x", textContent: "y"}, child, ...) */
export function element(tag, properties = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(properties)) {
    if (key.startsWith("data-") || key === "title" || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

export function showError(message) {
  $("error").appendChild(element("li", { textContent: message }));
}

export function clearErrors() { $("error").replaceChildren(); }

export function formatTime(iso) {
  const time = new Date(iso);
  if (Number.isNaN(time.getTime())) return String(iso);
  return time.toLocaleString([], { year: time.getFullYear() === new Date().getFullYear() ? undefined : "numeric",
                                   month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export function csvField(value) {
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Make the browser save ``blob`` as ``name``. */
export function saveBlob(blob, name) {
  const link = element("a", { href: URL.createObjectURL(blob), download: name });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}
