// The app: wires the views together and routes by location.pathname (/, /c/{id}, /approvals, /settings, /status).

import * as api from './api.js';
import * as settings from './settings.js';
import { h } from './dom.js';
import { Chat } from './chat.js';
import { ConversationList } from './conversations.js';
import { StatusMonitor } from './status.js';
import { StatusCharts } from './charts.js';
import { ApprovalsView } from './approvals.js';
import { bindSettings } from './settings-view.js';
import { bindDocuments } from './documents.js';

const $ = (id) => document.getElementById(id);
const VIEWS = ['chat', 'approvals', 'settings', 'status'];
const BUILT_IN_MODELS = ['auto', 'chat-7b', 'code-7b'];

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme === 'light' ? 'light' : 'dark';
  $('hljs-dark').disabled = theme === 'light';
  $('hljs-light').disabled = theme !== 'light';
}

async function loadModels() {
  const names = [...BUILT_IN_MODELS];
  try {
    const body = await api.models();
    for (const model of body.data || []) if (!names.includes(model.id)) names.push(model.id);
  } catch {
    // the gateway is down: the built-in names still work once it is back
  }
  const chosen = settings.get('model');
  if (!names.includes(chosen)) names.push(chosen);
  for (const select of document.querySelectorAll('select.model-select')) {
    select.replaceChildren(...names.map((name) => h('option', { value: name }, name)));
    select.value = chosen;
  }
}

function setSidebar(open) {
  document.body.classList.toggle('sidebar-open', open);
  $('open-sidebar').setAttribute('aria-expanded', String(open));
}

const chat = new Chat({
  log: $('messages'), title: $('chat-title'), form: $('composer'), prompt: $('prompt'),
  sendButton: $('send'), stopButton: $('stop'),
  onStored: () => sidebar.refresh().then(() => sidebar.setCurrent(chat.conversationId)),
  onOpened: (conversation) => sidebar.setCurrent(conversation.id),
});
const sidebar = new ConversationList({
  list: $('conversation-list'), search: $('search'), navigate,
  onDeleted: (id) => { if (id === chat.conversationId) navigate('/'); },
});
sidebar.onRenamed = (title) => { $('chat-title').textContent = title; };
const approvals = new ApprovalsView({ container: $('approval-list'), message: $('approvals-message'),
  refreshButton: $('approvals-refresh') });
const charts = new StatusCharts({ container: $('charts'), note: $('charts-note'), windowSelect: $('chart-window') });

function showView(name) {
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
  for (const link of document.querySelectorAll('a[data-route]')) {
    if (link.getAttribute('href') === `/${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (name === 'approvals') approvals.show();
  else approvals.hide();
  if (name === 'status') charts.show();
  else charts.hide();
}

async function route() {
  const path = location.pathname;
  const match = /^\/c\/([^/]+)$/.exec(path);
  if (match) {
    showView('chat');
    const id = decodeURIComponent(match[1]);
    sidebar.setCurrent(id);
    if (id !== chat.conversationId) await chat.open(id);
  } else if (path === '/approvals' || path === '/settings' || path === '/status') {
    showView(path.slice(1));
    $(`view-${path.slice(1)}`).querySelector('h1')?.focus();
  } else {
    showView('chat');
    sidebar.setCurrent(null);
    if (chat.conversationId || !chat.views.length) chat.newChat();
  }
}

function navigate(path) {
  if (location.pathname !== path) history.pushState({}, '', path);
  setSidebar(false);
  route();
}

document.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-route]');
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.getAttribute('href'));
});
window.addEventListener('popstate', route);

document.addEventListener('keydown', (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 'k') {
    event.preventDefault();
    setSidebar(true);
    $('search').focus();
    $('search').select();
  } else if (event.key === 'Escape') {
    if (chat.streaming) {
      event.preventDefault();
      chat.stop();
    } else if (document.body.classList.contains('sidebar-open')) {
      setSidebar(false);
      $('open-sidebar').focus();
    }
  }
});

document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  if (location.pathname.startsWith('/c/') || location.pathname === '/') $('prompt').focus();
  else navigate('/');
});
$('new-chat').addEventListener('click', () => {
  if (location.pathname === '/') chat.newChat();
  else navigate('/');
});
$('open-sidebar').addEventListener('click', () => {
  setSidebar(true);
  $('search').focus();
});
$('close-sidebar').addEventListener('click', () => {
  setSidebar(false);
  $('open-sidebar').focus();
});
$('theme-toggle').addEventListener('click', () => {
  settings.set('theme', settings.get('theme') === 'light' ? 'dark' : 'light');
});
settings.onChange((name, value) => {
  if (name === 'theme') applyTheme(value);
});

applyTheme(settings.get('theme'));
loadModels().finally(() => bindSettings(document, $('settings-saved')));
bindDocuments({ dropZone: $('view-chat'), picker: $('file-input'), pickButton: $('attach'),
  panel: $('upload'), bar: $('upload-progress'), label: $('upload-text') });
new StatusMonitor({ strip: $('status-strip'), detail: $('status-rows'), alerts: $('alerts') }).start();
sidebar.refresh();
route();
