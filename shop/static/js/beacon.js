/*
 * First-party interaction beacon (no dependencies).
 *
 * Every product card rendered in a list or rail carries data-product-id, data-placement and
 * data-position; <body data-page-view-id> is a uuid4 per render. This records
 *   - an impression when a card is at least 50% visible (once per card per page view),
 *   - a click when a card's link is followed,
 * batches them and posts them to /api/events with navigator.sendBeacon on visibilitychange
 * (hidden) / pagehide, right after a click, and every few seconds. Idempotency keys make a
 * retried post harmless:  imp:{page_view_id}:{placement}:{position}
 *                         clk:{page_view_id}:{placement}:{position}
 */
(function () {
  "use strict";

  var ENDPOINT = "/api/events";
  var FLUSH_MS = 5000;
  var MAX_BATCH = 200; // below the server's EVENTS_MAX_BATCH (500)

  var body = document.body;
  if (!body) return;
  var pageViewId = body.getAttribute("data-page-view-id") || null;
  var queue = [];
  var seen = Object.create(null);

  var ua = navigator.userAgent || "";
  var device = /iPad|Tablet/.test(ua) ? "tablet" : /Mobi|Android/.test(ua) ? "mobile" : "desktop";

  function cardInfo(card) {
    var productId = parseInt(card.getAttribute("data-product-id"), 10);
    var placement = card.getAttribute("data-placement") || "";
    var rawPos = card.getAttribute("data-position");
    var position = rawPos === null || rawPos === "" ? null : parseInt(rawPos, 10);
    if (!productId || !placement) return null;
    return { productId: productId, placement: placement, position: isNaN(position) ? null : position };
  }

  function push(type, prefix, card) {
    var info = cardInfo(card);
    if (!info) return false;
    var key = prefix + ":" + (pageViewId || "none") + ":" + info.placement + ":" + (info.position === null ? "" : info.position);
    key = key.slice(0, 100);
    if (seen[key]) return false;
    seen[key] = true;
    queue.push({
      type: type,
      product_id: info.productId,
      placement: info.placement,
      position: info.position,
      page_view_id: pageViewId,
      idempotency_key: key,
      occurred_at: new Date().toISOString(),
      device: device
    });
    return true;
  }

  function send(events) {
    var payload = JSON.stringify({ events: events });
    try {
      if (navigator.sendBeacon) {
        var blob = new Blob([payload], { type: "application/json" });
        if (navigator.sendBeacon(ENDPOINT, blob)) return;
      }
    } catch (e) { /* fall through to fetch */ }
    if (window.fetch) {
      fetch(ENDPOINT, {
        method: "POST",
        body: payload,
        headers: { "Content-Type": "application/json" },
        credentials: "same-origin",
        keepalive: true
      }).catch(function () {});
    }
  }

  function flush() {
    while (queue.length) send(queue.splice(0, MAX_BATCH));
  }

  // Impressions: a card counts once it is at least half on screen.
  var observer = null;
  if ("IntersectionObserver" in window) {
    observer = new IntersectionObserver(function (entries) {
      for (var i = 0; i < entries.length; i++) {
        var entry = entries[i];
        if (entry.isIntersecting && entry.intersectionRatio >= 0.5) {
          push("impression", "imp", entry.target);
          observer.unobserve(entry.target);
        }
      }
    }, { threshold: [0.5] });
  }
  // The cards under root (the page; later a rail fetched after load, see rails.js).
  function observe(root) {
    if (!observer) return;
    var cards = root.querySelectorAll("[data-product-id][data-placement]");
    for (var i = 0; i < cards.length; i++) observer.observe(cards[i]);
  }
  observe(document);

  // Clicks: any link inside a card (primary or middle click); flushed at once, before navigating.
  function onClick(ev) {
    if (ev.type === "auxclick" && ev.button !== 1) return;
    var target = ev.target;
    var link = target && target.closest ? target.closest("a[href]") : null;
    if (!link) return;
    var card = link.closest("[data-product-id][data-placement]");
    if (!card) return;
    if (push("click", "clk", card)) flush();
  }
  document.addEventListener("click", onClick, true);
  document.addEventListener("auxclick", onClick, true);

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush();
  });
  window.addEventListener("pagehide", flush);
  setInterval(function () { if (queue.length) flush(); }, FLUSH_MS);

  window.shopBeacon = { flush: flush, observe: observe, pending: function () { return queue.slice(); } };
})();
