// The browser session (services/api/signin.py): sign in with email and password or an invitation, then
// keep a short access token fresh in the background. The refresh token lives only in an HttpOnly cookie
// the page never sees; the access token only in memory (never in the URL or in storage). Tabs take turns
// refreshing (Web Locks): the cookie rotates on every refresh, and a spent cookie sent again ends the
// session (that is how a stolen copy is caught).
"use strict";

const REFRESH_MARGIN_S = 0.3; // refresh when this share of the token's life is left
const REFRESH_LOCK = "switchboard-refresh";

class SessionError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

class BrowserSession extends EventTarget {
  constructor() {
    super();
    this.access = null; // the SignedIn answer: access_token, expires_at, session_expires_at, ...
    this.timer = null;
  }

  get token() { return this.access ? this.access.access_token : null; }

  async post(path, body) {
    const r = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: body ? {"Content-Type": "application/json"} : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new SessionError(r.status, data.detail || `the server answered ${r.status}`);
    return data;
  }

  async signIn(email, password) { return this.started(await this.post("/v1/auth/signin", {email, password})); }
  async acceptInvite(token, password) { return this.started(await this.post("/v1/auth/invite", {token, password})); }
  async lookupInvite(token) { return this.post("/v1/auth/invite/lookup", {token}); }

  // A session from the cookie, if there is one (a reload, a second tab); null otherwise.
  async resume() {
    try {
      return await this.refresh();
    } catch (err) {
      if (err.status === 401) return null;
      throw err;
    }
  }

  // A token issued by an admin (`switchboard agents token`): no session, no refresh.
  useToken(token) {
    this.access = {access_token: token, expires_at: Infinity, session_expires_at: Infinity, fixed: true};
    return this.access;
  }

  started(access) {
    this.access = access;
    this.schedule();
    this.dispatchEvent(new CustomEvent("token", {detail: access}));
    return access;
  }

  schedule() {
    clearTimeout(this.timer);
    if (!this.access || this.access.fixed) return;
    const life = this.access.expires_in || 60;
    const due = Math.max(1, (this.access.expires_at - Date.now() / 1000) - life * REFRESH_MARGIN_S);
    this.timer = setTimeout(() => this.refresh().catch((err) => this.lost(err)), due * 1000);
  }

  async refresh() {
    const run = () => this.post("/v1/auth/refresh");
    const access = navigator.locks ? await navigator.locks.request(REFRESH_LOCK, run) : await run();
    return this.started(access);
  }

  // A fresh token now (before a reconnect, or after the laptop slept through a refresh).
  async fresh() {
    if (this.access && (this.access.fixed || this.access.expires_at - Date.now() / 1000 > 5)) return this.token;
    await this.refresh();
    return this.token;
  }

  lost(err) {
    if (err.status === 401) {
      clearTimeout(this.timer);
      this.access = null;
      this.dispatchEvent(new CustomEvent("ended", {detail: err.message}));
    } else {
      // The network, not the session: try again soon.
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.refresh().catch((e) => this.lost(e)), 3000);
    }
  }

  async signOut() {
    clearTimeout(this.timer);
    const fixed = this.access && this.access.fixed;
    this.access = null;
    if (!fixed) await this.post("/v1/auth/signout").catch(() => {});
  }
}

window.BrowserSession = BrowserSession;
