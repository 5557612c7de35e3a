/*
 * landlock-exec: applies a Landlock ruleset to itself, then execs a program.
 *
 * Node cannot make the landlock_* system calls, so the agent runs this inside bubblewrap, after
 * bwrap has built the mount namespace (Landlock forbids mount changes once applied) and installed the
 * seccomp filter. The ruleset handles every access right the running kernel's ABI knows, so
 * anything not granted by a rule below is denied:
 *
 *   landlock-exec --abi                      prints the kernel's Landlock ABI (0: none) and exits
 *   landlock-exec [RULE]... -- PROGRAM [ARG]...
 *     --read PATH       read files, list directories
 *     --read-exec PATH  as --read, and execute
 *     --write PATH      as --read, and create, write, truncate, rename and remove
 *     --device PATH     read, write and ioctl a device (GPU nodes)
 *
 * On ABI >= 4 all TCP bind and connect is denied (no network rule is ever added); on ABI >= 6
 * abstract UNIX sockets and signals are scoped to the sandbox. It fails closed: no Landlock, a path
 * that cannot be opened, a rule the kernel refuses or no rule at all ends it with status 126 before
 * the program runs. Core dumps are disabled so that a crashing worker leaves no memory image behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The same numbers on every architecture (the unified syscall table since Linux 5.13). */
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif

/* Defined here rather than taken from <linux/landlock.h>, which lags the kernel on Debian 12. */
#define CREATE_RULESET_VERSION (1U << 0)
#define RULE_PATH_BENEATH 1

#define FS_EXECUTE (1ULL << 0)
#define FS_WRITE_FILE (1ULL << 1)
#define FS_READ_FILE (1ULL << 2)
#define FS_READ_DIR (1ULL << 3)
#define FS_REMOVE_DIR (1ULL << 4)
#define FS_REMOVE_FILE (1ULL << 5)
#define FS_MAKE_CHAR (1ULL << 6)
#define FS_MAKE_DIR (1ULL << 7)
#define FS_MAKE_REG (1ULL << 8)
#define FS_MAKE_SOCK (1ULL << 9)
#define FS_MAKE_FIFO (1ULL << 10)
#define FS_MAKE_BLOCK (1ULL << 11)
#define FS_MAKE_SYM (1ULL << 12)
#define FS_REFER (1ULL << 13)     /* ABI 2 */
#define FS_TRUNCATE (1ULL << 14)  /* ABI 3 */
#define FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#define NET_BIND_TCP (1ULL << 0)  /* ABI 4 */
#define NET_CONNECT_TCP (1ULL << 1)
#define SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0) /* ABI 6 */
#define SCOPE_SIGNAL (1ULL << 1)

/* Rights that apply to a regular file or device; the kernel refuses directory rights on them. */
#define FS_FILE_RIGHTS (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV)

#define MAX_RULES 64

struct ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

struct path_beneath_attr {
  uint64_t allowed_access;
  int32_t parent_fd;
} __attribute__((packed));

static int fail(const char *what, const char *detail) {
  fprintf(stderr, "landlock-exec: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  return 126;
}

static long landlock_abi(void) {
  long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : abi;
}

static uint64_t handled_fs_for(long abi) {
  uint64_t fs = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_READ_DIR | FS_REMOVE_DIR | FS_REMOVE_FILE |
                FS_MAKE_CHAR | FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM;
  if (abi >= 2) fs |= FS_REFER;
  if (abi >= 3) fs |= FS_TRUNCATE;
  if (abi >= 5) fs |= FS_IOCTL_DEV;
  return fs;
}

static uint64_t rights_for(const char *flag) {
  const uint64_t read = FS_READ_FILE | FS_READ_DIR;
  if (strcmp(flag, "--read") == 0) return read;
  if (strcmp(flag, "--read-exec") == 0) return read | FS_EXECUTE;
  if (strcmp(flag, "--write") == 0)
    return read | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SOCK |
           FS_MAKE_FIFO | FS_MAKE_SYM | FS_REFER | FS_TRUNCATE;
  if (strcmp(flag, "--device") == 0) return FS_READ_FILE | FS_WRITE_FILE | FS_IOCTL_DEV;
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--abi") == 0) {
    printf("%ld\n", landlock_abi());
    return 0;
  }

  long abi = landlock_abi();
  if (abi < 1) return fail("the kernel has no Landlock", NULL);

  struct ruleset_attr attr = {.handled_access_fs = handled_fs_for(abi)};
  size_t attr_size = sizeof(attr.handled_access_fs);
  if (abi >= 4) {
    attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP;
    attr_size = offsetof(struct ruleset_attr, scoped);
  }
  if (abi >= 6) {
    attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL;
    attr_size = sizeof(attr);
  }
  int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
  if (ruleset < 0) return fail("landlock_create_ruleset", strerror(errno));

  int i = 1;
  int rules = 0;
  for (; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
    uint64_t rights = rights_for(argv[i]);
    if (rights == 0) return fail("unknown option", argv[i]);
    if (i + 1 >= argc) return fail("missing path after", argv[i]);
    if (++rules > MAX_RULES) return fail("too many rules", NULL);
    const char *path = argv[i + 1];
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return fail(path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) return fail(path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) rights &= FS_FILE_RIGHTS;
    struct path_beneath_attr beneath = {.allowed_access = rights & attr.handled_access_fs, .parent_fd = fd};
    if (syscall(SYS_landlock_add_rule, ruleset, RULE_PATH_BENEATH, &beneath, 0) != 0) return fail(path, strerror(errno));
    close(fd);
  }
  if (rules == 0) return fail("no rule given", NULL);
  if (i >= argc - 1) return fail("no program after --", NULL);

  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) return fail("setrlimit(RLIMIT_CORE)", strerror(errno));
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail("prctl(PR_SET_NO_NEW_PRIVS)", strerror(errno));
  if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) return fail("landlock_restrict_self", strerror(errno));
  close(ruleset);

  execv(argv[i + 1], &argv[i + 1]);
  return fail(argv[i + 1], strerror(errno));
}
