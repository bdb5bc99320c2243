/* The console (issue 15): one page with hash routes (#/overview, #/sites, #/drill/ID,
 * #/capacity, #/backups), every figure from the JSON API with the session cookie, redrawn when
 * GET /v1/events (server-sent events) says something happened; a slow 30 s refresh only while
 * the stream is down. Writes carry X-Tandem-UI: 1 (the API refuses cookie writes without it). */
'use strict';
(function () {
  if (window.location.pathname === '/ui/login') { return; } /* login.js's page */
  var h = TandemDom.h, t = TandemI18n.t, time = TandemDom.time;
  var POLL_FALLBACK_MS = 30000, REFRESH_DEBOUNCE_MS = 150;
  var state = { session: null, status: null, bcp: null, events: 0, lastEvent: null,
                stream: 'connecting', refreshTimer: null, pollTimer: null, dialog: null };
  var view = document.getElementById('view');

  function api(method, path, body) {
    var init = { method: method, credentials: 'same-origin', headers: { 'X-Tandem-UI': '1' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (resp) {
      return resp.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        if (resp.status === 401) { window.location.assign('/ui/login'); }
        if (!resp.ok) {
          var err = new Error((json && json.error) || ('HTTP ' + resp.status));
          err.status = resp.status;
          err.body = json;
          throw err;
        }
        return json;
      });
    });
  }

  function has(role) {
    var roles = (state.session && state.session.roles) || [];
    return roles.indexOf(role) >= 0 || (state.session && state.session.kind === 'node');
  }

  function page() {
    var hash = window.location.hash.replace(/^#\/?/, '');
    var parts = hash.split('/');
    return { name: parts[0] || 'overview', arg: decodeURIComponent(parts.slice(1).join('/')) };
  }

  function failed(err) {
    return h('p', { class: 'bad' }, t('error') + ': ' + err.message);
  }

  /* ---- overview ---- */

  function tolerance(status, bcp) {
    var voters = [], reach = {};
    (bcp.sites || []).forEach(function (site) {
      (site.nodes || []).forEach(function (n) {
        reach[n.name] = n.reachable;
        if (n.role === 'voter') { voters.push({ name: n.name, site: site.name }); }
      });
    });
    var quorum = Math.floor(voters.length / 2) + 1;
    var up = voters.filter(function (v) { return reach[v.name]; });
    var siteLoss = (bcp.sites || []).filter(function (s) { return !s.witness; }).map(function (s) {
      var left = up.filter(function (v) { return v.site !== s.name; }).length;
      return { site: s.name, ok: left >= quorum };
    });
    return { more: up.length - quorum, siteLoss: siteLoss };
  }

  function banner(status, bcp) {
    var tol = tolerance(status, bcp);
    var leader = status.leader ? status.leader.name : t('none');
    return h('section', { class: 'banner', id: 'banner' }, [
      h('div', { class: 'figure' + (tol.more <= 0 ? ' bad' : '') }, [
        h('div', { class: 'figure-label' }, t('failure_tolerance')),
        h('div', { class: 'figure-value', id: 'failure-tolerance' },
          Math.max(tol.more, 0) + ' ' + t('more_nodes')),
        h('div', { class: 'figure-sub' }, tol.siteLoss.map(function (s) {
          return h('span', { class: s.ok ? 'ok' : 'bad' },
                   t('site_loss') + ' ' + s.site + ': ' + (s.ok ? t('survivable') : t('not_survivable')) + ' ');
        }))
      ]),
      h('div', { class: 'figure' }, [h('div', { class: 'figure-label' }, t('dr_mode')),
                                     h('div', { class: 'figure-value' }, bcp.mode || '—')]),
      h('div', { class: 'figure' }, [
        h('div', { class: 'figure-label' }, t('rpo_exposure')),
        h('div', { class: 'figure-sub' }, (bcp.sites || []).map(function (s) {
          return h('div', {}, s.name + ': ' + s.lag_entries + ' ' + t('entries') + ', ' +
                   s.lag_ms + ' ' + t('lag_ms'));
        }))
      ]),
      h('div', { class: 'figure' }, [h('div', { class: 'figure-label' }, t('leader')),
                                     h('div', { class: 'figure-value', id: 'leader' }, leader)]),
      h('div', { class: 'figure' }, [h('div', { class: 'figure-label' }, t('epoch')),
                                     h('div', { class: 'figure-value' }, String(bcp.epoch))])
    ]);
  }

  function missing(what) {
    return h('span', { class: 'muted', title: what }, '—');
  }

  function bytes(n) {
    if (n === null || n === undefined) { return missing(t('not_exposed')); }
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i === 0 ? 0 : 1) + ' ' + units[i];
  }

  /* A node's row: what it says of itself (bcp status "view", from the leader's probes; the
   * serving node's own /v1/status for itself), what the leader sees of it (lag, contact). */
  function nodeRow(member, status, bcp, bcpNode) {
    var self = status.node.name === member.name;
    var leader = status.leader && status.leader.name === member.name;
    var n = bcpNode || {};
    var view = n.view || null;
    if (self) {
      view = { state: status.node.state, term: status.node.term, commit_index: status.node.commit_index,
               applied_index: status.node.applied_index, disk_free_bytes: view ? view.disk_free_bytes : null,
               fsync_p99_ms: view ? view.fsync_p99_ms : null,
               cert_days_left: status.tls && status.tls.cert ? status.tls.cert.days_left : null, age_ms: 0 };
    }
    var known = function (key) {
      return view && view[key] !== null && view[key] !== undefined ? String(view[key]) : missing(t('only_self'));
    };
    var contact = Math.min(n.api_contact_age_ms === undefined || n.api_contact_age_ms === null ? Infinity : n.api_contact_age_ms,
                           n.raft_contact_age_ms === undefined || n.raft_contact_age_ms === null ? Infinity : n.raft_contact_age_ms);
    var flags = [];
    if (self ? status.node.fenced : view && view.fenced) { flags.push(t('fenced')); }
    if (self ? status.node.quarantined : view && view.quarantined) { flags.push(t('quarantined')); }
    if (bcpNode && !n.reachable) { flags.push(t('unreachable')); }
    var raftState = view ? view.state : (leader ? 'leader' : missing(t('only_self')));
    return h('tr', { class: 'node' + (leader ? ' leader' : ''), 'data-node': member.name,
                     'data-leader': leader ? '1' : null,
                     title: view && view.age_ms ? view.age_ms + ' ms' : null }, [
      h('td', {}, [member.name, leader ? h('span', { class: 'leader-mark', title: t('leader_mark') }, ' ★ ' + t('leader_mark')) : null]),
      h('td', {}, member.site),
      h('td', {}, member.role),
      h('td', {}, raftState),
      h('td', { class: 'num' }, known('term')),
      h('td', { class: 'num' }, known('commit_index')),
      h('td', { class: 'num' }, known('applied_index')),
      h('td', { class: 'num' }, n.lag_entries === undefined || n.lag_entries === null ? '—' :
        n.lag_entries + ' / ' + n.lag_ms + ' ms'),
      h('td', { class: 'num' }, contact === Infinity ? '—' : contact + ' ms'),
      h('td', { class: 'num', title: t('fsync_bound') },
        view && view.fsync_p99_ms !== null && view.fsync_p99_ms !== undefined ? '≤ ' + view.fsync_p99_ms + ' ms' : missing(t('only_self'))),
      h('td', { class: 'num' }, bytes(view ? view.disk_free_bytes : null)),
      h('td', { class: 'num' + (view && view.cert_days_left !== null && view.cert_days_left <= 30 ? ' bad' : '') }, known('cert_days_left')),
      h('td', { class: flags.length ? 'bad' : '' }, flags.join(', '))
    ]);
  }

  function overview() {
    var status = state.status, bcp = state.bcp;
    var byName = {};
    (bcp.sites || []).forEach(function (s) {
      (s.nodes || []).forEach(function (n) { byName[n.name] = n; });
    });
    var heads = ['node', 'site', 'role', 'raft_state', 'term', 'commit', 'applied', 'lag',
                 'last_contact', 'fsync_p99', 'free_disk', 'cert_days', 'flags'];
    return [banner(status, bcp), h('h2', {}, t('nodes')),
            h('table', { class: 'grid', id: 'nodes' }, [
              h('thead', {}, h('tr', {}, heads.map(function (k) { return h('th', {}, t(k)); }))),
              h('tbody', {}, (status.members || []).map(function (m) {
                return nodeRow(m, status, bcp, byName[m.name]);
              }))])];
  }

  /* ---- sites and BCP ---- */

  function closeDialog() {
    if (state.dialog) { state.dialog.remove(); state.dialog = null; }
  }

  function dryRunView(answer) {
    if (!answer) { return null; }
    return h('div', { class: 'dry-run', id: 'dry-run' }, [
      h('h4', {}, t('dry_run')),
      answer.refusal ? h('p', { class: 'bad' }, t('refusal') + ': ' + answer.refusal) : null,
      h('p', {}, t('role_changes') + ': ' + ((answer.role_changes || []).map(function (c) {
        return c.member + ' ' + c.from + ' → ' + c.to;
      }).join(', ') || t('none'))),
      h('p', {}, t('leadership_moves') + ': ' + (answer.leadership_moves ? (answer.leader || '') + ' →' : t('none'))),
      answer.jobs_returned !== undefined ? h('p', {}, t('jobs_returned') + ': ' + answer.jobs_returned)
        : h('p', {}, t('jobs_moved') + ': ' + answer.jobs_moved)
    ]);
  }

  /* Asks for a reason, shows the dry run, then sends the change. kind: invoke|revoke|drill. */
  function openDialog(kind, site) {
    closeDialog();
    var reason = h('textarea', { id: 'reason', rows: 2, maxlength: 200 });
    var failback = h('input', { type: 'checkbox', id: 'failback' });
    var message = h('p', { id: 'dialog-message' });
    var dryRun = h('div', {});
    var confirm = h('button', { type: 'button', id: 'confirm', class: 'danger' }, t('confirm'));
    var body = [h('label', { for: 'reason' }, t('ask_reason')), reason];
    if (kind === 'revoke') {
      body.push(h('p', {}, t('revoke_note')));
      body.push(h('label', {}, [failback, ' ', t('failback')]));
    }
    state.dialog = h('div', { class: 'dialog', role: 'dialog', id: 'dialog', 'data-kind': kind }, [
      h('h3', {}, t(kind) + ': ' + site)].concat(body, [dryRun, message,
      h('div', { class: 'buttons' }, [confirm, h('button', { type: 'button', onclick: closeDialog }, t('cancel'))])]));
    document.body.appendChild(state.dialog);
    /* What the change would do, from the change's own dry run (the leader's planner). */
    var preview = function () {
      var path = kind === 'revoke' ? '/v1/bcp/revoke' : kind === 'invoke' ? '/v1/bcp/invoke' : '/v1/bcp/drill';
      var ask = { site: site, dry_run: true };
      if (kind === 'revoke') { ask.failback = failback.checked; }
      TandemDom.clear(dryRun);
      api('POST', path, ask).then(function (answer) {
        dryRun.appendChild(dryRunView(answer));
      }, function (err) { dryRun.appendChild(failed(err)); });
    };
    failback.addEventListener('change', preview);
    preview();
    confirm.addEventListener('click', function () {
      var text = reason.value.trim();
      if (text === '') { message.textContent = t('reason_required'); return; }
      confirm.disabled = true;
      message.textContent = t('working');
      var request = kind === 'invoke' ? api('POST', '/v1/bcp/invoke', { site: site, reason: text })
        : kind === 'revoke' ? api('POST', '/v1/bcp/revoke', { site: site, reason: text, failback: failback.checked })
        : api('POST', '/v1/bcp/drill', { site: site, reason: text });
      /* The page is redrawn by the event stream, not by this answer. */
      request.then(function (answer) {
        if (kind === 'drill' && answer && answer.id) {
          closeDialog();
          window.location.hash = '#/drill/' + encodeURIComponent(answer.id);
        } else if (answer && answer.note) {
          message.textContent = t('done') + ': ' + answer.note;
        } else {
          closeDialog();
        }
      }, function (err) { message.textContent = t('error') + ': ' + err.message; confirm.disabled = false; });
    });
  }

  function siteButtons(site) {
    if (!has('bcp-admin') || site.witness) { return null; }
    var buttons = [];
    if (site.state === 'active') {
      buttons.push(h('button', { type: 'button', class: 'invoke', 'data-site': site.name,
                                 onclick: function () { openDialog('invoke', site.name); } }, t('invoke')));
      buttons.push(h('button', { type: 'button', class: 'drill', 'data-site': site.name,
                                 onclick: function () { openDialog('drill', site.name); } }, t('drill')));
    } else {
      buttons.push(h('button', { type: 'button', class: 'revoke', 'data-site': site.name,
                                 onclick: function () { openDialog('revoke', site.name); } }, t('revoke')));
    }
    return buttons;
  }

  function sites() {
    var bcp = state.bcp;
    var siteTable = h('table', { class: 'grid', id: 'sites' }, [
      h('thead', {}, h('tr', {}, ['site', 'state', 'epoch', 'since', 'reason', 'by', 'lag', ''].map(function (k) {
        return h('th', {}, k ? t(k) : '');
      }))),
      h('tbody', {}, (bcp.sites || []).map(function (s) {
        return h('tr', { class: 'site state-' + s.state, 'data-site': s.name, 'data-state': s.state }, [
          h('td', {}, s.name), h('td', { class: 'site-state' }, s.state), h('td', { class: 'num' }, String(s.epoch)),
          h('td', {}, time(s.since_time)), h('td', {}, s.reason), h('td', {}, s.by),
          h('td', { class: 'num' }, s.lag_entries + ' / ' + s.lag_ms + ' ms'),
          h('td', {}, siteButtons(s))]);
      }))]);
    var decisions = (bcp.decisions || []).slice().reverse().slice(0, 50);
    var decisionList = h('ol', { class: 'decisions', id: 'decisions' }, decisions.map(function (d) {
      return h('li', {}, [time(d.at_time), ' ', h('strong', {}, d.action), ' ', d.site || '',
                          d.member ? ' ' + d.member : '', d.to_role ? ' → ' + d.to_role : '',
                          ': ' + d.reason + ' (' + d.by + ')',
                          d.jobs_moved ? ' · ' + t('jobs_moved') + ' ' + d.jobs_moved : '']);
    }));
    var drills = h('div', { id: 'drills' }, '…');
    api('GET', '/v1/bcp/drills?limit=20').then(function (answer) {
      TandemDom.clear(drills).appendChild(h('table', { class: 'grid' }, [
        h('thead', {}, h('tr', {}, ['time', 'site', 'result', 'rto', 'rpo', 'jobs_moved', ''].map(function (k) {
          return h('th', {}, k ? t(k) : '');
        }))),
        h('tbody', {}, (answer.drills || []).slice().reverse().map(function (d) {
          return h('tr', {}, [h('td', {}, time(d.started_time)), h('td', {}, d.site),
                              h('td', { class: d.ok ? 'ok' : 'bad' }, d.ok ? t('passed') : t('failed')),
                              h('td', { class: 'num' }, d.rto_ms + ' ms'), h('td', { class: 'num' }, String(d.rpo_writes)),
                              h('td', { class: 'num' }, d.jobs_moved === null ? '—' : String(d.jobs_moved)),
                              h('td', {}, h('a', { href: '#/drill/' + encodeURIComponent(d.id), class: 'drill-link' }, t('open_report')))]);
        }))]));
    }, function (err) { TandemDom.clear(drills).appendChild(failed(err)); });
    return [h('h2', {}, t('sites')), siteTable, h('h3', {}, t('drills')), drills,
            h('h3', {}, t('decisions')), decisionList];
  }

  /* ---- drill report ---- */

  function drill(id) {
    var box = h('div', { id: 'report-box' }, '…');
    api('GET', '/v1/bcp/drills?full=1&limit=100').then(function (answer) {
      var found = (answer.drills || []).filter(function (d) { return d.id === id; })[0];
      if (!found || !found.report) { TandemDom.clear(box).appendChild(failed(new Error(id))); return; }
      TandemReport.render(box, found.report);
      box.appendChild(h('p', { class: 'no-print' }, h('button', { type: 'button', onclick: function () { window.print(); } }, t('print'))));
    }, function (err) { TandemDom.clear(box).appendChild(failed(err)); });
    return [box];
  }

  /* ---- capacity ---- */

  function bar(value, max, cls, label) {
    var width = max > 0 ? Math.min(100, 100 * value / max) : 0;
    var fillEl = h('div', { class: 'bar-fill ' + (cls || '') });
    fillEl.style.width = width.toFixed(1) + '%';
    return h('div', { class: 'bar', title: label }, [fillEl, h('span', { class: 'bar-label' }, label)]);
  }

  function planView(plan) {
    var max = 0;
    (plan.sites || []).forEach(function (s) {
      max = Math.max(max, s.backlog_hours_before || 0, s.backlog_hours_after || 0);
    });
    var rows = (plan.sites || []).filter(function (s) { return s.name !== 'witness'; }).map(function (s) {
      return h('tr', {}, [h('td', {}, s.name),
        h('td', {}, bar(s.backlog_hours_before, max, 'before', t('before') + ' ' + s.backlog_hours_before + ' h, ' + s.jobs_before + ' jobs, ' + s.at_risk_before + ' at risk')),
        h('td', {}, bar(s.backlog_hours_after, max, 'after', t('after') + ' ' + s.backlog_hours_after + ' h, ' + s.jobs_after + ' jobs, ' + s.at_risk_after + ' at risk'))]);
    });
    var message = h('p', {});
    var apply = (plan.moves || []).length && has('planner') ? h('button', { type: 'button', id: 'apply-plan', class: 'danger', onclick: function () {
      apply.disabled = true;
      api('POST', '/v1/rebalance/apply', { id: plan.id }).then(function () { message.textContent = t('done'); refresh(); },
        function (err) { message.textContent = t('error') + ': ' + err.message; apply.disabled = false; });
    } }, t('apply_plan')) : null;
    return h('section', { id: 'plan' }, [h('h3', {}, t('plan') + ' (' + (plan.moves || []).length + ' ' + t('moves') + ')'),
      (plan.moves || []).length ? null : h('p', {}, t('no_moves')),
      h('table', { class: 'grid' }, h('tbody', {}, rows)), apply, message]);
  }

  function capacity() {
    var box = h('div', {}, '…'), planBox = h('div', {});
    api('GET', '/v1/sites').then(function (answer) {
      var list = (answer.sites || []).filter(function (s) { return !s.witness; });
      var max = 0;
      list.forEach(function (s) { max = Math.max(max, s.backlog_hours || 0, s.capacity || 0); });
      TandemDom.clear(box).appendChild(h('table', { class: 'grid', id: 'capacity' }, [
        h('thead', {}, h('tr', {}, ['site', 'state', 'capacity', 'backlog_hours', 'queued', 'in_progress', 'jobs_at_risk'].map(function (k) { return h('th', {}, t(k)); }))),
        h('tbody', {}, list.map(function (s) {
          return h('tr', {}, [h('td', {}, s.name), h('td', {}, s.state), h('td', { class: 'num' }, String(s.capacity)),
            h('td', {}, bar(s.backlog_hours, max, s.jobs_at_risk ? 'risk' : '', s.backlog_hours + ' h')),
            h('td', { class: 'num' }, String(s.jobs_queued)), h('td', { class: 'num' }, String(s.jobs_in_progress)),
            h('td', { class: 'num' + (s.jobs_at_risk ? ' bad' : '') }, String(s.jobs_at_risk))]);
        }))]));
    }, function (err) { TandemDom.clear(box).appendChild(failed(err)); });
    if (has('planner')) {
      api('GET', '/v1/rebalance/plan').then(function (plan) { planBox.appendChild(planView(plan)); },
        function (err) { planBox.appendChild(failed(err)); });
    } else {
      planBox.appendChild(h('p', { class: 'muted' }, t('plan_needs_planner')));
    }
    return [h('h2', {}, t('capacity_title')), box, planBox];
  }

  /* ---- backups and audit ---- */

  function scalar(v) {
    if (v === null || v === undefined) { return '—'; }
    if (typeof v === 'object') { return Array.isArray(v) ? String(v.length) : '…'; }
    return String(v);
  }

  function backups() {
    var box = h('div', {}, '…'), auditBox = h('div', {});
    api('GET', '/v1/backups').then(function (answer) {
      var sitesMap = answer.sites || {};
      var names = Object.keys(sitesMap);
      if (names.length === 0) { TandemDom.clear(box).appendChild(h('p', {}, t('no_backups'))); return; }
      TandemDom.clear(box).appendChild(h('table', { class: 'grid', id: 'backups' }, h('tbody', {}, names.map(function (site) {
        var s = sitesMap[site];
        return h('tr', {}, [h('th', {}, site), h('td', {}, Object.keys(s).map(function (k) {
          return h('div', {}, k + ': ' + scalar(s[k]));
        }))]);
      }))));
    }, function (err) { TandemDom.clear(box).appendChild(failed(err)); });
    if (has('auditor')) {
      api('GET', '/v1/audit/verify').then(function (v) {
        auditBox.appendChild(h('p', { id: 'audit-chain', class: v.ok ? 'ok' : 'bad' },
          t('audit_chain') + ': ' + (v.ok ? t('intact') : t('broken') + ' @' + v.broken_at + ' (' + v.reason + ')') +
          (v.records !== undefined ? ' · ' + v.records + ' ' + t('records') : '')));
      }, function (err) { auditBox.appendChild(failed(err)); });
      var since = TandemDom.rfc3339(new Date(Date.now() - 24 * 3600 * 1000));
      api('GET', '/v1/audit/failures?since=' + encodeURIComponent(since)).then(function (f) {
        auditBox.appendChild(h('h3', {}, t('failed_logins')));
        auditBox.appendChild(h('table', { class: 'grid', id: 'failures' }, [
          h('thead', {}, h('tr', {}, ['by', 'source', 'count', 'since', 'last', 'action'].map(function (k) { return h('th', {}, t(k)); }))),
          h('tbody', {}, (f.failures || []).map(function (r) {
            var actions = Object.keys(r.actions || {}).map(function (a) { return a + ' ×' + r.actions[a]; });
            return h('tr', {}, [h('td', {}, r.actor || '—'), h('td', {}, r.source), h('td', { class: 'num' }, String(r.count)),
                                h('td', {}, time(r.first)), h('td', {}, time(r.last)), h('td', {}, actions.join(', '))]);
          }))]));
      }, function (err) { auditBox.appendChild(failed(err)); });
    } else {
      auditBox.appendChild(h('p', { class: 'muted' }, t('audit_chain') + ': ' + t('auditor_only')));
    }
    return [h('h2', {}, t('newest_backup')), box, h('h2', {}, t('audit_chain')), auditBox];
  }

  /* ---- frame, refresh, events ---- */

  var pages = { overview: overview, sites: sites, drill: drill, capacity: capacity, backups: backups };

  function nav() {
    var current = page().name;
    var links = ['overview', 'sites', 'capacity', 'backups'].map(function (name) {
      return h('a', { href: '#/' + name, class: name === current ? 'current' : null, id: 'nav-' + name }, t(name));
    });
    var who = state.session ? h('span', { class: 'who', id: 'who' },
      t('signed_in_as') + ' ' + state.session.user + ' (' + t('roles') + ': ' + (state.session.roles || []).join(', ') +
      '; ' + t('via') + ' ' + state.session.via + ') · ' + t('served_by') + ' ' + state.session.node) : null;
    var live = h('span', { class: 'live ' + state.stream, id: 'live', 'data-events': state.events },
      state.stream === 'open' ? '● ' + t('live') : state.stream === 'polling' ? t('polling') : t('reconnecting'));
    var logout = h('button', { type: 'button', id: 'logout', onclick: function () {
      api('POST', '/v1/auth/logout', {}).then(function () { window.location.assign('/ui/login'); });
    } }, t('logout'));
    return h('nav', { class: 'top no-print' }, [h('strong', {}, 'tandem')].concat(links, [who, live, TandemI18n.switcher(render), logout]));
  }

  function render() {
    var p = page();
    var build = pages[p.name] || overview;
    var header = document.getElementById('header');
    TandemDom.clear(header).appendChild(nav());
    document.title = t('title');
    var content;
    if (!state.status || !state.bcp) { content = [h('p', {}, '…')]; } else {
      try { content = build(p.arg); } catch (err) { content = [failed(err)]; }
    }
    TandemDom.clear(view);
    view.setAttribute('data-page', p.name);
    content.forEach(function (node) { view.appendChild(node); });
    if (state.dialog) { document.body.appendChild(state.dialog); }
  }

  function refresh() {
    return Promise.all([api('GET', '/v1/status'), api('GET', '/v1/bcp/status')]).then(function (both) {
      state.status = both[0];
      state.bcp = both[1];
      if (page().name !== 'drill' || !view.querySelector('#drill-report')) { render(); } else { TandemDom.clear(document.getElementById('header')).appendChild(nav()); }
    }, function (err) {
      TandemDom.clear(view).appendChild(failed(err));
    });
  }

  function refreshSoon() {
    if (state.refreshTimer) { return; }
    state.refreshTimer = window.setTimeout(function () { state.refreshTimer = null; refresh(); }, REFRESH_DEBOUNCE_MS);
  }

  function streamState(s) {
    state.stream = s;
    var live = document.getElementById('live');
    if (live) { TandemDom.clear(document.getElementById('header')).appendChild(nav()); }
  }

  /* Events say something changed: redraw from the API. The slow poll runs only while the
   * stream is closed for good (EventSource retries by itself while it can). */
  function connect() {
    var source = new EventSource('/v1/events', { withCredentials: true });
    source.onopen = function () {
      if (state.pollTimer) { window.clearInterval(state.pollTimer); state.pollTimer = null; }
      streamState('open');
    };
    source.onmessage = function () { state.events++; refreshSoon(); };
    ['auto_invoke', 'planned_invoke', 'forced_invoke', 'drill_invoke', 'planned_revoke', 'drill_revoke',
     'site_recovered', 'role_change', 'leadership_transfer', 'preferred_site', 'site_registered',
     'site_down', 'site_up', 'failure_tolerance_dropped', 'failure_tolerance_recovered', 'fenced',
     'drill_result', 'incident_reported', 'quarantine_enter', 'quarantine_release', 'backup_failed',
     'backup_verify_failed', 'backup_lost', 'gap'].forEach(function (type) {
      source.addEventListener(type, function (e) {
        state.events++;
        state.lastEvent = e.lastEventId;
        refreshSoon();
      });
    });
    /* A page left (or kept in the back-forward cache) gives its connection back: a browser
     * holds at most six per node, and a forgotten stream would keep one. */
    window.addEventListener('pagehide', function () { source.close(); }, { once: true });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        streamState('polling');
        if (!state.pollTimer) { state.pollTimer = window.setInterval(refresh, POLL_FALLBACK_MS); }
        window.setTimeout(connect, POLL_FALLBACK_MS);
      } else {
        streamState('connecting');
      }
    };
  }

  window.addEventListener('hashchange', function () { closeDialog(); render(); });
  window.addEventListener('pageshow', function (event) {
    if (event.persisted) { refresh(); connect(); } /* back from the cache: the stream was closed */
  });
  /* Who, and the first figures, asked at once: the page is drawn after one round trip. */
  var first = refresh();
  api('GET', '/v1/auth/session').then(function (session) {
    state.session = session;
    window.tandemConsole = { loadedAt: Date.now(), state: state };
    return first.then(render);
  }).then(connect, function (err) { TandemDom.clear(view).appendChild(failed(err)); });
})();
