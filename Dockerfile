# The image the Helm chart runs (`featureplane serve`, `featureplane materialize <t>`):
# docker build -t ghcr.io/featureplane/featureplane:0.1.0 .
# Not built in this repository's CI (no container engine there); see docs/limits.md.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 HOME=/tmp FEAST_USAGE=False
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platform ./platform
RUN pip install --no-compile .
# Tenants are data: the image carries the definitions it was built with (the chart points
# FEATUREPLANE_TENANTS_DIR / FEATUREPLANE_FEATURE_REPO_DIR here).
COPY tenants ./tenants
COPY feature_repo ./feature_repo
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["featureplane"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
