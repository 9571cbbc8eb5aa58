/* The admin's run list, live: each listed run's status (and, once it finishes, its duration) follows
 * the run-level events of /ws/runs/; runs started since the page loaded are counted in a notice.
 * Rows get data-run and data-status; everything is inserted as text. */
(function () {
  "use strict";

  if (!window.Chordflow) return;
  var palette = JSON.parse(document.getElementById("cf-palette").textContent);
  var live = document.getElementById("cf-list-live");
  var notice = document.getElementById("cf-new-runs");
  var FINISHED = { succeeded: true, failed: true, cancelled: true };
  var rows = {}, statusSetBy = {}, started = {};

  document.querySelectorAll("#result_list [data-run]").forEach(function (marker) {
    var row = marker.closest("tr");
    var label = row.querySelector(".cf-status");
    row.setAttribute("data-run", marker.getAttribute("data-run"));
    if (label) row.setAttribute("data-status", label.getAttribute("data-status"));
    rows[marker.getAttribute("data-run")] = row;
  });

  function seconds(from, to) {
    return ((Date.parse(to) - Date.parse(from)) / 1000).toFixed(3) + " s";
  }

  function showDuration(runId, row) {
    var url = window.location.pathname.replace(/\/$/, "") + "/" + encodeURIComponent(runId) + "/progress/";
    Chordflow.fetchJSON(url)
      .then(function (state) {
        var cell = row.querySelector(".field-duration");
        if (cell && state.run.started_at && state.run.finished_at) {
          cell.textContent = seconds(state.run.started_at, state.run.finished_at);
        }
      })
      .catch(function () {});
  }

  function apply(item) {
    if (item.type.indexOf("run.") !== 0) return;
    var row = rows[item.run];
    var status = item.status || item.type.slice(4);
    if (!row) {
      if (item.type === "run.started" && !started[item.run]) {
        started[item.run] = true;
        var count = Object.keys(started).length;
        notice.querySelector("span").textContent =
          count + (count === 1 ? " run" : " runs") + " started or resumed since this page loaded.";
        notice.hidden = false;
      }
      return;
    }
    if (statusSetBy[item.run] && item.id < statusSetBy[item.run]) return; // an older event, late
    statusSetBy[item.run] = item.id;
    row.setAttribute("data-status", status);
    var label = row.querySelector(".cf-status");
    if (label) {
      label.setAttribute("data-status", status);
      label.textContent = status;
      label.style.color = palette[status] || "";
    }
    row.classList.remove("cf-changed");
    void row.offsetWidth; // restart the highlight
    row.classList.add("cf-changed");
    if (FINISHED[status]) showDuration(item.run, row);
  }

  Chordflow.connect("/ws/runs/", {
    onOpen: function () {
      live.setAttribute("data-state", "live");
      live.textContent = "live";
    },
    onItems: function (items) {
      items.forEach(apply);
    },
    onClose: function () {
      live.setAttribute("data-state", "connecting");
      live.textContent = "reconnecting…";
    },
    onRefused: function (code, reason) {
      live.setAttribute("data-state", "refused");
      live.textContent = "not live: " + reason;
    },
  });
})();
