#!/usr/bin/env bash
# Fetch Tryton's web client (sao) from npm, pinned, into var/sao.
set -euo pipefail
cd "$(dirname "$0")/.."
SAO_VERSION=8.0.11
target=var/sao
if [ -f "$target/.version" ] && [ "$(cat "$target/.version")" = "$SAO_VERSION" ]; then
    exit 0
fi
rm -rf "$target" var/sao-download
mkdir -p var/sao-download
( cd var/sao-download && npm pack --silent "tryton-sao@$SAO_VERSION" >/dev/null \
    && tar xzf "tryton-sao-$SAO_VERSION.tgz" )
mv var/sao-download/package "$target"
rm -rf var/sao-download
cp web/sao-package-lock.json "$target/package-lock.json"
( cd "$target" && npm ci --omit=dev --legacy-peer-deps --no-audit --no-fund --loglevel=error >/dev/null )
echo "$SAO_VERSION" > "$target/.version"
echo "sao $SAO_VERSION ready in $target"
