#!/usr/bin/env bash
# Installs the external programs the end-to-end tests drive. Idempotent: does nothing when they
# are all present; otherwise one `apt-get update` and one `apt-get install` of what is missing.
# Works as root (CI containers) or through sudo.
set -euo pipefail

# command -> Debian package
declare -A NEEDED=(
  [ffmpeg]=ffmpeg
  [ffprobe]=ffmpeg
  [rtmpdump]=rtmpdump
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [curl]=curl
  [nginx]=nginx
)

missing=()
for cmd in "${!NEEDED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    pkg="${NEEDED[$cmd]}"
    [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done

# The relay tests push to nginx with its RTMP module (a file, not a command).
if ! [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] &&
   ! [ -f /usr/share/nginx/modules/ngx_rtmp_module.so ]; then
  missing+=(libnginx-mod-rtmp)
fi

if [ "${#missing[@]}" -eq 0 ]; then
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
