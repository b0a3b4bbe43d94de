/* Small progressive enhancements; every page works without this file. */
(function () {
  "use strict";
  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (el && el.matches && el.matches("select[data-autosubmit]") && el.form) el.form.submit();
  });
  // Guard against double submits (the server dedupes by nonce anyway).
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.dataset.submitting === "1") { ev.preventDefault(); return; }
    form.dataset.submitting = "1";
    setTimeout(function () { form.dataset.submitting = ""; }, 4000);
  });
  var disabled = document.querySelectorAll("a[aria-disabled='true']");
  for (var i = 0; i < disabled.length; i++) {
    disabled[i].addEventListener("click", function (ev) { ev.preventDefault(); });
  }
})();
