// papercode site: let the widget manager (embed-amd.js) load anywidget from this site, not from a CDN.
// Package data of papercode.core.lab (papercode/core/lab/assets/), copied into each site that `papercode docs` builds.
(function () {
  var here = document.currentScript.src.replace(/[^\/]*$/, "");
  window.require.config({paths: {anywidget: here + "anywidget/index"}});
})();
