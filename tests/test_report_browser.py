"""The HTML bench report of a real sweep against the CPU vLLM, opened in headless Chromium (Debian's
`chromium` package): no console error, every chart drew its data, no legend covers data, and the
server table speaks words, not field names. Run under `flock /tmp/sparkserve-e2e.lock`.
"""

from __future__ import annotations

import pytest

from bench_servers import run_bench
from browser import Browser, chromium

# Per chart: its title, data elements that drew (non-empty polylines, circles) and legend boxes that
# intersect any data element's points or the plot's frame.
CHARTS_JS = """
(() => [...document.querySelectorAll('svg')].map(svg => {
  const inside = (r, x, y) => x >= r.left && x <= r.right && y >= r.top && y <= r.bottom;
  const legend = [...svg.querySelectorAll('.legend')].map(e => e.getBoundingClientRect());
  const points = [];
  let lines = 0, dots = 0;
  for (const el of svg.querySelectorAll('.data')) {
    if (el.tagName === 'polyline') {
      if (el.points.numberOfItems > 1) lines++;
      const m = el.getScreenCTM();
      for (const p of el.points) points.push([p.x * m.a + m.e, p.y * m.d + m.f]);
    } else {
      const r = el.getBoundingClientRect();
      if (r.width > 0) dots++;
      points.push([r.left + r.width / 2, r.top + r.height / 2]);
    }
  }
  const box = svg.getBoundingClientRect();
  const covered = legend.filter(r => points.some(([x, y]) => inside(r, x, y))).length;
  const outside = legend.filter(r => r.right > box.right + 0.5).length;
  return {title: svg.getAttribute('aria-label'), lines, dots, legend: legend.length / 2, covered, outside,
          nodata: svg.textContent.includes('no data')};
}))()
"""
SERVER_TABLE_JS = """
[...document.querySelectorAll('table')].filter(t => t.rows[0].cells[0].textContent === 'server')
  .map(t => [...t.rows].slice(1).map(r => [r.cells[0].textContent, r.cells[1].textContent]))
"""


def test_report_of_a_real_sweep_in_chromium(vllm_server, tmp_path):
    binary = chromium()
    if binary is None:
        pytest.fail("chromium is not installed: scripts/dev-env.sh installs Debian's chromium package "
                    "(apt-get install chromium) when run as root", pytrace=False)
    report = tmp_path / "report.html"
    proc, data = run_bench(["--url", vllm_server.base_url, "--api", "openai-completions", "-c", "1,2,4", "-n", "8",
                            "-p", "32", "-o", "16", "--warmup", "1", "--hardware", "dgx-spark", "--html", str(report)],
                           tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr

    async def inspect(page):
        await page.load(report.as_uri())
        charts = await page.evaluate(CHARTS_JS)
        tables = await page.evaluate(SERVER_TABLE_JS)
        await page.screenshot(tmp_path / "report.png")
        return charts, tables, page.problems

    with Browser(binary, tmp_path / "profile") as browser:
        charts, tables, problems = browser.run(inspect)

    assert problems == [], problems
    titles = [c["title"] for c in charts]
    # Sweep: Pareto and throughput/latency; per run: throughput, latency scatter, CDF, server readings.
    assert titles[:2] == ["Tokens/s per user against aggregate tokens/s", "Throughput against latency"]
    assert titles.count("Latency CDF") == 3 == len(data["runs"])
    for chart in charts:
        assert not chart["nodata"] and chart["lines"] + chart["dots"] > 0, chart
        assert chart["covered"] == 0 and chart["outside"] == 0, f"legend over data or past the edge: {chart}"
    pareto = charts[0]
    assert pareto["legend"] == 2 and pareto["lines"] == 2 and pareto["dots"] == 6  # measured and planned, 3 points each
    assert (tmp_path / "report.png").stat().st_size > 10_000

    assert len(tables) == 3
    for rows in tables:
        labels = [label for label, _ in rows]
        assert not [label for label in labels if "_" in label], labels
        values = dict(rows)
        assert values["readings from"] == "vllm-metrics"
        assert values["KV cache usage, peak"].endswith("%")
