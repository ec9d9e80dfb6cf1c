// KubeLab lab terminal: one xterm.js Terminal attached to one shell of the
// sandbox over /ws/labs/<session>/term/<n>/ (protocol: labs/consumers.py).
//
// Flow control: output is acknowledged only once xterm.js has really parsed
// it (the write callback), in batches; the server stops sending when too much
// is unacknowledged, so a flood (`yes`) is paced by the browser's rendering
// instead of piling up in memory, and the page stays responsive.
//
// Reconnects: with exponential backoff (0.5 s doubling to 10 s, jittered),
// re-attaching the same terminal number; the server replays the scrollback,
// so the terminal is reset (through the write queue, so nothing already
// queued lands after the reset) before the replay.
(function () {
  "use strict";

  var kubelab = (window.kubelab = window.kubelab || {});

  var ACK_BATCH = 32 * 1024; // acknowledge at least every 32 KiB...
  var ACK_DELAY = 50; // ...or this many ms after the last write completed
  var INPUT_CHUNK = 8 * 1024; // keep frames well under TERMINAL_MAX_MESSAGE
  var PING_EVERY = 25000;
  var BACKOFF_MIN = 500;
  var BACKOFF_MAX = 10000;
  var STABLE_AFTER = 5000; // a connection this old resets the backoff
  var RESIZE_DEBOUNCE = 120;

  var CLOSE_SIGNED_OUT = 4401; // the sign-in that opened the socket ended (accounts/sockets.py)
  var CLOSE_NOT_FOUND = 4404;
  var CLOSE_NOT_READY = 4409;
  var CLOSE_BAD_REQUEST = 4400;
  var CLOSE_RUNTIME_DOWN = 4503;
  var CLOSE_TOO_BIG = 1009;

  var THEME = {
    background: "#0d1424",
    foreground: "#d7e0ef",
    cursor: "#5fd3bc",
    cursorAccent: "#0d1424",
    selectionBackground: "rgba(95, 211, 188, 0.32)",
    black: "#1a2438",
    red: "#ef6b6b",
    green: "#7fd48b",
    yellow: "#f2c55c",
    blue: "#6ea8fe",
    magenta: "#c792ea",
    cyan: "#5fd3bc",
    white: "#d7e0ef",
    brightBlack: "#5d6b85",
    brightRed: "#ff8a8a",
    brightGreen: "#9be7a6",
    brightYellow: "#ffd97a",
    brightBlue: "#94c0ff",
    brightMagenta: "#ddb1ff",
    brightCyan: "#86e8d4",
    brightWhite: "#ffffff",
  };
  var FONT_FAMILY =
    'ui-monospace, "SFMono-Regular", "JetBrains Mono", "DejaVu Sans Mono", Menlo, Consolas, ' +
    '"Liberation Mono", monospace';
  var PASTE_HINT = "press Ctrl+Shift+V (⌘V on a Mac) to paste.";

  var encoder = new TextEncoder();

  function wsUrl(path) {
    if (/^wss?:\/\//.test(path)) {
      return path;
    }
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function backoffDelay(attempt) {
    var base = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, attempt));
    // "Equal jitter": never below half the step, so retries still spread out.
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  // Copy text to the clipboard; falls back to execCommand where the
  // asynchronous Clipboard API is missing (plain-http deployments).
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var active = document.activeElement;
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      area.style.pointerEvents = "none";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try {
        ok = document.execCommand("copy");
      } catch (error) {
        ok = false;
      }
      area.remove();
      if (active && typeof active.focus === "function") {
        active.focus({ preventScroll: true });
      }
      if (ok) {
        resolve();
      } else {
        reject(new Error("copy refused"));
      }
    });
  }

  // state: waiting | connecting | connected | observing | reconnecting | exited | disconnected
  function TerminalTab(options) {
    this.number = options.number;
    this.baseUrl = options.baseUrl; // ".../term/" (the number and query are appended)
    this.readOnly = options.mode === "ro";
    this.panel = options.panel; // carries data-state
    this.screen = options.screen || options.panel; // where xterm.js draws
    this.onStateChange = options.onStateChange || function () {};
    this.onNotice = options.onNotice || function () {};
    this.onSignedOut = options.onSignedOut || function () {};
    this.signedOut = false;
    this.sessionReady = options.sessionReady || function () {
      return true;
    };
    this.sessionEnded = options.sessionEnded || function () {
      return false;
    };
    this.state = "waiting";
    this.detail = "";
    this.retryAt = 0;
    this.attempt = 0;
    this.generation = 0;
    this.socket = null;
    this.connectedAt = 0;
    this.unacked = 0; // written by xterm, not yet acknowledged
    this.ackTimer = null;
    this.pingTimer = null;
    this.pingSentAt = 0;
    this.latency = null;
    this.retryTimer = null;
    this.stableTimer = null;
    this.resizeTimer = null;
    this.hasOutput = false;
    this.resetPending = false;
    this.disposed = false;
    this.stats = { received: 0, written: 0, acked: 0, connects: 0 };

    var term = new Terminal({
      fontFamily: FONT_FAMILY,
      fontSize: options.fontSize || 14,
      lineHeight: 1.15,
      cursorBlink: !this.readOnly,
      cursorStyle: "block",
      scrollback: 5000,
      disableStdin: this.readOnly,
      rightClickSelectsWord: false,
      macOptionIsMeta: true,
      allowTransparency: false,
      theme: THEME,
    });
    this.term = term;
    this.fitAddon = new FitAddon.FitAddon();
    term.loadAddon(this.fitAddon);
    term.loadAddon(
      new WebLinksAddon.WebLinksAddon(function (event, uri) {
        event.preventDefault();
        window.open(uri, "_blank", "noopener,noreferrer");
      })
    );
    term.open(this.screen);
    if (term.textarea) {
      term.textarea.setAttribute("aria-label", "Terminal " + this.number);
    }
    this._wireInput();
    this._wireClipboard();
    var self = this;
    term.onResize(function (size) {
      self._scheduleResize(size);
    });
  }

  TerminalTab.prototype._setState = function (state, detail) {
    this.state = state;
    this.detail = detail || "";
    this.panel.setAttribute("data-state", state);
    this.onStateChange(this);
  };

  // --- connecting -------------------------------------------------------------------

  TerminalTab.prototype.connect = function () {
    if (this.disposed) {
      return;
    }
    this._clearRetry();
    if (this.socket || this.signedOut) {
      return; // already connecting or connected; or nobody to connect as
    }
    if (!this.sessionReady()) {
      this._setState(this.sessionEnded() ? "disconnected" : "waiting");
      return;
    }
    this.fit();
    var generation = ++this.generation;
    var url =
      wsUrl(this.baseUrl) + this.number + "/?rows=" + this.term.rows + "&cols=" + this.term.cols;
    var socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.unacked = 0;
    this.stats.connects += 1;
    this._setState(this.attempt > 0 ? "reconnecting" : "connecting");
    var self = this;
    socket.onopen = function () {
      if (generation !== self.generation) {
        return;
      }
      self.connectedAt = Date.now();
      // The server replays the scrollback first: the terminal is reset just
      // before the first byte of this connection (not before: a connection
      // refused right after opening keeps the old text on screen).
      self.resetPending = self.hasOutput;
      self.stableTimer = setTimeout(function () {
        self.attempt = 0;
      }, STABLE_AFTER);
      self.pingTimer = setInterval(function () {
        self._ping();
      }, PING_EVERY);
      self._setState(self.readOnly ? "observing" : "connected");
      self._sendResize();
    };
    socket.onmessage = function (event) {
      if (generation !== self.generation) {
        return;
      }
      if (typeof event.data === "string") {
        self._control(event.data);
        return;
      }
      var chunk = new Uint8Array(event.data);
      self.stats.received += chunk.length;
      self.hasOutput = true;
      if (self.resetPending) {
        // Through the write queue (ESC c, a full reset, scrollback too), so
        // output still queued from the old connection cannot land after it
        // and show twice.
        self.resetPending = false;
        self.term.write("\x1bc");
      }
      self.term.write(chunk, function () {
        self._written(generation, chunk.length);
      });
    };
    socket.onclose = function (event) {
      if (generation !== self.generation) {
        return;
      }
      self._closed(event.code, event.reason);
    };
  };

  TerminalTab.prototype._control = function (text) {
    var message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      return;
    }
    if (message.type === "hello") {
      this.readOnly = message.mode === "ro" || this.readOnly;
      this._setState(this.readOnly ? "observing" : "connected");
    } else if (message.type === "pong") {
      if (this.pingSentAt) {
        this.latency = Math.round(performance.now() - this.pingSentAt);
        this.pingSentAt = 0;
        this.onStateChange(this);
      }
    } else if (message.type === "exit") {
      this.exited = true;
      this.exitCode = message.code;
    } else if (message.type === "notice") {
      this.onNotice(String(message.message || ""));
    }
  };

  TerminalTab.prototype._teardown = function () {
    clearTimeout(this.ackTimer);
    clearTimeout(this.stableTimer);
    clearInterval(this.pingTimer);
    this.ackTimer = this.stableTimer = this.pingTimer = null;
    this.pingSentAt = 0;
    this.unacked = 0;
    if (this.socket) {
      var socket = this.socket;
      this.socket = null;
      socket.onopen = socket.onmessage = socket.onclose = null;
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
        socket.close(1000);
      }
    }
  };

  TerminalTab.prototype._closed = function (code) {
    this.socket = null;
    this._teardown();
    this.generation += 1; // late write callbacks must not ack on a new connection
    if (this.disposed) {
      return;
    }
    if (this.exited) {
      this.exited = false;
      this.attempt = 0;
      this._setState(
        "exited",
        typeof this.exitCode === "number" && this.exitCode !== 0 ? "exit status " + this.exitCode : ""
      );
      return;
    }
    if (code === CLOSE_SIGNED_OUT) {
      // Reconnecting cannot help until the person signs in again: stop, say so.
      this.signedOut = true;
      this.attempt = 0;
      this._setState("disconnected", "You are signed out.");
      this.onSignedOut();
      return;
    }
    if (code === CLOSE_NOT_FOUND) {
      this.attempt = 0;
      this._setState(
        "disconnected",
        this.readOnly
          ? "This terminal has not been opened by the student."
          : "This terminal is not available."
      );
      return;
    }
    if (code === CLOSE_BAD_REQUEST) {
      this._setState("disconnected", "This terminal number is not allowed.");
      return;
    }
    if (this.sessionEnded()) {
      this._setState("disconnected", "The lab session has ended.");
      return;
    }
    if (!this.sessionReady()) {
      // The events socket says when the sandbox is ready; the page calls connect() then.
      this.attempt = 0;
      this._setState("waiting", "Waiting for the sandbox…");
      return;
    }
    if (code === CLOSE_TOO_BIG) {
      this.onNotice("A message to the terminal was too large and the connection was reset.");
    }
    var detail = code === CLOSE_RUNTIME_DOWN ? "The sandbox service is unavailable." : "";
    this._scheduleRetry(detail);
  };

  TerminalTab.prototype._scheduleRetry = function (detail) {
    var delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    var self = this;
    this.retryTimer = setTimeout(function () {
      self.retryTimer = null;
      self.connect();
    }, delay);
    this._setState("reconnecting", detail);
  };

  TerminalTab.prototype._clearRetry = function () {
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.retryAt = 0;
  };

  // Reconnect now (a button, the network coming back, the tab becoming visible).
  TerminalTab.prototype.reconnectNow = function () {
    if (this.socket || this.disposed || this.signedOut) {
      return;
    }
    this.exited = false;
    this.attempt = 0;
    this.connect();
  };

  // The session ended: stop, keep the scrollback on screen.
  TerminalTab.prototype.halt = function (detail) {
    this._clearRetry();
    this.generation += 1;
    this._teardown();
    this._setState("disconnected", detail || "");
  };

  // --- output acknowledgements ------------------------------------------------------------

  TerminalTab.prototype._written = function (generation, length) {
    this.stats.written += length;
    if (generation !== this.generation || !this.socket) {
      return;
    }
    this.unacked += length;
    if (this.unacked >= ACK_BATCH) {
      this._ack();
    } else if (!this.ackTimer) {
      var self = this;
      this.ackTimer = setTimeout(function () {
        self.ackTimer = null;
        self._ack();
      }, ACK_DELAY);
    }
  };

  TerminalTab.prototype._ack = function () {
    if (this.ackTimer) {
      clearTimeout(this.ackTimer);
      this.ackTimer = null;
    }
    if (!this.unacked || !this.socket || this.socket.readyState !== WebSocket.OPEN) {
      return;
    }
    this._sendJson({ type: "ack", bytes: this.unacked });
    this.stats.acked += this.unacked;
    this.unacked = 0;
  };

  TerminalTab.prototype._sendJson = function (message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  };

  TerminalTab.prototype._ping = function () {
    if (this._sendJson({ type: "ping" })) {
      this.pingSentAt = performance.now();
    }
  };

  // --- input, resize -------------------------------------------------------------------------

  TerminalTab.prototype._wireInput = function () {
    var self = this;
    this.term.onData(function (data) {
      self.sendBytes(encoder.encode(data));
    });
    this.term.onBinary(function (data) {
      var bytes = new Uint8Array(data.length);
      for (var i = 0; i < data.length; i++) {
        bytes[i] = data.charCodeAt(i) & 255;
      }
      self.sendBytes(bytes);
    });
  };

  TerminalTab.prototype.canWrite = function () {
    return !this.readOnly && !!this.socket && this.socket.readyState === WebSocket.OPEN;
  };

  TerminalTab.prototype.sendBytes = function (bytes) {
    if (!this.canWrite()) {
      return false;
    }
    for (var offset = 0; offset < bytes.length; offset += INPUT_CHUNK) {
      this.socket.send(bytes.subarray(offset, offset + INPUT_CHUNK));
    }
    return true;
  };

  // Typed as if at the keyboard (no bracketed paste), so a trailing \r runs it.
  TerminalTab.prototype.type = function (text) {
    return this.sendBytes(encoder.encode(text));
  };

  TerminalTab.prototype._scheduleResize = function () {
    var self = this;
    clearTimeout(this.resizeTimer);
    this.resizeTimer = setTimeout(function () {
      self._sendResize();
    }, RESIZE_DEBOUNCE);
  };

  TerminalTab.prototype._sendResize = function () {
    if (!this.readOnly) {
      this._sendJson({ type: "resize", rows: this.term.rows, cols: this.term.cols });
    }
  };

  TerminalTab.prototype.visible = function () {
    return this.screen.offsetWidth > 0 && this.screen.offsetHeight > 0;
  };

  TerminalTab.prototype.fit = function () {
    if (!this.visible()) {
      return;
    }
    try {
      this.fitAddon.fit();
    } catch (error) {
      // not measurable yet (fonts loading); the next resize fits it
    }
  };

  TerminalTab.prototype.setFontSize = function (size) {
    this.term.options.fontSize = size;
    this.fit();
  };

  TerminalTab.prototype.focus = function () {
    this.term.focus();
  };

  // --- clipboard --------------------------------------------------------------------------------

  TerminalTab.prototype.copySelection = function () {
    var text = this.term.getSelection();
    if (!text) {
      return Promise.resolve(false);
    }
    var self = this;
    return copyText(text).then(
      function () {
        return true;
      },
      function () {
        self.onNotice("Copying was blocked by the browser: use your browser's Copy instead.");
        return false;
      }
    );
  };

  TerminalTab.prototype.pasteFromClipboard = function () {
    var self = this;
    if (this.readOnly) {
      return;
    }
    if (!navigator.clipboard || !navigator.clipboard.readText) {
      this.onNotice("This browser does not let the page read the clipboard: " + PASTE_HINT);
      return;
    }
    navigator.clipboard.readText().then(
      function (text) {
        if (text) {
          self.term.paste(text); // bracketed paste when the shell asked for it
        }
        self.focus();
      },
      function () {
        self.onNotice("The browser did not allow reading the clipboard: " + PASTE_HINT);
      }
    );
  };

  TerminalTab.prototype._wireClipboard = function () {
    var self = this;
    var term = this.term;
    var selectionTimer = null;
    // Selecting copies (as in most terminals), once the selection settles.
    term.onSelectionChange(function () {
      clearTimeout(selectionTimer);
      selectionTimer = setTimeout(function () {
        var text = term.getSelection();
        if (text && navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).catch(function () {});
        }
      }, 150);
    });
    term.attachCustomKeyEventHandler(function (event) {
      if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey || event.altKey || event.metaKey) {
        return true;
      }
      if (event.code === "KeyC") {
        event.preventDefault();
        self.copySelection();
        return false;
      }
      if (event.code === "KeyV") {
        // Let the browser's own paste happen (it needs no permission and
        // reaches xterm's paste handler, which brackets it); only stop xterm
        // from sending ^V.
        return false;
      }
      return true;
    });
    // Right-click pastes; Shift+right-click keeps the browser's menu.
    this.screen.addEventListener("contextmenu", function (event) {
      if (event.shiftKey || self.readOnly) {
        return;
      }
      event.preventDefault();
      self.pasteFromClipboard();
    });
  };

  // Close the tab: only the browser side goes away, the shell stays in the sandbox.
  TerminalTab.prototype.dispose = function () {
    this.disposed = true;
    this._clearRetry();
    clearTimeout(this.resizeTimer);
    this.generation += 1;
    this._teardown();
    this.term.dispose();
  };

  kubelab.TerminalTab = TerminalTab;
  kubelab.copyText = copyText;
  kubelab.backoffDelay = backoffDelay;
})();
