// The public API, and nothing else: /api (trusted operator, no key) or /v1 (the gateway,
// Authorization: Bearer <key>). The key lives in this tab's sessionStorage, never in a URL.

const store = window.sessionStorage;

export const conn = {
  get prefix() { return store.getItem('chathistory.prefix') || '/api'; },
  get key() { return store.getItem('chathistory.key') || ''; },
  get pipeline() { return store.getItem('chathistory.pipeline') || '/api/pipeline'; },
  save({ prefix, key, pipeline }) {
    store.setItem('chathistory.prefix', prefix === '/v1' ? '/v1' : '/api');
    if (key) store.setItem('chathistory.key', key); else store.removeItem('chathistory.key');
    store.setItem('chathistory.pipeline', pipeline || '/api/pipeline');
  },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders() {
  return conn.prefix === '/v1' && conn.key ? { Authorization: `Bearer ${conn.key}` } : {};
}

// Turns any answer that is not 2xx into an ApiError with the words of the JSON error (or
// of the status line, for nginx's own HTML pages such as 413).
async function failure(res) {
  let code = 'http_' + res.status, message = `${res.status} ${res.statusText || 'error'}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch { /* not JSON */ }
  if (res.status === 401 && conn.prefix === '/v1') message += ' (check the API key under Connection)';
  if (res.status === 429) message += `; try again in ${res.headers.get('Retry-After') || 'a few'} s`;
  return new ApiError(res.status, code, message);
}

// fetch() that waits out one 429 (the gateway's limit_req) for its Retry-After, at most 5 s.
async function fetchRetrying(url, init) {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(url, init);
    if (res.status !== 429 || attempt > 0) return res;
    const wait = Math.min(5, Math.max(1, Number(res.headers.get('Retry-After')) || 1));
    await new Promise((r) => setTimeout(r, wait * 1000));
  }
}

export async function request(method, path, body, { signal } = {}) {
  const headers = { ...authHeaders() };
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetchRetrying(conn.prefix + path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `the server did not answer (${e.message})`);
  }
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return null;
  return res.json();
}

const q = (params) => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') s.set(k, v);
  const t = s.toString();
  return t ? '?' + t : '';
};
const id = encodeURIComponent;

export const api = {
  listSessions: (cursor, limit = 20) => request('GET', '/sessions' + q({ limit, cursor })),
  getSession: (sid) => request('GET', `/sessions/${id(sid)}`),
  createSession: (body) => request('POST', '/sessions', body),
  updateSession: (sid, body) => request('PATCH', `/sessions/${id(sid)}`, body),
  deleteSession: (sid) => request('DELETE', `/sessions/${id(sid)}`),
  listMessages: (sid, cursor, limit = 50) =>
    request('GET', `/sessions/${id(sid)}/messages` + q({ limit, cursor })),
  search: (body) => request('POST', '/search', body),
  getRetention: () => request('GET', '/settings/retention'),
  setRetention: (body) => request('PUT', '/settings/retention', body),
};

// A message's audio_url is a path on the prefix it was read from. On /api the <audio>
// element streams it (Range requests, seeking). A media element cannot send an
// Authorization header, so on /v1 the file is fetched with the key and played from a Blob.
export const audioNeedsFetch = () => conn.prefix === '/v1';
export async function audioSource(audioUrl) {
  if (conn.prefix !== '/v1') return { src: audioUrl, revoke() {} };
  let res;
  try {
    res = await fetchRetrying(audioUrl, { headers: authHeaders() });
  } catch (e) {
    throw new ApiError(0, 'network', `the audio did not come (${e.message})`);
  }
  if (!res.ok) throw await failure(res);
  const src = URL.createObjectURL(await res.blob());
  return { src, revoke() { URL.revokeObjectURL(src); } };
}

// POSTs recorded or picked audio to the pipeline for the open session; capture records it.
export async function sendToPipeline(sessionId, blob, filename) {
  const url = conn.pipeline + (conn.pipeline.includes('?') ? '&' : '?') +
    'session_id=' + encodeURIComponent(sessionId);
  const headers = { ...authHeaders() };
  let body;
  if (blob.type === 'audio/wav' || blob.type === 'audio/x-wav' || blob.type === 'audio/wave') {
    headers['Content-Type'] = 'audio/wav';
    body = blob;
  } else {
    body = new FormData();
    body.append('audio', blob, filename || 'audio');
  }
  let res;
  try {
    res = await fetch(url, { method: 'POST', headers, body });
  } catch (e) {
    throw new ApiError(0, 'network', `the pipeline did not answer (${e.message})`);
  }
  if (!res.ok) throw await failure(res);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch {
    throw new ApiError(res.status, 'bad_answer', 'the pipeline answered something that is not JSON');
  }
  return { json, messageId: res.headers.get('X-Chathistory-Message-Id') };
}
