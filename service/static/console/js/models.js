// The model catalog and its prices (USD per million tokens), with which enabled accounts serve each model.
import {all, api} from "./api.js";
import {badge, el, field, fill, input, number, table} from "./dom.js";
import {actionForm, dialog, toolbar} from "./widgets.js";

const PRICES = [["input_usd_per_mtok", "Input"], ["output_usd_per_mtok", "Output"],
                ["cached_input_usd_per_mtok", "Cached input"], ["cache_write_usd_per_mtok", "Cache write 5 m"],
                ["cache_write_1h_usd_per_mtok", "Cache write 1 h"]];

export async function modelsPage(view) {
  const [models, accounts] = await Promise.all([all("/v1/admin/models"), all("/v1/admin/accounts")]);
  const servedBy = {};
  for (const account of accounts.filter((a) => a.enabled)) {
    for (const name of new Set([...account.models, ...Object.keys(account.model_map)])) {
      (servedBy[name] = servedBy[name] || []).push(account.name);
    }
  }
  const rows = models.map((model) => [model.id, [
    el("div", {}, el("div", {class: "strong"}, model.id),
      model.display_name && model.display_name !== model.id ? el("small", {class: "muted"}, model.display_name) : null),
    ...PRICES.map(([name]) => price(model[name])),
    model.context_window ? number(model.context_window) : "—",
    model.max_output_tokens ? number(model.max_output_tokens) : "—",
    servedBy[model.id] ? el("div", {class: "chips"}, servedBy[model.id].map((a) => el("span", {class: "chip"}, a)))
      : badge("Unavailable", "grey"),
    el("div", {class: "actions"},
      el("button", {type: "button", class: "small", onclick: () => editModel(view, model)}, "Edit"),
      el("button", {type: "button", class: "small danger", onclick: async () => {
        if (!confirm(`Remove “${model.id}” from the catalog?`)) return;
        await api("DELETE", `/v1/admin/models/${encodeURIComponent(model.id)}`);
        modelsPage(view);
      }}, "Remove")),
  ], servedBy[model.id] ? "" : "dim"]);
  fill(view, toolbar("Models and prices", el("span", {class: "muted small"}, "USD per million tokens")),
    addForm(view),
    table("models-table", ["Model", ...PRICES.map(([, label]) => label), "Context", "Max output", "Served by", ""], rows,
          "The catalog is empty."));
}

function price(value) {
  if (value === undefined) return el("span", {class: "muted"}, "—");
  if (value === null) return el("span", {class: "muted", title: "derived from the input price"}, "default");
  return "$" + String(Number(value));
}

function modelFields(model = {}) {
  const fields = {
    id: input({value: model.id || "", "data-testid": "model-id", placeholder: "gpt-5.4"}),
    display_name: input({value: model.display_name || ""}),
    context_window: input({value: model.context_window || "", inputmode: "numeric"}),
    max_output_tokens: input({value: model.max_output_tokens || "", inputmode: "numeric"}),
  };
  for (const [name] of PRICES) {
    const value = model[name];
    fields[name] = input({value: value === null || value === undefined ? "" : String(Number(value)), inputmode: "decimal",
                          "data-testid": `model-${name}`});
  }
  return fields;
}

function modelBody(fields, original = {}) {
  const body = {display_name: fields.display_name.value.trim() || undefined};
  for (const name of ["context_window", "max_output_tokens"]) {
    body[name] = fields[name].value ? Number(fields[name].value) : null;
  }
  for (const [name] of PRICES) {
    const value = fields[name].value.trim();
    // a price the gateway does not know yet is not sent; an optional one cleared goes back to its default
    if (value) body[name] = value;
    else if (original[name] !== undefined && original[name] !== null && name !== "input_usd_per_mtok"
             && name !== "output_usd_per_mtok") body[name] = null;
  }
  return body;
}

function formFields(fields, withId) {
  return [withId ? field("Model id", fields.id) : null, field("Display name", fields.display_name),
          ...PRICES.map(([name, label]) => field(`${label} (USD / M)`, fields[name])),
          field("Context window", fields.context_window), field("Max output tokens", fields.max_output_tokens)]
    .filter(Boolean);
}

function addForm(view) {
  const fields = modelFields();
  return el("details", {class: "card"}, el("summary", {}, "Add a model"),
    actionForm({class: "form-grid"}, async () => {
      await api("POST", "/v1/admin/models", {id: fields.id.value.trim(), ...modelBody(fields)});
      modelsPage(view);
    }, formFields(fields, true), ["Add model", "create-model"]));
}

function editModel(view, model) {
  const fields = modelFields(model);
  dialog(`Edit “${model.id}”`, formFields(fields, false), async () => {
    await api("PATCH", `/v1/admin/models/${encodeURIComponent(model.id)}`, modelBody(fields, model));
    modelsPage(view);
  });
}
