// Keeps the embedded pages' grant fresh. The grant in their links and forms (?session=) lasts
// five minutes (connector/web/merchant/access.py); before it runs out, and before following a
// link or sending a form with an old one, this asks App Bridge for a fresh session token
// (https://shopify.dev/docs/api/app-bridge-library/apis/id-token) and exchanges it at
// data-renew-url for a new grant and CSRF token, written into every link and form.
(function () {
  "use strict";
  var RENEW_AFTER_MS = 4 * 60 * 1000;
  var script = document.currentScript;
  var renewUrl = script && script.getAttribute("data-renew-url");
  var renewedAt = Date.now();

  function renew() {
    if (!renewUrl || typeof shopify === "undefined" || !shopify.idToken) {
      return Promise.reject(new Error("App Bridge is not loaded"));
    }
    return shopify.idToken().then(function (token) {
      return fetch(renewUrl, { method: "POST", headers: { Authorization: "Bearer " + token } });
    }).then(function (answer) {
      if (!answer.ok) { throw new Error("grant not renewed: " + answer.status); }
      return answer.json();
    }).then(function (fresh) {
      document.querySelectorAll("a[href]").forEach(function (link) {
        var url = new URL(link.href, location.href);
        if (url.origin === location.origin && url.searchParams.has("session")) {
          url.searchParams.set("session", fresh.session);
          link.href = url.toString();
        }
      });
      document.querySelectorAll('input[name="session"]').forEach(function (input) {
        input.value = fresh.session;
      });
      document.querySelectorAll('input[name="csrf_token"]').forEach(function (input) {
        input.value = fresh.csrf_token;
      });
      renewedAt = Date.now();
    });
  }

  function stale() { return Date.now() - renewedAt > RENEW_AFTER_MS; }

  // Renew first when the grant is old, then go on (a failed renewal goes on too: the server
  // then says to reopen the app).
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[href]");
    if (!link || !stale() || link.target === "_blank") { return; }
    event.preventDefault();
    renew().catch(function () {}).then(function () {
      if (link.target === "_top") { window.top.location.href = link.href; }
      else { location.href = link.href; }
    });
  });
  document.addEventListener("submit", function (event) {
    if (!stale()) { return; }
    var form = event.target;
    event.preventDefault();
    renew().catch(function () {}).then(function () { form.submit(); });
  });
  setInterval(function () { renew().catch(function () {}); }, RENEW_AFTER_MS);
})();
