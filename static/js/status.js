// Polls the order's status.json and updates the page until the order reaches a final status.
(function () {
  "use strict";
  var box = document.querySelector("[data-status-url]");
  if (!box || box.getAttribute("data-final") === "true" || !window.fetch) {
    return;
  }
  var url = box.getAttribute("data-status-url");
  var label = box.querySelector("[data-status-label]");
  var message = box.querySelector("[data-status-message]");
  var started = Date.now();

  // Every second while a delivery normally completes, then gently, for held or reviewed orders.
  function nextDelay() {
    return Date.now() - started < 120000 ? 1000 : 10000;
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        // textContent, never innerHTML: usernames come from outside.
        label.textContent = data.status_label;
        message.textContent = data.message;
        box.setAttribute("data-status", data.status);
        if (data.is_final) {
          box.setAttribute("data-final", "true");
          return;
        }
        window.setTimeout(poll, nextDelay());
      })
      .catch(function () {
        window.setTimeout(poll, 5000);
      });
  }

  window.setTimeout(poll, 1000);
})();
