# syntax=docker/dockerfile:1.7
# One image for tether-sidecar, tether-injector and tetherctl; its entrypoint picks the binary by the first
# argument (default: sidecar). Node runs the TypeScript sources directly (type stripping), so there is no
# build step: production dependencies plus cmd/ and src/.
#   docker build -t ghcr.io/tether-mesh/tether:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --rm ghcr.io/tether-mesh/tether:0.1.0 tetherctl version

# Node 24: package.json's engines; pin a patch (or a digest) here for reproducible builds.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev: no TypeScript, test or lint tooling in the image. --ignore-scripts: no install script runs
# (the `node` devDependency's download is not installed anyway; nothing in production needs one).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tether" \
      org.opencontainers.image.description="Tether service-mesh sidecar proxy: tether-sidecar, tether-injector, tetherctl" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/tether-mesh/tether"
# iptables: for the opt-in tether.io/capture: iptables init container, which runs this image as root with
# NET_ADMIN. The sidecar and injector never use it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
# 15001: the proxy's UID, the same number the injector sets in runAsUser and exempts from iptables capture.
RUN groupadd --system --gid 15001 tether \
 && useradd --system --uid 15001 --gid 15001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tether
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY cmd ./cmd
COPY src ./src
COPY --chmod=0755 <<'EOF' /usr/local/bin/tether
#!/bin/sh
# The image's entrypoint: the first argument picks the binary, the rest are its flags.
set -e
home=${TETHER_HOME:-/app}
cmd=${1:-sidecar}
[ $# -gt 0 ] && shift
# DEP0060: http-proxy still calls util._extend.
case "$cmd" in
  sidecar | tether-sidecar) exec node --disable-warning=DEP0060 "$home/cmd/sidecar.ts" "$@" ;;
  injector | tether-injector) exec node --disable-warning=DEP0060 "$home/cmd/injector.ts" "$@" ;;
  tetherctl | ctl) exec node --disable-warning=DEP0060 "$home/cmd/tetherctl.ts" "$@" ;;
  *)
    echo "tether: unknown command \"$cmd\": use sidecar, injector or tetherctl" >&2
    exit 64
    ;;
esac
EOF
ENV NODE_ENV=production
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 15001:15001
EXPOSE 15001 15020 8443
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["sidecar"]
