// Hookgate console. Pages are rendered by the server; this script makes
// every change by calling the management API with the signed-in key, and
// shows the API's errors next to the fields they name.
'use strict';

(() => {
  const COOKIE = 'hookgate_key';
  /** The signed-in key's role, on pages that have one. */
  const ROLE = document.body.dataset.role;

  const key = () => {
    const pair = document.cookie.split('; ').find((c) => c.startsWith(`${COOKIE}=`));
    return pair ? decodeURIComponent(pair.slice(COOKIE.length + 1)) : '';
  };

  const setKey = (value) => {
    const expiry = value ? '' : '; Max-Age=0';
    document.cookie = `${COOKIE}=${encodeURIComponent(value)}; Path=/console; SameSite=Strict${expiry}`;
  };

  // Times: relative to now, with the exact time in the reader's zone on
  // hover. The page says UTC until this runs.
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  const UNITS = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60]];
  function ago(date) {
    const seconds = Math.round((date.getTime() - Date.now()) / 1000);
    for (const [unit, size] of UNITS) {
      if (Math.abs(seconds) >= size) return relative.format(Math.trunc(seconds / size), unit);
    }
    return relative.format(seconds, 'second');
  }
  for (const time of document.querySelectorAll('time[datetime]')) {
    const date = new Date(time.getAttribute('datetime'));
    if (Number.isNaN(date.getTime())) continue;
    time.title = date.toLocaleString();
    time.textContent = ago(date);
  }

  /** Calls the API; answers {ok, status, json}. */
  async function api(method, path, body, contentType) {
    const headers = { authorization: `Bearer ${key()}` };
    let payload = body;
    if (contentType) {
      headers['content-type'] = contentType;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const response = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
    if (response.status === 401) {
      location.href = '/console/sign-in?expired=1';
      throw new Error('signed out');
    }
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    return { ok: response.ok, status: response.status, json };
  }

  /** Builds an element; children are nodes or text. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  function clearErrors(form) {
    form.querySelectorAll('[data-error-for]').forEach((slot) => { slot.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((input) => input.removeAttribute('aria-invalid'));
  }

  /** Shows a message at the slot for `field` (the longest slot name the
   *  field starts with), or at the form's general slot. */
  function showError(form, field, message) {
    let best = null;
    for (const slot of form.querySelectorAll('[data-error-for]')) {
      const name = slot.dataset.errorFor;
      const matches = name && (field === name || field.startsWith(`${name}.`) || field.startsWith(`${name}[`));
      if (matches && (!best || name.length > best.dataset.errorFor.length)) best = slot;
    }
    if (best) {
      best.textContent = field === best.dataset.errorFor ? message : `${field}: ${message}`;
      const input = form.querySelector(`[name="${best.dataset.errorFor}"]`);
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      }
      return;
    }
    const general = form.querySelector('[data-error-for=""]') || document.querySelector('[data-page-error]');
    general.textContent = field ? `${field}: ${message}` : message;
  }

  function showApiError(form, result) {
    const error = result.json && result.json.error;
    showError(form, (error && error.field) || '', (error && error.message) || `The request failed (HTTP ${result.status}).`);
  }

  function pageError(message) {
    const slot = document.querySelector('[data-page-error]');
    if (slot) slot.textContent = message;
  }

  class FieldError extends Error {
    constructor(field, message) {
      super(message);
      this.field = field;
    }
  }

  /** Several FieldErrors, found together. */
  class FieldErrors extends Error {
    constructor(problems) {
      super(problems.map((p) => p.message).join(' '));
      this.problems = problems;
    }
  }

  // Sign in and out.
  const signIn = document.getElementById('sign-in');
  if (signIn) {
    signIn.addEventListener('submit', (event) => {
      event.preventDefault();
      const value = signIn.elements.key.value.trim();
      if (!value) {
        showError(signIn, 'key', 'Enter your API key.');
        return;
      }
      setKey(value);
      location.href = '/console';
    });
  }
  for (const button of document.querySelectorAll('[data-sign-out]')) {
    button.addEventListener('click', () => {
      setKey('');
      location.replace('/console/sign-in');
    });
  }

  /** Runs `handler` on each submit of `form`, with its submit button
   *  disabled meanwhile: a double click sends one request, not two. */
  function onSubmit(form, handler) {
    form?.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (form.getAttribute('aria-busy') === 'true') return;
      const buttons = form.querySelectorAll('button[type=submit]');
      form.setAttribute('aria-busy', 'true');
      for (const b of buttons) b.disabled = true;
      try {
        await handler(event);
      } catch (error) {
        // A lost connection, say: the form says so rather than nothing.
        showError(form, '', `The request failed: ${error.message}`);
      } finally {
        form.removeAttribute('aria-busy');
        for (const b of buttons) b.disabled = false;
      }
    });
  }

  // Time fields: people pick local times; forms send milliseconds since
  // the epoch, in the hidden field each picker names.
  const localInput = (ms) => {
    const date = new Date(Number(ms));
    if (!Number.isFinite(date.getTime())) return '';
    return new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  };
  for (const form of document.querySelectorAll('[data-time-form]')) {
    for (const picker of form.querySelectorAll('[data-ms-for]')) {
      if (picker.dataset.ms) picker.value = localInput(picker.dataset.ms);
    }
    form.addEventListener('submit', () => {
      for (const picker of form.querySelectorAll('[data-ms-for]')) {
        const hidden = form.querySelector(`input[type=hidden][name="${picker.dataset.msFor}"]`);
        hidden.value = picker.value ? String(new Date(picker.value).getTime()) : '';
      }
    });
  }

  // API keys: a new key is shown once; the signed-in one is marked.
  const keyForm = document.getElementById('key-form');
  for (const row of document.querySelectorAll('[data-key-prefix]')) {
    if (key().startsWith(row.dataset.keyPrefix)) row.querySelector('[data-yours]').hidden = false;
  }
  onSubmit(keyForm, async () => {
    clearErrors(keyForm);
    const name = keyForm.elements.name.value.trim();
    if (!name) return showError(keyForm, 'name', 'Give the key a name.');
    const result = await api('POST', '/v1/keys', { name, role: keyForm.elements.role.value });
    if (!result.ok) return showApiError(keyForm, result);
    const made = result.json;
    const shown = document.getElementById('new-key');
    shown.querySelector('[data-new-key]').textContent = made.api_key;
    shown.hidden = false;
    keyForm.elements.name.value = '';
    document.querySelector('table tbody').prepend(el('tr', { 'data-key-prefix': made.prefix },
      el('th', { scope: 'row' }, made.name), el('td', { 'data-label': 'Role' }, made.role),
      el('td', { 'data-label': 'Key' }, el('code', {}, `${made.prefix}…`)), el('td', { 'data-label': 'Created' }, 'just now'),
      el('td', { class: 'actions' }, el('button', { type: 'button', class: 'danger', 'data-revoke-key': made.id, 'data-name': made.name },
        'Revoke', el('span', { class: 'visually-hidden' }, ` ${made.name}`)))));
  });

  // A callback's signing secret: hidden until asked for, and rotated with
  // an overlap in which both secrets sign.
  const secretDialog = document.getElementById('secret-dialog');
  function showSecret(secret, note) {
    secretDialog.querySelector('[data-secret]').textContent = secret;
    secretDialog.querySelector('.copy').hidden = false;
    secretDialog.querySelector('[data-secret-note]').textContent = note;
  }
  const until = (ms) => new Date(ms).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  /** A failed request, said inside the dialog, where the user looks. */
  function secretError(result) {
    const error = result.json && result.json.error;
    secretDialog.querySelector('[data-secret-note]').textContent = error ? error.message : `The request failed (HTTP ${result.status}).`;
  }

  // Replaying a window of failed deliveries.
  const replay = document.getElementById('replay-form');
  onSubmit(replay, async () => {
    clearErrors(replay);
    const f = replay.elements;
    const out = replay.querySelector('[data-replay-result]');
    const query = new URLSearchParams({ since: f.since.value, until: f.until.value });
    const result = await api('POST', `/v1/callbacks/${encodeURIComponent(replay.dataset.replay)}/replay?${query}`);
    if (!result.ok) return showApiError(replay, result);
    out.textContent = result.json.replayed === 0
      ? 'No delivery failed in that window: nothing was sent.'
      : `Sent again: ${result.json.replayed} deliver${result.json.replayed === 1 ? 'y' : 'ies'}.`;
  });

  // The callback dialog.
  const dialog = document.getElementById('callback-dialog');
  const form = document.getElementById('callback-form');

  function syncPhase() {
    const before = form.elements.phase.value === 'before';
    form.elements.expected_status.disabled = !before;
    form.querySelector('[data-after-only]').disabled = before;
  }

  function openDialog(callback) {
    form.reset();
    clearErrors(form);
    const f = form.elements;
    f.id.value = callback ? callback.id : '';
    document.getElementById('callback-dialog-title').textContent = callback ? `Edit ${callback.name}` : 'New callback';
    if (callback) {
      f.name.value = callback.name;
      f.object_type.value = callback.object_type;
      f.phase.value = callback.phase;
      for (const box of form.querySelectorAll('[name=actions]')) box.checked = callback.actions.includes(box.value);
      f.url.value = callback.url || '';
      f.expected_status.value = callback.expected_status || '';
      f.timeout_ms.value = callback.timeout_ms || '';
      f.headers.value = Object.entries(callback.headers).map(([k, v]) => `${k}: ${v}`).join('\n');
      f['plugin.id'].value = callback.plugin ? callback.plugin.id : '';
      f['plugin.config'].value = callback.plugin && Object.keys(callback.plugin.config).length
        ? JSON.stringify(callback.plugin.config, null, 2) : '';
      f['retry.max_attempts'].value = callback.retry ? callback.retry.max_attempts : '';
      f['retry.schedule_secs'].value = callback.retry ? callback.retry.schedule_secs.join(', ') : '';
      f.enabled.checked = callback.enabled;
    }
    syncPhase();
    dialog.showModal();
  }

  /** The API input the dialog describes; throws FieldError on what the
   *  API could not even receive. */
  function callbackInput() {
    const f = form.elements;
    const phase = f.phase.value;
    // Every problem found here at once, each at its field.
    const problems = [];
    const body = {
      name: f.name.value.trim(),
      object_type: f.object_type.value.trim(),
      phase,
      actions: [...form.querySelectorAll('[name=actions]:checked')].map((box) => box.value),
      enabled: f.enabled.checked,
      headers: {},
    };
    if (f.url.value.trim()) body.url = f.url.value.trim();
    if (phase === 'before' && f.expected_status.value) body.expected_status = Number(f.expected_status.value);
    if (f.timeout_ms.value) body.timeout_ms = Number(f.timeout_ms.value);
    for (const line of f.headers.value.split('\n')) {
      if (!line.trim()) continue;
      const colon = line.indexOf(':');
      if (colon < 1) {
        problems.push(new FieldError('headers', `"${line.trim()}" is not "name: value".`));
        break;
      }
      body.headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
    }
    if (f['plugin.id'].value) {
      let config = {};
      const text = f['plugin.config'].value.trim();
      if (text) {
        try {
          config = JSON.parse(text);
          if (typeof config !== 'object' || config === null || Array.isArray(config)) {
            problems.push(new FieldError('plugin.config', 'must be a JSON object.'));
          }
        } catch (e) {
          problems.push(new FieldError('plugin.config', `is not valid JSON: ${e.message}`));
        }
      }
      body.plugin = { id: f['plugin.id'].value, config };
    }
    const attempts = f['retry.max_attempts'].value;
    const schedule = f['retry.schedule_secs'].value.trim();
    if (phase === 'after' && (attempts || schedule)) {
      const secs = schedule ? schedule.split(',').map((s) => Number(s.trim())) : [];
      if (secs.some((s) => !Number.isInteger(s))) {
        problems.push(new FieldError('retry.schedule_secs', 'must be whole seconds separated by commas.'));
      }
      body.retry = { max_attempts: attempts ? Number(attempts) : secs.length + 1, schedule_secs: secs };
    }
    if (!body.name) problems.push(new FieldError('name', 'Give the callback a name.'));
    if (!body.object_type) problems.push(new FieldError('object_type', 'Say which object type it listens to, such as app.'));
    if (!body.actions.length) problems.push(new FieldError('actions', 'Pick at least one action.'));
    if (phase === 'after' && !body.url) problems.push(new FieldError('url', 'An after-callback needs the URL its deliveries go to.'));
    if (phase === 'before' && !body.url && !body.plugin) {
      problems.push(new FieldError('url', 'A before-callback needs a URL to ask, or a plugin to decide.'));
    }
    if (problems.length) throw new FieldErrors(problems);
    return body;
  }

  if (form) {
    form.elements.phase.addEventListener('change', syncPhase);
    form.querySelector('[data-close-dialog]').addEventListener('click', () => dialog.close());
    onSubmit(form, async () => {
      clearErrors(form);
      let body;
      try {
        body = callbackInput();
      } catch (e) {
        if (!(e instanceof FieldErrors)) throw e;
        for (const problem of [...e.problems].reverse()) showError(form, problem.field, problem.message);
        return;
      }
      const id = form.elements.id.value;
      const result = id
        ? await api('PUT', `/v1/callbacks/${encodeURIComponent(id)}`, body)
        : await api('POST', '/v1/callbacks', body);
      if (!result.ok) return showApiError(form, result);
      dialog.close();
      location.reload();
    });
  }

  /** Asks in the page, not in a browser pop-up; true if confirmed. */
  function ask(message, confirmLabel) {
    const box = document.getElementById('confirm-dialog');
    box.querySelector('[data-confirm-message]').textContent = message;
    box.querySelector('button[value=ok]').textContent = confirmLabel;
    box.returnValue = '';
    box.showModal();
    return new Promise((resolve) => {
      box.addEventListener('close', () => resolve(box.returnValue === 'ok'), { once: true });
    });
  }

  async function confirmed(message, confirmLabel, method, path, then = () => location.reload()) {
    if (!(await ask(message, confirmLabel))) return;
    const result = await api(method, path);
    if (result.ok) {
      then();
    } else {
      pageError(result.json && result.json.error ? result.json.error.message : `HTTP ${result.status}`);
    }
  }

  document.addEventListener('click', async (event) => {
    const target = event.target.closest('button');
    if (!target) return;
    const d = target.dataset;
    if ('openCallback' in d) openDialog(null);
    if (d.editCallback) openDialog(JSON.parse(d.editCallback));
    if (d.deleteCallback) {
      await confirmed(`Delete the callback "${d.name}"? Its history stays until retention removes it.`, 'Delete',
        'DELETE', `/v1/callbacks/${encodeURIComponent(d.deleteCallback)}`);
    }
    if (d.secret) {
      secretDialog.dataset.callback = d.secret;
      secretDialog.dataset.name = d.name;
      document.getElementById('secret-title').textContent = `Signing secret: ${d.name}`;
      secretDialog.querySelector('[data-secret]').textContent = 'Hidden until you reveal it.';
      secretDialog.querySelector('.copy').hidden = true;
      secretDialog.querySelector('[data-secret-note]').textContent = '';
      secretDialog.showModal();
    }
    if ('revealSecret' in d) {
      const asked = secretDialog.dataset.callback;
      const r = await api('GET', `/v1/callbacks/${encodeURIComponent(asked)}`);
      if (asked !== secretDialog.dataset.callback) return;
      if (!r.ok) return secretError(r);
      showSecret(r.json.secret, r.json.previous_secret_expires_at
        ? `The previous secret also signs until ${until(r.json.previous_secret_expires_at)}.` : '');
    }
    if ('rotateSecret' in d) {
      const hours = secretDialog.dataset.overlapHours;
      const go = await ask(`Make a new signing secret for "${secretDialog.dataset.name}"? For the next ${hours} hours `
        + 'each request carries signatures with both the old and the new secret, so receivers can switch over.', 'Rotate');
      if (!go) return;
      const asked = secretDialog.dataset.callback;
      const r = await api('POST', `/v1/callbacks/${encodeURIComponent(asked)}/rotate-secret`);
      if (asked !== secretDialog.dataset.callback) return;
      if (!r.ok) return secretError(r);
      showSecret(r.json.secret, `New secret made. The old one keeps signing until ${until(r.json.previous_secret_expires_at)}: `
        + 'give receivers the new one before then.');
    }
    if ('closeSecret' in d) secretDialog.close();
    if (d.revokeKey) {
      const row = target.closest('tr');
      const yours = key().startsWith(row.dataset.keyPrefix);
      const message = yours
        ? `Revoke "${d.name}"? It is the key you are signed in with: you will be signed out.`
        : `Revoke "${d.name}"? Whatever uses it is refused from now on.`;
      if (!(await ask(message, 'Revoke'))) return;
      const r = await api('DELETE', `/v1/keys/${encodeURIComponent(d.revokeKey)}`);
      if (!r.ok) return pageError(r.json ? r.json.error.message : `HTTP ${r.status}`);
      if (yours) {
        setKey('');
        location.replace('/console/sign-in');
      } else {
        row.remove();
      }
    }
    if ('copy' in d) {
      const pre = target.parentElement.querySelector('pre');
      const text = pre.dataset.raw ?? pre.textContent;
      try {
        await navigator.clipboard.writeText(text);
        target.firstChild.textContent = 'Copied';
      } catch {
        getSelection().selectAllChildren(pre);
        target.firstChild.textContent = 'Selected: press Ctrl+C';
      }
      setTimeout(() => { target.firstChild.textContent = 'Copy'; }, 2000);
    }
    if (d.retry) {
      target.disabled = true;
      let status = target.nextElementSibling;
      if (!status || !status.matches('[data-retry-status]')) {
        status = el('span', { 'data-retry-status': '', role: 'status' });
        target.after(status);
      }
      status.textContent = 'Retrying…';
      const result = await api('POST', `/v1/deliveries/${encodeURIComponent(d.retry)}/retry`);
      if (result.ok) {
        const last = result.json.attempts_made[result.json.attempts_made.length - 1];
        status.textContent = `Retried: ${result.json.status}${last && last.status ? ` (HTTP ${last.status})` : ''}`
          + `${result.json.last_error && result.json.status !== 'succeeded' ? ` — ${result.json.last_error}` : ''}.`;
      } else {
        status.textContent = result.json ? result.json.error.message : `HTTP ${result.status}`;
      }
      target.disabled = false;
    }
    if (d.deletePlugin) {
      if (!(await ask(`Delete the plugin ${d.name}?`, 'Delete'))) return;
      const path = `/v1/plugins/${encodeURIComponent(d.deletePlugin)}`;
      let result = await api('DELETE', path);
      if (result.status === 409
        && await ask(`${result.json.error.message}. Delete it anyway, and disable those callbacks?`, 'Delete and disable')) {
        result = await api('DELETE', `${path}?force=true`);
      }
      if (result.ok) location.reload();
      else pageError(result.json.error.message);
    }
    if (d.unsubscribe) {
      await confirmed(`Unsubscribe ${d.name}? Its callback is deleted and nothing more is delivered.`, 'Unsubscribe',
        'DELETE', `/v1/subscriptions/${encodeURIComponent(d.unsubscribe)}`);
    }
    if (d.deleteTemplate) {
      await confirmed(`Delete the template "${d.name}"? Its subscriptions stay.`, 'Delete',
        'DELETE', `/v1/callback-templates/${encodeURIComponent(d.deleteTemplate)}`);
    }
  });

  document.addEventListener('change', async (event) => {
    const box = event.target;
    if (!box.matches('[data-toggle]')) return;
    const wanted = box.checked;
    box.disabled = true;
    const result = await api('PATCH', `/v1/callbacks/${encodeURIComponent(box.dataset.toggle)}`, { enabled: wanted });
    box.disabled = false;
    if (!result.ok) {
      box.checked = !wanted;
      pageError(result.json && result.json.error ? result.json.error.message : `HTTP ${result.status}`);
    }
  });

  // Plugins.
  const upload = document.getElementById('plugin-upload');
  onSubmit(upload, async () => {
    clearErrors(upload);
    const name = upload.elements.name.value.trim();
    const file = upload.elements.file.files[0];
    if (!name || !file) return showError(upload, '', 'Give the plugin a name and choose a .wasm file.');
    const result = await api('POST', `/v1/plugins?name=${encodeURIComponent(name)}`, await file.arrayBuffer(), 'application/wasm');
    if (!result.ok) return showApiError(upload, result);
    location.reload();
  });

  // Try an event.
  const tryForm = document.getElementById('try-form');
  onSubmit(tryForm, async () => {
    clearErrors(tryForm);
    const f = tryForm.elements;
    let data;
    try {
      data = f.data.value.trim() ? JSON.parse(f.data.value) : null;
    } catch (e) {
      return showError(tryForm, 'data', `is not valid JSON: ${e.message}`);
    }
    const body = { object_type: f.object_type.value.trim(), action: f.action.value.trim(), phase: f.phase.value, data };
    if (f.actor.value.trim()) body.actor = f.actor.value.trim();
    const result = await api('POST', '/v1/events', body);
    const out = document.getElementById('try-result');
    out.replaceChildren();
    if (!result.ok) return showApiError(tryForm, result);
    const answer = result.json;
    out.append(el('h2', {}, 'Result'), el('p', {}, 'Event ', el('code', {}, answer.event_id)));
    if (answer.decisions) {
      out.append(el('p', { class: `verdict ${answer.allowed ? 'allowed' : 'denied'}` }, answer.allowed ? 'Allowed' : 'Denied'));
      if (!answer.decisions.length) out.append(el('p', { class: 'empty' }, 'No before-callback matched, so the event is allowed.'));
      const rows = answer.decisions.map((d) => el('tr', {},
        el('th', { scope: 'row' }, historyLink(d.callback_id, d.callback_name)),
        el('td', { 'data-label': 'Verdict' }, d.verdict), el('td', { 'data-label': 'Reason' }, d.reason || ''),
        el('td', { 'data-label': 'Status' }, d.status == null ? '—' : String(d.status)),
        el('td', { 'data-label': 'Duration' }, `${d.duration_ms.toFixed(1)} ms`)));
      if (rows.length) {
        out.append(el('table', { class: 'cards' }, el('thead', {}, el('tr', {}, ...['Callback', 'Verdict', 'Reason', 'Status', 'Duration']
          .map((h) => el('th', { scope: 'col' }, h)))), el('tbody', {}, ...rows)));
      }
      return;
    }
    if (!answer.deliveries.length) {
      out.append(el('p', { class: 'empty' }, 'Stored. No after-callback matched, so nothing is delivered.'));
      return;
    }
    const list = el('ul', { class: 'deliveries' });
    out.append(el('p', {}, 'Stored. Deliveries:'), list);
    const items = answer.deliveries.map((d) => {
      const state = el('span', { class: 'outcome' }, 'pending');
      list.append(el('li', { 'data-delivery-id': d.id }, historyLink(d.callback_id, d.callback_name || d.callback_id), ' — ', state));
      return { id: d.id, state };
    });
    // An emit key may send events but not read what became of them.
    if (ROLE === 'emit') {
      out.append(el('p', { class: 'help' }, 'A manage or read key can follow these deliveries.'));
      return;
    }
    follow(items);
  });

  /** A callback's name, linking to its history for keys that may read it. */
  function historyLink(id, name) {
    return ROLE === 'emit' ? el('span', {}, name) : el('a', { href: `/console/callbacks/${id}/history` }, name);
  }

  /** Shows each delivery's state until none is pending, polling less
   *  often as time passes: a retry may be minutes away. */
  async function follow(items) {
    let wait = 500;
    for (;;) {
      let pending = 0;
      for (const item of items) {
        const r = await api('GET', `/v1/deliveries/${encodeURIComponent(item.id)}`);
        if (!r.ok) continue;
        const delivery = r.json;
        const last = delivery.attempts_made[delivery.attempts_made.length - 1];
        let text = delivery.status;
        if (delivery.status === 'pending' && delivery.attempts > 0 && delivery.next_attempt_at) {
          text = `retrying at ${new Date(delivery.next_attempt_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`;
        }
        item.state.textContent = text + (last && last.status ? ` (HTTP ${last.status})` : '')
          + (delivery.last_error ? ` — ${delivery.last_error}` : '');
        if (delivery.status === 'pending') pending += 1;
      }
      if (!pending) return;
      await new Promise((resolve) => { setTimeout(resolve, wait); });
      wait = Math.min(wait * 2, 10000);
    }
  }

  // Templates and subscriptions made by hand.
  const templateForm = document.getElementById('template-form');
  onSubmit(templateForm, async () => {
    clearErrors(templateForm);
    const f = templateForm.elements;
    const body = { name: f.name.value.trim(), object_type: f.object_type.value.trim(), phase: f.phase.value, url: f.url.value.trim() };
    const missing = [['url', 'Give the URL expression.'], ['object_type', 'Say which object type it listens to.'],
      ['name', 'Give the template a name.']].filter(([field]) => !body[field]);
    for (const [field, message] of missing) showError(templateForm, field, message);
    if (missing.length) return;
    const result = await api('POST', '/v1/callback-templates', body);
    if (!result.ok) return showApiError(templateForm, result);
    location.reload();
  });
  const subscribeForm = document.getElementById('subscribe-form');
  onSubmit(subscribeForm, async () => {
    clearErrors(subscribeForm);
    const f = subscribeForm.elements;
    let body;
    try {
      body = JSON.parse(f['request.body'].value);
    } catch (e) {
      return showError(subscribeForm, 'request', `is not valid JSON: ${e.message}`);
    }
    const result = await api('POST', '/v1/subscriptions', { template: f.template.value, request: { body } });
    if (!result.ok) return showApiError(subscribeForm, result);
    location.reload();
  });

  // Import an OpenAPI document.
  const importForm = document.getElementById('import-form');
  const REPORT = 'hookgate-import-report';
  function showReport(report) {
    const out = document.getElementById('import-result');
    out.replaceChildren(el('h3', {}, `Imported OpenAPI ${report.openapi}`));
    const list = el('ul');
    for (const c of report.created) list.append(el('li', {}, `Created template ${c.name} from ${c.operation}: `, el('code', {}, c.url)));
    for (const s of report.skipped) list.append(el('li', { class: 'error-text' }, `Skipped ${s.name} (${s.operation}): ${s.reason}`));
    if (!report.created.length && !report.skipped.length) list.append(el('li', {}, 'The document declares no callbacks.'));
    out.append(list);
  }
  if (importForm) {
    const saved = sessionStorage.getItem(REPORT);
    if (saved) {
      sessionStorage.removeItem(REPORT);
      showReport(JSON.parse(saved));
    }
    onSubmit(importForm, async () => {
      clearErrors(importForm);
      const f = importForm.elements;
      const file = f.file.files[0];
      if (!file) return showError(importForm, '', 'Choose a document.');
      const query = new URLSearchParams({ phase: f.phase.value });
      if (f.object_type.value.trim()) query.set('object_type', f.object_type.value.trim());
      const result = await api('POST', `/v1/openapi/import?${query}`, await file.text(), 'application/yaml');
      if (!result.ok) return showApiError(importForm, result);
      sessionStorage.setItem(REPORT, JSON.stringify(result.json));
      location.reload();
    });
  }
})();
