// Records the page's health on <body> for automated checks (tests/it/dashboard.rs):
//   data-errors         JSON array of uncaught errors, rejections, failed loads, console.error
//   data-charts-drawn   number of charts drawn (set by app.js once every chart is drawn)
//   data-blank-canvases number of canvases with (almost) no painted pixels
(function () {
  "use strict";
  var errors = [];
  function record(msg) {
    errors.push(String(msg));
    document.body.dataset.errors = JSON.stringify(errors);
  }
  document.body.dataset.errors = "[]";

  // From file:// every script is its own origin, so errors thrown in another file arrive
  // here only as "Script error."; still recorded, and app.js reports its own via console.error.
  window.onerror = function (message, source, line, column, error) {
    record((error && error.message ? error.message : message) +
      (source ? " (" + source + ":" + line + ")" : ""));
  };
  window.addEventListener("unhandledrejection", function (e) {
    record("unhandled rejection: " + (e.reason && e.reason.message ? e.reason.message : e.reason));
  });
  // A script or stylesheet that fails to load fires `error` on the element, not on window;
  // catch it in the capture phase.
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) record("failed to load " + (t.src || t.href));
  }, true);
  var consoleError = console.error;
  console.error = function () {
    record("console.error: " + Array.prototype.map.call(arguments, String).join(" "));
    return consoleError.apply(console, arguments);
  };

  // Painted pixels (alpha > 0) per canvas; fewer than `min` counts as blank.
  window.bwbCountBlankCanvases = function (min) {
    var blank = 0;
    document.querySelectorAll("canvas").forEach(function (c) {
      var painted = 0;
      if (c.width > 0 && c.height > 0) {
        var px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        for (var i = 3; i < px.length; i += 4) if (px[i] !== 0) painted++;
      }
      if (painted < min) blank++;
    });
    return blank;
  };
})();
