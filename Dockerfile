# presence-controller: a small image for the sidecar. Build: docker build -t presence-controller .
# Stage 1 builds a virtualenv from the pinned runtime versions; stage 2 copies only that venv
# onto the same slim base: no compilers, no pip cache, no build tools in the final image.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY controller ./controller
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --constraint constraints.txt . \
    && /opt/venv/bin/python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="presence-controller" \
      org.opencontainers.image.description="Keeps a WhatsApp bot's presence honest from its consumer's health" \
      org.opencontainers.image.source="https://github.com/example/presence-controller"
# Bytecode is compiled at build time, so nothing is written at run time: the root filesystem
# can be read-only. Logs go to stderr, unbuffered.
# Fixed glibc mmap/trim thresholds: large transient buffers (metrics bodies, big annotations)
# go back to the OS at once instead of ratcheting RSS up (bench/NOTES.md, "Soak").
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=131072 \
    MALLOC_TRIM_THRESHOLD_=131072
COPY --from=build /opt/venv /opt/venv
# A fixed, non-root UID/GID that no base image user owns (matches runAsUser in k8s/).
USER 10001:10001
EXPOSE 8090
ENTRYPOINT ["presence-controller"]
CMD ["run"]
