# The collector image is FROM scratch: nothing in it could run a health check. A static busybox (the
# uclibc build needs no libc) adds `wget` for the check in docker-compose.yml, and nothing else runs it.
FROM busybox:1.37.0-uclibc AS busybox

FROM otel/opentelemetry-collector-contrib:0.147.0
COPY --from=busybox /bin/busybox /usr/local/bin/busybox
