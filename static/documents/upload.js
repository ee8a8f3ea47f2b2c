// Upload forms with progress: every <form class="upload"> is sent with
// XMLHttpRequest so that `upload.onprogress` can fill its <progress>. The
// server answers JSON (docs/PROTOCOL.md); without JavaScript the form posts
// as usual and the server redirects or shows the error.
"use strict";

(function () {
  function describe(result) {
    const lines = [`Uploaded version ${result.version}: ${result.row_count.toLocaleString()} rows.`];
    for (const warning of result.warnings || []) lines.push(warning);
    return lines.join("\n");
  }

  function enhance(form) {
    const progress = form.querySelector(".upload-progress");
    const output = form.querySelector(".upload-result");
    const button = form.querySelector("button[type=submit]");

    function show(text, isError) {
      const stale = form.querySelector(".upload-error");
      if (stale) stale.remove();
      output.textContent = text;
      output.classList.toggle("error", isError);
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) progress.value = (100 * e.loaded) / e.total;
      };
      xhr.onload = () => {
        button.disabled = false;
        progress.hidden = true;
        let result = null;
        try { result = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 200 && result) {
          show(describe(result), false);
          form.dispatchEvent(new CustomEvent("uploaded", { detail: result }));
          if (form.dataset.then === "open") location.assign(result.url);
        } else if (result && result.message) {
          show(result.message, true);
        } else {
          show(xhr.status === 404 ? "You may not upload to this document." : `Upload failed (HTTP ${xhr.status}).`, true);
        }
      };
      xhr.onerror = () => {
        button.disabled = false;
        progress.hidden = true;
        show("The upload did not reach the server; try again.", true);
      };
      button.disabled = true;
      progress.value = 0;
      progress.hidden = false;
      show("", false);
      xhr.send(new FormData(form));
    });
  }

  document.querySelectorAll("form.upload").forEach(enhance);
})();
