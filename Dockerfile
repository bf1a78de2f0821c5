# MarrowMap: one image for the listener, the workers and flower (the command picks the role).
#   docker build -t marrowmap .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MARROWMAP_CONFIG=/etc/marrowmap/marrowmap.toml \
    MARROWMAP_SPOOL_DIR=/var/lib/marrowmap/spool

WORKDIR /opt/marrowmap

# Dependencies first (cached layer), then the code.
COPY pyproject.toml README.md ./
COPY marrowmap ./marrowmap
COPY service ./service
COPY workers ./workers
RUN pip install ".[service,worker,web]"

# The default configuration; docker-compose mounts ./config over it read-only.
COPY config/marrowmap.toml /etc/marrowmap/marrowmap.toml

RUN useradd --system --uid 10001 --home-dir /var/lib/marrowmap marrowmap \
    && mkdir -p /var/lib/marrowmap/spool \
    && chown -R marrowmap:marrowmap /var/lib/marrowmap
USER marrowmap
WORKDIR /var/lib/marrowmap
VOLUME ["/var/lib/marrowmap/spool"]

# DICOM listener port (MARROWMAP_PORT default); metrics of listener and worker; web page; flower uses 5555.
EXPOSE 11112 9110 9111 8110 5555

CMD ["marrowmap", "--help"]
