/* Okapi reading page <-> the OHIF viewer in its iframe (same origin).
 *
 * It closes OHIF's study browser once the viewer is up (more room for the images). Two helpers for the
 * segmentation labels of the project's schema, using the services OHIF 3.13 exposes on its
 * window (window.services, window.commandsManager; not a public API, so each step checks what it needs and
 * says so when it is missing; OHIF's own segmentation panel does the same things by hand):
 *  - prepare(): a label-map segmentation on the displayed series with one segment per schema label, named and
 *    coloured as the schema says, the first one active;
 *  - save(): OHIF's own DICOM SEG export (generateSegmentation) stored through OHIF's data source (STOW-RS to
 *    Okapi with the reader's token), exactly what its "Store segmentation" menu does, without the dialog.
 * Okapi attaches the stored SEG to the reader's read (annotation/services/seg_stow.py).
 */
(function () {
  'use strict';
  var DATA_SOURCE = 'okapi';

  function viewer() {
    try {
      var frame = document.getElementById('viewer');
      var w = frame && frame.contentWindow;
      if (w && w.services && w.commandsManager && w.services.segmentationService) return w;
    } catch (err) { /* a viewer on another origin: its window is out of reach */ }
    return null;
  }

  function needViewer() {
    var w = viewer();
    if (w) return w;
    var frame = document.getElementById('viewer');
    if (frame && new URL(frame.src, window.location.href).origin !== window.location.origin) {
      throw new Error('the viewer runs on another origin: use its own segmentation panel (segments named as listed)');
    }
    throw new Error('the viewer has not finished loading');
  }

  function rgba(hex) {
    var n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255, 255];
  }

  function activeViewportId(w) {
    return w.services.viewportGridService.getActiveViewportId();
  }

  function currentSegmentation(w) {
    var seg = w.services.segmentationService;
    return seg.getActiveSegmentation(activeViewportId(w)) || seg.getSegmentations()[0] || null;
  }

  /* One label-map segmentation with the schema's labels; resolves to its id. */
  async function prepare(labels) {
    var w = needViewer();
    var segService = w.services.segmentationService;
    var existing = currentSegmentation(w);
    var segmentationId = existing && existing.segmentationId;
    if (!segmentationId) {
      segmentationId = await w.commandsManager.runCommand('createLabelmapForViewport', {
        viewportId: activeViewportId(w), options: { label: 'Okapi read', createInitialSegment: false },
      });
      if (!segmentationId) throw new Error('the viewer has no series displayed to segment');
    }
    var segments = (segService.getSegmentation(segmentationId) || {}).segments || {};
    labels.forEach(function (item, i) {
      var index = i + 1;
      if (segments[index] && segments[index].label === item.name) return;
      if (segments[index]) segService.removeSegment(segmentationId, index);
      segService.addSegment(segmentationId, { segmentIndex: index, label: item.name, color: rgba(item.color) });
    });
    segService.setActiveSegment(segmentationId, 1);
    return segmentationId;
  }

  /* Segment labels of the viewer's segmentation that are not the schema's (they would be refused). */
  function unknownLabels(w, segmentationId, labels) {
    var names = labels.map(function (l) { return l.name; });
    var segments = (w.services.segmentationService.getSegmentation(segmentationId) || {}).segments || {};
    return Object.values(segments).filter(Boolean).map(function (s) { return s.label; })
      .filter(function (label) { return !names.includes(label); });
  }

  /* Store the current segmentation as a DICOM SEG in Okapi, through OHIF's own export and data source. */
  async function save(labels) {
    var w = needViewer();
    var seg = currentSegmentation(w);
    if (!seg) throw new Error('there is no segmentation in the viewer yet: set up the labels and draw first');
    var unknown = unknownLabels(w, seg.segmentationId, labels);
    if (unknown.length) {
      throw new Error('segments must carry the schema\'s labels (' + labels.map(function (l) { return l.name; }).join(', ')
        + '), not ' + unknown.join(', ') + ': rename them in the viewer');
    }
    var generated = await w.commandsManager.runCommand('generateSegmentation', {
      segmentationId: seg.segmentationId,
      options: { dataSource: DATA_SOURCE, SeriesDescription: 'Okapi read segmentation' },
    });
    if (!generated || !generated.dataset) throw new Error('the viewer could not export the segmentation');
    var store = w.commandsManager.runCommand('createStoreFunction', { dataSource: DATA_SOURCE });
    if (!store) throw new Error('the viewer has no way to store into Okapi');
    try {
      await store(generated.dataset, {});
    } catch (err) {
      var status = err && (err.status || (err.request && err.request.status));
      throw new Error('Okapi refused the segmentation' + (status ? ' (HTTP ' + status + ')' : '') +
        (err && err.message ? ': ' + err.message : ''));
    }
    return generated.dataset.SOPInstanceUID;
  }

  /* Room for the images at 1280 px: OHIF's study browser (one study per case here) starts closed; its own
     button on the left opens it again. */
  function closeStudyBrowser() {
    var tries = 0;
    var timer = setInterval(function () {
      var w = viewer();
      var button = w && w.document.querySelector('[data-cy="side-panel-header-left"]');
      if (button) button.click();
      if (button || ++tries > 480) clearInterval(timer);
    }, 250);
  }
  if (document.getElementById('viewer')) closeStudyBrowser();

  window.OkapiViewer = { ready: function () { return viewer() !== null; }, prepare: prepare, save: save };
})();
