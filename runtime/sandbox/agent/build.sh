#!/bin/sh
# Build runtimed's small static C programs:
#   kl-exec-agent  the resident exec agent (see kl-exec-agent.c and ../fastexec.py)
#   kl-cgexec      joins a sandbox's cgroup, then execs (see kl-cgexec.c and ../cgexec.py)
#   kl-pty-holder  holds one shell's PTY master across runtimed restarts (see kl-pty-holder.c
#                  and runtime/sessions/holder.py)
# Usage: runtime/sandbox/agent/build.sh  -> runtime/sandbox/agent/<name> (static, mode 0711)
# Needs gcc and libc6-dev (deps/apt-packages.txt). Without them the runtime falls back to
# `runc exec` (agent), to a Python stand-in (kl-cgexec) and to PTYs held in runtimed itself
# (kl-pty-holder: shells then end with runtimed).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
for name in kl-exec-agent kl-cgexec kl-pty-holder; do
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
