{% autoescape off %}/* OHIF v3 configuration for Okapi, rendered per user by frontend/views_reading.py (never cached).
 *
 * Data source: Okapi's DICOMweb root for QIDO, WADO and STOW alike (OHIF 3.13 sends the lazy series query and
 * STOW to wadoRoot; see shared/OHIF_DICOMWEB.md), frames by WADO-RS, thumbnails drawn from frames, studies
 * loaded series by series. Authentication: the reader's bearer token, handed to OHIF's
 * userAuthenticationService by the small inline extension below before any request is made (or, for a viewer
 * hosted on another origin, OHIF's own ?token= URL parameter).
 */
(function () {
  var okapi = {
    dicomweb: {{ dicomweb_root }},
    token: {{ token }},
    loginUrl: {{ login_url }},
  };

  function toLogin() {
    var target = window.top || window;
    target.location.href = okapi.loginUrl + '?next=' + encodeURIComponent(target.location.pathname + target.location.search);
  }

  // A viewer served from another origin gets the token on its URL (?token=..., read by OHIF itself, which then
  // removes it from the address bar); the one Okapi serves gets it here.
  if (!okapi.token && !/[?&]token=/.test(window.location.search)) {
    toLogin();
  }

  var okapiAuth = {
    id: '@okapi/extension-auth',
    preRegistration: function (args) {
      args.servicesManager.services.userAuthenticationService.setServiceImplementation({
        getAuthorizationHeader: function () {
          return { Authorization: 'Bearer ' + okapi.token };
        },
        handleUnauthenticated: toLogin,
      });
    },
  };

  window.config = {
    name: 'okapi',
    routerBasename: {{ router_basename }},
    extensions: okapi.token ? [okapiAuth] : [],
    modes: [],
    // No onboarding tour over the images (it also takes the keyboard focus from the labelling panel).
    customizationService: { 'ohif.tours': { $set: [] } },
    // The reading page opens one case at a time: no study list to browse (the archive scopes it anyway).
    showStudyList: false,
    investigationalUseDialog: { option: 'never' },
    maxNumberOfWebWorkers: 2,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 25 },
    showErrorDetails: 'always',
    defaultDataSourceName: 'okapi',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'okapi',
        configuration: {
          friendlyName: 'Okapi',
          name: 'okapi',
          qidoRoot: okapi.dicomweb,
          wadoRoot: okapi.dicomweb,
          wadoUriRoot: okapi.dicomweb,
          qidoSupportsIncludeField: true,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          lazyLoadStudy: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          staticWado: false,
          omitQuotationForMultipartRequest: true,
          bulkDataURI: { enabled: true },
          dicomUploadEnabled: false,
          supportsStow: true,
          supportsReject: false,
          // Readers' segmentations are stored as binary DICOM SEG (uncompressed), the form Okapi's
          // segmentation code (highdicom) reads for Dice, STAPLE and exports.
          segmentation: {
            store: { defaultMode: 'bitmap', transferSyntaxUID: '1.2.840.10008.1.2.1' },
          },
        },
      },
    ],
    httpErrorHandler: function (error) {
      if (error && (error.status === 401 || error.status === 403)) {
        console.warn('Okapi refused the viewer\'s request (' + error.status + '): log in again');
      } else {
        console.warn('Okapi DICOMweb error', error && error.status);
      }
    },
  };
})();
{% endautoescape %}