# Usher's verbs. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

root := justfile_directory()

# Build caches live outside the clone; override with `just cache=DIR …`.
cache := env("USHER_CACHE", home_directory() / ".cache/usher")

# The guest workspace's own target dir (never the host's, so the two builds
# do not fight over one cargo lock).
components_target := cache / "components-target"

# Paths in the guest binaries do not depend on where the repo is cloned:
# cargo names the workspace's own sources relative to its root, and the
# registry's under ~/.cargo are remapped. The flags do not name the clone
# path, so a new clone reuses the cached dependencies (a path in RUSTFLAGS
# is part of every crate's fingerprint and rebuilt them all).
wasm_rustflags := "--remap-path-prefix=" + home_directory() / ".cargo" + "=/cargo"

# The host workspace's target dir, outside the clone.
export CARGO_TARGET_DIR := cache / "target"

usher := cache / "target/release/usher"

default:
    @just --list

# Run the demo: build everything, pin the registry, run a whole presale in-process (campaigns, markets and code pools; 2000 fans check eligibility and register; replication; the draw of every market through the selection workflow; codes assigned and marked; the analytics records; a notification round) and verify it.
demo: build-components pin
    {{usher}} demo presale --fans 2000 --markets 3

# The replication demo: replicate 2000 fan entries through every worker in-process and verify the Entry Service holds exactly demand-table's entries.
demo-replication: build-components pin
    {{usher}} demo replication --entries 2000

# Build the `usher` binary (release).
build:
    cargo build --release -p usher-cli

# Store every built component (precompiled) and pin workers/*.yaml to their digests.
pin: build
    {{usher}} pin --from build/components --sources components

# The `usher` binary as an AWS Lambda `bootstrap` zip for the provided.al2023 runtime: build/lambda/usher-lambda.zip holds bootstrap (the release build), workers/ and workflows/ (USHER_REGISTRY=/var/task/workers). The binary is built for this machine's target (no cross toolchain is fetched): on x86_64 set the functions' architecture to x86_64 (terraform's var.lambda_architecture).
package-lambda: build
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    mkdir -p build/lambda
    python3 - "{{usher}}" build/lambda/usher-lambda.zip <<'PY'
    import os, sys, zipfile
    binary, out = sys.argv[1], sys.argv[2]
    # Fixed timestamps and order: the same inputs make the same zip.
    stamp = (1980, 1, 1, 0, 0, 0)
    def add(z, path, arcname, mode):
        info = zipfile.ZipInfo(arcname, stamp)
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as f:
            z.writestr(info, f.read())
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w") as z:
        add(z, binary, "bootstrap", 0o755)
        for folder in ("workers", "workflows"):
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames.sort()
                for name in sorted(filenames):
                    path = os.path.join(dirpath, name)
                    add(z, path, path, 0o644)
    os.replace(tmp, out)
    PY
    echo "build/lambda/usher-lambda.zip: bootstrap for $(uname -m) ($(rustc -vV | sed -n 's/^host: //p')), $(du -h build/lambda/usher-lambda.zip | cut -f1)"

# Generate terraform/ from the registry and workflows/ (`usher terraform`); `just terraform-check` fails on drift.
terraform: build
    {{usher}} terraform --out terraform

# Fail when terraform/ differs from what the registry generates.
terraform-check: build
    {{usher}} terraform --out terraform --check

# Run every test: component unit tests, the test host on every component, host, registry and backend tests; the AWS, Kafka and Redis backends against real servers on 127.0.0.1 (scripts/servers installs and starts them, and stops them by PID afterwards, also on failure); terraform/ parsed by python-hcl2 and checked by checkov, the operator page in headless chromium (scripts/pytools installs them).
test: build-components pin test-components
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    servers="{{cache}}/servers/run-$$"
    trap 'bash scripts/servers stop "$servers"' EXIT
    bash scripts/servers start "$servers"
    source "$servers/servers.env"
    # python-hcl2 and checkov (the Terraform tests), playwright and Debian's
    # chromium (the operator page test): installed once into the cache.
    bash scripts/pytools install
    eval "$(bash scripts/pytools env)"
    export USHER_REQUIRE_SERVERS=1 USHER_REQUIRE_TOOLS=1
    "{{just_executable()}}" host-tests

# The host workspace's tests (the servers' addresses, when any, in the environment): cargo-nextest when installed (test binaries side by side, progress shown), else `cargo test`.
host-tests:
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    if cargo nextest --version >/dev/null 2>&1; then
        # The component host tests share one process (`cargo test`): the
        # test host compiles each component once per process, and nextest
        # would make that once per test.
        cargo nextest run --release --workspace -E 'not (package(usher-testing) and binary(components))'
        cargo test --release --workspace --test components
        cargo test --release --workspace --doc
    else
        echo "cargo-nextest not installed: running the tests with cargo test" >&2
        cargo test --release --workspace --no-fail-fast
    fi

# Run the host tests without the real servers (the tests that need one are skipped, saying so).
test-embedded: build-components pin
    "{{just_executable()}}" host-tests

# Formatting and clippy on both workspaces.
lint: lint-components
    cargo fmt --all -- --check
    cargo clippy --release --workspace --all-targets -- -D warnings

# What CI runs (.ci/run).
ci: test lint reproducible

# Check that the components build to the same bytes from another clone path and that every registry pin matches its build (scripts/check-reproducible).
reproducible: build-components
    bash scripts/check-reproducible

# Invocation benchmarks (figures go to BENCHMARKS.md).
bench: build-components pin
    cargo bench -p usher-testing --bench invoke

# Push a component as a new version of a worker, then promote it: `just release replication/save-entries file.wasm 0.2.0`.
release worker file version: build
    {{usher}} push {{worker}} {{file}} --version {{version}}
    {{usher}} promote {{worker}} {{version}}

# Build every component (release, wasm32-wasip2) into build/components/<domain>/<worker>.wasm.
build-components:
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    CARGO_TARGET_DIR="{{components_target}}" RUSTFLAGS="{{wasm_rustflags}}" \
        cargo build --manifest-path components/Cargo.toml --workspace --release --target wasm32-wasip2
    rm -rf build/components
    for manifest in components/*/*/Cargo.toml; do
        dir="$(dirname "$manifest")"
        worker="$(basename "$dir")"
        domain="$(basename "$(dirname "$dir")")"
        artifact="{{components_target}}/wasm32-wasip2/release/${worker//-/_}.wasm"
        if [[ ! -f "$artifact" ]]; then
            echo "error: no $artifact for $dir (the crate must be named after its folder)" >&2
            exit 1
        fi
        mkdir -p "build/components/$domain"
        cp "$artifact" "build/components/$domain/$worker.wasm"
    done
    find build/components -name '*.wasm' -printf '%-50p %8s bytes\n' | sort

# Create a worker: `just new-worker DOMAIN NAME [WORLD]` (WORLD: batch (default), stream, invoke, scheduled, http) makes its crate components/DOMAIN/NAME with a native unit test, its entry in workers/DOMAIN.yaml (and the queue or table its trigger names in workers/resources.yaml) and its host test tests/tests/component_DOMAIN_NAME.rs; then run `just build-components pin test-components`.
new-worker domain name world="batch":
    bash "{{root}}/scripts/new-worker" "{{domain}}" "{{name}}" "{{world}}"

# Run the native unit tests of the sdk and of every component.
test-components:
    cd "{{root}}/components" && CARGO_TARGET_DIR="{{components_target}}" cargo test --workspace

# Check formatting and run clippy (native and wasm32-wasip2) on the components and the sdk (a member of the components workspace).
lint-components:
    cd "{{root}}/components" && cargo fmt --all -- --check
    cd "{{root}}/components" && CARGO_TARGET_DIR="{{components_target}}" cargo clippy --workspace --all-targets -- -D warnings
    cd "{{root}}/components" && CARGO_TARGET_DIR="{{components_target}}" cargo clippy --workspace --all-targets --target wasm32-wasip2 -- -D warnings
