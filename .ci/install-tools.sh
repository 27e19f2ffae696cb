#!/usr/bin/env bash
# Installs the command-line tools the tests and benches drive, if missing.
# Safe to run repeatedly; needs root (CI and these machines run as root).
set -eu
# The npm clients the tus tests drive (tus-js-client, Uppy), from the lock file.
js_dir="$(dirname "$0")/../tests/js"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && [ ! -d "$js_dir/node_modules" ]; then
  npm ci --prefix "$js_dir" --no-audit --no-fund --loglevel=error >/dev/null
  echo "install-tools: installed tests/js node packages"
fi
want=(curl wget aria2c nginx wrk unzip 7z bsdtar)
pkgs=(curl wget aria2 nginx wrk unzip p7zip-full libarchive-tools)
missing=()
for i in "${!want[@]}"; do
  command -v "${want[$i]}" >/dev/null 2>&1 || [ -x "/usr/sbin/${want[$i]}" ] || missing+=("${pkgs[$i]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-tools: not root; missing: ${missing[*]} (tests needing them will fail)" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "install-tools: installed ${missing[*]}"
  fi
fi
# What a capability adds (a database server, a browser, a DAV client...):
# one script each, so that they stay out of each other's way.
for extra in "$(dirname "$0")"/install.d/*.sh; do
  [ -e "$extra" ] && bash "$extra"
done
exit 0
