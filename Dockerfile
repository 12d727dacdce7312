# One Tapestry host for the docker-compose demo: the agent and the demo's host
# entry point (demo/host.sh, the same script the namespace demo runs).
FROM node:20-bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      iproute2 iputils-ping iperf3 tcpdump curl procps python3 make g++ libpcap-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/tapestry
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN node_modules/.bin/node-gyp rebuild && node_modules/.bin/tsc -p tsconfig.json
ENTRYPOINT ["demo/host.sh"]
