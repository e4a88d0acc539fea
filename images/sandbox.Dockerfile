# The sandbox images sandbox-base, -python, -node and -full: a root filesystem
# plus the guest agent.  Built by scripts/build_images.py (make images
# IMAGES=NAME) for each image directory without a Dockerfile of its own, with
# the build arguments ROOTFS (sandbox-rootfs:bookworm[-NAME], which carries
# the image's packages and its environment from images/NAME/env) and IMAGE
# (NAME); the build context holds only this file and agent/.
ARG ROOTFS=sandbox-rootfs:bookworm
FROM $ROOTFS

# Before the COPY, so that these layers stay cached when the agent changes.
RUN mkdir -p /root /tmp && chmod 0700 /root && chmod 1777 /tmp
WORKDIR /root

# The guest agent (standard library only), root's and read-only for all
# others; the container's root filesystem is read-only at run time, so the
# bytecode is compiled here, once.
COPY agent/ /usr/lib/python3/dist-packages/agent/
RUN chown -R root:root /usr/lib/python3/dist-packages/agent \
    && chmod -R u=rwX,go=rX /usr/lib/python3/dist-packages/agent \
    && python3 -m compileall -q /usr/lib/python3/dist-packages/agent

# -I (isolated): the working directory /root, which user code can write, is not
# put on sys.path, so nothing there can shadow the agent's modules.
ENTRYPOINT ["python3", "-I", "-m", "agent"]

# Last, so that a new version relabels without rebuilding the layers above.
ARG IMAGE=base
ARG SANDBOXD_VERSION=unknown
ARG AGENT_PROTOCOL=unknown
ARG AGENT_SHA256=unknown
ARG ROOTFS_RECIPE=unknown
LABEL sandboxd.image=$IMAGE \
      org.opencontainers.image.title=sandbox-$IMAGE \
      org.opencontainers.image.version=$SANDBOXD_VERSION \
      sandboxd.agent.version=$SANDBOXD_VERSION \
      sandboxd.agent.protocol=$AGENT_PROTOCOL \
      sandboxd.agent.sha256=$AGENT_SHA256 \
      sandboxd.rootfs-recipe=$ROOTFS_RECIPE
