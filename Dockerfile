# linesync server image: `docker build -t linesync .` then see docs/DEPLOY.md
# ("Containers"). The image runs `linesync-server` as an unprivileged user with its
# data in /data; with LINESYNC_DB and LINESYNC_CHUNKS set it uses PostgreSQL and S3
# instead (compose.yaml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --home-dir /data --create-home --uid 10001 linesync
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER linesync
ENV LINESYNC_DATA=/data LINESYNC_HOST=0.0.0.0 LINESYNC_PORT=8440
VOLUME ["/data"]
EXPOSE 8440
HEALTHCHECK --interval=30s --timeout=5s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8440/healthz', timeout=4)" || exit 1
ENTRYPOINT ["linesync-server"]
