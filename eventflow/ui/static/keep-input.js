// What the user has typed or chosen in a form field (with an id) survives the page's live
// refresh, which replaces <main> and the fields with it.
"use strict";
(() => {
  const changed = new Map();
  const remember = (e) => { if (e.target.id && "value" in e.target) changed.set(e.target.id, e.target.value); };
  document.addEventListener("input", remember);
  document.addEventListener("change", remember);
  document.addEventListener("submit", () => changed.clear());
  document.addEventListener("ef:refreshed", () => {
    for (const [id, value] of changed) {
      const field = document.getElementById(id);
      if (field) field.value = value;
    }
  });
})();
