#!/usr/bin/env python3
"""Allocate memory 10 MiB at a time, touching every page, and report progress.

Usage: python3 hog.py [MiB]   (default 200)
"""
import sys

target = int(sys.argv[1]) if len(sys.argv) > 1 else 200
chunks = []
for i in range(1, target // 10 + 1):
    chunks.append(bytearray(10 * 1024 * 1024))  # bytearray() zero-fills, so the pages are really used
    print(f"holding {i * 10} MiB", flush=True)
print("done: the limit never stopped me", flush=True)
