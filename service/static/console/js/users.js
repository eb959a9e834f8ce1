// Users' allowances: what each email may put on keys of its own (a lifetime total) and how many live keys.
import {all, api} from "./api.js";
import {badge, el, field, fill, input, table} from "./dom.js";
import {actionForm, dialog, notice, spendBar, toolbar} from "./widgets.js";

export async function usersPage(view) {
  let users;
  try {
    users = await all("/v1/admin/users");
  } catch (error) {
    if (error.status !== 404) throw error;
    fill(view, toolbar("Users"), notice("info", "This gateway has no users' allowances yet (no /v1/admin/users)."));
    return;
  }
  const rows = users.map((user) => [user.email, [
    el("div", {class: "strong"}, user.email),
    spendBar(user.used_usd, user.budget_usd),
    `${user.live_keys ?? "?"} of ${user.max_keys}`,
    user.source === "self_service" ? badge("Self-service", "grey") : badge("Set by admin", "green"),
    el("div", {class: "actions"},
      el("a", {class: "button small ghost", href: "#/keys?search=" + encodeURIComponent(user.email)}, "Their keys"),
      el("button", {type: "button", class: "small", onclick: () => editUser(view, user)}, "Edit"),
      el("button", {type: "button", class: "small danger", onclick: async () => {
        if (!confirm(`Remove the allowance of ${user.email}? Their keys keep working.`)) return;
        await api("DELETE", `/v1/admin/users/${encodeURIComponent(user.email)}`);
        usersPage(view);
      }}, "Remove")),
  ]]);
  fill(view, toolbar("Users"), addForm(view),
    table("users-table", ["Email", "Put on keys (lifetime)", "Live keys", "Source", ""], rows, "No allowance set yet."));
}

function userFields(user = {}) {
  return {
    email: input({type: "email", value: user.email || "", "data-testid": "user-email", placeholder: "ada@example.com"}),
    budget: input({value: user.budget_usd ? String(Number(user.budget_usd)) : "", inputmode: "decimal",
                   "data-testid": "user-budget", placeholder: "25"}),
    maxKeys: input({value: user.max_keys ?? "", inputmode: "numeric", "data-testid": "user-max-keys", placeholder: "5"}),
  };
}

function userBody(f) {
  const body = {budget_usd: f.budget.value.trim() || "0"};
  if (f.maxKeys.value.trim()) body.max_keys = Number(f.maxKeys.value);
  return body;
}

function addForm(view) {
  const f = userFields();
  return actionForm({class: "card form-grid"}, async () => {
    await api("POST", "/v1/admin/users", {email: f.email.value.trim(), ...userBody(f)});
    usersPage(view);
  }, [el("h2", {}, "Give an allowance"), field("Email", f.email),
      field("Allowance (USD)", f.budget, "lifetime total over the user's keys"), field("Max live keys", f.maxKeys)],
  ["Save allowance", "create-user"]);
}

function editUser(view, user) {
  const f = userFields(user);
  f.email.disabled = true;
  dialog(`Allowance of ${user.email}`, [field("Email", f.email), field("Allowance (USD)", f.budget),
                                        field("Max live keys", f.maxKeys)], async () => {
    await api("PATCH", `/v1/admin/users/${encodeURIComponent(user.email)}`, userBody(f));
    usersPage(view);
  });
}
