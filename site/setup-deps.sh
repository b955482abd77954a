#!/usr/bin/env bash
# Install what the offline site (`papercode docs`) and its browser test (tests/site/) need.
# Idempotent: a second run installs nothing.
#   - Debian's chromium, and node + npm if missing (apt; only as root, otherwise a note); Debian's wordnet-base
#     (WordNet 3.0, read by chapter 09's word-category tasks; not the site's, installed here so CI has one apt step)
#   - the npm packages pinned in site/package-lock.json, into site/node_modules (npm ci)
# Usage: bash site/setup-deps.sh        (CI runs it from .ci/run)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need=()
{ command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -f /usr/share/wordnet/data.noun ] || need+=(wordnet-base)  # WordNet 3.0 for chapter 09's word-category tasks
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-deps: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup-deps: missing ${need[*]}; install them (sudo apt-get install ${need[*]})" >&2
    command -v npm >/dev/null 2>&1 || exit 1
  fi
fi

major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "setup-deps: node $(node --version) is too old for playwright-core (needs >= 20); the browser test will fail" >&2
fi

# npm ci wipes and reinstalls node_modules: skip it when the installed tree already matches the lock file.
if [ -f "$here/node_modules/.package-lock.json" ] && node -e '
     const fs = require("fs"), p = process.argv[1];
     const want = JSON.parse(fs.readFileSync(p + "/package-lock.json")).packages;
     const have = JSON.parse(fs.readFileSync(p + "/node_modules/.package-lock.json")).packages;
     for (const [k, v] of Object.entries(want))
       if (k && !v.optional && (!have[k] || have[k].version !== v.version)) process.exit(1);' "$here"; then
  echo "setup-deps: site/node_modules matches package-lock.json"
else
  echo "setup-deps: npm ci --prefix site"
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
fi
echo "setup-deps: chromium $( (chromium --version 2>/dev/null || true) | awk '{print $2}'), node $(node --version), npm $(npm --version)"
