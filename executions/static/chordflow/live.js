/* Chordflow live updates: websockets of run events, with catch-up over REST.
 *
 * Channels delivers at most once and batches from several worker processes interleave, so a page
 * renders a snapshot, then applies socket items as deltas, de-duplicated and ordered by event id, and
 * catches up from GET /api/runs/<id>/events/?after=<last id> on every (re)connect and every 30 s.
 * Plain script, no build step: it defines window.Chordflow.
 */
(function () {
  "use strict";

  var CATCH_UP_MARGIN = 200; // event ids re-read behind the cursor on every catch-up
  var REFUSED = { 4401: "not signed in", 4403: "no permission to view runs", 4404: "no such run" };

  function socketURL(path) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + path;
  }

  /* Open a websocket and keep it open: reconnect after 1 s, doubling to 30 s, unless the server
   * refused us (4401/4403/4404) or close() was called. onOpen() runs after every (re)connect. */
  function connect(path, handlers) {
    var delay = 1000, socket = null, stopped = false, timer = null;

    function open() {
      socket = new WebSocket(socketURL(path));
      socket.onopen = function () {
        delay = 1000;
        if (handlers.onOpen) handlers.onOpen();
      };
      socket.onmessage = function (message) {
        var items;
        try {
          items = JSON.parse(message.data);
        } catch (error) {
          return;
        }
        if (handlers.onItems) handlers.onItems(Array.isArray(items) ? items : [items]);
      };
      socket.onclose = function (closing) {
        if (handlers.onClose) handlers.onClose(closing.code);
        if (stopped) return;
        if (REFUSED[closing.code]) {
          stopped = true;
          if (handlers.onRefused) handlers.onRefused(closing.code, REFUSED[closing.code]);
          return;
        }
        timer = window.setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }

    open();
    return {
      close: function () {
        stopped = true;
        window.clearTimeout(timer);
        if (socket) socket.close();
      },
    };
  }

  function fetchJSON(url, options) {
    var init = Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, options || {});
    return window.fetch(url, init).then(function (response) {
      if (!response.ok) throw new Error(url + " answered " + response.status);
      return response.json();
    });
  }

  /* REST events nest their data; the socket's carry it at the top level: give both one shape. */
  function flatten(event) {
    var item = Object.assign({}, event.data || {}, event);
    delete item.data;
    return item;
  }

  /* Every event of a run after `afterId`, following the cursor pages. */
  function fetchEvents(runId, afterId) {
    var events = [];
    function page(url) {
      return fetchJSON(url).then(function (body) {
        body.results.forEach(function (event) {
          events.push(flatten(event));
        });
        return body.next ? page(body.next) : events;
      });
    }
    var query = "?page_size=1000" + (afterId ? "&after=" + encodeURIComponent(afterId) : "");
    return page("/api/runs/" + encodeURIComponent(runId) + "/events/" + query);
  }

  /* One run's events, each once, in id order: the socket, plus REST catch-up after every (re)connect
   * and every 30 s while open (a dropped message is found then). handlers.onEvents(list) gets only
   * events not seen before, sorted by id; handlers.onProgress(hint) gets branches.progress hints, and
   * handlers.onLog(hint) the step.log hints (a step has new log lines: read them over REST). */
  function RunFeed(runId, handlers, options) {
    var feed = this;
    options = options || {};
    this.lastId = options.afterId || 0;
    var seen = {}, catching = null, again = false, poller = null;

    function take(events) {
      var fresh = events.filter(function (event) {
        if (event.id == null || seen[event.id]) return false;
        seen[event.id] = true;
        return true;
      });
      fresh.sort(function (a, b) {
        return a.id - b.id;
      });
      fresh.forEach(function (event) {
        if (event.id > feed.lastId) feed.lastId = event.id;
      });
      if (fresh.length && handlers.onEvents) handlers.onEvents(fresh);
    }

    /* The highest id below which nothing can be missing: ids seen over the socket may run ahead of
     * another process's commits, so catch-up asks from the last id REST itself returned. */
    var caughtUpTo = this.lastId;
    function catchUp() {
      if (catching) {
        again = true;
        return catching;
      }
      // A margin behind the cursor: ids are given at insert and transactions commit in another order,
      // so an event just below the newest one REST returned may have committed after it (seen dedupes).
      catching = fetchEvents(runId, Math.max(0, caughtUpTo - CATCH_UP_MARGIN))
        .then(function (events) {
          events.forEach(function (event) {
            if (event.id > caughtUpTo) caughtUpTo = event.id;
          });
          take(events);
        })
        .catch(function () {})
        .then(function () {
          catching = null;
          if (again) {
            again = false;
            return catchUp();
          }
        });
      return catching;
    }
    this.catchUp = catchUp;

    this.connection = connect("/ws/runs/" + encodeURIComponent(runId) + "/", {
      onOpen: function () {
        catchUp();
        window.clearInterval(poller);
        poller = window.setInterval(catchUp, 30000);
        if (handlers.onOpen) handlers.onOpen();
      },
      onItems: function (items) {
        var events = [];
        items.forEach(function (item) {
          if (item.type === "branches.progress") {
            if (handlers.onProgress) handlers.onProgress(item);
          } else if (item.type === "step.log") {
            if (handlers.onLog) handlers.onLog(item);
          } else {
            events.push(item);
          }
        });
        take(events);
      },
      onClose: function () {
        window.clearInterval(poller);
        if (handlers.onClose) handlers.onClose();
      },
      onRefused: handlers.onRefused,
    });
  }

  RunFeed.prototype.close = function () {
    this.connection.close();
  };

  /* Every log line of a run's step after `afterId`, following the cursor pages. */
  function fetchLogs(runId, stepId, afterId) {
    var lines = [];
    function page(url) {
      return fetchJSON(url).then(function (body) {
        lines.push.apply(lines, body.results);
        return body.next ? page(body.next) : lines;
      });
    }
    var query = "?page_size=1000&step=" + encodeURIComponent(stepId) + (afterId ? "&after=" + encodeURIComponent(afterId) : "");
    return page("/api/runs/" + encodeURIComponent(runId) + "/logs/" + query);
  }

  /* Call fn at most once per `wait` ms, the last call winning (for REST refreshes on hints). */
  function debounce(fn, wait) {
    var timer = null, last = 0;
    return function () {
      if (timer) return;
      var delay = Math.max(0, last + wait - Date.now());
      timer = window.setTimeout(function () {
        timer = null;
        last = Date.now();
        fn();
      }, delay);
    };
  }

  window.Chordflow = Object.assign(window.Chordflow || {}, {
    connect: connect,
    fetchJSON: fetchJSON,
    fetchEvents: fetchEvents,
    fetchLogs: fetchLogs,
    flattenEvent: flatten,
    RunFeed: RunFeed,
    debounce: debounce,
  });
})();
