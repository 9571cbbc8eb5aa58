/* The admin's live run page: applies the run's events to the graph, the timeline, the event log and
 * the run's status, from the snapshot the page was rendered with (#cf-snapshot) onwards.
 * Data is only ever inserted as text (textContent), never as HTML; the step panel is HTML our own
 * server rendered and escaped. */
(function () {
  "use strict";

  var root = document.getElementById("cf-live");
  var snapshotNode = document.getElementById("cf-snapshot");
  if (!root || !snapshotNode || !window.Chordflow) return;
  var data = JSON.parse(snapshotNode.textContent);
  var run = data.run;
  var steps = data.steps;
  var statusSetBy = {}; // step id -> id of the event that set the status shown
  var FINISHED = { succeeded: true, failed: true, cancelled: true };
  var STEP_DONE = { succeeded: true, failed: true, skipped: true, cancelled: true };
  var MAX_LOG_ROWS = 500;

  function nodeOf(stepId) {
    var nodes = root.querySelectorAll(".cf-node");
    for (var i = 0; i < nodes.length; i++) if (nodes[i].getAttribute("data-step") === stepId) return nodes[i];
    return null;
  }

  function parseTime(value) {
    return value ? Date.parse(value) : null;
  }

  function seconds(ms) {
    return (ms / 1000).toFixed(ms < 10000 ? 3 : 1) + " s";
  }

  /* --- run status and duration ------------------------------------------------------------------ */
  var statusBadge = root.querySelector(".cf-run-status");
  var durationText = document.getElementById("cf-duration");

  function showRun() {
    statusBadge.setAttribute("data-status", run.status);
    statusBadge.textContent = run.status;
    var start = parseTime(run.started_at) || parseTime(run.created_at);
    var end = parseTime(run.finished_at) || (FINISHED[run.status] ? start : Date.now());
    durationText.textContent = start ? seconds(Math.max(0, end - start)) : "";
  }

  function refreshTools() {
    /* The cancel/retry buttons, the run's fields and its steps' table change with its status: take them
     * from the page as the server renders it now (our own escaped HTML); the live parts stay. */
    window
      .fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var page = new DOMParser().parseFromString(html, "text/html");
        [".object-tools", "fieldset.module", ".inline-group"].forEach(function (selector) {
          var fresh = page.querySelectorAll(selector);
          var current = document.querySelectorAll(selector);
          if (fresh.length !== current.length) return;
          for (var i = 0; i < fresh.length; i++) current[i].replaceWith(document.importNode(fresh[i], true));
        });
      })
      .catch(function () {});
  }

  /* --- graph nodes ------------------------------------------------------------------------------- */
  function setStep(stepId, status, eventId, attempt) {
    var node = nodeOf(stepId);
    if (!node) return;
    if (eventId && statusSetBy[stepId] && eventId < statusSetBy[stepId]) return; // an older event, late
    if (eventId) statusSetBy[stepId] = eventId;
    node.setAttribute("data-status", status);
    node.querySelector(".cf-node-status").textContent = status;
    if (steps[stepId]) steps[stepId].status = status;
    if (attempt) setAttempts(node, attempt);
  }

  function setAttempts(node, attempts) {
    node.setAttribute("data-attempts", attempts);
    var badge = node.querySelector(".cf-node-badge");
    if (attempts > 1) {
      badge.removeAttribute("display");
      badge.querySelector("text").textContent = attempts;
    }
  }

  function setProgress(stepId, branches) {
    var node = nodeOf(stepId);
    if (!node || !branches) return;
    var by = branches.by_status || {};
    var done = (by.succeeded || 0) + (by.failed || 0) + (by.skipped || 0) + (by.cancelled || 0);
    var total = branches.count || 0;
    var text = done.toLocaleString("en-US") + " / " + total.toLocaleString("en-US");
    if (by.failed) text += ", " + by.failed.toLocaleString("en-US") + " failed";
    var label = node.querySelector(".cf-node-progress");
    var fill = node.querySelector(".cf-progress-fill");
    var track = node.querySelector(".cf-progress-track");
    if (label) label.textContent = text;
    if (fill && track) {
      var width = Number(track.getAttribute("width"));
      fill.setAttribute("width", String(Math.round(total ? (width * done) / total : width)));
    }
  }

  Object.keys(steps).forEach(function (stepId) {
    setProgress(stepId, steps[stepId].branches);
  });

  /* Branch counts (and the run's status) from the server, at most once a second during a fan-out. */
  var refreshCounts = Chordflow.debounce(function () {
    Chordflow.fetchJSON(data.urls.progress)
      .then(function (fresh) {
        Object.keys(fresh.steps).forEach(function (stepId) {
          if (steps[stepId]) steps[stepId].branches = fresh.steps[stepId].branches;
          setProgress(stepId, fresh.steps[stepId].branches);
        });
      })
      .catch(function () {});
  }, 1000);

  /* --- the step panel ---------------------------------------------------------------------------- */
  var panel = document.getElementById("cf-step-panel");
  var selected = null;

  function openPanel(stepId, page) {
    var url = data.urls.step.replace("__step__", encodeURIComponent(stepId)) + (page ? "?page=" + page : "");
    window
      .fetch(url, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) {
        panel.innerHTML = html; // rendered and escaped by our own template (step_panel.html)
        panel.hidden = false;
        panel.setAttribute("data-step", stepId);
        refreshLog(); // lines written between the panel's render and now
        var node = nodeOf(stepId);
        panel.setAttribute("data-status", node ? node.getAttribute("data-status") : "");
      })
      .catch(function (error) {
        panel.textContent = "Could not load step " + stepId + ": " + error.message;
        panel.hidden = false;
      });
  }

  root.querySelectorAll(".cf-node").forEach(function (node) {
    function choose() {
      if (selected) selected.classList.remove("cf-selected");
      selected = node;
      node.classList.add("cf-selected");
      openPanel(node.getAttribute("data-step"));
    }
    node.addEventListener("click", choose);
    node.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        choose();
      }
    });
  });

  panel.addEventListener("click", function (event) {
    var target = event.target;
    if (target.classList.contains("cf-panel-close")) {
      panel.hidden = true;
      if (selected) selected.classList.remove("cf-selected");
      selected = null;
    } else if (target.getAttribute("data-page")) {
      event.preventDefault();
      openPanel(panel.getAttribute("data-step"), target.getAttribute("data-page"));
    }
  });

  /* --- the open step's log: new lines over REST after each step.log hint ------------------------- */
  var MAX_PANEL_LOG_ROWS = 1000;
  // Ids are taken at insert and parallel branches' lines commit in another order (PostgreSQL): each
  // refresh re-reads this many ids behind the newest shown, and places a late line by its id.
  var LOG_REREAD = 200;
  var loadingLog = null, logAgain = false;

  function refreshLog() {
    var table = panel.hidden ? null : panel.querySelector(".cf-log");
    if (!table) return;
    if (loadingLog) {
      logAgain = true;
      return;
    }
    var stepId = panel.getAttribute("data-step");
    var after = Math.max(0, (Number(table.getAttribute("data-last-log")) || 0) - LOG_REREAD);
    loadingLog = Chordflow.fetchLogs(run.id, stepId, after)
      .then(function (lines) {
        if (panel.getAttribute("data-step") === stepId && table.isConnected) appendLog(table, lines);
      })
      .catch(function () {})
      .then(function () {
        loadingLog = null;
        if (logAgain) {
          logAgain = false;
          refreshLog();
        }
      });
  }

  function appendLog(table, lines) {
    var body = table.tBodies[0];
    var last = Number(table.getAttribute("data-last-log")) || 0;
    lines.forEach(function (line) {
      if (line.id <= last - LOG_REREAD || body.querySelector('tr[data-log="' + line.id + '"]')) return;
      var empty = body.querySelector(".cf-log-empty");
      if (empty) empty.remove();
      var row = document.createElement("tr");
      row.className = "cf-new";
      row.setAttribute("data-log", line.id);
      row.setAttribute("data-level", line.level);
      [clock(line.at), line.level, line.attempt, line.branch == null ? "" : line.branch].forEach(function (value) {
        var cell = document.createElement("td");
        cell.textContent = String(value);
        row.appendChild(cell);
      });
      var text = document.createElement("td");
      var message = document.createElement("pre");
      message.className = "cf-log-message";
      message.textContent = line.message;
      text.appendChild(message);
      if (line.extra && Object.keys(line.extra).length) {
        var extra = document.createElement("code");
        extra.className = "cf-log-extra";
        extra.textContent = JSON.stringify(line.extra);
        text.appendChild(extra);
      }
      row.appendChild(text);
      var later = null; // a late line goes before the first shown line with a higher id
      if (line.id < last) {
        later = Array.prototype.find.call(body.rows, function (shown) {
          return Number(shown.getAttribute("data-log")) > line.id;
        });
      }
      body.insertBefore(row, later || null);
      if (line.id > last) last = line.id;
    });
    table.setAttribute("data-last-log", String(last));
    while (body.rows.length > MAX_PANEL_LOG_ROWS) body.deleteRow(0);
  }

  function onLog(hint) {
    if (!panel.hidden && panel.getAttribute("data-step") === hint.step) refreshLog();
  }

  /* --- timeline ---------------------------------------------------------------------------------- */
  /* Per step, its attempts from its events: queue wait (queued or retrying -> started) and execution
   * (started -> finished), or a person's wait (waiting -> decided). */
  var timeline = {}; // step id -> [{wait, start, end, status}]
  var order = Array.prototype.map.call(root.querySelectorAll(".cf-node"), function (node) {
    return node.getAttribute("data-step");
  });

  function current(stepId) {
    var attempts = timeline[stepId] || (timeline[stepId] = []);
    return attempts[attempts.length - 1];
  }

  /* Events of one step may arrive out of order (several processes record them): keep each step's
   * events sorted by id and rebuild its attempts from them. */
  var stepEvents = {};
  function addToTimeline(event) {
    if (!event.step || event.branch != null || event.type.indexOf("step.") !== 0) return;
    var list = stepEvents[event.step] || (stepEvents[event.step] = []);
    list.push(event);
    list.sort(function (a, b) {
      return a.id - b.id;
    });
    timeline[event.step] = [];
    list.forEach(replay);
  }

  function replay(event) {
    var at = parseTime(event.at);
    var attempts = timeline[event.step] || (timeline[event.step] = []);
    var last = current(event.step);
    switch (event.type) {
      case "step.queued":
        attempts.push({ wait: at, start: null, end: null, status: "queued" });
        break;
      case "step.started":
        if (last && last.start == null && last.end == null) {
          last.start = at;
          last.status = "running";
        } else {
          attempts.push({ wait: null, start: at, end: null, status: "running" });
        }
        break;
      case "step.retrying":
        if (last) {
          last.end = at;
          last.status = "retrying";
        }
        attempts.push({ wait: at, start: null, end: null, status: "retrying" });
        break;
      case "step.waiting":
        if (last && last.start != null && last.end == null) last.end = at;
        attempts.push({ wait: null, start: at, end: null, status: "waiting" });
        break;
      default: {
        var status = event.type.slice("step.".length);
        if (!STEP_DONE[status]) return;
        if (last && last.end == null) {
          if (last.start == null) last.start = at;
          last.end = at;
          if (last.status !== "waiting") last.status = status; // a person's wait stays drawn as one
        } else {
          attempts.push({ wait: null, start: at, end: at, status: status });
        }
      }
    }
  }

  data.events.forEach(addToTimeline);
  var timelineBox = document.getElementById("cf-timeline");

  function drawTimeline() {
    var origin = parseTime(run.created_at);
    var now = Date.now();
    var end = parseTime(run.finished_at) || (FINISHED[run.status] ? null : now);
    Object.keys(timeline).forEach(function (stepId) {
      timeline[stepId].forEach(function (attempt) {
        [attempt.wait, attempt.start, attempt.end].forEach(function (t) {
          if (t != null && (end == null || t > end)) end = t;
        });
      });
    });
    if (end == null || end <= origin) end = origin + 1;
    var span = end - origin;
    var fragment = document.createDocumentFragment();
    order.forEach(function (stepId) {
      var row = document.createElement("div");
      row.className = "cf-tl-row";
      row.setAttribute("data-step", stepId);
      var label = document.createElement("span");
      label.className = "cf-tl-label";
      label.textContent = stepId;
      label.title = stepId;
      var track = document.createElement("span");
      track.className = "cf-tl-track";
      var busy = 0;
      (timeline[stepId] || []).forEach(function (attempt, index) {
        function segment(from, to, cls, status, title) {
          if (from == null) return;
          var until = to == null ? now : to;
          var piece = document.createElement("span");
          piece.className = "cf-tl-segment " + cls;
          piece.setAttribute("data-status", status);
          piece.style.left = ((100 * (from - origin)) / span).toFixed(3) + "%";
          piece.style.width = Math.max(0, (100 * (until - from)) / span).toFixed(3) + "%";
          piece.title = title + ": " + seconds(Math.max(0, until - from));
          track.appendChild(piece);
        }
        segment(attempt.wait, attempt.start, "cf-tl-wait", "queued", "attempt " + (index + 1) + " queue wait");
        segment(attempt.start, attempt.end, "cf-tl-run", attempt.status, "attempt " + (index + 1) + " " + attempt.status);
        if (attempt.start != null) busy += (attempt.end == null ? now : attempt.end) - attempt.start;
      });
      var time = document.createElement("span");
      time.className = "cf-tl-time";
      time.textContent = busy ? seconds(busy) : "";
      row.appendChild(label);
      row.appendChild(track);
      row.appendChild(time);
      fragment.appendChild(row);
    });
    var axis = document.createElement("div");
    axis.className = "cf-tl-axis";
    var left = document.createElement("span");
    var middle = document.createElement("span");
    var zero = document.createElement("span");
    zero.textContent = "0 s";
    var total = document.createElement("span");
    total.textContent = seconds(span);
    middle.appendChild(zero);
    middle.appendChild(total);
    axis.appendChild(left);
    axis.appendChild(middle);
    axis.appendChild(document.createElement("span"));
    fragment.appendChild(axis);
    timelineBox.replaceChildren(fragment);
  }

  /* --- the event log ------------------------------------------------------------------------------ */
  function clock(value) {
    var moment = new Date(value);
    if (isNaN(moment)) return "";
    var pad = function (n, width) {
      return String(n).padStart(width || 2, "0");
    };
    return pad(moment.getHours()) + ":" + pad(moment.getMinutes()) + ":" + pad(moment.getSeconds()) + "." + pad(moment.getMilliseconds(), 3);
  }

  function appendToLog(event) {
    var log = document.querySelector("#cf-events tbody"); // the run's fields are replaced on a status change
    if (!log) return;
    var row = document.createElement("tr");
    row.className = "cf-new";
    row.setAttribute("data-event", event.id);
    [clock(event.at), event.type, event.step || "", event.branch == null ? "" : event.branch, event.message || ""].forEach(
      function (value) {
        var cell = document.createElement("td");
        cell.textContent = String(value);
        row.appendChild(cell);
      }
    );
    log.appendChild(row);
    while (log.rows.length > MAX_LOG_ROWS) log.deleteRow(0);
  }

  /* --- live --------------------------------------------------------------------------------------- */
  var connection = document.getElementById("cf-connection");

  function setConnection(state, text) {
    connection.setAttribute("data-state", state);
    connection.textContent = text;
    if (state === "live") connection.setAttribute("data-opens", String(Number(connection.getAttribute("data-opens") || 0) + 1));
  }

  var runStatusSetBy = data.last_event; // the snapshot's status is as of this event
  function apply(events) {
    var runChanged = false;
    events.forEach(function (event) {
      appendToLog(event);
      if (event.type.indexOf("run.") === 0) {
        if (event.id < runStatusSetBy) return; // an older event arriving late: the run has moved on
        runStatusSetBy = event.id;
        run.status = event.status || event.type.slice(4);
        if (event.type === "run.started" && !run.started_at) run.started_at = event.at;
        if (FINISHED[run.status]) run.finished_at = event.at;
        else run.finished_at = null;
        runChanged = true;
      } else if (event.step && event.branch == null) {
        var status = event.status || event.type.slice(5);
        if (event.type.indexOf("step.") === 0) setStep(event.step, status, event.id, event.attempt);
        addToTimeline(event);
        if (event.branches != null) refreshCounts(); // a for_each fanned out: its bar gets a total
      } else if (event.branch != null) {
        refreshCounts();
      }
    });
    showRun();
    drawTimeline();
    if (runChanged) refreshTools();
  }

  showRun();
  drawTimeline();
  window.setInterval(function () {
    if (!FINISHED[run.status]) {
      showRun();
      drawTimeline();
    }
  }, 250);

  new Chordflow.RunFeed(
    run.id,
    {
      onEvents: apply,
      onProgress: refreshCounts,
      onLog: onLog,
      onOpen: function () {
        setConnection("live", "live");
        refreshLog(); // what the open step logged while the socket was down
      },
      onClose: function () {
        setConnection("connecting", "reconnecting…");
      },
      onRefused: function (code, reason) {
        setConnection("refused", "not live: " + reason);
      },
    },
    { afterId: data.last_event }
  );
})();
