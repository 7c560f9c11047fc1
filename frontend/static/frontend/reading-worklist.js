/* Okapi worklist: "next case" per project (button or the n key). */
(function () {
  'use strict';
  var message = document.getElementById('wl-message');

  async function take(button) {
    if (button.disabled) return;
    button.disabled = true;
    message.className = 'wl-message';
    message.textContent = 'Taking the next case…';
    var result = await Okapi.nextCase(button.dataset.project);
    button.disabled = false;
    if (result.url) {
      window.location.assign(result.url);
    } else if (result.error) {
      message.className = 'wl-message error';
      message.textContent = result.error;
    } else {
      message.textContent = 'No case of this project needs your read right now.';
    }
  }

  document.querySelectorAll('button.next-case').forEach(function (button) {
    button.addEventListener('click', function () { take(button); });
  });

  document.addEventListener('keydown', function (event) {
    if (event.key !== 'n' || event.ctrlKey || event.metaKey || event.altKey || Okapi.isTyping(event.target)) return;
    var section = event.target.closest && event.target.closest('section[data-project]');
    var button = (section || document).querySelector('button.next-case');
    if (button) {
      event.preventDefault();
      take(button);
    }
  });
})();
