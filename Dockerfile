# syntax=docker/dockerfile:1

# For reproducible releases pin both images by digest (node:24-bookworm-slim@sha256:...);
# the tags are left unpinned here so the example keeps receiving Node 24 security fixes.

# ---- build: compile TypeScript to dist/ (needs the dev dependencies, e.g. typescript) ----
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: plain `npm ci` would run `prepare` (tsc) before src/ is copied. Installing
# first and compiling in a separate step also keeps this layer cached across source-only changes.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only, built in parallel with the compile ----
FROM node:24-bookworm-slim AS deps
WORKDIR /src
COPY package.json package-lock.json ./
# No production dependency needs an install script, and skipping them means `prepare`
# (which needs the absent typescript) cannot run.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime ----
# node:24-bookworm-slim rather than distroless nodejs24: the entrypoint relies on `node` being on
# PATH, the glibc matches the build stages exactly, and a shell is available for `kubectl debug`
# style troubleshooting. npm and corepack are removed below, so the attack surface is close to
# distroless while the image stays debuggable.
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
# The young generation at Node 20's size (16 MiB semi-spaces). Node 22+ sizes it from the memory
# it sees, up to 64 MiB semi-spaces on a large host without a container limit, which doubled the
# sidecar's RSS under load (about 220 MiB instead of 110-140) for no throughput we could measure
# (`npm run bench` reads this line for its @node24 targets). The old generation already follows a
# container's memory limit (Node reads the cgroup's). Override with your own NODE_OPTIONS.
ENV NODE_OPTIONS="--max-semi-space-size=16"
# A dedicated numeric UID/GID rather than the image's `node` (1000): 1000 commonly collides with
# host users, and a numeric USER lets Kubernetes verify runAsNonRoot without an explicit runAsUser.
RUN groupadd --system --gid 10001 token-injector \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin token-injector \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
      /usr/local/bin/yarn /usr/local/bin/yarnpkg /usr/local/bin/pnpm /usr/local/bin/pnpx \
 && mkdir -p /etc/token-injector
WORKDIR /app
# Files stay owned by root: the process can read its code but never rewrite it.
COPY package.json ./
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# The example is shipped for reference only; the real config is mounted at
# /etc/token-injector/config.yaml (it references secrets that only exist at deploy time).
COPY config.example.yaml ./
USER 10001:10001
# 8080: proxy (reverse and forward/HTTP_PROXY); 9090: admin (/healthz /readyz /metrics).
EXPOSE 8080 9090
# The process runs as PID 1 without an init, so the kernel's default SIGTERM action does not
# apply; token-injector installs its own SIGTERM handler to drain in-flight requests.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["run", "--config", "/etc/token-injector/config.yaml"]
