#!/bin/sh
# Build the resident exec agent (see kl-exec-agent.c and ../fastexec.py).
# Usage: runtime/sandbox/agent/build.sh  -> runtime/sandbox/agent/kl-exec-agent (static, mode 0711)
# Needs gcc and libc6-dev (deps/apt-packages.txt). Without it the runtime falls back to `runc exec`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/kl-exec-agent.c"
out="$here/kl-exec-agent"
if [ -x "$out" ] && [ "$out" -nt "$src" ]; then exit 0; fi
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
${CC:-gcc} -static -O2 -Wall -Wextra -Werror -o "$tmp" "$src"
strip "$tmp" 2>/dev/null || true
chmod 0711 "$tmp"
mv -f "$tmp" "$out"
echo "built $out"
