# shellcheck shell=bash
# Shared by scripts/run.sh and scripts/test.sh (sourced, not run).
# Creates the project's virtual environment and installs VTP into it, only when needed.

VTP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VTP_VENV:-$VTP_ROOT/.venv}"

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# The first Python >= 3.11 found ($PYTHON wins when set).
pick_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# install_inputs: a digest of what an install depends on - the project metadata and the
# C send path that `pip install` compiles (vtp/sfu/fastpath).
install_inputs() {
    (cd "$VTP_ROOT" && cat pyproject.toml setup.py vtp/sfu/fastpath/build.py \
        vtp/sfu/fastpath/*.c vtp/sfu/fastpath/*.h | sha256sum | cut -d' ' -f1)
}

# ensure_venv EXTRAS: create $VENV if missing and `pip install -e .[EXTRAS]` when
# pyproject.toml or the C send path changed since the last install (a stamp file in
# the venv remembers).
ensure_venv() {
    local extras="${1:-}" spec="." python stamp want
    [ -n "$extras" ] && spec=".[$extras]"
    if [ ! -x "$VENV/bin/python" ]; then
        python="$(pick_python)" || die "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)"
        say "creating virtual environment $VENV with $python"
        "$python" -m venv "$VENV" \
            || die "'$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    stamp="$VENV/.vtp-installed${extras:+-$extras}"
    want="$(install_inputs) $VTP_ROOT"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/vtp" ] \
        && compgen -G "$VTP_ROOT/vtp/sfu/fastpath/_fanout*.so" >/dev/null; then
        return 0
    fi
    command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
        || die "a C compiler is needed to build the SFU's send path (on Debian/Ubuntu: apt-get install gcc)"
    "$VENV/bin/python" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || die "Python's C headers are missing (on Debian/Ubuntu: apt-get install python3-dev)"
    say "installing VTP${extras:+ with [$extras]} into $VENV (first run, or pyproject.toml or the C send path changed)"
    # pip's and the build backend's chatter goes to a log, shown only if pip fails.
    local log="$VENV/.vtp-pip.log"
    if ! (cd "$VTP_ROOT" && "$VENV/bin/python" -m pip install --disable-pip-version-check \
        --no-input -e "$spec") >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "pip install -e '$spec' failed (full output: $log)"
    fi
    printf '%s\n' "$want" >"$stamp"
}

# True when a full install (with the test extra) also covers a plain install.
venv_is_current() {
    local want
    want="$(install_inputs) $VTP_ROOT"
    [ -x "$VENV/bin/vtp" ] && [ -f "$VENV/.vtp-installed-test" ] \
        && compgen -G "$VTP_ROOT/vtp/sfu/fastpath/_fanout*.so" >/dev/null \
        && [ "$(cat "$VENV/.vtp-installed-test")" = "$want" ]
}
