#!/bin/sh
# Solves every exercise of "Linux namespaces by hand" (run as root in a fresh sandbox).
set -eu
cd /root

# 1. PID namespace
unshare --pid --fork --mount-proc sh -c 'echo $$ > /root/pid.txt; ps -e > /root/ps.txt'
unshare --pid --fork --mount-proc sleep infinity > /dev/null 2>&1 &
for _ in 1 2 3 4 5 6 7 8 9 10; do   # wait until the sleep has started
    pgrep -n -x sleep > /root/host-pid.txt && break
    sleep 0.5
done

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
