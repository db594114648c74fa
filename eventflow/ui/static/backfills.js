// A pipeline page's backfill form: the dry run's verdicts, shown under the form until a
// backfill starts (kept here, since a live refresh redraws the page's <main>).
"use strict";
(() => {
  const SHOWN = 500; // verdicts listed; the counts cover them all
  let plan = null;

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function show() {
    const box = document.getElementById("dry-run");
    if (!box) return;
    box.replaceChildren();
    box.hidden = !plan;
    if (!plan) return;
    const runs = plan.filter((p) => p.run).length;
    const summary = document.createElement("p");
    summary.id = "dry-run-summary";
    summary.textContent = `Dry run: ${runs} run${runs === 1 ? "" : "s"} would start, `
      + `${plan.length - runs} partition${plan.length - runs === 1 ? "" : "s"} skipped`
      + (plan.length > SHOWN ? ` (the first ${SHOWN} listed)` : "") + ".";
    box.append(summary);
    const table = document.createElement("table");
    table.id = "dry-run-plan";
    const head = table.createTHead().insertRow();
    for (const title of ["Partition", "Pipeline", "Verdict", "Why", "Tasks it starts"]) {
      const th = document.createElement("th");
      th.textContent = title;
      head.append(th);
    }
    const body = table.createTBody();
    for (const p of plan.slice(0, SHOWN)) {
      const row = body.insertRow();
      row.className = "verdict";
      row.dataset.partition = p.partition;
      row.dataset.run = String(p.run);
      cell(row, p.partition, "mono");
      cell(row, p.pipeline);
      const verdict = document.createElement("span");
      verdict.className = `status ${p.run ? "would_run" : "skipped"}`;
      verdict.textContent = p.run ? "run" : "skip";
      row.insertCell().append(verdict);
      cell(row, p.why, "why");
      cell(row, p.tasks.join(", "), "mono");
    }
    box.append(table);
  }

  document.addEventListener("ef:acted", (e) => {
    const { button, answer } = e.detail;
    if (button.dataset.form !== "backfill-form") return;
    if (answer.status === "dry_run") {
      plan = answer.plan;
      show();
      ef.notice(document.getElementById("dry-run-summary").textContent, "done");
      return;
    }
    plan = null;
    show();
    const notice = document.getElementById("notice");
    const link = document.createElement("a");
    link.href = `/ui/backfills/${encodeURIComponent(answer.id)}`;
    link.id = "started-backfill";
    link.textContent = answer.id;
    notice.replaceChildren(`Backfill `, link, ` of ${answer.pipelines.join(", ")}: ${answer.status}`);
  });
  document.addEventListener("ef:refreshed", show);
})();
