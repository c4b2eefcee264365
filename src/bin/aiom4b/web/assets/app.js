// aiom4b's page: plain ES module, no build step. Reads and writes only through /api/v1 (JSON)
// and /api/v1/events (Server-Sent Events). Views are chosen by the URL's hash, so reload and
// the back button work. No inline script or style anywhere (the CSP forbids both).

const $ = (sel, root = document) => root.querySelector(sel);
const view = () => $('#view');

// ---------------------------------------------------------------------------------------------
// Small helpers

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const enc = (p) => encodeURIComponent(p);
function bytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function clock(s) {
  if (s === null || s === undefined || !isFinite(s)) return '–';
  s = Math.max(0, Math.round(s));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return (hh ? `${hh}:${String(mm).padStart(2, '0')}` : `${mm}`) + `:${String(ss).padStart(2, '0')}`;
}
const when = (t) => (t ? new Date(t).toLocaleString() : '–');
// What the files are, by content: "MP3", "M4A AAC", "MP3, M4A AAC" (most files first).
function formats(tracks) {
  const n = new Map();
  for (const t of tracks) {
    const f = (t.info.format || 'mp3').toUpperCase();
    const c = (t.info.codec || '').toUpperCase();
    const k = c && c !== f ? `${f} ${c}` : f;
    n.set(k, (n.get(k) || 0) + 1);
  }
  return [...n.entries()].sort((a, b) => b[1] - a[1]).map(([k]) => k).join(', ');
}

const trackSecs = (t) => (t.info.exact_samples && t.info.sample_rate
  ? t.info.exact_samples / t.info.sample_rate
  : t.info.duration.secs + t.info.duration.nanos / 1e9);

function csrf() {
  const c = document.cookie.split('; ').find((x) => x.startsWith('aiom4b_csrf='));
  return c ? c.slice('aiom4b_csrf='.length) : '';
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `the service answered ${status}`);
    this.status = status;
    this.code = e.code || 'error';
    this.remedy = e.remedy || '';
  }
}

// `raw`: a Blob or File sent as it is (a cover upload) instead of `body` as JSON.
async function api(method, path, body, raw) {
  const headers = { Accept: 'application/json' };
  const opts = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf();
  if (raw !== undefined) {
    headers['Content-Type'] = raw.type || 'application/octet-stream';
    opts.body = raw;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(`/api/v1${path}`, opts);
  } catch (e) {
    throw new ApiError(0, { error: { message: 'the service cannot be reached', remedy: 'check that aiom4b serve is running, then reload' } });
  }
  if (r.status === 204) return null;
  const j = await r.json().catch(() => null);
  if (r.status === 401) { showLogin(); location.hash = '#/login'; }
  if (!r.ok) throw new ApiError(r.status, j);
  return j;
}

function errorBox(e) {
  return h('div', { class: 'error-box', role: 'alert' },
    h('strong', { class: 'error' }, e.message || String(e)),
    e.remedy ? h('p', { class: 'remedy' }, `What to do: ${e.remedy}`) : null);
}

function showError(target, e) {
  target.replaceChildren(errorBox(e));
}

// A notice at the top of the view that does not replace it (an action that failed).
function flash(e) {
  const old = $('#flash');
  if (old) old.remove();
  const box = errorBox(e);
  box.id = 'flash';
  view().prepend(box);
}

// A notice at the top of the view that an action worked (not styled as an error).
function notice(text) {
  const old = $('#flash');
  if (old) old.remove();
  view().prepend(h('p', { class: 'notice', id: 'flash', role: 'status' }, text));
}

function showLogin() {
  $('#login-view').hidden = false;
  view().hidden = true;
  $('#login-failed').hidden = !location.search.includes('login=failed');
}

// ---------------------------------------------------------------------------------------------
// Live progress: one EventSource for all jobs. `live` keeps the last state of each job seen.

const live = new Map();
let source = null;
let sseEvents = 0;

function liveRow(id) {
  const s = live.get(id);
  const pct = Math.round((s.fraction || 0) * 1000) / 10;
  const name = s.name || id.slice(0, 8);
  return h('div', { class: 'job-live', 'data-job': id },
    h('div', { class: 'line' },
      h('a', { href: `#/jobs/${id}` }, name),
      h('span', { class: `status-${s.status}` }, s.stage ? `${s.status} · ${s.stage}` : s.status)),
    h('progress', { max: 100, value: pct, 'aria-label': `Progress of ${name}` }, `${pct} %`),
    h('div', { class: 'line meta' },
      h('span', { class: 'pct' }, `${pct.toFixed(1)} %`),
      h('span', {}, s.realtime ? `${s.realtime.toFixed(1)} × realtime` : ''),
      h('span', {}, s.eta !== null && s.eta !== undefined ? `ETA ${clock(s.eta)}` : '')));
}

function renderActive() {
  const box = $('#active');
  const ids = [...live.keys()].filter((id) => ['pending', 'processing'].includes(live.get(id).status));
  box.replaceChildren(...ids.map(liveRow));
  // The job view shows its own bar; keep it in step.
  const panel = $('#job-progress');
  if (panel) {
    const id = panel.dataset.job;
    if (live.has(id)) panel.replaceChildren(liveRow(id));
    panel.dataset.events = String(sseEvents);
  }
}

function seed(job) {
  const prev = live.get(job.id) || {};
  live.set(job.id, {
    ...prev,
    status: job.status,
    fraction: Math.max(prev.fraction || 0, (job.progress_percent || 0) / 100),
    name: job.output_name || (job.source_folders[0] || '').split('/').pop(),
  });
}

function onEvent(ev) {
  let msg;
  try { msg = JSON.parse(ev.data); } catch { return; }
  sseEvents++;
  const id = msg.job_id;
  const s = live.get(id) || { status: 'pending', fraction: 0 };
  const d = msg.data || {};
  switch (msg.event) {
    case 'started': s.status = 'processing'; break;
    case 'step': s.stage = d.step; s.status = 'processing'; break;
    case 'stage': s.stage = d.stage; break;
    case 'progress':
      s.status = 'processing';
      s.fraction = d.fraction;
      s.realtime = d.realtime_factor;
      s.eta = d.eta_secs;
      break;
    case 'finished':
      s.status = d.job.status;
      if (d.job.status === 'completed') s.fraction = 1;
      s.eta = 0;
      s.job = d.job;
      break;
    default: break;
  }
  live.set(id, s);
  renderActive();
  if (openLog && openLog.dataset.job === id && openLog.isConnected) openLog.refresh();
  if (msg.event === 'finished') document.dispatchEvent(new CustomEvent('job-finished', { detail: d.job }));
}

function connect() {
  if (source) source.close();
  source = new EventSource('/api/v1/events');
  for (const name of ['started', 'step', 'stage', 'planned', 'progress', 'finding', 'retrying', 'finished']) {
    source.addEventListener(name, onEvent);
  }
  source.addEventListener('error', () => {
    // The service went away (a restart): start afresh once it answers, and catch up from the
    // jobs' stored state (a new process numbers its events from 1 again).
    source.close();
    source = null;
    setTimeout(async () => { await catchUp().catch(() => {}); connect(); }, 2000);
  });
}

async function catchUp() {
  for (const status of ['processing', 'pending']) {
    const r = await api('GET', `/jobs?status=${status}&per_page=100`);
    for (const j of r.jobs) seed(j);
  }
  renderActive();
}

// ---------------------------------------------------------------------------------------------
// Library

const lib = { folders: [], plans: new Map(), selected: new Set(), text: '', sort: 'name' };

async function library() {
  view().replaceChildren(h('h1', {}, 'Library'), h('p', { class: 'loading' }, 'Reading the book folders…'));
  let r;
  try {
    r = await api('GET', '/folders');
  } catch (e) { return showError(view(), e); }
  lib.folders = r.folders;
  renderLibrary();
  loadPlans();
}

function sorted() {
  const t = lib.text.toLowerCase();
  const list = lib.folders.filter((f) => f.path.toLowerCase().includes(t));
  const key = {
    name: (f) => f.path.toLowerCase(),
    size: (f) => -f.size_bytes,
    changed: (f) => -(new Date(f.last_modified || 0).getTime()),
    files: (f) => -f.mp3_count,
  }[lib.sort];
  return list.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function badges(f) {
  const out = [];
  if (f.job && f.job.status === 'completed') out.push(h('a', { class: 'badge ok', href: `#/jobs/${f.job.id}` }, 'converted'));
  else if (f.job) out.push(h('a', { class: `badge status-${f.job.status}`, href: `#/jobs/${f.job.id}` }, f.job.status));
  const p = lib.plans.get(f.path);
  if (p && p.error) out.push(h('span', { class: 'badge bad', title: p.error.message }, 'has problems'));
  else if (p && p.findings.some((x) => x.severity !== 'info')) out.push(h('span', { class: 'badge warn' }, 'has problems'));
  return out;
}

function renderLibrary() {
  const list = sorted();
  const convertBtn = h('button', {
    class: 'primary', id: 'convert-selected', disabled: lib.selected.size === 0,
    onclick: convertSelected,
  }, `Convert selected (${lib.selected.size})`);
  const toolbar = h('div', { class: 'toolbar' },
    h('label', {}, 'Search', h('input', {
      type: 'search', id: 'search', value: lib.text, placeholder: 'Author or title',
      oninput: (e) => { lib.text = e.target.value; renderList(); },
    })),
    h('label', {}, 'Sort by', h('select', {
      id: 'sort', onchange: (e) => { lib.sort = e.target.value; renderList(); },
    }, ...[['name', 'Name'], ['changed', 'Last change'], ['size', 'Size'], ['files', 'Files']]
      .map(([v, t]) => h('option', { value: v, selected: lib.sort === v }, t)))),
    convertBtn);
  const ul = h('ul', { class: 'books', id: 'books', 'aria-label': 'Book folders' });
  function renderList() {
    const items = sorted().map((f) => {
      const p = lib.plans.get(f.path);
      const dur = p && !p.error ? clock(p.tracks.reduce((a, t) => a + trackSecs(t), 0)) : '…';
      const box = h('input', {
        type: 'checkbox', checked: lib.selected.has(f.path), 'aria-label': `Select ${f.path}`,
        onchange: (e) => {
          if (e.target.checked) lib.selected.add(f.path); else lib.selected.delete(f.path);
          convertBtn.disabled = lib.selected.size === 0;
          convertBtn.textContent = `Convert selected (${lib.selected.size})`;
        },
      });
      return h('li', { class: 'book', 'data-path': f.path },
        box,
        h('img', { src: `/thumb/${enc(f.path)}`, alt: '', loading: 'lazy', width: 60, height: 60 }),
        h('div', {},
          h('a', { class: 'name', href: `#/book/${enc(f.path)}` }, f.path), ...badges(f),
          h('div', { class: 'meta' },
            `${f.mp3_count} MP3 · ${dur} · ${bytes(f.size_bytes)} · changed ${when(f.last_modified)}`)));
    });
    ul.replaceChildren(...items);
    if (!items.length) {
      ul.replaceChildren(h('li', { class: 'empty' }, lib.folders.length
        ? 'No book matches the search.'
        : 'No book folders under SOURCE_DIR. Put each book in a folder of its own there (or set SOURCE_DIR), then reload.'));
    }
  }
  lib.renderList = renderList;
  view().replaceChildren(h('h1', {}, 'Library'), toolbar, ul);
  renderList();
}

// Durations and findings need each folder's plan; read them one after another so a large
// library does not start hundreds of probes at once.
async function loadPlans() {
  for (const f of lib.folders) {
    if (lib.plans.has(f.path)) continue;
    if (location.hash && location.hash !== '#/') return; // the library was left
    try {
      lib.plans.set(f.path, await api('GET', `/folders/${enc(f.path)}/plan`));
    } catch (e) {
      lib.plans.set(f.path, { error: e });
    }
    if (lib.renderList) lib.renderList();
  }
}

async function convertSelected() {
  const folders = [...lib.selected].map((path) => ({ path }));
  try {
    const r = await api('POST', '/convert', { folders });
    for (const j of r.jobs) seed(j);
    lib.selected.clear();
    renderActive();
    location.hash = '#/jobs';
  } catch (e) { flash(e); }
}

// ---------------------------------------------------------------------------------------------
// Book: the plan, editable, and Convert with exactly what is shown

const META = [
  ['title', 'Title'], ['author', 'Author'], ['narrator', 'Narrator'], ['series', 'Series'],
  ['series_part', 'Part'], ['year', 'Year'], ['genre', 'Genre'], ['description', 'Description'],
];

// The cover picker of the book view: the plan's cover, the folder's other images, uploads and
// "no cover" as radio buttons (arrow keys move between them), with a large preview of the
// chosen one. `picker.choice()` is what Convert sends: exactly the one shown.
function coverPicker(path, images, imagesError) {
  const thumb = `/thumb/${enc(path)}`;
  const imageUrl = (name) => `/api/v1/folders/${enc(path)}/images/${enc(name)}`;
  const choices = [];
  const planned = images.planned;
  if (planned && planned.kind === 'embedded') {
    choices.push({ key: 'embedded', label: 'Embedded in the MP3s', detail: `from ${planned.file}`, src: thumb, send: null, picked: true });
  }
  for (const im of images.images) {
    const size = im.width && im.height ? `${im.width}×${im.height} · ` : '';
    choices.push({
      key: `folder:${im.name}`, label: im.name, src: imageUrl(im.name), picked: im.picked,
      detail: `${size}${bytes(im.size_bytes)}${im.picked ? ' · found by the plan' : ''}`,
      send: { kind: 'folder', name: im.name },
    });
  }
  if (planned && !choices.some((c) => c.picked)) {
    choices.push({ key: 'plan', label: "The plan's cover", detail: '', src: thumb, send: null, picked: true });
  }
  choices.push({ key: 'none', label: 'No cover', detail: 'the book gets none', src: null, send: { kind: 'none' } });
  let current = (choices.find((c) => c.picked) || choices[choices.length - 1]).key;

  const preview = h('img', { id: 'cover-preview', alt: 'Chosen cover', width: 120, height: 120 });
  const noneText = h('p', { class: 'meta', id: 'cover-none' }, 'No cover');
  const list = h('div', { class: 'cover-list', id: 'cover-list' });
  const status = h('p', { class: 'meta', id: 'cover-status', 'aria-live': 'polite' });

  function show() {
    const c = choices.find((x) => x.key === current);
    preview.hidden = !c.src;
    noneText.hidden = !!c.src;
    if (c.src) preview.src = c.src;
    preview.alt = `Chosen cover: ${c.label}`;
  }
  function render() {
    list.replaceChildren(...choices.map((c, i) => {
      const id = `cover-choice-${i}`;
      return h('label', { class: 'cover-choice', for: id },
        h('input', {
          type: 'radio', name: 'cover', id, value: c.key, checked: c.key === current,
          'data-cover': c.key,
          onchange: () => { current = c.key; show(); },
        }),
        c.src ? h('img', { src: c.src, alt: '', width: 48, height: 48, loading: 'lazy' }) : h('span', { class: 'no-img', 'aria-hidden': 'true' }, '∅'),
        h('span', {}, c.label, c.detail ? h('span', { class: 'meta' }, ` ${c.detail}`) : null));
    }));
    show();
  }

  const file = h('input', {
    type: 'file', id: 'cover-file', accept: 'image/jpeg,image/png',
    onchange: async () => {
      const f = file.files[0];
      if (!f) return;
      status.textContent = `Uploading ${f.name}…`;
      // A preview at once, from the file itself (a data: URL: the page's CSP allows no blob:).
      const local = await new Promise((resolve) => {
        const r = new FileReader();
        r.onload = () => resolve(r.result);
        r.onerror = () => resolve(null);
        r.readAsDataURL(f);
      });
      if (local) { preview.hidden = false; noneText.hidden = true; preview.src = local; }
      try {
        const r = await api('POST', '/covers', undefined, f);
        const key = `upload:${r.id}`;
        if (!choices.some((c) => c.key === key)) {
          choices.splice(choices.length - 1, 0, {
            key, label: `Uploaded: ${f.name}`, src: r.url,
            detail: `${r.width && r.height ? `${r.width}×${r.height} · ` : ''}${bytes(r.size_bytes)}`,
            send: { kind: 'upload', id: r.id },
          });
        }
        current = key;
        status.textContent = `${f.name} uploaded and chosen.`;
        render();
      } catch (e) {
        status.textContent = '';
        show();
        flash(e);
      } finally {
        file.value = '';
      }
    },
  });
  render();
  const el = h('fieldset', { class: 'cover-picker' },
    h('legend', {}, 'Cover'),
    h('div', { class: 'cover' }, preview, noneText),
    imagesError ? errorBox(imagesError) : null,
    list,
    h('label', { for: 'cover-file', class: 'upload' }, 'Upload a cover (JPEG or PNG, up to 10 MiB)', file),
    status);
  return { el, choice: () => choices.find((c) => c.key === current).send };
}

async function book(path) {
  view().replaceChildren(h('h1', {}, path), h('p', { class: 'loading' }, 'Reading the files…'));
  let plan;
  let images = { images: [], planned: null };
  let imagesError = null;
  try {
    [plan, images] = await Promise.all([
      api('GET', `/folders/${enc(path)}/plan`),
      api('GET', `/folders/${enc(path)}/images`).catch((e) => { imagesError = e; return images; }),
    ]);
  } catch (e) {
    return view().replaceChildren(h('h1', {}, 'This book cannot be shown'), errorBox(e),
      h('p', {}, h('a', { href: '#/' }, 'Back to the library')));
  }
  const cover = coverPicker(path, images, imagesError);
  const tracks = plan.tracks.map((t) => ({ rel: t.rel_path, secs: trackSecs(t), title: t.chapter_title }));
  const outputDefault = plan.output_path.split('/').pop().replace(/\.m4b$/, '');

  const metaFields = META.map(([k, label]) => {
    const id = `meta-${k}`;
    const input = k === 'description'
      ? h('textarea', { id, name: k }, plan.metadata[k] || '')
      : h('input', { id, name: k, value: plan.metadata[k] || '' });
    return h('label', { for: id }, label, input);
  });
  const output = h('input', { id: 'output-name', value: outputDefault });
  // Parts that are all AAC in MP4 may be copied instead of re-encoded (the engine decides
  // whether they allow it, and the job page says what it did and why).
  const allAac = plan.tracks.length > 0
    && plan.tracks.every((t) => t.info.format === 'm4a' && t.info.codec === 'aac');
  const preset = h('select', { id: 'preset' },
    allAac ? h('option', { value: 'keep' }, 'Keep the parts\' AAC (copied, not re-encoded)') : null,
    h('option', { value: 'default' }, allAac ? 'Re-encode: AAC 128 kb/s stereo' : 'Default (AAC 128 kb/s stereo)'),
    h('option', { value: 'speech' }, 'Speech (64 kb/s mono)'),
    h('option', { value: 'source' }, 'Like the source'));
  const splitAt = h('input', { id: 'split-at', placeholder: 'e.g. 20h or 4GB', 'aria-describedby': 'split-help' });

  const tbody = h('tbody', { id: 'chapters' });
  const orderStatus = h('p', { class: 'sr', id: 'order-status', 'aria-live': 'polite' });
  // File order: drag a row by its handle (HTML5 drag and drop), or the ↑/↓ buttons, which
  // keep it keyboard operable. A row is draggable only while its handle is held, so text in
  // the title fields can still be selected with the mouse.
  let dragFrom = null;
  function renderTracks() {
    let start = 0;
    tbody.replaceChildren(...tracks.map((t, i) => {
      const row = h('tr', {
        'data-file': t.rel,
        ondragstart: (e) => {
          dragFrom = i;
          e.dataTransfer.effectAllowed = 'move';
          e.dataTransfer.setData('text/plain', t.rel);
          row.classList.add('dragging');
        },
        ondragover: (e) => {
          if (dragFrom === null) return;
          e.preventDefault();
          e.dataTransfer.dropEffect = 'move';
          row.classList.add('drop-target');
        },
        ondragleave: () => row.classList.remove('drop-target'),
        ondrop: (e) => {
          e.preventDefault();
          if (dragFrom !== null && dragFrom !== i) moveTo(dragFrom, i);
          dragFrom = null;
        },
        ondragend: () => {
          dragFrom = null;
          row.draggable = false;
          for (const r of tbody.rows) r.classList.remove('dragging', 'drop-target');
        },
      },
        h('td', { class: 'num' },
          h('span', {
            class: 'drag', title: 'Drag to move', 'aria-hidden': 'true',
            onmousedown: () => { row.draggable = true; },
            onmouseup: () => { row.draggable = false; },
          }, '⠿'), ' ', i + 1),
        h('td', { class: 'num' }, clock(start)),
        h('td', {}, h('input', {
          value: t.title, 'aria-label': `Chapter ${i + 1} title`, 'data-chapter': i + 1,
          oninput: (e) => { t.title = e.target.value; },
        })),
        h('td', { class: 'hide-phone' }, t.rel),
        h('td', { class: 'num' }, clock(t.secs)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', disabled: i === 0, 'aria-label': `Move ${t.rel} up`, onclick: () => move(i, -1) }, '↑'),
          h('button', { type: 'button', disabled: i === tracks.length - 1, 'aria-label': `Move ${t.rel} down`, onclick: () => move(i, 1) }, '↓')));
      start += t.secs;
      return row;
    }));
  }
  function moveTo(from, to) {
    const [t] = tracks.splice(from, 1);
    tracks.splice(to, 0, t);
    renderTracks();
    orderStatus.textContent = `${t.rel} is now file ${to + 1} of ${tracks.length}.`;
  }
  function move(i, d) {
    moveTo(i, i + d);
    const btn = tbody.rows[i + d].querySelectorAll('button')[d < 0 ? 0 : 1];
    if (btn && !btn.disabled) btn.focus();
  }
  renderTracks();

  const findings = plan.findings.length
    ? h('ul', { class: 'findings' }, ...plan.findings.map((f) => h('li', {},
      h('span', { class: `badge ${f.severity === 'info' ? 'ok' : f.severity === 'warning' ? 'warn' : 'bad'}` }, f.severity),
      ' ', f.message, f.path ? ` (${f.path.split('/').pop()})` : '',
      f.remedy ? h('div', { class: 'remedy' }, `What to do: ${f.remedy}`) : null)))
    : h('p', { class: 'meta' }, 'Nothing to report: the files look fine.');

  const total = tracks.reduce((a, t) => a + t.secs, 0);
  const convertBtn = h('button', { class: 'primary', id: 'convert', type: 'submit' }, 'Convert');
  const form = h('form', {
    id: 'book-form',
    onsubmit: async (e) => {
      e.preventDefault();
      convertBtn.disabled = true;
      const metadata = {};
      for (const [k] of META) {
        const v = $(`#meta-${k}`).value.trim();
        metadata[k] = v || null;
      }
      const body = {
        folders: [{
          path,
          output_name: output.value.trim() || null,
          metadata,
          order: tracks.map((t) => t.rel),
          chapters: tracks.map((t) => t.title),
          options: preset.value === 'keep'
            ? { audio: 'auto', split_at: splitAt.value.trim() || null }
            : {
              preset: preset.value,
              split_at: splitAt.value.trim() || null,
              // With AAC parts the default format is a choice to re-encode.
              ...(allAac ? { audio: 'encode' } : {}),
            },
        }],
      };
      const chosen = cover.choice();
      if (chosen) body.folders[0].cover = chosen;
      try {
        const r = await api('POST', '/convert', body);
        const job = r.jobs[0];
        seed(job);
        location.hash = `#/jobs/${job.id}`;
      } catch (err) {
        convertBtn.disabled = false;
        flash(err);
      }
    },
  },
  h('div', { class: 'grid2' },
    h('section', { class: 'card' },
      h('h2', {}, 'Metadata'),
      h('div', { class: 'fields' }, ...metaFields)),
    h('section', { class: 'card' },
      h('h2', {}, 'Output'),
      h('div', { class: 'fields' },
        h('label', { for: 'output-name' }, 'File name (.m4b is added)', output),
        h('label', { for: 'preset' }, 'Format', preset),
        h('label', { for: 'split-at' }, 'Split into parts longer than (optional)', splitAt),
        h('p', { class: 'meta', id: 'split-help' }, 'A book over this length or size is written as parts cut at chapters, for players that cannot handle very long books or FAT32 devices.')),
      h('p', { class: 'meta', id: 'plan-summary' }, `${tracks.length} files (${formats(plan.tracks)}) · ${clock(total)} · ${bytes(plan.tracks.reduce((a, t) => a + t.info.size_bytes, 0))}`),
      cover.el,
      h('h2', {}, 'Findings'), findings,
      h('div', { class: 'actions' }, convertBtn))),
  h('section', { class: 'card' },
    h('h2', {}, 'Chapters'),
    h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', { class: 'num' }, 'Starts'),
        h('th', {}, 'Chapter title'), h('th', { class: 'hide-phone' }, 'File'), h('th', { class: 'num' }, 'Length'),
        h('th', {}, h('span', { class: 'sr' }, 'Order')))),
      tbody)), orderStatus));
  view().replaceChildren(h('p', {}, h('a', { href: '#/' }, '← Library')), h('h1', {}, plan.metadata.title || path), form);
}

// ---------------------------------------------------------------------------------------------
// Jobs

const jobsState = { status: '', text: '', page: 1, per_page: 20 };

async function jobs() {
  const status = h('select', { id: 'job-status', onchange: (e) => { jobsState.status = e.target.value; jobsState.page = 1; load(); } },
    ...['', 'pending', 'processing', 'completed', 'failed', 'cancelled']
      .map((s) => h('option', { value: s, selected: jobsState.status === s }, s || 'all')));
  let timer = null;
  const text = h('input', {
    type: 'search', id: 'job-text', value: jobsState.text, placeholder: 'Folder, file or id',
    oninput: (e) => { clearTimeout(timer); timer = setTimeout(() => { jobsState.text = e.target.value; jobsState.page = 1; load(); }, 250); },
  });
  const age = h('select', { id: 'clear-age', 'aria-label': 'Age of jobs to clear' },
    ...['1d', '7d', '30d'].map((a) => h('option', { value: a, selected: a === '7d' }, `older than ${a}`)));
  const clear = h('button', {
    type: 'button', id: 'clear-jobs', onclick: async () => {
      try {
        const r = await api('POST', `/jobs/clear?older_than=${age.value}`);
        notice(`${r.archived} finished ${r.archived === 1 ? 'job' : 'jobs'} older than ${r.older_than} cleared.`);
        load();
      } catch (e) { flash(e); }
    },
  }, 'Clear old jobs');
  const table = h('div', { id: 'jobs-table', class: 'scroll' });
  const pager = h('div', { class: 'pager', id: 'pager' });
  view().replaceChildren(h('h1', {}, 'Jobs'),
    h('div', { class: 'toolbar' }, h('label', {}, 'Status', status), h('label', {}, 'Search', text),
      h('label', {}, 'Clear', age), clear),
    table, pager);

  // Only the answer to the latest request is shown (a slow one must not overwrite it).
  let latest = 0;
  async function load() {
    const mine = ++latest;
    const q = new URLSearchParams({ page: jobsState.page, per_page: jobsState.per_page });
    if (jobsState.status) q.set('status', jobsState.status);
    if (jobsState.text) q.set('text', jobsState.text);
    let r;
    try { r = await api('GET', `/jobs?${q}`); } catch (e) { if (mine === latest) showError(table, e); return; }
    if (mine !== latest) return;
    for (const j of r.jobs) if (['pending', 'processing'].includes(j.status)) seed(j);
    if (!r.jobs.length) {
      table.replaceChildren(h('p', { class: 'empty' }, r.total ? 'No job on this page.'
        : jobsState.status || jobsState.text ? 'No job matches.' : 'No jobs yet. Pick books in the library and convert them.'));
    } else {
      table.replaceChildren(h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Book'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Progress'),
          h('th', { class: 'hide-phone' }, 'Created'), h('th', { class: 'num hide-phone' }, 'Size'), h('th', {}, h('span', { class: 'sr' }, 'Actions')))),
        h('tbody', {}, ...r.jobs.map((j) => h('tr', { 'data-job': j.id },
          h('td', {}, h('a', { href: `#/jobs/${j.id}` }, j.output_name || j.source_folders.map((f) => f.split('/').pop()).join(', '))),
          h('td', { class: `status-${j.status}` }, j.status),
          h('td', { class: 'num' }, `${Math.round(j.progress_percent)} %`),
          h('td', { class: 'hide-phone' }, when(j.created_at)),
          h('td', { class: 'num hide-phone' }, bytes(j.output_bytes)),
          h('td', {}, j.download_url ? h('a', { href: j.download_url, download: '' }, 'Download') : ''))))));
    }
    const pages = Math.max(1, Math.ceil(r.total / r.per_page));
    pager.replaceChildren(
      h('button', { type: 'button', id: 'prev-page', disabled: jobsState.page <= 1, onclick: () => { jobsState.page--; load(); } }, 'Previous'),
      h('span', { id: 'page-info' }, `Page ${jobsState.page} of ${pages} · ${r.total} jobs`),
      h('button', { type: 'button', id: 'next-page', disabled: jobsState.page >= pages, onclick: () => { jobsState.page++; load(); } }, 'Next'));
  }
  await load();
}

// The job details' log: the job's own lines (GET /jobs/{id}/log), oldest first, in pages of
// LOG_PAGE. While the job runs, each of its Server-Sent Events asks for the lines written since
// (`next`), at most one request at a time and one every LOG_GAP_MS: no polling loop.
const LOG_PAGE = 200;
const LOG_GAP_MS = 500;
let openLog = null;

function logLine(l) {
  const level = String(l.level || '').toUpperCase();
  const fields = Object.entries(l.fields || {})
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  const t = new Date(l.time);
  return h('li', { class: `log-line level-${level.toLowerCase()}`, 'data-seq': l.seq },
    h('time', { datetime: l.time, title: l.time },
      isNaN(t) ? l.time : t.toLocaleTimeString([], { hour12: false, hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3 })),
    ' ', h('span', { class: 'level' }, level), ' ', h('span', { class: 'target' }, l.target),
    ' ', h('span', { class: 'msg' }, l.message),
    fields ? h('span', { class: 'log-fields' }, ` ${fields}`) : null);
}

function logPanel(id) {
  const list = h('ol', { class: 'log', id: 'job-log-lines', 'aria-label': 'Log lines of this job' });
  const state = h('p', { class: 'meta', id: 'job-log-state' }, 'Reading the log…');
  const more = h('button', { type: 'button', id: 'job-log-more', hidden: true, onclick: () => refresh() }, 'Show more lines');
  const box = h('section', { class: 'card', id: 'job-log', 'data-job': id }, h('h2', {}, 'Log'), state, list, more);
  let next = 0;
  let count = 0;
  let busy = false;
  let again = false;
  let last = 0;
  async function refresh() {
    if (busy) { again = true; return; }
    const wait = last + LOG_GAP_MS - Date.now();
    if (wait > 0) { busy = true; setTimeout(() => { busy = false; refresh(); }, wait); return; }
    busy = true;
    last = Date.now();
    try {
      const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
      // A few pages at once; more behind a button (a damaged book can log a line per frame).
      let full = false;
      for (let page = 0; page < 5; page++) {
        const r = await api('GET', `/jobs/${enc(id)}/log?after=${next}&limit=${LOG_PAGE}`);
        list.append(...r.lines.map(logLine));
        count += r.lines.length;
        next = r.next;
        full = r.lines.length === LOG_PAGE;
        if (!full) break;
      }
      more.hidden = !full;
      state.hidden = count > 0;
      state.textContent = count ? '' : 'No log lines for this job yet.';
      box.dataset.lines = String(count);
      if (atEnd) list.scrollTop = list.scrollHeight;
    } catch (e) {
      state.hidden = false;
      state.replaceChildren(errorBox(e));
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  box.refresh = refresh;
  return box;
}

function row(label, value) {
  return h('tr', {}, h('th', { scope: 'row' }, label), h('td', {}, value));
}

async function jobDetail(id) {
  let j;
  try { j = await api('GET', `/jobs/${enc(id)}`); } catch (e) {
    return view().replaceChildren(h('h1', {}, 'Job'), errorBox(e), h('p', {}, h('a', { href: '#/jobs' }, 'All jobs')));
  }
  const active = ['pending', 'processing'].includes(j.status);
  if (active) seed(j);
  const progress = h('div', { id: 'job-progress', class: 'progress', 'data-job': j.id, 'data-status': j.status });
  if (!active) {
    const pct = Math.round(j.progress_percent * 10) / 10;
    progress.append(h('progress', { max: 100, value: j.status === 'completed' ? 100 : pct, 'aria-label': 'Progress' }),
      h('span', { class: 'pct' }, `${j.status === 'completed' ? 100 : pct} %`));
  }
  const deleteOutput = h('input', { type: 'checkbox', id: 'delete-output' });
  const act = async (method, path, then) => {
    try { const r = await api(method, path); await then(r); } catch (e) { flash(e); }
  };
  const actions = h('div', { class: 'actions' },
    active ? h('button', { type: 'button', id: 'cancel', class: 'danger', onclick: () => act('POST', `/jobs/${j.id}/cancel`, () => jobDetail(id)) }, 'Cancel') : null,
    ['failed', 'cancelled'].includes(j.status) ? h('button', {
      type: 'button', id: 'retry', onclick: () => act('POST', `/jobs/${j.id}/retry`, (r) => { seed(r.job); location.hash = `#/jobs/${r.job.id}`; }),
    }, 'Retry') : null,
    j.download_url ? h('a', { href: j.download_url, id: 'download', download: '', class: 'button' }, 'Download') : null,
    j.status === 'completed' && j.download_url ? h('button', {
      type: 'button', id: 'match-open', onclick: () => matchDialog(j),
    }, 'Tag from Audible…') : null,
    !active ? h('span', {}, h('button', {
      type: 'button', id: 'delete', class: 'danger',
      onclick: () => act('DELETE', `/jobs/${j.id}${deleteOutput.checked ? '?delete_output=true' : ''}`, () => { location.hash = '#/jobs'; }),
    }, 'Delete'), ' ', h('label', {}, deleteOutput, ' and its output file')) : null);
  const dur = j.started_at && j.finished_at ? (new Date(j.finished_at) - new Date(j.started_at)) / 1000 : null;
  const details = h('table', {}, h('tbody', {},
    row('Status', h('span', { class: `status-${j.status}`, id: 'job-status-text' }, j.status)),
    row('Folders', j.source_folders.join(', ')),
    row('Output', j.parts && j.parts.length
      ? h('ol', { id: 'parts' }, ...j.parts.map((p) => h('li', {}, h('a', { href: p.download_url, download: '' }, p.name))))
      : (j.output_name || '–')),
    row('Created', when(j.created_at)), row('Started', when(j.started_at)), row('Finished', when(j.finished_at)),
    row('Took', dur !== null ? clock(dur) : '–'),
    row('Audio', clock(j.audio_duration_secs)),
    row('Audio path', j.audio
      ? h('span', { id: 'audio-path' }, j.audio.copied ? 'Copied, not re-encoded' : 'Encoded',
        h('span', { class: 'meta' }, ` — ${j.audio.why}`))
      : '–'),
    row('Sizes', `${bytes(j.input_bytes)} in → ${bytes(j.output_bytes)} out`),
    row('Attempts', j.attempts)));
  const err = j.error ? h('div', { class: 'error-box', role: 'alert' },
    h('strong', { class: 'error' }, `${j.error.category} error: ${j.error.message}`),
    h('p', { class: 'remedy' }, `What to do: ${j.error.remedy}`)) : null;
  const verify = h('section', { class: 'card', id: 'verify' });
  const log = logPanel(j.id);
  openLog = log;
  view().replaceChildren(h('p', {}, h('a', { href: '#/jobs' }, '← Jobs')),
    h('h1', {}, j.output_name || j.source_folders.map((f) => f.split('/').pop()).join(', ')),
    ...[err, progress, actions, h('section', { class: 'card details' }, details), verify, log].filter(Boolean));
  renderActive();
  log.refresh();
  if (j.status === 'completed' && j.download_url) {
    verify.append(h('h2', {}, 'Check of the written file'), h('p', { class: 'loading' }, 'Reading it back…'));
    try {
      const v = await api('GET', `/jobs/${j.id}/verify`);
      const s = v.summary;
      const marks = (s.chapter_track && s.chapter_track.chapters) || (s.chpl && s.chpl.chapters) || [];
      verify.replaceChildren(h('h2', {}, 'Check of the written file'),
        h('p', { class: v.ok ? 'status-completed' : 'error' }, v.ok ? 'The file checks out.' : `Problems: ${v.problems.join('; ')}`),
        h('p', { class: 'meta' }, `${s.codec} · ${s.sample_rate} Hz · ${s.channels} ch · ${clock(s.duration_secs)} · narrator ${s.tags.narrator || '–'}`),
        h('ol', { id: 'verify-chapters' }, ...marks.map((m) => h('li', {}, `${clock(m.start_secs)} ${m.title}`))));
    } catch (e) { showError(verify, e); }
  }
}

// ---------------------------------------------------------------------------------------------
// Tag a finished book from Audible: GET /match (candidates ranked against the book's own tags
// and exact length), a dry run of POST /jobs/{id}/tag showing what would change, then the tag.

const REGIONS = ['us', 'uk', 'de', 'fr', 'ca', 'au', 'in', 'it', 'es', 'jp'];

function hm(secs) {
  if (!secs) return '';
  const m = Math.round(secs / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

function matchDialog(j) {
  const old = $('#match-dialog');
  if (old) old.remove();
  const query = h('input', { id: 'match-query', type: 'search', placeholder: "the book's title" });
  const author = h('input', { id: 'match-author', type: 'text', placeholder: "the book's author" });
  const region = h('select', { id: 'match-region' }, ...REGIONS.map((r) => h('option', { value: r }, r)));
  const cover = h('input', { type: 'checkbox', id: 'match-cover', checked: true });
  const chapters = h('input', { type: 'checkbox', id: 'match-chapters', checked: true });
  const asin = h('input', {
    id: 'match-asin', type: 'text', maxlength: 10, autocomplete: 'off', spellcheck: 'false', placeholder: 'B002UZMLXM',
  });
  const results = h('div', { id: 'match-results', 'aria-live': 'polite' });
  const outcome = h('div', { id: 'match-outcome', 'aria-live': 'polite' });
  let tagged = false;
  const close = () => { dlg.close(); dlg.remove(); if (tagged) jobDetail(j.id); };
  const body = (a, dryRun) => ({ asin: a, region: region.value, cover: cover.checked, chapters: chapters.checked, dry_run: dryRun });

  const search = async (ev) => {
    ev.preventDefault();
    outcome.replaceChildren();
    results.replaceChildren(h('p', { class: 'loading' }, 'Searching Audible…'));
    const q = new URLSearchParams({ job: j.id, region: region.value });
    if (query.value.trim()) q.set('query', query.value.trim());
    if (author.value.trim()) q.set('author', author.value.trim());
    try {
      const m = await api('GET', `/match?${q}`);
      if (!m.candidates.length) {
        return results.replaceChildren(h('p', { class: 'notice' }, 'Audible has no candidates. Try other words, or another marketplace.'));
      }
      results.replaceChildren(
        h('p', { class: 'meta' }, `This book: ${m.local.title || '–'} · ${m.local.author || '–'} · ${hm(m.local.duration_secs)}`),
        h('ol', { id: 'match-candidates' }, ...m.candidates.map((c) => {
          const b = c.book;
          const series = b.series ? ` · ${b.series.name}${b.series.position ? ` #${b.series.position}` : ''}` : '';
          return h('li', { class: 'candidate' },
            h('div', {}, h('strong', {}, b.title), ` — ${b.authors.join(', ')}`),
            h('div', { class: 'meta' },
              `${b.narrators.length ? `read by ${b.narrators.join(', ')}` : ''}${series} · ${hm(b.runtime_secs)} · ${b.asin}`),
            h('div', {}, h('span', { class: 'score' }, `match ${Math.round(c.score * 100)} %`), ' ',
              h('button', { type: 'button', class: 'use', 'data-asin': b.asin, onclick: () => preview(b.asin) }, 'Use this')));
        })));
    } catch (e) { showError(results, e); }
  };

  const changesList = (r) => h('ul', { id: 'match-changes' },
    ...r.files.flatMap((f) => f.changes.map((c) => h('li', {}, r.files.length > 1 ? `${f.name}: ${c}` : c))));
  const warningsList = (r) => {
    const w = [...r.warnings, ...r.files.flatMap((f) => f.warnings)];
    return w.length ? h('ul', { class: 'warnings', id: 'match-warnings' }, ...w.map((x) => h('li', {}, x))) : null;
  };

  const preview = async (a) => {
    outcome.replaceChildren(h('p', { class: 'loading' }, `Reading ${a} and fitting its chapters to this audio…`));
    try {
      const r = await api('POST', `/jobs/${j.id}/tag`, body(a, true));
      const n = r.files.reduce((k, f) => k + f.changes.length, 0);
      outcome.replaceChildren(
        h('h3', {}, `${r.book.title} (${r.asin}): ${n ? `${n} change${n === 1 ? '' : 's'}` : 'nothing to change'}`),
        changesList(r), warningsList(r),
        h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'primary', id: 'match-apply', disabled: n === 0, onclick: () => apply(a) }, 'Write into the book')));
    } catch (e) { showError(outcome, e); }
  };

  const apply = async (a) => {
    outcome.replaceChildren(h('p', { class: 'loading' }, 'Writing…'));
    try {
      const r = await api('POST', `/jobs/${j.id}/tag`, body(a, false));
      tagged = true;
      const fit = r.files[0] && r.files[0].chapter_fit;
      outcome.replaceChildren(
        h('p', { class: 'status-completed', id: 'match-done', role: 'status' },
          `Written: ${r.book.title} (${r.asin})${fit ? ` · ${fit.chapters.length} chapters fitted (confidence ${Math.round(fit.confidence * 100)} %)` : ''}.`),
        changesList(r), warningsList(r));
    } catch (e) { showError(outcome, e); }
  };

  const dlg = h('dialog', { id: 'match-dialog', class: 'match', 'aria-labelledby': 'match-title' },
    h('h2', { id: 'match-title' }, 'Tag from Audible'),
    h('p', { class: 'meta' }, 'Title, authors, narrators, series, description, genres, year, publisher, ASIN, the cover and Audible\'s chapters fitted to this audio. The audio is not re-encoded.'),
    h('form', { id: 'match-form', onsubmit: search },
      h('label', { for: 'match-query' }, 'Search for'), query,
      h('label', { for: 'match-author' }, 'Author'), author,
      h('label', { for: 'match-region' }, 'Marketplace'), region,
      h('div', { class: 'checks' }, h('label', {}, cover, ' Audible\'s cover'), h('label', {}, chapters, ' Audible\'s chapters')),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'match-search' }, 'Search'))),
    h('form', {
      id: 'match-asin-form',
      onsubmit: (ev) => {
        ev.preventDefault();
        const a = asin.value.trim().toUpperCase();
        if (!/^[A-Z0-9]{10}$/.test(a)) return showError(outcome, { message: `${a || 'That'} is not an ASIN`, remedy: 'an ASIN has 10 letters and digits, e.g. B002UZMLXM' });
        preview(a);
      },
    }, h('label', { for: 'match-asin' }, 'Or by ASIN'), asin,
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'match-asin-go' }, 'Preview'))),
    results, outcome,
    h('div', { class: 'actions' }, h('button', { type: 'button', id: 'match-close', onclick: close }, 'Close')));
  dlg.addEventListener('cancel', (ev) => { ev.preventDefault(); close(); });
  document.body.append(dlg);
  dlg.showModal();
  query.focus();
}

document.addEventListener('job-finished', (e) => {
  const m = location.hash.match(/^#\/jobs\/(.+)$/);
  if (m && m[1] === e.detail.id) {
    setTimeout(() => jobDetail(m[1]), 300);
    // The job's last lines can reach the store just after its last event: look once more.
    setTimeout(() => { if (openLog && openLog.dataset.job === e.detail.id && openLog.isConnected) openLog.refresh(); }, 1500);
  }
});

// ---------------------------------------------------------------------------------------------
// Backups and stats

function chart(st) {
  // Finished jobs by outcome as bars: people look at the proportions rather than read them.
  const parts = [['completed', st.completed, 'ok'], ['failed', st.failed, 'bad'], ['cancelled', st.cancelled, 'warn'], ['pending', st.pending + st.processing, 'acc']];
  const max = Math.max(1, ...parts.map((p) => p[1]));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 520 130');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', parts.map((p) => `${p[0]} ${p[1]}`).join(', '));
  parts.forEach(([name, n, cls], i) => {
    const y = 8 + i * 30;
    const t = document.createElementNS(ns, 'text');
    t.setAttribute('x', 0); t.setAttribute('y', y + 15); t.textContent = name;
    const r = document.createElementNS(ns, 'rect');
    r.setAttribute('x', 90); r.setAttribute('y', y); r.setAttribute('height', 20);
    r.setAttribute('width', Math.max(2, (n / max) * 380)); r.setAttribute('class', cls);
    const c = document.createElementNS(ns, 'text');
    c.setAttribute('x', 96 + (n / max) * 380); c.setAttribute('y', y + 15); c.textContent = n;
    svg.append(t, r, c);
  });
  return h('div', { class: 'chart' }, svg);
}

async function backups() {
  view().replaceChildren(h('h1', {}, 'Backups & stats'), h('p', { class: 'loading' }, 'Loading…'));
  const statsBox = h('section', { class: 'card', id: 'stats' }, h('h2', {}, 'Stats'));
  const list = h('section', { class: 'card', id: 'backups' }, h('h2', {}, 'Backups'));
  view().replaceChildren(h('h1', {}, 'Backups & stats'), statsBox, list);
  try {
    const st = await api('GET', '/stats');
    statsBox.append(h('div', { class: 'stats' },
      h('div', { class: 'stat' }, h('b', {}, st.success_rate === null ? '–' : `${Math.round(st.success_rate * 100)} %`), 'success rate'),
      h('div', { class: 'stat' }, h('b', {}, st.realtime_factor ? `${st.realtime_factor.toFixed(1)} ×` : '–'), 'average speed (× realtime)'),
      h('div', { class: 'stat' }, h('b', {}, (st.audio_secs_total / 3600).toFixed(1)), 'hours converted'),
      h('div', { class: 'stat' }, h('b', {}, st.total), 'jobs')), chart(st));
  } catch (e) { statsBox.append(errorBox(e)); }
  try {
    const r = await api('GET', '/backups');
    if (!r.backups.length) {
      list.append(h('p', { class: 'empty' }, 'No backups yet. aiom4b makes one of a folder before a post-action changes it (BACKUP settings).'));
      return;
    }
    list.append(h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Backup'), h('th', { class: 'num' }, 'Files'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'State'), h('th', {}, h('span', { class: 'sr' }, 'Actions')))),
      h('tbody', {}, ...r.backups.map((b) => {
        const state = h('td', { class: 'state' }, b.damaged ? h('span', { class: 'error' }, `damaged: ${b.damaged}`) : 'complete');
        const to = h('input', { class: 'restore-to', 'aria-label': `New folder for ${b.name}`, value: `${(b.source || b.name).split('/').pop()} (restored)` });
        return h('tr', { 'data-backup': b.name },
          h('td', {}, b.name, h('div', { class: 'meta' }, when(b.created))),
          h('td', { class: 'num' }, b.files), h('td', { class: 'num' }, bytes(b.total_bytes)), state,
          h('td', { class: 'actions' },
            h('button', {
              type: 'button', class: 'verify', 'aria-label': `Verify ${b.name}`, onclick: async () => {
                try {
                  const v = await api('POST', `/backups/${enc(b.name)}/verify`);
                  state.replaceChildren(v.problems.length ? h('span', { class: 'error' }, v.problems.join('; ')) : `intact (${v.files_checked} files checked)`);
                } catch (e) { flash(e); }
              },
            }, 'Verify'),
            to,
            h('button', {
              type: 'button', class: 'restore', 'aria-label': `Restore ${b.name}`, onclick: async () => {
                try {
                  const r = await api('POST', `/backups/${enc(b.name)}/restore`, { to: to.value });
                  // The new folder is the restored book folder.
                  state.replaceChildren(`restored ${r.files} files to ${to.value}`);
                } catch (e) { flash(e); }
              },
            }, 'Restore')));
      })))));
  } catch (e) { list.append(errorBox(e)); }
}

// ---------------------------------------------------------------------------------------------
// Router

async function route() {
  const hash = location.hash || '#/';
  $('#login-view').hidden = true;
  view().hidden = false;
  const section = hash.startsWith('#/jobs') ? 'jobs' : hash.startsWith('#/backups') ? 'backups' : 'library';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  let m;
  if (hash === '#/login') showLogin();
  else if ((m = hash.match(/^#\/book\/(.+)$/))) await book(decodeURIComponent(m[1]));
  else if ((m = hash.match(/^#\/jobs\/(.+)$/))) await jobDetail(decodeURIComponent(m[1]));
  else if (hash === '#/jobs') await jobs();
  else if (hash === '#/backups') await backups();
  else await library();
  $('#main').focus({ preventScroll: true });
  document.body.dataset.ready = hash;
}

async function start() {
  let s = { token_required: false, authorized: true };
  try { s = await (await fetch('/session', { credentials: 'same-origin' })).json(); } catch { /* offline: the views say so */ }
  if (s.token_required && !s.authorized) {
    for (const el of document.querySelectorAll('nav, .logout')) el.hidden = true;
    showLogin();
    return;
  }
  if (!s.token_required) $('.logout').hidden = true;
  window.addEventListener('hashchange', route);
  route();
  catchUp().catch(() => {}).finally(connect);
}

start();
