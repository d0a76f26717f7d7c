# Sourced by setup.sh and image.sh: the Debian mirror this machine's apt already uses, read from its
# sources, so that the guest and the extra suites come from wherever the machine's packages do.
debian_mirror() {
    local uri
    uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v -- '-security' \
        | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' \
        | awk '{print $1}' | head -1)
    if [[ -z $uri ]]; then
        echo "powercut: no Debian mirror found in apt's sources (/etc/apt/sources.list*)" >&2
        return 1
    fi
    echo "$uri"
}
