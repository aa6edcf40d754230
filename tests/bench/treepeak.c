/* treepeak: run a command and report its wall time, CPU time and the peak resident memory of
 * its whole process tree (the sum over every process in it at once, not the largest one, so
 * `xargs -P 2 vipsthumbnail` counts both children).
 *
 *   treepeak RESULT_FILE COMMAND [ARG...]
 *
 * Writes "wall_s cpu_s peak_kib exit_status" to RESULT_FILE. The command runs in its own
 * process group; every 10 ms the RSS of each process in that group is read from /proc and
 * summed (a process that lives less than 10 ms may be missed). CPU time is from wait4's
 * rusage: the command and every descendant it waited for. Used by tests/bench/peers.sh. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sum of RSS (KiB) of the processes whose process group is pgrp. */
static long group_rss_kib(pid_t pgrp, long page_kib)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    long sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        /* fields after the command name, which may hold spaces: from the last ')' */
        char *p = strrchr(buf, ')');
        if (!p)
            continue;
        long pg = 0, rss = 0;
        /* state ppid pgrp ... rss is field 24 (1-based) of the whole line */
        int field = 2;
        for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
            field++;
            if (field == 5)
                pg = atol(tok);
            else if (field == 24) {
                rss = atol(tok);
                break;
            }
        }
        if (pg == (long)pgrp)
            sum += rss * page_kib;
    }
    closedir(d);
    return sum;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: treepeak RESULT_FILE COMMAND [ARG...]\n");
        return 2;
    }
    long page_kib = sysconf(_SC_PAGESIZE) / 1024;
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        setpgid(0, 0);
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    setpgid(pid, pid);
    long peak = 0;
    int status = 0;
    struct rusage ru;
    for (;;) {
        pid_t w = wait4(pid, &status, WNOHANG, &ru);
        if (w == pid)
            break;
        long rss = group_rss_kib(pid, page_kib);
        peak = rss > peak ? rss : peak;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    double wall = now() - t0;
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *f = fopen(argv[1], "w");
    if (!f)
        return 2;
    fprintf(f, "%.3f %.3f %ld %d\n", wall, cpu, peak, code);
    fclose(f);
    return code;
}
