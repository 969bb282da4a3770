// The settings store: one JSON object in localStorage, with defaults and change listeners.

const KEY = 'ai-suite.settings';

export const DEFAULTS = Object.freeze({
  model: 'auto',
  temperature: 0.7,
  maxTokens: 512,
  systemPrompt: '',
  collection: 'default',
  useDocuments: false,
  mcpKey: '',
  theme: 'dark',
});

function load() {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY) || '{}');
    return { ...DEFAULTS, ...(stored && typeof stored === 'object' ? stored : {}) };
  } catch {
    return { ...DEFAULTS };
  }
}

const listeners = new Set();
let current = load();

export function get(name) {
  return current[name];
}

export function all() {
  return { ...current };
}

export function set(name, value) {
  current = { ...current, [name]: value };
  localStorage.setItem(KEY, JSON.stringify(current));
  for (const listener of listeners) listener(name, value);
}

export function onChange(listener) {
  listeners.add(listener);
}
