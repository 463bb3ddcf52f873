/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * events.h: THE contract between ksight's BPF programs and its userspace.
 *
 * Only types live here: every record that crosses the ring buffer starts with
 * struct ks_event_hdr, whose `kind` says which struct follows. Rust never
 * mirrors these by hand: crates/ksight-wire's build script instantiates every
 * `struct ks_*` and `enum ks_*` defined in this file in one types-only BPF
 * object, and libbpf-cargo generates the Rust types from its BTF. Each kind's
 * module in crates/ksight-core/src/kinds/ decodes its records from them.
 *
 * Rules: fixed-width integers and fixed arrays, largest members first, explicit
 * padding, no bool/pointers/bitfields, every type named and prefixed `ks_`
 * (ksight-wire's build checks the generated types for bool and pointers).
 * All integers are in host byte order. Times are CLOCK_MONOTONIC nanoseconds
 * (bpf_ktime_get_ns) but for tasks' creation times (start_ns, parent_start_ns,
 * child_start_ns), which are CLOCK_BOOTTIME, as /proc's are.
 *
 * A kind's name here is its name everywhere: KS_EVENT_TCP_CLOSE is the kind
 * `tcp_close` (crates/ksight-core/src/kinds/tcp_close.rs, "type": "tcp_close").
 * Changing a layout means bumping KS_ABI_VERSION and docs/events.md.
 */
#ifndef KS_EVENTS_H
#define KS_EVENTS_H

enum ks_abi {
	KS_ABI_VERSION = 2,
};

enum ks_event_kind {
	KS_EVENT_NONE = 0,
	KS_EVENT_EXEC = 1,
	KS_EVENT_FORK = 2,
	KS_EVENT_EXIT = 3,
	KS_EVENT_CONNECT = 4,
	KS_EVENT_ACCEPT = 5,
	KS_EVENT_LISTEN = 6,
	KS_EVENT_TCP_CLOSE = 7,
	KS_EVENT_TCP_STATE = 8,
	KS_EVENT_UDP = 9,
	KS_EVENT_DNS = 10,
	KS_EVENT_GETADDRINFO = 11,
	KS_EVENT_SIGNAL = 12,
	KS_EVENT_CGROUP = 13,
	KS_EVENT_MODULE_LOAD = 14,
	KS_EVENT_PTRACE = 15,
	KS_EVENT_CRED_CHANGE = 16,
	KS_EVENT_ENFORCEMENT = 17,
	/* a power of two above the last kind: sizes (and masks the index of)
	 * the per-CPU drop counters */
	KS_EVENT_KIND_MAX = 32,
};

/* Bounds of the variable-length exec payload. */
enum ks_limits {
	KS_TASK_COMM_LEN = 16,
	KS_TTY_LEN = 32,
	/* argv is copied up to cfg argv_max bytes, never more than this */
	KS_ARGV_MAX = 32768,
	/* each path (filename, exe, cwd) is cut at this many bytes */
	KS_PATH_MAX = 4096,
	/* a path walk follows at most this many components */
	KS_PATH_DEPTH = 48,
	/* d_name is at most NAME_MAX (255) bytes + NUL */
	KS_NAME_MAX = 256,
	/* the data area: argv, then three paths, each write masked by
	 * KS_DATA_MASK and followed by at most KS_PATH_MAX bytes */
	KS_DATA_MASK = 0xffff,
	KS_EXEC_DATA_SIZE = 0x10000 + 4096,
};

/* Starts every record. */
struct ks_event_hdr {
	__u64 ktime;	/* bpf_ktime_get_ns() when the hook ran */
	__u64 seq;	/* per-CPU sequence number: a gap is a lost record */
	__u32 kind;	/* enum ks_event_kind */
	__u32 size;	/* bytes in this record, header included */
	__u32 cpu;
	__u32 abi;	/* KS_ABI_VERSION */
};

/* Who did it: the task as the kernel saw it when the hook ran. */
struct ks_task {
	__u64 start_ns;		/* thread-group leader's creation, CLOCK_BOOTTIME (ks_task_start) */
	__u64 parent_start_ns;	/* real parent's leader's, likewise */
	__u64 cgroup_id;	/* cgroup v2 id (== inode of its cgroupfs dir) */
	__u32 pid;		/* tgid, in the initial pid namespace */
	__u32 tid;
	__u32 ppid;		/* real_parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 egid;
	__u32 auid;		/* loginuid; 0xffffffff when unset or no audit */
	__u32 pidns_ino;	/* inode of the task's active pid namespace */
	__u32 ns_pid;		/* tgid as seen inside that namespace */
	__u32 ns_tid;
	__u32 flags;		/* enum ks_task_flags; 0 from the kernel's hooks */
	char comm[KS_TASK_COMM_LEN];
};

enum ks_task_flags {
	/* read from /proc by userspace, not by a hook: the owner of a socket
	 * older than ksight (written into the socket tables at start) */
	KS_TASK_PROCFS = 1 << 0,
};

enum ks_exec_flags {
	KS_EXEC_ARGV_TRUNCATED = 1 << 0,
	KS_EXEC_ARGV_FAULT = 1 << 1,	/* argv could not be read at all */
	KS_EXEC_SCRIPT = 1 << 2,	/* a binfmt handler (#!, misc) swapped the file */
	KS_EXEC_EXE_TRUNCATED = 1 << 3,	/* path walk hit KS_PATH_DEPTH/KS_PATH_MAX */
	KS_EXEC_CWD_TRUNCATED = 1 << 4,
	KS_EXEC_INTERP_TRUNCATED = 1 << 5,
	KS_EXEC_STDIO_TRUNCATED = 1 << 6,	/* a stdio path walk hit a limit */
};

/* A socket's addresses, as the kernel holds them. Addresses are in network
 * byte order, IPv4 in the first 4 bytes; ports in host byte order. */
struct ks_sock_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;		/* inode of the socket's network namespace */
	__u16 sport;
	__u16 dport;
	__u16 family;		/* AF_INET (2) or AF_INET6 (10) */
	__u16 _pad[3];
};

enum ks_exec_file_flags {
	KS_FILE_INTERNAL_MNT = 1 << 0,	/* on a kernel-internal mount: memfd_create, shm */
};

/*
 * The file the kernel runs (bprm->file: for a script, its interpreter), as
 * its inode says at exec: read from the file being executed, not from the
 * path afterwards. Times are CLOCK_REALTIME; dev is the kernel's encoding
 * (major << 20 | minor).
 */
struct ks_exec_file {
	__u64 ino;
	__s64 size;
	__s64 ctime_sec;
	__s64 mtime_sec;
	__u32 ctime_nsec;
	__u32 mtime_nsec;
	__u32 dev;		/* the file system's s_dev */
	__u32 mode;		/* i_mode: type, permissions, setuid/setgid bits */
	__u32 uid;		/* owner, in the initial user namespace */
	__u32 gid;
	__u32 nlink;		/* 0: no name left (deleted, or a memfd) */
	__u32 magic;		/* the file system's s_magic */
	__u32 flags;		/* enum ks_exec_file_flags */
	__u32 _pad;
};

/* Credentials after the exec (task->cred), and whether the exec changed them. */
struct ks_exec_cred {
	__u64 cap_effective;	/* capability bits (CAP_* numbers) */
	__u64 cap_permitted;
	__u32 suid;		/* saved set-user-id */
	__u32 sgid;
	__u32 per_clear;	/* bprm->per_clear: nonzero when set-id bits or file capabilities changed the credentials */
	__u32 secure;		/* bprm->secureexec (AT_SECURE) */
};

/* What an exec's fd 0, 1 or 2 is. */
enum ks_stdio_type {
	KS_STDIO_NONE = 0,	/* not open */
	KS_STDIO_FILE = 1,	/* a regular file (its path follows in data) */
	KS_STDIO_DIR = 2,	/* (path follows) */
	KS_STDIO_CHAR = 3,	/* a character device: a terminal, /dev/null (rdev names it) */
	KS_STDIO_BLOCK = 4,
	KS_STDIO_PIPE = 5,	/* a pipe or a FIFO */
	KS_STDIO_SOCKET = 6,
	KS_STDIO_OTHER = 7,	/* an anonymous inode (eventfd, epoll, ...), a symlink */
};

struct ks_stdio {
	struct ks_sock_tuple sock;	/* SOCKET: family always; addresses for AF_INET/AF_INET6 */
	__u64 ino;		/* PIPE: its inode (a pipe's two ends share it) */
	__u32 _pad0;
	__u32 rdev;		/* CHAR/BLOCK: the device (kernel encoding) */
	__u16 type;		/* enum ks_stdio_type */
	__u16 path_len;		/* bytes of its path in the exec record's data */
	__u16 sock_type;	/* SOCKET: SOCK_STREAM (1), SOCK_DGRAM (2), ... */
	__u16 protocol;		/* SOCKET: IPPROTO_* */
};

/*
 * A successful execve/execveat. `data` holds, back to back:
 *   argv      argv_len bytes, NUL-separated as in /proc/pid/cmdline
 *   filename  filename_len bytes: the path given to execve (not NUL-terminated)
 *   exe       exe_len bytes: path of the file the kernel opened for `filename`
 *   interp    interp_len bytes: path of the interpreter that runs (KS_EXEC_SCRIPT only)
 *   cwd       cwd_len bytes
 *   stdio     the paths of fds 0, 1, 2 that are files or directories (stdio[i].path_len bytes each)
 * exe, interp, cwd and the stdio paths are written leaf first, one NUL-terminated component each
 * ("ls\0bin\0usr\0" is /usr/bin/ls): userspace reverses them. A walk that reaches
 * an unmounted or unreachable root ends without its leading components.
 */
struct ks_exec_info {
	__u32 flags;		/* enum ks_exec_flags */
	__u32 old_tid;		/* the thread that called exec (it becomes the leader) */
	__u16 argv_len;
	__u16 filename_len;
	__u16 exe_len;
	__u16 interp_len;
	__u16 cwd_len;
	__u16 _pad[3];
	char tty[KS_TTY_LEN];	/* controlling tty name, "" when none */
};

struct ks_exec_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	struct ks_exec_info info;
	struct ks_exec_file file;
	struct ks_exec_cred cred;
	struct ks_stdio stdio[3];
	__u8 data[KS_EXEC_DATA_SIZE];
};

enum ks_fork_flags {
	KS_FORK_THREAD = 1 << 0,	/* CLONE_THREAD: a new thread, not a process */
};

/* fork/vfork/clone: `task` is the parent (the caller), the rest is the child. */
struct ks_fork_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	__u64 child_start_ns;	/* CLOCK_BOOTTIME */
	__u32 child_pid;	/* child's tgid (== parent's for a thread) */
	__u32 child_tid;
	__u32 child_pidns_ino;	/* differs from the parent's after CLONE_NEWPID */
	__u32 child_ns_pid;
	__u32 child_ns_tid;
	__u32 flags;		/* enum ks_fork_flags */
};

enum ks_exit_flags {
	KS_EXIT_THREAD = 1 << 0,	/* a thread ended, its process lives on */
};

/* A process ended (its last thread exited), or a thread with threads enabled. */
struct ks_exit_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	__u64 utime_ns;		/* user CPU time of the whole process */
	__u64 stime_ns;		/* system CPU time of the whole process */
	__u32 exit_code;	/* raw task->exit_code: wait(2) status layout */
	__u32 flags;		/* enum ks_exit_flags */
};

enum ks_net_flags {
	KS_NET_OUTBOUND = 1 << 0,	/* we connected */
	KS_NET_INBOUND = 1 << 1,	/* we accepted */
	KS_NET_OWNER = 1 << 2,		/* `task` holds the socket's owner */
	KS_NET_TCP = 1 << 3,		/* a DNS record: the segment of a TCP connection */
	KS_NET_ACCEPTED = 1 << 4,	/* `task` called accept() on it (accept.bpf.c) */
	KS_NET_PROCFS = 1 << 5,		/* `task` was inferred from /proc by userspace
					 * (a listener older than ksight) */
};

/*
 * connect (its outcome), accept, listen, tcp_close, tcp_state: one layout.
 * `task` is the owner captured in process context (at connect, or at listen
 * for accepted connections): state changes mostly run in softirq, where the
 * current task is unrelated.
 */
struct ks_tcp_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	struct ks_sock_tuple tuple;
	__u64 sock;		/* kernel address of the socket: ties a connection's events */
	__u64 start_ns;		/* connect began / accept completed; 0 when unknown */
	__u64 state_ns;		/* when the socket entered old_state; 0 when unknown */
	__u64 bytes_sent;	/* tcp_sock bytes_acked: sent and acknowledged */
	__u64 bytes_received;	/* tcp_sock bytes_received */
	__u32 retransmits;	/* tcp_sock total_retrans */
	__u32 error;		/* sk_err (errno) when a connect fails */
	__u32 old_state;	/* TCP_* states, as in include/net/tcp_states.h */
	__u32 new_state;
	__u32 flags;		/* enum ks_net_flags */
	__u32 _pad;
};

/* What the kernel knows of a tracked TCP connection (net.bpf.c's
 * ks_tcp_conns, keyed by socket address; ks_tcp_seed, keyed by socket cookie,
 * holds those older than ksight, written by userspace at start). */
struct ks_tcp_conn {
	struct ks_task owner;
	/* the addresses once both ports are known: an outbound socket has no
	 * local port yet at SYN_SENT, and has given it back by CLOSE */
	struct ks_sock_tuple tuple;
	__u64 start_ns;		/* 0: unknown (older than ksight) */
	__u64 state_ns;
	__u32 flags;		/* enum ks_net_flags */
	__u32 _pad;
};

/*
 * UDP is counted, not streamed: per flow (socket, remote address and port)
 * in the ks_udp_flows map, which userspace reads. A socket's release sends
 * one ks_udp_event (kind `udp`); userspace then reports and removes its flows.
 */
struct ks_udp_flow_key {
	__u64 cookie;		/* the socket's cookie */
	__u8 raddr[16];		/* network byte order, IPv4 in the first 4 bytes */
	__u16 rport;		/* host byte order */
	__u16 family;
	__u32 _pad;
};

struct ks_udp_flow {
	__u64 first_ns;
	__u64 last_ns;
	__u64 packets_out;
	__u64 bytes_out;	/* UDP payload bytes */
	__u64 packets_in;
	__u64 bytes_in;
	__u8 laddr[16];
	__u16 lport;
	__u16 _pad[3];
};

/* A flow's remote end, as in ks_udp_flow_key. */
struct ks_udp_remote {
	__u8 raddr[16];
	__u16 rport;
	__u16 family;
	__u32 _pad;
};

enum ks_udp_limits {
	/* remotes a socket remembers: enough for clients (DNS: one); a socket
	 * with more (a server) is marked overflowed and its flows found by scan */
	KS_UDP_REMOTES = 4,
};

/* Who owns a UDP socket (captured when it was created, in process context),
 * and the remotes of its flows, so that its release finds them directly. */
struct ks_udp_sock {
	struct ks_task owner;
	struct ks_udp_remote remotes[KS_UDP_REMOTES];
	__u32 netns;
	__u32 nremotes;		/* > KS_UDP_REMOTES: overflowed */
};

/* A UDP socket was released: its flows are final (userspace reads them). */
struct ks_udp_event {
	struct ks_event_hdr hdr;
	struct ks_udp_sock sock;
	__u64 cookie;
	__u32 flags;		/* KS_NET_OWNER when `sock` is known */
	__u32 _pad;
};

enum ks_dns_limits {
	/* DNS payload bytes copied per packet: a classic UDP message (512),
	 * and room for the larger ones that come back over TCP or EDNS */
	KS_DNS_MAX = 1024,
	KS_DNS_PORTS = 4,
};

/* A UDP datagram to or from a DNS port: its payload, parsed only in userspace. */
struct ks_dns_event {
	struct ks_event_hdr hdr;
	struct ks_task task;	/* the socket's owner when known (KS_NET_OWNER) */
	__u64 cookie;		/* the socket */
	__u8 saddr[16];		/* the datagram's source and destination, */
	__u8 daddr[16];		/* network byte order, IPv4 in the first 4 bytes */
	__u16 sport;		/* host byte order */
	__u16 dport;
	__u16 family;
	__u16 egress;		/* 1: sent by this host's socket, 0: received */
	__u32 len;		/* UDP payload (or TCP segment payload) length */
	__u32 caplen;		/* bytes copied into data */
	__u32 flags;		/* KS_NET_OWNER */
	__u32 netns;		/* the owner's network namespace, when known */
	__u8 data[KS_DNS_MAX];
};

enum ks_getaddrinfo_limits {
	KS_GAI_NAME = 256,
	KS_GAI_ADDRS = 4,
};

enum ks_getaddrinfo_phase {
	KS_GAI_CALL = 1,	/* getaddrinfo was entered */
	KS_GAI_RETURN = 2,	/* it returned: ret, addresses, latency */
};

/* A libc getaddrinfo call, as the application made it (uprobes). */
struct ks_getaddrinfo_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	__u64 latency_ns;		/* KS_GAI_RETURN */
	__u8 addrs[KS_GAI_ADDRS][16];	/* network byte order, IPv4 in the first 4 bytes */
	__u16 families[KS_GAI_ADDRS];	/* AF_INET / AF_INET6, 0 = unused */
	__s32 ret;			/* 0 or an EAI_* code */
	__u32 phase;			/* enum ks_getaddrinfo_phase */
	char name[KS_GAI_NAME];
};

/* A signal one process sent another (signal.bpf.c): `task` sent it, `target`
 * is the process it was sent to. */
struct ks_signal_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	struct ks_task target;
	__s32 sig;
	__s32 code;		/* si_code: SI_USER 0, SI_QUEUE -1, SI_TKILL -6, SI_KERNEL 0x80 */
	__u32 result;		/* TRACE_SIGNAL_*: 0 delivered, 1 ignored, 2 already pending,
				 * 3 queue overflow, 4 delivered without its siginfo */
	__u32 group;		/* sent to the whole process, not one thread */
};

/* A kernel module was loaded (module/module_load), in the loader's context. */
#define KS_MODULE_NAME_MAX 56
struct ks_module_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	__u64 taints;		/* the module's own taint flags (TAINT_* bits) */
	__u32 sig_ok;		/* 0 unsigned or bad signature, 1 signature verified,
				 * 2 the kernel does not check signatures */
	__u32 pad;
	char name[KS_MODULE_NAME_MAX];
};

/* A process passed the kernel's check for access to another one's memory
 * (security_ptrace_access_check, attach mode): ptrace attach or seize,
 * process_vm_readv/writev, /proc/PID/mem, pidfd_getfd. */
struct ks_ptrace_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	struct ks_task target;
	__u64 syscall;		/* the caller's syscall number (x86-64), -1 if none */
	__u64 arg0;		/* its first argument (ptrace: the request) */
	__u32 mode;		/* PTRACE_MODE_* bits */
	__u32 pad;
};

/* A task's credentials changed outside an exec (commit_creds): `task` has
 * the old ones, the fields below the new. */
struct ks_cred_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	__u64 old_cap_effective;
	__u64 new_cap_effective;
	__u32 uid;
	__u32 euid;
	__u32 gid;
	__u32 egid;
};

/* A cgroup v2 directory was made (cgroup/cgroup_mkdir): its id and path, so
 * that events made in it are named even if it is gone before userspace
 * reads them (a container that runs one command). */
#define KS_CGROUP_PATH_MAX 256
struct ks_cgroup_event {
	struct ks_event_hdr hdr;
	struct ks_task task;	/* who made it (a runtime, systemd, a shell) */
	__u64 id;		/* == the cgroup_id of the tasks in it */
	__u32 len;		/* the path's bytes, without its NUL */
	__u32 truncated;	/* the path was longer than `path` */
	char path[KS_CGROUP_PATH_MAX];	/* from the hierarchy's root: /system.slice/x.scope */
};

/* ---- enforcement (enforce.bpf.c) ---- */

enum ks_enf_limits {
	/* rules the kernel decides on: one bit each in the masks below */
	KS_ENF_RULES = 64,
};

enum ks_enf_action {
	KS_ENF_DENY_CONNECT = 1,	/* connect()/sendmsg() to a denied address: EPERM */
	KS_ENF_DENY_DOMAIN = 2,		/* the same, the address taken from a DNS answer */
	KS_ENF_KILL = 3,		/* SIGKILL at sched_process_exec */
};

enum ks_enf_flags {
	KS_ENF_ENFORCE = 1 << 0,	/* act; else only report what it would have done */
	KS_ENF_TCP = 1 << 1,		/* applies to stream sockets */
	KS_ENF_UDP = 1 << 2,		/* applies to datagram sockets */
	KS_ENF_EXE = 1 << 3,		/* only executables in ks_enf_exes/ks_enf_dirs with its bit */
	KS_ENF_CGROUP = 1 << 4,		/* only tasks under cgroup_id */
};

enum ks_enf_result {
	KS_ENF_DENIED = 1,
	KS_ENF_WOULD_DENY = 2,
	KS_ENF_KILLED = 3,
	KS_ENF_WOULD_KILL = 4,
	KS_ENF_FAILED = 5,		/* the kernel refused to act (bpf_send_signal failed) */
};

/* One rule as the kernel sees it (ks_enf_rules[bit]). */
struct ks_enf_rule {
	__u64 cgroup_id;	/* KS_ENF_CGROUP: the subtree's cgroup v2 id */
	__u32 cgroup_level;	/* its depth: the root is 0 */
	__u32 flags;		/* enum ks_enf_flags */
	__u32 action;		/* enum ks_enf_action */
	__u32 pad;
};

/* A rule's id, for `ksight enforce status` on pinned maps (ks_enf_names). */
struct ks_enf_name {
	char id[64];
};

/* An LPM key: prefix length in bits, then the address (network byte order). */
struct ks_enf_net4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct ks_enf_net6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* An address answered for a denied name, until `expires_ns` (CLOCK_MONOTONIC). */
struct ks_enf_addr {
	__u8 addr[16];		/* IPv4 in the first 4 bytes */
	__u32 family;
};

struct ks_enf_answer {
	__u64 mask;		/* the rules whose names it answered */
	__u64 expires_ns;
};

/* A name suffix's rules, by the hash of the suffix (see enforce.bpf.c). */
struct ks_enf_domain {
	__u64 exact;		/* rules for this name only */
	__u64 subtree;		/* rules for this name and every name under it */
};

/* A file (an executable, or a directory whose executables a rule names). */
struct ks_enf_file {
	__u64 ino;
	__u32 dev;		/* the kernel's encoding (major << 20 | minor) */
	__u32 pad;
};

/* Per-CPU counters of the enforcement programs. */
struct ks_enf_stats {
	__u64 hits[KS_ENF_RULES];	/* enforcements (or would-be ones) by rule */
	__u64 answers_full;		/* answers not added: ks_enf_answers was full */
	__u64 answers;			/* addresses added from answers */
};

/* An enforcement (or, in monitor mode, what would have been one). */
struct ks_enforce_event {
	struct ks_event_hdr hdr;
	struct ks_task task;
	__u64 exe_ino;		/* kill: the file the exec ran */
	__u8 addr[16];		/* deny: the destination (IPv4 in the first 4 bytes) */
	__u32 exe_dev;
	__u32 rule;		/* the rule's bit */
	__u32 action;		/* enum ks_enf_action */
	__u32 result;		/* enum ks_enf_result */
	__u16 port;		/* deny: destination port, host byte order */
	__u16 family;
	__u16 sotype;		/* deny: SOCK_STREAM (1) or SOCK_DGRAM (2) */
	__u16 pad;
};

/* Per-CPU counters, one slot per CPU in the ks_stats map. */
struct ks_cpu_stats {
	__u64 seq;				/* next sequence number on this CPU */
	__u64 drops[KS_EVENT_KIND_MAX];		/* records the buffer refused, by kind */
};

#endif /* KS_EVENTS_H */
