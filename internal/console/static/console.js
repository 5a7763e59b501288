// Tether console: small niceties on top of pages that work without script.
// - The clusters table refreshes itself every data-refresh seconds, by
//   fetching the same page with partial=1 (signed out: the page reloads,
//   which shows the sign-in page).
// - Typing in the cluster filter hides non-matching rows at once; the
//   form still filters on the server when submitted.
"use strict";

(function () {
  function filterRows(table, needle) {
    needle = needle.trim().toLowerCase();
    table.querySelectorAll("tbody tr[data-cluster]").forEach(function (tr) {
      var text = ["name", "group", "location"].map(function (c) {
        var td = tr.querySelector("td." + c);
        return td ? td.textContent.toLowerCase() : "";
      }).join(" ");
      tr.classList.toggle("hidden", needle !== "" && text.indexOf(needle) < 0);
    });
  }

  function startRefresh() {
    var table = document.getElementById("clusters");
    if (!table) {
      return;
    }
    var seconds = parseInt(table.dataset.refresh, 10);
    var url = table.dataset.partial;
    if (!(seconds > 0) || !url) {
      return;
    }
    var input = document.getElementById("cluster-filter");
    var busy = false;
    // leaving: a form was sent (sign out, filter), and the browser is on
    // its way to the answer. A refresh in flight must not act then: after
    // signing out it gets 401, and reloading would cut the navigation
    // short (a reload of the POST it is waiting for).
    var leaving = false;
    var timer = window.setInterval(function () {
      if (busy || leaving || document.hidden) {
        return;
      }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (resp) {
          if (leaving) {
            return null;
          }
          if (resp.status === 401) {
            leaving = true;
            window.location.assign(window.location.href);
            return null;
          }
          return resp.ok ? resp.text() : null;
        })
        .then(function (html) {
          if (!html || leaving) {
            return;
          }
          var tpl = document.createElement("template");
          tpl.innerHTML = html.trim();
          var fresh = tpl.content.querySelector("table#clusters");
          var old = document.getElementById("clusters");
          if (fresh && old) {
            old.replaceWith(fresh);
            if (input) {
              filterRows(fresh, input.value);
            }
          }
        })
        .catch(function () { /* the next tick tries again */ })
        .finally(function () { busy = false; });
    }, seconds * 1000);
    document.addEventListener("submit", function () {
      leaving = true;
      window.clearInterval(timer);
    });
    if (input) {
      input.addEventListener("input", function () {
        var t = document.getElementById("clusters");
        if (t) {
          filterRows(t, input.value);
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", startRefresh);
})();
