#!/bin/sh
# Two Deployments to put Services in front of: web (port 80) and api (port 8080, answering
# under /api/, where the Ingress of step 3 sends it requests unchanged).
set -eu
kubectl create deployment web --image=nginx:1.22 --replicas=2 --port=80
kubectl create deployment api --image=busybox:1.35 --replicas=2 --port=8080 -- \
  sh -c 'mkdir -p /www/api && echo "api: hello from $(hostname)" > /www/api/index.html && exec httpd -f -p 8080 -h /www'
