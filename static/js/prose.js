// Lesson pages: a Copy button on every code block. (On lab pages lab.js
// adds Copy and Run itself.)
(function () {
  "use strict";

  function copy(text, button) {
    var done = function () {
      button.textContent = "Copied";
      button.classList.add("is-done");
      setTimeout(function () {
        button.textContent = "Copy";
        button.classList.remove("is-done");
      }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {
        button.textContent = "Select and copy";
      });
      return;
    }
    var area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    try {
      document.execCommand("copy");
      done();
    } finally {
      area.remove();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    document.querySelectorAll(".prose .codeblock").forEach(function (block) {
      var code = block.querySelector("code");
      if (!code) return;
      var actions = document.createElement("div");
      actions.className = "codeblock-actions";
      var button = document.createElement("button");
      button.type = "button";
      button.className = "code-button";
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy this code");
      button.addEventListener("click", function () {
        copy(code.textContent.replace(/\n$/, ""), button);
      });
      actions.appendChild(button);
      block.appendChild(actions);
    });
  });
})();
