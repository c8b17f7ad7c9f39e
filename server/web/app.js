// server/web/app.js: the portal page: log in, the user's desktops and pools, connect (opens the
// viewer), disconnect, log out; and for administrators the admin tables (the calls vdictl makes).
import { call, me, el } from './api.js';

const $ = (id) => document.getElementById(id);
let user = null;

function show(view) {
  for (const v of ['login-view', 'desktops-view', 'admin-view']) $(v).hidden = true;
  for (const v of view) $(v).hidden = false;
  $('logout').hidden = !user;
  $('who').textContent = user ? user.user + (user.admin ? ' (admin)' : '') : '';
}

async function start() {
  const r = await me();
  if (r.status === 200) {
    user = r.data;
    show(user.admin ? ['desktops-view', 'admin-view'] : ['desktops-view']);
    await loadDesktops();
    if (user.admin) await adminTab('status');
  } else {
    user = null;
    show(['login-view']);
  }
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-error').textContent = '';
  $('login-button').disabled = true;
  const r = await call('POST', '/api/login', { username: $('username').value, password: $('password').value });
  $('login-button').disabled = false;
  $('password').value = '';
  if (r.status !== 200) {
    $('login-error').textContent = r.status === 401 ? 'Wrong username or password.' : (r.data.error || 'Login failed.');
    return;
  }
  await start();
});

$('logout').addEventListener('click', async () => {
  await call('POST', '/api/logout');
  user = null;
  await start();
});

async function loadDesktops() {
  const r = await call('GET', '/api/desktops');
  if (r.status === 401) return start();
  if (r.status !== 200) { $('desktops-message').textContent = r.data.error; return; }
  const list = $('desktops');
  list.replaceChildren();
  for (const d of r.data.desktops) {
    const live = d.state !== 'gone' && d.state !== 'recycling';
    list.append(el('li', { 'data-desktop': d.id },
      el('strong', {}, `Desktop ${d.id}`), ' ', el('span', { class: 'state' }, d.state), el('br'),
      `pool ${d.pool}`, el('br'),
      live ? el('button', { onclick: () => { location.href = '/viewer.html'; } }, 'Connect') : '',
      ' ',
      d.state === 'in-use' ? el('button', { onclick: () => disconnect(d.id) }, 'Disconnect') : ''));
  }
  if (!r.data.desktops.length) list.append(el('li', {}, 'No desktop yet: connecting makes one.'));
  const pools = $('pools');
  pools.replaceChildren();
  for (const p of r.data.pools)
    pools.append(el('li', {}, el('strong', {}, p.name), ` (${p.type}) `, el('br'),
      `image ${p.image}, ${p.width}×${p.height}, ${Math.round(p.memory / 1048576)} MiB`));
  // (set both ways: the page may have shown another user, entitled to nothing, before)
  $('connect').disabled = !r.data.pools.length;
  if (!r.data.pools.length) pools.append(el('li', {}, 'You are not entitled to any desktop pool.'));
}

async function disconnect(id) {
  const r = await call('POST', '/api/disconnect', { desktop: id });
  $('desktops-message').textContent = r.status === 200 ? '' : r.data.error;
  setTimeout(loadDesktops, 300);
}

$('connect').addEventListener('click', () => { location.href = '/viewer.html'; });

// ---- admin
const columns = {
  pools: ['name', 'image', 'type', 'vcpus', 'memory', 'min_spares', 'max_desktops', 'live', 'network'],
  desktops: ['id', 'pool', 'owner', 'state', 'image', 'image_version', 'vmm_pid', 'mac', 'ip', 'reason'],
  sessions: ['id', 'user', 'desktop', 'client', 'started'],
  images: ['name', 'current', 'versions'],
  patches: ['id', 'image', 'state', 'base_version', 'version', 'network', 'exit', 'reason', 'started'],
  rollouts: ['pool', 'image', 'from', 'to', 'state', 'wave', 'healthy', 'failed', 'desktops', 'reason'],
  audit: ['ts', 'actor', 'event', 'desktop', 'user', 'detail'],
};
const commands = { status: 'status', pools: 'pools.list', desktops: 'desktops.list', sessions: 'sessions.list', images: 'images.list', patches: 'image.patches', rollouts: 'image.rollouts', audit: 'audit.tail' };

function table(rows, cols, actions) {
  const t = el('table', {}, el('tr', {}, ...cols.map((c) => el('th', {}, c)), actions ? el('th', {}, '') : ''));
  for (const row of rows) {
    const tr = el('tr', {}, ...cols.map((c) => {
      let v = row[c];
      if (c === 'ts' || c === 'started') v = v ? new Date(v * 1000).toLocaleString() : '';
      if (c === 'memory') v = Math.round(v / 1048576) + ' MiB';
      if (Array.isArray(v)) v = v.join(', ');
      else if (v && typeof v === 'object') v = Object.entries(v).map(([k, n]) => `v${k}: ${n}`).join(', ');
      // Audit text that was not UTF-8 comes escaped (\xNN, \\): say so on the cell.
      const attrs = Array.isArray(row.escaped) && row.escaped.includes(c)
        ? { class: 'escaped', title: 'not UTF-8 as written: other bytes shown as \\xNN' } : {};
      return el('td', attrs, v === undefined || v === null ? '' : v);
    }));
    if (actions) tr.append(el('td', {}, ...actions(row)));
    t.append(tr);
  }
  return t;
}

async function admin(cmd, args) {
  const r = await call('POST', '/api/admin/' + cmd, args || {});
  $('admin-message').textContent = r.status === 200 ? '' : (r.data.error || `HTTP ${r.status}`);
  return r.status === 200 ? r.data.result : null;
}

async function adminTab(tab) {
  const box = $('admin-table');
  const args = tab === 'audit' ? { n: 50 } : {};
  const res = await admin(commands[tab], args);
  box.replaceChildren();
  if (!res) return;
  if (tab === 'status') {
    box.append(table(Object.entries(res).map(([k, v]) => ({ key: k, value: typeof v === 'object' ? JSON.stringify(v) : v })), ['key', 'value']));
    return;
  }
  const rows = Array.isArray(res) ? res : (res[tab] || res.items || []);
  let actions = null;
  if (tab === 'desktops') actions = (d) => [
    el('button', { onclick: async () => { await admin('desktops.recycle', { id: d.id }); adminTab(tab); } }, 'Recycle'), ' ',
    el('button', { onclick: async () => { await admin('desktops.destroy', { id: d.id }); adminTab(tab); } }, 'Destroy')];
  if (tab === 'sessions') actions = (s) => [
    el('button', { onclick: async () => { await admin('sessions.disconnect', { id: s.id }); adminTab(tab); } }, 'Disconnect')];
  box.append(table(rows, columns[tab], actions));
  $('patch-form').hidden = tab !== 'images';
  if (tab === 'images') {
    const sel = $('patch-image');
    const was = sel.value;
    sel.replaceChildren(...rows.map((i) => el('option', { value: i.name }, i.name)));
    if (was) sel.value = was;
    // The networks a maintenance VM may join: those of the pools that have one.
    const pools = await admin('pools.list');
    const net = $('patch-network');
    const netWas = net.value;
    net.replaceChildren(net.options[0],
      ...(pools || []).filter((p) => p.network && p.network !== 'none')
        .map((p) => el('option', { value: p.name }, `pool ${p.name}: ${p.network}`)));
    if (netWas) net.value = netWas;
  }
}

// ---- patching an image from the web: the script's text goes to vdid (no host paths here);
// its output is followed until the patch is published or failed.
$('patch-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const out = $('patch-output');
  const args = { image: $('patch-image').value, script_text: $('patch-script').value };
  if ($('patch-notes').value) args.notes = $('patch-notes').value;
  if ($('patch-network').value) args.network = $('patch-network').value;
  $('patch-button').disabled = true;
  out.textContent = '';
  const started = await admin('image.patch', args);
  if (!started) { $('patch-button').disabled = false; return; }
  out.textContent = `patch ${started.id} of image ${args.image} started\n`;
  let from = 0;
  for (;;) {
    const st = await admin('image.patch-status', { id: started.id, from });
    if (!st) break;
    out.textContent += st.output || '';
    from = st.next;
    if (st.state === 'published') { out.textContent += `published: version ${st.version} is current; the image's pools roll out to it\n`; break; }
    if (st.state === 'failed') { out.textContent += `failed: ${st.reason}\n`; break; }
    await new Promise((r) => setTimeout(r, 500));
  }
  $('patch-button').disabled = false;
});

for (const b of document.querySelectorAll('[data-tab]')) b.addEventListener('click', () => adminTab(b.dataset.tab));

start();
