# The two quick-start commands (see README): `make demo` and `make test`.
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: setup setup-test demo test typecheck unit e2e bench bench-mirror deploy-key

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

## Creates the Kubernetes cluster key (once; never committed) that deploy/kubernetes/base turns into a Secret.
deploy-key:
	@f=deploy/kubernetes/base/cluster-key; if [ -s $$f ]; then echo "$$f exists (kept)"; else (umask 077; head -c 32 /dev/urandom | base64 > $$f) && echo "wrote $$f"; fi
