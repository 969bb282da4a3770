// The chat view: opens a conversation, sends a message, streams the answer, stops and regenerates it.

import * as api from './api.js';
import * as settings from './settings.js';
import { h } from './dom.js';
import { MessageView, textOf } from './messages.js';

// While an answer streams, re-render at most this often (the first token shows at once).
const RENDER_INTERVAL_MS = 50;

// A hidden page paints no frames, so what waits for one runs after this long at the latest.
const FRAME_FALLBACK_MS = 250;

/** `callback` (which may be null) wrapped so that it runs at most once, however often it is called. */
function once(callback) {
  let pending = Boolean(callback);
  return () => {
    if (!pending) return;
    pending = false;
    callback();
  };
}

/** Run `callback` once, after the next frame has been painted (or after FRAME_FALLBACK_MS without one). */
function afterFrame(callback) {
  const run = once(callback);
  requestAnimationFrame(() => setTimeout(run, 0));
  setTimeout(run, FRAME_FALLBACK_MS);
}

function decodeReason(value) {
  if (!value) return null;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

export class Chat {
  constructor({ log, title, form, prompt, sendButton, stopButton, onStored, onOpened }) {
    Object.assign(this, { log, title, form, prompt, sendButton, stopButton, onStored, onOpened });
    this.conversationId = null;
    this.views = [];
    this.controller = null;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    prompt.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    stopButton.addEventListener('click', () => this.stop());
  }

  get streaming() {
    return this.controller !== null;
  }

  reset(title = 'New chat') {
    this.stop();
    this.conversationId = null;
    this.views = [];
    this.log.replaceChildren();
    this.title.textContent = title;
  }

  newChat() {
    this.reset();
    this.log.append(h('p', { class: 'empty-hint' }, 'Ask anything. Enter sends, Shift+Enter adds a line.'));
    this.prompt.focus();
  }

  async open(id) {
    this.reset('Loading…');
    this.conversationId = id;
    try {
      const [conversation, items] = await Promise.all([api.conversations.get(id), api.conversations.items(id)]);
      if (this.conversationId !== id) return;
      this.title.textContent = conversation.title || 'Untitled conversation';
      const fragment = document.createDocumentFragment();
      for (const item of items) {
        if (item.type && item.type !== 'message') continue;
        if (item.role !== 'user' && item.role !== 'assistant') continue;
        const view = new MessageView({ role: item.role, text: textOf(item), model: item.model,
          reason: item.route_reason, status: item.status });
        view.itemId = item.id;
        this.views.push(view);
        fragment.append(view.element);
      }
      this.log.append(fragment);
      this.updateRegenerate();
      this.log.scrollTop = this.log.scrollHeight;
      this.onOpened?.(conversation);
    } catch (error) {
      this.conversationId = null;
      this.title.textContent = error.status === 404 ? 'Conversation not found' : 'Could not open the conversation';
      this.showError(error);
    }
  }

  showError(error) {
    this.log.append(h('p', { class: 'error', role: 'alert' }, error.message || String(error)));
  }

  updateRegenerate() {
    const last = this.views.at(-1);
    for (const view of this.views) view.setRegenerate(null);
    if (last && last.role === 'assistant' && !this.streaming) last.setRegenerate(() => this.regenerate());
  }

  submit() {
    const text = this.prompt.value.trim();
    if (!text || this.streaming) return;
    this.prompt.value = '';
    this.send(text);
  }

  setStreaming(controller) {
    this.controller = controller;
    this.stopButton.hidden = !controller;
    this.sendButton.disabled = Boolean(controller);
    this.log.setAttribute('aria-busy', controller ? 'true' : 'false');
    this.updateRegenerate();
  }

  stop() {
    this.controller?.abort();
  }

  async ensureConversation() {
    if (this.conversationId) return this.conversationId;
    const conversation = await api.conversations.create({});
    this.conversationId = conversation.id;
    return conversation.id;
  }

  /**
   * Put conversation `id` in the address bar, unless another one was opened meanwhile. A new conversation's
   * address is set once its first token is on screen: the navigation costs the browser work that would
   * otherwise delay that token.
   */
  showAddress(id) {
    const path = `/c/${id}`;
    if (id && this.conversationId === id && location.pathname !== path) history.pushState({}, '', path);
  }

  async send(text) {
    this.log.querySelector('.empty-hint')?.remove();
    const user = new MessageView({ role: 'user', text });
    const answer = new MessageView({ role: 'assistant', text: '' });
    answer.element.classList.add('streaming');
    this.views.push(user, answer);
    this.log.append(user.element, answer.element);
    const controller = new AbortController();
    this.setStreaming(controller);
    let result = { text: '', status: 'completed' };
    let id = null;
    // in the frame that shows the question, not in one while the answer is being asked for
    if (this.title.textContent === 'New chat') this.title.textContent = text.slice(0, 80);
    try {
      id = await this.ensureConversation();
      result = settings.get('useDocuments')
        ? await this.streamDocuments(id, text, answer, controller.signal)
        : await this.streamChat(id, text, answer, controller.signal);
    } catch (error) {
      if (error.name !== 'AbortError') {
        answer.element.classList.add('failed');
        answer.extra.append(h('p', { class: 'error', role: 'alert' }, `No answer: ${error.message}`));
      }
      result.status = 'incomplete';
    } finally {
      answer.element.classList.remove('streaming');
      this.setStreaming(null);
      this.showAddress(id);
    }
    await answer.show(answer.text, true);
    if (result.status === 'incomplete' && answer.text) answer.meta.append(h('span', { class: 'meta-incomplete' }, 'Stopped'));
    this.onStored?.();
  }

  async streamChat(id, text, answer, signal) {
    const messages = [];
    const system = settings.get('systemPrompt').trim();
    if (system) messages.push({ role: 'system', content: system });
    messages.push({ role: 'user', content: text });
    const body = { model: settings.get('model'), stream: true, conversation: id, messages,
      temperature: Number(settings.get('temperature')), max_tokens: Number(settings.get('maxTokens')) };
    const response = await api.postStream('/v1/chat/completions', body, signal);
    const model = response.headers.get('x-ai-suite-model');
    const reason = decodeReason(response.headers.get('x-ai-suite-route-reason'));
    const painter = this.painter(answer, { meta: () => answer.setMeta(model, reason),
      shown: () => this.showAddress(id) });
    let failure = null;
    try {
      await api.readEvents(response, (event, data) => {
        if (data === '[DONE]') return;
        const chunk = JSON.parse(data);
        if (chunk.error) {
          failure = chunk.error.message || 'the answer failed';
          return;
        }
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) painter.add(delta);
      });
    } catch (error) {
      if (error.name === 'AbortError') return { status: 'incomplete' };
      throw error;
    } finally {
      painter.flush();
    }
    if (failure) throw new Error(failure);
    return { status: 'completed' };
  }

  async streamDocuments(id, text, answer, signal) {
    const collection = settings.get('collection') || 'default';
    const response = await api.postStream('/rag/query', { query: text, collection, stream: true }, signal);
    const painter = this.painter(answer, { meta: () => answer.setMeta(`documents: ${collection}`, null),
      shown: () => this.showAddress(id) });
    let failure = null;
    try {
      await api.readEvents(response, (event, data) => {
        const payload = JSON.parse(data);
        if (event === 'sources') answer.setSources(payload.sources);
        else if (event === 'delta') painter.add(payload.text);
        else if (event === 'error') failure = payload.error?.message || 'the answer failed';
      });
    } catch (error) {
      if (error.name !== 'AbortError') throw error;
    } finally {
      painter.flush();
    }
    if (failure) throw new Error(failure);
    // RAG answers outside the gateway, so the exchange is added to the conversation here.
    if (answer.text) {
      await api.conversations.addItems(id, [{ type: 'message', role: 'user', content: text },
        { type: 'message', role: 'assistant', content: answer.text }]);
    }
    return { status: signal.aborted ? 'incomplete' : 'completed' };
  }

  /**
   * Paints a streaming answer at most every RENDER_INTERVAL_MS. `meta` draws the answer's header line with its
   * first words (or when it ends without any): drawn when the response headers arrive, it would cost a frame
   * while the model computes its first token. `shown` runs once the first text is on screen.
   */
  painter(view, { meta = null, shown = null } = {}) {
    let text = '';
    let timer = null;
    let last = 0;
    const header = once(meta);
    const announce = once(shown && (() => afterFrame(shown)));
    const paint = () => {
      timer = null;
      last = performance.now();
      header();
      view.show(text, false);
      this.log.scrollTop = this.log.scrollHeight;
      if (text.trim()) announce();
    };
    return {
      add(delta) {
        text += delta;
        view.text = text;
        if (timer) return;
        const wait = RENDER_INTERVAL_MS - (performance.now() - last);
        if (wait <= 0) paint();
        else timer = setTimeout(paint, wait);
      },
      flush() {
        if (timer) clearTimeout(timer);
        header();
        view.text = text;
      },
    };
  }

  async regenerate() {
    const id = this.conversationId;
    const answerIndex = this.views.findLastIndex((view) => view.role === 'assistant');
    const userView = this.views.slice(0, answerIndex).findLast((view) => view.role === 'user');
    if (!id || answerIndex < 0 || !userView || this.streaming) return;
    try {
      const items = await api.conversations.items(id, 'desc');
      const lastAnswer = items.find((item) => item.role === 'assistant');
      const lastQuestion = lastAnswer && items.slice(items.indexOf(lastAnswer)).find((item) => item.role === 'user');
      for (const item of [lastAnswer, lastQuestion]) {
        if (item) await api.conversations.removeItem(id, item.id);
      }
    } catch (error) {
      this.showError(error);
      return;
    }
    for (const view of this.views.splice(this.views.indexOf(userView))) view.element.remove();
    await this.send(userView.text);
  }
}
