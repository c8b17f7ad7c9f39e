// server/web/api.js: the portal's calls to vdid's JSON API (docs/api.md). The session cookie is
// HttpOnly and travels by itself; state-changing calls carry the CSRF token from login or /api/me.
let csrf = '';

export async function call(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin', cache: 'no-store' };
  if (method === 'POST') {
    opts.headers['Content-Type'] = 'application/json';
    opts.headers['X-CSRF-Token'] = csrf;
    opts.body = JSON.stringify(body || {});
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    return { status: 0, data: { error: 'the server cannot be reached' } };
  }
  let data = {};
  try { data = await res.json(); } catch (e) { data = { error: `HTTP ${res.status}` }; }
  if (data && data.csrf) csrf = data.csrf;
  return { status: res.status, data };
}

export async function me() {
  return call('GET', '/api/me');
}

export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
