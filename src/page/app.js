// The driver page: the day's route (start, loading, breaks, end), its stops, the next one with
// distance, ETA and navigation, and the status taps.
//
// A tap is kept in the browser (IndexedDB, files included) from the moment the button is pressed
// until the agent answers, under an Idempotency-Key made at that moment: if the Wi-Fi drops or
// the page is reloaded in the middle, it is sent again with the same key, and the agent answers
// with the event it already has instead of recording a second one.
'use strict';

const $ = (s) => document.querySelector(s);
// Every string the page shows is in /page/strings.json, one table per language; the page speaks
// the driver's language (the browser's, or the one chosen on the page, kept in the browser).
let STR = {};
let LANG = 'en';
const T = (key) => (STR[LANG] && STR[LANG][key]) || (STR.en && STR.en[key]) || key;
const NAMES = { en: 'English', de: 'Deutsch', fr: 'Français', es: 'Español', nl: 'Nederlands', pl: 'Polski' };

function pickLang() {
  let saved = null;
  try { saved = localStorage.getItem('curbside.lang'); } catch (_) { /* private mode */ }
  if (saved && STR[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    const base = String(l).toLowerCase().split('-')[0];
    if (STR[base]) return base;
  }
  return 'en';
}

function applyStrings() {
  document.documentElement.lang = LANG;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = T(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', T(el.dataset.i18nLabel));
  const sel = $('#lang');
  sel.replaceChildren(...Object.keys(STR).map((l) => {
    const o = document.createElement('option');
    o.value = l;
    o.textContent = NAMES[l] || l;
    o.selected = l === LANG;
    return o;
  }));
}

async function loadStrings() {
  const r = await getJson('/page/strings.json').catch(() => null);
  if (r && r.status === 200 && r.body) STR = r.body;
  LANG = pickLang();
  applyStrings();
}

const ui = { stops: [], day: null, job: null, chosenByDriver: false, busy: false, watchToken: 0 };

// ---- the pending taps, in IndexedDB ----------------------------------------------------------

const dbp = new Promise((resolve, reject) => {
  const open = indexedDB.open('curbside', 1);
  open.onupgradeneeded = () => open.result.createObjectStore('taps', { keyPath: 'key' });
  open.onsuccess = () => resolve(open.result);
  open.onerror = () => reject(open.error);
});

function store(mode, fn) {
  return dbp.then((db) => new Promise((resolve, reject) => {
    const tx = db.transaction('taps', mode);
    const req = fn(tx.objectStore('taps'));
    tx.oncomplete = () => resolve(req && req.result);
    tx.onerror = () => reject(tx.error);
  }));
}
const pendingAll = () => store('readonly', (s) => s.getAll());
const pendingPut = (t) => store('readwrite', (s) => s.put(t));
const pendingDrop = (key) => store('readwrite', (s) => s.delete(key));

function newKey() {
  // crypto.randomUUID needs a secure context; the van's page is plain HTTP.
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---- talking to the agent --------------------------------------------------------------------

async function getJson(path) {
  const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  return { status: r.status, body };
}

function say(text, kind) {
  const el = $('#result');
  el.textContent = text;
  el.className = kind || '';
}

// What a tap says, in the driver's language: a job's status and the job, or a route event.
function label(t) {
  return t.route ? T('route.' + t.event.status) : T('status.' + t.event.status) + ' ' + t.job;
}

async function send(t) {
  const url = t.route ? '/api/v1/route/status' : '/api/v1/jobs/' + encodeURIComponent(t.job) + '/status';
  let r;
  try {
    const headers = { 'Idempotency-Key': t.key };
    let body;
    if (t.files.length) {
      body = new FormData();
      body.append('event', new Blob([JSON.stringify(t.event)], { type: 'application/json' }), 'event.json');
      for (const f of t.files) body.append(f.part, f.blob, f.filename);
    } else {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(t.event);
    }
    r = await fetch(url, { method: 'POST', headers, body, credentials: 'same-origin' });
  } catch (_) {
    say(T('say.no_connection'), 'error');
    setTimeout(() => send(t), 3000);
    return;
  }
  let answer = null;
  try { answer = await r.json(); } catch (_) { /* not JSON */ }
  if (r.status === 201) {
    await pendingDrop(t.key);
    ui.busy = false;
    say(T('say.saved') + label(t), 'saved');
    watch(answer.sequence, t);
    closeSheets();
    if (t.route) refresh();
  } else if (r.status === 401) {
    ui.busy = false;
    showPairing();
  } else {
    // Refused: nothing was recorded, so this tap is over; the driver sees why.
    await pendingDrop(t.key);
    ui.busy = false;
    const why = (answer && answer.error) || (T('say.answered') + r.status);
    const where = !t.route && (t.files.length || t.event.status === 'failed') ? (t.event.status === 'failed' ? '#fail-error' : '#pod-error') : null;
    if (where) $(where).textContent = T('say.not_saved') + why;
    say(T('say.not_saved').toUpperCase() + why, 'error');
  }
  render();
}

// "Sent to the office" once every endpoint has the event. Only the latest tap is watched (it is
// the one the page shows): a day offline does not pile up pollers.
async function watch(sequence, t) {
  const mine = ++ui.watchToken;
  while (mine === ui.watchToken) {
    await new Promise((ok) => setTimeout(ok, 1500));
    if (mine !== ui.watchToken) return;
    const r = await getJson('/api/v1/deliveries/' + sequence).catch(() => null);
    if (r && r.status === 200 && r.body.sent) {
      if (mine === ui.watchToken) say(T('say.sent') + label(t), 'saved');
      return;
    }
  }
}

async function tap(status, event, files, route) {
  if (ui.busy || (!ui.job && !route)) return;
  ui.busy = true;
  ui.watchToken++; // the previous tap's "Sent" would now say the wrong thing
  render();
  const t = { key: newKey(), job: route ? null : ui.job, route: !!route, event: Object.assign({ status }, event), files: files || [], at: Date.now() };
  say(T('say.saving'));
  // Kept before it is sent: a reload from here on sends it again with the same key.
  try { await pendingPut(t); } catch (_) { /* private mode: still sent, just not kept */ }
  await send(t);
}

// ---- what the page shows ---------------------------------------------------------------------

function stopOf(job) { return ui.stops.find((s) => s.job_id === job); }

function render() {
  const s = stopOf(ui.job);
  $('#job-title').textContent = s ? '#' + s.sequence + ' ' + (s.name || s.job_id) : (ui.job || T('job.none'));
  $('#job-detail').textContent = s ? [s.address, s.job_id, T('state.' + s.state)].filter(Boolean).join(' · ') : '';
  for (const b of document.querySelectorAll('#actions button')) b.disabled = ui.busy || !ui.job;
  $('#pod-save').disabled = ui.busy;
  renderDay();
  $('#fail-save').disabled = ui.busy;
  renderStops();
}

// The stop list is updated in place, one button per job kept from render to render: the list is
// rendered again every refresh (2 s), and a button replaced between the finger going down and
// coming up takes no click, so a tap landing on a refresh would be lost and the driver would have
// to tap twice.
function renderStops() {
  const list = $('#stops');
  const kept = new Map([...list.children].map((li) => [li.firstChild.dataset.job, li]));
  const items = ui.stops.map((st) => {
    let li = kept.get(st.job_id);
    if (!li) {
      li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.job = st.job_id;
      const state = document.createElement('span');
      state.className = 'state';
      b.append(document.createElement('span'), state);
      b.onclick = () => { ui.job = b.dataset.job; ui.chosenByDriver = true; closeSheets(); render(); };
      li.append(b);
    }
    const b = li.firstChild;
    const [name, state] = b.children;
    setText(name, '#' + st.sequence + ' ' + (st.name || st.job_id));
    setText(state, st.state === 'done' && st.status ? T('status.' + st.status) : T('state.' + st.state));
    const pressed = String(st.job_id === ui.job);
    if (b.getAttribute('aria-pressed') !== pressed) b.setAttribute('aria-pressed', pressed);
    return li;
  });
  const same = items.length === list.children.length && items.every((li, i) => list.children[i] === li);
  if (!same) list.replaceChildren(...items);
}

function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

// The day: which route buttons make sense now, and how far it has come.
function renderDay() {
  const d = ui.day;
  const started = d && d.started_at, ended = d && d.ended_at, onBreak = d && d.on_break;
  const show = {
    started: !started,
    loading_done: !ended,
    unloading_done: !!started,
    break_started: started && !ended && !onBreak,
    break_ended: started && !ended && onBreak,
    ended: started && !ended,
  };
  for (const b of document.querySelectorAll('#day-actions button')) {
    b.hidden = !show[b.dataset.route];
    b.disabled = ui.busy;
  }
  const km = d && d.summary ? ' · ' + (d.summary.distance_m / 1000).toFixed(1) + ' km' : '';
  const since = started ? new Date(started).toLocaleTimeString(LANG, { hour: '2-digit', minute: '2-digit' }) : '';
  $('#day-state').textContent = !d ? '' : ended ? T('day.over') + km : onBreak ? T('day.on_break') + km
    : started ? T('day.under_way') + since + km : T('day.not_started');
}

function renderStatus(st) {
  const gps = $('#gps');
  const fix = st.gps.fix;
  gps.textContent = fix ? T('gps.ok') : T('gps.none');
  gps.className = 'badge ' + (fix ? 'ok' : 'bad');
  const link = $('#link');
  const hooks = st.webhooks || [];
  const waiting = hooks.reduce((n, w) => n + w.pending, 0);
  const offline = hooks.some((w) => !w.state.reachable);
  link.textContent = hooks.length === 0 ? T('office.none') : offline ? T('office.offline') + (waiting ? ' · ' + waiting + T('office.waiting') : '') : (waiting ? waiting + T('office.sending') : T('office.ok'));
  link.className = 'badge ' + (hooks.length === 0 ? '' : offline ? 'bad' : waiting ? 'wait' : 'ok');
  const n = st.next_stop;
  const next = $('#next');
  if (!n) { next.textContent = ui.stops.length ? T('next.done') : T('next.none'); return; }
  const far = n.distance_m == null ? '' : n.distance_m < 1000 ? Math.round(n.distance_m) + ' m' : (n.distance_m / 1000).toFixed(1) + ' km';
  const eta = n.eta ? T('next.about') + Math.max(1, Math.ceil(n.eta.seconds / 60)) + T('next.minutes') : '';
  next.replaceChildren();
  const head = document.createElement('div');
  head.textContent = T('next.head') + n.sequence;
  const big = document.createElement('div');
  big.className = 'big';
  big.textContent = n.name || n.job_id;
  const line = document.createElement('div');
  line.textContent = [n.address, far, eta].filter(Boolean).join(' · ');
  next.append(head, big, line);
  // Navigation to the stop: the phone's own app (geo:), or Google Maps or Waze by name.
  const st0 = stopOf(n.job_id);
  if (st0 && st0.lat != null && st0.lng != null) {
    const ll = st0.lat + ',' + st0.lng;
    const nav = document.createElement('div');
    nav.className = 'nav';
    for (const [label, href] of [
      [T('nav.go'), 'geo:' + ll + '?q=' + ll],
      ['Google Maps', 'https://www.google.com/maps/dir/?api=1&destination=' + ll],
      ['Waze', 'https://waze.com/ul?ll=' + ll + '&navigate=yes'],
    ]) {
      const a = document.createElement('a');
      a.href = href;
      a.rel = 'noreferrer';
      a.textContent = label;
      nav.append(a);
    }
    next.append(nav);
  }
  if (!ui.chosenByDriver && !ui.busy) ui.job = n.job_id;
}

async function refresh() {
  try {
    const st = await getJson('/api/v1/status');
    if (st.status === 401) { showPairing(); return; }
    $('#pair').hidden = true;
    $('#main').hidden = false;
    const stops = await getJson('/api/v1/stops');
    if (stops.status === 200) ui.stops = stops.body.stops;
    const day = await getJson('/api/v1/route');
    if (day.status === 200) ui.day = day.body;
    if (st.status === 200) renderStatus(st.body);
    render();
  } catch (_) {
    const link = $('#link');
    link.textContent = T('van.unreachable');
    link.className = 'badge bad';
  }
}

// ---- the forms -------------------------------------------------------------------------------

function closeSheets() {
  $('#pod').hidden = true;
  $('#fail').hidden = true;
}

function openPod(status) {
  closeSheets();
  const f = $('#pod');
  f.reset();
  f.dataset.status = status;
  $('#pod-title').textContent = T('status.' + status);
  $('#pod-error').textContent = '';
  sig.clear();
  const items = $('#items');
  items.replaceChildren();
  items.hidden = status !== 'partially_delivered';
  if (!items.hidden) {
    const s = stopOf(ui.job);
    const list = s && s.items && s.items.length ? s.items : [{ sku: 'parcels', desc: T('pod.parcels'), qty: 1 }];
    const head = document.createElement('label');
    head.textContent = T('pod.rejected');
    items.append(head);
    list.forEach((it, i) => {
      const row = document.createElement('div');
      row.className = 'items-row';
      const name = document.createElement('label');
      name.htmlFor = 'rej-' + i;
      name.textContent = (it.desc || it.sku) + ' (' + it.qty + ')';
      const n = document.createElement('input');
      n.type = 'number'; n.min = '0'; n.max = String(it.qty); n.value = '0'; n.id = 'rej-' + i;
      n.dataset.sku = it.sku; n.dataset.qty = String(it.qty);
      row.append(name, n);
      items.append(row);
    });
  }
  f.hidden = false;
  f.scrollIntoView({ block: 'start' });
}

function files(input, part) {
  return Array.from(input.files || []).map((file, i) => ({ part, blob: file, filename: file.name || part + '-' + (i + 1) }));
}

// The signature pad: pointer strokes on a canvas, sent as a PNG.
const sig = (() => {
  const c = $('#signature');
  const g = c.getContext('2d');
  let drawing = false;
  let signed = false;
  const at = (e) => {
    const r = c.getBoundingClientRect();
    return [(e.clientX - r.left) * (c.width / r.width), (e.clientY - r.top) * (c.height / r.height)];
  };
  c.addEventListener('pointerdown', (e) => {
    drawing = true;
    c.setPointerCapture(e.pointerId);
    g.lineWidth = 5; g.lineCap = 'round'; g.lineJoin = 'round'; g.strokeStyle = '#000';
    g.beginPath();
    g.moveTo(...at(e));
    e.preventDefault();
  });
  c.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    g.lineTo(...at(e));
    g.stroke();
    signed = true;
  });
  const end = () => { drawing = false; };
  c.addEventListener('pointerup', end);
  c.addEventListener('pointercancel', end);
  return {
    clear() { g.clearRect(0, 0, c.width, c.height); signed = false; },
    signed: () => signed,
    png: () => new Promise((ok) => c.toBlob(ok, 'image/png')),
  };
})();

$('#sig-clear').onclick = () => sig.clear();
$('#pod-cancel').onclick = closeSheets;
$('#fail-cancel').onclick = closeSheets;

$('#pod').onsubmit = async (e) => {
  e.preventDefault();
  if (ui.busy) return;
  const f = e.target;
  const status = f.dataset.status;
  const s = stopOf(ui.job) || {};
  const req = s.requires || {};
  const photos = files($('#pod-photos'), 'photo');
  if (req.photo && photos.length === 0) { $('#pod-error').textContent = T('pod.needs_photo'); return; }
  if (req.signature && !sig.signed()) { $('#pod-error').textContent = T('pod.needs_signature'); return; }
  const event = {};
  const by = $('#received-by').value.trim();
  const note = $('#pod-note').value.trim();
  if (by) event.received_by = by;
  if (note) event.note = note;
  if (status === 'partially_delivered') {
    event.items = Array.from(document.querySelectorAll('#items input')).map((n) => ({
      sku: n.dataset.sku, qty: Number(n.dataset.qty), rejected: Math.min(Number(n.value) || 0, Number(n.dataset.qty)),
    }));
  }
  const parts = photos;
  if (sig.signed()) parts.push({ part: 'signature', blob: await sig.png(), filename: 'signature.png' });
  await tap(status, event, parts);
};

$('#fail').onsubmit = async (e) => {
  e.preventDefault();
  if (ui.busy) return;
  const reason = new FormData(e.target).get('reason_code');
  if (!reason) { $('#fail-error').textContent = T('fail.choose'); return; }
  const event = { reason_code: reason };
  const note = $('#fail-note').value.trim();
  if (note) event.note = note;
  await tap('failed', event, files($('#fail-photo'), 'photo'));
};

for (const b of document.querySelectorAll('#actions button')) {
  b.onclick = () => {
    const status = b.dataset.status;
    if (status === 'delivered' || status === 'partially_delivered') openPod(status);
    else if (status === 'failed') { closeSheets(); $('#fail').reset(); $('#fail-error').textContent = ''; $('#fail').hidden = false; }
    else tap(status, {}, []);
  };
}

for (const b of document.querySelectorAll('#day-actions button')) {
  b.onclick = () => tap(b.dataset.route, {}, [], true);
}

// ---- pairing ---------------------------------------------------------------------------------

function showPairing() {
  $('#main').hidden = true;
  $('#pair').hidden = false;
}

$('#pair-form').onsubmit = async (e) => {
  e.preventDefault();
  const code = $('#pair-code').value.trim();
  const r = await fetch('/api/v1/pair', {
    method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code }),
  }).catch(() => null);
  if (r && r.ok) { $('#pair-error').textContent = ''; refresh(); return; }
  let why = T('pair.unreachable');
  if (r) { try { why = (await r.json()).error; } catch (_) { why = T('say.answered') + r.status; } }
  $('#pair-error').textContent = T('pair.failed') + why;
};

// ---- start -----------------------------------------------------------------------------------

$('#lang').onchange = (e) => {
  LANG = e.target.value;
  try { localStorage.setItem('curbside.lang', LANG); } catch (_) { /* private mode */ }
  applyStrings();
  render();
  refresh();
};

(async () => {
  await loadStrings();
  await refresh();
  // Taps still waiting for an answer (the page was reloaded, or the Wi-Fi dropped): send them
  // again under their own keys.
  const left = await pendingAll().catch(() => []);
  for (const t of left) {
    ui.busy = true;
    if (!t.route) {
      ui.job = t.job;
      ui.chosenByDriver = true;
    }
    render();
    say(T('say.sending_again'));
    await send(t);
  }
  setInterval(refresh, 2000);
})();
