#!/bin/sh
# Nothing to install; make the helper executable and leave a note of the cgroup version.
chmod +x /root/hog.py
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2; else echo v1; fi > /root/.cgroup-version
