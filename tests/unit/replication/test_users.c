/* Unit tests of replication/identity users and credentials: the apply rules of the user commands
 * (create, roles, disable, password history, delete, lockout, generation) and the scrypt hashes,
 * the password rule and the bearer tokens (sign, verify, expiry, tamper, revocation). */
#include "test_domain_fixture.h"

#include "replication/bcp/sites.h"
#include "replication/identity/credentials.h"
#include "replication/identity/users.h"

#define ROLE_VIEWER   1u /* roles.h bits (roles.h clashes with member.h's enum tandem_role) */
#define ROLE_OPERATOR 2u
#define TEST_LOG2_N   10 /* small N: the tests check behaviour, not cost */
#define LOCK_MS       (15 * 60000LL)

struct user_cmd {
    Tandem__Command command;
    Tandem__Actor actor;
    Tandem__UserCreate create;
    Tandem__UserUpdate update;
    Tandem__UserDelete del;
    Tandem__AuthAttempt attempt;
    Tandem__TokenKeySet key;
    Tandem__SiteUpdate site;
};

static Tandem__Command *cmd_init(struct user_cmd *c)
{
    memset(c, 0, sizeof *c);
    tandem__command__init(&c->command);
    tandem__actor__init(&c->actor);
    c->actor.user = "secadmin";
    c->actor.site = "east";
    return &c->command;
}

static void register_sites(struct dom *d)
{
    const char *sites[] = {"east", "west"};
    for (size_t i = 0; i < 2; i++) {
        struct user_cmd c;
        Tandem__Command *command = cmd_init(&c);
        tandem__site_update__init(&c.site);
        c.site.site = (char *)sites[i];
        c.site.action = (Tandem__SiteUpdate__Action)TANDEM_SITE_REGISTER;
        c.site.reason = "test";
        c.site.by = "test";
        command->body_case = TANDEM__COMMAND__BODY_SITE_UPDATE;
        command->site_update = &c.site;
        dom_apply_expect(d, command, 200);
    }
}

static const char *fake_hash(unsigned i)
{
    static char hash[8][64];
    snprintf(hash[i % 8], sizeof hash[0], "scrypt$1024$8$1$salt%u$hash%u", i, i);
    return hash[i % 8];
}

static int create(struct dom *d, const char *name, uint32_t roles, const char *site)
{
    struct user_cmd c;
    Tandem__Command *command = cmd_init(&c);
    tandem__user_create__init(&c.create);
    c.create.actor = &c.actor;
    c.create.name = (char *)name;
    c.create.roles = roles;
    c.create.site = (char *)site;
    c.create.password_hash = (char *)fake_hash(0);
    command->body_case = TANDEM__COMMAND__BODY_USER_CREATE;
    command->user_create = &c.create;
    return dom_apply(d, command);
}

static int update(struct dom *d, const char *name, Tandem__UserUpdate__Action action,
                  uint32_t roles, const char *hash)
{
    struct user_cmd c;
    Tandem__Command *command = cmd_init(&c);
    tandem__user_update__init(&c.update);
    c.update.actor = &c.actor;
    c.update.name = (char *)name;
    c.update.action = action;
    c.update.roles = roles;
    c.update.password_hash = (char *)hash;
    c.update.history_kept = 5;
    command->body_case = TANDEM__COMMAND__BODY_USER_UPDATE;
    command->user_update = &c.update;
    return dom_apply(d, command);
}

static int delete_user(struct dom *d, const char *name)
{
    struct user_cmd c;
    Tandem__Command *command = cmd_init(&c);
    tandem__user_delete__init(&c.del);
    c.del.actor = &c.actor;
    c.del.name = (char *)name;
    command->body_case = TANDEM__COMMAND__BODY_USER_DELETE;
    command->user_delete = &c.del;
    return dom_apply(d, command);
}

static int attempt(struct dom *d, const char *name, bool success)
{
    struct user_cmd c;
    Tandem__Command *command = cmd_init(&c);
    tandem__auth_attempt__init(&c.attempt);
    c.attempt.name = (char *)name;
    c.attempt.success = success;
    c.attempt.lockout_failures = 5;
    c.attempt.lockout_ms = LOCK_MS;
    command->body_case = TANDEM__COMMAND__BODY_AUTH_ATTEMPT;
    command->auth_attempt = &c.attempt;
    return dom_apply(d, command);
}

static int key_set(struct dom *d, uint8_t fill)
{
    struct user_cmd c;
    uint8_t key[TANDEM_TOKEN_KEY_LEN];
    memset(key, fill, sizeof key);
    Tandem__Command *command = cmd_init(&c);
    tandem__token_key_set__init(&c.key);
    c.key.key.data = key;
    c.key.key.len = sizeof key;
    command->body_case = TANDEM__COMMAND__BODY_TOKEN_KEY_SET;
    command->token_key_set = &c.key;
    return dom_apply(d, command);
}

static struct tandem_user user_now(struct dom *d, const char *name, int expect)
{
    struct tandem_user u;
    memset(&u, 0, sizeof u);
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_user_get(txn, &d->store, name, &u), expect);
    mdb_txn_abort(txn);
    return u;
}

static Tandem__UserRecord *record_now(struct dom *d, const char *name)
{
    Tandem__UserRecord *r = NULL;
    MDB_txn *txn = dom_read(d);
    assert_int_equal(tandem_user_record_get(txn, &d->store, name, &r), 0);
    mdb_txn_abort(txn);
    assert_non_null(r);
    return r;
}

static void body_has(struct dom *d, const char *text)
{
    if (strstr(d->results[0].body, text) == NULL) {
        fail_msg("expected \"%s\" in %s", text, d->results[0].body);
    }
}

static void test_create_rules(void **state)
{
    (void)state;
    struct dom d;
    dom_open(&d);
    register_sites(&d);
    assert_int_equal(create(&d, "admin", ROLE_VIEWER, "east"), 400);
    body_has(&d, "bootstrap");
    assert_int_equal(create(&d, "bad name", ROLE_VIEWER, "east"), 400);
    assert_int_equal(create(&d, "", ROLE_VIEWER, "east"), 400);
    assert_int_equal(create(&d, "alice", 0, "east"), 400);
    assert_int_equal(create(&d, "alice", 1u << 9, "east"), 400);
    assert_int_equal(create(&d, "alice", ROLE_VIEWER, "mars"), 400);
    body_has(&d, "no such site: mars");
    assert_int_equal(create(&d, "alice", ROLE_VIEWER, ""), 400);
    user_now(&d, "alice", TANDEM_NOTFOUND);
    d.now_ms = DOM_T0 + 5;
    assert_int_equal(create(&d, "alice", ROLE_VIEWER | ROLE_OPERATOR, "west"), 201);
    assert_null(strstr(d.results[0].body, "scrypt")); /* never a hash in an answer */
    assert_int_equal(create(&d, "alice", ROLE_VIEWER, "east"), 409);
    struct tandem_user u = user_now(&d, "alice", TANDEM_OK);
    assert_string_equal(u.site, "west");
    assert_int_equal(u.roles, ROLE_VIEWER | ROLE_OPERATOR);
    assert_int_equal(u.created_ms, DOM_T0 + 5);
    assert_int_equal(u.password_changed_ms, DOM_T0 + 5);
    assert_false(u.disabled);
    user_now(&d, "admin", TANDEM_NOTFOUND);
    dom_close(&d);
}

static void test_generation(void **state)
{
    (void)state;
    struct dom d;
    dom_open(&d);
    register_sites(&d);
    assert_int_equal(create(&d, "bob", ROLE_VIEWER, "east"), 201);
    uint64_t g0 = user_now(&d, "bob", TANDEM_OK).generation;
    assert_int_equal(update(&d, "bob", TANDEM__USER_UPDATE__ACTION__ROLES, ROLE_OPERATOR, NULL),
                     200);
    struct tandem_user u = user_now(&d, "bob", TANDEM_OK);
    assert_int_equal(u.roles, ROLE_OPERATOR);
    assert_true(u.generation > g0);
    uint64_t g1 = u.generation;
    assert_int_equal(update(&d, "bob", TANDEM__USER_UPDATE__ACTION__ROLES, 0, NULL), 400);
    assert_int_equal(user_now(&d, "bob", TANDEM_OK).generation, g1);
    assert_int_equal(update(&d, "bob", TANDEM__USER_UPDATE__ACTION__DISABLE, 0, NULL), 200);
    u = user_now(&d, "bob", TANDEM_OK);
    assert_true(u.disabled);
    assert_true(u.generation > g1);
    uint64_t g2 = u.generation;
    assert_int_equal(update(&d, "bob", TANDEM__USER_UPDATE__ACTION__ENABLE, 0, NULL), 200);
    assert_false(user_now(&d, "bob", TANDEM_OK).disabled);
    assert_int_equal(update(&d, "bob", TANDEM__USER_UPDATE__ACTION__PASSWORD, 0, fake_hash(1)),
                     200);
    assert_true(user_now(&d, "bob", TANDEM_OK).generation > g2);
    assert_int_equal(update(&d, "bob", TANDEM__USER_UPDATE__ACTION__PASSWORD, 0, "plain"), 400);
    assert_int_equal(update(&d, "nobody", TANDEM__USER_UPDATE__ACTION__DISABLE, 0, NULL), 404);
    uint64_t last = user_now(&d, "bob", TANDEM_OK).generation;
    assert_int_equal(delete_user(&d, "bob"), 200);
    user_now(&d, "bob", TANDEM_NOTFOUND);
    assert_int_equal(delete_user(&d, "bob"), 404);
    /* A user created again under the name never reuses an earlier generation. */
    assert_int_equal(create(&d, "bob", ROLE_VIEWER, "east"), 201);
    assert_true(user_now(&d, "bob", TANDEM_OK).generation > last);
    dom_close(&d);
}

static void test_password_history(void **state)
{
    (void)state;
    struct dom d;
    dom_open(&d);
    register_sites(&d);
    assert_int_equal(create(&d, "carol", ROLE_VIEWER, "east"), 201);
    for (unsigned i = 1; i <= 7; i++) {
        d.now_ms = DOM_T0 + i * 1000;
        assert_int_equal(
            update(&d, "carol", TANDEM__USER_UPDATE__ACTION__PASSWORD, 0, fake_hash(i)), 200);
    }
    Tandem__UserRecord *r = record_now(&d, "carol");
    assert_string_equal(r->password_hash, fake_hash(7));
    assert_int_equal(r->password_changed_ms, DOM_T0 + 7000);
    /* history_kept 5: the current hash and the 4 before it, newest first. */
    assert_int_equal(r->n_password_history, 4);
    for (unsigned i = 0; i < 4; i++) {
        assert_string_equal(r->password_history[i], fake_hash(6 - i));
    }
    tandem__user_record__free_unpacked(r, NULL);
    dom_close(&d);
}

static void test_lockout(void **state)
{
    (void)state;
    struct dom d;
    dom_open(&d);
    register_sites(&d);
    assert_int_equal(create(&d, "dave", ROLE_VIEWER, "east"), 201);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(attempt(&d, "dave", false), 200);
    }
    struct tandem_user u = user_now(&d, "dave", TANDEM_OK);
    assert_int_equal(u.failed_attempts, 4);
    assert_int_equal(u.locked_until_ms, 0);
    assert_int_equal(attempt(&d, "dave", true), 200); /* a success starts the count again */
    assert_int_equal(user_now(&d, "dave", TANDEM_OK).failed_attempts, 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(attempt(&d, "dave", false), 200);
    }
    d.now_ms = DOM_T0 + 777;
    assert_int_equal(attempt(&d, "dave", false), 200);
    body_has(&d, "locked_until");
    u = user_now(&d, "dave", TANDEM_OK);
    assert_int_equal(u.locked_until_ms, DOM_T0 + 777 + LOCK_MS); /* the batch's clock */
    assert_int_equal(attempt(&d, "nobody", false), 404);
    dom_close(&d);
}

static void test_token_key_first_wins(void **state)
{
    (void)state;
    struct dom d;
    uint8_t key[TANDEM_TOKEN_KEY_LEN];
    dom_open(&d);
    MDB_txn *txn = dom_read(&d);
    assert_int_equal(tandem_token_key_get(txn, &d.store, key), TANDEM_NOTFOUND);
    mdb_txn_abort(txn);
    assert_int_equal(key_set(&d, 0xAB), 200);
    body_has(&d, "true");
    assert_int_equal(key_set(&d, 0xCD), 200);
    body_has(&d, "false");
    txn = dom_read(&d);
    assert_int_equal(tandem_token_key_get(txn, &d.store, key), TANDEM_OK);
    mdb_txn_abort(txn);
    assert_int_equal(key[0], 0xAB);
    assert_int_equal(key[TANDEM_TOKEN_KEY_LEN - 1], 0xAB);
    dom_close(&d);
}

static void test_password_rule(void **state)
{
    (void)state;
    char why[TANDEM_ERRMSG_SIZE];
    assert_int_equal(tandem_password_rule_check("abc123", why), -1);
    assert_non_null(strstr(why, "8"));
    assert_int_equal(tandem_password_rule_check("abcdefghij", why), -1);
    assert_non_null(strstr(why, "digit"));
    assert_int_equal(tandem_password_rule_check("1234567890", why), -1);
    assert_non_null(strstr(why, "letter"));
    assert_int_equal(tandem_password_rule_check("abcd1234", why), 0);
}

static void test_hash_verify(void **state)
{
    (void)state;
    char hash[TANDEM_USER_HASH_LEN_MAX + 1], other[TANDEM_USER_HASH_LEN_MAX + 1];
    char errmsg[TANDEM_ERRMSG_SIZE];
    bool match = false;
    assert_int_equal(tandem_password_hash("correct horse 1", TEST_LOG2_N, hash, errmsg), 0);
    assert_int_equal(strncmp(hash, "scrypt$1024$8$1$", 16), 0);
    assert_null(strstr(hash, "correct"));
    assert_int_equal(tandem_password_verify("correct horse 1", hash, &match, errmsg), 0);
    assert_true(match);
    assert_int_equal(tandem_password_verify("correct horse 2", hash, &match, errmsg), 0);
    assert_false(match);
    /* A fresh salt each time: the same password never hashes alike. */
    assert_int_equal(tandem_password_hash("correct horse 1", TEST_LOG2_N, other, errmsg), 0);
    assert_string_not_equal(hash, other);
    assert_int_equal(tandem_password_verify("x", "scrypt$1000$8$1$AAAA$BBBB", &match, errmsg),
                     TANDEM_INVALID);
    assert_int_equal(tandem_password_verify("x", "md5$abc", &match, errmsg), TANDEM_INVALID);
    assert_int_equal(tandem_password_hash("x", 40, hash, errmsg), TANDEM_INVALID);
}

/* A login for a name without a record pays one scrypt at the default parameters, as the check
 * of a known user's (default) hash does: the answer's time does not tell names apart. */
static void test_unknown_user_pays_the_kdf(void **state)
{
    (void)state;
    char hash[TANDEM_USER_HASH_LEN_MAX + 1], errmsg[TANDEM_ERRMSG_SIZE];
    bool match = true;
    uint64_t before = tandem_password_kdf_runs();
    assert_int_equal(tandem_password_verify_unknown("any-pass1", &match, errmsg), 0);
    assert_false(match);
    assert_int_equal(tandem_password_kdf_runs(), before + 1);
    assert_int_equal(tandem_password_hash("known-pass1", TANDEM_SCRYPT_LOG2_N, hash, errmsg), 0);
    before = tandem_password_kdf_runs();
    assert_int_equal(tandem_password_verify("wrong-pass1", hash, &match, errmsg), 0);
    assert_false(match);
    assert_int_equal(tandem_password_kdf_runs(), before + 1);
}

/* A store with user erin and a token key; *token is erin's, valid until DOM_T0 + 60 s. */
static void token_setup(struct dom *d, char *token)
{
    uint8_t key[TANDEM_TOKEN_KEY_LEN];
    char errmsg[TANDEM_ERRMSG_SIZE];
    dom_open(d);
    register_sites(d);
    assert_int_equal(create(d, "erin.k", ROLE_VIEWER, "east"), 201);
    assert_int_equal(key_set(d, 0x11), 200);
    memset(key, 0x11, sizeof key);
    struct tandem_user u = user_now(d, "erin.k", TANDEM_OK);
    assert_int_equal(tandem_token_sign(key, "erin.k", u.generation, DOM_T0 + 60000, token, errmsg),
                     0);
}

static int token_check(struct dom *d, const char *token, int64_t now_ms, char *why)
{
    struct tandem_user u;
    MDB_txn *txn = dom_read(d);
    int rv = tandem_token_check(txn, &d->store, token, now_ms, &u, why);
    mdb_txn_abort(txn);
    if (rv == TANDEM_OK) {
        assert_string_equal(u.name, "erin.k");
    }
    return rv;
}

static void test_token_verify(void **state)
{
    (void)state;
    struct dom d;
    char token[TANDEM_TOKEN_LEN_MAX + 1], bad[TANDEM_TOKEN_LEN_MAX + 1];
    char why[TANDEM_ERRMSG_SIZE];
    token_setup(&d, token);
    assert_int_equal(token_check(&d, token, DOM_T0 + 59999, why), TANDEM_OK);
    assert_int_equal(token_check(&d, token, DOM_T0 + 60000, why), TANDEM_NOTFOUND);
    assert_non_null(strstr(why, "expired"));
    /* Every single changed character is refused. */
    for (size_t i = 0; i < strlen(token); i++) {
        snprintf(bad, sizeof bad, "%s", token);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_int_equal(token_check(&d, bad, DOM_T0, why), TANDEM_NOTFOUND);
    }
    assert_int_equal(token_check(&d, "", DOM_T0, why), TANDEM_NOTFOUND);
    assert_int_equal(token_check(&d, "abc.def", DOM_T0, why), TANDEM_NOTFOUND);
    /* Signed under another key. */
    uint8_t other[TANDEM_TOKEN_KEY_LEN];
    memset(other, 0x22, sizeof other);
    struct tandem_user u = user_now(&d, "erin.k", TANDEM_OK);
    assert_int_equal(tandem_token_sign(other, "erin.k", u.generation, DOM_T0 + 60000, bad, why), 0);
    assert_int_equal(token_check(&d, bad, DOM_T0, why), TANDEM_NOTFOUND);
    assert_non_null(strstr(why, "signature"));
    dom_close(&d);
}

static void test_token_revoked(void **state)
{
    (void)state;
    struct dom d;
    char token[TANDEM_TOKEN_LEN_MAX + 1], why[TANDEM_ERRMSG_SIZE];
    token_setup(&d, token);
    assert_int_equal(update(&d, "erin.k", TANDEM__USER_UPDATE__ACTION__DISABLE, 0, NULL), 200);
    assert_int_equal(token_check(&d, token, DOM_T0, why), TANDEM_NOTFOUND);
    assert_int_equal(update(&d, "erin.k", TANDEM__USER_UPDATE__ACTION__ENABLE, 0, NULL), 200);
    /* Enabling again does not bring back the tokens the disable ended. */
    assert_int_equal(token_check(&d, token, DOM_T0, why), TANDEM_NOTFOUND);
    assert_non_null(strstr(why, "revoked"));
    dom_close(&d);

    token_setup(&d, token);
    assert_int_equal(update(&d, "erin.k", TANDEM__USER_UPDATE__ACTION__ROLES, ROLE_OPERATOR, NULL),
                     200);
    assert_int_equal(token_check(&d, token, DOM_T0, why), TANDEM_NOTFOUND);
    dom_close(&d);

    token_setup(&d, token);
    assert_int_equal(attempt(&d, "erin.k", false), 200); /* a failed login ends nothing */
    assert_int_equal(token_check(&d, token, DOM_T0, why), TANDEM_OK);
    assert_int_equal(delete_user(&d, "erin.k"), 200);
    assert_int_equal(token_check(&d, token, DOM_T0, why), TANDEM_NOTFOUND);
    assert_int_equal(create(&d, "erin.k", ROLE_VIEWER, "east"), 201);
    assert_int_equal(token_check(&d, token, DOM_T0, why), TANDEM_NOTFOUND);
    dom_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_rules),
        cmocka_unit_test(test_generation),
        cmocka_unit_test(test_password_history),
        cmocka_unit_test(test_lockout),
        cmocka_unit_test(test_token_key_first_wins),
        cmocka_unit_test(test_password_rule),
        cmocka_unit_test(test_hash_verify),
        cmocka_unit_test(test_token_verify),
        cmocka_unit_test(test_token_revoked),
        cmocka_unit_test(test_unknown_user_pays_the_kdf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
