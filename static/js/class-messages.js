// The class view's "Send a hint or message" form (templates/courses/instructor_live.html,
// courses/messages.py): sends without leaving the page and says what happened; each
// student's "Message" button in the refreshed body picks them as the recipient.
(function () {
  "use strict";

  function bind() {
    var form = document.getElementById("class-message-form");
    if (!form) {
      return;
    }
    var to = document.getElementById("message-to");
    var text = document.getElementById("message-text");
    var status = document.getElementById("class-message-status");
    var send = document.getElementById("message-send");

    function say(message, isError) {
      status.textContent = message;
      status.classList.toggle("is-error", !!isError);
    }

    // The body is replaced on every refresh: listen on the document.
    document.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("[data-message-to]");
      if (!button) {
        return;
      }
      var id = button.getAttribute("data-message-to");
      var option = Array.prototype.find.call(to.options, function (o) {
        return o.value === id;
      });
      if (!option) {
        // a student who joined after the page loaded
        option = document.createElement("option");
        option.value = id;
        option.textContent = button.getAttribute("data-message-name") || id;
        to.appendChild(option);
      }
      to.value = id;
      say("");
      form.scrollIntoView({ block: "nearest" });
      text.focus();
    });

    var sending = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (sending) {
        return; // one send at a time
      }
      // not send.disabled: a disabled button drops the keyboard focus to the page
      sending = true;
      send.setAttribute("aria-disabled", "true");
      say("Sending…");
      fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (response) {
          return response
            .json()
            .catch(function () {
              return { error: "HTTP " + response.status };
            })
            .then(function (body) {
              if (!response.ok) {
                throw new Error(body.error || "HTTP " + response.status);
              }
              return body;
            });
        })
        .then(function (body) {
          text.value = "";
          say(body.message || "Sent.");
        })
        .catch(function (error) {
          // the text stays in the box: nothing typed is lost
          say("Not sent: " + error.message, true);
        })
        .then(function () {
          sending = false;
          send.removeAttribute("aria-disabled");
        });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", bind);
  } else {
    bind();
  }
})();
