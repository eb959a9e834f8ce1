// The console's one way to the gateway: its own JSON API, same origin, the session cookie and the CSRF token.

let csrfToken = null;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function setCsrf(token) {
  csrfToken = token;
}

/** Call the gateway's API: the JSON answer, or an ApiError carrying the error envelope's message. */
export async function api(method, path, body) {
  const headers = {Accept: "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (data.error && data.error.message) || `The gateway answered ${response.status}.`;
    throw new ApiError(response.status, message);
  }
  return data;
}

/** A query string from the non-empty values of `params`. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? "?" + text : "";
}

/** Every page of a list route (the console's lists of keys, accounts, models and users are short). */
export async function all(path, limit = 200) {
  const items = [];
  let after = null;
  for (;;) {
    const more = query({limit, after});
    const page = await api("GET", path.includes("?") ? path + "&" + more.slice(1) : path + more);
    items.push(...page.data);
    if (!page.has_more || !page.data.length) return items;
    after = page.last_id || page.data[page.data.length - 1].id;
  }
}
