/* The console's login form (issue 15), shown at /ui/login: trades user and password for the
 * session cookie (POST /v1/auth/login?cookie=1; the token never reaches this script), then opens
 * the console. */
'use strict';
(function () {
  if (window.location.pathname !== '/ui/login') { return; }
  var t = TandemI18n.t;
  var form = document.getElementById('login-form');
  document.body.classList.add('login-page');
  document.getElementById('view').hidden = true;
  document.getElementById('login-view').hidden = false;
  var message = document.getElementById('login-message');

  function label() {
    document.title = t('title');
    document.getElementById('login-title').textContent = t('title');
    document.getElementById('user-label').textContent = t('user');
    document.getElementById('password-label').textContent = t('password');
    document.getElementById('login-button').textContent = t('login');
  }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    message.textContent = '';
    var body = { user: form.elements.user.value, password: form.elements.password.value };
    fetch('/v1/auth/login?cookie=1', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-Tandem-UI': '1' },
      body: JSON.stringify(body)
    }).then(function (resp) {
      return resp.json().then(function (json) {
        if (resp.ok) { window.location.assign('/ui/'); return; }
        message.textContent = t('login_failed') + ': ' + (json.error || resp.status);
      });
    }, function (err) { message.textContent = t('login_failed') + ': ' + err.message; });
    form.elements.password.value = '';
  });
  document.getElementById('lang-box').appendChild(TandemI18n.switcher(label));
  label();
})();
