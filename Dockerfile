FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service service
COPY mappings mappings
COPY store store
COPY registry registry
COPY workers workers
COPY treatment_lines treatment_lines
COPY narrative narrative
COPY summaries summaries
COPY localfhir localfhir
RUN pip install --no-cache-dir . && useradd --system gateway && mkdir /data && chown gateway /data
# The embedded SQLite default lives here when GATEWAY_DATABASE_URL is not set (docker-compose sets PostgreSQL).
ENV GATEWAY_DATA_DIR=/data
USER gateway
EXPOSE 8080
CMD ["gunicorn", "--workers", "2", "--threads", "4", "--bind", "0.0.0.0:8080", "service.wsgi:app"]
