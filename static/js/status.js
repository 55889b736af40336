// Polls the order's status.json and updates the page until the order reaches a final status.
//
// The box ([data-status-url]) may also carry:
//   data-next-url      a page for one status only (the pay page): go there once the status changes;
//   data-poll-seconds  a steady interval instead of fast-then-gentle;
//   data-reload-in     seconds until the page's quote lapses: reload then for a fresh one.
(function () {
  "use strict";
  var box = document.querySelector("[data-status-url]");
  if (!box || box.getAttribute("data-final") === "true" || !window.fetch) {
    return;
  }
  var url = box.getAttribute("data-status-url");
  var nextUrl = box.getAttribute("data-next-url");
  var steady = parseFloat(box.getAttribute("data-poll-seconds"));
  var reloadIn = parseFloat(box.getAttribute("data-reload-in"));
  var label = box.querySelector("[data-status-label]");
  var message = box.querySelector("[data-status-message]");
  var started = Date.now();
  var leaving = false;

  // Every second while a delivery normally completes, then gently, for held or reviewed orders.
  function nextDelay() {
    if (steady > 0) {
      return steady * 1000;
    }
    return Date.now() - started < 120000 ? 1000 : 10000;
  }

  function leave(target) {
    leaving = true;
    window.location.assign(target);
  }

  function poll() {
    if (leaving) {
      return;
    }
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (nextUrl && data.status !== box.getAttribute("data-status")) {
          leave(nextUrl);
          return;
        }
        // textContent, never innerHTML: usernames come from outside.
        if (label) {
          label.textContent = data.status_label;
        }
        if (message) {
          message.textContent = data.message;
        }
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

  if (reloadIn >= 0) {
    // A second late, so the server no longer offers the lapsed quote.
    window.setTimeout(function () {
      if (!leaving) {
        leave(window.location.href);
      }
    }, reloadIn * 1000 + 1000);
  }
  window.setTimeout(poll, 1000);
})();
