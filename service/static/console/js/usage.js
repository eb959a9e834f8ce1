// Usage: spend by day, model, key and account as charts, and the request log with filters, paging and CSV.
import {all, api, query} from "./api.js";
import {badge, el, field, fill, input, number, table, usd, when} from "./dom.js";
import {chart, toolbar} from "./widgets.js";

const DAY = 86400;
const PAGE = 25;
const FILTERS = ["since", "until", "key_id", "model", "account", "status"];

export async function usagePage(view, session, params) {
  const admin = session.kind === "admin";
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) || ""]));
  if (!params.has("since")) filters.since = isoDay(Date.now() / 1000 - 29 * DAY);
  const api_filters = {since: filters.since ? filters.since + "T00:00:00Z" : null,
                       until: filters.until ? isoDay(Date.parse(filters.until + "T00:00:00Z") / 1000 + DAY) + "T00:00:00Z" : null,
                       model: filters.model};
  if (admin) Object.assign(api_filters, {key_id: filters.key_id, account: filters.account, status: filters.status});
  const summary = admin ? "/v1/admin/usage/summary" : "/v1/usage/summary";
  const groups = admin ? ["day", "model", "key_id", "account"] : ["day", "model"];
  const [summaries, keys, models, accounts] = await Promise.all([
    Promise.all(groups.map((group_by) => api("GET", summary + query({...api_filters, group_by})))),
    all(admin ? "/v1/admin/keys" : "/v1/keys"),
    admin ? all("/v1/admin/models") : Promise.resolve([]),
    admin ? all("/v1/admin/accounts") : Promise.resolve([]),
  ]);
  const [byDay, byModel, byKey, byAccount] = summaries.map((s) => s.data);
  const keyNames = Object.fromEntries(keys.map((key) => [key.id, key.name || key.id]));
  const log = el("div");
  fill(view,
    toolbar(admin ? "Usage" : "My usage", csvLink(admin, api_filters)),
    filterBar(admin, filters, keys, models, accounts, byModel),
    totals(byDay),
    el("div", {class: "charts"},
      chart("spend-by-day", "Spend by day", "bar", ...daySeries(byDay, filters)),
      chart("spend-by-model", "Spend by model", "doughnut", byModel.map((r) => r.model), byModel.map((r) => Number(r.cost_usd))),
      admin ? chart("spend-by-key", "Spend by key", "bar", byKey.slice(0, 10).map((r) => r.key_name || r.key_id),
                    byKey.slice(0, 10).map((r) => Number(r.cost_usd)), {horizontal: true}) : null,
      admin ? chart("spend-by-account", "Spend by account", "bar", byAccount.map((r) => r.account || "(none)"),
                    byAccount.map((r) => Number(r.cost_usd)), {horizontal: true}) : null),
    el("h2", {class: "section"}, "Requests"),
    log);
  await requestLog(log, admin, api_filters, keyNames, []);
}

function isoDay(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

function daySeries(rows, filters) {
  const spend = Object.fromEntries(rows.map((r) => [r.day, Number(r.cost_usd)]));
  const first = filters.since || (rows[0] && rows[0].day);
  const last = filters.until || isoDay(Date.now() / 1000);
  const labels = [];
  if (first) {
    for (let t = Date.parse(first + "T00:00:00Z") / 1000; isoDay(t) <= last && labels.length < 400; t += DAY) labels.push(isoDay(t));
  }
  return [labels.map((d) => d.slice(5)), labels.map((d) => spend[d] || 0)];
}

function totals(byDay) {
  const sum = (name) => byDay.reduce((total, row) => total + Number(row[name] || 0), 0);
  const stat = (label, value) => el("div", {class: "stat"}, el("span", {class: "label"}, label), el("strong", {}, value));
  return el("div", {class: "stats"},
    stat("Spend", usd(sum("cost_usd"))), stat("Requests", number(sum("requests"))),
    stat("Input tokens", number(sum("input_tokens"))), stat("Output tokens", number(sum("output_tokens"))),
    stat("Cached tokens", number(sum("cached_tokens"))));
}

function select(name, value, options, testid) {
  return el("select", {name, "data-testid": testid}, el("option", {value: ""}, "all"),
    options.map(([v, label]) => el("option", {value: v, selected: v === value}, label)));
}

function filterBar(admin, filters, keys, models, accounts, byModel) {
  const modelNames = [...new Set([...models.map((m) => m.id), ...byModel.map((r) => r.model)])].sort();
  const controls = {
    since: input({type: "date", name: "since", value: filters.since, "data-testid": "filter-since"}),
    until: input({type: "date", name: "until", value: filters.until, "data-testid": "filter-until"}),
    model: select("model", filters.model, modelNames.map((m) => [m, m]), "filter-model"),
  };
  if (admin) {
    controls.key_id = select("key_id", filters.key_id, keys.map((k) => [k.id, k.name || k.id]), "filter-key");
    controls.account = select("account", filters.account, accounts.map((a) => [a.name, a.name]), "filter-account");
    controls.status = select("status", filters.status, [["ok", "succeeded"], ["error", "failed"]], "filter-status");
  }
  const apply = (event) => {
    event.preventDefault();
    const chosen = Object.fromEntries(Object.entries(controls).map(([name, control]) => [name, control.value]));
    location.hash = "#/usage?" + new URLSearchParams(chosen).toString();
  };
  return el("form", {class: "card filters", onsubmit: apply},
    field("From", controls.since), field("Through", controls.until),
    admin ? field("Key", controls.key_id) : null, field("Model", controls.model),
    admin ? field("Account", controls.account) : null, admin ? field("Status", controls.status) : null,
    el("div", {class: "form-end"}, el("button", {type: "submit", class: "primary", "data-testid": "apply-filters"}, "Apply")));
}

function csvLink(admin, filters) {
  if (!admin) return null;
  return el("a", {class: "button secondary", href: "/v1/admin/usage" + query({...filters, format: "csv"}),
                  download: "usage.csv", "data-testid": "export-csv"}, "Export CSV");
}

// One page of the log; `cursors` holds the `after` of every page before this one (the first has none).
async function requestLog(box, admin, filters, keyNames, cursors) {
  const after = cursors[cursors.length - 1] || null;
  const path = (admin ? "/v1/admin/usage" : "/v1/usage/requests") + query({...filters, limit: PAGE, after});
  const page = await api("GET", path);
  const rows = page.data.map((row) => [row.id, [
    when(row.created_at),
    el("span", {title: row.key_id}, admin ? row.key_name || row.key_id : keyNames[row.key_id] || row.key_id || "—"),
    row.model, row.account || "—", el("code", {class: "muted"}, row.endpoint),
    badge(String(row.status_code), row.status_code < 400 ? "green" : row.status_code < 500 ? "amber" : "red"),
    number(row.input_tokens), number(row.output_tokens), number(row.cached_tokens), usd(row.cost_usd),
    `${number(row.latency_ms)} ms`,
  ]]);
  const newer = el("button", {type: "button", class: "small", disabled: !cursors.length, "data-testid": "page-newer",
    onclick: () => requestLog(box, admin, filters, keyNames, cursors.slice(0, -1))}, "← Newer");
  const older = el("button", {type: "button", class: "small", disabled: !page.has_more, "data-testid": "page-older",
    onclick: () => requestLog(box, admin, filters, keyNames, [...cursors, page.last_id])}, "Older →");
  fill(box,
    table("requests-table", ["Time (UTC)", "Key", "Model", "Account", "Endpoint", "Status", "In", "Out", "Cached", "Cost",
                             "Latency"], rows, "No request in this period."),
    el("div", {class: "pager"}, newer, el("span", {class: "muted"}, `Page ${cursors.length + 1}`), older));
}
