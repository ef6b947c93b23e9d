# Ion management (`ion-management serve`): the gRPC management API (mutual TLS; certificates at
# /etc/ion/tls/{tls.crt,tls.key,ca.crt}, e.g. a mounted Kubernetes TLS secret, or --insecure)
# on 9000 and the HTTP front API on 9001, whose /healthz is the health check.
# Build context: staged by tools/docker/images.py (deployment/docker/README.md).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1
COPY requirements.txt /build/requirements.txt
COPY wheels/ /build/wheels/
RUN python3 -m venv /opt/ion \
 && /opt/ion/bin/python -m pip install --quiet --find-links /build/wheels --only-binary=:all: \
      --require-hashes -r /build/requirements.txt
COPY ion/ /build/ion/
# pip and setuptools are not needed at run time; byte code is compiled against content hashes,
# so it stays valid whatever the files' times and is never rewritten by the non-root user.
RUN /opt/ion/bin/python -m pip install --quiet --no-deps /build/ion/*.whl \
 && /opt/ion/bin/python -m pip uninstall --quiet -y pip setuptools \
 && /opt/ion/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/ion/lib

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 ion \
 && useradd --uid 10001 --gid 10001 --home-dir /home/ion --create-home --shell /usr/sbin/nologin ion \
 && mkdir -p /ion && chown 10001:10001 /ion \
 && mkdir -p /var/lib/ion /etc/ion/tls && chown 10001:10001 /var/lib/ion
COPY --from=build /opt/ion /opt/ion
COPY healthcheck.py /opt/ion/bin/ion-healthcheck
ENV PATH=/opt/ion/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ION_HOME=/var/lib/ion ION_MANAGEMENT__HOST=0.0.0.0 \
    ION_MANAGEMENT__CERTFILE=/etc/ion/tls/tls.crt ION_MANAGEMENT__KEYFILE=/etc/ion/tls/tls.key \
    ION_MANAGEMENT__CACERTFILE=/etc/ion/tls/ca.crt
WORKDIR /var/lib/ion
USER 10001:10001
EXPOSE 9000 9001
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/opt/ion/bin/ion-healthcheck", "management"]
ENTRYPOINT ["ion-management"]
CMD ["serve"]

ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title="ion-management" \
      org.opencontainers.image.description="Ion management: gRPC management API over mutual TLS and the HTTP front API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
