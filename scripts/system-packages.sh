#!/usr/bin/env bash
# Debian packages the test suite starts for real: Chromium (browser tests of the web UI and
# of MLflow's UI, through Playwright; browser downloads are impossible here), PostgreSQL
# and Redis (shared Optuna storages for tuning workers). Needs root; installs only what
# is missing.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/system-packages.sh: as root, run: apt-get install ${missing[*]}" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
