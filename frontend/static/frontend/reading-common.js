/* Okapi reading pages: the REST API through the browser session (CSRF), errors as the server gives them. */
(function () {
  'use strict';

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && meta.content) return meta.content;
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : '';
  }

  /* fetch a JSON endpoint; resolves to {ok, status, data} and never throws for an HTTP error. */
  async function api(method, url, body) {
    var options = { method: method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method !== 'GET') options.headers['X-CSRFToken'] = csrfToken();
    if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    var response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      return { ok: false, status: 0, data: { code: 'network', message: 'Okapi could not be reached: ' + err.message } };
    }
    var data = null;
    var text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (err) { data = { code: 'http_' + response.status, message: text.slice(0, 300) }; }
    }
    if (!response.ok && !(data && data.message)) {
      data = { code: 'http_' + response.status, message: response.status + ' ' + response.statusText };
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  /* The server's error as one line: its message, and the code in brackets. */
  function describe(result) {
    var d = result.data || {};
    return (d.message || ('HTTP ' + result.status)) + (d.code ? ' [' + d.code + ']' : '');
  }

  /* Claim the next case of a project; resolves to the reading page's URL, or null when none is left. */
  async function nextCase(projectId) {
    var result = await api('POST', '/api/v1/projects/' + projectId + '/next-case');
    if (result.status === 204) return { url: null };
    if (!result.ok) return { error: describe(result) };
    return { url: '/reading/cases/' + result.data.case.id + '/' };
  }

  /* A key press meant for the page, not typed into a field. */
  function isTyping(target) {
    if (!target) return false;
    var tag = target.tagName;
    if (tag === 'TEXTAREA' || target.isContentEditable) return true;
    if (tag === 'INPUT') return !['radio', 'checkbox', 'button', 'submit'].includes(target.type);
    return tag === 'SELECT';
  }

  window.Okapi = { api: api, describe: describe, nextCase: nextCase, isTyping: isTyping };
})();
