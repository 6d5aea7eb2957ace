// The console's one script. Confirmation before a form that removes things, and a tenant page
// that follows its run live: each Server-Sent Event re-fetches the timeline and the header (HTML
// rendered by the server) and swaps them in; the stream's `end` closes it. No framework, no build.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  var tenant = document.getElementById("tenant");
  if (!tenant || !tenant.hasAttribute("data-live") || !window.EventSource) {
    return;
  }
  var base = tenant.getAttribute("data-tenant-url");
  var indicator = document.getElementById("live");
  var running = null;
  var again = false;

  function load(id, path) {
    return fetch(base + path, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {  // logged out meanwhile: the reload lands on the login page
          window.location.reload();
          throw new Error("not logged in");
        }
        if (!response.ok) {
          throw new Error(path + ": HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        document.getElementById(id).innerHTML = html;
      });
  }

  // One refresh at a time; events arriving meanwhile ask for exactly one more. The promise
  // settles once the page shows everything asked for so far.
  function refresh() {
    if (running) {
      again = true;
      return running;
    }
    running = Promise.all([load("timeline", "/timeline"), load("tenant-header", "/header")])
      .catch(function (error) {
        console.warn("console: refresh failed", error);
      })
      .then(function () {
        running = null;
        if (again) {
          again = false;
          return refresh();
        }
      });
    return running;
  }

  var source = new EventSource(base + "/events");
  indicator.hidden = false;
  source.addEventListener("step", refresh);
  source.addEventListener("status", refresh);
  // The run has settled: one last refresh, then the page is still.
  source.addEventListener("end", function () {
    source.close();
    refresh().then(function () {
      indicator.hidden = true;
      tenant.removeAttribute("data-live");
      // What the last action started is over; the page itself now says how it ended.
      document.querySelectorAll(".flash-ok").forEach(function (done) { done.remove(); });
    });
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      indicator.textContent = "disconnected: reload the page";
      indicator.classList.add("off");
    }
  });
})();
