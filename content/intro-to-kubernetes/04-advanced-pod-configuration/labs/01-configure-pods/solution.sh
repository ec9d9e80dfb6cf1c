#!/bin/sh
# Solves every exercise of "Configure Pods".
set -eu
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: envdemo
spec:
  containers:
    - name: demo
      image: busybox:1.35
      command: ["sh", "-c"]
      args: ['echo "$GREETING from $POD_NAME"; sleep 3600']
      env:
        - name: GREETING
          value: Hello
        - name: POD_NAME
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
YAML
kubectl create configmap greet-config --from-env-file=/root/greet.env
kubectl create secret generic api-token --from-literal=token=abc123
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: greeter
spec:
  containers:
    - name: greeter
      image: busybox:1.35
      command: ["sh", "-c", 'echo "$GREETING, token $(cat /etc/api/token)"; sleep 3600']
      envFrom:
        - configMapRef: {name: greet-config}
      volumeMounts:
        - {name: token, mountPath: /etc/api, readOnly: true}
  volumes:
    - name: token
      secret: {secretName: api-token}
---
apiVersion: v1
kind: Pod
metadata:
  name: site
spec:
  initContainers:
    - name: render
      image: busybox:1.35
      command: ["sh", "-c", "echo '<h1>rendered by an init container</h1>' > /work/index.html"]
      volumeMounts: [{name: site, mountPath: /work}]
  containers:
    - name: web
      image: nginx:1.22
      volumeMounts: [{name: site, mountPath: /usr/share/nginx/html}]
  volumes:
    - name: site
      emptyDir: {}
---
apiVersion: v1
kind: Pod
metadata:
  name: logger
spec:
  initContainers:
    - name: log-shipper
      image: busybox:1.35
      restartPolicy: Always
      command: ["sh", "-c", "touch /var/log/app/app.log; tail -F /var/log/app/app.log"]
      volumeMounts: [{name: logs, mountPath: /var/log/app}]
  containers:
    - name: app
      image: busybox:1.35
      command: ["sh", "-c", "while true; do date >> /var/log/app/app.log; sleep 5; done"]
      volumeMounts: [{name: logs, mountPath: /var/log/app}]
  volumes:
    - name: logs
      emptyDir: {}
YAML
