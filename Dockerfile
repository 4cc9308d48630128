# bentohost runtime image.
#   docker build -t bentohost .
#   docker run -p 3000:3000 -v $PWD/examples/hello:/app bentohost          # serves /app/service.py
# or build your own image FROM bentohost with your service copied into /app.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libuv1-dev libcjson-dev libyaml-dev libssl-dev node-llhttp \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY setup.py README.md ./
COPY csrc ./csrc
COPY bentohost ./bentohost
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libcjson1 libyaml-0-2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
EXPOSE 3000
# The supervisor forwards SIGTERM to the workers and drains them, so it can be PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "bentohost", "serve"]
CMD ["/app", "--port", "3000"]
