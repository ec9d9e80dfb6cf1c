#!/bin/sh
# Solves every exercise of "Deploy, scale, update, roll back".
set -eu
kubectl run hello --image=busybox:1.35 --labels=app=hello --dry-run=client -o yaml \
  --command -- sleep 3600 > /root/hello-pod.yaml
kubectl apply -f /root/hello-pod.yaml

kubectl create deployment web --image=kubelab/hello:1 --replicas=3
kubectl scale deployment web --replicas=5

kubectl patch deployment web -p '{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":0,"maxSurge":1}}}}'
kubectl set image deployment/web hello=kubelab/hello:2
kubectl rollout status deployment/web --timeout=180s
kubectl set image deployment/web hello=kubelab/hello:3
kubectl rollout undo deployment/web
kubectl rollout history deployment/web > /root/history.txt
