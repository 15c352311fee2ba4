# One image for every Repo Pilot container: `docker compose` runs it as `service <name>` and `relay`.
FROM python:3.11-slim

# Build with your own ids (PILOT_UID/PILOT_GID in docker-compose.yml) so the container can write to a
# bind-mounted TARGET_REPO_PATH; the default is an unprivileged id that owns nothing on the host.
ARG UID=10001
ARG GID=10001

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REPO_PILOT_HOME=/data

# git: mirrors, worktrees, branches and merges are all real git. Not version-pinned on purpose: the
# slim base moves with Debian's security updates and so should git.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid "${GID}" pilot \
    && useradd --uid "${UID}" --gid "${GID}" --create-home --shell /usr/sbin/nologin pilot

WORKDIR /opt/repo-pilot
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir . \
    && mkdir -p /data /target \
    && chown pilot:pilot /data /target

# Numeric, so a runtime that checks for non-root (runAsNonRoot) can tell without /etc/passwd.
USER ${UID}:${GID}
# Repositories mounted from the host belong to another uid unless built with PILOT_UID; git refuses
# to work in them without this. Global, not system: the pipeline runs git with GIT_CONFIG_NOSYSTEM.
RUN git config --global safe.directory '*'

WORKDIR /data
# A named volume mounted here starts with this directory's owner, so the pilot user can write to it.
VOLUME ["/data"]
ENTRYPOINT ["repo-pilot"]
CMD ["--help"]
