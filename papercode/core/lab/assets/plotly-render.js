// papercode site: draw each <div class="papercode-plotly"> from the figure JSON it carries (see papercode.core.lab.site).
// Package data of papercode.core.lab (papercode/core/lab/assets/), copied into each site that `papercode docs` builds.
(function () {
  function draw() {
    document.querySelectorAll("div.papercode-plotly").forEach(function (box) {
      if (box.dataset.drawn) return;
      box.dataset.drawn = "1";
      var spec = JSON.parse(box.querySelector("script[type='application/json']").textContent);
      var plot = document.createElement("div");
      plot.className = "papercode-plotly-figure";
      box.appendChild(plot);
      var config = Object.assign({responsive: true}, spec.config || {}, {displaylogo: false});
      window.Plotly.newPlot(plot, spec.data || [], spec.layout || {}, config);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
