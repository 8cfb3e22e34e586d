#!/usr/bin/env bash
# Make sure the servers the tests and the demo start are installed.
#
# Usage: deploy/ensure-services.sh redis|postgres...
#
# A missing server is installed with apt-get when running as root on a machine that has it;
# otherwise this prints what to install and exits 1. Nothing is started: the tests and the demo
# start their own throwaway servers on free ports.
set -euo pipefail

have_redis() { command -v redis-server >/dev/null 2>&1; }
have_postgres() {
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        [[ -x "$bin/postgres" && -x "$bin/initdb" ]] && return 0
    done
    [[ -n "${PMSQ_TEST_PG_BINDIR:-}" && -x "$PMSQ_TEST_PG_BINDIR/postgres" ]] && return 0
    command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1
}

apt_updated=0
ensure() {
    local what=$1 check=$2 package=$3
    if "$check"; then
        return 0
    fi
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "ensure-services: $what not found; installing apt package '$package'" >&2
        if [[ $apt_updated -eq 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -q
            apt_updated=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package"
        "$check" && return 0
        echo "ensure-services: installed '$package' but $what is still missing" >&2
        exit 1
    fi
    echo "ensure-services: $what is required but not installed." >&2
    echo "  Install it (e.g. 'sudo apt-get install $package', or 'brew install $package')," >&2
    echo "  or run this as root on Debian/Ubuntu to have it installed automatically." >&2
    exit 1
}

if [[ $# -eq 0 ]]; then
    echo "usage: $0 redis|postgres..." >&2
    exit 2
fi
for service in "$@"; do
    case $service in
        redis) ensure redis-server have_redis redis-server ;;
        postgres) ensure "PostgreSQL (initdb, postgres)" have_postgres postgresql ;;
        *) echo "ensure-services: unknown service '$service'" >&2; exit 2 ;;
    esac
done
