# shellcheck shell=bash
# Sourced: a minimal Debian root (debootstrap --variant=minbase) of this host's own release,
# from the mirror apt is configured with (CI machines reach only that mirror). The one
# definition for the image build (packaging/container/build-image.sh) and the tests' cached
# roots (tests/support/container_root.sh). The root's release is the host's because the
# package it receives is built on the host, against the host's libraries.

debian_codename=$(. /etc/os-release && echo "$VERSION_CODENAME")

# The mirror apt is configured with for this release's main component.
debian_mirror() {
    # shellcheck disable=SC2016 # apt's own $(FIELD) syntax
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' |
        awk -v suite="$debian_codename" '$2 == suite && $3 == "main" {print $1; exit}'
}

# Debootstraps TARGET (a new directory) with the extra PACKAGES (comma separated, may be
# empty), debootstrap's output in LOG. Says what it does on stderr; on failure, also why,
# and returns 1.
debian_root() {  # TARGET LOG [PACKAGES]
    local target=$1 log=$2 packages=${3:-} mirror
    mirror=$(debian_mirror)
    if [[ -z $mirror ]]; then
        echo "no $debian_codename main source in apt's configuration (apt-get indextargets): add the release's mirror to /etc/apt/sources.list and run apt-get update" >&2
        return 1
    fi
    echo "debootstrap --variant=minbase ${packages:+--include=$packages }$debian_codename $target $mirror" >&2
    debootstrap --variant=minbase ${packages:+"--include=$packages"} "$debian_codename" \
        "$target" "$mirror" >"$log" 2>&1 || {
        echo "debootstrap failed, see $log" >&2
        return 1
    }
}
