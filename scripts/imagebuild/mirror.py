"""
The Debian mirror this machine's apt uses, read from its sources (never
written into the project): the first URI of an enabled deb822 stanza in
/etc/apt/sources.list.d/*.sources whose Suites list the suite, else the
first matching ``deb`` line of /etc/apt/sources.list.
"""

import glob
import os
import re


class NoMirror(Exception):
    pass


def from_deb822(text, suite):
    """
    The first URI of an enabled C{deb} stanza of C{text} listing C{suite}.
    """
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.split()
        if fields.get("enabled", ["yes"])[0].lower() == "no":
            continue
        if "deb" in fields.get("types", []) and suite in fields.get("suites", []):
            if fields.get("uris"):
                return fields["uris"][0]
    return None


def from_one_line(text, suite):
    """
    The URI of the first C{deb [options] URI SUITE COMPONENTS...} line of
    C{text}.
    """
    pattern = re.compile(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+" + re.escape(suite) + r"\s")
    for line in text.splitlines():
        match = pattern.match(line.strip() + " ")
        if match:
            return match.group(1)
    return None


def debian_mirror(suite, root="/"):
    for path in sorted(glob.glob(os.path.join(root, "etc/apt/sources.list.d/*.sources"))):
        with open(path) as f:
            uri = from_deb822(f.read(), suite)
        if uri:
            return uri
    path = os.path.join(root, "etc/apt/sources.list")
    if os.path.exists(path):
        with open(path) as f:
            uri = from_one_line(f.read(), suite)
        if uri:
            return uri
    raise NoMirror(f"no Debian mirror for {suite} in the apt sources under {root}")
