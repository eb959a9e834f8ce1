// Upstream accounts: add, edit, enable/disable, and their health: last error, cooldown, capacity windows.
import {all, api} from "./api.js";
import {badge, el, field, fill, input, list, number, table, usd, when} from "./dom.js";
import {actionForm, dialog, toolbar} from "./widgets.js";

export async function accountsPage(view) {
  const [accounts, capacity] = await Promise.all([all("/v1/admin/accounts"), api("GET", "/v1/admin/account_capacity")]);
  const windows = Object.fromEntries(capacity.data.map((item) => [item.id, item]));
  const refresh = el("button", {type: "button", class: "secondary", "data-testid": "refresh-accounts",
    onclick: async () => {
      refresh.disabled = true;
      refresh.textContent = "Probing…";
      await api("POST", "/v1/admin/account_capacity/refresh");
      accountsPage(view);
    }}, "Refresh health");
  const rows = accounts.map((account) => {
    const health = windows[account.id] || account;
    return [account.id, [
      el("div", {}, el("div", {class: "strong"}, account.name), el("small", {class: "muted"}, account.base_url || "built in")),
      el("div", {class: "nowrap"}, account.provider, el("span", {class: "muted small"}, ` · ${account.api}`)),
      modelsCell(account),
      String(account.weight),
      state(account, health),
      health.last_error ? el("span", {class: "error-text", title: health.last_error}, health.last_error) : "—",
      windowsCell(health.windows || []),
      when(health.last_checked_at),
      actions(view, account),
    ], account.enabled ? "" : "dim"];
  });
  fill(view, toolbar("Accounts", refresh), addForm(view),
    table("accounts-table", ["Account", "Provider", "Models", "Weight", "State", "Last error", "Capacity windows",
                             "Checked", ""], rows, "No upstream account: add one above."));
}

function state(account, health) {
  if (!account.enabled) return el("div", {}, badge("Disabled", "grey"), el("small", {class: "muted"}, "unavailable to clients"));
  if (health.cooldown_until && health.cooldown_until * 1000 > Date.now()) {
    return el("div", {}, badge("Cooling down", "amber"), el("small", {class: "muted"}, ` until ${when(health.cooldown_until)}`));
  }
  return health.healthy === false ? badge("Failing", "red") : badge("Healthy", "green");
}

function modelsCell(account) {
  const names = [...account.models, ...Object.keys(account.model_map).filter((m) => !account.models.includes(m))];
  return el("div", {class: "chips"}, names.length ? names.map((name) => el("span", {class: "chip"}, name)) : "—");
}

function windowsCell(windows) {
  return el("div", {class: "windows"}, windows.map((w) => {
    const label = w.window === "five_hour" ? "5 h" : "week";
    const parts = [`${usd(w.used_usd)}${w.limit_usd ? " / " + usd(w.limit_usd) : ""}`,
                   `${number(w.used_requests)}${w.limit_requests ? " / " + number(w.limit_requests) : ""} req`];
    return el("div", {class: w.exhausted ? "error-text" : ""}, el("span", {class: "muted"}, label + " "), parts.join(" · "));
  }));
}

function actions(view, account) {
  return el("div", {class: "actions"},
    el("button", {type: "button", class: "small", onclick: () => editAccount(view, account)}, "Edit"),
    el("button", {type: "button", class: "small", onclick: async () => {
      await api("PATCH", `/v1/admin/accounts/${account.id}`, {enabled: !account.enabled});
      accountsPage(view);
    }}, account.enabled ? "Disable" : "Enable"),
    el("button", {type: "button", class: "small danger", onclick: async () => {
      if (!confirm(`Remove the account “${account.name}”?`)) return;
      await api("DELETE", `/v1/admin/accounts/${account.id}`);
      accountsPage(view);
    }}, "Remove"));
}

function accountFields(account = {}) {
  const provider = el("select", {"data-testid": "account-provider"},
    ["openai", "anthropic", "echo"].map((p) => el("option", {value: p, selected: account.provider === p}, p)));
  const apiKind = el("select", {"data-testid": "account-api"},
    ["chat", "responses"].map((p) => el("option", {value: p, selected: account.api === p}, p)));
  return {
    name: input({value: account.name || "", "data-testid": "account-name", placeholder: "openai-team"}),
    provider, api: apiKind,
    baseUrl: input({value: account.base_url || "", "data-testid": "account-base-url", placeholder: "provider default"}),
    apiKey: input({type: "password", "data-testid": "account-api-key",
                   placeholder: account.api_key ? `set (${account.api_key}); empty keeps it` : "sk-…"}),
    models: input({value: (account.models || []).join(", "), "data-testid": "account-models", placeholder: "gpt-5.4, gpt-5.4-mini"}),
    weight: input({value: account.weight ?? 1, inputmode: "numeric", "data-testid": "account-weight"}),
    fiveHour: input({value: account.limits?.five_hour_usd ? Number(account.limits.five_hour_usd) : "", inputmode: "decimal",
                     placeholder: "no cap"}),
    weekly: input({value: account.limits?.weekly_usd ? Number(account.limits.weekly_usd) : "", inputmode: "decimal",
                   placeholder: "no cap"}),
  };
}

function accountBody(f, account = {}) {
  const limits = {...(account.limits || {}), five_hour_usd: f.fiveHour.value.trim() || null,
                  weekly_usd: f.weekly.value.trim() || null};
  const body = {name: f.name.value.trim(), provider: f.provider.value, api: f.api.value, models: list(f.models.value) || [],
                weight: Number(f.weight.value || 1), limits};
  if (f.baseUrl.value.trim()) body.base_url = f.baseUrl.value.trim();
  if (f.apiKey.value) body.api_key = f.apiKey.value;
  return body;
}

function formFields(f) {
  return [field("Name", f.name), field("Provider", f.provider), field("API", f.api, "how an OpenAI account is called"),
          field("Base URL", f.baseUrl), field("API key", f.apiKey, "write-only"), field("Models", f.models, "comma-separated"),
          field("Weight", f.weight), field("5-hour cap (USD)", f.fiveHour), field("Weekly cap (USD)", f.weekly)];
}

function addForm(view) {
  const f = accountFields();
  return el("details", {class: "card"}, el("summary", {}, "Add an account"),
    actionForm({class: "form-grid"}, async () => {
      await api("POST", "/v1/admin/accounts", accountBody(f));
      accountsPage(view);
    }, formFields(f), ["Add account", "create-account"]));
}

function editAccount(view, account) {
  const f = accountFields(account);
  dialog(`Edit account “${account.name}”`, formFields(f), async () => {
    await api("PATCH", `/v1/admin/accounts/${account.id}`, accountBody(f, account));
    accountsPage(view);
  });
}
