// SPDX-License-Identifier: Apache-2.0 OR MIT
/*
 * ptrace-attach: the kernel matrix's stand-in for `gdb -p` (busybox has no
 * debugger): fork a child that waits, attach to it with PTRACE_ATTACH, detach,
 * write one byte into it with process_vm_writev, then kill it. Prints the
 * child's pid. `ptrace-attach setuid`: instead, print its own pid and drop to
 * uid/gid 65534 without an exec (setresgid, setresuid), for the cred_change
 * check. Built static by scripts/kernel-matrix.sh.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static char byte[8] = "x";

int main(int argc, char **argv)
{
	int st;
	pid_t child;

	if (argc > 1 && strcmp(argv[1], "setuid") == 0) {
		printf("%d\n", (int)getpid());
		fflush(stdout);
		if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) {
			perror("ptrace-attach: setresuid");
			return 1;
		}
		return 0;
	}
	child = fork();

	if (child < 0)
		return 1;
	if (child == 0) {
		for (;;)
			pause();
	}
	usleep(100000);
	if (ptrace(PTRACE_ATTACH, child, 0, 0) != 0) {
		perror("ptrace-attach: PTRACE_ATTACH");
		kill(child, SIGKILL);
		return 1;
	}
	waitpid(child, &st, 0);
	ptrace(PTRACE_DETACH, child, 0, 0);
	/* the same address in the child: it is a fork of this process */
	struct iovec local = { byte, 1 }, remote = { byte, 1 };
	if (process_vm_writev(child, &local, 1, &remote, 1, 0) != 1)
		perror("ptrace-attach: process_vm_writev");
	kill(child, SIGKILL);
	waitpid(child, &st, 0);
	printf("%d\n", (int)child);
	return 0;
}
