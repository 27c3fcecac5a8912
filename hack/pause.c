/*
 * zot-pause: the sandbox ("pause") process of the node tier's pods (hack/build-node.sh).
 *
 * It holds the pod's namespaces open and does nothing else: it waits for signals (sigsuspend, with
 * the signals blocked in between, so one that arrives before the wait is not lost), reaps any
 * child that ends up with it (it is PID 1 of the pod when the pod shares its PID namespace),
 * and exits 0 on SIGINT or SIGTERM. Written for this project; built static with gcc so that
 * the image holds this one file.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) {
	(void)sig;
	stop_requested = 1;
}

static void on_child(int sig) {
	(void)sig;
	int saved = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
	errno = saved;
}

static void handle(int sig, void (*fn)(int)) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
	sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		static const char version[] = "zot-pause 1\n";
		return write(STDOUT_FILENO, version, sizeof version - 1) < 0;
	}
	sigset_t blocked, waiting;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGCHLD);
	sigprocmask(SIG_BLOCK, &blocked, &waiting);
	sigdelset(&waiting, SIGINT);
	sigdelset(&waiting, SIGTERM);
	sigdelset(&waiting, SIGCHLD);
	handle(SIGINT, on_stop);
	handle(SIGTERM, on_stop);
	handle(SIGCHLD, on_child);
	while (!stop_requested) {
		sigsuspend(&waiting); /* the pause: returns after a handler ran */
	}
	return 0;
}
