// A WebSocket that reconnects by itself and honours the close codes of
// docs/PROTOCOL.md. Shared by the feed and document pages. `url()` is called
// before every attempt, so a page can resume (e.g. ?since=<last seq>).
//
// onState(state, delay, reason) is told of every change:
//   "connecting", "live", "reconnecting" (delay: ms until the next attempt),
//   "stopped" (reason: a sentence for the page; no further attempt is made).
// Every frame, `error` frames included, goes to onMessage; a page shows those.
"use strict";

class LiveSocket {
  // Close codes after which reconnecting cannot help: stop and say why.
  static STOP = {
    4403: "Access was revoked: this link's key was changed or your membership ended. Ask the owner for a new link, then reload the page.",
    4429: "Too many live pages are open for your account. Close some other tabs, then reload this page.",
    4400: "The page asked the server with a bad parameter. Reload the page.",
  };
  // The server is overloaded or unavailable: wait longer, and longer again.
  static BACK_OFF = new Set([1011, 1013]);

  constructor({ url, onMessage, onState }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState || (() => {});
    this.attempt = 0;
    this.ws = null;
    this.stopped = false;
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting", null);
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => this.onState("live", null);
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      // A connection that delivers something other than an error works: the
      // next drop starts the backoff afresh. (Resetting on open would let a
      // server that accepts and then closes 1011 be retried every 0.5 s.)
      if (frame && frame.type !== "error") this.attempt = 0;
      this.onMessage(frame);
    };
    ws.onclose = (event) => {
      if (this.stopped || ws !== this.ws) return;
      const reason = LiveSocket.STOP[event.code];
      if (reason) {
        this.stop(reason);
        return;
      }
      const delay = LiveSocket.delay(this.attempt, LiveSocket.BACK_OFF.has(event.code));
      this.attempt += 1;
      this.onState("reconnecting", delay);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  // Exponential with jitter, so that a server restart is not met by every
  // browser at the same instant: 0.5 s, 1 s, 2 s ... capped at 15 s; after
  // 1011 or 1013, 2 s, 4 s, 8 s ... capped at 60 s.
  static delay(attempt, overloaded) {
    const [base, cap] = overloaded ? [2000, 60000] : [500, 15000];
    return Math.min(cap, base * 2 ** attempt) * (0.75 + Math.random() / 2);
  }

  stop(reason) {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close();
    this.onState("stopped", null, reason || "");
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // What the status pill says for a state.
  static describe(state, delay) {
    if (state === "reconnecting" && delay) return `reconnecting in ${(delay / 1000).toFixed(1)} s…`;
    return state;
  }

  static wsUrl(path, params) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(name, value);
    }
    const qs = query.toString();
    return `${scheme}://${location.host}${path}${qs ? "?" + qs : ""}`;
  }
}

window.LiveSocket = LiveSocket;
