// The API client: every call the app makes to its own origin (the desktop-web service proxies them).

export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    message = body?.error?.message || body?.detail || message;
    if (typeof message !== 'string') message = JSON.stringify(message);
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message, response.headers.get('retry-after'));
}

async function request(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...headers }, signal };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'the suite cannot be reached');
  }
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : response.json();
}

const enc = encodeURIComponent;

export const conversations = {
  create: (metadata = {}) => request('/v1/conversations', { method: 'POST', body: { metadata } }),
  list: (limit = 100) => request(`/v1/conversations?limit=${limit}`),
  search: (query, limit = 50) => request(`/v1/conversations?query=${enc(query)}&limit=${limit}`),
  get: (id) => request(`/v1/conversations/${enc(id)}`),
  rename: (id, title) => request(`/v1/conversations/${enc(id)}`, { method: 'POST', body: { metadata: { title } } }),
  remove: (id) => request(`/v1/conversations/${enc(id)}`, { method: 'DELETE' }),
  addItems: (id, items) => request(`/v1/conversations/${enc(id)}/items`, { method: 'POST', body: { items } }),
  removeItem: (id, itemId) => request(`/v1/conversations/${enc(id)}/items/${enc(itemId)}`, { method: 'DELETE' }),
  async items(id, order = 'asc') {
    const all = [];
    let after = null;
    for (;;) {
      const page = await request(`/v1/conversations/${enc(id)}/items?limit=100&order=${order}`
        + (after ? `&after=${enc(after)}` : ''));
      all.push(...page.data);
      if (!page.has_more || !page.last_id) return all;
      after = page.last_id;
    }
  },
};

export const models = () => request('/v1/models');
export const status = () => request('/v1/status');
export const alerts = () => request('/api/alerts');
export const charts = (minutes) => request(`/api/charts?minutes=${enc(minutes)}`);
export const collections = () => request('/rag/collections');

function bearer(key) {
  return key ? { authorization: `Bearer ${key}` } : {};
}

export const approvals = {
  list: (key) => request('/mcp/approvals', { headers: bearer(key) }),
  decide: (key, id, decision, reason) => request(`/mcp/approvals/${enc(id)}/${decision}`,
    { method: 'POST', headers: bearer(key), body: { reason } }),
};

/** Read a server-sent-events body, calling onEvent(eventName, dataText) for each event. */
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, '');
      let event = 'message';
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(event, data.join('\n'));
    }
  }
}

/** POST a streamed request; returns the Response once its headers are in (the body is read by the caller). */
export async function postStream(path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(body), signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'the suite cannot be reached');
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

/** Upload files to the RAG index with real progress (XMLHttpRequest reports the bytes sent). */
export function uploadToIndex(files, collection, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append('collection', collection);
    for (const file of files) form.append('files', file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/rag/index');
    xhr.responseType = 'json';
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new ApiError(xhr.status, xhr.response?.error?.message || xhr.response?.detail?.toString()
        || `upload failed (${xhr.status})`));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'the upload could not reach the suite')));
    xhr.send(form);
  });
}
