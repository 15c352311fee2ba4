# Tempo's image is distroless and its bundled busybox is being removed upstream (grafana/tempo#5717):
# a static busybox of our own (the uclibc build needs no libc) gives the health check in
# docker-compose.yml its `wget`, whichever Tempo release is pinned.
FROM busybox:1.37.0-uclibc AS busybox

FROM grafana/tempo:2.8.1
COPY --from=busybox /bin/busybox /usr/local/bin/busybox
