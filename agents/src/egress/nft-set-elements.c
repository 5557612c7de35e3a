/*
 * nft-set-elements: prints the elements of every named set of one nftables table, straight from
 * the kernel's netlink dump (NFT_MSG_GETSET, then NFT_MSG_GETSETELEM per set).
 *
 * nft 1.0.6 (Debian 12) decodes every element of every set in userspace on any `list` of a table:
 * ~1 s at 100,000 elements. This reads the same kernel state in ~0.1 s and leaves the decoding to
 * the caller, which knows the set types:
 *
 *   nft-set-elements FAMILY TABLE MAX_ELEMENTS
 *   nft-set-elements --genid   prints only `genid N`: the agent's drift check polls it, since the
 *                              kernel bumps the generation on every ruleset change, whoever makes it
 *   nft-set-elements --watch   runs until killed (or its parent dies): `ready`, then `genid N` for
 *                              every committed ruleset change in the namespace and `overrun` when
 *                              the kernel dropped events (the caller then reads everything again).
 *                              Unlike `nft monitor`, it decodes nothing but the generation messages:
 *                              nft 1.0.6 prints every element of a 100,000-entry apply.
 *
 * Anonymous sets and maps are left out. Output, one record per line, names as hex so nothing a set
 * is called can forge a line:
 *
 *   genid N                    the ruleset generation the whole dump belongs to
 *   set NAMEHEX FLAGS KEYLEN   a named set (NFT_SET_* flags in decimal), followed by its elements:
 *   e KEYHEX                   an element
 *   e KEYHEX KEYENDHEX         an element with a range end (concatenated interval sets)
 *   x KEYHEX                   an interval end (NFT_SET_ELEM_INTERVAL_END, rbtree sets)
 *   c                          the catch-all element
 *   end N                      the last line: N elements in all
 *
 * Exit status: 0 done; 2 usage; 3 the ruleset changed during the dump (the kernel marked it
 * interrupted, or the generation moved): the caller reads again; 4 more than MAX_ELEMENTS elements
 * or a malformed reply; 5 a netlink or output error. Output without the `end` line is incomplete.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <libnftnl/gen.h>
#include <libnftnl/set.h>

#define EXIT_USAGE 2
#define EXIT_CHANGED 3
#define EXIT_BOUND 4
#define EXIT_NETLINK 5

/* NFT_NAME_MAXLEN is 256 with the terminating zero; NFT_DATA_VALUE_MAXLEN is 64 bytes. */
#define MAX_NAME_LEN 255
#define MAX_KEY_LEN 64
#define MAX_SETS 4096
#define MAX_ELEMENTS_LIMIT 10000000UL
/* The kernel builds dump messages of at most 32 KiB; a larger buffer never truncates one. */
#define RECEIVE_BUFFER_SIZE 65536
#define RECEIVE_TIMEOUT_SECONDS 10

struct set_info {
	char name[MAX_NAME_LEN + 1];
	uint32_t flags;
	uint32_t key_len;
};

struct dump {
	struct mnl_socket *nl;
	uint32_t portid;
	uint32_t seq;
	int family;
	const char *table;
	int failure;
	/* errno of the last failed exchange. */
	int error;
	/* GETSET */
	struct set_info *sets;
	size_t set_count;
	/* GETSETELEM */
	const struct set_info *current;
	unsigned long elements;
	unsigned long max_elements;
	/* GETGEN */
	uint32_t genid;
	bool have_genid;
};

static char receive_buffer[RECEIVE_BUFFER_SIZE];
/* Requests carry a table and a set name at most. */
static char send_buffer[8192];
static char output_buffer[1 << 20];

static void fail(struct dump *dump, int status)
{
	if (dump->failure == 0)
		dump->failure = status;
}

static void print_hex(const uint8_t *bytes, uint32_t len)
{
	static const char digits[] = "0123456789abcdef";
	char text[2 * MAX_KEY_LEN];
	for (uint32_t i = 0; i < len; i++) {
		text[2 * i] = digits[bytes[i] >> 4];
		text[2 * i + 1] = digits[bytes[i] & 15];
	}
	fwrite(text, 1, 2 * (size_t)len, stdout);
}

static int on_gen(const struct nlmsghdr *nlh, void *data)
{
	struct dump *dump = data;
	struct nftnl_gen *gen = nftnl_gen_alloc();
	if (gen == NULL) {
		fail(dump, EXIT_NETLINK);
		return MNL_CB_ERROR;
	}
	if (nftnl_gen_nlmsg_parse(nlh, gen) < 0 || !nftnl_gen_is_set(gen, NFTNL_GEN_ID)) {
		nftnl_gen_free(gen);
		fail(dump, EXIT_BOUND);
		return MNL_CB_ERROR;
	}
	dump->genid = nftnl_gen_get_u32(gen, NFTNL_GEN_ID);
	dump->have_genid = true;
	nftnl_gen_free(gen);
	return MNL_CB_OK;
}

static int on_set(const struct nlmsghdr *nlh, void *data)
{
	struct dump *dump = data;
	struct nftnl_set *set = nftnl_set_alloc();
	if (set == NULL) {
		fail(dump, EXIT_NETLINK);
		return MNL_CB_ERROR;
	}
	int result = MNL_CB_OK;
	if (nftnl_set_nlmsg_parse(nlh, set) < 0 || !nftnl_set_is_set(set, NFTNL_SET_NAME) || !nftnl_set_is_set(set, NFTNL_SET_TABLE) ||
	    !nftnl_set_is_set(set, NFTNL_SET_KEY_LEN)) {
		fail(dump, EXIT_BOUND);
		result = MNL_CB_ERROR;
		goto out;
	}
	/* The kernel filters by table; a reply for another table means the reply is not ours. */
	if (strcmp(nftnl_set_get_str(set, NFTNL_SET_TABLE), dump->table) != 0) {
		fail(dump, EXIT_BOUND);
		result = MNL_CB_ERROR;
		goto out;
	}
	uint32_t flags = nftnl_set_is_set(set, NFTNL_SET_FLAGS) ? nftnl_set_get_u32(set, NFTNL_SET_FLAGS) : 0;
	/*
	 * Anonymous sets belong to one rule each: nft prints them inside the rule. Maps are never
	 * part of the intent: nft's listing names them, and that alone is a difference.
	 */
	if (flags & (NFT_SET_ANONYMOUS | NFT_SET_MAP | NFT_SET_OBJECT))
		goto out;
	const char *name = nftnl_set_get_str(set, NFTNL_SET_NAME);
	size_t name_len = strnlen(name, MAX_NAME_LEN + 1);
	uint32_t key_len = nftnl_set_get_u32(set, NFTNL_SET_KEY_LEN);
	if (name_len == 0 || name_len > MAX_NAME_LEN || key_len == 0 || key_len > MAX_KEY_LEN || dump->set_count >= MAX_SETS) {
		fail(dump, EXIT_BOUND);
		result = MNL_CB_ERROR;
		goto out;
	}
	struct set_info *info = &dump->sets[dump->set_count++];
	memcpy(info->name, name, name_len);
	info->name[name_len] = '\0';
	info->flags = flags;
	info->key_len = key_len;
out:
	nftnl_set_free(set);
	return result;
}

static int print_element(struct dump *dump, struct nftnl_set_elem *element)
{
	if (++dump->elements > dump->max_elements) {
		fail(dump, EXIT_BOUND);
		return -1;
	}
	uint32_t flags = nftnl_set_elem_is_set(element, NFTNL_SET_ELEM_FLAGS) ? nftnl_set_elem_get_u32(element, NFTNL_SET_ELEM_FLAGS) : 0;
	if (flags & NFT_SET_ELEM_CATCHALL) {
		fputs("c\n", stdout);
		return 0;
	}
	uint32_t key_len = 0;
	const void *key = nftnl_set_elem_get(element, NFTNL_SET_ELEM_KEY, &key_len);
	if (key == NULL || key_len != dump->current->key_len) {
		fail(dump, EXIT_BOUND);
		return -1;
	}
	fputs(flags & NFT_SET_ELEM_INTERVAL_END ? "x " : "e ", stdout);
	print_hex(key, key_len);
	if (nftnl_set_elem_is_set(element, NFTNL_SET_ELEM_KEY_END)) {
		uint32_t end_len = 0;
		const void *end = nftnl_set_elem_get(element, NFTNL_SET_ELEM_KEY_END, &end_len);
		if (end == NULL || end_len != key_len) {
			fail(dump, EXIT_BOUND);
			return -1;
		}
		fputc(' ', stdout);
		print_hex(end, end_len);
	}
	fputc('\n', stdout);
	return 0;
}

static int on_elements(const struct nlmsghdr *nlh, void *data)
{
	struct dump *dump = data;
	/* One message's elements at a time: memory stays bounded by the message, not the set. */
	struct nftnl_set *set = nftnl_set_alloc();
	if (set == NULL) {
		fail(dump, EXIT_NETLINK);
		return MNL_CB_ERROR;
	}
	int result = MNL_CB_OK;
	struct nftnl_set_elems_iter *iter = NULL;
	if (nftnl_set_elems_nlmsg_parse(nlh, set) < 0 || !nftnl_set_is_set(set, NFTNL_SET_NAME) || !nftnl_set_is_set(set, NFTNL_SET_TABLE) ||
	    strcmp(nftnl_set_get_str(set, NFTNL_SET_NAME), dump->current->name) != 0 || strcmp(nftnl_set_get_str(set, NFTNL_SET_TABLE), dump->table) != 0) {
		fail(dump, EXIT_BOUND);
		result = MNL_CB_ERROR;
		goto out;
	}
	iter = nftnl_set_elems_iter_create(set);
	if (iter == NULL) {
		fail(dump, EXIT_NETLINK);
		result = MNL_CB_ERROR;
		goto out;
	}
	for (struct nftnl_set_elem *element = nftnl_set_elems_iter_next(iter); element != NULL; element = nftnl_set_elems_iter_next(iter)) {
		if (print_element(dump, element) < 0) {
			result = MNL_CB_ERROR;
			goto out;
		}
	}
out:
	if (iter != NULL)
		nftnl_set_elems_iter_destroy(iter);
	nftnl_set_free(set);
	return result;
}

/* Sends one request and runs the callback over every reply until the kernel ends it. */
static int exchange(struct dump *dump, struct nlmsghdr *nlh, mnl_cb_t callback)
{
	if (mnl_socket_sendto(dump->nl, nlh, nlh->nlmsg_len) < 0) {
		fail(dump, EXIT_NETLINK);
		return -1;
	}
	for (;;) {
		ssize_t received = mnl_socket_recvfrom(dump->nl, receive_buffer, sizeof(receive_buffer));
		if (received < 0) {
			fail(dump, EXIT_NETLINK);
			return -1;
		}
		int status = mnl_cb_run(receive_buffer, (size_t)received, nlh->nlmsg_seq, dump->portid, callback, dump);
		if (status < 0) {
			/*
			 * libmnl reports a reply the kernel marked NLM_F_DUMP_INTR (the ruleset changed
			 * mid-dump) as EINTR; ENOENT is a set deleted since it was listed.
			 */
			dump->error = errno;
			fail(dump, errno == EINTR || errno == ENOENT ? EXIT_CHANGED : EXIT_NETLINK);
			return -1;
		}
		if (status == MNL_CB_STOP)
			return 0;
	}
}

static int read_genid(struct dump *dump)
{
	dump->have_genid = false;
	struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(send_buffer, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, ++dump->seq);
	if (exchange(dump, nlh, on_gen) < 0)
		return -1;
	if (!dump->have_genid) {
		fail(dump, EXIT_BOUND);
		return -1;
	}
	return 0;
}

static int list_sets(struct dump *dump)
{
	dump->set_count = 0;
	struct nftnl_set *filter = nftnl_set_alloc();
	if (filter == NULL) {
		fail(dump, EXIT_NETLINK);
		return -1;
	}
	nftnl_set_set_str(filter, NFTNL_SET_TABLE, dump->table);
	struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(send_buffer, NFT_MSG_GETSET, (uint16_t)dump->family, NLM_F_DUMP, ++dump->seq);
	nftnl_set_nlmsg_build_payload(nlh, filter);
	nftnl_set_free(filter);
	if (exchange(dump, nlh, on_set) == 0)
		return 0;
	/* A callback's failure comes first and stays; only the kernel's own ENOENT means no table. */
	if (dump->failure != EXIT_CHANGED || dump->error != ENOENT)
		return -1;
	/* No such table: it has no sets. The generation check still catches a table made meanwhile. */
	dump->failure = 0;
	dump->set_count = 0;
	return 0;
}

static int print_set(struct dump *dump, const struct set_info *info)
{
	fputs("set ", stdout);
	/* Names are up to 255 bytes: print them in chunks print_hex can hold. */
	for (size_t at = 0, len = strlen(info->name); at < len; at += MAX_KEY_LEN) {
		size_t chunk = len - at < MAX_KEY_LEN ? len - at : MAX_KEY_LEN;
		print_hex((const uint8_t *)info->name + at, (uint32_t)chunk);
	}
	printf(" %u %u\n", info->flags, info->key_len);

	struct nftnl_set *request = nftnl_set_alloc();
	if (request == NULL) {
		fail(dump, EXIT_NETLINK);
		return -1;
	}
	nftnl_set_set_str(request, NFTNL_SET_TABLE, dump->table);
	nftnl_set_set_str(request, NFTNL_SET_NAME, info->name);
	struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(send_buffer, NFT_MSG_GETSETELEM, (uint16_t)dump->family, NLM_F_DUMP, ++dump->seq);
	nftnl_set_elems_nlmsg_build_payload(nlh, request);
	nftnl_set_free(request);
	dump->current = info;
	return exchange(dump, nlh, on_elements);
}

/* A consistent dump: the generation before and after must agree, as nft itself checks. */
static int dump_table(struct dump *dump)
{
	if (read_genid(dump) < 0)
		return -1;
	uint32_t before = dump->genid;
	if (list_sets(dump) < 0)
		return -1;
	printf("genid %u\n", before);
	for (size_t i = 0; i < dump->set_count; i++) {
		if (print_set(dump, &dump->sets[i]) < 0)
			return -1;
	}
	if (read_genid(dump) < 0)
		return -1;
	if (dump->genid != before) {
		fail(dump, EXIT_CHANGED);
		return -1;
	}
	printf("end %lu\n", dump->elements);
	return 0;
}

static char watch_buffer[RECEIVE_BUFFER_SIZE];

/* One line per ruleset generation committed in this network namespace, from the nf_tables group. */
static int watch_generations(struct dump *dump)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		return EXIT_NETLINK;
	unsigned int group = NFNLGRP_NFTABLES;
	int fd = mnl_socket_get_fd(dump->nl);
	if (mnl_socket_setsockopt(dump->nl, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0)
		return EXIT_NETLINK;
	/* A large apply sends an event per element; a bigger buffer overruns less often (root only). */
	int size = 8 << 20;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	struct timeval forever = { 0 };
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof(forever)) < 0)
		return EXIT_NETLINK;
	printf("ready\n");
	if (fflush(stdout) != 0)
		return EXIT_NETLINK;
	for (;;) {
		ssize_t received = mnl_socket_recvfrom(dump->nl, watch_buffer, sizeof(watch_buffer));
		if (received < 0) {
			if (errno == EINTR)
				continue;
			if (errno != ENOBUFS)
				return EXIT_NETLINK;
			printf("overrun\n");
		} else {
			int left = (int)received;
			for (const struct nlmsghdr *nlh = (const struct nlmsghdr *)watch_buffer; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
				if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES || NFNL_MSG_TYPE(nlh->nlmsg_type) != NFT_MSG_NEWGEN)
					continue;
				dump->have_genid = false;
				if (on_gen(nlh, dump) == MNL_CB_OK && dump->have_genid)
					printf("genid %u\n", dump->genid);
				else
					printf("overrun\n");
			}
		}
		if (fflush(stdout) != 0)
			return EXIT_NETLINK;
	}
}

static int parse_family(const char *text)
{
	if (strcmp(text, "inet") == 0)
		return NFPROTO_INET;
	if (strcmp(text, "ip") == 0)
		return NFPROTO_IPV4;
	if (strcmp(text, "ip6") == 0)
		return NFPROTO_IPV6;
	return -1;
}

int main(int argc, char **argv)
{
	bool genid_only = argc == 2 && strcmp(argv[1], "--genid") == 0;
	bool watch = argc == 2 && strcmp(argv[1], "--watch") == 0;
	if (argc != 4 && !genid_only && !watch) {
		fprintf(stderr, "usage: nft-set-elements FAMILY TABLE MAX_ELEMENTS | --genid | --watch\n");
		return EXIT_USAGE;
	}
	struct dump dump = { .family = argc == 2 ? NFPROTO_INET : parse_family(argv[1]), .table = argc == 2 ? "" : argv[2] };
	if (argc == 4) {
		char *end = NULL;
		errno = 0;
		unsigned long max = strtoul(argv[3], &end, 10);
		size_t table_len = strnlen(argv[2], MAX_NAME_LEN + 1);
		if (dump.family < 0 || table_len == 0 || table_len > MAX_NAME_LEN || errno != 0 || end == argv[3] || *end != '\0' || max > MAX_ELEMENTS_LIMIT) {
			fprintf(stderr, "nft-set-elements: bad family, table or element bound\n");
			return EXIT_USAGE;
		}
		dump.max_elements = max;
	}
	dump.sets = calloc(MAX_SETS, sizeof(*dump.sets));
	if (dump.sets == NULL || setvbuf(stdout, output_buffer, _IOFBF, sizeof(output_buffer)) != 0) {
		fprintf(stderr, "nft-set-elements: out of memory\n");
		return EXIT_NETLINK;
	}
	dump.nl = mnl_socket_open(NETLINK_NETFILTER);
	if (dump.nl == NULL || mnl_socket_bind(dump.nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		fprintf(stderr, "nft-set-elements: netlink: %s\n", strerror(errno));
		return EXIT_NETLINK;
	}
	dump.portid = mnl_socket_get_portid(dump.nl);
	/* A kernel that never answers must not hang the agent. */
	struct timeval timeout = { .tv_sec = RECEIVE_TIMEOUT_SECONDS };
	if (setsockopt(mnl_socket_get_fd(dump.nl), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0) {
		fprintf(stderr, "nft-set-elements: netlink: %s\n", strerror(errno));
		return EXIT_NETLINK;
	}
	dump.seq = (uint32_t)time(NULL);
	if (watch) {
		int status = watch_generations(&dump);
		fprintf(stderr, "nft-set-elements: watching: %s\n", strerror(errno));
		mnl_socket_close(dump.nl);
		return status;
	}

	int done = genid_only ? read_genid(&dump) : dump_table(&dump);
	if (genid_only && done == 0)
		printf("genid %u\n", dump.genid);
	int status = done == 0 ? 0 : dump.failure != 0 ? dump.failure : EXIT_NETLINK;
	int saved = errno;
	mnl_socket_close(dump.nl);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "nft-set-elements: writing the output: %s\n", strerror(errno));
		return EXIT_NETLINK;
	}
	if (status != 0) {
		const char *reason = status == EXIT_CHANGED ? "the ruleset changed during the dump" : status == EXIT_BOUND ? "too many elements or a malformed reply" : strerror(saved);
		fprintf(stderr, "nft-set-elements: %s\n", reason);
	}
	return status;
}
