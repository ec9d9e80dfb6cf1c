#!/bin/sh
# Solves every exercise of "Control groups and the OOM killer" on cgroup v1 and v2.
set -u
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    # v2: processes may only live in leaves once controllers are enabled for children,
    # so move whatever sits in the sandbox's root cgroup into a leaf called init first.
    mkdir -p /sys/fs/cgroup/init
    for p in $(cat /sys/fs/cgroup/cgroup.procs); do echo "$p" > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null; done
    echo "+memory +pids" > /sys/fs/cgroup/cgroup.subtree_control
    MEM=/sys/fs/cgroup/lab PIDS=/sys/fs/cgroup/few
    mkdir -p $MEM $PIDS
    echo 50M > $MEM/memory.max
    [ -f $MEM/memory.swap.max ] && echo 0 > $MEM/memory.swap.max
else
    MEM=/sys/fs/cgroup/memory/lab PIDS=/sys/fs/cgroup/pids/few
    mkdir -p $MEM $PIDS
    echo 50M > $MEM/memory.limit_in_bytes
    # without this, a host with swap would page the hog out instead of killing it
    [ -f $MEM/memory.memsw.limit_in_bytes ] && echo 50M > $MEM/memory.memsw.limit_in_bytes
fi

sh -c "echo \$\$ > $MEM/cgroup.procs; exec python3 /root/hog.py" > /root/hog.log 2>&1
echo $? > /root/oom.txt
cat /root/hog.log >> /root/oom.txt

echo 5 > $PIDS/pids.max
sh -c "echo \$\$ > $PIDS/cgroup.procs; for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait" 2>/dev/null || true
exit 0
