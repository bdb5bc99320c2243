/* Fuzz target: the configuration parser (node/config.h): an INI file and command-line flags.
 * Input: the flags, one per line, up to the first NUL byte; the file's text after it (an input
 * without a NUL is all file). A configuration that loads is printed back as INI and must load
 * again to the same result. */
#include <string.h>

#include "fuzz.h"
#include "node/config.h"

#define FLAGS_MAX 64

static struct tandem_config config, again;
static FILE *sink;
static char config_path[192], reprint_path[192];

static int write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size) {
        perror("fuzz_config: write");
        abort();
    }
    return fclose(f);
}

/* Splits the flag text into argv; "--config" flags are dropped (the file is ours to name). */
static int flags_split(char *text, char **argv, int argc_max)
{
    int argc = 1;
    argv[0] = "tandemd";
    for (char *line = strtok(text, "\n"); line != NULL && argc < argc_max - 2;
         line = strtok(NULL, "\n")) {
        if (strncmp(line, "--config", 8) != 0) {
            argv[argc++] = line;
        }
    }
    argv[argc++] = "--config";
    argv[argc++] = config_path;
    return argc;
}

/* What tandemd --print-config writes must read back as the same configuration. */
static void reprint_loads_again(void)
{
    FILE *f = fopen(reprint_path, "w");
    tandem_config_print_ini(&config, f);
    fclose(f);
    char errmsg[TANDEM_ERRMSG_SIZE];
    char *argv[] = {"tandemd", "--config", reprint_path, NULL};
    if (tandem_config_load(&again, 3, argv, sink, errmsg) != 0) {
        fprintf(stderr, "fuzz_config: the printed configuration does not load: %s\n", errmsg);
        abort();
    }
    memcpy(again.config_path, config.config_path, sizeof again.config_path);
    if (memcmp(&again, &config, sizeof config) != 0) {
        fprintf(stderr, "fuzz_config: the printed configuration loads differently\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sink == NULL) {
        sink = fopen("/dev/null", "w");
        snprintf(config_path, sizeof config_path, "%s/tandemd.ini", fuzz_tmp_dir());
        snprintf(reprint_path, sizeof reprint_path, "%s/printed.ini", fuzz_tmp_dir());
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t flags_len = nul == NULL ? 0 : (size_t)(nul - data);
    char *flags = malloc(flags_len + 1);
    memcpy(flags, data, flags_len);
    flags[flags_len] = '\0';
    size_t file_at = nul == NULL ? 0 : flags_len + 1;
    write_file(config_path, data + file_at, size - file_at);

    char *argv[FLAGS_MAX + 1];
    int argc = flags_split(flags, argv, FLAGS_MAX);
    argv[argc] = NULL;
    char errmsg[TANDEM_ERRMSG_SIZE];
    memset(&config, 0, sizeof config);
    memset(&again, 0, sizeof again);
    if (tandem_config_load(&config, argc, argv, sink, errmsg) == 0) {
        reprint_loads_again();
    }
    free(flags);
    return 0;
}
