// Shared by the player pages: reads the stream URL from the query string and collects every
// error the page sees, so the driver can report them next to the decoded-frame counts.
'use strict';
(function () {
  var q = new URLSearchParams(location.search);
  window.playerParams = {
    url: q.get('url'),
    // The seed's page plays live streams; the harness self-test plays static files.
    live: q.get('live') !== '0',
  };
  window.playerErrors = [];
  window.playerWarnings = [];
  window.reportError = function (source, detail) {
    var text;
    try {
      text = typeof detail === 'string' ? detail : JSON.stringify(detail);
    } catch (e) {
      text = String(detail);
    }
    window.playerErrors.push(source + ': ' + text);
  };
  window.reportWarning = function (source, detail) {
    var text;
    try {
      text = typeof detail === 'string' ? detail : JSON.stringify(detail);
    } catch (e) {
      text = String(detail);
    }
    // Bounded: a player that warns in a loop must not grow the page without limit.
    if (window.playerWarnings.length < 50) window.playerWarnings.push(source + ': ' + text);
  };
  window.addEventListener('error', function (ev) {
    window.reportError('window', ev.message || String(ev));
  });
  window.addEventListener('unhandledrejection', function (ev) {
    window.reportError('promise', String(ev.reason));
  });
  document.addEventListener('DOMContentLoaded', function () {
    var video = document.getElementById('videoElement');
    video.addEventListener('error', function () {
      var e = video.error;
      window.reportError('video', e ? 'code ' + e.code + ' ' + (e.message || '') : 'unknown');
    });
  });
})();
