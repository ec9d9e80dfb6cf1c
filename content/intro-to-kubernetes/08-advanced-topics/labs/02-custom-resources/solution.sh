#!/bin/sh
# Solves every exercise of "Custom resources".
set -eu
cat > /root/backup-crd.yaml <<'YAML'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backups.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: backups
    singular: backup
    kind: Backup
    shortNames: [bk]
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [schedule]
              properties:
                schedule: {type: string}
                retention: {type: integer, minimum: 1}
      additionalPrinterColumns:
        - {name: Schedule, type: string, jsonPath: .spec.schedule}
        - {name: Retention, type: integer, jsonPath: .spec.retention}
YAML
kubectl apply -f /root/backup-crd.yaml
kubectl wait --for=condition=Established crd/backups.stable.example.com --timeout=30s
kubectl apply -f - <<'YAML'
apiVersion: stable.example.com/v1
kind: Backup
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  retention: 14
YAML
