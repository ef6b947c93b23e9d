# One of the example modules of examples/media-classifiers, as a 2018-style module image: the
# script speaks only the file contract (/ion/in -> /ion/out, no Ion code) and runs from its
# module directory (/app), with HANDLER_BASE_DIR unset meaning /ion. Built once per module:
#   --build-arg MODULE=ingest|thumbnailer|digit-classifier|stats-reporter|html-report
# (tools/docker/images.py); numpy, pillow and scikit-learn are shared layers of all five.
# Build context: staged by tools/docker/images.py (deployment/docker/README.md).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1
COPY requirements.txt /build/requirements.txt
COPY wheels/ /build/wheels/
RUN python3 -m venv /opt/ion \
 && /opt/ion/bin/python -m pip install --quiet --find-links /build/wheels --only-binary=:all: \
      --require-hashes -r /build/requirements.txt \
 && /opt/ion/bin/python -m pip uninstall --quiet -y pip setuptools \
 && /opt/ion/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/ion/lib

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 ion \
 && useradd --uid 10001 --gid 10001 --home-dir /home/ion --create-home --shell /usr/sbin/nologin ion \
 && mkdir -p /ion && chown 10001:10001 /ion
COPY --from=build /opt/ion /opt/ion
ENV PATH=/opt/ion/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY app/ /app/
ARG SCRIPT
RUN test -n "${SCRIPT}" && test -f "/app/${SCRIPT}" \
 && printf '#!/bin/sh\ncd /app && exec python /app/%s "$@"\n' "${SCRIPT}" > /usr/local/bin/ion-module \
 && chmod 0755 /usr/local/bin/ion-module
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/ion-module"]

ARG BASE_IMAGE
ARG MODULE
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title="ion-module-${MODULE}" \
      org.opencontainers.image.description="Ion example module ${MODULE} (examples/media-classifiers)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
