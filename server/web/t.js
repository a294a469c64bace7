/* analytics-api page tracker (served at /t.js; plain JS, no build step).
 * <script defer src="https://HOST/t.js" data-app="myapp" data-key="WRITE_KEY"></script>
 * Sends a pageview on load and on single-page navigations (pushState, popstate);
 * analytics.track(name, props) for custom events, analytics.identify(userId) to name the user (a
 * `$identify` event: the server joins this visitor's earlier events to the user, server/people/).
 * Events are batched (a JSON array, text/plain so no CORS preflight), each with an event_id so a
 * retry is never stored twice; network errors, 408, 429 and 5xx are retried after the answer's
 * Retry-After (seconds) or else with backoff (2 s doubling to 60 s); on page hide
 * what waits goes with navigator.sendBeacon. Nothing here throws into the page. */
(function (w, d) {
  "use strict";
  try {
    if (w.analytics && w.analytics.tracker) return;
    var s = d.currentScript, L = w.location;
    var app = s.getAttribute("data-app") || "", key = s.getAttribute("data-key");
    var url = new URL("/events", s.src).href + (key ? "?key=" + encodeURIComponent(key) : "");
    var queue = [], inFlight = [], timer = 0, backoff = 1000, user = null, last = null, MAX = 50;

    var uuid = function () {
      if (w.crypto && crypto.randomUUID) return crypto.randomUUID();
      return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (c) {
        return (c ^ (Math.random() * 16) >> (c / 4)).toString(16);
      });
    };

    var schedule = function (ms) {
      if (!timer) timer = setTimeout(flush, ms);
    };

    var flush = function () {
      timer = 0;
      if (!queue.length || inFlight.length) return;
      var batch = queue.splice(0, MAX);
      inFlight = batch;
      var retry = function (r) {
        var after = r && r.headers ? parseInt(r.headers.get("Retry-After"), 10) : NaN;
        inFlight = [];
        queue = batch.concat(queue);
        backoff = Math.min(backoff * 2, 60000);
        schedule(after >= 0 ? Math.min(after * 1000, 60000) : backoff);
      };
      fetch(url, { method: "POST", body: JSON.stringify(batch), keepalive: true, credentials: "omit",
                   headers: { "Content-Type": "text/plain" } })
        .then(function (r) {
          if (r.status == 429 || r.status == 408 || r.status >= 500) return retry(r);
          inFlight = []; // stored, or refused for good (a 4xx: sending again cannot help)
          backoff = 1000;
          if (queue.length) schedule(0);
        }, retry);
    };

    var send = function (name, props) {
      var e = { event_id: uuid(), dt: Date.now(), event: String(name), app_id: app, screen: L.pathname, url: L.href };
      if (user) e.user_id = user;
      if (props) e.props = props;
      queue.push(e);
      schedule(1000);
      return e;
    };

    var pageview = function () {
      if (L.href == last) return;
      var e = send("pageview");
      e.referrer = last === null ? d.referrer : last;
      last = L.href;
    };

    var hide = function () {
      var all = inFlight.concat(queue); // in flight too: the event_ids make a second copy harmless
      for (var i = 0; i < all.length; i += MAX) {
        var part = JSON.stringify(all.slice(i, i + MAX));
        if (!navigator.sendBeacon || !navigator.sendBeacon(url, new Blob([part], { type: "text/plain" }))) return;
      }
      queue = [];
    };

    var wrap = function (name) {
      var original = history[name];
      history[name] = function () {
        var result = original.apply(this, arguments);
        try { pageview(); } catch (e) { /* never into the page */ }
        return result;
      };
    };
    wrap("pushState");
    w.addEventListener("popstate", pageview);
    d.addEventListener("visibilitychange", function () { if (d.visibilityState == "hidden") hide(); });
    w.addEventListener("pagehide", hide);

    w.analytics = {
      tracker: 1,
      track: function (name, props) { try { send(name, props); } catch (e) { /* never into the page */ } },
      identify: function (id) {
        try {
          user = id ? String(id) : null;
          if (user) send("$identify", { anonymous_id: "$visitor" }); // the server puts this visitor's id
        } catch (e) { /* never into the page */ }
      }
    };
    pageview();
  } catch (e) { /* never into the page */ }
})(window, document);
