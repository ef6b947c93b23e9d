// Ion console: live updates without a build step. A region marked data-live is refetched
// every data-live-interval ms while the tab is visible and swapped in place when it changed;
// never while the keyboard focus is inside it (the focus would be lost), and no more once the
// page marks it data-live-done (a settled flow).
"use strict";
(function () {
  function refresh(region) {
    if (region.hasAttribute("data-live-done") || document.hidden) return Promise.resolve();
    if (region.contains(document.activeElement) && document.activeElement !== document.body) {
      return Promise.resolve();
    }
    return fetch(window.location.href, {
      headers: { "X-Ion-Live": "1" },
      credentials: "same-origin",
      redirect: "error",
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var name = region.getAttribute("data-live");
        var fresh = doc.querySelector('[data-live="' + name + '"]');
        if (!fresh) return;
        var open = Array.prototype.map.call(region.querySelectorAll("details[open]"), function (d) {
          return d.querySelector("summary") ? d.querySelector("summary").textContent : "";
        });
        region.innerHTML = fresh.innerHTML;
        Array.prototype.forEach.call(region.querySelectorAll("details"), function (d) {
          var s = d.querySelector("summary");
          if (s && open.indexOf(s.textContent) >= 0) d.open = true;
        });
        if (fresh.hasAttribute("data-live-done")) region.setAttribute("data-live-done", "");
        region.removeAttribute("data-live-error");
      })
      .catch(function () {
        region.setAttribute("data-live-error", "");
      });
  }

  function start(region) {
    var every = parseInt(region.getAttribute("data-live-interval") || "5000", 10);
    function tick() {
      refresh(region).then(function () {
        if (!region.hasAttribute("data-live-done")) window.setTimeout(tick, every);
      });
    }
    window.setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), start);
  });
})();
