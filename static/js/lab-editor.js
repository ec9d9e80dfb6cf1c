/* The lab page's editor tab: a file tree of the sandbox's /root, files open in tabs
 * (CodeMirror 6, vendored: static/vendor/codemirror), save with Ctrl-S through
 * /labs/<session>/files/content/ (runtimed writes inside the sandbox, never following a
 * link). A file changed in the terminal is noticed on focus and on save (its etag) and
 * offered for reload instead of being overwritten. In a lab with a Kubernetes cluster, a
 * *.yaml/*.yml file is validated as you type against that cluster (/labs/<session>/files/validate/:
 * a dry run there, nothing created): a red mark at the line, the message on hover and in the
 * Problems panel (the Problems button, or Ctrl-Shift-M where the browser leaves that key to
 * the page; F8 moves to the next one). */
(function () {
  "use strict";
  var configEl = document.getElementById("lab-config");
  var toggle = document.getElementById("editor-toggle");
  var pane = document.getElementById("editor-pane");
  if (!configEl || !toggle || !pane || !window.KLCodeMirror) return;
  var config = JSON.parse(configEl.textContent);
  var readOnly = config.mode !== "rw";
  var base = "/labs/" + config.session + "/files/";
  var tree = document.getElementById("editor-tree");
  var tabs = document.getElementById("editor-tabs");
  var host = document.getElementById("editor-host");
  var status = document.getElementById("editor-status");
  var panels = document.getElementById("term-panels");
  var open = {}; // path -> {path, etag, tab, box, ed, dirty}
  var current = null;

  function say(text, kind) {
    status.textContent = text || "";
    status.dataset.kind = kind || "";
  }

  function api(url, opts) {
    return fetch(url, Object.assign({ credentials: "same-origin" }, opts || {})).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body }; },
        function () { return { ok: false, status: r.status, body: { error: "HTTP " + r.status } }; });
    });
  }

  function show(on) {
    pane.hidden = !on;
    if (panels) panels.hidden = on;
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    if (on && !tree.dataset.loaded) { tree.dataset.loaded = "1"; listDir("", tree); }
    if (on && current) { check(current); current.ed.focus(); }
  }

  function listDir(path, into) {
    api(base + "?path=" + encodeURIComponent(path)).then(function (r) {
      if (!r.ok) { say(r.body.error, "error"); return; }
      var ul = document.createElement("ul");
      // a plain nested list of buttons (each reachable with Tab, opened with Enter): an ARIA
      // tree would need its own arrow-key model, which this does not pretend to have
      ul.setAttribute("aria-label", path ? "Files in /root/" + path : "Files in /root");
      r.body.entries.forEach(function (e) {
        var full = path ? path + "/" + e.name : e.name;
        var li = document.createElement("li");
        var b = document.createElement("button");
        b.type = "button";
        b.className = "editor-entry editor-" + e.type;
        b.textContent = e.name + (e.type === "dir" ? "/" : e.type === "link" ? " →" : "");
        b.dataset.path = full;
        if (e.type === "dir") {
          b.setAttribute("aria-expanded", "false");
          b.addEventListener("click", function () {
            var expanded = b.getAttribute("aria-expanded") === "true";
            b.setAttribute("aria-expanded", expanded ? "false" : "true");
            var sub = li.querySelector("ul");
            if (expanded) { if (sub) sub.remove(); } else { listDir(full, li); }
          });
        } else if (e.type === "file") {
          b.addEventListener("click", function () { openFile(full); });
        } else {
          b.disabled = true;
          b.title = e.type === "link" ? "A link: the editor does not follow links" : "Not a regular file";
        }
        li.appendChild(b);
        ul.appendChild(li);
      });
      var old = into.querySelector(":scope > ul");
      if (old) old.remove();
      into.appendChild(ul);
    });
  }

  function select(f) {
    current = f;
    if (problems) problems.hidden = !(f && validator(f));
    Object.keys(open).forEach(function (p) {
      var o = open[p];
      var on = o === f;
      o.tab.setAttribute("aria-selected", on ? "true" : "false");
      o.tab.tabIndex = on ? 0 : -1;
      o.box.hidden = !on;
    });
    if (f) { f.ed.focus(); check(f); }
  }

  function label(f) {
    f.tab.textContent = (f.dirty ? "● " : "") + f.path.split("/").pop();
    f.tab.title = "/root/" + f.path;
  }

  var problems = document.getElementById("editor-problems");
  var validating = config.validate_manifests && !readOnly;

  // The lab cluster's findings for one file's text; null keeps the marks shown (the
  // cluster could not be asked: the reason goes to the status line, not to the file).
  function validator(f) {
    if (!validating || !/\.ya?ml$/i.test(f.path)) return null;
    return function (text) {
      return api(base + "validate/", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrf_token },
        body: JSON.stringify({ content: text }),
      }).then(function (r) {
        if (!r.ok) { say(r.body.error, r.status === 429 ? "warn" : "error"); return null; }
        var n = r.body.diagnostics.filter(function (d) { return d.severity === "error"; }).length;
        if (current === f) say(n ? n + (n === 1 ? " problem" : " problems") + " found by the lab cluster (the Problems button lists them)" : "The lab cluster accepts this file", n ? "error" : "ok");
        return r.body.diagnostics;
      }, function () { return null; });
    };
  }

  function openFile(path) {
    if (open[path]) { select(open[path]); return; }
    api(base + "content/?path=" + encodeURIComponent(path)).then(function (r) {
      if (!r.ok) { say(r.body.error, "error"); return; }
      var f = { path: path, etag: r.body.etag, dirty: false };
      f.tab = document.createElement("button");
      f.tab.type = "button";
      f.tab.className = "editor-tab";
      f.tab.setAttribute("role", "tab");
      f.tab.addEventListener("click", function () { select(f); });
      f.box = document.createElement("div");
      f.box.className = "editor-box";
      f.box.setAttribute("role", "tabpanel");
      host.appendChild(f.box);
      tabs.appendChild(f.tab);
      f.ed = window.KLCodeMirror.create(f.box, {
        doc: r.body.content, name: path, label: "Editing /root/" + path, readOnly: readOnly, validate: validator(f),
        onSave: function () { save(f, f.etag); },
        onChange: function () { if (!f.dirty) { f.dirty = true; label(f); } },
      });
      open[path] = f;
      label(f);
      select(f);
      say("Opened /root/" + path + (readOnly ? " (read-only)" : ""));
    });
  }

  function reload(f) {
    return api(base + "content/?path=" + encodeURIComponent(f.path)).then(function (r) {
      if (!r.ok) { say(r.body.error, "error"); return; }
      f.etag = r.body.etag;
      f.ed.setDoc(r.body.content);
      f.dirty = false;
      label(f);
      say("Reloaded /root/" + f.path + " from the sandbox");
    });
  }

  function conflict(f) {
    var again = window.confirm("/root/" + f.path + " was changed in the sandbox since you opened it.\n\n" +
      "OK: reload it from the sandbox (your edits here are lost).\nCancel: keep your version; " +
      "save again with Ctrl-S to overwrite the sandbox's.");
    if (again) { reload(f); } else { f.etag = "*"; say("Your version is kept: Ctrl-S overwrites the sandbox's file", "warn"); }
  }

  // On focus: a file changed in the terminal is reloaded if unchanged here, else offered.
  function check(f) {
    api(base + "content/?path=" + encodeURIComponent(f.path)).then(function (r) {
      if (!r.ok || f.etag === "*" || r.body.etag === f.etag) return;
      if (!f.dirty) { reload(f); } else { conflict(f); }
    });
  }

  function save(f, etag) {
    if (readOnly) { say("Observing: this editor is read-only", "warn"); return; }
    say("Saving /root/" + f.path + " …");
    api(base + "content/", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrf_token },
      body: JSON.stringify({ path: f.path, content: f.ed.getDoc(), etag: etag }),
    }).then(function (r) {
      if (r.ok) { f.etag = r.body.etag; f.dirty = false; label(f); say("Saved /root/" + f.path, "ok"); return; }
      if (r.status === 409) { conflict(f); return; }
      say(r.body.error, "error");
    });
  }

  tabs.addEventListener("keydown", function (ev) {
    var list = Array.prototype.slice.call(tabs.querySelectorAll("[role=tab]"));
    var i = list.indexOf(document.activeElement);
    if (i < 0 || (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft")) return;
    var next = list[(i + (ev.key === "ArrowRight" ? 1 : list.length - 1)) % list.length];
    next.focus();
    next.click();
    ev.preventDefault();
  });
  toggle.addEventListener("click", function () { show(pane.hidden); });
  var termTabs = document.getElementById("term-tabs");
  if (termTabs) termTabs.addEventListener("click", function () { show(false); });
  window.addEventListener("focus", function () { if (!pane.hidden && current) check(current); });
  if (problems) problems.addEventListener("click", function () { if (current) current.ed.openProblems(); });
  document.getElementById("editor-refresh").addEventListener("click", function () {
    tree.dataset.loaded = "1";
    listDir("", tree);
  });
  // "Open in editor" buttons in the lab's steps (data-open-in-editor="path below /root")
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("[data-open-in-editor]");
    if (!b) return;
    show(true);
    openFile(b.getAttribute("data-open-in-editor"));
  });
})();
