#!/bin/sh
# A Deployment that cannot start: it reads MODE from a ConfigMap nobody created.
set -eu
kubectl apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  labels: {app: shop}
spec:
  replicas: 1
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
        - name: shop
          image: nginx:1.22
          env:
            - name: MODE
              valueFrom:
                configMapKeyRef: {name: shop-config, key: MODE}
YAML
