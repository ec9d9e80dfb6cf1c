#!/bin/sh
# Solves every exercise of "Services, DNS and Ingress".
set -eu
kubectl expose deployment web --port=80 --target-port=80
echo web.default.svc.cluster.local > /root/dns.txt
kubectl expose deployment api --port=8080
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web-public}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 80, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: api-headless}
spec:
  clusterIP: None
  selector: {app: api}
  ports: [{port: 8080, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  rules:
    - host: shop.example.com
      http:
        paths:
          - path: /api
            pathType: Prefix
            backend: {service: {name: api, port: {number: 8080}}}
          - path: /
            pathType: Prefix
            backend: {service: {name: web, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: legacy
  annotations:
    nginx.ingress.kubernetes.io/use-regex: "true"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  rules:
    - host: legacy.example.com
      http:
        paths:
          - path: /store(/|$)(.*)
            pathType: ImplementationSpecific
            backend: {service: {name: web, port: {number: 80}}}
YAML
# the first Ingress installs ingress-nginx: wait until it routes (as a student would retry)
for i in $(seq 180); do
  curl -s -H 'Host: shop.example.com' http://localhost/api/ | grep -q 'api: hello' &&
    curl -s -H 'Host: legacy.example.com' http://localhost/store/ | grep -q 'Welcome to nginx' && break
  sleep 1
done
