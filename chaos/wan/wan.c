/* tandem-wan: the WAN link emulator of the three-place lab (deploy/lab.sh), a TCP proxy that
 * delays, stalls and cuts the traffic between sites, driven at run time by a links file and
 * SIGHUP.
 *
 *   tandem-wan ROUTES LINKS [--seed N]
 *
 * ROUTES: one "listen HOST:PORT TARGET_HOST:PORT PAIR" a line; every connection accepted on
 * HOST:PORT is forwarded to TARGET and shaped by the link PAIR (e.g. east-west, both ways).
 * LINKS: one "link PAIR RTT_MS JITTER_MS LOSS_PCT STATE" a line, STATE up, hold or reset; read
 * at start and again on every SIGHUP (lab.sh cut/heal/slow rewrite it and signal).
 *
 * Each byte read on one side is delivered on the other RTT/2 + a uniform 0..JITTER ms later, in
 * order (a late chunk holds back the ones behind it, as TCP does). TCP has no packet loss at
 * this layer: "loss" is emulated as a retransmission stall, each chunk read is held with
 * probability LOSS_PCT% for an extra LOSS_STALL_MS (Linux's minimum RTO) and what follows waits
 * behind it. hold is a blackhole: nothing is delivered and new connections are accepted but not
 * forwarded until the link is up again (then what was held flows). reset closes the link's
 * connections with a RST and resets new ones. Every queue is bounded (QUEUE_LIMIT a direction:
 * reading stops above it), as are the routes, links and connections. SIGTERM/SIGINT stop it. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_ROUTES     256
#define MAX_LINKS      64
#define MAX_CONNS      4096
#define MAX_FILE_LINES 1024
#define QUEUE_LIMIT    (4u << 20)
#define READ_SIZE      65536
#define LOSS_STALL_MS  200
#define NAME_MAX_LEN   64

enum link_state { LINK_UP, LINK_HOLD, LINK_RESET };

struct link {
    char name[NAME_MAX_LEN];
    unsigned rtt_ms, jitter_ms;
    double loss_pct;
    enum link_state state;
};

struct route {
    uv_tcp_t server;
    struct sockaddr_storage target;
    struct link *link;
    char listen_text[NAME_MAX_LEN];
};

struct chunk {
    struct chunk *next;
    uint64_t due_ms;
    bool eof;
    size_t len;
    uv_write_t req;
    struct dir *dir;
    char data[];
};

struct conn;

/* One direction of a connection: what is read from `from` is written to `to`. */
struct dir {
    struct conn *conn;
    uv_tcp_t *from, *to;
    uv_timer_t timer;
    struct chunk *head, *tail;
    size_t queued;
    uint64_t last_due;
    bool reading, writing, eof_read, done;
};

struct conn {
    uv_tcp_t down, up;
    uv_connect_t connect;
    struct route *route;
    struct dir dirs[2]; /* 0: down -> up, 1: up -> down */
    struct conn *prev, *next;
    bool up_open, connecting, closing;
    int handles_open;
};

static uv_loop_t *loop;
static struct route routes[MAX_ROUTES];
static size_t n_routes;
static struct link links[MAX_LINKS];
static size_t n_links;
static struct conn *conns;
static size_t n_conns;
static const char *links_path;
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uv_signal_t sig_hup, sig_term, sig_int;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fail(const char *what, int err)
{
    fprintf(stderr, "tandem-wan: %s: %s\n", what, err ? uv_strerror(err) : "invalid");
    exit(1);
}

static struct link *find_link(const char *name, bool create)
{
    for (size_t i = 0; i < n_links; i++)
        if (strcmp(links[i].name, name) == 0)
            return &links[i];
    if (!create || n_links == MAX_LINKS || strlen(name) >= NAME_MAX_LEN)
        return NULL;
    struct link *l = &links[n_links++];
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    return l;
}

static int parse_addr(const char *text, struct sockaddr_storage *out)
{
    char host[NAME_MAX_LEN];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof(host))
        return UV_EINVAL;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return UV_EINVAL;
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out);
}

static void conn_close(struct conn *c, bool reset);
static void dir_pump(struct dir *d);
static void conn_connect(struct conn *c);

/* ---- delivery ------------------------------------------------------------------------- */

static void chunk_written(uv_write_t *req, int status)
{
    struct chunk *ch = req->data;
    struct dir *d = ch->dir;
    free(ch);
    if (status == UV_ECANCELED)
        return;
    d->writing = false;
    if (status < 0) {
        conn_close(d->conn, true);
        return;
    }
    dir_pump(d);
}

static void dir_timer_cb(uv_timer_t *t)
{
    dir_pump(t->data);
}

static void dir_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf);

static void dir_resume_reading(struct dir *d)
{
    if (d->reading || d->eof_read || d->conn->closing || d->queued > QUEUE_LIMIT / 2)
        return;
    if (uv_read_start((uv_stream_t *)d->from, alloc_cb, dir_read_cb) == 0)
        d->reading = true;
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

/* Delivers the chunks that are due, one write at a time; re-arms the timer for the next. */
static void dir_pump(struct dir *d)
{
    struct conn *c = d->conn;
    if (c->closing || d->writing || !d->head || !c->up_open || c->route->link->state != LINK_UP)
        return;
    uint64_t now = uv_now(loop);
    struct chunk *ch = d->head;
    if (ch->due_ms > now) {
        uv_timer_start(&d->timer, dir_timer_cb, ch->due_ms - now, 0);
        return;
    }
    d->head = ch->next;
    if (!d->head)
        d->tail = NULL;
    d->queued -= ch->len;
    if (ch->eof) {
        free(ch);
        d->done = true;
        uv_shutdown_t *req = malloc(sizeof(*req));
        if (!req || uv_shutdown(req, (uv_stream_t *)d->to, shutdown_cb) != 0)
            free(req);
        if (c->dirs[0].done && c->dirs[1].done)
            conn_close(c, false);
        return;
    }
    uv_buf_t buf = uv_buf_init(ch->data, (unsigned)ch->len);
    ch->req.data = ch;
    d->writing = true;
    int rc = uv_write(&ch->req, (uv_stream_t *)d->to, &buf, 1, chunk_written);
    if (rc < 0) {
        free(ch);
        d->writing = false;
        conn_close(c, true);
        return;
    }
    dir_resume_reading(d);
}

/* ---- reading -------------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    (void)size;
    buf->base = malloc(READ_SIZE);
    buf->len = buf->base ? READ_SIZE : 0;
}

/* When a chunk read now is delivered: half the RTT, jitter, a loss stall, never before the
 * chunk ahead of it. Counted from now rounded up to the millisecond: the loop's clock (uv_now,
 * what the delivery timer compares with) is whole milliseconds behind the true time, and a
 * delay counted from it came up to 2 ms short over a round trip. */
static uint64_t due_time(struct dir *d)
{
    const struct link *l = d->conn->route->link;
    uint64_t due = (uv_hrtime() + 999999u) / 1000000u + l->rtt_ms / 2;
    if (l->jitter_ms)
        due += rng_next() % (l->jitter_ms + 1);
    if (l->loss_pct > 0 && (double)(rng_next() % 1000000) < l->loss_pct * 10000.0)
        due += LOSS_STALL_MS;
    if (due < d->last_due)
        due = d->last_due;
    d->last_due = due;
    return due;
}

static void dir_enqueue(struct dir *d, const char *data, size_t len, bool eof)
{
    struct chunk *ch = malloc(sizeof(*ch) + len);
    if (!ch) {
        conn_close(d->conn, true);
        return;
    }
    memset(ch, 0, sizeof(*ch));
    ch->dir = d;
    ch->len = len;
    ch->eof = eof;
    ch->due_ms = due_time(d);
    if (len)
        memcpy(ch->data, data, len);
    if (d->tail)
        d->tail->next = ch;
    else
        d->head = ch;
    d->tail = ch;
    d->queued += len;
    if (d->queued > QUEUE_LIMIT && d->reading) {
        uv_read_stop((uv_stream_t *)d->from);
        d->reading = false;
    }
    dir_pump(d);
}

static void dir_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct dir *d = (uv_tcp_t *)s == &c->down ? &c->dirs[0] : &c->dirs[1];
    if (n > 0 && !c->closing)
        dir_enqueue(d, buf->base, (size_t)n, false);
    free(buf->base);
    if (n == UV_EOF) {
        uv_read_stop(s);
        d->reading = false;
        d->eof_read = true;
        dir_enqueue(d, NULL, 0, true);
    } else if (n < 0) {
        conn_close(c, true);
    }
}

/* ---- connections ---------------------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    for (int i = 0; i < 2; i++)
        while (c->dirs[i].head) {
            struct chunk *ch = c->dirs[i].head;
            c->dirs[i].head = ch->next;
            free(ch);
        }
    free(c);
}

static void close_handle(struct conn *c, uv_handle_t *h, bool reset)
{
    h->data = c;
    if (reset && h->type == UV_TCP && uv_tcp_close_reset((uv_tcp_t *)h, conn_handle_closed) == 0)
        return;
    uv_close(h, conn_handle_closed);
}

static void conn_close(struct conn *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    n_conns--;
    /* A socket still connecting cannot take a RST; it is closed plainly. */
    close_handle(c, (uv_handle_t *)&c->down, reset);
    close_handle(c, (uv_handle_t *)&c->up, reset && c->up_open);
    close_handle(c, (uv_handle_t *)&c->dirs[0].timer, false);
    close_handle(c, (uv_handle_t *)&c->dirs[1].timer, false);
}

static void connected_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    c->connecting = false;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, true);
        return;
    }
    c->up_open = true;
    dir_resume_reading(&c->dirs[1]);
    dir_pump(&c->dirs[0]);
}

static void conn_connect(struct conn *c)
{
    if (c->up_open || c->connecting || c->closing)
        return;
    c->connect.data = c;
    int rc = uv_tcp_connect(&c->connect, &c->up, (const struct sockaddr *)&c->route->target,
                            connected_cb);
    if (rc < 0)
        conn_close(c, true);
    else
        c->connecting = true;
}

static void conn_init_dirs(struct conn *c)
{
    for (int i = 0; i < 2; i++) {
        struct dir *d = &c->dirs[i];
        d->conn = c;
        d->from = i == 0 ? &c->down : &c->up;
        d->to = i == 0 ? &c->up : &c->down;
        uv_timer_init(loop, &d->timer);
        d->timer.data = d;
    }
    c->down.data = c;
    c->up.data = c;
    c->handles_open = 4;
}

static void accept_cb(uv_stream_t *server, int status)
{
    struct route *r = server->data;
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        fail("out of memory", 0);
    c->route = r;
    uv_tcp_init(loop, &c->down);
    uv_tcp_init(loop, &c->up);
    conn_init_dirs(c);
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->down) != 0 || n_conns > MAX_CONNS ||
        r->link->state == LINK_RESET) {
        conn_close(c, true);
        return;
    }
    uv_tcp_nodelay(&c->down, 1);
    uv_tcp_nodelay(&c->up, 1);
    dir_resume_reading(&c->dirs[0]);
    if (r->link->state == LINK_UP)
        conn_connect(c);
}

/* ---- configuration -------------------------------------------------------------------- */

static void apply_links(void)
{
    struct conn *next;
    for (struct conn *c = conns; c; c = next) {
        next = c->next;
        enum link_state st = c->route->link->state;
        if (st == LINK_RESET) {
            conn_close(c, true);
        } else if (st == LINK_UP) {
            conn_connect(c);
            dir_pump(&c->dirs[0]);
            dir_pump(&c->dirs[1]);
        }
    }
}

static int parse_link_line(const char *line)
{
    char name[NAME_MAX_LEN], state[16];
    unsigned rtt, jitter;
    double loss;
    if (sscanf(line, "link %63s %u %u %lf %15s", name, &rtt, &jitter, &loss, state) != 5)
        return -1;
    struct link *l = find_link(name, true);
    if (!l || loss < 0 || loss > 100)
        return -1;
    l->rtt_ms = rtt;
    l->jitter_ms = jitter;
    l->loss_pct = loss;
    if (strcmp(state, "up") == 0)
        l->state = LINK_UP;
    else if (strcmp(state, "hold") == 0)
        l->state = LINK_HOLD;
    else if (strcmp(state, "reset") == 0)
        l->state = LINK_RESET;
    else
        return -1;
    fprintf(stderr, "tandem-wan: link %s rtt %u ms jitter %u ms loss %.2f%% %s\n", l->name, rtt,
            jitter, loss, state);
    return 0;
}

static int read_lines(const char *path, int (*each)(const char *line))
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    char line[512];
    int rc = 0;
    for (int i = 0; i < MAX_FILE_LINES && rc == 0 && fgets(line, sizeof(line), f); i++) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        rc = each(line);
        if (rc != 0)
            fprintf(stderr, "tandem-wan: %s: bad line: %s", path, line);
    }
    fclose(f);
    return rc;
}

static int parse_route_line(const char *line)
{
    char listen[NAME_MAX_LEN], target[NAME_MAX_LEN], pair[NAME_MAX_LEN];
    if (n_routes == MAX_ROUTES || sscanf(line, "listen %63s %63s %63s", listen, target, pair) != 3)
        return -1;
    struct route *r = &routes[n_routes];
    struct sockaddr_storage addr;
    r->link = find_link(pair, false);
    if (!r->link || parse_addr(listen, &addr) != 0 || parse_addr(target, &r->target) != 0)
        return -1;
    snprintf(r->listen_text, sizeof(r->listen_text), "%s", listen);
    uv_tcp_init(loop, &r->server);
    r->server.data = r;
    int rc = uv_tcp_bind(&r->server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&r->server, 128, accept_cb);
    if (rc != 0)
        fail(listen, rc);
    n_routes++;
    return 0;
}

static void on_hup(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    if (read_lines(links_path, parse_link_line) != 0)
        fprintf(stderr, "tandem-wan: %s not (fully) applied\n", links_path);
    apply_links();
}

/* Closes every handle, so that the loop ends and nothing is left allocated (a sanitizer build
 * reports leaks at exit). */
static void on_term(uv_signal_t *s, int signum)
{
    (void)s;
    fprintf(stderr, "tandem-wan: signal %d, stopping (%zu connections)\n", signum, n_conns);
    while (conns)
        conn_close(conns, true);
    for (size_t i = 0; i < n_routes; i++)
        uv_close((uv_handle_t *)&routes[i].server, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 5 && strcmp(argv[3], "--seed") == 0)) {
        fprintf(stderr, "usage: tandem-wan ROUTES LINKS [--seed N]\n");
        return 2;
    }
    if (argc == 5)
        rng_state ^= strtoull(argv[4], NULL, 10) * 0x2545f4914f6cdd1du;
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    links_path = argv[2];
    if (read_lines(links_path, parse_link_line) != 0)
        fail(links_path, 0);
    if (read_lines(argv[1], parse_route_line) != 0)
        fail(argv[1], 0);
    uv_signal_init(loop, &sig_hup);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_term, on_term, SIGTERM);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_int, on_term, SIGINT);
    fprintf(stderr, "tandem-wan: %zu routes, %zu links, ready\n", n_routes, n_links);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
