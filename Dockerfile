# The pipeline image: the code location, the `twotower` CLI, the Dagster webserver and daemon.
# TensorFlow is tensorflow-cpu (pyproject.toml). The GPU training image is Dockerfile.gpu: the same
# layout and pins with tensorflow[and-cuda]; on Kubernetes only the training step runs in it.
#
# Build arguments (both empty by default: the docker-compose image):
#   EXTRAS          optional-dependency groups of pyproject.toml, e.g. "kubernetes" (dagster-k8s)
#                   for the Helm deployment (deploy/kubernetes/values.yaml)
#   EXTRA_PACKAGES  more pinned packages resolved together with the project, e.g. the object
#                   store's fsspec package: "s3fs==2026.9.0"
FROM python:3.11.7-slim-bookworm

ARG EXTRAS=""
ARG EXTRA_PACKAGES=""

ENV PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/home \
    TWOTOWER_HOME=/var/lib/twotower \
    TWOTOWER_MIGRATIONS_DIR=/opt/dagster/app/supabase/migrations

WORKDIR /opt/dagster/app
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml README.md ./
COPY twotower_pipeline ./twotower_pipeline
RUN uv pip install --system --compile-bytecode --no-cache ".${EXTRAS:+[$EXTRAS]}" $EXTRA_PACKAGES
COPY supabase ./supabase
COPY deploy ./deploy
RUN mkdir -p "$DAGSTER_HOME" "$TWOTOWER_HOME" && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"

EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "twotower_pipeline.definitions"]
