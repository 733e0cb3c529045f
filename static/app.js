// Pipeline Manager: the little the dashboard needs beyond htmx. No inline script anywhere (CSP).
(function () {
  "use strict";

  // htmx's indicator styles are an inline <style>, which the CSP refuses. The <meta
  // name="htmx-config"> of base.html says so too; this covers any page without it (htmx reads
  // its configuration when the document is ready, after this deferred script ran).
  if (window.htmx) {
    window.htmx.config.includeIndicatorStyles = false;
  }

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
  // typed survives and is reviewed against what the page now shows, and move the "(current)"
  // mark to the type now in force (none for a type this tool does not manage). The choice is
  // left alone. The confirmation step keeps the version the operator reviewed: applying it
  // after a change shows the conflict.
  var MARK = / \((current|default: never set)\)$/;
  document.body.addEventListener("pipeline-changed", function (event) {
    var detail = event.detail || {};
    // An open confirmation reviewed an older change: say so before Apply (Apply would only
    // show the conflict and write nothing).
    var confirmBase = document.querySelector('#confirm-form input[name="expect_id"]');
    var stale = document.getElementById("confirm-stale");
    if (confirmBase && stale && typeof detail.id === "number" &&
        confirmBase.value !== String(detail.id)) {
      stale.hidden = false;
    }
    var input = document.querySelector('#change-form input[name="expect_id"]');
    if (input && typeof detail.id === "number") {
      input.value = String(detail.id);
    }
    document.querySelectorAll('#change-form select[name="pipeline_type"] option').forEach(
      function (option) {
        var label = option.textContent.replace(MARK, "");
        if (option.value && option.value === detail.type) {
          label += detail.mark || " (current)"; // the server's words: "(default: never set)" too
        }
        if (option.textContent !== label) {
          option.textContent = label;
        }
      }
    );
  });

  // A step swapped into the change panel (a field to correct, confirmation, conflict, result)
  // takes the focus, so keyboard and screen-reader users land on it wherever the button was.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (!target || target.id !== "change-panel") {
      return;
    }
    var focus = target.querySelector('[aria-invalid="true"], [data-focus]');
    if (focus) {
      focus.focus();
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
    if (seconds < -5) {
      return "in the future";
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
