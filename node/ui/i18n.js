/* The console's words in English and Japanese: one table, one lookup (TandemI18n.t). The
 * language is the one the user picked (kept in this browser), else the browser's
 * Accept-Language (navigator.languages), else English. */
'use strict';
var TandemI18n = (function () {
  var strings = {
    en: {
      title: 'tandem console', overview: 'Overview', sites: 'Sites and BCP', capacity: 'Capacity',
      backups: 'Backups and audit', logout: 'Log out', login: 'Log in', user: 'User',
      password: 'Password', login_failed: 'Login failed', language: 'Language',
      signed_in_as: 'Signed in as', roles: 'roles', via: 'via', served_by: 'served by',
      live: 'live', reconnecting: 'reconnecting…', polling: 'stream lost: refreshing every 30 s',
      failure_tolerance: 'Failure tolerance', more_nodes: 'more node failures tolerated',
      site_loss: 'Loss of a whole site', survivable: 'survivable', not_survivable: 'NOT survivable',
      dr_mode: 'DR mode', rpo_exposure: 'RPO exposure', leader: 'Leader', epoch: 'Epoch',
      none: 'none', nodes: 'Nodes', node: 'Node', site: 'Site', role: 'Role',
      raft_state: 'Raft state', term: 'Term', commit: 'Commit', applied: 'Applied', lag: 'Lag',
      entries: 'entries', last_contact: 'Last contact', fsync_p99: 'fsync p99',
      free_disk: 'Free disk', cert_days: 'Cert expiry (days)', flags: 'Flags', fenced: 'fenced',
      quarantined: 'quarantined', unreachable: 'unreachable', leader_mark: 'leader',
      not_exposed: 'not exposed by the API', only_self: 'not reported by that node yet',
      state: 'State', since: 'Since', reason: 'Reason', by: 'By', decisions: 'Decisions',
      drills: 'Drill history', time: 'Time', action: 'Action', member: 'Member',
      jobs_moved: 'Jobs moved', jobs_returned: 'Jobs returned', result: 'Result',
      passed: 'passed', failed: 'FAILED', open_report: 'report', invoke: 'Invoke BCP',
      revoke: 'Revoke BCP', drill: 'Run a drill', ask_reason: 'Reason (recorded in the audit trail)',
      confirm: 'Confirm', cancel: 'Cancel', dry_run: 'What will change (dry run)',
      role_changes: 'Role changes', leadership_moves: 'Leadership moves',
      refusal: 'It would be refused', reason_required: 'A reason is required',
      revoke_note: 'The site catches up as standbys, is promoted back and becomes active; with ' +
        'failback, leadership and the jobs moved away return to it.',
      failback: 'Fail back (return leadership and moved jobs)', working: 'working…',
      done: 'done', drill_report: 'Drill report', timeline: 'Timeline',
      latency_chart: 'Probe write latency across the switchover', rto: 'RTO', rpo: 'RPO',
      writes_missing: 'acknowledged writes missing', digests: 'State digests',
      equal: 'equal', differ: 'DIFFER', probe: 'Probe writer', sent: 'sent', acked: 'acknowledged',
      verified: 'verified', ms: 'ms', takeover: 'takeover', failback_step: 'failback',
      no_latency: 'This drill was recorded before latency samples were kept.',
      print: 'Print', capacity_title: 'Capacity and backlog per site',
      backlog_hours: 'Backlog hours', jobs_at_risk: 'Jobs at risk', queued: 'Queued',
      in_progress: 'In progress', plan: 'Rebalance plan', before: 'before', after: 'after',
      moves: 'moves', apply_plan: 'Apply this plan', no_moves: 'Nothing to move.',
      plan_needs_planner: 'The rebalance plan is shown to planners.',
      newest_backup: 'Newest backup per site', verification: 'Verification',
      no_backups: 'No backup yet.', audit_chain: 'Audit chain', intact: 'intact',
      broken: 'BROKEN', records: 'records', failed_logins: 'Recent failed logins and denials',
      count: 'Count', source: 'Source', auditor_only: 'Shown to auditors.', last: 'Last',
      error: 'Error', generated: 'Generated', standalone: 'Standalone report',
      lag_ms: 'ms behind', reachable: 'reachable', at_index: 'at applied index'
    },
    ja: {
      title: 'tandem コンソール', overview: '概要', sites: 'サイトと BCP', capacity: 'キャパシティ',
      backups: 'バックアップと監査', logout: 'ログアウト', login: 'ログイン', user: 'ユーザー',
      password: 'パスワード', login_failed: 'ログインに失敗しました', language: '言語',
      signed_in_as: 'ログイン中', roles: 'ロール', via: '認証', served_by: '応答ノード',
      live: 'ライブ', reconnecting: '再接続中…', polling: 'ストリーム切断: 30 秒ごとに更新',
      failure_tolerance: '障害許容数', more_nodes: '台までのノード障害に耐えられます',
      site_loss: 'サイト全体の喪失', survivable: '継続可能', not_survivable: '継続不可',
      dr_mode: 'DR モード', rpo_exposure: 'RPO 露出', leader: 'リーダー', epoch: 'エポック',
      none: 'なし', nodes: 'ノード', node: 'ノード', site: 'サイト', role: 'ロール',
      raft_state: 'Raft 状態', term: 'ターム', commit: 'コミット', applied: '適用済み', lag: '遅延',
      entries: 'エントリ', last_contact: '最終応答', fsync_p99: 'fsync p99',
      free_disk: 'ディスク空き', cert_days: '証明書の残り日数', flags: 'フラグ', fenced: 'フェンス',
      quarantined: '隔離中', unreachable: '到達不能', leader_mark: 'リーダー',
      not_exposed: 'API では公開されていません', only_self: 'そのノードからの報告はまだありません',
      state: '状態', since: '開始', reason: '理由', by: '実行者', decisions: '決定の履歴',
      drills: '訓練の履歴', time: '時刻', action: '操作', member: 'メンバー',
      jobs_moved: '移動したジョブ', jobs_returned: '戻したジョブ', result: '結果',
      passed: '合格', failed: '不合格', open_report: 'レポート', invoke: 'BCP 発動',
      revoke: 'BCP 解除', drill: '訓練を実行', ask_reason: '理由 (監査証跡に記録されます)',
      confirm: '実行', cancel: 'キャンセル', dry_run: '変更内容 (ドライラン)',
      role_changes: 'ロールの変更', leadership_moves: 'リーダーの移動',
      refusal: '拒否されます', reason_required: '理由を入力してください',
      revoke_note: 'サイトはスタンバイとして追いつき、昇格して active に戻ります。フェイルバック' +
        'を選ぶとリーダーと移動したジョブも戻ります。',
      failback: 'フェイルバック (リーダーと移動ジョブを戻す)', working: '実行中…',
      done: '完了', drill_report: '訓練レポート', timeline: 'タイムライン',
      latency_chart: '切替中のプローブ書き込みレイテンシ', rto: 'RTO', rpo: 'RPO',
      writes_missing: '件の確認済み書き込みが欠落', digests: '状態ダイジェスト',
      equal: '一致', differ: '不一致', probe: 'プローブ書き込み', sent: '送信', acked: '確認',
      verified: '検証済み', ms: 'ミリ秒', takeover: 'テイクオーバー', failback_step: 'フェイルバック',
      no_latency: 'この訓練はレイテンシ記録の導入前に記録されました。',
      print: '印刷', capacity_title: 'サイトごとのキャパシティとバックログ',
      backlog_hours: 'バックログ時間', jobs_at_risk: '期限リスクのジョブ', queued: '待機',
      in_progress: '処理中', plan: 'リバランス計画', before: '変更前', after: '変更後',
      moves: '移動', apply_plan: 'この計画を適用', no_moves: '移動するものはありません。',
      plan_needs_planner: 'リバランス計画はプランナーに表示されます。',
      newest_backup: 'サイトごとの最新バックアップ', verification: '検証',
      no_backups: 'バックアップはまだありません。', audit_chain: '監査チェーン', intact: '正常',
      broken: '破損', records: '件', failed_logins: '最近のログイン失敗と拒否',
      count: '件数', source: '接続元', auditor_only: '監査者に表示されます。', last: '最終',
      error: 'エラー', generated: '作成', standalone: '単体レポート',
      lag_ms: 'ミリ秒遅れ', reachable: '到達可能', at_index: '適用インデックス'
    }
  };
  var KEY = 'tandem.lang';

  function pick() {
    var saved = null;
    try { saved = window.localStorage.getItem(KEY); } catch (e) { saved = null; }
    if (saved && strings[saved]) { return saved; }
    var wanted = navigator.languages || [navigator.language || 'en'];
    for (var i = 0; i < wanted.length; i++) {
      var code = String(wanted[i]).toLowerCase().split('-')[0];
      if (strings[code]) { return code; }
    }
    return 'en';
  }

  var lang = pick();

  function t(key) {
    var table = strings[lang];
    if (Object.prototype.hasOwnProperty.call(table, key)) { return table[key]; }
    return Object.prototype.hasOwnProperty.call(strings.en, key) ? strings.en[key] : key;
  }

  function set(code) {
    if (!strings[code]) { return; }
    lang = code;
    try { window.localStorage.setItem(KEY, code); } catch (e) { /* file:// without storage */ }
    document.documentElement.lang = code;
  }

  /* A <select> that switches the language and calls changed(). */
  function switcher(changed) {
    var select = document.createElement('select');
    select.id = 'lang';
    select.setAttribute('aria-label', 'Language / 言語');
    [['en', 'English'], ['ja', '日本語']].forEach(function (pair) {
      var option = document.createElement('option');
      option.value = pair[0];
      option.textContent = pair[1];
      option.selected = pair[0] === lang;
      select.appendChild(option);
    });
    select.addEventListener('change', function () { set(select.value); changed(); });
    return select;
  }

  document.documentElement.lang = lang;
  return { t: t, set: set, lang: function () { return lang; }, switcher: switcher,
           keys: function (code) { return Object.keys(strings[code] || {}); } };
})();
