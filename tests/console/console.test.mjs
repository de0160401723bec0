// The web console in a real browser: Debian's Chromium, headless, against
// the real hookgate binary on 127.0.0.1 with a temp data dir, and a real
// receiver. Every screen is checked at a desk's size and a phone's (nothing
// may scroll sideways) and with axe-core, and its screenshots at both sizes
// go to ./artifacts.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const artifacts = join(here, 'artifacts');
const ADMIN = 'console-test-admin-token';
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const DESK = { width: 1366, height: 800 };
const PHONE = { width: 390, height: 844 };

let server;
let base;
let key;
let browser;
let page;
let dataDir;
let receiver;
const received = [];
let answer = 500;
/** Browser pop-ups the console opened: it should open none. */
const popups = [];

/** Builds what the tests run: the server binary and one example plugin. */
function build() {
  execFileSync('cargo', ['build', '-p', 'hookgate'], { cwd: root, stdio: 'inherit' });
  execFileSync('cargo', ['build', '--release', '-p', 'redact'], { cwd: join(root, 'plugins'), stdio: 'inherit' });
}

function startServer() {
  dataDir = mkdtempSync(join(tmpdir(), 'hookgate-console-'));
  const child = spawn(join(root, 'target', 'debug', 'hookgate'),
    ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--allow-private-targets'],
    { env: { ...process.env, HOOKGATE_ADMIN_TOKEN: ADMIN, RUST_LOG: 'hookgate=info' } });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('hookgate did not say where it listens')), 60000);
    const watch = (chunk) => {
      const found = /listening on (http:\/\/[\d.:]+)/.exec(chunk.toString());
      if (found) {
        clearTimeout(timer);
        resolve({ child, url: found[1] });
      }
    };
    child.stdout.on('data', watch);
    child.stderr.on('data', watch);
    child.on('exit', (code) => reject(new Error(`hookgate exited with ${code}`)));
  });
}

function startReceiver() {
  const http = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      received.push({ url: request.url, headers: request.headers, body });
      response.writeHead(answer).end();
    });
  });
  return new Promise((resolve) => http.listen(0, '127.0.0.1', () => resolve(http)));
}

/** Answers the console's own confirmation dialog; returns what it asked. */
async function confirm(accept) {
  const box = page.locator('#confirm-dialog[open]');
  await box.waitFor();
  const asked = await box.locator('[data-confirm-message]').innerText();
  if (accept) await box.locator('button[value=ok]').click();
  else await box.getByRole('button', { name: 'Cancel' }).click();
  // Answered, the dialog closes; but the page may ask again at once, in the
  // same dialog, before the test sees it closed.
  const closed = page.locator('#confirm-dialog:not([open])');
  const askedAgain = page.locator('#confirm-dialog[open]').filter({ hasNotText: asked });
  await closed.or(askedAgain).waitFor({ state: 'attached' });
  return asked;
}

async function apiCall(method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.json();
}

/** Checks the screen as it is now, at a desk's size and a phone's:
 *  nothing scrolls sideways, and axe-core finds no WCAG 2 A or AA
 *  violation. Saves a screenshot at each size. */
async function shot(name) {
  const served = await (await page.request.get(page.url())).text();
  assert.doesNotMatch(served, /whsec_/, `${name}: the page as served holds no signing secret`);
  for (const [size, viewport] of [['phone', PHONE], ['desk', DESK]]) {
    await page.setViewportSize(viewport);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name} scrolls sideways by ${overflow} px at ${viewport.width} px`);
    const dialog = page.locator('dialog[open]');
    if (await dialog.count()) {
      const box = await dialog.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= viewport.width && box.y >= 0 && box.y + box.height <= viewport.height,
        `${name}: the dialog fits the screen at ${viewport.width} px`);
    }
    await page.screenshot({ path: join(artifacts, `${name}-${size}.png`), fullPage: true });
  }
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ content: AXE });
  const { violations } = await page.evaluate(() => window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] }));
  assert.deepEqual(violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), [],
    `${name}: accessibility`);
}

before(async () => {
  build();
  mkdirSync(artifacts, { recursive: true });
  receiver = await startReceiver();
  const started = await startServer();
  server = started.child;
  base = started.url;
  const tenant = await fetch(`${base}/v1/tenants`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'acme' }),
  }).then((r) => r.json());
  key = tenant.api_key;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
  });
  page = await browser.newPage({ viewport: DESK });
  page.on('pageerror', (error) => { throw error; });
  page.on('dialog', async (dialog) => {
    popups.push(dialog.message());
    await dialog.dismiss();
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGKILL');
  receiver?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('signing in with a tenant key', async () => {
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/sign-in$/, 'unauthenticated visits go to the sign-in page');
  await page.getByLabel('Tenant API key').fill('hg_not-a-real-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/sign-in\?expired=1/);
  await page.getByRole('alert').filter({ hasText: 'unknown or was revoked' }).waitFor();
  await shot('01-sign-in');
  await page.getByLabel('Tenant API key').fill(key);
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/console\/overview$/);
  await page.getByText('Nothing is failing or disabled.').waitFor();
  await page.getByRole('link', { name: 'Event callbacks' }).click();
  await page.getByText('No callbacks yet').waitFor();
});

test('creating a callback through the dialog, with field errors from the API', async () => {
  await page.getByRole('button', { name: 'Add a callback' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.equal(await page.getByLabel('Expected HTTP status').isDisabled(), true, 'after-callbacks have no expected status');
  await page.getByLabel('Phase').selectOption('before');
  assert.equal(await page.getByLabel('Expected HTTP status').isDisabled(), false);
  await page.getByLabel('Phase').selectOption('after');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });

  await page.getByRole('button', { name: 'Add a callback' }).click();
  // Everything missing is said at once, each next to its field.
  await page.getByRole('button', { name: 'Save' }).click();
  await dialog.locator('[data-error-for="name"]').filter({ hasText: 'Give the callback a name.' }).waitFor();
  await dialog.locator('[data-error-for="object_type"]').filter({ hasText: 'such as app' }).waitFor();
  await dialog.locator('[data-error-for="url"]').filter({ hasText: 'needs the URL' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.name), 'name', 'the first problem has the focus');
  await page.getByLabel('Name', { exact: true }).fill('audit-log');
  await page.getByLabel('Object type').fill('app');
  await page.getByLabel('URL').fill('ftp://files.example/drop');
  await page.getByLabel('Max attempts').fill('1');
  await page.getByLabel('Request headers').fill('x-team: blue');
  await page.getByRole('button', { name: 'Save' }).click();
  const urlError = dialog.locator('[data-error-for="url"]');
  await urlError.filter({ hasText: 'must use http or https' }).waitFor();
  assert.equal(await page.getByLabel('URL').getAttribute('aria-invalid'), 'true');
  await shot('02-callback-dialog-error');

  const { port } = receiver.address();
  await page.getByLabel('URL').fill(`http://127.0.0.1:${port}/hooks`);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('row', { name: /audit-log/ }).waitFor();
  const listed = await apiCall('GET', '/v1/callbacks');
  assert.equal(listed.items.length, 1);
  const callback = listed.items[0];
  assert.equal(callback.url, `http://127.0.0.1:${port}/hooks`);
  assert.deepEqual(callback.headers, { 'x-team': 'blue' });
  assert.deepEqual(callback.retry, { max_attempts: 1, schedule_secs: [] });
  await shot('03-callbacks');
});

/** Waits until the API shows the first callback `enabled` as given: a
 * toggle saves in the background, and a reload before then shows the old
 * state. */
async function stored(enabled) {
  for (let i = 0; i < 50; i += 1) {
    if ((await apiCall('GET', '/v1/callbacks')).items[0].enabled === enabled) return;
    await new Promise((r) => { setTimeout(r, 50); });
  }
  throw new Error(`the callback was not stored with enabled: ${enabled}`);
}

test('toggling a callback off and on', async () => {
  const toggle = page.getByRole('checkbox', { name: 'Enabled: audit-log' });
  assert.equal(await toggle.isChecked(), true);
  await toggle.uncheck();
  await stored(false);
  await page.reload();
  assert.equal(await page.getByRole('checkbox', { name: 'Enabled: audit-log' }).isChecked(), false, 'the page shows the stored state');
  await page.getByRole('checkbox', { name: 'Enabled: audit-log' }).check();
  await stored(true);
  await page.reload();
  assert.equal(await page.getByRole('checkbox', { name: 'Enabled: audit-log' }).isChecked(), true);
});

test('emitting an event from the console and watching its delivery', async () => {
  await page.getByRole('link', { name: 'Try an event' }).click();
  await page.getByLabel('Object type').fill('policy');
  await page.getByLabel('Phase').selectOption('before');
  await page.getByRole('button', { name: 'Emit' }).click();
  await page.getByText('No before-callback matched, so the event is allowed.').waitFor();
  assert.equal(await page.locator('.verdict').innerText(), 'Allowed');

  await page.getByLabel('Object type').fill('app');
  await page.getByLabel('Phase').selectOption('after');
  await page.getByLabel('Data (JSON)').fill('{"name": "weather"');
  await page.getByRole('button', { name: 'Emit' }).click();
  await page.locator('[data-error-for="data"]').filter({ hasText: 'not valid JSON' }).waitFor();
  await page.getByLabel('Data (JSON)').fill('{"name": "weather"}');
  // A double click sends one event: the button is disabled while it runs.
  await page.getByRole('button', { name: 'Emit' }).dblclick();
  await page.getByText(/failed \(HTTP 500\)/).waitFor({ timeout: 15000 });
  await page.locator('#try-result').getByRole('link', { name: 'audit-log' }).waitFor();
  await new Promise((resolve) => { setTimeout(resolve, 500); });
  assert.equal(received.length, 1, 'the receiver got one delivery');
  assert.equal(JSON.parse(received[0].body).data.name, 'weather');
  assert.equal(received[0].headers['x-team'], 'blue');
  await shot('04-try-an-event');
});

test('the activation history: expands, pretty JSON, retries in place, filters, replays', async () => {
  await page.getByRole('link', { name: 'Event callbacks' }).click();
  await page.getByRole('row', { name: /audit-log/ }).getByRole('link').click();
  await page.waitForURL(/\/history$/);
  await page.getByRole('heading', { name: 'Activation history: audit-log' }).waitFor();
  const first = page.locator('.activation').first();
  assert.match(await first.locator('summary').innerText(), /failed[\s\S]*status 500/);
  await first.locator('summary').click();
  await first.getByText('"name": "weather"').first().waitFor();
  assert.equal(await first.getByRole('button', { name: 'Copy the request body' }).count(), 1);
  await shot('05-history');

  assert.equal(await page.getByRole('button', { name: 'Retry delivery' }).count(), 1,
    'one Retry per delivery');
  answer = 200;
  await first.getByRole('button', { name: 'Retry delivery' }).click();
  // The outcome shows where the click was.
  await first.getByRole('status').filter({ hasText: 'Retried: succeeded (HTTP 200).' }).waitFor({ timeout: 15000 });
  assert.equal(received.length, 2, 'the retry re-sent the delivery');
  await shot('06-history-after-retry');
  await page.reload();
  await page.locator('.activation.succeeded').first().waitFor();
  assert.equal(await page.locator('.activation').count(), 2, 'the failure and the retry');

  // Filters: by outcome, and by time.
  await page.getByLabel('Outcome').selectOption('failed');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/outcome=failed/);
  assert.equal(await page.locator('.activation').count(), 1);
  assert.equal(await page.locator('.activation.failed').count(), 1);
  await shot('06a-history-filtered');
  await page.locator('#h-until').fill('2020-01-01T00:00');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.getByText('No activation matches.').waitFor();
  assert.equal(await page.locator('#h-until').inputValue(), '2020-01-01T00:00', 'the filter shows what it filters');
  await page.getByRole('link', { name: 'Clear' }).click();
  await page.locator('.activation.succeeded').first().waitFor();

  // Replay: the one failed delivery was retried, so nothing is failed now.
  await page.locator('#r-since').fill('2020-01-01T00:00');
  await page.locator('#r-until').fill('2099-01-01T00:00');
  await page.getByRole('button', { name: 'Replay' }).click();
  await page.getByText('No delivery failed in that window: nothing was sent.').waitFor();
});

test('health at a glance: a failing callback stands out, and a filter shows only those', async () => {
  const { port } = receiver.address();
  await apiCall('POST', '/v1/callbacks', {
    name: 'orders-to-the-warehouse', object_type: 'order', phase: 'after', retry: { max_attempts: 1 },
    url: `http://127.0.0.1:${port}/a/rather/long/path/that/goes/on/to/test/wrapping?with=a&query=string`,
  });
  answer = 500;
  const emitted = await apiCall('POST', '/v1/events', { object_type: 'order', action: 'created', phase: 'after', data: {} });
  for (let i = 0; i < 100; i += 1) {
    if ((await apiCall('GET', `/v1/deliveries/${emitted.deliveries[0].id}`)).status === 'failed') break;
    await new Promise((r) => { setTimeout(r, 100); });
  }
  answer = 200;
  await page.goto(`${base}/console/callbacks`);
  const audit = page.getByRole('row', { name: /audit-log/ });
  const orders = page.getByRole('row', { name: /orders-to-the-warehouse/ });
  // audit-log failed once, then its retry went through.
  assert.match(await audit.locator('td.health').innerText(), /healthy\s*50% ok/);
  assert.match(await orders.locator('td.health').innerText(), /failing\s*0% ok/);
  assert.equal(await orders.locator('svg.spark').getAttribute('aria-label'),
    '1 attempt in the last 24 hours, 1 failed');
  await shot('06b-callbacks-health');
  await page.getByRole('link', { name: 'Failing or disabled' }).click();
  await orders.waitFor();
  assert.equal(await audit.count(), 0, 'the healthy callback is left out');
  await shot('06c-callbacks-failing');
  await page.getByRole('link', { name: 'All callbacks' }).click();
  await audit.waitFor();

  // The overview adds them up: 2 of 3 attempts failed.
  await page.getByRole('link', { name: 'Overview' }).click();
  const figures = await page.locator('.figures').innerText();
  assert.match(figures, /3\s*delivery attempts/);
  assert.match(figures, /33\.3%\s*succeeded/);
  assert.match(figures, /2\s*failed/);
  assert.match(figures, /1 failing, 0 disabled/);
  assert.match(await page.locator('.chart svg').getAttribute('aria-label'), /^3 delivery attempts in the last 24 hours, 2 failed/);
  await page.locator('.attention').getByRole('link', { name: 'orders-to-the-warehouse' }).waitFor();
  await shot('06d-overview');
  await page.getByRole('link', { name: 'Last 7 days' }).click();
  await page.waitForURL(/window=7d/);
  assert.match(await page.locator('.chart svg').getAttribute('aria-label'), /in the last 168 hours/);
});

test('uploading plugins: a bad one shows the runtime error inline, a good one is listed', async () => {
  await page.getByRole('link', { name: 'Plugins' }).click();
  const bad = join(dataDir, 'not-a-plugin.wasm');
  writeFileSync(bad, 'this is not WebAssembly');
  await page.getByLabel('Name', { exact: true }).fill('broken');
  await page.getByLabel('Component (.wasm)').setInputFiles(bad);
  await page.getByRole('button', { name: 'Upload' }).click();
  const inline = page.locator('#plugin-upload [data-error-for=""]');
  await inline.filter({ hasText: /WebAssembly/i }).waitFor();
  await shot('07-plugin-upload-error');

  await page.getByLabel('Name', { exact: true }).fill('redact');
  await page.getByLabel('Component (.wasm)').setInputFiles(join(root, 'plugins', 'target', 'wasm32-wasip2', 'release', 'redact.wasm'));
  await page.getByRole('button', { name: 'Upload' }).click();
  const row = page.getByRole('row', { name: /redact/ });
  await row.waitFor();
  assert.match(await row.innerText(), /transform/, 'exports are listed');
  assert.match(await row.innerText(), /compiling|ready/, 'the state is shown');
  for (let i = 0; i < 50 && !/ready/.test(await row.innerText()); i++) {
    await page.waitForTimeout(200);
    await page.reload();
  }
  assert.match(await row.innerText(), /ready/, 'it becomes ready');
  await shot('08-plugins');

  const plugins = await apiCall('GET', '/v1/plugins');
  await apiCall('PATCH', `/v1/callbacks/${(await apiCall('GET', '/v1/callbacks')).items[0].id}`,
    { plugin: { id: plugins.items[0].id, config: {} } });
  await row.getByRole('button', { name: /Delete/ }).click();
  assert.match(await confirm(false), /Delete the plugin redact/, 'a confirmation is asked, in the page');
  assert.equal((await apiCall('GET', '/v1/plugins')).items.length, 1, 'dismissing it deletes nothing');
  await row.getByRole('button', { name: /Delete/ }).click();
  await page.locator('#confirm-dialog[open]').waitFor();
  await shot('08b-confirm');
  await confirm(true);
  assert.match(await confirm(false), /used by callbacks audit-log/, 'the in-use warning names the callback');
  assert.equal((await apiCall('GET', '/v1/plugins')).items.length, 1, 'declining the warning keeps the plugin');
});

test('subscriptions and templates: importing an OpenAPI document', async () => {
  await page.getByRole('link', { name: 'Subscriptions' }).click();
  const doc = join(dataDir, 'api.yaml');
  writeFileSync(doc, [
    'openapi: 3.0.0',
    'info: {title: t, version: "1"}',
    'paths:',
    '  /subscribe:',
    '    post:',
    '      responses: {"201": {description: created}}',
    '      callbacks:',
    '        myEvent:',
    "          '{$request.body#/callbackUrl}':",
    '            post:',
    '              responses: {"200": {description: ok}}',
  ].join('\n'));
  await page.getByLabel('Document').setInputFiles(doc);
  await page.getByRole('button', { name: 'Import' }).click();
  await page.getByText('Created template myEvent from POST /subscribe').waitFor();
  await page.getByRole('row', { name: /myEvent/ }).waitFor();

  const { port } = receiver.address();
  await page.getByLabel('Subscribe request body (JSON)').fill('{"callbackUrl": "not json');
  await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
  await page.locator('#subscribe-form [data-error-for="request"]').filter({ hasText: 'not valid JSON' }).waitFor();
  await page.getByLabel('Subscribe request body (JSON)').fill(JSON.stringify({ callbackUrl: `http://127.0.0.1:${port}/sub` }));
  await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
  const row = page.getByRole('row', { name: /127\.0\.0\.1.*\/sub/ });
  await row.waitFor();
  await shot('09-subscriptions');
  await row.getByRole('button', { name: 'Unsubscribe' }).click();
  await confirm(true);
  await page.getByText('No subscriptions.').waitFor();

  // A template made by hand, then deleted.
  await page.getByRole('button', { name: 'Create template' }).click();
  await page.locator('#template-form [data-error-for="name"]').filter({ hasText: 'Give the template a name.' }).waitFor();
  await page.locator('#tpl-name').fill('byHand');
  await page.locator('#tpl-object-type').fill('widget');
  await page.getByLabel('URL expression').fill('{$request.body#/hook}');
  await page.getByRole('button', { name: 'Create template' }).click();
  const template = page.getByRole('row', { name: /byHand/ });
  await template.waitFor();
  await template.getByRole('button', { name: /Delete/ }).click();
  await confirm(true);
  await template.waitFor({ state: 'detached' });
  assert.equal((await apiCall('GET', '/v1/subscriptions')).items.length, 0);
});

test('API keys are made, shown once and revoked; a signing secret is revealed and rotated', async () => {
  await page.getByRole('link', { name: 'API keys' }).click();
  await page.getByRole('heading', { name: 'API keys' }).waitFor();
  assert.match(await page.getByRole('row', { name: /default/ }).innerText(), /\(you\)/, 'the signed-in key is marked');
  await page.getByLabel('Name', { exact: true }).fill('ci-pipeline');
  await page.getByLabel('Role').selectOption('emit');
  await page.getByRole('button', { name: 'Create key' }).click();
  const shown = page.locator('[data-new-key]');
  await shown.filter({ hasText: /^hg_/ }).waitFor();
  const made = await shown.innerText();
  const asMade = await fetch(`${base}/v1/keys`, { headers: { authorization: `Bearer ${made}` } });
  assert.equal(asMade.status, 403, 'the new key works, as an emit key');
  await shot('10a-keys');
  await page.getByRole('row', { name: /ci-pipeline/ }).getByRole('button', { name: /Revoke/ }).click();
  assert.match(await confirm(true), /refused from now on/);
  await page.getByRole('row', { name: /ci-pipeline/ }).waitFor({ state: 'detached' });
  const revoked = await fetch(`${base}/v1/keys`, { headers: { authorization: `Bearer ${made}` } });
  assert.equal(revoked.status, 401, 'the revoked key is refused');

  await page.getByRole('link', { name: 'Event callbacks' }).click();
  await page.getByRole('row', { name: /audit-log/ }).getByRole('button', { name: /Secret/ }).click();
  const box = page.locator('#secret-dialog');
  assert.doesNotMatch(await box.locator('[data-secret]').innerText(), /whsec_/, 'hidden until asked for');
  await box.getByRole('button', { name: 'Reveal' }).click();
  await box.locator('[data-secret]').filter({ hasText: /^whsec_/ }).waitFor();
  const old = await box.locator('[data-secret]').innerText();
  const stored = (await apiCall('GET', '/v1/callbacks')).items.find((c) => c.name === 'audit-log');
  assert.equal(old, stored.secret);
  await shot('10b-secret');
  await box.getByRole('button', { name: 'Rotate' }).click();
  assert.match(await confirm(true), /both the old and the new secret/);
  await box.locator('[data-secret-note]').filter({ hasText: 'keeps signing until' }).waitFor();
  const rotated = await box.locator('[data-secret]').innerText();
  assert.notEqual(rotated, old);
  assert.equal((await apiCall('GET', `/v1/callbacks/${stored.id}`)).secret, rotated);
  await box.getByRole('button', { name: 'Close' }).click();
});

test('signing out, Back shows nothing; a read key sees callbacks and history only', async () => {
  const reader = await apiCall('POST', '/v1/keys', { name: 'auditor', role: 'read' });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/console\/sign-in$/);
  await page.goBack();
  await page.waitForLoadState('load');
  assert.match(page.url(), /\/console\/sign-in$/, 'Back asks the server again, which sends to sign-in');
  assert.equal(await page.getByRole('heading', { name: 'Subscriptions and templates' }).count(), 0);

  await page.getByLabel('Tenant API key').fill(reader.api_key);
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/console\/overview$/);
  await page.getByRole('link', { name: 'Event callbacks' }).click();
  await page.getByRole('row', { name: /audit-log/ }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Add a callback' }).count(), 0);
  assert.equal(await page.getByRole('button', { name: /Edit/ }).count(), 0);
  assert.equal(await page.getByRole('link', { name: 'Plugins' }).count(), 0);
  assert.equal(await page.getByRole('checkbox', { name: 'Enabled: audit-log' }).isDisabled(), true);
  await shot('10-read-key-callbacks');
  await page.getByRole('row', { name: /audit-log/ }).getByRole('link').click();
  await page.getByRole('heading', { name: 'Activation history: audit-log' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Retry delivery' }).count(), 0, 'a read key cannot retry');

  await page.goto(`${base}/console/plugins`);
  await page.getByRole('alert').filter({ hasText: 'cannot manage plugins' }).waitFor();
  await page.getByRole('link', { name: 'Event callbacks' }).waitFor();
  await shot('11-read-key-forbidden');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/console\/sign-in$/);

  // An emit key lands on the page that emits test events, and sees no other.
  const emitter = await apiCall('POST', '/v1/keys', { name: 'tester', role: 'emit' });
  await page.getByLabel('Tenant API key').fill(emitter.api_key);
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/console\/try$/);
  const links = await page.getByRole('navigation', { name: 'Console' }).getByRole('link').allInnerTexts();
  assert.deepEqual(links, ['Try an event']);
  await page.getByLabel('Object type').fill('app');
  await page.getByLabel('Phase').selectOption('after');
  await page.getByRole('button', { name: 'Emit' }).click();
  await page.getByText('A manage or read key can follow these deliveries.').waitFor();
  assert.equal(await page.locator('#try-result a').count(), 0, 'no links to pages an emit key cannot open');
  await shot('11b-emit-key');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/console\/sign-in$/);

  await page.goto(`${base}/console/no-such-page`);
  await page.getByRole('heading', { name: 'No such page' }).waitFor();
  await shot('12-not-found');
  assert.deepEqual(popups, [], 'the console asks in the page, never in a browser pop-up');
});
