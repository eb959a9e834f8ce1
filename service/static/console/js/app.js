// The console: sign-in, the navigation, and one page per resource (hash routes: #/keys, #/usage, …).
import {api, setCsrf} from "./api.js";
import {el, fill} from "./dom.js";
import {accountsPage} from "./accounts.js";
import {keysPage} from "./keys.js";
import {modelsPage} from "./models.js";
import {usagePage} from "./usage.js";
import {usersPage} from "./users.js";

const ADMIN_PAGES = {keys: ["Keys", keysPage], accounts: ["Accounts", accountsPage], models: ["Models", modelsPage],
                     users: ["Users", usersPage], usage: ["Usage", usagePage]};
const USER_PAGES = {keys: ["Keys", keysPage], usage: ["Usage", usagePage]};

const $ = (id) => document.getElementById(id);
let session = null;

function pages() {
  return session.kind === "admin" ? ADMIN_PAGES : USER_PAGES;
}

function route() {
  const [name, search] = location.hash.replace(/^#\/?/, "").split("?");
  return {name: pages()[name] ? name : "keys", params: new URLSearchParams(search || "")};
}

async function render() {
  if (!session) return;
  const {name, params} = route();
  for (const link of $("nav").children) link.classList.toggle("active", link.dataset.page === name);
  const view = $("view");
  fill(view, el("p", {class: "muted loading"}, "Loading…"));
  try {
    await pages()[name][1](view, session, params);
  } catch (error) {
    if (error.status === 401) return signedOut("Your session has ended; sign in again.");
    fill(view, el("p", {class: "message error"}, error.message));
  }
}

function signedIn(answer) {
  session = answer;
  setCsrf(answer.csrf_token);
  $("sign-in-view").hidden = true;
  $("view").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = answer.kind === "admin" ? "Administrator" : answer.email;
  fill($("nav"), Object.entries(pages()).map(([page, [label]]) =>
    el("a", {href: `#/${page}`, dataset: {page}}, label)));
  render();
}

function signedOut(message) {
  session = null;
  setCsrf(null);
  $("view").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("sign-in-view").hidden = false;
  $("sign-in-form").reset();
  say(message || "", message ? "info" : "");
}

function say(text, tone) {
  const message = $("sign-in-message");
  message.textContent = text;
  message.className = `message ${tone || ""}`;
}

async function signIn(event) {
  event.preventDefault();
  const token = $("admin-token").value.trim();
  const email = $("email").value.trim();
  const code = $("code").value.trim();
  const body = token ? {admin_token: token} : {email, code};
  if (!token && !(email && code)) return say("Paste the admin token, or ask for a code by email and type it.", "error");
  try {
    signedIn(await api("POST", "/v1/console/session", body));
  } catch (error) {
    say(error.message, "error");
  }
}

async function sendCode() {
  const email = $("email").value.trim();
  if (!email) return say("Type your email first.", "error");
  try {
    await api("POST", "/v1/auth/email/send", {email});
    say(`A code is on its way to ${email}.`, "ok");
    $("code").focus();
  } catch (error) {
    say(error.message, "error");
  }
}

async function signOut() {
  try {
    await api("DELETE", "/v1/console/session");
  } finally {
    signedOut("Signed out.");
  }
}

async function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("send-code").addEventListener("click", sendCode);
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", render);
  try {
    signedIn(await api("GET", "/v1/console/session"));
  } catch {
    signedOut();
  }
}

start();
