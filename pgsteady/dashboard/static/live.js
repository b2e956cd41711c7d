// pgsteady dashboard: the only script. Pages work without it; it adds two
// things. 1. Live pages (body[data-live]) refresh their <main> every few
// seconds while visible, unless the user is typing in a form there.
// 2. Forms with data-confirm ask before they are sent.
(function () {
  "use strict";
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); }
  });
  var seconds = parseInt(document.body.getAttribute("data-live") || "0", 10);
  if (!seconds) { return; }
  function busy() {
    var el = document.activeElement;
    return el && el.closest("main") && /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName)
      || document.querySelector("main details[open]");
  }
  function refresh() {
    if (document.hidden || busy()) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        var main = document.querySelector("main");
        if (fresh && main && !busy()) { main.replaceChildren.apply(main, Array.from(fresh.childNodes)); }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  window.setInterval(refresh, seconds * 1000);
}());
