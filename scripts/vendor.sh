#!/usr/bin/env bash
# Refresh the browser libraries vendored under static/vendor/ (`make vendor`).
#
# The versions are pinned in package.json and package-lock.json (with their
# integrity hashes); `npm ci` installs exactly those into a temporary
# directory, without running any package scripts, and only the built dist
# files and their licences are copied into the tree. Nothing is bundled or
# served from a CDN (CodeMirror is bundled from its ES modules, see below). To upgrade: edit package.json, run
# `npm install --package-lock-only --ignore-scripts`, then this script.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/static/vendor/xterm"

command -v npm >/dev/null || { echo "vendor.sh: npm is not installed (apt-get install npm)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/kubelab-vendor.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp "$root/package.json" "$root/package-lock.json" "$work/"
(cd "$work" && timeout 300 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)

modules="$work/node_modules/@xterm"
stage="$work/stage"
mkdir -p "$stage"
# The source maps go along: the .js files name them, and Django's manifest
# static storage refuses to collect a file whose sourceMappingURL is missing.
install -m 0644 "$modules/xterm/lib/xterm.js" "$stage/xterm.js"
install -m 0644 "$modules/xterm/lib/xterm.js.map" "$stage/xterm.js.map"
install -m 0644 "$modules/xterm/css/xterm.css" "$stage/xterm.css"
install -m 0644 "$modules/xterm/LICENSE" "$stage/LICENSE.xterm"
install -m 0644 "$modules/addon-fit/lib/addon-fit.js" "$stage/addon-fit.js"
install -m 0644 "$modules/addon-fit/lib/addon-fit.js.map" "$stage/addon-fit.js.map"
install -m 0644 "$modules/addon-fit/LICENSE" "$stage/LICENSE.addon-fit"
install -m 0644 "$modules/addon-web-links/lib/addon-web-links.js" "$stage/addon-web-links.js"
install -m 0644 "$modules/addon-web-links/lib/addon-web-links.js.map" "$stage/addon-web-links.js.map"
install -m 0644 "$modules/addon-web-links/LICENSE" "$stage/LICENSE.addon-web-links"

version() { node -p "require('$modules/$1/package.json').version"; }
{
  echo "# Vendored by scripts/vendor.sh from the npm registry; do not edit by hand."
  echo "@xterm/xterm $(version xterm)"
  echo "@xterm/addon-fit $(version addon-fit)"
  echo "@xterm/addon-web-links $(version addon-web-links)"
} >"$stage/VERSIONS.txt"

rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
cp -r "$stage" "$dest"
echo "vendored into ${dest#"$root"/}:"
cat "$dest/VERSIONS.txt"

# CodeMirror 6 (the lab editor): its packages are ES modules, so they are bundled, once,
# with esbuild (pinned above, run from node_modules, no install scripts: the esbuild
# binary comes in its platform package) into one minified IIFE, with its licences.
cm="$root/static/vendor/codemirror"
cmstage="$work/cmstage"
mkdir -p "$cmstage"
cp "$root/scripts/codemirror-entry.mjs" "$work/codemirror-entry.mjs"
(cd "$work" && timeout 120 node_modules/.bin/esbuild codemirror-entry.mjs --bundle --minify --format=iife \
  --target=es2020 --legal-comments=none --outfile="$cmstage/codemirror.js" --log-level=warning)
{
  echo "# Bundled by scripts/vendor.sh (esbuild) from scripts/codemirror-entry.mjs; do not edit by hand."
  for pkg in codemirror @codemirror/view @codemirror/state @codemirror/language @codemirror/search \
    @codemirror/lang-yaml @codemirror/lang-python @codemirror/legacy-modes @codemirror/lint esbuild; do
    echo "$pkg $(node -p "require('$work/node_modules/$pkg/package.json').version")"
  done
} >"$cmstage/VERSIONS.txt"
install -m 0644 "$work/node_modules/codemirror/LICENSE" "$cmstage/LICENSE.codemirror"
rm -rf "$cm"
cp -r "$cmstage" "$cm"
echo "bundled into ${cm#"$root"/}:"
cat "$cm/VERSIONS.txt"
