#!/bin/sh
# Solves every exercise of "Helm releases".
set -eu
helm install demo /root/charts/hello --wait
helm package /root/charts/hello -d /root
helm install staging /root/hello-0.1.0.tgz -n staging --create-namespace
printf 'replicaCount: 3\nservice:\n  type: NodePort\n' > /root/prod-values.yaml
helm upgrade demo /root/charts/hello -f /root/prod-values.yaml --wait
helm rollback demo 1 --wait
helm history demo > /root/history.txt
helm test demo
helm get manifest demo > /root/demo-manifest.yaml
helm uninstall staging -n staging --keep-history
