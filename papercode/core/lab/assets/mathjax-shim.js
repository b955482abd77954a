// papercode site: MathJax 2's Hub.Queue, which ipywidgets 8 calls, on top of MathJax 3.
// Package data of papercode.core.lab (papercode/core/lab/assets/), copied into each site that `papercode docs` builds.
(function () {
  var hub = {Queue: function (job) {
    var mj = window.MathJax, el = job && job[2];
    if (mj && mj.typesetPromise && el) mj.typesetPromise([el]).catch(function (e) { console.warn(e); });
  }};
  var cfg = window.MathJax = window.MathJax || {};
  cfg.Hub = cfg.Hub || hub;
  var startup = cfg.startup = cfg.startup || {};
  var ready = startup.ready;
  startup.ready = function () {
    if (ready) ready(); else window.MathJax.startup.defaultReady();
    window.MathJax.Hub = window.MathJax.Hub || hub;
  };
})();
