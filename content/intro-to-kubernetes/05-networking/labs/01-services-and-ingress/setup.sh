#!/bin/sh
# Two Deployments to put Services in front of: web (port 80) and api (port 8080).
set -eu
kubectl create deployment web --image=nginx:1.22 --replicas=2 --port=80
kubectl create deployment api --image=busybox:1.35 --replicas=2 --port=8080 -- httpd -f -p 8080 -h /etc
