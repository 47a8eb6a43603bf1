# syntax=docker/dockerfile:1
# The Sluice operator image: the release binary on a distroless base, run as a non-root user
# (uid 65532), with nothing else in the image.
#
#   docker build -t ghcr.io/sluice-dev/sluice-operator:0.1.0 .

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The workspace (.dockerignore keeps only its manifests and crates). The cache mounts keep the
# crates.io downloads and compiled dependencies between builds.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-operator \
    && cp target/release/sluice-operator /usr/local/bin/sluice-operator

# glibc and CA certificates only: no shell, no package manager. `nonroot` is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/sluice-operator /usr/local/bin/sluice-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
CMD ["run"]
