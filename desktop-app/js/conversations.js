// The conversation sidebar: the list (newest first), search, rename and delete.

import * as api from './api.js';
import { h } from './dom.js';

const SEARCH_DELAY_MS = 200;

export class ConversationList {
  constructor({ list, search, navigate, onDeleted }) {
    Object.assign(this, { list, search, navigate, onDeleted });
    this.currentId = null;
    this.timer = null;
    this.generation = 0;
    search.addEventListener('input', () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.refresh(), SEARCH_DELAY_MS);
    });
    search.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && search.value) {
        event.stopPropagation();
        search.value = '';
        this.refresh();
      } else if (event.key === 'ArrowDown' || (event.key === 'Enter' && search.value)) {
        event.preventDefault();
        this.list.querySelector('a')?.focus();
        if (event.key === 'Enter') this.list.querySelector('a')?.click();
      }
    });
  }

  setCurrent(id) {
    this.currentId = id;
    for (const link of this.list.querySelectorAll('a')) {
      if (link.dataset.id === id) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
  }

  async refresh() {
    const generation = ++this.generation;
    const query = this.search.value.trim();
    let page;
    try {
      page = query ? await api.conversations.search(query) : await api.conversations.list();
    } catch (error) {
      if (generation === this.generation) {
        this.list.replaceChildren(h('li', { class: 'error' }, `Conversations unavailable: ${error.message}`));
      }
      return;
    }
    if (generation !== this.generation) return;
    const rows = page.data.map((conversation) => this.row(conversation));
    if (!rows.length) rows.push(h('li', { class: 'list-empty' }, query ? 'No conversation matches.' : 'No conversations yet.'));
    this.list.replaceChildren(...rows);
    this.setCurrent(this.currentId);
  }

  row(conversation) {
    const title = conversation.title || 'Untitled conversation';
    const link = h('a', { href: `/c/${conversation.id}`, 'data-id': conversation.id, class: 'conversation-link' },
      h('span', { class: 'conversation-title' }, title),
      conversation.match?.snippet ? h('span', { class: 'conversation-snippet' }, conversation.match.snippet) : null);
    link.addEventListener('click', (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      this.navigate(`/c/${conversation.id}`);
    });
    const rename = h('button', { type: 'button', class: 'row-action', 'aria-label': `Rename ${title}` }, 'Rename');
    const remove = h('button', { type: 'button', class: 'row-action', 'aria-label': `Delete ${title}` }, 'Delete');
    const item = h('li', { class: 'conversation' }, link, h('div', { class: 'row-actions' }, rename, remove));
    rename.addEventListener('click', () => this.startRename(item, conversation, title));
    remove.addEventListener('click', () => this.remove(conversation, title));
    return item;
  }

  startRename(item, conversation, title) {
    const input = h('input', { type: 'text', class: 'rename-input', value: title, 'aria-label': 'New title',
      maxlength: 200 });
    const finish = async (save) => {
      input.removeEventListener('blur', onBlur);
      const value = input.value.trim();
      if (save && value && value !== title) {
        try {
          await api.conversations.rename(conversation.id, value);
        } catch (error) {
          alert(`Could not rename: ${error.message}`);
        }
      }
      await this.refresh();
      this.list.querySelector(`a[data-id="${conversation.id}"]`)?.focus();
      if (save && conversation.id === this.currentId) this.onRenamed?.(value);
    };
    const onBlur = () => finish(true);
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        finish(true);
      } else if (event.key === 'Escape') {
        event.preventDefault();
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener('blur', onBlur);
    item.replaceChildren(input);
    input.focus();
    input.select();
  }

  async remove(conversation, title) {
    if (!confirm(`Delete "${title}"? This cannot be undone.`)) return;
    try {
      await api.conversations.remove(conversation.id);
    } catch (error) {
      alert(`Could not delete: ${error.message}`);
      return;
    }
    await this.refresh();
    this.onDeleted?.(conversation.id);
  }
}
