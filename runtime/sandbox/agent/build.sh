#!/bin/sh
# Build runtimed's small static C programs:
#   kl-exec-agent  the resident exec agent (see kl-exec-agent.c and ../fastexec.py)
#   kl-cgexec      joins a sandbox's cgroup, then execs (see kl-cgexec.c and ../cgexec.py)
# Usage: runtime/sandbox/agent/build.sh  -> runtime/sandbox/agent/<name> (static, mode 0711)
# Needs gcc and libc6-dev (deps/apt-packages.txt). Without them the runtime falls back to
# `runc exec` (agent) and to a Python stand-in (kl-cgexec).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
for name in kl-exec-agent kl-cgexec; do
    src="$here/$name.c"
    out="$here/$name"
    if [ -x "$out" ] && [ "$out" -nt "$src" ]; then continue; fi
    tmp="$out.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    ${CC:-gcc} -static -O2 -Wall -Wextra -Werror -o "$tmp" "$src"
    strip "$tmp" 2>/dev/null || true
    chmod 0711 "$tmp"
    mv -f "$tmp" "$out"
    echo "built $out"
done
