// Keys: an admin's every key (create, edit, disable, revoke, search), or a user's own keys within their allowance.
import {all, api, query} from "./api.js";
import {badge, day, el, field, fill, input, list, table, usd, when} from "./dom.js";
import {actionForm, dialog, notice, spendBar, toolbar} from "./widgets.js";

export async function keysPage(view, session, params) {
  const admin = session.kind === "admin";
  const base = admin ? "/v1/admin/keys" : "/v1/keys";
  const search = params.get("search") || "";
  const keys = await all(base + (admin && search ? query({search}) : ""));
  const created = el("div");
  const form = admin ? adminForm(base, created) : userForm(base, created);
  const searchBox = input({type: "search", placeholder: "Search name, id or owner", value: search,
                           "data-testid": "key-search", class: "search"});
  searchBox.addEventListener("change", () => { location.hash = "#/keys" + query({search: searchBox.value.trim()}); });
  const rows = keys.map((key) => [key.id, [
    el("div", {class: "strong"}, key.name || "(unnamed)"),
    el("code", {class: "muted"}, key.redacted_value),
    admin ? key.email || "—" : null,
    spendBar(key.used_usd, key.budget_usd),
    admin ? (key.models ? key.models.join(", ") : "any") : null,
    admin ? (key.rpm ? String(key.rpm) : "—") : null,
    when(key.expires_at),
    when(key.last_used_at),
    keyStatus(key),
    actions(base, key, admin),
  ].filter((cell) => cell !== null), key.disabled ? "dim" : ""]);
  const headers = ["Name", "Key", admin && "Owner", "Spend", admin && "Models", admin && "RPM", "Expires",
                   "Last used", "Status", ""].filter((h) => h !== false);
  fill(view,
    toolbar(admin ? "Keys" : "My keys", admin ? searchBox : null),
    admin ? null : await allowance(),
    form, created,
    table("keys-table", headers, rows, search ? "No key matches." : "No keys yet: create the first one above."));
}

function keyStatus(key) {
  if (key.disabled) return badge("Disabled", "grey");
  if (key.expires_at && key.expires_at * 1000 < Date.now()) return badge("Expired", "red");
  if (key.budget_usd !== null && Number(key.used_usd) >= Number(key.budget_usd)) return badge("Exhausted", "amber");
  return badge("Active", "green");
}

function actions(base, key, admin) {
  const revoke = el("button", {type: "button", class: "danger small", onclick: async () => {
    if (!confirm(`Revoke the key “${key.name || key.id}”? It stops working at once.`)) return;
    await api("DELETE", `${base}/${key.id}`);
    location.reload();
  }}, "Revoke");
  if (!admin) return el("div", {class: "actions"}, revoke);
  return el("div", {class: "actions"},
    el("a", {class: "button small ghost", href: `#/usage?key_id=${encodeURIComponent(key.id)}`}, "Requests"),
    el("button", {type: "button", class: "small", onclick: () => editKey(base, key)}, "Edit"),
    el("button", {type: "button", class: "small", onclick: async () => {
      await api("PATCH", `${base}/${key.id}`, {disabled: !key.disabled});
      location.reload();
    }}, key.disabled ? "Enable" : "Disable"),
    revoke);
}

function keyFields(key = {}) {
  const expires = key.expires_at ? new Date(key.expires_at * 1000).toISOString().slice(0, 10) : "";
  return {
    name: input({value: key.name || "", "data-testid": "key-name", maxlength: 200, placeholder: "ci-runner"}),
    budget: input({value: key.budget_usd ? String(Number(key.budget_usd)) : "", "data-testid": "key-budget",
                   inputmode: "decimal", placeholder: "no limit"}),
    models: input({value: key.models ? key.models.join(", ") : "", "data-testid": "key-models", placeholder: "any, or a, b, c"}),
    rpm: input({value: key.rpm || "", "data-testid": "key-rpm", inputmode: "numeric", placeholder: "no limit"}),
    expires: input({type: "date", value: expires, "data-testid": "key-expires"}),
  };
}

function keyBody(fields) {
  return {name: fields.name.value.trim(), budget_usd: fields.budget.value.trim() || null,
          models: list(fields.models.value), rpm: fields.rpm.value ? Number(fields.rpm.value) : null,
          expires_at: day(fields.expires.value)};
}

function adminForm(base, created) {
  const fields = keyFields();
  const email = input({type: "email", "data-testid": "key-email", placeholder: "nobody"});
  return createForm(base, created, () => ({...keyBody(fields), email: email.value.trim() || null}),
    [field("Name", fields.name), field("Budget (USD)", fields.budget), field("Models", fields.models),
     field("Requests / minute", fields.rpm), field("Expires", fields.expires), field("Owner email", email)]);
}

function userForm(base, created) {
  const name = input({"data-testid": "key-name", maxlength: 200, placeholder: "laptop"});
  const budget = input({"data-testid": "key-budget", inputmode: "decimal", placeholder: "what the allowance has left"});
  return createForm(base, created, () => {
    const body = {name: name.value.trim()};
    if (budget.value.trim()) body.budget_usd = budget.value.trim();
    return body;
  }, [field("Name", name), field("Budget (USD)", budget)]);
}

// The "New key" form: POST `body()`, show the key once, refresh the table.
function createForm(base, created, body, fields) {
  return actionForm({class: "card form-grid"}, async (form) => {
    showNewKey(created, await api("POST", base, body()));
    form.reset();
    refreshTable(base);
  }, [el("h2", {}, "New key"), ...fields], ["Create key", "create-key"]);
}

async function allowance() {
  const usage = await api("GET", "/v1/usage");
  const keys = usage.data || [];
  const used = keys.reduce((sum, key) => sum + Number(key.budget.used_usd), 0);
  return el("div", {class: "stats"},
    el("div", {class: "stat"}, el("span", {class: "label"}, "Live keys"), el("strong", {}, String(keys.length))),
    el("div", {class: "stat"}, el("span", {class: "label"}, "Spent on them"), el("strong", {}, usd(used))));
}

// The new key, shown this once: the gateway keeps only its hash.
function showNewKey(created, key) {
  const value = el("code", {"data-testid": "new-key", class: "secret"}, key.key);
  fill(created, notice("ok",
    el("div", {}, el("strong", {}, `Key “${key.name || key.id}” created. `),
      "Copy it now: it is shown this once and cannot be read again."),
    el("div", {class: "secret-row"}, value,
      el("button", {type: "button", class: "small", onclick: () => navigator.clipboard.writeText(key.key)}, "Copy"),
      el("button", {type: "button", class: "small ghost", onclick: () => fill(created)}, "Done"))));
}

// Reload the table only, so the once-shown key stays on screen.
async function refreshTable(base) {
  const old = document.querySelector('[data-testid="keys-table"]');
  const view = document.createElement("div");
  await keysPage(view, {kind: base.startsWith("/v1/admin") ? "admin" : "user"}, new URLSearchParams());
  old.closest(".table-wrap").replaceWith(view.querySelector(".table-wrap"));
  const stats = document.querySelector(".stats");
  const fresh = view.querySelector(".stats");
  if (stats && fresh) stats.replaceWith(fresh);
}

function editKey(base, key) {
  const fields = keyFields(key);
  dialog(`Edit key “${key.name || key.id}”`,
    [field("Name", fields.name), field("Budget (USD)", fields.budget, "empty: no limit"),
     field("Models", fields.models, "comma-separated; empty: any"), field("Requests / minute", fields.rpm),
     field("Expires", fields.expires)],
    async () => {
      await api("PATCH", `${base}/${key.id}`, keyBody(fields));
      location.reload();
    });
}
