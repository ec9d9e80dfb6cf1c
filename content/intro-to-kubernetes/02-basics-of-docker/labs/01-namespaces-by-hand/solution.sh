#!/bin/sh
# Solves every exercise of "Linux namespaces by hand" (run as root in a fresh sandbox).
set -eu
cd /root

# 1. PID namespace
unshare --pid --fork --mount-proc sh -c 'echo $$ > /root/pid.txt; ps -e > /root/ps.txt'
unshare --pid --fork --mount-proc sleep infinity > /dev/null 2>&1 &
# wait until the sleep has started (a loaded machine may take a while), then record it.
# Any other sleep in the sandbox (this loop's own, a shell's) is not PID 1 of a namespace,
# so pick the one whose NSpid line ends in 1.
i=0
p=
while [ -z "$p" ]; do
    for c in $(pgrep -x sleep); do
        if grep -Eq "^NSpid:[[:space:]]+$c[[:space:]]+1$" "/proc/$c/status" 2>/dev/null; then
            p=$c
        fi
    done
    [ -n "$p" ] && break
    i=$((i + 1))
    [ "$i" -lt 300 ] || { echo "sleep infinity did not start" >&2; exit 1; }
    sleep 0.1
done
echo "$p" > /root/host-pid.txt

# 2. UTS namespace
unshare --uts sh -c 'hostname container-1; hostname > /root/uts.txt'

# 3. network namespace
ip netns add lab
nsenter --net=/run/netns/lab ip link > /root/netns-before.txt
nsenter --net=/run/netns/lab ip link set lo up
ip link add veth-host type veth peer name veth-lab netns lab
ip addr add 10.200.0.1/24 dev veth-host
ip link set veth-host up
nsenter --net=/run/netns/lab ip addr add 10.200.0.2/24 dev veth-lab
nsenter --net=/run/netns/lab ip link set veth-lab up

# 4. user namespace
setpriv --reuid=65534 --regid=65534 --clear-groups \
  unshare --user --map-root-user sh -c 'id; cat /proc/self/uid_map' > /root/userns.txt
