#!/bin/sh
# Namespace shop with a web and an api Deployment.
set -eu
kubectl create namespace shop
kubectl create deployment web --image=nginx:1.22 --port=80 -n shop
kubectl create deployment api --image=busybox:1.35 --port=8080 -n shop -- httpd -f -p 8080 -h /etc
