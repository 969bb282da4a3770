// The approvals page: pending MCP tool calls that wait for someone else's decision.

import * as api from './api.js';
import * as settings from './settings.js';
import { h } from './dom.js';

const REFRESH_MS = 5000;
const NOTICE_MS = 10000; // how long the last decision stays in the message beside the pending count

export class ApprovalsView {
  constructor({ container, message, refreshButton }) {
    Object.assign(this, { container, message, refreshButton });
    this.timer = null;
    this.notice = null; // { text, until }: the last decision, kept in front of what a refresh says
    refreshButton.addEventListener('click', () => this.refresh());
  }

  show() {
    this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  say(text, isError = false) {
    this.message.textContent = text;
    this.message.classList.toggle('error', isError);
  }

  async refresh() {
    const key = settings.get('mcpKey');
    if (!key) {
      this.container.replaceChildren();
      this.say('Enter an MCP API key whose role may approve in Settings to see pending requests.');
      return;
    }
    let body;
    try {
      body = await api.approvals.list(key);
    } catch (error) {
      this.container.replaceChildren();
      this.say(`Approvals unavailable: ${error.message}`, true);
      return;
    }
    const pending = (body.requests || []).filter((request) => request.status === 'pending');
    const summary = pending.length ? `${pending.length} pending, signed in as ${body.user}.`
      : `No pending approvals (signed in as ${body.user}).`;
    const notice = this.notice && Date.now() < this.notice.until ? `${this.notice.text} ` : '';
    this.say(notice + summary);
    if (this.container.contains(document.activeElement) && document.activeElement.tagName === 'INPUT') return;
    this.container.replaceChildren(...pending.map((request) => this.card(request)));
  }

  card(request) {
    const reason = h('input', { type: 'text', class: 'reason', 'aria-label': `Reason for ${request.request_id}`,
      placeholder: 'Reason (optional)', maxlength: 500 });
    const decide = async (decision) => {
      try {
        await api.approvals.decide(settings.get('mcpKey'), request.request_id, decision, reason.value.trim());
        const text = `${decision === 'approve' ? 'Approved' : 'Rejected'} ${request.request_id}.`;
        this.notice = { text, until: Date.now() + NOTICE_MS };
        this.say(text);
      } catch (error) {
        this.say(`Could not ${decision} ${request.request_id}: ${error.message}`, true);
      }
      await this.refresh();
    };
    return h('article', { class: 'approval', 'aria-label': `Approval ${request.request_id}` },
      h('h2', {}, `${request.tool}`, h('span', { class: 'approval-user' }, ` requested by ${request.user}`)),
      h('p', { class: 'approval-times' }, `Requested ${request.created_at}, expires ${request.expires_at}`),
      h('pre', { class: 'approval-args' }, JSON.stringify(request.args, null, 2)),
      h('div', { class: 'approval-actions' }, reason,
        h('button', { type: 'button', class: 'approve', onclick: () => decide('approve'),
          'aria-label': `Approve ${request.tool} for ${request.user}` }, 'Approve'),
        h('button', { type: 'button', class: 'reject', onclick: () => decide('reject'),
          'aria-label': `Reject ${request.tool} for ${request.user}` }, 'Reject')));
  }
}
