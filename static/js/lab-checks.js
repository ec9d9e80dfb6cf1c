// KubeLab exercise cards: the Check button, live verdicts, hints, solutions.
//
// Each .exercise-card (templates/grader/_exercise.html) carries its URLs in
// data attributes. Check POSTs with the CSRF token, then waits for the
// verdict: the lab page re-dispatches every events-socket message as a
// "kubelab:event" CustomEvent; a {"type": "check"} message for this exercise
// updates the card. If nothing arrives within 3 s, the card polls the
// submission's status URL every second instead.
//
// Check output is hostile: it is always inserted with textContent. Hints and
// solutions are server-rendered Markdown, sanitised by an allow-list.
(function () {
  "use strict";

  // Hints are short Markdown-ish text: `code` spans become <code>, everything
  // else stays text (built with DOM nodes, never innerHTML).
  function appendWithCode(parent, text) {
    String(text).split("`").forEach(function (part, i) {
      if (!part) return;
      if (i % 2 === 1) {
        var code = document.createElement("code");
        code.textContent = part;
        parent.appendChild(code);
      } else {
        parent.appendChild(document.createTextNode(part));
      }
    });
  }

  var POLL_AFTER = 3000;
  var POLL_EVERY = 1000;
  var STATUS_TEXT = {
    queued: "Waiting for a grader…",
    running: "Checking…",
    passed: "All checks passed.",
    failed: "Not yet: see what failed below.",
    error: "The check could not run.",
  };
  var CHECK_TEXT = { passed: "passed", failed: "failed", timeout: "timed out", error: "could not run" };

  // The page's own token first: under HTTPS the cookie is __Host-csrftoken, and a plain
  // "csrftoken" cookie may have been planted by a page on another name of this site.
  function csrfToken() {
    var config = document.getElementById("lab-config");
    if (config) {
      try {
        var token = JSON.parse(config.textContent).csrf_token;
        if (token) return token;
      } catch (error) {
        // fall through to the cookie
      }
    }
    var match = document.cookie.match(/(?:^|;\s*)(?:__Host-)?csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function post(url) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return { error: "Unexpected answer from the server (" + response.status + ")." };
        })
        .then(function (body) {
          body.httpStatus = response.status;
          return body;
        });
    });
  }

  function Card(root) {
    this.root = root;
    this.exercise = String(root.dataset.exercise);
    this.submission = null;
    this.statusUrl = null;
    this.pollTimer = null;
    this.waitTimer = null;
    this.part = function (role) {
      return root.querySelector('[data-role="' + role + '"]');
    };
    var self = this;
    var check = this.part("check");
    // Rendered disabled while the sandbox starts; the session's status events enable it.
    this.ready = !!check && !check.disabled;
    this.isBusy = false;
    if (check) check.addEventListener("click", function () { self.check(); });
    var hint = this.part("hint");
    if (hint) hint.addEventListener("click", function () { self.hint(); });
    var solution = this.part("solution");
    if (solution) solution.addEventListener("click", function () { self.solution(); });
    if (root.dataset.lastSubmissionUrl) this.fetchStatus(root.dataset.lastSubmissionUrl);
  }

  Card.prototype.message = function (text, kind) {
    var el = this.part("message");
    el.textContent = text || "";
    el.dataset.kind = kind || "";
  };

  Card.prototype.busy = function (on) {
    this.isBusy = !!on;
    var button = this.part("check");
    if (button) button.disabled = this.isBusy || !this.ready;
    this.root.dataset.busy = on ? "true" : "false";
  };

  Card.prototype.check = function () {
    var self = this;
    self.busy(true);
    self.message(STATUS_TEXT.queued);
    self.root.dataset.state = "queued";
    post(self.root.dataset.checkUrl)
      .then(function (body) {
        if (body.httpStatus !== 202) {
          self.busy(false);
          self.message(body.error || "The check could not start.", "error");
          return;
        }
        self.submission = body.submission.submission;
        self.statusUrl = body.submission.url;
        self.render(body.submission);
        self.waitTimer = window.setTimeout(function () { self.startPolling(); }, POLL_AFTER);
      })
      .catch(function () {
        self.busy(false);
        self.message("The server cannot be reached. Check your connection and try again.", "error");
      });
  };

  Card.prototype.startPolling = function () {
    var self = this;
    if (self.pollTimer || !self.statusUrl) return;
    self.pollTimer = window.setInterval(function () { self.fetchStatus(self.statusUrl); }, POLL_EVERY);
  };

  Card.prototype.stopWaiting = function () {
    window.clearTimeout(this.waitTimer);
    window.clearInterval(this.pollTimer);
    this.waitTimer = this.pollTimer = null;
  };

  Card.prototype.fetchStatus = function (url) {
    var self = this;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) { if (state) self.render(state); })
      .catch(function () {});
  };

  Card.prototype.onEvent = function (message) {
    if (message && message.type === "status") {
      this.ready = message.status === "ready";
      this.busy(this.isBusy);
      return;
    }
    if (!message || message.type !== "check" || String(message.exercise) !== this.exercise) return;
    if (this.submission !== null && message.submission < this.submission) return;
    this.submission = message.submission;
    window.clearTimeout(this.waitTimer); // the socket works: no need to poll
    this.render(message);
  };

  Card.prototype.render = function (state) {
    this.root.dataset.state = state.status;
    this.root.dataset.submission = String(state.submission);
    this.message(state.error || STATUS_TEXT[state.status] || state.status, state.status);
    if (state.tests && state.tests.length) this.renderTests(state.tests);
    if (state.finished) {
      this.stopWaiting();
      this.busy(false);
    } else {
      this.busy(true);
    }
    if (state.progress) this.renderProgress(state.progress);
  };

  Card.prototype.renderTests = function (tests) {
    var list = this.part("checks");
    while (list.firstChild) list.removeChild(list.firstChild);
    tests.forEach(function (test) {
      var item = document.createElement("li");
      item.className = "check";
      item.dataset.status = test.status;
      var name = document.createElement("span");
      name.className = "check-name";
      name.textContent = test.name;
      var verdict = document.createElement("span");
      verdict.className = "check-verdict";
      verdict.textContent = CHECK_TEXT[test.status] || test.status;
      item.appendChild(name);
      item.appendChild(verdict);
      if (test.output && test.status !== "passed") {
        var output = document.createElement("pre");
        output.className = "check-output";
        output.textContent = test.output;
        item.appendChild(output);
      }
      if (test.hint) {
        var hint = document.createElement("p");
        hint.className = "check-hint";
        appendWithCode(hint, test.hint);
        item.appendChild(hint);
      }
      list.appendChild(item);
    });
  };

  Card.prototype.renderProgress = function (progress) {
    var badge = this.part("badge");
    if (badge) {
      badge.textContent =
        progress.status === "passed"
          ? "Passed"
          : progress.attempts
          ? progress.attempts + " attempt" + (progress.attempts === 1 ? "" : "s")
          : "Not checked yet";
    }
    var hint = this.part("hint");
    if (hint) hint.hidden = !progress.hint_available;
    var solution = this.part("solution");
    if (solution && progress.solution_available) solution.textContent = "Show the solution";
  };

  Card.prototype.hint = function () {
    var self = this;
    post(self.root.dataset.hintUrl).then(function (body) {
      if (body.httpStatus !== 200) {
        self.message(body.error, "info");
        return;
      }
      var box = self.part("hints");
      box.innerHTML = ""; // server-rendered, sanitised Markdown
      body.hints.forEach(function (html) {
        var div = document.createElement("div");
        div.className = "hint";
        div.innerHTML = html;
        box.appendChild(div);
      });
      self.renderProgress(body.progress);
    });
  };

  Card.prototype.solution = function () {
    var self = this;
    post(self.root.dataset.solutionUrl).then(function (body) {
      if (body.httpStatus !== 200) {
        self.message(body.error, "info");
        return;
      }
      var box = self.part("solution-body");
      box.innerHTML = body.solution; // server-rendered, sanitised Markdown
      box.hidden = false;
      self.renderProgress(body.progress);
    });
  };

  function bind() {
    var cards = Array.prototype.map.call(document.querySelectorAll(".exercise-card"), function (root) {
      return new Card(root);
    });
    window.addEventListener("kubelab:event", function (event) {
      cards.forEach(function (card) { card.onEvent(event.detail); });
    });
    var kubelab = (window.kubelab = window.kubelab || {});
    kubelab.exerciseCards = cards;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", bind);
  else bind();
})();
