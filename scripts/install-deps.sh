#!/usr/bin/env bash
# Installs the Debian packages ckey builds and tests with; a no-op when all are present.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libssl-dev libsqlite3-dev libmicrohttpd-dev libjansson-dev
      libcurl4-openssl-dev libcmocka-dev sqlite3 openssl curl ca-certificates clang-format)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ckey: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
