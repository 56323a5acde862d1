# syntax=docker/dockerfile:1
# api-proxy container image.
#   docker build -t api-proxy .        (or: buildah bud -t api-proxy .; skaffold build)
# Two stages on the official Node 24 image: `build` compiles TypeScript with the full dependency
# set; the runtime stage has production dependencies, dist/ and a default config only.

FROM docker.io/library/node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the only install scripts are the devDependency `node` (it would download a second
# Node binary; the image's own node is used instead) and @swc/core's (tests only).
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && rm -f node_modules/.bin/node
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
# The default config the image serves with: examples/config.yaml as JSON.
COPY examples/config.yaml ./examples/config.yaml
RUN mkdir -p /out/config \
 && node --input-type=module -e "import { readFileSync, writeFileSync } from 'node:fs'; import { parse } from 'yaml'; \
      writeFileSync('/out/config/config.json', JSON.stringify(parse(readFileSync('examples/config.yaml', 'utf8')), null, 2) + '\n');"

FROM docker.io/library/node:24-bookworm-slim
ENV NODE_ENV=production \
    PORT=5000 \
    CONFIG_PATH=/app/config/config.json
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf /root/.npm /tmp/*
COPY --from=build /app/dist ./dist
COPY --from=build /out/config/config.json ./config/config.json
# A fixed numeric non-root user (matches the Helm chart's runAsUser/runAsGroup 10001).
RUN groupadd --system --gid 10001 apiproxy \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin apiproxy
USER 10001:10001
EXPOSE 5000
# node is PID 1 and receives SIGTERM itself (graceful drain); no shell, no npm in between.
# --max-semi-space-size=8 (MiB): V8 sizes the young generation from the heap limit, 128 MiB of RSS
# on a large host, which alone cost 64 KiB per open stream at 2,000 long streams. With 8 the
# gateway's RSS per open stream was 42-52 KiB in that profile (16: 51-71), its CPU per stream and
# its plain throughput the same (docs/performance.md, "Bytes a stream keeps"). The bench starts its
# gateway with the flags of this line.
ENTRYPOINT []
CMD ["node", "--max-semi-space-size=8", "dist/main.js"]
