/* The drill report (issue 15), drawn from one drill record: the figures, the probe writer's
 * latency across the switchover as an SVG chart, the timeline and the digest checks. Used by
 * the console's drill page and by the standalone file `tandemctl bcp drill SITE --report`
 * writes; also the small DOM and time helpers the console shares. No data goes into HTML text:
 * every value is set as text or as an attribute. */
'use strict';
var TandemDom = (function () {
  var SVG_NS = 'http://www.w3.org/2000/svg';

  /* h('td', {class: 'x', title: 'y'}, 'text' | node | [children]) */
  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    return fill(el, attrs, children);
  }

  function s(tag, attrs, children) {
    return fill(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function fill(el, attrs, children) {
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) { return; }
      if (name.indexOf('on') === 0) {
        el.addEventListener(name.slice(2), value);
      } else {
        el.setAttribute(name, value === true ? '' : String(value));
      }
    });
    append(el, children);
    return el;
  }

  function append(el, children) {
    if (children === null || children === undefined) { return; }
    if (!Array.isArray(children)) { children = [children]; }
    children.forEach(function (child) {
      if (child === null || child === undefined || child === false) { return; }
      el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    });
  }

  function pad(n, width) {
    var text = String(n);
    while (text.length < width) { text = '0' + text; }
    return text;
  }

  /* RFC 3339 UTC with milliseconds of a Date. */
  function rfc3339(date) {
    return date.getUTCFullYear() + '-' + pad(date.getUTCMonth() + 1, 2) + '-' +
      pad(date.getUTCDate(), 2) + 'T' + pad(date.getUTCHours(), 2) + ':' +
      pad(date.getUTCMinutes(), 2) + ':' + pad(date.getUTCSeconds(), 2) + '.' +
      pad(date.getUTCMilliseconds(), 3) + 'Z';
  }

  /* A <time> in the browser's zone, the RFC 3339 UTC value in its title (hover) and datetime.
   * value: Unix ms or an RFC 3339 text. */
  function time(value) {
    if (value === null || value === undefined || value === '') { return h('span', {}, '—'); }
    var date = new Date(value);
    if (isNaN(date.getTime())) { return h('span', {}, String(value)); }
    var stamp = rfc3339(date);
    var shown = date.toLocaleString(TandemI18n.lang() === 'ja' ? 'ja-JP' : 'en-GB', {
      year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
      second: '2-digit', hour12: false
    });
    return h('time', { datetime: stamp, title: stamp }, shown);
  }

  function clear(el) {
    while (el.firstChild) { el.removeChild(el.firstChild); }
    return el;
  }

  return { h: h, s: s, time: time, clear: clear, rfc3339: rfc3339 };
})();

var TandemReport = (function () {
  var h = TandemDom.h, s = TandemDom.s, t = TandemI18n.t;
  var W = 760, H = 260, LEFT = 56, RIGHT = 12, TOP = 14, BOTTOM = 34;

  function figure(label, value, good) {
    return h('div', { class: 'figure' + (good === false ? ' bad' : '') },
             [h('div', { class: 'figure-label' }, label), h('div', { class: 'figure-value' }, value)]);
  }

  /* Timeline events that mark the switchover on the chart. */
  function markers(timeline) {
    var wanted = /^(invoking|invoke recorded|takeover complete|revoking|failback complete)/;
    return (timeline || []).filter(function (e) { return wanted.test(e.event); });
  }

  function niceMax(value) {
    var steps = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];
    for (var i = 0; i < steps.length; i++) { if (value <= steps[i]) { return steps[i]; } }
    return Math.ceil(value / 10000) * 10000;
  }

  /* The latency chart: a path through the longest latency of each bucket, failures as red
   * ticks on the time axis, the switchover's timeline events as dashed lines. */
  function chart(report) {
    var series = report.probe_latency;
    if (!series || !series.points || series.points.length === 0) {
      return h('p', { class: 'note' }, t('no_latency'));
    }
    var points = series.points;
    var spanMs = Math.max((report.finished - report.started) || 0,
                          points[points.length - 1][0] + series.bucket_ms, 1);
    var maxLatency = 0;
    points.forEach(function (p) { if (p[1] !== null && p[1] > maxLatency) { maxLatency = p[1]; } });
    var yMax = niceMax(Math.max(maxLatency, 10));
    var x = function (ms) { return LEFT + (W - LEFT - RIGHT) * ms / spanMs; };
    var y = function (ms) { return TOP + (H - TOP - BOTTOM) * (1 - ms / yMax); };
    var svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart', role: 'img',
                         'aria-label': t('latency_chart') });
    for (var i = 0; i <= 4; i++) {
      var v = yMax * i / 4;
      svg.appendChild(s('line', { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: 'grid' }));
      svg.appendChild(s('text', { x: LEFT - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' },
                        Math.round(v) + ' ms'));
    }
    for (var k = 0; k <= 5; k++) {
      var at = spanMs * k / 5;
      svg.appendChild(s('text', { x: x(at), y: H - BOTTOM + 16, class: 'axis',
                                  'text-anchor': 'middle' }, (at / 1000).toFixed(1) + ' s'));
    }
    markers(report.timeline).forEach(function (e) {
      svg.appendChild(s('line', { x1: x(e.t_ms), x2: x(e.t_ms), y1: TOP, y2: H - BOTTOM,
                                  class: 'marker' }, s('title', {}, e.t_ms + ' ms: ' + e.event)));
    });
    var d = '';
    points.forEach(function (p) {
      if (p[1] === null) { return; }
      d += (d === '' ? 'M' : ' L') + x(p[0] + series.bucket_ms / 2).toFixed(1) + ' ' +
        y(p[1]).toFixed(1);
    });
    svg.appendChild(s('path', { d: d, class: 'latency', 'data-points': points.length }));
    points.forEach(function (p) {
      if (p[3] > 0) {
        svg.appendChild(s('line', { x1: x(p[0]), x2: x(p[0]), y1: H - BOTTOM, y2: H - BOTTOM - 8,
                                    class: 'failed-tick' }, s('title', {}, p[3] + ' failed')));
      }
    });
    svg.appendChild(s('line', { x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM,
                                class: 'axis-line' }));
    return svg;
  }

  function timelineTable(report) {
    var rows = (report.timeline || []).map(function (e) {
      return h('tr', {}, [h('td', { class: 'num' }, '+' + e.t_ms + ' ms'),
                          h('td', {}, TandemDom.time(report.started + e.t_ms)),
                          h('td', {}, e.event)]);
    });
    return h('table', { class: 'grid timeline' },
             [h('thead', {}, h('tr', {}, [h('th', {}, 't'), h('th', {}, t('time')),
                                          h('th', {}, t('action'))])),
              h('tbody', {}, rows)]);
  }

  function digestTable(report) {
    var checks = report.digests || [];
    if (checks.length === 0) {
      return h('p', {}, t('digests') + ': ' + (report.digests_equal ? t('equal') : t('differ')));
    }
    return h('div', {}, checks.map(function (c) {
      return h('div', { class: 'digest-check' }, [
        h('h4', {}, (c.after === 'invoke' ? t('takeover') : t('failback_step')) + ': ' +
          (c.equal ? t('equal') : t('differ')) + ' (' + t('at_index') + ' ' + c.applied_index + ')'),
        h('table', { class: 'grid' }, h('tbody', {}, (c.nodes || []).map(function (n) {
          return h('tr', {}, [h('td', {}, n.name), h('td', { class: 'num' }, n.applied_index),
                              h('td', { class: 'mono' }, n.digest || '—')]);
        })))
      ]);
    }));
  }

  function value(v, unit) {
    return v === null || v === undefined ? '—' : v + (unit ? ' ' + unit : '');
  }

  /* Draws report (a drill record's report) into el. */
  function render(el, report) {
    TandemDom.clear(el);
    var probe = report.probe || {};
    el.appendChild(h('article', { class: 'report', id: 'drill-report' }, [
      h('header', { class: 'report-head' }, [
        h('h2', {}, t('drill_report') + ': ' + report.site + ' (' + report.id + ')'),
        h('p', {}, [TandemDom.time(report.started), ' – ', TandemDom.time(report.finished), ' · ',
                    h('strong', { class: report.ok ? 'ok' : 'bad' },
                      report.ok ? t('passed') : t('failed'))]),
        report.reason ? h('p', { id: 'drill-reason' }, t('reason') + ': ' + report.reason) : null,
        report.error ? h('p', { class: 'bad' }, t('error') + ': ' + report.error) : null
      ]),
      h('div', { class: 'figures' }, [
        figure(t('rto'), value(report.rto_ms, 'ms'), report.rto_ms !== null),
        figure(t('rpo'), report.rpo_writes + ' ' + t('writes_missing'), report.rpo_writes === 0),
        figure(t('digests'), report.digests_equal ? t('equal') : t('differ'), report.digests_equal),
        figure(t('jobs_moved'), value(report.jobs_moved)),
        figure(t('jobs_returned'), value(report.jobs_returned)),
        figure(t('takeover'), value(report.takeover_ms, 'ms') + ' / gap ' +
               value(report.takeover_gap_ms, 'ms')),
        figure(t('failback_step'), value(report.failback_ms, 'ms') + ' / gap ' +
               value(report.failback_gap_ms, 'ms')),
        figure(t('probe'), probe.rate_per_s + '/s · ' + t('sent') + ' ' + probe.sent + ' · ' +
               t('acked') + ' ' + probe.acked + ' · ' + t('verified') + ' ' + probe.verified,
               probe.failed === 0)
      ]),
      h('section', {}, [h('h3', {}, t('latency_chart')), chart(report)]),
      h('section', {}, [h('h3', {}, t('timeline')), timelineTable(report)]),
      h('section', {}, [h('h3', {}, t('digests')), digestTable(report)])
    ]));
  }

  /* The standalone file: the record is the JSON in <script id="drill-data">. */
  function standalone() {
    var data = document.getElementById('drill-data');
    var root = document.getElementById('report-root');
    if (!data || !root) { return; }
    var report = JSON.parse(data.textContent);
    var draw = function () {
      render(root, report);
      var bar = document.getElementById('report-bar');
      TandemDom.clear(bar);
      bar.appendChild(TandemDom.h('span', {}, t('standalone') + ' · ' + t('generated') + ' '));
      bar.appendChild(TandemDom.time(Number(data.getAttribute('data-generated'))));
      bar.appendChild(TandemI18n.switcher(draw));
      bar.appendChild(TandemDom.h('button', { type: 'button', onclick: function () { window.print(); } },
                                  t('print')));
    };
    draw();
  }

  return { render: render, chart: chart, standalone: standalone };
})();
