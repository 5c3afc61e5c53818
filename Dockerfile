# syntax=docker/dockerfile:1
# One image for both roles: `payhooks serve` (the default) and `payhooks worker`.

FROM python:3.11.10-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
WORKDIR /src
# uv at the version and hashes pinned in requirements-uv.txt, as scripts/setup installs it.
COPY requirements-uv.txt ./
RUN python -m venv /opt/uv \
    && /opt/uv/bin/pip install --require-hashes --no-deps -r requirements-uv.txt
COPY pyproject.toml uv.lock README.md ./
COPY payhooks ./payhooks
COPY service ./service
COPY workers ./workers
# Exactly what uv.lock holds (hashes checked; refused if the lock no longer matches
# pyproject.toml), the runtime only, payhooks itself as a built wheel (setuptools locked).
RUN UV_PROJECT_ENVIRONMENT=/opt/payhooks /opt/uv/bin/uv sync --locked --no-default-groups --no-editable --python /usr/local/bin/python3

# rq-dashboard for ops (docker build --target dashboard), from the same lock.
FROM build AS dashboard-build
RUN UV_PROJECT_ENVIRONMENT=/opt/dashboard /opt/uv/bin/uv sync --locked --no-default-groups --no-install-project --extra dashboard --python /usr/local/bin/python3

FROM python:3.11.10-slim-bookworm AS dashboard
RUN groupadd --system --gid 10001 payhooks \
    && useradd --system --uid 10001 --gid payhooks --home-dir /nonexistent --shell /usr/sbin/nologin payhooks
COPY --from=dashboard-build /opt/dashboard /opt/dashboard
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
