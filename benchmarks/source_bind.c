/* LD_PRELOAD shim for bench_fleet.py: while MACHINEID_BENCH_SOURCES=N (N > 0) is set in the environment, every
 * connect() to a loopback IPv4 address (plain or IPv4-mapped IPv6, as gRPC's dual-stack sockets use) is first bound
 * to the next of N source addresses 127.0.0.2, 127.0.0.3, ..., in turn, so one process's connections come from many
 * addresses (loopback has all of 127.0.0.0/8). gRPC has no option for a client's source address. Unset or 0: the
 * kernel picks as usual (127.0.0.1). Build: cc -shared -fPIC -O2 -o source_bind.so source_bind.c -ldl */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);
static atomic_uint next_source;

static uint32_t next_address(unsigned n) {
    return htonl((127u << 24) | (2u + atomic_fetch_add(&next_source, 1u) % n));
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static connect_fn real;
    if (!real)
        real = (connect_fn)dlsym(RTLD_NEXT, "connect");
    const char *spec = getenv("MACHINEID_BENCH_SOURCES");
    int n = spec ? atoi(spec) : 0;
    if (n > 0 && addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *dst = (const struct sockaddr_in *)addr;
        if ((ntohl(dst->sin_addr.s_addr) >> 24) == 127) {
            struct sockaddr_in src;
            memset(&src, 0, sizeof src);
            src.sin_family = AF_INET;
            src.sin_addr.s_addr = next_address((unsigned)n);
            bind(fd, (const struct sockaddr *)&src, sizeof src); /* a failure leaves the kernel's choice */
        }
    } else if (n > 0 && addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *dst = (const struct sockaddr_in6 *)addr;
        if (IN6_IS_ADDR_V4MAPPED(&dst->sin6_addr) && dst->sin6_addr.s6_addr[12] == 127) {
            struct sockaddr_in6 src;
            memset(&src, 0, sizeof src);
            src.sin6_family = AF_INET6;
            src.sin6_addr.s6_addr[10] = 0xff;
            src.sin6_addr.s6_addr[11] = 0xff;
            uint32_t v4 = next_address((unsigned)n);
            memcpy(&src.sin6_addr.s6_addr[12], &v4, 4);
            bind(fd, (const struct sockaddr *)&src, sizeof src);
        }
    }
    return real(fd, addr, len);
}
