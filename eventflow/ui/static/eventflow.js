// eventflow web UI: live refresh from server-sent events, and operator actions with the token.
"use strict";
const ef = (() => {
  const main = () => document.getElementById("main");
  let refreshing = null;
  let again = false;
  let refreshes = 0;

  function notice(text, kind) {
    const box = document.getElementById("notice");
    box.textContent = text;
    box.className = kind || "";
    box.hidden = false;
  }

  // Re-read the page's <main> from the server: the history has just taken in an event.
  async function refresh() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async () => {
      do {
        again = false;
        const open = [...main().querySelectorAll("details[open][id]")].map((d) => d.id);
        const response = await fetch(location.href, { headers: { "X-Eventflow-Fragment": "1" } });
        if (response.redirected || response.status === 401 || response.status === 403) {
          location.reload();
          return;
        }
        if (!response.ok) continue;
        main().innerHTML = await response.text();
        for (const id of open) document.getElementById(id)?.setAttribute("open", "");
        main().dataset.refreshes = String(++refreshes);
        document.dispatchEvent(new CustomEvent("ef:refreshed"));
      } while (again);
    })();
    try { await refreshing; } finally { refreshing = null; }
  }

  function live() {
    const url = document.body.dataset.stream;
    if (!url) return;
    const status = document.getElementById("live");
    const source = new EventSource(url);
    // `ready` comes once the server follows the history for this page: what the history took
    // in between the page's rendering (or a lost connection) and then is read again.
    source.addEventListener("ready", () => {
      status.textContent = "● live";
      status.className = "live on";
      refresh().then(() => { document.body.dataset.live = "open"; });
    });
    source.onerror = () => {
      status.textContent = "reconnecting…";
      status.className = "live off";
      document.body.dataset.live = "closed";
    };
    source.onmessage = (message) => {
      document.dispatchEvent(new CustomEvent("ef:event", { detail: JSON.parse(message.data) }));
      refresh();
    };
  }

  // The dialog asking for the token (and a reason) before an action; resolves to both, or null.
  function ask(title, refused) {
    const dialog = document.getElementById("token-dialog");
    const input = document.getElementById("token-input");
    const shown = document.getElementById("token-refused");
    const reason = document.getElementById("reason-input");
    input.value = ""; // asked each time: a page left open cannot act by itself
    shown.hidden = !refused;
    shown.textContent = refused || "";
    document.getElementById("token-action").textContent = title;
    return new Promise((resolve) => {
      dialog.onclose = () => resolve(dialog.returnValue === "ok"
        ? { token: input.value.trim(), reason: reason.value.trim() } : null);
      dialog.showModal();
    });
  }

  // The fields of the form an action names (`data-form`), as the API's JSON: empty fields left
  // out, a checkbox as a boolean, a number as a number, a `data-list` field split on commas.
  function fields(id) {
    const form = id && document.getElementById(id);
    const body = {};
    if (!form) return body;
    for (const field of form.elements) {
      if (!field.name) continue;
      if (field.type === "checkbox") body[field.name] = field.checked;
      else if (field.value.trim() === "") continue;
      else if (field.type === "number") body[field.name] = Number(field.value);
      else if ("list" in field.dataset) body[field.name] = field.value.split(",").map((v) => v.trim()).filter(Boolean);
      else body[field.name] = field.value.trim();
    }
    return body;
  }

  async function act(button) {
    const title = button.dataset.title || button.textContent.trim();
    let refused = null;
    for (;;) {
      const given = await ask(title, refused);
      if (!given) return;
      const body = {
        ...JSON.parse(button.dataset.body || "{}"),
        ...fields(button.dataset.form),
        reason: given.reason,
        operator: "web UI",
      };
      const response = await fetch(button.dataset.action, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${given.token}` },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.status === 401 || response.status === 403) {
        refused = `Refused (${response.status}): ${answer.detail || "wrong API token"}`;
        notice(`${title}: ${refused}`, "refused");
        continue;
      }
      if (!response.ok) {
        const detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail);
        notice(`${title}: refused (${response.status}): ${detail}`, "refused");
        return;
      }
      notice(`${title}: ${answer.status}`, "done"); // what it changes arrives on the stream
      document.dispatchEvent(new CustomEvent("ef:acted", { detail: { button, answer } }));
      return;
    }
  }

  document.addEventListener("change", (e) => {
    if (e.target.matches("[data-submit-on-change]")) e.target.form.submit();
  });

  document.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (button) { e.preventDefault(); act(button); }
  });

  function signInFromLink() {
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (!token) return;
    history.replaceState(null, "", location.pathname + location.search);
    document.getElementById("login-token").value = token;
    document.getElementById("login").submit();
  }

  // What the user has typed or chosen in a field with an id survives a refresh of <main>.
  const typed = new Map();
  const remember = (e) => {
    const field = e.target;
    if (!field.id || !("value" in field) || !main().contains(field)) return;
    typed.set(field.id, field.type === "checkbox" ? field.checked : field.value);
  };
  document.addEventListener("input", remember);
  document.addEventListener("change", remember);
  // A page left for another forgets; the token dialog's answer is not such a submit.
  document.addEventListener("submit", (e) => { if (e.target.method !== "dialog") typed.clear(); });
  document.addEventListener("ef:refreshed", () => {
    for (const [id, value] of typed) {
      const field = document.getElementById(id);
      if (!field) continue;
      if (typeof value === "boolean") field.checked = value;
      else field.value = value;
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    if (document.getElementById("login")) signInFromLink();
    live();
  });
  return { refresh, notice, signInFromLink, act };
})();
