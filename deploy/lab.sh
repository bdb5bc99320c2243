#!/usr/bin/env bash
# The three-place lab: a 2+2+1 tandem cluster whose sites east, west and witness are network
# namespaces joined through a WAN link emulator (chaos/wan, tandem-wan) that adds each site
# pair's latency, jitter, loss stalls and cuts (README: "Deploying to three places", The lab).
#
#   lab.sh up DIR [--rtt-ms east-west=8,witness=20] [--jitter-ms MS] [--loss PCT] [--insecure]
#                 [--set key=value ...]
#   lab.sh cut DIR A B [--reset]     (blackhole the link A-B: held, or reset with --reset)
#   lab.sh heal DIR [A B]            (every link, or A-B, back up)
#   lab.sh slow DIR A B MS           (round-trip time of A-B, in ms)
#   lab.sh loss DIR A B PCT          (retransmission-like stalls on A-B)
#   lab.sh links DIR                 (the links as tandem-wan has them)
#   lab.sh down DIR                  (stops everything, removes namespaces, links, nft tables)
#
# Every other command of deploy/local-cluster.sh (start, stop, stop-site, leader, status) works
# on a lab DIR as on a local cluster: the nodes run in their site's namespace (DIR/lab/sites).
# Layout: each site S has a namespace NS-S (NS = "tl" + 6 hex digits of DIR's path, so two labs
# never collide) with one veth to the root namespace, a /30 of 10.250.N.0/24 (N from the same
# hash, the next free one if taken): the root end .1/.5/.9, the site end .2/.6/.10, where the
# site's nodes listen. An nft table "tandem_lab" in each site namespace redirects (DNAT) what the
# site sends to another site's address to the root end of its own veth, same port, where
# tandem-wan listens and forwards to the real node through that pair's link. The test runner in
# the root namespace reaches every node directly (no emulated latency for clients).
# Latency is in user space: a loaded machine adds its own scheduling delay on top of it.
# Needs root, ip (iproute2) and nft; TANDEM_BIN_DIR as for local-cluster.sh.
set -euo pipefail
set +m

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
BIN_DIR=${TANDEM_BIN_DIR:-$REPO_DIR/build}
SITES=(east west witness)
# A site's /30 within 10.250.N.0/24: root end and site end (host part).
declare -A ROOT_HOST=([east]=1 [west]=5 [witness]=9) SITE_HOST=([east]=2 [west]=6 [witness]=10)
declare -A SHORT=([east]=e [west]=w [witness]=x)
WAN_READY_TRIES=100 # 50 ms apart: tandem-wan binds its listeners within 5 s
DEFAULT_JITTER_MS=1

die() {
    echo "lab: $*" >&2
    exit 1
}

usage() {
    sed -n '6,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# grep -q PATTERN on TEXT. Not `cmd | grep -q`: under pipefail, grep leaving at the first match
# can kill cmd with SIGPIPE, and the pipeline then fails as if nothing matched.
quiet_grep() {
    grep -q "$2" <<<"$1"
}

need_root() {
    ((EUID == 0)) || die "the lab needs root (network namespaces, veth, nftables)"
    command -v ip >/dev/null || die "ip (iproute2) is required"
    command -v nft >/dev/null || die "nft (nftables) is required"
}

# Sets LAB_ID (tl + 6 hex) from the absolute DIR.
lab_id() {
    local hash
    hash=$(printf '%s' "$1" | sha256sum)
    LAB_ID=tl${hash:0:6}
}

# The third octet of a lab: from the hash, the next one whose 10.250.N.0/24 no interface uses.
pick_octet() {
    local start=$((16#${LAB_ID:2:2})) i n
    for ((i = 0; i < 256; i++)); do
        n=$(((start + i) % 256))
        if ! quiet_grep "$(ip -4 -o addr show)" " 10\.250\.$n\."; then
            echo "$n"
            return 0
        fi
    done
    die "no free 10.250.N.0/24 for the lab"
}

# Reads DIR/lab/lab.conf: LAB_ID and OCTET.
load_lab() {
    local dir=$1
    [[ -f $dir/lab/lab.conf ]] || die "$dir holds no lab (no $dir/lab/lab.conf)"
    # shellcheck disable=SC1091
    source "$dir/lab/lab.conf"
}

check_pct() {
    [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] && ((${1%.*} <= 100)) || die "loss wants a percentage 0-100, got '$1'"
}

pair_name() {
    local a=$1 b=$2 s i ia=-1 ib=-1
    for i in "${!SITES[@]}"; do
        s=${SITES[$i]}
        [[ $s != "$a" ]] || ia=$i
        [[ $s != "$b" ]] || ib=$i
    done
    ((ia >= 0)) || die "unknown site '$a' (east, west or witness)"
    ((ib >= 0)) || die "unknown site '$b' (east, west or witness)"
    ((ia != ib)) || die "a link joins two different sites"
    if ((ia < ib)); then echo "$a-$b"; else echo "$b-$a"; fi
}

# Creates the namespaces, veths, addresses, routes and nft tables of a new lab.
make_net() {
    local dir=$1 site ns veth root_ip site_ip others s
    for site in "${SITES[@]}"; do
        ns=$LAB_ID-$site
        veth=$LAB_ID${SHORT[$site]}
        root_ip=10.250.$OCTET.${ROOT_HOST[$site]}
        site_ip=10.250.$OCTET.${SITE_HOST[$site]}
        ip netns add "$ns"
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip addr add "$root_ip/30" dev "$veth"
        ip link set "$veth" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$site_ip/30" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add "10.250.$OCTET.0/24" via "$root_ip"
        others=""
        for s in "${SITES[@]}"; do
            [[ $s == "$site" ]] || others+=${others:+, }10.250.$OCTET.${SITE_HOST[$s]}
        done
        ip netns exec "$ns" nft -f - <<EOF
table ip tandem_lab {
    chain out {
        type nat hook output priority -100; policy accept;
        ip daddr { $others } tcp dport 1-65535 dnat to $root_ip
    }
}
EOF
        echo "$site $ns $site_ip" >>"$dir/lab/sites"
    done
}

# Writes DIR/lab/links from the up options: link PAIR RTT JITTER LOSS STATE.
write_links() {
    local dir=$1 rtt_spec=$2 jitter=$3 loss=$4 item key value pair
    local -A rtts=([east-west]=8 [east-witness]=20 [west-witness]=20)
    local -a items
    IFS=, read -r -a items <<<"$rtt_spec"
    for item in "${items[@]}"; do
        [[ $item =~ ^([a-z-]+)=([0-9]+)$ ]] || die "--rtt-ms wants PAIR=MS[,...], got '$item'"
        key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
        if [[ $key == witness ]]; then
            rtts[east-witness]=$value rtts[west-witness]=$value
        else
            [[ $key == *-* ]] || die "--rtt-ms: '$key' is not a site pair (e.g. east-west)"
            pair=$(pair_name "${key%-*}" "${key#*-}")
            rtts[$pair]=$value
        fi
    done
    : >"$dir/lab/links"
    for pair in east-west east-witness west-witness; do
        echo "link $pair ${rtts[$pair]} $jitter $loss up" >>"$dir/lab/links"
    done
}

# Writes DIR/lab/routes from DIR/nodes and DIR/ports: for each site, a listener on the root end
# of its veth for every port of every node of the other sites.
write_routes() {
    local dir=$1 site raft api src port host
    : >"$dir/lab/routes"
    while read -r _ site raft api _; do
        host=${raft%:*}
        for src in "${SITES[@]}"; do
            [[ $src != "$site" ]] || continue
            for port in "${raft##*:}" "${api##*:}"; do
                echo "listen 10.250.$OCTET.${ROOT_HOST[$src]}:$port $host:$port $(pair_name "$src" "$site")"
            done
        done >>"$dir/lab/routes"
    done <"$dir/nodes"
}

# The running tandem-wan's pid (fails when none runs).
wan_pid() {
    local dir=$1 pid cmd
    [[ -f $dir/lab/wan.pid ]] || return 1
    pid=$(<"$dir/lab/wan.pid")
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *tandem-wan*"$dir/lab/routes"* ]] || return 1
    echo "$pid"
}

# Called by local-cluster.sh up before it starts a lab's nodes (the ports are known then):
# starts tandem-wan, or makes a running one re-read its links.
cmd_links_start() {
    local dir=$1 pid tries=0
    load_lab "$dir"
    if pid=$(wan_pid "$dir"); then
        kill -HUP "$pid"
        return 0
    fi
    [[ -x $BIN_DIR/tandem-wan ]] || die "tandem-wan not found in $BIN_DIR: build first"
    write_routes "$dir"
    setsid "$BIN_DIR/tandem-wan" "$dir/lab/routes" "$dir/lab/links" >>"$dir/lab/wan.log" 2>&1 \
        </dev/null &
    pid=$!
    echo "$pid" >"$dir/lab/wan.pid"
    while ! grep -q ready "$dir/lab/wan.log" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "tandem-wan exited: $(tail -3 "$dir/lab/wan.log")"
        ((++tries < WAN_READY_TRIES)) || die "tandem-wan not ready in 5 s"
        sleep 0.05
    done
}

cmd_up() {
    local dir=${1:-} rtt="" jitter=$DEFAULT_JITTER_MS loss=0
    local -a pass=()
    [[ -n $dir && $dir != -* ]] || usage
    shift
    while (($# > 0)); do
        case $1 in
            --rtt-ms | --jitter-ms | --loss | --set)
                (($# >= 2)) || die "$1 needs a value"
                case $1 in
                    --rtt-ms) rtt=$2 ;;
                    --jitter-ms)
                        [[ $2 =~ ^[0-9]+$ ]] || die "--jitter-ms wants whole ms, got '$2'"
                        jitter=$2
                        ;;
                    --loss)
                        check_pct "$2"
                        loss=$2
                        ;;
                    --set) pass+=(--set "$2") ;;
                esac
                shift
                ;;
            --insecure) pass+=(--insecure) ;;
            *) die "unknown option '$1' for up (lab.sh up DIR [options])" ;;
        esac
        shift
    done
    need_root
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -z $(ls -A "$dir") ]] || die "$dir is not empty (a lab is made in an empty directory)"
    lab_id "$dir"
    ! quiet_grep "$(ip netns list)" "^$LAB_ID-" || die "namespaces $LAB_ID-* exist already: lab.sh down $dir"
    mkdir "$dir/lab"
    OCTET=$(pick_octet)
    printf 'LAB_ID=%s\nOCTET=%s\n' "$LAB_ID" "$OCTET" >"$dir/lab/lab.conf"
    write_links "$dir" "$rtt" "$jitter" "$loss"
    LAB_DIR=$dir
    trap up_failed EXIT
    make_net "$dir"
    bash "$SCRIPT_DIR/local-cluster.sh" up "$dir" --topology 2+2+1 "${pass[@]}"
    trap - EXIT
    echo "  stop the lab: $0 down $dir (not local-cluster.sh down: it leaves the network)"
    echo "  lab: namespaces $LAB_ID-{east,west,witness}, links (lab.sh links $dir):"
    sed 's/^/    /' "$dir/lab/links"
}

up_failed() {
    local status=$?
    ((status == 0)) && return
    echo "lab: up failed; tearing the lab down (files stay in $LAB_DIR)" >&2
    cmd_down "$LAB_DIR" >&2 || true
}

# Sets field FIELD (3: rtt, 5: loss, 6: state) of link PAIR, or of every link for PAIR "*",
# and makes tandem-wan apply it.
set_link() {
    local dir=$1 pair=$2 field=$3 value=$4 pid
    load_lab "$dir"
    pid=$(wan_pid "$dir") || die "the lab's tandem-wan is not running (lab.sh up $dir)"
    awk -v p="$pair" -v f="$field" -v v="$value" \
        '$1 == "link" && (p == "*" || $2 == p) { $f = v } { print }' \
        "$dir/lab/links" >"$dir/lab/links.new"
    mv "$dir/lab/links.new" "$dir/lab/links"
    kill -HUP "$pid"
}

lab_dir() {
    cd "$1" 2>/dev/null && pwd || die "no such directory: $1"
}

cmd_cut() {
    local dir pair state=hold
    (($# == 3 || $# == 4)) || usage
    if (($# == 4)); then
        [[ $4 == --reset ]] || die "unknown option '$4' for cut"
        state=reset
    fi
    dir=$(lab_dir "$1")
    pair=$(pair_name "$2" "$3")
    set_link "$dir" "$pair" 6 "$state"
    echo "cut $2-$3 ($state)"
}

cmd_heal() {
    local dir pair="*"
    (($# == 1 || $# == 3)) || usage
    dir=$(lab_dir "$1")
    (($# == 1)) || pair=$(pair_name "$2" "$3")
    set_link "$dir" "$pair" 6 up
    echo "healed ${pair/\*/every link}"
}

cmd_slow() {
    local dir pair
    (($# == 4)) || usage
    [[ $4 =~ ^[0-9]+$ ]] || die "slow wants a round-trip time in whole ms, got '$4'"
    dir=$(lab_dir "$1")
    pair=$(pair_name "$2" "$3")
    set_link "$dir" "$pair" 3 "$4"
    echo "$2-$3: rtt $4 ms"
}

cmd_loss() {
    local dir pair
    (($# == 4)) || usage
    check_pct "$4"
    dir=$(lab_dir "$1")
    pair=$(pair_name "$2" "$3")
    set_link "$dir" "$pair" 5 "$4"
    echo "$2-$3: loss $4%"
}

cmd_links() {
    local dir
    (($# == 1)) || usage
    dir=$(lab_dir "$1")
    load_lab "$dir"
    echo "# link PAIR RTT_MS JITTER_MS LOSS_PCT STATE (tandem-wan $(wan_pid "$dir" || echo 'not running'))"
    cat "$dir/lab/links"
}

# Removes namespace NS if it exists. Its file stays busy (EBUSY) while a process that ran
# through `ip netns exec` still holds a mount namespace with a copy of it (a node just stopped):
# retried, up to NETNS_DEL_TRIES times 100 ms apart.
NETNS_DEL_TRIES=50
del_netns() {
    local ns=$1 tries=0
    while quiet_grep "$(ip netns list)" "^$ns\b"; do
        ip netns del "$ns" 2>/dev/null && return 0
        ((++tries < NETNS_DEL_TRIES)) || { ip netns del "$ns"; return 1; }
        sleep 0.1
    done
}

# Stops the nodes and tandem-wan, then removes the namespaces (their nft tables and the site
# ends of the veths go with them) and the root ends of the veths; checks that nothing is left.
cmd_down() {
    local dir=$1 pid site tries=0
    load_lab "$dir"
    if [[ -f $dir/nodes ]]; then
        bash "$SCRIPT_DIR/local-cluster.sh" down "$dir" || echo "lab: local-cluster.sh down failed" >&2
    fi
    if pid=$(wan_pid "$dir"); then
        kill -TERM "$pid"
        while kill -0 "$pid" 2>/dev/null && ((++tries < 100)); do sleep 0.05; done
        ! kill -0 "$pid" 2>/dev/null || kill -KILL "$pid"
        echo "stopped tandem-wan (pid $pid)"
    fi
    rm -f "$dir/lab/wan.pid"
    for site in "${SITES[@]}"; do
        del_netns "$LAB_ID-$site"
    done
    # Deleting a namespace deletes its veth pair, root end included, but not at once: delete
    # what is left (it may vanish meanwhile) and wait, boundedly, for the rest to go.
    tries=0
    while quiet_grep "$(ip -o link show)" ": $LAB_ID" && ((++tries < 50)); do
        for site in "${SITES[@]}"; do
            ip link del "$LAB_ID${SHORT[$site]}" 2>/dev/null || true
        done
        sleep 0.1
    done
    ! quiet_grep "$(ip netns list)" "^$LAB_ID-" || die "namespaces of $LAB_ID remain"
    ! quiet_grep "$(ip -o link show)" ": $LAB_ID" || die "links of $LAB_ID remain"
    echo "lab $LAB_ID down: no namespace, link or process left"
}

main() {
    (($# >= 1)) || usage
    local cmd=$1
    shift
    case $cmd in
        up) cmd_up "$@" ;;
        down)
            (($# == 1)) || usage
            need_root
            cmd_down "$(lab_dir "$1")"
            ;;
        cut) cmd_cut "$@" ;;
        heal) cmd_heal "$@" ;;
        slow) cmd_slow "$@" ;;
        loss) cmd_loss "$@" ;;
        links) cmd_links "$@" ;;
        links-start) cmd_links_start "$(lab_dir "$1")" ;;
        -h | --help | help) usage ;;
        *) die "unknown command '$cmd'" ;;
    esac
}

main "$@"
