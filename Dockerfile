# syntax=docker/dockerfile:1
# campaign-bridge production image: multi-stage, non-root, health-checked on /-/ready.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m pip install --upgrade pip build
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    CAMPAIGN_BRIDGE_DATA_DIR=/var/lib/campaign-bridge \
    CAMPAIGN_BRIDGE_SERVER__HOST=0.0.0.0 \
    CAMPAIGN_BRIDGE_SERVER__PORT=8080 \
    CAMPAIGN_BRIDGE_LOG_FORMAT=json
COPY --from=build /dist/*.whl /tmp/
RUN python -m pip install /tmp/*.whl && rm /tmp/*.whl \
 && groupadd --system --gid 10001 bridge \
 && useradd --system --uid 10001 --gid bridge --home-dir /var/lib/campaign-bridge --create-home bridge
USER bridge
WORKDIR /var/lib/campaign-bridge
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/-/ready', timeout=4).status == 200 else 1)"
ENTRYPOINT ["campaign-bridge"]
CMD ["serve", "--schedule"]
