# syntax=docker/dockerfile:1
# The peerpull image: `peerpull` is the entrypoint (`docker run IMAGE daemon --help`); one image
# for the daemon, the seed and `configure` (Kubernetes: deploy/kubernetes).
#
# The packages run their TypeScript sources directly (Node 24 strips the types), and Node
# refuses to do that under node_modules/. `pnpm deploy` would copy the workspace packages
# there, so the image keeps the workspace layout (packages/*/src) and installs the production
# dependencies of @peerpull/cli from the lockfile. test/e2e/deploy-image.test.ts runs these
# steps (the COPY lines and the pnpm command of the build stage) and the result.
ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
ENV COREPACK_ENABLE_DOWNLOAD_PROMPT=0
RUN corepack enable
WORKDIR /app
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml ./
COPY packages/common/package.json packages/common/
COPY packages/daemon/package.json packages/daemon/
COPY packages/seed/package.json packages/seed/
COPY packages/demo/package.json packages/demo/
COPY packages/cli/package.json packages/cli/
COPY test/package.json test/
RUN pnpm install --prod --frozen-lockfile --filter "@peerpull/cli..." --config.confirmModulesPurge=false
COPY packages/common/src packages/common/src
COPY packages/daemon/src packages/daemon/src
COPY packages/seed/src packages/seed/src
COPY packages/demo/src packages/demo/src
COPY packages/cli/src packages/cli/src
COPY deploy/bin/peerpull deploy/bin/peerpull

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
COPY --from=build /app /app
RUN ln -s /app/deploy/bin/peerpull /usr/local/bin/peerpull
# The seed and `peerpull --help` need no privileges. The daemon writes the host's
# containerd certs.d and its hostPath cache: its DaemonSet runs it as root, with no capabilities.
USER node
ENTRYPOINT ["peerpull"]
CMD ["--help"]
