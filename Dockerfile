# syntax=docker/dockerfile:1
# jobtitles: a build stage with torch (converts the encoder, re-exports the default bundle from the
# committed head and checks it against the committed bundle, builds the wheel, which carries the
# committed bundle) and a slim CPU runtime stage without torch or compilers.
#
#   docker build -t jobtitles .
#   docker run -i --rm jobtitles < titles.txt
#   docker run --rm -v "$PWD:/data" jobtitles classify /data/in.csv -o /data/out.jsonl
#
# The runtime stage installs exactly the project wheel and its runtime dependencies (the
# `dependencies` of pyproject.toml); tests/test_docker.py reproduces that stage in a fresh venv.
# The wheel carries the committed bundle, byte for byte the one a `pip install .` gets. The build
# stage re-exports it from the committed head first, as a check: the build fails if parity with
# PyTorch is below 99 % or if the rebuilt bundle answers differently from the committed one (an
# export on another CPU may round a few int8 weights differently, see jobtitles.export.reproduce).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# CPU build of torch: PyPI's default torch wheel for Linux pulls several GB of CUDA libraries.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" torch==2.13.0
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY train ./train
COPY export ./export
COPY models/__init__.py ./models/
COPY models/heads ./models/heads
COPY models/vocab ./models/vocab
COPY models/default ./models/default
# The project itself and its [train] extra: versions are declared in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[train]" \
 && jobtitles export --encoder /src/models/encoders/multilingual-e5-small \
      --head /src/models/heads/default --vocab /src/models/vocab/multilingual-e5-small.keep.json \
      --out /tmp/rebuilt --compare-with /src/models/default \
 && rm -rf /tmp/rebuilt \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && useradd --create-home --uid 10001 jobtitles
USER 10001
# The optimised session graph, saved once at build time so that each container starts without
# rewriting it (jobtitles.graph_cache; its key includes the CPU, so on a host whose CPU differs
# from the build host's the first start in a container writes its own entry instead).
ENV JOBTITLES_GRAPH_CACHE=/home/jobtitles/.cache/jobtitles/graphs
RUN python -c "from jobtitles import Classifier; Classifier.load().predict(['Registered Nurse'])"
WORKDIR /data
ENTRYPOINT ["jobtitles"]
CMD ["classify"]
