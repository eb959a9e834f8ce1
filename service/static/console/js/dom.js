// Building the page from data: every text a person typed goes in as textContent, never as markup.

/** An element with attributes, properties (`on*` handlers, `dataset`, `value`, …) and children (text or nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "class") node.className = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace every child of `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** USD from a decimal string: cents for a dollar amount, two significant digits below a cent. */
export function usd(value) {
  if (value === null || value === undefined) return "no limit";
  const amount = Number(value);
  if (amount === 0) return "$0.00";
  if (Math.abs(amount) >= 0.01) return "$" + amount.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  return "$" + amount.toPrecision(2).replace(/0+$/, "");
}

/** A unix time as `2026-12-01 21:40` (UTC), or a dash. */
export function when(seconds) {
  if (!seconds) return "—";
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

export function number(value) {
  return Number(value || 0).toLocaleString("en-US");
}

/** A labelled form field. */
export function field(label, input, hint) {
  return el("label", {class: "field"}, el("span", {class: "label"}, label), input, hint ? el("small", {}, hint) : null);
}

export function input(attrs) {
  return el("input", {type: "text", autocomplete: "off", ...attrs});
}

/** A table with a header row; `rows` are [id, [cells…]] pairs, each row marked with its object's id. */
export function table(testid, headers, rows, empty = "Nothing here yet.") {
  const body = el("tbody");
  for (const [id, cells, classes] of rows) {
    body.append(el("tr", {dataset: {id}, class: classes || ""}, cells.map((cell) => el("td", {}, cell))));
  }
  if (!rows.length) body.append(el("tr", {class: "empty"}, el("td", {colspan: headers.length}, empty)));
  return el("div", {class: "table-wrap"}, el("table", {"data-testid": testid},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), body));
}

/** A small coloured label. */
export function badge(text, tone) {
  return el("span", {class: `badge ${tone}`}, text);
}

/** Comma-separated text as a list (empty: null). */
export function list(text) {
  const items = String(text || "").split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

/** A date field's value as ISO 8601 at midnight UTC (empty: null). */
export function day(value) {
  return value ? value + "T00:00:00Z" : null;
}
