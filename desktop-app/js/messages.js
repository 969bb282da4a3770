// One message in the chat view: its markdown body, the model that answered and why, sources and actions.

import { h, copyText } from './dom.js';
import { render } from './markdown.js';

export function textOf(item) {
  if (typeof item.content === 'string') return item.content;
  return (item.content || []).map((part) => part.text ?? part.refusal ?? '').join('');
}

function metaLine(model, reason, status) {
  const parts = [];
  if (model) parts.push(h('span', { class: 'meta-model' }, `Answered by ${model}`));
  // An explicitly chosen model needs no reason; auto routing (and failover) does.
  if (reason && reason !== 'requested' && !reason.startsWith('alias ')) parts.push(h('span', { class: 'meta-reason' }, `Why: ${reason}`));
  if (status === 'incomplete') parts.push(h('span', { class: 'meta-incomplete' }, 'Stopped'));
  return parts;
}

/** A numbered list of sources; each expands to the passage it came from. */
export function sourcesList(sources) {
  if (!sources?.length) return null;
  return h('section', { class: 'sources', 'aria-label': 'Sources' },
    h('h3', { class: 'sources-title' }, 'Sources'),
    h('ol', {}, sources.map((source, index) => h('li', {},
      h('details', {},
        h('summary', {}, `[${index + 1}] ${source.document}`,
          h('span', { class: 'source-score' }, ` chunk ${source.chunk}, score ${Number(source.score).toFixed(3)}`)),
        h('blockquote', { class: 'source-text' }, source.text))))));
}

export class MessageView {
  constructor({ role, text = '', model = null, reason = null, status = 'completed', sources = null }) {
    this.role = role;
    this.text = text;
    this.body = h('div', { class: 'message-body markdown' });
    this.meta = h('div', { class: 'message-meta' });
    this.actions = h('div', { class: 'message-actions' });
    this.extra = h('div', { class: 'message-extra' });
    const label = role === 'user' ? 'You' : role === 'assistant' ? 'Assistant' : role;
    this.element = h('article', { class: `message ${role}`, 'aria-label': `${label} message` },
      h('div', { class: 'message-role' }, label), this.meta, this.body, this.extra, this.actions);
    this.setMeta(model, reason, status);
    this.setSources(sources);
    if (role === 'assistant') {
      const copy = h('button', { type: 'button', class: 'copy-answer' }, 'Copy answer');
      copy.addEventListener('click', () => copyText(this.text, copy));
      this.actions.append(copy);
    }
    this.show(text, true);
  }

  setMeta(model, reason, status) {
    this.meta.replaceChildren(...metaLine(model, reason, status));
  }

  setSources(sources) {
    const list = sourcesList(sources);
    this.extra.replaceChildren(...(list ? [list] : []));
  }

  show(text, final) {
    this.text = text;
    if (this.role === 'user') {
      this.body.replaceChildren(h('p', { class: 'plain' }, text));
      return Promise.resolve();
    }
    return render(this.body, text, { final });
  }

  setRegenerate(handler) {
    this.actions.querySelector('.regenerate')?.remove();
    if (!handler) return;
    this.actions.append(h('button', { type: 'button', class: 'regenerate', onclick: handler }, 'Regenerate'));
  }
}
