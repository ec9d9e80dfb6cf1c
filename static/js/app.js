// KubeLab page behaviour: small, dependency-free, and optional — every page
// works without it (the nav shows all links, the user menu is a <details>).
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  function ready(fn) {
    if (document.readyState !== "loading") {
      fn();
    } else {
      document.addEventListener("DOMContentLoaded", fn);
    }
  }

  ready(function () {
    // Narrow screens: fold the navigation behind the Menu button.
    var nav = document.querySelector(".nav");
    var toggle = document.querySelector(".nav-toggle");
    if (nav && toggle) {
      toggle.hidden = false;
      toggle.addEventListener("click", function () {
        var open = nav.classList.toggle("is-open");
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
      });
    }

    // Close the user menu on a click elsewhere or on Escape.
    var menus = document.querySelectorAll("details.user-menu");
    document.addEventListener("click", function (event) {
      menus.forEach(function (menu) {
        if (menu.open && !menu.contains(event.target)) {
          menu.open = false;
        }
      });
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        menus.forEach(function (menu) {
          if (menu.open) {
            menu.open = false;
            menu.querySelector("summary").focus();
          }
        });
      }
    });

    // Dismissable flash messages.
    document.querySelectorAll(".alert").forEach(function (alert) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "alert-close";
      button.setAttribute("aria-label", "Dismiss");
      button.textContent = "\u00d7";
      button.addEventListener("click", function () {
        alert.remove();
      });
      alert.appendChild(button);
    });
  });
})();
