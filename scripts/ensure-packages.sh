#!/usr/bin/env bash
# ensure-packages.sh CHECK:PACKAGE...: install Debian packages that are
# missing. CHECK is a command looked up on PATH or, if it holds a '/', a path
# glob that must match a file (for binaries off PATH, such as
# '/usr/lib/postgresql/*/bin/initdb'). Runs apt-get update once, only when
# something must be installed.
set -euo pipefail
missing=()
for pair in "$@"; do
  check=${pair%%:*} pkg=${pair#*:}
  if [[ $check == */* ]]; then
    compgen -G "$check" >/dev/null || missing+=("$pkg")
  else
    command -v "$check" >/dev/null 2>&1 || missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
