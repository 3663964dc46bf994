# One image for ingest, worker, beat, flower and migrations (the command differs).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md beat_schedule.py ./
COPY cli ./cli
COPY ingest ./ingest
COPY worker ./worker
COPY tasks ./tasks
COPY mappers ./mappers
COPY clients ./clients
COPY sandbox ./sandbox
# The image carries the SQL Server driver for Info-Link (pymssql: pip alone, no ODBC driver).
# /data belongs to the service user: Beat keeps its schedule file there, and a named volume mounted
# on /data starts with this ownership
RUN pip install --no-cache-dir ".[mssql]" && useradd --system --uid 10001 stsync \
    && mkdir -p /data && chown stsync /data
USER stsync
ENTRYPOINT ["stsync"]
