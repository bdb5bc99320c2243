/* The raft_uv transport over TCP, mutual TLS unless insecure: a hello/ack handshake that checks
 * cluster id and epoch (and, over TLS, that the peer's certificate names the member it claims)
 * on every connection, after which the stream belongs to raft_uv (over TLS through a relay); probe
 * handshakes that only ask "are you there, at which epoch, leading?", the contact table they fill,
 * and the start-up quarantine gate that keeps raft from sending anything.
 *
 * Layering: the wire frames (hello, ack) are pure codecs; a handshake moves them with
 * handshake_send/handshake_recv only, over TCP or the TLS session; handshake_handover is the one
 * place a stream leaves our hands. */
#include "consensus/transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <uv.h>

#include "consensus/member.h"
#include "consensus/raft_relay.h"
#include "storage/assert.h"
#include "storage/error.h"
#include "storage/list.h"
#include "storage/sm.h"

/* ---- wire format (all integers little-endian, every frame a multiple of 8 bytes) ----
 *
 * Protocol version 2. Both frames start with the same 16-byte head (magic, version, one u32),
 * judged as soon as it arrived, so a peer speaking another version is told so whatever size
 * its frames have.
 *
 * hello, connector -> acceptor, 400 bytes:
 *   0  u64 magic "TNDMHELO"       16 u64 epoch
 *   8  u32 protocol version       24 u64 raft id of the sender
 *   12 u32 address length         32 u64 flags: HELLO_PROBE, FLAG_LEADER
 *                                 40 char[64] cluster id, NUL padded
 *                                 104 char[296] sender's member address, NUL padded
 * ack, acceptor -> connector, 32 bytes:
 *   0  u64 magic "TNDMACK!"   8 u32 protocol version   12 u32 status   16 u64 acceptor's epoch
 *   24 u64 flags: FLAG_LEADER
 *
 * HELLO_PROBE: the connector only probes; the acceptor answers the ack and closes, raft never
 * sees the connection. FLAG_LEADER: the sender of the frame is raft leader right now. Unknown
 * flag bits make the frame malformed. Version 1 (no flags, 392/24 bytes) is refused. */
#define HELLO_MAGIC           0x4f4c45484d444e54ULL /* bytes "TNDMHELO" */
#define ACK_MAGIC             0x214b43414d444e54ULL /* bytes "TNDMACK!" */
#define PROTOCOL_VERSION      2
#define FRAME_HEAD_SIZE       16 /* magic, version and one u32: judged before the rest */
#define FRAME_OFF_VERSION     8
#define HELLO_CLUSTER_FIELD   64
#define HELLO_ADDRESS_FIELD   (((TANDEM_MEMBER_ADDRESS_LEN_MAX + 1) + 7) / 8 * 8)
#define HELLO_OFF_VERSION     FRAME_OFF_VERSION
#define HELLO_OFF_ADDRESS_LEN 12
#define HELLO_OFF_EPOCH       16
#define HELLO_OFF_ID          24
#define HELLO_OFF_FLAGS       32
#define HELLO_OFF_CLUSTER     40
#define HELLO_OFF_ADDRESS     (HELLO_OFF_CLUSTER + HELLO_CLUSTER_FIELD)
#define HELLO_SIZE            (HELLO_OFF_ADDRESS + HELLO_ADDRESS_FIELD)
#define ACK_OFF_VERSION       FRAME_OFF_VERSION
#define ACK_OFF_STATUS        12
#define ACK_OFF_EPOCH         16
#define ACK_OFF_FLAGS         24
#define ACK_SIZE              32
#define HELLO_PROBE           UINT64_C(1) /* hello only: answer and close, no raft */
#define FLAG_LEADER           UINT64_C(2) /* the frame's sender is raft leader now */
#define HELLO_FLAGS_KNOWN     (HELLO_PROBE | FLAG_LEADER)
#define ACK_FLAGS_KNOWN       FLAG_LEADER

_Static_assert(HELLO_SIZE % 8 == 0 && ACK_SIZE % 8 == 0, "frames are 8-byte multiples");
_Static_assert(HELLO_SIZE == 400 && ACK_SIZE == 32, "the layout comment above says so");
_Static_assert(FRAME_HEAD_SIZE <= ACK_SIZE && FRAME_HEAD_SIZE % 8 == 0, "heads fit every frame");
_Static_assert(HELLO_CLUSTER_FIELD > TANDEM_CLUSTER_ID_LEN_MAX, "cluster id fits with its NUL");

/* Outcomes of a handshake. The first ones travel as ack status; the rest are local only. */
#define TRANSPORT_OUTCOMES(X)                                                                      \
    X(OK, "ok")                                                                                    \
    X(CLUSTER, "cluster id mismatch")                                                              \
    X(EPOCH, "epoch mismatch")                                                                     \
    X(MALFORMED, "malformed handshake")                                                            \
    X(VERSION, "unsupported handshake version")                                                    \
    X(TIMEOUT, "handshake timed out")                                                              \
    X(IO, "connection failed")                                                                     \
    X(BUSY, "too many pending handshakes")                                                         \
    X(FRAME, "refused raft frame")                                                                 \
    X(TLS, "TLS handshake failed")                                                                 \
    X(IDENTITY, "certificate does not name the member")                                            \
    X(ALLOW, "source not in raft_allow")
#define OUTCOME_ENUM(name, text) OUTCOME_##name,
enum { TRANSPORT_OUTCOMES(OUTCOME_ENUM) OUTCOME_COUNT };
#define OUTCOME_WIRE_MAX OUTCOME_VERSION /* highest outcome a peer may send in an ack */

static const char *outcome_text(int outcome)
{
#define OUTCOME_TEXT(name, text) text,
    static const char *const texts[] = {TRANSPORT_OUTCOMES(OUTCOME_TEXT)};
    return outcome >= 0 && outcome < OUTCOME_COUNT ? texts[outcome] : "unknown";
}

#define TRANSPORT_LISTEN_BACKLOG    128   /* kernel queue of connections not yet accepted */
#define TRANSPORT_KEEPALIVE_DELAY_S 15    /* idle seconds before TCP keepalive probes start */
#define TRANSPORT_RESOLVED_MAX      4     /* addresses of a peer's host tried, in resolver order */
#define TRANSPORT_LOG_MEMO_MAX      64    /* (peer, reason) pairs remembered as already logged */
#define TRANSPORT_LOG_MSG_MAX       512   /* one log line */
#define TRANSPORT_PEER_KEY_MAX      64    /* peer's raft host:port, or its IP before its hello */
#define TRANSPORT_PEER_LABEL_MAX    200   /* "name (host:port) from ip" for log lines */
#define TRANSPORT_DETAIL_MAX        256   /* why a frame was malformed */
#define TRANSPORT_LOG_INTERVAL_MS   60000 /* a (peer, reason) is logged at most once a minute */

struct hello {
    uint64_t epoch;
    uint64_t flags;
    raft_id id;
    char cluster_id[HELLO_CLUSTER_FIELD];
    char address[HELLO_ADDRESS_FIELD];
    struct tandem_member member;
};

/* A libuv handle we own: none (memory only) -> open (initialised) -> closing (uv_close called)
 * -> none (its close callback ran). An open tcp handle may also go straight back to none when
 * it is handed to raft_uv, which closes it from then on. */
enum handle_state { HANDLE_NONE = 0, HANDLE_OPEN, HANDLE_CLOSING, HANDLE_STATES };

static const struct tandem_sm_conf handle_states[HANDLE_STATES] = {
    [HANDLE_NONE] = {"none", TANDEM_SM_INITIAL | TANDEM_SM_FINAL, TANDEM_SM_BIT(HANDLE_OPEN)},
    [HANDLE_OPEN] = {"open", 0, TANDEM_SM_BIT(HANDLE_CLOSING) | TANDEM_SM_BIT(HANDLE_NONE)},
    [HANDLE_CLOSING] = {"closing", 0, TANDEM_SM_BIT(HANDLE_NONE)},
};
enum direction { INBOUND, OUTBOUND };

/* Where a handshake is. Outbound: resolving -> connecting (once per address tried) -> TLS (unless
 * insecure) -> sending its hello -> awaiting the ack -> handed over. Inbound: TLS (unless
 * insecure) -> awaiting the hello -> sending the ack -> handed over (or failing, after a refusal
 * was sent). Any undecided phase may fail. */
enum phase {
    PHASE_NEW,
    PHASE_RESOLVING,
    PHASE_CONNECTING,
    PHASE_TLS,
    PHASE_SENDING_HELLO,
    PHASE_AWAITING_ACK,
    PHASE_AWAITING_HELLO,
    PHASE_SENDING_ACK,
    PHASE_HANDED_OVER,
    PHASE_FAILING,
    PHASE_COUNT
};
#define PHASE_FAIL TANDEM_SM_BIT(PHASE_FAILING)

static const struct tandem_sm_conf phases[PHASE_COUNT] = {
    [PHASE_NEW] = {"new", TANDEM_SM_INITIAL,
                   TANDEM_SM_BIT(PHASE_RESOLVING) | TANDEM_SM_BIT(PHASE_AWAITING_HELLO) |
                       TANDEM_SM_BIT(PHASE_TLS) | PHASE_FAIL},
    [PHASE_RESOLVING] = {"resolving", 0, TANDEM_SM_BIT(PHASE_CONNECTING) | PHASE_FAIL},
    [PHASE_CONNECTING] = {"connecting", 0,
                          TANDEM_SM_BIT(PHASE_CONNECTING) | TANDEM_SM_BIT(PHASE_SENDING_HELLO) |
                              TANDEM_SM_BIT(PHASE_TLS) | PHASE_FAIL},
    [PHASE_TLS] = {"tls", 0,
                   TANDEM_SM_BIT(PHASE_SENDING_HELLO) | TANDEM_SM_BIT(PHASE_AWAITING_HELLO) |
                       PHASE_FAIL},
    [PHASE_SENDING_HELLO] = {"sending hello", 0, TANDEM_SM_BIT(PHASE_AWAITING_ACK) | PHASE_FAIL},
    [PHASE_AWAITING_ACK] = {"awaiting ack", 0, TANDEM_SM_BIT(PHASE_HANDED_OVER) | PHASE_FAIL},
    [PHASE_AWAITING_HELLO] = {"awaiting hello", 0, TANDEM_SM_BIT(PHASE_SENDING_ACK) | PHASE_FAIL},
    [PHASE_SENDING_ACK] = {"sending ack", 0, TANDEM_SM_BIT(PHASE_HANDED_OVER) | PHASE_FAIL},
    [PHASE_HANDED_OVER] = {"handed over", TANDEM_SM_FINAL, 0},
    [PHASE_FAILING] = {"failing", TANDEM_SM_FINAL, 0},
};

struct transport;

/* One connection from its first byte until it is handed to raft or closed. */
struct handshake {
    struct transport *t;     /* borrowed */
    struct tandem_list link; /* in t->handshakes */
    int direction;
    struct uv_tcp_s *tcp;    /* owned until handed over: the first field of a raft_malloc'd
                                struct tandem_relay_conn (TLS session alongside), since raft_uv
                                frees the streams it is given with raft_free (uv_send.c) */
    struct tandem_sm tcp_sm; /* enum handle_state of *tcp */
    struct uv_timer_s timer; /* handshake deadline */
    struct tandem_sm timer_sm;
    struct uv_connect_s connect;
    struct uv_write_s write;
    struct uv_getaddrinfo_s resolve;
    bool resolving;
    bool retry_connect; /* the tcp handle is closing to try the next resolved address */
    struct sockaddr_storage addrs[TRANSPORT_RESOLVED_MAX];
    unsigned n_addrs, next_addr;
    uint8_t out[HELLO_SIZE];
    uint8_t in[HELLO_SIZE];
    size_t in_len, in_want;
    uint64_t in_magic; /* magic of the frame being read: its head is judged on arrival */
    void (*in_done)(struct handshake *h);
    void (*out_done)(struct handshake *h);
    uint64_t epoch;              /* ours when the handshake started */
    struct raft_uv_connect *req; /* borrowed; outbound; NULL once its cb must not run */
    bool probe;                  /* outbound: ours is a probe; inbound: the peer's hello is */
    bool answered;               /* outbound: the peer accepted us at our epoch */
    raft_id peer_id;             /* outbound: the id dialled; inbound: from the hello */
    char peer_address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1]; /* outbound: the address dialled */
    char peer_name[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];    /* outbound: its member name */
    int refusal;                                          /* inbound: outcome sent in the ack */
    struct hello hello;                                   /* inbound: what the peer said */
    char peer_key[TRANSPORT_PEER_KEY_MAX];
    char peer_label[TRANSPORT_PEER_LABEL_MAX];
    bool counted_inbound;      /* counts towards t->n_inbound */
    struct tandem_sm phase_sm; /* enum phase */
};

/* One row of the contact table. */
struct contact {
    struct tandem_transport_contact pub;
    uint64_t touched_ms; /* last time anything was recorded: the oldest makes room */
    bool used;
};

struct log_memo {
    char peer_key[TRANSPORT_PEER_KEY_MAX];
    int outcome;
    uint64_t logged_ms; /* uv_now when last logged */
    bool used;
};

/* Relays open, oldest first: inbound ones, and outbound ones over TLS, each capped. */
struct relay_list {
    struct tandem_relay *items[TANDEM_TRANSPORT_RELAYS_MAX];
    unsigned n;
};

struct transport {
    struct raft_uv_transport *raft; /* borrowed: the interface we implement */
    struct uv_loop_s *loop;         /* borrowed */
    raft_id id;
    char address[TANDEM_MEMBER_ADDRESS_LEN_MAX + 1];
    char listen_address[TANDEM_HOSTPORT_LEN_MAX + 1];
    bool bind_override;
    char cluster_id[TANDEM_CLUSTER_ID_LEN_MAX + 1];
    uint64_t epoch;
    uint64_t handshake_timeout_ms;
    void (*log)(void *data, int level, const char *msg);
    void *log_data; /* borrowed */
    bool (*leading)(void *data);
    void *leading_data; /* borrowed */
    uint64_t (*term)(void *data);
    void *term_data; /* borrowed */
    bool (*member)(void *data, raft_id id, const char *address);
    void *member_data; /* borrowed */
    bool quarantine;
    uint64_t fenced_epoch; /* 0, or the newer epoch that fenced us: refuse every inbound */
    struct contact contacts[TANDEM_TRANSPORT_CONTACTS_MAX];
    raft_uv_accept_cb accept_cb;
    struct uv_tcp_s listener;
    struct tandem_sm listener_sm;
    struct tandem_list handshakes; /* owned: every handshake not yet freed */
    unsigned n_inbound;            /* inbound handshakes still pending */
    unsigned n_dropping;           /* busy connections being closed */
    bool closing;
    raft_uv_transport_close_cb close_cb;
    struct tandem_transport_stats stats;
    struct log_memo memo[TRANSPORT_LOG_MEMO_MAX];
    unsigned memo_next;
    struct tandem_relay_config relay_config;
    struct relay_list relays_in;
    struct relay_list relays_out;
    unsigned n_relays_closing;  /* relays closed but not yet called back */
    struct tandem_tls_ctx *tls; /* borrowed; NULL: plaintext */
    struct tandem_allow allow;  /* raft_allow; n == 0: every source */
};

/* A tcp handle in use has its memory (raft_malloc'd, freed with the handshake). */
static bool tcp_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    const struct handshake *h = data;
    (void)prev;
    return tandem_sm_state(sm) == HANDLE_NONE || h->tcp != NULL;
}

/* A closing transport never (re)opens its listener. */
static bool listener_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    const struct transport *t = data;
    (void)prev;
    return tandem_sm_state(sm) != HANDLE_OPEN || !t->closing;
}

static int phase(const struct handshake *h)
{
    return tandem_sm_state(&h->phase_sm);
}

/* What each phase holds true of the handshake's handles, buffers and counters. */
static bool phase_invariant(const struct tandem_sm *sm, int prev, void *data)
{
    const struct handshake *h = data;
    bool tcp_open = tandem_sm_state(&h->tcp_sm) == HANDLE_OPEN;
    bool outbound = h->direction == OUTBOUND;
    (void)prev;
    switch (tandem_sm_state(sm)) {
        case PHASE_NEW:
            return !h->resolving && tandem_sm_state(&h->tcp_sm) == HANDLE_NONE;
        case PHASE_RESOLVING:
            return outbound && h->resolving && (h->req != NULL) != h->probe;
        case PHASE_CONNECTING:
            return outbound && !h->resolving && h->next_addr < h->n_addrs;
        case PHASE_TLS:
            return tcp_open && (outbound || h->counted_inbound);
        case PHASE_SENDING_HELLO:
        case PHASE_AWAITING_ACK:
            return outbound && tcp_open;
        case PHASE_AWAITING_HELLO:
            return !outbound && tcp_open && h->counted_inbound;
        case PHASE_SENDING_ACK: /* a refused head is answered before the rest arrives */
            return !outbound && tcp_open &&
                   (h->in_len == HELLO_SIZE ||
                    (h->refusal != OUTCOME_OK && h->in_len >= FRAME_HEAD_SIZE));
        case PHASE_HANDED_OVER:
            return h->tcp == NULL && !h->counted_inbound && !h->resolving;
        case PHASE_FAILING:
            return !h->counted_inbound;
        default:
            return false;
    }
}

static bool phase_final(const struct handshake *h)
{
    return phase(h) == PHASE_HANDED_OVER || phase(h) == PHASE_FAILING;
}

/* ---- byte codecs ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < 4; i++) {
        v |= (uint32_t)p[i] << (8 * i);
    }
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

/* Peers are untrusted: what they sent reaches our logs only as printable ASCII. */
static void printable(char *text)
{
    for (char *p = text; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            *p = '?';
        }
    }
}

/* ---- frames ---- */

static void hello_encode(uint8_t *out, const char *cluster_id, uint64_t epoch, raft_id id,
                         const char *address, uint64_t flags)
{
    size_t address_len = strlen(address), cluster_len = strlen(cluster_id);
    /* Both were checked when they became ours (config_check, transport_init_identity): a
     * longer one would overrun its field and the peer would read garbage. */
    tandem_assert(address_len >= 1 && address_len <= TANDEM_MEMBER_ADDRESS_LEN_MAX);
    tandem_assert(cluster_len >= 1 && cluster_len < HELLO_CLUSTER_FIELD);
    tandem_assert(id != 0 && (flags & ~HELLO_FLAGS_KNOWN) == 0);
    memset(out, 0, HELLO_SIZE);
    put64(out, HELLO_MAGIC);
    put32(out + HELLO_OFF_VERSION, PROTOCOL_VERSION);
    put32(out + HELLO_OFF_ADDRESS_LEN, (uint32_t)address_len);
    put64(out + HELLO_OFF_EPOCH, epoch);
    put64(out + HELLO_OFF_ID, id);
    put64(out + HELLO_OFF_FLAGS, flags);
    memcpy(out + HELLO_OFF_CLUSTER, cluster_id, cluster_len);
    memcpy(out + HELLO_OFF_ADDRESS, address, address_len);
}

/* Checks a NUL-padded text field: 1..len_max chars, zero bytes after them. */
static bool text_field_ok(const uint8_t *field, size_t field_size, size_t len, size_t len_max)
{
    return len >= 1 && len <= len_max && len < field_size && memchr(field, 0, len) == NULL &&
           all_zero(field + len, field_size - len);
}

/* Judges a frame's first FRAME_HEAD_SIZE bytes: OUTCOME_OK, or _MALFORMED (another magic) or
 * _VERSION (another protocol version) with detail filled. */
static int frame_head_check(const uint8_t *in, uint64_t magic, char *detail)
{
    if (get64(in) != magic) {
        snprintf(detail, TRANSPORT_DETAIL_MAX, "not a tandem raft %s",
                 magic == HELLO_MAGIC ? "hello" : "ack");
        return OUTCOME_MALFORMED;
    }
    uint32_t version = get32(in + FRAME_OFF_VERSION);
    if (version != PROTOCOL_VERSION) {
        snprintf(detail, TRANSPORT_DETAIL_MAX, "protocol version %u, we speak %u",
                 (unsigned)version, PROTOCOL_VERSION);
        return OUTCOME_VERSION;
    }
    return OUTCOME_OK;
}

/* Decodes a hello; every malformation is OUTCOME_MALFORMED or _VERSION with detail filled.
 * The peer is untrusted: nothing is copied out until its bounds were checked. in holds at
 * least the head; the rest is read only once the head is judged good. */
static int hello_decode(const uint8_t *in, struct hello *hello, char *detail)
{
    int head = frame_head_check(in, HELLO_MAGIC, detail);
    if (head != OUTCOME_OK) {
        return head;
    }
    hello->flags = get64(in + HELLO_OFF_FLAGS);
    if ((hello->flags & ~HELLO_FLAGS_KNOWN) != 0) {
        snprintf(detail, TRANSPORT_DETAIL_MAX, "unknown flags 0x%llx",
                 (unsigned long long)hello->flags);
        return OUTCOME_MALFORMED;
    }
    const uint8_t *cluster = in + HELLO_OFF_CLUSTER;
    size_t cluster_len = strnlen((const char *)cluster, HELLO_CLUSTER_FIELD);
    if (!text_field_ok(cluster, HELLO_CLUSTER_FIELD, cluster_len, TANDEM_CLUSTER_ID_LEN_MAX)) {
        snprintf(detail, TRANSPORT_DETAIL_MAX, "bad cluster id field");
        return OUTCOME_MALFORMED;
    }
    memcpy(hello->cluster_id, cluster, cluster_len + 1);
    if (!tandem_member_name_ok(hello->cluster_id, TANDEM_CLUSTER_ID_LEN_MAX)) {
        snprintf(detail, TRANSPORT_DETAIL_MAX, "bad cluster id");
        return OUTCOME_MALFORMED;
    }
    uint32_t address_len = get32(in + HELLO_OFF_ADDRESS_LEN);
    const uint8_t *address = in + HELLO_OFF_ADDRESS;
    if (!text_field_ok(address, HELLO_ADDRESS_FIELD, address_len, TANDEM_MEMBER_ADDRESS_LEN_MAX)) {
        snprintf(detail, TRANSPORT_DETAIL_MAX, "bad address field (length %u, at most %d)",
                 (unsigned)address_len, TANDEM_MEMBER_ADDRESS_LEN_MAX);
        return OUTCOME_MALFORMED;
    }
    memcpy(hello->address, address, address_len);
    hello->address[address_len] = '\0';
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (tandem_member_address_parse(hello->address, &hello->member, errmsg) != 0) {
        printable(errmsg);
        snprintf(detail, TRANSPORT_DETAIL_MAX, "%s", errmsg);
        return OUTCOME_MALFORMED;
    }
    hello->id = get64(in + HELLO_OFF_ID);
    if (hello->id == 0) {
        snprintf(detail, TRANSPORT_DETAIL_MAX, "raft id 0");
        return OUTCOME_MALFORMED;
    }
    hello->epoch = get64(in + HELLO_OFF_EPOCH);
    return OUTCOME_OK;
}

static void ack_encode(uint8_t *out, int outcome, uint64_t epoch, uint64_t flags)
{
    tandem_assert((flags & ~ACK_FLAGS_KNOWN) == 0);
    memset(out, 0, ACK_SIZE);
    put64(out, ACK_MAGIC);
    put32(out + ACK_OFF_VERSION, PROTOCOL_VERSION);
    put32(out + ACK_OFF_STATUS, (uint32_t)outcome);
    put64(out + ACK_OFF_EPOCH, epoch);
    put64(out + ACK_OFF_FLAGS, flags);
}

/* Returns the status the acceptor sent, or -1 for a frame that isn't an ack we understand. The
 * head was judged already (frame_head_check). */
static int ack_decode(const uint8_t *in, uint64_t *epoch, uint64_t *flags)
{
    uint32_t status = get32(in + ACK_OFF_STATUS);
    if (get64(in) != ACK_MAGIC || get32(in + ACK_OFF_VERSION) != PROTOCOL_VERSION ||
        status > OUTCOME_WIRE_MAX) {
        return -1;
    }
    *epoch = get64(in + ACK_OFF_EPOCH);
    *flags = get64(in + ACK_OFF_FLAGS);
    if ((*flags & ~ACK_FLAGS_KNOWN) != 0) {
        return -1;
    }
    return (int)status;
}

/* ---- logging, rate-limited per peer and reason, and counters ---- */

static void transport_log(struct transport *t, int level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void transport_log(struct transport *t, int level, const char *format, ...)
{
    if (t->log == NULL) {
        return;
    }
    char msg[TRANSPORT_LOG_MSG_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(msg, sizeof msg, format, args);
    va_end(args);
    t->log(t->log_data, level, msg);
}

/* True the first time (peer, outcome) is seen since that peer last succeeded, and again once a
 * minute while it goes on: raft retries a failing connection every second, and a stranger may
 * knock as often as it likes; the log should say so once a minute, not every time. */
static bool memo_first(struct transport *t, const char *peer_key, int outcome)
{
    uint64_t now = uv_now(t->loop);
    for (unsigned i = 0; i < TRANSPORT_LOG_MEMO_MAX; i++) {
        struct log_memo *m = &t->memo[i];
        if (m->used && m->outcome == outcome && strcmp(m->peer_key, peer_key) == 0) {
            if (now - m->logged_ms < TRANSPORT_LOG_INTERVAL_MS) {
                return false;
            }
            m->logged_ms = now;
            return true;
        }
    }
    struct log_memo *m = &t->memo[t->memo_next];
    t->memo_next = (t->memo_next + 1) % TRANSPORT_LOG_MEMO_MAX;
    snprintf(m->peer_key, sizeof m->peer_key, "%s", peer_key);
    m->outcome = outcome;
    m->logged_ms = now;
    m->used = true;
    return true;
}

static void memo_forget_peer(struct transport *t, const char *peer_key)
{
    for (unsigned i = 0; i < TRANSPORT_LOG_MEMO_MAX; i++) {
        if (t->memo[i].used && strcmp(t->memo[i].peer_key, peer_key) == 0) {
            t->memo[i].used = false;
        }
    }
}

/* Adds a refusal to its counter; outcomes that are no refusal (OK, IO, BUSY) count nowhere. */
static void count_refusal(struct transport *t, int outcome)
{
    uint64_t *const counters[OUTCOME_COUNT] = {
        [OUTCOME_CLUSTER] = &t->stats.refused_cluster,
        [OUTCOME_EPOCH] = &t->stats.refused_epoch,
        [OUTCOME_MALFORMED] = &t->stats.refused_malformed,
        [OUTCOME_VERSION] = &t->stats.refused_malformed,
        [OUTCOME_TIMEOUT] = &t->stats.timed_out,
        [OUTCOME_FRAME] = &t->stats.refused_frame,
        [OUTCOME_TLS] = &t->stats.refused_tls,
        [OUTCOME_IDENTITY] = &t->stats.refused_identity,
        [OUTCOME_ALLOW] = &t->stats.refused_allow,
    };
    tandem_assert(outcome >= 0 && outcome < OUTCOME_COUNT);
    if (counters[outcome] != NULL) {
        (*counters[outcome])++;
    }
}

static void note_epoch(struct transport *t, uint64_t epoch)
{
    if (epoch > t->stats.epoch_newest_seen) {
        t->stats.epoch_newest_seen = epoch;
    }
}

/* ---- the contact table ---- */

static bool is_leading(struct transport *t)
{
    return t->leading != NULL && t->leading(t->leading_data);
}

static struct contact *contact_find(struct transport *t, raft_id id)
{
    for (unsigned i = 0; i < TANDEM_TRANSPORT_CONTACTS_MAX; i++) {
        if (t->contacts[i].used && t->contacts[i].pub.id == id) {
            return &t->contacts[i];
        }
    }
    return NULL;
}

/* The row of id, made when absent by reusing a free one or the one touched longest ago (never
 * one with a probe in flight). NULL only when every row has a probe in flight. */
static struct contact *contact_get(struct transport *t, raft_id id)
{
    struct contact *c = contact_find(t, id), *oldest = NULL;
    for (unsigned i = 0; c == NULL && i < TANDEM_TRANSPORT_CONTACTS_MAX; i++) {
        struct contact *row = &t->contacts[i];
        if (!row->used) {
            oldest = row;
            break;
        }
        if (!row->pub.probing && (oldest == NULL || row->touched_ms < oldest->touched_ms)) {
            oldest = row;
        }
    }
    if (c == NULL && oldest != NULL) {
        c = oldest;
        memset(c, 0, sizeof *c);
        c->used = true;
        c->pub.id = id;
    }
    if (c != NULL) {
        c->touched_ms = uv_now(t->loop);
    }
    return c;
}

/* Records a same-cluster handshake with a peer: the epoch it reported, and when it completed at
 * our epoch (ok) whether it said it leads. */
static void contact_heard(struct transport *t, raft_id id, const char *address, uint64_t epoch,
                          uint64_t flags, bool ok)
{
    struct contact *c = contact_get(t, id);
    if (c == NULL) {
        return;
    }
    snprintf(c->pub.address, sizeof c->pub.address, "%s", address);
    c->pub.epoch = epoch;
    if (!ok) {
        c->pub.ok_since_ms = 0;
    } else {
        c->pub.last_ok_ms = uv_now(t->loop);
        c->pub.ok_since_ms = c->pub.ok_since_ms != 0 ? c->pub.ok_since_ms : c->pub.last_ok_ms;
        if ((flags & FLAG_LEADER) != 0) {
            c->pub.last_leader_ms = c->pub.last_ok_ms;
        }
    }
}

/* ---- handshake lifecycle ---- */

static void transport_maybe_closed(struct transport *t)
{
    if (!t->closing || t->close_cb == NULL) {
        return;
    }
    if (tandem_sm_state(&t->listener_sm) != HANDLE_NONE || !tandem_list_empty(&t->handshakes) ||
        t->n_dropping > 0 || t->relays_in.n > 0 || t->relays_out.n > 0 || t->n_relays_closing > 0) {
        return;
    }
    raft_uv_transport_close_cb cb = t->close_cb;
    t->close_cb = NULL;
    cb(t->raft);
}

/* Frees h once every handle and request of it has called back, then tells raft about an
 * outbound failure. The connect callback runs last, when nothing of ours is left. */
static void handshake_maybe_free(struct handshake *h)
{
    struct transport *t = h->t;
    if (!phase_final(h)) {
        return;
    }
    if (tandem_sm_state(&h->tcp_sm) != HANDLE_NONE ||
        tandem_sm_state(&h->timer_sm) != HANDLE_NONE || h->resolving) {
        return;
    }
    struct raft_uv_connect *req = phase(h) == PHASE_HANDED_OVER ? NULL : h->req;
    struct contact *dialled = h->direction == OUTBOUND ? contact_find(t, h->peer_id) : NULL;
    if (dialled != NULL && h->probe) {
        dialled->pub.probing = false;
    }
    if (dialled != NULL && !h->answered) {
        dialled->pub.ok_since_ms = 0; /* unreachable now, whatever it was before */
    }
    tandem_sm_fini(&h->phase_sm);
    tandem_sm_fini(&h->tcp_sm);
    tandem_sm_fini(&h->timer_sm);
    tandem_list_remove(&h->link);
    raft_free(h->tcp);
    raft_free(h);
    if (req != NULL) {
        req->cb(req, NULL, t->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
    }
    transport_maybe_closed(t);
}

static void handshake_tcp_close_cb(uv_handle_t *handle);

static void handshake_timer_close_cb(uv_handle_t *handle)
{
    struct handshake *h = handle->data;
    tandem_sm_move(&h->timer_sm, HANDLE_NONE);
    handshake_maybe_free(h);
}

static void handshake_close_timer(struct handshake *h)
{
    if (tandem_sm_state(&h->timer_sm) == HANDLE_OPEN) {
        tandem_sm_move(&h->timer_sm, HANDLE_CLOSING);
        uv_close((uv_handle_t *)&h->timer, handshake_timer_close_cb);
    }
}

static void handshake_release_inbound_slot(struct handshake *h)
{
    if (h->counted_inbound) {
        h->counted_inbound = false;
        h->t->n_inbound--;
    }
}

/* Starts tearing h down. Logging and counting are the caller's job. h may be freed before
 * this returns: callers must not touch it afterwards. */
static void handshake_fail(struct handshake *h)
{
    if (phase_final(h)) {
        return;
    }
    handshake_release_inbound_slot(h);
    tandem_sm_move(&h->phase_sm, PHASE_FAILING);
    if (h->resolving) {
        uv_cancel((uv_req_t *)&h->resolve); /* fails harmlessly once the lookup is running */
    }
    if (tandem_sm_state(&h->tcp_sm) == HANDLE_OPEN) {
        tandem_sm_move(&h->tcp_sm, HANDLE_CLOSING);
        uv_close((uv_handle_t *)h->tcp, handshake_tcp_close_cb);
    }
    handshake_close_timer(h);
    handshake_maybe_free(h);
}

/* Logs (once per peer and reason), counts and fails. */
static void handshake_refuse(struct handshake *h, int outcome, int level, const char *detail)
{
    struct transport *t = h->t;
    count_refusal(t, outcome);
    if (memo_first(t, h->peer_key, outcome)) {
        transport_log(t, level, "raft transport: %s %s: %s%s%s",
                      h->direction == INBOUND ? "connection from" : "connection to", h->peer_label,
                      outcome_text(outcome), detail[0] != '\0' ? ": " : "", detail);
    }
    handshake_fail(h);
}

static void handshake_timer_cb(uv_timer_t *timer)
{
    struct handshake *h = timer->data;
    char detail[TRANSPORT_DETAIL_MAX];
    snprintf(detail, sizeof detail, "no handshake within %llu ms",
             (unsigned long long)h->t->handshake_timeout_ms);
    handshake_refuse(h, OUTCOME_TIMEOUT, LOG_INFO, detail);
}

/* Allocates a handshake with its tcp memory (not yet initialised) and a running timer. */
static struct handshake *handshake_new(struct transport *t, int direction)
{
    struct handshake *h = raft_calloc(1, sizeof *h);
    if (h == NULL) {
        goto err;
    }
    struct tandem_relay_conn *conn = raft_calloc(1, sizeof *conn);
    if (conn == NULL) {
        goto err_after_handshake;
    }
    conn->owner = h;
    h->tcp = &conn->tcp;
    h->t = t;
    tandem_sm_init(&h->tcp_sm, "handshake tcp", handle_states, HANDLE_STATES, HANDLE_NONE,
                   tcp_invariant, h);
    tandem_sm_init(&h->timer_sm, "handshake timer", handle_states, HANDLE_STATES, HANDLE_NONE, NULL,
                   NULL);
    tandem_sm_init(&h->phase_sm, "handshake", phases, PHASE_COUNT, PHASE_NEW, phase_invariant, h);
    h->direction = direction;
    h->epoch = t->epoch;
    h->refusal = OUTCOME_OK;
    if (uv_timer_init(t->loop, &h->timer) != 0) {
        goto err_after_tcp;
    }
    h->timer.data = h;
    tandem_sm_move(&h->timer_sm, HANDLE_OPEN);
    tandem_list_push_front(&t->handshakes, &h->link);
    if (uv_timer_start(&h->timer, handshake_timer_cb, t->handshake_timeout_ms, 0) != 0) {
        h->req = NULL;
        handshake_fail(h); /* the timer is still open, so h survives until its close cb */
        return NULL;
    }
    return h;

err_after_tcp:
    raft_free(h->tcp);
err_after_handshake:
    raft_free(h);
err:
    return NULL;
}

/* ---- moving frames; the only I/O a TLS layer would need to wrap ---- */

static void handshake_alloc_cb(uv_handle_t *handle, size_t suggested_size, uv_buf_t *buf)
{
    struct handshake *h = handle->data;
    (void)suggested_size;
    tandem_assert(h->in_len < h->in_want && h->in_want <= sizeof h->in);
    /* Never more than the frame still missing: bytes after it belong to raft. */
    buf->base = (char *)h->in + h->in_len;
    buf->len = h->in_want - h->in_len;
}

static struct tandem_relay_conn *handshake_conn(const struct handshake *h)
{
    return tandem_relay_conn_of((uv_handle_t *)h->tcp);
}

static void handshake_read_failed(struct handshake *h, ssize_t nread)
{
    char detail[TRANSPORT_DETAIL_MAX];
    struct tandem_tls *tls = handshake_conn(h)->tls;
    if (tls != NULL && nread == UV_EPROTO) {
        handshake_refuse(h, OUTCOME_TLS, LOG_INFO, tandem_tls_error(tls));
        return;
    }
    snprintf(detail, sizeof detail, "%s after %zu of %zu bytes", uv_strerror((int)nread), h->in_len,
             h->in_want);
    handshake_refuse(h, h->in_len > 0 ? OUTCOME_MALFORMED : OUTCOME_IO, LOG_INFO, detail);
}

static void handshake_got(struct handshake *h, size_t before);

static void handshake_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct handshake *h = stream->data;
    (void)buf;
    if (nread == 0 || phase(h) == PHASE_FAILING) {
        return;
    }
    if (nread < 0) {
        handshake_read_failed(h, nread);
        return;
    }
    tandem_assert((size_t)nread <= h->in_want - h->in_len); /* alloc_cb gave no more room */
    size_t before = h->in_len;
    h->in_len += (size_t)nread;
    handshake_got(h, before);
}

/* Over TLS the session hands over what it decrypted. An honest peer writes nothing after its
 * frame until it has our answer (and an acceptor never writes after its ack): more is refused. */
static void handshake_tls_read_cb(void *data, ssize_t n, const char *bytes)
{
    struct handshake *h = ((struct tandem_relay_conn *)data)->owner;
    if (n == 0 || phase(h) == PHASE_FAILING) {
        return;
    }
    if (n < 0) {
        handshake_read_failed(h, n);
        return;
    }
    if ((size_t)n > h->in_want - h->in_len) {
        handshake_refuse(h, OUTCOME_MALFORMED, LOG_INFO, "bytes past the handshake frame");
        return;
    }
    size_t before = h->in_len;
    memcpy(h->in + h->in_len, bytes, (size_t)n);
    h->in_len += (size_t)n;
    handshake_got(h, before);
}

/* After bytes of the frame arrived: judges a new head, and once the frame is whole (or its head
 * bad) stops reading and hands it on. */
static void handshake_got(struct handshake *h, size_t before)
{
    struct tandem_tls *tls = handshake_conn(h)->tls;
    if (h->in_len < h->in_want) {
        /* A head that just arrived and is bad (another version: another frame size) is judged
         * at once, so a peer speaking another version hears why instead of timing out. */
        char detail[TRANSPORT_DETAIL_MAX];
        if (before >= FRAME_HEAD_SIZE || h->in_len < FRAME_HEAD_SIZE ||
            frame_head_check(h->in, h->in_magic, detail) == OUTCOME_OK) {
            return;
        }
    }
    /* Only fails for a stream that is not a stream: ours always is. Stopping here keeps raft's
     * first bytes in the kernel until raft_uv reads them itself. */
    int rv = tls != NULL ? tandem_tls_read_stop(tls) : uv_read_stop((uv_stream_t *)h->tcp);
    tandem_assert(rv == 0);
    tandem_assert(h->in_len == h->in_want || h->in_len >= FRAME_HEAD_SIZE);
    h->in_done(h);
}

static void handshake_recv(struct handshake *h, size_t size, uint64_t magic,
                           void (*done)(struct handshake *h))
{
    tandem_assert(size >= FRAME_HEAD_SIZE && size <= sizeof h->in && size % 8 == 0);
    tandem_assert(tandem_sm_state(&h->tcp_sm) == HANDLE_OPEN);
    h->in_len = 0;
    h->in_want = size;
    h->in_magic = magic;
    h->in_done = done;
    struct tandem_tls *tls = handshake_conn(h)->tls;
    if (tls != NULL) {
        if (tandem_tls_read_start(tls, handshake_tls_read_cb) != TANDEM_OK) {
            handshake_refuse(h, OUTCOME_IO, LOG_WARNING, tandem_tls_error(tls));
        }
        return;
    }
    int rv = uv_read_start((uv_stream_t *)h->tcp, handshake_alloc_cb, handshake_read_cb);
    if (rv != 0) {
        handshake_refuse(h, OUTCOME_IO, LOG_WARNING, uv_strerror(rv));
    }
}

static void handshake_write_cb(uv_write_t *write_req, int status)
{
    struct handshake *h = write_req->data;
    if (phase(h) == PHASE_FAILING) {
        return; /* UV_ECANCELED from our own uv_close */
    }
    if (status != 0) {
        handshake_refuse(h, OUTCOME_IO, LOG_INFO, uv_strerror(status));
        return;
    }
    h->out_done(h);
}

static void handshake_tls_write_cb(void *data, void *write_data, int status)
{
    struct handshake *h = write_data;
    (void)data;
    if (phase(h) == PHASE_FAILING) {
        return; /* cancelled by our own uv_close */
    }
    if (status != TANDEM_OK) {
        handshake_refuse(h, OUTCOME_IO, LOG_INFO, tandem_tls_error(handshake_conn(h)->tls));
        return;
    }
    h->out_done(h);
}

static void handshake_send(struct handshake *h, size_t size, void (*done)(struct handshake *h))
{
    tandem_assert(size > 0 && size <= sizeof h->out && size % 8 == 0);
    tandem_assert(tandem_sm_state(&h->tcp_sm) == HANDLE_OPEN);
    uv_buf_t buf = uv_buf_init((char *)h->out, (unsigned)size);
    h->out_done = done;
    h->write.data = h;
    struct tandem_tls *tls = handshake_conn(h)->tls;
    if (tls != NULL) {
        if (tandem_tls_write(tls, &buf, 1, h, handshake_tls_write_cb) != TANDEM_OK) {
            handshake_refuse(h, OUTCOME_IO, LOG_WARNING, tandem_tls_error(tls));
        }
        return;
    }
    int rv = uv_write(&h->write, (uv_stream_t *)h->tcp, &buf, 1, handshake_write_cb);
    if (rv != 0) {
        handshake_refuse(h, OUTCOME_IO, LOG_WARNING, uv_strerror(rv));
    }
}

static int handshake_tune(struct handshake *h)
{
    int rv = uv_tcp_nodelay(h->tcp, 1);
    if (rv == 0) {
        rv = uv_tcp_keepalive(h->tcp, 1, TRANSPORT_KEEPALIVE_DELAY_S);
    }
    if (rv != 0) {
        handshake_refuse(h, OUTCOME_IO, LOG_WARNING, uv_strerror(rv));
    }
    return rv;
}

/* Initialises h's tcp handle (its memory is h's). Returns 0, or non-zero after refusing h:
 * then h may be gone. */
static int handshake_tcp_open(struct handshake *h)
{
    tandem_assert(tandem_sm_state(&h->tcp_sm) == HANDLE_NONE && phase(h) != PHASE_FAILING);
    int rv = uv_tcp_init(h->t->loop, h->tcp);
    if (rv != 0) {
        handshake_refuse(h, OUTCOME_IO, LOG_WARNING, uv_strerror(rv));
        return rv;
    }
    h->tcp->data = h;
    tandem_sm_move(&h->tcp_sm, HANDLE_OPEN);
    return 0;
}

/* Gives the stream away. Returns it; h stays only until its timer has closed. */
static struct uv_stream_s *handshake_handover(struct handshake *h)
{
    /* The stream leaves our hands whole: open, read stopped, nothing of a frame left unread. */
    tandem_assert(tandem_sm_state(&h->tcp_sm) == HANDLE_OPEN && h->in_len == h->in_want);
    struct uv_stream_s *stream = (struct uv_stream_s *)h->tcp;
    h->tcp = NULL;
    tandem_sm_move(&h->tcp_sm, HANDLE_NONE);
    handshake_release_inbound_slot(h);
    tandem_sm_move(&h->phase_sm, PHASE_HANDED_OVER);
    memo_forget_peer(h->t, h->peer_key);
    (void)uv_timer_stop(&h->timer); /* always 0; the close below is what matters */
    handshake_close_timer(h);
    return stream;
}

/* ---- TLS: the session under the handshake ---- */

static void outbound_hello_sent(struct handshake *h);
static void inbound_hello_received(struct handshake *h);

/* The handshake's next step on a connection that is secure (or plaintext by configuration). */
static void handshake_exchange(struct handshake *h)
{
    if (h->direction == OUTBOUND) {
        tandem_sm_move(&h->phase_sm, PHASE_SENDING_HELLO);
        handshake_send(h, HELLO_SIZE, outbound_hello_sent);
    } else {
        tandem_sm_move(&h->phase_sm, PHASE_AWAITING_HELLO);
        handshake_recv(h, HELLO_SIZE, HELLO_MAGIC, inbound_hello_received);
    }
}

/* Whether the certificate the peer proved is a node's (and, outbound, the one dialled); refuses
 * h when not. Inbound, the member its hello names is judged once the hello is in. */
static bool handshake_tls_peer_ok(struct handshake *h, struct tandem_tls *tls)
{
    struct tandem_tls_peer peer;
    char detail[TRANSPORT_DETAIL_MAX];
    tandem_tls_peer(tls, &peer);
    printable(peer.name);
    if (peer.kind != TANDEM_TLS_PEER_NODE) {
        snprintf(detail, sizeof detail, "a %s certificate ('%s'), not a node's",
                 peer.kind == TANDEM_TLS_PEER_USER ? "user" : "missing", peer.name);
    } else if (h->direction == OUTBOUND && !tandem_tls_peer_is_node(tls, h->peer_name)) {
        snprintf(detail, sizeof detail, "the certificate of '%s' answered for '%s'", peer.name,
                 h->peer_name);
    } else {
        return true;
    }
    handshake_refuse(h, OUTCOME_IDENTITY, LOG_WARNING, detail);
    return false;
}

static void handshake_tls_cb(void *data, int status)
{
    struct handshake *h = ((struct tandem_relay_conn *)data)->owner;
    struct tandem_tls *tls = handshake_conn(h)->tls;
    if (phase(h) != PHASE_TLS) {
        return; /* failing already (timeout, transport closing) */
    }
    if (status != TANDEM_OK) {
        handshake_refuse(h, OUTCOME_TLS, LOG_INFO, tandem_tls_error(tls));
        return;
    }
    if (handshake_tls_peer_ok(h, tls)) {
        handshake_exchange(h);
    }
}

/* Starts the TLS handshake on h's connected, tuned tcp, or goes straight to the exchange when
 * the transport is plaintext. The handshake timer covers both. */
static void handshake_secure(struct handshake *h)
{
    struct transport *t = h->t;
    struct tandem_relay_conn *conn = handshake_conn(h);
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (t->tls == NULL) {
        handshake_exchange(h);
        return;
    }
    tandem_sm_move(&h->phase_sm, PHASE_TLS);
    bool outbound = h->direction == OUTBOUND;
    int rv = tandem_tls_new(t->tls, h->tcp, outbound ? TANDEM_TLS_CLIENT : TANDEM_TLS_SERVER,
                            outbound ? h->peer_name : NULL, conn, &conn->tls, errmsg);
    if (rv != TANDEM_OK) {
        conn->tls = NULL;
        handshake_refuse(h, OUTCOME_IO, LOG_WARNING, errmsg);
        return;
    }
    if (tandem_tls_handshake(conn->tls, handshake_tls_cb) != TANDEM_OK) {
        handshake_refuse(h, OUTCOME_TLS, LOG_INFO, tandem_tls_error(conn->tls));
    }
}

/* Over TLS, the hello must come from the member the certificate names: its name, and the raft
 * id derived from it. Refuses h (no ack) when not. */
static bool inbound_identity_ok(struct handshake *h)
{
    struct tandem_tls *tls = handshake_conn(h)->tls;
    const char *claimed = h->hello.member.name;
    if (tls == NULL ||
        (tandem_tls_peer_is_node(tls, claimed) && h->hello.id == tandem_member_id(claimed))) {
        return true;
    }
    struct tandem_tls_peer peer;
    char detail[TRANSPORT_DETAIL_MAX];
    tandem_tls_peer(tls, &peer);
    printable(peer.name);
    snprintf(detail, sizeof detail, "the certificate of '%s' claims to be '%s' (raft id %llu)",
             peer.name, claimed, (unsigned long long)h->hello.id);
    handshake_refuse(h, OUTCOME_IDENTITY, LOG_WARNING, detail);
    return false;
}

/* ---- relays (consensus/raft_relay.h) ---- */

static struct relay_list *relays_of(struct transport *t, const struct tandem_relay *relay)
{
    return tandem_relay_outbound(relay) ? &t->relays_out : &t->relays_in;
}

static void relays_count(struct transport *t)
{
    t->stats.relays_open = t->relays_in.n;
    t->stats.relays_outbound_open = t->relays_out.n;
}

static bool relays_remove(struct transport *t, const struct tandem_relay *relay)
{
    struct relay_list *list = relays_of(t, relay);
    for (unsigned i = 0; i < list->n; i++) {
        if (list->items[i] == relay) {
            memmove(&list->items[i], &list->items[i + 1],
                    (list->n - i - 1) * sizeof list->items[0]);
            list->n--;
            relays_count(t);
            return true;
        }
    }
    return false;
}

/* Closes a relay we still list: it leaves the list now and calls back once closed. */
static void relays_close(struct transport *t, struct tandem_relay *relay)
{
    (void)relays_remove(t, relay);
    t->n_relays_closing++;
    tandem_relay_close(relay);
}

/* Lists a new relay: an older one of the same direction from the same peer id, and the oldest
 * past the cap, go. */
static void relays_add(struct transport *t, struct tandem_relay *relay)
{
    struct relay_list *list = relays_of(t, relay);
    for (unsigned i = 0; i < list->n;) {
        if (tandem_relay_peer(list->items[i]) == tandem_relay_peer(relay)) {
            t->stats.relays_replaced++;
            relays_close(t, list->items[i]);
        } else {
            i++;
        }
    }
    if (list->n == TANDEM_TRANSPORT_RELAYS_MAX) {
        t->stats.relays_replaced++;
        relays_close(t, list->items[0]);
    }
    list->items[list->n++] = relay;
    relays_count(t);
}

static void relay_refused_cb(void *data, const struct tandem_relay *relay, const char *why)
{
    struct transport *t = data;
    count_refusal(t, OUTCOME_FRAME);
    if (memo_first(t, tandem_relay_label(relay), OUTCOME_FRAME)) {
        transport_log(t, LOG_WARNING, "raft transport: dropped connection %s %s: %s: %s",
                      tandem_relay_outbound(relay) ? "to" : "from", tandem_relay_label(relay),
                      outcome_text(OUTCOME_FRAME), why);
    }
}

static void relay_closed_cb(void *data, struct tandem_relay *relay)
{
    struct transport *t = data;
    /* closed by itself (peer gone, bad frame): still listed */
    if (!relays_remove(t, relay)) {
        tandem_assert(t->n_relays_closing > 0); /* closed by us: counted when we closed it */
        t->n_relays_closing--;
    }
    transport_maybe_closed(t);
}

static uint64_t relay_term_cb(void *data)
{
    struct transport *t = data;
    return t->term != NULL ? t->term(t->term_data) : 0;
}

/* ---- inbound ---- */

/* The IP literal host of a "host:port", as bytes; false for a name (or garbage). An IPv4-mapped
 * IPv6 address counts as its IPv4 one. */
static bool ip_bytes(const char *host, uint8_t out[16], size_t *len)
{
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, out) == 1) {
        *len = 4;
        return true;
    }
    if (inet_pton(AF_INET6, host, &v6) != 1) {
        return false;
    }
    if (IN6_IS_ADDR_V4MAPPED(&v6)) {
        memcpy(out, v6.s6_addr + 12, 4);
        *len = 4;
    } else {
        memcpy(out, v6.s6_addr, 16);
        *len = 16;
    }
    return true;
}

/* Whether a hello may teach us its (newer) epoch: its sender is a member of our configuration
 * at the address it claims, and connects from the host that address names (when an IP). */
static bool hello_teaches_epoch(struct transport *t, const struct handshake *h, const char *ip)
{
    if (t->member == NULL) {
        return true;
    }
    if (!t->member(t->member_data, h->hello.id, h->hello.address)) {
        return false;
    }
    char host[TANDEM_HOSTPORT_LEN_MAX + 1];
    int port;
    uint8_t want[16], got[16];
    size_t want_len = 0, got_len = 0;
    if (tandem_hostport_split(h->hello.member.raft, host, sizeof host, &port) != 0) {
        return false;
    }
    if (!ip_bytes(host, want, &want_len)) {
        return true; /* a host name: the source cannot be judged without a lookup */
    }
    return ip_bytes(ip, got, &got_len) && got_len == want_len && memcmp(want, got, want_len) == 0;
}

static void inbound_ack_sent(struct handshake *h)
{
    struct transport *t = h->t;
    if (h->refusal != OUTCOME_OK) {
        handshake_fail(h); /* logged and counted when the hello was judged */
        return;
    }
    if (t->closing) {
        handshake_fail(h);
        return;
    }
    contact_heard(t, h->hello.id, h->hello.address, h->hello.epoch, h->hello.flags, true);
    if (h->probe) {
        t->stats.probes_answered++;
        memo_forget_peer(t, h->peer_key);
        handshake_fail(h); /* a probe is answered, never handed to raft */
        return;
    }
    t->stats.accepted++;
    /* hello lives in h, which survives this call: its timer is closing, not closed. */
    raft_id id = h->hello.id;
    const char *address = h->hello.address;
    char label[TANDEM_RELAY_LABEL_MAX], errmsg[TANDEM_ERRMSG_SIZE];
    snprintf(label, sizeof label, "%s", h->peer_label);
    struct uv_stream_s *stream = handshake_handover(h);
    struct tandem_relay_conn *conn = tandem_relay_conn_of((uv_handle_t *)stream);
    struct tandem_relay *relay = NULL;
    uv_stream_t *raft_side = NULL;
    int rv = conn->tls != NULL
                 ? tandem_relay_start_tls(t->loop, conn, false, id, label, &t->relay_config, &relay,
                                          &raft_side, errmsg)
                 : tandem_relay_start(t->loop, &conn->tcp, id, label, &t->relay_config, &relay,
                                      &raft_side, errmsg);
    if (rv != 0) {
        transport_log(t, LOG_WARNING, "raft transport: dropped connection from %s: %s", label,
                      errmsg);
        return;
    }
    relays_add(t, relay);
    t->accept_cb(t->raft, id, address, raft_side);
}

/* Judges a complete hello and answers it; refusals are logged here, before the ack is out. */
static void inbound_hello_received(struct handshake *h)
{
    struct transport *t = h->t;
    char detail[TRANSPORT_DETAIL_MAX] = "";
    h->epoch = t->epoch; /* a set_epoch while the hello was on its way applies to it */
    int outcome = hello_decode(h->in, &h->hello, detail);
    if (outcome == OUTCOME_OK && !inbound_identity_ok(h)) {
        return; /* before anything of the hello is believed: its epoch included */
    }
    if (outcome == OUTCOME_OK) {
        const struct tandem_member *m = &h->hello.member;
        char ip[TRANSPORT_PEER_KEY_MAX];
        snprintf(ip, sizeof ip, "%s", h->peer_key);
        snprintf(h->peer_key, sizeof h->peer_key, "%s", m->raft);
        snprintf(h->peer_label, sizeof h->peer_label, "%s (%s) from %s", m->name, m->raft, ip);
        if (strcmp(h->hello.cluster_id, t->cluster_id) == 0 && h->hello.epoch > h->epoch &&
            !hello_teaches_epoch(t, h, ip)) {
            t->stats.epoch_ignored++;
            if (memo_first(t, h->peer_key, OUTCOME_EPOCH)) {
                transport_log(t, LOG_WARNING,
                              "raft transport: %s claims epoch %llu; not learnt: it is no member "
                              "of our configuration at that address",
                              h->peer_label, (unsigned long long)h->hello.epoch);
            }
        } else if (strcmp(h->hello.cluster_id, t->cluster_id) == 0) {
            note_epoch(t, h->hello.epoch);
        }
        if (strcmp(h->hello.cluster_id, t->cluster_id) != 0) {
            outcome = OUTCOME_CLUSTER;
            snprintf(detail, sizeof detail, "theirs '%s', ours '%s'", h->hello.cluster_id,
                     t->cluster_id);
        } else if (h->hello.epoch != h->epoch || t->fenced_epoch > h->epoch) {
            outcome = OUTCOME_EPOCH;
            snprintf(detail, sizeof detail, "theirs %llu, ours %llu%s",
                     (unsigned long long)h->hello.epoch, (unsigned long long)h->epoch,
                     t->fenced_epoch > h->epoch ? " (fenced: a newer one exists)" : "");
            contact_heard(t, h->hello.id, h->hello.address, h->hello.epoch, 0, false);
        }
        h->probe = (h->hello.flags & HELLO_PROBE) != 0;
    }
    h->refusal = outcome;
    if (outcome != OUTCOME_OK) {
        count_refusal(t, outcome);
        if (memo_first(t, h->peer_key, outcome)) {
            transport_log(t, LOG_WARNING, "raft transport: refused connection from %s: %s: %s",
                          h->peer_label, outcome_text(outcome), detail);
        }
    }
    /* A fenced node tells an older peer the newest epoch it knows, so that peer is fenced too. */
    bool tell_newer = t->fenced_epoch > h->epoch && h->hello.epoch < t->fenced_epoch;
    ack_encode(h->out, outcome, tell_newer ? t->fenced_epoch : h->epoch,
               outcome == OUTCOME_OK && is_leading(t) ? FLAG_LEADER : 0);
    tandem_sm_move(&h->phase_sm, PHASE_SENDING_ACK);
    handshake_send(h, ACK_SIZE, inbound_ack_sent);
}

/* Names the peer by its IP; returns whether raft_allow lets that source in (an unknown one is
 * refused when the list is not empty). */
static bool inbound_peer_ip(struct handshake *h)
{
    struct sockaddr_storage addr;
    int len = (int)sizeof addr;
    char ip[TRANSPORT_PEER_KEY_MAX] = "unknown peer";
    bool known = uv_tcp_getpeername(h->tcp, (struct sockaddr *)&addr, &len) == 0;
    if (known) {
        int rv = addr.ss_family == AF_INET6
                     ? uv_ip6_name((struct sockaddr_in6 *)&addr, ip, sizeof ip)
                     : uv_ip4_name((struct sockaddr_in *)&addr, ip, sizeof ip);
        if (rv != 0) {
            snprintf(ip, sizeof ip, "unknown peer");
        }
    }
    snprintf(h->peer_key, sizeof h->peer_key, "%s", ip);
    snprintf(h->peer_label, sizeof h->peer_label, "%s", ip);
    return known ? tandem_allow_match(&h->t->allow, (const struct sockaddr *)&addr)
                 : h->t->allow.n == 0;
}

static void drop_close_cb(uv_handle_t *handle)
{
    struct transport *t = handle->data;
    raft_free(handle);
    t->n_dropping--;
    transport_maybe_closed(t);
}

/* Accepts and closes a connection we have no room for; libuv stops watching the listener
 * until the pending connection is accepted, so it must be taken even to refuse it. */
static void transport_drop(struct transport *t, uv_stream_t *listener, int outcome)
{
    struct uv_tcp_s *tcp = raft_malloc(sizeof *tcp);
    if (tcp == NULL) {
        transport_log(t, LOG_ERR, "raft transport: out of memory refusing a connection");
        return;
    }
    if (uv_tcp_init(t->loop, tcp) != 0) {
        raft_free(tcp);
        transport_log(t, LOG_ERR, "raft transport: cannot refuse a connection");
        return;
    }
    tcp->data = t;
    t->n_dropping++;
    (void)uv_accept(listener, (uv_stream_t *)tcp); /* closed either way: a failure loses nothing */
    uv_close((uv_handle_t *)tcp, drop_close_cb);
    t->stats.dropped_busy++;
    if (memo_first(t, "", outcome)) {
        transport_log(t, LOG_WARNING, "raft transport: closing new connections: %s (%d)",
                      outcome_text(outcome), TANDEM_TRANSPORT_PENDING_INBOUND_MAX);
    }
}

static void transport_listen_cb(uv_stream_t *listener, int status)
{
    struct transport *t = listener->data;
    if (status != 0) {
        transport_log(t, LOG_WARNING, "raft transport: accept: %s", uv_strerror(status));
        return;
    }
    if (t->closing) {
        return;
    }
    if (t->n_inbound >= TANDEM_TRANSPORT_PENDING_INBOUND_MAX) {
        transport_drop(t, listener, OUTCOME_BUSY);
        return;
    }
    struct handshake *h = handshake_new(t, INBOUND);
    if (h == NULL) {
        transport_drop(t, listener, OUTCOME_BUSY);
        return;
    }
    h->counted_inbound = true;
    t->n_inbound++;
    snprintf(h->peer_key, sizeof h->peer_key, "unknown peer");
    snprintf(h->peer_label, sizeof h->peer_label, "unknown peer");
    if (handshake_tcp_open(h) != 0) {
        return;
    }
    int rv = uv_accept(listener, (uv_stream_t *)h->tcp);
    if (rv != 0) {
        handshake_refuse(h, OUTCOME_IO, LOG_WARNING, uv_strerror(rv));
        return;
    }
    if (!inbound_peer_ip(h)) {
        handshake_refuse(h, OUTCOME_ALLOW, LOG_INFO, "closed before TLS");
        return;
    }
    if (handshake_tune(h) != 0) {
        return;
    }
    handshake_secure(h);
}

/* ---- outbound ---- */

/* Over TLS raft_uv writes plaintext into a relay, which encrypts it to the peer. */
static void outbound_relay(struct transport *t, struct tandem_relay_conn *conn,
                           struct raft_uv_connect *req, raft_id id, const char *label)
{
    struct tandem_relay *relay = NULL;
    uv_stream_t *raft_side = NULL;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (tandem_relay_start_tls(t->loop, conn, true, id, label, &t->relay_config, &relay, &raft_side,
                               errmsg) != 0) {
        transport_log(t, LOG_WARNING, "raft transport: dropped connection to %s: %s", label,
                      errmsg);
        req->cb(req, NULL, RAFT_NOCONNECTION);
        return;
    }
    relays_add(t, relay);
    req->cb(req, raft_side, 0);
}

static void outbound_ack_received(struct handshake *h)
{
    struct transport *t = h->t;
    uint64_t epoch = 0, flags = 0;
    char detail[TRANSPORT_DETAIL_MAX] = "";
    int head = frame_head_check(h->in, ACK_MAGIC, detail);
    if (head == OUTCOME_VERSION) {
        handshake_refuse(h, OUTCOME_VERSION, LOG_WARNING, detail);
        return;
    }
    int status = head == OUTCOME_OK ? ack_decode(h->in, &epoch, &flags) : -1;
    if (status < 0) {
        handshake_refuse(h, OUTCOME_MALFORMED, LOG_WARNING, "the peer's answer is no tandem ack");
        return;
    }
    if (status != OUTCOME_CLUSTER) {
        note_epoch(t, epoch);
        contact_heard(t, h->peer_id, h->peer_address, epoch, flags,
                      status == OUTCOME_OK && epoch == h->epoch);
    }
    if (status == OUTCOME_OK && epoch != h->epoch) {
        status = OUTCOME_EPOCH; /* an acceptor must not say OK to another epoch */
    }
    if (status != OUTCOME_OK) {
        snprintf(detail, sizeof detail, "refused by the peer (its epoch %llu, ours %llu)",
                 (unsigned long long)epoch, (unsigned long long)h->epoch);
        handshake_refuse(h, status, LOG_WARNING, detail);
        return;
    }
    h->answered = true;
    if (h->probe) {
        t->stats.probed++;
        memo_forget_peer(t, h->peer_key);
        handshake_fail(h); /* the answer is all a probe wanted */
        return;
    }
    if (t->closing) {
        handshake_fail(h);
        return;
    }
    t->stats.connected++;
    struct raft_uv_connect *req = h->req;
    char label[TANDEM_RELAY_LABEL_MAX];
    snprintf(label, sizeof label, "%s", h->peer_label);
    raft_id id = h->peer_id;
    struct uv_stream_s *stream = handshake_handover(h);
    struct tandem_relay_conn *conn = tandem_relay_conn_of((uv_handle_t *)stream);
    if (conn->tls == NULL) {
        req->cb(req, stream, 0);
        return;
    }
    outbound_relay(t, conn, req, id, label);
}

static void outbound_hello_sent(struct handshake *h)
{
    /* Nothing more is written until the ack arrives, so the acceptor never reads raft bytes
     * as part of the handshake. */
    tandem_sm_move(&h->phase_sm, PHASE_AWAITING_ACK);
    handshake_recv(h, ACK_SIZE, ACK_MAGIC, outbound_ack_received);
}

static void outbound_connect_next(struct handshake *h);

static void outbound_connect_cb(uv_connect_t *connect_req, int status)
{
    struct handshake *h = connect_req->data;
    if (phase(h) == PHASE_FAILING) {
        return;
    }
    if (status != 0) {
        if (h->next_addr < h->n_addrs) {
            h->retry_connect = true;
            tandem_sm_move(&h->tcp_sm, HANDLE_CLOSING);
            uv_close((uv_handle_t *)h->tcp, handshake_tcp_close_cb);
            return;
        }
        handshake_refuse(h, OUTCOME_IO, LOG_INFO, uv_strerror(status));
        return;
    }
    if (handshake_tune(h) != 0) {
        return;
    }
    handshake_secure(h);
}

static void outbound_connect_next(struct handshake *h)
{
    tandem_sm_move(&h->phase_sm, PHASE_CONNECTING);
    if (handshake_tcp_open(h) != 0) {
        return;
    }
    h->connect.data = h;
    tandem_assert(h->next_addr < h->n_addrs && h->n_addrs <= TRANSPORT_RESOLVED_MAX);
    const struct sockaddr *addr = (const struct sockaddr *)&h->addrs[h->next_addr++];
    int rv = uv_tcp_connect(&h->connect, h->tcp, addr, outbound_connect_cb);
    if (rv != 0) {
        handshake_refuse(h, OUTCOME_IO, LOG_WARNING, uv_strerror(rv));
    }
}

static void handshake_tcp_close_cb(uv_handle_t *handle)
{
    struct tandem_relay_conn *conn = tandem_relay_conn_of(handle);
    struct handshake *h = conn->owner;
    if (conn->tls != NULL) {
        tandem_tls_free(conn->tls);
        conn->tls = NULL;
    }
    tandem_sm_move(&h->tcp_sm, HANDLE_NONE);
    if (h->retry_connect && phase(h) != PHASE_FAILING) {
        h->retry_connect = false;
        outbound_connect_next(h);
        return;
    }
    handshake_maybe_free(h);
}

static void outbound_resolve_cb(uv_getaddrinfo_t *resolve, int status, struct addrinfo *res)
{
    struct handshake *h = resolve->data;
    h->resolving = false;
    if (phase(h) == PHASE_FAILING) {
        uv_freeaddrinfo(res);
        handshake_maybe_free(h);
        return;
    }
    if (status != 0) {
        handshake_refuse(h, OUTCOME_IO, LOG_WARNING, uv_strerror(status));
        return;
    }
    h->n_addrs = 0;
    for (struct addrinfo *ai = res; ai != NULL && h->n_addrs < TRANSPORT_RESOLVED_MAX;
         ai = ai->ai_next) {
        if (ai->ai_addrlen <= sizeof h->addrs[0]) {
            memcpy(&h->addrs[h->n_addrs++], ai->ai_addr, ai->ai_addrlen);
        }
    }
    uv_freeaddrinfo(res);
    if (h->n_addrs == 0) {
        handshake_refuse(h, OUTCOME_IO, LOG_WARNING, "host resolves to no address");
        return;
    }
    outbound_connect_next(h);
}

/* Starts an outbound handshake to a member address: a raft connection (req and cb given) or a
 * probe (req NULL). Returns 0, or a raft code with raft->errmsg filled; then no callback runs. */
static int outbound_start(struct transport *t, raft_id id, const char *address,
                          struct raft_uv_connect *req, raft_uv_connect_cb cb)
{
    struct raft_uv_transport *raft = t->raft;
    struct tandem_member m;
    char errmsg[TANDEM_ERRMSG_SIZE] = "bad raft host:port", host[TANDEM_HOSTPORT_LEN_MAX + 1],
         port[16];
    int port_number;
    if (id == 0 || tandem_member_address_parse(address, &m, errmsg) != 0 ||
        tandem_hostport_split(m.raft, host, sizeof host, &port_number) != 0) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "raft peer %llu: %.200s",
                 (unsigned long long)id, errmsg);
        if (memo_first(t, address, OUTCOME_MALFORMED)) {
            transport_log(t, LOG_ERR, "raft transport: %s", raft->errmsg);
        }
        return RAFT_INVALID;
    }
    snprintf(port, sizeof port, "%d", port_number);
    struct handshake *h = handshake_new(t, OUTBOUND);
    if (h == NULL) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "out of memory connecting to %s", m.raft);
        return RAFT_NOMEM;
    }
    h->probe = req == NULL;
    h->peer_id = id;
    snprintf(h->peer_address, sizeof h->peer_address, "%s", address);
    snprintf(h->peer_key, sizeof h->peer_key, "%s", m.raft);
    snprintf(h->peer_label, sizeof h->peer_label, "%s (%s)", m.name, m.raft);
    snprintf(h->peer_name, sizeof h->peer_name, "%s", m.name);
    hello_encode(h->out, t->cluster_id, h->epoch, t->id, t->address,
                 (h->probe ? HELLO_PROBE : 0) | (is_leading(t) ? FLAG_LEADER : 0));
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    h->resolve.data = h;
    int rv = uv_getaddrinfo(t->loop, &h->resolve, outbound_resolve_cb, host, port, &hints);
    if (rv != 0) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "resolve %s: %s", host, uv_strerror(rv));
        handshake_fail(h); /* req is not set yet: raft's callback never runs for this error */
        return RAFT_NOCONNECTION;
    }
    h->resolving = true;
    h->req = req;
    if (req != NULL) {
        req->cb = cb;
    }
    tandem_sm_move(&h->phase_sm, PHASE_RESOLVING);
    return 0;
}

/* Quarantined: raft's connect fails from the loop, as for a peer that cannot be reached. The
 * handshake goes straight to failing; its timer's close callback reports RAFT_NOCONNECTION, so
 * raft_uv (uv_send.c) keeps at most a few messages queued and retries after its delay. */
static int quarantine_refuse(struct transport *t, struct raft_uv_connect *req,
                             raft_uv_connect_cb cb)
{
    struct handshake *h = handshake_new(t, OUTBOUND);
    if (h == NULL) {
        snprintf(t->raft->errmsg, sizeof t->raft->errmsg, "out of memory");
        return RAFT_NOMEM;
    }
    t->stats.quarantine_refused++;
    h->req = req;
    req->cb = cb;
    handshake_fail(h);
    return 0;
}

/* Implements raft_uv_transport->connect. */
static int transport_connect(struct raft_uv_transport *raft, struct raft_uv_connect *req,
                             raft_id id, const char *address, raft_uv_connect_cb cb)
{
    struct transport *t = raft->impl;
    tandem_assert(req != NULL && cb != NULL);
    if (t->quarantine) {
        return quarantine_refuse(t, req, cb);
    }
    return outbound_start(t, id, address, req, cb);
}

/* ---- raft_uv_transport methods ---- */

static int transport_init_identity(struct raft_uv_transport *raft, raft_id id, const char *address)
{
    struct transport *t = raft->impl;
    struct tandem_member m;
    char errmsg[TANDEM_ERRMSG_SIZE];
    if (tandem_member_address_parse(address, &m, errmsg) != 0) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "own address: %.200s", errmsg);
        return RAFT_INVALID;
    }
    if (id == 0) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "own raft id is 0");
        return RAFT_INVALID;
    }
    t->id = id;
    snprintf(t->address, sizeof t->address, "%s", address);
    if (!t->bind_override) {
        snprintf(t->listen_address, sizeof t->listen_address, "%s", m.raft);
    }
    return 0;
}

static void transport_listener_close_cb(uv_handle_t *handle)
{
    struct transport *t = handle->data;
    tandem_sm_move(&t->listener_sm, HANDLE_NONE);
    transport_maybe_closed(t);
}

static int transport_bind(struct transport *t, const struct sockaddr *addr)
{
    struct raft_uv_transport *raft = t->raft;
    int rv = uv_tcp_init(t->loop, &t->listener);
    if (rv != 0) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "listen: %s", uv_strerror(rv));
        return RAFT_IOERR;
    }
    t->listener.data = t;
    tandem_sm_move(&t->listener_sm, HANDLE_OPEN);
    rv = uv_tcp_bind(&t->listener, addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&t->listener, TRANSPORT_LISTEN_BACKLOG, transport_listen_cb);
    }
    if (rv != 0) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "listen on %s: %s", t->listen_address,
                 uv_strerror(rv));
        tandem_sm_move(&t->listener_sm, HANDLE_CLOSING);
        uv_close((uv_handle_t *)&t->listener, transport_listener_close_cb);
        return RAFT_IOERR;
    }
    return 0;
}

/* Implements raft_uv_transport->listen: binds the first address the listen host resolves to
 * (an IP literal, or 0.0.0.0, is what a deployment should give). */
static int transport_listen(struct raft_uv_transport *raft, raft_uv_accept_cb cb)
{
    struct transport *t = raft->impl;
    char host[TANDEM_HOSTPORT_LEN_MAX + 1], port[16];
    int port_number;
    if (tandem_hostport_split(t->listen_address, host, sizeof host, &port_number) != 0) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "bad listen address '%s'", t->listen_address);
        return RAFT_INVALID;
    }
    snprintf(port, sizeof port, "%d", port_number);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rv = getaddrinfo(host, port, &hints, &res);
    if (rv != 0 || res == NULL) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "resolve listen address %s: %s",
                 t->listen_address, rv != 0 ? gai_strerror(rv) : "no address");
        return RAFT_IOERR;
    }
    t->accept_cb = cb;
    rv = transport_bind(t, res->ai_addr);
    freeaddrinfo(res);
    return rv;
}

/* Implements raft_uv_transport->close. */
static void transport_close_method(struct raft_uv_transport *raft, raft_uv_transport_close_cb cb)
{
    struct transport *t = raft->impl;
    t->closing = true;
    t->close_cb = cb;
    if (tandem_sm_state(&t->listener_sm) == HANDLE_OPEN) {
        tandem_sm_move(&t->listener_sm, HANDLE_CLOSING);
        uv_close((uv_handle_t *)&t->listener, transport_listener_close_cb);
    }
    struct tandem_list *link = t->handshakes.next;
    while (link != &t->handshakes) {
        struct tandem_list *next = link->next; /* handshake_fail may free this one */
        /* outbound ones report RAFT_CANCELED since t->closing is set */
        handshake_fail(tandem_list_entry(link, struct handshake, link));
        link = next;
    }
    while (t->relays_in.n > 0) {
        relays_close(t, t->relays_in.items[t->relays_in.n - 1]);
    }
    while (t->relays_out.n > 0) {
        relays_close(t, t->relays_out.items[t->relays_out.n - 1]);
    }
    transport_maybe_closed(t);
}

/* ---- public ---- */

static int config_check(const struct tandem_transport_config *config, char *errmsg)
{
    char host[TANDEM_HOSTPORT_LEN_MAX + 1];
    int port;
    if (config->cluster_id == NULL ||
        !tandem_member_name_ok(config->cluster_id, TANDEM_CLUSTER_ID_LEN_MAX)) {
        snprintf(errmsg, RAFT_ERRMSG_BUF_SIZE, "invalid cluster id (1-%d of A-Z a-z 0-9 . _ -)",
                 TANDEM_CLUSTER_ID_LEN_MAX);
        return RAFT_INVALID;
    }
    if (config->bind_address != NULL &&
        tandem_hostport_split(config->bind_address, host, sizeof host, &port) != 0) {
        snprintf(errmsg, RAFT_ERRMSG_BUF_SIZE, "invalid bind address '%s' (want host:port)",
                 config->bind_address);
        return RAFT_INVALID;
    }
    unsigned timeout_ms = config->handshake_timeout_ms;
    if (timeout_ms != 0 && (timeout_ms < TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_MIN ||
                            timeout_ms > TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_MAX)) {
        snprintf(errmsg, RAFT_ERRMSG_BUF_SIZE, "handshake timeout %u ms outside %d..%d", timeout_ms,
                 TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_MIN,
                 TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_MAX);
        return RAFT_INVALID;
    }
    return 0;
}

int tandem_transport_init(struct raft_uv_transport *raft, struct uv_loop_s *loop,
                          const struct tandem_transport_config *config)
{
    int rv = config_check(config, raft->errmsg);
    if (rv != 0) {
        return rv;
    }
    struct transport *t = raft_calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "out of memory");
        return RAFT_NOMEM;
    }
    t->raft = raft;
    t->loop = loop;
    tandem_list_init(&t->handshakes);
    tandem_sm_init(&t->listener_sm, "raft listener", handle_states, HANDLE_STATES, HANDLE_NONE,
                   listener_invariant, t);
    snprintf(t->cluster_id, sizeof t->cluster_id, "%s", config->cluster_id);
    t->epoch = config->epoch;
    if (config->bind_address != NULL) {
        snprintf(t->listen_address, sizeof t->listen_address, "%s", config->bind_address);
        t->bind_override = true;
    }
    t->handshake_timeout_ms = config->handshake_timeout_ms != 0
                                  ? config->handshake_timeout_ms
                                  : TANDEM_TRANSPORT_HANDSHAKE_TIMEOUT_MS_DEFAULT;
    t->log = config->log;
    t->log_data = config->log_data;
    t->leading = config->leading;
    t->leading_data = config->leading_data;
    t->quarantine = config->quarantine;
    t->term = config->term;
    t->term_data = config->term_data;
    t->member = config->member;
    t->member_data = config->member_data;
    t->tls = config->tls;
    if (config->allow != NULL) {
        t->allow = *config->allow;
    }
    t->relay_config = (struct tandem_relay_config){
        .limits = config->frame_limits,
        .term = relay_term_cb,
        .refused = relay_refused_cb,
        .closed = relay_closed_cb,
        .data = t,
    };
    if (t->relay_config.limits.append_bytes_max == 0) {
        t->relay_config.limits.append_bytes_max = TANDEM_TRANSPORT_APPEND_BYTES_DEFAULT;
    }
    if (t->relay_config.limits.snapshot_bytes_max == 0) {
        t->relay_config.limits.snapshot_bytes_max = TANDEM_TRANSPORT_SNAPSHOT_BYTES_DEFAULT;
    }
    raft->version = 1;
    raft->impl = t;
    raft->init = transport_init_identity;
    raft->listen = transport_listen;
    raft->connect = transport_connect;
    raft->close = transport_close_method;
    return 0;
}

void tandem_transport_set_epoch(struct raft_uv_transport *raft, uint64_t epoch)
{
    struct transport *t = raft->impl;
    t->epoch = epoch;
    memset(t->memo, 0, sizeof t->memo);
}

uint64_t tandem_transport_epoch(const struct raft_uv_transport *raft)
{
    const struct transport *t = raft->impl;
    return t->epoch;
}

void tandem_transport_stats(const struct raft_uv_transport *raft,
                            struct tandem_transport_stats *out)
{
    const struct transport *t = raft->impl;
    *out = t->stats;
}

int tandem_transport_probe(struct raft_uv_transport *raft, raft_id id, const char *address)
{
    struct transport *t = raft->impl;
    if (t == NULL || t->closing) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "transport closing");
        return RAFT_CANCELED;
    }
    if (t->id == 0) {
        snprintf(raft->errmsg, sizeof raft->errmsg, "no identity yet: raft has not started");
        return RAFT_INVALID;
    }
    struct contact *c = contact_find(t, id);
    if (c != NULL && c->pub.probing) {
        return RAFT_BUSY;
    }
    int rv = outbound_start(t, id, address, NULL, NULL);
    if (rv != 0) {
        return rv;
    }
    /* Made after the start, so a bad address leaves no row behind. A full table of probes in
     * flight (64 at once) only loses the in-flight mark. */
    c = contact_get(t, id);
    if (c != NULL) {
        snprintf(c->pub.address, sizeof c->pub.address, "%s", address);
        c->pub.probing = true;
        c->pub.last_probe_ms = uv_now(t->loop);
    }
    return 0;
}

int tandem_transport_contact(const struct raft_uv_transport *raft, raft_id id,
                             struct tandem_transport_contact *out)
{
    const struct transport *t = raft->impl;
    for (unsigned i = 0; t != NULL && i < TANDEM_TRANSPORT_CONTACTS_MAX; i++) {
        if (t->contacts[i].used && t->contacts[i].pub.id == id) {
            *out = t->contacts[i].pub;
            return 0;
        }
    }
    return -1;
}

unsigned tandem_transport_contacts(const struct raft_uv_transport *raft,
                                   struct tandem_transport_contact *out, unsigned max)
{
    const struct transport *t = raft->impl;
    unsigned n = 0;
    for (unsigned i = 0; t != NULL && i < TANDEM_TRANSPORT_CONTACTS_MAX && n < max; i++) {
        if (t->contacts[i].used) {
            out[n++] = t->contacts[i].pub;
        }
    }
    return n;
}

void tandem_transport_set_quarantine(struct raft_uv_transport *raft, bool on)
{
    struct transport *t = raft->impl;
    if (t != NULL) {
        t->quarantine = on;
    }
}

void tandem_transport_set_fenced(struct raft_uv_transport *raft, uint64_t newest_epoch)
{
    struct transport *t = raft->impl;
    if (t != NULL && newest_epoch > t->epoch) {
        t->fenced_epoch = newest_epoch;
    }
}

bool tandem_transport_quarantined(const struct raft_uv_transport *raft)
{
    const struct transport *t = raft->impl;
    return t != NULL && t->quarantine;
}

void tandem_transport_close(struct raft_uv_transport *raft)
{
    struct transport *t = raft->impl;
    if (t == NULL) {
        return;
    }
    /* Freeing with handles still on the loop would leave libuv pointing into freed memory. */
    if (tandem_sm_state(&t->listener_sm) != HANDLE_NONE || !tandem_list_empty(&t->handshakes) ||
        t->n_dropping > 0 || t->relays_in.n > 0 || t->relays_out.n > 0 || t->n_relays_closing > 0) {
        transport_log(t, LOG_ERR, "raft transport: closed with connections still open");
        return;
    }
    raft_free(t);
    raft->impl = NULL;
}
