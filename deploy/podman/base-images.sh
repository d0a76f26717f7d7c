#!/usr/bin/env bash
# Makes the base images deploy/Dockerfile and deploy/docker-compose.yml name, locally, for machines
# that reach Debian's mirror but no image registry (needs root, podman and debootstrap):
#   debian:bookworm-slim   debootstrap --variant=minbase bookworm, imported
#   rust:1-bookworm        that, with gcc and libc6-dev from Debian, and this machine's Rust
#                          toolchain (rustc --print sysroot) in /usr/local: no toolchain server is
#                          reachable, and bookworm's rustc is older than the crate's rust-version;
#                          and this machine's CA bundle, so that cargo trusts crates.io as the
#                          machine does (through whatever TLS proxy the machine's bundle allows)
#   nats:2.9               that, with Debian's nats-server (2.9), as the entrypoint
# Images that already exist are kept. Where a registry is reachable, `docker pull` them instead.
#
#   CONTAINERS_CONF=deploy/podman/containers.conf deploy/podman/base-images.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../powercut/mirror.sh"
fail() { echo "base images: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "needs root (debootstrap)"
for tool in podman debootstrap; do
    command -v "$tool" >/dev/null || fail "$tool is missing (Debian package $tool)"
done
MIRROR="${BASE_MIRROR:-$(debian_mirror)}"
tmp="$(mktemp -d "${TMPDIR:-/var/tmp}/base-images.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if ! podman image exists debian:bookworm-slim; then
    work="$tmp"
    echo "base images: debootstrap bookworm (minbase) from $MIRROR" >&2
    debootstrap --variant=minbase bookworm "$work/root" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
    # As the official image: the package lists and caches are not kept.
    rm -rf "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/lib/apt/lists/*
    tar -C "$work/root" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
    rm -rf "$work/root"
fi

if ! podman image exists rust:1-bookworm; then
    sysroot="$(rustc --print sysroot)"
    [[ -x $sysroot/bin/cargo && -x $sysroot/bin/rustc ]] || fail "no cargo and rustc in $sysroot"
    echo "base images: rust:1-bookworm with $("$sysroot/bin/rustc" --version)" >&2
    cat > "$tmp/rust.Containerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && cp /host-ca/ca-certificates.crt /usr/local/share/ca-certificates/host.crt \
    && update-ca-certificates \
    && cp -a /toolchain/bin/cargo /toolchain/bin/rustc /usr/local/bin/ \
    && cp -a /toolchain/lib/. /usr/local/lib/ \
    && ldconfig \
    && cargo --version && rustc --version
ENV CARGO_HOME=/usr/local/cargo
DOCKERFILE
    podman build --network host -v "$sysroot:/toolchain:ro" -v /etc/ssl/certs:/host-ca:ro \
        -t rust:1-bookworm \
        -f "$tmp/rust.Containerfile" "$tmp"
fi

if ! podman image exists nats:2.9; then
    echo "base images: nats:2.9 with Debian's nats-server" >&2
    cat > "$tmp/nats.Containerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends nats-server \
    && rm -rf /var/lib/apt/lists/* \
    && nats-server --version
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/sbin/nats-server"]
DOCKERFILE
    podman build --network host -t nats:2.9 -f "$tmp/nats.Containerfile" "$tmp"
fi
for image in debian:bookworm-slim rust:1-bookworm nats:2.9; do
    echo "base images: $image $(podman image inspect --format '{{.Id}}' "$image" | cut -c1-12)"
done
