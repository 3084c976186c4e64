// Keeps the status page's live part fresh and asks before destructive buttons.
// Plain JS, no framework: the server renders the fragment, this only swaps it in.
"use strict";

document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

(function () {
  var live = document.getElementById("live");
  if (!live) {
    return;
  }
  var src = live.getAttribute("data-src");
  var every = parseInt(live.getAttribute("data-every"), 10) || 3000;
  function refresh() {
    fetch(src, {credentials: "same-origin", cache: "no-store"})
      .then(function (resp) {
        if (resp.redirected || resp.status === 401) {
          window.location.reload();  // the session ended: show the login page
          return null;
        }
        return resp.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          live.innerHTML = html;
          live.setAttribute("data-updated", String(Date.now()));
        }
      })
      .catch(function () { /* the box may be rebooting; try again next round */ })
      .then(function () { window.setTimeout(refresh, every); });
  }
  window.setTimeout(refresh, every);
})();
