// Pipeline Manager: the little the dashboard needs beyond htmx. No inline script anywhere (CSP).
(function () {
  "use strict";

  // Send the CSRF token with every htmx request (forms carry it too; polls are GETs).
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) {
      event.detail.headers["X-CSRFToken"] = meta.getAttribute("content");
    }
  });

  // Live indicator: "live" while polls succeed, a visible warning when the server stops
  // answering; it recovers by itself with the next successful poll.
  function setLive(live) {
    var status = document.getElementById("live-status");
    if (!status) {
      return;
    }
    var state = live ? "live" : "offline";
    if (status.getAttribute("data-state") === state) {
      return;
    }
    status.setAttribute("data-state", state);
    var text = status.querySelector(".text");
    if (text) {
      text.textContent = live ? "Live" : "Server not answering — retrying…";
    }
  }

  function fromPoller(event) {
    var elt = event.detail && event.detail.elt;
    return elt && elt.id === "live-status";
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    if (!fromPoller(event)) {
      return;
    }
    var xhr = event.detail.xhr;
    setLive(Boolean(xhr) && xhr.status > 0 && xhr.status < 500);
  });
  ["htmx:sendError", "htmx:timeout"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      if (fromPoller(event)) {
        setLive(false);
      }
    });
  });

  // A poll found a newer change: move the change form's base version to it, so a reason being
  // typed survives and is reviewed against what the page now shows. The confirmation step keeps
  // the version the operator reviewed: applying it after a change shows the conflict.
  document.body.addEventListener("pipeline-changed", function (event) {
    var input = document.querySelector('#change-form input[name="expect_id"]');
    if (input && event.detail && typeof event.detail.id === "number") {
      input.value = String(event.detail.id);
    }
  });

  // Keep "how long ago" texts true between changes: unchanged polls answer 204 and leave the
  // page alone, so the server's "just now" would otherwise stay on screen. Same wording as
  // webapp/timefmt.py's ago().
  var UNITS = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  function ago(iso) {
    var seconds = Math.floor((Date.now() - Date.parse(iso)) / 1000);
    if (isNaN(seconds)) {
      return null;
    }
    if (seconds < 5) {
      return "just now";
    }
    for (var i = 0; i < UNITS.length; i++) {
      if (seconds >= UNITS[i][1]) {
        var count = Math.floor(seconds / UNITS[i][1]);
        return count + " " + UNITS[i][0] + (count !== 1 ? "s" : "") + " ago";
      }
    }
    return "just now";
  }
  function refreshAges() {
    document.querySelectorAll("[data-ago]").forEach(function (element) {
      var text = ago(element.getAttribute("data-ago"));
      if (text && element.textContent !== text) {
        element.textContent = text;
      }
    });
  }
  window.setInterval(refreshAges, 15000);
})();
