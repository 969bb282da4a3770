// The Status page's charts: tok/s, TTFT p95, queue, error rate, empty retrievals and pending approvals over a
// chosen window, from the native Prometheus through /api/charts (the web service holds the queries).
// Polled only while the Status page is shown.

import uPlot from '../vendor/uplot/uPlot.esm.js';
import * as api from './api.js';
import { h } from './dom.js';

const REFRESH_MS = 15000;
const HEIGHT = 150;
const PALETTE = ['--accent', '--ok', '--warn', '--link', '--bad'];
// the smallest top of the y axis per unit, so that an idle chart reads 0 to 1, not 0 to 0.001
const FLOOR = { '%': 1, requests: 1, 'tok/s': 1, s: 0.1 };

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

function format(value, unit) {
  if (value === null || value === undefined) return 'no data';
  const digits = Math.abs(value) >= 100 || Number.isInteger(value) ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${unit}`;
}

/** Every series on one time axis: [[times], [values of series 1], ...], null where a series has no point. */
export function align(series) {
  const times = [...new Set(series.flatMap((s) => s.points.map(([t]) => t)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = series.map((s) => {
    const column = new Array(times.length).fill(null);
    for (const [t, v] of s.points) column[index.get(t)] = v;
    return column;
  });
  return [times, ...columns];
}

function latest(series) {
  for (let i = series.points.length - 1; i >= 0; i -= 1) {
    if (series.points[i][1] !== null) return series.points[i][1];
  }
  return null;
}

/** A sentence for screen readers and for anyone who would rather read: the latest value of each series. */
function summary(chart) {
  if (!chart.series.length) return 'no data in this window';
  return chart.series.map((s) => (chart.series.length > 1 || s.name !== chart.title
    ? `${s.name || 'all'}: ${format(latest(s), chart.unit)}` : `now ${format(latest(s), chart.unit)}`)).join(' · ');
}

export class StatusCharts {
  constructor({ container, note, windowSelect }) {
    Object.assign(this, { container, note, windowSelect });
    this.timer = null;
    this.round = 0;
    this.span = [0, 1];
    this.plots = new Map(); // chart id -> { plot, names, figure, caption }
    windowSelect.addEventListener('change', () => { this.reset(); this.poll(); });
    window.addEventListener('resize', () => this.resize());
  }

  show() {
    if (this.timer !== null) return;
    const round = ++this.round; // a poll still running from an earlier visit stops
    const tick = async () => {
      await this.poll();
      if (this.timer !== null && round === this.round) this.timer = setTimeout(tick, REFRESH_MS);
    };
    this.timer = 0;
    tick();
  }

  hide() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  reset() {
    for (const { plot } of this.plots.values()) plot.destroy();
    this.plots.clear();
    this.container.replaceChildren();
  }

  async poll() {
    let body;
    try {
      body = await api.charts(Number(this.windowSelect.value));
    } catch (error) {
      this.note.textContent = `Charts unavailable: ${error.message}`;
      return;
    }
    if (!body.available) {
      this.reset();
      this.note.textContent = `No charts: ${body.error}`;
      return;
    }
    this.note.textContent = `From Prometheus, one point every ${body.step_s} s; refreshed every ${REFRESH_MS / 1000} s.`;
    this.span = [body.end - body.minutes * 60, body.end]; // the x axis shows the whole window, data or not
    for (const chart of body.charts) this.draw(chart);
    // in the server's order, whichever chart was drawn anew
    for (const chart of body.charts) this.container.append(this.plots.get(chart.id).figure);
  }

  draw(chart) {
    const names = chart.series.map((s) => s.name || 'all').join('\n');
    const data = chart.series.length ? align(chart.series) : [[], []];
    let entry = this.plots.get(chart.id);
    if (entry && entry.names !== names) {
      entry.plot.destroy();
      entry.figure.remove();
      entry = undefined;
    }
    if (!entry) {
      const caption = h('figcaption', {}, h('span', { class: 'chart-title' }, chart.title),
        h('span', { class: 'chart-now' }));
      const area = h('div', { class: 'chart-area', 'aria-hidden': 'true' });
      const figure = h('figure', { class: 'chart', 'data-chart': chart.id, role: 'group',
        'aria-label': chart.title }, caption, area);
      this.container.append(figure);
      const series = chart.series.length
        ? chart.series.map((s, i) => ({ label: s.name || 'all', stroke: cssVar(PALETTE[i % PALETTE.length]),
          width: 2, spanGaps: false, value: (u, v) => (v === null || v === undefined ? '–' : format(v, chart.unit)) }))
        : [{ label: 'no data', stroke: cssVar('--muted') }];
      const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--border'), width: 1 },
        ticks: { stroke: cssVar('--border'), width: 1 } };
      const plot = new uPlot({
        width: this.width(), height: HEIGHT,
        series: [{}, ...series],
        axes: [axis, { ...axis, size: 56 }],
        scales: { x: { time: true, range: () => this.span }, y: { range: (u, min, max) => [0, Math.max(max ?? 0, FLOOR[chart.unit] ?? 1) * 1.1] } },
        legend: { show: chart.series.length > 1 },
        cursor: { drag: { x: false, y: false } },
      }, data, area);
      entry = { plot, names, figure, caption };
      this.plots.set(chart.id, entry);
    } else {
      entry.plot.setData(data);
    }
    entry.caption.querySelector('.chart-now').textContent = summary(chart);
  }

  width() {
    return Math.max(240, Math.min(this.container.clientWidth || 720, 780) - 8);
  }

  resize() {
    for (const { plot } of this.plots.values()) plot.setSize({ width: this.width(), height: HEIGHT });
  }
}
