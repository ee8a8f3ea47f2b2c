// The live document page: the shared page arrives over /ws/documents/<uuid>/
// (docs/PROTOCOL.md); steering sends {"type": "page", "page_no": n}.
"use strict";

(function () {
  const boot = JSON.parse(document.getElementById("document-bootstrap").textContent);
  const $ = (id) => document.getElementById(id);
  const statusEl = $("status");
  const errorEl = $("error");
  let page = boot.page;
  let errorTimer = null;

  function cell(tag, text, className) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (className) el.className = className;
    return el;
  }

  function render() {
    $("version").textContent = page.version;
    $("total-number").textContent = page.total_number;
    $("page-no").textContent = page.page_no;
    $("total-pages").textContent = page.total_pages;

    const table = $("sheet");
    const head = document.createElement("tr");
    head.append(cell("th", "#", "rowno"), ...page.columns.map((name) => cell("th", name)));
    table.tHead.replaceChildren(head);
    const first = (page.page_no - 1) * page.page_size + 1;
    const width = page.columns.length;
    const rows = page.data.map((row, i) => {
      const tr = document.createElement("tr");
      tr.append(cell("td", first + i, "rowno"), ...row.map((value) => cell("td", value)));
      // Rows come as the file gave them: a short row's missing cells are
      // empty, shown as one cell spanning them (HTML caps colspan at 1,000).
      for (let missing = width - row.length; missing > 0; missing -= 1000) {
        const pad = cell("td", "", "pad");
        pad.colSpan = Math.min(missing, 1000);
        tr.append(pad);
      }
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      const empty = cell("td", "No rows: the file has only its header.", "muted");
      empty.colSpan = page.columns.length;
      tr.append(cell("td", "", "rowno"), empty);
      rows.push(tr);
    }
    table.tBodies[0].replaceChildren(...rows);

    if (boot.canSteer) {
      const atStart = page.page_no <= 1, atEnd = page.page_no >= page.total_pages;
      document.querySelectorAll("[data-go=first], [data-go=prev]").forEach((b) => { b.disabled = atStart; });
      document.querySelectorAll("[data-go=next], [data-go=last]").forEach((b) => { b.disabled = atEnd; });
      const input = $("goto-page");
      input.max = page.total_pages;
      if (document.activeElement !== input) input.value = page.page_no;
    }
  }

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => { errorEl.hidden = true; }, 6000);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "page":
        page = frame;
        errorEl.hidden = true;
        render();
        break;
      case "presence":
        $("watching").textContent = frame.watching;
        break;
      case "error":
        showError(frame.message);
        break;
      default:
        break;
    }
  }

  function onState(state, delay, reason) {
    statusEl.dataset.state = state;
    statusEl.textContent = LiveSocket.describe(state, delay);
    if (state !== "live") $("watching").textContent = "–";
    if (state === "stopped") {
      // Why the page stopped stays on it (an error frame's message fades).
      clearTimeout(errorTimer);
      errorEl.textContent = reason;
      errorEl.hidden = false;
    }
  }

  // On every (re)connect the server sends the current shared page first.
  const socket = new LiveSocket({
    url: () => LiveSocket.wsUrl(`/ws/documents/${boot.uuid}/`, { key: boot.key }),
    onMessage: onFrame,
    onState,
  });

  function go(pageNo) {
    if (!socket.send({ type: "page", page_no: pageNo })) showError("Not connected; try again in a moment.");
  }

  if (boot.canSteer) {
    const targets = {
      first: () => 1,
      prev: () => page.page_no - 1,
      next: () => page.page_no + 1,
      last: () => page.total_pages,
    };
    document.querySelectorAll("[data-go]").forEach((button) => {
      button.addEventListener("click", () => go(targets[button.dataset.go]()));
    });
    $("goto").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = Number($("goto-page").value);
      if (Number.isInteger(value)) go(value);
    });
  }
  render();
})();
