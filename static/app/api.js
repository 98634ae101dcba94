// VTP API client: keeps the access token, refreshes it silently before it expires, and
// turns the server's JSON error envelope into ApiError. The refresh token never reaches
// this script: the server keeps it in an HttpOnly cookie for the refresh route, and the
// X-VTP-Session header (which another site cannot send) asks for that and proves the
// request comes from these pages.
"use strict";

const STORE_KEY = "vtp.session";
const REFRESH_MARGIN_S = 60; // refresh this long before the access token expires
const SESSION_HEADER = { "X-VTP-Session": "cookie" };

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function loadSession() {
  try {
    const raw = localStorage.getItem(STORE_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function saveSession(session) {
  if (session) {
    localStorage.setItem(STORE_KEY, JSON.stringify(session));
  } else {
    localStorage.removeItem(STORE_KEY);
  }
  scheduleRefresh();
}

/** Keep a login/register/refresh reply (tokens, and the user when present). */
export function keepTokens(reply, user) {
  const now = Date.now();
  const old = loadSession() || {};
  saveSession({
    access_token: reply.access_token,
    access_expires_at: now + reply.expires_in * 1000,
    refresh_expires_at: now + reply.refresh_expires_in * 1000,
    user: user || reply.user || old.user || null,
  });
}

async function parseError(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    /* not JSON */
  }
  const err = body && body.error ? body.error : null;
  if (err) {
    return new ApiError(resp.status, err.code, err.message, err.details);
  }
  return new ApiError(resp.status, "http_" + resp.status, resp.statusText || "request failed", null);
}

/** A human sentence for an ApiError: the server's message, with the field errors. */
export function describeError(error) {
  if (!(error instanceof ApiError)) {
    return "The server could not be reached. Check your connection and try again.";
  }
  let text = error.message;
  if (Array.isArray(error.details) && error.details.length && error.code === "validation_error") {
    text = error.details.map((d) => (d.field ? `${d.field}: ${d.message}` : d.message)).join("; ");
  }
  return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
}

/**
 * @param {string} path
 * @param {{method?: string, body?: any, token?: string, session?: boolean}} options
 */
async function rawRequest(path, { method = "GET", body = undefined, token = undefined, session = false } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json", ...(session ? SESSION_HEADER : {}) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = "Bearer " + token;
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw await parseError(resp);
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

let refreshing = null;

/** Trade the refresh cookie for a new pair. One at a time, across tabs when possible. */
export function refreshTokens() {
  if (refreshing) return refreshing;
  const run = async () => {
    const before = loadSession();
    if (!before) throw new ApiError(401, "not_authenticated", "sign in first");
    const work = async () => {
      const current = loadSession();
      // Another tab refreshed while we waited for the lock (and rotated the cookie): use
      // its tokens.
      if (current && current.access_token !== before.access_token) return current;
      try {
        const reply = await rawRequest("/api/v1/auth/refresh", { method: "POST", session: true });
        keepTokens(reply);
        return loadSession();
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) {
          expireSession();
        }
        throw error;
      }
    };
    if (navigator.locks) return navigator.locks.request("vtp-refresh", work);
    return work();
  };
  refreshing = run().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** An access token valid for at least `marginS` more seconds (refreshing if needed). */
export async function accessToken(marginS = 20) {
  const session = loadSession();
  if (!session) throw new ApiError(401, "not_authenticated", "sign in first");
  if (session.access_expires_at - Date.now() < marginS * 1000) {
    return (await refreshTokens()).access_token;
  }
  return session.access_token;
}

/** Call the API as the signed-in user; a 401 for an expired token refreshes once. */
export async function api(path, options = {}) {
  const token = await accessToken();
  try {
    return await rawRequest(path, { ...options, token });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && error.code !== "invalid_credentials") {
      const fresh = await refreshTokens();
      return rawRequest(path, { ...options, token: fresh.access_token });
    }
    throw error;
  }
}

/** Every item of a paginated list (follows next_cursor; at most `maxPages` pages). */
export async function listAll(path, maxPages = 5) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}

export async function signIn(email, password) {
  const reply = await rawRequest("/api/v1/auth/login", {
    method: "POST",
    body: { email, password },
    session: true,
  });
  keepTokens(reply, reply.user);
  return reply.user;
}

export async function register(displayName, email, password) {
  const reply = await rawRequest("/api/v1/auth/register", {
    method: "POST",
    body: { display_name: displayName, email, password },
    session: true,
  });
  keepTokens(reply, reply.user);
  return reply.user;
}

/** Change the signed-in user's password; the answer's fresh tokens replace the old ones. */
export async function changePassword(currentPassword, newPassword) {
  const reply = await api("/api/v1/users/me/password", {
    method: "POST",
    body: { current_password: currentPassword, new_password: newPassword },
    session: true,
  });
  keepTokens(reply, reply.user);
  return reply.user;
}

/** A request that needs no sign-in (password reset). */
export function publicRequest(path, body) {
  return rawRequest(path, { method: "POST", body });
}

export async function signOut() {
  if (loadSession()) {
    try {
      // api() renews an expired access token first, so the server revokes this login and
      // clears the refresh cookie.
      await api("/api/v1/auth/logout", { method: "POST" });
    } catch {
      /* signing out locally is what matters */
    }
  }
  saveSession(null);
  location.assign("/signin");
}

/** The session can no longer be renewed: forget it and send the user to sign in. */
export function expireSession() {
  saveSession(null);
  if (location.pathname !== "/signin") {
    const next = encodeURIComponent(location.pathname + location.search);
    location.assign(`/signin?expired=1&next=${next}`);
  }
}

/** The signed-in user (fetched fresh), or a redirect to the sign-in page. */
export async function requireUser() {
  const session = loadSession();
  if (!session || !session.refresh_expires_at || session.refresh_expires_at < Date.now()) {
    if (session) {
      expireSession();
    } else {
      const next = encodeURIComponent(location.pathname + location.search);
      location.assign(`/signin?next=${next}`);
    }
    return new Promise(() => {}); // the page is going away
  }
  try {
    const user = await api("/api/v1/users/me");
    saveSession({ ...loadSession(), user });
    showUser(user);
    return user;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      expireSession();
      return new Promise(() => {});
    }
    throw error;
  }
}

function showUser(user) {
  const nav = /** @type {HTMLElement} */ (document.querySelector(".topbar-user"));
  if (!nav) return;
  nav.hidden = false;
  nav.querySelector("[data-user-name]").textContent = user.display_name;
  const admin = /** @type {HTMLElement} */ (nav.querySelector("[data-admin-link]"));
  if (admin) admin.hidden = user.role !== "admin";
  (/** @type {HTMLElement} */ (nav.querySelector("[data-sign-out]"))).onclick = () => signOut();
}

let refreshTimer = null;

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const session = loadSession();
  if (!session || !session.refresh_expires_at) return;
  const due = session.access_expires_at - REFRESH_MARGIN_S * 1000 - Date.now();
  refreshTimer = setTimeout(
    () => refreshTokens().catch(() => {}),
    Math.max(due, 1000),
  );
}

// Another tab signed in, refreshed or signed out.
window.addEventListener("storage", (ev) => {
  if (ev.key === STORE_KEY) scheduleRefresh();
});
scheduleRefresh();

export function toast(text, kind = "info") {
  const region = document.querySelector("[data-toasts]");
  if (!region) return;
  const item = document.createElement("div");
  item.className = `toast toast-${kind}`;
  item.textContent = text;
  region.append(item);
  setTimeout(() => item.remove(), 6000);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child);
  }
  return node;
}
