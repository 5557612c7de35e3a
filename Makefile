# SecAI Fleet. `make test` runs every test; `make cluster-up` starts a local control plane.
SHELL := /bin/bash
# Node 24 from the npm package `node` comes first: scripts' `#!/usr/bin/env node` must not find the
# system Node.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
TSX := tsx

.PHONY: deps tools node-tools images build test test-alerts generate cluster-up cluster-down lab lab-down bench-inference node-vm-image node-vm-test

node_modules: package.json package-lock.json
	npm install --no-save --no-fund --no-audit
	@touch node_modules

# Debian packages (root).
deps:
	hack/install-deps.sh

# kube-apiserver, kubectl, etcd, etcdctl, helm, cosign from the Go module proxy, cached by version;
# the pinned Python tools (gguf, model-signing) from PyPI (hack/python-tools).
tools:
	hack/install-tools.sh
	hack/python-tools/install.sh

# The node components and image tools (hack/install-tools.sh node): kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy, containerd, runc, CNI plugins, CoreDNS, umoci, crane; cached like `tools`.
node-tools:
	hack/install-tools.sh node

# The signed images (root): secai-fleet and pause as OCI archives in dist/images/ (hack/images/build.sh).
images: node_modules tools node-tools
	hack/images/build.sh dist/images

# The operator's bundle, dist/operator.mjs (operator/build.ts); the tests and the lab build it too.
build: node_modules
	$(TSX) operator/build.ts

# The runtime and image tests (test/cluster/, test/images/) need the node components.
test: node_modules tools node-tools
	hack/run-tests.sh

# The alert rules alone: promtool checks the chart's rule file and runs test/alerts/*.promtool.yaml.
test-alerts:
	test/alerts/run-promtool.sh

# Regenerates the CRD YAML and TypeScript types from api/crd/, and the channel code from api/proto/.
generate: node_modules
	$(TSX) hack/gen/generate.ts
	cd api/proto && ../../node_modules/.bin/buf lint && ../../node_modules/.bin/buf generate -o ../gen/proto

cluster-up: node_modules tools
	$(TSX) hack/control-plane/cli.ts up

cluster-down: node_modules
	$(TSX) hack/control-plane/cli.ts down

# A whole fleet on this machine (root: network namespaces, nftables): control plane, operator, N
# nodes with agents (default 3), upstream, Prometheus. `make lab NODES=5`.
lab: node_modules tools
	$(TSX) hack/lab/lab.ts up --nodes $(or $(NODES),3)

lab-down: node_modules
	$(TSX) hack/lab/lab.ts down

# The serving path (agent API + sandboxed worker) against llama.cpp's own llama-server, same model,
# threads and context, CPU; exits non-zero below the bars (0.95x throughput, 1.1x time to first token).
bench-inference: node_modules
	$(TSX) test/bench/inference-vs-llama-server.ts 5 --assert

# The lab node disk (Debian 12, signed boot chain, node-image/), cached in ~/.cache/secai-fleet/node-vm.
node-vm-image:
	hack/node-vm/build-image.sh

# Boots that disk under QEMU (TCG) with OVMF Secure Boot and swtpm, three times, and checks the chain
# from inside the VM (test/node-vm/node-vm.test.ts; also part of `make test`).
node-vm-test: node_modules
	hack/run-tests.sh test/node-vm
