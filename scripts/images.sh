#!/usr/bin/env bash
# Builds the two images (`make images`, `make base-image`). Where a Docker engine runs: `docker build` FROM the
# Dockerfiles' default (upstream) base. Elsewhere: buildah with chroot isolation (no daemon, no registry) FROM a
# Debian 12 base that mmdebstrap bootstraps here, so the same Dockerfiles build on a machine with neither.
#
#   scripts/images.sh base                      bootstrap $BASE_IMAGE (buildah only; kept once built)
#   scripts/images.sh build NAME=DOCKERFILE...  build each image, report its build time and size
#   scripts/images.sh engine                    print the engine these use (the smoke tests run images with it)
#
# Environment (the Makefile sets it): BASE_IMAGE, IMAGE_WORK (scratch folder); PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS
# and PIP_CERT override what pip here is configured with.
set -euo pipefail

BASE_PACKAGES=python3,python3-venv,ca-certificates
BASE_SUITE=bookworm

engine() {
    if command -v docker > /dev/null && docker info > /dev/null 2>&1; then echo docker; else echo buildah; fi
}

need_tools() {
    local tool missing=()
    for tool in "$@"; do command -v "$tool" > /dev/null || missing+=("$tool"); done
    if ((${#missing[@]})); then
        echo "installing ${missing[*]} (apt-get)"
        [[ $(id -u) == 0 ]] || { echo "apt-get needs root: install ${missing[*]} first" >&2; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" > "$IMAGE_WORK/apt.log" \
            || { tail -20 "$IMAGE_WORK/apt.log" >&2; exit 1; }
    fi
}

base() {
    mkdir -p "$IMAGE_WORK"
    need_tools buildah mmdebstrap
    if buildah inspect --type image "$BASE_IMAGE" > /dev/null 2>&1; then
        echo "base image $BASE_IMAGE is there (buildah rmi $BASE_IMAGE to bootstrap it again)"
        return
    fi
    local rootfs="$IMAGE_WORK/$BASE_SUITE-rootfs.tar" started=$SECONDS container
    echo "bootstrapping $BASE_IMAGE: Debian $BASE_SUITE minbase with $BASE_PACKAGES"
    mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$rootfs"
    container=$(buildah from scratch)
    buildah add --quiet "$container" "$rootfs" / > /dev/null
    buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label org.opencontainers.image.description="Debian $BASE_SUITE minbase + $BASE_PACKAGES (mmdebstrap)" \
        "$container"
    buildah commit --quiet --rm "$container" "$BASE_IMAGE" > /dev/null
    rm -f "$rootfs"
    echo "base image $BASE_IMAGE: $(size_of buildah "$BASE_IMAGE"), bootstrapped in $((SECONDS - started)) s"
}

size_of() {
    if [[ $1 == docker ]]; then
        numfmt --to=si --suffix=B "$(docker image inspect --format '{{.Size}}' "$2")"
    else
        buildah images --noheading --format '{{.Size}}' "$2"
    fi
}

# pip inside the build reaches the package index as pip here does: the same extra indexes, wheel folders and CA
# bundle (a proxy's own CA, say), as pip's own variables (build args), with every local folder and file they name
# bind-mounted read-only into the build's RUN steps, so none of them lands in an image.
pip_setting() {
    local key=$1 line value=""
    while IFS= read -r line; do
        case $line in
            ":env:.$key="* | "global.$key="* | "install.$key="*) value=${line#*=} ;;
        esac
    done < <(python3 -m pip config list 2> /dev/null)
    value=${value#\'}
    echo "${value%\'}"
}

local_mounts() {
    local entry folder
    for entry in "$@"; do
        folder=${entry#file://}
        [[ $folder == /* ]] || continue
        # An index's pages link their files relative to the index root's parent (../../files/...).
        [[ $(basename "$folder") == simple ]] && folder=$(dirname "$folder")
        if [[ -e $folder ]]; then echo "--volume=$folder:$folder:ro"; fi
    done
}

build() {
    local tool
    tool=$(engine)
    mkdir -p "$IMAGE_WORK"
    if [[ $tool == buildah ]]; then base; fi
    local extra_index=${PIP_EXTRA_INDEX_URL-$(pip_setting extra-index-url)}
    local find_links=${PIP_FIND_LINKS-$(pip_setting find-links)}
    local cert=${PIP_CERT-$(pip_setting cert)}
    local -a args mounts
    # shellcheck disable=SC2086  # the settings are space-separated lists, as pip reads them
    mapfile -t mounts < <(local_mounts $extra_index $find_links $cert)
    args=(--build-arg "PIP_EXTRA_INDEX_URL=$extra_index" --build-arg "PIP_FIND_LINKS=$find_links"
        --build-arg "PIP_CERT=$cert")
    local spec name dockerfile started
    for spec in "$@"; do
        name=${spec%%=*} dockerfile=${spec#*=} started=$SECONDS
        echo "== $name ($dockerfile) with $tool"
        if [[ $tool == docker ]]; then
            # The engine cannot bind-mount host folders into a build: the public index it is.
            docker build --tag "$name" --file "$dockerfile" .
        else
            echo "   base $BASE_IMAGE; pip extra index: ${extra_index:-none}; find-links: ${find_links:-none};" \
                "CA bundle: ${cert:-none}"
            buildah bud --isolation chroot --layers --tag "$name" --file "$dockerfile" \
                --build-arg "BASE=$BASE_IMAGE" "${args[@]}" "${mounts[@]}" .
        fi
        echo "== $name: built in $((SECONDS - started)) s, $(size_of "$tool" "$name")"
    done
}

case ${1:-} in
    base) : "${BASE_IMAGE:?}" "${IMAGE_WORK:?}"; base ;;
    build) : "${BASE_IMAGE:?}" "${IMAGE_WORK:?}"; shift; build "$@" ;;
    engine) engine ;;
    *) echo "usage: $0 base | build NAME=DOCKERFILE... | engine" >&2; exit 2 ;;
esac
