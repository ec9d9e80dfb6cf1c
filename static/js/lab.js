// KubeLab lab page: steps on one side, terminals on the other.
//
// Pieces: the resizable split (pointer and keyboard, remembered), the step
// pager, terminal tabs (lab-terminal.js does each connection), the events
// socket that pushes the session's state (provisioning progress, ready,
// failed, ended, time left), click-to-run and copy buttons on code blocks,
// and the confirm dialog of Reset / Stop.
//
// Hooks for tests: #terminal-<n> panels and [data-terminal=<n>] tabs carry
// data-state; #lab-app carries data-session-status; window.kubelab exposes
// terminals[n] (the xterm.js Terminal), tabs[n], state and config.
(function () {
  "use strict";

  var kubelab = (window.kubelab = window.kubelab || {});

  var HEARTBEAT_EVERY = 60000;
  // While the sandbox starts (or stops) the page also asks for the session's state this
  // often: a status push that never arrived then costs a few seconds, not the lab.
  var STATE_POLL_EVERY = 4000;
  var FONT_MIN = 9;
  var FONT_MAX = 28;
  var SPLIT_MIN = 15;
  var SPLIT_MAX = 85;
  var STACK_QUERY = "(max-width: 900px)";

  var STATUS_LABELS = {
    starting: "Starting",
    ready: "Ready",
    failed: "Failed",
    stopping: "Stopping",
    stopped: "Stopped",
    pausing: "Pausing",
    paused: "Paused",
    resuming: "Resuming",
  };
  var END_REASONS = {
    stopped: "You stopped it.",
    reset: "It was replaced by a fresh sandbox.",
    idle: "It was stopped after a long time without activity.",
    expired: "It reached its time limit.",
    failed: "Its sandbox could not start.",
    lost: "Its sandbox disappeared (the server may have restarted).",
    "pause-expired": "It stayed paused for longer than paused labs are kept, and was deleted.",
  };

  // --- small helpers ------------------------------------------------------------------

  var store = {
    get: function (key, fallback) {
      try {
        var raw = window.localStorage.getItem(key);
        return raw === null ? fallback : JSON.parse(raw);
      } catch (error) {
        return fallback;
      }
    },
    set: function (key, value) {
      try {
        window.localStorage.setItem(key, JSON.stringify(value));
      } catch (error) {
        // private mode or quota: the page works without remembering
      }
    },
  };

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  function clamp(value, low, high) {
    return Math.max(low, Math.min(high, value));
  }

  function formatDuration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    var mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }

  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  var toastTimer = null;
  function toast(message) {
    var box = $("#term-toast");
    if (!box || !message) {
      return;
    }
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () {
      box.hidden = true;
    }, 6000);
  }

  function ready(fn) {
    if (document.readyState !== "loading") {
      fn();
    } else {
      document.addEventListener("DOMContentLoaded", fn);
    }
  }

  ready(function () {
    var app = $("#lab-app");
    var configNode = document.getElementById("lab-config");
    if (!app || !configNode) {
      return;
    }
    var config = JSON.parse(configNode.textContent);
    var readOnly = config.mode === "ro";
    var maxTerminals = Math.max(1, config.max_terminals || 1);
    var sessionKey = "kubelab.session." + config.session;
    var sessionStatus = app.getAttribute("data-session-status") || "starting";
    var lastState = null;

    kubelab.config = config;
    kubelab.terminals = {};
    kubelab.tabs = {};
    kubelab.toast = toast;

    // --- layout: the split and the narrow-screen toggle -----------------------------------

    var workspace = $("#lab-workspace");
    var splitter = $("#lab-splitter");
    var stepsToggle = $("#steps-toggle");
    var stackQuery = window.matchMedia(STACK_QUERY);

    function splitKey() {
      return stackQuery.matches ? "kubelab.split.rows" : "kubelab.split.cols";
    }

    function defaultSplit() {
      return stackQuery.matches ? 42 : 40;
    }

    function applySplit(pct, save) {
      pct = clamp(Math.round(pct * 10) / 10, SPLIT_MIN, SPLIT_MAX);
      workspace.style.setProperty("--split", pct + "%");
      splitter.setAttribute("aria-valuenow", String(Math.round(pct)));
      if (save) {
        store.set(splitKey(), pct);
      }
      return pct;
    }

    function setCollapsed(collapsed) {
      workspace.classList.toggle("steps-collapsed", collapsed);
      stepsToggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
      $(".steps-toggle-label", stepsToggle).textContent = collapsed ? "Show steps" : "Hide steps";
      store.set("kubelab.stepsCollapsed", collapsed);
      scheduleFit();
    }

    function applyLayout() {
      var stacked = stackQuery.matches;
      splitter.setAttribute("aria-orientation", stacked ? "horizontal" : "vertical");
      stepsToggle.hidden = !stacked;
      applySplit(store.get(splitKey(), defaultSplit()), false);
      setCollapsed(stacked && store.get("kubelab.stepsCollapsed", false));
    }

    function splitFromPointer(event) {
      var rect = workspace.getBoundingClientRect();
      return stackQuery.matches
        ? ((event.clientY - rect.top) / rect.height) * 100
        : ((event.clientX - rect.left) / rect.width) * 100;
    }

    splitter.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) {
        return;
      }
      event.preventDefault();
      splitter.setPointerCapture(event.pointerId);
      document.body.classList.add("is-resizing");
      splitter.classList.add("is-dragging");
    });
    splitter.addEventListener("pointermove", function (event) {
      if (splitter.hasPointerCapture && splitter.hasPointerCapture(event.pointerId)) {
        applySplit(splitFromPointer(event), false);
      }
    });
    function endDrag(event) {
      if (!splitter.classList.contains("is-dragging")) {
        return;
      }
      splitter.classList.remove("is-dragging");
      document.body.classList.remove("is-resizing");
      if (splitter.hasPointerCapture(event.pointerId)) {
        splitter.releasePointerCapture(event.pointerId);
      }
      store.set(splitKey(), parseFloat(workspace.style.getPropertyValue("--split")) || defaultSplit());
      scheduleFit();
    }
    splitter.addEventListener("pointerup", endDrag);
    splitter.addEventListener("pointercancel", endDrag);
    splitter.addEventListener("dblclick", function () {
      applySplit(defaultSplit(), true);
    });
    splitter.addEventListener("keydown", function (event) {
      var now = parseFloat(splitter.getAttribute("aria-valuenow")) || defaultSplit();
      var step = event.shiftKey ? 10 : 2;
      var next = null;
      if (event.key === "ArrowLeft" || event.key === "ArrowUp") {
        next = now - step;
      } else if (event.key === "ArrowRight" || event.key === "ArrowDown") {
        next = now + step;
      } else if (event.key === "Home") {
        next = SPLIT_MIN;
      } else if (event.key === "End") {
        next = SPLIT_MAX;
      } else if (event.key === "Enter" && stackQuery.matches) {
        setCollapsed(!workspace.classList.contains("steps-collapsed"));
        event.preventDefault();
        return;
      }
      if (next !== null) {
        event.preventDefault();
        applySplit(next, true);
      }
    });
    stepsToggle.addEventListener("click", function () {
      setCollapsed(!workspace.classList.contains("steps-collapsed"));
    });
    if (stackQuery.addEventListener) {
      stackQuery.addEventListener("change", applyLayout);
    }
    applyLayout();

    // --- steps ----------------------------------------------------------------------------------

    var steps = Array.prototype.slice.call(document.querySelectorAll(".step[data-step]"));
    var stepNumbers = steps.map(function (el) {
      return Number(el.getAttribute("data-step"));
    });
    var pager = $("#steps-pager");
    var prevButton = $("[data-step-prev]", pager);
    var nextButton = $("[data-step-next]", pager);
    var position = $("[data-step-position]", pager);
    var stepsBody = $("#steps-body");
    var visited = store.get(sessionKey + ".visited", []);
    var currentStep = null;

    function showStep(number, moveFocus) {
      if (stepNumbers.indexOf(number) < 0) {
        number = stepNumbers[0];
      }
      currentStep = number;
      var index = stepNumbers.indexOf(number);
      steps.forEach(function (el, i) {
        el.hidden = i !== index;
      });
      if (visited.indexOf(number) < 0) {
        visited.push(number);
        store.set(sessionKey + ".visited", visited);
      }
      document.querySelectorAll("[data-step-link]").forEach(function (link) {
        var n = Number(link.getAttribute("data-step-link"));
        if (n === number) {
          link.setAttribute("aria-current", "step");
        } else {
          link.removeAttribute("aria-current");
        }
        link.classList.toggle("is-visited", visited.indexOf(n) >= 0);
      });
      prevButton.disabled = index <= 0;
      nextButton.disabled = index >= stepNumbers.length - 1;
      var real = stepNumbers.filter(function (n) {
        return n > 0;
      });
      position.textContent = number === 0 ? "Introduction" : "Step " + number + " of " + real.length;
      app.setAttribute("data-current-step", String(number));
      store.set(sessionKey + ".step", number);
      if (history.replaceState) {
        history.replaceState(null, "", "#step-" + number);
      }
      stepsBody.scrollTop = 0;
      if (moveFocus) {
        var title = $(".step-title", steps[index]);
        if (title) {
          title.focus({ preventScroll: true });
        }
      }
    }

    if (steps.length) {
      pager.hidden = false;
      app.classList.add("has-pager");
      var fromHash = /^#step-(\d+)$/.exec(location.hash);
      var first = fromHash ? Number(fromHash[1]) : store.get(sessionKey + ".step", stepNumbers[0]);
      showStep(first, false);
      prevButton.addEventListener("click", function () {
        showStep(stepNumbers[stepNumbers.indexOf(currentStep) - 1], true);
      });
      nextButton.addEventListener("click", function () {
        showStep(stepNumbers[stepNumbers.indexOf(currentStep) + 1], true);
      });
      document.querySelectorAll("[data-step-link]").forEach(function (link) {
        link.addEventListener("click", function (event) {
          event.preventDefault();
          showStep(Number(link.getAttribute("data-step-link")), true);
        });
      });
      window.addEventListener("hashchange", function () {
        var match = /^#step-(\d+)$/.exec(location.hash);
        if (match) {
          showStep(Number(match[1]), true);
        }
      });
    }

    // --- terminal tabs ----------------------------------------------------------------------------

    var tabList = $("#term-tabs");
    var panels = $("#term-panels");
    var addButton = $("#term-add");
    var connLabel = $("#term-conn");
    var fontLabel = $("#font-size");
    var defaultFont = window.matchMedia("(max-width: 600px)").matches ? 13 : 14;
    var fontSize = clamp(store.get("kubelab.fontSize", defaultFont), FONT_MIN, FONT_MAX);
    var order = []; // open terminal numbers, in tab order
    var active = null;
    var saved = store.get(sessionKey + ".tabs", null);

    function isReady() {
      return sessionStatus === "ready";
    }

    function isEnded() {
      return ["failed", "stopping", "stopped", "gone"].indexOf(sessionStatus) >= 0;
    }

    function saveTabs() {
      if (!readOnly) {
        store.set(sessionKey + ".tabs", { open: order, active: active });
      }
    }

    function describe(tab) {
      switch (tab.state) {
        case "connected":
          return "Connected" + (tab.latency !== null ? " · " + tab.latency + " ms" : "");
        case "observing":
          return "Read-only · observing";
        case "connecting":
          return "Connecting…";
        case "reconnecting": {
          var left = Math.ceil((tab.retryAt - Date.now()) / 1000);
          return tab.retryAt && left > 0 ? "Reconnecting in " + left + " s" : "Reconnecting…";
        }
        case "waiting":
          return isEnded() ? "Disconnected" : "Waiting for the sandbox";
        case "exited":
          return "Shell ended";
        default:
          return "Disconnected";
      }
    }

    function renderTab(tab) {
      var label = describe(tab);
      var wrapper = tab.tabElement;
      wrapper.setAttribute("data-state", tab.state);
      $(".tab-state", wrapper).textContent = label;
      $("[role=tab]", wrapper).title = "Terminal " + tab.number + ": " + label;
      var banner = $(".panel-banner", tab.panel);
      var showBanner =
        ["reconnecting", "disconnected", "exited"].indexOf(tab.state) >= 0 ||
        (tab.state === "waiting" && isReady());
      banner.hidden = !showBanner || isEnded();
      if (showBanner) {
        var text = label + (tab.detail ? " — " + tab.detail : "");
        $(".panel-banner-text", banner).textContent = text;
        var action = $("button", banner);
        if (tab.state === "exited" && !readOnly) {
          action.textContent = "Start a new shell";
        } else {
          action.textContent = tab.state === "reconnecting" ? "Reconnect now" : "Reconnect";
        }
        action.hidden = !isReady();
      }
      if (tab.number === active) {
        connLabel.textContent = label;
        connLabel.setAttribute("data-state", tab.state);
      }
    }

    function createTab(number) {
      var wrapper = document.createElement("div");
      wrapper.className = "term-tab";
      wrapper.id = "term-tab-" + number;
      wrapper.setAttribute("data-terminal", String(number));
      wrapper.setAttribute("data-state", "waiting");
      var button = document.createElement("button");
      button.type = "button";
      button.setAttribute("role", "tab");
      button.id = "term-tab-button-" + number;
      button.setAttribute("aria-controls", "terminal-" + number);
      button.setAttribute("aria-selected", "false");
      button.tabIndex = -1;
      button.innerHTML =
        '<span class="state-dot" aria-hidden="true"></span><span class="tab-label"></span>' +
        '<span class="visually-hidden tab-state"></span>';
      $(".tab-label", button).textContent = "Terminal " + number;
      wrapper.appendChild(button);
      var close = document.createElement("button");
      close.type = "button";
      close.className = "tab-close";
      close.setAttribute("aria-label", "Close terminal " + number);
      close.title = "Close this tab (the shell keeps running)";
      close.textContent = "×";
      wrapper.appendChild(close);

      var panel = document.createElement("div");
      panel.className = "term-panel";
      panel.id = "terminal-" + number;
      panel.setAttribute("role", "tabpanel");
      panel.setAttribute("aria-labelledby", button.id);
      panel.setAttribute("data-terminal", String(number));
      panel.hidden = true;
      var screen = document.createElement("div");
      screen.className = "term-screen";
      panel.appendChild(screen);
      var banner = document.createElement("div");
      banner.className = "panel-banner";
      banner.hidden = true;
      banner.innerHTML =
        '<span class="panel-banner-text"></span><button type="button" class="lab-button"></button>';
      panel.appendChild(banner);

      // keep tabs in numeric order
      var before = null;
      order.forEach(function (n) {
        if (n > number && (before === null || n < before)) {
          before = n;
        }
      });
      tabList.insertBefore(wrapper, before === null ? null : $("#term-tab-" + before));
      panels.appendChild(panel);
      panel.hidden = false; // measurable while xterm opens
      var tab = new kubelab.TerminalTab({
        number: number,
        baseUrl: config.terminal_url,
        mode: config.mode,
        panel: panel,
        screen: screen,
        fontSize: fontSize,
        sessionReady: isReady,
        sessionEnded: isEnded,
        onStateChange: renderTab,
        onNotice: toast,
        onSignedOut: signedOut,
      });
      tab.fit(); // sized before it connects: the shell starts with the right rows and columns
      panel.hidden = number !== active;
      tab.tabElement = wrapper;
      kubelab.tabs[number] = tab;
      kubelab.terminals[number] = tab.term;
      order.push(number);
      order.sort(function (a, b) {
        return a - b;
      });

      button.addEventListener("click", function () {
        activate(number, true);
      });
      button.addEventListener("keydown", onTabKey);
      close.addEventListener("click", function () {
        closeTab(number);
      });
      $("button", banner).addEventListener("click", function () {
        tab.reconnectNow();
        tab.focus();
      });
      renderTab(tab);
      updateTabControls();
      tab.connect();
      return tab;
    }

    function onTabKey(event) {
      var index = order.indexOf(active);
      var next = null;
      if (event.key === "ArrowRight") {
        next = order[(index + 1) % order.length];
      } else if (event.key === "ArrowLeft") {
        next = order[(index - 1 + order.length) % order.length];
      } else if (event.key === "Home") {
        next = order[0];
      } else if (event.key === "End") {
        next = order[order.length - 1];
      }
      if (next !== null && next !== undefined) {
        event.preventDefault();
        activate(next, false);
        $("#term-tab-button-" + next).focus();
      }
    }

    function activate(number, focusTerminal) {
      if (!kubelab.tabs[number]) {
        return;
      }
      active = number;
      order.forEach(function (n) {
        var tab = kubelab.tabs[n];
        var selected = n === number;
        tab.panel.hidden = !selected;
        var button = $("[role=tab]", tab.tabElement);
        button.setAttribute("aria-selected", selected ? "true" : "false");
        button.tabIndex = selected ? 0 : -1;
        tab.tabElement.classList.toggle("is-active", selected);
      });
      var tab = kubelab.tabs[number];
      tab.fit();
      renderTab(tab);
      saveTabs();
      if (focusTerminal) {
        tab.focus();
      }
    }

    function closeTab(number) {
      if (order.length <= 1) {
        return;
      }
      var tab = kubelab.tabs[number];
      var index = order.indexOf(number);
      tab.dispose();
      tab.tabElement.remove();
      tab.panel.remove();
      delete kubelab.tabs[number];
      delete kubelab.terminals[number];
      order.splice(index, 1);
      if (active === number) {
        activate(order[Math.min(index, order.length - 1)], true);
      }
      updateTabControls();
      saveTabs();
    }

    function nextFreeNumber() {
      for (var n = 1; n <= maxTerminals; n++) {
        if (order.indexOf(n) < 0) {
          return n;
        }
      }
      return null;
    }

    function updateTabControls() {
      var single = order.length <= 1;
      tabList.classList.toggle("is-single", single);
      if (addButton) {
        var full = nextFreeNumber() === null;
        addButton.disabled = full;
        addButton.title = full ? "At most " + maxTerminals + " terminals" : "Open another terminal";
      }
    }

    function openTerminal(number, focus) {
      number = number || nextFreeNumber();
      if (!number || number > maxTerminals) {
        return null;
      }
      if (!kubelab.tabs[number]) {
        createTab(number);
      }
      activate(number, focus !== false);
      return kubelab.tabs[number];
    }

    if (addButton) {
      addButton.addEventListener("click", function () {
        openTerminal(null, true);
      });
    }

    function setFont(size) {
      fontSize = clamp(size, FONT_MIN, FONT_MAX);
      fontLabel.textContent = fontSize + "px";
      $("#font-smaller").disabled = fontSize <= FONT_MIN;
      $("#font-larger").disabled = fontSize >= FONT_MAX;
      order.forEach(function (n) {
        kubelab.tabs[n].setFontSize(fontSize);
      });
      store.set("kubelab.fontSize", fontSize);
    }
    $("#font-smaller").addEventListener("click", function () {
      setFont(fontSize - 1);
    });
    $("#font-larger").addEventListener("click", function () {
      setFont(fontSize + 1);
    });
    setFont(fontSize);

    // Fit the visible terminal whenever its box changes size (split drag,
    // window resize, font load), at most once a frame.
    var fitFrame = 0;
    function scheduleFit() {
      if (fitFrame) {
        return;
      }
      fitFrame = requestAnimationFrame(function () {
        fitFrame = 0;
        if (active !== null && kubelab.tabs[active]) {
          kubelab.tabs[active].fit();
        }
      });
    }
    if (window.ResizeObserver) {
      new ResizeObserver(scheduleFit).observe($("#term-stage"));
    } else {
      window.addEventListener("resize", scheduleFit);
    }
    if (document.fonts && document.fonts.ready) {
      document.fonts.ready.then(scheduleFit);
    }

    // Restore the tabs this browser had open, else terminal 1.
    var initial = saved && Array.isArray(saved.open) && saved.open.length ? saved.open : [1];
    initial = initial.filter(function (n) {
      return Number.isInteger(n) && n >= 1 && n <= maxTerminals;
    });
    if (!initial.length) {
      initial = [1];
    }
    active = saved && initial.indexOf(saved.active) >= 0 ? saved.active : initial[0];
    initial.forEach(function (n) {
      createTab(n);
    });
    activate(active, false);

    // Once a second: time left and "reconnecting in N s".
    setInterval(function () {
      order.forEach(function (n) {
        if (kubelab.tabs[n].state === "reconnecting") {
          renderTab(kubelab.tabs[n]);
        }
      });
      renderTimeLeft();
    }, 1000);

    // --- session state (events socket) -------------------------------------------------------

    var overlay = $("#term-overlay");
    var pill = $("#session-status");
    var progressList = $("#progress-list");
    var queuePlace = $("#queue-place");
    var timeLeft = $("#time-left");
    var timeWarning = $("#time-warning");
    var secondsLeftBase = null;
    var secondsLeftAt = 0;
    var warnBefore = config.warn_before || 300;
    var warningDismissed = false;

    function showOverlay(name) {
      overlay.hidden = !name;
      overlay.querySelectorAll("[data-overlay]").forEach(function (part) {
        part.hidden = part.getAttribute("data-overlay") !== name;
      });
      app.setAttribute("data-overlay", name || "");
    }

    function renderProgress(progress) {
      progressList.textContent = "";
      (progress || []).forEach(function (entry, i, all) {
        var item = document.createElement("li");
        var last = i === all.length - 1;
        item.className = last && sessionStatus === "starting" ? "is-current" : "is-done";
        item.setAttribute("data-stage", entry.stage || "");
        item.textContent = entry.message || entry.stage;
        progressList.appendChild(item);
      });
    }

    function aboutDuration(seconds) {
      if (seconds < 60) {
        return "about " + Math.max(1, Math.round(seconds)) + " s";
      }
      var minutes = Math.ceil(seconds / 60);
      return "about " + minutes + " minute" + (minutes === 1 ? "" : "s");
    }

    // The session's place in the provisioning queue while no worker builds it yet:
    // {ahead, estimate_seconds} from the server (labs/selectors.py), or null.
    function renderQueue(queue) {
      if (!queuePlace) {
        return;
      }
      if (!queue || sessionStatus !== "starting") {
        queuePlace.hidden = true;
        queuePlace.removeAttribute("data-ahead");
        return;
      }
      var ahead = Math.max(0, queue.ahead | 0);
      var text =
        ahead === 0
          ? "You are next in line for a sandbox."
          : ahead + (ahead === 1 ? " student" : " students") + " ahead of you.";
      if (typeof queue.estimate_seconds === "number") {
        text += " Ready in " + aboutDuration(queue.estimate_seconds) + ".";
      } else {
        text += " No estimate yet: no sandbox was built recently.";
      }
      queuePlace.textContent = text;
      queuePlace.setAttribute("data-ahead", String(ahead));
      queuePlace.hidden = false;
    }

    function secondsLeft() {
      if (secondsLeftBase === null) {
        return null;
      }
      return secondsLeftBase - (performance.now() - secondsLeftAt) / 1000;
    }

    function renderTimeLeft() {
      var left = secondsLeft();
      var live = sessionStatus === "ready" || sessionStatus === "starting";
      if (left === null || !live) {
        timeLeft.hidden = true;
        timeWarning.hidden = true;
        return;
      }
      timeLeft.hidden = false;
      $("[data-time-left]", timeLeft).textContent = formatDuration(left) + " left";
      var warn = left <= warnBefore;
      timeLeft.classList.toggle("is-warning", warn);
      timeLeft.setAttribute("data-warning", warn ? "true" : "false");
      if (warn && !warningDismissed) {
        timeWarning.hidden = false;
        var text =
          left > 0
            ? "Your sandbox stops in " +
              formatDuration(left) +
              ". Anything you have not saved elsewhere will be lost."
            : "Time is up: your sandbox stops any moment now.";
        var span = $(".time-warning-text", timeWarning);
        if (!span) {
          timeWarning.innerHTML =
            '<span class="time-warning-text"></span>' +
            '<button type="button" class="tab-close" aria-label="Dismiss the warning">×</button>';
          span = $(".time-warning-text", timeWarning);
          $("button", timeWarning).addEventListener("click", function () {
            warningDismissed = true;
            timeWarning.hidden = true;
          });
        }
        span.textContent = text;
      } else {
        timeWarning.hidden = true;
      }
    }

    function setStatus(status) {
      var previous = sessionStatus;
      sessionStatus = status;
      app.setAttribute("data-session-status", status);
      pill.setAttribute("data-status", status);
      $(".status-text", pill).textContent =
        STATUS_LABELS[status] || (status === "gone" ? "Unavailable" : status);
      if (status === "ready") {
        showOverlay(null);
        order.forEach(function (n) {
          var tab = kubelab.tabs[n];
          var idle = tab.state === "waiting" || tab.state === "disconnected";
          if (idle || (previous !== "ready" && tab.state === "reconnecting")) {
            tab.connect();
          }
        });
      } else if (status === "starting") {
        showOverlay("starting");
      } else if (status === "pausing" || status === "resuming") {
        $("#transition-title").textContent =
          status === "pausing" ? "Pausing your lab: keeping your work" : "Resuming your lab";
        showOverlay("transition");
      } else if (status === "paused") {
        showOverlay("paused");
      } else if (status === "failed") {
        showOverlay("failed");
      } else if (status === "gone") {
        showOverlay("gone");
      } else {
        showOverlay("ended");
      }
      if (isEnded()) {
        order.forEach(function (n) {
          kubelab.tabs[n].halt(
            status === "failed" ? "The sandbox could not start." : "The lab session has ended."
          );
        });
      } else if (status === "pausing" || status === "paused") {
        // the shells end with the pause; Resume opens new ones where these were
        order.forEach(function (n) {
          kubelab.tabs[n].halt("The lab is paused.");
        });
      }
      renderTimeLeft();
    }

    // When a paused lab is deleted (LAB_PAUSED_RETENTION), in the reader's own time zone.
    function renderPausedUntil(iso) {
      var text = $("#paused-until-text");
      var time = $("#paused-until");
      if (!text || !time) {
        return;
      }
      if (!iso) {
        text.hidden = true;
        return;
      }
      var when = new Date(iso);
      time.setAttribute("datetime", iso);
      time.textContent = isNaN(when.getTime())
        ? iso
        : when.toLocaleString(undefined, { dateStyle: "full", timeStyle: "short" });
      text.hidden = false;
    }

    var lastErrorShown = "";

    function applyState(state) {
      if (!state || state.type !== "status") {
        return;
      }
      lastState = state;
      kubelab.state = state;
      if (typeof state.seconds_left === "number") {
        secondsLeftBase = state.seconds_left;
        secondsLeftAt = performance.now();
      }
      if (state.warn_before) {
        warnBefore = state.warn_before;
      }
      $("#session-error").textContent = state.error || "";
      $("#paused-error").textContent = state.status === "paused" ? state.error || "" : "";
      if (state.status === "ready" && state.error && state.error !== lastErrorShown) {
        toast(state.error); // e.g. a pause that failed: the lab runs on as it was
      }
      lastErrorShown = state.error || "";
      renderPausedUntil(state.paused_until);
      $("#end-reason").textContent = END_REASONS[state.end_reason] || "";
      // Progress first: setStatus marks the last stage done or current.
      sessionStatus = state.status;
      renderProgress(state.progress);
      renderQueue(state.queue);
      setStatus(state.status);
      if (readOnly && state.status === "ready") {
        // Observers follow the student's terminals as they are opened.
        (state.terminals || []).forEach(function (n) {
          if (n >= 1 && n <= maxTerminals) {
            if (!kubelab.tabs[n]) {
              createTab(n);
              updateTabControls();
            } else if (kubelab.tabs[n].state === "disconnected") {
              kubelab.tabs[n].reconnectNow();
            }
          }
        });
      }
    }

    var events = null;
    var eventsAttempt = 0;
    var eventsRetry = null;
    var pageSignedOut = false;

    // A socket closed with 4401: the sign-in that opened the page ended (signed out in
    // another tab, password changed, account disabled, another account signed in in this
    // browser). Nothing reconnects: the page says so and offers to sign in again.
    function signedOut() {
      if (pageSignedOut) {
        return;
      }
      pageSignedOut = true;
      app.setAttribute("data-signed-out", "true");
      clearTimeout(eventsRetry);
      eventsRetry = null;
      eventsState.hidden = true;
      if (events) {
        events.onclose = null;
        events.close(1000);
        events = null;
      }
      order.forEach(function (n) {
        kubelab.tabs[n].signedOut = true;
        kubelab.tabs[n].halt("You are signed out.");
      });
      showOverlay("signed-out");
    }
    var lastHeartbeat = 0;
    var eventsState = $("#events-state");

    function heartbeat(force) {
      if (readOnly || document.visibilityState !== "visible") {
        return;
      }
      if (!force && Date.now() - lastHeartbeat < HEARTBEAT_EVERY - 1000) {
        return;
      }
      if (events && events.readyState === WebSocket.OPEN) {
        events.send(JSON.stringify({ type: "heartbeat" }));
        lastHeartbeat = Date.now();
      }
    }

    function requestState() {
      if (events && events.readyState === WebSocket.OPEN) {
        events.send(JSON.stringify({ type: "state" }));
      }
    }

    function connectEvents() {
      clearTimeout(eventsRetry);
      eventsRetry = null;
      if (events || pageSignedOut) {
        return;
      }
      var socket = new WebSocket(wsUrl(config.events_url));
      events = socket;
      var openedAt = 0;
      socket.onopen = function () {
        openedAt = Date.now();
        eventsState.hidden = true;
        app.setAttribute("data-events", "open");
        heartbeat(true); // opening the page is activity too
        // The server sends the state on connect; ask again so nothing missed while the
        // socket was down depends on that first message (a heartbeat answers it too).
        if (readOnly || document.visibilityState !== "visible") {
          requestState();
        }
      };
      socket.onmessage = function (event) {
        var state;
        try {
          state = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        // Every message is offered to the page's other scripts (lab-checks.js
        // listens for check verdicts); only status messages describe the session.
        window.dispatchEvent(new CustomEvent("kubelab:event", { detail: state }));
        if (state.type === "status") {
          applyState(state);
        } else if (state.type === "queue") {
          renderQueue(state.queue);
        }
      };
      socket.onclose = function (event) {
        events = null;
        app.setAttribute("data-events", "closed");
        if (openedAt && Date.now() - openedAt > 5000) {
          eventsAttempt = 0;
        }
        if (event.code === 4401) {
          signedOut();
          return;
        }
        if (event.code === 4404) {
          setStatus("gone");
          return;
        }
        if (sessionStatus === "stopped" || sessionStatus === "failed") {
          return; // nothing more will happen to this session
        }
        eventsState.hidden = false;
        var delay = kubelab.backoffDelay(eventsAttempt);
        eventsAttempt += 1;
        eventsRetry = setTimeout(connectEvents, delay);
      };
    }

    setInterval(function () {
      heartbeat(false);
    }, HEARTBEAT_EVERY);
    setInterval(function () {
      if (["starting", "stopping", "pausing", "resuming"].indexOf(sessionStatus) >= 0) {
        requestState();
      }
    }, STATE_POLL_EVERY);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState !== "visible") {
        return;
      }
      heartbeat(Date.now() - lastHeartbeat > 10000);
      if (!events) {
        connectEvents();
      }
      order.forEach(function (n) {
        if (kubelab.tabs[n].state === "reconnecting") {
          kubelab.tabs[n].reconnectNow();
        }
      });
    });
    window.addEventListener("online", function () {
      if (!events) {
        connectEvents();
      }
      order.forEach(function (n) {
        if (kubelab.tabs[n].state === "reconnecting") {
          kubelab.tabs[n].reconnectNow();
        }
      });
    });

    setStatus(sessionStatus);
    connectEvents();

    // --- code blocks: Run and Copy ---------------------------------------------------------------

    function flash(button, text) {
      var original = button.getAttribute("data-label");
      button.textContent = text;
      button.classList.add("is-done");
      clearTimeout(button._flashTimer);
      button._flashTimer = setTimeout(function () {
        button.textContent = original;
        button.classList.remove("is-done");
      }, 1500);
    }

    function runCommand(text) {
      var tab = kubelab.tabs[active];
      if (readOnly || !tab) {
        return false;
      }
      if (!tab.canWrite()) {
        toast("The terminal is not connected yet: the command was not sent.");
        return false;
      }
      var command = text.replace(/\s+$/, "").replace(/^\s*\n/, "").replace(/\r?\n/g, "\r");
      tab.type(command.trim() + "\r");
      tab.focus();
      return true;
    }

    document.querySelectorAll(".steps-body .codeblock").forEach(function (block) {
      var code = $("code", block) || $("pre", block);
      if (!code) {
        return;
      }
      var bar = document.createElement("div");
      bar.className = "codeblock-actions";
      var runnable = block.getAttribute("data-runnable") === "true";
      if (runnable) {
        block.classList.add("is-runnable");
      }
      if (runnable && !readOnly) {
        var run = document.createElement("button");
        run.type = "button";
        run.className = "code-button code-run";
        run.setAttribute("data-label", "Run");
        run.textContent = "Run";
        run.title = "Run this command in the terminal";
        run.setAttribute("aria-label", "Run this command in the active terminal");
        run.addEventListener("click", function () {
          if (runCommand(code.textContent)) {
            flash(run, "Sent");
          }
        });
        bar.appendChild(run);
      }
      var copy = document.createElement("button");
      copy.type = "button";
      copy.className = "code-button code-copy";
      copy.setAttribute("data-label", "Copy");
      copy.textContent = "Copy";
      copy.setAttribute("aria-label", "Copy this code to the clipboard");
      copy.addEventListener("click", function () {
        kubelab.copyText(code.textContent.replace(/\n$/, "")).then(
          function () {
            flash(copy, "Copied");
          },
          function () {
            toast("The browser did not allow copying: select the text and press Ctrl+C.");
          }
        );
      });
      bar.appendChild(copy);
      block.appendChild(bar);
    });

    // --- confirm before Reset / Stop -------------------------------------------------------------

    var dialog = $("#confirm-dialog");
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (form._confirmed) {
          return;
        }
        event.preventDefault();
        var message = form.getAttribute("data-confirm");
        if (!dialog || typeof dialog.showModal !== "function") {
          if (window.confirm(message)) {
            form._confirmed = true;
            form.submit();
          }
          return;
        }
        $("#confirm-text").textContent = message;
        // Stop offers an alternative beside it: Pause (keep my work)
        var alt = form.getAttribute("data-confirm-alt");
        var altForm = alt ? document.getElementById(alt) : null;
        var altButton = $("#confirm-alt");
        altButton.hidden = !altForm;
        altButton.textContent = form.getAttribute("data-confirm-alt-label") || "";
        $("#confirm-title").textContent = altForm
          ? "Pause or stop the lab?"
          : form.getAttribute("data-confirm-ok") + "?";
        $("#confirm-ok").textContent = form.getAttribute("data-confirm-ok") || "Confirm";
        dialog.returnValue = "";
        dialog.onclose = function () {
          dialog.onclose = null;
          if (dialog.returnValue === "alt" && altForm) {
            altForm.querySelectorAll("button").forEach(function (b) {
              b.disabled = true;
            });
            altForm.submit();
          } else if (dialog.returnValue === "ok") {
            form._confirmed = true;
            form.querySelectorAll("button").forEach(function (b) {
              b.disabled = true;
            });
            form.submit();
          }
        };
        dialog.showModal();
      });
    });
    // Retry / Restart: one click, then wait for the page to change.
    document.querySelectorAll(".term-overlay form").forEach(function (form) {
      form.addEventListener("submit", function () {
        setTimeout(function () {
          form.querySelectorAll("button").forEach(function (b) {
            b.disabled = true;
          });
        }, 0);
      });
    });

    kubelab.openTerminal = openTerminal;
    kubelab.closeTerminal = closeTab;
    kubelab.activeTerminal = function () {
      return active;
    };
    kubelab.runCommand = runCommand;
    kubelab.sessionStatus = function () {
      return sessionStatus;
    };
    kubelab.lastState = function () {
      return lastState;
    };
    app.setAttribute("data-ready", "true");
  });
})();
