#!/bin/sh
# Solves every exercise of "First contact with a cluster".
set -eu
kubectl get nodes -o name > /root/nodes.txt
kubectl api-resources > /root/resources.txt
kubectl create namespace hello
kubectl label namespace hello course=intro
kubectl run web --image=nginx:1.22 --labels=app=web -n hello
kubectl get pod web -n hello -o yaml > /root/web-pod.yaml
