#!/usr/bin/env bash
# Installs the external programs the end-to-end tests drive. Idempotent: does nothing when they
# are all present; otherwise one `apt-get update` and one `apt-get install` of what is missing.
# Then the browser tests' npm packages (`npm ci` in tests/browser) when they are not installed.
# Works as root (CI containers) or through sudo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# command -> Debian package
declare -A NEEDED=(
  [ffmpeg]=ffmpeg
  [ffprobe]=ffmpeg
  [rtmpdump]=rtmpdump
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [curl]=curl
  [nginx]=nginx
  [node]=nodejs
  [npm]=npm
)

missing=()
for cmd in "${!NEEDED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    pkg="${NEEDED[$cmd]}"
    [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done
# `make compare` measures nginx with Debian's RTMP module beside us (the binary is in /usr/sbin,
# which a non-root PATH may lack, so the module file is the test)
if [ ! -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then
  missing+=(nginx libnginx-mod-rtmp)
fi

# The browser tests drive this exact binary (Debian's package), not a downloaded browser.
if [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi

install_npm_packages() {
  local dir="$ROOT/tests/browser"
  # npm writes node_modules/.package-lock.json last: missing means never or partly installed,
  # older than package-lock.json means the pinned versions changed since.
  local done_marker="$dir/node_modules/.package-lock.json"
  if [ -f "$done_marker" ] && [ ! "$dir/package-lock.json" -nt "$done_marker" ]; then
    return 0
  fi
  echo "install-test-deps: npm ci in tests/browser" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# The relay tests push to nginx with its RTMP module (a file, not a command).
if ! [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] &&
   ! [ -f /usr/share/nginx/modules/ngx_rtmp_module.so ]; then
  missing+=(libnginx-mod-rtmp)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  install_npm_packages
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
  exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-test-deps: need root or sudo to install ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >/dev/null
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_npm_packages
