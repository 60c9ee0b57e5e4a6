
/*
 * Signals only set flags; the loop does the work. SIGTERM or SIGINT: finish
 * the batch in hand and exit; a second one: abort it, release its jobs and
 * exit. SIGHUP: reopen the log file.
 */


#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chathistory_worker.h"


static void chw_signal_handler(int signo);


volatile sig_atomic_t  chw_stop;
volatile sig_atomic_t  chw_stop_now;
volatile sig_atomic_t  chw_reopen;
volatile sig_atomic_t  chw_signal_gen;

static int             chw_signals_on;
static sigset_t        chw_sigours;
static sigset_t        chw_sigmask;


/*
 * Installs the handlers. The loop blocks *ours while it checks the flags
 * and waits in ppoll() with *unblocked, so no signal is missed in between.
 */
int
chw_signals_init(sigset_t *ours, sigset_t *unblocked)
{
    struct sigaction  sa;

    sigemptyset(ours);
    sigaddset(ours, SIGTERM);
    sigaddset(ours, SIGINT);
    sigaddset(ours, SIGHUP);

    if (sigprocmask(SIG_UNBLOCK, ours, unblocked) != 0) {
        chw_log(CHW_LOG_ERROR, "sigprocmask() failed",
                "error", strerror(errno), NULL);
        return CHW_ERROR;
    }

    memset(&sa, 0, sizeof(struct sigaction));
    sa.sa_handler = chw_signal_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);

    if (sigaction(SIGTERM, &sa, NULL) != 0
        || sigaction(SIGINT, &sa, NULL) != 0
        || sigaction(SIGHUP, &sa, NULL) != 0)
    {
        chw_log(CHW_LOG_ERROR, "sigaction() failed",
                "error", strerror(errno), NULL);
        return CHW_ERROR;
    }

    sigdelset(unblocked, SIGTERM);
    sigdelset(unblocked, SIGINT);
    sigdelset(unblocked, SIGHUP);

    signal(SIGPIPE, SIG_IGN);

    chw_sigours = *ours;
    chw_sigmask = *unblocked;
    chw_signals_on = 1;

    return CHW_OK;
}


/*
 * poll() that a signal interrupts reliably: gen is chw_signal_gen as the
 * caller read it before looking at the flags; a signal caught since then
 * returns -1 (EINTR) at once, one caught during the wait ends it. Without
 * our handlers (the one-shot commands) SIGTERM keeps its default action.
 */
int
chw_signal_poll(struct pollfd *pfd, nfds_t n, double seconds, int gen)
{
    int              rc, err;
    struct timespec  ts;

    /* a wait without bound (HUGE_VAL) is a wait of an hour, again */
    if (seconds < 0) {
        seconds = 0;

    } else if (seconds > 3600) {
        seconds = 3600;
    }

    ts.tv_sec = (time_t) seconds;
    ts.tv_nsec = (long) ((seconds - (double) ts.tv_sec) * 1e9);

    if (!chw_signals_on) {
        return ppoll(pfd, n, &ts, NULL);
    }

    sigprocmask(SIG_BLOCK, &chw_sigours, NULL);

    if (chw_signal_gen != gen) {
        rc = -1;
        err = EINTR;

    } else {
        rc = ppoll(pfd, n, &ts, &chw_sigmask);
        err = errno;
    }

    sigprocmask(SIG_SETMASK, &chw_sigmask, NULL);
    errno = err;

    return rc;
}


static void
chw_signal_handler(int signo)
{
    if (signo == SIGHUP) {
        chw_reopen = 1;

    } else {
        if (chw_stop) {
            chw_stop_now = 1;
        }

        chw_stop = 1;
    }

    /* after the flags: a waiter that read the old value looks again */
    chw_signal_gen++;
}


/* points stderr at the log file again, for logrotate */
int
chw_log_reopen(chw_config_t *cf)
{
    int  fd;

    if (cf->log_file == NULL) {
        return CHW_OK;
    }

    fd = open(cf->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd == -1) {
        chw_log(CHW_LOG_ERROR, "cannot open the log file",
                "file", cf->log_file, "error", strerror(errno), NULL);
        return CHW_ERROR;
    }

    if (dup2(fd, STDERR_FILENO) == -1) {
        chw_log(CHW_LOG_ERROR, "dup2() failed", "error", strerror(errno),
                NULL);
        close(fd);
        return CHW_ERROR;
    }

    close(fd);

    return CHW_OK;
}
