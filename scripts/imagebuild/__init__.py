"""
Helpers of scripts/build_images.py: running logged steps with progress
(steps), the Docker CLI (docker) and the Debian mirror of the apt sources
(mirror).  Standard library only.
"""
