// Markdown rendering: marked parses, DOMPurify sanitises (model output is hostile), highlight.js colours code.

import { marked } from '/vendor/marked/marked.esm.js';
import DOMPurify from '/vendor/dompurify/purify.es.js';
import hljs from '/vendor/highlight/highlight.min.js';
import { h, copyText } from './dom.js';

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]);

// Raw HTML in model output is shown as text, never parsed as markup; DOMPurify then cleans what markdown made
// (a `[link](javascript:...)` becomes a link without its href).
marked.use({ gfm: true, breaks: false, renderer: {
  html: (token) => (token.block ? `<p class="raw-html">${escapeHtml(token.text)}</p>` : escapeHtml(token.text)),
} });

// Blocks longer than this are highlighted in slices, one task each, so the page never freezes on a huge answer.
const SLICE_LINES = 150;
// Guessing a language means trying them all; only small blocks are worth it.
const AUTO_DETECT_MAX_CHARS = 4000;

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
});

const PURIFY = {
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe', 'object', 'embed', 'svg', 'math'],
  FORBID_ATTR: ['style', 'id', 'srcset'],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

/** Parse untrusted markdown into a sanitised DOM fragment (no script, no event handlers, no javascript: URLs). */
export function toFragment(text) {
  const html = marked.parse(text ?? '', { async: false });
  return DOMPurify.sanitize(html, PURIFY);
}

function languageOf(code) {
  const match = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className);
  return match && hljs.getLanguage(match[1]) ? match[1] : null;
}

function decorate(pre) {
  const code = pre.querySelector('code') || pre;
  const language = languageOf(code);
  const copy = h('button', { type: 'button', class: 'copy-code' }, 'Copy code');
  copy.addEventListener('click', () => copyText(code.textContent, copy));
  const wrapper = h('div', { class: 'code-block' },
    h('div', { class: 'code-head' }, h('span', { class: 'code-lang' }, language || 'text'), copy));
  pre.replaceWith(wrapper);
  // long lines scroll sideways inside the block, so keyboard users must be able to focus it
  pre.tabIndex = 0;
  wrapper.append(pre);
  return { code, language };
}

const nextTask = () => new Promise((resolve) => { setTimeout(resolve, 0); });

async function highlight(code, language) {
  const text = code.textContent;
  code.classList.add('hljs');
  if (!language) {
    if (text.length <= AUTO_DETECT_MAX_CHARS) {
      const result = hljs.highlightAuto(text);
      code.innerHTML = result.value; // highlight.js escapes the text it is given
    }
    return;
  }
  const lines = text.split('\n');
  if (lines.length <= SLICE_LINES) {
    code.innerHTML = hljs.highlight(text, { language, ignoreIllegals: true }).value;
    return;
  }
  // One span per slice, plain first; each is then swapped for its highlighted form in a task of its own.
  const slices = [];
  for (let start = 0; start < lines.length; start += SLICE_LINES) {
    const end = start + SLICE_LINES;
    slices.push(lines.slice(start, end).join('\n') + (end < lines.length ? '\n' : ''));
  }
  const spans = slices.map((slice) => {
    const span = document.createElement('span');
    span.textContent = slice;
    return span;
  });
  code.replaceChildren(...spans);
  for (let i = 0; i < slices.length; i += 1) {
    await nextTask();
    if (!code.isConnected) return;
    spans[i].innerHTML = hljs.highlight(slices[i], { language, ignoreIllegals: true }).value;
  }
}

/**
 * Render untrusted markdown into `element`. While an answer streams (final=false) code is shown plain; once it is
 * final every block is highlighted, slice by slice for long ones.
 */
export async function render(element, text, { final = true } = {}) {
  element.replaceChildren(toFragment(text));
  const blocks = [...element.querySelectorAll('pre')].map(decorate);
  if (!final) return;
  element.dataset.rendered = 'pending';
  for (const { code, language } of blocks) {
    await highlight(code, language);
    await nextTask();
  }
  element.dataset.rendered = 'done';
}
