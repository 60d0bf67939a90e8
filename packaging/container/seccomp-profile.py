#!/usr/bin/env python3
"""Prints the seccomp profile the tcpstatesd container needs under podman: podman's default
profile with bpf() also allowed to a container holding CAP_BPF, and perf_event_open() to one
holding CAP_PERFMON.

Usage: seccomp-profile.py [DEFAULT_PROFILE] > tcpstatesd-seccomp.json
       DEFAULT_PROFILE: the runtime's default, /usr/share/containers/seccomp.json if not given

Podman's default profile (containers-common; Debian 12's podman 4.3) allows both system calls
only to a container holding CAP_SYS_ADMIN and refuses them with EPERM otherwise, so a container
holding just CAP_BPF + CAP_PERFMON cannot load the program. Docker's and containerd's default
profiles have allowed them with CAP_BPF and CAP_PERFMON since 2022. This adds the same to
podman's: every rule that names bpf or perf_event_open is split so that those two have rules
of their own; where the rule allows the call to CAP_SYS_ADMIN, a rule allowing it to the
call's own capability is added, and where it refuses the call unless CAP_SYS_ADMIN, holding
the own capability also exempts. Every other rule is the default's, unchanged.
"""
import copy
import json
import sys

OWN_CAPABILITY = {"bpf": "CAP_BPF", "perf_event_open": "CAP_PERFMON"}
ADMIN = "CAP_SYS_ADMIN"


def caps(rule, key):
    return (rule.get(key) or {}).get("caps") or []


def widened(profile, source):
    rules, allowed = [], set()
    for rule in profile["syscalls"]:
        others = [name for name in rule["names"] if name not in OWN_CAPABILITY]
        if others:
            rules.append(dict(rule, names=others))
        for name in rule["names"]:
            if name not in OWN_CAPABILITY:
                continue
            own = dict(copy.deepcopy(rule), names=[name])
            rules.append(own)
            if rule["action"] == "SCMP_ACT_ALLOW" and ADMIN in caps(rule, "includes"):
                also = copy.deepcopy(own)
                also["includes"]["caps"] = [OWN_CAPABILITY[name]]
                rules.append(also)
                allowed.add(name)
            elif ADMIN in caps(rule, "excludes"):
                own["excludes"]["caps"].append(OWN_CAPABILITY[name])
    missing = sorted(set(OWN_CAPABILITY) - allowed)
    if missing:
        sys.exit(f"{source}: no rule allows {' and '.join(missing)} to {ADMIN}, so this is not "
                 "the layout of podman's default profile this script widens; check whether the "
                 "profile already allows them with CAP_BPF / CAP_PERFMON (then use it as it is)")
    return dict(profile, syscalls=rules)


def main():
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    source = sys.argv[1] if len(sys.argv) == 2 else "/usr/share/containers/seccomp.json"
    try:
        with open(source) as f:
            profile = json.load(f)
    except (OSError, ValueError) as error:
        sys.exit(f"{source}: {error} (the runtime's default seccomp profile: on Debian, "
                 "package golang-github-containers-common)")
    json.dump(widened(profile, source), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
