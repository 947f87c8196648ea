"use strict";
// A plain rendering of /openapi.json (Swagger UI would need scripts from a CDN; this works offline).
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text) e.textContent = text; if (cls) e.className = cls; return e; };

function schemaName(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map(schemaName).join(" | ");
  if (schema.type === "array") return `array of ${schemaName(schema.items)}`;
  return schema.type || "";
}

function parameters(op, doc) {
  const rows = (op.parameters || []).map((p) => [p.name, p.in, schemaName(p.schema), p.description || ""]);
  const body = op.requestBody && op.requestBody.content;
  for (const [kind, content] of Object.entries(body || {})) {
    let schema = content.schema || {};
    if (schema.$ref) schema = doc.components.schemas[schemaName(schema)] || {};
    for (const [name, field] of Object.entries(schema.properties || {})) {
      const type = field.type === "array" ? "files (repeated)" : schemaName(field) || "file";
      rows.push([name, kind, type, field.description || ""]);
    }
  }
  if (!rows.length) return null;
  const table = el("table");
  const head = table.insertRow();
  for (const h of ["name", "in", "type", "description"]) head.appendChild(el("th", h));
  for (const row of rows) { const tr = table.insertRow(); for (const cell of row) tr.insertCell().textContent = cell; }
  return table;
}

fetch("openapi.json").then((r) => r.json()).then((doc) => {
  const intro = document.getElementById("intro");
  intro.appendChild(el("h2", `${doc.info.title} ${doc.info.version}`));
  intro.appendChild(el("pre", doc.info.description || ""));
  const list = document.getElementById("operations");
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const box = el("section", "", "op");
      const title = el("h3");
      title.appendChild(el("span", method.toUpperCase(), `method ${method.toUpperCase()}`));
      title.appendChild(el("code", path));
      box.appendChild(title);
      box.appendChild(el("p", op.summary || ""));
      const table = parameters(op, doc);
      if (table) box.appendChild(table);
      const codes = Object.entries(op.responses || {}).map(([code, r]) => `${code}: ${r.description || ""}`);
      box.appendChild(el("p", `Responses: ${codes.join("; ")}`, "muted"));
      list.appendChild(box);
    }
  }
}).catch((error) => { document.getElementById("intro").textContent = `cannot load openapi.json: ${error}`; });
