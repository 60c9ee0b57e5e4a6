// Small DOM helpers: no framework, no build step.

// h('p', {class: 'x', onclick: f}, 'text', child, [more children]): an element.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, ...children);
  return el;
}

export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, ...children);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

export function when(iso) {
  if (!iso) return '—';
  return h('time', { datetime: iso, title: iso }, dateTime.format(new Date(iso)));
}

export function clock(iso) {
  return h('time', { datetime: iso, title: iso }, timeOnly.format(new Date(iso)));
}

export const ms = (v) => (v === null || v === undefined ? '—' : `${v} ms`);

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// Text with the query's words wrapped in <mark>.
export function highlight(text, query) {
  if (!text) return [];
  const words = (query || '').toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 1);
  if (!words.length) return [text];
  const re = new RegExp(`(${words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`, 'giu');
  return text.split(re).map((part, i) => (i % 2 ? h('mark', {}, part) : part));
}

// A button that shows it is busy while its action runs, and cannot be pressed twice.
export async function busy(button, action) {
  if (button.disabled) return;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err.message || String(err));
}

export function langs(s) {
  return h('span', { class: 'langs', title: `from ${s.source_lang} to ${s.target_lang}` },
    s.source_lang, ' → ', s.target_lang);
}
