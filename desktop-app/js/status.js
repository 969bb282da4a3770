// Live model status from the gateway (/v1/status) and active alerts (/api/alerts), polled without reloading.

import * as api from './api.js';
import { h } from './dom.js';

const STATUS_INTERVAL_MS = 1000;
const ALERTS_INTERVAL_MS = 5000;

const STATE_LABELS = { healthy: 'healthy', loading: 'loading', cooling_down: 'cooling down', down: 'down' };

function describe(backend) {
  const bits = [STATE_LABELS[backend.state] || backend.state];
  if (backend.queue_depth !== null && backend.queue_depth !== undefined) bits.push(`queue ${backend.queue_depth}`);
  if (backend.last_tokens_per_second) bits.push(`${Number(backend.last_tokens_per_second).toFixed(1)} tok/s`);
  if (backend.state === 'cooling_down' && backend.cooldown_remaining_s) {
    bits.push(`${Math.ceil(backend.cooldown_remaining_s)} s`);
  }
  return bits.join(' · ');
}

export class StatusMonitor {
  constructor({ strip, detail, alerts }) {
    Object.assign(this, { strip, detail, alerts });
    this.timer = null;
    this.alertTimer = null;
    // what each area shows now: a poll that finds the same redraws nothing (no layout, no paint)
    this.shown = { status: null, alerts: null };
  }

  /** Whether `area` must be redrawn to show `content` (any JSON value); records it as shown if so. */
  changed(area, content) {
    const key = JSON.stringify(content);
    if (key === this.shown[area]) return false;
    this.shown[area] = key;
    return true;
  }

  start() {
    const tick = async () => {
      await this.poll();
      this.timer = setTimeout(tick, STATUS_INTERVAL_MS);
    };
    const alertTick = async () => {
      await this.pollAlerts();
      this.alertTimer = setTimeout(alertTick, ALERTS_INTERVAL_MS);
    };
    tick();
    alertTick();
  }

  async poll() {
    let body;
    try {
      body = await api.status();
    } catch (error) {
      this.showUnreachable(error);
      return;
    }
    const backends = body.backends || [];
    if (!this.changed('status', backends)) return;
    this.strip.replaceChildren(...backends.map((backend) => h('span', {
      class: `backend state-${backend.state}`, 'data-backend': backend.name,
      title: backend.error || (backend.models || []).join(', '),
    }, h('span', { class: 'dot', 'aria-hidden': 'true' }), `${backend.name}: ${describe(backend)}`)));
    this.detail.replaceChildren(...backends.map((backend) => h('tr', { class: `state-${backend.state}` },
      h('th', { scope: 'row' }, backend.name),
      h('td', {}, (backend.models || []).join(', ')),
      h('td', {}, h('span', { class: 'dot', 'aria-hidden': 'true' }), STATE_LABELS[backend.state] || backend.state),
      h('td', {}, backend.queue_depth ?? '–'),
      h('td', {}, backend.running ?? '–', ' / ', backend.slots ?? '–'),
      h('td', {}, backend.last_tokens_per_second ? Number(backend.last_tokens_per_second).toFixed(1) : '–'),
      h('td', {}, backend.error || ''))));
  }

  showUnreachable(error) {
    const text = `gateway: unreachable (${error.message})`;
    if (!this.changed('status', text)) return;
    this.strip.replaceChildren(h('span', { class: 'backend state-down' },
      h('span', { class: 'dot', 'aria-hidden': 'true' }), text));
    this.detail.replaceChildren(h('tr', { class: 'state-down' }, h('td', { colspan: 7 }, text)));
  }

  async pollAlerts() {
    let body;
    try {
      body = await api.alerts();
    } catch {
      body = { available: false };
    }
    const active = body.available ? body.alerts || [] : [];
    if (!this.changed('alerts', active)) return;
    this.alerts.hidden = active.length === 0;
    this.alerts.replaceChildren(...active.map((alert) => h('p', { class: `alert severity-${alert.severity}` },
      h('strong', {}, `${alert.severity || 'alert'}: ${alert.name}`),
      alert.service ? ` (${alert.service})` : '', alert.summary ? ` ${alert.summary}` : '')));
  }
}
