/*
 * nft-session: runs nftables commands for one caller through libnftables (the library `nft` itself
 * is built on), one request at a time, in the network namespace it was started in, until its
 * standard input closes or its parent dies.
 *
 * Why: the agent checks and applies its table often, and every `nft` it starts is a fork of the
 * agent's process, which costs in proportion to the agent's memory (Node: ~6 ms at 50 MB, ~90 ms
 * at 550 MB, all of it with the agent's event loop blocked) plus nft's own start. One long-lived
 * session pays that once. The commands and their results are nft's: the same parser, the same
 * transaction per request, the same output and error messages (without nft's `/dev/stdin:L:C:`
 * prefix: a buffer has no name).
 *
 * Request, on standard input:
 *   run FLAGS LENGTH\n<LENGTH bytes>   the bytes are nft input, as `nft -f -` reads it (one
 *                                      transaction); FLAGS: `-` or letters: j JSON output, t terse
 *                                      (no set elements), e echo, a handles
 * Response, on standard output:
 *   done STATUS OUTLEN ERRLEN\n<OUTLEN bytes of output><ERRLEN bytes of error text>
 *   STATUS is 0 when nft accepted and ran every command, 1 otherwise (nothing of a refused
 *   transaction is applied).
 *
 * Exit status: 0 standard input closed; 2 a malformed request or one over MAX_REQUEST bytes;
 * 5 an output error or no libnftables context.
 */
#define _GNU_SOURCE
#include <nftables/libnftables.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#define EXIT_USAGE 2
#define EXIT_OUTPUT 5
/* A 100,000-entry table is ~3 MB of nft input. */
#define MAX_REQUEST (64u * 1024u * 1024u)
#define MAX_HEADER 64

static unsigned int parse_flags(const char *text, int *ok)
{
	unsigned int flags = 0;
	*ok = 1;
	if (strcmp(text, "-") == 0)
		return 0;
	for (const char *c = text; *c != '\0'; c++) {
		switch (*c) {
		case 'j': flags |= NFT_CTX_OUTPUT_JSON; break;
		case 't': flags |= NFT_CTX_OUTPUT_TERSE; break;
		case 'e': flags |= NFT_CTX_OUTPUT_ECHO; break;
		case 'a': flags |= NFT_CTX_OUTPUT_HANDLE; break;
		default: *ok = 0; return 0;
		}
	}
	return flags;
}

static int write_all(const char *bytes, size_t length)
{
	return fwrite(bytes, 1, length, stdout) == length ? 0 : -1;
}

int main(int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: nft-session (requests on standard input)\n");
		return EXIT_USAGE;
	}
	/* Never outlive the agent. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);

	char header[MAX_HEADER + 1];
	char *input = NULL;
	size_t capacity = 0;
	int status = 0;
	while (fgets(header, sizeof header, stdin) != NULL) {
		char flags_text[16];
		unsigned long length;
		char trailing;
		if (strchr(header, '\n') == NULL ||
		    sscanf(header, "run %15s %lu%c", flags_text, &length, &trailing) != 3 || trailing != '\n' || length > MAX_REQUEST) {
			fprintf(stderr, "nft-session: malformed request\n");
			status = EXIT_USAGE;
			break;
		}
		int flags_ok;
		unsigned int flags = parse_flags(flags_text, &flags_ok);
		if (!flags_ok) {
			fprintf(stderr, "nft-session: unknown flags %s\n", flags_text);
			status = EXIT_USAGE;
			break;
		}
		if (length + 1 > capacity) {
			char *grown = realloc(input, length + 1);
			if (grown == NULL) {
				fprintf(stderr, "nft-session: out of memory\n");
				status = EXIT_OUTPUT;
				break;
			}
			input = grown;
			capacity = length + 1;
		}
		if (fread(input, 1, length, stdin) != length) {
			fprintf(stderr, "nft-session: request shorter than its length\n");
			status = EXIT_USAGE;
			break;
		}
		input[length] = '\0';
		if (memchr(input, '\0', length) != NULL) {
			fprintf(stderr, "nft-session: request holds a NUL byte\n");
			status = EXIT_USAGE;
			break;
		}
		/*
		 * A context per request, as each `nft` has: a context keeps its cache of the ruleset
		 * between commands, and some commands print from that cache (nft 1.0.6 answers `reset
		 * counter` with the cached values once a listing has filled it), where nft would have
		 * asked the kernel.
		 */
		struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
		if (ctx == NULL || nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
			fprintf(stderr, "nft-session: no libnftables context\n");
			if (ctx != NULL)
				nft_ctx_free(ctx);
			status = EXIT_OUTPUT;
			break;
		}
		nft_ctx_output_set_flags(ctx, flags);
		int result = nft_run_cmd_from_buffer(ctx, input) == 0 ? 0 : 1;
		const char *output = nft_ctx_get_output_buffer(ctx);
		const char *error = nft_ctx_get_error_buffer(ctx);
		size_t output_length = output ? strlen(output) : 0;
		size_t error_length = error ? strlen(error) : 0;
		int written = printf("done %d %zu %zu\n", result, output_length, error_length) >= 0 && write_all(output, output_length) == 0 &&
			      write_all(error, error_length) == 0 && fflush(stdout) == 0;
		nft_ctx_free(ctx);
		if (!written) {
			status = EXIT_OUTPUT;
			break;
		}
	}
	free(input);
	return status;
}
