// tests/browser/portal.mjs: the web portal in headless Chromium (Debian's chromium, driven by
// playwright-core; it never downloads a browser). Run by tests/integration/test_web_browser.sh,
// which starts vdid and passes, in the environment:
//   VDI_WEB_URL       https://localhost:PORT
//   VDI_WEB_SPKI      base64 SHA-256 of vdid's certificate's public key (Chromium trusts that
//                     certificate alone: --ignore-certificate-errors-spki-list)
//   VDI_WEB_USER, VDI_WEB_PASSWORD, VDI_WEB_ADMIN, VDI_WEB_ADMIN_PASSWORD (in the admin group),
//   VDI_WEB_FB (WxH), VDI_WEB_MODE (testdesk | fake),
//   VDI_WEB_TOKEN_TTL (seconds), VDI_WEB_OUT (a directory for the profile and screenshots),
//   VDI_NPM_DIR (deploy/deps/npm)
// Prints "ok N - what" per check; exits 1 at the first failure.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodePng } from './png.mjs';

const env = process.env;
const { chromium } = await import(join(env.VDI_NPM_DIR, 'node_modules/playwright-core/index.mjs'));
const url = env.VDI_WEB_URL;
const [W, H] = env.VDI_WEB_FB.split('x').map(Number);
const mode = env.VDI_WEB_MODE;
let n = 0;
function ok(what) { console.log(`ok ${++n} - ${what}`); }
function fail(what) { console.log(`FAIL: ${what}`); process.exitCode = 1; throw new Error(what); }
function check(cond, what) { if (cond) ok(what); else fail(what); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const profile = mkdtempSync(join(env.VDI_WEB_OUT, 'chromium-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1024, height: 800 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    `--ignore-certificate-errors-spki-list=${env.VDI_WEB_SPKI}`],
});
const page = ctx.pages()[0] || await ctx.newPage();
const consoleLines = [];
page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));

try {
  // ---- login form
  await page.goto(url + '/');
  await page.locator('#login-form').waitFor({ state: 'visible', timeout: 10000 });
  ok('the portal shows the login form');
  await page.fill('#username', env.VDI_WEB_USER);
  await page.fill('#password', 'not-the-password');
  await page.click('#login-button');
  await page.locator('#login-error').filter({ hasText: 'Wrong username or password' }).waitFor({ timeout: 15000 });
  ok('a wrong password shows the error');
  await sleep(100);
  await page.fill('#username', env.VDI_WEB_USER);
  await page.fill('#password', env.VDI_WEB_PASSWORD);
  await page.click('#login-button');
  await page.locator('#desktops-view').waitFor({ state: 'visible', timeout: 15000 });
  ok('the right password logs in and shows the desktops');
  await page.screenshot({ path: join(env.VDI_WEB_OUT, 'portal.png') });
  const cookies = await ctx.cookies(url);
  const sc = cookies.find((c) => c.name === 'vdi_session');
  check(sc && sc.httpOnly && sc.secure && sc.sameSite === 'Strict', 'the session cookie is HttpOnly, Secure, SameSite=Strict');
  check(await page.evaluate(() => document.cookie.indexOf('vdi_session') < 0), 'page scripts cannot read the session cookie');

  // ---- phone-sized screen
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(200);
  const overflow = await page.evaluate(() => document.scrollingElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the portal fits a phone-sized screen (overflow ${overflow}px)`);
  await page.setViewportSize({ width: 1024, height: 800 });

  // ---- connect: the viewer
  const t0 = Date.now();
  await page.click('#connect');
  await page.waitForURL('**/viewer.html');
  await page.locator('#status').filter({ hasText: /^Desktop \d+$/ }).waitFor({ timeout: 90000 });
  ok(`connect opens the viewer and noVNC reaches the desktop (${Date.now() - t0} ms from the click, desktop started cold)`);
  const canvas = page.locator('#screen canvas');
  await canvas.waitFor({ state: 'visible' });

  async function shot(name) {
    const png = await canvas.screenshot();
    writeFileSync(join(env.VDI_WEB_OUT, name + '.png'), png);
    return decodePng(png);
  }
  // Framebuffer coordinates -> screenshot pixel (the canvas is scaled to fit the window).
  function at(img, x, y) { return img.pixel(Math.floor((x + 0.5) * img.width / W), Math.floor((y + 0.5) * img.height / H)); }
  const near = (p, hex, tol) => [0, 1, 2].every((i) => Math.abs(p[i] - parseInt(hex.substr(i * 2, 2), 16)) <= tol);

  if (mode === 'testdesk') {
    // testdesk's colour bars: rows 32 .. 32 + (H - 32) / 2, bar i over [i*W/8, (i+1)*W/8).
    const cols = ['ffffff', 'ffff00', '00ffff', '00ff00', 'ff00ff', 'ff0000', '0000ff', '000000'];
    let img = null, bad = '';
    for (let tries = 0; tries < 40; tries++) {
      img = await shot('bars');
      bad = '';
      for (let i = 0; i < 8; i++) {
        const p = at(img, i * W / 8 + W / 16, 32 + (H - 32) / 4);
        if (!near(p, cols[i], 48)) bad += ` bar${i}=${p}`;
      }
      if (!bad) break;
      await sleep(250);
    }
    check(!bad, `the testdesk colour bars are in the canvas${bad}`);
    ok(`the canvas is scaled to the window (${img.width}x${img.height} for ${W}x${H})`);
    // Keys: the key line is at y = bars_end + 16, "KEYS: " first, 12x18 cells from x = 8.
    const ky = 32 + (H - 32) / 2 + 16;
    const lit = (img, k) => {
      let c = 0;
      for (let y = ky; y < ky + 18; y++) for (let x = 8 + (6 + k) * 12; x < 8 + (7 + k) * 12; x++) {
        const p = at(img, x, y);
        if (p[0] > 150 && p[1] > 150 && p[2] > 150) c++;
      }
      return c;
    };
    const before = [0, 1, 2, 3, 4].map((k) => lit(img, k));
    await canvas.click({ position: { x: 5, y: 5 } });
    await page.keyboard.type('hello', { delay: 60 });
    let after = [];
    for (let tries = 0; tries < 40; tries++) {
      const im = await shot('keys');
      after = [0, 1, 2, 3, 4].map((k) => lit(im, k));
      if (after.every((c) => c > 4)) break;
      await sleep(250);
    }
    check(before.every((c) => c === 0) && after.every((c) => c > 4),
      `typed keys appear on the desktop (lit pixels per cell before ${before}, after ${after})`);
  } else {
    // The stand-in VMM: a grey screen; each key press colours the next pixel of row 0.
    let img = await shot('grey');
    check(near(at(img, 100, 100), '404040', 8), `the desktop's screen is in the canvas (${at(img, 100, 100)})`);
    await canvas.click({ position: { x: 50, y: 50 } });
    await page.keyboard.type('hi', { delay: 60 });
    let p = null;
    for (let tries = 0; tries < 40; tries++) {
      img = await shot('keys');
      p = at(img, 0, 0);
      if (!near(p, '404040', 8)) break;
      await sleep(250);
    }
    check(!near(p, '404040', 8), `typed keys reach the desktop and come back on screen (${p})`);
  }
  check(await page.locator('#cad').isEnabled(), 'the viewer offers Ctrl-Alt-Del');
  await page.click('#cad');
  await page.click('#fullscreen');
  await page.waitForFunction(() => document.fullscreenElement !== null, null, { timeout: 5000 });
  await page.click('#fullscreen');
  await page.waitForFunction(() => document.fullscreenElement === null, null, { timeout: 5000 });
  ok('the viewer goes full screen and back');

  // ---- one-time tokens: reuse and expiry, straight from the page (same origin, its cookie)
  const probe = async (wait) => page.evaluate(async ([wait]) => {
    const me = await (await fetch('/api/me')).json();
    const r = await (await fetch('/api/connect', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf }, body: '{}' })).json();
    const open = () => new Promise((resolve) => {
      const ws = new WebSocket(`wss://${location.host}${r.ws}`, ['binary']);
      ws.binaryType = 'arraybuffer';
      ws.onmessage = (e) => { resolve('message ' + new TextDecoder().decode(e.data).trim()); ws.close(); };
      ws.onclose = (e) => resolve(`close ${e.code} ${e.reason}`);
    });
    if (wait) await new Promise((res) => setTimeout(res, wait));
    const first = await open();
    const second = wait ? '' : await open();
    return [first, second];
  }, [wait]);
  // The viewer's session is taken over by the probe's connect: it must say so.
  const [first, second] = await probe(0);
  check(first.startsWith('message RFB 003.008'), `a fresh token opens the desktop (${first})`);
  check(second.startsWith('close 4401'), `a reused token is refused (${second})`);
  await page.locator('#message').filter({ hasText: 'This connection was ended' }).waitFor({ timeout: 10000 });
  ok('the viewer says why when its session is taken over');
  const ttl = Number(env.VDI_WEB_TOKEN_TTL);
  const [expired] = await probe((ttl + 1) * 1000);
  check(expired.startsWith('close 4401'), `an expired token is refused (${expired})`);
  check(await page.locator('#reconnect').isVisible(), 'the viewer offers Reconnect');
  await page.click('#reconnect');
  await page.locator('#status').filter({ hasText: /^Desktop \d+$/ }).waitFor({ timeout: 60000 });
  ok('Reconnect gets the desktop back');

  // ---- the desktop dies under the viewer (the test script kills its VMM when asked)
  writeFileSync(join(env.VDI_WEB_OUT, 'kill-now'), '');
  await page.locator('#message').filter({ hasText: /stopped unexpectedly|desktop is gone/ }).waitFor({ timeout: 30000 });
  ok(`a desktop that dies shows a clear message ("${await page.locator('#message').textContent()}")`);
  await page.click('#reconnect');
  await page.locator('#status').filter({ hasText: /^Desktop \d+$/ }).waitFor({ timeout: 60000 });
  ok(`Reconnect then gets a fresh desktop (${await page.locator('#status').textContent()})`);

  // ---- log out
  await page.goto(url + '/');
  await page.locator('#logout').click();
  await page.locator('#login-form').waitFor({ state: 'visible', timeout: 10000 });
  const after = await page.evaluate(async () => (await fetch('/api/me')).status);
  check(after === 401, `logging out ends the session (/api/me: ${after})`);

  // ---- the admin view: only for the admin group
  check(await page.locator('#admin-view').isHidden(), 'an ordinary user gets no admin view');
  await page.fill('#username', env.VDI_WEB_ADMIN);
  await page.fill('#password', env.VDI_WEB_ADMIN_PASSWORD);
  await page.click('#login-button');
  await page.locator('#admin-view').waitFor({ state: 'visible', timeout: 15000 });
  await page.locator('#admin-table td', { hasText: 'memory' }).first().waitFor({ timeout: 10000 });
  ok('an administrator gets the admin view with the status');
  await page.click('[data-tab=desktops]');
  await page.locator('#admin-table td', { hasText: env.VDI_WEB_USER }).first().waitFor({ timeout: 10000 });
  ok(`the desktops tab lists ${env.VDI_WEB_USER}'s desktop`);
  await page.click('[data-tab=images]');
  await page.locator('#admin-table td', { hasText: 'testdesk' }).first().waitFor({ timeout: 10000 });
  ok('the images tab lists the testdesk image with its versions');
  await page.screenshot({ path: join(env.VDI_WEB_OUT, 'admin.png') });
  await page.click('[data-tab=sessions]');
  await page.click('[data-tab=audit]');
  await page.locator('#admin-table td', { hasText: 'web.login' }).first().waitFor({ timeout: 10000 });
  ok('the audit tab shows the web logins');
  // ---- patch an image from the admin view: the script's text goes to vdid, its output follows
  await page.click('[data-tab=images]');
  await page.locator('#patch-form').waitFor({ state: 'visible', timeout: 10000 });
  await page.selectOption('#patch-image', 'testdesk');
  // The network field offers only the networks of pools that have one: none in this config.
  const nets = await page.locator('#patch-network option').allTextContents();
  check(nets.length === 1 && nets[0].startsWith('none'),
    `the patch form's network field offers no network when no pool has one (${JSON.stringify(nets)})`);
  // A pool without a network, given anyway (an out-of-date page), is refused by vdid, saying why.
  await page.evaluate(() => {
    const o = document.createElement('option');
    o.value = 'lab';
    o.textContent = 'pool lab';
    document.getElementById('patch-network').append(o);
  });
  await page.selectOption('#patch-network', 'lab');
  await page.fill('#patch-script', 'echo never runs\n');
  await page.click('#patch-button');
  await page.locator('#admin-message', { hasText: 'that pool has no network' }).waitFor({ timeout: 10000 });
  ok('a patch on the network of a pool without one is refused with the reason');
  await page.selectOption('#patch-network', '');
  await page.fill('#patch-script', 'echo patched from the browser\nbanner Web v2\n');
  await page.fill('#patch-notes', 'from the web view');
  await page.click('#patch-button');
  await page.locator('#patch-output', { hasText: 'published: version 2 is current' }).waitFor({ timeout: 60000 });
  const pout = await page.locator('#patch-output').textContent();
  check(pout.includes('patched from the browser') && pout.includes('PATCH EXIT 0'),
    'a patch from the admin view streams its output and publishes version 2');
  await page.screenshot({ path: join(env.VDI_WEB_OUT, 'admin-patch.png') });
  await page.click('[data-tab=patches]');
  await page.locator('#admin-table td', { hasText: 'published' }).first().waitFor({ timeout: 10000 });
  ok('the patches tab lists it as published');
  await page.click('[data-tab=rollouts]');
  await page.locator('#admin-table td', { hasText: /^(canary|waves|done)$/ }).first().waitFor({ timeout: 15000 });
  ok('the rollouts tab shows the pool moving to version 2');
  await page.click('[data-tab=audit]');
  await page.locator('#admin-table td', { hasText: 'desktop.logoff-warning' }).first().waitFor({ timeout: 15000 });
  ok(`${env.VDI_WEB_USER}'s busy desktop is to move after its grace (logoff = force): audited`);
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(200);
  const aw = await page.evaluate(() => document.scrollingElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: join(env.VDI_WEB_OUT, 'admin-phone.png'), fullPage: true });
  check(aw <= 0, `the admin view fits a phone-sized screen (wide tables scroll in their box; overflow ${aw}px)`);
  await page.locator('#logout').click();
  await page.locator('#login-form').waitFor({ state: 'visible', timeout: 10000 });

  // ---- the user back on the desktop that is to move: the viewer warns them (on the same page
  // the admin, entitled to no pool, used: Connect must work again)
  await page.setViewportSize({ width: 1024, height: 800 });
  await page.fill('#username', env.VDI_WEB_USER);
  await page.fill('#password', env.VDI_WEB_PASSWORD);
  await page.click('#login-button');
  await page.locator('#desktops-view').waitFor({ state: 'visible', timeout: 15000 });
  await page.click('#connect');
  await page.waitForURL('**/viewer.html');
  const notice = page.locator('#notice');
  await notice.waitFor({ state: 'visible', timeout: 15000 });
  const nt = await notice.textContent();
  check(/restarts for an update in \d+ (s|min)/.test(nt), `the viewer warns of the coming restart ("${nt}")`);
  await page.screenshot({ path: join(env.VDI_WEB_OUT, 'viewer-notice.png') });
  await page.goto(url + '/');
  await page.locator('#logout').click();
  await page.locator('#login-form').waitFor({ state: 'visible', timeout: 10000 });

  const errors = consoleLines.filter((l) => l.startsWith('pageerror'));
  check(errors.length === 0, `no script errors in the pages ${errors.join(' | ')}`);
  console.log(`all ${n} browser checks passed`);
} catch (e) {
  if (!process.exitCode) console.log(`FAIL: ${e.message.split('\n')[0]}`);
  process.exitCode = 1;
  writeFileSync(join(env.VDI_WEB_OUT, 'console.log'), consoleLines.join('\n'));
  try { writeFileSync(join(env.VDI_WEB_OUT, 'failure.png'), await page.screenshot()); } catch (_) { /* gone */ }
} finally {
  await ctx.close();
}
