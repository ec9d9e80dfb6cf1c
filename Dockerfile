# One image for web, worker, beat and runtimed; the command picks the role.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/var/lib/kubelab

# runtimed needs runc, the network tools and the image-recipe tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      runc busybox-static debootstrap nftables tini iproute2 iptables uidmap curl ca-certificates e2fsprogs gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin kubelab

WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN runtime/sandbox/agent/build.sh
RUN DJANGO_SETTINGS_MODULE=config.settings SECRET_KEY=collectstatic-only-not-a-real-key-000000 \
    python manage.py collectstatic --noinput -v 0 \
 && mkdir -p /var/lib/kubelab/run && chown -R kubelab:kubelab /var/lib/kubelab

USER kubelab
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "config.asgi:application"]
