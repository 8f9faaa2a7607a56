# syntax=docker/dockerfile:1
# ratelimit-proxy: two stages on Debian 12 (bookworm).
#   docker build -t ratelimit-proxy .
#   docker run --rm -p 3000:3000 -e TARGET_API_URL=https://api.example.com \
#              -e REDIS_URL=redis://redis-host:6379 ratelimit-proxy
# or, with Redis and an httpbin upstream:  docker-compose up --build

# ---- build ------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libboost1.81-dev libboost-url1.81-dev libhiredis-dev nlohmann-json3-dev \
        libspdlog-dev libssl-dev libmimalloc-dev prometheus-cpp-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY include/ include/
COPY lua/ lua/
COPY src/ src/

RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DRLP_BUILD_TESTS=OFF \
 && cmake --build build -j"$(nproc)" --target ratelimit-proxy \
 && strip build/ratelimit-proxy

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libhiredis0.14 libssl3 libspdlog1.10 libfmt9 libboost-url1.81.0 libmimalloc2.0 \
        libprometheus-cpp-core1.0 \
        ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ratelimit

COPY --from=build /src/build/ratelimit-proxy /usr/local/bin/ratelimit-proxy
COPY config/ratelimit-proxy.json /etc/ratelimit-proxy/ratelimit-proxy.json

# Inside a container the proxy must listen on every interface to be reachable through -p.
ENV BIND_ADDRESS=0.0.0.0:3000
USER ratelimit
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/ratelimit-proxy"]
