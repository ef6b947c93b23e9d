# Ion handler: the job side of Ion (`ion-handler prepare | commit | run | job ...`), run twice in
# every job pod, so it carries only ion-core (with its Azure backends) and ion-handler: no gRPC,
# no Kubernetes client. Build context: staged by tools/docker/images.py (deployment/docker/README.md).
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
 && mkdir -p /ion && chown 10001:10001 /ion
COPY --from=build /opt/ion /opt/ion
# No pydantic plugins are installed: not looking for them (an entry-point scan of every
# installed distribution) is part of the handler's cold start.
ENV PATH=/opt/ion/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PYDANTIC_DISABLE_PLUGINS=__all__
WORKDIR /ion
USER 10001:10001
ENTRYPOINT ["ion-handler"]
CMD ["--help"]

ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title="ion-handler" \
      org.opencontainers.image.description="Ion handler: prepares a job's /ion directory and commits a module's outputs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
