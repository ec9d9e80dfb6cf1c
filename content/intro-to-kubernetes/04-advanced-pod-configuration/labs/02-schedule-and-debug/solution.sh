#!/bin/sh
# Solves every exercise of "Schedule and debug" (a cluster of three nodes).
set -eu
kubectl apply -f /root/api.yaml
kubectl set resources deployment api --requests=cpu=100m,memory=64Mi --limits=memory=128Mi

# one worker gets the ssd label and a soft taint; fast goes there, tolerant on the control plane
SSD=$(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[0].metadata.name}')
kubectl label node "$SSD" disktype=ssd --overwrite
kubectl taint nodes -l disktype=ssd dedicated=lab:PreferNoSchedule --overwrite
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: fast}
spec:
  nodeSelector: {disktype: ssd}
  containers: [{name: fast, image: busybox:1.35, command: ["sleep", "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: tolerant}
spec:
  nodeSelector: {node-role.kubernetes.io/control-plane: ""}
  tolerations:
    - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
  containers: [{name: tolerant, image: busybox:1.35, command: ["sleep", "3600"]}]
YAML

# web: one replica per node (required anti-affinity); node-agent on every worker
kubectl apply -f /root/web.yaml
kubectl apply -f - <<'YAML'
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent}
spec:
  selector: {matchLabels: {app: node-agent}}
  template:
    metadata: {labels: {app: node-agent}}
    spec:
      containers: [{name: agent, image: busybox:1.35, command: ["sleep", "3600"]}]
YAML
kubectl rollout status deployment web --timeout=120s
kubectl rollout status daemonset node-agent --timeout=120s

# drain the other worker while a budget keeps one web replica up
kubectl create pdb web-pdb --selector=app=web --min-available=1
PLAIN=$(kubectl get nodes -l '!disktype,!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[0].metadata.name}')
kubectl drain "$PLAIN" --ignore-daemonsets --delete-emptydir-data --timeout=180s
kubectl rollout status deployment api --timeout=120s

kubectl describe deployment shop | grep -A2 MODE || true
echo "the ConfigMap shop-config (key MODE) does not exist" > /root/diagnosis.txt
kubectl create configmap shop-config --from-literal=MODE=production
