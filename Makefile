# The two quick-start commands (see README): `make demo` and `make test`.
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: setup setup-test demo test typecheck unit e2e bench bench-mirror

setup:
	@bash scripts/setup.sh >/dev/null

setup-test:
	@bash scripts/setup.sh --system >/dev/null

## Sets up, then runs the offline demo (embedded upstream, generated image).
demo: setup
	@$(ENV) node packages/cli/src/main.ts demo

## Sets up (Node 24, pnpm, docker-registry, containerd, skopeo), type-checks, runs every test.
test: setup-test
	@$(ENV) pnpm run typecheck
	@$(ENV) pnpm run test

unit: setup
	@$(ENV) pnpm run test:unit

e2e: setup-test
	@$(ENV) pnpm run test:e2e

bench-mirror: setup-test
	@$(ENV) pnpm run bench:mirror
