#!/usr/bin/env bash
# Run VTP on this machine: sets up .venv on the first run, then `vtp serve`.
#
# With nothing configured VTP uses its embedded defaults (PostgreSQL from `pgserver`,
# an in-process Redis, objects on local disk, all under ./var), so no service needs to
# be installed. Settings come from the environment (see .env.example), e.g.
#   VTP_PORT=9000 ./scripts/run.sh
#   DATABASE_URL=postgresql://... REDIS_URL=redis://... ./scripts/run.sh
# Arguments go to `vtp serve` (--host, --port).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VTP_ROOT"

# A venv set up by scripts/test.sh (with the test extra) is good enough to run VTP.
venv_is_current || ensure_venv ""

exec "$VENV/bin/vtp" serve "$@"
