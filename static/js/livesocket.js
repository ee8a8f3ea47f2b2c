// A WebSocket that reconnects by itself with exponential backoff and jitter.
// Shared by the feed and document pages. `url()` is called before every
// attempt, so a page can resume (e.g. ?since=<last seq>).
"use strict";

class LiveSocket {
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
    ws.onopen = () => { this.attempt = 0; this.onState("live", null); };
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      this.onMessage(frame);
    };
    ws.onclose = () => {
      if (this.stopped) return;
      // 0.5 s, 1 s, 2 s ... capped at 15 s, with jitter so a server restart
      // is not met by every browser at the same instant.
      const delay = Math.min(15000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
      this.attempt += 1;
      this.onState("reconnecting", delay);
      setTimeout(() => this.connect(), delay);
    };
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
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
