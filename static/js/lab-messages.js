// Messages from the student's instructors on the lab page (templates/labs/_class_messages.html,
// courses/messages.py). lab.js offers every events-socket message as a "kubelab:event":
// "messages" (the unread ones, on every (re)connect when there are any), "message" (a new one) and
// "message_dismissed" (dismissed in another tab). Text is set with textContent, never
// parsed as HTML. Dismiss posts with the CSRF token; on failure the message stays.
(function () {
  "use strict";

  function csrfToken() {
    var node = document.getElementById("lab-config");
    try {
      return JSON.parse(node.textContent).csrf_token || "";
    } catch (error) {
      return "";
    }
  }

  function bind() {
    var box = document.getElementById("class-messages");
    var list = document.getElementById("class-message-list");
    if (!box || !list) {
      return;
    }
    var errorBox = box.querySelector(".class-messages-error");
    var announce = document.getElementById("class-messages-announce") || document.createElement("p");
    var dismissUrl = box.getAttribute("data-dismiss-url") || "";

    function item(id) {
      return list.querySelector('[data-message-id="' + String(Number(id)) + '"]');
    }

    function refresh() {
      box.hidden = list.children.length === 0;
    }

    function add(message) {
      if (!message || typeof message.id !== "number" || item(message.id)) {
        return;
      }
      var li = document.createElement("li");
      li.className = "class-message";
      li.setAttribute("data-message-id", String(message.id));
      var meta = document.createElement("p");
      meta.className = "class-message-meta";
      var who = document.createElement("strong");
      who.textContent = String(message.from || "Your instructor");
      meta.appendChild(who);
      if (message.broadcast) {
        meta.appendChild(document.createTextNode(" to the class "));
      } else {
        meta.appendChild(document.createTextNode(" "));
      }
      var when = document.createElement("time");
      var created = new Date(message.created);
      if (!isNaN(created.getTime())) {
        when.dateTime = created.toISOString();
        when.textContent = created.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      }
      meta.appendChild(when);
      var text = document.createElement("p");
      text.className = "class-message-text";
      text.textContent = String(message.text || "");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "lab-button class-message-dismiss";
      button.setAttribute("data-dismiss", "");
      button.textContent = "Dismiss";
      var hidden = document.createElement("span");
      hidden.className = "visually-hidden";
      hidden.textContent = " this message";
      button.appendChild(hidden);
      li.appendChild(meta);
      li.appendChild(text);
      li.appendChild(button);
      list.appendChild(li);
      refresh();
    }

    function remove(id) {
      var li = item(id);
      if (!li) {
        return;
      }
      var hadFocus = li.contains(document.activeElement);
      var next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      refresh();
      if (hadFocus) {
        // keep the keyboard user in the list, else hand focus back to the page
        var target = next && next.querySelector("[data-dismiss]");
        if (target) {
          target.focus();
        } else {
          var terminal = document.querySelector(".terminal-panel:not([hidden]) textarea, #lab-app");
          if (terminal && terminal.focus) {
            terminal.focus();
          }
        }
      }
    }

    function dismiss(li) {
      var id = li.getAttribute("data-message-id");
      var button = li.querySelector("[data-dismiss]");
      if (li.hasAttribute("data-dismissing")) {
        return; // one request at a time
      }
      li.setAttribute("data-dismissing", "");
      // not button.disabled: a disabled button drops the keyboard focus to the page
      if (button) {
        button.setAttribute("aria-disabled", "true");
      }
      fetch(dismissUrl.replace(/\/0\/dismiss\/$/, "/" + encodeURIComponent(id) + "/dismiss/"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      })
        .then(function (response) {
          if (!response.ok && response.status !== 404) {
            throw new Error("HTTP " + response.status);
          }
          if (errorBox) {
            errorBox.hidden = true;
          }
          remove(id);
        })
        .catch(function (error) {
          li.removeAttribute("data-dismissing");
          if (button) {
            button.removeAttribute("aria-disabled");
          }
          if (errorBox) {
            errorBox.textContent = "Could not dismiss the message (" + error.message + "); try again.";
            errorBox.hidden = false;
          }
        });
    }

    list.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("[data-dismiss]");
      if (button) {
        dismiss(button.closest(".class-message"));
      }
    });

    window.addEventListener("kubelab:event", function (event) {
      var data = event.detail || {};
      if (data.type === "messages" && Array.isArray(data.messages)) {
        // the unread ones now: drop any dismissed elsewhere while the socket was away
        var keep = {};
        data.messages.forEach(function (m) {
          keep[String(m.id)] = true;
        });
        Array.prototype.slice.call(list.children).forEach(function (li) {
          if (!keep[li.getAttribute("data-message-id")]) {
            remove(li.getAttribute("data-message-id"));
          }
        });
        data.messages.forEach(add);
      } else if (data.type === "message") {
        if (data.message && !item(data.message.id)) {
          announce.textContent =
            "New message from " + String(data.message.from || "your instructor") + ": " + String(data.message.text || "");
        }
        add(data.message);
      } else if (data.type === "message_dismissed") {
        remove(data.id);
      }
    });
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", bind);
  } else {
    bind();
  }
})();
