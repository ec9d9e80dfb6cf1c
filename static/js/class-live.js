// The live class view (templates/courses/instructor_live.html): every few seconds a
// conditional GET of the view's JSON; 304 when nothing changed, otherwise the server's
// freshly rendered body (charts included) replaces the page's. Paused while the tab is hidden.
(function () {
  "use strict";
  var configNode = document.getElementById("class-live-config");
  var body = document.getElementById("class-live-body");
  var status = document.getElementById("class-live-status");
  if (!configNode || !body) {
    return;
  }
  var config = JSON.parse(configNode.textContent);
  var etag = null;
  var timer = null;
  var failures = 0;

  function schedule() {
    clearTimeout(timer);
    var delay = config.poll_seconds * 1000 * Math.min(12, Math.pow(2, failures));
    timer = setTimeout(refresh, delay);
  }

  function refresh() {
    if (document.hidden) {
      schedule();
      return;
    }
    var headers = { Accept: "application/json" };
    if (etag) {
      headers["If-None-Match"] = etag;
    }
    fetch(config.url, { headers: headers, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 304) {
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        etag = response.headers.get("ETag");
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        if (data) {
          body.innerHTML = data.html;
          body.dataset.updated = String(Date.now());
        }
        if (status) {
          status.textContent = "";
        }
      })
      .catch(function (error) {
        failures += 1;
        if (status) {
          status.textContent = "Could not refresh (" + error.message + "); trying again.";
        }
      })
      .then(schedule);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      refresh();
    }
  });
  schedule();
})();
