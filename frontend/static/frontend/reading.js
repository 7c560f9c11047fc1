/* Okapi reading page: the project's schema as a form beside the OHIF viewer.
 *
 * Saves go to POST /api/v1/cases/{id}/read with the version they were edited from (base_version); the server's
 * answer is shown as it is (field errors beside their fields, conflicts with a reload). Time is counted only
 * while the page is visible and sent with each save. A segmentation saved from the viewer (DICOM SEG by
 * STOW-RS) becomes a new version of the read on the server: the page notices it and carries on from there.
 */
(function () {
  'use strict';
  var S = JSON.parse(document.getElementById('reading-state').textContent);
  var form = document.getElementById('read-form');
  var banner = document.getElementById('banner');
  var statusLine = document.getElementById('status');
  var segStatus = document.getElementById('seg-status');
  var timeLabel = document.getElementById('time-spent');
  var readUrl = '/api/v1/cases/' + S.case + '/read';
  var POLL_MS = 5000;

  var read = S.read;               // the server's current read, as last seen
  var dirty = false;               // edits not saved yet
  var busy = false;                // a save or a next-case request is on its way
  var closed = S.case_state === 'consensus';

  // --- time spent while visible ------------------------------------------------------------------------------
  var unsentMs = 0, totalMs = 0, visibleSince = document.visibilityState === 'visible' ? performance.now() : null;

  function tick() {
    if (visibleSince !== null) {
      var now = performance.now();
      unsentMs += now - visibleSince;
      totalMs += now - visibleSince;
      visibleSince = now;
    }
  }
  document.addEventListener('visibilitychange', function () {
    tick();
    visibleSince = document.visibilityState === 'visible' ? performance.now() : null;
  });
  function showTime() {
    tick();
    var s = Math.floor(totalMs / 1000);
    timeLabel.textContent = Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0');
  }
  setInterval(showTime, 1000);
  function takeSeconds() {
    tick();
    var seconds = Math.round(unsentMs) / 1000;
    unsentMs = 0;
    return seconds;
  }

  // --- the form <-> answers ----------------------------------------------------------------------------------
  function fieldset(key) { return form.querySelector('fieldset[data-key="' + key + '"]'); }

  function collect() {
    var answers = {};
    S.questions.forEach(function (q) {
      var inputs = Array.from(form.querySelectorAll('input[name="q-' + q.key + '"]'));
      if (q.type === 'multiple_choice') {
        var values = inputs.filter(function (i) { return i.checked; }).map(function (i) { return i.value; });
        if (values.length) answers[q.key] = values;
        return;
      }
      var chosen = inputs.find(function (i) { return i.checked; });
      if (!chosen) return;
      if (q.type === 'ordinal') answers[q.key] = parseInt(chosen.value, 10);
      else if (q.type === 'yes_no') answers[q.key] = chosen.value === 'yes';
      else answers[q.key] = chosen.value;
    });
    var body = { answers: answers };
    if (S.has_confidence) {
      var c = form.querySelector('input[name="confidence"]:checked');
      body.confidence = c ? parseInt(c.value, 10) : null;
    }
    if (S.free_text) body.free_text = document.getElementById('free-text').value;
    return body;
  }

  function fill(r) {
    S.questions.forEach(function (q) {
      var value = r.answers ? r.answers[q.key] : undefined;
      if (q.type === 'yes_no' && typeof value === 'boolean') value = value ? 'yes' : 'no';
      form.querySelectorAll('input[name="q-' + q.key + '"]').forEach(function (input) {
        input.checked = Array.isArray(value) ? value.includes(input.value)
          : value !== undefined && value !== null && String(value) === input.value;
      });
    });
    form.querySelectorAll('input[name="confidence"]').forEach(function (input) {
      input.checked = r.confidence !== null && r.confidence !== undefined && String(r.confidence) === input.value;
    });
    if (S.free_text) document.getElementById('free-text').value = r.free_text || '';
  }

  function sameContent(a, b) {
    return JSON.stringify([a.answers || {}, a.confidence ?? null, a.free_text || '']) ===
      JSON.stringify([b.answers || {}, b.confidence ?? null, b.free_text || '']);
  }

  // --- messages ------------------------------------------------------------------------------------------------
  function clearErrors() {
    banner.innerHTML = '';
    form.querySelectorAll('.field-error').forEach(function (p) { p.hidden = true; p.textContent = ''; });
    form.querySelectorAll('fieldset.invalid').forEach(function (f) { f.classList.remove('invalid'); });
  }

  function showBanner(kind, text, extra) {
    banner.innerHTML = '';
    var box = document.createElement('div');
    box.className = 'rd-banner ' + kind;
    var p = document.createElement('div');
    p.textContent = text;
    box.appendChild(p);
    if (extra) box.appendChild(extra);
    banner.appendChild(box);
  }

  function showFieldErrors(detail) {
    var list = document.createElement('ul');
    var first = null;
    Object.keys(detail || {}).forEach(function (path) {
      var message = Array.isArray(detail[path]) ? detail[path].join(' ') : String(detail[path]);
      var slot = document.getElementById('err-' + path);
      if (slot) {
        slot.textContent = message;
        slot.hidden = false;
        var box = slot.closest('fieldset');
        if (box) box.classList.add('invalid');
        first = first || (box ? box.querySelector('input') : document.getElementById('free-text'));
      }
      var li = document.createElement('li');
      li.textContent = path.replace(/^answers\./, '') + ': ' + message;
      list.appendChild(li);
    });
    return { list: list, first: first };
  }

  function showRead(r) {
    var what = r.state === 'submitted' ? 'Submitted' : r.state === 'draft' ? 'Draft saved' : 'Not saved yet';
    statusLine.textContent = r.version ? what + ' · version ' + r.version : what;
    if (segStatus) {
      segStatus.textContent = r.segmentation
        ? 'Segmentation attached to this read (DICOM SEG series ' + r.segmentation.series_uid + ').'
        : 'No segmentation attached yet.';
    }
  }

  function setDirty(value) {
    dirty = value;
    document.title = (dirty ? '• ' : '') + document.title.replace(/^• /, '');
  }

  // --- saving --------------------------------------------------------------------------------------------------
  async function fetchRead() {
    // Your read of the case (404 while you have saved none)
    var result = await Okapi.api('GET', readUrl);
    return result.ok ? result.data : null;
  }

  function adopt(r) {
    read = { version: r.version, state: r.state, answers: r.answers, confidence: r.confidence,
             free_text: r.free_text, segmentation: r.segmentation };
    showRead(read);
  }

  async function reloadFromServer() {
    if (dirty && !window.confirm('Discard your unsaved changes and load the saved read?')) return;
    var r = await fetchRead();
    if (r) {
      adopt(r);
      fill(read);
    }
    setDirty(false);
    clearErrors();
    statusLine.textContent += ' · reloaded';
  }

  async function save(submit, retried) {
    if (busy || closed) return;
    busy = true;
    clearErrors();
    statusLine.textContent = submit ? 'Submitting…' : 'Saving…';
    var body = collect();
    body.submit = submit;
    body.base_version = read.version;
    body.time_spent_seconds = takeSeconds();
    var result = await Okapi.api('POST', readUrl, body);
    busy = false;
    if (result.ok) {
      adopt(result.data);
      setDirty(false);
      if (submit) {
        showBanner('ok', 'Read submitted (version ' + result.data.version + '). Press n for the next case.');
        document.getElementById('next-case').focus();
      }
      return true;
    }
    unsentMs += body.time_spent_seconds * 1000;   // not recorded: send it with the next save
    var data = result.data || {};
    if (data.code === 'version_conflict' && !retried) {
      // A segmentation saved from the viewer makes a new version with the same answers: carry on from it.
      var current = await fetchRead();
      if (current && sameContent(current, read)) {
        adopt(current);
        return save(submit, true);
      }
    }
    showRead(read);
    if (data.code === 'invalid_read' || data.code === 'invalid') {
      var errors = showFieldErrors(data.detail);
      showBanner('error', Okapi.describe(result), errors.list);
      if (errors.first) errors.first.focus();
    } else if (data.code === 'version_conflict') {
      var reload = document.createElement('button');
      reload.type = 'button';
      reload.textContent = 'Reload the saved read';
      reload.addEventListener('click', reloadFromServer);
      showBanner('warn', Okapi.describe(result), reload);
      reload.focus();
    } else {
      showBanner('error', Okapi.describe(result));
    }
    return false;
  }

  // --- the segmentation saved from the viewer ------------------------------------------------------------------
  async function poll(now) {
    if (!now && (busy || document.visibilityState !== 'visible')) return;
    var r = await fetchRead();
    if (!r || r.version <= read.version || (busy && !now)) return;
    if (sameContent(r, read)) {
      var hadSeg = read.segmentation && read.segmentation.sop_instance_uid;
      adopt(r);
      if (r.segmentation && r.segmentation.sop_instance_uid !== hadSeg) {
        statusLine.textContent += ' · segmentation from the viewer attached';
      }
    } else if (!dirty) {
      adopt(r);
      fill(read);
      statusLine.textContent += ' · updated from another window';
    }
  }
  if (!closed && S.is_reader) setInterval(poll, POLL_MS);

  // --- segmentation in the viewer ------------------------------------------------------------------------------
  async function segAction(button, work, done) {
    if (busy || closed) return;
    button.disabled = true;
    clearErrors();
    try {
      var result = await work();
      segStatus.textContent = done(result);
    } catch (err) {
      showBanner('error', 'Segmentation: ' + err.message);
    } finally {
      button.disabled = false;
    }
  }
  var prepareButton = document.getElementById('seg-prepare');
  var saveSegButton = document.getElementById('seg-save');
  if (prepareButton) {
    prepareButton.addEventListener('click', function () {
      segAction(prepareButton, function () { return OkapiViewer.prepare(S.segments); }, function () {
        return 'Labels ready in the viewer: choose the Brush and paint (' +
          S.segments.map(function (s) { return s.name; }).join(', ') + ').';
      });
    });
    saveSegButton.addEventListener('click', function () {
      segAction(saveSegButton, async function () {
        segStatus.textContent = 'Saving the segmentation to Okapi…';
        var sop = await OkapiViewer.save(S.segments);
        await poll(true);
        return sop;
      }, function (sop) {
        return read.segmentation && read.segmentation.sop_instance_uid === sop
          ? 'Segmentation saved and attached to this read (version ' + read.version + ').'
          : 'Segmentation stored; waiting for Okapi to attach it…';
      });
    });
  }

  // --- next case -----------------------------------------------------------------------------------------------
  async function next() {
    if (busy) return;
    if (dirty && !window.confirm('You have unsaved changes on this case. Leave without saving them?')) return;
    busy = true;
    statusLine.textContent = 'Taking the next case…';
    var result = await Okapi.nextCase(S.project);
    busy = false;
    if (result.url) {
      setDirty(false);
      window.location.assign(result.url);
    } else if (result.error) {
      showBanner('error', result.error);
    } else {
      var link = document.createElement('a');
      link.href = '/reading/';
      link.textContent = 'Back to the worklist';
      showBanner('info', 'No case of this project needs your read right now.', link);
      link.focus();
    }
  }

  // --- keyboard ------------------------------------------------------------------------------------------------
  var questionBoxes = Array.from(form.querySelectorAll('fieldset.q'));

  function focusQuestion(box) {
    var input = box.querySelector('input:checked') || box.querySelector('input');
    if (input) input.focus();
  }

  function chooseByDigit(digit) {
    var active = document.activeElement;
    var box = active && active.closest ? active.closest('fieldset.q') : null;
    if (!box) {
      box = questionBoxes.find(function (b) { return !b.querySelector('input:checked'); }) || null;
    }
    if (!box) return false;
    var input = box.querySelector('input[data-digit="' + digit + '"]');
    if (!input || input.disabled) return false;
    if (input.type === 'checkbox') {
      input.checked = !input.checked;
      input.focus();
    } else {
      input.checked = true;
      var following = questionBoxes[questionBoxes.indexOf(box) + 1];
      if (following) focusQuestion(following); else document.getElementById('submit-read').focus();
    }
    setDirty(true);
    return true;
  }

  function onKey(event) {
    var ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && event.key === 'Enter') { event.preventDefault(); save(true); return; }
    if (ctrl && (event.key === 's' || event.key === 'S')) { event.preventDefault(); save(false); return; }
    if (ctrl || event.altKey || event.target.ownerDocument !== document || Okapi.isTyping(event.target)) return;
    var tag = event.target.tagName;
    if (event.key === 'Enter') {
      if (tag === 'BUTTON' || tag === 'A' || tag === 'SUMMARY') return;   // their own action
      event.preventDefault();
      save(true);
    } else if (/^[1-9]$/.test(event.key)) {
      if (chooseByDigit(event.key)) event.preventDefault();
    } else if (event.key === 's') {
      event.preventDefault();
      save(false);
    } else if (event.key === 'n') {
      event.preventDefault();
      next();
    } else if (event.key === '?') {
      var help = document.getElementById('shortcuts');
      help.open = !help.open;
    }
  }
  document.addEventListener('keydown', onKey);

  // Ctrl+S and Ctrl+Enter also work while the viewer (same origin) has the focus.
  var frame = document.getElementById('viewer');
  function hookViewerKeys() {
    try {
      var doc = frame.contentWindow.document;
      if (doc.okapiKeys || doc.URL === 'about:blank') return;
      doc.okapiKeys = true;
      doc.addEventListener('keydown', function (event) {
        if ((event.ctrlKey || event.metaKey) && (event.key === 'Enter' || event.key === 's' || event.key === 'S')) {
          event.preventDefault();
          save(event.key === 'Enter');
        }
      }, true);
    } catch (err) { /* a viewer on another origin keeps its keys */ }
  }
  if (frame) {
    frame.addEventListener('load', hookViewerKeys);
    hookViewerKeys();
  }

  // --- wiring --------------------------------------------------------------------------------------------------
  form.addEventListener('input', function () { setDirty(true); });
  form.addEventListener('change', function () { setDirty(true); });
  form.addEventListener('submit', function (event) { event.preventDefault(); save(true); });
  document.getElementById('save-draft').addEventListener('click', function () { save(false); });
  document.getElementById('next-case').addEventListener('click', next);
  window.addEventListener('beforeunload', function (event) {
    if (dirty) {
      event.preventDefault();
      event.returnValue = '';
    }
  });

  fill(read);
  showRead(read);
  if (closed) {
    form.querySelectorAll('input, textarea, #save-draft, #submit-read').forEach(function (el) { el.disabled = true; });
    showBanner('info', 'This case has its consensus: your read can no longer change.');
  } else if (!S.is_reader) {
    showBanner('warn', 'You are not a reader (radiologist) of this project: you can look, not read.');
  } else if (S.claim_expired) {
    showBanner('warn', 'Your claim on this case has expired: you can still save if nobody took your place.');
  } else if (!S.assignment || S.assignment === 'released') {
    showBanner('warn', 'This case is not assigned to you: take cases with "Next case".');
  } else if (read.state === 'submitted') {
    showBanner('ok', 'You submitted this read. You may correct it (submit again) until the case has its consensus.');
  }
  if (questionBoxes.length && !closed) focusQuestion(questionBoxes[0]);
})();
