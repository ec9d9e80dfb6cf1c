#!/bin/sh
# Namespace shop with a web and an api Deployment behind Services; a Prometheus stand-in in
# namespace monitoring (it serves on 9090) and a developer's Pod in namespace dev.
set -eu
kubectl create namespace shop
kubectl create deployment web --image=nginx:1.22 --port=80 -n shop
kubectl create deployment api --image=busybox:1.35 --port=8080 -n shop -- httpd -f -p 8080 -h /etc
kubectl expose deployment web --port=80 -n shop
kubectl expose deployment api --port=8080 -n shop
kubectl create namespace monitoring
kubectl create deployment prometheus --image=busybox:1.35 --port=9090 -n monitoring -- httpd -f -p 9090 -h /etc
kubectl create namespace dev
kubectl run laptop --image=busybox:1.35 --labels=app=laptop -n dev -- sleep 86400
