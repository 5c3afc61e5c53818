# syntax=docker/dockerfile:1
# One image for both roles: `payhooks serve` (the default) and `payhooks worker`.

FROM python:3.11.10-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY payhooks ./payhooks
COPY service ./service
COPY workers ./workers
# Build the wheel with pinned tools in a throw-away venv, then install it with exactly the
# pinned dependencies (constraints.txt) into the venv that the final stage copies.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install setuptools==84.2.1 wheel==0.48.0 \
    && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && python -m venv /opt/payhooks \
    && /opt/payhooks/bin/pip install --constraint constraints.txt /wheels/payhooks-*.whl

# rq-dashboard for ops (docker build --target dashboard), pinned by the same constraints.
FROM python:3.11.10-slim-bookworm AS dashboard
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY constraints.txt /tmp/constraints.txt
RUN python -m venv /opt/dashboard \
    && /opt/dashboard/bin/pip install --constraint /tmp/constraints.txt rq-dashboard \
    && rm /tmp/constraints.txt \
    && groupadd --system --gid 10001 payhooks \
    && useradd --system --uid 10001 --gid payhooks --home-dir /nonexistent --shell /usr/sbin/nologin payhooks
USER 10001:10001
EXPOSE 9181
ENTRYPOINT ["/opt/dashboard/bin/rq-dashboard"]

# The service: the last stage, so a plain `docker build` gives it.
FROM python:3.11.10-slim-bookworm
ENV PATH=/opt/payhooks/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json
RUN groupadd --system --gid 10001 payhooks \
    && useradd --system --uid 10001 --gid payhooks --home-dir /nonexistent --shell /usr/sbin/nologin payhooks
COPY --from=build /opt/payhooks /opt/payhooks
USER 10001:10001
EXPOSE 8080
# The receiver's liveness; the worker role overrides it (compose: healthcheck --worker).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["payhooks", "healthcheck"]
# Both roles shut down gracefully on SIGTERM (the receiver drains, RQ warm-shuts down).
STOPSIGNAL SIGTERM
ENTRYPOINT ["payhooks"]
CMD ["serve"]
