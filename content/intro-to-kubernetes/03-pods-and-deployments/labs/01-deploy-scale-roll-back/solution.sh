#!/bin/sh
# Solves every exercise of "Deploy, scale, update, roll back".
set -eu
kubectl run hello --image=busybox:1.36 --labels=app=hello --dry-run=client -o yaml \
  --command -- sleep 3600 > /root/hello-pod.yaml
kubectl apply -f /root/hello-pod.yaml

kubectl create deployment web --image=nginx:1.27 --replicas=3
kubectl scale deployment web --replicas=5

kubectl patch deployment web -p '{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":0,"maxSurge":1}}}}'
kubectl set image deployment/web nginx=nginx:1.28
kubectl set image deployment/web nginx=nginx:1.99-broken
kubectl rollout undo deployment/web
kubectl rollout history deployment/web > /root/history.txt
