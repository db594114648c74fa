# eventflow with its examples: the image docker-compose.yml runs.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventflow ./eventflow
RUN pip install --no-cache-dir .
COPY examples ./examples
ENV TMPDIR=/data
ENTRYPOINT ["eventflow"]
