/* Stand-in for the web-server images critest pulls (nginx, httpd, hostnet-nginx): a static HTTP/1.x
 * server answering 200 to every request. Its behaviour follows what the critest specs read:
 *   - invoked as `nginx`: re-executes itself so that /proc/PID/cmdline reads "nginx: master process ..."
 *     (comm stays "nginx" for pidof), writes /var/run/nginx.pid, and serves from a forked
 *     "nginx: worker process";
 *   - invoked as `httpd`: prints "httpd: listening on :PORT" to stdout (the multi-container spec greps
 *     the log for "httpd");
 *   - the port is $PORT, else 80. SIGTERM/SIGINT/SIGQUIT end both processes with status 0.
 * Part of crius' test-image builder (scripts/build-test-images.py); not derived from nginx or httpd. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char MASTER[] = "nginx: master process nginx -g daemon off;";
static const char WORKER[] = "nginx: worker process";
static volatile pid_t worker = -1;

static void on_term(int sig) {
    (void)sig;
    if (worker > 0) kill(worker, SIGTERM);
    _exit(0);
}

static int listen_on(int port) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    int v6 = 1;
    if (fd < 0) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        v6 = 0;
    }
    if (fd < 0) { perror("socket"); exit(1); }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        struct sockaddr_in6 a = {0};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        a.sin6_addr = in6addr_any;
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_ANY);
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc < 0) { perror("bind"); exit(1); }
    if (listen(fd, 128) < 0) { perror("listen"); exit(1); }
    return fd;
}

static void serve(int lfd, const char *name) {
    char body[256];
    int blen = snprintf(body, sizeof body,
                        "<html><body><h1>Welcome to %s (crius test image)</h1></body></html>\n", name);
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            perror("accept");
            exit(1);
        }
        /* Read the request head (up to the blank line or 8 KiB), then answer and close. */
        char buf[8192];
        size_t got = 0;
        while (got < sizeof buf - 1) {
            ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
            if (n <= 0) break;
            got += (size_t)n;
            buf[got] = 0;
            if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n")) break;
        }
        char head[256];
        int hlen = snprintf(head, sizeof head,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                            "Connection: close\r\n\r\n", blen);
        if (write(c, head, (size_t)hlen) < 0 || write(c, body, (size_t)blen) < 0) {
            /* the client left: nothing to do */
        }
        close(c);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    const char *p = getenv("PORT");
    int port = p ? atoi(p) : 80;
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGQUIT, on_term);

    if (strcmp(base, "nginx") == 0) {
        /* First run: become "nginx: master process ...", keeping comm = nginx. */
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0) { perror("readlink /proc/self/exe"); return 1; }
        self[n] = 0;
        char *args[] = {(char *)MASTER, NULL};
        execv(self, args);
        perror("execv");
        return 1;
    }
    if (strcmp(argv[0], MASTER) == 0) {
        int lfd = listen_on(port);
        FILE *f = fopen("/var/run/nginx.pid", "w");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
        printf("nginx: master process listening on :%d\n", port);
        pid_t w = fork();
        if (w < 0) { perror("fork"); return 1; }
        if (w == 0) {
            char self[4096];
            ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
            if (n < 0) { perror("readlink"); _exit(1); }
            self[n] = 0;
            char fdbuf[16];
            snprintf(fdbuf, sizeof fdbuf, "%d", lfd);
            setenv("LISTEN_FD", fdbuf, 1);
            char *args[] = {(char *)WORKER, NULL};
            execv(self, args);
            perror("execv worker");
            _exit(1);
        }
        worker = w;
        close(lfd);
        int st;
        while (waitpid(w, &st, 0) < 0 && errno == EINTR) {}
        return 1; /* the worker died */
    }
    if (strcmp(argv[0], WORKER) == 0) {
        const char *fd = getenv("LISTEN_FD");
        if (!fd) { fprintf(stderr, "worker without LISTEN_FD\n"); return 1; }
        serve(atoi(fd), "nginx");
        return 0;
    }
    /* httpd and anything else: one process. */
    int lfd = listen_on(port);
    printf("%s: listening on :%d\n", base, port);
    serve(lfd, base);
    return 0;
}
