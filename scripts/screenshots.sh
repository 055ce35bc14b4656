#!/usr/bin/env bash
# Writes the README's screenshots of the tenant portal (docs/screenshots/*.png, desktop 1280x800
# and phone 390x844): boots the whole mesh in process with a demo tenant and its owner, signs in
# with headless Chromium and photographs the sign-in page and every page of the owner's
# navigation. Needs Debian's chromium and chromium-driver (scripts/test.sh installs them) and the
# PostgreSQL binaries the tests use. Usage: scripts/screenshots.sh [DIR] (default docs/screenshots).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-docs/screenshots}
mkdir -p "$dir"
SCREENSHOT_DIR=$(cd "$dir" && pwd) CI=true \
  cargo test -p e2e --test browser write_screenshots_of_the_main_pages -- --ignored --nocapture
