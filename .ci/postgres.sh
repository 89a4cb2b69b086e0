#!/usr/bin/env bash
# Make a PostgreSQL server available on loopback for the store tests, then print its URL.
#
#   export PHALANX_TEST_PG_URL=$(bash .ci/postgres.sh)
#
# Works as root on a fresh Debian 12 machine: installs the distribution's postgresql package
# when no server binaries are present, starts the first cluster pg_lsclusters shows (creating
# one when there is none), makes sure role "phalanx" (password "phalanx", CREATEDB) and
# database "phalanx" exist, and waits until the server accepts connections. Safe to run twice.
# Only the URL goes to stdout; every other line goes to stderr.
set -euo pipefail

# Keep the real stdout on fd 3 for the URL; send everything else to stderr.
exec 3>&1 1>&2

PG_USER=phalanx
PG_PASSWORD=phalanx
PG_DATABASE=phalanx

log() { echo "postgres.sh: $*" >&2; }

have_server() {
    command -v pg_lsclusters >/dev/null 2>&1 &&
        command -v pg_ctlcluster >/dev/null 2>&1 &&
        compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

if ! have_server; then
    log "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update </dev/null 3>&-
    apt-get install -y postgresql </dev/null 3>&-
fi

# First cluster as "version name port status"; empty when there is none.
first_cluster() {
    pg_lsclusters --no-header 2>/dev/null | awk 'NR == 1 { print $1, $2, $3, $4 }'
}

read -r version cluster port status <<<"$(first_cluster)" || true
if [[ -z "${version:-}" ]]; then
    version=$(basename "$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d | sort -V | tail -n 1)")
    log "no cluster found; creating $version/main"
    pg_createcluster "$version" main --port 5432 </dev/null 3>&-
    read -r version cluster port status <<<"$(first_cluster)"
fi

if [[ "$status" != online* ]]; then
    log "starting cluster $version/$cluster on port $port"
    # The server is a daemon: it must not inherit fd 3 (the caller's $(...) pipe, which would then
    # never reach end-of-file) nor this script's stdout/stderr (a CI log reader would wait on it).
    # After an unclean shutdown (a stale pid file, WAL to replay) pg_ctlcluster may report a
    # failure for a server that then comes up: whether it answers, below, is what counts.
    pg_ctlcluster "$version" "$cluster" start </dev/null >&2 3>&- ||
        log "pg_ctlcluster reported a failure; waiting for the server anyway"
fi

log "waiting for the server on 127.0.0.1:$port"
for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then
        break
    fi
    sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$port"

# Run psql as the cluster's superuser over the local socket (peer authentication).
as_postgres() {
    (cd / && if command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi)
}
psql_admin() {
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres "$@"
}

if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" == 1 ]]; then
    psql_admin -c "ALTER ROLE $PG_USER WITH LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
else
    log "creating role $PG_USER"
    psql_admin -c "CREATE ROLE $PG_USER WITH LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
fi
if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" != 1 ]]; then
    log "creating database $PG_DATABASE"
    psql_admin -c "CREATE DATABASE $PG_DATABASE OWNER $PG_USER"
fi

echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$PG_DATABASE" >&3
