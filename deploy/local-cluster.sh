#!/usr/bin/env bash
# Runs a tandem cluster of real tandemd processes on 127.0.0.1 for demos, development and tests.
#
#   local-cluster.sh up DIR [--topology 2+2+1|2+2|3|2+2-async] [--insecure] [--set key=value ...]
#                           [--cluster-id ID] [--tls-from DIR] [--restore FILE]
#   local-cluster.sh down DIR
#   local-cluster.sh start DIR NAME
#   local-cluster.sh stop DIR NAME [--kill]
#   local-cluster.sh status DIR
#   local-cluster.sh leader DIR [--timeout SECONDS] [--exclude NAME]
#   local-cluster.sh stop-site DIR SITE [--kill]   (every node of SITE: site loss for BCP)
#   local-cluster.sh start-site DIR SITE
#
# Layout of DIR: nodes (name site raft_address api_url role, one node a line), ports (name
# raft_port api_port), topology, mode, endpoints, env, tls/ (the cluster CA, one certificate per
# node and the users admin and operator, and crl.pem, made by deploy/certs.sh; not with
# --insecure: deploy/certs.sh revoke DIR/tls NAME and a SIGHUP to the nodes revoke one), and per
# node NAME/tandem.conf, NAME/data/, NAME/tandemd.log, NAME/tandemd.pid. Running `up` again on
# a DIR that holds a stopped cluster restarts it from its data with the same ports.
#
# A new cluster from a backup (README: Backups, "Restoring a whole cluster"): --restore FILE seeds
# every node's empty data directory with `tandemctl backup restore FILE --data-dir DIR/NAME/data
# --name NAME --new-cluster-id ID --data-key-file DIR/tls/data.key` before the first start, all
# under the one new cluster id (--cluster-id ID, else a random local-...), so the nodes start as
# one cluster at the backup's index. --tls-from OLD copies OLD/tls (a cluster directory's, or any
# directory of certs.sh's layout with data.key): the CA, the certificates and the personal-data
# key file the restored personal data was sealed with; without it the restore is refused when the
# backup holds personal data. (A backup sealed under backup_key_file: restore it by hand,
# tandemctl backup restore --key-file.)
#
# TLS is on unless --insecure (benchmarks only): API and member URLs are https://, every node's
# config names its certificate in DIR/tls, and DIR/env exports TANDEM_CACERT, TANDEM_CERT and
# TANDEM_KEY (user admin) for tandemctl; this script's own requests use the same files.
#
# Environment: TANDEM_BIN_DIR (default <repo>/build), TANDEM_UP_TIMEOUT (seconds to wait for a
# leader, default 30), TANDEM_STOP_TIMEOUT (seconds to wait after SIGTERM, default 15),
# TANDEM_CGROUP_ROOT (optional, for tests: a directory in a cgroup v2 hierarchy; each node then
# runs in its own cgroup ROOT/NAME from its first instruction, so that nftables rules can match
# every socket of one node by cgroup: see tests/integration/netcut.py), TANDEM_CERT_CACHE (optional,
# for tests: a directory where certificate sets are made once and copied into each new cluster;
# see cached_certs), TANDEM_PYTHON (the Python interpreter to run, default python3: tests pass
# their own, as a pyenv shim costs a second and more per start on a loaded machine).
set -euo pipefail
# No job control: a background job must not lead its own process group, or setsid would fork
# and the PID recorded for a node would be that of the short-lived setsid parent.
set +m

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BIN_DIR=${TANDEM_BIN_DIR:-$REPO_DIR/build}
UP_TIMEOUT_S=${TANDEM_UP_TIMEOUT:-30}
SETTLE_S=10 # up: how long a leader on the witness may take to hand over (wait_leader)
PYTHON=${TANDEM_PYTHON:-python3}
STOP_TIMEOUT_S=${TANDEM_STOP_TIMEOUT:-15}
# A node that does not answer /healthz this long after being started is reported as failed.
START_TIMEOUT_S=15
# Polls (20 ms apart) for a started process to become tandemd: up to 5 s, for a loaded machine
# (the poll ends at tandemd's own exec, see pid_is_ours; since pid_is_ours uses built-ins only,
# 50 polls took a mere second).
EXEC_WAIT_TRIES=250
# Port registry shared by every local cluster of this user, so clusters set up side by side
# (even at the same moment) never hand out the same port twice.
PORT_REGISTRY=${TMPDIR:-/tmp}/tandem-local-cluster-ports
# Per-node config keys this script owns; --set may not override them.
MANAGED_KEYS=" name site cluster_id data_dir raft_address api_address api_url join member insecure tls_ca tls_cert tls_key tls_crl key_file "
# Users that get a client certificate in DIR/tls; admin's is the one DIR/env exports.
TLS_USERS=admin,operator

die() {
    echo "local-cluster: $*" >&2
    exit 1
}

usage() {
    sed -n '3,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

need_tandemd() {
    [[ -x $BIN_DIR/tandemd ]] ||
        die "tandemd not found in $BIN_DIR: build first (cmake -S . -B build && cmake --build build)"
    TANDEMD=$(cd "$BIN_DIR" && pwd)/tandemd
}

# Prints the value at a dotted path (e.g. leader.name) of the JSON document on stdin; empty for
# null or missing (and for no document at all), a non-zero exit status when stdin is not JSON.
json_get() {
    # jq, not python: the waits below call this many times a second, and a Python start costs
    # 0.1-0.2 s on a loaded machine, a jq start a few milliseconds.
    jq -er --arg path "$1" \
        'try getpath($path | split(".")) catch null | if . == null then "" else tostring end' \
        2>/dev/null
}

# Runs "$@" NAME for every node at once; fails when any of them failed. Each node's wait costs
# a curl (and a TLS handshake) a round: side by side, a round of five costs one.
each_node() {
    local name pid status=0
    local -a pids=()
    for name in "${NODE_NAMES[@]}"; do
        "$@" "$name" &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || status=1
    done
    return "$status"
}

# curl with the cluster's TLS material (CURL_TLS, set by load_nodes) for https:// URLs.
tcurl() {
    curl "${CURL_TLS[@]}" "$@"
}

# Fetches URL/v1/status; prints nothing and fails when the node does not answer.
node_status() {
    tcurl -sf --max-time 2 "$1/v1/status"
}

# Node table of a cluster directory: sets NODE_NAMES and NODE_SITE/RAFT/API/ROLE maps.
load_nodes() {
    local dir=$1 name site raft api role
    [[ -f $dir/nodes ]] || die "$dir holds no local cluster (no $dir/nodes)"
    NODE_NAMES=()
    declare -gA NODE_SITE=() NODE_RAFT=() NODE_API=() NODE_ROLE=()
    while read -r name site raft api role; do
        [[ -n $name && $name != \#* ]] || continue
        NODE_NAMES+=("$name")
        NODE_SITE[$name]=$site
        NODE_RAFT[$name]=$raft
        NODE_API[$name]=$api
        NODE_ROLE[$name]=$role
    done <"$dir/nodes"
    ((${#NODE_NAMES[@]} > 0)) || die "$dir/nodes lists no nodes"
    load_tls "$dir"
}

# TLS material of a cluster directory: sets CURL_TLS (curl options) and CTL_TLS (tandemctl's),
# both empty for an --insecure cluster (one whose nodes have http:// URLs).
load_tls() {
    local dir=$1
    CURL_TLS=()
    CTL_TLS=()
    [[ ${NODE_API[${NODE_NAMES[0]}]} == https://* ]] || return 0
    CURL_TLS=(--cacert "$dir/tls/ca.pem" --cert "$dir/tls/admin.pem" --key "$dir/tls/admin.key")
    CTL_TLS=(--cacert "$dir/tls/ca.pem" --cert "$dir/tls/admin.pem" --key "$dir/tls/admin.key")
}

# Makes DIR/tls: the CA, a certificate per node, one per user in TLS_USERS (certs.sh keeps what
# exists, so running up again changes nothing) and an empty revocation list, so that every node
# names one from the start and revoking needs only a SIGHUP (README: Certificates). With
# TANDEM_CERT_CACHE set, a new DIR/tls is a copy of a cached set (see cached_certs).
make_certs() {
    local dir=$1 nodes
    nodes=$(IFS=, && echo "${NODE_NAMES[*]}")
    if [[ -f $dir/lab/sites ]]; then
        # A lab's nodes listen on their site's address, which their certificates name; the
        # cache (keyed by node names only) is not used.
        [[ -e $dir/tls ]] || tls_files "$dir/tls" "$nodes" "$(lab_addresses "$dir")"
    elif [[ -z ${TANDEM_CERT_CACHE:-} || -e $dir/tls ]] || ! cached_certs "$dir/tls" "$nodes"; then
        tls_files "$dir/tls" "$nodes"
    fi
    make_data_key "$dir/tls/data.key" # never cached: every cluster has its own
}

# The cluster's personal-data key file (README: Personal data): one key, id 1, mode 0600, kept
# if it exists; every node's key_file names this same file.
make_data_key() {
    local path=$1 hex
    [[ -f $path ]] && return 0
    hex=$(openssl rand -hex 32) || die "openssl could not make the personal-data key $path"
    (umask 077 && echo "1 $hex" >"$path") || die "cannot write $path"
}

# certs.sh's --addresses for a lab cluster: NAME=HOST of every node in DIR/nodes.
lab_addresses() {
    local name raft addresses=""
    while read -r name _ raft _; do
        addresses+=${addresses:+,}$name=${raft%:*}
    done <"$1/nodes"
    echo "$addresses"
}

tls_files() {
    local tls=$1 nodes=$2
    local -a addresses=()
    [[ -z ${3:-} ]] || addresses=(--addresses "$3")
    bash "$SCRIPT_DIR/certs.sh" "$tls" --nodes "$nodes" --users "$TLS_USERS" "${addresses[@]}" >/dev/null ||
        die "deploy/certs.sh could not make the certificates in $tls"
    [[ -f $tls/crl.pem ]] || bash "$SCRIPT_DIR/certs.sh" crl "$tls" >/dev/null ||
        die "deploy/certs.sh could not write $tls/crl.pem"
}

# Tests only (tests/integration/cluster.py sets TANDEM_CERT_CACHE): TLS is a copy of the cached
# set of certificates for these node names, which is made once (under a key that covers the
# names, TLS_USERS and certs.sh itself) and put in place by a rename, so that clusters started
# side by side never see half of one. A set older than CERT_CACHE_MAX_AGE_MIN is made again. Each
# cluster has its own copy: renewing or revoking in it changes no other cluster. Clusters with
# the same node names share a CA (so they trust each other's certificates). Returns non-zero
# (and leaves no TLS) when the cache cannot be used; make_certs then makes the files in place.
CERT_CACHE_MAX_AGE_MIN=720
cached_certs() {
    local tls=$1 nodes=$2 cache=$TANDEM_CERT_CACHE key entry tmp
    key=$({ printf '%s\n' "$nodes" "$TLS_USERS" && cat "$SCRIPT_DIR/certs.sh"; } | sha256sum) ||
        return 1
    entry=$cache/${key:0:16}
    if [[ -f $entry/ca.pem && -n $(find "$entry/ca.pem" -mmin +"$CERT_CACHE_MAX_AGE_MIN") ]]; then
        tmp=$cache/.stale.$$.$RANDOM
        ! mv -T "$entry" "$tmp" 2>/dev/null || rm -rf "$tmp"
    fi
    if [[ ! -d $entry ]]; then
        mkdir -p "$cache" && tmp=$(mktemp -d "$cache/.new.XXXXXX") || return 1
        (tls_files "$tmp/tls" "$nodes") || {
            rm -rf "$tmp"
            return 1
        }
        # rename(2) onto an existing, non-empty directory fails: then another cluster's set won.
        mv -T "$tmp/tls" "$entry" 2>/dev/null || true
        rm -rf "$tmp"
    fi
    if ! cp -a "$entry" "$tls.tmp" 2>/dev/null || ! mv -T "$tls.tmp" "$tls"; then
        rm -rf "$tls.tmp" "$tls"
        return 1
    fi
}

known_node() {
    [[ -n ${NODE_API[$1]+set} ]] || die "no node named '$1' (nodes: ${NODE_NAMES[*]})"
}

# True when PID is alive (not a zombie) and is a tandemd running the given config file: pid files
# can outlive their process and the PID can be reused by anything else.
pid_is_ours() {
    local pid=$1 conf=$2 cmdline stat state comm IFS=' '
    local -a argv=()
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # Shell built-ins only (no awk or tr: this runs for every node at every poll). The state
    # follows the command name, which is in parentheses and may hold spaces. The process may
    # exit between the reads: the braces catch the failed redirection's message.
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
    state=${stat##*) }
    state=${state%% *}
    [[ -n $state && $state != Z && $state != X ]] || return 1
    # The process itself must be tandemd, not the setsid (or ip netns exec) that runs it: their
    # command lines name tandemd too, and while the last one execs tandemd its command line reads
    # empty for a moment, which made a later check call a node that was starting "exited" (and
    # the start then SIGKILLed it: a CI failure of test_erase_policy). The name is set before the
    # command line, so a process that passes both checks is past the exec for good. "exe": a
    # tandemd that re-executed itself (/proc/self/exe, after a forced failover or a re-seed)
    # until it names itself again; refusing it left such nodes running after `down`.
    comm=${stat#*(}
    comm=${comm%)*}
    [[ $comm == tandemd || $comm == exe ]] || return 1
    { mapfile -d '' -t argv <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
    cmdline="${argv[*]} "
    [[ $cmdline == *tandemd* && $cmdline == *"--config $conf "* ]]
}

# Prints the PID of NAME's tandemd when it is running.
running_pid() {
    local dir=$1 name=$2 pid
    [[ -f $dir/$name/tandemd.pid ]] || return 1
    pid=$(<"$dir/$name/tandemd.pid")
    pid_is_ours "$pid" "$dir/$name/tandem.conf" || return 1
    echo "$pid"
}

log_tail() {
    local dir=$1 name=$2
    echo "---- last lines of $dir/$name/tandemd.log ----" >&2
    tail -n 30 "$dir/$name/tandemd.log" >&2 2>/dev/null || true
}

# Picks COUNT free TCP ports on 127.0.0.1 outside the kernel's ephemeral range (outgoing
# connections would otherwise grab them between runs) and records them in the shared registry,
# under a lock, as owned by DIR. Entries of directories that no longer exist are dropped.
allocate_ports() {
    local count=$1 dir=$2
    "$PYTHON" - "$count" "$dir" "$PORT_REGISTRY" <<'PY'
import fcntl, os, random, socket, sys

count, owner, registry = int(sys.argv[1]), sys.argv[2], sys.argv[3]
low, high = 32768, 60999
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
except (OSError, ValueError):
    pass
with open(registry + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    kept, taken = [], set()
    try:
        with open(registry) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        port, _, path = line.partition(" ")
        if port.isdigit() and os.path.isdir(path):
            kept.append(line)
            taken.add(int(port))
    pool = [p for p in range(10000, 65000) if not low <= p <= high and p not in taken]
    random.shuffle(pool)
    chosen = []
    for port in pool:
        if len(chosen) == count:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        chosen.append(port)
    if len(chosen) < count:
        sys.exit("local-cluster: no free ports on 127.0.0.1")
    kept += ["%d %s" % (p, owner) for p in chosen]
    with open(registry + ".tmp", "w") as f:
        f.write("\n".join(kept) + "\n")
    os.replace(registry + ".tmp", registry)
print(" ".join(str(p) for p in chosen))
PY
}

topology_nodes() {
    case $1 in
        2+2+1) echo "east-1:east east-2:east west-1:west west-2:west witness-1:witness" ;;
        2+2) echo "east-1:east east-2:east west-1:west west-2:west" ;;
        3) echo "east-1:east west-1:west witness-1:witness" ;;
        # BCP mode async: voters at the primary, standbys at the DR site (bcp invoke --force).
        2+2-async) echo "east-1:east east-2:east west-1:west:standby west-2:west:standby" ;;
        *) die "unknown topology '$1' (2+2+1, 2+2, 3 or 2+2-async)" ;;
    esac
}

# A cluster of the three-place lab (deploy/lab.sh) has DIR/lab/sites, one "site netns host" a
# line: its nodes listen on their site's host address and run in the site's network namespace.
# Prints FIELD (netns or host) of SITE; fails for a plain local cluster.
lab_site() {
    local dir=$1 want=$2 field=$3 site netns host
    [[ -f $dir/lab/sites ]] || return 1
    while read -r site netns host; do
        [[ $site == "$want" ]] || continue
        if [[ $field == netns ]]; then echo "$netns"; else echo "$host"; fi
        return 0
    done <"$dir/lab/sites"
    die "$dir/lab/sites names no site '$want'"
}

# Writes DIR/ports, DIR/nodes and every DIR/NAME/tandem.conf of a new cluster.
write_cluster() {
    local dir=$1 topology=$2 insecure=$3 scheme=https
    shift 3
    ((insecure == 0)) || scheme=http
    local -a specs ports extra=("log_level=info") members=()
    local spec name site role i=0 cluster_id line key words host
    [[ $topology != *-async ]] || extra+=("mode=async")
    words=$(topology_nodes "$topology")
    read -r -a specs <<<"$words"
    words=$(allocate_ports $((2 * ${#specs[@]})) "$dir")
    read -r -a ports <<<"$words"
    # --set key=value replaces a default of the same key, otherwise adds a line.
    for line in "$@"; do
        key=${line%%=*}
        for i in "${!extra[@]}"; do
            [[ ${extra[$i]%%=*} == "$key" ]] && unset 'extra[i]'
        done
        extra+=("$line")
    done
    cluster_id=${UP_CLUSTER_ID:-local-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')}
    : >"$dir/ports"
    : >"$dir/nodes"
    i=0
    for spec in "${specs[@]}"; do
        IFS=: read -r name site role <<<"$spec"
        role=${role:-voter}
        echo "$name ${ports[i]} ${ports[i + 1]}" >>"$dir/ports"
        host=$(lab_site "$dir" "$site" host) || host=127.0.0.1
        echo "$name $site $host:${ports[i]} $scheme://$host:${ports[i + 1]} $role" >>"$dir/nodes"
        members+=("member = $name,$site,$host:${ports[i]},$scheme://$host:${ports[i + 1]},$role")
        i=$((i + 2))
    done
    echo "$topology" >"$dir/topology"
    # The node table comes before the certificates, which load_nodes then finds.
    if ((insecure == 0)); then
        NODE_NAMES=()
        while read -r name _; do NODE_NAMES+=("$name"); done <"$dir/nodes"
        if [[ -n ${UP_TLS_FROM:-} ]]; then
            cp -a "$UP_TLS_FROM" "$dir/tls" || die "cannot copy $UP_TLS_FROM to $dir/tls"
        fi
        make_certs "$dir"
    fi
    load_nodes "$dir"
    for name in "${NODE_NAMES[@]}"; do
        mkdir -p "$dir/$name/data"
        {
            echo "# tandemd config written by deploy/local-cluster.sh"
            echo "[tandem]"
            echo "name = $name"
            echo "site = ${NODE_SITE[$name]}"
            echo "cluster_id = $cluster_id"
            echo "data_dir = $dir/$name/data"
            echo "raft_address = ${NODE_RAFT[$name]}"
            echo "api_address = ${NODE_API[$name]#"$scheme://"}"
            echo "api_url = ${NODE_API[$name]}"
            echo "join = false"
            write_tls_conf "$dir" "$name" "$insecure"
            printf '%s\n' "${members[@]}"
            for line in "${extra[@]}"; do
                echo "${line%%=*} = ${line#*=}"
            done
        } >"$dir/$name/tandem.conf"
    done
}

# The security lines of NAME's tandem.conf.
write_tls_conf() {
    local dir=$1 name=$2 insecure=$3
    if ((insecure != 0)); then
        echo "insecure = true"
        return
    fi
    echo "tls_ca = $dir/tls/ca.pem"
    echo "tls_cert = $dir/tls/$name.pem"
    echo "tls_key = $dir/tls/$name.key"
    [[ ! -f $dir/tls/crl.pem ]] || echo "tls_crl = $dir/tls/crl.pem"
    [[ ! -f $dir/tls/data.key ]] || echo "key_file = $dir/tls/data.key"
}

start_node() {
    local dir=$1 name=$2 pid lock_fd ns
    # One start of NAME at a time, from the check to the exec: two concurrent starts would both
    # find it stopped and race on the pid file (tandemd's own lock on its data directory then
    # refuses the second process, but its pid could be the one recorded). The lock goes when
    # this shell exits or closes it; the node must not inherit it.
    exec {lock_fd}>>"$dir/$name/start.lock"
    flock "$lock_fd" || die "cannot lock $dir/$name/start.lock"
    if pid=$(running_pid "$dir" "$name"); then
        die "$name is already running (pid $pid)"
    fi
    echo "==== $(date '+%F %T') local-cluster: starting $TANDEMD" >>"$dir/$name/tandemd.log"
    local cgroup=
    if [[ -n ${TANDEM_CGROUP_ROOT:-} ]]; then
        cgroup=$TANDEM_CGROUP_ROOT/$name
        mkdir -p "$cgroup" || die "cannot create cgroup $cgroup"
    fi
    # setsid: the node keeps running after this shell exits and ignores the terminal's ^C. The
    # subshell joins the node's cgroup (when asked) before it execs, so every socket tandemd
    # opens belongs to that cgroup; $! stays the node's PID through both execs.
    local -a netns=()
    if ns=$(lab_site "$dir" "${NODE_SITE[$name]}" netns); then
        netns=(ip netns exec "$ns")
    fi
    (
        if [[ -n $cgroup ]]; then
            echo "$BASHPID" >"$cgroup/cgroup.procs" || exit 1
        fi
        exec "${netns[@]}" setsid "$TANDEMD" --config "$dir/$name/tandem.conf" >>"$dir/$name/tandemd.log" \
            2>&1 </dev/null {lock_fd}>&-
    ) &
    pid=$!
    echo "$pid" >"$dir/$name/tandemd.pid"
    # Until the forked shell has exec'd tandemd, /proc shows the shell's command line: wait for
    # the exec so that every later check can trust pid_is_ours.
    local tries=0
    while ! pid_is_ours "$pid" "$dir/$name/tandem.conf" && ((tries < EXEC_WAIT_TRIES)); do
        sleep 0.02
        tries=$((tries + 1))
    done
    exec {lock_fd}>&-
}

# Waits until NAME answers /healthz; fails (showing its log) when it exits or never answers.
wait_healthy() {
    local dir=$1 name=$2 deadline=$((SECONDS + START_TIMEOUT_S))
    while ((SECONDS < deadline)); do
        if ! running_pid "$dir" "$name" >/dev/null; then
            log_tail "$dir" "$name"
            echo "local-cluster: $name exited during start-up (log: $dir/$name/tandemd.log)" >&2
            return 1
        fi
        if tcurl -sf --max-time 1 -o /dev/null "${NODE_API[$name]}/healthz"; then
            return 0
        fi
        sleep 0.1
    done
    log_tail "$dir" "$name"
    echo "local-cluster: $name did not answer ${NODE_API[$name]}/healthz within ${START_TIMEOUT_S}s" >&2
    return 1
}

# Prints the leader that the running nodes agree on: some node names it and it says it leads.
# Nodes named in EXCLUDE are ignored (e.g. a leader just killed). Fails after TIMEOUT seconds,
# and at once when REQUIRE_ALL is set and a node has exited (as during up), which also waits up
# to SETTLE_S for the site controller to move a leader off the witness (its first transfer: a
# client's write in it would be answered 503), then takes the witness if it still leads.
wait_leader() {
    local dir=$1 timeout=$2 exclude=${3:-} require_all=${4:-} deadline settled name leader json
    local state
    deadline=$((SECONDS + timeout))
    settled=$((SECONDS + (${require_all:+$SETTLE_S} + 0)))
    while ((SECONDS < deadline)); do
        for name in "${NODE_NAMES[@]}"; do
            if [[ -n $require_all ]] && ! running_pid "$dir" "$name" >/dev/null; then
                echo "local-cluster: $name exited before a leader was elected" >&2
                return 1
            fi
        done
        for name in "${NODE_NAMES[@]}"; do
            [[ $name != "$exclude" ]] || continue
            json=$(node_status "${NODE_API[$name]}") || continue
            leader=$(json_get leader.name <<<"$json") || continue
            [[ -n $leader && $leader != "$exclude" && -n ${NODE_API[$leader]+set} ]] || continue
            if [[ $leader != "$name" ]]; then
                json=$(node_status "${NODE_API[$leader]}") || continue
            fi
            state=$(json_get node.state <<<"$json") || continue
            [[ $state == leader ]] || continue
            if ((SECONDS < settled)) && [[ $(json_get node.site <<<"$json") == witness ]]; then
                continue
            fi
            echo "$leader"
            return 0
        done
        sleep 0.2
    done
    return 1
}

# Whether NAME's site table holds WANT registered sites.
node_sites_ready() {
    local want=$1 name=$2 have
    have=$(tcurl -sf --max-time 2 "${NODE_API[$name]}/v1/bcp/status" |
        jq -e '[.sites[]? | select(.reason != "not registered yet")] | length') || return 1
    ((have >= want))
}

# Waits up to SETTLE_S for the site controller to register every site of the configuration in
# the site table (its first proposals after an election), and for every node to have applied
# that: a drill or an invoke a node runs for a site its table lacks is refused as unknown. Goes
# on after SETTLE_S whatever the tables hold.
wait_sites() {
    local dir=$1 deadline want
    want=$(printf '%s\n' "${NODE_SITE[@]}" | sort -u | wc -l)
    deadline=$((SECONDS + SETTLE_S))
    while ((SECONDS < deadline)); do
        each_node node_sites_ready "$want" && return 0
        sleep 0.1
    done
}

write_endpoints() {
    local dir=$1 name endpoints=""
    for name in "${NODE_NAMES[@]}"; do
        endpoints+=${endpoints:+,}${NODE_API[$name]}
    done
    echo "$endpoints" >"$dir/endpoints"
    {
        echo "# Source this file to point tandemctl at the local cluster in $dir."
        echo "export TANDEM_ENDPOINTS=$endpoints"
        if ((${#CURL_TLS[@]} > 0)); then
            echo "# TLS: the cluster CA, and the client certificate and key of user admin."
            echo "export TANDEM_CACERT=$dir/tls/ca.pem"
            echo "export TANDEM_CERT=$dir/tls/admin.pem"
            echo "export TANDEM_KEY=$dir/tls/admin.key"
        else
            echo "# --insecure cluster: no TLS, so no certificates to export."
        fi
    } >"$dir/env"
}

print_summary() {
    local dir=$1 leader=$2 name pid
    echo "tandem local cluster ($(<"$dir/topology")) in $dir"
    printf '  %-10s %-8s %-7s %-8s %-24s %s\n' NAME SITE ROLE PID API RAFT
    for name in "${NODE_NAMES[@]}"; do
        pid=$(running_pid "$dir" "$name") || pid=-
        printf '  %-10s %-8s %-7s %-8s %-24s %s\n' "$name" "${NODE_SITE[$name]}" \
            "${NODE_ROLE[$name]}" "$pid" \
            "${NODE_API[$name]}" "${NODE_RAFT[$name]}"
    done
    echo "  leader: $leader"
    echo "  endpoints: $(<"$dir/endpoints")"
    echo "  use it:  source $dir/env && $(cd "$BIN_DIR" && pwd)/tandemctl status"
    echo "  stop it: $0 down $dir"
}

cmd_up() {
    local dir="" topology="" insecure=0 name leader pid restore=""
    local -a settings=() new_only=()
    UP_CLUSTER_ID="" UP_TLS_FROM="" # set by options only, never from the environment
    while (($# > 0)); do
        case $1 in
            --topology)
                (($# >= 2)) || die "--topology needs a value"
                topology=$2
                shift
                ;;
            --insecure) insecure=1 ;;
            --set)
                (($# >= 2)) || die "--set needs key=value"
                [[ $2 =~ ^[a-z_][a-z0-9_]*=.*$ ]] || die "--set wants key=value, got '$2'"
                [[ $MANAGED_KEYS != *" ${2%%=*} "* ]] || die "--set may not override '${2%%=*}'"
                settings+=("$2")
                shift
                ;;
            --cluster-id | --tls-from | --restore)
                (($# >= 2)) || die "$1 needs a value"
                new_only+=("$1")
                case $1 in
                    --cluster-id) UP_CLUSTER_ID=$2 ;;
                    --tls-from) UP_TLS_FROM=$(cd "$2" && pwd) || die "--tls-from: no directory $2" ;;
                    --restore) restore=$(realpath -e "$2") || die "--restore: no file $2" ;;
                esac
                shift
                ;;
            -*) die "unknown option '$1' for up" ;;
            *)
                [[ -z $dir ]] || die "up takes one DIR"
                dir=$1
                ;;
        esac
        shift
    done
    [[ -n $dir ]] || usage
    [[ -z $topology ]] || topology_nodes "$topology" >/dev/null
    need_tandemd
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -f $dir/nodes ]]; then
        [[ -z $topology || $topology == "$(<"$dir/topology")" ]] ||
            die "$dir already holds a $(<"$dir/topology") cluster"
        ((${#settings[@]} == 0)) ||
            die "$dir already holds a cluster: --set applies to new ones (edit NAME/tandem.conf)"
        ((${#new_only[@]} == 0)) || die "$dir already holds a cluster: ${new_only[0]} applies to new ones"
        load_nodes "$dir"
    else
        # A new lab cluster's DIR holds only lab/, its network, made by deploy/lab.sh.
        local -a not_lab=()
        [[ ! -f $dir/lab/sites ]] || not_lab=(! -name lab)
        [[ -z $(find "$dir" -mindepth 1 -maxdepth 1 "${not_lab[@]}" -print -quit) ]] || die "$dir is neither empty nor a local cluster"
        [[ -z ${UP_TLS_FROM:-} ]] || ((insecure == 0)) || die "--tls-from needs a TLS cluster"
        write_cluster "$dir" "${topology:-2+2+1}" "$insecure" "${settings[@]}"
        [[ -z $restore ]] || restore_nodes "$dir" "$restore"
    fi
    for name in "${NODE_NAMES[@]}"; do
        if pid=$(running_pid "$dir" "$name"); then
            die "$name of $dir is already running (pid $pid): run down first"
        fi
    done
    # The mode is the cluster's, chosen when it was made; up again keeps it.
    if [[ ${NODE_API[${NODE_NAMES[0]}]} == https://* ]]; then
        ((insecure == 0)) || die "$dir holds a TLS cluster: --insecure applies to new ones"
    else
        insecure=1
    fi
    echo "insecure=$insecure" >"$dir/mode"
    # A lab cluster (deploy/lab.sh): its WAN link emulator runs before its nodes do.
    if [[ -f $dir/lab/sites ]]; then
        bash "$SCRIPT_DIR/lab.sh" links-start "$dir" || die "the lab's links did not start"
    fi
    # Whatever fails from here on, leave no node running behind.
    UP_DIR=$dir
    trap up_failed EXIT
    for name in "${NODE_NAMES[@]}"; do
        start_node "$dir" "$name"
    done
    each_node wait_healthy "$dir" || exit 1
    if ! leader=$(wait_leader "$dir" "$UP_TIMEOUT_S" "" all); then
        for name in "${NODE_NAMES[@]}"; do log_tail "$dir" "$name"; done
        echo "local-cluster: no leader elected (waited at most ${UP_TIMEOUT_S}s)" >&2
        exit 1
    fi
    wait_sites "$dir"
    write_endpoints "$dir"
    trap - EXIT
    print_summary "$dir" "$leader"
}

# Seeds every node's (empty) data directory from the backup FILE under the cluster id of the
# nodes' configs, as README's "Restoring a whole cluster" tells an operator to. The personal-data
# key file is checked against the backup's sealed values (tandemctl refuses a key that does not
# open them); an insecure cluster has none to check.
restore_nodes() {
    local dir=$1 file=$2 name cluster_id
    local -a extra=()
    [[ -x $BIN_DIR/tandemctl ]] || die "tandemctl not found in $BIN_DIR: build first"
    cluster_id=$(sed -n 's/^cluster_id = //p' "$dir/${NODE_NAMES[0]}/tandem.conf")
    [[ ! -f $dir/tls/data.key ]] || extra+=(--data-key-file "$dir/tls/data.key")
    for name in "${NODE_NAMES[@]}"; do
        if ! "$BIN_DIR/tandemctl" backup restore "$file" --data-dir "$dir/$name/data" \
            --name "$name" --new-cluster-id "$cluster_id" "${extra[@]}" >/dev/null; then
            # Half a restore must never start: without DIR/nodes, up refuses DIR from now on.
            rm -f "$dir/nodes"
            die "restoring $file into $dir/$name/data failed; $dir is kept for inspection: remove it before trying again"
        fi
    done
    echo "local-cluster: restored $file into the ${#NODE_NAMES[@]} data directories under cluster id $cluster_id"
}

up_failed() {
    local status=$?
    if ((status != 0)); then
        echo "local-cluster: up failed; stopping the nodes (logs stay in $UP_DIR/*/tandemd.log)" >&2
        stop_all "$UP_DIR" >&2 || true
    fi
}

# Fields of /proc/PID/stat after the command name (state first, start time at index 19).
proc_stat_fields() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    echo "${stat##*) }"
}

# True while the process PID that started at START (clock ticks after boot) has not exited.
# A dying process loses its command line before it becomes a zombie, and its main thread shows
# as a zombie while other threads still exit, so this looks at every thread: only when all are
# gone has the process let go of its ports. START guards against PID reuse.
proc_running() {
    local pid=$1 start=$2 fields task
    local -a f
    fields=$(proc_stat_fields "$pid") || return 1
    read -r -a f <<<"$fields"
    [[ ${f[19]} == "$start" ]] || return 1
    for task in "/proc/$pid/task/"*; do
        fields=$(proc_stat_fields "$pid/task/${task##*/}") || continue
        read -r -a f <<<"$fields"
        [[ ${f[0]} == Z || ${f[0]} == X ]] || return 0
    done
    return 1
}

# Waits up to TIMEOUT seconds for processes given as NAME:PID:START to exit; prints the names
# still running and fails when there are any.
wait_gone() {
    local timeout=$1 entry deadline pid start
    shift
    local -a left=("$@")
    deadline=$((SECONDS + timeout))
    while ((${#left[@]} > 0)); do
        local -a still=()
        for entry in "${left[@]}"; do
            IFS=: read -r _ pid start <<<"$entry"
            if proc_running "$pid" "$start"; then still+=("$entry"); fi
        done
        left=("${still[@]}")
        ((${#left[@]} > 0)) || break
        if ((SECONDS >= deadline)); then
            echo "${left[*]}"
            return 1
        fi
        sleep 0.1
    done
}

# Sends SIGNAL to the named nodes that are running, waits for them to exit (SIGKILL after
# STOP_TIMEOUT_S), and removes their pid files.
stop_nodes() {
    local dir=$1 signal=$2 name pid fields entry
    shift 2
    local -a f entries=() left=()
    local -A pids=() how=()
    for name in "$@"; do
        pid=$(running_pid "$dir" "$name") || continue
        fields=$(proc_stat_fields "$pid") || continue
        read -r -a f <<<"$fields"
        kill "-$signal" "$pid" 2>/dev/null || true
        pids[$name]=$pid
        how[$name]=$signal
        entries+=("$name:$pid:${f[19]}")
    done
    read -r -a left <<<"$(wait_gone "$STOP_TIMEOUT_S" "${entries[@]}")"
    if ((${#left[@]} > 0)); then
        echo "local-cluster: still running ${STOP_TIMEOUT_S}s after SIG$signal: ${left[*]%%:*}; sending SIGKILL" >&2
        for entry in "${left[@]}"; do
            name=${entry%%:*}
            kill -KILL "${pids[$name]}" 2>/dev/null || true
            how[$name]=KILL
        done
        read -r -a left <<<"$(wait_gone 5 "${left[@]}")"
        ((${#left[@]} == 0)) || die "did not exit even after SIGKILL: ${left[*]%%:*}"
    fi
    for name in "$@"; do
        rm -f "$dir/$name/tandemd.pid"
        if [[ -n ${pids[$name]+set} ]]; then echo "stopped $name (pid ${pids[$name]}, SIG${how[$name]})"; fi
    done
}

stop_all() {
    stop_nodes "$1" TERM "${NODE_NAMES[@]}"
}

cmd_down() {
    (($# == 1)) || usage
    local dir
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
    load_nodes "$dir"
    stop_all "$dir"
}

cmd_start() {
    (($# == 2)) || usage
    local dir pid
    need_tandemd
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
    load_nodes "$dir"
    known_node "$2"
    start_node "$dir" "$2"
    wait_healthy "$dir" "$2" || { stop_nodes "$dir" KILL "$2" >&2; exit 1; }
    pid=$(running_pid "$dir" "$2")
    echo "started $2 (pid $pid) at ${NODE_API[$2]}"
}

cmd_stop() {
    local dir signal=TERM
    (($# == 2 || $# == 3)) || usage
    if (($# == 3)); then
        [[ $3 == --kill ]] || die "unknown option '$3' for stop"
        signal=KILL
    fi
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
    load_nodes "$dir"
    known_node "$2"
    running_pid "$dir" "$2" >/dev/null || die "$2 is not running"
    stop_nodes "$dir" "$signal" "$2"
}

# The nodes of SITE (sets SITE_NODES); fails when the site has none.
site_nodes() {
    local site=$1 name
    SITE_NODES=()
    for name in "${NODE_NAMES[@]}"; do
        [[ ${NODE_SITE[$name]} != "$site" ]] || SITE_NODES+=("$name")
    done
    ((${#SITE_NODES[@]} > 0)) || die "no node in site '$site'"
}

# Stops every running node of a site at once (--kill: SIGKILL, a site lost without warning).
cmd_stop_site() {
    local dir signal=TERM name
    local -a running=()
    (($# == 2 || $# == 3)) || usage
    if (($# == 3)); then
        [[ $3 == --kill ]] || die "unknown option '$3' for stop-site"
        signal=KILL
    fi
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
    load_nodes "$dir"
    site_nodes "$2"
    for name in "${SITE_NODES[@]}"; do
        if running_pid "$dir" "$name" >/dev/null; then running+=("$name"); fi
    done
    ((${#running[@]} > 0)) || die "no node of site $2 is running"
    stop_nodes "$dir" "$signal" "${running[@]}"
}

cmd_start_site() {
    (($# == 2)) || usage
    local dir name
    need_tandemd
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
    load_nodes "$dir"
    site_nodes "$2"
    for name in "${SITE_NODES[@]}"; do
        if ! running_pid "$dir" "$name" >/dev/null; then start_node "$dir" "$name"; fi
    done
    for name in "${SITE_NODES[@]}"; do
        wait_healthy "$dir" "$name" || exit 1
        echo "started $name (pid $(running_pid "$dir" "$name")) at ${NODE_API[$name]}"
    done
}

cmd_status() {
    (($# == 1)) || usage
    local dir name json
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
    load_nodes "$dir"
    [[ -f $dir/endpoints ]] || write_endpoints "$dir"
    if [[ -x $BIN_DIR/tandemctl ]]; then
        "$BIN_DIR/tandemctl" "${CTL_TLS[@]}" -e "$(<"$dir/endpoints")" status
        return
    fi
    printf '%-10s %-8s %-10s %-6s %-8s %-8s %s\n' NAME SITE STATE TERM COMMIT APPLIED LEADER
    for name in "${NODE_NAMES[@]}"; do
        if json=$(node_status "${NODE_API[$name]}"); then
            printf '%-10s %-8s %-10s %-6s %-8s %-8s %s\n' "$name" "${NODE_SITE[$name]}" \
                "$(json_get node.state <<<"$json")" "$(json_get node.term <<<"$json")" \
                "$(json_get node.commit_index <<<"$json")" \
                "$(json_get node.applied_index <<<"$json")" "$(json_get leader.name <<<"$json")"
        else
            printf '%-10s %-8s %s\n' "$name" "${NODE_SITE[$name]}" down
        fi
    done
}

cmd_leader() {
    local dir="" timeout=$UP_TIMEOUT_S exclude="" leader
    while (($# > 0)); do
        case $1 in
            --timeout)
                [[ ${2:-} =~ ^[0-9]+$ ]] || die "--timeout needs whole seconds"
                timeout=$2
                shift
                ;;
            --exclude)
                (($# >= 2)) || die "--exclude needs a node name"
                exclude=$2
                shift
                ;;
            *)
                [[ -z $dir ]] || usage
                dir=$1
                ;;
        esac
        shift
    done
    [[ -n $dir ]] || usage
    dir=$(cd "$dir" 2>/dev/null && pwd) || die "no such directory: $dir"
    load_nodes "$dir"
    leader=$(wait_leader "$dir" "$timeout" "$exclude") || die "no leader within ${timeout}s"
    echo "$leader"
}

main() {
    (($# >= 1)) || usage
    command -v curl >/dev/null || die "curl is required (deploy/install-deps.sh installs it)"
    command -v "$PYTHON" >/dev/null || die "$PYTHON is required (deploy/install-deps.sh installs python3)"
    command -v jq >/dev/null || die "jq is required (deploy/install-deps.sh installs it)"
    local cmd=$1
    shift
    case $cmd in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        leader) cmd_leader "$@" ;;
        stop-site) cmd_stop_site "$@" ;;
        start-site) cmd_start_site "$@" ;;
        -h | --help | help) usage ;;
        *) die "unknown command '$cmd'" ;;
    esac
}

main "$@"
