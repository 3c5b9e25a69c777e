# syntax=docker/dockerfile:1
# The Rowcast controller image. Node ≥ 24 runs the TypeScript in src/ directly
# (type stripping): there is no build step, only the production dependencies.
#
#   docker build -t <registry>/rowcast:0.1.0 .
#
# Pinned by version tag; pin by digest too (node:24.21.0-bookworm-slim@sha256:...)
# where your registry policy asks for it.
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

# Production dependencies only, from the lock file. No install scripts run:
# test/chart-image.test.ts lists the production ones and why each is not
# needed (protobufjs's postinstall only prints a version-scheme warning).
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE}
# Node is all that runs: npm, npx, corepack and yarn leave the image.
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
      /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
ENV NODE_ENV=production
WORKDIR /app
# Owned by root and read-only to the process: it cannot change its own code.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY crds ./crds
COPY src ./src
# 65532: the conventional "nonroot" uid/gid (as in distroless); the chart runs
# the pod with runAsNonRoot and this uid.
USER 65532:65532
# Exec form: no shell between the container runtime and node, so SIGTERM
# reaches the controller, which lets in-flight syncs finish.
ENTRYPOINT ["node", "src/main.ts"]
CMD ["controller"]
