#!/bin/sh
# "Compiles" pages/*.txt into HTML under /out, leaving a large build cache behind in /work.
set -eu
mkdir -p /out /work
head -c 5000000 /dev/urandom > /work/cache.bin   # stands in for compilers, caches, object files
for page in pages/*.txt; do
    name=$(basename "$page" .txt)
    printf '<!doctype html>\n<title>%s</title>\n<p>%s</p>\n' "$name" "$(cat "$page")" > "/out/$name.html"
done
