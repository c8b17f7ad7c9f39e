// server/web/viewer.js: the browser console. Asks vdid for a one-time console token
// (POST /api/connect), opens wss://HOST/ws?desktop=ID&token=TOKEN itself (to read the close code
// vdid sends: docs/api.md) and hands the socket to noVNC, which speaks RFB to the desktop.
import { call, me } from './api.js';

let RFB = null;

const $ = (id) => document.getElementById(id);
const closeMessages = {
  4401: 'The connection link expired or was already used. Press Reconnect.',
  4404: 'Your desktop is gone (it stopped, or was shut down or recycled). Press Reconnect for a new one.',
  4409: 'This connection was ended',
  4500: 'The server could not reach your desktop. Press Reconnect to try again.',
};
let rfb = null;
let desktop = 0;

function status(text) { $('status').textContent = text; }
function message(text) {
  $('message').textContent = text;
  $('message').hidden = !text;
  $('reconnect').hidden = !text;
}

async function connect() {
  message('');
  if (!RFB) {
    try {
      RFB = (await import('/novnc/core/rfb.js')).default;
    } catch (e) {
      status('Not connected');
      message('The browser viewer (noVNC) is not installed on this server: ask the administrator.');
      return;
    }
  }
  status('Starting your desktop…');
  const m = await me();
  if (m.status !== 200) { location.href = '/'; return; }
  const r = await call('POST', '/api/connect');
  if (r.status !== 200) {
    status('Not connected');
    message(r.data.error || `The server refused (HTTP ${r.status}).`);
    return;
  }
  desktop = r.data.desktop;
  status(`Desktop ${desktop}: connecting…`);
  const ws = new WebSocket(`wss://${location.host}${r.data.ws}`, ['binary']);
  let closeInfo = null;
  ws.addEventListener('close', (e) => { closeInfo = e; });
  rfb = new RFB($('screen'), ws, { shared: true });
  rfb.scaleViewport = true; // fit to the window
  rfb.resizeSession = false;
  rfb.focusOnClick = true;
  rfb.addEventListener('connect', () => { status(`Desktop ${desktop}`); rfb.focus(); checkNotice(); });
  rfb.addEventListener('desktopname', (e) => { document.title = e.detail.name || 'vdi desktop'; });
  rfb.addEventListener('clipboard', (e) => { $('clipboard').value = e.detail.text; });
  rfb.addEventListener('disconnect', (e) => {
    rfb = null;
    status('Disconnected');
    const code = closeInfo ? closeInfo.code : 0;
    let text = closeMessages[code];
    if (code === 4409) text = `${text}: ${closeInfo.reason}.`;
    if (!text) text = e.detail.clean ? 'Disconnected.' : 'The connection to your desktop was lost. Press Reconnect.';
    message(text);
  });
}

// A forced move of the desktop to a new version of its image (the administrator's update,
// pool setting logoff = force) is announced by /api/desktops as logoff_in (seconds): say so.
async function checkNotice() {
  if (!desktop) return;
  const r = await call('GET', '/api/desktops');
  if (r.status !== 200) return;
  const d = (r.data.desktops || []).find((x) => x.id === desktop);
  const n = $('notice');
  if (d && d.logoff_in) {
    const m = Math.ceil(d.logoff_in / 60);
    n.textContent = `Your desktop restarts for an update in ${d.logoff_in < 120 ? `${d.logoff_in} s` : `${m} min`}: ` +
      'save your work now.';
    n.hidden = false;
  } else {
    n.hidden = true;
  }
}
setInterval(checkNotice, 5000);

$('cad').addEventListener('click', () => { if (rfb) { rfb.sendCtrlAltDel(); rfb.focus(); } });
$('fullscreen').addEventListener('click', () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen().catch(() => {});
});
$('clipboard-toggle').addEventListener('click', () => { $('clipboard-panel').hidden = !$('clipboard-panel').hidden; });
$('clipboard-send').addEventListener('click', () => { if (rfb) { rfb.clipboardPasteFrom($('clipboard').value); rfb.focus(); } });
$('reconnect').addEventListener('click', () => connect());
$('disconnect').addEventListener('click', async () => {
  if (desktop) await call('POST', '/api/disconnect', { desktop });
  if (rfb) rfb.disconnect();
  location.href = '/';
});

connect();
