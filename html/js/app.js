// The history viewer: sessions, messages with their audio, search, retention, and a talk
// panel that records into the open session through the pipeline. Hash routes:
//   #/sessions   #/sessions/{id}?m={message id}   #/search?q=…   #/settings
import { api, conn, request, audioSource, audioNeedsFetch, sendToPipeline } from './api.js';
import { h, append, replace, when, clock, ms, plural, highlight, busy, errorBox, langs } from './ui.js';
import { Recorder } from './wav.js';

const main = document.getElementById('main');
let cleanups = [];           // what the current view must undo when it is left
let generation = 0;          // which route is current: a slower earlier one must not draw
const stale = (gen) => gen !== generation;

// ---------------------------------------------------------------- notices and dialogs

const noticeBox = document.getElementById('notice');
function notice(message, kind = 'error') {
  document.getElementById('notice-text').textContent = message;
  noticeBox.className = 'notice ' + kind;
  noticeBox.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  noticeBox.hidden = false;
  clearTimeout(notice.timer);
  if (kind === 'ok') notice.timer = setTimeout(() => { noticeBox.hidden = true; }, 5000);
}
document.getElementById('notice-close').addEventListener('click', () => { noticeBox.hidden = true; });
window.addEventListener('unhandledrejection', (e) => notice(e.reason?.message || String(e.reason)));
window.addEventListener('error', (e) => notice(e.message));

function confirmDialog(text, okLabel) {
  const dlg = document.getElementById('confirm-dialog');
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel;
  dlg.returnValue = '';
  dlg.showModal();
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
  });
}

// ---------------------------------------------------------------- connection

const connButton = document.getElementById('conn-button');
const connDialog = document.getElementById('conn-dialog');
const connForm = document.getElementById('conn-form');

function showConn() {
  connButton.textContent = conn.prefix === '/v1' ? '/v1 · key' : '/api';
  connButton.setAttribute('aria-label', `Connection: ${conn.prefix}. Change`);
}
connButton.addEventListener('click', () => {
  connForm.prefix.value = conn.prefix;
  connForm.key.value = conn.key;
  connForm.pipeline.value = conn.pipeline;
  connDialog.showModal();
});
document.getElementById('conn-cancel').addEventListener('click', () => connDialog.close('cancel'));
connForm.addEventListener('submit', (e) => {
  if (e.submitter?.value !== 'save') return;
  conn.save({ prefix: connForm.prefix.value, key: connForm.key.value.trim(), pipeline: connForm.pipeline.value.trim() });
  showConn();
  route();
});
showConn();

// ---------------------------------------------------------------- router

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/sessions';
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || '') };
}

async function route() {
  for (const f of cleanups) f();
  cleanups = [];
  noticeBox.hidden = true;
  const gen = ++generation;
  const { parts, params } = parseHash();
  const view = parts[0] || 'sessions';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  replace(main);
  try {
    if (view === 'sessions' && parts[1]) await sessionView(parts[1], params, gen);
    else if (view === 'sessions') await sessionsView(gen);
    else if (view === 'search') await searchView(params, gen);
    else if (view === 'settings') await settingsView(gen);
    else replace(main, h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/sessions' }, 'Sessions')));
  } catch (err) {
    if (!stale(gen)) append(main, errorBox(err));
  }
}
window.addEventListener('hashchange', route);

function title(text) {
  document.title = `${text} · Chat history`;
  return h('h1', { tabindex: '-1' }, text);
}

// ---------------------------------------------------------------- sessions

async function sessionsView(gen) {
  const list = h('ul', { class: 'sessions', id: 'session-list' });
  const more = h('button', { type: 'button', class: 'secondary', id: 'sessions-more', hidden: true }, 'More sessions');
  const status = h('p', { class: 'muted', role: 'status' });
  replace(main, h('div', { class: 'head' }, title('Sessions'), newSessionForm()), status, list, more);
  let cursor = null;
  const load = async () => {
    const page = await api.listSessions(cursor);
    if (stale(gen)) return;
    if (!page.data.length && !list.children.length) status.textContent = 'No sessions yet: create one above, then talk to it.';
    for (const s of page.data) list.append(sessionCard(s));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    counts(page.data);
  };
  more.addEventListener('click', () => busy(more, () => load().catch((e) => notice(e.message))));
  await load();
}

// The list has no message counts: each session's own answer has it (a few at a time).
async function counts(sessions) {
  const queue = [...sessions];
  const one = async () => {
    for (let s; (s = queue.shift());) {
      const out = document.querySelector(`[data-session-id="${s.id}"] .count`);
      try {
        const full = await api.getSession(s.id);
        if (out) out.textContent = plural(full.message_count, 'message', 'messages');
      } catch { if (out) out.textContent = ''; }
    }
  };
  await Promise.all([one(), one(), one(), one()]);
}

function sessionCard(s) {
  return h('li', { class: 'card session', dataset: { sessionId: s.id } },
    h('a', { class: 'title', href: `#/sessions/${s.id}` }, s.title || 'Untitled session'),
    h('div', { class: 'meta' },
      langs(s),
      h('span', { class: 'count' }, '…'),
      s.audio_enabled ? h('span', { class: 'badge' }, 'audio') : null,
      h('span', {}, 'created ', when(s.created_at)),
      h('span', {}, s.expires_at ? ['expires ', when(s.expires_at)] : 'kept forever')));
}

function newSessionForm() {
  const form = h('form', { class: 'new-session', id: 'new-session' },
    field('Speaker language', h('input', { name: 'source_lang', required: true, value: 'en', size: 6, pattern: '[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*', autocomplete: 'off' })),
    field('Translated to', h('input', { name: 'target_lang', required: true, value: 'es', size: 6, pattern: '[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*', autocomplete: 'off' })),
    field('Title', h('input', { name: 'title', maxlength: 500, placeholder: 'optional' })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'audio_enabled', checked: true }), ' Store audio'),
    h('button', { type: 'submit' }, 'New session'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(form.querySelector('button'), async () => {
      try {
        const s = await api.createSession({
          source_lang: form.source_lang.value.trim(), target_lang: form.target_lang.value.trim(),
          title: form.title.value.trim() || null, audio_enabled: form.audio_enabled.checked,
        });
        location.hash = `#/sessions/${s.id}`;
      } catch (err) { notice(err.message); }
    });
  });
  return form;
}

function field(label, input) {
  const id = input.id || (input.id = 'f-' + Math.random().toString(36).slice(2, 9));
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

// ---------------------------------------------------------------- one session

async function sessionView(sid, params, gen) {
  const s = await api.getSession(sid);
  if (stale(gen)) return;
  const heading = title(s.title || 'Untitled session');
  const count = h('span', { class: 'count' }, plural(s.message_count, 'message', 'messages'));
  const messages = h('ol', { class: 'messages', id: 'messages' });
  const more = h('button', { type: 'button', class: 'secondary', id: 'messages-more', hidden: true }, 'More messages');
  const empty = h('p', { class: 'muted' }, 'No messages yet. Talk to this session with the panel above.');
  const state = { s, cursor: null, done: false, seen: new Set(), count: s.message_count };

  const setCount = (n) => { state.count = n; count.textContent = plural(n, 'message', 'messages'); };

  // rename
  const rename = h('form', { class: 'inline', id: 'rename-form' },
    field('Title', h('input', { name: 'title', value: s.title || '', maxlength: 500 })),
    h('button', { type: 'submit', class: 'secondary' }, 'Rename'));
  rename.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(rename.querySelector('button'), async () => {
      try {
        const t = rename.title.value.trim();
        const u = await api.updateSession(sid, { title: t || null });
        heading.textContent = u.title || 'Untitled session';
        document.title = `${heading.textContent} · Chat history`;
        notice('Renamed.', 'ok');
      } catch (err) { notice(err.message); }
    });
  });

  // audio toggle
  const audioBox = h('input', { type: 'checkbox', id: 'audio-enabled', checked: s.audio_enabled });
  audioBox.addEventListener('change', async () => {
    audioBox.disabled = true;
    try {
      const u = await api.updateSession(sid, { audio_enabled: audioBox.checked });
      state.s.audio_enabled = u.audio_enabled;
      audioBox.checked = u.audio_enabled;
    } catch (err) { audioBox.checked = !audioBox.checked; notice(err.message); }
    audioBox.disabled = false;
  });

  // delete
  const del = h('button', { type: 'button', class: 'danger', id: 'delete-session' }, 'Delete session');
  del.addEventListener('click', async () => {
    const ok = await confirmDialog(`Delete “${heading.textContent}” with its ${plural(state.count, 'message', 'messages')} and their audio? This cannot be undone.`, 'Delete');
    if (!ok) { del.focus(); return; }
    await busy(del, async () => {
      try {
        await api.deleteSession(sid);
        location.hash = '#/sessions';
        setTimeout(() => notice('Session deleted.', 'ok'), 0);
      } catch (err) { notice(err.message); }
    });
  });

  replace(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/sessions' }, '← Sessions')),
    h('div', { class: 'head' }, heading,
      h('div', { class: 'meta' }, langs(s), count,
        h('span', {}, 'created ', when(s.created_at)),
        h('span', {}, s.expires_at ? ['expires ', when(s.expires_at)] : 'kept forever'))),
    h('div', { class: 'toolbar' }, rename,
      h('label', { class: 'check', for: 'audio-enabled' }, audioBox, ' Store audio of new messages'),
      h('a', { class: 'button secondary', href: `#/search?session=${sid}` }, 'Search here'),
      del),
    talkPanel(state, (m) => addMessage(m)),
    h('h2', {}, 'Messages'), empty, messages, more);

  function addMessage(m) {
    if (state.seen.has(m.id)) return;
    state.seen.add(m.id);
    empty.hidden = true;
    messages.append(messageItem(m));
  }

  const load = async () => {
    const page = await api.listMessages(sid, state.cursor);
    if (stale(gen)) return;
    for (const m of page.data) addMessage(m);
    state.cursor = page.next_cursor;
    state.done = !state.cursor;
    more.hidden = state.done;
  };
  more.addEventListener('click', () => busy(more, () => load().catch((e) => notice(e.message))));
  await load();
  if (stale(gen)) return;
  empty.hidden = state.seen.size > 0;

  // ?m=: a search result's message, scrolled to and highlighted (pages are loaded up to it)
  const target = params.get('m');
  if (target) {
    for (let i = 0; i < 40 && !state.seen.has(target) && !state.done && !stale(gen); i++) await load();
    if (stale(gen)) return;
    const li = document.getElementById('m-' + target);
    if (li) {
      li.classList.add('target');
      li.scrollIntoView({ block: 'center' });
      li.focus({ preventScroll: true });
    } else {
      notice('That message is not in this session any more.');
    }
  } else {
    heading.focus();
  }
  state.setCount = setCount;
}

function messageItem(m) {
  const li = h('li', { class: 'card message', id: 'm-' + m.id, tabindex: '-1', dataset: { messageId: m.id } },
    h('div', { class: 'meta' },
      clock(m.created_at),
      h('span', { class: 'timings', title: 'speech to text · translation · text to speech' },
        'stt ', ms(m.stt_ms), ' · translate ', ms(m.translate_ms), ' · tts ', ms(m.tts_ms)),
      m.model_used ? h('span', { class: 'model' }, m.model_used) : null,
      m.embedding_status !== 'ready' ? h('span', { class: 'badge', title: 'search embedding' }, m.embedding_status) : null),
    h('div', { class: 'pair' },
      h('div', { class: 'text source', lang: m.source_lang },
        h('span', { class: 'tag' }, m.source_lang), h('p', {}, m.source_text || '—')),
      h('div', { class: 'text target', lang: m.target_lang },
        h('span', { class: 'tag' }, m.target_lang), h('p', {}, m.translated_text || '—'))));
  if (m.has_audio && m.audio_url) li.append(player(m));
  return li;
}

function player(m) {
  const audio = h('audio', { controls: true, preload: 'metadata', 'aria-label': 'Recorded audio of this message' });
  const wrap = h('div', { class: 'player' }, audio);
  audio.addEventListener('error', () => {
    if (!wrap.querySelector('.error')) wrap.append(h('p', { class: 'error' }, 'The audio could not be played.'));
  });
  const load = () => audioSource(m.audio_url).then((src) => {
    audio.src = src.src;
    cleanups.push(() => src.revoke());
  }, (err) => wrap.append(errorBox(err)));
  if (!audioNeedsFetch()) {
    load();
  } else {
    // on /v1 each file is a request against the organization's rate limit: only those
    // that come into view are fetched
    const seen = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) { seen.disconnect(); load(); }
    }, { rootMargin: '200px' });
    seen.observe(wrap);
    cleanups.push(() => seen.disconnect());
  }
  return wrap;
}

// ---------------------------------------------------------------- talk panel

function talkPanel(state, onMessage) {
  const sid = state.s.id;
  const recBtn = h('button', { type: 'button', id: 'talk-record' }, 'Record');
  const file = h('input', { type: 'file', id: 'talk-file', accept: 'audio/wav,audio/x-wav,audio/ogg,.wav,.ogg,.opus' });
  const send = h('button', { type: 'button', id: 'talk-send', disabled: true }, 'Send');
  const level = h('meter', { min: 0, max: 1, value: 0, 'aria-label': 'Input level', hidden: true });
  const status = h('p', { class: 'muted', role: 'status', id: 'talk-status' }, 'Record from the microphone or pick a WAV file.');
  const preview = h('audio', { controls: true, hidden: true, 'aria-label': 'What will be sent' });
  const answer = h('div', { class: 'answer', id: 'talk-answer', hidden: true });
  let clip = null, recorder = null, previewUrl = null;

  const setClip = (blob, name, seconds) => {
    clip = { blob, name };
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    preview.src = previewUrl;
    preview.hidden = false;
    send.disabled = false;
    status.textContent = `Ready: ${name}${seconds ? `, ${seconds.toFixed(1)} s` : ''}, ${Math.round(blob.size / 1024)} KB.`;
  };
  cleanups.push(() => { if (previewUrl) URL.revokeObjectURL(previewUrl); if (recorder) recorder.stop().catch(() => {}); });

  recBtn.addEventListener('click', async () => {
    if (!recorder) {
      recorder = new Recorder();
      try {
        level.dataset.max = '0';
        await recorder.start((peak) => {
          level.value = peak;
          if (peak > Number(level.dataset.max)) level.dataset.max = peak.toFixed(3);
        });
      } catch (err) {
        recorder = null;
        notice(`The microphone could not be opened: ${err.message}`);
        return;
      }
      recBtn.textContent = 'Stop';
      recBtn.setAttribute('aria-pressed', 'true');
      recBtn.classList.add('recording');
      level.hidden = false;
      status.textContent = 'Recording… press Stop when done.';
    } else {
      const r = recorder;
      recorder = null;
      recBtn.textContent = 'Record';
      recBtn.setAttribute('aria-pressed', 'false');
      recBtn.classList.remove('recording');
      level.hidden = true;
      const { blob, seconds } = await r.stop();
      setClip(blob, 'recording.wav', seconds);
      send.focus();
    }
  });
  recBtn.setAttribute('aria-pressed', 'false');

  file.addEventListener('change', () => {
    const f = file.files[0];
    if (f) setClip(f.type ? f : new Blob([f], { type: /\.wav$/i.test(f.name) ? 'audio/wav' : 'audio/ogg' }), f.name);
  });

  send.addEventListener('click', () => busy(send, async () => {
    if (!clip) return;
    status.textContent = 'Sending to the pipeline…';
    try {
      const { json, messageId } = await sendToPipeline(sid, clip.blob, clip.name);
      showAnswer(answer, json);
      status.textContent = messageId ? 'Answered; the message is being recorded…' : 'Answered (the pipeline location did not record it: no X-Chathistory-Message-Id).';
      if (messageId) {
        const m = await waitForMessage(sid, messageId, state.s.audio_enabled);
        if (m) {
          onMessage(m);
          state.setCount?.(state.count + 1);
          status.textContent = 'Recorded.';
          const li = document.getElementById('m-' + m.id);
          li.classList.add('target');
          li.scrollIntoView({ block: 'nearest' });
        } else {
          status.textContent = 'Answered, but the message has not appeared yet; reload later.';
        }
      }
    } catch (err) {
      status.textContent = '';
      notice(err.message);
    }
  }));

  return h('section', { class: 'talk card', 'aria-labelledby': 'talk-title' },
    h('h2', { id: 'talk-title' }, 'Talk'),
    h('div', { class: 'row' }, recBtn, level,
      h('label', { class: 'file', for: 'talk-file' }, 'or pick a file ', file), send),
    preview, status, answer);
}

// The message is written just after the answer (a batch, then its audio): look for it in
// the session's newest messages for a few seconds.
async function waitForMessage(sid, mid, wantAudio) {
  for (let i = 0; i < 30; i++) {
    try {
      const res = await fetchNewest(sid);
      const m = res.find((x) => x.id === mid);
      if (m && (m.has_audio || !wantAudio || i >= 20)) return m;
    } catch { /* keep trying */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  return null;
}

async function fetchNewest(sid) {
  const page = await request('GET', `/sessions/${encodeURIComponent(sid)}/messages?order=desc&limit=10`);
  return page.data;
}

function showAnswer(box, json) {
  const transcript = json.transcript ?? json.source_text ?? '';
  const translation = json.translation ?? json.translated_text ?? '';
  replace(box,
    h('div', { class: 'pair' },
      h('div', { class: 'text source' }, h('span', { class: 'tag' }, 'heard'), h('p', { id: 'answer-transcript' }, transcript || '—')),
      h('div', { class: 'text target' }, h('span', { class: 'tag' }, 'translated'), h('p', { id: 'answer-translation' }, translation || '—'))));
  const b64 = json.audio_base64 ?? json.audio;
  if (typeof b64 === 'string' && b64.length > 16) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const type = json.audio_type || json.audio_mime || sniff(bytes);
    const url = URL.createObjectURL(new Blob([bytes], { type }));
    cleanups.push(() => URL.revokeObjectURL(url));
    const a = h('audio', { controls: true, src: url, id: 'answer-audio', 'aria-label': 'The spoken translation' });
    box.append(h('div', { class: 'player' }, a));
    a.play().catch(() => { /* autoplay refused: the controls are there */ });
  }
  box.hidden = false;
}

function sniff(b) {
  const s = String.fromCharCode(...b.slice(0, 4));
  if (s === 'RIFF') return 'audio/wav';
  if (s === 'OggS') return 'audio/ogg';
  if (s === 'fLaC') return 'audio/flac';
  return 'audio/mpeg';
}

// ---------------------------------------------------------------- search

async function searchView(params, gen) {
  const form = h('form', { class: 'search', id: 'search-form', role: 'search' },
    h('div', { class: 'row grow' },
      h('label', { for: 'q', class: 'sr-only' }, 'Search for'),
      h('input', { type: 'search', id: 'q', name: 'q', required: true, maxlength: 2000, placeholder: 'What was said…', value: params.get('q') || '' }),
      h('label', { for: 'mode', class: 'sr-only' }, 'Mode'),
      h('select', { id: 'mode', name: 'mode' },
        ['semantic', 'keyword', 'hybrid'].map((m) => h('option', { value: m, selected: (params.get('mode') || 'semantic') === m }, m))),
      h('button', { type: 'submit' }, 'Search')),
    h('details', { class: 'filters', open: ['source_lang', 'target_lang', 'from', 'to', 'session'].some((k) => params.get(k)) },
      h('summary', {}, 'Filters'),
      h('div', { class: 'row wrap' },
        field('Source language', h('input', { name: 'source_lang', size: 6, value: params.get('source_lang') || '' })),
        field('Target language', h('input', { name: 'target_lang', size: 6, value: params.get('target_lang') || '' })),
        field('From', h('input', { type: 'date', name: 'from', value: params.get('from') || '' })),
        field('To', h('input', { type: 'date', name: 'to', value: params.get('to') || '' })),
        field('Session', h('select', { name: 'session', id: 'search-session' }, h('option', { value: '' }, 'all sessions'))))));
  const results = h('ol', { class: 'results', id: 'results' });
  const status = h('p', { class: 'muted', role: 'status', id: 'search-status' });
  replace(main, title('Search'), form, status, results);

  // the session filter lists the newest sessions (and the one asked for)
  const sel = form.session;
  const want = params.get('session') || '';
  const asked = want ? sel.appendChild(h('option', { value: want, selected: true }, 'this session')) : null;
  api.listSessions(null, 100).then((page) => {
    for (const s of page.data) {
      if (s.id === want) asked.remove();
      sel.append(h('option', { value: s.id, selected: s.id === want }, `${s.title || 'Untitled'} (${s.source_lang} → ${s.target_lang}, ${s.created_at.slice(0, 10)})`));
    }
  }, () => { /* the asked-for session stays, by its id */ });

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const k of ['q', 'mode', 'source_lang', 'target_lang', 'from', 'to', 'session']) {
      const v = (form[k].value || '').trim();
      if (v) p.set(k, v);
    }
    const next = '#/search?' + p.toString();
    if (location.hash === next) route(); else location.hash = next;
  });

  const q = params.get('q');
  if (!q) { form.q.focus(); return; }
  const body = { query: q, mode: params.get('mode') || 'semantic', limit: 50 };
  if (params.get('source_lang')) body.source_lang = params.get('source_lang');
  if (params.get('target_lang')) body.target_lang = params.get('target_lang');
  if (params.get('from')) body.from = params.get('from');
  // a date alone means its midnight: "to" a day includes that whole day
  if (params.get('to')) body.to = /^\d{4}-\d\d-\d\d$/.test(params.get('to')) ? params.get('to') + 'T23:59:59.999Z' : params.get('to');
  if (want) body.session_id = want;
  status.textContent = 'Searching…';
  const t0 = performance.now();
  const res = await api.search(body);
  if (stale(gen)) return;
  status.textContent = `${plural(res.data.length, 'result', 'results')} (${body.mode}, ${Math.round(performance.now() - t0)} ms)`;
  for (const hit of res.data) results.append(resultItem(hit, q));
  if (!res.data.length && body.mode === 'semantic') {
    status.textContent += '. Messages are found once their embedding is ready; keyword mode finds words as they are.';
  }
}

function resultItem({ message: m, session: s, score }, q) {
  const href = `#/sessions/${s.id}?m=${m.id}`;
  return h('li', { class: 'card result', dataset: { messageId: m.id } },
    h('div', { class: 'meta' },
      h('span', { class: 'score', title: 'score, 0 to 1' }, score.toFixed(3)),
      h('a', { href: `#/sessions/${s.id}` }, s.title || 'Untitled session'),
      langs(m), when(m.created_at)),
    h('div', { class: 'pair' },
      h('div', { class: 'text source', lang: m.source_lang }, h('p', {}, highlight(m.source_text, q))),
      h('div', { class: 'text target', lang: m.target_lang }, h('p', {}, highlight(m.translated_text, q)))),
    h('a', { class: 'open', href }, 'Open in its session →'));
}

// ---------------------------------------------------------------- settings

async function settingsView(gen) {
  const r = await api.getRetention();
  if (stale(gen)) return;
  const days = h('input', { type: 'number', id: 'retention-days', name: 'days', min: 1, max: 3650, step: 1, value: r.retention_days ?? '', disabled: r.retention_days === null });
  const forever = h('input', { type: 'checkbox', id: 'retention-forever', checked: r.retention_days === null });
  const existing = h('input', { type: 'checkbox', id: 'retention-existing' });
  const current = h('p', { id: 'retention-current' });
  const show = (v) => replace(current, 'Sessions are kept ', h('strong', {}, v === null ? 'forever' : plural(v, 'day', 'days')), '.');
  show(r.retention_days);
  forever.addEventListener('change', () => { days.disabled = forever.checked; if (!forever.checked) days.focus(); });
  const form = h('form', { class: 'card settings', id: 'retention-form' },
    h('h2', {}, 'Retention'),
    current,
    h('p', { class: 'muted' }, `Organization ${r.org_id}. A new session expires this long after it is created; the worker deletes expired sessions and their audio.`),
    h('div', { class: 'row wrap' },
      h('div', { class: 'field' }, h('label', { for: 'retention-days' }, 'Days (1–3650)'), days),
      h('label', { class: 'check', for: 'retention-forever' }, forever, ' Keep forever'),
      h('label', { class: 'check', for: 'retention-existing' }, existing, ' Apply to existing sessions too')),
    h('button', { type: 'submit' }, 'Save'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(form.querySelector('button[type=submit]'), async () => {
      try {
        const v = forever.checked ? null : Number(days.value);
        if (v !== null && !(Number.isInteger(v) && v >= 1 && v <= 3650)) throw new Error('Days must be a whole number from 1 to 3650.');
        const u = await api.setRetention({ retention_days: v, apply_to_existing: existing.checked });
        show(u.retention_days);
        notice(`Saved${u.sessions_updated ? `; ${plural(u.sessions_updated, 'session', 'sessions')} updated` : ''}.`, 'ok');
      } catch (err) { notice(err.message); }
    });
  });
  replace(main, title('Settings'), form,
    h('section', { class: 'card' }, h('h2', {}, 'Connection'),
      h('p', {}, 'This page talks to ', h('code', {}, conn.prefix), conn.prefix === '/v1' ? ' with an API key' : ' (no key)',
        ' and sends recordings to ', h('code', {}, conn.pipeline), '.'),
      h('button', { type: 'button', class: 'secondary', onclick: () => connButton.click() }, 'Change connection')));
}

route();
