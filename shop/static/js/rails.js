/*
 * Rails fetched after the page has loaded (no dependencies).
 *
 * A personal rail (RAILS_AFTER_LOAD) is an empty <section data-rail-src> in the page, so the page does not
 * wait for a live re-rank. This fetches each one and puts the rail in its place; the beacon then watches its
 * cards as it watches the page's own. A rail that fails or comes back empty (204) leaves nothing behind.
 */
(function () {
  "use strict";
  if (!window.fetch) return;
  var slots = document.querySelectorAll("section[data-rail-src]");
  for (var i = 0; i < slots.length; i++) load(slots[i]);

  function load(slot) {
    fetch(slot.getAttribute("data-rail-src"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.status === 200 ? response.text() : ""; })
      .then(function (html) {
        var holder = document.createElement("template");
        holder.innerHTML = html;
        var rail = holder.content.querySelector("section.rail");
        if (!rail) { slot.remove(); return; }
        slot.replaceWith(rail);
        if (window.shopBeacon && window.shopBeacon.observe) window.shopBeacon.observe(rail);
      })
      .catch(function () { slot.remove(); });
  }
})();
