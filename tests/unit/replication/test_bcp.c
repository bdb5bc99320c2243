/* Unit tests of replication/bcp: the table of allowed site moves (every other move refused,
 * in the table and through apply) and the work moves of an invoke and of a failback. */
#include "test_domain_fixture.h"

#include "replication/bcp/moves.h"
#include "replication/bcp/sites.h"

#define SITE_STATES_TRIED  (TANDEM_SITE_STATE_COUNT + 2)  /* -1 .. COUNT */
#define SITE_CHANGES_TRIED (TANDEM_SITE_CHANGE_COUNT + 2) /* -1 .. COUNT */

/* The moves the BCP design allows, written out independently of sites.c's table. */
static int expected_next(int from, int change)
{
    if (from == TANDEM_SITE_ACTIVE && change == TANDEM_SITE_INVOKE) {
        return TANDEM_SITE_INVOKED;
    }
    if (from == TANDEM_SITE_INVOKED && change == TANDEM_SITE_REVOKE) {
        return TANDEM_SITE_RECOVERING;
    }
    if (from == TANDEM_SITE_RECOVERING && change == TANDEM_SITE_INVOKE) {
        return TANDEM_SITE_INVOKED;
    }
    if (from == TANDEM_SITE_RECOVERING && change == TANDEM_SITE_RECOVERED) {
        return TANDEM_SITE_ACTIVE;
    }
    return -1;
}

static Tandem__Command *site_update(struct dom_cmd *c, Tandem__SiteUpdate *u, const char *site,
                                    int change)
{
    Tandem__Command *command = dom_command(c, NULL);
    tandem__site_update__init(u);
    u->site = (char *)site;
    u->action = (Tandem__SiteUpdate__Action)change;
    u->reason = "test";
    u->by = "operator";
    command->body_case = TANDEM__COMMAND__BODY_SITE_UPDATE;
    command->site_update = u;
    return command;
}

/* Applies one site change; returns its status. */
static int site_change(struct dom *d, const char *site, int change, bool failback)
{
    struct dom_cmd c;
    Tandem__SiteUpdate u;
    Tandem__Command *command = site_update(&c, &u, site, change);
    u.failback = failback;
    return dom_apply(d, command);
}

/* The stored record of site (state and epoch). */
static struct tandem_site site_now(struct dom *d, const char *name)
{
    static struct tandem_site_table table;
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_sites_load(&d->store, txn, &table), 0);
    mdb_txn_abort(txn);
    assert_true(tandem_site_table_ok(&table));
    const struct tandem_site *site = tandem_site_table_find(&table, name);
    assert_non_null(site);
    return *site;
}

static Tandem__JobRecord *job_now(struct dom *d, const char *id)
{
    Tandem__JobRecord *job = NULL;
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_job_get(&d->store, txn, id, &job), 0);
    mdb_txn_abort(txn);
    assert_non_null(job);
    return job;
}

static void job_expect(struct dom *d, const char *id, const char *site, const char *bcp_from,
                       const char *status)
{
    Tandem__JobRecord *job = job_now(d, id);
    assert_string_equal(job->site, site);
    assert_string_equal(job->bcp_from, bcp_from);
    assert_string_equal(tandem_job_status_name(job->status), status);
    tandem__job_record__free_unpacked(job, NULL);
}

/* The answer's count of jobs moved away by an invoke ("jobs_moved") or returned by a revoke
 * ("jobs_returned"); the other name must be absent. */
static json_int_t jobs_counted(struct dom *d, const char *name, const char *absent)
{
    json_t *body = dom_body(d);
    json_int_t moved = json_integer_value(json_object_get(body, name));
    assert_true(json_is_integer(json_object_get(body, name)));
    assert_null(json_object_get(body, absent));
    json_decref(body);
    return moved;
}

static json_int_t jobs_moved(struct dom *d)
{
    return jobs_counted(d, "jobs_moved", "jobs_returned");
}

static json_int_t jobs_returned(struct dom *d)
{
    return jobs_counted(d, "jobs_returned", "jobs_moved");
}

/* A fresh store with east and west registered (both active). */
static void two_sites(struct dom *d)
{
    dom_open(d);
    assert_int_equal(site_change(d, "east", TANDEM_SITE_REGISTER, false), 200);
    assert_int_equal(site_change(d, "west", TANDEM_SITE_REGISTER, false), 200);
}

static void job_create(struct dom *d, const char *id, const char *site)
{
    struct dom_cmd c;
    dom_apply_expect(d, dom_job_create(&c, id, "acme", site, NULL), 201);
}

static void job_act(struct dom *d, const char *id, int action, const char *operator_name)
{
    struct dom_cmd c;
    dom_apply_expect(d, dom_job_action(&c, id, action, operator_name), 200);
}

/* Every (from, change) pair, in range and out of it: the table allows exactly the four moves
 * of the design, and REGISTER and PREFER never move a site. */
static void test_transition_table(void **state)
{
    (void)state;
    for (int from = -1; from < SITE_STATES_TRIED - 1; from++) {
        for (int change = -1; change < SITE_CHANGES_TRIED - 1; change++) {
            assert_int_equal(tandem_site_next_state(from, change), expected_next(from, change));
        }
    }
    assert_string_equal(tandem_site_state_name(TANDEM_SITE_RECOVERING), "recovering");
    assert_string_equal(tandem_site_state_name(TANDEM_SITE_STATE_COUNT), "unknown");
}

/* Drives east into from (active, invoked or recovering). */
static void east_into(struct dom *d, int from)
{
    if (from != TANDEM_SITE_ACTIVE) {
        assert_int_equal(site_change(d, "east", TANDEM_SITE_INVOKE, false), 200);
    }
    if (from == TANDEM_SITE_RECOVERING) {
        assert_int_equal(site_change(d, "east", TANDEM_SITE_REVOKE, false), 200);
    }
    assert_int_equal(site_now(d, "east").state, from);
}

/* Through apply: every disallowed change is a 409 result and leaves the record as it was;
 * every allowed one moves it where the table says and advances the epoch but for recovered. */
static void test_every_disallowed_move_refused(void **state)
{
    (void)state;
    static const int changes[] = {TANDEM_SITE_INVOKE, TANDEM_SITE_REVOKE, TANDEM_SITE_RECOVERED};
    for (int from = 0; from < TANDEM_SITE_STATE_COUNT; from++) {
        for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
            struct dom d;
            two_sites(&d);
            east_into(&d, from);
            struct tandem_site before = site_now(&d, "east");
            int status = site_change(&d, "east", changes[i], false);
            struct tandem_site after = site_now(&d, "east");
            int next = expected_next(from, changes[i]);
            if (next < 0) {
                assert_int_equal(status, 409);
                assert_int_equal(after.state, before.state);
                assert_int_equal(after.epoch, before.epoch);
            } else {
                assert_int_equal(status, 200);
                assert_int_equal(after.state, next);
                assert_int_equal(after.epoch,
                                 before.epoch + (changes[i] == TANDEM_SITE_RECOVERED ? 0 : 1));
            }
            dom_check_indexes(&d);
            dom_close(&d);
        }
    }
}

/* A witness holds no work: invoking it is refused, and so is invoking the last serving site. */
static void test_invoke_guards(void **state)
{
    (void)state;
    struct dom d;
    struct dom_cmd c;
    Tandem__SiteUpdate u;
    two_sites(&d);
    Tandem__Command *command = site_update(&c, &u, "witness", TANDEM_SITE_REGISTER);
    u.witness = true;
    dom_apply_expect(&d, command, 200);
    assert_int_equal(site_change(&d, "witness", TANDEM_SITE_INVOKE, false), 409);
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_INVOKE, false), 200);
    assert_int_equal(site_change(&d, "west", TANDEM_SITE_INVOKE, false), 409);
    assert_int_equal(site_now(&d, "witness").state, TANDEM_SITE_ACTIVE);
    assert_int_equal(site_now(&d, "west").state, TANDEM_SITE_ACTIVE);
    assert_int_equal(site_change(&d, "nowhere", TANDEM_SITE_INVOKE, false), 404);
    dom_close(&d);
}

/* An invoke moves the site's queued and in-progress jobs to the site taking over; an
 * in-progress job keeps its stage and loses its operator; held and finished work stays. */
static void test_invoke_moves_open_work(void **state)
{
    (void)state;
    struct dom d;
    two_sites(&d);
    job_create(&d, "Q1", "east");
    job_create(&d, "P1", "east");
    job_act(&d, "P1", TANDEM_JOB_ACTION_ADVANCE, NULL);
    job_act(&d, "P1", TANDEM_JOB_ACTION_OPERATOR, "alice");
    job_create(&d, "H1", "east");
    job_act(&d, "H1", TANDEM_JOB_ACTION_HOLD, NULL);
    job_create(&d, "C1", "east");
    job_act(&d, "C1", TANDEM_JOB_ACTION_CANCEL, NULL);
    job_create(&d, "W1", "west");

    MDB_txn *txn = dom_read(&d);
    json_t *listed = json_array();
    assert_int_equal(tandem_bcp_jobs_list(&d.store, txn, "east", false, listed), 0);
    mdb_txn_abort(txn);
    assert_int_equal(json_array_size(listed), 2); /* the dry run names what will move */
    json_decref(listed);

    assert_int_equal(site_change(&d, "east", TANDEM_SITE_INVOKE, false), 200);
    assert_int_equal(jobs_moved(&d), 2);
    job_expect(&d, "Q1", "west", "east", "queued");
    job_expect(&d, "P1", "west", "east", "in_progress");
    job_expect(&d, "H1", "east", "", "on_hold");
    job_expect(&d, "C1", "east", "", "cancelled");
    job_expect(&d, "W1", "west", "", "queued");
    Tandem__JobRecord *p1 = job_now(&d, "P1");
    assert_int_equal(p1->stage, 1);
    assert_string_equal(p1->operator_, "");
    tandem__job_record__free_unpacked(p1, NULL);

    /* New work does not land at an invoked site either (domain learns it through the ops). */
    struct dom_cmd c;
    dom_apply_expect(&d, dom_job_create(&c, "N1", "acme", "east", NULL), 409);
    dom_check_indexes(&d);
    dom_close(&d);
}

/* A revoke with failback brings back what BCP moved and nobody started elsewhere; the rest
 * stays where it is and forgets where it came from. */
static void test_failback_returns_still_queued(void **state)
{
    (void)state;
    struct dom d;
    two_sites(&d);
    job_create(&d, "Q1", "east");
    job_create(&d, "Q2", "east");
    job_create(&d, "P1", "east");
    job_act(&d, "P1", TANDEM_JOB_ACTION_ADVANCE, NULL);
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_INVOKE, false), 200);
    assert_int_equal(jobs_moved(&d), 3);
    job_act(&d, "Q2", TANDEM_JOB_ACTION_ADVANCE, NULL); /* started at west meanwhile */

    /* The revoke's dry run names exactly what the failback brings back. */
    MDB_txn *txn = dom_read(&d);
    json_t *listed = json_array();
    assert_int_equal(tandem_bcp_jobs_list(&d.store, txn, "east", true, listed), 0);
    mdb_txn_abort(txn);
    assert_int_equal(json_array_size(listed), 1);
    assert_string_equal(json_string_value(json_array_get(listed, 0)), "Q1");
    json_decref(listed);

    assert_int_equal(site_change(&d, "east", TANDEM_SITE_REVOKE, true), 200);
    assert_int_equal(jobs_returned(&d), 1);
    job_expect(&d, "Q1", "east", "", "queued");
    job_expect(&d, "Q2", "west", "", "in_progress");
    job_expect(&d, "P1", "west", "", "in_progress");
    json_t *body = dom_body(&d);
    assert_string_equal(json_string_value(json_object_get(body, "preferred_site")), "east");
    json_decref(body);

    /* A plain revoke (no failback, no return_jobs) moves nothing back. */
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_INVOKE, false), 200);
    assert_int_equal(jobs_moved(&d), 1);
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_REVOKE, false), 200);
    assert_int_equal(jobs_returned(&d), 0);
    job_expect(&d, "Q1", "west", "east", "queued");
    dom_check_indexes(&d);
    dom_close(&d);
}

/* Records home records for name (site east, voter) and the others, like the controller does. */
static void homes_record(struct dom *d, const char *const *names, size_t n, bool forget)
{
    struct dom_cmd c;
    Tandem__Command *command = dom_command(&c, NULL);
    Tandem__MemberHomeSet set = TANDEM__MEMBER_HOME_SET__INIT;
    Tandem__MemberHome homes[4], *ptrs[4];
    char addresses[4][128];
    assert_true(n <= 4);
    for (size_t i = 0; i < n; i++) {
        tandem__member_home__init(&homes[i]);
        snprintf(addresses[i], sizeof addresses[i], "%s|east|127.0.0.1:%zu|http://127.0.0.1:%zu",
                 names[i], 9000 + i, 8000 + i);
        homes[i].name = (char *)names[i];
        homes[i].site = "east";
        homes[i].address = addresses[i];
        homes[i].role = TANDEM_ROLE_VOTER;
        homes[i].forget = forget;
        ptrs[i] = &homes[i];
    }
    set.n_members = n;
    set.members = ptrs;
    command->body_case = TANDEM__COMMAND__BODY_MEMBER_HOME_SET;
    command->member_home_set = &set;
    dom_apply_expect(d, command, 200);
}

static struct tandem_site_table *table_now(struct dom *d)
{
    static struct tandem_site_table table;
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_sites_load(&d->store, txn, &table), 0);
    mdb_txn_abort(txn);
    return &table;
}

/* A forced invoke marks the home records of the members it names as lost (others, and names
 * without a home record, are left alone); removing a lost member forgets its record. */
static void test_forced_invoke_marks_lost_members(void **state)
{
    (void)state;
    struct dom d;
    struct dom_cmd c;
    Tandem__SiteUpdate u;
    static const char *const names[] = {"east-1", "east-2", "west-1"};
    char *lost[] = {"east-1", "east-2", "nobody"};
    two_sites(&d);
    homes_record(&d, names, 3, false);
    Tandem__Command *command = site_update(&c, &u, "east", TANDEM_SITE_INVOKE);
    u.force = true;
    u.n_lost_members = 3;
    u.lost_members = lost;
    dom_apply_expect(&d, command, 200);
    struct tandem_site_table *t = table_now(&d);
    assert_int_equal(t->n_homes, 3);
    assert_true(tandem_site_table_home(t, "east-1")->lost);
    assert_true(tandem_site_table_home(t, "east-2")->lost);
    assert_false(tandem_site_table_home(t, "west-1")->lost);
    assert_true(site_now(&d, "east").forced);
    homes_record(&d, names + 1, 1, true);
    json_t *body = dom_body(&d);
    assert_string_equal(json_string_value(json_object_get(body, "removed")), "east-2");
    json_decref(body);
    t = table_now(&d);
    assert_int_equal(t->n_homes, 2);
    assert_null(tandem_site_table_home(t, "east-2"));
    assert_true(tandem_site_table_home(t, "east-1")->lost);
    dom_check_indexes(&d);
    dom_close(&d);
}

/* The newest decision as JSON (caller decrefs). */
static json_t *last_decision(struct dom *d)
{
    MDB_txn *txn = dom_read(d);
    json_t *list = tandem_sites_decisions_json(&d->store, txn, 1);
    mdb_txn_abort(txn);
    assert_non_null(list);
    json_t *last = json_incref(json_array_get(list, 0));
    json_decref(list);
    assert_non_null(last);
    return last;
}

static const char *preferred_now(struct dom *d)
{
    static struct tandem_site_table table;
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_sites_load(&d->store, txn, &table), 0);
    mdb_txn_abort(txn);
    return table.preferred_site;
}

/* revoke --failback and an invoke of the preferred site move the preference: each move is a
 * recorded decision saying who, why, and from which site to which. */
static void test_preference_moves_are_recorded(void **state)
{
    (void)state;
    struct dom d;
    two_sites(&d);
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_INVOKE, false), 200);
    assert_string_equal(preferred_now(&d), ""); /* none was set: nothing to record */
    json_t *last = last_decision(&d);
    assert_string_equal(json_string_value(json_object_get(last, "action")), "invoke");
    json_decref(last);
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_REVOKE, true), 200);
    assert_string_equal(preferred_now(&d), "east");
    last = last_decision(&d);
    assert_string_equal(json_string_value(json_object_get(last, "action")), "revoke");
    json_decref(last);
    MDB_txn *txn = dom_read(&d);
    json_t *list = tandem_sites_decisions_json(&d.store, txn, 2);
    mdb_txn_abort(txn);
    json_t *prefer = json_array_get(list, 0); /* recorded with the revoke, just before it */
    assert_string_equal(json_string_value(json_object_get(prefer, "action")), "prefer");
    assert_string_equal(json_string_value(json_object_get(prefer, "site")), "east");
    assert_string_equal(json_string_value(json_object_get(prefer, "by")), "operator");
    assert_string_equal(json_string_value(json_object_get(prefer, "reason")),
                        "revoke --failback of east: preferred site none -> east (test)");
    json_decref(list);
    /* Recovered, then invoked again: the preference it held is cleared, and that is recorded. */
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_RECOVERED, false), 200);
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_INVOKE, false), 200);
    assert_string_equal(preferred_now(&d), "");
    txn = dom_read(&d);
    list = tandem_sites_decisions_json(&d.store, txn, 2);
    mdb_txn_abort(txn);
    prefer = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(prefer, "action")), "prefer");
    assert_string_equal(json_string_value(json_object_get(prefer, "reason")),
                        "invoke of east: preferred site east -> none (test)");
    json_decref(list);
    /* An invoke of a site that is not the preferred one leaves the preference unrecorded. */
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_REVOKE, true), 200);
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_RECOVERED, false), 200);
    assert_int_equal(site_change(&d, "west", TANDEM_SITE_INVOKE, false), 200);
    assert_string_equal(preferred_now(&d), "east");
    last = last_decision(&d);
    assert_string_equal(json_string_value(json_object_get(last, "action")), "invoke");
    json_decref(last);
    txn = dom_read(&d);
    list = tandem_sites_decisions_json(&d.store, txn, 2);
    mdb_txn_abort(txn);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "action")),
                        "recovered");
    json_decref(list);
    dom_close(&d);
}

/* A forced invoke carrying the seed's log history stores it under its epoch, where a fenced
 * node's rejoin finds it; a malformed history is left out and the invoke still stands. */
static void test_forced_invoke_records_the_seed_history(void **state)
{
    (void)state;
    struct dom d;
    struct dom_cmd c;
    Tandem__SiteUpdate u;
    Tandem__ForcedHistory h = TANDEM__FORCED_HISTORY__INIT;
    uint64_t terms[] = {1, 4}, starts[] = {1, 1000};
    two_sites(&d);
    Tandem__Command *command = site_update(&c, &u, "west", TANDEM_SITE_INVOKE);
    h.epoch = 2;
    h.seed = "east-1";
    h.first_index = 1;
    h.last_index = 1057;
    h.last_term = 4;
    h.start_terms = terms;
    h.n_start_terms = 2;
    h.start_indexes = starts;
    h.n_start_indexes = 2;
    u.force = true;
    u.history = &h;
    dom_apply_expect(&d, command, 200);
    MDB_txn *txn = dom_read(&d);
    json_t *forced = tandem_sites_forced_json(&d.store, txn);
    mdb_txn_abort(txn);
    assert_int_equal(json_array_size(forced), 1);
    json_t *r = json_array_get(forced, 0);
    assert_int_equal(json_integer_value(json_object_get(r, "epoch")), 2);
    assert_string_equal(json_string_value(json_object_get(r, "seed")), "east-1");
    assert_int_equal(json_integer_value(json_object_get(r, "last_index")), 1057);
    assert_int_equal(json_integer_value(json_object_get(r, "index")), (json_int_t)d.index);
    json_t *second = json_array_get(json_object_get(r, "terms"), 1);
    assert_int_equal(json_integer_value(json_array_get(second, 0)), 4);
    assert_int_equal(json_integer_value(json_array_get(second, 1)), 1000);
    json_decref(forced);

    /* Terms that do not rise: not stored, the invoke of east still applies. */
    assert_int_equal(site_change(&d, "west", TANDEM_SITE_REVOKE, false), 200);
    assert_int_equal(site_change(&d, "west", TANDEM_SITE_RECOVERED, false), 200);
    command = site_update(&c, &u, "east", TANDEM_SITE_INVOKE);
    terms[1] = 1;
    h.epoch = 3;
    u.force = true;
    u.history = &h;
    dom_apply_expect(&d, command, 200);
    assert_int_equal(site_now(&d, "east").state, TANDEM_SITE_INVOKED);
    txn = dom_read(&d);
    forced = tandem_sites_forced_json(&d.store, txn);
    mdb_txn_abort(txn);
    assert_int_equal(json_array_size(forced), 1);
    json_decref(forced);
    dom_close(&d);
}

/* Applies one incident report for decision; returns its status. */
static int incident_store(struct dom *d, uint64_t decision, const char *report)
{
    struct dom_cmd c;
    Tandem__IncidentStore store;
    Tandem__IncidentRecord record;
    Tandem__Command *command = dom_command(&c, NULL);
    tandem__incident_store__init(&store);
    tandem__incident_record__init(&record);
    record.decision_seq = decision;
    record.site = "east";
    record.kind = "auto";
    record.decided_ms = 1000 + (int64_t)decision;
    record.longest_write_gap_ms = (int64_t)decision;
    record.jobs_moved = 2;
    record.report_json = (char *)report;
    store.record = &record;
    command->body_case = TANDEM__COMMAND__BODY_INCIDENT_STORE;
    command->incident_store = &store;
    return dom_apply(d, command);
}

static void decision_proposer(void *arg, const Tandem__SiteDecisionRecord *d)
{
    uint64_t *proposers = arg;
    proposers[d->seq < 8 ? d->seq : 0] = d->proposer_id;
}

/* One incident report per invoke decision, the newest TANDEM_INCIDENTS_KEPT kept, newest
 * listed first; malformed ones refused; the invoke decision carries the jobs it moved. */
static void test_incidents(void **state)
{
    struct dom d;
    (void)state;
    two_sites(&d);
    job_create(&d, "Q1", "east");
    assert_int_equal(site_change(&d, "east", TANDEM_SITE_INVOKE, false), 200);
    MDB_txn *txn = dom_read(&d);
    json_t *decisions = tandem_sites_decisions_json(&d.store, txn, 1);
    mdb_txn_abort(txn);
    json_t *invoke = json_array_get(decisions, 0);
    assert_string_equal(json_string_value(json_object_get(invoke, "action")), "invoke");
    assert_int_equal(json_integer_value(json_object_get(invoke, "jobs_moved")), 1);
    json_decref(decisions);
    /* every decision names the node that proposed it: the incident's follower */
    uint64_t proposers[8] = {0};
    txn = dom_read(&d);
    assert_int_equal(
        tandem_sites_decisions_after(&d.store, txn, 0, 8, decision_proposer, proposers), 0);
    mdb_txn_abort(txn);
    for (unsigned seq = 1; seq <= 3; seq++) { /* register east, register west, invoke east */
        assert_int_equal(proposers[seq], DOM_PROPOSER);
    }

    assert_int_equal(incident_store(&d, 7, "{\"timeline\":{}}"), 200);
    assert_int_equal(incident_store(&d, 7, "{}"), 409); /* once per decision */
    assert_int_equal(incident_store(&d, 0, "{}"), 400);
    for (uint64_t n = 8; n < 8 + TANDEM_INCIDENTS_KEPT; n++) {
        assert_int_equal(incident_store(&d, n, "{}"), 200);
    }
    txn = dom_read(&d);
    json_t *list = tandem_sites_incidents_json(&d.store, txn, TANDEM_INCIDENTS_KEPT + 5, true);
    json_t *first = tandem_sites_incidents_json(&d.store, txn, 1, false);
    mdb_txn_abort(txn);
    assert_int_equal(json_array_size(list), TANDEM_INCIDENTS_KEPT); /* 7 was pruned */
    json_t *newest = json_array_get(list, 0), *oldest = json_array_get(list, 99);
    assert_int_equal(json_integer_value(json_object_get(newest, "decision_seq")),
                     7 + TANDEM_INCIDENTS_KEPT);
    assert_int_equal(json_integer_value(json_object_get(oldest, "decision_seq")), 8);
    assert_true(json_is_object(json_object_get(newest, "report")));
    assert_null(json_object_get(json_array_get(first, 0), "report"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(first, 0), "jobs_moved")),
                     2);
    json_decref(list);
    json_decref(first);
    assert_true(site_now(&d, "east").state == TANDEM_SITE_INVOKED); /* the table still loads */
    dom_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transition_table),
        cmocka_unit_test(test_every_disallowed_move_refused),
        cmocka_unit_test(test_invoke_guards),
        cmocka_unit_test(test_invoke_moves_open_work),
        cmocka_unit_test(test_failback_returns_still_queued),
        cmocka_unit_test(test_incidents),
        cmocka_unit_test(test_forced_invoke_marks_lost_members),
        cmocka_unit_test(test_preference_moves_are_recorded),
        cmocka_unit_test(test_forced_invoke_records_the_seed_history),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
