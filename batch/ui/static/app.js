// Live progress by short polling (no framework, no build step): while a job validates or sends, ask the
// server for its counts twice a second; when it is done, reload to show the validation or results view.
"use strict";
(function () {
  const job = document.getElementById("job");
  if (!job || job.dataset.busy !== "yes") return;
  const url = job.dataset.progress;
  const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const p = await response.json();
        if (p.phase !== "validating" && p.phase !== "running") { window.location.reload(); return; }
        set("status", p.line);
        const bar = document.getElementById("bar");
        if (bar && p.total) { bar.max = p.total; bar.value = p.done; }
        const done = document.getElementById("done");
        if (done) done.textContent = done.textContent.replace(/\d+(\D+)\d+/, p.done + "$1" + p.total);
        set("rate", p.rate);
        set("left", p.left === null ? "…" : p.left);
        for (const [status, n] of Object.entries(p.counts)) {
          const el = document.querySelector('[data-count="' + status + '"]');
          if (el) el.textContent = n;
        }
      }
    } catch (e) { /* the server is busy or restarting: try again */ }
    window.setTimeout(poll, 500);
  }
  window.setTimeout(poll, 300);
})();
