/* Search suggestions as the shopper types: fills the search box's <datalist> from
   GET /search/suggest/?q=... (product names and categories). The search works without it. */
(function () {
  "use strict";
  var input = document.querySelector("input[data-suggest-url]");
  var list = input && document.getElementById(input.getAttribute("list"));
  if (!input || !list || !window.fetch) return;
  var timer = null, last = "", inflight = null;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var q = input.value.trim();
      if (q.length < 2 || q === last) return;
      last = q;
      if (inflight) inflight.abort();
      inflight = new AbortController();
      fetch(input.dataset.suggestUrl + "?q=" + encodeURIComponent(q), {signal: inflight.signal})
        .then(function (r) { return r.ok ? r.json() : {suggestions: []}; })
        .then(function (data) {
          list.replaceChildren.apply(list, data.suggestions.map(function (s) {
            var opt = document.createElement("option");
            opt.value = s.label;
            return opt;
          }));
        })
        .catch(function () {});
    }, 150);
  });
})();
