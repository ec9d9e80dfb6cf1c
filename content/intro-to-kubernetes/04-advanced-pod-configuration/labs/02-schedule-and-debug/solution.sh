#!/bin/sh
# Solves every exercise of "Schedule and debug".
set -eu
kubectl apply -f /root/api.yaml
kubectl set resources deployment api --requests=cpu=100m,memory=64Mi --limits=memory=128Mi

kubectl label nodes --all disktype=ssd --overwrite
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
  tolerations:
    - {key: dedicated, operator: Equal, value: lab, effect: PreferNoSchedule}
  containers: [{name: tolerant, image: busybox:1.35, command: ["sleep", "3600"]}]
YAML

kubectl describe deployment shop | grep -A2 MODE || true
echo "the ConfigMap shop-config (key MODE) does not exist" > /root/diagnosis.txt
kubectl create configmap shop-config --from-literal=MODE=production
