#!/usr/bin/env bash
# Refreshes the committed copy of axe-core (tests/vendor/axe-core/: axe.min.js, LICENSE, VERSION)
# from its npm package. The browser tests inject that file into each portal page; nothing is
# fetched at build or test time. Usage: scripts/refresh-axe.sh [VERSION] (default: the version in
# tests/vendor/axe-core/VERSION; pass `latest` to move to the newest release).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=tests/vendor/axe-core
version=${1:-$(cat "$dest/VERSION" 2>/dev/null || echo latest)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tarball=$(cd "$work" && npm pack --silent "axe-core@$version")
tar -xzf "$work/$tarball" -C "$work"
resolved=$(node -p 'require(process.argv[1]).version' "$work/package/package.json")

mkdir -p "$dest"
cp "$work/package/axe.min.js" "$dest/axe.min.js"
cp "$work/package/LICENSE" "$dest/LICENSE"
echo "$resolved" > "$dest/VERSION"
echo "axe-core $resolved -> $dest"
