#!/bin/sh
# Solves every exercise of "Building better images" (needs the sandbox's Docker engine).
set -eu

cd /root/greet
printf '.env\ntests/\n*.log\nDockerfile\n.dockerignore\n' > .dockerignore
docker build -q -t greet:v1 .

cat > Dockerfile <<'DF'
FROM python:3.11-minimal
ENV GREETING=Hello
WORKDIR /app
COPY greet.py .
CMD ["python3", "/app/greet.py"]
DF
docker build -q -t greet:v2 .

cat > Dockerfile <<'DF'
FROM python:3.11-minimal
ENV GREETING=Hello
WORKDIR /app
COPY greet.py .
USER 10001
CMD ["python3", "/app/greet.py"]
DF
docker build -q -t greet:v3 .

cd /root/site
cat > Dockerfile.slow <<'DF'
FROM busybox:1.35
RUN mkdir -p /www \
 && echo '<!doctype html><p>Welcome</p>' > /www/index.html \
 && echo '<!doctype html><p>About</p>' > /www/about.html \
 && echo 'web:x:10001:10001:web:/www:/bin/false' >> /etc/passwd \
 && chown -R web /www
USER web
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
DF
docker build -q -f Dockerfile.slow -t site:v1 .

cat > Dockerfile.multi <<'DF'
FROM busybox:1.35 AS build
WORKDIR /src
COPY . .
RUN sh build.sh

FROM busybox:1.35
COPY --from=build /out/ /www/
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
DF
docker build -q -f Dockerfile.multi -t site:v2 .
