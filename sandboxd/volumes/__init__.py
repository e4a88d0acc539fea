"""
Volumes: named, size-capped disks that outlive sandboxes, mounted in them
at create (docs/lifecycle.md).
"""
