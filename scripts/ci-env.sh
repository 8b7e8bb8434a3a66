#!/usr/bin/env bash
# Default addresses and paths shared by crius' integration tests, CI and the
# scripts in this directory. Source it (`. scripts/ci-env.sh`); any variable
# already set in the environment wins, so a developer can point tests at other
# ports without editing files. Sources nothing and has no side effects besides
# the exports.

# Root of everything the test scripts create (registry storage, logs, images).
: "${CRIUS_TEST_DIR:=/var/lib/crius-test}"
# Plain HTTP registry (no auth), host:port.
: "${CRIUS_TEST_REGISTRY:=127.0.0.1:5000}"
# HTTP registry with htpasswd basic auth, host:port.
: "${CRIUS_TEST_AUTH_REGISTRY:=127.0.0.1:5001}"
: "${CRIUS_TEST_AUTH_USER:=crius}"
: "${CRIUS_TEST_AUTH_PASSWORD:=crius-pass}"
# Written by build-test-images.py: reference -> manifest/config/layer digests.
: "${CRIUS_TEST_IMAGES_MANIFEST:=$CRIUS_TEST_DIR/images/manifest.json}"
# `docker save` and OCI-layout tarballs of the busybox image.
: "${CRIUS_TEST_DOCKER_ARCHIVE:=$CRIUS_TEST_DIR/images/busybox-docker-save.tar}"
: "${CRIUS_TEST_OCI_ARCHIVE:=$CRIUS_TEST_DIR/images/busybox-oci-layout.tar}"
# Host binaries the tests drive for real.
: "${CRIUS_TEST_CNI_BIN_DIR:=/usr/lib/cni}"
: "${CRIUS_TEST_RUNC:=/usr/sbin/runc}"

export CRIUS_TEST_DIR CRIUS_TEST_REGISTRY CRIUS_TEST_AUTH_REGISTRY \
    CRIUS_TEST_AUTH_USER CRIUS_TEST_AUTH_PASSWORD CRIUS_TEST_IMAGES_MANIFEST \
    CRIUS_TEST_DOCKER_ARCHIVE CRIUS_TEST_OCI_ARCHIVE CRIUS_TEST_CNI_BIN_DIR \
    CRIUS_TEST_RUNC
