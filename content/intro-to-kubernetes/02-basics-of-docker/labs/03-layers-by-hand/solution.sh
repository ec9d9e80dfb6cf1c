#!/bin/sh
# Solves every exercise of "Layers by hand with overlayfs".
set -eu
cd /root/layers
mkdir -p upper work merged upper2 work2 merged2
mount -t overlay overlay -o lowerdir=app:base,upperdir=upper,workdir=work merged
echo 'changed in the container' >> merged/etc/greeting.txt
rm merged/cache/build.bin
mount -t overlay overlay -o lowerdir=app:base,upperdir=upper2,workdir=work2 merged2
echo hi > merged2/hello.txt
