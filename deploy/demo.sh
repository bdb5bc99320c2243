#!/usr/bin/env bash
# One-command tour of tandem on a fresh Debian 12 (as root): installs the dependencies, builds,
# runs a 2+2+1 cluster on this machine with TLS (shows the certificates deploy/certs.sh made and
# that a client without one is refused), writes through both sites, kills the leader, shows the
# takeover and that nothing was lost, then brings the killed node back and shows it caught up;
# last it takes a backup, verifies it at levels 1-3, restores it as a whole new 2+2+1 cluster
# (five data directories, one new cluster id), shows every restored node answers the backup
# manifest's digests and counts, and stops that cluster again.
#
#   deploy/demo.sh [--keep] [--no-build]
#
#   --keep      leave the cluster running at the end (prints how to use and stop it)
#   --no-build  skip install-deps and the build; use the binaries in TANDEM_BIN_DIR (or build/)
#
# Environment: TANDEM_BUILD_DIR (default <repo>/build).
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BUILD_DIR=${TANDEM_BUILD_DIR:-$REPO_DIR/build}
LOCAL_CLUSTER=$SCRIPT_DIR/local-cluster.sh
KEYS_PER_SITE=20
# Bounds on the waits: an election on loopback takes well under a second; catching up 40 keys
# after a restart takes about as long as the restart.
TAKEOVER_TIMEOUT_S=30
CATCHUP_TIMEOUT_S=60

KEEP=0
BUILD=1
CLUSTER_DIR=""
CLUSTER_UP=0
RESTORED_DIR="" # the cluster restored from the backup, while it runs

fail() {
    echo "demo: FAILED: $*" >&2
    exit 1
}

on_error() {
    echo "demo: FAILED: '$2' exited $1 (line $3)" >&2
}

cleanup() {
    local status=$?
    [[ -n $CLUSTER_DIR ]] || return 0
    if [[ -n $RESTORED_DIR && -f $RESTORED_DIR/nodes ]]; then
        "$LOCAL_CLUSTER" down "$RESTORED_DIR" >/dev/null 2>&1 ||
            echo "demo: could not stop the restored cluster: run '$LOCAL_CLUSTER down $RESTORED_DIR'" >&2
    fi
    if [[ ! -f $CLUSTER_DIR/nodes ]]; then
        rm -rf "$CLUSTER_DIR" # up failed before writing anything worth keeping
        return 0
    fi
    if ((CLUSTER_UP)) && ((status != 0 || !KEEP)); then
        "$LOCAL_CLUSTER" down "$CLUSTER_DIR" >/dev/null 2>&1 ||
            echo "demo: could not stop the cluster: run '$LOCAL_CLUSTER down $CLUSTER_DIR'" >&2
    fi
    if ((status != 0)); then
        echo "demo: cluster stopped; its logs are in $CLUSTER_DIR/*/tandemd.log" >&2
    elif ((!KEEP)); then
        rm -rf "$CLUSTER_DIR"
    fi
}

section() {
    printf '\n==== %s ====\n' "$*"
}

# Polls the nodes' /v1/status (NAME=URL arguments after MODE and its parameters) until:
#   takeover START_NS KILLED TIMEOUT_S ...: a node other than KILLED says it leads; prints its
#     name and the milliseconds since START_NS (date +%s%N taken before the kill).
#   converged TIMEOUT_S ...: every node reports the leader's applied_index and apply_digest;
#     prints one line per node.
poll_status() {
    python3 - "$@" <<'PY'
import json, os, ssl, sys, time, urllib.request

mode, args = sys.argv[1], sys.argv[2:]
# The cluster's CA and the admin certificate, as DIR/env exports them.
tls = None
if os.environ.get("TANDEM_CACERT"):
    tls = ssl.create_default_context(cafile=os.environ["TANDEM_CACERT"])
    tls.load_cert_chain(os.environ["TANDEM_CERT"], os.environ["TANDEM_KEY"])
def status(url):
    try:
        with urllib.request.urlopen(url + "/v1/status", timeout=1, context=tls) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None

if mode == "takeover":
    start_ns, killed, timeout = int(args[0]), args[1], float(args[2])
    nodes = dict(a.split("=", 1) for a in args[3:])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, url in nodes.items():
            st = status(url)
            if st and st["node"]["state"] == "leader" and name != killed:
                print(name, (time.time_ns() - start_ns) // 1000000)
                sys.exit(0)
        time.sleep(0.02)
    sys.exit("no new leader within %gs" % timeout)

timeout = float(args[0])
nodes = dict(a.split("=", 1) for a in args[1:])
deadline = time.monotonic() + timeout
seen = {}
while time.monotonic() < deadline:
    seen = {name: status(url) for name, url in nodes.items()}
    leaders = [st for st in seen.values() if st and st["node"]["state"] == "leader"]
    if len(leaders) == 1 and all(seen.values()):
        want = (leaders[0]["node"]["applied_index"], leaders[0]["node"]["apply_digest"])
        if all((st["node"]["applied_index"], st["node"]["apply_digest"]) == want
               for st in seen.values()):
            for name, st in seen.items():
                print("  %-10s %-9s applied_index=%-6s apply_digest=%s" % (
                    name, st["node"]["state"], st["node"]["applied_index"],
                    st["node"]["apply_digest"]))
            sys.exit(0)
    time.sleep(0.1)
last = {n: st and (st["node"]["state"], st["node"]["applied_index"]) for n, st in seen.items()}
sys.exit("nodes did not converge within %gs; last seen %s" % (timeout, last))
PY
}

# Shows that every node listed in NODES_FILE (local-cluster.sh's DIR/nodes) started on the
# backup's state: the state digest it computed at its first start (its "restored from backup"
# log line) against the manifest in MANIFEST_JSON (tandemctl -o json backup verify's answer),
# then GET /v1/digest now: the manifest's index, digests and counts, unless the site
# controller has recorded a decision of its own since (a leadership transfer off the witness),
# which moves the index and digests but not the counts. Fails on the first difference.
digests_match() {
    python3 - "$@" <<'PY'
import json, os, re, ssl, sys, urllib.request

manifest = json.load(open(sys.argv[1]))["manifest"]
tls = None
if os.environ.get("TANDEM_CACERT"):
    tls = ssl.create_default_context(cafile=os.environ["TANDEM_CACERT"])
    tls.load_cert_chain(os.environ["TANDEM_CERT"], os.environ["TANDEM_KEY"])
print("  manifest   applied_index=%s state_digest=%s... data_digest=%s... counts=%s" % (
    manifest["applied_index"], manifest["state_digest"][:16], manifest["data_digest"][:16],
    json.dumps(manifest["counts"], sort_keys=True)))
cluster_dir = os.path.dirname(sys.argv[2])
for line in open(sys.argv[2]):
    if not line.strip() or line.startswith("#"):
        continue
    name, url = line.split()[0], line.split()[3]
    with open(os.path.join(cluster_dir, name, "tandemd.log"), errors="replace") as f:
        seeded = re.findall(r"raft seeded at index (\d+).*state_digest ([0-9a-f]{64})", f.read())
    if seeded != [(str(manifest["applied_index"]), manifest["state_digest"])]:
        sys.exit("%s did not start on the backup's state: %s" % (name, seeded))
    with urllib.request.urlopen(url + "/v1/digest", timeout=5, context=tls) as r:
        d = json.load(r)
    if all(d[k] == manifest[k] for k in ("applied_index", "state_digest", "data_digest")):
        now = "= manifest"
    elif d["applied_index"] > manifest["applied_index"]:
        now = "moved on by the site controller's own decisions"
    else:
        sys.exit("%s does not hold the backup's state: %s" % (name, d))
    if d["counts"] != manifest["counts"]:
        sys.exit("%s has other counts than the backup: %s" % (name, d["counts"]))
    print("  %-10s seeded at %s with state_digest %s... = manifest; now applied_index=%s "
          "state_digest=%s... %s, counts = manifest" % (
              name, seeded[0][0], seeded[0][1][:16], d["applied_index"], d["state_digest"][:16],
              now))
PY
}

parse_args() {
    while (($# > 0)); do
        case $1 in
            --keep) KEEP=1 ;;
            --no-build) BUILD=0 ;;
            -h | --help)
                sed -n '6,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
            *) fail "unknown argument '$1' (usage: demo.sh [--keep] [--no-build])" ;;
        esac
        shift
    done
}

install_and_build() {
    section "Installing dependencies (deploy/install-deps.sh)"
    "$SCRIPT_DIR/install-deps.sh" || fail "deploy/install-deps.sh failed"
    echo "dependencies present"
    section "Building (cmake, RelWithDebInfo)"
    cmake -S "$REPO_DIR" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ||
        fail "cmake configure failed"
    cmake --build "$BUILD_DIR" -j"$(nproc)" || fail "build failed"
}

# Loads DIR/nodes into NAMES and API (name -> base URL).
load_nodes() {
    local name api
    NAMES=()
    declare -gA API=()
    # Columns: name site raft api role.
    while read -r name _ _ api _; do
        NAMES+=("$name")
        API[$name]=$api
    done <"$CLUSTER_DIR/nodes"
}

# NAME=URL arguments for poll_status, every node except the one given.
node_args_except() {
    local name
    for name in "${NAMES[@]}"; do
        [[ $name == "$1" ]] || echo "$name=${API[$name]}"
    done
}

write_keys() {
    local site=$1 node=$2 i
    for ((i = 1; i <= KEYS_PER_SITE; i++)); do
        "$TANDEMCTL" -e "${API[$node]}" kv put "demo/$site/$i" "written-through-$node-$i" >/dev/null ||
            fail "kv put demo/$site/$i through $node failed"
    done
    echo "wrote $KEYS_PER_SITE keys (demo/$site/1..$KEYS_PER_SITE) through $node at ${API[$node]}"
}

check_keys_on() {
    local node=$1 site writer i value reads=0
    for site in east west; do
        writer=$site-1
        for ((i = 1; i <= KEYS_PER_SITE; i++)); do
            value=$("$TANDEMCTL" -e "${API[$node]}" kv get "demo/$site/$i" --local) ||
                fail "kv get --local demo/$site/$i on $node failed"
            [[ $value == "written-through-$writer-$i" ]] ||
                fail "$node has '$value' for demo/$site/$i, expected 'written-through-$writer-$i'"
            reads=$((reads + 1))
        done
    done
    echo "  $node: all $reads keys present with the written values"
}

# The certificates local-cluster.sh made with deploy/certs.sh, the TLS settings tandemctl takes
# from DIR/env, and a client without a certificate turned away.
show_certificates() {
    section "Certificates (deploy/certs.sh, run by local-cluster.sh up) in $CLUSTER_DIR/tls"
    (cd "$CLUSTER_DIR/tls" && printf '%s ' ./*.pem && echo)
    local cert
    for cert in ca east-1 admin; do
        echo "$cert.pem:"
        openssl x509 -in "$CLUSTER_DIR/tls/$cert.pem" -noout -subject -enddate \
            -ext basicConstraints,extendedKeyUsage,subjectAltName 2>/dev/null |
            grep -v '^X509v3\|^ *$' | sed 's/^ */    /'
    done
    # shellcheck source=/dev/null
    source "$CLUSTER_DIR/env"
    echo "tandemctl and this demo use TANDEM_CACERT=$TANDEM_CACERT,"
    echo "  TANDEM_CERT=$TANDEM_CERT, TANDEM_KEY=$TANDEM_KEY (from $CLUSTER_DIR/env)"
    local url=${API[east-1]}
    echo "GET $url/v1/status without a client certificate: $(answer_to --cacert "$TANDEM_CACERT" \
        "$url/v1/status")"
    echo "the same in plaintext (http://): $(answer_to "http://${url#https://}/v1/status")"
    echo "the same with admin's certificate: $(answer_to --cacert "$TANDEM_CACERT" \
        --cert "$TANDEM_CERT" --key "$TANDEM_KEY" "$url/v1/status")"
}

# What curl ARGS... got: "HTTP <status>", or that the node turned the connection away.
answer_to() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@") || true
    if [[ $code == 000 ]]; then
        echo "refused, no HTTP answer"
    else
        echo "HTTP $code"
    fi
}

main() {
    parse_args "$@"
    trap 'on_error $? "$BASH_COMMAND" $LINENO' ERR
    trap cleanup EXIT
    if ((BUILD)); then
        install_and_build
        export TANDEM_BIN_DIR=$BUILD_DIR
    else
        export TANDEM_BIN_DIR=${TANDEM_BIN_DIR:-$BUILD_DIR}
    fi
    TANDEMCTL=$TANDEM_BIN_DIR/tandemctl
    [[ -x $TANDEMCTL ]] || fail "tandemctl not found in $TANDEM_BIN_DIR"

    section "Starting a 2+2+1 cluster with TLS on 127.0.0.1 (east-1 east-2 | west-1 west-2 | witness-1)"
    CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tandem-demo.XXXXXX")
    CLUSTER_UP=1
    "$LOCAL_CLUSTER" up "$CLUSTER_DIR" --topology 2+2+1 || fail "the cluster did not come up"
    load_nodes
    local endpoints
    endpoints=$(<"$CLUSTER_DIR/endpoints")
    show_certificates

    section "Writing through both sites"
    write_keys east east-1
    write_keys west west-1

    section "Cluster status"
    "$TANDEMCTL" -e "$endpoints" status || fail "tandemctl status failed"

    local leader start_ns takeover new_leader takeover_ms survivors=()
    leader=$("$LOCAL_CLUSTER" leader "$CLUSTER_DIR") || fail "no leader to kill"
    section "Killing the leader, $leader, with SIGKILL"
    start_ns=$(date +%s%N)
    "$LOCAL_CLUSTER" stop "$CLUSTER_DIR" "$leader" --kill || fail "could not kill $leader"
    mapfile -t survivors < <(node_args_except "$leader")
    takeover=$(poll_status takeover "$start_ns" "$leader" "$TAKEOVER_TIMEOUT_S" "${survivors[@]}") ||
        fail "no new leader within ${TAKEOVER_TIMEOUT_S}s after killing $leader"
    read -r new_leader takeover_ms <<<"$takeover"
    echo "new leader: $new_leader, ${takeover_ms} ms after the kill"
    "$TANDEMCTL" -e "${endpoints}" status || fail "tandemctl status failed after the takeover"

    section "Every write is on every survivor"
    echo "waiting for the survivors to reach the leader's applied index ..."
    poll_status converged "$CATCHUP_TIMEOUT_S" "${survivors[@]}" ||
        fail "the survivors did not catch up with $new_leader"
    local survivor
    for survivor in "${NAMES[@]}"; do
        [[ $survivor == "$leader" ]] || check_keys_on "$survivor"
    done

    section "Restarting $leader"
    "$LOCAL_CLUSTER" start "$CLUSTER_DIR" "$leader" || fail "could not restart $leader"
    local all=()
    mapfile -t all < <(node_args_except "")
    echo "waiting for $leader to catch up ..."
    poll_status converged "$CATCHUP_TIMEOUT_S" "${all[@]}" ||
        fail "$leader did not catch up with the leader"
    echo "$leader caught up: same applied_index and apply_digest as the leader"
    check_keys_on "$leader"

    section "Backup, verification and restore"
    local backup=$CLUSTER_DIR/demo-backup.tbk
    "$TANDEMCTL" -e "$endpoints" backup create --out "$backup" || fail "backup create failed"
    local level
    for level in 1 2 3; do
        "$TANDEMCTL" backup verify "$backup" --level "$level" || fail "backup verify --level $level failed"
    done
    "$TANDEMCTL" -o json backup verify "$backup" --level 1 >"$CLUSTER_DIR/demo-backup.json" ||
        fail "backup verify --level 1 -o json failed"

    section "Restoring the backup as a new 2+2+1 cluster (README: Restoring a whole cluster)"
    # Five data directories, each seeded by `tandemctl backup restore --name NAME
    # --new-cluster-id demo-restored --data-key-file ...`, then started as one new cluster on new
    # ports. The CA and the personal-data key file are the old cluster's (--tls-from).
    RESTORED_DIR=$CLUSTER_DIR/restored
    "$LOCAL_CLUSTER" up "$RESTORED_DIR" --restore "$backup" --cluster-id demo-restored \
        --tls-from "$CLUSTER_DIR/tls" || fail "the restored cluster did not come up"
    echo "every restored node against the backup's manifest, before any new write:"
    digests_match "$CLUSTER_DIR/demo-backup.json" "$RESTORED_DIR/nodes" ||
        fail "a restored node does not hold the backup's state"
    "$TANDEMCTL" -e "$(<"$RESTORED_DIR/endpoints")" status || fail "tandemctl status failed on the restored cluster"
    echo "stopping the restored cluster (the PIDs local-cluster.sh recorded in $RESTORED_DIR/*/tandemd.pid)"
    "$LOCAL_CLUSTER" down "$RESTORED_DIR" || fail "could not stop the restored cluster"
    RESTORED_DIR=""

    section "Done"
    echo "takeover after killing the leader: ${takeover_ms} ms; $((2 * KEYS_PER_SITE)) writes on every node"
    if ((KEEP)); then
        echo "the cluster keeps running in $CLUSTER_DIR:"
        echo "  source $CLUSTER_DIR/env && $TANDEMCTL status"
        echo "  stop it with: $LOCAL_CLUSTER down $CLUSTER_DIR"
    else
        "$LOCAL_CLUSTER" down "$CLUSTER_DIR" || fail "could not stop the cluster"
        CLUSTER_UP=0
    fi
}

main "$@"
