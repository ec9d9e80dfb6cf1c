#!/bin/sh
# Two read-only "image layers" on a tmpfs (an overlay's upper directory cannot itself live on
# overlayfs, and the sandbox's root filesystem is one).
set -eu
mkdir -p /root/layers
mountpoint -q /root/layers || mount -t tmpfs -o size=64m,mode=0755 layers /root/layers
cd /root/layers
mkdir -p base/etc base/cache base/usr/share/doc app/etc app/srv
echo "hello from the base layer" > base/etc/greeting.txt
echo "mode=debug" > base/etc/config.ini
head -c 1048576 /dev/zero > base/cache/build.bin
echo "base image documentation" > base/usr/share/doc/README
echo "mode=production" > app/etc/config.ini
printf '#!/bin/sh\necho "the app is running"\n' > app/srv/run.sh
chmod +x app/srv/run.sh
