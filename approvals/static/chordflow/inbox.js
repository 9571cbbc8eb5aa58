/* The approvals inbox, live: on every "approvals changed" hint from /ws/approvals/ (and every 60 s)
 * it asks the server which approvals wait for this user and merges the rows in: new ones appear,
 * decided or expired ones go, and a row someone is typing a comment into is left as it is.
 * Decisions post the row's own form (CSRF token included) and read the answer as JSON. */
(function () {
  "use strict";

  var rows = document.getElementById("inbox-rows");
  var empty = document.getElementById("inbox-empty");
  var notice = document.getElementById("inbox-notice");
  var live = document.getElementById("inbox-live");
  if (!rows || !window.Chordflow) return;

  function say(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  function rowsById(container) {
    var found = {};
    container.querySelectorAll("tr[data-approval]").forEach(function (row) {
      found[row.getAttribute("data-approval")] = row;
    });
    return found;
  }

  function showEmpty() {
    empty.hidden = rows.querySelector("tr[data-approval]") !== null;
  }

  var refresh = Chordflow.debounce(function () {
    window
      .fetch(window.location.pathname + "?rows=1", { credentials: "same-origin" })
      .then(function (response) {
        // signed out meanwhile: the answer is the sign-in page, not an empty list; keep what is shown
        if (!response.ok || response.redirected) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) {
        var holder = document.createElement("tbody");
        holder.innerHTML = html; // our own template's rows, escaped by the server
        var fresh = rowsById(holder), shown = rowsById(rows);
        Object.keys(shown).forEach(function (id) {
          if (!fresh[id] && !shown[id].classList.contains("decided")) shown[id].remove();
        });
        Object.keys(fresh).forEach(function (id) {
          if (!shown[id]) {
            fresh[id].classList.add("arrived");
            rows.appendChild(fresh[id]);
          }
        });
        showEmpty();
      })
      .catch(function () {});
  }, 500);

  // Enter in a comment box must not decide anything: it would press the first button (approve).
  rows.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && event.target.name === "comment") event.preventDefault();
  });

  rows.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList.contains("inline-decide")) return;
    event.preventDefault();
    var button = event.submitter;
    var body = new FormData(form);
    if (button && button.name) body.append(button.name, button.value);
    var row = form.closest("tr");
    var outcome = form.querySelector(".outcome");
    form.querySelectorAll("button, input").forEach(function (field) {
      field.disabled = true;
    });
    window
      .fetch(form.action, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
      .then(function (response) {
        return response.json().catch(function () {
          return { ok: false, message: "The server answered " + response.status + "." };
        });
      })
      .then(function (answer) {
        outcome.textContent = answer.message;
        if (answer.ok) {
          row.classList.add("decided");
          say(answer.message);
          window.setTimeout(function () {
            row.remove();
            showEmpty();
          }, 1500);
        } else {
          row.classList.add("refused");
          form.querySelectorAll("button, input").forEach(function (field) {
            field.disabled = false;
          });
          refresh(); // someone else may have decided it: the list says so
        }
      })
      .catch(function () {
        outcome.textContent = "Could not reach the server; try again.";
        form.querySelectorAll("button, input").forEach(function (field) {
          field.disabled = false;
        });
      });
  });

  Chordflow.connect("/ws/approvals/", {
    onOpen: function () {
      live.setAttribute("data-state", "live");
      live.textContent = "live";
      refresh();
    },
    onItems: refresh,
    onClose: function () {
      live.setAttribute("data-state", "connecting");
      live.textContent = "reconnecting…";
    },
    onRefused: function () {
      live.setAttribute("data-state", "refused");
      live.textContent = "not live";
    },
  });
  window.setInterval(refresh, 60000);
})();
