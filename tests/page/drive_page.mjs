// drive_page.mjs - drives kadx's status page (GET / on the admin port,
// admin/page.html) in Debian's headless Chromium through playwright-core.
// Run by tests/e2e/test_page.py, which starts a real Kafka broker, the ADX
// emulator and `kadx run` with admin.token and admin.token_on_get, and keeps
// producing events meanwhile. Exits 0 when every check held, 1 with the
// reason otherwise. Every wait is on a condition, under a deadline.
//
// Environment: KADX_PAGE_URL (http://127.0.0.1:PORT/), KADX_PAGE_TOKEN,
// KADX_PAGE_ROUTE (the route's name), KADX_PAGE_PARTITIONS (how many),
// CHROMIUM (default /usr/bin/chromium), KADX_PAGE_SCREENSHOT (optional: a
// PNG file to write once resumed).
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const url = process.env.KADX_PAGE_URL;
const tok = process.env.KADX_PAGE_TOKEN;
const route = process.env.KADX_PAGE_ROUTE;
const nparts = Number(process.env.KADX_PAGE_PARTITIONS);
const origin = new URL(url).origin;

function step(msg) { console.log('page: ' + msg); }

// polls fn (async) until it returns a truthy value; throws after ms
async function waitFor(fn, what, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) { return v; }
    if (Date.now() > end) { throw new Error('timed out waiting for ' + what); }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// /status as the test sees it (not through the page)
async function status() {
  const r = await fetch(origin + '/status',
                        { headers: { Authorization: 'Bearer ' + tok } });
  assert.equal(r.status, 200);
  const s = await r.json();
  return { s, r: s.routes.find((x) => x.name === route) };
}

// asks the test (stdout "page: ask WHAT") and waits for its line on stdin
const lines = [];
let wake = null;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  lines.push(...d.split('\n').filter((l) => l));
  if (wake) { wake(); }
});
async function ask(what) {
  console.log('page: ask ' + what);
  const end = Date.now() + 60000;
  while (!lines.length) {
    if (Date.now() > end) { throw new Error('no answer to ' + what); }
    await new Promise((r) => { wake = r; setTimeout(r, 1000); });
  }
  const l = lines.shift();
  assert.equal(l, 'done ' + what);
}

function n(txt) { return Number(String(txt).replace(/[^0-9-]/g, '')); }

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
let failed = null;
try {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const problems = []; // CSP violations and script errors show up here
  page.on('console', (m) => {
    if (m.type() === 'error') { problems.push('console: ' + m.text()); }
  });
  page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
  const urls = [];
  page.on('request', (r) => urls.push(r.url()));

  // 1. token_on_get: the page asks for the token before it shows anything
  const resp = await page.goto(url);
  assert.equal(resp.status(), 200);
  const h = resp.headers();
  assert.match(h['content-security-policy'], /script-src 'sha256-/);
  assert.equal(h['x-content-type-options'], 'nosniff');
  await page.locator('#auth').waitFor({ state: 'visible', timeout: 15000 });
  assert.equal(await page.locator('#routes tbody tr').count(), 0);
  step('the token prompt is shown');

  // a wrong token is refused and asked again
  await page.fill('#token', 'not-the-token');
  await page.click('#auth-ok');
  await waitFor(async () => /refused/.test(await page.textContent('#auth-msg'))
                && await page.isVisible('#auth'), 'the refusal');
  step('a wrong token is refused');

  await page.fill('#token', tok);
  await page.click('#auth-ok');
  const row = page.locator(`#routes tr[data-route="${route}"]`);
  await row.waitFor({ timeout: 15000 });
  assert.equal(await page.isVisible('#auth'), false);
  assert.equal(await page.evaluate(() =>
    sessionStorage.getItem('kadx.admin.token')), tok);
  step('the right token shows the routes; kept in sessionStorage');

  // 2. live counters: the page's own refresh shows them moving
  const delivered = async () => n(await row.locator('td.delivered').textContent());
  const d1 = await waitFor(async () => (await delivered()) > 0 && delivered(),
                           'delivered events on the page');
  await waitFor(async () => (await delivered()) > d1,
                'the delivered counter to move');
  await waitFor(async () => (await page.locator(
    '#partitions tbody tr').count()) === nparts, nparts + ' partition rows');
  const lagCells = await page.locator('#partitions td.lag').allTextContents();
  assert.ok(lagCells.every((t) => /^[0-9,]+$/.test(t)), lagCells.join(' '));
  assert.match(await page.textContent('#journal-fill-text'), /%/);
  assert.match(await page.textContent('#ready'), /ready/);
  assert.match(await page.textContent('#token-expiry'), /./);
  step(`live counters: delivered ${d1} -> ${await delivered()}`);

  // 3. pause: /status says paused-operator, delivery stops while events
  // keep being journaled
  await row.locator('button.pause').click();
  await waitFor(async () => (await status()).r.forwarder.state ===
                'paused-operator', 'the route paused in /status');
  await waitFor(async () => (await row.locator('td.state').textContent()) ===
                'paused-operator' && row.locator('button.resume').count(),
                'the page to show the pause');
  // a batch cut before the pause waits for the resume (batches_waiting);
  // none may be on the wire any more
  const quiet = await waitFor(async () => {
    const x = await status();
    const f = x.r.forwarder;
    return f.batches_in_flight === f.batches_waiting && x;
  }, 'no batch on the wire');
  const dp = quiet.r.forwarder.events_delivered;
  const j0 = quiet.s.intake.journaled;
  await waitFor(async () => (await status()).s.intake.journaled >= j0 + 30,
                '30 more events journaled while paused');
  // the page shows them waiting (its own refresh), and still none sent
  await waitFor(async () => n(await row.locator('td.pending').textContent())
                >= 30, 'the page to show 30 events pending');
  const after = await status();
  assert.equal(after.r.forwarder.events_delivered, dp,
               'delivered moved while paused');
  assert.ok(after.r.journal_depth >= 30, JSON.stringify(after.r));
  await waitFor(async () => /\d+s/.test(
    await row.locator('td.oldest').textContent()), 'the oldest pending age');
  step(`paused: delivered stays ${dp} while journaled went from ${j0} to ` +
       `${after.s.intake.journaled}, ${after.r.journal_depth} pending`);

  // 4. resume: delivery restarts, the page shows it
  await row.locator('button.resume').click();
  await waitFor(async () => (await status()).r.forwarder.state === 'running',
                'the route running in /status');
  await waitFor(async () => (await status()).r.forwarder.events_delivered > dp,
                'delivery after resume');
  await waitFor(async () => (await delivered()) > dp &&
                (await row.locator('td.state').textContent()) === 'running',
                'the page to show delivery again');
  step(`resumed: delivered ${await delivered()}`);
  if (process.env.KADX_PAGE_SCREENSHOT) { // for a person to look at
    await page.screenshot({ path: process.env.KADX_PAGE_SCREENSHOT,
                            fullPage: true });
  }

  // 5. asked once: a reload in the same tab does not ask again
  await page.reload();
  await row.waitFor({ timeout: 15000 });
  assert.equal(await page.isVisible('#auth'), false);
  step('a reload does not ask again');

  // 6. only POSTs need the token: the test turns token_on_get off (SIGHUP)
  // and answers on stdin; a fresh tab shows the data at once and asks for
  // the token on the first button press, then does what was pressed
  await ask('reload-without-token-on-get');
  const page2 = await ctx.browser().newContext().then((c) => c.newPage());
  page2.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
  page2.on('request', (r) => urls.push(r.url()));
  await page2.goto(url);
  const row2 = page2.locator(`#routes tr[data-route="${route}"]`);
  await row2.waitFor({ timeout: 15000 });
  assert.equal(await page2.isVisible('#auth'), false);
  await row2.locator('button.pause').click();
  await page2.locator('#auth').waitFor({ state: 'visible', timeout: 15000 });
  assert.equal((await status()).r.forwarder.state, 'running');
  await page2.fill('#token', tok);
  await page2.click('#auth-ok');
  await waitFor(async () => (await status()).r.forwarder.state ===
                'paused-operator', 'the pause after the token');
  await waitFor(async () => (await row2.locator('td.state').textContent()) ===
                'paused-operator', 'the second page to show the pause');
  await row2.locator('button.resume').click(); // the token is kept now
  await waitFor(async () => (await status()).r.forwarder.state === 'running',
                'the resume without a second prompt');
  assert.equal(await page2.isVisible('#auth'), false);
  step('without token_on_get: data at once, the token asked on the ' +
       'first press, which then paused; resume asked nothing');

  // the token never went into a URL; every request stayed on the origin
  assert.ok(urls.length > 5, urls.join(' '));
  for (const u of urls) {
    assert.ok(u.startsWith(origin + '/'), 'a request off the origin: ' + u);
    assert.ok(!u.includes(tok), 'the token in a URL: ' + u);
  }
  assert.ok(!page.url().includes(tok));
  // 401s the page met by design (the first load, the wrong token) are
  // logged by Chromium as failed loads; anything else is a problem
  const real = problems.filter((p) => !/status of 401/.test(p));
  assert.deepEqual(real, []);
  step(`${urls.length} requests, all to ${origin}, no token in a URL`);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  console.log('page: FAILED: ' + (failed.stack || failed));
  process.exit(1);
}
console.log('page: all checks passed');
process.exit(0); // stdin stays open
