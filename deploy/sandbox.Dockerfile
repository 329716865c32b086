# syntax=docker/dockerfile:1
# The Mailchimp sandbox alone (no bridge, no database): the API under /3.0, the control API
# under /_sandbox, the state kept in /var/lib/sandbox/state.json (mount a volume to keep it).
#   docker build -f deploy/sandbox.Dockerfile -t campaign-bridge-sandbox .
#   docker run --rm -p 8089:8089 campaign-bridge-sandbox
# tests/integration/sandbox/test_sandbox_image.py runs ENTRYPOINT + CMD and the HEALTHCHECK as
# processes, and builds the image when a container engine answers.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m pip install --upgrade pip build
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY --from=build /dist/*.whl /tmp/
RUN python -m pip install /tmp/*.whl && rm /tmp/*.whl \
 && useradd --system --uid 10002 --home-dir /var/lib/sandbox --create-home sandbox
USER sandbox
WORKDIR /var/lib/sandbox
EXPOSE 8089
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8089/_sandbox/health', timeout=2).status != 200)"]
ENTRYPOINT ["campaign-bridge", "sandbox", "serve", "--host", "0.0.0.0", "--port", "8089"]
CMD ["--seed-demo", "--state-file", "/var/lib/sandbox/state.json", "--autosave", "30"]
