#!/usr/bin/env bash
# Makes and manages a tandem cluster's certificates with the openssl CLI: the cluster CA, node
# certificates (raft and API, server and client) and user (client) certificates.
#
#   certs.sh DIR --nodes NAME,... [--users NAME,...] [--days N] [--addresses NAME=ADDR,...] [--force]
#   certs.sh renew DIR NAME [--days N]
#   certs.sh revoke DIR NAME
#   certs.sh crl DIR
#
# DIR/ca.pem, ca.key: the cluster CA (ECDSA P-256, 10 years), made once and then reused, so
# running certs.sh again with a new node or user adds its certificate. DIR/NAME.pem, NAME.key: a
# node certificate (CN and SAN DNS = the node name, SAN DNS:localhost, IP:127.0.0.1 and every
# ADDR given for it; EKU serverAuth+clientAuth) or a user certificate (CN = the user; EKU
# clientAuth only), valid --days days (default 365). Existing certificates are kept unless
# --force. --addresses may name a node several times; an ADDR is an IPv4/IPv6 address or a DNS
# name. renew makes a new key and certificate for NAME with the same names (then SIGHUP the node
# that uses it); revoke adds NAME's current certificate to the CA's index and rewrites
# DIR/crl.pem (point tls_crl at it and SIGHUP every node); crl re-issues DIR/crl.pem, which is
# valid for CRL_DAYS (365) days: re-issue it before then. DIR/ca-db/ holds the CA's index.
set -euo pipefail

CA_DAYS=3650
CRL_DAYS=365
DEFAULT_DAYS=365
NAME_RE='^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'
RESERVED_NAMES=" ca crl ca-db "

die() {
    echo "certs.sh: $*" >&2
    exit 2
}

# Runs an openssl command quietly; on failure, its first error line becomes ours.
ossl() {
    local out
    if ! out=$(openssl "$@" 2>&1); then
        die "openssl $1 failed: $(grep -m1 -v '^\s*$' <<<"$out" || echo "no message")"
    fi
}

check_name() {
    [[ $1 =~ $NAME_RE ]] || die "bad $2 name '$1' (letters, digits, '.', '_', '-'; at most 63)"
    [[ $RESERVED_NAMES != *" $1 "* ]] || die "'$1' is reserved and cannot name a $2"
}

check_days() {
    [[ $1 =~ ^[1-9][0-9]{0,4}$ ]] || die "--days wants a whole number of days (1-99999), got '$1'"
}

# SAN entry for an address: IP for IPv4/IPv6 literals, DNS otherwise.
san_entry() {
    if [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $1 == *:* ]]; then
        echo "IP:$1"
    elif [[ $1 =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]]; then
        echo "DNS:$1"
    else
        die "bad address '$1' (an IP address or a DNS name)"
    fi
}

# The CA's database for `openssl ca` (revocation and CRLs only: certificates are signed with
# `openssl x509 -req`). Writes DIR/ca-db/openssl.cnf.
ca_db() {
    local dir=$1 db=$1/ca-db
    mkdir -p "$db"
    [[ -f $db/index.txt ]] || : >"$db/index.txt"
    [[ -f $db/crlnumber ]] || echo 01 >"$db/crlnumber"
    cat >"$db/openssl.cnf" <<EOF
[ca]
default_ca = tandem_ca
[tandem_ca]
dir = $db
database = $db/index.txt
crlnumber = $db/crlnumber
new_certs_dir = $db
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_crl_days = $CRL_DAYS
unique_subject = no
EOF
}

# Makes DIR/ca.pem and ca.key unless both exist (a lone one is an error: never guess).
make_ca() {
    local dir=$1
    if [[ -f $dir/ca.pem && -f $dir/ca.key ]]; then
        return 0
    fi
    [[ ! -e $dir/ca.pem && ! -e $dir/ca.key ]] ||
        die "$dir holds only one of ca.pem and ca.key: restore the other or remove it"
    local cnf=$dir/ca-db/ca-req.cnf
    cat >"$cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = tandem cluster CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    (umask 077 && ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key.tmp")
    ossl req -x509 -new -config "$cnf" -key "$dir/ca.key.tmp" -sha256 -days "$CA_DAYS" \
        -out "$dir/ca.pem.tmp"
    chmod 600 "$dir/ca.key.tmp"
    mv "$dir/ca.key.tmp" "$dir/ca.key"
    mv "$dir/ca.pem.tmp" "$dir/ca.pem"
    echo "made CA $dir/ca.pem"
}

# Writes DIR/ca-db/NAME.ext, the extensions of NAME's certificate (kind node or user).
write_ext() {
    local dir=$1 name=$2 kind=$3
    shift 3
    local san="DNS:$name,DNS:localhost,IP:127.0.0.1" addr
    for addr in "$@"; do
        san+=",$(san_entry "$addr")"
    done
    {
        echo "# tandem $kind certificate of $name (used again by certs.sh renew)"
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature"
        if [[ $kind == node ]]; then
            echo "extendedKeyUsage = serverAuth, clientAuth"
            echo "subjectAltName = $san"
        else
            echo "extendedKeyUsage = clientAuth"
        fi
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid"
    } >"$dir/ca-db/$name.ext"
}

# Signs a new key and certificate for NAME from DIR/ca-db/NAME.ext; replaces the files at the end.
issue() {
    local dir=$1 name=$2 days=$3 serial
    serial=0x$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | sed 's/^./4/')
    # One openssl run for the key and the request: local-cluster.sh runs this for every node of
    # every test cluster.
    (umask 077 && ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
        -keyout "$dir/$name.key.tmp" -subj "/CN=$name" -out "$dir/ca-db/$name.csr")
    ossl x509 -req -in "$dir/ca-db/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -set_serial "$serial" -days "$days" -sha256 -extfile "$dir/ca-db/$name.ext" \
        -out "$dir/$name.pem.tmp"
    rm -f "$dir/ca-db/$name.csr"
    chmod 600 "$dir/$name.key.tmp"
    mv "$dir/$name.key.tmp" "$dir/$name.key"
    mv "$dir/$name.pem.tmp" "$dir/$name.pem"
}

# Splits a comma-separated list into the array named by $2, rejecting empty items.
split_list() {
    local -n into=$2
    local item
    into=()
    [[ -n $1 ]] || die "$3 wants a comma-separated list, got nothing"
    IFS=, read -r -a into <<<"$1"
    for item in "${into[@]}"; do
        [[ -n $item ]] || die "$3 has an empty item in '$1'"
    done
    [[ $1 != *, ]] || die "$3 has an empty item in '$1'"
}

cmd_make() {
    local dir force=0 name
    local -a dirs=()
    local -A opt=([--days]=$DEFAULT_DAYS)
    while (($# > 0)); do
        case $1 in
            --nodes | --users | --days | --addresses)
                (($# >= 2)) || die "$1 needs a value"
                opt[$1]=$2
                shift
                ;;
            --force) force=1 ;;
            -*) die "unknown option '$1'" ;;
            *) dirs+=("$1") ;;
        esac
        shift
    done
    ((${#dirs[@]} <= 1)) || die "one DIR only (got: ${dirs[*]})"
    dir=${dirs[0]:-}
    local nodes_arg=${opt[--nodes]:-} users_arg=${opt[--users]:-} days=${opt[--days]}
    local addresses_arg=${opt[--addresses]:-}
    [[ -n $dir ]] || die "missing DIR (usage: certs.sh DIR --nodes NAME,... [--users NAME,...])"
    [[ -n $nodes_arg || -n $users_arg ]] || die "nothing to make: give --nodes and/or --users"
    check_days "$days"
    local -a nodes=() users=() pairs=()
    local -A seen=() addrs=()
    [[ -z $nodes_arg ]] || split_list "$nodes_arg" nodes --nodes
    [[ -z $users_arg ]] || split_list "$users_arg" users --users
    for name in "${nodes[@]}"; do
        check_name "$name" node
        [[ -z ${seen[$name]+x} ]] || die "'$name' is named twice"
        seen[$name]=node
    done
    for name in "${users[@]}"; do
        check_name "$name" user
        [[ -z ${seen[$name]+x} ]] || die "'$name' is named twice (a user and a node need distinct names)"
        seen[$name]=user
    done
    if [[ -n $addresses_arg ]]; then
        split_list "$addresses_arg" pairs --addresses
        local pair
        for pair in "${pairs[@]}"; do
            [[ $pair == *=* ]] || die "--addresses wants NAME=ADDR items, got '$pair'"
            [[ ${seen[${pair%%=*}]:-} == node ]] || die "--addresses names '${pair%%=*}', which is not in --nodes"
            san_entry "${pair#*=}" >/dev/null
            addrs[${pair%%=*}]+="${pair#*=} "
        done
    fi
    command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"
    mkdir -p "$dir" || die "cannot create $dir"
    ca_db "$dir"
    make_ca "$dir"
    for name in "${nodes[@]}" "${users[@]}"; do
        if [[ -f $dir/$name.pem && -f $dir/$name.key && $force == 0 ]]; then
            echo "kept $dir/$name.pem (exists; --force replaces it)"
            continue
        fi
        local -a extra=()
        read -r -a extra <<<"${addrs[$name]:-}"
        write_ext "$dir" "$name" "${seen[$name]}" "${extra[@]}"
        issue "$dir" "$name" "$days"
        echo "made ${seen[$name]} certificate $dir/$name.pem"
    done
}

# DIR and NAME of renew/revoke, checked: sets TARGET_DIR.
target() {
    local dir=$1 name=$2 what=$3
    [[ -d $dir ]] || die "no such directory: $dir"
    [[ -f $dir/ca.pem && -f $dir/ca.key ]] || die "$dir holds no CA (ca.pem and ca.key)"
    check_name "$name" certificate
    [[ -f $dir/$name.pem ]] || die "no certificate $dir/$name.pem to $what"
    TARGET_DIR=$dir
}

cmd_renew() {
    (($# == 2 || $# == 4)) || die "usage: certs.sh renew DIR NAME [--days N]"
    local days=$DEFAULT_DAYS
    if (($# == 4)); then
        [[ $3 == --days ]] || die "unknown option '$3' for renew"
        days=$4
    fi
    check_days "$days"
    target "$1" "$2" renew
    ca_db "$TARGET_DIR"
    [[ -f $TARGET_DIR/ca-db/$2.ext ]] ||
        die "$TARGET_DIR/ca-db/$2.ext is missing: make the certificate again with --force"
    issue "$TARGET_DIR" "$2" "$days"
    echo "renewed $TARGET_DIR/$2.pem: send SIGHUP to the node that uses it (or give it to the user)"
}

gen_crl() {
    ossl ca -config "$1/ca-db/openssl.cnf" -gencrl -out "$1/crl.pem.tmp"
    mv "$1/crl.pem.tmp" "$1/crl.pem"
}

cmd_revoke() {
    (($# == 2)) || die "usage: certs.sh revoke DIR NAME"
    target "$1" "$2" revoke
    ca_db "$TARGET_DIR"
    local serial
    serial=$(openssl x509 -in "$TARGET_DIR/$2.pem" -noout -serial 2>/dev/null) ||
        die "$TARGET_DIR/$2.pem is not a PEM certificate"
    if grep -q "^R.*	${serial#serial=}	" "$TARGET_DIR/ca-db/index.txt"; then
        echo "$TARGET_DIR/$2.pem (serial ${serial#serial=}) was already revoked"
    else
        ossl ca -config "$TARGET_DIR/ca-db/openssl.cnf" -revoke "$TARGET_DIR/$2.pem"
    fi
    gen_crl "$TARGET_DIR"
    echo "revoked $2 (serial ${serial#serial=}); wrote $TARGET_DIR/crl.pem: set tls_crl to it on every node and send SIGHUP"
}

cmd_crl() {
    (($# == 1)) || die "usage: certs.sh crl DIR"
    [[ -f $1/ca.pem && -f $1/ca.key ]] || die "$1 holds no CA (ca.pem and ca.key)"
    ca_db "$1"
    gen_crl "$1"
    echo "wrote $1/crl.pem (valid $CRL_DAYS days): send SIGHUP to every node"
}

main() {
    (($# >= 1)) || die "usage: certs.sh DIR --nodes NAME,... [--users NAME,...] | renew DIR NAME | revoke DIR NAME | crl DIR"
    case $1 in
        renew) shift && cmd_renew "$@" ;;
        revoke) shift && cmd_revoke "$@" ;;
        crl) shift && cmd_crl "$@" ;;
        -h | --help) sed -n '3,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' && exit 0 ;;
        *) cmd_make "$@" ;;
    esac
}

main "$@"
